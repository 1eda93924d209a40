//! The nouns that cross module boundaries: the canonical [`Observation`] every decoder produces,
//! and the ids that name sources and stored records.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// A configured source (one analyzer connection), named by the `id` in the config file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SourceId(pub String);

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Primary key of a stored raw message (`messages.id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecordId(pub i64);

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Who produced a result, as far as the message tells.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
}

/// One result in the shape every later stage (Temprs, web UI, sync) reads.
///
/// Decoders fill what the message says; `source`, `received_at` and `raw_id` are filled by
/// ingest/store (a decoder leaves them empty). Every key is always serialised (absent = `null`)
/// so the JSON shape is stable for Temprs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub source: String,
    pub device: Device,
    pub sample_id: Option<String>,
    pub patient_id: Option<String>,
    pub test_code: String,
    pub test_name: Option<String>,
    pub value: Option<String>,
    pub unit: Option<String>,
    pub reference_range: Option<String>,
    pub flags: Vec<String>,
    pub result_status: Option<String>,
    /// ISO 8601 local time as the device states it (`2025-05-14T13:21:03`); no zone is invented.
    pub observed_at: Option<String>,
    /// RFC 3339 UTC time the gateway committed the message.
    pub received_at: Option<String>,
    pub comments: Vec<String>,
    pub raw_id: Option<RecordId>,
    /// Vendor details that have no canonical slot (GeneXpert panel/analyte/Ct, reagent lot, …).
    pub extra: BTreeMap<String, String>,
    /// The result as a number with its unit, comparator, detection and log10 (`null` when the
    /// result is not quantitative: `POS`, `MTB DETECTED MEDIUM`).
    #[serde(default)]
    pub quantity: Option<Quantity>,
}

/// A `<`/`>` limit in front of the number ("<20": below the lower limit of quantification).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparator {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
}

/// What the result says about the target, where it says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detection {
    Detected,
    NotDetected,
    /// The run gave no result: invalid, error, aborted, no result.
    Invalid,
}

/// A numeric result as a clinician reads it (decoded by `protocol::quantity`). Every key is serialised (absent = `null`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quantity {
    /// The number in plain decimals (`1009.64`, `1.23E+04` → `12300`), with a unit's UCUM
    /// power-of-ten factor applied (`763` in `10*-1.{Copies}/mL` → `76.3`).
    pub value: Option<String>,
    pub comparator: Option<Comparator>,
    /// The unit field, else the unit written after the number (`copies/mL`, `IU/mL`); without a
    /// power-of-ten factor or UCUM braces (`10*-1.{Copies}/mL` → `copies/mL`). The unit as sent
    /// stays in [`Observation::unit`].
    pub unit: Option<String>,
    /// The log10 figure, when one was sent (`(3.09 log)`, a `log copies/mL` unit, a LOG test).
    pub log10: Option<String>,
    pub detection: Option<Detection>,
    /// The value text exactly as the device sent it.
    pub raw: String,
}

/// Which DHIS2 API a rendered request goes to (shared/reference/dhis2.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST /api/tracker` (2.36+): trackedEntities / enrollments / events / relationships.
    Tracker,
    /// Legacy `POST /api/events` (2.36–2.41 only).
    Events,
    /// `POST /api/dataValueSets`.
    DataValueSets,
    /// `GET` of `Dhis2Request::path` (a lookup inside a Tempr chain).
    Get,
}

/// What a Tempr produces: one DHIS2 call. Object UIDs inside `body` are deterministic
/// (derived from the record's identity), so sending it twice updates instead of duplicating.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dhis2Request {
    pub endpoint: Endpoint,
    /// Only for `Endpoint::Get`: path and query below the server root, e.g.
    /// `/api/trackedEntities?program=Lt6P15ps7f6&filter=…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The JSON payload (`{"events":[…]}`, `{"trackedEntities":[…]}`, `{"dataValues":[…]}`); null for Get.
    #[serde(default)]
    pub body: serde_json::Value,
}

/// HTTP method of a [`DestRequest`] (a closed set; stored as `"POST"` …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

/// What is sent. Stored as `{"type": "json", "value": …}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum DestBody {
    #[default]
    None,
    Json(Value),
    Xml(String),
    Text(String),
}

/// One request to a destination, as a Tempr renders it and the outbox stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DestRequest {
    pub method: Method,
    /// Relative to the destination URL, may include a query: `"Patient"`,
    /// `"patient?v=full"`; empty = the URL itself (a FHIR transaction). Ignored by tcp/udp.
    #[serde(default)]
    pub path: String,
    /// Extra headers; they win over the destination's static ones. Ignored by tcp/udp.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default)]
    pub body: DestBody,
    /// FHIR conditional create: the search (`identifier=http://clinic.example/mrn|123`) sent as
    /// `If-None-Exist`. Ignored by tcp/udp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_none_exist: Option<String>,
}

/// The id of the DHIS2 destination (the `[dhis2]` section) in the outbox's `destination` column.
pub const DHIS2_DESTINATION: &str = "dhis2";

/// What one Tempr run produces, for the system its file names (`destination`; DHIS2 when none).
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Dhis2(Dhis2Request),
    /// For the `[[destinations]]` entry `destination`.
    Dest {
        destination: String,
        request: DestRequest,
    },
}

impl Payload {
    /// The outbox lane this request waits in.
    pub fn destination(&self) -> &str {
        match self {
            Payload::Dhis2(_) => DHIS2_DESTINATION,
            Payload::Dest { destination, .. } => destination,
        }
    }
}

/// What kind of JSON value `v` is, for error messages ("not an object but a string").
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
