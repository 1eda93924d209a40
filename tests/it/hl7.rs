//! HL7 v2 over MLLP against the real binary (protocols.md §1.3, samples S7, S21–S24): the real
//! `mllp_send` peer (PyPI `hl7`), ACK modes, dedupe, malformed input and messy framing.

use crate::support::*;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const VT: u8 = 0x0B;
const FS: u8 = 0x1C;
const CR: u8 = 0x0D;

fn hl7_source(id: &str, addr: SocketAddr, receive_timeout: &str) -> String {
    format!(
        "[[sources]]\nid = \"{id}\"\nprotocol = \"hl7\"\ntransport = \"tcp-server\"\n\
         listen = \"{addr}\"\nreceive_timeout = \"{receive_timeout}\"\n"
    )
}

fn hl7_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hl7")
        .join(name)
}

/// A fixture file: one MLLP-framed message.
fn hl7_fixture(name: &str) -> Vec<u8> {
    let path = hl7_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The message inside a framed fixture (between `<VT>` and `<FS>`).
fn inner(framed: &[u8]) -> Vec<u8> {
    let start = framed.iter().position(|b| *b == VT).unwrap() + 1;
    let end = framed.iter().rposition(|b| *b == FS).unwrap();
    framed[start..end].to_vec()
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .replace('\r', "<CR>")
        .replace('\x0b', "<VT>")
        .replace('\x1c', "<FS>")
}

/// Read one framed reply (up to and including `<FS><CR>`), or fail after 10 s.
async fn read_ack(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    let read = async {
        while !got.ends_with(&[FS, CR]) {
            if s.read(&mut byte).await.unwrap() == 0 {
                break;
            }
            got.push(byte[0]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("no ACK within 10 s");
    assert!(
        got.first() == Some(&VT) && got.ends_with(&[FS, CR]),
        "not an MLLP frame: {}",
        show(&got)
    );
    show(&got)
}

async fn send(s: &mut TcpStream, bytes: &[u8]) {
    s.write_all(bytes).await.unwrap();
    s.flush().await.unwrap();
}

/// Field `n` (HL7 numbering) of the ACK's MSH segment.
fn msh_field(ack: &str, n: usize) -> String {
    let msh = ack.trim_start_matches("<VT>").split("<CR>").next().unwrap();
    // MSH-1 is the separator itself, so MSH-n is the n-1th piece after splitting.
    msh.split('|').nth(n - 1).unwrap_or_default().to_owned()
}

fn msa(ack: &str) -> String {
    ack.split("<CR>")
        .find(|s| s.starts_with("MSA|"))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn mindray_oru_r01_from_mllp_send_is_in_sqlite_before_the_ack_r01() {
    let addr = free_addr();
    let mut gw = Gateway::start(&hl7_source("bc5380", addr, "30s"));
    gw.wait_listening(addr);
    let file = hl7_path("s22-mindray-bc5380-oru-r01.hl7");
    let out = std::process::Command::new("mllp_send")
        .arg("-p")
        .arg(addr.port().to_string())
        .arg("-f")
        .arg(&file)
        .arg("127.0.0.1")
        .output()
        .expect("mllp_send is needed (python3 -m pip install hl7==0.4.5)");
    // Kill the gateway the moment the device saw the ACK: no shutdown, no flush.
    gw.kill9();
    assert!(out.status.success(), "{out:?}\n{}", gw.log());
    let ack = show(&out.stdout);
    assert_eq!(msa(&ack), "MSA|AA|1", "{ack}");
    assert_eq!(msh_field(&ack, 9), "ACK^R01", "{ack}");
    assert_eq!(msh_field(&ack, 11), "P", "{ack}");
    assert_eq!(msh_field(&ack, 12), "2.3.1", "{ack}");

    let stored = gw.reader().messages(None, 10).unwrap();
    assert_eq!(stored.len(), 1, "{}", gw.log());
    assert_eq!(stored[0].protocol, "hl7");
    assert_eq!(stored[0].parse_errors, None);
    // mllp_send strips the last segment's <CR> before framing (protocols.md §3.2).
    let text = &texts(&gw, "bc5380")[0];
    let sent = inner(&hl7_fixture("s22-mindray-bc5380-oru-r01.hl7"));
    assert_eq!(text.as_slice(), &sent[..sent.len() - 1]);
    let obs = &stored[0].observations;
    assert_eq!(obs.len(), 64);
    let wbc = obs.iter().find(|o| o.test_code == "6690-2").unwrap();
    assert_eq!(wbc.value.as_deref(), Some("9.81"));
    assert_eq!(wbc.sample_id.as_deref(), Some("20071207011"));
    assert_eq!(wbc.patient_id.as_deref(), Some("7393670"));
    assert_eq!(gw.reader().integrity_check().unwrap(), "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn genexpert_enhanced_mode_gets_ca_and_the_connection_stays_open() {
    let addr = free_addr();
    let gw = Gateway::start(&hl7_source("gx", addr, "30s"));
    gw.wait_listening(addr);
    let mut s = TcpStream::connect(addr).await.unwrap();

    send(&mut s, &hl7_fixture("s07-genexpert-oru-r32-rejections.hl7")).await;
    let ack = read_ack(&mut s).await;
    assert_eq!(
        msa(&ack),
        "MSA|CA|48c0947bfa244b46977f81ce598879a3",
        "{ack}"
    );
    assert_eq!(msh_field(&ack, 3), "LIS");
    assert_eq!(msh_field(&ack, 5), "ICU^GeneXpert^1.0");
    assert_eq!(msh_field(&ack, 9), "ACK");
    assert_eq!(
        (msh_field(&ack, 15), msh_field(&ack, 16)),
        ("NE".into(), "NE".into())
    );

    // Same connection: the S21 uploads (no MSH-15, so original mode).
    for (name, id) in [
        ("s21a-genexpert-oru-r32-coagulation.hl7", "URM-YgmvTlUA-01"),
        ("s21b-genexpert-oru-r32-quantitative.hl7", "URM-bOnaKnUA-03"),
    ] {
        send(&mut s, &hl7_fixture(name)).await;
        let ack = read_ack(&mut s).await;
        assert_eq!(msa(&ack), format!("MSA|AA|{id}"), "{ack}");
        assert_eq!(msh_field(&ack, 9), "ACK");
    }
    let stored = gw.reader().messages(None, 10).unwrap();
    assert_eq!(stored.len(), 3);
    let s21a = &stored[1].observations;
    assert_eq!(
        s21a[0].test_name.as_deref(),
        Some("Xpert HemosIL FII & FV IUO")
    );
    assert_eq!(s21a[0].device.serial.as_deref(), Some("700844"));
    let s07 = &stored[2].observations;
    assert_eq!(s07.len(), 3);
    assert_eq!(s07[0].result_status.as_deref(), Some("X"));
}

#[tokio::test(flavor = "multi_thread")]
async fn mindray_qc_ack_keeps_processing_id_q() {
    let addr = free_addr();
    let gw = Gateway::start(&hl7_source("bc5380", addr, "30s"));
    gw.wait_listening(addr);
    let mut s = TcpStream::connect(addr).await.unwrap();
    send(&mut s, &hl7_fixture("s23-mindray-bc5380-qc.hl7")).await;
    let ack = read_ack(&mut s).await;
    assert_eq!(msa(&ack), "MSA|AA|1", "{ack}");
    assert_eq!(msh_field(&ack, 9), "ACK^R01");
    assert_eq!(msh_field(&ack, 11), "Q", "{ack}");
    assert_eq!(msh_field(&ack, 18), "UNICODE");
    let stored = gw.reader().messages(None, 10).unwrap();
    let bas = stored[0]
        .observations
        .iter()
        .find(|o| o.test_code == "704-7")
        .unwrap();
    assert_eq!(bas.value, None);
    assert_eq!(
        bas.extra.get("raw_value").map(String::as_str),
        Some("***.**")
    );
    assert_eq!(
        bas.extra.get("processing_id").map(String::as_str),
        Some("Q")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn message_without_msh_is_stored_invalid_and_answered_ae() {
    let addr = free_addr();
    let gw = Gateway::start(&hl7_source("x", addr, "30s"));
    gw.wait_listening(addr);
    let mut s = TcpStream::connect(addr).await.unwrap();
    send(&mut s, b"\x0bPID|1||P-1\rOBX|1|NM|GLU||5.5\r\x1c\r").await;
    let ack = read_ack(&mut s).await;
    assert_eq!(
        msa(&ack),
        "MSA|AE||stored as invalid: segment 1 (PID): a message must start with MSH",
        "{ack}"
    );
    let stored = gw.reader().messages(None, 10).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].status, "invalid");
    assert!(
        stored[0]
            .parse_errors
            .as_deref()
            .unwrap_or_default()
            .contains("must start with MSH"),
        "{:?}",
        stored[0].parse_errors
    );
    // The connection goes on: a good message after it is accepted.
    send(&mut s, &hl7_fixture("s24-roche-cobas6800-oul-r22.hl7")).await;
    let ack = read_ack(&mut s).await;
    assert_eq!(
        msa(&ack),
        "MSA|AA|ade4147e-3687-4f1b-b825-f31c9188222c",
        "{ack}"
    );
    assert_eq!(msh_field(&ack, 18), "ASCII");
}

#[tokio::test(flavor = "multi_thread")]
async fn same_message_sent_twice_is_one_row_and_acked_both_times() {
    let addr = free_addr();
    let gw = Gateway::start(&hl7_source("bc5380", addr, "30s"));
    gw.wait_listening(addr);
    let msg = hl7_fixture("s22-mindray-bc5380-oru-r01.hl7");
    let mut s = TcpStream::connect(addr).await.unwrap();
    for _ in 0..2 {
        send(&mut s, &msg).await;
        assert_eq!(msa(&read_ack(&mut s).await), "MSA|AA|1");
    }
    drop(s);
    // A resend on a new connection (the device reconnected after a lost ACK).
    let mut s = TcpStream::connect(addr).await.unwrap();
    send(&mut s, &msg).await;
    assert_eq!(msa(&read_ack(&mut s).await), "MSA|AA|1");
    assert_eq!(texts(&gw, "bc5380"), vec![inner(&msg)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_restarted_and_oversized_frames_do_not_end_the_connection() {
    let addr = free_addr();
    let gw = Gateway::start(&format!(
        "[limits]\nmax_message_bytes = 1024\n\n{}",
        hl7_source("gx", addr, "30s")
    ));
    gw.wait_listening(addr);
    let mut s = TcpStream::connect(addr).await.unwrap();
    let s21a = inner(&hl7_fixture("s21a-genexpert-oru-r32-coagulation.hl7"));
    let s21b = inner(&hl7_fixture("s21b-genexpert-oru-r32-quantitative.hl7"));

    // Garbage, then a frame that restarts (a new <VT> before <FS>), ended by <FS> without <CR>.
    let mut bytes = b"hello\r\n\x00\xff".to_vec();
    bytes.extend([&[VT][..], b"MSH|^~\\&|half", &[VT], &s21a, &[FS]].concat());
    send(&mut s, &bytes).await;
    assert_eq!(msa(&read_ack(&mut s).await), "MSA|AA|URM-YgmvTlUA-01");

    // An over-long frame (limit 1024) is skipped; the next one is read.
    let mut big = vec![VT];
    big.extend(b"MSH|^~\\&|X||||||ORU^R01|BIG|P|2.5\r");
    big.extend(std::iter::repeat_n(b'A', 2000));
    big.extend([CR, FS, CR]);
    big.extend([&[VT][..], &s21b, &[FS, CR]].concat());
    send(&mut s, &big).await;
    assert_eq!(msa(&read_ack(&mut s).await), "MSA|AA|URM-bOnaKnUA-03");

    assert_eq!(texts(&gw, "gx"), vec![s21a, s21b]);
    let log = gw.log();
    assert!(log.contains("bytes outside MLLP frames skipped"), "{log}");
    assert!(log.contains("MLLP frame rejected"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn half_message_then_silence_is_dropped_after_the_timeout() {
    let addr = free_addr();
    let gw = Gateway::start(&hl7_source("bc5380", addr, "1s"));
    gw.wait_listening(addr);
    let msg = hl7_fixture("s23-mindray-bc5380-qc.hl7");
    let mut s = TcpStream::connect(addr).await.unwrap();
    send(&mut s, &msg[..200]).await;
    tokio::time::sleep(Duration::from_millis(1800)).await;
    gw.wait_log("partial message dropped");
    // The tail of the stalled message is garbage now; the resend is read whole.
    send(&mut s, &msg[200..]).await;
    send(&mut s, &msg).await;
    assert_eq!(msa(&read_ack(&mut s).await), "MSA|AA|1");
    assert_eq!(texts(&gw, "bc5380"), vec![inner(&msg)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_client_transport_dials_an_analyzer_that_listens() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gw = Gateway::start(&format!(
        "[[sources]]\nid = \"gx\"\nprotocol = \"hl7\"\ntransport = \"tcp-client\"\n\
         connect = \"{addr}\"\nbackoff_min = \"100ms\"\nbackoff_max = \"1s\"\n"
    ));
    let (mut s, _) = tokio::time::timeout(Duration::from_secs(20), listener.accept())
        .await
        .unwrap_or_else(|_| panic!("the gateway never dialled:\n{}", gw.log()))
        .unwrap();
    send(&mut s, &hl7_fixture("s07-genexpert-oru-r32-rejections.hl7")).await;
    assert_eq!(
        msa(&read_ack(&mut s).await),
        "MSA|CA|48c0947bfa244b46977f81ce598879a3"
    );
    assert_eq!(gw.reader().count().unwrap(), 1);
}

/// Regression (torture, hostile devices): random bytes framed by chance as MLLP messages were
/// each stored as `invalid` — thousands in seconds, enough to fill the card. Now a source keeps
/// at most its flood budget of invalid messages; the rest are refused (`AR`, not stored), and a
/// good message on the same connection is still stored and accepted.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_junk_flood_keeps_at_most_the_invalid_budget() {
    use pocketgate::store::flood::INVALID_BURST;
    let addr = free_addr();
    let gw = Gateway::start(&hl7_source("junk", addr, "30s"));
    gw.wait_listening(addr);
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut refused = 0;
    for i in 0..INVALID_BURST + 20 {
        let mut junk = vec![VT];
        junk.extend_from_slice(format!("not hl7 at all #{i}").as_bytes());
        junk.extend_from_slice(&[FS, CR]);
        send(&mut s, &junk).await;
        let ack = read_ack(&mut s).await;
        if msa(&ack).starts_with("MSA|AR|") {
            assert!(ack.contains("unparseable messages"), "{ack}");
            refused += 1;
        } else {
            assert!(msa(&ack).starts_with("MSA|AE|"), "{ack}");
        }
    }
    assert_eq!(refused, 20);
    let good = hl7_fixture("s22-mindray-bc5380-oru-r01.hl7");
    send(&mut s, &good).await;
    assert!(msa(&read_ack(&mut s).await).starts_with("MSA|AA|"));
    let rows = statuses(&gw);
    assert_eq!(rows.len(), INVALID_BURST as usize + 1);
    assert_eq!(
        rows.iter().filter(|(st, _)| st == "invalid").count(),
        INVALID_BURST as usize
    );
}
