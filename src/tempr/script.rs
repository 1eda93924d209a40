//! The script Tempr: a JavaScript function `(record, ctx) => request`, run in boa_engine.
//!
//! Each run gets a fresh `Context` on its own thread (boa's Context is not `Send`). Bounds:
//! - loop iterations per call frame and call depth (boa runtime limits; these errors cannot be
//!   caught by the script's own `try`);
//! - a wall-clock budget: past it the caller gets [`TemprError::ScriptTimeout`] and the thread is
//!   abandoned — boa cannot be interrupted from outside, so the loop limit is what ends it
//!   shortly after; at most [`MAX_ABANDONED`] such threads may be alive before new runs are
//!   refused with [`TemprError::ScriptBusy`];
//! - `String.prototype.repeat/padStart/padEnd`, `Array.prototype.join/fill` and `Array.from`
//!   refuse results longer than `max_output_bytes` (a `"x".repeat(1e9)` would otherwise make boa
//!   allocate gigabytes and abort the process), and the JSON result is size-checked.
//!
//! What this does not bound: memory grown step by step (`s += s` thirty times). A hard memory
//! limit needs a separate process; Temprs are written by the gateway's administrators, and the
//! limits here are against mistakes, not against a hostile author.
//!
//! Globals for DHIS2 work: `uid(seed)` (deterministic UID), `dhis2_datetime(s)`, `dhis2_date(s)`,
//! `dhis2_period(s)` (as the template filters; they throw a TypeError on a non-date).
//!
//! boa_engine without boa_runtime has no `console`, `require`, `fetch`, `XMLHttpRequest`,
//! `process`, timers, file system or network; nothing is added here (a test pins this).

use super::dates;
use super::uid::deterministic_uid;
use super::{Limits, TemprError};
use boa_engine::property::Attribute;
use boa_engine::{
    Context, JsError, JsNativeError, JsObject, JsResult, JsString, JsValue, NativeFunction, Source,
    js_string,
};
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

/// Script threads still running after their caller gave up on them.
static ABANDONED: AtomicUsize = AtomicUsize::new(0);
/// Abandoned threads allowed at once before new script runs are refused.
pub const MAX_ABANDONED: usize = 2;
/// Native stack of a script thread (boa recurses natively in some builtins).
const STACK_BYTES: usize = 16 * 1024 * 1024;

/// A script Tempr: JavaScript source checked for syntax at load.
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    source: String,
}

/// The script is evaluated as one expression: `(<source>\n)`. A function is called with
/// `(record, ctx)`; any other value is the output itself (`record` and `ctx` are globals too).
fn wrapped(source: &str) -> String {
    format!("({source}\n)")
}

impl Script {
    /// Parse `source` (without running it); a syntax error comes back with its line.
    pub fn compile(source: String) -> Result<Script, (Option<usize>, String)> {
        let mut context = Context::default();
        let text = wrapped(&source);
        match boa_engine::Script::parse(Source::from_bytes(text.as_bytes()), None, &mut context) {
            Ok(_) => Ok(Script { source }),
            Err(e) => {
                let msg = e.to_string();
                Err((
                    line_in_message(&msg),
                    format!("JavaScript syntax error: {msg}"),
                ))
            }
        }
    }

    /// The script text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Run on a fresh thread; the JSON the script returned.
    pub(crate) fn run(
        &self,
        record: &Value,
        ctx: &Value,
        limits: &Limits,
    ) -> Result<Value, TemprError> {
        let running = ABANDONED.load(Ordering::SeqCst);
        if running >= MAX_ABANDONED {
            return Err(TemprError::ScriptBusy { running });
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let (source, record, ctx, lim) = (
            self.source.clone(),
            record.clone(),
            ctx.clone(),
            limits.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("tempr-script".into())
            .stack_size(STACK_BYTES)
            .spawn(move || {
                let result = run_in_context(&source, &record, &ctx, &lim);
                // Err: the caller timed out and left; it counted this thread as abandoned.
                if tx.send(result).is_err() {
                    ABANDONED.fetch_sub(1, Ordering::SeqCst);
                }
            });
        if let Err(e) = spawned {
            return Err(TemprError::ScriptThread {
                message: e.to_string(),
            });
        }
        match rx.recv_timeout(limits.script_budget) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                ABANDONED.fetch_add(1, Ordering::SeqCst);
                // The thread may have finished between the timeout and the increment.
                if let Ok(result) = rx.try_recv() {
                    ABANDONED.fetch_sub(1, Ordering::SeqCst);
                    return result;
                }
                drop(rx);
                Err(TemprError::ScriptTimeout {
                    budget: limits.script_budget,
                })
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(TemprError::ScriptThread {
                message: "the script thread ended without an answer".into(),
            }),
        }
    }
}

/// Script threads currently abandoned (for a status page).
pub fn abandoned_threads() -> usize {
    ABANDONED.load(Ordering::SeqCst)
}

/// `… at line 3, col 5` → 3 (line 1 of the wrapper is line 1 of the script).
fn line_in_message(msg: &str) -> Option<usize> {
    let rest = &msg[msg.rfind("line ")? + 5..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The guards installed before the script runs (see the module docs).
fn prelude(max: usize) -> String {
    format!(
        r#"(() => {{
  const MAX = {max};
  const S = String.prototype, A = Array.prototype;
  const repeat = S.repeat, padStart = S.padStart, padEnd = S.padEnd;
  const join = A.join, fill = A.fill, from = Array.from;
  const tooBig = (what) => {{ throw new RangeError(what + " would exceed the Tempr output limit of " + MAX + " bytes"); }};
  const def = (o, k, f) => Object.defineProperty(o, k, {{ value: f, writable: true, configurable: true, enumerable: false }});
  def(S, "repeat", function (n) {{ if (String(this).length * Number(n) > MAX) tooBig("repeat"); return repeat.call(this, n); }});
  def(S, "padStart", function (n, f) {{ if (Number(n) > MAX) tooBig("padStart"); return padStart.call(this, n, f); }});
  def(S, "padEnd", function (n, f) {{ if (Number(n) > MAX) tooBig("padEnd"); return padEnd.call(this, n, f); }});
  def(A, "join", function (sep) {{ if (Number(this.length) > MAX) tooBig("join"); return join.call(this, sep); }});
  def(A, "fill", function (...a) {{ if (Number(this.length) > MAX) tooBig("fill"); return fill.apply(this, a); }});
  def(Array, "from", function (src, ...a) {{ if (src != null && Number(src.length) > MAX) tooBig("Array.from"); return from.call(this, src, ...a); }});
}})();"#
    )
}

fn js_error(e: JsError, context: &mut Context) -> TemprError {
    if let Some(native) = e.as_native()
        && native.is_runtime_limit()
    {
        return TemprError::ScriptLimit {
            message: native.message().to_string(),
        };
    }
    let message = match e.try_native(context) {
        Ok(native) => native.to_string(),
        Err(_) => e.to_string(),
    };
    TemprError::Script { message }
}

/// The record view as a JS object. `results` holds, per test code, the first observation with
/// it: here it points at the same objects as `observations` instead of converting every
/// observation twice (a GeneXpert MTB/RIF Ultra result has 80: half the conversion time of a run).
/// Keys keep the order `from_json` gives them.
fn record_to_js(record: &Value, c: &mut Context) -> JsResult<JsValue> {
    let (Some(map), Some(observations), Some(results)) = (
        record.as_object(),
        record["observations"].as_array(),
        record["results"].as_object(),
    ) else {
        return JsValue::from_json(record, c);
    };
    let js_observations = JsValue::from_json(&record["observations"], c)?;
    let js_results = JsObject::with_object_proto(c.intrinsics());
    for code in results.keys() {
        let first = observations
            .iter()
            .position(|o| o["test_code"].as_str() == Some(code.as_str()));
        let value = match (first, js_observations.as_object()) {
            (Some(i), Some(array)) => array.get(i, c)?,
            _ => JsValue::from_json(&results[code], c)?,
        };
        js_results.set(JsString::from(code.as_str()), value, false, c)?;
    }
    let js_record = JsObject::with_object_proto(c.intrinsics());
    for (key, value) in map {
        let value = match key.as_str() {
            "observations" => js_observations.clone(),
            "results" => js_results.clone().into(),
            _ => JsValue::from_json(value, c)?,
        };
        js_record.set(JsString::from(key.as_str()), value, false, c)?;
    }
    Ok(js_record.into())
}

fn run_in_context(
    source: &str,
    record: &Value,
    ctx: &Value,
    limits: &Limits,
) -> Result<Value, TemprError> {
    let mut context = Context::default();
    let c = &mut context;
    c.eval(Source::from_bytes(
        prelude(limits.max_output_bytes).as_bytes(),
    ))
    .map_err(|e| js_error(e, c))?;
    install_helpers(c).map_err(|e| js_error(e, c))?;
    // Captured before the script runs, so a script cannot replace it for its own output.
    let json = c
        .global_object()
        .get(js_string!("JSON"), c)
        .map_err(|e| js_error(e, c))?;
    let stringify = json
        .as_object()
        .map(|o| o.get(js_string!("stringify"), c))
        .transpose()
        .map_err(|e| js_error(e, c))?
        .and_then(|f| f.as_callable().cloned())
        .ok_or_else(|| TemprError::ScriptThread {
            message: "JSON.stringify is missing".into(),
        })?;

    let js_record = record_to_js(record, c).map_err(|e| js_error(e, c))?;
    let js_ctx = JsValue::from_json(ctx, c).map_err(|e| js_error(e, c))?;
    c.register_global_property(js_string!("record"), js_record.clone(), Attribute::all())
        .map_err(|e| js_error(e, c))?;
    c.register_global_property(js_string!("ctx"), js_ctx.clone(), Attribute::all())
        .map_err(|e| js_error(e, c))?;

    c.runtime_limits_mut()
        .set_loop_iteration_limit(limits.script_loop_limit);
    c.runtime_limits_mut()
        .set_recursion_limit(limits.script_recursion_limit);

    let value = c
        .eval(Source::from_bytes(wrapped(source).as_bytes()))
        .map_err(|e| js_error(e, c))?;
    let output = match value.as_callable() {
        Some(f) => f
            .call(&JsValue::undefined(), &[js_record, js_ctx], c)
            .map_err(|e| js_error(e, c))?,
        None => value,
    };
    let text = stringify
        .call(&JsValue::undefined(), &[output], c)
        .map_err(|e| js_error(e, c))?;
    let Some(text) = text.as_string() else {
        return Err(TemprError::NotARequest {
            message: "the script returned nothing JSON can hold (undefined or a function); return the request object"
                .into(),
        });
    };
    if text.len() > limits.max_output_bytes {
        return Err(TemprError::OutputTooLarge {
            limit: limits.max_output_bytes,
        });
    }
    let text = text.to_std_string_escaped();
    serde_json::from_str(&text).map_err(|e| TemprError::NotJson {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })
}

/// The first argument as text, or a TypeError naming the helper.
fn text_arg(args: &[JsValue], name: &str, context: &mut Context) -> JsResult<String> {
    match args.first() {
        None => Err(JsNativeError::typ()
            .with_message(format!("{name}() needs an argument"))
            .into()),
        Some(v) if v.is_null_or_undefined() => Err(JsNativeError::typ()
            .with_message(format!("{name}() got {}", v.display()))
            .into()),
        Some(v) => Ok(v.to_string(context)?.to_std_string_escaped()),
    }
}

fn js_uid(_: &JsValue, args: &[JsValue], context: &mut Context) -> JsResult<JsValue> {
    let seed = text_arg(args, "uid", context)?;
    Ok(JsString::from(deterministic_uid(&seed).as_str()).into())
}

fn js_date(
    args: &[JsValue],
    context: &mut Context,
    name: &str,
    f: fn(&str) -> Option<String>,
) -> JsResult<JsValue> {
    let s = text_arg(args, name, context)?;
    match f(&s) {
        Some(out) => Ok(JsString::from(out.as_str()).into()),
        None => Err(JsNativeError::typ()
            .with_message(format!("{name}(): {s:?} is not a date/time"))
            .into()),
    }
}

fn install_helpers(c: &mut Context) -> JsResult<()> {
    c.register_global_builtin_callable(js_string!("uid"), 1, NativeFunction::from_fn_ptr(js_uid))?;
    c.register_global_builtin_callable(
        js_string!("dhis2_datetime"),
        1,
        NativeFunction::from_fn_ptr(|_, a, c| {
            js_date(a, c, "dhis2_datetime", dates::dhis2_datetime)
        }),
    )?;
    c.register_global_builtin_callable(
        js_string!("dhis2_date"),
        1,
        NativeFunction::from_fn_ptr(|_, a, c| js_date(a, c, "dhis2_date", dates::dhis2_date)),
    )?;
    c.register_global_builtin_callable(
        js_string!("dhis2_period"),
        1,
        NativeFunction::from_fn_ptr(|_, a, c| js_date(a, c, "dhis2_period", dates::dhis2_month)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A script sees `record.results` as before the shared-object conversion: the first
    /// observation per test code, keys in the same order, equal to a full conversion.
    #[test]
    fn record_results_are_the_first_observation_per_code_in_key_order() {
        let record = json!({
            "sample_id": "S1",
            "observations": [
                {"test_code": "RIF", "value": "DETECTED"},
                {"test_code": "MTB", "value": "NOT DETECTED"},
                {"test_code": "RIF", "value": "second"}
            ],
            "results": {"MTB": {"test_code": "MTB", "value": "NOT DETECTED"},
                        "RIF": {"test_code": "RIF", "value": "DETECTED"}}
        });
        let out = run_in_context(
            "(r) => ({ keys: Object.keys(r.results), rif: r.results.RIF.value, \
               same: r.results.MTB === r.observations[1], results: r.results, top: Object.keys(r) })",
            &record,
            &json!({}),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(out["keys"], json!(["MTB", "RIF"]));
        assert_eq!(out["rif"], "DETECTED");
        assert_eq!(out["same"], true);
        assert_eq!(out["results"], record["results"]);
        assert_eq!(out["top"], json!(["observations", "results", "sample_id"]));
    }
}
