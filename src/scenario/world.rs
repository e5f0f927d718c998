//! The in-memory world of a scenario run: PRs and issues that reads return and effects change.
//! A merged PR stays merged for the rest of the run; notifications are kept in order.

use super::Scenario;
use crate::compact_json::CompactJson;
use crate::effects::{EffectKind, EffectRequest, GithubRead, World, WorldError};
use indexmap::IndexMap;
use serde_json::{json, Map, Value};

pub struct ScenarioWorld {
    prs: IndexMap<u64, CompactJson>,
    issues: IndexMap<u64, CompactJson>,
    /// Branch -> what each merge attempt does (the last repeats), attempts so far, merged yet.
    branches: IndexMap<String, BranchState>,
    main_red: bool,
    pub notifications: Vec<Value>,
}

/// `[git]` in a scenario: the local merge queue of `merge("branch", ..)`. Merging a branch
/// merges main into it and runs its tests; `branches` says how that goes for each branch.
/// A branch not listed is refused (`not_found`); while `main = "red"` every merge is refused
/// (`main_red`).
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitFixtures {
    /// "green" (the default) or "red".
    #[serde(default)]
    pub main: Option<toml::Spanned<String>>,
    /// Branch name -> "green" (merges), "red" (its tests fail: `tests_failed`) or "conflict";
    /// or a list of those, one per merge attempt (the last repeats).
    #[serde(default)]
    pub branches: IndexMap<String, toml::Spanned<toml::Value>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BranchOutcome {
    Green,
    Red,
    Conflict,
}

struct BranchState {
    outcomes: Vec<BranchOutcome>,
    attempts: usize,
    merged: bool,
}

impl GitFixtures {
    pub fn main_is_red(&self) -> bool {
        self.main.as_ref().is_some_and(|m| m.get_ref() == "red")
    }

    /// Every value is one this world knows: the span, message and help of the first that is not.
    pub fn validate(&self) -> Result<(), (std::ops::Range<usize>, String, String)> {
        if let Some(m) = &self.main {
            if !matches!(m.get_ref().as_str(), "green" | "red") {
                let msg = format!("git.main must be \"green\" or \"red\", not `{}`", m.get_ref());
                return Err((m.span(), msg, "main = \"red\" makes the merge queue refuse every branch".into()));
            }
        }
        for (name, outcome) in &self.branches {
            if Self::outcomes(outcome.get_ref()).is_none() {
                return Err((
                    outcome.span(),
                    format!("git.branches.{name:?}: unknown outcome `{}`", outcome.get_ref()),
                    "use \"green\" (merges), \"red\" (its tests fail) or \"conflict\", or a non-empty list of them"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    fn outcomes(v: &toml::Value) -> Option<Vec<BranchOutcome>> {
        let one = |v: &toml::Value| match v.as_str()? {
            "green" => Some(BranchOutcome::Green),
            "red" => Some(BranchOutcome::Red),
            "conflict" => Some(BranchOutcome::Conflict),
            _ => None,
        };
        match v {
            toml::Value::Array(items) if !items.is_empty() => items.iter().map(one).collect(),
            other => one(other).map(|o| vec![o]),
        }
    }
}

/// Fills in the PR fields a scenario may leave out.
pub fn normalize_pr(pr: &mut Value) -> Result<(), String> {
    let obj = pr.as_object_mut().ok_or("a PR must be a table")?;
    let number = obj.get("number").and_then(Value::as_u64).ok_or("a PR needs a positive integer `number`")?;
    let defaults = [
        ("title", json!(format!("PR #{number}"))),
        ("author", json!("octocat")),
        ("state", json!("open")),
        ("base", json!("main")),
        ("head", json!(format!("pr-{number}"))),
        ("head_sha", json!(format!("{number:07x}0"))),
        ("checks", json!("green")),
        ("labels", json!([])),
        ("draft", json!(false)),
        ("mergeable", json!(true)),
        ("approved", json!(false)),
        ("merged", json!(false)),
    ];
    for (k, v) in defaults {
        obj.entry(k).or_insert(v);
    }
    match obj["checks"].as_str() {
        Some("green" | "pending" | "red") => Ok(()),
        _ => Err(format!("PR #{number}: `checks` must be \"green\", \"pending\" or \"red\"")),
    }
}

/// Fills in the issue fields a scenario may leave out.
pub fn normalize_issue(issue: &mut Value) -> Result<(), String> {
    let obj = issue.as_object_mut().ok_or("an issue must be a table")?;
    let number = obj.get("number").and_then(Value::as_u64).ok_or("an issue needs a positive integer `number`")?;
    let defaults = [
        ("title", json!(format!("Issue #{number}"))),
        ("author", json!("octocat")),
        ("state", json!("open")),
        ("labels", json!([])),
        ("assignees", json!([])),
        ("body", json!("")),
        ("comments", json!(0)),
    ];
    for (k, v) in defaults {
        obj.entry(k).or_insert(v);
    }
    Ok(())
}

impl ScenarioWorld {
    /// Takes the scenario's fixtures rather than copying them: a run never needs both.
    pub fn new(scenario: &mut Scenario) -> Self {
        let key = |v: &Value| v["number"].as_u64().unwrap_or(0);
        ScenarioWorld {
            prs: std::mem::take(&mut scenario.prs).into_iter().map(|p| (key(&p), CompactJson::new(p))).collect(),
            issues: std::mem::take(&mut scenario.issues).into_iter().map(|i| (key(&i), CompactJson::new(i))).collect(),
            branches: scenario
                .git
                .branches
                .iter()
                .filter_map(|(b, o)| {
                    let outcomes = GitFixtures::outcomes(o.get_ref())?;
                    Some((b.clone(), BranchState { outcomes, attempts: 0, merged: false }))
                })
                .collect(),
            main_red: scenario.git.main_is_red(),
            notifications: Vec::new(),
        }
    }

    fn pr(&self, n: u64) -> Result<Value, WorldError> {
        self.prs
            .get(&n)
            .map(CompactJson::value)
            .ok_or_else(|| WorldError::Failed(format!("no PR #{n} in the scenario")))
    }

    /// The local merge queue: merge main into the branch, run its tests, merge on green.
    fn merge_branch(&mut self, args: &Value) -> Value {
        let target = args.get("branch").cloned().unwrap_or(Value::Null);
        let refuse = |reason: &str| json!({"status": "refused", "reason": reason, "branch": target});
        let Some(branch) = target.as_str().and_then(|b| self.branches.get_mut(b)) else {
            return refuse("not_found");
        };
        if self.main_red {
            return refuse("main_red");
        }
        if branch.merged {
            return refuse("not_mergeable");
        }
        let outcome = branch.outcomes[branch.attempts.min(branch.outcomes.len() - 1)];
        branch.attempts += 1;
        match outcome {
            BranchOutcome::Red => refuse("tests_failed"),
            BranchOutcome::Conflict => refuse("conflict"),
            BranchOutcome::Green => {
                branch.merged = true;
                let into = str_opt(args, "into").unwrap_or("main");
                json!({"status": "merged", "branch": target, "into": into})
            }
        }
    }
}

fn str_opt<'a>(opts: &'a Value, key: &str) -> Option<&'a str> {
    opts.get(key).and_then(Value::as_str)
}

fn labels_of(v: &Value) -> Vec<&str> {
    v["labels"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

/// The `labels` option as a list, accepting a single string too.
fn wanted_labels(opts: &Value) -> Vec<String> {
    match opts.get("labels") {
        Some(Value::String(s)) => s.split(',').map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()).collect(),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

fn state_matches(item: &Value, wanted: &str) -> bool {
    wanted == "all" || item["state"].as_str() == Some(wanted)
}

fn target_number(args: &Value) -> Option<u64> {
    args.get("pr").or_else(|| args.get("number")).and_then(Value::as_u64)
}

/// Merges PR `n` if it may be merged: the effect's result either way.
fn merge_pr(pr: &mut Value, n: u64, args: &Value) -> Value {
    let refuse = |reason: &str| json!({"status": "refused", "reason": reason, "pr": n});
    if pr["merged"] == true || pr["state"] != "open" {
        return refuse("not_mergeable");
    }
    if pr["draft"] == true {
        return refuse("draft");
    }
    let require_green = args.get("require_green").and_then(Value::as_bool).unwrap_or(true);
    if require_green && pr["checks"] != "green" {
        return refuse("not_green");
    }
    if args.get("require_approval").and_then(Value::as_bool).unwrap_or(false) && pr["approved"] != true {
        return refuse("not_approved");
    }
    if let Some(sha) = args.get("sha").and_then(Value::as_str) {
        if pr["head_sha"].as_str() != Some(sha) {
            return refuse("head_moved");
        }
    }
    if pr["mergeable"] == false {
        return refuse("conflict");
    }
    let method = str_opt(args, "method").unwrap_or("squash").to_owned();
    pr["merged"] = json!(true);
    pr["state"] = json!("closed");
    json!({"status": "merged", "pr": n, "method": method, "sha": pr["head_sha"]})
}

/// Labels, unlabels or closes a PR or issue.
fn relabel(item: &mut Value, kind: EffectKind, args: &Value) {
    let obj: &mut Map<String, Value> = item.as_object_mut().expect("fixtures are objects");
    let mut labels: Vec<Value> = obj.get("labels").and_then(Value::as_array).cloned().unwrap_or_default();
    match kind {
        EffectKind::Label => {
            for l in args["labels"].as_array().into_iter().flatten() {
                if !labels.contains(l) {
                    labels.push(l.clone());
                }
            }
        }
        EffectKind::Unlabel => labels.retain(|l| *l != args["label"]),
        _ => {
            obj.insert("state".into(), json!("closed"));
        }
    }
    obj.insert("labels".into(), Value::Array(labels));
}

impl World for ScenarioWorld {
    fn github_read(&mut self, read: &GithubRead) -> Result<Value, WorldError> {
        Ok(match read {
            GithubRead::Prs(opts) => {
                let state = str_opt(opts, "state").unwrap_or("open");
                let labels = wanted_labels(opts);
                Value::Array(
                    self.prs
                        .values()
                        .map(CompactJson::value)
                        .filter(|pr| state_matches(pr, state))
                        .filter(|pr| str_opt(opts, "base").is_none_or(|b| pr["base"].as_str() == Some(b)))
                        .filter(|pr| str_opt(opts, "author").is_none_or(|a| pr["author"].as_str() == Some(a)))
                        .filter(|pr| labels.iter().all(|l| labels_of(pr).contains(&l.as_str())))
                        .collect(),
                )
            }
            GithubRead::Pr(n) => self.pr(*n)?,
            GithubRead::Checks(n) => {
                let pr = self.pr(*n)?;
                json!({
                    "state": pr["checks"],
                    "sha": pr["head_sha"],
                    "details": pr.get("check_details").cloned().unwrap_or_else(|| json!([])),
                })
            }
            GithubRead::Reviews(n) => self.pr(*n)?.get_mut("reviews").map(Value::take).unwrap_or_else(|| json!([])),
            GithubRead::Issues(opts) => {
                let state = str_opt(opts, "state").unwrap_or("open");
                let labels = wanted_labels(opts);
                Value::Array(
                    self.issues
                        .values()
                        .map(CompactJson::value)
                        .filter(|i| state_matches(i, state))
                        .filter(|i| labels.iter().all(|l| labels_of(i).contains(&l.as_str())))
                        .collect(),
                )
            }
        })
    }

    fn act(&mut self, effect: &EffectRequest, _idempotency_key: &str) -> Result<Value, WorldError> {
        let args = &effect.args;
        match effect.kind {
            EffectKind::Merge => {
                let Some(n) = target_number(args) else {
                    return Ok(self.merge_branch(args));
                };
                let Some(pr) = self.prs.get_mut(&n) else {
                    return Ok(json!({"status": "refused", "reason": "not_found", "pr": n}));
                };
                Ok(pr.edit(|pr| merge_pr(pr, n, args)))
            }
            EffectKind::Notify => {
                self.notifications.push(args.clone());
                Ok(json!({"status": "sent", "channel": args["channel"]}))
            }
            EffectKind::Comment => {
                let n = target_number(args).unwrap_or(0);
                let item = self.prs.get_mut(&n).or_else(|| self.issues.get_mut(&n));
                match item {
                    None => Ok(json!({"status": "failed", "reason": "not_found", "number": n})),
                    Some(item) => item.edit(|item| {
                        let obj = item.as_object_mut().expect("fixtures are objects");
                        let count = obj.get("comments").and_then(Value::as_u64).unwrap_or(0);
                        obj.insert("comments".into(), json!(count + 1));
                        Ok(json!({"status": "done", "number": n}))
                    }),
                }
            }
            EffectKind::Label | EffectKind::Unlabel | EffectKind::Close => {
                let n = target_number(args).unwrap_or(0);
                let item = self.prs.get_mut(&n).or_else(|| self.issues.get_mut(&n));
                let Some(item) = item else {
                    return Ok(json!({"status": "failed", "reason": "not_found", "number": n}));
                };
                item.edit(|item| relabel(item, effect.kind, args));
                Ok(json!({"status": "done", "number": n}))
            }
        }
    }

    fn already_done(&mut self, _: &EffectRequest, _: &str) -> Result<Option<Value>, WorldError> {
        // The world lives in memory: an effect cut off by a crash died with the process.
        Ok(None)
    }

    fn restore(&mut self, effect: &EffectRequest, result: &Value) {
        let acted = matches!(result["status"].as_str(), Some("merged" | "sent" | "done"));
        if acted {
            let _ = self.act(effect, "");
        }
    }

    fn is_external(&self) -> bool {
        false
    }
}
