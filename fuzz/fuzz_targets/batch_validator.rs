//! Fuzz target: any bytes offered as produce records must validate, convert or be refused
//! with an error, and record decoding of a valid-looking batch must never panic.
#![no_main]

use brook_core::record::{convert_legacy, decode_records, is_legacy, Batch, Batches};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if is_legacy(data) {
        let _ = convert_legacy(data, 1 << 20);
        return;
    }
    for batch in Batches::new(data) {
        let Ok(batch) = batch else { break };
        if batch.validate(1 << 20).is_ok() {
            let _ = decode_records(&batch, 1 << 22);
        }
        let _ = Batch::parse(batch.as_bytes()).map(|b| b.verify_crc());
    }
});
