//! Fuzz the MQTT payload path (protocol/mqtt.rs): the first byte picks the payload format and
//! encoding, then `topic NUL payload` (the stored envelope) is opened and decoded, and a topic
//! filter made of the topic is matched. Never a panic; every error names the topic; the envelope
//! round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocketgate::config::{Encoding, PayloadFormat};
use pocketgate::protocol::mqtt::{decode_payload, envelope, open_envelope, topic_matches};

const FORMATS: [PayloadFormat; 6] = [
    PayloadFormat::Json,
    PayloadFormat::Fhir,
    PayloadFormat::Hl7,
    PayloadFormat::Astm,
    PayloadFormat::Csv,
    PayloadFormat::Xml,
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, wire)) = data.split_first() else {
        return;
    };
    let format = FORMATS[usize::from(selector & 0x7f) % FORMATS.len()];
    let encoding = if selector & 0x80 == 0 {
        Encoding::Utf8
    } else {
        Encoding::Latin1
    };
    let Some((topic, payload)) = open_envelope(wire) else {
        return;
    };
    assert_eq!(envelope(topic, payload), wire);
    assert!(topic_matches(topic, topic) || topic.contains(['+', '#']) || topic.starts_with('$'));
    assert!(topic_matches("#", topic) != topic.starts_with('$'));
    let decoded = decode_payload(format, encoding, topic, payload);
    let prefix = format!("topic {topic:?} ({}): ", format.name());
    assert!(decoded.errors.iter().all(|e| e.starts_with(&prefix)));
    assert!(
        decoded
            .observations
            .iter()
            .all(|o| o.extra.get("mqtt_topic").map(String::as_str) == Some(topic))
    );
});
