//! `network.toml` as written: every leaf is a [`Val`] (value or type error, with its span), so
//! validation (`check.rs`) can report every mistake at once with its path and line.
//! The doc comments are the user documentation (docs/network.md repeats them).

use crate::config::raw::{RawDuration, Val};
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNetwork {
    /// Required. The regulatory country (ISO 3166-1 alpha-2, e.g. `"KE"`): it decides which
    /// channels and powers the radio may use, for the hotspot and the Wi-Fi uplink alike.
    pub country: Option<Val<String>>,
    /// `[hotspot]`: the box's own Wi-Fi, where a phone opens the web page.
    pub hotspot: Option<RawHotspot>,
    /// `[wifi]`: Wi-Fi networks the box joins to reach DHIS2.
    pub wifi: Option<RawWifi>,
    /// `[ethernet]`: the wired uplink.
    pub ethernet: Option<RawEthernet>,
    /// `[cellular]`: a USB modem (PPP over its AT port).
    pub cellular: Option<RawCellular>,
    /// `[system]`: where files go and how services restart. Set by the image, not the web page.
    pub system: Option<RawSystem>,
}

/// `[hotspot]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHotspot {
    /// `false` turns the hotspot off (hostapd and dnsmasq are stopped). Default `true`.
    pub enabled: Option<Val<bool>>,
    /// The radio. Default `"wlan0"`.
    pub interface: Option<Val<String>>,
    /// Required. The network name phones see: 1 to 32 bytes.
    pub ssid: Option<Val<String>>,
    /// Required. WPA2-PSK passphrase: 8 to 63 printable ASCII characters, or 64 hex digits
    /// (a raw key). The hotspot is never open: the box holds patient results.
    pub passphrase: Option<Val<String>>,
    /// 2.4 GHz channel, 1 ..= 13 (1 ..= 11 in the US and Canada). Default 6.
    pub channel: Option<Val<i64>>,
    /// `true` hides the name from scans (phones must type it). Default `false`.
    pub hidden: Option<Val<bool>>,
    /// The box's address and prefix on the hotspot. Default `"192.168.4.1/24"`; a private
    /// (RFC 1918) network, prefix 16 ..= 30.
    pub address: Option<Val<String>>,
    /// First address handed out by DHCP. Default: the 10th address of the subnet.
    pub dhcp_start: Option<Val<String>>,
    /// Last address handed out by DHCP. Default: the 200th address, or the last usable one.
    pub dhcp_end: Option<Val<String>>,
    /// DHCP lease time. Default `"12h"`, `"2m"` ..= `"168h"` (a week).
    pub lease: Option<Val<RawDuration>>,
    /// Answer every DNS name with the box's address on the hotspot, so phones open the login
    /// page by themselves (captive portal). Default `true`.
    pub captive_portal: Option<Val<bool>>,
}

/// `[wifi]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWifi {
    /// The radio that joins networks. Default `"wlan1"` (a second adapter: one radio here is
    /// either the hotspot or a client, not both).
    pub interface: Option<Val<String>>,
    /// `[[wifi.networks]]`: the networks to join, the highest `priority` first.
    #[serde(default)]
    pub networks: Vec<RawWifiNetwork>,
}

/// `[[wifi.networks]]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWifiNetwork {
    /// Required. The network's name, 1 to 32 bytes; unique in this list.
    pub ssid: Option<Val<String>>,
    /// WPA/WPA2-PSK passphrase (8 to 63 printable ASCII, or 64 hex digits). Absent = an open
    /// network.
    pub passphrase: Option<Val<String>>,
    /// Higher is tried first. Default 0, 0 ..= 1000.
    pub priority: Option<Val<i64>>,
    /// `true` for a network that does not broadcast its name (probe for it). Default `false`.
    pub hidden: Option<Val<bool>>,
}

/// `[ethernet]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEthernet {
    /// `false` leaves the port unconfigured. Default `true`.
    pub enabled: Option<Val<bool>>,
    /// Default `"eth0"`.
    pub interface: Option<Val<String>>,
    /// `"dhcp"` (default) or `"static"`.
    pub mode: Option<Val<String>>,
    /// static (required): address and prefix, e.g. `"192.168.1.50/24"`.
    pub address: Option<Val<String>>,
    /// static: the router, inside the subnet.
    pub gateway: Option<Val<String>>,
    /// static: DNS servers (IPv4), at most 3.
    pub dns: Option<Val<Vec<String>>>,
}

/// `[cellular]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCellular {
    /// `false` keeps the settings without dialling. Default `true`.
    pub enabled: Option<Val<bool>>,
    /// The modem's AT/PPP port. Default `"/dev/ttyUSB0"`.
    pub device: Option<Val<String>>,
    /// Required. The operator's access point name, e.g. `"internet"`.
    pub apn: Option<Val<String>>,
    /// PPP user name, if the operator asks for one.
    pub user: Option<Val<String>>,
    /// PPP password, if the operator asks for one.
    pub password: Option<Val<String>>,
    /// The SIM's PIN (4 to 8 digits), if it has one. A wrong PIN tried 3 times locks the SIM:
    /// pppd gives up after 2 failed dials when a PIN is set.
    pub pin: Option<Val<String>>,
}

/// `[system]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSystem {
    /// Files are written under this directory (`<root>/etc/hostapd/hostapd.conf`). Default `"/"`.
    pub root: Option<Val<String>>,
    /// Command that restarts a service; `{service}` is replaced by its name (`hostapd`,
    /// `dnsmasq`, `wpa_supplicant`, `networking`, `pppd`). Default
    /// `["/etc/init.d/{service}", "restart"]`.
    pub restart: Option<Val<Vec<String>>>,
    /// Command that stops a service that is no longer configured. Default
    /// `["/etc/init.d/{service}", "stop"]`.
    pub stop: Option<Val<Vec<String>>>,
    /// Wi-Fi scan command; `{interface}` is replaced. Default `["iw", "dev", "{interface}", "scan"]`.
    pub scan: Option<Val<Vec<String>>>,
    /// Command that reboots the machine (the System page's **Reboot** button). Default
    /// `["reboot"]` (busybox and systemd both have it).
    pub reboot: Option<Val<Vec<String>>>,
}
