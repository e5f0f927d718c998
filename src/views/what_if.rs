//! What-if replay's report: which targets' effects differ between the recorded run and the
//! edited script ("PR #14: merge -> comment, label"), which calls had no recorded answer, and
//! where the script first left the recorded path.

use crate::journal::entry::EntryKind;
use crate::journal::RecordedRun;
use crate::script::host::EffectRecord;
use indexmap::IndexMap;
use serde_json::{json, Value};

/// The effects on one target, in order: `merge`, `comment`, `label`, `notify`.
type EffectsByTarget = IndexMap<String, Vec<String>>;

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

fn add(map: &mut EffectsByTarget, target: String, name: String) {
    let list = map.entry(target).or_default();
    if !list.contains(&name) {
        list.push(name);
    }
}

pub fn recorded_effects(run: &RecordedRun) -> EffectsByTarget {
    let mut map = EffectsByTarget::new();
    for e in run
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::EffectIntent)
    {
        let function = e.function.as_deref().unwrap_or("?");
        let args = e.args.clone().unwrap_or(Value::Null);
        let result = e
            .call
            .and_then(|c| run.effect_results.get(&c))
            .cloned()
            .unwrap_or(Value::Null);
        add(
            &mut map,
            target_of(&args, function),
            effect_name(function, &result),
        );
    }
    map
}

pub fn new_effects(effects: &[EffectRecord]) -> EffectsByTarget {
    let mut map = EffectsByTarget::new();
    for e in effects {
        let function = e.kind.function();
        add(
            &mut map,
            target_of(&e.args, function),
            effect_name(function, &e.result),
        );
    }
    map
}

/// One line per target whose effects changed, in first-seen order.
pub fn effect_changes(
    before: &EffectsByTarget,
    after: &EffectsByTarget,
) -> Vec<(String, String, String)> {
    let mut targets: Vec<&String> = before.keys().collect();
    for t in after.keys() {
        if !targets.contains(&t) {
            targets.push(t);
        }
    }
    let show = |l: Option<&Vec<String>>| match l {
        Some(l) if !l.is_empty() => l.join(", "),
        _ => "nothing".to_owned(),
    };
    targets
        .into_iter()
        .filter(|t| before.get(*t) != after.get(*t))
        .map(|t| (t.clone(), show(before.get(t)), show(after.get(t))))
        .collect()
}

pub fn changes_json(changes: &[(String, String, String)]) -> Value {
    Value::Array(
        changes
            .iter()
            .map(|(t, b, a)| json!({"target": t, "recorded": b, "what_if": a}))
            .collect(),
    )
}
