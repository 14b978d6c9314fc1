//! The broker's global allocator: the system allocator, except that very large requests are
//! served by lazily-committed anonymous mappings.
//!
//! Why: the Kafka message decoders (the `kafka-protocol` crate) reserve `Vec` capacity from
//! array lengths read off the wire before checking that the bytes are there. An 18-byte
//! request declaring 2^31 topics would make the system allocator ask for 150 GB, fail, and
//! abort the whole broker. Served by `mmap(MAP_NORESERVE)`, the reservation costs address
//! space only; the decoder then fails on the missing bytes, the request is refused, and the
//! mapping is released. Memory is committed only for pages actually written.
//!
//! (Under `vm.overcommit_memory=2` the kernel ignores `MAP_NORESERVE`; the allocation then
//! fails as before. docs/operations.md says so.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;

use nix::libc;

/// Allocations of at least this many bytes are mapped lazily instead of malloc'd.
pub const LAZY_BYTES_MIN: usize = 1 << 30;
const PAGE: usize = 4096;

/// The system allocator with lazily-committed mappings for huge allocations.
pub struct LazyLargeAlloc;

fn is_large(layout: &Layout) -> bool {
    layout.size() >= LAZY_BYTES_MIN && layout.align() <= PAGE
}

// SAFETY: small layouts go to `System` unchanged; large ones get a fresh page-aligned private
// anonymous mapping of at least `layout.size()` bytes (zero-filled, so alloc_zeroed holds),
// released with munmap of the same size in dealloc. realloc moves between the two kinds
// through alloc + copy + dealloc.
unsafe impl GlobalAlloc for LazyLargeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !is_large(&layout) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.alloc(layout) };
        }
        // SAFETY: a new anonymous mapping; no existing memory is touched.
        let address = unsafe {
            libc::mmap(
                ptr::null_mut(),
                layout.size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if address == libc::MAP_FAILED {
            ptr::null_mut()
        } else {
            address.cast()
        }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        if is_large(&layout) {
            // SAFETY: `pointer` came from the mmap in `alloc` with this same size.
            unsafe { libc::munmap(pointer.cast(), layout.size()) };
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.dealloc(pointer, layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(&layout) {
            // SAFETY: anonymous mappings are zero-filled.
            unsafe { self.alloc(layout) }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees new_size, rounded to the alignment, fits isize.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_large(&layout) && !is_large(&new_layout) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.realloc(pointer, layout, new_size) };
        }
        // SAFETY: a fresh block of the new layout, the old contents copied, the old freed.
        unsafe {
            let moved = self.alloc(new_layout);
            if !moved.is_null() {
                ptr::copy_nonoverlapping(pointer, moved, layout.size().min(new_size));
                self.dealloc(pointer, layout);
            }
            moved
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lazy_alloc_serves_huge_reservations_without_committing_them() {
        let allocator = LazyLargeAlloc;
        let layout = Layout::from_size_align(150 << 30, 8).unwrap();
        // SAFETY: the block is written only in its first page, then freed with its layout.
        unsafe {
            let block = allocator.alloc(layout);
            assert!(!block.is_null(), "a 150 GiB reservation succeeds lazily");
            block.write(7);
            assert_eq!(block.read(), 7);
            allocator.dealloc(block, layout);
        }
        let small = Layout::from_size_align(64, 8).unwrap();
        // SAFETY: allocated, grown and freed with matching layouts.
        unsafe {
            let block = allocator.alloc(small);
            block.write(3);
            let grown = allocator.realloc(block, small, LAZY_BYTES_MIN);
            assert_eq!(grown.read(), 3, "contents survive a move into a mapping");
            allocator.dealloc(grown, Layout::from_size_align(LAZY_BYTES_MIN, 8).unwrap());
        }
    }
}
