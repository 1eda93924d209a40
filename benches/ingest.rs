//! `just bench`: ASTM over TCP from 8 concurrent simulated analyzers into the release binary,
//! every message durably committed (WAL, synchronous=FULL) before its final ACK; plus the
//! binary's size and idle RSS. Writes benches/results/<date>-<machine>.md.
//!
//! Knobs (env): BENCH_RUNS (default 5), BENCH_MESSAGES per analyzer (default 500),
//! BENCH_BIN (default target/release/pocketgate).
//!
//! Without `--bench` (that is, under `cargo test --all-targets`, as CI runs it) this is the smoke
//! variant: one short run against the test build of the binary, printed, no results file.

#[path = "common.rs"]
mod common;

use common::{env_usize, free_addrs, machine, proc_kib, stats};
use pocketgate::sim::{self, SimOptions};
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ANALYZERS: usize = 8;

struct Gateway {
    child: Child,
    _dir: tempfile::TempDir,
    addrs: Vec<SocketAddr>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(bin: &Path, sources: usize) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let addrs = free_addrs(sources);
    let mut cfg = format!(
        "[gateway]\nname = \"bench\"\ndata_dir = \"{}\"\n",
        dir.path().join("data").display()
    );
    for (i, a) in addrs.iter().enumerate() {
        write!(
            cfg,
            "\n[[sources]]\nid = \"an{i}\"\nprotocol = \"astm\"\ntransport = \"tcp-server\"\nlisten = \"{a}\"\n"
        )
        .unwrap();
    }
    let path = dir.path().join("bench.toml");
    std::fs::write(&path, cfg).unwrap();
    let child = Command::new(bin)
        .args(["run", "--config"])
        .arg(&path)
        .env("POCKETGATE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e} (run `cargo build --release` first)", bin.display()));
    for a in &addrs {
        let until = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(a).is_err() {
            assert!(Instant::now() < until, "gateway did not listen on {a}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Gateway {
        child,
        _dir: dir,
        addrs,
    }
}

/// A realistic small result message (Afinion-style), distinct per analyzer and index.
fn message(analyzer: usize, i: usize) -> Vec<u8> {
    format!(
        "H|\\^&|||Afinion 2^^A2-{analyzer:04}|||||||P|1|20240101120000\r\
         P|1\r\
         O|1|B{analyzer}-{i:06}||^^^HbA1c|R\r\
         R|1|^^^HbA1c|{}.{}|%|4.0-6.0|N||F||||20240101120000\r\
         L|1|N\r",
        5 + i % 7,
        i % 10
    )
    .into_bytes()
}

struct Run {
    msgs_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    peak_rss_kib: u64,
}

fn one_run(rt: &tokio::runtime::Runtime, bin: &Path, per_analyzer: usize) -> Run {
    let gw = start(bin, ANALYZERS);
    let pid = gw.child.id();
    let t0 = Instant::now();
    let latencies: Vec<Vec<Duration>> = rt.block_on(async {
        let mut tasks = Vec::new();
        for (a, addr) in gw.addrs.iter().copied().enumerate() {
            tasks.push(tokio::spawn(async move {
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                s.set_nodelay(true).unwrap();
                let mut lat = Vec::with_capacity(per_analyzer);
                for i in 0..per_analyzer {
                    // One transfer per message, timed from ENQ to the final ACK (EOT included).
                    let t = Instant::now();
                    let r = sim::play(&mut s, &[message(a, i)], &SimOptions::default())
                        .await
                        .unwrap();
                    assert_eq!(r.acked, vec![0]);
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.unwrap());
        }
        all
    });
    let elapsed = t0.elapsed();
    let peak = proc_kib(pid, "VmHWM:");
    let mut lat: Vec<Duration> = latencies.into_iter().flatten().collect();
    lat.sort();
    let pct =
        |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;
    Run {
        msgs_per_s: (ANALYZERS * per_analyzer) as f64 / elapsed.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        peak_rss_kib: peak,
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test` does not: then run the smoke variant.
    let full = std::env::args().any(|a| a == "--bench");
    let runs = if full { env_usize("BENCH_RUNS", 5) } else { 1 };
    let per_analyzer = if full {
        env_usize("BENCH_MESSAGES", 500)
    } else {
        20
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = match std::env::var("BENCH_BIN") {
        Ok(b) => PathBuf::from(b),
        Err(_) if full => root.join("target/release/pocketgate"),
        Err(_) => PathBuf::from(env!("CARGO_BIN_EXE_pocketgate")),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();

    // Idle RSS: a started gateway with 8 sources, nothing connected, after 2 s.
    let mut idle = Vec::new();
    for _ in 0..runs {
        let gw = start(&bin, ANALYZERS);
        std::thread::sleep(Duration::from_secs(2));
        idle.push(proc_kib(gw.child.id(), "VmRSS:") as f64 / 1024.0);
    }
    let mut results = Vec::new();
    for r in 0..runs {
        let run = one_run(&rt, &bin, per_analyzer);
        eprintln!(
            "run {}: {:.0} msg/s, p50 {:.2} ms, p99 {:.2} ms, peak RSS {} KiB",
            r + 1,
            run.msgs_per_s,
            run.p50_ms,
            run.p99_ms,
            run.peak_rss_kib
        );
        results.push(run);
    }
    let size_mib = std::fs::metadata(&bin).map(|m| m.len()).unwrap_or(0) as f64 / (1024.0 * 1024.0);
    let (host, cpu) = machine();
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let date = Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "undated".into());

    let row = |name: &str, unit: &str, v: Vec<f64>| {
        let (min, med, max) = stats(v);
        format!("| {name} | {med:.2} | {min:.2} | {max:.2} | {unit} |\n")
    };
    let kind = if full {
        "x86-64 release: opt-level s, LTO, strip, panic=abort"
    } else {
        "smoke run of the test build: not a figure to quote"
    };
    let mut md = String::new();
    writeln!(md, "# Ingest benchmark — {date}\n").unwrap();
    writeln!(
        md,
        "- machine: `{host}`, {cpu}, {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    )
    .unwrap();
    writeln!(
        md,
        "- commit: `{commit}`; binary: `{}` ({size_mib:.2} MiB, {kind})",
        bin.strip_prefix(&root).unwrap_or(&bin).display()
    )
    .unwrap();
    writeln!(md, "- workload: {ANALYZERS} simulated analyzers on 8 TCP server sources, {per_analyzer} messages each per run (one ENQ…EOT transfer per 5-record Afinion-style message); every message committed to SQLite (WAL, synchronous=FULL) before its final ACK; latency = ENQ to final ACK seen by the analyzer").unwrap();
    writeln!(
        md,
        "- {runs} runs; median with min/max. Numbers from different machines are not comparable.\n"
    )
    .unwrap();
    md.push_str("| figure | median | min | max | unit |\n|---|---|---|---|---|\n");
    md.push_str(&row(
        "messages/s, 8 analyzers, durable commit before ACK",
        "msg/s",
        results.iter().map(|r| r.msgs_per_s).collect(),
    ));
    md.push_str(&row(
        "latency p50 (ENQ → final ACK)",
        "ms",
        results.iter().map(|r| r.p50_ms).collect(),
    ));
    md.push_str(&row(
        "latency p99",
        "ms",
        results.iter().map(|r| r.p99_ms).collect(),
    ));
    md.push_str(&row(
        "peak RSS under load",
        "MiB",
        results
            .iter()
            .map(|r| r.peak_rss_kib as f64 / 1024.0)
            .collect(),
    ));
    md.push_str(&row("idle RSS (8 sources, 2 s after start)", "MiB", idle));
    md.push_str(&format!(
        "| release binary size (x86-64) | {size_mib:.2} | | | MiB |\n"
    ));
    print!("{md}");
    if !full {
        return;
    }
    let dir = root.join("benches/results");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(format!("{date}-{host}.md"));
    std::fs::write(&out, md).unwrap();
    eprintln!("wrote {}", out.display());
}
