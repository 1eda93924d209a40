//! The pages: each handler gathers its figures (through the store's queries and the same
//! functions the CLI uses) and renders a template compiled into the binary.

use super::edit::{self, EditError};
use super::{Ctx, Shared, Web, WebError, auth, cookie, set_cookie};
use crate::config::{Config, Transport};
use crate::pipeline::RenderCtx;
use crate::store::history::SavedBy;
use crate::store::{RecordStatus, outbox, web as q};
use crate::tempr::{self, TemprKind, TemprSet};
use axum::Form;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

/// Every template, compiled into the binary.
pub fn templates() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    // "2026-11-22T04:15:59.493Z" → "2026-11-22 04:15:59" (UTC): short enough for a phone.
    env.add_filter("when", |t: String| -> String {
        let mut s: String = t.chars().take(19).collect();
        if s.len() > 10 {
            s.replace_range(10..11, " ");
        }
        s
    });
    env.add_filter("urlencode", |s: String| {
        minijinja::Value::from_safe_string(super::capture::urlencode(&s))
    });
    for (name, text) in [
        ("base.html", include_str!("templates/base.html")),
        ("login.html", include_str!("templates/login.html")),
        ("setup.html", include_str!("templates/setup.html")),
        ("dashboard.html", include_str!("templates/dashboard.html")),
        ("records.html", include_str!("templates/records.html")),
        ("record.html", include_str!("templates/record.html")),
        ("devices.html", include_str!("templates/devices.html")),
        (
            "device_form.html",
            include_str!("templates/device_form.html"),
        ),
        ("temprs.html", include_str!("templates/temprs.html")),
        ("tempr.html", include_str!("templates/tempr.html")),
        ("dhis2.html", include_str!("templates/dhis2.html")),
        ("system.html", include_str!("templates/system.html")),
        ("builder.html", include_str!("templates/builder.html")),
        ("network.html", include_str!("templates/network.html")),
        (
            "tempr_versions.html",
            include_str!("templates/tempr_versions.html"),
        ),
        (
            "tempr_version.html",
            include_str!("templates/tempr_version.html"),
        ),
        ("chains.html", include_str!("templates/chains.html")),
        (
            "tempr_version_list.html",
            include_str!("templates/tempr_version_list.html"),
        ),
        ("fridges.html", include_str!("templates/fridges.html")),
        ("reboot.html", include_str!("templates/reboot.html")),
        ("capture.html", include_str!("templates/capture.html")),
    ] {
        env.add_template(name, text)
            .expect("templates compiled into the binary parse");
    }
    env
}

pub async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("app.css"),
    )
        .into_response()
}

pub async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("app.js"),
    )
        .into_response()
}

fn now_utc() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Render a page with the values every page has (gateway name, CSRF token, active tab).
pub(super) fn page(
    web: &Web,
    name: &str,
    ctx: &Ctx,
    nav: &str,
    extra: minijinja::Value,
) -> Result<Response, WebError> {
    let base = context! { gateway => web.config().gateway.name, csrf => ctx.csrf, nav => nav };
    web.render(name, context! { ..extra, ..base })
}

// ---- login, first boot, logout ----------------------------------------------------------------

#[derive(serde::Deserialize)]
pub struct PasswordForm {
    password: String,
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    current: String,
}

/// A login/setup page with a fresh double-submit token in a cookie and the form.
fn pre_auth_page(
    web: &Web,
    headers: &HeaderMap,
    name: &str,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    // Keep the token the browser already holds: a second tab or a stray request (favicon) must
    // not invalidate the form that is open.
    let pre = cookie(headers, super::PRE_COOKIE)
        .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
        .unwrap_or_else(auth::random_token);
    let html = web.render(
        name,
        context! { gateway => web.config().gateway.name, pre => pre, error => error, min => auth::MIN_PASSWORD_CHARS },
    );
    match html {
        Ok(mut r) => {
            *r.status_mut() = status;
            r.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(web, super::PRE_COOKIE, &pre, None),
            );
            r
        }
        Err(e) => e.into_response(),
    }
}

pub async fn login_page(State(web): State<Shared>, headers: HeaderMap) -> Response {
    pre_auth_page(&web, &headers, "login.html", StatusCode::OK, None)
}

fn start_session(web: &Web, ip: IpAddr) -> Response {
    let id = web.auth.create(ip, Instant::now());
    let mut r = Redirect::to("/").into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(web, super::SESSION_COOKIE, &id, None),
    );
    r
}

pub async fn login(
    State(web): State<Shared>,
    Extension(ip): Extension<IpAddr>,
    headers: HeaderMap,
    Form(f): Form<PasswordForm>,
) -> Response {
    let now = Instant::now();
    if let Some(l) = web.auth.locked(ip, now) {
        let minutes = l.retry_after.as_secs().div_ceil(60);
        let mut r = pre_auth_page(
            &web,
            &headers,
            "login.html",
            StatusCode::TOO_MANY_REQUESTS,
            Some(format!(
                "Too many wrong passwords from this address. Try again in {minutes} minute(s)."
            )),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, l.retry_after.as_secs().max(1).into());
        return r;
    }
    let hash = match web.read(q::admin_hash).await {
        Ok(Some(h)) => h,
        Ok(None) => return Redirect::to("/setup").into_response(),
        Err(e) => return e.into_response(),
    };
    let password = f.password;
    let ok = tokio::task::spawn_blocking(move || auth::verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    if ok {
        web.auth.succeeded(ip);
        start_session(&web, ip)
    } else {
        web.auth.failed(ip, now);
        tracing::warn!(%ip, "wrong admin password");
        pre_auth_page(
            &web,
            &headers,
            "login.html",
            StatusCode::UNAUTHORIZED,
            Some("Wrong password.".into()),
        )
    }
}

pub async fn setup_page(State(web): State<Shared>, headers: HeaderMap) -> Response {
    pre_auth_page(&web, &headers, "setup.html", StatusCode::OK, None)
}

async fn store_password(
    web: &Web,
    password: String,
    by: &'static str,
    ip: IpAddr,
) -> Result<(), WebError> {
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?
        .map_err(WebError::Internal)?;
    let actor = ip.to_string();
    let stored = web
        .store
        .write(move |tx| {
            // Two first-boot forms sent at once: the writer thread serialises them, the first wins.
            if by == "setup" && q::admin_hash(tx)?.is_some() {
                return Ok(false);
            }
            q::set_admin_hash(tx, &hash, by)?;
            q::audit(tx, &actor, "password.set", by)?;
            Ok(true)
        })
        .await?;
    if stored {
        Ok(())
    } else {
        Err(WebError::BadRequest(
            "a password was set meanwhile; log in with it".into(),
        ))
    }
}

pub async fn setup(
    State(web): State<Shared>,
    Extension(ip): Extension<IpAddr>,
    headers: HeaderMap,
    Form(f): Form<PasswordForm>,
) -> Response {
    if let Some(why) = auth::weak_password(&f.password, &f.confirm) {
        return pre_auth_page(
            &web,
            &headers,
            "setup.html",
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(why),
        );
    }
    // The guard let this through only while no password exists.
    if let Err(e) = store_password(&web, f.password, "setup", ip).await {
        return e.into_response();
    }
    start_session(&web, ip)
}

pub async fn logout(State(web): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers, super::SESSION_COOKIE) {
        web.auth.end(id);
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&web, super::SESSION_COOKIE, "", Some(0)),
    );
    r
}

// ---- dashboard -----------------------------------------------------------------------------------

#[derive(Serialize)]
pub struct SourceRow {
    pub id: String,
    pub protocol: &'static str,
    pub enabled: bool,
    /// `listening on …`, `connecting to …`, `serial …`, `disabled`, `not configured`.
    pub state: String,
    pub state_class: &'static str,
    pub last_received: Option<String>,
    pub today: i64,
    pub errors_today: i64,
    pub total: i64,
}

/// One `[[destinations]]` lane as the dashboard shows it (pipeline/dest.rs keeps the state).
#[derive(Serialize)]
pub struct DestinationRow {
    pub id: String,
    pub kind: &'static str,
    pub enabled: bool,
    /// `up`, `down: <why>` or `unknown` (nothing sent yet).
    pub link: String,
    pub paused: Option<String>,
    pub pending: i64,
    pub rejected: i64,
}

/// What the dashboard and `GET /api/v1/status` show.
#[derive(Serialize)]
pub struct Status {
    pub gateway: String,
    pub version: &'static str,
    pub time: String,
    pub uptime_s: u64,
    pub sources: Vec<SourceRow>,
    pub messages: Vec<(String, i64)>,
    pub outbox: Vec<(String, i64)>,
    pub dhis2_configured: bool,
    pub link: String,
    pub paused: Option<String>,
    pub server_version: Option<String>,
    pub last_delivery: Option<String>,
    pub destinations: Vec<DestinationRow>,
    pub days: Vec<q::Day>,
    /// The last message commit that failed (why devices are being NAKed).
    pub store_failure: Option<crate::store::CommitFailure>,
    /// Free space of the data directory's file system.
    pub disk: Option<super::disk::Space>,
}

pub async fn status(web: &Web) -> Result<Status, WebError> {
    let config = web.config();
    let now = now_utc();
    let today = rfc3339(now)[..10].to_owned();
    let dates: Vec<String> = (0..14)
        .rev()
        .map(|d| rfc3339(now - time::Duration::days(d))[..10].to_owned())
        .collect();
    let lanes: Vec<(String, &'static str, bool)> = config
        .destinations
        .iter()
        .map(|d| (d.id.0.clone(), d.kind().name(), d.enabled))
        .collect();
    #[allow(clippy::type_complexity)]
    let (stats, messages, ob, link, paused, version, last, days, destinations): (
        Vec<q::SourceStats>,
        _,
        _,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Vec<q::Day>,
        Vec<DestinationRow>,
    ) = web
        .read(move |c| {
            let mut destinations = Vec::with_capacity(lanes.len());
            for (id, kind, enabled) in lanes {
                let (pending, rejected) = outbox::lane_counts(c, &id)?;
                destinations.push(DestinationRow {
                    link: outbox::get_state(c, &crate::pipeline::dest::link_key(&id))?
                        .unwrap_or_else(|| "unknown".into()),
                    paused: outbox::get_state(c, &crate::pipeline::dest::paused_key(&id))?,
                    id,
                    kind,
                    enabled,
                    pending,
                    rejected,
                });
            }
            Ok((
                q::source_stats(c, &today)?,
                q::message_counts(c)?,
                outbox::outbox_counts(c)?,
                outbox::get_state(c, "link")?,
                outbox::get_state(c, "paused")?,
                outbox::get_state(c, "server_version")?,
                q::last_delivery(c)?,
                q::daily(c, &dates)?,
                destinations,
            ))
        })
        .await?;
    let listening = web.listening();
    let mut sources: Vec<SourceRow> = config
        .sources
        .iter()
        .map(|s| {
            let (state, class) = if !s.enabled {
                ("disabled".to_owned(), "off")
            } else {
                match &s.transport {
                    Transport::TcpServer { listen } => {
                        match listening.iter().find(|(id, _)| id == &s.id) {
                            Some((_, a)) => (format!("listening on {a}"), "listening"),
                            None => (format!("cannot listen on {listen} yet"), "down"),
                        }
                    }
                    Transport::TcpClient { connect, .. } => {
                        (format!("connecting to {connect}"), "on")
                    }
                    Transport::Serial(p) => (format!("serial {}", p.port), "on"),
                    Transport::Mqtt(m) => (format!("broker {}:{}", m.host, m.port), "on"),
                    Transport::Folder(f) => (format!("folder {}", f.path.display()), "on"),
                }
            };
            let st = stats
                .iter()
                .find(|x| x.source == s.id.0)
                .cloned()
                .unwrap_or_default();
            SourceRow {
                id: s.id.0.clone(),
                protocol: s.protocol.name(),
                enabled: s.enabled,
                state,
                state_class: class,
                last_received: st.last_received,
                today: st.today,
                errors_today: st.errors_today,
                total: st.total,
            }
        })
        .collect();
    // Sources removed from the config still have records worth seeing.
    for st in stats
        .iter()
        .filter(|x| !config.sources.iter().any(|s| s.id.0 == x.source))
    {
        sources.push(SourceRow {
            id: st.source.clone(),
            protocol: "",
            enabled: false,
            state: "not configured".into(),
            state_class: "off",
            last_received: st.last_received.clone(),
            today: st.today,
            errors_today: st.errors_today,
            total: st.total,
        });
    }
    Ok(Status {
        gateway: config.gateway.name.clone(),
        version: env!("CARGO_PKG_VERSION"),
        time: rfc3339(now),
        uptime_s: web.started.elapsed().as_secs(),
        sources,
        messages,
        outbox: ob,
        dhis2_configured: config.dhis2.is_some(),
        link: link.unwrap_or_else(|| "unknown".into()),
        paused,
        server_version: version,
        last_delivery: last,
        destinations,
        days,
        store_failure: web.store.last_failure(),
        disk: super::disk::space(&config.gateway.data_dir),
    })
}

/// Bars of received/delivered per day and a line of the backlog, as inline SVG.
pub fn chart(days: &[q::Day]) -> String {
    let (w, h, pad) = (700.0_f64, 180.0_f64, 20.0_f64);
    let max = days
        .iter()
        .map(|d| d.received.max(d.delivered).max(d.backlog))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let n = days.len().max(1) as f64;
    let slot = (w - 2.0 * pad) / n;
    let y = |v: i64| h - pad - (v as f64 / max) * (h - 2.0 * pad);
    let mut s = format!(
        "<svg viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"received, delivered and waiting per day\">\
         <line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\"/>",
        h - pad,
        w - pad,
        h - pad
    );
    let mut line = Vec::new();
    for (i, d) in days.iter().enumerate() {
        let x = pad + i as f64 * slot;
        let bw = slot * 0.38;
        s += &format!(
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{:.1}\" fill=\"#1f6feb\"><title>{} received {}</title></rect>",
            y(d.received),
            h - pad - y(d.received),
            d.date,
            d.received
        );
        s += &format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{:.1}\" fill=\"#1a7f37\"><title>{} delivered {}</title></rect>",
            x + bw,
            y(d.delivered),
            h - pad - y(d.delivered),
            d.date,
            d.delivered
        );
        line.push(format!("{:.1},{:.1}", x + bw, y(d.backlog)));
        if i % 2 == 0 {
            s += &format!(
                "<text x=\"{x:.1}\" y=\"{}\" font-size=\"11\">{}</text>",
                h - 4.0,
                &d.date[5..]
            );
        }
    }
    s += &format!(
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#bf8700\" stroke-width=\"2\"/>\
         <text x=\"{pad}\" y=\"12\" font-size=\"11\">max {max}</text></svg>",
        line.join(" ")
    );
    s
}

pub async fn dashboard(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Query(window): Query<super::charts::Window>,
) -> Result<Response, WebError> {
    let s = status(&web).await?;
    let fridges = super::charts::dashboard(&web, &window).await?;
    page(
        &web,
        "dashboard.html",
        &ctx,
        "dashboard",
        context! {
            chart => chart(&s.days), days => s.days, sources => s.sources, messages => s.messages,
            outbox => s.outbox, dhis2 => s.dhis2_configured, link => s.link, paused => s.paused,
            server_version => s.server_version, last_delivery => s.last_delivery,
            destinations => s.destinations,
            store_failure => s.store_failure, disk => s.disk, fridges => fridges,
        },
    )
}

// ---- records -------------------------------------------------------------------------------------

pub async fn records(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Query(search): Query<q::Search>,
) -> Result<Response, WebError> {
    let s2 = search.clone();
    let rows = web
        .read(move |c| q::search(c, &s2, super::PAGE_ROWS))
        .await?;
    let mut ids: Vec<String> = web
        .config()
        .sources
        .iter()
        .map(|s| s.id.0.clone())
        .collect();
    for r in &rows {
        if !ids.contains(&r.source) {
            ids.push(r.source.clone());
        }
    }
    let statuses: Vec<&str> = RecordStatus::ALL.iter().map(|s| s.as_str()).collect();
    let query = serde_urlencoded::to_string(&search).unwrap_or_default();
    page(
        &web,
        "records.html",
        &ctx,
        "records",
        context! { rows => rows, q => search, source_ids => ids, statuses => statuses, query => query },
    )
}

fn csv_field(s: &str) -> String {
    // A leading = + - @ would be a formula in a spreadsheet: quote it with a tab guard.
    let guarded = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

/// One CSV line per observation of every matching record.
pub async fn records_csv(
    State(web): State<Shared>,
    Query(search): Query<q::Search>,
) -> Result<Response, WebError> {
    let rows = web
        .read(move |c| {
            let rows = q::search(c, &search, super::MAX_EXPORT_ROWS)?;
            let mut out = String::from(
                "record,received_at,source,status,sample_id,patient_id,test_code,value,unit,flags,error\n",
            );
            for r in rows {
                let obs = outbox::message(c, crate::record::RecordId(r.id))?
                    .map(|m| m.observations)
                    .unwrap_or_default();
                let error = r.error.clone().unwrap_or_default();
                let mut line = |o: Option<&crate::record::Observation>| {
                    let f = |v: Option<&String>| v.map(|s| csv_field(s)).unwrap_or_default();
                    out += &format!(
                        "{},{},{},{},{},{},{},{},{},{},{}\n",
                        r.id,
                        r.received_at,
                        csv_field(&r.source),
                        r.status,
                        f(o.and_then(|o| o.sample_id.as_ref())),
                        f(o.and_then(|o| o.patient_id.as_ref())),
                        f(o.map(|o| &o.test_code)),
                        f(o.and_then(|o| o.value.as_ref())),
                        f(o.and_then(|o| o.unit.as_ref())),
                        csv_field(&o.map(|o| o.flags.join(" ")).unwrap_or_default()),
                        csv_field(&error),
                    );
                };
                if obs.is_empty() {
                    line(None);
                }
                for o in &obs {
                    line(Some(o));
                }
            }
            Ok(out)
        })
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"records.csv\"",
            ),
        ],
        rows,
    )
        .into_response())
}

/// Raw bytes made readable: control characters by name (`<STX>`), other bytes as `<xx>`.
pub fn show_bytes(bytes: &[u8]) -> String {
    const NAMES: [&str; 32] = [
        "NUL", "SOH", "STX", "ETX", "EOT", "ENQ", "ACK", "BEL", "BS", "TAB", "LF", "VT", "FF",
        "CR", "SO", "SI", "DLE", "DC1", "DC2", "DC3", "DC4", "NAK", "SYN", "ETB", "CAN", "EM",
        "SUB", "ESC", "FS", "GS", "RS", "US",
    ];
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        match b {
            b'\n' => s.push_str("<LF>\n"),
            b'\r' => s.push_str("<CR>\n"),
            0..=31 => {
                s.push('<');
                s.push_str(NAMES[b as usize]);
                s.push('>');
            }
            32..=126 => s.push(b as char),
            _ => s.push_str(&format!("<{b:02x}>")),
        }
    }
    s
}

pub async fn record(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    let r = web
        .read(move |c| q::record(c, id))
        .await?
        .ok_or_else(|| WebError::NotFound(format!("record {id}")))?;
    let text = show_bytes(&r.wire);
    page(
        &web,
        "record.html",
        &ctx,
        "records",
        context! { r => r, text => text },
    )
}

/// Re-render one record with the current Temprs (`pocketgate rerender`, for one id).
pub async fn rerender(web: &Web, ip: IpAddr, id: i64) -> Result<usize, WebError> {
    let n = web
        .store
        .write(move |tx| outbox::rerender_ids(tx, &[id]))
        .await?;
    web.audit(ip, "record.rerender", format!("record {id}"))
        .await;
    Ok(n)
}

/// Send a rejected record's requests again unchanged.
pub async fn retry(web: &Web, ip: IpAddr, id: i64) -> Result<usize, WebError> {
    let n = web.store.write(move |tx| q::retry_rejected(tx, id)).await?;
    web.audit(ip, "record.retry", format!("record {id}: {n} request(s)"))
        .await;
    Ok(n)
}

pub async fn record_retry(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    retry(&web, ctx.ip, id).await?;
    Ok(Redirect::to(&format!("/records/{id}")).into_response())
}

pub async fn record_rerender(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    rerender(&web, ctx.ip, id).await?;
    Ok(Redirect::to(&format!("/records/{id}")).into_response())
}

// ---- devices -------------------------------------------------------------------------------------

fn connection(t: &Transport) -> String {
    match t {
        Transport::TcpServer { listen } => format!("listens on {listen}"),
        Transport::TcpClient { connect, .. } => format!("connects to {connect}"),
        Transport::Serial(s) => format!("serial {} {} baud", s.port, s.baud),
        Transport::Mqtt(m) => format!("subscribes on {}:{}", m.host, m.port),
        Transport::Folder(f) => format!("reads {} ({})", f.path.display(), f.pattern),
    }
}

/// Serial ports present now, with their USB ids when known.
pub fn serial_ports() -> Vec<(String, String)> {
    serialport::available_ports()
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let label = match &p.port_type {
                serialport::SerialPortType::UsbPort(u) => format!(
                    "{} (USB {:04x}:{:04x} {} {})",
                    p.port_name,
                    u.vid,
                    u.pid,
                    u.manufacturer.clone().unwrap_or_default(),
                    u.product.clone().unwrap_or_default()
                ),
                _ => p.port_name.clone(),
            };
            (p.port_name, label)
        })
        .collect()
}

pub async fn devices(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Response, WebError> {
    let config = web.config();
    let sources: Vec<Value> = config
        .sources
        .iter()
        .map(|s| json!({"id": s.id.0, "protocol": s.protocol.name(), "enabled": s.enabled, "connection": connection(&s.transport),
            "serial_port": match &s.transport { Transport::Serial(p) if !p.port.is_empty() => Some(p.port.clone()), _ => None }}))
        .collect();
    let ports = serial_ports();
    page(
        &web,
        "devices.html",
        &ctx,
        "devices",
        context! { sources => sources, ports => ports },
    )
}

/// The form values of a configured source, read back from the file's own text.
fn source_form(web: &Web, id: &str) -> Option<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(&web.config_path).ok()?;
    let doc: toml::Table = toml::from_str(&text).ok()?;
    let list = doc.get("sources")?.as_array()?;
    let t = list
        .iter()
        .filter_map(|v| v.as_table())
        .find(|t| t.get("id").and_then(|v| v.as_str()) == Some(id))?;
    Some(
        t.iter()
            .map(|(k, v)| {
                let s = match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), s)
            })
            .collect(),
    )
}

fn device_form(
    web: &Web,
    ctx: &Ctx,
    original: Option<&str>,
    f: &BTreeMap<String, String>,
    errors: Vec<String>,
    status: StatusCode,
) -> Result<Response, WebError> {
    let port_names: Vec<String> = serial_ports().into_iter().map(|(n, _)| n).collect();
    let mut r = page(
        web,
        "device_form.html",
        ctx,
        "devices",
        context! { original => original, f => f, port_names => port_names, errors => errors },
    )?;
    *r.status_mut() = status;
    Ok(r)
}

pub async fn device_new(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Response, WebError> {
    let f = BTreeMap::from([
        ("protocol".to_owned(), "astm".to_owned()),
        ("transport".to_owned(), "tcp-server".to_owned()),
    ]);
    device_form(&web, &ctx, None, &f, Vec::new(), StatusCode::OK)
}

pub async fn device_edit(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let f = source_form(&web, &id).ok_or_else(|| WebError::NotFound(format!("source {id}")))?;
    device_form(&web, &ctx, Some(&id), &f, Vec::new(), StatusCode::OK)
}

/// Apply a config edit: on success audit it and reload; on failure nothing changed.
pub async fn apply_edit(
    web: &Web,
    ip: IpAddr,
    action: &'static str,
    detail: String,
    edit: impl FnOnce(&std::path::Path) -> Result<Config, EditError> + Send + 'static,
) -> Result<Config, EditError> {
    let _guard = web.edit_lock.lock().await;
    let path = web.config_path.clone();
    let result = tokio::task::spawn_blocking(move || edit(&path))
        .await
        .map_err(|e| EditError::Io(e.to_string()))?;
    if let Ok(config) = &result {
        // The pages read the new config at once (the redirect after a save must show it); the
        // reload then restarts what changed and updates the bound addresses.
        web.set_config(config.clone());
        web.audit(ip, action, detail).await;
        web.request_reload();
    }
    result
}

pub fn edit_errors(e: &EditError) -> Vec<String> {
    match e {
        EditError::Invalid(errors) => errors.iter().map(|e| e.to_string()).collect(),
        other => vec![other.to_string()],
    }
}

pub async fn device_save(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Form(mut f): Form<BTreeMap<String, String>>,
) -> Result<Response, WebError> {
    f.remove("csrf");
    let original = f.remove("original").filter(|s| !s.is_empty());
    let id = f.get("id").cloned().unwrap_or_default();
    let (action, detail) = match &original {
        Some(o) => ("source.edit", format!("source {o} → {id}")),
        None => ("source.add", format!("source {id}")),
    };
    let form = f.clone();
    let o2 = original.clone();
    match apply_edit(&web, ctx.ip, action, detail, move |p| {
        edit::save_source(p, o2.as_deref(), &form)
    })
    .await
    {
        Ok(_) => Ok(Redirect::to("/devices").into_response()),
        Err(e) => device_form(
            &web,
            &ctx,
            original.as_deref(),
            &f,
            edit_errors(&e),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    }
}

#[derive(serde::Deserialize)]
pub struct EnabledForm {
    enabled: String,
}

pub async fn device_enabled(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Form(f): Form<EnabledForm>,
) -> Result<Response, WebError> {
    let on = f.enabled == "true";
    let id2 = id.clone();
    apply_edit(
        &web,
        ctx.ip,
        "source.enabled",
        format!("source {id} enabled = {on}"),
        move |p| edit::set_enabled(p, &id2, on),
    )
    .await
    .map_err(|e| WebError::BadRequest(e.to_string()))?;
    Ok(Redirect::to("/devices").into_response())
}

// ---- Temprs --------------------------------------------------------------------------------------

fn load_temprs(config: &Config) -> (Option<std::path::PathBuf>, Result<TemprSet, Vec<String>>) {
    let Some(d) = &config.dhis2 else {
        return (None, Ok(TemprSet::default()));
    };
    let set = TemprSet::load_dir(&d.temprs_dir)
        .map_err(|errors| errors.iter().map(|e| e.to_string()).collect());
    (Some(d.temprs_dir.clone()), set)
}

pub async fn temprs(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Response, WebError> {
    let (dir, set) = load_temprs(&web.config());
    let (list, errors) = match set {
        Ok(set) => (temprs_json(&set), Vec::new()),
        Err(e) => (Vec::new(), e),
    };
    page(
        &web,
        "temprs.html",
        &ctx,
        "temprs",
        context! { dir => dir, temprs => list, load_errors => errors,
        chains => super::temprs::chains_of(&web) },
    )
}

pub fn temprs_json(set: &TemprSet) -> Vec<Value> {
    set.iter()
        .map(|t| {
            let kind = match &t.kind {
                TemprKind::Builder(_) => "builder",
                TemprKind::Template(_) => "template",
                TemprKind::Mustache(_) => "mustache",
                TemprKind::Script(_) => "script",
            };
            // Where its requests go: a `[[destinations]]` id, or DHIS2 and its endpoint.
            let sends_to = match &t.target {
                Some(target) => target.destination.clone(),
                None => format!("DHIS2 {}", serde_json::to_value(t.endpoint).unwrap_or_default().as_str().unwrap_or("")),
            };
            json!({"name": t.name, "version": t.version, "description": t.description, "enabled": t.enabled,
                   "kind": kind, "sends_to": sends_to, "matches": t.matcher.describe(), "next": t.next,
                   "file": t.source_file.file_name().map(|f| f.to_string_lossy().into_owned())})
        })
        .collect()
}

/// What a live test of a Tempr against a stored record shows.
#[derive(Serialize)]
pub struct TemprTest {
    pub matched: bool,
    pub request: Option<crate::record::Dhis2Request>,
    pub error: Option<String>,
    /// Local validation against the cached DHIS2 metadata; `None` = passes.
    pub validation: Option<String>,
}

/// Run one Tempr on one stored record, as the render stage would (no network).
pub async fn tempr_test(web: &Web, name: &str, record_id: i64) -> Result<TemprTest, WebError> {
    let config = web.config();
    let (_, set) = load_temprs(&config);
    let set = set.map_err(|e| WebError::BadRequest(e.join("; ")))?;
    let t = set
        .get(name)
        .ok_or_else(|| WebError::NotFound(format!("Tempr {name}")))?
        .clone();
    let m = web
        .read(move |c| outbox::message(c, crate::record::RecordId(record_id)))
        .await?
        .ok_or_else(|| WebError::NotFound(format!("record {record_id}")))?;
    let rc = RenderCtx {
        temprs: std::sync::Arc::new(TemprSet::default()),
        limits: tempr::Limits::default(),
        gateway: config.gateway.name.clone(),
        org_unit: config.dhis2.as_ref().and_then(|d| d.org_unit.clone()),
        metadata: Default::default(),
    };
    rc.load_metadata(&web.db);
    tokio::task::spawn_blocking(move || {
        let record = tempr::record_view(m.id.0, &m.source, &m.received_at, &m.observations);
        let matched = t.matcher.matches(&record);
        match tempr::apply(&t, &record, &rc.ctx(None), &rc.limits) {
            Ok(request) => TemprTest {
                matched,
                validation: rc.check(&request).err(),
                request: Some(request),
                error: None,
            },
            Err(e) => TemprTest {
                matched,
                request: None,
                error: Some(e.to_string()),
                validation: None,
            },
        }
    })
    .await
    .map_err(|e| WebError::Internal(e.to_string()))
}

#[derive(serde::Deserialize)]
pub struct TestQuery {
    record: Option<i64>,
}

pub async fn tempr(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    Query(tq): Query<TestQuery>,
) -> Result<Response, WebError> {
    tempr_page(
        &web,
        &ctx,
        &name,
        tq.record,
        None,
        Vec::new(),
        StatusCode::OK,
    )
    .await
}

async fn tempr_page(
    web: &Web,
    ctx: &Ctx,
    name: &str,
    record: Option<i64>,
    text: Option<String>,
    errors: Vec<String>,
    status: StatusCode,
) -> Result<Response, WebError> {
    let (_, set) = load_temprs(&web.config());
    let set = set.map_err(|e| WebError::BadRequest(e.join("; ")))?;
    let t = set
        .get(name)
        .ok_or_else(|| WebError::NotFound(format!("Tempr {name}")))?;
    let file = t.source_file.clone();
    let text = match text {
        Some(t) => t,
        None => std::fs::read_to_string(&file).map_err(|e| WebError::Internal(e.to_string()))?,
    };
    let recent = web
        .read(|c| q::search(c, &q::Search::default(), 50))
        .await?;
    let record_id = record.or(recent.first().map(|r| r.id));
    let test = match record {
        Some(id) => Some(tempr_test(web, name, id).await?),
        None => None,
    };
    let versions = super::temprs::version_list(web, name).await?;
    let chains: Vec<_> = super::temprs::chains_of(web)
        .into_iter()
        .filter(|c| c.steps.iter().any(|s| s.name == name))
        .collect();
    let mut r = page(
        web,
        "tempr.html",
        ctx,
        "temprs",
        context! { name => name, file => file.display().to_string(), text => text, recent => recent,
        record_id => record_id, test => test, errors => errors, versions => versions,
        chains => chains },
    )?;
    *r.status_mut() = status;
    Ok(r)
}

#[derive(serde::Deserialize)]
pub struct TemprForm {
    text: String,
}

/// Check an edited Tempr file (alone and with the others: names, chains) and write it; the text
/// is kept as a new version (src/web/temprs.rs), whose number is returned (0 if not kept).
pub async fn save_tempr(
    web: &Web,
    ip: IpAddr,
    name: &str,
    text: &str,
    how: SavedBy,
) -> Result<i64, Vec<String>> {
    let config = web.config();
    let (_, set) = load_temprs(&config);
    let set = set?;
    let t = set
        .get(name)
        .ok_or_else(|| vec![format!("no Tempr {name}")])?;
    let file = t.source_file.clone();
    let edited = tempr::Tempr::parse(text, &file)
        .map_err(|errors| errors.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
    // As the gateway's start checks it: requests for a destination nothing sends to would
    // wait for ever.
    if let Some(e) = crate::app::unknown_destination(&config, &edited) {
        return Err(vec![e]);
    }
    let others: Vec<tempr::Tempr> = set
        .iter()
        .filter(|o| o.name != name)
        .cloned()
        .chain([edited])
        .collect();
    TemprSet::new(others)
        .map_err(|errors| errors.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
    let previous = {
        let _guard = web.edit_lock.lock().await;
        let previous = std::fs::read_to_string(&file).ok();
        super::write_atomic(&file, text.as_bytes()).map_err(|e| vec![e.to_string()])?;
        previous
    };
    let version = super::temprs::keep_version(web, ip, name, previous, text, how).await;
    let action = match how {
        SavedBy::Restore => "tempr.restore",
        _ => "tempr.edit",
    };
    let detail = match version {
        Some(v) => format!("Tempr {name} ({}) saved as version {v}", file.display()),
        None => format!("Tempr {name} ({})", file.display()),
    };
    web.audit(ip, action, detail).await;
    web.request_reload();
    Ok(version.unwrap_or(0))
}

pub async fn tempr_save(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    Form(f): Form<TemprForm>,
) -> Result<Response, WebError> {
    match save_tempr(&web, ctx.ip, &name, &f.text, SavedBy::Edit).await {
        Ok(_) => Ok(Redirect::to(&format!("/temprs/{name}")).into_response()),
        Err(errors) => {
            tempr_page(
                &web,
                &ctx,
                &name,
                None,
                Some(f.text),
                errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    }
}

// ---- other destinations --------------------------------------------------------------------------

/// Pause, resume or send now one `[[destinations]]` lane (pipeline/dest.rs reads `paused:<id>`
/// on each turn and wakes on the commit); returns a report.
pub async fn destination_do(
    web: &Web,
    ip: IpAddr,
    id: &str,
    action: &str,
) -> Result<String, WebError> {
    if !web.config().destinations.iter().any(|d| d.id.0 == id) {
        return Err(WebError::NotFound(format!(
            "destination {id:?} (not in [[destinations]])"
        )));
    }
    let key = crate::pipeline::dest::paused_key(id);
    let lane = id.to_owned();
    match action {
        "pause" => {
            web.store
                .write(move |tx| outbox::set_state(tx, &key, Some("paused from the web page")))
                .await?;
            web.audit(ip, "destination.pause", id.to_owned()).await;
            Ok(format!("{id} paused"))
        }
        "resume" => {
            web.store
                .write(move |tx| outbox::set_state(tx, &key, None))
                .await?;
            web.audit(ip, "destination.resume", id.to_owned()).await;
            Ok(format!("{id} resumed"))
        }
        "sync" => {
            let n = web
                .store
                .write(move |tx| q::lane_due_now(tx, &lane))
                .await?;
            Ok(format!("{id}: {n} pending request(s) are due now"))
        }
        other => Err(WebError::NotFound(format!(
            "destination action {other:?} (pause, resume or sync)"
        ))),
    }
}

/// The dashboard's buttons for one destination; back to the dashboard.
pub async fn destination_action(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Path((id, action)): Path<(String, String)>,
) -> Result<Response, WebError> {
    destination_do(&web, ctx.ip, &id, &action).await?;
    Ok(Redirect::to("/").into_response())
}

// ---- DHIS2 ---------------------------------------------------------------------------------------

/// Pause, resume, sync now, test the connection or refresh the metadata; returns a report.
pub async fn dhis2_do(web: &Web, ip: IpAddr, action: &str) -> Result<String, WebError> {
    let config = web.config();
    match action {
        "pause" => {
            web.store
                .write(|tx| outbox::set_state(tx, "paused", Some("paused from the web page")))
                .await?;
            web.audit(ip, "sync.pause", String::new()).await;
            Ok("sync paused".into())
        }
        "resume" => {
            web.store
                .write(|tx| outbox::set_state(tx, "paused", None))
                .await?;
            web.audit(ip, "sync.resume", String::new()).await;
            Ok("sync resumed".into())
        }
        "sync" => {
            let n = web.store.write(|tx| q::all_due_now(tx)).await?;
            Ok(format!("{n} pending request(s) are due now"))
        }
        "test" | "metadata" => {
            let d = config
                .dhis2
                .clone()
                .ok_or_else(|| WebError::BadRequest("no [dhis2] section".into()))?;
            let (rc, client) = (web.sync_parts)(&config, &d)
                .map_err(|e| WebError::BadRequest(format!("{e:#}")))?;
            if action == "test" {
                let info = client
                    .system_info()
                    .await
                    .map_err(|e| WebError::BadRequest(e.to_string()))?;
                let me = client
                    .me()
                    .await
                    .map_err(|e| WebError::BadRequest(e.to_string()))?;
                let ous: Vec<String> = me
                    .organisation_units
                    .iter()
                    .map(|(id, _)| id.clone())
                    .collect();
                Ok(format!(
                    "DHIS2 {} ({})\nsigned in as {}\norg units: {}",
                    info.version_text,
                    info.system_name.unwrap_or_default(),
                    me.username.unwrap_or(me.id),
                    if ous.is_empty() {
                        "none".into()
                    } else {
                        ous.join(", ")
                    }
                ))
            } else {
                let deliver =
                    crate::pipeline::Deliver::new(web.store.clone(), web.db.clone(), client, d, rc);
                deliver
                    .refresh_metadata()
                    .await
                    .map_err(WebError::BadRequest)?;
                web.audit(ip, "dhis2.metadata", "metadata refreshed".into())
                    .await;
                Ok("metadata refreshed".into())
            }
        }
        other => Err(WebError::NotFound(format!("action {other}"))),
    }
}

async fn dhis2_page(
    web: &Web,
    ctx: &Ctx,
    result: Option<(String, String)>,
    errors: Vec<String>,
    status: StatusCode,
) -> Result<Response, WebError> {
    let config = web.config();
    let (link, paused, version, metadata) = web
        .read(|c| {
            Ok((
                outbox::get_state(c, "link")?,
                outbox::get_state(c, "paused")?,
                outbox::get_state(c, "server_version")?,
                outbox::get_state(c, "metadata")?,
            ))
        })
        .await?;
    let metadata = metadata
        .and_then(|m| crate::sync::metadata::MetadataCache::from_json(m.as_bytes()).ok())
        .map(|m| {
            format!(
                "{} programs, {} data sets, {} org units",
                m.programs.len(),
                m.data_sets.len(),
                m.organisation_units.len()
            )
        });
    let d = config.dhis2.as_ref();
    let (auth_kind, username, secret_state) = match d.map(|d| &d.auth) {
        Some(crate::config::Dhis2Auth::Basic { username, .. }) => {
            ("basic", Some(username.clone()), "set (leave blank to keep)")
        }
        Some(crate::config::Dhis2Auth::Token(_)) => ("token", None, "set (leave blank to keep)"),
        None => ("token", None, "not set"),
    };
    let dj = d.map(|d| json!({"url": d.url, "org_unit": d.org_unit}));
    let mut r = page(
        web,
        "dhis2.html",
        ctx,
        "dhis2",
        context! { d => dj, link => link.unwrap_or_else(|| "unknown".into()), paused => paused,
        server_version => version, metadata => metadata, auth_kind => auth_kind,
        username => username, secret_state => secret_state, errors => errors,
        result => result.map(|(title, text)| json!({"title": title, "text": text})) },
    )?;
    *r.status_mut() = status;
    Ok(r)
}

pub async fn dhis2(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Response, WebError> {
    dhis2_page(&web, &ctx, None, Vec::new(), StatusCode::OK).await
}

pub async fn dhis2_action(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Path(action): Path<String>,
) -> Result<Response, WebError> {
    let title = format!("{action}:");
    match dhis2_do(&web, ctx.ip, &action).await {
        Ok(text) => dhis2_page(&web, &ctx, Some((title, text)), Vec::new(), StatusCode::OK).await,
        Err(WebError::BadRequest(e)) => {
            dhis2_page(
                &web,
                &ctx,
                Some((title, e)),
                Vec::new(),
                StatusCode::BAD_GATEWAY,
            )
            .await
        }
        Err(e) => Err(e),
    }
}

#[derive(serde::Deserialize)]
pub struct Dhis2Form {
    url: String,
    #[serde(default)]
    org_unit: String,
    auth: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    secret: String,
}

pub async fn dhis2_save(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Form(f): Form<Dhis2Form>,
) -> Result<Response, WebError> {
    let data_dir = web.config().gateway.data_dir.clone();
    let secret_changed = !f.secret.trim().is_empty();
    let e = edit::Dhis2Edit {
        url: f.url,
        org_unit: f.org_unit,
        auth: f.auth,
        username: f.username,
        secret: f.secret,
    };
    let detail = format!(
        "url {}, auth {}{}",
        e.url,
        e.auth,
        if secret_changed { ", new secret" } else { "" }
    );
    match apply_edit(&web, ctx.ip, "dhis2.edit", detail, move |p| {
        edit::save_dhis2(p, &data_dir, &e)
    })
    .await
    {
        Ok(_) => Ok(Redirect::to("/dhis2").into_response()),
        Err(e) => {
            dhis2_page(
                &web,
                &ctx,
                None,
                edit_errors(&e),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    }
}

// ---- System --------------------------------------------------------------------------------------

fn human_bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

/// The database, its WAL and shared-memory files, in bytes.
pub fn db_bytes(db: &std::path::Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok())
        .map(|m| m.len())
        .sum()
}

pub async fn system(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Response, WebError> {
    let (audit, total) = web
        .read(|c| {
            Ok((
                q::audit_recent(c, 50)?,
                q::message_counts(c)?.iter().map(|(_, n)| n).sum::<i64>(),
            ))
        })
        .await?;
    let now = now_utc();
    let up = web.started.elapsed().as_secs();
    page(
        &web,
        "system.html",
        &ctx,
        "system",
        context! { now => rfc3339(now), now_unix => now.unix_timestamp(), can_set_clock => web.host.can_set_clock(),
        db_path => web.db.display().to_string(), db_size => human_bytes(db_bytes(&web.db)), total => total,
        audit => audit, logs => super::logs::tail(), version => env!("CARGO_PKG_VERSION"),
        uptime => format!("{}h {}m", up / 3600, up / 60 % 60),
        metrics_token_set => web.config().web.is_some_and(|w| w.metrics_token.is_some()) },
    )
}

#[derive(serde::Deserialize)]
pub struct TimeForm {
    unix: i64,
}

/// Set the clock from the phone's (through the host seam) and note the jump in the audit log.
pub async fn set_time(web: &Web, ip: IpAddr, unix: i64) -> Result<(), WebError> {
    let before = now_utc().unix_timestamp();
    web.host.set_clock(unix).map_err(WebError::BadRequest)?;
    web.audit(
        ip,
        "system.time",
        format!(
            "clock set to {unix} (was {before}, moved {} s)",
            unix - before
        ),
    )
    .await;
    Ok(())
}

pub async fn system_time(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Form(f): Form<TimeForm>,
) -> Result<Response, WebError> {
    set_time(&web, ctx.ip, f.unix).await?;
    Ok(Redirect::to("/system").into_response())
}

pub async fn system_password(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Form(f): Form<PasswordForm>,
) -> Result<Response, WebError> {
    let hash = web.read(q::admin_hash).await?.unwrap_or_default();
    let current = f.current.clone();
    let ok = tokio::task::spawn_blocking(move || auth::verify_password(&current, &hash))
        .await
        .unwrap_or(false);
    if !ok {
        return Err(WebError::BadRequest("the current password is wrong".into()));
    }
    if let Some(why) = auth::weak_password(&f.password, &f.confirm) {
        return Err(WebError::BadRequest(why));
    }
    store_password(&web, f.password, "change", ctx.ip).await?;
    web.auth.end_all();
    Ok(Redirect::to("/login").into_response())
}
