//! Messages between voters: raft-rs's `eraftpb::Message` in its protobuf encoding, and the
//! filter every received message passes before raft-rs sees it.
//!
//! raft-rs trusts its peers: a message that claims a commit index past the receiver's log,
//! entries that do not follow one another, or a snapshot with other voters make it panic.
//! The bytes come from the network, so [`decode`] refuses all of that first, naming why.

use protobuf::Message as _;
use raft::eraftpb::{EntryType, Message, MessageType};

use super::{ENTRY_BYTES_MAX, INDEX_LIMIT};

/// What the receiving voter knows that a message is checked against.
pub(super) struct Receiver<'a> {
    /// The receiver's raft id.
    pub(super) id: u64,
    /// The voters' raft ids, sorted.
    pub(super) voters: &'a [u64],
    /// The receiver's last log index (raft's view, unstable entries included).
    pub(super) last_index: u64,
}

/// Decodes a message that `from` sent to `receiver`, refusing what raft-rs must not see.
pub(super) fn decode(receiver: &Receiver<'_>, from: u64, bytes: &[u8]) -> Result<Message, String> {
    let message = Message::parse_from_bytes(bytes).map_err(|err| format!("undecodable: {err}"))?;
    if message.to != receiver.id {
        return Err(format!("addressed to raft id {}", message.to));
    }
    if message.from != from {
        return Err(format!("claims to be from raft id {}", message.from));
    }
    if from == receiver.id || receiver.voters.binary_search(&from).is_err() {
        return Err(format!("from raft id {from}, not a peer voter"));
    }
    let snapshot = message.get_snapshot().get_metadata();
    let numbers = [
        message.term,
        message.log_term,
        message.index,
        message.commit,
        message.reject_hint,
        message.commit_term,
        snapshot.index,
        snapshot.term,
    ];
    if numbers.iter().any(|&n| n >= INDEX_LIMIT) {
        return Err(format!("an index or term out of range: {numbers:?}"));
    }
    match message.get_msg_type() {
        MessageType::MsgAppend => check_append(&message)?,
        MessageType::MsgHeartbeat if message.commit > receiver.last_index => {
            return Err(format!(
                "heartbeat commits {} past the log end {}",
                message.commit, receiver.last_index
            ));
        }
        MessageType::MsgSnapshot => check_snapshot(receiver, &message)?,
        MessageType::MsgAppendResponse
            if !message.reject && message.index > receiver.last_index =>
        {
            return Err(format!(
                "acknowledges {} past the log end {}",
                message.index, receiver.last_index
            ));
        }
        MessageType::MsgHeartbeat
        | MessageType::MsgAppendResponse
        | MessageType::MsgRequestVote
        | MessageType::MsgRequestVoteResponse
        | MessageType::MsgHeartbeatResponse
        | MessageType::MsgRequestPreVote
        | MessageType::MsgRequestPreVoteResponse
        // A leader handing its leadership over (a controlled shutdown).
        | MessageType::MsgTimeoutNow => {}
        // Local messages, read index and proposal forwarding are never sent between Brook
        // voters.
        other => return Err(format!("{other:?} is not exchanged between voters")),
    }
    Ok(message)
}

/// Entries must follow the message's position one by one, in order of term, within the
/// message's term, normal (the voters never change) and bounded.
fn check_append(message: &Message) -> Result<(), String> {
    let mut previous_term = message.log_term;
    for (offset, entry) in message.entries.iter().enumerate() {
        if Some(entry.index) != message.index.checked_add(1 + offset as u64) {
            return Err(format!(
                "entry {} does not follow {}",
                entry.index, message.index
            ));
        }
        if entry.term < previous_term || entry.term > message.term {
            return Err(format!(
                "entry {} has term {} out of order",
                entry.index, entry.term
            ));
        }
        if entry.get_entry_type() != EntryType::EntryNormal {
            return Err(format!("entry {} changes the configuration", entry.index));
        }
        if entry.compute_size() as usize > ENTRY_BYTES_MAX {
            return Err(format!(
                "entry {} is larger than {ENTRY_BYTES_MAX} bytes",
                entry.index
            ));
        }
        previous_term = entry.term;
    }
    Ok(())
}

/// A snapshot must describe a position in the log of this very set of voters.
fn check_snapshot(receiver: &Receiver<'_>, message: &Message) -> Result<(), String> {
    let metadata = message.get_snapshot().get_metadata();
    if metadata.index == 0 || metadata.term == 0 || metadata.term > message.term {
        return Err(format!(
            "snapshot at index {} term {} in term {}",
            metadata.index, metadata.term, message.term
        ));
    }
    let conf_state = metadata.get_conf_state();
    let mut voters = conf_state.voters.clone();
    voters.sort_unstable();
    let others = !conf_state.learners.is_empty()
        || !conf_state.voters_outgoing.is_empty()
        || !conf_state.learners_next.is_empty()
        || conf_state.auto_leave;
    if voters != receiver.voters || others {
        return Err(format!("snapshot for other voters: {conf_state:?}"));
    }
    Ok(())
}

/// A message's protobuf encoding.
pub(super) fn encode(message: &Message) -> Vec<u8> {
    message
        .write_to_bytes()
        .expect("a proto3 message always encodes")
}
