//! Shared read-only records: how PRs, issues and session results reach a script.
//!
//! A record is a JSON object held once behind an `Arc` (a GitHub answer), or a finished
//! session the host keeps behind one ([`FinishedSession`]), and a path into it. Copying one, which Rhai does for every `let`, loop variable and
//! function argument, copies two pointers, so ordinary scripts (`for pr in prs`,
//! `let pr = item.pr`, `review(pr, repo)`) cost the same whatever a PR holds. The JSON behind
//! it is plain `Send` data: a journal-reading thread can parse it and hand it over, and the
//! script's thread wraps it here without building anything.
//!
//! To a script a record is a map: its type is `"map"`, it answers property and index access
//! (a missing key is `()`), `in`, `==`, `keys()`, `values()`, `len()`, `to_json`, prints as
//! the same map would, and mixes with maps in `+`, `+=` and `mixin`. Keys are seen in sorted
//! order, as a map's are. The first change to a record (`pr.title = "x"`, `remove`) copies its
//! top level into a map of its own, so no other holder sees it. Nested objects come out as
//! records and arrays as arrays of values, when they are read.
//!
//! It must never hold a script value in the shared part (that part crosses threads), and
//! must read exactly as the map the same JSON used to become (`json_value::to_dynamic`).

use super::json_value::to_dynamic;
use crate::leaf::session::{FinishedSession, SessionStatus, Usage};
use rhai::{Array, Dynamic, Engine, EvalAltResult, FnPtr, ImmutableString, Map, NativeCallContext};
use serde_json::Value;
use std::rc::Rc;
use std::sync::Arc;

/// One step from a record's root down to the object it shows.
#[derive(Clone, Debug)]
enum Step {
    Key(ImmutableString),
    Item(usize),
}

/// A JSON object as a script map, shared until it is changed.
#[derive(Clone, Debug)]
pub struct Record(Body);

#[derive(Clone, Debug)]
enum Body {
    /// The object at `path` in `root` (an empty path: the root itself).
    Shared { root: Root, path: Option<Rc<[Step]>> },
    /// Changed by the script: its own top level, nested records still shared.
    Edited(Map),
}

/// What a shared record's path starts from.
#[derive(Clone, Debug)]
enum Root {
    Json(Arc<Value>),
    /// A session's result record: its fields are read from the session, not stored as JSON
    /// (a large run keeps one per session); a path into it starts at `output` or `inputs`.
    Session(Arc<FinishedSession>),
}

impl Root {
    fn same(&self, other: &Root) -> bool {
        match (self, other) {
            (Root::Json(a), Root::Json(b)) => Arc::ptr_eq(a, b),
            (Root::Session(a), Root::Session(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// The object a shared record shows.
enum Shown<'a> {
    Object(&'a serde_json::Map<String, Value>),
    Session(&'a FinishedSession),
}

/// A session result record's keys, sorted: the fields of [`session_json`].
const SESSION_KEYS: [&str; 10] =
    ["error", "goal", "id", "inputs", "ok", "output", "status", "text", "usage", "workflow"];

/// A finished session as its result record, shared with the host that keeps it.
pub fn session_dynamic(session: Arc<FinishedSession>) -> Dynamic {
    Dynamic::from(Record(Body::Shared { root: Root::Session(session), path: None }))
}

/// A finished session's result record as JSON: the result's own fields, and the spawn's goal
/// and inputs.
pub fn session_json(session: &FinishedSession) -> Value {
    let result = &session.result;
    let fields: [(&str, Value); 10] = [
        ("id", Value::from(result.id.as_str())),
        ("workflow", Value::from(result.workflow.as_str())),
        ("status", Value::from(result.status.as_str())),
        ("ok", Value::Bool(result.status == SessionStatus::Ok)),
        ("output", result.output.clone()),
        ("text", Value::from(result.text.as_str())),
        ("usage", usage_json(&result.usage)),
        ("error", result.error.as_deref().map_or(Value::Null, Value::from)),
        ("goal", Value::from(session.goal.as_str())),
        ("inputs", session.inputs.clone()),
    ];
    Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn usage_json(usage: &Usage) -> Value {
    let fields = [
        ("input_tokens", Value::from(usage.input_tokens as i64)),
        ("output_tokens", Value::from(usage.output_tokens as i64)),
        ("cost_usd", serde_json::Number::from_f64(usage.cost_usd).map_or(Value::Null, Value::Number)),
    ];
    Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// The session record's field `key`, as the script value [`session_json`]'s would read as.
fn session_field(root: &Root, session: &FinishedSession, key: &str) -> Option<Dynamic> {
    let result = &session.result;
    let text = |s: &str| Dynamic::from(ImmutableString::from(s));
    Some(match key {
        "id" => text(&result.id),
        "workflow" => text(&result.workflow),
        "status" => text(result.status.as_str()),
        "ok" => Dynamic::from_bool(result.status == SessionStatus::Ok),
        "output" => child(root, &[], Step::Key("output".into()), &result.output),
        "text" => text(&result.text),
        "usage" => shared_dynamic(Arc::new(usage_json(&result.usage))),
        "error" => result.error.as_deref().map_or(Dynamic::UNIT, text),
        "goal" => text(&session.goal),
        "inputs" => child(root, &[], Step::Key("inputs".into()), &session.inputs),
        _ => return None,
    })
}

/// The session field a path into a session record starts at.
fn session_value<'a>(session: &'a FinishedSession, key: &str) -> &'a Value {
    match key {
        "output" => &session.result.output,
        "inputs" => &session.inputs,
        _ => unreachable!("a path into a session starts at a JSON field"),
    }
}

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// A JSON value as a script value: objects become records sharing `root`, arrays arrays of
/// script values, everything else what [`to_dynamic`] makes of it.
pub fn shared_dynamic(root: Arc<Value>) -> Dynamic {
    match &*root {
        Value::Object(_) => Dynamic::from(Record(Body::Shared { root: Root::Json(root), path: None })),
        Value::Array(items) => {
            let root = Root::Json(root.clone());
            Dynamic::from_array((0..items.len()).map(|i| child(&root, &[], Step::Item(i), &items[i])).collect())
        }
        scalar => to_dynamic(scalar),
    }
}

/// The script value for `value`, found at `path` + `step` under `root`.
fn child(root: &Root, path: &[Step], step: Step, value: &Value) -> Dynamic {
    match value {
        Value::Object(_) => {
            let path: Rc<[Step]> = path.iter().cloned().chain(std::iter::once(step)).collect();
            Dynamic::from(Record(Body::Shared { root: root.clone(), path: Some(path) }))
        }
        Value::Array(items) => {
            let path: Vec<Step> = path.iter().cloned().chain(std::iter::once(step)).collect();
            Dynamic::from_array(
                items.iter().enumerate().map(|(i, item)| child(root, &path, Step::Item(i), item)).collect(),
            )
        }
        scalar => to_dynamic(scalar),
    }
}

impl Record {
    /// The shared object this record shows, with its root and path; `None` once edited.
    fn shared(&self) -> Option<(&Root, &[Step], Shown<'_>)> {
        let Body::Shared { root, path } = &self.0 else { return None };
        let path = path.as_deref().unwrap_or(&[]);
        let (mut node, rest) = match root {
            Root::Json(value) => (&**value, path),
            Root::Session(session) => match path.split_first() {
                None => return Some((root, path, Shown::Session(session))),
                Some((Step::Key(key), rest)) => (session_value(session, key), rest),
                Some((Step::Item(_), _)) => unreachable!("a session record is an object"),
            },
        };
        for step in rest {
            node = match (step, node) {
                (Step::Key(k), Value::Object(fields)) => &fields[k.as_str()],
                (Step::Item(i), Value::Array(items)) => &items[*i],
                _ => unreachable!("a path is only made along the value it walks"),
            };
        }
        match node {
            Value::Object(fields) => Some((root, path, Shown::Object(fields))),
            _ => unreachable!("a record's path ends at an object"),
        }
    }

    /// The value of `key`, or `()`.
    pub fn get(&self, key: &str) -> Dynamic {
        match self.shared() {
            None => self.edited().get(key).cloned().unwrap_or(Dynamic::UNIT),
            Some((root, path, Shown::Object(fields))) => match fields.get_key_value(key) {
                Some((k, v)) => child(root, path, Step::Key(k.as_str().into()), v),
                None => Dynamic::UNIT,
            },
            Some((root, _, Shown::Session(session))) => session_field(root, session, key).unwrap_or(Dynamic::UNIT),
        }
    }

    pub fn contains(&self, key: &str) -> bool {
        match self.shared() {
            None => self.edited().contains_key(key),
            Some((_, _, Shown::Object(fields))) => fields.contains_key(key),
            Some((_, _, Shown::Session(_))) => SESSION_KEYS.contains(&key),
        }
    }

    pub fn len(&self) -> usize {
        match self.shared() {
            None => self.edited().len(),
            Some((_, _, Shown::Object(fields))) => fields.len(),
            Some((_, _, Shown::Session(_))) => SESSION_KEYS.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The script's own map of an edited record.
    fn edited(&self) -> &Map {
        match &self.0 {
            Body::Edited(map) => map,
            Body::Shared { .. } => unreachable!("asked of an edited record only"),
        }
    }

    /// The keys in sorted order, as a map lists them.
    fn sorted_keys(&self) -> Vec<ImmutableString> {
        match self.shared() {
            None => self.edited().keys().map(|k| k.as_str().into()).collect(),
            Some((_, _, Shown::Object(fields))) => {
                let mut keys: Vec<&String> = fields.keys().collect();
                keys.sort();
                keys.into_iter().map(|k| k.as_str().into()).collect()
            }
            Some((_, _, Shown::Session(_))) => SESSION_KEYS.iter().map(|&k| k.into()).collect(),
        }
    }

    /// The top level as a map; nested objects stay shared records.
    pub fn to_map(&self) -> Map {
        match self.shared() {
            None => self.edited().clone(),
            Some((root, path, Shown::Object(fields))) => fields
                .iter()
                .map(|(k, v)| (k.as_str().into(), child(root, path, Step::Key(k.as_str().into()), v)))
                .collect(),
            Some((root, _, Shown::Session(session))) => SESSION_KEYS
                .iter()
                .map(|&k| (k.into(), session_field(root, session, k).expect("a session key")))
                .collect(),
        }
    }

    /// The record's own map, copied out of the shared value on the first change.
    fn edit(&mut self) -> &mut Map {
        if let Body::Shared { .. } = self.0 {
            self.0 = Body::Edited(self.to_map());
        }
        match &mut self.0 {
            Body::Edited(map) => map,
            Body::Shared { .. } => unreachable!("just copied"),
        }
    }

    /// The record as JSON, exactly as `json_value::to_json` gives the map it reads as: keys
    /// sorted, numbers as the script sees them.
    pub fn to_json(&self) -> RhaiResult<Value> {
        match self.shared() {
            None => super::json_value::to_json(&Dynamic::from_map(self.edited().clone())),
            Some((_, _, Shown::Object(fields))) => Ok(as_script_json(&Value::Object(fields.clone()))),
            Some((_, _, Shown::Session(session))) => Ok(as_script_json(&session_json(session))),
        }
    }

    /// Whether two records show the same object of the same value.
    fn same_as(&self, other: &Record) -> bool {
        match (self.shared(), other.shared()) {
            (Some((a, _, Shown::Object(fa))), Some((b, _, Shown::Object(fb)))) => a.same(b) && std::ptr::eq(fa, fb),
            (Some((a, _, Shown::Session(_))), Some((b, _, Shown::Session(_)))) => a.same(b),
            _ => false,
        }
    }
}

/// JSON as it comes back out of a script value made from it: objects' keys sorted, numbers
/// that are not an `i64` as floats.
fn as_script_json(value: &Value) -> Value {
    match value {
        Value::Object(fields) => {
            let mut sorted: Vec<(&String, &Value)> = fields.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), as_script_json(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(as_script_json).collect()),
        Value::Number(n) if n.as_i64().is_none() => {
            serde_json::Number::from_f64(n.as_f64().unwrap_or(f64::NAN)).map_or(Value::Null, Value::Number)
        }
        other => other.clone(),
    }
}

/// A value with every record in it (at any depth) turned into the map it reads as, for what
/// only knows maps: Rhai's own formatting and its JSON text.
pub fn plain(value: &Dynamic) -> Dynamic {
    if let Some(record) = value.read_lock::<Record>() {
        return Dynamic::from_map(plain_map(&record.to_map()));
    }
    if let Some(items) = value.read_lock::<Array>() {
        if items.iter().any(holds_record) {
            return Dynamic::from_array(items.iter().map(plain).collect());
        }
    } else if let Some(map) = value.read_lock::<Map>() {
        if map.values().any(holds_record) {
            return Dynamic::from_map(plain_map(&map));
        }
    }
    value.clone()
}

fn plain_map(map: &Map) -> Map {
    map.iter().map(|(k, v)| (k.clone(), plain(v))).collect()
}

fn holds_record(value: &Dynamic) -> bool {
    if value.is::<Record>() {
        return true;
    }
    if let Some(items) = value.read_lock::<Array>() {
        return items.iter().any(holds_record);
    }
    if let Some(map) = value.read_lock::<Map>() {
        return map.values().any(holds_record);
    }
    false
}

/// Calls the standard map function `name` on the record's map, with `rest` after it.
fn as_map_call<T: rhai::Variant + Clone>(
    ctx: &NativeCallContext,
    name: &str,
    record: &Record,
    rest: impl IntoIterator<Item = Dynamic>,
) -> RhaiResult<T> {
    let mut args: Vec<Dynamic> = std::iter::once(Dynamic::from_map(record.to_map())).chain(rest).collect();
    let mut refs: Vec<&mut Dynamic> = args.iter_mut().collect();
    let result = ctx.call_native_fn_raw(name, true, &mut refs)?;
    result.try_cast_result::<T>().map_err(|v| format!("{name} returned {}", v.type_name()).into())
}

/// Calls the standard map function `name` on the record's own (edited) map, in place.
fn edit_call(
    ctx: &NativeCallContext,
    name: &str,
    record: &mut Record,
    rest: impl IntoIterator<Item = Dynamic>,
) -> RhaiResult<Dynamic> {
    let map = std::mem::take(record.edit());
    let mut args: Vec<Dynamic> = std::iter::once(Dynamic::from_map(map)).chain(rest).collect();
    let mut refs: Vec<&mut Dynamic> = args.iter_mut().collect();
    let result = ctx.call_native_fn_raw(name, true, &mut refs);
    let map = std::mem::take(&mut args[0]).try_cast::<Map>().unwrap_or_default();
    *record.edit() = map;
    result
}

fn equal(ctx: &NativeCallContext, a: &Record, b: Map) -> RhaiResult<bool> {
    as_map_call(ctx, "==", a, [Dynamic::from_map(b)])
}

/// Registers the record type and what a script can do with one.
pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<Record>("map");
    engine.register_indexer_get(|r: &mut Record, key: &str| r.get(key));
    engine.register_indexer_set(|r: &mut Record, key: &str, value: Dynamic| {
        r.edit().insert(key.into(), value);
    });
    engine.register_fn("get", |r: &mut Record, key: &str| r.get(key));
    engine.register_fn("contains", |r: &mut Record, key: &str| r.contains(key));
    engine.register_fn("len", |r: &mut Record| r.len() as rhai::INT);
    engine.register_fn("is_empty", |r: &mut Record| r.is_empty());
    engine.register_fn("keys", |r: &mut Record| -> Array { r.sorted_keys().into_iter().map(Dynamic::from).collect() });
    engine.register_fn("values", |r: &mut Record| -> Array { r.to_map().into_values().collect() });
    for name in ["to_string", "to_debug", "print", "debug"] {
        engine.register_fn(name, move |ctx: NativeCallContext, r: &mut Record| -> RhaiResult<ImmutableString> {
            as_map_call(&ctx, name, r, [])
        });
    }
    engine.register_fn("to_json", |r: &mut Record| -> RhaiResult<String> { Ok(r.to_json()?.to_string()) });
    // A map holding records: Rhai's own `to_json` cannot see into a record.
    engine.register_fn("to_json", |m: &mut Map| -> String {
        // What Rhai's own `to_json` of a map does, once the records are maps.
        let plain = plain_map(m);
        let sorted: std::collections::BTreeMap<&str, &Dynamic> = plain.iter().map(|(k, v)| (k.as_str(), v)).collect();
        serde_json::to_string(&sorted).unwrap_or_else(|_| "ERROR".into())
    });
    register_comparisons(engine);
    register_changes(engine);
}

fn register_comparisons(engine: &mut Engine) {
    engine.register_fn("==", |ctx: NativeCallContext, a: &mut Record, b: Record| -> RhaiResult<bool> {
        if a.same_as(&b) {
            return Ok(true);
        }
        equal(&ctx, a, b.to_map())
    });
    engine.register_fn("!=", |ctx: NativeCallContext, a: &mut Record, b: Record| -> RhaiResult<bool> {
        if a.same_as(&b) {
            return Ok(false);
        }
        equal(&ctx, a, b.to_map()).map(|e| !e)
    });
    engine.register_fn("==", |ctx: NativeCallContext, a: &mut Record, b: Map| equal(&ctx, a, b));
    engine.register_fn("!=", |ctx: NativeCallContext, a: &mut Record, b: Map| equal(&ctx, a, b).map(|e| !e));
    engine.register_fn("==", |ctx: NativeCallContext, a: &mut Map, b: Record| equal(&ctx, &b, a.clone()));
    engine.register_fn("!=", |ctx: NativeCallContext, a: &mut Map, b: Record| equal(&ctx, &b, a.clone()).map(|e| !e));
}

fn register_changes(engine: &mut Engine) {
    engine.register_fn("set", |r: &mut Record, key: &str, value: Dynamic| {
        r.edit().insert(key.into(), value);
    });
    engine.register_fn("remove", |r: &mut Record, key: &str| r.edit().remove(key).unwrap_or(Dynamic::UNIT));
    engine.register_fn("clear", |r: &mut Record| r.edit().clear());
    for name in ["mixin", "+=", "fill_with"] {
        engine.register_fn(name, move |ctx: NativeCallContext, r: &mut Record, other: Map| -> RhaiResult<()> {
            edit_call(&ctx, name, r, [Dynamic::from_map(other)]).map(drop)
        });
        engine.register_fn(name, move |ctx: NativeCallContext, r: &mut Record, other: Record| -> RhaiResult<()> {
            edit_call(&ctx, name, r, [Dynamic::from_map(other.to_map())]).map(drop)
        });
        engine.register_fn(name, move |ctx: NativeCallContext, m: &mut Map, other: Record| -> RhaiResult<()> {
            let mut args = [Dynamic::from_map(std::mem::take(m)), Dynamic::from_map(other.to_map())];
            let [first, second] = &mut args;
            let result = ctx.call_native_fn_raw(name, true, &mut [first, second]);
            *m = std::mem::take(first).try_cast::<Map>().unwrap_or_default();
            result.map(drop)
        });
    }
    engine.register_fn("+", |r: Record, other: Map| -> Map {
        let mut map = r.to_map();
        map.extend(other);
        map
    });
    engine.register_fn("+", |r: Record, other: Record| -> Map {
        let mut map = r.to_map();
        map.extend(other.to_map());
        map
    });
    engine.register_fn("+", |mut m: Map, other: Record| -> Map {
        m.extend(other.to_map());
        m
    });
    for name in ["map", "filter"] {
        engine.register_fn(name, move |ctx: NativeCallContext, r: &mut Record, f: FnPtr| -> RhaiResult<Map> {
            as_map_call(&ctx, name, r, [Dynamic::from(f)])
        });
    }
    for name in ["drain", "retain"] {
        engine.register_fn(name, move |ctx: NativeCallContext, r: &mut Record, f: FnPtr| -> RhaiResult<Dynamic> {
            edit_call(&ctx, name, r, [Dynamic::from(f)])
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn engine() -> Engine {
        let mut engine = crate::script::ScriptEngine::build(crate::script::EngineLimits::default());
        engine.register_fn("to_json", |v: Dynamic| -> RhaiResult<String> {
            Ok(crate::script::json_value::to_json(&v)?.to_string())
        });
        engine
    }

    /// Runs `script` twice, with `data` bound as records and as plain maps: both must give
    /// the same text.
    fn same_either_way(data: &Value, script: &str) -> String {
        same_as_map(shared_dynamic(Arc::new(data.clone())), data, script)
    }

    /// Runs `script` with `record` bound as `data`, then with the map `data` reads as: both
    /// must give the same text.
    fn same_as_map(record: Dynamic, data: &Value, script: &str) -> String {
        let engine = engine();
        let run = |value: Dynamic| {
            let mut scope = rhai::Scope::new();
            scope.push_dynamic("data", value);
            match engine.eval_with_scope::<Dynamic>(&mut scope, script) {
                Ok(v) => format!("{:?}", plain(&v)),
                Err(e) => format!("error: {e}"),
            }
        };
        let shared = run(record);
        let maps = run(to_dynamic(data));
        assert_eq!(shared, maps, "{script}");
        shared
    }

    #[test]
    fn records_read_as_the_maps_they_replace() {
        let data = json!({"z": 1, "a": {"n": 2.5, "list": [{"k": "v"}, 3, null]}, "s": "text", "big": 18446744073709551615u64});
        for script in [
            "data.z",
            "data.a.n",
            "data.a.list[0].k",
            "data.missing",
            "data.missing ?? 7",
            "data[\"s\"]",
            "data.keys()",
            "data.values().len()",
            "data.len()",
            "\"a\" in data",
            "\"q\" in data",
            "type_of(data)",
            "type_of(data.a)",
            "`${data}`",
            "data.to_string()",
            "data.to_debug()",
            "data.a.to_json()",
            "to_json(data)",
            "to_json(#{ x: data.a })",
            "#{ x: data.a }.to_json()",
            "data == data",
            "data.a == data.a",
            "data.a != #{ n: 2.5, list: [#{ k: \"v\" }, 3, ()] }",
            "data.a == #{ n: 2.5, list: [#{ k: \"v\" }, 3, ()] }",
            "#{ n: 2.5, list: [#{ k: \"v\" }, 3, ()] } == data.a",
            "data.a.list.contains(#{ k: \"v\" })",
            "let d = data; d.z = 5; [d.z, data.z, d.keys()]",
            "let d = data.a; d.remove(\"n\"); [d, data.a]",
            "let d = data; d += #{ q: 1 }; d",
            "let m = #{ q: 1 }; m += data.a; m",
            "data + #{ q: 1 }",
            "#{ q: 1 } + data.a",
            "data.a.filter(|k, v| k == \"n\")",
            "let d = data; d.a.n = 9; [d.a.n, data.a.n]",
            "[data.a].map(|x| x.n)",
            "data.big",
        ] {
            same_either_way(&data, script);
        }
    }

    #[test]
    fn session_records_read_as_the_maps_they_replace() {
        use crate::leaf::session::SessionResult;
        let mut result = SessionResult::new("s3", "review", SessionStatus::Ok);
        result.output = json!({"verdict": "minor", "findings": [{"file": "a.rs", "line": 3}], "score": 0.5});
        result.text = "{\"verdict\":\"minor\"}".into();
        result.usage.input_tokens = 1200;
        result.usage.cost_usd = 0.25;
        let inputs = json!({"pr": 3, "title": "Fix", "nested": {"k": [1, 2]}});
        let session = Arc::new(FinishedSession { result, goal: "Review PR #3".into(), inputs });
        let mut failed = SessionResult::new("s4", "fix", SessionStatus::Timeout);
        failed.error = Some("timed out".into());
        let failed = Arc::new(FinishedSession { result: failed, goal: String::new(), inputs: json!({}) });
        for session in [session, failed] {
            let data = session_json(&session);
            for script in [
                "data.id",
                "data.ok",
                "data.status",
                "data.error",
                "data.output.verdict",
                "data.output.findings[0].line",
                "data.output.score",
                "data.usage.cost_usd",
                "data.usage",
                "data.inputs.nested.k",
                "data.goal",
                "data.text",
                "data.missing",
                "data.keys()",
                "data.len()",
                "\"output\" in data",
                "\"x\" in data",
                "`${data}`",
                "data.to_json()",
                "to_json(#{ r: data })",
                "data == data",
                "data.output == data.output",
                "let d = data; d.status = \"x\"; [d.status, data.status]",
                "data + #{ q: 1 }",
                "[data].map(|r| r.output)",
            ] {
                same_as_map(session_dynamic(session.clone()), &data, script);
            }
        }
    }

    #[test]
    fn records_turn_back_into_the_json_they_came_from() {
        let data = json!({"b": [1, 2.5, "x", true, null], "a": {"n": -3, "big": 18446744073709551615u64}, "e": {}});
        let record = shared_dynamic(Arc::new(data.clone()));
        let via_map = crate::script::json_value::to_json(&to_dynamic(&data)).unwrap();
        assert_eq!(crate::script::json_value::to_json(&record).unwrap(), via_map);
        assert_eq!(
            serde_json::to_string(&crate::script::json_value::to_json(&record).unwrap()).unwrap(),
            via_map.to_string()
        );
    }

    #[test]
    fn the_shared_part_crosses_threads() {
        fn send_and_sync<T: Send + Sync>(_: &T) {}
        let root = Arc::new(json!([{"number": 1}]));
        send_and_sync(&root);
        let moved = std::thread::spawn(move || root).join().unwrap();
        let prs = shared_dynamic(moved).into_array().unwrap();
        assert_eq!(prs[0].read_lock::<Record>().unwrap().get("number").as_int().unwrap(), 1);
    }
}
