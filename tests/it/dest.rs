//! `[[destinations]]` → `DestClient` against stand-in peers on 127.0.0.1 port 0: a HAPI-like
//! FHIR server, an OpenMRS-style REST API, a TCP listener and a UDP socket, all written here.
//!
//! The FHIR stand-in follows HAPI FHIR's observable behaviour for what the client relies on:
//! `201` + `Location: …/<Type>/<id>/_history/1` + the stored resource on create; conditional
//! create (`If-None-Exist: identifier=system|value`, R4 http.html#ccreate) answering `200` with
//! the one match or `412` for several; `400` OperationOutcome with HAPI-0450 when the body's
//! `resourceType` is not the one in the path; a transaction Bundle on the base URL answered by a
//! `transaction-response`. The OpenMRS stand-in answers `POST …/ws/rest/v1/patient` with
//! `{"uuid": …}` and, on a missing `person`, OpenMRS's `{"error": {…, "fieldErrors": …}}` shape.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing;
use pocketgate::config::destinations::Destination;
use pocketgate::sync::dest::{
    DestBody, DestClient, DestOutcome, DestRequest, MAX_UDP_BYTES, Method,
};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How the FHIR stand-in answers every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal,
    /// 503 with `Retry-After: 2` (HAPI behind a restarting proxy).
    Unavailable,
    /// Never answers (for the client's timeout).
    Hang,
    /// 401 (an expired token).
    Unauthorized,
}

#[derive(Default)]
struct Peer {
    /// FHIR: every stored resource; OpenMRS: every created patient.
    stored: Mutex<Vec<Value>>,
    mode: Mutex<Option<Mode>>,
    /// The request headers of every request, in order.
    seen: Mutex<Vec<HeaderMap>>,
}

impl Peer {
    fn mode(&self) -> Mode {
        self.mode.lock().unwrap().unwrap_or(Mode::Normal)
    }
    fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = Some(mode);
    }
    fn count(&self, resource_type: &str) -> usize {
        let stored = self.stored.lock().unwrap();
        stored
            .iter()
            .filter(|r| r["resourceType"] == resource_type)
            .count()
    }
    /// How many requests reached the stand-in.
    fn requests(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
    fn last_headers(&self) -> HeaderMap {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }
}

fn fhir_json(status: StatusCode, extra: &[(header::HeaderName, String)], body: &Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        "application/fhir+json;charset=UTF-8".parse().unwrap(),
    );
    for (name, value) in extra {
        h.insert(name.clone(), value.parse().unwrap());
    }
    resp
}

fn operation_outcome(status: StatusCode, code: &str, diagnostics: &str) -> Response {
    let body = json!({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": code, "diagnostics": diagnostics}]});
    fhir_json(status, &[], &body)
}

/// Does `resource` carry the identifier in `identifier=system|value`?
fn matches(resource: &Value, search: &str) -> bool {
    let Some((system, value)) = search
        .strip_prefix("identifier=")
        .and_then(|s| s.split_once('|'))
    else {
        return false;
    };
    resource["identifier"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|i| i["system"] == system && i["value"] == value)
}

/// Create `resource` as `rtype` under the conditional-create rules: `(status, stored)`.
fn create(peer: &Peer, rtype: &str, mut resource: Value, if_none_exist: Option<&str>) -> Response {
    if resource["resourceType"] != rtype {
        let found = resource["resourceType"].as_str().unwrap_or("").to_owned();
        return operation_outcome(
            StatusCode::BAD_REQUEST,
            "processing",
            &format!(
                "HAPI-0450: Incorrect resource type found, expected \"{rtype}\" but found \"{found}\""
            ),
        );
    }
    let mut stored = peer.stored.lock().unwrap();
    if let Some(search) = if_none_exist {
        let found: Vec<&Value> = stored
            .iter()
            .filter(|r| r["resourceType"] == rtype && matches(r, search))
            .collect();
        match found.len() {
            0 => {}
            1 => return fhir_json(StatusCode::OK, &[], found[0]),
            n => {
                return operation_outcome(
                    StatusCode::PRECONDITION_FAILED,
                    "processing",
                    &format!(
                        "HAPI-0958: Failed to CREATE resource with match URL \"{search}\" because this search matched {n} resources"
                    ),
                );
            }
        }
    }
    let id = (1000 + stored.len()).to_string();
    resource["id"] = json!(id);
    resource["meta"] = json!({"versionId": "1"});
    stored.push(resource.clone());
    let location = format!("/fhir/{rtype}/{id}/_history/1");
    fhir_json(
        StatusCode::CREATED,
        &[(header::LOCATION, location)],
        &resource,
    )
}

/// Answers that do not depend on the request (the test switched the peer's mode).
async fn fault(peer: &Peer) -> Option<Response> {
    match peer.mode() {
        Mode::Normal => None,
        Mode::Unavailable => Some(
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "2")],
                "<html><body><h1>503 Service Unavailable</h1></body></html>",
            )
                .into_response(),
        ),
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            None
        }
        Mode::Unauthorized => Some(operation_outcome(
            StatusCode::UNAUTHORIZED,
            "login",
            "HAPI-0644: Missing or invalid Authorization header",
        )),
    }
}

async fn fhir_create(
    State(peer): State<Arc<Peer>>,
    Path(rtype): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    peer.seen.lock().unwrap().push(headers.clone());
    if let Some(answer) = fault(&peer).await {
        return answer;
    }
    let Ok(resource) = serde_json::from_slice::<Value>(&body) else {
        return operation_outcome(
            StatusCode::BAD_REQUEST,
            "structure",
            "HAPI-1861: Failed to parse JSON",
        );
    };
    let search = headers.get("if-none-exist").and_then(|v| v.to_str().ok());
    create(&peer, &rtype, resource, search)
}

/// `POST [base]` with a transaction Bundle: each POST entry is created (with its own
/// `request.ifNoneExist`), answered by a transaction-response.
async fn fhir_transaction(State(peer): State<Arc<Peer>>, body: Bytes) -> Response {
    let bundle: Value = serde_json::from_slice(&body).unwrap_or_default();
    if bundle["resourceType"] != "Bundle" || bundle["type"] != "transaction" {
        return operation_outcome(
            StatusCode::BAD_REQUEST,
            "invalid",
            "expected a transaction Bundle",
        );
    }
    let mut entries = Vec::new();
    for entry in bundle["entry"].as_array().into_iter().flatten() {
        let url = entry["request"]["url"].as_str().unwrap_or("");
        let answer = create(
            &peer,
            url,
            entry["resource"].clone(),
            entry["request"]["ifNoneExist"].as_str(),
        );
        let status = answer.status();
        let location = answer
            .headers()
            .get(header::LOCATION)
            .map(|l| l.to_str().unwrap().to_owned());
        entries.push(json!({"response": {
            "status": format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or("")),
            "location": location,
        }}));
    }
    let body = json!({"resourceType": "Bundle", "id": "tx-1", "type": "transaction-response", "entry": entries});
    fhir_json(StatusCode::OK, &[], &body)
}

/// `POST /openmrs/ws/rest/v1/patient`, Basic `admin:Admin123`.
async fn openmrs_patient(
    State(peer): State<Arc<Peer>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    use base64::Engine;
    peer.seen.lock().unwrap().push(headers.clone());
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("admin:Admin123")
    );
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(expected.as_str())
    {
        let body = json!({"error": {"message": "User is not logged in", "code": "org.openmrs.api.context.Context", "detail": ""}});
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    }
    let patient: Value = serde_json::from_slice(&body).unwrap_or_default();
    if patient.get("person").is_none() {
        let body = json!({"error": {
            "message": "[Invalid Submission]",
            "code": "webservices.rest.error.invalid.submission",
            "globalErrors": [],
            "fieldErrors": {"person": [{"code": "error.null", "message": "Person is required"}]}
        }});
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    }
    let mut stored = peer.stored.lock().unwrap();
    let uuid = format!("5c8d2f3e-0000-4000-8000-{:012}", stored.len() + 1);
    stored.push(json!({"resourceType": "Patient", "uuid": uuid}));
    let answer = json!({"uuid": uuid, "display": "100-8 - Jane Test"});
    (StatusCode::CREATED, axum::Json(answer)).into_response()
}

/// The FHIR and OpenMRS stand-ins on one server: `http://<addr>/fhir`, `…/openmrs/ws/rest/v1`.
async fn start_peer() -> (SocketAddr, Arc<Peer>) {
    let peer = Arc::new(Peer::default());
    let app = Router::new()
        .route("/fhir", routing::post(fhir_transaction))
        .route("/fhir/{rtype}", routing::post(fhir_create))
        .route(
            "/openmrs/ws/rest/v1/patient",
            routing::post(openmrs_patient),
        )
        .with_state(peer.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, peer)
}

/// One destination from `keys` (a `[[destinations]]` body) through the real config parser.
fn destination(keys: &str) -> Destination {
    let text = format!("[gateway]\ndata_dir = \"/tmp/pg\"\n[[destinations]]\n{keys}");
    let mut config = pocketgate::config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
    config.destinations.remove(0)
}

fn client(keys: &str) -> DestClient {
    DestClient::new(&destination(keys)).unwrap_or_else(|e| panic!("{e}"))
}

/// A file holding `secret`, kept until the test ends.
fn secret_file(secret: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), format!("{secret}\n")).unwrap();
    file
}

fn hapi(addr: SocketAddr, token: &tempfile::NamedTempFile, extra: &str) -> DestClient {
    client(&format!(
        "id = \"hapi\"\nkind = \"fhir\"\nurl = \"http://{addr}/fhir\"\ntoken_file = \"{}\"\n{extra}\n\
         [destinations.headers]\nX-Tenant = \"clinic-a\"\n",
        token.path().display()
    ))
}

/// The stand-in peer and a `hapi` client for it (bearer token `hapi-token-1`; the token file
/// lives as long as the returned handle).
async fn hapi_peer(extra: &str) -> (DestClient, Arc<Peer>, tempfile::NamedTempFile) {
    let (addr, peer) = start_peer().await;
    let token = secret_file("hapi-token-1");
    (hapi(addr, &token, extra), peer, token)
}

fn patient(mrn: &str) -> Value {
    json!({"resourceType": "Patient",
           "identifier": [{"system": "urn:clinic-a:mrn", "value": mrn}],
           "name": [{"family": "Test", "given": ["Jane"]}]})
}

fn post(path: &str, body: Value, if_none_exist: Option<&str>) -> DestRequest {
    DestRequest {
        method: Method::Post,
        path: path.into(),
        headers: Vec::new(),
        body: DestBody::Json(body),
        if_none_exist: if_none_exist.map(str::to_owned),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fhir_create_returns_the_server_id_and_the_next_step_uses_it() {
    let (hapi, peer, _token) = hapi_peer("").await;
    let created = hapi.send(&post("Patient", patient("MRN-1"), None)).await;
    assert_eq!(created.outcome, DestOutcome::Delivered, "{created:?}");
    assert_eq!(created.status, Some(201));
    assert_eq!(created.response["id"], "1000");
    assert_eq!(
        created.response["location"],
        "/fhir/Patient/1000/_history/1"
    );
    let seen = peer.last_headers();
    for (name, value) in [
        ("content-type", "application/fhir+json"),
        ("accept", "application/fhir+json"),
        ("authorization", "Bearer hapi-token-1"),
        ("x-tenant", "clinic-a"),
    ] {
        assert_eq!(
            seen.get(name).and_then(|v| v.to_str().ok()),
            Some(value),
            "{name}"
        );
    }
    // Chaining: the Observation refers to the patient the first step created.
    let subject = format!("Patient/{}", created.response["id"].as_str().unwrap());
    let observation = json!({"resourceType": "Observation", "status": "final",
        "code": {"text": "HIV-1 viral load"}, "subject": {"reference": subject}});
    let next = hapi.send(&post("Observation", observation, None)).await;
    assert_eq!(next.outcome, DestOutcome::Delivered, "{next:?}");
    let stored = peer.stored.lock().unwrap().clone();
    assert_eq!(stored[1]["subject"]["reference"], "Patient/1000");
}

#[tokio::test(flavor = "multi_thread")]
async fn conditional_create_resent_gives_the_same_id_and_no_duplicate() {
    let (hapi, peer, _token) = hapi_peer("").await;
    let search = "identifier=urn:clinic-a:mrn|MRN-7";
    let first = hapi
        .send(&post("Patient", patient("MRN-7"), Some(search)))
        .await;
    // The answer to the first was "lost": the outbox sends the same request again.
    let again = hapi
        .send(&post("Patient", patient("MRN-7"), Some(search)))
        .await;
    assert_eq!((first.status, again.status), (Some(201), Some(200)));
    assert_eq!(again.outcome, DestOutcome::Delivered);
    assert_eq!(first.response["id"], again.response["id"]);
    assert_eq!(peer.count("Patient"), 1);
    assert_eq!(
        peer.last_headers()
            .get("if-none-exist")
            .and_then(|v| v.to_str().ok()),
        Some(search)
    );
    // Two patients already carry the identifier: 412, rejected, nothing created.
    hapi.send(&post("Patient", patient("MRN-9"), None)).await;
    hapi.send(&post("Patient", patient("MRN-9"), None)).await;
    let twice = "identifier=urn:clinic-a:mrn|MRN-9";
    let d = hapi
        .send(&post("Patient", patient("MRN-9"), Some(twice)))
        .await;
    assert_eq!(d.status, Some(412));
    assert!(
        matches!(&d.outcome, DestOutcome::Rejected { why } if why.contains("If-None-Exist") && why.contains("matched 2 resources")),
        "{d:?}"
    );
    assert_eq!(peer.count("Patient"), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn operation_outcome_400_is_rejected_with_its_diagnostics() {
    let (hapi, _peer, _token) = hapi_peer("").await;
    let d = hapi
        .send(&post(
            "Patient",
            json!({"resourceType": "Observation"}),
            None,
        ))
        .await;
    assert_eq!(
        d.outcome,
        DestOutcome::Rejected {
            why: "HTTP 400: error processing: HAPI-0450: Incorrect resource type found, expected \"Patient\" but found \"Observation\"".into()
        }
    );
    assert_eq!(d.response["body"]["resourceType"], "OperationOutcome");
}

#[tokio::test(flavor = "multi_thread")]
async fn transaction_bundle_answers_each_entry() {
    let (hapi, peer, _token) = hapi_peer("").await;
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient("MRN-20"), "request": {"method": "POST", "url": "Patient",
            "ifNoneExist": "identifier=urn:clinic-a:mrn|MRN-20"}},
        {"resource": {"resourceType": "Observation", "status": "final"},
            "request": {"method": "POST", "url": "Observation"}}]});
    let d = hapi.send(&post("", bundle, None)).await;
    assert_eq!(d.outcome, DestOutcome::Delivered, "{d:?}");
    assert_eq!(
        d.response["entries"],
        json!([
            {"status": 201, "location": "/fhir/Patient/1000/_history/1", "id": "1000"},
            {"status": 201, "location": "/fhir/Observation/1001/_history/1", "id": "1001"}
        ])
    );
    assert_eq!(peer.count("Observation"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn unavailable_retries_after_its_retry_after_and_401_pauses() {
    let (hapi, peer, _token) = hapi_peer("").await;
    peer.set_mode(Mode::Unavailable);
    let d = hapi.send(&post("Patient", patient("MRN-2"), None)).await;
    assert_eq!(d.status, Some(503));
    assert!(
        matches!(&d.outcome, DestOutcome::Retry { why, after: Some(a) } if why.starts_with("HTTP 503: <html>") && *a == Duration::from_secs(2)),
        "{d:?}"
    );
    peer.set_mode(Mode::Unauthorized);
    let d = hapi.send(&post("Patient", patient("MRN-2"), None)).await;
    assert_eq!(
        d.outcome,
        DestOutcome::Pause {
            why: "HTTP 401: the credentials were refused (error login: HAPI-0644: Missing or invalid Authorization header)".into()
        }
    );
    assert_eq!(peer.count("Patient"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_that_never_answers_retries_within_the_timeout() {
    let (hapi, peer, _token) = hapi_peer("timeout = \"1s\"").await;
    peer.set_mode(Mode::Hang);
    let d = hapi.send(&post("Patient", patient("MRN-3"), None)).await;
    assert_eq!(
        d.outcome,
        DestOutcome::Retry {
            why: "no answer within 1s".into(),
            after: None
        }
    );
    assert!(
        d.took >= Duration::from_secs(1) && d.took < Duration::from_secs(3),
        "{:?}",
        d.took
    );
    // Nobody listening at all: retried too, with the reason.
    let closed = crate::support::free_addr();
    let d = client(&format!(
        "id = \"gone\"\nkind = \"http\"\nurl = \"http://{closed}\"\n"
    ))
    .send(&post("x", json!({}), None))
    .await;
    assert!(
        matches!(&d.outcome, DestOutcome::Retry { why, .. } if why.starts_with("could not connect")),
        "{d:?}"
    );
}

/// A listener that answers TLS with plain HTTP: the handshake fails, which pauses (a person
/// must fix the URL or the trust), never retries forever.
#[tokio::test(flavor = "multi_thread")]
async fn tls_failure_pauses() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    let d = client(&format!(
        "id = \"tls\"\nkind = \"fhir\"\nurl = \"https://{addr}/fhir\"\n"
    ))
    .send(&post("Patient", patient("x"), None))
    .await;
    assert!(
        matches!(&d.outcome, DestOutcome::Pause { why } if why.starts_with("TLS failed")),
        "{d:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn openmrs_gets_basic_auth_and_returns_the_uuid_or_its_field_errors() {
    let (addr, peer) = start_peer().await;
    let password = secret_file("Admin123");
    let keys = |pw: &std::path::Path| {
        format!(
            "id = \"openmrs\"\nkind = \"http\"\nurl = \"http://{addr}/openmrs/ws/rest/v1\"\n\
             username = \"admin\"\npassword_file = \"{}\"\n",
            pw.display()
        )
    };
    let openmrs = client(&keys(password.path()));
    let person = json!({"person": "0a1b-person", "identifiers": [{"identifier": "100-8"}]});
    let d = openmrs.send(&post("patient", person, None)).await;
    assert_eq!(
        (d.outcome.clone(), d.status),
        (DestOutcome::Delivered, Some(201)),
        "{d:?}"
    );
    assert_eq!(d.response["id"], "5c8d2f3e-0000-4000-8000-000000000001");
    assert_eq!(
        peer.last_headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let d = openmrs
        .send(&post("patient", json!({"identifiers": []}), None))
        .await;
    assert_eq!(
        d.outcome,
        DestOutcome::Rejected {
            why: "HTTP 400: [Invalid Submission]; person: Person is required".into()
        }
    );
    let wrong = secret_file("nope");
    let d = client(&keys(wrong.path()))
        .send(&post("patient", json!({"person": "p"}), None))
        .await;
    assert!(matches!(d.outcome, DestOutcome::Pause { .. }), "{d:?}");
    assert_eq!(peer.stored.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_listener_receives_the_bytes_and_its_reply_is_kept() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                // Read one MLLP-framed message (ends FS CR), answer, close.
                let mut got = Vec::new();
                let mut buf = [0u8; 1024];
                while !got.ends_with(b"\x1c\r") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(b"\x0bMSA|AA|1\x1c\r").await;
                let _ = tx.send(got);
            });
        }
    });
    let msg = "\x0bMSH|^~\\&|POCKETGATE\rOBX|1|NM|HIV1VL||763\x1c\r";
    let tcp = client(&format!(
        "id = \"lis\"\nkind = \"tcp\"\naddress = \"{addr}\"\nread_reply = true\n"
    ));
    let req = DestRequest {
        method: Method::Post,
        path: String::new(),
        headers: Vec::new(),
        body: DestBody::Text(msg.into()),
        if_none_exist: None,
    };
    let d = tcp.send(&req).await;
    assert_eq!(d.outcome, DestOutcome::Delivered, "{d:?}");
    assert_eq!(rx.recv().await.unwrap(), msg.as_bytes());
    assert_eq!(
        d.response,
        json!({"bytes_sent": msg.len(), "text": "\x0bMSA|AA|1\x1c\r"})
    );
    assert_eq!(d.status, None);
    // JSON bodies go as their serialization; without read_reply nothing is awaited.
    let plain = client(&format!(
        "id = \"lis\"\nkind = \"tcp\"\naddress = \"{addr}\"\n"
    ));
    let d = plain.send(&post("", json!({"v": "\x1c\r"}), None)).await;
    assert_eq!(d.outcome, DestOutcome::Delivered);
    assert_eq!(rx.recv().await.unwrap(), br#"{"v":"\u001c\r"}"#);
}

#[tokio::test(flavor = "multi_thread")]
async fn udp_socket_receives_one_datagram_and_an_oversize_one_is_refused() {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let udp = client(&format!(
        "id = \"syslog\"\nkind = \"udp\"\naddress = \"{addr}\"\n"
    ));
    let text = |s: String| DestRequest {
        method: Method::Post,
        path: String::new(),
        headers: Vec::new(),
        body: DestBody::Text(s),
        if_none_exist: None,
    };
    let d = udp
        .send(&text("<134>pocketgate: result 42 delivered".into()))
        .await;
    assert_eq!(d.outcome, DestOutcome::Delivered, "{d:?}");
    let mut buf = vec![0u8; 70_000];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"<134>pocketgate: result 42 delivered");

    let d = udp.send(&text("x".repeat(MAX_UDP_BYTES + 1))).await;
    assert_eq!(
        d.outcome,
        DestOutcome::Rejected {
            why: "the body is 65508 bytes, over the 65507-byte limit".into()
        }
    );
    let nothing =
        tokio::time::timeout(Duration::from_millis(300), socket.recv_from(&mut buf)).await;
    assert!(nothing.is_err(), "an oversize datagram was sent");
}

/// A config file with destinations loads, and a missing secret is named with the destination.
#[test]
fn config_file_with_destinations_loads_and_a_missing_secret_names_the_destination() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pocketgate.toml");
    let text = "[gateway]\ndata_dir = \"/tmp/pg\"\n\n[[destinations]]\nid = \"hapi\"\nkind = \"fhir\"\n\
         url = \"https://fhir.example.org/fhir\"\ntoken_file = \"/nonexistent/hapi-token\"\n\n\
         [[destinations]]\nid = \"lis\"\nkind = \"tcp\"\naddress = \"lis.lan:6661\"\nheaders = { A = \"b\" }\n";
    std::fs::write(&path, text).unwrap();
    let e = pocketgate::config::load(&path).unwrap_err().to_string();
    assert_eq!(
        e,
        "destinations[1].headers (line 14): not used by kind \"tcp\""
    );
    std::fs::write(&path, text.replace("headers = { A = \"b\" }\n", "")).unwrap();
    let config = pocketgate::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.destinations.len(), 2);
    let e = DestClient::new(&config.destinations[0]).unwrap_err();
    assert!(
        e.starts_with("destination \"hapi\": cannot read secret file /nonexistent/hapi-token"),
        "{e}"
    );
    assert!(DestClient::new(&config.destinations[1]).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Through the gateway: Temprs naming a destination, each destination in its own outbox lane.

use crate::support::{
    Dhis2Sim, Gateway, dhis2_block, free_addr, numbered_messages, statuses, tcp_source,
    wait_settled,
};
use pocketgate::sim::{self as device, SimOptions};

const OU: &str = "OuClinicA01";

/// A FHIR Observation per HbA1c result, created once (If-None-Exist on the sample id), then the
/// chain's next step: a DHIS2 event that carries the id the FHIR server gave the Observation.
const FHIR_TEMPR: &str = r#"
name = "hba1c-fhir"
version = 1
kind = "template"
destination = "hapi"
next = "hba1c-after-fhir"
template = '''
{% set r = record.results["HbA1c"] %}
{"path": "Observation",
 "if_none_exist": {{ ("identifier=urn:pocketgate:sample|" ~ record.sample_id)|tojson }},
 "body": {"resourceType": "Observation", "status": "final",
          "identifier": [{"system": "urn:pocketgate:sample", "value": {{ record.sample_id|tojson }}}],
          "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
          "valueQuantity": {"value": {{ r.value|float }}, "unit": "%"}}}
'''

[match]
test_codes = "HbA1c"
"#;

const AFTER_FHIR_TEMPR: &str = r#"
name = "hba1c-after-fhir"
version = 1
kind = "template"
endpoint = "tracker"
template = '''
{% set r = record.results["HbA1c"] %}
{"events": [{
  "event": {{ uid(record.source ~ ":" ~ record.sample_id ~ ":LabStage001")|tojson }},
  "program": "LabRslts001", "programStage": "LabStage001",
  "orgUnit": {{ ctx.org_unit|tojson }},
  "occurredAt": {{ r.observed_at|dhis2_datetime|tojson }},
  "status": "COMPLETED",
  "dataValues": [
    {"dataElement": "LabTestCode", "value": {{ ("fhir:Observation/" ~ ctx.previous.id)|tojson }}},
    {"dataElement": "LabResult01", "value": {{ ("POSITIVE" if r.value|float >= 6.5 else "NEGATIVE")|tojson }}},
    {"dataElement": "LabValue001", "value": {{ r.value|tojson }}}
  ]
}]}
'''
"#;

fn gateway_with(
    sim: &Dhis2Sim,
    fhir: SocketAddr,
    token: &tempfile::NamedTempFile,
    temprs: &[(&str, &str)],
    extra: &str,
) -> (Gateway, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in temprs {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    let addr = free_addr();
    let gw = Gateway::start(&format!(
        "{}\n{}\n[[destinations]]\nid = \"hapi\"\nkind = \"fhir\"\nurl = \"http://{fhir}/fhir\"\n\
         token_file = \"{}\"\nretry_min = \"200ms\"\nretry_max = \"1s\"\ntimeout = \"5s\"\n\
         store_exchanges = true\n{extra}",
        tcp_source("afinion", addr, "30s"),
        dhis2_block(sim, dir.path(), OU),
        token.path().display()
    ));
    gw.wait_listening(addr);
    (gw, addr, dir)
}

/// FHIR_TEMPR without its chain's next step: the Observation alone.
fn fhir_only() -> String {
    FHIR_TEMPR.replace("next = \"hba1c-after-fhir\"\n", "")
}

/// A `sync_state` value (`link:hapi`, `paused:hapi`), if set.
fn sync_state(gw: &Gateway, key: &str) -> Option<String> {
    gw.reader()
        .conn()
        .query_row("SELECT value FROM sync_state WHERE key = ?1", [key], |r| {
            r.get::<_, String>(0)
        })
        .ok()
}

/// Outcome and HTTP status of every kept exchange, oldest first.
fn exchanges(gw: &Gateway) -> Vec<(String, Option<u16>)> {
    let reader = gw.reader();
    let mut stmt = reader
        .conn()
        .prepare("SELECT outcome, status FROM exchanges WHERE destination = 'hapi' ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

async fn send(addr: SocketAddr, msgs: &[Vec<u8>]) -> usize {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    device::play(&mut s, msgs, &SimOptions::default())
        .await
        .unwrap()
        .acked
        .len()
}

#[tokio::test(flavor = "multi_thread")]
async fn chain_creates_the_fhir_observation_then_the_dhis2_event_carries_its_id() {
    let sim = Dhis2Sim::start("2.41.3");
    let (fhir, peer) = start_peer().await;
    let token = secret_file("hapi-token-1");
    let (gw, addr, _t) = gateway_with(
        &sim,
        fhir,
        &token,
        &[("fhir.toml", FHIR_TEMPR), ("after.toml", AFTER_FHIR_TEMPR)],
        "",
    );
    assert_eq!(send(addr, &numbered_messages(3)).await, 3);
    let settled = wait_settled(&gw, 3, Duration::from_secs(60));
    assert!(
        settled.iter().all(|(s, _)| s == "delivered"),
        "{settled:?}\n{}",
        gw.log()
    );
    assert_eq!(peer.count("Observation"), 3);
    let ids: Vec<String> = peer
        .stored
        .lock()
        .unwrap()
        .iter()
        .map(|r| format!("fhir:Observation/{}", r["id"].as_str().unwrap()))
        .collect();
    let events = sim.events();
    assert_eq!(events.len(), 3, "{:#}", sim.objects());
    for e in &events {
        let code = e["dataValues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|dv| dv["dataElement"] == "LabTestCode")
            .and_then(|dv| dv["value"].as_str())
            .unwrap_or_default()
            .to_string();
        assert!(ids.contains(&code), "{code} not one of {ids:?}");
    }
    assert_eq!(
        peer.last_headers()["authorization"],
        "Bearer hapi-token-1",
        "the destination's token"
    );
    // store_exchanges = true: each request and its answer are kept.
    assert_eq!(
        exchanges(&gw),
        vec![("delivered".to_string(), Some(201)); 3]
    );

    // The analyzer resends: stored once, no second Observation and no second event.
    assert_eq!(send(addr, &numbered_messages(3)).await, 3);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(peer.count("Observation"), 3);
    assert_eq!(sim.events().len(), 3);
}

/// The same results go to DHIS2 (its own Tempr) and to FHIR; FHIR answers 503 for a while.
#[tokio::test(flavor = "multi_thread")]
async fn a_destination_that_is_down_holds_back_only_its_own_lane() {
    let sim = Dhis2Sim::start("2.41.3");
    let (fhir, peer) = start_peer().await;
    peer.set_mode(Mode::Unavailable);
    let token = secret_file("hapi-token-1");
    let fhir_only = fhir_only();
    let (gw, addr, _t) = gateway_with(
        &sim,
        fhir,
        &token,
        &[
            ("fhir.toml", &fhir_only),
            (
                "dhis2.toml",
                include_str!("../fixtures/temprs/hba1c-event.toml"),
            ),
        ],
        "",
    );
    assert_eq!(send(addr, &numbered_messages(10)).await, 10);
    // DHIS2 gets every event while FHIR refuses.
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while sim.events().len() < 10 {
        assert!(std::time::Instant::now() < until, "{}", gw.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(peer.count("Observation"), 0);
    // Not delivered yet: each message still has its FHIR request pending.
    assert!(
        statuses(&gw).iter().all(|(s, _)| s == "rendered"),
        "{:?}",
        statuses(&gw)
    );
    let link = sync_state(&gw, "link:hapi").unwrap();
    assert!(link.starts_with("down: hapi: "), "{link}");
    // What a person sees with `pocketgate status`.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pocketgate"))
        .args(["status", "--config"])
        .arg(&gw.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("hapi (fhir)"))
        .unwrap_or("");
    assert!(
        line.contains("link down: hapi: ") && line.contains("pending 10, rejected 0"),
        "{text}"
    );

    let kept = exchanges(&gw);
    assert!(
        !kept.is_empty() && kept.iter().all(|e| *e == ("retry".to_string(), Some(503))),
        "{kept:?}"
    );

    peer.set_mode(Mode::Normal);
    let settled = wait_settled(&gw, 10, Duration::from_secs(60));
    assert!(settled.iter().all(|(s, _)| s == "delivered"), "{settled:?}");
    assert_eq!(peer.count("Observation"), 10, "each result once");
    assert_eq!(sim.events().len(), 10);
}

/// An expired token (401) pauses only the FHIR lane; the dashboard says so and its Resume
/// button starts it again once the token is fixed.
#[tokio::test(flavor = "multi_thread")]
async fn a_paused_destination_is_resumed_from_the_dashboard() {
    use crate::web::Browser;
    let sim = Dhis2Sim::start("2.41.3");
    let (fhir, peer) = start_peer().await;
    peer.set_mode(Mode::Unauthorized);
    let token = secret_file("hapi-token-1");
    let fhir_only = fhir_only();
    let web = free_addr();
    let (gw, addr, _t) = gateway_with(
        &sim,
        fhir,
        &token,
        &[("fhir.toml", &fhir_only)],
        &format!("[web]\nlisten = \"{web}\"\n"),
    );
    gw.wait_listening(web);
    assert_eq!(send(addr, &numbered_messages(4)).await, 4);
    let paused = || sync_state(&gw, "paused:hapi");
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while paused().is_none() {
        assert!(std::time::Instant::now() < until, "{}", gw.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let why = paused().unwrap();
    assert!(why.contains("401"), "{why}");
    // Paused: the lane stops sending (one 401, then nothing while it stays paused).
    let tried = peer.requests();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(peer.requests(), tried, "a paused lane sends nothing");

    let mut b = Browser::new(web);
    let csrf = b.set_password();
    let page = b.get("/").body;
    assert!(page.contains("PAUSED: "), "{page}");
    assert!(
        page.contains("action=\"/destinations/hapi/resume\""),
        "{page}"
    );
    // Unknown destination or action: 404 naming it.
    let r = b.post_form("/destinations/nope/resume", &[("csrf", &csrf)]);
    assert_eq!(r.status, 404, "{r:?}");
    assert!(
        r.body.contains("nope") && r.body.contains("not in [[destinations]]"),
        "{}",
        r.body
    );
    let r = b.post_form("/destinations/hapi/restart", &[("csrf", &csrf)]);
    assert_eq!(r.status, 404, "{r:?}");
    // Without the CSRF token nothing happens.
    assert_eq!(b.post_form("/destinations/hapi/resume", &[]).status, 403);
    assert!(paused().is_some());

    assert_eq!(
        gw.log()
            .matches("destination paused; fix the cause")
            .count(),
        1,
        "the pause is logged once, not on each commit while paused:\n{}",
        gw.log()
    );

    // The token is renewed on the server; the person presses Resume.
    peer.set_mode(Mode::Normal);
    let r = b.post_form("/destinations/hapi/resume", &[("csrf", &csrf)]);
    assert_eq!((r.status, r.location()), (303, "/"), "{r:?}");
    let settled = wait_settled(&gw, 4, Duration::from_secs(60));
    assert!(settled.iter().all(|(s, _)| s == "delivered"), "{settled:?}");
    assert_eq!(peer.count("Observation"), 4, "each result once");
    let page = b.get("/").body;
    assert!(!page.contains("PAUSED"), "{page}");
    // Pause through the API, as a script would; the page then offers Resume again.
    let r = b.post_json("/api/v1/destinations/hapi/pause", Some(&csrf), json!({}));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(paused().as_deref(), Some("paused from the web page"));
    // The Temprs page says where each Tempr sends.
    let temprs = b.get("/temprs").body;
    assert!(temprs.contains("<td>hapi</td>"), "{temprs}");
    let audit = b.get("/api/v1/audit").body;
    for action in ["destination.resume", "destination.pause"] {
        assert!(audit.contains(action), "{action}: {audit}");
    }
    let r = b.post_json("/api/v1/destinations/hapi/resume", Some(&csrf), json!({}));
    assert_eq!(r.status, 200, "{r:?}");

    // A Tempr edited on the page to send to a destination the config lacks is refused, and
    // the file stays as it was.
    let file = _t.path().join("fhir.toml");
    let before = std::fs::read_to_string(&file).unwrap();
    let typo = before.replace("destination = \"hapi\"", "destination = \"hapii\"");
    let r = b.post_form("/temprs/hba1c-fhir", &[("csrf", &csrf), ("text", &typo)]);
    assert_eq!(r.status, 422, "{r:?}");
    assert!(
        r.body.contains("hapii") && r.body.contains("is not an enabled [[destinations]] entry"),
        "{}",
        r.body
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
    // A stray file with the same mistake put on the card by hand: the next reload is refused
    // with the reason, and the running gateway goes on receiving and delivering.
    std::fs::write(
        _t.path().join("stray.toml"),
        typo.replace("name = \"hba1c-fhir\"", "name = \"stray\""),
    )
    .unwrap();
    let edited = before.replace("version = 1", "version = 2");
    let r = b.post_form("/temprs/hba1c-fhir", &[("csrf", &csrf), ("text", &edited)]);
    assert_eq!(
        (r.status, r.location()),
        (303, "/temprs/hba1c-fhir"),
        "{r:?}"
    );
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while !gw.log().contains("config reload refused") {
        assert!(std::time::Instant::now() < until, "{}", gw.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gw.log().contains("hapii"), "{}", gw.log());
    assert_eq!(send(addr, &numbered_messages(6)).await, 6);
    let settled = wait_settled(&gw, 6, Duration::from_secs(60));
    assert!(settled.iter().all(|(s, _)| s == "delivered"), "{settled:?}");
    assert_eq!(peer.count("Observation"), 6);
    assert_eq!(b.get("/").status, 200, "the web page still answers");
}

/// Open Interop's shape of a chain, with its template language: a Mustache Tempr creates the
/// patient in OpenMRS (REST, Basic auth); the next step (a minijinja Tempr: Mustache cannot
/// compare the value with the HbA1c cut-off that DHIS2's mandatory LabResult01 needs) sends the
/// DHIS2 event with the uuid OpenMRS gave the patient.
const OPENMRS_TEMPR: &str = r#"
name = "hba1c-openmrs"
version = 1
kind = "mustache"
destination = "openmrs"
next = "hba1c-after-openmrs"
template = '''
{"person": "person-{{{record.sample_id}}}",
 "identifiers": [{"identifier": "{{{record.sample_id}}}",
                  "identifierType": "05a29f94-c0ed-11e2-94be-8c13b969e334", "preferred": true}]}
'''

[request]
path = "patient"

[match]
test_codes = "HbA1c"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn chain_creates_the_openmrs_patient_then_the_dhis2_event_carries_its_uuid() {
    let sim = Dhis2Sim::start("2.41.3");
    let (peer_addr, peer) = start_peer().await;
    let password = secret_file("Admin123");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("openmrs.toml"), OPENMRS_TEMPR).unwrap();
    let after = AFTER_FHIR_TEMPR
        .replace("hba1c-after-fhir", "hba1c-after-openmrs")
        .replace("\"fhir:Observation/\"", "\"openmrs:\"");
    std::fs::write(dir.path().join("after.toml"), after).unwrap();
    let addr = free_addr();
    let gw = Gateway::start(&format!(
        "{}\n{}\n[[destinations]]\nid = \"openmrs\"\nkind = \"http\"\n\
         url = \"http://{peer_addr}/openmrs/ws/rest/v1\"\nusername = \"admin\"\n\
         password_file = \"{}\"\nretry_min = \"200ms\"\nretry_max = \"1s\"\n",
        tcp_source("afinion", addr, "30s"),
        dhis2_block(&sim, dir.path(), OU),
        password.path().display()
    ));
    gw.wait_listening(addr);
    assert_eq!(send(addr, &numbered_messages(3)).await, 3);
    let settled = wait_settled(&gw, 3, Duration::from_secs(60));
    assert!(
        settled.iter().all(|(s, _)| s == "delivered"),
        "{settled:?}\n{}",
        gw.log()
    );
    let uuids: Vec<String> = peer
        .stored
        .lock()
        .unwrap()
        .iter()
        .map(|p| format!("openmrs:{}", p["uuid"].as_str().unwrap()))
        .collect();
    assert_eq!(uuids.len(), 3, "one OpenMRS patient per result");
    let events = sim.events();
    assert_eq!(events.len(), 3, "{:#}", sim.objects());
    let mut carried: Vec<String> = Vec::new();
    for e in &events {
        let value = |de: &str| {
            e["dataValues"]
                .as_array()
                .unwrap()
                .iter()
                .find(|dv| dv["dataElement"] == de)
                .and_then(|dv| dv["value"].as_str())
                .unwrap_or_default()
                .to_string()
        };
        assert!(!value("LabValue001").is_empty(), "{e:#}");
        carried.push(value("LabTestCode"));
    }
    carried.sort();
    let mut want = uuids.clone();
    want.sort();
    assert_eq!(carried, want, "each event carries its own patient's uuid");

    // The analyzer resends: stored once, no second patient and no second event.
    assert_eq!(send(addr, &numbered_messages(3)).await, 3);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(peer.stored.lock().unwrap().len(), 3);
    assert_eq!(sim.events().len(), 3);
}
