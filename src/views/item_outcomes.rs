//! Per-item outcomes: what became of each PR, issue or other item a run routed, with its
//! sessions and effects, for `coord show`, the report and the live page.
//!
//! An item is a tag like `pr#13` (what the script's `item("pr", 13)` makes). A node's item is
//! its `subject` option when the script gave one, else read from its inputs or arguments
//! (`pr`, `pr_number` → `pr#N`, `issue` → `issue#N`, `number` or a bare `#N` in the goal →
//! the PR or issue already seen with that number). An item's outcome is the last one the
//! script declared (`item_outcome`), else inferred from its last effect that acted (merged,
//! labelled, commented, closed), else from its last session's verdict.
//!
//! It only reads the run graph; it must not guess what the script did not record.

use super::run_graph::{one_line, RunGraph};
use indexmap::IndexMap;
use serde_json::Value;

/// One item's row: what it is, what became of it and why, and what the run did about it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ItemRow {
    /// `pr#13`.
    pub item: String,
    /// `PR #13`.
    pub label: String,
    pub outcome: String,
    pub reason: Option<String>,
    /// The script stated the outcome (`item_outcome`); otherwise it is read from the nodes.
    pub declared: bool,
    /// Session ids, in spawn order.
    pub sessions: Vec<String>,
    /// Indexes into [`RunGraph::effects`].
    pub effects: Vec<usize>,
    /// The PR or issue on GitHub, when the run's repository is known.
    pub link: Option<String>,
}

/// The item a node is about, from its `subject` option or its fields (see the module header).
pub fn item_of(fields: &Value, subject: Option<&Value>, goal: &str) -> Option<String> {
    if let Some(tag) = subject.and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()) {
        return Some(tag.to_owned());
    }
    let number = |v: &Value| match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => {
            let digits = s.trim().trim_start_matches('#');
            (!digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())).then(|| digits.to_owned())
        }
        _ => None,
    };
    for (field, kind) in [("pr", "pr"), ("pr_number", "pr"), ("issue", "issue"), ("number", "")] {
        if let Some(n) = fields.get(field).and_then(number) {
            return Some(format!("{kind}#{n}"));
        }
    }
    let at = goal.find('#')?;
    let digits: String = goal[at + 1..].chars().take_while(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return None;
    }
    let before = goal[..at].trim_end().to_ascii_lowercase();
    let kind = if before.ends_with("pr") {
        "pr"
    } else if before.ends_with("issue") {
        "issue"
    } else {
        ""
    };
    Some(format!("{kind}#{digits}"))
}

/// `pr#13` as people write it: `PR #13`; `issue#7` as `issue #7`; `task#x` as `task x`.
pub fn item_label(item: &str) -> String {
    match item.split_once('#') {
        Some(("pr", n)) => format!("PR #{n}"),
        Some(("issue", n)) => format!("issue #{n}"),
        Some(("", n)) => format!("#{n}"),
        Some((kind, id)) => format!("{kind} {id}"),
        None => item.to_owned(),
    }
}

/// The repository a run worked on, `owner/name`, when its inputs name one.
pub fn repo_of(inputs: &Value) -> Option<String> {
    let repo = inputs.get("repo")?.as_str()?.trim();
    let (owner, name) = repo.split_once('/')?;
    let fits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    (fits(owner) && fits(name)).then(|| repo.to_owned())
}

/// The item's page on GitHub: PRs under `pull/`, issues (and bare numbers, which GitHub
/// redirects) under `issues/`.
pub fn item_link(repo: Option<&str>, item: &str) -> Option<String> {
    let repo = repo?;
    let (kind, n) = item.split_once('#')?;
    if n.is_empty() || !n.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    match kind {
        "pr" => Some(format!("https://github.com/{repo}/pull/{n}")),
        "issue" | "" => Some(format!("https://github.com/{repo}/issues/{n}")),
        _ => None,
    }
}

/// Every item of the run in the order it first appeared, with its outcome.
pub fn item_rows(g: &RunGraph) -> Vec<ItemRow> {
    // (first call, sessions, effects, last declaration) per item, in one pass over the nodes.
    let mut items: IndexMap<&str, (u64, Vec<usize>, Vec<usize>, Option<usize>)> = IndexMap::new();
    for (i, s) in g.sessions.iter().enumerate() {
        if let Some(item) = s.item.as_deref() {
            let entry = items.entry(item).or_insert((s.call, Vec::new(), Vec::new(), None));
            entry.0 = entry.0.min(s.call);
            entry.1.push(i);
        }
    }
    for (i, e) in g.effects.iter().enumerate() {
        if let Some(item) = e.item.as_deref() {
            let entry = items.entry(item).or_insert((e.call, Vec::new(), Vec::new(), None));
            entry.0 = entry.0.min(e.call);
            entry.2.push(i);
        }
    }
    for (i, d) in g.declared.iter().enumerate() {
        let entry = items.entry(d.item.as_str()).or_insert((d.call, Vec::new(), Vec::new(), None));
        entry.0 = entry.0.min(d.call);
        entry.3 = Some(i);
    }
    items.sort_by(|_, a, _, b| a.0.cmp(&b.0));
    items
        .into_iter()
        .map(|(item, (_, sessions, effects, declared))| item_row(g, item, sessions, effects, declared))
        .collect()
}

fn item_row(g: &RunGraph, item: &str, sessions: Vec<usize>, effects: Vec<usize>, declared: Option<usize>) -> ItemRow {
    let declared = declared.map(|i| &g.declared[i]);
    let (outcome, reason) = match declared {
        Some(d) => (d.outcome.clone(), d.reason.clone()),
        None => inferred_outcome(g, &sessions, &effects),
    };
    ItemRow {
        item: item.to_owned(),
        label: item_label(item),
        outcome,
        reason,
        declared: declared.is_some(),
        sessions: sessions.iter().map(|&i| g.sessions[i].id.clone()).collect(),
        effects,
        link: item_link(g.repo.as_deref(), item),
    }
}

/// The last effect that acted says what became of an item; else its last session's verdict.
fn inferred_outcome(g: &RunGraph, sessions: &[usize], effects: &[usize]) -> (String, Option<String>) {
    let acted = effects.iter().rev().map(|&i| &g.effects[i]).find(|e| e.succeeded());
    if let Some(e) = acted {
        let verb = e.function.strip_prefix("github.").unwrap_or(&e.function);
        let outcome = match verb {
            "merge" => "merged".to_owned(),
            "label" => "labelled".to_owned(),
            "unlabel" => "unlabelled".to_owned(),
            "comment" => "commented".to_owned(),
            "close" => "closed".to_owned(),
            other => other.to_owned(),
        };
        // An escalation labels after it comments: the comment says why.
        let comment = effects.iter().rev().map(|&i| &g.effects[i]).find(|c| c.function == "github.comment");
        let reason = match verb {
            "label" | "comment" => comment.map(|c| super::effect_view::message_headline(&c.args["body"])),
            _ => None,
        };
        return (outcome, reason.map(|r| one_line(&r, 100)));
    }
    match sessions.last().map(|&i| &g.sessions[i]) {
        Some(s) => {
            let outcome = match s.verdict() {
                Some((_, v)) if s.state() == "ok" => format!("{} {v}", s.workflow),
                _ => format!("{} {}", s.workflow, s.state()),
            };
            (outcome, s.summary().or_else(|| s.error().map(|e| one_line(e, 100))))
        }
        None => ("no outcome".to_owned(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn items_come_from_the_subject_then_the_fields_then_the_goal() {
        assert_eq!(item_of(&json!({"pr": 12}), Some(&json!("issue#3")), ""), Some("issue#3".into()));
        assert_eq!(item_of(&json!({"pr": 12}), None, ""), Some("pr#12".into()));
        assert_eq!(item_of(&json!({"issue": "#7"}), None, ""), Some("issue#7".into()));
        assert_eq!(item_of(&json!({"number": 4}), None, ""), Some("#4".into()));
        assert_eq!(item_of(&json!({}), None, "Fix PR #13: x"), Some("pr#13".into()));
        assert_eq!(item_of(&json!({}), None, "Tidy # things"), None);
        assert_eq!(item_of(&json!({"channel": "slack:#eng"}), None, ""), None);
    }

    #[test]
    fn labels_and_links() {
        assert_eq!(item_label("pr#13"), "PR #13");
        assert_eq!(item_label("task#add-retry"), "task add-retry");
        let repo = repo_of(&json!({"repo": "acme/widgets"}));
        assert_eq!(item_link(repo.as_deref(), "pr#13").unwrap(), "https://github.com/acme/widgets/pull/13");
        assert_eq!(item_link(repo.as_deref(), "issue#2").unwrap(), "https://github.com/acme/widgets/issues/2");
        assert_eq!(item_link(repo.as_deref(), "task#x"), None);
        assert_eq!(repo_of(&json!({"repo": "the repository"})), None);
    }
}
