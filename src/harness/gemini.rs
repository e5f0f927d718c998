//! The Gemini CLI harness: `gemini -p <prompt> --output-format json --skip-trust`, one JSON
//! object on stdout (`response`, `stats`). Gemini has no output-schema flag, so the prompt
//! asks for JSON matching the schema and the JSON is dug out of the response text (fenced
//! blocks included); the scheduler validates it. A failure prints nothing on stdout: its JSON
//! error object (`error.code`: an HTTP status, or the CLI's own exit code) ends stderr, after
//! a stack trace, and the exit status is that code truncated to a byte. Leaves with a worktree
//! may edit (`--approval-mode auto_edit`); without it Gemini offers the model no tool that
//! writes. A repair asks again in a fresh call that quotes the rejected answer and why it was
//! rejected.
//!
//! A custom `base_url` needs Gemini's API-key login selected in a settings file (an
//! environment variable cannot select it): coord writes one under the run directory and points
//! `GEMINI_CLI_HOME` at it, unless the harness's `env` names a `GEMINI_CLI_HOME` of its own.
//!
//! Owns the command line and the reading of Gemini's output. Unknown fields are ignored.

use super::agent_outcome;
use super::agent_process::{self, AgentCommand, AgentOutput, ProcessEnd, StreamReader};
use super::profile::HarnessProfile;
use super::structured_text::json_in_text;
use super::{class_of_status, readable, Harness, HarnessLimits, LeafFuture};
use crate::leaf::session::{FailureClass, LeafRequest, SessionResult, SessionStatus, Usage};
use crate::redaction::masked_tail;
use serde_json::Value;
use std::sync::Arc;

pub struct GeminiHarness {
    profile: Arc<HarnessProfile>,
}

impl GeminiHarness {
    pub fn new(profile: Arc<HarnessProfile>) -> Self {
        GeminiHarness { profile }
    }
}

impl Harness for GeminiHarness {
    fn name(&self) -> &str {
        &self.profile.name
    }

    fn start(&self, request: LeafRequest) -> LeafFuture {
        let prompt = prompt_with_schema(&request.prompt, &request.schema);
        Box::pin(run(self.profile.clone(), request, prompt, None))
    }

    fn repair(&self, request: LeafRequest, previous: &SessionResult, feedback: &str) -> Option<LeafFuture> {
        let prompt = format!(
            "{}\n\nYour previous answer was:\n{}\n\nIt was rejected: {feedback}\nAnswer again with the corrected JSON only.",
            prompt_with_schema(&request.prompt, &request.schema),
            previous.text
        );
        Some(Box::pin(run(self.profile.clone(), request, prompt, previous.transcript.clone())))
    }

    fn limits(&self) -> HarnessLimits {
        self.profile.limits()
    }

    fn runs_in_workdir(&self) -> bool {
        true
    }
}

pub fn prompt_with_schema(prompt: &str, schema: &Value) -> String {
    format!(
        "{prompt}\n\nAnswer with a single JSON value matching this JSON Schema, and nothing else \
         (no prose, no code fences):\n{schema}"
    )
}

const BINARY: &str = "gemini";

async fn run(
    profile: Arc<HarnessProfile>,
    req: LeafRequest,
    prompt: String,
    previous: Option<String>,
) -> SessionResult {
    let cmd = match command(&profile, &req, prompt) {
        Ok(c) => c,
        Err(e) => {
            return SessionResult::failed_as(&req.session_id, &req.workflow.name, FailureClass::Configuration, e, None)
        }
    };
    tracing::info!(binary = %cmd.program.display(), repair = previous.is_some(), "gemini leaf starting");
    let mut whole = WholeOutput;
    let (version, out) = tokio::join!(profile.cli_version(BINARY), agent_process::run(cmd, req.timeout, &mut whole));
    let mut result = finish(&profile, &req, &out);
    result.agent_version = version;
    result.transcript = profile.keep_transcript(&req, previous.as_deref(), &out.stdout);
    result
}

fn command(profile: &HarnessProfile, req: &LeafRequest, prompt: String) -> Result<AgentCommand, String> {
    // Headless Gemini refuses a folder it was not told to trust; coord chose the folder.
    let mut args = vec!["-p".to_owned(), prompt, "--output-format".into(), "json".into(), "--skip-trust".into()];
    if let Some(model) = profile.model(req) {
        args.extend(["--model".into(), model]);
    }
    match profile.option(req, "approval_mode").and_then(|v| v.as_str().map(str::to_owned)) {
        Some(mode) => args.extend(["--approval-mode".into(), mode]),
        None if req.worktree.is_some() => args.extend(["--approval-mode".into(), "auto_edit".into()]),
        None => {}
    }
    args.extend(profile.extra_args(req));
    let mut env = vec![("NO_COLOR".to_owned(), "1".to_owned())];
    if let Some(base) = &profile.settings.base_url {
        env.push(("GOOGLE_GEMINI_BASE_URL".into(), base.trim_end_matches('/').to_owned()));
        if !profile.settings.env.contains_key("GEMINI_CLI_HOME") {
            env.push(("GEMINI_CLI_HOME".into(), api_key_settings(req)?.display().to_string()));
        }
    }
    env.extend(profile.extra_env());
    env.extend(profile.cli_key_env("GEMINI_API_KEY"));
    Ok(AgentCommand {
        program: profile.binary(BINARY),
        args,
        cwd: req.workdir.clone(),
        env: profile.leaf_environment(req, env),
    })
}

/// A Gemini home (`<run_dir>/gemini-home`) whose settings select API-key login, so that the
/// CLI takes a custom base URL, and keep the CLI from updating itself or sending statistics.
fn api_key_settings(req: &LeafRequest) -> Result<std::path::PathBuf, String> {
    // Absolute: a leaf with a worktree runs elsewhere than the run directory is relative to.
    let home = std::path::absolute(req.run_dir.join("gemini-home")).unwrap_or_else(|_| req.run_dir.join("gemini-home"));
    let settings = serde_json::json!({
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "general": {"enableAutoUpdate": false, "enableAutoUpdateNotification": false},
        "privacy": {"usageStatisticsEnabled": false},
        "telemetry": {"enabled": false}
    });
    let dir = home.join(".gemini");
    std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::write(dir.join("settings.json"), settings.to_string()))
        .map_err(|e| format!("cannot write Gemini's settings under {}: {e}", home.display()))?;
    Ok(home)
}

/// `--output-format json` prints one (pretty-printed) object at the end: read it all.
struct WholeOutput;

impl StreamReader for WholeOutput {
    fn line(&mut self, _line: &str) -> bool {
        false
    }
}

/// The JSON object on stdout, tolerating log lines before it.
fn output_object(stdout: &[u8]) -> Option<Value> {
    let text = String::from_utf8_lossy(stdout);
    let text = text.trim();
    if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(text) {
        return Some(v);
    }
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with('{') {
            if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(text[offset..].trim()) {
                return Some(v);
            }
        }
        offset += line.len();
    }
    None
}

/// Tokens of every model the run used (the router's included: it is spent too), priced per
/// model, and the model that answered: the one in the `main` role, else the one that wrote
/// the most candidates tokens.
fn usage_of(profile: &HarnessProfile, stats: &Value) -> (Usage, Option<String>) {
    let mut usage = Usage::default();
    let Some(models) = stats["models"].as_object() else { return (usage, None) };
    for (name, m) in models {
        let t = &m["tokens"];
        let n = |k: &str| t[k].as_u64().unwrap_or(0);
        let cached = n("cached");
        let mut one = Usage {
            input_tokens: t["input"].as_u64().unwrap_or_else(|| n("prompt").saturating_sub(cached)),
            cache_read_tokens: cached,
            output_tokens: n("candidates") + n("thoughts"),
            ..Usage::default()
        };
        profile.price(&mut one, Some(name), None);
        usage.add(&one);
    }
    let main = models.iter().find(|(_, m)| m["roles"].get("main").is_some()).map(|(name, _)| name.clone());
    let answering = main.or_else(|| {
        models.iter().max_by_key(|(_, m)| m["tokens"]["candidates"].as_u64().unwrap_or(0)).map(|(n, _)| n.clone())
    });
    (usage, answering)
}

/// What a Gemini CLI exit code (or the `code` of its error object, below 100) says.
fn exit_class(code: i64) -> (FailureClass, &'static str) {
    match code {
        41 => (FailureClass::Configuration, "authentication"),
        42 => (FailureClass::Permanent, "input error"),
        44 => (FailureClass::Configuration, "sandbox error"),
        52 => (FailureClass::Configuration, "configuration error"),
        53 => (FailureClass::Permanent, "turn limit exceeded"),
        54 => (FailureClass::Permanent, "tool error"),
        55 => (FailureClass::Configuration, "untrusted folder"),
        130 => (FailureClass::Transient, "cancelled"),
        // The CLI's generic error: a broken stream, a failed fetch.
        _ => (FailureClass::Transient, "error"),
    }
}

/// A failed Gemini run: its error object's `code` (an HTTP status, or the CLI's exit code)
/// decides the class; Google answers a bad key with 400 `API_KEY_INVALID`.
fn failure(profile: &HarnessProfile, req: &LeafRequest, error: &Value, exit: Option<i32>) -> SessionResult {
    let (id, wf) = (&req.session_id, &req.workflow.name);
    let raw = error["message"].as_str().unwrap_or_default();
    let body = serde_json::from_str::<Value>(raw).ok();
    let message = body.as_ref().and_then(|b| b["error"]["message"].as_str()).unwrap_or(raw);
    let message = readable(message, 400);
    let key_invalid = body.as_ref().is_some_and(|b| b.to_string().contains("API_KEY_INVALID"));
    let code = error["code"].as_i64().or(exit.map(i64::from)).unwrap_or(1);
    let (class, text) = if code >= 100 {
        let class = if key_invalid { FailureClass::Configuration } else { class_of_status(code as u16) };
        (class, format!("gemini: the model API answered {code}: {message}"))
    } else {
        let (class, what) = exit_class(code);
        (class, format!("gemini exited with status {code} ({what}): {message}"))
    };
    let text = match class {
        FailureClass::Configuration if key_invalid || code == 41 || code == 401 || code == 403 => {
            format!("{text}. {}", profile.key_fix("GEMINI_API_KEY"))
        }
        FailureClass::Configuration => format!("{text}. Fix: {}", exit_fix(code)),
        _ => text,
    };
    SessionResult::failed_as(id, wf, class, text, None)
}

/// The one-line fix for a configuration exit code other than authentication.
fn exit_fix(code: i64) -> &'static str {
    match code {
        44 => "check Gemini's sandbox settings (GEMINI_SANDBOX, `tools.sandbox`)",
        55 => "trust the folder in Gemini's settings (`security.folderTrust`), or remove the setting that makes `--skip-trust` ineffective",
        _ => "check Gemini's settings.json (in GEMINI_CLI_HOME, ~/.gemini or the project's .gemini)",
    }
}

fn finish(profile: &HarnessProfile, req: &LeafRequest, out: &AgentOutput) -> SessionResult {
    let id = &req.session_id;
    let wf = &req.workflow.name;
    let object = output_object(&out.stdout);
    let (usage, reported_model) = object.as_ref().map(|o| usage_of(profile, &o["stats"])).unwrap_or_default();
    let model = reported_model.or_else(|| profile.model(req));
    let error_object = object
        .as_ref()
        .filter(|o| o["error"].is_object())
        .cloned()
        .or_else(|| output_object(&out.stderr).filter(|o| o["error"].is_object()));
    let response = object.as_ref().and_then(|o| o["response"].as_str().map(str::to_owned));
    let mut result = match (&out.end, &response, &error_object) {
        (ProcessEnd::TimedOut, ..) => agent_outcome::timed_out(req),
        (ProcessEnd::NotStarted(e), ..) => agent_outcome::not_started(profile, req, BINARY, e),
        (ProcessEnd::Exited(code), _, Some(err)) if *code != Some(0) => failure(profile, req, &err["error"], *code),
        (ProcessEnd::Exited(Some(code)), _, None) if *code != 0 => {
            let detail = readable(&String::from_utf8_lossy(&out.stderr), 400);
            failure(profile, req, &serde_json::json!({"message": detail, "code": code}), Some(*code))
        }
        (_, Some(text), _) => match json_in_text(text) {
            Some(output) => {
                let mut r = SessionResult::new(id, wf, SessionStatus::Ok);
                r.output = output;
                r
            }
            None => SessionResult::no_json(
                id,
                wf,
                format!("gemini's response holds no JSON: {}", masked_tail(text.as_bytes(), 200)),
                text,
            ),
        },
        (_, None, _) => agent_outcome::no_answer(profile, req, out, BINARY, "gemini printed no response", None),
    };
    result.text = response.unwrap_or_default();
    result.usage = usage;
    result.provider_session_id =
        object.as_ref().or(error_object.as_ref()).and_then(|o| o["session_id"].as_str().map(str::to_owned));
    result.model = model;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_object_after_log_lines() {
        let out = b"Loaded cached credentials.\n{\n  \"response\": \"ok\",\n  \"stats\": {}\n}\n";
        assert_eq!(output_object(out).unwrap()["response"], "ok");
        assert!(output_object(b"nothing").is_none());
    }

    fn profile() -> HarnessProfile {
        let redactor = Arc::new(crate::redaction::Redactor::default());
        HarnessProfile::new("gemini", "gemini", Default::default(), std::path::Path::new("."), redactor).unwrap()
    }

    #[test]
    fn usage_sums_models_and_separates_cache() {
        let stats = json!({"models": {"gemini-2.5-pro": {"tokens": {"prompt": 100, "cached": 40, "candidates": 10, "thoughts": 5, "total": 155}}}});
        let (u, model) = usage_of(&profile(), &stats);
        assert_eq!((u.input_tokens, u.cache_read_tokens, u.output_tokens), (60, 40, 15));
        assert_eq!(model.as_deref(), Some("gemini-2.5-pro"));
    }

    /// The CLI's own output (tests/fixtures/wire/gemini): the router model is listed first and
    /// the answer comes from the model in the `main` role; both are counted.
    #[test]
    fn the_main_model_answers_and_the_router_is_counted() {
        let out = include_bytes!("../../tests/fixtures/wire/gemini/success.stdout");
        let stats = &output_object(out).unwrap()["stats"];
        let (u, model) = usage_of(&profile(), stats);
        assert_eq!(model.as_deref(), Some("gemini-3.8-flash"));
        assert_eq!((u.input_tokens, u.cache_read_tokens, u.output_tokens), (1200 + 90, 300, 80 + 7));
    }

    fn request() -> LeafRequest {
        let workflow = crate::workflow::Workflow::new("review", "gemini", "x", json!({"type": "object"})).unwrap();
        LeafRequest::sample(workflow, std::time::Duration::from_secs(5))
    }

    /// coord always passes `--skip-trust`, so a real run cannot be refused this way; the
    /// CLI's own output for it (tests/fixtures/wire/gemini/untrusted.*) still reads right.
    #[test]
    fn an_untrusted_folder_is_configuration_with_a_fix_and_no_escape_codes() {
        let out = AgentOutput {
            end: ProcessEnd::Exited(Some(55)),
            stdout: include_bytes!("../../tests/fixtures/wire/gemini/untrusted.stdout").to_vec(),
            stderr: include_bytes!("../../tests/fixtures/wire/gemini/untrusted.stderr").to_vec(),
            result_seen: false,
        };
        let r = finish(&profile(), &request(), &out);
        assert_eq!(r.failure, Some(FailureClass::Configuration));
        assert!(r.retry.is_none());
        let error = r.error.unwrap();
        assert!(
            error.starts_with(
                "gemini exited with status 55 (untrusted folder): Gemini CLI is not running in a trusted directory"
            ),
            "{error}"
        );
        assert!(error.contains("Fix: "), "{error}");
        assert!(!error.contains('\u{1b}'), "{error:?}");
    }

    #[test]
    fn the_error_object_ends_stderr_after_a_stack_trace() {
        let err = include_bytes!("../../tests/fixtures/wire/gemini/bad-key.stderr");
        let object = output_object(err).unwrap();
        assert_eq!(object["error"]["code"], 400);
    }
}
