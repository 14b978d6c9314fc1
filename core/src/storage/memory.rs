//! An in-memory [`Storage`] that models what a crash does to unsynced writes.

use std::collections::BTreeMap;

use super::{Storage, StorageError};

/// The granularity of a torn write: garbage never spans more than one sector.
const SECTOR_BYTES: u64 = 512;

/// What a simulated crash keeps of the bytes written since a file's last sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Only synced bytes survive.
    LoseUnsynced,
    /// Synced bytes survive plus a seed-chosen prefix (possibly all) of the unsynced appends
    /// (a torn write), whose last sector may hold garbage.
    Tear {
        /// Seed for the choice of prefix and corruption.
        seed: u64,
    },
}

#[derive(Clone, Debug, Default)]
struct MemoryFile {
    /// What a crash keeps for sure.
    durable: Vec<u8>,
    /// What reads see now.
    current: Vec<u8>,
}

/// A simulated directory held in memory. Cloning it snapshots the whole directory.
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage {
    files: BTreeMap<String, MemoryFile>,
    syncs: u64,
}

impl MemoryStorage {
    /// An empty directory.
    pub fn new() -> MemoryStorage {
        MemoryStorage::default()
    }

    /// Simulates a power loss: every file falls back to its durable content, plus whatever
    /// `mode` lets survive of unsynced appends.
    pub fn crash(&mut self, mode: CrashMode) {
        let mut rng = match mode {
            CrashMode::LoseUnsynced => None,
            CrashMode::Tear { seed } => Some(SplitMix64(seed)),
        };
        for file in self.files.values_mut() {
            let appended_only = file.current.starts_with(&file.durable);
            let mut survived = file.durable.clone();
            if let (Some(rng), true) = (rng.as_mut(), appended_only) {
                let extra = &file.current[file.durable.len()..];
                if !extra.is_empty() {
                    // Half the time the page cache reached the disk whole, otherwise a torn
                    // prefix; a third of the time the last sector written holds garbage.
                    let keep = match rng.next() % 2 {
                        0 => extra.len(),
                        _ => (rng.next() % (extra.len() as u64 + 1)) as usize,
                    };
                    survived.extend_from_slice(&extra[..keep]);
                    if keep > 0 && rng.next() % 3 == 0 {
                        let garbage = 1 + (rng.next() % SECTOR_BYTES.min(keep as u64)) as usize;
                        let start = survived.len() - garbage;
                        for byte in &mut survived[start..] {
                            *byte = rng.next() as u8;
                        }
                    }
                }
            }
            file.current = survived.clone();
            file.durable = survived;
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
        self.file_mut(name)?.current.extend_from_slice(data);
        Ok(())
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
        let file = self.file_mut(name)?;
        file.durable = file.current.clone();
        self.syncs += 1;
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
        self.files.remove(name);
        Ok(())
    }

    fn write_atomic(&mut self, name: &str, data: &[u8]) -> Result<(), StorageError> {
        let file = self.files.entry(name.to_string()).or_default();
        file.current = data.to_vec();
        file.durable = data.to_vec();
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
}
