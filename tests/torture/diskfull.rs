//! Disk full: the data directory is a small tmpfs (in a private mount namespace made with
//! `unshare -rm`, so no root is needed) that the run fills up with a file while an analyzer sends.
//! The analyzer must never see an ACK for a result that was not stored; once space returns,
//! ingest resumes by itself and every result is stored once and delivered.

use crate::analyzers::{Analyzer, Wire};
use crate::support::*;
use pocketgate::store::Reader;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct Report {
    pub results: usize,
    pub acked_before_full: usize,
    /// Sends refused while the disk was full (must be > 0: the disk really filled up).
    pub refused_while_full: usize,
    /// ACKs received while the disk was full for results that are not stored (must be 0).
    pub acked_not_stored: usize,
    pub log_names_disk_full: bool,
    pub resumed_after_seconds: f64,
    pub stored_at_end: usize,
    /// Stored messages beyond one per result (must be 0).
    pub duplicated: usize,
    pub delivered_at_end: usize,
    pub integrity: String,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.refused_while_full > 0
            && self.acked_not_stored == 0
            && self.log_names_disk_full
            && self.stored_at_end == self.results
            && self.duplicated == 0
            && self.delivered_at_end == self.results
            && self.integrity == "ok"
    }

    pub fn markdown(&self) -> String {
        format!(
            "## Disk full (4 MiB tmpfs data directory, filled by a file)\n\n\
             | figure | value |\n|---|---|\n\
             | results sent | {} |\n\
             | acknowledged before the disk filled | {} |\n\
             | sends refused while full (NAK, never ACK) | {} |\n\
             | ACKed while full but not stored | {} |\n\
             | log names the full disk | {} |\n\
             | ingest resumed after space returned | {:.1} s |\n\
             | stored / delivered at the end | {} / {} |\n\
             | duplicated in the store | {} |\n\
             | PRAGMA integrity_check | {} |\n",
            self.results,
            self.acked_before_full,
            self.refused_while_full,
            self.acked_not_stored,
            if self.log_names_disk_full {
                "yes"
            } else {
                "no"
            },
            self.resumed_after_seconds,
            self.stored_at_end,
            self.delivered_at_end,
            self.duplicated,
            self.integrity,
        )
    }
}

/// The gateway in its own mount namespace with a `size`-byte tmpfs on its data directory.
struct Confined {
    child: Child,
    data: PathBuf,
    log: PathBuf,
}

impl Confined {
    fn start(dir: &Path, sources_and_dhis2: &str, size: &str) -> Confined {
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let config = dir.join("pocketgate.toml");
        std::fs::write(
            &config,
            format!(
                "[gateway]\nname = \"torture\"\ndata_dir = \"{}\"\n\n{sources_and_dhis2}",
                data.display()
            ),
        )
        .unwrap();
        let log = dir.join("gateway.log");
        let child = Command::new("unshare")
            .args(["-rm", "--", "sh", "-c"])
            .arg(format!(
                "mount -t tmpfs -o size={size} tmpfs \"$0\" && exec \"$1\" run --config \"$2\""
            ))
            .arg(&data)
            .arg(BIN)
            .arg(&config)
            .env("POCKETGATE_LOG", "debug")
            .env("PG_TEST_DHIS2_TOKEN", SIM_TOKEN)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("unshare (util-linux) is needed for the disk-full run");
        Confined { child, data, log }
    }

    /// The data directory as the gateway sees it (its tmpfs), reached through /proc.
    fn data_view(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.child.id()))
            .join(self.data.strip_prefix("/").unwrap())
    }

    /// `program` to be run inside the gateway's user and mount namespaces.
    fn inside(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.child.id().to_string(), "-U", "-m"])
            .args(["--preserve-credentials", "--", program]);
        c
    }

    /// `pocketgate records` run inside the gateway's mount namespace (SQLite resolves the
    /// `/proc/PID/root` link to the host's path, so the store cannot be opened from outside).
    fn records(&self) -> Vec<serde_json::Value> {
        let out = self
            .inside(BIN)
            .args(["records", "--limit", "100000", "--db"])
            .arg(self.data.join("pocketgate.db"))
            .output()
            .expect("nsenter (util-linux)");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The data directory's files with their sizes and the tmpfs's free space (`df`), for a
    /// failure message.
    fn disk(&self) -> String {
        let mut files: Vec<String> = std::fs::read_dir(self.data_view())
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| {
                        let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                        format!("{} {len}", e.file_name().to_string_lossy())
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        let df = self
            .inside("df")
            .arg("-k")
            .arg(&self.data)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        format!("files: {}\n{df}", files.join(", "))
    }

    /// Sample ids of the stored results, one entry per stored message.
    fn stored_samples(&self) -> Vec<String> {
        self.records()
            .iter()
            .filter_map(|r| {
                r["observations"][0]["sample_id"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    }

    /// `PRAGMA integrity_check` of a copy taken while the gateway is frozen (SIGSTOP): the
    /// files as a power cut at that instant would leave them.
    fn frozen_integrity(&self) -> String {
        let pid = self.child.id().to_string();
        let signal = |s: &str| Command::new("kill").args([s, &pid]).status().unwrap();
        let copy = tempfile::tempdir().unwrap();
        signal("-STOP");
        for name in ["pocketgate.db", "pocketgate.db-wal"] {
            let from = self.data_view().join(name);
            if from.exists() {
                std::fs::copy(&from, copy.path().join(name)).unwrap();
            }
        }
        signal("-CONT");
        Reader::open(&copy.path().join("pocketgate.db"))
            .and_then(|r| r.integrity_check())
            .unwrap_or_else(|e| e.to_string())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Confined {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fill the file system holding `dir` with `dir/filler` until it is full.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0x55u8; 16 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.flush();
    path
}

pub async fn run() -> Report {
    let sim = Dhis2Sim::start("2.41.3");
    let temprs = crate::hba1c_temprs();
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let gw = Confined::start(
        dir.path(),
        &format!(
            "{}\n{}",
            tcp_source("astm-1", addr, "30s"),
            dhis2_block(&sim, temprs.path(), "OuClinicA01")
        ),
        "4m",
    );
    let until = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < until,
            "gateway did not start:\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let analyzer = Analyzer::new("astm-1", Wire::Astm, addr, 40);
    let mut r = Report {
        results: analyzer.samples.len(),
        ..Report::default()
    };
    let mut next = 0;
    // A few results while there is room.
    while next < 5 {
        assert!(
            analyzer
                .send(&analyzer.samples[next])
                .await
                .unwrap_or(false)
        );
        next += 1;
    }
    r.acked_before_full = next;
    let filler = fill(&gw.data_view());
    // Disk full: keep sending; any ACK must correspond to a stored row.
    let mut refused_in_a_row = 0;
    while refused_in_a_row < 4 && next < analyzer.samples.len() {
        let s = &analyzer.samples[next];
        let acked = tokio::time::timeout(Duration::from_secs(20), analyzer.send(s))
            .await
            .is_ok_and(|x| x.unwrap_or(false));
        if acked {
            if !gw.stored_samples().contains(&s.id) {
                r.acked_not_stored += 1;
            }
            r.acked_before_full += 1;
            next += 1;
            refused_in_a_row = 0;
        } else {
            r.refused_while_full += 1;
            refused_in_a_row += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    r.log_names_disk_full = gw.log().to_lowercase().contains("full");
    // Space returns: the same analyzer goes on, ingest must resume by itself.
    let while_full = gw.disk();
    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    let mut resumed = None;
    while next < analyzer.samples.len() {
        let s = &analyzer.samples[next];
        if analyzer.send(s).await.unwrap_or(false) {
            resumed.get_or_insert(freed.elapsed().as_secs_f64());
            next += 1;
        } else {
            assert!(
                freed.elapsed() < Duration::from_secs(60),
                "ingest did not resume after space returned (while full: {while_full}; now: {}):\n{}",
                gw.disk(),
                gw.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    r.resumed_after_seconds = resumed.unwrap_or(f64::NAN);
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = gw.records();
        let mut samples = gw.stored_samples();
        samples.sort();
        samples.dedup();
        r.stored_at_end = samples.len().min(rows.len());
        r.duplicated = rows.len() - samples.len();
        r.delivered_at_end = rows.iter().filter(|m| m["status"] == "delivered").count();
        if r.delivered_at_end >= r.results || Instant::now() > until {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    r.integrity = gw.frozen_integrity();
    if !r.passed() {
        eprintln!("gateway log:\n{}", gw.log());
    }
    r
}
