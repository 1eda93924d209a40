//! RS-232 (on-board UART, USB-serial adapters `/dev/ttyUSB*`, CDC-ACM `/dev/ttyACM*`; protocols.md
//! §1.5) through the `serialport` crate. The port is blocking, so two threads move bytes between
//! it and an in-memory duplex stream that the async conversation reads like a socket. A missing or
//! unplugged port is reopened with backoff; the rest of the gateway keeps running.

use super::{Backoff, SourceCtx, usb_serial};
use crate::config::{DataBits, FlowControl, Parity, SerialSettings, StopBits};
use std::io::{Read, Write};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::{info, warn};

/// Find the adapter, open the port, converse while it works, and look again after a backoff
/// when it fails: an adapter plugged in later or into another socket is picked up by itself
/// ([`usb_serial::locate`]).
pub async fn run(settings: SerialSettings, ctx: SourceCtx) {
    let dirs = usb_serial::DeviceDirs::from_env();
    let mut backoff = Backoff::new(settings.reopen_after, settings.reopen_after * 8);
    let mut was_absent = false;
    loop {
        match usb_serial::locate(&settings, &dirs) {
            Ok((path, matches)) => {
                was_absent = false;
                let port = path.display().to_string();
                if matches > 1 {
                    warn!(source = %ctx.id, %port, matches, "several adapters match; using the first");
                }
                match open(&settings, &port) {
                    Ok(handle) => {
                        backoff.reset();
                        info!(source = %ctx.id, %port, baud = settings.baud, "serial port open");
                        let why = converse_on(handle, &ctx).await;
                        warn!(source = %ctx.id, %port, reason = %why, "serial link ended; reopening");
                    }
                    Err(e) => {
                        warn!(source = %ctx.id, %port, error = %e, "cannot open serial port")
                    }
                }
            }
            // Said once per absence, not at every look.
            Err(why) if !was_absent => {
                was_absent = true;
                warn!(source = %ctx.id, reason = %why, "serial adapter not present; waiting for it");
            }
            Err(_) => {}
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

fn open(s: &SerialSettings, port: &str) -> serialport::Result<Box<dyn serialport::SerialPort>> {
    builder(s, port)
        // Short read timeout so the reader thread notices a closed conversation promptly.
        .timeout(Duration::from_millis(100))
        .open()
}

/// The port settings of a source at the device path `port` (also used by the Modbus RTU
/// transport).
pub(super) fn builder(s: &SerialSettings, port: &str) -> serialport::SerialPortBuilder {
    serialport::new(port, s.baud)
        .data_bits(match s.data_bits {
            DataBits::Seven => serialport::DataBits::Seven,
            DataBits::Eight => serialport::DataBits::Eight,
        })
        .parity(match s.parity {
            Parity::None => serialport::Parity::None,
            Parity::Even => serialport::Parity::Even,
            Parity::Odd => serialport::Parity::Odd,
        })
        .stop_bits(match s.stop_bits {
            StopBits::One => serialport::StopBits::One,
            StopBits::Two => serialport::StopBits::Two,
        })
        .flow_control(match s.flow_control {
            FlowControl::None => serialport::FlowControl::None,
            FlowControl::Software => serialport::FlowControl::Software,
            FlowControl::Hardware => serialport::FlowControl::Hardware,
        })
}

/// Bridge the blocking port to an async duplex stream and run the conversation on it.
/// Returns why the link ended.
async fn converse_on(port: Box<dyn serialport::SerialPort>, ctx: &SourceCtx) -> String {
    let mut writer_port = match port.try_clone() {
        Ok(p) => p,
        Err(e) => return format!("cannot clone port handle: {e}"),
    };
    let (mut gateway_end, device_end) = tokio::io::duplex(64 * 1024);
    let (mut dev_read, mut dev_write) = tokio::io::split(device_end);
    let (in_tx, mut in_rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(64);
    let (out_tx, out_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));

    // Port → channel (blocking thread).
    let reader_stop = stop.clone();
    let mut reader_port = port;
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while !reader_stop.load(std::sync::atomic::Ordering::Relaxed) {
            match reader_port.read(&mut buf) {
                Ok(0) => {}
                Ok(n) => {
                    if in_tx.blocking_send(Ok(buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = in_tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    // Channel → port (blocking thread).
    std::thread::spawn(move || {
        while let Ok(bytes) = out_rx.recv() {
            if writer_port
                .write_all(&bytes)
                .and_then(|_| writer_port.flush())
                .is_err()
            {
                break;
            }
        }
    });

    let pump_in = async {
        while let Some(chunk) = in_rx.recv().await {
            match chunk {
                Ok(bytes) => {
                    if dev_write.write_all(&bytes).await.is_err() {
                        return "conversation closed".to_string();
                    }
                }
                Err(e) => return format!("read error: {e}"),
            }
        }
        "port reader stopped".to_string()
    };
    let pump_out = async {
        let mut buf = [0u8; 1024];
        loop {
            match dev_read.read(&mut buf).await {
                Ok(0) | Err(_) => return "conversation closed".to_string(),
                Ok(n) => {
                    if out_tx.send(buf[..n].to_vec()).is_err() {
                        return "port writer stopped".to_string();
                    }
                }
            }
        }
    };
    let conversation = async {
        match super::converse(&mut gateway_end, ctx).await {
            Ok(stats) => format!("conversation ended ({stats})"),
            Err(e) => format!("conversation error: {e}"),
        }
    };
    let why = tokio::select! {
        w = pump_in => w,
        w = pump_out => w,
        w = conversation => w,
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    why
}
