//! The event trace of a run: what happened, in simulated-time order, and its hash for the
//! determinism self-check.

use std::sync::{Arc, Mutex};

/// A shared, append-only list of trace lines.
#[derive(Clone, Default)]
pub struct Trace {
    lines: Arc<Mutex<Vec<String>>>,
}

impl Trace {
    /// Records one event line.
    pub fn record(&self, line: String) {
        self.lines.lock().expect("trace lock").push(line);
    }

    /// All lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("trace lock").clone()
    }

    /// FNV-1a hash of every line: equal traces, equal hashes.
    pub fn hash(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for line in self.lines.lock().expect("trace lock").iter() {
            for byte in line.bytes().chain(std::iter::once(b'\n')) {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        hash
    }
}
