//! `pocketgate net …` as the image's first boot and a person at a shell run it.

use crate::support::*;
use std::process::Command;

fn net(args: &[&str]) -> std::process::Output {
    Command::new(BIN).arg("net").args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn first_boot_init_then_render_gives_files_the_real_daemons_accept() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("network.toml");
    let f = file.to_str().unwrap();
    let init = || {
        net(&[
            "init",
            "--network",
            f,
            "--suffix",
            "1a2b",
            "--country",
            "KE",
        ])
    };
    let out = init();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    let passphrase = printed
        .lines()
        .find_map(|l| l.strip_prefix("passphrase="))
        .expect("the passphrase is printed for the label");
    assert!(printed.contains("ssid=pocketgate-1a2b"), "{printed}");
    assert_eq!(passphrase.len(), 19, "{passphrase}");

    // init refuses to overwrite (the label's passphrase would be lost).
    let again = init();
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("--force"));

    let out = net(&["check", "--network", f]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let rendered = dir.path().join("out");
    let out = net(&[
        "render",
        "--network",
        f,
        "--out",
        rendered.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let hostapd = std::fs::read_to_string(rendered.join("etc/hostapd/hostapd.conf")).unwrap();
    assert!(
        hostapd.contains(&format!("\nwpa_passphrase={passphrase}\n")),
        "{hostapd}"
    );
    assert!(
        hostapd.contains("\nssid2=\"pocketgate-1a2b\"\n"),
        "{hostapd}"
    );
    let dnsmasq = rendered.join("etc/dnsmasq.conf");
    let check = Command::new("/usr/sbin/dnsmasq")
        .args(["--test", "-C"])
        .arg(&dnsmasq)
        .output()
        .expect("dnsmasq is installed (apt-get install dnsmasq-base; .ci/run does)");
    assert!(check.status.success(), "{}", text(&check.stderr));
    assert!(rendered.join("etc/network/interfaces").exists());
}

#[test]
fn apply_into_a_root_runs_the_restart_commands_once_per_change() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("restarts.log");
    let root = dir.path().join("root");
    let file = dir.path().join("network.toml");
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/network.toml"),
    )
    .unwrap();
    let system = format!(
        "\n[system]\nroot = {root:?}\nrestart = [\"sh\", \"-c\", \"echo {{service}} >> {log}\"]\n",
        root = root.display().to_string(),
        log = log.display()
    );
    std::fs::write(&file, format!("{example}{system}")).unwrap();
    let f = file.to_str().unwrap();
    let out = net(&["apply", "--network", f]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("restarted hostapd"));
    assert!(root.join("etc/wpa_supplicant/wpa_supplicant.conf").exists());
    let out = net(&["apply", "--network", f]);
    assert!(out.status.success());
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "networking\nhostapd\ndnsmasq\nwpa_supplicant\n",
        "the second apply changed nothing and restarted nothing"
    );
}

#[test]
fn check_names_the_field_and_line_of_a_bad_network_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("network.toml");
    std::fs::write(
        &file,
        "country = \"US\"\n[hotspot]\nssid = \"x\"\npassphrase = \"k7qm-x3vt-9hpa-w2dc\"\nchannel = 13\n",
    )
    .unwrap();
    let out = net(&["check", "--network", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("hotspot.channel (line 5): channel 13 is not allowed in US"),
        "{err}"
    );
}

#[test]
fn passphrase_prints_a_fresh_readable_one() {
    let a = text(&net(&["passphrase"]).stdout);
    let b = text(&net(&["passphrase"]).stdout);
    assert_ne!(a, b);
    assert_eq!(a.trim().split('-').count(), 4, "{a}");
}
