//! An analyzer simulator talks to the running gateway over TCP and over a socat pty pair.

use crate::support::*;
use pocketgate::sim::{self, SimOptions};
use std::collections::HashSet;
use std::time::Duration;
use tokio::net::TcpStream;

async fn play_tcp(
    addr: std::net::SocketAddr,
    msgs: &[Vec<u8>],
    opts: &SimOptions,
) -> sim::SimReport {
    let mut s = TcpStream::connect(addr).await.unwrap();
    sim::play(&mut s, msgs, opts).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn message_is_in_sqlite_before_the_final_ack_over_tcp() {
    let addr = free_addr();
    let mut gw = Gateway::start(&tcp_source("gx", addr, "30s"));
    gw.wait_listening(addr);
    let msgs = sim::messages_from_capture(&fixture("s01-genexpert-mtb-rif-ultra.astm"));
    assert_eq!(msgs.len(), 1);
    let report = play_tcp(addr, &msgs, &SimOptions::default()).await;
    assert_eq!(report.acked, vec![0], "{report:?}\n{}", gw.log());
    // Kill the gateway the moment the analyzer saw the final ACK: no shutdown, no flush.
    gw.kill9();
    let stored = gw.reader().messages(None, 10).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(gw.reader().texts("gx").unwrap()[0], msgs[0]);
    let mtb = stored[0]
        .observations
        .iter()
        .find(|o| o.value.as_deref() == Some("NOT DETECTED"))
        .expect("the MTB call is stored");
    assert_eq!(mtb.sample_id.as_deref(), Some("PR25A137"));
    assert_eq!(gw.reader().integrity_check().unwrap(), "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn message_is_in_sqlite_before_the_final_ack_over_a_pty() {
    let pty = PtyPair::new();
    let mut gw = Gateway::start(&serial_source("c111", &pty.a));
    gw.wait_log("serial port open");
    // cobas c111: one record per frame, ETB on all but the last (protocols.md S12).
    let msgs = sim::messages_from_capture(&fixture("s12-roche-cobas-c111.astm"));
    let mut port = sim::open_serial(pty.b.to_str().unwrap(), 9600)
        .await
        .unwrap();
    let report = sim::play(&mut port, &msgs, &SimOptions::default())
        .await
        .unwrap();
    assert_eq!(report.acked.len(), msgs.len(), "{report:?}\n{}", gw.log());
    gw.kill9();
    assert_eq!(texts(&gw, "c111"), msgs);
}

#[tokio::test(flavor = "multi_thread")]
async fn nak_on_bad_checksum_then_retransmission_is_stored_once() {
    let addr = free_addr();
    let gw = Gateway::start(&tcp_source("gx", addr, "30s"));
    gw.wait_listening(addr);
    let msgs = numbered_messages(10);
    let opts = SimOptions {
        corrupt_every: Some(3),
        frame_text: 40,
        ..SimOptions::default()
    };
    let report = play_tcp(addr, &msgs, &opts).await;
    assert_eq!(report.acked.len(), 10, "{report:?}");
    assert!(
        report.naks >= 5,
        "every third frame was corrupted: {report:?}"
    );
    assert_eq!(texts(&gw, "gx"), msgs);
}

#[tokio::test(flavor = "multi_thread")]
async fn long_message_wraps_frame_numbers_and_reassembles_exactly() {
    let addr = free_addr();
    let gw = Gateway::start(&tcp_source("gx", addr, "30s"));
    gw.wait_listening(addr);
    let msgs = sim::messages_from_capture(&fixture("s01-genexpert-mtb-rif-ultra.astm"));
    // 4 338 bytes in 60-character frames: ~73 frames, FN wraps 7→0 nine times, cut mid-field.
    let opts = SimOptions {
        frame_text: 60,
        ..SimOptions::default()
    };
    let report = play_tcp(addr, &msgs, &opts).await;
    assert!(report.frames_sent > 64, "{report:?}");
    assert_eq!(report.acked, vec![0]);
    assert_eq!(texts(&gw, "gx"), msgs);
}

#[tokio::test(flavor = "multi_thread")]
async fn half_message_then_silence_is_dropped_after_the_timeout() {
    let addr = free_addr();
    let gw = Gateway::start(&tcp_source("gx", addr, "1s"));
    gw.wait_listening(addr);
    let msgs = numbered_messages(3);
    let opts = SimOptions {
        frame_text: 30,
        stall_after_frames: Some(2),
        stall_for: Duration::from_millis(2500),
        ..SimOptions::default()
    };
    let report = play_tcp(addr, &msgs, &opts).await;
    assert_eq!(report.acked, vec![1, 2], "{report:?}");
    assert_eq!(
        texts(&gw, "gx"),
        msgs[1..].to_vec(),
        "the stalled half message is not stored"
    );
    assert!(gw.log().contains("partial message dropped"), "{}", gw.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn resend_of_a_stored_message_is_acked_and_not_stored_twice() {
    let addr = free_addr();
    let gw = Gateway::start(&tcp_source("gx", addr, "30s"));
    gw.wait_listening(addr);
    let msgs = numbered_messages(2);
    let twice: Vec<_> = msgs.iter().chain(msgs.iter()).cloned().collect();
    let report = play_tcp(addr, &twice, &SimOptions::default()).await;
    assert_eq!(report.acked, vec![0, 1, 2, 3]);
    assert_eq!(texts(&gw, "gx"), msgs);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_analyzers_at_once_on_different_ports() {
    let [a, b] = free_addrs(2)[..] else {
        unreachable!()
    };
    let gw = Gateway::start(&format!(
        "{}\n{}",
        tcp_source("xn", a, "30s"),
        tcp_source("pentra", b, "30s")
    ));
    gw.wait_listening(a);
    gw.wait_listening(b);
    let xn = sim::messages_from_capture(&fixture("s08-sysmex-xn550.astm"));
    let pentra = sim::messages_from_capture(&fixture("s10-horiba-pentra-xlr.astm"));
    let opts = SimOptions::default();
    let (ra, rb) = tokio::join!(play_tcp(a, &xn, &opts), play_tcp(b, &pentra, &opts));
    assert_eq!(ra.acked.len(), xn.len());
    assert_eq!(rb.acked.len(), pentra.len());
    assert_eq!(texts(&gw, "xn"), xn);
    assert_eq!(texts(&gw, "pentra"), pentra);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_in_a_1000_message_stream_then_resend_stores_each_exactly_once() {
    let addr = free_addr();
    let mut gw = Gateway::start(&tcp_source("afinion", addr, "30s"));
    gw.wait_listening(addr);
    let msgs = numbered_messages(1000);

    // First run: kill -9 the gateway while the analyzer is in the middle of the stream.
    let stream_msgs = msgs.clone();
    let first = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        sim::play(&mut s, &stream_msgs, &SimOptions::default()).await
    });
    let until = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let n = pocketgate::store::Reader::open(&gw.db())
            .and_then(|r| r.count())
            .unwrap_or(0);
        if n >= 300 {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "stream too slow:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gw.kill9();
    let report = match first.await.unwrap() {
        Ok(r) => r,
        Err(_) => panic!("the simulator reports, not errors, when the gateway dies"),
    };
    let acked: HashSet<usize> = report.acked.iter().copied().collect();
    assert!(
        acked.len() >= 299 && acked.len() < 1000,
        "{} acked",
        acked.len()
    );

    // Every message the analyzer saw ACKed survived the kill.
    let after_kill: HashSet<Vec<u8>> = texts(&gw, "afinion").into_iter().collect();
    for i in &acked {
        assert!(
            after_kill.contains(&msgs[*i]),
            "ACKed message {i} lost by kill -9"
        );
    }

    // Restart; the analyzer resends everything it did not see ACKed.
    gw.spawn();
    gw.wait_listening(addr);
    let rest: Vec<Vec<u8>> = (0..msgs.len())
        .filter(|i| !acked.contains(i))
        .map(|i| msgs[i].clone())
        .collect();
    let second = play_tcp(addr, &rest, &SimOptions::default()).await;
    assert_eq!(second.acked.len(), rest.len(), "{second:?}");

    let stored = texts(&gw, "afinion");
    assert_eq!(stored.len(), 1000, "each message exactly once");
    let distinct: HashSet<&Vec<u8>> = stored.iter().collect();
    assert_eq!(distinct.len(), 1000);
    for m in &msgs {
        assert!(distinct.contains(m));
    }
    assert_eq!(gw.reader().integrity_check().unwrap(), "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_serial_port_does_not_stop_a_tcp_source() {
    let addr = free_addr();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("ttyUSB-not-plugged");
    let gw = Gateway::start(&format!(
        "{}\n{}",
        serial_source("absent", &missing),
        tcp_source("gx", addr, "30s")
    ));
    gw.wait_listening(addr);
    let msgs = numbered_messages(3);
    let report = play_tcp(addr, &msgs, &SimOptions::default()).await;
    assert_eq!(report.acked.len(), 3);
    gw.wait_log("cannot open serial port");
    assert_eq!(texts(&gw, "gx"), msgs);
}

#[tokio::test(flavor = "multi_thread")]
async fn unplugged_serial_adapter_is_reopened_when_it_comes_back() {
    let mut pty = PtyPair::new();
    let mut gw = Gateway::start(&serial_source("xp", &pty.a));
    gw.wait_log("serial port open");
    let msgs = numbered_messages(2);
    let mut port = sim::open_serial(pty.b.to_str().unwrap(), 9600)
        .await
        .unwrap();
    let first = sim::play(&mut port, &msgs[..1], &SimOptions::default())
        .await
        .unwrap();
    assert_eq!(first.acked, vec![0]);
    drop(port);

    // Unplug: the pty pair disappears under the gateway; then the same device comes back.
    pty.replug();
    gw.wait_log("serial link ended; reopening");
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while gw.log().matches("serial port open").count() < 2 {
        assert!(
            std::time::Instant::now() < until,
            "never reopened:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut port = sim::open_serial(pty.b.to_str().unwrap(), 9600)
        .await
        .unwrap();
    let second = sim::play(&mut port, &msgs[1..], &SimOptions::default())
        .await
        .unwrap();
    assert_eq!(second.acked, vec![0], "{second:?}\n{}", gw.log());
    gw.kill9();
    assert_eq!(texts(&gw, "xp"), msgs);
}
