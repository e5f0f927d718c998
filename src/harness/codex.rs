//! The Codex harness: `codex exec --json --output-schema <file> <prompt>`, one JSON event per
//! line. The answer is the last `agent_message` of the last completed turn, parsed as JSON; a
//! `turn.failed` is a failed leaf. Codex reports tokens, not dollars, so cost is estimated
//! from the rate table. A repair continues the thread (`codex exec resume <thread_id>`).
//!
//! Owns the command line, the schema file it needs, and the reading of Codex's stream. Unknown
//! events and item types are ignored.

use super::agent_process::{self, AgentCommand, AgentOutput, AgentTurn, ProcessEnd, StreamReader};
use super::profile::HarnessProfile;
use super::structured_text::json_in_text;
use super::{reads_transient, tail, Harness, HarnessLimits, LeafFuture};
use crate::scheduler::session::{LeafRequest, RetryHint, SessionResult, SessionStatus, Usage};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

pub struct CodexHarness {
    profile: Arc<HarnessProfile>,
}

impl CodexHarness {
    pub fn new(profile: Arc<HarnessProfile>) -> Self {
        CodexHarness { profile }
    }
}

impl Harness for CodexHarness {
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

/// Writes the schema where Codex can read it: `<run_dir>/schemas/<hash>.json`.
fn schema_file(req: &LeafRequest) -> std::io::Result<PathBuf> {
    let text = req.schema.to_string();
    let dir = req.run_dir.join("schemas");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{}.json", crate::journal::call_key::short_hash(text.as_bytes())));
    if !path.exists() {
        let tmp = dir.join(format!(".{}.tmp", req.session_id));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(path)
}

fn command(profile: &HarnessProfile, req: &LeafRequest, turn: &AgentTurn, schema: PathBuf) -> AgentCommand {
    // Options of `exec` itself (`--output-schema`) must come before the `resume` subcommand.
    let mut args: Vec<String> =
        vec!["exec".into(), "--json".into(), "--output-schema".into(), schema.display().to_string()];
    if let Some(model) = profile.model(req) {
        args.extend(["--model".into(), model]);
    }
    args.extend(profile.extra_args(req));
    if let Some(thread) = &turn.resume {
        args.extend(["resume".into(), thread.clone()]);
    }
    args.push(turn.prompt.clone());
    AgentCommand {
        program: profile.binary("codex"),
        args,
        cwd: req.workdir.clone(),
        env: profile.cli_key_env("CODEX_API_KEY"),
    }
}

async fn run(profile: Arc<HarnessProfile>, req: LeafRequest, turn: AgentTurn) -> SessionResult {
    let schema = match schema_file(&req) {
        Ok(p) => p,
        Err(e) => {
            return SessionResult::failed(
                &req.session_id,
                &req.workflow.name,
                SessionStatus::Failed,
                format!("cannot write the output schema for codex: {e}"),
            )
        }
    };
    let cmd = command(&profile, &req, &turn, schema);
    tracing::info!(binary = %cmd.program.display(), resume = turn.resume.is_some(), "codex leaf starting");
    let mut stream = CodexStream::default();
    let out = agent_process::run(cmd, req.timeout, &mut stream).await;
    let mut result = stream.finish(&profile, &req, &out);
    result.transcript = profile.keep_transcript(&req, turn.previous_transcript.as_deref(), &out.stdout);
    result
}

#[derive(Default)]
pub struct CodexStream {
    thread_id: Option<String>,
    /// Agent messages of the turn in progress.
    turn_messages: Vec<String>,
    /// The last agent message of the last completed turn.
    answer: Option<String>,
    completed_turns: u32,
    failed: Option<String>,
    last_error: Option<String>,
    usage: Usage,
}

impl StreamReader for CodexStream {
    fn line(&mut self, line: &str) -> bool {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            tracing::debug!("ignoring a line that is not JSON");
            return false;
        };
        let kind = event["type"].as_str().unwrap_or("");
        match kind {
            "thread.started" => self.thread_id = event["thread_id"].as_str().map(str::to_owned),
            "turn.started" => self.turn_messages.clear(),
            "item.completed" => {
                let item = &event["item"];
                let item_type = item["type"].as_str().unwrap_or("");
                match item_type {
                    "agent_message" => {
                        if let Some(text) = item["text"].as_str() {
                            self.turn_messages.push(text.to_owned());
                        }
                    }
                    "command_execution" => tracing::info!(
                        event = "command_execution",
                        exit_code = item["exit_code"].as_i64().unwrap_or(-1),
                        "codex event"
                    ),
                    other => tracing::debug!(event = "item.completed", item = other, "codex event"),
                }
            }
            "turn.completed" => {
                let u = &event["usage"];
                let n = |k: &str| u[k].as_u64().unwrap_or(0);
                let cached = n("cached_input_tokens");
                // Codex counts cached input inside input_tokens; coord keeps them apart.
                self.usage.input_tokens += n("input_tokens").saturating_sub(cached);
                self.usage.cache_read_tokens += cached;
                self.usage.output_tokens += n("output_tokens");
                self.completed_turns += 1;
                self.answer = self.turn_messages.last().cloned();
                tracing::info!(event = "turn.completed", "codex event");
                // `exec` runs one turn: the answer is in.
                return true;
            }
            "turn.failed" => {
                let msg = event["error"]["message"].as_str().unwrap_or("turn failed").to_owned();
                tracing::info!(event = "turn.failed", "codex event");
                self.failed = Some(msg);
                return true;
            }
            "error" => {
                self.last_error = event["message"].as_str().map(str::to_owned);
                tracing::info!(event = "error", "codex event");
            }
            other => tracing::debug!(event = other, "codex event"),
        }
        false
    }
}

impl CodexStream {
    pub fn finish(self, profile: &HarnessProfile, req: &LeafRequest, out: &AgentOutput) -> SessionResult {
        let id = &req.session_id;
        let wf = &req.workflow.name;
        let model = profile.model(req);
        let mut usage = self.usage.clone();
        profile.price(&mut usage, model.as_deref(), None);

        let mut result = if let Some(msg) = &self.failed {
            let mut r = SessionResult::failed(id, wf, SessionStatus::Failed, format!("codex turn failed: {msg}"));
            if reads_transient(msg) {
                r.retry = Some(RetryHint::default());
            }
            r
        } else if self.completed_turns > 0 {
            match &self.answer {
                None => SessionResult::failed(id, wf, SessionStatus::Failed, "codex's last turn has no agent_message"),
                Some(text) => match json_in_text(text) {
                    Some(output) => {
                        let mut r = SessionResult::new(id, wf, SessionStatus::Ok);
                        r.output = output;
                        r.text = text.clone();
                        r
                    }
                    None => {
                        let mut r = SessionResult::failed(
                            id,
                            wf,
                            SessionStatus::Failed,
                            format!("codex's final message is not JSON: {}", tail(text.as_bytes(), 200)),
                        );
                        r.text = text.clone();
                        r
                    }
                },
            }
        } else {
            match &out.end {
                ProcessEnd::TimedOut => SessionResult::failed(
                    id,
                    wf,
                    SessionStatus::Timeout,
                    format!("timed out after {}; process tree killed", humantime::format_duration(req.timeout)),
                ),
                ProcessEnd::NotStarted(e) => SessionResult::failed(id, wf, SessionStatus::Failed, e.clone()),
                _ => {
                    let detail = self.last_error.clone().unwrap_or_else(|| tail(&out.stderr, 400));
                    let mut r = SessionResult::failed(
                        id,
                        wf,
                        SessionStatus::Failed,
                        format!(
                            "codex's stream ended without a completed turn ({}){}",
                            out.describe_end(),
                            if detail.is_empty() { String::new() } else { format!(": {detail}") }
                        ),
                    );
                    r.retry = Some(RetryHint::default());
                    r
                }
            }
        };
        result.usage = usage;
        result.provider_session_id = self.thread_id;
        result.model = model;
        result
    }
}
