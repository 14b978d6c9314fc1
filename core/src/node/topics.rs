//! Topic changes on a cluster node. A client's CreateTopics, DeleteTopics and
//! CreatePartitions are checked
//! here, each topic asked of the controller (which proposes the records, or refuses), and
//! the request is parked until this node's image shows every change — so a client that got
//! its answer finds the topic created (or gone) at this node — or the controller refused
//! it, or the request's `timeout_ms` ran out (`REQUEST_TIMED_OUT`, as Kafka answers).

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResult;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, CreatePartitionsRequest, CreatePartitionsResponse,
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, ResponseKind, TopicName,
    UnregisterBrokerRequest, UnregisterBrokerResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::messages::{PeerMessage, TopicChange};
use super::ClusterNode;
use crate::broker::{AdminError, ParkedId, Reply, StorageProvider, RESOURCE_BROKER};
use crate::cluster::check_assignments;
use crate::driver::Completed;
use crate::error::ErrorCode;
use crate::types::{Millis, NodeId};

/// A config resource of a request: (resource type, name, the overrides it would give or why
/// not).
/// A resource of a config change, checked: its type, name, and the broker a dynamic broker
/// config change is for (-1: every broker) with the new set — or why it is refused.
type CheckedResource = (
    i8,
    StrBytes,
    Result<(Option<i32>, BTreeMap<String, String>), AdminError>,
);

/// How long a config change waits for the controller (AlterConfigs and
/// IncrementalAlterConfigs carry no timeout): Kafka's default `request.timeout.ms`.
const CONFIGS_TIMEOUT_MS: i32 = 30_000;

/// A client's CreateTopics, DeleteTopics or CreatePartitions waiting for the controller
/// and the metadata log.
pub(super) struct ParkedTopics {
    response: TopicsResponse,
    /// Topics still waiting: (name, position in the response, what this node's image must
    /// show).
    waiting: Vec<(String, usize, Want)>,
    deadline: Millis,
}

/// What a waiting topic change is done at.
#[derive(Clone)]
enum Want {
    /// The topic exists.
    Exists,
    /// The topic is gone.
    Gone,
    /// The topic has at least this many partitions.
    Partitions(i32),
    /// The topic has these config overrides.
    Configs(BTreeMap<String, String>),
    /// The broker (-1: every broker's default) has these dynamic config changes (a key
    /// set to a value, or deleted).
    BrokerConfigs(i32, BTreeMap<String, Option<String>>),
    /// The broker is not registered.
    Unregistered(NodeId),
}

impl Want {
    fn change(&self) -> TopicChange {
        match self {
            Want::Exists => TopicChange::Create,
            Want::Gone => TopicChange::Delete,
            Want::Partitions(_) => TopicChange::AddPartitions,
            Want::Configs(_) => TopicChange::Configs,
            Want::BrokerConfigs(..) => TopicChange::BrokerConfigs,
            Want::Unregistered(_) => TopicChange::Unregister,
        }
    }
}

/// The answer being built, with the request's version where it shapes the answer.
enum TopicsResponse {
    Create(CreateTopicsResponse),
    Delete(DeleteTopicsResponse, i16),
    AddPartitions(CreatePartitionsResponse),
    AlterConfigs(AlterConfigsResponse),
    IncrementalAlterConfigs(IncrementalAlterConfigsResponse),
    Unregister(UnregisterBrokerResponse),
}

impl TopicsResponse {
    /// Sets the error of the topic at `position` (and its message where the version has one).
    fn fail(&mut self, position: usize, code: i16, message: String) {
        match self {
            TopicsResponse::Create(response) => {
                let result = &mut response.topics[position];
                result.error_code = code;
                result.error_message = Some(StrBytes::from_string(message));
            }
            TopicsResponse::Delete(response, version) => {
                let result = &mut response.responses[position];
                result.error_code = code;
                if *version >= 5 {
                    result.error_message = Some(StrBytes::from_string(message));
                }
            }
            TopicsResponse::AddPartitions(response) => {
                let result = &mut response.results[position];
                result.error_code = code;
                result.error_message = Some(StrBytes::from_string(message));
            }
            TopicsResponse::AlterConfigs(response) => {
                let result = &mut response.responses[position];
                result.error_code = code;
                result.error_message = Some(StrBytes::from_string(message));
            }
            TopicsResponse::IncrementalAlterConfigs(response) => {
                let result = &mut response.responses[position];
                result.error_code = code;
                result.error_message = Some(StrBytes::from_string(message));
            }
            TopicsResponse::Unregister(response) => {
                response.error_code = code;
                response.error_message = Some(StrBytes::from_string(message));
            }
        }
    }

    fn into_response(self) -> ResponseKind {
        match self {
            TopicsResponse::Create(response) => ResponseKind::CreateTopics(response),
            TopicsResponse::Delete(response, _) => ResponseKind::DeleteTopics(response),
            TopicsResponse::AddPartitions(response) => ResponseKind::CreatePartitions(response),
            TopicsResponse::AlterConfigs(response) => ResponseKind::AlterConfigs(response),
            TopicsResponse::IncrementalAlterConfigs(response) => {
                ResponseKind::IncrementalAlterConfigs(response)
            }
            TopicsResponse::Unregister(response) => ResponseKind::UnregisterBroker(response),
        }
    }
}

impl<P: StorageProvider> ClusterNode<P> {
    /// A client's CreateTopics: each topic asked of the controller; answered once every
    /// topic is in this node's image or refused.
    pub(super) fn create_topics(&mut self, now: Millis, request: CreateTopicsRequest) -> Reply {
        let mut response = CreateTopicsResponse::default();
        let mut waiting = Vec::new();
        for topic in request.topics {
            let name = topic.name.0.as_str().to_string();
            let mut result = CreatableTopicResult::default();
            result.name = topic.name.clone();
            let configs: BTreeMap<String, String> = topic
                .configs
                .iter()
                .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
                .collect();
            // Explicit replica lists, by partition index (then the count and factor are -1).
            let mut listed: Vec<(i32, Vec<NodeId>)> = (topic.assignments.iter())
                .map(|a| {
                    (
                        a.partition_index,
                        a.broker_ids.iter().map(|b| NodeId(b.0)).collect(),
                    )
                })
                .collect();
            listed.sort_by_key(|(index, _)| *index);
            let in_order = listed
                .iter()
                .enumerate()
                .all(|(i, (index, _))| *index == i as i32);
            let assignments: Vec<Vec<NodeId>> = listed.into_iter().map(|(_, r)| r).collect();
            let partitions = match (topic.num_partitions, assignments.len()) {
                (-1, 0) => self.config.broker.num_partitions,
                (-1, listed) => listed as i32,
                (n, _) => n,
            };
            let replication_factor = match (topic.replication_factor, assignments.first()) {
                (-1, None) => self.config.broker.default_replication_factor,
                (-1, Some(first)) => first.len() as i16,
                (n, _) => n,
            };
            let refusal = if self.image().topic(&name).is_some() {
                Some((
                    ErrorCode::TopicAlreadyExists,
                    format!("topic {name} exists"),
                ))
            } else if let Err(err) = crate::broker::validate_topic_name(&name) {
                Some((ErrorCode::InvalidTopicException, err.to_string()))
            } else if name.starts_with("__") {
                let message = format!("{name}: internal topics are not created on a cluster yet");
                Some((ErrorCode::InvalidRequest, message))
            } else if !(1..=crate::broker::PARTITIONS_MAX).contains(&partitions) {
                let max = crate::broker::PARTITIONS_MAX;
                let message = format!("partition count {partitions} is not in 1..={max}");
                Some((ErrorCode::InvalidPartitions, message))
            } else if !assignments.is_empty()
                && (topic.num_partitions != -1 || topic.replication_factor != -1)
            {
                let message = "replica assignments need num_partitions and \
                               replication_factor -1"
                    .to_string();
                Some((ErrorCode::InvalidRequest, message))
            } else if !in_order {
                let message = "replica assignments must name partitions 0, 1, … once each";
                Some((ErrorCode::InvalidReplicaAssignment, message.to_string()))
            } else if let Err(refused) = self.check_listed(&assignments, replication_factor) {
                Some(refused)
            } else if let Err(err) = self.broker.log_config_for(&configs) {
                Some((ErrorCode::InvalidConfig, err.to_string()))
            } else {
                None
            };
            if let Some((code, message)) = refusal {
                result.error_code = code.code();
                result.error_message = Some(StrBytes::from_string(message));
            } else {
                self.topic_results
                    .remove(&(TopicChange::Create, name.clone()));
                self.topics_out.insert(name.clone(), now);
                let message = PeerMessage::CreateTopic {
                    name: name.clone(),
                    partitions,
                    replication_factor,
                    configs,
                    assignments,
                };
                let _ = self.send_to_controller(now, message);
                waiting.push((name, response.topics.len(), Want::Exists));
            }
            response.topics.push(result);
        }
        let response = TopicsResponse::Create(response);
        self.park_topics(now, response, waiting, request.timeout_ms)
    }

    /// A client's UnregisterBroker (what `kafka-cluster unregister --id N` sends): asked of
    /// the controller, answered once this node's image no longer has the broker.
    pub(super) fn unregister_broker(
        &mut self,
        now: Millis,
        request: UnregisterBrokerRequest,
    ) -> Reply {
        let node = NodeId(request.broker_id.0);
        let name = node.0.to_string();
        let mut waiting = Vec::new();
        if self.image().brokers().contains_key(&node) {
            self.topic_results
                .remove(&(TopicChange::Unregister, name.clone()));
            let _ = self.send_to_controller(now, PeerMessage::UnregisterBroker { node });
            waiting.push((name, 0, Want::Unregistered(node)));
        }
        let mut answer = UnregisterBrokerResponse::default();
        answer.error_message = None;
        let mut response = TopicsResponse::Unregister(answer);
        if waiting.is_empty() {
            let message = format!("broker {} is not registered", node.0);
            response.fail(0, ErrorCode::BrokerIdNotRegistered.code(), message);
        }
        self.park_topics(now, response, waiting, CONFIGS_TIMEOUT_MS)
    }

    /// Explicit replica lists of a new topic, checked as the controller will (none: fine).
    fn check_listed(
        &self,
        assignments: &[Vec<NodeId>],
        replication_factor: i16,
    ) -> Result<(), (ErrorCode, String)> {
        if assignments.is_empty() {
            return Ok(());
        }
        let factor = usize::try_from(replication_factor).unwrap_or(0);
        check_assignments(assignments, assignments.len(), factor, self.image())
    }

    /// A client's DeleteTopics (by name, or by topic id from v6): each topic asked of the
    /// controller; answered once no topic is in this node's image any more, or refused.
    pub(super) fn delete_topics(
        &mut self,
        now: Millis,
        request: DeleteTopicsRequest,
        version: i16,
    ) -> Reply {
        let wanted = crate::broker::deleted_topics(&request);
        let mut response = DeleteTopicsResponse::default();
        let mut waiting = Vec::new();
        for (name, id) in wanted {
            let found = match &name {
                Some(name) => self.image().topic(name).map(|t| (name.clone(), t.id)),
                None => self.image().topic_by_id(id).map(|t| (t.name.clone(), t.id)),
            };
            let mut result = DeletableTopicResult::default();
            result.name = name.clone().map(|n| TopicName(StrBytes::from_string(n)));
            result.topic_id = id;
            let refusal = match &found {
                None if name.is_none() => {
                    Some((ErrorCode::UnknownTopicId, format!("no topic has id {id}")))
                }
                None => Some((
                    ErrorCode::UnknownTopicOrPartition,
                    format!("no topic {}", name.as_deref().unwrap_or_default()),
                )),
                // Kafka's answer to a client that is not a super user: the groups' offsets
                // live there.
                Some((name, _)) if crate::broker::is_internal_topic(name) => Some((
                    ErrorCode::TopicAuthorizationFailed,
                    format!("{name} is an internal topic and cannot be deleted"),
                )),
                Some(_) => None,
            };
            match (refusal, found) {
                (Some((code, message)), _) => {
                    result.error_code = code.code();
                    if version >= 5 {
                        result.error_message = Some(StrBytes::from_string(message));
                    }
                }
                (None, Some((name, topic_id))) => {
                    result.name = Some(TopicName(StrBytes::from_string(name.clone())));
                    if version >= 6 {
                        result.topic_id = topic_id;
                    }
                    self.topic_results
                        .remove(&(TopicChange::Delete, name.clone()));
                    let message = PeerMessage::DeleteTopic { name: name.clone() };
                    let _ = self.send_to_controller(now, message);
                    waiting.push((name, response.responses.len(), Want::Gone));
                }
                (None, None) => unreachable!("an unknown topic is refused"),
            }
            response.responses.push(result);
        }
        let response = TopicsResponse::Delete(response, version);
        self.park_topics(now, response, waiting, request.timeout_ms)
    }

    /// A client's CreatePartitions: each topic's new count (and replica lists, if given)
    /// checked here and asked of the controller; answered once this node's image has the
    /// partitions, or refused.
    pub(super) fn create_partitions(
        &mut self,
        now: Millis,
        request: CreatePartitionsRequest,
    ) -> Reply {
        let names = request.topics.iter().map(|t| t.name.0.to_string());
        let twice = crate::broker::duplicates(names);
        let mut response = CreatePartitionsResponse::default();
        let mut waiting = Vec::new();
        for topic in &request.topics {
            let name = topic.name.0.as_str().to_string();
            let assignments: Vec<Vec<NodeId>> = topic
                .assignments
                .iter()
                .flatten()
                .map(|a| a.broker_ids.iter().map(|b| NodeId(b.0)).collect())
                .collect();
            let check = match self.image().topic(&name) {
                _ if twice.contains(&name) => {
                    Err((ErrorCode::InvalidRequest, "the topic is named twice".into()))
                }
                None => Err((
                    ErrorCode::UnknownTopicOrPartition,
                    format!("topic {name} does not exist"),
                )),
                Some(image) => {
                    let current = image.partitions.len() as i32;
                    let factor = image.partitions.first().map_or(1, |p| p.replicas.len());
                    crate::broker::check_partition_count(&name, current, topic.count)
                        .map_err(|err| (err.code(), err.to_string()))
                        .and_then(|()| match topic.assignments {
                            None => Ok(()),
                            Some(_) => {
                                let added = (topic.count - current) as usize;
                                check_assignments(&assignments, added, factor, self.image())
                            }
                        })
                }
            };
            let mut result = CreatePartitionsTopicResult::default();
            result.name = topic.name.clone();
            match check {
                Err((code, message)) => {
                    result.error_code = code.code();
                    result.error_message = Some(StrBytes::from_string(message));
                }
                Ok(()) if request.validate_only => {}
                Ok(()) => {
                    let change = (TopicChange::AddPartitions, name.clone());
                    self.topic_results.remove(&change);
                    let message = PeerMessage::CreatePartitions {
                        name: name.clone(),
                        count: topic.count,
                        assignments,
                    };
                    let _ = self.send_to_controller(now, message);
                    let want = Want::Partitions(topic.count);
                    waiting.push((name, response.results.len(), want));
                }
            }
            response.results.push(result);
        }
        let response = TopicsResponse::AddPartitions(response);
        self.park_topics(now, response, waiting, request.timeout_ms)
    }

    /// A client's AlterConfigs: each topic's new overrides (the whole set) checked by the
    /// broker's config parser and asked of the controller; answered once this node's image
    /// has them.
    pub(super) fn alter_configs(&mut self, now: Millis, request: AlterConfigsRequest) -> Reply {
        let mut response = AlterConfigsResponse::default();
        let resources = request.resources.iter().map(|r| {
            let overrides = self.broker.alter_configs_overrides(r).map(|c| (None, c));
            (r.resource_type, r.resource_name.clone(), overrides)
        });
        let checked: Vec<_> = resources.collect();
        for (resource_type, resource_name, _) in &checked {
            let mut result = AlterConfigsResourceResponse::default();
            result.error_message = None;
            result.resource_type = *resource_type;
            result.resource_name = resource_name.clone();
            response.responses.push(result);
        }
        let mut response = TopicsResponse::AlterConfigs(response);
        let waiting = self.ask_for_configs(now, checked, request.validate_only, &mut response);
        self.park_topics(now, response, waiting, CONFIGS_TIMEOUT_MS)
    }

    /// A client's IncrementalAlterConfigs: SET, DELETE, APPEND and SUBTRACT applied to the
    /// topic's overrides here, the result checked and asked of the controller; answered once
    /// this node's image has it.
    pub(super) fn incremental_alter_configs(
        &mut self,
        now: Millis,
        request: IncrementalAlterConfigsRequest,
    ) -> Reply {
        let mut response = IncrementalAlterConfigsResponse::default();
        let resources = request.resources.iter().map(|r| {
            let overrides = match r.resource_type {
                // Dynamic broker configs: by the broker's id, -1 for every broker.
                RESOURCE_BROKER => (self.broker.dynamic_broker_overrides(r))
                    .map(|(node, configs)| (Some(node), configs)),
                _ => (self.broker.incremental_alter_overrides(r)).map(|c| (None, c)),
            };
            (r.resource_type, r.resource_name.clone(), overrides)
        });
        let checked: Vec<_> = resources.collect();
        for (resource_type, resource_name, _) in &checked {
            let mut result = IncrementalResult::default();
            result.error_message = None;
            result.resource_type = *resource_type;
            result.resource_name = resource_name.clone();
            response.responses.push(result);
        }
        let mut response = TopicsResponse::IncrementalAlterConfigs(response);
        let waiting = self.ask_for_configs(now, checked, request.validate_only, &mut response);
        self.park_topics(now, response, waiting, CONFIGS_TIMEOUT_MS)
    }

    /// Sends the controller each checked resource's overrides (unless `validate_only`),
    /// failing in `response` those refused or named twice; the topics to wait for.
    fn ask_for_configs(
        &mut self,
        now: Millis,
        checked: Vec<CheckedResource>,
        validate_only: bool,
        response: &mut TopicsResponse,
    ) -> Vec<(String, usize, Want)> {
        let keys = checked
            .iter()
            .map(|(kind, name, _)| (*kind, name.to_string()));
        let twice = crate::broker::duplicates(keys);
        let mut waiting = Vec::new();
        for (position, (kind, name, overrides)) in checked.into_iter().enumerate() {
            let name = name.to_string();
            match overrides {
                _ if twice.contains(&(kind, name.clone())) => {
                    let code = ErrorCode::InvalidRequest.code();
                    response.fail(position, code, "the resource is named twice".into());
                }
                Err(err) => response.fail(position, err.code().code(), err.to_string()),
                Ok(_) if validate_only => {}
                Ok((Some(node), configs)) => {
                    let name = super::broker_resource_name(node);
                    let change = TopicChange::BrokerConfigs;
                    self.topic_results.remove(&(change, name.clone()));
                    // Only what this request changes goes: the keys it sets and deletes.
                    let empty = BTreeMap::new();
                    let current = self.image().broker_configs(node).unwrap_or(&empty);
                    let mut changes: BTreeMap<String, Option<String>> = (configs.iter())
                        .filter(|(key, value)| current.get(*key) != Some(*value))
                        .map(|(key, value)| (key.clone(), Some(value.clone())))
                        .collect();
                    for key in current.keys().filter(|key| !configs.contains_key(*key)) {
                        changes.insert(key.clone(), None);
                    }
                    let want = Want::BrokerConfigs(node, changes.clone());
                    let message = PeerMessage::AlterBrokerConfigs { node, changes };
                    let _ = self.send_to_controller(now, message);
                    waiting.push((name, position, want));
                }
                Ok((None, configs)) => {
                    self.topic_results
                        .remove(&(TopicChange::Configs, name.clone()));
                    let message = PeerMessage::AlterTopicConfigs {
                        name: name.clone(),
                        configs: configs.clone(),
                    };
                    let _ = self.send_to_controller(now, message);
                    waiting.push((name, position, Want::Configs(configs)));
                }
            }
        }
        waiting
    }

    /// Answers now when no topic waits, else parks the request until
    /// [`ClusterNode::complete_topic_changes`] finds every change made.
    fn park_topics(
        &mut self,
        now: Millis,
        response: TopicsResponse,
        waiting: Vec<(String, usize, Want)>,
        timeout_ms: i32,
    ) -> Reply {
        if waiting.is_empty() {
            return Reply::Response(Box::new(response.into_response()));
        }
        let id = ParkedId::TopicChange(self.next_parked_number());
        let deadline = Millis(now.0 + i64::from(timeout_ms.max(0)));
        let parked = ParkedTopics {
            response,
            waiting,
            deadline,
        };
        self.topic_changes.insert(id, parked);
        self.complete_topic_changes(now);
        Reply::Parked(id)
    }

    /// The earliest deadline of a parked topic change.
    pub(super) fn next_topic_change_deadline(&self) -> Option<Millis> {
        self.topic_changes.values().map(|c| c.deadline).min()
    }

    /// Answers the parked topic changes whose changes this node's image shows, that the controller refused, or that are out of time.
    pub(super) fn complete_topic_changes(&mut self, now: Millis) {
        let parked = std::mem::take(&mut self.topic_changes);
        for (id, mut request) in parked {
            let mut still = Vec::new();
            for (name, position, want) in request.waiting {
                let topic = self.image().topic(&name);
                let done = match &want {
                    Want::Exists => topic.is_some(),
                    Want::Gone => topic.is_none(),
                    Want::Partitions(count) => {
                        topic.is_some_and(|t| t.partitions.len() >= *count as usize)
                    }
                    Want::Configs(configs) => topic.is_some_and(|t| t.configs == *configs),
                    Want::Unregistered(node) => !self.image().brokers().contains_key(node),
                    Want::BrokerConfigs(node, changes) => {
                        let empty = BTreeMap::new();
                        let now_set = self.image().broker_configs(*node).unwrap_or(&empty);
                        (changes.iter()).all(|(key, value)| now_set.get(key) == value.as_ref())
                    }
                };
                if done {
                    continue;
                }
                match self.topic_results.get(&(want.change(), name.clone())) {
                    Some((code, message)) if *code != 0 => {
                        request.response.fail(position, *code, message.clone());
                    }
                    _ if request.deadline <= now => {
                        let code = ErrorCode::RequestTimedOut.code();
                        let message = format!("{name}: the controller did not answer in time");
                        request.response.fail(position, code, message);
                    }
                    _ => still.push((name, position, want)),
                }
            }
            request.waiting = still;
            if request.waiting.is_empty() {
                let response = request.response.into_response();
                self.completed
                    .push(Completed::Response(id, Box::new(response)));
            } else {
                self.topic_changes.insert(id, request);
            }
        }
        // The controller's answers matter only to requests still waiting for them.
        let waited: std::collections::BTreeSet<(TopicChange, &str)> = (self.topic_changes.values())
            .flat_map(|r| {
                r.waiting
                    .iter()
                    .map(|(name, _, want)| (want.change(), name.as_str()))
            })
            .collect();
        self.topic_results
            .retain(|(change, name), _| waited.contains(&(*change, name.as_str())));
    }
}
