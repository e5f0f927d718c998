//! fix-bug's regression-test leaf, `scripts/regression-test`, run by coord as its workflow says:
//! in its own worktree, it checks out the PR's head from `origin` and runs the project's tests.

use crate::support::{repo_root, TestProject};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=T", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A project whose `make test` runs `check.sh`, with an `origin` holding PR 7 (a failing
/// check) and PR 8 (a passing one) as GitHub keeps them: `refs/pull/N/head`.
fn project_with_two_prs() -> TestProject {
    let p = TestProject::new();
    let origin = p.path().join("origin.git");
    git(p.path(), &["init", "-q", "--bare", origin.to_str().unwrap()]);
    let work = p.path().join("work");
    std::fs::create_dir(&work).unwrap();
    git(&work, &["init", "-q"]);
    std::fs::write(work.join("Makefile"), "test:\n\tsh check.sh\n").unwrap();
    std::fs::write(work.join("check.sh"), "echo all good\n").unwrap();
    for (rel, from) in [
        ("workflows/regression-test.toml", "workflows/regression-test.toml"),
        ("workflows/regression-test.schema.json", "workflows/regression-test.schema.json"),
        ("scripts/regression-test", "scripts/regression-test"),
    ] {
        std::fs::create_dir_all(work.join(rel).parent().unwrap()).unwrap();
        std::fs::copy(repo_root().join(from), work.join(rel)).unwrap();
    }
    std::fs::write(
        work.join("leaf.rhai"),
        "//! [inputs]\n//! pr = { type = \"integer\" }\nlet r = await_session(spawn_session(\"regression-test\", #{ inputs: #{ pr: input(\"pr\"), affected_files: [\"check.sh\"] } }));\n#{ status: r.status, output: r.output, error: r.error }\n",
    )
    .unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "base"]);
    git(&work, &["remote", "add", "origin", origin.to_str().unwrap()]);
    git(&work, &["push", "-q", "origin", "HEAD:refs/heads/main"]);
    for (pr, check) in
        [("7", "echo 'test dates ... FAILED: \"export\" shifts by a day'\nexit 1\n"), ("8", "echo fixed\n")]
    {
        git(&work, &["checkout", "-q", "-b", &format!("pr{pr}"), "main"]);
        std::fs::write(work.join("check.sh"), check).unwrap();
        git(&work, &["commit", "-q", "-am", &format!("PR {pr}")]);
        git(&work, &["push", "-q", "origin", &format!("HEAD:refs/pull/{pr}/head")]);
    }
    git(&work, &["checkout", "-q", "main"]);
    p
}

fn run_leaf(p: &TestProject, pr: &str) -> Value {
    let work = p.path().join("work");
    let out = crate::support::CoordCommand::new(&work)
        .args(["run", "leaf.rhai", "--input", &format!("pr={pr}"), "--json", "--runs-dir", "runs"])
        .run();
    let outcome: Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}\n{}", out.stdout, out.stderr));
    outcome["result"].clone()
}

#[test]
fn the_regression_test_leaf_runs_the_prs_tests_in_its_own_checkout() {
    let p = project_with_two_prs();
    let failing = run_leaf(&p, "7");
    assert_eq!(failing["status"], "ok", "{failing}");
    assert_eq!(failing["output"]["passed"], false, "{failing}");
    let failures = failing["output"]["failures"].as_array().unwrap();
    assert!(failures.iter().any(|f| f.as_str().unwrap().contains("FAILED: \"export\" shifts by a day")), "{failing}");

    let passing = run_leaf(&p, "8");
    assert_eq!(passing["output"], serde_json::json!({"passed": true, "failures": []}), "{passing}");

    // A PR origin does not have: the tests did not run, which is not a pass.
    let missing = run_leaf(&p, "9");
    assert_eq!(missing["status"], "failed", "{missing}");
    assert!(missing["error"].as_str().unwrap().contains("cannot fetch PR #9"), "{missing}");

    // The project's own checkout was never moved.
    let head = Command::new("git")
        .current_dir(p.path().join("work"))
        .args(["rev-parse", "--abbrev-ref", "HEAD"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&head.stdout).trim(), "main");
    assert_eq!(std::fs::read_to_string(p.path().join("work/check.sh")).unwrap(), "echo all good\n");
}
