//! The simulated analyzers of the torture run: each sends its numbered results one at a time and,
//! like a real device, sends again whatever it did not see acknowledged.

use pocketgate::sim::{self, SimOptions};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How the analyzer talks to the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// ASTM E1381/E1394 over TCP (`pocketgate::sim`, the E1381 sender).
    Astm,
    /// HL7 v2 ORU^R01 over MLLP; acknowledged by `MSA|AA`.
    Hl7,
    /// Canonical JSON POSTed to `/results`; acknowledged by 201 (or 200 for a duplicate).
    Http,
}

/// One result: the sample id (unique within the analyzer) and the bytes sent for it.
#[derive(Debug, Clone)]
pub struct Sample {
    pub id: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Analyzer {
    pub source: String,
    pub wire: Wire,
    pub addr: SocketAddr,
    pub samples: Vec<Sample>,
}

/// What one analyzer saw.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Sample ids whose result the gateway acknowledged.
    pub acked: Vec<String>,
    /// Sends, retransmissions after a failure included.
    pub attempts: usize,
    /// Sends that ended without an acknowledgement (connection refused/reset, timeout, NAK).
    pub unacked_attempts: usize,
}

impl Analyzer {
    pub fn new(source: &str, wire: Wire, addr: SocketAddr, count: usize) -> Analyzer {
        let samples = (0..count).map(|i| sample(wire, i)).collect();
        Analyzer {
            source: source.to_string(),
            wire,
            addr,
            samples,
        }
    }

    /// Send every sample until it is acknowledged (or `give_up` passes), `gap` between results.
    pub async fn run(self, gap: Duration, give_up: Duration) -> Outcome {
        let until = tokio::time::Instant::now() + give_up;
        let mut out = Outcome::default();
        for s in &self.samples {
            tokio::time::sleep(gap).await;
            loop {
                out.attempts += 1;
                let sent = tokio::time::timeout(Duration::from_secs(20), self.send(s)).await;
                if matches!(sent, Ok(Ok(true))) {
                    out.acked.push(s.id.clone());
                    break;
                }
                out.unacked_attempts += 1;
                if tokio::time::Instant::now() > until {
                    return out;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        out
    }

    /// One attempt: `Ok(true)` when the gateway acknowledged the result.
    pub async fn send(&self, s: &Sample) -> std::io::Result<bool> {
        let mut io = TcpStream::connect(self.addr).await?;
        match self.wire {
            Wire::Astm => {
                let report = sim::play(
                    &mut io,
                    std::slice::from_ref(&s.bytes),
                    &SimOptions::default(),
                )
                .await?;
                Ok(report.acked == [0])
            }
            Wire::Hl7 => {
                let mut framed = vec![0x0b];
                framed.extend_from_slice(&s.bytes);
                framed.extend_from_slice(&[0x1c, 0x0d]);
                io.write_all(&framed).await?;
                let reply = read_until(&mut io, b"\x1c\x0d").await?;
                Ok(contains(&reply, b"MSA|AA|"))
            }
            Wire::Http => {
                let head = format!(
                    "POST /results HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    self.addr,
                    s.bytes.len()
                );
                io.write_all(head.as_bytes()).await?;
                io.write_all(&s.bytes).await?;
                let mut reply = Vec::new();
                io.read_to_end(&mut reply).await?;
                Ok(reply.starts_with(b"HTTP/1.1 201") || reply.starts_with(b"HTTP/1.1 200"))
            }
        }
    }
}

async fn read_until(io: &mut TcpStream, end: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.ends_with(end) {
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(buf)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Result `i` of an analyzer: an HbA1c value, sample ids `A00000`, `H00000`, `J00000`… so that a
/// stored message can be found again by its id (`marker`).
fn sample(wire: Wire, i: usize) -> Sample {
    let value = format!("{}.{}", 5 + i % 7, i % 10);
    let (id, bytes) = match wire {
        Wire::Astm => {
            let id = format!("A{i:05}");
            let text = format!(
                "H|\\^&|||Afinion 2^^A2-1234|||||||P|1|20240101120000\rP|1\r\
                 O|1|{id}||^^^HbA1c|R\rR|1|^^^HbA1c|{value}|%||||F||||20240101120000\rL|1|N\r"
            );
            (id, text.into_bytes())
        }
        Wire::Hl7 => {
            let id = format!("H{i:05}");
            let text = format!(
                "MSH|^~\\&|BC-5380|Mindray|||20240101120000||ORU^R01|C{i}|P|2.3.1\r\
                 PID|1||PT{i:05}\rOBR|1||{id}|^^^HbA1c\r\
                 OBX|1|NM|HbA1c^Hemoglobin A1c||{value}|%|4.0-6.0|N|||F|||20240101120000\r"
            );
            (id, text.into_bytes())
        }
        Wire::Http => {
            let id = format!("J{i:05}");
            let body = serde_json::json!([{
                "sample_id": id,
                "test_code": "HbA1c",
                "value": value,
                "unit": "%",
                "observed_at": "2024-01-01T12:00:00",
            }]);
            (id, body.to_string().into_bytes())
        }
    };
    Sample { id, bytes }
}

/// How the sample id appears in the stored raw bytes (exactly once per message).
pub fn marker(wire: Wire, id: &str) -> Vec<u8> {
    match wire {
        Wire::Astm | Wire::Hl7 => format!("|{id}|").into_bytes(),
        Wire::Http => format!("\"{id}\"").into_bytes(),
    }
}

/// How many times `needle` occurs in `hay`.
pub fn occurrences(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}
