//! An analyzer simulator: plays the messages of capture files as a real device would (E1381
//! sender: ENQ, frames of ≤ 240 characters, waits for each ACK, EOT), over a TCP socket or a
//! serial port / pty. Faults can be injected: corrupted checksums (the gateway must NAK and accept
//! the retransmission) and a stall in the middle of a message (the gateway must time out and
//! drop the half message). Used by the integration tests, the benchmark and `just demo`.

use crate::protocol::astm::decode;
use crate::protocol::astm::link::{self, Sender, TxEvent};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Fault injection and pacing.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Most text characters per frame (240 in the standard; GeneXpert cuts mid-field there).
    pub frame_text: usize,
    /// Corrupt the checksum of every Nth frame on its first attempt.
    pub corrupt_every: Option<usize>,
    /// Send this many frames of the first message, then go silent for `stall_for` and abandon it.
    pub stall_after_frames: Option<usize>,
    pub stall_for: Duration,
    /// Pause between messages.
    pub gap: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            frame_text: 240,
            corrupt_every: None,
            stall_after_frames: None,
            stall_for: Duration::from_secs(35),
            gap: Duration::ZERO,
        }
    }
}

/// What the device saw: which messages the gateway acknowledged completely.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SimReport {
    /// Indices (into the played list) of messages whose every frame was ACKed.
    pub acked: Vec<usize>,
    /// Messages the device gave up on, with why.
    pub failed: Vec<(usize, String)>,
    /// NAKs received (each caused a retransmission).
    pub naks: usize,
    /// Frames sent, retransmissions included.
    pub frames_sent: usize,
}

/// The messages of a capture file: raw E1381 frames are de-framed, bare records are taken as
/// they are; the text is cut into messages at each H record.
pub fn messages_from_capture(bytes: &[u8]) -> Vec<Vec<u8>> {
    let text = if bytes.contains(&link::STX) {
        link::deframe(bytes).text
    } else {
        normalise_line_ends(bytes)
    };
    decode::split_messages(&text)
        .into_iter()
        .map(|m| m.to_vec())
        .collect()
}

/// Bare-record captures use CR, CRLF or LF between records; E1394 wants CR.
fn normalise_line_ends(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut prev_cr = false;
    for &b in bytes {
        match b {
            b'\n' if prev_cr => {}
            b'\n' => out.push(b'\r'),
            _ => out.push(b),
        }
        prev_cr = b == b'\r';
    }
    out
}

/// Play `messages` one transfer (ENQ … EOT) each, in order.
pub async fn play<S>(
    io: &mut S,
    messages: &[Vec<u8>],
    opts: &SimOptions,
) -> std::io::Result<SimReport>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut report = SimReport::default();
    let mut frame_counter = 0usize;
    let mut last_corrupted: Option<Vec<u8>> = None;
    let mut buf = [0u8; 1024];
    for (index, msg) in messages.iter().enumerate() {
        if index > 0 && !opts.gap.is_zero() {
            tokio::time::sleep(opts.gap).await;
        }
        let stall_at = if index == 0 {
            opts.stall_after_frames
        } else {
            None
        };
        let mut frames_this_msg = 0usize;
        let mut sender = Sender::new(vec![msg.clone()], opts.frame_text);
        let mut events: Vec<TxEvent> = sender.start(Instant::now().into_std());
        'msg: loop {
            for ev in std::mem::take(&mut events) {
                match ev {
                    TxEvent::Send(mut bytes) => {
                        if bytes.first() == Some(&link::STX) {
                            if stall_at == Some(frames_this_msg) {
                                tokio::time::sleep(opts.stall_for).await;
                                report.failed.push((index, "stalled (injected)".into()));
                                break 'msg;
                            }
                            frames_this_msg += 1;
                            report.frames_sent += 1;
                            let retransmission = last_corrupted.as_deref() == Some(&bytes[..]);
                            if !retransmission {
                                frame_counter += 1;
                                last_corrupted = None;
                                if opts
                                    .corrupt_every
                                    .is_some_and(|n| n > 0 && frame_counter.is_multiple_of(n))
                                {
                                    last_corrupted = Some(bytes.clone());
                                    corrupt_checksum(&mut bytes);
                                }
                            }
                        }
                        let sent = match io.write_all(&bytes).await {
                            Ok(()) => io.flush().await,
                            Err(e) => Err(e),
                        };
                        if let Err(e) = sent {
                            return dropped(report, index, e);
                        }
                    }
                    TxEvent::Done => {
                        report.acked.push(index);
                        break 'msg;
                    }
                    TxEvent::Aborted(why) => {
                        report.failed.push((index, format!("{why:?}")));
                        break 'msg;
                    }
                    TxEvent::Yield => {
                        report
                            .failed
                            .push((index, "gateway bid for the line".into()));
                        break 'msg;
                    }
                }
            }
            let deadline = sender.deadline().map(Instant::from_std);
            tokio::select! {
                read = io.read(&mut buf) => {
                    let n = match read {
                        Ok(n) => n,
                        Err(e) => return dropped(report, index, e),
                    };
                    if n == 0 {
                        report.failed.push((index, "gateway closed the connection".into()));
                        return Ok(report);
                    }
                    report.naks += buf[..n].iter().filter(|b| **b == link::NAK).count();
                    events = sender.feed(&buf[..n], Instant::now().into_std());
                }
                _ = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                } => {
                    events = sender.poll_timeout(Instant::now().into_std());
                }
            }
        }
    }
    Ok(report)
}

/// The gateway's end went away mid-transfer: a reset (it died with our bytes unread) or a
/// broken pipe is what a crash looks like to an analyzer, so it is reported like a close;
/// other I/O errors are the simulator's own.
fn dropped(mut report: SimReport, index: usize, e: std::io::Error) -> std::io::Result<SimReport> {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    if matches!(e.kind(), ConnectionReset | BrokenPipe | ConnectionAborted) {
        report
            .failed
            .push((index, format!("gateway dropped the connection ({e})")));
        Ok(report)
    } else {
        Err(e)
    }
}

/// Flip the first checksum character so the frame no longer verifies.
fn corrupt_checksum(frame: &mut [u8]) {
    if let Some(pos) = frame
        .iter()
        .position(|b| *b == link::ETX || *b == link::ETB)
        .map(|p| p + 1)
        && let Some(c) = frame.get_mut(pos)
    {
        *c = if *c == b'0' { b'1' } else { b'0' };
    }
}

/// Open a serial device (or a pty of a socat pair) for the simulator: `serialport` sets the line
/// (baud, 8N1, raw), then the device is reopened as an async file.
pub async fn open_serial(path: &str, baud: u32) -> std::io::Result<tokio::fs::File> {
    let port = serialport::new(path, baud)
        .timeout(Duration::from_millis(100))
        .open()
        .map_err(std::io::Error::other)?;
    drop(port);
    tokio::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .await
}
