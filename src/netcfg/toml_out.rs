//! [`Network`] → `network.toml` text, every key written out (defaults too), so the saved file
//! says exactly what the box does. [`super::validate`] reads it back and compares.

use super::{AuthMethod, EthernetMode, Network};
use crate::config::format_duration;
use toml::{Table, Value};

/// The TOML text of a network configuration (the format of docs/network.md).
pub fn to_toml(n: &Network) -> String {
    let mut top = Table::new();
    top.insert("country".into(), n.country.as_str().into());
    if let Some(h) = &n.hotspot {
        let mut t = Table::new();
        t.insert("enabled".into(), h.enabled.into());
        t.insert("interface".into(), h.interface.as_str().into());
        t.insert("ssid".into(), h.ap.ssid.as_str().into());
        t.insert("passphrase".into(), h.ap.password.as_str().into());
        t.insert("channel".into(), i64::from(h.ap.channel).into());
        t.insert("hidden".into(), h.ap.ssid_hidden.into());
        t.insert("address".into(), h.address.to_string().into());
        t.insert("dhcp_start".into(), h.dhcp_start.to_string().into());
        t.insert("dhcp_end".into(), h.dhcp_end.to_string().into());
        t.insert("lease".into(), format_duration(h.lease).into());
        t.insert("captive_portal".into(), h.captive_portal.into());
        top.insert("hotspot".into(), t.into());
    }
    if let Some(w) = &n.wifi {
        let mut t = Table::new();
        t.insert("interface".into(), w.interface.as_str().into());
        let networks: Vec<Value> = w
            .networks
            .iter()
            .map(|net| {
                let mut t = Table::new();
                t.insert("ssid".into(), net.client.ssid.as_str().into());
                if net.client.auth_method != AuthMethod::None {
                    t.insert("passphrase".into(), net.client.password.as_str().into());
                }
                t.insert("priority".into(), i64::from(net.priority).into());
                t.insert("hidden".into(), net.hidden.into());
                t.into()
            })
            .collect();
        t.insert("networks".into(), networks.into());
        top.insert("wifi".into(), t.into());
    }
    if let Some(e) = &n.ethernet {
        let mut t = Table::new();
        t.insert("enabled".into(), e.enabled.into());
        t.insert("interface".into(), e.interface.as_str().into());
        match &e.mode {
            EthernetMode::Dhcp => {
                t.insert("mode".into(), "dhcp".into());
            }
            EthernetMode::Static {
                address,
                gateway,
                dns,
            } => {
                t.insert("mode".into(), "static".into());
                t.insert("address".into(), address.to_string().into());
                if let Some(g) = gateway {
                    t.insert("gateway".into(), g.to_string().into());
                }
                let dns: Vec<Value> = dns.iter().map(|a| a.to_string().into()).collect();
                t.insert("dns".into(), dns.into());
            }
        }
        top.insert("ethernet".into(), t.into());
    }
    if let Some(c) = &n.cellular {
        let mut t = Table::new();
        t.insert("enabled".into(), c.enabled.into());
        t.insert("device".into(), c.device.as_str().into());
        t.insert("apn".into(), c.apn.as_str().into());
        for (key, v) in [
            ("user", &c.user),
            ("password", &c.password),
            ("pin", &c.pin),
        ] {
            if let Some(v) = v {
                t.insert(key.into(), v.as_str().into());
            }
        }
        top.insert("cellular".into(), t.into());
    }
    let s = &n.system;
    let mut t = Table::new();
    t.insert("root".into(), s.root.display().to_string().into());
    for (key, argv) in [
        ("restart", &s.restart),
        ("stop", &s.stop),
        ("scan", &s.scan),
        ("reboot", &s.reboot),
    ] {
        let argv: Vec<Value> = argv.iter().map(|a| a.as_str().into()).collect();
        t.insert(key.into(), argv.into());
    }
    top.insert("system".into(), t.into());
    let body = toml::to_string(&top).unwrap_or_default();
    format!(
        "# pocketgate network settings (docs/network.md). Written by pocketgate; holds secrets.\n{body}"
    )
}
