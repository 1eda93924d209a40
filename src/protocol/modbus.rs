//! Modbus polling, the pure part (protocols.md §1.6): register words → values, and the poller
//! state machine that turns a stream of polls into what is worth storing.
//!
//! A fridge logger answers every few seconds; storing each answer would bury the one reading
//! that matters. So the [`Poller`] is fed `(now, poll outcome)` and emits [`Document`]s:
//! * a **summary** per `summary_interval`: min/mean/max/last of every register;
//! * an **alarm** the moment a value leaves its `min ..= max` range, and a **clear** when it is
//!   back inside by the hysteresis margin;
//! * a **fault** after `fault_after` polls in a row failed (timeout, refused connection, Modbus
//!   exception such as "illegal data address at holding register 40001"), and **recovered**
//!   when the device answers again.
//!
//! A document is stored as its JSON (the message's raw bytes), so it says everything needed to
//! decode it again later: [`decode`] turns those bytes into canonical [`Observation`]s, at
//! ingest and in `pocketgate decode --protocol modbus`. No sockets, no clock: time is passed in.

use crate::record::{Device, Observation};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;
use time::OffsetDateTime;

/// Version of the stored document layout (`"modbus": 1`).
pub const DOCUMENT_VERSION: u32 = 1;
/// `test_code` of device fault / recovered observations.
pub const FAULT_CODE: &str = "device-fault";

/// Modbus data tables (the function code that reads them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegisterKind {
    /// FC3, 16-bit read/write registers, numbered 40001….
    Holding,
    /// FC4, 16-bit read-only registers, numbered 30001….
    Input,
    /// FC1, single bits, numbered 00001….
    Coil,
    /// FC2, read-only bits, numbered 10001….
    Discrete,
}

impl RegisterKind {
    /// The conventional 1-based register number of a 0-based address (`holding 0` → 40001).
    pub fn number(self, address: u16) -> u32 {
        let base = match self {
            Self::Coil => 1,
            Self::Discrete => 10_001,
            Self::Input => 30_001,
            Self::Holding => 40_001,
        };
        base + u32::from(address)
    }

    /// Whether values are bits (coil/discrete) rather than 16-bit words.
    pub fn is_bit(self) -> bool {
        matches!(self, Self::Coil | Self::Discrete)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Holding => "holding",
            Self::Input => "input",
            Self::Coil => "coil",
            Self::Discrete => "discrete",
        }
    }
}

/// How register words make a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    U16,
    I16,
    U32,
    I32,
    F32,
}

impl ValueType {
    /// Registers (16-bit words) one value occupies.
    pub fn words(self) -> u16 {
        match self {
            Self::U16 | Self::I16 => 1,
            Self::U32 | Self::I32 | Self::F32 => 2,
        }
    }
}

/// Order of the two words of a 32-bit value (bytes inside a word are always big-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WordOrder {
    /// High word first (the Modbus convention, "ABCD").
    Big,
    /// Low word first ("CDAB", common on loggers built on little-endian controllers).
    Little,
}

/// The acceptable range of a register; leaving it raises an alarm.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// An alarm clears only once the value is this far inside the range again (no flapping
    /// when a fridge hovers at 8.0 °C).
    pub hysteresis: f64,
}

/// One configured register: where it is, how to read it, what it means.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterSpec {
    /// Short name, unique in the source (`temperature`).
    pub name: String,
    /// 0-based address in its table (the protocol address; register 40001 is holding 0).
    pub address: u16,
    pub kind: RegisterKind,
    pub value_type: ValueType,
    pub word_order: WordOrder,
    /// value = raw × scale + offset.
    pub scale: f64,
    pub offset: f64,
    pub unit: Option<String>,
    pub thresholds: Option<Thresholds>,
    /// The test code observations carry; default the name.
    pub code: Option<String>,
    pub loinc: Option<String>,
}

impl RegisterSpec {
    /// Words (or bits) to read.
    pub fn count(&self) -> u16 {
        if self.kind.is_bit() {
            1
        } else {
            self.value_type.words()
        }
    }

    /// `holding register 40001`
    pub fn place(&self) -> String {
        format!(
            "{} {} {}",
            self.kind.name(),
            if self.kind.is_bit() {
                "bit"
            } else {
                "register"
            },
            self.kind.number(self.address)
        )
    }

    /// Decimal places that the scale can express (0.1 → 1); f32 values keep 3.
    fn decimals(&self) -> u32 {
        if self.value_type == ValueType::F32 && !self.kind.is_bit() {
            return 3;
        }
        (0..=6)
            .find(|&d| {
                let x = self.scale * 10f64.powi(d as i32);
                (x - x.round()).abs() < 1e-9
            })
            .unwrap_or(6)
    }

    /// Raw words (bits as 0/1) → the engineering value.
    pub fn value(&self, words: &[u16]) -> Result<f64, ValueError> {
        let need = usize::from(self.count());
        if words.len() != need {
            return Err(ValueError::Words {
                register: self.name.clone(),
                expected: need,
                got: words.len(),
            });
        }
        let raw = if self.kind.is_bit() {
            f64::from(u8::from(words[0] != 0))
        } else {
            let joined = || {
                let (hi, lo) = match self.word_order {
                    WordOrder::Big => (words[0], words[1]),
                    WordOrder::Little => (words[1], words[0]),
                };
                (u32::from(hi) << 16) | u32::from(lo)
            };
            match self.value_type {
                ValueType::U16 => f64::from(words[0]),
                ValueType::I16 => f64::from(words[0] as i16),
                ValueType::U32 => f64::from(joined()),
                ValueType::I32 => f64::from(joined() as i32),
                ValueType::F32 => f64::from(f32::from_bits(joined())),
            }
        };
        let value = round(raw * self.scale + self.offset, self.decimals());
        if !value.is_finite() {
            // An f32 sensor reporting NaN/infinity (a broken probe), or a scale that overflows.
            return Err(ValueError::NotFinite {
                register: self.name.clone(),
                raw: words.to_vec(),
            });
        }
        Ok(value)
    }

    pub fn code(&self) -> String {
        self.code.clone().unwrap_or_else(|| self.name.clone())
    }
}

fn round(v: f64, decimals: u32) -> f64 {
    let f = 10f64.powi(decimals as i32);
    if !(v * f).is_finite() {
        return v;
    }
    let r = (v * f).round() / f;
    if r == 0.0 { 0.0 } else { r } // no "-0"
}

/// Register words that make no value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    /// The device answered with the wrong number of words.
    #[error("register {register}: expected {expected} word(s), got {got}")]
    Words {
        register: String,
        expected: usize,
        got: usize,
    },
    #[error("register {register}: words {raw:04X?} are not a number")]
    NotFinite { register: String, raw: Vec<u16> },
}

/// Why a poll got no values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// No answer within the request timeout.
    Timeout { place: String },
    /// A Modbus exception response (code 1–11, or another the device invented).
    Exception { code: u8, place: String },
    /// Connecting or talking failed (refused, reset, port missing, garbled reply).
    Link(String),
}

impl Fault {
    /// Exception code names from the Modbus application protocol spec v1.1b3 §7.
    pub fn exception_name(code: u8) -> &'static str {
        match code {
            1 => "illegal function",
            2 => "illegal data address",
            3 => "illegal data value",
            4 => "server device failure",
            5 => "acknowledge",
            6 => "server device busy",
            8 => "memory parity error",
            10 => "gateway path unavailable",
            11 => "gateway target device failed to respond",
            _ => "unknown exception",
        }
    }

    /// Whether two faults are the same news: the same kind (and exception code). A link error
    /// that changes its wording (reset, then refused) is not a new fault.
    pub fn same_kind(&self, other: &Fault) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other) && self.code() == other.code()
    }

    fn code(&self) -> Option<u8> {
        match self {
            Self::Exception { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout { place } => write!(f, "no answer (timeout) reading {place}"),
            Self::Exception { code, place } => write!(
                f,
                "{} at {place} (exception code {code})",
                Self::exception_name(*code)
            ),
            Self::Link(why) => f.write_str(why),
        }
    }
}

/// Settings of the poller (from `[sources.modbus]`).
#[derive(Debug, Clone, PartialEq)]
pub struct PollerSettings {
    pub unit_id: u8,
    pub summary_interval: Duration,
    /// Failed polls in a row before a fault is stored.
    pub fault_after: u32,
}

/// What one register did over a summary window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterSummary {
    #[serde(flatten)]
    pub register: RegisterInfo,
    pub samples: u64,
    pub min: f64,
    pub mean: f64,
    pub max: f64,
    pub last: f64,
    /// The raw words of the last reading.
    pub last_raw: Vec<u16>,
}

/// A register as the stored document names it (enough to decode without the config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterInfo {
    pub name: String,
    pub code: String,
    #[serde(default)]
    pub loinc: Option<String>,
    /// `holding register 40001`
    pub place: String,
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default)]
    pub thresholds: Option<Thresholds>,
    /// Decimal places of a reading.
    #[serde(default)]
    pub decimals: u32,
}

impl RegisterInfo {
    fn of(spec: &RegisterSpec) -> Self {
        Self {
            name: spec.name.clone(),
            code: spec.code(),
            loinc: spec.loinc.clone(),
            place: spec.place(),
            unit: spec.unit.clone(),
            thresholds: spec.thresholds,
            decimals: spec.decimals(),
        }
    }
}

/// Which side of the range an alarm is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    High,
    Low,
}

/// What the poller asks to store; serialised as the message's raw bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    Summary {
        /// Window start and end (RFC 3339 UTC).
        from: String,
        to: String,
        registers: Vec<RegisterSummary>,
    },
    Alarm {
        at: String,
        register: RegisterInfo,
        value: f64,
        side: Side,
        /// The limit that was crossed.
        limit: f64,
        raw: Vec<u16>,
    },
    AlarmClear {
        at: String,
        register: RegisterInfo,
        value: f64,
        /// When the alarm was raised.
        since: String,
        raw: Vec<u16>,
    },
    Fault {
        at: String,
        /// The first failure of the run.
        since: String,
        /// Failed polls in a row.
        failures: u32,
        error: String,
        /// The Modbus exception code, if the device answered with one.
        #[serde(default)]
        exception: Option<u8>,
    },
    Recovered {
        at: String,
        /// When the device stopped answering.
        since: String,
        /// What it was failing with.
        error: String,
    },
}

/// A stored document: the event plus who it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// Layout version ([`DOCUMENT_VERSION`]).
    pub modbus: u32,
    pub unit_id: u8,
    #[serde(flatten)]
    pub event: Event,
}

impl Document {
    /// The bytes stored as the message.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// One register's running statistics in the current window.
#[derive(Debug, Clone, Default)]
struct Stats {
    samples: u64,
    sum: f64,
    min: f64,
    max: f64,
    last: f64,
    last_raw: Vec<u16>,
}

impl Stats {
    fn add(&mut self, v: f64, raw: &[u16]) {
        if self.samples == 0 {
            self.min = v;
            self.max = v;
        }
        self.samples += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.last = v;
        self.last_raw = raw.to_vec();
    }
}

/// A failing run: when it began and how many polls failed.
#[derive(Debug, Clone)]
struct Failing {
    since: OffsetDateTime,
    failures: u32,
    last: Fault,
    reported: bool,
}

/// The poller state machine: fed poll outcomes with their time, emits [`Document`]s.
#[derive(Debug)]
pub struct Poller {
    registers: Vec<RegisterSpec>,
    settings: PollerSettings,
    window_start: Option<OffsetDateTime>,
    stats: Vec<Stats>,
    /// Per register: the open alarm (side, since).
    alarms: Vec<Option<(Side, OffsetDateTime)>>,
    failing: Option<Failing>,
}

/// One register's reading in a poll: its raw words.
pub type Words = Vec<u16>;

impl Poller {
    pub fn new(registers: Vec<RegisterSpec>, settings: PollerSettings) -> Self {
        let n = registers.len();
        Self {
            registers,
            settings,
            window_start: None,
            stats: vec![Stats::default(); n],
            alarms: vec![None; n],
            failing: None,
        }
    }

    pub fn registers(&self) -> &[RegisterSpec] {
        &self.registers
    }

    /// A poll answered: `words[i]` are the words of register `i`.
    pub fn answered(&mut self, now: OffsetDateTime, words: &[Words]) -> Vec<Document> {
        let mut out = Vec::new();
        let values: Result<Vec<f64>, ValueError> = self
            .registers
            .iter()
            .zip(
                words
                    .iter()
                    .map(Vec::as_slice)
                    .chain(std::iter::repeat(&[][..])),
            )
            .map(|(spec, w)| spec.value(w))
            .collect();
        let values = match values {
            Ok(v) => v,
            Err(e) => return self.failed(now, Fault::Link(e.to_string())),
        };
        if let Some(f) = self.failing.take()
            && f.reported
        {
            out.push(self.doc(Event::Recovered {
                at: stamp(now),
                since: stamp(f.since),
                error: f.last.to_string(),
            }));
        }
        out.extend(self.close_window(now));
        self.window_start.get_or_insert(now);
        for (i, value) in values.into_iter().enumerate() {
            let raw = &words[i];
            self.stats[i].add(value, raw);
            out.extend(self.check_alarm(i, value, raw, now));
        }
        out
    }

    /// A poll failed.
    pub fn failed(&mut self, now: OffsetDateTime, fault: Fault) -> Vec<Document> {
        let mut out = self.close_window(now);
        let f = self.failing.get_or_insert(Failing {
            since: now,
            failures: 0,
            last: fault.clone(),
            reported: false,
        });
        f.failures = f.failures.saturating_add(1);
        let changed = f.reported && !f.last.same_kind(&fault);
        f.last = fault.clone();
        // Report once when the run crosses `fault_after`, and again if the cause changes
        // (a timeout that becomes an exception is news; the same timeout every poll is not).
        if (!f.reported && f.failures >= self.settings.fault_after) || changed {
            f.reported = true;
            let (since, failures) = (f.since, f.failures);
            out.push(self.doc(Event::Fault {
                at: stamp(now),
                since: stamp(since),
                failures,
                error: fault.to_string(),
                exception: fault.code(),
            }));
        }
        out
    }

    /// Time passed without a poll result: the summary of a window that is over.
    pub fn tick(&mut self, now: OffsetDateTime) -> Vec<Document> {
        self.close_window(now)
    }

    /// When the current summary window ends, if one is open.
    pub fn window_end(&self) -> Option<OffsetDateTime> {
        self.window_start
            .map(|s| s + self.settings.summary_interval)
    }

    /// The summary of the open window if it is over (or nothing when it holds no samples).
    fn close_window(&mut self, now: OffsetDateTime) -> Vec<Document> {
        let Some(start) = self.window_start else {
            return Vec::new();
        };
        if now < start + self.settings.summary_interval {
            return Vec::new();
        }
        self.window_start = None;
        let stats = std::mem::replace(
            &mut self.stats,
            vec![Stats::default(); self.registers.len()],
        );
        if stats.iter().all(|s| s.samples == 0) {
            return Vec::new();
        }
        let registers = self
            .registers
            .iter()
            .zip(stats)
            .filter(|(_, s)| s.samples > 0)
            .map(|(spec, s)| {
                let info = RegisterInfo::of(spec);
                let mean = s.sum / s.samples as f64;
                // Values near f64::MAX can overflow the sum; the midrange is then the honest mean.
                let mean = if mean.is_finite() {
                    mean
                } else {
                    s.min / 2.0 + s.max / 2.0
                };
                let mean = round(mean, info.decimals + 1);
                RegisterSummary {
                    register: info,
                    samples: s.samples,
                    min: s.min,
                    mean,
                    max: s.max,
                    last: s.last,
                    last_raw: s.last_raw,
                }
            })
            .collect();
        vec![self.doc(Event::Summary {
            from: stamp(start),
            to: stamp(now),
            registers,
        })]
    }

    fn check_alarm(
        &mut self,
        i: usize,
        value: f64,
        raw: &[u16],
        now: OffsetDateTime,
    ) -> Option<Document> {
        let spec = &self.registers[i];
        let t = spec.thresholds?;
        let outside = match (t.min, t.max) {
            (_, Some(max)) if value > max => Some((Side::High, max)),
            (Some(min), _) if value < min => Some((Side::Low, min)),
            _ => None,
        };
        match (self.alarms[i], outside) {
            (None, Some((side, limit))) => {
                self.alarms[i] = Some((side, now));
                Some(self.doc(Event::Alarm {
                    at: stamp(now),
                    register: RegisterInfo::of(spec),
                    value,
                    side,
                    limit,
                    raw: raw.to_vec(),
                }))
            }
            (Some((side, since)), _) => {
                let h = t.hysteresis;
                let back = t.min.is_none_or(|min| value >= min + h)
                    && t.max.is_none_or(|max| value <= max - h);
                if back {
                    self.alarms[i] = None;
                    Some(self.doc(Event::AlarmClear {
                        at: stamp(now),
                        register: RegisterInfo::of(spec),
                        value,
                        since: stamp(since),
                        raw: raw.to_vec(),
                    }))
                } else if let Some((new_side, limit)) = outside
                    && new_side != side
                {
                    // From too warm straight to too cold: a new alarm.
                    self.alarms[i] = Some((new_side, now));
                    Some(self.doc(Event::Alarm {
                        at: stamp(now),
                        register: RegisterInfo::of(spec),
                        value,
                        side: new_side,
                        limit,
                        raw: raw.to_vec(),
                    }))
                } else {
                    None
                }
            }
            (None, None) => None,
        }
    }

    fn doc(&self, event: Event) -> Document {
        Document {
            modbus: DOCUMENT_VERSION,
            unit_id: self.settings.unit_id,
            event,
        }
    }
}

/// RFC 3339 UTC, seconds precision (`2026-11-22T08:00:00Z`): the form documents state times in.
pub fn stamp(t: OffsetDateTime) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.to_offset(time::UtcOffset::UTC)
        .format(&fmt)
        .unwrap_or_default()
}

/// A stored document that is not one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a Modbus document: {0}")]
    Json(String),
    #[error("Modbus document version {0} is newer than this build reads ({DOCUMENT_VERSION})")]
    Version(u32),
}

/// The stored bytes of one document → its observations (the same path at ingest, in
/// `pocketgate decode --protocol modbus` and when re-reading the store).
pub fn decode(bytes: &[u8]) -> Result<Vec<Observation>, DecodeError> {
    let doc: Document =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Json(e.to_string()))?;
    if doc.modbus > DOCUMENT_VERSION {
        return Err(DecodeError::Version(doc.modbus));
    }
    let device = Device {
        vendor: None,
        model: None,
        serial: Some(format!("unit {}", doc.unit_id)),
    };
    let base = |kind: &str, at: &str| Observation {
        device: device.clone(),
        observed_at: Some(at.to_owned()),
        result_status: Some("F".into()),
        extra: BTreeMap::from([("modbus_event".to_owned(), kind.to_owned())]),
        ..Observation::default()
    };
    let register_obs = |o: &mut Observation, r: &RegisterInfo| {
        o.test_code = r.code.clone();
        o.test_name = Some(r.name.clone());
        o.unit = r.unit.clone();
        o.reference_range = r.thresholds.and_then(|t| range_text(&t));
        o.extra.insert("register".into(), r.place.clone());
        if let Some(l) = &r.loinc {
            o.extra.insert("loinc".into(), l.clone());
        }
    };
    let out = match doc.event {
        Event::Summary {
            from,
            to,
            registers,
        } => registers
            .iter()
            .map(|r| {
                let mut o = base("summary", &to);
                register_obs(&mut o, &r.register);
                let d = r.register.decimals;
                o.value = Some(fmt_num(r.mean, d + 1));
                let t = r.register.thresholds;
                if let Some(t) = t {
                    if t.max.is_some_and(|max| r.max > max) {
                        o.flags.push("H".into());
                    }
                    if t.min.is_some_and(|min| r.min < min) {
                        o.flags.push("L".into());
                    }
                }
                for (k, v) in [
                    ("from", from.clone()),
                    ("to", to.clone()),
                    ("samples", r.samples.to_string()),
                    ("min", fmt_num(r.min, d)),
                    ("mean", fmt_num(r.mean, d + 1)),
                    ("max", fmt_num(r.max, d)),
                    ("last", fmt_num(r.last, d)),
                ] {
                    o.extra.insert(k.into(), v);
                }
                o
            })
            .collect(),
        Event::Alarm {
            at,
            register,
            value,
            side,
            limit,
            ..
        } => {
            let mut o = base("alarm", &at);
            register_obs(&mut o, &register);
            o.value = Some(fmt_num(value, register.decimals));
            o.flags = vec![
                "ALARM".into(),
                match side {
                    Side::High => "H".into(),
                    Side::Low => "L".into(),
                },
            ];
            let word = match side {
                Side::High => "above",
                Side::Low => "below",
            };
            o.comments.push(format!(
                "{} {} {word} {}{}",
                register.name,
                fmt_num(value, register.decimals),
                fmt_num(limit, register.decimals),
                register
                    .unit
                    .as_deref()
                    .map(|u| format!(" {u}"))
                    .unwrap_or_default()
            ));
            o.extra
                .insert("limit".into(), fmt_num(limit, register.decimals));
            vec![o]
        }
        Event::AlarmClear {
            at,
            register,
            value,
            since,
            ..
        } => {
            let mut o = base("alarm_clear", &at);
            register_obs(&mut o, &register);
            o.value = Some(fmt_num(value, register.decimals));
            o.flags = vec!["CLEAR".into()];
            o.comments.push(format!(
                "{} back in range (alarm since {since})",
                register.name
            ));
            o.extra.insert("alarm_since".into(), since);
            vec![o]
        }
        Event::Fault {
            at,
            since,
            failures,
            error,
            exception,
        } => {
            let mut o = base("fault", &at);
            o.test_code = FAULT_CODE.into();
            o.test_name = Some("Device not answering".into());
            o.value = Some(error.clone());
            o.flags = vec!["FAULT".into()];
            o.comments.push(error);
            o.extra.insert("since".into(), since);
            o.extra.insert("failures".into(), failures.to_string());
            if let Some(code) = exception {
                o.extra.insert("exception".into(), code.to_string());
            }
            vec![o]
        }
        Event::Recovered { at, since, error } => {
            let mut o = base("recovered", &at);
            o.test_code = FAULT_CODE.into();
            o.test_name = Some("Device answering again".into());
            o.value = Some("recovered".into());
            o.flags = vec!["RECOVERED".into()];
            o.comments.push(format!(
                "device answering again; failing since {since}: {error}"
            ));
            o.extra.insert("since".into(), since);
            vec![o]
        }
    };
    Ok(out)
}

/// `2–8` style range text (`>=2`, `<=8` with one side only).
fn range_text(t: &Thresholds) -> Option<String> {
    let n = |v: f64| fmt_num(v, 6);
    match (t.min, t.max) {
        (Some(a), Some(b)) => Some(format!("{}-{}", n(a), n(b))),
        (Some(a), None) => Some(format!(">={}", n(a))),
        (None, Some(b)) => Some(format!("<={}", n(b))),
        (None, None) => None,
    }
}

/// A number with at most `decimals` places, trailing zeros kept to `decimals` for readings
/// (`4.7`, `4.70` for the mean of a 0.1-scaled register), integers without a point.
fn fmt_num(v: f64, decimals: u32) -> String {
    let d = decimals as usize;
    let s = format!("{:.*}", d, round(v, decimals));
    if decimals >= 6 && s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// Every document in a capture: one JSON document per line (as `pocketgate records` of a
/// Modbus source stores them) → per document its observations and errors.
pub fn decode_capture(bytes: &[u8]) -> Vec<(Vec<Observation>, Vec<String>)> {
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(|line| match decode(line) {
            Ok(obs) => (obs, Vec::new()),
            Err(e) => (Vec::new(), vec![e.to_string()]),
        })
        .collect()
}

#[cfg(test)]
mod tests;
