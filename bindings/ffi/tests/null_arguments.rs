//! The C API's safety net without a broker: NULL and invalid arguments become
//! INVALID_REQUEST (42) errors, bad properties INVALID_CONFIG (40), and a NULL `err` is
//! allowed everywhere.

use std::ffi::{c_char, CStr};
use std::ptr::{null, null_mut};

use brook_ffi::*;

const INVALID_CONFIG: i16 = 40;
const INVALID_REQUEST: i16 = 42;

/// The code and message of `err`, freeing it; panics if there is none.
fn take(err: *mut BrookError) -> (i16, String) {
    assert!(!err.is_null(), "an error was reported");
    // SAFETY: `err` is a live error from the library, freed once here.
    unsafe {
        let code = brook_error_code(err);
        let message = CStr::from_ptr(brook_error_message(err))
            .to_string_lossy()
            .into_owned();
        brook_error_free(err);
        (code, message)
    }
}

#[test]
fn producer_null_and_invalid_arguments_are_errors() {
    let mut err = null_mut();
    // SAFETY: every pointer is NULL or valid; errors are freed by `take`.
    unsafe {
        assert!(brook_producer_new(null(), null(), &mut err).is_null());
        assert_eq!(take(err).0, INVALID_REQUEST);

        let bad: [*const c_char; 3] = [c"no.such.property".as_ptr(), c"1".as_ptr(), null()];
        assert!(brook_producer_new(c"127.0.0.1:1".as_ptr(), bad.as_ptr(), &mut err).is_null());
        let (code, message) = take(err);
        assert_eq!(code, INVALID_CONFIG);
        assert!(message.contains("no.such.property"), "{message}");

        let status = brook_producer_send(
            null_mut(),
            c"t".as_ptr(),
            -1,
            null(),
            0,
            null(),
            0,
            &mut err,
        );
        assert_eq!(status, -1);
        assert_eq!(take(err).0, INVALID_REQUEST);
        assert_eq!(
            brook_producer_send(null_mut(), null(), -1, null(), 0, null(), 0, null_mut()),
            -1
        );
        assert_eq!(brook_producer_flush(null_mut(), 0, &mut err), -1);
        assert_eq!(take(err).0, INVALID_REQUEST);
        brook_producer_free(null_mut());

        let producer = brook_producer_new(c"127.0.0.1:1".as_ptr(), null(), &mut err);
        assert!(!producer.is_null() && err.is_null());
        assert_eq!(
            brook_producer_send(producer, null(), -1, null(), 0, null(), 0, &mut err),
            -1
        );
        assert_eq!(take(err).0, INVALID_REQUEST);
        let status =
            brook_producer_send(producer, c"t".as_ptr(), -1, null(), 5, null(), 0, &mut err);
        assert_eq!(status, -1, "a NULL key with a nonzero length");
        assert_eq!(take(err).0, INVALID_REQUEST);
        let status =
            brook_producer_send(producer, c"t".as_ptr(), -2, null(), 0, null(), 0, &mut err);
        assert_eq!(status, -1, "partition -2");
        assert_eq!(take(err).0, INVALID_REQUEST);
        brook_producer_free(producer);
    }
}

#[test]
fn consumer_and_record_null_arguments_are_errors() {
    let mut err = null_mut();
    let topics = [c"t".as_ptr()];
    let bootstrap = c"127.0.0.1:1".as_ptr();
    // SAFETY: every pointer is NULL or valid; errors are freed by `take`.
    unsafe {
        let consumer = brook_consumer_new(bootstrap, null(), topics.as_ptr(), 1, null(), &mut err);
        assert!(consumer.is_null());
        assert_eq!(take(err).0, INVALID_REQUEST);
        let group = c"g".as_ptr();
        assert!(brook_consumer_new(bootstrap, group, null(), 1, null(), &mut err).is_null());
        assert_eq!(take(err).0, INVALID_REQUEST);
        assert!(
            brook_consumer_new(bootstrap, group, topics.as_ptr(), 0, null(), &mut err).is_null()
        );
        assert_eq!(take(err).0, INVALID_REQUEST);
        let null_topic = [null()];
        assert!(
            brook_consumer_new(bootstrap, group, null_topic.as_ptr(), 1, null(), &mut err)
                .is_null()
        );
        assert_eq!(take(err).0, INVALID_REQUEST);

        assert!(brook_consumer_poll(null_mut(), 0, &mut err).is_null());
        assert_eq!(take(err).0, INVALID_REQUEST);
        assert_eq!(brook_consumer_commit(null_mut(), &mut err), -1);
        assert_eq!(take(err).0, INVALID_REQUEST);
        brook_consumer_free(null_mut());

        let mut len = 7;
        assert!(brook_record_topic(null()).is_null());
        assert_eq!(brook_record_partition(null()), -1);
        assert_eq!(brook_record_offset(null()), -1);
        assert!(brook_record_key(null(), &mut len).is_null());
        assert_eq!(len, 0);
        assert!(brook_record_value(null(), null_mut()).is_null());
        brook_record_free(null_mut());

        assert_eq!(brook_error_code(null()), 0);
        assert_eq!(CStr::from_ptr(brook_error_message(null())).to_bytes(), b"");
        brook_error_free(null_mut());
    }
}

#[test]
fn send_record_assign_seek_and_header_arguments_are_checked() {
    let mut err = null_mut();
    let bootstrap = c"127.0.0.1:1".as_ptr();
    let record = BrookProducerRecord {
        topic: c"t".as_ptr(),
        partition: -1,
        key: null(),
        key_len: 0,
        value: null(),
        value_len: 0,
        headers: null(),
        header_count: 1,
        timestamp_ms: 0,
    };
    // SAFETY: every pointer is NULL or valid; errors are freed by `take`.
    unsafe {
        assert_eq!(
            brook_producer_send_record(null_mut(), &record, &mut err),
            -1
        );
        assert_eq!(take(err).0, INVALID_REQUEST);
        let producer = brook_producer_new(bootstrap, null(), &mut err);
        assert!(!producer.is_null() && err.is_null());
        assert_eq!(brook_producer_send_record(producer, null(), &mut err), -1);
        assert_eq!(take(err).0, INVALID_REQUEST);
        let status = brook_producer_send_record(producer, &record, &mut err);
        assert_eq!(status, -1, "headers NULL with header_count 1");
        assert_eq!(take(err).0, INVALID_REQUEST);
        let nameless = [BrookHeader {
            name: null(),
            value: null(),
            value_len: 0,
        }];
        let record = BrookProducerRecord {
            headers: nameless.as_ptr(),
            ..record
        };
        assert_eq!(brook_producer_send_record(producer, &record, &mut err), -1);
        let (code, message) = take(err);
        assert_eq!(code, INVALID_REQUEST);
        assert!(message.contains("header name"), "{message}");
        brook_producer_free(producer);

        let partitions = [BrookTopicPartition {
            topic: c"t".as_ptr(),
            partition: 0,
        }];
        assert_eq!(
            brook_consumer_assign(null_mut(), partitions.as_ptr(), 1, &mut err),
            -1
        );
        assert_eq!(take(err).0, INVALID_REQUEST);
        let topic = c"t".as_ptr();
        assert_eq!(brook_consumer_seek(null_mut(), topic, 0, 0, &mut err), -1);
        assert_eq!(take(err).0, INVALID_REQUEST);

        let consumer = brook_consumer_new_assign(bootstrap, null(), null(), &mut err);
        assert!(!consumer.is_null() && err.is_null());
        assert_eq!(brook_consumer_assign(consumer, null(), 1, &mut err), -1);
        assert_eq!(take(err).0, INVALID_REQUEST);
        let negative = [BrookTopicPartition {
            topic: c"t".as_ptr(),
            partition: -1,
        }];
        assert_eq!(
            brook_consumer_assign(consumer, negative.as_ptr(), 1, &mut err),
            -1
        );
        assert_eq!(take(err).0, INVALID_REQUEST);
        assert_eq!(
            brook_consumer_seek(consumer, topic, 0, 0, &mut err),
            -1,
            "seek on a partition not assigned"
        );
        let _ = take(err);
        assert_eq!(
            brook_consumer_assign(consumer, partitions.as_ptr(), 1, &mut err),
            0
        );
        assert!(err.is_null());
        assert_eq!(brook_consumer_seek(consumer, topic, 0, -5, &mut err), -1);
        assert_eq!(take(err).0, INVALID_REQUEST);
        assert_eq!(brook_consumer_seek(consumer, topic, 0, 7, &mut err), 0);
        assert_eq!(brook_consumer_assign(consumer, null(), 0, &mut err), 0);
        brook_consumer_free(consumer);

        let topics = [c"t".as_ptr()];
        let group = c"g".as_ptr();
        let member = brook_consumer_new(bootstrap, group, topics.as_ptr(), 1, null(), &mut err);
        assert!(!member.is_null() && err.is_null());
        assert_eq!(
            brook_consumer_assign(member, partitions.as_ptr(), 1, null_mut()),
            -1,
            "a group member cannot assign by hand"
        );
        brook_consumer_free(member);

        assert_eq!(brook_record_timestamp(null()), -1);
        assert_eq!(brook_record_header_count(null()), 0);
        let mut name = c"x".as_ptr();
        let mut value = c"x".as_ptr().cast::<u8>();
        let mut len = 7;
        assert_eq!(
            brook_record_header(null(), 0, &mut name, &mut value, &mut len),
            -1
        );
        assert!(name.is_null() && value.is_null() && len == 0);
        assert_eq!(
            brook_record_header(null(), 0, null_mut(), null_mut(), null_mut()),
            -1
        );
    }
}
