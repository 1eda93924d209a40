//! Capture mode: what a technician runs on a site visit when an analyzer's protocol or baud rate
//! is unknown (`pocketgate capture --port /dev/ttyUSB0`).
//!
//! Three layers, the pure ones first:
//!
//! - [`detect`] and [`score_text`] are PURE: bytes in, a guess out. [`detect`] names the protocol
//!   from its first bytes (protocols.md §1.1–§1.5: ASTM `<ENQ>` then `<STX>1H|`, bare E1394 records
//!   `H|\^&`, HL7 `<VT>MSH|`, POCT1 `<?xml` / `<HEL.R01>`, printer text) and checks what it can
//!   cheaply with the project's own decoders (ASTM frame checksums through
//!   [`crate::protocol::astm::link::deframe`]). [`score_text`] and [`rank_bauds`] pick a baud rate:
//!   bytes read at the wrong rate are framing errors and look like noise (0x00, 0xFF, high bytes).
//! - The capture file format ([`write_header`], [`write_baud`], [`write_chosen_baud`],
//!   [`write_chunk`], and their inverse [`read_capture`] / [`parse_capture`]).
//! - [`capture`]: the I/O. It opens the port with `serialport` (as `ingest::serial` does), reads
//!   until the duration is over or the line has been idle, and writes every chunk to the file as
//!   it arrives, flushed, so a pulled cable loses nothing already heard.
//!
//! **Listen only.** Capture never writes a byte to the port: it does not answer ENQ with ACK, does
//! not ACK HL7 or POCT1 messages. An ASTM analyzer will therefore usually send `<ENQ>`, wait 15 s,
//! retry and give up (protocols.md §1.1 timeouts); a capture of those ENQs is itself the answer to
//! "is it ASTM, and at which baud rate?". To capture whole messages from an analyzer that waits
//! for ACKs, use a passive tap (a Y cable) on a working link, or configure a source and read the
//! raw bytes the gateway stores. The operating system may still set the modem control lines
//! (DTR/RTS) when the port is opened; no data is sent.
//!
//! # Capture file format (text, UTF-8, one line per record)
//!
//! ```text
//! # pocketgate capture v1
//! # port: /dev/ttyUSB0
//! # settings: 8 data bits, no parity, 1 stop bit, no flow control; listen only
//! # started: 2025-03-04T10:15:00.123456Z
//! # baud: 9600
//! 2025-03-04T10:15:02.5Z rx 05<TAB><ENQ>
//! 2025-03-04T10:15:02.61Z rx 02 31 48 7C 40 5E 5C 7C<TAB><STX>1H|@^\|
//! # chosen-baud: 9600 (9600=0.99 19200=0.08 …)
//! ```
//!
//! (`<TAB>` stands for one real TAB character.)
//!
//! - `#` lines are comments, except two directives: `# baud: N` says that the chunks after it
//!   were read at N baud, and `# chosen-baud: N` records which rate baud detection kept.
//! - A chunk line is `<RFC 3339 UTC timestamp> <direction> <hex bytes, space-separated>`, then a
//!   TAB and a readable rendering (`<STX>1H|\^&…<CR>`). The hex is the truth; the rendering is for
//!   people and is ignored when reading (it never contains a TAB: TAB is rendered `<TAB>`).
//! - Direction `rx` is a byte from the device. Capture writes only `rx`; `tx` is reserved for a
//!   tap that records both directions and is skipped when reading.
//!
//! [`read_capture`] turns a capture file back into the raw bytes the device sent, the format
//! `pocketgate decode` and `pocketgate simulate` read: the `rx` chunks in order, and if baud
//! detection ran (`# chosen-baud:` present), only the chunks read at the chosen rate (those read
//! at the wrong rates are noise, kept in the file for the record). A file written with a fixed
//! baud rate, or cut off while probing, gives every `rx` byte.

use crate::config::SUPPORTED_BAUD_RATES;
use crate::protocol::astm::link::{self, ENQ, EOT, ETB, ETX, STX};
use crate::protocol::hl7::mllp::{FS, VT};
use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Rates tried when the baud rate is not given, most common first (ties go to the earlier one).
pub const PROBE_RATES: [u32; 8] = [9600, 19200, 38400, 115200, 4800, 2400, 1200, 57600];
/// How long each rate is listened to while probing, unless the settings say otherwise.
pub const DEFAULT_PROBE_FOR: Duration = Duration::from_secs(5);
/// A rate must have heard at least this many bytes for its score to beat one that heard more:
/// two stray bytes that happen to be printable prove nothing.
pub const MIN_PROBE_BYTES: usize = 8;
/// First line of every capture file.
pub const FILE_MAGIC: &str = "# pocketgate capture v1";

// Control bytes that are not in `astm::link` or `hl7::mllp`.
const RS: u8 = 0x1E;
const GS: u8 = 0x1D;
const ESC: u8 = 0x1B;
const FF: u8 = 0x0C;
const TAB: u8 = 0x09;

// ---------------------------------------------------------------------------------------------
// Detection (pure)
// ---------------------------------------------------------------------------------------------

/// A protocol [`detect`] can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// ASTM E1381 framing (`<STX>FN text <ETX|ETB> C1 C2`), usually after `<ENQ>`.
    Astm,
    /// E1394 records (`H|\^&…<CR>P|…`) without E1381 framing (vendor examples, "ASTM without
    /// checksum", badly stripped captures).
    AstmBare,
    /// HL7 v2 in MLLP blocks (`<VT>MSH|…<FS><CR>`).
    Hl7Mllp,
    /// HL7 v2 segments without MLLP framing.
    Hl7Bare,
    /// POCT1-A2 XML messages (`<HEL.R01>`, `<?xml …>`).
    Poct1,
    /// Readable text with no protocol markers: a printer port (e.g. Arkray Spotchem EL).
    PrinterText,
    /// Nothing recognised (no bytes, noise, or a binary protocol).
    Unknown,
}

impl Detected {
    /// The `protocol = "…"` of a source block that would read this, if the gateway has one.
    pub fn config_protocol(self) -> Option<&'static str> {
        match self {
            Detected::Astm => Some("astm"),
            Detected::Hl7Mllp => Some("hl7"),
            Detected::Poct1 => Some("poct1"),
            Detected::AstmBare | Detected::Hl7Bare | Detected::PrinterText | Detected::Unknown => {
                None
            }
        }
    }
}

impl fmt::Display for Detected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Detected::Astm => "ASTM E1381/E1394 (framed, with checksums)",
            Detected::AstmBare => "ASTM E1394 records without E1381 framing",
            Detected::Hl7Mllp => "HL7 v2 over MLLP",
            Detected::Hl7Bare => "HL7 v2 without MLLP framing",
            Detected::Poct1 => "POCT1-A2 XML",
            Detected::PrinterText => "plain printer text",
            Detected::Unknown => "unknown",
        })
    }
}

/// What [`detect`] concluded and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub protocol: Detected,
    /// 0.0 (a guess) … 1.0 (verified, e.g. every frame checksum matches).
    pub confidence: f32,
    /// One sentence a technician can check against the capture file, with byte offsets.
    pub evidence: String,
}

impl fmt::Display for Detection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (confidence {:.0}%): {}",
            self.protocol,
            self.confidence * 100.0,
            self.evidence
        )
    }
}

/// Name the protocol of captured bytes. Every recogniser runs; the most confident wins (the
/// earlier evidence on a tie). Never panics, whatever the bytes.
pub fn detect(bytes: &[u8]) -> Detection {
    if bytes.is_empty() {
        return Detection {
            protocol: Detected::Unknown,
            confidence: 0.0,
            evidence: "no bytes were captured".into(),
        };
    }
    let candidates = [
        detect_astm_framed(bytes),
        detect_mllp(bytes),
        detect_poct1(bytes),
        detect_astm_bare(bytes),
        detect_hl7_bare(bytes),
        detect_printer_text(bytes),
    ];
    let mut best: Option<(Detection, usize)> = None;
    for (d, at) in candidates.into_iter().flatten() {
        let better = match &best {
            None => true,
            Some((b, b_at)) => {
                d.confidence > b.confidence || (d.confidence == b.confidence && at < *b_at)
            }
        };
        if better {
            best = Some((d, at));
        }
    }
    best.map(|(d, _)| d).unwrap_or_else(|| Detection {
        protocol: Detected::Unknown,
        confidence: 0.0,
        evidence: format!(
            "{} byte(s), {:.0}% readable text, no ASTM, HL7, POCT1 or printer-text markers \
             (a wrong baud rate, 7-bit data read as 8-bit, or a binary protocol)",
            bytes.len(),
            score_text(bytes) * 100.0
        ),
    })
}

/// Share (0.0–1.0) of bytes that can occur in the protocols a clinic analyzer speaks: printable
/// ASCII, CR, LF, TAB, form feed, and the control bytes of E1381, MLLP and POCT1 (STX, ETX, EOT,
/// ENQ, ACK, NAK, ETB, VT, FS, GS, RS, ESC). Bytes read at the wrong baud rate are framing
/// errors: mostly 0x00, 0xFF, other control bytes and high bytes, which all count against.
/// High (Latin-1) bytes count against too: they are rare in real traffic. Empty input scores 0.
pub fn score_text(bytes: &[u8]) -> f32 {
    if bytes.is_empty() {
        return 0.0;
    }
    let good = bytes.iter().filter(|b| is_texty(**b)).count();
    good as f32 / bytes.len() as f32
}

fn is_texty(b: u8) -> bool {
    matches!(
        b,
        0x20..=0x7E
            | b'\r'
            | b'\n'
            | TAB
            | FF
            | STX
            | ETX
            | EOT
            | ENQ
            | link::ACK
            | link::NAK
            | ETB
            | VT
            | FS
            | GS
            | RS
            | ESC
    )
}

/// The outcome of baud-rate probing: a score per rate tried, and the rate to keep.
#[derive(Debug, Clone, PartialEq)]
pub struct BaudChoice {
    /// The rate whose bytes look most like text; `None` if no rate heard anything.
    pub best: Option<u32>,
    /// `(rate, score_text)` for every rate, in the order given (0.0 if nothing was heard).
    pub scores: Vec<(u32, f32)>,
}

/// Pick the baud rate whose bytes score best as text (pure: the I/O in [`capture`] feeds it what
/// each rate heard). Rates that heard at least [`MIN_PROBE_BYTES`] bytes are preferred over rates
/// that heard fewer; among those, the highest score wins and a tie goes to the earlier rate.
pub fn rank_bauds(heard: &[(u32, &[u8])]) -> BaudChoice {
    let scores: Vec<(u32, f32)> = heard.iter().map(|(r, b)| (*r, score_text(b))).collect();
    let mut best: Option<(u32, f32, bool)> = None;
    for ((rate, bytes), (_, score)) in heard.iter().zip(&scores) {
        if bytes.is_empty() {
            continue;
        }
        let enough = bytes.len() >= MIN_PROBE_BYTES;
        let better = match best {
            None => true,
            Some((_, s, e)) => (enough && !e) || (enough == e && *score > s),
        };
        if better {
            best = Some((*rate, *score, enough));
        }
    }
    BaudChoice {
        best: best.map(|(r, _, _)| r),
        scores,
    }
}

/// `needle` at or after `from`.
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// An E1394 record type letter (protocols.md §1.2 table).
fn is_record_type(b: u8) -> bool {
    matches!(
        b,
        b'H' | b'P' | b'O' | b'R' | b'C' | b'Q' | b'M' | b'S' | b'L'
    )
}

/// A delimiter character: printable, not a letter, digit or space (GeneXpert allows 33–47,
/// 58–64, 91–96, 123–126; protocols.md §1.2).
fn is_delimiter(b: u8) -> bool {
    b.is_ascii_graphic() && !b.is_ascii_alphanumeric()
}

/// `H` + field delimiter + 2–3 more delimiters + field delimiter again, i.e. `H|\^&|` or `H|\^|`.
fn is_header_at(bytes: &[u8], i: usize) -> bool {
    let Some(&[h, f, ..]) = bytes.get(i..i + 2) else {
        return false;
    };
    if h != b'H' || !is_delimiter(f) {
        return false;
    }
    let rest = bytes.get(i + 2..).unwrap_or_default();
    rest.iter()
        .take(4)
        .position(|b| *b == f)
        .is_some_and(|p| p >= 2 && rest.iter().take(p).all(|b| is_delimiter(*b)))
}

/// Printable rendering of a few bytes for evidence sentences.
fn show(bytes: &[u8]) -> String {
    let mut s = String::new();
    render_into(&mut s, bytes);
    s
}

fn detect_astm_framed(bytes: &[u8]) -> Option<(Detection, usize)> {
    // `<STX> FN(0–7) record-type delimiter`, e.g. `<STX>1H|`.
    let stx = (0..bytes.len()).find(|&i| {
        matches!(bytes.get(i..i + 4), Some(&[STX, n, t, d])
            if (b'0'..=b'7').contains(&n) && is_record_type(t) && is_delimiter(d))
    });
    let enq = bytes.iter().position(|b| *b == ENQ);
    let Some(stx) = stx else {
        // A link test (`ENQ … EOT`, no frames) or an analyzer bidding and getting no ACK.
        let enq = enq?;
        let n = bytes.iter().filter(|b| **b == ENQ).count();
        let eot = bytes.iter().filter(|b| **b == EOT).count();
        let share = n as f32 / bytes.len() as f32;
        if share < 0.3 {
            return None;
        }
        return Some((
            Detection {
                protocol: Detected::Astm,
                confidence: 0.6,
                evidence: format!(
                    "ENQ at byte {enq} ({n} ENQ, {eot} EOT, no frames): an ASTM E1381 sender \
                     bidding for the line; it sends frames only after an ACK, which capture \
                     (listen only) never sends"
                ),
            },
            enq,
        ));
    };
    let head = show(bytes.get(stx + 1..stx + 4).unwrap_or_default());
    let d = link::deframe(bytes.get(stx..).unwrap_or_default());
    let frames_seen = d.frames.max(1);
    let good = d.frames.saturating_sub(d.bad_checksums);
    let prefix = match enq {
        Some(e) if e < stx => format!("ENQ at byte {e}, then STX {head} frame at byte {stx}"),
        _ => format!("STX {head} frame at byte {stx}"),
    };
    let (confidence, checks) = if d.frames > 0 && d.bad_checksums == 0 {
        let what = if d.frames == 1 {
            "with a valid checksum".to_string()
        } else {
            format!("{} frames, all checksums valid", d.frames)
        };
        (if enq.is_some() { 0.99 } else { 0.97 }, what)
    } else if good > 0 {
        (
            0.85,
            format!(
                "{good} of {frames_seen} frame checksums valid (line noise, or a device that \
                 checksums another encoding)"
            ),
        )
    } else if d.frames > 0 {
        (
            0.7,
            format!("no frame checksum verifies ({} frame(s))", d.frames),
        )
    } else {
        (0.6, "the frame never ends (no ETX/ETB yet)".to_string())
    };
    Some((
        Detection {
            protocol: Detected::Astm,
            confidence,
            evidence: format!("{prefix}, {checks}"),
        },
        enq.map_or(stx, |e| e.min(stx)),
    ))
}

fn detect_mllp(bytes: &[u8]) -> Option<(Detection, usize)> {
    let vt = find(bytes, &[VT, b'M', b'S', b'H'], 0)?;
    let fs = bytes
        .get(vt..)
        .and_then(|r| r.iter().position(|b| *b == FS))
        .map(|p| p + vt);
    let messages = bytes
        .windows(4)
        .filter(|w| *w == [VT, b'M', b'S', b'H'])
        .count();
    let (confidence, end) = match fs {
        Some(fs) => (
            0.97,
            format!("FS end block at byte {fs} ({messages} message(s))"),
        ),
        None => (0.8, "no FS end block yet".to_string()),
    };
    let msh = show(bytes.get(vt + 1..vt + 9).unwrap_or_default());
    Some((
        Detection {
            protocol: Detected::Hl7Mllp,
            confidence,
            evidence: format!("VT at byte {vt}, then {msh} segment, {end}"),
        },
        vt,
    ))
}

/// `<XXX.Rnn` (a POCT1-A2 message root such as `HEL.R01`, `OBS.R02`), the position of `<`.
fn poct1_root(bytes: &[u8]) -> Option<(usize, String)> {
    (0..bytes.len()).find_map(|i| match bytes.get(i..i + 8) {
        Some(&[b'<', a, b, c, b'.', r, d1, d2])
            if [a, b, c].iter().all(u8::is_ascii_uppercase)
                && r.is_ascii_uppercase()
                && d1.is_ascii_digit()
                && d2.is_ascii_digit() =>
        {
            Some((i, show(bytes.get(i + 1..i + 8).unwrap_or_default())))
        }
        _ => None,
    })
}

fn detect_poct1(bytes: &[u8]) -> Option<(Detection, usize)> {
    let xml = find(bytes, b"<?xml", 0);
    let root = poct1_root(bytes);
    let hdr = find(bytes, b"<HDR", 0).is_some() || find(bytes, b"HDR.control_id", 0).is_some();
    let (confidence, at, evidence) = match (root, xml) {
        (Some((at, name)), _) if hdr => (
            0.95,
            at,
            format!("<{name}> element at byte {at} with an HDR block: a POCT1-A2 message"),
        ),
        (Some((at, name)), _) => (
            0.8,
            at,
            format!("<{name}> element at byte {at} (POCT1-A2 message name), no HDR block yet"),
        ),
        (None, Some(at)) if hdr => (
            0.85,
            at,
            format!("<?xml at byte {at} and an HDR block, but no known POCT1 message name"),
        ),
        (None, Some(at)) => (
            0.4,
            at,
            format!("<?xml at byte {at}: XML, but no POCT1-A2 elements"),
        ),
        (None, None) => return None,
    };
    Some((
        Detection {
            protocol: Detected::Poct1,
            confidence,
            evidence,
        },
        at,
    ))
}

/// Lines of `bytes` split on CR and LF, with their offsets, empty ones dropped.
fn lines(bytes: &[u8]) -> Vec<(usize, &[u8])> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        if matches!(*b, b'\r' | b'\n') {
            if i > start {
                out.push((start, bytes.get(start..i).unwrap_or_default()));
            }
            start = i + 1;
        }
    }
    if bytes.len() > start {
        out.push((start, bytes.get(start..).unwrap_or_default()));
    }
    out
}

fn detect_astm_bare(bytes: &[u8]) -> Option<(Detection, usize)> {
    let lines = lines(bytes);
    // The header line: `H|\^&|` at the line start, or after a frame-number digit left behind by
    // a capture that stripped the framing (`1H|@^\|`, protocols.md S2 and S18).
    let (idx, at, skip) = lines.iter().enumerate().find_map(|(n, (off, l))| {
        if is_header_at(l, 0) {
            Some((n, *off, 0))
        } else if l.first().is_some_and(u8::is_ascii_digit) && is_header_at(l, 1) {
            Some((n, *off + 1, 1))
        } else {
            None
        }
    })?;
    let field = lines.get(idx).and_then(|(_, l)| l.get(skip + 1)).copied()?;
    let rest = lines.get(idx..).unwrap_or_default();
    let is_record = |l: &[u8]| {
        let l = match l {
            [d, t, ..] if d.is_ascii_digit() && is_record_type(*t) => l.get(1..).unwrap_or(l),
            _ => l,
        };
        matches!(l, [t, f, ..] if is_record_type(*t) && *f == field)
    };
    let records = rest.iter().filter(|(_, l)| is_record(l)).count();
    let share = records as f32 / rest.len().max(1) as f32;
    let has_l = rest.iter().any(|(_, l)| {
        let l = l.strip_prefix(b"\x02").unwrap_or(l);
        matches!(l, [b'L', f, ..] | [_, b'L', f, ..] if *f == field)
    });
    let head = show(bytes.get(at..at + 6).unwrap_or_default());
    Some((
        Detection {
            protocol: Detected::AstmBare,
            confidence: (0.6 + 0.3 * share + if has_l { 0.05 } else { 0.0 }).min(0.95),
            evidence: format!(
                "no E1381 framing; {head} header record at byte {at}, {records} of {} line(s) \
                 are E1394 records{}",
                rest.len(),
                if has_l {
                    ", ending with an L record"
                } else {
                    ""
                }
            ),
        },
        at,
    ))
}

fn detect_hl7_bare(bytes: &[u8]) -> Option<(Detection, usize)> {
    let (at, _) = lines(bytes)
        .into_iter()
        .find(|(_, l)| l.starts_with(b"MSH") && l.get(3).copied().is_some_and(is_delimiter))?;
    let field = bytes.get(at + 3).copied()?;
    let segments = lines(bytes.get(at..).unwrap_or_default());
    let good = segments
        .iter()
        .filter(|(_, l)| {
            matches!(l, [a, b, c, f, ..]
                if a.is_ascii_uppercase() && (b.is_ascii_uppercase() || b.is_ascii_digit())
                    && (c.is_ascii_uppercase() || c.is_ascii_digit()) && *f == field)
        })
        .count();
    let share = good as f32 / segments.len().max(1) as f32;
    Some((
        Detection {
            protocol: Detected::Hl7Bare,
            confidence: (0.6 + 0.3 * share).min(0.9),
            evidence: format!(
                "no MLLP framing (no VT); MSH segment at byte {at}, {good} of {} line(s) are \
                 HL7 segments",
                segments.len()
            ),
        },
        at,
    ))
}

fn detect_printer_text(bytes: &[u8]) -> Option<(Detection, usize)> {
    let score = score_text(bytes);
    let letters = bytes.iter().filter(|b| b.is_ascii_alphanumeric()).count();
    if score < 0.9 || letters < 8 {
        return None;
    }
    let wrapped = match (bytes.first(), bytes.iter().rposition(|b| *b == ETX)) {
        (Some(&STX), Some(_)) => {
            ", sent between STX and ETX with no frame number or checksum (printer-style output)"
        }
        _ => "",
    };
    let separators = if bytes.contains(&RS) || bytes.contains(&GS) {
        "; RS/GS separators suggest a vendor record format (bioMérieux VIDAS uses \
         <STX><RS>mtrsl|…<GS>)"
    } else {
        ""
    };
    Some((
        Detection {
            protocol: Detected::PrinterText,
            confidence: if separators.is_empty() {
                0.5 + 0.3 * score
            } else {
                0.5
            },
            evidence: format!(
                "{} byte(s), {:.0}% readable text, no ASTM, HL7 or POCT1 markers{wrapped}{separators}",
                bytes.len(),
                score * 100.0
            ),
        },
        0,
    ))
}

// ---------------------------------------------------------------------------------------------
// Capture file format
// ---------------------------------------------------------------------------------------------

/// Which way a chunk travelled. [`capture`] only ever writes [`Direction::Rx`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the device (`rx`).
    Rx,
    /// To the device (`tx`); reserved for taps that record both directions; skipped when read.
    Tx,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Rx => "rx",
            Direction::Tx => "tx",
        }
    }
}

/// The file header: magic line, port, serial settings, start time, and whether the baud rate
/// was given or is being detected.
pub fn write_header(
    out: &mut impl Write,
    port: &str,
    baud: Option<u32>,
    started: OffsetDateTime,
) -> io::Result<()> {
    let baud = match baud {
        Some(b) => b.to_string(),
        None => {
            let rates = PROBE_RATES.map(|r| r.to_string()).join(", ");
            format!("detect (trying {rates})")
        }
    };
    writeln!(out, "{FILE_MAGIC}")?;
    writeln!(out, "# port: {port}")?;
    writeln!(
        out,
        "# settings: 8 data bits, no parity, 1 stop bit, no flow control; listen only (nothing is \
         written to the port)"
    )?;
    writeln!(out, "# baud rate: {baud}")?;
    writeln!(out, "# started: {}", timestamp(started))?;
    writeln!(
        out,
        "# lines: <RFC 3339 UTC time> <rx|tx> <hex bytes> TAB <readable rendering>"
    )?;
    out.flush()
}

/// Directive: the chunks after this line were read at `baud`. `note` (may be empty) is a comment.
pub fn write_baud(out: &mut impl Write, baud: u32, note: &str) -> io::Result<()> {
    if note.is_empty() {
        writeln!(out, "# baud: {baud}")?;
    } else {
        writeln!(out, "# baud: {baud} ({note})")?;
    }
    out.flush()
}

/// Directive: baud detection kept `baud`; [`read_capture`] then returns only chunks read at it.
pub fn write_chosen_baud(out: &mut impl Write, baud: u32, scores: &[(u32, f32)]) -> io::Result<()> {
    let scores = scores
        .iter()
        .map(|(r, s)| format!("{r}={s:.2}"))
        .collect::<Vec<_>>()
        .join(" ");
    writeln!(out, "# chosen-baud: {baud} (text scores: {scores})")?;
    out.flush()
}

/// One chunk line (see the module docs), flushed.
pub fn write_chunk(
    out: &mut impl Write,
    at: OffsetDateTime,
    direction: Direction,
    bytes: &[u8],
) -> io::Result<()> {
    let mut line = String::with_capacity(bytes.len() * 5 + 48);
    line.push_str(&timestamp(at));
    line.push(' ');
    line.push_str(direction.as_str());
    for b in bytes {
        line.push_str(&format!(" {b:02X}"));
    }
    line.push('\t');
    render_into(&mut line, bytes);
    line.push('\n');
    out.write_all(line.as_bytes())?;
    out.flush()
}

fn timestamp(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

/// Readable rendering: printable ASCII as is, control bytes as `<STX>`, others as `<xHH>`.
pub fn render(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() + 8);
    render_into(&mut s, bytes);
    s
}

fn render_into(s: &mut String, bytes: &[u8]) {
    for &b in bytes {
        let name = match b {
            0x20..=0x7E => {
                s.push(char::from(b));
                continue;
            }
            0x00 => "NUL",
            STX => "STX",
            ETX => "ETX",
            EOT => "EOT",
            ENQ => "ENQ",
            link::ACK => "ACK",
            TAB => "TAB",
            b'\n' => "LF",
            VT => "VT",
            FF => "FF",
            b'\r' => "CR",
            link::NAK => "NAK",
            ETB => "ETB",
            ESC => "ESC",
            FS => "FS",
            GS => "GS",
            RS => "RS",
            _ => {
                s.push_str(&format!("<x{b:02X}>"));
                continue;
            }
        };
        s.push('<');
        s.push_str(name);
        s.push('>');
    }
}

/// One chunk read back from a capture file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// When it arrived (UTC).
    pub at: OffsetDateTime,
    pub direction: Direction,
    /// The baud rate in force (the last `# baud:` directive before it), if any.
    pub baud: Option<u32>,
    pub bytes: Vec<u8>,
}

/// A parsed capture file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capture {
    pub chunks: Vec<Chunk>,
    /// The `# chosen-baud:` directive, if baud detection finished.
    pub chosen_baud: Option<u32>,
}

impl Capture {
    /// The device's bytes for replay: `rx` chunks in order, only those read at the chosen baud
    /// rate when there is one.
    pub fn device_bytes(&self) -> Vec<u8> {
        self.chunks
            .iter()
            .filter(|c| c.direction == Direction::Rx)
            .filter(|c| self.chosen_baud.is_none() || c.baud == self.chosen_baud)
            .flat_map(|c| c.bytes.iter().copied())
            .collect()
    }
}

/// Parse the text of a capture file. Errors name the 1-based line.
pub fn parse_capture(text: &str) -> Result<Capture, CaptureError> {
    let mut cap = Capture::default();
    let mut baud = None;
    for (n, line) in text.lines().enumerate() {
        let bad = |why: String| CaptureError::BadLine { line: n + 1, why };
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let comment = comment.trim();
            let directive = |key: &str| {
                comment.strip_prefix(key).map(|v| {
                    v.split_whitespace()
                        .next()
                        .and_then(|v| v.parse::<u32>().ok())
                        .ok_or_else(|| bad(format!("`{key}` needs a number")))
                })
            };
            if let Some(b) = directive("baud:") {
                baud = Some(b?);
            } else if let Some(b) = directive("chosen-baud:") {
                cap.chosen_baud = Some(b?);
            }
            continue;
        }
        let data = line.split('\t').next().unwrap_or_default();
        let mut words = data.split_ascii_whitespace();
        let at = words.next().unwrap_or_default();
        let at = OffsetDateTime::parse(at, &Rfc3339)
            .map_err(|e| bad(format!("`{at}` is not an RFC 3339 time: {e}")))?;
        let direction = match words.next() {
            Some("rx") => Direction::Rx,
            Some("tx") => Direction::Tx,
            other => {
                return Err(bad(format!(
                    "direction must be rx or tx, not {:?}",
                    other.unwrap_or_default()
                )));
            }
        };
        let bytes = words
            .map(|w| match w.as_bytes() {
                [a, b] => link::parse_checksum_chars(*a, *b)
                    .ok_or_else(|| bad(format!("`{w}` is not a hex byte"))),
                _ => Err(bad(format!("`{w}` is not a hex byte"))),
            })
            .collect::<Result<Vec<u8>, _>>()?;
        cap.chunks.push(Chunk {
            at,
            direction,
            baud,
            bytes,
        });
    }
    Ok(cap)
}

/// The inverse of capturing: the raw bytes the device sent, as `pocketgate decode` and
/// `pocketgate simulate` read them (see the module docs for which chunks count).
pub fn read_capture(path: &Path) -> Result<Vec<u8>, CaptureError> {
    let text = std::fs::read_to_string(path).map_err(|source| CaptureError::File {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(parse_capture(&text)?.device_bytes())
}

// ---------------------------------------------------------------------------------------------
// Capturing from a port (I/O)
// ---------------------------------------------------------------------------------------------

/// What to capture and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureSettings {
    /// `None`: detect, by listening [`Self::probe_for`] at each of [`PROBE_RATES`].
    pub baud: Option<u32>,
    /// Total time, from opening the port (probing included). Probing always runs to the end, so
    /// a duration shorter than probing ends the capture right after it.
    pub duration: Duration,
    /// The capture file (created or truncated).
    pub out: PathBuf,
    /// Stop when nothing has arrived for this long, counted from the last byte once something has
    /// arrived at the final baud rate (a technician may wait a while for the first result).
    pub idle_stop: Option<Duration>,
    /// Time per rate while probing ([`DEFAULT_PROBE_FOR`]).
    pub probe_for: Duration,
    /// Stop once this many bytes have been written (all rates); `None`: no limit (the CLI).
    pub max_bytes: Option<usize>,
}

impl CaptureSettings {
    /// Detect the baud rate, capture for ten minutes, no idle stop.
    pub fn new(out: PathBuf) -> Self {
        Self {
            baud: None,
            duration: Duration::from_secs(600),
            out,
            idle_stop: None,
            probe_for: DEFAULT_PROBE_FOR,
            max_bytes: None,
        }
    }
}

/// Why the capture ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// The duration ran out.
    Duration,
    /// Nothing arrived for `idle_stop`.
    Idle,
    /// The port failed (cable or USB adapter pulled); everything heard before is in the file.
    PortLost(String),
    /// [`CaptureSettings::max_bytes`] were written.
    Full,
    /// The caller's stop flag was set ([`capture_until`]; the web page's Stop button).
    Asked,
}

/// The result of a capture, for the technician.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureReport {
    /// Bytes written to the file (all rates, probing included).
    pub bytes: usize,
    /// Chunk lines written to the file.
    pub chunks: usize,
    /// The rate given, or the one detection kept.
    pub baud: u32,
    /// `(rate, text score)` per probed rate; empty when the rate was given.
    pub baud_scores: Vec<(u32, f32)>,
    /// [`detect`] over the bytes [`read_capture`] returns for this file.
    pub detection: Detection,
    pub file: PathBuf,
    pub stopped: Stopped,
}

impl fmt::Display for CaptureReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stopped = match &self.stopped {
            Stopped::Duration => "the time was up".to_string(),
            Stopped::Idle => "the line went quiet".to_string(),
            Stopped::PortLost(why) => format!("the port was lost ({why})"),
            Stopped::Full => "the byte limit was reached".to_string(),
            Stopped::Asked => "it was asked to stop".to_string(),
        };
        writeln!(
            f,
            "Captured {} byte(s) in {} chunk(s); stopped because {stopped}.",
            self.bytes, self.chunks
        )?;
        if self.baud_scores.is_empty() {
            writeln!(f, "Baud rate: {} (given), 8N1.", self.baud)?;
        } else {
            writeln!(
                f,
                "Baud rate: {} (detected, 8N1). Share of bytes that looked like text at each rate:",
                self.baud
            )?;
            for (rate, score) in &self.baud_scores {
                let mark = if *rate == self.baud { "  <- kept" } else { "" };
                writeln!(f, "  {rate:>6}  {:>3.0}%{mark}", score * 100.0)?;
            }
        }
        writeln!(f, "Protocol: {}", self.detection)?;
        if let Some(p) = self.detection.protocol.config_protocol() {
            writeln!(
                f,
                "Suggested source: protocol = \"{p}\", transport = \"serial\", baud = {}",
                self.baud
            )?;
        }
        write!(
            f,
            "Capture file: {} (replay with `pocketgate decode` or `pocketgate simulate`)",
            self.file.display()
        )
    }
}

#[derive(thiserror::Error, Debug)]
pub enum CaptureError {
    #[error("cannot open serial port {port}: {source}")]
    Open {
        port: String,
        source: serialport::Error,
    },
    #[error("cannot set {port} to {baud} baud: {source}")]
    SetBaud {
        port: String,
        baud: u32,
        source: serialport::Error,
    },
    #[error("{baud} is not a supported baud rate ({list})", list = supported_list())]
    UnsupportedBaud { baud: u32 },
    #[error("capture file {path}: {source}")]
    File { path: PathBuf, source: io::Error },
    #[error("capture file line {line}: {why}")]
    BadLine { line: usize, why: String },
}

fn supported_list() -> String {
    SUPPORTED_BAUD_RATES.map(|b| b.to_string()).join(", ")
}

/// Listen on `port` (never writing to it) and record every byte to `settings.out`; see the module
/// docs. Blocking: run it on its own thread (or `spawn_blocking`) from async code.
pub fn capture(port: &str, settings: CaptureSettings) -> Result<CaptureReport, CaptureError> {
    capture_until(port, settings, &AtomicBool::new(false))
}

/// [`capture`] that also ends (within one 50 ms read timeout) once `stop` is set, with
/// [`Stopped::Asked`]; set while probing, the rates heard so far are ranked.
pub fn capture_until(
    port: &str,
    settings: CaptureSettings,
    stop: &AtomicBool,
) -> Result<CaptureReport, CaptureError> {
    if let Some(baud) = settings.baud
        && !SUPPORTED_BAUD_RATES.contains(&baud)
    {
        return Err(CaptureError::UnsupportedBaud { baud });
    }
    let first = settings.baud.unwrap_or(PROBE_RATES[0]);
    let serial = serialport::new(port, first)
        .data_bits(serialport::DataBits::Eight)
        .parity(serialport::Parity::None)
        .stop_bits(serialport::StopBits::One)
        .flow_control(serialport::FlowControl::None)
        .timeout(Duration::from_millis(50))
        .open()
        .map_err(|source| CaptureError::Open {
            port: port.to_string(),
            source,
        })?;
    let file = std::fs::File::create(&settings.out).map_err(|source| CaptureError::File {
        path: settings.out.clone(),
        source,
    })?;
    let mut rec = Recorder {
        stop,
        max_bytes: settings.max_bytes.unwrap_or(usize::MAX),
        port_name: port.to_string(),
        port: serial,
        out: io::BufWriter::new(file),
        path: settings.out.clone(),
        bytes: 0,
        chunks: 0,
    };
    let started = Instant::now();
    let end = started + settings.duration;
    rec.file(|o| write_header(o, port, settings.baud, OffsetDateTime::now_utc()))?;

    // Phase 1 (baud unknown): listen at each rate in turn.
    let mut heard: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut stopped = None;
    let (baud, baud_scores) = match settings.baud {
        Some(b) => (b, Vec::new()),
        None => {
            for rate in PROBE_RATES {
                rec.set_baud(rate)?;
                rec.file(|o| write_baud(o, rate, "probing"))?;
                let (bytes, why) = rec.listen(Instant::now() + settings.probe_for, None)?;
                heard.push((rate, bytes));
                if why != Stopped::Duration {
                    stopped = Some(why);
                    break;
                }
            }
            let views: Vec<(u32, &[u8])> = heard.iter().map(|(r, b)| (*r, b.as_slice())).collect();
            let choice = rank_bauds(&views);
            let chosen = choice.best.unwrap_or(PROBE_RATES[0]);
            rec.file(|o| write_chosen_baud(o, chosen, &choice.scores))?;
            (chosen, choice.scores)
        }
    };

    // Phase 2: the rest of the time at the given or chosen rate.
    let stopped = match stopped {
        Some(s) => s,
        None => {
            rec.set_baud(baud)?;
            let note = if settings.baud.is_some() {
                "given"
            } else {
                "kept"
            };
            rec.file(|o| write_baud(o, baud, note))?;
            let (bytes, why) = rec.listen(end, settings.idle_stop)?;
            heard.push((baud, bytes));
            why
        }
    };
    let device_bytes: Vec<u8> = heard
        .iter()
        .filter(|(r, _)| *r == baud)
        .flat_map(|(_, b)| b.iter().copied())
        .collect();
    Ok(CaptureReport {
        bytes: rec.bytes,
        chunks: rec.chunks,
        baud,
        baud_scores,
        detection: detect(&device_bytes),
        file: settings.out,
        stopped,
    })
}

/// The open port and the capture file, with running totals.
struct Recorder<'s> {
    stop: &'s AtomicBool,
    max_bytes: usize,
    port_name: String,
    port: Box<dyn serialport::SerialPort>,
    out: io::BufWriter<std::fs::File>,
    path: PathBuf,
    bytes: usize,
    chunks: usize,
}

impl Recorder<'_> {
    fn file(
        &mut self,
        f: impl FnOnce(&mut io::BufWriter<std::fs::File>) -> io::Result<()>,
    ) -> Result<(), CaptureError> {
        f(&mut self.out).map_err(|source| CaptureError::File {
            path: self.path.clone(),
            source,
        })
    }

    fn set_baud(&mut self, baud: u32) -> Result<(), CaptureError> {
        if self.port.baud_rate().ok() != Some(baud) {
            self.port
                .set_baud_rate(baud)
                .map_err(|source| CaptureError::SetBaud {
                    port: self.port_name.clone(),
                    baud,
                    source,
                })?;
        }
        // Bytes still buffered were read at the old rate; they are not this rate's.
        let _ = self.port.clear(serialport::ClearBuffer::Input);
        Ok(())
    }

    /// Read until `until`, or until `idle` has passed since the last byte (once one arrived).
    /// Returns the bytes heard and why it stopped; a port failure is a stop, not an error.
    fn listen(
        &mut self,
        until: Instant,
        idle: Option<Duration>,
    ) -> Result<(Vec<u8>, Stopped), CaptureError> {
        let mut heard = Vec::new();
        let mut last_byte: Option<Instant> = None;
        let mut buf = [0u8; 4096];
        loop {
            let now = Instant::now();
            if now >= until {
                return Ok((heard, Stopped::Duration));
            }
            if self.stop.load(Ordering::Relaxed) {
                return Ok((heard, Stopped::Asked));
            }
            if self.bytes >= self.max_bytes {
                return Ok((heard, Stopped::Full));
            }
            if let (Some(idle), Some(last)) = (idle, last_byte)
                && now.duration_since(last) >= idle
            {
                return Ok((heard, Stopped::Idle));
            }
            match self.port.read(&mut buf) {
                Ok(0) => {}
                Ok(n) => {
                    let chunk = buf.get(..n).unwrap_or_default();
                    let at = OffsetDateTime::now_utc();
                    self.file(|o| write_chunk(o, at, Direction::Rx, chunk))?;
                    self.bytes += n;
                    self.chunks += 1;
                    heard.extend_from_slice(chunk);
                    last_byte = Some(Instant::now());
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                            | io::ErrorKind::WouldBlock
                    ) => {}
                Err(e) => return Ok((heard, Stopped::PortLost(e.to_string()))),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(dir: &str, name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(dir)
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn fixtures(dir: &str, ext: &str) -> Vec<(String, Vec<u8>)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(dir);
        let mut names: Vec<String> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(ext))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|n| {
                let b = fixture(dir, &n);
                (n, b)
            })
            .collect()
    }

    #[test]
    fn framed_astm_fixtures_are_astm_with_verified_checksums() {
        for name in [
            "s01-genexpert-mtb-rif-ultra.astm",
            "s08-sysmex-xn550.astm",
            "s09-sysmex-xp100.astm",
            "s10-horiba-pentra-xlr.astm",
            "s11-horiba-yumizen-h500-qc.astm",
            "s12-roche-cobas-c111.astm",
            "s13-roche-cobas-c311.astm",
            "s14-abbott-afinion2.astm",
            "s15-siemens-dca-vantage.astm",
            "s20-aqualink-a9000p.astm",
        ] {
            let d = detect(&fixture("astm", name));
            assert_eq!(d.protocol, Detected::Astm, "{name}: {d}");
            assert!(d.confidence >= 0.95, "{name}: {d}");
            assert!(
                d.evidence.contains("STX 1H| frame at byte 0"),
                "{name}: {d}"
            );
            assert!(d.evidence.contains("valid"), "{name}: {d}");
        }
    }

    #[test]
    fn enq_before_the_first_frame_is_named_in_the_evidence() {
        let mut wire = vec![ENQ];
        wire.extend(link::encode_frame(1, b"H|\\^&|||X\r", false));
        wire.extend(link::encode_frame(2, b"L|1|N\r", true));
        wire.push(EOT);
        let d = detect(&wire);
        assert_eq!(d.protocol, Detected::Astm);
        assert_eq!(
            d.evidence,
            "ENQ at byte 0, then STX 1H| frame at byte 1, 2 frames, all checksums valid"
        );
        assert!(d.confidence > 0.98);
    }

    #[test]
    fn enqs_alone_are_an_astm_sender_waiting_for_an_ack() {
        let d = detect(&[ENQ, ENQ, ENQ, EOT]);
        assert_eq!(d.protocol, Detected::Astm, "{d}");
        assert!(d.evidence.contains("ENQ at byte 0"), "{d}");
    }

    #[test]
    fn corrupted_checksum_lowers_confidence_but_is_still_astm() {
        let mut wire = link::encode_frame(1, b"H|\\^&|||X\r", true);
        let n = wire.len();
        wire[n - 3] = if wire[n - 3] == b'0' { b'1' } else { b'0' };
        let d = detect(&wire);
        assert_eq!(d.protocol, Detected::Astm);
        assert!(d.confidence < 0.9, "{d}");
        assert!(d.evidence.contains("no frame checksum verifies"), "{d}");
    }

    #[test]
    fn bare_astm_fixtures_are_records_without_framing() {
        for name in [
            "s02-genexpert-mtb-xdr-stripped.astm",
            "s03-genexpert-hiv-vl-quantified.astm",
            "s04-genexpert-hiv-vl-below-range.astm",
            "s05-genexpert-hiv-vl-error.astm",
            "s06-genexpert-query-and-orders.astm",
            "s18-siemens-immulite.astm",
            "s19-ortho-vision.astm",
        ] {
            let d = detect(&fixture("astm", name));
            assert_eq!(d.protocol, Detected::AstmBare, "{name}: {d}");
            assert!(d.confidence >= 0.8, "{name}: {d}");
        }
    }

    #[test]
    fn hl7_fixtures_are_mllp() {
        let all = fixtures("hl7", ".hl7");
        assert!(all.len() >= 8);
        for (name, bytes) in all {
            let d = detect(&bytes);
            assert_eq!(d.protocol, Detected::Hl7Mllp, "{name}: {d}");
            assert!(
                d.evidence.starts_with("VT at byte 0, then MSH|^~\\&"),
                "{name}: {d}"
            );
            assert!(d.confidence >= 0.95, "{name}: {d}");
        }
    }

    #[test]
    fn hl7_without_vt_is_bare_hl7() {
        let bytes = fixture("hl7", "s22-mindray-bc5380-oru-r01.hl7");
        let inner: Vec<u8> = bytes.into_iter().filter(|b| *b != VT && *b != FS).collect();
        let d = detect(&inner);
        assert_eq!(d.protocol, Detected::Hl7Bare, "{d}");
    }

    #[test]
    fn poct1_fixtures_are_poct1() {
        let all = fixtures("poct1", ".xml");
        assert!(all.len() >= 6);
        for (name, bytes) in all {
            let d = detect(&bytes);
            assert_eq!(d.protocol, Detected::Poct1, "{name}: {d}");
            assert!(d.confidence >= 0.9, "{name}: {d}");
        }
        let mut prolog = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n".to_vec();
        prolog.extend(fixture("poct1", "s25-hel-r01.xml"));
        let d = detect(&prolog);
        assert_eq!(d.protocol, Detected::Poct1);
        assert!(d.evidence.contains("<HEL.R01"), "{d}");
    }

    #[test]
    fn spotchem_printer_output_is_printer_text() {
        let d = detect(&fixture("astm", "s17-arkray-spotchem-el.astm"));
        assert_eq!(d.protocol, Detected::PrinterText, "{d}");
        assert!(d.evidence.contains("between STX and ETX"), "{d}");
        let plain = b"ID# 0042\r\nNa   131 mmol/L\r\nK    4.1 mmol/L\r\n";
        assert_eq!(detect(plain).protocol, Detected::PrinterText);
    }

    #[test]
    fn mini_vidas_is_not_mistaken_for_astm() {
        let d = detect(&fixture("astm", "s16-biomerieux-mini-vidas.astm"));
        assert_ne!(d.protocol, Detected::Astm, "{d}");
        assert!(d.evidence.contains("VIDAS"), "{d}");
    }

    #[test]
    fn nothing_or_noise_is_unknown() {
        assert_eq!(detect(b"").protocol, Detected::Unknown);
        let noise = wrong_baud_noise(500);
        let d = detect(&noise);
        assert_eq!(d.protocol, Detected::Unknown, "{d}");
        assert!(d.evidence.contains("wrong baud rate"), "{d}");
    }

    #[test]
    fn detect_never_panics_on_truncated_or_odd_input() {
        let samples: [&[u8]; 10] = [
            &[STX],
            &[STX, b'1'],
            &[STX, b'1', b'H', b'|'],
            &[VT],
            &[VT, b'M', b'S', b'H'],
            b"H",
            b"H|",
            b"1H|\\",
            b"<HEL.R0",
            b"MSH|",
        ];
        for s in samples {
            let _ = detect(s);
        }
        let s01 = fixture("astm", "s01-genexpert-mtb-rif-ultra.astm");
        for cut in 0..s01.len().min(300) {
            let _ = detect(&s01[..cut]);
            let _ = detect(&s01[cut..]);
        }
    }

    /// What 8-bit text looks like read at the wrong rate: framing errors give 0x00, 0xFF,
    /// 0x80/0xF8/0xE0-style bytes and stray control bytes (a deterministic LCG, no rand crate).
    fn wrong_baud_noise(n: usize) -> Vec<u8> {
        let mut x: u32 = 12345;
        (0..n)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                match i % 4 {
                    0 => 0x00,
                    1 => 0xFF,
                    _ => ((x >> 16) as u8) | 0x80,
                }
            })
            .collect()
    }

    #[test]
    fn score_text_separates_real_text_from_wrong_baud_noise() {
        for name in [
            "s01-genexpert-mtb-rif-ultra.astm",
            "s10-horiba-pentra-xlr.astm",
            "s17-arkray-spotchem-el.astm",
        ] {
            let s = score_text(&fixture("astm", name));
            assert!(s > 0.95, "{name}: {s}");
        }
        let hl7 = score_text(&fixture("hl7", "s22-mindray-bc5380-oru-r01.hl7"));
        assert!(hl7 > 0.95, "{hl7}");
        let noise = score_text(&wrong_baud_noise(1000));
        assert!(noise < 0.1, "{noise}");
        let high: Vec<u8> = (0x80..=0xFF).collect();
        assert_eq!(score_text(&high), 0.0);
        assert_eq!(score_text(b""), 0.0);
    }

    #[test]
    fn rank_bauds_keeps_the_rate_whose_bytes_read_as_text() {
        let text = fixture("astm", "s10-horiba-pentra-xlr.astm");
        let noise_hi = wrong_baud_noise(text.len() * 2); // read too fast: more bytes, all junk
        let noise_lo = wrong_baud_noise(text.len() / 3); // read too slow: fewer bytes, junk
        let heard: Vec<(u32, &[u8])> = vec![
            (9600, &noise_lo),
            (19200, &text),
            (38400, &noise_hi),
            (115200, &[]),
        ];
        let c = rank_bauds(&heard);
        assert_eq!(c.best, Some(19200));
        assert_eq!(c.scores.len(), 4);
        assert_eq!(c.scores[3], (115200, 0.0));
        assert!(c.scores[1].1 > 0.95 && c.scores[0].1 < 0.1 && c.scores[2].1 < 0.1);
    }

    #[test]
    fn rank_bauds_ignores_a_few_lucky_bytes_and_breaks_ties_by_order() {
        let text = b"H|\\^&|||Afinion 2\rL|1|N\r";
        let noisy_text: Vec<u8> = text
            .iter()
            .map(|b| if *b == b'|' { 0xFC } else { *b })
            .collect();
        let heard: Vec<(u32, &[u8])> = vec![(9600, b"AB"), (19200, &noisy_text)];
        assert_eq!(rank_bauds(&heard).best, Some(19200));
        let same: Vec<(u32, &[u8])> = vec![(9600, text), (19200, text)];
        assert_eq!(rank_bauds(&same).best, Some(9600));
        let none: Vec<(u32, &[u8])> = vec![(9600, &[]), (19200, &[])];
        assert_eq!(rank_bauds(&none).best, None);
    }

    fn at(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &Rfc3339).unwrap()
    }

    #[test]
    fn capture_file_round_trips_every_byte_value() {
        let mut file = Vec::new();
        write_header(
            &mut file,
            "/dev/ttyUSB0",
            Some(9600),
            at("2025-03-04T10:15:00Z"),
        )
        .unwrap();
        write_baud(&mut file, 9600, "given").unwrap();
        let s01 = fixture("astm", "s01-genexpert-mtb-rif-ultra.astm");
        let all: Vec<u8> = (0..=255).collect();
        let mut expected = Vec::new();
        for (i, chunk) in s01.chunks(700).chain(all.chunks(64)).enumerate() {
            let t = at("2025-03-04T10:15:01.25Z") + Duration::from_millis(i as u64 * 10);
            write_chunk(&mut file, t, Direction::Rx, chunk).unwrap();
            expected.extend_from_slice(chunk);
        }
        write_chunk(
            &mut file,
            at("2025-03-04T10:16:00Z"),
            Direction::Tx,
            &[0x06],
        )
        .unwrap();
        let text = String::from_utf8(file).unwrap();
        let cap = parse_capture(&text).unwrap();
        assert_eq!(cap.device_bytes(), expected);
        assert_eq!(cap.chunks[0].at, at("2025-03-04T10:15:01.25Z"));
        assert_eq!(cap.chunks[0].baud, Some(9600));
        assert_eq!(cap.chunks.last().unwrap().direction, Direction::Tx);
        // The readable rendering is there for people.
        assert!(text.contains("\t<STX>1H|@^\\|URM-"), "{text}");
        assert!(text.contains("<CR>"));
        assert!(text.starts_with(FILE_MAGIC));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.capture");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(read_capture(&path).unwrap(), expected);
    }

    #[test]
    fn read_capture_keeps_only_the_chosen_rate_after_probing() {
        let mut file = Vec::new();
        write_header(&mut file, "/dev/ttyS0", None, at("2025-03-04T10:15:00Z")).unwrap();
        let t = at("2025-03-04T10:15:01Z");
        write_baud(&mut file, 9600, "probing").unwrap();
        write_chunk(&mut file, t, Direction::Rx, &[0x00, 0xFF, 0xF8]).unwrap();
        write_baud(&mut file, 19200, "probing").unwrap();
        write_chunk(&mut file, t, Direction::Rx, b"H|\\^&\r").unwrap();
        write_chosen_baud(&mut file, 19200, &[(9600, 0.0), (19200, 1.0)]).unwrap();
        write_baud(&mut file, 19200, "kept").unwrap();
        write_chunk(&mut file, t, Direction::Rx, b"L|1|N\r").unwrap();
        let cap = parse_capture(std::str::from_utf8(&file).unwrap()).unwrap();
        assert_eq!(cap.chosen_baud, Some(19200));
        assert_eq!(cap.device_bytes(), b"H|\\^&\rL|1|N\r");
    }

    #[test]
    fn bad_capture_lines_are_errors_with_line_numbers_not_panics() {
        let cases = [
            ("not-a-time rx 02", 1),
            ("# ok\n2025-03-04T10:15:01Z sideways 02", 2),
            ("2025-03-04T10:15:01Z rx 0G", 1),
            ("2025-03-04T10:15:01Z rx 123", 1),
            ("# baud: fast", 1),
        ];
        for (text, line) in cases {
            match parse_capture(text) {
                Err(CaptureError::BadLine { line: l, .. }) => assert_eq!(l, line, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        let empty = parse_capture("").unwrap();
        assert!(empty.device_bytes().is_empty());
    }

    #[test]
    fn report_reads_like_instructions() {
        let r = CaptureReport {
            bytes: 4335,
            chunks: 7,
            baud: 9600,
            baud_scores: vec![(9600, 0.99), (19200, 0.05)],
            detection: detect(&fixture("astm", "s01-genexpert-mtb-rif-ultra.astm")),
            file: PathBuf::from("/tmp/x.capture"),
            stopped: Stopped::Idle,
        };
        let s = r.to_string();
        assert!(s.contains("Captured 4335 byte(s) in 7 chunk(s)"), "{s}");
        assert!(s.contains("9600   99%  <- kept"), "{s}");
        assert!(s.contains("protocol = \"astm\""), "{s}");
        assert!(s.contains("/tmp/x.capture"), "{s}");
    }

    #[test]
    fn unsupported_baud_is_refused_before_opening_the_port() {
        let mut s = CaptureSettings::new(PathBuf::from("/nonexistent/x"));
        s.baud = Some(96000);
        match capture("/dev/does-not-exist", s) {
            Err(CaptureError::UnsupportedBaud { baud: 96000 }) => {}
            other => panic!("{other:?}"),
        }
    }
}
