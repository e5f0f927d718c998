//! `coord test`'s report: one line per scenario (`ok` or `FAILED` with why: the routing diff,
//! a missing snapshot, unmet expectations, an error), routing coverage, and the count; or the
//! same as one JSON object. It renders rows the CLI hands it (the suite that produced them sits
//! above the views) and never runs or compares anything itself.

use crate::script::coverage::CoverageReport;
use serde_json::{json, Value};
use std::path::Path;

/// One scenario's result, as the report shows it.
pub struct ScenarioRow<'a> {
    pub coordinator: &'a str,
    pub scenario: &'a str,
    pub file: &'a Path,
    pub passed: bool,
    pub snapshot: SnapshotOutcome<'a>,
    pub expectation_failures: &'a [String],
    /// The scenario or script is at fault: a rendered diagnostic.
    pub error: Option<&'a str>,
    pub sessions: usize,
}

/// How the scenario's routing trace compared with its snapshot.
pub enum SnapshotOutcome<'a> {
    /// The scenario did not run far enough to compare.
    NotCompared,
    Matched,
    Accepted,
    /// No snapshot yet; `pending` is the proposed one, when it was written.
    Missing {
        pending: Option<&'a Path>,
    },
    Changed {
        diff: &'a str,
        pending: Option<&'a Path>,
    },
}

/// Each coordinator's routing coverage, by name.
pub type CoverageRows = [(String, CoverageReport)];

/// The `--json` summary; `coverage` only with `--coverage`.
pub fn report_json(rows: &[ScenarioRow<'_>], coverage: Option<&CoverageRows>) -> Value {
    let passed = rows.iter().filter(|r| r.passed).count();
    let scenarios: Vec<Value> = rows.iter().map(scenario_json).collect();
    let mut v = json!({ "passed": passed, "failed": rows.len() - passed, "scenarios": scenarios });
    if let Some(coverage) = coverage {
        v["coverage"] = coverage.iter().map(|(name, r)| coverage_json(name, r)).collect();
    }
    v
}

fn scenario_json(r: &ScenarioRow<'_>) -> Value {
    let (state, diff, pending) = match &r.snapshot {
        SnapshotOutcome::NotCompared => ("error", None, None),
        SnapshotOutcome::Matched => ("matched", None, None),
        SnapshotOutcome::Accepted => ("accepted", None, None),
        SnapshotOutcome::Missing { pending } => ("missing", None, *pending),
        SnapshotOutcome::Changed { diff, pending } => ("changed", Some(*diff), *pending),
    };
    json!({
        "coordinator": r.coordinator,
        "scenario": r.scenario,
        "file": r.file.display().to_string(),
        "passed": r.passed,
        "snapshot": state,
        "diff": diff,
        "pending": pending.map(|p| p.display().to_string()),
        "expectation_failures": r.expectation_failures,
        "error": r.error,
        "sessions": r.sessions,
    })
}

fn coverage_json(name: &str, r: &CoverageReport) -> Value {
    json!({
        "coordinator": name,
        "lines": r.total_lines,
        "missed_lines": r.missed_lines,
        "branches": r.total_branches,
        "missed_branches": r.missed_branches.iter().map(|(l, arm)| json!({"line": l, "arm": arm})).collect::<Vec<_>>(),
    })
}

/// The report for a person; `coverage` only with `--coverage`.
pub fn report_text(rows: &[ScenarioRow<'_>], coverage: Option<&CoverageRows>) -> String {
    let mut out = String::new();
    for r in rows {
        scenario_text(&mut out, r);
    }
    if let Some(coverage) = coverage {
        out.push_str("\nrouting coverage:\n");
        for (name, r) in coverage {
            coverage_text(&mut out, name, r);
        }
    }
    let passed = rows.iter().filter(|r| r.passed).count();
    out.push_str(&format!("\n{passed} passed, {} failed\n", rows.len() - passed));
    out
}

fn scenario_text(out: &mut String, r: &ScenarioRow<'_>) {
    let label = format!("{} / {}", r.coordinator, r.scenario);
    if r.passed {
        let note = if matches!(r.snapshot, SnapshotOutcome::Accepted) { " (snapshot accepted)" } else { "" };
        out.push_str(&format!("ok      {label}{note}\n"));
        return;
    }
    out.push_str(&format!("FAILED  {label}\n"));
    if let Some(e) = r.error {
        out.push_str(&format!("{}\n", indent(e)));
    }
    let pending = match &r.snapshot {
        SnapshotOutcome::Changed { diff, pending } => {
            out.push_str(&format!("  routing changed for scenario `{}` ({}):\n", r.scenario, r.file.display()));
            out.push_str(&format!("{}\n", indent(diff)));
            *pending
        }
        SnapshotOutcome::Missing { pending } => {
            out.push_str(&format!("  no snapshot yet for scenario `{}`\n", r.scenario));
            *pending
        }
        _ => None,
    };
    if let Some(p) = pending {
        out.push_str(&format!("  proposed snapshot written to {}; `coord test --accept` accepts it\n", p.display()));
    }
    for f in r.expectation_failures {
        out.push_str(&format!("  {f}\n"));
    }
}

fn coverage_text(out: &mut String, name: &str, r: &CoverageReport) {
    out.push_str(&format!(
        "  {name}: lines {}/{}, branches {}/{}\n",
        r.total_lines - r.missed_lines.len(),
        r.total_lines,
        r.total_branches - r.missed_branches.len(),
        r.total_branches
    ));
    for (line, arm) in &r.missed_branches {
        out.push_str(&format!("    {name}.rhai:{line}: `{arm}` branch never taken by any scenario\n"));
    }
    if !r.missed_lines.is_empty() {
        let lines: Vec<String> = r.missed_lines.iter().map(usize::to_string).collect();
        out.push_str(&format!("    lines never run: {}\n", lines.join(", ")));
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}
