//! Live runs of the real `coord` binary against the fakes: the groom-prs acceptance run, a
//! kill between a merge's intent and its result followed by `coord resume`, rate limits,
//! repository selection and the local merge queue.

use super::fake_github::{FakeGithub, FakePr, MergeAnswer, RateLimit, OWNER, REPO};
use super::fake_receiver::FakeReceiver;
use super::merge_queue::{git, repo_with_branches};
use super::TOKEN;
use crate::support::{CoordCommand, TestProject};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// The review leaf: #23 is blocking, #24's reviewer crashes, everything else is clean.
const FAKE_REVIEW: &str = r#"#!/bin/sh
req=$(cat)
case "$req" in
  *'"pr":23,'*) echo '{"verdict":"blocking","summary":"Session fixation","findings":[{"severity":"blocking","message":"Session id reused across logins"}]}' ;;
  *'"pr":24,'*) echo 'model overloaded' >&2; exit 3 ;;
  *) echo '{"verdict":"clean","summary":"Looks right.","findings":[]}' ;;
esac
"#;

const SLACK_PATH: &str = "/services/T0001/B0001/hookSecretPart";

/// groom-prs as shipped; the mr-review and coding-task workflows get a `command` so `--leaf
/// mr-review=command` runs the fake reviewer instead of an agent (and a fix, which no review
/// here asks for, would run a fake fixer: a run is refused when a leaf it can reach has no
/// agent installed).
pub(crate) fn groom_project() -> TestProject {
    let p = TestProject::with_repo_files();
    p.write_executable("fake-review.sh", FAKE_REVIEW);
    p.write_executable(
        "fake-fix.sh",
        "#!/bin/sh\ncat >/dev/null\necho '{\"status\":\"fixed\",\"summary\":\"done\"}'\n",
    );
    let workflow = p.read("workflows/mr-review.toml");
    p.write("workflows/mr-review.toml", &format!("command = [\"./fake-review.sh\"]\n{workflow}"));
    let workflow = p.read("workflows/coding-task.toml").replace("worktree = true\n", "");
    p.write("workflows/coding-task.toml", &format!("command = [\"./fake-fix.sh\"]\n{workflow}"));
    p.write("coord.toml", "[channels.\"slack:#eng\"]\ntype = \"slack\"\nwebhook_env = \"SLACK_WEBHOOK_URL\"\n");
    p
}

pub(crate) fn live(p: &TestProject, gh: &FakeGithub, slack: &FakeReceiver) -> CoordCommand {
    p.coord()
        .env("GITHUB_API_URL", &gh.url)
        .env("GITHUB_TOKEN", TOKEN)
        .env("SLACK_WEBHOOK_URL", format!("{}{SLACK_PATH}", slack.url))
}

pub(crate) const GROOM: [&str; 10] = [
    "run",
    "coordinators/groom-prs.rhai",
    "--input",
    "repo=acme/widgets",
    "--leaf",
    "mr-review=command",
    "--leaf",
    "coding-task=command",
    "--max-parallel",
    "2",
];

pub(crate) fn route(rest: &str) -> String {
    format!("/repos/{OWNER}/{REPO}/{rest}")
}

pub(crate) fn journal(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("journal.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every file under `dir`, as text.
fn all_text_under(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            text.push_str(&all_text_under(&path));
        } else {
            text.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
        }
    }
    text
}

#[test]
fn groom_prs_live_merges_clean_green_prs_escalates_the_rest_and_posts_one_summary() {
    let gh = FakeGithub::start(2);
    gh.add_pr(FakePr::new(21, "Add retry to fetch").green(5));
    gh.add_pr(FakePr::new(22, "Bump serde").red_on_last_page(5));
    gh.add_pr(FakePr::new(23, "Rewrite auth middleware").green(1));
    gh.add_pr(FakePr::new(24, "Tidy logging").green(1));
    gh.add_pr(FakePr::new(25, "Speed up CI cache").pending());
    let slack = FakeReceiver::start();
    let p = groom_project();

    let out = live(&p, &gh, &slack).args(GROOM).args(["--json", "-vv"]).run();
    out.code(0);
    let v = out.json();
    // GitHub lists newest first; groom-prs keeps that order.
    assert_eq!(
        v["result"],
        json!({"merged": [21], "fixed": [], "escalated": [24, 23], "waiting": [25, 22], "drafts": []})
    );

    // Exactly these writes, and no other.
    assert_eq!(
        gh.writes(),
        [
            format!("POST {}", route("issues/24/comments")),
            format!("POST {}", route("issues/24/labels")),
            format!("POST {}", route("issues/23/comments")),
            format!("POST {}", route("issues/23/labels")),
            format!("PUT {}", route("pulls/21/merge")),
        ]
    );
    let requests = gh.requests();
    let put = requests.iter().find(|r| r.method == "PUT").unwrap();
    assert_eq!(put.body, json!({"merge_method": "squash", "sha": gh.pr(21).head_sha}));
    let label = requests.iter().find(|r| r.path() == route("issues/23/labels")).unwrap();
    assert_eq!(label.body, json!({"labels": ["needs-human"]}));
    assert!(gh.comments(23)[0]["body"]
        .as_str()
        .unwrap()
        .starts_with("Escalation: PR #23 blocking (1 blocking finding)"));
    assert!(gh.comments(24)[0]["body"].as_str().unwrap().contains("review did not finish (failed)"));
    assert!(gh.pr(21).merged && !gh.pr(22).merged && !gh.pr(25).merged);

    let deliveries = slack.deliveries();
    assert_eq!(deliveries.len(), 1, "one summary");
    assert_eq!(deliveries[0].path, SLACK_PATH);
    let summary = deliveries[0].json();
    assert_eq!(summary["text"], "groom-prs on acme/widgets: 1 merged, 2 escalated, 2 waiting");
    assert_eq!(summary["blocks"][0]["type"], "header");
    let statuses: Vec<&str> = v["effects"].as_array().unwrap().iter().map(|e| e["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["done", "done", "done", "done", "merged", "sent"]);

    // The token went to the fake on every request, and nowhere else.
    assert!(requests.iter().all(|r| r.authorization.as_deref() == Some(&format!("Bearer {TOKEN}") as &str)));
    let run = p.runs().pop().unwrap();
    let recorded = all_text_under(&run);
    assert!(recorded.contains("\"effect_intent\""));
    for (what, text) in [("run directory", &recorded), ("stdout", &out.stdout), ("stderr", &out.stderr)] {
        assert!(!text.contains(TOKEN), "the token leaked into the {what}");
        assert!(!text.contains("hookSecretPart"), "the Slack webhook URL leaked into the {what}");
    }
}

#[test]
fn a_dry_run_reads_github_and_changes_nothing() {
    let gh = FakeGithub::start(100);
    gh.add_pr(FakePr::new(21, "Add retry to fetch").green(1));
    gh.add_pr(FakePr::new(23, "Rewrite auth middleware").green(1));
    let slack = FakeReceiver::start();
    let p = groom_project();
    let out = live(&p, &gh, &slack).args(GROOM).args(["--dry-run", "--json"]).run();
    out.code(0);
    let effects = out.json()["effects"].clone();
    assert_eq!(effects.as_array().unwrap().len(), 4, "{effects}");
    assert!(effects.as_array().unwrap().iter().all(|e| e["status"] == "dry_run"));
    assert!(!gh.requests().is_empty());
    assert!(gh.writes().is_empty());
    assert!(slack.deliveries().is_empty());
}

#[test]
fn killed_between_a_merge_intent_and_its_result_resume_does_not_merge_again() {
    let gh = FakeGithub::start(100);
    gh.add_pr(
        FakePr::new(21, "Add retry to fetch").green(1).answer(MergeAnswer::MergeThenStall(Duration::from_secs(120))),
    );
    gh.add_pr(FakePr::new(23, "Rewrite auth middleware").green(1));
    let slack = FakeReceiver::start();
    let p = groom_project();

    let mut child = live(&p, &gh, &slack).args(GROOM).spawn();
    let merge_route = format!("PUT {}", route("pulls/21/merge"));
    let started = Instant::now();
    while !gh.writes().contains(&merge_route) {
        assert!(started.elapsed() < Duration::from_secs(60), "coord never asked to merge");
        std::thread::sleep(Duration::from_millis(20));
    }
    // GitHub merged; coord is waiting for the answer. Kill it now.
    child.kill().unwrap();
    child.wait().unwrap();
    let run = p.runs().pop().unwrap();
    let entries = journal(&run);
    assert!(
        entries.iter().any(|e| e["type"] == "effect_intent" && e["fn"] == "merge"),
        "the intent is journaled before acting"
    );
    assert!(!entries.iter().any(|e| e["type"] == "effect_result" && e["fn"] == "merge"), "killed before the result");
    assert!(gh.pr(21).merged);

    let out = live(&p, &gh, &slack).args(["resume", "last", "--json"]).run();
    out.code(0);
    let v = out.json();
    assert_eq!(v["result"]["merged"], json!([21]), "{v}");
    assert_eq!(v["result"]["escalated"], json!([23]));
    let merge_puts = gh.writes().iter().filter(|w| **w == merge_route).count();
    assert_eq!(merge_puts, 1, "resume checked GitHub instead of merging again: {:?}", gh.writes());
    assert_eq!(
        gh.writes(),
        [
            format!("POST {}", route("issues/23/comments")),
            format!("POST {}", route("issues/23/labels")),
            merge_route.clone(),
        ]
    );
    assert_eq!(slack.deliveries().len(), 1);
    let result = journal(&run)
        .into_iter()
        .find(|e| e["type"] == "effect_result" && e["fn"] == "merge")
        .expect("resume journaled the result");
    assert_eq!(result["result"]["status"], "merged");
    assert_eq!(result["result"]["sha"], gh.pr(21).head_sha);
}

#[test]
fn a_rate_limited_live_run_names_the_reset_time_and_never_the_token() {
    let gh = FakeGithub::start(100);
    gh.add_pr(FakePr::new(21, "x").green(1));
    let reset_at = chrono::Utc::now().timestamp() + 2 * 3600;
    gh.queue_rate_limit(RateLimit::Primary { reset_at });
    let slack = FakeReceiver::start();
    let p = groom_project();
    let out = live(&p, &gh, &slack).args(GROOM).run();
    out.code(1);
    let expected =
        chrono::DateTime::from_timestamp(reset_at, 0).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert!(out.stderr.contains("rate limit") && out.stderr.contains(&expected), "{}", out.stderr);
    assert!(!out.stderr.contains(TOKEN) && !out.stdout.contains(TOKEN));
    assert!(!all_text_under(&p.runs().pop().unwrap()).contains(TOKEN));
    assert!(gh.writes().is_empty());
}

#[test]
fn the_repository_comes_from_repo_then_the_origin_remote() {
    let gh = FakeGithub::start(100);
    gh.add_pr(FakePr::new(3, "x"));
    let slack = FakeReceiver::start();
    let p = TestProject::new();
    p.write("s.rhai", "github::prs(#{}).map(|pr| pr.number)\n");
    git(p.path(), &["init", "-q", "-b", "main"]);
    git(p.path(), &["remote", "add", "origin", "git@github.com:acme/widgets.git"]);
    let out = live(&p, &gh, &slack).args(["run", "s.rhai", "--json"]).run();
    out.code(0);
    assert_eq!(out.json()["result"], json!([3]));

    let out = live(&p, &gh, &slack).args(["run", "s.rhai", "--json", "--repo", "other/thing"]).run();
    out.code(1);
    assert!(out.stderr.contains("/repos/other/thing/pulls") && out.stderr.contains("404"), "{}", out.stderr);
    // --repo is an input, recorded in the run header for resume.
    let headers: Vec<Value> = p.runs().iter().map(|r| journal(r)[0]["header"]["inputs"].clone()).collect();
    assert!(headers.contains(&json!({"repo": "other/thing"})), "{headers:?}");

    p.coord().args(["run", "s.rhai", "--repo", "not-a-repo"]).run().code(2);
}

#[test]
fn merge_of_a_branch_goes_through_the_local_queue() {
    let p = TestProject::new();
    repo_with_branches(p.path());
    p.write("coord.toml", "[merge]\ntest_command = \"sh test.sh\"\ntest_timeout = \"2m\"\n");
    p.write("s.rhai", "#{ good: merge(\"good\", #{}), bad: merge(\"bad\", #{}) }\n");
    let out = p.coord().args(["run", "s.rhai", "--json"]).run();
    out.code(0);
    let v = out.json();
    assert_eq!(v["result"]["good"]["status"], "merged", "{v}");
    assert_eq!(v["result"]["bad"]["reason"], "tests_failed");
    assert!(v["result"]["bad"]["output_tail"].as_str().unwrap().contains("FAIL"));
    git(p.path(), &["merge-base", "--is-ancestor", "good", "main"]);

    p.write("coord.toml", "[merge]\ntest_timeout = \"soon\"\n");
    let out = p.coord().args(["run", "s.rhai"]).run();
    out.code(2);
    assert!(out.stderr.contains("coord.toml") && out.stderr.contains("soon"), "{}", out.stderr);
}

#[test]
fn the_stdout_channel_keeps_json_output_parseable() {
    let p = TestProject::new();
    p.write("s.rhai", "notify(\"stdout\", #{ title: \"Nightly\", fields: #{ merged: [1, 2] } }).status\n");
    let out = p.coord().args(["run", "s.rhai"]).run();
    out.code(0);
    assert!(out.stdout.starts_with("Nightly\nmerged: 1, 2\n"), "{}", out.stdout);
    let out = p.coord().args(["run", "s.rhai", "--json"]).run();
    out.code(0);
    assert_eq!(out.json()["result"], "sent");
    out.stderr_has("Nightly\nmerged: 1, 2");
}
