//! The simulated disk of one broker: a [`MemoryStorage`] per directory that outlives the
//! broker process, so a restart recovers from whatever a crash left.
//!
//! A process kill keeps every byte (the operating system's page cache survives); a power
//! loss keeps synced bytes and, per file, all, none or a torn prefix of the unsynced ones,
//! with garbage in the last sector (`MemoryStorage::crash`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use brook_core::broker::StorageProvider;
use brook_core::storage::{CrashMode, MemoryStorage, Storage, StorageError};

/// One directory, shared between the disk and the broker that has it open.
#[derive(Clone, Default)]
pub struct SimDir(Arc<Mutex<MemoryStorage>>);

impl SimDir {
    fn lock(&self) -> MutexGuard<'_, MemoryStorage> {
        self.0.lock().expect("sim dir lock")
    }
}

impl Storage for SimDir {
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

/// A broker's whole disk: its directories by name.
#[derive(Clone, Default)]
pub struct SimDisk {
    dirs: Arc<Mutex<BTreeMap<String, SimDir>>>,
}

impl SimDisk {
    /// Applies a power loss to every directory; `seed` decides what each file keeps.
    pub fn power_loss(&self, seed: u64) {
        let dirs = self.dirs.lock().expect("sim disk lock");
        for (i, dir) in dirs.values().enumerate() {
            dir.lock().crash(CrashMode::Tear {
                seed: seed.wrapping_add(i as u64 * 7919),
            });
        }
    }
}

impl StorageProvider for SimDisk {
    type Storage = SimDir;

    fn open_dir(&mut self, name: &str) -> Result<SimDir, StorageError> {
        let mut dirs = self.dirs.lock().expect("sim disk lock");
        Ok(dirs.entry(name.to_string()).or_default().clone())
    }

    fn remove_dir(&mut self, name: &str) -> Result<(), StorageError> {
        self.dirs.lock().expect("sim disk lock").remove(name);
        Ok(())
    }
}
