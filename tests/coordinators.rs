//! The shipped coordinators through the binary: every demo runs, and a script that throws ends
//! its run `failed` (exit 1) with its message. What each scenario routes to, the decisions of its
//! result and the effects it performs, is pinned in one place: the scenario's `[expect]` block and
//! its snapshot in `snapshots/`, both checked by `coord test` and tests/routing.rs.

use crate::support;

use serde_json::json;
use support::TestProject;

const COORDINATORS: &[&str] = &[
    "groom-prs",
    "implement-feature",
    "groom-backlog",
    "fix-bug",
    "triage-incident",
    "spec-to-merge",
    "pm-loop",
    "gated-jobs",
];

#[test]
fn every_shipped_coordinator_runs_its_demo() {
    let p = TestProject::with_repo_files();
    for name in COORDINATORS {
        let out = p.coord().args(["run", &format!("coordinators/{name}.rhai"), "--demo"]).run();
        assert_eq!(out.code, 0, "{name}:\n{}\n{}", out.stdout, out.stderr);
    }
    let shipped: Vec<String> = std::fs::read_dir(support::repo_root().join("coordinators"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().strip_suffix(".rhai").map(str::to_owned))
        .collect();
    for name in &shipped {
        assert!(COORDINATORS.contains(&name.as_str()), "{name} is shipped but not run here");
    }
}

/// Runs a scenario whose script throws: the run ends `failed` (exit 1) with the thrown message,
/// before any session or effect.
fn failed_case(p: &TestProject, coordinator: &str, scenario: &str, thrown: &str) {
    let out = p
        .coord()
        .args([
            "run",
            &format!("coordinators/{coordinator}.rhai"),
            "--scenario",
            &format!("coordinators/{coordinator}/scenarios/{scenario}.toml"),
            "--json",
        ])
        .run();
    assert_eq!(out.code, 1, "{coordinator}/{scenario}:\n{}\n{}", out.stdout, out.stderr);
    let v = out.json();
    assert_eq!(v["status"], "failed", "{coordinator}/{scenario}: status");
    assert_eq!(v["sessions"], 0, "{coordinator}/{scenario}: sessions");
    assert_eq!(v["effects"], json!([]), "{coordinator}/{scenario}: effects");
    assert!(out.stderr.contains(thrown), "{coordinator}/{scenario}: expected `{thrown}` in\n{}", out.stderr);
}

#[test]
fn scripts_that_throw_fail_the_run_with_their_message() {
    let p = TestProject::with_repo_files();
    failed_case(&p, "implement-feature", "no-task", "implement-feature needs a task");
    failed_case(&p, "fix-bug", "issue-closed", "fix-bug: no open issue #67");
    failed_case(&p, "triage-incident", "no-alert", "triage-incident needs an alert");
    failed_case(&p, "pm-loop", "no-assignment", "pm-loop needs an assignment");
    failed_case(&p, "pm-loop", "unknown-first-job", "the first job must be one of");
}
