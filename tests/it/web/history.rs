//! Fridge charts, Tempr versions and chains through the real binary's web UI and API, with a
//! logged-in session and its CSRF token (src/web/charts.rs, src/web/temprs.rs).

use super::*;
use pocketgate::protocol::modbus::{
    Poller, PollerSettings, RegisterKind, RegisterSpec, Thresholds, ValueType, WordOrder,
};
use pocketgate::record::SourceId;
use pocketgate::store::{NewMessage, ProtocolKind, Store, WriterSettings};
use serde_json::{Value, json};
use time::OffsetDateTime;

/// A fridge source that is configured but off: the test writes its week of history itself.
const FRIDGE: &str = "[[sources]]\nid = \"fridge-1\"\nenabled = false\nprotocol = \"modbus\"\n\
    transport = \"tcp-client\"\nconnect = \"127.0.0.1:9\"\n\
    [sources.modbus]\nunit_id = 1\npoll_interval = \"60s\"\nsummary_interval = \"15m\"\n\
    [[sources.modbus.registers]]\nname = \"temperature\"\ncode = \"fridge-temperature\"\n\
    address = 0\ntype = \"i16\"\nscale = 0.1\nunit = \"Cel\"\nmin = 2\nmax = 8\nhysteresis = 0.5\n\
    [[sources.modbus.registers]]\nname = \"humidity\"\naddress = 1\nscale = 0.1\nunit = \"%\"\n";

fn register(name: &str, code: &str, address: u16, t: Option<Thresholds>) -> RegisterSpec {
    RegisterSpec {
        name: name.into(),
        address,
        kind: RegisterKind::Holding,
        value_type: ValueType::I16,
        word_order: WordOrder::Big,
        scale: 0.1,
        offset: 0.0,
        unit: Some(if t.is_some() { "Cel" } else { "%" }.into()),
        thresholds: t,
        code: Some(code.into()),
        loinc: None,
    }
}

/// The temperature (tenths of °C) the fake fridge reads `minute` minutes into the history:
/// 4.0–6.0 with the time of day, a warm spike to 9.4 °C for 30 minutes on day 2, a cold one to
/// 1.2 °C for 20 minutes on day 4, and (before the 7-day window) 12.0 °C on the first day.
fn reading(minute: i64) -> i16 {
    match minute {
        0..=30 => 120,
        m if (2 * 1440 + 600..2 * 1440 + 630).contains(&m) => 94,
        m if (4 * 1440 + 200..4 * 1440 + 220).contains(&m) => 12,
        m => 40 + ((m % 1440) as i16 * 20 / 1440),
    }
}

/// Nine days of one-minute polls through the real poller state machine, committed as the Modbus
/// ingest commits them (the same decoder gives the observations).
fn store_history(db: &std::path::Path, end: OffsetDateTime) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::open(db, WriterSettings::default()).unwrap();
        let band = Thresholds {
            min: Some(2.0),
            max: Some(8.0),
            hysteresis: 0.5,
        };
        let mut poller = Poller::new(
            vec![
                register("temperature", "fridge-temperature", 0, Some(band)),
                register("humidity", "humidity", 1, None),
            ],
            PollerSettings {
                unit_id: 1,
                summary_interval: std::time::Duration::from_secs(15 * 60),
                fault_after: 3,
            },
        );
        let minutes = 9 * 1440;
        let start = end - time::Duration::minutes(minutes);
        for m in 0..minutes {
            let now = start + time::Duration::minutes(m);
            for doc in poller.answered(now, &[vec![reading(m) as u16], vec![455]]) {
                let bytes = doc.to_bytes();
                let observations = pocketgate::protocol::modbus::decode(&bytes).unwrap();
                store
                    .commit(NewMessage {
                        source: SourceId("fridge-1".into()),
                        protocol: ProtocolKind::Modbus,
                        wire: bytes.clone(),
                        text: bytes,
                        observations,
                        parse_errors: Vec::new(),
                    })
                    .await
                    .unwrap();
            }
        }
    });
}

#[test]
fn fridge_chart_shows_a_week_of_modbus_readings_with_min_max_and_excursions() {
    let (mut gw, addr) = web_gateway(FRIDGE);
    gw.kill9();
    store_history(&gw.db(), OffsetDateTime::now_utc());
    gw.spawn();
    gw.wait_listening(addr);
    let mut b = Browser::new(addr);
    b.set_password();

    let r = b.get("/api/v1/devices/fridge-1/temperatures");
    assert_eq!(r.status, 200, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    let s = &v[0];
    assert_eq!(s["register"], "temperature", "{s}");
    assert_eq!(s["band"], json!({"min": 2.0, "max": 8.0}));
    // The 12.0 °C of nine days ago is outside the 7-day window.
    assert_eq!(s["max"]["value"], 9.4, "{}", s["max"]);
    assert_eq!(s["min"]["value"], 1.2, "{}", s["min"]);
    assert_eq!(s["excursions"], 2, "{}", s["alarms"]);
    let alarms = s["alarms"].as_array().unwrap();
    assert_eq!(alarms[0]["side"], "high");
    assert_eq!(alarms[1]["side"], "low");
    assert!(alarms.iter().all(|a| a["to"].is_string()), "both cleared");
    let points = s["points"].as_array().unwrap();
    // A week of 15-minute summaries (672) plus the alarm readings, merged to the limit.
    assert!(
        s["observations"].as_u64().unwrap() > 600,
        "{}",
        s["observations"]
    );
    assert!(points.len() <= s["max_points"].as_u64().unwrap() as usize);
    let cur = s["current"]["value"].as_f64().unwrap();
    assert!((4.0..=6.0).contains(&cur), "{cur}");

    // A shorter window (5 days) leaves out the warm spike (6.6 days ago) but keeps the cold one (4.9).
    let r = b.get("/api/v1/devices/fridge-1/temperatures?days=5");
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v[0]["excursions"], 1, "{}", v[0]["alarms"]);
    assert_eq!(v[0]["min"]["value"], 1.2);
    assert!(v[0]["max"]["value"].as_f64().unwrap() <= 6.0);

    // The dashboard draws the same series.
    let page = b.get("/").body;
    let at = page
        .find("fridge-1: temperature")
        .expect("a fridge chart card");
    let card = &page[at..];
    assert!(card.contains("<svg class=\"fridge\""), "{card}");
    assert!(card.contains("class=\"t-min\">1.2<"), "{card}");
    assert!(card.contains("class=\"t-max\">9.4<"), "{card}");
    assert!(card.contains("2 excursions"), "{card}");
    assert_eq!(
        card.matches("class=\"alarm\"").count(),
        2,
        "two alarm bands"
    );
    assert!(card.contains("class=\"band\""), "allowed band shaded");

    assert_eq!(b.get("/api/v1/devices/nope/temperatures").status, 404);
    let mut stranger = Browser::new(addr);
    assert_eq!(
        stranger.get("/api/v1/devices/fridge-1/temperatures").status,
        401
    );
}

/// A gateway with DHIS2 configured and a copy of the example Temprs; its folder and a session.
fn temprs_gateway() -> (Dhis2Sim, tempfile::TempDir, Gateway, Browser, String) {
    let sim = Dhis2Sim::start("2.41.3");
    let dir = tempfile::tempdir().unwrap();
    for entry in
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/temprs")).unwrap()
    {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    let (gw, addr) = web_gateway(&dhis2_block(&sim, dir.path(), "OuClinicA01"));
    let mut b = Browser::new(addr);
    let csrf = b.set_password();
    (sim, dir, gw, b, csrf)
}

fn versions(b: &mut Browser, name: &str) -> Vec<Value> {
    let r = b.get(&format!("/api/v1/temprs/{name}/versions"));
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str::<Vec<Value>>(&r.body).unwrap()
}

#[test]
fn tempr_saves_keep_versions_that_are_diffed_and_restored_through_validation() {
    let (_sim, dir, _gw, mut b, csrf) = temprs_gateway();
    let file = dir.path().join("lab-event.toml");
    let original = std::fs::read_to_string(&file).unwrap();
    assert!(versions(&mut b, "lab-event").is_empty());

    // A page edit keeps the text on disk as version 1 and the edit as version 2.
    let v2 = original.replace("version = 1", "version = 2");
    let r = b.post_form("/temprs/lab-event", &[("csrf", &csrf), ("text", &v2)]);
    assert_eq!(
        (r.status, r.location()),
        (303, "/temprs/lab-event"),
        "{}",
        r.body
    );
    // An API save is version 3; without the token it is refused and nothing is kept.
    let v3 = v2.replace("version = 2", "version = 3\nnext = \"tb-lab-stage\"");
    let put = |b: &mut Browser, token: Option<&str>| {
        let h: Vec<(&str, &str)> = token.map(|c| ("X-CSRF-Token", c)).into_iter().collect();
        let body = json!({ "text": v3 }).to_string();
        b.send(
            "PUT",
            "/api/v1/temprs/lab-event",
            &h,
            Some(("application/json", body)),
        )
    };
    assert_eq!(put(&mut b, None).status, 403);
    let r = put(&mut b, Some(&csrf));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        serde_json::from_str::<Value>(&r.body).unwrap()["version"],
        3
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), v3);

    let list = versions(&mut b, "lab-event");
    let seen: Vec<(i64, i64, &str)> = list
        .iter()
        .map(|v| {
            (
                v["version"].as_i64().unwrap(),
                v["file_version"].as_i64().unwrap(),
                v["action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, [(3, 3, "api"), (2, 2, "edit"), (1, 1, "found")]);
    let page = b.get("/temprs/lab-event").body;
    assert!(
        page.contains("href=\"/temprs/lab-event/versions/1\"") && page.contains("(current)"),
        "{page}"
    );

    // Version 1 against the current file: the changed lines, and a restore button.
    let r = b.get("/temprs/lab-event/versions/1");
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("<span class=\"ddel\">- version = 1</span>"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("<span class=\"dadd\">+ version = 3</span>"),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains("<span class=\"dadd\">+ next = &#x22;tb-lab-stage&#x22;</span>")
            || r.body
                .contains("<span class=\"dadd\">+ next = &quot;tb-lab-stage&quot;</span>"),
        "{}",
        r.body
    );
    assert!(r.body.contains("Restore this version"));

    // Restoring needs the token; with it, version 1's text is written again as version 4.
    let r = b.post_form("/temprs/lab-event/versions/1/restore", &[]);
    assert_eq!(r.status, 403);
    let r = b.post_form("/temprs/lab-event/versions/1/restore", &[("csrf", &csrf)]);
    assert_eq!(
        (r.status, r.location()),
        (303, "/temprs/lab-event"),
        "{}",
        r.body
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), original);
    let list = versions(&mut b, "lab-event");
    assert_eq!(
        (list[0]["version"].as_i64(), list[0]["action"].as_str()),
        (Some(4), Some("restore"))
    );
    let audit = b.get("/api/v1/audit").body;
    assert!(
        audit.contains("tempr.restore") && audit.contains("saved as version 4"),
        "{audit}"
    );

    // Version 3 chains to tb-lab-stage; once that Tempr is gone, restoring it is refused with the
    // field named, and the file stays as it is.
    std::fs::remove_file(dir.path().join("tb-lab-stage.toml")).unwrap();
    let r = b.post_form("/temprs/lab-event/versions/3/restore", &[("csrf", &csrf)]);
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("Not restored"), "{}", r.body);
    assert!(
        r.body
            .contains("next: no Tempr is named &quot;tb-lab-stage&quot;")
            || r.body
                .contains("next: no Tempr is named &#x22;tb-lab-stage&#x22;"),
        "{}",
        r.body
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), original);
    let r = b.send(
        "POST",
        "/api/v1/temprs/lab-event/versions/3/restore",
        &[("X-CSRF-Token", &csrf)],
        None,
    );
    assert_eq!(r.status, 422, "{}", r.body);
    let e: Value = serde_json::from_str(&r.body).unwrap();
    assert!(
        e["errors"][0]
            .as_str()
            .unwrap()
            .contains("next: no Tempr is named \"tb-lab-stage\""),
        "{e}"
    );
    assert_eq!(
        versions(&mut b, "lab-event").len(),
        4,
        "a refused restore keeps nothing"
    );
    assert_eq!(b.get("/temprs/lab-event/versions/99").status, 404);
}

#[test]
fn temprs_page_shows_chains_in_order_and_warns_of_a_missing_step_and_a_loop() {
    let (_sim, dir, _gw, mut b, _csrf) = temprs_gateway();
    let page = b.get("/temprs").body;
    let at = page.find("<h2>Chains</h2>").expect("a chains card");
    let chains = &page[at..];
    let person = chains
        .find("1. tracker-person")
        .expect("the person step first");
    let event = chains
        .find("2. tracker-lab-event")
        .expect("then the event step");
    assert!(person < event, "{chains}");
    assert!(chains.contains("→ tracker"), "{chains}");
    assert!(
        chains.contains("ctx.previous_request"),
        "the uid passed on: {chains}"
    );
    assert!(!chains.contains("chain-warning"), "{chains}");
    // The Tempr page shows the chain it is part of.
    let one = b.get("/temprs/tracker-lab-event").body;
    assert!(one.contains("1. tracker-person"), "{one}");

    // Files written behind the UI's back: a step naming a missing Tempr, and two that loop.
    let tempr = |name: &str, next: &str| {
        format!(
            "name = \"{name}\"\nversion = 1\nkind = \"template\"\nendpoint = \"tracker\"\n\
             next = \"{next}\"\ntemplate = \"{{}}\"\n[match]\ntest_codes = \"X\"\n"
        )
    };
    std::fs::write(dir.path().join("orphan.toml"), tempr("orphan", "gone")).unwrap();
    std::fs::write(dir.path().join("loop-a.toml"), tempr("loop-a", "loop-b")).unwrap();
    std::fs::write(dir.path().join("loop-b.toml"), tempr("loop-b", "loop-a")).unwrap();
    let page = b.get("/temprs").body;
    assert!(
        page.contains("orphan: next = &quot;gone&quot;, but no Tempr is named &quot;gone&quot;")
            || page.contains(
                "orphan: next = &#x22;gone&#x22;, but no Tempr is named &#x22;gone&#x22;"
            ),
        "{page}"
    );
    assert!(
        page.contains("chain loops: loop-a → loop-b → loop-a"),
        "{page}"
    );
    let api: Value = serde_json::from_str(&b.get("/api/v1/tempr-chains").body).unwrap();
    assert_eq!(api.as_array().unwrap().len(), 3, "{api}");
}
