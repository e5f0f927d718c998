//! A spawn's options, parsed once where the script's map reaches the host
//! (`spawn_session`): the checks that depend only on the arguments are made here, and every
//! later step (the journal, the leaf's order, the result map) reads this struct.
//!
//! It owns what each option means to the host; it must not decide whether or where a leaf
//! runs (the sessions executor and the leaf orders do).

use super::json_type;
use serde_json::{json, Value};
use std::time::Duration;

/// What `spawn_session(workflow, opts)` asked for.
#[derive(Debug)]
pub struct SpawnOptions {
    /// The call's arguments as the journal holds them: the opts, and `classify`'s per-call
    /// schema. The call key is their hash; goal and inputs are read from them, so a spawn's
    /// inputs are held once, not copied.
    args: Value,
    /// `args` holds a per-call schema (`classify`).
    schema_override: bool,
    /// `timeout`: seconds or a duration like `"20m"`; none means the workflow's.
    pub timeout: Option<Duration>,
    /// `harness`: the harness this one leaf runs on.
    pub harness: Option<String>,
    /// `model`: the model this one leaf asks for.
    pub model: Option<String>,
    /// `worktree`: whether the leaf works in its own git worktree; none means the workflow's.
    pub worktree: Option<bool>,
    /// `branch`: the branch the leaf's worktree is on (`ticket/T1`); none means its session's
    /// own, `coord/<run>/<session>`. An existing branch is checked out, so a later run's leaf
    /// continues where an earlier one stopped.
    pub branch: Option<String>,
}

impl SpawnOptions {
    /// Parses a spawn's opts (and `classify`'s schema). `commands_allowed` is coord.toml's
    /// `[capabilities] spawn_command`. The error says what the script got wrong.
    pub fn parse(opts: Value, schema: Option<Value>, commands_allowed: bool) -> Result<Self, String> {
        if opts.get("command").is_some() && !commands_allowed {
            return Err(
                "the `command` option (run any program as a leaf) is switched off in coord.toml: [capabilities] spawn_command = false".into(),
            );
        }
        match opts.get("inputs") {
            None | Some(Value::Null | Value::Object(_)) => {}
            Some(other) => return Err(format!("`inputs` must be a map, not {}", json_type(other))),
        }
        let timeout = opts.get("timeout").map_or(Ok(None), timeout_of)?;
        let text = |key: &str| opts.get(key).and_then(Value::as_str).map(str::to_owned);
        let (harness, model) = (text("harness"), text("model"));
        let worktree = opts.get("worktree").and_then(Value::as_bool);
        let branch = opts.get("branch").map_or(Ok(None), branch_of)?;
        let mut args = opts;
        let schema_override = schema.is_some();
        if let (Some(obj), Some(schema)) = (args.as_object_mut(), schema) {
            obj.insert("schema".into(), schema);
        }
        Ok(SpawnOptions { args, schema_override, timeout, harness, model, worktree, branch })
    }

    /// The call's arguments, as journaled.
    pub fn args(&self) -> &Value {
        &self.args
    }

    /// `goal`: what the leaf is asked to do.
    pub fn goal(&self) -> &str {
        self.args.get("goal").and_then(Value::as_str).unwrap_or("")
    }

    /// `inputs`: always a map (an absent or null one is empty).
    pub fn inputs(&self) -> &Value {
        static EMPTY: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| json!({}));
        match self.args.get("inputs") {
            Some(v @ Value::Object(_)) => v,
            _ => &EMPTY,
        }
    }

    /// Moves `goal` and `inputs` out, once the spawn is journaled and its leaf has its own
    /// copy: the session's result record keeps them from then on.
    pub fn take_goal_and_inputs(&mut self) -> (String, Value) {
        let Some(args) = self.args.as_object_mut() else { return (String::new(), json!({})) };
        let goal = match args.shift_remove("goal") {
            Some(Value::String(goal)) => goal,
            _ => String::new(),
        };
        let inputs = match args.shift_remove("inputs") {
            Some(inputs @ Value::Object(_)) => inputs,
            _ => json!({}),
        };
        (goal, inputs)
    }

    /// `classify`'s per-call schema, when it gave one.
    pub fn schema(&self) -> Option<&Value> {
        self.schema_override.then(|| self.args.get("schema")).flatten()
    }

    /// What a harness reads per call: the opts without goal, inputs and schema, which travel
    /// on their own, and without the labels only views read (`subject`, `after`).
    pub fn harness_overrides(&self) -> Value {
        match &self.args {
            Value::Object(o) => Value::Object(
                o.iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "inputs" | "goal" | "schema" | "subject" | "after"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// A spawn's `timeout` option: seconds, or a duration like `"20m"`; `()` means the workflow's.
fn timeout_of(v: &Value) -> Result<Option<Duration>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_f64()
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
            .map(Some)
            .ok_or_else(|| format!("`timeout` must be a non-negative number of seconds, not {n}")),
        Value::String(s) => humantime::parse_duration(s).map(Some).map_err(|e| format!("timeout `{s}`: {e}")),
        other => Err(format!("`timeout` must be seconds or a duration like \"20m\", not {}", json_type(other))),
    }
}

/// A `branch` option: a name git takes for a branch (checked here, so a bad one is the script's
/// mistake at the call, not a failed leaf).
fn branch_of(v: &Value) -> Result<Option<String>, String> {
    let Value::String(name) = v else { return Err(format!("`branch` must be a string, not {}", json_type(v))) };
    let refused = name.is_empty()
        || name.starts_with(['-', '/'])
        || name.ends_with(['/', '.'])
        || name.ends_with(".lock")
        || name.contains("..")
        || name.contains("//")
        || name.contains("@{")
        || name.chars().any(|c| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(c));
    if refused {
        return Err(format!("`branch` is not a branch name git takes: {name:?}"));
    }
    Ok(Some(name.clone()))
}

#[cfg(test)]
mod tests {
    use super::SpawnOptions;
    use serde_json::json;
    use std::time::Duration;

    #[test]
    fn options_are_read_once_and_the_arguments_kept_as_given() {
        let opts =
            json!({"goal": "review", "inputs": {"pr": 3}, "timeout": "2m", "harness": "codex", "worktree": true});
        let parsed = SpawnOptions::parse(opts.clone(), None, true).unwrap();
        assert_eq!(parsed.args(), &opts);
        assert_eq!((parsed.goal(), parsed.inputs()), ("review", &json!({"pr": 3})));
        assert_eq!(parsed.timeout, Some(Duration::from_secs(120)));
        assert_eq!(
            (parsed.harness.as_deref(), parsed.model.as_deref(), parsed.worktree),
            (Some("codex"), None, Some(true))
        );
        assert_eq!(parsed.schema(), None);
        assert_eq!(parsed.harness_overrides(), json!({"timeout": "2m", "harness": "codex", "worktree": true}));
    }

    #[test]
    fn a_per_call_schema_joins_the_arguments() {
        let parsed = SpawnOptions::parse(json!({"goal": "g"}), Some(json!({"type": "object"})), true).unwrap();
        assert_eq!(parsed.args(), &json!({"goal": "g", "schema": {"type": "object"}}));
        assert_eq!(parsed.schema(), Some(&json!({"type": "object"})));
        assert_eq!(parsed.inputs(), &json!({}));
    }

    #[test]
    fn what_the_script_got_wrong_is_refused() {
        let refused = |opts, allowed| SpawnOptions::parse(opts, None, allowed).unwrap_err();
        assert!(refused(json!({"command": ["ls"]}), false).contains("spawn_command = false"));
        assert_eq!(refused(json!({"inputs": [1]}), true), "`inputs` must be a map, not an array");
        assert!(refused(json!({"timeout": -1}), true).contains("non-negative"));
        assert!(refused(json!({"timeout": true}), true).contains("not a bool"));
        for bad in ["", "a b", "../x", "-x", "x.lock", "a:b", "x/"] {
            assert!(refused(json!({"branch": bad}), true).contains("not a branch name"), "{bad}");
        }
        assert!(refused(json!({"branch": 5}), true).contains("must be a string"));
        let ok = SpawnOptions::parse(json!({"branch": "ticket/T1"}), None, true).unwrap();
        assert_eq!(ok.branch.as_deref(), Some("ticket/T1"));
    }
}
