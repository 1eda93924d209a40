//! What a DHIS2 answer means for the record that was sent — PURE: status, `Location` and body
//! bytes in, an [`Outcome`] out. No I/O, no clock, no panics on any input.
//!
//! The decision is taken from the HTTP status *and* the body (`shared/reference/dhis2.md`):
//!
//! | answer | outcome |
//! |---|---|
//! | 2xx tracker ImportReport, `status OK`, no `errorReports` | `Delivered` |
//! | 200 tracker ImportReport, `status OK` **with** `errorReports` (atomicMode=OBJECT, §2.2) | `Partial` if anything persisted, else `Rejected` |
//! | 409 tracker ImportReport, `status ERROR` (atomicMode=ALL: nothing committed) | `Rejected` |
//! | 409 tracker ImportReport, `status ERROR`, no `errorReports` (2.36–2.40 server exception, `message: "Exception:…"`) | `Retry` |
//! | 200 "Tracker job added" / "Initiated dataValueImport" (`response.id`) | `Job` |
//! | legacy `/api/events` `ImportSummaries` (200 all SUCCESS; 409 ERROR/WARNING) | per summary: `Delivered` / `Partial` / `Rejected` |
//! | `/api/dataValueSets` bare `ImportSummary` (2.36/2.37, always 200) or WebMessage (2.38+, 200/409) | `SUCCESS` → `Delivered`; `WARNING` → `Partial` (or `Rejected` when every value was refused); `ERROR` → `Rejected` |
//! | 400, 404 on `Get`, 415, 422 and other 4xx | `Rejected` (the HTTP status text is the code) |
//! | 401, 403, 407, any 3xx (302 to `/dhis-web-login/` or `login.action` = no credentials, §1.1), 404 on a POST endpoint | `Pause` |
//! | 408, 429, 5xx (WebMessage or nginx HTML), non-JSON 2xx | `Retry` |
//! | 413 (nginx `client_max_body_size`, §6) | `Retry { split: true }` |
//!
//! Errors are keyed on `errorCode` + `uid` only; `message` texts change between patch releases
//! (§2.2) and are carried for people, never matched.
//!
//! **"Already exists" (E1030 event, E1002 tracked entity, E1080 enrollment, E4015 relationship).**
//! The gateway always sends `importStrategy=CREATE_AND_UPDATE`, under which DHIS2 turns an
//! existing UID into an update, so these codes cannot occur for our own requests. If they do
//! (a strategy override to `CREATE`, or a proxy rewriting the query) they mean the object with our
//! deterministic UID is already on the server — which is exactly what a retry after a lost answer
//! wants — so they are counted as delivered: the UID goes to [`ImportSummary::uids`] and the
//! object stays counted in `ignored`. All other codes (including E1082/E1113/E1114 "deleted",
//! which can never be fixed by resending) are rejections.
//!
//! **Errors without a code.** Legacy event and 2.36 data-value conflicts carry no `errorCode`;
//! their [`ObjectError::code`] is the import summary status (`ERROR`, `WARNING`). Errors derived
//! from a bare HTTP status (400, 422, …) use the status text (`Bad Request`).
//!
//! **atomicMode=ALL.** A 409 lists only the offending objects, but *nothing* in the request was
//! committed; the caller must resend the other objects (they were valid).

use crate::record::Endpoint;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// What to do with a request after DHIS2 (or whatever stood in front of it) answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "snake_case")]
pub enum Outcome {
    /// Every object in the request was imported (created/updated/ignored-as-unchanged).
    Delivered(ImportSummary),
    /// Some objects imported, some refused (atomicMode=OBJECT 200 with errorReports; events 409
    /// with mixed summaries; dataValueSets WARNING with conflicts).
    Partial {
        summary: ImportSummary,
        rejected: Vec<ObjectError>,
    },
    /// Nothing imported; a person must fix the data/mapping (409 ERROR report, 400 bad payload,
    /// E1xxx codes). Never retried blindly.
    Rejected(Vec<ObjectError>),
    /// Try again later with backoff: 5xx, 502/503/504 (HTML bodies from nginx), 429, timeouts;
    /// `split` = true for 413 (send a smaller batch).
    Retry { why: String, split: bool },
    /// Stop all sync and show the reason: 401, 403, 302 to the login page, TLS failure (the
    /// caller maps transport errors).
    Pause { why: String },
    /// Async import accepted: poll this job (tracker async "Tracker job added"; dataValueSets
    /// async). From [`crate::sync::client::Dhis2Client::poll_job`] it means "still running".
    Job { id: String },
}

impl Outcome {
    /// A short stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Delivered(_) => "delivered",
            Outcome::Partial { .. } => "partial",
            Outcome::Rejected(_) => "rejected",
            Outcome::Retry { .. } => "retry",
            Outcome::Pause { .. } => "pause",
            Outcome::Job { .. } => "job",
        }
    }
}

/// Counts and persisted UIDs from an import answer. For data values `uids` stays empty (they
/// have no UID); `created` counts `imported` there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportSummary {
    pub created: u64,
    pub updated: u64,
    pub deleted: u64,
    pub ignored: u64,
    /// Objects reported as persisted (tracker `objectReports`, legacy event `reference`s), plus
    /// objects reported as already existing (see the module docs).
    pub uids: Vec<String>,
}

/// One object DHIS2 refused, or the single reason a whole request was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectError {
    /// `E1030`, `E7619`, … or the summary status / HTTP status text when DHIS2 gave no code.
    pub code: String,
    pub uid: Option<String>,
    /// `EVENT`, `ENROLLMENT`, `TRACKED_ENTITY`, `RELATIONSHIP`, `DATA_VALUE`.
    pub object_type: Option<String>,
    /// DHIS2's text, for people only.
    pub message: String,
}

impl fmt::Display for ObjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code)?;
        if let Some(t) = &self.object_type {
            write!(f, " {t}")?;
        }
        if let Some(u) = &self.uid {
            write!(f, " {u}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// State of an async job from its notification list (`/api/tracker/jobs/{id}`,
/// `/api/system/tasks/DATAVALUE_IMPORT/{id}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    Running,
    Completed,
}

/// Codes meaning "an object with this UID already exists" (only possible under `CREATE`).
const ALREADY_EXISTS: [&str; 4] = ["E1030", "E1002", "E1080", "E4015"];

/// Longest DHIS2 text copied into an outcome.
const MAX_TEXT: usize = 500;

/// Classify one DHIS2 answer. `location` is the response `Location` header (302 and async jobs).
pub fn classify(endpoint: Endpoint, status: u16, location: Option<&str>, body: &[u8]) -> Outcome {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let json = json.as_ref();
    match status {
        200..=299 => classify_success(endpoint, status, location, json, body),
        300..=399 => classify_redirect(status, location),
        401 => Outcome::Pause {
            why: format!(
                "HTTP 401 Unauthorized{}: check the DHIS2 username/password or API token",
                detail(json, body)
            ),
        },
        403 => Outcome::Pause {
            why: format!(
                "HTTP 403 Forbidden{}: the DHIS2 user lacks an authority or sharing for this call",
                detail(json, body)
            ),
        },
        407 => Outcome::Pause {
            why: "HTTP 407 Proxy Authentication Required: the network's proxy wants credentials"
                .into(),
        },
        404 if endpoint != Endpoint::Get => Outcome::Pause {
            why: format!(
                "HTTP 404 Not Found for the {} endpoint{}: wrong base URL, or this DHIS2 version \
                 lacks it (legacy /api/events is gone in 2.42)",
                endpoint_name(endpoint),
                detail(json, body)
            ),
        },
        408 | 429 => Outcome::Retry {
            why: format!("HTTP {status} {}{}", reason(status), detail(json, body)),
            split: false,
        },
        413 => Outcome::Retry {
            why: format!(
                "HTTP 413 Payload Too Large{}: the server or its proxy caps request bodies; send \
                 fewer objects per request",
                detail(json, body)
            ),
            split: true,
        },
        409 => match json {
            Some(v) => classify_report(status, v),
            None => http_rejection(status, json, body),
        },
        400..=499 => match json {
            // A 4xx may still carry an import report (e.g. a 2.36/2.37 proxy path); use it.
            Some(v) if find_report(v).is_some() => classify_report(status, v),
            _ => http_rejection(status, json, body),
        },
        500..=599 => Outcome::Retry {
            why: format!("HTTP {status} {}{}", reason(status), detail(json, body)),
            split: false,
        },
        _ => Outcome::Retry {
            why: format!("unexpected HTTP status {status}{}", detail(json, body)),
            split: false,
        },
    }
}

/// Classify the answer of a job's report: `/api/tracker/jobs/{id}/report` (same body as a sync
/// tracker import) or `/api/system/taskSummaries/DATAVALUE_IMPORT/{id}` (a bare ImportSummary).
/// 404 (all versions, §2.2 table) or an empty body means "not finished yet" → `Retry`.
pub fn classify_job_report(endpoint: Endpoint, status: u16, body: &[u8]) -> Outcome {
    let not_ready = || Outcome::Retry {
        why: format!("job report not available yet (HTTP {status}); poll again"),
        split: false,
    };
    if status == 404 {
        return not_ready();
    }
    if (200..=299).contains(&status) {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Null) => return not_ready(),
            Ok(Value::Object(m)) if m.is_empty() => return not_ready(),
            Err(_) if body.iter().all(u8::is_ascii_whitespace) => return not_ready(),
            _ => {}
        }
    }
    match classify(endpoint, status, None, body) {
        // A report is never a new job; a job-shaped answer here is not a report.
        Outcome::Job { .. } => not_ready(),
        other => other,
    }
}

/// Whether an async job has finished, from its notification list (newest first). Done when any
/// entry has `"completed": true` (§2.2: messages differ per version; key on `completed`). An
/// empty list (unknown job, e.g. after a server restart) or garbage reads as `Running`; the
/// caller bounds its polling.
pub fn classify_job_notifications(body: &[u8]) -> JobState {
    let completed = |v: &Value| v.get("completed").and_then(Value::as_bool) == Some(true);
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) if items.iter().any(completed) => JobState::Completed,
        Ok(v @ Value::Object(_)) if completed(&v) => JobState::Completed,
        _ => JobState::Running,
    }
}

fn endpoint_name(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Tracker => "/api/tracker",
        Endpoint::Events => "/api/events",
        Endpoint::DataValueSets => "/api/dataValueSets",
        Endpoint::Get => "GET",
    }
}

fn classify_success(
    endpoint: Endpoint,
    status: u16,
    location: Option<&str>,
    json: Option<&Value>,
    body: &[u8],
) -> Outcome {
    if endpoint == Endpoint::Get {
        // A lookup: the caller reads the body; there is nothing to count.
        return Outcome::Delivered(ImportSummary::default());
    }
    let Some(v) = json else {
        return Outcome::Retry {
            why: format!(
                "HTTP {status} with a non-JSON body ({} bytes): not a DHIS2 API answer (captive \
                 portal, proxy or login page?)",
                body.len()
            ),
            split: false,
        };
    };
    if let Some(id) = job_id(v, location) {
        return Outcome::Job { id };
    }
    classify_report(status, v)
}

fn classify_redirect(status: u16, location: Option<&str>) -> Outcome {
    let why = match location {
        Some(loc) if loc.to_ascii_lowercase().contains("login") => format!(
            "HTTP {status} redirect to the DHIS2 login page ({}): the request carried no \
             credentials DHIS2 accepted",
            clip(loc)
        ),
        Some(loc) => format!(
            "HTTP {status} redirect to {}: the DHIS2 base URL is probably wrong (http vs https, \
             or a missing context path)",
            clip(loc)
        ),
        None => format!("HTTP {status} redirect without a Location header"),
    };
    Outcome::Pause { why }
}

/// An async-job acknowledgement: `response.id` plus a job marker, and no import report.
fn job_id(v: &Value, location: Option<&str>) -> Option<String> {
    if find_report(v).is_some() {
        return None;
    }
    let resp = v.get("response");
    let from_body = resp.and_then(|r| {
        let id = r.get("id")?.as_str()?;
        let marked = r.get("responseType").and_then(Value::as_str) == Some("TrackerJob")
            || r.get("location").is_some()
            || r.get("jobType").is_some()
            || r.get("relativeNotifierEndpoint").is_some();
        marked.then(|| id.to_string())
    });
    let from_location = || {
        let loc = location?;
        let idx = loc.find("/jobs/")?;
        let rest = &loc[idx + "/jobs/".len()..];
        let id = rest.split(['/', '?', '#']).next()?;
        Some(id.to_string())
    };
    from_body.or_else(from_location).filter(|id| {
        !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// The kinds of import report DHIS2 sends, found at the top level or inside a WebMessage's
/// `response`.
enum Report<'a> {
    /// `/api/tracker` ImportReport (`validationReport`, `stats`, `bundleReport`).
    Tracker(&'a Value),
    /// Legacy `ImportSummaries` (events).
    Summaries(&'a Value),
    /// One `ImportSummary` (dataValueSets, a single legacy event, task summaries).
    Summary(&'a Value),
}

fn find_report(v: &Value) -> Option<Report<'_>> {
    fn shape(x: &Value) -> Option<Report<'_>> {
        let obj = x.as_object()?;
        let rt = obj.get("responseType").and_then(Value::as_str);
        if obj.contains_key("validationReport") || obj.contains_key("bundleReport") {
            Some(Report::Tracker(x))
        } else if obj.contains_key("importSummaries") || rt == Some("ImportSummaries") {
            Some(Report::Summaries(x))
        } else if obj.contains_key("importCount") || rt == Some("ImportSummary") {
            Some(Report::Summary(x))
        } else {
            None
        }
    }
    shape(v).or_else(|| v.get("response").and_then(shape))
}

fn classify_report(status: u16, v: &Value) -> Outcome {
    match find_report(v) {
        Some(Report::Tracker(r)) => tracker_report(r),
        Some(Report::Summaries(r)) => import_summaries(r, v),
        Some(Report::Summary(r)) => import_summary(r),
        None if (200..=299).contains(&status) => Outcome::Retry {
            why: format!(
                "HTTP {status} without an import report{}: unrecognised answer",
                detail(Some(v), &[])
            ),
            split: false,
        },
        None => http_rejection(status, Some(v), &[]),
    }
}

fn tracker_report(r: &Value) -> Outcome {
    let mut summary = counts(r.get("stats"), "created");
    let mut errors: Vec<ObjectError> = items(r.pointer("/validationReport/errorReports"))
        .map(|e| tracker_error(e, None))
        .collect();
    let mut persisted = Vec::new();
    if let Some(map) = r
        .pointer("/bundleReport/typeReportMap")
        .and_then(Value::as_object)
    {
        for type_report in map.values() {
            for obj in items(type_report.get("objectReports")) {
                let uid = obj.get("uid").and_then(Value::as_str);
                let own: Vec<ObjectError> = items(obj.get("errorReports"))
                    .map(|e| tracker_error(e, Some(obj)))
                    .collect();
                if own.is_empty() {
                    if let Some(u) = uid {
                        persisted.push(u.to_string());
                    }
                } else {
                    errors.extend(own);
                }
            }
        }
    }
    // "Already exists" = delivered (module docs).
    let (exists, mut errors): (Vec<_>, Vec<_>) = errors
        .drain(..)
        .partition(|e| ALREADY_EXISTS.contains(&e.code.as_str()));
    for e in exists {
        if let Some(u) = e.uid {
            persisted.push(u);
        }
    }
    persisted.retain(|u| !errors.iter().any(|e| e.uid.as_deref() == Some(u)));
    dedup(&mut persisted);
    summary.uids = persisted;
    errors.dedup();

    let failed = r.get("status").and_then(Value::as_str) == Some("ERROR");
    if errors.is_empty() {
        if failed && summary.uids.is_empty() {
            // 2.36–2.40: an unexpected server exception is reported as status ERROR with a
            // `message` and no object errors (§0.1) — a server fault, not bad data.
            return Outcome::Retry {
                why: format!(
                    "DHIS2 import failed without object errors{}",
                    text_of(r, "message")
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ),
                split: false,
            };
        }
        return Outcome::Delivered(summary);
    }
    let anything_persisted =
        summary.created + summary.updated + summary.deleted > 0 || !summary.uids.is_empty();
    if failed || !anything_persisted {
        // atomicMode=ALL with an error: nothing was committed.
        Outcome::Rejected(errors)
    } else {
        Outcome::Partial {
            summary,
            rejected: errors,
        }
    }
}

fn tracker_error(e: &Value, owner: Option<&Value>) -> ObjectError {
    let from_owner = |k: &str| owner.and_then(|o| text_of(o, k));
    ObjectError {
        code: text_of(e, "errorCode").unwrap_or_else(|| "ERROR".into()),
        uid: text_of(e, "uid").or_else(|| from_owner("uid")),
        object_type: text_of(e, "trackerType").or_else(|| from_owner("trackerType")),
        message: text_of(e, "message").unwrap_or_default(),
    }
}

/// Legacy `/api/events` `ImportSummaries`; `outer` is the WebMessage (for its `message`).
fn import_summaries(r: &Value, outer: &Value) -> Outcome {
    let mut summary = ImportSummary::default();
    let mut errors = Vec::new();
    let list: Vec<&Value> = items(r.get("importSummaries")).collect();
    for s in &list {
        let st = text_of(s, "status").unwrap_or_else(|| "ERROR".into());
        let reference = text_of(s, "reference");
        add_counts(&mut summary, s.get("importCount"));
        let conflicts: Vec<ObjectError> = items(s.get("conflicts"))
            .map(|c| conflict_error(c, &st, reference.as_deref(), "EVENT"))
            .collect();
        match st.as_str() {
            "SUCCESS" | "OK" | "WARNING" => {
                if let Some(u) = &reference {
                    summary.uids.push(u.clone());
                }
                errors.extend(conflicts);
            }
            _ if conflicts.is_empty() => errors.push(ObjectError {
                code: st,
                uid: reference,
                object_type: Some("EVENT".into()),
                message: text_of(s, "description").unwrap_or_default(),
            }),
            _ => errors.extend(conflicts),
        }
    }
    if list.is_empty() {
        // No per-object summaries: fall back to the totals and overall status.
        summary.created = u(r, "imported");
        summary.updated = u(r, "updated");
        summary.deleted = u(r, "deleted");
        summary.ignored = u(r, "ignored");
        if text_of(r, "status").as_deref() == Some("ERROR") {
            errors.push(ObjectError {
                code: "ERROR".into(),
                uid: None,
                object_type: Some("EVENT".into()),
                message: text_of(r, "description")
                    .or_else(|| text_of(outer, "message"))
                    .unwrap_or_default(),
            });
        }
    }
    dedup(&mut summary.uids);
    settle(summary, errors, None)
}

/// One `ImportSummary`: dataValueSets (bare 2.36/2.37, wrapped 2.38+), task summaries, a single
/// legacy event.
fn import_summary(r: &Value) -> Outcome {
    let st = text_of(r, "status").unwrap_or_else(|| "ERROR".into());
    let mut summary = counts(r.get("importCount"), "imported");
    let reference = text_of(r, "reference");
    let is_event = reference.is_some();
    let conflicts: Vec<&Value> = items(r.get("conflicts")).collect();
    let mut errors: Vec<ObjectError> = conflicts
        .iter()
        .map(|c| {
            if is_event {
                conflict_error(c, &st, reference.as_deref(), "EVENT")
            } else {
                conflict_error(c, &st, None, "DATA_VALUE")
            }
        })
        .collect();
    match st.as_str() {
        "SUCCESS" | "OK" | "WARNING" => {
            if let Some(u) = reference {
                summary.uids.push(u);
            }
        }
        _ => {
            if errors.is_empty() {
                errors.push(ObjectError {
                    code: st.clone(),
                    uid: reference,
                    object_type: Some(if is_event { "EVENT" } else { "DATA_VALUE" }.into()),
                    message: text_of(r, "description").unwrap_or_default(),
                });
            }
            return Outcome::Rejected(errors);
        }
    }
    // How many values were refused, when DHIS2 says (`rejectedIndexes`, conflict `indexes`).
    let mut refused: Vec<u64> = items(r.get("rejectedIndexes"))
        .filter_map(Value::as_u64)
        .collect();
    if refused.is_empty() {
        refused = conflicts
            .iter()
            .flat_map(|c| items(c.get("indexes")))
            .filter_map(Value::as_u64)
            .collect();
    }
    refused.sort_unstable();
    refused.dedup();
    let refused = (!refused.is_empty()).then_some(refused.len() as u64);
    settle(
        summary,
        errors,
        refused
            .or(Some(conflicts.len() as u64))
            .filter(|_| !is_event),
    )
}

/// Delivered / Partial / Rejected from what was persisted and what was refused. `refused_values`
/// (data values only) lets a WARNING whose other values were ignored-as-unchanged count as
/// partial.
fn settle(
    summary: ImportSummary,
    errors: Vec<ObjectError>,
    refused_values: Option<u64>,
) -> Outcome {
    if errors.is_empty() {
        return Outcome::Delivered(summary);
    }
    let stored = summary.created + summary.updated + summary.deleted;
    let total = stored + summary.ignored;
    let some_ok =
        stored > 0 || !summary.uids.is_empty() || refused_values.is_some_and(|n| n < total);
    if some_ok {
        Outcome::Partial {
            summary,
            rejected: errors,
        }
    } else {
        Outcome::Rejected(errors)
    }
}

fn conflict_error(
    c: &Value,
    status: &str,
    owner_uid: Option<&str>,
    object_type: &str,
) -> ObjectError {
    let object = text_of(c, "object");
    let value = text_of(c, "value").unwrap_or_default();
    let uid = match owner_uid {
        Some(u) => Some(u.to_string()),
        None => c
            .pointer("/objects/dataElement")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| object.clone())
            .filter(|s| looks_like_uid(s)),
    };
    let indexes: Vec<String> = items(c.get("indexes"))
        .filter_map(Value::as_u64)
        .map(|i| i.to_string())
        .collect();
    let mut message = match (&object, owner_uid) {
        // For events the conflict's `object` names the offending part (e.g. CategoryOptionCombo).
        (Some(o), Some(_)) => format!("{o}: {value}"),
        _ => value,
    };
    if !indexes.is_empty() {
        message.push_str(&format!(" (values at indexes {})", indexes.join(", ")));
    }
    ObjectError {
        code: text_of(c, "errorCode").unwrap_or_else(|| status.to_string()),
        uid,
        object_type: Some(object_type.into()),
        message: clip(&message),
    }
}

fn http_rejection(status: u16, json: Option<&Value>, body: &[u8]) -> Outcome {
    let mut errors: Vec<ObjectError> = json
        .map(|v| {
            items(v.pointer("/response/errorReports"))
                .chain(items(v.get("errorReports")))
                .map(|e| ObjectError {
                    code: text_of(e, "errorCode").unwrap_or_else(|| reason(status).into()),
                    uid: text_of(e, "mainId").or_else(|| text_of(e, "uid")),
                    object_type: text_of(e, "mainKlass").or_else(|| text_of(e, "trackerType")),
                    message: text_of(e, "message").unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    if errors.is_empty() {
        let d = detail(json, body);
        errors.push(ObjectError {
            code: reason(status).into(),
            uid: None,
            object_type: None,
            message: if d.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}{d}")
            },
        });
    }
    Outcome::Rejected(errors)
}

/// `: <WebMessage message>` or `: non-JSON body (N bytes)`; empty for an empty body.
fn detail(json: Option<&Value>, body: &[u8]) -> String {
    match json {
        Some(v) => match text_of(v, "message") {
            Some(m) => match text_of(v, "devMessage") {
                Some(dev) => format!(": {m} ({})", clip(&dev)),
                None => format!(": {m}"),
            },
            None => String::new(),
        },
        None if body.is_empty() => String::new(),
        None => format!(" (non-JSON body, {} bytes)", body.len()),
    }
}

fn items(v: Option<&Value>) -> impl Iterator<Item = &Value> {
    v.and_then(Value::as_array).into_iter().flatten()
}

fn text_of(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(clip(s)),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn u(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// Counts from a `stats` (tracker: `created`) or `importCount` (summaries: `imported`) object.
fn counts(v: Option<&Value>, created_key: &str) -> ImportSummary {
    let mut s = ImportSummary::default();
    if let Some(v) = v {
        s.created = u(v, created_key);
        s.updated = u(v, "updated");
        s.deleted = u(v, "deleted");
        s.ignored = u(v, "ignored");
    }
    s
}

fn add_counts(s: &mut ImportSummary, v: Option<&Value>) {
    let c = counts(v, "imported");
    s.created = s.created.saturating_add(c.created);
    s.updated = s.updated.saturating_add(c.updated);
    s.deleted = s.deleted.saturating_add(c.deleted);
    s.ignored = s.ignored.saturating_add(c.ignored);
}

fn dedup(v: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    v.retain(|x| seen.insert(x.clone()));
}

fn looks_like_uid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 11 && b[0].is_ascii_alphabetic() && b.iter().all(u8::is_ascii_alphanumeric)
}

fn clip(s: &str) -> String {
    if s.len() <= MAX_TEXT {
        return s.to_string();
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The standard reason phrase for the statuses DHIS2 and its proxies send.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "HTTP error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::PathBuf;

    fn fixture(name: &str) -> Vec<u8> {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/dhis2/responses")
            .join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn fixture_json(name: &str) -> Value {
        serde_json::from_slice(&fixture(name)).expect("fixture is JSON")
    }

    fn summary(
        created: u64,
        updated: u64,
        deleted: u64,
        ignored: u64,
        uids: &[&str],
    ) -> ImportSummary {
        ImportSummary {
            created,
            updated,
            deleted,
            ignored,
            uids: uids.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn codes_and_uids(errors: &[ObjectError]) -> Vec<(String, Option<String>)> {
        errors
            .iter()
            .map(|e| (e.code.clone(), e.uid.clone()))
            .collect()
    }

    fn is_retry(o: &Outcome, want_split: bool) -> bool {
        matches!(o, Outcome::Retry { split, .. } if *split == want_split)
    }

    // ---- every *.response.json sample ---------------------------------------------------------

    #[test]
    fn tracker_ok_report_2_36_to_2_39_is_delivered_with_event_uid() {
        let o = classify(
            Endpoint::Tracker,
            200,
            None,
            &fixture("tracker-import-report-ok-event-2.36to2.39.response.json"),
        );
        assert_eq!(o, Outcome::Delivered(summary(1, 0, 0, 0, &["Y8FRzr4y2jG"])));
    }

    #[test]
    fn tracker_ok_report_2_42_without_bundle_status_or_index_is_delivered() {
        let o = classify(
            Endpoint::Tracker,
            200,
            None,
            &fixture("tracker-import-report-ok-2.42-docs.response.json"),
        );
        let Outcome::Delivered(s) = o else {
            panic!("{o:?}")
        };
        assert_eq!((s.created, s.updated, s.deleted, s.ignored), (3, 0, 0, 0));
        let mut uids = s.uids.clone();
        uids.sort();
        assert_eq!(uids, ["aVcGf9iO8Xp", "ffcvJvWjiNZ", "gTZBPT3Jq39"]);
    }

    #[test]
    fn tracker_409_e1029_atomic_all_is_rejected_on_code_and_uid() {
        let o = classify(
            Endpoint::Tracker,
            409,
            None,
            &fixture("tracker-import-report-error-E1029-atomic-all.response.json"),
        );
        let Outcome::Rejected(errs) = o else {
            panic!("{o:?}")
        };
        assert_eq!(
            codes_and_uids(&errs),
            [("E1029".into(), Some("STPIK5YTi4f".into()))]
        );
        assert_eq!(errs[0].object_type.as_deref(), Some("EVENT"));
    }

    #[test]
    fn tracker_409_e1033_is_rejected() {
        let o = classify(
            Endpoint::Tracker,
            409,
            None,
            &fixture("tracker-import-report-error-E1033.response.json"),
        );
        let Outcome::Rejected(errs) = o else {
            panic!("{o:?}")
        };
        assert_eq!(
            codes_and_uids(&errs),
            [("E1033".into(), Some("PXi7gfVIk1p".into()))]
        );
    }

    #[test]
    fn tracker_409_e1041_enrollment_is_rejected() {
        let o = classify(
            Endpoint::Tracker,
            409,
            None,
            &fixture("tracker-import-report-error-E1041-enrollment.response.json"),
        );
        let Outcome::Rejected(errs) = o else {
            panic!("{o:?}")
        };
        assert_eq!(
            codes_and_uids(&errs),
            [("E1041".into(), Some("XJPm2lZzxtq".into()))]
        );
        assert_eq!(errs[0].object_type.as_deref(), Some("ENROLLMENT"));
    }

    #[test]
    fn tracker_validation_fragment_e1005_wrapped_as_409_is_rejected() {
        let mut body = fixture_json("tracker-validation-report-E1005.fragment.json");
        body["status"] = json!("ERROR");
        body["stats"] = json!({"created":0,"updated":0,"deleted":0,"ignored":1,"total":1});
        let o = classify(Endpoint::Tracker, 409, None, body.to_string().as_bytes());
        let Outcome::Rejected(errs) = o else {
            panic!("{o:?}")
        };
        assert_eq!(
            codes_and_uids(&errs),
            [("E1005".into(), Some("Kj6vYde4LHh".into()))]
        );
    }

    #[test]
    fn tracker_async_job_added_is_a_job() {
        for (file, id) in [
            ("tracker-async-job-added.response.json", "LkXBUdIgbe3"),
            (
                "tracker-async-job-added-2.42-docs.response.json",
                "cHh2OCTJvRw",
            ),
        ] {
            let o = classify(Endpoint::Tracker, 200, None, &fixture(file));
            assert_eq!(o, Outcome::Job { id: id.into() }, "{file}");
        }
    }

    #[test]
    fn datavaluesets_async_started_is_a_job() {
        let o = classify(
            Endpoint::DataValueSets,
            200,
            None,
            &fixture("datavaluesets-async-started.response.json"),
        );
        assert_eq!(
            o,
            Outcome::Job {
                id: "YR1UxOUXmzT".into()
            }
        );
    }

    #[test]
    fn datavaluesets_2_38_success_webmessage_is_delivered() {
        let o = classify(
            Endpoint::DataValueSets,
            200,
            None,
            &fixture("datavaluesets-import-summary-2.38plus.response.json"),
        );
        assert_eq!(o, Outcome::Delivered(summary(0, 10, 0, 0, &[])));
    }

    #[test]
    fn datavalue_task_summary_report_is_delivered() {
        let body = fixture("datavalue-import-tasksummary.response.json");
        let o = classify_job_report(Endpoint::DataValueSets, 200, &body);
        assert_eq!(o, Outcome::Delivered(summary(0, 431, 0, 0, &[])));
    }

    #[test]
    fn datavaluesets_2_38_warning_409_with_e7619_fragment_is_partial() {
        let conflict = fixture_json("datavaluesets-import-conflict-E7619.fragment.json");
        let body = json!({
            "httpStatus": "Conflict", "httpStatusCode": 409, "status": "WARNING",
            "message": "One more conflicts encountered, please check import summary.",
            "response": {
                "responseType": "ImportSummary", "status": "WARNING",
                "importCount": {"imported": 6, "updated": 0, "ignored": 2, "deleted": 0},
                "conflicts": [conflict]
            }
        });
        let o = classify(
            Endpoint::DataValueSets,
            409,
            None,
            body.to_string().as_bytes(),
        );
        let Outcome::Partial {
            summary: s,
            rejected,
        } = o
        else {
            panic!("{o:?}")
        };
        assert_eq!((s.created, s.ignored), (6, 2));
        assert_eq!(
            codes_and_uids(&rejected),
            [("E7619".into(), Some("UOlfIjgN8X6".into()))]
        );
        assert_eq!(rejected[0].object_type.as_deref(), Some("DATA_VALUE"));
    }

    #[test]
    fn datavaluesets_2_37_bare_warning_200_all_values_refused_is_rejected() {
        let conflict = fixture_json("datavaluesets-import-conflict-E7619.fragment.json");
        let body = json!({
            "responseType": "ImportSummary", "status": "WARNING",
            "importCount": {"imported": 0, "updated": 0, "ignored": 2, "deleted": 0},
            "conflicts": [conflict]
        });
        let o = classify(
            Endpoint::DataValueSets,
            200,
            None,
            body.to_string().as_bytes(),
        );
        let Outcome::Rejected(errs) = o else {
            panic!("{o:?}")
        };
        assert_eq!(errs[0].code, "E7619");
    }

    #[test]
    fn datavaluesets_2_36_warning_without_codes_or_indexes_uses_summary_status_as_code() {
        let body = json!({
            "responseType": "ImportSummary", "status": "WARNING",
            "importCount": {"imported": 3, "updated": 0, "ignored": 1, "deleted": 0},
            "conflicts": [{"object": "f7n9E0hX8qk", "value": "Data value is not numeric"}]
        });
        let o = classify(
            Endpoint::DataValueSets,
            200,
            None,
            body.to_string().as_bytes(),
        );
        let Outcome::Partial { rejected, .. } = o else {
            panic!("{o:?}")
        };
        assert_eq!(
            codes_and_uids(&rejected),
            [("WARNING".into(), Some("f7n9E0hX8qk".into()))]
        );
    }

    #[test]
    fn datavaluesets_error_409_aborted_import_is_rejected() {
        let body = json!({
            "httpStatus": "Conflict", "httpStatusCode": 409, "status": "ERROR",
            "message": "An error occurred, please check import summary.",
            "response": {"responseType": "ImportSummary", "status": "ERROR",
                "description": "Import process was aborted",
                "importCount": {"imported": 0, "updated": 0, "ignored": 3, "deleted": 0},
                "conflicts": [{"object": "pBOMPrpg1QX", "value": "Data set not found or not accessible",
                               "errorCode": "E7600"}]}
        });
        let o = classify(
            Endpoint::DataValueSets,
            409,
            None,
            body.to_string().as_bytes(),
        );
        let Outcome::Rejected(errs) = o else {
            panic!("{o:?}")
        };
        assert_eq!(errs[0].code, "E7600");
    }

    #[test]
    fn legacy_events_409_all_error_summaries_are_rejected_per_reference() {
        let o = classify(
            Endpoint::Events,
            409,
            None,
            &fixture("legacy-events-import-summaries-409-error.response.json"),
        );
        let Outcome::Rejected(errs) = o else {
            panic!("{o:?}")
        };
        let uids: Vec<_> = errs
            .iter()
            .map(|e| e.uid.clone().unwrap_or_default())
            .collect();
        assert_eq!(uids, ["event1Id", "event2Id", "event3Id"]);
        assert!(
            errs.iter()
                .all(|e| e.code == "ERROR" && e.object_type.as_deref() == Some("EVENT"))
        );
        assert!(errs[0].message.starts_with("CategoryOptionCombo: "));
    }

    #[test]
    fn legacy_events_409_warning_2_24_issue77_is_rejected() {
        let o = classify(
            Endpoint::Events,
            409,
            None,
            &fixture("legacy-events-409-warning-2.24-issue77.response.json"),
        );
        let Outcome::Rejected(errs) = o else {
            panic!("{o:?}")
        };
        assert_eq!(errs.len(), 1);
        assert_eq!(
            (errs[0].code.as_str(), errs[0].uid.as_deref()),
            ("ERROR", None)
        );
    }

    #[test]
    fn legacy_events_mixed_summaries_409_is_partial() {
        let body = json!({
            "httpStatus": "Conflict", "httpStatusCode": 409, "status": "ERROR",
            "response": {"responseType": "ImportSummaries", "status": "ERROR",
                "imported": 1, "updated": 0, "deleted": 0, "ignored": 1, "total": 2,
                "importSummaries": [
                    {"responseType": "ImportSummary", "status": "SUCCESS", "reference": "evtOk000001",
                     "importCount": {"imported": 1, "updated": 0, "ignored": 0, "deleted": 0}},
                    {"responseType": "ImportSummary", "status": "ERROR", "reference": "evtBad00002",
                     "importCount": {"imported": 0, "updated": 0, "ignored": 1, "deleted": 0},
                     "conflicts": [{"object": "qrur9Dvnyt5", "value": "value_not_numeric"}]}
                ]}
        });
        let o = classify(Endpoint::Events, 409, None, body.to_string().as_bytes());
        let Outcome::Partial {
            summary: s,
            rejected,
        } = o
        else {
            panic!("{o:?}")
        };
        assert_eq!(s, summary(1, 0, 0, 1, &["evtOk000001"]));
        assert_eq!(
            codes_and_uids(&rejected),
            [("ERROR".into(), Some("evtBad00002".into()))]
        );
    }

    #[test]
    fn forbidden_webmessage_403_pauses() {
        let o = classify(
            Endpoint::Tracker,
            403,
            None,
            &fixture("webmessage-403-forbidden-docs.response.json"),
        );
        assert!(
            matches!(o, Outcome::Pause { ref why } if why.contains("403")),
            "{o:?}"
        );
    }

    #[test]
    fn idscheme_422_on_a_lookup_is_rejected_with_status_text() {
        let o = classify(
            Endpoint::Get,
            422,
            None,
            &fixture("tracker-idscheme-missing-identifiers-422.response.json"),
        );
        let Outcome::Rejected(errs) = o else {
            panic!("{o:?}")
        };
        assert_eq!(errs[0].code, "Unprocessable Entity");
    }

    #[test]
    fn lookup_answers_are_delivered_without_counts() {
        for (file, status) in [
            ("me-2.38-fields-filtered.response.json", 200),
            ("system-id.response.json", 200),
            ("system-info-android-fixture.response.json", 200),
            ("system-info-docs.response.json", 200),
            ("pat-create-apitoken.response.json", 201),
            ("tracker-job-notifications-2.36-docs.response.json", 200),
            ("tracker-job-notifications-2.41plus.response.json", 200),
            ("tracker-job-notifications-2.42-docs.response.json", 200),
        ] {
            let o = classify(Endpoint::Get, status, None, &fixture(file));
            assert_eq!(o, Outcome::Delivered(ImportSummary::default()), "{file}");
        }
    }

    #[test]
    fn job_notifications_complete_when_any_entry_is_completed() {
        for file in [
            "tracker-job-notifications-2.36-docs.response.json",
            "tracker-job-notifications-2.41plus.response.json",
            "tracker-job-notifications-2.42-docs.response.json",
        ] {
            assert_eq!(
                classify_job_notifications(&fixture(file)),
                JobState::Completed,
                "{file}"
            );
        }
        let running = json!([{"message": "Running PreHeat", "completed": false}]).to_string();
        assert_eq!(
            classify_job_notifications(running.as_bytes()),
            JobState::Running
        );
        assert_eq!(classify_job_notifications(b"[]"), JobState::Running);
        assert_eq!(classify_job_notifications(b"<html>"), JobState::Running);
    }

    #[test]
    fn every_sample_response_file_is_covered_by_a_test() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dhis2/responses");
        let this = include_str!("classify.rs");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("fixture dir") {
            let name = entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            if name.ends_with(".json") {
                n += 1;
                assert!(
                    this.contains(&format!("\"{name}\"")),
                    "no test names {name}"
                );
            }
        }
        assert!(n >= 24, "expected the 24 copied samples, found {n}");
    }

    // ---- job reports --------------------------------------------------------------------------

    #[test]
    fn job_report_404_means_not_finished() {
        let body = br#"{"httpStatus":"Not Found","httpStatusCode":404,"status":"ERROR","message":"Summary for job X does not exist"}"#;
        assert!(is_retry(
            &classify_job_report(Endpoint::Tracker, 404, body),
            false
        ));
        assert!(is_retry(
            &classify_job_report(Endpoint::DataValueSets, 200, b""),
            false
        ));
        assert!(is_retry(
            &classify_job_report(Endpoint::DataValueSets, 200, b"{}"),
            false
        ));
    }

    #[test]
    fn job_report_is_classified_like_a_sync_tracker_answer() {
        let body = fixture("tracker-import-report-ok-2.42-docs.response.json");
        assert!(matches!(
            classify_job_report(Endpoint::Tracker, 200, &body),
            Outcome::Delivered(_)
        ));
    }

    // ---- synthetic answers --------------------------------------------------------------------

    const NGINX_413: &str = "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
    const NGINX_504: &str = "<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n<center><h1>504 Gateway Time-out</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

    #[test]
    fn nginx_413_html_asks_for_a_smaller_batch() {
        assert!(is_retry(
            &classify(Endpoint::Tracker, 413, None, NGINX_413.as_bytes()),
            true
        ));
    }

    #[test]
    fn nginx_502_503_504_html_and_429_retry_without_split() {
        for s in [502, 503, 504, 429, 408] {
            assert!(
                is_retry(
                    &classify(Endpoint::Tracker, s, None, NGINX_504.as_bytes()),
                    false
                ),
                "{s}"
            );
        }
    }

    #[test]
    fn server_error_500_webmessage_retries() {
        let body = br#"{"httpStatus":"Internal Server Error","httpStatusCode":500,"status":"ERROR","message":"could not execute statement"}"#;
        let o = classify(Endpoint::Tracker, 500, None, body);
        assert!(
            matches!(o, Outcome::Retry { ref why, split: false } if why.contains("could not execute")),
            "{o:?}"
        );
    }

    #[test]
    fn redirect_302_to_login_page_pauses() {
        for loc in [
            "https://dhis.example.org/dhis-web-login/",
            "http://x/dhis-web-commons/security/login.action",
        ] {
            let o = classify(Endpoint::Tracker, 302, Some(loc), b"");
            assert!(
                matches!(o, Outcome::Pause { ref why } if why.contains("login page")),
                "{o:?}"
            );
        }
        let o = classify(
            Endpoint::Tracker,
            301,
            Some("https://dhis.example.org/api/tracker"),
            b"",
        );
        assert!(
            matches!(o, Outcome::Pause { ref why } if why.contains("base URL")),
            "{o:?}"
        );
    }

    #[test]
    fn wrong_credentials_401_json_pauses() {
        let body = br#"{"httpStatus":"Unauthorized","httpStatusCode":401,"status":"ERROR","message":"Unauthorized"}"#;
        assert!(matches!(
            classify(Endpoint::DataValueSets, 401, None, body),
            Outcome::Pause { .. }
        ));
    }

    #[test]
    fn forbidden_403_from_spring_pauses() {
        let body = br#"{"httpStatus":"Forbidden","httpStatusCode":403,"status":"ERROR","message":"Access is denied, requires one Authority from [F_DATAVALUE_ADD]"}"#;
        assert!(matches!(
            classify(Endpoint::DataValueSets, 403, None, body),
            Outcome::Pause { .. }
        ));
    }

    #[test]
    fn bad_enum_400_is_rejected_with_the_message() {
        let body = br#"{"httpStatus":"Bad Request","httpStatusCode":400,"status":"ERROR","message":"Value FOO is not a valid importStrategy. Valid values are: [CREATE, UPDATE, CREATE_AND_UPDATE, DELETE]"}"#;
        let o = classify(Endpoint::Tracker, 400, None, body);
        let Outcome::Rejected(errs) = o else {
            panic!("{o:?}")
        };
        assert_eq!(errs[0].code, "Bad Request");
        assert!(errs[0].message.contains("importStrategy"));
    }

    #[test]
    fn tracker_object_mode_200_with_error_reports_is_partial() {
        let body = json!({
            "status": "OK",
            "validationReport": {"errorReports": [
                {"message": "Value `DETECTED HIGH` is not a valid option code in option set `eUBlAbh0g2h`",
                 "errorCode": "E1125", "trackerType": "EVENT", "uid": "EvtBad00001", "args": []}
            ]},
            "stats": {"created": 1, "updated": 0, "deleted": 0, "ignored": 1, "total": 2},
            "bundleReport": {"typeReportMap": {"EVENT": {"trackerType": "EVENT",
                "stats": {"created": 1, "updated": 0, "deleted": 0, "ignored": 0, "total": 1},
                "objectReports": [{"trackerType": "EVENT", "uid": "EvtGood0001", "errorReports": []}]}}}
        });
        let o = classify(Endpoint::Tracker, 200, None, body.to_string().as_bytes());
        let Outcome::Partial {
            summary: s,
            rejected,
        } = o
        else {
            panic!("{o:?}")
        };
        assert_eq!(s, summary(1, 0, 0, 1, &["EvtGood0001"]));
        assert_eq!(
            codes_and_uids(&rejected),
            [("E1125".into(), Some("EvtBad00001".into()))]
        );
    }

    #[test]
    fn tracker_object_mode_200_where_every_object_failed_is_rejected() {
        let body = json!({
            "status": "OK",
            "validationReport": {"errorReports": [
                {"message": "m", "errorCode": "E1011", "trackerType": "EVENT", "uid": "EvtBad00001"}]},
            "stats": {"created": 0, "updated": 0, "deleted": 0, "ignored": 1, "total": 1},
            "bundleReport": {"typeReportMap": {}}
        });
        assert!(matches!(
            classify(Endpoint::Tracker, 200, None, body.to_string().as_bytes()),
            Outcome::Rejected(_)
        ));
    }

    #[test]
    fn tracker_already_exists_under_create_counts_as_delivered() {
        let body = br#"{"status":"ERROR","validationReport":{"errorReports":[{"message":"Event: `ZwwuwNp6gVd`, already exists.","errorCode":"E1030","trackerType":"EVENT","uid":"ZwwuwNp6gVd","args":["ZwwuwNp6gVd"]}],"warningReports":[]},"stats":{"created":0,"updated":0,"deleted":0,"ignored":1,"total":1}}"#;
        let o = classify(Endpoint::Tracker, 409, None, body);
        assert_eq!(o, Outcome::Delivered(summary(0, 0, 0, 1, &["ZwwuwNp6gVd"])));
    }

    #[test]
    fn tracker_deleted_uid_e1082_is_rejected_not_delivered() {
        let body = br#"{"status":"ERROR","validationReport":{"errorReports":[{"message":"x","errorCode":"E1082","trackerType":"EVENT","uid":"ZwwuwNp6gVd"}]},"stats":{"created":0,"updated":0,"deleted":0,"ignored":1,"total":1}}"#;
        assert!(matches!(
            classify(Endpoint::Tracker, 409, None, body),
            Outcome::Rejected(_)
        ));
    }

    #[test]
    fn tracker_server_exception_report_2_36_retries() {
        let body = br#"{"status":"ERROR","message":"Exception:could not execute batch","validationReport":{"errorReports":[]},"stats":{"created":0,"updated":0,"deleted":0,"ignored":0,"total":0}}"#;
        assert!(is_retry(
            &classify(Endpoint::Tracker, 409, None, body),
            false
        ));
    }

    #[test]
    fn async_job_known_only_from_location_header() {
        let body = br#"{"httpStatus":"OK","httpStatusCode":200,"status":"OK","message":"Tracker job added"}"#;
        let o = classify(
            Endpoint::Tracker,
            200,
            Some("https://d.example.org/api/tracker/jobs/LkXBUdIgbe3"),
            body,
        );
        assert_eq!(
            o,
            Outcome::Job {
                id: "LkXBUdIgbe3".into()
            }
        );
    }

    #[test]
    fn html_login_page_with_200_retries() {
        let o = classify(
            Endpoint::Tracker,
            200,
            None,
            b"<!doctype html><title>DHIS 2</title>",
        );
        assert!(is_retry(&o, false), "{o:?}");
    }

    #[test]
    fn endpoint_missing_404_on_post_pauses() {
        let o = classify(Endpoint::Events, 404, None, b"");
        assert!(matches!(o, Outcome::Pause { .. }), "{o:?}");
    }

    #[test]
    fn garbage_never_panics() {
        // Deterministic xorshift bytes, every sample truncated at every length, odd statuses.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let statuses = [
            0, 1, 100, 200, 201, 204, 302, 400, 401, 404, 409, 413, 422, 500, 504, 999, 65535,
        ];
        let endpoints = [
            Endpoint::Tracker,
            Endpoint::Events,
            Endpoint::DataValueSets,
            Endpoint::Get,
        ];
        for _ in 0..2000 {
            let len = (next() % 300) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            for s in statuses {
                for e in endpoints {
                    let _ = classify(e, s, Some("\u{0}/jobs/\u{ffff}"), &bytes);
                    let _ = classify_job_report(e, s, &bytes);
                }
            }
            let _ = classify_job_notifications(&bytes);
        }
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dhis2/responses");
        for entry in std::fs::read_dir(dir).expect("dir") {
            let bytes = std::fs::read(entry.expect("entry").path()).expect("read");
            for cut in 0..bytes.len() {
                for s in [200, 409] {
                    let _ = classify(Endpoint::Tracker, s, None, &bytes[..cut]);
                    let _ = classify(Endpoint::DataValueSets, s, None, &bytes[..cut]);
                }
            }
        }
        // Deep nesting is bounded by serde_json's recursion limit.
        let deep = "[".repeat(100_000);
        let _ = classify(Endpoint::Tracker, 200, None, deep.as_bytes());
        // Wrong types everywhere.
        let odd = br#"{"status":7,"validationReport":{"errorReports":[1,null,{"uid":[],"errorCode":{}}]},"stats":"x","bundleReport":{"typeReportMap":[]},"response":{"id":5}}"#;
        let _ = classify(Endpoint::Tracker, 409, None, odd);
        let _ = classify(Endpoint::Tracker, 200, None, odd);
    }
}
