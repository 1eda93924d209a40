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
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
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
}

impl Gateway {
    /// Write a config with `sources` (TOML `[[sources]]` blocks) and start the binary.
    pub fn start(sources: &str) -> Gateway {
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
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("data/pocketgate.db")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
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
        PtyPair {
            a,
            b,
            child,
            _dir: dir,
        }
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
                "H|\\^&|||Afinion 2^^A2-1234|||||||P|1|20240101{:06}\r\
                 P|1\r\
                 O|1|S{i:05}||^^^HbA1c|R\r\
                 R|1|^^^HbA1c|{}.{}|%||||F||||20240101120000\r\
                 L|1|N\r",
                i,
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
