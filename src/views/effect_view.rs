//! One effect as the `--json` output and summaries show it: its kind, its target and what
//! happened, with nothing that varies between runs.

use crate::effects::EffectKind;
use crate::script::host::EffectRecord;
use serde_json::{json, Map, Value};

pub fn effect_json(e: &EffectRecord) -> Value {
    let (args, result) = (e.args(), e.result());
    let mut m = Map::new();
    let kind = match e.kind {
        EffectKind::Merge => "merge",
        EffectKind::Notify => "notify",
        EffectKind::Comment => "comment",
        EffectKind::Label => "label",
        EffectKind::Unlabel => "unlabel",
        EffectKind::Close => "close",
    };
    m.insert("kind".into(), json!(kind));
    for field in ["pr", "branch", "number", "channel", "method", "labels", "label"] {
        if let Some(v) = args.get(field) {
            m.insert(field.into(), v.clone());
        }
    }
    if e.kind == EffectKind::Notify {
        m.insert("message".into(), message_headline(&args["message"]).into());
    }
    for field in ["status", "reason"] {
        if let Some(v) = result.get(field) {
            m.insert(field.into(), v.clone());
        }
    }
    Value::Object(m)
}

/// A message's first line (or a map message's title), for one-line views.
pub fn message_headline(message: &Value) -> String {
    let text = match message {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("title")
            .or_else(|| o.get("text"))
            .or_else(|| o.get("body"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        other => other.to_string(),
    };
    text.lines().next().unwrap_or("").to_owned()
}

/// `merge PR #12 (squash) -> merged`
pub fn effect_line(e: &EffectRecord) -> String {
    let (args, result) = (e.args(), e.result());
    let status = result.get("status").and_then(Value::as_str).unwrap_or("?");
    let reason = result.get("reason").and_then(Value::as_str).map(|r| format!(" ({r})")).unwrap_or_default();
    let target = match (args.get("pr"), args.get("branch"), args.get("number")) {
        (Some(pr), _, _) => format!("PR #{pr}"),
        (_, Some(Value::String(b)), _) => format!("branch {b}"),
        (_, _, Some(n)) => format!("#{n}"),
        _ => String::new(),
    };
    match e.kind {
        EffectKind::Merge => {
            let method = args.get("method").and_then(Value::as_str).unwrap_or("squash");
            format!("merge {target} {method} -> {status}{reason}")
        }
        EffectKind::Notify => format!(
            "notify {} {:?} -> {status}{reason}",
            args["channel"].as_str().unwrap_or("?"),
            message_headline(&args["message"])
        ),
        EffectKind::Comment => format!("comment {target} -> {status}{reason}"),
        EffectKind::Label => format!("label {target} {} -> {status}{reason}", args["labels"]),
        EffectKind::Unlabel => format!("unlabel {target} {} -> {status}{reason}", args["label"]),
        EffectKind::Close => format!("close {target} -> {status}{reason}"),
    }
}
