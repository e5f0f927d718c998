//! `coord show RUN`: a run for people, as text. A header (status, totals, outcome, the longest
//! session), each item's outcome ([`super::item_outcomes`]), the tree of sessions and effects under the call sites that started them (the
//! parent rule is in [`super::run_graph`]), then the effects in order with the verdict that led
//! to each, the errors, and the cost by workflow and model.
//!
//! Plain text, no colour, no terminal queries: the same run always renders the same bytes
//! apart from its id, timestamps and durations. What mock leaves simulated is marked in the
//! header's cost and the cost section's title ([`super::spend`]).

use super::item_outcomes::item_rows;
use super::run_graph::{NodeRef, Parent, RunGraph, SessionNode};
use super::units;
use crate::journal::entry::ParentRun;
use serde_json::Value;
use std::fmt::Write;

pub fn render_show(g: &RunGraph) -> String {
    let mut out = String::new();
    render_header(g, &mut out);
    render_items(g, &mut out);
    let _ = writeln!(out, "\nSessions and effects (each under the session whose result led to it)");
    for (i, site) in g.call_sites.iter().enumerate() {
        let _ = writeln!(out, "{}  {}", site.label, site.function);
        render_children(g, &Parent::CallSite(i), "", &mut out);
    }
    if !g.effects.is_empty() {
        let _ = writeln!(out, "\nEffects");
        for e in &g.effects {
            let _ = writeln!(out, "  {}", e.line());
            let _ = writeln!(out, "      {}", because(g, &e.parent));
        }
    }
    let errors = g.errors();
    if !errors.is_empty() || g.error.is_some() {
        let _ = writeln!(out, "\nErrors");
        if let Some(e) = &g.error {
            let _ = writeln!(out, "  run: {e}");
        }
        for (node, why) in errors {
            match node {
                NodeRef::Session(i) => {
                    let s = &g.sessions[i];
                    let _ = writeln!(out, "  {} {} {}: {}", s.id, s.workflow, s.state(), why);
                }
                NodeRef::Effect(i) => {
                    let _ = writeln!(out, "  {}: {}", g.effects[i].line(), why);
                }
            }
        }
    }
    if !g.sessions.is_empty() {
        let title = match g.spend().run_note(g.scenario) {
            Some(note) => format!("Cost ({note})"),
            None => "Cost".into(),
        };
        let _ = writeln!(out, "\n{title}");
        let groups = [("by workflow", g.cost_by_workflow()), ("by model", g.cost_by_model())];
        let width = groups.iter().flat_map(|(_, lines)| lines).map(|l| l.name.chars().count()).max().unwrap_or(0);
        for (title, lines) in groups {
            for (i, l) in lines.iter().enumerate() {
                let label = if i == 0 { title } else { "" };
                let _ = writeln!(
                    out,
                    "  {label:<11}  {:<width$}  {:>3} {:<8}  {:>9} tokens  {}",
                    l.name,
                    l.sessions,
                    if l.sessions == 1 { "session" } else { "sessions" },
                    units::tokens(l.tokens),
                    units::cost(l.cost_usd)
                );
            }
        }
    }
    for w in &g.warnings {
        let _ = writeln!(out, "\nwarning: {w}");
    }
    out
}

fn render_header(g: &RunGraph, out: &mut String) {
    let usage = g.usage();
    let waiting = g.waiting.as_ref().map(|w| format!(", {w}")).unwrap_or_default();
    let _ = writeln!(out, "{} · {}{waiting} · run {}", g.coordinator, g.status, g.run_id);
    let took = g.duration_ms().map(|ms| format!(" · took {}", units::duration(ms))).unwrap_or_default();
    let _ =
        writeln!(out, "  script {} · mode {} · started {}{took}", g.script, g.mode, units::timestamp(&g.started_at));
    if let Some(parent) = &g.parent {
        let _ = writeln!(out, "  redo of run {parent}");
    }
    for (id, link) in &g.redos {
        let from = ParentRun { run_id: id.clone(), ..link.clone() };
        let _ = writeln!(out, "  redone as run {from}");
    }
    let failed = g.failed_sessions();
    let failed = if failed > 0 { format!(" ({failed} not ok)") } else { String::new() };
    let _ = writeln!(
        out,
        "  {}{failed} · {} · {} tokens · {}",
        units::count(g.sessions.len(), "session"),
        units::count(g.effects.len(), "effect"),
        units::tokens(usage.input_tokens + usage.output_tokens),
        g.cost_text()
    );
    if let Some(Value::Object(result)) = &g.result {
        if !result.is_empty() {
            let parts: Vec<String> = result.iter().map(|(k, v)| format!("{k} {}", outcome_value(v))).collect();
            let _ = writeln!(out, "  outcome: {}", parts.join(" · "));
        }
    }
    if let Some(s) = g.longest_session() {
        let _ = writeln!(out, "  longest session: {} {} {}", s.id, s.workflow, units::duration(s.duration_ms()));
    }
}

/// `  PR #13  waiting: checks red  (s2 · 0 effects)`, one line per item in first-seen order.
fn render_items(g: &RunGraph, out: &mut String) {
    let rows = item_rows(g);
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nItems (outcome: reason; sessions, effects)");
    let width = rows.iter().map(|r| r.label.chars().count()).max().unwrap_or(0);
    for r in &rows {
        let reason = r.reason.as_deref().map(|why| format!(": {why}")).unwrap_or_default();
        let mut did: Vec<String> = Vec::new();
        if !r.sessions.is_empty() {
            did.push(r.sessions.join(" "));
        }
        if !r.effects.is_empty() {
            did.push(units::count(r.effects.len(), "effect"));
        }
        let did = if did.is_empty() { String::new() } else { format!("  ({})", did.join("; ")) };
        let _ = writeln!(out, "  {:<width$}  {}{reason}{did}", r.label, r.outcome);
    }
}

fn render_children(g: &RunGraph, parent: &Parent, prefix: &str, out: &mut String) {
    let children = g.children(parent);
    for (i, child) in children.iter().enumerate() {
        let last = i + 1 == children.len();
        let (branch, cont) = if last { ("└── ", "    ") } else { ("├── ", "│   ") };
        match *child {
            NodeRef::Session(si) => {
                let s = &g.sessions[si];
                let _ = writeln!(out, "{prefix}{branch}{}", session_line(s));
                let has_children = !g.children(&Parent::Session(s.id.clone())).is_empty();
                let bar = if has_children { "│ " } else { "  " };
                let goal = match s.summary() {
                    Some(summary) => format!("{} → {summary:?}", s.goal),
                    None => s.goal.clone(),
                };
                let _ = writeln!(out, "{prefix}{cont}{bar}  {goal}");
                if let Some(err) = s.error() {
                    let _ = writeln!(out, "{prefix}{cont}{bar}  error: {err}");
                }
                render_children(g, &Parent::Session(s.id.clone()), &format!("{prefix}{cont}"), out);
            }
            NodeRef::Effect(ei) => {
                let _ = writeln!(out, "{prefix}{branch}▸ {}", g.effects[ei].line());
            }
        }
    }
}

/// `s1 mr-review · ok · verdict: clean · 0ms · 19,100 tokens · $0.0680`
pub fn session_line(s: &SessionNode) -> String {
    // The call index too: `coord resume --from` takes either.
    let mut parts = vec![format!("{} {}", s.id, s.workflow), format!("call {}", s.call), s.state().to_owned()];
    if let Some(v) = s.verdict_text() {
        parts.push(v);
    }
    if s.result.is_some() {
        parts.push(units::duration(s.duration_ms()));
        parts.push(format!("{} tokens", units::tokens(s.tokens())));
        parts.push(units::cost(s.cost_usd()));
    }
    parts.join(" · ")
}

/// Why an effect happened: `after s1 mr-review (verdict: clean)` or `from script.rhai:126`.
pub fn because(g: &RunGraph, parent: &Parent) -> String {
    match parent {
        Parent::Session(id) => match g.session(id) {
            Some(s) => match s.verdict_text() {
                Some(v) => format!("after {} {} ({v}, {})", s.id, s.workflow, s.state()),
                None => format!("after {} {} ({})", s.id, s.workflow, s.state()),
            },
            None => format!("after {id}"),
        },
        Parent::CallSite(_) => format!("from {}", g.parent_label(parent)),
    }
}

/// `[12, 14]` as `#12 #14`, an empty list as `—`.
pub fn outcome_value(v: &Value) -> String {
    match v {
        Value::Array(items) if items.is_empty() => "—".into(),
        Value::Array(items) if items.iter().all(Value::is_u64) => {
            items.iter().map(|i| format!("#{i}")).collect::<Vec<_>>().join(" ")
        }
        Value::Array(items) => items.iter().map(outcome_value).collect::<Vec<_>>().join(", "),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
