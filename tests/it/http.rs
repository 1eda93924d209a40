//! HTTP ingest against the real binary: each body kind is in SQLite when the 201 arrives; bad
//! bodies get a precise 4xx and are kept as `invalid`; auth, size and content-type refusals store
//! nothing.

use crate::support::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

const TOKEN: &str = "pg-test-http-token-7f3a9c";

fn http_fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/http")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A gateway with one HTTP source `lab-http` that requires [`TOKEN`] and takes 64 KiB bodies.
struct HttpGateway {
    gw: Gateway,
    addr: SocketAddr,
    _secrets: tempfile::TempDir,
}

fn start() -> HttpGateway {
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("http-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    start_with_token_file(&token_file, secrets)
}

fn start_with_token_file(token_file: &Path, secrets: tempfile::TempDir) -> HttpGateway {
    let addr = free_addr();
    let gw = Gateway::start(&format!(
        "[[sources]]\nid = \"lab-http\"\nprotocol = \"http\"\ntransport = \"tcp-server\"\n\
         listen = \"{addr}\"\ntoken_file = \"{}\"\nmax_body = 65536\n",
        token_file.display()
    ));
    gw.wait_listening(addr);
    HttpGateway {
        gw,
        addr,
        _secrets: secrets,
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: serde_json::Value,
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`), read to the end.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    token: Option<&str>,
    body: &[u8],
) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    // The server may answer (413, 401) and close before it read the whole body: ignore write
    // errors and read whatever answer came.
    let _ = s.write_all(head.as_bytes()).and_then(|_| s.write_all(body));
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Reply {
        status,
        head: head.to_owned(),
        body: serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("answer is not JSON ({e}): {body:?}")),
    }
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

fn post(h: &HttpGateway, content_type: &str, body: &[u8]) -> Reply {
    request(
        h.addr,
        "POST",
        "/results",
        Some(content_type),
        Some(TOKEN),
        body,
    )
}

/// Post, expect 201, kill the gateway at once (no shutdown code runs) and return what SQLite holds.
fn stored_before_201(
    content_type: &str,
    body: &[u8],
    expected: usize,
) -> Vec<pocketgate::record::Observation> {
    let mut h = start();
    let r = post(&h, content_type, body);
    assert_eq!(r.status, 201, "{r:?}\n{}", h.gw.log());
    assert_eq!(r.body["observations"], expected, "{r:?}");
    assert_eq!(r.body["duplicate"], false);
    h.gw.kill9();
    let stored = h.gw.reader().messages(None, 10).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(r.body["id"], stored[0].id.0);
    assert_eq!(stored[0].protocol, "http");
    assert_eq!(stored[0].status, "received");
    assert_eq!(h.gw.reader().texts("lab-http").unwrap()[0], body);
    let obs = stored[0].observations.clone();
    assert_eq!(obs.len(), expected);
    for o in &obs {
        assert_eq!(o.source, "lab-http");
        assert_eq!(o.raw_id, Some(stored[0].id));
    }
    obs
}

#[test]
fn canonical_json_array_is_in_sqlite_when_201_arrives() {
    let obs = stored_before_201("application/json", &http_fixture("observations.json"), 2);
    assert_eq!(obs[0].sample_id.as_deref(), Some("S-1001"));
    assert_eq!(obs[0].test_code, "HbA1c");
    assert_eq!(obs[0].value.as_deref(), Some("6.5"));
    assert_eq!(obs[1].test_code, "CRP");
    assert_eq!(obs[1].extra["lot"], "CR2411");
}

#[test]
fn fhir_observation_sent_as_plain_json_is_sniffed_and_stored() {
    let obs = stored_before_201(
        "application/json; charset=utf-8",
        &http_fixture("fhir-observation-hba1c.json"),
        1,
    );
    assert_eq!(obs[0].test_code, "4548-4");
    assert_eq!(obs[0].value.as_deref(), Some("6.8"));
    assert_eq!(obs[0].unit.as_deref(), Some("%"));
    assert_eq!(obs[0].sample_id.as_deref(), Some("HB-2025-0142"));
    assert_eq!(obs[0].observed_at.as_deref(), Some("2025-05-14T13:21:03"));
}

#[test]
fn fhir_bundle_with_diagnostic_report_is_stored() {
    let obs = stored_before_201(
        "application/fhir+json",
        &http_fixture("fhir-bundle-genexpert.json"),
        2,
    );
    assert_eq!(obs[0].test_code, "89371-9");
    assert_eq!(obs[0].value.as_deref(), Some("260373001"));
    assert_eq!(obs[0].extra["value_display"], "Detected");
    assert_eq!(obs[1].test_code, "89372-7");
    assert_eq!(obs[1].patient_id.as_deref(), Some("PT-004512"));
    assert_eq!(obs[1].sample_id.as_deref(), Some("XP-24-00317"));
}

#[test]
fn csv_export_is_stored() {
    let obs = stored_before_201("text/csv", &http_fixture("export.csv"), 3);
    assert_eq!(obs[1].sample_id.as_deref(), Some("S-2002"));
    assert_eq!(obs[1].value.as_deref(), Some("8.1"));
    assert_eq!(obs[1].flags, ["L", "A"]);
    assert_eq!(obs[2].test_code, "PLT");
}

#[test]
fn xml_results_are_stored() {
    let obs = stored_before_201("application/xml", &http_fixture("results.xml"), 2);
    assert_eq!(obs[0].test_code, "GLU");
    assert_eq!(obs[0].value.as_deref(), Some("5.4"));
    assert_eq!(obs[1].value.as_deref(), Some("<2.5"));
}

#[test]
fn resend_of_the_same_body_is_one_row_and_answers_duplicate() {
    let h = start();
    let body = http_fixture("observations.json");
    let first = post(&h, "application/json", &body);
    assert_eq!(first.status, 201, "{first:?}");
    let second = post(&h, "application/json", &body);
    assert_eq!(second.status, 200, "{second:?}");
    assert_eq!(second.body["duplicate"], true);
    assert_eq!(second.body["id"], first.body["id"]);
    assert_eq!(second.body["observations"], 2);
    assert_eq!(h.gw.reader().messages(None, 10).unwrap().len(), 1);
}

#[test]
fn body_over_max_body_gets_413_naming_the_limit_and_nothing_is_stored() {
    let h = start();
    let mut csv = b"test_code,value\n".to_vec();
    while csv.len() <= 65536 {
        csv.extend_from_slice(b"GLU,5.4\n");
    }
    let r = post(&h, "text/csv", &csv);
    assert_eq!(r.status, 413, "{r:?}");
    let msg = r.body["error"].as_str().unwrap();
    assert!(msg.contains("65536 bytes"), "{msg}");
    // Without a Content-Length (chunked), the limit is enforced while reading.
    let mut s = TcpStream::connect(h.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = write!(
        s,
        "POST /results HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: text/csv\r\n\
         Authorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    for chunk in csv.chunks(4096) {
        let _ = write!(s, "{:x}\r\n", chunk.len());
        let _ = s.write_all(chunk);
        let _ = s.write_all(b"\r\n");
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    assert!(out.contains("65536 bytes"), "{out}");
    assert_eq!(h.gw.reader().count().unwrap(), 0);
    // The source keeps serving.
    assert_eq!(
        post(&h, "text/csv", b"test_code,value\nGLU,5.4\n").status,
        201
    );
}

#[test]
fn wrong_content_type_gets_415_naming_the_accepted_ones() {
    let h = start();
    let r = post(&h, "text/plain", b"test_code\nGLU\n");
    assert_eq!(r.status, 415, "{r:?}");
    let msg = r.body["error"].as_str().unwrap();
    assert!(msg.contains("\"text/plain\""), "{msg}");
    assert!(msg.contains("application/fhir+json"), "{msg}");
    assert!(msg.contains("text/csv"), "{msg}");
    let none = request(h.addr, "POST", "/results", None, Some(TOKEN), b"{}");
    assert_eq!(none.status, 415, "{none:?}");
    assert_eq!(h.gw.reader().count().unwrap(), 0);
}

#[test]
fn missing_or_wrong_token_gets_401_and_nothing_is_stored() {
    let h = start();
    let body = http_fixture("observations.json");
    let none = request(
        h.addr,
        "POST",
        "/results",
        Some("application/json"),
        None,
        &body,
    );
    assert_eq!(none.status, 401, "{none:?}");
    assert!(none.body["error"].as_str().unwrap().contains("Bearer"));
    assert!(
        none.head
            .to_ascii_lowercase()
            .contains("www-authenticate: bearer")
    );
    let wrong = request(
        h.addr,
        "POST",
        "/results",
        Some("application/json"),
        Some("pg-test-http-token-7f3a9d"),
        &body,
    );
    assert_eq!(wrong.status, 401, "{wrong:?}");
    assert_eq!(wrong.body["error"], "the bearer token is wrong");
    assert_eq!(h.gw.reader().count().unwrap(), 0);
}

#[test]
fn fhir_body_that_is_not_fhir_gets_422_naming_the_path_and_is_kept_invalid() {
    let h = start();
    let body = br#"{"resourceType":"Bundle","type":"collection","entry":[
        {"resource":{"resourceType":"Observation","code":{"text":"GLU"},"valueQuantity":{"value":5.4}}},
        {"resource":{"resourceType":"Observation","code":{"text":"HB"},"valueQuantity":{"value":"high"}}}]}"#;
    let r = post(&h, "application/fhir+json", body);
    assert_eq!(r.status, 422, "{r:?}");
    assert_eq!(
        r.body["error"],
        "entry[1].resource.valueQuantity.value: expected a number, got a string"
    );
    let stored = h.gw.reader().messages(None, 10).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(r.body["id"], stored[0].id.0);
    assert_eq!(stored[0].status, "invalid");
    assert!(stored[0].observations.is_empty());
    let why = stored[0].parse_errors.as_deref().unwrap();
    assert!(
        why.contains("entry[1].resource.valueQuantity.value"),
        "{why}"
    );
    assert_eq!(h.gw.reader().texts("lab-http").unwrap()[0], body);

    // Not even JSON: 400 naming line and column, kept too.
    let r = post(
        &h,
        "application/fhir+json",
        b"{\n  \"resourceType\": Observation\n}",
    );
    assert_eq!(r.status, 400, "{r:?}");
    let msg = r.body["error"].as_str().unwrap();
    assert!(msg.contains("line 2"), "{msg}");
    assert_eq!(h.gw.reader().messages(None, 10).unwrap().len(), 2);
}

#[test]
fn health_answers_without_a_token_and_unknown_routes_answer_json() {
    let h = start();
    let r = request(h.addr, "GET", "/health", None, None, b"");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["status"], "ok");
    let r = request(h.addr, "GET", "/results", None, Some(TOKEN), b"");
    assert_eq!(r.status, 405, "{r:?}");
    let r = request(h.addr, "POST", "/nope", None, Some(TOKEN), b"");
    assert_eq!(r.status, 404, "{r:?}");
    assert!(r.body["error"].as_str().unwrap().contains("POST /results"));
}

#[test]
fn unreadable_token_file_answers_503_instead_of_running_open() {
    let secrets = tempfile::tempdir().unwrap();
    let missing = secrets.path().join("no-such-token");
    let h = start_with_token_file(&missing, secrets);
    let r = request(
        h.addr,
        "POST",
        "/results",
        Some("application/json"),
        None,
        &http_fixture("observations.json"),
    );
    assert_eq!(r.status, 503, "{r:?}\n{}", h.gw.log());
    assert!(r.head.to_ascii_lowercase().contains("retry-after:"));
    assert_eq!(h.gw.reader().count().unwrap(), 0);
}
