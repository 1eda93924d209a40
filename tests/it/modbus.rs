//! Modbus polling against the real binary (protocols.md §1.6): a pymodbus fake fridge logger
//! (tests/fixtures/modbus/fake_fridge_logger.py, §3.4) over Modbus TCP and over RTU on a socat
//! pty pair (§3.5). Assertions read what a user reads: `pocketgate records` and
//! `pocketgate decode --protocol modbus` of the stored documents.

use crate::support::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// The fake logger as a real process; `set` changes a register through its stdin.
struct Logger {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Logger {
    fn tcp(addr: SocketAddr) -> Logger {
        let l = Self::spawn(&["tcp", &addr.ip().to_string(), &addr.port().to_string()]);
        let until = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < until,
                "fake logger never listened on {addr}: {}",
                l.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        l
    }

    fn rtu(port: &Path) -> Logger {
        Self::spawn(&["rtu", &port.display().to_string(), "9600"])
    }

    fn spawn(args: &[&str]) -> Logger {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/modbus/fake_fridge_logger.py");
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("logger.err");
        let mut child = Command::new("python3")
            .arg(&script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("python3 is needed for the Modbus tests");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let err = std::fs::read_to_string(&stderr).unwrap_or_default();
        assert_eq!(
            line.trim(),
            "ready",
            "the fake logger did not start; pymodbus is needed: python3 -m pip install pymodbus==3.16.1 pyserial\n{err}"
        );
        Logger {
            child,
            stdin,
            stdout,
            stderr,
            _dir: dir,
        }
    }

    /// Set a register (raw value; negative is stored as int16).
    fn set(&mut self, address: u16, value: i32) {
        writeln!(self.stdin, "set {address} {value}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ok", "{}", self.stderr());
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Logger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `[sources.modbus]` of a fridge: temperature (holding 40001, 0.1 °C, 2–8) and humidity
/// (input 30002, 0.1 %); fast polls and 2 s summaries so the test runs in seconds.
fn modbus_table(extra_register: &str) -> String {
    format!(
        "[sources.modbus]\nunit_id = 1\npoll_interval = \"200ms\"\ntimeout = \"500ms\"\n\
         summary_interval = \"2s\"\nfault_after = 2\n\
         [[sources.modbus.registers]]\nname = \"temperature\"\naddress = 0\ntype = \"i16\"\n\
         scale = 0.1\nunit = \"Cel\"\nmin = 2\nmax = 8\nhysteresis = 0.5\nloinc = \"8310-5\"\n\
         [[sources.modbus.registers]]\nname = \"humidity\"\naddress = 1\nkind = \"input\"\n\
         scale = 0.1\nunit = \"%\"\n{extra_register}"
    )
}

fn rtu_source(port: &Path) -> String {
    format!(
        "[[sources]]\nid = \"fridge-rtu\"\nprotocol = \"modbus\"\ntransport = \"serial\"\n\
         port = \"{}\"\nbaud = 9600\nreopen_after = \"200ms\"\n{}",
        port.display(),
        modbus_table("")
    )
}

fn tcp_source(id: &str, addr: SocketAddr, extra_register: &str) -> String {
    format!(
        "[[sources]]\nid = \"{id}\"\nprotocol = \"modbus\"\ntransport = \"tcp-client\"\n\
         connect = \"{addr}\"\nbackoff_min = \"200ms\"\nbackoff_max = \"1s\"\n{}",
        modbus_table(extra_register)
    )
}

/// Every stored observation, oldest first, as `pocketgate records` prints them.
fn observations(gw: &Gateway) -> Vec<Value> {
    if !gw.db().exists() {
        return Vec::new();
    }
    let out = Command::new(BIN)
        .args(["records", "--limit", "100000", "--db"])
        .arg(gw.db())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut messages: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    messages.reverse();
    for m in &messages {
        assert_eq!(m["protocol"], "modbus", "{m}");
        assert_eq!(m["status"], "received", "{m}");
    }
    messages
        .iter()
        .flat_map(|m| m["observations"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn event(o: &Value) -> &str {
    o["extra"]["modbus_event"].as_str().unwrap_or("")
}

/// Wait until an observation matches `pred`; returns it.
fn wait_for(gw: &Gateway, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(o) = observations(gw).into_iter().find(|o| pred(o)) {
            return o;
        }
        assert!(
            Instant::now() < until,
            "no {what} stored; observations: {:#?}\nlog:\n{}",
            observations(gw),
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn is(o: &Value, kind: &str, code: &str) -> bool {
    event(o) == kind && o["test_code"] == code
}

#[test]
fn tcp_logger_summaries_then_alarm_at_9_5_and_clear_on_return() {
    let addr = free_addr();
    let mut logger = Logger::tcp(addr);
    let gw = Gateway::start(&tcp_source("fridge", addr, ""));

    let temp = wait_for(&gw, "temperature summary", |o| {
        is(o, "summary", "temperature")
    });
    assert_eq!(temp["value"], "4.70", "{temp}");
    assert_eq!(temp["unit"], "Cel");
    assert_eq!(temp["reference_range"], "2-8");
    assert_eq!(temp["extra"]["min"], "4.7");
    assert_eq!(temp["extra"]["max"], "4.7");
    assert_eq!(temp["extra"]["loinc"], "8310-5");
    assert_eq!(temp["extra"]["register"], "holding register 40001");
    assert_eq!(temp["source"], "fridge");
    let samples: u32 = temp["extra"]["samples"].as_str().unwrap().parse().unwrap();
    assert!((5..=11).contains(&samples), "2 s of 200 ms polls: {temp}");
    let rh = wait_for(&gw, "humidity summary", |o| is(o, "summary", "humidity"));
    assert_eq!(rh["value"], "55.50", "{rh}");
    assert_eq!(rh["extra"]["register"], "input register 30002");

    // The fridge warms to 9.5 °C: one alarm, however many polls see it.
    logger.set(0, 95);
    let alarm = wait_for(&gw, "alarm", |o| event(o) == "alarm");
    assert_eq!(alarm["test_code"], "temperature");
    assert_eq!(alarm["value"], "9.5");
    assert_eq!(alarm["flags"], serde_json::json!(["ALARM", "H"]));
    assert_eq!(
        alarm["comments"],
        serde_json::json!(["temperature 9.5 above 8.0 Cel"])
    );
    std::thread::sleep(Duration::from_secs(1));
    // 7.8 °C is inside 2–8 but not by the 0.5 °C hysteresis: still alarmed.
    logger.set(0, 78);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !observations(&gw).iter().any(|o| event(o) == "alarm_clear"),
        "cleared inside the hysteresis"
    );
    logger.set(0, 50);
    let clear = wait_for(&gw, "alarm clear", |o| event(o) == "alarm_clear");
    assert_eq!(clear["value"], "5.0");
    assert_eq!(clear["flags"], serde_json::json!(["CLEAR"]));
    assert_eq!(clear["extra"]["alarm_since"], alarm["observed_at"]);
    let all = observations(&gw);
    let alarms = all.iter().filter(|o| event(o) == "alarm").count();
    assert_eq!(alarms, 1, "{all:#?}");
    // A summary that spans the excursion shows it.
    wait_for(&gw, "summary flagged high", |o| {
        is(o, "summary", "temperature") && o["extra"]["max"] == "9.5" && o["flags"][0] == "H"
    });

    // The stored raw documents decode again to the same observations.
    let texts = texts(&gw, "fridge");
    let file = gw.dir.path().join("stored.jsonl");
    std::fs::write(&file, texts.join(&b'\n')).unwrap();
    let out = Command::new(BIN)
        .args(["decode", "--protocol", "modbus"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let decoded: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let stored = observations(&gw);
    assert_eq!(decoded.len(), stored.len());
    for (d, s) in decoded.iter().zip(&stored) {
        for key in ["test_code", "value", "flags", "observed_at", "extra"] {
            assert_eq!(d[key], s[key], "{key}: {d} vs {s}");
        }
    }
}

#[test]
fn rtu_logger_on_a_pty_is_polled_and_a_cold_fridge_alarms() {
    let pty = PtyPair::new();
    let mut logger = Logger::rtu(&pty.b);
    let source = rtu_source(&pty.a);
    let gw = Gateway::start(&source);
    let temp = wait_for(&gw, "temperature summary over RTU", |o| {
        is(o, "summary", "temperature")
    });
    assert_eq!(temp["value"], "4.70", "{temp}");
    let rh = wait_for(&gw, "humidity summary over RTU", |o| {
        is(o, "summary", "humidity")
    });
    assert_eq!(rh["value"], "55.50", "{rh}");
    // -1.5 °C: a frozen vaccine is as bad as a warm one.
    logger.set(0, -15);
    let alarm = wait_for(&gw, "low alarm", |o| event(o) == "alarm");
    assert_eq!(alarm["value"], "-1.5");
    assert_eq!(alarm["flags"], serde_json::json!(["ALARM", "L"]));
    let faults = observations(&gw)
        .into_iter()
        .filter(|o| o["test_code"] == "device-fault")
        .count();
    assert_eq!(faults, 0, "{}", gw.log());
}

#[test]
fn logger_killed_gives_one_fault_and_polling_resumes_when_it_is_back() {
    let addr = free_addr();
    let mut logger = Logger::tcp(addr);
    let gw = Gateway::start(&tcp_source("fridge", addr, ""));
    wait_for(&gw, "first summary", |o| is(o, "summary", "temperature"));
    // A value only the logger before the fault reports, to tell its readings apart.
    logger.set(0, 61);
    wait_for(&gw, "summary at 6.1", |o| {
        is(o, "summary", "temperature") && o["extra"]["last"] == "6.1"
    });

    drop(logger);
    let fault = wait_for(&gw, "device fault", |o| is(o, "fault", "device-fault"));
    assert_eq!(fault["flags"], serde_json::json!(["FAULT"]));
    let text = fault["value"].as_str().unwrap();
    assert!(
        text.starts_with(&format!("cannot connect to {addr}: ")) && text.contains("refused"),
        "{fault}"
    );
    assert_eq!(fault["extra"]["failures"], "2");
    // Down for a while: still one fault, no summaries without readings.
    std::thread::sleep(Duration::from_secs(3));
    let before = observations(&gw);
    let faults = before.iter().filter(|o| event(o) == "fault").count();
    assert_eq!(faults, 1, "{before:#?}");

    logger = Logger::tcp(addr);
    logger.set(0, 52);
    let recovered = wait_for(&gw, "recovered", |o| is(o, "recovered", "device-fault"));
    assert_eq!(recovered["value"], "recovered");
    assert_eq!(recovered["extra"]["since"], fault["extra"]["since"]);
    let after = wait_for(&gw, "summary after recovery", |o| {
        is(o, "summary", "temperature") && o["extra"]["last"] == "5.2"
    });
    // The restarted logger may be polled once at its start value (4.7) before the test sets
    // 5.2; a reading from before the fault (6.1) must not be in the summary.
    assert_eq!(
        after["extra"]["max"], "5.2",
        "only readings after the restart: {after}"
    );
}

#[test]
fn missing_register_is_a_fault_naming_the_exception_and_register() {
    let addr = free_addr();
    let _logger = Logger::tcp(addr);
    let extra = "[[sources.modbus.registers]]\nname = \"door\"\naddress = 100\n";
    let gw = Gateway::start(&tcp_source("fridge", addr, extra));
    let fault = wait_for(&gw, "exception fault", |o| event(o) == "fault");
    assert_eq!(
        fault["value"],
        "illegal data address at holding register 40101 (exception code 2)"
    );
    assert_eq!(fault["extra"]["exception"], "2");
    // The device is there: the connection is kept and nothing else is stored as a summary.
    std::thread::sleep(Duration::from_secs(3));
    let all = observations(&gw);
    assert_eq!(
        all.iter().filter(|o| event(o) == "fault").count(),
        1,
        "{all:#?}"
    );
    assert!(!all.iter().any(|o| event(o) == "summary"), "{all:#?}");
}

#[test]
fn rtu_logger_silent_gives_a_timeout_fault_and_answers_again_after_restart() {
    let pty = PtyPair::new();
    let logger = Logger::rtu(&pty.b);
    let source = rtu_source(&pty.a);
    let gw = Gateway::start(&source);
    wait_for(&gw, "first summary over RTU", |o| {
        is(o, "summary", "temperature")
    });
    // The logger goes quiet; the RS-485 line (the pty) is still there, so requests time out.
    drop(logger);
    let fault = wait_for(&gw, "timeout fault", |o| is(o, "fault", "device-fault"));
    assert_eq!(
        fault["value"], "no answer (timeout) reading holding register 40001",
        "{fault}"
    );
    let mut logger = Logger::rtu(&pty.b);
    logger.set(0, 61);
    wait_for(&gw, "recovered over RTU", |o| {
        is(o, "recovered", "device-fault")
    });
    wait_for(&gw, "summary after recovery over RTU", |o| {
        is(o, "summary", "temperature") && o["extra"]["last"] == "6.1"
    });
}
