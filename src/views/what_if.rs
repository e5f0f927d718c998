//! What-if replay's report: which targets' effects differ between the recorded run and the
//! edited script ("PR #14: merge -> comment, label"), which calls had no recorded answer, and
//! where the script first left the recorded path.

use crate::journal::entry::EntryKind;
use crate::journal::RecordedRun;
use crate::script::host::EffectRecord;
use indexmap::IndexMap;
use serde_json::{json, Value};

/// The effects on one target, in order: their names (`merge`, `comment`, `label`, `notify`)
/// and the arguments each was given, so a change of content shows as well as a change of kind.
type EffectsByTarget = IndexMap<String, Vec<(String, Value)>>;

fn target_of(args: &Value, function: &str) -> String {
    if let Some(pr) = args.get("pr") {
        return format!("#{pr}");
    }
    if let Some(Value::String(b)) = args.get("branch") {
        return format!("branch {b}");
    }
    if let Some(n) = args.get("number") {
        return format!("#{n}");
    }
    if let Some(Value::String(c)) = args.get("channel") {
        return c.clone();
    }
    function.to_owned()
}

fn effect_name(function: &str, result: &Value) -> String {
    let short = function.strip_prefix("github.").unwrap_or(function);
    match result.get("status").and_then(Value::as_str) {
        Some("refused") => format!("{short} refused"),
        _ => short.to_owned(),
    }
}

fn add(map: &mut EffectsByTarget, target: String, name: String, args: Value) {
    map.entry(target).or_default().push((name, args));
}

pub fn recorded_effects(run: &RecordedRun) -> EffectsByTarget {
    let mut map = EffectsByTarget::new();
    for e in run.entries.iter().filter(|e| e.kind == EntryKind::EffectIntent) {
        let function = e.function.as_deref().unwrap_or("?");
        let args = e.args.clone().unwrap_or(Value::Null);
        let result = e.call.and_then(|c| run.effect_results.get(&c)).cloned().unwrap_or(Value::Null);
        add(&mut map, target_of(&args, function), effect_name(function, &result), args);
    }
    map
}

pub fn new_effects(effects: &[EffectRecord]) -> EffectsByTarget {
    let mut map = EffectsByTarget::new();
    for e in effects {
        let function = e.kind.function();
        add(&mut map, target_of(&e.args, function), effect_name(function, &e.result), e.args.clone());
    }
    map
}

/// One line per target whose effects changed, in first-seen order.
pub fn effect_changes(before: &EffectsByTarget, after: &EffectsByTarget) -> Vec<(String, String, String)> {
    let mut targets: Vec<&String> = before.keys().collect();
    for t in after.keys() {
        if !targets.contains(&t) {
            targets.push(t);
        }
    }
    let names = |l: Option<&Vec<(String, Value)>>| -> String {
        let mut names: Vec<&str> = Vec::new();
        for (n, _) in l.into_iter().flatten() {
            if !names.contains(&n.as_str()) {
                names.push(n);
            }
        }
        if names.is_empty() {
            "nothing".to_owned()
        } else {
            names.join(", ")
        }
    };
    targets
        .into_iter()
        .filter(|t| before.get(*t) != after.get(*t))
        .map(|t| {
            let (b, mut a) = (names(before.get(t)), names(after.get(t)));
            if a == b {
                a.push_str(" (content differs)");
            }
            (t.clone(), b, a)
        })
        .collect()
}

pub fn changes_json(changes: &[(String, String, String)]) -> Value {
    Value::Array(changes.iter().map(|(t, b, a)| json!({"target": t, "recorded": b, "what_if": a})).collect())
}
