//! MQTT ingest against a real Mosquitto broker (started by each test on a free 127.0.0.1 port,
//! persistence in a temp dir) and the real gateway binary: payloads are stored and decoded,
//! bad payloads are kept as `invalid`, nothing is lost or duplicated across broker restarts,
//! gateway crashes between commit and PUBACK, and logins are checked.

use crate::support::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SOURCE: &str = "lab-mqtt";

/// A Mosquitto broker process with its own config, persistence and log in a temp dir.
struct Broker {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    /// Extra lines for mosquitto.conf (auth, TLS).
    extra: String,
    /// Extra `mosquitto_pub` arguments (login, TLS).
    pub_args: Vec<String>,
    child: Option<Child>,
}

impl Broker {
    fn start() -> Broker {
        Self::start_with("allow_anonymous true\n", &[])
    }

    fn start_with(extra: &str, pub_args: &[&str]) -> Broker {
        let mut b = Broker {
            dir: tempfile::tempdir().unwrap(),
            addr: free_addr(),
            extra: extra.to_owned(),
            pub_args: pub_args.iter().map(|a| a.to_string()).collect(),
            child: None,
        };
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        let d = self.dir.path();
        let conf = d.join("mosquitto.conf");
        // `user root`: when the tests run as root, Mosquitto would otherwise switch to the
        // `mosquitto` user and be unable to write its persistence file here (no effect as non-root).
        std::fs::write(
            &conf,
            format!(
                "user root\nlistener {} 127.0.0.1\npersistence true\npersistence_location {}/\n\
                 log_dest file {}\nlog_type all\nmax_queued_messages 10000\n{}",
                self.addr.port(),
                d.display(),
                d.join("mosquitto.log").display(),
                self.extra
            ),
        )
        .unwrap();
        // Debian installs it in /usr/sbin, which is not on every user's PATH.
        let bin = ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("mosquitto");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto is needed for the MQTT tests (apt-get install mosquitto mosquitto-clients)");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(self.addr).is_err() {
            assert!(
                Instant::now() < until,
                "mosquitto did not listen on {}:\n{}",
                self.addr,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    /// SIGTERM: Mosquitto writes its persistence file and exits.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// Wait until the broker has received `n` PUBACKs from the gateway (its log says so).
    fn wait_pubacks(&self, n: usize) {
        let until = Instant::now() + Duration::from_secs(20);
        while self
            .log()
            .matches("Received PUBACK from pocketgate-")
            .count()
            < n
        {
            assert!(
                Instant::now() < until,
                "the broker got fewer than {n} PUBACKs:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    /// `mosquitto_pub -q 1`: returns once the broker acknowledged the message.
    fn publish(&self, topic: &str, payload: &[u8]) {
        let mut cmd = Command::new("mosquitto_pub");
        cmd.args(["-h", "127.0.0.1", "-p", &self.addr.port().to_string()])
            .args(["-q", "1", "-t", topic, "-s"]);
        cmd.args(&self.pub_args);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mosquitto_pub is needed (apt-get install mosquitto-clients)");
        child.stdin.take().unwrap().write_all(payload).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "mosquitto_pub to {topic}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The `[[sources]]` block: JSON on `lab/+/json`, HL7 on `lab/+/hl7`, ASTM on `lab/+/astm`.
fn source(broker: SocketAddr, extra: &str) -> String {
    format!(
        "[[sources]]\nid = \"{SOURCE}\"\nprotocol = \"mqtt\"\ntransport = \"mqtt\"\n\n\
         [sources.mqtt]\nbroker = \"{broker}\"\nbackoff_min = \"100ms\"\nbackoff_max = \"1s\"\n{extra}\n\
         [[sources.mqtt.topics]]\nfilter = \"lab/+/json\"\nformat = \"json\"\n\n\
         [[sources.mqtt.topics]]\nfilter = \"lab/+/hl7\"\nformat = \"hl7\"\n\n\
         [[sources.mqtt.topics]]\nfilter = \"lab/+/astm\"\nformat = \"astm\"\n"
    )
}

/// The gateway log without terminal colour codes (`key=value` as written).
fn plain_log(gw: &Gateway) -> String {
    let log = gw.log();
    let mut out = String::with_capacity(log.len());
    let mut rest = log.as_str();
    while let Some(start) = rest.find('\x1b') {
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        rest = rest.find('m').map_or("", |end| &rest[end + 1..]);
    }
    out.push_str(rest);
    out
}

fn count(gw: &Gateway, needle: &str) -> usize {
    plain_log(gw).matches(needle).count()
}

/// Wait until the log says `needle` at least `n` times.
fn wait_count(gw: &Gateway, needle: &str, n: usize) {
    let until = Instant::now() + Duration::from_secs(30);
    while count(gw, needle) < n {
        assert!(
            Instant::now() < until,
            "log never said {needle:?} {n} times:\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(30));
    }
}

/// The subscription of the `n`-th connection is in place (SUBACK received for every filter).
fn wait_subscribed(gw: &Gateway, n: usize) {
    wait_count(gw, "subscribed", 3 * n);
}

/// Wait until `n` messages are stored; fail if more appear.
fn wait_stored(gw: &Gateway, n: usize) -> Vec<Vec<u8>> {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let texts = pocketgate::store::Reader::open(&gw.db())
            .ok()
            .and_then(|r| r.texts(SOURCE).ok())
            .unwrap_or_default();
        assert!(texts.len() <= n, "{} stored, expected {n}", texts.len());
        if texts.len() == n {
            return texts;
        }
        assert!(
            Instant::now() < until,
            "only {} of {n} stored:\n{}",
            texts.len(),
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `(protocol, wire)` of every stored message, oldest first.
fn wires(gw: &Gateway) -> Vec<(String, Vec<u8>)> {
    let conn = rusqlite::Connection::open(gw.db()).unwrap();
    let mut stmt = conn
        .prepare("SELECT protocol, wire FROM messages ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn fixture_at(dir: &str, name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The HL7 message inside an MLLP-framed fixture.
fn hl7_message(name: &str) -> Vec<u8> {
    let framed = fixture_at("hl7", name);
    let start = framed.iter().position(|b| *b == 0x0b).unwrap() + 1;
    let end = framed.iter().rposition(|b| *b == 0x1c).unwrap();
    framed[start..end].to_vec()
}

fn json_result(i: usize) -> Vec<u8> {
    format!(r#"{{"sample_id":"S{i:04}","test_code":"MTB","value":"NOT DETECTED"}}"#).into_bytes()
}

#[test]
fn json_and_hl7_payloads_on_two_topics_are_stored_and_decoded() {
    let broker = Broker::start();
    let gw = Gateway::start(&source(broker.addr, ""));
    wait_subscribed(&gw, 1);

    let json = fixture_at("http", "observations.json");
    let hl7 = hl7_message("s22-mindray-bc5380-oru-r01.hl7");
    broker.publish("lab/afinion/json", &json);
    broker.publish("lab/bc5380/hl7", &hl7);
    let texts = wait_stored(&gw, 2);
    assert_eq!(texts, [json.clone(), hl7.clone()]);

    let mut stored = gw.reader().messages(None, 10).unwrap();
    stored.reverse();
    assert!(
        stored
            .iter()
            .all(|m| m.status == "received" && m.protocol == "mqtt")
    );
    let obs = &stored[0].observations;
    assert_eq!(obs.len(), 2);
    assert_eq!(obs[0].sample_id.as_deref(), Some("S-1001"));
    assert_eq!(obs[0].value.as_deref(), Some("6.5"));
    assert_eq!(obs[1].test_code, "CRP");
    assert_eq!(obs[1].extra["mqtt_topic"], "lab/afinion/json");
    let obs = &stored[1].observations;
    assert_eq!(obs.len(), 64);
    let wbc = obs.iter().find(|o| o.test_code == "6690-2").unwrap();
    assert_eq!(wbc.value.as_deref(), Some("9.81"));
    assert_eq!(wbc.sample_id.as_deref(), Some("20071207011"));
    assert_eq!(wbc.extra["mqtt_topic"], "lab/bc5380/hl7");

    // The stored wire bytes keep the topic beside the untouched payload.
    let w = wires(&gw);
    let mut expected = b"lab/bc5380/hl7\0".to_vec();
    expected.extend_from_slice(&hl7);
    assert_eq!(w[1], ("mqtt".to_owned(), expected));
}

#[test]
fn payload_that_does_not_parse_is_kept_invalid_with_a_precise_error() {
    let broker = Broker::start();
    let mut gw = Gateway::start(&source(broker.addr, "max_payload = 2048\n"));
    wait_subscribed(&gw, 1);

    broker.publish("lab/gx-1/json", &json_result(1));
    broker.publish("lab/gx-1/json", b"{\"test_code\": \"MTB\",\n \"value\": }");
    broker.publish("lab/gx-1/astm", b"R|1|^^^MTB|DETECTED\r");
    broker.publish("lab/gx-1/json", &json_result(2));
    let huge = format!(
        "[{}]",
        vec![String::from_utf8(json_result(9)).unwrap(); 60].join(",")
    );
    broker.publish("lab/gx-1/json", huge.as_bytes());
    wait_stored(&gw, 5);

    let mut stored = gw.reader().messages(None, 10).unwrap();
    stored.reverse();
    let statuses: Vec<_> = stored.iter().map(|m| m.status.as_str()).collect();
    assert_eq!(
        statuses,
        ["received", "invalid", "invalid", "received", "invalid"]
    );
    let too_big = stored[4].parse_errors.as_deref().unwrap();
    assert!(
        too_big.starts_with(&format!(
            "topic \"lab/gx-1/json\": payload of {} bytes is over max_payload (2048 bytes); not kept (sha256 ",
            huge.len()
        )),
        "{too_big}"
    );
    assert!(stored[4].observations.is_empty());
    assert!(plain_log(&gw).contains("MQTT payload too large"));
    let json_error = stored[1].parse_errors.as_deref().unwrap();
    assert!(
        json_error.starts_with("topic \"lab/gx-1/json\" (json): not valid JSON: "),
        "{json_error}"
    );
    assert!(json_error.contains("line 2 column 11"), "{json_error}");
    let astm_error = stored[2].parse_errors.as_deref().unwrap();
    assert!(
        astm_error.starts_with("topic \"lab/gx-1/astm\" (astm): no H record"),
        "{astm_error}"
    );
    assert_eq!(
        stored[3].observations[0].sample_id.as_deref(),
        Some("S0002")
    );
    // The raw bytes of the bad payload are kept.
    assert_eq!(
        texts(&gw, SOURCE)[1],
        b"{\"test_code\": \"MTB\",\n \"value\": }"
    );
    assert!(gw.log().contains("MQTT payload stored as invalid"));

    // All five were acknowledged: after a restart the broker resends none of them.
    broker.wait_pubacks(5);
    gw.kill9();
    gw.spawn();
    wait_subscribed(&gw, 2);
    broker.publish("lab/gx-1/json", &json_result(3));
    wait_stored(&gw, 6);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        count(&gw, "resent MQTT message already stored"),
        0,
        "{}",
        gw.log()
    );
    wait_stored(&gw, 6);
}

#[test]
fn broker_restart_and_gateway_downtime_lose_nothing_and_duplicate_nothing() {
    let mut broker = Broker::start();
    let mut gw = Gateway::start(&source(broker.addr, ""));
    wait_subscribed(&gw, 1);
    let all: Vec<Vec<u8>> = (0..60).map(json_result).collect();

    for m in &all[..20] {
        broker.publish("lab/gx-1/json", m);
    }
    wait_stored(&gw, 20);

    // The broker goes away (its persistence file keeps the gateway's session) and comes back.
    broker.stop();
    wait_count(&gw, "MQTT connection lost", 1);
    broker.spawn();
    // Published at once: the gateway may not have reconnected yet; the session queues them.
    for m in &all[20..40] {
        broker.publish("lab/gx-1/json", m);
    }
    wait_stored(&gw, 40);

    // The gateway is down while more results arrive; they are delivered when it is back.
    gw.kill9();
    for m in &all[40..] {
        broker.publish("lab/gx-1/json", m);
    }
    gw.spawn();
    let stored = wait_stored(&gw, 60);
    std::thread::sleep(Duration::from_millis(500));
    let stored_after = texts(&gw, SOURCE);
    assert_eq!(stored_after.len(), 60, "a late duplicate appeared");
    let mut got = stored;
    got.sort();
    let mut want = all;
    want.sort();
    assert_eq!(got, want);
    assert!(
        plain_log(&gw).contains("session_present=true"),
        "the broker must have kept the session:\n{}",
        gw.log()
    );
}

/// A TCP relay between the gateway and the broker that can swallow everything the gateway sends
/// (its PUBACKs), and records what the broker sends on each connection.
struct Relay {
    addr: SocketAddr,
    swallow_up: Arc<AtomicBool>,
    down: Arc<Mutex<Vec<u8>>>,
}

impl Relay {
    fn start(broker: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let swallow_up = Arc::new(AtomicBool::new(false));
        let down = Arc::new(Mutex::new(Vec::new()));
        let (s, d) = (swallow_up.clone(), down.clone());
        std::thread::spawn(move || {
            for gateway in listener.incoming() {
                let Ok(gateway) = gateway else { return };
                let Ok(upstream) = TcpStream::connect(broker) else {
                    continue;
                };
                let (g2, u2) = (gateway.try_clone().unwrap(), upstream.try_clone().unwrap());
                let swallow = s.clone();
                std::thread::spawn(move || pump(g2, u2, |_| !swallow.load(Ordering::SeqCst)));
                let record = d.clone();
                std::thread::spawn(move || {
                    pump(upstream, gateway, |bytes| {
                        record.lock().unwrap().extend_from_slice(bytes);
                        true
                    })
                });
            }
        });
        Relay {
            addr,
            swallow_up,
            down,
        }
    }
}

/// Copy `from` → `to` while `forward(bytes)` says so (else drop the bytes); close both at the end.
fn pump(mut from: TcpStream, mut to: TcpStream, forward: impl Fn(&[u8]) -> bool) {
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if forward(&buf[..n]) && to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

#[test]
fn gateway_killed_between_commit_and_puback_gets_the_message_again_and_stores_it_once() {
    let broker = Broker::start();
    let relay = Relay::start(broker.addr);
    // A long keep-alive: while the relay swallows the gateway's packets, pings do not get through.
    let mut gw = Gateway::start(&source(relay.addr, "keep_alive = \"60s\"\n"));
    wait_subscribed(&gw, 1);

    relay.swallow_up.store(true, Ordering::SeqCst);
    let payload = json_result(7);
    broker.publish("lab/gx-1/json", &payload);
    // Committed; its PUBACK went to the relay, which dropped it.
    wait_stored(&gw, 1);
    gw.kill9();

    relay.down.lock().unwrap().clear();
    relay.swallow_up.store(false, Ordering::SeqCst);
    gw.spawn();
    wait_count(
        &gw,
        "resent MQTT message already stored; acknowledged again",
        1,
    );
    assert_eq!(wait_stored(&gw, 1), std::slice::from_ref(&payload));
    let resent = relay.down.lock().unwrap().clone();
    assert!(
        resent.windows(payload.len()).any(|w| w == payload),
        "the broker did not resend the unacknowledged message"
    );

    // This time the PUBACK got through: another restart brings no resend.
    broker.publish("lab/gx-1/json", &json_result(8));
    wait_stored(&gw, 2);
    broker.wait_pubacks(2);
    gw.kill9();
    gw.spawn();
    wait_subscribed(&gw, 3);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        count(&gw, "resent MQTT message already stored"),
        1,
        "{}",
        gw.log()
    );
    wait_stored(&gw, 2);
}

fn password_file(dir: &Path, user: &str, password: &str) -> PathBuf {
    let file = dir.join("passwd");
    let bin = ["/usr/bin/mosquitto_passwd", "/usr/sbin/mosquitto_passwd"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("mosquitto_passwd");
    let out = Command::new(bin)
        .args(["-b", "-c"])
        .arg(&file)
        .args([user, password])
        .output()
        .expect("mosquitto_passwd is needed (apt-get install mosquitto)");
    assert!(out.status.success(), "{out:?}");
    file
}

#[test]
fn wrong_password_is_reported_clearly_and_the_right_one_works_without_a_restart() {
    let secrets = tempfile::tempdir().unwrap();
    let passwd = password_file(secrets.path(), "gateway", "s3cret-pw-81f2");
    let broker = Broker::start_with(
        &format!(
            "allow_anonymous false\npassword_file {}\n",
            passwd.display()
        ),
        &["-u", "gateway", "-P", "s3cret-pw-81f2"],
    );
    let secret = secrets.path().join("mqtt-password");
    std::fs::write(&secret, "wrong-pw-3c9d\n").unwrap();
    let gw = Gateway::start(&source(
        broker.addr,
        &format!(
            "username = \"gateway\"\npassword_file = \"{}\"\n",
            secret.display()
        ),
    ));
    wait_count(
        &gw,
        "the MQTT broker refused the login: wrong user name or password",
        1,
    );
    assert!(
        !gw.log().contains("wrong-pw-3c9d"),
        "the password was logged"
    );
    assert!(!gw.log().contains("subscribed"));

    // Fixing the secret file is enough: it is read again before the next attempt.
    std::fs::write(&secret, "s3cret-pw-81f2\n").unwrap();
    wait_subscribed(&gw, 1);
    broker.publish("lab/gx-1/json", &json_result(1));
    wait_stored(&gw, 1);
    assert!(
        !gw.log().contains("s3cret-pw-81f2"),
        "the password was logged"
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is needed for the MQTT TLS test");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

/// A throw-away CA and a server certificate for `broker.test` signed by it: `(ca, cert, key)`.
fn test_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec![
        "req", "-x509", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
    ];
    ca.extend(ec);
    ca.extend(["-subj", "/CN=pocketgate test CA"]);
    openssl(dir, &ca);
    let mut csr = vec!["req", "-keyout", "server.key", "-out", "server.csr"];
    csr.extend(ec);
    csr.extend(["-subj", "/CN=broker.test"]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:broker.test\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

#[test]
fn tls_broker_is_verified_against_the_configured_name() {
    let pki = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_pki(pki.path());
    let ca_arg = ca.display().to_string();
    let broker = Broker::start_with(
        &format!(
            "allow_anonymous true\ncafile {}\ncertfile {}\nkeyfile {}\n",
            ca.display(),
            cert.display(),
            key.display()
        ),
        // The publisher checks the chain but not the name (it connects to 127.0.0.1).
        &["--cafile", &ca_arg, "--insecure"],
    );
    let tls = |name: &str| {
        source(
            broker.addr,
            &format!(
                "tls = true\nca_file = \"{}\"\nserver_name = \"{name}\"\n",
                ca.display()
            ),
        )
    };

    // A certificate for another name is refused, whatever the CA.
    let wrong = Gateway::start(&tls("other.test"));
    wait_count(&wrong, "TLS with the MQTT broker failed", 1);
    assert!(
        plain_log(&wrong).contains("certificate not valid for name \"other.test\""),
        "{}",
        wrong.log()
    );
    assert_eq!(count(&wrong, "subscribed"), 0);
    drop(wrong);

    let gw = Gateway::start(&tls("broker.test"));
    wait_subscribed(&gw, 1);
    broker.publish("lab/gx-1/json", &json_result(1));
    assert_eq!(wait_stored(&gw, 1), [json_result(1)]);
}

#[test]
fn failed_commit_is_not_acknowledged_and_the_broker_resends_after_a_reconnect() {
    let broker = Broker::start();
    let gw = Gateway::start(&source(broker.addr, ""));
    wait_subscribed(&gw, 1);
    broker.publish("lab/gx-1/json", &json_result(1));
    wait_stored(&gw, 1);
    broker.wait_pubacks(1);

    // Another process holds the database's write lock past the writer's 5 s busy timeout.
    let blocker = rusqlite::Connection::open(gw.db()).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    broker.publish("lab/gx-1/json", &json_result(2));
    wait_count(&gw, "commit failed; not acknowledged, reconnecting", 1);
    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);

    // After the reconnect the broker resends the unacknowledged message, and it is stored.
    let stored = wait_stored(&gw, 2);
    assert_eq!(stored[1], json_result(2));
    broker.wait_pubacks(2);
    assert!(
        count(&gw, "connected to the MQTT broker") >= 2,
        "{}",
        gw.log()
    );
}

#[test]
fn gateway_killed_after_receiving_but_before_the_commit_gets_the_message_again() {
    let broker = Broker::start();
    let relay = Relay::start(broker.addr);
    let mut gw = Gateway::start(&source(relay.addr, ""));
    wait_subscribed(&gw, 1);

    // The commit cannot happen while another process holds the write lock.
    let blocker = rusqlite::Connection::open(gw.db()).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let payload = json_result(42);
    broker.publish("lab/gx-1/json", &payload);
    let until = Instant::now() + Duration::from_secs(10);
    while !relay
        .down
        .lock()
        .unwrap()
        .windows(payload.len())
        .any(|w| w == payload)
    {
        assert!(
            Instant::now() < until,
            "the message never reached the gateway"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    gw.kill9();
    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);
    assert_eq!(gw.reader().count().unwrap(), 0);

    gw.spawn();
    assert_eq!(wait_stored(&gw, 1), std::slice::from_ref(&payload));
    broker.wait_pubacks(1);
    std::thread::sleep(Duration::from_millis(300));
    wait_stored(&gw, 1);
}
