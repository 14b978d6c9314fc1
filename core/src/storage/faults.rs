//! Faults a simulated disk injects into the calls made on it: an fsync that fails, a disk
//! that is full. One [`DiskFaults`] is shared by every directory of a disk, so a fault armed
//! once fires once for the whole disk.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// The fault switches of one simulated disk, shared by its directories (cloning shares them).
#[derive(Clone, Debug, Default)]
pub struct DiskFaults(Arc<Switches>);

#[derive(Debug, Default)]
struct Switches {
    /// The next sync of a file with unsynced bytes (or the next `write_atomic`) fails.
    sync_error_armed: AtomicBool,
    /// Appends and atomic writes fail with `ENOSPC`.
    full: AtomicBool,
    /// Sync errors fired so far.
    sync_errors: AtomicU64,
    /// Writes refused for lack of space so far.
    no_space_errors: AtomicU64,
    /// Draws made for partial writes (a counter mixed with the seed below).
    draws: AtomicU64,
    /// Seed of the partial-write lengths.
    seed: AtomicU64,
}

impl DiskFaults {
    /// Arms a one-shot sync error: the next sync that has bytes to write (or the next
    /// `write_atomic`) fails with `EIO`, and — as Linux does after a failed writeback, the
    /// PostgreSQL "fsyncgate" lesson — the bytes it failed to write are dropped, so a retried
    /// sync succeeds without them ever reaching the disk.
    pub fn arm_sync_error(&self) {
        self.0.sync_error_armed.store(true, Ordering::Relaxed);
    }

    /// Fills the disk (`true`: appends write a seed-chosen prefix and fail with `ENOSPC`,
    /// atomic writes fail and change nothing) or frees space again (`false`).
    pub fn set_full(&self, full: bool, seed: u64) {
        self.0.seed.store(seed, Ordering::Relaxed);
        self.0.full.store(full, Ordering::Relaxed);
    }

    /// Clears every fault (the disk was replaced or space freed); counters stay.
    pub fn heal(&self) {
        self.0.sync_error_armed.store(false, Ordering::Relaxed);
        self.0.full.store(false, Ordering::Relaxed);
    }

    /// How many syncs failed so far.
    pub fn sync_errors(&self) -> u64 {
        self.0.sync_errors.load(Ordering::Relaxed)
    }

    /// How many writes were refused for lack of space so far.
    pub fn no_space_errors(&self) -> u64 {
        self.0.no_space_errors.load(Ordering::Relaxed)
    }

    /// Whether the disk is full.
    pub fn is_full(&self) -> bool {
        self.0.full.load(Ordering::Relaxed)
    }

    /// Consumes an armed sync error: true if this sync must fail.
    pub(super) fn take_sync_error(&self) -> bool {
        let fired = self.0.sync_error_armed.swap(false, Ordering::Relaxed);
        if fired {
            self.0.sync_errors.fetch_add(1, Ordering::Relaxed);
        }
        fired
    }

    /// For a write of `len` bytes on a full disk: how many bytes get written before `ENOSPC`
    /// (`None` when the disk is not full).
    pub(super) fn no_space_prefix(&self, len: usize) -> Option<usize> {
        if !self.is_full() {
            return None;
        }
        self.0.no_space_errors.fetch_add(1, Ordering::Relaxed);
        let draw = self.0.draws.fetch_add(1, Ordering::Relaxed);
        let mut z = self.0.seed.load(Ordering::Relaxed) ^ draw.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z ^= z >> 31;
        Some((z % (len as u64 + 1)) as usize)
    }
}

/// The error a sync returns when a sync error fires.
pub(super) fn eio() -> std::io::Error {
    std::io::Error::other("EIO: simulated writeback failure")
}

/// The error a write returns on a full disk.
pub(super) fn enospc() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::StorageFull,
        "ENOSPC: simulated full disk",
    )
}
