//! The simulated disk of one broker: `brook_core::storage::MemoryDirs`, directories that
//! outlive the broker process, so a restart recovers from whatever a crash left.
//!
//! A process kill keeps every byte (the operating system's page cache survives); a power
//! loss (`MemoryDirs::power_loss`) keeps synced bytes and, per file, all, none or a torn
//! prefix of the unsynced ones, with garbage in the last sector; creates and deletes not
//! followed by a directory sync may be undone, unsynced truncates may be lost. Its
//! `DiskFaults` fail a sync (dropping the unsynced bytes, as Linux does) or fill the disk.

/// A broker's simulated disk.
pub type SimDisk = brook_core::storage::MemoryDirs;
