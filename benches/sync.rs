//! `cargo bench --bench sync`: an offline backlog drains into the DHIS2 test server. The release
//! gateway stores and renders N distinct HbA1c results while `dhis2-sim` is down (ASTM over TCP
//! from 8 concurrent connections, every message durably committed before its ACK). That backlog
//! is built once and the gateway killed (a power cut); each run starts a gateway on a copy of its
//! data directory (a box rebooted while offline), then the sim starts and the clock runs until
//! every message is `delivered`. Reports seconds, records/s,
//! requests and HTTP body bytes per record (from `GET /__sim/stats`), and the gateway's RSS
//! during the drain, and how far it returns to idle afterwards. Its section goes into the
//! results file `benches/report.rs` assembles.
//!
//! Knobs (env): BENCH_RUNS (default 5), BENCH_RECORDS (default 100000),
//! BENCH_BIN (default target/release/pocketgate), BENCH_SIM_BIN (default target/release/dhis2-sim).
//!
//! Without `--bench` (that is, under `cargo test --all-targets`, as CI runs it) this is the smoke
//! variant: one run of 500 records against the test builds of both binaries; its section goes
//! to target/bench-results-smoke/, never to benches/results/.

#[path = "common.rs"]
mod common;

use common::{
    Dhis2Sim, SIM_TOKEN, Section, bin_of, env_usize, free_addrs, full_run, get_json, proc_kib,
    repo_root, stats, wait_listening,
};
use pocketgate::sim::{self, SimOptions};
use pocketgate::store::Reader;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Concurrent analyzer connections while the backlog is built.
const CONNECTIONS: usize = 8;
/// Records per `POST /api/tracker` (DHIS2's own tracker benchmark posts ~500 objects).
const BATCH: usize = 500;
const TOKEN_ENV: &str = "PG_BENCH_DHIS2_TOKEN";
const OU: &str = "OuClinicA01";
/// How often the database and the gateway's RSS are sampled.
const POLL: Duration = Duration::from_millis(200);
/// "Flat memory": from 10 % delivered to the end of the drain the gateway's RSS may grow by at
/// most this (the first batches warm up the allocator, SQLite's page cache and the HTTP client).
/// 4 MiB over 90,000 records is < 50 B per record; keeping the delivered requests in memory
/// would cost their ~360 B each.
const FLAT_MIB: f64 = 4.0;
const TARGET_S: f64 = 60.0;
/// How long after the drain the settled RSS is read.
const SETTLE: Duration = Duration::from_secs(5);
/// "Near idle" after the drain: within this of the idle RSS before the backlog.
const NEAR_IDLE_MIB: f64 = 2.0;

/// The template Tempr of tests/it/sync.rs: one event in the lab-results event program.
const HBA1C_TEMPR: &str = include_str!("../tests/fixtures/temprs/hba1c-event.toml");

struct Gateway {
    child: Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl Gateway {
    /// A gateway on a fresh data directory, or on a copy of `seed` (a stopped gateway's).
    fn start(bin: &Path, addr: SocketAddr, sim: SocketAddr, seed: Option<&Path>) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        if let Some(seed) = seed {
            copy_dir(seed, &dir.path().join("data"));
        }
        let temprs = dir.path().join("temprs");
        std::fs::create_dir(&temprs).unwrap();
        std::fs::write(temprs.join("hba1c.toml"), HBA1C_TEMPR).unwrap();
        let cfg = format!(
            "[gateway]\nname = \"bench\"\ndata_dir = \"{data}\"\n\n\
             [limits]\nmax_connections = {CONNECTIONS}\n\n\
             [[sources]]\nid = \"afinion\"\nprotocol = \"astm\"\ntransport = \"tcp-server\"\n\
             listen = \"{addr}\"\nreceive_timeout = \"30s\"\n\n\
             [dhis2]\nurl = \"http://{sim}\"\ntoken_env = \"{TOKEN_ENV}\"\ntemprs = \"{temprs}\"\n\
             org_unit = \"{OU}\"\nretry_min = \"200ms\"\nretry_max = \"1s\"\ntimeout = \"30s\"\n\
             batch_tracked_entities = {BATCH}\n",
            data = dir.path().join("data").display(),
            temprs = temprs.display(),
        );
        let path = dir.path().join("bench.toml");
        std::fs::write(&path, cfg).unwrap();
        let log = std::fs::File::create(dir.path().join("gateway.log")).unwrap();
        let child = Command::new(bin)
            .args(["run", "--config"])
            .arg(&path)
            .env("POCKETGATE_LOG", "warn")
            .env(TOKEN_ENV, SIM_TOKEN)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (run `cargo build --release --bins` first)",
                    bin.display()
                )
            });
        wait_listening(addr, "gateway");
        Gateway { child, dir, addr }
    }

    /// The last lines of the gateway's log, for failure messages.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Message count per status.
    fn statuses(&self, reader: &mut Option<Reader>) -> BTreeMap<String, usize> {
        if reader.is_none() {
            *reader = Reader::open(&self.dir.path().join("data/pocketgate.db")).ok();
        }
        let Some(r) = reader.as_ref() else {
            return BTreeMap::new();
        };
        let mut stmt = match r
            .conn()
            .prepare("SELECT status, count(*) FROM messages GROUP BY status")
        {
            Ok(s) => s,
            // Not migrated yet.
            Err(_) => return BTreeMap::new(),
        };
        stmt.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as usize))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    /// Poll until `status` holds all `n` messages (`each` sees how many it holds at every poll);
    /// panic on a terminal failure or after `within`.
    fn wait_all(&self, status: &str, n: usize, within: Duration, mut each: impl FnMut(usize)) {
        let until = Instant::now() + within;
        let mut reader = None;
        loop {
            let s = self.statuses(&mut reader);
            let done = s.get(status).copied().unwrap_or(0);
            each(done);
            if done == n {
                return;
            }
            let failed: Vec<_> = s
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "received" | "rendered" | "delivered"))
                .collect();
            assert!(
                failed.is_empty(),
                "messages failed: {s:?}\n{}",
                self.log_tail()
            );
            assert!(
                Instant::now() < until,
                "not all {n} messages {status} after {within:?}: {s:?}\n{}",
                self.log_tail()
            );
            std::thread::sleep(POLL);
        }
    }
}

/// Copies a directory tree (the data directory of a stopped gateway).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A small HbA1c result message (Afinion-style), distinct per index.
fn message(i: usize) -> Vec<u8> {
    format!(
        "H|\\^&|||Afinion 2^^A2-1234|||||||P|1|20240101120000\r\
         P|1\r\
         O|1|S{i:06}||^^^HbA1c|R\r\
         R|1|^^^HbA1c|{}.{}|%||||F||||20240101120000\r\
         L|1|N\r",
        5 + i % 7,
        i % 10
    )
    .into_bytes()
}

struct Run {
    drain_s: f64,
    requests: u64,
    tracker_posts: u64,
    bytes_in: u64,
    bytes_out: u64,
    rss_start_kib: u64,
    /// At the first poll that saw ≥ 10 % delivered.
    rss_tenth_kib: u64,
    rss_peak_kib: u64,
    rss_after_kib: u64,
    /// The backlog run's idle RSS (2 s after its start, before the first message).
    rss_idle_kib: u64,
    /// `SETTLE` after the last delivery.
    rss_settled_kib: u64,
    hwm_kib: u64,
}

/// The backlog every run drains, built once: what an offline gateway holds after N results.
struct Backlog {
    /// The stopped gateway (its directory holds the data the runs copy).
    gw: Gateway,
    ingest_s: f64,
    rendered_s: f64,
    /// 2 s after start, before the first message.
    rss_idle_kib: u64,
}

fn build_backlog(rt: &tokio::runtime::Runtime, bin: &Path, n: usize) -> Backlog {
    let [gw_addr, sim_addr] = free_addrs(2)[..] else {
        unreachable!()
    };
    // No sim at sim_addr: the gateway's DHIS2 is down while the backlog builds.
    let mut gw = Gateway::start(bin, gw_addr, sim_addr, None);
    let pid = gw.child.id();
    // Idle: started, nothing received yet (DHIS2 down: the link probe is the only activity).
    std::thread::sleep(Duration::from_secs(2));
    let rss_idle_kib = proc_kib(pid, "VmRSS:");
    let within = Duration::from_secs(60 + n as u64 / 100);

    // N distinct results over 8 connections, each durably stored before its ACK.
    let msgs: Vec<Vec<u8>> = (0..n).map(message).collect();
    let t0 = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for chunk in msgs.chunks(n.div_ceil(CONNECTIONS)) {
            let chunk = chunk.to_vec();
            let addr = gw.addr;
            tasks.push(tokio::spawn(async move {
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                s.set_nodelay(true).unwrap();
                let r = sim::play(&mut s, &chunk, &SimOptions::default())
                    .await
                    .unwrap();
                assert_eq!(r.acked.len(), chunk.len(), "failed: {:?}", r.failed);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let ingest_s = t0.elapsed().as_secs_f64();
    gw.wait_all("rendered", n, within, |_| {});
    let rendered_s = t0.elapsed().as_secs_f64();
    // The power goes: SIGKILL, nothing flushed on the way out (WAL recovery on the next start).
    gw.child.kill().unwrap();
    gw.child.wait().unwrap();
    Backlog {
        gw,
        ingest_s,
        rendered_s,
        rss_idle_kib,
    }
}

fn one_run(bin: &Path, sim_bin: &Path, n: usize, backlog: &Backlog) -> Run {
    let [gw_addr, sim_addr] = free_addrs(2)[..] else {
        unreachable!()
    };
    // The sim is not started yet: the gateway boots offline on a copy of the backlog.
    let mut dhis2 = Dhis2Sim::new(sim_bin, sim_addr);
    let seed = backlog.gw.dir.path().join("data");
    let gw = Gateway::start(bin, gw_addr, sim_addr, Some(&seed));
    let pid = gw.child.id();
    let within = Duration::from_secs(60 + n as u64 / 100);
    gw.wait_all("rendered", n, within, |_| {});
    std::thread::sleep(Duration::from_secs(1));

    // 2. The link comes back: the clock runs from the sim's first accept to the last delivery.
    let rss_start_kib = proc_kib(pid, "VmRSS:");
    dhis2.spawn();
    let t1 = Instant::now();
    let mut rss_peak_kib = rss_start_kib;
    let mut rss_tenth_kib = None;
    gw.wait_all("delivered", n, within, |delivered| {
        let rss = proc_kib(pid, "VmRSS:");
        rss_peak_kib = rss_peak_kib.max(rss);
        if rss_tenth_kib.is_none() && delivered * 10 >= n {
            rss_tenth_kib = Some(rss);
        }
    });
    let drain_s = t1.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(1));
    let rss_after_kib = proc_kib(pid, "VmRSS:");
    // "Returns near idle": the backlog is gone; what the process still holds after a quiet spell.
    std::thread::sleep(SETTLE);
    let rss_settled_kib = proc_kib(pid, "VmRSS:");
    let hwm_kib = proc_kib(pid, "VmHWM:");

    // 3. What went over the wire, and what DHIS2 holds: each result exactly once.
    let stats = get_json(sim_addr, "/__sim/stats");
    let num = |v: &Value| v.as_u64().unwrap_or(0);
    let objects = get_json(sim_addr, "/__sim/objects");
    let events = objects["events"].as_array().cloned().unwrap_or_default();
    let uids: HashSet<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(events.len(), n, "the sim holds each event exactly once");
    assert_eq!(uids.len(), n);
    Run {
        drain_s,
        requests: num(&stats["totalRequests"]),
        tracker_posts: num(&stats["requestsByRoute"]["POST /api/tracker"]),
        bytes_in: num(&stats["bytesIn"]),
        bytes_out: num(&stats["bytesOut"]),
        rss_start_kib,
        rss_tenth_kib: rss_tenth_kib.unwrap_or(rss_peak_kib),
        rss_peak_kib,
        rss_after_kib,
        rss_idle_kib: backlog.rss_idle_kib,
        rss_settled_kib,
        hwm_kib,
    }
}

fn main() {
    let full = full_run();
    let runs = if full { env_usize("BENCH_RUNS", 5) } else { 1 };
    let n = if full {
        env_usize("BENCH_RECORDS", 100_000)
    } else {
        500
    };
    let root = repo_root();
    let bin = bin_of(
        "BENCH_BIN",
        "target/release/pocketgate",
        env!("CARGO_BIN_EXE_pocketgate"),
    );
    let sim_bin = bin_of(
        "BENCH_SIM_BIN",
        "target/release/dhis2-sim",
        env!("CARGO_BIN_EXE_dhis2-sim"),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();

    let backlog = build_backlog(&rt, &bin, n);
    eprintln!(
        "backlog: {n} messages ACKed in {:.1} s, rendered at {:.1} s; idle RSS {:.1} MiB",
        backlog.ingest_s,
        backlog.rendered_s,
        mib(backlog.rss_idle_kib)
    );
    let mut results = Vec::new();
    for r in 0..runs {
        let run = one_run(&bin, &sim_bin, n, &backlog);
        eprintln!(
            "run {}: drain {:.2} s ({:.0} records/s), \
             {} requests ({} POST /api/tracker), {:.0} B in / {:.0} B out per record, \
             RSS idle {:.1}, {:.1} → {:.1} at 10 % → peak {:.1} → after {:.1} → settled {:.1} MiB",
            r + 1,
            run.drain_s,
            n as f64 / run.drain_s,
            run.requests,
            run.tracker_posts,
            run.bytes_in as f64 / n as f64,
            run.bytes_out as f64 / n as f64,
            mib(run.rss_idle_kib),
            mib(run.rss_start_kib),
            mib(run.rss_tenth_kib),
            mib(run.rss_peak_kib),
            mib(run.rss_after_kib),
            mib(run.rss_settled_kib),
        );
        results.push(run);
    }
    let per = |f: fn(&Run) -> f64| results.iter().map(f).collect::<Vec<f64>>();
    let worst_s = stats(per(|r| r.drain_s)).2;
    let worst_growth = stats(per(|r| mib(r.rss_peak_kib) - mib(r.rss_tenth_kib))).2;
    let worst_left = stats(per(|r| mib(r.rss_settled_kib) - mib(r.rss_idle_kib))).2;
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    let mut s = Section::new("sync", &format!("Sync: a {n}-record backlog into DHIS2"));
    s.note(&format!(
        "gateway `{}` ({}), test server `{}`",
        bin.strip_prefix(&root).unwrap_or(&bin).display(),
        common::build_kind(&bin),
        sim_bin.strip_prefix(&root).unwrap_or(&sim_bin).display(),
    ));
    s.note(&format!("workload: {n} distinct HbA1c results sent over ASTM/TCP from {CONNECTIONS} concurrent connections to one source while DHIS2 (`dhis2-sim` 2.41.3, PAT auth) is down; each is committed (WAL, synchronous=FULL) before its ACK and rendered by a template Tempr into one tracker event. This backlog is built once, then the gateway is killed (SIGKILL); each run starts a gateway on a copy of that data directory (a box rebooted while offline), waits until it has started, then the sim starts and the clock runs from its first accept until every message is `delivered` (status polled every {} ms, so ±{} ms); `batch_tracked_entities = {BATCH}`, `retry_min = \"200ms\"`, `retry_max = \"1s\"`", POLL.as_millis(), POLL.as_millis()));
    s.note(&format!("requests and bytes: `GET /__sim/stats` (HTTP bodies only, headers not counted; in = gateway → DHIS2, out = DHIS2 → gateway); afterwards `GET /__sim/objects` is checked to hold exactly {n} events with {n} distinct UIDs"));
    s.note(&format!("RSS: idle = the backlog run's gateway 2 s after its start, before the first message; at drain start = the run's gateway 1 s after it started on the backlog; during the drain VmRSS is sampled every {} ms; \"after\" = 1 s after the last delivery, \"settled\" = {} s later; VmHWM = the kernel's high-water mark over the run (start on the backlog to the end)", POLL.as_millis(), SETTLE.as_secs() + 1));
    s.note(&format!(
        "targets: drain ≤ {TARGET_S:.0} s — {} (slowest run {worst_s:.1} s); flat memory (RSS grows ≤ {FLAT_MIB:.0} MiB from 10 % delivered to the end) — {} (largest growth {worst_growth:.1} MiB); back near idle after the drain (settled RSS ≤ idle + {NEAR_IDLE_MIB:.0} MiB) — {} (largest excess {worst_left:.1} MiB)",
        met(worst_s <= TARGET_S),
        met(worst_growth <= FLAT_MIB),
        met(worst_left <= NEAR_IDLE_MIB),
    ));
    s.note("each run has its own gateway, copy of the backlog database and fresh sim; the backlog ingest rows are the one run that built it");
    s.row(
        "drain_s",
        &format!("drain: {n} records into DHIS2"),
        "s",
        per(|r| r.drain_s),
    );
    let nf = n as f64;
    s.row(
        "drain_records_per_s",
        "drain rate",
        "records/s",
        results.iter().map(|r| nf / r.drain_s).collect(),
    );
    s.row(
        "requests",
        "requests to DHIS2 (all routes)",
        "requests",
        per(|r| r.requests as f64),
    );
    s.row(
        "tracker_posts",
        "of which `POST /api/tracker`",
        "requests",
        per(|r| r.tracker_posts as f64),
    );
    s.row(
        "bytes_in_per_record",
        "bytes in (request bodies) per record",
        "B",
        results.iter().map(|r| r.bytes_in as f64 / nf).collect(),
    );
    s.row(
        "bytes_out_per_record",
        "bytes out (response bodies) per record",
        "B",
        results.iter().map(|r| r.bytes_out as f64 / nf).collect(),
    );
    s.row(
        "rss_idle_mib",
        "gateway RSS idle, before the backlog",
        "MiB",
        per(|r| mib(r.rss_idle_kib)),
    );
    s.row(
        "rss_drain_start_mib",
        "gateway RSS at drain start",
        "MiB",
        per(|r| mib(r.rss_start_kib)),
    );
    s.row(
        "rss_tenth_mib",
        "gateway RSS at 10 % delivered",
        "MiB",
        per(|r| mib(r.rss_tenth_kib)),
    );
    s.row(
        "rss_drain_peak_mib",
        "gateway peak RSS during drain",
        "MiB",
        per(|r| mib(r.rss_peak_kib)),
    );
    s.row(
        "rss_after_mib",
        "gateway RSS 1 s after the drain",
        "MiB",
        per(|r| mib(r.rss_after_kib)),
    );
    s.row(
        "rss_settled_mib",
        &format!("gateway RSS {} s after the drain", SETTLE.as_secs() + 1),
        "MiB",
        per(|r| mib(r.rss_settled_kib)),
    );
    s.row(
        "rss_settled_minus_idle_mib",
        "settled minus idle (what the drain left behind)",
        "MiB",
        per(|r| mib(r.rss_settled_kib) - mib(r.rss_idle_kib)),
    );
    s.row(
        "hwm_mib",
        "gateway VmHWM (whole run)",
        "MiB",
        per(|r| mib(r.hwm_kib)),
    );
    s.row(
        "backlog_ingest_s",
        &format!("backlog ingest: {n} messages ACKed, {CONNECTIONS} connections"),
        "s",
        vec![backlog.ingest_s],
    );
    s.row(
        "backlog_ingest_msgs_per_s",
        "ingest rate, durable commit before ACK",
        "msg/s",
        vec![nf / backlog.ingest_s],
    );
    s.row(
        "backlog_rendered_s",
        "backlog fully rendered (from first send)",
        "s",
        vec![backlog.rendered_s],
    );
    s.finish();
}
