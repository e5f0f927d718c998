//! GitHub as it really answers (issue #22): a renamed repository (301 on reads, 307 on
//! writes), a redirect to another host, primary and secondary rate limits with the headers
//! GitHub sends, a list that shifts while it is paged, drafts, and a 502 HTML page. First
//! through `LiveWorld` (as the host calls it), then through the `coord` binary as a user runs it.

use super::binary::{groom_project, journal, live, route, GROOM};
use super::fake_github::{FakeGithub, FakePr, MergeAnswer, RateLimit, REPO_ID};
use super::fake_receiver::FakeReceiver;
use super::{effect, live_world, live_world_with, runtime, TOKEN};
use coord::effects::github::GithubSettings;
use coord::effects::{EffectKind, GithubRead, World};
use indexmap::IndexMap;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn numbers(v: &Value) -> Vec<u64> {
    v.as_array().unwrap().iter().map(|i| i["number"].as_u64().unwrap()).collect()
}

/// `[github]` with rate-limit waits scaled down for a test: at most `max` seconds in all, and
/// a first secondary-limit wait of one second.
fn quick_limits(max: u64) -> GithubSettings {
    GithubSettings {
        max_rate_limit_wait: Some(Duration::from_secs(max)),
        secondary_rate_limit_wait: Some(Duration::from_secs(1)),
        ..GithubSettings::default()
    }
}

fn moved_route(rest: &str) -> String {
    format!("/repositories/{REPO_ID}/{rest}")
}

// ---- redirects ---------------------------------------------------------------------------

#[test]
fn a_renamed_repository_is_followed_for_reads_and_for_writes_with_the_same_method_and_body() {
    let gh = FakeGithub::start(2);
    gh.add_pr(FakePr::new(1, "ok").green(3));
    gh.add_pr(FakePr::new(2, "other").green(1).labels(&["stale"]));
    gh.add_pr(FakePr::new(3, "third"));
    gh.rename_repository();
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut w = live_world(&rt, &gh.url, dir.path(), IndexMap::new());

    assert_eq!(numbers(&w.github_read(&GithubRead::Prs(json!({}))).unwrap()), [3, 2, 1]);
    assert_eq!(w.github_read(&GithubRead::Checks(1)).unwrap()["state"], "green");
    let head = gh.pr(1).head_sha;
    let merged = w.act(&effect(EffectKind::Merge, json!({"pr": 1, "sha": head})), "run:1").unwrap();
    assert_eq!(merged["status"], "merged", "{merged}");
    assert!(gh.pr(1).merged);
    let comment = w.act(&effect(EffectKind::Comment, json!({"number": 2, "body": "hello"})), "run:2").unwrap();
    assert_eq!(comment["status"], "done", "{comment}");
    let label = w.act(&effect(EffectKind::Label, json!({"number": 2, "labels": ["needs-human"]})), "run:3").unwrap();
    assert_eq!(label["status"], "done", "{label}");
    let unlabel = w.act(&effect(EffectKind::Unlabel, json!({"number": 2, "label": "stale"})), "run:4").unwrap();
    assert_eq!(unlabel["status"], "done", "{unlabel}");
    let close = w.act(&effect(EffectKind::Close, json!({"number": 3, "comment": ""})), "run:5").unwrap();
    assert_eq!(close["status"], "done", "{close}");
    assert_eq!(gh.pr(2).labels, ["needs-human"]);
    assert_eq!(gh.pr(3).state, "closed");

    // Every write went to the old route (307) and again, unchanged, to the new one.
    let requests = gh.requests();
    let writes: Vec<_> = requests.iter().filter(|r| r.is_write()).collect();
    let expected = [
        ("PUT", "pulls/1/merge"),
        ("POST", "issues/2/comments"),
        ("POST", "issues/2/labels"),
        ("DELETE", "issues/2/labels/stale"),
        ("PATCH", "issues/3"),
    ];
    assert_eq!(writes.len(), 2 * expected.len(), "{:?}", gh.writes());
    for (pair, (method, rest)) in writes.chunks(2).zip(expected) {
        assert_eq!((pair[0].method.as_str(), pair[0].path()), (method, route(rest).as_str()));
        assert_eq!((pair[1].method.as_str(), pair[1].path()), (method, moved_route(rest).as_str()));
        assert_eq!(pair[0].body, pair[1].body, "the body is sent again as it was");
    }
    // Reads followed their 301s, every page included.
    assert!(requests.iter().any(|r| r.uri.starts_with(&moved_route("pulls?")) && r.uri.contains("page=2")));
    assert!(requests.iter().all(|r| r.authorization.as_deref() == Some(&format!("Bearer {TOKEN}") as &str)));
}

#[test]
fn a_write_redirected_with_a_301_is_not_sent_again_as_anything_else() {
    let gh = FakeGithub::start(100);
    gh.add_pr(FakePr::new(1, "ok"));
    gh.rename_repository_redirecting_writes_with(301);
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut w = live_world(&rt, &gh.url, dir.path(), IndexMap::new());
    let err = w.act(&effect(EffectKind::Comment, json!({"number": 1, "body": "hi"})), "run:1").unwrap_err().to_string();
    assert!(
        err.starts_with("GitHub POST /repos/acme/widgets/issues/1/comments: 301 Moved Permanently: moved to "),
        "{err}"
    );
    assert!(err.contains("only on a 307 or 308"), "{err}");
    assert_eq!(gh.writes(), ["POST /repos/acme/widgets/issues/1/comments"], "nothing was sent after the 301");
    assert!(gh.comments(1).is_empty());
}

#[test]
fn a_redirect_to_another_host_is_followed_without_the_token() {
    let elsewhere = FakeGithub::start(100);
    elsewhere.add_pr(FakePr::new(7, "moved"));
    let gh = FakeGithub::start(100);
    gh.move_to_host(&elsewhere.url);
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut w = live_world(&rt, &gh.url, dir.path(), IndexMap::new());
    assert_eq!(numbers(&w.github_read(&GithubRead::Prs(json!({}))).unwrap()), [7]);
    assert_eq!(w.github_read(&GithubRead::Pr(7)).unwrap()["title"], "moved");
    assert!(gh.requests().iter().all(|r| r.authorization.is_some()), "the API's own host gets the token");
    let there = elsewhere.requests();
    assert_eq!(there.len(), 2);
    assert!(there.iter().all(|r| r.authorization.is_none()), "another host never does: {there:?}");
}

#[test]
fn redirects_are_followed_a_bounded_number_of_times() {
    let gh = FakeGithub::start(100);
    gh.move_to_host(&gh.url); // every answer redirects to itself
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut w = live_world(&rt, &gh.url, dir.path(), IndexMap::new());
    let err = w.github_read(&GithubRead::Pr(1)).unwrap_err().to_string();
    assert!(err.contains("more than 5 redirects"), "{err}");
    assert_eq!(gh.requests().len(), 6);
}

// ---- rate limits -------------------------------------------------------------------------

#[test]
fn a_secondary_limit_without_retry_after_waits_then_backs_off_exponentially() {
    let gh = FakeGithub::start(100);
    gh.add_pr(FakePr::new(1, "ok"));
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();

    // Once: one wait of [github] secondary_rate_limit_wait, not the hourly reset (an hour away).
    let mut w = live_world_with(&rt, &gh.url, dir.path(), IndexMap::new(), quick_limits(10));
    gh.queue_rate_limit(RateLimit::SecondaryWithoutRetryAfter);
    let started = Instant::now();
    assert_eq!(numbers(&w.github_read(&GithubRead::Prs(json!({}))).unwrap()), [1]);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(gh.requests().len(), 2);

    // Twice in a row: 1s, then 2s.
    let mut w = live_world_with(&rt, &gh.url, dir.path(), IndexMap::new(), quick_limits(10));
    gh.queue_rate_limit(RateLimit::SecondaryWithoutRetryAfter);
    gh.queue_rate_limit(RateLimit::SecondaryWithoutRetryAfter);
    let started = Instant::now();
    assert_eq!(numbers(&w.github_read(&GithubRead::Prs(json!({}))).unwrap()), [1]);
    assert!(started.elapsed() >= Duration::from_secs(3));

    // Three times with 5s to spend: 1s and 2s are waited, the 4s after them would pass the bound.
    let mut w = live_world_with(&rt, &gh.url, dir.path(), IndexMap::new(), quick_limits(5));
    for _ in 0..3 {
        gh.queue_rate_limit(RateLimit::SecondaryWithoutRetryAfter);
    }
    let before = gh.requests().len();
    let err = w.github_read(&GithubRead::Prs(json!({}))).unwrap_err().to_string();
    assert!(err.contains("secondary rate limit exceeded (GET /repos/acme/widgets/pulls?state=open)"), "{err}");
    assert!(err.contains("(in 4s)") && err.contains("3s so far") && err.contains("max_rate_limit_wait"), "{err}");
    assert_eq!(gh.requests().len() - before, 3);
}

#[test]
fn a_spent_primary_limit_is_waited_out_until_its_reset_within_the_runs_bound() {
    let gh = FakeGithub::start(100);
    gh.add_pr(FakePr::new(1, "ok"));
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut w = live_world_with(&rt, &gh.url, dir.path(), IndexMap::new(), quick_limits(6));
    gh.queue_rate_limit(RateLimit::Primary { reset_at: chrono::Utc::now().timestamp() + 2 });
    let started = Instant::now();
    assert_eq!(numbers(&w.github_read(&GithubRead::Prs(json!({}))).unwrap()), [1]);
    assert!(started.elapsed() >= Duration::from_secs(2));

    // The bound is the run's: the first wait counts against the second.
    let reset_at = chrono::Utc::now().timestamp() + 5;
    gh.queue_rate_limit(RateLimit::Primary { reset_at });
    let err = w.github_read(&GithubRead::Pr(1)).unwrap_err().to_string();
    let expected =
        chrono::DateTime::from_timestamp(reset_at, 0).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert!(err.contains("rate limit exceeded (GET /repos/acme/widgets/pulls/1)"), "{err}");
    assert!(err.contains(&format!("it resets at {expected}")), "{err}");
}

// ---- lists, drafts, error texts ----------------------------------------------------------

#[test]
fn a_pr_opened_while_the_list_is_paged_shifts_the_pages_and_each_pr_comes_once() {
    let gh = FakeGithub::start(2);
    for n in 1..=5 {
        gh.add_pr(FakePr::new(n, "x"));
    }
    // Page 1 is [5, 4]; then #6 opens, so page 2 is [4, 3] and #4 comes again.
    gh.open_pr_while_listing(1, FakePr::new(6, "opened meanwhile"));
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut w = live_world(&rt, &gh.url, dir.path(), IndexMap::new());
    let prs = w.github_read(&GithubRead::Prs(json!({}))).unwrap();
    assert_eq!(numbers(&prs), [5, 4, 3, 2, 1]);
    let notes = w.take_notes();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("GET /repos/acme/widgets/pulls?state=open: the list changed while coord read it"),
        "{notes:?}"
    );
    assert!(notes[0].contains("#4 listed twice"), "{notes:?}");
    assert!(w.take_notes().is_empty(), "each note is taken once");
    // Read again, the list is whole and nothing is noted.
    assert_eq!(numbers(&w.github_read(&GithubRead::Prs(json!({}))).unwrap()), [6, 5, 4, 3, 2, 1]);
    assert!(w.take_notes().is_empty());
}

#[test]
fn a_draft_is_marked_and_not_sent_to_merge_and_githubs_405_for_one_reads_draft() {
    let gh = FakeGithub::start(100);
    gh.add_pr(FakePr::new(1, "WIP").green(1).draft());
    gh.add_pr(FakePr::new(2, "ready").green(1).answer(MergeAnswer::DraftMeanwhile));
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut w = live_world(&rt, &gh.url, dir.path(), IndexMap::new());
    let prs = w.github_read(&GithubRead::Prs(json!({}))).unwrap();
    assert_eq!(prs.as_array().unwrap().iter().map(|p| p["draft"].clone()).collect::<Vec<_>>(), [false, true]);

    let r = w.act(&effect(EffectKind::Merge, json!({"pr": 1})), "run:1").unwrap();
    assert_eq!((r["status"].as_str(), r["reason"].as_str()), (Some("refused"), Some("draft")), "{r}");
    assert!(gh.writes().is_empty(), "a draft is not sent to merge");

    // Turned into a draft between coord's look and its merge: GitHub's 405 says so.
    let r = w.act(&effect(EffectKind::Merge, json!({"pr": 2})), "run:2").unwrap();
    assert_eq!((r["status"].as_str(), r["reason"].as_str()), (Some("refused"), Some("draft")), "{r}");
    assert_eq!(r["message"], "Pull Request is still a draft");
    assert_eq!(gh.writes(), ["PUT /repos/acme/widgets/pulls/2/merge"]);
}

#[test]
fn a_502_html_page_is_one_line_and_routes_read_the_same_in_every_error() {
    let gh = FakeGithub::start(100);
    gh.add_pr(FakePr::new(1, "ok"));
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut w = live_world(&rt, &gh.url, dir.path(), IndexMap::new());
    gh.queue_bad_gateway(3); // a read is tried three times
    let err = w.github_read(&GithubRead::Prs(json!({}))).unwrap_err().to_string();
    assert_eq!(err, "github.prs: GitHub GET /repos/acme/widgets/pulls?state=open: 502 Bad Gateway: Unicorn! · GitHub");

    // A write meeting it: sent once, then GitHub is asked whether it happened.
    gh.queue_bad_gateway(1);
    let err = w.act(&effect(EffectKind::Label, json!({"number": 1, "labels": ["x"]})), "run:1").unwrap_err();
    assert_eq!(err.to_string(), "GitHub POST /repos/acme/widgets/issues/1/labels: 502 Bad Gateway: Unicorn! · GitHub");

    // A rate limit on the same list names the route the same way.
    gh.queue_rate_limit(RateLimit::Primary { reset_at: chrono::Utc::now().timestamp() + 3600 });
    let err = w.github_read(&GithubRead::Prs(json!({}))).unwrap_err().to_string();
    assert!(err.contains("(GET /repos/acme/widgets/pulls?state=open)"), "{err}");
    assert!(!err.contains("per_page"), "{err}");
}

// ---- the binary, as a user runs it -------------------------------------------------------

/// The groom-prs acceptance fixture: #21 merges, #22 red, #23 blocking, #24 reviewer crashes,
/// #25 pending.
fn groom_prs(gh: &FakeGithub) {
    gh.add_pr(FakePr::new(21, "Add retry to fetch").green(5));
    gh.add_pr(FakePr::new(22, "Bump serde").red_on_last_page(5));
    gh.add_pr(FakePr::new(23, "Rewrite auth middleware").green(1));
    gh.add_pr(FakePr::new(24, "Tidy logging").green(1));
    gh.add_pr(FakePr::new(25, "Speed up CI cache").pending());
}

#[test]
fn groom_prs_on_a_renamed_repository_merges_comments_and_labels_as_usual() {
    let gh = FakeGithub::start(2);
    groom_prs(&gh);
    gh.rename_repository();
    let slack = FakeReceiver::start();
    let p = groom_project();
    let out = live(&p, &gh, &slack).args(GROOM).args(["--json"]).run();
    out.code(0);
    let v = out.json();
    assert_eq!(
        v["result"],
        json!({"merged": [21], "fixed": [], "escalated": [24, 23], "waiting": [25, 22], "drafts": []})
    );
    let statuses: Vec<&str> = v["effects"].as_array().unwrap().iter().map(|e| e["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["done", "done", "done", "done", "merged", "sent"]);
    assert!(gh.pr(21).merged);
    assert_eq!(gh.comments(24).len(), 1);
    assert_eq!(gh.pr(23).labels, ["needs-human"]);
    let done_at_new_route: Vec<String> =
        gh.writes().into_iter().filter(|w| w.contains(&format!("/repositories/{REPO_ID}/"))).collect();
    assert_eq!(
        done_at_new_route,
        [
            format!("POST {}", moved_route("issues/24/comments")),
            format!("POST {}", moved_route("issues/24/labels")),
            format!("POST {}", moved_route("issues/23/comments")),
            format!("POST {}", moved_route("issues/23/labels")),
            format!("PUT {}", moved_route("pulls/21/merge")),
        ]
    );
}

#[test]
fn a_run_whose_writes_fail_says_so_and_exits_4_unless_allowed() {
    let gh = FakeGithub::start(100);
    groom_prs(&gh);
    gh.deny_writes();
    let slack = FakeReceiver::start();
    let p = groom_project();
    let out = live(&p, &gh, &slack).args(GROOM).run();
    out.code(4);
    assert!(
        out.stderr.contains("coord: 5 of 6 effects failed: github.comment ×2, github.label ×2, merge ×1; the first: GitHub POST /repos/acme/widgets/issues/24/comments: 403 Forbidden: Resource not accessible by integration"),
        "{}",
        out.stderr
    );
    out.stdout_has("merge PR #21 squash -> failed");
    assert_eq!(slack.deliveries().len(), 1, "the summary still went out");

    let out = live(&p, &gh, &slack).args(GROOM).args(["--allow-failed-effects"]).run();
    out.code(0);
    assert!(out.stderr.contains("coord: 5 of 6 effects failed"), "still said: {}", out.stderr);
}

#[test]
fn a_secondary_limit_without_retry_after_is_waited_out_and_the_run_finishes() {
    let gh = FakeGithub::start(100);
    groom_prs(&gh);
    gh.queue_rate_limit(RateLimit::SecondaryWithoutRetryAfter);
    let slack = FakeReceiver::start();
    let p = groom_project();
    let config = p.read("coord.toml");
    p.write(
        "coord.toml",
        &format!("{config}\n[github]\nsecondary_rate_limit_wait = \"1s\"\nmax_rate_limit_wait = \"30s\"\n"),
    );
    let started = Instant::now();
    let out = live(&p, &gh, &slack).args(GROOM).args(["--json"]).run();
    out.code(0);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(out.json()["result"]["merged"], json!([21]));
    let line = out.stderr.lines().find(|l| l.contains("secondary rate limit")).unwrap_or_default();
    assert!(
        line.contains("on GET /repos/acme/widgets/pulls?state=open: waiting 1s, until 20")
            && line.contains("no retry-after"),
        "progress says what it waits for and until when: {}",
        out.stderr
    );
}

#[test]
fn a_pr_opened_while_groom_prs_pages_the_list_is_reviewed_once() {
    let gh = FakeGithub::start(2);
    groom_prs(&gh);
    gh.open_pr_while_listing(1, FakePr::new(26, "Opened meanwhile").green(1));
    let slack = FakeReceiver::start();
    let p = groom_project();
    let out = live(&p, &gh, &slack).args(GROOM).args(["--json"]).run();
    out.code(0);
    let v = out.json();
    assert_eq!(v["sessions"], 5, "one review per PR listed: {v}");
    assert_eq!(
        v["result"],
        json!({"merged": [21], "fixed": [], "escalated": [24, 23], "waiting": [25, 22], "drafts": []})
    );
    let merges = gh.writes().iter().filter(|w| w.starts_with("PUT")).count();
    assert_eq!(merges, 1);
    assert!(
        out.stderr.contains("the list changed while coord read it page by page (#24 listed twice"),
        "{}",
        out.stderr
    );
    let run = p.runs().pop().unwrap();
    let log = std::fs::read_to_string(run.join("run.log")).unwrap();
    assert!(log.contains("the list changed while coord read it"), "{log}");
    let listed = journal(&run).into_iter().find(|e| e["fn"] == "github.prs").unwrap();
    assert_eq!(numbers(&listed["result"]), [25, 24, 23, 22, 21], "the journal holds each PR once");
}

#[test]
fn groom_prs_leaves_a_draft_unreviewed_and_unmerged() {
    let gh = FakeGithub::start(100);
    gh.add_pr(FakePr::new(21, "Add retry to fetch").green(1));
    gh.add_pr(FakePr::new(27, "WIP: new parser").green(1).draft());
    let slack = FakeReceiver::start();
    let p = groom_project();
    let out = live(&p, &gh, &slack).args(GROOM).args(["--json"]).run();
    out.code(0);
    let v = out.json();
    assert_eq!(v["result"], json!({"merged": [21], "fixed": [], "escalated": [], "waiting": [27], "drafts": [27]}));
    assert_eq!(v["sessions"], 1, "the draft is not reviewed");
    assert_eq!(gh.writes(), [format!("PUT {}", route("pulls/21/merge"))]);
    assert!(!gh.pr(27).merged);
}

#[test]
fn a_502_page_fails_the_run_with_one_line() {
    let gh = FakeGithub::start(100);
    groom_prs(&gh);
    gh.queue_bad_gateway(3);
    let slack = FakeReceiver::start();
    let p = groom_project();
    let out = live(&p, &gh, &slack).args(GROOM).run();
    out.code(1);
    let line = out.stderr.lines().find(|l| l.contains("502")).unwrap_or_default();
    assert!(
        line.ends_with(
            "github.prs: GitHub GET /repos/acme/widgets/pulls?state=open: 502 Bad Gateway: Unicorn! · GitHub"
        ),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("<!DOCTYPE") && !out.stderr.contains("<style"), "{}", out.stderr);
}
