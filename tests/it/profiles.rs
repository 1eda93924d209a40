//! Device profiles as a user meets them: `pocketgate profiles`, `decode --profile`, a running
//! source whose stored observations carry the profile's names and LOINC codes, and a profile
//! mistake reported by `check-config` with the profile's file and line.

use crate::support::*;
use pocketgate::sim::{self, SimOptions};
use serde_json::Value;
use std::process::Command;

fn decode(args: &[&str]) -> Vec<Value> {
    let out = Command::new(BIN)
        .arg("decode")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn profiles_command_lists_the_builtin_profiles() {
    let out = Command::new(BIN)
        .args(["profiles", "--config", "/nonexistent/pocketgate.toml"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for name in [
        "genexpert-astm",
        "genexpert-hl7",
        "sysmex-xn",
        "sysmex-xp",
        "mindray-bc5380",
        "cobas-c111",
        "cobas-c311",
        "afinion-2",
        "dca-vantage",
        "pentra-xlr",
        "yumizen-h500",
        "nova-statstrip-poct1",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "{name} missing:\n{text}"
        );
    }
    assert!(!text.contains("unreadable"), "{text}");
}

#[test]
fn decode_with_a_profile_adds_names_units_and_loinc() {
    let file = "tests/fixtures/astm/s15-siemens-dca-vantage.astm";
    let plain = decode(&[file]);
    let rich = decode(&["--profile", "dca-vantage", file]);
    assert_eq!(plain.len(), rich.len());
    let ratio = |obs: &[Value]| {
        obs.iter()
            .find(|o| o["test_code"] == "Ratio")
            .cloned()
            .unwrap()
    };
    assert_eq!(ratio(&plain)["test_name"], Value::Null);
    assert_eq!(ratio(&plain)["extra"].get("loinc"), None);
    assert_eq!(
        ratio(&rich)["test_name"],
        "Albumin/creatinine ratio in urine"
    );
    assert_eq!(ratio(&rich)["extra"]["loinc"], "14959-1");
    // Everything the message said is unchanged.
    for key in ["value", "unit", "sample_id", "observed_at"] {
        assert_eq!(ratio(&rich)[key], ratio(&plain)[key], "{key}");
    }
    // A profile given as a path works the same.
    let by_path = decode(&["--profile", "config/profiles/dca-vantage.toml", file]);
    assert_eq!(by_path, rich);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_with_a_profile_stores_enriched_observations() {
    // The Afinion profile is for a serial cable; this site connects it over the LAN instead,
    // so the profile's serial settings must not be inherited.
    let addr = free_addr();
    let mut gw = Gateway::start(&format!(
        "[[sources]]\nid = \"afinion\"\nprofile = \"afinion-2\"\ntransport = \"tcp-server\"\nlisten = \"{addr}\"\n"
    ));
    gw.wait_listening(addr);
    let msgs = sim::messages_from_capture(&fixture("s14-abbott-afinion2.astm"));
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let report = sim::play(&mut s, &msgs, &SimOptions::default())
        .await
        .unwrap();
    assert_eq!(report.acked, vec![0], "{report:?}\n{}", gw.log());
    gw.kill9();
    let stored = gw.reader().messages(None, 10).unwrap();
    let o = &stored[0].observations[0];
    assert_eq!(o.test_code, "HbA1c");
    assert_eq!(o.value.as_deref(), Some("5.9"));
    assert_eq!(o.test_name.as_deref(), Some("Hemoglobin A1c"));
    assert_eq!(o.extra.get("loinc").map(String::as_str), Some("4548-4"));
}

#[test]
fn check_config_names_the_profile_file_and_line_of_a_mistake() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("profiles")).unwrap();
    std::fs::write(
        dir.path().join("profiles/site-xn.toml"),
        "[profile]\nname = \"XN at this site\"\n\nprotocol = \"astm\"\ntransport = \"serial\"\nbaud = 96000\n",
    )
    .unwrap();
    let config = dir.path().join("pocketgate.toml");
    std::fs::write(
        &config,
        "[gateway]\ndata_dir = \"/tmp/x\"\n\n[[sources]]\nid = \"xn\"\nprofile = \"site-xn\"\nport = \"/dev/ttyUSB0\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let profile = dir.path().join("profiles/site-xn.toml");
    assert!(
        err.contains(&format!(
            "sources[0].baud (line 6): 96000 is not a supported baud rate (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200) (from profile \"site-xn\", {} line 6)",
            profile.display()
        )),
        "{err}"
    );
}
