//! Capture mode over a real pty pair (socat): the analyzer writes into one end while
//! `pocketgate::capture::capture` listens on the other.
//!
//! A pty ignores baud rates (every rate "works"), so baud *detection* cannot be tested here; it is
//! tested as a pure function (`capture::rank_bauds` / `score_text`) over synthetic noise-vs-text
//! buffers in the unit tests of `src/capture.rs`. What is tested here is that probing runs through
//! every rate on a real port without error and that every byte reaches the file.

use crate::support::{PtyPair, fixture};
use pocketgate::capture::{self, CaptureSettings, Detected, Stopped};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// Wait until the capture file contains `needle` (the port is open and the phase has begun).
fn wait_file(path: &Path, needle: &str) {
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        if std::fs::read_to_string(path).is_ok_and(|s| s.contains(needle)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "capture file never said {needle:?}:\n{}",
        std::fs::read_to_string(path).unwrap_or_default()
    );
}

/// Play `bytes` into the analyzer end in pieces, as a device at 9600 baud would dribble them.
fn play(tty: &Path, bytes: &[u8]) -> std::fs::File {
    let mut dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(tty)
        .unwrap();
    for piece in bytes.chunks(500) {
        dev.write_all(piece).unwrap();
        dev.flush().unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
    dev
}

#[test]
fn capture_records_every_genexpert_byte_from_a_pty_and_detects_astm() {
    let pty = PtyPair::new();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("genexpert.capture");
    let s01 = fixture("s01-genexpert-mtb-rif-ultra.astm");

    let port = pty.a.display().to_string();
    let settings = CaptureSettings {
        baud: Some(9600),
        duration: Duration::from_secs(30),
        out: out.clone(),
        idle_stop: Some(Duration::from_millis(800)),
        probe_for: Duration::from_millis(200),
        max_bytes: None,
    };
    let listener = std::thread::spawn(move || capture::capture(&port, settings));
    wait_file(&out, "# baud: 9600");
    // The analyzer announces itself with ENQ, then sends its (single, 4 335-byte) frame and EOT.
    let mut wire = vec![0x05];
    wire.extend_from_slice(&s01);
    wire.push(0x04);
    let _dev = play(&pty.b, &wire); // held open until the capture has ended
    let report = listener.join().unwrap().unwrap();

    assert_eq!(report.stopped, Stopped::Idle, "{report}");
    assert_eq!(report.bytes, wire.len(), "{report}");
    assert!(report.chunks >= 2, "{report}");
    assert_eq!(report.baud, 9600);
    assert!(report.baud_scores.is_empty());
    assert_eq!(capture::read_capture(&out).unwrap(), wire);
    assert_eq!(report.detection.protocol, Detected::Astm, "{report}");
    assert!(
        report
            .detection
            .evidence
            .starts_with("ENQ at byte 0, then STX 1H| frame at byte 1, with a valid checksum"),
        "{report}"
    );
    // The file is readable by a person too.
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("\t<ENQ><STX>1H|@^\\|URM-"), "{text}");
    assert!(
        text.contains(&format!("# port: {}", pty.a.display())),
        "{text}"
    );
}

#[test]
fn probing_steps_through_every_rate_then_captures_at_the_kept_one() {
    let pty = PtyPair::new();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("probe.capture");
    let port = pty.a.display().to_string();
    let settings = CaptureSettings {
        baud: None,
        duration: Duration::from_secs(30),
        out: out.clone(),
        idle_stop: Some(Duration::from_millis(800)),
        probe_for: Duration::from_millis(150),
        max_bytes: None,
    };
    let listener = std::thread::spawn(move || capture::capture(&port, settings));
    // Nothing is sent while probing: no rate hears anything, so the most common one is kept.
    wait_file(&out, "# baud: 9600 (kept)");
    let msg = crate::support::numbered_messages(1).remove(0);
    let _dev = play(&pty.b, &msg);
    let report = listener.join().unwrap().unwrap();

    assert_eq!(report.baud, 9600, "{report}");
    let rates: Vec<u32> = report.baud_scores.iter().map(|(r, _)| *r).collect();
    assert_eq!(rates, capture::PROBE_RATES);
    assert!(report.baud_scores.iter().all(|(_, s)| *s == 0.0));
    assert_eq!(capture::read_capture(&out).unwrap(), msg);
    assert_eq!(report.detection.protocol, Detected::AstmBare, "{report}");
    let text = std::fs::read_to_string(&out).unwrap();
    for rate in capture::PROBE_RATES {
        assert!(
            text.contains(&format!("# baud: {rate} (probing)")),
            "{text}"
        );
    }
    assert!(text.contains("# chosen-baud: 9600"), "{text}");
}

#[test]
fn capture_on_a_missing_port_is_an_open_error() {
    let dir = tempfile::tempdir().unwrap();
    let settings = CaptureSettings::new(dir.path().join("x.capture"));
    let err = capture::capture("/dev/pocketgate-no-such-tty", settings).unwrap_err();
    assert!(matches!(err, capture::CaptureError::Open { .. }), "{err}");
    assert!(err.to_string().contains("/dev/pocketgate-no-such-tty"));
}
