//! The outcome of `coord run` for people (a short summary of decisions) and for programs
//! (`--json`: one object with run id, status, sessions, effects and usage).

use super::effect_view::{effect_json, effect_line};
use crate::run::RunOutcome;
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
        "usage": {
            "input_tokens": o.usage.input_tokens,
            "output_tokens": o.usage.output_tokens,
            "cost_usd": round_cents(o.usage.cost_usd),
        },
        "result": o.result,
    })
}

fn round_cents(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
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
