/* producer.c: sends N records to a topic with brook.h, flushes, and exits 0.
   Usage: producer BOOTSTRAP TOPIC N */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "brook.h"

static int fail(const char *what, brook_error_t *err) {
    fprintf(stderr, "producer: %s failed: %s (code %d)\n", what, brook_error_message(err),
            (int)brook_error_code(err));
    brook_error_free(err);
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s BOOTSTRAP TOPIC N\n", argv[0]);
        return 2;
    }
    const char *bootstrap = argv[1];
    const char *topic = argv[2];
    long count = strtol(argv[3], NULL, 10);

    const char *const config[] = {"acks", "all", "linger.ms", "5", "client.id", "c-producer", NULL};
    brook_error_t *err = NULL;
    brook_producer_t *producer = brook_producer_new(bootstrap, config, &err);
    if (producer == NULL) {
        return fail("brook_producer_new", err);
    }
    for (long i = 0; i < count; i++) {
        char key[32];
        char value[64];
        int key_len = snprintf(key, sizeof key, "key-%ld", i % 8);
        int value_len = snprintf(value, sizeof value, "value-%ld", i);
        if (brook_producer_send(producer, topic, -1, (const uint8_t *)key, (size_t)key_len,
                                (const uint8_t *)value, (size_t)value_len, &err) != 0) {
            brook_producer_free(producer);
            return fail("brook_producer_send", err);
        }
    }
    if (brook_producer_flush(producer, 30000, &err) != 0) {
        brook_producer_free(producer);
        return fail("brook_producer_flush", err);
    }
    brook_producer_free(producer);
    printf("produced %ld records to %s\n", count, topic);
    return 0;
}
