//! Network configuration: the box's hotspot, its uplinks (Wi-Fi client, Ethernet, cellular
//! modem), the config files that make them so (hostapd, wpa_supplicant, dnsmasq, ifupdown, pppd),
//! and applying them to a system. The file format is documented in docs/network.md.
//!
//! Layers, one per file:
//! - `raw.rs`     `network.toml` as written (every leaf a [`Val`](crate::config::raw::Val))
//! - `check.rs`   validation into [`Network`]; every mistake reported at once, path + line
//! - `toml_out.rs` [`Network`] back to TOML text, which [`save`] validates again before writing
//! - `render.rs`  PURE renderers: [`Network`] → [`RenderedFile`]s (no I/O)
//! - `system.rs`  the seam to the OS: the [`System`] trait, [`Host`] (real) and [`Recorder`]
//!   (temp root, for tests and for the web page's own tests)
//! - `scan.rs`    PURE parsers of `iw dev X scan` and `iw dev X link` output
//! - `cli.rs`     `pocketgate net render|apply|passphrase|scan`
//!
//! The model wraps embedded-svc's Wi-Fi types: the hotspot is an
//! [`AccessPointConfiguration`] and each uplink network a [`ClientConfiguration`] (their SSIDs
//! and passphrases are `heapless` strings of 32 and 64 bytes, so "too long" cannot be stored).
//! What those types lack for a Linux box (country, interface, subnet, DHCP range, priority,
//! hidden networks) sits in the wrappers next to them.
//!
//! # API for the web page (issue 5, Network page)
//! ```text
//! load(path)                 -> Result<Network, ConfigErrors>   read + validate network.toml
//! parse(text)                -> Result<Network, ConfigErrors>   same, from text
//! validate(&network)         -> Result<(), ConfigErrors>        an edited Network, through the
//!                                                               same checks as the file
//! save(path, &network)       -> Result<(), NetError>            validate, write atomically (0600)
//! render(&network)           -> Vec<RenderedFile>               the config files, pure
//! apply(&network, &mut sys)  -> Result<ApplyReport, NetError>   write changed files, restart
//!                                                               (or stop) only their services
//! sys.scan("wlan1")          -> Result<Vec<ScanResult>, NetError>  every AP heard, strongest first
//! scan::networks(&results)   -> Vec<ScanResult>                 one per name: the picker's list
//! sys.link("eth0")           -> Result<LinkState, NetError>     up? carrier? IPv4? Wi-Fi SSID?
//! generate_passphrase()      -> String                          readable random WPA2 passphrase
//! edited.keep_unchanged_secrets(&old)                          empty passphrase = unchanged
//! default_path(data_dir)     -> PathBuf                         <data_dir>/network.toml
//! Network::first_boot(suffix, country) -> Network               hotspot "pocketgate-<suffix>"
//! ```
//! The real system is [`Host::new(&network.system)`](Host::new); tests use [`Recorder`].
//! Everything here is blocking (`apply` and `scan` run commands, up to [`Host::timeout`]
//! each): call it from `tokio::task::spawn_blocking`, and let one request at a time save or
//! apply (a mutex), as two concurrent applies would restart services twice.
//! Secrets (the passphrases, the SIM PIN, the PPP password) are in the model because the files
//! need them; `Debug` never prints them, and the page must not render them back (write-only).

mod check;
pub mod cli;
pub mod raw;
pub mod render;
pub mod scan;
pub mod system;
mod toml_out;

#[cfg(test)]
mod tests;

use crate::config::{ConfigError, ConfigErrors};
pub use embedded_svc::wifi::{AccessPointConfiguration, AuthMethod, ClientConfiguration};
pub use render::{RenderedFile, Service, render};
pub use scan::{LinkState, ScanResult, Security};
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;
pub use system::{ApplyReport, Host, Recorder, System, apply};
pub use toml_out::to_toml;

/// The validated network configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    /// Regulatory country for every radio.
    pub country: Country,
    pub hotspot: Option<Hotspot>,
    pub wifi: Option<Wifi>,
    pub ethernet: Option<Ethernet>,
    pub cellular: Option<Cellular>,
    pub system: SystemSettings,
}

/// `[hotspot]`: the box as a WPA2 access point with DHCP and (by default) captive DNS.
#[derive(Clone, PartialEq)]
pub struct Hotspot {
    pub enabled: bool,
    pub interface: String,
    /// SSID, hidden flag, channel, `AuthMethod::WPA2Personal` and the passphrase.
    pub ap: AccessPointConfiguration,
    /// The box's address on the hotspot and the subnet's prefix.
    pub address: Ipv4Net,
    pub dhcp_start: Ipv4Addr,
    pub dhcp_end: Ipv4Addr,
    pub lease: Duration,
    /// Every DNS name answers with the box's address (appliance.md §3).
    pub captive_portal: bool,
}

impl fmt::Debug for Hotspot {
    /// Everything but the passphrase.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hotspot")
            .field("enabled", &self.enabled)
            .field("interface", &self.interface)
            .field("ssid", &self.ap.ssid.as_str())
            .field("hidden", &self.ap.ssid_hidden)
            .field("channel", &self.ap.channel)
            .field("auth_method", &self.ap.auth_method)
            .field("passphrase", &"<redacted>")
            .field("address", &self.address)
            .field("dhcp", &(self.dhcp_start, self.dhcp_end, self.lease))
            .field("captive_portal", &self.captive_portal)
            .finish()
    }
}

/// `[wifi]`: the client radio and the networks it may join.
#[derive(Debug, Clone, PartialEq)]
pub struct Wifi {
    pub interface: String,
    pub networks: Vec<WifiNetwork>,
}

/// `[[wifi.networks]]`. `client.auth_method` is `None` (open) or `WPA2Personal` (WPA/WPA2-PSK);
/// embedded-svc's `ClientConfiguration` does not print its password in `Debug`.
#[derive(Debug, Clone, PartialEq)]
pub struct WifiNetwork {
    pub client: ClientConfiguration,
    pub priority: u16,
    pub hidden: bool,
}

/// `[ethernet]`
#[derive(Debug, Clone, PartialEq)]
pub struct Ethernet {
    pub enabled: bool,
    pub interface: String,
    pub mode: EthernetMode,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EthernetMode {
    Dhcp,
    Static {
        address: Ipv4Net,
        gateway: Option<Ipv4Addr>,
        dns: Vec<Ipv4Addr>,
    },
}

/// `[cellular]`: a modem dialled with pppd + chat (no ModemManager).
#[derive(Clone, PartialEq)]
pub struct Cellular {
    pub enabled: bool,
    pub device: String,
    pub apn: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub pin: Option<String>,
}

impl fmt::Debug for Cellular {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |o: &Option<String>| if o.is_some() { "<set>" } else { "<none>" };
        f.debug_struct("Cellular")
            .field("enabled", &self.enabled)
            .field("device", &self.device)
            .field("apn", &self.apn)
            .field("user", &self.user)
            .field("password", &set(&self.password))
            .field("pin", &set(&self.pin))
            .finish()
    }
}

/// `[system]`: how [`Host`] touches the machine.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemSettings {
    /// Rendered files go under this directory.
    pub root: PathBuf,
    /// argv with `{service}`.
    pub restart: Vec<String>,
    /// argv with `{service}`.
    pub stop: Vec<String>,
    /// argv with `{interface}`.
    pub scan: Vec<String>,
    /// argv, no placeholders.
    pub reboot: Vec<String>,
}

impl Default for SystemSettings {
    fn default() -> Self {
        let argv = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect();
        SystemSettings {
            root: PathBuf::from("/"),
            restart: argv(&["/etc/init.d/{service}", "restart"]),
            stop: argv(&["/etc/init.d/{service}", "stop"]),
            scan: argv(&["iw", "dev", "{interface}", "scan"]),
            reboot: argv(&["reboot"]),
        }
    }
}

/// An ISO 3166-1 alpha-2 country code, upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Country([u8; 2]);

impl Country {
    /// The code if it is an assigned ISO 3166-1 alpha-2 code (case-insensitive input).
    pub fn parse(text: &str) -> Option<Country> {
        let up = text.to_ascii_uppercase();
        let b = up.as_bytes();
        (b.len() == 2 && ISO_3166_ALPHA2.split(' ').any(|c| c == up)).then(|| Country([b[0], b[1]]))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("??")
    }

    /// Highest 2.4 GHz channel hostapd may use here. FCC rules (US, Canada and US territories)
    /// stop at 11; most of the world allows 13; 14 (Japan, 802.11b only) is not offered.
    /// wireless-regdb on the box stays the authority (appliance.md §2.6: hostapd waits in
    /// COUNTRY_UPDATE without regulatory.db); this catches the common mistake early.
    pub fn max_channel(&self) -> u8 {
        match self.as_str() {
            "US" | "CA" | "PR" | "GU" | "AS" | "VI" | "MP" | "UM" => 11,
            _ => 13,
        }
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The 249 officially assigned ISO 3166-1 alpha-2 codes.
const ISO_3166_ALPHA2: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG \
BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY \
CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ \
GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP \
KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU \
MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA \
RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK \
TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

/// An IPv4 address with its prefix length (`192.168.4.1/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Net {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Net {
    /// Parses `a.b.c.d/p` (prefix 0 ..= 32).
    pub fn parse(text: &str) -> Option<Ipv4Net> {
        let (a, p) = text.split_once('/')?;
        let prefix: u8 = p.parse().ok().filter(|p| *p <= 32)?;
        Some(Ipv4Net {
            addr: a.parse().ok()?,
            prefix,
        })
    }

    pub fn mask(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask())
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// Inside the subnet (network and broadcast addresses included).
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        u32::from(a) & self.mask() == u32::from(self.addr) & self.mask()
    }

    /// A host address of the subnet: neither its network nor its broadcast address.
    pub fn is_host(&self, a: Ipv4Addr) -> bool {
        self.contains(a) && a != self.network() && a != self.broadcast()
    }

    /// The subnet's `n`-th address (`network + n`).
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()).wrapping_add(n))
    }

    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        let wider = self.prefix.min(other.prefix);
        let m = u32::MAX.checked_shl(32 - u32::from(wider)).unwrap_or(0);
        u32::from(self.addr) & m == u32::from(other.addr) & m
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// What a passphrase is, or why it is not one (IEEE 802.11i: 8 ..= 63 printable ASCII
/// characters, or a 256-bit PSK as 64 hex digits).
pub fn check_passphrase(p: &str) -> Result<PassphraseKind, String> {
    if p.len() == 64 && p.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(PassphraseKind::Hex);
    }
    if let Some((i, c)) = p.char_indices().find(|(_, c)| !(' '..='~').contains(c)) {
        return Err(format!(
            "character {} ({c:?}) is not printable ASCII; a WPA2 passphrase is 8 to 63 printable \
             ASCII characters (or 64 hex digits)",
            i + 1
        ));
    }
    match p.len() {
        8..=63 => Ok(PassphraseKind::Text),
        n => Err(format!(
            "{n} characters; a WPA2 passphrase is 8 to 63 printable ASCII characters (or 64 hex digits)"
        )),
    }
}

/// How a valid passphrase is written into the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassphraseKind {
    /// 8 ..= 63 printable ASCII: hostapd `wpa_passphrase=`, wpa_supplicant `psk="…"`.
    Text,
    /// 64 hex digits: the PSK itself (`wpa_psk=`, `psk=` unquoted).
    Hex,
}

/// A random passphrase a person can read off a label and type on a phone: four groups of four
/// from 29 lower-case letters and digits that cannot be mistaken for each other (no 0/o,
/// 1/l/i, u/v), e.g. `k7qm-x3vt-9hpa-w2dc`: 16 symbols, about 77 bits. Uses the OS random
/// source.
pub fn generate_passphrase() -> String {
    const ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstwxyz";
    // Rejection sampling keeps every symbol equally likely.
    let mut out = String::with_capacity(19);
    let mut n = 0;
    while n < 16 {
        let mut buf = [0u8; 32];
        getrandom::fill(&mut buf).expect("the OS random source is available");
        for b in buf {
            let limit = 256 - 256 % ALPHABET.len();
            if usize::from(b) >= limit || n == 16 {
                continue;
            }
            if n > 0 && n % 4 == 0 {
                out.push('-');
            }
            out.push(char::from(ALPHABET[usize::from(b) % ALPHABET.len()]));
            n += 1;
        }
    }
    out
}

impl Network {
    /// For a form that never shows secrets back (issue 5: secrets are write-only): a passphrase
    /// left empty in `self` means "unchanged", so it is taken from `old` (the hotspot's; a
    /// WPA2 client network's by SSID). A network that is new or renamed keeps its empty
    /// passphrase, which validation then reports.
    pub fn keep_unchanged_secrets(&mut self, old: &Network) {
        if let (Some(h), Some(o)) = (self.hotspot.as_mut(), old.hotspot.as_ref())
            && h.ap.password.is_empty()
        {
            h.ap.password = o.ap.password.clone();
        }
        let (Some(w), Some(o)) = (self.wifi.as_mut(), old.wifi.as_ref()) else {
            return;
        };
        for n in w
            .networks
            .iter_mut()
            .filter(|n| n.client.auth_method != AuthMethod::None && n.client.password.is_empty())
        {
            let same = o.networks.iter().find(|p| {
                p.client.ssid == n.client.ssid && p.client.auth_method != AuthMethod::None
            });
            if let Some(p) = same {
                n.client.password = p.client.password.clone();
            }
        }
    }

    /// The configuration a new box starts with: a WPA2 hotspot `pocketgate-<suffix>` on wlan0
    /// with a fresh random passphrase (print it on the label), 192.168.4.1/24, captive DNS, and
    /// Ethernet by DHCP. `suffix` is e.g. the last 4 hex digits of the MAC address.
    pub fn first_boot(suffix: &str, country: Country) -> Network {
        let net = Ipv4Net {
            addr: Ipv4Addr::new(192, 168, 4, 1),
            prefix: 24,
        };
        let mut ssid = String::from("pocketgate-");
        ssid.extend(suffix.chars().filter(char::is_ascii_alphanumeric).take(20));
        Network {
            country,
            hotspot: Some(Hotspot {
                enabled: true,
                interface: "wlan0".into(),
                ap: AccessPointConfiguration {
                    ssid: ssid.as_str().try_into().unwrap_or_default(),
                    ssid_hidden: false,
                    channel: 6,
                    auth_method: AuthMethod::WPA2Personal,
                    password: generate_passphrase()
                        .as_str()
                        .try_into()
                        .unwrap_or_default(),
                    ..AccessPointConfiguration::default()
                },
                address: net,
                dhcp_start: net.nth(10),
                dhcp_end: net.nth(200),
                lease: Duration::from_secs(12 * 3600),
                captive_portal: true,
            }),
            wifi: None,
            ethernet: Some(Ethernet {
                enabled: true,
                interface: "eth0".into(),
                mode: EthernetMode::Dhcp,
            }),
            cellular: None,
            system: SystemSettings::default(),
        }
    }
}

/// Where the box keeps its network settings: `<data_dir>/network.toml`.
pub fn default_path(data_dir: &Path) -> PathBuf {
    data_dir.join("network.toml")
}

/// Reads and validates `network.toml`; a read error names the file.
pub fn load(path: &Path) -> Result<Network, ConfigErrors> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text),
        Err(e) => Err(ConfigErrors(vec![ConfigError {
            path: path.display().to_string(),
            line: None,
            message: format!("cannot read the network file: {e}"),
        }])),
    }
}

/// Parses and validates `network.toml` text, reporting every mistake at once.
pub fn parse(text: &str) -> Result<Network, ConfigErrors> {
    check::parse(text)
}

/// Checks an edited [`Network`] exactly as the file would be checked (it is written as TOML and
/// read back), so the page and the file cannot disagree on what is valid. The errors name the
/// same paths (`hotspot.passphrase`); their lines refer to [`to_toml`]'s text.
pub fn validate(network: &Network) -> Result<(), ConfigErrors> {
    let text = to_toml(network);
    let back = parse(&text)?;
    if back != *network {
        // Something the model can hold but the file cannot say (e.g. a hotspot auth method
        // other than WPA2); name it rather than silently saving something else.
        return Err(ConfigErrors(vec![ConfigError {
            path: String::new(),
            line: None,
            message: "this configuration cannot be written as network.toml without changing it \
                      (only WPA2-PSK hotspots and open or WPA2-PSK client networks are supported)"
                .into(),
        }]));
    }
    Ok(())
}

/// Validates and writes `network.toml` atomically (temp file, fsync, rename, fsync of the
/// directory), readable by its owner only: it holds the passphrases.
pub fn save(path: &Path, network: &Network) -> Result<(), NetError> {
    validate(network).map_err(NetError::Invalid)?;
    system::write_atomic(path, to_toml(network).as_bytes(), 0o600)
}

/// What can go wrong applying, saving or scanning.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("invalid network configuration:\n{0}")]
    Invalid(ConfigErrors),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run {command}: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
}

impl NetError {
    /// Whether trying the same thing again later may work: a failing command (a service that
    /// did not restart, a scan while the radio was busy — `iw` says "Device or resource busy")
    /// or an I/O error may; an invalid configuration or a missing program will not.
    pub fn can_retry(&self) -> bool {
        match self {
            NetError::Invalid(_) => false,
            NetError::Spawn { source, .. } => source.kind() != std::io::ErrorKind::NotFound,
            NetError::Io { .. } | NetError::Command { .. } => true,
        }
    }
}
