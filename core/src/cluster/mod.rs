//! Cluster metadata: which brokers exist, which topics and partitions, and who leads and
//! follows each partition in which epoch — Kafka's KRaft metadata, as plain state machines.
//!
//! The metadata is a log of [`MetadataRecord`]s. The active controller ([`Controller`])
//! decides — broker sessions and fencing, replica assignment, clean leader election from the
//! ISR, leaders' ISR changes — and writes records; the log is replicated by the controller
//! quorum; every node applies the committed records in order to its [`ClusterImage`], and
//! brokers act on the partitions the image gives them (lead, follow, stop).
//!
//! This module decides; it stores nothing and sends nothing. **API boundary:** the records
//! are the only way the image changes ([`ClusterImage::apply`]), and [`MetadataRecord::encode`]
//! / [`MetadataRecord::decode`] are their stored form.

mod controller;
mod image;
pub(crate) mod records;
#[cfg(test)]
mod tests;

pub use controller::{
    check_assignments, check_target, Controller, ControllerConfig, Elected, Election, IsrChange,
    NewTopic, Reassigned, Reassignment,
};
pub use image::{BrokerImage, ClusterImage, ImageError, TopicImage};
pub use records::{BrokerRegistration, MetadataRecord, PartitionRecord, RecordDecodeError};
