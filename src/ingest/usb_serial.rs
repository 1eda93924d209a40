//! Finding a serial source's adapter at each (re)open (protocols.md §1.5): USB-serial adapters get
//! `/dev/ttyUSBn` or `/dev/ttyACMn` in plug order, so a source may name its adapter by USB id
//! (`usb = "0403:6001"`, resolved through sysfs) or by a pattern under `/dev/serial/by-id/`.
//!
//! The serial transport asks [`locate`] before every attempt to open, so an adapter plugged in
//! after start-up, or unplugged and plugged back into another socket, is found on the next
//! attempt. Polling (at `reopen_after`, doubling up to 8×) rather than inotify: udev removes
//! `/dev/serial/by-id` itself when the last adapter goes, and a watch on a deleted folder is dead.
//!
//! Both lookups are pure functions over a root folder, so they are tested on a fake tree:
//! `POCKETGATE_SYSFS` (default `/sys`) and `POCKETGATE_DEV` (default `/dev`) move them, e.g. in a
//! container that mounts the host's sysfs elsewhere.

use crate::config::SerialSettings;
use crate::config::usb::{UsbId, is_glob};
use std::path::{Path, PathBuf};

/// Where sysfs and the device nodes are.
#[derive(Debug, Clone)]
pub struct DeviceDirs {
    pub sysfs: PathBuf,
    pub dev: PathBuf,
}

impl DeviceDirs {
    /// `/sys` and `/dev`, or `POCKETGATE_SYSFS` / `POCKETGATE_DEV`.
    pub fn from_env() -> Self {
        let dir = |var: &str, default: &str| {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map_or_else(|| PathBuf::from(default), PathBuf::from)
        };
        DeviceDirs {
            sysfs: dir("POCKETGATE_SYSFS", "/sys"),
            dev: dir("POCKETGATE_DEV", "/dev"),
        }
    }
}

/// Why no device could be named right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotPresent {
    /// No tty in sysfs belongs to an adapter with this id.
    NoUsbMatch(String),
    /// Nothing matches the port pattern.
    NoGlobMatch(String),
}

impl std::fmt::Display for NotPresent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotPresent::NoUsbMatch(id) => write!(f, "no adapter with {id} is plugged in"),
            NotPresent::NoGlobMatch(p) => write!(f, "nothing matches {p}"),
        }
    }
}

/// The device to open now: the port as written, the first match of a pattern (sorted), or the
/// node of the adapter with the USB id. Several matches: the first, and the count to warn about.
pub fn locate(s: &SerialSettings, dirs: &DeviceDirs) -> Result<(PathBuf, usize), NotPresent> {
    if let Some(id) = &s.usb {
        let ttys = usb_ttys(&dirs.sysfs, id);
        let n = ttys.len();
        return ttys
            .into_iter()
            .next()
            .map(|t| (dirs.dev.join(t), n))
            .ok_or_else(|| NotPresent::NoUsbMatch(id.to_string()));
    }
    if !is_glob(&s.port) {
        return Ok((PathBuf::from(&s.port), 1));
    }
    let found = glob(&s.port);
    let n = found.len();
    found
        .into_iter()
        .next()
        .map(|p| (p, n))
        .ok_or_else(|| NotPresent::NoGlobMatch(s.port.clone()))
}

/// The entries of the pattern's folder whose names match its last component, sorted.
pub fn glob(pattern: &str) -> Vec<PathBuf> {
    let (dir, name) = match pattern.rsplit_once('/') {
        Some(("", name)) => (Path::new("/"), name),
        Some((dir, name)) => (Path::new(dir), name),
        None => (Path::new("."), pattern),
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| wildcard(name.as_bytes(), e.file_name().as_encoded_bytes()))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// `*` (any run) and `?` (one byte) against a file name.
fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

/// The tty names (`ttyUSB0`, `ttyACM1`) whose USB device has this id, sorted.
///
/// `<sysfs>/class/tty/<tty>/device` links to the USB interface (CDC-ACM) or to the usb-serial
/// port below it (FTDI, CP210x, CH340, PL2303); the USB device with `idVendor`, `idProduct` and
/// `serial` is the nearest folder above it that has `idVendor`.
pub fn usb_ttys(sysfs: &Path, id: &UsbId) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(sysfs.join("class/tty")) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let device = std::fs::canonicalize(e.path().join("device")).ok()?;
            let usb = device
                .ancestors()
                .take(4)
                .find(|d| d.join("idVendor").is_file())?;
            let read = |f: &str| {
                std::fs::read_to_string(usb.join(f))
                    .ok()
                    .map(|s| s.trim().to_owned())
            };
            let hex = |f: &str| read(f).and_then(|s| u16::from_str_radix(&s, 16).ok());
            let matches = hex("idVendor")? == id.vendor
                && hex("idProduct")? == id.product
                && id
                    .serial
                    .as_ref()
                    .is_none_or(|want| read("serial").as_deref() == Some(want.as_str()));
            matches.then(|| e.file_name().to_string_lossy().into_owned())
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A fake sysfs with the layouts of protocols.md §1.5: two FTDI adapters (usb-serial driver:
    /// `device` is the port below the interface), one CDC-ACM device (`device` is the interface),
    /// and the on-board UART (no USB device above it).
    fn fake_sysfs() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let r = root.path();
        let usb_dev = |path: &str, vendor: &str, product: &str, serial: Option<&str>| {
            let d = r.join(path);
            std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(d.join("idVendor"), format!("{vendor}\n"))
                .unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(d.join("idProduct"), format!("{product}\n"))
                .unwrap_or_else(|e| panic!("{e}"));
            if let Some(s) = serial {
                std::fs::write(d.join("serial"), format!("{s}\n"))
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        };
        let tty = |name: &str, device: &str| {
            let class = r.join("class/tty").join(name);
            std::fs::create_dir_all(&class).unwrap_or_else(|e| panic!("{e}"));
            let target = r.join(device);
            std::fs::create_dir_all(&target).unwrap_or_else(|e| panic!("{e}"));
            symlink(&target, class.join("device")).unwrap_or_else(|e| panic!("{e}"));
        };
        usb_dev("devices/usb1/1-1.2", "0403", "6001", Some("A50285BI"));
        tty("ttyUSB1", "devices/usb1/1-1.2/1-1.2:1.0/ttyUSB1");
        usb_dev("devices/usb1/1-1.3", "0403", "6001", Some("FT9ZZZ01"));
        tty("ttyUSB0", "devices/usb1/1-1.3/1-1.3:1.0/ttyUSB0");
        usb_dev("devices/usb1/1-1.4", "2a03", "0043", None);
        tty("ttyACM0", "devices/usb1/1-1.4/1-1.4:1.0");
        tty("ttyAMA0", "devices/platform/serial8250/tty/ttyAMA0");
        std::fs::create_dir_all(r.join("class/tty/tty0")).unwrap_or_else(|e| panic!("{e}"));
        root
    }

    fn id(text: &str, serial: Option<&str>) -> UsbId {
        UsbId::parse(text, serial.map(str::to_owned)).unwrap_or_else(|| panic!("{text}"))
    }

    #[test]
    fn usb_id_finds_the_adapter_whatever_tty_it_got() {
        let sys = fake_sysfs();
        assert_eq!(
            usb_ttys(sys.path(), &id("0403:6001", None)),
            ["ttyUSB0", "ttyUSB1"]
        );
        assert_eq!(
            usb_ttys(sys.path(), &id("0403:6001", Some("A50285BI"))),
            ["ttyUSB1"]
        );
        assert_eq!(usb_ttys(sys.path(), &id("2a03:0043", None)), ["ttyACM0"]);
        assert!(usb_ttys(sys.path(), &id("1a86:7523", None)).is_empty());
        assert!(usb_ttys(sys.path(), &id("0403:6001", Some("NOPE"))).is_empty());
        assert!(usb_ttys(&sys.path().join("missing"), &id("0403:6001", None)).is_empty());
    }

    #[test]
    fn locate_names_the_dev_node_and_says_what_is_missing() {
        let sys = fake_sysfs();
        let dirs = DeviceDirs {
            sysfs: sys.path().to_owned(),
            dev: PathBuf::from("/dev"),
        };
        let mut s = SerialSettings {
            port: String::new(),
            usb: Some(id("0403:6001", Some("A50285BI"))),
            baud: 9600,
            data_bits: crate::config::DataBits::Eight,
            parity: crate::config::Parity::None,
            stop_bits: crate::config::StopBits::One,
            flow_control: crate::config::FlowControl::None,
            reopen_after: std::time::Duration::from_secs(2),
        };
        assert_eq!(locate(&s, &dirs), Ok((PathBuf::from("/dev/ttyUSB1"), 1)));
        s.usb = Some(id("1a86:7523", None));
        assert_eq!(
            locate(&s, &dirs).map_err(|e| e.to_string()),
            Err("no adapter with usb 1a86:7523 is plugged in".into())
        );
        s.usb = None;
        s.port = "/dev/ttyUSB7".into();
        assert_eq!(locate(&s, &dirs), Ok((PathBuf::from("/dev/ttyUSB7"), 1)));
    }

    #[test]
    fn glob_matches_file_names_in_one_folder() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for f in [
            "usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0",
            "usb-FTDI_FT232R_USB_UART_FT9ZZZ01-if00-port0",
            "usb-1a86_USB2.0-Serial-if00-port0",
        ] {
            std::fs::write(dir.path().join(f), "").unwrap_or_else(|e| panic!("{e}"));
        }
        let d = dir.path().display();
        let names = |p: &str| -> Vec<String> {
            glob(&format!("{d}/{p}"))
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect()
        };
        assert_eq!(
            names("usb-FTDI_FT232R_USB_UART_*-if00-port0"),
            [
                "usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0",
                "usb-FTDI_FT232R_USB_UART_FT9ZZZ01-if00-port0"
            ]
        );
        assert_eq!(names("usb-1a86_*"), ["usb-1a86_USB2.0-Serial-if00-port0"]);
        assert_eq!(names("*A50285B?-if00-port0").len(), 1);
        assert!(names("usb-Prolific*").is_empty());
        assert!(glob("/nonexistent-dir/usb-*").is_empty());
    }

    #[test]
    fn wildcards() {
        let w = |p: &str, n: &str| wildcard(p.as_bytes(), n.as_bytes());
        assert!(w("*", ""));
        assert!(w("a*c", "abbbc"));
        assert!(w("a*c*", "acx"));
        assert!(!w("a*c", "abcd"));
        assert!(w("a?c", "abc"));
        assert!(!w("a?c", "ac"));
        assert!(w("**x", "yyx"));
    }
}
