//! Client errors as Python exceptions. The classes live in `brook/_errors.py` (so they can
//! also subclass `TimeoutError` and `ValueError`); this module picks one by the error's
//! Kafka code and raises it with the message, the Kafka error name, the code and whether a
//! retry may succeed.

use brook_client::{Error, ErrorCode};
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::PyModule;

static ERRORS: GILOnceCell<Py<PyModule>> = GILOnceCell::new();

/// The exception class for `err`, by name in `brook._errors`.
fn class_name(err: &Error) -> &'static str {
    match (err, err.code()) {
        (Error::Timeout(_), _) | (_, ErrorCode::RequestTimedOut) => "KafkaTimeoutError",
        (_, ErrorCode::ProducerFenced | ErrorCode::InvalidProducerEpoch) => "ProducerFencedError",
        (Error::Config(_), _) | (_, ErrorCode::InvalidConfig) => "ConfigError",
        _ => "BrookError",
    }
}

/// `err` as a Python exception (`brook.BrookError` or one of its subclasses).
pub fn to_py(err: Error) -> PyErr {
    Python::with_gil(|py| match build(py, &err) {
        Ok(exception) => exception,
        Err(import_failure) => import_failure,
    })
}

fn build(py: Python<'_>, err: &Error) -> PyResult<PyErr> {
    let module = ERRORS.get_or_try_init(py, || {
        PyModule::import(py, "brook._errors").map(Bound::unbind)
    })?;
    let class = module.bind(py).getattr(class_name(err))?;
    let code = err.code();
    let instance = class.call1((
        err.to_string(),
        code.name(),
        code.code(),
        err.is_retriable(),
    ))?;
    Ok(PyErr::from_value(instance))
}

/// Shorthand: a `brook_client` result as a Python result.
pub trait IntoPyResult<T> {
    /// Converts the error into the matching Python exception.
    fn py(self) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for Result<T, Error> {
    fn py(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}

/// A `brook.BrookError` (or subclass) for a configuration mistake found in the binding.
pub fn config_error(message: impl Into<String>) -> PyErr {
    to_py(Error::Config(message.into()))
}

/// A `brook.BrookError` for a call on a closed client.
pub fn closed() -> PyErr {
    to_py(Error::Closed)
}
