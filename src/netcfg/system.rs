//! The seam between the network engine and the machine: the [`System`] trait.
//!
//! [`apply`] is the same code everywhere: it writes the rendered files atomically under
//! [`System::root`] (a temp dir on a laptop, `/` on the box), removes files of parts that were
//! turned off, then restarts only the services whose files changed and stops the ones that lost
//! their files. What differs is behind the trait: [`Host`] runs the configured commands
//! (`system.restart`, `system.stop`, `system.scan`, `system.reboot`) and reads `/sys/class/net`; [`Recorder`]
//! writes under a temp root and records what it was asked to do.

use super::render::{MANAGED, Service, render};
use super::scan::{self, LinkState, ScanResult};
use super::{NetError, Network, SystemSettings, validate};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What the engine needs from the machine.
pub trait System {
    /// Rendered files are written under this directory.
    fn root(&self) -> &Path;
    fn restart(&mut self, service: Service) -> Result<(), NetError>;
    fn stop(&mut self, service: Service) -> Result<(), NetError>;
    /// Access points in range, strongest first.
    fn scan(&mut self, interface: &str) -> Result<Vec<ScanResult>, NetError>;
    fn link(&mut self, interface: &str) -> Result<LinkState, NetError>;
    /// Reboot the machine (`system.reboot`). Returns once the command has been accepted; the
    /// process is usually killed soon after.
    fn reboot(&mut self) -> Result<(), NetError>;
}

/// What [`apply`] did.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// Files whose contents changed (relative to the root).
    pub written: Vec<PathBuf>,
    pub unchanged: Vec<PathBuf>,
    /// Files of parts turned off.
    pub removed: Vec<PathBuf>,
    pub restarted: Vec<Service>,
    pub stopped: Vec<Service>,
    /// Services whose command failed; the files are in place, so running apply again (or
    /// restarting the service by hand) finishes the job.
    pub failed: Vec<(Service, NetError)>,
}

impl ApplyReport {
    pub fn ok(&self) -> bool {
        self.failed.is_empty()
    }
}

/// Validates, writes what changed, removes what is no longer configured, then stops and
/// restarts only the services concerned (in [`Service`] order). A file error stops apply
/// before any service is touched; a service command failing is reported and the others still
/// run (see [`ApplyReport::failed`]).
pub fn apply(n: &Network, sys: &mut dyn System) -> Result<ApplyReport, NetError> {
    validate(n).map_err(NetError::Invalid)?;
    let files = render(n);
    let root = sys.root().to_path_buf();
    let mut report = ApplyReport::default();
    let mut changed = BTreeSet::new();
    for f in &files {
        let path = root.join(&f.path);
        let old = match std::fs::read(&path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(NetError::Io { path, source }),
        };
        if old.as_deref() == Some(f.contents.as_bytes()) {
            report.unchanged.push(f.path.clone());
        } else {
            write_atomic(&path, f.contents.as_bytes(), f.mode)?;
            report.written.push(f.path.clone());
            changed.insert(f.service);
        }
    }
    let kept: BTreeSet<Service> = files.iter().map(|f| f.service).collect();
    let mut gone = BTreeSet::new();
    for (rel, service) in MANAGED {
        if files.iter().any(|f| f.path == Path::new(rel)) {
            continue;
        }
        let path = root.join(rel);
        match std::fs::remove_file(&path) {
            Ok(()) => {
                report.removed.push(PathBuf::from(rel));
                if !kept.contains(&service) {
                    gone.insert(service);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(NetError::Io { path, source }),
        }
    }
    for s in gone {
        match sys.stop(s) {
            Ok(()) => report.stopped.push(s),
            Err(e) => report.failed.push((s, e)),
        }
    }
    for s in changed {
        match sys.restart(s) {
            Ok(()) => report.restarted.push(s),
            Err(e) => report.failed.push((s, e)),
        }
    }
    Ok(report)
}

/// Writes a file so that a crash leaves the old or the new contents, never a mix: a temp file
/// in the same directory, fsync, rename over, fsync of the directory. Parents are created.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), NetError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| NetError::Io { path, source }
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io(&tmp))?;
        // `mode` at creation is filtered by the umask; set it exactly.
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The real machine: commands from `[system]`, state from `/sys/class/net`, `ip` and `iw`.
#[derive(Debug, Clone)]
pub struct Host {
    pub settings: SystemSettings,
    /// Where interfaces are listed. Default `/sys/class/net`.
    pub sys_class_net: PathBuf,
    /// Longest a command may run (a scan takes a few seconds). Default 30 s.
    pub timeout: Duration,
}

impl Host {
    pub fn new(settings: &SystemSettings) -> Host {
        Host {
            settings: settings.clone(),
            sys_class_net: PathBuf::from("/sys/class/net"),
            timeout: Duration::from_secs(30),
        }
    }

    fn service_command(&self, template: &[String], service: Service) -> Result<(), NetError> {
        let argv: Vec<String> = template
            .iter()
            .map(|a| a.replace("{service}", service.name()))
            .collect();
        run(&argv, self.timeout).map(drop)
    }
}

/// Most bytes kept from a command's stdout (an `iw` scan of a busy site is ~100 KB).
const MAX_OUTPUT: u64 = 4 << 20;
/// Most bytes of stderr quoted in an error.
const MAX_STDERR: usize = 500;

/// Runs `argv` with a deadline; its stdout on success, [`NetError::Command`] with the start of
/// stderr otherwise.
pub fn run(argv: &[String], timeout: Duration) -> Result<String, NetError> {
    let command = argv.join(" ");
    let Some((program, args)) = argv.split_first() else {
        return Err(NetError::Command {
            command,
            status: "empty command".into(),
            stderr: String::new(),
        });
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NetError::Spawn {
            command: command.clone(),
            source,
        })?;
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(p) = pipe {
                let _ = p.take(MAX_OUTPUT).read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.to_string(),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break format!("timed out after {}s", timeout.as_secs());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(source) => return Err(NetError::Spawn { command, source }),
        }
    };
    let stdout = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    if status == "exit status: 0" {
        return Ok(stdout);
    }
    let mut stderr = stderr.trim().to_owned();
    if stderr.len() > MAX_STDERR {
        let cut = (0..=MAX_STDERR)
            .rev()
            .find(|&i| stderr.is_char_boundary(i))
            .unwrap_or(0);
        stderr.truncate(cut);
        stderr.push('…');
    }
    Err(NetError::Command {
        command,
        status,
        stderr,
    })
}

impl System for Host {
    fn root(&self) -> &Path {
        &self.settings.root
    }

    fn restart(&mut self, service: Service) -> Result<(), NetError> {
        self.service_command(&self.settings.restart, service)
    }

    fn stop(&mut self, service: Service) -> Result<(), NetError> {
        self.service_command(&self.settings.stop, service)
    }

    fn reboot(&mut self) -> Result<(), NetError> {
        run(&self.settings.reboot, self.timeout).map(drop)
    }

    fn scan(&mut self, interface: &str) -> Result<Vec<ScanResult>, NetError> {
        let argv: Vec<String> = self
            .settings
            .scan
            .iter()
            .map(|a| a.replace("{interface}", interface))
            .collect();
        Ok(scan::parse_scan(&run(&argv, self.timeout)?))
    }

    fn link(&mut self, interface: &str) -> Result<LinkState, NetError> {
        let dir = self.sys_class_net.join(interface);
        let mut state = LinkState {
            interface: interface.to_owned(),
            exists: dir.exists(),
            ..LinkState::default()
        };
        if !state.exists {
            return Ok(state);
        }
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .ok()
                .map(|s| s.trim().to_owned())
        };
        state.up = read("operstate").as_deref() == Some("up");
        // `carrier` cannot be read (EINVAL) while the interface is down.
        state.carrier = read("carrier").map(|c| c == "1");
        let argv = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        if let Ok(out) = run(
            &argv(&["ip", "-o", "-4", "addr", "show", "dev", interface]),
            self.timeout,
        ) {
            state.ipv4 = scan::parse_ip_addr(&out)
                .iter()
                .map(ToString::to_string)
                .collect();
        }
        if dir.join("wireless").exists() || dir.join("phy80211").exists() {
            let out = run(&argv(&["iw", "dev", interface, "link"]), self.timeout)?;
            state.wifi = scan::parse_link(&out);
        }
        Ok(state)
    }
}

/// A stand-in machine for tests (and the web page's tests): files really go under `root`
/// (a temp dir), service actions are recorded, scans parse `scan_output`, links come from
/// `links`. Services listed in `failing` fail their commands.
#[derive(Debug, Default)]
pub struct Recorder {
    pub root: PathBuf,
    pub actions: Vec<(Action, Service)>,
    pub scan_output: String,
    pub links: Vec<LinkState>,
    pub failing: Vec<Service>,
    /// How many times [`System::reboot`] was called.
    pub reboots: usize,
}

/// What a [`Recorder`] was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Restart,
    Stop,
}

impl Recorder {
    pub fn new(root: &Path) -> Recorder {
        Recorder {
            root: root.to_path_buf(),
            ..Recorder::default()
        }
    }

    fn act(&mut self, action: Action, service: Service) -> Result<(), NetError> {
        self.actions.push((action, service));
        if self.failing.contains(&service) {
            return Err(NetError::Command {
                command: format!("{action:?} {}", service.name()),
                status: "exit status: 1".into(),
                stderr: "simulated failure".into(),
            });
        }
        Ok(())
    }
}

impl System for Recorder {
    fn root(&self) -> &Path {
        &self.root
    }

    fn restart(&mut self, service: Service) -> Result<(), NetError> {
        self.act(Action::Restart, service)
    }

    fn stop(&mut self, service: Service) -> Result<(), NetError> {
        self.act(Action::Stop, service)
    }

    fn reboot(&mut self) -> Result<(), NetError> {
        self.reboots += 1;
        Ok(())
    }

    fn scan(&mut self, _interface: &str) -> Result<Vec<ScanResult>, NetError> {
        Ok(scan::parse_scan(&self.scan_output))
    }

    fn link(&mut self, interface: &str) -> Result<LinkState, NetError> {
        Ok(self
            .links
            .iter()
            .find(|l| l.interface == interface)
            .cloned()
            .unwrap_or(LinkState {
                interface: interface.to_owned(),
                ..LinkState::default()
            }))
    }
}
