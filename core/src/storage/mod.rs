//! The small file interface the partition log writes through.
//!
//! A [`Storage`] is one directory of named files (a partition's segments, indexes and
//! checkpoints). The server implements it over real files (`brook_server::storage`); this
//! crate's [`MemoryStorage`] is the simulated disk for tests and the simulator: it keeps only
//! synced bytes across a simulated crash and can tear the last unsynced write; it loses
//! creates and deletes not followed by a directory sync; [`DiskFaults`] makes its syncs fail
//! or its disk full.
//!
//! **Durability contract** (what a crash may undo): an append or truncate is durable once
//! the file is synced (`sync`); a create or delete once the directory is synced
//! (`sync_dir`); `write_atomic` is durable on return (temporary file synced, renamed, the
//! directory synced). A failed `sync` must never be retried in the hope that the data is
//! then safe: the kernel may have dropped the pages it could not write (PostgreSQL's
//! "fsyncgate"); callers give up on the directory instead (Kafka's offline log directory).
//!
//! **Architecture invariant:** calls are synchronous and complete before they return, so a
//! state machine that uses a `Storage` stays deterministic when the storage is deterministic.

mod faults;
mod memory;
mod shared;

pub use faults::DiskFaults;
pub use memory::{CrashMode, MemoryStorage};
pub use shared::{MemoryDirs, SharedStorage};

/// Why a storage call failed. The log treats every variant as an environmental failure of the
/// directory (Kafka's `KAFKA_STORAGE_ERROR`), except `NotFound` where it expects absence.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The named file does not exist.
    #[error("file {0} not found")]
    NotFound(String),
    /// A read asked for bytes past the end of the file.
    #[error("read of {len} bytes at {position} is past the end of {name} ({size} bytes)")]
    ReadPastEnd {
        /// The file read.
        name: String,
        /// Where the read started.
        position: u64,
        /// How many bytes it asked for.
        len: usize,
        /// The file's size.
        size: u64,
    },
    /// The operating system refused the operation.
    #[error("{op} {name}: {source}")]
    Io {
        /// What was attempted (open, append, sync, …).
        op: &'static str,
        /// The file it was attempted on.
        name: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// A directory of named, append-mostly files.
pub trait Storage {
    /// The names of all files in the directory, in no particular order.
    fn list(&self) -> Result<Vec<String>, StorageError>;
    /// Creates an empty file, or keeps an existing one as it is. The new name survives a
    /// crash only once the directory is synced.
    fn create(&mut self, name: &str) -> Result<(), StorageError>;
    /// The file's current size in bytes.
    fn size(&self, name: &str) -> Result<u64, StorageError>;
    /// Appends bytes at the end of the file.
    fn append(&mut self, name: &str, data: &[u8]) -> Result<(), StorageError>;
    /// Fills `buf` from the file starting at `position`; fails if the file is shorter.
    fn read_at(&self, name: &str, position: u64, buf: &mut [u8]) -> Result<(), StorageError>;
    /// Makes everything written to the file so far (appends, truncates) durable. After an
    /// error nothing is known about the unsynced bytes: do not retry, give up on the file.
    fn sync(&mut self, name: &str) -> Result<(), StorageError>;
    /// Makes the directory's entries durable: every create and delete so far survives a
    /// crash. The default does nothing, for storages whose entries are durable on return.
    fn sync_dir(&mut self) -> Result<(), StorageError> {
        Ok(())
    }
    /// Cuts the file to `size` bytes (no-op if it is already that short); durable once the
    /// file is synced.
    fn truncate(&mut self, name: &str, size: u64) -> Result<(), StorageError>;
    /// Removes the file; removing a missing file is not an error. The removal survives a
    /// crash only once the directory is synced.
    fn delete(&mut self, name: &str) -> Result<(), StorageError>;
    /// Replaces the file's whole content durably and atomically (checkpoints, markers).
    fn write_atomic(&mut self, name: &str, data: &[u8]) -> Result<(), StorageError>;
    /// Lets go of any open handle or mapping for the file; its content stays.
    fn close(&mut self, name: &str) -> Result<(), StorageError>;

    /// Reads a whole file, or `None` if it does not exist.
    fn read_all(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let size = match self.size(name) {
            Ok(size) => size,
            Err(StorageError::NotFound(_)) => return Ok(None),
            Err(err) => return Err(err),
        };
        let mut buf = vec![0; size as usize];
        self.read_at(name, 0, &mut buf)?;
        Ok(Some(buf))
    }
}
