//! The outcome of `coord run` for people (a short summary of decisions) and for programs
//! (`--json`: one object with run id, status, sessions, effects and usage).

use super::effect_view::{effect_json, effect_line};
use crate::run::RunOutcome;
use crate::scheduler::session::{SessionResult, Usage};
use serde_json::{json, Value};
use std::fmt::Write;

pub fn outcome_json(o: &RunOutcome) -> Value {
    json!({
        "run_id": o.run_id,
        "run_dir": o.run_dir.display().to_string(),
        "coordinator": o.coordinator,
        "status": o.status.as_str(),
        "sessions": o.sessions,
        "effects": o.effects.iter().map(effect_json).collect::<Vec<_>>(),
        "usage": usage_json(&o.usage),
        "leaves": o.leaves.iter().map(leaf_json).collect::<Vec<_>>(),
        "result": o.result,
    })
}

fn usage_json(u: &Usage) -> Value {
    let mut v = json!({
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "cache_read_tokens": u.cache_read_tokens,
        "cache_write_tokens": u.cache_write_tokens,
        "cost_usd": round_micro(u.cost_usd),
    });
    if u.cost_estimated {
        v["cost_estimated"] = json!(true);
    }
    v
}

/// One leaf's line in `--json`: who ran it, how it ended, what it cost. No durations: they
/// vary from run to run.
fn leaf_json(r: &SessionResult) -> Value {
    let mut v = json!({
        "id": r.id,
        "workflow": r.workflow,
        "harness": r.harness,
        "model": r.model,
        "status": r.status.as_str(),
        "attempts": r.attempts,
        "usage": usage_json(&r.usage),
    });
    if let Some(e) = &r.error {
        v["error"] = json!(e);
    }
    v
}

/// Dollars to the micro-dollar: cheap leaves cost fractions of a cent, and sums of floats
/// should not print their noise.
fn round_micro(x: f64) -> f64 {
    (x * 1_000_000.0).round() / 1_000_000.0
}

pub fn outcome_text(o: &RunOutcome) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}: {} — {} sessions, {} effects, {} tokens, ${:.4}",
        o.coordinator,
        o.status,
        o.sessions,
        o.effects.len(),
        o.usage.input_tokens + o.usage.output_tokens,
        o.usage.cost_usd
    );
    if let Value::Object(result) = &o.result {
        if !result.is_empty() {
            let _ = writeln!(s, "\nOutcome:");
            let width = result.keys().map(String::len).max().unwrap_or(0);
            for (k, v) in result {
                let _ = writeln!(s, "  {k:<width$}  {}", render_value(v));
            }
        }
    }
    if !o.effects.is_empty() {
        let _ = writeln!(s, "\nEffects:");
        for e in &o.effects {
            let _ = writeln!(s, "  {}", effect_line(e));
        }
    }
    let _ = writeln!(s, "\nRun {} in {}", o.run_id, o.run_dir.display());
    s
}

/// `[12, 13]` as `#12 #13`; other values compactly.
fn render_value(v: &Value) -> String {
    match v {
        Value::Array(items) if items.is_empty() => "—".into(),
        Value::Array(items) if items.iter().all(Value::is_u64) => {
            items.iter().map(|i| format!("#{i}")).collect::<Vec<_>>().join(" ")
        }
        Value::Array(items) => items.iter().map(render_value).collect::<Vec<_>>().join(", "),
        Value::String(s) => s.clone(),
        Value::Object(o) => o.iter().map(|(k, v)| format!("{k}: {}", render_value(v))).collect::<Vec<_>>().join("; "),
        other => other.to_string(),
    }
}
