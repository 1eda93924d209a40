//! Validation: [`RawNetwork`] → [`Network`], collecting every mistake with its path and line
//! (the same `ConfigError` shape as the main config, so the page shows both the same way).

use super::raw::{RawCellular, RawEthernet, RawHotspot, RawNetwork, RawSystem, RawWifi};
use super::{
    AccessPointConfiguration, AuthMethod, Cellular, ClientConfiguration, Country, Ethernet,
    EthernetMode, Hotspot, Ipv4Net, Network, SystemSettings, Wifi, WifiNetwork, check_passphrase,
};
use crate::config::raw::{RawDuration, Val};
use crate::config::{ConfigError, ConfigErrors, format_duration, parse_duration};
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

pub(super) fn parse(text: &str) -> Result<Network, ConfigErrors> {
    let raw: RawNetwork = toml::from_str(text).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            path: String::new(),
            line: e.span().map(|s| line_at(text, s.start)),
            message: one_line(e.message()),
        }])
    })?;
    let mut check = Check {
        text,
        errors: Vec::new(),
    };
    let network = check.network(&raw);
    let mut errors = check.errors;
    match network {
        Some(n) if errors.is_empty() => Ok(n),
        _ => {
            errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
            Err(ConfigErrors(errors))
        }
    }
}

fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn one_line(message: &str) -> String {
    let lines: Vec<&str> = message.trim().lines().map(str::trim).collect();
    lines.join("; ")
}

struct Check<'a> {
    text: &'a str,
    errors: Vec<ConfigError>,
}

impl Check<'_> {
    fn error(&mut self, path: &str, line: Option<usize>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            path: path.to_owned(),
            line,
            message: message.into(),
        });
    }

    /// A present, well-typed value and its line; a wrongly typed one is an error, read as absent.
    fn get<'v, T>(&mut self, path: &str, v: &'v Option<Val<T>>) -> Option<(&'v T, Option<usize>)> {
        let v = v.as_ref()?;
        let line = v.span.as_ref().map(|s| line_at(self.text, s.start));
        match &v.value {
            Ok(value) => Some((value, line)),
            Err(message) => {
                self.error(path, line, message.clone());
                None
            }
        }
    }

    fn required<'v, T>(
        &mut self,
        path: &str,
        v: &'v Option<Val<T>>,
        hint: &str,
    ) -> Option<(&'v T, Option<usize>)> {
        if v.is_none() {
            self.error(path, None, format!("required ({hint})"));
        }
        self.get(path, v)
    }

    fn bool(&mut self, path: &str, v: &Option<Val<bool>>, default: bool) -> bool {
        self.get(path, v).map_or(default, |(b, _)| *b)
    }

    fn int(
        &mut self,
        path: &str,
        v: &Option<Val<i64>>,
        default: i64,
        range: RangeInclusive<i64>,
    ) -> i64 {
        match self.get(path, v) {
            Some((&n, _)) if range.contains(&n) => n,
            Some((&n, line)) => {
                let (lo, hi) = (range.start(), range.end());
                self.error(path, line, format!("{n} is out of range ({lo} ..= {hi})"));
                default
            }
            None => default,
        }
    }

    /// A Linux interface name: 1 to 15 of letters, digits, `_`, `-`, `.`.
    fn interface(&mut self, path: &str, v: &Option<Val<String>>, default: &str) -> String {
        match self.get(path, v) {
            Some((name, line)) => {
                let ok = (1..=15).contains(&name.len())
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
                if !ok {
                    self.error(
                        path,
                        line,
                        format!("{name:?} is not an interface name (1 to 15 letters, digits, _ - ., e.g. \"{default}\")"),
                    );
                }
                name.clone()
            }
            None => default.to_owned(),
        }
    }

    fn ssid(&mut self, path: &str, v: &Option<Val<String>>) -> Option<String> {
        let (ssid, line) = self.required(path, v, "the network name, 1 to 32 bytes")?;
        match ssid.len() {
            1..=32 => Some(ssid.clone()),
            _ => {
                self.error(
                    path,
                    line,
                    format!(
                        "{:?} is {} bytes; an SSID is 1 to 32 bytes",
                        ssid,
                        ssid.len()
                    ),
                );
                None
            }
        }
    }

    fn passphrase(&mut self, path: &str, value: &str, line: Option<usize>) -> Option<String> {
        match check_passphrase(value) {
            Ok(_) => Some(value.to_owned()),
            Err(why) => {
                // Never echo the secret itself.
                self.error(path, line, why);
                None
            }
        }
    }

    fn ipv4(&mut self, path: &str, v: &Option<Val<String>>) -> Option<Ipv4Addr> {
        let (text, line) = self.get(path, v)?;
        match text.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    path,
                    line,
                    format!("{text:?} is not an IPv4 address (e.g. \"192.168.4.10\")"),
                );
                None
            }
        }
    }

    /// `a.b.c.d/p` with a host address (not the subnet's network or broadcast address).
    fn net(
        &mut self,
        path: &str,
        text: &str,
        line: Option<usize>,
        prefixes: RangeInclusive<u8>,
    ) -> Option<Ipv4Net> {
        let Some(net) = Ipv4Net::parse(text) else {
            self.error(
                path,
                line,
                format!("{text:?} is not an address with a prefix (e.g. \"192.168.4.1/24\")"),
            );
            return None;
        };
        if !prefixes.contains(&net.prefix) {
            let (lo, hi) = (prefixes.start(), prefixes.end());
            self.error(
                path,
                line,
                format!("prefix /{} is out of range (/{lo} ..= /{hi})", net.prefix),
            );
            return None;
        }
        if !net.is_host(net.addr) {
            self.error(
                path,
                line,
                format!(
                    "{} is the subnet's network or broadcast address, not a host address",
                    net.addr
                ),
            );
            return None;
        }
        Some(net)
    }

    fn duration(
        &mut self,
        path: &str,
        v: &Option<Val<RawDuration>>,
        default: Duration,
        range: RangeInclusive<Duration>,
    ) -> Duration {
        let Some((RawDuration(text), line)) = self.get(path, v) else {
            return default;
        };
        match parse_duration(text) {
            Some(d) if range.contains(&d) => d,
            parsed => {
                let why = match parsed {
                    Some(_) => format!(
                        "\"{text}\" is out of range ({} ..= {})",
                        format_duration(*range.start()),
                        format_duration(*range.end())
                    ),
                    None => format!("\"{text}\" is not a duration (e.g. \"12h\", \"30m\")"),
                };
                self.error(path, line, why);
                default
            }
        }
    }

    fn network(&mut self, raw: &RawNetwork) -> Option<Network> {
        let country = match self.required(
            "country",
            &raw.country,
            "ISO 3166 alpha-2 code, e.g. \"KE\"",
        ) {
            Some((text, line)) => {
                let c = Country::parse(text);
                if c.is_none() {
                    self.error("country", line, format!("{text:?} is not an ISO 3166-1 alpha-2 country code (e.g. \"KE\", \"UG\", \"US\")"));
                }
                c
            }
            None => None,
        };
        let hotspot = raw.hotspot.as_ref().and_then(|h| self.hotspot(h, country));
        let wifi = raw.wifi.as_ref().map(|w| self.wifi(w));
        let ethernet = raw.ethernet.as_ref().and_then(|e| self.ethernet(e));
        let cellular = raw.cellular.as_ref().and_then(|c| self.cellular(c));
        let system = raw
            .system
            .as_ref()
            .map_or_else(SystemSettings::default, |s| self.system(s));
        let n = Network {
            country: country?,
            hotspot,
            wifi,
            ethernet,
            cellular,
            system,
        };
        self.across(&n);
        Some(n)
    }

    fn hotspot(&mut self, h: &RawHotspot, country: Option<Country>) -> Option<Hotspot> {
        let enabled = self.bool("hotspot.enabled", &h.enabled, true);
        let interface = self.interface("hotspot.interface", &h.interface, "wlan0");
        let ssid = self.ssid("hotspot.ssid", &h.ssid);
        let password = match self.required(
            "hotspot.passphrase",
            &h.passphrase,
            "WPA2: 8 to 63 printable ASCII characters; the hotspot is never open",
        ) {
            Some((p, line)) => self.passphrase("hotspot.passphrase", p, line),
            None => None,
        };
        let channel = self.int("hotspot.channel", &h.channel, 6, 1..=14);
        if let Some(c) = country {
            let max = i64::from(c.max_channel());
            if channel > max {
                let line = h
                    .channel
                    .as_ref()
                    .and_then(|v| v.span.as_ref())
                    .map(|s| line_at(self.text, s.start));
                self.error(
                    "hotspot.channel",
                    line,
                    format!(
                        "channel {channel} is not allowed in {c} (2.4 GHz channels 1 ..= {max})"
                    ),
                );
            }
        }
        let hidden = self.bool("hotspot.hidden", &h.hidden, false);
        let address = match self.get("hotspot.address", &h.address) {
            Some((text, line)) => self.net("hotspot.address", text, line, 16..=30),
            None => Ipv4Net::parse("192.168.4.1/24"),
        }?;
        if !address.addr.is_private() {
            let line = h
                .address
                .as_ref()
                .and_then(|v| v.span.as_ref())
                .map(|s| line_at(self.text, s.start));
            self.error(
                "hotspot.address",
                line,
                format!(
                    "{} is not a private address (use 10.x, 172.16–31.x or 192.168.x)",
                    address.addr
                ),
            );
        }
        let dhcp_start = self
            .ipv4("hotspot.dhcp_start", &h.dhcp_start)
            .unwrap_or(address.nth(10));
        let last = Ipv4Addr::from(u32::from(address.broadcast()) - 1);
        let dhcp_end =
            self.ipv4("hotspot.dhcp_end", &h.dhcp_end)
                .unwrap_or(if address.prefix <= 24 {
                    address.nth(200)
                } else {
                    last
                });
        self.dhcp_range(h, address, dhcp_start, dhcp_end);
        let lease = self.duration(
            "hotspot.lease",
            &h.lease,
            Duration::from_secs(12 * 3600),
            Duration::from_secs(120)..=Duration::from_secs(168 * 3600),
        );
        let captive_portal = self.bool("hotspot.captive_portal", &h.captive_portal, true);
        Some(Hotspot {
            enabled,
            interface,
            ap: AccessPointConfiguration {
                // Lengths were checked above (≤ 32 and ≤ 64 bytes), so these cannot fail.
                ssid: ssid?.as_str().try_into().unwrap_or_default(),
                ssid_hidden: hidden,
                channel: u8::try_from(channel).unwrap_or(6),
                auth_method: AuthMethod::WPA2Personal,
                password: password?.as_str().try_into().unwrap_or_default(),
                ..AccessPointConfiguration::default()
            },
            address,
            dhcp_start,
            dhcp_end,
            lease,
            captive_portal,
        })
    }

    fn dhcp_range(&mut self, h: &RawHotspot, net: Ipv4Net, start: Ipv4Addr, end: Ipv4Addr) {
        let line = |v: &Option<Val<String>>| {
            v.as_ref()
                .and_then(|v| v.span.as_ref())
                .map(|s| line_at(self.text, s.start))
        };
        let (start_line, end_line) = (line(&h.dhcp_start), line(&h.dhcp_end));
        for (path, a, l) in [
            ("hotspot.dhcp_start", start, start_line),
            ("hotspot.dhcp_end", end, end_line),
        ] {
            if !net.is_host(a) {
                self.error(
                    path,
                    l,
                    format!(
                        "{a} is not a host address of the hotspot subnet {}/{}",
                        net.network(),
                        net.prefix
                    ),
                );
                return;
            }
        }
        if u32::from(start) > u32::from(end) {
            self.error(
                "hotspot.dhcp_end",
                end_line,
                format!("{end} comes before dhcp_start {start}"),
            );
        } else if (u32::from(start)..=u32::from(end)).contains(&u32::from(net.addr)) {
            self.error(
                "hotspot.dhcp_start",
                start_line.or(end_line),
                format!("the DHCP range {start} – {end} contains the box's own address {} (hotspot.address)", net.addr),
            );
        }
    }

    fn wifi(&mut self, w: &RawWifi) -> Wifi {
        let interface = self.interface("wifi.interface", &w.interface, "wlan1");
        let mut networks: Vec<WifiNetwork> = Vec::new();
        let mut seen: Vec<(String, usize)> = Vec::new();
        for (i, n) in w.networks.iter().enumerate() {
            let path = |key: &str| format!("wifi.networks[{i}].{key}");
            let ssid = self.ssid(&path("ssid"), &n.ssid);
            let (auth_method, password) = match self.get(&path("passphrase"), &n.passphrase) {
                Some((p, line)) => (
                    AuthMethod::WPA2Personal,
                    self.passphrase(&path("passphrase"), p, line),
                ),
                None => (AuthMethod::None, Some(String::new())),
            };
            let priority = self.int(&path("priority"), &n.priority, 0, 0..=1000);
            let hidden = self.bool(&path("hidden"), &n.hidden, false);
            let (Some(ssid), Some(password)) = (ssid, password) else {
                continue;
            };
            if let Some((_, j)) = seen.iter().find(|(s, _)| *s == ssid) {
                let line = n
                    .ssid
                    .as_ref()
                    .and_then(|v| v.span.as_ref())
                    .map(|s| line_at(self.text, s.start));
                self.error(
                    &path("ssid"),
                    line,
                    format!("{ssid:?} is already wifi.networks[{j}]"),
                );
                continue;
            }
            seen.push((ssid.clone(), i));
            networks.push(WifiNetwork {
                client: ClientConfiguration {
                    ssid: ssid.as_str().try_into().unwrap_or_default(),
                    auth_method,
                    password: password.as_str().try_into().unwrap_or_default(),
                    ..ClientConfiguration::default()
                },
                priority: u16::try_from(priority).unwrap_or(0),
                hidden,
            });
        }
        Wifi {
            interface,
            networks,
        }
    }

    fn ethernet(&mut self, e: &RawEthernet) -> Option<Ethernet> {
        let enabled = self.bool("ethernet.enabled", &e.enabled, true);
        let interface = self.interface("ethernet.interface", &e.interface, "eth0");
        let mode = match self
            .get("ethernet.mode", &e.mode)
            .map(|(m, l)| (m.as_str(), l))
        {
            None | Some(("dhcp", _)) => {
                for (key, set) in [
                    ("address", e.address.is_some()),
                    ("gateway", e.gateway.is_some()),
                    ("dns", e.dns.is_some()),
                ] {
                    if set {
                        self.error(
                            &format!("ethernet.{key}"),
                            None,
                            "only with mode = \"static\" (DHCP supplies it)",
                        );
                    }
                }
                EthernetMode::Dhcp
            }
            Some(("static", _)) => {
                let (text, line) = self.required(
                    "ethernet.address",
                    &e.address,
                    "with mode = \"static\", e.g. \"192.168.1.50/24\"",
                )?;
                let address = self.net("ethernet.address", text, line, 8..=30)?;
                let gateway = self.ipv4("ethernet.gateway", &e.gateway);
                if let Some(g) = gateway.filter(|g| !address.is_host(*g) || *g == address.addr) {
                    self.error(
                        "ethernet.gateway",
                        None,
                        format!(
                            "{g} is not another host of the subnet {}/{}",
                            address.network(),
                            address.prefix
                        ),
                    );
                }
                let mut dns = Vec::new();
                if let Some((list, line)) = self.get("ethernet.dns", &e.dns) {
                    if list.len() > 3 {
                        self.error(
                            "ethernet.dns",
                            line,
                            format!("{} servers; at most 3 are used", list.len()),
                        );
                    }
                    for (i, s) in list.iter().enumerate() {
                        match s.parse() {
                            Ok(a) => dns.push(a),
                            Err(_) => self.error(
                                &format!("ethernet.dns[{i}]"),
                                line,
                                format!("{s:?} is not an IPv4 address"),
                            ),
                        }
                    }
                }
                EthernetMode::Static {
                    address,
                    gateway,
                    dns,
                }
            }
            Some((other, line)) => {
                self.error(
                    "ethernet.mode",
                    line,
                    format!("{other:?}: expected \"dhcp\" or \"static\""),
                );
                return None;
            }
        };
        Some(Ethernet {
            enabled,
            interface,
            mode,
        })
    }

    fn cellular(&mut self, c: &RawCellular) -> Option<Cellular> {
        let enabled = self.bool("cellular.enabled", &c.enabled, true);
        let device = match self.get("cellular.device", &c.device) {
            Some((d, line)) => {
                if !d.starts_with("/dev/") || d.len() > 128 || d.contains(char::is_whitespace) {
                    self.error(
                        "cellular.device",
                        line,
                        format!("{d:?} is not a device path (e.g. \"/dev/ttyUSB2\")"),
                    );
                }
                d.clone()
            }
            None => "/dev/ttyUSB0".into(),
        };
        let apn = match self.required(
            "cellular.apn",
            &c.apn,
            "the operator's access point name, e.g. \"internet\"",
        ) {
            Some((a, line)) => {
                let ok = (1..=63).contains(&a.len())
                    && a.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
                if !ok {
                    self.error(
                        "cellular.apn",
                        line,
                        format!("{a:?} is not an APN (1 to 63 letters, digits, . _ -)"),
                    );
                }
                Some(a.clone())
            }
            None => None,
        };
        // These go into pppd's quoted option strings: no quotes, backslashes or controls.
        let mut ppp_text = |key: &str, v: &Option<Val<String>>| {
            let path = format!("cellular.{key}");
            let (s, line) = self.get(&path, v)?;
            let ok = (1..=63).contains(&s.len())
                && s.chars()
                    .all(|c| (' '..='~').contains(&c) && c != '"' && c != '\\');
            if !ok {
                self.error(
                    &path,
                    line,
                    "1 to 63 printable ASCII characters without \" or \\",
                );
            }
            Some(s.clone())
        };
        let user = ppp_text("user", &c.user);
        let password = ppp_text("password", &c.password);
        let pin = match self.get("cellular.pin", &c.pin) {
            Some((p, line)) => {
                if !(4..=8).contains(&p.len()) || !p.bytes().all(|b| b.is_ascii_digit()) {
                    self.error(
                        "cellular.pin",
                        line,
                        "a SIM PIN is 4 to 8 digits (written in quotes)",
                    );
                }
                Some(p.clone())
            }
            None => None,
        };
        Some(Cellular {
            enabled,
            device,
            apn: apn?,
            user,
            password,
            pin,
        })
    }

    fn system(&mut self, s: &RawSystem) -> SystemSettings {
        let d = SystemSettings::default();
        let root = match self.get("system.root", &s.root) {
            Some((r, line)) if r.is_empty() => {
                self.error("system.root", line, "empty; use \"/\" for the real system");
                d.root.clone()
            }
            Some((r, _)) => PathBuf::from(r),
            None => d.root.clone(),
        };
        let mut argv = |key: &str, v: &Option<Val<Vec<String>>>, default: &[String]| match self
            .get(&format!("system.{key}"), v)
        {
            Some((a, line)) if a.first().is_none_or(|c| c.is_empty()) => {
                self.error(
                    &format!("system.{key}"),
                    line,
                    "the command is empty (write it as a list: [\"program\", \"arg\", …])",
                );
                default.to_vec()
            }
            Some((a, _)) => a.clone(),
            None => default.to_vec(),
        };
        SystemSettings {
            root,
            restart: argv("restart", &s.restart, &d.restart),
            stop: argv("stop", &s.stop, &d.stop),
            scan: argv("scan", &s.scan, &d.scan),
            reboot: argv("reboot", &s.reboot, &d.reboot),
        }
    }

    /// Rules that involve more than one section.
    fn across(&mut self, n: &Network) {
        let hotspot = n.hotspot.as_ref().filter(|h| h.enabled);
        if let (Some(h), Some(w)) = (hotspot, &n.wifi)
            && h.interface == w.interface
            && !w.networks.is_empty()
        {
            let why = "one radio is either the hotspot or a client here: use a second adapter \
                       (e.g. \"wlan1\") or turn the hotspot off";
            let message = format!("{} is also the hotspot's radio; {why}", w.interface);
            self.error("wifi.interface", None, message);
        }
        if let Some(e) = n.ethernet.as_ref().filter(|e| e.enabled) {
            for (path, other) in [
                ("hotspot.interface", hotspot.map(|h| &h.interface)),
                ("wifi.interface", n.wifi.as_ref().map(|w| &w.interface)),
            ] {
                if other == Some(&e.interface) {
                    self.error(
                        path,
                        None,
                        format!("{} is also ethernet.interface", e.interface),
                    );
                }
            }
            if let (Some(h), EthernetMode::Static { address, .. }) = (hotspot, &e.mode)
                && h.address.overlaps(address)
            {
                self.error(
                    "ethernet.address",
                    None,
                    format!(
                        "{address} overlaps the hotspot subnet {}/{}",
                        h.address.network(),
                        h.address.prefix
                    ),
                );
            }
        }
    }
}
