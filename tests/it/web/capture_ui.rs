//! Capture mode from the web page over a real socat pty pair: a fake analyzer writes a real
//! Cobas c111 ASTM transfer into one end while the gateway captures the other, driven over
//! HTTP with a session and CSRF tokens like a phone would.

use super::*;
use std::fs::File;

/// Poll the capture's JSON until `done` says so; returns every chunk seen and the last answer.
fn poll_until(
    b: &mut Browser,
    id: u64,
    seen: &mut Vec<serde_json::Value>,
    from: &mut u64,
    mut done: impl FnMut(&[serde_json::Value], &serde_json::Value) -> bool,
) -> serde_json::Value {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let r = b.get(&format!("/api/v1/capture/{id}?from={from}"));
        assert_eq!(r.status, 200, "{r:?}");
        let j: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        seen.extend(j["chunks"].as_array().unwrap().iter().cloned());
        *from = j["next"].as_u64().unwrap();
        if done(seen, &j) {
            return j;
        }
        assert!(Instant::now() < until, "gave up polling; last answer {j}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The bytes of the `rx` chunks seen, from their hex.
fn rx_bytes(seen: &[serde_json::Value]) -> Vec<u8> {
    seen.iter()
        .filter(|c| c["dir"] == "rx")
        .flat_map(|c| {
            c["hex"]
                .as_str()
                .unwrap()
                .split(' ')
                .map(|h| u8::from_str_radix(h, 16).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn capture_from_the_web_page_shows_live_astm_bytes_stops_and_detects_astm() {
    let analyzer = PtyPair::new();
    // A configured, enabled device reads another port: capturing that one is refused.
    let in_use = PtyPair::new();
    let (gw, addr) = web_gateway(&serial_source("c111", &in_use.a));
    let mut anon = Browser::new(addr);
    let mut b = Browser::new(addr);
    let csrf = b.set_password();

    let devices = b.get("/devices");
    // Temp paths need no escaping ('/' is kept): the link is the path itself.
    let link = format!("/capture?port={}", in_use.a.display());
    assert!(devices.body.contains(&link), "{}", devices.body);
    assert!(devices.body.contains("Capture an unknown port"));
    let page = b.get(&link);
    assert_eq!(page.status, 200, "{page:?}");
    assert!(
        page.body.contains("is read by device \"c111\""),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("at most 10 minutes and 1 MiB"),
        "{}",
        page.body
    );
    let r = b.post_form(
        "/capture",
        &[("csrf", &csrf), ("port", &in_use.a.display().to_string())],
    );
    assert_eq!(r.status, 422, "{r:?}");
    assert!(r.body.contains("in use by device"), "{}", r.body);

    let port = analyzer.a.display().to_string();
    let start = [
        ("csrf", csrf.as_str()),
        ("port", port.as_str()),
        ("baud", "9600"),
        ("seconds", "60"),
    ];
    assert_eq!(b.post_form("/capture", &start[1..]).status, 403, "no CSRF");
    let r = anon.post_form("/capture", &start);
    assert!(r.status == 303 && r.location() == "/login", "{r:?}");
    let r = b.post_form("/capture", &start);
    assert_eq!((r.status, r.location()), (303, "/capture"), "{r:?}");
    let page = b.get("/capture");
    assert!(page.body.contains("data-id=\"1\""), "{}", page.body);
    assert!(page.body.contains("/static/capture.js"));
    assert_eq!(b.get("/static/capture.js").status, 200);

    // Not logged in: no bytes, no file.
    assert_eq!(anon.get("/api/v1/capture/1").status, 401);
    assert_eq!(anon.get("/capture/1/file").location(), "/login");
    // One at a time.
    let r = b.post_form("/capture", &start);
    assert_eq!(r.status, 422, "{r:?}");
    assert!(r.body.contains("one at a time"), "{}", r.body);

    let (mut seen, mut from) = (Vec::new(), 0);
    poll_until(&mut b, 1, &mut seen, &mut from, |seen, _| {
        seen.iter().any(|c| c["note"] == "baud: 9600 (given)")
    });
    let mut wire = vec![0x05];
    wire.extend_from_slice(&fixture("s12-roche-cobas-c111.astm"));
    wire.push(0x04);
    let mut dev: File = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&analyzer.b)
        .unwrap();
    for piece in wire.chunks(100) {
        dev.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let j = poll_until(&mut b, 1, &mut seen, &mut from, |seen, _| {
        rx_bytes(seen).len() >= wire.len()
    });
    assert_eq!(j["running"], true, "still listening: {j}");
    assert_eq!(rx_bytes(&seen), wire, "every byte, in order");
    let first = seen.iter().find(|c| c["dir"] == "rx").unwrap();
    assert!(
        first["text"].as_str().unwrap().starts_with("<ENQ>"),
        "{first}"
    );
    assert!(first["at"].as_str().unwrap().ends_with('Z'), "{first}");
    assert!(
        seen.iter()
            .any(|c| c["text"].as_str().is_some_and(|t| t.contains("H|\\^&"))),
        "the header record is readable"
    );

    let r = anon.post_form("/capture/1/stop", &[("csrf", &csrf)]);
    assert!(r.status == 303 && r.location() == "/login", "{r:?}");
    assert_eq!(b.post_form("/capture/1/stop", &[]).status, 403, "no CSRF");
    let r = b.post_form("/capture/1/stop", &[("csrf", &csrf)]);
    assert_eq!((r.status, r.location()), (303, "/capture"), "{r:?}");
    let j = poll_until(&mut b, 1, &mut seen, &mut from, |_, j| {
        j["running"] == false
    });
    assert!(j["error"].is_null(), "{j}");
    let result = &j["result"];
    assert!(
        result["protocol"].as_str().unwrap().starts_with("ASTM"),
        "{j}"
    );
    assert_eq!(result["config_protocol"], "astm", "{j}");
    assert_eq!(result["baud"], 9600, "{j}");
    assert_eq!(result["bytes"], wire.len(), "{j}");
    assert!(
        result["summary"]
            .as_str()
            .unwrap()
            .contains("asked to stop"),
        "{j}"
    );
    let page = b.get("/capture");
    assert!(page.body.contains("Protocol: ASTM"), "{}", page.body);

    let file = b.get("/capture/1/file");
    assert_eq!(file.status, 200, "{file:?}");
    assert!(
        file.header("content-disposition")
            .is_some_and(|d| d.starts_with("attachment")),
        "{file:?}"
    );
    assert!(
        file.body.starts_with("# pocketgate capture v1\n"),
        "{}",
        file.body
    );
    let parsed = pocketgate::capture::parse_capture(&file.body).unwrap();
    assert_eq!(
        parsed.device_bytes(),
        wire,
        "the file replays the analyzer's bytes"
    );
    let on_disk = std::fs::read_dir(gw.dir.path().join("data/captures"))
        .unwrap()
        .count();
    assert_eq!(on_disk, 1);
    let audit = b.get("/api/v1/audit").body;
    assert!(audit.contains("capture.start"), "{audit}");
    assert_eq!(b.get("/api/v1/capture/2").status, 404);

    // A port that is not there: the capture ends at once and says why.
    let r = b.post_form(
        "/capture",
        &[("csrf", &csrf), ("port", "/dev/pocketgate-no-such-tty")],
    );
    assert_eq!((r.status, r.location()), (303, "/capture"), "{r:?}");
    let (mut seen, mut from) = (Vec::new(), 0);
    let j = poll_until(&mut b, 2, &mut seen, &mut from, |_, j| {
        j["running"] == false
    });
    assert!(
        j["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot open serial port")),
        "{j}"
    );
    assert!(j["result"].is_null() && seen.is_empty(), "{j}");
    assert_eq!(
        b.get("/api/v1/capture/1").status,
        404,
        "only the last is kept"
    );
}
