//! `brook-ffi`: Brook's C library, a thin C ABI over [`brook_client::blocking`]. It is a
//! producer (records with headers and timestamps) and a consumer (a group member, or a
//! reader of partitions assigned by hand, with seek) behind opaque handles; it is not an
//! admin client and has no transactions yet. The header `brook.h` is generated from this crate by cbindgen at
//! build time (`$OUT_DIR/brook.h`, copied to `<target>/include/brook.h`).
//!
//! Conventions of every call (they are repeated in the header):
//!
//! - **Errors.** A fallible call takes `brook_error_t **err` last. On entry it sets `*err` to
//!   NULL; on failure it stores a new error there (a Kafka error code and a message) that the
//!   caller owns and frees with `brook_error_free`. `err` itself may be NULL when the caller
//!   does not want details. Calls returning `int` return 0 on success and -1 on failure;
//!   calls returning a pointer return NULL on failure.
//! - **Ownership.** Handles returned by `*_new` and `brook_consumer_poll` belong to the
//!   caller and are released with the matching `*_free` (NULL is accepted and ignored).
//!   Strings and byte pointers returned by accessors are borrowed from their handle and
//!   stay valid until that handle is freed. Arguments are only borrowed during the call.
//! - **Safety net.** NULL arguments are reported as `INVALID_REQUEST` errors, and a panic
//!   inside the library is caught and reported as `UNKNOWN_SERVER_ERROR`; neither unwinds
//!   into C. Handles are not thread-safe: use one from one thread at a time.

mod consumer;
mod error;
mod producer;
mod util;

pub use consumer::{
    brook_consumer_assign, brook_consumer_commit, brook_consumer_free, brook_consumer_new,
    brook_consumer_new_assign, brook_consumer_poll, brook_consumer_seek, brook_record_free,
    brook_record_header, brook_record_header_count, brook_record_key, brook_record_offset,
    brook_record_partition, brook_record_timestamp, brook_record_topic, brook_record_value,
    BrookConsumer, BrookRecord, BrookTopicPartition,
};
pub use error::{brook_error_code, brook_error_free, brook_error_message, BrookError};
pub use producer::{
    brook_producer_flush, brook_producer_free, brook_producer_new, brook_producer_send,
    brook_producer_send_record, BrookHeader, BrookProducer, BrookProducerRecord,
};
