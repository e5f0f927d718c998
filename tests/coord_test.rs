//! `coord test` through the binary: snapshots, diffs, acceptance, expectations, malformed
//! scenarios and coverage.

use crate::support;

use support::TestProject;

fn project_with_snapshots() -> TestProject {
    let p = TestProject::with_repo_files();
    support::copy_dir(&support::repo_root().join("snapshots"), &p.path().join("snapshots"));
    p
}

fn tree_listing(p: &TestProject) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![p.path().to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                files.push((e.path().display().to_string(), std::fs::read(e.path()).unwrap()));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn the_repository_passes_and_testing_twice_changes_nothing() {
    let p = project_with_snapshots();
    let before = tree_listing(&p);
    p.coord().args(["test"]).run().code(0);
    let out = p.coord().args(["test"]).run();
    out.code(0).stdout_has("passed, 0 failed");
    assert_eq!(before, tree_listing(&p), "coord test changed the working tree");
}

#[test]
fn a_changed_threshold_fails_with_a_diff_naming_the_scenario_then_accept_fixes_it() {
    let p = project_with_snapshots();
    let script =
        p.read("coordinators/groom-prs.rhai").replace("const MAX_FIX_PASSES = 3;", "const MAX_FIX_PASSES = 1;");
    p.write("coordinators/groom-prs.rhai", &script);
    let out = p.coord().args(["test"]).run();
    out.code(1)
        .stdout_has("FAILED  groom-prs / demo")
        .stdout_has("routing changed for scenario `demo`")
        .stdout_has("-spawn s11 coding-task");
    assert!(
        out.stdout.contains("+comment #16 \"Escalation: PR #16 still has 1 minor finding after 1 fix pass\""),
        "{}",
        out.stdout
    );
    assert!(p.path().join("snapshots/groom-prs__demo.snap.new").exists());

    p.coord().args(["test", "--accept"]).run().code(0);
    assert!(!p.path().join("snapshots/groom-prs__demo.snap.new").exists());
    p.coord().args(["test"]).run().code(0);
}

#[test]
fn under_ci_a_missing_snapshot_fails_and_nothing_is_written() {
    let p = TestProject::with_repo_files();
    let out = p.coord().args(["test"]).env("CI", "true").run();
    out.code(1).stdout_has("no snapshot yet");
    assert!(!p.path().join("snapshots").exists());
    // Locally the proposal is written for review.
    p.coord().args(["test"]).run().code(1);
    assert!(p.path().join("snapshots/groom-prs__demo.snap.new").exists());
}

#[test]
fn json_summary() {
    let p = project_with_snapshots();
    let out = p.coord().args(["test", "--json"]).run();
    out.code(0);
    let v = out.json();
    assert_eq!(v["failed"], 0);
    let demo = v["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["coordinator"] == "groom-prs" && s["scenario"] == "demo")
        .unwrap()
        .clone();
    assert_eq!(demo["snapshot"], "matched");
    assert_eq!(demo["sessions"], 14);
}

#[test]
fn failed_expectations_say_what_differs() {
    let p = project_with_snapshots();
    let scenario =
        p.read("coordinators/groom-prs/scenarios/demo.toml").replacen("merged = [12, 14]", "merged = [12, 13]", 1);
    p.write("coordinators/groom-prs/scenarios/demo.toml", &scenario);
    let out = p.coord().args(["test"]).run();
    out.code(1).stdout_has("expect.merged: expected [12, 13], the run merged [12, 14]");
}

fn malformed(edit: impl Fn(String) -> String, expect: &[&str]) {
    let p = project_with_snapshots();
    let scenario = edit(p.read("coordinators/groom-prs/scenarios/demo.toml"));
    p.write("coordinators/groom-prs/scenarios/demo.toml", &scenario);
    let out = p.coord().args(["test", "coordinators/groom-prs/scenarios/demo.toml"]).run();
    out.code(1);
    for e in expect {
        assert!(out.stdout.contains(e), "missing `{e}` in:\n{}", out.stdout);
    }
    // `coord run` refuses the same scenario before anything runs.
    let run = p.coord().args(["run", "coordinators/groom-prs.rhai", "--demo"]).run();
    run.code(2);
    assert!(p.runs().is_empty());
}

#[test]
fn bad_toml_points_into_the_scenario() {
    malformed(|s| s.replace("number = 13", "number = = 13"), &["demo.toml:", "number = = 13"]);
}

#[test]
fn an_unknown_workflow_points_at_its_name() {
    malformed(
        |s| s.replacen("workflow = \"coding-task\"", "workflow = \"coding-tsak\"", 1),
        &["demo.toml:", "unknown workflow `coding-tsak`"],
    );
}

#[test]
fn an_output_violating_its_schema_points_at_the_output() {
    malformed(
        |s| {
            s.replace(
                "verdict = \"clean\", summary = \"Routine bump.\"",
                "verdict = \"fine\", summary = \"Routine bump.\"",
            )
        },
        &["demo.toml:", "does not fit its schema", "/verdict"],
    );
}

#[test]
fn coverage_reports_no_unreached_branch_in_shipped_coordinators() {
    let p = project_with_snapshots();
    let out = p.coord().args(["test", "--coverage", "--fail-uncovered"]).run();
    out.code(0).stdout_has("groom-prs: lines 70/70, branches 17/17").stdout_lacks("never taken");
}

#[test]
fn coverage_names_a_branch_no_scenario_takes() {
    let p = project_with_snapshots();
    std::fs::remove_file(p.path().join("coordinators/groom-prs/scenarios/failures.toml")).unwrap();
    let out = p.coord().args(["test", "--coverage", "--fail-uncovered"]).run();
    out.code(1).stdout_has("groom-prs.rhai:44: `if` branch never taken by any scenario");
}
