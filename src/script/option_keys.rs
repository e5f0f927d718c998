//! The closed set of keys each options map and message map of the host API takes. A key
//! outside the set is a mistake (`gaol`, `timout`, `requre_green`), never silently dropped:
//! the host API refuses it when the call is made, and `coord check` (and so every run, before
//! it starts) when the key is written as a literal.
//!
//! Owns the lists and the wording; it must not know what a key does.

use crate::script::diagnostic::strsim_distance;

/// `spawn_session(workflow, opts)`: the leaf's goal and inputs, per-call overrides of the
/// workflow, and the harness options a workflow's `[options]` may also set.
pub const SPAWN_SESSION: &[&str] = &[
    "goal",
    "inputs",
    "timeout",
    "retries",
    "harness",
    "model",
    "command",
    "worktree",
    "branch",
    "max_budget_usd",
    "max_tokens",
    "permission_mode",
    "sandbox",
    "approval_mode",
    "subject",
    "after",
];

/// `merge(pr, opts)`.
pub const MERGE: &[&str] = &["method", "sha", "require_green", "require_approval", "into", "subject"];

/// Options that only label a call for the views (`subject`: the item it is about; `after`: the
/// sessions it follows): they change nothing the call does, so its call key leaves them out and
/// a journal recorded before a script added them still replays.
pub const LABELS: &[&str] = &["subject", "after"];

/// `notify(channel, message)` with a map message.
pub const NOTIFY_MESSAGE: &[&str] = &["title", "body", "text", "fields", "links"];

/// `github::prs(opts)`.
pub const GITHUB_PRS: &[&str] = &["state", "base", "labels", "author"];

/// `github::issues(opts)`.
pub const GITHUB_ISSUES: &[&str] = &["state", "labels", "author"];

/// The key list of a host function's map argument: `(function, argument index, keys)`.
pub const MAP_ARGUMENTS: &[(&str, usize, &[&str], &str)] = &[
    ("spawn_session", 1, SPAWN_SESSION, "option"),
    ("merge", 1, MERGE, "option"),
    ("notify", 1, NOTIFY_MESSAGE, "message key"),
    ("github::prs", 0, GITHUB_PRS, "option"),
    ("github::issues", 0, GITHUB_ISSUES, "option"),
];

/// Why `key` is refused in a map of `allowed` keys given to `function`, or `None` when it is
/// one of them. `what` is "option" or "message key".
pub fn refusal(function: &str, what: &str, key: &str, allowed: &[&str]) -> Option<(String, String)> {
    if allowed.contains(&key) {
        return None;
    }
    let suggestion = allowed
        .iter()
        .map(|k| (strsim_distance(key, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k);
    let message = format!("{function}: unknown {what} `{key}`");
    let help = match suggestion {
        Some(s) => format!("did you mean `{s}`? {function} takes: {}", allowed.join(", ")),
        None => format!("{function} takes: {}", allowed.join(", ")),
    };
    Some((message, help))
}

/// The first key of `keys` that `function` does not take, as one line with its suggestion.
pub fn first_refusal<'a>(
    function: &str,
    what: &str,
    keys: impl IntoIterator<Item = &'a str>,
    allowed: &[&str],
) -> Option<String> {
    keys.into_iter().find_map(|k| refusal(function, what, k, allowed)).map(|(m, h)| format!("{m}; {h}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_get_the_key_they_meant() {
        let cases = [
            ("spawn_session", "gaol", SPAWN_SESSION, "goal"),
            ("spawn_session", "timout", SPAWN_SESSION, "timeout"),
            ("merge", "methd", MERGE, "method"),
            ("merge", "requre_green", MERGE, "require_green"),
            ("github::prs", "stat", GITHUB_PRS, "state"),
        ];
        for (f, key, allowed, meant) in cases {
            let (message, help) = refusal(f, "option", key, allowed).unwrap();
            assert_eq!(message, format!("{f}: unknown option `{key}`"));
            assert!(help.starts_with(&format!("did you mean `{meant}`?")), "{help}");
        }
        assert!(refusal("merge", "option", "sha", MERGE).is_none());
        let (_, help) = refusal("notify", "message key", "jobs", NOTIFY_MESSAGE).unwrap();
        assert_eq!(help, "notify takes: title, body, text, fields, links");
    }
}
