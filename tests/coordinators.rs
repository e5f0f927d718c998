//! The shipped coordinators through the binary: every demo runs, and every scenario routes the
//! way its header says. One case per scenario: the decisions of its result, and the effects
//! the run performed (kind, target and status), in order.

use crate::support;

use serde_json::{json, Value};
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

/// Runs one scenario; returns the script's result and the effects as `kind target status`.
fn run(p: &TestProject, coordinator: &str, scenario: &str) -> (Value, Vec<String>) {
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
    assert_eq!(out.code, 0, "{coordinator}/{scenario}:\n{}\n{}", out.stdout, out.stderr);
    let v = out.json();
    let effects = v["effects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let target =
                ["pr", "branch", "number", "channel"].iter().find_map(|k| e.get(*k)).cloned().unwrap_or(Value::Null);
            let target = target.as_str().map(str::to_owned).unwrap_or_else(|| target.to_string());
            let reason = e.get("reason").and_then(Value::as_str).map(|r| format!(" ({r})")).unwrap_or_default();
            format!("{} {} {}{reason}", e["kind"].as_str().unwrap(), target, e["status"].as_str().unwrap_or("?"))
        })
        .collect();
    (v["result"].clone(), effects)
}

/// Checks each `(field, expected)` of the result, and the effects when given.
fn case(p: &TestProject, coordinator: &str, scenario: &str, fields: Value, effects: Option<&[&str]>) {
    let (result, got) = run(p, coordinator, scenario);
    for (field, want) in fields.as_object().unwrap() {
        assert_eq!(&result[field], want, "{coordinator}/{scenario}: result.{field}\nresult: {result:#}");
    }
    if let Some(want) = effects {
        assert_eq!(got, want, "{coordinator}/{scenario}: effects");
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
fn groom_prs_escalates_what_it_cannot_merge() {
    let p = TestProject::with_repo_files();
    case(
        &p,
        "groom-prs",
        "demo",
        json!({ "merged": [12, 14], "fixed": [14], "escalated": [15, 17, 16], "waiting": [18, 13], "drafts": [18] }),
        None,
    );
    case(
        &p,
        "groom-prs",
        "failures",
        json!({ "merged": [], "fixed": [], "escalated": [24, 22, 23], "waiting": [21], "drafts": [] }),
        Some(&[
            "merge 21 refused (conflict)",
            "comment 24 done",
            "label 24 done",
            "notify slack:#oncall sent",
            "comment 22 done",
            "label 22 done",
            "notify slack:#oncall sent",
            "comment 23 done",
            "label 23 done",
            "notify slack:#oncall sent",
            "notify slack:#eng sent",
        ]),
    );
}

#[test]
fn implement_feature_routes_on_its_classification() {
    let p = TestProject::with_repo_files();
    let c = "implement-feature";
    case(
        &p,
        c,
        "demo",
        json!({ "status": "merged", "phases": ["discovery", "ux-design", "feature-coding", "mr-review (1 fix passes)"], "audit": "skipped" }),
        Some(&["merge 301 merged", "notify slack:#eng sent"]),
    );
    case(
        &p,
        c,
        "small-clean",
        json!({ "status": "merged", "phases": ["feature-coding", "mr-review (0 fix passes)"] }),
        None,
    );
    case(
        &p,
        c,
        "architecture-revised",
        json!({ "status": "merged", "design_rounds": 2, "audit": "go", "phases": ["discovery", "architecture-design", "architecture-review x2", "architecture-design", "architecture-review x2", "feature-coding", "mr-review (0 fix passes)", "production-risk-audit"] }),
        None,
    );
    case(
        &p,
        c,
        "audit-no-go",
        json!({ "status": "escalated", "audit": "no-go" }),
        Some(&["comment 304 done", "label 304 done", "notify slack:#eng sent"]),
    );
    case(&p, c, "audit-failed", json!({ "status": "escalated", "audit": "failed" }), None);
    case(&p, c, "review-blocking", json!({ "status": "escalated", "review": "blocking" }), None);
    case(
        &p,
        c,
        "fix-exhausted",
        json!({ "status": "escalated", "review": "exhausted", "reason": "still has 1 minor finding after 3 fix passes" }),
        None,
    );
    case(
        &p,
        c,
        "fallback-design-stuck",
        json!({ "status": "escalated", "classification": "fallback", "discovery": "failed (timeout): going on without it", "reason": "the design is still rejected after 2 rounds" }),
        Some(&["notify slack:#eng sent"]),
    );
    case(&p, c, "design-failed", json!({ "status": "escalated", "phases": ["architecture-design"] }), None);
    case(&p, c, "ux-failed", json!({ "status": "escalated", "phases": ["discovery", "ux-design"] }), None);
    case(&p, c, "coding-failed", json!({ "status": "escalated", "pr": null }), None);
    case(&p, c, "merge-refused", json!({ "status": "waiting", "reason": "merge refused: not_green" }), None);
    case(
        &p,
        c,
        "reviewer-timeout",
        json!({ "status": "merged", "design_rounds": 2, "audit": "skipped", "phases": ["discovery", "architecture-design", "architecture-review x2", "architecture-design", "architecture-review x2", "feature-coding", "mr-review (0 fix passes)"] }),
        Some(&["merge 308 merged", "notify slack:#eng sent"]),
    );
    case(
        &p,
        c,
        "coding-timeout",
        json!({ "status": "escalated", "pr": null, "review": null, "reason": "coding did not produce a PR: timeout: timed out after 90m" }),
        Some(&["notify slack:#eng sent"]),
    );
    failed_case(&p, c, "no-task", "implement-feature needs a task");
}

#[test]
fn groom_backlog_grooms_every_kind_of_issue() {
    let p = TestProject::with_repo_files();
    case(
        &p,
        "groom-backlog",
        "demo",
        json!({ "stale": [44], "labelled": [41, 42, 44, 46], "needs_triage": [45], "duplicates": [46], "investigated": [41], "investigation_failed": [], "duplicate_check": "done" }),
        Some(&[
            "label 41 done",
            "label 42 done",
            "comment 44 done",
            "label 44 done",
            "label 44 done",
            "label 45 done",
            "label 46 done",
            "comment 46 done",
            "label 46 done",
            "comment 41 done",
            "notify slack:#backlog sent",
        ]),
    );
    case(
        &p,
        "groom-backlog",
        "leaves-failing",
        json!({ "stale": [], "duplicate_check": "did not finish (timeout)", "investigated": [], "investigation_failed": [51] }),
        None,
    );
}

#[test]
fn fix_bug_fixes_only_what_it_understands() {
    let p = TestProject::with_repo_files();
    let c = "fix-bug";
    case(
        &p,
        c,
        "demo",
        json!({ "status": "fixed", "pr": 202, "attempts": [
            { "attempt": 1, "pr": 201, "result": "turned down", "why": ["test_missing_cart_total expects None"] },
            { "attempt": 2, "pr": 202, "result": "merged" },
        ] }),
        Some(&["merge 202 merged", "close 41 done", "notify slack:#eng-leads sent"]),
    );
    case(
        &p,
        c,
        "critical",
        json!({ "status": "escalated", "paged": true, "attempts": [] }),
        Some(&["notify pagerduty:oncall sent", "comment 61 done", "label 61 done", "notify slack:#eng-leads sent"]),
    );
    case(
        &p,
        c,
        "low-confidence",
        json!({ "status": "escalated", "reason": "root cause confidence 0.5 is below 0.8" }),
        None,
    );
    case(&p, c, "investigation-failed", json!({ "status": "escalated", "severity": null }), None);
    case(
        &p,
        c,
        "attempts-exhausted",
        json!({ "status": "escalated", "reason": "no acceptable fix after 3 attempts" }),
        None,
    );
    case(&p, c, "merge-refused", json!({ "status": "escalated", "pr": 221 }), None);
    case(
        &p,
        c,
        "issue-as-string",
        json!({ "status": "fixed", "issue": 66, "pr": 231 }),
        Some(&["merge 231 merged", "close 66 done", "notify slack:#eng-leads sent"]),
    );
    case(
        &p,
        c,
        "flaky-sessions",
        json!({ "status": "fixed", "pr": 242, "attempts": [
            { "attempt": 1, "result": "no fix", "why": "timeout: timed out after 60m" },
            { "attempt": 2, "pr": 241, "result": "turned down", "why": ["review did not finish (failed): the review agent lost its worktree"] },
            { "attempt": 3, "pr": 242, "result": "merged" },
        ] }),
        Some(&["merge 242 merged", "close 68 done", "notify slack:#eng-leads sent"]),
    );
    failed_case(&p, c, "issue-closed", "fix-bug: no open issue #67");
}

#[test]
fn triage_incident_applies_only_safe_mitigations() {
    let p = TestProject::with_repo_files();
    let c = "triage-incident";
    case(
        &p,
        c,
        "demo",
        json!({ "status": "resolved", "applied": ["flag: Turn off the tax-client-v2 flag"], "needs_decision": ["rollback: Roll checkout back to deploy 2290"] }),
        Some(&["notify pagerduty:oncall sent", "notify slack:#ops sent"]),
    );
    case(&p, c, "noise", json!({ "status": "noise" }), Some(&["notify slack:#ops sent"]));
    case(
        &p,
        c,
        "blind",
        json!({ "status": "ongoing", "triage": "did not finish (timeout): treated as real", "applied": [] }),
        Some(&["notify pagerduty:oncall sent", "notify pagerduty:oncall sent"]),
    );
    case(
        &p,
        c,
        "mitigation-failed",
        json!({ "status": "ongoing", "applied": [], "needs_decision": ["restart: Restart the mailer workers"] }),
        None,
    );
    case(
        &p,
        c,
        "alert-name-only",
        json!({ "status": "resolved", "alert": "login error rate above 2%", "applied": ["flag: Turn off the captcha-v3 flag"] }),
        Some(&["notify pagerduty:oncall sent", "notify slack:#ops sent"]),
    );
    case(
        &p,
        c,
        "mitigation-timeout",
        json!({ "status": "ongoing", "applied": ["flag: Turn off the imglib-v2 flag"], "failed": ["config: Cap uploads at 8 MB (timeout)"] }),
        Some(&["notify pagerduty:oncall sent", "notify pagerduty:oncall sent"]),
    );
    failed_case(&p, c, "no-alert", "triage-incident needs an alert");
}

#[test]
fn spec_to_merge_runs_the_merge_queue() {
    let p = TestProject::with_repo_files();
    let c = "spec-to-merge";
    case(
        &p,
        c,
        "demo",
        json!({ "status": "done", "merged": ["T1", "T2", "T3"], "reopened": ["T2", "T3"], "blocked": {} }),
        Some(&[
            "merge ticket/T1 merged",
            "merge ticket/T2 refused (tests_failed)",
            "merge ticket/T2 merged",
            "merge ticket/T3 merged",
            "notify slack:#eng sent",
        ]),
    );
    case(
        &p,
        c,
        "main-red",
        json!({ "status": "halted", "merged": [], "awaiting_merge": ["B1", "B2"], "open": ["B3"] }),
        Some(&["merge ticket/B1 refused (main_red)", "notify slack:#eng sent"]),
    );
    case(
        &p,
        c,
        "blocked",
        json!({ "status": "partial", "merged": ["C2"], "unplanned": ["export"], "blocked": { "C1": ["attempt 1: merge queue: conflict", "attempt 2: merge queue: conflict"] } }),
        None,
    );
    case(&p, c, "no-spec", json!({ "status": "waiting" }), Some(&[]));
    case(&p, c, "architect-failed", json!({ "status": "no_plan" }), None);
    case(
        &p,
        c,
        "parallel-as-string",
        json!({ "status": "done", "merged": ["A1", "A2"], "reopened": [] }),
        Some(&["merge ticket/A1 merged", "merge ticket/A2 merged", "notify slack:#eng sent"]),
    );
    case(
        &p,
        c,
        "coding-timeout",
        json!({ "status": "done", "merged": ["K1", "K2"], "reopened": ["K2"], "blocked": {} }),
        Some(&["merge ticket/K1 merged", "merge ticket/K2 merged", "notify slack:#eng sent"]),
    );
}

#[test]
fn pm_loop_follows_the_pm() {
    let p = TestProject::with_repo_files();
    let c = "pm-loop";
    case(
        &p,
        c,
        "demo",
        json!({ "status": "complete", "jobs": ["plan", "implement", "review", "implement", "uat", "document"] }),
        None,
    );
    case(
        &p,
        c,
        "blocked",
        json!({ "status": "blocked", "reason": "Staging is read-only: someone with DBA rights must lift it." }),
        None,
    );
    case(
        &p,
        c,
        "budget",
        json!({ "status": "blocked", "reason": "the job budget is spent: 8 jobs without completing" }),
        None,
    );
    case(&p, c, "pm-failed", json!({ "status": "blocked", "jobs": ["document"] }), None);
    case(&p, c, "unknown-job", json!({ "status": "blocked", "jobs": ["plan"] }), None);
    case(
        &p,
        c,
        "next-job-missing",
        json!({ "status": "blocked", "jobs": ["plan"], "reason": "the PM asked for an unknown job type (none); job types are [\"plan\", \"implement\", \"review\", \"uat\", \"document\"]" }),
        Some(&["notify slack:#api sent"]),
    );
    failed_case(&p, c, "no-assignment", "pm-loop needs an assignment");
    failed_case(&p, c, "unknown-first-job", "the first job must be one of");
}

#[test]
fn gated_jobs_passes_a_job_only_through_every_gate() {
    let p = TestProject::with_repo_files();
    case(
        &p,
        "gated-jobs",
        "demo",
        json!({
            "groups": [["R1", "S1"], ["R2"], ["D1"]],
            "critical_path": ["R1", "R2", "D1"],
            "done": ["R1", "R2", "S1", "D1"],
            "blocked": { "D2": "agreement: scope not agreed (pending)" },
            "runs": { "R1": 1, "R2": 2, "S1": 2, "D1": 2 },
        }),
        None,
    );
    case(
        &p,
        "gated-jobs",
        "blocked",
        json!({
            "done": ["Q1"],
            "runs": { "P1": 3, "Q1": 3 },
            "blocked": {
                "P1": "reward: score 0.7 < target 0.9 (after 3 runs)",
                "P2": "depends on blocked P1",
                "X1": "on a dependency cycle, or depends on a job that does not exist",
                "X2": "on a dependency cycle, or depends on a job that does not exist",
            },
        }),
        None,
    );
}

#[test]
fn every_scenario_is_exercised_here() {
    // A scenario added without a case above would go unchecked: list them all.
    let exercised: &[(&str, &[&str])] = &[
        ("groom-prs", &["demo", "failures"]),
        (
            "implement-feature",
            &[
                "demo",
                "small-clean",
                "architecture-revised",
                "audit-no-go",
                "audit-failed",
                "review-blocking",
                "fix-exhausted",
                "fallback-design-stuck",
                "design-failed",
                "ux-failed",
                "coding-failed",
                "merge-refused",
                "reviewer-timeout",
                "coding-timeout",
                "no-task",
            ],
        ),
        ("groom-backlog", &["demo", "leaves-failing"]),
        (
            "fix-bug",
            &[
                "demo",
                "critical",
                "low-confidence",
                "investigation-failed",
                "attempts-exhausted",
                "merge-refused",
                "issue-as-string",
                "flaky-sessions",
                "issue-closed",
            ],
        ),
        (
            "triage-incident",
            &["demo", "noise", "blind", "mitigation-failed", "alert-name-only", "mitigation-timeout", "no-alert"],
        ),
        (
            "spec-to-merge",
            &["demo", "main-red", "blocked", "no-spec", "architect-failed", "parallel-as-string", "coding-timeout"],
        ),
        (
            "pm-loop",
            &[
                "demo",
                "blocked",
                "budget",
                "pm-failed",
                "unknown-job",
                "next-job-missing",
                "no-assignment",
                "unknown-first-job",
            ],
        ),
        ("gated-jobs", &["demo", "blocked"]),
    ];
    for (coordinator, scenarios) in exercised {
        let dir = support::repo_root().join(format!("coordinators/{coordinator}/scenarios"));
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().strip_suffix(".toml").map(str::to_owned))
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = scenarios.iter().map(|s| s.to_string()).collect();
        listed.sort();
        assert_eq!(on_disk, listed, "{coordinator}: scenarios on disk vs. cases in this file");
    }
}
