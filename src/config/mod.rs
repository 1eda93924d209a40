//! Configuration: the raw TOML types (`raw`) are resolved into the validated [`Config`] below.
//! Validation collects every error with its path (`sources[1].baud: …`) before failing.

pub mod destinations;
pub mod export;
pub mod modbus;
pub mod mqtt;
pub mod profile;
pub mod raw;
pub mod usb;

pub use mqtt::{MqttSettings, MqttTls, MqttTopic, PayloadFormat};
pub mod web;

use crate::record::SourceId;
use raw::{RawConfig, RawDuration, RawSource, RawTransport, Val};
use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The validated configuration the gateway runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub gateway: Gateway,
    pub store: StoreSettings,
    pub limits: Limits,
    pub sources: Vec<SourceConfig>,
    /// Where results go; `None` = buffer only.
    pub dhis2: Option<Dhis2Settings>,
    /// The web UI and JSON API; `None` = none.
    pub web: Option<web::WebSettings>,
    /// `[[destinations]]`: targets other than DHIS2 (FHIR, HTTP APIs, TCP/UDP), enabled or not.
    pub destinations: Vec<destinations::Destination>,
}

/// `[dhis2]`, validated. Secrets are named here (file or env var), read when sync starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Dhis2Settings {
    pub url: String,
    pub auth: Dhis2Auth,
    pub temprs_dir: PathBuf,
    pub org_unit: Option<String>,
    pub timeout: Duration,
    pub batch_events: usize,
    pub batch_tracked_entities: usize,
    pub batch_data_values: usize,
    pub retry_min: Duration,
    pub retry_max: Duration,
    pub extra_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Dhis2Auth {
    Basic {
        username: String,
        password: SecretRef,
    },
    Token(SecretRef),
}

/// A secret file other users can read is worth a warning on every start (docs/security.md):
/// the image creates them 0600; a hand-made one often is 0644.
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                file = %path.display(),
                mode = format!("{mode:o}"),
                "secret file is readable by other users; run: chmod 600 {}",
                path.display()
            );
        }
    }
}

/// Where a secret lives; the secret itself never enters the config, logs or the UI.
#[derive(Debug, Clone, PartialEq)]
pub enum SecretRef {
    File(PathBuf),
    Env(String),
}

impl SecretRef {
    /// Read the secret (first line of the file, or the variable), naming what failed.
    pub fn read(&self) -> Result<String, String> {
        match self {
            SecretRef::File(p) => {
                warn_if_shared(p);
                std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read secret file {}: {e}", p.display()))
                    .and_then(|s| {
                        let line = s.lines().next().unwrap_or("").trim().to_owned();
                        if line.is_empty() {
                            Err(format!("secret file {} is empty", p.display()))
                        } else {
                            Ok(line)
                        }
                    })
            }
            SecretRef::Env(v) => std::env::var(v)
                .map_err(|_| format!("environment variable {v} is not set"))
                .and_then(|s| {
                    if s.trim().is_empty() {
                        Err(format!("environment variable {v} is empty"))
                    } else {
                        Ok(s.trim().to_owned())
                    }
                }),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Gateway {
    /// Shown in logs and (later) the web UI.
    pub name: String,
    /// Directory that holds the SQLite store (and later Temprs and secrets).
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoreSettings {
    /// SQLite database file; default `<data_dir>/pocketgate.db`.
    pub path: PathBuf,
    /// Most messages one group commit (one transaction + fsync) may hold.
    pub max_batch: usize,
    /// Commit requests that may wait for the writer before ingest is back-pressured.
    pub queue: usize,
    /// Delivered messages older than this are deleted (DHIS2 holds them); frees space for new
    /// results on a small card.
    pub keep_delivered: Duration,
}

/// Limits with defaults; each has a line in the README limits table.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Longest E1381 frame accepted (real frames exceed 240 chars: Yumizen sends 26 651 bytes).
    pub max_frame_bytes: usize,
    /// Longest reassembled message; beyond it the frame is NAKed and the message dropped.
    pub max_message_bytes: usize,
    /// Concurrent connections per TCP server source.
    pub max_connections: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SourceConfig {
    pub id: SourceId,
    pub enabled: bool,
    pub protocol: Protocol,
    pub transport: Transport,
    /// Test names, units and LOINC codes from the source's profile (empty without one).
    pub tests: profile::TestTable,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Protocol {
    Astm(AstmSettings),
    /// HL7 v2 over MLLP (protocols.md §1.3).
    Hl7(StreamSettings),
    /// POCT1-A2 XML conversation over TCP (protocols.md §1.4).
    Poct1(StreamSettings),
    /// Results POSTed over HTTP (JSON, FHIR, CSV, XML).
    Http(HttpSettings),
    /// Messages from an MQTT broker; the payload format is per topic ([`MqttSettings`]).
    Mqtt,
    /// Modbus RTU/TCP polling (protocols.md §1.6).
    Modbus(modbus::ModbusSettings),
    /// Export files read from a folder (protocols.md §1.5).
    File(Box<crate::protocol::export::ExportMapping>),
}

impl Protocol {
    /// The name as written in the config and stored with each message.
    pub fn name(&self) -> &'static str {
        match self {
            Protocol::Astm(_) => "astm",
            Protocol::Hl7(_) => "hl7",
            Protocol::Poct1(_) => "poct1",
            Protocol::Http(_) => "http",
            Protocol::Mqtt => "mqtt",
            Protocol::Modbus(_) => "modbus",
            Protocol::File(_) => "file",
        }
    }
}

/// Settings of a byte-stream protocol other than ASTM.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSettings {
    /// Text encoding when the message does not declare one.
    pub encoding: Encoding,
    /// A half-received message is dropped after this much silence.
    pub receive_timeout: Duration,
}

/// `protocol = "http"`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSettings {
    /// Bearer token senders must present (`Authorization: Bearer …`); `None` = no token.
    pub token: Option<SecretRef>,
    /// Largest accepted body.
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AstmSettings {
    /// Text encoding of the device (checksums are over bytes; decoding happens after).
    pub encoding: Encoding,
    /// E1381 receiver timeout: a half message is dropped after this much silence (standard: 30 s).
    pub receive_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Latin1,
    Utf8,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    Serial(SerialSettings),
    /// The analyzer connects to the gateway.
    TcpServer {
        listen: SocketAddr,
    },
    /// The gateway connects to the analyzer and reconnects with exponential backoff.
    TcpClient {
        connect: SocketAddr,
        backoff_min: Duration,
        backoff_max: Duration,
    },
    /// The gateway subscribes on an MQTT broker (boxed: the largest variant by far).
    Mqtt(Box<MqttSettings>),
    /// Export files in a watched folder (a USB stick, a share).
    Folder(export::FolderSettings),
}

#[derive(Debug, Clone, PartialEq)]
pub struct SerialSettings {
    /// Device path: `/dev/ttyUSB0`, `/dev/ttyACM0`, `/dev/serial/by-id/…`, `/dev/ttyAMA0`, or a
    /// pattern with `*`/`?` in the file name; empty when the adapter is named by `usb`.
    pub port: String,
    /// The adapter by USB id, looked up in sysfs at each (re)open (see `ingest::usb_serial`).
    pub usb: Option<usb::UsbId>,
    pub baud: u32,
    pub data_bits: DataBits,
    pub parity: Parity,
    pub stop_bits: StopBits,
    pub flow_control: FlowControl,
    /// Wait between attempts to open a missing/unplugged port (doubles up to 8× this).
    pub reopen_after: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataBits {
    Seven,
    Eight,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    None,
    Even,
    Odd,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopBits {
    One,
    Two,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowControl {
    None,
    Software,
    Hardware,
}

/// Baud rates a serial source may use.
pub const SUPPORTED_BAUD_RATES: [u32; 8] = [1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200];

/// The example configuration shipped in `config/pocketgate.toml` (parsed by a test, so it cannot
/// rot).
pub fn example() -> &'static str {
    include_str!("../../config/pocketgate.toml")
}

/// Reads and validates a config file. A read error names the file; every mistake in the text is
/// reported at once. Profiles are looked up in `profiles/` next to the file, then built in.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_with(&text, &profile::Profiles::next_to(path)),
        Err(e) => Err(ConfigErrors(vec![ConfigError {
            path: path.display().to_string(),
            line: None,
            message: format!("cannot read the config file: {e}"),
        }])),
    }
}

/// Parses and validates config text (built-in profiles only).
///
/// Structural mistakes (TOML syntax, unknown keys, a section of the wrong shape) are reported
/// first, all together: an unknown key is usually a misspelt known one, whose "missing" errors
/// would only add noise. Once the structure is right, every value mistake is reported at once.
pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
    parse_with(text, &profile::Profiles::builtin())
}

/// [`parse`] with profiles looked up in `profiles` (see [`profile`]).
pub fn parse_with(text: &str, profiles: &profile::Profiles) -> Result<Config, ConfigErrors> {
    let expanded = profile::expand(text, profiles).map_err(|e| ConfigErrors(vec![e]))?;
    let origins = &expanded.origins;
    let finish = |mut errors: Vec<ConfigError>| {
        errors.extend(expanded.errors.iter().cloned());
        ConfigErrors::sorted(errors.into_iter().map(|e| origins.map(e)).collect())
    };
    let raw = raw::read_tree(&expanded.text, &expanded.tree).map_err(finish)?;
    let mut check = Check {
        text: &expanded.text,
        tree: &raw.tree,
        tests: &expanded.tests,
        errors: Vec::new(),
    };
    let config = check.config(&raw.config);
    match config {
        Some(config) if check.errors.is_empty() && expanded.errors.is_empty() => Ok(config),
        _ => Err(finish(check.errors)),
    }
}

/// Every mistake found in a config, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    fn sorted(mut errors: Vec<ConfigError>) -> Self {
        errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        ConfigErrors(errors)
    }
}

impl fmt::Display for ConfigErrors {
    /// One error per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// One mistake: `sources[1].baud (line 23): 96000 is not a supported baud rate (…)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where in the config: `sources[1].baud`, `gateway.data_dir`; empty for a TOML syntax
    /// error; the file path for a read error.
    pub path: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.path.is_empty(), self.line) {
            (false, Some(line)) => write!(f, "{} (line {line}): {}", self.path, self.message),
            (false, None) => write!(f, "{}: {}", self.path, self.message),
            (true, Some(line)) => write!(f, "line {line}: {}", self.message),
            (true, None) => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A DHIS2 UID: 11 characters, a letter then letters/digits (dhis2.md §3).
pub fn valid_uid(s: &str) -> bool {
    s.len() == 11
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Parses `"500ms"`, `"30s"`, `"5m"`, `"1h"`: whole number, then unit, no space.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return None;
    }
    let n: u64 = number.parse().ok()?;
    let millis = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => None,
    }?;
    Some(Duration::from_millis(millis))
}

/// Formats a duration the way the file writes it (`"500ms"`, `"30s"`, `"10m"`, `"1h"`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".to_owned(),
        _ if ms.is_multiple_of(86_400_000) => format!("{}d", ms / 86_400_000),
        _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1_000) => format!("{}s", ms / 1_000),
        _ => format!("{ms}ms"),
    }
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}
const fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// The keys each transport owns; any other transport's key is an error.
const TRANSPORT_KEYS: [(RawTransport, &[&str]); 4] = [
    (RawTransport::Folder, &export::FOLDER_KEYS),
    (RawTransport::TcpServer, &["listen"]),
    (
        RawTransport::TcpClient,
        &["connect", "backoff_min", "backoff_max"],
    ),
    (
        RawTransport::Serial,
        &[
            "port",
            "baud",
            "data_bits",
            "parity",
            "stop_bits",
            "flow_control",
            "reopen_after",
            "usb",
            "usb_serial",
        ],
    ),
];

/// Validation: turns `Raw*` into [`Config`], collecting every mistake.
struct Check<'a> {
    text: &'a str,
    tree: &'a raw::Node,
    /// Each source's test table from its profile, by index.
    tests: &'a [profile::TestTable],
    errors: Vec<ConfigError>,
}

impl Check<'_> {
    fn line<T>(&self, v: &Val<T>) -> Option<usize> {
        v.span.as_ref().map(|s| raw::line_at(self.text, s.start))
    }

    /// The line of a table header such as `[gateway]` or the `i`-th `[[sources]]`.
    fn line_of(&self, path: &[&str]) -> Option<usize> {
        let start = self.tree.get(path)?.start()?;
        Some(raw::line_at(self.text, start))
    }

    /// The line of `sources[1].baud` found through the shape tree (for values without a span).
    fn line_at_path(&self, path: &str) -> Option<usize> {
        let dotted = path.replace('[', ".").replace(']', "");
        let parts: Vec<&str> = dotted.split('.').collect();
        self.line_of(&parts)
    }

    fn error(&mut self, path: &str, line: Option<usize>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            path: path.to_owned(),
            line,
            message: message.into(),
        });
    }

    /// A present, well-typed value with its line; a wrongly typed one is recorded as an error
    /// and read as absent (validation goes on, the config is not built).
    fn get<'v, T>(&mut self, path: &str, v: &'v Option<Val<T>>) -> Option<(&'v T, Option<usize>)> {
        let v = v.as_ref()?;
        let line = self.line(v).or_else(|| self.line_at_path(path));
        match &v.value {
            Ok(value) => Some((value, line)),
            Err(message) => {
                self.error(path, line, message.clone());
                None
            }
        }
    }

    fn required<'v, T>(
        &mut self,
        path: &str,
        v: &'v Option<Val<T>>,
        table_line: Option<usize>,
        hint: &str,
    ) -> Option<(&'v T, Option<usize>)> {
        if v.is_none() {
            self.error(path, table_line, format!("required ({hint})"));
        }
        self.get(path, v)
    }

    fn int(
        &mut self,
        path: &str,
        v: &Option<Val<i64>>,
        default: usize,
        range: RangeInclusive<i64>,
    ) -> usize {
        match self.get(path, v) {
            Some((&n, line)) => {
                if range.contains(&n) {
                    usize::try_from(n).unwrap_or(default)
                } else {
                    self.error(
                        path,
                        line,
                        format!(
                            "{n} is out of range ({} ..= {})",
                            range.start(),
                            range.end()
                        ),
                    );
                    default
                }
            }
            None => default,
        }
    }

    fn duration(
        &mut self,
        path: &str,
        v: &Option<Val<RawDuration>>,
        default: Duration,
        range: RangeInclusive<Duration>,
    ) -> Duration {
        let Some((RawDuration(text), line)) = self.get(path, v) else {
            return default;
        };
        match parse_duration(text) {
            Some(d) if range.contains(&d) => d,
            Some(_) => {
                let (min, max) = (
                    format_duration(*range.start()),
                    format_duration(*range.end()),
                );
                self.error(
                    path,
                    line,
                    format!("\"{text}\" is out of range ({min} ..= {max})"),
                );
                default
            }
            None => {
                self.error(
                    path,
                    line,
                    format!("\"{text}\" is not a duration (use e.g. \"30s\", \"500ms\", \"5m\")"),
                );
                default
            }
        }
    }

    fn socket_addr(
        &mut self,
        path: &str,
        text: &str,
        line: Option<usize>,
        example: &str,
    ) -> Option<SocketAddr> {
        match text.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.error(
                    path,
                    line,
                    format!("\"{text}\" is not an IP address and port (e.g. \"{example}\"; host names are not supported)"),
                );
                None
            }
        }
    }

    /// A required `http(s)://` base URL at `path`, without its trailing `/`, with its line.
    fn base_url(
        &mut self,
        path: &str,
        v: &Option<Val<String>>,
        table_line: Option<usize>,
        example: &str,
    ) -> Option<(String, Option<usize>)> {
        let (u, line) = self.required(path, v, table_line, &format!("e.g. url = \"{example}\""))?;
        let u = u.trim_end_matches('/').to_owned();
        if !(u.starts_with("https://") || u.starts_with("http://")) {
            self.error(
                path,
                line,
                format!("\"{u}\" must start with https:// (or http:// on a trusted network)"),
            );
        }
        Some((u, line))
    }

    /// Where a secret lives: `<what>_file` or `<what>_env` in the table at `table` (`dhis2`,
    /// `destinations[0]`), never both; `None` when neither is given (or after that error).
    fn secret(
        &mut self,
        table: &str,
        what: &str,
        file: &Option<Val<PathBuf>>,
        env: &Option<Val<String>>,
        table_line: Option<usize>,
    ) -> Option<SecretRef> {
        let f = self
            .get(&format!("{table}.{what}_file"), file)
            .map(|(p, _)| p.clone());
        let e = self
            .get(&format!("{table}.{what}_env"), env)
            .map(|(v, _)| v.clone());
        match (f, e) {
            (Some(_), Some(_)) => {
                self.error(
                    &format!("{table}.{what}_env"),
                    table_line,
                    format!("give {what}_file or {what}_env, not both"),
                );
                None
            }
            (Some(p), None) => Some(SecretRef::File(p)),
            (None, Some(v)) => Some(SecretRef::Env(v)),
            (None, None) => None,
        }
    }

    /// An id used twice in one list (`sources`, `destinations`), reported on the later entry
    /// with the index of the first.
    fn duplicate_ids<'v>(
        &mut self,
        list: &str,
        ids: impl Iterator<Item = Option<&'v Val<String>>>,
    ) {
        let ids: Vec<(usize, &str, Option<usize>)> = ids
            .enumerate()
            .filter_map(|(i, v)| {
                let v = v?;
                Some((i, v.value.as_deref().ok()?, self.line(v)))
            })
            .collect();
        for (n, &(i, id, line)) in ids.iter().enumerate() {
            if let Some(&(j, _, _)) = ids[..n].iter().find(|(_, other, _)| *other == id) {
                self.error(
                    &format!("{list}[{i}].id"),
                    line,
                    format!("\"{id}\" is already used by {list}[{j}]"),
                );
            }
        }
    }

    /// `retry_min` and `retry_max` of a section that sends (`dhis2`, `destinations[0]`): the
    /// first delay after a failure (default 5 s) and the most it doubles to (default 10 m, never
    /// below `retry_min`).
    fn retry_delays(
        &mut self,
        table: &str,
        min: &Option<Val<RawDuration>>,
        max: &Option<Val<RawDuration>>,
    ) -> (Duration, Duration) {
        let min = self.duration(
            &format!("{table}.retry_min"),
            min,
            secs(5),
            millis(100)..=secs(3600),
        );
        let max = self.duration(
            &format!("{table}.retry_max"),
            max,
            secs(600),
            secs(1)..=secs(86_400),
        );
        (min, max.max(min))
    }

    /// A required list entry id (`sources[0].id`), `[a-z0-9_-]{1,32}`, with its line.
    fn id(
        &mut self,
        path: &str,
        v: &Option<Val<String>>,
        table_line: Option<usize>,
    ) -> Option<(String, Option<usize>)> {
        const ALLOWED: &str = "1 to 32 of a-z, 0-9, \"_\", \"-\"";
        let (id, line) = self.required(path, v, table_line, ALLOWED)?;
        if valid_id(id) {
            return Some((id.clone(), line));
        }
        self.error(
            path,
            line,
            format!("\"{id}\" is not a valid id ({ALLOWED})"),
        );
        None
    }

    fn config(&mut self, raw: &RawConfig) -> Option<Config> {
        let gateway_line = self.line_of(&["gateway"]);
        let g = &raw.gateway;
        let name = match self.get("gateway.name", &g.name) {
            Some((name, line)) if name.trim().is_empty() => {
                self.error("gateway.name", line, "must not be empty");
                String::new()
            }
            Some((name, _)) => name.clone(),
            None => "pocketgate".to_owned(),
        };
        let data_dir = match self.required(
            "gateway.data_dir",
            &g.data_dir,
            gateway_line,
            "e.g. data_dir = \"/data/pocketgate\"",
        ) {
            Some((dir, line)) if dir.as_os_str().is_empty() => {
                self.error("gateway.data_dir", line, "must not be empty");
                None
            }
            Some((dir, _)) => Some(dir.clone()),
            None => None,
        };

        let s = &raw.store;
        let path = match self.get("store.path", &s.path) {
            Some((path, line)) if path.as_os_str().is_empty() => {
                self.error(
                    "store.path",
                    line,
                    "must not be empty (leave it out for <data_dir>/pocketgate.db)",
                );
                None
            }
            Some((path, _)) => Some(path.clone()),
            None => data_dir.as_ref().map(|d| d.join("pocketgate.db")),
        };
        let max_batch = self.int("store.max_batch", &s.max_batch, 256, 1..=65_536);
        let queue = self.int("store.queue", &s.queue, 1024, 1..=1_048_576);
        let keep_delivered = self.duration(
            "store.keep_delivered",
            &s.keep_delivered,
            Duration::from_secs(365 * 86_400),
            Duration::from_secs(3_600)..=Duration::from_secs(3_650 * 86_400),
        );

        let l = &raw.limits;
        let limits = Limits {
            max_frame_bytes: self.int(
                "limits.max_frame_bytes",
                &l.max_frame_bytes,
                65_536,
                241..=65_536,
            ),
            max_message_bytes: self.int(
                "limits.max_message_bytes",
                &l.max_message_bytes,
                1 << 20,
                1024..=16 << 20,
            ),
            max_connections: self.int("limits.max_connections", &l.max_connections, 4, 1..=64),
        };

        let mut sources = Vec::new();
        for (i, source) in raw.sources.iter().enumerate() {
            if let Some(source) = self.source(i, source) {
                sources.push((i, source));
            }
        }
        self.conflicts(&raw.sources, &sources);
        let dhis2 = match &raw.dhis2 {
            Some(d) => Some(self.dhis2(d)?),
            None => None,
        };

        let destinations = self.destinations(&raw.destinations);

        let resolved: Vec<SourceConfig> = sources.iter().map(|(_, s)| s.clone()).collect();
        let web = raw.web.as_ref().map(|w| self.web(w, &resolved));
        Some(Config {
            web,
            destinations,
            gateway: Gateway {
                name,
                data_dir: data_dir?,
            },
            store: StoreSettings {
                path: path?,
                max_batch,
                queue,
                keep_delivered,
            },
            limits,
            sources: sources.into_iter().map(|(_, s)| s).collect(),
            dhis2,
        })
    }

    fn dhis2(&mut self, d: &raw::RawDhis2) -> Option<Dhis2Settings> {
        let table_line = self.line_of(&["dhis2"]);
        let url = match self.base_url("dhis2.url", &d.url, table_line, "https://dhis2.example.org")
        {
            Some((u, line)) => {
                if u.ends_with("/api") {
                    self.error("dhis2.url", line, "leave out the trailing /api");
                }
                Some(u)
            }
            None => None,
        };
        let token = self.secret("dhis2", "token", &d.token_file, &d.token_env, table_line);
        let password = self.secret(
            "dhis2",
            "password",
            &d.password_file,
            &d.password_env,
            table_line,
        );
        let username = self
            .get("dhis2.username", &d.username)
            .map(|(u, _)| u.clone());
        let auth = match (token, username, password) {
            (Some(t), None, None) => Some(Dhis2Auth::Token(t)),
            (None, Some(username), Some(password)) => Some(Dhis2Auth::Basic { username, password }),
            (None, Some(_), None) => {
                self.error(
                    "dhis2.username",
                    table_line,
                    "needs password_file or password_env",
                );
                None
            }
            (None, None, Some(_)) => {
                self.error("dhis2.password_file", table_line, "needs username");
                None
            }
            (None, None, None) => {
                self.error("dhis2", table_line, "needs credentials: token_file/token_env, or username with password_file/password_env");
                None
            }
            (Some(_), _, _) => {
                self.error(
                    "dhis2.token_file",
                    table_line,
                    "give a token or a username/password, not both",
                );
                None
            }
        };
        let temprs_dir = self
            .get("dhis2.temprs", &d.temprs)
            .map(|(p, _)| p.clone())
            .unwrap_or_else(|| PathBuf::from("config/temprs"));
        let org_unit = match self.get("dhis2.org_unit", &d.org_unit) {
            Some((ou, line)) => {
                if !valid_uid(ou) {
                    self.error("dhis2.org_unit", line, format!("\"{ou}\" is not a DHIS2 UID (11 letters/digits, starting with a letter)"));
                }
                Some(ou.clone())
            }
            None => None,
        };
        let timeout = self.duration(
            "dhis2.timeout",
            &d.timeout,
            Duration::from_secs(60),
            Duration::from_secs(1)..=Duration::from_secs(600),
        );
        let (retry_min, retry_max) = self.retry_delays("dhis2", &d.retry_min, &d.retry_max);
        let settings = Dhis2Settings {
            url: url?,
            auth: auth?,
            temprs_dir,
            org_unit,
            timeout,
            batch_events: self.int("dhis2.batch_events", &d.batch_events, 60, 1..=1000),
            batch_tracked_entities: self.int(
                "dhis2.batch_tracked_entities",
                &d.batch_tracked_entities,
                20,
                1..=1000,
            ),
            batch_data_values: self.int(
                "dhis2.batch_data_values",
                &d.batch_data_values,
                10_000,
                1..=100_000,
            ),
            retry_min,
            retry_max,
            extra_ca_file: self
                .get("dhis2.extra_ca_file", &d.extra_ca_file)
                .map(|(p, _)| p.clone()),
        };
        Some(settings)
    }

    fn source(&mut self, i: usize, s: &RawSource) -> Option<SourceConfig> {
        let p = |key: &str| format!("sources[{i}].{key}");
        let index = i.to_string();
        let table_line = self.line_of(&["sources", &index]);

        let id = self
            .id(&p("id"), &s.id, table_line)
            .map(|(id, _)| SourceId(id));
        let enabled = self.get(&p("enabled"), &s.enabled).is_none_or(|(&e, _)| e);
        // Merged in before validation (profile.rs); here only its type is checked.
        self.get(&p("profile"), &s.profile);
        let protocol = self
            .required(
                &p("protocol"),
                &s.protocol,
                table_line,
                "protocol = \"astm\"",
            )
            .map(|(&p, _)| p);
        let encoding = match self.get(&p("encoding"), &s.encoding) {
            Some((raw::RawEncoding::Utf8, _)) => Encoding::Utf8,
            Some((raw::RawEncoding::Latin1, _)) | None => Encoding::Latin1,
        };
        let receive_timeout = self.duration(
            &p("receive_timeout"),
            &s.receive_timeout,
            secs(30),
            secs(1)..=secs(600),
        );
        let token_file = self
            .get(&p("token_file"), &s.token_file)
            .map(|(f, _)| f.clone());
        let token_env = self
            .get(&p("token_env"), &s.token_env)
            .map(|(v, _)| v.clone());
        let max_body = self.int(&p("max_body"), &s.max_body, 1 << 20, 1024..=16 << 20);
        if protocol != Some(raw::RawProtocol::Http) {
            for (key, set) in [
                ("token_file", s.token_file.is_some()),
                ("token_env", s.token_env.is_some()),
                ("max_body", s.max_body.is_some()),
            ] {
                if set {
                    self.error(
                        &p(key),
                        self.line_at_path(&p(key)),
                        "only used with protocol = \"http\"",
                    );
                }
            }
        }
        let modbus = match protocol {
            Some(raw::RawProtocol::Modbus) => self
                .modbus(
                    i,
                    s,
                    s.transport
                        .as_ref()
                        .is_some_and(|t| t.value == Ok(RawTransport::Serial)),
                    table_line,
                )
                .unwrap_or_default(),
            _ => {
                if s.modbus.is_some() {
                    let path = p("modbus");
                    self.error(
                        &path,
                        self.line_at_path(&path),
                        "only used with protocol = \"modbus\"",
                    );
                }
                modbus::ModbusSettings::default()
            }
        };
        let file = match protocol {
            Some(raw::RawProtocol::File) => self.file_protocol(i, s, table_line),
            _ => None,
        };
        let protocol = protocol.map(|proto| match proto {
            raw::RawProtocol::Astm => Protocol::Astm(AstmSettings {
                encoding,
                receive_timeout,
            }),
            raw::RawProtocol::Hl7 => Protocol::Hl7(StreamSettings {
                encoding: if s.encoding.is_some() {
                    encoding
                } else {
                    Encoding::Utf8
                },
                receive_timeout,
            }),
            raw::RawProtocol::Poct1 => Protocol::Poct1(StreamSettings {
                encoding: if s.encoding.is_some() {
                    encoding
                } else {
                    Encoding::Utf8
                },
                receive_timeout,
            }),
            raw::RawProtocol::Http => Protocol::Http(HttpSettings {
                token: match (token_file, token_env) {
                    (Some(f), _) => Some(SecretRef::File(f)),
                    (None, Some(v)) => Some(SecretRef::Env(v)),
                    (None, None) => None,
                },
                max_body_bytes: max_body,
            }),
            raw::RawProtocol::Mqtt => Protocol::Mqtt,
            raw::RawProtocol::Modbus => Protocol::Modbus(modbus),
            // Validated with its [sources.export] table above (config/export.rs); `file` below.
            raw::RawProtocol::File => Protocol::File(Box::default()),
        });
        let protocol = match protocol {
            Some(Protocol::File(_)) => file,
            other => other,
        };

        let transport_key = p("transport");
        let transport = self
            .required(
                &transport_key,
                &s.transport,
                table_line,
                "\"tcp-server\", \"tcp-client\", \"serial\", \"mqtt\" or \"folder\"",
            )
            .map(|(&t, _)| t);
        let Some(transport) = transport else {
            // Which keys belong is unknown; still type-check what is there.
            self.get(&p("listen"), &s.listen);
            self.get(&p("connect"), &s.connect);
            self.get(&p("port"), &s.port);
            return None;
        };

        self.mqtt_pairing(i, s, transport);
        // Keys of other transports: reported instead of their values.
        let present: [(&str, Option<Option<usize>>); 10] = [
            ("listen", s.listen.as_ref().map(|v| self.line(v))),
            ("connect", s.connect.as_ref().map(|v| self.line(v))),
            ("backoff_min", s.backoff_min.as_ref().map(|v| self.line(v))),
            ("backoff_max", s.backoff_max.as_ref().map(|v| self.line(v))),
            ("port", s.port.as_ref().map(|v| self.line(v))),
            ("baud", s.baud.as_ref().map(|v| self.line(v))),
            ("data_bits", s.data_bits.as_ref().map(|v| self.line(v))),
            ("parity", s.parity.as_ref().map(|v| self.line(v))),
            ("stop_bits", s.stop_bits.as_ref().map(|v| self.line(v))),
            (
                "flow_control",
                s.flow_control.as_ref().map(|v| self.line(v)),
            ),
        ];
        let reopen_after = s.reopen_after.as_ref().map(|v| self.line(v));
        let usb = [
            ("usb", s.usb.as_ref().map(|v| self.line(v))),
            ("usb_serial", s.usb_serial.as_ref().map(|v| self.line(v))),
        ];
        let owned: &[&str] = TRANSPORT_KEYS
            .iter()
            .find(|(t, _)| *t == transport)
            .map_or(&[], |(_, keys)| keys);
        for (key, line) in present
            .into_iter()
            .chain([("reopen_after", reopen_after)])
            .chain(usb)
        {
            if let (Some(line), false) = (line, owned.contains(&key)) {
                self.error(
                    &p(key),
                    line,
                    format!("not used by transport \"{}\"", transport.name()),
                );
            }
        }

        if matches!(protocol, Some(Protocol::Modbus(_))) && transport == RawTransport::TcpServer {
            self.error(
                &transport_key,
                self.line_at_path(&transport_key),
                "protocol \"modbus\" polls the device: transport = \"tcp-client\" or \"serial\"",
            );
        }
        if transport != RawTransport::Folder {
            self.folder_keys_elsewhere(i, s, transport.name());
        }
        let is_file = matches!(
            s.protocol.as_ref().map(|v| &v.value),
            Some(Ok(raw::RawProtocol::File))
        );
        if is_file != (transport == RawTransport::Folder) {
            self.error(
                &transport_key,
                self.line_at_path(&transport_key),
                "protocol \"file\" and transport \"folder\" go together",
            );
        }
        if matches!(protocol, Some(Protocol::Http(_))) && transport != RawTransport::TcpServer {
            self.error(
                &transport_key,
                self.line_at_path(&transport_key),
                format!(
                    "protocol \"http\" needs transport = \"tcp-server\" (not \"{}\")",
                    transport.name()
                ),
            );
        }
        let transport = match transport {
            RawTransport::TcpServer => {
                let (listen, line) = self.required(
                    &p("listen"),
                    &s.listen,
                    table_line,
                    "e.g. listen = \"0.0.0.0:5100\"",
                )?;
                Transport::TcpServer {
                    listen: self.socket_addr(&p("listen"), listen, line, "0.0.0.0:5100")?,
                }
            }
            RawTransport::TcpClient => {
                let connect = self.required(
                    &p("connect"),
                    &s.connect,
                    table_line,
                    "e.g. connect = \"192.168.1.20:5000\"",
                );
                let backoff_min = self.duration(
                    &p("backoff_min"),
                    &s.backoff_min,
                    secs(1),
                    millis(100)..=secs(600),
                );
                let backoff_max = self.duration(
                    &p("backoff_max"),
                    &s.backoff_max,
                    secs(60),
                    secs(1)..=secs(3600),
                );
                if backoff_max < backoff_min {
                    let line = s.backoff_max.as_ref().and_then(|v| self.line(v));
                    self.error(
                        &p("backoff_max"),
                        line,
                        format!(
                            "{} is less than backoff_min ({})",
                            format_duration(backoff_max),
                            format_duration(backoff_min)
                        ),
                    );
                }
                let (connect, line) = connect?;
                let connect =
                    self.socket_addr(&p("connect"), connect, line, "192.168.1.20:5000")?;
                Transport::TcpClient {
                    connect,
                    backoff_min,
                    backoff_max,
                }
            }
            RawTransport::Serial => self.serial(i, s, table_line)?,
            RawTransport::Mqtt => self.mqtt(i, s, table_line)?,
            RawTransport::Folder => self.folder(i, s, table_line)?,
        };

        Some(SourceConfig {
            id: id?,
            enabled,
            protocol: protocol?,
            transport,
            tests: self.tests.get(i).cloned().unwrap_or_default(),
        })
    }

    fn serial(&mut self, i: usize, s: &RawSource, table_line: Option<usize>) -> Option<Transport> {
        let p = |key: &str| format!("sources[{i}].{key}");
        let usb = self.usb_id(i, s);
        let port = match (&usb, &s.port) {
            (Some(Some(_)), None) => Some(String::new()),
            // A mistake in usb: reported; "port is required" would only add noise.
            (None, None) => None,
            (Some(Some(_)), Some(v)) => {
                let line = self.line(v);
                self.error(&p("port"), line, "give port or usb, not both");
                None
            }
            _ => match self.required(
                &p("port"),
                &s.port,
                table_line,
                "e.g. port = \"/dev/ttyUSB0\", or usb = \"0403:6001\"",
            ) {
                Some((port, line)) if port.trim().is_empty() => {
                    self.error(&p("port"), line, "must not be empty");
                    None
                }
                Some((port, line)) if !usb::glob_dir_is_literal(port) => {
                    self.error(
                        &p("port"),
                        line,
                        "\"*\" and \"?\" may only be used in the file name, not in the folders",
                    );
                    None
                }
                Some((port, _)) => Some(port.clone()),
                None => None,
            },
        };
        let baud = match self.get(&p("baud"), &s.baud) {
            Some((&n, line)) => match u32::try_from(n)
                .ok()
                .filter(|b| SUPPORTED_BAUD_RATES.contains(b))
            {
                Some(b) => b,
                None => {
                    let list = SUPPORTED_BAUD_RATES.map(|b| b.to_string()).join(", ");
                    self.error(
                        &p("baud"),
                        line,
                        format!("{n} is not a supported baud rate ({list})"),
                    );
                    9600
                }
            },
            None => 9600,
        };
        let data_bits = match self.get(&p("data_bits"), &s.data_bits) {
            Some((7, _)) => DataBits::Seven,
            Some((8, _)) | None => DataBits::Eight,
            Some((n, line)) => {
                self.error(
                    &p("data_bits"),
                    line,
                    format!("{n} is not supported (7 or 8)"),
                );
                DataBits::Eight
            }
        };
        let parity = match self.get(&p("parity"), &s.parity) {
            Some((raw::RawParity::Even, _)) => Parity::Even,
            Some((raw::RawParity::Odd, _)) => Parity::Odd,
            Some((raw::RawParity::None, _)) | None => Parity::None,
        };
        let stop_bits = match self.get(&p("stop_bits"), &s.stop_bits) {
            Some((2, _)) => StopBits::Two,
            Some((1, _)) | None => StopBits::One,
            Some((n, line)) => {
                self.error(
                    &p("stop_bits"),
                    line,
                    format!("{n} is not supported (1 or 2)"),
                );
                StopBits::One
            }
        };
        let flow_control = match self.get(&p("flow_control"), &s.flow_control) {
            Some((raw::RawFlowControl::Software, _)) => FlowControl::Software,
            Some((raw::RawFlowControl::Hardware, _)) => FlowControl::Hardware,
            Some((raw::RawFlowControl::None, _)) | None => FlowControl::None,
        };
        let reopen_after = self.duration(
            &p("reopen_after"),
            &s.reopen_after,
            secs(2),
            millis(100)..=secs(300),
        );
        Some(Transport::Serial(SerialSettings {
            port: port?,
            usb: usb.flatten(),
            baud,
            data_bits,
            parity,
            stop_bits,
            flow_control,
            reopen_after,
        }))
    }

    /// `usb` and `usb_serial`: `Some(None)` when neither is given, `None` after an error.
    fn usb_id(&mut self, i: usize, s: &RawSource) -> Option<Option<usb::UsbId>> {
        let p = |key: &str| format!("sources[{i}].{key}");
        let serial = self
            .get(&p("usb_serial"), &s.usb_serial)
            .map(|(v, _)| v.trim().to_owned());
        let Some((text, line)) = self.get(&p("usb"), &s.usb) else {
            if serial.is_some() {
                let line = self.line_at_path(&p("usb_serial"));
                self.error(
                    &p("usb_serial"),
                    line,
                    "only used with usb = \"vendor:product\"",
                );
                return None;
            }
            return Some(None);
        };
        match usb::UsbId::parse(text, serial.filter(|s| !s.is_empty())) {
            Some(id) => Some(Some(id)),
            None => {
                self.error(
                    &p("usb"),
                    line,
                    format!(
                        "\"{text}\" is not a USB id (vendor:product in hex, e.g. \"0403:6001\")"
                    ),
                );
                None
            }
        }
    }

    /// Duplicate ids (any source, as written), and listen addresses or serial ports shared by enabled
    /// sources (a disabled copy may keep the same address). Reported on the later source.
    fn conflicts(&mut self, raw: &[RawSource], resolved: &[(usize, SourceConfig)]) {
        self.duplicate_ids("sources", raw.iter().map(|s| s.id.as_ref()));
        let enabled: Vec<&(usize, SourceConfig)> =
            resolved.iter().filter(|(_, s)| s.enabled).collect();
        for (n, (i, a)) in enabled.iter().map(|e| (e.0, &e.1)).enumerate() {
            let earlier = || enabled[..n].iter().map(|e| (e.0, &e.1));
            match &a.transport {
                Transport::TcpServer { listen } => {
                    let clash = earlier().find_map(|(j, b)| match &b.transport {
                        Transport::TcpServer { listen: other } if addrs_clash(listen, other) => {
                            Some((j, *other))
                        }
                        _ => None,
                    });
                    if let Some((j, other)) = clash {
                        let line = raw
                            .get(i)
                            .and_then(|s| s.listen.as_ref())
                            .and_then(|v| self.line(v));
                        self.error(
                            &format!("sources[{i}].listen"),
                            line,
                            format!("{listen} conflicts with sources[{j}].listen ({other})"),
                        );
                    }
                }
                Transport::Serial(serial) => {
                    let clash = earlier().find_map(|(j, b)| match &b.transport {
                        Transport::Serial(other)
                            if other.port == serial.port && other.usb == serial.usb =>
                        {
                            Some(j)
                        }
                        _ => None,
                    });
                    if let Some(j) = clash {
                        let line = raw
                            .get(i)
                            .and_then(|s| s.port.as_ref())
                            .and_then(|v| self.line(v));
                        self.error(
                            &format!("sources[{i}].port"),
                            line,
                            match &serial.usb {
                                Some(id) => format!("{id} is already used by sources[{j}]"),
                                None => {
                                    format!("\"{}\" is already used by sources[{j}]", serial.port)
                                }
                            },
                        );
                    }
                }
                Transport::Mqtt(m) => {
                    let earlier: Vec<_> = earlier().collect();
                    self.mqtt_conflicts(i, m, &earlier);
                }
                Transport::TcpClient { .. } | Transport::Folder(_) => {}
            }
        }
    }
}

/// `[a-z0-9_-]{1,32}`
fn valid_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Two listen addresses that cannot both be bound: same port, and the same IP or either one the
/// wildcard. Port 0 (any free port, used by tests) never clashes.
fn addrs_clash(a: &SocketAddr, b: &SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<ConfigError> {
        match parse(text) {
            Ok(config) => panic!("expected errors, got {config:#?}"),
            Err(ConfigErrors(errors)) => errors,
        }
    }

    /// The one error at `path`, asserting it is the only one.
    fn only_error(text: &str) -> ConfigError {
        let errors = errors(text);
        assert_eq!(errors.len(), 1, "{}", ConfigErrors(errors.clone()));
        errors.into_iter().next().unwrap_or_else(|| unreachable!())
    }

    const MINIMAL: &str = "[gateway]\ndata_dir = \"/d\"\n";

    fn with_source(source: &str) -> String {
        format!("{MINIMAL}\n[[sources]]\nid = \"a\"\nprotocol = \"astm\"\n{source}")
    }

    #[test]
    fn example_config_parses() {
        let config = parse(example()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.gateway.name, "clinic-a");
        assert_eq!(config.gateway.data_dir, PathBuf::from("./data"));
        assert_eq!(config.store.path, PathBuf::from("./data/pocketgate.db"));
        // genexpert-1, sysmex-xn, cobas-c111, genexpert-2, lab-mqtt, pima-usb.
        assert_eq!(config.sources.len(), 6);
        let sysmex = &config.sources[1];
        assert_eq!(sysmex.id, SourceId("sysmex-xn".into()));
        assert_eq!(
            sysmex.transport,
            Transport::Serial(SerialSettings {
                port: "/dev/ttyUSB0".into(),
                usb: None,
                baud: 9600,
                data_bits: DataBits::Eight,
                parity: Parity::None,
                stop_bits: StopBits::One,
                flow_control: FlowControl::None,
                reopen_after: secs(2),
            })
        );
        assert_eq!(
            config.sources[2].transport,
            Transport::TcpClient {
                connect: "192.168.1.20:5000"
                    .parse()
                    .unwrap_or_else(|_| unreachable!()),
                backoff_min: secs(1),
                backoff_max: secs(60),
            }
        );
        assert!(!config.sources[3].enabled);
        let mqtt = config.sources.iter().find(|s| s.id.0 == "lab-mqtt");
        assert!(
            matches!(mqtt.map(|s| &s.transport), Some(Transport::Mqtt(m)) if m.topics.len() == 2 && m.tls.is_some()),
            "{mqtt:?}"
        );
    }

    #[test]
    fn demo_config_parses() {
        let config =
            parse(include_str!("../../config/demo.toml")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.gateway.data_dir, PathBuf::from("./data/demo"));
        let listens: Vec<_> = config
            .sources
            .iter()
            .map(|s| match s.transport {
                Transport::TcpServer { listen } => listen.to_string(),
                _ => String::new(),
            })
            .collect();
        assert_eq!(listens, ["127.0.0.1:5100", "127.0.0.1:5101"]);
    }

    #[test]
    fn defaults_fill_a_minimal_source() {
        let config = parse(&with_source(
            "transport = \"tcp-server\"\nlisten = \"127.0.0.1:0\"\n",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.gateway.name, "pocketgate");
        assert_eq!(
            config.store,
            StoreSettings {
                path: PathBuf::from("/d/pocketgate.db"),
                max_batch: 256,
                queue: 1024,
                keep_delivered: Duration::from_secs(365 * 86_400)
            }
        );
        assert_eq!(
            config.limits,
            Limits {
                max_frame_bytes: 65_536,
                max_message_bytes: 1 << 20,
                max_connections: 4
            }
        );
        let source = &config.sources[0];
        assert!(source.enabled);
        assert_eq!(
            source.protocol,
            Protocol::Astm(AstmSettings {
                encoding: Encoding::Latin1,
                receive_timeout: secs(30)
            })
        );
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let text = with_source("transport = \"serial\"\nport = \"/dev/ttyUSB0\"\nbaud = 96000\nreceive_timeout = \"30 sec\"\n")
            .replace("[gateway]\n", "[gateway]\nname = 5\n");
        let errors = errors(&text);
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "gateway.name",
                "sources[0].baud",
                "sources[0].receive_timeout"
            ],
            "{}",
            ConfigErrors(errors.clone())
        );
        assert!(errors.iter().all(|e| e.line.is_some()));
    }

    #[test]
    fn unknown_key_names_path_and_line() {
        let error = only_error(&with_source(
            "transport = \"serial\"\nport = \"/dev/ttyS0\"\nbaudrate = 9600\n",
        ));
        assert_eq!(error.path, "sources[0].baudrate");
        assert_eq!(error.line, Some(9));
        assert_eq!(
            error.to_string(),
            "sources[0].baudrate (line 9): unknown key (did you mean \"baud\"?)"
        );
    }

    #[test]
    fn every_unknown_key_is_reported() {
        let text =
            "[gateway]\ndata_dir = \"/d\"\ncolour = 1\n[limit]\nx = 1\n[[sources]]\nfoo = 1\n";
        let errors = errors(text);
        let paths: Vec<_> = errors.iter().map(|e| (e.path.as_str(), e.line)).collect();
        assert_eq!(
            paths,
            [
                ("gateway.colour", Some(3)),
                ("limit", Some(4)),
                ("sources[0].foo", Some(7))
            ]
        );
        assert!(
            errors[1].message.contains("did you mean \"limits\""),
            "{}",
            errors[1]
        );
    }

    #[test]
    fn bad_baud_lists_supported_rates() {
        let error = only_error(&with_source(
            "transport = \"serial\"\nport = \"/dev/ttyS0\"\nbaud = 96000\n",
        ));
        assert_eq!(
            error.to_string(),
            "sources[0].baud (line 9): 96000 is not a supported baud rate (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)"
        );
    }

    #[test]
    fn bad_duration_shows_examples() {
        let error = only_error(&with_source(
            "transport = \"tcp-server\"\nlisten = \"0.0.0.0:1\"\nreceive_timeout = \"30 sec\"\n",
        ));
        assert_eq!(error.path, "sources[0].receive_timeout");
        assert_eq!(
            error.message,
            "\"30 sec\" is not a duration (use e.g. \"30s\", \"500ms\", \"5m\")"
        );
        let error = only_error(&with_source(
            "transport = \"tcp-server\"\nlisten = \"0.0.0.0:1\"\nreceive_timeout = \"20m\"\n",
        ));
        assert_eq!(error.message, "\"20m\" is out of range (1s ..= 10m)");
        let error = only_error(&with_source(
            "transport = \"tcp-server\"\nlisten = \"0.0.0.0:1\"\nreceive_timeout = 30\n",
        ));
        assert!(error.message.starts_with("30 is not a duration"), "{error}");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Some(millis(500)));
        assert_eq!(parse_duration("30s"), Some(secs(30)));
        assert_eq!(parse_duration("5m"), Some(secs(300)));
        assert_eq!(parse_duration("1h"), Some(secs(3600)));
        assert_eq!(parse_duration("3d"), Some(secs(3 * 86_400)));
        for bad in [
            "",
            "s",
            "30",
            "30 s",
            "-1s",
            "1.5s",
            "3w",
            "99999999999999999999h",
            "18446744073709551615h",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
        assert_eq!(format_duration(millis(1500)), "1500ms");
        assert_eq!(format_duration(secs(600)), "10m");
        assert_eq!(format_duration(secs(365 * 86_400)), "365d");
    }

    #[test]
    fn missing_data_dir_is_required() {
        let error = only_error("[gateway]\nname = \"x\"\n");
        assert_eq!(
            error.to_string(),
            "gateway.data_dir (line 1): required (e.g. data_dir = \"/data/pocketgate\")"
        );
        let error = only_error("");
        assert_eq!(error.path, "gateway.data_dir");
        assert_eq!(error.line, None);
    }

    #[test]
    fn duplicate_id_names_first_use() {
        let text = format!(
            "{}\n[[sources]]\nid = \"a\"\nprotocol = \"astm\"\ntransport = \"tcp-server\"\nlisten = \"0.0.0.0:2\"\n",
            with_source("transport = \"tcp-server\"\nlisten = \"0.0.0.0:1\"\n")
        );
        let error = only_error(&text);
        assert_eq!(
            error.to_string(),
            "sources[1].id (line 11): \"a\" is already used by sources[0]"
        );
    }

    #[test]
    fn shared_listen_address_or_serial_port_is_an_error() {
        let two = |a: &str, b: &str| {
            format!(
                "{MINIMAL}[[sources]]\nid = \"a\"\nprotocol = \"astm\"\n{a}\n[[sources]]\nid = \"b\"\nprotocol = \"astm\"\n{b}\n"
            )
        };
        let error = only_error(&two(
            "transport = \"tcp-server\"\nlisten = \"0.0.0.0:5100\"",
            "transport = \"tcp-server\"\nlisten = \"127.0.0.1:5100\"",
        ));
        assert_eq!(
            error.to_string(),
            "sources[1].listen (line 12): 127.0.0.1:5100 conflicts with sources[0].listen (0.0.0.0:5100)"
        );
        let error = only_error(&two(
            "transport = \"serial\"\nport = \"/dev/ttyUSB0\"",
            "transport = \"serial\"\nport = \"/dev/ttyUSB0\"",
        ));
        assert_eq!(error.path, "sources[1].port");
        // A disabled copy and port 0 (tests) do not clash.
        assert!(
            parse(&two(
                "transport = \"tcp-server\"\nlisten = \"0.0.0.0:5100\"",
                "enabled = false\ntransport = \"tcp-server\"\nlisten = \"0.0.0.0:5100\""
            ))
            .is_ok()
        );
        assert!(
            parse(&two(
                "transport = \"tcp-server\"\nlisten = \"127.0.0.1:0\"",
                "transport = \"tcp-server\"\nlisten = \"127.0.0.1:0\""
            ))
            .is_ok()
        );
    }

    #[test]
    fn serial_adapter_by_usb_id_or_by_id_pattern() {
        let config = parse(&with_source(
            "transport = \"serial\"\nusb = \"0403:6001\"\nusb_serial = \"A50285BI\"\n",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let Transport::Serial(s) = &config.sources[0].transport else {
            panic!()
        };
        assert_eq!(
            s.usb.as_ref().map(ToString::to_string).as_deref(),
            Some("usb 0403:6001 serial A50285BI")
        );
        assert!(
            parse(&with_source(
                "transport = \"serial\"\nport = \"/dev/serial/by-id/usb-FTDI_*-if00-port0\"\n"
            ))
            .is_ok()
        );
        for (keys, expected) in [
            (
                "usb = \"0403\"\n",
                "sources[0].usb (line 8): \"0403\" is not a USB id (vendor:product in hex, e.g. \"0403:6001\")",
            ),
            (
                "usb = \"0403:6001\"\nport = \"/dev/ttyUSB0\"\n",
                "sources[0].port (line 9): give port or usb, not both",
            ),
            (
                "port = \"/dev/ttyUSB0\"\nusb_serial = \"A5\"\n",
                "sources[0].usb_serial (line 9): only used with usb = \"vendor:product\"",
            ),
            (
                "port = \"/dev/*/ttyUSB0\"\n",
                "sources[0].port (line 8): \"*\" and \"?\" may only be used in the file name, not in the folders",
            ),
        ] {
            let error = only_error(&with_source(&format!("transport = \"serial\"\n{keys}")));
            assert_eq!(error.to_string(), expected);
        }
        let error = only_error(&with_source(
            "transport = \"tcp-server\"\nlisten = \"0.0.0.0:1\"\nusb = \"0403:6001\"\n",
        ));
        assert_eq!(error.message, "not used by transport \"tcp-server\"");
    }

    #[test]
    fn serial_key_on_tcp_source_is_an_error() {
        let error = only_error(&with_source(
            "transport = \"tcp-server\"\nlisten = \"0.0.0.0:1\"\nbaud = 9600\n",
        ));
        assert_eq!(
            error.to_string(),
            "sources[0].baud (line 9): not used by transport \"tcp-server\""
        );
        // A wrongly typed key of another transport gets only the "not used" error.
        let error = only_error(&with_source(
            "transport = \"tcp-server\"\nlisten = \"0.0.0.0:1\"\nport = 5100\n",
        ));
        assert_eq!(error.message, "not used by transport \"tcp-server\"");
    }

    #[test]
    fn syntax_error_names_the_line() {
        let error = only_error("[gateway]\ndata_dir = \"/d\"\nname = \"unterminated\n");
        assert_eq!(error.path, "");
        assert_eq!(error.line, Some(3));
        assert!(error.to_string().starts_with("line 3: "), "{error}");
    }

    #[test]
    fn wrong_types_and_values_are_reported_with_paths() {
        let text = with_source("transport = \"usb\"\nencoding = \"utf-8\"\nenabled = \"yes\"\n")
            .replace("protocol = \"astm\"", "protocol = \"smtp\"")
            .replace("id = \"a\"", "id = \"GeneXpert 1\"")
            + "[limits]\nmax_connections = 100\nmax_frame_bytes = 100\n";
        let errors = errors(&text);
        let shown = ConfigErrors(errors.clone()).to_string();
        for expected in [
            "sources[0].id (line 5): \"GeneXpert 1\" is not a valid id",
            "sources[0].protocol (line 6): unknown variant `smtp`, expected one of `astm`, `hl7`, `poct1`, `http`, `mqtt`",
            "sources[0].transport (line 7): unknown variant `usb`",
            "sources[0].encoding (line 8): unknown variant `utf-8`",
            "sources[0].enabled (line 9): invalid type: string \"yes\", expected a boolean",
            "limits.max_connections (line 11): 100 is out of range (1 ..= 64)",
            "limits.max_frame_bytes (line 12): 100 is out of range (241 ..= 65536)",
        ] {
            assert!(shown.contains(expected), "missing {expected:?} in\n{shown}");
        }
        assert_eq!(errors.len(), 7, "{shown}");
    }

    #[test]
    fn wrong_section_shapes_are_errors_not_panics() {
        let error = only_error("gateway = 5\n");
        assert_eq!((error.path.as_str(), error.line), ("gateway", Some(1)));
        let error = only_error("[gateway]\ndata_dir = \"/d\"\n[sources]\nid = \"a\"\n");
        assert_eq!(error.path, "sources");
        assert!(error.message.contains("[[sources]]"));
        // Dotted keys make tables without spans; a datetime is a value of the wrong type.
        let error = only_error("gateway.data_dir = \"/d\"\ngateway.name.x = 1\n");
        assert_eq!((error.path.as_str(), error.line), ("gateway.name", Some(2)));
        let error = only_error("[gateway]\ndata_dir = 1979-05-27T07:32:00Z\n");
        assert_eq!(
            (error.path.as_str(), error.line),
            ("gateway.data_dir", Some(2))
        );
    }

    #[test]
    fn tcp_client_backoff_is_checked() {
        let error = only_error(&with_source(
            "transport = \"tcp-client\"\nconnect = \"10.0.0.1:5000\"\nbackoff_min = \"2m\"\nbackoff_max = \"1m\"\n",
        ));
        assert_eq!(
            error.to_string(),
            "sources[0].backoff_max (line 10): 1m is less than backoff_min (2m)"
        );
        let error = only_error(&with_source(
            "transport = \"tcp-client\"\nconnect = \"analyzer.local:5000\"\n",
        ));
        assert_eq!(error.path, "sources[0].connect");
    }

    #[test]
    fn raw_keys_come_from_serde() {
        assert_eq!(raw::keys_of::<raw::RawGateway>(), ["name", "data_dir"]);
        let source_keys = raw::keys_of::<RawSource>();
        for (_, keys) in TRANSPORT_KEYS {
            assert!(keys.iter().all(|k| source_keys.contains(k)), "{keys:?}");
        }
    }

    #[test]
    fn load_names_the_missing_file() {
        let Err(ConfigErrors(errors)) = load(Path::new("/nonexistent/pocketgate.toml")) else {
            panic!("loaded a missing file");
        };
        assert!(
            errors[0]
                .to_string()
                .starts_with("/nonexistent/pocketgate.toml: cannot read"),
            "{}",
            errors[0]
        );
    }
}
