//! The Claude Code harness: `claude -p <prompt> --output-format stream-json --verbose
//! --json-schema <schema>`, one JSON event per line, the answer in the final `result` event's
//! `structured_output`. A repair resumes the same session (`--resume <session_id>`).
//!
//! Owns the command line and the reading of Claude Code's stream. Unknown events and fields
//! are ignored; a stream without a `result` event, an error subtype or a missing structured
//! output are failed results, never errors of the run.

use super::agent_process::{self, AgentCommand, AgentOutput, AgentTurn, ProcessEnd, StreamReader};
use super::profile::HarnessProfile;
use super::structured_text::json_in_text;
use super::{tail, Harness, HarnessLimits, LeafFuture};
use crate::scheduler::session::{LeafRequest, RetryHint, SessionResult, SessionStatus, Usage};
use serde_json::Value;
use std::sync::Arc;

pub struct ClaudeCodeHarness {
    profile: Arc<HarnessProfile>,
}

impl ClaudeCodeHarness {
    pub fn new(profile: Arc<HarnessProfile>) -> Self {
        ClaudeCodeHarness { profile }
    }
}

impl Harness for ClaudeCodeHarness {
    fn name(&self) -> &str {
        &self.profile.name
    }

    fn start(&self, request: LeafRequest) -> LeafFuture {
        let turn = AgentTurn::first(&request);
        Box::pin(run(self.profile.clone(), request, turn))
    }

    fn repair(&self, request: LeafRequest, previous: &SessionResult, feedback: &str) -> Option<LeafFuture> {
        let turn = AgentTurn::repair(previous, feedback)?;
        Some(Box::pin(run(self.profile.clone(), request, turn)))
    }

    fn limits(&self) -> HarnessLimits {
        self.profile.limits()
    }

    fn runs_in_workdir(&self) -> bool {
        true
    }
}

fn command(profile: &HarnessProfile, req: &LeafRequest, turn: &AgentTurn) -> AgentCommand {
    let mut args: Vec<String> = vec![
        "-p".into(),
        turn.prompt.clone(),
        "--output-format".into(),
        "stream-json".into(),
        "--verbose".into(),
        "--json-schema".into(),
        req.schema.to_string(),
    ];
    if let Some(model) = profile.model(req) {
        args.extend(["--model".into(), model]);
    }
    if let Some(turns) = req.workflow.max_turns {
        args.extend(["--max-turns".into(), turns.to_string()]);
    }
    if let Some(budget) = profile.option(req, "max_budget_usd").and_then(|v| v.as_f64()) {
        args.extend(["--max-budget-usd".into(), budget.to_string()]);
    }
    if let Some(mode) = profile.option(req, "permission_mode").and_then(|v| v.as_str().map(str::to_owned)) {
        args.extend(["--permission-mode".into(), mode]);
    }
    if let Some(session) = &turn.resume {
        args.extend(["--resume".into(), session.clone()]);
    }
    args.extend(profile.extra_args(req));
    AgentCommand {
        program: profile.binary("claude"),
        args,
        cwd: req.workdir.clone(),
        env: profile.cli_key_env("ANTHROPIC_API_KEY"),
    }
}

async fn run(profile: Arc<HarnessProfile>, req: LeafRequest, turn: AgentTurn) -> SessionResult {
    let cmd = command(&profile, &req, &turn);
    tracing::info!(binary = %cmd.program.display(), resume = turn.resume.is_some(), "claude-code leaf starting");
    let mut stream = ClaudeStream::default();
    let out = agent_process::run(cmd, req.timeout, &mut stream).await;
    let mut result = stream.finish(&profile, &req, &out);
    result.transcript = profile.keep_transcript(&req, turn.previous_transcript.as_deref(), &out.stdout);
    result
}

/// What has been read of one stream.
#[derive(Default)]
pub struct ClaudeStream {
    session_id: Option<String>,
    model: Option<String>,
    last_text: Option<String>,
    result: Option<Value>,
}

impl StreamReader for ClaudeStream {
    fn line(&mut self, line: &str) -> bool {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            tracing::debug!("ignoring a line that is not JSON");
            return false;
        };
        let kind = event["type"].as_str().unwrap_or("");
        if let Some(id) = event["session_id"].as_str() {
            self.session_id = Some(id.to_owned());
        }
        match kind {
            "system" => {
                let subtype = event["subtype"].as_str().unwrap_or("");
                if subtype == "init" {
                    self.model = event["model"].as_str().map(str::to_owned).or(self.model.take());
                }
                tracing::debug!(event = "system", subtype, "claude-code event");
            }
            "assistant" => {
                for item in event["message"]["content"].as_array().into_iter().flatten() {
                    match item["type"].as_str() {
                        Some("text") => self.last_text = item["text"].as_str().map(str::to_owned),
                        Some("tool_use") => {
                            tracing::info!(
                                event = "tool_use",
                                tool = item["name"].as_str().unwrap_or("?"),
                                "claude-code event"
                            )
                        }
                        _ => {}
                    }
                }
            }
            "result" => {
                tracing::info!(
                    event = "result",
                    subtype = event["subtype"].as_str().unwrap_or("?"),
                    "claude-code event"
                );
                self.result = Some(event);
                return true;
            }
            other => tracing::debug!(event = other, "claude-code event"),
        }
        false
    }
}

impl ClaudeStream {
    pub fn finish(self, profile: &HarnessProfile, req: &LeafRequest, out: &AgentOutput) -> SessionResult {
        let id = &req.session_id;
        let wf = &req.workflow.name;
        let model = self.model.clone().or_else(|| profile.model(req));
        let Some(event) = self.result else {
            let mut result = match &out.end {
                ProcessEnd::TimedOut => SessionResult::failed(
                    id,
                    wf,
                    SessionStatus::Timeout,
                    format!("timed out after {}; process tree killed", humantime::format_duration(req.timeout)),
                ),
                ProcessEnd::NotStarted(e) => SessionResult::failed(id, wf, SessionStatus::Failed, e.clone()),
                _ => {
                    let detail = tail(&out.stderr, 400);
                    let mut r = SessionResult::failed(
                        id,
                        wf,
                        SessionStatus::Failed,
                        format!(
                            "claude's stream ended without a result event ({}){}",
                            out.describe_end(),
                            if detail.is_empty() { String::new() } else { format!(": {detail}") }
                        ),
                    );
                    // A crash before any result is worth another try.
                    r.retry = Some(RetryHint::default());
                    r
                }
            };
            result.provider_session_id = self.session_id;
            result.model = model;
            return result;
        };

        let mut usage = usage_of(&event["usage"]);
        let reported = event["total_cost_usd"].as_f64().or_else(|| event["cost_usd"].as_f64());
        profile.price(&mut usage, model.as_deref(), reported);
        let text = event["result"].as_str().map(str::to_owned).or(self.last_text).unwrap_or_default();
        let subtype = event["subtype"].as_str().unwrap_or("success");
        let is_error = event["is_error"].as_bool().unwrap_or(false);

        let mut result = if is_error || subtype != "success" {
            let errors: Vec<String> = event["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| e.as_str().map(str::to_owned).unwrap_or_else(|| e.to_string()))
                .collect();
            let detail = if !errors.is_empty() { errors.join("; ") } else { tail(text.as_bytes(), 300) };
            let mut r = SessionResult::failed(
                id,
                wf,
                SessionStatus::Failed,
                format!("claude ended with `{subtype}`: {detail}"),
            );
            if super::reads_transient(&detail) {
                r.retry = Some(RetryHint::default());
            }
            r
        } else {
            match structured_output(&event, &text) {
                Some(output) => {
                    let mut r = SessionResult::new(id, wf, SessionStatus::Ok);
                    r.output = output;
                    r
                }
                None => SessionResult::failed(
                    id,
                    wf,
                    SessionStatus::Failed,
                    "claude's result carries no structured_output (and its text holds no JSON)",
                ),
            }
        };
        result.text = text;
        result.usage = usage;
        result.provider_session_id = event["session_id"].as_str().map(str::to_owned).or(self.session_id);
        result.model = model;
        result
    }
}

/// `structured_output` when present and not blank, else JSON found in the result text.
fn structured_output(event: &Value, text: &str) -> Option<Value> {
    match &event["structured_output"] {
        Value::Null => json_in_text(text),
        Value::String(s) if s.trim().is_empty() => json_in_text(text),
        Value::String(s) => json_in_text(s),
        Value::Object(o) if o.is_empty() => json_in_text(text).or(Some(Value::Object(o.clone()))),
        other => Some(other.clone()),
    }
}

fn usage_of(u: &Value) -> Usage {
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    Usage {
        input_tokens: n("input_tokens"),
        output_tokens: n("output_tokens"),
        cache_read_tokens: n("cache_read_input_tokens"),
        cache_write_tokens: n("cache_creation_input_tokens"),
        ..Usage::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn blank_structured_output_falls_back_to_the_text() {
        let ev = json!({"structured_output": "", "result": "```json\n{\"a\":1}\n```"});
        assert_eq!(structured_output(&ev, ev["result"].as_str().unwrap()), Some(json!({"a": 1})));
        let ev = json!({"structured_output": {"verdict": "clean"}});
        assert_eq!(structured_output(&ev, ""), Some(json!({"verdict": "clean"})));
        assert_eq!(structured_output(&json!({}), "All done."), None);
    }

    #[test]
    fn usage_reads_cache_tokens() {
        let u = usage_of(
            &json!({"input_tokens": 3, "output_tokens": 5, "cache_read_input_tokens": 7, "cache_creation_input_tokens": 11, "server_tool_use": {}}),
        );
        assert_eq!((u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens), (3, 5, 7, 11));
    }
}
