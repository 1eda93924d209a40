//! Sending to a `[[destinations]]` entry (`crate::config::destinations`): a FHIR server, an HTTP
//! JSON/XML API (OpenMRS REST, OpenHIM), or a raw TCP/UDP listener. One [`DestClient`] per
//! destination; it keeps no state beyond its connection pool, and the caller (the outbox) owns
//! retries, backoff and chaining.
//!
//! - A [`DestRequest`] is what a Tempr renders and the outbox stores (serde JSON). For http/fhir
//!   its `path` is relative to the destination URL; for tcp/udp only the body is sent.
//! - [`DestClient::send`] always returns a [`Delivery`]: the decision ([`DestOutcome`]) and the
//!   `response` value the next chain step sees (see [`classify`]). Nothing here panics or returns
//!   an error: every failure is a decision with its reason.
//! - [`classify`] is PURE (status, headers and body bytes in), so every answer shape is tested
//!   without sockets.
//!
//! Decisions:
//! - **The HTTP client is DHIS2's** ([`super::client::http_client`]): rustls with the system CA
//!   bundle plus `ca_file`, hickory DNS, redirects never followed (a 3xx pauses: the URL is wrong,
//!   and following a redirect to a login page would look like success).
//! - **FHIR conditional create** (R4 §3.1.0.8.1, <http://hl7.org/fhir/R4/http.html#ccreate>):
//!   with `if_none_exist` the request carries `If-None-Exist: <search>`; the server answers 201
//!   when it created, 200 with the existing resource when exactly one matched (delivered: resending
//!   after a lost answer creates no duplicate), 412 when several matched (rejected: a person must
//!   merge them).
//! - **Rejected vs retry vs pause**: a 4xx is the data's fault and is never resent blindly; 408,
//!   425, 429, 5xx, timeouts and connection failures are the link's and are retried (`Retry-After`
//!   in seconds is honoured; an HTTP-date would need a clock here and falls back to backoff);
//!   401/403/407 and TLS failures stop the destination until a person fixes credentials or trust.
//! - **Limits**: answers are read up to `max_response_bytes` (the rest is dropped and the response
//!   marked `truncated`; the status still decides); reasons quote at most [`REASON_CHARS`]
//!   characters; requests are at most [`MAX_REQUEST_BYTES`]; one UDP datagram at most
//!   [`MAX_UDP_BYTES`].

use super::client::{self, Bounded, ClientError, HttpClientSettings, Secret, Tls};
use crate::config::destinations::{DestAuth, DestId, DestKind, Destination, HostPort, Target};
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest request body sent (a Tempr renders far less; this stops a runaway one).
pub const MAX_REQUEST_BYTES: usize = 16 << 20;
/// Largest UDP payload: 65,535 (IPv4 total length) − 20 (IP header) − 8 (UDP header), RFC 768.
pub const MAX_UDP_BYTES: usize = 65_507;
/// Longest reason quoted from an answer (the rest of the body stays in `response`).
pub const REASON_CHARS: usize = 300;
/// tcp `read_reply`: the reply is complete after this much silence (or when the peer closes).
pub const TCP_REPLY_IDLE: Duration = Duration::from_secs(1);

pub use crate::record::{DestBody, DestRequest, Method};

/// The reqwest method of a stored [`Method`].
fn http_method(m: Method) -> reqwest::Method {
    match m {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        Method::Patch => reqwest::Method::PATCH,
        Method::Delete => reqwest::Method::DELETE,
    }
}

/// What to do with a request after the destination answered (or did not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum DestOutcome {
    /// Accepted (2xx; for tcp/udp: the bytes were written).
    Delivered,
    /// The destination refused the data (4xx); resending the same request cannot help.
    Rejected { why: String },
    /// Try again later, after `after` when the destination said so (`Retry-After`).
    Retry {
        why: String,
        after: Option<Duration>,
    },
    /// Stop sending to this destination until a person acts (credentials, TLS, wrong URL).
    Pause { why: String },
}

impl DestOutcome {
    /// A short stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            DestOutcome::Delivered => "delivered",
            DestOutcome::Rejected { .. } => "rejected",
            DestOutcome::Retry { .. } => "retry",
            DestOutcome::Pause { .. } => "pause",
        }
    }
}

/// The result of one send.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub outcome: DestOutcome,
    /// The HTTP status; `None` for tcp/udp and when no answer came.
    pub status: Option<u16>,
    /// What the next chain step sees (see [`classify`]); for tcp/udp `{"bytes_sent": n}` and,
    /// with `read_reply`, the reply as `text`.
    pub response: Value,
    pub took: Duration,
}

/// How credentials go on each request (secrets read once, in [`DestClient::new`]).
#[derive(Debug)]
enum Auth {
    None,
    Bearer(Secret),
    Basic {
        username: String,
        password: Secret,
    },
    /// The value is marked sensitive (never printed by `Debug`, never in HTTP/2 tables).
    ApiKey(HeaderName, HeaderValue),
}

#[derive(Debug)]
enum Link {
    Http {
        http: reqwest::Client,
        /// Without trailing `/`.
        base: String,
        auth: Auth,
    },
    Tcp {
        address: HostPort,
        read_reply: bool,
    },
    Udp {
        address: HostPort,
    },
}

/// One destination, ready to send.
#[derive(Debug)]
pub struct DestClient {
    id: DestId,
    kind: DestKind,
    timeout: Duration,
    max_response_bytes: usize,
    link: Link,
}

impl DestClient {
    /// Reads the destination's secrets and CA file and builds its HTTP client; an error names
    /// the destination and what failed (`destination "hapi": environment variable … is not set`).
    pub fn new(d: &Destination) -> Result<DestClient, String> {
        let fail = |e: String| format!("destination \"{}\": {e}", d.id);
        let link = match &d.target {
            Target::Http(t) | Target::Fhir(t) => {
                let base = client::check_base_url(&t.url).map_err(|e| fail(e.to_string()))?;
                let auth = match &t.auth {
                    DestAuth::None => Auth::None,
                    DestAuth::Bearer(s) => Auth::Bearer(Secret::new(s.read().map_err(fail)?)),
                    DestAuth::Basic { username, password } => Auth::Basic {
                        username: username.clone(),
                        password: Secret::new(password.read().map_err(fail)?),
                    },
                    DestAuth::ApiKey { header, key } => {
                        let name = HeaderName::from_bytes(header.as_bytes())
                            .map_err(|_| fail(format!("{header:?} is not a header name")))?;
                        let mut value = HeaderValue::from_str(&key.read().map_err(fail)?)
                            .map_err(|_| fail("the API key is not a valid header value".into()))?;
                        value.set_sensitive(true);
                        Auth::ApiKey(name, value)
                    }
                };
                let mut headers = HeaderMap::new();
                if d.kind() == DestKind::Fhir {
                    let fhir = HeaderValue::from_static("application/fhir+json");
                    headers.insert(header::ACCEPT, fhir);
                }
                for (name, value) in &t.headers {
                    let (name, value) = header_pair(name, value).map_err(fail)?;
                    headers.insert(name, value);
                }
                let pem =
                    match &t.ca_file {
                        Some(p) => Some(std::fs::read(p).map_err(|e| {
                            fail(format!("cannot read ca_file {}: {e}", p.display()))
                        })?),
                        None => None,
                    };
                let http = client::http_client(&HttpClientSettings {
                    base: &base,
                    timeout: d.timeout,
                    // DHIS2's connect budget, within the whole-request one.
                    connect_timeout: d
                        .timeout
                        .min(client::ClientSettings::DEFAULT_CONNECT_TIMEOUT),
                    extra_ca_pem: pem.as_deref(),
                    ca_key: "ca_file",
                    headers,
                })
                .map_err(|e: ClientError| fail(e.to_string()))?;
                Link::Http { http, base, auth }
            }
            Target::Tcp {
                address,
                read_reply,
            } => Link::Tcp {
                address: address.clone(),
                read_reply: *read_reply,
            },
            Target::Udp { address } => Link::Udp {
                address: address.clone(),
            },
        };
        Ok(DestClient {
            id: d.id.clone(),
            kind: d.kind(),
            timeout: d.timeout,
            max_response_bytes: d.max_response_bytes,
            link,
        })
    }

    pub fn id(&self) -> &DestId {
        &self.id
    }

    /// Send one request and say what became of it.
    pub async fn send(&self, req: &DestRequest) -> Delivery {
        let start = Instant::now();
        let (outcome, status, response) = match &self.link {
            Link::Http { http, base, auth } => self.send_http(http, base, auth, req).await,
            Link::Tcp {
                address,
                read_reply,
            } => {
                let (outcome, response) = self.send_tcp(address, *read_reply, &req.body).await;
                (outcome, None, response)
            }
            Link::Udp { address } => {
                let (outcome, response) = self.send_udp(address, &req.body).await;
                (outcome, None, response)
            }
        };
        Delivery {
            outcome,
            status,
            response,
            took: start.elapsed(),
        }
    }

    async fn send_http(
        &self,
        http: &reqwest::Client,
        base: &str,
        auth: &Auth,
        req: &DestRequest,
    ) -> (DestOutcome, Option<u16>, Value) {
        let rejected = |why: String| (DestOutcome::Rejected { why }, None, json!({}));
        let url = match join_url(base, &req.path) {
            Ok(url) => url,
            Err(why) => return rejected(why),
        };
        let mut rb = http.request(http_method(req.method), &url);
        if let Some((content_type, bytes)) = self.body_bytes(&req.body) {
            if bytes.len() > MAX_REQUEST_BYTES {
                return rejected(too_large(bytes.len(), MAX_REQUEST_BYTES));
            }
            rb = rb.header(header::CONTENT_TYPE, content_type).body(bytes);
        }
        let conditional = req
            .if_none_exist
            .as_ref()
            .map(|q| ("If-None-Exist".to_owned(), q.clone()));
        for (name, value) in req.headers.iter().cloned().chain(conditional) {
            match header_pair(&name, &value) {
                Ok((name, value)) => rb = rb.header(name, value),
                Err(why) => return rejected(why),
            }
        }
        rb = match auth {
            Auth::None => rb,
            Auth::Bearer(t) => rb.bearer_auth(t.expose()),
            Auth::Basic { username, password } => rb.basic_auth(username, Some(password.expose())),
            Auth::ApiKey(name, value) => rb.header(name, value.clone()),
        };
        let mut resp = match rb.send().await {
            Ok(resp) => resp,
            Err(e) => return (self.transport(&e), None, json!({})),
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        // A body that breaks off still leaves the status to decide (a 201 was created).
        let (body, cut) = match client::read_bounded(&mut resp, self.max_response_bytes).await {
            Ok(Bounded::Whole(b)) => (b, false),
            Ok(Bounded::Cut(b)) => (b, true),
            Err(_) => (Vec::new(), true),
        };
        let (outcome, mut response) = classify(self.kind, status, &headers, &body);
        if cut {
            response["truncated"] = Value::Bool(true);
        }
        (outcome, Some(status), response)
    }

    /// The body's bytes and their `Content-Type`; `None` for [`DestBody::None`].
    fn body_bytes(&self, body: &DestBody) -> Option<(&'static str, Vec<u8>)> {
        let fhir = self.kind == DestKind::Fhir;
        Some(match body {
            DestBody::None => return None,
            DestBody::Json(v) => (
                if fhir {
                    "application/fhir+json"
                } else {
                    "application/json"
                },
                serde_json::to_vec(v).unwrap_or_default(),
            ),
            DestBody::Xml(x) => (
                if fhir {
                    "application/fhir+xml"
                } else {
                    "application/xml"
                },
                x.clone().into_bytes(),
            ),
            DestBody::Text(t) => ("text/plain; charset=utf-8", t.clone().into_bytes()),
        })
    }

    /// A failure before any answer: TLS pauses, everything else is the link's and retries.
    fn transport(&self, e: &reqwest::Error) -> DestOutcome {
        let detail = client::chain_text(e);
        if e.is_timeout() {
            let why = format!("no answer within {:?}", self.timeout);
            return DestOutcome::Retry { why, after: None };
        }
        if let Some(tls) = client::tls_failure(e) {
            let why = match tls {
                Tls::Certificate(d) => {
                    format!("the server's TLS certificate was not accepted: {d}")
                }
                Tls::Other(d) => format!("TLS failed: {d}"),
            };
            return DestOutcome::Pause { why };
        }
        if e.is_builder() {
            let why = format!("the request is not valid: {detail}");
            return DestOutcome::Rejected { why };
        }
        let why = if e.is_connect() {
            format!("could not connect: {detail}")
        } else {
            format!("transport error: {detail}")
        };
        DestOutcome::Retry { why, after: None }
    }

    /// tcp: connect, write the body, optionally read the reply; all within `timeout`.
    async fn send_tcp(
        &self,
        address: &HostPort,
        read_reply: bool,
        body: &DestBody,
    ) -> (DestOutcome, Value) {
        let bytes = match stream_bytes(body, MAX_REQUEST_BYTES) {
            Ok(b) => b,
            Err(why) => return (DestOutcome::Rejected { why }, json!({})),
        };
        let exchange = async {
            let mut s = tokio::net::TcpStream::connect((address.host.as_str(), address.port))
                .await
                .map_err(|e| format!("could not connect to {address}: {e}"))?;
            s.write_all(&bytes)
                .await
                .map_err(|e| format!("sending to {address} failed: {e}"))?;
            let mut response = json!({ "bytes_sent": bytes.len() });
            if read_reply {
                let (reply, cut) = read_reply_from(&mut s, self.max_response_bytes).await;
                response["text"] = Value::String(String::from_utf8_lossy(&reply).into_owned());
                if cut {
                    response["truncated"] = Value::Bool(true);
                }
            }
            // Best effort: the bytes are written; a peer that already closed does not undo that.
            let _ = s.shutdown().await;
            Ok::<Value, String>(response)
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(response)) => (DestOutcome::Delivered, response),
            Ok(Err(why)) => (DestOutcome::Retry { why, after: None }, json!({})),
            Err(_) => {
                let why = format!("{address} did not take the bytes within {:?}", self.timeout);
                (DestOutcome::Retry { why, after: None }, json!({}))
            }
        }
    }

    /// udp: one datagram; no reply is awaited (UDP has no acknowledgement).
    async fn send_udp(&self, address: &HostPort, body: &DestBody) -> (DestOutcome, Value) {
        let bytes = match stream_bytes(body, MAX_UDP_BYTES) {
            Ok(b) => b,
            Err(why) => return (DestOutcome::Rejected { why }, json!({})),
        };
        let exchange = async {
            let peer = tokio::net::lookup_host((address.host.as_str(), address.port))
                .await
                .ok()
                .and_then(|mut found| found.next())
                .ok_or_else(|| format!("cannot resolve {address}"))?;
            let local: std::net::SocketAddr = if peer.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let socket = tokio::net::UdpSocket::bind(local)
                .await
                .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
            socket
                .send_to(&bytes, peer)
                .await
                .map_err(|e| format!("sending to {address} failed: {e}"))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(n)) => (DestOutcome::Delivered, json!({ "bytes_sent": n })),
            Ok(Err(why)) => (DestOutcome::Retry { why, after: None }, json!({})),
            Err(_) => {
                let why = format!("sending to {address} took over {:?}", self.timeout);
                (DestOutcome::Retry { why, after: None }, json!({}))
            }
        }
    }
}

fn too_large(bytes: usize, limit: usize) -> String {
    format!("the body is {bytes} bytes, over the {limit}-byte limit")
}

/// The bytes tcp/udp send: JSON serialized, XML and text as written; at most `limit`.
fn stream_bytes(body: &DestBody, limit: usize) -> Result<Vec<u8>, String> {
    let bytes = match body {
        DestBody::None => return Err("nothing to send: the request has no body".into()),
        DestBody::Json(v) => serde_json::to_vec(v).unwrap_or_default(),
        DestBody::Xml(s) | DestBody::Text(s) => s.clone().into_bytes(),
    };
    if bytes.len() > limit {
        return Err(too_large(bytes.len(), limit));
    }
    Ok(bytes)
}

/// Read a tcp reply until the peer closes, [`TCP_REPLY_IDLE`] passes without a byte, or
/// `limit` bytes came (`true` = cut there). A read error ends the reply; the send still counts.
async fn read_reply_from(s: &mut tokio::net::TcpStream, limit: usize) -> (Vec<u8>, bool) {
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(TCP_REPLY_IDLE, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                let room = limit - reply.len();
                if n > room {
                    reply.extend_from_slice(&chunk[..room]);
                    return (reply, true);
                }
                reply.extend_from_slice(&chunk[..n]);
            }
            _ => return (reply, false),
        }
    }
}

/// `base` + `/` + a relative `path` (a leading `?` appends a query to the URL itself). The path
/// part may not name another host; queries may hold URLs (FHIR identifier systems).
fn join_url(base: &str, path: &str) -> Result<String, String> {
    let route = path.split('?').next().unwrap_or(path);
    if route.contains("://") || route.starts_with("//") || path.contains(['\r', '\n']) {
        return Err(format!(
            "path {path:?} is not relative to the destination URL"
        ));
    }
    Ok(match path {
        "" => base.to_owned(),
        p if p.starts_with('?') => format!("{base}{p}"),
        p => format!("{base}/{}", p.trim_start_matches('/')),
    })
}

fn header_pair(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let n = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a header name"))?;
    let v = HeaderValue::from_str(value)
        .map_err(|_| format!("the value of header {name} is not a valid header value"))?;
    Ok((n, v))
}

/// What an HTTP answer means, and the `response` value the next chain step sees. PURE.
///
/// `response` is `{"status": 201}` plus, when present:
/// - `body`: the JSON body (any JSON `Content-Type`, or a body that parses as an object/array),
///   or else `text`: the body as text (bounded by `max_response_bytes` when read);
/// - `location`: the `Location` header;
/// - `id`: the created resource's id — the body's `id` (FHIR, most APIs), else its `uuid`
///   (OpenMRS), else the id in `Location` (`…/Patient/<id>/_history/<v>` or the last segment);
/// - `entries`: for a FHIR `transaction-response`/`batch-response` Bundle, one
///   `{status, location, id}` per entry (status as a number: `"201 Created"` → 201).
///
/// | answer | outcome |
/// |---|---|
/// | 2xx (FHIR 200 from a conditional create that matched: delivered, not a duplicate) | `Delivered` |
/// | 2xx batch-response with an entry ≥ 400 | `Rejected` naming the entries |
/// | 3xx (redirects are not followed) | `Pause` |
/// | 401, 403, 407 | `Pause` (credentials) |
/// | 408, 425, 429, 5xx, 1xx | `Retry` (`Retry-After` seconds honoured) |
/// | FHIR 412 (If-None-Exist matched several) | `Rejected` naming it |
/// | other 4xx | `Rejected` with the FHIR OperationOutcome issues, OpenMRS `error`, or the body text |
pub fn classify(
    kind: DestKind,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> (DestOutcome, Value) {
    let location = headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.contains("json"));
    let text = String::from_utf8_lossy(body);
    let looks_json = text.trim_start().starts_with(['{', '[']);
    let parsed = (json_type || looks_json)
        .then(|| serde_json::from_slice::<Value>(body).ok())
        .flatten();

    let mut response = Map::new();
    response.insert("status".into(), status.into());
    match &parsed {
        Some(v) => response.insert("body".into(), v.clone()),
        None if text.trim().is_empty() => None,
        None => response.insert("text".into(), Value::String(text.clone().into_owned())),
    };
    let entries = parsed.as_ref().and_then(response_entries);
    // Only an accepted request created something; a 3xx Location is a redirect, not an id.
    let id = match (&parsed, &entries) {
        _ if !(200..=299).contains(&status) => None,
        (_, Some(_)) => None,
        (Some(v), None) => v
            .get("id")
            .or_else(|| v.get("uuid"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| location.as_deref().and_then(id_in_location)),
        (None, None) => location.as_deref().and_then(id_in_location),
    };
    if let Some(l) = &location {
        response.insert("location".into(), Value::String(l.clone()));
    }
    if let Some(id) = id {
        response.insert("id".into(), Value::String(id));
    }
    let failed: Vec<String> = entries
        .iter()
        .flatten()
        .enumerate()
        .filter(|(_, e)| e["status"].as_u64().is_some_and(|s| s >= 400))
        .map(|(i, e)| format!("entry {i}: {}", e["status"]))
        .collect();
    if let Some(entries) = entries {
        response.insert("entries".into(), Value::Array(entries));
    }

    let reason = || reason(parsed.as_ref(), &text);
    let after = || retry_after(headers);
    let outcome = match status {
        200..=299 if failed.is_empty() => DestOutcome::Delivered,
        200..=299 => DestOutcome::Rejected {
            why: format!("HTTP {status}: the batch refused {}", failed.join(", ")),
        },
        300..=399 => DestOutcome::Pause {
            why: format!(
                "HTTP {status}: redirected to {} (redirects are not followed; set url to the final address)",
                location.as_deref().unwrap_or("nowhere")
            ),
        },
        401 | 403 | 407 => DestOutcome::Pause {
            why: format!("HTTP {status}: the credentials were refused ({})", reason()),
        },
        408 | 425 | 429 | 500..=599 | 100..=199 => DestOutcome::Retry {
            why: format!("HTTP {status}: {}", reason()),
            after: after(),
        },
        412 if kind == DestKind::Fhir => DestOutcome::Rejected {
            why: format!(
                "HTTP 412 Precondition Failed: the If-None-Exist search matched more than one resource ({})",
                reason()
            ),
        },
        _ => DestOutcome::Rejected {
            why: format!("HTTP {status}: {}", reason()),
        },
    };
    (outcome, Value::Object(response))
}

/// `Retry-After: <seconds>` (RFC 9110 §10.2.3); an HTTP-date is left to backoff (no clock here).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(header::RETRY_AFTER)?.to_str().ok()?;
    text.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The id in a FHIR `Location` (`[base]/Patient/123/_history/1` → `123`), else its last segment.
fn id_in_location(location: &str) -> Option<String> {
    let path = location.split(['?', '#']).next().unwrap_or(location);
    let path = match path.split_once("://") {
        Some((_, rest)) => rest.split_once('/').map_or("", |(_, p)| p),
        None => path,
    };
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let id = match parts.iter().rposition(|p| *p == "_history") {
        Some(h) if h >= 1 => parts[h - 1],
        _ => parts.last()?,
    };
    (!id.is_empty() && !id.contains(':')).then(|| id.to_owned())
}

/// `entries` of a FHIR transaction-/batch-response Bundle (R4 §3.1.0.11).
fn response_entries(body: &Value) -> Option<Vec<Value>> {
    let kind = body.get("type").and_then(Value::as_str)?;
    if body.get("resourceType").and_then(Value::as_str) != Some("Bundle")
        || !matches!(kind, "transaction-response" | "batch-response")
    {
        return None;
    }
    let entries = body.get("entry").and_then(Value::as_array)?;
    Some(
        entries
            .iter()
            .map(|e| {
                let r = &e["response"];
                let status = r["status"].as_str().unwrap_or("");
                let code = status
                    .split_whitespace()
                    .next()
                    .and_then(|c| c.parse::<u16>().ok());
                let location = r["location"].as_str();
                let id = location
                    .and_then(id_in_location)
                    .or_else(|| e["resource"]["id"].as_str().map(str::to_owned));
                json!({
                    "status": code.map_or_else(|| Value::String(status.to_owned()), Value::from),
                    "location": location,
                    "id": id,
                })
            })
            .collect(),
    )
}

/// Why a destination refused: a FHIR OperationOutcome's issues, an OpenMRS `error`, a JSON
/// `message`, or the body text — trimmed to [`REASON_CHARS`].
fn reason(json: Option<&Value>, text: &str) -> String {
    let found = json.and_then(|v| {
        operation_outcome(v)
            .or_else(|| openmrs_error(v))
            .or_else(|| v.get("message").and_then(Value::as_str).map(str::to_owned))
    });
    let why = found.unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "));
    let why = if why.is_empty() {
        "no explanation in the answer".into()
    } else {
        why
    };
    match why.char_indices().nth(REASON_CHARS) {
        Some((cut, _)) => format!("{}…", &why[..cut]),
        None => why,
    }
}

/// `error invalid: Patient.name: minimum required = 1; warning …` from
/// `issue[].severity/code/diagnostics/details.text` (R4 OperationOutcome).
fn operation_outcome(v: &Value) -> Option<String> {
    if v.get("resourceType").and_then(Value::as_str) != Some("OperationOutcome") {
        return None;
    }
    let issues: Vec<String> = v["issue"]
        .as_array()?
        .iter()
        .map(|i| {
            let text = i["diagnostics"]
                .as_str()
                .or_else(|| i["details"]["text"].as_str())
                .unwrap_or("");
            let head = format!(
                "{} {}",
                i["severity"].as_str().unwrap_or("error"),
                i["code"].as_str().unwrap_or("unknown")
            );
            if text.is_empty() {
                head
            } else {
                format!("{head}: {text}")
            }
        })
        .collect();
    (!issues.is_empty()).then(|| issues.join("; "))
}

/// OpenMRS REST's `{"error": {"message", "globalErrors": [{message}], "fieldErrors":
/// {"field": [{message}]}}}` as `message; field: message`.
fn openmrs_error(v: &Value) -> Option<String> {
    let e = v.get("error")?;
    let mut parts = vec![e.get("message")?.as_str()?.to_owned()];
    for g in e["globalErrors"].as_array().into_iter().flatten() {
        parts.extend(g["message"].as_str().map(str::to_owned));
    }
    for (field, errors) in e["fieldErrors"].as_object().into_iter().flatten() {
        for f in errors.as_array().into_iter().flatten() {
            parts.extend(f["message"].as_str().map(|m| format!("{field}: {m}")));
        }
    }
    Some(parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn fhir(status: u16, pairs: &[(&'static str, &str)], body: &str) -> (DestOutcome, Value) {
        classify(DestKind::Fhir, status, &headers(pairs), body.as_bytes())
    }

    fn why(o: &DestOutcome) -> &str {
        match o {
            DestOutcome::Rejected { why }
            | DestOutcome::Retry { why, .. }
            | DestOutcome::Pause { why } => why,
            DestOutcome::Delivered => "",
        }
    }

    const PATIENT: &str = r#"{"resourceType":"Patient","id":"1052","meta":{"versionId":"1"}}"#;

    #[test]
    fn fhir_create_gives_the_server_id_and_location() {
        let (o, r) = fhir(
            201,
            &[
                ("location", "http://hapi/fhir/Patient/1052/_history/1"),
                ("content-type", "application/fhir+json;charset=UTF-8"),
            ],
            PATIENT,
        );
        assert_eq!(o, DestOutcome::Delivered);
        assert_eq!(r["id"], "1052");
        assert_eq!(r["status"], 201);
        assert_eq!(r["location"], "http://hapi/fhir/Patient/1052/_history/1");
        assert_eq!(r["body"]["resourceType"], "Patient");
        // No body (Prefer: return=minimal): the id comes from Location.
        let (o, r) = fhir(201, &[("location", "Patient/77/_history/3")], "");
        assert_eq!((o, r["id"].as_str()), (DestOutcome::Delivered, Some("77")));
        assert!(r.get("text").is_none(), "{r}");
    }

    #[test]
    fn fhir_conditional_create_match_is_delivered_and_several_matches_rejected() {
        let (o, r) = fhir(200, &[("content-type", "application/fhir+json")], PATIENT);
        assert_eq!(
            (o, r["id"].as_str()),
            (DestOutcome::Delivered, Some("1052"))
        );
        let outcome = r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing","diagnostics":"Failed to CREATE resource with match URL \"identifier=urn:mrn|1\" because this search matched 2 resources"}]}"#;
        let (o, _) = fhir(412, &[], outcome);
        assert!(matches!(o, DestOutcome::Rejected { .. }), "{o:?}");
        assert!(why(&o).starts_with("HTTP 412 Precondition Failed: the If-None-Exist search matched more than one resource (error processing: Failed to CREATE"), "{o:?}");
    }

    #[test]
    fn operation_outcome_issues_are_the_reason() {
        let body = r#"{"resourceType":"OperationOutcome","issue":[
            {"severity":"error","code":"invalid","diagnostics":"HAPI-0450: Incorrect resource type found, expected \"Patient\" but found \"Observation\""},
            {"severity":"warning","code":"business-rule","details":{"text":"name is recommended"}}]}"#;
        let (o, r) = fhir(400, &[("content-type", "application/fhir+json")], body);
        assert_eq!(
            o,
            DestOutcome::Rejected {
                why: "HTTP 400: error invalid: HAPI-0450: Incorrect resource type found, expected \"Patient\" but found \"Observation\"; warning business-rule: name is recommended".into()
            }
        );
        assert_eq!(r["body"]["resourceType"], "OperationOutcome");
    }

    #[test]
    fn openmrs_errors_and_uuid() {
        let body = r#"{"error":{"message":"[Invalid Submission]","code":"webservices.rest.error.invalid.submission","globalErrors":[{"code":"x","message":"Patient is invalid"}],"fieldErrors":{"person":[{"code":"error.null","message":"Person is required"}]}}}"#;
        let (o, _) = classify(
            DestKind::Http,
            400,
            &headers(&[("content-type", "application/json")]),
            body.as_bytes(),
        );
        assert_eq!(
            why(&o),
            "HTTP 400: [Invalid Submission]; Patient is invalid; person: Person is required"
        );
        let (o, r) = classify(
            DestKind::Http,
            201,
            &HeaderMap::new(),
            br#"{"uuid":"a1b2-c3","display":"100-8 - Jane"}"#,
        );
        assert_eq!(
            (o, r["id"].as_str()),
            (DestOutcome::Delivered, Some("a1b2-c3"))
        );
    }

    #[test]
    fn link_trouble_retries_with_retry_after_and_credentials_pause() {
        let (o, _) = fhir(
            503,
            &[("retry-after", "7")],
            "<html><body>Service Unavailable</body></html>",
        );
        assert_eq!(
            o,
            DestOutcome::Retry {
                why: "HTTP 503: <html><body>Service Unavailable</body></html>".into(),
                after: Some(Duration::from_secs(7))
            }
        );
        for status in [408, 425, 429, 500, 502, 504] {
            let (o, _) = fhir(
                status,
                &[("retry-after", "Wed, 21 Oct 2026 07:28:00 GMT")],
                "",
            );
            assert!(
                matches!(o, DestOutcome::Retry { after: None, .. }),
                "{status}: {o:?}"
            );
        }
        for status in [401, 403, 407] {
            let (o, _) = fhir(status, &[], r#"{"message":"Bearer token expired"}"#);
            assert_eq!(
                why(&o),
                format!("HTTP {status}: the credentials were refused (Bearer token expired)")
            );
            assert!(matches!(o, DestOutcome::Pause { .. }));
        }
        let (o, _) = fhir(302, &[("location", "https://idp/login")], "");
        assert!(
            matches!(&o, DestOutcome::Pause { why } if why.contains("https://idp/login")),
            "{o:?}"
        );
        // 412 outside FHIR is an ordinary rejection; a 4xx without a body says so.
        let (o, _) = classify(DestKind::Http, 412, &HeaderMap::new(), b"");
        assert_eq!(why(&o), "HTTP 412: no explanation in the answer");
    }

    #[test]
    fn text_answers_and_long_reasons_are_bounded() {
        let long = "x ".repeat(2000);
        let (o, r) = classify(
            DestKind::Http,
            422,
            &headers(&[("content-type", "text/plain")]),
            long.as_bytes(),
        );
        assert_eq!(r["text"].as_str().map(str::len), Some(long.len()));
        assert_eq!(
            why(&o).chars().count(),
            "HTTP 422: ".len() + REASON_CHARS + 1,
            "{o:?}"
        );
        // "json" in the type but not JSON: kept as text, never a panic.
        let (_, r) = classify(
            DestKind::Http,
            200,
            &headers(&[("content-type", "application/json")]),
            b"{oops",
        );
        assert_eq!(r["text"], "{oops");
    }

    #[test]
    fn transaction_response_lists_each_entry() {
        let body = r#"{"resourceType":"Bundle","id":"b1","type":"transaction-response","entry":[
            {"response":{"status":"201 Created","location":"Patient/5/_history/1"}},
            {"response":{"status":"200 OK","location":"Observation/9/_history/2"}}]}"#;
        let (o, r) = fhir(200, &[], body);
        assert_eq!(o, DestOutcome::Delivered);
        assert_eq!(
            r["entries"],
            json!([
                {"status": 201, "location": "Patient/5/_history/1", "id": "5"},
                {"status": 200, "location": "Observation/9/_history/2", "id": "9"}
            ])
        );
        assert!(
            r.get("id").is_none(),
            "the Bundle's own id is not a created resource: {r}"
        );
        let batch = body
            .replace("transaction-response", "batch-response")
            .replace("200 OK", "400 Bad Request");
        let (o, _) = fhir(200, &[], &batch);
        assert_eq!(why(&o), "HTTP 200: the batch refused entry 1: 400");
    }

    #[test]
    fn ids_in_locations() {
        for (location, id) in [
            ("http://h/fhir/Patient/123/_history/1", Some("123")),
            ("/fhir/Patient/abc-1", Some("abc-1")),
            ("Patient/9/_history/2?x=1", Some("9")),
            ("http://h/", None),
            ("http://h", None),
            ("", None),
        ] {
            assert_eq!(id_in_location(location).as_deref(), id, "{location}");
        }
    }

    #[test]
    fn paths_stay_under_the_destination_url() {
        let base = "https://h/fhir";
        assert_eq!(
            join_url(base, "Patient").as_deref(),
            Ok("https://h/fhir/Patient")
        );
        assert_eq!(
            join_url(base, "/Patient?identifier=http://mrn|1").as_deref(),
            Ok("https://h/fhir/Patient?identifier=http://mrn|1")
        );
        assert_eq!(join_url(base, "").as_deref(), Ok(base));
        assert_eq!(
            join_url(base, "?_format=json").as_deref(),
            Ok("https://h/fhir?_format=json")
        );
        for bad in ["http://evil/x", "//evil/x", "Patient\r\nX: y"] {
            assert!(join_url(base, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn requests_round_trip_as_stored_json() {
        let req = DestRequest {
            method: Method::Post,
            path: "Patient".into(),
            headers: vec![("X-Trace".into(), "1".into())],
            body: DestBody::Json(json!({"resourceType": "Patient"})),
            if_none_exist: Some("identifier=urn:mrn|1".into()),
        };
        let stored = serde_json::to_value(&req).unwrap();
        assert_eq!(stored["method"], "POST");
        assert_eq!(
            stored["body"],
            json!({"type": "json", "value": {"resourceType": "Patient"}})
        );
        assert_eq!(serde_json::from_value::<DestRequest>(stored).unwrap(), req);
        let minimal: DestRequest = serde_json::from_str(r#"{"method":"GET"}"#).unwrap();
        assert_eq!(
            (minimal.body, minimal.if_none_exist),
            (DestBody::None, None)
        );
        let o = DestOutcome::Retry {
            why: "HTTP 503".into(),
            after: Some(Duration::from_secs(2)),
        };
        let back: DestOutcome = serde_json::from_value(serde_json::to_value(&o).unwrap()).unwrap();
        assert_eq!(back, o);
    }

    #[test]
    fn stream_bodies_and_their_limits() {
        assert_eq!(
            stream_bytes(&DestBody::Json(json!({"a": 1})), 100),
            Ok(b"{\"a\":1}".to_vec())
        );
        assert_eq!(
            stream_bytes(&DestBody::Text("MSH|".into()), 100),
            Ok(b"MSH|".to_vec())
        );
        assert!(stream_bytes(&DestBody::None, 100).is_err());
        assert_eq!(
            stream_bytes(
                &DestBody::Text("x".repeat(MAX_UDP_BYTES + 1)),
                MAX_UDP_BYTES
            ),
            Err("the body is 65508 bytes, over the 65507-byte limit".into())
        );
    }
}
