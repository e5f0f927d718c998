//! The routing trace of a recorded run: every host call in script order with where it was
//! made and what it answered.
//!
//! MERGE NOTE: minimal stand-in on branch `views`, only so `coord show --trace` compiles here.
//! The real renderer of this name is written in main; at merge, main's `trace.rs` replaces
//! this file whole. Deterministic: no timestamps, durations or run ids.

use crate::journal::entry::EntryKind;
use crate::journal::RecordedRun;
use serde_json::Value;
use std::fmt::Write;

pub fn render_trace(run: &RecordedRun) -> String {
    let mut out = String::new();
    for call in &run.calls {
        let at = call.pos.as_deref().unwrap_or("?");
        let function = call.function.as_deref().unwrap_or("?");
        let args = compact(call.args.as_ref().unwrap_or(&Value::Null));
        let answer = match (call.kind, &call.session, call.call) {
            (_, Some(id), _) => id.clone(),
            (EntryKind::EffectIntent, _, Some(n)) => run
                .effect_results
                .get(&n)
                .map(compact)
                .unwrap_or_else(|| "(no result)".into()),
            _ => compact(call.result.as_ref().unwrap_or(&Value::Null)),
        };
        let _ = writeln!(out, "{at:>7}  {function}({args}) -> {answer}");
    }
    out
}

fn compact(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(100) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s,
    }
}
