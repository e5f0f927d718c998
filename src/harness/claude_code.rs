//! The Claude Code harness: `claude -p <prompt> --output-format stream-json --verbose
//! --json-schema <schema>`, one JSON event per line, the answer in the final `result` event's
//! `structured_output`. The schema is sent in draft-07 (Claude Code drops a 2020-12 schema
//! without a word); Claude Code validates the `StructuredOutput` tool's input itself and makes
//! the model retry, and coord's repair (`--resume <session_id>`) covers what gets past it.
//! A leaf with a worktree may edit files (`--permission-mode acceptEdits` unless the workflow
//! says otherwise); others run in Claude Code's default mode, where edits and commands are
//! refused headless.
//!
//! Owns the command line and the reading of Claude Code's stream. Unknown events and fields
//! are ignored; a stream without a `result` event, an error result or a missing structured
//! output are failed results, never errors of the run. Failures are classed from `is_error`,
//! `api_error_status` and `subtype`, never from the words of the message.

use super::agent_outcome;
use super::agent_process::{self, AgentCommand, AgentOutput, AgentTurn, StreamReader};
use super::profile::HarnessProfile;
use super::schema_form;
use super::structured_text::json_in_text;
use super::{class_of_status, readable, Harness, HarnessLimits, LeafFuture};
use crate::leaf::session::{FailureClass, LeafRequest, SessionResult, SessionStatus, Usage};
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
        schema_form::draft07(&req.schema).to_string(),
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
    match profile.option(req, "permission_mode").and_then(|v| v.as_str().map(str::to_owned)) {
        Some(mode) => args.extend(["--permission-mode".into(), mode]),
        None if req.worktree.is_some() => args.extend(["--permission-mode".into(), "acceptEdits".into()]),
        None => {}
    }
    if let Some(session) = &turn.resume {
        args.extend(["--resume".into(), session.clone()]);
    }
    args.extend(profile.extra_args(req));
    let mut env = vec![
        // Many leaves at once must not update the binary under each other.
        ("DISABLE_AUTOUPDATER".to_owned(), "1".to_owned()),
    ];
    if let Some(base) = &profile.settings.base_url {
        env.push(("ANTHROPIC_BASE_URL".into(), base.trim_end_matches('/').to_owned()));
    }
    env.extend(profile.extra_env());
    env.extend(profile.cli_key_env("ANTHROPIC_API_KEY"));
    AgentCommand {
        program: profile.binary(BINARY),
        args,
        cwd: req.workdir.clone(),
        env: profile.leaf_environment(req, env),
    }
}

const BINARY: &str = "claude";

async fn run(profile: Arc<HarnessProfile>, req: LeafRequest, turn: AgentTurn) -> SessionResult {
    let cmd = command(&profile, &req, &turn);
    tracing::info!(binary = %cmd.program.display(), resume = turn.resume.is_some(), "claude-code leaf starting");
    let mut stream = ClaudeStream::default();
    let (version, out) = tokio::join!(profile.cli_version(BINARY), agent_process::run(cmd, req.timeout, &mut stream));
    let mut result = stream.finish(&profile, &req, &out);
    result.agent_version = version;
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
        let Some(event) = self.result else {
            let mut result = agent_outcome::no_answer(
                profile,
                req,
                out,
                BINARY,
                "claude's stream ended without a result event",
                None,
            );
            result.provider_session_id = self.session_id;
            result.model = self.model.or_else(|| profile.model(req));
            return result;
        };

        let model = answering_model(&event).or(self.model).or_else(|| profile.model(req));
        let mut usage = model_usage_of(&event["modelUsage"]).unwrap_or_else(|| usage_of(&event["usage"]));
        let reported = event["total_cost_usd"].as_f64().or_else(|| event["cost_usd"].as_f64());
        profile.price(&mut usage, model.as_deref(), reported);
        let text = event["result"].as_str().map(str::to_owned).or(self.last_text).unwrap_or_default();
        let subtype = event["subtype"].as_str().unwrap_or("success");
        let is_error = event["is_error"].as_bool().unwrap_or(false);

        let mut result = if is_error || subtype != "success" {
            failure(profile, req, &event, subtype, &text)
        } else {
            match structured_output(&event, &text) {
                Some(output) => {
                    let mut r = SessionResult::new(id, wf, SessionStatus::Ok);
                    r.output = output;
                    r
                }
                None => SessionResult::no_json(
                    id,
                    wf,
                    "claude's result carries no structured_output (and its text holds no JSON)",
                    &text,
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

/// A result event that is an error: an API failure (`api_error_status`, reported under
/// `subtype: "success"`), or a limit the session ran into (`error_max_turns` ...).
fn failure(profile: &HarnessProfile, req: &LeafRequest, event: &Value, subtype: &str, text: &str) -> SessionResult {
    let (id, wf) = (&req.session_id, &req.workflow.name);
    let errors: Vec<String> = event["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e.as_str().map(str::to_owned).unwrap_or_else(|| e.to_string()))
        .collect();
    let detail = if errors.is_empty() { api_error_detail(text) } else { readable(&errors.join("; "), 300) };
    match event["api_error_status"].as_u64() {
        Some(status) => {
            let class = class_of_status(status as u16);
            let message = format!("claude: the model API answered {status}: {detail}");
            let message = match class {
                FailureClass::Configuration => format!("{message}. {}", profile.key_fix("ANTHROPIC_API_KEY")),
                _ => message,
            };
            SessionResult::failed_as(id, wf, class, message, None)
        }
        None => SessionResult::failed_as(
            id,
            wf,
            FailureClass::Permanent,
            format!("claude ended with `{subtype}`: {detail}"),
            None,
        ),
    }
}

/// The provider's own message from Claude Code's `API Error: 529 {"type":"error",...}` text,
/// else the text itself.
fn api_error_detail(text: &str) -> String {
    let inner = text.find('{').and_then(|at| serde_json::from_str::<Value>(&text[at..]).ok());
    match inner.as_ref().map(|v| &v["error"]) {
        Some(e) if e["message"].is_string() => {
            let kind = e["type"].as_str().map(|t| format!("{t}: ")).unwrap_or_default();
            readable(&format!("{kind}{}", e["message"].as_str().unwrap_or("")), 300)
        }
        _ => readable(text, 300),
    }
}

/// The model that did the turn: the `modelUsage` entry with the most output tokens (Claude
/// Code also calls a small model for side tasks, and lists it there too).
fn answering_model(event: &Value) -> Option<String> {
    let models = event["modelUsage"].as_object()?;
    models.iter().max_by_key(|(_, m)| m["outputTokens"].as_u64().unwrap_or(0)).map(|(name, _)| name.clone())
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

/// The sum of `modelUsage`, which counts every request of the invocation (the top-level
/// `usage` misses a request answered by Claude Code's non-streaming fallback); `None` when
/// absent or empty (an API failure reports `{}`).
fn model_usage_of(models: &Value) -> Option<Usage> {
    let models = models.as_object().filter(|m| !m.is_empty())?;
    let mut usage = Usage::default();
    for m in models.values() {
        let n = |k: &str| m[k].as_u64().unwrap_or(0);
        usage.input_tokens += n("inputTokens");
        usage.output_tokens += n("outputTokens");
        usage.cache_read_tokens += n("cacheReadInputTokens");
        usage.cache_write_tokens += n("cacheCreationInputTokens");
    }
    Some(usage)
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
