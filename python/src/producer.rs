//! `brook.Producer` and `brook.DeliveryFuture`.
//!
//! `send` is the hot path: with the topic's metadata cached and room in the queue it hands
//! the record to the client's background task without waiting and without releasing the
//! GIL (`blocking::Producer::try_send`); only otherwise does it release the GIL and wait.

use std::sync::Mutex;
use std::time::Duration;

use brook_client::blocking::{self, Delivery, TrySend};
use brook_client::{Error, ProducerConfig, ProducerRecord};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::convert::{bytes_arg, config_pairs, config_value, headers_arg, timeout_arg};
use crate::errors::{closed, config_error, IntoPyResult};
use crate::types::RecordMetadata;

/// Longest single wait while the GIL is released, so Ctrl-C is noticed between waits.
const WAIT_SLICE: Duration = Duration::from_millis(200);

/// A producer for Brook or any Kafka-compatible broker: batching (`linger_ms`,
/// `batch_size`), compression, acks, retries and idempotence (on by default, with
/// `acks="all"`). Keys go to partitions with the Java client's murmur2 partitioner, so the
/// same key lands in the same partition as with other Kafka clients.
///
/// Any librdkafka/Java producer property can be passed in `config` (`{"batch.size":
/// 65536}`); the keyword arguments override it. Setting `acks` to 0 or 1 turns idempotence
/// off unless it is asked for explicitly, as in the Java client.
///
/// Thread-safe: several threads may `send` at once. Use it as a context manager, or call
/// `close()`, so what was sent is flushed.
#[pyclass(module = "brook")]
pub struct Producer {
    inner: Option<blocking::Producer>,
}

impl Producer {
    fn inner(&self) -> PyResult<&blocking::Producer> {
        self.inner.as_ref().ok_or_else(closed)
    }
}

/// Applies the keyword arguments and `config` to a producer config.
struct ProducerOptions<'a, 'py> {
    acks: Option<&'a Bound<'py, PyAny>>,
    named: Vec<(&'static str, Option<&'a Bound<'py, PyAny>>)>,
    config: Option<&'a Bound<'py, PyDict>>,
}

impl ProducerOptions<'_, '_> {
    fn build(self, bootstrap: &str) -> PyResult<ProducerConfig> {
        let mut config = ProducerConfig::new(bootstrap);
        let pairs = config_pairs(self.config)?;
        let mut idempotence_set = false;
        for (key, value) in &pairs {
            idempotence_set |= key == "enable.idempotence";
            config.set(key, value).py()?;
        }
        for (key, value) in self.named {
            if let Some(value) = value.filter(|v| !v.is_none()) {
                idempotence_set |= key == "enable.idempotence";
                config.set(key, &config_value(value)?).py()?;
            }
        }
        if let Some(acks) = self.acks.filter(|v| !v.is_none()) {
            config.set("acks", &config_value(acks)?).py()?;
        }
        let acks_set = self.acks.is_some_and(|a| !a.is_none())
            || pairs
                .iter()
                .any(|(k, _)| k == "acks" || k == "request.required.acks");
        if acks_set && !idempotence_set && config.acks != brook_client::Acks::All {
            config.enable_idempotence = false;
        }
        config.validate().py()?;
        Ok(config)
    }
}

#[pymethods]
impl Producer {
    /// Starts a producer bootstrapping from `bootstrap_servers` (`"host:port[,host:port]"`).
    /// Brokers are contacted at the first `send`.
    #[new]
    #[pyo3(signature = (bootstrap_servers, *, acks=None, linger_ms=None, batch_size=None,
        compression=None, retries=None, enable_idempotence=None, client_id=None,
        request_timeout_ms=None, delivery_timeout_ms=None, config=None))]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments, all optional
    fn new(
        py: Python<'_>,
        bootstrap_servers: &str,
        acks: Option<&Bound<'_, PyAny>>,
        linger_ms: Option<&Bound<'_, PyAny>>,
        batch_size: Option<&Bound<'_, PyAny>>,
        compression: Option<&Bound<'_, PyAny>>,
        retries: Option<&Bound<'_, PyAny>>,
        enable_idempotence: Option<&Bound<'_, PyAny>>,
        client_id: Option<&Bound<'_, PyAny>>,
        request_timeout_ms: Option<&Bound<'_, PyAny>>,
        delivery_timeout_ms: Option<&Bound<'_, PyAny>>,
        config: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Producer> {
        let options = ProducerOptions {
            acks,
            named: vec![
                ("linger.ms", linger_ms),
                ("batch.size", batch_size),
                ("compression.type", compression),
                ("retries", retries),
                ("enable.idempotence", enable_idempotence),
                ("client.id", client_id),
                ("request.timeout.ms", request_timeout_ms),
                ("delivery.timeout.ms", delivery_timeout_ms),
            ],
            config,
        };
        let config = options.build(bootstrap_servers)?;
        let inner = py.allow_threads(|| blocking::Producer::new(config)).py()?;
        Ok(Producer { inner: Some(inner) })
    }

    /// Queues a record for `topic` and returns the `DeliveryFuture` of its delivery report.
    /// `value`, `key` and header values are `bytes`, `bytearray`, `str` (sent as UTF-8) or
    /// `None`; `headers` is a list of `(str, value)` pairs or a dict; `partition` overrides
    /// the partitioner; `timestamp` is the create time in ms since the epoch (default now).
    /// Returns at once unless the topic's metadata must be fetched or the queue is full.
    #[pyo3(signature = (topic, value=None, key=None, *, partition=None, timestamp=None, headers=None))]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments, all optional
    fn send(
        &self,
        py: Python<'_>,
        topic: &Bound<'_, PyString>,
        value: Option<&Bound<'_, PyAny>>,
        key: Option<&Bound<'_, PyAny>>,
        partition: Option<i32>,
        timestamp: Option<i64>,
        headers: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<DeliveryFuture> {
        let inner = self.inner()?;
        if partition.is_some_and(|p| p < 0) {
            return Err(config_error(format!(
                "partition must be a partition index (0 or more), not {}",
                partition.unwrap_or_default()
            )));
        }
        let record = ProducerRecord {
            topic: topic.to_str()?.to_string(),
            partition,
            key: bytes_arg(key, "key")?,
            value: bytes_arg(value, "value")?,
            headers: headers_arg(headers)?,
            timestamp,
        };
        let delivery = match inner.try_send(record) {
            TrySend::Queued(delivery) => delivery,
            TrySend::Failed(err) => return Err(err).py(),
            TrySend::WouldBlock(record) => py.allow_threads(|| inner.send(record)).py()?,
        };
        Ok(DeliveryFuture {
            state: Mutex::new(DeliveryState::Pending(delivery)),
        })
    }

    /// Sends everything queued now and waits until every record is answered, at most
    /// `timeout` seconds (`None`: no limit; raises `KafkaTimeoutError` after it). Delivery
    /// failures are reported by each record's `DeliveryFuture`, not here.
    #[pyo3(signature = (timeout=None))]
    fn flush(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let inner = self.inner()?;
        let limit = timeout_arg(timeout)?;
        let deadline = limit.map(|l| std::time::Instant::now() + l);
        loop {
            let slice = match deadline {
                Some(d) => d.saturating_duration_since(std::time::Instant::now()),
                None => WAIT_SLICE,
            }
            .min(WAIT_SLICE);
            match py.allow_threads(|| inner.flush(Some(slice))) {
                Ok(()) => return Ok(()),
                Err(Error::Timeout(_))
                    if deadline.is_none_or(|d| std::time::Instant::now() < d) =>
                {
                    py.check_signals()?;
                }
                Err(Error::Timeout(_)) => {
                    return Err(Error::Timeout(format!(
                        "flush did not finish within {timeout:?} s"
                    )))
                    .py()
                }
                Err(err) => return Err(err).py(),
            }
        }
    }

    /// The number of partitions of `topic` (fetching its metadata if needed).
    fn partition_count(&self, py: Python<'_>, topic: &str) -> PyResult<i32> {
        let inner = self.inner()?;
        py.allow_threads(|| inner.partition_count(topic)).py()
    }

    /// Flushes (at most `timeout` seconds, default `delivery.timeout.ms`) and stops the
    /// producer; later calls raise `BrookError`. Closing twice is harmless.
    #[pyo3(signature = (timeout=None))]
    fn close(&mut self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let Some(inner) = self.inner.as_ref() else {
            return Ok(());
        };
        let flushed = match timeout {
            Some(_) => self.flush(py, timeout),
            None => py.allow_threads(|| inner.flush(None)).py(),
        };
        let inner = self.inner.take();
        py.allow_threads(move || drop(inner));
        flushed
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(
        &mut self,
        py: Python<'_>,
        _args: &Bound<'_, pyo3::types::PyTuple>,
    ) -> PyResult<bool> {
        self.close(py, None)?;
        Ok(false)
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        // Dropping flushes, which may wait: do not hold the GIL meanwhile.
        if let Some(inner) = self.inner.take() {
            Python::with_gil(|py| py.allow_threads(move || drop(inner)));
        }
    }
}

enum DeliveryState {
    Pending(Delivery),
    Done(Result<brook_client::RecordMetadata, Error>),
}

/// The pending delivery report of one `send`: `result()` waits for it.
#[pyclass(module = "brook", frozen)]
pub struct DeliveryFuture {
    state: Mutex<DeliveryState>,
}

impl DeliveryFuture {
    /// The outcome if known, polling the delivery once.
    fn settle(state: &mut DeliveryState) -> Option<&Result<brook_client::RecordMetadata, Error>> {
        if let DeliveryState::Pending(delivery) = state {
            let answer = delivery.try_take()?;
            *state = DeliveryState::Done(answer);
        }
        match state {
            DeliveryState::Done(answer) => Some(answer),
            DeliveryState::Pending(_) => None,
        }
    }
}

#[pymethods]
impl DeliveryFuture {
    /// Whether the broker answered (or the record failed).
    fn done(&self) -> bool {
        // Another thread may hold the lock while it waits in `result` (GIL released): then
        // the report had not come when it looked, and this call must not wait for it.
        match self.state.try_lock() {
            Ok(mut state) => Self::settle(&mut state).is_some(),
            Err(_) => false,
        }
    }

    /// Waits for the delivery report, at most `timeout` seconds (`None`: no limit), and
    /// returns its `RecordMetadata`; raises the delivery's error if it failed, or
    /// `KafkaTimeoutError` if the report did not come in time (the future stays usable).
    #[pyo3(signature = (timeout=None))]
    fn result(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<RecordMetadata> {
        let limit = timeout_arg(timeout)?;
        let deadline = limit.map(|l| std::time::Instant::now() + l);
        loop {
            {
                let mut state = self.state.lock().expect("delivery lock");
                if let Some(answer) = Self::settle(&mut state) {
                    return answer.clone().map(RecordMetadata::from).py();
                }
            }
            let slice = match deadline {
                Some(d) => d.saturating_duration_since(std::time::Instant::now()),
                None => WAIT_SLICE,
            }
            .min(WAIT_SLICE);
            let answered = py.allow_threads(|| {
                let mut state = self.state.lock().expect("delivery lock");
                match &mut *state {
                    DeliveryState::Pending(delivery) => {
                        if let Some(answer) = delivery.wait_for(Some(slice)) {
                            *state = DeliveryState::Done(answer);
                            true
                        } else {
                            false
                        }
                    }
                    DeliveryState::Done(_) => true,
                }
            });
            if !answered {
                if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                    return Err(Error::Timeout(format!(
                        "no delivery report within {timeout:?} s"
                    )))
                    .py();
                }
                py.check_signals()?;
            }
        }
    }

    fn __repr__(&self) -> String {
        let mut state = self.state.lock().expect("delivery lock");
        match Self::settle(&mut state) {
            None => "DeliveryFuture(pending)".to_string(),
            Some(Ok(m)) => format!(
                "DeliveryFuture(done: {}-{}@{})",
                m.topic, m.partition, m.offset
            ),
            Some(Err(err)) => format!("DeliveryFuture(failed: {err})"),
        }
    }
}
