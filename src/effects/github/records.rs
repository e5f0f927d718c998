//! GitHub API objects turned into the records coordinators see: the same fields, names and
//! value kinds as the scenario fixtures (`scenario/world.rs`), so a coordinator routes the same
//! offline and live. Pure functions over JSON; no I/O.

use serde_json::{json, Value};

fn login(v: &Value) -> Value {
    v.get("login").cloned().unwrap_or(Value::Null)
}

fn label_names(item: &Value) -> Value {
    Value::Array(
        item["labels"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l.get("name").or(Some(l)).and_then(Value::as_str))
            .map(Value::from)
            .collect(),
    )
}

fn text(v: &Value) -> Value {
    match v {
        Value::String(_) => v.clone(),
        _ => Value::from(""),
    }
}

/// A pull request: `number, title, author, state, base, head, head_sha, labels, draft,
/// mergeable, merged`, plus `url`, `body` and timestamps. `mergeable` is `()` while GitHub is
/// still computing it (and in listings, which never carry it).
pub fn pull_request(pr: &Value) -> Value {
    let merged = pr.get("merged").and_then(Value::as_bool).unwrap_or(false) || !pr["merged_at"].is_null();
    json!({
        "number": pr["number"],
        "title": text(&pr["title"]),
        "author": login(&pr["user"]),
        "state": pr["state"],
        "base": pr["base"]["ref"],
        "head": pr["head"]["ref"],
        "head_sha": pr["head"]["sha"],
        "labels": label_names(pr),
        "draft": pr.get("draft").and_then(Value::as_bool).unwrap_or(false),
        "mergeable": pr.get("mergeable").cloned().unwrap_or(Value::Null),
        "merged": merged,
        "url": pr["html_url"],
        "body": text(&pr["body"]),
        "created_at": pr["created_at"],
        "updated_at": pr["updated_at"],
    })
}

/// An issue: `number, title, author, state, labels, assignees, body, comments`, plus `url` and
/// timestamps.
pub fn issue(item: &Value) -> Value {
    json!({
        "number": item["number"],
        "title": text(&item["title"]),
        "author": login(&item["user"]),
        "state": item["state"],
        "labels": label_names(item),
        "assignees": Value::Array(item["assignees"].as_array().into_iter().flatten().map(login).collect()),
        "body": text(&item["body"]),
        "comments": item.get("comments").cloned().unwrap_or(json!(0)),
        "url": item["html_url"],
        "created_at": item["created_at"],
        "updated_at": item["updated_at"],
    })
}

/// True for an item of the issues listing that is really a pull request.
pub fn is_pull_request(item: &Value) -> bool {
    item.get("pull_request").is_some_and(|p| !p.is_null())
}

/// A review: `author, state` (`approved`, `changes_requested`, `commented`, `dismissed`,
/// `pending`), `commit_id`, `submitted_at`, `body`.
pub fn review(r: &Value) -> Value {
    json!({
        "id": r["id"],
        "author": login(&r["user"]),
        "state": r["state"].as_str().unwrap_or("").to_ascii_lowercase(),
        "commit_id": r["commit_id"],
        "submitted_at": r["submitted_at"],
        "body": text(&r["body"]),
    })
}

/// True when the latest review of every reviewer leaves at least one approval and no request
/// for changes (comments do not count either way).
pub fn approved(reviews: &[Value]) -> bool {
    let mut latest: indexmap::IndexMap<String, String> = indexmap::IndexMap::new();
    for r in reviews {
        let state = r["state"].as_str().unwrap_or("").to_ascii_lowercase();
        if matches!(state.as_str(), "approved" | "changes_requested" | "dismissed") {
            let who = r["user"]["login"].as_str().or(r["author"].as_str()).unwrap_or("").to_owned();
            latest.insert(who, state);
        }
    }
    latest.values().any(|s| s == "approved") && !latest.values().any(|s| s == "changes_requested")
}

/// One check as `github::checks` reports it.
fn check_detail(kind: &str, name: &Value, state: &str, raw: &Value, url: &Value) -> Value {
    json!({ "kind": kind, "name": name, "state": state, "raw": raw, "url": url })
}

fn status_state(s: &str) -> &'static str {
    match s {
        "success" => "green",
        "pending" => "pending",
        _ => "red",
    }
}

fn check_run_state(run: &Value) -> &'static str {
    if run["status"].as_str() != Some("completed") {
        return "pending";
    }
    match run["conclusion"].as_str() {
        Some("success" | "neutral" | "skipped") => "green",
        Some("stale") | None => "pending",
        Some(_) => "red",
    }
}

/// Summarizes a head commit's statuses (newest first, as GitHub lists them; only the newest
/// per context counts) and check runs into `{state, sha, details, total}`: red if anything
/// failed, else pending if anything is still running, else green. A commit with no checks at
/// all is `when_none`.
pub fn checks_summary(sha: &str, statuses: &[Value], check_runs: &[Value], when_none: &str) -> Value {
    let mut details = Vec::new();
    let mut seen_contexts = std::collections::HashSet::new();
    for s in statuses {
        let context = s["context"].as_str().unwrap_or("").to_owned();
        if !seen_contexts.insert(context) {
            continue;
        }
        let raw = s["state"].as_str().unwrap_or("");
        details.push(check_detail("status", &s["context"], status_state(raw), &s["state"], &s["target_url"]));
    }
    for run in check_runs {
        let raw = if run["status"].as_str() == Some("completed") { &run["conclusion"] } else { &run["status"] };
        details.push(check_detail("check_run", &run["name"], check_run_state(run), raw, &run["html_url"]));
    }
    details.sort_by(|a, b| {
        let key =
            |d: &Value| (d["kind"].as_str().unwrap_or("").to_owned(), d["name"].as_str().unwrap_or("").to_owned());
        key(a).cmp(&key(b))
    });
    let states: Vec<&str> = details.iter().filter_map(|d| d["state"].as_str()).collect();
    let state = if states.is_empty() {
        when_none
    } else if states.contains(&"red") {
        "red"
    } else if states.contains(&"pending") {
        "pending"
    } else {
        "green"
    };
    json!({ "state": state, "sha": sha, "total": details.len(), "details": details })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_request_has_the_fixture_fields() {
        let api = json!({
            "number": 7, "title": "T", "user": {"login": "ana"}, "state": "open",
            "base": {"ref": "main"}, "head": {"ref": "feat", "sha": "abc123"},
            "labels": [{"name": "bug"}], "draft": false, "mergeable": true, "merged_at": null,
            "html_url": "https://github.com/a/b/pull/7", "body": null
        });
        let pr = pull_request(&api);
        for field in
            ["number", "title", "author", "state", "base", "head", "head_sha", "labels", "draft", "mergeable", "merged"]
        {
            assert!(!pr[field].is_null(), "{field}");
        }
        assert_eq!(pr["labels"], json!(["bug"]));
        assert_eq!(pr["author"], "ana");
        assert_eq!(pr["merged"], false);
        assert_eq!(pr["body"], "");
    }

    #[test]
    fn checks_are_red_over_pending_over_green() {
        let ok = json!({"name": "unit", "status": "completed", "conclusion": "success"});
        let running = json!({"name": "lint", "status": "in_progress", "conclusion": null});
        let failed = json!({"name": "e2e", "status": "completed", "conclusion": "failure"});
        assert_eq!(checks_summary("s", &[], std::slice::from_ref(&ok), "pending")["state"], "green");
        assert_eq!(checks_summary("s", &[], &[ok.clone(), running.clone()], "pending")["state"], "pending");
        assert_eq!(checks_summary("s", &[], &[ok, running, failed], "pending")["state"], "red");
        assert_eq!(checks_summary("s", &[], &[], "pending")["state"], "pending");
        // Only the newest status per context counts.
        let statuses = [json!({"context": "ci", "state": "success"}), json!({"context": "ci", "state": "failure"})];
        let s = checks_summary("s", &statuses, &[], "pending");
        assert_eq!(s["state"], "green");
        assert_eq!(s["total"], 1);
    }

    #[test]
    fn approval_needs_an_approval_and_no_standing_change_request() {
        let r = |who: &str, state: &str| json!({"user": {"login": who}, "state": state});
        assert!(approved(&[r("a", "APPROVED")]));
        assert!(!approved(&[r("a", "APPROVED"), r("b", "CHANGES_REQUESTED")]));
        assert!(approved(&[r("b", "CHANGES_REQUESTED"), r("a", "APPROVED"), r("b", "APPROVED")]));
        assert!(!approved(&[r("a", "COMMENTED")]));
    }
}
