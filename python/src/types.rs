//! The value classes: `Record` (a consumed record), `RecordMetadata` (a delivery report),
//! `TopicPartition`, and the admin's `TopicDescription` / `PartitionDescription`.

use std::hash::{Hash, Hasher};

use brook_client::{ConsumerRecord, Header};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

/// A record read by a `Consumer`. `key` and `value` are `bytes` (or `None` for a null),
/// `headers` a list of `(str, bytes | None)` pairs, `timestamp` milliseconds since the
/// epoch (create time, or the broker's append time if the topic uses it).
#[pyclass(module = "brook", frozen)]
pub struct Record {
    topic: Py<PyString>,
    /// The partition it was read from.
    #[pyo3(get)]
    partition: i32,
    /// Its offset in the partition.
    #[pyo3(get)]
    offset: i64,
    /// Milliseconds since the Unix epoch.
    #[pyo3(get)]
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<Header>,
}

impl Record {
    /// Wraps a client record; `topic` is the shared Python string of its topic.
    pub fn new(topic: Py<PyString>, record: ConsumerRecord) -> Record {
        Record {
            topic,
            partition: record.partition,
            offset: record.offset,
            timestamp: record.timestamp,
            key: record.key,
            value: record.value,
            headers: record.headers,
        }
    }
}

fn optional_bytes<'py>(py: Python<'py>, bytes: Option<&[u8]>) -> Option<Bound<'py, PyBytes>> {
    bytes.map(|b| PyBytes::new(py, b))
}

#[pymethods]
impl Record {
    /// The topic it was read from.
    #[getter]
    fn topic(&self, py: Python<'_>) -> Py<PyString> {
        self.topic.clone_ref(py)
    }

    /// The key as `bytes`, or `None`.
    #[getter]
    fn key<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        optional_bytes(py, self.key.as_deref())
    }

    /// The value as `bytes`, or `None` (a tombstone).
    #[getter]
    fn value<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        optional_bytes(py, self.value.as_deref())
    }

    /// The headers, in order, as `(key, value)` pairs.
    #[getter]
    fn headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let pairs = self.headers.iter().map(|h| {
            PyTuple::new(
                py,
                [
                    PyString::new(py, &h.key).into_any(),
                    match &h.value {
                        Some(v) => PyBytes::new(py, v).into_any(),
                        None => py.None().into_bound(py),
                    },
                ],
            )
        });
        PyList::new(py, pairs.collect::<PyResult<Vec<_>>>()?)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Record(topic={:?}, partition={}, offset={}, timestamp={}, key={}, value={})",
            self.topic.bind(py).to_string(),
            self.partition,
            self.offset,
            self.timestamp,
            preview(self.key.as_deref()),
            preview(self.value.as_deref()),
        )
    }
}

/// A short printable form of a key or value.
fn preview(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => "None".to_string(),
        Some(b) if b.len() <= 32 => format!("b{:?}", String::from_utf8_lossy(b)),
        Some(b) => format!("<{} bytes>", b.len()),
    }
}

/// Where a produced record landed: its delivery report.
#[pyclass(module = "brook", frozen, eq)]
#[derive(PartialEq)]
pub struct RecordMetadata {
    /// The topic.
    #[pyo3(get)]
    topic: String,
    /// The partition.
    #[pyo3(get)]
    partition: i32,
    /// The record's offset, or -1 with acks=0.
    #[pyo3(get)]
    offset: i64,
    /// Create time, or the broker's append time if the topic uses it (ms since the epoch).
    #[pyo3(get)]
    timestamp: i64,
}

impl From<brook_client::RecordMetadata> for RecordMetadata {
    fn from(m: brook_client::RecordMetadata) -> RecordMetadata {
        RecordMetadata {
            topic: m.topic,
            partition: m.partition,
            offset: m.offset,
            timestamp: m.timestamp,
        }
    }
}

#[pymethods]
impl RecordMetadata {
    fn __repr__(&self) -> String {
        format!(
            "RecordMetadata(topic={:?}, partition={}, offset={}, timestamp={})",
            self.topic, self.partition, self.offset, self.timestamp
        )
    }
}

/// A topic's partition; hashable, so it can key a dict (`commit(offsets=...)`). Wherever a
/// `TopicPartition` is taken, a `(topic, partition)` tuple is accepted too.
#[pyclass(module = "brook", frozen, eq, ord, hash)]
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The client's value.
    pub inner: brook_client::TopicPartition,
}

impl Hash for TopicPartition {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
    }
}

impl From<brook_client::TopicPartition> for TopicPartition {
    fn from(inner: brook_client::TopicPartition) -> TopicPartition {
        TopicPartition { inner }
    }
}

#[pymethods]
impl TopicPartition {
    /// Partition `partition` of `topic`.
    #[new]
    fn new(topic: String, partition: i32) -> TopicPartition {
        TopicPartition {
            inner: brook_client::TopicPartition { topic, partition },
        }
    }

    /// The topic's name.
    #[getter]
    fn topic(&self) -> &str {
        &self.inner.topic
    }

    /// The partition index.
    #[getter]
    fn partition(&self) -> i32 {
        self.inner.partition
    }

    fn __repr__(&self) -> String {
        format!(
            "TopicPartition({:?}, {})",
            self.inner.topic, self.inner.partition
        )
    }

    fn __getnewargs__(&self) -> (String, i32) {
        (self.inner.topic.clone(), self.inner.partition)
    }
}

/// One partition of a `TopicDescription`.
#[pyclass(module = "brook", frozen, get_all)]
pub struct PartitionDescription {
    /// The partition index.
    partition: i32,
    /// The leader's node id, or -1 when there is none.
    leader: i32,
    /// The leader epoch, or -1 when the broker does not say.
    leader_epoch: i32,
    /// Node ids of all replicas.
    replicas: Vec<i32>,
    /// Node ids of the in-sync replicas.
    isr: Vec<i32>,
}

#[pymethods]
impl PartitionDescription {
    fn __repr__(&self) -> String {
        format!(
            "PartitionDescription(partition={}, leader={}, replicas={:?}, isr={:?})",
            self.partition, self.leader, self.replicas, self.isr
        )
    }
}

/// A topic as the cluster's metadata describes it (`Admin.describe_topic`).
#[pyclass(module = "brook", frozen)]
pub struct TopicDescription {
    /// The topic's name.
    #[pyo3(get)]
    name: String,
    /// Whether it is an internal topic (`__consumer_offsets`, …).
    #[pyo3(get)]
    is_internal: bool,
    partitions: Vec<Py<PartitionDescription>>,
}

impl TopicDescription {
    /// The description of `info`.
    pub fn new(py: Python<'_>, info: brook_client::TopicInfo) -> PyResult<TopicDescription> {
        let partitions = info
            .partitions
            .into_iter()
            .map(|p| {
                Py::new(
                    py,
                    PartitionDescription {
                        partition: p.partition,
                        leader: p.leader,
                        leader_epoch: p.leader_epoch,
                        replicas: p.replicas,
                        isr: p.isr,
                    },
                )
            })
            .collect::<PyResult<_>>()?;
        Ok(TopicDescription {
            name: info.name,
            is_internal: info.is_internal,
            partitions,
        })
    }
}

#[pymethods]
impl TopicDescription {
    /// The partitions, by index.
    #[getter]
    fn partitions(&self, py: Python<'_>) -> Vec<Py<PartitionDescription>> {
        self.partitions.iter().map(|p| p.clone_ref(py)).collect()
    }

    fn __repr__(&self) -> String {
        format!(
            "TopicDescription(name={:?}, partitions={})",
            self.name,
            self.partitions.len()
        )
    }
}
