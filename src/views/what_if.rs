//! What-if replay's report: which targets' effects differ between the recorded run and the
//! edited script ("PR #14: merge -> comment, label"), which calls had no recorded answer, and
//! where the script first left the recorded path; as text ([`report_text`]) or as the run's
//! `--json` object with a `what_if` member ([`report_json`]). It only renders: the replay is
//! the run's.

use crate::journal::entry::Entry;
use crate::journal::RecordedRun;
use crate::run::RunOutcome;
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
    for line in &run.entries {
        let Entry::EffectIntent(e) = &line.entry else { continue };
        let function = e.function.as_str();
        let args = e.args.clone();
        let result = run.effect_results.get(&e.call).cloned().unwrap_or(Value::Null);
        add(&mut map, target_of(&args, function), effect_name(function, &result), args);
    }
    map
}

pub fn new_effects(effects: &[EffectRecord]) -> EffectsByTarget {
    let mut map = EffectsByTarget::new();
    for e in effects {
        let function = e.kind.function();
        let args = e.args();
        add(&mut map, target_of(&args, function), effect_name(function, &e.result()), args.clone());
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

/// What a what-if replay found: `script` is the edited script as the user named it, `changes`
/// the [`effect_changes`] against the recorded run.
pub struct WhatIfReport<'a> {
    pub script: &'a str,
    pub changes: &'a [(String, String, String)],
    pub outcome: &'a RunOutcome,
}

/// The `--json` object: the run's own (`run_summary::outcome_json`) with a `what_if` member.
pub fn report_json(report: &WhatIfReport<'_>) -> Value {
    let outcome = report.outcome;
    let mut v = super::run_summary::outcome_json(outcome);
    v["what_if"] = json!({
        "script": report.script,
        "changes": changes_json(report.changes),
        "first_divergence": outcome.divergence.as_ref().map(|d| json!({
            "index": d.index,
            "recorded": d.recorded.as_ref().and_then(Entry::asked)
                .map(|e| json!({"fn": e.function, "args": e.args, "pos": e.pos})),
            "now": {"fn": d.now_function, "args": d.now_args, "pos": d.now_site.pos_string()},
        })),
        "not_recorded": outcome.unrecorded.iter().map(|u| json!({
            "index": u.index, "fn": u.function, "args": u.args, "pos": u.site.pos_string(),
        })).collect::<Vec<_>>(),
    });
    v
}

/// The report for a person: the first divergence, the effects that change, the calls that had
/// no recorded answer.
pub fn report_text(report: &WhatIfReport<'_>) -> String {
    let (script, outcome) = (report.script, report.outcome);
    let mut out = format!("what-if: {script} against run {}\n", outcome.run_id);
    match &outcome.divergence {
        None => out.push_str("\nThe edited script asks for exactly what the run recorded.\n"),
        Some(d) => {
            let at = d.now_site.pos_string().map(|p| format!("{}:{p}", d.now_site.source.as_deref().unwrap_or(script)));
            let at = at.map(|a| format!(" ({a})")).unwrap_or_default();
            out.push_str(&format!("\nFirst divergence at call {}{at}:\n", d.index));
            for line in crate::run::describe_divergence(d).lines() {
                out.push_str(&format!("  {line}\n"));
            }
        }
    }
    if report.changes.is_empty() {
        out.push_str("\nNo effect changes.\n");
    } else {
        out.push_str("\nEffects that change:\n");
        for (target, before, after) in report.changes {
            out.push_str(&format!("  {target}: {before} -> {after}\n"));
        }
    }
    if !outcome.unrecorded.is_empty() {
        out.push_str(&format!(
            "\nCalls with no recorded answer ({}), answered `not_recorded`:\n",
            outcome.unrecorded.len()
        ));
        for u in &outcome.unrecorded {
            let pos = u.site.pos_string().unwrap_or_default();
            out.push_str(&format!("  call {} {} {} ({script}:{pos})\n", u.index, u.function, compact(&u.args)));
        }
    }
    out.push_str("\nNothing ran and nothing was spent.\n");
    out
}

/// A call's arguments on one line, cut at 100 characters.
fn compact(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(100) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}
