//! A watched folder (a USB stick's mount point) with the real binary: export files are stored
//! once, a bad file is kept as `invalid` with its error, appended rows are read alone, the stick
//! can be pulled and plugged back, and no file is ever changed.

use crate::support::*;
use pocketgate::store::StoredMessage;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn export_fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/exports")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A Cedex Bio source (protocols.md §1.5: Latin-1, `;`, CRLF) on `folder`, scanned every 200 ms.
fn cedex_source(id: &str, folder: &Path) -> String {
    format!(
        "[[sources]]\nid = \"{id}\"\nprotocol = \"file\"\ntransport = \"folder\"\n\
         path = \"{}\"\npattern = \"res_*.csv\"\nscan_interval = \"200ms\"\n\n\
         [sources.export]\nformat = \"csv\"\nencoding = \"latin1\"\ndelimiter = \";\"\n\
         sample_id = \"Sample ID\"\ntest_code = \"Test\"\nvalue = \"Result\"\nunit = \"Unit\"\n\
         flag = \"Flag\"\nobserved_at = \"Measured\"\ndate_format = \"%d.%m.%Y %H:%M:%S\"\n",
        folder.display()
    )
}

/// Every file of the folder with its SHA-256 and mtime.
fn snapshot(folder: &Path) -> Vec<(String, [u8; 32], std::time::SystemTime)> {
    let mut v: Vec<_> = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let bytes = std::fs::read(e.path()).unwrap();
            (
                e.file_name().into_string().unwrap(),
                Sha256::digest(&bytes).into(),
                e.metadata().unwrap().modified().unwrap(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Stored messages oldest first, once there are at least `n`.
fn wait_messages(gw: &Gateway, n: usize) -> Vec<StoredMessage> {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let mut ms = pocketgate::store::Reader::open(&gw.db())
            .ok()
            .and_then(|r| r.messages(None, 1000).ok())
            .unwrap_or_default();
        if ms.len() >= n {
            ms.reverse();
            return ms;
        }
        assert!(
            Instant::now() < until,
            "only {} of {n} messages stored:\n{}",
            ms.len(),
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Let several scans pass, then return how many messages are stored.
fn count_after_scans(gw: &Gateway) -> usize {
    std::thread::sleep(Duration::from_millis(1500));
    gw.reader().count().unwrap()
}

fn values(m: &StoredMessage) -> Vec<String> {
    m.observations
        .iter()
        .map(|o| {
            format!(
                "{} {}={}",
                o.sample_id.as_deref().unwrap_or("-"),
                o.test_code,
                o.value.as_deref().unwrap_or("-")
            )
        })
        .collect()
}

fn stick() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("usb0");
    std::fs::create_dir(&folder).unwrap();
    (dir, folder)
}

#[test]
fn folder_of_exports_stores_the_good_files_and_the_bad_one_as_invalid_once() {
    let (_dir, folder) = stick();
    std::fs::write(
        folder.join("res_20240312102200.csv"),
        export_fixture("res_20240312102200.csv"),
    )
    .unwrap();
    // A second day's export, Latin-1 like the first.
    std::fs::write(
        folder.join("res_20240313081500.csv"),
        b"\"Sample ID\";\"Sample type\";\"Test\";\"Result\";\"Unit\";\"Flag\";\"Measured\";\"Comment\"\r\n\
          \"SMP-0003\";\"Sample\";\"GLC2B\";\"4.80\";\"mmol/L\";\"\";\"13.03.2024 08:14:03\";\"\"\r\n",
    )
    .unwrap();
    // An export whose Result column is missing: stored as invalid, with line and column.
    std::fs::write(
        folder.join("res_20240314090000.csv"),
        b"\"Sample ID\";\"Test\";\"Unit\";\"Flag\";\"Measured\"\r\n\
          \"SMP-0004\";\"GLC2B\";\"mmol/L\";\"\";\"14.03.2024 09:00:00\"\r\n",
    )
    .unwrap();
    // Not a result file (QC): left alone by the pattern.
    std::fs::write(folder.join("qcs_20240312102200.csv"), b"QC;1\r\n").unwrap();
    let before = snapshot(&folder);

    let gw = Gateway::start(&cedex_source("cedex", &folder));
    let ms = wait_messages(&gw, 3);
    assert_eq!(ms.len(), 3, "{}", gw.log());
    let by_status = |st: &str| ms.iter().filter(|m| m.status == st).count();
    assert_eq!(by_status("received"), 2, "{ms:#?}");
    assert_eq!(by_status("invalid"), 1, "{ms:#?}");
    let all: Vec<String> = ms
        .iter()
        .filter(|m| m.status == "received")
        .flat_map(values)
        .collect();
    assert_eq!(
        all,
        [
            "SMP-0001 GLC2B=5.94",
            "SMP-0001 LAC2B=1.21",
            "SMP-0002 NH3B=142",
            "SMP-0003 GLC2B=4.80",
        ]
    );
    let nh3 = &ms.iter().flat_map(|m| &m.observations).collect::<Vec<_>>()[2];
    assert_eq!(nh3.unit.as_deref(), Some("µmol/L"), "Latin-1 decoded");
    let bad = ms.iter().find(|m| m.status == "invalid").unwrap();
    assert_eq!(bad.protocol, "file");
    assert_eq!(
        bad.parse_errors.as_deref(),
        Some("line 1: column \"Result\" missing")
    );
    // The stored text is the file itself, so the record can be decoded again.
    let texts = gw.reader().texts("cedex").unwrap();
    assert!(texts.contains(&export_fixture("res_20240312102200.csv")));

    // More scans store nothing new, and no file was touched.
    assert_eq!(count_after_scans(&gw), 3, "{}", gw.log());
    assert_eq!(snapshot(&folder), before, "files unchanged on disk");

    // `pocketgate records` shows the invalid one with its error.
    let out = Command::new(BIN)
        .args(["records", "--status", "invalid", "--db"])
        .arg(gw.db())
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("line 1: column \\\"Result\\\" missing"),
        "{listed}"
    );
}

#[test]
fn rows_appended_to_a_daily_file_are_stored_alone_and_survive_a_restart() {
    let (_dir, folder) = stick();
    let day = folder.join("res_20240312000000.csv");
    let header =
        "\"Sample ID\";\"Sample type\";\"Test\";\"Result\";\"Unit\";\"Flag\";\"Measured\"\r\n";
    let row = |s: &str, t: &str, v: &str| {
        format!("\"{s}\";\"Sample\";\"{t}\";\"{v}\";\"mmol/L\";\"\";\"12.03.2024 10:00:00\"\r\n")
    };
    let first = format!(
        "{header}{}{}",
        row("A1", "GLC2B", "5.1"),
        row("A2", "GLC2B", "6.2")
    );
    std::fs::write(&day, &first).unwrap();
    let mut gw = Gateway::start(&cedex_source("cedex", &folder));
    let ms = wait_messages(&gw, 1);
    assert_eq!(values(&ms[0]), ["A1 GLC2B=5.1", "A2 GLC2B=6.2"]);

    // The analyzer appends one row: only that row is stored, with the header in front.
    let appended = row("A3", "LAC2B", "1.9");
    let mut f = std::fs::OpenOptions::new().append(true).open(&day).unwrap();
    std::io::Write::write_all(&mut f, appended.as_bytes()).unwrap();
    drop(f);
    let ms = wait_messages(&gw, 2);
    assert_eq!(values(&ms[1]), ["A3 LAC2B=1.9"]);
    assert_eq!(
        gw.reader().texts("cedex").unwrap()[1],
        format!("{header}{appended}").into_bytes()
    );
    assert_eq!(count_after_scans(&gw), 2);

    // A restart does not read the old rows again (progress is in the store); a new row after
    // it is read.
    gw.kill9();
    gw.spawn();
    assert_eq!(count_after_scans(&gw), 2, "{}", gw.log());
    let mut f = std::fs::OpenOptions::new().append(true).open(&day).unwrap();
    std::io::Write::write_all(&mut f, row("A4", "GLC2B", "7.0").as_bytes()).unwrap();
    drop(f);
    let ms = wait_messages(&gw, 3);
    assert_eq!(values(&ms[2]), ["A4 GLC2B=7.0"]);
    assert_eq!(count_after_scans(&gw), 3);
}

#[test]
fn stick_pulled_and_plugged_back_is_read_again_without_duplicates() {
    let (dir, folder) = stick();
    std::fs::write(
        folder.join("res_20240312102200.csv"),
        export_fixture("res_20240312102200.csv"),
    )
    .unwrap();
    let gw = Gateway::start(&cedex_source("cedex", &folder));
    wait_messages(&gw, 1);

    // Pull the stick: the mount point disappears.
    let away = dir.path().join("pulled");
    std::fs::rename(&folder, &away).unwrap();
    gw.wait_log("folder not readable");
    // Plug it back with one more export (copied anew: new mtimes).
    std::fs::create_dir(&folder).unwrap();
    for e in std::fs::read_dir(&away).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), folder.join(e.file_name())).unwrap();
    }
    std::fs::write(
        folder.join("res_20240315110000.csv"),
        b"\"Sample ID\";\"Test\";\"Result\";\"Unit\";\"Flag\";\"Measured\"\r\n\
          \"SMP-0009\";\"GLC2B\";\"3.90\";\"mmol/L\";\"L\";\"15.03.2024 11:00:00\"\r\n",
    )
    .unwrap();
    gw.wait_log("folder is back");
    let ms = wait_messages(&gw, 2);
    assert_eq!(values(&ms[1]), ["SMP-0009 GLC2B=3.90"]);
    assert_eq!(ms[1].observations[0].flags, ["L"]);
    assert_eq!(count_after_scans(&gw), 2, "{}", gw.log());
}

#[test]
fn decode_maps_an_export_file_with_a_profile() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(BIN)
        .args(["decode", "--protocol", "export", "--profile"])
        .arg(root.join("config/profiles/pima-csv.toml"))
        .arg(root.join(
            "tests/fixtures/exports/PIMA-D-001234_2012-05-25_15-22-10_AssayID_2_(PIMA_CD4).csv",
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["test_code"], "CD4");
    assert_eq!(line["value"], "412");
    assert_eq!(line["observed_at"], "2012-05-25T15:22:10");

    let out = Command::new(BIN)
        .args(["decode", "--protocol", "export", "--profile"])
        .arg(root.join("config/profiles/pima-csv.toml"))
        .arg(root.join("tests/fixtures/exports/pima-missing-column.csv"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 1: column \"CD4 Count\" missing"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
