/*
 * rdkafka_load: a librdkafka load generator for bench/broker_bench.py, so that the
 * broker's figures are not bounded by Python's per-record cost.
 *
 *   rdkafka_load produce BOOTSTRAP|mock TOPIC SIZE SECONDS ACKS LINGER_MS
 *       produces SIZE-byte records as fast as librdkafka takes them for SECONDS, then
 *       flushes; counts delivered records.
 *   rdkafka_load latency BOOTSTRAP|mock TOPIC SIZE RATE SECONDS ACKS LINGER_MS
 *       produces at a fixed RATE records/s for SECONDS; the latency of a record is the time
 *       from rd_kafka_produce() to its delivery report; the first 10 % are dropped.
 *   rdkafka_load consume BOOTSTRAP TOPIC PARTITIONS RECORDS [FIRST]
 *       reads partitions FIRST..FIRST+PARTITIONS-1 (FIRST defaults to 0) from the beginning with the simple consumer until
 *       RECORDS records arrived — or, with RECORDS 0, until each partition reached its end —
 *       (no group, no commits), touching each record's length;
 *       "seconds" runs from the first record to the last, "startup_s" until the first.
 *
 * "mock" instead of a bootstrap address runs against librdkafka's in-process mock cluster
 * (test.mock.num.brokers=1), the client-side ceiling.
 *
 * Prints one JSON object on stdout: records, bytes, seconds, errors, and p50_ms / p99_ms for
 * latency. Exits non-zero on a usage or setup error.
 *
 * Build: gcc -O2 -o rdkafka_load bench/rdkafka_load.c $(pkg-config --cflags --libs rdkafka)
 */
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *detail) {
    fprintf(stderr, "rdkafka_load: %s: %s\n", what, detail);
    exit(2);
}

static void set(rd_kafka_conf_t *conf, const char *key, const char *value) {
    char err[512];
    if (rd_kafka_conf_set(conf, key, value, err, sizeof err) != RD_KAFKA_CONF_OK)
        die(key, err);
}

/* Delivery accounting shared by the produce modes. */
struct delivery {
    uint64_t delivered;
    uint64_t errors;
    double *latencies; /* latency mode only: seconds, by delivery order */
    uint64_t latencies_len;
    uint64_t latencies_cap;
};

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque) {
    (void)rk;
    struct delivery *d = opaque;
    if (msg->err) {
        if (d->errors++ == 0)
            fprintf(stderr, "rdkafka_load: delivery failed: %s\n", rd_kafka_err2str(msg->err));
        return;
    }
    d->delivered++;
    if (d->latencies && d->latencies_len < d->latencies_cap) {
        /* The produce call's msg_opaque (its send time in ns) comes back in _private. */
        double sent = (double)(uintptr_t)msg->_private / 1e9;
        d->latencies[d->latencies_len++] = now_s() - sent;
    }
}

static rd_kafka_t *new_producer(const char *bootstrap, const char *acks, const char *linger,
                                struct delivery *d) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (strcmp(bootstrap, "mock") == 0)
        set(conf, "test.mock.num.brokers", "1");
    else
        set(conf, "bootstrap.servers", bootstrap);
    set(conf, "acks", acks);
    set(conf, "linger.ms", linger);
    set(conf, "queue.buffering.max.messages", "1000000");
    set(conf, "queue.buffering.max.kbytes", "1048576");
    set(conf, "log_level", "3");
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, d);
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk)
        die("producer", err);
    return rk;
}

/* Produces one record; waits for queue space when librdkafka's queue is full. */
static void produce_one(rd_kafka_t *rk, rd_kafka_topic_t *rkt, char *payload, size_t size,
                        void *opaque) {
    while (rd_kafka_produce(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, payload, size, NULL,
                            0, opaque) == -1) {
        rd_kafka_resp_err_t err = rd_kafka_last_error();
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            die("produce", rd_kafka_err2str(err));
        rd_kafka_poll(rk, 1);
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void warm_up(rd_kafka_t *rk, rd_kafka_topic_t *rkt, char *payload, size_t size) {
    for (int i = 0; i < 100; i++)
        produce_one(rk, rkt, payload, size, (void *)(uintptr_t)(now_s() * 1e9));
    rd_kafka_flush(rk, 30000);
}

static int run_produce(int argc, char **argv, int paced) {
    if (argc != (paced ? 9 : 8))
        die("usage", "see the comment at the top of bench/rdkafka_load.c");
    const char *bootstrap = argv[2], *topic = argv[3];
    size_t size = strtoul(argv[4], NULL, 10);
    double rate = paced ? strtod(argv[5], NULL) : 0;
    double seconds = strtod(argv[paced ? 6 : 5], NULL);
    const char *acks = argv[paced ? 7 : 6], *linger = argv[paced ? 8 : 7];
    if (size < 8 || seconds <= 0 || (paced && rate <= 0))
        die("usage", "SIZE must be >= 8, SECONDS and RATE > 0");

    struct delivery d = {0};
    rd_kafka_t *rk = new_producer(bootstrap, acks, linger, &d);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    char *payload = malloc(size);
    memset(payload, 'x', size);
    warm_up(rk, rkt, payload, size);
    d.delivered = 0;
    d.errors = 0;
    if (paced) {
        d.latencies_cap = (uint64_t)(rate * seconds) + 1;
        d.latencies = malloc(d.latencies_cap * sizeof(double));
    }

    uint64_t sent = 0;
    double start = now_s(), end = start + seconds;
    for (;;) {
        double t = now_s();
        if (t >= end)
            break;
        if (paced) {
            double due = start + (double)sent / rate;
            if (t < due) {
                /* Sleep rather than spin, so the generator leaves the CPU to librdkafka's
                 * threads and the broker; every record already due goes out on waking. */
                rd_kafka_poll(rk, 0);
                double gap = due - t;
                struct timespec ts = {(time_t)gap, (long)((gap - (double)(time_t)gap) * 1e9)};
                nanosleep(&ts, NULL);
                continue;
            }
        }
        produce_one(rk, rkt, payload, size, (void *)(uintptr_t)(t * 1e9));
        sent++;
        if ((sent & 1023) == 0)
            rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, 60000);
    double elapsed = now_s() - start;

    printf("{\"records\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"seconds\": %.6f, "
           "\"errors\": %" PRIu64,
           d.delivered, d.delivered * (uint64_t)size, elapsed, d.errors);
    if (paced) {
        uint64_t skip = d.latencies_len / 10, n = d.latencies_len - skip;
        double *l = d.latencies + skip;
        qsort(l, n, sizeof(double), cmp_double);
        double p50 = n ? l[n / 2] * 1e3 : -1, p99 = n ? l[(uint64_t)(n * 0.99)] * 1e3 : -1;
        printf(", \"sent\": %" PRIu64 ", \"p50_ms\": %.3f, \"p99_ms\": %.3f", sent, p50, p99);
        free(d.latencies);
    }
    printf("}\n");
    free(payload);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return d.errors ? 1 : 0;
}

static int run_consume(int argc, char **argv) {
    if (argc != 6 && argc != 7)
        die("usage", "see the comment at the top of bench/rdkafka_load.c");
    const char *bootstrap = argv[2], *topic = argv[3];
    int partitions = atoi(argv[4]);
    int first_partition = argc == 7 ? atoi(argv[6]) : 0;
    uint64_t expected = strtoull(argv[5], NULL, 10);
    if (partitions <= 0 || first_partition < 0)
        die("usage", "PARTITIONS must be > 0 and FIRST >= 0");

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", bootstrap);
    /* librdkafka's default fetch sizes (1 MiB per partition, 50 MiB per response): larger
     * fetches were slower here (64 MB responses cost the client more in page faults than
     * they save in round trips: 0.9 GB/s against 1.5 GB/s with the defaults). librdkafka's
     * mock cluster is no ceiling for consuming: it served 18,000 records in 300 s. */
    set(conf, "log_level", "3");
    if (expected == 0)
        set(conf, "enable.partition.eof", "true");
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk)
        die("consumer", err);
    rd_kafka_topic_conf_t *tconf = rd_kafka_topic_conf_new();
    if (rd_kafka_topic_conf_set(tconf, "auto.offset.reset", "earliest", err, sizeof err) !=
        RD_KAFKA_CONF_OK)
        die("auto.offset.reset", err);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, tconf);
    rd_kafka_queue_t *queue = rd_kafka_queue_new(rk);

    double start = now_s();
    for (int p = first_partition; p < first_partition + partitions; p++)
        if (rd_kafka_consume_start_queue(rkt, p, RD_KAFKA_OFFSET_BEGINNING, queue) == -1)
            die("consume_start", rd_kafka_err2str(rd_kafka_last_error()));

    enum { BATCH = 10000 };
    rd_kafka_message_t **msgs = malloc(BATCH * sizeof *msgs);
    uint64_t records = 0, bytes = 0, errors = 0;
    double deadline = start + 300, first = 0;
    int at_end = 0; /* partitions that reported their end (RECORDS 0) */
    while ((expected == 0 ? at_end < partitions : records < expected) && now_s() < deadline) {
        ssize_t n = rd_kafka_consume_batch_queue(queue, 1000, msgs, BATCH);
        if (n < 0)
            die("consume", rd_kafka_err2str(rd_kafka_last_error()));
        if (n > 0 && first == 0)
            first = now_s();
        for (ssize_t i = 0; i < n; i++) {
            if (msgs[i]->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                records++;
                bytes += msgs[i]->len;
            } else if (msgs[i]->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                at_end++;
            } else {
                if (errors++ == 0)
                    fprintf(stderr, "rdkafka_load: %s\n", rd_kafka_message_errstr(msgs[i]));
            }
            rd_kafka_message_destroy(msgs[i]);
        }
    }
    /* Throughput counts from the first record: connecting and the first metadata and
     * offset lookups (about a second with librdkafka's simple consumer) are start-up. */
    double end = now_s();
    printf("{\"records\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"seconds\": %.6f, "
           "\"startup_s\": %.6f, \"errors\": %" PRIu64 "}\n",
           records, bytes, first ? end - first : 0.0, first ? first - start : end - start, errors);
    for (int p = first_partition; p < first_partition + partitions; p++)
        rd_kafka_consume_stop(rkt, p);
    free(msgs);
    rd_kafka_queue_destroy(queue);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    int done = expected == 0 ? at_end >= partitions : records >= expected;
    return done && errors == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "produce") == 0)
        return run_produce(argc, argv, 0);
    if (argc >= 2 && strcmp(argv[1], "latency") == 0)
        return run_produce(argc, argv, 1);
    if (argc >= 2 && strcmp(argv[1], "consume") == 0)
        return run_consume(argc, argv);
    die("usage", "rdkafka_load produce|latency|consume ... (see bench/rdkafka_load.c)");
    return 2;
}
