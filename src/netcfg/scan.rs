//! PURE parsers of what `iw` and `ip` print: `iw dev X scan` (networks in range),
//! `iw dev X link` (the joined network) and `ip -o -4 addr show dev X` (addresses). Text in,
//! values out; [`super::Host`] runs the commands. The format is iw 5.19's (Debian 12; scan.c
//! `print_bss_handler`, `print_ssid_escaped`), pinned by tests/fixtures/net/.

use super::Ipv4Net;

/// Most BSS entries kept from one scan (a busy site lists dozens; the page needs the top).
pub const MAX_SCAN_RESULTS: usize = 128;

/// One access point heard in a scan.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ScanResult {
    pub bssid: String,
    /// The SSID as bytes would be lossy in JSON; this is it decoded as UTF-8 (invalid bytes
    /// become U+FFFD). Empty for a hidden network.
    pub ssid: String,
    /// The SSID is valid UTF-8 of 1 to 32 bytes, so it can be stored in network.toml.
    pub ssid_storable: bool,
    pub freq_mhz: u32,
    pub channel: Option<u8>,
    pub signal_dbm: Option<f32>,
    pub security: Security,
    /// `-- associated`: the box is joined to this one.
    pub associated: bool,
}

/// What a network asks of a client (from the RSN/WPA elements and the Privacy capability).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Security {
    Open,
    Wep,
    WpaPsk,
    Wpa2Psk,
    Wpa3Sae,
    Enterprise,
}

impl Security {
    /// Whether the box can join it with what network.toml can say (open or WPA/WPA2-PSK;
    /// WPA2/WPA3 transition networks also accept WPA2-PSK).
    pub fn can_join(self) -> bool {
        matches!(self, Security::Open | Security::WpaPsk | Security::Wpa2Psk)
    }
}

/// Undoes iw's `print_ssid_escaped`: `\xNN` is a byte (used for non-printables, `\`, and a
/// leading or trailing space); everything else is itself.
pub fn unescape_iw(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let escaped = (b[i] == b'\\' && b.get(i + 1) == Some(&b'x') && i + 4 <= b.len())
            .then(|| std::str::from_utf8(&b[i + 2..i + 4]).ok())
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        if let Some(v) = escaped {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// 2.4 GHz and 5 GHz channel numbers from a frequency.
pub fn channel_of(freq: u32) -> Option<u8> {
    let ch = match freq {
        2484 => 14,
        2412..=2472 => (freq - 2407) / 5,
        5000..=5895 => (freq - 5000) / 5,
        _ => return None,
    };
    u8::try_from(ch).ok()
}

/// `2437` (iw 5.x) or `2437.0` (iw 6.x); 0 if unreadable.
fn mhz(v: &str) -> u32 {
    let whole = v.trim().split('.').next().unwrap_or("");
    whole.parse().unwrap_or(0)
}

/// `-48.00 dBm` or `-48 dBm`.
fn dbm(v: &str) -> Option<f32> {
    v.split_whitespace().next().and_then(|s| s.parse().ok())
}

#[derive(Default)]
struct Bss {
    bssid: String,
    ssid: Vec<u8>,
    freq: u32,
    signal: Option<f32>,
    associated: bool,
    privacy: bool,
    rsn: Option<String>,
    wpa: bool,
    in_rsn: bool,
}

impl Bss {
    fn finish(self) -> ScanResult {
        let security = match &self.rsn {
            Some(suites) if suites.contains("PSK") => Security::Wpa2Psk,
            Some(suites) if suites.contains("SAE") => Security::Wpa3Sae,
            Some(suites) if suites.contains("802.1X") => Security::Enterprise,
            Some(_) => Security::Wpa2Psk,
            None if self.wpa => Security::WpaPsk,
            None if self.privacy => Security::Wep,
            None => Security::Open,
        };
        let trimmed: &[u8] = if self.ssid.iter().all(|&b| b == 0) {
            &[]
        } else {
            &self.ssid
        };
        let ssid_storable =
            std::str::from_utf8(trimmed).is_ok() && (1..=32).contains(&trimmed.len());
        ScanResult {
            bssid: self.bssid,
            ssid: String::from_utf8_lossy(trimmed).into_owned(),
            ssid_storable,
            freq_mhz: self.freq,
            channel: channel_of(self.freq),
            signal_dbm: self.signal,
            security,
            associated: self.associated,
        }
    }
}

/// Parses `iw dev X scan`: every BSS, strongest first, at most [`MAX_SCAN_RESULTS`]. Lines it
/// does not know are skipped (iw prints many more elements than a network picker needs).
pub fn parse_scan(text: &str) -> Vec<ScanResult> {
    let mut out = Vec::new();
    let mut cur: Option<Bss> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("BSS ") {
            if let Some(b) = cur.take() {
                out.push(b.finish());
            }
            let bssid = rest.split(['(', ' ']).next().unwrap_or("").to_owned();
            cur = Some(Bss {
                bssid,
                associated: rest.contains("-- associated"),
                ..Bss::default()
            });
            continue;
        }
        let Some(b) = cur.as_mut() else { continue };
        let t = line.trim_start();
        // Only the BSS's own lines are one tab deep; sub-lines of RSN are deeper.
        let top = line.starts_with('\t') && !line.starts_with("\t\t");
        if top {
            b.in_rsn = false;
        }
        if top && let Some(v) = t.strip_prefix("SSID: ") {
            b.ssid = unescape_iw(v);
        } else if top && t == "SSID:" {
            b.ssid.clear();
        } else if top && let Some(v) = t.strip_prefix("freq: ") {
            b.freq = mhz(v);
        } else if top && let Some(v) = t.strip_prefix("signal: ") {
            b.signal = dbm(v);
        } else if top && let Some(v) = t.strip_prefix("capability: ") {
            b.privacy = v.split_whitespace().any(|w| w == "Privacy");
        } else if top && t.starts_with("RSN:") {
            b.rsn = Some(String::new());
            b.in_rsn = true;
            if let Some(v) = t.split_once("Authentication suites:") {
                b.rsn = Some(v.1.to_owned());
            }
        } else if top && t.starts_with("WPA:") {
            b.wpa = true;
        } else if b.in_rsn
            && let Some(v) = t.strip_prefix("* Authentication suites: ")
        {
            b.rsn = Some(v.to_owned());
        }
    }
    if let Some(b) = cur.take() {
        out.push(b.finish());
    }
    out.sort_by(|a, b| {
        b.signal_dbm
            .unwrap_or(-200.0)
            .total_cmp(&a.signal_dbm.unwrap_or(-200.0))
    });
    out.truncate(MAX_SCAN_RESULTS);
    out
}

/// One entry per named network, its strongest access point, strongest first; hidden networks
/// (no SSID) left out. This is the list the network picker shows.
pub fn networks(results: &[ScanResult]) -> Vec<ScanResult> {
    let mut out: Vec<ScanResult> = Vec::new();
    for r in results.iter().filter(|r| !r.ssid.is_empty()) {
        if !out.iter().any(|o| o.ssid == r.ssid) {
            out.push(r.clone());
        }
    }
    out
}

/// The state of one interface, for the dashboard and the Network page.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct LinkState {
    pub interface: String,
    /// The interface exists (`/sys/class/net/<if>`).
    pub exists: bool,
    /// `operstate` is `up`.
    pub up: bool,
    /// A cable or an association is present (`carrier`), when the kernel says.
    pub carrier: Option<bool>,
    pub ipv4: Vec<String>,
    /// For a Wi-Fi client: the network joined.
    pub wifi: Option<WifiLink>,
}

/// `iw dev X link` when connected.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WifiLink {
    pub bssid: String,
    pub ssid: String,
    pub freq_mhz: u32,
    pub signal_dbm: Option<f32>,
}

/// Parses `iw dev X link`: `None` for `Not connected.`.
pub fn parse_link(text: &str) -> Option<WifiLink> {
    let first = text.lines().next()?;
    let rest = first.strip_prefix("Connected to ")?;
    let mut link = WifiLink {
        bssid: rest.split([' ', '(']).next().unwrap_or("").to_owned(),
        ssid: String::new(),
        freq_mhz: 0,
        signal_dbm: None,
    };
    for line in text.lines().skip(1) {
        let t = line.trim_start();
        if let Some(v) = t.strip_prefix("SSID: ") {
            link.ssid = String::from_utf8_lossy(&unescape_iw(v)).into_owned();
        } else if let Some(v) = t.strip_prefix("freq: ") {
            link.freq_mhz = mhz(v);
        } else if let Some(v) = t.strip_prefix("signal: ") {
            link.signal_dbm = dbm(v);
        }
    }
    Some(link)
}

/// Parses `ip -o -4 addr show dev X`: the `inet a.b.c.d/p` of each line.
pub fn parse_ip_addr(text: &str) -> Vec<Ipv4Net> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == "inet")?;
            Ipv4Net::parse(words.next()?)
        })
        .collect()
}
