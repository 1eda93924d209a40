//! `POST /api/tracker` and its jobs (dhis2.md §2.2, §3, §4.1).
//!
//! The import is one function over the store, run under the store lock so it is atomic:
//! flatten the payload → resolve each object's strategy by UID existence → validate against the
//! metadata fixture → (OBJECT mode) reject children of rejected new parents with E5000 →
//! commit → build the ImportReport in the shape of the configured version.
//! Sync answers are 200 when `status` is OK and 409 when ERROR; async jobs finish after
//! `job_delay_ms` (default 200 ms) and keep their report in memory.

use super::auth::AuthUser;
use super::state::{Kind, Store};
use super::{
    SimState, Version, base_url, error_message, json_bytes, json_response, lock, now_string,
    query_get, query_pairs, values, web_message,
};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Create,
    Update,
    CreateAndUpdate,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtomicMode {
    All,
    Object,
}

/// Query parameters of one import.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub strategy: Strategy,
    pub atomic: AtomicMode,
    pub validate_only: bool,
    pub sync: bool,
}

const STRATEGIES: &[&str] = &["CREATE", "UPDATE", "CREATE_AND_UPDATE", "DELETE"];
const ATOMIC: &[&str] = &["ALL", "OBJECT"];
const IMPORT_MODES: &[&str] = &["COMMIT", "VALIDATE"];
const VALIDATION_MODES: &[&str] = &["FULL", "FAIL_FAST", "SKIP"];
const REPORT_MODES: &[&str] = &["ERRORS", "WARNINGS", "FULL"];
const FLUSH_MODES: &[&str] = &["AUTO", "OBJECT"];

fn enum_param<'a>(
    v: Version,
    q: &[(String, String)],
    name: &str,
    allowed: &'a [&'a str],
    default: &'a str,
) -> Result<&'a str, Box<Response>> {
    let Some(raw) = query_get(q, name) else {
        return Ok(default);
    };
    if let Some(hit) = allowed.iter().find(|a| a.eq_ignore_ascii_case(raw)) {
        return Ok(hit);
    }
    if v.strict_enums() {
        return Err(Box::new(error_message(
            StatusCode::BAD_REQUEST,
            format!(
                "Value {raw} is not a valid {name}. Valid values are: [{}]",
                allowed.join(", ")
            ),
        )));
    }
    Ok(default)
}

/// Parse the import query for this version (400 for bad enums on strict versions).
pub fn parse_params(v: Version, q: &[(String, String)]) -> Result<Params, Box<Response>> {
    let strategy = match enum_param(v, q, "importStrategy", STRATEGIES, "CREATE_AND_UPDATE")? {
        "CREATE" => Strategy::Create,
        "UPDATE" => Strategy::Update,
        "DELETE" => Strategy::Delete,
        _ => Strategy::CreateAndUpdate,
    };
    let atomic = match enum_param(v, q, "atomicMode", ATOMIC, "ALL")? {
        "OBJECT" => AtomicMode::Object,
        _ => AtomicMode::All,
    };
    let validate_only = enum_param(v, q, "importMode", IMPORT_MODES, "COMMIT")? == "VALIDATE";
    enum_param(v, q, "validationMode", VALIDATION_MODES, "FULL")?;
    enum_param(v, q, "reportMode", REPORT_MODES, "ERRORS")?;
    enum_param(v, q, "flushMode", FLUSH_MODES, "AUTO")?;
    let sync = match query_get(q, "async") {
        None => false,
        Some(raw) if v.async_is_boolean() => match raw.to_ascii_lowercase().as_str() {
            "false" | "off" | "no" | "0" => true,
            "true" | "on" | "yes" | "1" | "" => false,
            _ => {
                return Err(Box::new(error_message(
                    StatusCode::BAD_REQUEST,
                    format!("Value {raw} is not a valid async. Valid values are: [true, false]"),
                )));
            }
        },
        // ≤2.41: `@PostMapping(params = {"async=false"})` — only the literal value.
        Some(raw) => raw == "false",
    };
    Ok(Params {
        strategy,
        atomic,
        validate_only,
        sync,
    })
}

// ---------------------------------------------------------------------------------------------
// Payload

/// One flattened payload object.
#[derive(Debug, Clone)]
pub struct Item {
    pub kind: Kind,
    pub uid: String,
    /// Position among the payload objects of its kind (`objectReports[].index`).
    pub index: usize,
    pub value: Value,
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

fn take_children(v: &mut Value, key: &str) -> Vec<Value> {
    match v.as_object_mut().and_then(|o| o.remove(key)) {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    }
}

fn ensure_uid(v: &mut Value, field: &str) -> String {
    if let Some(u) = str_of(v, field) {
        return u.to_string();
    }
    let uid = values::generate_uid();
    if let Some(o) = v.as_object_mut() {
        o.insert(field.into(), json!(uid));
    }
    uid
}

fn set_if_missing(v: &mut Value, field: &str, value: &str) {
    if str_of(v, field).is_none()
        && let Some(o) = v.as_object_mut()
    {
        o.insert(field.into(), json!(value));
    }
}

/// Flatten a nested or flat payload ("the payload will always be flattened before the import").
/// `Err` = the body is not a tracker payload (a JSON binding error in DHIS2).
pub fn flatten(body: &Value) -> Result<Vec<Item>, String> {
    let Some(root) = body.as_object() else {
        return Err("Cannot deserialize value: expected a JSON object".into());
    };
    let list = |key: &str| -> Result<Vec<Value>, String> {
        match root.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) if a.iter().all(Value::is_object) => Ok(a.clone()),
            Some(_) => Err(format!(
                "Cannot deserialize `{key}`: expected an array of objects"
            )),
        }
    };
    let mut tes = Vec::new();
    let mut ens = Vec::new();
    let mut evs = Vec::new();
    let mut rels = list("relationships")?;
    let push_event = |mut ev: Value,
                      en_uid: Option<&str>,
                      te_uid: Option<&str>,
                      program: Option<&str>,
                      evs: &mut Vec<Value>,
                      rels: &mut Vec<Value>| {
        if let Some(u) = en_uid {
            set_if_missing(&mut ev, "enrollment", u);
        }
        if let Some(u) = te_uid {
            set_if_missing(&mut ev, "trackedEntity", u);
        }
        if let Some(p) = program {
            set_if_missing(&mut ev, "program", p);
        }
        rels.extend(take_children(&mut ev, "relationships"));
        evs.push(ev);
    };
    let push_enrollment = |mut en: Value,
                           te_uid: Option<&str>,
                           ens: &mut Vec<Value>,
                           evs: &mut Vec<Value>,
                           rels: &mut Vec<Value>| {
        if let Some(u) = te_uid {
            set_if_missing(&mut en, "trackedEntity", u);
        }
        let children = take_children(&mut en, "events");
        rels.extend(take_children(&mut en, "relationships"));
        let en_uid = if children.is_empty() {
            str_of(&en, "enrollment").map(str::to_string)
        } else {
            Some(ensure_uid(&mut en, "enrollment"))
        };
        let te = str_of(&en, "trackedEntity").map(str::to_string);
        let program = str_of(&en, "program").map(str::to_string);
        for ev in children.into_iter().filter(Value::is_object) {
            push_event(
                ev,
                en_uid.as_deref(),
                te.as_deref(),
                program.as_deref(),
                evs,
                rels,
            );
        }
        ens.push(en);
    };
    for mut te in list("trackedEntities")? {
        let children = take_children(&mut te, "enrollments");
        rels.extend(take_children(&mut te, "relationships"));
        let te_uid = if children.is_empty() {
            str_of(&te, "trackedEntity").map(str::to_string)
        } else {
            Some(ensure_uid(&mut te, "trackedEntity"))
        };
        for en in children.into_iter().filter(Value::is_object) {
            push_enrollment(en, te_uid.as_deref(), &mut ens, &mut evs, &mut rels);
        }
        tes.push(te);
    }
    for en in list("enrollments")? {
        push_enrollment(en, None, &mut ens, &mut evs, &mut rels);
    }
    for ev in list("events")? {
        push_event(ev, None, None, None, &mut evs, &mut rels);
    }
    let mut items = Vec::new();
    for (kind, objs) in [
        (Kind::TrackedEntity, tes),
        (Kind::Enrollment, ens),
        (Kind::Event, evs),
        (Kind::Relationship, rels),
    ] {
        for (index, mut value) in objs.into_iter().enumerate() {
            let uid = ensure_uid(&mut value, kind.uid_field());
            items.push(Item {
                kind,
                uid,
                index,
                value,
            });
        }
    }
    Ok(items)
}

// ---------------------------------------------------------------------------------------------
// Report shapes

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorOut {
    pub message: String,
    pub error_code: &'static str,
    pub tracker_type: &'static str,
    pub uid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StatsOut {
    pub created: u64,
    pub updated: u64,
    pub deleted: u64,
    pub ignored: u64,
    pub total: u64,
}

impl StatsOut {
    fn finish(mut self) -> Self {
        self.total = self.created + self.updated + self.deleted + self.ignored;
        self
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ValidationReportOut {
    error_reports: Vec<ErrorOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warning_reports: Option<Vec<Value>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ObjectReportOut {
    tracker_type: &'static str,
    uid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<usize>,
    error_reports: Vec<ErrorOut>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TypeReportOut {
    tracker_type: &'static str,
    stats: StatsOut,
    object_reports: Vec<ObjectReportOut>,
}

/// Field order of the samples: EVENT, ENROLLMENT, RELATIONSHIP, TRACKED_ENTITY.
#[derive(Serialize)]
struct TypeReportMapOut {
    #[serde(rename = "EVENT", skip_serializing_if = "Option::is_none")]
    event: Option<TypeReportOut>,
    #[serde(rename = "ENROLLMENT", skip_serializing_if = "Option::is_none")]
    enrollment: Option<TypeReportOut>,
    #[serde(rename = "RELATIONSHIP", skip_serializing_if = "Option::is_none")]
    relationship: Option<TypeReportOut>,
    #[serde(rename = "TRACKED_ENTITY", skip_serializing_if = "Option::is_none")]
    tracked_entity: Option<TypeReportOut>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BundleReportOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    type_report_map: TypeReportMapOut,
    #[serde(skip_serializing_if = "Option::is_none")]
    stats: Option<StatsOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    empty: Option<bool>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ImportReportOut {
    status: &'static str,
    validation_report: ValidationReportOut,
    stats: StatsOut,
    #[serde(skip_serializing_if = "Option::is_none")]
    bundle_report: Option<BundleReportOut>,
}

/// Result of one import.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The ImportReport JSON, in the version's shape.
    pub report: Vec<u8>,
    pub error: bool,
    pub stats: StatsOut,
}

// ---------------------------------------------------------------------------------------------
// Validation

struct Ctx<'a> {
    v: Version,
    st: &'a SimState,
    store: &'a Store,
    params: Params,
    /// uid → payload position, per kind.
    payload: HashMap<Kind, HashMap<String, usize>>,
    items: &'a [Item],
}

impl Ctx<'_> {
    fn err(&self, item: &Item, code: &'static str, message: String, args: Vec<String>) -> ErrorOut {
        ErrorOut {
            message,
            error_code: code,
            tracker_type: item.kind.tracker_type(),
            uid: item.uid.clone(),
            args: self.v.error_args().then_some(args),
        }
    }

    fn in_payload(&self, kind: Kind, uid: &str) -> Option<&Item> {
        self.payload
            .get(&kind)
            .and_then(|m| m.get(uid))
            .map(|i| &self.items[*i])
    }

    /// An object as it will be after this import (payload wins over store).
    fn resolve(&self, kind: Kind, uid: &str) -> Option<&Value> {
        if let Some(i) = self.in_payload(kind, uid) {
            return Some(&i.value);
        }
        if self.store.is_deleted(kind, uid) {
            return None;
        }
        self.store.get(kind, uid)
    }

    fn label(&self, kind: Kind) -> &'static str {
        if self.v.minor == 36 && kind == Kind::TrackedEntity {
            "TrackedEntityInstance"
        } else {
            kind.label()
        }
    }
}

/// Resolve the object's strategy, or the existence error (E1002/E1030/E1080/E1063/E1032/E1081/
/// E1082/E1113/E1114, E4015–E4017).
fn existence(ctx: &Ctx, item: &Item) -> Result<Strategy, ErrorOut> {
    let uid = &item.uid;
    let label = ctx.label(item.kind);
    if ctx.store.is_deleted(item.kind, uid) {
        let code = match item.kind {
            Kind::Event => "E1082",
            Kind::Enrollment => "E1113",
            Kind::TrackedEntity => "E1114",
            Kind::Relationship => "E4017",
        };
        let cannot = if ctx.v.minor == 36 { "cant" } else { "cannot" };
        return Err(ctx.err(
            item,
            code,
            format!("{label}: `{uid}`, is already deleted and {cannot} be modified."),
            vec![uid.clone()],
        ));
    }
    let exists = ctx.store.exists(item.kind, uid);
    let missing = || {
        let (code, text) = match item.kind {
            Kind::Event => ("E1032", "do not exist."),
            Kind::Enrollment => ("E1081", "do not exist."),
            Kind::TrackedEntity => ("E1063", "does not exist."),
            Kind::Relationship => ("E4016", "does not exist."),
        };
        ctx.err(
            item,
            code,
            format!("{label}: `{uid}`, {text}"),
            vec![uid.clone()],
        )
    };
    match ctx.params.strategy {
        Strategy::Create if exists => {
            let code = match item.kind {
                Kind::Event => "E1030",
                Kind::Enrollment => "E1080",
                Kind::TrackedEntity => "E1002",
                Kind::Relationship => "E4015",
            };
            let comma = if ctx.v.exists_without_comma() {
                ""
            } else {
                ","
            };
            Err(ctx.err(
                item,
                code,
                format!("{label}: `{uid}`{comma} already exists."),
                vec![uid.clone()],
            ))
        }
        Strategy::Create => Ok(Strategy::Create),
        Strategy::Update | Strategy::Delete if !exists => Err(missing()),
        Strategy::Update => Ok(Strategy::Update),
        Strategy::Delete => Ok(Strategy::Delete),
        Strategy::CreateAndUpdate if exists => Ok(Strategy::Update),
        Strategy::CreateAndUpdate => Ok(Strategy::Create),
    }
}

fn missing_property(
    ctx: &Ctx,
    item: &Item,
    code: &'static str,
    what: &str,
    prop: &str,
) -> ErrorOut {
    ctx.err(
        item,
        code,
        format!("Missing required {what} property: `{prop}`."),
        vec![prop.to_string()],
    )
}

fn validate_tracked_entity(ctx: &Ctx, item: &Item, errs: &mut Vec<ErrorOut>) {
    let meta = &ctx.st.inner().meta;
    let v = &item.value;
    match str_of(v, "trackedEntityType") {
        None => errs.push(missing_property(
            ctx,
            item,
            "E1121",
            "trackedEntity",
            "trackedEntityType",
        )),
        Some(t) if !meta.tracked_entity_types.contains(t) => errs.push(ctx.err(
            item,
            "E1005",
            format!("Could not find TrackedEntityType: `{t}`."),
            vec![t.to_string()],
        )),
        Some(_) => {}
    }
    match str_of(v, "orgUnit") {
        None => errs.push(missing_property(
            ctx,
            item,
            "E1121",
            "trackedEntity",
            "orgUnit",
        )),
        Some(ou) if !meta.org_units.contains_key(ou) => errs.push(ctx.err(
            item,
            "E1049",
            format!("Could not find OrganisationUnit: `{ou}`, linked to Tracked Entity."),
            vec![ou.to_string()],
        )),
        Some(_) => {}
    }
}

fn validate_enrollment(ctx: &Ctx, item: &Item, strategy: Strategy, errs: &mut Vec<ErrorOut>) {
    let meta = &ctx.st.inner().meta;
    let v = &item.value;
    let uid = &item.uid;
    let ou = str_of(v, "orgUnit");
    let program_id = str_of(v, "program");
    let te = str_of(v, "trackedEntity");
    for (prop, val) in [
        ("orgUnit", ou),
        ("program", program_id),
        ("trackedEntity", te),
    ] {
        if val.is_none() {
            errs.push(missing_property(ctx, item, "E1122", "enrollment", prop));
        }
    }
    if str_of(v, "enrolledAt").is_none() {
        errs.push(ctx.err(item, "E1025", "Property enrolledAt is null.".into(), vec![]));
    }
    let program = program_id.and_then(|p| meta.programs.get(p));
    if let Some(p) = program_id
        && program.is_none()
    {
        errs.push(ctx.err(
            item,
            "E1069",
            format!("Could not find Program: `{p}`, linked to Enrollment."),
            vec![p.to_string()],
        ));
    }
    if let Some(o) = ou
        && !meta.org_units.contains_key(o)
    {
        errs.push(ctx.err(
            item,
            "E1070",
            format!("Could not find OrganisationUnit: `{o}`, linked to Enrollment."),
            vec![o.to_string()],
        ));
    }
    let te_obj = te.and_then(|t| ctx.resolve(Kind::TrackedEntity, t));
    if let Some(t) = te
        && te_obj.is_none()
    {
        errs.push(ctx.err(
            item,
            "E1068",
            format!("Could not find TrackedEntity: `{t}`, linked to Enrollment."),
            vec![t.to_string()],
        ));
    }
    let Some(program) = program else { return };
    if !program.registration {
        errs.push(ctx.err(
            item,
            "E1014",
            format!(
                "Provided Program: `{}`, is a Program without registration. An Enrollment cannot be created into Program without registration.",
                program.id
            ),
            vec![program.id.clone()],
        ));
        return;
    }
    if let Some(o) = ou
        && meta.org_units.contains_key(o)
        && !program.org_units.contains(o)
    {
        errs.push(ctx.err(
            item,
            "E1041",
            format!(
                "Enrollment OrganisationUnit: `{o}`, and Program: `{}`, dont match.",
                program.id
            ),
            vec![o.to_string(), program.id.clone()],
        ));
    }
    if let (Some(te_obj), Some(tet)) = (te_obj, &program.tracked_entity_type)
        && let Some(te_tet) = str_of(te_obj, "trackedEntityType")
        && te_tet != tet
    {
        errs.push(ctx.err(
            item,
            "E1022",
            format!(
                "TrackedEntity: `{}`, must have same TrackedEntityType as Program `{}`.",
                te.unwrap_or(""),
                program.id
            ),
            vec![te.unwrap_or("").to_string(), program.id.clone()],
        ));
    }
    if strategy == Strategy::Create
        && let Some(t) = te
    {
        let same = |e: &Value, e_uid: &str| {
            e_uid != uid
                && str_of(e, "trackedEntity") == Some(t)
                && str_of(e, "program") == Some(program.id.as_str())
        };
        let active = |e: &Value| str_of(e, "status").unwrap_or("ACTIVE") == "ACTIVE";
        let others: Vec<&Value> = ctx
            .store
            .iter(Kind::Enrollment)
            .filter(|e| same(e, str_of(e, "enrollment").unwrap_or("")))
            .chain(
                ctx.items
                    .iter()
                    .filter(|i| i.kind == Kind::Enrollment && i.index < item.index)
                    .filter(|i| same(&i.value, &i.uid))
                    .map(|i| &i.value),
            )
            .collect();
        if program.only_enroll_once && !others.is_empty() {
            errs.push(ctx.err(
                item,
                "E1016",
                format!(
                    "TrackedEntity: `{t}`, already has an enrollment in Program: `{}`, and this program only allows enrolling one time.",
                    program.id
                ),
                vec![t.to_string(), program.id.clone()],
            ));
        } else if others.iter().any(|e| active(e)) {
            errs.push(ctx.err(
                item,
                "E1015",
                format!(
                    "TrackedEntity: `{t}`, already has an active Enrollment in Program `{}`.",
                    program.id
                ),
                vec![t.to_string(), program.id.clone()],
            ));
        }
    }
}

fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn validate_event(ctx: &Ctx, item: &Item, strategy: Strategy, errs: &mut Vec<ErrorOut>) {
    let meta = &ctx.st.inner().meta;
    let v = &item.value;
    let uid = &item.uid;
    let ou = str_of(v, "orgUnit");
    let stage_id = str_of(v, "programStage");
    if ou.is_none() {
        errs.push(missing_property(ctx, item, "E1123", "event", "orgUnit"));
    }
    if stage_id.is_none() {
        errs.push(missing_property(
            ctx,
            item,
            "E1123",
            "event",
            "programStage",
        ));
    }
    let stage = stage_id.and_then(|s| meta.stages.get(s));
    if let Some(s) = stage_id
        && stage.is_none()
    {
        errs.push(ctx.err(
            item,
            "E1013",
            format!("Could not find ProgramStage: `{s}`, linked to Event."),
            vec![s.to_string()],
        ));
    }
    let explicit_program = str_of(v, "program");
    if let Some(p) = explicit_program
        && !meta.programs.contains_key(p)
    {
        errs.push(ctx.err(
            item,
            "E1010",
            format!("Could not find Program: `{p}`, linked to Event."),
            vec![p.to_string()],
        ));
        return;
    }
    if let Some(o) = ou
        && !meta.org_units.contains_key(o)
    {
        errs.push(ctx.err(
            item,
            "E1011",
            format!("Could not find OrganisationUnit: `{o}`, linked to Event."),
            vec![o.to_string()],
        ));
    }
    let Some(stage) = stage else { return };
    let Some(program) = meta.programs.get(&stage.program) else {
        return;
    };
    if let Some(p) = explicit_program
        && p != program.id
    {
        errs.push(ctx.err(
            item,
            "E1089",
            format!(
                "Event: `{uid}`, references a Program Stage `{}` that does not belong to Program `{p}`.",
                stage.id
            ),
            vec![uid.clone(), stage.id.clone(), p.to_string()],
        ));
    }
    if let Some(o) = ou
        && meta.org_units.contains_key(o)
        && !program.org_units.contains(o)
    {
        errs.push(ctx.err(
            item,
            "E1029",
            format!(
                "Event OrganisationUnit: `{o}`, and Program: `{}`, dont match.",
                program.id
            ),
            vec![o.to_string(), program.id.clone()],
        ));
    }
    let enrollment = str_of(v, "enrollment");
    if program.registration
        && enrollment
            .and_then(|e| ctx.resolve(Kind::Enrollment, e))
            .is_none()
    {
        errs.push(ctx.err(
            item,
            "E1033",
            format!("Event: `{uid}`, Enrollment value is NULL."),
            vec![uid.clone()],
        ));
    }
    let status = str_of(v, "status").unwrap_or("ACTIVE");
    if str_of(v, "occurredAt").is_none()
        && (!program.registration || matches!(status, "ACTIVE" | "COMPLETED"))
    {
        errs.push(ctx.err(
            item,
            "E1031",
            "Event occurredAt date is missing.".into(),
            vec![],
        ));
    }
    if strategy == Strategy::Create
        && program.registration
        && !stage.repeatable
        && let Some(en) = enrollment
    {
        let same = |e: &Value, e_uid: &str| {
            e_uid != uid
                && str_of(e, "enrollment") == Some(en)
                && str_of(e, "programStage") == Some(stage.id.as_str())
        };
        let taken =
            ctx.store
                .iter(Kind::Event)
                .any(|e| same(e, str_of(e, "event").unwrap_or("")))
                || ctx.items.iter().any(|i| {
                    i.kind == Kind::Event && i.index < item.index && same(&i.value, &i.uid)
                });
        if taken {
            errs.push(ctx.err(
                item,
                "E1039",
                format!(
                    "ProgramStage: `{}`, is not repeatable and an event already exists.",
                    stage.id
                ),
                vec![stage.id.clone()],
            ));
        }
    }
    // Data values.
    let mut present: HashSet<String> = HashSet::new();
    for dv in v
        .get("dataValues")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(de_id) = str_of(dv, "dataElement") else {
            continue;
        };
        let Some(de) = meta.data_elements.get(de_id) else {
            errs.push(ctx.err(
                item,
                "E1304",
                format!("DataElement `{de_id}` is not a valid data element"),
                vec![de_id.to_string()],
            ));
            continue;
        };
        if !stage.data_elements.contains_key(de_id) {
            errs.push(ctx.err(
                item,
                "E1305",
                format!(
                    "DataElement `{de_id}` is not part of `{}` program stage",
                    stage.id
                ),
                vec![de_id.to_string(), stage.id.clone()],
            ));
            continue;
        }
        let Some(value) = dv.get("value").and_then(value_text) else {
            continue;
        };
        if value.is_empty() {
            continue;
        }
        present.insert(de_id.to_string());
        if let Some((os_id, codes)) = &de.option_set {
            if !codes.contains(&value) {
                let (message, args) = if ctx.v.minor == 36 {
                    (
                        format!(
                            "Value {value} is not a valid option for DataElement {de_id} in option set {os_id}"
                        ),
                        vec![
                            value.clone(),
                            "DataElement".into(),
                            de_id.to_string(),
                            os_id.clone(),
                        ],
                    )
                } else {
                    (
                        format!(
                            "Value `{value}` is not a valid option code in option set `{os_id}`"
                        ),
                        vec![value.clone(), os_id.clone()],
                    )
                };
                errs.push(ctx.err(item, "E1125", message, args));
            }
            continue;
        }
        if let Some(bad) = values::check(&de.value_type, &value, false) {
            let (a0, a1) = if ctx.v.e1302_new_args() {
                (
                    de.value_type.clone(),
                    format!(
                        "Value type is {} but the value `{value}` is not.",
                        de.value_type
                    ),
                )
            } else {
                (de_id.to_string(), bad.key.to_string())
            };
            errs.push(ctx.err(
                item,
                "E1302",
                format!("DataElement `{a0}` is not valid: `{a1}`"),
                vec![a0, a1],
            ));
        }
    }
    if stage.validate_always || status == "COMPLETED" {
        for (de_id, compulsory) in &stage.data_elements {
            if *compulsory && !present.contains(de_id) {
                errs.push(ctx.err(
                    item,
                    "E1303",
                    format!("Mandatory DataElement `{de_id}` is not present"),
                    vec![de_id.clone()],
                ));
            }
        }
    }
}

fn validate_relationship(ctx: &Ctx, item: &Item, errs: &mut Vec<ErrorOut>) {
    for prop in ["relationshipType", "from", "to"] {
        if item.value.get(prop).is_none_or(Value::is_null) {
            errs.push(missing_property(ctx, item, "E1124", "relationship", prop));
        }
    }
}

/// UID format problems: E1048 (≤2.41) — the caller turns them into a 400 on 2.42.
pub fn bad_uids(items: &[Item]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if !values::is_uid(&item.uid) {
            out.push((i, item.uid.clone()));
        }
        let refs: &[&str] = match item.kind {
            Kind::Enrollment => &["trackedEntity"],
            Kind::Event => &["enrollment", "trackedEntity"],
            _ => &[],
        };
        for r in refs {
            if let Some(u) = str_of(&item.value, r)
                && !values::is_uid(u)
            {
                out.push((i, u.to_string()));
            }
        }
    }
    out
}

/// Validate and (unless VALIDATE mode or an ALL-mode error) commit.
pub fn import(st: &SimState, store: &mut Store, items: &[Item], params: Params) -> Outcome {
    let v = st.version();
    let mut payload: HashMap<Kind, HashMap<String, usize>> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        payload
            .entry(item.kind)
            .or_default()
            .insert(item.uid.clone(), i);
    }
    let ctx = Ctx {
        v,
        st,
        store,
        params,
        payload,
        items,
    };
    let bad: HashMap<usize, Vec<String>> =
        bad_uids(items)
            .into_iter()
            .fold(HashMap::new(), |mut m, (i, u)| {
                m.entry(i).or_default().push(u);
                m
            });
    let mut errors: Vec<ErrorOut> = Vec::new();
    let mut verdict: Vec<Option<Strategy>> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let mut errs = Vec::new();
        if let Some(uids) = bad.get(&i) {
            for u in uids {
                errs.push(ctx.err(
                    item,
                    "E1048",
                    format!(
                        "Object: `{}`, uid: `{u}`, has an invalid uid format.",
                        item.kind.label()
                    ),
                    vec![item.kind.label().to_string(), u.clone()],
                ));
            }
        }
        let strategy = if errs.is_empty() {
            match existence(&ctx, item) {
                Ok(s) => Some(s),
                Err(e) => {
                    errs.push(e);
                    None
                }
            }
        } else {
            None
        };
        if let Some(s) = strategy
            && s != Strategy::Delete
        {
            match item.kind {
                Kind::TrackedEntity => validate_tracked_entity(&ctx, item, &mut errs),
                Kind::Enrollment => validate_enrollment(&ctx, item, s, &mut errs),
                Kind::Event => validate_event(&ctx, item, s, &mut errs),
                Kind::Relationship => validate_relationship(&ctx, item, &mut errs),
            }
        }
        verdict.push(if errs.is_empty() { strategy } else { None });
        errors.extend(errs);
    }
    let total = items.len() as u64;

    if params.atomic == AtomicMode::All && !errors.is_empty() {
        let stats = StatsOut {
            ignored: total,
            ..StatsOut::default()
        }
        .finish();
        let report = ImportReportOut {
            status: "ERROR",
            validation_report: ValidationReportOut {
                error_reports: errors,
                warning_reports: v.warning_reports().then(Vec::new),
            },
            stats,
            bundle_report: None,
        };
        return Outcome {
            report: serde_json::to_vec(&report).unwrap_or_default(),
            error: true,
            stats,
        };
    }

    // OBJECT mode: children of rejected parents that do not exist yet cannot be persisted.
    let rejected_new = |kind: Kind, uid: &str, verdict: &[Option<Strategy>]| {
        ctx.payload
            .get(&kind)
            .and_then(|m| m.get(uid))
            .is_some_and(|i| verdict[*i].is_none())
            && !ctx.store.exists(kind, uid)
    };
    for i in 0..items.len() {
        if verdict[i].is_none() {
            continue;
        }
        let item = &items[i];
        let parent = match item.kind {
            Kind::Enrollment => {
                str_of(&item.value, "trackedEntity").map(|u| (Kind::TrackedEntity, u))
            }
            Kind::Event => str_of(&item.value, "enrollment").map(|u| (Kind::Enrollment, u)),
            _ => None,
        };
        if let Some((pk, pu)) = parent
            && rejected_new(pk, pu, &verdict)
        {
            let kind_name = |k: Kind| {
                let l = k.uid_field();
                l.to_string()
            };
            errors.push(ctx.err(
                item,
                "E5000",
                format!(
                    "\"{}\" `{}` cannot be persisted because \"{}\" `{pu}` referenced by it cannot be persisted.",
                    kind_name(item.kind),
                    item.uid,
                    kind_name(pk)
                ),
                vec![kind_name(item.kind), item.uid.clone(), kind_name(pk), pu.to_string()],
            ));
            verdict[i] = None;
        }
    }
    drop(ctx);

    let ignored = verdict.iter().filter(|x| x.is_none()).count() as u64;
    let mut per_kind: HashMap<Kind, (StatsOut, Vec<ObjectReportOut>)> = HashMap::new();
    for kind in Kind::ALL {
        per_kind.insert(kind, (StatsOut::default(), Vec::new()));
    }
    if !params.validate_only {
        for (item, strategy) in items.iter().zip(&verdict) {
            let Some(strategy) = strategy else { continue };
            let entry = per_kind.entry(item.kind).or_default();
            match strategy {
                Strategy::Delete => {
                    store.delete(item.kind, &item.uid);
                    entry.0.deleted += 1;
                }
                s => {
                    let mut value = item.value.clone();
                    if item.kind == Kind::Event
                        && let Some(stage) = str_of(&value, "programStage")
                            .and_then(|s| st.inner().meta.stages.get(s))
                    {
                        let program = stage.program.clone();
                        set_if_missing(&mut value, "program", &program);
                    }
                    store.put(item.kind, &item.uid, value);
                    if *s == Strategy::Create {
                        entry.0.created += 1;
                    } else {
                        entry.0.updated += 1;
                    }
                }
            }
            entry.1.push(ObjectReportOut {
                tracker_type: item.kind.tracker_type(),
                uid: item.uid.clone(),
                index: v.object_index().then_some(item.index),
                error_reports: Vec::new(),
            });
        }
    }
    let mut bundle_stats = StatsOut::default();
    for (s, _) in per_kind.values() {
        bundle_stats.created += s.created;
        bundle_stats.updated += s.updated;
        bundle_stats.deleted += s.deleted;
    }
    let bundle_stats = bundle_stats.finish();
    let stats = StatsOut {
        ignored,
        ..bundle_stats
    }
    .finish();
    let any_objects = per_kind.values().any(|(_, r)| !r.is_empty());
    let mut take = |k: Kind| {
        per_kind.remove(&k).map(|(s, r)| TypeReportOut {
            tracker_type: k.tracker_type(),
            stats: s.finish(),
            object_reports: r,
        })
    };
    let type_report_map = if params.validate_only {
        TypeReportMapOut {
            event: None,
            enrollment: None,
            relationship: None,
            tracked_entity: None,
        }
    } else {
        TypeReportMapOut {
            event: take(Kind::Event),
            enrollment: take(Kind::Enrollment),
            relationship: take(Kind::Relationship),
            tracked_entity: take(Kind::TrackedEntity),
        }
    };
    let report = ImportReportOut {
        status: "OK",
        validation_report: ValidationReportOut {
            error_reports: errors,
            warning_reports: v.warning_reports().then(Vec::new),
        },
        stats,
        bundle_report: Some(BundleReportOut {
            status: v.bundle_status_and_stats().then_some("OK"),
            type_report_map,
            stats: v.bundle_status_and_stats().then_some(bundle_stats),
            empty: v.bundle_empty().then_some(!any_objects),
        }),
    };
    Outcome {
        report: serde_json::to_vec(&report).unwrap_or_default(),
        error: false,
        stats,
    }
}

/// Run an import under the store lock and persist what it committed.
fn run_import(st: &SimState, items: &[Item], params: Params) -> Outcome {
    let mut store = lock(&st.inner().store);
    let outcome = import(st, &mut store, items, params);
    let committed = !outcome.error
        && !params.validate_only
        && (outcome.stats.created + outcome.stats.updated + outcome.stats.deleted) > 0;
    if committed {
        st.persist(&store);
    }
    outcome
}

// ---------------------------------------------------------------------------------------------
// Handlers

/// An async import job (in memory only, like DHIS2's notifier).
#[derive(Debug, Clone)]
pub struct Job {
    pub user: String,
    pub params: Params,
    pub started: String,
    pub finished: Option<(String, Outcome)>,
}

pub async fn post_tracker(
    State(st): State<SimState>,
    user: Option<Extension<AuthUser>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let v = st.version();
    let q = query_pairs(&uri);
    let params = match parse_params(v, &q) {
        Ok(p) => p,
        Err(resp) => return *resp,
    };
    if let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        && !ct.to_ascii_lowercase().contains("json")
    {
        return error_message(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content type '{ct}' not supported"),
        );
    }
    let parsed: Result<Value, String> =
        serde_json::from_slice(&body).map_err(|e| format!("JSON parse error: {e}"));
    let items = parsed.and_then(|b| flatten(&b));
    let items = match items {
        Ok(i) => i,
        Err(msg) => {
            let code = if v.malformed_json_is_400() {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            return error_message(code, msg);
        }
    };
    if v.uid_format_is_400()
        && let Some((_, uid)) = bad_uids(&items).into_iter().next()
    {
        return error_message(
            StatusCode::BAD_REQUEST,
            format!(
                "UID must be an alphanumeric string of 11 characters starting with a letter, but was: {uid}"
            ),
        );
    }
    if params.sync {
        let outcome = run_import(&st, &items, params);
        let code = if outcome.error {
            StatusCode::CONFLICT
        } else {
            StatusCode::OK
        };
        return json_bytes(code, outcome.report);
    }
    let username = user
        .map(|Extension(u)| u.username)
        .unwrap_or_else(|| "admin".into());
    let id = values::generate_uid();
    lock(&st.inner().jobs).insert(
        id.clone(),
        Job {
            user: username,
            params,
            started: now_string(),
            finished: None,
        },
    );
    let delay = Duration::from_millis(st.inner().job_delay_ms.load(Ordering::Relaxed));
    let job_state = st.clone();
    let job_id = id.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let outcome = run_import(&job_state, &items, params);
        if let Some(job) = lock(&job_state.inner().jobs).get_mut(&job_id) {
            job.finished = Some((now_string(), outcome));
        }
    });
    let location = format!("{}/api/tracker/jobs/{id}", base_url(&headers));
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct TrackerJob {
        response_type: &'static str,
        id: String,
        location: String,
    }
    let mut resp = web_message(
        StatusCode::OK,
        "OK",
        Some("Tracker job added".into()),
        Some(TrackerJob {
            response_type: "TrackerJob",
            id,
            location: location.clone(),
        }),
    );
    if let Ok(h) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, h);
    }
    resp
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Notification {
    uid: String,
    level: &'static str,
    category: &'static str,
    time: String,
    message: String,
    completed: bool,
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
}

fn notifications(v: Version, id: &str, job: &Job) -> Vec<Notification> {
    let user_id = values::uid_from_seed(&format!("user:{}", job.user));
    let note = |uid: String, level, time: &str, message: String, completed| Notification {
        id: uid.clone(),
        uid,
        level,
        category: "TRACKER_IMPORT_JOB",
        time: time.to_string(),
        message,
        completed,
        data_type: None,
        data: None,
    };
    let started = &job.started;
    if !v.new_job_messages() {
        let done = job.finished.is_some();
        let mut out = Vec::new();
        if let Some((t, _)) = &job.finished {
            for (level, msg) in [
                ("INFO", "finished in 0.20000 sec. Import:Done"),
                ("DEBUG", "commit completed in 0.05000 sec. Import:commit"),
                (
                    "DEBUG",
                    "programruleValidation completed in 0.01000 sec. Import:programruleValidation",
                ),
                (
                    "DEBUG",
                    "programrule completed in 0.01000 sec. Import:programrule",
                ),
                (
                    "DEBUG",
                    "validation completed in 0.05000 sec. Import:validation",
                ),
                ("DEBUG", "preheat completed in 0.05000 sec. Import:preheat"),
            ] {
                out.push(note(
                    id.to_string(),
                    level,
                    t,
                    format!("TRACKER_IMPORT_JOB ( {id} ) {msg}"),
                    true,
                ));
            }
        }
        out.push(note(
            id.to_string(),
            "INFO",
            started,
            format!(
                "TRACKER_IMPORT_JOB ( {id} ) started by {} ( {user_id} ) Import:Start",
                job.user
            ),
            done,
        ));
        return out;
    }
    let mut out = Vec::new();
    let seq_uid = |n: usize| values::uid_from_seed(&format!("{id}:{n}"));
    if let Some((t, o)) = &job.finished {
        let status = if o.error { "ERROR" } else { "OK" };
        out.push(note(
            seq_uid(9),
            "INFO",
            t,
            format!(
                "Import complete with status {status}, {} created, {} updated, {} deleted, {} ignored",
                o.stats.created, o.stats.updated, o.stats.deleted, o.stats.ignored
            ),
            true,
        ));
        for (n, msg) in [
            (8, "PostCommit"),
            (7, "Commit Transaction"),
            (6, "Running Rule Engine Validation"),
            (5, "Running Rule Engine"),
            (4, "Running Validation"),
            (3, "Running PreProcess"),
            (2, "Running PreHeat"),
        ] {
            out.push(note(seq_uid(n), "INFO", t, msg.to_string(), false));
        }
    }
    let p = job.params;
    let mut first = note(
        seq_uid(1),
        "INFO",
        started,
        "Tracker import started".into(),
        false,
    );
    first.data_type = Some("PARAMETERS");
    let mut data = Map::new();
    data.insert("userId".into(), json!(user_id));
    data.insert(
        "importMode".into(),
        json!(if p.validate_only {
            "VALIDATE"
        } else {
            "COMMIT"
        }),
    );
    data.insert(
        "importStrategy".into(),
        json!(match p.strategy {
            Strategy::Create => "CREATE",
            Strategy::Update => "UPDATE",
            Strategy::CreateAndUpdate => "CREATE_AND_UPDATE",
            Strategy::Delete => "DELETE",
        }),
    );
    data.insert(
        "atomicMode".into(),
        json!(if p.atomic == AtomicMode::All {
            "ALL"
        } else {
            "OBJECT"
        }),
    );
    data.insert("flushMode".into(), json!("AUTO"));
    data.insert("validationMode".into(), json!("FULL"));
    data.insert("reportMode".into(), json!("ERRORS"));
    first.data = Some(Value::Object(data));
    out.push(first);
    out
}

/// `GET /api/tracker/jobs/{id}`: notifications newest first; unknown job → `[]`.
pub async fn job_notifications(State(st): State<SimState>, Path(id): Path<String>) -> Response {
    let v = st.version();
    let jobs = lock(&st.inner().jobs);
    let list = jobs
        .get(&id)
        .map(|j| notifications(v, &id, j))
        .unwrap_or_default();
    json_response(StatusCode::OK, &list)
}

/// `GET /api/tracker/jobs/{id}/report`: the ImportReport once done, 404 before.
pub async fn job_report(State(st): State<SimState>, Path(id): Path<String>) -> Response {
    let v = st.version();
    let report = lock(&st.inner().jobs)
        .get(&id)
        .and_then(|j| j.finished.as_ref().map(|(_, o)| o.report.clone()));
    match report {
        Some(r) => json_bytes(StatusCode::OK, r),
        None => error_message(StatusCode::NOT_FOUND, v.job_report_missing(&id)),
    }
}
