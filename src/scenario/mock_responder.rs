//! Matches a leaf request to a scenario's canned response.
//!
//! The first rule, in file order, whose workflow and `match` conditions fit the request answers
//! it; a rule with a `sequence` answers its n-th match with the n-th item (the last repeats).
//! Rules are indexed by their first condition, so a call is matched in constant time however
//! many rules a scenario has.

use super::{LeafRule, MockResponse};
use crate::compact_json::CompactJson;
use serde_json::Value;
use std::collections::HashMap;

#[derive(Debug, Default)]
struct WorkflowIndex {
    /// (field, canonical value) of a rule's first condition -> rule indices, ascending.
    by_first: HashMap<(String, String), Vec<usize>>,
    /// Fields used as first conditions, in first-seen order.
    first_fields: Vec<String>,
    /// Rules with no condition on inputs.
    unconditioned: Vec<usize>,
}

/// A rule as the responder keeps it: each response's output as compact JSON (a scenario may
/// hold a rule per PR), put back when it answers.
#[derive(Debug)]
struct Rule {
    conditions: Vec<(String, Value)>,
    goal_contains: Option<String>,
    responses: Vec<(MockResponse, CompactJson)>,
}

impl Rule {
    fn new(rule: LeafRule) -> Self {
        let responses = rule
            .responses
            .into_iter()
            .map(|mut response| {
                let output = CompactJson::new(std::mem::take(&mut response.output));
                (response, output)
            })
            .collect();
        Rule { conditions: rule.conditions, goal_contains: rule.goal_contains, responses }
    }
}

#[derive(Debug)]
pub struct MockResponder {
    rules: Vec<Rule>,
    index: HashMap<String, WorkflowIndex>,
    uses: Vec<usize>,
}

impl MockResponder {
    pub fn new(rules: Vec<LeafRule>) -> Self {
        let mut index: HashMap<String, WorkflowIndex> = HashMap::new();
        for (i, rule) in rules.iter().enumerate() {
            let entry = index.entry(rule.workflow.clone()).or_default();
            match rule.conditions.first() {
                None => entry.unconditioned.push(i),
                Some((field, value)) => {
                    if !entry.first_fields.contains(field) {
                        entry.first_fields.push(field.clone());
                    }
                    entry.by_first.entry((field.clone(), canonical(value))).or_default().push(i);
                }
            }
        }
        let uses = vec![0; rules.len()];
        MockResponder { rules: rules.into_iter().map(Rule::new).collect(), index, uses }
    }

    /// The response for a request, advancing the matched rule's sequence. `None` when no rule
    /// answers this workflow with these inputs.
    pub fn respond(&mut self, workflow: &str, goal: &str, inputs: &Value) -> Option<MockResponse> {
        let idx = self.index.get(workflow)?;
        let mut best: Option<usize> = None;
        let consider = |i: usize, best: &mut Option<usize>| {
            if best.is_some_and(|b| b <= i) {
                return;
            }
            if rule_matches(&self.rules[i], goal, inputs) {
                *best = Some(i);
            }
        };
        for field in &idx.first_fields {
            if let Some(v) = lookup(inputs, field) {
                if let Some(candidates) = idx.by_first.get(&(field.clone(), canonical(v))) {
                    for &i in candidates {
                        consider(i, &mut best);
                    }
                }
            }
        }
        for &i in &idx.unconditioned {
            consider(i, &mut best);
        }
        let i = best?;
        let rule = &self.rules[i];
        let n = self.uses[i];
        self.uses[i] += 1;
        let (response, output) = &rule.responses[n.min(rule.responses.len() - 1)];
        Some(MockResponse { output: output.value(), ..response.clone() })
    }
}

fn rule_matches(rule: &Rule, goal: &str, inputs: &Value) -> bool {
    if let Some(needle) = &rule.goal_contains {
        if !goal.contains(needle.as_str()) {
            return false;
        }
    }
    rule.conditions.iter().all(|(field, want)| lookup(inputs, field).is_some_and(|got| values_equal(got, want)))
}

/// Looks up a dotted path (`pr`, `issue.number`) in the inputs.
fn lookup<'a>(inputs: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = inputs.get(path) {
        return Some(v);
    }
    path.split('.').try_fold(inputs, |v, seg| match v {
        Value::Object(m) => m.get(seg),
        Value::Array(a) => a.get(seg.parse::<usize>().ok()?),
        _ => None,
    })
}

/// JSON equality where 12 and 12.0 are the same number.
fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn canonical(v: &Value) -> String {
    match v {
        Value::Number(n) => n.as_f64().map(|f| f.to_string()).unwrap_or_else(|| n.to_string()),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;
    use serde_json::json;
    use std::path::Path;

    fn responder(src: &str) -> MockResponder {
        MockResponder::new(Scenario::parse(Path::new("t.toml"), src.to_owned()).unwrap().rules)
    }

    #[test]
    fn first_matching_rule_wins_and_sequences_advance() {
        let mut r = responder(
            r#"
[[leaf]]
workflow = "review"
match = { pr = 14 }
sequence = [ { output = { v = "minor" } }, { output = { v = "clean" } } ]
[[leaf]]
workflow = "review"
output = { v = "default" }
"#,
        );
        let ask =
            |r: &mut MockResponder, pr: i64| r.respond("review", "", &json!({"pr": pr})).unwrap().output["v"].clone();
        assert_eq!(ask(&mut r, 14), "minor");
        assert_eq!(ask(&mut r, 12), "default");
        assert_eq!(ask(&mut r, 14), "clean");
        assert_eq!(ask(&mut r, 14), "clean", "the last item repeats");
        assert!(r.respond("other", "", &json!({})).is_none());
    }

    #[test]
    fn earlier_unconditioned_rule_beats_later_indexed_rule() {
        let mut r = responder(
            r#"
[[leaf]]
workflow = "w"
output = { v = 1 }
[[leaf]]
workflow = "w"
match = { pr = 1 }
output = { v = 2 }
"#,
        );
        assert_eq!(r.respond("w", "", &json!({"pr": 1})).unwrap().output["v"], 1);
    }

    #[test]
    fn dotted_paths_numbers_and_goal_filters() {
        let mut r = responder(
            r#"
[[leaf]]
workflow = "w"
match = { "issue.number" = 7, kind = "bug" }
goal_contains = "urgent"
output = { v = "hit" }
"#,
        );
        assert!(r.respond("w", "urgent fix", &json!({"issue": {"number": 7.0}, "kind": "bug"})).is_some());
        assert!(r.respond("w", "calm", &json!({"issue": {"number": 7}, "kind": "bug"})).is_none());
        assert!(r.respond("w", "urgent", &json!({"issue": {"number": 7}, "kind": "feature"})).is_none());
    }

    #[test]
    fn ten_thousand_rules_stay_indexed() {
        let mut src = String::new();
        for pr in 0..10_000 {
            src.push_str(&format!("[[leaf]]\nworkflow = \"w\"\nmatch = {{ pr = {pr} }}\noutput = {{ v = {pr} }}\n"));
        }
        let mut r = responder(&src);
        for pr in (0..10_000).rev() {
            assert_eq!(r.respond("w", "", &json!({"pr": pr})).unwrap().output["v"], pr);
        }
    }
}
