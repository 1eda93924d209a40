//! `transport = "mqtt"`: the gateway subscribes to topics on an MQTT broker. Everything MQTT
//! lives in ONE nested table, `[sources.mqtt]` (`[mqtt]` in a device profile), with one
//! `[[sources.mqtt.topics]]` per topic filter and the payload format published on it.
//!
//! ```toml
//! [[sources]]
//! id = "lab-mqtt"
//! protocol = "mqtt"
//! transport = "mqtt"
//! [sources.mqtt]
//! broker = "broker.lan:8883"
//! username = "gateway"
//! password_file = "/etc/pocketgate/mqtt-password"
//! tls = true
//! [[sources.mqtt.topics]]
//! filter = "lab/+/results"
//! format = "json"
//! ```

use super::raw::{self, Kind, Node, RawDuration, RawEncoding, RawSource, RawTransport, Val};
use super::{Check, ConfigError, Encoding, SecretRef, SourceConfig, Transport};
use super::{format_duration, millis, secs};
use crate::record::SourceId;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `[sources.mqtt]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqtt {
    /// Required. The broker's `host:port`, e.g. `"broker.lan:1883"`, `"192.168.1.5:8883"`,
    /// `"[fd00::5]:1883"`. Host names are resolved at every connection attempt.
    pub broker: Option<Val<String>>,
    /// The MQTT client id. It must stay the same across restarts: the broker keeps the session
    /// (subscriptions and unacknowledged messages) under it. Default
    /// `"pocketgate-<gateway name>-<source id>"` (characters other than `A-Z a-z 0-9 - _`
    /// become `-`).
    pub client_id: Option<Val<String>>,
    /// How often the connection is checked with a ping when idle. Default `"30s"`, `"5s"` ..= `"30m"`.
    pub keep_alive: Option<Val<RawDuration>>,
    /// User name to log in with. Default: none (anonymous).
    pub username: Option<Val<String>>,
    /// File holding the password (first line); needs `username`. Never written in this file.
    pub password_file: Option<Val<PathBuf>>,
    /// Environment variable holding the password; needs `username`.
    pub password_env: Option<Val<String>>,
    /// `true` connects with TLS (certificate and host name always verified). Default `false`.
    pub tls: Option<Val<bool>>,
    /// tls: PEM file of the CA certificate(s) that signed the broker's certificate. Default: the
    /// system CA bundle (src/sync/trust.rs).
    pub ca_file: Option<Val<PathBuf>>,
    /// tls: the name the broker's certificate must carry, when it differs from the host in
    /// `broker` (e.g. connecting by IP to a broker whose certificate names `broker.lan`).
    pub server_name: Option<Val<String>>,
    /// Largest payload stored, in bytes. A bigger message is recorded as `invalid` (its size and
    /// SHA-256, not its bytes) and acknowledged. Default 1048576, 1024 ..= 16777216.
    pub max_payload: Option<Val<i64>>,
    /// Messages received but not yet committed and acknowledged, at most. Default 32, 1 ..= 1024.
    pub max_in_flight: Option<Val<i64>>,
    /// First wait before reconnecting after the broker is lost. Default `"1s"`, `"100ms"` ..= `"10m"`.
    pub backoff_min: Option<Val<RawDuration>>,
    /// The wait doubles after each failure up to this. Default `"60s"`, `"1s"` ..= `"1h"`.
    pub backoff_max: Option<Val<RawDuration>>,
    /// Required, at least one: `[[sources.mqtt.topics]]`.
    #[serde(default)]
    pub topics: Vec<RawMqttTopic>,
}

/// `[[sources.mqtt.topics]]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqttTopic {
    /// Required. An MQTT topic filter: `"lab/genexpert-1/results"`, `"lab/+/results"`, `"lab/#"`.
    pub filter: Option<Val<String>>,
    /// Required. What is published there: `"json"` (canonical observation JSON, one object or an
    /// array), `"fhir"` (FHIR R4 Observation/DiagnosticReport/Bundle), `"hl7"` (one HL7 v2
    /// message, MLLP framing optional), `"astm"` (E1394 record text, one or more H…L messages),
    /// `"csv"` or `"xml"` (the HTTP ingest's shapes).
    pub format: Option<Val<RawPayloadFormat>>,
    /// hl7/astm: text encoding, `"utf8"` or `"latin1"`. Default `"utf8"` for hl7, `"latin1"` for astm.
    pub encoding: Option<Val<RawEncoding>>,
}

/// `format = …`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawPayloadFormat {
    Json,
    Fhir,
    Hl7,
    Astm,
    Csv,
    Xml,
}

/// How the payloads of one topic filter are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadFormat {
    /// Canonical observation JSON (one object or an array).
    Json,
    /// FHIR R4 JSON.
    Fhir,
    /// One HL7 v2 message.
    Hl7,
    /// E1394 record text (one or more H…L messages).
    Astm,
    Csv,
    Xml,
}

impl PayloadFormat {
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Fhir => "fhir",
            Self::Hl7 => "hl7",
            Self::Astm => "astm",
            Self::Csv => "csv",
            Self::Xml => "xml",
        }
    }
}

/// `transport = "mqtt"`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttSettings {
    /// Host as written (an IPv6 address keeps its brackets).
    pub host: String,
    pub port: u16,
    /// `None`: derived from the gateway name and source id, see [`MqttSettings::client_id`].
    pub client_id: Option<String>,
    pub keep_alive: Duration,
    pub username: Option<String>,
    pub password: Option<SecretRef>,
    /// `Some` = connect with TLS.
    pub tls: Option<MqttTls>,
    /// In config order; the first filter a topic matches decides its format.
    pub topics: Vec<MqttTopic>,
    pub max_payload_bytes: usize,
    pub max_in_flight: usize,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl MqttSettings {
    /// The configured client id, or `pocketgate-<gateway>-<source>`: stable across restarts so
    /// the broker finds the session again.
    pub fn client_id(&self, gateway: &str, source: &SourceId) -> String {
        if let Some(id) = &self.client_id {
            return id.clone();
        }
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect()
        };
        format!("pocketgate-{}-{}", clean(gateway), clean(&source.0))
    }

    /// The host without IPv6 brackets (for the TLS server name).
    pub fn bare_host(&self) -> &str {
        self.host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MqttTls {
    /// Trusted CA certificates (PEM); `None` = the system CA bundle.
    pub ca_file: Option<PathBuf>,
    /// Name checked against the certificate; `None` = the broker host.
    pub server_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MqttTopic {
    pub filter: String,
    pub format: PayloadFormat,
    /// For hl7 and astm payloads.
    pub encoding: Encoding,
}

/// Why a topic filter is not valid MQTT (MQTT 3.1.1 §4.7), or `None`.
pub fn filter_problem(filter: &str) -> Option<&'static str> {
    if filter.is_empty() {
        return Some("must not be empty");
    }
    if filter.len() > 65_535 {
        return Some("is longer than 65535 bytes");
    }
    if filter.contains('\0') {
        return Some("must not contain a NUL character");
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (n, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || n + 1 != levels.len()) {
            return Some("\"#\" must be a whole level and the last one (e.g. \"lab/#\")");
        }
        if level.contains('+') && *level != "+" {
            return Some("\"+\" must be a whole level (e.g. \"lab/+/results\")");
        }
    }
    None
}

/// `host:port` → (host, port), or why not.
fn parse_broker(text: &str) -> Result<(String, u16), String> {
    let example = "e.g. \"broker.lan:1883\" or \"192.168.1.5:8883\"";
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("\"{text}\" needs a port ({example})"));
    };
    let port = match port.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => return Err(format!("\"{port}\" is not a port number (1 ..= 65535)")),
    };
    let bracketed = host.starts_with('[') && host.ends_with(']') && host.len() > 2;
    let plain_ok = !host.is_empty()
        && !host.contains([':', '[', ']', '/', ' '])
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    if bracketed || plain_ok {
        Ok((host.to_owned(), port))
    } else {
        Err(format!(
            "\"{text}\" is not a host and port ({example}; an IPv6 address goes in brackets)"
        ))
    }
}

impl Check<'_> {
    /// `protocol = "mqtt"` and `transport = "mqtt"` go together, and `[sources.mqtt]` only with
    /// them. Reports the mismatch; the caller goes on.
    pub(super) fn mqtt_pairing(&mut self, i: usize, s: &RawSource, transport: RawTransport) {
        let p = |key: &str| format!("sources[{i}].{key}");
        let proto_mqtt = s
            .protocol
            .as_ref()
            .and_then(|v| v.value.as_ref().ok())
            .is_some_and(|p| *p == raw::RawProtocol::Mqtt);
        let transport_mqtt = transport == RawTransport::Mqtt;
        if proto_mqtt && !transport_mqtt {
            self.error(
                &p("transport"),
                self.line_at_path(&p("transport")),
                format!(
                    "protocol \"mqtt\" needs transport = \"mqtt\" (not \"{}\")",
                    transport.name()
                ),
            );
        }
        if transport_mqtt && !proto_mqtt && s.protocol.is_some() {
            self.error(
                &p("protocol"),
                self.line_at_path(&p("protocol")),
                "transport \"mqtt\" needs protocol = \"mqtt\"; the payload format is set per \
                 topic ([[sources.mqtt.topics]] format = \"json\", \"hl7\", …)",
            );
        }
        if !transport_mqtt && s.mqtt.is_some() {
            self.error(
                &p("mqtt"),
                self.line_at_path(&p("mqtt")),
                format!("not used by transport \"{}\"", transport.name()),
            );
        }
        if transport_mqtt {
            for (key, set) in [
                ("encoding", s.encoding.is_some()),
                ("receive_timeout", s.receive_timeout.is_some()),
            ] {
                if set {
                    self.error(
                        &p(key),
                        self.line_at_path(&p(key)),
                        "not used by transport \"mqtt\" (set encoding per topic in \
                         [[sources.mqtt.topics]])",
                    );
                }
            }
        }
    }

    /// `[sources.mqtt]` → [`Transport::Mqtt`].
    pub(super) fn mqtt(
        &mut self,
        i: usize,
        s: &RawSource,
        table_line: Option<usize>,
    ) -> Option<Transport> {
        let Some(m) = &s.mqtt else {
            self.error(
                &format!("sources[{i}].mqtt"),
                table_line,
                "required: a [sources.mqtt] table with broker = \"host:port\" and at least one \
                 [[sources.mqtt.topics]]",
            );
            return None;
        };
        let p = |key: &str| format!("sources[{i}].mqtt.{key}");
        let mqtt_line = self
            .line_at_path(&format!("sources[{i}].mqtt"))
            .or(table_line);
        let broker = match self.required(
            &p("broker"),
            &m.broker,
            mqtt_line,
            "e.g. broker = \"broker.lan:1883\"",
        ) {
            Some((text, line)) => match parse_broker(text.trim()) {
                Ok(b) => Some(b),
                Err(e) => {
                    self.error(&p("broker"), line, e);
                    None
                }
            },
            None => None,
        };
        let client_id = match self.get(&p("client_id"), &m.client_id) {
            Some((id, line)) if id.is_empty() || id.len() > 65_535 || id.contains('\0') => {
                self.error(
                    &p("client_id"),
                    line,
                    "must be 1 to 65535 bytes without NUL (leave it out for the default)",
                );
                None
            }
            Some((id, _)) => Some(id.clone()),
            None => None,
        };
        let keep_alive = self.duration(
            &p("keep_alive"),
            &m.keep_alive,
            secs(30),
            secs(5)..=secs(1800),
        );
        let username = self
            .get(&p("username"), &m.username)
            .map(|(u, _)| u.clone());
        let file = self
            .get(&p("password_file"), &m.password_file)
            .map(|(f, _)| f.clone());
        let env = self
            .get(&p("password_env"), &m.password_env)
            .map(|(v, _)| v.clone());
        let password = match (file, env) {
            (Some(_), Some(_)) => {
                self.error(
                    &p("password_env"),
                    self.line_at_path(&p("password_env")),
                    "give password_file or password_env, not both",
                );
                None
            }
            (Some(f), None) => Some(SecretRef::File(f)),
            (None, Some(v)) => Some(SecretRef::Env(v)),
            (None, None) => None,
        };
        if password.is_some() && username.is_none() {
            let key = if m.password_file.is_some() {
                "password_file"
            } else {
                "password_env"
            };
            self.error(&p(key), self.line_at_path(&p(key)), "needs username");
        }
        let tls_on = self.get(&p("tls"), &m.tls).is_some_and(|(&t, _)| t);
        let ca_file = self.get(&p("ca_file"), &m.ca_file).map(|(f, _)| f.clone());
        let server_name = match self.get(&p("server_name"), &m.server_name) {
            Some((n, line)) if rustls::pki_types::ServerName::try_from(n.as_str()).is_err() => {
                self.error(
                    &p("server_name"),
                    line,
                    format!("\"{n}\" is not a DNS name or IP address"),
                );
                None
            }
            Some((n, _)) => Some(n.clone()),
            None => None,
        };
        if !tls_on {
            for (key, set) in [
                ("ca_file", m.ca_file.is_some()),
                ("server_name", m.server_name.is_some()),
            ] {
                if set {
                    self.error(
                        &p(key),
                        self.line_at_path(&p(key)),
                        "only used with tls = true",
                    );
                }
            }
        }
        let tls = tls_on.then_some(MqttTls {
            ca_file,
            server_name,
        });
        let max_payload_bytes =
            self.int(&p("max_payload"), &m.max_payload, 1 << 20, 1024..=16 << 20);
        let max_in_flight = self.int(&p("max_in_flight"), &m.max_in_flight, 32, 1..=1024);
        let backoff_min = self.duration(
            &p("backoff_min"),
            &m.backoff_min,
            secs(1),
            millis(100)..=secs(600),
        );
        let backoff_max = self.duration(
            &p("backoff_max"),
            &m.backoff_max,
            secs(60),
            secs(1)..=secs(3600),
        );
        if backoff_max < backoff_min {
            self.error(
                &p("backoff_max"),
                self.line_at_path(&p("backoff_max")),
                format!(
                    "{} is less than backoff_min ({})",
                    format_duration(backoff_max),
                    format_duration(backoff_min)
                ),
            );
        }
        if m.topics.is_empty() {
            self.error(
                &p("topics"),
                mqtt_line,
                "at least one [[sources.mqtt.topics]] with filter and format is required",
            );
        }
        let mut topics = Vec::new();
        for (n, t) in m.topics.iter().enumerate() {
            let tp = |key: &str| format!("sources[{i}].mqtt.topics[{n}].{key}");
            let topic_line = self.line_at_path(&format!("sources[{i}].mqtt.topics[{n}]"));
            let filter = match self.required(
                &tp("filter"),
                &t.filter,
                topic_line,
                "e.g. filter = \"lab/+/results\"",
            ) {
                Some((f, line)) => match filter_problem(f) {
                    Some(why) => {
                        self.error(&tp("filter"), line, format!("\"{f}\": {why}"));
                        None
                    }
                    None => {
                        if let Some(m) = topics.iter().position(|t: &MqttTopic| t.filter == *f) {
                            self.error(
                                &tp("filter"),
                                line,
                                format!("\"{f}\" is already listed in topics[{m}]"),
                            );
                        }
                        Some(f.clone())
                    }
                },
                None => None,
            };
            let format = self
                .required(
                    &tp("format"),
                    &t.format,
                    topic_line,
                    "\"json\", \"fhir\", \"hl7\", \"astm\", \"csv\" or \"xml\"",
                )
                .map(|(&f, _)| match f {
                    RawPayloadFormat::Json => PayloadFormat::Json,
                    RawPayloadFormat::Fhir => PayloadFormat::Fhir,
                    RawPayloadFormat::Hl7 => PayloadFormat::Hl7,
                    RawPayloadFormat::Astm => PayloadFormat::Astm,
                    RawPayloadFormat::Csv => PayloadFormat::Csv,
                    RawPayloadFormat::Xml => PayloadFormat::Xml,
                });
            let encoding = self
                .get(&tp("encoding"), &t.encoding)
                .map(|(&e, _)| match e {
                    RawEncoding::Utf8 => Encoding::Utf8,
                    RawEncoding::Latin1 => Encoding::Latin1,
                });
            if encoding.is_some()
                && !matches!(
                    format,
                    Some(PayloadFormat::Hl7 | PayloadFormat::Astm) | None
                )
            {
                self.error(
                    &tp("encoding"),
                    self.line_at_path(&tp("encoding")),
                    "only used with format \"hl7\" or \"astm\" (the others are UTF-8)",
                );
            }
            if let (Some(filter), Some(format)) = (filter, format) {
                let default = if format == PayloadFormat::Astm {
                    Encoding::Latin1
                } else {
                    Encoding::Utf8
                };
                topics.push(MqttTopic {
                    filter,
                    format,
                    encoding: encoding.unwrap_or(default),
                });
            }
        }
        let (host, port) = broker?;
        if topics.len() != m.topics.len() {
            return None;
        }
        Some(Transport::Mqtt(Box::new(MqttSettings {
            host,
            port,
            client_id,
            keep_alive,
            username,
            password,
            tls,
            topics,
            max_payload_bytes,
            max_in_flight,
            backoff_min,
            backoff_max: backoff_max.max(backoff_min),
        })))
    }

    /// Two enabled MQTT sources with the same broker and the same explicit client id would log
    /// each other out in a loop.
    pub(super) fn mqtt_conflicts(
        &mut self,
        i: usize,
        a: &MqttSettings,
        earlier: &[(usize, &SourceConfig)],
    ) {
        let Some(id) = &a.client_id else { return };
        for (j, b) in earlier {
            if let Transport::Mqtt(b) = &b.transport
                && b.client_id.as_ref() == Some(id)
                && b.host == a.host
                && b.port == a.port
            {
                let path = format!("sources[{i}].mqtt.client_id");
                self.error(&path, self.line_at_path(&path), format!("\"{id}\" is already used by sources[{j}] on the same broker (the broker would disconnect one for the other)"));
                return;
            }
        }
    }
}

/// Unknown keys inside `sources[i].mqtt` and its topics (pass 1 of [`raw::read`]).
pub(super) fn check_shape(text: &str, path: &str, node: &Node, errors: &mut Vec<ConfigError>) {
    if !check_table(text, path, node, raw::keys_of::<RawMqtt>(), errors) {
        return;
    }
    match node.get(&["topics"]) {
        Some(Node {
            kind: Kind::Array(items),
            ..
        }) => {
            for (n, item) in items.iter().enumerate() {
                let path = format!("{path}.topics[{n}]");
                check_table(text, &path, item, raw::keys_of::<RawMqttTopic>(), errors);
            }
        }
        Some(other) => errors.push(ConfigError {
            path: format!("{path}.topics"),
            line: other.start().map(|s| raw::line_at(text, s)),
            message: "expected a list of tables: write each topic as [[sources.mqtt.topics]]"
                .into(),
        }),
        None => {}
    }
}

/// Whether `node` is a table; reports it if not, and every key not in `keys`.
fn check_table(
    text: &str,
    path: &str,
    node: &Node,
    keys: &[&str],
    errors: &mut Vec<ConfigError>,
) -> bool {
    let line = |n: &Node| n.start().map(|s| raw::line_at(text, s));
    let Kind::Table(entries) = &node.kind else {
        errors.push(ConfigError {
            path: path.to_owned(),
            line: line(node),
            message: "expected a table".into(),
        });
        return false;
    };
    for (key, value) in entries {
        if !keys.contains(&key.as_str()) {
            errors.push(ConfigError {
                path: format!("{path}.{key}"),
                line: line(value),
                message: raw::unknown_key(key, keys),
            });
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::super::{ConfigError, ConfigErrors, Protocol, Transport, parse};
    use super::*;

    const HEAD: &str = "[gateway]\nname = \"Clinic A\"\ndata_dir = \"/d\"\n\n[[sources]]\nid = \"lab-mqtt\"\nprotocol = \"mqtt\"\ntransport = \"mqtt\"\n";

    fn errors(text: &str) -> Vec<ConfigError> {
        match parse(text) {
            Ok(c) => panic!("expected errors, got {c:#?}"),
            Err(ConfigErrors(e)) => e,
        }
    }

    fn rendered(text: &str) -> Vec<String> {
        errors(text).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn full_mqtt_source_resolves() {
        let text = format!(
            "{HEAD}[sources.mqtt]\nbroker = \"broker.lan:8883\"\nkeep_alive = \"1m\"\n\
             username = \"gw\"\npassword_env = \"MQTT_PW\"\ntls = true\nca_file = \"/etc/ca.pem\"\n\
             server_name = \"broker.lan\"\nmax_payload = 65536\nmax_in_flight = 8\n\
             [[sources.mqtt.topics]]\nfilter = \"lab/+/results\"\nformat = \"fhir\"\n\
             [[sources.mqtt.topics]]\nfilter = \"lab/astm/#\"\nformat = \"astm\"\n"
        );
        let config = parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let s = &config.sources[0];
        assert_eq!(s.protocol, Protocol::Mqtt);
        let Transport::Mqtt(m) = &s.transport else {
            panic!("{:?}", s.transport)
        };
        assert_eq!((m.host.as_str(), m.port), ("broker.lan", 8883));
        assert_eq!(m.keep_alive, Duration::from_secs(60));
        assert_eq!(m.password, Some(SecretRef::Env("MQTT_PW".into())));
        assert_eq!(
            m.tls,
            Some(MqttTls {
                ca_file: Some("/etc/ca.pem".into()),
                server_name: Some("broker.lan".into())
            })
        );
        assert_eq!(m.topics[0].format, PayloadFormat::Fhir);
        assert_eq!(m.topics[1].encoding, Encoding::Latin1);
        assert_eq!((m.max_payload_bytes, m.max_in_flight), (65536, 8));
        assert_eq!(
            m.client_id("Clinic A", &s.id),
            "pocketgate-Clinic-A-lab-mqtt",
            "stable and derived from gateway name and source id"
        );
    }

    #[test]
    fn mistakes_are_reported_with_paths_and_lines() {
        let text = format!(
            "{HEAD}[sources.mqtt]\nbroker = \"broker.lan\"\npassword_file = \"/p\"\n\
             ca_file = \"/ca\"\nkeep_alive = \"1s\"\n\
             [[sources.mqtt.topics]]\nfilter = \"lab/#/x\"\nformat = \"json\"\nencoding = \"latin1\"\n\
             [[sources.mqtt.topics]]\nfilter = \"lab/a+\"\nformat = \"pdf\"\n"
        );
        assert_eq!(
            rendered(&text),
            [
                "sources[0].mqtt.broker (line 10): \"broker.lan\" needs a port (e.g. \"broker.lan:1883\" or \"192.168.1.5:8883\")",
                "sources[0].mqtt.password_file (line 11): needs username",
                "sources[0].mqtt.ca_file (line 12): only used with tls = true",
                "sources[0].mqtt.keep_alive (line 13): \"1s\" is out of range (5s ..= 30m)",
                "sources[0].mqtt.topics[0].filter (line 15): \"lab/#/x\": \"#\" must be a whole level and the last one (e.g. \"lab/#\")",
                "sources[0].mqtt.topics[0].encoding (line 17): only used with format \"hl7\" or \"astm\" (the others are UTF-8)",
                "sources[0].mqtt.topics[1].filter (line 19): \"lab/a+\": \"+\" must be a whole level (e.g. \"lab/+/results\")",
                "sources[0].mqtt.topics[1].format (line 20): unknown variant `pdf`, expected one of `json`, `fhir`, `hl7`, `astm`, `csv`, `xml`",
            ]
        );
    }

    #[test]
    fn unknown_keys_inside_the_mqtt_tables_are_all_reported() {
        let text = format!(
            "{HEAD}[sources.mqtt]\nbroker = \"b:1883\"\npasword_file = \"/p\"\n\
             [[sources.mqtt.topics]]\nfilter = \"a\"\nformat = \"json\"\nqos = 2\n"
        );
        assert_eq!(
            rendered(&text),
            [
                "sources[0].mqtt.pasword_file (line 11): unknown key (did you mean \"password_file\"?)",
                "sources[0].mqtt.topics[0].qos (line 15): unknown key (expected one of: filter, format, encoding)",
            ]
        );
    }

    #[test]
    fn protocol_transport_and_table_must_agree() {
        let missing = rendered(HEAD);
        assert_eq!(
            missing,
            [
                "sources[0].mqtt (line 5): required: a [sources.mqtt] table with broker = \"host:port\" and at least one [[sources.mqtt.topics]]"
            ]
        );
        let astm = HEAD.replace("protocol = \"mqtt\"", "protocol = \"astm\"")
            + "[sources.mqtt]\nbroker = \"b:1\"\n[[sources.mqtt.topics]]\nfilter = \"a\"\nformat = \"json\"\n";
        assert!(
            rendered(&astm)[0].starts_with(
                "sources[0].protocol (line 7): transport \"mqtt\" needs protocol = \"mqtt\""
            ),
            "{:?}",
            rendered(&astm)
        );
        let tcp = HEAD.replace(
            "transport = \"mqtt\"",
            "transport = \"tcp-server\"\nlisten = \"0.0.0.0:1\"",
        ) + "[sources.mqtt]\nbroker = \"b:1\"\n";
        assert_eq!(
            rendered(&tcp),
            [
                "sources[0].transport (line 8): protocol \"mqtt\" needs transport = \"mqtt\" (not \"tcp-server\")",
                "sources[0].mqtt (line 10): not used by transport \"tcp-server\"",
            ]
        );
    }

    #[test]
    fn same_explicit_client_id_on_one_broker_is_a_conflict() {
        let one = |id: &str| {
            format!(
                "[[sources]]\nid = \"{id}\"\nprotocol = \"mqtt\"\ntransport = \"mqtt\"\n\
                 [sources.mqtt]\nbroker = \"b:1883\"\nclient_id = \"gw\"\n\
                 [[sources.mqtt.topics]]\nfilter = \"{id}/#\"\nformat = \"json\"\n"
            )
        };
        let text = format!("[gateway]\ndata_dir = \"/d\"\n{}{}", one("a"), one("b"));
        let e = rendered(&text);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with(
                "sources[1].mqtt.client_id (line 19): \"gw\" is already used by sources[0]"
            ),
            "{e:?}"
        );
    }

    #[test]
    fn broker_addresses() {
        assert_eq!(parse_broker("10.0.0.5:1883"), Ok(("10.0.0.5".into(), 1883)));
        assert_eq!(
            parse_broker("[fd00::5]:8883"),
            Ok(("[fd00::5]".into(), 8883))
        );
        assert!(parse_broker("fd00::5:8883").is_err());
        assert!(parse_broker("host:0").is_err());
        assert!(parse_broker(":1883").is_err());
        assert!(parse_broker("mqtt://host:1883").is_err());
    }
}
