//! `/api/v1/…`: JSON for what the pages do, behind the same session and CSRF checks (send the
//! token from the page in an `X-CSRF-Token` header), and `GET /metrics` in Prometheus text.

use super::{Ctx, Shared, WebError};
use super::{auth, pages};
use crate::store::web as q;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tracing::warn;

/// An API error: the status of the [`WebError`] and `{"error": "…"}`.
pub struct ApiError(WebError);

impl From<WebError> for ApiError {
    fn from(e: WebError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        (status, Json(json!({"error": self.0.to_string()}))).into_response()
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

fn ok(v: impl serde::Serialize) -> ApiResult {
    Ok(Json(
        serde_json::to_value(v).map_err(|e| WebError::Internal(e.to_string()))?,
    ))
}

fn edit_failed(e: super::edit::EditError) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(
            json!({"error": "invalid edit; nothing was changed", "errors": pages::edit_errors(&e)}),
        ),
    )
        .into_response()
}

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/status", get(status))
        .route("/records", get(records))
        .route("/records/{id}", get(record))
        .route("/records/{id}/retry", post(retry))
        .route("/records/{id}/rerender", post(rerender))
        .route("/sources", get(sources).post(source_save))
        .route("/sources/{id}/enabled", post(source_enabled))
        .route("/temprs", get(temprs))
        .route("/temprs/{name}/test", post(tempr_test))
        .route("/dhis2/{action}", post(dhis2))
        .route("/destinations/{id}/{action}", post(destination))
        .route("/audit", get(audit))
        .route(
            "/network",
            get(super::network::api_get).put(super::network::api_put),
        )
        .route("/network/scan", get(super::network::api_scan))
        .route("/system/time", get(time).post(set_time))
        .route("/system/backup", get(backup))
        .route("/system/restore", post(restore))
}

async fn status(State(web): State<Shared>) -> ApiResult {
    ok(pages::status(&web).await?)
}

async fn records(State(web): State<Shared>, Query(s): Query<q::Search>) -> ApiResult {
    ok(web
        .read(move |c| q::search(c, &s, super::PAGE_ROWS))
        .await?)
}

async fn record(State(web): State<Shared>, Path(id): Path<i64>) -> ApiResult {
    let r = web
        .read(move |c| q::record(c, id))
        .await?
        .ok_or_else(|| WebError::NotFound(format!("record {id}")))?;
    let mut v = serde_json::to_value(&r).map_err(|e| WebError::Internal(e.to_string()))?;
    // Bytes as text a person can read (and base64 for a program), not arrays of numbers.
    use base64::Engine;
    v["wire"] = json!(base64::engine::general_purpose::STANDARD.encode(&r.wire));
    v["text"] = json!(String::from_utf8_lossy(&r.text));
    Ok(Json(v))
}

async fn retry(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<i64>,
) -> ApiResult {
    ok(json!({"requeued": pages::retry(&web, ctx.ip, id).await?}))
}

async fn rerender(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<i64>,
) -> ApiResult {
    ok(json!({"rerender": pages::rerender(&web, ctx.ip, id).await?}))
}

async fn sources(State(web): State<Shared>) -> ApiResult {
    ok(pages::status(&web).await?.sources)
}

/// Body: the device form's fields as JSON strings, plus `original` to change an existing source.
async fn source_save(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Json(mut f): Json<BTreeMap<String, String>>,
) -> Response {
    let original = f.remove("original").filter(|s| !s.is_empty());
    let id = f.get("id").cloned().unwrap_or_default();
    let action = if original.is_some() {
        "source.edit"
    } else {
        "source.add"
    };
    match pages::apply_edit(
        &web,
        ctx.ip,
        action,
        format!("source {id} (API)"),
        move |p| super::edit::save_source(p, original.as_deref(), &f),
    )
    .await
    {
        Ok(_) => Json(json!({"saved": id})).into_response(),
        Err(e) => edit_failed(e),
    }
}

#[derive(serde::Deserialize)]
struct Enabled {
    enabled: bool,
}

async fn source_enabled(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Json(b): Json<Enabled>,
) -> Response {
    let id2 = id.clone();
    match pages::apply_edit(
        &web,
        ctx.ip,
        "source.enabled",
        format!("source {id} enabled = {}", b.enabled),
        move |p| super::edit::set_enabled(p, &id2, b.enabled),
    )
    .await
    {
        Ok(_) => Json(json!({"source": id, "enabled": b.enabled})).into_response(),
        Err(e) => edit_failed(e),
    }
}

async fn temprs(State(web): State<Shared>) -> ApiResult {
    let Some(d) = web.config().dhis2 else {
        return ok(Vec::<Value>::new());
    };
    let set = crate::tempr::TemprSet::load_dir(&d.temprs_dir).map_err(|errors| {
        WebError::BadRequest(
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    ok(pages::temprs_json(&set))
}

#[derive(serde::Deserialize)]
struct TestBody {
    record_id: i64,
}

async fn tempr_test(
    State(web): State<Shared>,
    Path(name): Path<String>,
    Json(b): Json<TestBody>,
) -> ApiResult {
    ok(pages::tempr_test(&web, &name, b.record_id).await?)
}

async fn dhis2(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Path(action): Path<String>,
) -> ApiResult {
    ok(json!({"result": pages::dhis2_do(&web, ctx.ip, &action).await?}))
}

async fn destination(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Path((id, action)): Path<(String, String)>,
) -> ApiResult {
    ok(json!({"result": pages::destination_do(&web, ctx.ip, &id, &action).await?}))
}

async fn audit(State(web): State<Shared>) -> ApiResult {
    ok(web.read(|c| q::audit_recent(c, 200)).await?)
}

async fn time(State(web): State<Shared>) -> ApiResult {
    let now = time::OffsetDateTime::now_utc();
    ok(json!({"unix": now.unix_timestamp(), "can_set": web.host.can_set_clock()}))
}

#[derive(serde::Deserialize)]
struct TimeBody {
    unix: i64,
}

async fn set_time(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Json(b): Json<TimeBody>,
) -> ApiResult {
    pages::set_time(&web, ctx.ip, b.unix).await?;
    ok(json!({"unix": b.unix}))
}

/// The config file and Temprs as one JSON file (secrets are in their own files, not in it).
pub async fn backup(State(web): State<Shared>) -> Result<Response, ApiError> {
    let config = web.config();
    let b = super::edit::backup(
        &web.config_path,
        config.dhis2.as_ref().map(|d| d.temprs_dir.as_path()),
    )
    .map_err(|e| WebError::Internal(e.to_string()))?;
    let name = format!(
        "attachment; filename=\"pocketgate-{}-backup.json\"",
        config
            .gateway
            .name
            .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_")
    );
    let body = serde_json::to_string_pretty(&b).map_err(|e| WebError::Internal(e.to_string()))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::CONTENT_DISPOSITION, name),
        ],
        body,
    )
        .into_response())
}

async fn restore(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Json(b): Json<super::edit::Backup>,
) -> Response {
    let n = b.temprs.len();
    match pages::apply_edit(
        &web,
        ctx.ip,
        "system.restore",
        format!("config and {n} Tempr file(s) restored"),
        move |p| super::edit::restore(p, &b),
    )
    .await
    {
        Ok(_) => Json(json!({"restored": true, "temprs": n})).into_response(),
        Err(e) => edit_failed(e),
    }
}

/// Prometheus text format (hand-written; every name starts with `pocketgate_`).
/// `/metrics` for a scraper without a session: `Authorization: Bearer <token>` matching
/// `[web] metrics_token_file`/`_env` of the current config (read per request, compared in
/// constant time). No token configured, or it cannot be read: only a session gets in.
pub fn metrics_bearer_ok(web: &super::Web, headers: &HeaderMap) -> bool {
    let Some(secret) = web.config().web.and_then(|w| w.metrics_token) else {
        return false;
    };
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    match secret.read() {
        Ok(token) => auth::same_token(given.trim(), &token),
        Err(why) => {
            warn!(error = %why, "the /metrics token cannot be read; only a session gets in");
            false
        }
    }
}

pub async fn metrics(State(web): State<Shared>) -> Result<Response, WebError> {
    let s = pages::status(&web).await?;
    let mut out = String::new();
    let mut family = |name: &str, help: &str, kind: &str| {
        out += &format!("# HELP {name} {help}\n# TYPE {name} {kind}\n");
    };
    family("pocketgate_messages", "Stored messages by status.", "gauge");
    let mut body = String::new();
    for (k, n) in &s.messages {
        body += &format!("pocketgate_messages{{status=\"{k}\"}} {n}\n");
    }
    out += &body;
    out += "# HELP pocketgate_outbox_requests DHIS2 requests in the outbox by status.\n# TYPE pocketgate_outbox_requests gauge\n";
    for (k, n) in &s.outbox {
        out += &format!("pocketgate_outbox_requests{{status=\"{k}\"}} {n}\n");
    }
    out += "# HELP pocketgate_source_messages_total Messages stored per source.\n# TYPE pocketgate_source_messages_total counter\n";
    for src in &s.sources {
        out += &format!(
            "pocketgate_source_messages_total{{source=\"{}\"}} {}\n",
            src.id, src.total
        );
    }
    out += "# HELP pocketgate_source_messages_today Messages stored per source since 00:00 UTC.\n# TYPE pocketgate_source_messages_today gauge\n";
    for src in &s.sources {
        out += &format!(
            "pocketgate_source_messages_today{{source=\"{}\"}} {}\n",
            src.id, src.today
        );
    }
    let up = u8::from(s.link.starts_with("up"));
    out += &format!(
        "# HELP pocketgate_dhis2_link_up 1 when the DHIS2 server answered last time.\n# TYPE pocketgate_dhis2_link_up gauge\npocketgate_dhis2_link_up {up}\n\
         # HELP pocketgate_sync_paused 1 while sync is paused.\n# TYPE pocketgate_sync_paused gauge\npocketgate_sync_paused {}\n\
         # HELP pocketgate_store_bytes Size of the database with its WAL.\n# TYPE pocketgate_store_bytes gauge\npocketgate_store_bytes {}\n\
         # HELP pocketgate_uptime_seconds Seconds since the web server started.\n# TYPE pocketgate_uptime_seconds counter\npocketgate_uptime_seconds {}\n",
        u8::from(s.paused.is_some()),
        pages::db_bytes(&web.db),
        s.uptime_s
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}
