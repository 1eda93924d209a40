//! The S25 fixtures (tests/fixtures/poct1, README there) through splitter, parser, decoder and
//! manager, with the facts of the report's "Expected parse" asserted one by one.

use super::decode::{DeviceInfo, device_info};
use super::split::SplitError;
use super::xml::{self, Element, XmlError};
use super::*;
use crate::record::Device;
use std::path::Path;
use std::time::{Duration, Instant};

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/poct1")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn tree(bytes: &[u8]) -> Element {
    xml::parse(bytes, Encoding::Utf8).unwrap_or_else(|e| panic!("{e}"))
}

/// Elements, attributes and trimmed text only: white space between elements is formatting.
fn normalized(
    el: &Element,
) -> (
    String,
    Vec<(String, String)>,
    String,
    Vec<impl std::fmt::Debug>,
) {
    let mut attrs = el.attrs.clone();
    attrs.sort();
    (
        el.name.clone(),
        attrs,
        el.text.trim().to_owned(),
        el.children
            .iter()
            .map(|c| format!("{:?}", normalized(c)))
            .collect::<Vec<_>>(),
    )
}

fn stamp(id: &str, at: &str) -> Stamp {
    Stamp {
        control_id: id.into(),
        creation_dttm: at.into(),
    }
}

fn replies(events: &[Event]) -> Vec<Reply> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Reply(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn accept(id: &str) -> Reply {
    Reply::Ack {
        code: AckCode::Accept,
        ack_control_id: Some(id.into()),
        note: None,
    }
}

#[test]
fn hel_r01_gives_device_identity_and_limits() {
    let info = device_info(&tree(&fixture("s25-hel-r01.xml")));
    assert_eq!(
        info,
        DeviceInfo {
            device: Device {
                vendor: Some("NOVABIO".into()),
                model: Some("StatStrip".into()),
                serial: Some("0600100736".into()),
            },
            device_id: Some("MGH^ICU".into()),
            manufacturer: Some("Nova Biomedical".into()),
            sw_version: Some("3.10.8.0".into()),
            max_message_bytes: Some(32768),
            application_timeout_s: Some(120),
        }
    );
}

#[test]
fn s25_conversation_replays_with_the_expected_replies() {
    let mut m = Manager::new(ManagerOptions::default());
    let now = Instant::now();

    let ev = m.feed(&fixture("s25-hel-r01.xml"), now);
    assert!(matches!(&ev[0], Event::Hello(d) if d.device.model.as_deref() == Some("StatStrip")));
    assert_eq!(replies(&ev), vec![accept("7135")]);
    assert_eq!(
        m.device().max_message_bytes,
        Some(32768),
        "the device's DSC.max_message_sz is read (it bounds what we send it)"
    );
    // Our ACK is the S25 ACK, element for element.
    let ours = replies(&ev)[0].to_xml(&stamp("9001", "2024-01-15T10:30:01.000+08:00"));
    assert_eq!(
        format!("{:?}", normalized(&tree(&ours))),
        format!(
            "{:?}",
            normalized(&tree(&fixture("s25-ack-r01-to-hel.xml")))
        )
    );

    let ev = m.feed(&fixture("s25-dst-r01.xml"), now);
    assert_eq!(
        replies(&ev),
        vec![Reply::Request {
            topic: "OBS.R01".into()
        }]
    );
    let ours = replies(&ev)[0].to_xml(&stamp("9003", "2024-01-15T10:30:03.000+08:00"));
    assert_eq!(
        format!("{:?}", normalized(&tree(&ours))),
        format!(
            "{:?}",
            normalized(&tree(&fixture("s25-req-r01-to-dst.xml")))
        )
    );

    let obs = fixture("s25-obs-r01.xml");
    let ev = m.feed(&obs, now);
    assert!(replies(&ev).is_empty(), "no ACK before the commit: {ev:?}");
    let Some(Event::Commit(msg)) = ev.into_iter().next() else {
        panic!("OBS must be committed first")
    };
    assert!(m.awaiting_commit());
    assert_eq!(msg.xml, obs, "the document is stored byte for byte");
    assert_eq!(msg.control_id.as_deref(), Some("10003"));
    assert_eq!(msg.message_type.as_deref(), Some("OBS.R01"));
    assert!(msg.parse_errors.is_empty(), "{:?}", msg.parse_errors);
    let [o] = &msg.observations[..] else {
        panic!("{:?}", msg.observations)
    };
    assert_eq!(o.patient_id.as_deref(), Some("PT222-55-7777"));
    assert_eq!(o.test_code, "2341-6");
    assert_eq!(o.test_name.as_deref(), Some("Glu"));
    assert_eq!(o.value.as_deref(), Some("145"));
    assert_eq!(o.unit.as_deref(), Some("mg/dL"));
    assert_eq!(o.flags, vec!["HH".to_string()]);
    assert_eq!(o.result_status.as_deref(), Some("A"));
    assert_eq!(o.reference_range.as_deref(), Some("[80;120]"));
    assert_eq!(o.observed_at.as_deref(), Some("2001-11-01T16:29:54"));
    assert_eq!(o.sample_id, None);
    assert_eq!(o.device.vendor.as_deref(), Some("NOVABIO"));
    assert_eq!(o.device.serial.as_deref(), Some("0600100736"));
    let x = |k: &str| o.extra.get(k).map(String::as_str);
    assert_eq!(x("loinc"), Some("2341-6"));
    assert_eq!(x("code_system"), Some("LN"));
    assert_eq!(x("critical_range"), Some("[60;140]"));
    assert_eq!(x("operator_id"), Some("OP777-88-9999"));
    assert_eq!(x("location"), Some("Cambridge Hosp^ICU-4"));
    assert_eq!(x("observed_at_offset"), Some("-05:00"));
    assert_eq!(x("device_id"), Some("MGH^ICU"));
    assert_eq!(x("control_id"), Some("10003"));
    assert_eq!(x("message_type"), Some("OBS.R01"));

    assert_eq!(replies(&m.confirm(true)), vec![accept("10003")]);
    let ours = accept("10003").to_xml(&stamp("9004", "2024-01-15T10:30:04+08:00"));
    let ack = tree(&ours);
    let a = ack.child("ACK").unwrap();
    assert_eq!(a.child_value("ACK.type_cd"), Some("AA"));
    assert_eq!(a.child_value("ACK.ack_control_id"), Some("10003"));
    assert_eq!(
        ack.child("HDR").unwrap().child_value("HDR.control_id"),
        Some("9004")
    );

    let ev = m.feed(
        br#"<EOT.R01><HDR><HDR.control_id V="10004"/></HDR></EOT.R01><END.R01><HDR><HDR.control_id V="10005"/></HDR></END.R01>"#,
        now,
    );
    assert_eq!(ev, vec![Event::Reply(accept("10004")), Event::End]);
    assert!(m.ended());
}

#[test]
fn obs_not_stored_gets_an_error_ack_and_waiting_documents_follow_the_ack() {
    let mut m = Manager::new(ManagerOptions::default());
    let mut both = fixture("s25-obs-r01.xml");
    both.extend(fixture("s25-dst-r01.xml"));
    let ev = m.feed(&both, Instant::now());
    assert_eq!(ev.len(), 1, "the DST waits behind the commit: {ev:?}");
    let ev = m.confirm(false);
    match &ev[0] {
        Event::Reply(Reply::Ack {
            code: AckCode::Error,
            ack_control_id: Some(id),
            ..
        }) => assert_eq!(id, "10003"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        ev[1],
        Event::Reply(Reply::Request {
            topic: "OBS.R01".into()
        })
    );
}

#[test]
fn byte_by_byte_delivery_yields_the_same_conversation() {
    let mut stream = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- hello -->".to_vec();
    stream.extend(fixture("s25-hel-r01.xml"));
    stream.extend(b"\r\n");
    stream.extend(fixture("s25-obs-r01.xml"));
    let mut m = Manager::new(ManagerOptions::default());
    let now = Instant::now();
    let mut events = Vec::new();
    for b in &stream {
        for e in m.feed(std::slice::from_ref(b), now) {
            if matches!(e, Event::Commit(_)) {
                events.push(e);
                events.extend(m.confirm(true));
            } else {
                events.push(e);
            }
        }
    }
    assert_eq!(replies(&events), vec![accept("7135"), accept("10003")]);
    let commits = events
        .iter()
        .filter(|e| matches!(e, Event::Commit(_)))
        .count();
    assert_eq!(commits, 1);
}

#[test]
fn malformed_obs_is_committed_with_its_error_and_truncated_xml_names_the_byte_offset() {
    // The splitter hands over documents whose tags balance; the parser checks the names.
    let doc =
        br#"<OBS.R01><HDR><HDR.control_id V="77"/></HDR><SVC><PT><OBS></OBX></PT></SVC></OBS.R01>"#;
    let mut m = Manager::new(ManagerOptions::default());
    let ev = m.feed(doc, Instant::now());
    let Some(Event::Commit(msg)) = ev.first() else {
        panic!("{ev:?}")
    };
    assert_eq!(msg.control_id.as_deref(), Some("77"));
    assert_eq!(
        msg.parse_errors,
        vec!["end tag </OBX> at byte 58 does not close <OBS>".to_string()]
    );
    let e = xml::parse(&fixture("s25-obs-r01.xml")[..300], Encoding::Utf8).unwrap_err();
    assert!(matches!(e, XmlError::Truncated { offset: 300, .. }), "{e}");
    assert!(e.to_string().contains("byte 300"), "{e}");
}

#[test]
fn half_document_then_silence_is_dropped_and_the_next_one_is_read() {
    let opts = ManagerOptions {
        receive_timeout: Duration::from_secs(2),
        ..ManagerOptions::default()
    };
    let mut m = Manager::new(opts);
    let t0 = Instant::now();
    let obs = fixture("s25-obs-r01.xml");
    assert!(m.feed(&obs[..200], t0).is_empty());
    assert_eq!(m.deadline(), Some(t0 + Duration::from_secs(2)));
    assert!(m.poll_timeout(t0 + Duration::from_secs(1)).is_empty());
    assert_eq!(
        m.poll_timeout(t0 + Duration::from_secs(2)),
        vec![Event::Dropped {
            reason: DropReason::Timeout,
            bytes: 200
        }]
    );
    assert_eq!(m.deadline(), None);
    let ev = m.feed(&fixture("s25-hel-r01.xml"), t0 + Duration::from_secs(3));
    assert_eq!(replies(&ev), vec![accept("7135")]);
}

#[test]
fn oversize_document_is_refused_with_an_error_ack() {
    let mut m = Manager::new(ManagerOptions {
        max_message_bytes: 200,
        ..ManagerOptions::default()
    });
    let ev = m.feed(&fixture("s25-obs-r01.xml"), Instant::now());
    match &ev[..] {
        [
            Event::Reply(Reply::Ack {
                code: AckCode::Error,
                ack_control_id: Some(id),
                ..
            }),
            Event::Rejected(Poct1Error::Split(SplitError::TooLarge {
                limit: 200,
                offset: 200,
                ..
            })),
        ] => assert_eq!(id, "10003"),
        other => panic!("{other:?}"),
    }
    assert!(!m.awaiting_commit(), "nothing to store");
}

#[test]
fn device_announced_receive_limit_does_not_refuse_what_the_device_sends() {
    // Quidel Sofia announces DSC.max_message_sz 1000 (what it can *receive*) and sends OBS of
    // about 900 bytes and more: the announcement must not bound inbound documents.
    let hel = String::from_utf8(fixture("s25-hel-r01.xml"))
        .unwrap()
        .replace("32768", "500");
    let mut m = Manager::new(ManagerOptions::default());
    m.feed(hel.as_bytes(), Instant::now());
    let ev = m.feed(&fixture("s25-obs-r01.xml"), Instant::now());
    assert!(
        ev.iter().any(|e| matches!(e, Event::Commit(_))),
        "a 900-byte OBS after a 500-byte announcement is still taken: {ev:?}"
    );
}

#[test]
fn esc_aborts_the_partial_document() {
    let mut m = Manager::new(ManagerOptions::default());
    let obs = fixture("s25-obs-r01.xml");
    let mut stream = obs[..100].to_vec();
    stream.push(0x1B);
    stream.extend(br#"<END.R01><HDR><HDR.control_id V="1"/></HDR></END.R01>"#);
    let ev = m.feed(&stream, Instant::now());
    assert_eq!(ev, vec![Event::Escape { dropped: 100 }, Event::End]);
}

#[test]
fn device_ack_and_manager_only_messages() {
    let mut m = Manager::new(ManagerOptions::default());
    let ev = m.feed(
        br#"<ACK.R01><ACK><ACK.type_cd V="AA"/><ACK.ack_control_id V="9"/></ACK></ACK.R01><REQ.R01><HDR><HDR.control_id V="3"/></HDR></REQ.R01>"#,
        Instant::now(),
    );
    assert!(matches!(&ev[0], Event::DeviceAck(a) if a.ack_control_id.as_deref() == Some("9")));
    assert!(
        matches!(&ev[1], Event::Reply(Reply::Ack { code: AckCode::Error, ack_control_id: Some(id), .. }) if id == "3")
    );
    assert!(matches!(
        &ev[2],
        Event::Rejected(Poct1Error::Unexpected { .. })
    ));
}

#[test]
fn qc_obs_r02_maps_control_lot_and_notes() {
    let doc = br#"<OBS.R02><HDR><HDR.control_id V="5"/><HDR.creation_dttm V="2024-03-01T08:00:00Z"/></HDR>
      <SVC><SVC.role_cd V="LQC"/><NTE><NTE.text V="level 1"/></NTE>
        <CTC><CTC.name V="Level 1"/><CTC.lot_number V="L123"/>
          <OBS><OBS.observation_id V="GLU" SN="NOVABIO"/><OBS.value V="4.9" U="mmol/L"/></OBS>
          <OBS><OBS.value V="1"/></OBS>
        </CTC></SVC></OBS.R02>"#;
    let out = decode_capture(doc);
    let [(obs, errors)] = &out[..] else {
        panic!("{out:?}")
    };
    let [o] = &obs[..] else { panic!("{obs:?}") };
    assert_eq!(o.test_code, "GLU");
    assert_eq!(o.value.as_deref(), Some("4.9"));
    assert_eq!(
        o.observed_at.as_deref(),
        Some("2024-03-01T08:00:00"),
        "falls back to HDR.creation_dttm"
    );
    assert_eq!(o.extra.get("control_lot").map(String::as_str), Some("L123"));
    assert_eq!(
        o.extra.get("code_system").map(String::as_str),
        Some("NOVABIO")
    );
    assert_eq!(o.extra.get("loinc"), None);
    assert_eq!(o.comments, vec!["level 1".to_string()]);
    assert_eq!(
        errors.len(),
        1,
        "the OBS without an id is reported: {errors:?}"
    );
    assert!(errors[0].contains("no OBS.observation_id"), "{errors:?}");
}

#[test]
fn decode_capture_reads_a_whole_conversation() {
    let mut cap = fixture("s25-hel-r01.xml");
    cap.extend(fixture("s25-dst-r01.xml"));
    cap.extend(fixture("s25-obs-r01.xml"));
    cap.extend(&fixture("s25-obs-r01.xml")[..50]);
    let out = decode_capture(&cap);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[0].0[0].value.as_deref(), Some("145"));
    assert_eq!(out[0].0[0].device.model.as_deref(), Some("StatStrip"));
    assert!(out[0].1.is_empty());
    assert!(out[1].0.is_empty());
    assert!(
        out[1].1[0].contains(&format!("byte {}", cap.len())),
        "{:?}",
        out[1].1
    );
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A cheap stand-in for the fuzz target: every prefix and some mutations of the fixtures.
    let mut inputs = Vec::new();
    for f in ["s25-hel-r01.xml", "s25-dst-r01.xml", "s25-obs-r01.xml"] {
        let b = fixture(f);
        for cut in (0..b.len()).step_by(7) {
            inputs.push(b[..cut].to_vec());
            let mut m = b.clone();
            m[cut] = [b'<', b'>', b'"', b'&', 0x1B, 0xFF, b'/', b'!'][cut % 8];
            inputs.push(m);
        }
    }
    for input in inputs {
        let _ = decode_capture(&input);
        let _ = xml::parse(&input, Encoding::Utf8);
        let _ = xml::peek_header(&input, Encoding::Latin1);
    }
}
