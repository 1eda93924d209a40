//! The §8 checklist of dhis2.md, one test per behaviour, against a real socket.

use super::{SimConfig, Version, serve};
use reqwest::{Client, StatusCode, redirect};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

const TOKEN: &str = "d2pat_qg8aTF459WO5LMr0uLi7P3wG8IXq683V1086477046";
const OU_A: &str = "DiszpKrYNg8"; // both programs, data set
const OU_B: &str = "y77LiPqLMoq"; // tracker program only
const OU_C: &str = "ImspTQPwCqd"; // nothing assigned
const TET: &str = "MCPQUTHX1Ze";
const EV_PROGRAM: &str = "LabRes0001a";
const EV_STAGE: &str = "LabStage01a";
const TB: &str = "Lt6P15ps7f6";
const LAB: &str = "mPdMZNWVrOQ";
const REG: &str = "ODD4lMPm0JX";
const MTB: &str = "CxjSGmVSIrD";

fn fixture() -> Value {
    json!({
        "organisationUnits": [
            {"id": OU_A, "name": "Ngelehun CHC", "level": 4, "path": "/ImspTQPwCqd/DiszpKrYNg8"},
            {"id": OU_B, "name": "Bo Lab", "level": 4},
            {"id": OU_C, "name": "Sierra Leone", "level": 1}
        ],
        "trackedEntityTypes": [{"id": TET, "name": "Person"}],
        "programs": [
            {"id": EV_PROGRAM, "name": "Lab results", "programType": "WITHOUT_REGISTRATION",
             "organisationUnits": [{"id": OU_A}],
             "programStages": [{"id": EV_STAGE, "name": "Result", "repeatable": true,
                "programStageDataElements": [
                    {"compulsory": true, "dataElement": {"id": "DeNumber01a", "name": "Hb", "valueType": "NUMBER"}},
                    {"compulsory": false, "dataElement": {"id": "DeText0001a", "name": "Note", "valueType": "TEXT"}}
                ]}]},
            {"id": TB, "name": "TB Case Surveillance", "programType": "WITH_REGISTRATION",
             "trackedEntityType": {"id": TET},
             "organisationUnits": [{"id": OU_A}, {"id": OU_B}],
             "programStages": [
                {"id": LAB, "name": "Diagnostic laboratory results", "repeatable": true,
                 "programStageDataElements": [
                    {"compulsory": true, "dataElement": {"id": MTB, "valueType": "TEXT",
                        "optionSet": {"id": "eUBlAbh0g2h", "options": [
                            {"code": "DETECTED"}, {"code": "NOT_DETECTED"}, {"code": "ERROR"},
                            {"code": "INVALID"}, {"code": "NO_RESULT"}]}}},
                    {"compulsory": false, "dataElement": {"id": "cQUTagw2Jtw", "valueType": "DATE"}}
                 ]},
                {"id": REG, "name": "Diagnosis and notification", "repeatable": false,
                 "programStageDataElements": []}
             ]}
        ],
        "dataSets": [
            {"id": "pBOMPrpg1QX", "name": "TB lab monthly", "periodType": "Monthly",
             "organisationUnits": [{"id": OU_A}],
             "dataSetElements": [{"dataElement": {"id": "f7n9E0hX8qk", "name": "Cartridges used", "valueType": "INTEGER_ZERO_OR_POSITIVE"}}]}
        ]
    })
}

struct Sim {
    base: String,
    http: Client,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_with(version: &str, state_file: Option<PathBuf>) -> Sim {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = SimConfig {
        version: version.parse::<Version>().unwrap(),
        users: vec![("admin".into(), "district".into())],
        tokens: vec![TOKEN.into()],
        metadata: fixture(),
        state_file,
    };
    let task = tokio::spawn(serve(listener, cfg));
    let http = Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .unwrap();
    Sim {
        base: format!("http://{addr}"),
        http,
        task,
    }
}

async fn start(version: &str) -> Sim {
    start_with(version, None).await
}

impl Sim {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(self.url(path))
            .basic_auth("admin", Some("district"))
            .send()
            .await
            .unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }
    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(self.url(path))
            .basic_auth("admin", Some("district"))
            .json(body)
            .send()
            .await
            .unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }
    async fn admin(&self, path: &str, body: &Value) {
        let r = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }
    async fn objects(&self) -> Value {
        self.http
            .get(self.url("/__sim/objects"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
    async fn event_uids(&self) -> Vec<String> {
        self.objects().await["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event"].as_str().unwrap().to_string())
            .collect()
    }
}

fn lab_event(uid: &str, ou: &str, value: &str) -> Value {
    json!({"event": uid, "program": EV_PROGRAM, "programStage": EV_STAGE, "orgUnit": ou,
           "occurredAt": "2024-05-01T10:00:00.000", "status": "COMPLETED",
           "dataValues": [{"dataElement": "DeNumber01a", "value": value}]})
}

fn events(list: Vec<Value>) -> Value {
    json!({ "events": list })
}

/// A verbatim DHIS2 response (the repo's copy of shared/reference/dhis2-samples, see its README).
fn sample(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dhis2/responses")
        .join(name);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// Structure of a JSON document: keys (in the order given) and types, array elements merged.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (k.clone(), shape(x))).collect()),
        Value::Array(a) => match a.first() {
            Some(x) => json!([shape(x)]),
            None => json!([]),
        },
        Value::String(_) => json!("string"),
        Value::Number(_) => json!("number"),
        Value::Bool(_) => json!("bool"),
        Value::Null => Value::Null,
    }
}

fn codes(report: &Value) -> Vec<String> {
    report["validationReport"]["errorReports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["errorCode"].as_str().unwrap().to_string())
        .collect()
}

async fn sync(sim: &Sim, query: &str, body: &Value) -> (StatusCode, Value) {
    sim.post(&format!("/api/tracker?async=false{query}"), body)
        .await
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn auth_matrix_redirects_401s_and_pats_per_version() {
    for (version, login) in [
        ("2.36.13", "/dhis-web-commons/security/login.action"),
        ("2.41.3", "/dhis-web-login"),
        ("2.42.0", "/dhis-web-login/"),
    ] {
        let sim = start(version).await;
        let url = sim.url("/api/system/ping");
        // No credentials: 302 to the login page.
        let r = sim.http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FOUND, "{version}");
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        assert!(loc.ends_with(login), "{version}: {loc}");
        // With X-Requested-With: 401 JSON.
        let r = sim
            .http
            .get(&url)
            .header("X-Requested-With", "XMLHttpRequest")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        // Wrong Basic: 401 JSON WebMessage, no WWW-Authenticate.
        let r = sim
            .http
            .get(&url)
            .basic_auth("admin", Some("wrong"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers().get("www-authenticate").is_none());
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body,
            json!({"httpStatus":"Unauthorized","httpStatusCode":401,"status":"ERROR","message":"Unauthorized"})
        );
        // Good Basic: pong + a session cookie that works alone.
        let r = sim
            .http
            .get(&url)
            .basic_auth("admin", Some("district"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
        assert_eq!(r.text().await.unwrap(), "pong");
        let session = cookie.split(';').next().unwrap().to_string();
        let r = sim
            .http
            .get(&url)
            .header("Cookie", session)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        // PATs.
        let pat = |t: &str| {
            sim.http
                .get(&url)
                .header("Authorization", format!("ApiToken {t}"))
                .send()
        };
        if version.starts_with("2.36") {
            assert_eq!(pat(TOKEN).await.unwrap().status(), StatusCode::FOUND);
            continue;
        }
        assert_eq!(pat(TOKEN).await.unwrap().status(), StatusCode::OK);
        let r = pat("bad token!").await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.headers()["www-authenticate"], "ApiToken");
        let r = pat("d2pat_unknownunknownunknownunknown0000000000")
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()["www-authenticate"], "ApiToken");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["message"], "The API token does not exists");
        sim.admin("/__sim/revoke-token", &json!({ "token": TOKEN }))
            .await;
        assert_eq!(pat(TOKEN).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn api_ping_is_open_from_2_40_only() {
    let sim = start("2.40.0").await;
    let r = sim.http.get(sim.url("/api/ping")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "");
    let sim = start("2.39.1").await;
    let r = sim.http.get(sim.url("/api/ping")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
}

#[tokio::test]
async fn system_info_me_and_ids_follow_the_version() {
    for (version, top, creds) in [
        ("2.37.10", false, true),
        ("2.40.1", true, true),
        ("2.42.1", true, false),
    ] {
        let sim = start(version).await;
        let (s, info) = sim.get("/api/system/info").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(info["version"], version);
        for key in shape(&sample("system-info-android-fixture.response.json"))
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| !k.contains("Analytics") && *k != "jasperReportsVersion")
        {
            assert!(
                info.get(key).is_some(),
                "{version}: system/info lacks {key}"
            );
        }
        let (_, me) = sim.get("/api/me").await;
        assert_eq!(me.get("username").is_some(), top, "{version}");
        assert_eq!(me.get("userCredentials").is_some(), creds, "{version}");
        if creds {
            assert_eq!(me["userCredentials"]["username"], "admin");
        }
        let (_, me) = sim.get("/api/me?fields=id,organisationUnits[id]").await;
        assert_eq!(me.as_object().unwrap().len(), 2);
        let (_, ids) = sim.get("/api/system/id?limit=3").await;
        let list = ids["codes"].as_array().unwrap();
        assert_eq!(list.len(), 3);
        assert!(
            list.iter()
                .all(|c| super::values::is_uid(c.as_str().unwrap()))
        );
    }
}

#[tokio::test]
async fn async_job_is_added_then_reported_when_done() {
    for version in ["2.36.13", "2.40.1", "2.41.3"] {
        let sim = start(version).await;
        let r = sim
            .http
            .post(sim.url("/api/tracker"))
            .basic_auth("admin", Some("district"))
            .json(&events(vec![lab_event("Y8FRzr4y2jG", OU_A, "12.5")]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let location = r.headers()["location"].to_str().unwrap().to_string();
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            shape(&body),
            shape(&sample("tracker-async-job-added.response.json"))
        );
        assert_eq!(body["message"], "Tracker job added");
        let id = body["response"]["id"].as_str().unwrap().to_string();
        assert!(location.ends_with(&format!("/api/tracker/jobs/{id}")));
        // Not done yet: the report is 404.
        let (s, nf) = sim.get(&format!("/api/tracker/jobs/{id}/report")).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{version}");
        let expected = Version::from_str_unchecked(version).job_report_missing(&id);
        assert_eq!(nf["message"], expected.as_str());
        // Poll like the SDK until a notification says completed.
        let mut done = false;
        for _ in 0..50 {
            let (_, notes) = sim.get(&format!("/api/tracker/jobs/{id}")).await;
            if notes[0]["completed"] == true {
                done = true;
                assert_eq!(notes[0]["category"], "TRACKER_IMPORT_JOB");
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(done, "{version}: job never completed");
        let (s, report) = sim.get(&format!("/api/tracker/jobs/{id}/report")).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(report["status"], "OK");
        assert_eq!(report["stats"]["created"], 1);
        assert_eq!(sim.event_uids().await, vec!["Y8FRzr4y2jG"]);
        // Unknown job: empty notification list.
        let (s, notes) = sim.get("/api/tracker/jobs/AAAAAAAAAAA").await;
        assert_eq!((s, notes), (StatusCode::OK, json!([])));
    }
}

impl Version {
    fn from_str_unchecked(s: &str) -> Version {
        s.parse().unwrap()
    }
}

#[tokio::test]
async fn async_false_literal_before_2_42_boolean_after() {
    let sim = start("2.41.3").await;
    let (_, body) = sim
        .post(
            "/api/tracker?async=FALSE",
            &events(vec![lab_event("Y8FRzr4y2jG", OU_A, "1")]),
        )
        .await;
    assert_eq!(body["message"], "Tracker job added");
    let sim = start("2.42.0").await;
    let (s, body) = sim
        .post(
            "/api/tracker?async=FALSE",
            &events(vec![lab_event("Y8FRzr4y2jG", OU_A, "1")]),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["status"], "OK");
}

#[tokio::test]
async fn ok_report_shape_per_version_matches_samples() {
    let sim = start("2.39.10").await;
    let (s, r) = sync(&sim, "", &events(vec![lab_event("Y8FRzr4y2jG", OU_A, "1")])).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        shape(&r),
        shape(&sample(
            "tracker-import-report-ok-event-2.36to2.39.response.json"
        ))
    );
    let raw = sim
        .http
        .post(sim.url("/api/tracker?async=false"))
        .basic_auth("admin", Some("district"))
        .json(&events(vec![lab_event("Z8FRzr4y2jG", OU_A, "1")]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Field order as DHIS2 writes it (typeReportMap EVENT first, bundle status before the map).
    let order = [
        "\"status\"",
        "\"validationReport\"",
        "\"stats\"",
        "\"bundleReport\"",
    ];
    let pos: Vec<usize> = order.iter().map(|k| raw.find(k).unwrap()).collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "{raw}");
    assert!(raw.find("\"EVENT\"").unwrap() < raw.find("\"TRACKED_ENTITY\"").unwrap());

    let sim = start("2.40.1").await;
    let (_, r) = sync(&sim, "", &events(vec![lab_event("Y8FRzr4y2jG", OU_A, "1")])).await;
    let b = &r["bundleReport"];
    assert!(b.get("status").is_none() && b.get("stats").is_none());
    assert_eq!(b["empty"], false);
    assert_eq!(b["typeReportMap"]["EVENT"]["objectReports"][0]["index"], 0);

    let sim = start("2.42.0").await;
    let body = json!({"trackedEntities": [{"trackedEntity": "aVcGf9iO8Xp", "trackedEntityType": TET, "orgUnit": OU_B,
        "enrollments": [{"enrollment": "ffcvJvWjiNZ", "program": TB, "orgUnit": OU_B, "enrolledAt": "2024-01-01",
            "events": [{"event": "gTZBPT3Jq39", "programStage": LAB, "orgUnit": OU_B, "occurredAt": "2024-01-02",
                "dataValues": [{"dataElement": MTB, "value": "DETECTED"}]}]}]}]});
    let (s, r) = sync(&sim, "", &body).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let mut expected = sample("tracker-import-report-ok-2.42-docs.response.json");
    // The docs sample has no relationship reports either; shapes must agree exactly.
    assert_eq!(shape(&r), shape(&expected));
    expected["bundleReport"]["typeReportMap"]["EVENT"]["objectReports"][0]["uid"] =
        json!("gTZBPT3Jq39");
    assert_eq!(r["stats"], expected["stats"]);
}

#[tokio::test]
async fn atomic_all_error_is_409_without_bundle_report_and_commits_nothing() {
    let sim = start("2.38.5").await;
    let body = events(vec![
        lab_event("Y8FRzr4y2jG", OU_A, "1"),
        lab_event("STPIK5YTi4f", OU_C, "2"),
    ]);
    let (s, r) = sync(&sim, "", &body).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        shape(&r),
        shape(&sample(
            "tracker-import-report-error-E1029-atomic-all.response.json"
        ))
    );
    assert_eq!(codes(&r), vec!["E1029"]);
    assert_eq!(
        r["validationReport"]["errorReports"][0]["uid"],
        "STPIK5YTi4f"
    );
    assert_eq!(
        r["stats"],
        json!({"created":0,"updated":0,"deleted":0,"ignored":2,"total":2})
    );
    assert!(sim.event_uids().await.is_empty());
}

#[tokio::test]
async fn atomic_object_partial_is_200_ok_with_error_reports() {
    let sim = start("2.41.3").await;
    let body = events(vec![
        lab_event("Y8FRzr4y2jG", OU_A, "1"),
        lab_event("STPIK5YTi4f", OU_C, "2"),
    ]);
    let (s, r) = sync(&sim, "&atomicMode=OBJECT", &body).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["status"], "OK");
    assert_eq!(codes(&r), vec!["E1029"]);
    assert_eq!(r["stats"]["created"], 1);
    assert_eq!(r["stats"]["ignored"], 1);
    let err = &r["validationReport"]["errorReports"][0];
    assert_eq!(err["args"], json!([OU_C, EV_PROGRAM]));
    let obj = &r["bundleReport"]["typeReportMap"]["EVENT"]["objectReports"][0];
    assert!(obj.get("index").is_none());
    assert_eq!(sim.event_uids().await, vec!["Y8FRzr4y2jG"]);
}

#[tokio::test]
async fn create_of_existing_is_e1030_and_create_and_update_twice_updates() {
    let sim = start("2.42.0").await;
    let body = events(vec![lab_event("ZwwuwNp6gVd", OU_A, "1")]);
    let (_, r) = sync(&sim, "&importStrategy=CREATE", &body).await;
    assert_eq!(r["stats"]["created"], 1);
    let (s, r) = sync(&sim, "&importStrategy=CREATE", &body).await;
    assert_eq!(s, StatusCode::CONFLICT);
    // dhis2.md §2.2 "derived" 2.42.0 body, exactly.
    assert_eq!(
        r,
        json!({"status":"ERROR","validationReport":{"errorReports":[{"message":"Event: `ZwwuwNp6gVd`, already exists.","errorCode":"E1030","trackerType":"EVENT","uid":"ZwwuwNp6gVd","args":["ZwwuwNp6gVd"]}],"warningReports":[]},"stats":{"created":0,"updated":0,"deleted":0,"ignored":1,"total":1}})
    );
    for _ in 0..2 {
        let (s, r) = sync(&sim, "", &events(vec![lab_event("ZwwuwNp6gVd", OU_A, "7")])).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(r["stats"]["updated"], 1);
        assert_eq!(r["stats"]["created"], 0);
    }
    let objs = sim.objects().await;
    assert_eq!(objs["events"].as_array().unwrap().len(), 1);
    assert_eq!(objs["events"][0]["dataValues"][0]["value"], "7");
}

#[tokio::test]
async fn validation_codes_against_the_fixture() {
    let sim = start("2.41.3").await;
    let check = |body: Value, query: &'static str, want: &'static [&'static str]| {
        let sim = &sim;
        async move {
            let (s, r) = sync(sim, query, &body).await;
            assert_eq!(s, StatusCode::CONFLICT, "{body} → {r}");
            assert_eq!(codes(&r), want, "{body} → {r}");
        }
    };
    let mut ev = lab_event("Y8FRzr4y2jG", OU_A, "1");
    ev["event"] = json!("bad-uid");
    check(events(vec![ev]), "", &["E1048"]).await;
    check(
        json!({"trackedEntities": [{"trackedEntity": "Kj6vYde4LHh", "trackedEntityType": "Q9GufDoplCL", "orgUnit": OU_A}]}),
        "",
        &["E1005"],
    )
    .await;
    let mut ev = lab_event("Y8FRzr4y2jG", OU_A, "1");
    ev["programStage"] = json!("NoSuchStag1");
    ev.as_object_mut().unwrap().remove("program");
    check(events(vec![ev]), "", &["E1013"]).await;
    check(
        events(vec![lab_event("Y8FRzr4y2jG", "NoSuchOrgU1", "1")]),
        "",
        &["E1011"],
    )
    .await;
    let mut ev = lab_event("Y8FRzr4y2jG", OU_A, "1");
    ev["program"] = json!("NoSuchProg1");
    check(events(vec![ev]), "", &["E1010"]).await;
    let mut ev = lab_event("Y8FRzr4y2jG", OU_A, "1");
    ev.as_object_mut().unwrap().remove("occurredAt");
    check(events(vec![ev]), "", &["E1031"]).await;
    check(
        events(vec![lab_event("Y8FRzr4y2jG", OU_A, "1.")]),
        "",
        &["E1302"],
    )
    .await;
    let mut ev = lab_event("Y8FRzr4y2jG", OU_A, "1");
    ev["dataValues"] = json!([{"dataElement": "DeText0001a", "value": "x"}]);
    check(events(vec![ev]), "", &["E1303"]).await;
    // Tracker program: no enrollment → E1033; bad option → E1125.
    check(
        events(vec![json!({"event": "PXi7gfVIk1p", "programStage": LAB, "orgUnit": OU_B, "occurredAt": "2024-01-01"})]),
        "",
        &["E1033"],
    )
    .await;
    let te = json!({"trackedEntity": "Kj6vYde4LHh", "trackedEntityType": TET, "orgUnit": OU_B});
    let en = json!({"enrollment": "MNWZ6hnuhSw", "trackedEntity": "Kj6vYde4LHh", "program": TB, "orgUnit": OU_B, "enrolledAt": "2024-01-01"});
    let lab = |uid: &str, v: &str| {
        json!({"event": uid, "enrollment": "MNWZ6hnuhSw", "programStage": LAB, "orgUnit": OU_B,
        "occurredAt": "2024-01-02", "status": "COMPLETED", "dataValues": [{"dataElement": MTB, "value": v}]})
    };
    check(
        json!({"trackedEntities": [te.clone()], "enrollments": [en.clone()], "events": [lab("ZwwuwNp6gVd", "Detected")]}),
        "",
        &["E1125"],
    )
    .await;
    let mut bad_en = en.clone();
    bad_en["orgUnit"] = json!(OU_C);
    check(
        json!({"trackedEntities": [te.clone()], "enrollments": [bad_en]}),
        "",
        &["E1041"],
    )
    .await;
    // Good tracker import, then E1039 for a second event in the non-repeatable stage.
    let reg = |uid: &str| json!({"event": uid, "enrollment": "MNWZ6hnuhSw", "programStage": REG, "orgUnit": OU_B, "occurredAt": "2024-01-02"});
    let (s, r) = sync(
        &sim,
        "",
        &json!({"trackedEntities": [te.clone()], "enrollments": [en.clone()], "events": [lab("ZwwuwNp6gVd", "DETECTED"), reg("XwwuwNp6gVE")]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["stats"]["created"], 4);
    check(events(vec![reg("QwwuwNp6gVF")]), "", &["E1039"]).await;
    check(
        events(vec![lab("NotThere01a", "DETECTED")]),
        "&importStrategy=UPDATE",
        &["E1032"],
    )
    .await;
    check(
        json!({"enrollments": [en.clone()]}),
        "&importStrategy=CREATE",
        &["E1080"],
    )
    .await;
    check(
        json!({"trackedEntities": [te.clone()]}),
        "&importStrategy=CREATE",
        &["E1002"],
    )
    .await;
    sim.admin("/__sim/delete-event", &json!({"uid": "ZwwuwNp6gVd"}))
        .await;
    check(events(vec![lab("ZwwuwNp6gVd", "DETECTED")]), "", &["E1082"]).await;
    // Bad enum values are 400 on strict versions.
    let (s, r) = sync(&sim, "&importStrategy=FOO", &events(vec![])).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .starts_with("Value FOO is not a valid importStrategy")
    );
}

#[tokio::test]
async fn bad_uid_and_malformed_json_per_version() {
    let sim = start("2.42.0").await;
    let mut ev = lab_event("Y8FRzr4y2jG", OU_A, "1");
    ev["event"] = json!("bad-uid");
    let (s, _) = sync(&sim, "", &events(vec![ev])).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    for (version, want) in [
        ("2.40.1", StatusCode::INTERNAL_SERVER_ERROR),
        ("2.41.0", StatusCode::BAD_REQUEST),
    ] {
        let sim = start(version).await;
        let r = sim
            .http
            .post(sim.url("/api/tracker?async=false"))
            .basic_auth("admin", Some("district"))
            .header("Content-Type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), want, "{version}");
    }
}

#[tokio::test]
async fn data_value_sets_bare_before_2_38_web_message_after() {
    let good = json!({"dataSet": "pBOMPrpg1QX", "period": "202401", "orgUnit": OU_A,
        "dataValues": [{"dataElement": "f7n9E0hX8qk", "value": "12"}]});
    let bad = json!({"dataSet": "pBOMPrpg1QX", "period": "202402", "orgUnit": OU_A,
        "dataValues": [{"dataElement": "f7n9E0hX8qk", "value": "3"}, {"dataElement": "f7n9E0hX8qk", "period": "202403", "value": "x"}]});

    let sim = start("2.37.10").await;
    let (s, r) = sim.post("/api/dataValueSets", &bad).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["responseType"], "ImportSummary");
    assert_eq!(r["status"], "WARNING");
    assert_eq!(r["conflicts"][0]["errorCode"], "E7619");
    assert_eq!(
        shape(&r["conflicts"][0]),
        shape(&sample("datavaluesets-import-conflict-E7619.fragment.json"))
    );

    let sim = start("2.38.5").await;
    let (s, r) = sim.post("/api/dataValueSets", &good).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        shape(&r),
        shape(&sample(
            "datavaluesets-import-summary-2.38plus.response.json"
        ))
    );
    assert_eq!(r["response"]["importCount"]["imported"], 1);
    let (_, r) = sim.post("/api/dataValueSets", &good).await;
    assert_eq!(
        r["response"]["importCount"]["ignored"], 1,
        "unchanged value is ignored"
    );
    let (s, r) = sim.post("/api/dataValueSets", &bad).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(r["status"], "WARNING");
    assert_eq!(
        r["message"],
        "One more conflicts encountered, please check import summary."
    );
    assert_eq!(r["response"]["importCount"]["imported"], 1);
    // The same 2.38–2.41 server answers bare under /api/37/.
    let (s, r) = sim.post("/api/37/dataValueSets", &bad).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["responseType"], "ImportSummary");
    assert_eq!(
        sim.objects().await["dataValues"].as_array().unwrap().len(),
        2
    );
}

#[tokio::test]
async fn legacy_events_409_on_error_and_gone_in_2_42() {
    let sim = start("2.41.3").await;
    let ok = json!({"event": "Y8FRzr4y2jG", "program": EV_PROGRAM, "orgUnit": OU_A, "eventDate": "2024-05-01",
        "status": "COMPLETED", "dataValues": [{"dataElement": "DeNumber01a", "value": "22"}]});
    let (s, r) = sim.post("/api/events", &ok).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["message"], "Import was successful.");
    let mut bad = ok.clone();
    bad["event"] = json!("event1Idxxx");
    bad["orgUnit"] = json!(OU_C);
    let (s, r) = sim
        .post("/api/events?strategy=CREATE", &json!({"events": [ok, bad]}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let sample = sample("legacy-events-import-summaries-409-error.response.json");
    assert_eq!(r["status"], "ERROR");
    assert_eq!(r["message"], sample["message"]);
    for k in sample["response"].as_object().unwrap().keys() {
        assert!(r["response"].get(k).is_some(), "missing {k}");
    }
    assert_eq!(r["response"]["ignored"], 2);
    assert_eq!(sim.event_uids().await, vec!["Y8FRzr4y2jG"]);
    let sim = start("2.42.0").await;
    let (s, _) = sim.post("/api/events", &json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn faults_5xx_count_html_413_delay_and_drop_after_commit() {
    let sim = start("2.41.3").await;
    sim.admin("/__sim/faults", &json!({"status": 503, "count": 2}))
        .await;
    for _ in 0..2 {
        let (s, r) = sync(&sim, "", &events(vec![lab_event("Y8FRzr4y2jG", OU_A, "1")])).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r["httpStatusCode"], 503);
    }
    assert!(sim.event_uids().await.is_empty());
    let (s, _) = sync(&sim, "", &events(vec![lab_event("Y8FRzr4y2jG", OU_A, "1")])).await;
    assert_eq!(s, StatusCode::OK);

    sim.admin(
        "/__sim/faults",
        &json!({"status": 413, "html": true, "count": 1}),
    )
    .await;
    let r = sim
        .http
        .post(sim.url("/api/tracker?async=false"))
        .basic_auth("admin", Some("district"))
        .json(&events(vec![]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(r.text().await.unwrap().contains("<center>nginx"));

    // Commit, then answer too late for the client.
    sim.admin(
        "/__sim/faults",
        &json!({"delay_ms": 1500, "count": 1, "commit": true}),
    )
    .await;
    let r = sim
        .http
        .post(sim.url("/api/tracker?async=false"))
        .basic_auth("admin", Some("district"))
        .timeout(Duration::from_millis(300))
        .json(&events(vec![lab_event("DelayEvt01a", OU_A, "1")]))
        .send()
        .await;
    assert!(r.is_err(), "client should time out");
    assert!(sim.event_uids().await.contains(&"DelayEvt01a".to_string()));

    // Commit, then close the connection without answering.
    sim.admin(
        "/__sim/faults",
        &json!({"drop": true, "count": 1, "commit": true}),
    )
    .await;
    let r = sim
        .http
        .post(sim.url("/api/tracker?async=false"))
        .basic_auth("admin", Some("district"))
        .json(&events(vec![lab_event("DropEvt001a", OU_A, "1")]))
        .send()
        .await;
    assert!(r.is_err(), "connection should be dropped: {r:?}");
    assert!(sim.event_uids().await.contains(&"DropEvt001a".to_string()));
    // And the retry is an idempotent update.
    let (s, r) = sync(&sim, "", &events(vec![lab_event("DropEvt001a", OU_A, "1")])).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["stats"]["updated"], 1);

    let stats: Value = sim
        .http
        .get(sim.url("/__sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["requestsByRoute"]["POST /api/tracker"], 7);
    assert!(stats["bytesIn"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn state_file_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sim-state.json");
    {
        let sim = start_with("2.41.3", Some(file.clone())).await;
        let (s, _) = sync(&sim, "", &events(vec![lab_event("Y8FRzr4y2jG", OU_A, "1")])).await;
        assert_eq!(s, StatusCode::OK);
        sim.admin("/__sim/delete-event", &json!({"uid": "Y8FRzr4y2jG"}))
            .await;
        let (s, _) = sync(&sim, "", &events(vec![lab_event("Z8FRzr4y2jG", OU_A, "1")])).await;
        assert_eq!(s, StatusCode::OK);
    }
    let sim = start_with("2.41.3", Some(file)).await;
    assert_eq!(sim.event_uids().await, vec!["Z8FRzr4y2jG"]);
    let (s, r) = sync(&sim, "", &events(vec![lab_event("Y8FRzr4y2jG", OU_A, "1")])).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(codes(&r), vec!["E1082"]);
}

#[tokio::test]
async fn metadata_reads_with_fields_and_paging() {
    let sim = start("2.40.1").await;
    let (s, r) = sim.get("/api/organisationUnits?pageSize=2").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["pager"]["total"], 3);
    assert_eq!(r["pager"]["pageCount"], 2);
    assert_eq!(r["organisationUnits"].as_array().unwrap().len(), 2);
    assert!(r["pager"]["nextPage"].as_str().unwrap().contains("page=2"));
    assert_eq!(
        r["organisationUnits"][0],
        json!({"id": OU_A, "displayName": "Ngelehun CHC"})
    );
    let (_, r) = sim
        .get("/api/organisationUnits?paging=false&fields=id")
        .await;
    assert!(r.get("pager").is_none());
    assert_eq!(r["organisationUnits"].as_array().unwrap().len(), 3);
    let (_, r) = sim
        .get(&format!("/api/programs/{TB}?fields=id,programStages[id,repeatable,programStageDataElements[compulsory,dataElement[id,optionSet[options[code]]]]]"))
        .await;
    assert_eq!(r["programStages"][0]["id"], LAB);
    assert_eq!(
        r["programStages"][0]["programStageDataElements"][0]["dataElement"]["optionSet"]["options"]
            [0],
        json!({"code": "DETECTED"})
    );
    let (_, r) = sim
        .get("/api/programs?fields=*&filter=programType:eq:WITHOUT_REGISTRATION")
        .await;
    assert_eq!(r["programs"].as_array().unwrap().len(), 1);
    assert_eq!(r["programs"][0]["id"], EV_PROGRAM);
    let (_, r) = sim
        .get("/api/dataElements?paging=false&fields=id,valueType")
        .await;
    assert_eq!(r["dataElements"].as_array().unwrap().len(), 5);
    let (_, r) = sim
        .get("/api/dataSets/pBOMPrpg1QX?fields=id,organisationUnits[id]")
        .await;
    assert_eq!(
        r,
        json!({"id": "pBOMPrpg1QX", "organisationUnits": [{"id": OU_A}]})
    );
    let (_, r) = sim.get("/api/trackedEntityTypes").await;
    assert_eq!(r["trackedEntityTypes"][0]["id"], TET);
    let (s, _) = sim.get("/api/programs/NoSuchProg1").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn shipped_fixture_loads_when_present() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dhis2/metadata.json");
    let Ok(bytes) = std::fs::read(&path) else {
        return;
    };
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    let meta = super::metadata::Metadata::load(&doc).unwrap();
    assert!(meta.programs.contains_key(TB));
    assert!(meta.stages.contains_key(LAB));
    assert!(meta.data_elements.contains_key(MTB));
    assert!(!meta.org_units.is_empty());
}
