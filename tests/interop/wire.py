"""Kafka wire-format helpers for tests that talk to the broker on a raw socket."""

import socket
import struct

RECV_TIMEOUT_S = 10

API_PRODUCE = 0
API_FETCH = 1
API_API_VERSIONS = 18


def crc32c(data):
    """CRC-32C (Castagnoli), as record batches v2 carry."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def varint(n):
    """Zig-zag varint."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def kstring(s):
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def kbytes(b):
    return struct.pack(">i", len(b)) + b


def record_batch(values, timestamp_ms, timestamp_deltas=None):
    """An uncompressed v2 record batch, no producer id, with `values` as record values, all
    at `timestamp_ms` or at `timestamp_ms + timestamp_deltas[i]`."""
    deltas = timestamp_deltas or [0] * len(values)
    records = b""
    for delta, value in enumerate(values):
        body = (
            b"\x00"  # attributes
            + varint(deltas[delta])  # timestamp delta
            + varint(delta)  # offset delta
            + varint(-1)  # null key
            + varint(len(value))
            + value
            + varint(0)  # no headers
        )
        records += varint(len(body)) + body
    after_crc = (
        struct.pack(">h", 0)  # attributes: no compression, create time
        + struct.pack(">i", len(values) - 1)  # last offset delta
        + struct.pack(">q", timestamp_ms)  # base timestamp
        + struct.pack(">q", timestamp_ms + max(deltas))  # max timestamp
        + struct.pack(">q", -1)  # producer id
        + struct.pack(">h", -1)  # producer epoch
        + struct.pack(">i", -1)  # base sequence
        + struct.pack(">i", len(values))
        + records
    )
    after_length = (
        struct.pack(">i", 0)  # partition leader epoch
        + b"\x02"  # magic
        + struct.pack(">I", crc32c(after_crc))
        + after_crc
    )
    return struct.pack(">q", 0) + struct.pack(">i", len(after_length)) + after_length


def request(api_key, api_version, correlation_id, body, client_id="brook-interop"):
    """A size-prefixed request with header v1 (key, version, correlation id, client id)."""
    header = struct.pack(">hhi", api_key, api_version, correlation_id) + kstring(client_id)
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def produce_v3_body(topic, partition, records, acks=-1, timeout_ms=10_000):
    return (
        kstring(None)  # transactional id
        + struct.pack(">hi", acks, timeout_ms)
        + struct.pack(">i", 1)
        + kstring(topic)
        + struct.pack(">i", 1)
        + struct.pack(">i", partition)
        + kbytes(records)
    )


def fetch_v4_body(topic, partition, offset, max_bytes, max_wait_ms=0, min_bytes=1):
    """A Fetch v4 body for one partition (read_uncommitted)."""
    return (
        struct.pack(">iiiib", -1, max_wait_ms, min_bytes, max_bytes, 0)
        + struct.pack(">i", 1)
        + kstring(topic)
        + struct.pack(">i", 1)
        + struct.pack(">iqi", partition, offset, max_bytes)
    )


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, fmt):
        vals = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return vals if len(vals) > 1 else vals[0]

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        s = self.data[self.pos : self.pos + n].decode()
        self.pos += n
        return s


def parse_produce_v3_response(payload):
    """[(topic, partition, error_code, base_offset)] of a Produce v3 response body."""
    r = Reader(payload)
    out = []
    for _ in range(r.take(">i")):
        topic = r.string()
        for _ in range(r.take(">i")):
            partition, error, base_offset, _log_append_time = r.take(">ihqq")
            out.append((topic, partition, error, base_offset))
    r.take(">i")  # throttle time
    assert r.pos == len(payload), "trailing bytes in the Produce v3 response"
    return out


def connect(broker):
    s = socket.create_connection(("127.0.0.1", broker.port), timeout=RECV_TIMEOUT_S)
    s.settimeout(RECV_TIMEOUT_S)
    return s


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def recv_response(sock):
    """(correlation id, body) of the next response (header v0)."""
    size = struct.unpack(">i", recv_exact(sock, 4))[0]
    payload = recv_exact(sock, size)
    return struct.unpack(">i", payload[:4])[0], payload[4:]


def closed_by_broker(sock):
    """True if the broker closes the connection (without sending anything first)."""
    try:
        data = sock.recv(65536)
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
    return data == b""


def api_versions(sock, correlation_id=7, version=0):
    sock.sendall(request(API_API_VERSIONS, version, correlation_id, b""))
    cid, body = recv_response(sock)
    assert cid == correlation_id
    r = Reader(body)
    error = r.take(">h")
    apis = {}
    for _ in range(r.take(">i")):
        key, lo, hi = r.take(">hhh")
        apis[key] = (lo, hi)
    return error, apis
