//! The poller and the word decoding, with time passed in.

use super::*;
use time::macros::datetime;

fn spec(name: &str, value_type: ValueType, scale: f64) -> RegisterSpec {
    RegisterSpec {
        name: name.into(),
        address: 0,
        kind: RegisterKind::Holding,
        value_type,
        word_order: WordOrder::Big,
        scale,
        offset: 0.0,
        unit: None,
        thresholds: None,
        code: None,
        loinc: None,
    }
}

/// The fridge of protocols.md §3.4: temperature in 0.1 °C (int16), 2–8 °C, 0.5 °C hysteresis.
fn fridge() -> Poller {
    let temp = RegisterSpec {
        unit: Some("Cel".into()),
        thresholds: Some(Thresholds {
            min: Some(2.0),
            max: Some(8.0),
            hysteresis: 0.5,
        }),
        code: Some("fridge-temp".into()),
        loinc: Some("8310-5".into()),
        ..spec("temperature", ValueType::I16, 0.1)
    };
    let door = RegisterSpec {
        address: 3,
        kind: RegisterKind::Discrete,
        ..spec("door_open", ValueType::U16, 1.0)
    };
    Poller::new(
        vec![temp, door],
        PollerSettings {
            unit_id: 1,
            summary_interval: Duration::from_secs(60),
            fault_after: 3,
        },
    )
}

const T0: OffsetDateTime = datetime!(2026-11-22 03:00:00 UTC);

fn at(secs: i64) -> OffsetDateTime {
    T0 + time::Duration::seconds(secs)
}

fn tenths(t: f64) -> Vec<u16> {
    vec![((t * 10.0).round() as i16) as u16]
}

fn kinds(docs: &[Document]) -> Vec<&'static str> {
    docs.iter()
        .map(|d| match d.event {
            Event::Summary { .. } => "summary",
            Event::Alarm { .. } => "alarm",
            Event::AlarmClear { .. } => "alarm_clear",
            Event::Fault { .. } => "fault",
            Event::Recovered { .. } => "recovered",
        })
        .collect()
}

#[test]
fn words_become_scaled_signed_and_ordered_values() {
    let t = spec("t", ValueType::I16, 0.1);
    assert_eq!(t.value(&[47]), Ok(4.7));
    assert_eq!(t.value(&[0xFFE2]), Ok(-3.0)); // -30 tenths: a freezer
    let u = spec("u", ValueType::U16, 1.0);
    assert_eq!(u.value(&[0xFFE2]), Ok(65_506.0));
    let big = spec("b", ValueType::U32, 1.0);
    assert_eq!(big.value(&[0x0001, 0x0002]), Ok(65_538.0));
    let little = RegisterSpec {
        word_order: WordOrder::Little,
        ..big.clone()
    };
    assert_eq!(little.value(&[0x0002, 0x0001]), Ok(65_538.0));
    let i = spec("i", ValueType::I32, 0.01);
    assert_eq!(i.value(&[0xFFFF, 0xFE0C]), Ok(-5.0)); // -500 × 0.01
    let f = spec("f", ValueType::F32, 1.0);
    let bits = 4.25f32.to_bits();
    assert_eq!(f.value(&[(bits >> 16) as u16, bits as u16]), Ok(4.25));
    let offset = RegisterSpec {
        offset: -40.0,
        ..spec("o", ValueType::U16, 0.5)
    };
    assert_eq!(offset.value(&[100]), Ok(10.0));
    assert_eq!(
        big.value(&[1]),
        Err(ValueError::Words {
            register: "b".into(),
            expected: 2,
            got: 1
        })
    );
    let nan = f32::NAN.to_bits();
    assert_eq!(
        f.value(&[(nan >> 16) as u16, nan as u16])
            .map_err(|e| e.to_string()),
        Err("register f: words [7FC0, 0000] are not a number".into())
    );
    let coil = RegisterSpec {
        kind: RegisterKind::Coil,
        ..spec("c", ValueType::U16, 1.0)
    };
    assert_eq!(coil.count(), 1);
    assert_eq!(coil.value(&[1]), Ok(1.0));
    assert_eq!(coil.place(), "coil bit 1");
    assert_eq!(t.place(), "holding register 40001");
}

#[test]
fn summary_holds_min_mean_max_last_of_the_window() {
    let mut p = fridge();
    for (s, t) in [(0, 4.7), (10, 4.4), (20, 5.0), (30, 4.1)] {
        assert!(p.answered(at(s), &[tenths(t), vec![0]]).is_empty());
    }
    assert!(p.tick(at(59)).is_empty());
    let docs = p.tick(at(60));
    assert_eq!(kinds(&docs), ["summary"]);
    let Event::Summary {
        from,
        to,
        registers,
    } = &docs[0].event
    else {
        unreachable!()
    };
    assert_eq!(
        (from.as_str(), to.as_str()),
        ("2026-11-22T03:00:00Z", "2026-11-22T03:01:00Z")
    );
    let t = &registers[0];
    assert_eq!(
        (t.samples, t.min, t.mean, t.max, t.last),
        (4, 4.1, 4.55, 5.0, 4.1)
    );
    assert_eq!(t.last_raw, [41]);
    // The window is closed: the next one starts with the next answer.
    assert!(p.tick(at(200)).is_empty());
    assert!(p.answered(at(200), &[tenths(4.0), vec![1]]).is_empty());
    assert_eq!(p.window_end(), Some(at(260)));

    let obs = decode(&docs[0].to_bytes()).unwrap();
    assert_eq!(obs.len(), 2);
    assert_eq!(obs[0].test_code, "fridge-temp");
    assert_eq!(obs[0].value.as_deref(), Some("4.55"));
    assert_eq!(obs[0].unit.as_deref(), Some("Cel"));
    assert_eq!(obs[0].reference_range.as_deref(), Some("2-8"));
    assert_eq!(obs[0].extra["min"], "4.1");
    assert_eq!(obs[0].extra["max"], "5.0");
    assert_eq!(obs[0].extra["samples"], "4");
    assert_eq!(obs[0].extra["loinc"], "8310-5");
    assert_eq!(obs[0].observed_at.as_deref(), Some("2026-11-22T03:01:00Z"));
    assert!(obs[0].flags.is_empty());
    assert_eq!(obs[1].test_code, "door_open");
    assert_eq!(obs[1].extra["register"], "discrete bit 10004");
}

#[test]
fn out_of_range_raises_one_alarm_and_clears_with_hysteresis() {
    let mut p = fridge();
    assert!(p.answered(at(0), &[tenths(7.9), vec![0]]).is_empty());
    let docs = p.answered(at(10), &[tenths(9.5), vec![0]]);
    assert_eq!(kinds(&docs), ["alarm"]);
    let obs = decode(&docs[0].to_bytes()).unwrap();
    assert_eq!(obs[0].value.as_deref(), Some("9.5"));
    assert_eq!(obs[0].flags, ["ALARM", "H"]);
    assert_eq!(obs[0].comments, ["temperature 9.5 above 8.0 Cel"]);
    // Still too warm, and back at 7.8 (inside, but not by the 0.5 hysteresis): no news.
    assert!(p.answered(at(20), &[tenths(9.9), vec![0]]).is_empty());
    assert!(p.answered(at(30), &[tenths(7.8), vec![0]]).is_empty());
    let docs = p.answered(at(40), &[tenths(7.5), vec![0]]);
    assert_eq!(kinds(&docs), ["alarm_clear"]);
    let obs = decode(&docs[0].to_bytes()).unwrap();
    assert_eq!(obs[0].flags, ["CLEAR"]);
    assert_eq!(obs[0].extra["alarm_since"], "2026-11-22T03:00:10Z");
    // Too cold is an alarm of its own; straight from too warm to too cold is a new alarm.
    let docs = p.answered(at(50), &[tenths(1.5), vec![0]]);
    assert_eq!(kinds(&docs), ["alarm"]);
    let Event::Alarm { side, limit, .. } = &docs[0].event else {
        unreachable!()
    };
    assert_eq!((*side, *limit), (Side::Low, 2.0));
    let docs = p.answered(at(55), &[tenths(8.5), vec![0]]);
    assert_eq!(kinds(&docs), ["alarm"]);
    // The summary at the window's end flags the excursions both ways.
    let docs = p.tick(at(60));
    let obs = decode(&docs[0].to_bytes()).unwrap();
    assert_eq!(obs[0].flags, ["H", "L"]);
}

#[test]
fn fault_after_n_failures_then_recovered_once() {
    let mut p = fridge();
    assert!(p.answered(at(0), &[tenths(4.0), vec![0]]).is_empty());
    let timeout = || Fault::Timeout {
        place: "holding register 40001".into(),
    };
    assert!(p.failed(at(10), timeout()).is_empty());
    assert!(p.failed(at(20), timeout()).is_empty());
    let docs = p.failed(at(30), timeout());
    assert_eq!(kinds(&docs), ["fault"]);
    let obs = decode(&docs[0].to_bytes()).unwrap();
    assert_eq!(obs[0].test_code, FAULT_CODE);
    assert_eq!(
        obs[0].value.as_deref(),
        Some("no answer (timeout) reading holding register 40001")
    );
    assert_eq!(obs[0].extra["since"], "2026-11-22T03:00:10Z");
    assert_eq!(obs[0].extra["failures"], "3");
    // The same failure again is not news; the summary of the window still comes out.
    assert!(p.failed(at(40), timeout()).is_empty());
    assert_eq!(kinds(&p.failed(at(60), timeout())), ["summary"]);
    // A different cause is reported.
    let exception = Fault::Exception {
        code: 2,
        place: "holding register 40001".into(),
    };
    let docs = p.failed(at(70), exception);
    assert_eq!(kinds(&docs), ["fault"]);
    let obs = decode(&docs[0].to_bytes()).unwrap();
    assert_eq!(
        obs[0].value.as_deref(),
        Some("illegal data address at holding register 40001 (exception code 2)")
    );
    assert_eq!(obs[0].extra["exception"], "2");
    let docs = p.answered(at(80), &[tenths(4.2), vec![0]]);
    assert_eq!(kinds(&docs), ["recovered"]);
    let obs = decode(&docs[0].to_bytes()).unwrap();
    assert_eq!(obs[0].value.as_deref(), Some("recovered"));
    assert_eq!(obs[0].extra["since"], "2026-11-22T03:00:10Z");
    assert!(p.answered(at(90), &[tenths(4.2), vec![0]]).is_empty());
}

#[test]
fn a_blip_below_fault_after_is_not_stored() {
    let mut p = fridge();
    assert!(
        p.failed(at(0), Fault::Link("connection refused".into()))
            .is_empty()
    );
    assert!(p.answered(at(10), &[tenths(4.0), vec![0]]).is_empty());
    assert!(
        p.failed(at(20), Fault::Link("connection refused".into()))
            .is_empty()
    );
    assert!(
        p.failed(at(30), Fault::Link("connection refused".into()))
            .is_empty()
    );
}

#[test]
fn a_short_answer_is_a_fault_not_a_panic() {
    let mut p = fridge();
    let mut docs = Vec::new();
    for s in 0..3 {
        docs.extend(p.answered(at(s), &[vec![]]));
    }
    assert_eq!(kinds(&docs), ["fault"]);
    let obs = decode(&docs[0].to_bytes()).unwrap();
    assert_eq!(
        obs[0].value.as_deref(),
        Some("register temperature: expected 1 word(s), got 0")
    );
}

#[test]
fn decode_rejects_what_is_not_a_document() {
    assert!(matches!(decode(b"not json"), Err(DecodeError::Json(_))));
    assert!(matches!(
        decode(b"{\"modbus\":1}"),
        Err(DecodeError::Json(_))
    ));
    let newer = br#"{"modbus":9,"unit_id":1,"kind":"recovered","at":"a","since":"b","error":"c"}"#;
    assert_eq!(decode(newer), Err(DecodeError::Version(9)));
    let two = [
        br#"{"modbus":1,"unit_id":1,"kind":"recovered","at":"a","since":"b","error":"c"}"#
            .as_slice(),
        b"\n\ngarbage\n",
    ]
    .concat();
    let got = decode_capture(&two);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0.len(), 1);
    assert_eq!(got[1].1.len(), 1);
}
