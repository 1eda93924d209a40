//! `[web]`: the local web UI and JSON API (src/web). Raw type, validated settings and their check,
//! kept apart from the rest of the config so the section reads in one place.

use super::raw::{RawDuration, Val};
use super::{Check, SecretRef, SourceConfig, Transport};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `[web]`: the web page and JSON API served by the gateway. Without this section there is none.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeb {
    /// Address and port of the web page. Default `"0.0.0.0:8080"` (a laptop); the device image
    /// uses `"0.0.0.0:80"` so the captive-portal probes reach it.
    pub listen: Option<Val<String>>,
    /// How long a login lasts without being used. Default `"12h"`, `"5m"` ..= `"30d"`.
    pub session_lifetime: Option<Val<RawDuration>>,
    /// Wrong passwords one address may try within `login_window` before it must wait.
    /// Default 5, 1 ..= 100.
    pub login_attempts: Option<Val<i64>>,
    /// The window (and the wait) for `login_attempts`. Default `"15m"`, `"10s"` ..= `"24h"`.
    pub login_window: Option<Val<RawDuration>>,
    /// A file holding the first admin password (first line), e.g. written when the SD image is
    /// made and printed on the device label. Used only while no password has been set; without
    /// it the first visit asks for a new password.
    pub initial_password_file: Option<Val<PathBuf>>,
    /// Mark the session cookie `Secure` (only when the page is served over HTTPS by a proxy in
    /// front of pocketgate). Default `false`.
    pub secure_cookie: Option<Val<bool>>,
    /// Let the System page set the clock (the board has no real-time clock). `true` on the
    /// device image; default `false`, so a laptop's clock is never touched.
    pub manage_clock: Option<Val<bool>>,
    /// A file whose first line is the token Prometheus sends to scrape `/metrics` without a
    /// browser session (`Authorization: Bearer <token>`). Without it (and without
    /// `metrics_token_env`) `/metrics` needs a logged-in session like every other page.
    pub metrics_token_file: Option<Val<PathBuf>>,
    /// The same token from an environment variable. Give `metrics_token_file` or this, not both.
    pub metrics_token_env: Option<Val<String>>,
}

/// `[web]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct WebSettings {
    pub listen: SocketAddr,
    pub session_lifetime: Duration,
    pub login_attempts: u32,
    pub login_window: Duration,
    pub initial_password_file: Option<PathBuf>,
    pub secure_cookie: bool,
    pub manage_clock: bool,
    /// Where the `/metrics` bearer token lives (read per request, so a new file needs no
    /// restart); never the token itself.
    pub metrics_token: Option<SecretRef>,
}

impl Default for WebSettings {
    fn default() -> Self {
        WebSettings {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            session_lifetime: Duration::from_secs(12 * 3600),
            login_attempts: 5,
            login_window: Duration::from_secs(15 * 60),
            initial_password_file: None,
            secure_cookie: false,
            manage_clock: false,
            metrics_token: None,
        }
    }
}

impl Check<'_> {
    /// Validate `[web]`; `sources` are the resolved sources, whose listen ports must differ.
    pub(super) fn web(&mut self, w: &RawWeb, sources: &[SourceConfig]) -> WebSettings {
        let d = WebSettings::default();
        let listen = match self.get("web.listen", &w.listen) {
            Some((text, line)) => {
                let text = text.clone();
                match self.socket_addr("web.listen", &text, line, "0.0.0.0:8080") {
                    Some(addr) => {
                        let clash = sources.iter().find(|s| {
                            s.enabled
                                && matches!(&s.transport, Transport::TcpServer { listen }
                                    if super::addrs_clash(listen, &addr))
                        });
                        if let Some(s) = clash {
                            self.error(
                                "web.listen",
                                line,
                                format!("{addr} is the port of source \"{}\"", s.id),
                            );
                        }
                        addr
                    }
                    None => d.listen,
                }
            }
            None => d.listen,
        };
        let token_file = self
            .get("web.metrics_token_file", &w.metrics_token_file)
            .map(|(p, _)| p.clone());
        let token_env = self
            .get("web.metrics_token_env", &w.metrics_token_env)
            .map(|(v, line)| (v.clone(), line));
        let metrics_token = match (token_file, token_env) {
            (Some(_), Some((_, line))) => {
                self.error(
                    "web.metrics_token_env",
                    line,
                    "give metrics_token_file or metrics_token_env, not both",
                );
                None
            }
            (Some(p), None) => Some(SecretRef::File(p)),
            (None, Some((v, _))) => Some(SecretRef::Env(v)),
            (None, None) => None,
        };
        WebSettings {
            metrics_token,
            listen,
            session_lifetime: self.duration(
                "web.session_lifetime",
                &w.session_lifetime,
                d.session_lifetime,
                Duration::from_secs(300)..=Duration::from_secs(30 * 86_400),
            ),
            login_attempts: self.int("web.login_attempts", &w.login_attempts, 5, 1..=100) as u32,
            login_window: self.duration(
                "web.login_window",
                &w.login_window,
                d.login_window,
                Duration::from_secs(10)..=Duration::from_secs(86_400),
            ),
            initial_password_file: self
                .get("web.initial_password_file", &w.initial_password_file)
                .map(|(p, _)| p.clone()),
            secure_cookie: self
                .get("web.secure_cookie", &w.secure_cookie)
                .is_some_and(|(b, _)| *b),
            manage_clock: self
                .get("web.manage_clock", &w.manage_clock)
                .is_some_and(|(b, _)| *b),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    const BASE: &str = "[gateway]\ndata_dir = \"/tmp/x\"\n";

    #[test]
    fn defaults_when_the_section_is_empty() {
        let c = parse(&format!("{BASE}[web]\n")).unwrap();
        assert_eq!(c.web, Some(super::WebSettings::default()));
        assert_eq!(parse(BASE).unwrap().web, None);
    }

    #[test]
    fn every_mistake_is_named_with_its_line() {
        let text = format!(
            "{BASE}[[sources]]\nid = \"a\"\nprotocol = \"astm\"\ntransport = \"tcp-server\"\nlisten = \"0.0.0.0:5100\"\n\
             [web]\nlisten = \"127.0.0.1:5100\"\nsession_lifetime = \"1s\"\nlogin_attempts = 0\nlogin_windw = \"1m\"\n"
        );
        let e = parse(&text).unwrap_err().to_string();
        assert!(
            e.contains("web.login_windw (line 12): unknown key (did you mean \"login_window\"?)"),
            "{e}"
        );
        let text = text.replace("login_windw", "login_window");
        let e = parse(&text).unwrap_err().to_string();
        assert!(
            e.contains("web.listen (line 9): 127.0.0.1:5100 is the port of source \"a\""),
            "{e}"
        );
        assert!(
            e.contains("web.session_lifetime (line 10): \"1s\" is out of range"),
            "{e}"
        );
        assert!(
            e.contains("web.login_attempts (line 11): 0 is out of range (1 ..= 100)"),
            "{e}"
        );
    }

    #[test]
    fn metrics_token_is_a_file_or_a_variable_never_both() {
        let c = parse(&format!("{BASE}[web]\nmetrics_token_file = \"/run/m\"\n")).unwrap();
        assert_eq!(
            c.web.unwrap().metrics_token,
            Some(crate::config::SecretRef::File("/run/m".into()))
        );
        let c = parse(&format!("{BASE}[web]\nmetrics_token_env = \"PG_M\"\n")).unwrap();
        assert_eq!(
            c.web.unwrap().metrics_token,
            Some(crate::config::SecretRef::Env("PG_M".into()))
        );
        let e = parse(&format!(
            "{BASE}[web]\nmetrics_token_file = \"/run/m\"\nmetrics_token_env = \"PG_M\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("web.metrics_token_env (line 5): give metrics_token_file or metrics_token_env, not both"),
            "{e}"
        );
    }
}
