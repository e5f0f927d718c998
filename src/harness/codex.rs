//! The Codex harness: `codex exec --json --output-schema <file> <prompt>`, one JSON event per
//! line. The answer is the last `agent_message` of the last completed turn, parsed as JSON; a
//! `turn.failed` is a failed leaf. Codex sends the schema with `strict: true`, so the file
//! holds the workflow's schema in OpenAI's strict form, and the `null`s a strict answer gives
//! absent optional fields are dropped before validation. Codex reports tokens, not dollars, so
//! cost is estimated from the rate table. A repair continues the thread (`codex exec resume
//! <thread_id>`), whose usage covers the whole thread: the repair's own is the difference.
//! Reviews run in the `read-only` sandbox, leaves with a worktree in `workspace-write`
//! (a workflow's `options.sandbox` overrides); outside a git repository Codex is told to run
//! anyway (`--skip-git-repo-check`), since coord chose the folder.
//!
//! Owns the command line, the schema file it needs, and the reading of Codex's stream. Unknown
//! events and item types are ignored.

use super::agent_outcome;
use super::agent_process::{self, AgentCommand, AgentOutput, AgentTurn, StreamReader};
use super::profile::HarnessProfile;
use super::schema_form;
use super::structured_text::json_in_text;
use super::{class_of_status, readable, Harness, HarnessLimits, LeafFuture};
use crate::leaf::session::{FailureClass, LeafRequest, SessionResult, SessionStatus, Usage};
use crate::redaction::masked_tail;
use serde_json::Value;
use std::path::{Path, PathBuf};
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

const BINARY: &str = "codex";

/// The name coord gives the model provider it configures when `base_url` is set.
const PROVIDER: &str = "coord";

/// Writes the schema, in strict form, where Codex can read it: `<run_dir>/schemas/<hash>.json`.
fn schema_file(req: &LeafRequest) -> Result<PathBuf, String> {
    let strict = schema_form::strict(&req.schema).map_err(|problems| {
        let list: Vec<String> = problems.iter().map(|p| format!("at {}: {}", p.path, p.message)).collect();
        format!(
            "workflow `{}`: its schema cannot be sent to codex, which requires OpenAI's strict form: {}. Fix: change the schema (`coord check` shows where) or run the workflow on another harness",
            req.workflow.name,
            list.join("; ")
        )
    })?;
    let text = strict.to_string();
    // Absolute: a leaf with a worktree runs elsewhere than the run directory is relative to.
    let dir = std::path::absolute(req.run_dir.join("schemas")).unwrap_or_else(|_| req.run_dir.join("schemas"));
    let written = (|| {
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.json", crate::journal::call_key::short_hash(text.as_bytes())));
        if !path.exists() {
            let tmp = dir.join(format!(".{}.tmp", req.session_id));
            std::fs::write(&tmp, &text)?;
            std::fs::rename(&tmp, &path)?;
        }
        Ok::<_, std::io::Error>(path)
    })();
    written.map_err(|e| format!("cannot write the output schema for codex: {e}"))
}

/// True when `dir` or a folder above it holds a git repository.
fn in_git_repository(dir: &Path) -> bool {
    dir.ancestors().any(|d| d.join(".git").exists())
}

/// A TOML string, for a `-c key=value` override.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn command(profile: &HarnessProfile, req: &LeafRequest, turn: &AgentTurn, schema: PathBuf) -> AgentCommand {
    // Options of `exec` itself must come before the `resume` subcommand.
    let mut args: Vec<String> =
        vec!["exec".into(), "--json".into(), "--output-schema".into(), schema.display().to_string()];
    let sandbox = profile
        .option(req, "sandbox")
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| if req.worktree.is_some() { "workspace-write" } else { "read-only" }.to_owned());
    args.extend(["--sandbox".into(), sandbox]);
    if !in_git_repository(&req.workdir) {
        args.push("--skip-git-repo-check".into());
    }
    if let Some(model) = profile.model(req) {
        args.extend(["--model".into(), model]);
    }
    if let Some(base) = &profile.settings.base_url {
        // Codex ignores OPENAI_BASE_URL for its built-in provider: configure one of coord's.
        let key_var = profile.key_variable("OPENAI_API_KEY");
        for (key, value) in [
            ("name", toml_string("coord")),
            ("base_url", toml_string(base.trim_end_matches('/'))),
            ("env_key", toml_string(key_var)),
            ("wire_api", toml_string("responses")),
        ] {
            args.extend(["-c".into(), format!("model_providers.{PROVIDER}.{key}={value}")]);
        }
        args.extend(["-c".into(), format!("model_provider={}", toml_string(PROVIDER))]);
    }
    // Many leaves at once must not each look for an update.
    args.extend(["-c".into(), "check_for_update_on_startup=false".into()]);
    args.extend(profile.extra_args(req));
    if let Some(thread) = &turn.resume {
        args.extend(["resume".into(), thread.clone()]);
    }
    args.push(turn.prompt.clone());
    let mut env = profile.extra_env();
    env.extend(profile.cli_key_env("CODEX_API_KEY"));
    AgentCommand {
        program: profile.binary(BINARY),
        args,
        cwd: req.workdir.clone(),
        env: profile.leaf_environment(req, env),
    }
}

async fn run(profile: Arc<HarnessProfile>, req: LeafRequest, turn: AgentTurn) -> SessionResult {
    let schema = match schema_file(&req) {
        Ok(p) => p,
        Err(e) => {
            return SessionResult::failed_as(&req.session_id, &req.workflow.name, FailureClass::Configuration, e, None)
        }
    };
    let cmd = command(&profile, &req, &turn, schema);
    tracing::info!(binary = %cmd.program.display(), resume = turn.resume.is_some(), "codex leaf starting");
    let mut stream = CodexStream::default();
    let (version, out) = tokio::join!(profile.cli_version(BINARY), agent_process::run(cmd, req.timeout, &mut stream));
    let mut result = stream.finish(&profile, &req, &out, &turn.previous_usage);
    result.agent_version = version;
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
                self.usage.input_tokens = n("input_tokens").saturating_sub(cached);
                self.usage.cache_read_tokens = cached;
                self.usage.output_tokens = n("output_tokens");
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
    /// `already_reported`: the usage the resumed thread reported before this turn.
    pub fn finish(
        self,
        profile: &HarnessProfile,
        req: &LeafRequest,
        out: &AgentOutput,
        already_reported: &Usage,
    ) -> SessionResult {
        let id = &req.session_id;
        let wf = &req.workflow.name;
        let model = profile.model(req);
        let mut usage = self.usage.tokens_since(already_reported);
        profile.price(&mut usage, model.as_deref(), None);

        let mut result = if let Some(msg) = &self.failed {
            failure(profile, req, msg)
        } else if self.completed_turns > 0 {
            match &self.answer {
                None => SessionResult::failed_as(
                    id,
                    wf,
                    FailureClass::Permanent,
                    "codex's last turn has no agent_message",
                    None,
                ),
                Some(text) => match json_in_text(text) {
                    Some(mut output) => {
                        schema_form::drop_optional_nulls(&mut output, &req.schema);
                        let mut r = SessionResult::new(id, wf, SessionStatus::Ok);
                        r.output = output;
                        r.text = text.clone();
                        r
                    }
                    None => SessionResult::no_json(
                        id,
                        wf,
                        format!("codex's final message is not JSON: {}", masked_tail(text.as_bytes(), 200)),
                        text,
                    ),
                },
            }
        } else if let Some(msg) = self.last_error.as_deref().filter(|_| self.thread_id.is_some()) {
            failure(profile, req, msg)
        } else {
            agent_outcome::no_answer(
                profile,
                req,
                out,
                BINARY,
                "codex's stream ended without a completed turn",
                self.last_error.as_deref().map(|e| readable(e, 400)),
            )
        };
        result.usage = usage;
        result.provider_session_id = self.thread_id;
        result.model = model;
        result
    }
}

/// A failed turn. Codex's `turn.failed` carries only a message: the HTTP status it quotes
/// (`unexpected status 401 Unauthorized: ...`, `... last status: 429 Too Many Requests`), the
/// provider's JSON error body it passes on (a 400), or the fixed text of one of Codex's own
/// error kinds ([`CODEX_ERROR_KINDS`]). Those, in that order, decide the class.
fn failure(profile: &HarnessProfile, req: &LeafRequest, message: &str) -> SessionResult {
    let (id, wf) = (&req.session_id, &req.workflow.name);
    let detail = readable(&provider_message(message), 400);
    let body_code = provider_code(message);
    let class = quoted_status(message)
        .map(class_of_status)
        .or_else(|| body_code.as_deref().map(class_of_code))
        .or_else(|| CODEX_ERROR_KINDS.iter().find(|(text, _)| message.starts_with(text)).map(|(_, class)| *class))
        .unwrap_or(FailureClass::Permanent);
    let mut text = match quoted_status(message) {
        Some(status) => format!("codex: the model API answered {status}: {detail}"),
        None => format!("codex turn failed: {detail}"),
    };
    if class == FailureClass::Configuration {
        text.push_str(&format!(". {}", profile.key_fix("OPENAI_API_KEY")));
    }
    SessionResult::failed_as(id, wf, class, text, None)
}

/// Codex's own error kinds that quote no status, by the fixed text each is printed as
/// (codex-rs `CodexErr`'s Display), and what each says about the leaf.
const CODEX_ERROR_KINDS: &[(&str, FailureClass)] = &[
    ("We\u{2019}re currently experiencing high demand", FailureClass::Transient),
    ("We're currently experiencing high demand", FailureClass::Transient),
    ("stream disconnected before completion", FailureClass::Transient),
    ("Missing environment variable", FailureClass::Configuration),
    ("Quota exceeded", FailureClass::Configuration),
    ("You've hit your usage limit", FailureClass::Configuration),
    ("To use Codex with your ChatGPT plan", FailureClass::Configuration),
];

/// What an OpenAI error `code` says: a rejected key is the set-up, a rate limit passes, the
/// rest (`invalid_json_schema`, `context_length_exceeded` ...) is the request's own fault.
fn class_of_code(code: &str) -> FailureClass {
    match code {
        "invalid_api_key" | "insufficient_quota" | "model_not_found" => FailureClass::Configuration,
        "rate_limit_exceeded" | "server_error" => FailureClass::Transient,
        _ => FailureClass::Permanent,
    }
}

/// The `code` (else `type`) of the provider's JSON error body Codex passes on.
fn provider_code(message: &str) -> Option<String> {
    let body = message.find('{').and_then(|at| serde_json::from_str::<Value>(&message[at..]).ok())?;
    let error = &body["error"];
    error["code"].as_str().or_else(|| error["type"].as_str()).map(str::to_owned)
}

/// The HTTP status a Codex error message quotes: three digits right after a `status`
/// (`unexpected status 401 Unauthorized`, `last status: 429`), or at the very start.
fn quoted_status(message: &str) -> Option<u16> {
    let three_digits = |text: &str| -> Option<u16> {
        let text = text.trim_start_matches([' ', ':', '=', '"']);
        let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
        (digits.len() == 3).then(|| digits.parse().ok()).flatten().filter(|n| (100..600).contains(n))
    };
    message
        .match_indices("status")
        .find_map(|(at, word)| three_digits(&message[at + word.len()..]))
        .or_else(|| three_digits(message))
}

/// The provider's own `error.message` when Codex quotes the JSON body, else the message.
fn provider_message(message: &str) -> String {
    let body = message.find('{').and_then(|at| serde_json::from_str::<Value>(&message[at..]).ok());
    match body.as_ref().and_then(|b| b["error"]["message"].as_str()) {
        Some(inner) => inner.to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quoted_status_decides_and_addresses_do_not_count() {
        assert_eq!(quoted_status("unexpected status 401 Unauthorized: {\"error\":{}}"), Some(401));
        assert_eq!(quoted_status("exceeded retry limit, last status: 429 Too Many Requests"), Some(429));
        assert_eq!(quoted_status("500 Internal Server Error"), Some(500));
        assert_eq!(quoted_status("error sending request for url (http://127.0.0.1:41234/v1/responses)"), None);
        assert_eq!(
            provider_message("unexpected status 400 Bad Request: {\"error\":{\"message\":\"Invalid schema\"}}"),
            "Invalid schema"
        );
        let body =
            r#"{"error":{"message":"Invalid schema","type":"invalid_request_error","code":"invalid_json_schema"}}"#;
        assert_eq!(provider_code(body).as_deref(), Some("invalid_json_schema"));
        assert_eq!(class_of_code("invalid_api_key"), FailureClass::Configuration);
    }
}
