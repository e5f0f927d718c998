//! `merge(pr, opts)` on GitHub: the checks coord makes before asking (open, green, approved,
//! still at the reviewed head), the merge request itself pinned to the head SHA, and the
//! answers turned into results: `merged`, or `refused` with a reason (`not_found`,
//! `not_mergeable`, `draft`, `not_green`, `not_approved`, `head_moved`, `conflict`).
//!
//! Refusals are results, never errors. It must not retry the merge request: when its answer is
//! lost, the caller asks [`already_merged`] instead.

use super::client::{GithubError, Retry};
use super::{records, GithubBackend};
use reqwest::Method;
use serde_json::{json, Value};

const METHODS: [&str; 3] = ["squash", "merge", "rebase"];

fn refused(n: u64, reason: &str, extra: Value) -> Value {
    let mut v = json!({"status": "refused", "reason": reason, "pr": n});
    if let (Some(obj), Value::Object(more)) = (v.as_object_mut(), extra) {
        obj.extend(more);
    }
    v
}

fn method_of(args: &Value) -> &str {
    args.get("method").and_then(Value::as_str).unwrap_or("squash")
}

/// A full head SHA matches the SHA a review pinned if equal, or if the pinned one is an
/// abbreviation of it (7 characters at least).
fn same_head(head: &str, pinned: &str) -> bool {
    head == pinned || (pinned.len() >= 7 && head.starts_with(pinned))
}

/// What a 405/409/422 from the merge endpoint means. GitHub says which by its message only
/// (405 "Pull Request is still a draft", 405 "Merge conflict", ...).
fn refusal_reason(status: u16, message: &str) -> &'static str {
    let message = message.to_ascii_lowercase();
    match status {
        405 if message.contains("draft") => "draft",
        _ if message.contains("conflict") => "conflict",
        409 => "head_moved",
        404 => "not_found",
        _ => "not_mergeable",
    }
}

pub async fn merge(gh: &GithubBackend, n: u64, args: &Value) -> Result<Value, GithubError> {
    let method = method_of(args);
    if !METHODS.contains(&method) {
        return Ok(
            json!({"status": "failed", "pr": n, "error": format!("merge: method must be one of {METHODS:?}, not {method:?}")}),
        );
    }
    let pr = match gh.pull(n).await {
        Ok(pr) => pr,
        Err(e) if e.status() == Some(404) => return Ok(refused(n, "not_found", json!({}))),
        Err(e) => return Err(e),
    };
    let record = records::pull_request(&pr);
    if record["merged"] == true || record["state"] != "open" {
        return Ok(refused(
            n,
            "not_mergeable",
            json!({"message": format!("PR #{n} is {}", if record["merged"] == true { "already merged" } else { "closed" })}),
        ));
    }
    if record["draft"] == true {
        // GitHub would answer 405: a draft is not ready, whatever its checks say.
        return Ok(refused(n, "draft", json!({"message": format!("PR #{n} is a draft")})));
    }
    let head = record["head_sha"].as_str().unwrap_or("").to_owned();
    if args.get("require_green").and_then(Value::as_bool).unwrap_or(true) {
        let checks = gh.checks_of(&head).await?;
        if checks["state"] != "green" {
            return Ok(refused(n, "not_green", json!({"checks": checks["state"]})));
        }
    }
    if args.get("require_approval").and_then(Value::as_bool).unwrap_or(false)
        && !records::approved(&gh.reviews_raw(n).await?)
    {
        return Ok(refused(n, "not_approved", json!({})));
    }
    if let Some(pinned) = args.get("sha").and_then(Value::as_str) {
        if !same_head(&head, pinned) {
            return Ok(refused(n, "head_moved", json!({"head_sha": head, "expected_sha": pinned})));
        }
    }
    if record["mergeable"] == false && pr["mergeable_state"] == "dirty" {
        return Ok(refused(n, "conflict", json!({"message": "the PR has merge conflicts"})));
    }

    // Pinned to the head checked above: if it moves now, GitHub refuses (409) instead of merging
    // commits nobody reviewed.
    let route = gh.route(&format!("pulls/{n}/merge"));
    let body = json!({ "merge_method": method, "sha": head });
    let response = gh.client().request(Method::PUT, &route, Some(&body), Retry::Write).await?;
    match response.status {
        200..=299 => Ok(
            json!({"status": "merged", "pr": n, "method": method, "sha": head, "merge_commit": response.body["sha"]}),
        ),
        404 | 405 | 409 | 422 => {
            let message = response.message();
            Ok(refused(n, refusal_reason(response.status, &message), json!({"message": message})))
        }
        _ => Err(response.into_error(Method::PUT, &route)),
    }
}

/// The `merged` result if PR `n` is merged, for resume (and for a merge whose answer was lost).
pub async fn already_merged(gh: &GithubBackend, n: u64, args: &Value) -> Result<Option<Value>, GithubError> {
    let pr = match gh.pull(n).await {
        Ok(pr) => pr,
        Err(e) if e.status() == Some(404) => return Ok(None),
        Err(e) => return Err(e),
    };
    if records::pull_request(&pr)["merged"] != true {
        return Ok(None);
    }
    Ok(Some(json!({
        "status": "merged",
        "pr": n,
        "method": method_of(args),
        "sha": pr["head"]["sha"],
        "merge_commit": pr["merge_commit_sha"],
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_answers_map_to_reasons() {
        assert_eq!(refusal_reason(405, "Pull Request is not mergeable"), "not_mergeable");
        assert_eq!(refusal_reason(405, "Pull Request is still a draft"), "draft");
        assert_eq!(refusal_reason(405, "Merge conflict"), "conflict");
        assert_eq!(refusal_reason(409, "Head branch was modified. Review and try the merge again."), "head_moved");
        assert_eq!(refusal_reason(409, "merge conflict between base and head"), "conflict");
        assert_eq!(refusal_reason(422, "Merge commits are not allowed on this repository."), "not_mergeable");
    }

    #[test]
    fn pinned_heads_may_be_abbreviated() {
        assert!(same_head("a1b2c3d4e5f6", "a1b2c3d4e5f6"));
        assert!(same_head("a1b2c3d4e5f6", "a1b2c3d"));
        assert!(!same_head("a1b2c3d4e5f6", "a1b2"));
        assert!(!same_head("a1b2c3d4e5f6", "ffffffff"));
    }
}
