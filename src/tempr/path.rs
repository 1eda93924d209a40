//! Record paths (`results.MTB-RIF/Xpert/MTB.value`) and uid seed templates
//! (`"{source}:{sample_id}:{program_stage}"`).
//!
//! A path is dot-separated keys. A key runs to the next `.` or `[`, so it may contain `/`, `-`,
//! `:` and spaces (`results.MTB-RIF/RIF/RIF Resistance.value`). A key containing a dot is quoted:
//! `results["HBA1C.PCT"].value`. A key that is a number indexes an array
//! (`observations.0.value`). A path starting with `ctx.` reads the Tempr context instead of the
//! record (`ctx.org_unit`).

use serde_json::Value;
use std::fmt;

/// A parsed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    text: String,
    keys: Vec<String>,
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Path {
    /// Parse `text`; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Path, String> {
        let mut keys = Vec::new();
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err("empty path".into());
        }
        loop {
            if let Some(after) = rest.strip_prefix("[\"") {
                let Some(end) = after.find("\"]") else {
                    return Err(format!("unclosed [\"…\"] in path {text:?}"));
                };
                keys.push(after[..end].to_string());
                rest = &after[end + 2..];
            } else {
                let end = rest.find(['.', '[']).unwrap_or(rest.len());
                let key = rest[..end].trim();
                if key.is_empty() {
                    return Err(format!("empty key in path {text:?}"));
                }
                keys.push(key.to_string());
                rest = &rest[end..];
            }
            if rest.is_empty() {
                break;
            }
            if let Some(r) = rest.strip_prefix('.') {
                rest = r;
                if rest.is_empty() {
                    return Err(format!("path {text:?} ends with '.'"));
                }
            } else if !rest.starts_with("[\"") {
                return Err(format!(
                    "expected '.' or '[\"' in path {text:?} at {rest:?}"
                ));
            }
        }
        Ok(Path {
            text: text.trim().to_string(),
            keys,
        })
    }

    /// The value at this path: `ctx.…` in `ctx`, anything else in `record`. `None` when a key
    /// is missing; a present JSON `null` is returned as `Some(Value::Null)`.
    pub fn lookup<'a>(&self, record: &'a Value, ctx: &'a Value) -> Option<&'a Value> {
        let (root, keys) = match self.keys.split_first() {
            Some((first, rest)) if first == "ctx" => (ctx, rest),
            _ => (record, &self.keys[..]),
        };
        keys.iter().try_fold(root, |v, k| match v {
            Value::Object(m) => m.get(k),
            Value::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        })
    }

    /// The value as text, treating a missing key and `null` alike (`None`). Numbers and booleans
    /// are written as JSON writes them; arrays and objects are not scalar and give `Err`.
    pub fn text(&self, record: &Value, ctx: &Value) -> Result<Option<String>, String> {
        scalar_text(self.lookup(record, ctx))
    }
}

/// A scalar JSON value as text (`None` for missing/null).
pub fn scalar_text(v: Option<&Value>) -> Result<Option<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(Value::Array(_)) => Err("is a list, not a single value".into()),
        Some(Value::Object(_)) => Err("is an object, not a single value".into()),
    }
}

/// One or more alternative paths: the first that has a non-null value wins
/// (`from = ["patient_id", "sample_id"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths(pub Vec<Path>);

impl fmt::Display for Paths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&names.join("|"))
    }
}

impl Paths {
    pub fn parse<S: AsRef<str>>(alternatives: &[S]) -> Result<Paths, String> {
        if alternatives.is_empty() {
            return Err("no path given".into());
        }
        alternatives
            .iter()
            .map(|a| Path::parse(a.as_ref()))
            .collect::<Result<_, _>>()
            .map(Paths)
    }

    /// First non-null value as text; `Err((path, why))` for a non-scalar value.
    pub fn text(&self, record: &Value, ctx: &Value) -> Result<Option<String>, (String, String)> {
        for p in &self.0 {
            match p.text(record, ctx) {
                Ok(Some(s)) => return Ok(Some(s)),
                Ok(None) => {}
                Err(why) => return Err((p.to_string(), why)),
            }
        }
        Ok(None)
    }
}

/// A seed template: literal text with `{path}` placeholders, `{a|b}` = first non-null of a, b.
/// `{{` and `}}` are literal braces. Extra names (`program_stage` …) are resolved before paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    text: String,
    parts: Vec<SeedPart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SeedPart {
    Lit(String),
    Field { name: String, paths: Paths },
}

impl fmt::Display for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Seed {
    /// A seed without placeholders.
    pub fn literal(text: &str) -> Seed {
        Seed {
            text: text.to_string(),
            parts: vec![SeedPart::Lit(text.to_string())],
        }
    }

    pub fn parse(text: &str) -> Result<Seed, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|p| p.1) == Some('{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek().map(|p| p.1) == Some('}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let Some(len) = text[i + 1..].find('}') else {
                        return Err(format!("unclosed '{{' in {text:?}"));
                    };
                    let name = text[i + 1..i + 1 + len].trim().to_string();
                    let alts: Vec<&str> = name.split('|').collect();
                    let paths = Paths::parse(&alts).map_err(|e| format!("{e} in {text:?}"))?;
                    if !lit.is_empty() {
                        parts.push(SeedPart::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(SeedPart::Field { name, paths });
                    while chars.peek().is_some_and(|&(j, _)| j <= i + 1 + len) {
                        chars.next();
                    }
                }
                '}' => return Err(format!("unmatched '}}' in {text:?} (write '}}}}')")),
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(SeedPart::Lit(lit));
        }
        Ok(Seed {
            text: text.to_string(),
            parts,
        })
    }

    /// Render with `extra` names first (`program_stage` → the configured stage), then paths.
    /// A placeholder without a value is an error naming it.
    pub fn render(
        &self,
        record: &Value,
        ctx: &Value,
        extra: &[(&str, &str)],
    ) -> Result<String, (String, String)> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                SeedPart::Lit(s) => out.push_str(s),
                SeedPart::Field { name, paths } => {
                    if let Some((_, v)) = extra.iter().find(|(k, _)| k == name) {
                        out.push_str(v);
                        continue;
                    }
                    match paths.text(record, ctx)? {
                        Some(v) => out.push_str(&v),
                        None => return Err((paths.to_string(), "is missing".into())),
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_take_slashes_dashes_spaces_and_quoted_dots() {
        let rec = json!({"results": {"MTB-RIF/Xpert/MTB": {"value": "NOT DETECTED"},
            "MTB-RIF/RIF/RIF Resistance": {"value": null}, "HBA1C.PCT": {"value": 6.1}},
            "observations": [{"value": "x"}]});
        let ctx = json!({"org_unit": "DiszpKrYNg8"});
        let t = |p: &str| Path::parse(p).unwrap().text(&rec, &ctx).unwrap();
        assert_eq!(
            t("results.MTB-RIF/Xpert/MTB.value").as_deref(),
            Some("NOT DETECTED")
        );
        assert_eq!(t("results.MTB-RIF/RIF/RIF Resistance.value"), None);
        assert_eq!(t("results[\"HBA1C.PCT\"].value").as_deref(), Some("6.1"));
        assert_eq!(t("observations.0.value").as_deref(), Some("x"));
        assert_eq!(t("ctx.org_unit").as_deref(), Some("DiszpKrYNg8"));
        assert_eq!(t("results.nope.value"), None);
        assert!(Path::parse("a..b").is_err());
        assert!(Path::parse("a.").is_err());
        assert!(Path::parse("a[\"b").is_err());
        assert!(Path::parse("").is_err());
    }

    #[test]
    fn seeds_fill_placeholders_and_alternatives() {
        let rec = json!({"source": "gx-1", "sample_id": "PR25A137", "patient_id": null});
        let s = Seed::parse("{source}:{patient_id|sample_id}:{program_stage}:{{x}}").unwrap();
        let out = s
            .render(&rec, &json!({}), &[("program_stage", "mPdMZNWVrOQ")])
            .unwrap();
        assert_eq!(out, "gx-1:PR25A137:mPdMZNWVrOQ:{x}");
        let err = Seed::parse("{patient_id}")
            .unwrap()
            .render(&rec, &json!({}), &[])
            .unwrap_err();
        assert_eq!(err.0, "patient_id");
        assert!(Seed::parse("{oops").is_err());
        assert!(Seed::parse("a}b").is_err());
    }
}
