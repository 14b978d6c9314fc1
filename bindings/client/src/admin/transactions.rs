//! The admin client's transaction calls (KIP-664, what `kafka-transactions.sh list` and
//! `describe` do): which transactional ids the cluster's coordinators hold, and what one
//! id's coordinator knows of its current transaction.
//!
//! `list_transactions` asks every broker the metadata names, since each coordinates the ids
//! of the `__transaction_state` partitions it leads, and merges the answers.
//! `describe_transactions` goes to each id's coordinator through `Admin::ask_coordinator`
//! (`admin/coordinator.rs`: FindCoordinator with key type 1, asked again when the answer says
//! it moved or is loading), the path the group calls take.
//!
//! **API boundary:** these calls only read what coordinators hold; nothing here begins,
//! ends or fences a transaction.

use std::collections::BTreeMap;
use std::time::Duration;

use brook_core::ErrorCode;
use kafka_protocol::messages::describe_transactions_response::TransactionState as Described;
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ListTransactionsRequest,
    ListTransactionsResponse, ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use super::coordinator::{first_coordinator_error, CoordinatorAnswer};
use super::coordinator::{COORDINATOR_ATTEMPTS_MAX, COORDINATOR_BACKOFF};
use super::Admin;
use crate::error::{check, Error};
use crate::group::CoordinatorType;
use crate::TopicPartition;

/// ListTransactions versions this client speaks; v1 added the duration filter (KIP-994).
const LIST_TRANSACTIONS_VERSIONS: (i16, i16) = (0, 1);
/// The versions that carry a duration filter.
const LIST_TRANSACTIONS_DURATION_VERSIONS: (i16, i16) = (1, 1);
/// DescribeTransactions versions this client speaks.
const DESCRIBE_TRANSACTIONS_VERSIONS: (i16, i16) = (0, 0);

/// The state of a transactional id at its coordinator, as Kafka names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TransactionState {
    /// No transaction is open (the producer initialised, or the last one ended long ago).
    Empty,
    /// A transaction is open: partitions were added and not yet committed or aborted.
    Ongoing,
    /// The producer asked to commit; the coordinator is writing the commit markers.
    PrepareCommit,
    /// The producer asked to abort (or the transaction timed out); abort markers are being
    /// written.
    PrepareAbort,
    /// The last transaction committed.
    CompleteCommit,
    /// The last transaction aborted.
    CompleteAbort,
    /// The id expired and is being removed.
    Dead,
    /// A newer producer instance fenced the old one; its open transaction is being aborted.
    PrepareEpochFence,
    /// A state this client does not know (a newer protocol's), as the broker spelled it.
    Other(String),
}

impl TransactionState {
    /// Every state this client knows, in Kafka's order of their stored ids.
    pub const KNOWN: [TransactionState; 8] = [
        TransactionState::Empty,
        TransactionState::Ongoing,
        TransactionState::PrepareCommit,
        TransactionState::PrepareAbort,
        TransactionState::CompleteCommit,
        TransactionState::CompleteAbort,
        TransactionState::Dead,
        TransactionState::PrepareEpochFence,
    ];

    /// The state from the broker's name for it (case-sensitive, as brokers match filters).
    pub fn parse(name: &str) -> TransactionState {
        Self::KNOWN
            .into_iter()
            .find(|state| state.as_str() == name)
            .unwrap_or_else(|| TransactionState::Other(name.to_string()))
    }

    /// The broker's name for the state.
    pub fn as_str(&self) -> &str {
        match self {
            TransactionState::Empty => "Empty",
            TransactionState::Ongoing => "Ongoing",
            TransactionState::PrepareCommit => "PrepareCommit",
            TransactionState::PrepareAbort => "PrepareAbort",
            TransactionState::CompleteCommit => "CompleteCommit",
            TransactionState::CompleteAbort => "CompleteAbort",
            TransactionState::Dead => "Dead",
            TransactionState::PrepareEpochFence => "PrepareEpochFence",
            TransactionState::Other(name) => name,
        }
    }
}

impl std::fmt::Display for TransactionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which transactions [`Admin::list_transactions`] returns; the default returns all. A
/// transaction must pass every filter that is set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListTransactionsFilter {
    /// Only ids in one of these states; every state when empty. A name a broker does not
    /// know matches nothing there (it answers the name back in `unknown_state_filters`).
    pub states: Vec<TransactionState>,
    /// Only ids of these producer ids; every producer when empty.
    pub producer_ids: Vec<i64>,
    /// Only transactions open (Ongoing, PrepareCommit or PrepareAbort) for longer than this
    /// many milliseconds. Needs ListTransactions v1 (Kafka 3.8+); an older broker fails the
    /// call as unsupported rather than ignore the filter.
    pub duration_ms: Option<i64>,
}

/// One transactional id as ListTransactions reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionListing {
    /// The transactional id.
    pub transactional_id: String,
    /// The producer id it currently uses.
    pub producer_id: i64,
    /// Its state at the coordinator.
    pub state: TransactionState,
    /// The node id of the broker that listed it: its coordinator.
    pub coordinator: i32,
}

/// A transactional id as its coordinator describes it (DescribeTransactions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionDescription {
    /// The transactional id.
    pub transactional_id: String,
    /// Its state.
    pub state: TransactionState,
    /// The producer id it currently uses.
    pub producer_id: i64,
    /// The current producer epoch; a producer with an older one is fenced.
    pub producer_epoch: i16,
    /// The transaction timeout the producer asked for (`transaction.timeout.ms`).
    pub timeout_ms: i32,
    /// When the current (or last) transaction began, in ms since the epoch; `None` when the
    /// coordinator says -1 (no transaction has begun since the producer initialised).
    pub start_time_ms: Option<i64>,
    /// The partitions in the open transaction, sorted; empty when none is open.
    pub partitions: Vec<TopicPartition>,
    /// The node id of its coordinator (the leader of its `__transaction_state` partition).
    pub coordinator: i32,
}

impl Admin {
    /// Every transactional id the cluster's coordinators hold that passes `filter`, sorted
    /// by id: asks every broker, as `kafka-transactions.sh list` does, and merges their
    /// answers. A broker whose coordinator is not available (shutting down, or no
    /// `__transaction_state` yet) lists nothing; one still loading is asked again.
    pub async fn list_transactions(
        &self,
        filter: ListTransactionsFilter,
    ) -> Result<Vec<TransactionListing>, Error> {
        if let Some(duration_ms) = filter.duration_ms.filter(|&ms| ms < 0) {
            return Err(Error::Config(format!(
                "the duration filter must be at least 0 ms, not {duration_ms}"
            )));
        }
        self.refresh_controller().await?;
        let brokers = self.network.brokers();
        if brokers.is_empty() {
            return Err(Error::Protocol("the metadata names no broker".into()));
        }
        let mut listed = BTreeMap::new();
        for (node_id, addr) in brokers {
            let response = self.list_transactions_at(&addr, &filter).await?;
            for state in response.transaction_states {
                let listing = TransactionListing {
                    transactional_id: state.transactional_id.0.to_string(),
                    producer_id: state.producer_id.0,
                    state: TransactionState::parse(state.transaction_state.as_str()),
                    coordinator: node_id,
                };
                listed.insert(listing.transactional_id.clone(), listing);
            }
        }
        Ok(listed.into_values().collect())
    }

    /// Each of `ids` as its coordinator describes it, in the order asked. An id the
    /// coordinator does not know fails with TRANSACTIONAL_ID_NOT_FOUND.
    pub async fn describe_transactions(
        &self,
        ids: &[&str],
    ) -> Result<Vec<TransactionDescription>, Error> {
        let mut described = Vec::with_capacity(ids.len());
        for &id in ids {
            let (coordinator, response) = self
                .ask_coordinator(
                    CoordinatorType::Transaction,
                    id,
                    DESCRIBE_TRANSACTIONS_VERSIONS,
                    |_| describe_transactions_request(id),
                )
                .await?;
            let answer = response
                .transaction_states
                .into_iter()
                .find(|state| state.transactional_id.0.as_str() == id)
                .ok_or_else(|| Error::Protocol(format!("DescribeTransactions left out {id}")))?;
            check(
                answer.error_code,
                None,
                &format!("describe transactional id {id}"),
            )?;
            described.push(description(answer, coordinator.node_id));
        }
        Ok(described)
    }

    /// ListTransactions at the broker at `addr`, asked again while its coordinator loads;
    /// an empty answer when it has no coordinator available.
    async fn list_transactions_at(
        &self,
        addr: &str,
        filter: &ListTransactionsFilter,
    ) -> Result<ListTransactionsResponse, Error> {
        let versions = match filter.duration_ms {
            Some(_) => LIST_TRANSACTIONS_DURATION_VERSIONS,
            None => LIST_TRANSACTIONS_VERSIONS,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let response = self
                .network
                .call(addr, versions, Duration::ZERO, |version| {
                    list_transactions_request(version, filter)
                })
                .await?;
            match ErrorCode::from_code(response.error_code) {
                ErrorCode::CoordinatorNotAvailable => {
                    return Ok(ListTransactionsResponse::default())
                }
                ErrorCode::CoordinatorLoadInProgress if attempt < COORDINATOR_ATTEMPTS_MAX => {
                    tokio::time::sleep(COORDINATOR_BACKOFF).await;
                }
                _ => {
                    let context = format!("ListTransactions from {addr}");
                    check(response.error_code, None, &context)?;
                    return Ok(response);
                }
            }
        }
    }
}

impl CoordinatorAnswer for DescribeTransactionsResponse {
    fn coordinator_error(&self) -> Option<i16> {
        first_coordinator_error(self.transaction_states.iter().map(|s| s.error_code))
    }
}

/// A DescribeTransactions request of one id.
fn describe_transactions_request(id: &str) -> DescribeTransactionsRequest {
    let id = TransactionalId(StrBytes::from_string(id.to_string()));
    DescribeTransactionsRequest::default().with_transactional_ids(vec![id])
}

/// A ListTransactions request with `filter`'s state, producer and (v1+) duration filters.
fn list_transactions_request(
    version: i16,
    filter: &ListTransactionsFilter,
) -> ListTransactionsRequest {
    let states = (filter.states.iter())
        .map(|s| StrBytes::from_string(s.as_str().to_string()))
        .collect();
    let producers = filter.producer_ids.iter().map(|&p| ProducerId(p)).collect();
    let request = ListTransactionsRequest::default()
        .with_state_filters(states)
        .with_producer_id_filters(producers);
    match filter.duration_ms {
        Some(duration_ms) if version >= 1 => request.with_duration_filter(duration_ms),
        _ => request,
    }
}

/// The description in a DescribeTransactions answer without error, from `coordinator`.
fn description(answer: Described, coordinator: i32) -> TransactionDescription {
    let mut partitions: Vec<TopicPartition> = (answer.topics.iter())
        .flat_map(|topic| {
            (topic.partitions.iter()).map(|&p| TopicPartition::new(topic.topic.0.as_str(), p))
        })
        .collect();
    partitions.sort();
    let start_ms = answer.transaction_start_time_ms;
    TransactionDescription {
        transactional_id: answer.transactional_id.0.to_string(),
        state: TransactionState::parse(answer.transaction_state.as_str()),
        producer_id: answer.producer_id.0,
        producer_epoch: answer.producer_epoch,
        timeout_ms: answer.transaction_timeout_ms,
        start_time_ms: (start_ms >= 0).then_some(start_ms),
        partitions,
        coordinator,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::tests::encodes;
    use kafka_protocol::messages::describe_transactions_response::TopicData;
    use kafka_protocol::messages::TopicName;

    /// Each transaction request encodes in every version the admin client may pick, the
    /// duration filter only from v1.
    #[test]
    fn transaction_admin_requests_encode_in_every_version() {
        encodes(
            &describe_transactions_request("tx"),
            DESCRIBE_TRANSACTIONS_VERSIONS,
            "DescribeTransactions",
        );
        let filter = ListTransactionsFilter {
            states: vec![TransactionState::Ongoing],
            producer_ids: vec![7],
            duration_ms: Some(1_000),
        };
        for version in LIST_TRANSACTIONS_VERSIONS.0..=LIST_TRANSACTIONS_VERSIONS.1 {
            let request = list_transactions_request(version, &filter);
            encodes(&request, (version, version), "ListTransactions");
            let expected = if version >= 1 { 1_000 } else { -1 };
            assert_eq!(request.duration_filter, expected, "v{version}");
        }
        let unfiltered = list_transactions_request(1, &ListTransactionsFilter::default());
        assert_eq!(unfiltered.duration_filter, -1);
        assert!(unfiltered.state_filters.is_empty());
    }

    #[test]
    fn transaction_states_round_trip_their_names() {
        for state in TransactionState::KNOWN {
            assert_eq!(TransactionState::parse(state.as_str()), state);
        }
        assert_eq!(
            TransactionState::parse("ongoing"),
            TransactionState::Other("ongoing".into())
        );
    }

    #[test]
    fn transaction_description_sorts_partitions_and_hides_no_start_time() {
        let mut answer = Described::default();
        answer.transactional_id = TransactionalId(StrBytes::from_static_str("tx"));
        answer.transaction_state = StrBytes::from_static_str("Empty");
        answer.transaction_start_time_ms = -1;
        answer.producer_id = ProducerId(4);
        let described = description(answer.clone(), 2);
        assert_eq!(described.start_time_ms, None);
        assert!(described.partitions.is_empty());
        assert_eq!((described.producer_id, described.coordinator), (4, 2));

        answer.transaction_state = StrBytes::from_static_str("Ongoing");
        answer.transaction_start_time_ms = 1_700_000_000_000;
        let mut topic = TopicData::default();
        topic.topic = TopicName(StrBytes::from_static_str("b"));
        topic.partitions = vec![1, 0];
        let mut other = TopicData::default();
        other.topic = TopicName(StrBytes::from_static_str("a"));
        other.partitions = vec![3];
        answer.topics = vec![topic, other];
        let described = description(answer, 2);
        assert_eq!(described.state, TransactionState::Ongoing);
        assert_eq!(described.start_time_ms, Some(1_700_000_000_000));
        let expected = [("a", 3), ("b", 0), ("b", 1)].map(|(t, p)| TopicPartition::new(t, p));
        assert_eq!(described.partitions, expected);
    }
}
