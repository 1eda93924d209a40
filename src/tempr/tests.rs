//! Tempr tests: the shipped examples against the real S1 GeneXpert capture, the sandbox limits,
//! and file/chain validation.

use super::*;
use crate::record::Observation;
use serde_json::json;
use std::time::Instant;

fn s1_observations() -> Vec<Observation> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/astm/s01-genexpert-mtb-rif-ultra.expected.json");
    let text = std::fs::read_to_string(&path).expect("S1 fixture");
    let messages: Vec<Value> = serde_json::from_str(&text).expect("S1 JSON");
    serde_json::from_value(messages[0]["observations"].clone()).expect("S1 observations")
}

fn s1() -> Arc<Value> {
    record_view(12, "gx-1", "2026-11-22T10:00:00Z", &s1_observations())
}

fn ctx() -> Value {
    json!({"gateway": {"name": "clinic-1"}, "org_unit": "DiszpKrYNg8", "previous": null, "previous_request": null})
}

fn examples() -> TemprSet {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/temprs");
    match TemprSet::load_dir(&dir) {
        Ok(set) => set,
        Err(errors) => panic!(
            "example Temprs do not load:\n{}",
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

fn run(name: &str, record: &Value, ctx: &Value) -> Result<Dhis2Request, TemprError> {
    let set = examples();
    let t = set.get(name).unwrap_or_else(|| panic!("no Tempr {name}"));
    apply(t, &Arc::new(record.clone()), ctx, &Limits::default())
}

fn data_values(event: &Value) -> Vec<(String, String)> {
    event["dataValues"]
        .as_array()
        .expect("dataValues")
        .iter()
        .map(|dv| {
            (
                dv["dataElement"].as_str().unwrap_or("").to_string(),
                dv["value"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect()
}

fn dv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// A `kind` Tempr file with an inline template (template line 1 = file line 6), then `rest`.
fn text_tempr(
    kind: &str,
    template: &str,
    endpoint: &str,
    rest: &str,
) -> Result<Tempr, Vec<TemprError>> {
    let text = format!(
        "name = \"t\"\nversion = 1\nkind = \"{kind}\"\nendpoint = \"{endpoint}\"\ntemplate = '''\n{template}'''\n{rest}"
    );
    Tempr::parse(&text, Path::new("t.toml"))
}

fn template_tempr(template: &str, endpoint: &str) -> Tempr {
    text_tempr("template", template, endpoint, "").unwrap_or_else(|e| panic!("{e:?}"))
}

fn mustache_tempr(template: &str, rest: &str) -> Tempr {
    text_tempr("mustache", template, "tracker", rest).unwrap_or_else(|e| panic!("{e:?}"))
}

fn script_tempr(script: &str) -> Tempr {
    let text = format!(
        "name = \"s\"\nversion = 1\nkind = \"script\"\nendpoint = \"tracker\"\nscript = '''\n{script}'''\n"
    );
    Tempr::parse(&text, Path::new("s.toml")).unwrap_or_else(|e| panic!("{e:?}"))
}

fn script_of(t: &Tempr) -> &Script {
    match &t.kind {
        TemprKind::Script(s) => s,
        _ => panic!("not a script"),
    }
}

// --- the record a Tempr sees -------------------------------------------------------------------

#[test]
fn record_view_has_the_contract_fields_for_s1() {
    let r = s1();
    assert_eq!(r["id"], 12);
    assert_eq!(r["source"], "gx-1");
    assert_eq!(r["received_at"], "2026-11-22T10:00:00Z");
    assert_eq!(
        r["device"],
        json!({"vendor": "Cepheid", "model": "GeneXpert", "serial": "806149"})
    );
    assert_eq!(r["sample_id"], "PR25A137");
    assert_eq!(r["patient_id"], Value::Null);
    assert_eq!(r["observed_at"], "2025-05-14T13:21:03");
    assert_eq!(r["observations"].as_array().map(Vec::len), Some(84));
    assert_eq!(r["results"]["MTB-RIF/Xpert/MTB"]["value"], "NOT DETECTED");
    assert_eq!(
        r["results"]["MTB-RIF/Xpert/MTB"]["test_name"],
        "Xpert MTB-RIF Ultra"
    );
    // First observation per test code: S1 repeats SPC under each panel part.
    assert_eq!(r["results"]["MTB-RIF/Xpert/SPC"]["value"], "PASS");
}

// --- the shipped examples on S1 ----------------------------------------------------------------

#[test]
fn examples_load_and_only_chain_heads_match_s1() {
    let set = examples();
    let names: Vec<&str> = set.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "lab-event",
            "lab-event-mustache",
            "monthly-counts",
            "tb-lab-stage",
            "tracker-lab-event",
            "tracker-person"
        ]
    );
    let matching: Vec<&str> = set
        .matching(&s1())
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    // monthly-counts ships disabled: it needs ctx.counts, which the caller must supply first;
    // tb-lab-stage too: it needs the case enrolled in the TB programme first (E1033);
    // lab-event-mustache would send a second event beside lab-event's.
    assert_eq!(matching, ["lab-event", "tracker-person"]);
    assert!(!set.get("lab-event-mustache").expect("example").enabled);
    assert!(!set.get("monthly-counts").expect("monthly-counts").enabled);
    assert!(!set.get("tb-lab-stage").expect("tb-lab-stage").enabled);
    let head = set.get("tracker-person").expect("head");
    let chain: Vec<String> = set.chain(head).iter().map(|t| t.id()).collect();
    assert_eq!(chain, ["tracker-person@1", "tracker-lab-event@1"]);
}

#[test]
fn lab_event_builder_turns_s1_into_one_event_program_event() {
    let req = run("lab-event", &s1(), &ctx()).expect("lab-event");
    assert_eq!(req.endpoint, Endpoint::Tracker);
    let ev = &req.body["events"][0];
    assert_eq!(req.body["events"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        ev["event"],
        deterministic_uid("gx-1:PR25A137:2025-05-14T13:21:03:LabRsltStg1")
    );
    assert_eq!(ev["program"], "LabGxEvnt01");
    assert_eq!(ev["programStage"], "LabRsltStg1");
    assert_eq!(ev["orgUnit"], "DiszpKrYNg8");
    assert_eq!(ev["occurredAt"], "2025-05-14T13:21:03.000");
    assert_eq!(ev["status"], "COMPLETED");
    assert_eq!(
        data_values(ev),
        dv(&[
            ("LabSmplId01", "PR25A137"),
            ("LabTestNm01", "Xpert MTB-RIF Ultra"),
            ("LabMtbRes01", "NOT_DETECTED"),
            ("LabAnlzSn01", "806149"),
            ("LabRsltDt01", "2025-05-14"),
        ])
    );
    // Same record, same request: safe to send twice.
    assert_eq!(run("lab-event", &s1(), &ctx()).expect("again"), req);
}

#[test]
fn tb_lab_stage_sends_s1_with_the_ultra_data_elements() {
    let req = run("tb-lab-stage", &s1(), &ctx()).expect("tb-lab-stage");
    assert_eq!(req.endpoint, Endpoint::Tracker);
    let ev = &req.body["events"][0];
    assert_eq!(ev["program"], "Lt6P15ps7f6");
    assert_eq!(ev["programStage"], "mPdMZNWVrOQ");
    assert_eq!(
        ev["event"],
        deterministic_uid("gx-1:PR25A137:2025-05-14T13:21:03:mPdMZNWVrOQ")
    );
    assert_eq!(
        ev["enrollment"],
        deterministic_uid("enrollment:Lt6P15ps7f6:DiszpKrYNg8:PR25A137")
    );
    assert_eq!(
        ev["trackedEntity"],
        deterministic_uid("person:DiszpKrYNg8:PR25A137")
    );
    assert_eq!(ev["orgUnit"], "DiszpKrYNg8");
    assert_eq!(ev["occurredAt"], "2025-05-14T13:21:03.000");
    assert_eq!(ev["status"], "COMPLETED");
    // S1 is "Xpert MTB-RIF Ultra", MTB NOT DETECTED, so no RIF result.
    assert_eq!(
        data_values(ev),
        dv(&[
            ("MAItgXvlO5L", "true"),
            ("lmXKhJA5nk1", "NOT_DETECTED"),
            ("mFCcHXpopRD", "2025-05-14"),
            ("Lf02pJ3jScn", "PR25A137"),
        ])
    );
}

#[test]
fn tb_lab_stage_maps_classic_xpert_detected_and_rif_resistance() {
    let mut r = Value::clone(&s1());
    r["results"]["MTB-RIF/Xpert/MTB"]["test_name"] = json!("Xpert MTB-RIF");
    r["results"]["MTB-RIF/Xpert/MTB"]["value"] = json!("DETECTED MEDIUM");
    r["results"]["MTB-RIF/RIF/RIF Resistance"]["value"] = json!("Rif Resistance DETECTED");
    let req = run("tb-lab-stage", &r, &ctx()).expect("tb-lab-stage");
    assert_eq!(
        data_values(&req.body["events"][0]),
        dv(&[
            ("VSuQ1rwL2nA", "true"),
            ("CxjSGmVSIrD", "DETECTED"),
            ("F6kH0qcMT7Z", "RESISTANT"),
            ("cQUTagw2Jtw", "2025-05-14"),
            ("ig6R6PnpsHv", "PR25A137"),
        ])
    );
    for (gx, code) in [
        ("NOT DETECTED", "SUSCEPTIBLE"),
        ("Rif Resistance INDETERMINATE", "INDETERMINATE"),
    ] {
        r["results"]["MTB-RIF/RIF/RIF Resistance"]["value"] = json!(gx);
        let req = run("tb-lab-stage", &r, &ctx()).expect("tb-lab-stage");
        assert!(
            data_values(&req.body["events"][0]).contains(&("F6kH0qcMT7Z".into(), code.into())),
            "{gx}"
        );
    }
    r["results"]["MTB-RIF/Xpert/MTB"]["value"] = json!("SOMETHING NEW");
    let err = run("tb-lab-stage", &r, &ctx()).unwrap_err();
    assert!(
        err.to_string()
            .contains("\"SOMETHING NEW\" is not in the map"),
        "{err}"
    );
}

#[test]
fn tracker_person_creates_tracked_entity_and_enrollment_from_s1() {
    let req = run("tracker-person", &s1(), &ctx()).expect("tracker-person");
    let te = &req.body["trackedEntities"][0];
    let te_uid = deterministic_uid("person:DiszpKrYNg8:PR25A137");
    assert_eq!(te["trackedEntity"], te_uid);
    assert_eq!(te["trackedEntityType"], "MCPQUTHX1Ze");
    assert_eq!(te["orgUnit"], "DiszpKrYNg8");
    assert_eq!(
        te["attributes"],
        json!([{"attribute": "LabPatntId1", "value": "PR25A137"}])
    );
    let en = &te["enrollments"][0];
    assert_eq!(
        en["enrollment"],
        deterministic_uid("enrollment:LabTrkProg1:DiszpKrYNg8:PR25A137")
    );
    assert_eq!(en["trackedEntity"], te_uid);
    assert_eq!(en["program"], "LabTrkProg1");
    assert_eq!(en["orgUnit"], "DiszpKrYNg8");
    assert_eq!(en["enrolledAt"], "2025-05-14T13:21:03.000");
    assert_eq!(en["occurredAt"], "2025-05-14T13:21:03.000");
    assert_eq!(en["status"], "ACTIVE");
}

#[test]
fn tracker_lab_event_posts_into_the_enrollment_the_previous_step_created() {
    let set = examples();
    let head = set.get("tracker-person").expect("head");
    let first = apply(head, &s1(), &ctx(), &Limits::default()).expect("step 1");
    let enrollment = first.body["trackedEntities"][0]["enrollments"][0]["enrollment"].clone();
    let te = first.body["trackedEntities"][0]["trackedEntity"].clone();

    let response = json!({"status": "OK", "bundleReport": {"typeReportMap": {"ENROLLMENT": {"objectReports": [{"uid": enrollment}]}}}});
    let mut step_ctx = ctx();
    step_ctx["previous"] = response;
    step_ctx["previous_request"] = serde_json::to_value(&first).expect("json");
    let step = set.chain(head)[1];
    let req = apply(step, &s1(), &step_ctx, &Limits::default()).expect("step 2");
    let ev = &req.body["events"][0];
    assert_eq!(ev["enrollment"], enrollment);
    assert_eq!(ev["trackedEntity"], te);
    assert_eq!(ev["program"], "LabTrkProg1");
    assert_eq!(ev["programStage"], "LabTrkStg01");
    assert_eq!(ev["orgUnit"], "DiszpKrYNg8");
    assert_eq!(ev["occurredAt"], "2025-05-14T13:21:03.000");
    assert_eq!(
        ev["event"],
        deterministic_uid("gx-1:PR25A137:2025-05-14T13:21:03:LabTrkStg01")
    );
    // RIF Resistance is null in S1 and left out.
    assert_eq!(
        data_values(ev),
        dv(&[("LabSmplId01", "PR25A137"), ("LabMtbRes01", "NOT DETECTED")])
    );

    // Without the previous step's data the same uids are derived.
    let alone = apply(step, &s1(), &ctx(), &Limits::default()).expect("derived");
    assert_eq!(alone.body["events"][0]["enrollment"], enrollment);
    assert_eq!(alone.body["events"][0]["trackedEntity"], te);
}

#[test]
fn monthly_counts_sends_the_months_totals_from_ctx_counts() {
    let mut c = ctx();
    c["counts"] = json!([
        {"period": "202505", "test_code": "MTB-RIF/Xpert/MTB", "value": "NOT DETECTED", "count": 7},
        {"period": "202505", "test_code": "MTB-RIF/Xpert/MTB", "value": "DETECTED HIGH", "count": 2},
        {"period": "202505", "test_code": "MTB-RIF/Xpert/MTB", "value": "DETECTED LOW", "count": 1},
        {"period": "202505", "test_code": "MTB-RIF/Xpert/MTB", "value": "ERROR", "count": 1},
        {"period": "202504", "test_code": "MTB-RIF/Xpert/MTB", "value": "NOT DETECTED", "count": 40},
    ]);
    let req = run("monthly-counts", &s1(), &c).expect("monthly-counts");
    assert_eq!(req.endpoint, Endpoint::DataValueSets);
    assert_eq!(req.body["dataSet"], "LabMonthly1");
    assert_eq!(req.body["period"], "202505");
    assert_eq!(req.body["orgUnit"], "DiszpKrYNg8");
    assert_eq!(
        req.body["dataValues"],
        json!([
            {"dataElement": "GxMtbTests1", "categoryOptionCombo": "GxCocDetect", "value": "3"},
            {"dataElement": "GxMtbTests1", "categoryOptionCombo": "GxCocNotDet", "value": "7"},
            {"dataElement": "GxMtbTests1", "categoryOptionCombo": "GxCocFailed", "value": "1"},
        ])
    );
    let err = run("monthly-counts", &s1(), &ctx()).unwrap_err();
    assert!(
        matches!(err, TemprError::Template { .. }) && err.to_string().contains("ctx.counts"),
        "{err}"
    );
}

// --- builder errors ----------------------------------------------------------------------------

#[test]
fn missing_required_field_error_names_the_path() {
    let mut r = Value::clone(&s1());
    r["results"]
        .as_object_mut()
        .expect("results")
        .remove("MTB-RIF/Xpert/MTB");
    r["observed_at"] = Value::Null;
    r["received_at"] = json!("2026-11-22T10:00:00Z");
    let err = run("lab-event", &r, &ctx()).unwrap_err();
    // The uid seed falls back to observed_at, which is null too.
    assert!(err.is_record_problem());
    assert_eq!(
        err.to_string(),
        "missing field results.MTB-RIF/Xpert/MTB.observed_at|observed_at"
    );

    let mut r = Value::clone(&s1());
    r["results"]["MTB-RIF/Xpert/MTB"]["value"] = Value::Null;
    let err = run("lab-event", &r, &ctx()).unwrap_err();
    assert_eq!(
        err,
        TemprError::MissingField {
            path: "results.MTB-RIF/Xpert/MTB.value".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "missing field results.MTB-RIF/Xpert/MTB.value"
    );

    let mut c = ctx();
    c["org_unit"] = Value::Null;
    assert_eq!(
        run("lab-event", &s1(), &c).unwrap_err().to_string(),
        "missing field ctx.org_unit"
    );
}

// --- matcher -----------------------------------------------------------------------------------

#[test]
fn matcher_checks_source_device_test_codes_and_values() {
    let text = r#"
name = "m"
version = 1
kind = "template"
endpoint = "tracker"
template = "{}"
[match]
sources = ["gx-*", "lab"]
vendor = "cepheid"
model = "GeneXpert*"
test_codes = ["MTB-RIF/*/MTB"]
[match.values]
"results.MTB-RIF/Xpert/MTB.test_name" = "*ultra*"
"#;
    let t = Tempr::parse(text, Path::new("m.toml")).expect("parse");
    let r = s1();
    assert!(t.matcher.matches(&r));
    let mut other = Value::clone(&r);
    other["source"] = json!("sysmex-1");
    assert!(!t.matcher.matches(&other));
    let mut other = Value::clone(&r);
    other["device"]["vendor"] = json!("Roche");
    assert!(!t.matcher.matches(&other));
    let mut other = Value::clone(&r);
    other["results"]["MTB-RIF/Xpert/MTB"]["test_name"] = json!("Xpert MTB-RIF");
    assert!(!t.matcher.matches(&other));
    let mut other = Value::clone(&r);
    other["observations"] = json!([{"test_code": "HIVVL"}]);
    assert!(!t.matcher.matches(&other));
    assert!(Match::default().matches(&json!({})));
    assert!(glob_match("a*b*c", "aXXbYYc") && !glob_match("a*b", "a") && glob_match("*", ""));
}

// --- template ----------------------------------------------------------------------------------

#[test]
fn template_strict_undefined_error_names_the_variable_and_line() {
    let t = template_tempr(
        "{\n  \"events\": [\n    {{ record.results[\"MTB-RIF/Xpert/MTB\"].valu|tojson }}\n  ]\n}\n",
        "tracker",
    );
    let err = apply(&t, &s1(), &ctx(), &Limits::default()).unwrap_err();
    let TemprError::Template { line, message } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*line, Some(3), "{err}");
    assert!(message.contains("undefined"), "{message}");
    assert!(
        message.contains("record.results[\"MTB-RIF/Xpert/MTB\"].valu|tojson"),
        "{message}"
    );
}

#[test]
fn template_fuel_runs_out_on_a_huge_loop() {
    let t = template_tempr(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{}",
        "tracker",
    );
    let start = Instant::now();
    let err = apply(&t, &s1(), &ctx(), &Limits::default()).unwrap_err();
    assert_eq!(err, TemprError::TemplateFuel { fuel: 50_000 });
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn template_output_is_limited_and_must_be_a_request() {
    let big = template_tempr(
        "{% for i in range(20000) %}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx{% endfor %}",
        "tracker",
    );
    let limits = Limits {
        template_fuel: 1_000_000,
        max_output_bytes: 10_000,
        ..Limits::default()
    };
    assert_eq!(
        apply(&big, &s1(), &ctx(), &limits).unwrap_err(),
        TemprError::OutputTooLarge { limit: 10_000 }
    );

    let not_json = template_tempr("{\"events\": [}", "tracker");
    assert!(matches!(
        apply(&not_json, &s1(), &ctx(), &Limits::default()),
        Err(TemprError::NotJson { .. })
    ));

    let no_org = template_tempr(
        "{\"events\": [{\"programStage\": \"mPdMZNWVrOQ\", \"occurredAt\": \"2025-05-14\"}]}",
        "tracker",
    );
    let err = apply(&no_org, &s1(), &ctx(), &Limits::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "output is not a DHIS2 request: events[0].orgUnit is missing"
    );

    let bad_uid = template_tempr(
        "{\"events\": [{\"event\": \"abc\", \"programStage\": \"x\", \"orgUnit\": \"y\", \"occurredAt\": \"z\"}]}",
        "tracker",
    );
    assert!(
        apply(&bad_uid, &s1(), &ctx(), &Limits::default())
            .unwrap_err()
            .to_string()
            .contains("events[0].event \"abc\" is not a DHIS2 UID")
    );

    let get = template_tempr(
        "{\"endpoint\": \"get\", \"path\": {{ (\"/api/tracker/trackedEntities?program=Lt6P15ps7f6&filter=LabPatntId1:eq:\" ~ record.sample_id)|tojson }}}",
        "tracker",
    );
    let req = apply(&get, &s1(), &ctx(), &Limits::default()).expect("get");
    assert_eq!(req.endpoint, Endpoint::Get);
    assert_eq!(
        req.path.as_deref(),
        Some("/api/tracker/trackedEntities?program=Lt6P15ps7f6&filter=LabPatntId1:eq:PR25A137")
    );
}

#[test]
fn template_filters_do_dhis2_work() {
    let t = template_tempr(
        "{\"dataValues\": [{\"dataElement\": {{ uid(\"x\")|tojson }}, \"period\": {{ \"20250514132103\"|dhis2_period|tojson }}, \"orgUnit\": {{ (\"y\"|uid)|tojson }}, \"value\": {{ [\"20250514132103\"|dhis2_datetime, record.observed_at|dhis2_date, \"DETECTED LOW\"|code({\"DETECTED\": \"D\"})]|join(\" \")|tojson }}}]}",
        "data_value_sets",
    );
    let req = apply(&t, &s1(), &ctx(), &Limits::default()).expect("render");
    let v = &req.body["dataValues"][0];
    assert_eq!(v["dataElement"], deterministic_uid("x"));
    assert_eq!(v["orgUnit"], deterministic_uid("y"));
    assert_eq!(v["period"], "202505");
    assert_eq!(v["value"], "2025-05-14T13:21:03.000 2025-05-14 D");
}

// --- script ------------------------------------------------------------------------------------

#[test]
fn script_infinite_loop_is_stopped_within_1_5_s_and_reported() {
    let t = script_tempr("(record, ctx) => { while (true) {} }\n");
    let start = Instant::now();
    let err = apply(&t, &s1(), &ctx(), &Limits::default()).unwrap_err();
    let took = start.elapsed();
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert!(
        matches!(
            err,
            TemprError::ScriptLimit { .. } | TemprError::ScriptTimeout { .. }
        ),
        "{err}"
    );

    // try/catch cannot swallow the limit.
    let t = script_tempr("(r, c) => { for (;;) { try { while (true) {} } catch (e) {} } }\n");
    let err = apply(&t, &s1(), &ctx(), &Limits::default()).unwrap_err();
    assert!(
        matches!(
            err,
            TemprError::ScriptLimit { .. } | TemprError::ScriptTimeout { .. }
        ),
        "{err}"
    );
}

#[test]
fn script_that_dodges_the_loop_limit_hits_the_wall_clock_budget() {
    // Each call gets its own frame and loop counter, so this evades a per-frame loop limit; the
    // watchdog reports it, and the outer loop's limit ends the abandoned thread a little later.
    let t = script_tempr(
        "(r, c) => { function spin() { for (let i = 0; i < 3900; i++) {} } for (;;) spin(); }\n",
    );
    let limits = Limits {
        script_budget: Duration::from_millis(300),
        script_loop_limit: 4000,
        ..Limits::default()
    };
    let start = Instant::now();
    let err = apply(&t, &s1(), &ctx(), &limits).unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(
            err,
            TemprError::ScriptTimeout { .. } | TemprError::ScriptLimit { .. }
        ),
        "{err}"
    );
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    if matches!(err, TemprError::ScriptTimeout { .. }) {
        assert_eq!(err.to_string(), "script ran longer than 300 ms (stopped)");
    }
    assert_eq!(
        TemprError::ScriptTimeout {
            budget: Duration::from_secs(1)
        }
        .to_string(),
        "script ran longer than 1 s (stopped)"
    );
}

#[test]
fn script_recursion_bomb_is_stopped() {
    let t = script_tempr("(r, c) => { function f(n) { return f(n + 1) + 1; } return f(0); }\n");
    let err = apply(&t, &s1(), &ctx(), &Limits::default()).unwrap_err();
    assert!(
        matches!(
            err,
            TemprError::ScriptLimit { .. } | TemprError::Script { .. }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("recursive calls"), "{err}");
}

#[test]
fn script_has_no_filesystem_or_network_globals() {
    let t = script_tempr(
        "(r, c) => ({ names: ['require', 'fetch', 'XMLHttpRequest', 'process', 'Deno', 'Bun', 'console', 'setTimeout', 'WebSocket', 'importScripts'].filter(n => typeof globalThis[n] !== 'undefined') })\n",
    );
    let out = script_of(&t)
        .run(&s1(), &ctx(), &Limits::default())
        .expect("run");
    assert_eq!(out, json!({"names": []}));
    // Dynamic import has no module loader to reach anything.
    let t = script_tempr(
        "(r, c) => { let x = 'none'; import('fs').then(() => { x = 'loaded'; }); return { x }; }\n",
    );
    let out = script_of(&t)
        .run(&s1(), &ctx(), &Limits::default())
        .expect("run");
    assert_eq!(out, json!({"x": "none"}));
}

#[test]
fn script_memory_bombs_fail_cleanly() {
    for bomb in [
        "'x'.repeat(1e9)",
        "''.padStart(1e9)",
        "new Array(1e9).fill(0)",
        "Array.from({ length: 1e9 })",
        "new Array(1e9).join('x')",
    ] {
        let t = script_tempr(&format!(
            "(r, c) => {{ const s = {bomb}; return {{ events: [] }}; }}\n"
        ));
        let err = apply(&t, &s1(), &ctx(), &Limits::default()).unwrap_err();
        assert!(matches!(err, TemprError::Script { .. }), "{bomb}: {err}");
        assert!(err.to_string().contains("RangeError"), "{bomb}: {err}");
    }
    let t = script_tempr(
        "(r, c) => ({ events: [{ note: 'x'.repeat(600000) + 'y'.repeat(600000) }] })\n",
    );
    let err = apply(&t, &s1(), &ctx(), &Limits::default()).unwrap_err();
    assert_eq!(err, TemprError::OutputTooLarge { limit: 1024 * 1024 });
}

#[test]
fn script_errors_and_helpers() {
    let t = script_tempr("(r, c) => { throw new Error('missing field results.X.value'); }\n");
    let err = apply(&t, &s1(), &ctx(), &Limits::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "script failed: Error: missing field results.X.value"
    );
    let t = script_tempr("(r, c) => undefined\n");
    assert!(matches!(
        apply(&t, &s1(), &ctx(), &Limits::default()),
        Err(TemprError::NotARequest { .. })
    ));
    let t = script_tempr(
        "(r, c) => ({ u: uid('person:PR25A137'), d: dhis2_datetime('20250514132103'), m: dhis2_period(r.observed_at) })\n",
    );
    let out = script_of(&t)
        .run(&s1(), &ctx(), &Limits::default())
        .expect("run");
    assert_eq!(
        out,
        json!({"u": "P9cYrvXGOaR", "d": "2025-05-14T13:21:03.000", "m": "202505"})
    );
}

// --- files and chains --------------------------------------------------------------------------

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write");
}

#[test]
fn bad_files_are_all_reported_with_file_name_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "unknown-field.toml",
        "name = \"a\"\nversion = 1\nkind = \"template\"\nendpoint = \"tracker\"\ntemplat = \"{}\"\n",
    );
    write(
        dir.path(),
        "bad-uid.toml",
        "name = \"b\"\nversion = 1\nkind = \"builder\"\nendpoint = \"tracker\"\n[builder.event]\nprogram = \"not-a-uid\"\nprogram_stage = \"mPdMZNWVrOQ\"\norg_unit = \"ctx.org_unit\"\noccurred_at = \"observed_at\"\nuid = \"{sample_id}\"\n",
    );
    write(
        dir.path(),
        "syntax.toml",
        "name = \"c\"\nversion = 1\nkind = \"template\"\nendpoint = \"tracker\"\ntemplate = '''\n{\n{% if %}\n}\n'''\n",
    );
    write(
        dir.path(),
        "js.toml",
        "name = \"d\"\nversion = 1\nkind = \"script\"\nendpoint = \"tracker\"\nscript = '''\n(r, c) => {\n  return {;\n}\n'''\n",
    );
    write(
        dir.path(),
        "toml-syntax.toml",
        "name = \"e\"\nversion = = 1\n",
    );
    write(dir.path(), "README.md", "not a Tempr");
    let errors = TemprSet::load_dir(dir.path()).unwrap_err();
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    let find = |file: &str| {
        text.iter()
            .find(|t| t.contains(file))
            .cloned()
            .unwrap_or_else(|| panic!("{file} not in {text:#?}"))
    };
    assert!(
        find("unknown-field.toml").contains("line 5")
            && find("unknown-field.toml").contains("templat"),
        "{text:#?}"
    );
    assert!(
        find("bad-uid.toml")
            .contains("line 6: builder.event.program: \"not-a-uid\" is not a DHIS2 UID"),
        "{text:#?}"
    );
    assert!(find("syntax.toml").contains("line 7"), "{text:#?}");
    assert!(find("js.toml").contains("line 7"), "{text:#?}");
    assert!(find("toml-syntax.toml").contains("line 2"), "{text:#?}");
    assert_eq!(errors.len(), 5, "{text:#?}");
    assert!(errors.iter().all(TemprError::is_fixable_by_user));
}

fn tiny(name: &str, next: Option<&str>) -> String {
    let next = next
        .map(|n| format!("next = \"{n}\"\n"))
        .unwrap_or_default();
    format!(
        "name = \"{name}\"\nversion = 2\nkind = \"template\"\nendpoint = \"tracker\"\n{next}template = \"{{}}\"\n"
    )
}

#[test]
fn chains_with_unknown_next_or_a_loop_are_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "a.toml", &tiny("a", Some("nope")));
    let errors = TemprSet::load_dir(dir.path()).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]
            .to_string()
            .ends_with("a.toml line 5: next: no Tempr is named \"nope\""),
        "{}",
        errors[0]
    );

    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "a.toml", &tiny("a", Some("b")));
    write(dir.path(), "b.toml", &tiny("b", Some("c")));
    write(dir.path(), "c.toml", &tiny("c", Some("a")));
    write(dir.path(), "d.toml", &tiny("d", Some("a")));
    let errors = TemprSet::load_dir(dir.path()).unwrap_err();
    assert_eq!(
        errors,
        vec![TemprError::ChainCycle {
            cycle: vec!["a".into(), "b".into(), "c".into(), "a".into()]
        }]
    );
    assert_eq!(errors[0].to_string(), "Tempr chain loops: a → b → c → a");

    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "a.toml", &tiny("a", Some("b")));
    write(dir.path(), "b.toml", &tiny("b", None));
    write(dir.path(), "b2.toml", &tiny("b", None));
    let errors = TemprSet::load_dir(dir.path()).unwrap_err();
    assert!(
        matches!(&errors[..], [TemprError::DuplicateName { name, .. }] if name == "b"),
        "{errors:?}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "a.toml", &tiny("a", Some("b")));
    write(dir.path(), "b.toml", &tiny("b", None));
    let set = TemprSet::load_dir(dir.path()).expect("valid chain");
    let heads: Vec<&str> = set
        .matching(&s1())
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(heads, ["a"]);
    assert_eq!(set.get("a").map(|t| t.version), Some(2));
}

#[test]
fn script_prototype_tricks_do_not_leak_into_the_next_run_or_lift_the_limits() {
    // One Tempr run pollutes the built-ins and tries to unwrap the output guard…
    let evil = script_tempr(
        "(r, c) => { Object.prototype.polluted = 'yes'; String.prototype.repeat = function () { return 'unbounded'; };\n\
         Array.prototype.fill = null; globalThis.leak = 42; return { events: [] }; }\n",
    );
    script_of(&evil)
        .run(&s1(), &ctx(), &Limits::default())
        .expect("run");
    // …the next run sees clean built-ins, and the repeat guard still holds.
    let probe = script_tempr(
        "(r, c) => ({ polluted: ({}).polluted === undefined, leak: typeof leak, fill: typeof [].fill })\n",
    );
    let out = script_of(&probe)
        .run(&s1(), &ctx(), &Limits::default())
        .expect("run");
    assert_eq!(
        out,
        json!({"polluted": true, "leak": "undefined", "fill": "function"})
    );
    let bomb = script_tempr("(r, c) => { const s = 'x'.repeat(1e9); return { events: [] }; }\n");
    let err = apply(&bomb, &s1(), &ctx(), &Limits::default()).unwrap_err();
    assert!(err.to_string().contains("RangeError"), "{err}");
    // Reaching the host through constructors gives nothing either.
    let ctor = script_tempr(
        "(r, c) => { const F = (() => {}).constructor; const g = F('return this')(); \n\
         return { names: ['require', 'process', 'fetch'].filter(n => typeof g[n] !== 'undefined') }; }\n",
    );
    let out = script_of(&ctor)
        .run(&s1(), &ctx(), &Limits::default())
        .expect("run");
    assert_eq!(out, json!({"names": []}));
}

/// Runs of one Tempr share its warm context (issue 18), so what one record's run does to the
/// built-ins, the globals or its own closures must not reach the next record's.
#[test]
fn script_runs_on_one_warm_context_see_no_state_from_earlier_runs() {
    let t = script_tempr(
        "(() => { let n = 0; return (r, c) => {\n\
           const seen = { n: ++n, polluted: ({}).polluted === undefined, leak: typeof leak,\n\
             fill: typeof [].fill, json: typeof JSON.stringify, other: typeof globalThis.other };\n\
           Object.prototype.polluted = 'yes'; Array.prototype.fill = null; JSON = null;\n\
           leak = 42; globalThis.other = 1; return seen; }; })()\n",
    );
    let clean = json!({"n": 1, "polluted": true, "leak": "undefined", "fill": "function",
                       "json": "function", "other": "undefined"});
    for run in 1..=3 {
        let out = script_of(&t)
            .run(&s1(), &ctx(), &Limits::default())
            .unwrap_or_else(|e| panic!("run {run}: {e}"));
        assert_eq!(out, clean, "run {run}");
    }
    // In strict mode the same pollution is an error naming what was refused.
    let strict = script_tempr(
        "(r, c) => { 'use strict'; Object.prototype.polluted = 'yes'; return { events: [] }; }\n",
    );
    let err = apply(&strict, &s1(), &ctx(), &Limits::default()).unwrap_err();
    assert!(matches!(err, TemprError::Script { .. }), "{err}");
    assert!(err.to_string().contains("TypeError"), "{err}");
}

/// A run stopped by its limits leaves the Tempr usable: the next record runs on a new context.
#[test]
fn script_after_a_stopped_run_the_next_record_still_renders() {
    let t = script_tempr(
        "(r, c) => { if (c.spin) { for (;;) {} } return { events: [{ n: r.sample_id }] }; }\n",
    );
    let limits = Limits {
        script_budget: Duration::from_millis(500),
        script_loop_limit: 100_000,
        ..Limits::default()
    };
    let mut spin = ctx();
    spin["spin"] = json!(true);
    for _ in 0..2 {
        let err = script_of(&t).run(&s1(), &spin, &limits).unwrap_err();
        assert!(
            matches!(
                err,
                TemprError::ScriptLimit { .. } | TemprError::ScriptTimeout { .. }
            ),
            "{err}"
        );
        let out = script_of(&t)
            .run(&s1(), &ctx(), &limits)
            .expect("the next record");
        assert_eq!(out["events"][0]["n"], s1()["sample_id"]);
    }
}

#[test]
fn template_cannot_read_files_or_reach_python_style_internals() {
    for (what, body) in [
        ("include", "{% include '/etc/passwd' %}"),
        ("import", "{% import '../../config/pocketgate.toml' as c %}"),
        ("extends", "{% extends 'pocketgate.toml' %}"),
    ] {
        let t = template_tempr(body, "tracker");
        let err = apply(&t, &s1(), &ctx(), &Limits::default()).unwrap_err();
        assert!(matches!(err, TemprError::Template { .. }), "{what}: {err}");
        assert!(!err.to_string().contains("root:"), "{what}: {err}");
    }
    // Jinja sandbox-escape classics have no attribute to walk in minijinja.
    let t = template_tempr(
        "{\"events\": [], \"x\": {{ (record.__class__ ~ ''.__class__ ~ range.__globals__)|tojson }}}",
        "tracker",
    );
    match apply(&t, &s1(), &ctx(), &Limits::default()) {
        Err(e) => assert!(matches!(e, TemprError::Template { .. }), "{e}"),
        Ok(out) => panic!("rendered: {out:?}"),
    }
}

// --- Mustache Temprs ---------------------------------------------------------------------------

#[test]
fn lab_event_mustache_example_sends_s1_with_its_partial_and_lab_events_uid() {
    let req = run("lab-event-mustache", &s1(), &ctx()).expect("lab-event-mustache");
    assert_eq!(req.endpoint, Endpoint::Tracker);
    let ev = &req.body["events"][0];
    // The same seed as lab-event.toml's: both name the same test run.
    assert_eq!(
        ev["event"],
        deterministic_uid("gx-1:PR25A137:2025-05-14T13:21:03:LabRsltStg1")
    );
    assert_eq!(ev["orgUnit"], "DiszpKrYNg8");
    assert_eq!(ev["occurredAt"], "2025-05-14T13:21:03.000");
    assert_eq!(
        data_values(ev),
        dv(&[
            ("LabTestNm01", "Xpert MTB-RIF Ultra"),
            ("LabMtbTxt01", "NOT DETECTED"),
            ("LabSmplId01", "PR25A137"),
            ("LabAnlzSn01", "806149"),
        ])
    );
}

#[test]
fn mustache_tracker_event_is_the_request_the_equivalent_minijinja_template_makes() {
    let mustache = mustache_tempr(
        r#"{"events": [{
  "event": "{{#uid}}{{{record.source}}}:{{{record.sample_id}}}:{{{record.observed_at}}}:LabRsltStg1{{/uid}}",
  "program": "LabGxEvnt01",
  "programStage": "LabRsltStg1",
  "orgUnit": "{{{ctx.org_unit}}}",
  "occurredAt": "{{#dhis2_datetime}}{{{record.observed_at}}}{{/dhis2_datetime}}",
  "status": "COMPLETED",
  "dataValues": [
    {{#record.results.MTB-RIF/Xpert/MTB}}
    {"dataElement": "LabTestNm01", "value": "{{{test_name}}}"},
    {"dataElement": "LabMtbTxt01", "value": "{{{value}}}"},
    {{/record.results.MTB-RIF/Xpert/MTB}}
    {{^record.patient_id}}
    {"dataElement": "LabNoPtId01", "value": "true"},
    {{/record.patient_id}}
    {"dataElement": "LabSmplId01", "value": "{{{record.sample_id}}}"}
  ]
}]}
"#,
        "",
    );
    let jinja = template_tempr(
        r#"{%- set mtb = record.results["MTB-RIF/Xpert/MTB"] -%}
{"events": [{
  "event": {{ uid(record.source ~ ":" ~ record.sample_id ~ ":" ~ record.observed_at ~ ":LabRsltStg1")|tojson }},
  "program": "LabGxEvnt01",
  "programStage": "LabRsltStg1",
  "orgUnit": {{ ctx.org_unit|tojson }},
  "occurredAt": {{ record.observed_at|dhis2_datetime|tojson }},
  "status": "COMPLETED",
  "dataValues": [
    {"dataElement": "LabTestNm01", "value": {{ mtb.test_name|tojson }}},
    {"dataElement": "LabMtbTxt01", "value": {{ mtb.value|tojson }}},
    {%- if not record.patient_id %}
    {"dataElement": "LabNoPtId01", "value": "true"},
    {%- endif %}
    {"dataElement": "LabSmplId01", "value": {{ record.sample_id|tojson }}}
  ]
}]}
"#,
        "tracker",
    );
    let limits = Limits::default();
    let from_mustache = apply(&mustache, &s1(), &ctx(), &limits).expect("mustache");
    let from_jinja = apply(&jinja, &s1(), &ctx(), &limits).expect("minijinja");
    assert_eq!(from_mustache, from_jinja);
    let ev = &from_mustache.body["events"][0];
    assert_eq!(ev["occurredAt"], "2025-05-14T13:21:03.000");
    assert_eq!(
        data_values(ev).len(),
        4,
        "S1 has no patient id: LabNoPtId01 is sent"
    );
}

#[test]
fn open_interop_style_triple_mustache_writes_values_as_they_are() {
    // Open Interop templates write `"{{{field}}}"` inside JSON strings and `{{{n}}}` for numbers;
    // double braces escape HTML like mustache.js (`/` → `&#x2F;`).
    let t = text_tempr(
        "mustache",
        r#"{"dataSet": "LabMonthly1",
 "period": "{{#dhis2_period}}{{{record.observed_at}}}{{/dhis2_period}}",
 "orgUnit": "{{{ctx.org_unit}}}",
 "dataValues": [
  {"dataElement": "GxRecId001", "value": {{{record.id}}}, "comment": "{{{record.results.MTB-RIF/Xpert/MTB.test_code}}}"},
  {"dataElement": "GxRecId002", "value": "{{record.results.MTB-RIF/Xpert/MTB.test_code}}"}
 ]}
"#,
        "data_value_sets",
        "",
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let req = apply(&t, &s1(), &ctx(), &Limits::default()).expect("render");
    assert_eq!(req.endpoint, Endpoint::DataValueSets);
    assert_eq!(req.body["period"], "202505");
    let values = &req.body["dataValues"];
    assert_eq!(values[0]["value"], 12, "a JSON number, unquoted");
    assert_eq!(values[0]["comment"], "MTB-RIF/Xpert/MTB");
    assert_eq!(values[1]["value"], "MTB-RIF&#x2F;Xpert&#x2F;MTB");
}

#[test]
fn mustache_limits_each_stop_with_their_own_error() {
    let list =
        "{\"events\": [\n{{#record.observations}}{{test_code}}{{/record.observations}}\n]}\n";
    let t = mustache_tempr(list, "");
    // 84 observations × (1 item + 1 tag) steps > 50.
    let few_steps = Limits {
        template_fuel: 50,
        ..Limits::default()
    };
    let e = apply(&t, &s1(), &ctx(), &few_steps).unwrap_err();
    assert_eq!(
        e,
        TemprError::MustacheSteps {
            budget: 50,
            partial: None,
            line: 2
        }
    );
    let small = Limits {
        max_output_bytes: 100,
        ..Limits::default()
    };
    let e = apply(&t, &s1(), &ctx(), &small).unwrap_err();
    assert_eq!(e, TemprError::OutputTooLarge { limit: 100 });

    let t = mustache_tempr("{{> again}}\n", "[partials]\nagain = \"{{> again}}\"\n");
    let e = apply(&t, &s1(), &ctx(), &Limits::default()).unwrap_err();
    assert_eq!(
        e,
        TemprError::MustacheDepth {
            max: 64,
            partial: Some("again".into()),
            line: 1
        }
    );
    assert_eq!(
        e.to_string(),
        "mustache partial \"again\" line 1: sections and partials nested deeper than 64: does a partial include itself?"
    );
    assert!(e.is_fixable_by_user() && !e.is_record_problem());

    let huge = format!("{{\"events\": []}}{}\n", " ".repeat(64 * 1024));
    let errors = text_tempr("mustache", &huge, "tracker", "").unwrap_err();
    assert_eq!(
        errors[0].to_string(),
        "t.toml: template: 65551 bytes, more than the 65536 allowed"
    );
}

#[test]
fn mustache_escape_json_keeps_an_analyzers_free_text_valid() {
    // A comment with quotes, a backslash and a line break, as a result comment can carry.
    let mut obs = s1_observations();
    obs[0].value = Some("NOT DETECTED \"see note\"\\\nrepeat".into());
    let record = record_view(12, "gx-1", "2026-11-22T10:00:00Z", &obs);
    let template = concat!(
        "{\"events\": [{\"program\": \"LabGxEvnt01\", \"programStage\": \"LabRsltStg1\", ",
        "\"orgUnit\": \"{{ctx.org_unit}}\", \"occurredAt\": \"2025-05-14T13:21:03.000\", ",
        "\"dataValues\": [{\"dataElement\": \"LabMtbTxt01\", ",
        "\"value\": \"{{#record.observations.0}}{{value}}{{/record.observations.0}}\"}]}]}\n"
    );
    let t = text_tempr("mustache", template, "tracker", "escape = \"json\"\n")
        .unwrap_or_else(|e| panic!("{e:?}"));
    let req = apply(&t, &record, &ctx(), &Limits::default()).expect("valid JSON");
    assert_eq!(
        req.body["events"][0]["dataValues"][0]["value"],
        obs[0].value.as_deref().unwrap()
    );
    // mustache.js's default (HTML) keeps quotes out but turns the line break into raw JSON
    // control text: the render fails with its reason, the record stays stored.
    let html = mustache_tempr(template, "");
    let e = apply(&html, &record, &ctx(), &Limits::default()).unwrap_err();
    assert!(e.to_string().contains("not JSON"), "{e}");
    // Only Mustache Temprs have `escape`.
    let e = text_tempr("template", "{}\n", "tracker", "escape = \"json\"\n").unwrap_err();
    assert_eq!(
        e[0].to_string(),
        "t.toml line 8: escape: only kind = \"mustache\" has escape (a template Tempr writes |tojson); remove it"
    );
    let e = text_tempr("mustache", "{}\n", "tracker", "escape = \"xml\"\n").unwrap_err();
    assert_eq!(
        e[0].to_string(),
        "t.toml line 8: unknown variant `xml`, expected `html` or `json`"
    );
}

#[test]
fn mustache_syntax_errors_are_load_errors_with_the_file_line() {
    // Template line 1 is file line 6 (the line after `template =`).
    let e = text_tempr("mustache", "{\n{{#record.results}}\n}\n", "tracker", "").unwrap_err();
    assert_eq!(
        e[0].to_string(),
        "t.toml line 7: template: section {{#record.results}} is never closed"
    );
    let e = text_tempr("mustache", "{\n\n{{#a}}{{/b}}\n", "tracker", "").unwrap_err();
    assert_eq!(
        e[0].to_string(),
        "t.toml line 8: template: {{/b}} closes {{#a}} (opened on line 3)"
    );
    // A partial's error names its field and file line; the template's is reported with it.
    let rest = "[partials]\nrow = \"\"\"\nok\n{{name\n\"\"\"\n";
    let e = text_tempr("mustache", "{{=<%>=}}\n", "tracker", rest).unwrap_err();
    let text: Vec<String> = e.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        text,
        [
            "t.toml line 6: template: bad delimiters `{{=<%>=}}`: give two, separated by a space, like {{=<% %>=}}",
            "t.toml line 11: partials.row: unclosed tag `{{name`: no `}}` after it",
        ]
    );
    // Partials belong to kind mustache only.
    let e = text_tempr("template", "{}\n", "tracker", "[partials]\nrow = \"x\"\n").unwrap_err();
    assert_eq!(
        e[0].to_string(),
        "t.toml line 8: partials: only kind = \"mustache\" has partials; remove them"
    );
    // template_file: the error names that file and its own line.
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "ev.mustache", "{\n  {{^x}}\n}\n");
    write(
        dir.path(),
        "ev.toml",
        "name = \"ev\"\nversion = 1\nkind = \"mustache\"\nendpoint = \"tracker\"\ntemplate_file = \"ev.mustache\"\n",
    );
    let e = TemprSet::load_dir(dir.path()).unwrap_err();
    let shown = e[0].to_string();
    assert!(
        shown.ends_with("ev.mustache line 2: template: section {{^x}} is never closed"),
        "{shown}"
    );
}
