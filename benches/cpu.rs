//! `cargo bench --bench cpu`: CPU instructions per ingested ASTM message, as a fraction of the
//! RS-232 line time of that message at 9600 baud.
//!
//! Preferred: the static aarch64 build (`just cross` →
//! target/aarch64-unknown-linux-gnu/release/pocketgate) under Debian's `qemu-aarch64` (package
//! qemu-user: the dynamic build, which loads TCG plugins; qemu-user-static cannot) with the
//! instruction counter of benches/qemu-insn/insn.c, compiled here with `cc` (or a `libinsn.so`
//! named by BENCH_QEMU_INSN_PLUGIN). When the binary, qemu-aarch64 or cc is missing the results
//! say "not measured" and why. Then (and always, for comparison) the x86-64 release binary under valgrind's
//! callgrind: user-space instructions of the whole process, all threads (kernel work — the
//! fsync, the socket calls — is not counted).
//!
//! Method: the gateway runs under the counter twice, receiving N1 and N2 messages over one ASTM
//! connection, and stops on SIGINT (graceful shutdown, so the counter writes its total);
//! instructions per message = (I(N2) − I(N1)) / (N2 − N1), so start-up and shutdown cancel out.
//!
//! Knobs (env): BENCH_RUNS (default 5), BENCH_CPU_N1/N2 (default 50/250), BENCH_BIN,
//! BENCH_AARCH64_BIN, BENCH_QEMU_INSN_PLUGIN. Smoke (under `cargo test`): 1 run of 3/8 messages
//! against the test build.

#[path = "clients.rs"]
mod clients;
#[path = "common.rs"]
mod common;

use common::{Section, bin_of, env_usize, free_addrs, full_run, repo_root, wait_listening};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// 8N1: a start bit, 8 data bits, a stop bit per byte.
const BITS_PER_BYTE: f64 = 10.0;
const BAUD: f64 = 9600.0;
/// The assumed target core for the fraction: a Raspberry Pi 3-class Cortex-A53 at 1.2 GHz
/// retiring one instruction per cycle (an A53 sustains roughly 0.5–1.2 on code like this).
const TARGET_INSN_PER_S: f64 = 1.2e9;

/// How a counter wraps the gateway and reads its total afterwards.
enum Counter {
    Callgrind,
    QemuPlugin { plugin: PathBuf },
}

impl Counter {
    fn name(&self) -> &'static str {
        match self {
            Counter::Callgrind => "x86-64 under valgrind --tool=callgrind",
            Counter::QemuPlugin { .. } => "static aarch64 under qemu-aarch64 + insn.c plugin",
        }
    }

    /// Run the gateway under the counter, send `n` ASTM messages, stop it; total instructions.
    fn count(&self, rt: &tokio::runtime::Runtime, bin: &Path, n: usize, tag: &str) -> f64 {
        let dir = tempfile::tempdir().unwrap();
        let addr = free_addrs(1)[0];
        let cfg = dir.path().join("bench.toml");
        std::fs::write(
            &cfg,
            format!(
                "[gateway]\nname = \"bench\"\ndata_dir = \"{}\"\n\n[[sources]]\nid = \"an0\"\n\
                 protocol = \"astm\"\ntransport = \"tcp-server\"\nlisten = \"{addr}\"\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let out = dir.path().join("count.out");
        let mut cmd = match self {
            Counter::Callgrind => {
                let mut c = Command::new("valgrind");
                c.arg("--tool=callgrind")
                    .arg(format!("--callgrind-out-file={}", out.display()))
                    .arg(bin);
                c
            }
            Counter::QemuPlugin { plugin } => {
                let mut c = Command::new("qemu-aarch64");
                c.arg("-plugin")
                    .arg(plugin)
                    .args(["-d", "plugin", "-D"])
                    .arg(&out)
                    .arg(bin);
                c
            }
        };
        let child = cmd
            .args(["run", "--config"])
            .arg(&cfg)
            .env("POCKETGATE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", self.name()));
        wait_listening(addr, "gateway under the instruction counter");
        let tag = tag.to_string();
        rt.block_on(async move { clients::drive(clients::Input::Astm, addr, 1, n, &tag).await });
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let status = child.wait_with_output().unwrap().status;
        assert!(
            status.success() || status.code().is_some(),
            "counter ended by {status}"
        );
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let total = match self {
            // "summary: 123" (callgrind's total of the Ir event)
            Counter::Callgrind => text.lines().find_map(|l| {
                l.strip_prefix("summary:")
                    .or_else(|| l.strip_prefix("totals:"))
            }),
            // "total insns: 123"
            Counter::QemuPlugin { .. } => text.lines().find_map(|l| l.strip_prefix("total insns:")),
        };
        total
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "{}: no instruction total in its output:\n{text}",
                    self.name()
                )
            })
    }
}

/// The instruction-count plugin: BENCH_QEMU_INSN_PLUGIN, or benches/qemu-insn/insn.c built with
/// `cc` into target/ (a second or two).
fn insn_plugin(root: &Path) -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("BENCH_QEMU_INSN_PLUGIN") {
        return Ok(PathBuf::from(p));
    }
    let out = root.join("target/qemu-insn/libinsn.so");
    std::fs::create_dir_all(out.parent().unwrap()).map_err(|e| e.to_string())?;
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&out)
        .arg(root.join("benches/qemu-insn/insn.c"))
        .status()
        .map_err(|e| format!("cc to build the QEMU plugin: {e}"))?;
    if !status.success() {
        return Err(format!(
            "cc failed to build benches/qemu-insn/insn.c ({status})"
        ));
    }
    Ok(out)
}

/// Bytes of one message on the line as the simulated analyzer sends it: ENQ, one frame per 240
/// text characters (STX, frame number, text, ETB/ETX, 2 checksum characters, CR LF), EOT.
fn wire_bytes(text_len: usize) -> usize {
    let frames = text_len.div_ceil(240);
    1 + text_len + frames * 7 + 1
}

fn main() {
    let full = full_run();
    let runs = if full { env_usize("BENCH_RUNS", 5) } else { 1 };
    let (n1, n2) = if full {
        (
            env_usize("BENCH_CPU_N1", 50),
            env_usize("BENCH_CPU_N2", 250),
        )
    } else {
        (3, 8)
    };
    let root = repo_root();
    let mut s = Section::new("cpu", "CPU per ingested ASTM message vs the 9600-baud line");
    let text_len = clients::astm_message(&clients::sample_id("C", 0, 0), 0).len();
    let line_s = wire_bytes(text_len) as f64 * BITS_PER_BYTE / BAUD;
    s.note(&format!("message: the 5-record Afinion-style HbA1c result of the ingest bench, {text_len} B of text, {} B on the line = {:.1} ms at 9600 baud 8N1; the gateway receives it, checks it, commits it (WAL, synchronous=FULL) and ACKs; instructions per message = (I(N2) − I(N1)) / (N2 − N1) with N1 = {n1}, N2 = {n2}, so start-up cancels out; user-space instructions of all threads (kernel work not counted)", wire_bytes(text_len), line_s * 1e3));
    s.note(&format!("fraction of the line time = instructions / (line time × {:.1e} instructions/s), assuming a Pi 3-class Cortex-A53 at 1.2 GHz retiring one instruction per cycle", TARGET_INSN_PER_S));

    let aarch64 = std::env::var("BENCH_AARCH64_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target/aarch64-unknown-linux-gnu/release/pocketgate"));
    let has = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let mut counters: Vec<(Counter, PathBuf, &str)> = Vec::new();
    if !aarch64.exists() {
        s.note(&format!(
            "aarch64: not measured: aarch64 binary missing ({}; `just cross` builds it)",
            aarch64.strip_prefix(&root).unwrap_or(&aarch64).display()
        ));
    } else if !has("qemu-aarch64") {
        s.note("aarch64: not measured: qemu-aarch64 missing (apt-get install qemu-user: the dynamic build, which loads TCG plugins)");
    } else {
        match insn_plugin(&root) {
            Ok(plugin) => {
                counters.push((Counter::QemuPlugin { plugin }, aarch64.clone(), "aarch64"))
            }
            Err(why) => s.note(&format!("aarch64: not measured: {why}")),
        }
    }
    if has("valgrind") {
        let bin = bin_of(
            "BENCH_BIN",
            "target/release/pocketgate",
            env!("CARGO_BIN_EXE_pocketgate"),
        );
        counters.push((Counter::Callgrind, bin, "x86_64"));
    } else {
        s.note("x86-64: not measured: valgrind missing (apt-get install valgrind)");
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (counter, bin, arch) in &counters {
        let mut per_msg = Vec::new();
        for r in 0..runs {
            let a = counter.count(&rt, bin, n1, &format!("C{r}a"));
            let b = counter.count(&rt, bin, n2, &format!("C{r}b"));
            let v = (b - a) / (n2 - n1) as f64;
            eprintln!(
                "{} run {}: {a:.0} / {b:.0} instructions → {v:.0} per message",
                counter.name(),
                r + 1
            );
            per_msg.push(v);
            std::thread::sleep(Duration::from_millis(100));
        }
        let fraction: Vec<f64> = per_msg
            .iter()
            .map(|i| i / (line_s * TARGET_INSN_PER_S))
            .collect();
        s.note(&format!(
            "{arch}: {} (`{}`){}",
            counter.name(),
            bin.strip_prefix(&root).unwrap_or(bin).display(),
            if full {
                ""
            } else {
                " — smoke: test build, not a figure to quote"
            }
        ));
        s.row(
            &format!("{arch}_insn_per_msg"),
            &format!("{arch}: instructions per ingested ASTM message"),
            "instructions",
            per_msg,
        );
        s.row(
            &format!("{arch}_line_fraction_pct"),
            &format!("{arch}: CPU per message as % of its 9600-baud line time"),
            "%",
            fraction.iter().map(|f| f * 100.0).collect(),
        );
    }
    s.finish();
}
