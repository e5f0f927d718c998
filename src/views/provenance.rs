//! Where a session's inputs came from: the sessions whose results carried a value the script
//! later passed to it (a dependency A → B), found by content, from the journal alone, so
//! journals written before anyone thought of it still show their dependencies.
//!
//! A value of B (a leaf of its inputs, or its goal) came from A when A's result had reached the
//! script before B was spawned and one of these holds:
//!
//! - a string of at least [`MIN_TEXT`] characters is equal to, or contained in, a string of
//!   A's output or text (either way round: a summary passed on whole, or quoted in a goal);
//! - a whole list or map of B's inputs equals a list or map in A's output (`findings`, a
//!   design);
//! - a top-level input `key: value` (a number or string, not a bool) equals a `key: value`
//!   anywhere in A's output: `pr: 42` read from a coding session's output.
//!
//! A value A was itself given (its goal or inputs) is not A's to pass on: it came from
//! further up. When several results carry the same value, the most recently awaited wins.
//! Short strings, bools and bare numbers prove nothing and are never matched. Substring
//! matches are looked for among the last [`CONTAINMENT_WINDOW`] results only, so a run of
//! 100,000 sessions is not quadratic; whole-value matches use an index over every result.
//!
//! It only reads the values it is given; it must not guess beyond these rules.

use serde_json::Value;
use std::collections::{HashMap, VecDeque};

/// Shortest string that counts as evidence: shorter ones (`clean`, `main`) match by chance.
pub const MIN_TEXT: usize = 12;
/// How many of the latest results substring matches are looked for in.
pub const CONTAINMENT_WINDOW: usize = 64;

/// The results that reached the script so far, indexed by what they carry.
#[derive(Default)]
pub struct Provenance {
    /// Exact evidence (a long string, a whole value, a `key=value`) → the latest result.
    exact: HashMap<String, usize>,
    /// The latest results' long strings, for substring matches: (result, strings).
    recent: VecDeque<(usize, Vec<String>)>,
    /// Session ids in the order their results reached the script.
    ids: Vec<String>,
    /// Where each id is in `ids`.
    order: HashMap<String, usize>,
}

impl Provenance {
    /// Session `id`'s result reached the script: `output` and `text` are what it produced,
    /// `given` (its goal and inputs) what it was handed.
    pub fn awaited(&mut self, id: &str, output: &Value, text: &str, given: &[&Value]) {
        let mut handed = Evidence::default();
        for g in given {
            handed.collect(g, None, 0, true);
        }
        let mut made = Evidence::default();
        made.collect(output, None, 0, true);
        if text.chars().count() >= MIN_TEXT {
            made.texts.push(text.to_owned());
        }
        let order = self.ids.len();
        self.ids.push(id.to_owned());
        self.order.insert(id.to_owned(), order);
        let handed_keys: std::collections::HashSet<String> = handed.keys().into_iter().collect();
        for key in made.keys() {
            if !handed_keys.contains(&key) {
                self.exact.insert(key, order);
            }
        }
        let texts: Vec<String> = made.texts.into_iter().filter(|t| !handed.texts.contains(t)).collect();
        if !texts.is_empty() {
            self.recent.push_back((order, texts));
            if self.recent.len() > CONTAINMENT_WINDOW {
                self.recent.pop_front();
            }
        }
    }

    /// When session `id`'s result reached the script (its place among those that did).
    pub fn order(&self, id: &str) -> Option<usize> {
        self.order.get(id).copied()
    }

    /// The sessions a spawn with `goal` and `inputs` took values from, most recent last.
    pub fn sources(&self, goal: &str, inputs: &Value) -> Vec<String> {
        let mut found: Vec<usize> = Vec::new();
        let mut asked = Evidence::default();
        asked.collect(inputs, None, 0, false);
        if goal.chars().count() >= MIN_TEXT {
            asked.texts.push(goal.to_owned());
        }
        for key in asked.keys() {
            if let Some(&order) = self.exact.get(&key) {
                found.push(order);
            }
        }
        for text in &asked.texts {
            let holder = self
                .recent
                .iter()
                .rev()
                .find(|(_, theirs)| theirs.iter().any(|t| t.contains(text.as_str()) || text.contains(t.as_str())));
            if let Some((order, _)) = holder {
                found.push(*order);
            }
        }
        found.sort_unstable();
        found.dedup();
        found.into_iter().map(|o| self.ids[o].clone()).collect()
    }
}

/// What a value carries that could have been passed on.
#[derive(Default)]
struct Evidence {
    /// Long strings.
    texts: Vec<String>,
    /// Whole lists and maps, as their JSON text.
    wholes: Vec<String>,
    /// `key=value` of scalars (numbers and strings).
    pairs: Vec<String>,
}

impl Evidence {
    /// `result`: a result's pairs and whole values count at any depth; a spawn's inputs count
    /// below their top map only, and their pairs at the top level only (where the script put
    /// them).
    fn collect(&mut self, v: &Value, key: Option<&str>, depth: usize, result: bool) {
        let pair_here = key.is_some() && (result || depth == 1);
        match v {
            Value::String(s) => {
                if s.chars().count() >= MIN_TEXT {
                    self.texts.push(s.clone());
                }
                if pair_here {
                    self.pairs.push(format!("{}={s}", key.unwrap_or_default()));
                }
            }
            Value::Number(n) => {
                if pair_here {
                    self.pairs.push(format!("{}={n}", key.unwrap_or_default()));
                }
            }
            Value::Array(items) => {
                if !items.is_empty() && (result || depth >= 1) {
                    self.wholes.push(v.to_string());
                }
                for item in items {
                    self.collect(item, None, depth + 1, result);
                }
            }
            Value::Object(o) => {
                if !o.is_empty() && (result || depth >= 1) {
                    self.wholes.push(v.to_string());
                }
                for (k, item) in o {
                    self.collect(item, Some(k), depth + 1, result);
                }
            }
            Value::Bool(_) | Value::Null => {}
        }
    }

    /// Every piece of exact evidence, tagged by kind so a text never matches a pair.
    fn keys(&self) -> Vec<String> {
        let texts = self.texts.iter().map(|t| format!("t:{t}"));
        let wholes = self.wholes.iter().map(|w| format!("w:{w}"));
        texts.chain(wholes).chain(self.pairs.iter().map(|p| format!("p:{p}"))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seen(results: &[(&str, Value, Value)]) -> Provenance {
        let mut p = Provenance::default();
        for (id, output, inputs) in results {
            p.awaited(id, output, "", &[inputs]);
        }
        p
    }

    #[test]
    fn a_summary_passed_on_whole_or_quoted_is_a_dependency() {
        let p = seen(&[("s1", json!({"summary": "The retry loop lives in fetch.rs"}), json!({}))]);
        assert_eq!(p.sources("", &json!({"context": "The retry loop lives in fetch.rs"})), ["s1"]);
        assert_eq!(p.sources("Implement it. Context: The retry loop lives in fetch.rs", &json!({})), ["s1"]);
        assert!(p.sources("", &json!({"context": "something else entirely"})).is_empty());
    }

    #[test]
    fn short_strings_bools_and_bare_numbers_prove_nothing() {
        let p = seen(&[("s1", json!({"verdict": "clean", "ok": true, "count": 3}), json!({}))]);
        assert!(p.sources("", &json!({"verdict_was": "clean", "flag": true, "n": 3})).is_empty());
        // The same key and value is evidence: `pr: 42` read from an output.
        let p = seen(&[("s1", json!({"status": "done", "pr": 42}), json!({}))]);
        assert_eq!(p.sources("", &json!({"pr": 42, "pass": 1})), ["s1"]);
    }

    #[test]
    fn nested_and_whole_values_match() {
        let findings = json!([{"severity": "minor", "message": "x"}]);
        let p = seen(&[("s1", json!({"verdict": "minor", "findings": findings}), json!({}))]);
        assert_eq!(p.sources("", &json!({"findings": findings, "pass": 1})), ["s1"]);
        let design = json!({"modules": ["a", "b"]});
        let p = seen(&[("s1", design.clone(), json!({}))]);
        assert_eq!(p.sources("", &json!({"architecture": design})), ["s1"]);
    }

    #[test]
    fn the_most_recent_result_carrying_a_value_wins() {
        let text = "Applied the review findings.";
        let p = seen(&[("s1", json!({"summary": text}), json!({})), ("s2", json!({"summary": text}), json!({}))]);
        assert_eq!(p.sources("", &json!({"why": text})), ["s2"]);
    }

    #[test]
    fn what_a_session_was_given_is_not_its_own() {
        let task = "Add retry with backoff to the fetch client";
        let p = seen(&[("s1", json!({"task": task, "verdict": "ok"}), json!({"task": task}))]);
        assert!(p.sources("", &json!({"task": task})).is_empty());
    }
}
