//! The system-interface seam: what the web page may change on the machine itself. A closed
//! set: on a laptop (the default) nothing is changed and the page says why; on the device the
//! clock is set with `date` (appliance.md: the board has no RTC, so the phone's clock is the
//! best source after a power cut without network).

use crate::config::web::WebSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// `[web] manage_clock = true`: the board's image; pocketgate runs with `CAP_SYS_TIME`
    /// (image/rootfs/usr/libexec/pocketgate/run-gateway), which `date` inherits.
    Device,
    /// Anything else: read-only.
    Laptop,
}

impl Host {
    pub fn from_settings(s: &WebSettings) -> Host {
        if s.manage_clock {
            Host::Device
        } else {
            Host::Laptop
        }
    }

    pub fn can_set_clock(self) -> bool {
        self == Host::Device
    }

    /// Set the system clock to `unix` seconds (UTC).
    pub fn set_clock(self, unix: i64) -> Result<(), String> {
        match self {
            Host::Laptop => Err("this gateway does not manage the clock ([web] manage_clock is off); set it in the operating system".into()),
            Host::Device => {
                let out = std::process::Command::new("date")
                    .args(["-u", "-s", &format!("@{unix}")])
                    .output()
                    .map_err(|e| format!("cannot run date: {e}"))?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "date -s failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ))
                }
            }
        }
    }
}
