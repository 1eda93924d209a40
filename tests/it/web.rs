//! The web page and JSON API of the real binary, over real HTTP: first boot, sessions, CSRF,
//! login rate limiting, write-only secrets, and a source added from the form that receives a
//! real GeneXpert capture.

mod admin;
mod capture_ui;

use crate::support::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

mod history;

const PASSWORD: &str = "clinic-a-admin-2026";

/// One HTTP answer.
#[derive(Debug)]
pub(crate) struct Resp {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub(crate) fn location(&self) -> &str {
        self.header("location").unwrap_or("")
    }
    /// The value of the first `name="csrf"` hidden field.
    pub(crate) fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("page has a csrf field");
        let rest = &self.body[at + 19..];
        rest[..rest.find('"').unwrap()].to_owned()
    }
}

/// A tiny browser: HTTP/1.1 over a fresh connection per request, with a cookie jar.
pub(crate) struct Browser {
    addr: SocketAddr,
    cookies: BTreeMap<String, String>,
}

impl Browser {
    pub(crate) fn new(addr: SocketAddr) -> Browser {
        Browser {
            addr,
            cookies: BTreeMap::new(),
        }
    }

    fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, String)>,
    ) -> Resp {
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            head += &format!("Cookie: {}\r\n", jar.join("; "));
        }
        for (k, v) in headers {
            head += &format!("{k}: {v}\r\n");
        }
        let body = match body {
            Some((ctype, b)) => {
                head += &format!("Content-Type: {ctype}\r\nContent-Length: {}\r\n", b.len());
                b
            }
            None => {
                head += "Content-Length: 0\r\n";
                String::new()
            }
        };
        write!(s, "{head}\r\n{body}").unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .unwrap_or("")
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let chunked = headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
        let body = if chunked {
            dechunk(rest)
        } else {
            rest.to_owned()
        };
        for (k, v) in &headers {
            if k.eq_ignore_ascii_case("set-cookie")
                && let Some((name, value)) = v.split(';').next().and_then(|kv| kv.split_once('='))
            {
                if v.contains("Max-Age=0") {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        Resp {
            status,
            headers,
            body,
        }
    }

    pub(crate) fn get(&mut self, path: &str) -> Resp {
        self.send("GET", path, &[], None)
    }

    pub(crate) fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.send(
            "POST",
            path,
            &[],
            Some(("application/x-www-form-urlencoded", body)),
        )
    }

    pub(crate) fn post_json(
        &mut self,
        path: &str,
        csrf: Option<&str>,
        body: serde_json::Value,
    ) -> Resp {
        let h: Vec<(&str, &str)> = csrf.map(|c| ("X-CSRF-Token", c)).into_iter().collect();
        self.send(
            "POST",
            path,
            &h,
            Some(("application/json", body.to_string())),
        )
    }

    /// First boot: choose the admin password; returns the session's CSRF token.
    pub(crate) fn set_password(&mut self) -> String {
        let page = self.get("/setup");
        assert_eq!(page.status, 200, "{page:?}");
        let r = self.post_form(
            "/setup",
            &[
                ("csrf", &page.csrf()),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
            ],
        );
        assert_eq!((r.status, r.location()), (303, "/"), "{r:?}");
        self.get("/").csrf()
    }

    fn login(&mut self, password: &str) -> Resp {
        let page = self.get("/login");
        self.post_form("/login", &[("csrf", &page.csrf()), ("password", password)])
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The gateway with a `[web]` section on a free port, plus `extra` config.
fn web_gateway(extra: &str) -> (Gateway, SocketAddr) {
    let addr = free_addr();
    let gw = Gateway::start(&format!(
        "[web]\nlisten = \"{addr}\"\nlogin_attempts = 3\nlogin_window = \"10m\"\n\n{extra}"
    ));
    gw.wait_listening(addr);
    (gw, addr)
}

/// Every page and API route of the web UI (GET), with ids that exist in a fresh gateway or not.
const GET_ROUTES: &[&str] = &[
    "/",
    "/records",
    "/records.csv",
    "/records/1",
    "/dhis2",
    "/temprs",
    "/temprs/lab-event",
    "/temprs/lab-event/versions",
    "/temprs/lab-event/versions/1",
    "/devices",
    "/devices/new",
    "/devices/gx",
    "/system",
    "/system/backup",
    "/network",
    "/capture",
    "/capture/1/file",
    "/api/v1/capture/1",
    "/api/v1/network",
    "/api/v1/network/scan",
    "/metrics",
    "/api/v1/status",
    "/api/v1/records",
    "/api/v1/records/1",
    "/api/v1/sources",
    "/api/v1/temprs",
    "/api/v1/temprs/lab-event/versions",
    "/api/v1/tempr-chains",
    "/api/v1/devices/fridge-1/temperatures",
    "/api/v1/audit",
    "/api/v1/system/time",
    "/api/v1/system/backup",
];
const POST_ROUTES: &[&str] = &[
    "/logout",
    "/records/1/retry",
    "/records/1/rerender",
    "/dhis2",
    "/dhis2/sync",
    "/dhis2/pause",
    "/temprs/lab-event",
    "/temprs/lab-event/versions/1/restore",
    "/devices",
    "/devices/gx/enabled",
    "/system/time",
    "/system/password",
    "/system/reboot",
    "/system/metrics-token",
    "/capture",
    "/capture/1/stop",
    "/network",
    "/api/v1/records/1/retry",
    "/api/v1/records/1/rerender",
    "/api/v1/sources",
    "/api/v1/sources/gx/enabled",
    "/api/v1/temprs/lab-event/test",
    "/api/v1/temprs/lab-event/versions/1/restore",
    "/api/v1/dhis2/pause",
    "/api/v1/system/time",
    "/api/v1/system/restore",
];

#[test]
fn first_boot_forces_the_admin_password_before_anything_else() {
    let (_gw, addr) = web_gateway("");
    let mut b = Browser::new(addr);
    for path in ["/", "/records", "/login", "/system"] {
        let r = b.get(path);
        assert_eq!((r.status, r.location()), (303, "/setup"), "{path}: {r:?}");
    }
    assert_eq!(b.get("/api/v1/status").status, 401);
    let page = b.get("/setup");
    assert!(page.body.contains("no admin password yet"), "{}", page.body);
    // A stray request in between (the browser's favicon, a second tab) keeps the form's token.
    assert_eq!(b.get("/favicon.ico").status, 204);
    assert_eq!(b.get("/setup").csrf(), page.csrf());
    let short = b.post_form(
        "/setup",
        &[
            ("csrf", &page.csrf()),
            ("password", "short"),
            ("confirm", "short"),
        ],
    );
    assert_eq!(short.status, 422);
    assert!(
        short.body.contains("at least 10 characters"),
        "{}",
        short.body
    );
    let page = b.get("/setup");
    let differ = b.post_form(
        "/setup",
        &[
            ("csrf", &page.csrf()),
            ("password", PASSWORD),
            ("confirm", "clinic-a-admin-2025"),
        ],
    );
    assert!(differ.body.contains("the two passwords differ"));
    b.set_password();
    assert_eq!(b.get("/").status, 200);
    // Once set, the first-boot page is gone for everyone, and the password works for a new visitor.
    let mut other = Browser::new(addr);
    assert_eq!(other.get("/setup").location(), "/login");
    let r = other.login(PASSWORD);
    assert_eq!((r.status, r.location()), (303, "/"));
    let cookie = r.header("set-cookie").unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
}

#[test]
fn initial_password_file_is_the_first_password() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("label-password");
    std::fs::write(&file, "printed-on-the-label-42\n").unwrap();
    let addr2 = free_addr();
    let gw = Gateway::start(&format!(
        "[web]\nlisten = \"{addr2}\"\ninitial_password_file = \"{}\"\n",
        file.display()
    ));
    gw.wait_listening(addr2);
    let mut b = Browser::new(addr2);
    assert_eq!(
        b.get("/").location(),
        "/login",
        "no setup page when the label password exists"
    );
    assert_eq!(b.login("printed-on-the-label-42").location(), "/");
    let audit = b.get("/api/v1/audit").body;
    assert!(audit.contains("password.initial"), "{audit}");
    assert!(!audit.contains("printed-on-the-label-42"));
}

#[test]
fn every_route_without_a_session_leads_to_login_or_401() {
    let (_gw, addr) = web_gateway("");
    Browser::new(addr).set_password();
    let mut anon = Browser::new(addr);
    for path in GET_ROUTES {
        let r = anon.get(path);
        if path.starts_with("/api/") || *path == "/metrics" {
            assert_eq!(r.status, 401, "GET {path}: {r:?}");
            assert!(r.body.contains("log in first"), "GET {path}: {}", r.body);
        } else {
            assert_eq!(
                (r.status, r.location()),
                (303, "/login"),
                "GET {path}: {r:?}"
            );
        }
    }
    for path in POST_ROUTES {
        let r = anon.post_form(path, &[("csrf", "x")]);
        assert!(
            r.status == 401 || (r.status == 303 && r.location() == "/login"),
            "POST {path}: {r:?}"
        );
    }
    for probe in pocketgate::web::PROBES {
        let r = anon.get(probe);
        assert_eq!((r.status, r.location()), (303, "/login"), "probe {probe}");
    }
    // A made-up session cookie is no session.
    anon.cookies.insert("pg_session".into(), "0".repeat(64));
    assert_eq!(anon.get("/api/v1/status").status, 401);
    assert_eq!(anon.get("/login").status, 200);
    assert!(
        anon.get("/static/app.css").body.contains("360"),
        "assets need no session"
    );
}

#[test]
fn state_changing_requests_without_the_csrf_token_are_refused() {
    let (gw, addr) = web_gateway("");
    let mut b = Browser::new(addr);
    let csrf = b.set_password();
    let before = std::fs::read_to_string(&gw.config).unwrap();
    for path in POST_ROUTES.iter().filter(|p| **p != "/logout") {
        let r = b.post_form(path, &[("id", "x")]);
        assert_eq!(r.status, 403, "POST {path} without a token: {r:?}");
        let r = b.post_json(path, Some("0".repeat(64).as_str()), serde_json::json!({}));
        assert_eq!(r.status, 403, "POST {path} with a wrong token: {r:?}");
    }
    let add = [
        ("protocol", "astm"),
        ("transport", "tcp-server"),
        ("listen", "127.0.0.1:1"),
        ("id", "x"),
    ];
    assert_eq!(b.post_form("/devices", &add).status, 403);
    assert_eq!(
        std::fs::read_to_string(&gw.config).unwrap(),
        before,
        "a refused request changed nothing"
    );
    // The login form has its own token too (login CSRF).
    let mut anon = Browser::new(addr);
    assert_eq!(
        anon.post_form("/login", &[("password", PASSWORD)]).status,
        403
    );
    // With the token the same call works.
    let r = b.post_json("/api/v1/dhis2/pause", Some(&csrf), serde_json::json!({}));
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        b.get("/api/v1/status")
            .body
            .contains("paused from the web page")
    );
}

#[test]
fn wrong_password_three_times_is_rate_limited_with_a_clear_message() {
    let (_gw, addr) = web_gateway("");
    Browser::new(addr).set_password();
    let mut b = Browser::new(addr);
    for _ in 0..3 {
        let r = b.login("guess-guess-guess");
        assert_eq!(r.status, 401);
        assert!(r.body.contains("Wrong password."));
    }
    let r = b.login(PASSWORD);
    assert_eq!(r.status, 429, "even the right password waits: {r:?}");
    assert!(
        r.body
            .contains("Too many wrong passwords from this address. Try again in 10 minute(s)."),
        "{}",
        r.body
    );
    assert!(
        r.header("retry-after")
            .is_some_and(|s| s.parse::<u64>().unwrap() > 500)
    );
    assert_eq!(b.get("/").location(), "/login");
}

#[test]
fn secrets_never_appear_in_any_response_body() {
    const NEW_TOKEN: &str = "d2pat_WebFormSecretNeverShown0000000000000001";
    let temprs = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/temprs");
    let (gw, addr) = web_gateway(&format!(
        "[dhis2]\nurl = \"http://127.0.0.1:9\"\ntoken_env = \"PG_TEST_DHIS2_TOKEN\"\ntemprs = \"{}\"\nretry_min = \"1s\"\n",
        temprs.display()
    ));
    let mut b = Browser::new(addr);
    let csrf = b.set_password();
    let r = b.post_form(
        "/dhis2",
        &[
            ("csrf", &csrf),
            ("url", "http://127.0.0.1:9"),
            ("org_unit", ""),
            ("auth", "token"),
            ("username", ""),
            ("secret", NEW_TOKEN),
        ],
    );
    assert_eq!((r.status, r.location()), (303, "/dhis2"), "{}", r.body);
    let config = std::fs::read_to_string(&gw.config).unwrap();
    assert!(
        !config.contains(NEW_TOKEN),
        "the config names the file, not the secret"
    );
    assert!(config.contains("token_file"), "{config}");
    let secret_file = gw.dir.path().join("data/secrets/dhis2_token");
    assert_eq!(
        std::fs::read_to_string(&secret_file).unwrap().trim(),
        NEW_TOKEN
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&secret_file)
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }
    std::thread::sleep(Duration::from_millis(500)); // the reload
    let mut bodies = Vec::new();
    for path in GET_ROUTES {
        bodies.push((path.to_string(), b.get(path).body));
    }
    bodies.push((
        "dhis2 test".into(),
        b.post_form("/dhis2/test", &[("csrf", &csrf)]).body,
    ));
    for (path, body) in &bodies {
        for secret in [NEW_TOKEN, SIM_TOKEN, PASSWORD] {
            assert!(!body.contains(secret), "{path} shows a secret");
        }
    }
    let dhis2 = &bodies.iter().find(|(p, _)| p == "/dhis2").unwrap().1;
    assert!(dhis2.contains("set (leave blank to keep)"), "{dhis2}");
    let audit = b.get("/api/v1/audit").body;
    assert!(
        audit.contains("dhis2.edit") && audit.contains("new secret"),
        "{audit}"
    );
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn source_added_from_the_form_receives_a_genexpert_result_shown_on_dashboard_and_records() {
    let (gw, addr) = web_gateway("");
    let mut b = Browser::new(addr);
    let csrf = b.set_password();
    let astm = free_addr();
    let listen = astm.to_string();
    let r = b.post_form(
        "/devices",
        &[
            ("csrf", &csrf),
            ("original", ""),
            ("id", "genexpert-lab"),
            ("protocol", "astm"),
            ("transport", "tcp-server"),
            ("enabled", "true"),
            ("listen", &listen),
            ("baud", ""),
            ("port", ""),
        ],
    );
    assert_eq!((r.status, r.location()), (303, "/devices"), "{}", r.body);
    let config = std::fs::read_to_string(&gw.config).unwrap();
    assert!(
        config.contains("id = \"genexpert-lab\"") && !config.contains("baud"),
        "{config}"
    );
    gw.wait_listening(astm);
    play_genexpert(&listen);
    wait_for("the dashboard to count it", || {
        let d = b.get("/").body;
        d.contains("genexpert-lab") && d.contains("<td>1</td><td >0</td>")
    });
    let list = b.get("/records?source=genexpert-lab");
    let id = {
        let at = list.body.find("href=\"/records/").expect("a record row");
        let rest = &list.body[at + 15..];
        rest[..rest.find('"').unwrap()].to_owned()
    };
    let detail = b.get(&format!("/records/{id}"));
    assert!(
        detail.body.contains("&lt;STX&gt;1H|"),
        "raw bytes with control characters named"
    );
    assert!(detail.body.contains("MTB"), "parsed observations listed");
    let status = b.get("/api/v1/status").body;
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let src = v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "genexpert-lab")
        .unwrap();
    assert_eq!(src["today"], 1);
    assert!(src["state"].as_str().unwrap().starts_with("listening on"));
    let metrics = b.get("/metrics").body;
    assert!(
        metrics.contains("pocketgate_source_messages_total{source=\"genexpert-lab\"} 1"),
        "{metrics}"
    );
    let csv = b.get("/records.csv?source=genexpert-lab").body;
    assert!(
        csv.lines().count() > 1 && csv.contains("genexpert-lab"),
        "{csv}"
    );
    let audit = b.get("/api/v1/audit").body;
    assert!(audit.contains("source.add"), "{audit}");
}

#[test]
fn invalid_source_form_shows_every_error_and_leaves_the_config_unchanged() {
    let (gw, addr) = web_gateway(&tcp_source("gx", free_addr(), "30s"));
    let mut b = Browser::new(addr);
    let csrf = b.set_password();
    let before = std::fs::read_to_string(&gw.config).unwrap();
    let r = b.post_form(
        "/devices",
        &[
            ("csrf", &csrf),
            ("original", ""),
            ("id", "Bad Id"),
            ("protocol", "astm"),
            ("transport", "serial"),
            ("baud", "96000"),
        ],
    );
    assert_eq!(r.status, 422, "{r:?}");
    assert!(r.body.contains("Nothing was changed"), "{}", r.body);
    assert!(r.body.contains("sources[1].baud"), "{}", r.body);
    assert!(
        r.body.contains("96000 is not a supported baud rate"),
        "{}",
        r.body
    );
    assert!(r.body.contains("sources[1].port"), "{}", r.body);
    assert!(
        r.body.contains("value=\"Bad Id\""),
        "the form keeps what was typed"
    );
    assert_eq!(std::fs::read_to_string(&gw.config).unwrap(), before);
    let api = b.post_json(
        "/api/v1/sources",
        Some(&csrf),
        serde_json::json!({"id": "gx2", "protocol": "astm", "transport": "tcp-client"}),
    );
    assert_eq!(api.status, 422);
    assert!(api.body.contains("sources[1].connect"), "{}", api.body);
    assert_eq!(std::fs::read_to_string(&gw.config).unwrap(), before);
}

/// `pocketgate simulate` plays the real GeneXpert capture to `listen`; it must be ACKed.
fn play_genexpert(listen: &str) {
    let out = std::process::Command::new(BIN)
        .args(["simulate", "--tcp", listen])
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/astm/s01-genexpert-mtb-rif-ultra.astm"),
        )
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 of 1 messages acknowledged"),
        "{out:?}"
    );
}

#[test]
fn dhis2_page_tests_the_connection_and_a_record_is_live_tested_rerendered_and_updated_not_duplicated()
 {
    let sim = Dhis2Sim::start("2.41.3");
    // A copy: the builder writes a new Tempr file into it.
    let temprs_dir = tempfile::tempdir().unwrap();
    let temprs = temprs_dir.path().to_path_buf();
    for entry in
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/temprs")).unwrap()
    {
        let path = entry.unwrap().path();
        std::fs::copy(&path, temprs.join(path.file_name().unwrap())).unwrap();
    }
    let (gw, astm, mut b, csrf) = genexpert_to_dhis2(&sim, &temprs);
    let test = b.post_form("/dhis2/test", &[("csrf", &csrf)]);
    assert_eq!(test.status, 200, "{}", test.body);
    assert!(
        test.body.contains("DHIS2 2.41.3") && test.body.contains("signed in as admin"),
        "{}",
        test.body
    );

    gw.wait_listening(astm);
    play_genexpert(&astm.to_string());
    let settled = wait_settled(&gw, 1, Duration::from_secs(60));
    assert_eq!(settled[0].0, "delivered", "{settled:?}");
    let events_before = sim.events().len();
    assert!(events_before > 0);

    let list: serde_json::Value =
        serde_json::from_str(&b.get("/api/v1/records?source=gx-1").body).unwrap();
    let id = list[0]["id"].as_i64().unwrap();
    let page = b.get(&format!("/records/{id}")).body;
    assert!(
        page.contains("DHIS2 response") && page.contains("lab-event"),
        "{page}"
    );

    // Live test: the request the Tempr makes for this record, checked against the cached metadata.
    let t = b.post_json(
        "/api/v1/temprs/lab-event/test",
        Some(&csrf),
        serde_json::json!({"record_id": id}),
    );
    let t: serde_json::Value = serde_json::from_str(&t.body).unwrap();
    assert_eq!(t["matched"], true, "{t}");
    assert!(t["request"]["body"].is_object(), "{t}");
    assert_eq!(t["validation"], serde_json::Value::Null, "{t}");
    let html = b.get(&format!("/temprs/lab-event?record={id}")).body;
    assert!(html.contains("passes"), "{html}");

    let requests = |b: &mut Browser| {
        let r: serde_json::Value =
            serde_json::from_str(&b.get(&format!("/api/v1/records/{id}")).body).unwrap();
        r["requests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|q| q["status"] == "delivered")
            .count()
    };
    let delivered_before = requests(&mut b);
    // Re-render with the current Temprs: sent again with the same UIDs → an update in DHIS2.
    let r = b.post_json(
        &format!("/api/v1/records/{id}/rerender"),
        Some(&csrf),
        serde_json::json!({}),
    );
    assert_eq!(r.body, "{\"rerender\":1}");
    std::thread::sleep(Duration::from_millis(300));
    let settled = wait_settled(&gw, 1, Duration::from_secs(60));
    assert_eq!(settled[0].0, "delivered", "{settled:?}");
    assert!(
        requests(&mut b) > delivered_before,
        "the new requests were delivered too"
    );
    assert_eq!(sim.events().len(), events_before, "updated, not duplicated");

    // The builder: dropdowns from the cached metadata and the record's fields → a new Tempr.
    let md = b.post_form("/dhis2/metadata", &[("csrf", &csrf)]);
    assert!(md.body.contains("metadata refreshed"), "{}", md.body);
    let stage = "LabGxEvnt01/LabRsltStg1";
    let form = b.get(&format!("/temprs/new?stage={}&record={id}", encode(stage)));
    assert!(
        form.body.contains("name=\"de.LabMtbRes01\""),
        "{}",
        form.body
    );
    assert!(
        form.body
            .contains("<option >results.MTB-RIF&#x2f;Xpert&#x2f;MTB.value</option>"),
        "{}",
        form.body
    );
    let rid = id.to_string();
    let fields = [
        ("csrf", csrf.as_str()),
        ("stage", stage),
        ("record", &rid),
        ("name", "gx-from-web"),
        ("test_code", "MTB-RIF/Xpert/MTB"),
        ("org_unit", ""),
        ("de.LabSmplId01", "sample_id"),
        ("de.LabMtbRes01", "results.MTB-RIF/Xpert/MTB.value"),
    ];
    let created = b.post_form("/temprs/new", &fields);
    assert_eq!(
        (created.status, created.location()),
        (303, format!("/temprs/gx-from-web?record={id}").as_str()),
        "{}",
        created.body
    );
    assert!(temprs.join("gx-from-web.toml").exists());
    let tested = b.get(&format!("/temprs/gx-from-web?record={id}")).body;
    assert!(
        tested.contains("The record matches this Tempr.") && tested.contains("passes"),
        "{tested}"
    );
    assert!(tested.contains("LabMtbRes01"), "{tested}");
    let again = b.post_form("/temprs/new", &fields);
    assert_eq!(again.status, 422);
    assert!(again.body.contains("exists already"), "{}", again.body);

    // Pause and resume from the page.
    b.post_form("/dhis2/pause", &[("csrf", &csrf)]);
    assert!(b.get("/").body.contains("PAUSED: paused from the web page"));
    b.post_form("/dhis2/resume", &[("csrf", &csrf)]);
    assert!(!b.get("/").body.contains("PAUSED"));
    let audit = b.get("/api/v1/audit").body;
    for action in ["record.rerender", "sync.pause", "sync.resume"] {
        assert!(audit.contains(action), "{action}: {audit}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn adding_a_source_keeps_the_open_connection_of_an_unchanged_one() {
    use pocketgate::sim::{self, SimOptions};
    let gx = free_addr();
    let (gw, addr) = web_gateway(&tcp_source("gx", gx, "30s"));
    gw.wait_listening(gx);
    let mut b = Browser::new(addr);
    let csrf = b.set_password();
    // The analyzer is connected (idle between transfers) while someone adds another device.
    let mut conn = tokio::net::TcpStream::connect(gx).await.unwrap();
    let other = free_addr().to_string();
    let r = b.post_form(
        "/devices",
        &[
            ("csrf", &csrf),
            ("original", ""),
            ("id", "hl7-lab"),
            ("protocol", "hl7"),
            ("transport", "tcp-server"),
            ("listen", &other),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    wait_plain_log(&gw, "unchanged=1 stopped=0 started=1");
    let messages = sim::messages_from_capture(&fixture("s01-genexpert-mtb-rif-ultra.astm"));
    let report = sim::play(&mut conn, &messages, &SimOptions::default())
        .await
        .unwrap();
    assert_eq!(
        report.acked,
        vec![0],
        "the connection opened before the reload still works"
    );
    // Editing that source restarts it (and only it).
    let form = [
        ("csrf", csrf.as_str()),
        ("original", "gx"),
        ("id", "gx"),
        ("protocol", "astm"),
        ("transport", "tcp-server"),
        ("listen", &gx.to_string()),
        ("receive_timeout", "20s"),
    ];
    assert_eq!(b.post_form("/devices", &form).status, 303);
    wait_plain_log(&gw, "unchanged=1 stopped=1 started=1");
}

/// Wait until the log, without its colour codes, contains `needle`.
fn wait_plain_log(gw: &Gateway, needle: &str) {
    wait_for(needle, || {
        let log = gw.log();
        let mut plain = String::new();
        let mut chars = log.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                chars.by_ref().find(|c| c.is_ascii_alphabetic());
            } else {
                plain.push(c);
            }
        }
        plain.contains(needle)
    });
}

#[test]
fn a_rejected_record_is_sent_again_from_its_page_once_the_cause_is_fixed() {
    let sim = Dhis2Sim::start("2.41.3");
    // DHIS2 refuses the imports (400: nothing imported, a person must act).
    sim.fault(serde_json::json!({"status": 400}));
    let temprs = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/temprs");
    let (gw, astm, mut b, csrf) = genexpert_to_dhis2(&sim, &temprs);
    gw.wait_listening(astm);
    play_genexpert(&astm.to_string());
    let settled = wait_settled(&gw, 1, Duration::from_secs(60));
    assert_eq!(settled[0].0, "rejected", "{settled:?}");
    let id = b.get("/records?status=rejected").body;
    let at = id
        .find("href=\"/records/")
        .expect("the rejected record is listed");
    let id: String = id[at + 15..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let page = b.get(&format!("/records/{id}")).body;
    assert!(page.contains("Send again as it is"), "{page}");
    // The cause is fixed on the server: send it again from the page.
    http_json("DELETE", sim.addr, "/__sim/faults", None);
    let r = b.post_form(&format!("/records/{id}/retry"), &[("csrf", &csrf)]);
    assert_eq!(
        (r.status, r.location()),
        (303, format!("/records/{id}").as_str())
    );
    let settled = wait_settled(&gw, 1, Duration::from_secs(60));
    assert_eq!(settled[0].0, "delivered", "{settled:?}");
    assert!(b.get("/api/v1/audit").body.contains("record.retry"));
}

/// A gateway with the web page, one GeneXpert source (`gx-1`) and `[dhis2]` pointing at `sim`,
/// its admin password set: the gateway, the ASTM address, a logged-in browser and its CSRF token.
fn genexpert_to_dhis2(sim: &Dhis2Sim, temprs: &Path) -> (Gateway, SocketAddr, Browser, String) {
    let astm = free_addr();
    let (gw, addr) = web_gateway(&format!(
        "{}\n{}",
        tcp_source("gx-1", astm, "30s"),
        dhis2_block(sim, temprs, "OuClinicA01")
    ));
    let mut b = Browser::new(addr);
    let csrf = b.set_password();
    (gw, astm, b, csrf)
}

const HOTSPOT_OLD: &str = "old-hotspot-secret-1";
const HOTSPOT_NEW: &str = "new-hotspot-secret-2";
const OFFICE_PASS: &str = "office-uplink-secret-3";

/// A gateway whose data dir holds a network.toml applying under a temp root, with commands
/// that succeed (`true`) and a scan that prints the iw fixture; returns the apply root too.
fn network_gateway() -> (Gateway, SocketAddr, std::path::PathBuf, std::path::PathBuf) {
    let (gw, addr) = web_gateway("");
    let data = gw.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let root = gw.dir.path().join("root");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/net/iw-scan.txt");
    let file = data.join("network.toml");
    std::fs::write(
        &file,
        format!(
            "country = \"US\"\n\n[hotspot]\ninterface = \"wlan0\"\nssid = \"pocketgate-1a2b\"\n\
             passphrase = \"{HOTSPOT_OLD}\"\nchannel = 6\n\n[ethernet]\ninterface = \"eth0\"\n\
             mode = \"dhcp\"\n\n[system]\nroot = \"{}\"\nrestart = [\"true\"]\nstop = [\"true\"]\n\
             scan = [\"cat\", \"{}\"]\n",
            root.display(),
            fixture.display()
        ),
    )
    .unwrap();
    (gw, addr, file, root)
}

fn assert_no_secret(what: &str, r: &Resp) {
    for secret in [HOTSPOT_OLD, HOTSPOT_NEW, OFFICE_PASS] {
        assert!(
            !r.body.contains(secret),
            "{what} shows a passphrase: {}",
            r.body
        );
    }
}

/// POST /network: the hotspot "Clinic-Hotspot" in the US with `passphrase` and `channel`,
/// plus `extra` fields; `action` is "save" or "apply".
fn post_hotspot(
    b: &mut Browser,
    csrf: &str,
    (passphrase, channel, action): (&str, &str, &str),
    extra: &[(&str, &str)],
) -> Resp {
    let mut fields = vec![
        ("csrf", csrf),
        ("country", "US"),
        ("hotspot_enabled", "on"),
        ("hotspot_ssid", "Clinic-Hotspot"),
        ("hotspot_passphrase", passphrase),
        ("hotspot_channel", channel),
        ("action", action),
    ];
    fields.extend_from_slice(extra);
    b.post_form("/network", &fields)
}

#[test]
fn network_page_saves_and_applies_the_hotspot_and_never_shows_a_passphrase() {
    let (_gw, addr, file, root) = network_gateway();
    let mut b = Browser::new(addr);
    assert_eq!(b.get("/network").location(), "/setup");
    let csrf = b.set_password();
    let page = b.get("/network");
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains("href=\"/network\""), "nav link");
    assert!(page.body.contains("pocketgate-1a2b"), "{}", page.body);
    assert_no_secret("GET /network", &page);

    // Without the CSRF token nothing happens.
    let before = std::fs::read(&file).unwrap();
    let r = b.post_form("/network", &[("hotspot_ssid", "Evil"), ("action", "apply")]);
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(std::fs::read(&file).unwrap(), before);

    let r = post_hotspot(
        &mut b,
        &csrf,
        (HOTSPOT_NEW, "11", "apply"),
        &[
            ("wifi_interface", "wlan1"),
            ("net0_ssid", "Clinic-Office"),
            ("net0_passphrase", OFFICE_PASS),
            ("net0_priority", "10"),
            ("ethernet_mode", "dhcp"),
            ("cellular_apn", ""),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Saved and applied."), "{}", r.body);
    assert!(r.body.contains("Restarted:"), "{}", r.body);
    assert_no_secret("POST /network", &r);
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(
        saved.contains("Clinic-Hotspot") && saved.contains("channel = 11"),
        "{saved}"
    );
    assert!(
        saved.contains(HOTSPOT_NEW) && saved.contains(OFFICE_PASS),
        "{saved}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "network.toml holds passphrases");
    let hostapd = std::fs::read_to_string(root.join("etc/hostapd/hostapd.conf")).unwrap();
    assert!(hostapd.contains("Clinic-Hotspot"), "{hostapd}");
    assert!(hostapd.contains("channel=11\n") && hostapd.contains("country_code=US\n"));
    assert!(hostapd.contains(&format!("wpa_passphrase={HOTSPOT_NEW}\n")));
    let dnsmasq = std::fs::read_to_string(root.join("etc/dnsmasq.conf")).unwrap();
    assert!(dnsmasq.contains("wlan0"), "{dnsmasq}");
    let wpa = std::fs::read_to_string(root.join("etc/wpa_supplicant/wpa_supplicant.conf")).unwrap();
    assert!(
        wpa.contains("Clinic-Office") && wpa.contains("priority=10"),
        "{wpa}"
    );

    // Blank passphrases keep the stored ones; the page shows the uplink but not its secret.
    let page = b.get("/network");
    assert!(page.body.contains("Clinic-Office"), "{}", page.body);
    assert_no_secret("GET /network after save", &page);
    let r = post_hotspot(
        &mut b,
        &csrf,
        ("", "1", "save"),
        &[
            ("net0_ssid", "Clinic-Office"),
            ("net0_passphrase", ""),
            ("net0_priority", "5"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(
        saved.contains(HOTSPOT_NEW) && saved.contains(OFFICE_PASS),
        "{saved}"
    );
    assert!(
        saved.contains("channel = 1\n") && saved.contains("priority = 5"),
        "{saved}"
    );

    // The JSON API: the same view without secrets, the same checks, the same CSRF rule.
    let r = b.get("/api/v1/network");
    assert_eq!(r.status, 200, "{r:?}");
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["network"]["hotspot"]["ssid"], "Clinic-Hotspot");
    assert_eq!(v["network"]["hotspot"]["passphrase_set"], true);
    assert_eq!(v["network"]["wifi"]["networks"][0]["priority"], 5);
    assert_no_secret("GET /api/v1/network", &r);
    let body =
        serde_json::json!({"hotspot_ssid": "Api-Hotspot", "hotspot_channel": 3, "apply": true});
    let r = b.send(
        "PUT",
        "/api/v1/network",
        &[],
        Some(("application/json", body.to_string())),
    );
    assert_eq!(r.status, 403, "{r:?}");
    let r = b.send(
        "PUT",
        "/api/v1/network",
        &[("X-CSRF-Token", &csrf)],
        Some(("application/json", body.to_string())),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        (v["saved"].as_bool(), v["applied"]["ok"].as_bool()),
        (Some(true), Some(true)),
        "{v}"
    );
    assert_no_secret("PUT /api/v1/network", &r);
    let hostapd = std::fs::read_to_string(root.join("etc/hostapd/hostapd.conf")).unwrap();
    assert!(
        hostapd.contains("Api-Hotspot") && hostapd.contains("channel=3\n"),
        "{hostapd}"
    );
    assert!(
        hostapd.contains(&format!("wpa_passphrase={HOTSPOT_NEW}\n")),
        "{hostapd}"
    );

    // Scan: the networks in range, one per name.
    let r = b.get("/api/v1/network/scan");
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let names: Vec<&str> = v["networks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["ssid"].as_str())
        .collect();
    assert!(names.contains(&"MoH Guest"), "{names:?}");
    assert_eq!(
        names.iter().filter(|n| **n == "Clinic-Office").count(),
        1,
        "{names:?}"
    );
    let page = b.get("/network?scan=1");
    assert!(page.body.contains("MoH Guest"), "{}", page.body);

    let audit = b.get("/api/v1/audit").body;
    assert!(
        audit.contains("network.apply") && audit.contains("network.save"),
        "{audit}"
    );
    assert!(
        !audit.contains(HOTSPOT_NEW) && !audit.contains(OFFICE_PASS),
        "{audit}"
    );
}

#[test]
fn invalid_network_edit_shows_every_error_with_its_line_and_changes_nothing() {
    let (gw, addr, file, root) = network_gateway();
    let mut b = Browser::new(addr);
    let csrf = b.set_password();
    let before = std::fs::read(&file).unwrap();
    let r = post_hotspot(&mut b, &csrf, ("q7x9z", "14", "apply"), &[]);
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("Nothing was changed"), "{}", r.body);
    assert!(r.body.contains("hotspot.passphrase (line"), "{}", r.body);
    assert!(r.body.contains("5 characters"), "{}", r.body);
    assert!(r.body.contains("hotspot.channel (line"), "{}", r.body);
    assert!(
        !r.body.contains("q7x9z"),
        "the rejected passphrase is not echoed"
    );
    assert_no_secret("invalid POST /network", &r);
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "network.toml unchanged"
    );
    assert!(!root.exists(), "nothing applied");
    let audit = b.get("/api/v1/audit").body;
    assert!(!audit.contains("network."), "{audit}");

    // Without Wi-Fi the scan says why.
    let settings = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        settings.replace("[\"cat\",", "[\"iw-not-installed-here\","),
    )
    .unwrap();
    let r = b.get("/api/v1/network/scan");
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.body.contains("scan of wlan0 failed") && r.body.contains("iw-not-installed-here"),
        "{}",
        r.body
    );
    let page = b.get("/network?scan=1");
    assert!(page.body.contains("scan of wlan0 failed"), "{}", page.body);
    drop(gw);
}

#[test]
fn dashboard_shows_the_free_space_of_the_data_directory() {
    let (gw, addr) = web_gateway("");
    let mut b = Browser::new(addr);
    b.set_password();
    let data = gw.dir.path().join("data");
    let page = b.get("/");
    assert!(
        page.body.contains("Data directory ") && page.body.contains(" free of "),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("Last failed commit"),
        "no commit failed"
    );
    let v: serde_json::Value = serde_json::from_str(&b.get("/api/v1/status").body).unwrap();
    let (free, total) = (
        v["disk"]["free_bytes"].as_u64().unwrap(),
        v["disk"]["total_bytes"].as_u64().unwrap(),
    );
    assert!(free > 0 && free <= total, "{v}");
    assert!(v["store_failure"].is_null(), "{v}");
    assert_eq!(v["disk"]["path"], data.display().to_string());
    // The same figure df reports for the directory (within what other writers change meanwhile).
    let out = std::process::Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(&data)
        .output()
        .unwrap();
    let df: u64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(free.abs_diff(df) < 256 << 20, "statvfs {free} vs df {df}");
}
