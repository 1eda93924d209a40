//! `cargo bench --bench ingest`: results from 8 concurrent connections into the release binary,
//! every message durably committed (WAL, synchronous=FULL) before its reply — ASTM over TCP
//! (8 analyzers, one E1381 transfer per message), HL7 v2 over MLLP (reply = the HL7 ACK) and
//! HTTP JSON (`POST /results`, reply = 201); messages/s, latency from the first byte sent to
//! the reply (p50/p99), peak RSS; plus the binaries' sizes and the idle RSS.
//!
//! Knobs (env): BENCH_RUNS (default 5), BENCH_MESSAGES per connection (default 500),
//! BENCH_BIN (default target/release/pocketgate).
//!
//! Without `--bench` (under `cargo test`, as CI runs it) this is the smoke variant: one short
//! run per input against the test build; the section goes to target/bench-results-smoke/.

#[path = "clients.rs"]
mod clients;
#[path = "common.rs"]
mod common;

use clients::Input;
use common::{Section, bin_of, env_usize, free_addrs, full_run, pct_ms, proc_kib, repo_root};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CONNECTIONS: usize = 8;
/// Where `just cross` puts the static aarch64 build.
const AARCH64_BIN: &str = "target/aarch64-unknown-linux-gnu/release/pocketgate";

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

/// The gateway with `sources` listeners of `input` (HTTP: one listener; it serves them all).
fn start(bin: &Path, input: Input) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let sources = if input == Input::Json { 1 } else { CONNECTIONS };
    let addrs = free_addrs(sources);
    let mut cfg = format!(
        "[gateway]\nname = \"bench\"\ndata_dir = \"{}\"\n\n[limits]\nmax_connections = {}\n",
        dir.path().join("data").display(),
        CONNECTIONS * 2
    );
    let protocol = match input {
        Input::Astm => "astm",
        Input::Hl7 => "hl7",
        Input::Json => "http",
    };
    for (i, a) in addrs.iter().enumerate() {
        write!(
            cfg,
            "\n[[sources]]\nid = \"an{i}\"\nprotocol = \"{protocol}\"\ntransport = \"tcp-server\"\nlisten = \"{a}\"\n"
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
        common::wait_listening(*a, "gateway");
    }
    Gateway {
        child,
        _dir: dir,
        addrs,
    }
}

struct Run {
    msgs_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    peak_rss_kib: u64,
}

fn one_run(rt: &tokio::runtime::Runtime, bin: &Path, input: Input, per_conn: usize) -> Run {
    let gw = start(bin, input);
    let pid = gw.child.id();
    let t0 = Instant::now();
    let lat: Vec<Duration> = rt.block_on(async {
        let mut tasks = Vec::new();
        for c in 0..CONNECTIONS {
            // ASTM: one source per analyzer; HTTP: all connections to the one listener.
            let addr = gw.addrs[c % gw.addrs.len()];
            let tag = format!("B{c}-");
            tasks.push(tokio::spawn(async move {
                clients::drive(input, addr, 1, per_conn, &tag).await
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all.sort();
        all
    });
    let elapsed = t0.elapsed();
    Run {
        msgs_per_s: (CONNECTIONS * per_conn) as f64 / elapsed.as_secs_f64(),
        p50_ms: pct_ms(&lat, 0.50),
        p99_ms: pct_ms(&lat, 0.99),
        peak_rss_kib: proc_kib(pid, "VmHWM:"),
    }
}

fn mib_of_file(path: &Path) -> Option<f64> {
    std::fs::metadata(path)
        .ok()
        .map(|m| m.len() as f64 / (1024.0 * 1024.0))
}

fn main() {
    let full = full_run();
    let runs = if full { env_usize("BENCH_RUNS", 5) } else { 1 };
    let per_conn = if full {
        env_usize("BENCH_MESSAGES", 500)
    } else {
        20
    };
    let root = repo_root();
    let bin = bin_of(
        "BENCH_BIN",
        "target/release/pocketgate",
        env!("CARGO_BIN_EXE_pocketgate"),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut s = Section::new("ingest", "Ingest: durable commit before every reply");
    s.note(&format!(
        "gateway `{}` ({})",
        bin.strip_prefix(&root).unwrap_or(&bin).display(),
        common::build_kind(&bin)
    ));
    s.note(&format!("workload per run and input: {CONNECTIONS} connections × {per_conn} messages, each connection waits for the reply before sending the next; ASTM: 8 sources, one ENQ…EOT transfer per 5-record Afinion-style message; HL7: 8 MLLP sources, one ORU^R01 per message, reply = ACK (AA); HTTP: one source, 8 keep-alive connections, one canonical-JSON observation per POST, reply = 201. Every message committed to SQLite (WAL, synchronous=FULL) before its reply; latency = first byte sent → last byte of the reply, at the client; each run has its own fresh gateway and database"));

    // Idle RSS: a started gateway with 8 ASTM sources, nothing connected, after 2 s.
    let mut idle = Vec::new();
    for _ in 0..runs {
        let gw = start(&bin, Input::Astm);
        std::thread::sleep(Duration::from_secs(2));
        idle.push(proc_kib(gw.child.id(), "VmRSS:") as f64 / 1024.0);
    }
    for input in [Input::Astm, Input::Hl7, Input::Json] {
        let mut results = Vec::new();
        for r in 0..runs {
            let run = one_run(&rt, &bin, input, per_conn);
            eprintln!(
                "{} run {}: {:.0} msg/s, p50 {:.2} ms, p99 {:.2} ms, peak RSS {} KiB",
                input.name(),
                r + 1,
                run.msgs_per_s,
                run.p50_ms,
                run.p99_ms,
                run.peak_rss_kib
            );
            results.push(run);
        }
        let key = match input {
            Input::Astm => "astm",
            Input::Hl7 => "hl7",
            Input::Json => "http_json",
        };
        let name = input.name();
        let per = |f: fn(&Run) -> f64| results.iter().map(f).collect::<Vec<f64>>();
        s.row(
            &format!("{key}_msgs_per_s"),
            &format!("{name}: messages/s, 8 connections, durable commit before reply"),
            "msg/s",
            per(|r| r.msgs_per_s),
        );
        s.row(
            &format!("{key}_p50_ms"),
            &format!("{name}: latency p50 (send → reply)"),
            "ms",
            per(|r| r.p50_ms),
        );
        s.row(
            &format!("{key}_p99_ms"),
            &format!("{name}: latency p99"),
            "ms",
            per(|r| r.p99_ms),
        );
        s.row(
            &format!("{key}_peak_rss_mib"),
            &format!("{name}: peak RSS under load (VmHWM)"),
            "MiB",
            per(|r| r.peak_rss_kib as f64 / 1024.0),
        );
    }
    s.row(
        "idle_rss_mib",
        "idle RSS (8 ASTM sources, 2 s after start)",
        "MiB",
        idle,
    );
    if let Some(mib) = mib_of_file(&bin) {
        s.row(
            "binary_x86_64_mib",
            "binary size (x86-64, the one measured)",
            "MiB",
            vec![mib],
        );
    }
    match mib_of_file(&root.join(AARCH64_BIN)) {
        Some(mib) => {
            s.row("binary_aarch64_mib", "binary size (static aarch64, `just cross`)", "MiB", vec![mib]);
        }
        None => s.note(&format!("aarch64 binary size: not measured: aarch64 binary missing ({AARCH64_BIN}; built by `just cross`)")),
    }
    s.finish();
}
