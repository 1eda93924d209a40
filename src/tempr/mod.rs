//! Temprs: what turns one stored record into one DHIS2 request.
//!
//! A Tempr says which records it applies to ([`Match`]), how to build the request ([`TemprKind`]:
//! a no-code [`Builder`] mapping table, a minijinja [`Template`], a [`Mustache`] template, or a
//! JavaScript [`Script`]) and where it goes ([`Endpoint`]). Each lives in one TOML file
//! (config/temprs/README.md documents the format); [`TemprSet::load_dir`] loads a directory and
//! reports every bad file at once.
//!
//! [`apply`] is pure: record JSON (see [`record_view`]) + context JSON in, [`Dhis2Request`] out.
//! Object UIDs come from [`deterministic_uid`], so rendering the same record twice gives the same
//! request and DHIS2 (CREATE_AND_UPDATE) updates instead of duplicating.
//!
//! **Chaining.** A Tempr may name a `next` Tempr. The caller sends the first request, then applies
//! the next Tempr to the same record with `ctx.previous` = the DHIS2 response and
//! `ctx.previous_request` = the request just sent ([`TemprSet::chain`] lists the steps). The next
//! step's own `[match]` still applies: if it does not match, the chain ends there.

mod builder;
mod dates;
mod file;
mod mustache;
mod path;
mod script;
mod target;
mod template;
mod uid;

pub use builder::Builder;
pub use mustache::Mustache;
pub use script::{Script, abandoned_threads};
pub use target::{BodyFormat, Target};
pub use template::Template;
pub use uid::{deterministic_uid, is_uid};

use crate::record::{Dhis2Request, Endpoint, Observation, Payload};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// One Tempr, loaded from `source_file`.
#[derive(Debug, Clone)]
pub struct Tempr {
    /// Unique within a [`TemprSet`]; `[a-z0-9_-]`, what `next` refers to.
    pub name: String,
    /// Bumped by the author on every change; stored with each request it produced.
    pub version: u32,
    /// Free text for people (web UI, logs).
    pub description: Option<String>,
    /// `enabled = false` in the file: loaded and validated, but never matched to records.
    pub enabled: bool,
    pub matcher: Match,
    /// Where the request goes when the output does not say (`{"endpoint": …, "body": …}`).
    pub endpoint: Endpoint,
    /// Another system than DHIS2 (`destination` and `[request]` in the file); `None` = DHIS2.
    pub target: Option<Target>,
    pub kind: TemprKind,
    /// The Tempr that receives this one's DHIS2 response (`ctx.previous`).
    pub next: Option<String>,
    pub source_file: PathBuf,
}

/// How a Tempr builds its request; all four produce the same [`Dhis2Request`].
#[derive(Debug, Clone)]
pub enum TemprKind {
    Builder(Builder),
    Template(Template),
    /// A Mustache template (mustache.js's language, as Open Interop's Temprs use).
    Mustache(Mustache),
    Script(Script),
}

impl Tempr {
    /// Load one Tempr file; every mistake in it is reported (file name and line in each error).
    pub fn from_file(path: &Path) -> Result<Tempr, Vec<TemprError>> {
        file::load(path)
    }

    /// Parse Tempr text as if it were the file `source_file` (used to validate web edits before
    /// they are written). `template_file`/`script_file` are read relative to its directory.
    pub fn parse(text: &str, source_file: &Path) -> Result<Tempr, Vec<TemprError>> {
        file::parse(text, source_file)
    }

    /// `name@version`, the identity a stored request remembers.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// Limits for one [`apply`]; every template run and script run is bounded.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// minijinja fuel (≈ instructions) per render; for a Mustache Tempr, its render steps (one
    /// per tag and one per list item of a section).
    pub template_fuel: u64,
    /// Wall-clock budget of one script run; past it the run is reported as
    /// [`TemprError::ScriptTimeout`] and its thread abandoned (the loop limit ends it).
    pub script_budget: Duration,
    /// Loop iterations per JS call frame (boa `set_loop_iteration_limit`).
    pub script_loop_limit: u64,
    /// JS call depth (boa `set_recursion_limit`).
    pub script_recursion_limit: usize,
    /// Largest rendered request body; also the longest string a script may build with
    /// `repeat`/`padStart`/`padEnd`/`join` and the longest array it may `fill`/`Array.from`.
    pub max_output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            template_fuel: 50_000,
            script_budget: Duration::from_secs(1),
            script_loop_limit: 1_000_000,
            script_recursion_limit: 256,
            max_output_bytes: 1024 * 1024,
        }
    }
}

/// Everything that can go wrong loading or applying a Tempr, with the data to fix it.
#[derive(thiserror::Error, Debug, Clone, PartialEq)]
pub enum TemprError {
    #[error("{}: cannot read: {message}", file.display())]
    Io { file: PathBuf, message: String },
    /// A TOML syntax error, an unknown or mistyped field, or an invalid value.
    #[error("{}{}: {}{message}", file.display(), line_suffix(*line), field_prefix(field))]
    File {
        file: PathBuf,
        line: Option<usize>,
        field: String,
        message: String,
    },
    #[error("{}: Tempr name {name:?} is already used by {}", second.display(), first.display())]
    DuplicateName {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("{}{}: next: no Tempr is named {next:?}", file.display(), line_suffix(*line))]
    UnknownNext {
        file: PathBuf,
        line: Option<usize>,
        next: String,
    },
    #[error("Tempr chain loops: {}", cycle.join(" → "))]
    ChainCycle { cycle: Vec<String> },

    /// The record has no value where the Tempr requires one.
    #[error("missing field {path}")]
    MissingField { path: String },
    #[error(
        "value {value:?} at {path} is not in the value map (add it to `map`, or set `unmapped`)"
    )]
    Unmapped { path: String, value: String },
    #[error("{path}: {message}")]
    BadValue { path: String, message: String },

    #[error("template{}: {message}", line_suffix(*line))]
    Template {
        line: Option<usize>,
        message: String,
    },
    #[error("template ran out of fuel ({fuel}): a loop too large for one record?")]
    TemplateFuel { fuel: u64 },
    /// A Mustache render took more steps (one per tag, one per list item) than
    /// [`Limits::template_fuel`]; `partial` names the partial the tag is in.
    #[error(
        "mustache {}: more than {budget} render steps (the template_fuel limit): a section over too long a list?",
        mustache_at(partial, *line)
    )]
    MustacheSteps {
        budget: u64,
        partial: Option<String>,
        line: usize,
    },
    /// Mustache sections and partials nested deeper than 64 (`mustache::MAX_DEPTH`) while
    /// rendering.
    #[error(
        "mustache {}: sections and partials nested deeper than {max}: does a partial include itself?",
        mustache_at(partial, *line)
    )]
    MustacheDepth {
        max: usize,
        partial: Option<String>,
        line: usize,
    },
    #[error("output is larger than the limit of {limit} bytes")]
    OutputTooLarge { limit: usize },
    #[error("output is not JSON (output line {line}, column {column}): {message}")]
    NotJson {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("output is not a DHIS2 request: {message}")]
    NotARequest { message: String },

    #[error("script failed: {message}")]
    Script { message: String },
    #[error("script stopped: {message}")]
    ScriptLimit { message: String },
    #[error("script ran longer than {} (stopped)", human(*budget))]
    ScriptTimeout { budget: Duration },
    #[error("{running} earlier script runs are still busy past their budget; not starting another")]
    ScriptBusy { running: usize },
    #[error("script could not run: {message}")]
    ScriptThread { message: String },
}

impl TemprError {
    /// Retrying the same record later may succeed without anyone changing anything (the script
    /// runner was busy or could not start a thread). Everything else fails the same way until
    /// the Tempr, the config or the record changes.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            TemprError::ScriptBusy { .. } | TemprError::ScriptThread { .. }
        )
    }

    /// A person can fix this by editing the Tempr file, the gateway config or the device setup
    /// (the error text says what and where). The complement of [`Self::is_transient`].
    pub fn is_fixable_by_user(&self) -> bool {
        !self.is_transient()
    }

    /// The record lacks or carries a value the Tempr cannot map (the Tempr itself is fine for
    /// other records): count it per record rather than disabling the Tempr.
    pub fn is_record_problem(&self) -> bool {
        matches!(
            self,
            TemprError::MissingField { .. }
                | TemprError::Unmapped { .. }
                | TemprError::BadValue { .. }
        )
    }
}

fn line_suffix(line: Option<usize>) -> String {
    line.map(|l| format!(" line {l}")).unwrap_or_default()
}

/// `template line 3` or `partial "row" line 2`.
fn mustache_at(partial: &Option<String>, line: usize) -> String {
    match partial {
        Some(p) => format!("partial {p:?} line {line}"),
        None => format!("template line {line}"),
    }
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

// ---------------------------------------------------------------------------------------------
// Matching

/// Which records a Tempr applies to. Every criterion given must hold; within one criterion any
/// pattern may match. Patterns are case-insensitive and `*` matches any run of characters
/// (including `/`). An empty `[match]` matches every record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Match {
    sources: Vec<Glob>,
    vendors: Vec<Glob>,
    models: Vec<Glob>,
    /// At least one observation's `test_code` matches one of these.
    test_codes: Vec<Glob>,
    /// The text at each path matches one of its patterns (a missing value never matches).
    values: Vec<(path::Path, Vec<Glob>)>,
}

impl Match {
    pub fn matches(&self, record: &Value) -> bool {
        let text = |p: &str| record.pointer(p).and_then(Value::as_str).unwrap_or("");
        let any = |globs: &[Glob], s: &str| globs.is_empty() || globs.iter().any(|g| g.matches(s));
        if !any(&self.sources, text("/source"))
            || !any(&self.vendors, text("/device/vendor"))
            || !any(&self.models, text("/device/model"))
        {
            return false;
        }
        if !self.test_codes.is_empty() {
            let codes = record.get("observations").and_then(Value::as_array);
            let hit = codes.into_iter().flatten().any(|o| {
                let code = o.get("test_code").and_then(Value::as_str).unwrap_or("");
                self.test_codes.iter().any(|g| g.matches(code))
            });
            if !hit {
                return false;
            }
        }
        let no_ctx = Value::Null;
        self.values
            .iter()
            .all(|(p, globs)| match p.text(record, &no_ctx) {
                Ok(Some(v)) => globs.iter().any(|g| g.matches(&v)),
                _ => false,
            })
    }

    /// One line for people: `sources gx-* · test_codes MTB-RIF/Xpert/MTB`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let mut add = |label: &str, globs: &[Glob]| {
            if !globs.is_empty() {
                let g: Vec<&str> = globs.iter().map(|g| g.0.as_str()).collect();
                parts.push(format!("{label} {}", g.join("|")));
            }
        };
        add("sources", &self.sources);
        add("vendor", &self.vendors);
        add("model", &self.models);
        add("test_codes", &self.test_codes);
        for (p, globs) in &self.values {
            add(&p.to_string(), globs);
        }
        if parts.is_empty() {
            "every record".into()
        } else {
            parts.join(" · ")
        }
    }
}

/// A case-insensitive pattern where `*` matches any run of characters.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Glob(String);

impl Glob {
    fn matches(&self, text: &str) -> bool {
        glob_match(&self.0.to_lowercase(), &text.to_lowercase())
    }
}

/// Iterative wildcard match (`*` only) with single backtracking point: O(n·m) worst case.
fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

// ---------------------------------------------------------------------------------------------
// The record a Tempr sees

/// The JSON a Tempr sees for one stored message (see the module docs of config/temprs/README.md):
/// `id`, `source`, `received_at`, `device` (of the first observation), `sample_id`,
/// `patient_id`, `observed_at` (first non-null among the observations), `observations` (the
/// canonical Observation JSON) and `results` (first observation per test code).
pub fn record_view(
    id: i64,
    source: &str,
    received_at: &str,
    observations: &[Observation],
) -> Arc<Value> {
    let first = |f: fn(&Observation) -> Option<&String>| {
        observations
            .iter()
            .find_map(f)
            .map_or(Value::Null, |s| Value::String(s.clone()))
    };
    let device = observations
        .first()
        .map(|o| o.device.clone())
        .unwrap_or_default();
    let obs: Vec<Value> = observations
        .iter()
        .map(|o| serde_json::to_value(o).unwrap_or(Value::Null))
        .collect();
    let mut results = Map::new();
    for (o, v) in observations.iter().zip(&obs) {
        results
            .entry(o.test_code.clone())
            .or_insert_with(|| v.clone());
    }
    Arc::new(json!({
        "id": id,
        "source": source,
        "received_at": received_at,
        "device": serde_json::to_value(device).unwrap_or(Value::Null),
        "sample_id": first(|o| o.sample_id.as_ref()),
        "patient_id": first(|o| o.patient_id.as_ref()),
        "observed_at": first(|o| o.observed_at.as_ref()),
        "observations": obs,
        "results": results,
    }))
}

// ---------------------------------------------------------------------------------------------
// Applying

/// Build the request `tempr` makes for `record` (from [`record_view`]) with `ctx`
/// (`{gateway:{name}, org_unit, previous, previous_request}`). Pure apart from the script
/// thread; the output is checked to be a plausible DHIS2 request before it is returned.
/// The record is shared, not copied: a template render and a script run read this one view.
pub fn apply(
    tempr: &Tempr,
    record: &Arc<Value>,
    ctx: &Value,
    limits: &Limits,
) -> Result<Dhis2Request, TemprError> {
    let request = match &tempr.kind {
        TemprKind::Builder(b) => b.build(record, ctx, tempr.endpoint)?,
        TemprKind::Template(t) => {
            request_from_text(&t.render(tempr, record, ctx, limits)?, tempr.endpoint)?
        }
        TemprKind::Mustache(m) => {
            request_from_text(&m.render(tempr, record, ctx, limits)?, tempr.endpoint)?
        }
        TemprKind::Script(s) => request_from_output(s.run(record, ctx, limits)?, tempr.endpoint)?,
    };
    let size = serde_json::to_string(&request.body).map_or(usize::MAX, |s| s.len());
    if size > limits.max_output_bytes {
        return Err(TemprError::OutputTooLarge {
            limit: limits.max_output_bytes,
        });
    }
    validate_request(&request)?;
    Ok(request)
}

/// Run a Tempr for one record: a DHIS2 request ([`apply`]) or, for a Tempr that names a
/// `destination`, that destination's request (target.rs).
pub fn render(
    tempr: &Tempr,
    record: &Arc<Value>,
    ctx: &Value,
    limits: &Limits,
) -> Result<Payload, TemprError> {
    match &tempr.target {
        None => apply(tempr, record, ctx, limits).map(Payload::Dhis2),
        Some(t) => target::render(tempr, t, record, ctx, limits).map(|request| Payload::Dest {
            destination: t.destination.clone(),
            request,
        }),
    }
}

/// A template's rendered text (minijinja or Mustache): JSON, then as [`request_from_output`].
fn request_from_text(text: &str, default: Endpoint) -> Result<Dhis2Request, TemprError> {
    let value: Value = serde_json::from_str(text).map_err(|e| TemprError::NotJson {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    request_from_output(value, default)
}

/// Either an envelope `{"endpoint": …, "body": …}` / `{"endpoint": "get", "path": …}`, or the
/// body alone (sent to the file's `endpoint`).
fn request_from_output(value: Value, default: Endpoint) -> Result<Dhis2Request, TemprError> {
    let is_envelope = value.as_object().is_some_and(|m| {
        m.contains_key("endpoint")
            && m.keys()
                .all(|k| matches!(k.as_str(), "endpoint" | "body" | "path"))
    });
    if !is_envelope {
        return Ok(Dhis2Request {
            endpoint: default,
            path: None,
            body: value,
        });
    }
    serde_json::from_value::<Dhis2Request>(value).map_err(|e| TemprError::NotARequest {
        message: format!("{e} (endpoint is one of tracker, events, data_value_sets, get)"),
    })
}

fn not_request(message: impl Into<String>) -> TemprError {
    TemprError::NotARequest {
        message: message.into(),
    }
}

/// Check the shape DHIS2 requires (dhis2.md §2.2/§2.4) so a broken Tempr fails here, with the
/// place named, instead of as an E1xxx from the server hours later.
fn validate_request(r: &Dhis2Request) -> Result<(), TemprError> {
    match r.endpoint {
        Endpoint::Get => {
            let path = r.path.as_deref().unwrap_or("");
            if !path.starts_with("/api/")
                || path.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(not_request(format!(
                    "a get needs a path below /api/ without spaces, got {path:?}"
                )));
            }
            Ok(())
        }
        Endpoint::Tracker => {
            let body = r
                .body
                .as_object()
                .ok_or_else(|| not_request("tracker body must be an object"))?;
            let mut total = 0;
            for key in ["trackedEntities", "enrollments", "events", "relationships"] {
                if let Some(v) = body.get(key) {
                    let list = v
                        .as_array()
                        .ok_or_else(|| not_request(format!("{key} must be a list")))?;
                    total += list.len();
                    for (i, item) in list.iter().enumerate() {
                        let at = format!("{key}[{i}]");
                        match key {
                            "trackedEntities" => check_te(item, &at)?,
                            "enrollments" => check_enrollment(item, &at, true)?,
                            "events" => check_event(item, &at, true)?,
                            _ => object(item, &at).map(|_| ())?,
                        }
                    }
                }
            }
            if total == 0 {
                return Err(not_request(
                    "tracker body has no trackedEntities, enrollments, events or relationships",
                ));
            }
            Ok(())
        }
        Endpoint::Events => {
            let list = match r.body.get("events") {
                Some(v) => v
                    .as_array()
                    .ok_or_else(|| not_request("events must be a list"))?
                    .clone(),
                None => vec![r.body.clone()],
            };
            if list.is_empty() {
                return Err(not_request("events is empty"));
            }
            for (i, e) in list.iter().enumerate() {
                let at = format!("events[{i}]");
                let m = object(e, &at)?;
                for f in ["program", "orgUnit"] {
                    require_text(m, &at, f)?;
                }
                uid_field(m, &at, "event")?;
            }
            Ok(())
        }
        Endpoint::DataValueSets => {
            let body = r
                .body
                .as_object()
                .ok_or_else(|| not_request("dataValueSets body must be an object"))?;
            let list = body
                .get("dataValues")
                .and_then(Value::as_array)
                .filter(|l| !l.is_empty())
                .ok_or_else(|| not_request("dataValues must be a non-empty list"))?;
            for (i, dv) in list.iter().enumerate() {
                let at = format!("dataValues[{i}]");
                let m = object(dv, &at)?;
                require_text(m, &at, "dataElement")?;
                if !m.contains_key("value") {
                    return Err(not_request(format!("{at}.value is missing")));
                }
                for f in ["period", "orgUnit"] {
                    if !m.contains_key(f) && !body.contains_key(f) {
                        return Err(not_request(format!(
                            "{at}.{f} is missing (and there is no top-level {f})"
                        )));
                    }
                }
            }
            Ok(())
        }
    }
}

fn object<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>, TemprError> {
    v.as_object()
        .ok_or_else(|| not_request(format!("{at} must be an object")))
}

fn require_text(m: &Map<String, Value>, at: &str, field: &str) -> Result<(), TemprError> {
    match m.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(()),
        Some(other) => Err(not_request(format!(
            "{at}.{field} must be non-empty text, got {other}"
        ))),
        None => Err(not_request(format!("{at}.{field} is missing"))),
    }
}

/// Client-generated object ids must be DHIS2 UIDs (or absent: the server generates one).
fn uid_field(m: &Map<String, Value>, at: &str, field: &str) -> Result<(), TemprError> {
    match m.get(field) {
        None => Ok(()),
        Some(Value::String(s)) if is_uid(s) => Ok(()),
        Some(other) => Err(not_request(format!(
            "{at}.{field} {other} is not a DHIS2 UID (11 chars, letter first)"
        ))),
    }
}

fn check_te(v: &Value, at: &str) -> Result<(), TemprError> {
    let m = object(v, at)?;
    uid_field(m, at, "trackedEntity")?;
    require_text(m, at, "trackedEntityType")?;
    require_text(m, at, "orgUnit")?;
    if let Some(list) = m.get("enrollments") {
        let list = list
            .as_array()
            .ok_or_else(|| not_request(format!("{at}.enrollments must be a list")))?;
        for (i, e) in list.iter().enumerate() {
            check_enrollment(e, &format!("{at}.enrollments[{i}]"), false)?;
        }
    }
    Ok(())
}

fn check_enrollment(v: &Value, at: &str, flat: bool) -> Result<(), TemprError> {
    let m = object(v, at)?;
    uid_field(m, at, "enrollment")?;
    uid_field(m, at, "trackedEntity")?;
    for f in ["program", "orgUnit", "enrolledAt"] {
        require_text(m, at, f)?;
    }
    if flat {
        require_text(m, at, "trackedEntity")?;
    }
    if let Some(list) = m.get("events") {
        let list = list
            .as_array()
            .ok_or_else(|| not_request(format!("{at}.events must be a list")))?;
        for (i, e) in list.iter().enumerate() {
            check_event(e, &format!("{at}.events[{i}]"), false)?;
        }
    }
    Ok(())
}

fn check_event(v: &Value, at: &str, _flat: bool) -> Result<(), TemprError> {
    let m = object(v, at)?;
    for f in ["event", "enrollment", "trackedEntity"] {
        uid_field(m, at, f)?;
    }
    require_text(m, at, "programStage")?;
    require_text(m, at, "orgUnit")?;
    let status = m.get("status").and_then(Value::as_str).unwrap_or("ACTIVE");
    if matches!(status, "ACTIVE" | "COMPLETED") {
        require_text(m, at, "occurredAt")?;
    }
    if let Some(dvs) = m.get("dataValues") {
        let list = dvs
            .as_array()
            .ok_or_else(|| not_request(format!("{at}.dataValues must be a list")))?;
        for (i, dv) in list.iter().enumerate() {
            let dat = format!("{at}.dataValues[{i}]");
            require_text(object(dv, &dat)?, &dat, "dataElement")?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The set of loaded Temprs

/// All Temprs of a directory, validated together (unique names, `next` names exist, no loops).
#[derive(Debug, Clone, Default)]
pub struct TemprSet {
    temprs: Vec<Tempr>,
}

impl TemprSet {
    /// Load every `*.toml` in `dir` (other files, such as README.md or `*.j2`/`*.js` referenced
    /// by `template_file`/`script_file`, are not Temprs). Every bad file is reported.
    pub fn load_dir(dir: &Path) -> Result<TemprSet, Vec<TemprError>> {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            vec![TemprError::Io {
                file: dir.to_path_buf(),
                message: e.to_string(),
            }]
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
            .collect();
        files.sort();
        let mut temprs = Vec::new();
        let mut errors = Vec::new();
        for f in &files {
            match file::load(f) {
                Ok(t) => temprs.push(t),
                Err(mut e) => errors.append(&mut e),
            }
        }
        match TemprSet::new(temprs) {
            Ok(set) if errors.is_empty() => Ok(set),
            Ok(_) => Err(errors),
            Err(mut e) => {
                errors.append(&mut e);
                Err(errors)
            }
        }
    }

    /// Validate a set: names unique, every `next` exists, no chain loops back on itself.
    pub fn new(mut temprs: Vec<Tempr>) -> Result<TemprSet, Vec<TemprError>> {
        temprs.sort_by(|a, b| a.name.cmp(&b.name).then(a.source_file.cmp(&b.source_file)));
        let mut errors = Vec::new();
        for pair in temprs.windows(2) {
            if pair[0].name == pair[1].name {
                errors.push(TemprError::DuplicateName {
                    name: pair[1].name.clone(),
                    first: pair[0].source_file.clone(),
                    second: pair[1].source_file.clone(),
                });
            }
        }
        let names: HashSet<&str> = temprs.iter().map(|t| t.name.as_str()).collect();
        for t in &temprs {
            if let Some(next) = &t.next
                && !names.contains(next.as_str())
            {
                errors.push(TemprError::UnknownNext {
                    file: t.source_file.clone(),
                    line: file::line_of_key(&t.source_file, "next"),
                    next: next.clone(),
                });
            }
        }
        // Each Tempr has at most one `next`, so a loop is found by walking from every start.
        let next_of: BTreeMap<&str, &str> = temprs
            .iter()
            .filter_map(|t| t.next.as_deref().map(|n| (t.name.as_str(), n)))
            .collect();
        let mut reported: HashSet<Vec<String>> = HashSet::new();
        for start in next_of.keys() {
            let mut seen = vec![*start];
            let mut cur = *start;
            while let Some(&n) = next_of.get(cur) {
                if let Some(pos) = seen.iter().position(|s| *s == n) {
                    let mut cycle: Vec<String> =
                        seen[pos..].iter().map(|s| s.to_string()).collect();
                    // Report each loop once, starting at its smallest name.
                    let min = cycle
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, s)| s.as_str())
                        .map_or(0, |(i, _)| i);
                    cycle.rotate_left(min);
                    if reported.insert(cycle.clone()) {
                        cycle.push(cycle[0].clone());
                        errors.push(TemprError::ChainCycle { cycle });
                    }
                    break;
                }
                seen.push(n);
                cur = n;
            }
        }
        if errors.is_empty() {
            Ok(TemprSet { temprs })
        } else {
            Err(errors)
        }
    }

    pub fn get(&self, name: &str) -> Option<&Tempr> {
        self.temprs.iter().find(|t| t.name == name)
    }

    /// The enabled chain heads that match `record`. A Tempr named as another's `next` is not
    /// returned even if its `[match]` fits: it runs only as a chain step, after its
    /// predecessor's response (see [`Self::chain`]).
    pub fn matching(&self, record: &Value) -> Vec<&Tempr> {
        let named_next: HashSet<&str> = self
            .temprs
            .iter()
            .filter_map(|t| t.next.as_deref())
            .collect();
        self.temprs
            .iter()
            .filter(|t| {
                t.enabled && !named_next.contains(t.name.as_str()) && t.matcher.matches(record)
            })
            .collect()
    }

    /// `head` followed by its `next`, that one's `next`, … (loops are rejected at load).
    pub fn chain<'a>(&'a self, head: &'a Tempr) -> Vec<&'a Tempr> {
        let mut out = vec![head];
        while let Some(next) = out
            .last()
            .and_then(|t| t.next.as_deref())
            .and_then(|n| self.get(n))
        {
            if out.len() > self.temprs.len() {
                break;
            }
            out.push(next);
        }
        out
    }

    /// All Temprs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &Tempr> {
        self.temprs.iter()
    }

    pub fn len(&self) -> usize {
        self.temprs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.temprs.is_empty()
    }
}

impl fmt::Display for Tempr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.id(), self.source_file.display())
    }
}

#[cfg(test)]
mod tests;
