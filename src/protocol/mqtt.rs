//! MQTT payloads → canonical [`Observation`]s, pure: topic filters (MQTT 3.1.1 §4.7), the stored
//! envelope that keeps the topic beside the payload, and one decoder per payload format, each
//! reusing the decoder of the protocol that defines the format (HTTP bodies: [`fhir`]; HL7 v2:
//! [`hl7::decode`]; ASTM E1394 records: [`astm::decode`]).
//!
//! Every error names the topic, the format and where in the payload it is (JSON line/column,
//! CSV line, XML byte, HL7 segment/field, ASTM record/field), e.g.
//! `topic "lab/gx-1/results" (json): not valid JSON: expected value at line 1 column 12`.

use super::fhir::{self, BodyKind};
use super::{astm, hl7};
use crate::config::{Encoding, PayloadFormat};
use crate::record::Observation;

/// The `extra` key that carries the topic a result was published on (Temprs may route by it).
pub const TOPIC_KEY: &str = "mqtt_topic";

/// Does `topic` match `filter`? `+` matches one level, a final `#` the parent level and every
/// level below it; a filter starting with a wildcard does not match `$`-topics (`$SYS/…`).
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The `wire` column of a stored MQTT message: the topic, a NUL byte (never part of a topic,
/// §1.5.3), then the payload exactly as received.
pub fn envelope(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut wire = Vec::with_capacity(topic.len() + 1 + payload.len());
    wire.extend_from_slice(topic.as_bytes());
    wire.push(0);
    wire.extend_from_slice(payload);
    wire
}

/// Topic and payload back out of [`envelope`]; `None` if `wire` is not one.
pub fn open_envelope(wire: &[u8]) -> Option<(&str, &[u8])> {
    let nul = wire.iter().position(|&b| b == 0)?;
    let topic = std::str::from_utf8(wire.get(..nul)?).ok()?;
    Some((topic, wire.get(nul + 1..)?))
}

/// One payload decoded as far as it could be.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decoded {
    pub observations: Vec<Observation>,
    /// Each names the topic and where; non-empty makes the stored message `invalid`.
    pub errors: Vec<String>,
}

/// Decode one payload published on `topic` in `format`. Every observation gets
/// `extra.mqtt_topic = topic`.
pub fn decode_payload(
    format: PayloadFormat,
    encoding: Encoding,
    topic: &str,
    payload: &[u8],
) -> Decoded {
    let (mut observations, errors): (Vec<Observation>, Vec<String>) = match format {
        PayloadFormat::Json | PayloadFormat::Fhir | PayloadFormat::Csv | PayloadFormat::Xml => {
            let kind = match format {
                PayloadFormat::Fhir => BodyKind::Fhir,
                PayloadFormat::Csv => BodyKind::Csv,
                PayloadFormat::Xml => BodyKind::Xml,
                _ => BodyKind::Json,
            };
            match fhir::decode(kind, payload) {
                Ok(obs) => (obs, Vec::new()),
                Err(e) => (Vec::new(), vec![e.to_string()]),
            }
        }
        PayloadFormat::Hl7 => {
            let d = hl7::decode::decode_message(strip_mllp(payload), encoding);
            let errors = d.errors.iter().map(ToString::to_string).collect();
            (d.observations, errors)
        }
        PayloadFormat::Astm => {
            let mut obs = Vec::new();
            let mut errors = Vec::new();
            for d in astm::decode::decode_capture(payload, encoding) {
                obs.extend(d.observations);
                errors.extend(d.errors.iter().map(ToString::to_string));
            }
            (obs, errors)
        }
    };
    for o in &mut observations {
        o.extra.insert(TOPIC_KEY.to_owned(), topic.to_owned());
    }
    Decoded {
        observations,
        errors: errors
            .into_iter()
            .map(|e| format!("topic {topic:?} ({}): {e}", format.name()))
            .collect(),
    }
}

/// An HL7 payload may come MLLP-framed (`<VT>…<FS><CR>`, protocols.md §1.3) or bare.
fn strip_mllp(payload: &[u8]) -> &[u8] {
    let p = payload.strip_prefix(b"\x0b").unwrap_or(payload);
    p.strip_suffix(b"\x1c\r")
        .or_else(|| p.strip_suffix(b"\x1c"))
        .unwrap_or(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_as_mqtt_says() {
        for (filter, topic, want) in [
            ("lab/gx/results", "lab/gx/results", true),
            ("lab/+/results", "lab/gx/results", true),
            ("lab/+/results", "lab/gx/other", false),
            ("lab/+", "lab/gx/results", false),
            ("lab/#", "lab", true),
            ("lab/#", "lab/gx/results", true),
            ("#", "lab/gx", true),
            ("#", "$SYS/broker/uptime", false),
            ("+/broker/uptime", "$SYS/broker/uptime", false),
            ("$SYS/#", "$SYS/broker/uptime", true),
            ("lab/+/+", "lab/gx/", true),
            ("lab/gx", "lab/gx/results", false),
            ("lab/gx/results", "lab/gx", false),
        ] {
            assert_eq!(topic_matches(filter, topic), want, "{filter} vs {topic}");
        }
    }

    #[test]
    fn envelope_round_trips_binary_payloads() {
        let wire = envelope("lab/a b/ü", b"\x00\x01{}\xff");
        assert_eq!(
            open_envelope(&wire),
            Some(("lab/a b/ü", &b"\x00\x01{}\xff"[..]))
        );
        assert_eq!(open_envelope(b"no nul here"), None);
    }

    #[test]
    fn json_payload_decodes_and_carries_its_topic() {
        let d = decode_payload(
            PayloadFormat::Json,
            Encoding::Utf8,
            "lab/gx-1/results",
            br#"{"sample_id":"S1","test_code":"MTB","value":"DETECTED"}"#,
        );
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        assert_eq!(d.observations.len(), 1);
        assert_eq!(d.observations[0].test_code, "MTB");
        assert_eq!(
            d.observations[0].extra.get(TOPIC_KEY).map(String::as_str),
            Some("lab/gx-1/results")
        );
    }

    #[test]
    fn json_error_names_topic_line_and_column() {
        let d = decode_payload(
            PayloadFormat::Json,
            Encoding::Utf8,
            "lab/x",
            b"{\"test_code\": \"A\",\n \"value\": }",
        );
        assert!(d.observations.is_empty());
        assert_eq!(d.errors.len(), 1);
        assert!(
            d.errors[0].starts_with("topic \"lab/x\" (json): not valid JSON: "),
            "{}",
            d.errors[0]
        );
        assert!(d.errors[0].contains("line 2 column 11"), "{}", d.errors[0]);
    }

    #[test]
    fn hl7_payload_framed_or_bare_decodes() {
        let msg = b"MSH|^~\\&|LAB|CLINIC|PG|PG|20240101120000||ORU^R01|1|P|2.5.1\r\
                    PID|1||P1\rOBR|1||S7|GLU\rOBX|1|NM|GLU^Glucose||5.4|mmol/L|||||F\r";
        let bare = decode_payload(PayloadFormat::Hl7, Encoding::Utf8, "t", msg);
        assert!(bare.errors.is_empty(), "{:?}", bare.errors);
        assert_eq!(bare.observations.len(), 1);
        assert_eq!(bare.observations[0].value.as_deref(), Some("5.4"));
        let mut framed = vec![0x0b];
        framed.extend_from_slice(msg);
        framed.extend_from_slice(b"\x1c\r");
        let f = decode_payload(PayloadFormat::Hl7, Encoding::Utf8, "t", &framed);
        assert_eq!(f.observations, bare.observations);
    }

    #[test]
    fn astm_records_decode_and_errors_name_the_record() {
        let text = b"H|\\^&|||Afinion 2\rP|1\rO|1|S1||^^^HbA1c\rR|1|^^^HbA1c|5.6|%||||F\rL|1|N\r";
        let d = decode_payload(PayloadFormat::Astm, Encoding::Latin1, "t", text);
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        assert_eq!(d.observations.len(), 1);
        let bad = decode_payload(PayloadFormat::Astm, Encoding::Latin1, "lab/q", b"R|1|x\r");
        assert!(bad.observations.is_empty());
        assert!(
            bad.errors[0].starts_with("topic \"lab/q\" (astm): "),
            "{:?}",
            bad.errors
        );
    }

    #[test]
    fn csv_error_names_the_line() {
        let d = decode_payload(
            PayloadFormat::Csv,
            Encoding::Utf8,
            "t",
            b"sample_id,value\nS1,5\n",
        );
        assert!(
            d.errors[0].contains("CSV header (line 1)"),
            "{:?}",
            d.errors
        );
    }
}
