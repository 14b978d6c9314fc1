//! The records the group coordinator keeps in `__consumer_offsets`, in Kafka's own formats so
//! that a compacted topic keeps exactly the latest record per key:
//!
//! - offset commit: key version 1 (group, topic, partition), value version 3 (offset, leader
//!   epoch, metadata, commit timestamp);
//! - group metadata: key version 2 (group), value version 3 (protocol type, generation,
//!   protocol, leader, state timestamp, members).
//!
//! A record with a null value is a tombstone: the key's offset or group is gone.

use bytes::{Buf, BufMut, Bytes};

/// The key version Kafka writes for offset commits.
pub const OFFSET_COMMIT_KEY_VERSION: i16 = 1;
/// The value version Brook writes for offset commits.
pub const OFFSET_COMMIT_VALUE_VERSION: i16 = 3;
/// The key version of group metadata records.
pub const GROUP_METADATA_KEY_VERSION: i16 = 2;
/// The value version Brook writes for group metadata.
pub const GROUP_METADATA_VALUE_VERSION: i16 = 3;

/// A committed offset as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetValue {
    /// The next offset the group will read.
    pub offset: i64,
    /// The leader epoch of the last record read, -1 when unknown.
    pub leader_epoch: i32,
    /// The client's free-form metadata.
    pub metadata: String,
    /// When the commit was made (broker time).
    pub commit_timestamp_ms: i64,
}

/// One member in a stored group metadata record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMember {
    /// The member id.
    pub member_id: String,
    /// The static instance id (KIP-345), if any.
    pub group_instance_id: Option<String>,
    /// The client id the member connected with.
    pub client_id: String,
    /// The host the member connected from.
    pub client_host: String,
    /// The member's rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// The member's session timeout.
    pub session_timeout_ms: i32,
    /// The member's metadata for the chosen protocol.
    pub subscription: Bytes,
    /// The member's assignment.
    pub assignment: Bytes,
}

/// A group's metadata as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupValue {
    /// The protocol type (`consumer`, `connect`, ...), empty for an offsets-only group.
    pub protocol_type: String,
    /// The generation.
    pub generation: i32,
    /// The chosen protocol, if any.
    pub protocol: Option<String>,
    /// The leader's member id, if any.
    pub leader: Option<String>,
    /// When the group last changed state.
    pub state_timestamp_ms: i64,
    /// The members of the generation.
    pub members: Vec<StoredMember>,
}

/// One record of `__consumer_offsets`, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupRecord {
    /// A committed offset, or its deletion (`None`).
    Offset {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The offset, or `None` for a tombstone.
        value: Option<OffsetValue>,
    },
    /// A group's metadata, or its deletion (`None`).
    Group {
        /// The group.
        group: String,
        /// The metadata, or `None` for a tombstone.
        value: Option<GroupValue>,
    },
}

/// Why a stored record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordFormatError {
    /// The record has no key.
    #[error("record without a key")]
    MissingKey,
    /// The bytes end before the schema does.
    #[error("record is truncated")]
    Truncated,
    /// A string is not UTF-8.
    #[error("string is not UTF-8")]
    NotUtf8,
    /// A key or value version Brook does not know.
    #[error("unknown {what} version {version}")]
    UnknownVersion {
        /// Which part of the record.
        what: &'static str,
        /// The version found.
        version: i16,
    },
}

impl GroupRecord {
    /// The group the record belongs to (it decides the `__consumer_offsets` partition).
    pub fn group(&self) -> &str {
        match self {
            GroupRecord::Offset { group, .. } | GroupRecord::Group { group, .. } => group,
        }
    }

    /// The record's key bytes.
    pub fn encode_key(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        match self {
            GroupRecord::Offset {
                group,
                topic,
                partition,
                ..
            } => {
                out.put_i16(OFFSET_COMMIT_KEY_VERSION);
                put_string(&mut out, group);
                put_string(&mut out, topic);
                out.put_i32(*partition);
            }
            GroupRecord::Group { group, .. } => {
                out.put_i16(GROUP_METADATA_KEY_VERSION);
                put_string(&mut out, group);
            }
        }
        out
    }

    /// The record's value bytes, `None` for a tombstone.
    pub fn encode_value(&self) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(64);
        match self {
            GroupRecord::Offset { value, .. } => {
                let value = value.as_ref()?;
                out.put_i16(OFFSET_COMMIT_VALUE_VERSION);
                out.put_i64(value.offset);
                out.put_i32(value.leader_epoch);
                put_string(&mut out, &value.metadata);
                out.put_i64(value.commit_timestamp_ms);
            }
            GroupRecord::Group { value, .. } => {
                let value = value.as_ref()?;
                out.put_i16(GROUP_METADATA_VALUE_VERSION);
                put_string(&mut out, &value.protocol_type);
                out.put_i32(value.generation);
                put_nullable_string(&mut out, value.protocol.as_deref());
                put_nullable_string(&mut out, value.leader.as_deref());
                out.put_i64(value.state_timestamp_ms);
                out.put_i32(value.members.len() as i32);
                for member in &value.members {
                    put_string(&mut out, &member.member_id);
                    put_nullable_string(&mut out, member.group_instance_id.as_deref());
                    put_string(&mut out, &member.client_id);
                    put_string(&mut out, &member.client_host);
                    out.put_i32(member.rebalance_timeout_ms);
                    out.put_i32(member.session_timeout_ms);
                    put_bytes(&mut out, &member.subscription);
                    put_bytes(&mut out, &member.assignment);
                }
            }
        }
        Some(out)
    }

    /// Decodes a stored record. Offset values v0–v3 and group values v0–v3 are read (the
    /// versions Kafka wrote before flexible versions), so a topic copied from Kafka loads.
    pub fn decode(
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<GroupRecord, RecordFormatError> {
        let mut key = key.ok_or(RecordFormatError::MissingKey)?;
        let version = get_i16(&mut key)?;
        match version {
            0 | 1 => {
                let group = get_string(&mut key)?;
                let topic = get_string(&mut key)?;
                let partition = get_i32(&mut key)?;
                let value = value.map(decode_offset_value).transpose()?;
                Ok(GroupRecord::Offset {
                    group,
                    topic,
                    partition,
                    value,
                })
            }
            2 => {
                let group = get_string(&mut key)?;
                let value = value.map(decode_group_value).transpose()?;
                Ok(GroupRecord::Group { group, value })
            }
            version => Err(RecordFormatError::UnknownVersion {
                what: "key",
                version,
            }),
        }
    }
}

fn decode_offset_value(mut buf: &[u8]) -> Result<OffsetValue, RecordFormatError> {
    let version = get_i16(&mut buf)?;
    if !(0..=3).contains(&version) {
        return Err(RecordFormatError::UnknownVersion {
            what: "offset value",
            version,
        });
    }
    let offset = get_i64(&mut buf)?;
    let leader_epoch = if version >= 3 { get_i32(&mut buf)? } else { -1 };
    let metadata = get_string(&mut buf)?;
    let commit_timestamp_ms = get_i64(&mut buf)?;
    Ok(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
    })
}

fn decode_group_value(mut buf: &[u8]) -> Result<GroupValue, RecordFormatError> {
    let version = get_i16(&mut buf)?;
    if !(0..=3).contains(&version) {
        return Err(RecordFormatError::UnknownVersion {
            what: "group value",
            version,
        });
    }
    let protocol_type = get_string(&mut buf)?;
    let generation = get_i32(&mut buf)?;
    let protocol = get_nullable_string(&mut buf)?;
    let leader = get_nullable_string(&mut buf)?;
    let state_timestamp_ms = if version >= 2 { get_i64(&mut buf)? } else { -1 };
    let count = get_i32(&mut buf)?;
    let mut members = Vec::new();
    for _ in 0..count.max(0) {
        let member_id = get_string(&mut buf)?;
        let group_instance_id = if version >= 3 {
            get_nullable_string(&mut buf)?
        } else {
            None
        };
        let client_id = get_string(&mut buf)?;
        let client_host = get_string(&mut buf)?;
        let rebalance_timeout_ms = if version >= 1 { get_i32(&mut buf)? } else { -1 };
        let session_timeout_ms = get_i32(&mut buf)?;
        let subscription = get_bytes(&mut buf)?;
        let assignment = get_bytes(&mut buf)?;
        members.push(StoredMember {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Ok(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        state_timestamp_ms,
        members,
    })
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    debug_assert!(
        s.len() <= i16::MAX as usize,
        "strings are bounded by the request limits"
    );
    out.put_i16(s.len() as i16);
    out.put_slice(s.as_bytes());
}

fn put_nullable_string(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => put_string(out, s),
        None => out.put_i16(-1),
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.put_i32(b.len() as i32);
    out.put_slice(b);
}

fn get_i16(buf: &mut &[u8]) -> Result<i16, RecordFormatError> {
    if buf.remaining() < 2 {
        return Err(RecordFormatError::Truncated);
    }
    Ok(buf.get_i16())
}

fn get_i32(buf: &mut &[u8]) -> Result<i32, RecordFormatError> {
    if buf.remaining() < 4 {
        return Err(RecordFormatError::Truncated);
    }
    Ok(buf.get_i32())
}

fn get_i64(buf: &mut &[u8]) -> Result<i64, RecordFormatError> {
    if buf.remaining() < 8 {
        return Err(RecordFormatError::Truncated);
    }
    Ok(buf.get_i64())
}

fn get_nullable_string(buf: &mut &[u8]) -> Result<Option<String>, RecordFormatError> {
    let len = get_i16(buf)?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    if buf.remaining() < len {
        return Err(RecordFormatError::Truncated);
    }
    let s = std::str::from_utf8(&buf[..len]).map_err(|_| RecordFormatError::NotUtf8)?;
    let s = s.to_string();
    buf.advance(len);
    Ok(Some(s))
}

fn get_string(buf: &mut &[u8]) -> Result<String, RecordFormatError> {
    Ok(get_nullable_string(buf)?.unwrap_or_default())
}

fn get_bytes(buf: &mut &[u8]) -> Result<Bytes, RecordFormatError> {
    let len = get_i32(buf)?;
    if len < 0 {
        return Ok(Bytes::new());
    }
    let len = len as usize;
    if buf.remaining() < len {
        return Err(RecordFormatError::Truncated);
    }
    let out = Bytes::copy_from_slice(&buf[..len]);
    buf.advance(len);
    Ok(out)
}

/// Java's `String.hashCode` over the UTF-16 code units of `s`.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The `__consumer_offsets` partition of a group: `abs(hashCode(group)) % partitions`, as
/// Kafka computes it (`Utils.abs` maps `i32::MIN` to 0).
pub fn partition_for_group(group: &str, partitions: i32) -> i32 {
    assert!(partitions > 0, "the offsets topic has partitions");
    let hash = java_string_hash(group);
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    positive % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_records_round_trip_offsets_groups_and_tombstones() {
        let offset = GroupRecord::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
            value: Some(OffsetValue {
                offset: 42,
                leader_epoch: 7,
                metadata: "meta".into(),
                commit_timestamp_ms: 1000,
            }),
        };
        let group = GroupRecord::Group {
            group: "g".into(),
            value: Some(GroupValue {
                protocol_type: "consumer".into(),
                generation: 4,
                protocol: Some("range".into()),
                leader: Some("m1".into()),
                state_timestamp_ms: 5,
                members: vec![StoredMember {
                    member_id: "m1".into(),
                    group_instance_id: Some("i1".into()),
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout_ms: 300,
                    session_timeout_ms: 100,
                    subscription: Bytes::from_static(b"sub"),
                    assignment: Bytes::from_static(b"asg"),
                }],
            }),
        };
        let tombstone = GroupRecord::Group {
            group: "g".into(),
            value: None,
        };
        for record in [offset, group, tombstone] {
            let key = record.encode_key();
            let value = record.encode_value();
            assert_eq!(
                GroupRecord::decode(Some(&key), value.as_deref()).unwrap(),
                record
            );
        }
        assert_eq!(
            GroupRecord::decode(Some(&[0, 1, 0]), None),
            Err(RecordFormatError::Truncated)
        );
    }

    /// The exact bytes of Kafka's OffsetCommitKey v1 / OffsetCommitValue v3 and of a v1 value
    /// (with its trailing expire timestamp), as Kafka's message schemas lay them out.
    #[test]
    fn group_records_use_kafkas_offset_commit_layout() {
        let record = GroupRecord::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
            value: Some(OffsetValue {
                offset: 0x0102,
                leader_epoch: 5,
                metadata: "m".into(),
                commit_timestamp_ms: 7,
            }),
        };
        assert_eq!(
            record.encode_key(),
            [0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 3]
        );
        let value = record.encode_value().unwrap();
        let expected: Vec<u8> = [
            &[0u8, 3][..],
            &0x0102i64.to_be_bytes(),
            &5i32.to_be_bytes(),
            &[0, 1, b'm'],
            &7i64.to_be_bytes(),
        ]
        .concat();
        assert_eq!(value, expected);
        let v1: Vec<u8> = [
            &[0u8, 1][..],
            &9i64.to_be_bytes(),
            &[0, 0],
            &7i64.to_be_bytes(),
            &(-1i64).to_be_bytes(),
        ]
        .concat();
        let decoded = GroupRecord::decode(Some(&record.encode_key()), Some(&v1)).unwrap();
        let GroupRecord::Offset { value: Some(v), .. } = decoded else {
            panic!("offset record")
        };
        assert_eq!(
            (v.offset, v.leader_epoch, v.commit_timestamp_ms),
            (9, -1, 7)
        );
    }

    #[test]
    fn group_partition_matches_kafkas_hash() {
        // "hello".hashCode() == 99162322 in Java.
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(partition_for_group("hello", 50), 99_162_322 % 50);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE; Kafka's abs maps it to 0.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for_group("polygenelubricants", 50), 0);
    }
}
