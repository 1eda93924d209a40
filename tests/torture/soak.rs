//! Soak: steady traffic for a fixed time (a week of a busy district lab compressed into minutes)
//! with the gateway's RSS, open files and database size sampled every second. Memory and file
//! handles must level off; the database may only grow by what the stored results explain.

use crate::analyzers::{Analyzer, Wire};
use crate::proc_kib;
use crate::support::*;
use std::time::{Duration, Instant};

/// Results per second over all four analyzers.
const RATE: u64 = 20;

#[derive(Debug, Default)]
pub struct Report {
    pub seconds: u64,
    pub results: usize,
    pub delivered: usize,
    /// RSS (KiB) after the first 10 % of the run (warm), at the end, and the highest sample.
    pub rss_warm_kib: u64,
    pub rss_end_kib: u64,
    pub rss_max_kib: u64,
    pub fds_warm: usize,
    pub fds_end: usize,
    pub db_bytes_end: u64,
    pub wal_bytes_end: u64,
}

impl Report {
    /// RSS may not grow by more than 8 MiB after warm-up; file handles by more than 4.
    pub fn passed(&self) -> bool {
        self.delivered == self.results
            && self.rss_end_kib <= self.rss_warm_kib + 8 * 1024
            && self.fds_end <= self.fds_warm + 4
    }

    pub fn markdown(&self) -> String {
        let mib = |k: u64| k as f64 / 1024.0;
        format!(
            "## Soak ({} s at {RATE} results/s: 2 ASTM, 1 HL7, 1 HTTP analyzer, DHIS2 sync on)\n\n\
             | figure | value |\n|---|---|\n\
             | results sent / delivered | {} / {} |\n\
             | RSS warm → end (max) | {:.1} → {:.1} MiB ({:.1}) |\n\
             | open files warm → end | {} → {} |\n\
             | database at the end | {:.2} MiB ({:.0} bytes per result: raw bytes, parsed observations, outbox request, DHIS2 answer) |\n\
             | WAL at the end (reused after checkpoints, not growing with the data) | {:.2} MiB |\n",
            self.seconds,
            self.results,
            self.delivered,
            mib(self.rss_warm_kib),
            mib(self.rss_end_kib),
            mib(self.rss_max_kib),
            self.fds_warm,
            self.fds_end,
            self.db_bytes_end as f64 / 1048576.0,
            self.db_bytes_end as f64 / self.results.max(1) as f64,
            self.wal_bytes_end as f64 / 1048576.0,
        )
    }
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

fn file_bytes(path: &str) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

pub async fn run(seconds: u64) -> Report {
    let sim = Dhis2Sim::start("2.41.3");
    let temprs = crate::hba1c_temprs();
    let addrs = free_addrs(4);
    let gw = Gateway::start(&format!(
        "{}\n{}\n\
         [[sources]]\nid = \"hl7-1\"\nprotocol = \"hl7\"\ntransport = \"tcp-server\"\nlisten = \"{}\"\n\n\
         [[sources]]\nid = \"http-1\"\nprotocol = \"http\"\ntransport = \"tcp-server\"\nlisten = \"{}\"\n\n{}",
        tcp_source("astm-1", addrs[0], "30s"),
        tcp_source("astm-2", addrs[1], "30s"),
        addrs[2],
        addrs[3],
        dhis2_block(&sim, temprs.path(), "OuClinicA01"),
    ));
    for a in &addrs {
        gw.wait_listening(*a);
    }
    let pid = gw.pid().expect("gateway running");
    let per = (seconds * RATE / 4) as usize;
    let gap = Duration::from_millis(4000 / RATE);
    let analyzers = [
        Analyzer::new("astm-1", Wire::Astm, addrs[0], per),
        Analyzer::new("astm-2", Wire::Astm, addrs[1], per),
        Analyzer::new("hl7-1", Wire::Hl7, addrs[2], per),
        Analyzer::new("http-1", Wire::Http, addrs[3], per),
    ];
    let tasks: Vec<_> = analyzers
        .iter()
        .cloned()
        .map(|a| tokio::spawn(a.run(gap, Duration::from_secs(seconds * 2 + 60))))
        .collect();
    let mut r = Report {
        seconds,
        results: per * 4,
        ..Report::default()
    };
    let started = Instant::now();
    let warm_at = Duration::from_secs(seconds.div_ceil(10).max(2));
    while tasks.iter().any(|t| !t.is_finished()) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = proc_kib(pid, "VmRSS:");
        r.rss_max_kib = r.rss_max_kib.max(rss);
        if r.rss_warm_kib == 0 && started.elapsed() >= warm_at {
            r.rss_warm_kib = rss;
            r.fds_warm = open_files(pid);
        }
    }
    for t in tasks {
        t.await.expect("analyzer");
    }
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let delivered = statuses(&gw)
            .iter()
            .filter(|(s, _)| s == "delivered")
            .count();
        r.delivered = delivered;
        if delivered >= r.results || Instant::now() > until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    r.rss_end_kib = proc_kib(pid, "VmRSS:");
    r.fds_end = open_files(pid);
    r.db_bytes_end = file_bytes(&gw.db().display().to_string());
    r.wal_bytes_end = file_bytes(&format!("{}-wal", gw.db().display()));
    r
}
