//! `[[destinations]]`: where results go besides DHIS2 — a FHIR server (HAPI), an EMR's REST API
//! (OpenMRS), an interoperability layer (OpenHIM), any HTTP JSON/XML API, or a raw TCP/UDP
//! listener. Raw type, validated settings and their check live here so the section reads in one
//! place; the client that uses them is `crate::sync::dest`.
//!
//! DHIS2 stays the `[dhis2]` section: it is the default destination, named `"dhis2"`, so that
//! id and `kind = "dhis2"` are refused here with a message pointing there.
//!
//! ```toml
//! [[destinations]]
//! id = "hapi"
//! kind = "fhir"
//! url = "https://fhir.example.org/fhir"
//! token_file = "/etc/pocketgate/hapi-token"
//! ```
//!
//! Which keys apply depends on `kind`; a key another kind owns is an error, so a typo or a
//! leftover cannot silently do nothing (the same rule as a source's transport keys).

use super::raw::{self, Kind, RawDuration, Val};
use super::{Check, SecretRef, secs};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// `[[destinations]]`: one target for requests Temprs render.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDestination {
    /// Required. Names the destination in Temprs, logs and the outbox: 1 to 32 of `a-z`, `0-9`,
    /// `_`, `-`; unique; not `"dhis2"` (that is the `[dhis2]` section).
    pub id: Option<Val<String>>,
    /// `false` keeps the destination in the file without sending to it. Default `true`.
    pub enabled: Option<Val<bool>>,
    /// Required. `"http"` (any HTTP JSON/XML API: OpenMRS REST, OpenHIM, …), `"fhir"` (a FHIR R4
    /// server: `application/fhir+json`, conditional create), `"tcp"` or `"udp"` (the body's bytes
    /// to a listener).
    pub kind: Option<Val<RawDestKind>>,
    /// http/fhir (required): the base URL request paths are relative to,
    /// e.g. `"https://fhir.example.org/fhir"`.
    pub url: Option<Val<String>>,
    /// tcp/udp (required): `"host:port"` of the listener, e.g. `"10.0.0.5:6661"`,
    /// `"lis.lan:6661"`, `"[fd00::5]:6661"`. Host names are resolved at every send.
    pub address: Option<Val<String>>,
    /// http/fhir: Basic auth user name (with `password_file` or `password_env`).
    pub username: Option<Val<String>>,
    /// http/fhir: file holding the Basic auth password (first line).
    pub password_file: Option<Val<PathBuf>>,
    /// http/fhir: environment variable holding the Basic auth password.
    pub password_env: Option<Val<String>>,
    /// http/fhir: file holding a bearer token (`Authorization: Bearer …`).
    pub token_file: Option<Val<PathBuf>>,
    /// http/fhir: environment variable holding a bearer token.
    pub token_env: Option<Val<String>>,
    /// http/fhir: the header an API key is sent in, e.g. `"X-API-Key"` (with `api_key_file` or
    /// `api_key_env`).
    pub api_key_header: Option<Val<String>>,
    /// http/fhir: file holding the API key (first line).
    pub api_key_file: Option<Val<PathBuf>>,
    /// http/fhir: environment variable holding the API key.
    pub api_key_env: Option<Val<String>>,
    /// http/fhir: PEM file with an extra CA certificate, trusted besides the system bundle.
    pub ca_file: Option<Val<PathBuf>>,
    /// http/fhir: `[destinations.headers]`, static headers sent with every request
    /// (`X-Tenant = "clinic-a"`); a request's own headers win.
    pub headers: Option<Val<BTreeMap<String, String>>>,
    /// tcp: after sending, read the listener's reply (until it closes, 1 s of silence or
    /// `max_response_bytes`) and hand it to the next chain step. Default `false`.
    pub read_reply: Option<Val<bool>>,
    /// Whole-request budget (connect, send, wait, read). Default `"30s"`, `"1s"` ..= `"10m"`.
    pub timeout: Option<Val<RawDuration>>,
    /// First retry delay; doubles (with jitter) up to `retry_max`. Default `"5s"`,
    /// `"100ms"` ..= `"1h"`.
    pub retry_min: Option<Val<RawDuration>>,
    /// Longest retry delay. Default `"10m"`, `"1s"` ..= `"24h"`, at least `retry_min`.
    pub retry_max: Option<Val<RawDuration>>,
    /// Largest answer read, in bytes; the rest is cut off (and the answer marked
    /// `"truncated": true`). Default 1048576, 1024 ..= 16777216.
    pub max_response_bytes: Option<Val<i64>>,
    /// Keep each request and answer in the database (for debugging a mapping). Default `false`.
    pub store_exchanges: Option<Val<bool>>,
    /// How long kept exchanges stay. Default `"7d"`, `"1h"` ..= `"365d"`.
    pub keep_exchanges: Option<Val<RawDuration>>,
}

/// `kind = …` as written; `Dhis2` is accepted only to be refused with a pointer to `[dhis2]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawDestKind {
    Http,
    Fhir,
    Tcp,
    Udp,
    Dhis2,
}

/// What a destination speaks (a closed set: adding one makes the compiler list every match).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestKind {
    Http,
    Fhir,
    Tcp,
    Udp,
}

impl DestKind {
    /// The name as written in the file.
    pub fn name(self) -> &'static str {
        match self {
            DestKind::Http => "http",
            DestKind::Fhir => "fhir",
            DestKind::Tcp => "tcp",
            DestKind::Udp => "udp",
        }
    }

    /// The keys only this kind uses (beyond [`COMMON_KEYS`]).
    fn keys(self) -> &'static [&'static str] {
        match self {
            DestKind::Http | DestKind::Fhir => &HTTP_KEYS,
            DestKind::Tcp => &["address", "read_reply"],
            DestKind::Udp => &["address"],
        }
    }
}

const COMMON_KEYS: [&str; 9] = [
    "id",
    "enabled",
    "kind",
    "timeout",
    "retry_min",
    "retry_max",
    "max_response_bytes",
    "store_exchanges",
    "keep_exchanges",
];
const HTTP_KEYS: [&str; 11] = [
    "url",
    "username",
    "password_file",
    "password_env",
    "token_file",
    "token_env",
    "api_key_header",
    "api_key_file",
    "api_key_env",
    "ca_file",
    "headers",
];

/// A destination id (`[a-z0-9_-]{1,32}`, never `"dhis2"`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DestId(pub String);

impl DestId {
    /// The id of the `[dhis2]` section, the default destination.
    pub const DHIS2: &'static str = "dhis2";
}

impl fmt::Display for DestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `[[destinations]]`, validated. Secrets are named (file or env var), read by the client.
#[derive(Debug, Clone, PartialEq)]
pub struct Destination {
    pub id: DestId,
    pub enabled: bool,
    pub target: Target,
    pub timeout: Duration,
    pub retry_min: Duration,
    pub retry_max: Duration,
    pub max_response_bytes: usize,
    pub store_exchanges: bool,
    pub keep_exchanges: Duration,
}

impl Destination {
    pub fn kind(&self) -> DestKind {
        self.target.kind()
    }
}

/// Where and how requests go; the variant is the kind, so a TCP target cannot carry a URL.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Http(HttpTarget),
    Fhir(HttpTarget),
    Tcp { address: HostPort, read_reply: bool },
    Udp { address: HostPort },
}

impl Target {
    pub fn kind(&self) -> DestKind {
        match self {
            Target::Http(_) => DestKind::Http,
            Target::Fhir(_) => DestKind::Fhir,
            Target::Tcp { .. } => DestKind::Tcp,
            Target::Udp { .. } => DestKind::Udp,
        }
    }
}

/// An HTTP(S) server: kinds `http` and `fhir`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpTarget {
    /// Base URL without a trailing `/`.
    pub url: String,
    pub auth: DestAuth,
    pub ca_file: Option<PathBuf>,
    /// Static headers (names checked as RFC 9110 tokens, values without control characters).
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DestAuth {
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(SecretRef),
    /// `Authorization: Basic …` (RFC 7617).
    Basic {
        username: String,
        password: SecretRef,
    },
    /// `<header>: <key>`.
    ApiKey {
        header: String,
        key: SecretRef,
    },
}

/// `host:port` of a TCP/UDP listener; the host is resolved at each send (DHCP leases move).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// A name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// `"lis.lan:6661"`, `"10.0.0.5:6661"`, `"[fd00::5]:6661"`; port 1 ..= 65535.
    pub fn parse(text: &str) -> Option<HostPort> {
        let (host, port) = text.rsplit_once(':')?;
        let port = port.parse::<u16>().ok().filter(|&p| p != 0)?;
        let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) => v6.parse::<std::net::Ipv6Addr>().ok()?.to_string(),
            None if !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)) =>
            {
                host.to_owned()
            }
            None => return None,
        };
        Some(HostPort { host, port })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// An HTTP field name is a token (RFC 9110 §5.1, §5.6.2).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A field value has no control characters other than tab (RFC 9110 §5.5): no header injection.
fn is_field_value(s: &str) -> bool {
    s.chars().all(|c| c == '\t' || !c.is_control())
}

impl Check<'_> {
    /// Validate every `[[destinations]]` entry; ids are unique across the list.
    pub(super) fn destinations(&mut self, raw: &[RawDestination]) -> Vec<Destination> {
        self.duplicate_ids("destinations", raw.iter().map(|d| d.id.as_ref()));
        raw.iter()
            .enumerate()
            .filter_map(|(i, d)| self.destination(i, d))
            .collect()
    }

    fn destination(&mut self, i: usize, d: &RawDestination) -> Option<Destination> {
        let table = format!("destinations[{i}]");
        let at = |key: &str| format!("{table}.{key}");
        let index = i.to_string();
        let table_line = self.line_of(&["destinations", &index]);

        let id = match self.id(&at("id"), &d.id, table_line) {
            Some((id, line)) if id == DestId::DHIS2 => {
                self.error(
                    &at("id"),
                    line,
                    "\"dhis2\" names the [dhis2] section (the default destination); choose another id",
                );
                None
            }
            other => other.map(|(id, _)| DestId(id)),
        };
        let enabled = self.get(&at("enabled"), &d.enabled).is_none_or(|(&e, _)| e);
        let kind = match self.required(
            &at("kind"),
            &d.kind,
            table_line,
            "\"http\", \"fhir\", \"tcp\" or \"udp\"",
        ) {
            Some((RawDestKind::Dhis2, line)) => {
                self.error(
                    &at("kind"),
                    line,
                    "DHIS2 is not configured here: the DHIS2 destination is the [dhis2] section",
                );
                None
            }
            Some((RawDestKind::Http, _)) => Some(DestKind::Http),
            Some((RawDestKind::Fhir, _)) => Some(DestKind::Fhir),
            Some((RawDestKind::Tcp, _)) => Some(DestKind::Tcp),
            Some((RawDestKind::Udp, _)) => Some(DestKind::Udp),
            None => None,
        };
        let timeout = self.duration(&at("timeout"), &d.timeout, secs(30), secs(1)..=secs(600));
        let (retry_min, retry_max) = self.retry_delays(&table, &d.retry_min, &d.retry_max);
        let max_response_bytes = self.int(
            &at("max_response_bytes"),
            &d.max_response_bytes,
            1 << 20,
            1024..=16 << 20,
        );
        let store_exchanges = self
            .get(&at("store_exchanges"), &d.store_exchanges)
            .is_some_and(|(&b, _)| b);
        let keep_exchanges = self.duration(
            &at("keep_exchanges"),
            &d.keep_exchanges,
            secs(7 * 86_400),
            secs(3600)..=secs(365 * 86_400),
        );

        let kind = kind?;
        self.keys_of_other_kinds(&table, &index, kind);
        let address = |check: &mut Self| {
            let (text, line) = check.required(
                &at("address"),
                &d.address,
                table_line,
                "e.g. address = \"10.0.0.5:6661\"",
            )?;
            let parsed = HostPort::parse(text);
            if parsed.is_none() {
                check.error(
                    &at("address"),
                    line,
                    format!("\"{text}\" is not host:port (e.g. \"10.0.0.5:6661\", \"lis.lan:6661\", \"[fd00::5]:6661\")"),
                );
            }
            parsed
        };
        let target = match kind {
            DestKind::Http => Target::Http(self.http_target(&table, d, table_line)?),
            DestKind::Fhir => Target::Fhir(self.http_target(&table, d, table_line)?),
            DestKind::Tcp => Target::Tcp {
                read_reply: self
                    .get(&at("read_reply"), &d.read_reply)
                    .is_some_and(|(&b, _)| b),
                address: address(self)?,
            },
            DestKind::Udp => Target::Udp {
                address: address(self)?,
            },
        };
        Some(Destination {
            id: id?,
            enabled,
            target,
            timeout,
            retry_min,
            retry_max,
            max_response_bytes,
            store_exchanges,
            keep_exchanges,
        })
    }

    /// Keys written in `destinations[i]` that `kind` does not use, found through the shape tree.
    fn keys_of_other_kinds(&mut self, table: &str, index: &str, kind: DestKind) {
        let Some(Kind::Table(entries)) = self.tree.get(&["destinations", index]).map(|n| &n.kind)
        else {
            return;
        };
        let stray: Vec<(String, Option<usize>)> = entries
            .iter()
            .filter(|(k, _)| {
                !COMMON_KEYS.contains(&k.as_str()) && !kind.keys().contains(&k.as_str())
            })
            .map(|(k, node)| (k.clone(), node.start().map(|s| raw::line_at(self.text, s))))
            .collect();
        for (key, line) in stray {
            let hint = match (key.as_str(), kind) {
                ("url", DestKind::Tcp | DestKind::Udp) => " (give address = \"host:port\")",
                ("address", DestKind::Http | DestKind::Fhir) => " (give url = \"https://…\")",
                _ => "",
            };
            self.error(
                &format!("{table}.{key}"),
                line,
                format!("not used by kind \"{}\"{hint}", kind.name()),
            );
        }
    }

    fn http_target(
        &mut self,
        table: &str,
        d: &RawDestination,
        table_line: Option<usize>,
    ) -> Option<HttpTarget> {
        let at = |key: &str| format!("{table}.{key}");
        let url = match self.base_url(
            &at("url"),
            &d.url,
            table_line,
            "https://fhir.example.org/fhir",
        ) {
            Some((u, line)) => {
                let rest = u.split_once("://").map_or("", |(_, r)| r);
                let host = rest.split('/').next().unwrap_or("");
                if host.is_empty() || host.contains('@') || u.contains(['?', '#', ' ']) {
                    self.error(
                        &at("url"),
                        line,
                        "needs a host, and no user name, query, fragment or spaces (credentials go in username/token_file/…)",
                    );
                }
                Some(u)
            }
            None => None,
        };
        let auth = self.dest_auth(table, d, table_line);
        let mut headers = Vec::new();
        if let Some((map, line)) = self.get(&at("headers"), &d.headers) {
            for (name, value) in map {
                if !is_token(name) {
                    self.error(
                        &at("headers"),
                        line,
                        format!("\"{name}\" is not a header name"),
                    );
                } else if !is_field_value(value) {
                    self.error(
                        &at("headers"),
                        line,
                        format!("the value of {name} contains control characters"),
                    );
                } else {
                    headers.push((name.clone(), value.clone()));
                }
            }
        }
        Some(HttpTarget {
            url: url?,
            auth: auth?,
            ca_file: self.get(&at("ca_file"), &d.ca_file).map(|(p, _)| p.clone()),
            headers,
        })
    }

    /// At most one kind of credentials: a bearer token, Basic, or an API key header.
    fn dest_auth(
        &mut self,
        table: &str,
        d: &RawDestination,
        table_line: Option<usize>,
    ) -> Option<DestAuth> {
        let at = |key: &str| format!("{table}.{key}");
        let token = self.secret(table, "token", &d.token_file, &d.token_env, table_line);
        let password = self.secret(
            table,
            "password",
            &d.password_file,
            &d.password_env,
            table_line,
        );
        let key = self.secret(
            table,
            "api_key",
            &d.api_key_file,
            &d.api_key_env,
            table_line,
        );
        let username = self
            .get(&at("username"), &d.username)
            .map(|(u, _)| u.clone());
        let header = match self.get(&at("api_key_header"), &d.api_key_header) {
            Some((h, line)) if !is_token(h) => {
                self.error(
                    &at("api_key_header"),
                    line,
                    format!("\"{h}\" is not a header name"),
                );
                None
            }
            Some((h, _)) => Some(h.clone()),
            None => None,
        };
        let basic = username.is_some() || password.is_some();
        let api = header.is_some() || key.is_some();
        if usize::from(token.is_some()) + usize::from(basic) + usize::from(api) > 1 {
            self.error(
                table,
                table_line,
                "give one kind of credentials: token_file/token_env, username with password_file/password_env, or api_key_header with api_key_file/api_key_env",
            );
            return None;
        }
        let missing = match (token, username, password, header, key) {
            (Some(t), ..) => return Some(DestAuth::Bearer(t)),
            (_, Some(username), Some(password), ..) => {
                return Some(DestAuth::Basic { username, password });
            }
            (.., Some(header), Some(key)) => return Some(DestAuth::ApiKey { header, key }),
            (None, None, None, None, None) => return Some(DestAuth::None),
            (_, Some(_), None, ..) => ("username", "needs password_file or password_env"),
            (_, None, Some(_), ..) => ("password_file", "needs username"),
            (.., Some(_), None) => ("api_key_header", "needs api_key_file or api_key_env"),
            (.., None, Some(_)) => ("api_key_file", "needs api_key_header"),
        };
        self.error(&at(missing.0), table_line, missing.1);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigErrors, parse};

    const BASE: &str = "[gateway]\ndata_dir = \"/d\"\n";

    fn errors(text: &str) -> String {
        match parse(&format!("{BASE}{text}")) {
            Ok(c) => panic!("expected errors, got {:#?}", c.destinations),
            Err(e) => e.to_string(),
        }
    }

    /// `text` has exactly the `expected` errors (each a prefix of one line).
    fn assert_errors(text: &str, expected: &[&str]) {
        let e = errors(text);
        for want in expected {
            assert!(
                e.lines().any(|l| l.starts_with(want)),
                "missing {want:?} in\n{e}"
            );
        }
        assert_eq!(e.lines().count(), expected.len(), "{e}");
    }

    const GOOD: &str = r#"
[[destinations]]
id = "hapi"
kind = "fhir"
url = "https://fhir.example.org/fhir/"
token_env = "HAPI_TOKEN"
timeout = "10s"
store_exchanges = true
[destinations.headers]
X-Tenant = "clinic-a"

[[destinations]]
id = "openmrs"
kind = "http"
url = "http://emr.lan:8080/openmrs/ws/rest/v1"
username = "admin"
password_file = "/etc/pocketgate/openmrs-password"

[[destinations]]
id = "lis-tcp"
kind = "tcp"
address = "lis.lan:6661"
read_reply = true

[[destinations]]
id = "logger"
kind = "udp"
address = "[fd00::5]:514"
enabled = false
"#;

    #[test]
    fn every_kind_parses_with_its_defaults() {
        let c = parse(&format!("{BASE}{GOOD}")).unwrap_or_else(|e| panic!("{e}"));
        let [hapi, openmrs, tcp, udp] = &c.destinations[..] else {
            panic!("{:#?}", c.destinations)
        };
        assert_eq!(
            hapi.target,
            Target::Fhir(HttpTarget {
                url: "https://fhir.example.org/fhir".into(),
                auth: DestAuth::Bearer(SecretRef::Env("HAPI_TOKEN".into())),
                ca_file: None,
                headers: vec![("X-Tenant".into(), "clinic-a".into())],
            })
        );
        assert_eq!((hapi.timeout, hapi.store_exchanges), (secs(10), true));
        assert_eq!(
            (openmrs.timeout, openmrs.retry_min, openmrs.retry_max),
            (secs(30), secs(5), secs(600))
        );
        assert_eq!(
            (
                openmrs.max_response_bytes,
                openmrs.store_exchanges,
                openmrs.keep_exchanges
            ),
            (1 << 20, false, secs(7 * 86_400))
        );
        assert!(
            matches!(&openmrs.target, Target::Http(t) if matches!(&t.auth,
            DestAuth::Basic { username, password: SecretRef::File(_) } if username == "admin"))
        );
        assert_eq!(
            tcp.target,
            Target::Tcp {
                address: HostPort {
                    host: "lis.lan".into(),
                    port: 6661
                },
                read_reply: true
            }
        );
        assert!(!udp.enabled);
        assert_eq!(udp.kind(), DestKind::Udp);
        let Target::Udp { address } = &udp.target else {
            panic!()
        };
        assert_eq!(address.to_string(), "[fd00::5]:514");
        assert_eq!(parse(BASE).map(|c| c.destinations.len()), Ok(0));
    }

    #[test]
    fn dhis2_is_the_dhis2_section_not_a_destination() {
        let e = errors("[[destinations]]\nid = \"dhis2\"\nkind = \"dhis2\"\nurl = \"https://x\"\n");
        assert!(
            e.contains("destinations[0].id (line 4): \"dhis2\" names the [dhis2] section"),
            "{e}"
        );
        assert!(
            e.contains("destinations[0].kind (line 5): DHIS2 is not configured here: the DHIS2 destination is the [dhis2] section"),
            "{e}"
        );
    }

    #[test]
    fn each_bad_value_names_its_path_and_line() {
        assert_errors(
            "[[destinations]]\nid = \"Hapi 1\"\nkind = \"fhir\"\nurl = \"ftp://x\"\ntimeout = \"0s\"\n\
             max_response_bytes = 10\nkeep_exchanges = \"30m\"\napi_key_header = \"X Key\"\n\
             [destinations.headers]\n\"Bad Name\" = \"v\"\n\
             [[destinations]]\nid = \"t\"\nkind = \"tcp\"\naddress = \"lis.lan\"\n\
             [[destinations]]\nid = \"t\"\nkind = \"smtp\"\n",
            &[
                "destinations[0].id (line 4): \"Hapi 1\" is not a valid id",
                "destinations[0].url (line 6): \"ftp://x\" must start with https://",
                "destinations[0].timeout (line 7): \"0s\" is out of range (1s ..= 10m)",
                "destinations[0].max_response_bytes (line 8): 10 is out of range (1024 ..= 16777216)",
                "destinations[0].keep_exchanges (line 9): \"30m\" is out of range (1h ..= 365d)",
                "destinations[0].api_key_header (line 10): \"X Key\" is not a header name",
                "destinations[0].headers (line 11): \"Bad Name\" is not a header name",
                "destinations[1].address (line 16): \"lis.lan\" is not host:port",
                "destinations[2].id (line 18): \"t\" is already used by destinations[1]",
                "destinations[2].kind (line 19): unknown variant `smtp`",
            ],
        );
    }

    #[test]
    fn keys_of_another_kind_and_missing_ones_are_errors() {
        assert_errors(
            "[[destinations]]\nid = \"t\"\nkind = \"tcp\"\nurl = \"http://x\"\nheaders = { A = \"b\" }\n\
             [[destinations]]\nid = \"h\"\nkind = \"http\"\naddress = \"x:1\"\nread_reply = true\n\
             [[destinations]]\nid = \"u\"\n",
            &[
                "destinations[0].url (line 6): not used by kind \"tcp\" (give address = \"host:port\")",
                "destinations[0].headers (line 7): not used by kind \"tcp\"",
                "destinations[0].address (line 3): required",
                "destinations[1].address (line 11): not used by kind \"http\" (give url = \"https://…\")",
                "destinations[1].read_reply (line 12): not used by kind \"http\"",
                "destinations[1].url (line 8): required",
                "destinations[2].kind (line 13): required",
            ],
        );
    }

    #[test]
    fn credentials_are_one_kind_and_complete() {
        let one = |keys: &str| {
            errors(&format!(
                "[[destinations]]\nid = \"h\"\nkind = \"http\"\nurl = \"https://x\"\n{keys}"
            ))
        };
        for (keys, expected) in [
            (
                "token_env = \"T\"\nusername = \"u\"\npassword_env = \"P\"\n",
                "destinations[0] (line 3): give one kind of credentials",
            ),
            (
                "username = \"u\"\n",
                "destinations[0].username (line 3): needs password_file or password_env",
            ),
            (
                "api_key_env = \"K\"\n",
                "destinations[0].api_key_file (line 3): needs api_key_header",
            ),
            (
                "token_file = \"/t\"\ntoken_env = \"T\"\n",
                "destinations[0].token_env (line 3): give token_file or token_env, not both",
            ),
            (
                "url2 = 1\n",
                "destinations[0].url2 (line 7): unknown key (did you mean \"url\"?)",
            ),
        ] {
            let e = one(keys);
            assert!(e.starts_with(expected), "{keys:?}: {e}");
        }
        let c = parse(&format!(
            "{BASE}[[destinations]]\nid = \"h\"\nkind = \"http\"\nurl = \"https://x\"\napi_key_header = \"X-API-Key\"\napi_key_file = \"/k\"\n"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(&c.destinations[0].target, Target::Http(t)
            if t.auth == DestAuth::ApiKey { header: "X-API-Key".into(), key: SecretRef::File("/k".into()) }));
    }

    #[test]
    fn destinations_must_be_a_list_of_tables() {
        let Err(ConfigErrors(e)) = parse(&format!("{BASE}[destinations]\nid = \"x\"\n")) else {
            panic!()
        };
        assert_eq!((e[0].path.as_str(), e[0].line), ("destinations", Some(3)));
        assert!(e[0].message.contains("[[destinations]]"), "{}", e[0]);
    }

    /// The example in docs/config.md parses, so the documentation cannot rot.
    #[test]
    fn the_documented_example_parses() {
        let doc = include_str!("../../docs/config.md");
        let section = doc.split("## `[[destinations]]`").nth(1).unwrap_or("");
        let example = section
            .split("```toml\n")
            .nth(1)
            .and_then(|t| t.split("```").next())
            .unwrap_or("");
        let c = parse(&format!("{BASE}{example}")).unwrap_or_else(|e| panic!("{e}"));
        let kinds: Vec<_> = c.destinations.iter().map(|d| d.kind().name()).collect();
        assert_eq!(kinds, ["fhir", "http", "tcp"]);
    }

    #[test]
    fn host_port_forms() {
        for (text, shown) in [
            ("10.0.0.5:6661", Some("10.0.0.5:6661")),
            ("lis.lan:1", Some("lis.lan:1")),
            ("[::1]:514", Some("[::1]:514")),
            ("::1:514", None),
            ("lis.lan:0", None),
            (":80", None),
            ("a b:80", None),
            ("lis.lan:70000", None),
        ] {
            let got = HostPort::parse(text).map(|h| h.to_string());
            assert_eq!(got.as_deref(), shown, "{text}");
        }
    }
}
