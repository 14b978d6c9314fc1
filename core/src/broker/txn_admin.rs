//! DescribeTransactions and ListTransactions (KIP-664): what the transaction coordinator on
//! this broker holds, for operators and their tools (`kafka-transactions.sh`).

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::list_transactions_response::TransactionState as Listed;
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ListTransactionsRequest,
    ListTransactionsResponse, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use super::{Broker, StorageProvider};
use crate::error::ErrorCode;
use crate::txn::{TxnState, TxnValue};
use crate::types::Millis;

impl<P: StorageProvider> Broker<P> {
    /// DescribeTransactions: each id's state, partitions and timing, at its coordinator
    /// (`NOT_COORDINATOR` elsewhere, `TRANSACTIONAL_ID_NOT_FOUND` for an id it does not
    /// know).
    pub(crate) fn handle_describe_transactions(
        &self,
        request: DescribeTransactionsRequest,
    ) -> DescribeTransactionsResponse {
        let mut response = DescribeTransactionsResponse::default();
        for id in request.transactional_ids {
            let name = id.0.to_string();
            let mut state = TransactionState::default();
            state.transactional_id = id;
            state.producer_id = kafka_protocol::messages::ProducerId(-1);
            state.producer_epoch = -1;
            state.transaction_start_time_ms = -1;
            let known = match self.txn_coordinator_error(&name) {
                Some(code) => Err(code),
                None => (self.transactions.coordinator.get(&name))
                    .filter(|v| v.producer_id.0 >= 0)
                    .ok_or(ErrorCode::TransactionalIdNotFound),
            };
            match known {
                Err(code) => state.error_code = code.code(),
                Ok(value) => describe(&mut state, value),
            }
            response.transaction_states.push(state);
        }
        response
    }

    /// ListTransactions: the ids this broker coordinates, filtered by state names, producer
    /// ids and (v1) how long the transaction has been open.
    pub(crate) fn handle_list_transactions(
        &self,
        now: Millis,
        request: ListTransactionsRequest,
        version: i16,
    ) -> ListTransactionsResponse {
        let mut response = ListTransactionsResponse::default();
        let mut states = Vec::new();
        for name in &request.state_filters {
            match TxnState::from_name(name.as_str()) {
                Some(state) => states.push(state),
                None => response.unknown_state_filters.push(name.clone()),
            }
        }
        let producers: Vec<i64> = request.producer_id_filters.iter().map(|p| p.0).collect();
        let duration = if version >= 1 {
            request.duration_filter
        } else {
            -1
        };
        for (id, value) in self.transactions.coordinator.iter() {
            let open_for = match value.state {
                TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort => {
                    now.0 - value.start_ms
                }
                _ => -1,
            };
            let wanted = value.producer_id.0 >= 0
                && (states.is_empty() || states.contains(&value.state))
                && (producers.is_empty() || producers.contains(&value.producer_id.0))
                && (duration < 0 || open_for > duration);
            if !wanted {
                continue;
            }
            let mut listed = Listed::default();
            listed.transactional_id = TransactionalId(StrBytes::from_string(id.to_string()));
            listed.producer_id = kafka_protocol::messages::ProducerId(value.producer_id.0);
            listed.transaction_state = StrBytes::from_static_str(value.state.name());
            response.transaction_states.push(listed);
        }
        response
    }
}

/// Fills a DescribeTransactions answer from the coordinator's committed state.
fn describe(state: &mut TransactionState, value: &TxnValue) {
    state.transaction_state = StrBytes::from_static_str(value.state.name());
    state.transaction_timeout_ms = value.timeout_ms;
    state.transaction_start_time_ms = value.start_ms;
    state.producer_id = kafka_protocol::messages::ProducerId(value.producer_id.0);
    state.producer_epoch = value.producer_epoch.0;
    let mut topics: Vec<TopicData> = Vec::new();
    for (topic, partition) in &value.partitions {
        if topics.last().is_none_or(|t| t.topic.0.as_str() != topic) {
            let mut data = TopicData::default();
            data.topic = TopicName(StrBytes::from_string(topic.clone()));
            topics.push(data);
        }
        topics
            .last_mut()
            .expect("pushed")
            .partitions
            .push(*partition);
    }
    state.topics = topics;
}
