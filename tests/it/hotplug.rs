//! USB-serial hot-plug (protocols.md §1.5): a source names its adapter by a pattern under a
//! watched folder standing in for /dev/serial/by-id. A symlink to a socat pty appears → the
//! gateway opens it and ACKs; it disappears → the source waits; another appears → it works again.

use crate::support::*;
use pocketgate::sim::{self, SimOptions};
use std::path::Path;
use std::time::{Duration, Instant};

/// Plug an "adapter": a by-id style symlink to the gateway end of a fresh pty pair.
fn plug(by_id: &Path, serial_no: &str) -> PtyPair {
    let pty = PtyPair::new();
    std::fs::create_dir_all(by_id).unwrap();
    let node = std::fs::read_link(&pty.a).unwrap();
    let link = by_id.join(format!("usb-FTDI_FT232R_USB_UART_{serial_no}-if00-port0"));
    std::os::unix::fs::symlink(node, link).unwrap();
    pty
}

/// Unplug: the pty goes away and udev removes the by-id folder with its last link.
fn unplug(by_id: &Path, pty: PtyPair) {
    drop(pty);
    std::fs::remove_dir_all(by_id).unwrap();
}

fn wait_count(gw: &Gateway, needle: &str, n: usize) {
    let until = Instant::now() + Duration::from_secs(20);
    while gw.log().matches(needle).count() < n {
        assert!(
            Instant::now() < until,
            "log never said {needle:?} {n} times:\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn send(pty: &PtyPair, msg: &[u8]) -> sim::SimReport {
    let mut port = sim::open_serial(pty.b.to_str().unwrap(), 9600)
        .await
        .unwrap();
    sim::play(&mut port, &[msg.to_vec()], &SimOptions::default())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn usb_serial_adapter_plugged_in_later_is_found_and_replug_recovers() {
    let watched = tempfile::tempdir().unwrap();
    let by_id = watched.path().join("by-id");
    let pattern = by_id.join("usb-FTDI_FT232R_USB_UART_*-if00-port0");
    let mut gw = Gateway::start(&serial_source("xp", &pattern));
    // Nothing plugged in (the folder does not even exist yet): the source waits.
    gw.wait_log("serial adapter not present; waiting for it");
    assert!(!gw.log().contains("serial port open"));
    let msgs = numbered_messages(2);

    let pty = plug(&by_id, "A50285BI");
    gw.wait_log("serial port open");
    let first = send(&pty, &msgs[0]).await;
    assert_eq!(first.acked, vec![0], "{first:?}\n{}", gw.log());

    unplug(&by_id, pty);
    gw.wait_log("serial link ended; reopening");
    wait_count(&gw, "serial adapter not present; waiting for it", 2);

    // Another adapter of the same model, in another socket.
    let pty = plug(&by_id, "FT9ZZZ01");
    wait_count(&gw, "serial port open", 2);
    let second = send(&pty, &msgs[1]).await;
    assert_eq!(second.acked, vec![0], "{second:?}\n{}", gw.log());
    gw.kill9();
    assert_eq!(texts(&gw, "xp"), msgs);
}

/// A fake sysfs and /dev: plugging an FTDI adapter adds its USB device (idVendor, idProduct,
/// serial), the tty's `device` link and the /dev node (a link to a socat pty).
struct FakeUsb {
    sysfs: tempfile::TempDir,
    dev: tempfile::TempDir,
}

impl FakeUsb {
    fn new() -> FakeUsb {
        let f = FakeUsb {
            sysfs: tempfile::tempdir().unwrap(),
            dev: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(f.sysfs.path().join("class/tty")).unwrap();
        f
    }

    fn plug(&self, tty: &str, socket: &str, serial_no: &str) -> PtyPair {
        let pty = PtyPair::new();
        let usb = self.sysfs.path().join("devices/usb1").join(socket);
        let port = usb.join(format!("{socket}:1.0")).join(tty);
        std::fs::create_dir_all(&port).unwrap();
        std::fs::write(usb.join("idVendor"), "0403\n").unwrap();
        std::fs::write(usb.join("idProduct"), "6001\n").unwrap();
        std::fs::write(usb.join("serial"), format!("{serial_no}\n")).unwrap();
        let class = self.sysfs.path().join("class/tty").join(tty);
        std::fs::create_dir_all(&class).unwrap();
        std::os::unix::fs::symlink(&port, class.join("device")).unwrap();
        let node = std::fs::read_link(&pty.a).unwrap();
        std::os::unix::fs::symlink(node, self.dev.path().join(tty)).unwrap();
        pty
    }

    fn unplug(&self, tty: &str, socket: &str, pty: PtyPair) {
        drop(pty);
        std::fs::remove_dir_all(self.sysfs.path().join("class/tty").join(tty)).unwrap();
        std::fs::remove_dir_all(self.sysfs.path().join("devices/usb1").join(socket)).unwrap();
        std::fs::remove_file(self.dev.path().join(tty)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn adapter_named_by_usb_id_is_found_under_whatever_tty_it_gets() {
    let usb = FakeUsb::new();
    let source = "[[sources]]\nid = \"xn\"\nprotocol = \"astm\"\ntransport = \"serial\"\n\
                  usb = \"0403:6001\"\nusb_serial = \"A50285BI\"\nreopen_after = \"200ms\"\n";
    let sysfs = usb.sysfs.path().display().to_string();
    let dev = usb.dev.path().display().to_string();
    let mut gw = Gateway::start_with_env(
        source,
        &[("POCKETGATE_SYSFS", &sysfs), ("POCKETGATE_DEV", &dev)],
    );
    gw.wait_log("no adapter with usb 0403:6001 serial A50285BI is plugged in");
    let msgs = numbered_messages(2);

    // Another FTDI adapter of the same model, but not ours: ignored.
    let other = usb.plug("ttyUSB0", "1-1.3", "FT9ZZZ01");
    let pty = usb.plug("ttyUSB1", "1-1.2", "A50285BI");
    gw.wait_log("serial port open");
    assert!(gw.log().contains("ttyUSB1"), "{}", gw.log());
    let first = send(&pty, &msgs[0]).await;
    assert_eq!(first.acked, vec![0], "{first:?}\n{}", gw.log());

    // Unplugged, then back into the socket the other adapter had: it is now ttyUSB0.
    usb.unplug("ttyUSB1", "1-1.2", pty);
    usb.unplug("ttyUSB0", "1-1.3", other);
    gw.wait_log("serial link ended; reopening");
    wait_count(&gw, "serial adapter not present; waiting for it", 2);
    let pty = usb.plug("ttyUSB0", "1-1.3", "A50285BI");
    wait_count(&gw, "serial port open", 2);
    let second = send(&pty, &msgs[1]).await;
    assert_eq!(second.acked, vec![0], "{second:?}\n{}", gw.log());
    gw.kill9();
    assert_eq!(texts(&gw, "xn"), msgs);
}
