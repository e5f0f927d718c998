//! GitHub reads and effects through `LiveWorld`, against the fake GitHub.

use super::fake_github::{FakeGithub, FakePr, MergeAnswer, RateLimit};
use super::{effect, live_world, runtime, TOKEN};
use coord::effects::{EffectKind, GithubRead, World};
use indexmap::IndexMap;
use serde_json::{json, Value};

fn numbers(v: &Value) -> Vec<u64> {
    v.as_array().unwrap().iter().map(|i| i["number"].as_u64().unwrap()).collect()
}

#[test]
fn reads_return_fixture_shaped_records_from_every_page() {
    let gh = FakeGithub::start(2);
    let mut approved = FakePr::new(1, "Add retry").green(5).labels(&["ready"]);
    approved.reviews = vec![
        json!({"id": 9, "user": {"login": "cy"}, "state": "APPROVED", "commit_id": approved.head_sha, "submitted_at": "2026-11-21T08:00:00Z", "body": "lgtm"}),
    ];
    gh.add_pr(approved);
    gh.add_pr(FakePr::new(2, "Bump serde").red_on_last_page(5).author("dependabot"));
    gh.add_pr(FakePr::new(3, "Speed up CI").pending());
    gh.add_issue(7, "Crash on start", &["bug"]);
    gh.add_issue(8, "Docs typo", &[]);
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut w = live_world(&rt, &gh.url, dir.path(), IndexMap::new());

    let prs = w.github_read(&GithubRead::Prs(json!({}))).unwrap();
    assert_eq!(numbers(&prs), [3, 2, 1], "newest first, as GitHub lists them");
    for field in
        ["number", "title", "author", "state", "base", "head", "head_sha", "labels", "draft", "mergeable", "merged"]
    {
        assert!(prs[0].get(field).is_some(), "PR records carry `{field}` like the fixtures: {}", prs[0]);
    }
    assert_eq!(prs[2]["labels"], json!(["ready"]));
    assert_eq!(prs[2]["base"], "main");
    assert_eq!(prs[1]["author"], "dependabot");
    assert_eq!(numbers(&w.github_read(&GithubRead::Prs(json!({"labels": ["ready"]}))).unwrap()), [1]);
    assert_eq!(numbers(&w.github_read(&GithubRead::Prs(json!({"author": "dependabot"}))).unwrap()), [2]);
    assert_eq!(numbers(&w.github_read(&GithubRead::Prs(json!({"state": "closed"}))).unwrap()), Vec::<u64>::new());

    let pr = w.github_read(&GithubRead::Pr(1)).unwrap();
    assert_eq!(pr["head_sha"], gh.pr(1).head_sha);
    assert_eq!(pr["mergeable"], true);

    let green = w.github_read(&GithubRead::Checks(1)).unwrap();
    assert_eq!(green["state"], "green");
    assert_eq!(green["total"], 6, "5 check runs over 3 pages and 1 status: {green}");
    let red = w.github_read(&GithubRead::Checks(2)).unwrap();
    assert_eq!(red["state"], "red", "the failing run is on the last page: {red}");
    assert!(red["details"].as_array().unwrap().iter().any(|d| d["name"] == "job-last" && d["state"] == "red"));
    assert_eq!(w.github_read(&GithubRead::Checks(3)).unwrap()["state"], "pending");
    let check_pages =
        gh.requests().iter().filter(|r| r.path().ends_with(&format!("{}/check-runs", gh.pr(2).head_sha))).count();
    assert_eq!(check_pages, 3);

    let reviews = w.github_read(&GithubRead::Reviews(1)).unwrap();
    assert_eq!(
        reviews,
        json!([{"id": 9, "author": "cy", "state": "approved", "commit_id": gh.pr(1).head_sha, "submitted_at": "2026-11-21T08:00:00Z", "body": "lgtm"}])
    );

    let issues = w.github_read(&GithubRead::Issues(json!({}))).unwrap();
    assert_eq!(numbers(&issues), [8, 7], "the issues listing holds PRs too; they are left out");
    assert_eq!(issues[1]["assignees"], json!(["ana"]));
    assert_eq!(numbers(&w.github_read(&GithubRead::Issues(json!({"labels": "bug"}))).unwrap()), [7]);

    let err = w.github_read(&GithubRead::Pr(99)).unwrap_err().to_string();
    assert!(err.contains("no PR #99 in acme/widgets"), "{err}");

    let requests = gh.requests();
    assert!(requests.iter().all(|r| !r.is_write()), "reads write nothing");
    assert!(requests.iter().all(|r| r.authorization.as_deref() == Some(&format!("Bearer {TOKEN}") as &str)));
}

#[test]
fn merge_refusals_are_results_and_only_clean_green_prs_are_asked_to_merge() {
    let gh = FakeGithub::start(100);
    gh.add_pr(FakePr::new(1, "ok").green(2));
    gh.add_pr(FakePr::new(2, "red").red_on_last_page(2));
    gh.add_pr(FakePr::new(3, "not mergeable").green(1).answer(MergeAnswer::NotMergeable));
    gh.add_pr(FakePr::new(4, "conflict").green(1).answer(MergeAnswer::Conflict));
    gh.add_pr(FakePr::new(5, "pushed meanwhile").green(1).answer(MergeAnswer::HeadMovesFirst));
    gh.add_pr(FakePr::new(6, "moved since review").green(1));
    gh.add_pr(FakePr::new(7, "unapproved").green(1));
    gh.add_pr(FakePr::new(8, "rebase me").green(1));
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut w = live_world(&rt, &gh.url, dir.path(), IndexMap::new());
    let mut merge = |args: Value| w.act(&effect(EffectKind::Merge, args), "run:1").unwrap();

    let head1 = gh.pr(1).head_sha;
    let r = merge(json!({"pr": 1, "method": "squash", "sha": &head1[..7]}));
    assert_eq!(r["status"], "merged", "{r}");
    assert_eq!(r["sha"], head1.as_str());
    assert!(gh.pr(1).merged);
    assert_eq!(merge(json!({"pr": 1}))["reason"], "not_mergeable", "a merged PR is not merged again");

    assert_eq!(merge(json!({"pr": 2}))["reason"], "not_green");
    assert_eq!(merge(json!({"pr": 3}))["reason"], "not_mergeable");
    assert_eq!(merge(json!({"pr": 4}))["reason"], "conflict");
    assert_eq!(merge(json!({"pr": 5, "sha": gh.pr(5).head_sha}))["reason"], "head_moved");
    let r = merge(json!({"pr": 6, "sha": "0123456789abcdef"}));
    assert_eq!(r["reason"], "head_moved");
    assert_eq!(r["status"], "refused");
    assert_eq!(merge(json!({"pr": 7, "require_approval": true}))["reason"], "not_approved");
    assert_eq!(merge(json!({"pr": 8, "method": "rebase"}))["status"], "merged");
    assert_eq!(merge(json!({"pr": 42}))["reason"], "not_found");
    assert_eq!(merge(json!({"pr": 8, "method": "octopus"}))["status"], "failed");

    // Only the PRs that passed coord's checks were asked for, each pinned to its head.
    assert_eq!(
        gh.writes(),
        [
            "PUT /repos/acme/widgets/pulls/1/merge",
            "PUT /repos/acme/widgets/pulls/3/merge",
            "PUT /repos/acme/widgets/pulls/4/merge",
            "PUT /repos/acme/widgets/pulls/5/merge",
            "PUT /repos/acme/widgets/pulls/8/merge"
        ]
    );
    let puts: Vec<Value> = gh.requests().into_iter().filter(|r| r.method == "PUT").map(|r| r.body).collect();
    assert_eq!(puts[0], json!({"merge_method": "squash", "sha": head1}));
    assert_eq!(puts[4]["merge_method"], "rebase");
}

#[test]
fn a_merge_cut_off_before_its_result_is_found_merged_on_resume_and_not_sent_again() {
    let gh = FakeGithub::start(100);
    gh.add_pr(FakePr::new(1, "ok").green(1));
    gh.add_pr(FakePr::new(2, "other").green(1));
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let request = effect(EffectKind::Merge, json!({"pr": 1, "method": "squash"}));
    {
        // The first process acts, then dies before journaling the result.
        let mut w = live_world(&rt, &gh.url, dir.path(), IndexMap::new());
        assert_eq!(w.act(&request, "run-a:7").unwrap()["status"], "merged");
    }
    // The resumed process asks the world first, as the host does for an intent without result.
    let mut w = live_world(&rt, &gh.url, dir.path(), IndexMap::new());
    let found = w.already_done(&request, "run-a:7").unwrap().expect("the merge is found");
    assert_eq!(found["status"], "merged");
    assert_eq!(found["pr"], 1);
    assert_eq!(found["sha"], gh.pr(1).head_sha);
    assert!(found["merge_commit"].is_string());
    let other = effect(EffectKind::Merge, json!({"pr": 2}));
    assert_eq!(w.already_done(&other, "run-a:8").unwrap(), None, "an unmerged PR is merged by acting");
    assert_eq!(gh.writes(), ["PUT /repos/acme/widgets/pulls/1/merge"]);
}

#[test]
fn comments_labels_and_close_are_exact_and_checked_on_resume() {
    let gh = FakeGithub::start(2);
    gh.add_issue(10, "Flaky test", &["bug"]);
    gh.add_pr(FakePr::new(11, "PR").green(1));
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut w = live_world(&rt, &gh.url, dir.path(), IndexMap::new());

    let comment = effect(EffectKind::Comment, json!({"number": 11, "body": "Escalation: PR #11 blocking"}));
    assert_eq!(w.act(&comment, "run-b:3").unwrap()["status"], "done");
    let body = gh.comments(11)[0]["body"].as_str().unwrap().to_owned();
    assert!(body.starts_with("Escalation: PR #11 blocking"), "{body}");
    assert!(body.contains("<!-- coord:effect run-b:3 -->"), "{body}");
    let map_comment =
        effect(EffectKind::Comment, json!({"number": 10, "body": {"title": "Triage", "fields": {"owner": "ana"}}}));
    w.act(&map_comment, "run-b:4").unwrap();
    assert!(gh.comments(10)[0]["body"].as_str().unwrap().starts_with("### Triage\n\n- **owner**: ana"));

    let mut resumed = live_world(&rt, &gh.url, dir.path(), IndexMap::new());
    assert_eq!(resumed.already_done(&comment, "run-b:3").unwrap().unwrap()["status"], "done");
    assert_eq!(resumed.already_done(&comment, "run-b:99").unwrap(), None);

    let label = effect(EffectKind::Label, json!({"number": 11, "labels": ["needs-human"]}));
    assert_eq!(resumed.already_done(&label, "run-b:5").unwrap(), None);
    assert_eq!(w.act(&label, "run-b:5").unwrap()["status"], "done");
    assert_eq!(gh.pr(11).labels, ["needs-human"]);
    assert!(resumed.already_done(&label, "run-b:5").unwrap().is_some());

    let unlabel = effect(EffectKind::Unlabel, json!({"number": 10, "label": "bug"}));
    assert_eq!(w.act(&unlabel, "run-b:6").unwrap()["status"], "done");
    assert_eq!(w.act(&unlabel, "run-b:7").unwrap()["status"], "done", "a label that is not set is gone already");
    assert_eq!(
        w.act(&effect(EffectKind::Unlabel, json!({"number": 404, "label": "bug"})), "run-b:8").unwrap()["reason"],
        "not_found"
    );
    assert_eq!(
        w.act(&effect(EffectKind::Comment, json!({"number": 404, "body": "x"})), "run-b:9").unwrap()["reason"],
        "not_found"
    );

    let close = effect(EffectKind::Close, json!({"number": 10, "comment": "Fixed in #11"}));
    assert_eq!(w.act(&close, "run-b:10").unwrap()["status"], "done");
    // Acting again under the same key (a resume that could not tell) comments no second time.
    assert_eq!(w.act(&close, "run-b:10").unwrap()["status"], "done");
    assert_eq!(gh.comments(10).len(), 2, "the triage comment and one close comment");
    assert!(resumed.already_done(&close, "run-b:10").unwrap().is_some());

    assert_eq!(
        gh.writes(),
        [
            "POST /repos/acme/widgets/issues/11/comments",
            "POST /repos/acme/widgets/issues/10/comments",
            "POST /repos/acme/widgets/issues/11/labels",
            "DELETE /repos/acme/widgets/issues/10/labels/bug",
            "DELETE /repos/acme/widgets/issues/10/labels/bug",
            "DELETE /repos/acme/widgets/issues/404/labels/bug",
            "POST /repos/acme/widgets/issues/404/comments",
            "POST /repos/acme/widgets/issues/10/comments",
            "PATCH /repos/acme/widgets/issues/10",
            "PATCH /repos/acme/widgets/issues/10",
        ]
    );
}

#[test]
fn a_long_rate_limit_is_an_error_naming_the_reset_time() {
    let gh = FakeGithub::start(100);
    gh.add_pr(FakePr::new(1, "ok"));
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut w = live_world(&rt, &gh.url, dir.path(), IndexMap::new());
    let reset_at = chrono::Utc::now().timestamp() + 3600;
    gh.queue_rate_limit(RateLimit::Primary { reset_at });
    let err = w.github_read(&GithubRead::Prs(json!({}))).unwrap_err().to_string();
    let expected =
        chrono::DateTime::from_timestamp(reset_at, 0).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert!(err.contains("rate limit"), "{err}");
    assert!(err.contains(&expected), "names the reset time {expected}: {err}");
    assert!(!err.contains(TOKEN));
    assert_eq!(gh.requests().len(), 1, "a wait past the limit is not sat through");

    // An effect meeting a rate limit is an error the host turns into a failed result.
    gh.queue_rate_limit(RateLimit::Primary { reset_at });
    let err = w.act(&effect(EffectKind::Label, json!({"number": 1, "labels": ["x"]})), "k:1").unwrap_err();
    assert!(err.to_string().contains(&expected), "{err}");
}

#[test]
fn a_short_rate_limit_is_waited_out() {
    let gh = FakeGithub::start(100);
    gh.add_pr(FakePr::new(1, "ok"));
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut w = live_world(&rt, &gh.url, dir.path(), IndexMap::new());
    gh.queue_rate_limit(RateLimit::Secondary { retry_after: 1 });
    let started = std::time::Instant::now();
    let prs = w.github_read(&GithubRead::Prs(json!({}))).unwrap();
    assert_eq!(numbers(&prs), [1]);
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    assert_eq!(gh.requests().len(), 2);
}

#[test]
fn an_enterprise_base_path_is_kept_on_every_page() {
    let gh = FakeGithub::start(1);
    for n in 1..=3 {
        gh.add_pr(FakePr::new(n, "x"));
    }
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut w = live_world(&rt, &format!("{}/api/v3", gh.url), dir.path(), IndexMap::new());
    assert_eq!(numbers(&w.github_read(&GithubRead::Prs(json!({}))).unwrap()), [3, 2, 1]);
    let paths: Vec<String> = gh.requests().iter().map(|r| r.uri.clone()).collect();
    assert_eq!(paths.len(), 3);
    assert!(paths.iter().all(|p| p.starts_with("/api/v3/repos/acme/widgets/pulls?")), "{paths:?}");
    assert!(gh.requests().iter().all(|r| r.authorization.is_some()), "the token goes to every page");
}
