//! The Network page and `/api/v1/network` (issue 5): the hotspot, the uplink Wi-Fi networks,
//! Ethernet and the cellular APN, edited through src/netcfg (docs/network.md).
//!
//! An edit is made on the TOML text of the current `network.toml` (`netcfg::to_toml`, then the
//! form's fields set with toml_edit) and read back with `netcfg::parse`, so the page reports
//! exactly what the file would (field + line) and an unparsable value ("abc" as a channel) is
//! reported too instead of being dropped. Nothing is written unless it validates; the file is
//! written atomically by `netcfg::save`, and "apply" runs `netcfg::apply` with
//! `netcfg::Host` built from the file's own `[system]` section (its `root` is a temp dir on a
//! laptop). Passphrases are write-only: never rendered, an empty field keeps the current one.
//! Saves and applies take the web's edit lock (one at a time); all file and command work runs
//! in `spawn_blocking`.

use super::{Ctx, Shared, Web, WebError};
use crate::config::{ConfigError, ConfigErrors};
use crate::netcfg::{self, Network, ScanResult};
use axum::extract::{Extension, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use minijinja::context;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use toml_edit::{DocumentMut, Item, Table, value};

/// Form fields (strings, as a browser sends them); the JSON API takes the same names.
pub type Fields = BTreeMap<String, String>;

/// Most uplink Wi-Fi networks the form handles (rows `net0_…` ..).
pub const MAX_WIFI_NETWORKS: usize = 16;

/// `<data_dir>/network.toml` (netcfg::default_path).
pub fn path(web: &Web) -> PathBuf {
    netcfg::default_path(&web.config().gateway.data_dir)
}

/// The current file: `Ok(None)` when there is none yet.
fn current(path: &std::path::Path) -> Result<Option<Network>, ConfigErrors> {
    if !path.exists() {
        return Ok(None);
    }
    netcfg::load(path).map(Some)
}

/// What the page and `GET /api/v1/network` show: everything but the secrets.
pub fn view(n: &Network) -> Value {
    let h = n.hotspot.as_ref();
    let w = n.wifi.as_ref();
    let e = n.ethernet.as_ref();
    let (mode, address, gateway, dns) = match e.map(|e| &e.mode) {
        Some(netcfg::EthernetMode::Static {
            address,
            gateway,
            dns,
        }) => (
            "static",
            address.to_string(),
            gateway.map(|g| g.to_string()).unwrap_or_default(),
            dns.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        Some(_) if e.is_some_and(|e| e.enabled) => {
            ("dhcp", String::new(), String::new(), String::new())
        }
        _ => ("off", String::new(), String::new(), String::new()),
    };
    json!({
        "country": n.country.as_str(),
        "hotspot": h.map(|h| json!({
            "enabled": h.enabled,
            "interface": h.interface,
            "ssid": h.ap.ssid.as_str(),
            "channel": h.ap.channel,
            "passphrase_set": !h.ap.password.is_empty(),
            "address": h.address.to_string(),
        })),
        "wifi": w.map(|w| json!({
            "interface": w.interface,
            "networks": w.networks.iter().map(|n| json!({
                "ssid": n.client.ssid.as_str(),
                "priority": n.priority,
                "hidden": n.hidden,
                "secured": n.client.auth_method != netcfg::AuthMethod::None,
            })).collect::<Vec<_>>(),
        })),
        "ethernet": {"mode": mode, "address": address, "gateway": gateway, "dns": dns},
        "cellular": n.cellular.as_ref().map(|c| json!({"enabled": c.enabled, "apn": c.apn})),
    })
}

fn field<'f>(f: &'f Fields, name: &str) -> &'f str {
    f.get(name).map(|s| s.trim()).unwrap_or("")
}

/// A form value as TOML: an integer when it reads as one, else a string (which netcfg then
/// reports as the wrong type, with its line).
fn int_or_text(text: &str) -> Item {
    match text.parse::<i64>() {
        Ok(i) => value(i),
        Err(_) => value(text),
    }
}

fn table<'d>(doc: &'d mut DocumentMut, name: &str) -> &'d mut Table {
    if !doc.contains_table(name) {
        doc[name] = toml_edit::table();
    }
    doc[name].as_table_mut().expect("just made a table")
}

/// The edited `network.toml` text: `old` (or a first-boot skeleton) with the form applied.
/// Absent fields leave their part unchanged, so the API may send only what it changes.
pub fn edited_text(old: Option<&Network>, f: &Fields) -> String {
    let base = old.map(netcfg::to_toml).unwrap_or_else(|| {
        "country = \"\"\n\n[hotspot]\ninterface = \"wlan0\"\n\n[ethernet]\ninterface = \"eth0\"\nmode = \"dhcp\"\n".into()
    });
    let mut doc: DocumentMut = base.parse().unwrap_or_default();
    if f.contains_key("country") {
        doc["country"] = value(field(f, "country").to_ascii_uppercase());
    }
    if f.contains_key("hotspot_ssid") {
        let h = table(&mut doc, "hotspot");
        if !h.contains_key("interface") {
            h["interface"] = value("wlan0");
        }
        // Absent: unchanged (the API); the page sends "off" for an unticked box.
        if f.contains_key("hotspot_enabled") {
            h["enabled"] = value(matches!(field(f, "hotspot_enabled"), "on" | "true"));
        }
        h["ssid"] = value(f["hotspot_ssid"].as_str());
        h["channel"] = int_or_text(field(f, "hotspot_channel"));
        // Write-only: empty keeps the current passphrase (already in the text).
        let p = f
            .get("hotspot_passphrase")
            .map(String::as_str)
            .unwrap_or("");
        if !p.is_empty() {
            h["passphrase"] = value(p);
        }
    }
    if f.contains_key("wifi_interface") || f.keys().any(|k| k.starts_with("net")) {
        edit_wifi(&mut doc, old, f);
    }
    if f.contains_key("ethernet_mode") {
        let e = table(&mut doc, "ethernet");
        if !e.contains_key("interface") {
            e["interface"] = value("eth0");
        }
        for k in ["address", "gateway", "dns"] {
            e.remove(k);
        }
        match field(f, "ethernet_mode") {
            "off" => e["enabled"] = value(false),
            mode => {
                e["enabled"] = value(true);
                e["mode"] = value(mode);
                if mode == "static" {
                    e["address"] = value(field(f, "ethernet_address"));
                    let gw = field(f, "ethernet_gateway");
                    if !gw.is_empty() {
                        e["gateway"] = value(gw);
                    }
                    let mut dns = toml_edit::Array::new();
                    for d in field(f, "ethernet_dns")
                        .split([',', ' '])
                        .filter(|d| !d.is_empty())
                    {
                        dns.push(d);
                    }
                    e["dns"] = value(dns);
                }
            }
        }
    }
    if f.contains_key("cellular_apn") {
        let apn = field(f, "cellular_apn");
        if !apn.is_empty() || doc.contains_table("cellular") {
            let c = table(&mut doc, "cellular");
            if !c.contains_key("device") {
                c["device"] = value("/dev/ttyUSB2");
            }
            c["enabled"] = value(!apn.is_empty());
            c["apn"] = value(if apn.is_empty() { "internet" } else { apn });
        }
    }
    doc.to_string()
}

/// Rows `net{i}_ssid/_passphrase/_priority/_remove`, replacing `[[wifi.networks]]`. A row's
/// empty passphrase keeps that SSID's current one; a new SSID without one is an open network.
fn edit_wifi(doc: &mut DocumentMut, old: Option<&Network>, f: &Fields) {
    let old_nets = old.and_then(|o| o.wifi.as_ref());
    let mut nets = toml_edit::ArrayOfTables::new();
    for i in 0..MAX_WIFI_NETWORKS {
        let ssid = f
            .get(&format!("net{i}_ssid"))
            .map(String::as_str)
            .unwrap_or("");
        if ssid.trim().is_empty() || field(f, &format!("net{i}_remove")) == "on" {
            continue;
        }
        let mut t = Table::new();
        t["ssid"] = value(ssid);
        let p = f
            .get(&format!("net{i}_passphrase"))
            .map(String::as_str)
            .unwrap_or("");
        let kept = old_nets
            .and_then(|w| w.networks.iter().find(|n| n.client.ssid.as_str() == ssid))
            .map(|n| n.client.password.as_str().to_owned())
            .filter(|p| !p.is_empty());
        if let Some(p) = (!p.is_empty()).then(|| p.to_owned()).or(kept) {
            t["passphrase"] = value(p);
        }
        let prio = field(f, &format!("net{i}_priority"));
        t["priority"] = int_or_text(if prio.is_empty() { "0" } else { prio });
        nets.push(t);
    }
    let w = table(doc, "wifi");
    let iface = field(f, "wifi_interface");
    if !iface.is_empty() {
        w["interface"] = value(iface);
    } else if !w.contains_key("interface") {
        w["interface"] = value("wlan1");
    }
    w.remove("networks");
    if nets.is_empty() {
        doc.remove("wifi");
    } else {
        w["networks"] = Item::ArrayOfTables(nets);
    }
}

/// What a save or apply did, for the page and the API.
#[derive(Debug, Default, serde::Serialize)]
pub struct Outcome {
    pub saved: bool,
    pub errors: Vec<String>,
    /// `netcfg::apply`'s report: files written, services restarted, failures.
    pub applied: Option<Value>,
}

fn errors(e: &ConfigErrors) -> Vec<String> {
    e.0.iter().map(ConfigError::to_string).collect()
}

/// Validate the edit, save it, and apply it if asked; one at a time (the web's edit lock).
pub async fn save(web: &Web, ip: IpAddr, f: Fields, apply: bool) -> Result<Outcome, WebError> {
    let _guard = web.edit_lock.lock().await;
    let path = path(web);
    let device = web.host.can_set_clock();
    let p = path.clone();
    let (outcome, detail) = tokio::task::spawn_blocking(move || {
        let old = match current(&p) {
            Ok(o) => o,
            Err(e) => {
                return Outcome {
                    errors: errors(&e),
                    ..Outcome::default()
                };
            }
        };
        let text = edited_text(old.as_ref(), &f);
        let new = match netcfg::parse(&text) {
            Ok(n) => n,
            Err(e) => {
                return Outcome {
                    errors: errors(&e),
                    ..Outcome::default()
                };
            }
        };
        if let Err(e) = netcfg::save(&p, &new) {
            return Outcome {
                errors: vec![e.to_string()],
                ..Outcome::default()
            };
        }
        let mut out = Outcome {
            saved: true,
            ..Outcome::default()
        };
        if apply {
            out.applied = Some(run_apply(&new, device));
        }
        out
    })
    .await
    .map(|o| {
        let d = format!(
            "{} ({})",
            path.display(),
            if apply { "saved and applied" } else { "saved" }
        );
        (o, d)
    })
    .map_err(|e| WebError::Internal(e.to_string()))?;
    if outcome.saved {
        web.audit(
            ip,
            if apply {
                "network.apply"
            } else {
                "network.save"
            },
            detail,
        )
        .await;
    }
    Ok(outcome)
}

/// `netcfg::apply` through `netcfg::Host`. A gateway that does not manage its machine
/// (`[web] manage_clock` off, i.e. a laptop) refuses to write under `/`.
fn run_apply(n: &Network, device: bool) -> Value {
    if !device && n.system.root == std::path::Path::new("/") {
        return json!({"ok": false, "error": "not applied: this gateway does not manage the machine ([web] manage_clock is off) and network.toml's [system] root is /; set root to a directory to try it on a laptop"});
    }
    let mut host = netcfg::Host::new(&n.system);
    match netcfg::apply(n, &mut host) {
        Ok(r) => json!({
            "ok": r.ok(),
            "written": r.written,
            "removed": r.removed,
            "restarted": r.restarted.iter().map(|s| s.name()).collect::<Vec<_>>(),
            "stopped": r.stopped.iter().map(|s| s.name()).collect::<Vec<_>>(),
            "failed": r.failed.iter().map(|(s, e)| format!("{}: {e}", s.name())).collect::<Vec<_>>(),
        }),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    }
}

/// Access points heard on `interface` (default: the Wi-Fi client's, else the hotspot's
/// radio), one per name, strongest first; the error as text when it fails (no radio, no `iw`).
pub async fn scan(web: &Web, interface: Option<String>) -> Result<Vec<ScanResult>, String> {
    let path = path(web);
    tokio::task::spawn_blocking(move || {
        let n = current(&path).map_err(|e| e.to_string())?;
        let settings = n.as_ref().map(|n| n.system.clone()).unwrap_or_default();
        let iface = interface
            .filter(|i| !i.is_empty())
            .or_else(|| n.as_ref()?.wifi.as_ref().map(|w| w.interface.clone()))
            .or_else(|| n.as_ref()?.hotspot.as_ref().map(|h| h.interface.clone()))
            .unwrap_or_else(|| "wlan0".into());
        let mut host = netcfg::Host::new(&settings);
        netcfg::System::scan(&mut host, &iface)
            .map(|r| netcfg::scan::networks(&r))
            .map_err(|e| format!("scan of {iface} failed: {e}"))
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()))
}

#[derive(serde::Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    scan: Option<String>,
}

async fn render(
    web: &Web,
    ctx: &Ctx,
    outcome: Option<&Outcome>,
    scan_result: Option<Result<Vec<ScanResult>, String>>,
) -> Result<Response, WebError> {
    let path = path(web);
    let p = path.clone();
    let loaded = tokio::task::spawn_blocking(move || current(&p))
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?;
    let (n, load_errors) = match loaded {
        Ok(n) => (n.as_ref().map(view), vec![]),
        Err(e) => (None, errors(&e)),
    };
    let (scan, scan_error) = match scan_result {
        Some(Ok(r)) => (Some(r), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    let mut errs = load_errors;
    if let Some(o) = outcome {
        errs.extend(o.errors.iter().cloned());
    }
    let notice = outcome.filter(|o| o.saved).map(|o| match &o.applied {
        None => "Saved. Press Apply to write the files and restart the services.".to_owned(),
        Some(a) if a["ok"] == true => "Saved and applied.".to_owned(),
        Some(_) => "Saved, but applying failed (see below).".to_owned(),
    });
    super::pages::page(
        web,
        "network.html",
        ctx,
        "network",
        context! {
            file => path.display().to_string(),
            n => n,
            errors => errs,
            notice => notice,
            applied => outcome.and_then(|o| o.applied.clone()),
            scan => scan,
            scan_error => scan_error,
            rows => MAX_WIFI_NETWORKS,
        },
    )
}

/// `GET /network` (`?scan=1` also lists the networks in range).
pub async fn page(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<PageQuery>,
) -> Result<Response, WebError> {
    let s = match q.scan {
        Some(_) => Some(scan(&web, None).await),
        None => None,
    };
    render(&web, &ctx, None, s).await
}

/// `POST /network`: `action=save` or `action=apply`.
pub async fn page_save(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Form(mut f): Form<Fields>,
) -> Result<Response, WebError> {
    f.remove("csrf");
    let apply = f.remove("action").as_deref() == Some("apply");
    // A browser leaves an unticked checkbox out.
    f.entry("hotspot_enabled".into())
        .or_insert_with(|| "off".into());
    let outcome = save(&web, ctx.ip, f, apply).await?;
    let mut resp = render(&web, &ctx, Some(&outcome), None).await?;
    if !outcome.errors.is_empty() {
        *resp.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(resp)
}

/// `GET /api/v1/network`
pub async fn api_get(State(web): State<Shared>) -> Response {
    let path = path(&web);
    let p = path.clone();
    let loaded = tokio::task::spawn_blocking(move || current(&p)).await;
    match loaded {
        Ok(Ok(n)) => Json(json!({"file": path, "network": n.as_ref().map(view)})).into_response(),
        Ok(Err(e)) => (
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"file": path, "errors": errors(&e)})),
        )
            .into_response(),
        Err(e) => WebError::Internal(e.to_string()).into_response(),
    }
}

/// `PUT /api/v1/network`: the form's fields as a JSON object of strings, plus `"apply": true`
/// to apply after saving. 422 with `errors` when invalid (nothing saved).
pub async fn api_put(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Json(body): Json<BTreeMap<String, Value>>,
) -> Result<Response, WebError> {
    let apply = body.get("apply").and_then(Value::as_bool).unwrap_or(false);
    let f: Fields = body
        .into_iter()
        .filter(|(k, _)| k != "apply")
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s,
                Value::Bool(b) => {
                    if b {
                        "on".into()
                    } else {
                        String::new()
                    }
                }
                other => other.to_string(),
            };
            (k, s)
        })
        .collect();
    let outcome = save(&web, ctx.ip, f, apply).await?;
    let status = if outcome.errors.is_empty() {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((status, Json(outcome)).into_response())
}

#[derive(serde::Deserialize)]
pub struct ScanQuery {
    #[serde(default)]
    interface: Option<String>,
}

/// `GET /api/v1/network/scan[?interface=wlan1]`: 503 with the error when scanning fails.
pub async fn api_scan(State(web): State<Shared>, Query(q): Query<ScanQuery>) -> Response {
    match scan(&web, q.interface).await {
        Ok(r) => Json(json!({"networks": r})).into_response(),
        Err(e) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": e})),
        )
            .into_response(),
    }
}
