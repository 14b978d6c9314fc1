#!/usr/bin/env python3
"""A minimal Fetch reader: how fast the broker serves a backlog when the client does no
per-record work. It sends Fetch v4 requests (64 MB per response, 16 MB per partition) for
every partition of a topic, reads each response with recv_into into one reused buffer, and
walks only the batch headers to find the next offset (it checks no CRC and decodes no
record). One connection, one request in flight, like a librdkafka consumer.

    python3 bench/raw_fetch.py HOST:PORT TOPIC PARTITIONS RECORDS

prints one JSON line: records, bytes (record-batch bytes received), seconds (from the first
response to the last).
"""

import json
import socket
import struct
import sys
import time

RESPONSE_MAX = 64 << 20
PARTITION_MAX = 16 << 20


def fetch_request(correlation_id, topic, offsets):
    name = topic.encode()
    body = struct.pack(">iiiib", -1, 500, 1, RESPONSE_MAX, 0) + struct.pack(">i", 1)
    body += struct.pack(">h", len(name)) + name + struct.pack(">i", len(offsets))
    for partition, offset in enumerate(offsets):
        body += struct.pack(">iqi", partition, offset, PARTITION_MAX)
    client = b"raw-fetch"
    header = struct.pack(">hhih", 1, 4, correlation_id, len(client)) + client
    return struct.pack(">i", len(header) + len(body)) + header + body


def recv_exact(sock, view, n):
    got = 0
    while got < n:
        k = sock.recv_into(view[got:n])
        if k == 0:
            raise ConnectionError("broker closed the connection")
        got += k


def main():
    bootstrap, topic, partitions, expected = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    host, port = bootstrap.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    buf = bytearray(RESPONSE_MAX + (1 << 20))
    view = memoryview(buf)
    offsets = [0] * partitions
    records = received = 0
    first = None
    correlation_id = 0
    while records < expected:
        correlation_id += 1
        sock.sendall(fetch_request(correlation_id, topic, offsets))
        recv_exact(sock, view, 4)
        size = struct.unpack_from(">i", buf, 0)[0]
        if size > len(buf):
            sys.exit(f"response of {size} bytes is larger than the buffer")
        recv_exact(sock, view, size)
        if first is None:
            first = time.perf_counter()
        # correlation id, throttle, topics array, topic name, partitions array
        pos = 4 + 4
        (topics,) = struct.unpack_from(">i", buf, pos)
        pos += 4
        for _ in range(topics):
            (name_len,) = struct.unpack_from(">h", buf, pos)
            pos += 2 + name_len
            (count,) = struct.unpack_from(">i", buf, pos)
            pos += 4
            for _ in range(count):
                partition, error, _hw, _lso, _aborted = struct.unpack_from(">ihqqi", buf, pos)
                pos += 4 + 2 + 8 + 8 + 4
                if error:
                    sys.exit(f"partition {partition}: error {error}")
                (length,) = struct.unpack_from(">i", buf, pos)
                pos += 4
                end = pos + max(length, 0)
                received += max(length, 0)
                while pos + 61 <= end:
                    base, batch_len = struct.unpack_from(">qi", buf, pos)
                    if pos + 12 + batch_len > end:
                        break  # a partial batch at the end of a partition's data
                    (last_delta,) = struct.unpack_from(">i", buf, pos + 23)
                    records += last_delta + 1
                    offsets[partition] = base + last_delta + 1
                    pos += 12 + batch_len
                pos = end
    elapsed = time.perf_counter() - first
    print(json.dumps({"records": records, "bytes": received, "seconds": elapsed}))


if __name__ == "__main__":
    main()
