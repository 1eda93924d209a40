//! The config file as written: `Raw*` types mirror the TOML key for key, and their doc comments
//! are the user documentation (docs/config.md repeats them in tables).
//!
//! Reading happens in two passes so that mistakes are reported all at once, each with its path
//! and line:
//! 1. the text is parsed into a [`Node`] tree that only remembers shapes, keys and spans; it
//!    finds syntax errors, unknown keys (every one of them) and sections of the wrong shape;
//! 2. serde fills the `Raw*` structs. Every leaf is a [`Val`], which keeps a wrongly typed value
//!    as an error instead of failing the whole file, so validation can report it next to the rest.
//!
//! Nothing here applies defaults or ranges: that is `super`'s validation.

use super::ConfigError;
use serde::de::{self, DeserializeOwned, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[gateway]`: who this gateway is and where it keeps its data.
    #[serde(default)]
    pub gateway: RawGateway,
    /// `[store]`: the SQLite database that holds every received message.
    #[serde(default)]
    pub store: RawStore,
    /// `[limits]`: protective maximums for what analyzers may send.
    #[serde(default)]
    pub limits: RawLimits,
    /// `[[sources]]`: one table per analyzer connection.
    #[serde(default)]
    pub sources: Vec<RawSource>,
    /// `[dhis2]`: where stored results are delivered. Without it pocketgate only buffers.
    pub dhis2: Option<RawDhis2>,
    /// `[web]`: the local web page and JSON API. Without it there is none.
    pub web: Option<super::web::RawWeb>,
    /// `[[destinations]]`: where results go besides `[dhis2]` (FHIR, HTTP APIs, TCP/UDP).
    #[serde(default)]
    pub destinations: Vec<super::destinations::RawDestination>,
}

/// `[dhis2]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDhis2 {
    /// Required. The server's base URL, without `/api`: `https://dhis2.example.org` or
    /// `https://example.org/dhis`.
    pub url: Option<Val<String>>,
    /// Basic auth user name (with `password_file` or `password_env`).
    pub username: Option<Val<String>>,
    /// File holding the password (first line). Secrets are never written in this file.
    pub password_file: Option<Val<PathBuf>>,
    /// Environment variable holding the password.
    pub password_env: Option<Val<String>>,
    /// File holding a personal access token (`d2pat_…`/`d2p_…`, DHIS2 2.38+); preferred over Basic.
    pub token_file: Option<Val<PathBuf>>,
    /// Environment variable holding a personal access token.
    pub token_env: Option<Val<String>>,
    /// Directory of Tempr files. Default `config/temprs`.
    pub temprs: Option<Val<PathBuf>>,
    /// Default organisation unit UID given to Temprs as `ctx.org_unit`.
    pub org_unit: Option<Val<String>>,
    /// Per-request timeout. Default `"60s"` (nginx's proxy timeout in front of DHIS2).
    pub timeout: Option<Val<RawDuration>>,
    /// Most events per request. Default 60 (DHIS2's own event sync page size).
    pub batch_events: Option<Val<i64>>,
    /// Most tracked entities per request. Default 20 (DHIS2's own tracker sync page size).
    pub batch_tracked_entities: Option<Val<i64>>,
    /// Most data values per request. Default 10000.
    pub batch_data_values: Option<Val<i64>>,
    /// First retry delay after a failed send; doubles (with jitter) up to `retry_max`. Default `"5s"`.
    pub retry_min: Option<Val<RawDuration>>,
    /// Longest retry delay. Default `"10m"`.
    pub retry_max: Option<Val<RawDuration>>,
    /// PEM file with an extra CA certificate (a self-hosted server's own CA).
    pub extra_ca_file: Option<Val<PathBuf>>,
}

/// `[gateway]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    /// A name for this gateway, shown in logs (and later in the web UI). Default `"pocketgate"`.
    pub name: Option<Val<String>>,
    /// Required. The directory that holds the database (and later Temprs and secrets); it is
    /// created if missing. A relative path is relative to the directory pocketgate starts in.
    pub data_dir: Option<Val<PathBuf>>,
}

/// `[store]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// The SQLite database file. Default `<data_dir>/pocketgate.db`.
    pub path: Option<Val<PathBuf>>,
    /// Most messages written in one group commit (one transaction, one fsync). Default 256,
    /// 1 ..= 65536.
    pub max_batch: Option<Val<i64>>,
    /// Commit requests that may wait for the writer before receiving slows down (back-pressure).
    /// Default 1024, 1 ..= 1048576.
    pub queue: Option<Val<i64>>,
    /// Delivered results older than this are deleted to free space (DHIS2 holds them; results
    /// not yet delivered, rejected or invalid are never deleted). Default `"365d"`,
    /// `"1h"` ..= `"3650d"`.
    pub keep_delivered: Option<Val<RawDuration>>,
}

/// `[limits]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Longest ASTM (E1381) frame accepted, in bytes. Default 65536, 241 ..= 65536 (the standard
    /// says 247 with framing, but real analyzers send far longer frames).
    pub max_frame_bytes: Option<Val<i64>>,
    /// Longest message (all frames of one transmission) accepted, in bytes. Default 1048576
    /// (1 MiB), 1024 ..= 16777216 (16 MiB).
    pub max_message_bytes: Option<Val<i64>>,
    /// Connections one TCP server source accepts at the same time (an ASTM/HL7/POCT1 source
    /// closes one more; an HTTP source answers it 503 with Retry-After). Default 4, 1 ..= 64.
    pub max_connections: Option<Val<i64>>,
}

/// `[[sources]]`: one analyzer connection. Which keys apply depends on `transport`; a key that
/// belongs to another transport is an error (so a typo cannot silently do nothing).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// Required. Names the source in logs and stored records: 1 to 32 of `a-z`, `0-9`, `_`, `-`;
    /// unique. Do not rename a source that has data: records keep the id they were received with.
    pub id: Option<Val<String>>,
    /// `false` keeps the source in the file without running it. Default `true`.
    pub enabled: Option<Val<bool>>,
    /// A device profile (`"sysmex-xn"`): its settings apply unless this source sets them, and
    /// its `[[tests]]` table names the test codes (docs/config.md "Device profiles").
    pub profile: Option<Val<String>>,
    /// Required. What the analyzer speaks: `"astm"` (ASTM E1381 framing + E1394 records),
    /// `"hl7"` (HL7 v2 over MLLP), `"poct1"` (POCT1-A2 XML over TCP), `"http"` (JSON, FHIR, CSV
    /// and XML results POSTed to the gateway; transport `"tcp-server"`), `"mqtt"` (messages
    /// from an MQTT broker; transport `"mqtt"`, formats per topic), `"modbus"` (the gateway
    /// polls a Modbus TCP/RTU device; with `[sources.modbus]`) or `"file"` (export files in a
    /// folder or on a USB stick; transport `"folder"`, table `[sources.export]`).
    pub protocol: Option<Val<RawProtocol>>,
    /// http: file holding the bearer token senders must present. Default: no token required.
    pub token_file: Option<Val<PathBuf>>,
    /// http: environment variable holding the bearer token.
    pub token_env: Option<Val<String>>,
    /// http: largest accepted request body in bytes. Default 1048576, 1024 ..= 16777216.
    pub max_body: Option<Val<i64>>,
    /// ASTM: how the analyzer encodes text, `"latin1"` or `"utf8"`. Default `"latin1"`.
    pub encoding: Option<Val<RawEncoding>>,
    /// ASTM: a half-received message is dropped after this much silence. Default `"30s"`,
    /// `"1s"` ..= `"10m"`.
    pub receive_timeout: Option<Val<RawDuration>>,
    /// Required. How the analyzer is connected: `"tcp-server"`, `"tcp-client"`, `"serial"` or
    /// `"mqtt"` (subscribe on a broker; settings in `[sources.mqtt]`) or `"folder"`.
    pub transport: Option<Val<RawTransport>>,
    /// tcp-server (required): the address and port the gateway listens on, e.g. `"0.0.0.0:5100"`.
    pub listen: Option<Val<String>>,
    /// tcp-client (required): the analyzer's IP address and port, e.g. `"192.168.1.20:5000"`.
    pub connect: Option<Val<String>>,
    /// tcp-client: first wait before reconnecting. Default `"1s"`, `"100ms"` ..= `"10m"`.
    pub backoff_min: Option<Val<RawDuration>>,
    /// tcp-client: the wait doubles after each failure up to this. Default `"60s"`,
    /// `"1s"` ..= `"1h"`, at least `backoff_min`.
    pub backoff_max: Option<Val<RawDuration>>,
    /// serial (required unless `usb` is given): the device, e.g. `"/dev/ttyUSB0"` or
    /// `"/dev/serial/by-id/…"`; `*` and `?` in the file name match an adapter that is plugged in
    /// later (`"/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_*-if00-port0"`).
    pub port: Option<Val<String>>,
    /// serial: the USB-serial adapter by its USB id `"vendor:product"` in hex (`"0403:6001"`),
    /// found in sysfs whichever `/dev/ttyUSB*`/`ttyACM*` it gets; instead of `port`.
    pub usb: Option<Val<String>>,
    /// serial: with `usb`, the adapter's USB serial number (`"A50285BI"`), to tell two alike apart.
    pub usb_serial: Option<Val<String>>,
    /// serial: bits per second, one of 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200.
    /// Default 9600.
    pub baud: Option<Val<i64>>,
    /// serial: 7 or 8. Default 8.
    pub data_bits: Option<Val<i64>>,
    /// serial: `"none"`, `"even"` or `"odd"`. Default `"none"`.
    pub parity: Option<Val<RawParity>>,
    /// serial: 1 or 2. Default 1.
    pub stop_bits: Option<Val<i64>>,
    /// serial: `"none"`, `"software"` (XON/XOFF) or `"hardware"` (RTS/CTS). Default `"none"`.
    pub flow_control: Option<Val<RawFlowControl>>,
    /// serial: wait before trying again to open a missing or unplugged port (it doubles up to 8×).
    /// Default `"2s"`, `"100ms"` ..= `"5m"`.
    pub reopen_after: Option<Val<RawDuration>>,
    /// mqtt (required): `[sources.mqtt]`, the broker and the topics (see `super::mqtt`).
    pub mqtt: Option<super::mqtt::RawMqtt>,
    /// modbus (required): `[sources.modbus]`, what to poll (see docs/config.md).
    pub modbus: Option<super::modbus::RawModbus>,
    /// folder (required): the folder whose export files are read, e.g. a USB stick's mount point
    /// `"/media/usb0"`; it may come and go.
    pub path: Option<Val<String>>,
    /// folder: which file names are read, `*`/`?` wildcards, case-insensitive. Default `"*"`.
    pub pattern: Option<Val<String>>,
    /// folder: time between scans. Default `"5s"`, `"200ms"` ..= `"1h"`.
    pub scan_interval: Option<Val<RawDuration>>,
    /// file: `[sources.export]`, how the files are read (format, encoding, columns).
    pub export: Option<super::export::RawExport>,
}

/// `protocol = …` (a closed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawProtocol {
    Astm,
    Hl7,
    Poct1,
    Http,
    Mqtt,
    Modbus,
    File,
}

/// `encoding = …`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawEncoding {
    Latin1,
    Utf8,
}

/// `transport = …`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RawTransport {
    TcpServer,
    TcpClient,
    Serial,
    Mqtt,
    Folder,
}

impl RawTransport {
    /// The name as written in the file.
    pub fn name(self) -> &'static str {
        match self {
            RawTransport::TcpServer => "tcp-server",
            RawTransport::TcpClient => "tcp-client",
            RawTransport::Serial => "serial",
            RawTransport::Mqtt => "mqtt",
            RawTransport::Folder => "folder",
        }
    }
}

/// `parity = …`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawParity {
    None,
    Even,
    Odd,
}

/// `flow_control = …`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawFlowControl {
    None,
    Software,
    Hardware,
}

/// A duration as written (`"500ms"`, `"30s"`, `"5m"`, `"1h"`); parsed by validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawDuration(pub String);

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"30s\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDuration, E> {
                Ok(RawDuration(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawDuration, E> {
                Err(E::custom(format!(
                    "{v} is not a duration (write it with a unit in quotes, e.g. \"{v}s\" or \"{v}ms\")"
                )))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// One value from the file with where it was written. A value of the wrong type is kept as
/// `Err(message)` rather than failing the file, so it is reported together with every other
/// mistake.
#[derive(Debug, Clone, PartialEq)]
pub struct Val<T> {
    /// Byte range in the file (absent only for implicit tables such as `baud.x = 1`).
    pub span: Option<Range<usize>>,
    pub value: Result<T, String>,
}

// `toml::Spanned` fails on values without a span; this speaks the same (toml-specific) protocol
// but accepts both, and defers the type check.
pub(super) const SPANNED_NAME: &str = "$__serde_spanned_private_Spanned";
pub(super) const SPANNED_START: &str = "$__serde_spanned_private_start";
pub(super) const SPANNED_END: &str = "$__serde_spanned_private_end";
pub(super) const SPANNED_VALUE: &str = "$__serde_spanned_private_value";
pub(super) const SPANNED_FIELDS: &[&str] = &[SPANNED_START, SPANNED_END, SPANNED_VALUE];
/// toml hands datetimes to serde as a one-key map with this key.
pub(super) const DATETIME_KEY: &str = "$__toml_private_datetime";

/// Reads the rest of a spanned map (`START` already consumed): `(span, value)`.
fn read_spanned<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    mut map: A,
) -> Result<(Range<usize>, T), A::Error> {
    let start: usize = map.next_value()?;
    let end = match map.next_key::<String>()? {
        Some(k) if k == SPANNED_END => map.next_value::<usize>()?,
        _ => return Err(de::Error::custom("malformed spanned value")),
    };
    let value = match map.next_key::<String>()? {
        Some(k) if k == SPANNED_VALUE => map.next_value::<T>()?,
        _ => return Err(de::Error::custom("malformed spanned value")),
    };
    Ok((start..end, value))
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Val<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<T: DeserializeOwned> V<T> {
            fn unspanned<E>(value: toml::Value) -> Result<Val<T>, E> {
                Ok(Val {
                    span: None,
                    value: convert(value),
                })
            }
        }
        impl<'de, T: DeserializeOwned> Visitor<'de> for V<T> {
            type Value = Val<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Val<T>, A::Error> {
                let Some(first) = map.next_key::<String>()? else {
                    return Self::unspanned(toml::Value::Table(toml::Table::new()));
                };
                if first == SPANNED_START {
                    let (span, value) = read_spanned::<A, toml::Value>(map)?;
                    return Ok(Val {
                        span: Some(span),
                        value: convert(value),
                    });
                }
                let mut table = toml::Table::new();
                table.insert(first, map.next_value()?);
                while let Some((k, v)) = map.next_entry::<String, toml::Value>()? {
                    table.insert(k, v);
                }
                Self::unspanned(toml::Value::Table(table))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Val<T>, A::Error> {
                let mut items = Vec::new();
                while let Some(v) = seq.next_element::<toml::Value>()? {
                    items.push(v);
                }
                Self::unspanned(toml::Value::Array(items))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Val<T>, E> {
                Self::unspanned(toml::Value::Boolean(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Val<T>, E> {
                Self::unspanned(toml::Value::Integer(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Val<T>, E> {
                Self::unspanned(toml::Value::Float(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Val<T>, E> {
                Self::unspanned(toml::Value::String(v.to_owned()))
            }
        }
        deserializer.deserialize_struct(SPANNED_NAME, SPANNED_FIELDS, V(std::marker::PhantomData))
    }
}

fn convert<T: DeserializeOwned>(value: toml::Value) -> Result<T, String> {
    // toml would hand a datetime to a string field as text; no key here takes a datetime.
    if let toml::Value::Datetime(d) = value {
        return Err(format!(
            "invalid type: datetime {d}, expected text in quotes or a number"
        ));
    }
    T::deserialize(value).map_err(|e| one_line(e.message()))
}

pub(super) fn one_line(message: &str) -> String {
    message
        .trim()
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The shape of the document: tables, arrays and where each value was written.
#[derive(Debug)]
pub(super) struct Node {
    pub span: Option<Range<usize>>,
    pub kind: Kind,
}

#[derive(Debug)]
pub(super) enum Kind {
    Table(Vec<(String, Node)>),
    Array(Vec<Node>),
    Scalar,
}

impl Node {
    /// The node at a path of table keys (`["sources", "1"]` indexes arrays).
    pub fn get(&self, path: &[&str]) -> Option<&Node> {
        let Some((first, rest)) = path.split_first() else {
            return Some(self);
        };
        let child = match &self.kind {
            Kind::Table(entries) => entries.iter().find(|(k, _)| k == first).map(|(_, v)| v),
            Kind::Array(items) => first.parse::<usize>().ok().and_then(|i| items.get(i)),
            Kind::Scalar => None,
        }?;
        child.get(rest)
    }

    /// Where this value starts: its own span, or for an implicit table (`a.b = 1`), which has
    /// none, its first spanned descendant.
    pub fn start(&self) -> Option<usize> {
        if let Some(span) = &self.span {
            return Some(span.start);
        }
        match &self.kind {
            Kind::Table(entries) => entries.iter().filter_map(|(_, v)| v.start()).min(),
            Kind::Array(items) => items.iter().filter_map(Node::start).min(),
            Kind::Scalar => None,
        }
    }
}

/// The keys a `Raw*` struct accepts, read from its serde derive so the list cannot drift.
pub(super) fn keys_of<T: DeserializeOwned>() -> &'static [&'static str] {
    #[derive(Debug)]
    struct Fields(&'static [&'static str]);
    impl fmt::Display for Fields {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("field probe")
        }
    }
    impl std::error::Error for Fields {}
    impl de::Error for Fields {
        fn custom<M: fmt::Display>(_: M) -> Self {
            Fields(&[])
        }
    }
    struct Probe;
    impl<'de> Deserializer<'de> for Probe {
        type Error = Fields;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Fields> {
            Err(Fields(&[]))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Fields> {
            Err(Fields(fields))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    match T::deserialize(Probe) {
        Err(Fields(fields)) => fields,
        Ok(_) => &[],
    }
}

/// The 1-based line of a byte offset.
pub(super) fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The file read into `Raw*` types, with its shape tree for lines of things that are missing.
pub(super) struct Raw {
    pub config: RawConfig,
    pub tree: Node,
}

/// Pass 1 and 2 (see the module docs) over an already parsed document. Errors here are
/// structural: syntax, unknown keys, sections of the wrong shape. They are all returned together;
/// value errors come later.
/// The document is a config with its profiles merged in; `text` is the text its spans point into.
pub(super) fn read_tree(text: &str, doc: &super::profile::Tree) -> Result<Raw, Vec<ConfigError>> {
    let tree = doc.to_node();
    let mut errors = Vec::new();
    check_shape(text, &tree, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    match RawConfig::deserialize(doc.deserializer()) {
        Ok(config) => Ok(Raw { config, tree }),
        Err(e) => Err(vec![ConfigError {
            path: String::new(),
            line: None,
            message: one_line(e.message()),
        }]),
    }
}

fn check_shape(text: &str, tree: &Node, errors: &mut Vec<ConfigError>) {
    let line = |n: &Node| n.start().map(|s| line_at(text, s));
    let Kind::Table(top) = &tree.kind else {
        return;
    };
    let table = |path: &str, node: &Node, keys: &[&str], errors: &mut Vec<ConfigError>| {
        let Kind::Table(entries) = &node.kind else {
            errors.push(ConfigError {
                path: path.to_owned(),
                line: line(node),
                message: "expected a table".into(),
            });
            return;
        };
        for (key, value) in entries {
            if !keys.contains(&key.as_str()) {
                errors.push(ConfigError {
                    path: join(path, key),
                    line: line(value),
                    message: unknown_key(key, keys),
                });
            }
        }
    };
    for (key, node) in top {
        match key.as_str() {
            "gateway" => table(key, node, keys_of::<RawGateway>(), errors),
            "store" => table(key, node, keys_of::<RawStore>(), errors),
            "limits" => table(key, node, keys_of::<RawLimits>(), errors),
            "dhis2" => table(key, node, keys_of::<RawDhis2>(), errors),
            "web" => table(key, node, keys_of::<super::web::RawWeb>(), errors),
            "sources" => match &node.kind {
                Kind::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        table(
                            &format!("sources[{i}]"),
                            item,
                            keys_of::<RawSource>(),
                            errors,
                        );
                        if let Some(mqtt) = item.get(&["mqtt"]) {
                            let path = format!("sources[{i}].mqtt");
                            super::mqtt::check_shape(text, &path, mqtt, errors);
                        }
                        super::modbus::check_shape(text, i, item, errors);
                        if let Some(export) = item.get(&["export"]) {
                            let keys = keys_of::<super::export::RawExport>();
                            table(&format!("sources[{i}].export"), export, keys, errors);
                        }
                    }
                }
                _ => errors.push(ConfigError {
                    path: key.clone(),
                    line: line(node),
                    message: "expected a list of tables: write each source as [[sources]]".into(),
                }),
            },
            "destinations" => match &node.kind {
                Kind::Array(items) => {
                    let keys = keys_of::<super::destinations::RawDestination>();
                    for (i, item) in items.iter().enumerate() {
                        table(&format!("destinations[{i}]"), item, keys, errors);
                    }
                }
                _ => errors.push(ConfigError {
                    path: key.clone(),
                    line: line(node),
                    message:
                        "expected a list of tables: write each destination as [[destinations]]"
                            .into(),
                }),
            },
            _ => errors.push(ConfigError {
                path: key.clone(),
                line: line(node),
                message: unknown_key(key, keys_of::<RawConfig>()),
            }),
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

pub(super) fn unknown_key(key: &str, known: &[&str]) -> String {
    let closest = known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|&(d, k)| {
            let similar = d <= 1 || (d <= 2 && key.len() >= 5);
            similar || (key.len() >= 3 && (key.contains(k) || k.contains(key)))
        })
        .min();
    match closest {
        Some((_, k)) => format!("unknown key (did you mean \"{k}\"?)"),
        None => format!("unknown key (expected one of: {})", known.join(", ")),
    }
}

/// Levenshtein distance, for "did you mean" on unknown keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}
