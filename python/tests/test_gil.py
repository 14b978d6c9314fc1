"""Blocking calls release the GIL: other Python threads keep running meanwhile."""

import threading
import time

import brook


def count_while(fn):
    """Runs `fn` in a thread and counts how often the main thread gets to run meanwhile."""
    done = threading.Event()

    def run():
        try:
            fn()
        finally:
            done.set()

    thread = threading.Thread(target=run)
    ticks = 0
    thread.start()
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    thread.join()
    return ticks


def test_blocking_poll_lets_other_threads_run(broker, make_topic):
    topic = make_topic()
    with brook.Consumer(broker.bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([(topic, 0)])
        start = time.monotonic()
        ticks = count_while(lambda: consumer.poll(timeout=1.5))
        elapsed = time.monotonic() - start
    assert elapsed >= 1.4
    # Holding the GIL for the whole poll would allow a tick or two at most; a loaded machine
    # still allows dozens of 1 ms sleeps in 1.5 s.
    assert ticks > 20, ticks


def test_blocking_result_and_flush_let_other_threads_run(broker, make_topic):
    topic = make_topic()
    with brook.Producer(broker.bootstrap, linger_ms=1000) as producer:
        future = producer.send(topic, b"lingering")
        ticks = count_while(lambda: future.result(timeout=10))
        assert ticks > 20, ticks
        producer.send(topic, b"again")
        assert count_while(lambda: producer.flush(timeout=10)) >= 1


def test_consumers_in_threads_poll_concurrently(broker, make_topic):
    topics = [make_topic() for _ in range(4)]
    consumers = []
    for topic in topics:
        consumer = brook.Consumer(broker.bootstrap, auto_offset_reset="earliest")
        consumer.assign([(topic, 0)])
        consumers.append(consumer)
    threads = [threading.Thread(target=c.poll, kwargs={"timeout": 1.0}) for c in consumers]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    for c in consumers:
        c.close()
    assert elapsed < 3.0, f"four 1 s polls took {elapsed:.1f} s: they ran one at a time"
