//! The outcome of `coord run` for people (a short summary of decisions) and for programs
//! (`--json`: one object with run id, status, sessions, effects and usage).
//!
//! Mock leaves' usage is simulated (no money spent): the summary says so after the cost, and
//! `--json` adds to the run's `usage` `"simulated_cost_usd"` (the part of `cost_usd` that mock
//! leaves simulated) and `"simulated": true` when that is all of it ([`super::spend`]). A run
//! with real leaves only has neither key.

use super::effect_view::{effect_json, effect_line};
use super::spend::{self, Label, Spend};
use super::units;
use crate::leaf::session::{SessionResult, Usage};
use crate::run::RunOutcome;
use serde::Serialize;
use serde_json::Value;
use std::fmt::Write;

/// The `--json` object. Built as borrowed views and serialized straight to the output, because
/// building every session as a JSON value first is a measurable share of a large run.
#[derive(Serialize)]
pub struct OutcomeView<'a> {
    run_id: &'a str,
    run_dir: String,
    coordinator: &'a str,
    status: &'static str,
    sessions: usize,
    effects: Vec<Value>,
    usage: UsageView,
    leaves: Vec<LeafView<'a>>,
    result: &'a Value,
    /// A parked run's wait: until when, for which signal.
    #[serde(skip_serializing_if = "Option::is_none")]
    parked: Option<ParkedView<'a>>,
}

#[derive(Serialize)]
struct ParkedView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    until: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal: Option<&'a str>,
}

#[derive(Serialize)]
struct UsageView {
    input_tokens: u64,
    output_tokens: u64,
    cache_read_tokens: u64,
    cache_write_tokens: u64,
    cost_usd: f64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    cost_estimated: bool,
    /// Only on the run's total: every dollar of `cost_usd` was simulated by mock leaves.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    simulated: bool,
    /// Only on the run's total: the part of `cost_usd` mock leaves simulated, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    simulated_cost_usd: Option<f64>,
}

/// One leaf's line in `--json`: who ran it, how it ended, what it cost. No durations: they
/// vary from run to run.
#[derive(Serialize)]
struct LeafView<'a> {
    id: &'a str,
    workflow: &'a str,
    harness: &'a Option<String>,
    model: &'a Option<String>,
    status: &'static str,
    attempts: u32,
    usage: UsageView,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: &'a Option<String>,
}

impl<'a> OutcomeView<'a> {
    pub fn of(o: &'a RunOutcome) -> Self {
        OutcomeView {
            run_id: &o.run_id,
            run_dir: o.run_dir.display().to_string(),
            coordinator: &o.coordinator,
            status: o.status.as_str(),
            sessions: o.sessions,
            effects: o.effects.iter().map(effect_json).collect(),
            usage: UsageView::of_run(o),
            leaves: o.leaves.iter().map(|l| LeafView::of(&l.result)).collect(),
            result: &o.result,
            parked: o
                .parked
                .as_ref()
                .map(|w| ParkedView { until: w.until_ms.and_then(rfc3339_ms), signal: w.signal.as_deref() }),
        }
    }
}

fn rfc3339_ms(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// `Parked: waiting for signal `x` until T; ...`: what a parked run waits for, and who wakes it.
fn parked_text(o: &RunOutcome) -> Option<String> {
    let w = o.parked.as_ref()?;
    let what = match (&w.signal, w.until_ms.and_then(rfc3339_ms)) {
        (Some(signal), Some(until)) => format!("waiting for signal `{signal}` until {until}"),
        (Some(signal), None) => format!("waiting for signal `{signal}`"),
        (None, Some(until)) => format!("waiting until {until}"),
        (None, None) => "waiting".to_owned(),
    };
    let id = &o.run_id;
    Some(format!("Parked: {what}; `coord daemon` resumes it then, or `coord resume {id}` goes on now"))
}

impl UsageView {
    fn of(u: &Usage) -> Self {
        UsageView {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cache_read_tokens: u.cache_read_tokens,
            cache_write_tokens: u.cache_write_tokens,
            cost_usd: round_micro(u.cost_usd),
            cost_estimated: u.cost_estimated,
            simulated: false,
            simulated_cost_usd: None,
        }
    }

    /// The run's total, with what of it was simulated.
    fn of_run(o: &RunOutcome) -> Self {
        let (spent, scenario) = outcome_spend(o);
        let label = spent.label(scenario);
        UsageView {
            simulated: label == Label::Simulated,
            simulated_cost_usd: (label != Label::Real).then(|| round_micro(spent.simulated_usd)),
            ..UsageView::of(&o.usage)
        }
    }
}

impl<'a> LeafView<'a> {
    fn of(r: &'a SessionResult) -> Self {
        LeafView {
            id: &r.id,
            workflow: &r.workflow,
            harness: &r.harness,
            model: &r.model,
            status: r.status.as_str(),
            attempts: r.attempts,
            usage: UsageView::of(&r.usage),
            error: &r.error,
        }
    }
}

/// The `--json` object as a value (for callers that add to it).
pub fn outcome_json(o: &RunOutcome) -> Value {
    serde_json::to_value(OutcomeView::of(o)).expect("outcome views serialize")
}

/// Prints the `--json` object on one line of stdout, masked (`crate::redaction`).
pub fn print_outcome_json(o: &RunOutcome) {
    let Ok(mut json) = serde_json::to_vec(&OutcomeView::of(o)) else { return };
    json.push(b'\n');
    let mut out = std::io::stdout().lock();
    let _ = std::io::Write::write_all(&mut out, &crate::redaction::process().mask_json(&json));
    let _ = std::io::Write::flush(&mut out);
}

/// Dollars to the micro-dollar: cheap leaves cost fractions of a cent, and sums of floats
/// should not print their noise.
fn round_micro(x: f64) -> f64 {
    (x * 1_000_000.0).round() / 1_000_000.0
}

/// A finished run's spend, and whether it ran in a scenario world: from the journal header in
/// its run directory, else (a journal kept in memory) whether any leaf ran on the mock harness.
fn outcome_spend(o: &RunOutcome) -> (Spend, bool) {
    let scenario = spend::run_dir_scenario(&o.run_dir)
        .unwrap_or_else(|| o.leaves.iter().any(|l| l.result.harness.as_deref() == Some(spend::MOCK_HARNESS)));
    (Spend::of_outcome(o.usage.cost_usd, o.leaves.iter().map(|l| &l.result), scenario), scenario)
}

pub fn outcome_text(o: &RunOutcome) -> String {
    let mut s = String::new();
    let (spent, scenario) = outcome_spend(o);
    let cost = match spent.label(scenario) {
        Label::Real => units::cost(o.usage.cost_usd),
        Label::Simulated => format!("{} ({})", units::cost(o.usage.cost_usd), spend::SIMULATED_NOTE),
        Label::Mixed => format!(
            "{} (mock leaves simulated {} of it, no money spent)",
            units::cost(o.usage.cost_usd),
            units::cost(spent.simulated_usd)
        ),
    };
    let _ = writeln!(
        s,
        "{}: {} — {}, {}, {} tokens, {}",
        o.coordinator,
        o.status,
        units::count(o.sessions, "session"),
        units::count(o.effects.len(), "effect"),
        o.usage.input_tokens + o.usage.output_tokens,
        cost
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
    if let Some(parked) = parked_text(o) {
        let _ = writeln!(s, "\n{parked}");
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
