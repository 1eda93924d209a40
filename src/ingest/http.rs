//! HTTP ingest: `POST /results` with a FHIR R4, canonical JSON, CSV or XML body
//! ([`crate::protocol::fhir`] decodes), answered only after the store commit returned.
//!
//! | answer | when |
//! |---|---|
//! | `201 {"id", "observations", "duplicate": false}` | decoded and committed |
//! | `200 {…, "duplicate": true}` | the same body was already stored for this source |
//! | `400`/`422 {"error", "id"}` | unreadable syntax / wrong shape; the raw body is stored as `invalid` |
//! | `401` | `Authorization: Bearer …` missing or wrong (nothing is read or stored) |
//! | `413` | body over `max_body` (nothing stored) |
//! | `415` | a content type other than the accepted ones (nothing stored) |
//! | `503` + `Retry-After` | the store failed (nothing stored), or the token could not be read |
//!
//! `GET /health` answers `{"status": "ok"}` without a token. Every answer is JSON.

use super::SourceCtx;
use crate::config::HttpSettings;
use crate::protocol::fhir::{self, BodyKind};
use crate::store::{NewMessage, ProtocolKind};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use tracing::{debug, error, warn};

/// Seconds a sender is asked to wait after a store failure.
const RETRY_AFTER_SECS: u64 = 5;

/// Who may post.
enum Auth {
    /// No token configured.
    Open,
    /// SHA-256 of the configured token: comparing digests takes the same time for every guess
    /// (and does not reveal the token's length).
    Token([u8; 32]),
    /// A token is configured but could not be read: refuse everything rather than run open.
    Unreadable,
}

struct Http {
    ctx: SourceCtx,
    auth: Auth,
    max_body: usize,
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).into()
}

/// Equal in time whatever the inputs.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Serve `POST /results` and `GET /health` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, ctx: SourceCtx, settings: HttpSettings) {
    let auth = match &settings.token {
        None => Auth::Open,
        Some(secret) => match secret.read() {
            Ok(token) => Auth::Token(digest(token.as_bytes())),
            Err(e) => {
                error!(source = %ctx.id, error = %e, "cannot read the HTTP token; answering 503 to every request");
                Auth::Unreadable
            }
        },
    };
    let id = ctx.id.clone();
    let listener =
        super::conn_limit::Limited::new(listener, ctx.limits.max_connections, id.0.clone());
    let app = router(Http {
        ctx,
        auth,
        max_body: settings.max_body_bytes,
    });
    if let Err(e) = axum::serve(listener, app).await {
        error!(source = %id, error = %e, "HTTP server stopped");
    }
}

fn router(state: Http) -> Router {
    let max_body = state.max_body;
    Router::new()
        .route("/results", post(results))
        .route("/health", get(health))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(Arc::new(state))
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    answer(status, json!({ "error": message.into() }))
}

fn unavailable(message: impl Into<String>) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    r
}

async fn health(State(st): State<Arc<Http>>) -> Response {
    match st.auth {
        Auth::Unreadable => {
            unavailable("the configured HTTP token cannot be read; see the gateway log")
        }
        _ => answer(StatusCode::OK, json!({ "status": "ok" })),
    }
}

async fn not_found(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "no route {method} {}; use POST /results or GET /health",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{method} is not allowed on {}; use POST /results or GET /health",
            uri.path()
        ),
    )
}

impl Http {
    /// The refusal, unless the request carries the configured bearer token.
    fn refuse(&self, headers: &HeaderMap) -> Option<Response> {
        let expected = match &self.auth {
            Auth::Open => return None,
            Auth::Unreadable => {
                return Some(unavailable(
                    "the configured HTTP token cannot be read; see the gateway log",
                ));
            }
            Auth::Token(t) => t,
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            });
        let ok = presented.is_some_and(|t| constant_time_eq(&digest(t.as_bytes()), expected));
        if ok {
            return None;
        }
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            if presented.is_some() {
                "the bearer token is wrong"
            } else {
                "an Authorization: Bearer <token> header is required"
            },
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        Some(r)
    }
}

/// Auth → content type → body (bounded) → decode → commit → answer.
async fn results(State(st): State<Arc<Http>>, req: Request) -> Response {
    let source = &st.ctx.id;
    if let Some(r) = st.refuse(req.headers()) {
        warn!(source = %source, "request refused: not authorised");
        return r;
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let unsupported = || {
        error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type {} is not accepted; send one of {}",
                content_type
                    .as_deref()
                    .map_or("(none)".to_owned(), |c| format!("{c:?}")),
                BodyKind::ACCEPTED_CONTENT_TYPES
            ),
        )
    };
    // Decide on the header alone before reading the body: FHIR vs canonical JSON is sniffed
    // later, but any accepted type sniffs to `Some` whatever the body.
    if content_type.is_none() || BodyKind::sniff(content_type.as_deref(), b"").is_none() {
        warn!(source = %source, content_type = ?content_type, "request refused: content type");
        return unsupported();
    }
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body is larger than this source's limit of {} bytes (max_body)",
                st.max_body
            ),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > st.max_body as u64) {
        warn!(source = %source, bytes = declared, "request refused: body too large");
        return too_large();
    }
    let read = tokio::time::timeout(st.ctx.receive_timeout(), Bytes::from_request(req, &()));
    let body = match read.await {
        Ok(Ok(b)) => b,
        Ok(Err(rejection)) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            warn!(source = %source, "request refused: body too large");
            return too_large();
        }
        Ok(Err(rejection)) => {
            warn!(source = %source, error = %rejection, "request body could not be read");
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body could not be read: {rejection}"),
            );
        }
        Err(_) => {
            warn!(source = %source, "request body not received in time");
            return error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {:?}",
                    st.ctx.receive_timeout()
                ),
            );
        }
    };
    // Cannot be None (the content type was accepted above); treat it as unsupported anyway.
    let Some(kind) = BodyKind::sniff(content_type.as_deref(), &body) else {
        return unsupported();
    };
    let (observations, parse_error) = match fhir::decode(kind, &body) {
        Ok(obs) => (obs, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    let count = observations.len();
    let msg = NewMessage {
        source: source.clone(),
        protocol: ProtocolKind::Http,
        wire: body.to_vec(),
        text: body.to_vec(),
        observations: st.ctx.enriched(observations),
        parse_errors: parse_error
            .iter()
            .map(|e| format!("{}: {e}", kind.name()))
            .collect(),
    };
    let committed = st.ctx.store.commit(msg).await;
    if let Some(e) = parse_error {
        let status = if e.is_syntax() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        // The sender must fix the body whatever happened to the diagnostic copy.
        return match committed {
            Ok(c) => {
                warn!(source = %source, kind = kind.name(), error = %e, id = %c.id, "body refused; raw bytes stored as invalid");
                answer(status, json!({ "error": e.to_string(), "id": c.id }))
            }
            Err(se) => {
                warn!(source = %source, kind = kind.name(), error = %e, store_error = %se, "body refused; raw bytes could not be stored");
                error(status, e.to_string())
            }
        };
    }
    match committed {
        Ok(c) => {
            debug!(source = %source, id = %c.id, observations = count, duplicate = c.duplicate, "HTTP body stored");
            let status = if c.duplicate {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            answer(
                status,
                json!({ "id": c.id, "observations": count, "duplicate": c.duplicate }),
            )
        }
        Err(e) => {
            warn!(source = %source, error = %e, "commit failed; sender is told to retry");
            unavailable(format!(
                "the gateway could not store the body ({e}); nothing was stored, retry later"
            ))
        }
    }
}
