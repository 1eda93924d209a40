//! `[sources.modbus]` validation: defaults, every mistake with its path and line.

use super::super::{Config, Protocol, Transport, parse};
use super::*;

const HEAD: &str =
    "[gateway]\ndata_dir = \"/d\"\n\n[[sources]]\nid = \"fridge\"\nprotocol = \"modbus\"\n";

fn tcp(modbus: &str) -> String {
    format!("{HEAD}transport = \"tcp-client\"\nconnect = \"127.0.0.1:502\"\n{modbus}")
}

fn ok(text: &str) -> Config {
    parse(text).unwrap_or_else(|e| panic!("{e}"))
}

fn shown(text: &str) -> String {
    match parse(text) {
        Ok(c) => panic!("expected errors, got {c:#?}"),
        Err(e) => e.to_string(),
    }
}

fn settings(c: &Config) -> &ModbusSettings {
    match &c.sources[0].protocol {
        Protocol::Modbus(m) => m,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_fridge_logger_source_with_defaults() {
    let c = ok(&tcp(
        "[sources.modbus]\n[[sources.modbus.registers]]\nname = \"temperature\"\naddress = 0\n\
         type = \"i16\"\nscale = 0.1\nunit = \"Cel\"\nmin = 2\nmax = 8\nhysteresis = 0.5\nloinc = \"8310-5\"\n\
         [[sources.modbus.registers]]\nname = \"door\"\naddress = 2\nkind = \"discrete\"\n",
    ));
    let m = settings(&c);
    assert_eq!(
        (
            m.unit_id,
            m.poll_interval,
            m.timeout,
            m.summary_interval,
            m.fault_after
        ),
        (1, secs(10), secs(2), secs(900), 3)
    );
    let t = &m.registers[0];
    assert_eq!(t.value_type, ValueType::I16);
    assert_eq!(t.scale, 0.1);
    assert_eq!(
        t.thresholds,
        Some(Thresholds {
            min: Some(2.0),
            max: Some(8.0),
            hysteresis: 0.5
        })
    );
    assert_eq!(t.loinc.as_deref(), Some("8310-5"));
    assert_eq!(m.registers[1].kind, RegisterKind::Discrete);
    assert!(matches!(
        c.sources[0].transport,
        Transport::TcpClient { .. }
    ));
}

#[test]
fn every_register_mistake_is_named_with_path_and_line() {
    let text = tcp(
        "[sources.modbus]\nunit_id = 300\nsummary_interval = \"5s\"\npoll_interval = \"10s\"\n\
         [[sources.modbus.registers]]\nname = \"Temp\"\naddress = 65535\ntype = \"u32\"\n\
         min = 8\nmax = 2\nloinc = \"abc\"\n\
         [[sources.modbus.registers]]\nname = \"door\"\naddress = 1\nkind = \"coil\"\nscale = 2\ncolour = 1\n",
    );
    // Unknown keys are structural: reported first, alone.
    assert_eq!(
        shown(&text),
        "sources[0].modbus.registers[1].colour (line 25): unknown key (expected one of: name, address, kind, type, word_order, scale, offset, unit, min, max, hysteresis, code, loinc)"
    );
    let all = shown(&text.replace("colour = 1\n", ""));
    for expected in [
        "sources[0].modbus.unit_id (line 10): 300 is out of range (0 ..= 255)",
        "sources[0].modbus.summary_interval (line 11): 5s is shorter than poll_interval (10s)",
        "sources[0].modbus.registers[0].name (line 14): \"Temp\" is not a valid name",
        "sources[0].modbus.registers[0].address (line 15): 65535 is out of range (0 ..= 65534;",
        "sources[0].modbus.registers[0].max (line 18): 2 is not above min (8)",
        "sources[0].modbus.registers[0].loinc (line 19): \"abc\" is not a LOINC code",
        "sources[0].modbus.registers[1].scale (line 24): not used by kind \"coil\"",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in\n{all}");
    }
    assert_eq!(all.lines().count(), 7, "{all}");
}

#[test]
fn modbus_needs_its_table_a_polling_transport_and_registers() {
    let e = shown(&tcp(""));
    assert!(
        e.starts_with("sources[0].modbus (line 4): required with protocol = \"modbus\""),
        "{e}"
    );
    let e = shown(&tcp("[sources.modbus]\nunit_id = 1\n"));
    assert!(
        e.contains("sources[0].modbus.registers (line 9): at least one"),
        "{e}"
    );
    let e = shown(&format!(
        "{HEAD}transport = \"tcp-server\"\nlisten = \"0.0.0.0:502\"\n[sources.modbus]\n\
         [[sources.modbus.registers]]\nname = \"t\"\naddress = 0\n"
    ));
    assert_eq!(
        e,
        "sources[0].transport (line 7): protocol \"modbus\" polls the device: transport = \"tcp-client\" or \"serial\""
    );
    let e = shown(
        &tcp("[sources.modbus]\n[[sources.modbus.registers]]\nname = \"t\"\naddress = 0\n")
            .replace("\"modbus\"", "\"astm\""),
    );
    assert_eq!(
        e,
        "sources[0].modbus (line 9): only used with protocol = \"modbus\""
    );
    let e = shown(&tcp(
        "receive_timeout = \"30s\"\n[sources.modbus]\n[[sources.modbus.registers]]\nname = \"t\"\naddress = 0\n",
    ));
    assert_eq!(
        e,
        "sources[0].receive_timeout (line 9): not used by protocol \"modbus\" (it polls; see [sources.modbus])"
    );
    let e = shown(&tcp("modbus = 5\n"));
    assert!(
        e.starts_with("sources[0].modbus (line 9): expected a table"),
        "{e}"
    );
}

#[test]
fn serial_unit_id_is_1_to_247() {
    let text = format!(
        "{HEAD}transport = \"serial\"\nport = \"/dev/ttyUSB0\"\n[sources.modbus]\nunit_id = 0\n\
         [[sources.modbus.registers]]\nname = \"t\"\naddress = 0\n"
    );
    assert_eq!(
        shown(&text),
        "sources[0].modbus.unit_id (line 10): 0 is out of range (1 ..= 247)"
    );
}

/// The commented Modbus example in config/pocketgate.toml, uncommented, is a valid source.
#[test]
fn example_config_modbus_block_parses_when_uncommented() {
    let example = super::super::example();
    let start = example
        .find("# BEGIN modbus example")
        .expect("config/pocketgate.toml has the modbus example");
    let end = example[start..].find("# END modbus example").unwrap() + start;
    let block: String = example[start..end]
        .lines()
        .skip(1)
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let c = ok(&format!("[gateway]\ndata_dir = \"/d\"\n{block}"));
    let m = settings(&c);
    assert_eq!(m.registers[0].name, "temperature");
    assert!(m.registers[0].thresholds.is_some());
}

/// The built-in profile's keys, placed in a source (as the profile loader merges them), are a
/// valid Modbus source.
#[test]
fn fridge_logger_profile_is_a_valid_source() {
    let profile = include_str!("../../../config/profiles/fridge-logger-modbus.toml");
    let body = profile
        .split("\n[[tests]]")
        .next()
        .unwrap()
        .split_once("protocol = \"modbus\"")
        .unwrap()
        .1
        .replace("[modbus]", "[sources.modbus]")
        .replace("[[modbus.registers]]", "[[sources.modbus.registers]]");
    let text = format!(
        "[gateway]\ndata_dir = \"/d\"\n[[sources]]\nid = \"f\"\nprotocol = \"modbus\"\n\
         transport = \"serial\"\nport = \"/dev/ttyUSB0\"\n{body}"
    );
    let c = ok(&text);
    let m = settings(&c);
    assert_eq!(m.poll_interval, secs(30));
    let names: Vec<_> = m.registers.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["temperature", "humidity", "logger-alarm"]);
    let t = &m.registers[0];
    assert_eq!(
        (t.value_type, t.scale, t.code.as_deref()),
        (ValueType::I16, 0.1, Some("fridge-temperature"))
    );
    assert_eq!(t.value(&[0xFFF1]), Ok(-1.5));
}
