//! Fuzz the HTTP body decoders (protocol/fhir.rs): FHIR R4 JSON, canonical JSON, CSV and XML.
//! The first byte picks the decoder (and whether to sniff from a content type); the rest is the
//! body. Never a panic, and an accepted body always yields at least one observation with a
//! test code.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocketgate::protocol::fhir::{BodyKind, decode};

const KINDS: [BodyKind; 4] = [BodyKind::Fhir, BodyKind::Json, BodyKind::Csv, BodyKind::Xml];
const CONTENT_TYPES: [Option<&str>; 4] = [
    None,
    Some("application/json"),
    Some("text/csv; charset=utf-8"),
    Some("text/xml"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let kind = if selector & 0x80 == 0 {
        KINDS[usize::from(selector) % KINDS.len()]
    } else {
        match BodyKind::sniff(
            CONTENT_TYPES[usize::from(selector) % CONTENT_TYPES.len()],
            body,
        ) {
            Some(k) => k,
            None => return,
        }
    };
    if let Ok(observations) = decode(kind, body) {
        assert!(!observations.is_empty());
        assert!(observations.iter().all(|o| !o.test_code.trim().is_empty()));
    }
});
