//! HL7 v2 over MLLP (protocols.md §1.3), pure: bytes in, messages, observations and ACKs out.
//!
//! - [`mllp`]    `<VT> … <FS><CR>` framing: the [`mllp::Deframer`] state machine and [`mllp::frame`]
//! - [`message`] segments, fields, repetitions, components and escapes with the MSH delimiters
//! - [`decode`]  ORU^R01 (Mindray), ORU^R32 (GeneXpert), OUL^R22 (cobas 6800) → [`Observation`]s
//! - [`ack`]     the ACK a device expects, original (`AA`) or enhanced (`CA`) mode

pub mod ack;
pub mod decode;
pub mod message;
pub mod mllp;

#[cfg(test)]
mod fixtures;

use crate::config::Encoding;
use crate::record::Observation;

/// Decode a capture file for `pocketgate decode --protocol hl7`: either MLLP-framed (it contains
/// `<VT>`) or bare messages, segments separated by `<CR>`, `<LF>` or `<CR><LF>`, each message
/// starting at a line that begins with `MSH`. One entry per message: its observations and its
/// errors as text. Framing problems (garbage, a message never closed by `<FS>`) are reported in
/// the first entry; text before the first `MSH` of a bare capture becomes its own entry, so the
/// missing header is reported instead of lost.
pub fn decode_capture(bytes: &[u8], encoding: Encoding) -> Vec<(Vec<Observation>, Vec<String>)> {
    let mut framing: Vec<String> = Vec::new();
    let texts: Vec<Vec<u8>> = if bytes.contains(&mllp::VT) {
        let mut d = mllp::Deframer::new(usize::MAX);
        let mut texts = Vec::new();
        for out in d.feed(bytes) {
            match out {
                mllp::Deframed::Message { text, .. } => texts.push(text),
                mllp::Deframed::Error(e) => {
                    framing.push(message::Hl7Error::Framing(e.to_string()).to_string())
                }
            }
        }
        if d.in_frame() {
            framing.push(
                message::Hl7Error::Framing(
                    "the capture ends inside a frame (no <FS>); the partial message was decoded"
                        .into(),
                )
                .to_string(),
            );
            // Recover the unterminated tail: everything after the last <VT>.
            if let Some(pos) = bytes.iter().rposition(|b| *b == mllp::VT) {
                texts.push(bytes.get(pos + 1..).unwrap_or_default().to_vec());
            }
        }
        texts
    } else {
        split_bare(bytes)
    };
    let mut out: Vec<(Vec<Observation>, Vec<String>)> = texts
        .iter()
        .map(|t| {
            let d = decode::decode_message(t, encoding);
            (
                d.observations,
                d.errors.iter().map(ToString::to_string).collect(),
            )
        })
        .collect();
    if out.is_empty() {
        out.push((Vec::new(), vec![message::Hl7Error::Empty.to_string()]));
    }
    if let Some(first) = out.first_mut() {
        first.1.splice(0..0, framing);
    }
    out
}

/// Split bare text into messages at lines starting with `MSH`; segments rejoined with `<CR>`.
fn split_bare(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for line in bytes.split(|b| *b == mllp::CR || *b == mllp::LF) {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let starts =
            line.starts_with(b"MSH") && line.get(3).is_some_and(|b| b.is_ascii_punctuation());
        if starts || out.is_empty() {
            out.push(Vec::new());
        }
        if let Some(cur) = out.last_mut() {
            cur.extend_from_slice(line);
            cur.push(mllp::CR);
        }
    }
    out
}
