/* headers_and_seek.c: sends N records with headers and create timestamps to partition 0 of
   a new topic (brook_producer_send_record), reads them back with a group-less consumer on
   an assigned partition (brook_consumer_new_assign, brook_consumer_assign), checks every
   offset, timestamp and header, then seeks back (brook_consumer_seek) and reads the last
   two again. Exits 0 if all checks hold (1 otherwise, or if records do not arrive within
   30 s). Usage: headers_and_seek BOOTSTRAP TOPIC N   (N >= 2) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "brook.h"

/* Create times are this plus the record's index: a minute ago, set by main(). Recent on
   purpose, since the broker's retention (7 days by default) deletes older records. */
static long long timestamp_base_ms;

static int fail(const char *what, brook_error_t *err) {
    fprintf(stderr, "headers_and_seek: %s failed: %s (code %d)\n", what, brook_error_message(err),
            (int)brook_error_code(err));
    brook_error_free(err);
    return 1;
}

static int produce(const char *bootstrap, const char *topic, long count) {
    const char *const config[] = {"acks", "all", "linger.ms", "5", NULL};
    brook_error_t *err = NULL;
    brook_producer_t *producer = brook_producer_new(bootstrap, config, &err);
    if (producer == NULL) {
        return fail("brook_producer_new", err);
    }
    for (long i = 0; i < count; i++) {
        char key[32];
        char value[32];
        char index[32];
        int key_len = snprintf(key, sizeof key, "key-%ld", i);
        int value_len = snprintf(value, sizeof value, "value-%ld", i);
        int index_len = snprintf(index, sizeof index, "%ld", i);
        const brook_header_t headers[] = {
            {.name = "index", .value = (const uint8_t *)index, .value_len = (size_t)index_len},
            {.name = "null", .value = NULL, .value_len = 0},
        };
        const brook_producer_record_t record = {
            .topic = topic,
            .partition = 0,
            .key = (const uint8_t *)key,
            .key_len = (size_t)key_len,
            .value = (const uint8_t *)value,
            .value_len = (size_t)value_len,
            .headers = headers,
            .header_count = 2,
            .timestamp_ms = timestamp_base_ms + i,
        };
        if (brook_producer_send_record(producer, &record, &err) != 0) {
            brook_producer_free(producer);
            return fail("brook_producer_send_record", err);
        }
    }
    if (brook_producer_flush(producer, 30000, &err) != 0) {
        brook_producer_free(producer);
        return fail("brook_producer_flush", err);
    }
    brook_producer_free(producer);
    return 0;
}

/* The next record (offset `expected`) within the deadline, or NULL (with a message) on
   failure or timeout. */
static brook_record_t *next(brook_consumer_t *consumer, long expected, time_t deadline) {
    brook_error_t *err = NULL;
    while (time(NULL) < deadline) {
        brook_record_t *record = brook_consumer_poll(consumer, 500, &err);
        if (record != NULL) {
            return record;
        }
        if (err != NULL) {
            fail("brook_consumer_poll", err);
            return NULL;
        }
    }
    fprintf(stderr, "headers_and_seek: offset %ld did not arrive within 30 s\n", expected);
    return NULL;
}

/* Checks that `record` is record number `i` as produce() sent it; 0 if so. */
static int check(const brook_record_t *record, long i) {
    char index[32];
    int index_len = snprintf(index, sizeof index, "%ld", i);
    const char *name = NULL;
    const uint8_t *value = NULL;
    size_t value_len = 0;
    if (brook_record_offset(record) != i || brook_record_partition(record) != 0) {
        fprintf(stderr, "headers_and_seek: expected offset %ld of partition 0, got %lld of %d\n",
                i, (long long)brook_record_offset(record), (int)brook_record_partition(record));
        return 1;
    }
    if (brook_record_timestamp(record) != timestamp_base_ms + i) {
        fprintf(stderr, "headers_and_seek: offset %ld has timestamp %lld\n", i,
                (long long)brook_record_timestamp(record));
        return 1;
    }
    if (brook_record_header_count(record) != 2) {
        fprintf(stderr, "headers_and_seek: offset %ld has %zu headers\n", i,
                brook_record_header_count(record));
        return 1;
    }
    if (brook_record_header(record, 0, &name, &value, &value_len) != 0 ||
        strcmp(name, "index") != 0 || value_len != (size_t)index_len ||
        memcmp(value, index, value_len) != 0) {
        fprintf(stderr, "headers_and_seek: offset %ld: wrong first header\n", i);
        return 1;
    }
    if (brook_record_header(record, 1, &name, &value, &value_len) != 0 ||
        strcmp(name, "null") != 0 || value != NULL || value_len != 0) {
        fprintf(stderr, "headers_and_seek: offset %ld: wrong second header\n", i);
        return 1;
    }
    if (brook_record_header(record, 2, &name, &value, &value_len) != -1 || name != NULL ||
        value != NULL || value_len != 0) {
        fprintf(stderr, "headers_and_seek: offset %ld: a third header\n", i);
        return 1;
    }
    return 0;
}

/* Reads records first..count-1 and checks each; 0 if all are right. */
static int read_and_check(brook_consumer_t *consumer, long first, long count) {
    time_t deadline = time(NULL) + 30;
    for (long i = first; i < count; i++) {
        brook_record_t *record = next(consumer, i, deadline);
        if (record == NULL) {
            return 1;
        }
        int wrong = check(record, i);
        brook_record_free(record);
        if (wrong) {
            return 1;
        }
    }
    return 0;
}

static int consume(const char *bootstrap, const char *topic, long count) {
    const char *const config[] = {"auto.offset.reset", "earliest", NULL};
    brook_error_t *err = NULL;
    brook_consumer_t *consumer = brook_consumer_new_assign(bootstrap, NULL, config, &err);
    if (consumer == NULL) {
        return fail("brook_consumer_new_assign", err);
    }
    const brook_topic_partition_t partitions[] = {{.topic = topic, .partition = 0}};
    if (brook_consumer_assign(consumer, partitions, 1, &err) != 0) {
        brook_consumer_free(consumer);
        return fail("brook_consumer_assign", err);
    }
    if (read_and_check(consumer, 0, count) != 0) {
        brook_consumer_free(consumer);
        return 1;
    }
    if (brook_consumer_seek(consumer, topic, 0, count - 2, &err) != 0) {
        brook_consumer_free(consumer);
        return fail("brook_consumer_seek", err);
    }
    if (read_and_check(consumer, count - 2, count) != 0) {
        brook_consumer_free(consumer);
        return 1;
    }
    /* Without a group there is nowhere to commit: an error, not a crash. */
    if (brook_consumer_commit(consumer, &err) != -1 || err == NULL) {
        fprintf(stderr, "headers_and_seek: a commit without a group succeeded\n");
        brook_error_free(err);
        brook_consumer_free(consumer);
        return 1;
    }
    brook_error_free(err);
    brook_consumer_free(consumer);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s BOOTSTRAP TOPIC N\n", argv[0]);
        return 2;
    }
    const char *bootstrap = argv[1];
    const char *topic = argv[2];
    long count = strtol(argv[3], NULL, 10);
    if (count < 2) {
        fprintf(stderr, "headers_and_seek: N must be at least 2\n");
        return 2;
    }
    timestamp_base_ms = (long long)time(NULL) * 1000 - 60000;
    if (produce(bootstrap, topic, count) != 0 || consume(bootstrap, topic, count) != 0) {
        return 1;
    }
    printf("headers, timestamps and seek checked on %ld records\n", count);
    return 0;
}
