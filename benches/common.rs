//! Helpers every benchmark uses (included with `#[path]`; not a bench of its own).
#![allow(dead_code)] // each bench uses a different subset

use serde_json::Value;
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `n` distinct ports nobody listens on (all held until chosen, so none repeats).
pub fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter().map(|l| l.local_addr().unwrap()).collect()
}

/// A `/proc/PID/status` figure in KiB (`"VmRSS:"`, `"VmHWM:"`); 0 when unreadable.
pub fn proc_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// (min, median, max) of the runs.
pub fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

/// Host name and CPU model, for the results file.
pub fn machine() -> (String, String) {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    (host, cpu)
}

/// `cargo bench` passes `--bench`; `cargo test` (CI's `just unit`, `just bench-smoke`) does not:
/// then every bench runs its small smoke variant.
pub fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A binary to measure: `$var` if set, else the release build (full run) or the test build.
pub fn bin_of(var: &str, release: &str, test_build: &str) -> PathBuf {
    match std::env::var(var) {
        Ok(b) => PathBuf::from(b),
        Err(_) if full_run() => repo_root().join(release),
        Err(_) => PathBuf::from(test_build),
    }
}

pub fn wait_listening(addr: SocketAddr, what: &str) {
    let until = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < until, "{what} did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The PAT the sim accepts (same as tests/it/support.rs: checksum-valid under 2.41+).
pub const SIM_TOKEN: &str = "d2pat_qg8aTF459WO5LMr0uLi7P3wG8IXq683V1086477046";

/// The DHIS2 test server as a process; created stopped (the link is down) until `spawn`.
pub struct Dhis2Sim {
    pub bin: PathBuf,
    pub addr: SocketAddr,
    pub child: Option<Child>,
}

impl Dhis2Sim {
    pub fn new(bin: &Path, addr: SocketAddr) -> Dhis2Sim {
        Dhis2Sim {
            bin: bin.to_owned(),
            addr,
            child: None,
        }
    }

    pub fn spawn(&mut self) {
        let metadata = repo_root().join("tests/fixtures/dhis2/metadata.json");
        let child = Command::new(&self.bin)
            .arg("--listen")
            .arg(self.addr.to_string())
            .args(["--version", "2.41.3", "--token", SIM_TOKEN, "--metadata"])
            .arg(metadata)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (run `cargo build --release --bins` first)",
                    self.bin.display()
                )
            });
        self.child = Some(child);
        wait_listening(self.addr, "dhis2-sim");
    }

    /// Events the sim holds (each must be there exactly once: checked by the callers).
    pub fn events(&self) -> Vec<Value> {
        get_json(self.addr, "/__sim/objects")["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Dhis2Sim {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One HTTP/1.1 exchange over a fresh connection (127.0.0.1 only): status, head, body.
pub struct HttpResp {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl HttpResp {
    /// Every `Set-Cookie` value's `name=value` part, joined for a `Cookie` header.
    pub fn cookies(&self) -> String {
        self.head
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
            .filter_map(|l| l["set-cookie:".len()..].trim().split(';').next())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpResp {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req += &format!("Content-Length: {}\r\n\r\n{body}", body.len());
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let rest = &out[split + 4..];
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    HttpResp { status, head, body }
}

/// A minimal HTTP/1.1 GET returning the JSON body (the sim's admin API, on 127.0.0.1).
pub fn get_json(addr: SocketAddr, path: &str) -> Value {
    let r = http(addr, "GET", path, &[], "");
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", r.head))
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let n = std::str::from_utf8(&rest[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .unwrap_or(0);
        let after = &rest[eol + 2..];
        if n == 0 || after.len() < n {
            break;
        }
        out.extend_from_slice(&after[..n]);
        rest = after[n..].strip_prefix(b"\r\n").unwrap_or(&after[n..]);
    }
    out
}

/// p-th percentile (0..1) of sorted durations, in ms.
pub fn pct_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)].as_secs_f64() * 1e3
}

pub fn git_commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(repo_root())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

pub fn today() -> String {
    Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "undated".into())
}

/// The 1-minute load average: the results file states the load each part ran under.
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// One part's figures for the combined results file (`benches/report.rs` assembles them).
///
/// Every bench writes `<dir>/<part>.md` (its section: notes and a table of median/min/max) and
/// `<dir>/<part>.json` (`{"figure key": {"median", "min", "max", "unit"}}`, what the COMPASS
/// table reads). `<dir>` is target/bench-results for `cargo bench`, target/bench-results-smoke
/// for the smoke variants, so a smoke run never overwrites a measured figure.
pub struct Section {
    part: &'static str,
    pub md: String,
    figures: serde_json::Map<String, Value>,
}

impl Section {
    pub fn new(part: &'static str, title: &str) -> Section {
        let mut md = format!("## {title}\n\n");
        writeln!(
            md,
            "- load average (1 min) when this part started: {:.2}",
            loadavg()
        )
        .unwrap();
        Section {
            part,
            md,
            figures: serde_json::Map::new(),
        }
    }

    pub fn note(&mut self, text: &str) {
        if self.md.ends_with("|\n") {
            self.md.push('\n');
        }
        writeln!(self.md, "- {text}").unwrap();
    }

    /// A row of the runs' median, min and max; `key` names it for the COMPASS table.
    pub fn row(&mut self, key: &str, name: &str, unit: &str, runs: Vec<f64>) -> (f64, f64, f64) {
        // A row right after another continues its table; after a note, a new table starts.
        if !self.md.ends_with("|\n") {
            if !self.md.ends_with("\n\n") {
                self.md.push('\n');
            }
            self.md.push_str(
                "| figure | median | min | max | unit | runs |\n|---|---|---|---|---|---|\n",
            );
        }
        let n = runs.len();
        let (min, med, max) = stats(runs);
        writeln!(
            self.md,
            "| {name} | {med:.2} | {min:.2} | {max:.2} | {unit} | {n} |"
        )
        .unwrap();
        self.figures.insert(
            key.into(),
            serde_json::json!({"median": med, "min": min, "max": max, "unit": unit, "runs": n}),
        );
        (min, med, max)
    }

    /// Where the fragments go (see the type's docs).
    pub fn dir() -> PathBuf {
        let name = if full_run() {
            "bench-results"
        } else {
            "bench-results-smoke"
        };
        repo_root().join("target").join(name)
    }

    /// Print the section and write its fragment files.
    pub fn finish(self) {
        println!("{}", self.md);
        let dir = Self::dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{}.md", self.part)), &self.md).unwrap();
        std::fs::write(
            dir.join(format!("{}.json", self.part)),
            serde_json::to_string_pretty(&Value::Object(self.figures)).unwrap(),
        )
        .unwrap();
    }
}

/// What kind of build `bin` is, for the results file: only a release build is a figure to quote.
pub fn build_kind(bin: &Path) -> &'static str {
    let p = bin.to_string_lossy();
    if p.contains("/release/") {
        "release build: opt-level z, LTO, strip, panic=abort"
    } else {
        "NOT a release build: a smoke figure, not one to quote"
    }
}
