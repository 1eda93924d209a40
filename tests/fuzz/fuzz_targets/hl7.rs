//! Fuzz the HL7 v2 path (protocols.md §1.3): arbitrary bytes through the MLLP deframer, the
//! segment parser, the observation mapping and the ACK builder, never a panic.
//! The first byte picks the chunk size the bytes are fed in (as a socket would split them).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocketgate::config::Encoding;
use pocketgate::protocol::hl7::ack::{AckContext, Outcome, build_ack};
use pocketgate::protocol::hl7::decode::decode_message;
use pocketgate::protocol::hl7::decode_capture;
use pocketgate::protocol::hl7::mllp::{Deframed, Deframer};

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, bytes)) = data.split_first() else {
        return;
    };
    let _ = decode_capture(bytes, Encoding::Utf8);
    let mut deframer = Deframer::new(4096);
    for part in bytes.chunks(usize::from(chunk).max(1)) {
        for out in deframer.feed(part) {
            if let Deframed::Message { text, .. } = out {
                let d = decode_message(&text, Encoding::Latin1);
                let ctx = AckContext::from_message(d.message.as_ref());
                let _ = build_ack(
                    &ctx,
                    Outcome::StoredWithErrors,
                    Some("x|y"),
                    "20240101",
                    "1",
                );
            }
        }
    }
});
