//! Test support: the real `pocketgate` binary in a temp dir, free ports, socat pty pairs.

use pocketgate::store::Reader;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_pocketgate");

pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/astm")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A port nobody listens on right now.
pub fn free_addr() -> SocketAddr {
    free_addrs(1)[0]
}

/// `n` distinct free ports (all held until chosen, so the kernel cannot hand one out twice).
pub fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter().map(|l| l.local_addr().unwrap()).collect()
}

/// A TCP server source block for the config file.
pub fn tcp_source(id: &str, addr: SocketAddr, receive_timeout: &str) -> String {
    format!(
        "[[sources]]\nid = \"{id}\"\nprotocol = \"astm\"\ntransport = \"tcp-server\"\n\
         listen = \"{addr}\"\nreceive_timeout = \"{receive_timeout}\"\n"
    )
}

pub fn serial_source(id: &str, port: &Path) -> String {
    format!(
        "[[sources]]\nid = \"{id}\"\nprotocol = \"astm\"\ntransport = \"serial\"\n\
         port = \"{}\"\nbaud = 9600\nreopen_after = \"200ms\"\n",
        port.display()
    )
}

/// The gateway as a real process with its own data directory.
pub struct Gateway {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    child: Option<Child>,
    /// Extra environment for the process (`POCKETGATE_SYSFS` …).
    env: Vec<(String, String)>,
}

impl Gateway {
    /// Write a config with `sources` (TOML `[[sources]]` blocks) and start the binary.
    pub fn start(sources: &str) -> Gateway {
        Self::start_with_env(sources, &[])
    }

    /// [`Gateway::start`] with extra environment variables.
    pub fn start_with_env(sources: &str, env: &[(&str, &str)]) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("pocketgate.toml");
        let body = format!(
            "[gateway]\nname = \"test\"\ndata_dir = \"{}\"\n\n{sources}",
            dir.path().join("data").display()
        );
        std::fs::write(&config, body).unwrap();
        let mut gw = Gateway {
            dir,
            config,
            child: None,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        gw.spawn();
        gw
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("gateway.log"))
            .unwrap();
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&self.config)
            .env("POCKETGATE_LOG", "debug")
            .env("PG_TEST_DHIS2_TOKEN", SIM_TOKEN)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// The running gateway's process id (the torture run samples its memory).
    #[allow(dead_code)]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("data/pocketgate.db")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    /// The last `n` lines of the log.
    #[allow(dead_code)]
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// SIGKILL: no shutdown code runs, as in a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Wait until `addr` accepts connections (the gateway is up).
    pub fn wait_listening(&self, addr: SocketAddr) {
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            if TcpStream::connect(addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("gateway never listened on {addr}; log:\n{}", self.log());
    }

    pub fn reader(&self) -> Reader {
        Reader::open(&self.db()).unwrap()
    }

    /// Wait until the log contains `needle`.
    pub fn wait_log(&self, needle: &str) {
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            if self.log().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("log never said {needle:?}:\n{}", self.log());
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A socat pty pair: the gateway opens `a`, the simulated analyzer opens `b`.
pub struct PtyPair {
    pub a: PathBuf,
    pub b: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl PtyPair {
    pub fn new() -> PtyPair {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("gateway-tty");
        let b = dir.path().join("analyzer-tty");
        let child = Self::socat(&a, &b);
        PtyPair {
            a,
            b,
            child,
            _dir: dir,
        }
    }

    /// Pull the adapter out (the ptys vanish) and plug it back in under the same names.
    pub fn replug(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // SIGKILL leaves socat's symlinks behind; the ptys they named are gone.
        let _ = std::fs::remove_file(&self.a);
        let _ = std::fs::remove_file(&self.b);
        std::thread::sleep(Duration::from_millis(300));
        self.child = Self::socat(&self.a, &self.b);
    }

    fn socat(a: &Path, b: &Path) -> Child {
        let child = Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,link={}", b.display()))
            .stderr(Stdio::null())
            .spawn()
            .expect("socat is needed for serial tests (apt-get install socat)");
        let until = Instant::now() + Duration::from_secs(10);
        while !(a.exists() && b.exists()) {
            assert!(Instant::now() < until, "socat did not create the pty pair");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` distinct small ASTM result messages (sample ids `S00000`…), as an analyzer would send them.
pub fn numbered_messages(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            format!(
                "H|\\^&|||Afinion 2^^A2-1234|||||||P|1|20240101{:02}{:02}{:02}\r\
                 P|1\r\
                 O|1|S{i:05}||^^^HbA1c|R\r\
                 R|1|^^^HbA1c|{}.{}|%||||F||||20240101120000\r\
                 L|1|N\r",
                (i / 3600) % 24,
                (i / 60) % 60,
                i % 60,
                5 + i % 7,
                i % 10
            )
            .into_bytes()
        })
        .collect()
}

pub fn texts(gw: &Gateway, source: &str) -> Vec<Vec<u8>> {
    gw.reader().texts(source).unwrap()
}

/// Statuses of every stored message, oldest first.
pub fn statuses(gw: &Gateway) -> Vec<(String, Option<String>)> {
    let mut rows: Vec<_> = gw
        .reader()
        .messages(None, 100_000)
        .unwrap()
        .into_iter()
        .map(|m| (m.status, m.error))
        .collect();
    rows.reverse();
    rows
}

/// Wait until no stored message is still waiting to be rendered or delivered.
pub fn wait_settled(
    gw: &Gateway,
    expected: usize,
    within: Duration,
) -> Vec<(String, Option<String>)> {
    let until = Instant::now() + within;
    loop {
        let s = Reader::open(&gw.db())
            .ok()
            .and_then(|r| r.messages(None, 100_000).ok())
            .map(|ms| {
                let mut v: Vec<_> = ms.into_iter().map(|m| (m.status, m.error)).collect();
                v.reverse();
                v
            })
            .unwrap_or_default();
        let done = s.len() >= expected
            && s.iter()
                .all(|(st, _)| !matches!(st.as_str(), "received" | "rendered"));
        if done {
            return s;
        }
        assert!(Instant::now() < until, "not settled: {s:?}\n{}", gw.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub const SIM_BIN: &str = env!("CARGO_BIN_EXE_dhis2-sim");
/// A personal access token whose checksum is valid under DHIS2 2.41+ (dhis2.md §1.2).
pub const SIM_TOKEN: &str = "d2pat_qg8aTF459WO5LMr0uLi7P3wG8IXq683V1086477046";

/// The DHIS2 test server as a real process.
pub struct Dhis2Sim {
    pub addr: SocketAddr,
    pub url: String,
    child: Option<Child>,
    args: Vec<String>,
}

impl Dhis2Sim {
    /// Start on a free port with the project's metadata fixture and [`SIM_TOKEN`].
    pub fn start(version: &str) -> Dhis2Sim {
        let addr = free_addr();
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dhis2/metadata.json");
        let args = vec![
            "--listen".to_string(),
            addr.to_string(),
            "--version".into(),
            version.into(),
            "--token".into(),
            SIM_TOKEN.into(),
            "--user".into(),
            "admin:district".into(),
            "--metadata".into(),
            fixture.display().to_string(),
        ];
        let mut sim = Dhis2Sim {
            addr,
            url: format!("http://{addr}"),
            child: None,
            args,
        };
        sim.spawn();
        sim
    }

    /// A sim that is not running yet (the link is down); `spawn` brings it up on `addr`.
    pub fn down(version: &str) -> Dhis2Sim {
        let mut sim = Self::start(version);
        sim.stop();
        sim
    }

    pub fn spawn(&mut self) {
        let child = Command::new(SIM_BIN)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(self.addr).is_err() {
            assert!(
                Instant::now() < until,
                "dhis2-sim did not listen on {}",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// What the server stored: `{trackedEntities, enrollments, events, dataValues}`.
    pub fn objects(&self) -> serde_json::Value {
        http_json("GET", self.addr, "/__sim/objects", None)
    }

    pub fn events(&self) -> Vec<serde_json::Value> {
        self.objects()["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// `POST /api/tracker?async=false` as a DHIS2 user would (clinic staff enrolling a patient).
    pub fn post_tracker(&self, body: serde_json::Value) -> serde_json::Value {
        http(
            "POST",
            self.addr,
            "/api/tracker?async=false&importStrategy=CREATE_AND_UPDATE",
            Some(body),
            Some(&format!("ApiToken {SIM_TOKEN}")),
        )
    }

    /// Switch on a fault (`{"status": 503, "count": 3}` …; see dhis2sim's admin API).
    pub fn fault(&self, body: serde_json::Value) {
        http_json("POST", self.addr, "/__sim/faults", Some(body));
    }
}

impl Drop for Dhis2Sim {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A minimal HTTP/1.1 JSON request (tests only talk to 127.0.0.1).
pub fn http_json(
    method: &str,
    addr: SocketAddr,
    path: &str,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    http(method, addr, path, body, None)
}

fn http(
    method: &str,
    addr: SocketAddr,
    path: &str,
    body: Option<serde_json::Value>,
    authorization: Option<&str>,
) -> serde_json::Value {
    use std::io::{Read, Write};
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let rest = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    serde_json::from_str(&rest).unwrap_or(serde_json::Value::Null)
}

pub fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// A `[dhis2]` block pointing at `sim`, authenticated with the token through an env var.
pub fn dhis2_block(sim: &Dhis2Sim, temprs: &Path, org_unit: &str) -> String {
    format!(
        "[dhis2]\nurl = \"{}\"\ntoken_env = \"PG_TEST_DHIS2_TOKEN\"\ntemprs = \"{}\"\norg_unit = \"{org_unit}\"\n\
         retry_min = \"200ms\"\nretry_max = \"1s\"\ntimeout = \"5s\"\n",
        sim.url,
        temprs.display()
    )
}
