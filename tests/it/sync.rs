//! Stored results → Temprs → the DHIS2 test server (`dhis2-sim`, a real process), exactly once.

use crate::support::*;
use pocketgate::sim::{self, SimOptions};
use pocketgate::tempr::deterministic_uid;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;
use tokio::net::TcpStream;

const OU: &str = "OuClinicA01";

/// The shipped example Temprs, with the TB lab stage switched on (the test enrols the case).
fn shipped_temprs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/temprs");
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let text = if path.file_name().is_some_and(|n| n == "tb-lab-stage.toml") {
            text.replace("enabled = false", "enabled = true")
        } else {
            text
        };
        std::fs::write(dir.path().join(path.file_name().unwrap()), text).unwrap();
    }
    dir
}

/// A template Tempr for the numbered HbA1c messages: one event in the lab-results event program.
const HBA1C_TEMPR: &str = include_str!("../fixtures/temprs/hba1c-event.toml");

/// A script Tempr that never returns (for source "loop" only).
const LOOP_TEMPR: &str = r#"
name = "spins"
version = 3
kind = "script"
endpoint = "tracker"
script = '''(record, ctx) => { while (true) {} }'''

[match]
sources = "loop"
"#;

fn temprs_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in files {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    dir
}

async fn play(addr: std::net::SocketAddr, msgs: &[Vec<u8>]) -> sim::SimReport {
    let mut s = TcpStream::connect(addr).await.unwrap();
    sim::play(&mut s, msgs, &SimOptions::default())
        .await
        .unwrap()
}

fn events_of(sim: &Dhis2Sim, program: &str) -> Vec<Value> {
    sim.events()
        .into_iter()
        .filter(|e| e["program"] == program)
        .collect()
}

fn value_of(event: &Value, de: &str) -> Option<String> {
    event["dataValues"]
        .as_array()?
        .iter()
        .find(|d| d["dataElement"] == de)
        .and_then(|d| d["value"].as_str().map(str::to_owned))
}

fn sample_of(event: &Value) -> String {
    value_of(event, "LabSmplId01").unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn genexpert_result_reaches_dhis2_once_through_builder_template_and_script_chain() {
    let sim = Dhis2Sim::start("2.41.3");
    // Clinic staff enrolled the patient in the TB programme; the lab stage Tempr adds the result.
    let person = "PR25A137"; // S1 has no patient id: the Temprs key the person by sample id
    let te = deterministic_uid(&format!("person:{OU}:{person}"));
    let en = deterministic_uid(&format!("enrollment:Lt6P15ps7f6:{OU}:{person}"));
    let r = sim.post_tracker(json!({"trackedEntities": [{
        "trackedEntity": te, "trackedEntityType": "MCPQUTHX1Ze", "orgUnit": OU,
        "enrollments": [{"enrollment": en, "program": "Lt6P15ps7f6", "orgUnit": OU,
                          "enrolledAt": "2025-05-14T00:00:00.000", "occurredAt": "2025-05-14T00:00:00.000"}]}]}));
    assert_eq!(r["status"], "OK", "{r}");

    let temprs = shipped_temprs();
    let addr = free_addr();
    let gw = Gateway::start(&format!(
        "{}\n{}",
        tcp_source("gx-1", addr, "30s"),
        dhis2_block(&sim, temprs.path(), OU)
    ));
    gw.wait_listening(addr);
    let s1 = sim::messages_from_capture(&fixture("s01-genexpert-mtb-rif-ultra.astm"));
    assert_eq!(play(addr, &s1).await.acked, vec![0]);
    let settled = wait_settled(&gw, 1, Duration::from_secs(60));
    assert_eq!(settled[0].0, "delivered", "{settled:?}\n{}", gw.log());

    // builder → event program
    let ev = events_of(&sim, "LabGxEvnt01");
    assert_eq!(ev.len(), 1, "{:#}", sim.objects());
    assert_eq!(
        value_of(&ev[0], "LabMtbRes01").as_deref(),
        Some("NOT_DETECTED")
    );
    assert_eq!(sample_of(&ev[0]), "PR25A137");
    // template → WHO TB case-surveillance lab stage, Ultra data elements
    let tb = events_of(&sim, "Lt6P15ps7f6");
    assert_eq!(tb.len(), 1);
    assert_eq!(tb[0]["programStage"], "mPdMZNWVrOQ");
    assert_eq!(tb[0]["enrollment"], en.as_str());
    assert_eq!(
        value_of(&tb[0], "lmXKhJA5nk1").as_deref(),
        Some("NOT_DETECTED")
    );
    // builder chain head (tracked entity + enrollment) → script step posting into that enrollment
    let objects = sim.objects();
    let enrollments: Vec<&Value> = objects["enrollments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["program"] == "LabTrkProg1")
        .collect();
    assert_eq!(enrollments.len(), 1);
    let trk = events_of(&sim, "LabTrkProg1");
    assert_eq!(trk.len(), 1);
    assert_eq!(trk[0]["enrollment"], enrollments[0]["enrollment"]);
    assert_eq!(
        objects["trackedEntities"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["trackedEntity"] == te.as_str())
            .count(),
        1,
        "one person, not one per Tempr"
    );

    // The analyzer sends the same result again: stored once, nothing new in DHIS2.
    assert_eq!(play(addr, &s1).await.acked, vec![0]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sim.events().len(), 3, "{:#}", sim.objects());
}

#[tokio::test(flavor = "multi_thread")]
async fn offline_backlog_drains_in_order_without_duplicates_when_the_link_returns() {
    let mut sim = Dhis2Sim::down("2.40.2");
    let temprs = temprs_dir(&[("hba1c.toml", HBA1C_TEMPR)]);
    let addr = free_addr();
    let gw = Gateway::start(&format!(
        "{}\n{}",
        tcp_source("afinion", addr, "30s"),
        dhis2_block(&sim, temprs.path(), OU)
    ));
    gw.wait_listening(addr);
    let msgs = numbered_messages(30);
    assert_eq!(play(addr, &msgs).await.acked.len(), 30);
    // No link: everything is rendered and waits in the outbox.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let waiting = statuses(&gw);
    assert_eq!(waiting.len(), 30);
    assert!(waiting.iter().all(|(s, _)| s == "rendered"), "{waiting:?}");

    sim.spawn();
    let settled = wait_settled(&gw, 30, Duration::from_secs(60));
    assert!(settled.iter().all(|(s, _)| s == "delivered"), "{settled:?}");
    let events = events_of(&sim, "LabRslts001");
    assert_eq!(events.len(), 30, "each result exactly once");
    let uids: HashSet<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(uids.len(), 30);
    // Accepted in the order the analyzer sent them.
    let values: Vec<String> = events
        .iter()
        .map(|e| value_of(e, "LabValue001").unwrap_or_default())
        .collect();
    let expected: Vec<String> = (0..30)
        .map(|i| format!("{}.{}", 5 + i % 7, i % 10))
        .collect();
    assert_eq!(
        values,
        expected,
        "{}",
        gw.log()
            .lines()
            .filter(|l| l.contains("DHIS2") || l.contains("batch"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_sync_at_random_points_leaves_exactly_one_copy_of_each_event() {
    let sim = Dhis2Sim::start("2.42.1");
    // Every import is committed, then answered late: the gateway is often killed after DHIS2
    // stored a batch and before it heard so (the classic duplicate trigger).
    sim.fault(json!({"delay_ms": 150, "commit": true}));
    let temprs = temprs_dir(&[("hba1c.toml", HBA1C_TEMPR)]);
    let addr = free_addr();
    let mut gw = Gateway::start(&format!(
        "{}\n{}batch_tracked_entities = 7\n",
        tcp_source("afinion", addr, "30s"),
        dhis2_block(&sim, temprs.path(), OU)
    ));
    gw.wait_listening(addr);
    let msgs = numbered_messages(120);
    assert_eq!(play(addr, &msgs).await.acked.len(), 120);

    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    for _round in 0..50 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        gw.kill9();
        gw.spawn();
        tokio::time::sleep(Duration::from_millis(20 + seed % 250)).await;
    }
    gw.kill9();
    http_json("DELETE", sim.addr, "/__sim/faults", None);
    gw.spawn();
    let settled = wait_settled(&gw, 120, Duration::from_secs(90));
    assert!(settled.iter().all(|(s, _)| s == "delivered"), "{settled:?}");
    let events = events_of(&sim, "LabRslts001");
    let uids: HashSet<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(events.len(), 120, "DHIS2 holds each event exactly once");
    assert_eq!(uids.len(), 120);
    assert_eq!(gw.reader().integrity_check().unwrap(), "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_records_get_a_readable_error_and_the_rest_flow() {
    let sim = Dhis2Sim::start("2.41.3");
    let temprs = temprs_dir(&[("hba1c.toml", HBA1C_TEMPR), ("spins.toml", LOOP_TEMPR)]);
    let [good, looping] = free_addrs(2)[..] else {
        unreachable!()
    };
    let gw = Gateway::start(&format!(
        "{}\n{}\n{}",
        tcp_source("afinion", good, "30s"),
        tcp_source("loop", looping, "30s"),
        dhis2_block(&sim, temprs.path(), OU)
    ));
    gw.wait_listening(good);
    gw.wait_listening(looping);
    let mut msgs = numbered_messages(3);
    // DHIS2 refuses a non-number in a NUMBER data element (E1302): rejected, kept, explained.
    msgs.insert(
        1,
        b"H|\\^&|||Afinion 2^^A2-1234|||||||P|1|20240102120000\rP|1\rO|1|BAD-1||^^^HbA1c|R\r\
          R|1|^^^HbA1c|see comment|%||||F||||20240101120000\rL|1|N\r"
            .to_vec(),
    );
    assert_eq!(play(good, &msgs).await.acked.len(), 4);
    let spin = numbered_messages(1);
    assert_eq!(play(looping, &spin).await.acked.len(), 1);

    let settled = wait_settled(&gw, 5, Duration::from_secs(60));
    let by_status = |s: &str| settled.iter().filter(|(st, _)| st == s).count();
    assert_eq!(by_status("delivered"), 3, "{settled:?}");
    assert_eq!(by_status("render_failed"), 2, "{settled:?}");
    // The metadata cache fetched from DHIS2 catches the bad value before it is queued.
    let (_, bad) = &settled[1];
    let bad = bad.as_deref().unwrap_or_default();
    assert!(
        bad.contains("LabValue001") && bad.contains("see comment") && bad.contains("E1302"),
        "names the data element, the value and DHIS2's code: {bad}"
    );
    let failed = settled
        .iter()
        .filter_map(|(s, e)| (s == "render_failed").then_some(e.as_deref().unwrap_or_default()))
        .find(|e| e.contains("spins"))
        .expect("the looping Tempr fails");
    assert!(
        failed.contains("spins v3"),
        "names the Tempr and version: {failed}"
    );

    // Someone deletes a delivered event in DHIS2; re-rendering it (e.g. after a Tempr fix) is then
    // refused by DHIS2 (E1082: a deleted UID cannot be reused). The record keeps DHIS2's reason.
    let deleted = deterministic_uid("afinion:S00000:LabStage001");
    http_json(
        "POST",
        sim.addr,
        "/__sim/delete-event",
        Some(json!({"uid": deleted})),
    );
    let out = std::process::Command::new(BIN)
        .args(["rerender", "--status", "delivered", "--config"])
        .arg(&gw.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let until = std::time::Instant::now() + Duration::from_secs(30);
    let rejected = loop {
        let s = statuses(&gw);
        if let Some((_, why)) = s.iter().find(|(st, _)| st == "rejected") {
            break why.clone().unwrap_or_default();
        }
        assert!(std::time::Instant::now() < until, "{s:?}\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        rejected.contains("E1082") && rejected.contains(&deleted),
        "{rejected}"
    );
    assert_eq!(
        events_of(&sim, "LabRslts001").len(),
        2,
        "the deleted one is gone"
    );
}

/// The same HbA1c event through the legacy `/api/events` API (DHIS2 2.36–2.41).
const LEGACY_TEMPR: &str = r#"
name = "hba1c-legacy"
version = 1
kind = "template"
endpoint = "events"
template = '''
{% set r = record.results["HbA1c"] %}
{"events": [{
  "event": {{ uid(record.source ~ ":" ~ record.sample_id ~ ":legacy")|tojson }},
  "program": "LabRslts001",
  "programStage": "LabStage001",
  "orgUnit": {{ ctx.org_unit|tojson }},
  "eventDate": {{ r.observed_at|dhis2_datetime|tojson }},
  "status": "COMPLETED",
  "dataValues": [
    {"dataElement": "LabTestCode", "value": "HBA1C"},
    {"dataElement": "LabResult01", "value": "NEGATIVE"},
    {"dataElement": "LabValue001", "value": {{ r.value|tojson }}}
  ]
}]}
'''

[match]
test_codes = "HbA1c"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn legacy_events_go_to_api_events_on_2_41_and_are_refused_with_a_reason_on_2_42() {
    for (version, delivered) in [("2.41.3", true), ("2.42.1", false)] {
        let sim = Dhis2Sim::start(version);
        let temprs = temprs_dir(&[("legacy.toml", LEGACY_TEMPR)]);
        let addr = free_addr();
        let gw = Gateway::start(&format!(
            "{}\n{}",
            tcp_source("afinion", addr, "30s"),
            dhis2_block(&sim, temprs.path(), OU)
        ));
        gw.wait_listening(addr);
        assert_eq!(play(addr, &numbered_messages(2)).await.acked.len(), 2);
        let settled = wait_settled(&gw, 2, Duration::from_secs(60));
        if delivered {
            assert!(
                settled.iter().all(|(s, _)| s == "delivered"),
                "{version}: {settled:?}"
            );
            assert_eq!(events_of(&sim, "LabRslts001").len(), 2);
        } else {
            assert!(
                settled.iter().all(|(s, _)| s == "rejected"),
                "{version}: {settled:?}"
            );
            let why = settled[0].1.as_deref().unwrap_or_default();
            assert!(why.contains("/api/events"), "{why}");
            assert!(sim.events().is_empty());
        }
    }
}
