//! `brook.Admin`: topics and their configs, and consumer groups with their committed
//! offsets (the group value classes `GroupListing`, `GroupDescription` and
//! `MemberDescription` live here too).

use std::collections::{BTreeMap, HashMap};

use brook_client::blocking;
use brook_client::{AdminConfig, ConfigOp, GroupState, NewTopic};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert::{config_pairs, config_value, tp_arg, tps_arg};
use crate::errors::IntoPyResult;
use crate::types::{TopicDescription, TopicPartition};

/// An admin client: create, delete, list and describe topics, add partitions, read and
/// change topic configs; list, describe and delete consumer groups, read and alter their
/// committed offsets. Every call waits for the broker's answer with the GIL released.
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

    /// Every consumer group, sorted by id; with `states` (e.g. `["Empty"]`) only the groups
    /// in one of those states.
    #[pyo3(signature = (states=None))]
    fn list_groups(
        &self,
        py: Python<'_>,
        states: Option<Vec<String>>,
    ) -> PyResult<Vec<GroupListing>> {
        let states: Option<Vec<GroupState>> =
            states.map(|names| names.iter().map(|n| GroupState::parse(n)).collect());
        let listed = py
            .allow_threads(|| self.inner.list_groups(states.as_deref()))
            .py()?;
        Ok(listed
            .into_iter()
            .map(|g| GroupListing {
                group_id: g.group_id,
                state: g.state.map(|s| s.to_string()),
                protocol_type: g.protocol_type,
            })
            .collect())
    }

    /// The group's state, protocol and members with their assignments. Raises
    /// `BrookError` named GROUP_ID_NOT_FOUND for an unknown group.
    fn describe_group(&self, py: Python<'_>, group: &str) -> PyResult<GroupDescription> {
        let mut described = py
            .allow_threads(|| self.inner.describe_groups(&[group]))
            .py()?;
        let described = described.pop().expect("one group asked, one described");
        let members = described
            .members
            .into_iter()
            .map(|m| {
                Py::new(
                    py,
                    MemberDescription {
                        member_id: m.member_id,
                        instance_id: m.instance_id,
                        client_id: m.client_id,
                        client_host: m.client_host,
                        assignment: m.assignment,
                    },
                )
            })
            .collect::<PyResult<_>>()?;
        Ok(GroupDescription {
            group_id: described.group_id,
            state: described.state.to_string(),
            protocol_type: described.protocol_type,
            protocol: described.protocol,
            members,
        })
    }

    /// Deletes the group and its committed offsets. Raises `BrookError` named
    /// NON_EMPTY_GROUP while it has members, GROUP_ID_NOT_FOUND if unknown.
    fn delete_group(&self, py: Python<'_>, group: &str) -> PyResult<()> {
        py.allow_threads(|| self.inner.delete_groups(&[group])).py()
    }

    /// The group's committed offsets (next offset to read) as a dict keyed by
    /// `TopicPartition`: of `partitions` (`TopicPartition`s or `(topic, partition)` tuples),
    /// or of every partition when `None`. Partitions without a committed offset are absent.
    #[pyo3(signature = (group, partitions=None))]
    fn list_group_offsets(
        &self,
        py: Python<'_>,
        group: &str,
        partitions: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<HashMap<TopicPartition, i64>> {
        let partitions = partitions.map(tps_arg).transpose()?;
        let offsets = py
            .allow_threads(|| self.inner.list_group_offsets(group, partitions.as_deref()))
            .py()?;
        Ok(offsets
            .into_iter()
            .map(|(tp, offset)| (TopicPartition::from(tp), offset))
            .collect())
    }

    /// Sets the group's committed offsets from a dict of `TopicPartition` (or
    /// `(topic, partition)`) to offset, as `kafka-consumer-groups --reset-offsets` does.
    /// The group must have no members: otherwise `BrookError` named UNKNOWN_MEMBER_ID.
    fn alter_group_offsets(
        &self,
        py: Python<'_>,
        group: &str,
        offsets: &Bound<'_, PyDict>,
    ) -> PyResult<()> {
        let mut parsed = BTreeMap::new();
        for (tp, offset) in offsets.iter() {
            parsed.insert(tp_arg(&tp)?, offset.extract::<i64>()?);
        }
        py.allow_threads(|| self.inner.alter_group_offsets(group, &parsed))
            .py()
    }

    /// Deletes the group's committed offsets of `partitions` (`TopicPartition`s or
    /// `(topic, partition)` tuples); refused for topics its members consume.
    fn delete_group_offsets(
        &self,
        py: Python<'_>,
        group: &str,
        partitions: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let partitions = tps_arg(partitions)?;
        py.allow_threads(|| self.inner.delete_group_offsets(group, &partitions))
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

/// One group as `Admin.list_groups` reports it.
#[pyclass(module = "brook", frozen, get_all)]
pub struct GroupListing {
    /// The group id.
    group_id: String,
    /// Its state ("Stable", "Empty", …); `None` from brokers that do not say.
    state: Option<String>,
    /// Its protocol type ("consumer" for consumer groups).
    protocol_type: String,
}

#[pymethods]
impl GroupListing {
    fn __repr__(&self) -> String {
        format!(
            "GroupListing(group_id={:?}, state={:?}, protocol_type={:?})",
            self.group_id, self.state, self.protocol_type
        )
    }
}

/// One member of a described group.
#[pyclass(module = "brook", frozen)]
pub struct MemberDescription {
    /// The member id the coordinator gave it.
    #[pyo3(get)]
    member_id: String,
    /// Its `group.instance.id` if it is a static member.
    #[pyo3(get)]
    instance_id: Option<String>,
    /// Its client id.
    #[pyo3(get)]
    client_id: String,
    /// The host it connects from, as the coordinator saw it.
    #[pyo3(get)]
    client_host: String,
    assignment: Vec<brook_client::TopicPartition>,
}

#[pymethods]
impl MemberDescription {
    /// Its partitions (decoded for "consumer" groups; empty otherwise).
    #[getter]
    fn assignment(&self) -> Vec<TopicPartition> {
        self.assignment
            .iter()
            .cloned()
            .map(TopicPartition::from)
            .collect()
    }

    fn __repr__(&self) -> String {
        format!(
            "MemberDescription(member_id={:?}, client_id={:?}, client_host={:?}, assignment={})",
            self.member_id,
            self.client_id,
            self.client_host,
            self.assignment.len()
        )
    }
}

/// A consumer group as `Admin.describe_group` reports it.
#[pyclass(module = "brook", frozen)]
pub struct GroupDescription {
    /// The group id.
    #[pyo3(get)]
    group_id: String,
    /// Its state: "PreparingRebalance", "CompletingRebalance", "Stable" or "Empty".
    #[pyo3(get)]
    state: String,
    /// Its protocol type ("consumer" for consumer groups).
    #[pyo3(get)]
    protocol_type: String,
    /// The assignor the members agreed on ("range", …); empty between generations.
    #[pyo3(get)]
    protocol: String,
    members: Vec<Py<MemberDescription>>,
}

#[pymethods]
impl GroupDescription {
    /// The members, in the coordinator's order.
    #[getter]
    fn members(&self, py: Python<'_>) -> Vec<Py<MemberDescription>> {
        self.members.iter().map(|m| m.clone_ref(py)).collect()
    }

    fn __repr__(&self) -> String {
        format!(
            "GroupDescription(group_id={:?}, state={:?}, members={})",
            self.group_id,
            self.state,
            self.members.len()
        )
    }
}
