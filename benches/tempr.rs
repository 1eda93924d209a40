//! `cargo bench --bench tempr`: Tempr throughput through the library (`pocketgate::tempr`), one
//! thread, so records/s is per core. The shipped example Temprs (config/temprs/) applied to the
//! real GeneXpert S1 capture (tests/fixtures/astm/s01…expected.json): `lab-event` (builder),
//! `tb-lab-stage` (minijinja template), `tracker-lab-event` (JavaScript, boa) and the chain
//! `tracker-person` (builder) → `tracker-lab-event` (script, fed the first step's request as
//! `ctx.previous_request`, as the pipeline does). The cost of a chained Tempr = the chain's time
//! per record minus its head's.
//!
//! Knobs (env): BENCH_RUNS (default 5), BENCH_TEMPR_MS per Tempr and run (default 1500).
//! Smoke variant (under `cargo test`): 1 run of 50 ms each.

#[path = "common.rs"]
mod common;

use common::{Section, env_usize, full_run, repo_root, stats};
use pocketgate::record::Observation;
use pocketgate::tempr::{Limits, Tempr, TemprSet, apply, record_view};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn s1_record() -> Arc<Value> {
    let path = repo_root().join("tests/fixtures/astm/s01-genexpert-mtb-rif-ultra.expected.json");
    let messages: Vec<Value> = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let obs: Vec<Observation> =
        serde_json::from_value(messages[0]["observations"].clone()).unwrap();
    record_view(12, "gx-1", "2026-11-22T10:00:00Z", &obs)
}

fn ctx(previous_request: Value) -> Value {
    json!({"gateway": {"name": "bench"}, "org_unit": "DiszpKrYNg8", "previous": null,
           "previous_request": previous_request})
}

/// Apply `steps` in order as a chain (each step sees the request before it); records/s over `d`.
fn rate(steps: &[&Tempr], record: &Arc<Value>, limits: &Limits, d: Duration) -> f64 {
    let once = || {
        let mut previous = Value::Null;
        for t in steps {
            let req = apply(t, record, &ctx(previous), limits)
                .unwrap_or_else(|e| panic!("{}: {e}", t.name));
            previous = serde_json::to_value(&req).unwrap();
        }
    };
    once(); // warm: template compiled, script thread pool started
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed() < d {
        once();
        n += 1;
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

fn main() {
    let full = full_run();
    let runs = if full { env_usize("BENCH_RUNS", 5) } else { 1 };
    let d = Duration::from_millis(if full {
        env_usize("BENCH_TEMPR_MS", 1500) as u64
    } else {
        50
    });
    let set = TemprSet::load_dir(&repo_root().join("config/temprs"))
        .unwrap_or_else(|e| panic!("config/temprs does not load: {e:?}"));
    let get = |name: &str| set.get(name).unwrap_or_else(|| panic!("no Tempr {name}"));
    let record = s1_record();
    let limits = Limits::default();
    let cases: Vec<(&str, &str, Vec<&Tempr>)> = vec![
        ("builder", "builder `lab-event`", vec![get("lab-event")]),
        (
            "template",
            "minijinja template `tb-lab-stage`",
            vec![get("tb-lab-stage")],
        ),
        (
            "script",
            "JavaScript (boa) `tracker-lab-event`",
            vec![get("tracker-lab-event")],
        ),
        (
            "chain_head",
            "builder `tracker-person` (chain head alone)",
            vec![get("tracker-person")],
        ),
        (
            "chain",
            "chain `tracker-person` → `tracker-lab-event`",
            set.chain(get("tracker-person")),
        ),
    ];
    let mut per_case: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for r in 0..runs {
        for (i, (_, name, steps)) in cases.iter().enumerate() {
            let v = rate(steps, &record, &limits, d);
            eprintln!("run {}: {name}: {v:.0} records/s", r + 1);
            per_case[i].push(v);
        }
    }
    let mut s = Section::new("tempr", "Temprs: records/s per core");
    s.note(&format!("one thread applying the shipped example Temprs (config/temprs/) to the real GeneXpert S1 record ({} observations: an MTB/RIF Ultra result with every probe, Ct and end point; ~80 KB as a record view) for {} ms per Tempr and run, output checked to be a DHIS2 request each time (`tempr::apply`, as the render stage calls it); a script run goes through its sandbox thread with the default limits{}", record["observations"].as_array().map_or(0, Vec::len), d.as_millis(), if full { "" } else { " (smoke: debug build, not a figure to quote)" }));
    for ((key, name, _), v) in cases.iter().zip(&per_case) {
        s.row(
            &format!("{key}_records_per_s"),
            name,
            "records/s",
            v.clone(),
        );
    }
    // The cost of the chained step: chain time per record minus its head's.
    let head = &per_case[3];
    let chain = &per_case[4];
    let extra_us: Vec<f64> = head
        .iter()
        .zip(chain)
        .map(|(h, c)| (1e6 / c) - (1e6 / h))
        .collect();
    s.row(
        "chained_step_us",
        "cost of the chained step (chain − head)",
        "µs/record",
        extra_us,
    );
    let (_, builder, _) = stats(per_case[0].clone());
    let (_, script, _) = stats(per_case[2].clone());
    s.note(&format!(
        "a JavaScript Tempr costs {:.1}× a builder Tempr per record",
        builder / script
    ));
    s.finish();
}
