//! Registers the host API with the engine: every function a coordinator script may call, in
//! one place, with the signatures `docs/host-api.md` documents (a test compares the two).
//!
//! Each function turns Rhai values into JSON, asks the [`Host`], and turns the answer back.
//! Wrong argument types are reported with the function's expected signature.

use super::host::{json_type, Answer, Host, HostError, SignalWait};
use crate::effects::{EffectKind, GithubRead};
use crate::journal::entry::CallSite;
use crate::script::diagnostic::misuse;
use crate::script::json_value::{to_dynamic, to_json};
use crate::script::option_keys;
use crate::script::record::{plain, session_dynamic, shared_dynamic, Record};
use rhai::{Array, Dynamic, Engine, EvalAltResult, Map, Module, NativeCallContext, Position};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

/// The host as the registered functions see it: installed once the run directory exists
/// (compilation happens before, so a script that does not compile leaves nothing behind).
#[derive(Default)]
pub struct HostCell {
    host: RefCell<Option<Host>>,
}

pub type SharedHost = Rc<HostCell>;

impl HostCell {
    pub fn install(&self, host: Host) {
        *self.host.borrow_mut() = Some(host);
    }

    pub fn take(&self) -> Option<Host> {
        self.host.borrow_mut().take()
    }

    /// Runs `f` on the host; a host error is kept (typed) on the host and surfaces to the
    /// engine as a runtime error carrying its message.
    pub fn call<T>(&self, f: impl FnOnce(&mut Host) -> Result<T, HostError>) -> RhaiResult<T> {
        let mut guard = self.host.borrow_mut();
        let host =
            guard.as_mut().ok_or_else(|| runtime_error("host calls are not available while compiling".into()))?;
        f(host).map_err(|err| {
            let msg = err.to_string();
            if host.fatal.is_none() {
                host.fatal = Some(err);
            }
            runtime_error(msg)
        })
    }

    /// Like `call`, for infallible access.
    pub fn with<T>(&self, f: impl FnOnce(&mut Host) -> T) -> Option<T> {
        self.host.borrow_mut().as_mut().map(f)
    }
}
type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// A spawned session, as the script holds it.
#[derive(Clone, Debug)]
pub struct SessionHandle {
    pub id: String,
    pub workflow: String,
}

/// Every host function with its signature, for docs and `coord check`.
pub const HOST_FUNCTIONS: &[(&str, &str)] = &[
    ("spawn_session", "spawn_session(workflow: string, opts: map) -> SessionHandle"),
    ("await_sessions", "await_sessions(handles: array) -> array of result maps"),
    ("await_session", "await_session(handle: SessionHandle) -> result map"),
    ("classify", "classify(input, labels: array) -> string | (); classify(input, fields: map) -> map | ()"),
    ("merge", "merge(pr: int | branch: string, opts: map) -> map"),
    ("notify", "notify(channel: string, message: string | map) -> map"),
    ("input", "input(name: string) -> value | ()"),
    ("run_info", "run_info() -> #{ id: string, url: string | () }"),
    ("inputs", "inputs() -> map"),
    ("now", "now() -> int (Unix seconds)"),
    ("sleep", "sleep(duration: string | int) -> ()"),
    ("sleep_until", "sleep_until(time: int | string) -> ()"),
    ("wait_signal", "wait_signal(name: string, opts: map) -> value"),
    ("log", "log(value)"),
    ("parse_time", "parse_time(rfc3339: string) -> int | ()"),
    ("format_time", "format_time(unix_seconds: int) -> string"),
    ("to_json", "to_json(value) -> string"),
    ("item", "item(kind: string, id: int | string) -> string"),
    ("item_outcome", "item_outcome(item: string, outcome: string, reason: string) -> ()"),
    ("read_file", "read_file(path: string) -> string | ()"),
    ("state::get", "state::get(key: string) -> value | ()"),
    ("state::put", "state::put(key: string, value) -> ()"),
    ("github::prs", "github::prs(opts: map) -> array"),
    ("github::pr", "github::pr(number: int) -> map"),
    ("github::checks", "github::checks(pr: int) -> map"),
    ("github::reviews", "github::reviews(pr: int) -> array"),
    ("github::issues", "github::issues(opts: map) -> array"),
    ("github::comment", "github::comment(number: int, body: string | map) -> map"),
    ("github::label", "github::label(number: int, labels: array | string) -> map"),
    ("github::unlabel", "github::unlabel(number: int, label: string) -> map"),
    ("github::close", "github::close(number: int, comment: string) -> map"),
];

/// The expected signature of a host function, for error messages.
pub fn signature_of(name: &str) -> Option<&'static str> {
    HOST_FUNCTIONS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

fn site(ctx: &NativeCallContext, main_source: &str) -> CallSite {
    let pos = ctx.call_position();
    let source = ctx.call_source().filter(|s| *s != main_source).map(str::to_owned);
    CallSite { line: pos.line().unwrap_or(0), col: pos.position().unwrap_or(0), source }
}

fn runtime_error(msg: String) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(msg.into(), Position::NONE).into()
}

fn handle_ids(handles: &Array) -> RhaiResult<Vec<String>> {
    handles
        .iter()
        .map(|h| {
            if let Some(handle) = h.clone().try_cast::<SessionHandle>() {
                Ok(handle.id)
            } else if h.is_string() {
                Ok(h.clone().into_string().expect("checked is_string"))
            } else if let Some(id) = map_field(h, "id") {
                id.into_string().map_err(|_| misuse("await_sessions: a map in the list has no `id`"))
            } else {
                Err(misuse(format!("await_sessions: expected session handles, got {}", h.type_name())))
            }
        })
        .collect()
}

/// The field `key` of a map or a record; `None` when `value` is neither.
fn map_field(value: &Dynamic, key: &str) -> Option<Dynamic> {
    if let Some(record) = value.read_lock::<Record>() {
        return Some(record.get(key));
    }
    value.read_lock::<Map>().map(|m| m.get(key).cloned().unwrap_or(Dynamic::UNIT))
}

/// Waits for the sessions; their result records share the host's finished sessions.
fn await_results(host: &SharedHost, site: &CallSite, ids: &[String]) -> RhaiResult<Array> {
    host.call(|h| {
        h.wait_for(site, ids)?;
        Ok(ids.iter().map(|id| session_dynamic(h.finished_session(id).clone())).collect())
    })
}

/// A value call's answer as a script value: objects become shared records (unparsable
/// recorded text, a corrupt line, reads as `()`, as it would as JSON).
fn answer_to_dynamic(answer: Answer) -> Dynamic {
    shared_dynamic(Arc::new(answer.into_json()))
}

fn pr_number(v: &Dynamic, function: &str) -> RhaiResult<Value> {
    if let Ok(n) = v.as_int() {
        if n <= 0 {
            return Err(misuse(format!("{function}: PR number must be positive, got {n}")));
        }
        return Ok(json!({ "pr": n }));
    }
    if v.is_string() {
        return Ok(json!({ "branch": v.clone().into_string().expect("checked is_string") }));
    }
    if let Some(n) = map_field(v, "number").and_then(|n| n.as_int().ok()) {
        return Ok(json!({ "pr": n }));
    }
    Err(misuse(format!(
        "{function}: expected a PR number, a branch name or a PR map, got {}; signature: {}",
        v.type_name(),
        signature_of(function).unwrap_or(function)
    )))
}

/// An error raised inside a module's function carries no position of its own: give it the
/// call's.
fn at_call(mut err: Box<EvalAltResult>, ctx: &NativeCallContext) -> Box<EvalAltResult> {
    if err.position().is_none() {
        err.set_position(ctx.call_position());
    }
    err
}

/// A map given to `function` holds only the keys it takes (see [`option_keys`]).
fn refuse_unknown_keys(function: &str, what: &str, map: &Map, allowed: &[&str]) -> RhaiResult<()> {
    match option_keys::first_refusal(function, what, map.keys().map(|k| k.as_str()), allowed) {
        Some(line) => Err(misuse(line)),
        None => Ok(()),
    }
}

fn number_arg(n: i64, function: &str) -> RhaiResult<u64> {
    u64::try_from(n)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| misuse(format!("{function}: number must be positive, got {n}")))
}

pub fn register(engine: &mut Engine, host: SharedHost, main_source: String) {
    register_logging_and_pure_helpers(engine, host.clone());
    register_sessions(engine, host.clone(), main_source.clone());
    register_classify(engine, host.clone(), main_source.clone());
    register_effects(engine, host.clone(), main_source.clone());
    register_values(engine, host.clone(), main_source.clone());
    register_read_file(engine, host.clone(), main_source.clone());
    engine.register_static_module("state", state_module(host.clone(), main_source.clone()).into());
    register_waits(engine, host.clone(), main_source.clone());
    engine.register_static_module("github", github_module(host, main_source).into());
}

/// `print`, `debug` and `log` (to the run log, never stdout), and the pure helpers, which are
/// deterministic and so not journaled.
fn register_logging_and_pure_helpers(engine: &mut Engine, host: SharedHost) {
    {
        let h = host.clone();
        engine.on_print(move |s| {
            h.with(|host| host.log_line(s));
        });
        let h = host.clone();
        engine.on_debug(move |s, src, pos| {
            let at = src.map(|s| format!("{s}:")).unwrap_or_default();
            {
                h.with(|host| host.log_line(&format!("[debug {at}{pos}] {s}")));
            }
        });
        let h = host.clone();
        engine.register_fn("log", move |v: Dynamic| {
            let line = if v.is_string() { v.into_string().unwrap_or_default() } else { plain(&v).to_string() };
            h.with(|host| host.log_line(&line));
        });
    }

    // Pure helpers: deterministic, so not journaled.
    engine.register_fn("parse_time", |s: &str| -> Dynamic {
        crate::scenario::parse_time(s).map(Dynamic::from).unwrap_or(Dynamic::UNIT)
    });
    engine.register_fn("format_time", |t: i64| -> String {
        chrono::DateTime::from_timestamp(t, 0)
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    });
    engine.register_fn("to_json", |v: Dynamic| -> RhaiResult<String> { Ok(to_json(&v)?.to_string()) });
    // item("pr", 13) is `pr#13`: the tag views group a run's sessions, effects and declared
    // outcomes by (`subject` option, `item_outcome`).
    engine.register_fn("item", |kind: &str, id: i64| -> String { format!("{kind}#{id}") });
    engine.register_fn("item", |kind: &str, id: &str| -> String { format!("{kind}#{id}") });
}

/// `spawn_session`, `await_sessions` and `await_session`, and the handle they pass around.
fn register_sessions(engine: &mut Engine, host: SharedHost, main_source: String) {
    engine.register_type_with_name::<SessionHandle>("SessionHandle");
    engine.register_get("id", |h: &mut SessionHandle| h.id.clone());
    engine.register_get("workflow", |h: &mut SessionHandle| h.workflow.clone());
    engine.register_fn("to_string", |h: &mut SessionHandle| format!("session {} ({})", h.id, h.workflow));
    engine.register_fn("to_debug", |h: &mut SessionHandle| format!("session {} ({})", h.id, h.workflow));

    let ms = main_source.clone();
    let h = host.clone();
    let spawn = move |ctx: NativeCallContext, workflow: &str, opts: Map| -> RhaiResult<SessionHandle> {
        refuse_unknown_keys("spawn_session", "option", &opts, option_keys::SPAWN_SESSION)?;
        let opts = to_json(&Dynamic::from_map(after_as_ids(opts)?))?;
        let site = site(&ctx, &ms);
        let id = h.call(|host| host.spawn_session(&site, workflow, opts, None))?;
        Ok(SessionHandle { id, workflow: workflow.to_owned() })
    };
    engine.register_fn("spawn_session", spawn.clone());
    engine.register_fn("spawn_session", move |ctx: NativeCallContext, workflow: &str| spawn(ctx, workflow, Map::new()));

    let ms = main_source.clone();
    let h = host.clone();
    engine.register_fn("await_sessions", move |ctx: NativeCallContext, handles: Array| -> RhaiResult<Array> {
        let ids = handle_ids(&handles)?;
        let site = site(&ctx, &ms);
        await_results(&h, &site, &ids)
    });
    let ms = main_source.clone();
    let h = host.clone();
    engine.register_fn("await_session", move |ctx: NativeCallContext, handle: SessionHandle| -> RhaiResult<Dynamic> {
        let site = site(&ctx, &ms);
        let results = await_results(&h, &site, &[handle.id])?;
        Ok(results.into_iter().next().unwrap_or(Dynamic::UNIT))
    });
}

/// A spawn's `after` option (handles of the sessions it follows) as their ids, which is what
/// the journal keeps and views draw as dependencies.
fn after_as_ids(mut opts: Map) -> RhaiResult<Map> {
    if let Some(after) = opts.get_mut("after") {
        let handles = match after.clone().try_cast::<Array>() {
            Some(list) => list,
            None => vec![after.clone()],
        };
        let ids = handle_ids(&handles).map_err(|_| misuse("spawn_session: `after` takes session handles"))?;
        *after = Dynamic::from_array(ids.into_iter().map(Dynamic::from).collect());
    }
    Ok(opts)
}

/// `merge` and `notify`: effects, journaled before they act.
fn register_effects(engine: &mut Engine, host: SharedHost, main_source: String) {
    let ms = main_source.clone();
    let h = host.clone();
    let merge = move |ctx: NativeCallContext, target: Dynamic, opts: Map| -> RhaiResult<Map> {
        let mut args = pr_number(&target, "merge")?;
        refuse_unknown_keys("merge", "option", &opts, option_keys::MERGE)?;
        let opts = to_json(&Dynamic::from_map(opts))?;
        if let (Some(a), Value::Object(o)) = (args.as_object_mut(), opts) {
            a.extend(o);
        }
        let site = site(&ctx, &ms);
        let result = h.call(|host| host.effect(&site, EffectKind::Merge, args))?;
        Ok(to_dynamic(&result).try_cast::<Map>().unwrap_or_default())
    };
    engine.register_fn("merge", merge.clone());
    engine.register_fn("merge", move |ctx: NativeCallContext, target: Dynamic| merge(ctx, target, Map::new()));

    let ms = main_source.clone();
    let h = host.clone();
    engine.register_fn("notify", move |ctx: NativeCallContext, channel: &str, message: Dynamic| -> RhaiResult<Map> {
        if let Some(map) = message.read_lock::<Map>() {
            refuse_unknown_keys("notify", "message key", &map, option_keys::NOTIFY_MESSAGE)?;
        }
        if let Some(record) = message.read_lock::<Record>() {
            refuse_unknown_keys("notify", "message key", &record.to_map(), option_keys::NOTIFY_MESSAGE)?;
        }
        let message = to_json(&message)?;
        if !matches!(message, Value::String(_) | Value::Object(_)) {
            return Err(misuse(format!(
                "notify: message must be a string or a map, not {}; signature: {}",
                json_type(&message),
                signature_of("notify").unwrap_or_default()
            )));
        }
        let site = site(&ctx, &ms);
        let args = json!({ "channel": channel, "message": message });
        let result = h.call(|host| host.effect(&site, EffectKind::Notify, args))?;
        Ok(to_dynamic(&result).try_cast::<Map>().unwrap_or_default())
    });
}

/// `input`, `inputs` and `now`: values from outside the script, journaled so replays see them;
/// and `item_outcome`, journaled (acting on nothing) so views see what became of each item.
fn register_values(engine: &mut Engine, host: SharedHost, main_source: String) {
    let ms = main_source.clone();
    let h = host.clone();
    engine.register_fn("input", move |ctx: NativeCallContext, name: &str| -> RhaiResult<Dynamic> {
        let site = site(&ctx, &ms);
        let v = h.call(|host| host.input(&site, name))?;
        Ok(to_dynamic(&v))
    });
    let ms = main_source.clone();
    let h = host.clone();
    engine.register_fn("run_info", move |ctx: NativeCallContext| -> RhaiResult<Dynamic> {
        let site = site(&ctx, &ms);
        let v = h.call(|host| host.run_info(&site))?;
        Ok(to_dynamic(&v))
    });
    let ms = main_source.clone();
    let h = host.clone();
    engine.register_fn("inputs", move |ctx: NativeCallContext| -> RhaiResult<Dynamic> {
        let site = site(&ctx, &ms);
        let v = h.call(|host| host.inputs(&site))?;
        Ok(to_dynamic(&v))
    });
    let ms = main_source.clone();
    let h = host.clone();
    engine.register_fn("now", move |ctx: NativeCallContext| -> RhaiResult<i64> {
        let site = site(&ctx, &ms);
        h.call(|host| host.now(&site))
    });
    let ms = main_source.clone();
    let h = host.clone();
    let declare = move |ctx: NativeCallContext, item: &str, outcome: &str, reason: Dynamic| -> RhaiResult<()> {
        let reason = to_json(&reason)?;
        let reason = match reason {
            Value::String(_) | Value::Null => reason,
            other => Value::String(other.to_string()),
        };
        let site = site(&ctx, &ms);
        h.call(|host| host.item_outcome(&site, item, outcome, reason))
    };
    engine.register_fn("item_outcome", declare.clone());
    engine.register_fn("item_outcome", move |ctx: NativeCallContext, item: &str, outcome: &str| {
        declare(ctx, item, outcome, Dynamic::UNIT)
    });
}

/// `read_file(path)`: a repository file, journaled so a replay reads the text the run read.
fn register_read_file(engine: &mut Engine, host: SharedHost, main_source: String) {
    engine.register_fn("read_file", move |ctx: NativeCallContext, path: &str| -> RhaiResult<Dynamic> {
        let site = site(&ctx, &main_source);
        let v = host.call(|host| host.read_file(&site, path))?;
        Ok(to_dynamic(&v))
    });
}

/// `state::get` and `state::put`: the keyed store a pipeline keeps between runs.
fn state_module(host: SharedHost, main_source: String) -> Module {
    let mut m = Module::new();
    let (h, ms) = (host.clone(), main_source.clone());
    m.set_native_fn("get", move |ctx: NativeCallContext, key: &str| -> RhaiResult<Dynamic> {
        let site = site(&ctx, &ms);
        let v = h.call(|host| host.state_get(&site, key))?;
        Ok(to_dynamic(&v))
    });
    m.set_native_fn("put", move |ctx: NativeCallContext, key: &str, value: Dynamic| -> RhaiResult<()> {
        if key.is_empty() {
            return Err(at_call(misuse("state::put: the key is empty"), &ctx));
        }
        let value = to_json(&value)?;
        let site = site(&ctx, &main_source);
        host.call(|host| host.state_put(&site, key, value)).map(|_| ())
    });
    m
}

/// `sleep`, `sleep_until` and `wait_signal`: durable waits, journaled before they wait (see
/// docs/host-api.md, "Timers and signals").
fn register_waits(engine: &mut Engine, host: SharedHost, main_source: String) {
    let ms = main_source.clone();
    let h = host.clone();
    let sleep = move |ctx: NativeCallContext, duration: Dynamic| -> RhaiResult<()> {
        let given = to_json(&duration)?;
        let site = site(&ctx, &ms);
        h.call(|host| host.sleep_for(&site, given)).map_err(|e| at_call(e, &ctx))
    };
    // Exact parameter types, so these win over the engine's sandboxed `sleep(INT)` and
    // `sleep(FLOAT)` (Rhai's own sleep, which would wait unjournaled).
    let s = sleep.clone();
    engine.register_fn("sleep", move |ctx: NativeCallContext, secs: rhai::INT| s(ctx, Dynamic::from(secs)));
    let s = sleep.clone();
    engine.register_fn("sleep", move |ctx: NativeCallContext, secs: rhai::FLOAT| s(ctx, Dynamic::from(secs)));
    engine.register_fn("sleep", sleep);
    let ms = main_source.clone();
    let h = host.clone();
    engine.register_fn("sleep_until", move |ctx: NativeCallContext, time: Dynamic| -> RhaiResult<()> {
        let given = to_json(&time)?;
        let site = site(&ctx, &ms);
        h.call(|host| host.sleep_until(&site, given)).map_err(|e| at_call(e, &ctx))
    });
    let ms = main_source;
    let wait = move |ctx: NativeCallContext, name: &str, opts: Map| -> RhaiResult<Dynamic> {
        // The default is `on_timeout` (`default` is a reserved word in Rhai).
        refuse_unknown_keys("wait_signal", "option", &opts, &["timeout", "on_timeout", "key"])
            .map_err(|e| at_call(e, &ctx))?;
        let wait = SignalWait {
            timeout: opts.get("timeout").map(to_json).transpose()?,
            default: opts.get("on_timeout").map(to_json).transpose()?.unwrap_or(Value::Null),
            key: opts.get("key").map(to_json).transpose()?,
        };
        let site = site(&ctx, &ms);
        let v = host.call(|h| h.wait_signal(&site, name, wait)).map_err(|e| at_call(e, &ctx))?;
        Ok(to_dynamic(&v))
    };
    engine.register_fn("wait_signal", wait.clone());
    engine.register_fn("wait_signal", move |ctx: NativeCallContext, name: &str| wait(ctx, name, Map::new()));
}

fn register_classify(engine: &mut Engine, host: SharedHost, main_source: String) {
    // classify(input, labels): one label from a cheap leaf; () when the leaf fails.
    let ms = main_source.clone();
    let h = host.clone();
    engine.register_fn(
        "classify",
        move |ctx: NativeCallContext, input: Dynamic, labels: Array| -> RhaiResult<Dynamic> {
            let labels: Vec<String> = labels.into_iter().map(|l| l.to_string()).collect();
            if labels.is_empty() {
                return Err(misuse("classify: the label list is empty"));
            }
            let schema = json!({
                "type": "object",
                "required": ["label"],
                "properties": { "label": { "enum": labels }, "reason": { "type": "string" } }
            });
            let inputs = json!({ "input": to_json(&input)?, "labels": labels });
            let output = classify_leaf(&ctx, &h, &ms, inputs, schema)?;
            Ok(output.and_then(|o| o.get("label").cloned()).map(|l| to_dynamic(&l)).unwrap_or(Dynamic::UNIT))
        },
    );
    // classify(input, #{field: [labels] | "string" | "number" | "bool"}): a structured map.
    let ms = main_source;
    let h = host;
    engine.register_fn("classify", move |ctx: NativeCallContext, input: Dynamic, fields: Map| -> RhaiResult<Dynamic> {
        let mut properties = serde_json::Map::new();
        for (name, spec) in &fields {
            let spec = to_json(spec)?;
            let prop = match &spec {
                Value::Array(options) => json!({ "enum": options }),
                Value::String(t) if ["string", "number", "integer", "boolean", "bool"].contains(&t.as_str()) => {
                    json!({ "type": if t == "bool" { "boolean" } else { t.as_str() } })
                }
                Value::Object(_) => spec.clone(),
                other => {
                    return Err(misuse(format!(
                        "classify: field `{name}` must be a list of labels, a type name or a JSON Schema, not {}",
                        json_type(other)
                    )))
                }
            };
            properties.insert(name.to_string(), prop);
        }
        let required: Vec<&String> = properties.keys().collect();
        let schema = json!({ "type": "object", "required": required, "properties": properties });
        let inputs = json!({ "input": to_json(&input)?, "fields": to_json(&Dynamic::from_map(fields))? });
        let output = classify_leaf(&ctx, &h, &ms, inputs, schema)?;
        Ok(output.map(|o| to_dynamic(&o)).unwrap_or(Dynamic::UNIT))
    });
}

/// Runs the `classify` workflow as a session and returns its output, or None if it failed.
fn classify_leaf(
    ctx: &NativeCallContext,
    h: &SharedHost,
    main_source: &str,
    inputs: Value,
    schema: Value,
) -> RhaiResult<Option<Value>> {
    let site = site(ctx, main_source);
    let opts = json!({ "goal": "Classify the input", "inputs": inputs });
    let id = h.call(|host| host.spawn_session(&site, "classify", opts, Some(schema)))?;
    let mut results = h.call(|host| host.await_sessions(&site, &[id]))?;
    let session = results.pop().expect("one result per awaited session");
    let r = &session.result;
    if r.status != crate::leaf::session::SessionStatus::Ok {
        let line =
            format!("classify: session {} {}: {}", r.id, r.status.as_str(), r.error.as_deref().unwrap_or_default());
        h.with(|host| host.log_line(&line));
        return Ok(None);
    }
    Ok(Some(r.output.clone()))
}

/// The second argument of a GitHub effect has the type its signature says: labels are a
/// string or a list of strings, a comment is a string or a message map, the rest strings.
fn effect_argument(kind: EffectKind, field: &str, value: &Value) -> RhaiResult<()> {
    let function = &kind.function().replace('.', "::");
    let fits = match (kind, value) {
        (EffectKind::Label, Value::Array(items)) => !items.is_empty() && items.iter().all(Value::is_string),
        (EffectKind::Comment, Value::Object(o)) => {
            if let Some(line) = option_keys::first_refusal(
                function,
                "message key",
                o.keys().map(String::as_str),
                option_keys::NOTIFY_MESSAGE,
            ) {
                return Err(misuse(line));
            }
            true
        }
        (_, Value::String(_)) => true,
        _ => false,
    };
    if fits {
        return Ok(());
    }
    Err(misuse(format!(
        "{function}: `{field}` cannot be {}; signature: {}",
        json_type(value),
        signature_of(function).unwrap_or(function)
    )))
}

fn github_module(host: SharedHost, main_source: String) -> Module {
    let mut m = Module::new();
    let read = |m: &mut Module,
                name: &'static str,
                host: SharedHost,
                ms: String,
                make: fn(Value) -> RhaiResult<GithubRead>| {
        let (h, ms2) = (host.clone(), ms.clone());
        m.set_native_fn(name, move |ctx: NativeCallContext, arg: Dynamic| -> RhaiResult<Dynamic> {
            let read = make(to_json(&arg)?).map_err(|e| at_call(e, &ctx))?;
            let site = site(&ctx, &ms2);
            let answer = h.call(|host| host.github_read(&site, read))?;
            Ok(answer_to_dynamic(answer))
        });
        let _ = (host, ms);
    };
    fn opts(v: Value, function: &str, allowed: &[&str]) -> RhaiResult<Value> {
        match v {
            Value::Object(ref o) => {
                match option_keys::first_refusal(function, "option", o.keys().map(String::as_str), allowed) {
                    Some(line) => Err(misuse(line)),
                    None => Ok(v),
                }
            }
            Value::Null => Ok(json!({})),
            other => Err(misuse(format!(
                "{function}: expected an options map, got {}; signature: {}",
                json_type(&other),
                signature_of(function).unwrap_or(function)
            ))),
        }
    }
    fn number(v: Value, f: &str) -> RhaiResult<u64> {
        v.as_i64().map(|n| number_arg(n, f)).unwrap_or_else(|| {
            Err(misuse(format!(
                "{f}: expected a number, got {}; signature: {}",
                json_type(&v),
                signature_of(f).unwrap_or(f)
            )))
        })
    }
    read(&mut m, "prs", host.clone(), main_source.clone(), |v| {
        Ok(GithubRead::Prs(opts(v, "github::prs", option_keys::GITHUB_PRS)?))
    });
    read(&mut m, "pr", host.clone(), main_source.clone(), |v| Ok(GithubRead::Pr(number(v, "github::pr")?)));
    read(&mut m, "checks", host.clone(), main_source.clone(), |v| Ok(GithubRead::Checks(number(v, "github::checks")?)));
    read(&mut m, "reviews", host.clone(), main_source.clone(), |v| {
        Ok(GithubRead::Reviews(number(v, "github::reviews")?))
    });
    read(&mut m, "issues", host.clone(), main_source.clone(), |v| {
        Ok(GithubRead::Issues(opts(v, "github::issues", option_keys::GITHUB_ISSUES)?))
    });
    for name in ["prs", "issues"] {
        let (h, ms) = (host.clone(), main_source.clone());
        m.set_native_fn(name, move |ctx: NativeCallContext| -> RhaiResult<Dynamic> {
            let read = if name == "prs" { GithubRead::Prs(json!({})) } else { GithubRead::Issues(json!({})) };
            let site = site(&ctx, &ms);
            let answer = h.call(|host| host.github_read(&site, read))?;
            Ok(answer_to_dynamic(answer))
        });
    }

    let effect =
        |m: &mut Module, name: &'static str, kind: EffectKind, field: &'static str, host: SharedHost, ms: String| {
            m.set_native_fn(name, move |ctx: NativeCallContext, n: i64, arg: Dynamic| -> RhaiResult<Map> {
                let function = kind.function();
                let n = number_arg(n, function).map_err(|e| at_call(e, &ctx))?;
                let mut value = to_json(&arg)?;
                if kind == EffectKind::Label {
                    if let Value::String(s) = value {
                        value = json!([s]);
                    }
                }
                effect_argument(kind, field, &value).map_err(|e| at_call(e, &ctx))?;
                let args = json!({ "number": n, field: value });
                let site = site(&ctx, &ms);
                let v = host.call(|host| host.effect(&site, kind, args))?;
                Ok(to_dynamic(&v).try_cast::<Map>().unwrap_or_default())
            });
        };
    effect(&mut m, "comment", EffectKind::Comment, "body", host.clone(), main_source.clone());
    effect(&mut m, "label", EffectKind::Label, "labels", host.clone(), main_source.clone());
    effect(&mut m, "unlabel", EffectKind::Unlabel, "label", host.clone(), main_source.clone());
    effect(&mut m, "close", EffectKind::Close, "comment", host, main_source);
    m
}
