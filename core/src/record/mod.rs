//! Kafka record batches: the v2 format the log stores, building batches, and (in the modules
//! below) reading the records inside them.
//!
//! **API boundary:** the log and the broker see batches only through [`Batch`], a view that
//! never copies; record-level decoding happens only where the broker must look inside.

mod batch;
mod builder;
pub mod varint;

pub use batch::{
    declared_size, set_base_offset, set_log_append_time, set_partition_leader_epoch, Batch,
    BatchError, Batches, Compression, TimestampType, CRC_START, HEADER_LEN, LOG_OVERHEAD,
    MAGIC_OFFSET, MAGIC_V2, RECORD_LEN_MIN,
};
pub use builder::{BatchBuilder, Header, Record};
