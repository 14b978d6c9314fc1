//! The quorum's files in its one storage directory, and recovery from them.
//!
//! - `quorum-state`: term, vote, commit index and the voters, behind a CRC-32C; replaced
//!   with `write_atomic`.
//! - `quorum-snapshot`: the latest snapshot — its last index and term and the caller's
//!   state-machine image — behind a CRC-32C; replaced with `write_atomic`.
//! - `quorum-log`: the entries after the snapshot, append-only, each framed as
//!   `length (u32) · CRC-32C (u32) · encoded raft Entry`, big-endian. A suffix raft
//!   overwrites is cut off with `truncate` at the entry's position (kept in memory); after a
//!   snapshot the file is rewritten without the entries it covers (`write_atomic`). The file
//!   is synced before anything that depends on it leaves the voter.
//!
//! **Write order** (what a crash between two steps leaves, and how `recover` repairs it):
//! snapshot, then log, then state — a new term or vote at once, before the messages that
//! need it; a commit index that alone moved at the end of the `poll`. The log is durable
//! before the state that mentions it, so a recovered commit index never points past the
//! recovered log, except right after a snapshot (raised to the snapshot's index on
//! recovery); a state file that lags the log may hold a term below the log's last term
//! (raised, with no vote, on recovery — the vote of that term was never sent, since votes
//! leave only after their state is written). A log file still holding entries a newer
//! snapshot replaced is cut back on recovery.

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Snapshot};

use super::store::RaftStore;
use super::{node_id, QuorumError, ENTRY_BYTES_MAX, INDEX_LIMIT, VOTERS_MAX};
use crate::storage::Storage;

/// The hard state and voters.
pub(super) const STATE_FILE: &str = "quorum-state";
/// The latest snapshot.
pub(super) const SNAPSHOT_FILE: &str = "quorum-snapshot";
/// The entries after the snapshot.
pub(super) const LOG_FILE: &str = "quorum-log";

/// Version byte of the state and snapshot formats.
const FORMAT_VERSION: u8 = 1;
/// Bytes before an entry's encoding in the log: length and CRC.
const FRAME_HEADER_BYTES: usize = 8;

/// The quorum's files and where each log entry starts in `quorum-log`.
pub(super) struct Disk<S: Storage> {
    /// The directory.
    pub(super) storage: S,
    /// The position in `quorum-log` of each entry the store holds, in order.
    positions: Vec<u64>,
    /// The length of `quorum-log`.
    log_bytes: u64,
    /// The hard state last written to `quorum-state`.
    stored_state: HardState,
    /// The voters (raft ids, sorted), written beside the hard state.
    voters: Vec<u64>,
}

impl<S: Storage> Disk<S> {
    /// The hard state as `quorum-state` holds it.
    pub(super) fn stored_state(&self) -> &HardState {
        &self.stored_state
    }

    /// Replaces `quorum-state` (durable on return).
    pub(super) fn write_state(&mut self, hard_state: &HardState) -> Result<(), QuorumError> {
        let bytes = encode_state(hard_state, &self.voters);
        self.storage.write_atomic(STATE_FILE, &bytes)?;
        self.stored_state = hard_state.clone();
        Ok(())
    }

    /// Replaces `quorum-snapshot` (durable on return).
    pub(super) fn write_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), QuorumError> {
        let bytes = encode_snapshot(snapshot);
        self.storage.write_atomic(SNAPSHOT_FILE, &bytes)?;
        Ok(())
    }

    /// Keeps the first `kept` entries of the log file, appends `entries` after them and syncs
    /// the file.
    pub(super) fn write_entries(
        &mut self,
        kept: usize,
        entries: &[Entry],
    ) -> Result<(), QuorumError> {
        assert!(
            kept <= self.positions.len(),
            "entries are kept from the log"
        );
        if let Some(&position) = self.positions.get(kept) {
            self.storage.truncate(LOG_FILE, position)?;
            self.positions.truncate(kept);
            self.log_bytes = position;
        }
        let mut bytes = Vec::new();
        for entry in entries {
            self.positions.push(self.log_bytes + bytes.len() as u64);
            encode_frame(entry, &mut bytes);
        }
        self.storage.append(LOG_FILE, &bytes)?;
        self.log_bytes += bytes.len() as u64;
        self.storage.sync(LOG_FILE)?;
        Ok(())
    }

    /// Replaces the log file with exactly `entries` (durable on return).
    pub(super) fn rewrite_log(&mut self, entries: &[Entry]) -> Result<(), QuorumError> {
        let mut bytes = Vec::new();
        let mut positions = Vec::with_capacity(entries.len());
        for entry in entries {
            positions.push(bytes.len() as u64);
            encode_frame(entry, &mut bytes);
        }
        self.storage.write_atomic(LOG_FILE, &bytes)?;
        self.positions = positions;
        self.log_bytes = bytes.len() as u64;
        Ok(())
    }

    /// Checks that the positions describe `entries` in a file of the recorded length.
    pub(super) fn check_invariants(&self, entries: &[Entry]) {
        assert_eq!(self.positions.len(), entries.len());
        for pair in self.positions.windows(2) {
            assert!(pair[0] < pair[1], "entries are in file order");
        }
        if let Some(&last) = self.positions.last() {
            assert!(last < self.log_bytes);
        }
        if let Ok(size) = self.storage.size(LOG_FILE) {
            assert_eq!(size, self.log_bytes, "the log file has the length written");
        }
    }
}

/// Opens the quorum's files in `storage`, bootstrapping them for `voters` when there are
/// none, and returns them with the store they hold. A torn or damaged log tail is cut off;
/// a damaged state or snapshot file, or a log that ends below the commit index, is an error.
pub(super) fn recover<S: Storage>(
    mut storage: S,
    voters: &[u64],
) -> Result<(Disk<S>, RaftStore), QuorumError> {
    let Some(state_bytes) = storage.read_all(STATE_FILE)? else {
        return bootstrap(storage, voters);
    };
    let (stored_state, stored_voters) =
        decode_state(&state_bytes).map_err(|reason| QuorumError::corrupt(STATE_FILE, reason))?;
    if stored_voters != voters {
        return Err(QuorumError::VotersChanged {
            stored: stored_voters.into_iter().map(node_id).collect(),
            configured: voters.iter().copied().map(node_id).collect(),
        });
    }
    let conf_state = ConfState::from((voters.to_vec(), vec![]));
    let mut snapshot = match storage.read_all(SNAPSHOT_FILE)? {
        None => Snapshot::default(),
        Some(bytes) => {
            decode_snapshot(&bytes).map_err(|reason| QuorumError::corrupt(SNAPSHOT_FILE, reason))?
        }
    };
    snapshot.mut_metadata().set_conf_state(conf_state.clone());
    let log_bytes = match storage.read_all(LOG_FILE)? {
        Some(bytes) => bytes,
        None => {
            storage.create(LOG_FILE)?;
            storage.sync_dir()?;
            Vec::new()
        }
    };
    let (frames, valid_bytes) = decode_log(&log_bytes);
    let decoded = frames.len();
    let frames = frames_after_snapshot(frames, &snapshot)?;
    let mut disk = Disk {
        storage,
        positions: frames.iter().map(|(position, _)| *position).collect(),
        log_bytes: log_bytes.len() as u64,
        stored_state: stored_state.clone(),
        voters: voters.to_vec(),
    };
    let mut store = RaftStore {
        hard_state: stored_state,
        conf_state,
        snapshot,
        entries: frames.into_iter().map(|(_, entry)| entry).collect(),
    };
    // Refuse before changing anything, so a damaged directory stays as it was found.
    repair_hard_state(&mut store)?;
    if valid_bytes != log_bytes.len() || store.entries.len() != decoded {
        // A torn or damaged tail, or entries the snapshot covers: keep exactly the rest.
        disk.rewrite_log(&store.entries)?;
    }
    if store.hard_state != disk.stored_state {
        disk.write_state(&store.hard_state)?;
    }
    Ok((disk, store))
}

/// A new voter: an empty log and state for `voters`.
fn bootstrap<S: Storage>(
    mut storage: S,
    voters: &[u64],
) -> Result<(Disk<S>, RaftStore), QuorumError> {
    for name in [SNAPSHOT_FILE, LOG_FILE] {
        if storage
            .read_all(name)?
            .is_some_and(|bytes| !bytes.is_empty())
        {
            let reason = format!("{STATE_FILE} is missing but {name} is not empty");
            return Err(QuorumError::corrupt(STATE_FILE, reason));
        }
    }
    // The log first: a state file always comes with a log file that survived a crash.
    storage.write_atomic(LOG_FILE, &[])?;
    let mut disk = Disk {
        storage,
        positions: Vec::new(),
        log_bytes: 0,
        stored_state: HardState::default(),
        voters: voters.to_vec(),
    };
    disk.write_state(&HardState::default())?;
    let store = RaftStore {
        conf_state: ConfState::from((voters.to_vec(), vec![])),
        ..RaftStore::default()
    };
    Ok((disk, store))
}

/// The log entries (with their positions) that follow the snapshot. Entries the snapshot
/// covers are dropped; if the log disagrees with the snapshot at its last index (a snapshot
/// from the leader replaced the log and a crash came before the log was rewritten), none
/// is kept.
fn frames_after_snapshot(
    frames: Vec<(u64, Entry)>,
    snapshot: &Snapshot,
) -> Result<Vec<(u64, Entry)>, QuorumError> {
    let (index, term) = (snapshot.get_metadata().index, snapshot.get_metadata().term);
    let Some((_, first)) = frames.first() else {
        return Ok(frames);
    };
    if first.index > index + 1 {
        let reason = format!(
            "the log starts at {}, after the snapshot at {index}",
            first.index
        );
        return Err(QuorumError::corrupt(LOG_FILE, reason));
    }
    if first.index == index + 1 {
        if first.term < term {
            let reason = format!("entry {} has a term below the snapshot's", first.index);
            return Err(QuorumError::corrupt(LOG_FILE, reason));
        }
        return Ok(frames);
    }
    let at_snapshot = (index - first.index) as usize;
    match frames.get(at_snapshot) {
        Some((_, entry)) if entry.term == term => Ok(frames[at_snapshot + 1..].to_vec()),
        _ => Ok(Vec::new()),
    }
}

/// Makes the recovered hard state agree with the recovered log (see the module doc).
fn repair_hard_state(store: &mut RaftStore) -> Result<(), QuorumError> {
    let snapshot_index = store.snapshot_index();
    let last_index = store.last_index();
    let last_term = store.term_of(last_index).unwrap_or(0);
    let hard_state = &mut store.hard_state;
    if hard_state.commit < snapshot_index {
        hard_state.commit = snapshot_index;
    }
    if hard_state.commit > last_index {
        let reason = format!(
            "the log ends at {last_index} below the commit index {}: committed entries are lost",
            hard_state.commit
        );
        return Err(QuorumError::corrupt(LOG_FILE, reason));
    }
    if hard_state.term < last_term {
        hard_state.term = last_term;
        hard_state.vote = 0;
    }
    Ok(())
}

/// An entry's protobuf encoding.
fn encoded_entry(entry: &Entry) -> Vec<u8> {
    entry
        .write_to_bytes()
        .expect("a proto3 entry always encodes")
}

/// Appends one log frame for `entry` to `out`.
fn encode_frame(entry: &Entry, out: &mut Vec<u8>) {
    let payload = encoded_entry(entry);
    assert!(
        payload.len() <= ENTRY_BYTES_MAX,
        "entries are bounded before the log"
    );
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
}

/// The entries of a log file, each with its position, up to the first frame that is torn,
/// damaged or out of order, and how many bytes they span.
fn decode_log(bytes: &[u8]) -> (Vec<(u64, Entry)>, usize) {
    let mut entries: Vec<(u64, Entry)> = Vec::new();
    let mut position = 0;
    while let Some(header) = bytes.get(position..position + FRAME_HEADER_BYTES) {
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        if len > ENTRY_BYTES_MAX {
            break;
        }
        let start = position + FRAME_HEADER_BYTES;
        let Some(payload) = bytes.get(start..start + len) else {
            break;
        };
        if crc32c::crc32c(payload) != crc {
            break;
        }
        let Ok(entry) = Entry::parse_from_bytes(payload) else {
            break;
        };
        let follows = entries.last().is_none_or(|(_, previous)| {
            entry.index == previous.index + 1 && entry.term >= previous.term
        });
        let in_range = entry.index > 0 && entry.index < INDEX_LIMIT && entry.term < INDEX_LIMIT;
        if !follows || !in_range || entry.get_entry_type() != EntryType::EntryNormal {
            break;
        }
        entries.push((position as u64, entry));
        position = start + len;
    }
    (entries, position)
}

/// `quorum-state`'s content.
fn encode_state(hard_state: &HardState, voters: &[u64]) -> Vec<u8> {
    let mut payload = vec![FORMAT_VERSION];
    for value in [hard_state.term, hard_state.vote, hard_state.commit] {
        payload.extend_from_slice(&value.to_be_bytes());
    }
    payload.extend_from_slice(&(voters.len() as u32).to_be_bytes());
    for voter in voters {
        payload.extend_from_slice(&voter.to_be_bytes());
    }
    with_crc(payload)
}

/// The hard state and voters `quorum-state` holds.
fn decode_state(bytes: &[u8]) -> Result<(HardState, Vec<u64>), String> {
    let mut reader = Reader::new(checked_payload(bytes)?);
    let version = reader.u8()?;
    if version != FORMAT_VERSION {
        return Err(format!("unknown format version {version}"));
    }
    let hard_state = HardState {
        term: reader.u64()?,
        vote: reader.u64()?,
        commit: reader.u64()?,
        ..HardState::default()
    };
    let count = reader.u32()? as usize;
    if count == 0 || count > VOTERS_MAX {
        return Err(format!("{count} voters"));
    }
    let voters = (0..count)
        .map(|_| reader.u64())
        .collect::<Result<Vec<u64>, String>>()?;
    let raft_id_max = i32::MAX as u64 + 1;
    let in_range = voters
        .iter()
        .all(|&voter| (1..=raft_id_max).contains(&voter));
    if !in_range || !voters.windows(2).all(|pair| pair[0] < pair[1]) {
        return Err(format!("voters {voters:?}"));
    }
    if [hard_state.term, hard_state.commit]
        .iter()
        .any(|&n| n >= INDEX_LIMIT)
    {
        return Err(format!(
            "term {} or commit {} out of range",
            hard_state.term, hard_state.commit
        ));
    }
    if !reader.rest().is_empty() {
        return Err("trailing bytes".to_string());
    }
    Ok((hard_state, voters))
}

/// `quorum-snapshot`'s content (the voters are the state file's).
fn encode_snapshot(snapshot: &Snapshot) -> Vec<u8> {
    let metadata = snapshot.get_metadata();
    let mut payload = vec![FORMAT_VERSION];
    payload.extend_from_slice(&metadata.index.to_be_bytes());
    payload.extend_from_slice(&metadata.term.to_be_bytes());
    payload.extend_from_slice(&snapshot.data);
    with_crc(payload)
}

/// The snapshot `quorum-snapshot` holds, without its voters.
fn decode_snapshot(bytes: &[u8]) -> Result<Snapshot, String> {
    let mut reader = Reader::new(checked_payload(bytes)?);
    let version = reader.u8()?;
    if version != FORMAT_VERSION {
        return Err(format!("unknown format version {version}"));
    }
    let mut snapshot = Snapshot::default();
    snapshot.mut_metadata().index = reader.u64()?;
    snapshot.mut_metadata().term = reader.u64()?;
    let (index, term) = (snapshot.get_metadata().index, snapshot.get_metadata().term);
    if index == 0 || index >= INDEX_LIMIT || term >= INDEX_LIMIT {
        return Err(format!("a snapshot at index {index} term {term}"));
    }
    snapshot.data = reader.rest().to_vec().into();
    Ok(snapshot)
}

/// `payload` behind its CRC-32C.
fn with_crc(payload: Vec<u8>) -> Vec<u8> {
    let mut bytes = crc32c::crc32c(&payload).to_be_bytes().to_vec();
    bytes.extend_from_slice(&payload);
    bytes
}

/// The payload behind a CRC-32C, if the CRC matches.
fn checked_payload(bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.len() < 4 {
        return Err(format!("{} bytes, shorter than a CRC", bytes.len()));
    }
    let (crc, payload) = bytes.split_at(4);
    if crc32c::crc32c(payload).to_be_bytes() != crc {
        return Err("CRC mismatch".to_string());
    }
    Ok(payload)
}

/// Reads big-endian numbers off a byte slice; running short is an error.
struct Reader<'a> {
    /// What is left to read.
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let Some((head, rest)) = self.bytes.split_first_chunk::<N>() else {
            return Err(format!("ends inside a {N}-byte field"));
        };
        self.bytes = rest;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.take()?))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_be_bytes(self.take()?))
    }

    fn rest(&self) -> &'a [u8] {
        self.bytes
    }
}
