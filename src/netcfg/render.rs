//! PURE renderers: [`Network`] → the config files the box's daemons read. No I/O here; the
//! paths are relative to the [`System`](super::System)'s root.
//!
//! What runs what (appliance.md §2.6, the hwsim test of Appendix C, is the recipe this follows):
//! - hotspot: hostapd (WPA2-PSK, CCMP) + dnsmasq (DHCP on the hotspot interface only; with
//!   `captive_portal`, every DNS name answers with the box's address and DHCP option 114 names
//!   the portal, RFC 8910) + a static address in `/etc/network/interfaces`;
//! - Wi-Fi uplink: wpa_supplicant (networks by priority) + DHCP from ifupdown;
//! - Ethernet: ifupdown, DHCP or static;
//! - cellular: pppd + chat over the modem's AT port (no ModemManager).

use super::{EthernetMode, Hotspot, Network, PassphraseKind, Wifi, check_passphrase};
use std::fmt::Write as _;
use std::path::PathBuf;

/// A daemon whose config files pocketgate writes. Closed set: adding one adds a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
/// Declared in restart order: addresses first (dnsmasq binds to the hotspot's), then daemons.
pub enum Service {
    Networking,
    Hostapd,
    Dnsmasq,
    WpaSupplicant,
    Pppd,
}

impl Service {
    /// The name put into `system.restart`/`system.stop` for `{service}`.
    pub fn name(self) -> &'static str {
        match self {
            Service::Hostapd => "hostapd",
            Service::Dnsmasq => "dnsmasq",
            Service::WpaSupplicant => "wpa_supplicant",
            Service::Networking => "networking",
            Service::Pppd => "pppd",
        }
    }
}

/// One rendered file.
#[derive(Clone, PartialEq, Eq)]
pub struct RenderedFile {
    /// Relative to the system root, e.g. `etc/hostapd/hostapd.conf`.
    pub path: PathBuf,
    pub contents: String,
    /// Unix permissions: 0o600 for files holding secrets.
    pub mode: u32,
    /// The service that reads it (restarted when it changes).
    pub service: Service,
}

impl std::fmt::Debug for RenderedFile {
    /// Path and size only: most of these files hold secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RenderedFile({}, {} bytes, {:o}, {:?})",
            self.path.display(),
            self.contents.len(),
            self.mode,
            self.service
        )
    }
}

pub const HOSTAPD_CONF: &str = "etc/hostapd/hostapd.conf";
pub const DNSMASQ_CONF: &str = "etc/dnsmasq.conf";
pub const WPA_SUPPLICANT_CONF: &str = "etc/wpa_supplicant/wpa_supplicant.conf";
pub const INTERFACES: &str = "etc/network/interfaces";
pub const PPP_PEER: &str = "etc/ppp/peers/pocketgate";
pub const PPP_CHAT: &str = "etc/ppp/chat-pocketgate";

/// Every file pocketgate may write, with its service. A file of a part that is turned off is
/// removed by `apply`, and its service stopped.
pub const MANAGED: [(&str, Service); 6] = [
    (HOSTAPD_CONF, Service::Hostapd),
    (DNSMASQ_CONF, Service::Dnsmasq),
    (WPA_SUPPLICANT_CONF, Service::WpaSupplicant),
    (INTERFACES, Service::Networking),
    (PPP_PEER, Service::Pppd),
    (PPP_CHAT, Service::Pppd),
];

const HEADER: &str = "# Written by pocketgate from network.toml; edits here are overwritten.\n";

/// All files for this configuration, in [`MANAGED`] order.
pub fn render(n: &Network) -> Vec<RenderedFile> {
    let file = |path: &str, contents: String, mode: u32, service: Service| RenderedFile {
        path: PathBuf::from(path),
        contents,
        mode,
        service,
    };
    let mut files = Vec::new();
    if let Some(h) = n.hotspot.as_ref().filter(|h| h.enabled) {
        files.push(file(
            HOSTAPD_CONF,
            hostapd_conf(h, n),
            0o600,
            Service::Hostapd,
        ));
        files.push(file(DNSMASQ_CONF, dnsmasq_conf(h), 0o644, Service::Dnsmasq));
    }
    if let Some(w) = n.wifi.as_ref().filter(|w| !w.networks.is_empty()) {
        files.push(file(
            WPA_SUPPLICANT_CONF,
            wpa_supplicant_conf(w, n),
            0o600,
            Service::WpaSupplicant,
        ));
    }
    files.push(file(INTERFACES, interfaces(n), 0o644, Service::Networking));
    if let Some(c) = n.cellular.as_ref().filter(|c| c.enabled) {
        files.push(file(PPP_PEER, ppp_peer(c), 0o600, Service::Pppd));
        files.push(file(PPP_CHAT, ppp_chat(c), 0o600, Service::Pppd));
    }
    files
}

/// Whether bytes can go between double quotes in hostapd/wpa_supplicant files: those parsers
/// take everything between the first and the last `"` of the line, so any printable ASCII works
/// (inner quotes and `#` included); anything else is written as hex.
fn quotable(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| (0x20..=0x7e).contains(b))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// `"name"` or hex: the SSID value for `ssid2=` (hostapd) and `ssid=` (wpa_supplicant).
pub fn ssid_value(ssid: &str) -> String {
    if quotable(ssid.as_bytes()) {
        format!("\"{ssid}\"")
    } else {
        hex(ssid.as_bytes())
    }
}

/// hostapd.conf (hostapd 2.10 keys; appliance.md Appendix C).
pub fn hostapd_conf(h: &Hotspot, n: &Network) -> String {
    let mut s = String::from(HEADER);
    let ssid = h.ap.ssid.as_str();
    let _ = writeln!(s, "interface={}", h.interface);
    s.push_str("driver=nl80211\nctrl_interface=/run/hostapd\n");
    let _ = writeln!(s, "ssid2={}", ssid_value(ssid));
    if !ssid.is_ascii() {
        s.push_str("utf8_ssid=1\n");
    }
    let _ = writeln!(s, "country_code={}", n.country);
    s.push_str("ieee80211d=1\nhw_mode=g\n");
    let _ = writeln!(s, "channel={}", h.ap.channel);
    s.push_str("ieee80211n=1\nwmm_enabled=1\nauth_algs=1\n");
    let _ = writeln!(s, "ignore_broadcast_ssid={}", u8::from(h.ap.ssid_hidden));
    s.push_str("wpa=2\nwpa_key_mgmt=WPA-PSK\nrsn_pairwise=CCMP\n");
    let pass = h.ap.password.as_str();
    // hostapd takes the rest of the line verbatim (no quotes, no comment stripping).
    match check_passphrase(pass) {
        Ok(PassphraseKind::Hex) => {
            let _ = writeln!(s, "wpa_psk={}", pass.to_ascii_lowercase());
        }
        _ => {
            let _ = writeln!(s, "wpa_passphrase={pass}");
        }
    }
    s
}

/// wpa_supplicant.conf for the client radio: every network, with priority.
pub fn wpa_supplicant_conf(w: &Wifi, n: &Network) -> String {
    let mut s = String::from(HEADER);
    s.push_str("ctrl_interface=DIR=/run/wpa_supplicant\nupdate_config=0\nap_scan=1\n");
    let _ = writeln!(s, "country={}", n.country);
    for net in &w.networks {
        let c = &net.client;
        s.push_str("\nnetwork={\n");
        let _ = writeln!(s, "\tssid={}", ssid_value(c.ssid.as_str()));
        if net.hidden {
            s.push_str("\tscan_ssid=1\n");
        }
        match c.auth_method {
            super::AuthMethod::None => s.push_str("\tkey_mgmt=NONE\n"),
            _ => {
                s.push_str("\tkey_mgmt=WPA-PSK\n");
                let pass = c.password.as_str();
                match check_passphrase(pass) {
                    Ok(PassphraseKind::Hex) => {
                        let _ = writeln!(s, "\tpsk={}", pass.to_ascii_lowercase());
                    }
                    _ => {
                        let _ = writeln!(s, "\tpsk=\"{pass}\"");
                    }
                }
            }
        }
        let _ = writeln!(s, "\tpriority={}", net.priority);
        s.push_str("}\n");
    }
    s
}

/// dnsmasq.conf: DHCP and DNS on the hotspot interface only (`bind-interfaces`, not on lo), no
/// upstream servers. With `captive_portal`, `address=/#/…` answers every name with the box's
/// address and `address=/#/::` answers AAAA with `::` rather than REFUSED (appliance.md §2.6
/// pitfall 3), so phones fall back to IPv4 and find the portal.
pub fn dnsmasq_conf(h: &Hotspot) -> String {
    let mut s = String::from(HEADER);
    let (i, box_ip) = (&h.interface, h.address.addr);
    let _ = writeln!(s, "interface={i}");
    s.push_str("bind-interfaces\nexcept-interface=lo\nno-resolv\nno-hosts\n");
    s.push_str("dhcp-leasefile=/run/dnsmasq.leases\ndhcp-authoritative\n");
    let _ = writeln!(
        s,
        "dhcp-range={i},{},{},{},{}",
        h.dhcp_start,
        h.dhcp_end,
        h.address.netmask(),
        h.lease.as_secs()
    );
    let _ = writeln!(s, "dhcp-option={i},option:router,{box_ip}");
    let _ = writeln!(s, "dhcp-option={i},option:dns-server,{box_ip}");
    let _ = writeln!(s, "address=/pocketgate.lan/{box_ip}");
    if h.captive_portal {
        let _ = writeln!(s, "address=/#/{box_ip}");
        s.push_str("address=/#/::\n");
        let _ = writeln!(s, "dhcp-option={i},114,\"http://{box_ip}/\"");
    }
    s
}

/// /etc/network/interfaces (ifupdown; busybox `ifup` reads the same syntax).
pub fn interfaces(n: &Network) -> String {
    let mut s = String::from(HEADER);
    s.push_str("auto lo\niface lo inet loopback\n");
    if let Some(h) = n.hotspot.as_ref().filter(|h| h.enabled) {
        let _ = write!(
            s,
            "\nauto {i}\niface {i} inet static\n\taddress {}\n\tnetmask {}\n",
            h.address.addr,
            h.address.netmask(),
            i = h.interface
        );
    }
    if let Some(e) = n.ethernet.as_ref().filter(|e| e.enabled) {
        let i = &e.interface;
        match &e.mode {
            EthernetMode::Dhcp => {
                let _ = write!(s, "\nauto {i}\niface {i} inet dhcp\n");
            }
            EthernetMode::Static {
                address,
                gateway,
                dns,
            } => {
                let _ = write!(
                    s,
                    "\nauto {i}\niface {i} inet static\n\taddress {}\n\tnetmask {}\n",
                    address.addr,
                    address.netmask()
                );
                if let Some(g) = gateway {
                    let _ = writeln!(s, "\tgateway {g}");
                }
                if !dns.is_empty() {
                    // busybox ifup has no dns-nameservers; a plain `up` command works in both.
                    let list: Vec<String> = dns.iter().map(|a| a.to_string()).collect();
                    let _ = writeln!(
                        s,
                        "\tup printf 'nameserver %s\\n' {} > /etc/resolv.conf",
                        list.join(" ")
                    );
                }
            }
        }
    }
    if let Some(w) = n.wifi.as_ref().filter(|w| !w.networks.is_empty()) {
        let _ = write!(s, "\nauto {i}\niface {i} inet dhcp\n", i = w.interface);
    }
    s
}

/// pppd peer file (`pppd call pocketgate`). `defaultroute` does not replace an existing default
/// route, so a working Ethernet or Wi-Fi uplink keeps precedence. With a SIM PIN, pppd stops
/// after 2 failed dials so a wrong PIN cannot lock the SIM (3 tries).
pub fn ppp_peer(c: &super::Cellular) -> String {
    let mut s = String::from(HEADER);
    let _ = writeln!(s, "{}\n115200", c.device);
    let _ = writeln!(s, "connect \"/usr/sbin/chat -v -f /{PPP_CHAT}\"");
    s.push_str("noauth\nnoipdefault\ndefaultroute\nusepeerdns\npersist\nholdoff 10\n");
    s.push_str("lcp-echo-interval 30\nlcp-echo-failure 4\nnovj\nnocrtscts\nlock\n");
    let _ = writeln!(s, "maxfail {}", if c.pin.is_some() { 2 } else { 0 });
    if let Some(u) = &c.user {
        let _ = writeln!(s, "user \"{u}\"");
    }
    if let Some(p) = &c.password {
        let _ = writeln!(s, "password \"{p}\"");
    }
    s
}

/// chat script: unlock the SIM if it asks (`READY-AT+CPIN="…"-OK`: expect READY, else send the
/// PIN and expect OK), set the APN on context 1, dial `*99#`.
pub fn ppp_chat(c: &super::Cellular) -> String {
    let mut s = String::from(HEADER);
    for abort in ["BUSY", "NO CARRIER", "NO DIALTONE", "NO ANSWER", "ERROR"] {
        let _ = writeln!(s, "ABORT '{abort}'");
    }
    s.push_str("TIMEOUT 10\n'' 'AT'\n");
    if let Some(pin) = &c.pin {
        s.push_str("'OK' 'AT+CPIN?'\n");
        let _ = writeln!(
            s,
            "'READY-AT+CPIN=\"{pin}\"-OK' 'AT+CGDCONT=1,\"IP\",\"{}\"'",
            c.apn
        );
    } else {
        let _ = writeln!(s, "'OK' 'AT+CGDCONT=1,\"IP\",\"{}\"'", c.apn);
    }
    s.push_str("'OK' 'ATD*99#'\nTIMEOUT 30\n'CONNECT' ''\n");
    s
}
