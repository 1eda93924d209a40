//! The Tempr file format (one TOML file per Tempr; config/temprs/README.md is the user guide):
//! raw serde types with `deny_unknown_fields`, then validation that collects every mistake with
//! its file and line.

use super::builder::{self, RawBuilder};
use super::mustache::Mustache;
use super::path::Path as RecordPath;
use super::script::Script;
use super::template::Template;
use super::{Glob, Match, Tempr, TemprError, TemprKind};
use crate::record::Endpoint;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTempr {
    name: Spanned<String>,
    version: Spanned<i64>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default = "yes")]
    enabled: bool,
    kind: Spanned<RawKind>,
    /// Required for DHIS2 Temprs; a Tempr with `destination` has none.
    #[serde(default)]
    endpoint: Option<Spanned<Endpoint>>,
    /// A `[[destinations]]` id: the Tempr sends there instead of DHIS2 (target.rs).
    #[serde(default)]
    destination: Option<Spanned<String>>,
    #[serde(default)]
    request: Option<super::target::RawRequest>,
    #[serde(default)]
    next: Option<Spanned<String>>,
    #[serde(rename = "match", default)]
    matcher: RawMatch,
    #[serde(default)]
    builder: Option<RawBuilder>,
    #[serde(default)]
    template: Option<Spanned<String>>,
    #[serde(default)]
    template_file: Option<Spanned<String>>,
    #[serde(default)]
    script: Option<Spanned<String>>,
    #[serde(default)]
    script_file: Option<Spanned<String>>,
    /// kind mustache: `{{> name}}` → the template text of `name`.
    #[serde(default)]
    partials: Option<BTreeMap<String, Spanned<String>>>,
    /// kind mustache: what `{{name}}` escapes (`html`, mustache.js's default, or `json`).
    #[serde(default)]
    escape: Option<Spanned<super::mustache::Escape>>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawKind {
    Builder,
    Template,
    Mustache,
    Script,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    #[serde(default)]
    sources: OneOrMany,
    #[serde(default)]
    vendor: OneOrMany,
    #[serde(default)]
    model: OneOrMany,
    #[serde(default)]
    test_codes: OneOrMany,
    /// path → pattern(s)
    #[serde(default)]
    values: BTreeMap<String, OneOrMany>,
}

/// A string or a list of strings (`from = "a"` or `from = ["a", "b"]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![s.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(OneOrMany(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// Collects validation errors for one file, each with the line of the offending value.
pub(crate) struct Checker<'a> {
    pub file: &'a Path,
    pub text: &'a str,
    pub errors: Vec<TemprError>,
}

impl Checker<'_> {
    pub fn line(&self, span: &std::ops::Range<usize>) -> Option<usize> {
        Some(line_at(self.text, span.start))
    }

    pub fn error(&mut self, line: Option<usize>, field: &str, message: impl Into<String>) {
        self.errors.push(TemprError::File {
            file: self.file.to_path_buf(),
            line,
            field: field.to_string(),
            message: message.into(),
        });
    }

    /// The line of a `[table]` header or `key =` (first occurrence), for errors about values
    /// that carry no span.
    pub fn line_of(&self, key: &str) -> Option<usize> {
        find_key_line(self.text, key)
    }
}

/// 1-based line of byte `offset`.
pub(crate) fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn find_key_line(text: &str, key: &str) -> Option<usize> {
    let last = key.rsplit('.').next().unwrap_or(key);
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.starts_with(&format!("[{key}]"))
                || l.strip_prefix(last)
                    .is_some_and(|r| r.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

/// The line of `key = …` in `file` (re-read; used for chain errors found after loading).
pub(crate) fn line_of_key(file: &Path, key: &str) -> Option<usize> {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| find_key_line(&t, key))
}

pub(crate) fn load(path: &Path) -> Result<Tempr, Vec<TemprError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![TemprError::Io {
            file: path.to_path_buf(),
            message: e.to_string(),
        }]
    })?;
    parse(&text, path)
}

pub(crate) fn parse(text: &str, path: &Path) -> Result<Tempr, Vec<TemprError>> {
    let raw: RawTempr = toml::from_str(text).map_err(|e| {
        vec![TemprError::File {
            file: path.to_path_buf(),
            line: e.span().map(|s| line_at(text, s.start)),
            field: String::new(),
            message: e.message().trim().to_string(),
        }]
    })?;
    let mut c = Checker {
        file: path,
        text,
        errors: Vec::new(),
    };

    let name = raw.name.get_ref().trim().to_string();
    if name.is_empty()
        || !name
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '_')
    {
        let line = c.line(&raw.name.span());
        c.error(
            line,
            "name",
            format!("{name:?} must be non-empty lowercase letters, digits, '-' or '_'"),
        );
    }
    let version = match u32::try_from(*raw.version.get_ref()) {
        Ok(v) if v >= 1 => v,
        _ => {
            let line = c.line(&raw.version.span());
            c.error(
                line,
                "version",
                format!("{} must be a whole number ≥ 1", raw.version.get_ref()),
            );
            0
        }
    };
    let next = raw.next.as_ref().map(|n| n.get_ref().trim().to_string());
    if let (Some(n), Some(sp)) = (&next, &raw.next)
        && *n == name
    {
        let line = c.line(&sp.span());
        c.error(line, "next", "a Tempr cannot be its own next");
    }
    let matcher = match_from_raw(&mut c, raw.matcher);
    let kind_line = c.line(&raw.kind.span());
    let target = super::target::from_raw(
        &mut c,
        raw.destination,
        raw.request,
        *raw.kind.get_ref() == RawKind::Builder,
    );
    let (endpoint, endpoint_line) = match (&raw.endpoint, &target) {
        (Some(e), None) => (*e.get_ref(), c.line(&e.span())),
        (None, None) => {
            c.error(
                kind_line,
                "endpoint",
                "missing: say which DHIS2 API this Tempr feeds (tracker, events, data_value_sets, get), or name a `destination`",
            );
            (Endpoint::Tracker, kind_line)
        }
        (Some(e), Some(_)) => {
            let line = c.line(&e.span());
            c.error(
                line,
                "endpoint",
                "a Tempr with `destination` sends there, not to a DHIS2 endpoint; remove one of them",
            );
            (*e.get_ref(), line)
        }
        // Not read for a destination Tempr (its request carries method and path).
        (None, Some(_)) => (Endpoint::Tracker, kind_line),
    };
    let dir = path.parent().unwrap_or(Path::new("."));

    // Exactly the source that fits the kind.
    let given: Vec<&str> = [
        ("builder", raw.builder.is_some()),
        ("template", raw.template.is_some()),
        ("template_file", raw.template_file.is_some()),
        ("script", raw.script.is_some()),
        ("script_file", raw.script_file.is_some()),
    ]
    .iter()
    .filter(|(_, present)| *present)
    .map(|(k, _)| *k)
    .collect();
    let kind = *raw.kind.get_ref();
    let wanted: &[&str] = match kind {
        RawKind::Builder => &["builder"],
        RawKind::Template | RawKind::Mustache => &["template", "template_file"],
        RawKind::Script => &["script", "script_file"],
    };
    let fitting: Vec<&str> = given
        .iter()
        .copied()
        .filter(|g| wanted.contains(g))
        .collect();
    for other in given.iter().filter(|g| !wanted.contains(g)) {
        let line = c.line_of(other);
        c.error(
            line,
            other,
            format!(
                "not used by kind = {:?}; remove it",
                format!("{kind:?}").to_lowercase()
            ),
        );
    }
    if raw.partials.is_some() && kind != RawKind::Mustache {
        let line = c.line_of("partials");
        c.error(
            line,
            "partials",
            "only kind = \"mustache\" has partials; remove them",
        );
    }
    if let Some(e) = raw.escape.as_ref().filter(|_| kind != RawKind::Mustache) {
        let line = c.line(&e.span());
        c.error(
            line,
            "escape",
            "only kind = \"mustache\" has escape (a template Tempr writes |tojson); remove it",
        );
    }
    if fitting.len() != 1 {
        c.error(
            kind_line,
            "kind",
            format!(
                "kind = {:?} needs exactly one of {}",
                format!("{kind:?}").to_lowercase(),
                wanted.join(" or ")
            ),
        );
    }

    let built =
        match kind {
            RawKind::Builder => raw.builder.map(|b| {
                builder::from_raw(&mut c, b, endpoint, endpoint_line).map(TemprKind::Builder)
            }),
            RawKind::Template => source(&mut c, dir, raw.template, raw.template_file, "template")
                .map(|(src, off, file)| match Template::compile(src) {
                    Ok(t) => Some(TemprKind::Template(t)),
                    Err((line, msg)) => compile_failed(&mut c, file, off, "template", line, msg),
                }),
            RawKind::Mustache => source(&mut c, dir, raw.template, raw.template_file, "template")
                .map(|(src, off, file)| {
                    let partials = raw.partials.unwrap_or_default();
                    let texts: Vec<(String, String)> = partials
                        .iter()
                        .map(|(name, text)| (name.clone(), text.get_ref().clone()))
                        .collect();
                    let escape = raw.escape.map(|e| e.into_inner()).unwrap_or_default();
                    match Mustache::compile(&src, &texts) {
                        Ok(m) => Some(TemprKind::Mustache(m.with_escape(escape))),
                        Err(errors) => {
                            for e in errors {
                                match e.partial.and_then(|n| partials.get_key_value(&n)) {
                                    Some((name, text)) => {
                                        let off = inline_offset(c.text, text.span().start);
                                        let field = format!("partials.{name}");
                                        compile_failed(&mut c, None, off, &field, e.line, e.message)
                                    }
                                    None => {
                                        let file = file.clone();
                                        compile_failed(
                                            &mut c, file, off, "template", e.line, e.message,
                                        )
                                    }
                                };
                            }
                            None
                        }
                    }
                }),
            RawKind::Script => source(&mut c, dir, raw.script, raw.script_file, "script").map(
                |(src, off, file)| match Script::compile(src) {
                    Ok(s) => Some(TemprKind::Script(s)),
                    Err((line, msg)) => compile_failed(&mut c, file, off, "script", line, msg),
                },
            ),
        }
        .flatten();

    match built {
        Some(kind) if c.errors.is_empty() => Ok(Tempr {
            name,
            version,
            description: raw.description,
            enabled: raw.enabled,
            matcher,
            endpoint,
            target,
            kind,
            next,
            source_file: path.to_path_buf(),
        }),
        _ => {
            if c.errors.is_empty() {
                c.error(kind_line, "kind", "no usable builder/template/script");
            }
            Err(c.errors)
        }
    }
}

/// Record that a template or script did not compile (always `None`, the kind it did not make):
/// at its line in the file it was read from, or in the Tempr file when it is inline text that
/// starts after file line `off`.
fn compile_failed(
    c: &mut Checker,
    file: Option<std::path::PathBuf>,
    off: usize,
    field: &str,
    line: Option<usize>,
    message: String,
) -> Option<TemprKind> {
    let (file, line) = match file {
        Some(f) => (f, line),
        None => (c.file.to_path_buf(), line.map(|l| l + off)),
    };
    c.errors.push(TemprError::File {
        file,
        line,
        field: field.into(),
        message,
    });
    None
}

/// The Tempr file line just before line 1 of the inline text (a TOML string) starting at byte
/// `start`: `'''` (or `"""`) followed by a newline drops that newline, so line 1 is the next line.
fn inline_offset(text: &str, start: usize) -> usize {
    let opener = text.get(start..start + 4).unwrap_or("");
    let first = line_at(text, start);
    if ["'''\n", "\"\"\"\n", "'''\r", "\"\"\"\r"]
        .iter()
        .any(|o| opener.starts_with(o))
    {
        first
    } else {
        first - 1
    }
}

/// The inline text or the referenced file's text, with the line offset of inline text in the
/// TOML file (template line 1 = file line `off + 1`) and the referenced file's path.
fn source(
    c: &mut Checker,
    dir: &Path,
    inline: Option<Spanned<String>>,
    file: Option<Spanned<String>>,
    field: &str,
) -> Option<(String, usize, Option<std::path::PathBuf>)> {
    if let Some(s) = inline {
        let off = inline_offset(c.text, s.span().start);
        return Some((s.into_inner(), off, None));
    }
    let f = file?;
    let rel = f.get_ref();
    let full = dir.join(rel);
    if Path::new(rel).is_absolute() || rel.split(['/', '\\']).any(|p| p == "..") {
        let line = c.line(&f.span());
        c.error(
            line,
            &format!("{field}_file"),
            format!("{rel:?} must be a plain path inside the Tempr directory"),
        );
        return None;
    }
    match std::fs::read_to_string(&full) {
        Ok(text) => Some((text, 0, Some(full))),
        Err(e) => {
            let line = c.line(&f.span());
            c.error(
                line,
                &format!("{field}_file"),
                format!("cannot read {}: {e}", full.display()),
            );
            None
        }
    }
}

fn globs(list: OneOrMany) -> Vec<Glob> {
    list.0.into_iter().map(Glob).collect()
}

fn match_from_raw(c: &mut Checker, raw: RawMatch) -> Match {
    let mut values = Vec::new();
    for (p, patterns) in raw.values {
        match RecordPath::parse(&p) {
            Ok(path) => values.push((path, globs(patterns))),
            Err(e) => {
                let line = c.line_of("match.values");
                c.error(line, &format!("match.values.{p:?}"), e);
            }
        }
    }
    Match {
        sources: globs(raw.sources),
        vendors: globs(raw.vendor),
        models: globs(raw.model),
        test_codes: globs(raw.test_codes),
        values,
    }
}
