//! Crash safety: SIGKILL at random points while four analyzers send and the outbox syncs.

use crate::analyzers::{self, Analyzer, Outcome, Wire};
use crate::support::*;
use pocketgate::tempr::deterministic_uid;
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub struct Settings {
    pub rounds: usize,
    pub messages_per_analyzer: usize,
    pub seed: u64,
}

/// The figures of one run.
#[derive(Debug, Default)]
pub struct Report {
    pub kills: usize,
    pub analyzers: usize,
    pub results: usize,
    pub acked: usize,
    pub attempts: usize,
    pub unacked_attempts: usize,
    /// Acknowledged results missing from the store (must be empty).
    pub lost: Vec<String>,
    /// Results stored more than once (must be empty).
    pub duplicated: Vec<String>,
    /// Results an analyzer never got acknowledged although it kept trying (must be empty).
    pub never_acked: Vec<String>,
    pub events_expected: usize,
    pub events_in_dhis2: usize,
    /// Expected events DHIS2 does not hold, and events it holds more than once.
    pub dhis2_missing: Vec<String>,
    pub dhis2_duplicated: Vec<String>,
    /// Stored messages not `delivered` at the end (status, error).
    pub undelivered: Vec<String>,
    pub integrity: String,
    pub seconds: f64,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated.is_empty()
            && self.never_acked.is_empty()
            && self.dhis2_missing.is_empty()
            && self.dhis2_duplicated.is_empty()
            && self.undelivered.is_empty()
            && self.events_in_dhis2 == self.events_expected
            && self.integrity == "ok"
    }

    pub fn markdown(&self, s: &Settings) -> String {
        let list = |v: &[String]| {
            if v.is_empty() {
                "0".to_string()
            } else {
                format!("{} ({})", v.len(), v.join(", "))
            }
        };
        format!(
            "## Crash safety (SIGKILL)\n\n\
             | figure | value |\n|---|---|\n\
             | kills (SIGKILL at random points) | {} |\n\
             | analyzers (2 ASTM, 1 HL7/MLLP, 1 HTTP) | {} |\n\
             | results sent | {} |\n\
             | results acknowledged | {} |\n\
             | sends, retransmissions included | {} |\n\
             | sends without acknowledgement (gateway down or killed mid-message) | {} |\n\
             | lost (acknowledged, not stored) | {} |\n\
             | duplicated in the store | {} |\n\
             | never acknowledged | {} |\n\
             | DHIS2 events expected / held | {} / {} |\n\
             | DHIS2 events missing | {} |\n\
             | DHIS2 events duplicated | {} |\n\
             | stored but not delivered at the end | {} |\n\
             | PRAGMA integrity_check | {} |\n\
             | wall time | {:.0} s |\n\
             | seed | {:#x} |\n",
            self.kills,
            self.analyzers,
            self.results,
            self.acked,
            self.attempts,
            self.unacked_attempts,
            list(&self.lost),
            list(&self.duplicated),
            list(&self.never_acked),
            self.events_expected,
            self.events_in_dhis2,
            list(&self.dhis2_missing),
            list(&self.dhis2_duplicated),
            list(&self.undelivered),
            self.integrity,
            self.seconds,
            s.seed,
        )
    }
}

/// xorshift64: reproducible kill points from `TORTURE_SEED`.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

pub async fn run(s: &Settings) -> Report {
    let started = Instant::now();
    let mut rng = Rng(s.seed.max(1));
    let sim = Dhis2Sim::start("2.41.3");
    // Every import is committed and then answered late: many kills land after DHIS2 stored a
    // batch and before the gateway heard so (the classic duplicate trigger).
    sim.fault(json!({"delay_ms": 120, "commit": true}));
    let temprs = crate::hba1c_temprs();

    let addrs = free_addrs(4);
    let analyzers = vec![
        Analyzer::new("astm-1", Wire::Astm, addrs[0], s.messages_per_analyzer),
        Analyzer::new("astm-2", Wire::Astm, addrs[1], s.messages_per_analyzer),
        Analyzer::new("hl7-1", Wire::Hl7, addrs[2], s.messages_per_analyzer),
        Analyzer::new("http-1", Wire::Http, addrs[3], s.messages_per_analyzer),
    ];
    let config = format!(
        "{}\n{}\n\
         [[sources]]\nid = \"hl7-1\"\nprotocol = \"hl7\"\ntransport = \"tcp-server\"\nlisten = \"{}\"\n\n\
         [[sources]]\nid = \"http-1\"\nprotocol = \"http\"\ntransport = \"tcp-server\"\nlisten = \"{}\"\n\n\
         {}batch_tracked_entities = 5\n",
        tcp_source("astm-1", addrs[0], "30s"),
        tcp_source("astm-2", addrs[1], "30s"),
        addrs[2],
        addrs[3],
        dhis2_block(&sim, temprs.path(), "OuClinicA01"),
    );
    let mut gw = Gateway::start(&config);
    for a in &addrs {
        gw.wait_listening(*a);
    }

    // Spread the results over the whole kill phase (a round lasts ~370 ms on average), so that
    // kills land in the middle of transfers as well as during rendering and sync.
    let gap = Duration::from_millis(370 * s.rounds as u64 / s.messages_per_analyzer.max(1) as u64);
    let tasks: Vec<_> = analyzers
        .iter()
        .cloned()
        .map(|a| tokio::spawn(a.run(gap, Duration::from_secs(600))))
        .collect();
    let mut report = Report {
        analyzers: analyzers.len(),
        results: analyzers.len() * s.messages_per_analyzer,
        ..Report::default()
    };
    for _ in 0..s.rounds {
        tokio::time::sleep(Duration::from_millis(40 + rng.below(500))).await;
        gw.kill9();
        report.kills += 1;
        tokio::time::sleep(Duration::from_millis(rng.below(150))).await;
        gw.spawn();
    }
    let mut outcomes: Vec<Outcome> = Vec::new();
    for t in tasks {
        outcomes.push(t.await.expect("analyzer task"));
    }
    http_json("DELETE", sim.addr, "/__sim/faults", None);

    let statuses = wait_until_delivered(&gw, report.results, Duration::from_secs(240));
    report.undelivered = statuses
        .into_iter()
        .filter(|(st, _)| st != "delivered")
        .map(|(st, err)| format!("{st}: {}", err.unwrap_or_default()))
        .collect();
    check_store(&gw, &analyzers, &outcomes, &mut report);
    check_dhis2(&sim, &analyzers, &mut report);
    report.integrity = gw
        .reader()
        .integrity_check()
        .unwrap_or_else(|e| e.to_string());
    report.seconds = started.elapsed().as_secs_f64();
    if !report.passed() {
        eprintln!("gateway log (tail):\n{}", gw.log_tail(60));
    }
    report
}

/// Wait until nothing waits to be rendered or delivered (or the deadline passes).
fn wait_until_delivered(
    gw: &Gateway,
    expected: usize,
    within: Duration,
) -> Vec<(String, Option<String>)> {
    let until = Instant::now() + within;
    loop {
        let s = std::panic::catch_unwind(|| statuses(gw)).unwrap_or_default();
        let settled = s.len() >= expected
            && s.iter()
                .all(|(st, _)| !matches!(st.as_str(), "received" | "rendered"));
        if settled || Instant::now() > until {
            return s;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn check_store(gw: &Gateway, analyzers: &[Analyzer], outcomes: &[Outcome], r: &mut Report) {
    for (a, o) in analyzers.iter().zip(outcomes) {
        r.acked += o.acked.len();
        r.attempts += o.attempts;
        r.unacked_attempts += o.unacked_attempts;
        let stored = texts(gw, &a.source);
        for sample in &a.samples {
            let marker = analyzers::marker(a.wire, &sample.id);
            let copies: usize = stored
                .iter()
                .map(|t| analyzers::occurrences(t, &marker))
                .sum();
            let name = format!("{}/{}", a.source, sample.id);
            let acked = o.acked.contains(&sample.id);
            if !acked {
                r.never_acked.push(name.clone());
            }
            if acked && copies == 0 {
                r.lost.push(name);
            } else if copies > 1 {
                r.duplicated.push(format!("{name} ×{copies}"));
            }
        }
    }
}

fn check_dhis2(sim: &Dhis2Sim, analyzers: &[Analyzer], r: &mut Report) {
    let mut held: HashMap<String, usize> = HashMap::new();
    for e in sim.events() {
        if let Some(uid) = e["event"].as_str() {
            *held.entry(uid.to_string()).or_default() += 1;
        }
        r.events_in_dhis2 += 1;
    }
    for a in analyzers {
        for sample in &a.samples {
            r.events_expected += 1;
            let uid = deterministic_uid(&format!("{}:{}:LabStage001", a.source, sample.id));
            match held.get(&uid).copied().unwrap_or(0) {
                0 => r.dhis2_missing.push(format!("{}/{}", a.source, sample.id)),
                1 => {}
                n => r
                    .dhis2_duplicated
                    .push(format!("{}/{} ×{n}", a.source, sample.id)),
            }
        }
    }
}
