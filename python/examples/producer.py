#!/usr/bin/env python3
"""Sends keyed records to a topic and prints where each landed.

    python python/examples/producer.py [--bootstrap 127.0.0.1:9092] [--topic greetings] [--count 10]
"""

import argparse
import time

import brook


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="greetings")
    parser.add_argument("--count", type=int, default=10)
    args = parser.parse_args()

    with brook.Producer(args.bootstrap, acks="all", linger_ms=5, compression="lz4") as producer:
        pending = []
        for i in range(args.count):
            key = f"user-{i % 3}".encode()  # the same key always goes to the same partition
            pending.append(
                producer.send(
                    args.topic,
                    f"hello #{i}".encode(),
                    key=key,
                    headers=[("sent-at", str(time.time()).encode())],
                )
            )
        producer.flush()
        for future in pending:
            try:
                md = future.result(timeout=10)
            except brook.BrookError as err:
                print(f"failed: {err.name} ({err.code}): {err}")
                continue
            print(f"{md.topic}-{md.partition}@{md.offset} (timestamp {md.timestamp})")


if __name__ == "__main__":
    main()
