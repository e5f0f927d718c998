//! `merge(branch)` through the local git merge queue, on temporary repositories.

use coord::effects::git_merge_queue::{GitMergeQueue, MergeQueueSettings};
use serde_json::json;
use std::path::Path;
use std::process::Command;

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn commit_file(dir: &Path, file: &str, contents: &str, message: &str) {
    std::fs::write(dir.join(file), contents).unwrap();
    git(dir, &["add", file]);
    git(dir, &["commit", "-q", "-m", message]);
}

/// A repository on `main` whose tests fail when a file named `broken` exists, with branches
/// `good` (passes), `bad` (fails the tests) and `clash` (conflicts with main), and main moved on
/// since they branched.
pub fn repo_with_branches(dir: &Path) {
    git(dir, &["init", "-q", "-b", "main"]);
    commit_file(
        dir,
        "test.sh",
        "if [ -e broken ]; then echo 'FAIL: broken file present'; exit 1; fi\necho 'all tests passed'\n",
        "tests",
    );
    commit_file(dir, "README", "one\n", "readme");
    for (branch, file, contents) in
        [("good", "feature.txt", "feature\n"), ("bad", "broken", "x\n"), ("clash", "README", "branch version\n")]
    {
        git(dir, &["checkout", "-q", "-b", branch, "main"]);
        commit_file(dir, file, contents, branch);
    }
    git(dir, &["checkout", "-q", "main"]);
    commit_file(dir, "README", "main version\n", "main moves on");
}

fn settings(test_command: &str) -> MergeQueueSettings {
    MergeQueueSettings { test_command: Some(test_command.into()), ..MergeQueueSettings::default() }
}

#[test]
fn tested_branches_land_on_main_and_failing_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    repo_with_branches(repo);
    let queue = GitMergeQueue::new(repo, settings("sh test.sh"));
    let main_before = git(repo, &["rev-parse", "main"]);

    let bad = queue.merge("bad", &json!({}));
    assert_eq!(bad["status"], "refused", "{bad}");
    assert_eq!(bad["reason"], "tests_failed");
    assert!(bad["output_tail"].as_str().unwrap().contains("FAIL: broken file present"), "{bad}");
    assert_eq!(bad["exit_code"], 1);
    assert_eq!(git(repo, &["rev-parse", "main"]), main_before, "main does not move on red");

    assert_eq!(queue.merge("clash", &json!({}))["reason"], "conflict");
    assert_eq!(queue.merge("nope", &json!({}))["reason"], "not_found");
    assert_eq!(queue.merge("--upload-pack=x", &json!({}))["reason"], "not_found");
    assert_eq!(queue.already_merged("good", &json!({})).unwrap(), None);

    let good = queue.merge("good", &json!({}));
    assert_eq!(good["status"], "merged", "{good}");
    let main_after = git(repo, &["rev-parse", "main"]);
    assert_eq!(good["sha"], main_after.as_str());
    git(repo, &["merge-base", "--is-ancestor", &main_before, "main"]);
    git(repo, &["merge-base", "--is-ancestor", "good", "main"]);
    // main is checked out here: its files moved with it.
    assert!(repo.join("feature.txt").is_file());
    assert_eq!(git(repo, &["status", "--porcelain"]), "");
    // The scratch worktree is gone.
    assert_eq!(git(repo, &["worktree", "list"]).lines().count(), 1);

    let found = queue.already_merged("good", &json!({})).unwrap().expect("merged");
    assert_eq!(found["status"], "merged");
    assert_eq!(queue.merge("good", &json!({}))["reason"], "not_mergeable", "nothing left to merge");
    assert_eq!(queue.already_merged("bad", &json!({})).unwrap(), None);
}

#[test]
fn a_target_not_checked_out_moves_by_ref_and_a_missing_test_command_is_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    repo_with_branches(repo);
    git(repo, &["branch", "release", "main"]);
    let queue = GitMergeQueue::new(repo, settings("sh test.sh"));
    let r = queue.merge("good", &json!({"into": "release"}));
    assert_eq!(r["status"], "merged", "{r}");
    assert_eq!(r["into"], "release");
    git(repo, &["merge-base", "--is-ancestor", "good", "release"]);
    assert!(!repo.join("feature.txt").exists(), "main, checked out here, did not move");

    let untested = GitMergeQueue::new(repo, MergeQueueSettings::default()).merge("good", &json!({}));
    assert_eq!(untested["status"], "failed");
    assert!(untested["error"].as_str().unwrap().contains("[merge] test_command"), "{untested}");
}

#[test]
fn merges_are_serialized_across_queues() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    commit_file(&repo, "README", "x\n", "init");
    for b in ["a", "b", "c"] {
        git(&repo, &["checkout", "-q", "-b", b, "main"]);
        commit_file(&repo, &format!("{b}.txt"), b, b);
    }
    git(&repo, &["checkout", "-q", "main"]);
    let log = dir.path().join("intervals.log");
    let command =
        format!("echo start $COORD_MERGE_BRANCH >> {0}; sleep 0.3; echo end $COORD_MERGE_BRANCH >> {0}", log.display());
    let threads: Vec<_> = ["a", "b", "c"]
        .into_iter()
        .map(|b| {
            // A queue each, as separate coord processes would have.
            let queue = GitMergeQueue::new(&repo, settings(&command));
            std::thread::spawn(move || queue.merge(b, &json!({})))
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap()["status"], "merged");
    }
    let lines: Vec<String> = std::fs::read_to_string(&log).unwrap().lines().map(str::to_owned).collect();
    // main itself is tested once, before the first merge; each merge leaves a main known green.
    assert_eq!(lines.len(), 8, "{lines:?}");
    assert_eq!(lines.iter().filter(|l| *l == "start main").count(), 1, "{lines:?}");
    for pair in lines.chunks(2) {
        let branch = pair[0].strip_prefix("start ").expect("a start");
        assert_eq!(pair[1], format!("end {branch}"), "one merge at a time: {lines:?}");
    }
    for b in ["a", "b", "c"] {
        git(&repo, &["merge-base", "--is-ancestor", b, "main"]);
    }
}

#[test]
fn a_red_main_is_main_red_for_every_branch_and_a_green_main_is_tested_once_per_commit() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    repo_with_branches(repo);
    commit_file(repo, "broken", "x\n", "someone breaks main");
    let red_main = git(repo, &["rev-parse", "main"]);
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("tested.log");
    let queue =
        GitMergeQueue::new(repo, settings(&format!("echo $COORD_MERGE_BRANCH >> {}; sh test.sh", log.display())));

    for branch in ["good", "bad"] {
        let r = queue.merge(branch, &json!({}));
        assert_eq!((r["status"].as_str(), r["reason"].as_str()), (Some("refused"), Some("main_red")), "{r}");
        assert_eq!(r["sha"], red_main.as_str());
        assert!(r["output_tail"].as_str().unwrap().contains("FAIL: broken file present"), "{r}");
        assert!(r["message"].as_str().unwrap().contains("on `main` itself"), "{r}");
    }
    assert_eq!(git(repo, &["rev-parse", "main"]), red_main, "main does not move");
    assert_eq!(git(repo, &["worktree", "list"]).lines().count(), 1, "no scratch worktree is left");

    git(repo, &["rm", "-q", "broken"]);
    git(repo, &["commit", "-q", "-m", "main is green again"]);
    assert_eq!(queue.merge("good", &json!({}))["status"], "merged");
    assert_eq!(queue.merge("bad", &json!({}))["reason"], "tests_failed");
    let tested: Vec<String> = std::fs::read_to_string(&log).unwrap().lines().map(str::to_owned).collect();
    // Red main twice (a red commit is not remembered), green main once, then each branch: the
    // main "good" landed on is the commit its tests passed on.
    assert_eq!(tested, ["main", "main", "main", "good", "bad"]);
}
