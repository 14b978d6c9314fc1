//! The boundary's plumbing: catching panics, reporting errors through `brook_error_t **`,
//! and reading C strings and the NULL-terminated config pair arrays.

use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::BrookError;

/// Most key/value pairs read from one `config_pairs` array: a bound on the scan of an
/// array whose terminating NULL is missing.
pub(crate) const CONFIG_PAIRS_MAX: usize = 4096;

/// Runs `body`, turning a panic into an error; stores any error in `*err` (if `err` is not
/// NULL, after clearing it on entry) and returns `failed` then.
///
/// # Safety
/// `err` is NULL or points to writable storage for one pointer.
pub(crate) unsafe fn guard<T>(
    call: &str,
    err: *mut *mut BrookError,
    failed: T,
    body: impl FnOnce() -> Result<T, BrookError>,
) -> T {
    if !err.is_null() {
        // SAFETY: the caller passes writable storage or NULL.
        unsafe { *err = std::ptr::null_mut() };
    }
    let outcome = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(outcome) => outcome,
        Err(_) => Err(BrookError::panic(call)),
    };
    match outcome {
        Ok(value) => value,
        Err(error) => {
            if !err.is_null() {
                // SAFETY: as above.
                unsafe { *err = Box::into_raw(Box::new(error)) };
            }
            failed
        }
    }
}

/// Runs a destructor, swallowing a panic (a free call has nowhere to report one).
pub(crate) fn guard_free(body: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(body));
}

/// The UTF-8 string at `ptr`, named `what` in errors.
///
/// # Safety
/// `ptr` is NULL or a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn c_str<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, BrookError> {
    if ptr.is_null() {
        return Err(BrookError::null_argument(what));
    }
    // SAFETY: the caller passes a NUL-terminated string.
    unsafe { CStr::from_ptr(ptr) }
        .to_str()
        .map_err(|_| BrookError::invalid_argument(&format!("{what} is not UTF-8")))
}

/// The bytes at `ptr` (`len` of them); NULL means none (a null key or value).
///
/// # Safety
/// `ptr` is NULL or points to `len` readable bytes.
pub(crate) unsafe fn c_bytes(
    ptr: *const u8,
    len: usize,
    what: &str,
) -> Result<Option<Vec<u8>>, BrookError> {
    if ptr.is_null() {
        if len != 0 {
            return Err(BrookError::invalid_argument(&format!(
                "{what} is NULL but its length is {len}"
            )));
        }
        return Ok(None);
    }
    // SAFETY: the caller passes `len` readable bytes.
    Ok(Some(
        unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec(),
    ))
}

/// The key/value pairs of a NULL-terminated array of alternating keys and values; NULL
/// means no pairs.
///
/// # Safety
/// `pairs` is NULL or an array of NUL-terminated strings ended by a NULL key.
pub(crate) unsafe fn config_pairs<'a>(
    pairs: *const *const c_char,
) -> Result<Vec<(&'a str, &'a str)>, BrookError> {
    let mut out = Vec::new();
    if pairs.is_null() {
        return Ok(out);
    }
    for index in 0..CONFIG_PAIRS_MAX {
        // SAFETY: the array holds a key or the terminating NULL at every even index reached.
        let key = unsafe { *pairs.add(2 * index) };
        if key.is_null() {
            return Ok(out);
        }
        // SAFETY: a non-NULL key is followed by its value slot.
        let value = unsafe { *pairs.add(2 * index + 1) };
        // SAFETY: both are NULL or NUL-terminated strings.
        let key = unsafe { c_str(key, "a config key") }?;
        if value.is_null() {
            return Err(BrookError::invalid_argument(&format!(
                "config key {key} has no value (NULL)"
            )));
        }
        // SAFETY: as above.
        let value = unsafe { c_str(value, "a config value") }?;
        out.push((key, value));
    }
    Err(BrookError::invalid_argument(&format!(
        "config_pairs has more than {CONFIG_PAIRS_MAX} pairs (missing NULL terminator?)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_pairs_read_until_null_and_refuse_a_missing_value() {
        let pairs = [c"acks".as_ptr(), c"all".as_ptr(), std::ptr::null()];
        // SAFETY: a NULL-terminated array of C strings.
        let read = unsafe { config_pairs(pairs.as_ptr()) }.unwrap();
        assert_eq!(read, vec![("acks", "all")]);
        let missing = [c"acks".as_ptr(), std::ptr::null(), std::ptr::null()];
        // SAFETY: as above.
        let err = unsafe { config_pairs(missing.as_ptr()) }.unwrap_err();
        assert_eq!(err.code(), 42);
        // SAFETY: NULL means no pairs.
        assert!(unsafe { config_pairs(std::ptr::null()) }
            .unwrap()
            .is_empty());
    }

    #[test]
    fn guard_turns_a_panic_into_an_error() {
        let mut err: *mut BrookError = std::ptr::null_mut();
        // SAFETY: `err` is writable.
        let status = unsafe {
            guard("test", &mut err, -1, || -> Result<i32, _> {
                panic!("boom")
            })
        };
        assert_eq!(status, -1);
        assert!(!err.is_null());
        // SAFETY: `err` came from the guard.
        unsafe {
            assert_eq!(crate::brook_error_code(err), -1);
            crate::brook_error_free(err);
        }
    }
}
