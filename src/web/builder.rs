//! The Tempr builder page: pick a DHIS2 program stage and org unit from the cached metadata
//! and, for each data element of the stage, the record field that fills it — dropdowns, not
//! typed UIDs. The result is an ordinary builder Tempr file (config/temprs/README.md), checked
//! like any other before it is written.

use super::{Ctx, Shared, WebError};
use crate::store::{outbox, web as q};
use crate::sync::metadata::MetadataCache;
use crate::tempr::{self, TemprSet};
use axum::Form;
use axum::extract::{Extension, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, value};

/// The record fields a data element can be filled from, read off a real stored record.
pub fn record_fields(record: &Value) -> Vec<String> {
    let mut out: Vec<String> = [
        "sample_id",
        "patient_id",
        "source",
        "received_at",
        "observed_at",
        "device.vendor",
        "device.model",
        "device.serial",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(results) = record.get("results").and_then(Value::as_object) {
        for code in results.keys() {
            for part in ["value", "unit", "observed_at"] {
                out.push(format!("results.{code}.{part}"));
            }
        }
    }
    out
}

/// Programs with their event stages, as `program/stage` choices.
fn stages(md: &MetadataCache) -> Vec<Value> {
    md.programs
        .iter()
        .flat_map(|p| {
            p.program_stages.iter().map(move |s| {
                json!({"value": format!("{}/{}", p.id, s.id),
                       "label": format!("{} › {}", p.name.as_deref().unwrap_or(&p.id), s.name.as_deref().unwrap_or(&s.id))})
            })
        })
        .collect()
}

#[derive(serde::Deserialize, Default)]
pub struct Pick {
    stage: Option<String>,
    record: Option<i64>,
}

async fn metadata(web: &super::Web) -> Result<Option<MetadataCache>, WebError> {
    let json = web.read(|c| outbox::get_state(c, "metadata")).await?;
    Ok(json.and_then(|j| MetadataCache::from_json(j.as_bytes()).ok()))
}

pub async fn page(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Query(pick): Query<Pick>,
) -> Result<Response, WebError> {
    show(
        &web,
        &ctx,
        &pick,
        &BTreeMap::new(),
        Vec::new(),
        StatusCode::OK,
    )
    .await
}

async fn show(
    web: &super::Web,
    ctx: &Ctx,
    pick: &Pick,
    form: &BTreeMap<String, String>,
    errors: Vec<String>,
    status: StatusCode,
) -> Result<Response, WebError> {
    let md = metadata(web).await?;
    let recent = web
        .read(|c| q::search(c, &q::Search::default(), 50))
        .await?;
    let record_id = pick.record.or(recent.first().map(|r| r.id));
    let record = match record_id {
        Some(id) => web
            .read(move |c| outbox::message(c, crate::record::RecordId(id)))
            .await?
            .map(|m| tempr::record_view(m.id.0, &m.source, &m.received_at, &m.observations)),
        None => None,
    };
    let fields = record.as_deref().map(record_fields).unwrap_or_default();
    let codes: Vec<String> = record
        .as_ref()
        .and_then(|r| r.get("results").and_then(Value::as_object))
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let (stage_list, org_units, elements) = match &md {
        Some(md) => {
            let elements: Vec<Value> = pick
                .stage
                .as_deref()
                .and_then(|s| s.split_once('/'))
                .and_then(|(p, s)| {
                    md.programs.iter().find(|x| x.id == p)?.program_stages.iter().find(|x| x.id == s)
                })
                .map(|s| {
                    s.program_stage_data_elements
                        .iter()
                        .map(|d| json!({"id": d.data_element.id, "name": d.data_element.name, "compulsory": d.compulsory}))
                        .collect()
                })
                .unwrap_or_default();
            let ous: Vec<Value> = md
                .organisation_units
                .iter()
                .map(|o| json!({"id": o.id, "name": o.name}))
                .collect();
            (stages(md), ous, elements)
        }
        None => (Vec::new(), Vec::new(), Vec::new()),
    };
    let base = context! { gateway => web.config().gateway.name, csrf => ctx.csrf, nav => "temprs" };
    let mut r = web.render(
        "builder.html",
        context! { ..context! { has_metadata => md.is_some(), stages => stage_list, org_units => org_units,
                   elements => elements, fields => fields, codes => codes, recent => recent, record_id => record_id,
                   stage => pick.stage, f => form, errors => errors }, ..base },
    )?;
    *r.status_mut() = status;
    Ok(r)
}

/// The builder Tempr file for the chosen stage, org unit and field mappings (`de.<uid>` keys).
pub fn tempr_text(f: &BTreeMap<String, String>) -> Result<String, String> {
    let get = |k: &str| f.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
    let name = get("name").ok_or("give the Tempr a name")?;
    let (program, stage) = get("stage")
        .and_then(|s| s.split_once('/'))
        .ok_or("choose a program stage")?;
    let mut doc = DocumentMut::new();
    doc.insert("name", value(name));
    doc.insert("version", value(1));
    if let Some(d) = get("description") {
        doc.insert("description", value(d));
    }
    doc.insert("kind", value("builder"));
    doc.insert("endpoint", value("tracker"));
    if let Some(code) = get("test_code") {
        let mut m = Table::new();
        m.insert("test_codes", value(code));
        doc.insert("match", Item::Table(m));
    }
    let mut event = Table::new();
    event.insert("program", value(program));
    event.insert("program_stage", value(stage));
    event.insert("org_unit", value(get("org_unit").unwrap_or("ctx.org_unit")));
    let when = match get("test_code") {
        Some(code) => format!("results.{code}.observed_at"),
        None => "observed_at".to_owned(),
    };
    let mut at = toml_edit::Array::new();
    for p in [when.as_str(), "observed_at", "received_at"] {
        at.push(p);
    }
    event.insert("occurred_at", value(at));
    event.insert("status", value("COMPLETED"));
    event.insert(
        "uid",
        value(format!(
            "{{source}}:{{sample_id}}:{{{when}|observed_at}}:{{program_stage}}"
        )),
    );
    let mut values = ArrayOfTables::new();
    for (k, from) in f
        .iter()
        .filter(|(k, v)| k.starts_with("de.") && !v.trim().is_empty())
    {
        let mut t = Table::new();
        t.insert("data_element", value(&k[3..]));
        t.insert("from", value(from.trim()));
        values.push(t);
    }
    if values.is_empty() {
        return Err("map at least one data element to a record field".into());
    }
    event.insert("data_values", Item::ArrayOfTables(values));
    let mut builder = Table::new();
    builder.insert("event", Item::Table(event));
    doc.insert("builder", Item::Table(builder));
    Ok(doc.to_string())
}

pub async fn create(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Form(mut f): Form<BTreeMap<String, String>>,
) -> Result<Response, WebError> {
    f.remove("csrf");
    let pick = Pick {
        stage: f.get("stage").cloned(),
        record: f.get("record").and_then(|r| r.parse().ok()),
    };
    let config = web.config();
    let Some(d) = config.dhis2.clone() else {
        return Err(WebError::BadRequest(
            "no [dhis2] section: configure DHIS2 first".into(),
        ));
    };
    let result: Result<(String, String), Vec<String>> = (|| {
        let text = tempr_text(&f).map_err(|e| vec![e])?;
        let name = f
            .get("name")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let plain = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
        if name.is_empty() || !name.chars().all(plain) {
            return Err(vec![format!("name \"{name}\": use a-z, 0-9, - and _ only")]);
        }
        let file = d.temprs_dir.join(format!("{name}.toml"));
        if file.exists() {
            return Err(vec![format!(
                "{} exists already: choose another name",
                file.display()
            )]);
        }
        let t = tempr::Tempr::parse(&text, &file)
            .map_err(|e| e.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
        let set = TemprSet::load_dir(&d.temprs_dir)
            .map_err(|e| e.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
        let all: Vec<tempr::Tempr> = set.iter().cloned().chain([t]).collect();
        TemprSet::new(all).map_err(|e| e.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
        super::write_atomic(&file, text.as_bytes()).map_err(|e| vec![e.to_string()])?;
        Ok((name, text))
    })();
    match result {
        Ok((name, text)) => {
            let how = crate::store::history::SavedBy::Builder;
            super::temprs::keep_version(&web, ctx.ip, &name, None, &text, how).await;
            web.audit(ctx.ip, "tempr.add", format!("Tempr {name} (builder)"))
                .await;
            web.request_reload();
            let to = match pick.record {
                Some(r) => format!("/temprs/{name}?record={r}"),
                None => format!("/temprs/{name}"),
            };
            Ok(Redirect::to(&to).into_response())
        }
        Err(errors) => {
            show(
                &web,
                &ctx,
                &pick,
                &f,
                errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_text_is_a_valid_tempr() {
        let f: BTreeMap<String, String> = [
            ("name", "gx-web"),
            ("stage", "LabGxEvnt01/LabRsltStg1"),
            ("org_unit", ""),
            ("test_code", "MTB-RIF/Xpert/MTB"),
            ("de.LabSmplId01", "sample_id"),
            ("de.LabMtbRes01", "results.MTB-RIF/Xpert/MTB.value"),
            ("de.LabAnlzSn01", ""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let text = tempr_text(&f).unwrap();
        let t = tempr::Tempr::parse(&text, std::path::Path::new("gx-web.toml"))
            .unwrap_or_else(|e| panic!("{e:?}\n{text}"));
        assert_eq!(t.name, "gx-web");
        assert!(!text.contains("LabAnlzSn01"), "blank mappings are left out");
    }
}
