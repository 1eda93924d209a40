//! The template Tempr: a minijinja template that renders the request as JSON.
//!
//! Undefined values are errors (`UndefinedBehavior::Strict`), every render is fuel-limited and
//! output-limited, and nothing is auto-escaped (use `|tojson` for every value you emit). The
//! template sees `record` (see `record_view`), `ctx` and `tempr` (`{name, version}`), plus:
//! - `uid(seed)` / `seed|uid` — [`deterministic_uid`];
//! - `dhis2_datetime`, `dhis2_date`, `dhis2_period` — ISO or ASTM time → `yyyy-MM-ddTHH:mm:ss.SSS`,
//!   `yyyy-MM-dd`, monthly `yyyyMM`;
//! - `fail(message)` — stop with this message (for checks the template makes itself);
//! - `value|option(map)` (alias `code`) — value map lookup with the builder's rules (exact, then
//!   case-insensitive, then whole-word prefix); `value|option(map, default)` instead of an error
//!   when the value is not in the map or is none.

use super::builder::map_value;
use super::dates;
use super::uid::deterministic_uid;
use super::{Limits, Tempr, TemprError};
use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr, Value as JValue};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior, context};
use serde_json::Value;
use std::io;
use std::sync::Arc;

const NAME: &str = "tempr";

/// A compiled template Tempr: parsed once when the Tempr file loads, its environment (filters,
/// functions, the compiled template) shared by every render of this Tempr version.
#[derive(Debug, Clone)]
pub struct Template {
    /// Fuel preset to [`Limits::default`]'s, so a render with the default limits borrows it
    /// as it is; other limits render through a copy with their own fuel.
    env: Environment<'static>,
    source: String,
}

impl PartialEq for Template {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Template {
    /// Compile `source`; a syntax error comes back with its template line.
    pub fn compile(source: String) -> Result<Template, (Option<usize>, String)> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_keep_trailing_newline(false);
        env.add_function("uid", uid);
        env.add_filter("uid", uid);
        env.add_function("fail", fail);
        env.add_filter("dhis2_datetime", |v: JValue| {
            date_filter(v, "dhis2_datetime", dates::dhis2_datetime)
        });
        env.add_filter("dhis2_date", |v: JValue| {
            date_filter(v, "dhis2_date", dates::dhis2_date)
        });
        env.add_filter("dhis2_period", |v: JValue| {
            date_filter(v, "dhis2_period", dates::dhis2_month)
        });
        env.add_filter("tojson", tojson);
        env.add_filter("option", option);
        env.add_filter("code", option);
        env.set_fuel(Some(Limits::default().template_fuel));
        env.add_template_owned(NAME, source.clone())
            .map_err(|e| (e.line(), describe(&e, &source)))?;
        Ok(Template { env, source })
    }

    /// The template text.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub(crate) fn render(
        &self,
        tempr: &Tempr,
        record: &Arc<Value>,
        ctx: &Value,
        limits: &Limits,
    ) -> Result<String, TemprError> {
        let other_fuel;
        let env = if self.env.fuel() == Some(limits.template_fuel) {
            &self.env
        } else {
            let mut env = self.env.clone();
            env.set_fuel(Some(limits.template_fuel));
            other_fuel = env;
            &other_fuel
        };
        let tmpl = env.get_template(NAME).map_err(|e| TemprError::Template {
            line: e.line(),
            message: e.to_string(),
        })?;
        let mut out = Bounded {
            buf: Vec::new(),
            limit: limits.max_output_bytes,
            over: false,
        };
        let vars = context! {
            record => Json::shared(record.clone()),
            ctx => Json::shared(Arc::new(ctx.clone())),
            tempr => context! { name => tempr.name.clone(), version => tempr.version },
        };
        match tmpl.render_captured_to(vars, &mut out) {
            Ok(_) => String::from_utf8(out.buf).map_err(|e| TemprError::Template {
                line: None,
                message: e.to_string(),
            }),
            Err(_) if out.over => Err(TemprError::OutputTooLarge {
                limit: limits.max_output_bytes,
            }),
            Err(e) if e.kind() == ErrorKind::OutOfFuel => Err(TemprError::TemplateFuel {
                fuel: limits.template_fuel,
            }),
            Err(e) => Err(TemprError::Template {
                line: e.line(),
                message: describe(&e, &self.source),
            }),
        }
    }
}

/// A JSON document the template reads lazily: a key or index is converted when the template
/// touches it, not before. A real GeneXpert MTB/RIF Ultra result has 80 observations (~80 KB as
/// a record view, `observations` plus `results`); converting all of it to minijinja values took
/// ~1 ms per render for a template that reads five of them, and copying it for each render half
/// of what was left (benches/tempr.rs): the record is shared (`Arc`), never copied.
#[derive(Debug)]
struct Json {
    root: Arc<Value>,
    /// Where this node is below `root`: object keys and array indexes.
    path: Vec<Step>,
}

#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

impl Json {
    fn shared(root: Arc<Value>) -> JValue {
        Json::wrap(root, Vec::new())
    }

    /// A scalar becomes a plain value; an object or array stays lazy.
    fn wrap(root: Arc<Value>, path: Vec<Step>) -> JValue {
        let node = Json::at(&root, &path);
        match node {
            Value::Null => JValue::from(()),
            Value::Bool(b) => JValue::from(*b),
            Value::String(s) => JValue::from(s.as_str()),
            Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => JValue::from(i),
                (None, Some(u)) => JValue::from(u),
                _ => JValue::from_serialize(node),
            },
            Value::Object(_) | Value::Array(_) => JValue::from_object(Json { root, path }),
        }
    }

    fn at<'a>(root: &'a Value, path: &[Step]) -> &'a Value {
        path.iter().fold(root, |v, step| match step {
            Step::Key(k) => &v[k.as_str()],
            Step::Index(i) => &v[*i],
        })
    }

    fn node(&self) -> &Value {
        Json::at(&self.root, &self.path)
    }

    fn child(&self, step: Step) -> JValue {
        let mut path = self.path.clone();
        path.push(step);
        Json::wrap(self.root.clone(), path)
    }
}

impl Object for Json {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        match self.node() {
            Value::Array(_) => ObjectRepr::Seq,
            _ => ObjectRepr::Map,
        }
    }

    fn get_value(self: &Arc<Self>, key: &JValue) -> Option<JValue> {
        match self.node() {
            Value::Object(m) => {
                let k = key.as_str()?;
                m.contains_key(k)
                    .then(|| self.child(Step::Key(k.to_owned())))
            }
            Value::Array(a) => {
                let i = key.as_usize()?;
                (i < a.len()).then(|| self.child(Step::Index(i)))
            }
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match self.node() {
            Value::Object(m) => {
                Enumerator::Values(m.keys().map(|k| JValue::from(k.as_str())).collect())
            }
            Value::Array(a) => Enumerator::Seq(a.len()),
            _ => Enumerator::Empty,
        }
    }
}

/// The error's own text plus the template text it points at: the expression minijinja names,
/// or the whole source line when that is only a filter name, so a strict-undefined error shows
/// the variable (`{{ record.results["X"].valu|tojson }}`).
fn describe(e: &Error, source: &str) -> String {
    let mut msg = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    let expr = e
        .range()
        .and_then(|r| source.get(r))
        .map(str::trim)
        .unwrap_or("");
    let line = e
        .line()
        .and_then(|l| source.lines().nth(l.saturating_sub(1)))
        .map(str::trim)
        .unwrap_or("");
    let shown = if expr.contains('.') || expr.contains('[') || expr.contains(' ') || line.is_empty()
    {
        expr
    } else {
        line
    };
    if !shown.is_empty() {
        let cut: String = shown.chars().take(200).collect();
        msg.push_str(&format!(" in `{cut}`"));
    }
    msg
}

struct Bounded {
    buf: Vec<u8>,
    limit: usize,
    over: bool,
}

impl io::Write for Bounded {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            self.over = true;
            return Err(io::Error::other("template output over the limit"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn invalid(msg: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg)
}

fn is_nothing(v: &JValue) -> bool {
    v.is_undefined() || v.is_none()
}

/// Undefined anywhere inside `v` (bounded depth): strict mode lets undefined reach filters.
fn has_undefined(v: &JValue, depth: usize) -> bool {
    if v.is_undefined() {
        return true;
    }
    if depth == 0
        || !matches!(
            v.kind(),
            minijinja::value::ValueKind::Seq | minijinja::value::ValueKind::Map
        )
    {
        return false;
    }
    let Ok(items) = v.try_iter() else {
        return false;
    };
    items.into_iter().any(|k| {
        let item = if v.kind() == minijinja::value::ValueKind::Map {
            v.get_item(&k).unwrap_or_default()
        } else {
            k
        };
        has_undefined(&item, depth - 1)
    })
}

/// minijinja's `tojson`, but an undefined value is an error instead of `null`.
fn tojson(value: JValue, indent: Option<JValue>, kwargs: Kwargs) -> Result<JValue, Error> {
    if has_undefined(&value, 32) {
        return Err(Error::new(
            ErrorKind::UndefinedError,
            "tojson got an undefined value",
        ));
    }
    minijinja::filters::tojson(&value, indent, kwargs)
}

fn fail(message: String) -> Result<JValue, Error> {
    Err(invalid(message))
}

fn uid(seed: JValue) -> Result<String, Error> {
    if is_nothing(&seed) {
        return Err(invalid("uid() needs a seed, got none".into()));
    }
    Ok(deterministic_uid(&seed.to_string()))
}

fn date_filter(v: JValue, name: &str, f: fn(&str) -> Option<String>) -> Result<String, Error> {
    if is_nothing(&v) {
        return Err(invalid(format!(
            "{name}: the value is none (use `|default(…)` or an `if`)"
        )));
    }
    let s = v.to_string();
    f(&s).ok_or_else(|| {
        invalid(format!(
            "{name}: {s:?} is not a date/time (ISO 8601 or YYYYMMDD[HHMM[SS]])"
        ))
    })
}

fn option(value: JValue, map: JValue, default: Option<JValue>) -> Result<JValue, Error> {
    let mut pairs = Vec::new();
    for key in map
        .try_iter()
        .map_err(|_| invalid("option(): the map must be a {…} mapping".into()))?
    {
        let v = map.get_item(&key)?;
        pairs.push((key.to_string(), v.to_string()));
    }
    if is_nothing(&value) {
        return default
            .ok_or_else(|| invalid("option(): the value is none and no default is given".into()));
    }
    let text = value.to_string();
    match map_value(&pairs, &text) {
        Some(v) => Ok(JValue::from(v)),
        None => default.ok_or_else(|| invalid(format!("option(): {text:?} is not in the map"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Whatever a template does with the record, the lazy view renders exactly what the eager
    /// conversion (`Value::from_serialize`) rendered.
    #[test]
    fn lazy_json_renders_like_the_eager_conversion() {
        let record = json!({
            "sample_id": "PR25A137", "patient_id": null, "n": 3, "ratio": 0.5, "ok": true,
            "observations": [
                {"test_code": "MTB", "value": "NOT DETECTED", "flags": [], "extra": {"lot": "56401"}},
                {"test_code": "RIF", "value": "DETECTED", "flags": ["H", "A"], "extra": {}}
            ],
            "results": {"MTB": {"value": "NOT DETECTED"}, "RIF": {"value": "DETECTED"}}
        });
        let exprs = [
            "{{ r|tojson }}",
            "{{ r.observations[1]|tojson }}",
            "{% for o in r.observations %}{{ o.test_code }}={{ o.value }};{% endfor %}",
            "{% for k, v in r.results|dictsort %}{{ k }}:{{ v.value }},{% endfor %}",
            "{{ r.results|length }} {{ r.observations|length }} {{ r.observations[1].flags|join('/') }}",
            "{{ 'MTB' in r.results }} {{ 'XYZ' in r.results }} {{ r.missing is undefined }}",
            "{{ r.observations|selectattr('value', 'eq', 'DETECTED')|map(attribute='test_code')|list }}",
            "{{ r.n + 1 }} {{ r.ratio * 2 }} {{ r.ok }} {{ r.patient_id is none }} {{ r.sample_id|lower }}",
            "{{ r.observations[0].extra.lot }} {{ r.observations[1].extra|length }} {{ r.results['RIF'].value }}",
            "{% if r.observations %}some{% endif %}{% if r.observations[0].flags %}flags{% endif %}",
        ];
        for expr in exprs {
            let mut env = Environment::new();
            env.add_template("t", expr).unwrap();
            let t = env.get_template("t").unwrap();
            let eager = t
                .render(context! { r => JValue::from_serialize(&record) })
                .unwrap();
            let lazy = t
                .render(context! { r => Json::shared(Arc::new(record.clone())) })
                .unwrap();
            assert_eq!(lazy, eager, "{expr}");
        }
    }
}
