//! `POST /api/dataValueSets` (dhis2.md §2.4): per-value conflicts (E7610/E7611/E7612/E7619/
//! E7621, merged with `indexes`), set-level aborts (E7600/E7603), unchanged values counted as
//! ignored. 2.36/2.37 answer the bare ImportSummary with 200 whatever happened; 2.38+ wrap it
//! in a WebMessage: SUCCESS 200, WARNING 409 (with DHIS2's typo "One more conflicts…"),
//! ERROR 409 (2.38–2.41 still bare when called as `/api/37/dataValueSets` or lower).
//! `async=true` is not modelled (answered synchronously).

use super::events::ImportOptions;
use super::state::DvKey;
use super::{
    ApiVersion, SimState, json_response, lock, query_get, query_pairs, values, web_message,
};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use serde::Serialize;
use serde_json::{Map, Value, json};

/// The default category option combo (the Sierra Leone demo's UID).
pub const DEFAULT_COC: &str = "HllvX50cXC0";

#[derive(Serialize, Clone, Copy, Default)]
struct ImportCount {
    imported: u64,
    updated: u64,
    ignored: u64,
    deleted: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConflictOut {
    object: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    objects: Option<Map<String, Value>>,
    value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    property: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    indexes: Option<Vec<usize>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ImportSummary {
    response_type: &'static str,
    status: &'static str,
    import_options: ImportOptions,
    description: &'static str,
    import_count: ImportCount,
    conflicts: Vec<ConflictOut>,
    data_set_complete: String,
}

struct Conflict {
    code: &'static str,
    object: String,
    objects: Map<String, Value>,
    value: String,
    property: Option<&'static str>,
    /// key-only text for 2.36
    legacy_value: String,
    index: usize,
}

fn text(v: &Value, k: &str) -> Option<String> {
    match v.get(k) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        _ => None,
    }
}

fn objects(pairs: &[(&str, &str)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect()
}

pub async fn post_data_value_sets(
    State(st): State<SimState>,
    api: Option<Extension<ApiVersion>>,
    uri: Uri,
    body: Bytes,
) -> Response {
    let v = st.version();
    let q = query_pairs(&uri);
    let strategy = query_get(&q, "importStrategy")
        .map(str::to_ascii_uppercase)
        .filter(|s| ["CREATE", "UPDATE", "CREATE_AND_UPDATE", "DELETE"].contains(&s.as_str()))
        .unwrap_or_else(|| "CREATE_AND_UPDATE".into());
    let dry_run = query_get(&q, "dryRun") == Some("true");
    let meta = &st.inner().meta;

    let mut count = ImportCount::default();
    let mut conflicts: Vec<Conflict> = Vec::new();
    let mut aborted = false;
    let mut complete = "false".to_string();
    match serde_json::from_slice::<Value>(&body) {
        Err(e) => {
            aborted = true;
            conflicts.push(Conflict {
                code: "E7600",
                object: "dataValueSet".into(),
                objects: Map::new(),
                value: format!("The import process failed: {e}"),
                property: None,
                legacy_value: format!("The import process failed: {e}"),
                index: 0,
            });
        }
        Ok(set) => {
            if let Some(c) = text(&set, "completeDate") {
                complete = c;
            }
            let set_ds = text(&set, "dataSet");
            if let Some(ds) = &set_ds
                && !meta.data_sets.contains_key(ds)
            {
                aborted = true;
                conflicts.push(Conflict {
                    code: "E7600",
                    object: ds.clone(),
                    objects: objects(&[("dataSet", ds)]),
                    value: format!("Data set not found or not accessible: `{ds}`"),
                    property: Some("dataSet"),
                    legacy_value: "Data set not found or not accessible".into(),
                    index: 0,
                });
            }
            let set_ou = text(&set, "orgUnit");
            if let Some(ou) = &set_ou
                && !meta.org_units.contains_key(ou)
            {
                aborted = true;
                conflicts.push(Conflict {
                    code: "E7603",
                    object: ou.clone(),
                    objects: objects(&[("orgUnit", ou)]),
                    value: format!("Org unit not found or not accessible: `{ou}`"),
                    property: Some("orgUnit"),
                    legacy_value: "Org unit not found or not accessible".into(),
                    index: 0,
                });
            }
            if !aborted {
                let mut store = lock(&st.inner().store);
                let mut changed = false;
                let list = set.get("dataValues").and_then(Value::as_array);
                for (index, dv) in list.into_iter().flatten().enumerate() {
                    let de_id = text(dv, "dataElement").unwrap_or_default();
                    let period = text(dv, "period")
                        .or_else(|| text(&set, "period"))
                        .unwrap_or_default();
                    let ou = text(dv, "orgUnit")
                        .or_else(|| set_ou.clone())
                        .unwrap_or_default();
                    let coc = text(dv, "categoryOptionCombo").unwrap_or_else(|| DEFAULT_COC.into());
                    let aoc = text(dv, "attributeOptionCombo")
                        .or_else(|| text(&set, "attributeOptionCombo"))
                        .unwrap_or_else(|| DEFAULT_COC.into());
                    let value = text(dv, "value");
                    let comment = text(dv, "comment");
                    let mut conflict =
                        |code, object: &str, objs, value: String, prop, legacy: &str| {
                            conflicts.push(Conflict {
                                code,
                                object: object.to_string(),
                                objects: objs,
                                value,
                                property: prop,
                                legacy_value: legacy.to_string(),
                                index,
                            });
                            count.ignored += 1;
                        };
                    let Some(de) = meta.data_elements.get(&de_id) else {
                        conflict(
                            "E7610",
                            &de_id,
                            objects(&[("dataElement", &de_id)]),
                            format!("Data element not found or not accessible: `{de_id}`"),
                            Some("dataElement"),
                            "Data element not found or not accessible",
                        );
                        continue;
                    };
                    if !values::is_period(&period) {
                        conflict(
                            "E7611",
                            &period,
                            objects(&[("period", &period)]),
                            format!("Period not valid: `{period}`"),
                            Some("period"),
                            "Period not valid",
                        );
                        continue;
                    }
                    if !meta.org_units.contains_key(&ou) {
                        conflict(
                            "E7612",
                            &ou,
                            objects(&[("orgUnit", &ou)]),
                            format!("Organisation unit not found or not accessible: `{ou}`"),
                            Some("orgUnit"),
                            "Organisation unit not found or not accessible",
                        );
                        continue;
                    }
                    if value.is_none() && comment.is_none() {
                        conflict(
                            "E7618",
                            &de_id,
                            objects(&[("dataElement", &de_id)]),
                            format!(
                                "Data value or comment not specified for data element: `{de_id}`"
                            ),
                            Some("value"),
                            "Data value or comment not specified",
                        );
                        continue;
                    }
                    if let Some(val) = &value {
                        if let Some((_, codes)) = &de.option_set {
                            if !codes.contains(val) {
                                conflict(
                                    "E7621",
                                    &de_id,
                                    objects(&[("dataElement", &de_id), ("value", val)]),
                                    format!(
                                        "Data value is not a valid option of the data element option set: `{de_id}`"
                                    ),
                                    Some("value"),
                                    "value_not_valid_option",
                                );
                                continue;
                            }
                        } else if let Some(bad) = values::check(&de.value_type, val, true) {
                            conflict(
                                "E7619",
                                &de_id,
                                objects(&[("dataElement", &de_id), ("value", bad.key)]),
                                format!(
                                    "Value must match data element's `{de_id}` type constraints: {}",
                                    bad.sentence
                                ),
                                Some("value"),
                                bad.key,
                            );
                            continue;
                        }
                    }
                    let key = DvKey {
                        data_element: de_id.clone(),
                        period: period.clone(),
                        org_unit: ou.clone(),
                        coc: coc.clone(),
                        aoc: aoc.clone(),
                    };
                    let mut stored = Map::new();
                    stored.insert("dataElement".into(), json!(de_id));
                    stored.insert("period".into(), json!(period));
                    stored.insert("orgUnit".into(), json!(ou));
                    stored.insert("categoryOptionCombo".into(), json!(coc));
                    stored.insert("attributeOptionCombo".into(), json!(aoc));
                    stored.insert("value".into(), json!(value));
                    if let Some(c) = &comment {
                        stored.insert("comment".into(), json!(c));
                    }
                    if let Some(f) = dv.get("followup").and_then(Value::as_bool) {
                        stored.insert("followup".into(), json!(f));
                    }
                    let stored = Value::Object(stored);
                    let existing = store.data_value(&key);
                    let exists = existing.is_some();
                    if existing == Some(&stored) {
                        count.ignored += 1;
                        continue;
                    }
                    match strategy.as_str() {
                        "CREATE" if exists => {
                            count.ignored += 1;
                            continue;
                        }
                        "UPDATE" | "DELETE" if !exists => {
                            count.ignored += 1;
                            continue;
                        }
                        "DELETE" => {
                            count.deleted += 1;
                            continue;
                        }
                        _ => {}
                    }
                    if exists {
                        count.updated += 1;
                    } else {
                        count.imported += 1;
                    }
                    if !dry_run {
                        store.put_data_value(key, stored);
                        changed = true;
                    }
                }
                if changed {
                    st.persist(&store);
                }
            }
        }
    }

    let status = if aborted {
        "ERROR"
    } else if conflicts.is_empty() {
        "SUCCESS"
    } else {
        "WARNING"
    };
    // Merge identical conflicts, collecting their indexes.
    let mut merged: Vec<(Conflict, Vec<usize>)> = Vec::new();
    for c in conflicts {
        match merged
            .iter_mut()
            .find(|(m, _)| m.code == c.code && m.object == c.object && m.value == c.value)
        {
            Some((_, idx)) => idx.push(c.index),
            None => {
                let i = c.index;
                merged.push((c, vec![i]));
            }
        }
    }
    let rich = v.rich_conflicts();
    let conflicts_out = merged
        .into_iter()
        .map(|(c, indexes)| {
            if rich {
                ConflictOut {
                    object: c.object,
                    objects: Some(c.objects),
                    value: c.value,
                    error_code: Some(c.code),
                    property: c.property,
                    indexes: Some(indexes),
                }
            } else {
                ConflictOut {
                    object: c.object,
                    objects: None,
                    value: c.legacy_value,
                    error_code: None,
                    property: None,
                    indexes: None,
                }
            }
        })
        .collect();
    let summary = ImportSummary {
        response_type: "ImportSummary",
        status,
        import_options: ImportOptions::new(&strategy, dry_run),
        description: if aborted {
            "Import process was aborted"
        } else {
            "Import process completed successfully"
        },
        import_count: count,
        conflicts: conflicts_out,
        data_set_complete: complete,
    };
    let api_version = api.and_then(|Extension(a)| a.0);
    if !v.wraps_data_value_sets(api_version) {
        return json_response(StatusCode::OK, &summary);
    }
    match status {
        "SUCCESS" => web_message(
            StatusCode::OK,
            "OK",
            Some("Import was successful.".into()),
            Some(summary),
        ),
        "WARNING" => web_message(
            StatusCode::CONFLICT,
            "WARNING",
            Some("One more conflicts encountered, please check import summary.".into()),
            Some(summary),
        ),
        _ => web_message(
            StatusCode::CONFLICT,
            "ERROR",
            Some("An error occurred, please check import summary.".into()),
            Some(summary),
        ),
    }
}
