//! Legacy `POST /api/events` (2.36–2.41; 404 on 2.42) answering a WebMessage around
//! `ImportSummaries`: all SUCCESS → 200; any ERROR → 409 `ERROR`; any WARNING → 409 `WARNING`
//! (dhis2.md §2.3). Accepted events are stored in tracker field names next to the tracker ones.

use super::state::Kind;
use super::{SimState, base_url, error_message, lock, query_get, query_pairs, values, web_message};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde::Serialize;
use serde_json::{Map, Value, json};

#[derive(Serialize, Clone, Copy, Default)]
pub struct ImportCount {
    pub imported: u64,
    pub updated: u64,
    pub ignored: u64,
    pub deleted: u64,
}

#[derive(Serialize, Clone)]
pub struct Conflict {
    pub object: String,
    pub value: String,
}

/// `importOptions` as in the samples (field order kept).
#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct ImportOptions {
    pub id_schemes: Map<String, Value>,
    pub dry_run: bool,
    #[serde(rename = "async")]
    pub is_async: bool,
    pub import_strategy: String,
    pub merge_mode: &'static str,
    pub report_mode: &'static str,
    pub skip_existing_check: bool,
    pub sharing: bool,
    pub skip_notifications: bool,
    pub skip_audit: bool,
    pub dataset_allows_periods: bool,
    pub strict_periods: bool,
    pub strict_data_elements: bool,
    pub strict_category_option_combos: bool,
    pub strict_attribute_option_combos: bool,
    pub strict_organisation_units: bool,
    pub require_category_option_combo: bool,
    pub require_attribute_option_combo: bool,
    pub skip_pattern_validation: bool,
    pub ignore_empty_collection: bool,
    pub force: bool,
    pub first_row_is_header: bool,
    pub skip_last_updated: bool,
    pub merge_data_values: bool,
    pub skip_cache: bool,
}

impl ImportOptions {
    pub fn new(strategy: &str, dry_run: bool) -> Self {
        ImportOptions {
            id_schemes: Map::new(),
            dry_run,
            is_async: false,
            import_strategy: strategy.to_string(),
            merge_mode: "REPLACE",
            report_mode: "FULL",
            skip_existing_check: false,
            sharing: false,
            skip_notifications: false,
            skip_audit: false,
            dataset_allows_periods: false,
            strict_periods: false,
            strict_data_elements: false,
            strict_category_option_combos: false,
            strict_attribute_option_combos: false,
            strict_organisation_units: false,
            require_category_option_combo: false,
            require_attribute_option_combo: false,
            skip_pattern_validation: false,
            ignore_empty_collection: false,
            force: false,
            first_row_is_header: true,
            skip_last_updated: false,
            merge_data_values: false,
            skip_cache: false,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventSummary {
    response_type: &'static str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    import_count: ImportCount,
    conflicts: Vec<Conflict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    href: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Summaries {
    response_type: &'static str,
    status: &'static str,
    imported: u64,
    updated: u64,
    deleted: u64,
    ignored: u64,
    import_options: ImportOptions,
    import_summaries: Vec<EventSummary>,
    total: u64,
}

fn s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str).filter(|x| !x.is_empty())
}

fn error_summary(uid: &str, description: String, conflicts: Vec<Conflict>) -> EventSummary {
    EventSummary {
        response_type: "ImportSummary",
        status: "ERROR",
        description: Some(description),
        import_count: ImportCount {
            ignored: 1,
            ..ImportCount::default()
        },
        conflicts,
        reference: Some(uid.to_string()),
        href: None,
    }
}

/// Legacy event → tracker field names (as stored).
fn to_tracker(
    ev: &Value,
    uid: &str,
    program: &str,
    stage: &str,
    enrollment: Option<&str>,
) -> Value {
    let mut out = Map::new();
    out.insert("event".into(), json!(uid));
    out.insert("program".into(), json!(program));
    out.insert("programStage".into(), json!(stage));
    for (from, to) in [
        ("orgUnit", "orgUnit"),
        ("status", "status"),
        ("eventDate", "occurredAt"),
        ("dueDate", "scheduledAt"),
        ("completedDate", "completedAt"),
        ("trackedEntityInstance", "trackedEntity"),
        ("storedBy", "storedBy"),
        ("attributeOptionCombo", "attributeOptionCombo"),
        ("geometry", "geometry"),
        ("notes", "notes"),
    ] {
        if let Some(val) = ev.get(from).filter(|v| !v.is_null()) {
            out.insert(to.into(), val.clone());
        }
    }
    if let Some(e) = enrollment {
        out.insert("enrollment".into(), json!(e));
    }
    let dvs: Vec<Value> = ev
        .get("dataValues")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|dv| {
            json!({
                "dataElement": dv.get("dataElement").cloned().unwrap_or(Value::Null),
                "value": dv.get("value").cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    out.insert("dataValues".into(), Value::Array(dvs));
    Value::Object(out)
}

pub async fn post_events(
    State(st): State<SimState>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let v = st.version();
    if !v.legacy_events() {
        return error_message(StatusCode::NOT_FOUND, "No handler found for /api/events");
    }
    let q = query_pairs(&uri);
    let strategy = query_get(&q, "strategy")
        .or_else(|| query_get(&q, "importStrategy"))
        .map(str::to_ascii_uppercase)
        .filter(|s| {
            ["CREATE", "UPDATE", "CREATE_AND_UPDATE", "DELETE", "SYNC"].contains(&s.as_str())
        })
        .unwrap_or_else(|| "CREATE_AND_UPDATE".into());
    let dry_run = query_get(&q, "dryRun") == Some("true");
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            return error_message(StatusCode::BAD_REQUEST, format!("JSON parse error: {e}"));
        }
    };
    let events: Vec<Value> = match parsed.get("events") {
        Some(Value::Array(a)) => a.clone(),
        _ if parsed.is_object() => vec![parsed.clone()],
        _ => Vec::new(),
    };
    let base = base_url(&headers);
    let meta = &st.inner().meta;
    let mut summaries = Vec::new();
    let mut store = lock(&st.inner().store);
    let mut changed = false;
    for ev in &events {
        let uid = s(ev, "event")
            .map(str::to_string)
            .unwrap_or_else(values::generate_uid);
        let exists = store.exists(Kind::Event, &uid);
        let deleted = store.is_deleted(Kind::Event, &uid);
        let fail = |d: String| error_summary(&uid, d, Vec::new());
        if strategy == "DELETE" {
            if exists {
                if !dry_run {
                    store.delete(Kind::Event, &uid);
                    changed = true;
                }
                summaries.push(EventSummary {
                    response_type: "ImportSummary",
                    status: "SUCCESS",
                    description: Some(format!("Deletion of event {uid} was successful")),
                    import_count: ImportCount {
                        deleted: 1,
                        ..ImportCount::default()
                    },
                    conflicts: Vec::new(),
                    reference: Some(uid.clone()),
                    href: None,
                });
            } else {
                summaries.push(fail(format!(
                    "Event {uid} cannot be deleted as it is not present in the system"
                )));
            }
            continue;
        }
        if deleted || (strategy == "CREATE" && exists) {
            summaries.push(fail(format!(
                "Event {uid} already exists or was deleted earlier"
            )));
            continue;
        }
        if strategy == "UPDATE" && !exists {
            summaries.push(fail(format!("Event {uid} does not exist")));
            continue;
        }
        let Some(program_id) = s(ev, "program") else {
            summaries.push(fail(
                "Event.program does not point to a valid program: null".into(),
            ));
            continue;
        };
        let Some(program) = meta.programs.get(program_id) else {
            summaries.push(fail(format!(
                "Event.program does not point to a valid program: {program_id}"
            )));
            continue;
        };
        let stage_id = s(ev, "programStage")
            .map(str::to_string)
            .or_else(|| (program.stages.len() == 1).then(|| program.stages[0].clone()));
        let Some(stage) = stage_id.as_deref().and_then(|id| meta.stages.get(id)) else {
            summaries.push(fail(format!(
                "Event.programStage does not point to a valid programStage: {}",
                stage_id.as_deref().unwrap_or("null")
            )));
            continue;
        };
        let ou = s(ev, "orgUnit").unwrap_or("");
        if !meta.org_units.contains_key(ou) {
            summaries.push(fail(format!(
                "Event.orgUnit does not point to a valid organisation unit: {ou}"
            )));
            continue;
        }
        if !program.org_units.contains(ou) {
            summaries.push(fail(format!(
                "Program is not assigned to this Organisation Unit: {ou}"
            )));
            continue;
        }
        if s(ev, "eventDate").is_none() && s(ev, "status") != Some("SCHEDULE") {
            summaries.push(fail("Event date is required. ".into()));
            continue;
        }
        let mut enrollment = s(ev, "enrollment").map(str::to_string);
        if program.registration {
            let tei = s(ev, "trackedEntityInstance");
            if enrollment
                .as_deref()
                .is_none_or(|e| !store.exists(Kind::Enrollment, e))
            {
                enrollment = tei.and_then(|t| {
                    store
                        .iter(Kind::Enrollment)
                        .find(|e| {
                            s(e, "trackedEntity") == Some(t)
                                && s(e, "program") == Some(program_id)
                                && s(e, "status").unwrap_or("ACTIVE") == "ACTIVE"
                        })
                        .and_then(|e| s(e, "enrollment").map(str::to_string))
                });
            }
            if enrollment.is_none() {
                summaries.push(fail(format!(
                    "Event.trackedEntityInstance does not point to a valid tracked entity instance: {}",
                    tei.unwrap_or("null")
                )));
                continue;
            }
        }
        let mut conflicts = Vec::new();
        for dv in ev
            .get("dataValues")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let de_id = s(dv, "dataElement").unwrap_or("");
            let value = match dv.get("value") {
                Some(Value::String(x)) => x.clone(),
                Some(Value::Null) | None => continue,
                Some(other) => other.to_string(),
            };
            match meta.data_elements.get(de_id) {
                None => conflicts.push(Conflict {
                    object: de_id.to_string(),
                    value: "Data element not found or not accessible".into(),
                }),
                Some(_) if !stage.data_elements.contains_key(de_id) => conflicts.push(Conflict {
                    object: de_id.to_string(),
                    value: format!(
                        "Data element {de_id} is not assigned to program stage {}",
                        stage.id
                    ),
                }),
                Some(de) => {
                    if let Some((_, codes)) = &de.option_set {
                        if !value.is_empty() && !codes.contains(&value) {
                            conflicts.push(Conflict {
                                object: de_id.to_string(),
                                value: "value_not_valid_option".into(),
                            });
                        }
                    } else if let Some(bad) = values::check(&de.value_type, &value, false) {
                        conflicts.push(Conflict {
                            object: de_id.to_string(),
                            value: bad.key.to_string(),
                        });
                    }
                }
            }
        }
        if !conflicts.is_empty() {
            summaries.push(error_summary(
                &uid,
                "Event validation failed".into(),
                conflicts,
            ));
            continue;
        }
        if !dry_run {
            let stored = to_tracker(ev, &uid, program_id, &stage.id, enrollment.as_deref());
            store.put(Kind::Event, &uid, stored);
            changed = true;
        }
        summaries.push(EventSummary {
            response_type: "ImportSummary",
            status: "SUCCESS",
            description: None,
            import_count: ImportCount {
                imported: u64::from(!exists),
                updated: u64::from(exists),
                ..ImportCount::default()
            },
            conflicts: Vec::new(),
            reference: Some(uid.clone()),
            href: Some(format!("{base}/api/events/{uid}")),
        });
    }
    if changed {
        st.persist(&store);
    }
    drop(store);
    let sum =
        |f: fn(&ImportCount) -> u64| summaries.iter().map(|s| f(&s.import_count)).sum::<u64>();
    let (imported, updated, deleted, ignored) = (
        sum(|c| c.imported),
        sum(|c| c.updated),
        sum(|c| c.deleted),
        sum(|c| c.ignored),
    );
    let status = if summaries.iter().any(|s| s.status == "ERROR") {
        "ERROR"
    } else if summaries.iter().any(|s| s.status == "WARNING") {
        "WARNING"
    } else {
        "SUCCESS"
    };
    let body = Summaries {
        response_type: "ImportSummaries",
        status,
        imported,
        updated,
        deleted,
        ignored,
        import_options: ImportOptions::new(&strategy, dry_run),
        total: summaries.len() as u64,
        import_summaries: summaries,
    };
    match status {
        "SUCCESS" => web_message(
            StatusCode::OK,
            "OK",
            Some("Import was successful.".into()),
            Some(body),
        ),
        "ERROR" => web_message(
            StatusCode::CONFLICT,
            "ERROR",
            Some("An error occurred, please check import summary.".into()),
            Some(body),
        ),
        _ => web_message(
            StatusCode::CONFLICT,
            "WARNING",
            Some("One or more conflicts encountered, please check import summary.".into()),
            Some(body),
        ),
    }
}
