//! Capture mode on the web page: what `pocketgate capture` does (src/capture.rs), started from
//! the Devices page, watched live from a phone, stopped with a button.
//!
//! - `GET /capture[?port=…&device=…]` the page: start form, the running or last capture, its
//!   live bytes (polled by `/static/capture.js`), the detection result and the file.
//! - `POST /capture` (form: `port`, `baud` empty = detect, `seconds`) starts one.
//! - `POST /capture/{id}/stop` sets the stop flag; the capture ends within one 50 ms read.
//! - `GET /api/v1/capture/{id}?from=N` the chunks written to the file from byte `N` on, the next
//!   offset, and the result once it has ended.
//! - `GET /capture/{id}/file` the capture file (the format `pocketgate decode`/`simulate` read).
//!
//! **The port is not shared.** The serial ingest holds its port open for as long as the source
//! runs and has no pause, so a capture on the port of an *enabled* device is refused with a
//! message saying to disable the device first (and enable it again afterwards). Ports held by
//! anything else are refused by the operating system (`serialport` opens them exclusively).
//!
//! Limits: one capture at a time, at most [`MAX_DURATION`] and [`MAX_BYTES`]; the files are
//! kept in `<data_dir>/captures/`.

use super::pages::{page, serial_ports};
use super::{Ctx, Shared, WebError};
use crate::capture::{self, CaptureReport, CaptureSettings};
use crate::config::{SUPPORTED_BAUD_RATES, Transport};
use axum::Router;
use axum::extract::{Extension, Form, Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use minijinja::context;
use serde_json::{Value, json};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longest capture the page starts (the form's default is [`DEFAULT_DURATION`]).
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 60);
pub const DEFAULT_DURATION: Duration = Duration::from_secs(2 * 60);
/// A capture stops once it has written this many bytes (all baud rates).
pub const MAX_BYTES: usize = 1 << 20;
/// Most file bytes one poll returns (the page asks again from where it got to).
const MAX_POLL_BYTES: u64 = 256 << 10;

/// The running or last capture (one at a time).
#[derive(Default)]
pub struct Captures {
    current: Mutex<Option<Arc<Session>>>,
    next_id: AtomicU64,
}

impl Captures {
    fn current(&self) -> Option<Arc<Session>> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn get(&self, id: u64) -> Result<Arc<Session>, WebError> {
        self.current()
            .filter(|s| s.id == id)
            .ok_or_else(|| WebError::NotFound(format!("capture {id} (only the last one is kept)")))
    }
}

pub struct Session {
    pub id: u64,
    port: String,
    file: PathBuf,
    started: String,
    stop: AtomicBool,
    /// `None` while running.
    outcome: Mutex<Option<Result<CaptureReport, String>>>,
}

impl Session {
    fn outcome(&self) -> Option<Result<CaptureReport, String>> {
        self.outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn file_name(&self) -> String {
        self.file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// The routes (merged into the web router, behind its guard).
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/capture", get(capture_page).post(start))
        .route("/capture/{id}/stop", post(stop))
        .route("/capture/{id}/file", get(file))
        .route("/api/v1/capture/{id}", get(poll))
        .route("/static/capture.js", get(js))
}

async fn js() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/javascript; charset=utf-8",
        )],
        include_str!("capture.js"),
    )
        .into_response()
}

/// The enabled device reading `port`, if any (same path, or the same file behind a symlink
/// such as `/dev/serial/by-id/…`).
fn device_on(config: &crate::config::Config, port: &str) -> Option<String> {
    let canon = |p: &str| std::fs::canonicalize(p).ok();
    config
        .sources
        .iter()
        .filter(|s| s.enabled)
        .find(|s| match &s.transport {
            Transport::Serial(serial) => {
                serial.port == port
                    || (!serial.port.is_empty()
                        && canon(&serial.port).is_some_and(|c| Some(c) == canon(port)))
            }
            _ => false,
        })
        .map(|s| s.id.0.clone())
}

/// Percent-encoding for a query value (the `urlencode` template filter): a port path in a link.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(serde::Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    port: Option<String>,
    #[serde(default)]
    device: Option<String>,
}

pub async fn capture_page(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<PageQuery>,
) -> Result<Response, WebError> {
    let config = web.config();
    let port = q.port.unwrap_or_default();
    let busy = (!port.is_empty())
        .then(|| device_on(&config, &port))
        .flatten();
    let session = web.captures.current().map(|s| {
        let outcome = s.outcome();
        context! {
            id => s.id, port => s.port, started => s.started, file => s.file_name(),
            running => outcome.is_none(),
            report => outcome.as_ref().and_then(|o| o.as_ref().ok()).map(|r| r.to_string()),
            error => outcome.and_then(|o| o.err()),
        }
    });
    page(
        &web,
        "capture.html",
        &ctx,
        "devices",
        context! {
            port => port, device => q.device, busy => busy, session => session,
            ports => serial_ports(), bauds => SUPPORTED_BAUD_RATES,
            max_minutes => MAX_DURATION.as_secs() / 60,
            default_seconds => DEFAULT_DURATION.as_secs(), max_seconds => MAX_DURATION.as_secs(),
            max_mib => MAX_BYTES >> 20,
        },
    )
}

#[derive(serde::Deserialize)]
pub struct StartForm {
    port: String,
    /// Empty: detect.
    #[serde(default)]
    baud: String,
    #[serde(default)]
    seconds: String,
}

pub async fn start(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Form(f): Form<StartForm>,
) -> Result<Response, WebError> {
    let port = f.port.trim().to_owned();
    if port.is_empty() {
        return Err(WebError::BadRequest(
            "choose a serial port to capture".into(),
        ));
    }
    let baud = match f.baud.trim() {
        "" | "detect" => None,
        b => Some(
            b.parse::<u32>()
                .ok()
                .filter(|b| SUPPORTED_BAUD_RATES.contains(b))
                .ok_or_else(|| WebError::BadRequest(format!("{b} is not a supported baud rate")))?,
        ),
    };
    let duration = match f.seconds.trim() {
        "" => DEFAULT_DURATION,
        s => s
            .parse::<u64>()
            .ok()
            .map(Duration::from_secs)
            .filter(|d| !d.is_zero() && *d <= MAX_DURATION)
            .ok_or_else(|| {
                WebError::BadRequest(format!(
                    "the duration must be 1 to {} seconds",
                    MAX_DURATION.as_secs()
                ))
            })?,
    };
    if let Some(device) = device_on(&web.config(), &port) {
        return Err(WebError::BadRequest(format!(
            "{port} is in use by device \"{device}\": the gateway reads that port itself and \
             cannot share it. Disable the device on the Devices page, capture, then enable it \
             again."
        )));
    }
    let dir = web.config().gateway.data_dir.join("captures");
    std::fs::create_dir_all(&dir)
        .map_err(|e| WebError::Internal(format!("{}: {e}", dir.display())))?;
    let now = time::OffsetDateTime::now_utc();
    let session = {
        let mut current = web
            .captures
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(s) = current.as_ref().filter(|s| s.outcome().is_none()) {
            return Err(WebError::BadRequest(format!(
                "a capture of {} is running (one at a time): stop it first",
                s.port
            )));
        }
        let id = web.captures.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let stamp = format!(
            "{:04}{:02}{:02}-{:02}{:02}{:02}",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        );
        let session = Arc::new(Session {
            id,
            port: port.clone(),
            file: dir.join(format!("capture-{stamp}-{id}.txt")),
            started: now
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            stop: AtomicBool::new(false),
            outcome: Mutex::new(None),
        });
        *current = Some(session.clone());
        session
    };
    let mut settings = CaptureSettings::new(session.file.clone());
    settings.baud = baud;
    settings.duration = duration;
    settings.max_bytes = Some(MAX_BYTES);
    let detail = format!(
        "capture {} of {port} ({}, {} s)",
        session.id,
        baud.map_or("detect baud".to_owned(), |b| format!("{b} baud")),
        duration.as_secs()
    );
    web.audit(ctx.ip, "capture.start", detail).await;
    let s = session.clone();
    // A plain thread, not spawn_blocking: the runtime waits for blocking tasks when it shuts
    // down, and a capture may have minutes left; a process exit ends this thread at once.
    let spawned = std::thread::Builder::new()
        .name("web-capture".into())
        .spawn(move || {
            let result =
                capture::capture_until(&s.port, settings, &s.stop).map_err(|e| e.to_string());
            if let Err(e) = &result {
                tracing::warn!(port = %s.port, error = %e, "capture failed");
            }
            *s.outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
        });
    if let Err(e) = spawned {
        *session.outcome.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Err(format!("cannot start the capture thread: {e}")));
    }
    Ok(Redirect::to("/capture").into_response())
}

pub async fn stop(State(web): State<Shared>, Path(id): Path<u64>) -> Result<Response, WebError> {
    web.captures.get(id)?.stop.store(true, Ordering::Relaxed);
    Ok(Redirect::to("/capture").into_response())
}

pub async fn file(State(web): State<Shared>, Path(id): Path<u64>) -> Result<Response, WebError> {
    let s = web.captures.get(id)?;
    let bytes = tokio::fs::read(&s.file)
        .await
        .map_err(|e| WebError::NotFound(format!("{}: {e}", s.file.display())))?;
    let disposition = format!("attachment; filename=\"{}\"", s.file_name());
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}

#[derive(serde::Deserialize)]
pub struct PollQuery {
    #[serde(default)]
    from: u64,
}

/// The complete lines of the capture file from byte `from`, as chunks and baud notes, and the
/// offset to ask from next time.
fn read_from(path: &std::path::Path, from: u64) -> std::io::Result<(Vec<Value>, u64)> {
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::new();
    f.take(MAX_POLL_BYTES).read_to_end(&mut buf)?;
    // A chunk line is written whole, but may not be whole yet: stop at the last newline.
    let complete = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let text = String::from_utf8_lossy(buf.get(..complete).unwrap_or_default());
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(note) = line.strip_prefix("# ") {
            if note.starts_with("baud:") || note.starts_with("chosen-baud:") {
                out.push(json!({"note": note}));
            }
            continue;
        }
        let Ok(cap) = capture::parse_capture(line) else {
            continue;
        };
        for c in cap.chunks {
            let hex: Vec<String> = c.bytes.iter().map(|b| format!("{b:02X}")).collect();
            out.push(json!({
                "at": c.at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                "dir": c.direction.as_str(),
                "hex": hex.join(" "),
                "text": capture::render(&c.bytes),
                "len": c.bytes.len(),
            }));
        }
    }
    Ok((out, from + complete as u64))
}

pub async fn poll(
    State(web): State<Shared>,
    Path(id): Path<u64>,
    Query(q): Query<PollQuery>,
) -> Response {
    let s = match web.captures.get(id) {
        Ok(s) => s,
        Err(e) => {
            return (
                axum::http::StatusCode::NOT_FOUND,
                axum::Json(json!({"error": e.to_string()})),
            )
                .into_response();
        }
    };
    // Read the outcome first: once it is there, the file is complete.
    let outcome = s.outcome();
    let path = s.file.clone();
    let (chunks, next) = tokio::task::spawn_blocking(move || read_from(&path, q.from))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or((Vec::new(), q.from));
    let result = match &outcome {
        Some(Ok(r)) => json!({
            "protocol": r.detection.protocol.to_string(),
            "config_protocol": r.detection.protocol.config_protocol(),
            "confidence": r.detection.confidence,
            "evidence": r.detection.evidence,
            "baud": r.baud,
            "baud_scores": r.baud_scores,
            "bytes": r.bytes,
            "chunks": r.chunks,
            "summary": r.to_string(),
        }),
        _ => Value::Null,
    };
    axum::Json(json!({
        "id": s.id,
        "port": s.port,
        "started": s.started,
        "running": outcome.is_none(),
        "chunks": chunks,
        "next": next,
        "result": result,
        "error": outcome.and_then(|o| o.err()),
        "file": format!("/capture/{}/file", s.id),
        "limits": {"max_seconds": MAX_DURATION.as_secs(), "max_bytes": MAX_BYTES},
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_poll_returns_whole_lines_only_and_resumes_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.txt");
        let mut f = std::fs::File::create(&path).unwrap();
        capture::write_header(
            &mut f,
            "/dev/ttyUSB0",
            Some(9600),
            time::OffsetDateTime::UNIX_EPOCH,
        )
        .unwrap();
        capture::write_baud(&mut f, 9600, "given").unwrap();
        capture::write_chunk(
            &mut f,
            time::OffsetDateTime::UNIX_EPOCH,
            capture::Direction::Rx,
            b"\x05",
        )
        .unwrap();
        f.write_all(b"1970-01-01T00:00:01Z rx 02 31").unwrap(); // half a line
        let (items, next) = read_from(&path, 0).unwrap();
        assert_eq!(items.len(), 2, "{items:?}");
        assert_eq!(items[0]["note"], "baud: 9600 (given)");
        assert_eq!(
            (items[1]["hex"].as_str(), items[1]["text"].as_str()),
            (Some("05"), Some("<ENQ>"))
        );
        assert_eq!(
            read_from(&path, next).unwrap().0.len(),
            0,
            "the half line waits"
        );
        f.write_all(b" 48\t<STX>1H\n").unwrap();
        let (items, after) = read_from(&path, next).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["hex"], "02 31 48");
        assert_eq!(after, std::fs::metadata(&path).unwrap().len());
    }

    #[test]
    fn urlencode_keeps_path_slashes_and_escapes_the_rest() {
        assert_eq!(
            urlencode("/dev/serial/by-id/usb-FTDI_A&B 1"),
            "/dev/serial/by-id/usb-FTDI_A%26B%201"
        );
    }
}
