//! The local web page and JSON API (axum): set up, watch and fix the gateway from a phone.
//!
//! - [`auth`]    admin password (argon2id), sessions, CSRF tokens, login rate limiting
//! - [`pages`]   server-rendered pages (minijinja templates compiled into the binary)
//! - [`api`]     `/api/v1/…` JSON for what the pages do, `/metrics` (Prometheus text)
//! - [`builder`] the Tempr builder page: dropdowns from the cached DHIS2 metadata
//! - [`capture`] capture mode: record an unknown serial port live, detect protocol and baud
//! - [`edit`]    config edits: validated like the file, written atomically with comments kept
//! - [`logs`]    the last log lines, kept in memory for the System page
//! - [`network`] the Network page and API: hotspot, uplinks, apply, scan (src/netcfg)
//! - [`host`]    the system-interface seam (setting the clock) so a laptop is never changed
//! - [`reboot`]  the System page's Reboot button, through netcfg's `System` seam
//!
//! Every route needs a session except the login/first-boot pages, static assets and the
//! captive-portal probes, which lead to the login page. One middleware ([`guard`]) checks the
//! session and the CSRF token of every state-changing request, so no handler can forget to.

pub mod api;
pub mod auth;
pub mod builder;
pub mod capture;
pub mod charts;
pub mod disk;
pub mod edit;
pub mod host;
pub mod logs;
pub mod network;
pub mod pages;
pub mod reboot;
pub mod temprs;

use crate::config::Config;
use crate::config::web::WebSettings;
use crate::record::SourceId;
use crate::store::{Reader, Store, StoreError};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Instant;
use tokio::net::TcpListener;
use tracing::{info, warn};

/// Largest request body the web page accepts (a backup with its Temprs fits easily).
pub const MAX_BODY_BYTES: usize = 4 << 20;
/// Records listed per search (CSV exports take up to [`MAX_EXPORT_ROWS`]).
pub const PAGE_ROWS: usize = 100;
pub const MAX_EXPORT_ROWS: usize = 100_000;

/// Phone operating systems fetch these to find a captive portal; each leads to the login page.
pub const PROBES: &[&str] = &[
    "/generate_204",
    "/gen_204",
    "/hotspot-detect.html",
    "/library/test/success.html",
    "/connecttest.txt",
    "/ncsi.txt",
    "/success.txt",
    "/canonical.html",
];

const SESSION_COOKIE: &str = "pg_session";
/// Double-submit token of the login and first-boot forms (no session exists yet).
const PRE_COOKIE: &str = "pg_pre";

/// Builds the DHIS2 client and render context from a config (app::sync_parts, handed in so
/// the web layer does not reach up into app).
pub type SyncParts =
    fn(
        &Config,
        &crate::config::Dhis2Settings,
    ) -> anyhow::Result<(crate::pipeline::RenderCtx, crate::sync::client::Dhis2Client)>;

/// Everything the handlers share.
pub struct Web {
    pub store: Store,
    pub db: PathBuf,
    pub config_path: PathBuf,
    config: RwLock<Config>,
    pub settings: WebSettings,
    pub auth: auth::Auth,
    templates: minijinja::Environment<'static>,
    reload: tokio::sync::mpsc::Sender<()>,
    listening: RwLock<Vec<(SourceId, SocketAddr)>>,
    pub host: host::Host,
    pub sync_parts: SyncParts,
    /// Serialises config and Tempr edits (read-modify-write of one file).
    pub edit_lock: tokio::sync::Mutex<()>,
    pub started: Instant,
    /// The running or last serial capture (one at a time).
    pub captures: capture::Captures,
}

pub type Shared = Arc<Web>;

impl Web {
    /// Set up the web state; applies `[web] initial_password_file` when no password is set yet.
    pub async fn new(
        store: Store,
        config_path: PathBuf,
        config: Config,
        reload: tokio::sync::mpsc::Sender<()>,
        sync_parts: SyncParts,
    ) -> anyhow::Result<Shared> {
        let settings = config.web.clone().unwrap_or_default();
        let db = config.store.path.clone();
        let web = Arc::new(Web {
            store,
            db,
            config_path,
            auth: auth::Auth::new(
                settings.session_lifetime,
                settings.login_attempts,
                settings.login_window,
            ),
            templates: pages::templates(),
            reload,
            listening: RwLock::new(Vec::new()),
            host: host::Host::from_settings(&settings),
            sync_parts,
            edit_lock: tokio::sync::Mutex::new(()),
            started: Instant::now(),
            captures: capture::Captures::default(),
            settings,
            config: RwLock::new(config),
        });
        web.initial_password().await?;
        Ok(web)
    }

    /// First boot with a password file (written when the SD image was made, printed on the
    /// label): its password becomes the admin password until someone changes it.
    async fn initial_password(&self) -> anyhow::Result<()> {
        let Some(file) = self.settings.initial_password_file.clone() else {
            return Ok(());
        };
        if self.read(crate::store::web::admin_hash).await?.is_some() {
            return Ok(());
        }
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                warn!(file = %file.display(), error = %e, "initial password file unreadable; the first visit will ask for a password");
                return Ok(());
            }
        };
        let password = text.lines().next().unwrap_or("").trim().to_owned();
        if password.is_empty() {
            return Ok(());
        }
        let hash = auth::hash_password(&password).map_err(|e| {
            anyhow::anyhow!(
                "web.initial_password_file {}: cannot hash it: {e}",
                file.display()
            )
        })?;
        let detail = format!("initial password from {}", file.display());
        self.store
            .write(move |tx| {
                crate::store::web::set_admin_hash(tx, &hash, "file")?;
                crate::store::web::audit(tx, "gateway", "password.initial", &detail)
            })
            .await?;
        info!(file = %file.display(), "admin password set from the initial password file");
        Ok(())
    }

    pub fn config(&self) -> Config {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A config edit was written: pages show it before the reload has run.
    pub fn set_config(&self, config: Config) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = config;
    }

    /// After a reload: the new config and the TCP servers that are bound.
    pub fn replace(&self, config: Config, listening: Vec<(SourceId, SocketAddr)>) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = config;
        *self.listening.write().unwrap_or_else(|e| e.into_inner()) = listening;
    }

    pub fn listening(&self) -> Vec<(SourceId, SocketAddr)> {
        self.listening
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Ask the app to load the config file again (after an edit was written).
    pub fn request_reload(&self) {
        let _ = self.reload.try_send(());
    }

    /// A read query on a fresh read-only connection, off the async threads.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, WebError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let reader = Reader::open(&db)?;
            f(reader.conn()).map_err(StoreError::Query)
        })
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?
        .map_err(WebError::Store)
    }

    /// Record a change in the audit log.
    pub async fn audit(&self, actor: IpAddr, action: &'static str, detail: String) {
        let actor = actor.to_string();
        if let Err(e) = self
            .store
            .write(move |tx| crate::store::web::audit(tx, &actor, action, &detail))
            .await
        {
            warn!(error = %e, action, "audit log write failed");
        }
    }

    pub fn render(&self, name: &str, ctx: minijinja::Value) -> Result<Response, WebError> {
        let t = self
            .templates
            .get_template(name)
            .map_err(|e| WebError::Internal(e.to_string()))?;
        let html = t
            .render(ctx)
            .map_err(|e| WebError::Internal(format!("{e:#}")))?;
        Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response())
    }
}

/// What a handler can fail with; each maps to one status code.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl WebError {
    fn status(&self) -> StatusCode {
        match self {
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::BadRequest(_) => StatusCode::UNPROCESSABLE_ENTITY,
            WebError::Store(_) | WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        if self.status().is_server_error() {
            warn!(error = %self, "web request failed");
        }
        let body = format!(
            "<!doctype html><meta name=viewport content=\"width=device-width\"><title>Error</title>\
             <p>{}</p><p><a href=\"/\">Back to the dashboard</a></p>",
            escape(&self.to_string())
        );
        (
            self.status(),
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response()
    }
}

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The session (and client address) of an authenticated request, put there by [`guard`].
#[derive(Debug, Clone)]
pub struct Ctx {
    pub ip: IpAddr,
    pub csrf: String,
}

/// The cookie value named `name`.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub fn set_cookie(web: &Web, name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
    let secure = if web.settings.secure_cookie {
        "; Secure"
    } else {
        ""
    };
    let age = max_age
        .map(|s| format!("; Max-Age={s}"))
        .unwrap_or_default();
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict{secure}{age}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn is_api(path: &str) -> bool {
    path.starts_with("/api/") || path == "/metrics"
}

fn unauthorized(path: &str, target: &str) -> Response {
    if is_api(path) {
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({"error": "log in first", "login": target})),
        )
            .into_response()
    } else {
        Redirect::to(target).into_response()
    }
}

/// The CSRF token a request carries: the `X-CSRF-Token` header, or the `csrf` field of a form
/// body (which is read here and handed on unchanged).
async fn carried_csrf(req: Request) -> Result<(Option<String>, Request), Response> {
    if let Some(t) = req
        .headers()
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
    {
        return Ok((Some(t.to_owned()), req));
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response())?;
    let form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let token = if form {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
            .ok()
            .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "csrf").map(|(_, v)| v))
    } else {
        None
    };
    Ok((token, Request::from_parts(parts, Body::from(bytes))))
}

fn forbidden() -> Response {
    (
        StatusCode::FORBIDDEN,
        "missing or wrong CSRF token: reload the page and try again",
    )
        .into_response()
}

/// The one gate in front of every route (see the module docs).
async fn guard(
    State(web): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_owned();
    if PROBES.contains(&path.as_str()) {
        return Redirect::to("/login").into_response();
    }
    if path.starts_with("/static/") || path == "/favicon.ico" {
        return next.run(req).await;
    }
    if path == "/metrics" && api::metrics_bearer_ok(&web, req.headers()) {
        return next.run(req).await;
    }
    let state_changing = !matches!(*req.method(), Method::GET | Method::HEAD);
    let has_password = match web.read(crate::store::web::admin_hash).await {
        Ok(h) => h.is_some(),
        Err(e) => return e.into_response(),
    };
    if path == "/login" || path == "/setup" {
        let setup = path == "/setup";
        if setup == has_password {
            // No password yet: everything leads to setup; once set, setup leads to login.
            return Redirect::to(if has_password { "/login" } else { "/setup" }).into_response();
        }
        if state_changing {
            let expected = cookie(req.headers(), PRE_COOKIE).map(str::to_owned);
            let (token, r) = match carried_csrf(req).await {
                Ok(x) => x,
                Err(resp) => return resp,
            };
            match (expected, token) {
                (Some(e), Some(t)) if auth::same_token(&e, &t) => req = r,
                _ => return forbidden(),
            }
        }
        req.extensions_mut().insert(peer.ip());
        return next.run(req).await;
    }
    if !has_password {
        return unauthorized(&path, "/setup");
    }
    let session =
        cookie(req.headers(), SESSION_COOKIE).and_then(|id| web.auth.get(id, Instant::now()));
    let Some(session) = session else {
        return unauthorized(&path, "/login");
    };
    if state_changing {
        let (token, r) = match carried_csrf(req).await {
            Ok(x) => x,
            Err(resp) => return resp,
        };
        if !token.is_some_and(|t| auth::same_token(&t, &session.csrf)) {
            return forbidden();
        }
        req = r;
    }
    req.extensions_mut().insert(Ctx {
        ip: peer.ip(),
        csrf: session.csrf,
    });
    next.run(req).await
}

/// Every route (pages, API, metrics) behind [`guard`].
pub fn router(web: Shared) -> Router {
    let mut r = Router::new()
        .route("/login", get(pages::login_page).post(pages::login))
        .route("/setup", get(pages::setup_page).post(pages::setup))
        .route("/logout", post(pages::logout))
        .route("/", get(pages::dashboard))
        .route("/records", get(pages::records))
        .route("/records.csv", get(pages::records_csv))
        .route("/records/{id}", get(pages::record))
        .route("/records/{id}/retry", post(pages::record_retry))
        .route("/records/{id}/rerender", post(pages::record_rerender))
        .route("/dhis2", get(pages::dhis2).post(pages::dhis2_save))
        .route("/dhis2/{action}", post(pages::dhis2_action))
        .route(
            "/destinations/{id}/{action}",
            post(pages::destination_action),
        )
        .route("/temprs", get(pages::temprs))
        .route("/temprs/new", get(builder::page).post(builder::create))
        .route("/temprs/{name}", get(pages::tempr).post(pages::tempr_save))
        .route("/temprs/{name}/versions", get(temprs::versions_page))
        .route("/temprs/{name}/versions/{v}", get(temprs::version_page))
        .route(
            "/temprs/{name}/versions/{v}/restore",
            post(temprs::restore_page),
        )
        .route("/devices", get(pages::devices).post(pages::device_save))
        .route("/devices/new", get(pages::device_new))
        .route("/devices/{id}", get(pages::device_edit))
        .route("/devices/{id}/enabled", post(pages::device_enabled))
        .route("/network", get(network::page).post(network::page_save))
        .route("/system", get(pages::system))
        .route("/system/time", post(pages::system_time))
        .route("/system/password", post(pages::system_password))
        .route("/system/reboot", post(reboot::reboot))
        .route("/system/metrics-token", post(reboot::metrics_token))
        .route("/system/backup", get(api::backup))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/static/app.css", get(pages::css))
        .route("/static/app.js", get(pages::js))
        .route("/metrics", get(api::metrics))
        .nest("/api/v1", api::routes().merge(temprs::api_routes()))
        .merge(capture::routes());
    for probe in PROBES {
        // Answered by the guard; the route exists so the path is not a 404 before it.
        r = r.route(probe, get(|| async { Redirect::to("/login") }));
    }
    r.layer(middleware::from_fn_with_state(web.clone(), guard))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(web)
}

/// Serve until the task is dropped.
pub async fn serve(listener: TcpListener, web: Shared) {
    let app = router(web).into_make_service_with_connect_info::<SocketAddr>();
    if let Err(e) = axum::serve(listener, app).await {
        warn!(error = %e, "web server stopped");
    }
}

/// Write `text` to `path` atomically: a temp file beside it, fsync, rename, fsync the directory.
/// A crash leaves either the old file or the new one, never half of one.
pub fn write_atomic(path: &Path, text: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.web-tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
