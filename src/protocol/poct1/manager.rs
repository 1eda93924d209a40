//! The POCT1-A2 conversation, manager side, pure (protocols.md §1.4 and §2 S25).
//!
//! ```text
//! device                         manager (this)
//! HEL.R01  ───────────────────▶  ACK.R01 AA, ack_control_id = HEL's HDR.control_id
//! DST.R01  ───────────────────▶  REQ.R01 REQ.topic_cd="OBS.R01"   (S25; or ACK.R01, see DstReply)
//! OBS.R01 / OBS.R02  ─────────▶  Event::Commit … caller commits … confirm(stored) → ACK.R01 AA | AE
//! EOT.R01, KPA, EVS.R01  ─────▶  ACK.R01 AA
//! END.R01  ───────────────────▶  (nothing: the conversation is over)
//! ACK.R01  ───────────────────▶  (nothing; reported as Event::DeviceAck)
//! ESC (0x1B)  ────────────────▶  partial document dropped, Event::Escape
//! ```
//!
//! No sockets and no clock: [`Manager::feed`] takes the bytes and the time they arrived,
//! [`Manager::poll_timeout`] drops a half document after the receive timeout, and replies are
//! returned as [`Reply`] values that the caller renders with its own control id and timestamp
//! ([`Reply::to_xml`]). While a commit is outstanding no further document is processed; the
//! ones already received wait in order and come out of [`Manager::confirm`].
//!
//! An `OBS.*` document that is not well-formed XML is still committed (raw bytes kept, its parse
//! error recorded, status `invalid`) and answered like any other stored message, as the ASTM
//! path does: what the device was told is stored is in the database. Other unusable documents
//! (malformed, over the size limit, a manager-only type such as REQ.R01) get an `AE` ACK when
//! their `HDR.control_id` can be read, and are reported as [`Event::Rejected`].

use super::decode::{DeviceAck, DeviceInfo, control_id, device_ack, device_info, observations};
use super::split::{Split, SplitError, Splitter};
use super::xml::{self, XmlError, escape};
use crate::config::Encoding;
use crate::record::Observation;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How DST.R01 (device status) is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DstReply {
    /// `REQ.R01` with `REQ.topic_cd V="OBS.R01"`: ask for the observations (Nova example, S25).
    #[default]
    RequestObservations,
    /// A plain `ACK.R01 AA` (Sofia summary in §1.4).
    Ack,
}

#[derive(Debug, Clone, Copy)]
pub struct ManagerOptions {
    /// Largest document before the device announced its own `DSC.max_message_sz`; also the cap
    /// on what the device may announce.
    pub max_message_bytes: usize,
    /// A half document is dropped after this much silence.
    pub receive_timeout: Duration,
    /// Text encoding of documents without an `encoding` declaration.
    pub encoding: Encoding,
    pub dst_reply: DstReply,
}

impl Default for ManagerOptions {
    fn default() -> Self {
        ManagerOptions {
            max_message_bytes: 1 << 20,
            receive_timeout: Duration::from_secs(30),
            encoding: Encoding::Utf8,
            dst_reply: DstReply::default(),
        }
    }
}

/// `ACK.type_cd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    /// `AA`: accepted.
    Accept,
    /// `AE`: error; the device keeps the message and may send it again.
    Error,
}

impl AckCode {
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::Accept => "AA",
            AckCode::Error => "AE",
        }
    }
}

/// A message for the device, before the caller stamps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Ack {
        code: AckCode,
        /// The acknowledged message's `HDR.control_id`.
        ack_control_id: Option<String>,
        /// `ACK.note_txt`, for errors.
        note: Option<String>,
    },
    /// `REQ.R01` asking for a topic (`OBS.R01`).
    Request { topic: String },
}

/// The reply's own header values, supplied by the caller (no clock or counter in here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub control_id: String,
    /// ISO 8601 with offset, e.g. `2024-01-15T10:30:01.000+08:00`.
    pub creation_dttm: String,
}

impl Reply {
    fn ack(code: AckCode, ack_control_id: Option<String>, note: Option<String>) -> Reply {
        Reply::Ack {
            code,
            ack_control_id,
            note,
        }
    }

    pub fn message_type(&self) -> &'static str {
        match self {
            Reply::Ack { .. } => "ACK.R01",
            Reply::Request { .. } => "REQ.R01",
        }
    }

    /// The document as written to the device (UTF-8, no prolog, one line), shaped like S25.
    pub fn to_xml(&self, stamp: &Stamp) -> Vec<u8> {
        let ty = self.message_type();
        let mut s = format!(
            "<{ty}><HDR><HDR.message_type V=\"{ty}\" SN=\"POCT1\" SV=\"1\"/>\
             <HDR.control_id V=\"{}\"/><HDR.version_id V=\"POCT1\"/>\
             <HDR.creation_dttm V=\"{}\"/></HDR>",
            escape(&stamp.control_id),
            escape(&stamp.creation_dttm)
        );
        match self {
            Reply::Ack {
                code,
                ack_control_id,
                note,
            } => {
                s.push_str(&format!("<ACK><ACK.type_cd V=\"{}\"/>", code.as_str()));
                if let Some(id) = ack_control_id {
                    s.push_str(&format!("<ACK.ack_control_id V=\"{}\"/>", escape(id)));
                }
                if let Some(note) = note {
                    s.push_str(&format!("<ACK.note_txt V=\"{}\"/>", escape(note)));
                }
                s.push_str("</ACK>");
            }
            Reply::Request { topic } => {
                s.push_str(&format!("<REQ.topic_cd V=\"{}\"/>", escape(topic)));
            }
        }
        s.push_str(&format!("</{ty}>"));
        s.into_bytes()
    }
}

/// An observation message for the caller to commit.
#[derive(Debug, Clone, PartialEq)]
pub struct ObsMessage {
    /// The document exactly as received (stored as both wire and text).
    pub xml: Vec<u8>,
    /// Root element (`OBS.R01`, `OBS.R02`); `None` only if even that was unreadable.
    pub message_type: Option<String>,
    pub control_id: Option<String>,
    pub observations: Vec<Observation>,
    pub parse_errors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Poct1Error {
    #[error(transparent)]
    Split(#[from] SplitError),
    #[error("{} (control id {}): {error}", message_type.as_deref().unwrap_or("document"), control_id.as_deref().unwrap_or("unknown"))]
    Malformed {
        message_type: Option<String>,
        control_id: Option<String>,
        error: XmlError,
    },
    #[error("{message_type} is not a message a device sends to a manager")]
    Unexpected { message_type: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// No byte for the receive timeout in the middle of a document.
    Timeout,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Write this to the device now (after stamping it).
    Reply(Reply),
    /// Commit this message, then call [`Manager::confirm`].
    Commit(ObsMessage),
    /// The device introduced itself (HEL.R01).
    Hello(DeviceInfo),
    /// The device acknowledged something.
    DeviceAck(DeviceAck),
    /// A document was refused (an `AE` reply precedes this event when it could be addressed).
    Rejected(Poct1Error),
    /// Bytes between documents were skipped.
    Skipped(SplitError),
    /// A half document was thrown away.
    Dropped { reason: DropReason, bytes: usize },
    /// The device sent ESC (abort); a partial document of `dropped` bytes was discarded.
    Escape { dropped: usize },
    /// END.R01: the device ended the conversation.
    End,
}

/// One conversation with one device.
pub struct Manager {
    opts: ManagerOptions,
    splitter: Splitter,
    queue: VecDeque<Split>,
    /// Control id of the OBS whose commit is outstanding (`Some(None)`: it had none).
    pending: Option<Option<String>>,
    device: DeviceInfo,
    last_byte: Option<Instant>,
    ended: bool,
}

impl Manager {
    pub fn new(opts: ManagerOptions) -> Self {
        Manager {
            splitter: Splitter::new(opts.max_message_bytes),
            opts,
            queue: VecDeque::new(),
            pending: None,
            device: DeviceInfo::default(),
            last_byte: None,
            ended: false,
        }
    }

    /// Bytes read from the device at `now`.
    pub fn feed(&mut self, bytes: &[u8], now: Instant) -> Vec<Event> {
        if !bytes.is_empty() {
            self.last_byte = Some(now);
        }
        let items = self.splitter.feed(bytes);
        self.queue.extend(items);
        self.drain()
    }

    /// The commit of the last [`Event::Commit`] ended; `stored` = it is durable (new or a
    /// duplicate of a stored message). Yields its ACK and whatever was waiting behind it.
    pub fn confirm(&mut self, stored: bool) -> Vec<Event> {
        let mut out = Vec::new();
        if let Some(id) = self.pending.take() {
            out.push(Event::Reply(if stored {
                Reply::ack(AckCode::Accept, id, None)
            } else {
                Reply::ack(
                    AckCode::Error,
                    id,
                    Some("not stored; please send again".into()),
                )
            }));
        }
        out.extend(self.drain());
        out
    }

    /// Drop a half document once the receive timeout passed since its last byte.
    pub fn poll_timeout(&mut self, now: Instant) -> Vec<Event> {
        match self.deadline() {
            Some(d) if now >= d => {
                let bytes = self.splitter.reset();
                vec![Event::Dropped {
                    reason: DropReason::Timeout,
                    bytes,
                }]
            }
            _ => Vec::new(),
        }
    }

    /// When [`Manager::poll_timeout`] should next be called.
    pub fn deadline(&self) -> Option<Instant> {
        if !self.splitter.in_document() {
            return None;
        }
        self.last_byte
            .and_then(|t| t.checked_add(self.opts.receive_timeout))
    }

    /// Whether a commit is outstanding.
    pub fn awaiting_commit(&self) -> bool {
        self.pending.is_some()
    }

    /// Whether END.R01 was received (and no new HEL.R01 since).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// What the device said in its HEL.R01.
    pub fn device(&self) -> &DeviceInfo {
        &self.device
    }

    /// The current document size limit.
    pub fn max_message_bytes(&self) -> usize {
        self.splitter.limit()
    }

    fn drain(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while self.pending.is_none() {
            let Some(item) = self.queue.pop_front() else {
                break;
            };
            match item {
                Split::Document(doc) => self.document(doc, &mut out),
                Split::Rejected { error, prefix } => {
                    let (_, id) = xml::peek_header(&prefix, self.opts.encoding);
                    self.refuse(id, Poct1Error::Split(error), &mut out);
                }
                Split::Skipped(e) => out.push(Event::Skipped(e)),
                Split::Escape { dropped } => out.push(Event::Escape { dropped }),
            }
        }
        out
    }

    fn refuse(&mut self, id: Option<String>, error: Poct1Error, out: &mut Vec<Event>) {
        if id.is_some() {
            out.push(Event::Reply(Reply::ack(
                AckCode::Error,
                id,
                Some(error.to_string()),
            )));
        }
        out.push(Event::Rejected(error));
    }

    fn document(&mut self, doc: Vec<u8>, out: &mut Vec<Event>) {
        let root = match xml::parse(&doc, self.opts.encoding) {
            Ok(root) => root,
            Err(error) => {
                let (message_type, control_id) = xml::peek_header(&doc, self.opts.encoding);
                if message_type.as_deref().is_some_and(is_observation) {
                    let parse_errors = vec![error.to_string()];
                    self.pending = Some(control_id.clone());
                    out.push(Event::Commit(ObsMessage {
                        xml: doc,
                        message_type,
                        control_id,
                        observations: Vec::new(),
                        parse_errors,
                    }));
                } else {
                    let id = control_id.clone();
                    self.refuse(
                        id,
                        Poct1Error::Malformed {
                            message_type,
                            control_id,
                            error,
                        },
                        out,
                    );
                }
                return;
            }
        };
        let id = control_id(&root).map(str::to_owned);
        let accept = |id: Option<String>| Event::Reply(Reply::ack(AckCode::Accept, id, None));
        match root.name.as_str() {
            "HEL.R01" => {
                self.device = device_info(&root);
                self.ended = false;
                // DSC.max_message_sz is the largest message the *device* can receive (Sofia
                // announces 1000 and still sends ~900-byte OBS): it bounds our replies, which are
                // far smaller, not what the device sends; that stays under the gateway's limit.
                self.splitter.set_limit(self.opts.max_message_bytes);
                out.push(Event::Hello(self.device.clone()));
                out.push(accept(id));
            }
            "DST.R01" => out.push(match self.opts.dst_reply {
                DstReply::RequestObservations => Event::Reply(Reply::Request {
                    topic: "OBS.R01".into(),
                }),
                DstReply::Ack => accept(id),
            }),
            name if is_observation(name) => {
                let (observations, parse_errors) = observations(&root, &self.device);
                self.pending = Some(id.clone());
                out.push(Event::Commit(ObsMessage {
                    xml: doc,
                    message_type: Some(root.name.clone()),
                    control_id: id,
                    observations,
                    parse_errors,
                }));
            }
            "EOT.R01" | "KPA" | "KPA.R01" | "EVS.R01" => out.push(accept(id)),
            "END.R01" => {
                self.ended = true;
                out.push(Event::End);
            }
            "ACK.R01" => out.push(Event::DeviceAck(device_ack(&root))),
            other => {
                let error = Poct1Error::Unexpected {
                    message_type: other.to_owned(),
                };
                self.refuse(id, error, out);
            }
        }
    }
}

fn is_observation(message_type: &str) -> bool {
    message_type.starts_with("OBS.")
}
