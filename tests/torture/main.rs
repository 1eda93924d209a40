//! `just torture`: crash safety under SIGKILL with several protocols at once (issue 8).
//!
//! Analyzers speaking ASTM (two), HL7/MLLP and HTTP send numbered HbA1c results while the gateway
//! is killed with SIGKILL at random moments — during ingest, during rendering and during sync
//! (the DHIS2 test server commits each import, then answers late, so many kills land after DHIS2
//! stored a batch and before the gateway heard so). Each analyzer behaves like a real device: a
//! result it did not see acknowledged is sent again after the gateway comes back.
//!
//! Checked at the end: every result an analyzer saw ACKed is stored (lost = 0), each stored once
//! (duplicated = 0), DHIS2 holds each expected event exactly once, `PRAGMA integrity_check` = ok.
//!
//! `TORTURE_ROUNDS` (default 12: the CI smoke) sets the number of kills, `TORTURE_MESSAGES` the
//! results per analyzer (default 25), `TORTURE_SEED` the random seed, `TORTURE_REPORT` a file the
//! figures are written to (Markdown), `TORTURE_HOSTILE_SECONDS` the length of the hostile-device
//! attack (default 10), `TORTURE_SOAK_SECONDS` the soak (default 15), `TORTURE_PARTS` the parts
//! to run (comma-separated, default all: crash, diskfull, hostile, dhis2, soak).

#[allow(dead_code)]
#[path = "../it/support.rs"]
mod support;

mod analyzers;
mod crash;
mod dhis2;
mod diskfull;
mod hostile;
mod soak;

use std::process::ExitCode;

/// A `/proc/PID/status` figure in KiB (`VmRSS:`, `VmHWM:`); 0 when the process is gone.
pub fn proc_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A Tempr folder holding the HbA1c event Tempr every analyzer's results go through.
pub fn hba1c_temprs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/temprs/hba1c-event.toml"),
        dir.path().join("hba1c-event.toml"),
    )
    .unwrap();
    dir
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
        Err(_) => default,
    }
}

/// The parts of the run, in the order they run; `TORTURE_PARTS` (comma-separated) picks some.
const PARTS: [&str; 5] = ["crash", "diskfull", "hostile", "dhis2", "soak"];

fn main() -> ExitCode {
    let settings = crash::Settings {
        rounds: env_number("TORTURE_ROUNDS", 12) as usize,
        messages_per_analyzer: env_number("TORTURE_MESSAGES", 25) as usize,
        seed: env_number("TORTURE_SEED", 0x2545_F491_4F6C_DD1D),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let parts = std::env::var("TORTURE_PARTS").unwrap_or_else(|_| PARTS.join(","));
    let mut text = Vec::new();
    let mut passed = true;
    for part in parts.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (ok, figures) = match part {
            "crash" => {
                let r = runtime.block_on(crash::run(&settings));
                (r.passed(), r.markdown(&settings))
            }
            "diskfull" => {
                let r = runtime.block_on(diskfull::run());
                (r.passed(), r.markdown())
            }
            "hostile" => {
                let r = runtime.block_on(hostile::run(env_number("TORTURE_HOSTILE_SECONDS", 10)));
                (r.passed(), r.markdown())
            }
            "dhis2" => {
                let r = runtime.block_on(dhis2::run());
                (r.passed(), r.markdown())
            }
            "soak" => {
                let r = runtime.block_on(soak::run(env_number("TORTURE_SOAK_SECONDS", 15)));
                (r.passed(), r.markdown())
            }
            other => panic!(
                "TORTURE_PARTS: unknown part {other:?} (known: {})",
                PARTS.join(", ")
            ),
        };
        passed &= ok;
        text.push(figures);
    }
    let text = text.join("\n");
    println!("{text}");
    if let Ok(path) = std::env::var("TORTURE_REPORT") {
        std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    if passed {
        ExitCode::SUCCESS
    } else {
        eprintln!("torture: FAILED (see the figures above)");
        ExitCode::FAILURE
    }
}
