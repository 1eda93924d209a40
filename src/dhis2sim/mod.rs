//! A faithful DHIS2 test server (`dhis2-sim`): behaves like dhis2-core 2.36–2.42 for everything
//! the gateway touches, so the sync client can be tested, benchmarked and demonstrated without a
//! real DHIS2. The facts it reproduces are in `shared/reference/dhis2.md` (§8 is the checklist)
//! and its response bodies follow the verbatim samples in `shared/reference/dhis2-samples/`.
//!
//! Layers, one per file:
//! - [`auth`]       Basic / `ApiToken` / `JSESSIONID`, 302-to-login vs 401 (`X-Requested-With`)
//! - [`system`]     `/api/ping`, `/api/system/{ping,info,id}`, `/api/me`
//! - [`metadata`]   the fixture index, `fields=` / `filter=` / paging for the metadata reads
//! - [`tracker`]    `POST /api/tracker` (sync/async), validation, ImportReport per version, jobs
//! - [`events`]     legacy `POST /api/events` (2.36–2.41) with ImportSummaries
//! - [`datavalues`] `POST /api/dataValueSets` with ImportSummary (bare ≤2.37, WebMessage 2.38+)
//! - [`values`]     value-type and UID rules shared by the importers
//! - [`faults`]     per-test fault injection (5xx, proxy HTML 413/504, delays, dropped connections)
//! - [`state`]      what DHIS2 accepted, persisted atomically to `state_file`
//!
//! # Version profiles ([`Version`])
//! Everything version-dependent is a method on [`Version`] (`has_api_ping`, `login_path`,
//! `pat_enabled`, `bundle_status_and_stats`, `object_index`, `error_args`, `strict_enums`,
//! `malformed_json_is_400`, `uid_format_is_400`, `legacy_events`, `wraps_data_value_sets`,
//! `me_username`, `me_user_credentials`, `new_job_messages`, …), so the handlers never compare
//! version numbers themselves.
//!
//! # Admin API (not DHIS2; no authentication; prefix `/__sim/`)
//! - `GET /__sim/objects` → `{"trackedEntities":[…],"enrollments":[…],"events":[…],
//!   "relationships":[…],"dataValues":[…],"deleted":{"trackedEntities":[uid…],"enrollments":[…],
//!   "events":[…],"relationships":[…]}}`: the accepted objects as stored (flattened tracker
//!   objects as posted; legacy `/api/events` events converted to tracker field names), in
//!   acceptance order, soft-deleted ones only in `deleted`.
//! - `POST /__sim/reset` → forget all data, jobs, faults and stats.
//! - `GET /__sim/stats` → `{"totalRequests":n,"bytesIn":n,"bytesOut":n,"requests":{"/api/tracker":n,…},
//!   "requestsByRoute":{"POST /api/tracker":n,…}}` (admin requests are not counted; bytes are
//!   HTTP bodies). `DELETE /__sim/stats` resets the counters.
//! - `POST /__sim/faults` with one fault or an array of faults; `GET` lists the active ones;
//!   `DELETE /__sim/faults` clears them. A fault is
//!   `{"status":503,"count":3,"html":false,"delay_ms":…,"drop":false,"commit":false,
//!   "path":"/api/tracker","method":"POST","min_body_bytes":…,"retry_after":…}`; every field is
//!   optional. Without `path` a fault matches the import requests only (`POST /api/tracker`,
//!   `POST /api/events`, `POST /api/dataValueSets`); with `path` it matches every request whose
//!   path starts with it (and `method`, if given). `min_body_bytes` restricts it to larger
//!   bodies (nginx `client_max_body_size`). Without `count` it stays until deleted.
//!   Faults are consumed first-in first-out. What a matching request gets:
//!   * `commit:false` (default): sleep `delay_ms` (if any), then answer `status` (WebMessage JSON,
//!     or the nginx HTML page with `html:true`) or close the connection without an answer
//!     (`drop:true`), without importing anything; with only `delay_ms`, import normally afterwards.
//!   * `commit:true`: import and commit normally first, then sleep `delay_ms`, then answer
//!     `status` / drop / (with neither) send the real answer late — the classic duplicate trigger.
//!
//!   Examples: `{"status":503,"count":3}`, `{"status":413,"html":true}`,
//!   `{"status":504,"html":true,"commit":true}`, `{"delay_ms":5000,"count":1,"commit":true}`,
//!   `{"drop":true,"count":1,"commit":true}`, `{"status":500}`.
//!   Dropping needs [`serve`] (it owns the connections); under a bare [`router`] a drop answers 502.
//! - `POST /__sim/revoke-token` `{"token":"d2pat_…"}` → that PAT now gets 401.
//! - `POST /__sim/delete-event` `{"uid":"…"}` → soft delete (later imports get E1082).
//! - `POST /__sim/forget-jobs` → forget all tracker jobs (as a DHIS2 restart does).
//! - `POST /__sim/job-delay` `{"ms":200}` → how long an async tracker job takes (default 200 ms).
//!
//! Not modelled: the 2.41+ PAT checksum pre-check (a CRC32 over a NUL-padded buffer, see
//! dhis2.md §1.2 — a token is simply known or unknown here), PAT expiry/IP constraints, program
//! rules, relationships validation, idSchemes other than UID, ownership/sharing errors, XML/CSV
//! bodies, gzip bodies, and `timingsStats`. Jobs are kept in memory only (a restarted DHIS2
//! forgets them, so does the sim); data survives restarts through `state_file`.

pub mod auth;
pub mod datavalues;
pub mod events;
pub mod faults;
pub mod metadata;
pub mod state;
pub mod system;
pub mod tracker;
pub mod values;

#[cfg(test)]
mod tests;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Largest request body the sim reads (the reference nginx caps at 10 MB; use a fault with
/// `min_body_bytes` to reproduce that 413).
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// A DHIS2 release `2.<minor>.<patch>`; only 2.36–2.42 are modelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub minor: u32,
    pub patch: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("version {0:?} is not 2.36–2.42 (write it like 2.41.3)")]
    BadVersion(String),
    #[error("metadata fixture: {0}")]
    Metadata(String),
    #[error("state file {path}: {reason}")]
    StateFile { path: PathBuf, reason: String },
}

impl FromStr for Version {
    type Err = SimError;
    fn from_str(s: &str) -> Result<Self, SimError> {
        let bad = || SimError::BadVersion(s.to_string());
        let core = s.trim().trim_end_matches("-SNAPSHOT");
        let mut parts = core.split('.');
        if parts.next() != Some("2") {
            return Err(bad());
        }
        let minor: u32 = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        let patch: u32 = match parts.next() {
            Some(p) => p.parse().map_err(|_| bad())?,
            None => 0,
        };
        if parts.next().is_some() || !(36..=42).contains(&minor) {
            return Err(bad());
        }
        Ok(Version { minor, patch })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "2.{}.{}", self.minor, self.patch)
    }
}

/// The version profile: every behaviour that differs between releases (dhis2.md §0.1).
impl Version {
    pub const fn new(minor: u32, patch: u32) -> Self {
        Version { minor, patch }
    }
    fn at_least(self, minor: u32, patch: u32) -> bool {
        (self.minor, self.patch) >= (minor, patch)
    }
    /// Unauthenticated `GET /api/ping` (2.40+).
    pub fn has_api_ping(self) -> bool {
        self.minor >= 40
    }
    /// Where a credential-less browser-style request is redirected.
    pub fn login_path(self) -> &'static str {
        match self.minor {
            ..=40 => "/dhis-web-commons/security/login.action",
            41 => "/dhis-web-login",
            _ => "/dhis-web-login/",
        }
    }
    /// `Authorization: ApiToken …` understood (2.37 opt-in — assumed switched on —, 2.38+ default).
    pub fn pat_enabled(self) -> bool {
        self.minor >= 37
    }
    /// `bundleReport.status` and `bundleReport.stats` (≤2.39).
    pub fn bundle_status_and_stats(self) -> bool {
        self.minor <= 39
    }
    /// `bundleReport.empty` (2.40 only).
    pub fn bundle_empty(self) -> bool {
        self.minor == 40
    }
    /// `objectReports[].index` (≤2.40).
    pub fn object_index(self) -> bool {
        self.minor <= 40
    }
    /// `errorReports[].args` (2.41+).
    pub fn error_args(self) -> bool {
        self.minor >= 41
    }
    /// `validationReport.warningReports` serialised (seen in 2.42 docs; absent from ≤2.39 SDK fixtures).
    pub fn warning_reports(self) -> bool {
        self.minor >= 40
    }
    /// Unknown enum query values are 400 (2.38.3+, 2.39.1+, 2.40+) instead of silently defaulted.
    pub fn strict_enums(self) -> bool {
        self.at_least(40, 0)
            || (self.minor == 39 && self.patch >= 1)
            || (self.minor == 38 && self.patch >= 3)
    }
    /// Malformed JSON on `/api/tracker`: 400 (2.41+) instead of 500.
    pub fn malformed_json_is_400(self) -> bool {
        self.minor >= 41
    }
    /// A client UID in bad format is a 400 at JSON binding (2.42) instead of E1048.
    pub fn uid_format_is_400(self) -> bool {
        self.minor >= 42
    }
    /// `async` is a real boolean (2.42); before, only the literal `async=false` selects sync.
    pub fn async_is_boolean(self) -> bool {
        self.minor >= 42
    }
    /// Legacy `/api/events` exists (≤2.41).
    pub fn legacy_events(self) -> bool {
        self.minor <= 41
    }
    /// `POST /api/dataValueSets` answers with a WebMessage (2.38+; 2.38–2.41 not for `/api/37/…`).
    pub fn wraps_data_value_sets(self, api_version: Option<u32>) -> bool {
        match self.minor {
            ..=37 => false,
            42 => true,
            _ => api_version.is_none_or(|v| v >= 38),
        }
    }
    /// Aggregate conflicts carry `objects`, `errorCode`, `property`, `indexes` (2.37+).
    pub fn rich_conflicts(self) -> bool {
        self.minor >= 37
    }
    /// Top-level `username` in `/api/me` (2.38+).
    pub fn me_username(self) -> bool {
        self.minor >= 38
    }
    /// `userCredentials` in `/api/me` (≤2.41).
    pub fn me_user_credentials(self) -> bool {
        self.minor <= 41
    }
    /// Tracker job notifications in the 2.41+ style ("Import complete with status …").
    pub fn new_job_messages(self) -> bool {
        self.minor >= 41
    }
    /// Message of the 404 for a job report that is not ready.
    pub fn job_report_missing(self, job: &str) -> String {
        if self.minor <= 39 {
            format!("Object not found for uid: {job}")
        } else if self.minor == 40 && self.patch < 12 {
            format!("JobConfiguration with id {job} could not be found.")
        } else {
            format!("Summary for job {job} does not exist")
        }
    }
    /// E1302 arguments in the 2.41.9 / 2.42.5 style (value type + sentence) instead of (uid, key).
    pub fn e1302_new_args(self) -> bool {
        (self.minor == 41 && self.patch >= 9) || (self.minor == 42 && self.patch >= 5)
    }
    /// "already exists." wording: 2.42.5+ drops the comma (`Event: `X` already exists.`).
    pub fn exists_without_comma(self) -> bool {
        self.minor == 42 && self.patch >= 5
    }
}

/// What the sim serves and who may log in.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// DHIS2 release to imitate.
    pub version: Version,
    /// Basic-auth users as (username, password). PATs belong to the first user.
    pub users: Vec<(String, String)>,
    /// Personal access tokens accepted with `Authorization: ApiToken <token>` (2.37+).
    pub tokens: Vec<String>,
    /// The metadata fixture: `{"programs":[…],"dataSets":[…],"organisationUnits":[…],
    /// "trackedEntityTypes":[…]}` (optionally also `programStages`, `dataElements`,
    /// `optionSets`, `options`) in DHIS2's own field names.
    pub metadata: serde_json::Value,
    /// Where accepted data is kept across restarts (written atomically after every import).
    pub state_file: Option<PathBuf>,
}

/// Shared state of one running sim (cheap to clone).
#[derive(Clone)]
pub struct SimState(Arc<Inner>);

pub(crate) struct Inner {
    pub(crate) version: Version,
    pub(crate) users: Vec<(String, String)>,
    pub(crate) tokens: Mutex<Vec<String>>,
    pub(crate) meta: metadata::Metadata,
    pub(crate) store: Mutex<state::Store>,
    pub(crate) state_file: Option<PathBuf>,
    pub(crate) faults: Mutex<Vec<faults::Fault>>,
    pub(crate) stats: Mutex<Stats>,
    pub(crate) jobs: Mutex<HashMap<String, tracker::Job>>,
    pub(crate) sessions: Mutex<HashMap<String, String>>,
    pub(crate) job_delay_ms: AtomicU64,
}

#[derive(Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Stats {
    total_requests: u64,
    bytes_in: u64,
    bytes_out: u64,
    requests: std::collections::BTreeMap<String, u64>,
    requests_by_route: std::collections::BTreeMap<String, u64>,
}

/// Lock a mutex, ignoring poisoning (a panicked test thread must not wedge the server).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SimState {
    /// Index the metadata fixture and load `state_file` if it exists.
    pub fn new(cfg: SimConfig) -> Result<SimState, SimError> {
        let meta = metadata::Metadata::load(&cfg.metadata)?;
        let store = match &cfg.state_file {
            Some(path) => state::Store::load(path)?,
            None => state::Store::default(),
        };
        Ok(SimState(Arc::new(Inner {
            version: cfg.version,
            users: cfg.users,
            tokens: Mutex::new(cfg.tokens),
            meta,
            store: Mutex::new(store),
            state_file: cfg.state_file,
            faults: Mutex::new(Vec::new()),
            stats: Mutex::new(Stats::default()),
            jobs: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            job_delay_ms: AtomicU64::new(200),
        })))
    }

    pub fn version(&self) -> Version {
        self.0.version
    }

    /// What `GET /__sim/objects` returns.
    pub fn objects(&self) -> serde_json::Value {
        lock(&self.0.store).to_json()
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.0
    }

    /// Persist the store (called with the store lock held, right after a commit).
    pub(crate) fn persist(&self, store: &state::Store) {
        if let Some(path) = &self.0.state_file
            && let Err(e) = store.save(path)
        {
            tracing::warn!(path = %path.display(), error = %e, "dhis2-sim could not write its state file");
        }
    }
}

/// Run the sim on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, cfg: SimConfig) -> std::io::Result<()> {
    let state = SimState::new(cfg).map_err(std::io::Error::other)?;
    let app = router(state);
    axum::serve(
        KillableListener(listener),
        app.into_make_service_with_connect_info::<ConnCtl>(),
    )
    .await
}

/// The whole sim as a router (DHIS2 API + admin API + auth, stats and faults).
pub fn router(state: SimState) -> Router {
    let api = Router::new()
        .route("/api/ping", get(system::api_ping))
        .route("/api/system/ping", get(system::system_ping))
        .route("/api/system/info", get(system::system_info))
        .route("/api/system/id", get(system::system_id))
        .route("/api/system/uid", get(system::system_id))
        .route("/api/me", get(system::me))
        .route("/api/tracker", post(tracker::post_tracker))
        .route("/api/tracker/jobs/{id}", get(tracker::job_notifications))
        .route("/api/tracker/jobs/{id}/report", get(tracker::job_report))
        .route("/api/events", post(events::post_events))
        .route("/api/dataValueSets", post(datavalues::post_data_value_sets))
        .route("/api/{collection}", get(metadata::list))
        .route("/api/{collection}/{id}", get(metadata::single))
        .route("/__sim/objects", get(admin_objects))
        .route("/__sim/reset", post(admin_reset))
        .route("/__sim/stats", get(admin_stats).delete(admin_stats_reset))
        .route(
            "/__sim/faults",
            get(faults::list).post(faults::add).delete(faults::clear),
        )
        .route("/__sim/revoke-token", post(admin_revoke_token))
        .route("/__sim/delete-event", post(admin_delete_event))
        .route("/__sim/forget-jobs", post(admin_forget_jobs))
        .route("/__sim/job-delay", post(admin_job_delay))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state.clone());
    // The front middleware sits on an outer router so it runs *before* routing and can rewrite
    // versioned paths (`/api/37/dataValueSets` → `/api/dataValueSets`).
    Router::new()
        .fallback_service(api)
        .layer(middleware::from_fn_with_state(state, front))
}

/// The `/api/<n>/` version a request was addressed to, if any.
#[derive(Debug, Clone, Copy)]
pub struct ApiVersion(pub Option<u32>);

/// Request bookkeeping, versioned-path rewrite, faults, then authentication.
async fn front(State(st): State<SimState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return faults::nginx_html(StatusCode::PAYLOAD_TOO_LARGE),
    };
    let path = parts.uri.path().to_string();
    let admin = path.starts_with("/__sim/");
    if !admin {
        let mut s = lock(&st.0.stats);
        s.total_requests += 1;
        s.bytes_in += bytes.len() as u64;
        *s.requests.entry(path.clone()).or_default() += 1;
        *s.requests_by_route
            .entry(format!("{} {}", parts.method, path))
            .or_default() += 1;
    }
    let (path, api_version) = strip_api_version(&path);
    if api_version.is_some() {
        let pq = match parts.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
        };
        if let Ok(uri) = Uri::builder().path_and_query(pq).build() {
            parts.uri = uri;
        }
    }
    parts.extensions.insert(ApiVersion(api_version));
    let body_len = bytes.len();
    let req = Request::from_parts(parts, axum::body::Body::from(bytes));
    let resp = faults::apply(&st, req, body_len, next).await;
    if admin {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    lock(&st.0.stats).bytes_out += bytes.len() as u64;
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// `/api/41/tracker` → (`/api/tracker`, Some(41)).
fn strip_api_version(path: &str) -> (String, Option<u32>) {
    if let Some(rest) = path.strip_prefix("/api/") {
        let (seg, tail) = rest.split_once('/').unwrap_or((rest, ""));
        if !seg.is_empty()
            && seg.len() <= 3
            && seg.bytes().all(|b| b.is_ascii_digit())
            && let Ok(n) = seg.parse::<u32>()
        {
            return (format!("/api/{tail}"), Some(n));
        }
    }
    (path.to_string(), None)
}

/// Authenticated request gate, run after faults (see [`faults::apply`]).
pub(crate) async fn authorize(st: &SimState, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let open = path.starts_with("/__sim/")
        || !path.starts_with("/api")
        || (path == "/api/ping" && st.0.version.has_api_ping());
    if open {
        if !path.starts_with("/api") && !path.starts_with("/__sim/") {
            return login_page();
        }
        return next.run(req).await;
    }
    match auth::authenticate(st, req.headers()) {
        Ok(user) => {
            let cookie = user.set_cookie.clone();
            req.extensions_mut().insert(user);
            let mut resp = next.run(req).await;
            if let Some(c) = cookie
                && let Ok(v) = HeaderValue::from_str(&c)
            {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
            resp
        }
        Err(resp) => *resp,
    }
}

fn login_page() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html;charset=UTF-8")],
        "<!DOCTYPE html><html><head><title>DHIS 2</title></head><body><form>Login</form></body></html>",
    )
        .into_response()
}

async fn not_found(uri: Uri) -> Response {
    web_message(
        StatusCode::NOT_FOUND,
        "ERROR",
        Some(format!("No handler found for {}", uri.path())),
        None::<()>,
    )
}

/// DHIS2's `WebMessage` (field order from its `@JsonPropertyOrder`; nulls omitted).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WebMessage<R: Serialize> {
    pub http_status: &'static str,
    pub http_status_code: u16,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<R>,
}

pub(crate) fn web_message<R: Serialize>(
    code: StatusCode,
    status: &'static str,
    message: Option<String>,
    response: Option<R>,
) -> Response {
    let body = WebMessage {
        http_status: code.canonical_reason().unwrap_or("Unknown"),
        http_status_code: code.as_u16(),
        status,
        message,
        response,
    };
    json_response(code, &body)
}

pub(crate) fn error_message(code: StatusCode, message: impl Into<String>) -> Response {
    web_message(code, "ERROR", Some(message.into()), None::<()>)
}

/// Serialise `body` with DHIS2's content type.
pub(crate) fn json_response<T: Serialize + ?Sized>(code: StatusCode, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    json_bytes(code, bytes)
}

pub(crate) fn json_bytes(code: StatusCode, bytes: Vec<u8>) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json;charset=UTF-8")],
        bytes,
    )
        .into_response()
}

/// `http://host` as the client addressed us (for `Location`, `href`, pager links).
pub(crate) fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// Query string as a list of decoded pairs (duplicates kept, e.g. several `filter=`).
pub(crate) fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .map(|q| {
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn query_get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Now as DHIS2 writes timestamps: `yyyy-MM-dd'T'HH:mm:ss.SSS`.
pub(crate) fn now_string() -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]"
    );
    time::OffsetDateTime::now_utc()
        .format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000".into())
}

// ---------------------------------------------------------------------------------------------
// Admin handlers

async fn admin_objects(State(st): State<SimState>) -> Response {
    json_response(StatusCode::OK, &st.objects())
}

async fn admin_reset(State(st): State<SimState>) -> Response {
    {
        let mut store = lock(&st.0.store);
        *store = state::Store::default();
        st.persist(&store);
    }
    lock(&st.0.jobs).clear();
    lock(&st.0.faults).clear();
    *lock(&st.0.stats) = Stats::default();
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_stats(State(st): State<SimState>) -> Response {
    json_response(StatusCode::OK, &*lock(&st.0.stats))
}

async fn admin_stats_reset(State(st): State<SimState>) -> Response {
    *lock(&st.0.stats) = Stats::default();
    StatusCode::NO_CONTENT.into_response()
}

fn admin_field(body: &Bytes, key: &str) -> Option<serde_json::Value> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get(key).cloned())
}

async fn admin_revoke_token(State(st): State<SimState>, body: Bytes) -> Response {
    match admin_field(&body, "token").and_then(|v| v.as_str().map(str::to_string)) {
        Some(token) => {
            lock(&st.0.tokens).retain(|t| *t != token);
            StatusCode::NO_CONTENT.into_response()
        }
        None => error_message(StatusCode::BAD_REQUEST, "expected {\"token\": \"…\"}"),
    }
}

async fn admin_delete_event(State(st): State<SimState>, body: Bytes) -> Response {
    let Some(uid) = admin_field(&body, "uid").and_then(|v| v.as_str().map(str::to_string)) else {
        return error_message(StatusCode::BAD_REQUEST, "expected {\"uid\": \"…\"}");
    };
    let mut store = lock(&st.0.store);
    if store.soft_delete_event(&uid) {
        st.persist(&store);
        StatusCode::NO_CONTENT.into_response()
    } else {
        error_message(StatusCode::NOT_FOUND, format!("no event {uid}"))
    }
}

async fn admin_forget_jobs(State(st): State<SimState>) -> Response {
    lock(&st.0.jobs).clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_job_delay(State(st): State<SimState>, body: Bytes) -> Response {
    match admin_field(&body, "ms").and_then(|v| v.as_u64()) {
        Some(ms) => {
            st.0.job_delay_ms.store(ms, Ordering::Relaxed);
            StatusCode::NO_CONTENT.into_response()
        }
        None => error_message(StatusCode::BAD_REQUEST, "expected {\"ms\": 200}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Connections that a handler can cut (for the `drop` fault).

/// A `TcpListener` whose connections carry a kill switch.
pub(crate) struct KillableListener(pub TcpListener);

/// A connection that fails every read and write once its kill switch is set, so hyper closes it
/// without having written a response.
pub(crate) struct KillableIo {
    inner: TcpStream,
    kill: Arc<AtomicBool>,
}

/// Per-connection handle given to handlers through `ConnectInfo`.
#[derive(Clone, Debug)]
pub(crate) struct ConnCtl {
    kill: Arc<AtomicBool>,
    #[allow(dead_code)]
    remote: SocketAddr,
}

impl ConnCtl {
    pub(crate) fn kill(&self) {
        self.kill.store(true, Ordering::SeqCst);
    }
}

pub(crate) fn conn_ctl(req: &Request) -> Option<ConnCtl> {
    req.extensions()
        .get::<ConnectInfo<ConnCtl>>()
        .map(|c| c.0.clone())
}

impl axum::serve::Listener for KillableListener {
    type Io = KillableIo;
    type Addr = SocketAddr;
    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((inner, addr)) => {
                    let _ = inner.set_nodelay(true);
                    let io = KillableIo {
                        inner,
                        kill: Arc::new(AtomicBool::new(false)),
                    };
                    return (io, addr);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "dhis2-sim accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
        }
    }
    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, KillableListener>>
    for ConnCtl
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, KillableListener>) -> Self {
        ConnCtl {
            kill: stream.io().kill.clone(),
            remote: *stream.remote_addr(),
        }
    }
}

fn killed() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "dropped by dhis2-sim fault",
    )
}

impl AsyncRead for KillableIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.kill.load(Ordering::SeqCst) {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.kill.load(Ordering::SeqCst) {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.kill.load(Ordering::SeqCst) {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
