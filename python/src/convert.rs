//! Conversions of Python arguments: bytes-like values, headers, config dictionaries,
//! timeouts and topic-partitions.

use std::time::Duration;

use brook_client::Header;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyString, PyTuple};

use crate::types::TopicPartition;

/// A key, value or header value: `bytes`, `bytearray`, `str` (UTF-8) or `None`.
pub fn bytes_arg(value: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<Vec<u8>>> {
    let Some(value) = value else {
        return Ok(None);
    };
    if let Ok(bytes) = value.downcast::<PyBytes>() {
        return Ok(Some(bytes.as_bytes().to_vec()));
    }
    if value.is_none() {
        return Ok(None);
    }
    if let Ok(text) = value.downcast::<PyString>() {
        return Ok(Some(text.to_str()?.as_bytes().to_vec()));
    }
    if let Ok(array) = value.downcast::<PyByteArray>() {
        return Ok(Some(array.to_vec()));
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be bytes, bytearray, str or None, not {}",
        value.get_type().name()?
    )))
}

/// Headers: a list of `(str, bytes | str | None)` pairs, or a dict of them.
pub fn headers_arg(headers: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<Header>> {
    let Some(headers) = headers.filter(|h| !h.is_none()) else {
        return Ok(Vec::new());
    };
    let pairs: Vec<Bound<'_, PyAny>> = if let Ok(dict) = headers.downcast::<PyDict>() {
        dict.items().iter().collect()
    } else {
        headers.try_iter()?.collect::<PyResult<_>>()?
    };
    let mut out = Vec::with_capacity(pairs.len());
    for pair in pairs {
        let pair = pair.downcast::<PyTuple>().map_err(|_| {
            PyTypeError::new_err("headers must be (str, bytes) pairs or a dict of them")
        })?;
        if pair.len() != 2 {
            return Err(PyTypeError::new_err(
                "a header is a (key, value) pair of two items",
            ));
        }
        let key: String = pair
            .get_item(0)?
            .extract()
            .map_err(|_| PyTypeError::new_err("a header key must be a str"))?;
        let value = bytes_arg(Some(&pair.get_item(1)?), "a header value")?;
        out.push(Header { key, value });
    }
    Ok(out)
}

/// A config value as the property string the client parses (`True` → `"true"`).
pub fn config_value(value: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(flag) = value.extract::<bool>() {
        return Ok(if flag { "true" } else { "false" }.to_string());
    }
    if let Ok(text) = value.downcast::<PyString>() {
        return Ok(text.to_str()?.to_string());
    }
    Ok(value.str()?.to_str()?.to_string())
}

/// A `config={...}` dictionary as (property, value) pairs, in order.
pub fn config_pairs(config: Option<&Bound<'_, PyDict>>) -> PyResult<Vec<(String, String)>> {
    let Some(config) = config else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(config.len());
    for (key, value) in config.iter() {
        let key: String = key
            .extract()
            .map_err(|_| PyTypeError::new_err("config keys must be str property names"))?;
        out.push((key, config_value(&value)?));
    }
    Ok(out)
}

/// A timeout in seconds (`None`: no limit) as a duration; negative is refused.
pub fn timeout_arg(seconds: Option<f64>) -> PyResult<Option<Duration>> {
    match seconds {
        None => Ok(None),
        Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) if s == f64::INFINITY => Ok(None),
        Some(s) => Err(PyValueError::new_err(format!(
            "timeout must be a non-negative number of seconds or None, not {s}"
        ))),
    }
}

/// A `brook.TopicPartition` or a `(topic, partition)` tuple.
pub fn tp_arg(value: &Bound<'_, PyAny>) -> PyResult<brook_client::TopicPartition> {
    if let Ok(tp) = value.downcast::<TopicPartition>() {
        return Ok(tp.get().inner.clone());
    }
    let (topic, partition): (String, i32) = value.extract().map_err(|_| {
        PyTypeError::new_err("expected a brook.TopicPartition or a (topic, partition) tuple")
    })?;
    Ok(brook_client::TopicPartition::new(&topic, partition))
}

/// A list of topic-partitions (see [`tp_arg`]).
pub fn tps_arg(values: &Bound<'_, PyAny>) -> PyResult<Vec<brook_client::TopicPartition>> {
    if values.downcast::<PyString>().is_ok() {
        return Err(PyTypeError::new_err(
            "expected a list of TopicPartition or (topic, partition) tuples",
        ));
    }
    values.try_iter()?.map(|v| tp_arg(&v?)).collect()
}

/// A list of topic names (a lone `str` is refused: it would be taken letter by letter).
pub fn topics_arg(values: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    if values.downcast::<PyString>().is_ok() {
        return Err(PyTypeError::new_err(
            "topics must be a list of topic names, not a str",
        ));
    }
    values.try_iter()?.map(|v| v?.extract()).collect()
}
