//! Profiles: every shipped profile validates as a source, merge precedence, error lines, and
//! enrichment of decoded fixtures.

use super::*;
use crate::config::{ConfigErrors, Encoding, Protocol, Transport, parse, parse_with};
use crate::record::{Comparator, Detection};

const MINIMAL: &str = "[gateway]\ndata_dir = \"/d\"\n";

/// A config with one source made of `keys`.
fn one_source(keys: &str) -> String {
    format!("{MINIMAL}\n[[sources]]\nid = \"a\"\n{keys}")
}

fn errors(text: &str, profiles: &Profiles) -> Vec<ConfigError> {
    match parse_with(text, profiles) {
        Ok(c) => panic!("expected errors, got {c:#?}"),
        Err(ConfigErrors(e)) => e,
    }
}

/// The keys a shipped profile's source still needs (where the analyzer is).
fn site_keys(name: &str) -> String {
    let p = Profiles::builtin()
        .get(name)
        .unwrap_or_else(|e| panic!("{e}"));
    let s = read_standalone(&p).unwrap_or_else(|e| panic!("{}", ConfigErrors(e)));
    match s.settings.get("transport").and_then(|t| t.as_str()) {
        Some("serial") => "port = \"/dev/ttyUSB0\"\n".into(),
        Some("tcp-client") => "connect = \"192.168.1.20:5000\"\n".into(),
        Some("tcp-server") => "listen = \"0.0.0.0:5100\"\n".into(),
        Some("folder") => "path = \"/media/usb0\"\n".into(),
        // A Modbus logger's profile leaves the transport to the site (LAN or RS-485).
        None if s.settings.get("protocol").and_then(|p| p.as_str()) == Some("modbus") => {
            "transport = \"tcp-client\"\nconnect = \"192.168.1.30:502\"\n".into()
        }
        // The MQTT broker and topics are site settings, but no shipped profile uses MQTT.
        _ => String::new(),
    }
}

#[test]
fn builtin_list_matches_the_profiles_folder() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/profiles");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_suffix(".toml").map(str::to_owned)
        })
        .collect();
    files.sort();
    let listed: Vec<String> = BUILTIN.iter().map(|(n, _)| (*n).to_owned()).collect();
    assert_eq!(
        listed, files,
        "BUILTIN in src/config/profile.rs must list every file of config/profiles/ (sorted)"
    );
    for (name, _) in BUILTIN {
        assert!(valid_name(name), "{name}");
    }
}

#[test]
fn every_shipped_profile_parses_and_validates_as_a_source() {
    for (name, _) in BUILTIN {
        let text = one_source(&format!("profile = \"{name}\"\n{}", site_keys(name)));
        let config = parse(&text).unwrap_or_else(|e| panic!("profile {name}:\n{e}"));
        let p = read_standalone(
            &Profiles::builtin()
                .get(name)
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .unwrap_or_else(|e| panic!("{name}: {}", ConfigErrors(e)));
        assert!(p.header.contains_key("name"), "{name}");
        assert!(
            p.header.contains_key("reference"),
            "{name} cites the reference"
        );
        assert_eq!(config.sources[0].tests, p.tests, "{name}");
        for (code, info) in p.tests.0.iter() {
            if let Some(l) = &info.loinc {
                assert!(valid_loinc(l), "{name}: {code} {l}");
            }
        }
    }
}

#[test]
fn loinc_check_digits() {
    for good in [
        "6690-2", "789-8", "718-7", "4548-4", "20447-9", "2341-6", "21000-5", "14959-1",
    ] {
        assert!(valid_loinc(good), "{good}");
    }
    // Pentra XLR's own 789-9 and 2100-5 (protocols.md S10) fail the check digit.
    for bad in [
        "789-9",
        "2100-5",
        "6690",
        "-2",
        "6690-22",
        "66a0-2",
        "12345678-0",
    ] {
        assert!(!valid_loinc(bad), "{bad}");
    }
}

#[test]
fn source_keys_override_the_profile_and_the_rest_is_inherited() {
    let config = parse(&one_source(
        "profile = \"sysmex-xn\"\nport = \"/dev/ttyUSB3\"\nbaud = 19200\n",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let s = &config.sources[0];
    let Transport::Serial(serial) = &s.transport else {
        panic!("{:?}", s.transport)
    };
    assert_eq!(serial.baud, 19200, "the source's own baud wins");
    assert_eq!(serial.port, "/dev/ttyUSB3");
    assert!(
        matches!(s.protocol, Protocol::Astm(_)),
        "protocol from the profile"
    );
    assert_eq!(
        s.tests.get("WBC").and_then(|t| t.loinc.as_deref()),
        Some("6690-2")
    );

    // Another transport than the profile's drops the profile's serial keys.
    let config = parse(&one_source(
        "profile = \"sysmex-xn\"\ntransport = \"tcp-server\"\nlisten = \"127.0.0.1:0\"\n",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        config.sources[0].transport,
        Transport::TcpServer { .. }
    ));
}

#[test]
fn nested_tables_merge_key_by_key() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let profiles = dir.path().join("profiles");
    std::fs::create_dir(&profiles).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        profiles.join("nested.toml"),
        "[profile]\nname = \"n\"\n\nprotocol = \"astm\"\n\n[extra]\na = 1\nb = [1, 2]\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let p = Profiles::next_to(&dir.path().join("pocketgate.toml"));
    let expanded = expand(
        &one_source("profile = \"nested\"\n[sources.extra]\nb = [3]\nc = true\n"),
        &p,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(expanded.errors.is_empty(), "{:?}", expanded.errors);
    let source = toml::Table::deserialize(expanded.tree.deserializer()).unwrap_or_default();
    let merged = &source["sources"][0];
    assert_eq!(merged["protocol"].as_str(), Some("astm"));
    assert_eq!(
        merged["extra"]["a"].as_integer(),
        Some(1),
        "kept from the profile"
    );
    assert_eq!(
        merged["extra"]["b"],
        toml::Value::Array(vec![3.into()]),
        "arrays replaced"
    );
    assert_eq!(merged["extra"]["c"].as_bool(), Some(true));
}

#[test]
fn a_local_profile_shadows_the_builtin_one() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir(dir.path().join("profiles")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.path().join("profiles/afinion-2.toml"),
        "[profile]\nname = \"site copy\"\nprotocol = \"astm\"\ntransport = \"tcp-server\"\nencoding = \"utf8\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let config = dir.path().join("pocketgate.toml");
    std::fs::write(
        &config,
        one_source("profile = \"afinion-2\"\nlisten = \"127.0.0.1:0\"\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let c = crate::config::load(&config).unwrap_or_else(|e| panic!("{e}"));
    let Protocol::Astm(a) = &c.sources[0].protocol else {
        panic!()
    };
    assert_eq!(a.encoding, Encoding::Utf8);
    assert!(c.sources[0].tests.is_empty(), "the local copy has no tests");
}

#[test]
fn unknown_profile_lists_the_available_ones() {
    let e = errors(
        &one_source("profile = \"sysmex-xq\"\nport = \"/dev/ttyS0\"\n"),
        &Profiles::builtin(),
    );
    let shown = ConfigErrors(e.clone()).to_string();
    assert!(
        shown.contains(
            "\nsources[0].profile (line 6): unknown profile \"sysmex-xq\" (available: afinion-2, "
        ),
        "{shown}"
    );
    assert!(shown.contains("sysmex-xn, sysmex-xp"), "{shown}");
    let e = errors(
        &one_source("profile = \"../etc/passwd\"\n"),
        &Profiles::builtin(),
    );
    let bad = e.iter().find(|e| e.path == "sources[0].profile");
    assert!(
        bad.is_some_and(|e| e.message.contains("is not a profile name")),
        "{e:?}"
    );
}

#[test]
fn an_error_in_a_profile_value_names_the_profile_file_and_line() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir(dir.path().join("profiles")).unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("profiles/bad.toml");
    std::fs::write(
        &file,
        "[profile]\nname = \"bad\"\n\nprotocol = \"astm\"\ntransport = \"serial\"\nbaud = 96000\nbaudrate = 1\n\n[[tests]]\ncode = \"X\"\nloinc = \"789-9\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let p = Profiles::next_to(&dir.path().join("c.toml"));
    let text = one_source("profile = \"bad\"\nport = \"/dev/ttyS0\"\nparity = \"odd\"\n");
    // Structural errors first (the unknown key), with the [[tests]] error found while merging.
    let shown = ConfigErrors(errors(&text, &p)).to_string();
    let label = file.display().to_string();
    assert_eq!(
        shown,
        format!(
            "sources[0].baudrate (line 6): unknown key (did you mean \"baud\"?) (from profile \"bad\", {label} line 7)\n\
             sources[0].tests[0].loinc (line 6): \"789-9\" is not a LOINC code (digits, \"-\", check digit; the check digit must match) (from profile \"bad\", {label} line 11)"
        )
    );
    // With the key fixed, the value error names the profile's line; the source's own keys keep theirs.
    std::fs::write(
        &file,
        "[profile]\nname = \"bad\"\n\nprotocol = \"astm\"\ntransport = \"serial\"\nbaud = 96000\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let text = one_source("profile = \"bad\"\nport = \"/dev/ttyS0\"\nstop_bits = 3\n");
    let shown = ConfigErrors(errors(&text, &p)).to_string();
    assert_eq!(
        shown,
        format!(
            "sources[0].baud (line 6): 96000 is not a supported baud rate (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200) (from profile \"bad\", {label} line 6)\n\
             sources[0].stop_bits (line 8): 3 is not supported (1 or 2)"
        )
    );
}

#[test]
fn profile_only_tables_are_refused_in_a_source_and_checked_in_a_profile() {
    let e = errors(
        &one_source(
            "protocol = \"astm\"\ntransport = \"serial\"\nport = \"/dev/ttyS0\"\n[[sources.tests]]\ncode = \"X\"\n",
        ),
        &Profiles::builtin(),
    );
    assert_eq!(e[0].path, "sources[0].tests");
    let p = ProfileText {
        name: "x".into(),
        label: "x.toml".into(),
        text: "[profile]\nvendor = 3\ncolour = \"red\"\nprotocol = \"astm\"\n[[tests]]\nname = \"n\"\n[[tests]]\ncode = \"A\"\nunits = \"%\"\n[[tests]]\ncode = \"A\"\n".into(),
    };
    let Err(e) = read_standalone(&p) else {
        panic!("accepted")
    };
    let shown: Vec<String> = e.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        shown,
        [
            "profile.name (line 1): required (the analyzer's name, e.g. name = \"Sysmex XN-series\")",
            "profile.vendor (line 2): expected text in quotes",
            "colour (line 3): unknown key (not a [profile] key nor a setting of a source)",
            "tests[0].code (line 5): required (the test code as the analyzer sends it)",
            "tests[1].units (line 9): unknown key in [[tests]] (expected one of: code, name, unit, loinc)",
            "tests[2].code (line 11): \"A\" is listed twice",
        ]
    );
}

#[test]
fn a_profile_cannot_set_the_source_id() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir(dir.path().join("profiles")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.path().join("profiles/p.toml"),
        "[profile]\nname = \"p\"\nid = \"x\"\nprotocol = \"astm\"\ntransport = \"tcp-server\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let e = errors(
        &one_source("profile = \"p\"\nlisten = \"127.0.0.1:0\"\n"),
        &Profiles::next_to(&dir.path().join("c.toml")),
    );
    assert_eq!(e.len(), 1, "{}", ConfigErrors(e.clone()));
    assert_eq!(e[0].path, "sources[0].id");
    assert!(e[0].message.contains("(from profile \"p\""), "{}", e[0]);
}

#[test]
fn enrichment_fills_only_what_the_message_leaves_out() {
    let fixture = |name: &str| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/astm")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let decode = |bytes: &[u8]| -> Vec<Observation> {
        crate::protocol::astm::decode::decode_capture(bytes, Encoding::Latin1)
            .into_iter()
            .flat_map(|d| d.observations)
            .collect()
    };
    let table = |name: &str| {
        read_standalone(
            &Profiles::builtin()
                .get(name)
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .unwrap_or_else(|e| panic!("{}", ConfigErrors(e)))
        .tests
    };

    // Sysmex XN-550 (S8): the message has units but no names and no LOINC.
    let plain = decode(&fixture("s08-sysmex-xn550.astm"));
    let mut rich = plain.clone();
    table("sysmex-xn").enrich(&mut rich);
    let wbc = |obs: &[Observation]| {
        obs.iter()
            .find(|o| o.test_code == "WBC")
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(wbc(&plain).test_name, None);
    assert_eq!(wbc(&plain).extra.get("loinc"), None);
    assert_eq!(
        wbc(&rich).test_name.as_deref(),
        Some("White blood cell count")
    );
    assert_eq!(
        wbc(&rich).extra.get("loinc").map(String::as_str),
        Some("6690-2")
    );
    assert_eq!(wbc(&rich).value, wbc(&plain).value);
    assert_eq!(wbc(&rich).unit.as_deref(), Some("10*3/uL"));
    // A flag result the table does not know stays as it was.
    let eos = |obs: &[Observation]| obs.iter().find(|o| o.test_code == "Eosinophilia").cloned();
    assert_eq!(eos(&rich), eos(&plain));

    // Pentra XLR (S10): its own LOINC (even a wrong one) and unit code are kept.
    let mut pentra = decode(&fixture("s10-horiba-pentra-xlr.astm"));
    table("pentra-xlr").enrich(&mut pentra);
    let rbc = pentra
        .iter()
        .find(|o| o.test_code == "RBC")
        .cloned()
        .unwrap_or_default();
    assert_eq!(rbc.test_name.as_deref(), Some("Red blood cell count"));
    assert_eq!(rbc.extra.get("loinc").map(String::as_str), Some("789-9"));
    assert_eq!(rbc.unit.as_deref(), Some("1"));

    // GeneXpert HIV VL (S3): the device's name stays; the LOINC is added.
    let mut vl = decode(&fixture("s03-genexpert-hiv-vl-quantified.astm"));
    table("genexpert-astm").enrich(&mut vl);
    let main = vl
        .iter()
        .find(|o| o.test_code == "HIVVL")
        .cloned()
        .unwrap_or_default();
    assert_eq!(main.test_name.as_deref(), Some("Xpert HIV-1 Viral Load XC"));
    assert_eq!(main.extra.get("loinc").map(String::as_str), Some("20447-9"));
    let iqs = vl
        .iter()
        .find(|o| o.test_code == "HIVVL/IQS-H")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        iqs.test_name.as_deref(),
        Some("Internal quantitation standard, high")
    );
}

#[test]
fn the_example_config_uses_a_profile() {
    let config = parse(crate::config::example()).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        config.sources.iter().any(|s| !s.tests.is_empty()),
        "config/pocketgate.toml shows a source with a profile"
    );
}

// ---------------------------------------------------------------------------------------------
// Viral-load profiles (issue 19): a message shaped like each platform's capture, decoded as a
// source with the profile decodes it (protocol and encoding from the merged config, then the
// source's test table). The shapes are those of the production captures kept in
// deforay/vlsm-interfacing src/app/testing/fixtures/captured/ (each profile's notes name its
// file); sample ids are made up.

/// The observations of `text` (records or segments one a line) as decoded by a source with the
/// built-in profile `name`, and that source's test table.
fn through_profile(name: &str, text: &str) -> (Vec<Observation>, TestTable) {
    let config = parse(&one_source(&format!(
        "profile = \"{name}\"\n{}",
        site_keys(name)
    )))
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    let source = &config.sources[0];
    let bytes = text.replace('\n', "\r");
    let (mut observations, errors) = match &source.protocol {
        Protocol::Astm(a) => {
            let d = crate::protocol::astm::decode::decode_message(bytes.as_bytes(), a.encoding);
            (d.observations, format!("{:?}", d.errors))
        }
        Protocol::Hl7(h) => {
            let d = crate::protocol::hl7::decode::decode_message(bytes.as_bytes(), h.encoding);
            (d.observations, format!("{:?}", d.errors))
        }
        other => panic!("{name}: a {} profile", other.name()),
    };
    assert_eq!(errors, "[]", "{name}");
    source.tests.enrich(&mut observations);
    (observations, source.tests.clone())
}

/// The observations with `code` (and, where given, OBX-4 sub-ID), in message order.
fn coded<'a>(obs: &'a [Observation], code: &str, sub_id: Option<&str>) -> Vec<&'a Observation> {
    let found: Vec<&Observation> = obs
        .iter()
        .filter(|o| o.test_code == code)
        .filter(|o| sub_id.is_none_or(|s| o.extra.get("sub_id").map(String::as_str) == Some(s)))
        .collect();
    assert!(
        !found.is_empty(),
        "no {code} {sub_id:?} in {:?}",
        obs.iter().map(|o| &o.test_code).collect::<Vec<_>>()
    );
    found
}

/// (value, unit, comparator) of an observation's quantity.
fn reads(o: &Observation) -> (Option<&str>, Option<&str>, Option<Comparator>) {
    let q = o
        .quantity
        .as_ref()
        .unwrap_or_else(|| panic!("{}: no quantity from {:?}", o.test_code, o.value));
    (q.value.as_deref(), q.unit.as_deref(), q.comparator)
}

fn detection(o: &Observation) -> Option<Detection> {
    o.quantity.as_ref().and_then(|q| q.detection)
}

#[test]
fn cobas_6800_viral_load_through_its_profile() {
    const TAIL: &str = "|||F|||||Lyneldra||C6800/8800^Roche^^~Unknown^Roche^^~ID_000000000000000001^IM300-000001^^|20260308121433";
    // One sample's message; each OBX is given up to OBX-8 (the flag).
    let message = |id: &str, sample: &str, obx: [&str; 4]| {
        let obx: Vec<String> = obx.iter().map(|o| format!("OBX|{o}{TAIL}")).collect();
        format!(
            "MSH|^~\\&|COBAS6800/8800||LIS||20260308152752||OUL^R22|{id}|P|2.5||||||ASCII\n\
             SPM||{sample}||PLAS^plasma^HL70487|||||||P\nSAC|||||||||||||||||||||500|||uL^^UCUM\n\
             OBR|1|||70241-5^HIV^LN|||||||A\n{}\nTCD|70241-5^HIV^LN|^1^:^0\n",
            obx.join("\n")
        )
    };
    const CT: &str = "2|NA|HIV^HIV^99ROC^S_OTHER^Other Supplemental^IHELAW||36.51^^37.15|||";

    // 194 with 10*0.{Copies}/mL: 194 copies/mL.
    let (obs, tests) = through_profile(
        "cobas-6800-8800",
        &message(
            "MSG-6800-02",
            "VL-6800-01",
            [
                "1|NM|HIV^HIV^99ROC||194|10*0.{Copies}/mL^^UCUM||",
                CT,
                "3|ST|70241-5^HIV^LN|1/1|ValueNotSet|||RR",
                "4|ST|70241-5^HIV^LN|1/2|Titer|||\"\"",
            ],
        ),
    );
    assert!(tests.get("HIV").is_some() && tests.get("70241-5").is_some());
    let hiv = coded(&obs, "HIV", None);
    assert_eq!(hiv.len(), 1, "the Ct line has its own code");
    let ct = coded(&obs, "HIV:S_OTHER", None);
    assert_eq!(ct[0].value.as_deref(), Some("36.51^^37.15"));
    assert_eq!(
        ct[0].test_name.as_deref(),
        Some("HIV"),
        "the message's own name"
    );
    assert_eq!(reads(hiv[0]), (Some("194"), Some("copies/mL"), None));
    assert_eq!(hiv[0].unit.as_deref(), Some("10*0.{Copies}/mL"), "as sent");
    assert_eq!(hiv[0].sample_id.as_deref(), Some("VL-6800-01"));
    assert_eq!(
        hiv[0].test_name.as_deref(),
        Some("HIV"),
        "the message's own"
    );
    assert_eq!(hiv[0].extra.get("loinc"), None, "the table gives HIV none");
    let text = coded(&obs, "70241-5", Some("1/2"));
    assert_eq!(text[0].value.as_deref(), Some("Titer"));
    assert_eq!(
        text[0].extra.get("loinc").map(String::as_str),
        Some("70241-5"),
        "the analyzer's own LOINC"
    );

    // Target Not Detected: ValueNotSet with ND in OBX-8, and the text in 70241-5 1/2.
    let (obs, _) = through_profile(
        "cobas-6800-8800",
        &message(
            "MSG-6800-04",
            "VL-6800-02",
            [
                "1|ST|HIV^HIV^99ROC||ValueNotSet|||ND",
                CT,
                "3|ST|70241-5^HIV^LN|1/1|ValueNotSet|||NR",
                "4|ST|70241-5^HIV^LN|1/2|Target Not Detected|||\"\"",
            ],
        ),
    );
    let hiv = coded(&obs, "HIV", None);
    assert_eq!(hiv[0].value.as_deref(), Some("ND"), "the call in OBX-8");
    assert_eq!(hiv[0].flags, ["ND"]);
    let text = coded(&obs, "70241-5", Some("1/2"));
    assert_eq!(reads(text[0]), (None, None, None));
    assert_eq!(detection(text[0]), Some(Detection::NotDetected));

    // An invalid run (the capture's MSG-6800-06): no value, an error code in OBX-8, OBX-11 X.
    let invalid = message(
        "MSG-6800-06",
        "VL-6800-03",
        [
            "1||HIV^HIV^99ROC|||||P02T",
            "2||70241-5^HIV^LN|1/1||||P02T~P01T~C02H1",
            "3|ST|70241-5^HIV^LN|1/2|Invalid|||\"\"",
            "4|ST|70241-5^HIV^LN|1/3|ValueNotSet|||",
        ],
    )
    .replace("P02T|||F", "P02T|||X");
    let (obs, _) = through_profile("cobas-6800-8800", &invalid);
    let hiv = coded(&obs, "HIV", None)[0];
    assert_eq!(hiv.result_status.as_deref(), Some("X"));
    assert_eq!(
        reads(hiv),
        (None, Some("copies/mL"), None),
        "the table's unit"
    );
    assert_eq!(detection(hiv), Some(Detection::Invalid));
}

#[test]
fn cobas_4800_run_message_through_its_profile() {
    let group = |n: usize, sample: &str, value: &str| {
        let unit = if value.ends_with("cp/mL") {
            "1/mL^^UCUM"
        } else {
            ""
        };
        format!(
            "SPM|{n}|{sample}&ROCHE||\"\"|||||||Q^^HL70369\nSAC|||{sample}\n\
             OBR||\"\"||0BHIV1^0BHIV1^99ROC||20260612162143\nORC|SC||||CM\n\
             OBX|1|DR|RunTimeRange^Run Execution Time Range^99ROC^S_OTHER^Other_Supplemental^IHELAW|1.0|20260612163740^20260612194324|||\"\"|||F|||||Laboperator01||C4800^Roche~56450_00001^Roche|20260612194324\n\
             OBX|2|ST|0BHIV1^0BHIV1^99ROC|1.1|{value}|{unit}||Full^^99ROC|||F|||||Laboperator01||C4800^Roche~56450_00001^Roche|20260612194324\n\
             NTE|1||F;NONE\nNTE|2||Ct:0 (MMx 1),26.71\n"
        )
    };
    let run = format!(
        "MSH|^~\\&|cobas 4800 software 2.3.0.1905^56450_00001^M|LAB|LIS|LIS Facility|20260613145247+0100||OUL^R22^OUL_R22|MSG-4800-RUN|P|2.5.1|||ER|AL||UNICODE UTF-8|||LAB-29^IHE\n{}{}{}",
        group(1, "VL-4800-01", "3.26E+05 cp/mL"),
        group(2, "VL-4800-02", "6.73E+01 cp/mL"),
        group(3, "VL-4800-03", "Target Not Detected"),
    ) + &group(4, "VL-4800-04", "< Titer min")
        + &group(5, "VL-4800-05", "Invalid");
    let (obs, tests) = through_profile("cobas-4800", &run);
    assert!(tests.get("0BHIV1").is_some() && tests.get("RunTimeRange:S_OTHER").is_some());
    let vl = coded(&obs, "0BHIV1", Some("1.1"));
    assert_eq!(vl.len(), 5, "one result per SPM group");
    assert_eq!(reads(vl[0]), (Some("326000"), Some("1/mL"), None));
    assert_eq!(
        vl[0].value.as_deref(),
        Some("3.26E+05 cp/mL"),
        "OBX-5, not OBX-8"
    );
    assert_eq!(vl[0].flags, ["Full^^99ROC"]);
    assert_eq!(
        vl[0].sample_id.as_deref(),
        Some("VL-4800-01"),
        "SPM-2 without &ROCHE"
    );
    assert_eq!(
        vl[0].extra.get("sample_id_namespace").map(String::as_str),
        Some("ROCHE")
    );
    assert_eq!(reads(vl[1]), (Some("67.3"), Some("1/mL"), None));
    assert_eq!(detection(vl[2]), Some(Detection::NotDetected));
    assert_eq!(
        reads(vl[2]),
        (None, Some("cp/mL"), None),
        "the table's unit"
    );
    assert_eq!(reads(vl[3]), (None, Some("cp/mL"), Some(Comparator::Lt)));
    assert_eq!(vl[4].value.as_deref(), Some("Invalid"));
    assert_eq!(detection(vl[4]), Some(Detection::Invalid));
    assert_eq!(coded(&obs, "RunTimeRange:S_OTHER", Some("1.0")).len(), 5);
}

#[test]
fn m2000_hiv_results_through_its_profile() {
    let run = |result: &str, interpretation: &str| {
        through_profile(
            "m2000",
            &crate::protocol::quantity_messages::m2000(
                "VL-M2000-01",
                result,
                interpretation,
                "28.93",
            ),
        )
    };
    let (obs, tests) = run("86321", "Detected");
    assert!(tests.get("HIV0.6ml").is_some());
    let hiv = coded(&obs, "HIV0.6ml", None);
    assert_eq!(
        hiv.len(),
        1,
        "the interpretation and cycle number have their own codes"
    );
    assert_eq!(reads(hiv[0]), (Some("86321"), Some("Copies / mL"), None));
    assert_eq!(hiv[0].device.vendor.as_deref(), Some("Abbott"));
    assert_eq!(hiv[0].device.serial.as_deref(), Some("275000001"));
    for (code, value, name) in [
        (
            "HIV0.6ml",
            "86321",
            "Abbott RealTime HIV-1 (0.6 mL protocol)",
        ),
        (
            "HIV0.6ml:I",
            "Detected",
            "Abbott RealTime HIV-1 (0.6 mL protocol), interpretation",
        ),
        (
            "HIV0.6ml:P",
            "28.93",
            "Abbott RealTime HIV-1 (0.6 mL protocol), cycle number",
        ),
    ] {
        let o = coded(&obs, code, None)[0];
        assert_eq!(o.value.as_deref(), Some(value), "{code}");
        assert_eq!(o.test_name.as_deref(), Some(name), "named by the profile");
        assert_eq!(o.extra.get("loinc"), None);
    }
    let interpretation = coded(&obs, "HIV0.6ml:I", None)[0];
    assert_eq!(interpretation.unit, None, "the table gives it no unit");
    assert_eq!(interpretation.quantity, None);

    let (obs, _) = run("< 40", "Detected");
    assert_eq!(
        reads(coded(&obs, "HIV0.6ml", None)[0]),
        (Some("40"), Some("Copies / mL"), Some(Comparator::Lt))
    );

    let (obs, _) = run("Not detected", "Target not detected");
    let hiv = coded(&obs, "HIV0.6ml", None);
    assert_eq!(hiv.len(), 1);
    assert_eq!(reads(hiv[0]), (None, Some("Copies / mL"), None));
    assert_eq!(detection(hiv[0]), Some(Detection::NotDetected));
}

/// Abbott Alinity m (HL7): one sample's message, the unit in OBX-6.2 as the analyzer sends it.
fn alinity_message(sample: &str, result: &str, unit: &str, log: &str) -> String {
    const TAIL: &str =
        "||\"\"|||F|||||Pat~operator||Alinity m^Abbott~M00001^Abbott|20260112142906||||||||||RSLT";
    const SUPPLEMENTAL: &str = "^S_OTHER^Other Supplemental^IHELAW";
    format!(
        "MSH|^~\\&|||||20260112150335+0100||OUL^R22^OUL_R22|MSG-ALM-{sample}|P|2.5.1|||NE|AL||UNICODE UTF-8|||LAB-29^IHE\n\
         SPM|1|||PLAS^Plasma^HL70487|||||||P^Patient^HL70369\n\
         SAC|||{sample}|||||||A000001|7||||2^Position^99ABT\nOBR||\"\"||1006^HIV-1^99ABT\nORC|SC||||CM\n\
         OBX|1|ST|1006^HIV-1^99ABT||{result}|{unit}{TAIL}\n\
         INV|1006^^99ABT|NA^Not applicable^HL70383|CA^Calibration^99ABT||||||||||20251202144858|||399444\n\
         OBX|2|ST|1006.I^HIV-1^99ABT||Detected|{TAIL}\n\
         OBX|3|NM|1006.R^HIV-1^99ABT{SUPPLEMENTAL}|HIV-1|18.62|^CN{TAIL}\n\
         OBX|4|ST|1006.S^HIV-1^99ABT{SUPPLEMENTAL}|0|{log}|^Log (Copies/mL){TAIL}\n"
    )
}

#[test]
fn alinity_m_result_gets_its_unit_from_the_profile() {
    let (obs, tests) = through_profile(
        "alinity-m",
        &alinity_message("VL-ALM-01", "161,152", "^Copies/mL", "5.21"),
    );
    assert!(tests.get("1006").is_some() && tests.get("1006.S:S_OTHER").is_some());
    let vl = coded(&obs, "1006", None)[0];
    assert_eq!(vl.sample_id.as_deref(), Some("VL-ALM-01"), "SAC-3");
    assert_eq!(
        vl.quantity.as_ref().and_then(|q| q.value.as_deref()),
        Some("161152")
    );
    assert_eq!(
        reads(vl),
        (Some("161152"), Some("Copies/mL"), None),
        "OBX-6.2"
    );
    assert_eq!(vl.device.vendor.as_deref(), Some("Abbott"), "OBX-18");
    assert_eq!(vl.device.model.as_deref(), Some("Alinity m"));
    assert_eq!(vl.device.serial.as_deref(), Some("M00001"));
    let log = coded(&obs, "1006.S:S_OTHER", Some("0"))[0];
    assert_eq!(log.unit.as_deref(), Some("Log (Copies/mL)"));
    assert_eq!(
        log.quantity.as_ref().and_then(|q| q.log10.as_deref()),
        Some("5.21")
    );
    assert_eq!(
        coded(&obs, "1006.R:S_OTHER", Some("HIV-1"))[0]
            .test_name
            .as_deref(),
        Some("HIV-1"),
        "the message's own name"
    );

    let (obs, _) = through_profile(
        "alinity-m",
        &alinity_message("VL-ALM-02", "< 20", "^Copies/mL", "< 1.30"),
    );
    let vl = coded(&obs, "1006", None)[0];
    let q = vl.quantity.as_ref();
    assert_eq!(
        (
            q.and_then(|q| q.value.as_deref()),
            q.and_then(|q| q.comparator)
        ),
        (Some("20"), Some(Comparator::Lt))
    );
    assert_eq!(vl.unit.as_deref(), Some("Copies/mL"));

    // Not Detected comes with OBX-6 empty: the table's unit makes it a not-detected viral load.
    let (obs, _) = through_profile(
        "alinity-m",
        &alinity_message("VL-ALM-03", "Not Detected", "", "Not Detected"),
    );
    let vl = coded(&obs, "1006", None)[0];
    assert_eq!(
        reads(vl),
        (None, Some("Copies/mL"), None),
        "from the profile"
    );
    assert_eq!(detection(vl), Some(Detection::NotDetected));
}

#[test]
fn genexpert_site_hiv_codes_get_names_and_loinc() {
    const H: &str = "H|@^\\|GXM-00000000001||LAB - 806911^GeneXpert^6.2|||||LAB||P|1394-97|20260307161412\nP|1\n";
    const TAIL: &str = "||F||OPERATOR|20260129114918|20260129115359|Cepheid-1F21001^806911^630912^1113243530^72203^20260825|";
    let vl = format!(
        "{H}O|1|VL-GX-01||^^^HIV-1_VL 2 2|R|20260129114918|||||||||ORH||||||||||F\n\
         R|1|^^^HIV-1_VL 2 2^Xpert_HIV-1 Viral Load^2^^|^1234.56|copies/mL|40.00 to 10000000.00|N{TAIL}\n\
         R|2|^^^HIV-1_VL 2 2^Xpert_HIV-1 Viral Load^2^^LOG|^3.09|copies/mL|1.60 to 7.00|N{TAIL}\n\
         R|3|^^^HIV-1_VL 2 2^^^HIV-1^|POS^|||\nR|4|^^^HIV-1_VL 2 2^^^IQS-H^|PASS^|||\nL|1|N\n"
    );
    let (obs, tests) = through_profile("genexpert-astm", &vl);
    let main = coded(&obs, "HIV-1_VL 2 2", None)[0];
    assert_eq!(reads(main), (Some("1234.56"), Some("copies/mL"), None));
    assert_eq!(
        main.quantity.as_ref().and_then(|q| q.log10.as_deref()),
        Some("3.09")
    );
    assert_eq!(main.extra.get("loinc").map(String::as_str), Some("20447-9"));
    assert_eq!(
        main.test_name.as_deref(),
        Some("Xpert_HIV-1 Viral Load"),
        "the device's own name stays"
    );
    assert_eq!(
        coded(&obs, "HIV-1_VL 2 2/IQS-H", None)[0]
            .test_name
            .as_deref(),
        Some("Internal quantitation standard, high")
    );
    assert!(tests.get("HIV-1_VL 2 2:LOG").is_some());

    let qual = format!(
        "{H}O|1|EID-GX-01||^^^HIV-1_QUAL 2|R|20260129114918|||||||||ORH||||||||||F\n\
         R|1|^HIV-1_QUAL 2^^^Xpert_HIV-1 Qual^2^HIV-1^|DETECTED^|||{TAIL}\n\
         R|2|^^^HIV-1_QUAL 2^^^SPC^|PASS^|||\nR|3|^^^HIV-1_QUAL 2^^^HIV-1^|POS^|||\nL|1|N\n"
    );
    let (obs, _) = through_profile("genexpert-astm", &qual);
    let calls = coded(&obs, "HIV-1_QUAL 2/HIV-1", None);
    let got: Vec<(Option<&str>, Option<&str>)> = calls
        .iter()
        .map(|o| (o.value.as_deref(), o.test_name.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            (Some("DETECTED"), Some("Xpert_HIV-1 Qual")),
            (Some("POS"), Some("HIV-1 qualitative call")),
        ]
    );
    assert!(
        calls.iter().all(|o| o.quantity.is_none()),
        "a call is no quantity"
    );
    assert_eq!(
        coded(&obs, "HIV-1_QUAL 2/SPC", None)[0]
            .test_name
            .as_deref(),
        Some("Sample processing control")
    );
}
