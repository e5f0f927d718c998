//! The routing trace: a deterministic, human-readable rendering of a run's decisions, one line
//! per host call or effect, derived from the journal alone.
//!
//! It must hold nothing that varies between runs of the same routing: no timestamps, durations,
//! run ids, absolute paths or token counts. Snapshot tests compare it, and reviewers read its
//! diffs, so every line says what was asked and what came back, as briefly as possible.

use crate::journal::entry::{CallEntry, Entry};
use crate::journal::RecordedRun;
use indexmap::IndexMap;
use serde_json::Value;
use std::fmt::Write;

/// Longest string value shown in full; longer ones are cut with an ellipsis.
const MAX_STRING: usize = 72;

pub fn render_trace(run: &RecordedRun) -> String {
    render_entries(run.entries.iter().map(|l| &l.entry), &run.sessions)
}

pub fn render_entries<'a>(entries: impl IntoIterator<Item = &'a Entry>, sessions: &IndexMap<String, Value>) -> String {
    let mut out = String::new();
    let mut effect_args: IndexMap<u64, (&str, &Value)> = IndexMap::new();
    for e in entries {
        match e {
            Entry::RunStarted { .. } | Entry::Session(_) => {}
            Entry::Call(call) => render_call(&mut out, call, sessions),
            Entry::EffectIntent(intent) => {
                effect_args.insert(intent.call, (&intent.function, &intent.args));
            }
            Entry::EffectResult(r) => {
                let Some((function, args)) = effect_args.shift_remove(&r.call) else {
                    continue;
                };
                let _ = writeln!(out, "{}", effect_line(function, args, &r.result));
            }
            Entry::RunFinished(f) => {
                let status = f.status.as_str();
                match f.result.as_ref().filter(|r| !r.is_null()) {
                    Some(r) => {
                        let _ = writeln!(out, "end {status} {}", value_brief(r, 0));
                    }
                    None => {
                        let _ = writeln!(out, "end {status}");
                    }
                }
            }
        }
    }
    // An effect whose result never came: the run stopped between intent and result.
    for (_, (function, args)) in effect_args {
        let _ = writeln!(out, "{} (no result)", effect_line(function, args, &Value::Null));
    }
    out
}

fn render_call(out: &mut String, e: &CallEntry, sessions: &IndexMap<String, Value>) {
    let function = e.function.as_str();
    let (args, result) = (&e.args, &e.result);
    let line = match function {
        "spawn_session" => {
            let id = e.session.as_deref().unwrap_or("?");
            let workflow = e.key.0.split(':').nth(1).unwrap_or("?");
            let goal = args.get("goal").and_then(Value::as_str).filter(|g| !g.is_empty());
            // Inputs the goal already shows (a PR title) would only repeat it.
            let inputs = match (args.get("inputs"), goal) {
                (Some(Value::Object(o)), Some(goal)) => {
                    let kept: serde_json::Map<String, Value> = o
                        .iter()
                        .filter(|(_, v)| !v.as_str().is_some_and(|s| s.len() > 3 && goal.contains(s)))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    fields_brief(&Value::Object(kept))
                }
                (Some(i), _) => fields_brief(i),
                (None, _) => String::new(),
            };
            let mut line = format!("spawn {id} {workflow}");
            if !inputs.is_empty() {
                line.push(' ');
                line.push_str(&inputs);
            }
            if let Some(goal) = goal {
                let _ = write!(line, " {}", quoted(goal));
            }
            if let Some(subject) = args.get("subject").and_then(Value::as_str) {
                let _ = write!(line, " for {subject}");
            }
            line
        }
        "await_sessions" => {
            let ids: Vec<&str> = args
                .get("sessions")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let statuses: Vec<String> = ids
                .iter()
                .map(|id| sessions.get(*id).and_then(|r| r["status"].as_str()).unwrap_or("running").to_owned())
                .collect();
            let outcome = if statuses.is_empty() { "nothing".to_owned() } else { statuses.join(" ") };
            let mut line = format!("await [{}] -> {outcome}", ids.join(" "));
            for id in &ids {
                if let Some(r) = sessions.get(*id) {
                    let _ = write!(line, "\n  {id} {}", session_brief(r));
                }
            }
            line
        }
        "input" => {
            format!("input {} -> {}", args.get(0).and_then(Value::as_str).unwrap_or("?"), value_brief(result, 0))
        }
        "inputs" => format!("inputs -> {}", value_brief(result, 0)),
        "now" => format!(
            "now -> {}",
            result
                .as_i64()
                .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                .map(|d| d.to_rfc3339())
                .unwrap_or_default()
        ),
        "item_outcome" => {
            let text = |key: &str| args.get(key).and_then(Value::as_str).unwrap_or("?");
            let mut line = format!("outcome {} {}", text("item"), quoted_if_needed(text("outcome")));
            if let Some(reason) = args.get("reason").and_then(Value::as_str) {
                let _ = write!(line, " {}", quoted(reason));
            }
            line
        }
        f if f.starts_with("github.") => github_read_line(f, args, result),
        other => format!("{other} {} -> {}", value_brief(args, 0), value_brief(result, 0)),
    };
    let _ = writeln!(out, "{line}");
}

fn github_read_line(function: &str, args: &Value, result: &Value) -> String {
    let what = match function {
        "github.prs" => "PRs",
        "github.issues" => "issues",
        "github.reviews" => "reviews",
        _ => "",
    };
    let args_text = match args {
        Value::Object(_) => fields_brief(args),
        Value::Number(n) => format!("#{n}"),
        other => value_brief(other, 0),
    };
    let result_text = match (function, result) {
        (_, Value::Array(items)) if !what.is_empty() => {
            let numbers: Vec<String> = items.iter().filter_map(|i| i.get("number")).map(|n| format!("#{n}")).collect();
            if numbers.len() == items.len() && items.len() <= 12 {
                format!("{} {what} {}", items.len(), numbers.join(" "))
            } else {
                format!("{} {what}", items.len())
            }
        }
        ("github.checks", Value::Object(o)) => o.get("state").and_then(Value::as_str).unwrap_or("?").to_owned(),
        ("github.pr", Value::Object(o)) => format!(
            "{} head {}",
            quoted(o.get("title").and_then(Value::as_str).unwrap_or("")),
            o.get("head_sha").and_then(Value::as_str).unwrap_or("?")
        ),
        (_, other) => value_brief(other, 0),
    };
    if args_text.is_empty() {
        format!("{function} -> {result_text}")
    } else {
        format!("{function} {args_text} -> {result_text}")
    }
}

fn effect_line(function: &str, args: &Value, result: &Value) -> String {
    let status = result.get("status").and_then(Value::as_str).unwrap_or("?");
    let reason = result.get("reason").and_then(Value::as_str).map(|r| format!(" ({r})")).unwrap_or_default();
    let outcome = if result.is_null() { String::new() } else { format!(" -> {status}{reason}") };
    let target = match (args.get("pr"), args.get("branch"), args.get("number")) {
        (Some(pr), _, _) => format!("PR #{pr}"),
        (_, Some(Value::String(b)), _) => format!("branch {b}"),
        (_, _, Some(n)) => format!("#{n}"),
        _ => String::new(),
    };
    match function {
        "merge" => {
            format!("merge {target} {}{outcome}", args.get("method").and_then(Value::as_str).unwrap_or("squash"))
        }
        "notify" => format!(
            "notify {} {}{outcome}",
            args.get("channel").and_then(Value::as_str).unwrap_or("?"),
            quoted(&crate::views::effect_view::message_headline(&args["message"]))
        ),
        "github.comment" => {
            format!("comment {target} {}{outcome}", quoted(&crate::views::effect_view::message_headline(&args["body"])))
        }
        "github.label" => format!("label {target} {}{outcome}", value_brief(&args["labels"], 0)),
        "github.unlabel" => format!("unlabel {target} {}{outcome}", value_brief(&args["label"], 0)),
        "github.close" => format!("close {target}{outcome}"),
        other => format!("{other} {}{outcome}", value_brief(args, 0)),
    }
}

/// `ok verdict=clean findings=[0]`, or `timeout: timed out after 20m`.
fn session_brief(r: &Value) -> String {
    let status = r["status"].as_str().unwrap_or("?");
    if status != "ok" {
        let err = r["error"].as_str().unwrap_or("");
        return if err.is_empty() { status.to_owned() } else { format!("{status}: {}", cut(err)) };
    }
    let fields = match &r["output"] {
        Value::Object(o) if o.contains_key("$blob") => "(large output)".to_owned(),
        out @ Value::Object(_) => fields_brief(out),
        Value::Null => String::new(),
        other => value_brief(other, 0),
    };
    if fields.is_empty() {
        status.to_owned()
    } else {
        format!("{status} {fields}")
    }
}

/// `pr=12 title="Add retry"`: the scalar fields of a map, with arrays as their length.
fn fields_brief(v: &Value) -> String {
    let Value::Object(o) = v else {
        return value_brief(v, 0);
    };
    o.iter()
        .filter_map(|(k, v)| {
            let shown = match v {
                Value::Null => return None,
                Value::String(s) => quoted_if_needed(s),
                Value::Array(a) => format!("[{}]", a.len()),
                Value::Object(m) => format!("{{{}}}", m.len()),
                other => other.to_string(),
            };
            Some(format!("{k}={shown}"))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A compact, deterministic rendering of any value.
fn value_brief(v: &Value, depth: usize) -> String {
    match v {
        Value::String(s) => quoted(s),
        Value::Array(a) if depth > 1 => format!("[{}]", a.len()),
        Value::Array(a) => format!("[{}]", a.iter().map(|x| value_brief(x, depth + 1)).collect::<Vec<_>>().join(", ")),
        Value::Object(o) if depth > 1 => format!("{{{}}}", o.len()),
        Value::Object(o) => {
            format!(
                "{{{}}}",
                o.iter().map(|(k, x)| format!("{k}: {}", value_brief(x, depth + 1))).collect::<Vec<_>>().join(", ")
            )
        }
        Value::Null => "()".into(),
        other => other.to_string(),
    }
}

fn quoted(s: &str) -> String {
    format!("{:?}", cut(s))
}

fn quoted_if_needed(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || "-_./#:@".contains(c)) && s.len() <= MAX_STRING {
        s.to_owned()
    } else {
        quoted(s)
    }
}

fn cut(s: &str) -> String {
    let first = s.lines().next().unwrap_or("");
    let more = first.len() < s.trim_end().len();
    match first.char_indices().nth(MAX_STRING) {
        Some((i, _)) => format!("{}…", &first[..i]),
        None if more => format!("{first}…"),
        None => first.to_owned(),
    }
}
