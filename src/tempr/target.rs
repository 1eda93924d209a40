//! Temprs for systems other than DHIS2 (issue 20): `destination = "<id>"` names a
//! `[[destinations]]` entry (docs/config.md) and the optional `[request]` table gives the request's
//! defaults. The Tempr's output is then a [`DestRequest`] instead of a DHIS2 request:
//!
//! - `format = "json"` (default): the output is JSON. An object whose only keys are `body` and
//!   some of `method`, `path`, `headers`, `if_none_exist` is an *envelope* (the request in full;
//!   each key it gives wins over `[request]`); any other JSON is the body alone. A FHIR Patient,
//!   a Bundle or an OpenMRS payload is therefore sent as written.
//! - `format = "xml"` / `"text"`: the rendered text is the body as it is (a script returns a string).
//!
//! Builders map onto DHIS2 payloads only, so a builder Tempr cannot name a destination.

use super::file::Checker;
use super::{Limits, Tempr, TemprError, TemprKind};
use crate::record::json_kind as kind_of;
use crate::record::{DestBody, DestRequest, Method};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use toml::Spanned;

/// Where a destination Tempr sends, and its request's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The `[[destinations]]` id (checked against the config when sync starts).
    pub destination: String,
    pub method: Method,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub format: BodyFormat,
    /// FHIR conditional create search, when every request of this Tempr uses the same one
    /// (usually the envelope's `if_none_exist` carries the record's identifier instead).
    pub if_none_exist: Option<String>,
}

/// How the rendered output becomes the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyFormat {
    Json,
    Xml,
    Text,
}

/// `[request]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRequest {
    #[serde(default)]
    method: Option<Method>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    format: Option<BodyFormat>,
    #[serde(default)]
    if_none_exist: Option<String>,
}

/// Validate `destination` + `[request]`; `None` = a DHIS2 Tempr.
pub(super) fn from_raw(
    c: &mut Checker,
    destination: Option<Spanned<String>>,
    request: Option<RawRequest>,
    is_builder: bool,
) -> Option<Target> {
    let Some(dest) = destination else {
        if request.is_some() {
            let line = c.line_of("request");
            c.error(
                line,
                "request",
                "only a Tempr with `destination` sends a [request]; DHIS2 Temprs use `endpoint`",
            );
        }
        return None;
    };
    let line = c.line(&dest.span());
    let id = dest.into_inner().trim().to_string();
    let id_ok = !id.is_empty()
        && id
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '_');
    if !id_ok {
        c.error(
            line,
            "destination",
            format!("{id:?} must be the id of a [[destinations]] entry (lowercase letters, digits, '-' or '_')"),
        );
    }
    if is_builder {
        c.error(
            line,
            "destination",
            "a builder maps onto DHIS2 payloads; use kind = \"template\", \"mustache\" or \"script\" for another system",
        );
    }
    let raw = request.unwrap_or_default();
    Some(Target {
        destination: id,
        method: raw.method.unwrap_or(Method::Post),
        path: raw.path.unwrap_or_default(),
        headers: raw.headers.into_iter().collect(),
        format: raw.format.unwrap_or(BodyFormat::Json),
        if_none_exist: raw.if_none_exist,
    })
}

/// Run `tempr` (which names `target`) for one record.
pub(super) fn render(
    tempr: &Tempr,
    target: &Target,
    record: &Arc<Value>,
    ctx: &Value,
    limits: &Limits,
) -> Result<DestRequest, TemprError> {
    let output = match &tempr.kind {
        TemprKind::Template(t) => Output::Text(t.render(tempr, record, ctx, limits)?),
        TemprKind::Mustache(m) => Output::Text(m.render(tempr, record, ctx, limits)?),
        TemprKind::Script(s) => Output::Value(s.run(record, ctx, limits)?),
        TemprKind::Builder(_) => {
            return Err(TemprError::NotARequest {
                message: "a builder Tempr cannot send to a destination".into(),
            });
        }
    };
    let request = from_output(target, output)?;
    let size = match &request.body {
        DestBody::None => 0,
        DestBody::Json(v) => serde_json::to_string(v).map_or(usize::MAX, |s| s.len()),
        DestBody::Xml(s) | DestBody::Text(s) => s.len(),
    };
    if size > limits.max_output_bytes {
        return Err(TemprError::OutputTooLarge {
            limit: limits.max_output_bytes,
        });
    }
    Ok(request)
}

/// What a Tempr kind produced before it became a request.
enum Output {
    Text(String),
    Value(Value),
}

fn from_output(target: &Target, output: Output) -> Result<DestRequest, TemprError> {
    let mut request = DestRequest {
        method: target.method,
        path: target.path.clone(),
        headers: target.headers.clone(),
        body: DestBody::None,
        if_none_exist: target.if_none_exist.clone(),
    };
    let value = match (target.format, output) {
        (BodyFormat::Json, Output::Text(text)) => {
            serde_json::from_str(&text).map_err(|e| TemprError::NotJson {
                line: e.line(),
                column: e.column(),
                message: e.to_string(),
            })?
        }
        (BodyFormat::Json, Output::Value(v)) => v,
        (format, Output::Text(text)) => {
            request.body = text_body(format, text);
            return Ok(request);
        }
        (format, Output::Value(Value::String(text))) => {
            request.body = text_body(format, text);
            return Ok(request);
        }
        (_, Output::Value(other)) => {
            return Err(TemprError::NotARequest {
                message: format!(
                    "format = \"xml\"/\"text\" wants the script to return a string, not {}",
                    kind_of(&other)
                ),
            });
        }
    };
    const ENVELOPE: [&str; 5] = ["body", "method", "path", "headers", "if_none_exist"];
    let envelope = value.as_object().filter(|m| {
        m.contains_key("body") && m.len() > 1 && m.keys().all(|k| ENVELOPE.contains(&k.as_str()))
    });
    let Some(env) = envelope else {
        request.body = DestBody::Json(value);
        return Ok(request);
    };
    let bad = |key: &str, want: &str| TemprError::NotARequest {
        message: format!("envelope `{key}` must be {want}"),
    };
    if let Some(m) = env.get("method") {
        request.method = serde_json::from_value(m.clone()).map_err(|_| {
            bad(
                "method",
                "one of \"GET\", \"POST\", \"PUT\", \"PATCH\", \"DELETE\"",
            )
        })?;
    }
    if let Some(p) = env.get("path") {
        request.path = p
            .as_str()
            .ok_or_else(|| bad("path", "a string"))?
            .to_string();
    }
    if let Some(h) = env.get("headers") {
        let map = h
            .as_object()
            .ok_or_else(|| bad("headers", "an object of strings"))?;
        for (k, v) in map {
            let v = v
                .as_str()
                .ok_or_else(|| bad("headers", "an object of strings"))?;
            request
                .headers
                .retain(|(name, _)| !name.eq_ignore_ascii_case(k));
            request.headers.push((k.clone(), v.to_string()));
        }
    }
    match env.get("if_none_exist") {
        Some(Value::String(s)) => request.if_none_exist = Some(s.clone()),
        Some(Value::Null) | None => {}
        Some(_) => return Err(bad("if_none_exist", "a string (a FHIR search)")),
    }
    request.body = match env.get("body") {
        Some(Value::Null) | None => DestBody::None,
        Some(v) => DestBody::Json(v.clone()),
    };
    Ok(request)
}

fn text_body(format: BodyFormat, text: String) -> DestBody {
    match format {
        BodyFormat::Xml => DestBody::Xml(text),
        _ => DestBody::Text(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(format: BodyFormat) -> Target {
        Target {
            destination: "emr".into(),
            method: Method::Post,
            path: "Patient".into(),
            headers: vec![("X-Site".into(), "A".into())],
            format,
            if_none_exist: None,
        }
    }

    #[test]
    fn a_plain_resource_is_the_body_and_an_envelope_overrides_the_defaults() {
        let r = from_output(
            &target(BodyFormat::Json),
            Output::Text(r#"{"resourceType":"Patient","id":"x"}"#.into()),
        )
        .unwrap();
        assert_eq!((r.method, r.path.as_str()), (Method::Post, "Patient"));
        assert_eq!(
            r.body,
            DestBody::Json(serde_json::json!({"resourceType":"Patient","id":"x"}))
        );

        let r = from_output(
            &target(BodyFormat::Json),
            Output::Value(serde_json::json!({
                "method": "PUT", "path": "Patient/p1", "headers": {"x-site": "B"},
                "if_none_exist": "identifier=urn:mrn|7", "body": {"resourceType": "Patient"}
            })),
        )
        .unwrap();
        assert_eq!((r.method, r.path.as_str()), (Method::Put, "Patient/p1"));
        assert_eq!(r.headers, vec![("x-site".to_string(), "B".to_string())]);
        assert_eq!(r.if_none_exist.as_deref(), Some("identifier=urn:mrn|7"));
    }

    #[test]
    fn xml_is_sent_as_rendered_and_a_script_must_return_a_string_for_it() {
        let r = from_output(&target(BodyFormat::Xml), Output::Text("<a>1</a>".into())).unwrap();
        assert_eq!(r.body, DestBody::Xml("<a>1</a>".into()));
        let e = from_output(
            &target(BodyFormat::Xml),
            Output::Value(serde_json::json!({"a": 1})),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not an object"), "{e}");
        let e = from_output(&target(BodyFormat::Json), Output::Text("{oops".into())).unwrap_err();
        assert!(matches!(e, TemprError::NotJson { line: 1, .. }), "{e}");
        let e = from_output(
            &target(BodyFormat::Json),
            Output::Value(serde_json::json!({"method": "FETCH", "body": {}})),
        )
        .unwrap_err();
        assert!(e.to_string().contains("envelope `method`"), "{e}");
    }

    /// The destination Tempr in docs/config.md loads and renders an envelope.
    #[test]
    fn the_documented_tempr_loads_and_renders_a_conditional_create() {
        let doc = include_str!("../../docs/config.md");
        let section = doc
            .split("### Temprs that send to a destination")
            .nth(1)
            .unwrap_or("");
        let text = section
            .split("```toml\n")
            .nth(1)
            .and_then(|t| t.split("```").next())
            .unwrap_or("");
        let t = super::super::Tempr::parse(text, std::path::Path::new("hba1c-fhir.toml"))
            .unwrap_or_else(|e| panic!("{e:?}"));
        let g = t.target.clone().expect("a destination Tempr");
        assert_eq!(g.destination, "hapi");
        let record = Arc::new(serde_json::json!({
            "sample_id": "S1", "results": {"HbA1c": {"value": "6.9"}}
        }));
        let r = render(&t, &g, &record, &serde_json::json!({}), &Limits::default()).unwrap();
        assert_eq!(r.path, "Observation");
        assert_eq!(
            r.if_none_exist.as_deref(),
            Some("identifier=urn:pocketgate:sample|S1")
        );
        let DestBody::Json(body) = r.body else {
            panic!("{:?}", r.body)
        };
        assert_eq!(body["valueQuantity"]["value"], 6.9);
    }
}
