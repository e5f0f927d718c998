//! Finds the JSON answer in a model's text: the whole text, else a fenced code block, else the
//! outermost `{...}` or `[...]` span. Models wrap JSON in prose and fences even when told not to.
//!
//! Owns only extraction; whether the JSON fits the schema is the scheduler's question.

use serde_json::Value;

pub fn json_in_text(text: &str) -> Option<Value> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return None;
    }
    if let Ok(v) = serde_json::from_str::<Value>(trimmed) {
        // A JSON string holding JSON (some CLIs double-encode) is unwrapped once.
        if let Value::String(inner) = &v {
            if let Some(nested) = json_in_text(inner).filter(|n| n.is_object() || n.is_array()) {
                return Some(nested);
            }
        }
        return Some(v);
    }
    // The last fenced block that parses wins: models tend to put the answer last.
    let blocks = fenced_blocks(trimmed);
    if let Some(v) = blocks.iter().rev().find_map(|b| serde_json::from_str::<Value>(b.trim()).ok()) {
        return Some(v);
    }
    for (open, close) in [('{', '}'), ('[', ']')] {
        if let (Some(start), Some(end)) = (trimmed.find(open), trimmed.rfind(close)) {
            if start < end {
                if let Ok(v) = serde_json::from_str::<Value>(&trimmed[start..=end]) {
                    return Some(v);
                }
            }
        }
    }
    None
}

/// The bodies of ``` fenced blocks (any info string).
fn fenced_blocks(text: &str) -> Vec<&str> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("```") {
        let after = &rest[open + 3..];
        let Some(body_start) = after.find('\n') else { break };
        let body = &after[body_start + 1..];
        let Some(close) = body.find("```") else { break };
        blocks.push(&body[..close]);
        rest = &body[close + 3..];
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_json_in_the_usual_wrappings() {
        let cases: [(&str, Option<Value>); 7] = [
            (r#"{"verdict":"clean"}"#, Some(json!({"verdict": "clean"}))),
            ("Here you go:\n```json\n{\"verdict\": \"minor\"}\n```\nDone.", Some(json!({"verdict": "minor"}))),
            ("```\n[1, 2]\n```", Some(json!([1, 2]))),
            ("The answer is {\"a\": {\"b\": 1}} as requested.", Some(json!({"a": {"b": 1}}))),
            (r#""{\"a\":1}""#, Some(json!({"a": 1}))),
            ("no json here", None),
            ("   ", None),
        ];
        for (text, expected) in cases {
            assert_eq!(json_in_text(text), expected, "{text}");
        }
    }
}
