//! Per-test fault injection (`/__sim/faults`; semantics in the module doc of [`super`]).

use super::{SimState, authorize, conn_ctl, error_message, json_response, lock};
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One injected fault.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Answer with this status (WebMessage JSON, or nginx HTML with `html`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// How many matching requests it hits; unlimited without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Body is nginx's HTML error page instead of a DHIS2 WebMessage.
    #[serde(default)]
    pub html: bool,
    /// Sleep this long (before the import, or with `commit` after it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Close the connection without answering.
    #[serde(default)]
    pub drop: bool,
    /// Import and commit first, then misbehave.
    #[serde(default)]
    pub commit: bool,
    /// Path prefix to match (default: the import endpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// HTTP method to match (with `path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Only bodies at least this large (nginx `client_max_body_size` + 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_body_bytes: Option<usize>,
    /// `Retry-After` seconds on the fault answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

const IMPORT_PATHS: [&str; 3] = ["/api/tracker", "/api/events", "/api/dataValueSets"];

impl Fault {
    fn matches(&self, method: &Method, path: &str, body_len: usize) -> bool {
        if path.starts_with("/__sim/") {
            return false;
        }
        if self.min_body_bytes.is_some_and(|m| body_len < m) {
            return false;
        }
        match &self.path {
            Some(p) => {
                path.starts_with(p.as_str())
                    && self
                        .method
                        .as_deref()
                        .is_none_or(|m| m.eq_ignore_ascii_case(method.as_str()))
            }
            None => *method == Method::POST && IMPORT_PATHS.contains(&path),
        }
    }
}

/// Take (consume one use of) the first fault matching this request.
fn take(st: &SimState, method: &Method, path: &str, body_len: usize) -> Option<Fault> {
    let mut faults = lock(&st.inner().faults);
    let i = faults
        .iter()
        .position(|f| f.matches(method, path, body_len))?;
    let fault = faults[i].clone();
    if let Some(c) = &mut faults[i].count {
        *c = c.saturating_sub(1);
        if *c == 0 {
            faults.remove(i);
        }
    }
    Some(fault)
}

/// nginx's error page.
pub fn nginx_html(code: StatusCode) -> Response {
    let line = format!(
        "{} {}",
        code.as_u16(),
        code.canonical_reason().unwrap_or("Error")
    );
    let body = format!(
        "<html>\r\n<head><title>{line}</title></head>\r\n<body>\r\n<center><h1>{line}</h1></center>\r\n<hr><center>nginx/1.18.0 (Ubuntu)</center>\r\n</body>\r\n</html>\r\n"
    );
    (
        code,
        [
            (header::CONTENT_TYPE, "text/html"),
            (header::CONNECTION, "close"),
        ],
        body,
    )
        .into_response()
}

fn fault_response(f: &Fault, code: StatusCode) -> Response {
    let mut resp = if f.html {
        nginx_html(code)
    } else {
        let msg = match code.as_u16() {
            500 => "An unexpected error occurred".to_string(),
            other => code
                .canonical_reason()
                .map(str::to_string)
                .unwrap_or_else(|| format!("HTTP {other}")),
        };
        error_message(code, msg)
    };
    if let Some(s) = f.retry_after
        && let Ok(v) = HeaderValue::from_str(&s.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

fn drop_connection(req_ctl: Option<super::ConnCtl>) -> Response {
    match req_ctl {
        Some(ctl) => {
            ctl.kill();
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        None => StatusCode::BAD_GATEWAY.into_response(),
    }
}

/// Apply a matching fault around the (authenticated) request.
pub async fn apply(st: &SimState, req: Request, body_len: usize, next: Next) -> Response {
    let fault = take(st, req.method(), req.uri().path(), body_len);
    let Some(f) = fault else {
        return authorize(st, req, next).await;
    };
    let ctl = conn_ctl(&req);
    let status = f.status.and_then(|s| StatusCode::from_u16(s).ok());
    let delay = f.delay_ms.map(Duration::from_millis);
    if !f.commit {
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        if f.drop {
            return drop_connection(ctl);
        }
        if let Some(code) = status {
            return fault_response(&f, code);
        }
        return authorize(st, req, next).await;
    }
    let real = authorize(st, req, next).await;
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    if f.drop {
        return drop_connection(ctl);
    }
    match status {
        Some(code) => fault_response(&f, code),
        None => real,
    }
}

// Admin handlers

pub async fn list(State(st): State<SimState>) -> Response {
    json_response(StatusCode::OK, &*lock(&st.inner().faults))
}

pub async fn add(State(st): State<SimState>, body: Bytes) -> Response {
    let parsed: Result<Vec<Fault>, _> = serde_json::from_slice::<Vec<Fault>>(&body)
        .or_else(|_| serde_json::from_slice::<Fault>(&body).map(|f| vec![f]));
    match parsed {
        Ok(faults) => {
            lock(&st.inner().faults).extend(faults.into_iter().filter(|f| f.count != Some(0)));
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => error_message(StatusCode::BAD_REQUEST, format!("bad fault: {e}")),
    }
}

pub async fn clear(State(st): State<SimState>) -> Response {
    lock(&st.inner().faults).clear();
    StatusCode::NO_CONTENT.into_response()
}
