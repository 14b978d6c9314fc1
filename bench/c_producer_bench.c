/*
 * c_producer_bench: the same produce workload through Brook's C library (brook.h) and
 * through librdkafka, for bench/c_bench.py.
 *
 *   c_producer_bench brook|rdkafka BOOTSTRAP TOPIC RECORDS SIZE ACKS LINGER_MS BATCH_BYTES IDEMPOTENCE
 *
 * Both modes first send a warm-up of 1,000 records and flush (connection, metadata and, with
 * idempotence, the producer id are then settled), then produce RECORDS records of SIZE bytes
 * (no key, partition chosen by the client's default partitioner, compression none, the value
 * copied by the library) and flush. The clock runs from the first timed send to the end of
 * the flush.
 *   brook:   brook_producer_send() per record, then brook_producer_flush(), which returns 0
 *            only if every record sent since the previous flush was acknowledged.
 *   rdkafka: rd_kafka_produce(RD_KAFKA_MSG_F_COPY) per record with a delivery callback that
 *            counts acknowledged and failed records (served by rd_kafka_poll(rk, 0) after
 *            each produce, and by rd_kafka_flush()), then rd_kafka_flush().
 * Both get the same settings: acks, linger.ms, batch.size, enable.idempotence,
 * compression.type=none, queue.buffering.max.messages=100000.
 *
 * Prints one JSON object on stdout: mode, records, bytes, seconds, acked, errors. Exits 0
 * only if every timed record was acknowledged.
 *
 * Build (c_bench.py does this):
 *   gcc -O2 -I <target>/include -o c_producer_bench bench/c_producer_bench.c \
 *       <target>/release/libbrook_ffi.a $(pkg-config --cflags --libs rdkafka) -lpthread -ldl -lm
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "brook.h"

enum { WARM_UP_RECORDS = 1000, FLUSH_TIMEOUT_MS = 300000 };

/* The workload and the settings both modes share. */
struct workload {
    const char *bootstrap;
    const char *topic;
    uint64_t records;
    size_t size;
    const char *acks;
    const char *linger_ms;
    const char *batch_bytes;
    const char *idempotence;
};

/* What one timed run measured. */
struct outcome {
    double seconds;
    uint64_t acked;
    uint64_t errors;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *detail) {
    fprintf(stderr, "c_producer_bench: %s: %s\n", what, detail);
    exit(2);
}

/* ------------------------------------------------------------------------------ brook.h */

static void die_brook(const char *what, brook_error_t *err) {
    fprintf(stderr, "c_producer_bench: %s: %s\n", what, brook_error_message(err));
    brook_error_free(err);
    exit(2);
}

/* Sends `count` records and flushes; returns 0 if the flush reported every one delivered. */
static int brook_round(brook_producer_t *p, const struct workload *w, const uint8_t *payload,
                       uint64_t count) {
    brook_error_t *err = NULL;
    for (uint64_t i = 0; i < count; i++) {
        if (brook_producer_send(p, w->topic, -1, NULL, 0, payload, w->size, &err) != 0)
            die_brook("brook_producer_send", err);
    }
    if (brook_producer_flush(p, FLUSH_TIMEOUT_MS, &err) != 0) {
        fprintf(stderr, "c_producer_bench: brook_producer_flush: %s\n", brook_error_message(err));
        brook_error_free(err);
        return -1;
    }
    return 0;
}

static struct outcome run_brook(const struct workload *w, const uint8_t *payload) {
    const char *const config[] = {"acks",
                                  w->acks,
                                  "linger.ms",
                                  w->linger_ms,
                                  "batch.size",
                                  w->batch_bytes,
                                  "enable.idempotence",
                                  w->idempotence,
                                  "compression.type",
                                  "none",
                                  "queue.buffering.max.messages",
                                  "100000",
                                  NULL};
    brook_error_t *err = NULL;
    brook_producer_t *p = brook_producer_new(w->bootstrap, config, &err);
    if (p == NULL)
        die_brook("brook_producer_new", err);
    if (brook_round(p, w, payload, WARM_UP_RECORDS) != 0)
        die("warm-up", "not every record was acknowledged");

    double start = now_s();
    int status = brook_round(p, w, payload, w->records);
    struct outcome out = {now_s() - start, 0, 0};
    /* The flush reports the first failure only: all or nothing is what it can tell. */
    out.acked = status == 0 ? w->records : 0;
    out.errors = status == 0 ? 0 : 1;
    brook_producer_free(p);
    return out;
}

/* ---------------------------------------------------------------------------- librdkafka */

/* Delivery reports counted by the callback. */
struct reports {
    uint64_t acked;
    uint64_t errors;
};

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque) {
    (void)rk;
    struct reports *r = opaque;
    if (msg->err) {
        if (r->errors++ == 0)
            fprintf(stderr, "c_producer_bench: delivery failed: %s\n", rd_kafka_err2str(msg->err));
        return;
    }
    r->acked++;
}

static void set(rd_kafka_conf_t *conf, const char *key, const char *value) {
    char err[512];
    if (rd_kafka_conf_set(conf, key, value, err, sizeof err) != RD_KAFKA_CONF_OK)
        die(key, err);
}

/* Sends `count` records and flushes. */
static void rdkafka_round(rd_kafka_t *rk, rd_kafka_topic_t *rkt, const struct workload *w,
                          uint8_t *payload, uint64_t count) {
    for (uint64_t i = 0; i < count; i++) {
        while (rd_kafka_produce(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, payload, w->size,
                                NULL, 0, NULL) == -1) {
            rd_kafka_resp_err_t err = rd_kafka_last_error();
            if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                die("rd_kafka_produce", rd_kafka_err2str(err));
            rd_kafka_poll(rk, 1); /* queue full: serve delivery reports until there is room */
        }
        rd_kafka_poll(rk, 0);
    }
    if (rd_kafka_flush(rk, FLUSH_TIMEOUT_MS) != RD_KAFKA_RESP_ERR_NO_ERROR)
        fprintf(stderr, "c_producer_bench: rd_kafka_flush timed out\n");
}

static struct outcome run_rdkafka(const struct workload *w, uint8_t *payload) {
    struct reports r = {0, 0};
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", w->bootstrap);
    set(conf, "acks", w->acks);
    set(conf, "linger.ms", w->linger_ms);
    set(conf, "batch.size", w->batch_bytes);
    set(conf, "enable.idempotence", w->idempotence);
    set(conf, "compression.type", "none");
    set(conf, "queue.buffering.max.messages", "100000");
    set(conf, "log_level", "3");
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, &r);
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (rk == NULL)
        die("rd_kafka_new", err);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, w->topic, NULL);
    rdkafka_round(rk, rkt, w, payload, WARM_UP_RECORDS);
    if (r.acked != WARM_UP_RECORDS)
        die("warm-up", "not every record was acknowledged");
    r.acked = 0;
    r.errors = 0;

    double start = now_s();
    rdkafka_round(rk, rkt, w, payload, w->records);
    struct outcome out = {now_s() - start, r.acked, r.errors};
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return out;
}

int main(int argc, char **argv) {
    if (argc != 10)
        die("usage", "c_producer_bench brook|rdkafka BOOTSTRAP TOPIC RECORDS SIZE ACKS "
                     "LINGER_MS BATCH_BYTES IDEMPOTENCE");
    struct workload w = {argv[2], argv[3], strtoull(argv[4], NULL, 10), strtoul(argv[5], NULL, 10),
                         argv[6], argv[7],  argv[8],
                         argv[9]};
    if (w.records == 0 || w.size == 0)
        die("usage", "RECORDS and SIZE must be positive");
    uint8_t *payload = malloc(w.size);
    if (payload == NULL)
        die("malloc", "out of memory");
    for (size_t i = 0; i < w.size; i++)
        payload[i] = (uint8_t)('a' + i % 26);

    struct outcome out;
    if (strcmp(argv[1], "brook") == 0)
        out = run_brook(&w, payload);
    else if (strcmp(argv[1], "rdkafka") == 0)
        out = run_rdkafka(&w, payload);
    else
        die("usage", "the mode is brook or rdkafka");
    free(payload);

    printf("{\"mode\": \"%s\", \"records\": %" PRIu64 ", \"bytes\": %" PRIu64
           ", \"seconds\": %.6f, \"acked\": %" PRIu64 ", \"errors\": %" PRIu64 "}\n",
           argv[1], w.records, w.records * (uint64_t)w.size, out.seconds, out.acked, out.errors);
    return out.acked == w.records && out.errors == 0 ? 0 : 1;
}
