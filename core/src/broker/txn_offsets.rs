//! TxnOffsetCommit: a transactional producer commits a consumer group's offsets as part of
//! its transaction. The group's coordinator writes them to `__consumer_offsets` as the
//! producer's transactional batch and holds them ([`crate::group::GroupCoordinator::
//! stage_txn_offsets`]) until the transaction's marker reaches that partition: a commit
//! applies them, an abort drops them.

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{ResponseKind, TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::groups::{offset_records, offset_to_commit, AskedOffset};
use super::{Broker, Reply, StorageProvider};
use crate::error::ErrorCode;
use crate::group::MemberIdentity;
use crate::types::{Millis, ProducerEpoch, ProducerId};

impl<P: StorageProvider> Broker<P> {
    /// Answers TxnOffsetCommit once its records are committed (KIP-447: a member id and
    /// generation, when given, must be the group's current ones).
    pub(crate) fn handle_txn_offset_commit(
        &mut self,
        now: Millis,
        request: TxnOffsetCommitRequest,
        version: i16,
    ) -> Reply {
        let group_id = request.group_id.0.to_string();
        let producer_id = ProducerId(request.producer_id.0);
        let epoch = ProducerEpoch(request.producer_epoch);
        let verdict = self
            .serving_group_for_txn(now, &group_id)
            .and_then(|()| self.check_txn_member(&group_id, &request));
        let metadata_max = self.groups.coordinator.config().offset_metadata_bytes_max;
        let mut accepted = Vec::new();
        let mut response = TxnOffsetCommitResponse::default();
        for topic in &request.topics {
            let name = topic.name.0.as_str();
            let partitions = self.topics.get(name).map_or(0, |t| t.partitions.count());
            let mut answer = TxnOffsetCommitResponseTopic::default();
            answer.name = topic.name.clone();
            for partition in &topic.partitions {
                let metadata = partition.committed_metadata.as_ref();
                let asked = AskedOffset {
                    partition: partition.partition_index,
                    offset: partition.committed_offset,
                    leader_epoch: (version >= 2).then_some(partition.committed_leader_epoch),
                    metadata: metadata.map_or("", |m| m.as_str()),
                };
                let code = match offset_to_commit(now, verdict, partitions, metadata_max, &asked) {
                    Err(code) => code,
                    Ok(value) => {
                        accepted.push((name.to_string(), partition.partition_index, value));
                        ErrorCode::None
                    }
                };
                let mut p = TxnOffsetCommitResponsePartition::default();
                p.partition_index = partition.partition_index;
                p.error_code = code.code();
                answer.partitions.push(p);
            }
            response.topics.push(answer);
        }
        if accepted.is_empty() {
            return Reply::Response(Box::new(ResponseKind::TxnOffsetCommit(response)));
        }
        let records = offset_records(&group_id, &accepted);
        match self.write_group_batches(now, &records, Some((producer_id, epoch))) {
            Err(code) => {
                let code = match code {
                    ErrorCode::InvalidProducerEpoch if version >= 2 => ErrorCode::ProducerFenced,
                    other => other,
                };
                let partitions = response.topics.iter_mut().flat_map(|t| &mut t.partitions);
                for partition in partitions.filter(|p| p.error_code == 0) {
                    partition.error_code = code.code();
                }
                Reply::Response(Box::new(ResponseKind::TxnOffsetCommit(response)))
            }
            Ok(waits) => {
                let id =
                    self.await_txn_commit(now, waits, group_id, producer_id, accepted, response);
                self.reply_when_done(id)
            }
        }
    }

    /// Whether this broker coordinates the group now.
    fn serving_group_for_txn(&mut self, now: Millis, group: &str) -> Result<(), ErrorCode> {
        if group.is_empty() {
            return Err(ErrorCode::InvalidGroupId);
        }
        self.ensure_offsets_topic(now)?;
        self.coordinator_error(group).map_or(Ok(()), Err)
    }

    /// Kafka's checks of a TxnOffsetCommit's member: a member id that is not the group's
    /// is unknown, a generation other than the group's is illegal.
    fn check_txn_member(
        &self,
        group_id: &str,
        request: &TxnOffsetCommitRequest,
    ) -> Result<(), ErrorCode> {
        let coordinator = &self.groups.coordinator;
        let member_id = request.member_id.as_str();
        if !member_id.is_empty() {
            let identity = MemberIdentity {
                member_id: member_id.to_string(),
                group_instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
            };
            if !coordinator.is_member(group_id, &identity) {
                return Err(ErrorCode::UnknownMemberId);
            }
        }
        if request.generation_id >= 0
            && coordinator.generation(group_id) != Some(request.generation_id)
        {
            return Err(ErrorCode::IllegalGeneration);
        }
        Ok(())
    }
}
