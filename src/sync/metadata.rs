//! A cache of the DHIS2 metadata a request is checked against, and [`validate`]: the checks
//! DHIS2 would make, done locally so a bad mapping is reported before anything is sent.
//!
//! The cache deserialises straight from DHIS2's listing responses (`{"programs":[…]}`, with or
//! without a `pager`), fetched with the `*_PATH` constants below (§5). Each response is a partial
//! [`MetadataCache`]; combine them with [`MetadataCache::merge`]. The same shape
//! (`{"programs", "dataSets", "organisationUnits", "trackedEntityTypes"}`) is the test fixture
//! `tests/fixtures/dhis2/metadata.json`.
//!
//! Every [`LocalError`] carries the DHIS2 error code it predicts (§4.1, §2.4). Only validate
//! against a loaded cache: an empty cache reports everything as unknown.

use crate::record::{Dhis2Request, Endpoint};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::fmt;

macro_rules! option_set_fields {
    () => {
        "optionSet[id,options[code,name]]"
    };
}
macro_rules! tea_fields {
    () => {
        concat!("id,code,name,valueType,unique,", option_set_fields!())
    };
}
macro_rules! de_fields {
    () => {
        concat!("id,code,name,valueType,", option_set_fields!())
    };
}
macro_rules! program_fields {
    () => {
        concat!(
            "id,name,code,programType,trackedEntityType[id],categoryCombo[id,name],onlyEnrollOnce,",
            "selectEnrollmentDatesInFuture,selectIncidentDatesInFuture,displayIncidentDate,",
            "expiryDays,expiryPeriodType,completeEventsExpiryDays,organisationUnits[id],",
            "programTrackedEntityAttributes[mandatory,trackedEntityAttribute[",
            tea_fields!(),
            "]],programStages[id,name,code,repeatable,validationStrategy,",
            "programStageDataElements[compulsory,allowFutureDate,dataElement[",
            de_fields!(),
            "]]]"
        )
    };
}
macro_rules! data_set_fields {
    () => {
        concat!(
            "id,name,code,periodType,openFuturePeriods,expiryDays,organisationUnits[id],",
            "dataSetElements[dataElement[",
            de_fields!(),
            "]]"
        )
    };
}
macro_rules! org_unit_fields {
    () => {
        "id,code,name,path,level,parent[id]"
    };
}
macro_rules! tet_fields {
    () => {
        concat!(
            "id,name,trackedEntityTypeAttributes[mandatory,trackedEntityAttribute[",
            tea_fields!(),
            "]]"
        )
    };
}

/// `fields=` for programs (everything needed for E1018/E1029/E1041/E1125/E1302/E1303/E1305…).
pub const PROGRAM_FIELDS: &str = program_fields!();
/// `fields=` for data sets.
pub const DATA_SET_FIELDS: &str = data_set_fields!();
/// `fields=` for organisation units.
pub const ORGANISATION_UNIT_FIELDS: &str = org_unit_fields!();
/// `fields=` for tracked entity types.
pub const TRACKED_ENTITY_TYPE_FIELDS: &str = tet_fields!();
/// `fields=` for tracked entity attributes.
pub const TRACKED_ENTITY_ATTRIBUTE_FIELDS: &str = tea_fields!();

/// `GET` paths (add `&filter=id:in:[a,b]` to narrow; the client encodes the brackets).
pub const PROGRAMS_PATH: &str = concat!("/api/programs?paging=false&fields=", program_fields!());
pub const DATA_SETS_PATH: &str = concat!("/api/dataSets?paging=false&fields=", data_set_fields!());
pub const ORGANISATION_UNITS_PATH: &str = concat!(
    "/api/organisationUnits?paging=false&fields=",
    org_unit_fields!()
);
pub const TRACKED_ENTITY_TYPES_PATH: &str = concat!(
    "/api/trackedEntityTypes?paging=false&fields=",
    tet_fields!()
);
pub const TRACKED_ENTITY_ATTRIBUTES_PATH: &str = concat!(
    "/api/trackedEntityAttributes?paging=false&fields=",
    tea_fields!()
);

/// Longest data value DHIS2 stores (`value_length_greater_than_max_length`, §4.2).
pub const MAX_DATA_VALUE_LENGTH: usize = 50_000;
/// Longest tracked-entity attribute value (`Constant.MAX_ATTR_VALUE_LENGTH`, E1077).
pub const MAX_ATTRIBUTE_VALUE_LENGTH: usize = 1_200;

/// An id reference (`{"id": "…"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRef {
    pub id: String,
}

/// DHIS2 `ValueType` (§4.2). Types DHIS2 adds later read as `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ValueType {
    #[default]
    Text,
    LongText,
    MultiText,
    Letter,
    PhoneNumber,
    Email,
    Boolean,
    TrueOnly,
    Date,
    Datetime,
    Time,
    Number,
    UnitInterval,
    Percentage,
    Integer,
    IntegerPositive,
    IntegerNegative,
    IntegerZeroOrPositive,
    TrackerAssociate,
    Username,
    Coordinate,
    OrganisationUnit,
    Reference,
    Age,
    Url,
    FileResource,
    Image,
    Geojson,
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProgramType {
    /// Tracker program: tracked entity + enrollment + events.
    WithRegistration,
    /// Event program: events only.
    #[default]
    WithoutRegistration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct OptionItem {
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct OptionSet {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub options: Vec<OptionItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DataElement {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub value_type: ValueType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub option_set: Option<OptionSet>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ProgramStageDataElement {
    #[serde(default)]
    pub compulsory: bool,
    pub data_element: DataElement,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ProgramStage {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default)]
    pub repeatable: bool,
    /// `ON_COMPLETE` (default: compulsory DEs only checked on COMPLETED events) or
    /// `ON_UPDATE_AND_INSERT` (always).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_strategy: Option<String>,
    #[serde(default)]
    pub program_stage_data_elements: Vec<ProgramStageDataElement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TrackedEntityAttribute {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub value_type: ValueType,
    #[serde(default)]
    pub unique: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub option_set: Option<OptionSet>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ProgramTrackedEntityAttribute {
    #[serde(default)]
    pub mandatory: bool,
    pub tracked_entity_attribute: TrackedEntityAttribute,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Program {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default)]
    pub program_type: ProgramType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracked_entity_type: Option<IdRef>,
    #[serde(default)]
    pub only_enroll_once: bool,
    #[serde(default)]
    pub organisation_units: Vec<IdRef>,
    #[serde(default)]
    pub program_tracked_entity_attributes: Vec<ProgramTrackedEntityAttribute>,
    #[serde(default)]
    pub program_stages: Vec<ProgramStage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DataSetElement {
    pub data_element: DataElement,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DataSet {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// `Daily`, `Weekly`, `Monthly`, `Quarterly`, `Yearly`, …
    #[serde(default)]
    pub period_type: String,
    #[serde(default)]
    pub organisation_units: Vec<IdRef>,
    #[serde(default)]
    pub data_set_elements: Vec<DataSetElement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct OrganisationUnit {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<IdRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TrackedEntityTypeAttribute {
    #[serde(default)]
    pub mandatory: bool,
    pub tracked_entity_attribute: TrackedEntityAttribute,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TrackedEntityType {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub tracked_entity_type_attributes: Vec<TrackedEntityTypeAttribute>,
}

/// The metadata the gateway validates against. Unknown keys (`pager`, …) are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct MetadataCache {
    #[serde(default)]
    pub programs: Vec<Program>,
    #[serde(default)]
    pub data_sets: Vec<DataSet>,
    #[serde(default)]
    pub organisation_units: Vec<OrganisationUnit>,
    #[serde(default)]
    pub tracked_entity_types: Vec<TrackedEntityType>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tracked_entity_attributes: Vec<TrackedEntityAttribute>,
}

impl MetadataCache {
    /// Parse one DHIS2 listing response (or a whole cache).
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Add another response's objects; an object with an id already present replaces it.
    pub fn merge(&mut self, other: MetadataCache) {
        fn put<T>(into: &mut Vec<T>, from: Vec<T>, id: impl Fn(&T) -> &str) {
            for item in from {
                match into.iter().position(|x| id(x) == id(&item)) {
                    Some(i) => into[i] = item,
                    None => into.push(item),
                }
            }
        }
        put(&mut self.programs, other.programs, |p| &p.id);
        put(&mut self.data_sets, other.data_sets, |d| &d.id);
        put(
            &mut self.organisation_units,
            other.organisation_units,
            |o| &o.id,
        );
        put(
            &mut self.tracked_entity_types,
            other.tracked_entity_types,
            |t| &t.id,
        );
        put(
            &mut self.tracked_entity_attributes,
            other.tracked_entity_attributes,
            |t| &t.id,
        );
    }
}

/// A problem DHIS2 would report, found before sending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalError {
    /// The DHIS2 error code this predicts (`E1125`, `E7619`, …).
    pub code: &'static str,
    /// Where in the request body (`events[0].dataValues[2]`).
    pub path: String,
    /// The object it is about (event, enrollment, tracked entity UID), when known.
    pub uid: Option<String>,
    pub message: String,
}

impl fmt::Display for LocalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.path, self.message, self.code)
    }
}

/// `^[a-zA-Z][a-zA-Z0-9]{10}$` (§3).
pub fn is_valid_uid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 11 && b[0].is_ascii_alphabetic() && b.iter().all(u8::is_ascii_alphanumeric)
}

/// Check a value against a value type the way DHIS2 does (§4.2). `tracker` = tracker import
/// rules (BOOLEAN only `true`/`false`); otherwise aggregate rules (also `1/0/t/f`).
/// `Err` says what was expected.
pub fn check_value(value_type: ValueType, value: &str, tracker: bool) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    if value.chars().count() > MAX_DATA_VALUE_LENGTH {
        return Err(format!(
            "a value of at most {MAX_DATA_VALUE_LENGTH} characters"
        ));
    }
    let ok = match value_type {
        ValueType::Number => is_number(value),
        ValueType::Integer => is_integer(value) && value.parse::<i32>().is_ok(),
        ValueType::IntegerPositive => {
            value.as_bytes()[0] != b'0' && all_digits(value) && value.parse::<i32>().is_ok()
        }
        ValueType::IntegerZeroOrPositive => {
            (value == "0" || (value.as_bytes()[0] != b'0' && all_digits(value)))
                && value.parse::<i32>().is_ok()
        }
        ValueType::IntegerNegative => value
            .strip_prefix('-')
            .is_some_and(|d| !d.starts_with('0') && all_digits(d) && value.parse::<i32>().is_ok()),
        ValueType::UnitInterval => is_number(value) && in_range(value, 0.0, 1.0),
        ValueType::Percentage => is_number(value) && in_range(value, 0.0, 100.0),
        ValueType::Boolean => {
            let v = value.to_ascii_lowercase();
            v == "true" || v == "false" || (!tracker && matches!(v.as_str(), "1" | "0" | "t" | "f"))
        }
        ValueType::TrueOnly => {
            let v = value.to_ascii_lowercase();
            v == "true" || (!tracker && matches!(v.as_str(), "1" | "t"))
        }
        ValueType::Date | ValueType::Age => is_date(value),
        ValueType::Datetime => is_datetime(value),
        ValueType::Time => is_time(value),
        ValueType::Letter => value.chars().count() == 1 && value.chars().all(char::is_alphabetic),
        ValueType::PhoneNumber => {
            (6..=50).contains(&value.len())
                && value
                    .chars()
                    .all(|c| c.is_ascii_digit() || "+()#./ ext-\t".contains(c))
        }
        ValueType::Email => {
            let mut parts = value.splitn(2, '@');
            let (a, b) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            !a.is_empty() && b.contains('.') && !b.starts_with('.') && !value.contains(' ')
        }
        ValueType::Coordinate => is_coordinate(value),
        ValueType::OrganisationUnit
        | ValueType::TrackerAssociate
        | ValueType::FileResource
        | ValueType::Image
        | ValueType::Reference => is_valid_uid(value),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(expectation(value_type).to_string())
    }
}

fn expectation(t: ValueType) -> &'static str {
    match t {
        ValueType::Number => "a NUMBER (like 12 or -0.5; no '+', exponent or trailing '.')",
        ValueType::Integer => "an INTEGER",
        ValueType::IntegerPositive => "an INTEGER_POSITIVE (1, 2, …)",
        ValueType::IntegerZeroOrPositive => "an INTEGER_ZERO_OR_POSITIVE (0, 1, …)",
        ValueType::IntegerNegative => "an INTEGER_NEGATIVE (-1, -2, …)",
        ValueType::UnitInterval => "a UNIT_INTERVAL number between 0 and 1",
        ValueType::Percentage => "a PERCENTAGE number between 0 and 100",
        ValueType::Boolean => "a BOOLEAN (true or false)",
        ValueType::TrueOnly => "TRUE_ONLY (true)",
        ValueType::Date => "a DATE (yyyy-MM-dd)",
        ValueType::Age => "an AGE as a date (yyyy-MM-dd)",
        ValueType::Datetime => "a DATETIME (yyyy-MM-ddTHH:mm[:ss[.SSS]][zone])",
        ValueType::Time => "a TIME (HH:mm)",
        ValueType::Letter => "a single LETTER",
        ValueType::PhoneNumber => "a PHONE_NUMBER (6–50 of 0-9 + ( ) # . / space ext -)",
        ValueType::Email => "an EMAIL address",
        ValueType::Coordinate => "a COORDINATE [longitude,latitude]",
        _ => "a UID of an existing object",
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_integer(s: &str) -> bool {
    s == "0" || {
        let d = s.strip_prefix('-').unwrap_or(s);
        all_digits(d) && !d.starts_with('0')
    }
}

/// `^(-?0|-?[1-9]\d*)(\.\d+)?$`, under 250 chars.
fn is_number(s: &str) -> bool {
    if s.len() >= 250 {
        return false;
    }
    let body = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    let int_ok = int == "0" || (all_digits(int) && !int.starts_with('0'));
    int_ok && frac.is_none_or(all_digits)
}

fn in_range(s: &str, lo: f64, hi: f64) -> bool {
    s.parse::<f64>().is_ok_and(|v| (lo..=hi).contains(&v))
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let (Ok(y), Ok(m), Ok(d)) = (
        s[0..4].parse::<i32>(),
        s[5..7].parse::<u8>(),
        s[8..10].parse::<u8>(),
    ) else {
        return false;
    };
    if !all_digits(&s[0..4]) || !all_digits(&s[5..7]) || !all_digits(&s[8..10]) {
        return false;
    }
    time::Month::try_from(m)
        .ok()
        .and_then(|m| time::Date::from_calendar_date(y, m, d).ok())
        .is_some()
}

fn is_time(s: &str) -> bool {
    let Some((h, m)) = s.split_once(':') else {
        return false;
    };
    all_digits(h)
        && h.len() <= 2
        && h.parse::<u8>().is_ok_and(|h| h < 24)
        && m.len() == 2
        && all_digits(m)
        && m.parse::<u8>().is_ok_and(|m| m < 60)
}

/// `yyyy-MM-dd['T'|' ']HH:mm[:ss[.S…]][Z|±hh:mm|±hhmm]`, or a date alone.
fn is_datetime(s: &str) -> bool {
    if s.len() < 10 || !s.is_char_boundary(10) || !is_date(&s[..10]) {
        return false;
    }
    let rest = &s[10..];
    if rest.is_empty() {
        return true;
    }
    let Some(rest) = rest.strip_prefix('T').or_else(|| rest.strip_prefix(' ')) else {
        return false;
    };
    // Split off a zone.
    let (clock, zone) = match rest.find(['Z', '+']).or_else(|| rest.rfind('-')) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let zone_ok = zone.is_empty() || zone == "Z" || {
        let z = &zone[1..];
        let digits: String = z.chars().filter(|c| *c != ':').collect();
        (zone.starts_with('+') || zone.starts_with('-'))
            && (digits.len() == 2 || digits.len() == 4)
            && all_digits(&digits)
    };
    let (hm, secs) = match clock.len() {
        5 => (clock, None),
        n if n > 6 && clock.is_char_boundary(5) && clock.as_bytes()[5] == b':' => {
            (&clock[..5], Some(&clock[6..]))
        }
        _ => return false,
    };
    let secs_ok = secs.is_none_or(|s| {
        let (whole, frac) = match s.split_once('.') {
            Some((w, f)) => (w, Some(f)),
            None => (s, None),
        };
        whole.len() == 2
            && all_digits(whole)
            && whole.parse::<u8>().is_ok_and(|v| v < 60)
            && frac.is_none_or(|f| all_digits(f) && f.len() <= 9)
    });
    zone_ok && is_time(hm) && hm.len() == 5 && secs_ok
}

fn is_coordinate(s: &str) -> bool {
    let Some(inner) = s.trim().strip_prefix('[').and_then(|x| x.strip_suffix(']')) else {
        return false;
    };
    let mut it = inner.split(',').map(|p| p.trim().parse::<f64>());
    match (it.next(), it.next(), it.next()) {
        (Some(Ok(lng)), Some(Ok(lat)), None) => lng.abs() <= 180.0 && lat.abs() <= 90.0,
        _ => false,
    }
}

/// Lookup tables built once per [`validate`] call.
struct Index<'a> {
    programs: HashMap<&'a str, &'a Program>,
    /// stage id → (stage, owning program)
    stages: HashMap<&'a str, (&'a ProgramStage, &'a Program)>,
    org_units: HashSet<&'a str>,
    data_sets: HashMap<&'a str, &'a DataSet>,
    tets: HashMap<&'a str, &'a TrackedEntityType>,
    /// Every data element the cache knows (stages and data sets).
    data_elements: HashMap<&'a str, &'a DataElement>,
    attributes: HashMap<&'a str, &'a TrackedEntityAttribute>,
}

impl<'a> Index<'a> {
    fn new(md: &'a MetadataCache) -> Self {
        let mut ix = Index {
            programs: HashMap::new(),
            stages: HashMap::new(),
            org_units: md
                .organisation_units
                .iter()
                .map(|o| o.id.as_str())
                .collect(),
            data_sets: md.data_sets.iter().map(|d| (d.id.as_str(), d)).collect(),
            tets: md
                .tracked_entity_types
                .iter()
                .map(|t| (t.id.as_str(), t))
                .collect(),
            data_elements: HashMap::new(),
            attributes: md
                .tracked_entity_attributes
                .iter()
                .map(|a| (a.id.as_str(), a))
                .collect(),
        };
        for p in &md.programs {
            ix.programs.insert(&p.id, p);
            for s in &p.program_stages {
                ix.stages.insert(&s.id, (s, p));
                for psde in &s.program_stage_data_elements {
                    ix.data_elements
                        .insert(&psde.data_element.id, &psde.data_element);
                }
            }
            for ptea in &p.program_tracked_entity_attributes {
                let a = &ptea.tracked_entity_attribute;
                ix.attributes.insert(&a.id, a);
            }
        }
        for t in &md.tracked_entity_types {
            for a in &t.tracked_entity_type_attributes {
                let a = &a.tracked_entity_attribute;
                ix.attributes.insert(&a.id, a);
            }
        }
        for d in &md.data_sets {
            for dse in &d.data_set_elements {
                ix.data_elements
                    .insert(&dse.data_element.id, &dse.data_element);
            }
        }
        ix
    }

    fn assigned(p: &Program, ou: &str) -> bool {
        p.organisation_units.iter().any(|o| o.id == ou)
    }
}

/// Collects errors while walking the body.
struct Check<'a> {
    ix: Index<'a>,
    errors: Vec<LocalError>,
}

impl Check<'_> {
    fn err(&mut self, code: &'static str, path: &str, uid: Option<&str>, message: String) {
        self.errors.push(LocalError {
            code,
            path: path.to_string(),
            uid: uid.map(str::to_string),
            message,
        });
    }
}

/// Check a request against the cache; empty means DHIS2 should accept it (as far as metadata
/// can tell — sharing, ownership, program rules and existing data are not checked).
pub fn validate(req: &Dhis2Request, md: &MetadataCache) -> Vec<LocalError> {
    let mut c = Check {
        ix: Index::new(md),
        errors: Vec::new(),
    };
    let body = &req.body;
    match req.endpoint {
        Endpoint::Tracker => tracker(&mut c, body),
        Endpoint::Events => {
            if let Some(events) = body.get("events").and_then(Value::as_array) {
                for (i, e) in events.iter().enumerate() {
                    event(&mut c, e, &format!("events[{i}]"), Style::Legacy, None);
                }
            } else if body.is_object() {
                event(&mut c, body, "event", Style::Legacy, None);
            } else {
                c.err(
                    "E1123",
                    "body",
                    None,
                    "expected one event or {\"events\":[…]}".into(),
                );
            }
        }
        Endpoint::DataValueSets => data_value_set(&mut c, body),
        Endpoint::Get => {}
    }
    c.errors
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Tracker,
    Legacy,
}

fn s<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn arr<'v>(v: &'v Value, key: &str) -> &'v [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn check_uid(c: &mut Check, v: &Value, key: &str, kind: &str, path: &str) -> Option<String> {
    let uid = s(v, key)?;
    if !is_valid_uid(uid) {
        c.err(
            "E1048",
            path,
            Some(uid),
            format!("{kind} uid '{uid}' is not a valid DHIS2 UID (11 letters/digits, starting with a letter)"),
        );
    }
    Some(uid.to_string())
}

fn tracker(c: &mut Check, body: &Value) {
    if !body.is_object() {
        c.err(
            "E1123",
            "body",
            None,
            "expected {\"trackedEntities\"|\"enrollments\"|\"events\":[…]}".into(),
        );
        return;
    }
    for (i, te) in arr(body, "trackedEntities").iter().enumerate() {
        tracked_entity(c, te, &format!("trackedEntities[{i}]"));
    }
    for (i, en) in arr(body, "enrollments").iter().enumerate() {
        enrollment(c, en, &format!("enrollments[{i}]"), None);
    }
    for (i, ev) in arr(body, "events").iter().enumerate() {
        event(c, ev, &format!("events[{i}]"), Style::Tracker, None);
    }
    for (i, rel) in arr(body, "relationships").iter().enumerate() {
        check_uid(
            c,
            rel,
            "relationship",
            "relationship",
            &format!("relationships[{i}]"),
        );
    }
}

fn tracked_entity(c: &mut Check, te: &Value, path: &str) {
    let uid = check_uid(c, te, "trackedEntity", "tracked entity", path);
    let uid = uid.as_deref();
    match s(te, "trackedEntityType") {
        None => c.err(
            "E1121",
            path,
            uid,
            "tracked entity has no trackedEntityType".into(),
        ),
        Some(t) if !c.ix.tets.contains_key(t) => c.err(
            "E1005",
            path,
            uid,
            format!("tracked entity type {t} is not known"),
        ),
        Some(_) => {}
    }
    match s(te, "orgUnit") {
        None => c.err("E1121", path, uid, "tracked entity has no orgUnit".into()),
        Some(ou) if !c.ix.org_units.contains(ou) => c.err(
            "E1049",
            path,
            uid,
            format!("organisation unit {ou} is not known"),
        ),
        Some(_) => {}
    }
    let te_attrs = attributes(c, te, path, uid, None);
    for (i, en) in arr(te, "enrollments").iter().enumerate() {
        enrollment(c, en, &format!("{path}.enrollments[{i}]"), Some(&te_attrs));
    }
}

/// Checks attribute values; returns the attribute ids present. With `program`, attributes must
/// belong to it (E1019).
fn attributes(
    c: &mut Check,
    owner: &Value,
    path: &str,
    uid: Option<&str>,
    program: Option<&Program>,
) -> Vec<String> {
    let mut present = Vec::new();
    for (i, a) in arr(owner, "attributes").iter().enumerate() {
        let apath = format!("{path}.attributes[{i}]");
        let Some(id) = s(a, "attribute") else {
            c.err(
                "E1006",
                &apath,
                uid,
                "attribute entry has no attribute id".into(),
            );
            continue;
        };
        present.push(id.to_string());
        let value = value_text(a);
        if let Some(p) = program
            && !p
                .program_tracked_entity_attributes
                .iter()
                .any(|x| x.tracked_entity_attribute.id == id)
        {
            c.err(
                "E1019",
                &apath,
                uid,
                format!("attribute {id} is not an attribute of program {}", p.id),
            );
            continue;
        }
        let Some(attr) = c.ix.attributes.get(id).copied() else {
            c.err("E1006", &apath, uid, format!("attribute {id} is not known"));
            continue;
        };
        let Some(value) = value else { continue };
        if value.chars().count() > MAX_ATTRIBUTE_VALUE_LENGTH {
            c.err(
                "E1077",
                &apath,
                uid,
                format!(
                    "attribute {id} value is {} characters; at most {MAX_ATTRIBUTE_VALUE_LENGTH}",
                    value.chars().count()
                ),
            );
            continue;
        }
        if let Some(os) = &attr.option_set {
            option_check(c, &apath, uid, "attribute", id, os, &value);
        } else if let Err(want) = check_value(attr.value_type, &value, true) {
            c.err(
                "E1007",
                &apath,
                uid,
                format!("attribute {id} expects {want}; got '{}'", clip(&value)),
            );
        }
    }
    present
}

fn enrollment(c: &mut Check, en: &Value, path: &str, te_attrs: Option<&[String]>) {
    let uid = check_uid(c, en, "enrollment", "enrollment", path);
    let uid = uid.as_deref();
    let program = match s(en, "program") {
        None => {
            c.err("E1122", path, uid, "enrollment has no program".into());
            None
        }
        Some(p) => match c.ix.programs.get(p).copied() {
            None => {
                c.err("E1069", path, uid, format!("program {p} is not known"));
                None
            }
            Some(prog) if prog.program_type != ProgramType::WithRegistration => {
                c.err(
                    "E1014",
                    path,
                    uid,
                    format!("program {p} is an event program; it takes no enrollments"),
                );
                None
            }
            Some(prog) => Some(prog),
        },
    };
    if te_attrs.is_none() && s(en, "trackedEntity").is_none() {
        c.err("E1122", path, uid, "enrollment has no trackedEntity".into());
    }
    if s(en, "enrolledAt").is_none() {
        c.err("E1025", path, uid, "enrollment has no enrolledAt".into());
    }
    match s(en, "orgUnit") {
        None => c.err("E1122", path, uid, "enrollment has no orgUnit".into()),
        Some(ou) if !c.ix.org_units.contains(ou) => c.err(
            "E1070",
            path,
            uid,
            format!("organisation unit {ou} is not known"),
        ),
        Some(ou) => {
            if let Some(p) = program
                && !Index::assigned(p, ou)
            {
                c.err(
                    "E1041",
                    path,
                    uid,
                    format!("organisation unit {ou} is not assigned to program {}", p.id),
                );
            }
        }
    }
    let mut present = attributes(c, en, path, uid, program);
    // Mandatory attributes can only be judged when the TE's attributes are in this payload.
    if let (Some(p), Some(te)) = (program, te_attrs) {
        present.extend(te.iter().cloned());
        for pa in &p.program_tracked_entity_attributes {
            let id = &pa.tracked_entity_attribute.id;
            if pa.mandatory && !present.contains(id) {
                c.err(
                    "E1018",
                    path,
                    uid,
                    format!("attribute {id} is mandatory in program {}", p.id),
                );
            }
        }
    }
    for (i, ev) in arr(en, "events").iter().enumerate() {
        event(
            c,
            ev,
            &format!("{path}.events[{i}]"),
            Style::Tracker,
            program.map(|p| p.id.as_str()).or(s(en, "program")),
        );
    }
}

/// One event; `parent_program` is set when nested in an enrollment.
fn event(c: &mut Check, ev: &Value, path: &str, style: Style, parent_program: Option<&str>) {
    let uid_key = "event";
    let uid = check_uid(c, ev, uid_key, "event", path);
    let uid = uid.as_deref();
    let stage_id = s(ev, "programStage");
    let program_id = s(ev, "program").or(parent_program);
    // Resolve the stage and its program.
    let (stage, program) = match (stage_id, program_id) {
        (Some(sid), _) => match c.ix.stages.get(sid).copied() {
            None => {
                c.err(
                    "E1013",
                    path,
                    uid,
                    format!("program stage {sid} is not known"),
                );
                (None, None)
            }
            Some((st, prog)) => {
                if let Some(pid) = program_id
                    && pid != prog.id
                {
                    c.err(
                        "E1089",
                        path,
                        uid,
                        format!("program stage {sid} does not belong to program {pid}"),
                    );
                }
                (Some(st), Some(prog))
            }
        },
        (None, Some(pid)) => match c.ix.programs.get(pid).copied() {
            None => {
                c.err("E1010", path, uid, format!("program {pid} is not known"));
                (None, None)
            }
            // Legacy /api/events derives the stage of a single-stage program.
            Some(prog) if style == Style::Legacy && prog.program_stages.len() == 1 => {
                (prog.program_stages.first(), Some(prog))
            }
            Some(prog) => {
                c.err("E1123", path, uid, "event has no programStage".into());
                (None, Some(prog))
            }
        },
        (None, None) => {
            c.err("E1123", path, uid, "event has no programStage".into());
            (None, None)
        }
    };
    if let Some(pid) = program_id
        && stage_id.is_some()
        && !c.ix.programs.contains_key(pid)
    {
        c.err("E1010", path, uid, format!("program {pid} is not known"));
    }
    match s(ev, "orgUnit") {
        None => c.err("E1123", path, uid, "event has no orgUnit".into()),
        Some(ou) if !c.ix.org_units.contains(ou) => c.err(
            "E1011",
            path,
            uid,
            format!("organisation unit {ou} is not known"),
        ),
        Some(ou) => {
            if let Some(p) = program
                && !Index::assigned(p, ou)
            {
                c.err(
                    "E1029",
                    path,
                    uid,
                    format!("organisation unit {ou} is not assigned to program {}", p.id),
                );
            }
        }
    }
    let status = s(ev, "status").unwrap_or("ACTIVE");
    let date_key = if style == Style::Legacy {
        "eventDate"
    } else {
        "occurredAt"
    };
    let event_program = program.is_some_and(|p| p.program_type == ProgramType::WithoutRegistration);
    if s(ev, date_key).is_none() && (matches!(status, "ACTIVE" | "COMPLETED") || event_program) {
        c.err("E1031", path, uid, format!("event has no {date_key}"));
    }
    if style == Style::Tracker
        && parent_program.is_none()
        && program.is_some_and(|p| p.program_type == ProgramType::WithRegistration)
        && s(ev, "enrollment").is_none()
    {
        c.err(
            "E1033",
            path,
            uid,
            "event in a tracker program has no enrollment".into(),
        );
    }
    let values = arr(ev, "dataValues");
    if !values.is_empty() && matches!(status, "SCHEDULE" | "SKIPPED" | "OVERDUE") {
        c.err(
            "E1315",
            path,
            uid,
            format!("status {status} does not allow data values"),
        );
    }
    let mut present = Vec::new();
    for (i, dv) in values.iter().enumerate() {
        let vpath = format!("{path}.dataValues[{i}]");
        let Some(de_id) = s(dv, "dataElement") else {
            c.err("E1304", &vpath, uid, "data value has no dataElement".into());
            continue;
        };
        let value = value_text(dv);
        if value.is_some() {
            present.push(de_id.to_string());
        }
        let in_stage = stage.and_then(|st| {
            st.program_stage_data_elements
                .iter()
                .find(|p| p.data_element.id == de_id)
                .map(|p| &p.data_element)
        });
        let de = match (in_stage, stage) {
            (Some(de), _) => de,
            (None, Some(st)) => {
                if c.ix.data_elements.contains_key(de_id) {
                    c.err(
                        "E1305",
                        &vpath,
                        uid,
                        format!(
                            "data element {de_id} is not part of program stage {}",
                            st.id
                        ),
                    );
                } else {
                    c.err(
                        "E1304",
                        &vpath,
                        uid,
                        format!("data element {de_id} is not known"),
                    );
                }
                continue;
            }
            (None, None) => continue,
        };
        if let Some(v) = value {
            data_value_check(c, &vpath, uid, de, &v, true, "E1302", "E1125");
        }
    }
    if let Some(st) = stage {
        let always = st.validation_strategy.as_deref() == Some("ON_UPDATE_AND_INSERT");
        if always || status == "COMPLETED" {
            for psde in st
                .program_stage_data_elements
                .iter()
                .filter(|p| p.compulsory)
            {
                let id = &psde.data_element.id;
                if !present.contains(id) {
                    c.err(
                        "E1303",
                        path,
                        uid,
                        format!(
                            "mandatory data element {id}{} is missing",
                            label(&psde.data_element)
                        ),
                    );
                }
            }
        }
    }
}

/// Value type, length and option checks shared by events and data value sets.
#[allow(clippy::too_many_arguments)]
fn data_value_check(
    c: &mut Check,
    path: &str,
    uid: Option<&str>,
    de: &DataElement,
    value: &str,
    tracker: bool,
    type_code: &'static str,
    option_code: &'static str,
) {
    if value.chars().count() > MAX_DATA_VALUE_LENGTH {
        c.err(
            type_code,
            path,
            uid,
            format!(
                "data element {} value is {} characters; at most {MAX_DATA_VALUE_LENGTH}",
                de.id,
                value.chars().count()
            ),
        );
        return;
    }
    if let Some(os) = &de.option_set {
        option_check_code(c, path, uid, "data element", &de.id, os, value, option_code);
    } else if let Err(want) = check_value(de.value_type, value, tracker) {
        c.err(
            type_code,
            path,
            uid,
            format!(
                "data element {} expects {want}; got '{}'",
                de.id,
                clip(value)
            ),
        );
    }
}

fn option_check(
    c: &mut Check,
    path: &str,
    uid: Option<&str>,
    what: &str,
    id: &str,
    os: &OptionSet,
    value: &str,
) {
    option_check_code(c, path, uid, what, id, os, value, "E1125");
}

#[allow(clippy::too_many_arguments)]
fn option_check_code(
    c: &mut Check,
    path: &str,
    uid: Option<&str>,
    what: &str,
    id: &str,
    os: &OptionSet,
    value: &str,
    code: &'static str,
) {
    if os.options.iter().any(|o| o.code == value) {
        return;
    }
    let codes: Vec<&str> = os.options.iter().map(|o| o.code.as_str()).collect();
    let shown = if codes.len() > 12 {
        format!("{}, …", codes[..12].join(", "))
    } else {
        codes.join(", ")
    };
    let hint = os
        .options
        .iter()
        .find(|o| {
            o.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(value))
                || o.code.eq_ignore_ascii_case(value)
        })
        .map(|o| format!(" (send the option code '{}')", o.code))
        .unwrap_or_default();
    c.err(
        code,
        path,
        uid,
        format!(
            "{what} {id} expects one of {shown}; got '{}'{hint}",
            clip(value)
        ),
    );
}

fn data_value_set(c: &mut Check, body: &Value) {
    if !body.is_object() {
        c.err(
            "E7600",
            "body",
            None,
            "expected {\"dataValues\":[…]}".into(),
        );
        return;
    }
    let data_set = match s(body, "dataSet") {
        None => None,
        Some(id) => match c.ix.data_sets.get(id).copied() {
            None => {
                c.err(
                    "E7600",
                    "dataSet",
                    Some(id),
                    format!("data set {id} is not known"),
                );
                None
            }
            Some(ds) => Some(ds),
        },
    };
    let set_period = s(body, "period");
    let set_ou = s(body, "orgUnit");
    if let Some(ou) = set_ou
        && !c.ix.org_units.contains(ou)
    {
        c.err(
            "E7603",
            "orgUnit",
            Some(ou),
            format!("organisation unit {ou} is not known"),
        );
    }
    if let Some(p) = set_period {
        period_check(c, "period", p, data_set);
    }
    for (i, dv) in arr(body, "dataValues").iter().enumerate() {
        let path = format!("dataValues[{i}]");
        let Some(de_id) = s(dv, "dataElement") else {
            c.err("E7610", &path, None, "data value has no dataElement".into());
            continue;
        };
        let Some(de) = c.ix.data_elements.get(de_id).copied() else {
            c.err(
                "E7610",
                &path,
                Some(de_id),
                format!("data element {de_id} is not known"),
            );
            continue;
        };
        if let Some(ds) = data_set
            && !ds
                .data_set_elements
                .iter()
                .any(|d| d.data_element.id == de_id)
        {
            c.err(
                "E7633",
                &path,
                Some(de_id),
                format!("data element {de_id} is not in data set {}", ds.id),
            );
        }
        match s(dv, "orgUnit") {
            Some(ou) if !c.ix.org_units.contains(ou) => c.err(
                "E7603",
                &path,
                Some(ou),
                format!("organisation unit {ou} is not known"),
            ),
            None if set_ou.is_none() => {
                c.err("E7603", &path, None, "data value has no orgUnit".into())
            }
            _ => {}
        }
        match s(dv, "period") {
            Some(p) => period_check(c, &format!("{path}.period"), p, data_set),
            None if set_period.is_none() => {
                c.err("E7611", &path, None, "data value has no period".into())
            }
            None => {}
        }
        match value_text(dv) {
            Some(v) => data_value_check(c, &path, Some(de_id), de, &v, false, "E7619", "E7621"),
            None if s(dv, "comment").is_none() => c.err(
                "E7618",
                &path,
                Some(de_id),
                "data value has neither value nor comment".into(),
            ),
            None => {}
        }
    }
}

/// ISO period formats, and the data set's period type when known (E7611).
fn period_check(c: &mut Check, path: &str, p: &str, ds: Option<&DataSet>) {
    let kind = period_kind(p);
    let ok = match (kind, ds.map(|d| d.period_type.as_str())) {
        (None, _) => false,
        (Some(k), Some(want)) if !want.is_empty() => k == want,
        (Some(_), _) => true,
    };
    if !ok {
        let want = ds
            .map(|d| d.period_type.as_str())
            .filter(|w| !w.is_empty())
            .unwrap_or("an ISO period");
        c.err(
            "E7611",
            path,
            None,
            format!(
                "period '{}' is not valid for {want} (e.g. 202405 for Monthly)",
                clip(p)
            ),
        );
    }
}

/// `yyyyMMdd` Daily, `yyyyWn` Weekly, `yyyyMM` Monthly, `yyyyQn` Quarterly, `yyyy` Yearly,
/// `yyyySn` SixMonthly, `yyyyBiWn` BiWeekly, `yyyyMMB` BiMonthly, `yyyyApril` FinancialApril…
fn period_kind(p: &str) -> Option<&'static str> {
    if p.len() < 4 || !p.is_char_boundary(4) || !all_digits(&p[..4]) {
        return None;
    }
    let rest = &p[4..];
    let num = |s: &str, lo: u32, hi: u32| {
        all_digits(s) && s.parse::<u32>().is_ok_and(|n| (lo..=hi).contains(&n))
    };
    if rest.is_empty() {
        return Some("Yearly");
    }
    if rest.len() == 2 && num(rest, 1, 12) {
        return Some("Monthly");
    }
    if rest.len() == 4 && all_digits(rest) {
        return is_date(&format!("{}-{}-{}", &p[..4], &rest[..2], &rest[2..])).then_some("Daily");
    }
    if let Some(w) = rest.strip_prefix("BiW") {
        return num(w, 1, 27).then_some("BiWeekly");
    }
    if let Some(w) = rest.strip_prefix('W') {
        return num(w, 1, 53).then_some("Weekly");
    }
    if let Some(q) = rest.strip_prefix('Q') {
        return num(q, 1, 4).then_some("Quarterly");
    }
    if let Some(s) = rest.strip_prefix('S') {
        return num(s, 1, 2).then_some("SixMonthly");
    }
    if let Some(m) = rest.strip_suffix('B') {
        return (m.len() == 2 && num(m, 1, 6)).then_some("BiMonthly");
    }
    match rest {
        "April" => Some("FinancialApril"),
        "July" => Some("FinancialJuly"),
        "Oct" => Some("FinancialOct"),
        "Nov" => Some("FinancialNov"),
        _ => None,
    }
}

/// A data value's text: strings as is, numbers/bools as DHIS2 would read them, null = absent.
fn value_text(v: &Value) -> Option<String> {
    match v.get("value")? {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => Some(other.to_string()),
    }
}

fn label(de: &DataElement) -> String {
    match (&de.code, &de.name) {
        (Some(code), _) => format!(" ({code})"),
        (None, Some(name)) => format!(" ({name})"),
        _ => String::new(),
    }
}

fn clip(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        return s.to_string();
    }
    let head: String = s.chars().take(MAX).collect();
    format!("{head}…")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn md() -> MetadataCache {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/dhis2/metadata.json");
        MetadataCache::from_json(&std::fs::read(p).expect("fixture")).expect("fixture parses")
    }

    fn req(endpoint: Endpoint, body: Value) -> Dhis2Request {
        Dhis2Request {
            endpoint,
            path: None,
            body,
        }
    }

    fn codes(errs: &[LocalError]) -> Vec<&'static str> {
        errs.iter().map(|e| e.code).collect()
    }

    fn tb_event(values: Value) -> Value {
        json!({"event": "EvtTb000001", "programStage": "mPdMZNWVrOQ", "program": "Lt6P15ps7f6",
               "enrollment": "EnrTb000001", "orgUnit": "OuClinicA01", "status": "COMPLETED",
               "occurredAt": "2025-05-14T13:21:03", "dataValues": values})
    }

    #[test]
    fn fixture_round_trips_and_has_the_expected_objects() {
        let m = md();
        assert_eq!(m.programs.len(), 4);
        assert_eq!(m.data_sets[0].period_type, "Monthly");
        assert_eq!(m.organisation_units.len(), 3);
        assert_eq!(m.tracked_entity_types[0].id, "MCPQUTHX1Ze");
        let back: MetadataCache =
            serde_json::from_value(serde_json::to_value(&m).expect("ser")).expect("de");
        assert_eq!(back, m);
    }

    #[test]
    fn listing_responses_with_pager_merge_into_a_cache() {
        let mut m = MetadataCache::default();
        let programs = br#"{"pager":{"page":1,"total":1},"programs":[{"id":"LabRslts001","programType":"WITHOUT_REGISTRATION","programStages":[]}]}"#;
        let ous = br#"{"organisationUnits":[{"id":"OuClinicA01","name":"Clinic A"}]}"#;
        m.merge(MetadataCache::from_json(programs).expect("programs"));
        m.merge(MetadataCache::from_json(ous).expect("ous"));
        m.merge(MetadataCache::from_json(ous).expect("ous again"));
        assert_eq!((m.programs.len(), m.organisation_units.len()), (1, 1));
    }

    #[test]
    fn field_paths_are_well_formed() {
        for p in [
            PROGRAMS_PATH,
            DATA_SETS_PATH,
            ORGANISATION_UNITS_PATH,
            TRACKED_ENTITY_TYPES_PATH,
            TRACKED_ENTITY_ATTRIBUTES_PATH,
        ] {
            assert!(
                p.starts_with("/api/") && p.contains("paging=false&fields=id,"),
                "{p}"
            );
            assert_eq!(p.matches('[').count(), p.matches(']').count(), "{p}");
        }
        assert!(PROGRAM_FIELDS.contains("programStageDataElements[compulsory,allowFutureDate,dataElement[id,code,name,valueType,optionSet[id,options[code,name]]]]"));
    }

    #[test]
    fn valid_genexpert_ultra_event_passes() {
        let body = json!({"events": [tb_event(json!([
            {"dataElement": "MAItgXvlO5L", "value": "true"},
            {"dataElement": "lmXKhJA5nk1", "value": "DETECTED"},
            {"dataElement": "d2nso3iTDyC", "value": "SUSCEPTIBLE"},
            {"dataElement": "mFCcHXpopRD", "value": "2025-05-14"},
            {"dataElement": "Lf02pJ3jScn", "value": "S-0042"}
        ]))]});
        assert_eq!(validate(&req(Endpoint::Tracker, body), &md()), vec![]);
    }

    #[test]
    fn option_code_not_in_set_reads_like_a_person_wrote_it() {
        let body = json!({"events": [tb_event(json!([{"dataElement": "CxjSGmVSIrD", "value": "DETECTED HIGH"}]))]});
        let errs = validate(&req(Endpoint::Tracker, body), &md());
        assert_eq!(codes(&errs), ["E1125"]);
        assert_eq!(
            errs[0].message,
            "data element CxjSGmVSIrD expects one of DETECTED, NOT_DETECTED, ERROR, INVALID, NO_RESULT; got 'DETECTED HIGH'"
        );
        assert_eq!(errs[0].path, "events[0].dataValues[0]");
        assert_eq!(errs[0].uid.as_deref(), Some("EvtTb000001"));
    }

    #[test]
    fn option_name_instead_of_code_hints_the_code() {
        let body = json!({"events": [tb_event(json!([{"dataElement": "F6kH0qcMT7Z", "value": "Resistant"}]))]});
        let errs = validate(&req(Endpoint::Tracker, body), &md());
        assert!(
            errs[0]
                .message
                .ends_with("(send the option code 'RESISTANT')"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn org_unit_not_assigned_to_program_is_e1029_for_events_and_e1041_for_enrollments() {
        let mut ev = tb_event(json!([]));
        ev["orgUnit"] = json!("OuDistrict1");
        let errs = validate(&req(Endpoint::Tracker, json!({"events": [ev]})), &md());
        assert_eq!(codes(&errs), ["E1029"]);
        let en = json!({"enrollment": "EnrTb000001", "program": "Lt6P15ps7f6", "trackedEntity": "TeTb0000001",
                        "orgUnit": "OuDistrict1", "enrolledAt": "2025-05-14"});
        let errs = validate(&req(Endpoint::Tracker, json!({"enrollments": [en]})), &md());
        assert_eq!(codes(&errs), ["E1041"]);
    }

    #[test]
    fn unknown_program_stage_data_element_and_org_unit_are_reported() {
        let ev = json!({"event": "EvtTb000002", "programStage": "NoSuchStg01", "orgUnit": "NoSuchOu001",
                        "occurredAt": "2025-05-14", "dataValues": []});
        let errs = validate(&req(Endpoint::Tracker, json!({"events": [ev]})), &md());
        assert_eq!(codes(&errs), ["E1013", "E1011"]);
        let ev = tb_event(
            json!([{"dataElement": "NoSuchDe001", "value": "1"}, {"dataElement": "LabValue001", "value": "1"}]),
        );
        let errs = validate(&req(Endpoint::Tracker, json!({"events": [ev]})), &md());
        assert_eq!(codes(&errs), ["E1304", "E1305"]);
        let ev = json!({"event": "EvtTb000003", "program": "NoSuchPrg01", "orgUnit": "OuClinicA01", "occurredAt": "2025-05-14"});
        assert_eq!(
            codes(&validate(
                &req(Endpoint::Tracker, json!({"events": [ev]})),
                &md()
            )),
            ["E1010"]
        );
    }

    #[test]
    fn bad_uid_format_is_e1048() {
        let mut ev = tb_event(json!([]));
        ev["event"] = json!("1bad-uid");
        let errs = validate(&req(Endpoint::Tracker, json!({"events": [ev]})), &md());
        assert_eq!(codes(&errs), ["E1048"]);
    }

    #[test]
    fn value_types_are_checked_like_dhis2() {
        let lab = |v: Value| {
            json!({"events": [{"event": "EvtLab00001", "programStage": "LabStage001", "orgUnit": "OuClinicA01",
                               "occurredAt": "2025-05-14", "status": "ACTIVE", "dataValues": [{"dataElement": "LabValue001", "value": v}]}]})
        };
        for ok in ["12", "-0.5", "0", "1234.5678"] {
            assert_eq!(
                validate(&req(Endpoint::Tracker, lab(json!(ok))), &md()),
                vec![],
                "{ok}"
            );
        }
        for bad in ["+1", "1.", "1e5", "01", "abc", "1,5"] {
            let errs = validate(&req(Endpoint::Tracker, lab(json!(bad))), &md());
            assert_eq!(codes(&errs), ["E1302"], "{bad}");
        }
        let date = json!({"events": [tb_event(json!([{"dataElement": "cQUTagw2Jtw", "value": "2025-02-30"}]))]});
        assert_eq!(
            codes(&validate(&req(Endpoint::Tracker, date), &md())),
            ["E1302"]
        );
        let true_only =
            json!({"events": [tb_event(json!([{"dataElement": "VSuQ1rwL2nA", "value": "1"}]))]});
        assert_eq!(
            codes(&validate(&req(Endpoint::Tracker, true_only), &md())),
            ["E1302"]
        );
    }

    #[test]
    fn check_value_covers_the_integer_family_and_dates() {
        use ValueType::*;
        assert!(check_value(Integer, "-12", true).is_ok());
        assert!(check_value(Integer, "99999999999", true).is_err());
        assert!(check_value(IntegerPositive, "0", true).is_err());
        assert!(check_value(IntegerZeroOrPositive, "0", true).is_ok());
        assert!(check_value(IntegerZeroOrPositive, "-1", true).is_err());
        assert!(check_value(IntegerNegative, "-3", true).is_ok());
        assert!(check_value(Percentage, "100.5", true).is_err());
        assert!(check_value(UnitInterval, "0.3", true).is_ok());
        assert!(check_value(Boolean, "1", true).is_err());
        assert!(check_value(Boolean, "1", false).is_ok());
        assert!(check_value(Boolean, "TRUE", true).is_ok());
        assert!(check_value(Datetime, "2025-05-14T13:21:03.123", true).is_ok());
        assert!(check_value(Datetime, "2025-05-14T13:21:03+02:00", true).is_ok());
        assert!(check_value(Datetime, "2025-05-14T25:00", true).is_err());
        assert!(check_value(Time, "9:05", true).is_ok());
        assert!(check_value(Coordinate, "[10.9,59.8]", true).is_ok());
        assert!(check_value(Text, &"x".repeat(MAX_DATA_VALUE_LENGTH + 1), true).is_err());
    }

    #[test]
    fn compulsory_data_elements_are_required_only_on_completed_events() {
        let ev = |status: &str| {
            json!({"events": [{"event": "EvtLab00002", "programStage": "LabStage001", "program": "LabRslts001",
                               "orgUnit": "OuClinicB02", "occurredAt": "2025-05-14", "status": status,
                               "dataValues": [{"dataElement": "LabTestCode", "value": "MTB"}]}]})
        };
        assert_eq!(
            validate(&req(Endpoint::Tracker, ev("ACTIVE")), &md()),
            vec![]
        );
        let errs = validate(&req(Endpoint::Tracker, ev("COMPLETED")), &md());
        assert_eq!(codes(&errs), ["E1303"]);
        assert!(errs[0].message.contains("LabResult01 (POC_RESULT)"));
    }

    #[test]
    fn tracker_program_event_without_enrollment_is_e1033_and_missing_date_e1031() {
        let mut ev = tb_event(json!([]));
        ev.as_object_mut().expect("obj").remove("enrollment");
        ev.as_object_mut().expect("obj").remove("occurredAt");
        let errs = validate(&req(Endpoint::Tracker, json!({"events": [ev]})), &md());
        assert_eq!(codes(&errs), ["E1031", "E1033"]);
    }

    #[test]
    fn nested_tracked_entity_checks_mandatory_attributes_and_lengths() {
        let body = json!({"trackedEntities": [{
            "trackedEntity": "TeTb0000001", "trackedEntityType": "MCPQUTHX1Ze", "orgUnit": "OuClinicA01",
            "attributes": [{"attribute": "NI0QRzJvQ0k", "value": "1990-13-01"}],
            "enrollments": [{"enrollment": "EnrTb000001", "program": "Lt6P15ps7f6", "orgUnit": "OuClinicA01",
                "enrolledAt": "2025-05-14",
                "attributes": [{"attribute": "ntelZthDPpR", "value": "x".repeat(1201)}],
                "events": [{"event": "EvtTb000001", "programStage": "mPdMZNWVrOQ", "orgUnit": "OuClinicA01",
                            "occurredAt": "2025-05-14", "status": "ACTIVE",
                            "dataValues": [{"dataElement": "CxjSGmVSIrD", "value": "NOT_DETECTED"}]}]}]
        }]});
        let errs = validate(&req(Endpoint::Tracker, body), &md());
        assert_eq!(codes(&errs), ["E1007", "E1077", "E1018"], "{errs:#?}");
    }

    #[test]
    fn enrollment_into_event_program_is_e1014() {
        let en = json!({"enrollment": "EnrLab00001", "program": "LabRslts001", "trackedEntity": "TeTb0000001",
                        "orgUnit": "OuClinicA01", "enrolledAt": "2025-05-14"});
        assert_eq!(
            codes(&validate(
                &req(Endpoint::Tracker, json!({"enrollments": [en]})),
                &md()
            )),
            ["E1014"]
        );
    }

    #[test]
    fn legacy_event_uses_event_date_and_single_stage_program() {
        let body = json!({"program": "LabRslts001", "orgUnit": "OuClinicA01", "eventDate": "2025-05-14",
                          "status": "COMPLETED", "dataValues": [
                              {"dataElement": "LabTestCode", "value": "HIV_VL"},
                              {"dataElement": "LabResult01", "value": "POSITIVE"},
                              {"dataElement": "LabValue001", "value": 1200}]});
        assert_eq!(validate(&req(Endpoint::Events, body), &md()), vec![]);
    }

    #[test]
    fn data_value_set_checks_data_set_period_and_values() {
        let ok = json!({"dataSet": "LabMonthly1", "period": "202405", "orgUnit": "OuClinicA01",
                        "dataValues": [{"dataElement": "LabTestsDon", "value": "12"},
                                       {"dataElement": "LabPosCount", "value": "3"}]});
        assert_eq!(validate(&req(Endpoint::DataValueSets, ok), &md()), vec![]);
        let bad = json!({"dataSet": "LabMonthly1", "period": "2024W20", "orgUnit": "OuClinicA01",
                         "dataValues": [{"dataElement": "LabTestsDon", "value": "-1"},
                                        {"dataElement": "LabValue001", "value": "3"},
                                        {"dataElement": "NoSuchDe001", "value": "3"},
                                        {"dataElement": "LabPosCount"}]});
        let errs = validate(&req(Endpoint::DataValueSets, bad), &md());
        assert_eq!(
            codes(&errs),
            ["E7611", "E7619", "E7633", "E7610", "E7618"],
            "{errs:#?}"
        );
    }

    #[test]
    fn garbage_bodies_do_not_panic() {
        let m = md();
        for body in [
            json!(null),
            json!(7),
            json!("x"),
            json!([1, 2]),
            json!({"events": 5}),
            json!({"events": [null, 1, {"dataValues": [null, {"dataElement": 5}]}]}),
            json!({"trackedEntities": [{"enrollments": [{"events": [{}]}], "attributes": [{}]}]}),
            json!({"dataValues": [{}, {"period": "ü€€€"}, {"dataElement": "LabTestsDon", "value": {"a": 1}}]}),
        ] {
            for e in [
                Endpoint::Tracker,
                Endpoint::Events,
                Endpoint::DataValueSets,
                Endpoint::Get,
            ] {
                let _ = validate(&req(e, body.clone()), &m);
            }
        }
        for v in [
            "",
            "ü",
            "2025-05-1ü",
            "2025-05-14Tü",
            "[",
            "-",
            "0.",
            "--1",
            "9".repeat(300).as_str(),
        ] {
            for t in [
                ValueType::Number,
                ValueType::Datetime,
                ValueType::Date,
                ValueType::IntegerNegative,
                ValueType::Time,
                ValueType::Coordinate,
                ValueType::PhoneNumber,
                ValueType::Email,
                ValueType::Letter,
            ] {
                let _ = check_value(t, v, true);
            }
            let _ = period_kind(v);
        }
    }
}
