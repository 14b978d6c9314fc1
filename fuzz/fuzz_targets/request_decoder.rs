//! Fuzz target: any bytes as a request frame must decode to a request or an error, never a
//! panic or an abort (hostile lengths are served by the broker's lazy allocator).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: brook_server::alloc::LazyLargeAlloc = brook_server::alloc::LazyLargeAlloc;

fuzz_target!(|data: &[u8]| {
    let _ = brook_core::protocol::frame_len(data, 100 << 20);
    let _ = brook_core::protocol::decode_request(bytes::Bytes::copy_from_slice(data));
});
