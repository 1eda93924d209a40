//! The System page's Reboot button (through netcfg's `System` seam, with a harmless command
//! standing in for `reboot`) and `/metrics` for a Prometheus scraper with a bearer token.

use super::*;

#[test]
fn reboot_button_runs_the_system_reboot_command_once_and_is_audited() {
    let (gw, addr, file, _root) = network_gateway();
    let marker = gw.dir.path().join("rebooted");
    // [system] is the file's last section: the stand-in for `reboot` appends a line.
    let mut text = std::fs::read_to_string(&file).unwrap();
    text += &format!(
        "reboot = [\"sh\", \"-c\", \"echo reboot >> '{}'\"]\n",
        marker.display()
    );
    std::fs::write(&file, text).unwrap();
    let mut b = Browser::new(addr);
    let csrf = b.set_password();
    let system = b.get("/system");
    assert!(
        system.body.contains("action=\"/system/reboot\""),
        "{}",
        system.body
    );

    let r = b.post_form("/system/reboot", &[("sure", "on")]);
    assert_eq!(r.status, 403, "no CSRF token: {r:?}");
    assert!(!marker.exists(), "refused, yet the command ran");

    let r = b.post_form("/system/reboot", &[("csrf", &csrf), ("sure", "on")]);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("Reconnect in a minute"), "{}", r.body);
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "reboot\n");
    let audit = b.get("/api/v1/audit").body;
    assert!(
        audit.contains("system.reboot") && audit.contains("reboot requested"),
        "{audit}"
    );
}

#[test]
fn a_failing_reboot_command_is_shown_and_audited() {
    let (_gw, addr, file, _root) = network_gateway();
    let mut text = std::fs::read_to_string(&file).unwrap();
    text += "reboot = [\"sh\", \"-c\", \"echo not permitted >&2; exit 1\"]\n";
    std::fs::write(&file, text).unwrap();
    let mut b = Browser::new(addr);
    let csrf = b.set_password();
    let r = b.post_form("/system/reboot", &[("csrf", &csrf), ("sure", "on")]);
    assert_eq!(r.status, 500, "{r:?}");
    assert!(r.body.contains("not permitted"), "{}", r.body);
    let audit = b.get("/api/v1/audit").body;
    assert!(audit.contains("the reboot command failed"), "{audit}");
}

#[test]
fn reboot_is_refused_on_a_gateway_that_does_not_manage_its_machine() {
    // No network.toml: [system] root is "/", and manage_clock is off.
    let (_gw, addr) = web_gateway("");
    let mut b = Browser::new(addr);
    let csrf = b.set_password();
    let r = b.post_form("/system/reboot", &[("csrf", &csrf), ("sure", "on")]);
    assert_eq!(r.status, 422, "{r:?}");
    assert!(r.body.contains("not rebooted"), "{}", r.body);
    assert!(!b.get("/api/v1/audit").body.contains("system.reboot"));
}

const METRICS_TOKEN: &str = "prom-scrape-token-7f3a9c1e5b";

fn metrics_gateway() -> (Gateway, SocketAddr) {
    let addr = free_addr();
    let gw = Gateway::start_with_env(
        &format!("[web]\nlisten = \"{addr}\"\nmetrics_token_env = \"PG_TEST_METRICS_TOKEN\"\n"),
        &[("PG_TEST_METRICS_TOKEN", METRICS_TOKEN)],
    );
    gw.wait_listening(addr);
    (gw, addr)
}

#[test]
fn metrics_accepts_the_bearer_token_or_a_session_and_nothing_else() {
    let (_gw, addr) = metrics_gateway();
    let mut b = Browser::new(addr);
    let bearer = format!("Bearer {METRICS_TOKEN}");

    // Before the first password: the token still lets a scraper in.
    let mut scraper = Browser::new(addr);
    let r = scraper.send("GET", "/metrics", &[("Authorization", &bearer)], None);
    assert_eq!(r.status, 200, "{r:?}");
    b.set_password();

    let r = scraper.send("GET", "/metrics", &[("Authorization", &bearer)], None);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("pocketgate_messages"), "{}", r.body);
    assert!(scraper.cookies.is_empty(), "a scrape is not a session");

    let mut anon = Browser::new(addr);
    assert_eq!(anon.get("/metrics").status, 401);
    for wrong in [
        format!("Bearer {METRICS_TOKEN}x"),
        format!("Bearer {}", &METRICS_TOKEN[1..]),
        "Bearer ".to_owned(),
        format!("Basic {METRICS_TOKEN}"),
        METRICS_TOKEN.to_owned(),
    ] {
        let r = anon.send("GET", "/metrics", &[("Authorization", &wrong)], None);
        assert_eq!(r.status, 401, "{wrong}: {r:?}");
    }
    // The token opens /metrics only.
    for path in ["/api/v1/status", "/api/v1/audit", "/"] {
        let r = anon.send("GET", path, &[("Authorization", &bearer)], None);
        assert!(r.status == 401 || r.status == 303, "{path}: {r:?}");
    }

    // A session still works, and no page or API answer ever shows the token.
    let m = b.get("/metrics");
    assert_eq!(m.status, 200, "{m:?}");
    assert!(m.body.contains("pocketgate_messages"));
    assert_token_never_shown(&mut b, METRICS_TOKEN);
}

fn assert_token_never_shown(b: &mut Browser, token: &str) {
    for path in GET_ROUTES {
        let r = b.get(path);
        assert!(!r.body.contains(token), "{path} shows the token");
        assert!(
            r.headers.iter().all(|(_, v)| !v.contains(token)),
            "{path} has the token in a header"
        );
    }
}

#[test]
fn a_new_metrics_token_set_on_the_system_page_replaces_the_old_one_and_is_never_shown() {
    const NEW: &str = "new-prom-token-from-the-page-42";
    let (gw, addr) = metrics_gateway();
    let mut b = Browser::new(addr);
    let csrf = b.set_password();
    assert!(b.get("/system").body.contains("token: set"));
    let r = b.post_form("/system/metrics-token", &[("token", NEW)]);
    assert_eq!(r.status, 403, "no CSRF: {r:?}");
    let r = b.post_form(
        "/system/metrics-token",
        &[("csrf", &csrf), ("token", "short")],
    );
    assert_eq!(r.status, 422, "{r:?}");
    let r = b.post_form("/system/metrics-token", &[("csrf", &csrf), ("token", NEW)]);
    assert_eq!((r.status, r.location()), (303, "/system"), "{r:?}");

    let config = std::fs::read_to_string(&gw.config).unwrap();
    assert!(
        !config.contains(NEW),
        "the config names the file, not the token"
    );
    assert!(
        config.contains("metrics_token_file") && !config.contains("metrics_token_env"),
        "{config}"
    );
    let file = gw.dir.path().join("data/secrets/metrics_token");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("{NEW}\n"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let mut scraper = Browser::new(addr);
    let scrape = |s: &mut Browser, t: &str| {
        s.send(
            "GET",
            "/metrics",
            &[("Authorization", &format!("Bearer {t}"))],
            None,
        )
        .status
    };
    assert_eq!(scrape(&mut scraper, NEW), 200);
    assert_eq!(
        scrape(&mut scraper, METRICS_TOKEN),
        401,
        "the old token is gone"
    );
    let audit = b.get("/api/v1/audit").body;
    assert!(audit.contains("web.metrics_token"), "{audit}");
    assert_token_never_shown(&mut b, NEW);
}

#[test]
fn metrics_without_a_configured_token_ignores_any_bearer() {
    let (_gw, addr) = web_gateway("");
    Browser::new(addr).set_password();
    let mut anon = Browser::new(addr);
    let r = anon.send(
        "GET",
        "/metrics",
        &[("Authorization", &format!("Bearer {METRICS_TOKEN}"))],
        None,
    );
    assert_eq!(r.status, 401, "{r:?}");
}
