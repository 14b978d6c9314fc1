/* group_consumer.c: joins a consumer group, reads N records from a topic, commits them and
   exits 0 (1 if they do not arrive within 30 s). Usage: group_consumer BOOTSTRAP GROUP TOPIC N */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "brook.h"

static int fail(const char *what, brook_error_t *err) {
    fprintf(stderr, "group_consumer: %s failed: %s (code %d)\n", what, brook_error_message(err),
            (int)brook_error_code(err));
    brook_error_free(err);
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s BOOTSTRAP GROUP TOPIC N\n", argv[0]);
        return 2;
    }
    const char *bootstrap = argv[1];
    const char *group = argv[2];
    const char *const topics[] = {argv[3]};
    long count = strtol(argv[4], NULL, 10);

    const char *const config[] = {"auto.offset.reset", "earliest", "session.timeout.ms", "10000",
                                  "heartbeat.interval.ms", "1000", NULL};
    brook_error_t *err = NULL;
    brook_consumer_t *consumer = brook_consumer_new(bootstrap, group, topics, 1, config, &err);
    if (consumer == NULL) {
        return fail("brook_consumer_new", err);
    }
    time_t deadline = time(NULL) + 30;
    long received = 0;
    while (received < count && time(NULL) < deadline) {
        brook_record_t *record = brook_consumer_poll(consumer, 500, &err);
        if (record == NULL) {
            if (err != NULL) {
                brook_consumer_free(consumer);
                return fail("brook_consumer_poll", err);
            }
            continue; /* timeout */
        }
        size_t key_len = 0;
        size_t value_len = 0;
        const uint8_t *key = brook_record_key(record, &key_len);
        const uint8_t *value = brook_record_value(record, &value_len);
        if (received < 3 || received == count - 1) {
            printf("%s-%d@%lld: %.*s = %.*s\n", brook_record_topic(record),
                   (int)brook_record_partition(record), (long long)brook_record_offset(record),
                   (int)key_len, key ? (const char *)key : "", (int)value_len,
                   value ? (const char *)value : "");
        }
        brook_record_free(record);
        received++;
    }
    if (received < count) {
        fprintf(stderr, "group_consumer: only %ld of %ld records arrived\n", received, count);
        brook_consumer_free(consumer);
        return 1;
    }
    if (brook_consumer_commit(consumer, &err) != 0) {
        brook_consumer_free(consumer);
        return fail("brook_consumer_commit", err);
    }
    brook_consumer_free(consumer);
    printf("consumed and committed %ld records\n", received);
    return 0;
}
