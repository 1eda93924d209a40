//! Fuzz POCT1-A2 (protocols.md §1.4): arbitrary bytes in arbitrary chunk sizes to the
//! conversation `Manager` (splitter + XML parser + decoder), commits confirmed alternately
//! stored / not stored, time advancing so the receive timeout fires; the same bytes to
//! `decode_capture`, `xml::parse` and `xml::peek_header`. Beyond "no panic" it checks that every
//! reply renders to XML our own parser reads back, and that a commit is never left unanswered.
//!
//! Seeds (tests/fuzz/seeds/poct1, built from the S25 fixtures in tests/fixtures/poct1; no real
//! patient data): two control bytes (chunk size, size-limit seed) then device bytes — the full
//! S25 conversation, byte-by-byte delivery with prolog and comment, a too-small limit, ESC abort,
//! a truncated OBS followed by HEL, garbage + CDATA + entities, device ACKs in both spellings,
//! and a Latin-1 QC message (OBS.R02).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocketgate::config::Encoding;
use pocketgate::protocol::poct1::{self, Event, Manager, ManagerOptions, Stamp, xml};
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    // The first two bytes steer the run; the rest is what the "device" sends.
    let (control, bytes) = data.split_at(data.len().min(2));
    let chunk = usize::from(control.first().copied().unwrap_or(0)).max(1);
    let limit_seed = control.get(1).copied().unwrap_or(0);
    let max_message_bytes = if limit_seed & 1 == 0 {
        1 << 16
    } else {
        usize::from(limit_seed) * 4
    };

    let t0 = Instant::now();
    let mut m = Manager::new(ManagerOptions {
        max_message_bytes,
        receive_timeout: Duration::from_secs(30),
        ..ManagerOptions::default()
    });
    let stamp = Stamp {
        control_id: "1".into(),
        creation_dttm: "2024-01-15T10:30:01+00:00".into(),
    };
    let mut stored = true;
    for (i, piece) in bytes.chunks(chunk).enumerate() {
        let now = t0 + Duration::from_secs(20 * i as u64);
        let mut events = m.poll_timeout(now);
        events.extend(m.feed(piece, now));
        while let Some(ev) = events.pop() {
            match ev {
                Event::Commit(_) => {
                    assert!(m.awaiting_commit());
                    stored = !stored;
                    events.extend(m.confirm(stored));
                    assert!(
                        !m.awaiting_commit()
                            || events.iter().any(|e| matches!(e, Event::Commit(_)))
                    );
                }
                Event::Reply(r) => {
                    let doc = r.to_xml(&stamp);
                    assert!(doc.len() < max_message_bytes.max(1 << 16));
                    xml::parse(&doc, Encoding::Utf8).expect("our replies are well-formed");
                }
                _ => {}
            }
        }
    }
    let _ = poct1::decode_capture(bytes);
    let _ = xml::parse(bytes, Encoding::Latin1);
    let _ = xml::peek_header(bytes, Encoding::Utf8);
});
