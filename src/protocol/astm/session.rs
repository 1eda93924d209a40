//! Receiver session: the E1381 link layer plus the message boundary of E1394, pure.
//!
//! The link layer hands over frames; this layer joins their text and decides when a message is
//! complete, which is when the gateway must commit before it answers the frame. Real analyzers
//! frame messages in every way (protocols.md §1.1 "How frames and records line up"): one record per
//! ETX frame (Pentra), ETB on all but the last (cobas c111), or the whole message cut every 240
//! characters mid-field (GeneXpert). So the boundary is the record layer's: a message is complete
//! when an ETX frame ends with its `L` (terminator) record. The frame that completes it is
//! answered only through [`Session::confirm`], after the caller's commit: ACK if it is stored, NAK
//! if not (the analyzer retransmits the frame and the commit is tried again).
//!
//! Two cases cannot wait for an answer, and are committed as soon as they are seen: a message
//! without an `L` record that ends with EOT, and one that a new `H` record follows. Their frames
//! were already ACKed; a standard sender always ends a message with `L`, so this is a fallback for
//! devices that omit it, not the normal path.

use super::link::{CR, FrameError, LF, Receiver, ReceiverLimits, RxEvent, encode_frame};
use std::time::Instant;

/// Limits of one receiving session.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub link: ReceiverLimits,
    /// Longest reassembled message; a longer one is NAKed frame by frame until EOT and dropped.
    pub max_message_bytes: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            link: ReceiverLimits::default(),
            max_message_bytes: 1 << 20,
        }
    }
}

/// A complete message for the caller to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompleteMessage {
    /// Record text as the record layer reads it (frames' text joined, nothing inserted).
    pub text: Vec<u8>,
    /// The frames as they crossed the wire (`<STX>FN text <ETB|ETX> C1 C2 <CR><LF>` each).
    pub wire: Vec<u8>,
}

/// Why a partial message was thrown away (never stored, never acknowledged as a whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// No frame or EOT for the receive timeout (30 s in the standard).
    Timeout,
    /// The message outgrew `max_message_bytes`.
    Oversize,
    /// The device started a new transfer (ENQ) in the middle of a message.
    Restarted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// Write this byte to the device now.
    Reply(u8),
    /// Commit this message, then call [`Session::confirm`] (which yields the frame's answer).
    Commit(CompleteMessage),
    /// A frame was refused (a NAK was sent); the device will retransmit it.
    Rejected(FrameError),
    /// A partial message was discarded.
    Dropped { reason: DropReason, bytes: usize },
    /// The device ended the transfer (EOT).
    EndOfTransfer,
}

#[derive(Debug)]
enum Pending {
    /// Nothing waits for a commit.
    None,
    /// The frame that completed the message waits for its answer.
    AnswerFrame,
    /// A message was committed because a new `H` frame arrived; this frame's text follows
    /// once the commit is confirmed, then the frame is answered.
    ThenFrame {
        text: Vec<u8>,
        wire: Vec<u8>,
        last: bool,
    },
    /// EOT arrived after an L-less message; no answer is owed.
    NoAnswer,
}

pub struct Session {
    link: Receiver,
    max_message: usize,
    text: Vec<u8>,
    wire: Vec<u8>,
    /// Refuse frames until the next EOT/ENQ (the message grew past the limit).
    discarding: bool,
    pending: Pending,
    /// Text and wire length of the last frame appended, to take it back on NAK.
    last_frame_len: (usize, usize),
}

impl Session {
    pub fn new(limits: SessionLimits) -> Self {
        Self {
            link: Receiver::new(limits.link),
            max_message: limits.max_message_bytes,
            text: Vec::new(),
            wire: Vec::new(),
            discarding: false,
            pending: Pending::None,
            last_frame_len: (0, 0),
        }
    }

    /// Feed bytes read from the device.
    pub fn feed(&mut self, bytes: &[u8], now: Instant) -> Vec<SessionEvent> {
        let events = self.link.feed(bytes, now);
        self.handle(events, now)
    }

    /// The caller's commit of the last [`SessionEvent::Commit`] ended: `stored` = it is durable.
    pub fn confirm(&mut self, stored: bool, now: Instant) -> Vec<SessionEvent> {
        match std::mem::replace(&mut self.pending, Pending::None) {
            Pending::None | Pending::NoAnswer => Vec::new(),
            Pending::AnswerFrame => {
                if stored {
                    self.clear();
                }
                // On NAK the text of the completing frame must not stay: the retransmission
                // brings it again.
                else {
                    self.undo_last_frame();
                }
                let events = self.link.answer_frame(stored, now);
                self.handle(events, now)
            }
            Pending::ThenFrame { text, wire, last } => {
                if !stored {
                    // The earlier message stays in the buffer; NAK the H frame so it comes again
                    // and the commit is retried first.
                    let events = self.link.answer_frame(false, now);
                    return self.handle(events, now);
                }
                self.clear();
                let mut out = Vec::new();
                self.on_frame(text, wire, last, now, &mut out);
                out
            }
        }
    }

    pub fn poll_timeout(&mut self, now: Instant) -> Vec<SessionEvent> {
        let events = self.link.poll_timeout(now);
        self.handle(events, now)
    }

    /// When [`Session::poll_timeout`] should next be called.
    pub fn deadline(&self) -> Option<Instant> {
        self.link.deadline()
    }

    /// Whether a commit is outstanding (the caller must confirm before feeding more).
    pub fn awaiting_commit(&self) -> bool {
        !matches!(self.pending, Pending::None)
    }

    pub fn link(&self) -> &Receiver {
        &self.link
    }

    fn handle(&mut self, events: Vec<RxEvent>, now: Instant) -> Vec<SessionEvent> {
        let mut out = Vec::new();
        for ev in events {
            match ev {
                RxEvent::Reply(b) => out.push(SessionEvent::Reply(b)),
                RxEvent::Rejected(e) => out.push(SessionEvent::Rejected(e)),
                RxEvent::TransferStarted => {
                    if !self.text.is_empty() {
                        out.push(self.drop_partial(DropReason::Restarted));
                    }
                    self.discarding = false;
                }
                RxEvent::TimedOut => {
                    if !self.text.is_empty() {
                        out.push(self.drop_partial(DropReason::Timeout));
                    }
                    self.discarding = false;
                }
                RxEvent::EndOfTransfer => {
                    self.discarding = false;
                    if has_records(&self.text) {
                        // An L-less message: its frames were all ACKed, so store it now.
                        self.pending = Pending::NoAnswer;
                        out.push(SessionEvent::Commit(self.take()));
                    } else {
                        self.clear();
                    }
                    out.push(SessionEvent::EndOfTransfer);
                }
                RxEvent::Frame { number, text, last } => {
                    // The link layer verified these bytes; this is their wire form again.
                    let wire = encode_frame(number, &text, last);
                    self.on_frame(text, wire, last, now, &mut out);
                }
            }
        }
        out
    }

    fn on_frame(
        &mut self,
        text: Vec<u8>,
        wire: Vec<u8>,
        last: bool,
        now: Instant,
        out: &mut Vec<SessionEvent>,
    ) {
        if self.discarding {
            let ev = self.link.answer_frame(false, now);
            out.extend(self.handle(ev, now));
            return;
        }
        if self.text.len() + text.len() > self.max_message {
            out.push(self.drop_partial(DropReason::Oversize));
            self.discarding = true;
            let ev = self.link.answer_frame(false, now);
            out.extend(self.handle(ev, now));
            return;
        }
        if starts_header(&text) && has_records(&self.text) && self.text.ends_with(b"\r") {
            // A new message begins while the previous one never sent L: store the previous one
            // before this frame is answered.
            self.pending = Pending::ThenFrame { text, wire, last };
            let msg = CompleteMessage {
                text: self.text.clone(),
                wire: self.wire.clone(),
            };
            out.push(SessionEvent::Commit(msg));
            return;
        }
        self.text.extend_from_slice(&text);
        self.wire.extend_from_slice(&wire);
        self.last_frame_len = (text.len(), wire.len());
        if last && ends_with_terminator(&self.text) {
            self.pending = Pending::AnswerFrame;
            out.push(SessionEvent::Commit(CompleteMessage {
                text: self.text.clone(),
                wire: self.wire.clone(),
            }));
        } else {
            let ev = self.link.answer_frame(true, now);
            out.extend(self.handle(ev, now));
        }
    }

    fn undo_last_frame(&mut self) {
        let (t, w) = self.last_frame_len;
        self.text.truncate(self.text.len().saturating_sub(t));
        self.wire.truncate(self.wire.len().saturating_sub(w));
    }

    fn drop_partial(&mut self, reason: DropReason) -> SessionEvent {
        let bytes = self.text.len();
        self.clear();
        SessionEvent::Dropped { reason, bytes }
    }

    fn take(&mut self) -> CompleteMessage {
        CompleteMessage {
            text: std::mem::take(&mut self.text),
            wire: std::mem::take(&mut self.wire),
        }
    }

    fn clear(&mut self) {
        self.text.clear();
        self.wire.clear();
    }
}

fn records(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|b| *b == CR || *b == LF)
        .filter(|r| !r.is_empty())
}

fn has_records(text: &[u8]) -> bool {
    records(text).next().is_some()
}

/// A record type letter followed by the field delimiter (any punctuation the H record may declare).
fn is_record(rec: &[u8], kind: u8) -> bool {
    matches!(rec, [k, d, ..] if k.eq_ignore_ascii_case(&kind) && d.is_ascii_punctuation())
}

fn starts_header(text: &[u8]) -> bool {
    records(text).next().is_some_and(|r| is_record(r, b'H'))
}

fn ends_with_terminator(text: &[u8]) -> bool {
    records(text).last().is_some_and(|r| is_record(r, b'L'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::astm::link::{ACK, ENQ, EOT, NAK};
    use std::time::Duration;

    fn session() -> Session {
        Session::new(SessionLimits::default())
    }

    fn replies(ev: &[SessionEvent]) -> Vec<u8> {
        ev.iter()
            .filter_map(|e| match e {
                SessionEvent::Reply(b) => Some(*b),
                _ => None,
            })
            .collect()
    }

    fn commits(ev: &[SessionEvent]) -> Vec<CompleteMessage> {
        ev.iter()
            .filter_map(|e| match e {
                SessionEvent::Commit(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    const MSG: &[u8] = b"H|\\^&|||c111\rP|1\rO|1|S1||^^^GLU\rR|1|^^^GLU|5.5|mmol/L\rL|1|N\r";

    /// One record per frame, ETB on all but the last (cobas c111 style, protocols.md S12).
    fn record_frames(msg: &[u8]) -> Vec<Vec<u8>> {
        let recs: Vec<&[u8]> = msg.split_inclusive(|b| *b == CR).collect();
        recs.iter()
            .enumerate()
            .map(|(i, r)| encode_frame((i + 1) as u8, r, i + 1 == recs.len()))
            .collect()
    }

    #[test]
    fn final_frame_is_answered_only_after_the_commit_is_confirmed() {
        let now = Instant::now();
        let mut s = session();
        assert_eq!(replies(&s.feed(&[ENQ], now)), [ACK]);
        let frames = record_frames(MSG);
        let (last, rest) = frames.split_last().unwrap();
        for f in rest {
            let ev = s.feed(f, now);
            assert_eq!(replies(&ev), [ACK]);
            assert!(commits(&ev).is_empty());
        }
        let ev = s.feed(last, now);
        assert!(replies(&ev).is_empty(), "no ACK before the commit: {ev:?}");
        let c = commits(&ev);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].text, MSG);
        assert_eq!(c[0].wire, frames.concat());
        assert!(s.awaiting_commit());
        assert_eq!(replies(&s.confirm(true, now)), [ACK]);
        let ev = s.feed(&[EOT], now);
        assert!(ev.contains(&SessionEvent::EndOfTransfer));
        assert!(commits(&ev).is_empty());
    }

    #[test]
    fn failed_commit_naks_and_the_retransmission_commits_the_same_text() {
        let now = Instant::now();
        let mut s = session();
        s.feed(&[ENQ], now);
        let frames = record_frames(MSG);
        let (last, rest) = frames.split_last().unwrap();
        for f in rest {
            s.feed(f, now);
        }
        assert_eq!(commits(&s.feed(last, now)).len(), 1);
        assert_eq!(replies(&s.confirm(false, now)), [NAK]);
        let again = commits(&s.feed(last, now));
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].text, MSG, "the NAKed frame's text is not doubled");
        assert_eq!(replies(&s.confirm(true, now)), [ACK]);
    }

    #[test]
    fn whole_message_in_240_char_frames_commits_once_at_the_end() {
        let now = Instant::now();
        let mut msg = b"H|@^\\|GX||GeneXpert PC^GeneXpert^6.4\r".to_vec();
        for i in 0..40 {
            msg.extend_from_slice(format!("R|{i}|^MTB-RIF^^Xpert^^^rpoB1^Ct|^0.0|||\r").as_bytes());
        }
        msg.extend_from_slice(b"L|1|N\r");
        let mut s = session();
        s.feed(&[ENQ], now);
        let chunks: Vec<&[u8]> = msg.chunks(240).collect();
        let mut got = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            let ev = s.feed(&encode_frame((i + 1) as u8, c, i + 1 == chunks.len()), now);
            got.extend(commits(&ev));
        }
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].text, msg);
    }

    #[test]
    fn half_message_is_dropped_on_timeout_and_never_committed() {
        let t0 = Instant::now();
        let mut s = session();
        s.feed(&[ENQ], t0);
        let frames = record_frames(MSG);
        s.feed(&frames[0], t0);
        s.feed(&frames[1], t0);
        assert!(s.poll_timeout(t0 + Duration::from_secs(29)).is_empty());
        let ev = s.poll_timeout(t0 + Duration::from_secs(31));
        assert!(matches!(
            ev.as_slice(),
            [SessionEvent::Dropped {
                reason: DropReason::Timeout,
                ..
            }]
        ));
        // The device starts over: only the complete retransmission is committed.
        s.feed(&[ENQ], t0 + Duration::from_secs(40));
        let mut got = Vec::new();
        for f in &frames {
            got.extend(commits(&s.feed(f, t0 + Duration::from_secs(40))));
        }
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].text, MSG);
    }

    #[test]
    fn oversize_message_is_naked_until_eot_and_dropped() {
        let now = Instant::now();
        let mut s = Session::new(SessionLimits {
            max_message_bytes: 40,
            ..SessionLimits::default()
        });
        s.feed(&[ENQ], now);
        let frames = record_frames(MSG);
        let mut naks = 0;
        let mut dropped = 0;
        for f in &frames {
            let ev = s.feed(f, now);
            naks += replies(&ev).iter().filter(|b| **b == NAK).count();
            dropped += ev
                .iter()
                .filter(|e| {
                    matches!(
                        e,
                        SessionEvent::Dropped {
                            reason: DropReason::Oversize,
                            ..
                        }
                    )
                })
                .count();
            assert!(commits(&ev).is_empty());
        }
        assert_eq!(dropped, 1);
        assert!(naks >= 1);
        let ev = s.feed(&[EOT], now);
        assert!(commits(&ev).is_empty());
    }

    #[test]
    fn message_without_terminator_is_committed_at_eot() {
        let now = Instant::now();
        let mut s = session();
        s.feed(&[ENQ], now);
        let text = b"H|\\^&\rR|1|^^^GLU|5.5\r";
        let ev = s.feed(&encode_frame(1, text, true), now);
        assert_eq!(replies(&ev), [ACK]);
        let ev = s.feed(&[EOT], now);
        assert_eq!(commits(&ev)[0].text, text);
        assert!(s.confirm(true, now).is_empty(), "nothing is owed after EOT");
    }

    #[test]
    fn new_header_commits_an_unterminated_message_before_answering() {
        let now = Instant::now();
        let mut s = session();
        s.feed(&[ENQ], now);
        let first = b"H|\\^&\rR|1|^^^GLU|5.5\r";
        s.feed(&encode_frame(1, first, true), now);
        let ev = s.feed(&encode_frame(2, MSG, true), now);
        let c = commits(&ev);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].text, first);
        assert!(replies(&ev).is_empty());
        let ev = s.confirm(true, now);
        let c = commits(&ev);
        assert_eq!(c.len(), 1, "the H frame holds a whole message: {ev:?}");
        assert_eq!(c[0].text, MSG);
        assert_eq!(replies(&s.confirm(true, now)), [ACK]);
    }

    #[test]
    fn enq_in_the_middle_of_a_message_restarts_it() {
        let now = Instant::now();
        let mut s = session();
        s.feed(&[ENQ], now);
        let frames = record_frames(MSG);
        s.feed(&frames[0], now);
        let ev = s.feed(&[ENQ], now);
        assert!(ev.iter().any(|e| matches!(
            e,
            SessionEvent::Dropped {
                reason: DropReason::Restarted,
                ..
            }
        )));
        let mut got = Vec::new();
        for f in &frames {
            got.extend(commits(&s.feed(f, now)));
        }
        assert_eq!(got[0].text, MSG);
    }
}
