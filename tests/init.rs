//! `coord init` and `coord test --review` through the binary: scaffolding coord into another
//! repository (exactly the workflows a coordinator names, nothing overwritten unless forced),
//! and deciding pending snapshots without cargo, on piped answers or none.

use crate::support;

use support::TestProject;

fn git(p: &TestProject, args: &[&str]) {
    let out = std::process::Command::new("git").current_dir(p.path()).args(args).output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// An empty git repository whose `origin` is a GitHub URL (never contacted).
fn fresh_repository() -> TestProject {
    let p = TestProject::new();
    std::fs::remove_dir(p.path().join("workflows")).unwrap();
    git(&p, &["init", "-q"]);
    git(&p, &["remote", "add", "origin", "https://x-access-token:ghp_notreal@github.com/acme/widgets.git"]);
    p
}

fn listing(p: &TestProject, dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(p.path().join(dir))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn init_in_a_fresh_repository_scaffolds_a_project_that_checks_tests_and_runs_its_demo() {
    let p = fresh_repository();
    let out = p.coord().args(["init"]).run();
    out.code(0)
        .stdout_has("wrote     coord.toml")
        .stdout_has("wrote     coordinators/groom-prs.rhai")
        .stdout_has("wrote     coordinators/groom-prs/scenarios/demo.toml")
        .stdout_has("wrote     snapshots/groom-prs__demo.snap")
        .stdout_has("wrote     .gitignore")
        .stdout_has("next:\n  coord check\n  coord test\n  coord run coordinators/groom-prs.rhai --demo\n")
        .stdout_lacks("ghp_notreal");
    // Exactly what groom-prs names (mr-review for reviews, coding-task for fixes), not all 24.
    assert_eq!(
        listing(&p, "workflows"),
        ["coding-task.schema.json", "coding-task.toml", "mr-review.schema.json", "mr-review.toml"]
    );
    let config = p.read("coord.toml");
    assert!(config.contains("repo = \"acme/widgets\""), "{config}");
    assert!(!config.contains("ghp_notreal") && !config.contains("x-access-token"), "{config}");
    assert!(p.read(".gitignore").contains("/.coord/"));

    p.coord().args(["check"]).run().code(0).stdout_has("no problems");
    p.coord().args(["test"]).run().code(0).stdout_has("1 passed, 0 failed");
    p.coord().args(["run", "coordinators/groom-prs.rhai", "--demo"]).run().code(0);
}

#[test]
fn existing_files_are_left_alone_unless_forced() {
    let p = fresh_repository();
    std::fs::write(p.path().join("coord.toml"), "[github]\nrepo = \"ours/own\"\n").unwrap();
    std::fs::write(p.path().join(".gitignore"), "target").unwrap();
    let out = p.coord().args(["init"]).run();
    out.code(0).stdout_has("kept      coord.toml  (exists with other contents; --force overwrites it)");
    out.stdout_has("appended  .gitignore");
    assert_eq!(p.read("coord.toml"), "[github]\nrepo = \"ours/own\"\n");
    assert_eq!(p.read(".gitignore"), "target\n# coord's run store: journals and reports of each run\n/.coord/\n");

    let again = p.coord().args(["init"]).run();
    again.code(0).stdout_has("unchanged coordinators/groom-prs.rhai").stdout_has("unchanged .gitignore");

    p.write("coordinators/groom-prs.rhai", "// ours\n");
    p.coord().args(["init"]).run().code(0).stdout_has("kept      coordinators/groom-prs.rhai");
    assert_eq!(p.read("coordinators/groom-prs.rhai"), "// ours\n");
    let forced = p.coord().args(["init", "--force"]).run();
    forced.code(0).stdout_has("overwrote coord.toml").stdout_has("overwrote coordinators/groom-prs.rhai");
    assert!(p.read("coord.toml").contains("repo = \"acme/widgets\""));
}

#[test]
fn every_shipped_coordinator_scaffolds_a_project_that_passes_check_and_test() {
    let list = TestProject::new().coord().args(["init", "--list"]).run();
    list.code(0).stdout_has("groom-prs");
    let names: Vec<String> =
        list.stdout.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_owned).collect();
    assert!(names.len() >= 8, "{names:?}");
    for name in &names {
        let p = fresh_repository();
        p.coord().args(["init", name]).run().code(0).stdout_has(&format!("coord run coordinators/{name}.rhai --demo"));
        p.coord().args(["check"]).run().code(0).stdout_has("no problems");
        p.coord().args(["test"]).run().code(0).stdout_has("1 passed, 0 failed");
    }
    // groom-backlog comes with its weekly pipeline, which `coord daemon` would run.
    let p = fresh_repository();
    p.coord().args(["init", "groom-backlog"]).run().code(0);
    p.coord().args(["schedule"]).run().code(0).stdout_has("groom-backlog").stdout_has("0 8 * * 1");
}

#[test]
fn init_into_another_folder_and_refusals() {
    let p = fresh_repository();
    let target = p.path().join("svc");
    p.coord().args(["init", "--dir", "svc"]).run().code(2).stderr_has("no folder at svc");
    std::fs::create_dir(&target).unwrap();
    let out = p.coord().args(["init", "fix-bug", "groom-prs", "--dir", "svc"]).run();
    out.code(0).stdout_has("  cd svc\n  coord check").stdout_has("coord run coordinators/fix-bug.rhai --demo");
    assert!(target.join("coordinators/groom-prs.rhai").is_file() && target.join("workflows/bug-fix.toml").is_file());
    // fix-bug's regression-test workflow runs a shipped program: it comes along, executable.
    let program = std::fs::metadata(target.join("scripts/regression-test")).expect("scripts/regression-test written");
    assert!(std::os::unix::fs::PermissionsExt::mode(&program.permissions()) & 0o111 != 0, "executable");
    crate::support::CoordCommand::new(&target).args(["check"]).run().code(0).stderr_lacks("regression-test");
    // Without the program, the project is broken, and `coord check` says where.
    std::fs::rename(target.join("scripts/regression-test"), target.join("regression-test.bak")).unwrap();
    crate::support::CoordCommand::new(&target)
        .args(["check"])
        .run()
        .code(2)
        .stderr_has("workflow `regression-test` runs `scripts/regression-test`, which is not in the project")
        .stderr_has("regression-test.toml:5:12");
    std::fs::rename(target.join("regression-test.bak"), target.join("scripts/regression-test")).unwrap();
    crate::support::CoordCommand::new(&target).args(["check"]).run().code(0);
    p.coord().args(["init", "no-such-coordinator"]).run().code(2).stderr_has("choose from: fix-bug,");
}

/// The repository's groom-prs with both of its snapshots gone: `coord test` proposes two.
fn project_with_two_missing_snapshots() -> TestProject {
    let p = TestProject::with_repo_files();
    support::copy_dir(&support::repo_root().join("snapshots"), &p.path().join("snapshots"));
    for s in ["groom-prs__demo.snap", "groom-prs__failures.snap"] {
        std::fs::remove_file(p.path().join("snapshots").join(s)).unwrap();
    }
    p
}

#[test]
fn review_accepts_and_rejects_on_piped_answers() {
    let p = project_with_two_missing_snapshots();
    let out = p.coord().args(["test", "--review", "coordinators/groom-prs.rhai"]).run_with_stdin("a\nr\n");
    // The rejected proposal leaves its scenario without a snapshot: still a failure.
    out.code(1)
        .stdout_has("groom-prs__demo.snap.new (1 of 2)")
        .stdout_has("+github.prs state=open")
        .stdout_has("reviewed snapshots: 1 accepted, 1 rejected, 0 left pending");
    let snapshots = p.path().join("snapshots");
    assert!(snapshots.join("groom-prs__demo.snap").is_file());
    assert!(!snapshots.join("groom-prs__demo.snap.new").exists());
    assert!(!snapshots.join("groom-prs__failures.snap").exists());
    assert!(!snapshots.join("groom-prs__failures.snap.new").exists());
    let shipped = std::fs::read_to_string(support::repo_root().join("snapshots/groom-prs__demo.snap")).unwrap();
    assert_eq!(p.read("snapshots/groom-prs__demo.snap"), shipped);
    p.coord().args(["test", "coordinators/groom-prs/scenarios/demo.toml"]).run().code(0);

    // Accepting every proposal makes the run pass.
    let all = p.coord().args(["test", "--review", "coordinators/groom-prs.rhai"]).run_with_stdin("A\n");
    all.code(0).stdout_has("1 accepted, 0 rejected");
    p.coord().args(["test", "coordinators/groom-prs.rhai"]).run().code(0);
}

#[test]
fn review_without_a_terminal_or_answers_stops_at_once() {
    let p = project_with_two_missing_snapshots();
    // `run` gives coord a closed stdin, as CI does.
    let out = p.coord().args(["test", "--review", "coordinators/groom-prs.rhai"]).env("CI", "1").run();
    out.code(2).stderr_has("no answer for").stderr_has("pass --accept or --reject");
    assert!(p.path().join("snapshots/groom-prs__demo.snap.new").is_file(), "nothing decided, proposals kept");

    let rejected = p.coord().args(["test", "--review", "--reject", "coordinators/groom-prs.rhai"]).run();
    rejected.code(1).stdout_has("0 accepted, 2 rejected");
    assert!(!p.path().join("snapshots/groom-prs__demo.snap.new").exists());
    p.coord().args(["test", "--review", "--accept", "coordinators/groom-prs.rhai"]).run().code(0);
    p.coord()
        .args(["test", "--review", "coordinators/groom-prs.rhai"])
        .run()
        .code(0)
        .stdout_has("no pending snapshots");
}
