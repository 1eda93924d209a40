//! The command line as a user runs it.

use crate::support::*;
use std::process::Command;

#[test]
fn check_config_accepts_the_shipped_examples() {
    for f in ["config/pocketgate.toml", "config/demo.toml"] {
        let out = Command::new(BIN)
            .args(["check-config", "--config", f])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn check_config_reports_every_error_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.toml");
    std::fs::write(
        &f,
        "[gateway]\ndata_dir = \"/tmp/x\"\n\n[[sources]]\nid = \"a\"\nprotocol = \"astm\"\n\
         transport = \"serial\"\nport = \"/dev/ttyUSB0\"\nbaud = 96000\n\n\
         [[sources]]\nid = \"b\"\nprotocol = \"astm\"\ntransport = \"tcp-server\"\n\
         listen = \"0.0.0.0:5100\"\nreceive_timeout = \"30 sec\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sources[0].baud"), "{err}");
    assert!(err.contains("sources[1].receive_timeout"), "{err}");
}

#[test]
fn decode_prints_observations_of_a_framed_capture_as_json_lines() {
    let out = Command::new(BIN)
        .args([
            "decode",
            "--protocol",
            "astm",
            "tests/fixtures/astm/s14-abbott-afinion2.astm",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty());
    assert!(lines.iter().all(|o| o["test_code"].is_string()));
}

#[test]
fn decode_reads_bare_records_too() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bare.txt");
    std::fs::write(
        &f,
        "H|\\^&|||DCA Vantage\nP|1\nO|1|SMP-7||^^^ACR\nR|1|^^^ACR|12.5|mg/g|<30|N||F\nL|1|N\n",
    )
    .unwrap();
    let out = Command::new(BIN).args(["decode"]).arg(&f).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let o: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(o["sample_id"], "SMP-7");
    assert_eq!(o["value"], "12.5");
    assert_eq!(o["unit"], "mg/g");
}

#[test]
fn records_lists_a_malformed_message_with_its_parse_error() {
    // Store a message whose R record is malformed through the real ingest path, then list it.
    let addr = free_addr();
    let gw = Gateway::start(&tcp_source("gx", addr, "30s"));
    gw.wait_listening(addr);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let msg = b"H|\\^&|||X\rO|1|S1\rQQQ\xff\rL|1|N\r".to_vec();
    let report = rt.block_on(async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        pocketgate::sim::play(&mut s, &[msg], &Default::default())
            .await
            .unwrap()
    });
    assert_eq!(report.acked, vec![0]);
    let out = Command::new(BIN)
        .args(["records", "--status", "invalid", "--db"])
        .arg(gw.db())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let row: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("one invalid row")).unwrap();
    assert_eq!(row["status"], "invalid");
    assert!(
        row["parse_errors"].as_str().unwrap().contains("record 3"),
        "{row}"
    );
}

#[test]
fn decode_replays_a_capture_file_made_by_capture_mode() {
    use pocketgate::capture::{Direction, write_chunk, write_header};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("site-visit.txt");
    let bytes = crate::support::fixture("s14-abbott-afinion2.astm");
    let mut f = std::fs::File::create(&path).unwrap();
    let now = time::OffsetDateTime::now_utc();
    write_header(&mut f, "/dev/ttyUSB0", Some(9600), now).unwrap();
    // The analyzer's bytes arrive in pieces, as they do on a serial line.
    for piece in bytes.chunks(37) {
        write_chunk(&mut f, now, Direction::Rx, piece).unwrap();
    }
    drop(f);
    let out = Command::new(BIN).arg("decode").arg(&path).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let direct = Command::new(BIN)
        .args(["decode", "tests/fixtures/astm/s14-abbott-afinion2.astm"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(
        out.stdout, direct.stdout,
        "the capture decodes like the raw bytes"
    );
    assert!(!out.stdout.is_empty());
}
