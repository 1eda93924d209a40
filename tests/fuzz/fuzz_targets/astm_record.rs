//! Fuzz the ASTM E1394 capture decoder (protocols.md §1.2): framed or plain record bytes in,
//! decoded messages out, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocketgate::config::Encoding;
use pocketgate::protocol::astm::decode::decode_capture;

fuzz_target!(|data: &[u8]| {
    let _ = decode_capture(data, Encoding::Latin1);
});
