//! The script Tempr: a JavaScript function `(record, ctx) => request`, run in boa_engine.
//!
//! **One warm context per Tempr version.** boa's Context is not `Send`, so each [`Script`] owns a
//! worker thread holding a Context that was set up once: the output guards below, the DHIS2
//! helpers, the lockdown, and the Tempr's own code compiled into an entry function
//! `function (record, ctx) { return (<source>\n); }`. Each record is one call of that function,
//! so the script's expression (and any closure it makes) is evaluated afresh per record; setting
//! up a Context was ~2/3 of a run (benches/tempr.rs). What one record's run cannot pass to the
//! next:
//! - the built-ins are frozen before the Tempr's code runs (`Object.prototype`, `Array.prototype`,
//!   `JSON`, `Math`, the helpers: everything reachable from the global object), so prototype
//!   pollution is a silent no-op (sloppy mode) or a TypeError (`"use strict"`);
//! - the global bindings that exist at setup cannot be reassigned or deleted, and any global a
//!   run creates (`leak = 42` without a declaration) is deleted after it;
//! - promise jobs are dropped unrun (no job queue), as in a context thrown away after each run;
//! - a run stopped by a runtime limit or the wall clock gets a fresh Context next time.
//!
//! Bounds:
//! - loop iterations per call frame and call depth (boa runtime limits; these errors cannot be
//!   caught by the script's own `try`);
//! - a wall-clock budget: past it the caller gets [`TemprError::ScriptTimeout`] and the worker
//!   thread is abandoned — boa cannot be interrupted from outside, so the loop limit is what ends
//!   it shortly after; at most [`MAX_ABANDONED`] such threads may be alive before new runs are
//!   refused with [`TemprError::ScriptBusy`];
//! - `String.prototype.repeat/padStart/padEnd`, `Array.prototype.join/fill` and `Array.from`
//!   refuse results longer than `max_output_bytes` (a `"x".repeat(1e9)` would otherwise make boa
//!   allocate gigabytes and abort the process), and the JSON result is size-checked.
//!
//! What this does not bound: memory grown step by step (`s += s` thirty times). A hard memory
//! limit needs a separate process; Temprs are written by the gateway's administrators, and the
//! limits here are against mistakes, not against a hostile author.
//!
//! A worker idle for [`IDLE`] ends and frees its Context; the next record starts a new one. Two
//! threads applying the same Tempr at once (the web page's test beside the render stage): the
//! second gets a one-off worker instead of waiting.
//!
//! Globals for DHIS2 work: `uid(seed)` (deterministic UID), `dhis2_datetime(s)`, `dhis2_date(s)`,
//! `dhis2_period(s)` (as the template filters; they throw a TypeError on a non-date).
//!
//! boa_engine without boa_runtime has no `console`, `require`, `fetch`, `XMLHttpRequest`,
//! `process`, timers, file system or network; nothing is added here (a test pins this).

use super::dates;
use super::uid::deterministic_uid;
use super::{Limits, TemprError};
use boa_engine::job::IdleJobQueue;
use boa_engine::object::builtins::JsArray;
use boa_engine::{
    Context, JsError, JsNativeError, JsObject, JsResult, JsString, JsValue, NativeFunction, Source,
    js_string,
};
use serde_json::Value;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError, mpsc};
use std::time::Duration;

/// Script threads still running after their caller gave up on them.
static ABANDONED: AtomicUsize = AtomicUsize::new(0);
/// Abandoned threads allowed at once before new script runs are refused.
pub const MAX_ABANDONED: usize = 2;
/// Native stack of a script thread (boa recurses natively in some builtins).
const STACK_BYTES: usize = 16 * 1024 * 1024;
/// A worker with no record for this long ends, and its Context's memory is freed.
pub const IDLE: Duration = Duration::from_secs(30);

/// A script Tempr: JavaScript source checked for syntax at load, and its warm worker.
#[derive(Debug, Clone)]
pub struct Script {
    source: String,
    /// Shared by clones of this Tempr version; `None` until the first run.
    worker: Arc<Mutex<Option<Worker>>>,
}

impl PartialEq for Script {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// The sending end of a worker thread's job queue.
#[derive(Debug)]
struct Worker {
    jobs: mpsc::Sender<Job>,
}

/// One record to run; the answer goes back on `reply`.
struct Job {
    record: Arc<Value>,
    ctx: Value,
    limits: Limits,
    reply: mpsc::SyncSender<Result<Value, TemprError>>,
}

/// The entry function around the Tempr's code: the source is evaluated as one expression with
/// `record` and `ctx` in scope. A function is called with `(record, ctx)`; any other value is
/// the output itself. All on the source's first line, so its line numbers are the script's.
fn wrapped(source: &str) -> String {
    format!("(function (record, ctx) {{ return ({source}\n); }})")
}

impl Script {
    /// Parse `source` (without running it); a syntax error comes back with its line.
    pub fn compile(source: String) -> Result<Script, (Option<usize>, String)> {
        let mut context = Context::default();
        let text = wrapped(&source);
        match boa_engine::Script::parse(Source::from_bytes(text.as_bytes()), None, &mut context) {
            Ok(_) => Ok(Script {
                source,
                worker: Arc::default(),
            }),
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

    /// Run on this Tempr's worker; the JSON the script returned.
    pub(crate) fn run(
        &self,
        record: &Arc<Value>,
        ctx: &Value,
        limits: &Limits,
    ) -> Result<Value, TemprError> {
        let running = ABANDONED.load(Ordering::SeqCst);
        if running >= MAX_ABANDONED {
            return Err(TemprError::ScriptBusy { running });
        }
        let mut one_off = None;
        let mut guard = match self.worker.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        };
        let slot = match guard.as_deref_mut() {
            Some(slot) => slot,
            None => &mut one_off,
        };
        let job = |reply| Job {
            record: record.clone(),
            ctx: ctx.clone(),
            limits: limits.clone(),
            reply,
        };
        match self.call(slot, job, limits.script_budget)? {
            Some(result) => result,
            // The thread ended while holding the job: it went idle just as the job came (the
            // queue dropped the job), or the run panicked. Once more, on a new worker.
            None => self
                .call(slot, job, limits.script_budget)?
                .unwrap_or_else(|| Err(ended())),
        }
    }

    /// Send one job to the worker in `slot` (starting one when there is none, or when the one
    /// there has ended) and wait up to `budget` for its answer; `None`: the worker ended
    /// without answering. A worker that answered goes back into `slot`.
    fn call(
        &self,
        slot: &mut Option<Worker>,
        job: impl Fn(mpsc::SyncSender<Result<Value, TemprError>>) -> Job,
        budget: Duration,
    ) -> Result<Option<Result<Value, TemprError>>, TemprError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let mut job = job(reply);
        let worker = loop {
            let worker = match slot.take() {
                Some(w) => w,
                None => Worker::spawn(self.source.clone())?,
            };
            match worker.jobs.send(job) {
                Ok(()) => break worker,
                Err(mpsc::SendError(back)) => job = back, // it ended (idle): a new one
            }
        };
        match answer.recv_timeout(budget) {
            Ok(result) => {
                *slot = Some(worker);
                Ok(Some(result))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                ABANDONED.fetch_add(1, Ordering::SeqCst);
                // The run may have finished between the timeout and the increment.
                if let Ok(result) = answer.try_recv() {
                    ABANDONED.fetch_sub(1, Ordering::SeqCst);
                    *slot = Some(worker);
                    return Ok(Some(result));
                }
                // Dropping `answer` tells the thread, when its run ends, that nobody waits:
                // it then ends too (the next record gets a new worker).
                Ok(Some(Err(TemprError::ScriptTimeout { budget })))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Ok(None),
        }
    }
}

fn ended() -> TemprError {
    TemprError::ScriptThread {
        message: "the script thread ended without an answer".into(),
    }
}

impl Worker {
    fn spawn(source: String) -> Result<Worker, TemprError> {
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("tempr-script".into())
            .stack_size(STACK_BYTES)
            .spawn(move || serve(&source, &queue))
            .map_err(|e| TemprError::ScriptThread {
                message: e.to_string(),
            })?;
        Ok(Worker { jobs })
    }
}

/// The worker thread: one warm context, one record at a time, until the Tempr is dropped, the
/// worker idles for [`IDLE`], or a caller gave up waiting for it.
fn serve(source: &str, queue: &mpsc::Receiver<Job>) {
    let mut warm: Option<Warm> = None;
    while let Ok(job) = queue.recv_timeout(IDLE) {
        let result = run_job(&mut warm, source, &job);
        if job.reply.send(result).is_err() {
            // The caller timed out and left; it counted this thread as abandoned.
            ABANDONED.fetch_sub(1, Ordering::SeqCst);
            return;
        }
    }
}

fn run_job(warm: &mut Option<Warm>, source: &str, job: &Job) -> Result<Value, TemprError> {
    let max = job.limits.max_output_bytes;
    if warm.as_ref().is_some_and(|w| w.max_output != max) {
        *warm = None; // the output guards are built for one limit
    }
    let w = match warm {
        Some(w) => w,
        None => warm.insert(Warm::new(source, max)?),
    };
    let result = w.run(&job.record, &job.ctx, &job.limits);
    // A run stopped by a runtime limit may have left the context mid-way: the next record
    // gets a fresh one.
    if matches!(result, Err(TemprError::ScriptLimit { .. })) {
        *warm = None;
    }
    result
}

/// A Context set up for one Tempr: guards, helpers, lockdown, the entry function.
struct Warm {
    context: Context,
    max_output: usize,
    entry: JsObject,
    /// Captured before the Tempr's code runs, so a script cannot replace it for its output.
    stringify: JsObject,
    /// Deletes the globals a run created.
    sweep: JsObject,
    lazy: Lazy,
}

impl Warm {
    fn new(source: &str, max_output: usize) -> Result<Warm, TemprError> {
        let mut context = Context::builder()
            .job_queue(Rc::new(IdleJobQueue))
            .build()
            .map_err(|e| TemprError::ScriptThread {
                message: e.to_string(),
            })?;
        let c = &mut context;
        let setup = (|| -> JsResult<(JsObject, JsObject, JsObject, Lazy)> {
            // Made first: its handler holds the real `Reflect` methods.
            let lazy = Lazy::new(c)?;
            c.eval(Source::from_bytes(prelude(max_output).as_bytes()))?;
            install_helpers(c)?;
            let callable = |v: JsValue, what: &str| {
                v.as_callable().cloned().ok_or_else(|| {
                    JsError::from(JsNativeError::typ().with_message(format!("{what} is missing")))
                })
            };
            let json = c.global_object().get(js_string!("JSON"), c)?;
            let stringify = match json.as_object() {
                Some(o) => o.get(js_string!("stringify"), c)?,
                None => JsValue::undefined(),
            };
            let stringify = callable(stringify, "JSON.stringify")?;
            let sweep = callable(c.eval(Source::from_bytes(LOCKDOWN.as_bytes()))?, "sweep")?;
            let entry = callable(
                c.eval(Source::from_bytes(wrapped(source).as_bytes()))?,
                "the entry function",
            )?;
            Ok((entry, stringify, sweep, lazy))
        })();
        let (entry, stringify, sweep, lazy) = setup.map_err(|e| js_error(e, c))?;
        Ok(Warm {
            context,
            max_output,
            entry,
            stringify,
            sweep,
            lazy,
        })
    }

    fn run(
        &mut self,
        record: &Arc<Value>,
        ctx: &Value,
        limits: &Limits,
    ) -> Result<Value, TemprError> {
        let c = &mut self.context;
        c.runtime_limits_mut()
            .set_loop_iteration_limit(limits.script_loop_limit);
        c.runtime_limits_mut()
            .set_recursion_limit(limits.script_recursion_limit);
        let this = JsValue::undefined();
        let text = (|| -> JsResult<JsValue> {
            let js_record = record_to_js(record, &self.lazy, c)?;
            let js_ctx = JsValue::from_json(ctx, c)?;
            let value = self
                .entry
                .call(&this, &[js_record.clone(), js_ctx.clone()], c)?;
            let output = match value.as_callable() {
                Some(f) => f.call(&this, &[js_record, js_ctx], c)?,
                None => value,
            };
            self.stringify.call(&this, &[output], c)
        })();
        let swept = self.sweep.call(&this, &[], c);
        let text = text.map_err(|e| js_error(e, c))?;
        swept.map_err(|e| js_error(e, c))?;
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
}

/// Freezes everything reachable from the global object's bindings, pins those bindings, and
/// returns the function that deletes globals created after this point (see the module docs).
const LOCKDOWN: &str = r#"(() => {
  const seen = new Set();
  const { freeze, getPrototypeOf, getOwnPropertyDescriptor, defineProperty } = Object;
  const { ownKeys } = Reflect;
  const deep = (o) => {
    if (o === null || (typeof o !== "object" && typeof o !== "function") || seen.has(o)) return;
    seen.add(o);
    freeze(o);
    deep(getPrototypeOf(o));
    for (const k of ownKeys(o)) {
      const d = getOwnPropertyDescriptor(o, k);
      if (d) { deep(d.value); deep(d.get); deep(d.set); }
    }
  };
  const base = new Set(ownKeys(globalThis));
  for (const k of base) {
    const d = getOwnPropertyDescriptor(globalThis, k);
    deep(d.value); deep(d.get); deep(d.set);
    if (d.configurable) defineProperty(globalThis, k, { configurable: false, ...("value" in d ? { writable: false } : {}) });
  }
  deep(getPrototypeOf(globalThis));
  return () => { for (const k of ownKeys(globalThis)) if (!base.has(k)) delete globalThis[k]; };
})()"#;

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

/// Which lazy container of the record a proxy handler serves.
#[derive(Clone, Copy)]
enum Part {
    Observations,
    Results,
}

/// The native half of a lazy container's proxy handler: where its values come from and which
/// are converted already. The results handler also holds the observations array target as its
/// JS property `o`, so `results[code]` is the same object as the observation it names.
struct LazyPart {
    root: Arc<Value>,
    part: Part,
    /// Per observation index / per `results` key (in key order): converted onto the target.
    observations_done: Rc<RefCell<Vec<bool>>>,
    results_done: Rc<RefCell<Vec<bool>>>,
}

impl boa_engine::gc::Finalize for LazyPart {}
// SAFETY: holds no `Gc` pointers (an `Arc` of serde data and `Rc`s of plain flags), so there
// is nothing for the collector to trace.
unsafe impl boa_engine::gc::Trace for LazyPart {
    boa_engine::gc::empty_trace!();
}
impl boa_engine::JsData for LazyPart {}

/// The proxy constructor and the prototype of every lazy handler (the traps).
struct Lazy {
    proxy: JsObject,
    traps: JsObject,
}

/// Every trap that could see a value before it is converted converts it first (`m`: the key's
/// value, or all of them for `ownKeys`/`preventExtensions`), then does what the plain object
/// would (`Reflect`). So `record.observations` and `record.results` behave as a plain array and
/// object (keys, order, `JSON.stringify`, `Object.freeze`, writes, identity); an observation is
/// only built when it is touched, and is then a plain object.
const LAZY_TRAPS: &str = r#"((m) => {
  const R = Reflect;
  return {
    get(t, k) { m(this, t, k); return R.get(t, k); },
    set(t, k, v) { m(this, t, k); return R.set(t, k, v); },
    has(t, k) { m(this, t, k); return R.has(t, k); },
    deleteProperty(t, k) { m(this, t, k); return R.deleteProperty(t, k); },
    ownKeys(t) { m(this, t); return R.ownKeys(t); },
    getOwnPropertyDescriptor(t, k) { m(this, t, k); return R.getOwnPropertyDescriptor(t, k); },
    defineProperty(t, k, d) { m(this, t, k); return R.defineProperty(t, k, d); },
    preventExtensions(t) { m(this, t); return R.preventExtensions(t); },
  };
})"#;

impl Lazy {
    fn new(c: &mut Context) -> JsResult<Lazy> {
        let proxy = c.intrinsics().constructors().proxy().constructor();
        let make = c.eval(Source::from_bytes(LAZY_TRAPS.as_bytes()))?;
        let materialize = NativeFunction::from_fn_ptr(materialize).to_js_function(c.realm());
        let traps = make
            .as_callable()
            .map(|f| f.call(&JsValue::undefined(), &[materialize.into()], c))
            .transpose()?
            .and_then(|h| h.as_object().cloned())
            .ok_or_else(|| JsNativeError::typ().with_message("the lazy handler is missing"))?;
        Ok(Lazy { proxy, traps })
    }

    /// `record.observations` and `record.results` as proxies over empty targets: the array with
    /// its length, the object with its keys (in order) holding `undefined` until converted.
    fn containers(&self, root: &Arc<Value>, c: &mut Context) -> JsResult<(JsValue, JsValue)> {
        let n = root["observations"].as_array().map_or(0, Vec::len);
        let codes = root["results"].as_object();
        let observations_done = Rc::new(RefCell::new(vec![false; n]));
        let results_done = Rc::new(RefCell::new(vec![false; codes.map_or(0, |m| m.len())]));
        let handler = |part| {
            JsObject::from_proto_and_data(
                self.traps.clone(),
                LazyPart {
                    root: root.clone(),
                    part,
                    observations_done: observations_done.clone(),
                    results_done: results_done.clone(),
                },
            )
        };
        let array = JsArray::new(c);
        array.set(js_string!("length"), n, true, c)?;
        let object = JsObject::with_object_proto(c.intrinsics());
        for code in codes.into_iter().flat_map(|m| m.keys()) {
            object.create_data_property_or_throw(
                JsString::from(code.as_str()),
                JsValue::undefined(),
                c,
            )?;
        }
        let results_handler = handler(Part::Results);
        results_handler.set(js_string!("o"), JsValue::from(array.clone()), true, c)?;
        let observations =
            self.proxy
                .construct(&[array.into(), handler(Part::Observations).into()], None, c)?;
        let results = self
            .proxy
            .construct(&[object.into(), results_handler.into()], None, c)?;
        Ok((observations.into(), results.into()))
    }
}

/// The traps' first step `m(handler, target, key?)`: convert the value under `key` onto the
/// target (every value when there is no key), once.
fn materialize(_: &JsValue, args: &[JsValue], c: &mut Context) -> JsResult<JsValue> {
    let (Some(handler), Some(target)) = (
        args.first().and_then(JsValue::as_object),
        args.get(1).and_then(JsValue::as_object),
    ) else {
        return Ok(JsValue::undefined());
    };
    let Some((root, part, observations_done, results_done)) =
        handler.downcast_ref::<LazyPart>().map(|p| {
            (
                p.root.clone(),
                p.part,
                p.observations_done.clone(),
                p.results_done.clone(),
            )
        })
    else {
        return Ok(JsValue::undefined());
    };
    let key = match args.get(2) {
        Some(k) if !k.is_undefined() => match k.as_string() {
            Some(s) => Some(s.to_std_string_escaped()),
            None => return Ok(JsValue::undefined()), // a symbol: nothing lazy under it
        },
        _ => None,
    };
    match part {
        Part::Observations => {
            let n = observations_done.borrow().len();
            let which: Vec<usize> = match key {
                None => (0..n).collect(),
                Some(k) => array_index(&k).filter(|&i| i < n).into_iter().collect(),
            };
            for i in which {
                fill_observation(target, &root, &observations_done, i, c)?;
            }
        }
        Part::Results => {
            let Some(codes) = root["results"].as_object() else {
                return Ok(JsValue::undefined());
            };
            let which: Vec<(usize, &String)> = match &key {
                None => codes.keys().enumerate().collect(),
                Some(k) => codes.keys().enumerate().filter(|(_, c)| *c == k).collect(),
            };
            if which.is_empty() {
                return Ok(JsValue::undefined());
            }
            let array = handler.get(js_string!("o"), c)?;
            for (j, code) in which {
                if std::mem::replace(&mut results_done.borrow_mut()[j], true) {
                    continue;
                }
                let first = root["observations"].as_array().and_then(|obs| {
                    obs.iter()
                        .position(|o| o["test_code"].as_str() == Some(code.as_str()))
                });
                let value = match (first, array.as_object()) {
                    (Some(i), Some(array)) => {
                        fill_observation(array, &root, &observations_done, i, c)?;
                        array.get(i, c)?
                    }
                    _ => JsValue::from_json(&codes[code], c)?,
                };
                target.create_data_property_or_throw(JsString::from(code.as_str()), value, c)?;
            }
        }
    }
    Ok(JsValue::undefined())
}

fn fill_observation(
    array: &JsObject,
    root: &Value,
    done: &RefCell<Vec<bool>>,
    i: usize,
    c: &mut Context,
) -> JsResult<()> {
    if std::mem::replace(&mut done.borrow_mut()[i], true) {
        return Ok(());
    }
    let value = JsValue::from_json(&root["observations"][i], c)?;
    array.create_data_property_or_throw(i, value, c)?;
    Ok(())
}

/// `"12"` → 12; not `"012"`, `"-1"` or `"1.0"` (only canonical array indexes).
fn array_index(key: &str) -> Option<usize> {
    let i: usize = key.parse().ok()?;
    (i.to_string() == key).then_some(i)
}

/// The record view as a JS object, with `observations` and `results` converted lazily (a
/// GeneXpert MTB/RIF Ultra result has 84 observations of ~40 values each; converting them all
/// was ~90 % of a run for a script that reads five, benches/tempr.rs). `results` holds, per
/// test code, the first observation with it: the same object as in `observations`. Keys keep
/// the order `from_json` gives them.
fn record_to_js(record: &Arc<Value>, lazy: &Lazy, c: &mut Context) -> JsResult<JsValue> {
    let (Some(map), Some(_), Some(_)) = (
        record.as_object(),
        record["observations"].as_array(),
        record["results"].as_object(),
    ) else {
        return JsValue::from_json(record, c);
    };
    let (observations, results) = lazy.containers(record, c)?;
    let js_record = JsObject::with_object_proto(c.intrinsics());
    for (key, value) in map {
        let value = match key.as_str() {
            "observations" => observations.clone(),
            "results" => results.clone(),
            _ => JsValue::from_json(value, c)?,
        };
        js_record.set(JsString::from(key.as_str()), value, false, c)?;
    }
    Ok(js_record.into())
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

    /// Observations are proxies converted when touched; whatever a script does with them, it
    /// sees what it saw of a plain converted object (the same JSON as a literal in the script).
    #[test]
    fn lazy_observations_behave_like_plain_objects() {
        let record = json!({
            "sample_id": "S1",
            "observations": [
                {"test_code": "MTB", "value": "DETECTED LOW", "flags": ["A"], "extra": {"lot": "56401"}, "unit": null},
                {"test_code": "RIF", "value": "NOT DETECTED", "flags": [], "extra": {}, "unit": null}
            ],
            "results": {"MTB": {"test_code": "MTB", "value": "DETECTED LOW", "flags": ["A"], "extra": {"lot": "56401"}, "unit": null},
                        "RIF": {"test_code": "RIF", "value": "NOT DETECTED", "flags": [], "extra": {}, "unit": null}}
        });
        let exprs = [
            "JSON.stringify(r)",
            "Object.keys(r.observations[0]).join()",
            "Object.entries(r.results.RIF).map(([k, v]) => k + '=' + JSON.stringify(v)).join(';')",
            "JSON.stringify({ ...r.observations[0], extra: 1 })",
            "Array.isArray(r.observations) && r.observations.length === 2",
            "r.observations.filter(o => o.flags.length).map(o => o.test_code).join()",
            "r.observations.find(o => o.test_code === 'RIF').value",
            "'unit' in r.observations[1] && !('nope' in r.observations[1]) && r.observations[1].unit === null",
            "(() => { const o = r.observations[1]; o.note = 'x'; delete o.flags; return JSON.stringify(o); })()",
            "(() => { const o = Object.freeze(r.observations[0]); o.value = 'changed'; return Object.isFrozen(o) + o.value; })()",
            "JSON.stringify(Object.getOwnPropertyDescriptor(r.observations[0], 'value'))",
            "(() => { let s = ''; for (const k in r.results.MTB) s += k; return s; })()",
            "typeof r.observations[0].toString + String(r.observations[0])",
            "Object.keys(r.results).join() + '|' + Object.keys(r.observations).join()",
            "JSON.stringify(r.results) + JSON.stringify(r.observations.slice(1))",
            "[...r.observations].map((o, i) => i + o.test_code).join() + r.observations.length",
            "(() => { let s = ''; for (const o of r.observations) s += o.value; return s; })()",
            "'MTB' in r.results && !('XYZ' in r.results) && r.results.XYZ === undefined && 1 in r.observations && !(2 in r.observations)",
            "(() => { Object.freeze(r.observations); return Object.isFrozen(r.observations) + JSON.stringify(r.observations[0]); })()",
            "Object.entries(r.results).length + Object.values(r.observations).length",
        ];
        let limits = Limits::default();
        let shared = Arc::new(record.clone());
        for expr in exprs {
            let source = format!(
                "(r) => {{ const f = (r) => {expr}; const plain = {record}; return [f(r), f(plain)]; }}"
            );
            let mut warm = Warm::new(&source, limits.max_output_bytes).unwrap();
            let out = warm.run(&shared, &json!({}), &limits).unwrap();
            assert_eq!(out[0], out[1], "{expr}");
            assert!(!out[0].is_null(), "{expr}: {out}");
        }
    }

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
        let limits = Limits::default();
        let mut warm = Warm::new(
            "(r) => ({ keys: Object.keys(r.results), rif: r.results.RIF.value, \
               same: r.results.MTB === r.observations[1], results: r.results, top: Object.keys(r) })",
            limits.max_output_bytes,
        )
        .unwrap();
        let out = warm
            .run(&Arc::new(record.clone()), &json!({}), &limits)
            .unwrap();
        assert_eq!(out["keys"], json!(["MTB", "RIF"]));
        assert_eq!(out["rif"], "DETECTED");
        assert_eq!(out["same"], true);
        assert_eq!(out["results"], record["results"]);
        assert_eq!(out["top"], json!(["observations", "results", "sample_id"]));
    }
}
