//! The System page's **Reboot** button: `POST /system/reboot` runs `[system] reboot` from
//! network.toml (default `reboot`, which busybox and systemd both provide) through the
//! [`netcfg::System`] seam, after writing `system.reboot` to the audit log (once the command
//! runs, the process may be gone before it could write anything).
//!
//! Like **Save and apply** on the Network page, a gateway that does not manage its machine
//! (`[web] manage_clock` off: a laptop) refuses while `[system] root` is `/`, so trying the
//! page on a laptop never reboots it; tests point `root` at a temp dir and `reboot` at a
//! harmless command.

use super::host::Host;
use super::pages::page;
use super::{Ctx, Shared, WebError, network};
use crate::netcfg::{self, System, SystemSettings};
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use minijinja::context;

/// `[system]` of `<data_dir>/network.toml`, or the defaults when there is no file.
fn system_settings(path: &std::path::Path) -> Result<SystemSettings, WebError> {
    if !path.exists() {
        return Ok(SystemSettings::default());
    }
    netcfg::load(path)
        .map(|n| n.system)
        .map_err(|e| WebError::BadRequest(format!("{}: {e}", path.display())))
}

pub async fn reboot(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Response, WebError> {
    let path = network::path(&web);
    let settings = tokio::task::spawn_blocking(move || system_settings(&path))
        .await
        .map_err(|e| WebError::Internal(e.to_string()))??;
    if web.host != Host::Device && settings.root == std::path::Path::new("/") {
        return Err(WebError::BadRequest(
            "not rebooted: this gateway does not manage the machine ([web] manage_clock is off) \
             and network.toml's [system] root is /; reboot it from the operating system"
                .into(),
        ));
    }
    let command = settings.reboot.join(" ");
    web.audit(
        ctx.ip,
        "system.reboot",
        format!("reboot requested ({command})"),
    )
    .await;
    let ran = tokio::task::spawn_blocking(move || netcfg::Host::new(&settings).reboot())
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?;
    if let Err(e) = ran {
        let why = format!("the reboot command failed: {e}");
        web.audit(ctx.ip, "system.reboot", why.clone()).await;
        return Err(WebError::Internal(why));
    }
    tracing::warn!(command = %command, "rebooting at the web page's request");
    page(&web, "reboot.html", &ctx, "system", context! {})
}

#[derive(serde::Deserialize)]
pub struct MetricsTokenForm {
    token: String,
}

/// Most characters of a `/metrics` token (it travels in a header).
const MAX_TOKEN_CHARS: usize = 256;

/// `POST /system/metrics-token`: a new bearer token for Prometheus, write-only (the page says
/// only whether one is set). Kept with the Reboot button: both are the System page's machine
/// settings outside a config section of their own.
pub async fn metrics_token(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    axum::extract::Form(f): axum::extract::Form<MetricsTokenForm>,
) -> Result<Response, WebError> {
    let token = f.token.trim().to_owned();
    if token.len() < 16
        || token.len() > MAX_TOKEN_CHARS
        || !token.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(WebError::BadRequest(format!(
            "the token must be 16 to {MAX_TOKEN_CHARS} printable characters without spaces"
        )));
    }
    let data_dir = web.config().gateway.data_dir.clone();
    super::pages::apply_edit(
        &web,
        ctx.ip,
        "web.metrics_token",
        "new /metrics token".into(),
        move |p| super::edit::save_metrics_token(p, &data_dir, &token),
    )
    .await
    .map_err(|e| WebError::BadRequest(super::pages::edit_errors(&e).join("; ")))?;
    Ok(axum::response::Redirect::to("/system").into_response())
}
