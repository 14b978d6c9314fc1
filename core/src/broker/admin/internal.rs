//! The internal topic `__consumer_offsets` is the group coordinator's storage: clients may
//! read it, but not delete it, grow it, cut its head off or stop its compaction.
//!
//! The codes are those a Kafka client meets for the same requests:
//! - DeleteTopics and CreatePartitions: `TOPIC_AUTHORIZATION_FAILED`. A Kafka broker leaves
//!   internal topics to its authorizer, and on a secured cluster only the brokers' own
//!   principal may alter them; Brook has no principals, so every client is such an ordinary
//!   one. The code is permanent (not retried) in every client, and the message says why.
//!   Growing the topic would move groups to other partitions (a group's partition is the
//!   hash of its id modulo the count) and so lose their committed offsets.
//! - DeleteRecords: `INVALID_TOPIC_EXCEPTION`, exactly what Kafka's `ReplicaManager` answers
//!   ("Cannot delete records of internal topic").
//! - AlterConfigs / IncrementalAlterConfigs: allowed, except a `cleanup.policy` other than
//!   `compact` alone (with `delete`, retention would drop live offsets; without `compact`,
//!   the topic grows forever): `POLICY_VIOLATION`, the code of Kafka's
//!   `alter.config.policy.class.name` refusals, with a message naming the setting.

use std::collections::BTreeMap;

use super::{list_items, AdminError};
use crate::broker::OFFSETS_TOPIC;
use crate::error::ErrorCode;

/// The only `cleanup.policy` the internal topic may have.
const INTERNAL_CLEANUP_POLICY: &str = "compact";

/// Whether a topic is Brook's internal one.
pub(crate) fn is_internal(topic: &str) -> bool {
    topic == OFFSETS_TOPIC || topic == crate::broker::TRANSACTION_STATE_TOPIC
}

/// CreatePartitions on the internal topic is refused.
pub(crate) fn check_partitions_change(topic: &str) -> Result<(), AdminError> {
    if is_internal(topic) {
        return Err(AdminError::InternalTopic(format!(
            "{topic} is an internal topic: its partition count is fixed at creation \
             (offsets-topic-num-partitions); more partitions would move groups away from \
             their committed offsets"
        )));
    }
    Ok(())
}

/// DeleteRecords on the internal topic is refused, as Kafka does.
pub(crate) fn check_delete_records(topic: &str) -> Result<(), ErrorCode> {
    if is_internal(topic) {
        return Err(ErrorCode::InvalidTopicException);
    }
    Ok(())
}

/// The overrides the internal topic would get must keep it compacted, and only compacted.
pub(crate) fn check_overrides(
    topic: &str,
    overrides: &BTreeMap<String, String>,
) -> Result<(), AdminError> {
    if !is_internal(topic) {
        return Ok(());
    }
    let policy = overrides.get("cleanup.policy").map(|v| list_items(v));
    if policy.as_deref() != Some(&[INTERNAL_CLEANUP_POLICY.to_string()][..]) {
        return Err(AdminError::Policy(format!(
            "{topic} is an internal topic: its cleanup.policy must stay \
             {INTERNAL_CLEANUP_POLICY} (committed offsets are kept by compaction)"
        )));
    }
    Ok(())
}
