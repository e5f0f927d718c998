//! `coord test`: runs every scenario offline, compares routing traces with their snapshots,
//! checks scenario expectations, and reports routing coverage.

use super::{exit_code, TestArgs};
use crate::run;
use crate::script::coverage::{self, Hits, SharedHits};
use crate::testing::suite::{self, CaseResult, SnapshotState, SuiteOptions};
use indexmap::IndexMap;
use serde_json::json;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub fn test(args: &TestArgs, runtime: &tokio::runtime::Handle) -> u8 {
    let cases = match suite::discover(&args.paths) {
        Ok(c) if c.is_empty() => {
            eprintln!("error: no scenarios found (convention: coordinators/<name>/scenarios/*.toml)");
            return exit_code::USAGE;
        }
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return exit_code::USAGE;
        }
    };
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    let mut hits: IndexMap<PathBuf, SharedHits> = IndexMap::new();
    let mut results: Vec<CaseResult> = Vec::with_capacity(cases.len());
    for case in &cases {
        let snapshots_dir = run::project::Project::discover(&case.script).root.join("snapshots");
        let opts = SuiteOptions { accept: args.accept, ci, snapshots_dir };
        let recorder = args
            .coverage
            .then(|| hits.entry(case.script.clone()).or_insert_with(|| Arc::new(Mutex::new(Hits::default()))).clone());
        results.push(suite::run_and_compare(case, runtime, &opts, recorder));
    }

    let passed = results.iter().filter(|r| r.passed()).count();
    let failed = results.len() - passed;
    let coverage_rows = if args.coverage { coverage_rows(&hits) } else { Vec::new() };
    let uncovered = coverage_rows.iter().any(|r| !r.1.missed_branches.is_empty());

    if args.json {
        let scenarios: Vec<_> = results
            .iter()
            .map(|r| {
                let (state, diff, pending) = match &r.snapshot {
                    None => ("error", None, None),
                    Some(SnapshotState::Matched) => ("matched", None, None),
                    Some(SnapshotState::Accepted) => ("accepted", None, None),
                    Some(SnapshotState::Missing { pending }) => ("missing", None, pending.clone()),
                    Some(SnapshotState::Changed { diff, pending }) => ("changed", Some(diff.clone()), pending.clone()),
                };
                json!({
                    "coordinator": r.case.coordinator,
                    "scenario": r.case.name,
                    "file": r.case.scenario.display().to_string(),
                    "passed": r.passed(),
                    "snapshot": state,
                    "diff": diff,
                    "pending": pending.map(|p| p.display().to_string()),
                    "expectation_failures": r.expectation_failures,
                    "error": r.error,
                    "sessions": r.sessions,
                })
            })
            .collect();
        let mut v = json!({ "passed": passed, "failed": failed, "scenarios": scenarios });
        if args.coverage {
            v["coverage"] = coverage_rows
                .iter()
                .map(|(name, r)| {
                    json!({
                        "coordinator": name,
                        "lines": r.total_lines,
                        "missed_lines": r.missed_lines,
                        "branches": r.total_branches,
                        "missed_branches": r.missed_branches.iter().map(|(l, arm)| json!({"line": l, "arm": arm})).collect::<Vec<_>>(),
                    })
                })
                .collect();
        }
        println!("{v}");
    } else {
        for r in &results {
            let label = format!("{} / {}", r.case.coordinator, r.case.name);
            if r.passed() {
                let note =
                    if matches!(r.snapshot, Some(SnapshotState::Accepted)) { " (snapshot accepted)" } else { "" };
                println!("ok      {label}{note}");
                continue;
            }
            println!("FAILED  {label}");
            if let Some(e) = &r.error {
                println!("{}", indent(e));
            }
            match &r.snapshot {
                Some(SnapshotState::Changed { diff, pending }) => {
                    println!("  routing changed for scenario `{}` ({}):", r.case.name, r.case.scenario.display());
                    println!("{}", indent(diff));
                    if let Some(p) = pending {
                        println!("  proposed snapshot written to {}; `coord test --accept` accepts it", p.display());
                    }
                }
                Some(SnapshotState::Missing { pending }) => {
                    println!("  no snapshot yet for scenario `{}`", r.case.name);
                    if let Some(p) = pending {
                        println!("  proposed snapshot written to {}; `coord test --accept` accepts it", p.display());
                    }
                }
                _ => {}
            }
            for f in &r.expectation_failures {
                println!("  {f}");
            }
        }
        if args.coverage {
            println!("\nrouting coverage:");
            for (name, r) in &coverage_rows {
                println!(
                    "  {name}: lines {}/{}, branches {}/{}",
                    r.total_lines - r.missed_lines.len(),
                    r.total_lines,
                    r.total_branches - r.missed_branches.len(),
                    r.total_branches
                );
                for (line, arm) in &r.missed_branches {
                    println!("    {name}.rhai:{line}: `{arm}` branch never taken by any scenario");
                }
                if !r.missed_lines.is_empty() {
                    let lines: Vec<String> = r.missed_lines.iter().map(usize::to_string).collect();
                    println!("    lines never run: {}", lines.join(", "));
                }
            }
        }
        println!("\n{passed} passed, {failed} failed");
    }
    if failed > 0 {
        exit_code::RUN_FAILED
    } else if args.coverage && args.fail_uncovered && uncovered {
        exit_code::RUN_FAILED
    } else {
        exit_code::SUCCESS
    }
}

fn coverage_rows(hits: &IndexMap<PathBuf, SharedHits>) -> Vec<(String, coverage::CoverageReport)> {
    hits.iter()
        .filter_map(|(script, h)| {
            let ast = run::compile_for_analysis(script).ok()?;
            let plan = coverage::plan(&ast);
            let h = h.lock().expect("coverage hits poisoned").clone();
            Some((run::coordinator_name(script), coverage::report(&plan, &h)))
        })
        .collect()
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}
