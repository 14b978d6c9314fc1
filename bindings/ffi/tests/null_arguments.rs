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
