//! In-memory directories shared between a test (or the simulator) and the broker that has
//! them open, so they outlive one broker instance: restart a broker over the same
//! [`MemoryDirs`] and it recovers from whatever the last one (or a crash) left.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{CrashMode, DiskFaults, MemoryStorage, Storage, StorageError};

/// One shared in-memory directory.
#[derive(Clone, Debug, Default)]
pub struct SharedStorage(Arc<Mutex<MemoryStorage>>);

impl SharedStorage {
    /// The directory's storage, locked.
    pub fn lock(&self) -> MutexGuard<'_, MemoryStorage> {
        // A panic elsewhere while holding the lock leaves plain data behind; keep using it.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Storage for SharedStorage {
    fn list(&self) -> Result<Vec<String>, StorageError> {
        self.lock().list()
    }
    fn create(&mut self, name: &str) -> Result<(), StorageError> {
        self.lock().create(name)
    }
    fn size(&self, name: &str) -> Result<u64, StorageError> {
        self.lock().size(name)
    }
    fn append(&mut self, name: &str, data: &[u8]) -> Result<(), StorageError> {
        self.lock().append(name, data)
    }
    fn read_at(&self, name: &str, position: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        self.lock().read_at(name, position, buf)
    }
    fn sync(&mut self, name: &str) -> Result<(), StorageError> {
        self.lock().sync(name)
    }
    fn sync_dir(&mut self) -> Result<(), StorageError> {
        self.lock().sync_dir()
    }
    fn truncate(&mut self, name: &str, size: u64) -> Result<(), StorageError> {
        self.lock().truncate(name, size)
    }
    fn delete(&mut self, name: &str) -> Result<(), StorageError> {
        self.lock().delete(name)
    }
    fn write_atomic(&mut self, name: &str, data: &[u8]) -> Result<(), StorageError> {
        self.lock().write_atomic(name, data)
    }
    fn close(&mut self, name: &str) -> Result<(), StorageError> {
        self.lock().close(name)
    }
}

/// A whole simulated disk: shared directories by name (a broker's `StorageProvider`), with
/// one set of fault switches for all of them.
#[derive(Clone, Debug, Default)]
pub struct MemoryDirs {
    dirs: Arc<Mutex<BTreeMap<String, SharedStorage>>>,
    faults: DiskFaults,
}

impl MemoryDirs {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, SharedStorage>> {
        self.dirs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The named directory, created empty if it does not exist.
    pub fn dir(&self, name: &str) -> SharedStorage {
        let faults = &self.faults;
        self.lock()
            .entry(name.to_string())
            .or_insert_with(|| {
                let storage = MemoryStorage::with_faults(faults.clone());
                SharedStorage(Arc::new(Mutex::new(storage)))
            })
            .clone()
    }

    /// The disk's fault switches (sync errors, a full disk), shared by every directory.
    pub fn faults(&self) -> &DiskFaults {
        &self.faults
    }

    /// The names of the directories, sorted.
    pub fn dir_names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Removes a directory and everything in it.
    pub fn remove(&self, name: &str) {
        self.lock().remove(name);
    }

    /// Whether a directory exists.
    pub fn contains(&self, name: &str) -> bool {
        self.lock().contains_key(name)
    }

    /// A power loss over every directory; `seed` decides what each file keeps.
    pub fn power_loss(&self, seed: u64) {
        for (i, dir) in self.lock().values().enumerate() {
            let seed = seed.wrapping_add((i as u64).wrapping_mul(0x9e37_79b9));
            dir.lock().crash(CrashMode::Tear { seed });
        }
    }
}
