//! The last log lines, kept in memory for the System page: a `tracing` writer that copies
//! every line to stderr and into a bounded ring.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Mutex;

/// Lines kept (each is also capped at [`MAX_LINE`] bytes).
pub const MAX_LINES: usize = 500;
const MAX_LINE: usize = 2048;

static RING: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());

/// The kept lines, oldest first.
pub fn tail() -> Vec<String> {
    RING.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect()
}

fn keep(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let mut ring = RING.lock().unwrap_or_else(|e| e.into_inner());
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut clean = strip_ansi(line);
        if clean.len() > MAX_LINE {
            let mut end = MAX_LINE;
            while !clean.is_char_boundary(end) {
                end -= 1;
            }
            clean.truncate(end);
        }
        if ring.len() >= MAX_LINES {
            ring.pop_front();
        }
        ring.push_back(clean);
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `tracing_subscriber::fmt().with_writer(Tee)`: stderr plus the ring.
#[derive(Clone, Copy, Default)]
pub struct Tee;

pub struct TeeWriter;

impl Write for TeeWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        keep(buf);
        std::io::stderr().write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Tee {
    type Writer = TeeWriter;
    fn make_writer(&'a self) -> TeeWriter {
        TeeWriter
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ring_keeps_clean_lines() {
        super::keep(b"\x1b[32m INFO\x1b[0m hello ring\n");
        assert!(super::tail().iter().any(|l| l == " INFO hello ring"));
    }
}
