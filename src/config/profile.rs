//! Device profiles: `profile = "sysmex-xn"` on a source pulls in the settings and test-code table
//! of one analyzer model (the format is agreed in docs/config.md "Device profiles").
//!
//! A profile is merged into its source **at the TOML level, before validation**, so a profile can
//! carry any key a source accepts (nested protocol tables such as `[modbus]` or `[export]`
//! included) and every existing check applies to the merged source unchanged:
//!
//! 1. the config text and each used profile's text are parsed into [`Tree`]s that keep every
//!    value with its byte span;
//! 2. the profile's spans are moved behind the config text in one *virtual text* (config, then
//!    one copy of the profile per source that uses it), so a span still names exactly one place;
//! 3. the source table is deep-merged over the profile (sub-tables key by key; scalars and arrays
//!    replaced), and the merged tree is read into the `Raw*` types by [`Tree`]'s own serde
//!    deserializer, which speaks toml's span protocol so [`super::raw::Val`] keeps its span;
//! 4. an error whose line lies in a profile's part of the virtual text is reported at the
//!    source's `profile = …` line and says `(from profile "x", <file> line N)` ([`Origins`]).
//!
//! Profiles are looked up in a `profiles/` folder next to the config file, then among the
//! built-in ones compiled from config/profiles/ ([`BUILTIN`]). The `[profile]` header and the
//! `[[tests]]` table are profile-only; `[[tests]]` becomes the source's [`TestTable`].

use super::ConfigError;
use super::raw::{
    DATETIME_KEY, Kind, Node, SPANNED_END, SPANNED_FIELDS, SPANNED_NAME, SPANNED_START,
    SPANNED_VALUE, line_at, one_line,
};
use crate::record::Observation;
use serde::Deserialize;
use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `(name, text)` of the named files of config/profiles/, compiled in.
macro_rules! builtin {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../config/profiles/", $name, ".toml")))),*]
    };
}

/// The profiles compiled into the binary: every file in config/profiles/, one name a line, sorted
/// (a unit test checks that this list and the folder hold the same files).
pub const BUILTIN: &[(&str, &str)] = builtin![
    "afinion-2",
    "alinity-m",
    "cobas-4800",
    "cobas-6800-8800",
    "cobas-c111",
    "cobas-c311",
    "cobas-cedex-csv",
    "dca-vantage",
    "fridge-logger-modbus",
    "genexpert-astm",
    "genexpert-export",
    "genexpert-hl7",
    "m2000",
    "mindray-bc5380",
    "nova-statstrip-poct1",
    "pentra-xlr",
    "pima-csv",
    "sysmex-xn",
    "sysmex-xp",
    "yumizen-h500",
];

/// Keys of the `[profile]` header.
const HEADER_KEYS: &[&str] = &["name", "vendor", "models", "reference", "notes"];
/// Keys of one `[[tests]]` entry.
const TEST_KEYS: &[&str] = &["code", "name", "unit", "loinc"];

// ---------------------------------------------------------------------------------------------
// Where profiles come from

/// Where `profile = "name"` is looked up: an optional folder, then the built-in profiles.
#[derive(Debug, Clone, Default)]
pub struct Profiles {
    /// `profiles/` next to the config file (it need not exist).
    pub dir: Option<PathBuf>,
}

/// One profile's text and where it came from (for error messages).
#[derive(Debug, Clone)]
pub struct ProfileText {
    pub name: String,
    /// `profiles/x.toml` (a file) or `built-in x` (compiled in).
    pub label: String,
    pub text: String,
}

impl Profiles {
    /// Only the built-in profiles.
    pub fn builtin() -> Self {
        Profiles { dir: None }
    }

    /// The `profiles/` folder next to `config_file`, then the built-in profiles.
    pub fn next_to(config_file: &Path) -> Self {
        let dir = config_file
            .parent()
            .map(|p| p.join("profiles"))
            .unwrap_or_else(|| PathBuf::from("profiles"));
        Profiles { dir: Some(dir) }
    }

    /// Every profile name available, sorted (folder and built-in).
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = BUILTIN.iter().map(|(n, _)| (*n).to_owned()).collect();
        if let Some(dir) = &self.dir
            && let Ok(entries) = std::fs::read_dir(dir)
        {
            for e in entries.flatten() {
                let file = e.file_name().to_string_lossy().into_owned();
                if let Some(name) = file.strip_suffix(".toml")
                    && valid_name(name)
                {
                    names.push(name.to_owned());
                }
            }
        }
        names.sort();
        names.dedup();
        names
    }

    /// The profile called `name`: the folder's file first, then the built-in one.
    pub fn get(&self, name: &str) -> Result<ProfileText, String> {
        if !valid_name(name) {
            return Err(format!(
                "\"{name}\" is not a profile name (lowercase letters, digits and \"-\")"
            ));
        }
        if let Some(dir) = &self.dir {
            let path = dir.join(format!("{name}.toml"));
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    return Ok(ProfileText {
                        name: name.to_owned(),
                        label: path.display().to_string(),
                        text,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
            }
        }
        match BUILTIN.iter().find(|(n, _)| *n == name) {
            Some((n, text)) => Ok(ProfileText {
                name: (*n).to_owned(),
                label: format!("built-in profile {n}"),
                text: (*text).to_owned(),
            }),
            None => Err(format!(
                "unknown profile \"{name}\" (available: {})",
                self.names().join(", ")
            )),
        }
    }
}

/// `[a-z0-9-]{1,64}`, not starting with `-`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Reads a profile given by name (looked up in `profiles`) or by path (anything with a `/` or
/// ending in `.toml`), for `pocketgate decode --profile`.
pub fn read_named_or_path(arg: &str, profiles: &Profiles) -> Result<ProfileText, String> {
    if arg.contains('/') || arg.ends_with(".toml") {
        let text = std::fs::read_to_string(arg).map_err(|e| format!("cannot read {arg}: {e}"))?;
        let name = Path::new(arg)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| arg.to_owned());
        return Ok(ProfileText {
            name,
            label: arg.to_owned(),
            text,
        });
    }
    profiles.get(arg)
}

// ---------------------------------------------------------------------------------------------
// The test-code table

/// What a profile knows about one test code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestInfo {
    pub name: Option<String>,
    pub unit: Option<String>,
    pub loinc: Option<String>,
}

/// A source's `[[tests]]` table from its profile: fills what a message leaves out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestTable(Arc<BTreeMap<String, TestInfo>>);

impl TestTable {
    pub fn new(map: BTreeMap<String, TestInfo>) -> Self {
        TestTable(Arc::new(map))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn get(&self, code: &str) -> Option<&TestInfo> {
        self.0.get(code)
    }

    /// Fill `test_name`, `unit` and `extra.loinc` of each observation whose `test_code` is in the
    /// table, only where the message itself said nothing: a device's own value always wins. A
    /// unit filled here reaches the quantity too (unless its text named one), so a bare
    /// `Not Detected` of a test the table gives copies/mL is a not-detected viral load.
    pub fn enrich(&self, observations: &mut [Observation]) {
        if self.0.is_empty() {
            return;
        }
        let blank = |v: &Option<String>| v.as_deref().is_none_or(|s| s.trim().is_empty());
        for o in observations {
            let Some(t) = self.0.get(&o.test_code) else {
                continue;
            };
            if blank(&o.test_name) && t.name.is_some() {
                o.test_name = t.name.clone();
            }
            if blank(&o.unit) && t.unit.is_some() {
                o.unit = t.unit.clone();
                // The quantity was read without a unit: read it again with the table's.
                crate::protocol::quantity::reread_with_unit(o);
            }
            if let Some(l) = &t.loinc {
                o.extra.entry("loinc".into()).or_insert_with(|| l.clone());
            }
        }
    }
}

/// A LOINC code `NNNNN-C` whose check digit C is right (the LOINC "mod 10" rule, which is Luhn's:
/// double every second digit from the right, add the digits, C brings the sum to a multiple of 10).
pub fn valid_loinc(code: &str) -> bool {
    let Some((num, check)) = code.split_once('-') else {
        return false;
    };
    if num.is_empty()
        || num.len() > 7
        || check.len() != 1
        || !num.bytes().all(|b| b.is_ascii_digit())
        || !check.bytes().all(|b| b.is_ascii_digit())
    {
        return false;
    }
    let sum: u32 = num
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let x = d * 2;
                x / 10 + x % 10
            } else {
                d
            }
        })
        .sum();
    let expected = (10 - sum % 10) % 10;
    u32::from(check.as_bytes()[0] - b'0') == expected
}

// ---------------------------------------------------------------------------------------------
// A TOML document that keeps every value and its span

/// One TOML value with where it was written (byte offsets into the virtual text).
#[derive(Debug, Clone)]
pub struct Tree {
    pub span: Option<Range<usize>>,
    pub kind: TreeKind,
}

#[derive(Debug, Clone)]
pub enum TreeKind {
    Table(Vec<(String, Tree)>),
    Array(Vec<Tree>),
    Scalar(toml::Value),
}

impl Tree {
    /// Parse TOML text; a syntax error comes back as toml's error (with its span).
    pub fn parse(text: &str) -> Result<Tree, toml::de::Error> {
        toml::from_str(text)
    }

    fn table() -> Tree {
        Tree {
            span: None,
            kind: TreeKind::Table(Vec::new()),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Tree> {
        match &self.kind {
            TreeKind::Table(e) => e.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn remove(&mut self, key: &str) -> Option<Tree> {
        match &mut self.kind {
            TreeKind::Table(e) => {
                let i = e.iter().position(|(k, _)| k == key)?;
                Some(e.remove(i).1)
            }
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match &self.kind {
            TreeKind::Scalar(toml::Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// Where this value starts: its span, or its first spanned descendant's.
    fn start(&self) -> Option<usize> {
        if let Some(s) = &self.span {
            return Some(s.start);
        }
        match &self.kind {
            TreeKind::Table(e) => e.iter().filter_map(|(_, v)| v.start()).min(),
            TreeKind::Array(items) => items.iter().filter_map(Tree::start).min(),
            TreeKind::Scalar(_) => None,
        }
    }

    /// Move every span `by` bytes (a profile's text placed behind the config's).
    fn shift(&mut self, by: usize) {
        if let Some(s) = &mut self.span {
            *s = s.start + by..s.end + by;
        }
        match &mut self.kind {
            TreeKind::Table(e) => e.iter_mut().for_each(|(_, v)| v.shift(by)),
            TreeKind::Array(items) => items.iter_mut().for_each(|v| v.shift(by)),
            TreeKind::Scalar(_) => {}
        }
    }

    /// The shape tree `raw` checks keys and finds lines with.
    pub(super) fn to_node(&self) -> Node {
        Node {
            span: self.span.clone(),
            kind: match &self.kind {
                TreeKind::Table(e) => {
                    Kind::Table(e.iter().map(|(k, v)| (k.clone(), v.to_node())).collect())
                }
                TreeKind::Array(items) => Kind::Array(items.iter().map(Tree::to_node).collect()),
                TreeKind::Scalar(toml::Value::Table(_) | toml::Value::Array(_)) => {
                    Kind::Table(Vec::new())
                }
                TreeKind::Scalar(_) => Kind::Scalar,
            },
        }
    }

    /// A serde deserializer over this tree (speaks toml's span protocol).
    pub(super) fn deserializer(&self) -> TreeDe<'_> {
        TreeDe {
            tree: self,
            bare: false,
        }
    }
}

/// Deep merge: `over`'s keys win; tables present in both are merged key by key; scalars and
/// arrays are replaced. The result keeps `over`'s span.
fn merge(base: Tree, over: Tree) -> Tree {
    match (base.kind, over.kind) {
        (TreeKind::Table(mut b), TreeKind::Table(o)) => {
            for (key, value) in o {
                match b.iter().position(|(k, _)| *k == key) {
                    Some(i) => {
                        let old = std::mem::replace(&mut b[i].1, Tree::table());
                        b[i].1 = merge(old, value);
                    }
                    None => b.push((key, value)),
                }
            }
            Tree {
                span: over.span,
                kind: TreeKind::Table(b),
            }
        }
        (_, kind) => Tree {
            span: over.span,
            kind,
        },
    }
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Tree;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any TOML value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
                let first = map.next_key::<String>()?;
                if first.as_deref() == Some(SPANNED_START) {
                    let start: usize = map.next_value()?;
                    let end = match map.next_key::<String>()? {
                        Some(k) if k == SPANNED_END => map.next_value::<usize>()?,
                        _ => return Err(de::Error::custom("malformed spanned value")),
                    };
                    let kind = match map.next_key::<String>()? {
                        Some(k) if k == SPANNED_VALUE => map.next_value::<BareKind>()?.0,
                        _ => return Err(de::Error::custom("malformed spanned value")),
                    };
                    return Ok(Tree {
                        span: Some(start..end),
                        kind,
                    });
                }
                Ok(Tree {
                    span: None,
                    kind: read_table(first, map)?,
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Tree, A::Error> {
                Ok(Tree {
                    span: None,
                    kind: read_array(seq)?,
                })
            }
            fn visit_bool<E>(self, v: bool) -> Result<Tree, E> {
                Ok(scalar(toml::Value::Boolean(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Tree, E> {
                Ok(scalar(toml::Value::Integer(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Tree, E> {
                Ok(scalar(toml::Value::Float(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Tree, E> {
                Ok(scalar(toml::Value::String(v.to_owned())))
            }
        }
        deserializer.deserialize_struct(SPANNED_NAME, SPANNED_FIELDS, V)
    }
}

fn scalar(v: toml::Value) -> Tree {
    Tree {
        span: None,
        kind: TreeKind::Scalar(v),
    }
}

/// The value inside a span (asking for a span again would recurse).
struct BareKind(TreeKind);

impl<'de> Deserialize<'de> for BareKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BareKind;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any TOML value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BareKind, A::Error> {
                let first = map.next_key::<String>()?;
                Ok(BareKind(read_table(first, map)?))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<BareKind, A::Error> {
                Ok(BareKind(read_array(seq)?))
            }
            fn visit_bool<E>(self, v: bool) -> Result<BareKind, E> {
                Ok(BareKind(TreeKind::Scalar(toml::Value::Boolean(v))))
            }
            fn visit_i64<E>(self, v: i64) -> Result<BareKind, E> {
                Ok(BareKind(TreeKind::Scalar(toml::Value::Integer(v))))
            }
            fn visit_f64<E>(self, v: f64) -> Result<BareKind, E> {
                Ok(BareKind(TreeKind::Scalar(toml::Value::Float(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<BareKind, E> {
                Ok(BareKind(TreeKind::Scalar(toml::Value::String(
                    v.to_owned(),
                ))))
            }
        }
        deserializer.deserialize_any(V)
    }
}

fn read_table<'de, A: MapAccess<'de>>(
    first: Option<String>,
    mut map: A,
) -> Result<TreeKind, A::Error> {
    let mut entries = Vec::new();
    let mut key = first;
    while let Some(k) = key {
        if k == DATETIME_KEY {
            let text: String = map.next_value()?;
            return match text.parse::<toml::value::Datetime>() {
                Ok(d) => Ok(TreeKind::Scalar(toml::Value::Datetime(d))),
                Err(_) => Ok(TreeKind::Scalar(toml::Value::String(text))),
            };
        }
        let value = map.next_value::<Tree>()?;
        entries.push((k, value));
        key = map.next_key::<String>()?;
    }
    Ok(TreeKind::Table(entries))
}

fn read_array<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<TreeKind, A::Error> {
    let mut items = Vec::new();
    while let Some(item) = seq.next_element::<Tree>()? {
        items.push(item);
    }
    Ok(TreeKind::Array(items))
}

/// Deserializer over a [`Tree`]: tables are maps, arrays sequences, scalars whatever toml makes of
/// them; asked for toml's span struct it hands over the span, so `Val` keeps its line.
pub(super) struct TreeDe<'a> {
    tree: &'a Tree,
    /// Inside a span already: do not offer it again.
    bare: bool,
}

type DeError = toml::de::Error;

impl<'de> Deserializer<'de> for TreeDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.tree.kind {
            TreeKind::Table(entries) => visitor.visit_map(TableAccess {
                iter: entries.iter(),
                value: None,
            }),
            TreeKind::Array(items) => visitor.visit_seq(ArrayAccess { iter: items.iter() }),
            TreeKind::Scalar(toml::Value::Datetime(d)) => visitor.visit_map(DatetimeAccess {
                text: Some(d.to_string()),
            }),
            TreeKind::Scalar(v) => v.clone().deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.tree.kind {
            TreeKind::Scalar(v) => v.clone().deserialize_enum(name, variants, visitor),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match (&self.tree.span, name == SPANNED_NAME && !self.bare) {
            (Some(span), true) => visitor.visit_map(SpanAccess {
                tree: self.tree,
                span: span.clone(),
                step: 0,
            }),
            _ => self.deserialize_any(visitor),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map identifier ignored_any
    }
}

struct TableAccess<'a> {
    iter: std::slice::Iter<'a, (String, Tree)>,
    value: Option<&'a Tree>,
}

impl<'de> MapAccess<'de> for TableAccess<'_> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.iter.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(k.as_str().into_deserializer()).map(Some)
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, DeError> {
        let tree = self
            .value
            .take()
            .ok_or_else(|| <DeError as de::Error>::custom("value without a key"))?;
        seed.deserialize(TreeDe { tree, bare: false })
    }
}

struct ArrayAccess<'a> {
    iter: std::slice::Iter<'a, Tree>,
}

impl<'de> SeqAccess<'de> for ArrayAccess<'_> {
    type Error = DeError;
    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, DeError> {
        match self.iter.next() {
            Some(tree) => seed.deserialize(TreeDe { tree, bare: false }).map(Some),
            None => Ok(None),
        }
    }
}

/// toml's span struct: `start`, `end`, then the value itself.
struct SpanAccess<'a> {
    tree: &'a Tree,
    span: Range<usize>,
    step: u8,
}

impl<'de> MapAccess<'de> for SpanAccess<'_> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let key = match self.step {
            0 => SPANNED_START,
            1 => SPANNED_END,
            2 => SPANNED_VALUE,
            _ => return Ok(None),
        };
        seed.deserialize(key.into_deserializer()).map(Some)
    }
    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, DeError> {
        self.step += 1;
        match self.step {
            1 => seed.deserialize(self.span.start.into_deserializer()),
            2 => seed.deserialize(self.span.end.into_deserializer()),
            _ => seed.deserialize(TreeDe {
                tree: self.tree,
                bare: true,
            }),
        }
    }
}

/// A datetime the way toml hands it over: a one-key map.
struct DatetimeAccess {
    text: Option<String>,
}

impl<'de> MapAccess<'de> for DatetimeAccess {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        if self.text.is_none() {
            return Ok(None);
        }
        seed.deserialize(DATETIME_KEY.into_deserializer()).map(Some)
    }
    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, DeError> {
        let text = self.text.take().unwrap_or_default();
        seed.deserialize(text.into_deserializer())
    }
}

// ---------------------------------------------------------------------------------------------
// Expanding the profiles of a config

/// Where each profile copy sits in the virtual text, to report its lines.
#[derive(Debug, Clone, Default)]
pub(super) struct Origins {
    /// Last line of the config text itself.
    config_lines: usize,
    /// `(first virtual line, profile name, label, line of the source's profile key)`.
    parts: Vec<(usize, String, String, Option<usize>)>,
}

impl Origins {
    /// Rewrite an error whose line lies in a profile: it points at the source's `profile = …`
    /// line and names the profile file and line.
    pub(super) fn map(&self, mut e: ConfigError) -> ConfigError {
        let Some(line) = e.line else {
            return e;
        };
        if line <= self.config_lines {
            return e;
        }
        if let Some((first, name, label, key_line)) =
            self.parts.iter().rev().find(|(first, ..)| *first <= line)
        {
            e.message = format!(
                "{} (from profile \"{name}\", {label} line {})",
                e.message,
                line - first + 1
            );
            e.line = *key_line;
        }
        e
    }
}

/// The config with its sources' profiles merged in.
pub(super) struct Expanded {
    /// Config text, then one copy of each used profile (spans point into this).
    pub text: String,
    pub tree: Tree,
    /// `[[tests]]` of each source's profile, by source index.
    pub tests: Vec<TestTable>,
    pub origins: Origins,
    /// Mistakes in profiles found while merging (unknown profile, bad `[[tests]]` …).
    pub errors: Vec<ConfigError>,
}

/// Parse `text` and merge every source's profile into it. Only a syntax error in the config
/// itself stops here; everything else is collected in [`Expanded::errors`].
pub(super) fn expand(text: &str, profiles: &Profiles) -> Result<Expanded, ConfigError> {
    let mut tree = Tree::parse(text).map_err(|e| ConfigError {
        path: String::new(),
        line: e.span().map(|s| line_at(text, s.start)),
        message: one_line(e.message()),
    })?;
    let mut out = Expanded {
        text: text.to_owned(),
        tree: Tree::table(),
        tests: Vec::new(),
        origins: Origins {
            config_lines: line_at(text, text.len()),
            parts: Vec::new(),
        },
        errors: Vec::new(),
    };
    if let TreeKind::Table(top) = &mut tree.kind
        && let Some((_, sources)) = top.iter_mut().find(|(k, _)| k == "sources")
        && let TreeKind::Array(items) = &mut sources.kind
    {
        for (i, source) in items.iter_mut().enumerate() {
            let tests = apply_profile(i, source, profiles, &mut out);
            out.tests.push(tests);
        }
    }
    out.tree = tree;
    Ok(out)
}

/// Merge source `i`'s profile (if it names one) into it; returns its test table.
fn apply_profile(
    i: usize,
    source: &mut Tree,
    profiles: &Profiles,
    out: &mut Expanded,
) -> TestTable {
    let path = |k: &str| format!("sources[{i}].{k}");
    let Some(key) = source.get("profile") else {
        return TestTable::default();
    };
    let key_line = key.start().map(|s| line_at(&out.text, s));
    // A profile of the wrong type is reported by validation (`Val`).
    let Some(name) = key.as_str().map(str::to_owned) else {
        return TestTable::default();
    };
    let profile = match profiles.get(&name) {
        Ok(p) => p,
        Err(message) => {
            out.errors.push(ConfigError {
                path: path("profile"),
                line: key_line,
                message,
            });
            return TestTable::default();
        }
    };
    let base = out.text.len() + 1;
    out.text.push('\n');
    out.text.push_str(&profile.text);
    out.origins.parts.push((
        line_at(&out.text, base),
        profile.name.clone(),
        profile.label.clone(),
        key_line,
    ));
    let mut ptree = match Tree::parse(&profile.text) {
        Ok(t) => t,
        Err(e) => {
            out.errors.push(ConfigError {
                path: path("profile"),
                line: e.span().map(|s| line_at(&out.text, s.start + base)),
                message: one_line(e.message()),
            });
            return TestTable::default();
        }
    };
    ptree.shift(base);
    let mut errors = Vec::new();
    let line = |t: &Tree| t.start().map(|s| line_at(&out.text, s));
    if let Some(header) = take_header(&mut ptree, &path(""), &line, &mut errors) {
        check_header(&header, &path("profile"), &line, &mut errors);
    } else {
        errors.push(ConfigError {
            path: path("profile"),
            line: key_line,
            message: format!("profile \"{name}\" has no [profile] header with its name"),
        });
    }
    for forbidden in ["id"] {
        if let Some(t) = ptree.remove(forbidden) {
            errors.push(ConfigError {
                path: path(forbidden),
                line: line(&t),
                message: "a profile cannot set the source's id".into(),
            });
        }
    }
    let tests = match ptree.remove("tests") {
        Some(t) => read_tests(&t, &path("tests"), &line, &mut errors),
        None => TestTable::default(),
    };
    out.errors.extend(errors);
    // A source that picks another transport than its profile (a LAN instead of a serial
    // connection) does not inherit the profile's settings of that transport (`baud` …).
    let transport = |t: &Tree| t.get("transport").and_then(Tree::as_str).map(str::to_owned);
    if let (Some(own), Some(theirs)) = (transport(source), transport(&ptree))
        && own != theirs
        && let Some((_, keys)) = super::TRANSPORT_KEYS
            .iter()
            .find(|(t, _)| t.name() == theirs)
    {
        for k in *keys {
            ptree.remove(k);
        }
    }
    let own = std::mem::replace(source, Tree::table());
    *source = merge(ptree, own);
    tests
}

/// Takes the `[profile]` table out of a profile. In TOML the source keys written below the
/// `[profile]` header belong to that table, so every key that is not a header key moves to the
/// top, next to the nested tables (`[modbus]`, `[export]`) and keys written above the header.
fn take_header(
    ptree: &mut Tree,
    prefix: &str,
    line: &dyn Fn(&Tree) -> Option<usize>,
    errors: &mut Vec<ConfigError>,
) -> Option<Tree> {
    let mut header = ptree.remove("profile")?;
    let TreeKind::Table(entries) = &mut header.kind else {
        return Some(header);
    };
    let (keep, settings): (Vec<_>, Vec<_>) = std::mem::take(entries)
        .into_iter()
        .partition(|(k, _)| HEADER_KEYS.contains(&k.as_str()));
    *entries = keep;
    if let TreeKind::Table(top) = &mut ptree.kind {
        for (k, v) in settings {
            if top.iter().any(|(t, _)| *t == k) {
                errors.push(ConfigError {
                    path: format!("{prefix}{k}"),
                    line: line(&v),
                    message: "set twice in the profile (above and below [profile])".into(),
                });
            } else {
                top.push((k, v));
            }
        }
    }
    Some(header)
}

fn check_header(
    header: &Tree,
    path: &str,
    line: &dyn Fn(&Tree) -> Option<usize>,
    errors: &mut Vec<ConfigError>,
) {
    let TreeKind::Table(entries) = &header.kind else {
        errors.push(ConfigError {
            path: path.to_owned(),
            line: line(header),
            message: "[profile] must be a table (name, vendor, models, reference, notes)".into(),
        });
        return;
    };
    for (k, v) in entries {
        let p = format!("{path}.{k}");
        let ok = match k.as_str() {
            "models" => matches!(&v.kind, TreeKind::Array(items)
                if items.iter().all(|m| m.as_str().is_some())),
            _ if HEADER_KEYS.contains(&k.as_str()) => v.as_str().is_some(),
            _ => {
                errors.push(ConfigError {
                    path: p,
                    line: line(v),
                    message: format!(
                        "unknown key in [profile] (expected one of: {})",
                        HEADER_KEYS.join(", ")
                    ),
                });
                continue;
            }
        };
        if !ok {
            let want = if k == "models" {
                "a list of texts"
            } else {
                "text in quotes"
            };
            errors.push(ConfigError {
                path: p,
                line: line(v),
                message: format!("expected {want}"),
            });
        }
    }
    if header.get("name").is_none() {
        errors.push(ConfigError {
            path: format!("{path}.name"),
            line: line(header),
            message: "required (the analyzer's name, e.g. name = \"Sysmex XN-series\")".into(),
        });
    }
}

fn read_tests(
    tests: &Tree,
    path: &str,
    line: &dyn Fn(&Tree) -> Option<usize>,
    errors: &mut Vec<ConfigError>,
) -> TestTable {
    let TreeKind::Array(items) = &tests.kind else {
        errors.push(ConfigError {
            path: path.to_owned(),
            line: line(tests),
            message: "expected a list of tables: write each test as [[tests]]".into(),
        });
        return TestTable::default();
    };
    let mut map = BTreeMap::new();
    for (n, item) in items.iter().enumerate() {
        let p = |k: &str| format!("{path}[{n}].{k}");
        let TreeKind::Table(entries) = &item.kind else {
            errors.push(ConfigError {
                path: format!("{path}[{n}]"),
                line: line(item),
                message: "expected a table".into(),
            });
            continue;
        };
        let text = |k: &str, errors: &mut Vec<ConfigError>| -> Option<String> {
            let v = item.get(k)?;
            match v.as_str() {
                Some(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
                _ => {
                    errors.push(ConfigError {
                        path: p(k),
                        line: line(v),
                        message: "expected non-empty text in quotes".into(),
                    });
                    None
                }
            }
        };
        for (k, v) in entries {
            if !TEST_KEYS.contains(&k.as_str()) {
                errors.push(ConfigError {
                    path: p(k),
                    line: line(v),
                    message: format!(
                        "unknown key in [[tests]] (expected one of: {})",
                        TEST_KEYS.join(", ")
                    ),
                });
            }
        }
        let code = text("code", errors);
        let info = TestInfo {
            name: text("name", errors),
            unit: text("unit", errors),
            loinc: text("loinc", errors),
        };
        if let Some(l) = &info.loinc
            && !valid_loinc(l)
        {
            errors.push(ConfigError {
                path: p("loinc"),
                line: item.get("loinc").and_then(line),
                message: format!(
                    "\"{l}\" is not a LOINC code (digits, \"-\", check digit; the check digit must match)"
                ),
            });
        }
        let Some(code) = code else {
            if item.get("code").is_none() {
                errors.push(ConfigError {
                    path: p("code"),
                    line: line(item),
                    message: "required (the test code as the analyzer sends it)".into(),
                });
            }
            continue;
        };
        if map.insert(code.clone(), info).is_some() {
            errors.push(ConfigError {
                path: p("code"),
                line: item.get("code").and_then(line),
                message: format!("\"{code}\" is listed twice"),
            });
        }
    }
    TestTable::new(map)
}

/// A profile read on its own (for `pocketgate decode --profile` and `pocketgate profiles`):
/// its header, its source settings as a tree, and its test table.
pub struct Standalone {
    pub name: String,
    pub header: BTreeMap<String, String>,
    pub tests: TestTable,
    /// The source keys of the profile (protocol, transport, encoding …) as TOML.
    pub settings: toml::Table,
}

/// Read one profile without a config around it; every mistake is returned, with lines in the
/// profile's own text.
pub fn read_standalone(p: &ProfileText) -> Result<Standalone, Vec<ConfigError>> {
    let mut tree = Tree::parse(&p.text).map_err(|e| {
        vec![ConfigError {
            path: p.label.clone(),
            line: e.span().map(|s| line_at(&p.text, s.start)),
            message: one_line(e.message()),
        }]
    })?;
    let mut errors = Vec::new();
    let line = |t: &Tree| t.start().map(|s| line_at(&p.text, s));
    let mut header = BTreeMap::new();
    match take_header(&mut tree, "", &line, &mut errors) {
        Some(h) => {
            check_header(&h, "profile", &line, &mut errors);
            if let TreeKind::Table(e) = &h.kind {
                for (k, v) in e {
                    let text = match &v.kind {
                        TreeKind::Scalar(toml::Value::String(s)) => s.clone(),
                        TreeKind::Array(items) => items
                            .iter()
                            .filter_map(Tree::as_str)
                            .collect::<Vec<_>>()
                            .join(", "),
                        _ => continue,
                    };
                    header.insert(k.clone(), text);
                }
            }
        }
        None => errors.push(ConfigError {
            path: "profile".into(),
            line: None,
            message: "no [profile] header".into(),
        }),
    }
    let tests = match tree.remove("tests") {
        Some(t) => read_tests(&t, "tests", &line, &mut errors),
        None => TestTable::default(),
    };
    let source_keys = super::raw::keys_of::<super::raw::RawSource>();
    if let TreeKind::Table(top) = &tree.kind {
        for (k, v) in top {
            if !source_keys.contains(&k.as_str()) || k == "id" || k == "profile" {
                errors.push(ConfigError {
                    path: k.clone(),
                    line: line(v),
                    message: "unknown key (not a [profile] key nor a setting of a source)".into(),
                });
            }
        }
    }
    errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
    if !errors.is_empty() {
        return Err(errors);
    }
    let settings = toml::Table::deserialize(tree.deserializer()).unwrap_or_default();
    Ok(Standalone {
        name: p.name.clone(),
        header,
        tests,
        settings,
    })
}

#[cfg(test)]
mod tests;
