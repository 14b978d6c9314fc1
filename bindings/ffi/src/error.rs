//! `brook_error_t`: a Kafka error code and a message, handed to C through `brook_error_t **`.

use std::ffi::{c_char, CString};

use brook_client::ErrorCode;

/// An error: a Kafka error code (`brook_error_code`) and a message (`brook_error_message`).
/// Created by the library, owned by the caller, released with `brook_error_free`.
#[derive(Debug)]
pub struct BrookError {
    /// The Kafka wire error code (`-1` is UNKNOWN_SERVER_ERROR).
    code: i16,
    /// `NAME (code): detail`, NUL-terminated for C.
    message: CString,
}

impl BrookError {
    /// An error with `code` and `message` (interior NULs become spaces).
    pub(crate) fn new(code: ErrorCode, message: &str) -> BrookError {
        let text = format!("{} ({}): {}", code.name(), code.code(), message).replace('\0', " ");
        BrookError {
            code: code.code(),
            message: CString::new(text).expect("NULs were replaced"),
        }
    }

    /// A NULL argument named `what`.
    pub(crate) fn null_argument(what: &str) -> BrookError {
        BrookError::new(ErrorCode::InvalidRequest, &format!("{what} is NULL"))
    }

    /// An argument that is not what the call expects.
    pub(crate) fn invalid_argument(message: &str) -> BrookError {
        BrookError::new(ErrorCode::InvalidRequest, message)
    }

    /// A panic caught at the boundary.
    pub(crate) fn panic(call: &str) -> BrookError {
        BrookError::new(
            ErrorCode::UnknownServerError,
            &format!("internal error (panic) in {call}"),
        )
    }

    /// The wire error code.
    #[cfg(test)]
    pub(crate) fn code(&self) -> i16 {
        self.code
    }
}

impl From<brook_client::Error> for BrookError {
    fn from(err: brook_client::Error) -> BrookError {
        match &err {
            brook_client::Error::Kafka { code, message } => BrookError::new(*code, message),
            other => BrookError::new(other.code(), &other.to_string()),
        }
    }
}

/// The Kafka error code of `err` (0 if `err` is NULL).
///
/// # Safety
/// `err` is NULL or an error from this library not yet freed.
#[no_mangle]
pub unsafe extern "C" fn brook_error_code(err: *const BrookError) -> i16 {
    // SAFETY: the caller passes NULL or a live error.
    match unsafe { err.as_ref() } {
        Some(err) => err.code,
        None => 0,
    }
}

/// The message of `err`, NUL-terminated, in the form `NAME (code): detail`; an empty string
/// if `err` is NULL. Borrowed from `err`: valid until `brook_error_free(err)`.
///
/// # Safety
/// `err` is NULL or an error from this library not yet freed.
#[no_mangle]
pub unsafe extern "C" fn brook_error_message(err: *const BrookError) -> *const c_char {
    // SAFETY: the caller passes NULL or a live error.
    match unsafe { err.as_ref() } {
        Some(err) => err.message.as_ptr(),
        None => c"".as_ptr(),
    }
}

/// Frees `err` (NULL is ignored). Its message must not be used afterwards.
///
/// # Safety
/// `err` is NULL or an error from this library, freed at most once.
#[no_mangle]
pub unsafe extern "C" fn brook_error_free(err: *mut BrookError) {
    if !err.is_null() {
        // SAFETY: the caller passes an error created by `Box::into_raw`, freed once.
        drop(unsafe { Box::from_raw(err) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn client_errors_keep_their_kafka_code() {
        let err = BrookError::from(brook_client::Error::kafka(3, "t-0"));
        assert_eq!(err.code(), 3);
        let raw = Box::into_raw(Box::new(err));
        // SAFETY: `raw` is a live error until the free below.
        let message = unsafe { CStr::from_ptr(brook_error_message(raw)) };
        assert_eq!(
            message.to_str().unwrap(),
            "UNKNOWN_TOPIC_OR_PARTITION (3): t-0"
        );
        // SAFETY: as above; freed once.
        unsafe {
            assert_eq!(brook_error_code(raw), 3);
            brook_error_free(raw);
            assert_eq!(brook_error_code(std::ptr::null()), 0);
        }
    }
}
