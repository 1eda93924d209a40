//! The no-code Tempr: a mapping table from record fields (or constants) to DHIS2 data elements /
//! attributes, with value maps (`"DETECTED HIGH" = "DETECTED"`). One of three targets:
//! an event, a tracked entity (+ enrollment), or a data value set.
//!
//! A builder only maps values; it does not aggregate. A DHIS2 data value is overwritten by the
//! next post for the same (data element, period, org unit, combo), so counts per month cannot be
//! built one record at a time — see config/temprs/monthly-counts.toml.

use super::TemprError;
use super::dates;
use super::file::{Checker, OneOrMany};
use super::path::{Paths, Seed};
use super::uid::{deterministic_uid, is_uid};
use crate::record::{Dhis2Request, Endpoint};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use toml::Spanned;

// --- raw TOML --------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBuilder {
    #[serde(default)]
    event: Option<RawEvent>,
    #[serde(default)]
    tracked_entity: Option<RawTrackedEntity>,
    #[serde(default)]
    data_value_set: Option<RawDataValueSet>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    program: Spanned<String>,
    program_stage: Spanned<String>,
    org_unit: Spanned<String>,
    occurred_at: Spanned<OneOrMany>,
    #[serde(default)]
    status: Option<Spanned<String>>,
    uid: Spanned<String>,
    #[serde(default)]
    enrollment: Option<Spanned<String>>,
    #[serde(default)]
    tracked_entity: Option<Spanned<String>>,
    #[serde(default)]
    data_values: Vec<RawMapping>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrackedEntity {
    tracked_entity_type: Spanned<String>,
    org_unit: Spanned<String>,
    uid: Spanned<String>,
    #[serde(default)]
    attributes: Vec<RawMapping>,
    #[serde(default)]
    enrollment: Option<RawEnrollment>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnrollment {
    program: Spanned<String>,
    uid: Spanned<String>,
    enrolled_at: Spanned<OneOrMany>,
    #[serde(default)]
    occurred_at: Option<Spanned<OneOrMany>>,
    #[serde(default)]
    status: Option<Spanned<String>>,
    #[serde(default)]
    attributes: Vec<RawMapping>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataValueSet {
    #[serde(default)]
    data_set: Option<Spanned<String>>,
    org_unit: Spanned<String>,
    period: Spanned<OneOrMany>,
    #[serde(default)]
    attribute_option_combo: Option<Spanned<String>>,
    #[serde(default)]
    data_values: Vec<RawMapping>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    #[serde(default)]
    data_element: Option<Spanned<String>>,
    #[serde(default)]
    attribute: Option<Spanned<String>>,
    #[serde(default)]
    category_option_combo: Option<Spanned<String>>,
    #[serde(default)]
    from: Option<Spanned<OneOrMany>>,
    #[serde(default)]
    constant: Option<Spanned<String>>,
    #[serde(default)]
    map: BTreeMap<String, String>,
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    unmapped: Option<Spanned<String>>,
    #[serde(default)]
    format: Option<Spanned<String>>,
}

// --- resolved --------------------------------------------------------------------------------

/// A validated builder Tempr.
#[derive(Debug, Clone, PartialEq)]
pub struct Builder {
    target: Target,
}

#[derive(Debug, Clone, PartialEq)]
enum Target {
    Event(EventSpec),
    TrackedEntity(TeSpec),
    DataValueSet(DvsSpec),
}

/// A UID constant or a path read from the record/context (`ctx.org_unit`).
#[derive(Debug, Clone, PartialEq)]
enum UidSource {
    Constant(String),
    Path(Paths),
}

#[derive(Debug, Clone, PartialEq)]
struct EventSpec {
    program: String,
    program_stage: String,
    org_unit: UidSource,
    occurred_at: Paths,
    status: String,
    uid: Seed,
    enrollment: Option<Seed>,
    tracked_entity: Option<Seed>,
    data_values: Vec<Mapping>,
}

#[derive(Debug, Clone, PartialEq)]
struct TeSpec {
    tracked_entity_type: String,
    org_unit: UidSource,
    uid: Seed,
    attributes: Vec<Mapping>,
    enrollment: Option<EnrollmentSpec>,
}

#[derive(Debug, Clone, PartialEq)]
struct EnrollmentSpec {
    program: String,
    uid: Seed,
    enrolled_at: Paths,
    occurred_at: Option<Paths>,
    status: String,
    attributes: Vec<Mapping>,
}

#[derive(Debug, Clone, PartialEq)]
struct DvsSpec {
    data_set: Option<String>,
    org_unit: UidSource,
    period: Paths,
    attribute_option_combo: Option<String>,
    data_values: Vec<Mapping>,
}

/// One row of a mapping table.
#[derive(Debug, Clone, PartialEq)]
struct Mapping {
    /// The data element or attribute UID (or code, with an idScheme=CODE sync setting).
    target: String,
    category_option_combo: Option<String>,
    value: ValueSource,
    map: Vec<(String, String)>,
    default: Option<String>,
    required: bool,
    unmapped: Unmapped,
    format: Format,
}

#[derive(Debug, Clone, PartialEq)]
enum ValueSource {
    Constant(String),
    Paths(Paths),
}

/// What to do with a value that the `map` does not list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unmapped {
    Error,
    Keep,
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Text,
    Date,
    DateTime,
}

// --- validation ------------------------------------------------------------------------------

pub(crate) fn from_raw(
    c: &mut Checker,
    raw: RawBuilder,
    endpoint: Endpoint,
    endpoint_line: Option<usize>,
) -> Option<Builder> {
    let count = [
        raw.event.is_some(),
        raw.tracked_entity.is_some(),
        raw.data_value_set.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if count != 1 {
        let line = c.line_of("builder");
        c.error(line, "builder", "needs exactly one of [builder.event], [builder.tracked_entity], [builder.data_value_set]");
        return None;
    }
    let before = c.errors.len();
    let (target, fits) = if let Some(e) = raw.event {
        (
            event(c, e).map(Target::Event),
            matches!(endpoint, Endpoint::Tracker | Endpoint::Events),
        )
    } else if let Some(t) = raw.tracked_entity {
        (
            tracked_entity(c, t).map(Target::TrackedEntity),
            endpoint == Endpoint::Tracker,
        )
    } else if let Some(d) = raw.data_value_set {
        (
            data_value_set(c, d).map(Target::DataValueSet),
            endpoint == Endpoint::DataValueSets,
        )
    } else {
        (None, false)
    };
    if !fits {
        let want = match target {
            Some(Target::Event(_)) => "\"tracker\" or \"events\"",
            Some(Target::TrackedEntity(_)) => "\"tracker\"",
            _ => "\"data_value_sets\"",
        };
        c.error(
            endpoint_line,
            "endpoint",
            format!("this builder target is sent to {want}"),
        );
    }
    match target {
        Some(target) if c.errors.len() == before => Some(Builder { target }),
        _ => None,
    }
}

fn uid_const(c: &mut Checker, field: &str, v: &Spanned<String>) -> String {
    let s = v.get_ref().trim().to_string();
    if !is_uid(&s) {
        let line = c.line(&v.span());
        c.error(
            line,
            field,
            format!("{s:?} is not a DHIS2 UID (11 letters/digits, letter first)"),
        );
    }
    s
}

fn uid_source(c: &mut Checker, field: &str, v: &Spanned<String>) -> UidSource {
    let s = v.get_ref().trim();
    if is_uid(s) {
        return UidSource::Constant(s.to_string());
    }
    match Paths::parse(&[s]) {
        Ok(p) => UidSource::Path(p),
        Err(e) => {
            let line = c.line(&v.span());
            c.error(line, field, format!("neither a UID nor a path: {e}"));
            UidSource::Constant(String::new())
        }
    }
}

fn paths(c: &mut Checker, field: &str, v: &Spanned<OneOrMany>) -> Paths {
    Paths::parse(&v.get_ref().0).unwrap_or_else(|e| {
        let line = c.line(&v.span());
        c.error(line, field, e);
        Paths(Vec::new())
    })
}

fn seed(c: &mut Checker, field: &str, v: &Spanned<String>) -> Seed {
    Seed::parse(v.get_ref()).unwrap_or_else(|e| {
        let line = c.line(&v.span());
        c.error(line, field, e);
        Seed::literal("")
    })
}

fn status(
    c: &mut Checker,
    field: &str,
    v: Option<&Spanned<String>>,
    default: &str,
    allowed: &[&str],
) -> String {
    let Some(v) = v else {
        return default.to_string();
    };
    let s = v.get_ref().trim().to_ascii_uppercase();
    if !allowed.contains(&s.as_str()) {
        let line = c.line(&v.span());
        c.error(
            line,
            field,
            format!("{s:?} is not one of {}", allowed.join(", ")),
        );
    }
    s
}

fn event(c: &mut Checker, e: RawEvent) -> Option<EventSpec> {
    Some(EventSpec {
        program: uid_const(c, "builder.event.program", &e.program),
        program_stage: uid_const(c, "builder.event.program_stage", &e.program_stage),
        org_unit: uid_source(c, "builder.event.org_unit", &e.org_unit),
        occurred_at: paths(c, "builder.event.occurred_at", &e.occurred_at),
        status: status(
            c,
            "builder.event.status",
            e.status.as_ref(),
            "COMPLETED",
            &["ACTIVE", "COMPLETED"],
        ),
        uid: seed(c, "builder.event.uid", &e.uid),
        enrollment: e
            .enrollment
            .as_ref()
            .map(|s| seed(c, "builder.event.enrollment", s)),
        tracked_entity: e
            .tracked_entity
            .as_ref()
            .map(|s| seed(c, "builder.event.tracked_entity", s)),
        data_values: mappings(
            c,
            "builder.event.data_values",
            e.data_values,
            Kind::DataElement,
        ),
    })
}

fn tracked_entity(c: &mut Checker, t: RawTrackedEntity) -> Option<TeSpec> {
    let enrollment = t.enrollment.map(|e| EnrollmentSpec {
        program: uid_const(c, "builder.tracked_entity.enrollment.program", &e.program),
        uid: seed(c, "builder.tracked_entity.enrollment.uid", &e.uid),
        enrolled_at: paths(
            c,
            "builder.tracked_entity.enrollment.enrolled_at",
            &e.enrolled_at,
        ),
        occurred_at: e
            .occurred_at
            .as_ref()
            .map(|p| paths(c, "builder.tracked_entity.enrollment.occurred_at", p)),
        status: status(
            c,
            "builder.tracked_entity.enrollment.status",
            e.status.as_ref(),
            "ACTIVE",
            &["ACTIVE", "COMPLETED"],
        ),
        attributes: mappings(
            c,
            "builder.tracked_entity.enrollment.attributes",
            e.attributes,
            Kind::Attribute,
        ),
    });
    Some(TeSpec {
        tracked_entity_type: uid_const(
            c,
            "builder.tracked_entity.tracked_entity_type",
            &t.tracked_entity_type,
        ),
        org_unit: uid_source(c, "builder.tracked_entity.org_unit", &t.org_unit),
        uid: seed(c, "builder.tracked_entity.uid", &t.uid),
        attributes: mappings(
            c,
            "builder.tracked_entity.attributes",
            t.attributes,
            Kind::Attribute,
        ),
        enrollment,
    })
}

fn data_value_set(c: &mut Checker, d: RawDataValueSet) -> Option<DvsSpec> {
    let data_values = mappings(
        c,
        "builder.data_value_set.data_values",
        d.data_values,
        Kind::DataValue,
    );
    if data_values.is_empty() {
        let line = c.line_of("builder.data_value_set");
        c.error(
            line,
            "builder.data_value_set.data_values",
            "at least one [[builder.data_value_set.data_values]] is needed",
        );
    }
    Some(DvsSpec {
        data_set: d
            .data_set
            .as_ref()
            .map(|s| uid_const(c, "builder.data_value_set.data_set", s)),
        org_unit: uid_source(c, "builder.data_value_set.org_unit", &d.org_unit),
        period: paths(c, "builder.data_value_set.period", &d.period),
        attribute_option_combo: d
            .attribute_option_combo
            .as_ref()
            .map(|s| uid_const(c, "builder.data_value_set.attribute_option_combo", s)),
        data_values,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    DataElement,
    Attribute,
    DataValue,
}

fn mappings(c: &mut Checker, table: &str, raw: Vec<RawMapping>, kind: Kind) -> Vec<Mapping> {
    let mut out = Vec::new();
    for (i, m) in raw.into_iter().enumerate() {
        let field = format!("{table}[{i}]");
        let table_line = c.line_of(table);
        let (target_name, target) = match kind {
            Kind::Attribute => ("attribute", m.attribute.as_ref()),
            _ => ("data_element", m.data_element.as_ref()),
        };
        let wrong = match kind {
            Kind::Attribute => m.data_element.as_ref().map(|s| ("data_element", s)),
            _ => m.attribute.as_ref().map(|s| ("attribute", s)),
        };
        if let Some((name, s)) = wrong {
            let line = c.line(&s.span());
            c.error(
                line,
                &format!("{field}.{name}"),
                format!("use `{target_name}` here"),
            );
        }
        let Some(target) = target else {
            c.error(table_line, &field, format!("`{target_name}` is required"));
            continue;
        };
        let target_text = target.get_ref().trim().to_string();
        if target_text.is_empty() {
            let line = c.line(&target.span());
            c.error(line, &format!("{field}.{target_name}"), "must not be empty");
        }
        if let (Some(coc), false) = (&m.category_option_combo, kind == Kind::DataValue) {
            let line = c.line(&coc.span());
            c.error(
                line,
                &format!("{field}.category_option_combo"),
                "only data value sets have category option combos",
            );
        }
        let value = match (&m.from, &m.constant) {
            (Some(f), None) => ValueSource::Paths(paths(c, &format!("{field}.from"), f)),
            (None, Some(k)) => ValueSource::Constant(k.get_ref().clone()),
            _ => {
                let line = c.line(&target.span());
                c.error(
                    line,
                    &field,
                    "needs exactly one of `from` (a record path) or `constant`",
                );
                continue;
            }
        };
        let unmapped = match m
            .unmapped
            .as_ref()
            .map(|u| (u.get_ref().as_str(), u.span()))
        {
            None | Some(("error", _)) => Unmapped::Error,
            Some(("keep", _)) => Unmapped::Keep,
            Some(("skip", _)) => Unmapped::Skip,
            Some((other, span)) => {
                let line = c.line(&span);
                c.error(
                    line,
                    &format!("{field}.unmapped"),
                    format!("{other:?} is not one of error, keep, skip"),
                );
                Unmapped::Error
            }
        };
        let format = match m.format.as_ref().map(|u| (u.get_ref().as_str(), u.span())) {
            None | Some(("text", _)) => Format::Text,
            Some(("date", _)) => Format::Date,
            Some(("datetime", _)) => Format::DateTime,
            Some((other, span)) => {
                let line = c.line(&span);
                c.error(
                    line,
                    &format!("{field}.format"),
                    format!("{other:?} is not one of text, date, datetime"),
                );
                Format::Text
            }
        };
        out.push(Mapping {
            target: target_text,
            category_option_combo: m
                .category_option_combo
                .map(|s| s.into_inner().trim().to_string()),
            value,
            map: m.map.into_iter().collect(),
            default: m.default,
            required: m.required,
            unmapped,
            format,
        });
    }
    out
}

// --- value maps (shared with the template `option` filter) -----------------------------------

fn normalize(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Look `value` up in `map`, in this order:
/// 1. exact key;
/// 2. the same after trimming, collapsing runs of spaces and ignoring case;
/// 3. the longest key that is a whole-word prefix of the value (normalized as in 2):
///    key `DETECTED` takes `DETECTED HIGH` and `DETECTED VERY LOW`, but not `NOT DETECTED`
///    and not `DETECTEDX`.
pub(crate) fn map_value<'a>(map: &'a [(String, String)], value: &str) -> Option<&'a str> {
    if let Some((_, v)) = map.iter().find(|(k, _)| k == value) {
        return Some(v);
    }
    let nv = normalize(value);
    if let Some((_, v)) = map.iter().find(|(k, _)| normalize(k) == nv) {
        return Some(v);
    }
    map.iter()
        .filter_map(|(k, v)| {
            let nk = normalize(k);
            let rest = nv.strip_prefix(nk.as_str())?;
            (!nk.is_empty() && rest.starts_with(' ')).then_some((nk.len(), v.as_str()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, v)| v)
}

// --- building --------------------------------------------------------------------------------

impl Builder {
    pub(crate) fn build(
        &self,
        record: &Value,
        ctx: &Value,
        endpoint: Endpoint,
    ) -> Result<Dhis2Request, TemprError> {
        let body = match &self.target {
            Target::Event(e) => {
                let ev = build_event(e, record, ctx, endpoint)?;
                json!({ "events": [ev] })
            }
            Target::TrackedEntity(t) => json!({ "trackedEntities": [build_te(t, record, ctx)?] }),
            Target::DataValueSet(d) => build_dvs(d, record, ctx)?,
        };
        Ok(Dhis2Request {
            endpoint,
            path: None,
            body,
        })
    }
}

fn resolve_uid(src: &UidSource, record: &Value, ctx: &Value) -> Result<String, TemprError> {
    match src {
        UidSource::Constant(s) => Ok(s.clone()),
        UidSource::Path(p) => required_text(p, record, ctx),
    }
}

fn required_text(p: &Paths, record: &Value, ctx: &Value) -> Result<String, TemprError> {
    p.text(record, ctx)
        .map_err(|(path, message)| TemprError::BadValue { path, message })?
        .ok_or_else(|| TemprError::MissingField {
            path: p.to_string(),
        })
}

fn datetime(p: &Paths, record: &Value, ctx: &Value) -> Result<String, TemprError> {
    let raw = required_text(p, record, ctx)?;
    dates::dhis2_datetime(&raw).ok_or_else(|| TemprError::BadValue {
        path: p.to_string(),
        message: format!("{raw:?} is not a date/time (ISO 8601 or YYYYMMDD[HHMM[SS]])"),
    })
}

fn render_seed(
    seed: &Seed,
    record: &Value,
    ctx: &Value,
    extra: &[(&str, &str)],
) -> Result<String, TemprError> {
    let text = seed.render(record, ctx, extra).map_err(|(path, why)| {
        if why == "is missing" {
            TemprError::MissingField { path }
        } else {
            TemprError::BadValue { path, message: why }
        }
    })?;
    Ok(deterministic_uid(&text))
}

/// The value of one mapping: `None` when it is to be left out.
fn mapped(m: &Mapping, record: &Value, ctx: &Value) -> Result<Option<String>, TemprError> {
    let (raw, path) = match &m.value {
        ValueSource::Constant(k) => (Some(k.clone()), "constant".to_string()),
        ValueSource::Paths(p) => (
            p.text(record, ctx)
                .map_err(|(path, message)| TemprError::BadValue { path, message })?,
            p.to_string(),
        ),
    };
    let raw = match raw
        .filter(|s| !s.trim().is_empty())
        .or_else(|| m.default.clone())
    {
        Some(v) => v,
        None if m.required => return Err(TemprError::MissingField { path }),
        None => return Ok(None),
    };
    let value = if m.map.is_empty() {
        raw
    } else {
        match (map_value(&m.map, &raw), m.unmapped) {
            (Some(v), _) => v.to_string(),
            (None, Unmapped::Keep) => raw,
            (None, Unmapped::Skip) => return Ok(None),
            (None, Unmapped::Error) => return Err(TemprError::Unmapped { path, value: raw }),
        }
    };
    let formatted = match m.format {
        Format::Text => Some(value.clone()),
        Format::Date => dates::dhis2_date(&value),
        Format::DateTime => dates::dhis2_datetime(&value),
    };
    formatted.map(Some).ok_or_else(|| TemprError::BadValue {
        path,
        message: format!("{value:?} is not a date/time"),
    })
}

fn data_values(
    list: &[Mapping],
    key: &str,
    record: &Value,
    ctx: &Value,
) -> Result<Vec<Value>, TemprError> {
    let mut out = Vec::new();
    for m in list {
        if let Some(v) = mapped(m, record, ctx)? {
            let mut o = Map::new();
            o.insert(key.into(), Value::String(m.target.clone()));
            if let Some(coc) = &m.category_option_combo {
                o.insert("categoryOptionCombo".into(), Value::String(coc.clone()));
            }
            o.insert("value".into(), Value::String(v));
            out.push(Value::Object(o));
        }
    }
    Ok(out)
}

fn build_event(
    e: &EventSpec,
    record: &Value,
    ctx: &Value,
    endpoint: Endpoint,
) -> Result<Value, TemprError> {
    let extra = [
        ("program", e.program.as_str()),
        ("program_stage", e.program_stage.as_str()),
    ];
    let mut o = Map::new();
    o.insert(
        "event".into(),
        render_seed(&e.uid, record, ctx, &extra)?.into(),
    );
    o.insert("program".into(), e.program.clone().into());
    o.insert("programStage".into(), e.program_stage.clone().into());
    o.insert(
        "orgUnit".into(),
        resolve_uid(&e.org_unit, record, ctx)?.into(),
    );
    let legacy = endpoint == Endpoint::Events;
    let at = datetime(&e.occurred_at, record, ctx)?;
    o.insert(
        if legacy { "eventDate" } else { "occurredAt" }.into(),
        at.into(),
    );
    o.insert("status".into(), e.status.clone().into());
    if let Some(s) = &e.enrollment {
        o.insert(
            "enrollment".into(),
            render_seed(s, record, ctx, &extra)?.into(),
        );
    }
    if let Some(s) = &e.tracked_entity {
        let key = if legacy {
            "trackedEntityInstance"
        } else {
            "trackedEntity"
        };
        o.insert(key.into(), render_seed(s, record, ctx, &extra)?.into());
    }
    o.insert(
        "dataValues".into(),
        data_values(&e.data_values, "dataElement", record, ctx)?.into(),
    );
    Ok(Value::Object(o))
}

fn build_te(t: &TeSpec, record: &Value, ctx: &Value) -> Result<Value, TemprError> {
    let org_unit = resolve_uid(&t.org_unit, record, ctx)?;
    let mut extra = vec![("tracked_entity_type", t.tracked_entity_type.as_str())];
    if let Some(e) = &t.enrollment {
        extra.push(("program", e.program.as_str()));
    }
    let te_uid = render_seed(&t.uid, record, ctx, &extra)?;
    let mut o = Map::new();
    o.insert("trackedEntity".into(), te_uid.clone().into());
    o.insert(
        "trackedEntityType".into(),
        t.tracked_entity_type.clone().into(),
    );
    o.insert("orgUnit".into(), org_unit.clone().into());
    o.insert(
        "attributes".into(),
        data_values(&t.attributes, "attribute", record, ctx)?.into(),
    );
    if let Some(e) = &t.enrollment {
        let enrolled = datetime(&e.enrolled_at, record, ctx)?;
        let occurred = match &e.occurred_at {
            Some(p) => datetime(p, record, ctx)?,
            None => enrolled.clone(),
        };
        let mut en = Map::new();
        en.insert(
            "enrollment".into(),
            render_seed(&e.uid, record, ctx, &extra)?.into(),
        );
        en.insert("trackedEntity".into(), te_uid.into());
        en.insert("program".into(), e.program.clone().into());
        en.insert("orgUnit".into(), org_unit.into());
        en.insert("enrolledAt".into(), enrolled.into());
        en.insert("occurredAt".into(), occurred.into());
        en.insert("status".into(), e.status.clone().into());
        let attrs = data_values(&e.attributes, "attribute", record, ctx)?;
        if !attrs.is_empty() {
            en.insert("attributes".into(), attrs.into());
        }
        o.insert("enrollments".into(), vec![Value::Object(en)].into());
    }
    Ok(Value::Object(o))
}

fn build_dvs(d: &DvsSpec, record: &Value, ctx: &Value) -> Result<Value, TemprError> {
    let raw = required_text(&d.period, record, ctx)?;
    let period = dates::dhis2_month(&raw).ok_or_else(|| TemprError::BadValue {
        path: d.period.to_string(),
        message: format!("{raw:?} is not a date (the period is its month, yyyyMM)"),
    })?;
    let mut o = Map::new();
    if let Some(ds) = &d.data_set {
        o.insert("dataSet".into(), ds.clone().into());
    }
    o.insert("period".into(), period.into());
    o.insert(
        "orgUnit".into(),
        resolve_uid(&d.org_unit, record, ctx)?.into(),
    );
    if let Some(aoc) = &d.attribute_option_combo {
        o.insert("attributeOptionCombo".into(), aoc.clone().into());
    }
    o.insert(
        "dataValues".into(),
        data_values(&d.data_values, "dataElement", record, ctx)?.into(),
    );
    Ok(Value::Object(o))
}

#[cfg(test)]
mod tests {
    use super::map_value;

    fn m(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn value_map_tries_exact_then_case_insensitive_then_word_prefix() {
        let map = m(&[
            ("DETECTED", "DETECTED"),
            ("NOT DETECTED", "NOT_DETECTED"),
            ("MTB DETECTED", "DETECTED"),
            ("Rif Resistance DETECTED", "RESISTANT"),
            ("Rif Resistance NOT DETECTED", "SUSCEPTIBLE"),
        ]);
        assert_eq!(map_value(&map, "NOT DETECTED"), Some("NOT_DETECTED"));
        assert_eq!(map_value(&map, "not  detected "), Some("NOT_DETECTED"));
        assert_eq!(map_value(&map, "DETECTED HIGH"), Some("DETECTED"));
        assert_eq!(map_value(&map, "MTB DETECTED VERY LOW"), Some("DETECTED"));
        assert_eq!(
            map_value(&map, "Rif Resistance NOT DETECTED"),
            Some("SUSCEPTIBLE")
        );
        assert_eq!(
            map_value(&map, "RIF RESISTANCE DETECTED"),
            Some("RESISTANT")
        );
        assert_eq!(map_value(&map, "DETECTEDX"), None);
        assert_eq!(map_value(&map, "INVALID"), None);
    }
}
