//! Tests of the network engine: the file format, the renderers (parsed back, and checked by the
//! real hostapd / wpa_supplicant / dnsmasq where installed — `.ci/run` installs them), the iw
//! parsers against tests/fixtures/net, and apply through both `System`s.

use super::render::{
    self, DNSMASQ_CONF, HOSTAPD_CONF, INTERFACES, PPP_CHAT, PPP_PEER, WPA_SUPPLICANT_CONF,
};
use super::system::{self, Action};
use super::*;
use std::path::Path;

fn example() -> &'static str {
    include_str!("../../config/network.toml")
}

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/net")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn errors(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

const MINIMAL: &str = "country = \"KE\"\n[hotspot]\nssid = \"pocketgate-1a2b\"\npassphrase = \"k7qm-x3vt-9hpa-w2dc\"\n";

fn static_ethernet(address: &str, gateway: &str, dns: &[&str]) -> Ethernet {
    Ethernet {
        enabled: true,
        interface: "eth0".into(),
        mode: EthernetMode::Static {
            address: Ipv4Net::parse(address).unwrap(),
            gateway: Some(gateway.parse().unwrap()),
            dns: dns.iter().map(|a| a.parse().unwrap()).collect(),
        },
    }
}

fn with_hotspot(extra: &str) -> String {
    format!("{MINIMAL}{extra}\n")
}

// ---------------------------------------------------------------- file format and validation

#[test]
fn example_network_file_parses_with_its_values() {
    let n = parse(example()).unwrap_or_else(|e| panic!("config/network.toml:\n{e}"));
    assert_eq!(n.country.as_str(), "KE");
    let h = n.hotspot.as_ref().expect("hotspot");
    assert_eq!(h.ap.ssid.as_str(), "pocketgate-1a2b");
    assert_eq!(h.ap.auth_method, AuthMethod::WPA2Personal);
    assert_eq!(h.ap.channel, 6);
    assert_eq!(h.address.to_string(), "192.168.4.1/24");
    assert_eq!(
        (h.dhcp_start.to_string(), h.dhcp_end.to_string()),
        ("192.168.4.10".into(), "192.168.4.200".into())
    );
    let w = n.wifi.as_ref().expect("wifi");
    assert_eq!(w.interface, "wlan1");
    assert_eq!(w.networks.len(), 2);
    assert_eq!(
        w.networks[0].client.password.as_str(),
        "correct horse battery"
    );
    assert_eq!(w.networks[1].client.auth_method, AuthMethod::None);
    assert_eq!(
        n.ethernet.as_ref().map(|e| &e.mode),
        Some(&EthernetMode::Dhcp)
    );
    let c = n.cellular.as_ref().expect("cellular");
    assert!(!c.enabled);
    assert_eq!(c.apn, "safaricom");
    assert_eq!(n.system, SystemSettings::default());
}

#[test]
fn defaults_fill_a_minimal_hotspot() {
    let n = parse(MINIMAL).unwrap();
    let h = n.hotspot.unwrap();
    assert!(h.enabled && h.captive_portal && !h.ap.ssid_hidden);
    assert_eq!(h.interface, "wlan0");
    assert_eq!(h.ap.channel, 6);
    assert_eq!(h.address.to_string(), "192.168.4.1/24");
    assert_eq!(h.dhcp_start.to_string(), "192.168.4.10");
    assert_eq!(h.dhcp_end.to_string(), "192.168.4.200");
    assert_eq!(h.lease.as_secs(), 12 * 3600);
}

#[test]
fn every_mistake_is_reported_at_once_with_path_and_line() {
    let text = "country = \"XX\"\n\
                [hotspot]\n\
                ssid = \"this-name-is-far-too-long-for-an-ssid\"\n\
                passphrase = \"short\"\n\
                channel = 15\n\
                address = \"192.168.4.1/24\"\n\
                dhcp_start = \"192.168.5.10\"\n\
                lease = \"1s\"\n\
                [[wifi.networks]]\n\
                ssid = \"\"\n\
                priority = -1\n";
    let e = errors(text);
    let joined = e.join("\n");
    for expected in [
        "country (line 1): \"XX\" is not an ISO 3166-1 alpha-2 country code",
        "hotspot.ssid (line 3): \"this-name-is-far-too-long-for-an-ssid\" is 37 bytes; an SSID is 1 to 32 bytes",
        "hotspot.passphrase (line 4): 5 characters; a WPA2 passphrase is 8 to 63",
        "hotspot.channel (line 5): 15 is out of range (1 ..= 14)",
        "hotspot.dhcp_start (line 7): 192.168.5.10 is not a host address of the hotspot subnet 192.168.4.0/24",
        "hotspot.lease (line 8): \"1s\" is out of range (2m ..= 7d)",
        "wifi.networks[0].ssid (line 10): \"\" is 0 bytes",
        "wifi.networks[0].priority (line 11): -1 is out of range (0 ..= 1000)",
    ] {
        assert!(
            joined.contains(expected),
            "missing {expected:?} in:\n{joined}"
        );
    }
    // The passphrase itself is never echoed.
    assert!(!joined.contains("\"short\""), "{joined}");
}

#[test]
fn channels_12_and_13_are_allowed_in_kenya_but_not_in_the_us() {
    assert!(parse(&with_hotspot("channel = 13")).is_ok());
    let us = with_hotspot("channel = 12").replace("\"KE\"", "\"US\"");
    assert_eq!(
        errors(&us),
        ["hotspot.channel (line 5): channel 12 is not allowed in US (2.4 GHz channels 1 ..= 11)"]
    );
    let jp14 = with_hotspot("channel = 14").replace("\"KE\"", "\"JP\"");
    assert!(errors(&jp14)[0].contains("channel 14 is not allowed in JP"));
    assert!(
        parse(&with_hotspot("channel = 11").replace("\"KE\"", "\"us\"")).is_ok(),
        "lower case country"
    );
}

#[test]
fn passphrase_rules_follow_wpa2() {
    assert_eq!(check_passphrase("12345678"), Ok(PassphraseKind::Text));
    assert_eq!(check_passphrase(&"a".repeat(63)), Ok(PassphraseKind::Text));
    assert_eq!(
        check_passphrase(&"aB3f".repeat(16)),
        Ok(PassphraseKind::Hex)
    );
    assert!(
        check_passphrase("1234567")
            .unwrap_err()
            .starts_with("7 characters")
    );
    assert!(
        check_passphrase(&"g".repeat(64))
            .unwrap_err()
            .starts_with("64 characters")
    );
    assert!(
        check_passphrase("pässwort-lang")
            .unwrap_err()
            .contains("character 2 ('ä') is not printable ASCII")
    );
    assert!(check_passphrase("tab\there!").is_err());
    assert_eq!(
        check_passphrase(" quote\"and#hash "),
        Ok(PassphraseKind::Text)
    );
}

#[test]
fn dhcp_range_must_not_contain_the_box_and_must_be_ordered() {
    let e = errors(&with_hotspot(
        "address = \"10.0.0.50/24\"\ndhcp_start = \"10.0.0.10\"\ndhcp_end = \"10.0.0.100\"",
    ));
    assert_eq!(
        e,
        [
            "hotspot.dhcp_start (line 6): the DHCP range 10.0.0.10 – 10.0.0.100 contains the box's own address 10.0.0.50 (hotspot.address)"
        ]
    );
    let e = errors(&with_hotspot(
        "dhcp_start = \"192.168.4.90\"\ndhcp_end = \"192.168.4.20\"",
    ));
    assert_eq!(
        e,
        ["hotspot.dhcp_end (line 6): 192.168.4.20 comes before dhcp_start 192.168.4.90"]
    );
    let e = errors(&with_hotspot("dhcp_end = \"192.168.4.255\""));
    assert!(
        e[0].contains("192.168.4.255 is not a host address"),
        "{e:?}"
    );
}

#[test]
fn subnet_must_be_private_sane_and_a_host_address() {
    assert!(errors(&with_hotspot("address = \"8.8.8.1/24\""))[0].contains("not a private address"));
    assert!(
        errors(&with_hotspot("address = \"192.168.4.1/31\""))[0]
            .contains("prefix /31 is out of range (/16 ..= /30)")
    );
    assert!(
        errors(&with_hotspot("address = \"192.168.4.0/24\""))[0].contains("network or broadcast")
    );
    assert!(
        errors(&with_hotspot("address = \"192.168.4.1\""))[0]
            .contains("not an address with a prefix")
    );
    // A /28 without a DHCP range gets one that fits.
    let n = parse(&with_hotspot("address = \"172.16.9.1/28\"")).unwrap();
    let h = n.hotspot.unwrap();
    assert_eq!(
        (h.dhcp_start.to_string(), h.dhcp_end.to_string()),
        ("172.16.9.10".into(), "172.16.9.14".into())
    );
}

#[test]
fn unknown_key_names_it_and_its_line() {
    let e = errors(&with_hotspot("ssdi = \"x\""));
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("line 5: unknown field `ssdi`"), "{e:?}");
}

#[test]
fn one_radio_cannot_be_hotspot_and_client() {
    let e = errors(&with_hotspot(
        "[wifi]\ninterface = \"wlan0\"\n[[wifi.networks]]\nssid = \"x\"",
    ));
    assert!(
        e[0].starts_with("wifi.interface: wlan0 is also the hotspot's radio"),
        "{e:?}"
    );
    // With the hotspot off, the same radio may join networks.
    assert!(
        parse(&with_hotspot(
            "enabled = false\n[wifi]\ninterface = \"wlan0\"\n[[wifi.networks]]\nssid = \"x\""
        ))
        .is_ok()
    );
}

#[test]
fn ethernet_and_cellular_are_checked() {
    let e = errors(&with_hotspot(
        "[ethernet]\nmode = \"static\"\naddress = \"192.168.4.7/24\"\ngateway = \"10.1.1.1\"\ndns = [\"1.1.1.1\", \"x\"]",
    ));
    let joined = e.join("\n");
    assert!(
        joined.contains(
            "ethernet.gateway: 10.1.1.1 is not another host of the subnet 192.168.4.0/24"
        ),
        "{joined}"
    );
    assert!(
        joined.contains("ethernet.dns[1] (line 9): \"x\" is not an IPv4 address"),
        "{joined}"
    );
    assert!(
        joined.contains("ethernet.address: 192.168.4.7/24 overlaps the hotspot subnet"),
        "{joined}"
    );
    let e = errors(&with_hotspot("[ethernet]\naddress = \"10.0.0.2/24\""));
    assert_eq!(
        e,
        ["ethernet.address: only with mode = \"static\" (DHCP supplies it)"]
    );
    let e = errors(&with_hotspot(
        "[cellular]\napn = \"my apn\"\npin = \"12a4\"\npassword = 'a\"b'",
    ));
    let joined = e.join("\n");
    assert!(
        joined.contains("cellular.apn (line 6): \"my apn\" is not an APN"),
        "{joined}"
    );
    assert!(
        joined.contains("cellular.pin (line 7): a SIM PIN is 4 to 8 digits"),
        "{joined}"
    );
    assert!(joined.contains("cellular.password (line 8)"), "{joined}");
    assert!(
        errors(&with_hotspot("[cellular]\ndevice = \"/dev/ttyUSB2\""))[0]
            .contains("cellular.apn: required")
    );
}

#[test]
fn duplicate_client_ssid_names_the_first() {
    let e = errors(&with_hotspot(
        "[wifi]\n[[wifi.networks]]\nssid = \"A\"\n[[wifi.networks]]\nssid = \"B\"\n[[wifi.networks]]\nssid = \"A\"",
    ));
    assert_eq!(
        e,
        ["wifi.networks[2].ssid (line 11): \"A\" is already wifi.networks[0]"]
    );
}

#[test]
fn first_boot_network_validates_and_round_trips_through_toml() {
    let n = Network::first_boot("1A:2B", Country::parse("ug").unwrap());
    validate(&n).unwrap_or_else(|e| panic!("{e}\n{}", to_toml(&n)));
    let h = n.hotspot.as_ref().unwrap();
    assert_eq!(h.ap.ssid.as_str(), "pocketgate-1A2B");
    assert_eq!(
        check_passphrase(h.ap.password.as_str()),
        Ok(PassphraseKind::Text)
    );
    assert_eq!(parse(&to_toml(&n)).unwrap(), n);
    // The example, edited, also survives the trip (static Ethernet, open network, cellular).
    let mut e = parse(example()).unwrap();
    e.ethernet = Some(static_ethernet("10.10.0.5/16", "10.10.0.1", &["10.10.0.1"]));
    assert_eq!(parse(&to_toml(&e)).unwrap(), e);
}

#[test]
fn validate_refuses_what_the_file_cannot_say() {
    let mut n = parse(MINIMAL).unwrap();
    n.hotspot.as_mut().unwrap().ap.auth_method = AuthMethod::None;
    assert!(
        validate(&n)
            .unwrap_err()
            .to_string()
            .contains("only WPA2-PSK hotspots")
    );
    let mut n = parse(MINIMAL).unwrap();
    n.hotspot.as_mut().unwrap().ap.password = "short".try_into().unwrap();
    let e = validate(&n).unwrap_err();
    assert_eq!(e.0[0].path, "hotspot.passphrase");
}

#[test]
fn save_is_atomic_private_and_refuses_invalid_edits() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("network.toml");
    let n = parse(example()).unwrap();
    save(&path, &n).unwrap();
    assert_eq!(load(&path).unwrap(), n);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let mut bad = n.clone();
    bad.hotspot.as_mut().unwrap().dhcp_start = "192.168.4.1".parse().unwrap();
    let err = save(&path, &bad).unwrap_err();
    assert!(!err.can_retry());
    assert!(err.to_string().contains("hotspot.dhcp_start"), "{err}");
    assert_eq!(load(&path).unwrap(), n, "the file on disk is unchanged");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "no temp file left: {names:?}");
}

#[test]
fn debug_never_prints_secrets() {
    let n = parse(&with_hotspot("[wifi]\n[[wifi.networks]]\nssid = \"x\"\npassphrase = \"client-secret-1\"\n[cellular]\napn = \"internet\"\npassword = \"ppp-secret-1\"\npin = \"4321\"")).unwrap();
    let dbg = format!("{n:?}");
    for secret in [
        "k7qm-x3vt-9hpa-w2dc",
        "client-secret-1",
        "ppp-secret-1",
        "4321",
    ] {
        assert!(!dbg.contains(secret), "{secret} in {dbg}");
    }
    let files = format!("{:?}", render(&n));
    assert!(!files.contains("k7qm"), "{files}");
}

#[test]
fn generated_passphrases_are_valid_readable_and_different() {
    let a = generate_passphrase();
    let b = generate_passphrase();
    assert_ne!(a, b);
    for p in [&a, &b] {
        assert_eq!(p.len(), 19, "{p}");
        let groups: Vec<&str> = p.split('-').collect();
        assert_eq!(groups.len(), 4, "{p}");
        assert!(groups.iter().all(|g| g.len() == 4), "{p}");
        assert!(!p.contains(['0', 'o', '1', 'l', 'i', 'u', 'v']), "{p}");
        assert_eq!(check_passphrase(p), Ok(PassphraseKind::Text));
    }
}

// ---------------------------------------------------------------- renderers, parsed back

/// `key=value` lines (hostapd.conf, dnsmasq.conf), comments skipped, value verbatim.
fn key_values(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn get<'a>(kv: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    kv.iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// An SSID value as hostapd/wpa_supplicant read it: between the outer quotes, or hex.
fn ssid_bytes(v: &str) -> Vec<u8> {
    if let Some(inner) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        return inner.as_bytes().to_vec();
    }
    (0..v.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&v[i..i + 2], 16).unwrap())
        .collect()
}

/// wpa_supplicant.conf: global `key=value`s and one list per `network={…}` block.
type Blocks = Vec<Vec<(String, String)>>;
fn wpa_blocks(text: &str) -> (Vec<(String, String)>, Blocks) {
    let (mut globals, mut blocks) = (Vec::new(), Vec::new());
    let mut cur: Option<Vec<(String, String)>> = None;
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        if line == "network={" {
            cur = Some(Vec::new());
        } else if line == "}" {
            blocks.push(cur.take().expect("} closes a block"));
        } else {
            let (k, v) = line.split_once('=').expect("key=value");
            match cur.as_mut() {
                Some(b) => b.push((k.to_owned(), v.to_owned())),
                None => globals.push((k.to_owned(), v.to_owned())),
            }
        }
    }
    assert!(cur.is_none(), "unclosed network block");
    (globals, blocks)
}

fn odd_network() -> Network {
    let text = "country = \"DE\"\n\
        [hotspot]\nssid = 'Café \"Lab\" #2 '\npassphrase = ' quote\"and#hash '\nchannel = 13\nhidden = true\n\
        address = \"10.42.0.1/16\"\ndhcp_start = \"10.42.1.1\"\ndhcp_end = \"10.42.1.254\"\nlease = \"30m\"\n\
        [wifi]\n\
        [[wifi.networks]]\nssid = 'say \"hi\" # now'\npassphrase = '\"quoted\" and # not a comment'\npriority = 5\nhidden = true\n\
        [[wifi.networks]]\nssid = \"Open\\u0007Bell\"\n\
        [[wifi.networks]]\nssid = \"hexkey\"\npassphrase = \"00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff\"\n";
    parse(text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn hostapd_conf_reads_back_with_escaped_ssid_and_verbatim_passphrase() {
    let n = odd_network();
    let h = n.hotspot.as_ref().unwrap();
    let kv = key_values(&render::hostapd_conf(h, &n));
    let one = |k: &str| {
        let v = get(&kv, k);
        assert_eq!(v.len(), 1, "{k}: {v:?}");
        v[0].to_owned()
    };
    // Not printable ASCII (é): hex, flagged UTF-8.
    assert_eq!(
        one("ssid2"),
        "436166c3a920224c616222202332 20".replace(' ', "")
    );
    assert_eq!(ssid_bytes(&one("ssid2")), "Café \"Lab\" #2 ".as_bytes());
    assert_eq!(one("utf8_ssid"), "1");
    assert_eq!(one("wpa_passphrase"), " quote\"and#hash ");
    assert_eq!(
        (
            one("channel"),
            one("country_code"),
            one("ignore_broadcast_ssid")
        ),
        ("13".into(), "DE".into(), "1".into())
    );
    assert_eq!(
        (one("wpa"), one("wpa_key_mgmt"), one("rsn_pairwise")),
        ("2".into(), "WPA-PSK".into(), "CCMP".into())
    );
    assert_eq!(one("interface"), "wlan0");
    // A plain name is quoted and read back as is.
    let plain = parse(example()).unwrap();
    let kv = key_values(&render::hostapd_conf(
        plain.hotspot.as_ref().unwrap(),
        &plain,
    ));
    assert_eq!(get(&kv, "ssid2"), ["\"pocketgate-1a2b\""]);
    assert!(get(&kv, "utf8_ssid").is_empty());
}

#[test]
fn wpa_supplicant_conf_reads_back_every_network() {
    let n = odd_network();
    let (globals, blocks) = wpa_blocks(&render::wpa_supplicant_conf(n.wifi.as_ref().unwrap(), &n));
    assert_eq!(get(&globals, "country"), ["DE"]);
    assert_eq!(get(&globals, "ctrl_interface"), ["DIR=/run/wpa_supplicant"]);
    assert_eq!(blocks.len(), 3);
    let b0 = &blocks[0];
    assert_eq!(ssid_bytes(get(b0, "ssid")[0]), b"say \"hi\" # now");
    assert_eq!(get(b0, "psk"), ["\"\"quoted\" and # not a comment\""]);
    assert_eq!(
        (
            get(b0, "scan_ssid"),
            get(b0, "priority"),
            get(b0, "key_mgmt")
        ),
        (vec!["1"], vec!["5"], vec!["WPA-PSK"])
    );
    let b1 = &blocks[1];
    assert_eq!(
        get(b1, "ssid"),
        ["4f70656e0742656c6c"],
        "a control character forces hex"
    );
    assert_eq!(ssid_bytes(get(b1, "ssid")[0]), b"Open\x07Bell");
    assert_eq!(
        (get(b1, "key_mgmt"), get(b1, "psk")),
        (vec!["NONE"], vec![])
    );
    let b2 = &blocks[2];
    assert_eq!(
        get(b2, "psk"),
        ["00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"],
        "a raw PSK is unquoted hex"
    );
}

#[test]
fn dnsmasq_conf_serves_dhcp_and_captive_dns_on_the_hotspot_only() {
    let n = parse(example()).unwrap();
    let kv = key_values(&render::dnsmasq_conf(n.hotspot.as_ref().unwrap()));
    assert_eq!(get(&kv, "interface"), ["wlan0"]);
    assert_eq!(get(&kv, "except-interface"), ["lo"]);
    for flag in [
        "bind-interfaces",
        "no-resolv",
        "no-hosts",
        "dhcp-authoritative",
    ] {
        assert_eq!(get(&kv, flag), [""], "{flag}");
    }
    assert_eq!(
        get(&kv, "dhcp-range"),
        ["wlan0,192.168.4.10,192.168.4.200,255.255.255.0,43200"]
    );
    assert_eq!(
        get(&kv, "address"),
        ["/pocketgate.lan/192.168.4.1", "/#/192.168.4.1", "/#/::"]
    );
    assert_eq!(
        get(&kv, "dhcp-option"),
        [
            "wlan0,option:router,192.168.4.1",
            "wlan0,option:dns-server,192.168.4.1",
            "wlan0,114,\"http://192.168.4.1/\""
        ]
    );
    let mut quiet = n.hotspot.clone().unwrap();
    quiet.captive_portal = false;
    let kv = key_values(&render::dnsmasq_conf(&quiet));
    assert_eq!(get(&kv, "address"), ["/pocketgate.lan/192.168.4.1"]);
}

#[test]
fn interfaces_and_ppp_files_read_back() {
    let mut n = parse(example()).unwrap();
    n.ethernet = Some(static_ethernet(
        "10.1.2.3/24",
        "10.1.2.1",
        &["10.1.2.1", "8.8.8.8"],
    ));
    let text = render::interfaces(&n);
    // stanza per `iface` with its option lines.
    let stanzas: Vec<(String, Vec<String>)> = text
        .split("\niface ")
        .skip(1)
        .map(|s| {
            let mut lines = s.lines();
            let head = lines.next().unwrap().to_owned();
            (
                head,
                lines
                    .take_while(|l| l.starts_with('\t'))
                    .map(|l| l.trim().to_owned())
                    .collect(),
            )
        })
        .collect();
    let heads: Vec<&str> = stanzas.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(
        heads,
        [
            "lo inet loopback",
            "wlan0 inet static",
            "eth0 inet static",
            "wlan1 inet dhcp"
        ]
    );
    assert_eq!(
        stanzas[1].1,
        ["address 192.168.4.1", "netmask 255.255.255.0"]
    );
    assert_eq!(
        stanzas[2].1[..3],
        [
            "address 10.1.2.3",
            "netmask 255.255.255.0",
            "gateway 10.1.2.1"
        ]
    );
    assert_eq!(
        stanzas[2].1[3],
        "up printf 'nameserver %s\\n' 10.1.2.1 8.8.8.8 > /etc/resolv.conf"
    );
    for i in ["lo", "wlan0", "eth0", "wlan1"] {
        assert!(text.contains(&format!("\nauto {i}\n")), "auto {i}");
    }

    let mut c = n.cellular.clone().unwrap();
    c.user = Some("web".into());
    c.password = Some("web pass".into());
    let peer = render::ppp_peer(&c);
    let lines: Vec<&str> = peer.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines[0], "/dev/ttyUSB2");
    assert!(lines.contains(&"connect \"/usr/sbin/chat -v -f /etc/ppp/chat-pocketgate\""));
    assert!(
        lines.contains(&"maxfail 2"),
        "a PIN limits failed dials: {lines:?}"
    );
    assert!(lines.contains(&"user \"web\"") && lines.contains(&"password \"web pass\""));
    // The chat script as chat reads it: quoted expect/send pairs after the ABORT/TIMEOUT lines.
    let chat = render::ppp_chat(&c);
    let pairs: Vec<Vec<String>> = chat
        .lines()
        .filter(|l| l.starts_with('\''))
        .map(|l| {
            l.split("' '")
                .map(|s| s.trim_matches('\'').to_owned())
                .collect()
        })
        .collect();
    assert_eq!(
        pairs,
        [
            vec!["", "AT"],
            vec!["OK", "AT+CPIN?"],
            vec![
                "READY-AT+CPIN=\"1234\"-OK",
                "AT+CGDCONT=1,\"IP\",\"safaricom\""
            ],
            vec!["OK", "ATD*99#"],
            vec!["CONNECT", ""],
        ]
    );
    c.pin = None;
    assert!(render::ppp_peer(&c).contains("maxfail 0"));
    assert!(!render::ppp_chat(&c).contains("CPIN"));
}

#[test]
fn render_lists_files_of_enabled_parts_only() {
    let mut n = parse(example()).unwrap();
    let paths = |n: &Network| {
        render(n)
            .iter()
            .map(|f| f.path.display().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        paths(&n),
        [HOSTAPD_CONF, DNSMASQ_CONF, WPA_SUPPLICANT_CONF, INTERFACES]
    );
    n.cellular.as_mut().unwrap().enabled = true;
    n.hotspot.as_mut().unwrap().enabled = false;
    assert_eq!(
        paths(&n),
        [WPA_SUPPLICANT_CONF, INTERFACES, PPP_PEER, PPP_CHAT]
    );
    let modes: Vec<u32> = render(&n).iter().map(|f| f.mode).collect();
    assert_eq!(modes, [0o600, 0o644, 0o600, 0o600]);
}

// ---------------------------------------------------------------- the real daemons' parsers

fn tool(name: &str) -> std::path::PathBuf {
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "{name} is not installed: apt-get install -y hostapd wpasupplicant dnsmasq-base (.ci/run does)"
    );
}

/// Runs a daemon on a config for at most `wait`, returning everything it printed.
fn run_for(cmd: &mut std::process::Command, wait: std::time::Duration) -> String {
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut child = cmd
        .stdout(out.reopen().unwrap())
        .stderr(out.reopen().unwrap())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + wait;
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    std::fs::read_to_string(out.path()).unwrap()
}

fn written(dir: &Path, name: &str, contents: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p
}

#[test]
fn real_dnsmasq_accepts_the_rendered_file() {
    let dir = tempfile::tempdir().unwrap();
    let dnsmasq_test = |text: &str| {
        let conf = written(dir.path(), "dnsmasq.conf", text);
        let out = std::process::Command::new(tool("dnsmasq"))
            .args(["--test", "-C"])
            .arg(&conf)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for n in [parse(example()).unwrap(), odd_network()] {
        let (ok, text) = dnsmasq_test(&render::dnsmasq_conf(n.hotspot.as_ref().unwrap()));
        assert!(ok && text.contains("syntax check OK"), "{text}");
    }
    // And the check is real: a broken line fails it.
    let (ok, text) = dnsmasq_test("dhcp-range=wlan0,192.168.4.10,192.168.4.x\n");
    assert!(!ok && text.contains("bad dhcp-range at line 1"), "{text}");
}

/// One DNS question over UDP: the answer's rcode and its first record's data.
fn dns_query(port: u16, name: &str, qtype: u16) -> Option<(u8, Vec<u8>)> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(u8::try_from(label.len()).unwrap());
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, (qtype >> 8) as u8, qtype as u8, 0, 1]);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    sock.send_to(&q, ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).ok()?;
    let r = &buf[..n];
    let (rcode, answers) = (r[3] & 0x0f, u16::from_be_bytes([r[6], r[7]]));
    if answers == 0 {
        return Some((rcode, Vec::new()));
    }
    // The answer follows the echoed question; its name is a 2-byte pointer.
    let at = q.len() + 2 + 8;
    let len = usize::from(u16::from_be_bytes([r[at], r[at + 1]]));
    Some((rcode, r[at + 2..at + 2 + len].to_vec()))
}

/// The captive DNS for real: dnsmasq on the rendered file (moved to `lo` and a free port, DHCP
/// lines left out) answers any name with the box's address, AAAA with `::`.
#[test]
fn real_dnsmasq_answers_every_name_with_the_box_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = parse(example()).unwrap();
    let serve = |h: &Hotspot| {
        let text: String = render::dnsmasq_conf(h)
            .lines()
            .filter(|l| !l.starts_with("dhcp-") && *l != "except-interface=lo")
            .map(|l| {
                if l == "interface=wlan0" {
                    "interface=lo\n".to_owned()
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        let conf = written(dir.path(), "dnsmasq.conf", &text);
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(tool("dnsmasq"))
            .args(["-k", "--pid-file=", "-C"])
            .arg(&conf)
            .arg(format!("--port={port}"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while dns_query(port, "pocketgate.lan", 1).is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "dnsmasq did not answer on port {port}"
            );
        }
        (child, port)
    };
    let (mut child, port) = serve(n.hotspot.as_ref().unwrap());
    let a = dns_query(port, "connectivitycheck.gstatic.com", 1);
    let aaaa = dns_query(port, "captive.apple.com", 28);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(a, Some((0, vec![192, 168, 4, 1])));
    assert_eq!(
        aaaa,
        Some((0, vec![0; 16])),
        "AAAA answers :: rather than REFUSED"
    );

    n.hotspot.as_mut().unwrap().captive_portal = false;
    let (mut child, port) = serve(n.hotspot.as_ref().unwrap());
    let own = dns_query(port, "pocketgate.lan", 1);
    let other = dns_query(port, "connectivitycheck.gstatic.com", 1);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(own, Some((0, vec![192, 168, 4, 1])));
    assert_ne!(
        other.map(|(_, data)| data),
        Some(vec![192, 168, 4, 1]),
        "no captive answer when off"
    );
}

/// hostapd has no check-only mode; it parses the whole file before touching the driver, and
/// reports `N errors found in configuration file` (exiting) when the file is wrong. The test
/// points the copy at an interface that does not exist, so no radio is ever touched.
#[test]
fn real_hostapd_parses_the_rendered_file_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    let check = |text: &str| {
        let text = text
            .replace("interface=wlan0", "interface=pgtest0")
            .replace(
                "ctrl_interface=/run/hostapd",
                &format!("ctrl_interface={}", dir.path().join("ctl").display()),
            );
        let conf = written(dir.path(), "hostapd.conf", &text);
        run_for(
            std::process::Command::new(tool("hostapd")).arg(&conf),
            std::time::Duration::from_secs(5),
        )
    };
    for n in [parse(example()).unwrap(), odd_network()] {
        let out = check(&render::hostapd_conf(n.hotspot.as_ref().unwrap(), &n));
        assert!(
            out.contains("Configuration file:") || out.contains("pgtest0"),
            "hostapd did not start: {out}"
        );
        assert!(
            !out.contains("errors found in configuration file") && !out.contains("Line "),
            "{out}"
        );
    }
    let mut n = parse(example()).unwrap();
    n.hotspot.as_mut().unwrap().ap.password = "short".try_into().unwrap();
    let out = check(&render::hostapd_conf(n.hotspot.as_ref().unwrap(), &n));
    assert!(
        out.contains("invalid WPA passphrase length 5"),
        "the check can fail: {out}"
    );
}

/// wpa_supplicant with the `none` driver on `lo` reads the file and then idles; a bad file
/// makes it exit at once with `Failed to read or parse configuration`. With -dd -K it prints
/// each network's SSID and passphrase as it parsed them, which the test compares.
#[test]
fn real_wpa_supplicant_parses_the_rendered_file_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let n = odd_network();
    let conf = written(
        dir.path(),
        "wpa.conf",
        &render::wpa_supplicant_conf(n.wifi.as_ref().unwrap(), &n),
    );
    let out = run_for(
        std::process::Command::new(tool("wpa_supplicant"))
            .args(["-dd", "-K", "-D", "none", "-i", "lo", "-c"])
            .arg(&conf)
            .arg("-O")
            .arg(dir.path().join("ctl")),
        std::time::Duration::from_secs(2),
    );
    assert!(
        !out.contains("Failed to read or parse configuration"),
        "{out}"
    );
    assert!(
        out.contains("Line: 7 - start of a new network block"),
        "{out}"
    );
    // `"quoted" and # not a comment` is 28 characters: quotes inside kept, `#` not a comment.
    assert!(
        out.contains("PSK (ASCII passphrase) - hexdump_ascii(len=28)"),
        "{out}"
    );
    assert!(
        out.contains("ssid - hexdump_ascii(len=14)"),
        "say \"hi\" # now: {out}"
    );
    assert!(
        out.contains("ssid - hexdump_ascii(len=9)"),
        "Open\\x07Bell: {out}"
    );
    let raw = "PSK - hexdump(len=32): 00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff 00 11";
    assert!(out.contains(raw), "the 64-hex key is the PSK itself: {out}");
    let bad = written(
        dir.path(),
        "bad.conf",
        "network={\n\tssid=\"x\"\n\tpsk=\"short\"\n}\n",
    );
    let out = run_for(
        std::process::Command::new(tool("wpa_supplicant"))
            .args(["-D", "none", "-i", "lo", "-c"])
            .arg(&bad),
        std::time::Duration::from_secs(5),
    );
    assert!(
        out.contains("Failed to read or parse configuration"),
        "the check can fail: {out}"
    );
}

// ---------------------------------------------------------------- iw / ip parsers

#[test]
fn iw_scan_fixture_parses_strongest_first_with_security() {
    let all = scan::parse_scan(&fixture("iw-scan.txt"));
    assert_eq!(all.len(), 9);
    let row = |r: &ScanResult| {
        (
            r.ssid.clone(),
            r.channel,
            r.signal_dbm,
            r.security,
            r.associated,
        )
    };
    let rows: Vec<_> = all.iter().map(row).collect();
    assert_eq!(
        rows,
        [
            (
                "Clinic-Office".into(),
                Some(6),
                Some(-48.0),
                Security::Wpa2Psk,
                true
            ),
            ("".into(), Some(6), Some(-58.0), Security::Wpa2Psk, false),
            (
                "MoH Guest".into(),
                Some(1),
                Some(-63.0),
                Security::Open,
                false
            ),
            (
                "Director-WPA3".into(),
                Some(36),
                Some(-67.0),
                Security::Wpa3Sae,
                false
            ),
            (
                "Clinic-Office".into(),
                Some(11),
                Some(-71.0),
                Security::Wpa2Psk,
                false
            ),
            (
                "Café \\Lab ".into(),
                Some(3),
                Some(-75.0),
                Security::Wpa2Psk,
                false
            ),
            (
                "\u{fffd}\u{fffd}odd".into(),
                Some(4),
                Some(-77.0),
                Security::Enterprise,
                false
            ),
            (
                "OldRouter-WPA".into(),
                Some(9),
                Some(-80.0),
                Security::WpaPsk,
                false
            ),
            ("lab-wep".into(), Some(2), Some(-86.0), Security::Wep, false),
        ]
    );
    assert_eq!(all[0].bssid, "b8:27:eb:12:34:56");
    assert_eq!(all[3].freq_mhz, 5180);
    assert!(all[5].ssid_storable && !all[6].ssid_storable && !all[1].ssid_storable);
    let picker: Vec<String> = scan::networks(&all)
        .iter()
        .map(|r| r.ssid.clone())
        .collect();
    assert_eq!(
        picker.len(),
        7,
        "hidden dropped, Clinic-Office once: {picker:?}"
    );
    assert_eq!(picker[0], "Clinic-Office");
    let joinable: Vec<bool> = scan::networks(&all)
        .iter()
        .map(|r| r.security.can_join())
        .collect();
    assert_eq!(joinable, [true, true, false, true, false, true, false]);
}

#[test]
fn iw_escapes_and_newer_float_frequencies_are_read() {
    assert_eq!(scan::unescape_iw("\\x20a\\x5cb\\xzz"), b" a\\b\\xzz");
    let text = "BSS 00:11:22:33:44:55(on wlan1)\n\tfreq: 2412.0\n\tsignal: -40.00 dBm\n\tSSID: x\n";
    let r = scan::parse_scan(text);
    assert_eq!((r[0].freq_mhz, r[0].channel), (2412, Some(1)));
    assert!(scan::parse_scan("").is_empty());
    assert!(scan::parse_scan("command failed: Device or resource busy (-16)\n").is_empty());
}

#[test]
fn iw_link_and_ip_addr_fixtures_parse() {
    let link = scan::parse_link(&fixture("iw-link.txt")).expect("connected");
    assert_eq!(
        (
            link.bssid.as_str(),
            link.ssid.as_str(),
            link.freq_mhz,
            link.signal_dbm
        ),
        ("b8:27:eb:12:34:56", "Clinic-Office", 2437, Some(-48.0))
    );
    assert_eq!(scan::parse_link("Not connected.\n"), None);
    let addrs: Vec<String> = scan::parse_ip_addr(&fixture("ip-addr.txt"))
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(addrs, ["192.168.1.73/24", "10.20.0.5/16"]);
}

// ---------------------------------------------------------------- apply through both Systems

#[test]
fn apply_writes_changed_files_and_restarts_only_their_services() {
    let dir = tempfile::tempdir().unwrap();
    let mut sys = Recorder::new(dir.path());
    let mut n = parse(example()).unwrap();

    let r = apply(&n, &mut sys).unwrap();
    assert_eq!(r.written.len(), 4);
    assert_eq!(
        r.restarted,
        [
            Service::Networking,
            Service::Hostapd,
            Service::Dnsmasq,
            Service::WpaSupplicant
        ]
    );
    let hostapd = std::fs::read_to_string(dir.path().join(HOSTAPD_CONF)).unwrap();
    assert!(hostapd.contains("wpa_passphrase=k7qm-x3vt-9hpa-w2dc\n"));
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| {
        std::fs::metadata(dir.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(
        (
            mode(HOSTAPD_CONF),
            mode(WPA_SUPPLICANT_CONF),
            mode(DNSMASQ_CONF)
        ),
        (0o600, 0o600, 0o644)
    );

    // Nothing changed: nothing restarted (connections on the hotspot are not dropped).
    sys.actions.clear();
    let r = apply(&n, &mut sys).unwrap();
    assert!(r.written.is_empty() && sys.actions.is_empty(), "{r:?}");

    // A new hotspot passphrase: only hostapd restarts.
    n.hotspot.as_mut().unwrap().ap.password = "new-pass-2026".try_into().unwrap();
    let r = apply(&n, &mut sys).unwrap();
    assert_eq!(r.written, [Path::new(HOSTAPD_CONF)]);
    assert_eq!(sys.actions, [(Action::Restart, Service::Hostapd)]);

    // Hotspot off: its files go, its daemons stop, the address leaves interfaces.
    sys.actions.clear();
    n.hotspot.as_mut().unwrap().enabled = false;
    let r = apply(&n, &mut sys).unwrap();
    assert_eq!(
        r.removed,
        [Path::new(HOSTAPD_CONF), Path::new(DNSMASQ_CONF)]
    );
    assert_eq!(
        sys.actions,
        [
            (Action::Stop, Service::Hostapd),
            (Action::Stop, Service::Dnsmasq),
            (Action::Restart, Service::Networking)
        ]
    );
    assert!(!dir.path().join(HOSTAPD_CONF).exists());
    assert!(
        !std::fs::read_to_string(dir.path().join(INTERFACES))
            .unwrap()
            .contains("wlan0")
    );
}

#[test]
fn apply_reports_a_failed_restart_and_still_restarts_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut sys = Recorder::new(dir.path());
    sys.failing = vec![Service::Hostapd];
    let r = apply(&parse(example()).unwrap(), &mut sys).unwrap();
    assert!(!r.ok());
    assert_eq!(r.failed.len(), 1);
    assert_eq!(r.failed[0].0, Service::Hostapd);
    assert!(r.failed[0].1.can_retry());
    assert_eq!(
        r.restarted,
        [
            Service::Networking,
            Service::Dnsmasq,
            Service::WpaSupplicant
        ]
    );
    // Invalid input touches nothing.
    let mut bad = parse(example()).unwrap();
    bad.hotspot.as_mut().unwrap().ap.channel = 14;
    let before = sys.actions.len();
    assert!(matches!(apply(&bad, &mut sys), Err(NetError::Invalid(_))));
    assert_eq!(sys.actions.len(), before);
}

#[test]
fn host_runs_the_configured_commands_under_a_temp_root() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("services.log");
    let sh = |verb: &str| {
        vec![
            "sh".to_owned(),
            "-c".to_owned(),
            format!("echo {verb} {{service}} >> '{}'", log.display()),
        ]
    };
    let mut n = parse(example()).unwrap();
    n.system = SystemSettings {
        root: dir.path().join("root"),
        restart: sh("restart"),
        stop: sh("stop"),
        scan: vec!["cat".into(), fixture_path("iw-scan.txt")],
        reboot: sh("reboot"),
    };
    let mut host = Host::new(&n.system);
    let r = apply(&n, &mut host).unwrap();
    assert!(r.ok(), "{r:?}");
    assert!(dir.path().join("root").join(DNSMASQ_CONF).exists());
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "restart networking\nrestart hostapd\nrestart dnsmasq\nrestart wpa_supplicant\n"
    );
    assert_eq!(host.scan("wlan1").unwrap().len(), 9);
    host.reboot().unwrap();
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .ends_with("reboot {service}\n"),
        "reboot ran its own command"
    );

    // A failing command carries its status and stderr.
    host.settings.restart = vec![
        "sh".into(),
        "-c".into(),
        "echo no such service {service} >&2; exit 3".into(),
    ];
    let e = host.restart(Service::Dnsmasq).unwrap_err();
    assert_eq!(
        e.to_string(),
        "sh -c echo no such service dnsmasq >&2; exit 3 failed (exit status: 3): no such service dnsmasq"
    );
    host.settings.restart = vec!["/nonexistent/init".into()];
    assert!(!host.restart(Service::Dnsmasq).unwrap_err().can_retry());
    // A hung command is killed at the deadline.
    host.timeout = std::time::Duration::from_millis(300);
    host.settings.stop = vec!["sleep".into(), "10".into()];
    let t = std::time::Instant::now();
    let e = host.stop(Service::Pppd).unwrap_err();
    assert!(t.elapsed() < std::time::Duration::from_secs(5), "{e}");
    assert!(e.to_string().contains("timed out"), "{e}");
}

#[test]
fn host_link_reads_sysfs_and_reports_missing_interfaces() {
    let dir = tempfile::tempdir().unwrap();
    let eth = dir.path().join("eth9");
    std::fs::create_dir_all(&eth).unwrap();
    std::fs::write(eth.join("operstate"), "up\n").unwrap();
    std::fs::write(eth.join("carrier"), "1\n").unwrap();
    let mut host = Host::new(&SystemSettings::default());
    host.sys_class_net = dir.path().to_path_buf();
    let s = host.link("eth9").unwrap();
    assert!(
        s.exists && s.up && s.carrier == Some(true) && s.wifi.is_none(),
        "{s:?}"
    );
    let s = host.link("wlan7").unwrap();
    assert!(!s.exists && !s.up);
}

fn fixture_path(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/net")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn write_atomic_replaces_and_sets_the_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a/b/c.conf");
    system::write_atomic(&p, b"one", 0o644).unwrap();
    system::write_atomic(&p, b"two", 0o600).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"two");
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn empty_passphrases_from_a_write_only_form_keep_the_old_ones() {
    let old = parse(example()).unwrap();
    let mut edited = old.clone();
    edited.hotspot.as_mut().unwrap().ap.password = Default::default();
    edited.hotspot.as_mut().unwrap().ap.channel = 11;
    let w = edited.wifi.as_mut().unwrap();
    w.networks[0].client.password = Default::default();
    let mut renamed = w.networks[0].clone();
    renamed.client.ssid = "Clinic-Office-2".try_into().unwrap();
    w.networks.push(renamed);
    edited.keep_unchanged_secrets(&old);
    let h = edited.hotspot.as_ref().unwrap();
    assert_eq!(
        (h.ap.password.as_str(), h.ap.channel),
        ("k7qm-x3vt-9hpa-w2dc", 11)
    );
    let w = edited.wifi.as_ref().unwrap();
    assert_eq!(
        w.networks[0].client.password.as_str(),
        "correct horse battery"
    );
    assert_eq!(
        w.networks[2].client.password.as_str(),
        "",
        "a new name gets no old secret"
    );
    let e = validate(&edited).unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert_eq!(e.0[0].path, "wifi.networks[2].passphrase");
    assert_eq!(
        default_path(Path::new("/data")),
        Path::new("/data/network.toml")
    );
}

/// pppd reads the whole options file before it needs `/dev/ppp`; an option it does not know
/// exits with status 2 naming it. (The device must exist when pppd starts: an absent modem is
/// "unrecognized option '/dev/ttyUSB2'", so the copy checked here names /dev/null.)
#[test]
fn real_pppd_accepts_the_rendered_peer_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = parse(example()).unwrap();
    let c = n.cellular.as_mut().unwrap();
    (c.user, c.password) = (Some("web".into()), Some("web pass".into()));
    let peer = render::ppp_peer(c).replace("/dev/ttyUSB2", "/dev/null");
    let pppd = |text: &str| {
        let f = written(dir.path(), "peer", text);
        let out = std::process::Command::new(tool("pppd"))
            .arg("file")
            .arg(&f)
            .arg("dryrun")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = pppd(&peer);
    assert!(
        !err.contains("unrecognized option") && !err.contains("In file") && code != Some(2),
        "{code:?} {err}"
    );
    let (code, err) = pppd(&format!("{peer}maxfial 2\n"));
    assert_eq!(code, Some(2), "the check can fail: {err}");
    assert!(err.contains("unrecognized option 'maxfial'"), "{err}");
}

/// The chat script against a fake modem: chat needs a terminal, so socat gives it a pty and
/// the test is the modem on socat's stdin/stdout. A SIM that asks for its PIN gets it once; a
/// SIM that is READY is never sent one (an unconditional AT+CPIN would fail with ERROR on every
/// redial after the first).
#[test]
fn real_chat_script_unlocks_the_sim_only_when_asked_and_dials() {
    use std::io::{Read, Write};
    let n = parse(example()).unwrap();
    // 1 s instead of 10 s for "no READY within TIMEOUT, send the PIN".
    let script = render::ppp_chat(n.cellular.as_ref().unwrap()).replace("TIMEOUT 10", "TIMEOUT 1");
    let dir = tempfile::tempdir().unwrap();
    let file = written(dir.path(), "chat", &script);
    let status = dir.path().join("status");
    let run = written(
        dir.path(),
        "run.sh",
        &format!(
            "#!/bin/sh\n{} -f '{}'\necho $? > '{}'\n",
            tool("chat").display(),
            file.display(),
            status.display()
        ),
    );
    std::fs::set_permissions(&run, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let dial = |locked: bool| {
        let _ = std::fs::remove_file(&status);
        let mut socat = std::process::Command::new("socat")
            .arg("STDIO")
            .arg(format!("EXEC:{},pty,raw,echo=0", run.display()))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("socat is needed (apt-get install socat; .ci/run does)");
        let (mut to_chat, mut from_chat) =
            (socat.stdin.take().unwrap(), socat.stdout.take().unwrap());
        let (mut commands, mut line, mut byte) = (Vec::new(), Vec::new(), [0u8; 1]);
        while from_chat.read(&mut byte).unwrap_or(0) == 1 {
            if byte[0] != b'\r' {
                line.push(byte[0]);
                continue;
            }
            let command = String::from_utf8_lossy(&line).into_owned();
            line.clear();
            let reply = match command.as_str() {
                "AT+CPIN?" if locked => "\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n",
                "AT+CPIN?" => "\r\n+CPIN: READY\r\n\r\nOK\r\n",
                "ATD*99#" => "\r\nCONNECT 150000000\r\n",
                "" => "",
                _ => "\r\nOK\r\n",
            };
            commands.push(command);
            let _ = to_chat.write_all(reply.as_bytes());
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !status.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = socat.kill();
        let _ = socat.wait();
        (
            std::fs::read_to_string(&status)
                .unwrap_or_default()
                .trim()
                .to_owned(),
            commands,
        )
    };
    let (exit, commands) = dial(true);
    assert_eq!(exit, "0", "chat's exit status; it sent {commands:?}");
    assert_eq!(
        commands[..5],
        [
            "AT",
            "AT+CPIN?",
            "AT+CPIN=\"1234\"",
            "AT+CGDCONT=1,\"IP\",\"safaricom\"",
            "ATD*99#"
        ]
    );
    let (exit, commands) = dial(false);
    assert_eq!(exit, "0", "chat's exit status; it sent {commands:?}");
    assert_eq!(
        commands[..4],
        [
            "AT",
            "AT+CPIN?",
            "AT+CGDCONT=1,\"IP\",\"safaricom\"",
            "ATD*99#"
        ]
    );
}
