//! An in-memory [`Storage`] that models what a crash does to unsynced writes, after
//! FoundationDB's non-durable file: a page cache (`current`) separate from the durable image,
//! and directory entries that are durable only once the directory is synced.

use std::collections::BTreeMap;

use super::faults::{eio, enospc, DiskFaults};
use super::{Storage, StorageError};

/// The granularity of a torn write: garbage never spans more than one sector.
const SECTOR_BYTES: u64 = 512;

/// What a simulated crash keeps of what was written since the last syncs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Only synced state survives: unsynced appends and truncates of a file are lost, files
    /// created since the last directory sync vanish, files deleted since then come back.
    LoseUnsynced,
    /// Synced state survives; of the unsynced rest, each file keeps a seed-chosen prefix
    /// (possibly all) of its unsynced appends (a torn write, whose last sector may hold
    /// garbage), an unsynced truncate may or may not have reached the disk, and each create
    /// or delete since the last directory sync may or may not have.
    Tear {
        /// Seed for every choice above.
        seed: u64,
    },
}

#[derive(Clone, Debug, Default)]
struct MemoryFile {
    /// What a crash keeps for sure.
    durable: Vec<u8>,
    /// What reads see now.
    current: Vec<u8>,
    /// Whether the file's name survives a crash: created (or replaced atomically) before the
    /// last directory sync.
    named_durably: bool,
}

impl MemoryFile {
    fn is_dirty(&self) -> bool {
        self.current.len() != self.durable.len() || self.current != self.durable
    }
}

/// A simulated directory held in memory. Cloning it snapshots the whole directory (the fault
/// switches stay shared).
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage {
    files: BTreeMap<String, MemoryFile>,
    /// Files deleted since the last directory sync, with their durable content: a crash may
    /// bring them back.
    unsynced_deletes: BTreeMap<String, Vec<u8>>,
    syncs: u64,
    faults: DiskFaults,
}

impl MemoryStorage {
    /// An empty directory.
    pub fn new() -> MemoryStorage {
        MemoryStorage::default()
    }

    /// An empty directory on a disk whose faults are switched through `faults`.
    pub fn with_faults(faults: DiskFaults) -> MemoryStorage {
        MemoryStorage {
            faults,
            ..MemoryStorage::default()
        }
    }

    /// The disk's fault switches.
    pub fn faults(&self) -> &DiskFaults {
        &self.faults
    }

    /// Simulates a power loss: every file and directory entry falls back to its durable
    /// state, plus whatever `mode` lets survive of the unsynced rest.
    pub fn crash(&mut self, mode: CrashMode) {
        let mut rng = match mode {
            CrashMode::LoseUnsynced => None,
            CrashMode::Tear { seed } => Some(SplitMix64(seed)),
        };
        // An unsynced directory change reached the disk: never without tearing, else a coin.
        let reached =
            |rng: &mut Option<SplitMix64>| rng.as_mut().is_some_and(|r| r.next().is_multiple_of(2));
        let created: Vec<String> = self
            .files
            .iter()
            .filter(|(_, file)| !file.named_durably)
            .map(|(name, _)| name.clone())
            .collect();
        for name in created {
            if !reached(&mut rng) {
                self.files.remove(&name);
            }
        }
        for (name, content) in std::mem::take(&mut self.unsynced_deletes) {
            if !self.files.contains_key(&name) && !reached(&mut rng) {
                let file = MemoryFile {
                    durable: content.clone(),
                    current: content,
                    named_durably: true,
                };
                self.files.insert(name, file);
            }
        }
        for file in self.files.values_mut() {
            let survived = match rng.as_mut() {
                None => file.durable.clone(),
                Some(rng) => torn(file, rng),
            };
            file.current = survived.clone();
            file.durable = survived;
            file.named_durably = true;
        }
    }

    /// Flips one bit of a file's current (and durable) content: bit rot on the platter.
    pub fn flip_bit(&mut self, name: &str, position: usize, bit: u8) {
        if let Some(file) = self.files.get_mut(name) {
            for bytes in [&mut file.current, &mut file.durable] {
                if let Some(byte) = bytes.get_mut(position) {
                    *byte ^= 1 << (bit % 8);
                }
            }
        }
    }

    /// How many bytes of a file are durable (synced), for faults aimed at synced data.
    pub fn durable_len(&self, name: &str) -> Option<usize> {
        self.files.get(name).map(|file| file.durable.len())
    }

    /// Direct access to a file's current bytes, for tests that corrupt them.
    pub fn bytes_mut(&mut self, name: &str) -> Option<&mut Vec<u8>> {
        self.files.get_mut(name).map(|file| &mut file.current)
    }

    /// How many sync calls reached this storage (to check flush policies).
    pub fn sync_count(&self) -> u64 {
        self.syncs
    }

    fn file(&self, name: &str) -> Result<&MemoryFile, StorageError> {
        self.files
            .get(name)
            .ok_or_else(|| StorageError::NotFound(name.to_string()))
    }

    fn file_mut(&mut self, name: &str) -> Result<&mut MemoryFile, StorageError> {
        self.files
            .get_mut(name)
            .ok_or_else(|| StorageError::NotFound(name.to_string()))
    }
}

/// What a torn crash keeps of one file.
fn torn(file: &MemoryFile, rng: &mut SplitMix64) -> Vec<u8> {
    if !file.current.starts_with(&file.durable) {
        // Truncated since the last sync (and maybe appended to since): either the truncate
        // never reached the disk, or it did and nothing after it.
        if rng.next().is_multiple_of(2) {
            return file.durable.clone();
        }
        let common = file
            .current
            .iter()
            .zip(&file.durable)
            .take_while(|(a, b)| a == b)
            .count();
        return file.current[..common].to_vec();
    }
    let mut survived = file.durable.clone();
    let extra = &file.current[file.durable.len()..];
    if !extra.is_empty() {
        // Half the time the page cache reached the disk whole, otherwise a torn prefix; a
        // third of the time the last sector written holds garbage.
        let keep = match rng.next() % 2 {
            0 => extra.len(),
            _ => (rng.next() % (extra.len() as u64 + 1)) as usize,
        };
        survived.extend_from_slice(&extra[..keep]);
        if keep > 0 && rng.next().is_multiple_of(3) {
            let garbage = 1 + (rng.next() % SECTOR_BYTES.min(keep as u64)) as usize;
            let start = survived.len() - garbage;
            for byte in &mut survived[start..] {
                *byte = rng.next() as u8;
            }
        }
    }
    survived
}

impl Storage for MemoryStorage {
    fn list(&self) -> Result<Vec<String>, StorageError> {
        Ok(self.files.keys().cloned().collect())
    }

    fn create(&mut self, name: &str) -> Result<(), StorageError> {
        self.files.entry(name.to_string()).or_default();
        Ok(())
    }

    fn size(&self, name: &str) -> Result<u64, StorageError> {
        Ok(self.file(name)?.current.len() as u64)
    }

    fn append(&mut self, name: &str, data: &[u8]) -> Result<(), StorageError> {
        let prefix = self.faults.no_space_prefix(data.len());
        let file = self.file_mut(name)?;
        match prefix {
            None => {
                file.current.extend_from_slice(data);
                Ok(())
            }
            Some(written) => {
                file.current.extend_from_slice(&data[..written]);
                Err(StorageError::Io {
                    op: "append",
                    name: name.to_string(),
                    source: enospc(),
                })
            }
        }
    }

    fn read_at(&self, name: &str, position: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        let file = self.file(name)?;
        let end = position.checked_add(buf.len() as u64);
        match end {
            Some(end) if end <= file.current.len() as u64 => {
                buf.copy_from_slice(&file.current[position as usize..end as usize]);
                Ok(())
            }
            _ => Err(StorageError::ReadPastEnd {
                name: name.to_string(),
                position,
                len: buf.len(),
                size: file.current.len() as u64,
            }),
        }
    }

    fn sync(&mut self, name: &str) -> Result<(), StorageError> {
        let faults = self.faults.clone();
        let file = self.file_mut(name)?;
        if file.is_dirty() && faults.take_sync_error() {
            // The kernel gave up on the dirty pages and forgot them (fsyncgate).
            file.current = file.durable.clone();
            return Err(StorageError::Io {
                op: "sync",
                name: name.to_string(),
                source: eio(),
            });
        }
        file.durable.clone_from(&file.current);
        self.syncs += 1;
        Ok(())
    }

    fn sync_dir(&mut self) -> Result<(), StorageError> {
        for file in self.files.values_mut() {
            file.named_durably = true;
        }
        self.unsynced_deletes.clear();
        Ok(())
    }

    fn truncate(&mut self, name: &str, size: u64) -> Result<(), StorageError> {
        let file = self.file_mut(name)?;
        if (size as usize) < file.current.len() {
            file.current.truncate(size as usize);
        }
        Ok(())
    }

    fn delete(&mut self, name: &str) -> Result<(), StorageError> {
        if let Some(file) = self.files.remove(name) {
            if file.named_durably {
                self.unsynced_deletes
                    .entry(name.to_string())
                    .or_insert(file.durable);
            }
        }
        Ok(())
    }

    fn write_atomic(&mut self, name: &str, data: &[u8]) -> Result<(), StorageError> {
        let failure = if self.faults.take_sync_error() {
            Some(("write_atomic sync", eio()))
        } else if self.faults.no_space_prefix(data.len()).is_some() {
            Some(("write_atomic", enospc()))
        } else {
            None
        };
        if let Some((op, source)) = failure {
            // The temporary file never replaced the old one.
            return Err(StorageError::Io {
                op,
                name: name.to_string(),
                source,
            });
        }
        self.unsynced_deletes.remove(name);
        let file = self.files.entry(name.to_string()).or_default();
        file.current = data.to_vec();
        file.durable = data.to_vec();
        file.named_durably = true;
        Ok(())
    }

    fn close(&mut self, name: &str) -> Result<(), StorageError> {
        self.file(name).map(|_| ())
    }
}

/// A tiny deterministic generator (SplitMix64) so crashes replay from their seed.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_storage_crash_keeps_synced_bytes_only() {
        let mut disk = MemoryStorage::new();
        disk.create("a").unwrap();
        disk.append("a", b"synced").unwrap();
        disk.sync("a").unwrap();
        disk.sync_dir().unwrap();
        disk.append("a", b"-lost").unwrap();
        assert_eq!(disk.read_all("a").unwrap().unwrap(), b"synced-lost");
        disk.crash(CrashMode::LoseUnsynced);
        assert_eq!(disk.read_all("a").unwrap().unwrap(), b"synced");
    }

    #[test]
    fn memory_storage_torn_crash_keeps_a_prefix_of_unsynced_appends() {
        for seed in 0..64 {
            let mut disk = MemoryStorage::new();
            disk.create("a").unwrap();
            disk.append("a", b"durable").unwrap();
            disk.sync("a").unwrap();
            disk.sync_dir().unwrap();
            disk.append("a", b"0123456789").unwrap();
            disk.crash(CrashMode::Tear { seed });
            let after = disk.read_all("a").unwrap().unwrap();
            assert!(after.starts_with(b"durable"), "seed {seed}: {after:?}");
            assert!(after.len() <= b"durable0123456789".len());
            let kept = &after[7..];
            let original = &b"0123456789"[..kept.len()];
            let first_difference = kept.iter().zip(original).position(|(a, b)| a != b);
            let garbage = first_difference.map_or(0, |at| kept.len() - at);
            assert!(
                garbage <= 512,
                "seed {seed}: garbage only in the torn tail: {after:?}"
            );
        }
    }

    #[test]
    fn memory_storage_read_past_end_is_an_error() {
        let mut disk = MemoryStorage::new();
        disk.create("a").unwrap();
        disk.append("a", b"abc").unwrap();
        let mut buf = [0u8; 4];
        assert!(matches!(
            disk.read_at("a", 0, &mut buf),
            Err(StorageError::ReadPastEnd { .. })
        ));
        assert!(matches!(
            disk.size("missing"),
            Err(StorageError::NotFound(_))
        ));
    }

    #[test]
    fn memory_storage_directory_changes_need_a_directory_sync() {
        let mut disk = MemoryStorage::new();
        disk.create("kept").unwrap();
        disk.sync_dir().unwrap();
        disk.create("new").unwrap();
        disk.delete("kept").unwrap();
        disk.crash(CrashMode::LoseUnsynced);
        assert_eq!(disk.list().unwrap(), vec!["kept".to_string()]);
        disk.delete("kept").unwrap();
        disk.sync_dir().unwrap();
        disk.crash(CrashMode::LoseUnsynced);
        assert!(disk.list().unwrap().is_empty());
    }

    #[test]
    fn memory_storage_unsynced_truncate_is_lost() {
        let mut disk = MemoryStorage::new();
        disk.write_atomic("a", b"abcdef").unwrap();
        disk.truncate("a", 2).unwrap();
        disk.crash(CrashMode::LoseUnsynced);
        assert_eq!(disk.read_all("a").unwrap().unwrap(), b"abcdef");
        disk.truncate("a", 2).unwrap();
        disk.sync("a").unwrap();
        disk.crash(CrashMode::LoseUnsynced);
        assert_eq!(disk.read_all("a").unwrap().unwrap(), b"ab");
    }

    #[test]
    fn memory_storage_failed_sync_drops_the_unsynced_bytes_once() {
        let mut disk = MemoryStorage::new();
        disk.write_atomic("a", b"synced").unwrap();
        disk.append("a", b"-dropped").unwrap();
        disk.faults().arm_sync_error();
        assert!(disk.sync("a").is_err());
        assert_eq!(disk.read_all("a").unwrap().unwrap(), b"synced");
        disk.sync("a")
            .expect("a retried sync succeeds, without the data");
        assert_eq!(disk.faults().sync_errors(), 1);
    }

    #[test]
    fn memory_storage_full_disk_writes_a_prefix_and_refuses() {
        let mut disk = MemoryStorage::new();
        disk.write_atomic("a", b"x").unwrap();
        disk.faults().set_full(true, 3);
        let err = disk.append("a", b"0123456789").unwrap_err();
        assert!(matches!(err, StorageError::Io { ref source, .. }
            if source.kind() == std::io::ErrorKind::StorageFull));
        assert!(disk.write_atomic("a", b"y").is_err());
        let after = disk.read_all("a").unwrap().unwrap();
        assert!(b"x0123456789".starts_with(&after));
        disk.faults().heal();
        disk.append("a", b"!").unwrap();
    }
}
