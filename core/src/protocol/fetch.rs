//! Brook's own Fetch response encoder, so record bytes never pass through memory: the
//! response is a list of [`Part`]s — framing bytes to write and file ranges to `sendfile`.
//!
//! Layout (Kafka's FetchResponse v4–v17; v12 is the first flexible version, with compact
//! strings, arrays and bytes and tagged-field sections):
//! throttle_time_ms, error_code (v7+), session_id (v7+), then per topic its name (v4–12) or
//! topic id (v13+) and per partition: index, error_code, high_watermark, last_stable_offset,
//! log_start_offset (v5+), aborted_transactions, preferred_read_replica (v11+), records.
//! v14–v17 change only request fields and add optional tagged fields (the current leader and
//! node endpoints of KIP-951), which Brook does not send (clients refresh their metadata).

use bytes::{BufMut, Bytes, BytesMut};

use super::{put_unsigned_varint, SIZE_PREFIX_LEN};

/// A range of a segment file holding whole record batches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRange {
    /// The partition's directory name (`topic-partition`).
    pub dir: String,
    /// The segment file name inside it.
    pub file: String,
    /// Byte position of the first batch.
    pub position: u64,
    /// Number of bytes.
    pub length: u64,
}

/// One piece of an encoded response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// Bytes to write as they are.
    Bytes(Bytes),
    /// Bytes to send straight from a file.
    File(FileRange),
}

impl Part {
    /// The number of bytes this part puts on the wire.
    pub fn len(&self) -> u64 {
        match self {
            Part::Bytes(bytes) => bytes.len() as u64,
            Part::File(range) => range.length,
        }
    }

    /// Whether the part is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One partition's answer in a Fetch response.
#[derive(Clone, Debug)]
pub struct FetchPartitionData {
    /// The partition index.
    pub partition_index: i32,
    /// Kafka error code for this partition.
    pub error_code: i16,
    /// The high watermark.
    pub high_watermark: i64,
    /// The last stable offset.
    pub last_stable_offset: i64,
    /// The log start offset.
    pub log_start_offset: i64,
    /// Aborted transactions overlapping the records: (producer id, first offset).
    pub aborted_transactions: Vec<(i64, i64)>,
    /// The record bytes, as file ranges (empty = no records).
    pub records: Vec<FileRange>,
    /// For a follower whose log diverged from the leader's (KIP-320, v12+): the epoch and
    /// end offset to truncate by, instead of records.
    pub diverging_epoch: Option<(i32, i64)>,
}

/// One topic's partitions in a Fetch response.
#[derive(Clone, Debug)]
pub struct FetchTopicData {
    /// The topic name (written in v4–v12).
    pub name: String,
    /// The topic id (written in v13+, where requests name topics by id).
    pub topic_id: uuid::Uuid,
    /// Its partitions.
    pub partitions: Vec<FetchPartitionData>,
}

/// A whole Fetch response before encoding.
#[derive(Clone, Debug, Default)]
pub struct FetchResponseData {
    /// Top-level error code (v7+).
    pub error_code: i16,
    /// The fetch session id (v7+); 0 means no session was created.
    pub session_id: i32,
    /// The topics.
    pub topics: Vec<FetchTopicData>,
}

impl FetchResponseData {
    /// Bytes of records the response carries.
    pub fn record_bytes(&self) -> u64 {
        let ranges = self
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .flat_map(|p| &p.records);
        ranges.map(|r| r.length).sum()
    }
}

struct Writer {
    version: i16,
    parts: Vec<Part>,
    current: BytesMut,
}

impl Writer {
    fn flexible(&self) -> bool {
        self.version >= 12
    }

    fn array_len(&mut self, len: usize) {
        if self.flexible() {
            put_unsigned_varint(&mut self.current, len as u32 + 1);
        } else {
            self.current.put_i32(len as i32);
        }
    }

    fn string(&mut self, value: &str) {
        if self.flexible() {
            put_unsigned_varint(&mut self.current, value.len() as u32 + 1);
        } else {
            self.current.put_i16(value.len() as i16);
        }
        self.current.put_slice(value.as_bytes());
    }

    fn tags(&mut self) {
        if self.flexible() {
            self.current.put_u8(0);
        }
    }

    fn records(&mut self, ranges: &[FileRange]) {
        let length: u64 = ranges.iter().map(|r| r.length).sum();
        if self.flexible() {
            put_unsigned_varint(&mut self.current, length as u32 + 1);
        } else {
            self.current.put_i32(length as i32);
        }
        if length > 0 {
            let framing = std::mem::take(&mut self.current).freeze();
            self.parts.push(Part::Bytes(framing));
            self.parts.extend(
                ranges
                    .iter()
                    .filter(|r| r.length > 0)
                    .cloned()
                    .map(Part::File),
            );
        }
    }

    fn partition(&mut self, partition: &FetchPartitionData) {
        let version = self.version;
        self.current.put_i32(partition.partition_index);
        self.current.put_i16(partition.error_code);
        self.current.put_i64(partition.high_watermark);
        self.current.put_i64(partition.last_stable_offset);
        if version >= 5 {
            self.current.put_i64(partition.log_start_offset);
        }
        self.array_len(partition.aborted_transactions.len());
        for &(producer_id, first_offset) in &partition.aborted_transactions {
            self.current.put_i64(producer_id);
            self.current.put_i64(first_offset);
            self.tags();
        }
        if version >= 11 {
            self.current.put_i32(-1); // preferred read replica: none
        }
        self.records(&partition.records);
        match partition.diverging_epoch {
            Some((epoch, end_offset)) if self.flexible() => {
                // One tagged field: DivergingEpoch (tag 0), a struct of epoch, end offset and
                // its own (empty) tagged fields.
                self.current.put_u8(1);
                self.current.put_u8(0);
                self.current.put_u8(4 + 8 + 1);
                self.current.put_i32(epoch);
                self.current.put_i64(end_offset);
                self.current.put_u8(0);
            }
            _ => self.tags(),
        }
    }
}

/// The Fetch versions [`encode_fetch_response`] writes.
pub const FETCH_VERSIONS: std::ops::RangeInclusive<i16> = 4..=17;

/// Encodes a Fetch response (versions 4–17) with its size prefix and response header.
pub fn encode_fetch_response(
    version: i16,
    correlation_id: i32,
    data: &FetchResponseData,
) -> Vec<Part> {
    assert!(
        FETCH_VERSIONS.contains(&version),
        "Fetch v{version} is not encoded here"
    );
    let mut writer = Writer {
        version,
        parts: Vec::new(),
        current: BytesMut::with_capacity(512),
    };
    writer.current.put_i32(0); // size, patched below
    writer.current.put_i32(correlation_id);
    writer.tags(); // response header v1 for flexible versions
    writer.current.put_i32(0); // throttle time
    if version >= 7 {
        writer.current.put_i16(data.error_code);
        writer.current.put_i32(data.session_id);
    }
    writer.array_len(data.topics.len());
    for topic in &data.topics {
        if version >= 13 {
            writer.current.put_slice(topic.topic_id.as_bytes());
        } else {
            writer.string(&topic.name);
        }
        writer.array_len(topic.partitions.len());
        for partition in &topic.partitions {
            writer.partition(partition);
        }
        writer.tags();
    }
    writer.tags();
    let last = std::mem::take(&mut writer.current).freeze();
    writer.parts.push(Part::Bytes(last));
    let total: u64 = writer.parts.iter().map(Part::len).sum();
    let size = (total - SIZE_PREFIX_LEN as u64) as i32;
    match writer.parts.first_mut() {
        Some(Part::Bytes(first)) => {
            let mut patched = BytesMut::from(&first[..]);
            patched[..4].copy_from_slice(&size.to_be_bytes());
            *first = patched.freeze();
        }
        _ => unreachable!("the first part is the header"),
    }
    writer.parts
}
