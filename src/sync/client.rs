//! The HTTP client for one DHIS2 server: builds URLs, sends requests, reads bounded bodies and
//! hands the answer to [`classify`]. It keeps no state beyond its connection pool; the caller
//! (sync) owns retries, backoff and the outbox.
//!
//! Decisions, each from `shared/reference/dhis2.md`:
//! - **Redirects are never followed** (§1.1): without credentials DHIS2 answers 302 to its login
//!   page; a client that follows it gets a 200 HTML page and would think the server is up.
//! - **No `X-Requested-With: XMLHttpRequest`.** That header would turn the 302 into a 401 JSON.
//!   We send credentials on every call, so a 302 can only mean they were not seen at all (a proxy
//!   stripping `Authorization`, a wrong path outside `/api`); keeping it distinct from 401 "wrong
//!   credentials" gives the user the better hint. Both pause sync.
//! - **`async=false` literally** on `/api/tracker`: ≤2.41 select sync only by that exact query
//!   (§0.1); `importStrategy=CREATE_AND_UPDATE` always, so a resend after a lost answer updates
//!   instead of duplicating (§3).
//! - **rustls + the system CA bundle ([`super::trust`]) + an optional extra CA**, hickory DNS (no libc resolver), no
//!   gzip request bodies (DHIS2 cannot read them on `/api/tracker`, §6).
//! - **Bodies are bounded** both ways by `max_body_bytes` (nginx's reference cap is 10 MiB, §6).
//! - **Secrets** live in [`Secret`], whose `Debug`/`Display` print `***`; the `Authorization`
//!   header value is marked sensitive; no error text includes it.
//! - **TLS certificate errors** are found by walking the error's source chain to the
//!   `std::io::Error` that tokio-rustls produces (`ErrorKind::InvalidData`, inner
//!   `rustls::Error::InvalidCertificate`, displayed "invalid peer certificate: …"). The crate has no
//!   direct `rustls` dependency to downcast to, so the inner error is recognised by that display
//!   prefix; any other `InvalidData` during connect is a TLS failure of another kind. Both pause.

use crate::record::{Dhis2Request, Endpoint};
use crate::sync::classify::{self, JobState, Outcome, classify, classify_job_report};
use reqwest::header::{self, HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::error::Error as StdError;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A credential. `Debug` and `Display` print `***`; only [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself — only for building the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How the gateway authenticates (§1): Basic everywhere, Personal Access Token from 2.37/2.38.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    Basic {
        username: String,
        password: Secret,
    },
    /// Sent as `Authorization: ApiToken <token>` (not `Bearer`, which DHIS2 treats as OIDC).
    Token(Secret),
}

/// Resolved client settings (config has already validated them).
#[derive(Clone)]
pub struct ClientSettings {
    /// Server root including any context path, e.g. `https://dhis.example.org` or
    /// `https://example.org/dhis`; no credentials in it.
    pub base_url: String,
    pub auth: Auth,
    /// Whole-request budget (connect + send + wait + read). Default 60 s: nginx's
    /// `proxy_read_timeout` answers 504 at 60 s anyway (§6).
    pub timeout: Duration,
    /// TCP + TLS connect budget. Default 15 s.
    pub connect_timeout: Duration,
    /// PEM certificate(s) to trust besides the system CA bundle (a ministry's own CA).
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Largest request or response body, in bytes. Default 10 MiB (nginx reference cap, §6).
    pub max_body_bytes: usize,
}

impl ClientSettings {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
    pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

    /// Settings with the defaults above.
    pub fn new(base_url: impl Into<String>, auth: Auth) -> Self {
        ClientSettings {
            base_url: base_url.into(),
            auth,
            timeout: Self::DEFAULT_TIMEOUT,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            extra_ca_pem: None,
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
        }
    }
}

impl fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSettings")
            .field("base_url", &self.base_url)
            .field("auth", &self.auth)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field(
                "extra_ca_pem",
                &self
                    .extra_ca_pem
                    .as_ref()
                    .map(|p| format!("{} bytes", p.len())),
            )
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

/// Per-send choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SendOptions {
    /// Tracker / dataValueSets: let DHIS2 import in the background and answer with a job id
    /// (`Outcome::Job`). Ignored for legacy `/api/events`.
    pub async_mode: bool,
    /// Tracker: `atomicMode=OBJECT` (valid objects commit, invalid ones are listed) instead of
    /// `ALL` (one error → nothing committed).
    pub atomic_object: bool,
}

/// What came back, besides its meaning.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseMeta {
    pub status: u16,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub location: Option<String>,
    /// `Retry-After` in seconds, when a 429/503 carried one.
    pub retry_after: Option<Duration>,
    /// `WWW-Authenticate` (DHIS2 sends `ApiToken` when it refuses a token, §1.2).
    pub www_authenticate: Option<String>,
    pub body: ResponseBody,
}

/// A response body: JSON when it parses, otherwise the raw bytes (nginx HTML, `pong`).
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseBody {
    Empty,
    Json(Value),
    Raw(Vec<u8>),
}

impl ResponseBody {
    fn from_bytes(bytes: &[u8]) -> Self {
        if bytes.is_empty() {
            return ResponseBody::Empty;
        }
        match serde_json::from_slice(bytes) {
            Ok(v) => ResponseBody::Json(v),
            Err(_) => ResponseBody::Raw(bytes.to_vec()),
        }
    }
}

/// Result of a link probe ([`Dhis2Client::ping`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// The server answered. `credentials_checked` is false when only the unauthenticated
    /// `/api/ping` (2.40+) was asked.
    Up { credentials_checked: bool },
    /// The server answered but refused our credentials (401/403/302 to login): pause sync.
    Unauthorized { why: String },
    /// The server (or its proxy) answered with an error status (5xx, 404 on both probes …).
    Degraded { status: u16 },
}

/// A DHIS2 version as `/api/system/info` reports it (`"2.41.0"`, `"2.42-SNAPSHOT"`,
/// `"2.39.1.1"` hot-fix builds take the first three numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dhis2Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Dhis2Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Dhis2Version {
            major,
            minor,
            patch,
        }
    }

    /// `GET /api/ping` exists, unauthenticated (2.40+).
    pub fn has_api_ping(&self) -> bool {
        *self >= Dhis2Version::new(2, 40, 0)
    }

    /// Legacy `/api/events` exists (2.36–2.41; removed in 2.42).
    pub fn has_legacy_events(&self) -> bool {
        *self < Dhis2Version::new(2, 42, 0)
    }

    /// `POST /api/dataValueSets` answers with a WebMessage (200/409) rather than a bare
    /// ImportSummary (always 200) — 2.38+.
    pub fn wraps_data_value_import(&self) -> bool {
        *self >= Dhis2Version::new(2, 38, 0)
    }
}

impl fmt::Display for Dhis2Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for Dhis2Version {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let core = s.trim().split(['-', '+', ' ']).next().unwrap_or("");
        let mut nums = core.split('.').map(|p| p.parse::<u32>());
        let bad = || format!("not a DHIS2 version: {s:?}");
        let major = nums.next().and_then(Result::ok).ok_or_else(bad)?;
        let minor = nums.next().and_then(Result::ok).ok_or_else(bad)?;
        let patch = match nums.next() {
            None => 0,
            Some(p) => p.map_err(|_| bad())?,
        };
        Ok(Dhis2Version {
            major,
            minor,
            patch,
        })
    }
}

/// The parts of `/api/system/info` the gateway uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemInfo {
    pub version: Dhis2Version,
    /// The string as sent (`"2.42-SNAPSHOT"`).
    pub version_text: String,
    pub revision: Option<String>,
    pub system_id: Option<String>,
    pub system_name: Option<String>,
    pub server_date: Option<String>,
    pub server_time_zone_id: Option<String>,
    pub context_path: Option<String>,
}

/// The authenticated user (`/api/me`), username from wherever this version puts it (§0.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Me {
    pub id: String,
    pub username: Option<String>,
    /// Capture scope (E1000 pre-check): `(id, path)`.
    pub organisation_units: Vec<(String, Option<String>)>,
}

/// `fields=` for `/api/system/info`.
pub const SYSTEM_INFO_FIELDS: &str =
    "version,revision,systemId,systemName,serverDate,serverTimeZoneId,contextPath";
/// `fields=` for `/api/me`: `username` (2.38+) and `userCredentials[username]` (≤2.41).
pub const ME_FIELDS: &str = "id,username,userCredentials[username],organisationUnits[id,path]";

/// What failed, with the decision attached ([`ClientError::outcome`]).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("DHIS2 base URL {url:?} is not usable: {why}")]
    BadBaseUrl { url: String, why: String },
    #[error("the extra CA certificate is not usable PEM: {detail}")]
    BadCaCertificate { detail: String },
    #[error("nothing to check the server's TLS certificate against: {detail}")]
    NoCaCertificates { detail: String },
    #[error("could not build the HTTP client: {detail}")]
    Build { detail: String },
    #[error("{what} is not a valid request: {why}")]
    BadRequest { what: String, why: String },
    #[error("request body is {bytes} bytes, over the {limit}-byte limit ({objects} objects)")]
    RequestTooLarge {
        bytes: usize,
        limit: usize,
        objects: usize,
    },
    #[error("answer from {path} is over the {limit}-byte limit")]
    ResponseTooLarge { path: String, limit: usize },
    #[error("could not connect to DHIS2 for {path}: {detail}")]
    Connect { path: String, detail: String },
    #[error("DHIS2's TLS certificate was not accepted ({path}): {detail}")]
    TlsCertificate { path: String, detail: String },
    #[error("TLS with DHIS2 failed ({path}): {detail}")]
    Tls { path: String, detail: String },
    #[error("{path} timed out (budget {budget:?})")]
    Timeout { path: String, budget: Duration },
    #[error("transport error on {path}: {detail}")]
    Transport { path: String, detail: String },
    #[error("{path} answered HTTP {status}: {}", outcome_text(.outcome))]
    Status {
        path: String,
        status: u16,
        outcome: Outcome,
    },
    #[error("{path} answered with a body that is not the expected JSON: {detail}")]
    Decode { path: String, detail: String },
}

fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Retry { why, .. } | Outcome::Pause { why } => why.clone(),
        Outcome::Rejected(errs) => errs
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; "),
        other => other.kind().to_string(),
    }
}

impl ClientError {
    /// What the sync loop should do about this failure.
    pub fn outcome(&self) -> Outcome {
        let why = self.to_string();
        match self {
            ClientError::Connect { .. }
            | ClientError::Timeout { .. }
            | ClientError::Transport { .. }
            | ClientError::Decode { .. } => Outcome::Retry { why, split: false },
            ClientError::ResponseTooLarge { .. } => Outcome::Retry { why, split: true },
            ClientError::RequestTooLarge { objects, .. } if *objects > 1 => {
                Outcome::Retry { why, split: true }
            }
            ClientError::RequestTooLarge { .. } => {
                Outcome::Rejected(vec![object_error("Payload Too Large", why)])
            }
            ClientError::BadRequest { .. } => {
                Outcome::Rejected(vec![object_error("Bad Request", why)])
            }
            ClientError::TlsCertificate { .. }
            | ClientError::Tls { .. }
            | ClientError::BadBaseUrl { .. }
            | ClientError::BadCaCertificate { .. }
            | ClientError::NoCaCertificates { .. }
            | ClientError::Build { .. } => Outcome::Pause { why },
            ClientError::Status { outcome, .. } => outcome.clone(),
        }
    }
}

fn object_error(code: &str, message: String) -> classify::ObjectError {
    classify::ObjectError {
        code: code.into(),
        uid: None,
        object_type: None,
        message,
    }
}

/// One DHIS2 server.
pub struct Dhis2Client {
    http: reqwest::Client,
    /// Without trailing slash.
    base: String,
    auth: HeaderValue,
    timeout: Duration,
    max_body_bytes: usize,
}

impl fmt::Debug for Dhis2Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dhis2Client")
            .field("base", &self.base)
            .field("auth", &"***")
            .field("timeout", &self.timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

impl Dhis2Client {
    pub fn new(settings: ClientSettings) -> Result<Self, ClientError> {
        let base = check_base_url(&settings.base_url)?;
        let mut auth = match &settings.auth {
            Auth::Basic { username, password } => {
                use base64::Engine;
                let raw = format!("{username}:{}", password.expose());
                let enc = base64::engine::general_purpose::STANDARD.encode(raw);
                HeaderValue::from_str(&format!("Basic {enc}"))
            }
            Auth::Token(t) => HeaderValue::from_str(&format!("ApiToken {}", t.expose().trim())),
        }
        .map_err(|_| ClientError::Build {
            detail: "the credential contains characters not allowed in an HTTP header".into(),
        })?;
        auth.set_sensitive(true);

        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let http = http_client(&HttpClientSettings {
            base: &base,
            timeout: settings.timeout,
            connect_timeout: settings.connect_timeout,
            extra_ca_pem: settings.extra_ca_pem.as_deref(),
            ca_key: "dhis2.extra_ca_file",
            headers,
        })?;
        Ok(Dhis2Client {
            http,
            base,
            auth,
            timeout: settings.timeout,
            max_body_bytes: settings.max_body_bytes,
        })
    }

    /// Is the server there? `/api/ping` (2.40+, unauthenticated, 200 empty) first; anything but
    /// 200 there (older servers redirect or 404) falls back to the authenticated
    /// `/api/system/ping` (200 `pong`; 302 = no credentials seen, 401 = wrong ones; §2.1).
    pub async fn ping(&self) -> Result<LinkState, ClientError> {
        let (status, _) = self.raw_get("/api/ping", false).await?;
        if status == 200 {
            return Ok(LinkState::Up {
                credentials_checked: false,
            });
        }
        let (status, meta) = self.raw_get("/api/system/ping", true).await?;
        Ok(match status {
            200..=299 => LinkState::Up {
                credentials_checked: true,
            },
            300..=399 | 401 | 403 => {
                let body = match &meta.body {
                    ResponseBody::Json(v) => serde_json::to_vec(v).unwrap_or_default(),
                    _ => Vec::new(),
                };
                match classify(Endpoint::Get, status, meta.location.as_deref(), &body) {
                    Outcome::Pause { why } => LinkState::Unauthorized { why },
                    other => LinkState::Unauthorized {
                        why: other.kind().into(),
                    },
                }
            }
            s => LinkState::Degraded { status: s },
        })
    }

    /// `GET /api/system/info` → version etc.
    pub async fn system_info(&self) -> Result<SystemInfo, ClientError> {
        let path = format!("/api/system/info?fields={SYSTEM_INFO_FIELDS}");
        let v = self.get_json(&path).await?;
        parse_system_info(&v).map_err(|detail| ClientError::Decode { path, detail })
    }

    /// `GET /api/me` → who we are and our capture org units.
    pub async fn me(&self) -> Result<Me, ClientError> {
        let path = format!("/api/me?fields={ME_FIELDS}");
        let v = self.get_json(&path).await?;
        parse_me(&v).map_err(|detail| ClientError::Decode { path, detail })
    }

    /// `GET` a path below the server root (`/api/...`) and parse JSON; non-2xx is
    /// [`ClientError::Status`] with the classified outcome.
    pub async fn get_json(&self, path: &str) -> Result<Value, ClientError> {
        let (status, meta) = self.raw_get(path, true).await?;
        let clean = path_only(path);
        if !(200..=299).contains(&status) {
            let body = body_bytes(&meta.body);
            let outcome = classify(Endpoint::Get, status, meta.location.as_deref(), &body);
            return Err(ClientError::Status {
                path: clean,
                status,
                outcome,
            });
        }
        match meta.body {
            ResponseBody::Json(v) => Ok(v),
            ResponseBody::Empty => Err(ClientError::Decode {
                path: clean,
                detail: "empty body".into(),
            }),
            ResponseBody::Raw(b) => Err(ClientError::Decode {
                path: clean,
                detail: format!("{} bytes of non-JSON", b.len()),
            }),
        }
    }

    /// Send one rendered request and classify the answer. Transport failures are errors (see
    /// [`ClientError::outcome`]); every HTTP answer, good or bad, is an `Ok` outcome.
    pub async fn send(
        &self,
        req: &Dhis2Request,
        opts: &SendOptions,
    ) -> Result<(Outcome, ResponseMeta), ClientError> {
        let path = request_path(req, opts)?;
        let (method, body) = match req.endpoint {
            Endpoint::Get => (reqwest::Method::GET, None),
            _ => {
                let bytes = serde_json::to_vec(&req.body).map_err(|e| ClientError::BadRequest {
                    what: "request body".into(),
                    why: e.to_string(),
                })?;
                if bytes.len() > self.max_body_bytes {
                    return Err(ClientError::RequestTooLarge {
                        bytes: bytes.len(),
                        limit: self.max_body_bytes,
                        objects: object_count(req),
                    });
                }
                (reqwest::Method::POST, Some(bytes))
            }
        };
        let meta = self.exchange(method, &path, body, true).await?;
        let body = body_bytes(&meta.body);
        let outcome = match api_token_refused(&meta) {
            Some(why) => Outcome::Pause { why },
            None => classify(req.endpoint, meta.status, meta.location.as_deref(), &body),
        };
        Ok((outcome, meta))
    }

    /// Poll an async job from [`Outcome::Job`]. `endpoint` says whose job it is (tracker or
    /// dataValueSets). Returns `Outcome::Job` while it runs, the import outcome once done, and
    /// `Retry` while the report is not there yet (404) or the poll failed transiently. After the
    /// caller's poll budget, resending the request is safe (CREATE_AND_UPDATE); a server restart
    /// forgets jobs (§2.2).
    pub async fn poll_job(
        &self,
        endpoint: Endpoint,
        id: &str,
    ) -> Result<(Outcome, ResponseMeta), ClientError> {
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ClientError::BadRequest {
                what: format!("job id {id:?}"),
                why: "not a DHIS2 id".into(),
            });
        }
        let (notes, report) = match endpoint {
            Endpoint::Tracker => (
                format!("/api/tracker/jobs/{id}"),
                format!("/api/tracker/jobs/{id}/report?reportMode=ERRORS"),
            ),
            Endpoint::DataValueSets => (
                format!("/api/system/tasks/DATAVALUE_IMPORT/{id}"),
                format!("/api/system/taskSummaries/DATAVALUE_IMPORT/{id}"),
            ),
            other => {
                return Err(ClientError::BadRequest {
                    what: format!("polling a {other:?} job"),
                    why: "only tracker and dataValueSets imports run as jobs".into(),
                });
            }
        };
        let meta = self
            .exchange(reqwest::Method::GET, &notes, None, true)
            .await?;
        let body = body_bytes(&meta.body);
        if !(200..=299).contains(&meta.status) {
            let outcome = classify_job_report(endpoint, meta.status, &body);
            return Ok((outcome, meta));
        }
        if classify::classify_job_notifications(&body) == JobState::Running {
            return Ok((Outcome::Job { id: id.to_string() }, meta));
        }
        let meta = self
            .exchange(reqwest::Method::GET, &report, None, true)
            .await?;
        let body = body_bytes(&meta.body);
        Ok((classify_job_report(endpoint, meta.status, &body), meta))
    }

    async fn raw_get(&self, path: &str, auth: bool) -> Result<(u16, ResponseMeta), ClientError> {
        let meta = self
            .exchange(reqwest::Method::GET, path, None, auth)
            .await?;
        Ok((meta.status, meta))
    }

    /// One HTTP exchange with a bounded answer.
    async fn exchange(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        auth: bool,
    ) -> Result<ResponseMeta, ClientError> {
        if !path.starts_with("/api/") || path.contains("://") || path.contains(['\r', '\n']) {
            return Err(ClientError::BadRequest {
                what: format!("path {:?}", path_only(path)),
                why: "must start with /api/".into(),
            });
        }
        let url = format!("{}{}", self.base, encode_query_brackets(path));
        let clean = path_only(path);
        let bytes_sent = body.as_ref().map_or(0, |b| b.len() as u64);
        let mut rb = self.http.request(method, &url);
        if auth {
            rb = rb.header(header::AUTHORIZATION, self.auth.clone());
        }
        if let Some(b) = body {
            rb = rb.header(header::CONTENT_TYPE, "application/json").body(b);
        }
        let mut resp = rb
            .send()
            .await
            .map_err(|e| self.transport_error(&clean, &e))?;
        let status = resp.status().as_u16();
        let text_header = |name: header::HeaderName| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let location = text_header(header::LOCATION);
        let retry_after = text_header(header::RETRY_AFTER)
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let www_auth = text_header(header::WWW_AUTHENTICATE);
        if resp
            .content_length()
            .is_some_and(|n| n > self.max_body_bytes as u64)
        {
            return Err(ClientError::ResponseTooLarge {
                path: clean,
                limit: self.max_body_bytes,
            });
        }
        let buf = match read_bounded(&mut resp, self.max_body_bytes).await {
            Ok(Bounded::Whole(buf)) => buf,
            Ok(Bounded::Cut(_)) => {
                return Err(ClientError::ResponseTooLarge {
                    path: clean,
                    limit: self.max_body_bytes,
                });
            }
            Err(e) => return Err(self.transport_error(&clean, &e)),
        };
        let meta = ResponseMeta {
            status,
            bytes_sent,
            bytes_received: buf.len() as u64,
            location,
            retry_after,
            www_authenticate: www_auth,
            body: ResponseBody::from_bytes(&buf),
        };
        Ok(meta)
    }

    fn transport_error(&self, path: &str, e: &reqwest::Error) -> ClientError {
        let path = path.to_string();
        let detail = chain_text(e);
        if e.is_timeout() {
            return ClientError::Timeout {
                path,
                budget: self.timeout,
            };
        }
        if let Some(tls) = tls_failure(e) {
            return match tls {
                Tls::Certificate(detail) => ClientError::TlsCertificate { path, detail },
                Tls::Other(detail) => ClientError::Tls { path, detail },
            };
        }
        if e.is_connect() {
            return ClientError::Connect { path, detail };
        }
        ClientError::Transport { path, detail }
    }
}

/// What [`http_client`] needs: everything that differs between DHIS2 and a destination.
pub(super) struct HttpClientSettings<'a> {
    /// The checked base URL (an `https:` one needs something to check the certificate against).
    pub base: &'a str,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub extra_ca_pem: Option<&'a [u8]>,
    /// The config key that gives the extra CA, named in the "no CA certificates" error.
    pub ca_key: &'a str,
    pub headers: HeaderMap,
}

/// The one way pocketgate builds an outbound HTTP client (DHIS2's and each destination's, see
/// the module docs): rustls with the system CA bundle (trust.rs) plus an optional extra CA, no
/// compiled-in roots, hickory DNS, redirects never followed, a whole-request and a connect budget.
pub(super) fn http_client(s: &HttpClientSettings<'_>) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .hickory_dns(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(s.timeout)
        .connect_timeout(s.connect_timeout)
        .default_headers(s.headers.clone())
        .user_agent(concat!("pocketgate/", env!("CARGO_PKG_VERSION")));
    // The system bundle (trust.rs), plus the extra CA below. An https URL with neither
    // cannot be checked, so it is a configuration error now rather than a failed handshake.
    let roots = super::trust::system_roots();
    if let Some(why) = roots.missing()
        && s.base.starts_with("https:")
        && s.extra_ca_pem.is_none()
    {
        return Err(ClientError::NoCaCertificates {
            detail: format!("{why} ({})", s.ca_key),
        });
    }
    for der in &roots.certs {
        if let Ok(c) = reqwest::Certificate::from_der(der) {
            builder = builder.add_root_certificate(c);
        }
    }
    if let Some(pem) = s.extra_ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
            ClientError::BadCaCertificate {
                detail: chain_text(&e),
            }
        })?;
        if certs.is_empty() {
            return Err(ClientError::BadCaCertificate {
                detail: "no CERTIFICATE block found".into(),
            });
        }
        for c in certs {
            builder = builder.add_root_certificate(c);
        }
    }
    builder.build().map_err(|e| ClientError::Build {
        detail: chain_text(&e),
    })
}

/// A body read with a limit: all of it, or the first `limit` bytes of a longer one.
pub(super) enum Bounded {
    Whole(Vec<u8>),
    Cut(Vec<u8>),
}

/// Read `resp`'s body, stopping at `limit` bytes (the rest is never buffered).
pub(super) async fn read_bounded(
    resp: &mut reqwest::Response,
    limit: usize,
) -> Result<Bounded, reqwest::Error> {
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if buf.len() + chunk.len() > limit {
            buf.extend_from_slice(&chunk[..limit - buf.len()]);
            return Ok(Bounded::Cut(buf));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bounded::Whole(buf))
}

/// DHIS2 refused our API token: 400 (malformed / checksum, 2.41+) or 401 with
/// `WWW-Authenticate: ApiToken` (§1.2). A 400 would otherwise read as a bad payload.
fn api_token_refused(meta: &ResponseMeta) -> Option<String> {
    let token_challenge = meta
        .www_authenticate
        .as_deref()
        .is_some_and(|w| w.trim_start().to_ascii_lowercase().starts_with("apitoken"));
    (token_challenge && matches!(meta.status, 400 | 401)).then(|| {
        let msg = match &meta.body {
            ResponseBody::Json(v) => v.get("message").and_then(Value::as_str).unwrap_or(""),
            _ => "",
        };
        format!(
            "HTTP {}: DHIS2 refused the API token ({msg}); check or renew the token",
            meta.status
        )
    })
}

pub(super) enum Tls {
    Certificate(String),
    Other(String),
}

/// Find a TLS failure in the source chain (see the module docs). `io::Error::source` skips the
/// error it wraps, so wrapped errors are followed through `get_ref` too.
pub(super) fn tls_failure(e: &(dyn StdError + 'static)) -> Option<Tls> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    let mut depth = 0;
    while let Some(err) = cur {
        depth += 1;
        if depth > 32 {
            break;
        }
        let Some(io) = err.downcast_ref::<std::io::Error>() else {
            cur = err.source();
            continue;
        };
        if io.kind() == std::io::ErrorKind::InvalidData {
            let text = io
                .get_ref()
                .map_or_else(|| io.to_string(), |inner| inner.to_string());
            return Some(if text.starts_with("invalid peer certificate") {
                Tls::Certificate(text)
            } else {
                Tls::Other(text)
            });
        }
        cur = match io.get_ref() {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => err.source(),
        };
    }
    None
}

/// `outer: inner: innermost`, without repeating reqwest's URL-bearing top line.
pub(super) fn chain_text(e: &(dyn StdError + 'static)) -> String {
    let mut parts = Vec::new();
    let mut cur = e.source();
    while let Some(err) = cur {
        let t = err.to_string();
        if !parts.contains(&t) {
            parts.push(t);
        }
        cur = err.source();
    }
    if parts.is_empty() {
        // Strip the URL reqwest appends (`… for url (http://…)`); keep the reason.
        let t = e.to_string();
        return t.split(" for url (").next().unwrap_or(&t).to_string();
    }
    parts.join(": ")
}

fn body_bytes(b: &ResponseBody) -> Vec<u8> {
    match b {
        ResponseBody::Empty => Vec::new(),
        ResponseBody::Json(v) => serde_json::to_vec(v).unwrap_or_default(),
        ResponseBody::Raw(r) => r.clone(),
    }
}

fn path_only(path: &str) -> String {
    path.split('?').next().unwrap_or(path).to_string()
}

pub(super) fn check_base_url(raw: &str) -> Result<String, ClientError> {
    let bad = |why: &str| ClientError::BadBaseUrl {
        // Never echo userinfo back.
        url: raw.split('@').next_back().unwrap_or("").to_string(),
        why: why.into(),
    };
    let url = reqwest::Url::parse(raw.trim()).map_err(|e| bad(&e.to_string()))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(bad("scheme must be https or http"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "credentials belong in the auth settings, not in the URL",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("no query or fragment allowed"));
    }
    if url.host_str().is_none() {
        return Err(bad("no host"));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// Tomcat rejects raw `[`, `]`, `{`, `}`, `|` in the query unless `relaxedQueryChars` is set;
/// DHIS2 `fields=` uses brackets, so encode them.
fn encode_query_brackets(path: &str) -> String {
    match path.split_once('?') {
        None => path.to_string(),
        Some((p, q)) => {
            let mut out = String::with_capacity(path.len() + 16);
            out.push_str(p);
            out.push('?');
            for c in q.chars() {
                match c {
                    '[' => out.push_str("%5B"),
                    ']' => out.push_str("%5D"),
                    '{' => out.push_str("%7B"),
                    '}' => out.push_str("%7D"),
                    '|' => out.push_str("%7C"),
                    ' ' => out.push_str("%20"),
                    '"' => out.push_str("%22"),
                    c => out.push(c),
                }
            }
            out
        }
    }
}

/// Path + query for a request (§2.2–§2.4).
pub fn request_path(req: &Dhis2Request, opts: &SendOptions) -> Result<String, ClientError> {
    Ok(match req.endpoint {
        Endpoint::Tracker => format!(
            "/api/tracker?async={}&atomicMode={}&importStrategy=CREATE_AND_UPDATE",
            if opts.async_mode { "true" } else { "false" },
            if opts.atomic_object { "OBJECT" } else { "ALL" },
        ),
        Endpoint::Events => "/api/events?strategy=CREATE_AND_UPDATE".to_string(),
        Endpoint::DataValueSets => {
            if opts.async_mode {
                "/api/dataValueSets?importStrategy=CREATE_AND_UPDATE&async=true".to_string()
            } else {
                "/api/dataValueSets?importStrategy=CREATE_AND_UPDATE".to_string()
            }
        }
        Endpoint::Get => match req.path.as_deref() {
            Some(p) if p.starts_with("/api/") => p.to_string(),
            Some(p) => {
                return Err(ClientError::BadRequest {
                    what: format!("lookup path {:?}", path_only(p)),
                    why: "must start with /api/".into(),
                });
            }
            None => {
                return Err(ClientError::BadRequest {
                    what: "lookup".into(),
                    why: "a Get request needs a path".into(),
                });
            }
        },
    })
}

/// How many importable objects a request carries (decides split vs reject on "too large").
pub fn object_count(req: &Dhis2Request) -> usize {
    let len = |k: &str| {
        req.body
            .get(k)
            .and_then(Value::as_array)
            .map_or(0, Vec::len)
    };
    match req.endpoint {
        Endpoint::Tracker => ["trackedEntities", "enrollments", "events", "relationships"]
            .iter()
            .map(|k| len(k))
            .sum(),
        Endpoint::Events => {
            if req.body.get("events").is_some() {
                len("events")
            } else {
                1
            }
        }
        Endpoint::DataValueSets => len("dataValues"),
        Endpoint::Get => 0,
    }
}

fn parse_system_info(v: &Value) -> Result<SystemInfo, String> {
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let version_text = text("version").ok_or("no \"version\" field")?;
    let version = version_text.parse()?;
    Ok(SystemInfo {
        version,
        version_text,
        revision: text("revision"),
        system_id: text("systemId"),
        system_name: text("systemName"),
        server_date: text("serverDate"),
        server_time_zone_id: text("serverTimeZoneId"),
        context_path: text("contextPath"),
    })
}

fn parse_me(v: &Value) -> Result<Me, String> {
    let id = v
        .get("id")
        .and_then(Value::as_str)
        .ok_or("no \"id\" field")?
        .to_string();
    let username = v
        .get("username")
        .and_then(Value::as_str)
        .or_else(|| {
            v.pointer("/userCredentials/username")
                .and_then(Value::as_str)
        })
        .map(str::to_string);
    let organisation_units = v
        .get("organisationUnits")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|ou| {
            let id = ou.get("id")?.as_str()?.to_string();
            Some((
                id,
                ou.get("path").and_then(Value::as_str).map(str::to_string),
            ))
        })
        .collect();
    Ok(Me {
        id,
        username,
        organisation_units,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    const TOKEN: &str = "d2pat_qg8aTF459WO5LMr0uLi7P3wG8IXq683V1086477046";
    const PASSWORD: &str = "Sup3r-Secret!";

    /// One captured request: head (request line + headers, lower-cased names) and body.
    #[derive(Debug)]
    struct Seen {
        head: String,
        body: Vec<u8>,
    }

    impl Seen {
        fn request_line(&self) -> &str {
            self.head.lines().next().unwrap_or("")
        }
        fn header(&self, name: &str) -> Option<String> {
            self.head.lines().skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        }
    }

    fn http(status: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (k, v) in headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        out.push_str(body);
        out.into_bytes()
    }

    async fn read_request(sock: &mut TcpStream) -> Seen {
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = sock.read(&mut tmp).await.expect("read");
            assert!(n > 0, "client closed before sending a request");
            buf.extend_from_slice(&tmp[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let seen = Seen {
            head,
            body: Vec::new(),
        };
        let len: usize = seen
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = buf[head_end..].to_vec();
        while body.len() < len {
            let n = sock.read(&mut tmp).await.expect("read body");
            if n == 0 {
                break;
            }
            body.extend_from_slice(&tmp[..n]);
        }
        Seen { body, ..seen }
    }

    /// A one-connection-per-response HTTP server on 127.0.0.1:0.
    async fn serve(responses: Vec<Vec<u8>>) -> (String, tokio::task::JoinHandle<Vec<Seen>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            for resp in responses {
                let (mut sock, _) = listener.accept().await.expect("accept");
                seen.push(read_request(&mut sock).await);
                sock.write_all(&resp).await.expect("write");
                let _ = sock.shutdown().await;
            }
            seen
        });
        (base, task)
    }

    fn client(base: &str, auth: Auth) -> Dhis2Client {
        let mut s = ClientSettings::new(base, auth);
        s.timeout = Duration::from_secs(5);
        s.connect_timeout = Duration::from_secs(2);
        Dhis2Client::new(s).expect("client")
    }

    fn token() -> Auth {
        Auth::Token(Secret::new(TOKEN))
    }

    fn tracker_req() -> Dhis2Request {
        Dhis2Request {
            endpoint: Endpoint::Tracker,
            path: None,
            body: json!({"events": [{"event": "EvtTb000001", "programStage": "mPdMZNWVrOQ"}]}),
        }
    }

    const OK_REPORT: &str = r#"{"status":"OK","validationReport":{"errorReports":[]},"stats":{"created":1,"updated":0,"deleted":0,"ignored":0,"total":1},"bundleReport":{"typeReportMap":{"EVENT":{"trackerType":"EVENT","objectReports":[{"trackerType":"EVENT","uid":"EvtTb000001","errorReports":[]}]}}}}"#;

    #[tokio::test]
    async fn tracker_send_uses_literal_async_false_object_mode_and_token_header() {
        let (base, server) = serve(vec![http(
            "200 OK",
            &[("Content-Type", "application/json")],
            OK_REPORT,
        )])
        .await;
        let c = client(&base, token());
        let opts = SendOptions {
            async_mode: false,
            atomic_object: true,
        };
        let (outcome, meta) = c.send(&tracker_req(), &opts).await.expect("send");
        let seen = server.await.expect("server");
        assert_eq!(
            seen[0].request_line(),
            "POST /api/tracker?async=false&atomicMode=OBJECT&importStrategy=CREATE_AND_UPDATE HTTP/1.1"
        );
        assert_eq!(
            seen[0].header("authorization"),
            Some(format!("ApiToken {TOKEN}"))
        );
        assert_eq!(
            seen[0].header("content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(seen[0].header("x-requested-with"), None);
        assert_eq!(
            serde_json::from_slice::<Value>(&seen[0].body).expect("json"),
            tracker_req().body
        );
        assert!(
            matches!(outcome, Outcome::Delivered(ref s) if s.uids == ["EvtTb000001"]),
            "{outcome:?}"
        );
        assert_eq!(meta.status, 200);
        assert_eq!(meta.bytes_sent, seen[0].body.len() as u64);
        assert_eq!(meta.bytes_received, OK_REPORT.len() as u64);
    }

    #[tokio::test]
    async fn events_and_data_value_sets_urls_and_basic_auth() {
        let ok = r#"{"responseType":"ImportSummary","status":"SUCCESS","importCount":{"imported":1,"updated":0,"ignored":0,"deleted":0}}"#;
        let (base, server) = serve(vec![http("200 OK", &[], ok), http("200 OK", &[], ok)]).await;
        let c = client(
            &base,
            Auth::Basic {
                username: "gateway".into(),
                password: Secret::new(PASSWORD),
            },
        );
        let ev = Dhis2Request {
            endpoint: Endpoint::Events,
            path: None,
            body: json!({"events": []}),
        };
        let dvs = Dhis2Request {
            endpoint: Endpoint::DataValueSets,
            path: None,
            body: json!({"dataValues": []}),
        };
        c.send(&ev, &SendOptions::default()).await.expect("events");
        c.send(&dvs, &SendOptions::default()).await.expect("dvs");
        let seen = server.await.expect("server");
        assert_eq!(
            seen[0].request_line(),
            "POST /api/events?strategy=CREATE_AND_UPDATE HTTP/1.1"
        );
        assert_eq!(
            seen[1].request_line(),
            "POST /api/dataValueSets?importStrategy=CREATE_AND_UPDATE HTTP/1.1"
        );
        use base64::Engine;
        let want = base64::engine::general_purpose::STANDARD.encode(format!("gateway:{PASSWORD}"));
        assert_eq!(
            seen[0].header("authorization"),
            Some(format!("Basic {want}"))
        );
    }

    #[tokio::test]
    async fn redirect_to_login_is_not_followed_and_pauses() {
        let (base, server) = serve(vec![http(
            "302 Found",
            &[("Location", "http://127.0.0.1:1/dhis-web-login/")],
            "",
        )])
        .await;
        let c = client(&base, token());
        let (outcome, meta) = c
            .send(&tracker_req(), &SendOptions::default())
            .await
            .expect("send");
        let seen = server.await.expect("server");
        assert_eq!(seen.len(), 1);
        assert_eq!(meta.status, 302);
        assert!(
            matches!(outcome, Outcome::Pause { ref why } if why.contains("login page")),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn refused_api_token_400_pauses_instead_of_rejecting_the_record() {
        let body = r#"{"httpStatus":"Bad Request","httpStatusCode":400,"status":"ERROR","message":"Checksum validation failed"}"#;
        let (base, _server) = serve(vec![http(
            "400 Bad Request",
            &[("WWW-Authenticate", "ApiToken")],
            body,
        )])
        .await;
        let (outcome, _) = client(&base, token())
            .send(&tracker_req(), &SendOptions::default())
            .await
            .expect("send");
        assert!(
            matches!(outcome, Outcome::Pause { ref why } if why.contains("API token")),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn slow_server_times_out_and_retries() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let hold = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.expect("accept");
            let _ = read_request(&mut sock).await;
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        let mut s = ClientSettings::new(&base, token());
        s.timeout = Duration::from_millis(300);
        let c = Dhis2Client::new(s).expect("client");
        let err = c
            .send(&tracker_req(), &SendOptions::default())
            .await
            .expect_err("must time out");
        assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
        assert!(matches!(err.outcome(), Outcome::Retry { split: false, .. }));
        hold.abort();
    }

    #[tokio::test]
    async fn refused_connection_retries() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        drop(listener);
        let err = client(&base, token())
            .ping()
            .await
            .expect_err("nothing listens");
        assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
        assert!(matches!(err.outcome(), Outcome::Retry { split: false, .. }));
    }

    #[tokio::test]
    async fn oversized_answer_is_cut_off() {
        let big = "x".repeat(4096);
        let (base, _server) = serve(vec![http("200 OK", &[], &big)]).await;
        let mut s = ClientSettings::new(&base, token());
        s.max_body_bytes = 1024;
        let err = Dhis2Client::new(s)
            .expect("client")
            .get_json("/api/me")
            .await
            .expect_err("too big");
        assert!(
            matches!(err, ClientError::ResponseTooLarge { limit: 1024, .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn oversized_request_is_not_sent_and_splits_or_rejects() {
        let mut s = ClientSettings::new("http://127.0.0.1:9", token());
        s.max_body_bytes = 64;
        let c = Dhis2Client::new(s).expect("client");
        let mut req = tracker_req();
        req.body = json!({"events": [{"event": "a".repeat(40)}, {"event": "b".repeat(40)}]});
        let err = c
            .send(&req, &SendOptions::default())
            .await
            .expect_err("too big");
        assert!(
            matches!(err.outcome(), Outcome::Retry { split: true, .. }),
            "{err:?}"
        );
        req.body = json!({"events": [{"event": "a".repeat(100)}]});
        let err = c
            .send(&req, &SendOptions::default())
            .await
            .expect_err("too big");
        assert!(matches!(err.outcome(), Outcome::Rejected(_)), "{err:?}");
    }

    #[tokio::test]
    async fn ping_falls_back_to_system_ping_on_old_servers() {
        let (base, server) = serve(vec![
            http(
                "302 Found",
                &[(
                    "Location",
                    "http://x/dhis-web-commons/security/login.action",
                )],
                "",
            ),
            http("200 OK", &[("Content-Type", "text/plain")], "pong"),
        ])
        .await;
        let state = client(&base, token()).ping().await.expect("ping");
        let seen = server.await.expect("server");
        assert_eq!(
            state,
            LinkState::Up {
                credentials_checked: true
            }
        );
        assert_eq!(seen[0].request_line(), "GET /api/ping HTTP/1.1");
        assert_eq!(
            seen[0].header("authorization"),
            None,
            "/api/ping is unauthenticated"
        );
        assert_eq!(seen[1].request_line(), "GET /api/system/ping HTTP/1.1");
        assert!(seen[1].header("authorization").is_some());
    }

    #[tokio::test]
    async fn ping_on_2_40_plus_and_wrong_credentials() {
        let (base, _s) = serve(vec![http("200 OK", &[], "")]).await;
        assert_eq!(
            client(&base, token()).ping().await.expect("ping"),
            LinkState::Up {
                credentials_checked: false
            }
        );
        let unauthorized = r#"{"httpStatus":"Unauthorized","httpStatusCode":401,"status":"ERROR","message":"Unauthorized"}"#;
        let (base, _s) = serve(vec![
            http("404 Not Found", &[], ""),
            http("401 Unauthorized", &[], unauthorized),
        ])
        .await;
        let state = client(&base, token()).ping().await.expect("ping");
        assert!(matches!(state, LinkState::Unauthorized { .. }), "{state:?}");
    }

    #[tokio::test]
    async fn system_info_and_me_parse_the_samples() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dhis2/responses");
        let info = std::fs::read_to_string(dir.join("system-info-android-fixture.response.json"))
            .expect("info");
        let me =
            std::fs::read_to_string(dir.join("me-2.38-fields-filtered.response.json")).expect("me");
        let (base, server) =
            serve(vec![http("200 OK", &[], &info), http("200 OK", &[], &me)]).await;
        let c = client(&base, token());
        let si = c.system_info().await.expect("system info");
        let who = c.me().await.expect("me");
        let seen = server.await.expect("server");
        assert_eq!(si.version, Dhis2Version::new(2, 41, 0));
        assert_eq!(
            si.system_name.as_deref(),
            Some("DHIS 2 Demo - Sierra Leone")
        );
        assert_eq!(who.username.as_deref(), Some("android"));
        assert_eq!(who.organisation_units[0].0, "YuQRtpLP10I");
        // `fields=` brackets are percent-encoded for Tomcat.
        assert!(
            seen[1]
                .request_line()
                .contains("userCredentials%5Busername%5D"),
            "{}",
            seen[1].request_line()
        );
    }

    #[tokio::test]
    async fn lookup_error_carries_the_classified_outcome() {
        let forbidden =
            r#"{"httpStatus":"Forbidden","httpStatusCode":403,"status":"ERROR","message":"nope"}"#;
        let (base, _s) = serve(vec![http("403 Forbidden", &[], forbidden)]).await;
        let err = client(&base, token())
            .get_json("/api/programs")
            .await
            .expect_err("403");
        assert!(matches!(err, ClientError::Status { status: 403, .. }));
        assert!(matches!(err.outcome(), Outcome::Pause { .. }));
    }

    #[tokio::test]
    async fn poll_job_reads_notifications_then_the_report() {
        let running = r#"[{"message":"Running PreHeat","completed":false}]"#;
        let done = r#"[{"message":"Import complete","completed":true}]"#;
        let (base, server) = serve(vec![
            http("200 OK", &[], running),
            http("200 OK", &[], done),
            http(
                "404 Not Found",
                &[],
                r#"{"httpStatusCode":404,"message":"Summary for job LkXBUdIgbe3 does not exist"}"#,
            ),
            http("200 OK", &[], done),
            http("200 OK", &[], OK_REPORT),
        ])
        .await;
        let c = client(&base, token());
        let (o1, _) = c
            .poll_job(Endpoint::Tracker, "LkXBUdIgbe3")
            .await
            .expect("poll 1");
        let (o2, _) = c
            .poll_job(Endpoint::Tracker, "LkXBUdIgbe3")
            .await
            .expect("poll 2");
        let (o3, _) = c
            .poll_job(Endpoint::Tracker, "LkXBUdIgbe3")
            .await
            .expect("poll 3");
        let seen = server.await.expect("server");
        assert_eq!(
            o1,
            Outcome::Job {
                id: "LkXBUdIgbe3".into()
            }
        );
        assert!(matches!(o2, Outcome::Retry { split: false, .. }), "{o2:?}");
        assert!(matches!(o3, Outcome::Delivered(_)), "{o3:?}");
        assert_eq!(
            seen[0].request_line(),
            "GET /api/tracker/jobs/LkXBUdIgbe3 HTTP/1.1"
        );
        assert_eq!(
            seen[2].request_line(),
            "GET /api/tracker/jobs/LkXBUdIgbe3/report?reportMode=ERRORS HTTP/1.1"
        );
        assert!(c.poll_job(Endpoint::Tracker, "../x").await.is_err());
    }

    #[test]
    fn secrets_never_show_in_debug_display_or_errors() {
        let basic = Auth::Basic {
            username: "gateway".into(),
            password: Secret::new(PASSWORD),
        };
        for auth in [basic, token()] {
            let settings = ClientSettings::new("https://dhis.example.org/", auth);
            let c = Dhis2Client::new(settings.clone()).expect("client");
            let texts = [
                format!("{settings:?}"),
                format!("{c:?}"),
                format!("{:?}", settings.auth),
            ];
            for t in texts {
                assert!(
                    !t.contains(PASSWORD) && !t.contains(TOKEN) && !t.contains("d2pat"),
                    "{t}"
                );
            }
        }
        assert_eq!(format!("{}", Secret::new(TOKEN)), "***");
        assert_eq!(format!("{:?}", Secret::new(TOKEN)), "***");
        let err = Dhis2Client::new(ClientSettings::new(
            format!("https://gateway:{PASSWORD}@dhis.example.org"),
            token(),
        ))
        .expect_err("userinfo refused");
        assert!(!err.to_string().contains(PASSWORD), "{err}");
    }

    #[test]
    fn versions_parse_like_system_info_sends_them() {
        let v = |s: &str| s.parse::<Dhis2Version>();
        assert_eq!(v("2.41.0"), Ok(Dhis2Version::new(2, 41, 0)));
        assert_eq!(v("2.42-SNAPSHOT"), Ok(Dhis2Version::new(2, 42, 0)));
        assert_eq!(v("2.39.1.1"), Ok(Dhis2Version::new(2, 39, 1)));
        assert_eq!(v("2.13-SNAPSHOT"), Ok(Dhis2Version::new(2, 13, 0)));
        assert!(v("banana").is_err() && v("2").is_err() && v("").is_err());
        assert!(Dhis2Version::new(2, 40, 0).has_api_ping());
        assert!(!Dhis2Version::new(2, 42, 0).has_legacy_events());
        assert!(Dhis2Version::new(2, 42, 1) > Dhis2Version::new(2, 41, 9));
    }

    #[test]
    fn request_paths_follow_the_options() {
        let t = tracker_req();
        let p = |o: SendOptions| request_path(&t, &o).expect("path");
        assert_eq!(
            p(SendOptions {
                async_mode: true,
                atomic_object: false
            }),
            "/api/tracker?async=true&atomicMode=ALL&importStrategy=CREATE_AND_UPDATE"
        );
        let get = Dhis2Request {
            endpoint: Endpoint::Get,
            path: Some("http://evil/api/x".into()),
            body: Value::Null,
        };
        assert!(request_path(&get, &SendOptions::default()).is_err());
    }

    // ---- TLS -----------------------------------------------------------------------------------

    /// A self-signed P-256 certificate for 127.0.0.1 (made with `openssl req -x509`), DER, base64.
    const SELF_SIGNED_DER_B64: &str = "MIIBsTCCAVigAwIBAgIUM+MA0PGWc4rt7XcSQC7cX5KnDfAwCgYIKoZIzj0EAwIwJTEjMCEGA1UEAwwacG9ja2V0Z2F0ZS10ZXN0LXNlbGZzaWduZWQwIBcNMjYxMTIyMDEwMjA2WhgPMjEyNjEwMjkwMTAyMDZaMCUxIzAhBgNVBAMMGnBvY2tldGdhdGUtdGVzdC1zZWxmc2lnbmVkMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAES0PmgKdBvcFokSwX0xMbP4xHfwkDfuAXIh+wJ0Xlg7YGYvoX9E2my7rURLRROf1adx3lW3SCb1w47JQBUxAAgaNkMGIwHQYDVR0OBBYEFC2bbkpHf9CMqonrHlNJnfzd4K1JMB8GA1UdIwQYMBaAFC2bbkpHf9CMqonrHlNJnfzd4K1JMA8GA1UdEwEB/wQFMAMBAf8wDwYDVR0RBAgwBocEfwAAATAKBggqhkjOPQQDAgNHADBEAiA8Hmq9l7M3quYN7dAakVFg9cKoGexoVdeHqPu3uEw9UAIgQtUhdeOUWdZjZ2m+5LEinySEeEf8iL+l+88y3YoUat4=";

    fn tls_record(handshake_type: u8, body: &[u8]) -> Vec<u8> {
        let mut hs = vec![handshake_type];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(body);
        let mut rec = vec![22, 3, 3];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    /// Just enough of a TLS 1.2 server to present a certificate: ServerHello, Certificate,
    /// ServerKeyExchange (unsigned junk — the client checks the certificate first), Done.
    async fn tls12_server_with_untrusted_cert() -> String {
        use base64::Engine;
        let der = base64::engine::general_purpose::STANDARD
            .decode(SELF_SIGNED_DER_B64)
            .expect("der");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.expect("accept");
            let mut hdr = [0u8; 5];
            sock.read_exact(&mut hdr)
                .await
                .expect("client hello header");
            let mut hello = vec![0u8; u16::from_be_bytes([hdr[3], hdr[4]]) as usize];
            sock.read_exact(&mut hello).await.expect("client hello");
            let mut sh = vec![3, 3];
            sh.extend_from_slice(&[0x11; 32]); // server random
            sh.push(0); // no session id
            sh.extend_from_slice(&[0xC0, 0x2B]); // ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            sh.push(0); // no compression
            sh.extend_from_slice(&[0, 0]); // no extensions
            let mut cert = Vec::new();
            let one = (der.len() as u32).to_be_bytes();
            let all = (der.len() as u32 + 3).to_be_bytes();
            cert.extend_from_slice(&all[1..]);
            cert.extend_from_slice(&one[1..]);
            cert.extend_from_slice(&der);
            let mut ske = vec![3, 0x00, 0x1d, 32];
            ske.extend_from_slice(&[0x42; 32]);
            ske.extend_from_slice(&[0x04, 0x03, 0, 8]);
            ske.extend_from_slice(&[0x55; 8]);
            let mut out = tls_record(2, &sh);
            out.extend(tls_record(11, &cert));
            out.extend(tls_record(12, &ske));
            out.extend(tls_record(14, &[]));
            let _ = sock.write_all(&out).await;
            let mut sink = [0u8; 512];
            let _ = tokio::time::timeout(Duration::from_secs(2), sock.read(&mut sink)).await;
        });
        format!("https://{addr}")
    }

    #[tokio::test]
    async fn untrusted_tls_certificate_pauses() {
        let base = tls12_server_with_untrusted_cert().await;
        let err = client(&base, token())
            .get_json("/api/system/info")
            .await
            .expect_err("untrusted");
        assert!(matches!(err, ClientError::TlsCertificate { .. }), "{err:?}");
        assert!(matches!(err.outcome(), Outcome::Pause { .. }));
        assert!(!err.to_string().contains(TOKEN));
    }

    #[tokio::test]
    async fn plain_http_on_an_https_url_is_a_tls_failure() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("https://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.expect("accept");
            let _ = sock
                .write_all(&http("400 Bad Request", &[], "not tls"))
                .await;
            let mut sink = [0u8; 512];
            let _ = tokio::time::timeout(Duration::from_secs(2), sock.read(&mut sink)).await;
        });
        let err = client(&base, token())
            .get_json("/api/system/info")
            .await
            .expect_err("no tls");
        assert!(
            matches!(
                err,
                ClientError::Tls { .. } | ClientError::TlsCertificate { .. }
            ),
            "{err:?}"
        );
        assert!(matches!(err.outcome(), Outcome::Pause { .. }));
    }

    #[test]
    fn bad_extra_ca_is_reported() {
        let mut s = ClientSettings::new("https://dhis.example.org", token());
        s.extra_ca_pem = Some(b"not a pem".to_vec());
        assert!(matches!(
            Dhis2Client::new(s),
            Err(ClientError::BadCaCertificate { .. })
        ));
    }
}
