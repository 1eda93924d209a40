//! Authentication as DHIS2's security filter chain answers it (dhis2.md §1):
//! - `Basic` good → user (and a `JSESSIONID` cookie); bad → 401 JSON WebMessage, **no**
//!   `WWW-Authenticate`.
//! - `ApiToken <pat>` (2.37+): header not matching `^ApiToken [a-z0-9-._~+/]+=*$` (case-insensitive)
//!   → 400 "Api token is malformed"; unknown/revoked → 401 "The API token does not exists"
//!   (2.37: with a period); both with `WWW-Authenticate: ApiToken`. On 2.36 the header means
//!   nothing and is treated like no credentials. The 2.41+ checksum pre-check is not modelled.
//! - `Bearer …` → 401 WebMessage (no OAuth2 server here).
//! - a known `JSESSIONID` cookie → that user.
//! - nothing → 302 to the per-version login page, unless `X-Requested-With: XMLHttpRequest`
//!   (then 401 JSON).

use super::{SimState, base_url, error_message, lock, values};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;

/// The authenticated user, put into request extensions.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub username: String,
    /// `Set-Cookie` to send (a fresh session for a Basic login).
    pub set_cookie: Option<String>,
}

fn unauthorized(message: &str) -> Response {
    error_message(StatusCode::UNAUTHORIZED, message)
}

fn token_error(code: StatusCode, message: &str) -> Response {
    let mut resp = error_message(code, message);
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("ApiToken"),
    );
    resp
}

/// No usable credentials: the login entry point.
fn entry_point(st: &SimState, headers: &HeaderMap) -> Response {
    let xhr = headers
        .get("x-requested-with")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "XMLHttpRequest");
    if xhr {
        return unauthorized("Unauthorized");
    }
    let location = format!("{}{}", base_url(headers), st.version().login_path());
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

fn token_well_formed(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// Who is calling, or the response DHIS2 would give instead.
pub fn authenticate(st: &SimState, headers: &HeaderMap) -> Result<AuthUser, Box<Response>> {
    let inner = st.inner();
    let version = st.version();
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let auth = auth.to_str().unwrap_or("");
        let (scheme, rest) = auth.split_once(' ').unwrap_or((auth, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            let Some((user, pass)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
                return Err(Box::new(unauthorized("Unauthorized")));
            };
            if inner.users.iter().any(|(u, p)| u == user && p == pass) {
                let session = values::generate_uid() + &values::generate_uid();
                lock(&inner.sessions).insert(session.clone(), user.to_string());
                return Ok(AuthUser {
                    username: user.to_string(),
                    set_cookie: Some(format!("JSESSIONID={session}; Path=/; HttpOnly")),
                });
            }
            return Err(Box::new(unauthorized("Unauthorized")));
        }
        if scheme.eq_ignore_ascii_case("apitoken") && version.pat_enabled() {
            if auth.len() < 9 || !auth.as_bytes()[8].eq(&b' ') || !token_well_formed(rest) {
                return Err(Box::new(token_error(
                    StatusCode::BAD_REQUEST,
                    "Api token is malformed",
                )));
            }
            if lock(&inner.tokens).iter().any(|t| t == rest) {
                let username = inner
                    .users
                    .first()
                    .map(|(u, _)| u.clone())
                    .unwrap_or_else(|| "admin".into());
                return Ok(AuthUser {
                    username,
                    set_cookie: None,
                });
            }
            let msg = if version.minor == 37 {
                "The API token does not exists."
            } else {
                "The API token does not exists"
            };
            return Err(Box::new(token_error(StatusCode::UNAUTHORIZED, msg)));
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            return Err(Box::new(unauthorized("Unauthorized")));
        }
    }
    if let Some(user) = session_user(st, headers) {
        return Ok(AuthUser {
            username: user,
            set_cookie: None,
        });
    }
    Err(Box::new(entry_point(st, headers)))
}

fn session_user(st: &SimState, headers: &HeaderMap) -> Option<String> {
    let sessions = lock(&st.inner().sessions);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix("JSESSIONID="))
        .find_map(|id| sessions.get(id).cloned())
}
