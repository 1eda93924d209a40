//! MLLP, the Minimal Lower Layer Protocol (protocols.md §1.3 "Framing"): every HL7 message
//! travels as `<VT> message <FS><CR>`. [`Deframer`] turns a byte stream into those messages,
//! [`frame`] wraps one for sending.
//!
//! Leniency, from what real peers do:
//! * `<FS>` without the `<CR>` after it ends a message (the message is handed out at `<FS>`, so a
//!   peer that never sends the `<CR>` still gets its ACK);
//! * bytes between frames are counted as garbage and skipped, except `<CR>`/`<LF>` (line ends
//!   some senders put after `<FS><CR>`);
//! * a `<VT>` inside a frame means the sender started over: the unfinished message is dropped
//!   (reported) and the new one read;
//! * a message longer than the limit is reported once and skipped up to the next `<VT>`.
//!
//! The limit is a runtime setting (`limits.max_message_bytes`, up to 16 MiB), so the buffer is a
//! `Vec` with an explicit length check rather than a `heapless::Vec` with a compile-time size.

/// Start block.
pub const VT: u8 = 0x0B;
/// End block.
pub const FS: u8 = 0x1C;
pub const CR: u8 = 0x0D;
pub const LF: u8 = 0x0A;

/// Wrap one message for the wire: `<VT> msg <FS><CR>`.
pub fn frame(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 3);
    out.push(VT);
    out.extend_from_slice(msg);
    out.push(FS);
    out.push(CR);
    out
}

/// What went wrong at the framing layer. None of these ends the connection.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum MllpError {
    #[error("MLLP message longer than {limit} bytes; skipped up to the next <VT>")]
    TooLong { limit: usize },
    #[error("{bytes} byte(s) outside any MLLP frame were skipped")]
    Garbage { bytes: usize },
    #[error(
        "a new <VT> arrived inside an unfinished frame; its first {dropped} byte(s) were dropped"
    )]
    Restarted { dropped: usize },
}

/// One thing the deframer found in the bytes it was fed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deframed {
    /// A complete message.
    Message {
        /// The bytes between `<VT>` and `<FS>` (the HL7 message itself).
        text: Vec<u8>,
        /// The bytes as received, `<VT>` through `<FS>` inclusive (the optional `<CR>` after
        /// `<FS>` may not have arrived yet when the message is handed out, so it is not included).
        wire: Vec<u8>,
    },
    Error(MllpError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between frames.
    Idle,
    /// After `<VT>`, collecting the message.
    InFrame,
    /// The frame grew past the limit: discard until the next `<VT>`.
    Skipping,
    /// Just saw `<FS>`: a `<CR>` here belongs to the trailer.
    AfterEnd,
}

/// Sans-IO MLLP receiver: `feed` bytes, get complete messages and framing errors.
/// No clock: the caller drops a stalled half message with [`Deframer::drop_partial`].
#[derive(Debug, Clone)]
pub struct Deframer {
    max_message_bytes: usize,
    state: State,
    buf: Vec<u8>,
    garbage_total: usize,
}

impl Deframer {
    pub fn new(max_message_bytes: usize) -> Self {
        Self {
            max_message_bytes: max_message_bytes.max(1),
            state: State::Idle,
            buf: Vec::new(),
            garbage_total: 0,
        }
    }

    /// Bytes skipped outside frames since the deframer was made.
    pub fn garbage_bytes(&self) -> usize {
        self.garbage_total
    }

    /// A message has started and not ended (the caller's receive timer should run).
    pub fn in_frame(&self) -> bool {
        matches!(self.state, State::InFrame | State::Skipping)
    }

    /// Forget a half-received message (receive timeout, connection closed). Returns how many
    /// bytes of it were held.
    pub fn drop_partial(&mut self) -> usize {
        let n = self.buf.len();
        self.buf.clear();
        self.state = State::Idle;
        n
    }

    /// Feed received bytes; returns every message completed and every framing problem met,
    /// in stream order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Deframed> {
        let mut out = Vec::new();
        let mut garbage = 0usize;
        for &b in bytes {
            match (self.state, b) {
                (State::InFrame, VT) => {
                    out.push(Deframed::Error(MllpError::Restarted {
                        dropped: self.buf.len(),
                    }));
                    self.buf.clear();
                }
                (State::InFrame, FS) => {
                    let text = std::mem::take(&mut self.buf);
                    let mut wire = Vec::with_capacity(text.len() + 2);
                    wire.push(VT);
                    wire.extend_from_slice(&text);
                    wire.push(FS);
                    out.push(Deframed::Message { text, wire });
                    self.state = State::AfterEnd;
                }
                (State::InFrame, _) => {
                    if self.buf.len() >= self.max_message_bytes {
                        out.push(Deframed::Error(MllpError::TooLong {
                            limit: self.max_message_bytes,
                        }));
                        self.buf = Vec::new();
                        self.state = State::Skipping;
                    } else {
                        self.buf.push(b);
                    }
                }
                (_, VT) => {
                    if garbage > 0 {
                        out.push(Deframed::Error(MllpError::Garbage { bytes: garbage }));
                        garbage = 0;
                    }
                    self.buf.clear();
                    self.state = State::InFrame;
                }
                (State::Skipping, _) => {}
                (State::AfterEnd, CR) => self.state = State::Idle,
                (State::AfterEnd | State::Idle, CR | LF) => self.state = State::Idle,
                (State::AfterEnd | State::Idle, _) => {
                    self.state = State::Idle;
                    garbage += 1;
                    self.garbage_total = self.garbage_total.saturating_add(1);
                }
            }
        }
        if garbage > 0 {
            out.push(Deframed::Error(MllpError::Garbage { bytes: garbage }));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(out: &[Deframed]) -> Vec<&[u8]> {
        out.iter()
            .filter_map(|d| match d {
                Deframed::Message { text, .. } => Some(text.as_slice()),
                Deframed::Error(_) => None,
            })
            .collect()
    }

    fn errors(out: &[Deframed]) -> Vec<MllpError> {
        out.iter()
            .filter_map(|d| match d {
                Deframed::Error(e) => Some(e.clone()),
                Deframed::Message { .. } => None,
            })
            .collect()
    }

    #[test]
    fn frame_then_deframe_round_trips_byte_by_byte() {
        let wire = [frame(b"MSH|a\r"), frame(b"MSH|b")].concat();
        let mut d = Deframer::new(1024);
        let mut out = Vec::new();
        for b in &wire {
            out.extend(d.feed(std::slice::from_ref(b)));
        }
        assert_eq!(texts(&out), [&b"MSH|a\r"[..], b"MSH|b"]);
        assert!(errors(&out).is_empty());
        assert!(!d.in_frame());
        match &out[0] {
            Deframed::Message { wire, .. } => assert_eq!(wire, b"\x0bMSH|a\r\x1c"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fs_without_cr_ends_the_message() {
        let mut d = Deframer::new(1024);
        let out = d.feed(b"\x0bA\x1c\x0bB\x1c");
        assert_eq!(texts(&out), [&b"A"[..], b"B"]);
        assert!(errors(&out).is_empty());
    }

    #[test]
    fn garbage_between_frames_is_counted_and_skipped_but_line_ends_are_not_garbage() {
        let mut d = Deframer::new(1024);
        let out = d.feed(b"xyz\x0bA\x1c\r\n\r\x00\x0bB\x1c\r");
        assert_eq!(texts(&out), [&b"A"[..], b"B"]);
        assert_eq!(
            errors(&out),
            [
                MllpError::Garbage { bytes: 3 },
                MllpError::Garbage { bytes: 1 }
            ]
        );
        assert_eq!(d.garbage_bytes(), 4);
    }

    #[test]
    fn too_long_message_is_an_error_and_the_next_frame_is_read() {
        let mut d = Deframer::new(4);
        let out = d.feed(b"\x0b123456789\x1c\r\x0b1234\x1c\r");
        assert_eq!(texts(&out), [&b"1234"[..]]);
        assert_eq!(errors(&out), [MllpError::TooLong { limit: 4 }]);
    }

    #[test]
    fn vt_inside_a_frame_restarts_it() {
        let mut d = Deframer::new(100);
        let out = d.feed(b"\x0bhalf\x0bwhole\x1c\r");
        assert_eq!(texts(&out), [&b"whole"[..]]);
        assert_eq!(errors(&out), [MllpError::Restarted { dropped: 4 }]);
    }

    #[test]
    fn drop_partial_forgets_a_stalled_message() {
        let mut d = Deframer::new(100);
        assert!(d.feed(b"\x0bhalf").is_empty());
        assert!(d.in_frame());
        assert_eq!(d.drop_partial(), 4);
        assert!(!d.in_frame());
        // The rest of the stalled message is now garbage; the next frame is read.
        let out = d.feed(b"rest\x1c\r\x0bnext\x1c\r");
        assert_eq!(texts(&out), [&b"next"[..]]);
    }
}
