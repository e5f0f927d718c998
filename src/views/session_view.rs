//! `coord show RUN --session ID`: one session in full. What it was asked (goal, inputs, and
//! the prompt when the journal holds it), what it answered (structured output as pretty JSON,
//! its text when that says more), its error, and its transcript from the blob store, rendered
//! as one line per message.
//!
//! Reads blobs, never writes; every string shown goes through the redactor.

use super::run_graph::{RunGraph, SessionNode};
use super::{spend, units};
use crate::journal::blob_store::BlobStore;
use crate::redaction::Redactor;
use serde_json::Value;
use std::fmt::Write;

pub fn render_session(g: &RunGraph, s: &SessionNode, redactor: &Redactor) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Session {} · {} · {}", s.id, s.workflow, s.state());
    let _ = writeln!(out, "  spawned at {} (call {})", s.site, s.call);
    if let Some(r) = &s.result {
        let mut ran = Vec::new();
        if let Some(h) = &r.harness {
            ran.push(format!("harness {h}"));
        }
        if let Some(m) = &r.model {
            ran.push(format!("model {m}"));
        }
        if r.attempts > 1 {
            ran.push(format!("{} attempts", r.attempts));
        }
        if !ran.is_empty() {
            let _ = writeln!(out, "  {}", ran.join(" · "));
        }
        let _ = writeln!(
            out,
            "  {} · {} tokens ({} in, {} out) · {}",
            units::duration(r.duration_ms),
            units::tokens(s.tokens()),
            units::tokens(r.usage.input_tokens),
            units::tokens(r.usage.output_tokens),
            spend::Spend::leaf(r.usage.cost_usd, s.simulated).run_text(false)
        );
    }
    let _ = writeln!(out, "  parent: {}", g.parent_label(&s.parent));
    let children: Vec<String> = g
        .children(&super::run_graph::Parent::Session(s.id.clone()))
        .into_iter()
        .map(|n| match n {
            super::run_graph::NodeRef::Session(i) => g.sessions[i].id.clone(),
            super::run_graph::NodeRef::Effect(i) => g.effects[i].short_label(),
        })
        .collect();
    if !children.is_empty() {
        let _ = writeln!(out, "  led to: {}", children.join(", "));
    }

    section(&mut out, "Goal", &s.goal);
    section(&mut out, "Inputs", &pretty(&s.inputs));
    match &s.prompt {
        Some(p) => section(&mut out, "Prompt", p),
        None => {
            section(&mut out, "Prompt", "(not in the journal: the workflow renders it from the goal and inputs above)")
        }
    }
    if let Some(r) = &s.result {
        if !r.output.is_null() {
            section(&mut out, "Output", &pretty(&r.output));
        }
        let text = r.text.trim();
        let same_as_output = serde_json::from_str::<Value>(text).is_ok_and(|v| v == r.output);
        if !text.is_empty() && !same_as_output {
            section(&mut out, "Text", text);
        }
        if let Some(e) = &r.error {
            section(&mut out, "Error", e);
        }
        match &r.transcript {
            Some(hash) => {
                let body = match BlobStore::new(&g.dir).get(hash) {
                    Ok(bytes) => redactor.mask(&render_transcript(&String::from_utf8_lossy(&bytes))).into_owned(),
                    Err(e) => format!("(transcript blob {hash} is unreadable: {e})"),
                };
                section(&mut out, "Transcript", &body);
            }
            None => section(&mut out, "Transcript", "(none: the harness kept no transcript)"),
        }
    }
    out
}

fn section(out: &mut String, title: &str, body: &str) {
    let _ = writeln!(out, "\n{title}");
    for line in body.lines() {
        let _ = writeln!(out, "  {line}");
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// A transcript as one line per message. JSON lines (agent CLIs' stream formats) become
/// `[role] text` and `[tool] name {input}`; anything else is shown as it is.
pub fn render_transcript(raw: &str) -> String {
    let mut out = String::new();
    for line in raw.lines() {
        match serde_json::from_str::<Value>(line) {
            Ok(v @ Value::Object(_)) => {
                for message in transcript_messages(&v) {
                    let _ = writeln!(out, "{message}");
                }
            }
            _ => {
                let _ = writeln!(out, "{line}");
            }
        }
    }
    out
}

fn transcript_messages(v: &Value) -> Vec<String> {
    let role = ["role", "type"]
        .iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .or_else(|| v.pointer("/message/role").and_then(Value::as_str))
        .unwrap_or("event");
    let content = v
        .get("content")
        .or_else(|| v.pointer("/message/content"))
        .or_else(|| v.get("text"))
        .or_else(|| v.get("result"));
    match content {
        Some(Value::String(s)) => vec![format!("[{role}] {s}")],
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => p.get("text").and_then(Value::as_str).map(|t| format!("[{role}] {t}")),
                Some("tool_use") => Some(format!(
                    "[tool] {} {}",
                    p.get("name").and_then(Value::as_str).unwrap_or("?"),
                    p.get("input").map(Value::to_string).unwrap_or_default()
                )),
                Some("tool_result") => Some(format!(
                    "[tool result] {}",
                    match p.get("content") {
                        Some(Value::String(s)) => s.clone(),
                        Some(other) => other.to_string(),
                        None => String::new(),
                    }
                )),
                _ => None,
            })
            .collect(),
        Some(other) => vec![format!("[{role}] {other}")],
        None => vec![format!("[{role}] {v}")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcripts_read_as_messages() {
        let raw = concat!(
            "{\"type\":\"assistant\",\"message\":{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"Looking.\"},{\"type\":\"tool_use\",\"name\":\"Read\",\"input\":{\"path\":\"a.rs\"}}]}}\n",
            "{\"role\":\"user\",\"content\":\"hi\"}\n",
            "plain line\n"
        );
        assert_eq!(
            render_transcript(raw),
            "[assistant] Looking.\n[tool] Read {\"path\":\"a.rs\"}\n[user] hi\nplain line\n"
        );
    }
}
