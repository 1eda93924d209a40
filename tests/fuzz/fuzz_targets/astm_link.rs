//! Fuzz the E1381 link layer (protocols.md §1.1): arbitrary bytes in arbitrary chunk sizes to a
//! `Receiver`, frames answered alternately ACK/NAK, time advancing so the timer fires; the same
//! bytes to `deframe` and, as replies, to a `Sender`. Beyond "no panic" it checks the promises
//! callers rely on: only ACK/NAK are ever written, delivered frames respect the size limit and
//! carry a frame number 0–7, and a NAK reply always comes with its `Rejected` reason.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocketgate::protocol::astm::link::{
    ACK, NAK, Receiver, ReceiverLimits, RxEvent, Sender, TxEvent, deframe,
};
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    // The first two bytes steer the run; the rest is what the "device" sends.
    let (control, bytes) = data.split_at(data.len().min(2));
    let chunk_seed = control.first().copied().unwrap_or(0);
    let limit_seed = control.get(1).copied().unwrap_or(0);
    let max_frame_bytes = if limit_seed & 1 == 0 {
        65_536
    } else {
        usize::from(limit_seed)
    };

    let t0 = Instant::now();
    let mut rx = Receiver::new(ReceiverLimits {
        max_frame_bytes,
        timeout: Duration::from_secs(30),
    });
    let mut accept = true;
    let mut offset = 0usize;
    let mut step = 0u64;
    while offset < bytes.len() {
        // Chunk sizes 1..=64 vary with position, so byte-by-byte and bulk delivery both occur.
        let len = 1 + usize::from(chunk_seed.wrapping_add((step as u8).wrapping_mul(37)) % 64);
        let end = (offset + len).min(bytes.len());
        let now = t0 + Duration::from_secs(step * 7);
        let mut events = rx.feed(&bytes[offset..end], now);
        events.extend(rx.poll_timeout(now));
        while rx.awaiting_answer() {
            check(&events, max_frame_bytes);
            events = rx.answer_frame(accept, now);
            accept = !accept;
        }
        check(&events, max_frame_bytes);
        offset = end;
        step += 1;
    }
    assert!(rx.deadline().is_none() || rx.in_transfer());

    let d = deframe(bytes);
    assert!(d.text.len() <= bytes.len());

    // The same bytes as a receiver's replies to a sender.
    let mut tx = Sender::new(vec![bytes.to_vec()], 240);
    let mut events = tx.start(t0);
    for (i, chunk) in bytes.chunks(1 + usize::from(chunk_seed % 8)).enumerate() {
        let now = t0 + Duration::from_secs(i as u64 * 4);
        events.extend(tx.feed(chunk, now));
        events.extend(tx.poll_timeout(now));
        if events.contains(&TxEvent::Yield) {
            let _ = tx.take_handover();
            events.extend(tx.start(now));
        }
        events.clear();
    }
});

fn check(events: &[RxEvent], max_frame_bytes: usize) {
    for (i, ev) in events.iter().enumerate() {
        match ev {
            RxEvent::Reply(b) => assert!(*b == ACK || *b == NAK, "wrote {b:#04x}"),
            RxEvent::Frame { number, text, .. } => {
                assert!(*number < 8);
                assert!(text.len() <= max_frame_bytes);
            }
            RxEvent::Rejected(_) => {
                assert_eq!(events.get(i + 1), Some(&RxEvent::Reply(NAK)));
            }
            RxEvent::EndOfTransfer | RxEvent::TimedOut | RxEvent::TransferStarted => {}
        }
    }
}
