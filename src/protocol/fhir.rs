//! HTTP bodies → canonical [`Observation`]s: FHIR R4 JSON, the canonical JSON shape, CSV and a
//! simple XML shape. Pure: bytes in, observations or a [`DecodeError`] naming the JSON path, CSV
//! line/column or XML byte offset out. No I/O, no clock, no panics on any input.
//!
//! ## Accepted bodies ([`BodyKind`])
//! - **FHIR R4 JSON**: an `Observation`, a `DiagnosticReport` (its `result` references resolved
//!   to `contained` Observations) or a `Bundle` of type collection/transaction/batch/message/
//!   searchset/document holding Observations and DiagnosticReports (references resolved by
//!   `fullUrl`, `Type/id` or `#contained`). Other resources in a Bundle (Patient, Specimen,
//!   Device, MessageHeader …) are only used to resolve references. An Observation with
//!   `component`s yields one observation per component (and its own when it has a value).
//! - **Canonical JSON**: one [`Observation`] object or an array of them, keys as in
//!   `record.rs`; `test_code` is required; `source`, `received_at` and `raw_id` are accepted and
//!   ignored (the store fills them); any other unknown key is an error.
//! - **CSV** (RFC 4180: quoted fields, doubled quotes, CRLF or LF, UTF-8 with or without BOM):
//!   a header row of Observation field names (`sample_id,test_code,value,unit,observed_at`),
//!   delimiter `,`, `;` or tab detected from the header line. `device_vendor`/`device_model`/
//!   `device_serial` (or `device.vendor` …) fill the device; `flags` holds `|`-separated flags;
//!   `extra.KEY` columns and any unknown column land in `extra` under their name.
//! - **XML**: `<results><observation><test_code>…</test_code>…</observation>…</results>` (or a
//!   single `<observation>` root); children named like the canonical fields, plus
//!   `<device><vendor/><model/><serial/></device>`, `<flags><flag/>…</flags>`,
//!   `<comments><comment/>…</comments>` and `<extra><KEY>value</KEY>…</extra>`. Namespace
//!   prefixes are ignored; DTDs are refused (no entity expansion).
//!
//! `observed_at` is normalised to `YYYY-MM-DDTHH:MM:SS` (a date-only value stays a date); a
//! stated UTC offset is kept in `extra.observed_at_offset`, never applied.

use crate::record::json_kind as kind_of;
use crate::record::{Device, Observation};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Which decoder reads a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyKind {
    /// FHIR R4 JSON (Observation, DiagnosticReport, Bundle).
    Fhir,
    /// The canonical Observation JSON (one object or an array).
    Json,
    Csv,
    Xml,
}

/// Deepest XML element nesting accepted (the documented shape needs 4).
pub const MAX_XML_DEPTH: usize = 16;

impl BodyKind {
    /// The content types [`BodyKind::sniff`] accepts, for a 415 answer.
    pub const ACCEPTED_CONTENT_TYPES: &'static str =
        "application/fhir+json, application/json, text/csv, application/xml, text/xml";

    pub fn name(self) -> &'static str {
        match self {
            Self::Fhir => "fhir",
            Self::Json => "json",
            Self::Csv => "csv",
            Self::Xml => "xml",
        }
    }

    /// `fhir`, `json`, `csv`, `xml` (as `pocketgate decode --protocol` names them).
    pub fn from_name(name: &str) -> Option<BodyKind> {
        [Self::Fhir, Self::Json, Self::Csv, Self::Xml]
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Decide the decoder from the `Content-Type` (parameters such as `charset` ignored) and, for
    /// plain JSON, from the body: a JSON object with a `resourceType` is FHIR. `None` for a
    /// content type that is not accepted. Without a content type the body alone decides
    /// (`{`/`[` → JSON or FHIR, `<` → XML, anything else non-empty → CSV).
    pub fn sniff(content_type: Option<&str>, bytes: &[u8]) -> Option<BodyKind> {
        let json = |bytes: &[u8]| {
            if has_resource_type(bytes) {
                BodyKind::Fhir
            } else {
                BodyKind::Json
            }
        };
        match content_type {
            Some(ct) => {
                let media = ct
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                match media.as_str() {
                    "application/fhir+json" | "application/json+fhir" => Some(BodyKind::Fhir),
                    "application/json" | "text/json" => Some(json(bytes)),
                    "text/csv" | "application/csv" => Some(BodyKind::Csv),
                    "application/xml" | "text/xml" => Some(BodyKind::Xml),
                    m if m.starts_with("application/") && m.ends_with("+json") => Some(json(bytes)),
                    _ => None,
                }
            }
            None => {
                let body = strip_bom(bytes);
                match body.iter().find(|b| !b.is_ascii_whitespace()) {
                    Some(b'{') | Some(b'[') => Some(json(body)),
                    Some(b'<') => Some(BodyKind::Xml),
                    Some(_) => Some(BodyKind::Csv),
                    None => None,
                }
            }
        }
    }
}

/// Why a body was refused. Every message names where: a JSON path
/// (`entry[2].resource.valueQuantity.value`), a CSV line/column, or an XML element and byte offset.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("the body is empty")]
    Empty,
    #[error("the body is not UTF-8: invalid byte at offset {offset} (line {line})")]
    NotUtf8 { offset: usize, line: usize },
    #[error("not valid JSON: {message}")]
    JsonSyntax {
        line: usize,
        column: usize,
        message: String,
    },
    /// Well-formed JSON of the wrong shape: `path` is where (`(body)` for the top level).
    #[error("{path}: {message}")]
    Json { path: String, message: String },
    #[error("CSV line {line}: {message}")]
    CsvSyntax { line: usize, message: String },
    #[error("CSV header (line {line}): required column {column:?} is missing (columns: {found})")]
    CsvMissingColumn {
        line: usize,
        column: &'static str,
        found: String,
    },
    #[error("CSV line {line}: {message}")]
    CsvRow { line: usize, message: String },
    #[error("CSV line {line}, column {column:?}: {message}")]
    CsvField {
        line: usize,
        column: String,
        message: String,
    },
    #[error("XML at byte {offset}: {message}")]
    XmlSyntax { offset: usize, message: String },
    #[error("XML <{element}> at byte {offset}: {message}")]
    XmlShape {
        element: String,
        offset: usize,
        message: String,
    },
    #[error("{what} holds no observations")]
    NoObservations { what: String },
}

impl DecodeError {
    /// The body could not even be read in its syntax (not UTF-8, not JSON, broken CSV quoting,
    /// malformed XML) — HTTP 400. Otherwise it parsed but is not the expected shape — HTTP 422.
    pub fn is_syntax(&self) -> bool {
        matches!(
            self,
            Self::Empty
                | Self::NotUtf8 { .. }
                | Self::JsonSyntax { .. }
                | Self::CsvSyntax { .. }
                | Self::XmlSyntax { .. }
        )
    }
}

/// Decode a whole body of `kind` into observations (at least one, or an error).
pub fn decode(kind: BodyKind, bytes: &[u8]) -> Result<Vec<Observation>, DecodeError> {
    let bytes = strip_bom(bytes);
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(DecodeError::Empty);
    }
    match kind {
        BodyKind::Fhir => resource::decode(&parse_json(bytes)?),
        BodyKind::Json => canonical::decode(&parse_json(bytes)?),
        BodyKind::Csv => csv::decode(utf8(bytes)?),
        BodyKind::Xml => xml::decode(utf8(bytes)?),
    }
}

fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

fn utf8(bytes: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let offset = e.valid_up_to();
        let line = 1 + bytes[..offset].iter().filter(|&&b| b == b'\n').count();
        DecodeError::NotUtf8 { offset, line }
    })
}

fn parse_json(bytes: &[u8]) -> Result<Value, DecodeError> {
    let text = utf8(bytes)?;
    serde_json::from_str(text).map_err(|e| DecodeError::JsonSyntax {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })
}

/// Does the JSON body look like a FHIR resource (a top-level object with `resourceType`)?
fn has_resource_type(bytes: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "resourceType")]
        resource_type: Option<serde::de::IgnoredAny>,
    }
    let bytes = strip_bom(bytes);
    // A derived struct also deserialises from a JSON array: only an object can be a resource.
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
        && serde_json::from_slice::<Probe>(bytes).is_ok_and(|p| p.resource_type.is_some())
}

// ---------------------------------------------------------------------------------------------
// JSON helpers shared by the FHIR and canonical decoders: typed access that names the path.

fn json_err(path: &str, message: impl Into<String>) -> DecodeError {
    DecodeError::Json {
        path: if path.is_empty() {
            "(body)".to_owned()
        } else {
            path.to_owned()
        },
        message: message.into(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

fn expected(path: &str, what: &str, got: &Value) -> DecodeError {
    json_err(path, format!("expected {what}, got {}", kind_of(got)))
}

/// A present, non-null member.
fn member<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    m.get(key).filter(|v| !v.is_null())
}

fn as_obj<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, DecodeError> {
    v.as_object().ok_or_else(|| expected(path, "an object", v))
}

fn opt_str<'a>(
    m: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a str>, DecodeError> {
    match member(m, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(v) => Err(expected(&join(path, key), "a string", v)),
    }
}

/// A JSON object found at a path.
type Found<'a> = Option<(&'a Map<String, Value>, String)>;

fn opt_obj<'a>(m: &'a Map<String, Value>, key: &str, path: &str) -> Result<Found<'a>, DecodeError> {
    let p = join(path, key);
    match member(m, key) {
        None => Ok(None),
        Some(v) => Ok(Some((as_obj(v, &p)?, p))),
    }
}

fn opt_arr<'a>(
    m: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<(&'a Vec<Value>, String)>, DecodeError> {
    let p = join(path, key);
    match member(m, key) {
        None => Ok(None),
        Some(Value::Array(a)) => Ok(Some((a, p))),
        Some(v) => Err(expected(&p, "an array", v)),
    }
}

fn opt_number(
    m: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<String>, DecodeError> {
    match member(m, key) {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(v) => Err(expected(&join(path, key), "a number", v)),
    }
}

fn nonempty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

// ---------------------------------------------------------------------------------------------
// Dates.

/// A FHIR `dateTime`/`instant` (or the canonical `observed_at`) → (`YYYY[-MM[-DD]]` or
/// `YYYY-MM-DDTHH:MM:SS`, the stated offset). Fractions of a second are dropped; a missing
/// `:SS` is `:00`; the offset is reported, not applied (observed_at is device local time).
fn normalise_datetime(s: &str, path: &str) -> Result<(String, Option<String>), DecodeError> {
    let bad = || {
        json_err(
            path,
            format!("expected a date/time like 2025-05-14T13:21:03+02:00, got {s:?}"),
        )
    };
    let b = s.trim().as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(r)?;
        if part.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(part).ok()?.parse().ok()
        } else {
            None
        }
    };
    let year = digits(0..4).ok_or_else(bad)?;
    if b.len() == 4 {
        return Ok((format!("{year:04}"), None));
    }
    if b.get(4) != Some(&b'-') {
        return Err(bad());
    }
    let month = digits(5..7)
        .filter(|m| (1..=12).contains(m))
        .ok_or_else(bad)?;
    if b.len() == 7 {
        return Ok((format!("{year:04}-{month:02}"), None));
    }
    if b.get(7) != Some(&b'-') {
        return Err(bad());
    }
    let day = digits(8..10)
        .filter(|d| (1..=31).contains(d))
        .ok_or_else(bad)?;
    let date = format!("{year:04}-{month:02}-{day:02}");
    if b.len() == 10 {
        return Ok((date, None));
    }
    if !matches!(b.get(10), Some(b'T') | Some(b' ')) {
        return Err(bad());
    }
    let hour = digits(11..13).filter(|h| *h <= 23).ok_or_else(bad)?;
    if b.get(13) != Some(&b':') {
        return Err(bad());
    }
    let minute = digits(14..16).filter(|m| *m <= 59).ok_or_else(bad)?;
    let mut i = 16;
    let mut second = 0;
    if b.get(i) == Some(&b':') {
        second = digits(17..19).filter(|s| *s <= 60).ok_or_else(bad)?;
        i = 19;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == start {
                return Err(bad());
            }
        }
    }
    let offset = match b.get(i) {
        None => None,
        Some(b'Z') if b.len() == i + 1 => Some("Z".to_owned()),
        Some(b'+') | Some(b'-') if b.len() == i + 6 => {
            let oh = digits(i + 1..i + 3).filter(|h| *h <= 14).ok_or_else(bad)?;
            if b.get(i + 3) != Some(&b':') {
                return Err(bad());
            }
            let om = digits(i + 4..i + 6).filter(|m| *m <= 59).ok_or_else(bad)?;
            Some(format!("{}{oh:02}:{om:02}", b[i] as char))
        }
        _ => return Err(bad()),
    };
    Ok((format!("{date}T{hour:02}:{minute:02}:{second:02}"), offset))
}

/// Set `observed_at` (and `extra.observed_at_offset`) from a date/time string.
fn set_observed_at(o: &mut Observation, s: &str, path: &str) -> Result<(), DecodeError> {
    let (at, offset) = normalise_datetime(s, path)?;
    o.observed_at = Some(at);
    match offset {
        Some(off) => {
            o.extra.insert("observed_at_offset".into(), off);
        }
        None => {
            o.extra.remove("observed_at_offset");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------

mod resource {
    //! FHIR R4 JSON resources → observations.

    use super::*;

    const BUNDLE_TYPES: &[&str] = &[
        "collection",
        "transaction",
        "batch",
        "message",
        "searchset",
        "document",
    ];

    /// A resource and the JSON path where it sits in the body.
    #[derive(Clone, Copy)]
    struct Res<'a> {
        map: &'a Map<String, Value>,
        path: &'a str,
    }

    /// Where references are looked up: the resource holding `contained`, and the bundle entries.
    struct Scope<'a> {
        container: Option<Res<'a>>,
        entries: &'a [Entry<'a>],
    }

    struct Entry<'a> {
        full_url: Option<&'a str>,
        resource_type: &'a str,
        id: Option<&'a str>,
        path: String,
        map: &'a Map<String, Value>,
    }

    /// What a DiagnosticReport lends the Observations it lists.
    #[derive(Default, Clone)]
    struct Defaults {
        patient_id: Option<String>,
        sample_id: Option<String>,
        observed_at: Option<(String, Option<String>)>,
        result_status: Option<String>,
        extra: BTreeMap<String, String>,
    }

    pub fn decode(body: &Value) -> Result<Vec<Observation>, DecodeError> {
        let root = body
            .as_object()
            .ok_or_else(|| expected("", "a FHIR resource (a JSON object)", body))?;
        let rt = resource_type(root, "")?;
        let mut out = Vec::new();
        let no_entries: &[Entry] = &[];
        match rt {
            "Observation" => {
                let scope = Scope {
                    container: Some(Res {
                        map: root,
                        path: "",
                    }),
                    entries: no_entries,
                };
                observation(root, "", &scope, &Defaults::default(), &mut out)?;
            }
            "DiagnosticReport" => {
                report(
                    Res {
                        map: root,
                        path: "",
                    },
                    no_entries,
                    &mut out,
                )?;
            }
            "Bundle" => bundle(root, &mut out)?,
            other => {
                return Err(json_err(
                    "resourceType",
                    format!(
                        "{other:?} is not supported (expected Observation, DiagnosticReport or Bundle)"
                    ),
                ));
            }
        }
        if out.is_empty() {
            return Err(DecodeError::NoObservations {
                what: format!("the {rt}"),
            });
        }
        Ok(out)
    }

    fn resource_type<'a>(m: &'a Map<String, Value>, path: &str) -> Result<&'a str, DecodeError> {
        match opt_str(m, "resourceType", path)? {
            Some(rt) => Ok(rt),
            None => Err(json_err(
                &join(path, "resourceType"),
                "missing: this is not a FHIR resource",
            )),
        }
    }

    fn bundle(root: &Map<String, Value>, out: &mut Vec<Observation>) -> Result<(), DecodeError> {
        match opt_str(root, "type", "")? {
            Some(t) if BUNDLE_TYPES.contains(&t) => {}
            Some(t) => {
                return Err(json_err(
                    "type",
                    format!(
                        "Bundle type {t:?} is not accepted (one of {})",
                        BUNDLE_TYPES.join(", ")
                    ),
                ));
            }
            None => return Err(json_err("type", "missing (a Bundle needs a type)")),
        }
        let Some((list, lpath)) = opt_arr(root, "entry", "")? else {
            return Ok(());
        };
        let mut entries = Vec::with_capacity(list.len());
        for (i, e) in list.iter().enumerate() {
            let epath = index(&lpath, i);
            let em = as_obj(e, &epath)?;
            let full_url = opt_str(em, "fullUrl", &epath)?;
            let Some((rm, rpath)) = opt_obj(em, "resource", &epath)? else {
                return Err(json_err(&join(&epath, "resource"), "missing"));
            };
            let resource_type = resource_type(rm, &rpath)?;
            let id = opt_str(rm, "id", &rpath)?;
            entries.push(Entry {
                full_url,
                resource_type,
                id,
                path: rpath,
                map: rm,
            });
        }
        // Observations a report lists are emitted with the report (once), not on their own.
        let mut consumed = vec![false; entries.len()];
        for e in entries
            .iter()
            .filter(|e| e.resource_type == "DiagnosticReport")
        {
            for (r, _) in report_results(
                Res {
                    map: e.map,
                    path: &e.path,
                },
                &entries,
            )? {
                if let Target::Entry(k) = r {
                    consumed[k] = true;
                }
            }
        }
        for (k, e) in entries.iter().enumerate() {
            match e.resource_type {
                "Observation" if !consumed[k] => {
                    let scope = Scope {
                        container: Some(Res {
                            map: e.map,
                            path: &e.path,
                        }),
                        entries: &entries,
                    };
                    observation(e.map, &e.path, &scope, &Defaults::default(), out)?;
                }
                "DiagnosticReport" => report(
                    Res {
                        map: e.map,
                        path: &e.path,
                    },
                    &entries,
                    out,
                )?,
                _ => {}
            }
        }
        Ok(())
    }

    #[derive(Clone, Copy)]
    enum Target {
        /// Index into the bundle entries.
        Entry(usize),
        /// Index into the container's `contained`.
        Contained(usize),
    }

    /// Find what `reference` names: `#id` in the container's `contained`, else a bundle entry by
    /// `fullUrl`, `Type/id` or a URL ending in `/Type/id`.
    fn resolve(
        reference: &str,
        container: Option<Res<'_>>,
        entries: &[Entry<'_>],
    ) -> Option<Target> {
        if let Some(local) = reference.strip_prefix('#') {
            let contained = container?.map.get("contained")?.as_array()?;
            return contained
                .iter()
                .position(|c| c.get("id").and_then(Value::as_str) == Some(local))
                .map(Target::Contained);
        }
        entries
            .iter()
            .position(|e| {
                e.full_url == Some(reference)
                    || e.id.is_some_and(|id| {
                        let typed = format!("{}/{id}", e.resource_type);
                        reference == typed || reference.ends_with(&format!("/{typed}"))
                    })
                    || e.full_url
                        .is_some_and(|u| u.ends_with(&format!("/{reference}")))
            })
            .map(Target::Entry)
    }

    /// The map and path of a resolved target.
    fn target<'a>(
        t: Target,
        container: Option<Res<'a>>,
        entries: &'a [Entry<'a>],
    ) -> Option<(&'a Map<String, Value>, String)> {
        match t {
            Target::Entry(k) => entries.get(k).map(|e| (e.map, e.path.clone())),
            Target::Contained(k) => {
                let c = container?;
                let v = c.map.get("contained")?.as_array()?.get(k)?;
                Some((v.as_object()?, index(&join(c.path, "contained"), k)))
            }
        }
    }

    /// A reference's `reference` string, if any.
    fn reference_of<'a>(
        m: &'a Map<String, Value>,
        path: &str,
    ) -> Result<Option<&'a str>, DecodeError> {
        opt_str(m, "reference", path)
    }

    /// The Observations a report's `result` list names, resolved, with the path of each reference.
    fn report_results(
        rep: Res<'_>,
        entries: &[Entry<'_>],
    ) -> Result<Vec<(Target, String)>, DecodeError> {
        let mut out = Vec::new();
        let Some((list, lpath)) = opt_arr(rep.map, "result", rep.path)? else {
            return Ok(out);
        };
        for (i, r) in list.iter().enumerate() {
            let rpath = index(&lpath, i);
            let rm = as_obj(r, &rpath)?;
            let Some(reference) = reference_of(rm, &rpath)? else {
                return Err(json_err(
                    &join(&rpath, "reference"),
                    "missing (a result must reference an Observation)",
                ));
            };
            let refpath = join(&rpath, "reference");
            let t = resolve(reference, Some(rep), entries).ok_or_else(|| {
                json_err(
                    &refpath,
                    format!("{reference:?} is not in the Bundle or contained in the report"),
                )
            })?;
            let Some((m, mpath)) = target(t, Some(rep), entries) else {
                return Err(json_err(&refpath, "reference target is not an object"));
            };
            let rt = resource_type(m, &mpath)?;
            if rt != "Observation" {
                return Err(json_err(
                    &refpath,
                    format!("{reference:?} is a {rt}, expected an Observation"),
                ));
            }
            out.push((t, refpath));
        }
        Ok(out)
    }

    fn report(
        rep: Res<'_>,
        entries: &[Entry<'_>],
        out: &mut Vec<Observation>,
    ) -> Result<(), DecodeError> {
        let (m, path) = (rep.map, rep.path);
        let scope = Scope {
            container: Some(rep),
            entries,
        };
        let mut d = Defaults {
            patient_id: subject(m, path, &scope)?,
            result_status: nonempty(opt_str(m, "status", path)?),
            ..Defaults::default()
        };
        if let Some((list, lpath)) = opt_arr(m, "specimen", path)?
            && let Some(first) = list.first()
        {
            let p = index(&lpath, 0);
            d.sample_id = specimen_id(as_obj(first, &p)?, &p, &scope)?;
        }
        if let Some((s, p)) = effective(m, path)? {
            d.observed_at = Some(normalise_datetime(s, &p)?);
        }
        if let Some(id) = first_identifier(m, path)? {
            d.extra.insert("report_id".into(), id);
        }
        if let Some(id) = nonempty(opt_str(m, "id", path)?) {
            d.extra.insert("report_fhir_id".into(), id);
        }
        if let Some((c, cpath)) = opt_obj(m, "code", path)? {
            let c = codeable(c, &cpath)?;
            if let Some(code) = c.code.or(c.text) {
                d.extra.insert("report_code".into(), code);
            }
        }
        if let Some(text) = nonempty(opt_str(m, "conclusion", path)?) {
            d.extra.insert("report_conclusion".into(), text);
        }
        for (t, _) in report_results(rep, entries)? {
            let Some((om, opath)) = target(t, Some(rep), entries) else {
                continue;
            };
            // An Observation contained in the report resolves its own `#refs` in the report.
            let oscope = Scope {
                container: Some(match t {
                    Target::Contained(_) => rep,
                    Target::Entry(_) => Res {
                        map: om,
                        path: &opath,
                    },
                }),
                entries,
            };
            observation(om, &opath, &oscope, &d, out)?;
        }
        Ok(())
    }

    /// `effectiveDateTime`, `effectivePeriod.start`, `effectiveInstant`, else `issued`.
    fn effective<'a>(
        m: &'a Map<String, Value>,
        path: &str,
    ) -> Result<Option<(&'a str, String)>, DecodeError> {
        if let Some(s) = opt_str(m, "effectiveDateTime", path)? {
            return Ok(Some((s, join(path, "effectiveDateTime"))));
        }
        if let Some((p, ppath)) = opt_obj(m, "effectivePeriod", path)?
            && let Some(s) = opt_str(p, "start", &ppath)?
        {
            return Ok(Some((s, join(&ppath, "start"))));
        }
        if let Some(s) = opt_str(m, "effectiveInstant", path)? {
            return Ok(Some((s, join(path, "effectiveInstant"))));
        }
        if let Some(s) = opt_str(m, "issued", path)? {
            return Ok(Some((s, join(path, "issued"))));
        }
        Ok(None)
    }

    fn first_identifier(m: &Map<String, Value>, path: &str) -> Result<Option<String>, DecodeError> {
        let Some((list, lpath)) = opt_arr(m, "identifier", path)? else {
            return Ok(None);
        };
        match list.first() {
            Some(first) => {
                let p = index(&lpath, 0);
                Ok(nonempty(opt_str(as_obj(first, &p)?, "value", &p)?))
            }
            None => Ok(None),
        }
    }

    /// `reference.identifier.value`.
    fn ref_identifier(r: &Map<String, Value>, path: &str) -> Result<Option<String>, DecodeError> {
        match opt_obj(r, "identifier", path)? {
            Some((i, ipath)) => Ok(nonempty(opt_str(i, "value", &ipath)?)),
            None => Ok(None),
        }
    }

    /// The referenced resource, when it is in the body and of type `rt`.
    fn referenced<'a>(
        r: &'a Map<String, Value>,
        path: &str,
        scope: &'a Scope<'a>,
        rt: &str,
    ) -> Result<Found<'a>, DecodeError> {
        let Some(reference) = reference_of(r, path)? else {
            return Ok(None);
        };
        let found = resolve(reference, scope.container, scope.entries)
            .and_then(|t| target(t, scope.container, scope.entries))
            .filter(|(m, _)| m.get("resourceType").and_then(Value::as_str) == Some(rt));
        Ok(found)
    }

    /// Patient id: `subject.identifier.value`, the referenced Patient's `identifier[0].value`, or
    /// the reference string itself.
    fn subject(
        m: &Map<String, Value>,
        path: &str,
        scope: &Scope<'_>,
    ) -> Result<Option<String>, DecodeError> {
        let Some((s, spath)) = opt_obj(m, "subject", path)? else {
            return Ok(None);
        };
        if let Some(v) = ref_identifier(s, &spath)? {
            return Ok(Some(v));
        }
        if let Some((p, ppath)) = referenced(s, &spath, scope, "Patient")?
            && let Some(v) = first_identifier(p, &ppath)?
        {
            return Ok(Some(v));
        }
        Ok(nonempty(reference_of(s, &spath)?))
    }

    /// Sample id from a Specimen reference: its `identifier.value`, or the referenced Specimen's
    /// `accessionIdentifier.value` / `identifier[0].value`.
    fn specimen_id(
        r: &Map<String, Value>,
        path: &str,
        scope: &Scope<'_>,
    ) -> Result<Option<String>, DecodeError> {
        if let Some(v) = ref_identifier(r, path)? {
            return Ok(Some(v));
        }
        if let Some((s, spath)) = referenced(r, path, scope, "Specimen")? {
            if let Some((a, apath)) = opt_obj(s, "accessionIdentifier", &spath)?
                && let Some(v) = nonempty(opt_str(a, "value", &apath)?)
            {
                return Ok(Some(v));
            }
            return first_identifier(s, &spath);
        }
        Ok(None)
    }

    fn device(
        m: &Map<String, Value>,
        path: &str,
        scope: &Scope<'_>,
    ) -> Result<Device, DecodeError> {
        let mut d = Device::default();
        let Some((r, rpath)) = opt_obj(m, "device", path)? else {
            return Ok(d);
        };
        d.model = nonempty(opt_str(r, "display", &rpath)?);
        d.serial = ref_identifier(r, &rpath)?;
        if let Some((dev, dpath)) = referenced(r, &rpath, scope, "Device")? {
            d.vendor = d.vendor.or(nonempty(opt_str(dev, "manufacturer", &dpath)?));
            d.serial = d.serial.or(nonempty(opt_str(dev, "serialNumber", &dpath)?));
            let mut model = nonempty(opt_str(dev, "modelNumber", &dpath)?);
            if let Some((names, npath)) = opt_arr(dev, "deviceName", &dpath)?
                && let Some(first) = names.first()
            {
                let p = index(&npath, 0);
                model = model.or(nonempty(opt_str(as_obj(first, &p)?, "name", &p)?));
            }
            d.model = d.model.or(model);
        }
        Ok(d)
    }

    /// The first coding of a CodeableConcept, and its text.
    #[derive(Default)]
    struct Coded {
        code: Option<String>,
        system: Option<String>,
        display: Option<String>,
        text: Option<String>,
    }

    fn codeable(m: &Map<String, Value>, path: &str) -> Result<Coded, DecodeError> {
        let mut c = Coded {
            text: nonempty(opt_str(m, "text", path)?),
            ..Coded::default()
        };
        if let Some((list, lpath)) = opt_arr(m, "coding", path)? {
            for (i, coding) in list.iter().enumerate() {
                let p = index(&lpath, i);
                let cm = as_obj(coding, &p)?;
                let code = nonempty(opt_str(cm, "code", &p)?);
                let system = nonempty(opt_str(cm, "system", &p)?);
                let display = nonempty(opt_str(cm, "display", &p)?);
                if i == 0 {
                    (c.code, c.system, c.display) = (code, system, display);
                }
            }
        }
        Ok(c)
    }

    /// Codes (or texts) of every interpretation coding.
    fn interpretation(m: &Map<String, Value>, path: &str) -> Result<Vec<String>, DecodeError> {
        let mut flags = Vec::new();
        let Some((list, lpath)) = opt_arr(m, "interpretation", path)? else {
            return Ok(flags);
        };
        for (i, cc) in list.iter().enumerate() {
            let p = index(&lpath, i);
            let cm = as_obj(cc, &p)?;
            let before = flags.len();
            if let Some((codings, cpath)) = opt_arr(cm, "coding", &p)? {
                for (j, coding) in codings.iter().enumerate() {
                    let q = index(&cpath, j);
                    if let Some(code) = nonempty(opt_str(as_obj(coding, &q)?, "code", &q)?) {
                        flags.push(code);
                    }
                }
            }
            if flags.len() == before {
                flags.extend(nonempty(opt_str(cm, "text", &p)?));
            }
        }
        Ok(flags)
    }

    fn reference_range(
        m: &Map<String, Value>,
        path: &str,
    ) -> Result<(Option<String>, Option<String>), DecodeError> {
        let Some((list, lpath)) = opt_arr(m, "referenceRange", path)? else {
            return Ok((None, None));
        };
        let Some(first) = list.first() else {
            return Ok((None, None));
        };
        let p = index(&lpath, 0);
        let rm = as_obj(first, &p)?;
        let bound = |key: &str| -> Result<Option<String>, DecodeError> {
            match opt_obj(rm, key, &p)? {
                Some((q, qpath)) => opt_number(q, "value", &qpath),
                None => Ok(None),
            }
        };
        let (low, high) = (bound("low")?, bound("high")?);
        let text = nonempty(opt_str(rm, "text", &p)?);
        let range = match (low, high) {
            (Some(l), Some(h)) => Some(format!("{l}-{h}")),
            (Some(l), None) => Some(format!(">={l}")),
            (None, Some(h)) => Some(format!("<={h}")),
            (None, None) => None,
        };
        Ok(match range {
            Some(r) => (Some(r), text),
            None => (text, None),
        })
    }

    /// The value[x] of an Observation or a component.
    fn value(m: &Map<String, Value>, path: &str, o: &mut Observation) -> Result<bool, DecodeError> {
        if let Some((q, qpath)) = opt_obj(m, "valueQuantity", path)? {
            let number = opt_number(q, "value", &qpath)?;
            let comparator = nonempty(opt_str(q, "comparator", &qpath)?);
            let unit = nonempty(opt_str(q, "unit", &qpath)?);
            let code = nonempty(opt_str(q, "code", &qpath)?);
            if let Some(c) = &comparator {
                o.extra.insert("comparator".into(), c.clone());
            }
            o.value = number.map(|n| format!("{}{n}", comparator.unwrap_or_default()));
            if code.is_some() && code != unit {
                o.extra
                    .insert("unit_code".into(), code.clone().unwrap_or_default());
            }
            o.unit = unit.or(code);
            return Ok(true);
        }
        if let Some(s) = opt_str(m, "valueString", path)? {
            o.value = Some(s.to_owned());
            return Ok(true);
        }
        if let Some((c, cpath)) = opt_obj(m, "valueCodeableConcept", path)? {
            let c = codeable(c, &cpath)?;
            if let Some(d) = c.display.clone().or(c.text.clone()) {
                o.extra.insert("value_display".into(), d);
            }
            if let Some(s) = c.system {
                o.extra.insert("value_system".into(), s);
            }
            o.value = c.code.or(c.text).or(c.display);
            return Ok(true);
        }
        match member(m, "valueBoolean") {
            Some(Value::Bool(b)) => {
                o.value = Some(b.to_string());
                return Ok(true);
            }
            Some(v) => return Err(expected(&join(path, "valueBoolean"), "a boolean", v)),
            None => {}
        }
        match member(m, "valueInteger") {
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {
                o.value = Some(n.to_string());
                return Ok(true);
            }
            Some(v) => return Err(expected(&join(path, "valueInteger"), "an integer", v)),
            None => {}
        }
        for key in ["valueDateTime", "valueTime"] {
            if let Some(s) = opt_str(m, key, path)? {
                o.value = Some(s.to_owned());
                return Ok(true);
            }
        }
        // Range, Ratio, SampledData, Period, Attachment: no canonical slot; say it was there.
        if let Some(key) = m
            .iter()
            .find(|(k, v)| k.starts_with("value") && k.len() > 5 && !v.is_null())
            .map(|(k, _)| k)
        {
            o.extra.insert("value_type".into(), key[5..].to_owned());
            return Ok(true);
        }
        if let Some((c, cpath)) = opt_obj(m, "dataAbsentReason", path)? {
            let c = codeable(c, &cpath)?;
            if let Some(r) = c.code.or(c.text) {
                o.extra.insert("data_absent_reason".into(), r);
            }
        }
        Ok(false)
    }

    /// Code, name, value, range and flags of an Observation or a component.
    fn coded_result(
        m: &Map<String, Value>,
        path: &str,
        o: &mut Observation,
    ) -> Result<bool, DecodeError> {
        let Some((c, cpath)) = opt_obj(m, "code", path)? else {
            return Err(json_err(
                &join(path, "code"),
                "missing (an Observation needs a code)",
            ));
        };
        let c = codeable(c, &cpath)?;
        o.test_code = match c.code.clone().or(c.text.clone()) {
            Some(code) => code,
            None => {
                return Err(json_err(&cpath, "has neither coding[0].code nor text"));
            }
        };
        match &c.system {
            Some(system) => {
                o.extra.insert("code_system".into(), system.clone());
                if system == "http://loinc.org" {
                    o.extra.insert("loinc".into(), o.test_code.clone());
                } else {
                    o.extra.remove("loinc");
                }
            }
            None => {
                o.extra.remove("code_system");
                o.extra.remove("loinc");
            }
        }
        o.test_name = c.text.or(c.display);
        let has_value = value(m, path, o)?;
        let (range, range_text) = reference_range(m, path)?;
        o.reference_range = range;
        if let Some(t) = range_text {
            o.extra.insert("reference_range_text".into(), t);
        }
        o.flags = interpretation(m, path)?;
        Ok(has_value)
    }

    fn observation(
        m: &Map<String, Value>,
        path: &str,
        scope: &Scope<'_>,
        d: &Defaults,
        out: &mut Vec<Observation>,
    ) -> Result<(), DecodeError> {
        let rt = resource_type(m, path)?;
        if rt != "Observation" {
            return Err(json_err(
                &join(path, "resourceType"),
                format!("{rt:?} where an Observation was expected"),
            ));
        }
        let mut o = Observation {
            extra: d.extra.clone(),
            ..Observation::default()
        };
        o.result_status = nonempty(opt_str(m, "status", path)?).or(d.result_status.clone());
        if let Some(id) = nonempty(opt_str(m, "id", path)?) {
            o.extra.insert("fhir_id".into(), id);
        }
        match effective(m, path)? {
            Some((s, p)) => set_observed_at(&mut o, s, &p)?,
            None => {
                if let Some((at, off)) = &d.observed_at {
                    o.observed_at = Some(at.clone());
                    if let Some(off) = off {
                        o.extra.insert("observed_at_offset".into(), off.clone());
                    }
                }
            }
        }
        let specimen = match opt_obj(m, "specimen", path)? {
            Some((s, spath)) => specimen_id(s, &spath, scope)?,
            None => None,
        };
        o.sample_id = specimen
            .or(d.sample_id.clone())
            .or(first_identifier(m, path)?);
        o.patient_id = subject(m, path, scope)?.or(d.patient_id.clone());
        o.device = device(m, path, scope)?;
        if let Some((notes, npath)) = opt_arr(m, "note", path)? {
            for (i, n) in notes.iter().enumerate() {
                let p = index(&npath, i);
                o.comments
                    .extend(nonempty(opt_str(as_obj(n, &p)?, "text", &p)?));
            }
        }
        let has_value = coded_result(m, path, &mut o)?;
        let mut parts = Vec::new();
        if let Some((list, lpath)) = opt_arr(m, "component", path)? {
            for (i, comp) in list.iter().enumerate() {
                let p = index(&lpath, i);
                let cm = as_obj(comp, &p)?;
                let mut c = o.clone();
                c.value = None;
                c.unit = None;
                c.extra.insert("panel_code".into(), o.test_code.clone());
                for k in [
                    "comparator",
                    "unit_code",
                    "value_display",
                    "value_system",
                    "value_type",
                    "data_absent_reason",
                    "reference_range_text",
                ] {
                    c.extra.remove(k);
                }
                coded_result(cm, &p, &mut c)?;
                parts.push(c);
            }
        }
        if has_value || parts.is_empty() {
            out.push(o);
        }
        out.extend(parts);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------

/// Canonical observation fields, as the JSON/CSV/XML shapes name them.
const SCALAR_FIELDS: &[&str] = &[
    "sample_id",
    "patient_id",
    "test_code",
    "test_name",
    "value",
    "unit",
    "reference_range",
    "result_status",
    "observed_at",
];

/// Set a scalar canonical field by name; `false` when `name` is not one.
fn set_scalar(o: &mut Observation, name: &str, value: String) -> bool {
    let slot = match name {
        "sample_id" => &mut o.sample_id,
        "patient_id" => &mut o.patient_id,
        "test_name" => &mut o.test_name,
        "value" => &mut o.value,
        "unit" => &mut o.unit,
        "reference_range" => &mut o.reference_range,
        "result_status" => &mut o.result_status,
        "observed_at" => &mut o.observed_at,
        "test_code" => {
            o.test_code = value;
            return true;
        }
        _ => return false,
    };
    *slot = Some(value);
    true
}

/// After a canonical-shape record is filled: `test_code` present, `observed_at` normalised.
/// `err(field, message)` builds the format's error.
fn finish(
    o: &mut Observation,
    err: impl Fn(&str, String) -> DecodeError,
) -> Result<(), DecodeError> {
    if o.test_code.trim().is_empty() {
        return Err(err("test_code", "missing or empty (required)".into()));
    }
    if let Some(at) = o.observed_at.take() {
        let (at, offset) = normalise_datetime(&at, "observed_at").map_err(|_| {
            err(
                "observed_at",
                format!("expected a date/time like 2025-05-14T13:21:03, got {at:?}"),
            )
        })?;
        o.observed_at = Some(at);
        if let Some(off) = offset {
            o.extra.insert("observed_at_offset".into(), off);
        }
    }
    Ok(())
}

mod canonical {
    //! The canonical Observation JSON (record.rs), one object or an array.

    use super::*;

    const IGNORED: &[&str] = &["source", "received_at", "raw_id"];

    pub fn decode(body: &Value) -> Result<Vec<Observation>, DecodeError> {
        match body {
            Value::Object(m) => Ok(vec![one(m, "")?]),
            Value::Array(list) => {
                if list.is_empty() {
                    return Err(DecodeError::NoObservations {
                        what: "the array".into(),
                    });
                }
                list.iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let p = index("", i);
                        one(as_obj(v, &p)?, &p)
                    })
                    .collect()
            }
            other => Err(expected(
                "",
                "an observation object or an array of them",
                other,
            )),
        }
    }

    fn text(v: &Value, path: &str) -> Result<Option<String>, DecodeError> {
        match v {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s.clone())),
            Value::Number(n) => Ok(Some(n.to_string())),
            Value::Bool(b) => Ok(Some(b.to_string())),
            other => Err(expected(path, "a string", other)),
        }
    }

    fn strings(v: &Value, path: &str) -> Result<Vec<String>, DecodeError> {
        match v {
            Value::Null => Ok(Vec::new()),
            Value::Array(list) => list
                .iter()
                .enumerate()
                .filter_map(|(i, v)| text(v, &index(path, i)).transpose())
                .collect(),
            other => Err(expected(path, "an array of strings", other)),
        }
    }

    fn one(m: &Map<String, Value>, path: &str) -> Result<Observation, DecodeError> {
        let mut o = Observation::default();
        for (key, v) in m {
            let p = join(path, key);
            match key.as_str() {
                k if IGNORED.contains(&k) => {}
                "test_code" => match v {
                    Value::String(s) => o.test_code = s.clone(),
                    Value::Null => {}
                    other => return Err(expected(&p, "a string", other)),
                },
                k if SCALAR_FIELDS.contains(&k) => {
                    if let Some(s) = text(v, &p)? {
                        set_scalar(&mut o, k, s);
                    }
                }
                "flags" => o.flags = strings(v, &p)?,
                "comments" => o.comments = strings(v, &p)?,
                "device" => {
                    if v.is_null() {
                        continue;
                    }
                    for (dk, dv) in as_obj(v, &p)? {
                        let dp = join(&p, dk);
                        let slot = match dk.as_str() {
                            "vendor" => &mut o.device.vendor,
                            "model" => &mut o.device.model,
                            "serial" => &mut o.device.serial,
                            _ => {
                                return Err(json_err(
                                    &dp,
                                    "unknown field (expected vendor, model or serial)",
                                ));
                            }
                        };
                        *slot = text(dv, &dp)?;
                    }
                }
                "extra" => {
                    if v.is_null() {
                        continue;
                    }
                    for (ek, ev) in as_obj(v, &p)? {
                        if let Some(s) = text(ev, &join(&p, ek))? {
                            o.extra.insert(ek.clone(), s);
                        }
                    }
                }
                _ => {
                    return Err(json_err(
                        &p,
                        format!(
                            "unknown field (expected {}, flags, comments, device, extra)",
                            SCALAR_FIELDS.join(", ")
                        ),
                    ));
                }
            }
        }
        finish(&mut o, |field, message| {
            json_err(&join(path, field), message)
        })?;
        Ok(o)
    }
}

// ---------------------------------------------------------------------------------------------

mod csv {
    //! A small RFC 4180 reader and the header-mapped CSV shape.

    use super::*;

    /// Reads records from CSV text: quoted fields, doubled quotes, CRLF/LF/CR line ends.
    pub struct Reader<'a> {
        bytes: &'a [u8],
        pos: usize,
        /// 1-based line of the next byte.
        line: usize,
        delimiter: u8,
    }

    impl<'a> Reader<'a> {
        pub fn new(text: &'a str, delimiter: u8) -> Self {
            Reader {
                bytes: text.as_bytes(),
                pos: 0,
                line: 1,
                delimiter,
            }
        }

        /// The next record and the line it starts on; `None` at the end.
        pub fn next_record(&mut self) -> Result<Option<(usize, Vec<String>)>, DecodeError> {
            if self.pos >= self.bytes.len() {
                return Ok(None);
            }
            let start_line = self.line;
            let mut fields = Vec::new();
            loop {
                let mut field = Vec::new();
                if self.bytes.get(self.pos) == Some(&b'"') {
                    let quote_line = self.line;
                    self.pos += 1;
                    loop {
                        match self.bytes.get(self.pos) {
                            None => {
                                return Err(DecodeError::CsvSyntax {
                                    line: quote_line,
                                    message: "a quoted field is never closed".into(),
                                });
                            }
                            Some(b'"') if self.bytes.get(self.pos + 1) == Some(&b'"') => {
                                field.push(b'"');
                                self.pos += 2;
                            }
                            Some(b'"') => {
                                self.pos += 1;
                                break;
                            }
                            Some(&b) => {
                                if b == b'\n' {
                                    self.line += 1;
                                }
                                field.push(b);
                                self.pos += 1;
                            }
                        }
                    }
                    match self.bytes.get(self.pos) {
                        None | Some(b'\r') | Some(b'\n') => {}
                        Some(&b) if b == self.delimiter => {}
                        Some(_) => {
                            return Err(DecodeError::CsvSyntax {
                                line: self.line,
                                message: "text after a closing quote (a quote inside a quoted field must be doubled)".into(),
                            });
                        }
                    }
                } else {
                    while let Some(&b) = self.bytes.get(self.pos) {
                        if b == self.delimiter || b == b'\r' || b == b'\n' {
                            break;
                        }
                        field.push(b);
                        self.pos += 1;
                    }
                }
                fields.push(String::from_utf8_lossy(&field).into_owned());
                match self.bytes.get(self.pos) {
                    Some(&b) if b == self.delimiter => self.pos += 1,
                    Some(b'\r') => {
                        self.pos += 1;
                        if self.bytes.get(self.pos) == Some(&b'\n') {
                            self.pos += 1;
                        }
                        self.line += 1;
                        return Ok(Some((start_line, fields)));
                    }
                    Some(b'\n') => {
                        self.pos += 1;
                        self.line += 1;
                        return Ok(Some((start_line, fields)));
                    }
                    _ => return Ok(Some((start_line, fields))),
                }
            }
        }
    }

    /// `,`, `;` or tab: whichever occurs most (outside quotes) on the first line; `,` on a tie.
    pub fn detect_delimiter(text: &str) -> u8 {
        let mut counts = [0usize; 3];
        let mut quoted = false;
        for b in text.bytes() {
            match b {
                b'"' => quoted = !quoted,
                b'\n' | b'\r' if !quoted => break,
                b',' if !quoted => counts[0] += 1,
                b';' if !quoted => counts[1] += 1,
                b'\t' if !quoted => counts[2] += 1,
                _ => {}
            }
        }
        let candidates = [b',', b';', b'\t'];
        let mut best = 0;
        for i in 1..3 {
            if counts[i] > counts[best] {
                best = i;
            }
        }
        candidates[best]
    }

    enum Column {
        Scalar(&'static str),
        Flags,
        Comments,
        Vendor,
        Model,
        Serial,
        Extra(String),
        Ignored,
    }

    fn column(name: &str) -> Column {
        let lower = name.trim().to_ascii_lowercase();
        if let Some(f) = SCALAR_FIELDS.iter().find(|f| **f == lower) {
            return Column::Scalar(f);
        }
        match lower.as_str() {
            "flags" => Column::Flags,
            "comments" | "comment" => Column::Comments,
            "device_vendor" | "device.vendor" => Column::Vendor,
            "device_model" | "device.model" => Column::Model,
            "device_serial" | "device.serial" => Column::Serial,
            "source" | "received_at" | "raw_id" => Column::Ignored,
            _ => {
                let key = name.trim();
                let key = key
                    .strip_prefix("extra.")
                    .or_else(|| key.strip_prefix("extra_"))
                    .unwrap_or(key);
                Column::Extra(key.to_owned())
            }
        }
    }

    pub fn decode(text: &str) -> Result<Vec<Observation>, DecodeError> {
        let mut reader = Reader::new(text, detect_delimiter(text));
        let blank = |fields: &[String]| fields.iter().all(|f| f.trim().is_empty());
        let (header_line, header) = loop {
            match reader.next_record()? {
                Some((_, fields)) if blank(&fields) => {}
                Some(h) => break h,
                None => return Err(DecodeError::Empty),
            }
        };
        let mut columns = Vec::with_capacity(header.len());
        for (i, name) in header.iter().enumerate() {
            let n = name.trim();
            if n.is_empty() {
                return Err(DecodeError::CsvField {
                    line: header_line,
                    column: format!("#{}", i + 1),
                    message: "the header names no column here".into(),
                });
            }
            if header[..i].iter().any(|h| h.trim().eq_ignore_ascii_case(n)) {
                return Err(DecodeError::CsvField {
                    line: header_line,
                    column: n.to_owned(),
                    message: "appears twice in the header".into(),
                });
            }
            columns.push(column(n));
        }
        if !columns
            .iter()
            .any(|c| matches!(c, Column::Scalar("test_code")))
        {
            return Err(DecodeError::CsvMissingColumn {
                line: header_line,
                column: "test_code",
                found: header
                    .iter()
                    .map(|h| h.trim())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let mut out = Vec::new();
        while let Some((line, fields)) = reader.next_record()? {
            if blank(&fields) {
                continue;
            }
            if fields.len() != header.len() {
                return Err(DecodeError::CsvRow {
                    line,
                    message: format!(
                        "{} fields, but the header (line {header_line}) has {}",
                        fields.len(),
                        header.len()
                    ),
                });
            }
            let mut o = Observation::default();
            for (col, raw) in columns.iter().zip(&fields) {
                let Some(v) = nonempty(Some(raw)) else {
                    continue;
                };
                match col {
                    Column::Scalar(f) => {
                        set_scalar(&mut o, f, v);
                    }
                    Column::Flags => {
                        o.flags = v.split('|').filter_map(|f| nonempty(Some(f))).collect();
                    }
                    Column::Comments => o.comments.push(v),
                    Column::Vendor => o.device.vendor = Some(v),
                    Column::Model => o.device.model = Some(v),
                    Column::Serial => o.device.serial = Some(v),
                    Column::Extra(k) => {
                        o.extra.insert(k.clone(), v);
                    }
                    Column::Ignored => {}
                }
            }
            finish(&mut o, |field, message| DecodeError::CsvField {
                line,
                column: field.to_owned(),
                message,
            })?;
            out.push(o);
        }
        if out.is_empty() {
            return Err(DecodeError::NoObservations {
                what: "the CSV (header only)".into(),
            });
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------

mod xml {
    //! The documented `<results><observation>…` shape, read with the shared XML reader.

    use super::*;

    use crate::config::Encoding;
    use crate::protocol::xml as shared;
    pub use shared::Element;

    fn syntax(offset: usize, message: impl Into<String>) -> DecodeError {
        DecodeError::XmlSyntax {
            offset,
            message: message.into(),
        }
    }

    fn shape(e: &Element, message: impl Into<String>) -> DecodeError {
        DecodeError::XmlShape {
            element: e.name.clone(),
            offset: e.offset,
            message: message.into(),
        }
    }

    /// Parse the document into its root element with the shared reader
    /// ([`crate::protocol::xml`]), nesting at most [`MAX_XML_DEPTH`]; names lose their
    /// namespace prefix (`f:observation` → `observation`).
    pub fn parse(s: &str) -> Result<Element, DecodeError> {
        let mut root = shared::parse_with_depth(s.as_bytes(), Encoding::Utf8, MAX_XML_DEPTH)
            .map_err(|e| {
                let (offset, message) = match e {
                    shared::XmlError::MismatchedEnd {
                        offset,
                        open,
                        found,
                        opened,
                    } => (
                        offset,
                        format!("</{found}> does not close <{open}> opened at byte {opened}"),
                    ),
                    shared::XmlError::Doctype { offset } => {
                        (offset, "DOCTYPE/DTD declarations are not accepted".into())
                    }
                    other => (other.offset().unwrap_or(0), other.to_string()),
                };
                syntax(offset, message)
            })?;
        // An explicit stack, as in the reader: no recursion.
        let mut stack: Vec<&mut Element> = vec![&mut root];
        while let Some(e) = stack.pop() {
            if let Some((_, local)) = e.name.rsplit_once(':') {
                e.name = local.to_owned();
            }
            stack.extend(e.children.iter_mut());
        }
        Ok(root)
    }

    fn leaf(e: &Element) -> Result<Option<String>, DecodeError> {
        if let Some(c) = e.children.first() {
            return Err(shape(
                c,
                format!("unexpected inside <{}> (it holds text only)", e.name),
            ));
        }
        Ok(nonempty(Some(&e.text)))
    }

    fn no_text(e: &Element) -> Result<(), DecodeError> {
        if e.text.trim().is_empty() {
            Ok(())
        } else {
            Err(shape(e, "holds text where only elements are expected"))
        }
    }

    fn list(e: &Element, item: &str) -> Result<Vec<String>, DecodeError> {
        no_text(e)?;
        let mut out = Vec::new();
        for c in &e.children {
            if c.name != item {
                return Err(shape(
                    c,
                    format!("unexpected inside <{}> (expected <{item}>)", e.name),
                ));
            }
            out.extend(leaf(c)?);
        }
        Ok(out)
    }

    fn observation(e: &Element) -> Result<Observation, DecodeError> {
        no_text(e)?;
        let mut o = Observation::default();
        let mut seen: Vec<&str> = Vec::new();
        for c in &e.children {
            if seen.contains(&c.name.as_str()) {
                return Err(shape(c, "appears twice in one <observation>"));
            }
            seen.push(&c.name);
            match c.name.as_str() {
                n if SCALAR_FIELDS.contains(&n) => {
                    if let Some(v) = leaf(c)? {
                        set_scalar(&mut o, n, v);
                    }
                }
                "flags" => o.flags = list(c, "flag")?,
                "comments" => o.comments = list(c, "comment")?,
                "device" => {
                    no_text(c)?;
                    for d in &c.children {
                        let v = leaf(d)?;
                        match d.name.as_str() {
                            "vendor" => o.device.vendor = v,
                            "model" => o.device.model = v,
                            "serial" => o.device.serial = v,
                            _ => {
                                return Err(shape(
                                    d,
                                    "unexpected inside <device> (expected vendor, model, serial)",
                                ));
                            }
                        }
                    }
                }
                "extra" => {
                    no_text(c)?;
                    for x in &c.children {
                        if let Some(v) = leaf(x)? {
                            o.extra.insert(x.name.clone(), v);
                        }
                    }
                }
                "source" | "received_at" | "raw_id" => {}
                _ => {
                    return Err(shape(
                        c,
                        format!(
                            "unexpected inside <observation> (expected {}, flags, comments, device, extra)",
                            SCALAR_FIELDS.join(", ")
                        ),
                    ));
                }
            }
        }
        finish(&mut o, |field, message| DecodeError::XmlShape {
            element: format!("observation>{field}"),
            offset: e.offset,
            message,
        })?;
        Ok(o)
    }

    pub fn decode(text: &str) -> Result<Vec<Observation>, DecodeError> {
        let root = parse(text)?;
        match root.name.as_str() {
            "observation" => Ok(vec![observation(&root)?]),
            "results" => {
                no_text(&root)?;
                let mut out = Vec::with_capacity(root.children.len());
                for c in &root.children {
                    if c.name != "observation" {
                        return Err(shape(
                            c,
                            "unexpected inside <results> (expected <observation>)",
                        ));
                    }
                    out.push(observation(c)?);
                }
                if out.is_empty() {
                    return Err(DecodeError::NoObservations {
                        what: "<results>".into(),
                    });
                }
                Ok(out)
            }
            _ => Err(shape(
                &root,
                "root element must be <results> or <observation>",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn fixture(name: &str) -> Vec<u8> {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/http")
            .join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn err(kind: BodyKind, body: &str) -> String {
        decode(kind, body.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn fhir_observation_hba1c_value_quantity() {
        let body = fixture("fhir-observation-hba1c.json");
        assert_eq!(
            BodyKind::sniff(Some("application/json"), &body),
            Some(BodyKind::Fhir)
        );
        let obs = decode(BodyKind::Fhir, &body).unwrap();
        assert_eq!(obs.len(), 1);
        let o = &obs[0];
        assert_eq!(o.test_code, "4548-4");
        assert_eq!(o.test_name.as_deref(), Some("HbA1c"));
        assert_eq!(o.value.as_deref(), Some("6.8"));
        assert_eq!(o.unit.as_deref(), Some("%"));
        assert_eq!(o.reference_range.as_deref(), Some("4.0-5.6"));
        assert_eq!(o.flags, ["H"]);
        assert_eq!(o.result_status.as_deref(), Some("final"));
        assert_eq!(o.observed_at.as_deref(), Some("2025-05-14T13:21:03"));
        assert_eq!(o.extra["observed_at_offset"], "+02:00");
        assert_eq!(o.sample_id.as_deref(), Some("HB-2025-0142"));
        assert_eq!(o.patient_id.as_deref(), Some("PT-000731"));
        assert_eq!(o.device.model.as_deref(), Some("Afinion 2"));
        assert_eq!(o.device.serial.as_deref(), Some("AF2-118344"));
        assert_eq!(o.extra["loinc"], "4548-4");
        assert_eq!(o.extra["code_system"], "http://loinc.org");
        assert_eq!(o.comments, ["capillary sample"]);
    }

    #[test]
    fn fhir_bundle_with_report_resolves_results_once() {
        let body = fixture("fhir-bundle-genexpert.json");
        let obs = decode(BodyKind::Fhir, &body).unwrap();
        assert_eq!(obs.len(), 2, "{obs:#?}");
        let (mtb, rif) = (&obs[0], &obs[1]);
        assert_eq!(mtb.test_code, "89371-9");
        assert_eq!(mtb.value.as_deref(), Some("260373001"));
        assert_eq!(mtb.extra["value_display"], "Detected");
        assert_eq!(mtb.extra["value_system"], "http://snomed.info/sct");
        assert_eq!(mtb.sample_id.as_deref(), Some("XP-24-00317"));
        assert_eq!(mtb.patient_id.as_deref(), Some("PT-004512"));
        assert_eq!(mtb.device.vendor.as_deref(), Some("Cepheid"));
        assert_eq!(mtb.device.model.as_deref(), Some("GeneXpert Dx IV"));
        assert_eq!(mtb.device.serial.as_deref(), Some("806123"));
        assert_eq!(mtb.extra["report_id"], "RPT-24-00317");
        assert_eq!(mtb.extra["report_code"], "MTB-RIF-ULTRA");
        assert_eq!(mtb.observed_at.as_deref(), Some("2024-03-05T10:42:17"));
        assert_eq!(mtb.extra["observed_at_offset"], "Z");
        assert_eq!(rif.test_code, "89372-7");
        assert_eq!(rif.value.as_deref(), Some("260415000"));
        assert_eq!(rif.extra["value_display"], "Not detected");
        // The second Observation has no effective time of its own: the report's applies.
        assert_eq!(rif.observed_at.as_deref(), Some("2024-03-05T11:00:00"));
        assert_eq!(rif.result_status.as_deref(), Some("final"));
        assert_eq!(rif.sample_id.as_deref(), Some("XP-24-00317"));
    }

    #[test]
    fn canonical_json_array() {
        let body = fixture("observations.json");
        assert_eq!(
            BodyKind::sniff(Some("application/json; charset=utf-8"), &body),
            Some(BodyKind::Json)
        );
        let obs = decode(BodyKind::Json, &body).unwrap();
        assert_eq!(obs.len(), 2);
        assert_eq!(obs[0].sample_id.as_deref(), Some("S-1001"));
        assert_eq!(obs[0].test_code, "HbA1c");
        assert_eq!(obs[0].value.as_deref(), Some("6.5"));
        assert_eq!(obs[0].unit.as_deref(), Some("%"));
        assert_eq!(obs[0].device.vendor.as_deref(), Some("Abbott"));
        assert_eq!(obs[0].observed_at.as_deref(), Some("2025-05-14T13:21:03"));
        assert_eq!(obs[1].test_code, "CRP");
        assert_eq!(obs[1].value.as_deref(), Some("<5"));
        assert_eq!(obs[1].flags, ["N"]);
        assert_eq!(obs[1].extra["lot"], "CR2411");
    }

    #[test]
    fn csv_export_with_bom_semicolons_and_quotes() {
        let body = fixture("export.csv");
        let obs = decode(BodyKind::Csv, &body).unwrap();
        assert_eq!(obs.len(), 3);
        assert_eq!(obs[0].sample_id.as_deref(), Some("S-2001"));
        assert_eq!(obs[0].test_code, "HGB");
        assert_eq!(obs[0].value.as_deref(), Some("12.4"));
        assert_eq!(obs[0].unit.as_deref(), Some("g/dL"));
        assert_eq!(obs[0].observed_at.as_deref(), Some("2025-05-14T08:10:00"));
        assert_eq!(obs[1].flags, ["L", "A"]);
        assert_eq!(obs[1].comments, ["repeat; \"haemolysed\"\nsample"]);
        assert_eq!(obs[2].test_code, "PLT");
        assert_eq!(obs[2].extra["operator"], "nurse 3");
    }

    #[test]
    fn xml_results() {
        let body = fixture("results.xml");
        assert_eq!(
            BodyKind::sniff(Some("text/xml"), &body),
            Some(BodyKind::Xml)
        );
        let obs = decode(BodyKind::Xml, &body).unwrap();
        assert_eq!(obs.len(), 2);
        assert_eq!(obs[0].sample_id.as_deref(), Some("S-3001"));
        assert_eq!(obs[0].test_code, "GLU");
        assert_eq!(obs[0].value.as_deref(), Some("5.4"));
        assert_eq!(obs[0].reference_range.as_deref(), Some("3.9-6.1"));
        assert_eq!(obs[0].device.model.as_deref(), Some("Accu-Chek Inform II"));
        assert_eq!(obs[0].flags, ["N"]);
        assert_eq!(obs[1].test_code, "K");
        assert_eq!(obs[1].value.as_deref(), Some("<2.5"));
        assert_eq!(obs[1].comments, ["K & Na <panel>"]);
        assert_eq!(obs[1].extra["lot"], "L-77");
    }

    #[test]
    fn fhir_wrong_type_names_the_entry_path() {
        let body = r#"{"resourceType":"Bundle","type":"collection","entry":[
            {"resource":{"resourceType":"Patient","id":"p"}},
            {"resource":{"resourceType":"Observation","status":"final","code":{"text":"a"}}},
            {"resource":{"resourceType":"Observation","status":"final","code":{"text":"b"},
              "valueQuantity":{"value":"6.5","unit":"%"}}}]}"#;
        assert_eq!(
            err(BodyKind::Fhir, body),
            "entry[2].resource.valueQuantity.value: expected a number, got a string"
        );
        let e = decode(BodyKind::Fhir, body.as_bytes()).unwrap_err();
        assert!(!e.is_syntax());
    }

    #[test]
    fn not_fhir_is_named() {
        assert_eq!(
            err(BodyKind::Fhir, r#"{"test_code":"x"}"#),
            "resourceType: missing: this is not a FHIR resource"
        );
        assert_eq!(
            err(BodyKind::Fhir, r#"{"resourceType":"Patient"}"#),
            "resourceType: \"Patient\" is not supported (expected Observation, DiagnosticReport or Bundle)"
        );
        assert_eq!(
            err(BodyKind::Fhir, "[1]"),
            "(body): expected a FHIR resource (a JSON object), got an array"
        );
        assert_eq!(
            err(
                BodyKind::Fhir,
                r#"{"resourceType":"Observation","code":{"coding":[{"code":1}]}}"#
            ),
            "code.coding[0].code: expected a string, got a number"
        );
        assert_eq!(
            err(
                BodyKind::Fhir,
                r#"{"resourceType":"Observation","status":"final"}"#
            ),
            "code: missing (an Observation needs a code)"
        );
        assert_eq!(
            err(
                BodyKind::Fhir,
                r#"{"resourceType":"Observation","code":{"text":"x"},"effectiveDateTime":"14.05.2025"}"#
            ),
            "effectiveDateTime: expected a date/time like 2025-05-14T13:21:03+02:00, got \"14.05.2025\""
        );
        let e = decode(BodyKind::Fhir, b"{\"resourceType\": ").unwrap_err();
        assert!(e.is_syntax(), "{e}");
    }

    #[test]
    fn report_with_dangling_result_reference_is_refused() {
        let body = r#"{"resourceType":"DiagnosticReport","status":"final","code":{"text":"r"},
            "result":[{"reference":"Observation/nope"}]}"#;
        assert_eq!(
            err(BodyKind::Fhir, body),
            "result[0].reference: \"Observation/nope\" is not in the Bundle or contained in the report"
        );
    }

    #[test]
    fn components_become_observations() {
        let body = r##"{"resourceType":"DiagnosticReport","status":"final","code":{"text":"MTB"},
            "subject":{"reference":"#p"},
            "contained":[{"resourceType":"Patient","id":"p","identifier":[{"value":"PT-9"}]},
              {"resourceType":"Observation","id":"o","status":"final","code":{"text":"Xpert"},
               "component":[{"code":{"text":"MTB"},"valueString":"DETECTED LOW"},
                            {"code":{"text":"RIF"},"valueBoolean":false,"valueInteger":null}]}],
            "result":[{"reference":"#o"}]}"##;
        let obs = decode(BodyKind::Fhir, body.as_bytes()).unwrap();
        assert_eq!(obs.len(), 2);
        assert_eq!(obs[0].test_code, "MTB");
        assert_eq!(obs[0].value.as_deref(), Some("DETECTED LOW"));
        assert_eq!(obs[0].extra["panel_code"], "Xpert");
        assert_eq!(obs[0].patient_id.as_deref(), Some("PT-9"));
        assert_eq!(obs[1].value.as_deref(), Some("false"));
    }

    #[test]
    fn value_integer_and_dates() {
        let body = r#"{"resourceType":"Observation","code":{"coding":[{"system":"urn:x","code":"CD4"}]},
            "valueInteger":412,"effectivePeriod":{"start":"2025-01-02T03:04:05.123Z"},
            "subject":{"reference":"Patient/17"},"identifier":[{"value":"OBS-1"}]}"#;
        let o = &decode(BodyKind::Fhir, body.as_bytes()).unwrap()[0];
        assert_eq!(o.value.as_deref(), Some("412"));
        assert_eq!(o.observed_at.as_deref(), Some("2025-01-02T03:04:05"));
        assert_eq!(o.patient_id.as_deref(), Some("Patient/17"));
        assert_eq!(o.sample_id.as_deref(), Some("OBS-1"));
        assert!(!o.extra.contains_key("loinc"));
        assert_eq!(normalise_datetime("2025-05", "x").unwrap().0, "2025-05");
        assert_eq!(
            normalise_datetime("2025-05-14T13:21", "x").unwrap().0,
            "2025-05-14T13:21:00"
        );
        assert!(normalise_datetime("2025-13-01", "x").is_err());
        assert!(normalise_datetime("2025-05-14T13:21:03+2", "x").is_err());
    }

    #[test]
    fn canonical_json_errors_name_the_index() {
        assert_eq!(
            err(BodyKind::Json, r#"[{"test_code":"a"},{"value":"1"}]"#),
            "[1].test_code: missing or empty (required)"
        );
        assert_eq!(
            err(BodyKind::Json, r#"{"test_code":"a","tset":1}"#),
            "tset: unknown field (expected sample_id, patient_id, test_code, test_name, value, unit, reference_range, result_status, observed_at, flags, comments, device, extra)"
        );
        assert_eq!(
            err(BodyKind::Json, r#"[{"test_code":"a","flags":"H"}]"#),
            "[0].flags: expected an array of strings, got a string"
        );
        assert_eq!(err(BodyKind::Json, "[]"), "the array holds no observations");
        assert_eq!(err(BodyKind::Json, "  \n"), "the body is empty");
    }

    #[test]
    fn csv_errors_name_line_and_column() {
        assert_eq!(
            err(BodyKind::Csv, "sample_id,value\nS1,3\n"),
            "CSV header (line 1): required column \"test_code\" is missing (columns: sample_id, value)"
        );
        assert_eq!(
            err(BodyKind::Csv, "test_code,value\r\nA,1\r\nB\r\n"),
            "CSV line 3: 1 fields, but the header (line 1) has 2"
        );
        assert_eq!(
            err(BodyKind::Csv, "test_code,value\nA,\"1\nB,2\n"),
            "CSV line 2: a quoted field is never closed"
        );
        assert_eq!(
            err(BodyKind::Csv, "test_code,value\nA,\"1\"x\n"),
            "CSV line 2: text after a closing quote (a quote inside a quoted field must be doubled)"
        );
        assert_eq!(
            err(
                BodyKind::Csv,
                "test_code,value,observed_at\nA,1,2025-05-14\n,2,\n"
            ),
            "CSV line 3, column \"test_code\": missing or empty (required)"
        );
        assert!(
            decode(BodyKind::Csv, b"test_code\n\xff\n")
                .unwrap_err()
                .is_syntax()
        );
    }

    #[test]
    fn csv_reader_follows_rfc_4180() {
        let mut r = csv::Reader::new("a,\"b,\"\"c\"\"\",\r\n\"x\ny\",z", b',');
        assert_eq!(
            r.next_record().unwrap(),
            Some((1, vec!["a".into(), "b,\"c\"".into(), "".into()]))
        );
        assert_eq!(
            r.next_record().unwrap(),
            Some((2, vec!["x\ny".into(), "z".into()]))
        );
        assert_eq!(r.next_record().unwrap(), None);
        assert_eq!(csv::detect_delimiter("a;b;\"c,d,e\"\n1,2,3"), b';');
        assert_eq!(csv::detect_delimiter("a\tb"), b'\t');
    }

    #[test]
    fn xml_errors_name_element_and_offset() {
        assert_eq!(
            err(
                BodyKind::Xml,
                "<results><observation><test_code>A</test_code><colour>red</colour></observation></results>"
            ),
            "XML <colour> at byte 46: unexpected inside <observation> (expected sample_id, patient_id, test_code, test_name, value, unit, reference_range, result_status, observed_at, flags, comments, device, extra)"
        );
        assert_eq!(
            err(
                BodyKind::Xml,
                "<results><observation><test_code>A</value></observation></results>"
            ),
            "XML at byte 34: </value> does not close <test_code> opened at byte 22"
        );
        assert_eq!(
            err(
                BodyKind::Xml,
                "<!DOCTYPE x [<!ENTITY e \"boom\">]><results/>"
            ),
            "XML at byte 0: DOCTYPE/DTD declarations are not accepted"
        );
        assert_eq!(
            err(
                BodyKind::Xml,
                "<results><observation><value>1</value></observation></results>"
            ),
            "XML <observation>test_code> at byte 9: missing or empty (required)"
        );
        let deep = "<a>".repeat(100);
        assert!(
            decode(BodyKind::Xml, deep.as_bytes())
                .unwrap_err()
                .is_syntax()
        );
    }

    #[test]
    fn sniff_by_content_type_and_body() {
        assert_eq!(
            BodyKind::sniff(Some("application/fhir+json"), b"{}"),
            Some(BodyKind::Fhir)
        );
        assert_eq!(
            BodyKind::sniff(Some("Text/CSV; charset=utf-8"), b""),
            Some(BodyKind::Csv)
        );
        assert_eq!(
            BodyKind::sniff(Some("application/xml"), b""),
            Some(BodyKind::Xml)
        );
        assert_eq!(BodyKind::sniff(Some("text/plain"), b"a,b"), None);
        assert_eq!(
            BodyKind::sniff(None, b"\xEF\xBB\xBF {\"resourceType\":\"Observation\"}"),
            Some(BodyKind::Fhir)
        );
        assert_eq!(
            BodyKind::sniff(None, b"[{\"test_code\":\"a\"}]"),
            Some(BodyKind::Json)
        );
        assert_eq!(BodyKind::sniff(None, b" <results/>"), Some(BodyKind::Xml));
        assert_eq!(BodyKind::sniff(None, b"test_code\nA"), Some(BodyKind::Csv));
        assert_eq!(BodyKind::sniff(None, b"  "), None);
        assert_eq!(BodyKind::from_name("FHIR"), Some(BodyKind::Fhir));
    }

    #[test]
    fn no_panic_on_awkward_bytes() {
        let samples: &[&[u8]] = &[
            b"", b"\xEF\xBB\xBF", b"{", b"\"", b"<", b"<a", b"<a b='", b"&", b"<a>&#xFFFFFFFF;</a>",
            b"<a>&#55296;</a>", b"\"\"\"", b"a\r", b"\r\n\r\n", "é;ü\n\"ö".as_bytes(),
            b"{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":[{\"resource\":{\"resourceType\":\"DiagnosticReport\",\"result\":[{\"reference\":\"#\"}]}}]}",
            b"{\"resourceType\":\"Observation\",\"code\":{\"text\":\"x\"},\"valueQuantity\":{\"value\":1e400}}",
            b"{\"resourceType\":\"Observation\",\"code\":{\"text\":\"x\"},\"effectiveDateTime\":\"2025-01-01T00:00:00\xc3\xa9\"}",
        ];
        for s in samples {
            for k in [BodyKind::Fhir, BodyKind::Json, BodyKind::Csv, BodyKind::Xml] {
                let _ = decode(k, s);
            }
            let _ = BodyKind::sniff(None, s);
        }
    }
}
