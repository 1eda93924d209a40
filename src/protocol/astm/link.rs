//! ASTM E1381 / CLSI LIS01-A2 data-link layer, sans-IO (protocols.md §1.1).
//!
//! Three parts, none of which touches a socket or reads a clock (bytes and `now` go in, events come
//! out; the caller writes the bytes it is told to and sleeps until `deadline()`):
//!
//! - [`Receiver`]: the gateway's side when an analyzer sends. ENQ → ACK, frames checked and handed
//!   up one at a time, ACK/NAK only when the caller answers (after the store commit), EOT → neutral.
//! - [`Sender`]: the gateway's side when it sends host replies or queries to an analyzer.
//! - [`deframe`]: joins the frame texts of a capture file, for fixtures and re-parsing.
//!
//! The receiver is lenient the way real analyzers need (protocols.md §0 and §1.1 "Receiver design
//! consequences"): frames longer than 240 characters, lower-case checksums, a missing `<CR><LF>`
//! trailer, bytes between frames, STX without a preceding ENQ (SENAITE captures) and any frame
//! number on the first frame are all accepted; the sender is strict (240 characters, upper case).

use std::time::{Duration, Instant};

/// Control characters (protocols.md §1.1 table).
pub const STX: u8 = 0x02;
pub const ETX: u8 = 0x03;
pub const EOT: u8 = 0x04;
pub const ENQ: u8 = 0x05;
pub const ACK: u8 = 0x06;
pub const NAK: u8 = 0x15;
pub const ETB: u8 = 0x17;
pub const CR: u8 = 0x0D;
pub const LF: u8 = 0x0A;

/// Most text bytes one received frame can hold, whatever the configured limit (the frame buffer is
/// a fixed-capacity `heapless::Vec`, so "too long" is a typed error, not growth).
pub const FRAME_CAPACITY: usize = 65_536;
/// Text bytes per frame the standard allows and [`Sender`] uses (protocols.md §1.1 "Frames").
pub const STANDARD_MAX_TEXT: usize = 240;
/// Receiver: silence allowed in the transfer phase before the half message is dropped (§1.1 timeouts).
pub const RECEIVE_TIMEOUT: Duration = Duration::from_secs(30);
/// Sender: wait for a reply to ENQ or to a frame (§1.1 timeouts).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(15);
/// Sender: wait after a NAK to ENQ (receiver busy) before bidding again (§1.1 "Establishment").
pub const BUSY_BACKOFF: Duration = Duration::from_secs(10);
/// Sender: transmissions of one frame (and ENQ bids answered NAK) before giving up (§1.1 "Defective frames").
pub const MAX_ATTEMPTS: u32 = 6;

/// Checksum of a frame: sum of FN, text and ETB/ETX bytes, modulo 256 (protocols.md §1.1 "Checksum").
pub fn checksum(fn_text_end: &[u8]) -> u8 {
    fn_text_end.iter().fold(0u8, |a, b| a.wrapping_add(*b))
}

/// The two checksum characters as sent: upper-case hex, most significant digit first (§1.1 "Checksum").
pub fn checksum_chars(sum: u8) -> [u8; 2] {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    [HEX[usize::from(sum >> 4)], HEX[usize::from(sum & 0x0F)]]
}

/// Parse two checksum characters, upper or lower case (senaite.astm d5689ff "compare checksum
/// uppercase"). Stricter than `u8::from_str_radix`, which would take `"+1"`.
pub fn parse_checksum_chars(c1: u8, c2: u8) -> Option<u8> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'A'..=b'F' => Some(c - b'A' + 10),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    Some(nibble(c1)? << 4 | nibble(c2)?)
}

/// One complete frame on the wire: `<STX> FN text <ETB|ETX> C1 C2 <CR><LF>` (§1.1 "Frames").
/// `number` is taken modulo 8; `last` chooses ETX (end frame) over ETB (intermediate frame).
pub fn encode_frame(number: u8, text: &[u8], last: bool) -> Vec<u8> {
    let mut wire = Vec::with_capacity(text.len() + 7);
    wire.push(STX);
    wire.push(b'0' + number % 8);
    wire.extend_from_slice(text);
    wire.push(if last { ETX } else { ETB });
    let sum = checksum(wire.get(1..).unwrap_or_default());
    wire.extend_from_slice(&checksum_chars(sum));
    wire.extend_from_slice(&[CR, LF]);
    wire
}

/// What [`deframe`] recovered from a capture file of raw E1381 frames.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Deframed {
    /// Frame texts joined in order (duplicates of the previous FN skipped), ready for the record layer.
    pub text: Vec<u8>,
    /// Frames accepted.
    pub frames: usize,
    /// Frames whose checksum did not verify (their text is still used: a capture is all we have).
    pub bad_checksums: usize,
}

/// Join the text of every `<STX>FN text <ETB|ETX> C1 C2` frame in a capture, leniently: missing
/// `<CR><LF>` trailers, lower-case checksums and bytes between frames are tolerated. A frame cut
/// short by a new `<STX>` before its ETB/ETX is dropped and scanning restarts at that `<STX>`.
pub fn deframe(bytes: &[u8]) -> Deframed {
    let mut out = Deframed::default();
    let mut last: Option<&[u8]> = None;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != STX {
            i += 1;
            continue;
        }
        let after = bytes.get(i + 1..).unwrap_or_default();
        let Some(rel_end) = after.iter().position(|b| matches!(*b, ETX | ETB | STX)) else {
            break;
        };
        let end = i + 1 + rel_end;
        if bytes.get(end) == Some(&STX) {
            i = end; // truncated frame: restart at the new STX
            continue;
        }
        let body = bytes.get(i + 1..=end).unwrap_or_default();
        let Some(text) = body.get(1..body.len().saturating_sub(1)) else {
            i = end + 1; // `<STX><ETX>`: no frame number
            continue;
        };
        let given = match bytes.get(end + 1..end + 3) {
            Some([c1, c2]) => parse_checksum_chars(*c1, *c2),
            _ => None,
        };
        if given != Some(checksum(body)) {
            out.bad_checksums += 1;
        }
        // A retransmission repeats FN and text; a new message may reuse FN 1 with other text.
        if last != Some(body) {
            out.text.extend_from_slice(text);
            out.frames += 1;
            last = Some(body);
        }
        i = end + 1;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Receiver
// ---------------------------------------------------------------------------------------------

/// Limits of one [`Receiver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverLimits {
    /// Most text bytes (FN, ETB/ETX and checksum not counted) one frame may carry; longer frames
    /// are NAKed with [`FrameError::TooLong`]. Real frames exceed 240 (a Yumizen H500 sends
    /// 26 651 bytes, protocols.md §0 item 2). Capped at [`FRAME_CAPACITY`]. Default 65 536.
    pub max_frame_bytes: usize,
    /// Silence allowed in the transfer phase before the half message is dropped. Default 30 s.
    pub timeout: Duration,
}

impl Default for ReceiverLimits {
    fn default() -> Self {
        Self {
            max_frame_bytes: FRAME_CAPACITY,
            timeout: RECEIVE_TIMEOUT,
        }
    }
}

/// What the [`Receiver`] asks of its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RxEvent {
    /// Write this byte to the device now (ACK to ENQ, NAK to a bad frame, ACK to a duplicate, and
    /// the ACK/NAK produced by [`Receiver::answer_frame`]).
    Reply(u8),
    /// A good, new frame: `text` without FN and ETB/ETX; `last` = ended by ETX (end of a message).
    /// The receiver now waits for [`Receiver::answer_frame`]; bytes that arrive meanwhile are
    /// buffered (bounded) and processed after the answer.
    Frame {
        number: u8,
        text: Vec<u8>,
        last: bool,
    },
    /// A frame was rejected; always emitted together with `Reply(NAK)`.
    Rejected(FrameError),
    /// EOT: the link is neutral. A message without its end frame is incomplete: discard it.
    EndOfTransfer,
    /// No frame or EOT for the receive timeout: the link is neutral; discard any half message.
    TimedOut,
    /// A transfer starts: ENQ accepted (`Reply(ACK)` precedes this), or a STX in the neutral
    /// state accepted leniently. Any half message from before is void (a new ENQ mid-transfer
    /// means the sender started over).
    TransferStarted,
}

/// Why a frame was NAKed. Each variant carries what failed, to log and act on.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    #[error(
        "frame {frame}: checksum mismatch: computed {expected:02X}, frame carries {actual:02X}"
    )]
    ChecksumMismatch {
        /// Frame number (0–7).
        frame: u8,
        /// Computed over the received FN, text and ETB/ETX.
        expected: u8,
        /// What the frame's checksum characters say.
        actual: u8,
    },
    #[error(
        "frame {frame}: checksum characters {:?} are not two hex digits",
        String::from_utf8_lossy(chars)
    )]
    BadChecksumChars { frame: u8, chars: [u8; 2] },
    #[error(
        "frame number {got} is neither {expected} (next) nor a repeat of the last accepted frame"
    )]
    UnexpectedFrameNumber { expected: u8, got: u8 },
    #[error("frame text longer than the limit of {limit} bytes")]
    TooLong { limit: usize },
    #[error("frame {frame}: control character 0x{byte:02X} at text offset {offset}")]
    InvalidCharacter { frame: u8, byte: u8, offset: usize },
    #[error("frame number byte 0x{byte:02X} is not an ASCII digit 0-7")]
    InvalidFrameNumber { byte: u8 },
    #[error("empty frame: no frame number between STX and ETB/ETX")]
    MissingFrameNumber,
}

/// Counters of one link (kept across [`Receiver::reset`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LinkStats {
    /// Frames the caller accepted (ACKed through `answer_frame(true, …)`).
    pub frames_accepted: u64,
    /// NAKs written: rejected frames and `answer_frame(false, …)`.
    pub naks_sent: u64,
    /// Repeats of the last accepted frame, ACKed again and not delivered.
    pub duplicates: u64,
    /// Bytes outside frames that were not part of the protocol (and bytes dropped while the
    /// answer-pending buffer was full).
    pub garbage_bytes: u64,
    /// Receive timeouts.
    pub timeouts: u64,
    /// Frames NAKed as longer than `max_frame_bytes`.
    pub oversize: u64,
    /// Frames cut short by STX, ENQ or EOT before their checksum (dropped without a reply).
    pub truncated_frames: u64,
    /// Transfers begun by STX without ENQ (accepted leniently).
    pub starts_without_enq: u64,
    /// First frames of a transfer whose number was not 1 (accepted leniently).
    pub odd_first_frame_numbers: u64,
    /// ENQs in the middle of a transfer (the partial state was discarded and the transfer restarted).
    pub restarts: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RxState {
    /// No transfer: waiting for ENQ (or, leniently, STX).
    Neutral,
    /// Transfer phase, between frames.
    Between,
    /// After STX, collecting FN and text until ETB/ETX.
    InFrame,
    /// After ETB/ETX, collecting the two checksum characters.
    Checksum { last: bool, first: Option<u8> },
    /// A frame was delivered; waiting for `answer_frame`.
    AwaitingAnswer { number: u8 },
}

/// Where the receiver is in the `<CR><LF>` trailer after a frame (both parts optional).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trailer {
    None,
    WantCr,
    WantLf,
}

/// E1381 receiver state machine (protocols.md §1.1), sans-IO.
///
/// Timer: the receive timeout runs from entering the transfer phase and from every reply
/// (§1.1 timeouts table). Deviation, on purpose: bytes of a frame in progress also restart it,
/// because a large frame at a low baud rate (4 KB at 1 200 baud ≈ 34 s) can take longer than 30 s
/// to arrive. While a frame awaits the caller's answer the timer is stopped.
#[derive(Debug)]
pub struct Receiver {
    max_text: usize,
    timeout: Duration,
    state: RxState,
    /// Text of the frame in progress (FN and ETB/ETX not included).
    buf: Box<heapless::Vec<u8, FRAME_CAPACITY>>,
    fn_byte: Option<u8>,
    sum: u8,
    oversize: bool,
    /// First link-control character seen in the text: (byte, offset).
    invalid: Option<(u8, usize)>,
    last_accepted: Option<u8>,
    trailer: Trailer,
    /// Bytes received while a frame awaited its answer.
    pending: Vec<u8>,
    timer_from: Option<Instant>,
    stats: LinkStats,
}

impl Receiver {
    pub fn new(limits: ReceiverLimits) -> Self {
        Self {
            max_text: limits.max_frame_bytes.min(FRAME_CAPACITY),
            timeout: limits.timeout,
            state: RxState::Neutral,
            buf: Box::default(),
            fn_byte: None,
            sum: 0,
            oversize: false,
            invalid: None,
            last_accepted: None,
            trailer: Trailer::None,
            pending: Vec::new(),
            timer_from: None,
            stats: LinkStats::default(),
        }
    }

    /// Feed bytes read from the device. `now` is passed in (no clock inside).
    pub fn feed(&mut self, bytes: &[u8], now: Instant) -> Vec<RxEvent> {
        let mut out = Vec::new();
        self.run(bytes, now, &mut out);
        out
    }

    /// Answer the pending frame (after [`RxEvent::Frame`]): `true` → ACK (the frame number
    /// advances), `false` → NAK (the sender retransmits the same frame, which is then accepted as
    /// new). Continues with any bytes buffered meanwhile. Without a pending frame it does nothing.
    pub fn answer_frame(&mut self, accept: bool, now: Instant) -> Vec<RxEvent> {
        let mut out = Vec::new();
        let RxState::AwaitingAnswer { number } = self.state else {
            return out;
        };
        self.state = RxState::Between;
        if accept {
            self.last_accepted = Some(number);
            self.stats.frames_accepted += 1;
            self.reply(ACK, now, &mut out);
        } else {
            self.reply(NAK, now, &mut out);
        }
        let pending = std::mem::take(&mut self.pending);
        self.run(&pending, now, &mut out);
        out
    }

    /// Check the receive timer; on expiry go neutral and report [`RxEvent::TimedOut`].
    pub fn poll_timeout(&mut self, now: Instant) -> Vec<RxEvent> {
        match self.deadline() {
            Some(deadline) if now >= deadline => {
                self.stats.timeouts += 1;
                self.go_neutral();
                vec![RxEvent::TimedOut]
            }
            _ => Vec::new(),
        }
    }

    /// When the receive timer fires, if it is running (the I/O loop sleeps until then).
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            RxState::Neutral | RxState::AwaitingAnswer { .. } => None,
            _ => self
                .timer_from
                .and_then(|from| from.checked_add(self.timeout)),
        }
    }

    /// Back to neutral, dropping any frame in progress and buffered bytes; counters are kept.
    pub fn reset(&mut self) {
        self.go_neutral();
    }

    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    /// True while a delivered frame waits for [`Receiver::answer_frame`].
    pub fn awaiting_answer(&self) -> bool {
        matches!(self.state, RxState::AwaitingAnswer { .. })
    }

    /// True outside the neutral state (a transfer is in progress).
    pub fn in_transfer(&self) -> bool {
        self.state != RxState::Neutral
    }

    fn run(&mut self, bytes: &[u8], now: Instant, out: &mut Vec<RxEvent>) {
        for (i, &b) in bytes.iter().enumerate() {
            if self.awaiting_answer() {
                self.buffer_pending(bytes.get(i..).unwrap_or_default());
                return;
            }
            self.step(b, now, out);
        }
    }

    /// Keep bytes that arrive while a frame awaits its answer. The sender should be silent then;
    /// room for one retransmitted frame plus slack is kept, the rest is dropped as garbage.
    fn buffer_pending(&mut self, rest: &[u8]) {
        let room = (self.max_text + 64).saturating_sub(self.pending.len());
        let take = rest.len().min(room);
        self.pending
            .extend_from_slice(rest.get(..take).unwrap_or_default());
        self.stats.garbage_bytes += (rest.len() - take) as u64;
    }

    fn step(&mut self, b: u8, now: Instant, out: &mut Vec<RxEvent>) {
        match self.state {
            RxState::Neutral => match b {
                ENQ => self.start_transfer(now, out),
                STX => {
                    // SENAITE captures and some simulators send frames without ENQ (§1.1).
                    self.stats.starts_without_enq += 1;
                    self.enter_transfer(now);
                    out.push(RxEvent::TransferStarted);
                    self.begin_frame(now);
                }
                _ => self.stats.garbage_bytes += 1,
            },
            RxState::Between => {
                match (self.trailer, b) {
                    (Trailer::WantCr, CR) => {
                        self.trailer = Trailer::WantLf;
                        return;
                    }
                    (Trailer::WantCr | Trailer::WantLf, LF) => {
                        self.trailer = Trailer::None;
                        return;
                    }
                    _ => self.trailer = Trailer::None,
                }
                match b {
                    ENQ => {
                        self.stats.restarts += 1;
                        self.start_transfer(now, out);
                    }
                    STX => self.begin_frame(now),
                    EOT => {
                        self.go_neutral();
                        out.push(RxEvent::EndOfTransfer);
                    }
                    // "Any characters occurring before <STX> or <EOT> … are ignored" (§1.1).
                    _ => self.stats.garbage_bytes += 1,
                }
            }
            RxState::InFrame => {
                self.timer_from = Some(now);
                match b {
                    STX | ENQ | EOT => self.abandon_frame(b, now, out),
                    ETB | ETX => {
                        self.sum = self.sum.wrapping_add(b);
                        self.state = RxState::Checksum {
                            last: b == ETX,
                            first: None,
                        };
                    }
                    _ if self.fn_byte.is_none() => {
                        self.sum = self.sum.wrapping_add(b);
                        self.fn_byte = Some(b);
                    }
                    _ => self.push_text(b),
                }
            }
            RxState::Checksum { last, first } => {
                self.timer_from = Some(now);
                match (b, first) {
                    (STX | ENQ | EOT, _) => self.abandon_frame(b, now, out),
                    (_, None) => {
                        self.state = RxState::Checksum {
                            last,
                            first: Some(b),
                        }
                    }
                    (_, Some(c1)) => self.end_frame(last, [c1, b], now, out),
                }
            }
            // `run` buffers instead of stepping in this state.
            RxState::AwaitingAnswer { .. } => self.buffer_pending(&[b]),
        }
    }

    fn push_text(&mut self, b: u8) {
        self.sum = self.sum.wrapping_add(b);
        if self.oversize {
            return;
        }
        if self.buf.len() >= self.max_text || self.buf.push(b).is_err() {
            // Skip to the end of this frame, then NAK it (§1.1 "Receiver design consequences").
            self.oversize = true;
            self.buf.clear();
            return;
        }
        if self.invalid.is_none() && is_link_control(b) {
            self.invalid = Some((b, self.buf.len() - 1));
        }
    }

    /// The frame's checksum characters arrived: check it, then deliver, ACK a duplicate, or NAK.
    /// Deciding here rather than after `<CR><LF>` is what makes a missing trailer harmless: the
    /// sender waits for our reply before sending anything else.
    fn end_frame(&mut self, last: bool, chars: [u8; 2], now: Instant, out: &mut Vec<RxEvent>) {
        self.state = RxState::Between;
        self.trailer = Trailer::WantCr;
        let verdict = self.check_frame(chars);
        let text = match verdict {
            Ok(number) if self.last_accepted != Some(number) => self.buf.to_vec(),
            _ => Vec::new(),
        };
        self.clear_frame();
        match verdict {
            Err(error) => {
                out.push(RxEvent::Rejected(error));
                self.reply(NAK, now, out);
            }
            Ok(number) if self.last_accepted == Some(number) => {
                // Our ACK was lost and the sender repeated the frame: ACK it, deliver nothing.
                self.stats.duplicates += 1;
                self.reply(ACK, now, out);
            }
            Ok(number) => {
                self.state = RxState::AwaitingAnswer { number };
                out.push(RxEvent::Frame { number, text, last });
            }
        }
    }

    fn check_frame(&mut self, chars: [u8; 2]) -> Result<u8, FrameError> {
        if self.oversize {
            self.stats.oversize += 1;
            return Err(FrameError::TooLong {
                limit: self.max_text,
            });
        }
        let number = match self.fn_byte {
            None => return Err(FrameError::MissingFrameNumber),
            Some(byte @ b'0'..=b'7') => byte - b'0',
            Some(byte) => return Err(FrameError::InvalidFrameNumber { byte }),
        };
        let Some(actual) = parse_checksum_chars(chars[0], chars[1]) else {
            return Err(FrameError::BadChecksumChars {
                frame: number,
                chars,
            });
        };
        if actual != self.sum {
            return Err(FrameError::ChecksumMismatch {
                frame: number,
                expected: self.sum,
                actual,
            });
        }
        if let Some((byte, offset)) = self.invalid {
            return Err(FrameError::InvalidCharacter {
                frame: number,
                byte,
                offset,
            });
        }
        match self.last_accepted {
            // First frame of a transfer: E1381 says 1, but accept any number (lenient, counted).
            None if number != 1 => self.stats.odd_first_frame_numbers += 1,
            None => {}
            Some(last) if number == last || number == (last + 1) % 8 => {}
            Some(last) => {
                return Err(FrameError::UnexpectedFrameNumber {
                    expected: (last + 1) % 8,
                    got: number,
                });
            }
        }
        Ok(number)
    }

    /// STX, ENQ or EOT before a frame's checksum: the frame was cut short (device restarted or
    /// line dropped). Nobody waits for a reply to it: drop it and act on the new byte.
    fn abandon_frame(&mut self, b: u8, now: Instant, out: &mut Vec<RxEvent>) {
        self.stats.truncated_frames += 1;
        self.clear_frame();
        self.state = RxState::Between;
        self.trailer = Trailer::None;
        self.step(b, now, out);
    }

    fn start_transfer(&mut self, now: Instant, out: &mut Vec<RxEvent>) {
        self.enter_transfer(now);
        self.reply(ACK, now, out);
        out.push(RxEvent::TransferStarted);
    }

    fn enter_transfer(&mut self, now: Instant) {
        self.clear_frame();
        self.last_accepted = None;
        self.trailer = Trailer::None;
        self.state = RxState::Between;
        self.timer_from = Some(now);
    }

    fn begin_frame(&mut self, now: Instant) {
        self.clear_frame();
        self.state = RxState::InFrame;
        self.timer_from = Some(now);
    }

    fn clear_frame(&mut self) {
        self.buf.clear();
        self.fn_byte = None;
        self.sum = 0;
        self.oversize = false;
        self.invalid = None;
    }

    fn go_neutral(&mut self) {
        self.clear_frame();
        self.state = RxState::Neutral;
        self.last_accepted = None;
        self.trailer = Trailer::None;
        self.pending.clear();
        self.timer_from = None;
    }

    fn reply(&mut self, byte: u8, now: Instant, out: &mut Vec<RxEvent>) {
        if byte == NAK {
            self.stats.naks_sent += 1;
        }
        self.timer_from = Some(now);
        out.push(RxEvent::Reply(byte));
    }
}

/// Restricted characters that signal a confused link when found in frame text (§1.1 "Restricted
/// characters"): SOH, ACK, DLE, DC1–DC4, NAK, SYN. STX, ETX, ETB, ENQ and EOT are handled as
/// structure. LF is tolerated on purpose: it cannot confuse reassembly (records split on CR),
/// while NAKing it would loop six times and lose the message.
fn is_link_control(b: u8) -> bool {
    matches!(b, 0x01 | ACK | 0x10..=0x14 | NAK | 0x16)
}

// ---------------------------------------------------------------------------------------------
// Sender
// ---------------------------------------------------------------------------------------------

/// What the [`Sender`] asks of its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxEvent {
    /// Write these bytes to the device now (ENQ, a frame, or EOT).
    Send(Vec<u8>),
    /// Every message was sent and acknowledged; EOT was sent (`Send` precedes this).
    Done,
    /// The transfer ended early; see [`Sender::messages_sent`] for what got through.
    Aborted(AbortReason),
    /// Contention: the device sent ENQ while we bid (or waited to bid again). The device has
    /// priority (§1.1 "Contention"): switch to a [`Receiver`] and feed it
    /// [`Sender::take_handover`] (the device's ENQ and anything after it), which ACKs that ENQ.
    /// If the device instead waits 1 s and sends another ENQ, the receiver takes it as a restart
    /// and ACKs again, so either reading of the standard works. Call [`Sender::start`] once the
    /// device's transfer is over.
    Yield,
}

/// Why a [`Sender`] stopped before sending everything.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum AbortReason {
    #[error("no reply to ENQ within 15 s")]
    NoReplyToEnq,
    #[error("receiver busy: ENQ answered NAK {attempts} times")]
    ReceiverBusy { attempts: u32 },
    #[error("frame {frame} not accepted after {attempts} attempts")]
    TooManyRetries { frame: u8, attempts: u32 },
    #[error("no reply to frame {frame} within 15 s")]
    NoReplyToFrame { frame: u8 },
    #[error("receiver interrupt (EOT): stopped after {messages_sent} of {messages_total} messages")]
    ReceiverInterrupt {
        messages_sent: usize,
        messages_total: usize,
    },
}

#[derive(Debug, Clone)]
struct OutFrame {
    wire: Vec<u8>,
    number: u8,
    ends_message: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxState {
    /// Built, `start` not called yet.
    Idle,
    /// ENQ sent, waiting for ACK/NAK/ENQ.
    Bidding,
    /// ENQ was NAKed: waiting 10 s before bidding again.
    Backoff,
    /// A frame was sent, waiting for ACK/NAK/EOT.
    AwaitingReply,
    /// Contention lost; `start` may be called again.
    Yielded,
    /// Done or aborted.
    Finished,
}

/// E1381 sender state machine (protocols.md §1.1), sans-IO.
///
/// Messages (record texts, records separated by CR) are split into frames of at most `max_text`
/// bytes when built: ETB on intermediate frames, ETX on the last frame of each message, every
/// message in new frames, FN from 1 wrapping 7→0 across the whole transfer.
///
/// Receiver interrupt (EOT in place of ACK, §1.1 "Receiver interrupt"): E1381 lets the sender
/// ignore it (GeneXpert does). This sender honours it at the next message boundary: the frame is
/// taken as acknowledged, the current message is finished (a receiver discards half messages),
/// then EOT and [`AbortReason::ReceiverInterrupt`]. The caller must then not bid again for 15 s
/// or until the device has sent a message, and resends `messages[messages_sent()..]`.
///
/// Any reply byte other than ACK, NAK or EOT is ignored (the 15 s timer keeps running); after
/// acting on a reply the rest of that chunk is dropped, since it was sent before the device saw
/// our next frame and cannot be a reply to it (a stray duplicated ACK must not skip a frame).
#[derive(Debug, Clone)]
pub struct Sender {
    frames: Vec<OutFrame>,
    messages_total: usize,
    messages_sent: usize,
    next: usize,
    state: TxState,
    attempts: u32,
    bids: u32,
    interrupted: bool,
    deadline: Option<Instant>,
    /// Bytes from the device's ENQ on, kept at [`TxEvent::Yield`] for the receiver.
    handover: Vec<u8>,
}

impl Sender {
    /// `max_text` is the text bytes per frame (the standard's 240 = [`STANDARD_MAX_TEXT`]);
    /// it is clamped to 1..=[`FRAME_CAPACITY`]. An empty message is sent as one empty end frame.
    pub fn new(messages: Vec<Vec<u8>>, max_text: usize) -> Self {
        let max_text = max_text.clamp(1, FRAME_CAPACITY);
        let mut frames = Vec::new();
        let mut number = 1u8;
        for message in &messages {
            let mut chunks: Vec<&[u8]> = message.chunks(max_text).collect();
            if chunks.is_empty() {
                chunks.push(&[]);
            }
            let count = chunks.len();
            for (i, chunk) in chunks.into_iter().enumerate() {
                let ends_message = i + 1 == count;
                frames.push(OutFrame {
                    wire: encode_frame(number, chunk, ends_message),
                    number,
                    ends_message,
                });
                number = (number + 1) % 8;
            }
        }
        Self {
            frames,
            messages_total: messages.len(),
            messages_sent: 0,
            next: 0,
            state: TxState::Idle,
            attempts: 0,
            bids: 0,
            interrupted: false,
            deadline: None,
            handover: Vec::new(),
        }
    }

    /// Bid for the line: sends ENQ. Works when new or after [`TxEvent::Yield`]; otherwise a no-op.
    /// With no messages the session is ENQ … EOT, the link test of §1.1.
    pub fn start(&mut self, now: Instant) -> Vec<TxEvent> {
        let mut out = Vec::new();
        if matches!(self.state, TxState::Idle | TxState::Yielded) {
            self.bids = 0;
            self.bid(now, &mut out);
        }
        out
    }

    /// Feed bytes read from the device.
    pub fn feed(&mut self, bytes: &[u8], now: Instant) -> Vec<TxEvent> {
        let mut out = Vec::new();
        for (i, &b) in bytes.iter().enumerate() {
            match (self.state, b) {
                (TxState::Bidding | TxState::Backoff, ENQ) => {
                    self.state = TxState::Yielded;
                    self.deadline = None;
                    self.handover = bytes.get(i..).unwrap_or_default().to_vec();
                    out.push(TxEvent::Yield);
                    break;
                }
                (TxState::Bidding, ACK) => {
                    self.next = 0;
                    self.send_next_or_finish(now, &mut out);
                    break;
                }
                (TxState::Bidding, NAK) => {
                    if self.bids >= MAX_ATTEMPTS {
                        self.finish(
                            None,
                            &mut out,
                            TxEvent::Aborted(AbortReason::ReceiverBusy {
                                attempts: self.bids,
                            }),
                        );
                    } else {
                        self.state = TxState::Backoff;
                        self.deadline = now.checked_add(BUSY_BACKOFF);
                    }
                    break;
                }
                (TxState::AwaitingReply, ACK | EOT) => {
                    if b == EOT {
                        self.interrupted = true;
                    }
                    self.acknowledged(now, &mut out);
                    break;
                }
                (TxState::AwaitingReply, NAK) => {
                    if self.attempts >= MAX_ATTEMPTS {
                        let frame = self.current_number();
                        let attempts = self.attempts;
                        self.finish(
                            Some(EOT),
                            &mut out,
                            TxEvent::Aborted(AbortReason::TooManyRetries { frame, attempts }),
                        );
                    } else {
                        self.send_current(now, &mut out);
                    }
                    break;
                }
                _ => {}
            }
        }
        out
    }

    /// Check the timers: 15 s for a reply (→ EOT, aborted), 10 s busy back-off (→ ENQ again).
    pub fn poll_timeout(&mut self, now: Instant) -> Vec<TxEvent> {
        let mut out = Vec::new();
        let expired = self.deadline.is_some_and(|d| now >= d);
        if !expired {
            return out;
        }
        match self.state {
            TxState::Bidding => {
                self.finish(
                    Some(EOT),
                    &mut out,
                    TxEvent::Aborted(AbortReason::NoReplyToEnq),
                );
            }
            TxState::Backoff => self.bid(now, &mut out),
            TxState::AwaitingReply => {
                let frame = self.current_number();
                self.finish(
                    Some(EOT),
                    &mut out,
                    TxEvent::Aborted(AbortReason::NoReplyToFrame { frame }),
                );
            }
            TxState::Idle | TxState::Yielded | TxState::Finished => self.deadline = None,
        }
        out
    }

    /// When a timer fires, if one is running.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// After [`TxEvent::Yield`]: the device's ENQ and the bytes that followed it in the same
    /// chunk, to feed to a [`Receiver`] (it ACKs the ENQ). Empty otherwise or when taken twice.
    pub fn take_handover(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.handover)
    }

    /// Messages whose every frame was acknowledged (a prefix of the list given to `new`).
    pub fn messages_sent(&self) -> usize {
        self.messages_sent
    }

    /// True after [`TxEvent::Done`] or [`TxEvent::Aborted`].
    pub fn is_finished(&self) -> bool {
        self.state == TxState::Finished
    }

    fn bid(&mut self, now: Instant, out: &mut Vec<TxEvent>) {
        self.bids += 1;
        self.state = TxState::Bidding;
        self.deadline = now.checked_add(REPLY_TIMEOUT);
        out.push(TxEvent::Send(vec![ENQ]));
    }

    fn current_number(&self) -> u8 {
        self.frames.get(self.next).map_or(0, |f| f.number)
    }

    /// The frame at `next` was acknowledged (ACK, or EOT = receiver interrupt).
    fn acknowledged(&mut self, now: Instant, out: &mut Vec<TxEvent>) {
        let ends_message = self.frames.get(self.next).is_some_and(|f| f.ends_message);
        if ends_message {
            self.messages_sent += 1;
        }
        self.next += 1;
        if self.interrupted && ends_message && self.next < self.frames.len() {
            let reason = AbortReason::ReceiverInterrupt {
                messages_sent: self.messages_sent,
                messages_total: self.messages_total,
            };
            self.finish(Some(EOT), out, TxEvent::Aborted(reason));
        } else {
            self.send_next_or_finish(now, out);
        }
    }

    fn send_next_or_finish(&mut self, now: Instant, out: &mut Vec<TxEvent>) {
        if self.next < self.frames.len() {
            self.attempts = 0;
            self.send_current(now, out);
        } else {
            self.finish(Some(EOT), out, TxEvent::Done);
        }
    }

    fn send_current(&mut self, now: Instant, out: &mut Vec<TxEvent>) {
        let Some(frame) = self.frames.get(self.next) else {
            return;
        };
        self.attempts += 1;
        self.state = TxState::AwaitingReply;
        self.deadline = now.checked_add(REPLY_TIMEOUT);
        out.push(TxEvent::Send(frame.wire.clone()));
    }

    fn finish(&mut self, send: Option<u8>, out: &mut Vec<TxEvent>, event: TxEvent) {
        if let Some(byte) = send {
            out.push(TxEvent::Send(vec![byte]));
        }
        out.push(event);
        self.state = TxState::Finished;
        self.deadline = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn rx() -> Receiver {
        Receiver::new(ReceiverLimits::default())
    }

    /// A receiver in the transfer phase (ENQ already ACKed).
    fn rx_in_transfer(t: Instant) -> Receiver {
        let mut r = rx();
        assert_eq!(
            r.feed(&[ENQ], t),
            vec![RxEvent::Reply(ACK), RxEvent::TransferStarted]
        );
        r
    }

    fn frame_event(number: u8, text: &[u8], last: bool) -> RxEvent {
        RxEvent::Frame {
            number,
            text: text.to_vec(),
            last,
        }
    }

    /// Worked example of protocols.md §1.1 "Checksum" (Horiba Pentra XLR, Sample S10).
    const PENTRA_H: &[u8] = b"H|\\^&|||PentraXLR^ABX|||||||P|E1394-97|20220727121551\r";
    const PENTRA_P: &[u8] = b"P|1||||Mohale^Rita||19771201|F\r";

    #[test]
    fn worked_example_checksums_match_protocols_md() {
        let mut h = b"1".to_vec();
        h.extend_from_slice(PENTRA_H);
        h.push(ETX);
        assert_eq!(checksum(&h), 0x16);
        let mut p = b"2".to_vec();
        p.extend_from_slice(PENTRA_P);
        p.push(ETX);
        assert_eq!(checksum(&p), 0xC9);
        assert_eq!(
            encode_frame(2, PENTRA_P, true),
            b"\x022P|1||||Mohale^Rita||19771201|F\r\x03C9\r\n".to_vec()
        );
        assert_eq!(checksum_chars(0x5B), *b"5B");
        assert_eq!(parse_checksum_chars(b'5', b'b'), Some(0x5B));
        assert_eq!(parse_checksum_chars(b'+', b'1'), None);
    }

    #[test]
    fn enq_is_acked_and_good_frame_is_delivered_then_acked_on_answer() {
        let t = Instant::now();
        let mut r = rx_in_transfer(t);
        assert_eq!(
            r.feed(&encode_frame(1, PENTRA_H, true), t),
            vec![frame_event(1, PENTRA_H, true)]
        );
        assert!(r.awaiting_answer());
        assert_eq!(r.answer_frame(true, t), vec![RxEvent::Reply(ACK)]);
        assert_eq!(r.feed(&encode_frame(2, PENTRA_P, true), t).len(), 1);
        assert_eq!(r.answer_frame(true, t), vec![RxEvent::Reply(ACK)]);
        assert_eq!(r.feed(&[EOT], t), vec![RxEvent::EndOfTransfer]);
        assert!(!r.in_transfer());
        assert_eq!(r.stats().frames_accepted, 2);
        assert_eq!(r.stats().garbage_bytes, 0);
    }

    #[test]
    fn nak_on_bad_checksum_then_accepts_retransmission() {
        let t = Instant::now();
        let mut r = rx_in_transfer(t);
        let good = encode_frame(1, PENTRA_H, true);
        let mut bad = good.clone();
        bad[5] ^= 0x01; // one flipped bit in the text
        let events = r.feed(&bad, t);
        assert!(matches!(
            events.as_slice(),
            [
                RxEvent::Rejected(FrameError::ChecksumMismatch {
                    frame: 1,
                    actual: 0x16,
                    ..
                }),
                RxEvent::Reply(NAK)
            ]
        ));
        assert_eq!(r.feed(&good, t), vec![frame_event(1, PENTRA_H, true)]);
        assert_eq!(r.answer_frame(true, t), vec![RxEvent::Reply(ACK)]);
        assert_eq!(r.stats().naks_sent, 1);
        assert_eq!(r.stats().frames_accepted, 1);
    }

    #[test]
    fn frame_number_wraps_seven_to_zero() {
        let t = Instant::now();
        let mut r = rx_in_transfer(t);
        let mut numbers = Vec::new();
        for i in 1..=10u8 {
            let events = r.feed(&encode_frame(i % 8, b"R|1\r", false), t);
            match events.as_slice() {
                [RxEvent::Frame { number, .. }] => numbers.push(*number),
                other => panic!("frame {i}: {other:?}"),
            }
            assert_eq!(r.answer_frame(true, t), vec![RxEvent::Reply(ACK)]);
        }
        assert_eq!(numbers, vec![1, 2, 3, 4, 5, 6, 7, 0, 1, 2]);
    }

    #[test]
    fn duplicate_frame_is_acked_not_delivered() {
        let t = Instant::now();
        let mut r = rx_in_transfer(t);
        let f1 = encode_frame(1, PENTRA_H, false);
        assert_eq!(r.feed(&f1, t).len(), 1);
        r.answer_frame(true, t);
        // Our ACK was lost: the sender repeats frame 1.
        assert_eq!(r.feed(&f1, t), vec![RxEvent::Reply(ACK)]);
        assert_eq!(r.stats().duplicates, 1);
        assert_eq!(r.stats().frames_accepted, 1);
        // And the sequence continues with 2.
        assert_eq!(
            r.feed(&encode_frame(2, PENTRA_P, true), t),
            vec![frame_event(2, PENTRA_P, true)]
        );
    }

    #[test]
    fn unexpected_frame_number_is_naked() {
        let t = Instant::now();
        let mut r = rx_in_transfer(t);
        r.feed(&encode_frame(1, b"H|\\^&\r", false), t);
        r.answer_frame(true, t);
        assert_eq!(
            r.feed(&encode_frame(4, b"P|1\r", false), t),
            vec![
                RxEvent::Rejected(FrameError::UnexpectedFrameNumber {
                    expected: 2,
                    got: 4
                }),
                RxEvent::Reply(NAK)
            ]
        );
    }

    #[test]
    fn naked_frame_retransmission_is_delivered_again() {
        let t = Instant::now();
        let mut r = rx_in_transfer(t);
        let f1 = encode_frame(1, PENTRA_H, true);
        assert_eq!(r.feed(&f1, t).len(), 1);
        // The store failed: NAK, and the retransmission must be delivered as new, not a duplicate.
        assert_eq!(r.answer_frame(false, t), vec![RxEvent::Reply(NAK)]);
        assert_eq!(r.feed(&f1, t), vec![frame_event(1, PENTRA_H, true)]);
        assert_eq!(r.stats().duplicates, 0);
    }

    #[test]
    fn etb_frames_deliver_in_order() {
        // Sample S12 style: cobas c111, one record per frame, ETB on all but the last.
        let t = Instant::now();
        let mut r = rx_in_transfer(t);
        let records: [&[u8]; 3] = [b"H|\\^&|||c111\r", b"P|1||\r", b"L|1|N\r"];
        let mut got = Vec::new();
        for (i, rec) in records.iter().enumerate() {
            let last = i == records.len() - 1;
            for ev in r.feed(&encode_frame(i as u8 + 1, rec, last), t) {
                if let RxEvent::Frame { text, last, .. } = ev {
                    got.push((text, last));
                }
            }
            r.answer_frame(true, t);
        }
        let expected: Vec<(Vec<u8>, bool)> = vec![
            (records[0].to_vec(), false),
            (records[1].to_vec(), false),
            (records[2].to_vec(), true),
        ];
        assert_eq!(got, expected);
    }

    #[test]
    fn cobas_c111_capture_frame_verifies() {
        // First frame of Sample S12 exactly as stored (LF-only trailer), lenient start without ENQ.
        let t = Instant::now();
        let mut r = rx();
        let wire = b"\x021H|\\^&|||SENAITE^Roche^c111^4.2.2.1730^1^13147|||||host|RSUPL^REAL|P|1|20230803131713\r\x17C6\n";
        let events = r.feed(wire, t);
        assert_eq!(events.first(), Some(&RxEvent::TransferStarted));
        assert!(matches!(
            events.get(1),
            Some(RxEvent::Frame {
                number: 1,
                last: false,
                ..
            })
        ));
    }

    #[test]
    fn timeout_after_30s_of_silence_reports_timed_out() {
        let t0 = Instant::now();
        let mut r = rx_in_transfer(t0);
        assert_eq!(r.deadline(), Some(t0 + 30 * S));
        r.feed(&encode_frame(1, PENTRA_H, false), t0 + 5 * S);
        // No timer while the caller decides.
        assert_eq!(r.deadline(), None);
        assert!(r.poll_timeout(t0 + 100 * S).is_empty());
        r.answer_frame(true, t0 + 6 * S);
        // The timer restarts with each reply.
        assert_eq!(r.deadline(), Some(t0 + 36 * S));
        assert!(r.poll_timeout(t0 + 35 * S).is_empty());
        assert_eq!(r.poll_timeout(t0 + 36 * S), vec![RxEvent::TimedOut]);
        assert!(!r.in_transfer());
        assert_eq!(r.deadline(), None);
        assert_eq!(r.stats().timeouts, 1);
        // The next transfer starts afresh and accepts frame 1 again.
        r.feed(&[ENQ], t0 + 40 * S);
        assert_eq!(
            r.feed(&encode_frame(1, PENTRA_H, false), t0 + 41 * S).len(),
            1
        );
    }

    #[test]
    fn bytes_of_a_slow_frame_keep_the_timer_alive() {
        let t0 = Instant::now();
        let mut r = rx_in_transfer(t0);
        let wire = encode_frame(1, PENTRA_H, true);
        let mut events = Vec::new();
        for (i, b) in wire.iter().enumerate() {
            let now = t0 + (i as u32) * S; // one byte a second: ~70 s for the frame
            events.extend(r.poll_timeout(now));
            events.extend(r.feed(&[*b], now));
        }
        assert_eq!(events, vec![frame_event(1, PENTRA_H, true)]);
    }

    #[test]
    fn garbage_between_frames_is_ignored_and_counted() {
        let t = Instant::now();
        let mut r = rx_in_transfer(t);
        let mut wire = b"xx".to_vec();
        wire.extend(encode_frame(1, PENTRA_H, false));
        assert_eq!(r.feed(&wire, t), vec![frame_event(1, PENTRA_H, false)]);
        let mut wire = b"noise".to_vec();
        wire.extend(encode_frame(2, PENTRA_P, true));
        assert_eq!(r.answer_frame(true, t), vec![RxEvent::Reply(ACK)]);
        assert_eq!(r.feed(&wire, t), vec![frame_event(2, PENTRA_P, true)]);
        assert_eq!(r.stats().garbage_bytes, 2 + 5);
    }

    #[test]
    fn oversize_frame_is_naked() {
        let t = Instant::now();
        let mut r = Receiver::new(ReceiverLimits {
            max_frame_bytes: 300,
            ..ReceiverLimits::default()
        });
        r.feed(&[ENQ], t);
        let long = vec![b'A'; 301];
        let mut wire = encode_frame(1, &long, true);
        // A good frame right behind it proves we skipped exactly to the end of the long one.
        wire.extend(encode_frame(1, &long[..300], true));
        let events = r.feed(&wire, t);
        assert_eq!(
            events,
            vec![
                RxEvent::Rejected(FrameError::TooLong { limit: 300 }),
                RxEvent::Reply(NAK),
                frame_event(1, &long[..300], true)
            ]
        );
        assert_eq!(r.stats().oversize, 1);
    }

    #[test]
    fn frames_longer_than_240_are_accepted() {
        let t = Instant::now();
        let mut r = rx_in_transfer(t);
        let text = vec![b'R'; 26_651]; // Yumizen H500 frame size
        assert_eq!(
            r.feed(&encode_frame(1, &text, true), t),
            vec![frame_event(1, &text, true)]
        );
    }

    #[test]
    fn lowercase_checksum_accepted() {
        let t = Instant::now();
        let mut r = rx_in_transfer(t);
        let wire = b"\x022P|1||||Mohale^Rita||19771201|F\r\x03c9\r\n";
        assert_eq!(r.feed(wire, t), vec![frame_event(2, PENTRA_P, true)]);
    }

    #[test]
    fn missing_crlf_trailer_tolerated() {
        let t = Instant::now();
        let mut r = rx_in_transfer(t);
        let mut f1 = encode_frame(1, PENTRA_H, false);
        f1.truncate(f1.len() - 2);
        let mut f2 = encode_frame(2, PENTRA_P, true);
        f2.truncate(f2.len() - 2);
        // The reply comes right after the checksum, without waiting for a trailer.
        assert_eq!(r.feed(&f1, t), vec![frame_event(1, PENTRA_H, false)]);
        r.answer_frame(true, t);
        // LF-only trailer (SENAITE captures) is also fine.
        f2.push(LF);
        assert_eq!(r.feed(&f2, t), vec![frame_event(2, PENTRA_P, true)]);
        r.answer_frame(true, t);
        assert_eq!(r.feed(&[EOT], t), vec![RxEvent::EndOfTransfer]);
        assert_eq!(r.stats().garbage_bytes, 0);
    }

    #[test]
    fn byte_by_byte_delivery() {
        let t = Instant::now();
        let mut r = rx();
        let mut wire = vec![ENQ];
        wire.extend(encode_frame(1, PENTRA_H, false));
        wire.extend(encode_frame(2, PENTRA_P, true));
        wire.push(EOT);
        let mut events = Vec::new();
        for b in &wire {
            events.extend(r.feed(&[*b], t));
            if r.awaiting_answer() {
                events.extend(r.answer_frame(true, t));
            }
        }
        assert_eq!(
            events,
            vec![
                RxEvent::Reply(ACK),
                RxEvent::TransferStarted,
                frame_event(1, PENTRA_H, false),
                RxEvent::Reply(ACK),
                frame_event(2, PENTRA_P, true),
                RxEvent::Reply(ACK),
                RxEvent::EndOfTransfer
            ]
        );
    }

    #[test]
    fn bytes_arriving_before_answer_are_processed_after_it() {
        let t = Instant::now();
        let mut r = rx();
        let mut wire = vec![ENQ];
        wire.extend(encode_frame(1, PENTRA_H, false));
        wire.extend(encode_frame(2, PENTRA_P, true));
        wire.push(EOT);
        let events = r.feed(&wire, t);
        assert_eq!(events.last(), Some(&frame_event(1, PENTRA_H, false)));
        assert_eq!(
            r.answer_frame(true, t),
            vec![RxEvent::Reply(ACK), frame_event(2, PENTRA_P, true)]
        );
        assert_eq!(
            r.answer_frame(true, t),
            vec![RxEvent::Reply(ACK), RxEvent::EndOfTransfer]
        );
        // Nothing pending: answering again does nothing.
        assert!(r.answer_frame(true, t).is_empty());
    }

    #[test]
    fn stx_without_enq_starts_transfer_leniently() {
        let t = Instant::now();
        let mut r = rx();
        assert_eq!(
            r.feed(&encode_frame(1, PENTRA_H, true), t),
            vec![RxEvent::TransferStarted, frame_event(1, PENTRA_H, true)]
        );
        assert_eq!(r.stats().starts_without_enq, 1);
    }

    #[test]
    fn first_frame_may_have_any_number() {
        let t = Instant::now();
        let mut r = rx_in_transfer(t);
        assert_eq!(
            r.feed(&encode_frame(5, PENTRA_H, false), t),
            vec![frame_event(5, PENTRA_H, false)]
        );
        r.answer_frame(true, t);
        assert_eq!(r.stats().odd_first_frame_numbers, 1);
        assert_eq!(r.feed(&encode_frame(6, PENTRA_P, true), t).len(), 1);
    }

    #[test]
    fn new_enq_mid_transfer_discards_partial_state() {
        let t = Instant::now();
        let mut r = rx_in_transfer(t);
        r.feed(&encode_frame(1, PENTRA_H, false), t);
        r.answer_frame(true, t);
        // Half a frame, then the device starts over.
        let f2 = encode_frame(2, PENTRA_P, true);
        let mut wire = f2[..10].to_vec();
        wire.push(ENQ);
        assert_eq!(
            r.feed(&wire, t),
            vec![RxEvent::Reply(ACK), RxEvent::TransferStarted]
        );
        assert_eq!(r.stats().truncated_frames, 1);
        assert_eq!(r.stats().restarts, 1);
        // Frame 1 is new again (not a duplicate) in the new transfer.
        assert_eq!(
            r.feed(&encode_frame(1, PENTRA_H, false), t),
            vec![frame_event(1, PENTRA_H, false)]
        );
    }

    #[test]
    fn truncated_frame_followed_by_stx_is_dropped() {
        let t = Instant::now();
        let mut r = rx_in_transfer(t);
        let f1 = encode_frame(1, PENTRA_H, true);
        let mut wire = f1[..20].to_vec();
        wire.extend(&f1);
        assert_eq!(r.feed(&wire, t), vec![frame_event(1, PENTRA_H, true)]);
        assert_eq!(r.stats().truncated_frames, 1);
    }

    #[test]
    fn enq_then_eot_is_an_empty_session() {
        let t = Instant::now();
        let mut r = rx();
        assert_eq!(
            r.feed(&[ENQ, EOT], t),
            vec![
                RxEvent::Reply(ACK),
                RxEvent::TransferStarted,
                RxEvent::EndOfTransfer
            ]
        );
    }

    #[test]
    fn invalid_control_character_is_naked() {
        let t = Instant::now();
        let mut r = rx_in_transfer(t);
        assert_eq!(
            r.feed(&encode_frame(1, b"P|1\x10|\r", true), t),
            vec![
                RxEvent::Rejected(FrameError::InvalidCharacter {
                    frame: 1,
                    byte: 0x10,
                    offset: 3
                }),
                RxEvent::Reply(NAK)
            ]
        );
        // LF in text is tolerated.
        assert_eq!(r.feed(&encode_frame(1, b"P|1\n", true), t).len(), 1);
    }

    #[test]
    fn bad_frame_number_and_checksum_chars_are_naked() {
        let t = Instant::now();
        let mut r = rx_in_transfer(t);
        let e = r.feed(b"\x029P\x03zz\r\n", t);
        assert_eq!(
            e,
            vec![
                RxEvent::Rejected(FrameError::InvalidFrameNumber { byte: b'9' }),
                RxEvent::Reply(NAK)
            ]
        );
        let e = r.feed(b"\x021P\x03zz\r\n", t);
        assert_eq!(
            e,
            vec![
                RxEvent::Rejected(FrameError::BadChecksumChars {
                    frame: 1,
                    chars: *b"zz"
                }),
                RxEvent::Reply(NAK)
            ]
        );
        let e = r.feed(b"\x02\x0303\r\n", t);
        assert_eq!(
            e,
            vec![
                RxEvent::Rejected(FrameError::MissingFrameNumber),
                RxEvent::Reply(NAK)
            ]
        );
        // An empty frame with a number is legal.
        assert_eq!(
            r.feed(&encode_frame(1, b"", true), t),
            vec![frame_event(1, b"", true)]
        );
    }

    #[test]
    fn error_messages_name_what_failed() {
        let e = FrameError::ChecksumMismatch {
            frame: 3,
            expected: 0x16,
            actual: 0xC9,
        };
        assert_eq!(
            e.to_string(),
            "frame 3: checksum mismatch: computed 16, frame carries C9"
        );
        let e = FrameError::BadChecksumChars {
            frame: 1,
            chars: *b"zq",
        };
        assert!(e.to_string().contains("\"zq\""));
    }

    #[test]
    fn reset_returns_to_neutral_and_keeps_counters() {
        let t = Instant::now();
        let mut r = rx_in_transfer(t);
        r.feed(&encode_frame(1, PENTRA_H, false), t);
        r.reset();
        assert!(!r.in_transfer());
        assert!(!r.awaiting_answer());
        assert_eq!(r.deadline(), None);
        assert!(r.answer_frame(true, t).is_empty());
        r.feed(b"junk", t);
        assert_eq!(r.stats().garbage_bytes, 4);
    }

    #[test]
    fn pending_buffer_is_bounded() {
        let t = Instant::now();
        let mut r = Receiver::new(ReceiverLimits {
            max_frame_bytes: 100,
            ..ReceiverLimits::default()
        });
        r.feed(&[ENQ], t);
        let mut wire = encode_frame(1, b"H|\\^&\r", false);
        wire.extend(vec![b'x'; 1000]);
        r.feed(&wire, t);
        // Room for max_frame_bytes + 64: the frame's CR LF trailer and 162 of the x's.
        assert_eq!(r.stats().garbage_bytes, 1000 - 162);
        r.answer_frame(true, t);
        assert_eq!(r.stats().garbage_bytes, 1000);
    }

    /// Deterministic pseudo-random bytes (xorshift), heavy on control characters.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let alphabet = [STX, ETX, ETB, EOT, ENQ, CR, LF, b'1', b'A', b'0'];
                if x & 3 == 0 {
                    alphabet[(x >> 8) as usize % alphabet.len()]
                } else {
                    (x >> 16) as u8
                }
            })
            .collect()
    }

    #[test]
    fn arbitrary_bytes_do_not_panic() {
        let t0 = Instant::now();
        for seed in 1..200u64 {
            let mut r = Receiver::new(ReceiverLimits {
                max_frame_bytes: (seed as usize) % 50,
                ..ReceiverLimits::default()
            });
            let data = noise(seed, 2000);
            for (i, chunk) in data.chunks(1 + seed as usize % 17).enumerate() {
                let now = t0 + (i as u32) * S;
                r.feed(chunk, now);
                r.answer_frame(i % 2 == 0, now);
                r.poll_timeout(now);
            }
            let _ = deframe(&data);
            let mut s = Sender::new(vec![data.clone()], 240);
            s.start(t0);
            for (i, chunk) in data.chunks(7).enumerate() {
                s.feed(chunk, t0 + (i as u32) * S);
                s.poll_timeout(t0 + (i as u32) * S);
            }
        }
    }

    // --- Sender ---

    fn sent_bytes(events: &[TxEvent]) -> Vec<Vec<u8>> {
        events
            .iter()
            .filter_map(|e| match e {
                TxEvent::Send(b) => Some(b.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn sender_splits_message_into_240_byte_frames() {
        let t = Instant::now();
        let message: Vec<u8> = (0..500).map(|i| b'a' + (i % 26) as u8).collect();
        let mut s = Sender::new(vec![message.clone()], STANDARD_MAX_TEXT);
        assert_eq!(s.start(t), vec![TxEvent::Send(vec![ENQ])]);
        let f1 = s.feed(&[ACK], t);
        assert_eq!(
            f1,
            vec![TxEvent::Send(encode_frame(1, &message[..240], false))]
        );
        let f2 = s.feed(&[ACK], t);
        assert_eq!(
            f2,
            vec![TxEvent::Send(encode_frame(2, &message[240..480], false))]
        );
        let f3 = s.feed(&[ACK], t);
        assert_eq!(
            f3,
            vec![TxEvent::Send(encode_frame(3, &message[480..], true))]
        );
        assert_eq!(
            s.feed(&[ACK], t),
            vec![TxEvent::Send(vec![EOT]), TxEvent::Done]
        );
        assert_eq!(s.messages_sent(), 1);
        assert!(s.is_finished());
        // Upper-case hex checksum, ETB on intermediate frames, CR LF trailer.
        let wire = &sent_bytes(&f1)[0];
        let n = wire.len();
        assert_eq!(wire[n - 5], ETB);
        assert!(wire[n - 4..n - 2].iter().all(|c| !c.is_ascii_lowercase()));
        assert_eq!(&wire[n - 2..], &[CR, LF]);
    }

    #[test]
    fn every_message_begins_a_new_frame() {
        let t = Instant::now();
        let mut s = Sender::new(
            vec![b"H|\\^&\rL|1\r".to_vec(), b"H|\\^&\rL|2\r".to_vec()],
            240,
        );
        s.start(t);
        assert_eq!(
            s.feed(&[ACK], t),
            vec![TxEvent::Send(encode_frame(1, b"H|\\^&\rL|1\r", true))]
        );
        assert_eq!(
            s.feed(&[ACK], t),
            vec![TxEvent::Send(encode_frame(2, b"H|\\^&\rL|2\r", true))]
        );
    }

    #[test]
    fn sender_retransmits_on_nak_and_aborts_after_six_attempts() {
        let t = Instant::now();
        let mut s = Sender::new(vec![PENTRA_H.to_vec()], 240);
        s.start(t);
        let first = s.feed(&[ACK], t);
        let f = encode_frame(1, PENTRA_H, true);
        assert_eq!(first, vec![TxEvent::Send(f.clone())]);
        for _ in 2..=6 {
            assert_eq!(s.feed(&[NAK], t), vec![TxEvent::Send(f.clone())]);
        }
        assert_eq!(
            s.feed(&[NAK], t),
            vec![
                TxEvent::Send(vec![EOT]),
                TxEvent::Aborted(AbortReason::TooManyRetries {
                    frame: 1,
                    attempts: 6
                })
            ]
        );
        assert_eq!(s.messages_sent(), 0);
    }

    #[test]
    fn sender_nak_to_enq_waits_10s_and_rebids() {
        let t0 = Instant::now();
        let mut s = Sender::new(vec![PENTRA_H.to_vec()], 240);
        s.start(t0);
        assert!(s.feed(&[NAK], t0 + S).is_empty());
        assert_eq!(s.deadline(), Some(t0 + 11 * S));
        assert!(s.poll_timeout(t0 + 10 * S).is_empty());
        assert_eq!(s.poll_timeout(t0 + 11 * S), vec![TxEvent::Send(vec![ENQ])]);
        // Busy six times in all → give up.
        for _ in 0..4 {
            s.feed(&[NAK], t0);
            s.poll_timeout(t0 + 100 * S);
        }
        assert_eq!(
            s.feed(&[NAK], t0),
            vec![TxEvent::Aborted(AbortReason::ReceiverBusy { attempts: 6 })]
        );
    }

    #[test]
    fn sender_times_out_after_15s_without_reply() {
        let t0 = Instant::now();
        let mut s = Sender::new(vec![PENTRA_H.to_vec()], 240);
        s.start(t0);
        assert_eq!(s.deadline(), Some(t0 + 15 * S));
        assert_eq!(
            s.poll_timeout(t0 + 15 * S),
            vec![
                TxEvent::Send(vec![EOT]),
                TxEvent::Aborted(AbortReason::NoReplyToEnq)
            ]
        );
        let mut s = Sender::new(vec![PENTRA_H.to_vec()], 240);
        s.start(t0);
        s.feed(&[ACK], t0 + S);
        assert!(s.poll_timeout(t0 + 15 * S).is_empty());
        assert_eq!(
            s.poll_timeout(t0 + 16 * S),
            vec![
                TxEvent::Send(vec![EOT]),
                TxEvent::Aborted(AbortReason::NoReplyToFrame { frame: 1 })
            ]
        );
    }

    #[test]
    fn sender_contention_yields() {
        let t = Instant::now();
        let mut s = Sender::new(vec![PENTRA_H.to_vec()], 240);
        s.start(t);
        // The analyzer bid at the same time and already sent its first frame after its ENQ.
        let mut incoming = vec![ENQ];
        incoming.extend(encode_frame(1, PENTRA_P, true));
        assert_eq!(s.feed(&incoming, t), vec![TxEvent::Yield]);
        let handover = s.take_handover();
        assert_eq!(handover, incoming);
        assert!(s.take_handover().is_empty());
        assert_eq!(s.deadline(), None);
        // The caller hands the bytes to a receiver, which ACKs the device's ENQ.
        let mut r = rx();
        assert_eq!(
            r.feed(&handover, t),
            vec![
                RxEvent::Reply(ACK),
                RxEvent::TransferStarted,
                frame_event(1, PENTRA_P, true)
            ]
        );
        // Later the sender bids again.
        assert_eq!(s.start(t), vec![TxEvent::Send(vec![ENQ])]);
    }

    #[test]
    fn receiver_interrupt_finishes_current_message_then_stops() {
        let t = Instant::now();
        let m1 = vec![b'a'; 300]; // two frames
        let m2 = b"second".to_vec();
        let mut s = Sender::new(vec![m1.clone(), m2], 240);
        s.start(t);
        s.feed(&[ACK], t);
        // EOT in place of ACK for frame 1 of message 1: the frame counts as received,
        // message 1 is finished, then the sender stops.
        assert_eq!(
            s.feed(&[EOT], t),
            vec![TxEvent::Send(encode_frame(2, &m1[240..], true))]
        );
        assert_eq!(
            s.feed(&[ACK], t),
            vec![
                TxEvent::Send(vec![EOT]),
                TxEvent::Aborted(AbortReason::ReceiverInterrupt {
                    messages_sent: 1,
                    messages_total: 2
                })
            ]
        );
        assert_eq!(s.messages_sent(), 1);
    }

    #[test]
    fn sender_without_messages_does_the_link_test() {
        let t = Instant::now();
        let mut s = Sender::new(Vec::new(), 240);
        assert_eq!(s.start(t), vec![TxEvent::Send(vec![ENQ])]);
        assert_eq!(
            s.feed(&[ACK], t),
            vec![TxEvent::Send(vec![EOT]), TxEvent::Done]
        );
    }

    #[test]
    fn sender_ignores_rest_of_chunk_after_a_reply() {
        let t = Instant::now();
        let mut s = Sender::new(vec![vec![b'x'; 500]], 240);
        s.start(t);
        s.feed(&[ACK], t);
        // A doubled ACK must not skip frame 3.
        let events = s.feed(&[ACK, ACK], t);
        assert_eq!(events.len(), 1);
        let wire = &sent_bytes(&events)[0];
        assert_eq!(wire[1], b'2');
    }

    /// Wire a Sender to a Receiver: 27 frames (FN wraps 7→0 three times), with one NAKed store,
    /// one corrupted frame and one lost ACK on the way.
    #[test]
    fn sender_receiver_round_trip_27_frames() {
        let t0 = Instant::now();
        let message: Vec<u8> = (0..(26 * 240 + 100))
            .map(|i| {
                if i % 50 == 49 {
                    CR
                } else {
                    b'0' + (i % 10) as u8
                }
            })
            .collect();
        let second = b"H|\\^&\rL|1|N\r".to_vec();
        let mut s = Sender::new(vec![message.clone(), second.clone()], 240);
        let mut r = rx();
        let mut received = Vec::new();
        let mut messages = Vec::new();
        let mut numbers = Vec::new();
        let mut to_receiver = sent_bytes(&s.start(t0));
        let mut done = false;
        let mut step = 0u32;
        while !done {
            step += 1;
            assert!(step < 1000, "no progress");
            let now = t0 + step * S;
            let mut to_sender = Vec::new();
            for mut bytes in std::mem::take(&mut to_receiver) {
                if step == 20
                    && let Some(b) = bytes.get_mut(3)
                {
                    *b ^= 0x01; // line noise on one frame → NAK, retransmission
                }
                for ev in r.feed(&bytes, now) {
                    match ev {
                        RxEvent::Reply(b) => to_sender.push(b),
                        RxEvent::Frame { number, text, last } => {
                            // The store fails once: NAK, and the sender repeats the frame.
                            let accept = step != 10;
                            if accept {
                                numbers.push(number);
                                received.extend(text);
                                if last {
                                    messages.push(std::mem::take(&mut received));
                                }
                            }
                            for ev in r.answer_frame(accept, now) {
                                if let RxEvent::Reply(b) = ev {
                                    to_sender.push(b);
                                }
                            }
                        }
                        RxEvent::EndOfTransfer => done = true,
                        RxEvent::Rejected(_) | RxEvent::TransferStarted => {}
                        RxEvent::TimedOut => panic!("timed out"),
                    }
                }
            }
            if step == 15 {
                // Our ACK is garbled into a NAK on the way: the sender repeats a frame the
                // receiver already accepted, which must be ACKed as a duplicate, not delivered.
                to_sender = vec![NAK];
            }
            let events = s.feed(&to_sender, now);
            to_receiver = sent_bytes(&events);
            if events.contains(&TxEvent::Done) {
                assert!(s.is_finished());
            }
            assert!(
                !events.iter().any(|e| matches!(e, TxEvent::Aborted(_))),
                "{events:?}"
            );
        }
        assert_eq!(messages, vec![message, second]);
        assert_eq!(numbers.len(), 28);
        let expected: Vec<u8> = (1..=28u8).map(|i| i % 8).collect();
        assert_eq!(numbers, expected);
        assert_eq!(r.stats().duplicates, 1);
        assert_eq!(r.stats().naks_sent, 2);
        assert_eq!(r.stats().frames_accepted, 28);
        assert_eq!(s.messages_sent(), 2);
    }

    // --- deframe ---

    #[test]
    fn deframe_joins_frames_and_skips_retransmissions() {
        let mut capture = encode_frame(1, PENTRA_H, true);
        capture.extend(encode_frame(1, PENTRA_H, true)); // retransmission
        capture.extend(b"\x022P|1||||Mohale^Rita||19771201|F\r\x03c9\n"); // lower case, LF only
        let d = deframe(&capture);
        assert_eq!(d.frames, 2);
        assert_eq!(d.bad_checksums, 0);
        let mut text = PENTRA_H.to_vec();
        text.extend_from_slice(PENTRA_P);
        assert_eq!(d.text, text);
    }

    #[test]
    fn deframe_restarts_at_stx_inside_truncated_frame() {
        let f = encode_frame(1, PENTRA_H, true);
        let mut capture = f[..15].to_vec();
        capture.extend(&f);
        capture.extend(b"\x02\x03\x02"); // empty frame, then a dangling STX
        let d = deframe(&capture);
        assert_eq!(d.frames, 1);
        assert_eq!(d.text, PENTRA_H.to_vec());
        assert_eq!(d.bad_checksums, 0);
    }
}
