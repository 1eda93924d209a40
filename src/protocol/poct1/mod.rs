//! POCT1-A2 (CLSI "DML" device messaging layer), pure: protocols.md §0 item 7, §1.4, sample S25.
//!
//! - [`split`]   back-to-back XML documents out of a TCP byte stream, bounded by `DSC.max_message_sz`
//! - [`xml`]     a small, strict, bounded XML reader for the POCT1 subset (no external crate)
//! - [`decode`]  HEL.R01 device info, OBS.R01/OBS.R02 → [`Observation`]s, ISO 8601 times
//! - [`manager`] the manager side of the conversation: HEL/DST/OBS/EOT/END → ACK/REQ replies,
//!   OBS answered only through `confirm(stored)` after the caller's commit

pub mod decode;
pub mod manager;
pub mod split;
/// The shared XML reader (also used by the HTTP XML body decoder).
pub use super::xml;

#[cfg(test)]
mod tests;

pub use manager::{
    AckCode, DropReason, DstReply, Event, Manager, ManagerOptions, ObsMessage, Poct1Error, Reply,
    Stamp,
};

use crate::config::Encoding;
use crate::record::Observation;

/// Decode a capture of what a device sent (one or more documents back to back), for
/// `pocketgate decode --protocol poct1`: one entry per observation message (OBS.*), with its
/// observations and parse errors, plus an entry with no observations for each document that
/// could not be used (and for a truncated last document). HEL.R01 device details are applied
/// to the observations that follow it, as in a live conversation.
pub fn decode_capture(bytes: &[u8]) -> Vec<(Vec<Observation>, Vec<String>)> {
    let mut manager = Manager::new(ManagerOptions {
        // A capture file is not limited by a device; the config cap for messages is 16 MiB.
        max_message_bytes: 16 << 20,
        encoding: Encoding::Utf8,
        ..ManagerOptions::default()
    });
    let now = std::time::Instant::now();
    let mut out = Vec::new();
    let mut events: std::collections::VecDeque<Event> = manager.feed(bytes, now).into();
    while let Some(event) = events.pop_front() {
        match event {
            Event::Commit(m) => {
                out.push((m.observations, m.parse_errors));
                for e in manager.confirm(true).into_iter().rev() {
                    events.push_front(e);
                }
            }
            Event::Rejected(e) => out.push((Vec::new(), vec![e.to_string()])),
            Event::Skipped(e) => out.push((Vec::new(), vec![e.to_string()])),
            Event::Reply(_)
            | Event::Hello(_)
            | Event::DeviceAck(_)
            | Event::Dropped { .. }
            | Event::Escape { .. }
            | Event::End => {}
        }
    }
    if manager.deadline().is_some() {
        let at = bytes.len();
        out.push((
            Vec::new(),
            vec![format!(
                "capture ends at byte {at} inside a document; the partial document was not decoded"
            )],
        ));
    }
    out
}
