//! Kafka record batches: the v2 format the log stores, building batches, reading the records
//! inside them, the compression codecs, transaction markers and the legacy (magic 0 and 1)
//! message sets old producers send.
//!
//! **API boundary:** the log and the broker see batches only through [`Batch`], a view that
//! never copies; record-level decoding ([`decode_records`], [`RecordIter`]) happens only where
//! the broker must look inside, and legacy message sets are converted ([`convert_legacy`])
//! before anything else sees them.

mod batch;
mod builder;
mod compression;
mod control;
mod legacy;
mod records;
pub mod varint;

pub use batch::{
    declared_size, set_base_offset, set_log_append_time, set_partition_leader_epoch, Batch,
    BatchError, Batches, Compression, TimestampType, CRC_START, HEADER_LEN, LOG_OVERHEAD,
    MAGIC_OFFSET, MAGIC_V2, RECORD_LEN_MIN,
};
pub use builder::{BatchBuilder, Header, Record};
pub use compression::{compress, decompress, decompress_lz4_magic0};
pub use control::{ControlMarker, ControlType};
pub use legacy::{
    convert_legacy, is_legacy, LEGACY_INFLATION_MAX, MAGIC_V0, MAGIC_V1, NO_TIMESTAMP,
};
pub use records::{
    decode_records, record_section, DecodedRecord, HeaderRef, RecordIter, RecordRef,
};
