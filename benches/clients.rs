//! The load generators the benches share (included with `#[path]`): simulated analyzers speaking
//! ASTM (E1381 transfer per message), HL7 v2 over MLLP (wait for the ACK) and HTTP JSON
//! (`POST /results`, keep-alive, wait for the answer). Each connection sends its messages one
//! after the other and times each from the first byte sent to the reply's last byte.
#![allow(dead_code)] // each bench uses a different subset

use pocketgate::sim::{self, SimOptions};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Which input a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Astm,
    Hl7,
    Json,
}

impl Input {
    pub fn name(self) -> &'static str {
        match self {
            Input::Astm => "ASTM/TCP",
            Input::Hl7 => "HL7 v2/MLLP",
            Input::Json => "HTTP JSON",
        }
    }
}

/// The sample id of message `i` on connection `conn`: distinct across connections and runs.
pub fn sample_id(tag: &str, conn: usize, i: usize) -> String {
    format!("{tag}{conn:02}-{i:06}")
}

/// HbA1c value of message `i` (some ≥ 6.5 %, some below).
fn value(i: usize) -> String {
    format!("{}.{}", 5 + i % 3, i % 10)
}

/// A small Afinion-style ASTM result message (5 records).
pub fn astm_message(sample: &str, i: usize) -> Vec<u8> {
    format!(
        "H|\\^&|||Afinion 2^^A2-0001|||||||P|1|20240101120000\r\
         P|1\r\
         O|1|{sample}||^^^HbA1c|R\r\
         R|1|^^^HbA1c|{}|%|4.0-6.0|N||F||||20240101120000\r\
         L|1|N\r",
        value(i)
    )
    .into_bytes()
}

/// The same result as an HL7 v2.5.1 ORU^R01 (unframed; LOINC 4548-4 = HbA1c).
pub fn hl7_message(sample: &str, i: usize) -> Vec<u8> {
    format!(
        "MSH|^~\\&|AFINION|A2-0001|PG||20240101120000||ORU^R01|{sample}|P|2.5.1\r\
         PID|1||PT-{sample}\r\
         OBR|1||{sample}|4548-4^HbA1c^LN|||20240101120000\r\
         OBX|1|NM|4548-4^HbA1c^LN||{}|%|4.0-6.0|N|||F|||20240101120000\r",
        value(i)
    )
    .into_bytes()
}

/// The same result as the canonical JSON body (tests/fixtures/http/observations.json shape).
pub fn json_body(sample: &str, i: usize) -> Vec<u8> {
    serde_json::json!([{
        "sample_id": sample,
        "test_code": "HbA1c",
        "value": value(i),
        "unit": "%",
        "reference_range": "4.0-6.0",
        "observed_at": "2024-01-01T12:00:00",
        "device": {"vendor": "Abbott", "model": "Afinion 2", "serial": "A2-0001"}
    }])
    .to_string()
    .into_bytes()
}

/// Send one MLLP-framed message and wait for its ACK; an AE/AR/CE/CR answer is an error.
async fn mllp_round_trip(s: &mut TcpStream, msg: &[u8], buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut framed = Vec::with_capacity(msg.len() + 3);
    framed.push(0x0b);
    framed.extend_from_slice(msg);
    framed.extend_from_slice(b"\x1c\r");
    s.write_all(&framed).await?;
    buf.clear();
    let mut chunk = [0u8; 2048];
    while !buf.ends_with(b"\x1c\r") {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other("connection closed before the ACK"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(buf);
    if text.contains("MSA|AA") || text.contains("MSA|CA") {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("not accepted: {text:?}")))
    }
}

/// One keep-alive HTTP/1.1 POST; the answer's status (its body is read by Content-Length).
async fn http_post(
    s: &mut TcpStream,
    host: SocketAddr,
    body: &[u8],
    buf: &mut Vec<u8>,
) -> std::io::Result<u16> {
    let head = format!(
        "POST /results HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    let mut req = head.into_bytes();
    req.extend_from_slice(body);
    s.write_all(&req).await?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| std::io::Error::other(format!("bad status line: {head:?}")))?;
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| std::io::Error::other(format!("no content-length: {head:?}")))?;
            if buf.len() >= end + 4 + len {
                return Ok(status);
            }
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other("connection closed before the answer"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `conns` connections of `input` to `addr`, `per_conn` messages each (sample ids tagged `tag`);
/// returns every message's latency. Panics on any refused message: a bench that loses results
/// measures nothing.
pub async fn drive(
    input: Input,
    addr: SocketAddr,
    conns: usize,
    per_conn: usize,
    tag: &str,
) -> Vec<Duration> {
    let mut tasks = Vec::new();
    for c in 0..conns {
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut lat = Vec::with_capacity(per_conn);
            let mut buf = Vec::new();
            for i in 0..per_conn {
                let sample = sample_id(&tag, c, i);
                let t = Instant::now();
                match input {
                    Input::Astm => {
                        let r =
                            sim::play(&mut s, &[astm_message(&sample, i)], &SimOptions::default())
                                .await
                                .unwrap();
                        assert_eq!(r.acked, vec![0], "ASTM message {sample} not acknowledged");
                    }
                    Input::Hl7 => mllp_round_trip(&mut s, &hl7_message(&sample, i), &mut buf)
                        .await
                        .unwrap_or_else(|e| panic!("HL7 {sample}: {e}")),
                    Input::Json => {
                        let status = http_post(&mut s, addr, &json_body(&sample, i), &mut buf)
                            .await
                            .unwrap_or_else(|e| panic!("POST {sample}: {e}"));
                        assert!(
                            status == 200 || status == 201,
                            "POST {sample}: HTTP {status}"
                        );
                    }
                }
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    all
}
