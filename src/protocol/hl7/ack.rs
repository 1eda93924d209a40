//! The acknowledgement the gateway sends back (protocols.md §1.3 "Acknowledgements"), pure: the
//! caller passes the timestamp and the new control ID.
//!
//! Generator rule (§1.3), checked byte for byte against the two vendor examples (S7, S22, S23):
//! * MSH-3/4 = the sender's MSH-5/6 (`LIS` when MSH-5 is empty); MSH-5/6 = the sender's MSH-3/4,
//!   except for Mindray (MSH-4 `Mindray`), whose manual's ACK leaves MSH-5/6 empty (C-18);
//! * MSH-7 = the timestamp given, MSH-9 = `ACK^R01` for `ORU^R01` (Mindray checks it), `ACK`
//!   otherwise; MSH-10 = the control ID given; MSH-11 and MSH-12 copied; MSH-18 (character set)
//!   copied when the sender declared one;
//! * enhanced mode (the sender's MSH-15 is `AL`, GeneXpert): MSH-15/16 = `NE|NE` and MSA-1 is a
//!   commit code `CA`/`CE`/`CR`; original mode: `AA`/`AE`/`AR`;
//! * MSA-2 = the received MSH-10; MSA-3 = a text naming what failed, for anything but accept.

use super::message::{Delimiters, Message};

/// How the sender wants to be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// Application acknowledgement `AA`/`AE`/`AR` (Mindray, most devices).
    Original,
    /// Accept (commit) acknowledgement `CA`/`CE`/`CR`: the sender's MSH-15 is `AL` (GeneXpert).
    Enhanced,
}

/// What happened to the message; decides MSA-1 with [`Outcome::msa_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Durable in the store, parsed cleanly (or a resend of a stored message).
    Stored,
    /// Durable in the store, but the parser found problems (the record is `invalid`). Resending
    /// the same message cannot help, so this is an error code, not a reject.
    StoredWithErrors,
    /// Not stored (the commit failed). The device must send it again.
    ///
    /// HL7 v2.5 §2.9.2: original mode `AR` is for failures "unrelated to the content or format"
    /// (system down, internal error) after which the sender may retry, while `AE` says the
    /// content is wrong; enhanced mode `CR` is only for an unacceptable MSH-9/11/12, and `CE` is
    /// "if the message cannot be accepted for any other reason" (§1.3) — so `AR` / `CE`.
    NotStored,
}

impl Outcome {
    pub fn msa_code(self, mode: AckMode) -> &'static str {
        match (self, mode) {
            (Outcome::Stored, AckMode::Original) => "AA",
            (Outcome::Stored, AckMode::Enhanced) => "CA",
            (Outcome::StoredWithErrors, AckMode::Original) => "AE",
            (Outcome::StoredWithErrors, AckMode::Enhanced) => "CE",
            (Outcome::NotStored, AckMode::Original) => "AR",
            (Outcome::NotStored, AckMode::Enhanced) => "CE",
        }
    }
}

/// The parts of a received header an ACK needs, raw (still escaped with the sender's delimiters,
/// which the ACK reuses). A message without a usable MSH gives the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckContext {
    pub delimiters: Delimiters,
    pub sending_application: String,
    pub sending_facility: String,
    pub receiving_application: String,
    pub receiving_facility: String,
    /// MSH-9 components 1 and 2 (`ORU`, `R01`).
    pub message_code: String,
    pub trigger_event: String,
    pub control_id: String,
    pub processing_id: String,
    pub version: String,
    pub accept_ack_type: String,
    pub character_set: String,
}

impl Default for AckContext {
    /// For a message whose header could not be read: production, v2.5, original mode.
    fn default() -> Self {
        Self {
            delimiters: Delimiters::default(),
            sending_application: String::new(),
            sending_facility: String::new(),
            receiving_application: String::new(),
            receiving_facility: String::new(),
            message_code: String::new(),
            trigger_event: String::new(),
            control_id: String::new(),
            processing_id: "P".into(),
            version: "2.5".into(),
            accept_ack_type: String::new(),
            character_set: String::new(),
        }
    }
}

impl AckContext {
    pub fn from_message(m: Option<&Message>) -> Self {
        let Some((m, h)) = m.and_then(|m| m.msh().map(|h| (m, h))) else {
            return Self::default();
        };
        let first = |n: usize| m.first_repeat(h, n).to_owned();
        let comp = |n: usize, c: usize| {
            m.components(m.first_repeat(h, n))
                .get(c)
                .map(|s| s.trim().to_owned())
                .unwrap_or_default()
        };
        let or = |v: String, d: &str| if v.trim().is_empty() { d.to_owned() } else { v };
        Self {
            delimiters: m.delimiters,
            sending_application: first(3),
            sending_facility: first(4),
            receiving_application: first(5),
            receiving_facility: first(6),
            message_code: comp(9, 0),
            trigger_event: comp(9, 1),
            control_id: first(10),
            processing_id: or(comp(11, 0), "P"),
            version: or(comp(12, 0), "2.5"),
            accept_ack_type: comp(15, 0),
            character_set: first(18),
        }
    }

    pub fn mode(&self) -> AckMode {
        if self.accept_ack_type.eq_ignore_ascii_case("AL") {
            AckMode::Enhanced
        } else {
            AckMode::Original
        }
    }

    /// Mindray's manual shows an ACK with MSH-5/6 empty; follow it exactly.
    fn is_mindray(&self) -> bool {
        let d = self.delimiters.component;
        self.sending_facility
            .split(d)
            .next()
            .is_some_and(|f| f.trim().eq_ignore_ascii_case("Mindray"))
    }
}

/// The ACK message (segments ending in `<CR>`, no MLLP framing; see [`super::mllp::frame`]).
/// `text` goes to MSA-3 (escaped) for anything but an accept.
pub fn build_ack(
    ctx: &AckContext,
    outcome: Outcome,
    text: Option<&str>,
    timestamp: &str,
    control_id: &str,
) -> Vec<u8> {
    let d = ctx.delimiters;
    let mode = ctx.mode();
    let is_oru_r01 = ctx.message_code.eq_ignore_ascii_case("ORU")
        && ctx.trigger_event.eq_ignore_ascii_case("R01");
    let message_type = if is_oru_r01 {
        format!("ACK{}R01", d.component)
    } else {
        "ACK".to_owned()
    };
    let (to_app, to_facility) = if ctx.is_mindray() {
        (String::new(), String::new())
    } else {
        (
            ctx.sending_application.clone(),
            ctx.sending_facility.clone(),
        )
    };
    let from_app = if ctx.receiving_application.trim().is_empty() {
        "LIS".to_owned()
    } else {
        ctx.receiving_application.clone()
    };
    let enhanced = mode == AckMode::Enhanced;
    let ne = |on: bool| if on { "NE".to_owned() } else { String::new() };
    let mut msh = vec![
        "MSH".to_owned(),
        d.encoding_characters(),
        from_app,
        ctx.receiving_facility.clone(),
        to_app,
        to_facility,
        d.escape(timestamp),
        String::new(),
        message_type,
        d.escape(control_id),
        ctx.processing_id.clone(),
        ctx.version.clone(),
        String::new(),
        String::new(),
        ne(enhanced),
        ne(enhanced),
        String::new(),
        ctx.character_set.clone(),
    ];
    while msh.last().is_some_and(String::is_empty) {
        msh.pop();
    }
    let mut msa = vec![
        "MSA".to_owned(),
        outcome.msa_code(mode).to_owned(),
        ctx.control_id.clone(),
    ];
    if outcome != Outcome::Stored
        && let Some(t) = text
    {
        msa.push(d.escape(t));
    }
    let sep = d.field.to_string();
    let mut out = msh.join(&sep).into_bytes();
    out.push(b'\r');
    out.extend_from_slice(msa.join(&sep).as_bytes());
    out.push(b'\r');
    out
}
