//! `brook.Consumer` and `brook.CommitFuture`.
//!
//! `poll` returns a list built in one go; iteration takes records from a batch fetched with
//! one `poll_max`, kept in `buffer`. Records in the buffer were fetched but not yet handed
//! to the application, so everything that looks at positions (`commit`, `position`) counts
//! them as unread, and everything that moves positions (`seek`, `pause`, `assign`, …) first
//! gives them back to the client (`rewind`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use brook_client::blocking::{self, PendingCommit};
use brook_client::{ConsumerConfig, ConsumerRecord, Error, TopicPartition};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::convert::{config_pairs, config_value, timeout_arg, topics_arg, tp_arg, tps_arg};
use crate::errors::{closed, IntoPyResult};
use crate::types::{self, Record};

/// Longest single wait while the GIL is released, so Ctrl-C is noticed between waits.
const WAIT_SLICE: Duration = Duration::from_millis(200);

/// A consumer: a member of a consumer group (`topics=` or `subscribe`, with `group_id`) or
/// a reader of partitions assigned by hand (`assign`). Any librdkafka/Java consumer
/// property can be passed in `config`; the keyword arguments override it.
///
/// Read with `poll(timeout, max_records)` (a list, empty on timeout) or by iterating (one
/// record at a time, fetched in batches; iteration ends after `consumer_timeout_ms` without
/// a record, or never if that is `None`). Group rebalances happen inside `poll` and
/// iteration. Not thread-safe: use one consumer from one thread at a time. Use it as a
/// context manager, or call `close()`, so the group hands its partitions on at once.
#[pyclass(module = "brook")]
pub struct Consumer {
    inner: Option<blocking::Consumer>,
    /// Records fetched for iteration and not yet returned, in order.
    buffer: VecDeque<ConsumerRecord>,
    /// How long iteration waits for a record before it stops; `None`: forever.
    consumer_timeout: Option<Duration>,
    /// The records one iteration fetch asks for.
    batch_records: usize,
    /// Python strings of the topics seen, so records share them.
    topics: HashMap<String, Py<PyString>>,
}

#[pymethods]
impl Consumer {
    /// A consumer bootstrapping from `bootstrap_servers`. With `topics` it subscribes at
    /// once (which needs `group_id`). `auto_offset_reset` is `"earliest"`, `"latest"` (the
    /// default) or `"none"`; `isolation_level` `"read_uncommitted"` (default) or
    /// `"read_committed"`; `enable_auto_commit` defaults to true.
    #[new]
    #[pyo3(signature = (bootstrap_servers, *, group_id=None, topics=None, auto_offset_reset=None,
        isolation_level=None, enable_auto_commit=None, auto_commit_interval_ms=None,
        session_timeout_ms=None, heartbeat_interval_ms=None, max_poll_interval_ms=None,
        max_poll_records=None, partition_assignment_strategy=None, client_id=None,
        consumer_timeout_ms=None, config=None))]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments, all optional
    fn new(
        py: Python<'_>,
        bootstrap_servers: &str,
        group_id: Option<&Bound<'_, PyAny>>,
        topics: Option<&Bound<'_, PyAny>>,
        auto_offset_reset: Option<&Bound<'_, PyAny>>,
        isolation_level: Option<&Bound<'_, PyAny>>,
        enable_auto_commit: Option<&Bound<'_, PyAny>>,
        auto_commit_interval_ms: Option<&Bound<'_, PyAny>>,
        session_timeout_ms: Option<&Bound<'_, PyAny>>,
        heartbeat_interval_ms: Option<&Bound<'_, PyAny>>,
        max_poll_interval_ms: Option<&Bound<'_, PyAny>>,
        max_poll_records: Option<&Bound<'_, PyAny>>,
        partition_assignment_strategy: Option<&Bound<'_, PyAny>>,
        client_id: Option<&Bound<'_, PyAny>>,
        consumer_timeout_ms: Option<f64>,
        config: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Consumer> {
        let mut settings = ConsumerConfig::new(bootstrap_servers);
        for (key, value) in config_pairs(config)? {
            settings.set(&key, &value).py()?;
        }
        let named = [
            ("group.id", group_id),
            ("auto.offset.reset", auto_offset_reset),
            ("isolation.level", isolation_level),
            ("enable.auto.commit", enable_auto_commit),
            ("auto.commit.interval.ms", auto_commit_interval_ms),
            ("session.timeout.ms", session_timeout_ms),
            ("heartbeat.interval.ms", heartbeat_interval_ms),
            ("max.poll.interval.ms", max_poll_interval_ms),
            ("max.poll.records", max_poll_records),
            (
                "partition.assignment.strategy",
                partition_assignment_strategy,
            ),
            ("client.id", client_id),
        ];
        for (key, value) in named {
            if let Some(value) = value.filter(|v| !v.is_none()) {
                settings.set(key, &config_value(value)?).py()?;
            }
        }
        let consumer_timeout = timeout_arg(consumer_timeout_ms.map(|ms| ms / 1000.0))?;
        let batch_records = settings.poll_records_max;
        let mut inner = py
            .allow_threads(|| blocking::Consumer::new(settings))
            .py()?;
        if let Some(topics) = topics.filter(|t| !t.is_none()) {
            let topics = topics_arg(topics)?;
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            inner.subscribe(&names).py()?;
        }
        Ok(Consumer {
            inner: Some(inner),
            buffer: VecDeque::new(),
            consumer_timeout,
            batch_records,
            topics: HashMap::new(),
        })
    }

    /// Joins the group subscribed to `topics` (a list of names); the assignment arrives
    /// during the next `poll`.
    fn subscribe(&mut self, topics: &Bound<'_, PyAny>) -> PyResult<()> {
        let topics = topics_arg(topics)?;
        self.rewind(None)?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        self.inner_mut()?.subscribe(&names).py()
    }

    /// The subscribed topics.
    fn subscription(&self) -> PyResult<Vec<String>> {
        Ok(self.inner()?.subscription())
    }

    /// Leaves the group (committing first with auto-commit).
    fn unsubscribe(&mut self, py: Python<'_>) -> PyResult<()> {
        self.rewind(None)?;
        let inner = self.inner_mut()?;
        py.allow_threads(|| inner.unsubscribe()).py()
    }

    /// Reads `partitions` (TopicPartitions or `(topic, partition)` tuples) instead of
    /// joining a group; replaces the previous assignment.
    fn assign(&mut self, partitions: &Bound<'_, PyAny>) -> PyResult<()> {
        let partitions = tps_arg(partitions)?;
        self.rewind(None)?;
        self.inner_mut()?.assign(partitions).py()
    }

    /// The assigned partitions.
    fn assignment(&self) -> PyResult<Vec<types::TopicPartition>> {
        Ok(self
            .inner()?
            .assignment()
            .into_iter()
            .map(types::TopicPartition::from)
            .collect())
    }

    /// Up to `max_records` records (default `max.poll.records`), waiting at most `timeout`
    /// seconds for the first (`None`: until one comes); an empty list on timeout.
    #[pyo3(signature = (timeout=1.0, max_records=None))]
    fn poll<'py>(
        &mut self,
        py: Python<'py>,
        timeout: Option<f64>,
        max_records: Option<usize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let limit = timeout_arg(timeout)?;
        let max_records = max_records.unwrap_or(self.batch_records);
        if max_records == 0 {
            return Err(crate::errors::config_error("max_records must be positive"));
        }
        let records = if self.buffer.is_empty() {
            self.fetch(py, limit, max_records)?
        } else {
            let n = max_records.min(self.buffer.len());
            self.buffer.drain(..n).collect()
        };
        self.records_list(py, records)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<Record>> {
        if self.buffer.is_empty() {
            let batch = self.fetch(py, self.consumer_timeout, self.batch_records)?;
            self.buffer.extend(batch);
        }
        match self.buffer.pop_front() {
            Some(record) => Ok(Some(self.record(py, record))),
            None => Ok(None), // consumer_timeout_ms passed: StopIteration
        }
    }

    /// Commits offsets to the group and waits for the answer; with `asynchronous=True`
    /// returns a `CommitFuture` at once instead. Without `offsets`, commits the position of
    /// every assigned partition (after the last record returned); `offsets` maps
    /// TopicPartitions (or tuples) to the next offset to read.
    #[pyo3(signature = (offsets=None, asynchronous=false))]
    fn commit(
        &mut self,
        py: Python<'_>,
        offsets: Option<&Bound<'_, PyDict>>,
        asynchronous: bool,
    ) -> PyResult<Option<CommitFuture>> {
        let offsets = match offsets {
            Some(dict) => {
                let mut map = HashMap::with_capacity(dict.len());
                for (tp, offset) in dict.iter() {
                    map.insert(tp_arg(&tp)?, offset.extract::<i64>()?);
                }
                map
            }
            None => self.positions()?.into_iter().collect(),
        };
        let inner = self.inner_mut()?;
        if asynchronous {
            let pending = inner.commit_offsets_async(&offsets).py()?;
            return Ok(Some(CommitFuture {
                state: std::sync::Mutex::new(Some(pending)),
                outcome: std::sync::OnceLock::new(),
            }));
        }
        py.allow_threads(|| inner.commit_offsets(&offsets)).py()?;
        Ok(None)
    }

    /// The group's committed offsets of `partitions` (default: the assignment), as a dict
    /// of TopicPartition to offset, `None` where nothing was committed.
    #[pyo3(signature = (partitions=None))]
    fn committed(
        &self,
        py: Python<'_>,
        partitions: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<HashMap<types::TopicPartition, Option<i64>>> {
        let inner = self.inner()?;
        let partitions = match partitions {
            Some(p) => tps_arg(p)?,
            None => inner.assignment(),
        };
        let committed = py.allow_threads(|| inner.committed(&partitions)).py()?;
        Ok(committed
            .into_iter()
            .map(|(tp, o)| (types::TopicPartition::from(tp), o))
            .collect())
    }

    /// The offset of the next record to be returned from `partition`; without an argument,
    /// a dict of every assigned partition's position. A partition without a position gets
    /// one first by `auto_offset_reset`.
    #[pyo3(signature = (partition=None))]
    fn position(
        &mut self,
        py: Python<'_>,
        partition: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyObject> {
        if let Some(partition) = partition {
            let tp = tp_arg(partition)?;
            return Ok(self
                .position_of(py, &tp)?
                .into_pyobject(py)?
                .into_any()
                .unbind());
        }
        let dict = PyDict::new(py);
        for tp in self.inner()?.assignment() {
            let position = self.position_of(py, &tp)?;
            dict.set_item(types::TopicPartition::from(tp), position)?;
        }
        Ok(dict.into_any().unbind())
    }

    /// Makes `offset` the next offset read from `partition` (which must be assigned).
    fn seek(&mut self, partition: &Bound<'_, PyAny>, offset: i64) -> PyResult<()> {
        let tp = tp_arg(partition)?;
        self.buffer
            .retain(|r| r.partition != tp.partition || r.topic != tp.topic);
        self.inner_mut()?.seek(&tp, offset).py()
    }

    /// Moves `partitions` (default: all assigned) to their first offsets.
    #[pyo3(signature = (partitions=None))]
    fn seek_to_beginning(
        &mut self,
        py: Python<'_>,
        partitions: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let partitions = self.partitions_or_assignment(partitions)?;
        self.rewind(Some(&partitions))?;
        let inner = self.inner_mut()?;
        py.allow_threads(|| inner.seek_to_beginning(&partitions))
            .py()
    }

    /// Moves `partitions` (default: all assigned) to their ends: only new records are read.
    #[pyo3(signature = (partitions=None))]
    fn seek_to_end(
        &mut self,
        py: Python<'_>,
        partitions: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let partitions = self.partitions_or_assignment(partitions)?;
        self.rewind(Some(&partitions))?;
        let inner = self.inner_mut()?;
        py.allow_threads(|| inner.seek_to_end(&partitions)).py()
    }

    /// Stops returning records from `partitions` until `resume`; positions are kept.
    fn pause(&mut self, partitions: &Bound<'_, PyAny>) -> PyResult<()> {
        let partitions = tps_arg(partitions)?;
        self.rewind(Some(&partitions))?;
        self.inner_mut()?.pause(&partitions).py()
    }

    /// Returns records from paused `partitions` again.
    fn resume(&mut self, partitions: &Bound<'_, PyAny>) -> PyResult<()> {
        let partitions = tps_arg(partitions)?;
        self.inner_mut()?.resume(&partitions).py()
    }

    /// The paused partitions.
    fn paused(&self) -> PyResult<Vec<types::TopicPartition>> {
        Ok(self
            .inner()?
            .paused()
            .into_iter()
            .map(types::TopicPartition::from)
            .collect())
    }

    /// The first offsets of `partitions`, as a dict.
    fn beginning_offsets(
        &self,
        py: Python<'_>,
        partitions: &Bound<'_, PyAny>,
    ) -> PyResult<HashMap<types::TopicPartition, i64>> {
        let partitions = tps_arg(partitions)?;
        let inner = self.inner()?;
        let offsets = py
            .allow_threads(|| inner.beginning_offsets(&partitions))
            .py()?;
        Ok(offsets.into_iter().map(|(tp, o)| (tp.into(), o)).collect())
    }

    /// The end offsets of `partitions` (the last stable offsets under read_committed).
    fn end_offsets(
        &self,
        py: Python<'_>,
        partitions: &Bound<'_, PyAny>,
    ) -> PyResult<HashMap<types::TopicPartition, i64>> {
        let partitions = tps_arg(partitions)?;
        let inner = self.inner()?;
        let offsets = py.allow_threads(|| inner.end_offsets(&partitions)).py()?;
        Ok(offsets.into_iter().map(|(tp, o)| (tp.into(), o)).collect())
    }

    /// Leaves the group (committing first with auto-commit) and releases the consumer;
    /// later calls raise `BrookError`. Closing twice is harmless.
    fn close(&mut self, py: Python<'_>) -> PyResult<()> {
        if self.inner.is_none() {
            return Ok(());
        }
        self.rewind(None)?;
        let mut inner = self.inner.take().expect("checked above");
        py.allow_threads(move || {
            let closed = inner.close();
            drop(inner);
            closed
        })
        .py()
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
        self.close(py)?;
        Ok(false)
    }
}

impl Consumer {
    fn inner(&self) -> PyResult<&blocking::Consumer> {
        self.inner.as_ref().ok_or_else(closed)
    }

    fn inner_mut(&mut self) -> PyResult<&mut blocking::Consumer> {
        self.inner.as_mut().ok_or_else(closed)
    }

    /// Polls the client with the GIL released, in slices so Ctrl-C is noticed, until records
    /// come or `timeout` passes (`None`: no limit).
    fn fetch(
        &mut self,
        py: Python<'_>,
        timeout: Option<Duration>,
        records_max: usize,
    ) -> PyResult<Vec<ConsumerRecord>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let inner = self.inner.as_mut().ok_or_else(closed)?;
        loop {
            let slice = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()).min(WAIT_SLICE),
                None => WAIT_SLICE,
            };
            let records = py
                .allow_threads(|| inner.poll_max(slice, records_max))
                .py()?;
            if !records.is_empty() || deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(records);
            }
            py.check_signals()?;
        }
    }

    fn record(&mut self, py: Python<'_>, record: ConsumerRecord) -> Record {
        let topic = match self.topics.get(&record.topic) {
            Some(topic) => topic.clone_ref(py),
            None => {
                let topic = PyString::new(py, &record.topic).unbind();
                self.topics
                    .insert(record.topic.clone(), topic.clone_ref(py));
                topic
            }
        };
        Record::new(topic, record)
    }

    fn records_list<'py>(
        &mut self,
        py: Python<'py>,
        records: Vec<ConsumerRecord>,
    ) -> PyResult<Bound<'py, PyList>> {
        let mut objects = Vec::with_capacity(records.len());
        for record in records {
            objects.push(Bound::new(py, self.record(py, record))?);
        }
        PyList::new(py, objects)
    }

    /// The positions to commit: the client's, except that records fetched for iteration
    /// and not yet returned count as unread.
    fn positions(&self) -> PyResult<BTreeMap<TopicPartition, i64>> {
        let mut positions = self.inner()?.positions();
        for record in self.buffer.iter().rev() {
            positions.insert(
                TopicPartition::new(&record.topic, record.partition),
                record.offset,
            );
        }
        Ok(positions)
    }

    fn position_of(&mut self, py: Python<'_>, tp: &TopicPartition) -> PyResult<i64> {
        let buffered = self
            .buffer
            .iter()
            .find(|r| r.partition == tp.partition && r.topic == tp.topic);
        if let Some(record) = buffered {
            return Ok(record.offset);
        }
        let inner = self.inner_mut()?;
        py.allow_threads(|| inner.position(tp)).py()
    }

    fn partitions_or_assignment(
        &self,
        partitions: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<TopicPartition>> {
        match partitions {
            Some(p) => tps_arg(p),
            None => Ok(self.inner()?.assignment()),
        }
    }

    /// Gives records fetched for iteration and not yet returned back to the client (of
    /// `only` those partitions, or all): each such partition is sought back to its first
    /// unreturned record.
    fn rewind(&mut self, only: Option<&[TopicPartition]>) -> PyResult<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let mut first: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        let mut kept = VecDeque::new();
        for record in self.buffer.drain(..) {
            let tp = TopicPartition::new(&record.topic, record.partition);
            if only.is_some_and(|only| !only.contains(&tp)) {
                kept.push_back(record);
                continue;
            }
            first.entry(tp).or_insert(record.offset);
        }
        self.buffer = kept;
        let inner = self.inner.as_mut().ok_or_else(closed)?;
        for (tp, offset) in first {
            inner.seek(&tp, offset).py()?;
        }
        Ok(())
    }
}

/// An asynchronous commit under way (`Consumer.commit(asynchronous=True)`).
#[pyclass(module = "brook", frozen)]
pub struct CommitFuture {
    state: std::sync::Mutex<Option<PendingCommit>>,
    outcome: std::sync::OnceLock<Result<(), Error>>,
}

#[pymethods]
impl CommitFuture {
    /// Waits for the commit's outcome; raises its error if it failed.
    fn result(&self, py: Python<'_>) -> PyResult<()> {
        let outcome = py.allow_threads(|| {
            let mut state = self.state.lock().expect("commit lock");
            if let Some(pending) = state.take() {
                let _ = self.outcome.set(pending.wait());
            }
            self.outcome.get().cloned().unwrap_or(Err(Error::Closed))
        });
        outcome.py()
    }
}
