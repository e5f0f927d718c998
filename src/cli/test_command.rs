//! `coord test`: runs every scenario offline, compares routing traces with their snapshots,
//! checks scenario expectations, and reports routing coverage (`views::test_report` renders).

use super::cli_error::CliError;
use super::{exit_code, TestArgs};
use crate::run;
use crate::script::coverage::{self, CoverageReport, Hits, SharedHits};
use crate::testing::snapshot;
use crate::testing::snapshot_review::{self, PendingSnapshot, ReviewError, ReviewSummary};
use crate::testing::suite::{self, CaseResult, ScenarioCase, SnapshotState, SuiteOptions};
use crate::views::console::{stdout, stdoutln};
use crate::views::test_report::{self, ScenarioRow, SnapshotOutcome};
use indexmap::IndexMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub fn test(args: &TestArgs, runtime: &tokio::runtime::Handle) -> Result<(), CliError> {
    let cases = discover(args)?;
    let mut hits: IndexMap<PathBuf, SharedHits> = IndexMap::new();
    let results = run_cases(&cases, args, runtime, &mut hits);
    let coverage = args.coverage.then(|| coverage_rows(&hits));
    let rows: Vec<ScenarioRow<'_>> = results.iter().map(row).collect();
    if args.output.json {
        stdoutln!("{}", test_report::report_json(&rows, coverage.as_deref()));
    } else {
        stdout!("{}", test_report::report_text(&rows, coverage.as_deref()));
    }
    let uncovered = coverage.iter().flatten().any(|(_, r)| !r.missed_branches.is_empty());
    let reviewed = if args.review { review(&cases, args)? } else { Default::default() };
    if results.iter().any(|r| !r.passed() && !passes_after_review(r, &reviewed)) {
        Err(CliError::Reported { what: "scenarios failed", code: exit_code::RUN_FAILED })
    } else if args.fail_uncovered && uncovered {
        Err(CliError::Reported { what: "routing branches never taken", code: exit_code::RUN_FAILED })
    } else {
        Ok(())
    }
}

/// The scenarios the paths name (the project's coordinators when none are given).
fn discover(args: &TestArgs) -> Result<Vec<ScenarioCase>, CliError> {
    match suite::discover(&args.paths) {
        Ok(c) if c.is_empty() => {
            Err(CliError::Usage("no scenarios found (convention: coordinators/<name>/scenarios/*.toml)".into()))
        }
        Ok(c) => Ok(c),
        Err(e) => Err(CliError::Usage(e.to_string())),
    }
}

/// Runs each case and compares it with its snapshot, recording coverage into `hits`.
fn run_cases(
    cases: &[ScenarioCase],
    args: &TestArgs,
    runtime: &tokio::runtime::Handle,
    hits: &mut IndexMap<PathBuf, SharedHits>,
) -> Vec<CaseResult> {
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    cases
        .iter()
        .map(|case| {
            let snapshots_dir = run::project::Project::discover(&case.script).root.join("snapshots");
            // A review decides pending snapshots: it needs them written, in CI as well.
            let opts = SuiteOptions { accept: args.accept, ci: ci && !args.review, snapshots_dir };
            let recorder = args.coverage.then(|| {
                hits.entry(case.script.clone()).or_insert_with(|| Arc::new(Mutex::new(Hits::default()))).clone()
            });
            suite::run_and_compare(case, runtime, &opts, recorder)
        })
        .collect()
}

/// `--review`: each pending snapshot of the cases run, decided by `--accept`/`--reject` or
/// answered on stdin. Running out of answers (no terminal, nothing piped) is a usage error:
/// the review cannot go on, and it does not wait.
fn review(cases: &[ScenarioCase], args: &TestArgs) -> Result<ReviewSummary, CliError> {
    let mut pending: Vec<PendingSnapshot> = cases
        .iter()
        .filter_map(|case| {
            let snapshots_dir = run::project::Project::discover(&case.script).root.join("snapshots");
            PendingSnapshot::of(&snapshot::snapshot_path(&snapshots_dir, &case.coordinator, &case.name))
        })
        .collect();
    pending.sort_by(|a, b| a.snap.cmp(&b.snap));
    pending.dedup();
    if pending.is_empty() {
        stdoutln!("no pending snapshots to review");
        return Ok(ReviewSummary::default());
    }
    let decided = if args.reject {
        snapshot_review::decide_all(&pending, false)
    } else {
        let stdin = std::io::stdin();
        snapshot_review::review(&pending, &mut stdin.lock(), &mut std::io::stdout())
    };
    match decided {
        Ok(summary) => {
            stdoutln!("{}", summary.line());
            Ok(summary)
        }
        Err(e @ ReviewError::NoAnswer { .. }) => Err(CliError::Usage(e.to_string())),
        Err(e @ ReviewError::Io { .. }) => Err(CliError::Failed(e.to_string())),
    }
}

/// A case that failed only on its snapshot, whose proposal the review accepted.
fn passes_after_review(r: &CaseResult, reviewed: &ReviewSummary) -> bool {
    let snapshot_only = r.error.is_none() && r.expectation_failures.is_empty();
    let snap = r.snapshot.as_ref().and_then(|s| match s {
        SnapshotState::Missing { pending: Some(p) } | SnapshotState::Changed { pending: Some(p), .. } => Some(p),
        _ => None,
    });
    snapshot_only && snap.is_some_and(|p| reviewed.accepted.iter().any(|a| snapshot::pending_path(a) == *p))
}

/// A case's result as the report shows it.
fn row(r: &CaseResult) -> ScenarioRow<'_> {
    let snapshot = match &r.snapshot {
        None => SnapshotOutcome::NotCompared,
        Some(SnapshotState::Matched) => SnapshotOutcome::Matched,
        Some(SnapshotState::Accepted) => SnapshotOutcome::Accepted,
        Some(SnapshotState::Missing { pending }) => SnapshotOutcome::Missing { pending: pending.as_deref() },
        Some(SnapshotState::Changed { diff, pending }) => {
            SnapshotOutcome::Changed { diff, pending: pending.as_deref() }
        }
    };
    ScenarioRow {
        coordinator: &r.case.coordinator,
        scenario: &r.case.name,
        file: &r.case.scenario,
        passed: r.passed(),
        snapshot,
        expectation_failures: &r.expectation_failures,
        error: r.error.as_deref(),
        sessions: r.sessions,
    }
}

fn coverage_rows(hits: &IndexMap<PathBuf, SharedHits>) -> Vec<(String, CoverageReport)> {
    hits.iter()
        .filter_map(|(script, h)| {
            let ast = run::compile_for_analysis(script).ok()?;
            let plan = coverage::plan(&ast);
            let h = h.lock().expect("coverage hits poisoned").clone();
            Some((run::coordinator_name(script), coverage::report(&plan, &h)))
        })
        .collect()
}
