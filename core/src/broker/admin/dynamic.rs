//! Dynamic broker configs of a cluster member, kept in the metadata log so that every node
//! applies them: for now the replication throttles a reassignment's catch-up uses
//! (`leader.replication.throttled.rate`, `follower.replication.throttled.rate`, bytes per
//! second). IncrementalAlterConfigs of a BROKER resource sets them for one broker (its id)
//! or for every broker (the empty name, Kafka's `--entity-default`); every other broker
//! config stays static.

use std::collections::BTreeMap;

use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource as IncrementalResource;

use super::{duplicates, AdminError, OP_DELETE, OP_SET};
use crate::broker::{Broker, StorageProvider};
use crate::types::NodeId;

/// The leader's byte rate for replicas a reassignment adds.
pub const LEADER_THROTTLE: &str = "leader.replication.throttled.rate";
/// The follower's byte rate for the replicas it catches up as a reassignment's new replica.
pub const FOLLOWER_THROTTLE: &str = "follower.replication.throttled.rate";
/// The broker configs that may change while it runs.
pub(crate) const DYNAMIC_BROKER_CONFIGS: [&str; 2] = [FOLLOWER_THROTTLE, LEADER_THROTTLE];

impl<P: StorageProvider> Broker<P> {
    /// The broker a BROKER resource names on a member, -1 for the empty name (every
    /// broker), and its dynamic configs after `resource`'s SET and DELETE operations.
    pub(crate) fn dynamic_broker_overrides(
        &self,
        resource: &IncrementalResource,
    ) -> Result<(i32, BTreeMap<String, String>), AdminError> {
        let image = self.image();
        let name = resource.resource_name.as_str();
        let node = match name {
            "" => -1,
            id => match id.parse::<i32>() {
                Ok(id) if image.brokers().contains_key(&NodeId(id)) => id,
                _ => {
                    return Err(AdminError::InvalidRequest(format!(
                        "broker {name:?} is not registered (an id, or empty for every broker)"
                    )))
                }
            },
        };
        let keys = resource.configs.iter().map(|c| c.name.as_str());
        if let Some(key) = duplicates(keys).first() {
            let message = format!("config {key} is named twice");
            return Err(AdminError::InvalidRequest(message));
        }
        let mut configs = image.broker_configs(node).cloned().unwrap_or_default();
        for config in &resource.configs {
            let key = config.name.as_str();
            if !DYNAMIC_BROKER_CONFIGS.contains(&key) {
                return Err(AdminError::InvalidRequest(format!(
                    "{key} is a static broker config in Brook (set it when starting the \
                     broker); dynamic: {}",
                    DYNAMIC_BROKER_CONFIGS.join(", ")
                )));
            }
            match (config.config_operation, config.value.as_ref()) {
                (OP_DELETE, _) => {
                    configs.remove(key);
                }
                (OP_SET, Some(value)) => {
                    let rate = value.parse::<i64>().ok().filter(|r| *r >= 1);
                    if rate.is_none() {
                        return Err(AdminError::ConfigOperation(format!(
                            "{key}={value}: a rate in bytes per second, at least 1"
                        )));
                    }
                    configs.insert(key.to_string(), value.to_string());
                }
                (OP_SET, None) => {
                    return Err(AdminError::InvalidRequest(format!(
                        "config {key} has a null value"
                    )))
                }
                (other, _) => {
                    return Err(AdminError::ConfigOperation(format!(
                        "operation {other} does not apply to {key} (SET or DELETE)"
                    )))
                }
            }
        }
        Ok((node, configs))
    }
}
