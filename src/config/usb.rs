//! How a serial source names its adapter when the `/dev` name is not fixed (protocols.md §1.5:
//! USB-serial adapters are numbered in plug order, so `/dev/ttyUSB0` can become `ttyUSB1`).

use std::fmt;

/// `usb = "0403:6001"` (idVendor:idProduct, hex) with an optional `usb_serial`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbId {
    pub vendor: u16,
    pub product: u16,
    /// The adapter's USB serial number (FTDI chips have one, e.g. `A50285BI`); `None` = any.
    pub serial: Option<String>,
}

impl UsbId {
    /// Parses `"0403:6001"`: two groups of four hex digits.
    pub fn parse(text: &str, serial: Option<String>) -> Option<UsbId> {
        let (v, p) = text.trim().split_once(':')?;
        let hex = |s: &str| {
            (s.len() == 4 && s.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| u16::from_str_radix(s, 16).ok())
                .flatten()
        };
        Some(UsbId {
            vendor: hex(v)?,
            product: hex(p)?,
            serial,
        })
    }
}

impl fmt::Display for UsbId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "usb {:04x}:{:04x}", self.vendor, self.product)?;
        if let Some(s) = &self.serial {
            write!(f, " serial {s}")?;
        }
        Ok(())
    }
}

/// Whether a port is a pattern (`*` or `?` in its file name).
pub fn is_glob(port: &str) -> bool {
    port.contains(['*', '?'])
}

/// A port pattern may only have wildcards in its last component (`/dev/serial/by-id/usb-FTDI_*`).
pub fn glob_dir_is_literal(port: &str) -> bool {
    match port.rsplit_once('/') {
        Some((dir, _)) => !is_glob(dir),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usb_ids_parse() {
        assert_eq!(
            UsbId::parse("0403:6001", Some("A50285BI".into())),
            Some(UsbId {
                vendor: 0x0403,
                product: 0x6001,
                serial: Some("A50285BI".into())
            })
        );
        assert_eq!(
            UsbId::parse("1a86:7523", None).map(|u| u.to_string()),
            Some("usb 1a86:7523".into())
        );
        for bad in [
            "0403",
            "403:6001",
            "0403:60011",
            "04g3:6001",
            "0403-6001",
            "",
        ] {
            assert_eq!(UsbId::parse(bad, None), None, "{bad}");
        }
    }

    #[test]
    fn globs_only_in_the_file_name() {
        assert!(is_glob("/dev/serial/by-id/usb-FTDI_*-port0"));
        assert!(!is_glob("/dev/ttyUSB0"));
        assert!(glob_dir_is_literal("/dev/serial/by-id/usb-FTDI_*-port0"));
        assert!(!glob_dir_is_literal("/dev/serial/*/usb-FTDI"));
    }
}
