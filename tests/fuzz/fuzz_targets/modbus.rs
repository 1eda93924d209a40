//! Fuzz Modbus (protocols.md §1.6): the stored-document decoder on arbitrary bytes, and the
//! poller fed an arbitrary sequence of polls. Beyond "no panic" it checks that every document
//! the poller emits decodes back (the stored bytes are always re-decodable) and that a clear
//! never comes without an open alarm.
//!
//! Input: for the poller, a stream of steps — a control byte (high bit: a failed poll whose
//! kind is the low bits; else an answer) followed, for an answer, by 2 bytes per word of the
//! registers below. The same bytes go to `decode` and `decode_capture`.
//! Seeds (tests/fuzz/seeds/modbus): stored documents of every kind, built by the unit tests'
//! fridge scenario; no device data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocketgate::protocol::modbus::{
    self, Event, Fault, Poller, PollerSettings, RegisterKind, RegisterSpec, Thresholds,
    ValueType, WordOrder,
};
use std::time::Duration;
use time::OffsetDateTime;

fn register(name: &str, kind: RegisterKind, value_type: ValueType, order: WordOrder) -> RegisterSpec {
    RegisterSpec {
        name: name.into(),
        address: 0,
        kind,
        value_type,
        word_order: order,
        scale: if value_type == ValueType::I16 { 0.1 } else { 1.0 },
        offset: 0.0,
        unit: None,
        thresholds: Some(Thresholds {
            min: Some(2.0),
            max: Some(8.0),
            hysteresis: 0.5,
        }),
        code: None,
        loinc: None,
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = modbus::decode(data);
    let _ = modbus::decode_capture(data);

    let registers = vec![
        register("t", RegisterKind::Holding, ValueType::I16, WordOrder::Big),
        register("u", RegisterKind::Input, ValueType::U32, WordOrder::Little),
        register("f", RegisterKind::Holding, ValueType::F32, WordOrder::Big),
        register("c", RegisterKind::Coil, ValueType::U16, WordOrder::Big),
    ];
    let counts: Vec<usize> = registers.iter().map(|r| usize::from(r.count())).collect();
    let mut poller = Poller::new(
        registers,
        PollerSettings {
            unit_id: 1,
            summary_interval: Duration::from_secs(60),
            fault_after: 2,
        },
    );
    let mut alarmed = [false; 4];
    let mut now = OffsetDateTime::UNIX_EPOCH;
    let mut rest = data;
    while let Some((&control, tail)) = rest.split_first() {
        rest = tail;
        now += time::Duration::seconds(i64::from(control & 0x3F) + 1);
        let docs = if control & 0x80 != 0 {
            let fault = match control & 3 {
                0 => Fault::Timeout { place: "holding register 40001".into() },
                1 => Fault::Exception { code: control >> 2 & 0x0F, place: "input register 30001".into() },
                _ => Fault::Link("connection refused".into()),
            };
            poller.failed(now, fault)
        } else {
            let mut words = Vec::new();
            for &n in &counts {
                let take = (2 * n).min(rest.len());
                let (bytes, tail) = rest.split_at(take);
                rest = tail;
                words.push(bytes.chunks(2).map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])).collect());
            }
            poller.answered(now, &words)
        };
        for doc in docs {
            let obs = modbus::decode(&doc.to_bytes()).expect("emitted documents decode");
            assert!(!obs.is_empty());
            let name = |r: &modbus::RegisterInfo| ["t", "u", "f", "c"].iter().position(|n| *n == r.name).unwrap();
            match &doc.event {
                Event::Alarm { register, .. } => alarmed[name(register)] = true,
                Event::AlarmClear { register, .. } => {
                    assert!(alarmed[name(register)], "clear without an alarm");
                    alarmed[name(register)] = false;
                }
                _ => {}
            }
        }
    }
});
