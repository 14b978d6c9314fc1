#!/usr/bin/env python3
"""A consumer-group member: reads a topic, prints each record and commits after each batch.
Start several to watch the group split the partitions; Ctrl-C leaves the group cleanly.

    python python/examples/group_consumer.py [--bootstrap 127.0.0.1:9092] [--topic greetings] [--group printers]
"""

import argparse

import brook


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="greetings")
    parser.add_argument("--group", default="printers")
    parser.add_argument("--idle-exit-ms", type=float, default=None,
                        help="stop after this long without a record (default: never)")
    args = parser.parse_args()

    with brook.Consumer(
        args.bootstrap,
        group_id=args.group,
        topics=[args.topic],
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    ) as consumer:
        wait_s = 1.0 if args.idle_exit_ms is None else args.idle_exit_ms / 1000
        try:
            while True:
                records = consumer.poll(timeout=wait_s, max_records=500)
                for record in records:
                    key = record.key.decode() if record.key else None
                    value = record.value.decode(errors="replace") if record.value else None
                    print(f"{record.topic}-{record.partition}@{record.offset} {key}: {value}"
                          f" {dict(record.headers)}")
                if records:
                    consumer.commit()  # at-least-once: after the batch was handled
                elif args.idle_exit_ms is not None:
                    break
        except KeyboardInterrupt:
            pass  # leaving the `with` block commits nothing more and leaves the group


if __name__ == "__main__":
    main()
