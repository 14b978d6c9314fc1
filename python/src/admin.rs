//! `brook.Admin`: topics and their configs.

use std::collections::HashMap;

use brook_client::blocking;
use brook_client::{AdminConfig, ConfigOp, NewTopic};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert::{config_pairs, config_value};
use crate::errors::IntoPyResult;
use crate::types::TopicDescription;

/// An admin client: create, delete, list and describe topics, add partitions, read and
/// change topic configs. Every call waits for the broker's answer with the GIL released.
#[pyclass(module = "brook", frozen)]
pub struct Admin {
    inner: blocking::Admin,
}

#[pymethods]
impl Admin {
    /// An admin client bootstrapping from `bootstrap_servers`; `config` takes
    /// `client.id` and `request.timeout.ms`.
    #[new]
    #[pyo3(signature = (bootstrap_servers, *, config=None))]
    fn new(
        py: Python<'_>,
        bootstrap_servers: &str,
        config: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Admin> {
        let mut settings = AdminConfig::new(bootstrap_servers);
        for (key, value) in config_pairs(config)? {
            settings.set(&key, &value).py()?;
        }
        let inner = py.allow_threads(|| blocking::Admin::new(settings)).py()?;
        Ok(Admin { inner })
    }

    /// Creates `name` with `partitions` partitions of `replication_factor` replicas (-1:
    /// the broker's defaults) and topic config overrides (`{"retention.ms": "60000"}`).
    /// Raises `BrookError` named TOPIC_ALREADY_EXISTS if it exists.
    #[pyo3(signature = (name, partitions=-1, replication_factor=-1, config=None),
        text_signature = "(self, name, partitions=-1, replication_factor=-1, config=None)")]
    fn create_topic(
        &self,
        py: Python<'_>,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        config: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let mut topic = NewTopic::new(name, partitions, replication_factor);
        topic.configs = config_pairs(config)?;
        py.allow_threads(|| self.inner.create_topics(&[topic])).py()
    }

    /// Deletes the topic `name`.
    fn delete_topic(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        py.allow_threads(|| self.inner.delete_topics(&[name])).py()
    }

    /// The names of all topics, sorted.
    fn list_topics(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        py.allow_threads(|| self.inner.list_topics()).py()
    }

    /// The topic's partitions, leaders and replicas.
    fn describe_topic(&self, py: Python<'_>, name: &str) -> PyResult<TopicDescription> {
        let info = py.allow_threads(|| self.inner.describe_topic(name)).py()?;
        TopicDescription::new(py, info)
    }

    /// Grows the topic to `total_partitions` partitions.
    fn create_partitions(&self, py: Python<'_>, name: &str, total_partitions: i32) -> PyResult<()> {
        py.allow_threads(|| self.inner.create_partitions(name, total_partitions))
            .py()
    }

    /// Every config of the topic as a dict of name to value (`None` if unset or secret).
    fn describe_configs(
        &self,
        py: Python<'_>,
        name: &str,
    ) -> PyResult<HashMap<String, Option<String>>> {
        let entries = py
            .allow_threads(|| self.inner.describe_configs(name))
            .py()?;
        Ok(entries.into_iter().map(|e| (e.name, e.value)).collect())
    }

    /// Changes topic configs: each key is set to its value, or back to its default where
    /// the value is `None`. Other configs keep their values.
    fn alter_configs(
        &self,
        py: Python<'_>,
        name: &str,
        changes: &Bound<'_, PyDict>,
    ) -> PyResult<()> {
        let mut ops = Vec::with_capacity(changes.len());
        for (key, value) in changes.iter() {
            let key: String = key.extract()?;
            let op = if value.is_none() {
                ConfigOp::Delete
            } else {
                ConfigOp::Set(config_value(&value)?)
            };
            ops.push((key, op));
        }
        let ops: Vec<(&str, ConfigOp)> =
            ops.iter().map(|(k, op)| (k.as_str(), op.clone())).collect();
        py.allow_threads(|| self.inner.alter_configs(name, &ops))
            .py()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        false
    }

    /// Releases the client (it has nothing to flush; provided for symmetry).
    fn close(&self) {}
}
