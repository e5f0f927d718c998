//! The Gemini CLI harness: `gemini -p <prompt> --output-format json`, one JSON object on
//! stdout (`response`, `stats`, `error`). Gemini has no output-schema flag, so the prompt asks
//! for JSON matching the schema and the JSON is dug out of the response text (fenced blocks
//! included); the scheduler validates it. Exit codes 1, 42 (input error) and 53 (turn limit)
//! are failed leaves with their reason. A repair asks again in a fresh call that quotes the
//! rejected answer and why it was rejected.
//!
//! Owns the command line and the reading of Gemini's output. Unknown fields are ignored.

use super::agent_process::{self, AgentCommand, AgentOutput, ProcessEnd, StreamReader};
use super::profile::HarnessProfile;
use super::structured_text::json_in_text;
use super::{reads_transient, tail, Harness, HarnessLimits, LeafFuture};
use crate::scheduler::session::{LeafRequest, RetryHint, SessionResult, SessionStatus, Usage};
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

async fn run(
    profile: Arc<HarnessProfile>,
    req: LeafRequest,
    prompt: String,
    previous: Option<String>,
) -> SessionResult {
    let mut args = vec!["-p".to_owned(), prompt, "--output-format".into(), "json".into()];
    if let Some(model) = profile.model(&req) {
        args.extend(["--model".into(), model]);
    }
    args.extend(profile.extra_args(&req));
    let cmd = AgentCommand {
        program: profile.binary("gemini"),
        args,
        cwd: req.workdir.clone(),
        env: profile.cli_key_env("GEMINI_API_KEY"),
    };
    tracing::info!(binary = %cmd.program.display(), repair = previous.is_some(), "gemini leaf starting");
    let mut whole = WholeOutput;
    let out = agent_process::run(cmd, req.timeout, &mut whole).await;
    let mut result = finish(&profile, &req, &out);
    result.transcript = profile.keep_transcript(&req, previous.as_deref(), &out.stdout);
    result
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

fn usage_of(stats: &Value) -> (Usage, Option<String>) {
    let mut usage = Usage::default();
    let mut model = None;
    if let Some(models) = stats["models"].as_object() {
        for (name, m) in models {
            model.get_or_insert_with(|| name.clone());
            let t = &m["tokens"];
            let n = |k: &str| t[k].as_u64().unwrap_or(0);
            let cached = n("cached");
            let input = t["input"].as_u64().unwrap_or_else(|| n("prompt").saturating_sub(cached));
            usage.input_tokens += input;
            usage.cache_read_tokens += cached;
            usage.output_tokens += n("candidates") + n("thoughts");
        }
    }
    (usage, model)
}

fn exit_reason(code: i32) -> &'static str {
    match code {
        1 => "error",
        42 => "input error",
        53 => "turn limit exceeded",
        _ => "unexpected exit",
    }
}

fn finish(profile: &HarnessProfile, req: &LeafRequest, out: &AgentOutput) -> SessionResult {
    let id = &req.session_id;
    let wf = &req.workflow.name;
    let object = output_object(&out.stdout);
    let (mut usage, reported_model) = object.as_ref().map(|o| usage_of(&o["stats"])).unwrap_or_default();
    let model = reported_model.or_else(|| profile.model(req));
    profile.price(&mut usage, model.as_deref(), None);

    let error_message = object.as_ref().and_then(|o| o["error"]["message"].as_str().map(str::to_owned));
    let response = object.as_ref().and_then(|o| o["response"].as_str().map(str::to_owned));
    let mut result = match (&out.end, &response) {
        (ProcessEnd::TimedOut, _) => SessionResult::failed(
            id,
            wf,
            SessionStatus::Timeout,
            format!("timed out after {}; process tree killed", humantime::format_duration(req.timeout)),
        ),
        (ProcessEnd::NotStarted(e), _) => SessionResult::failed(id, wf, SessionStatus::Failed, e.clone()),
        (ProcessEnd::Exited(Some(code)), _) if *code != 0 => {
            let detail = error_message.clone().unwrap_or_else(|| tail(&out.stderr, 400));
            let mut r = SessionResult::failed(
                id,
                wf,
                SessionStatus::Failed,
                format!("gemini exited with status {code} ({}): {detail}", exit_reason(*code)),
            );
            if (object.is_none() && ![42, 53].contains(code)) || reads_transient(&detail) {
                r.retry = Some(RetryHint::default());
            }
            r
        }
        (_, Some(text)) => match json_in_text(text) {
            Some(output) => {
                let mut r = SessionResult::new(id, wf, SessionStatus::Ok);
                r.output = output;
                r
            }
            None => SessionResult::failed(
                id,
                wf,
                SessionStatus::Failed,
                format!("gemini's response holds no JSON: {}", tail(text.as_bytes(), 200)),
            ),
        },
        (_, None) => {
            let detail = error_message.clone().unwrap_or_else(|| tail(&out.stderr, 400));
            let mut r = SessionResult::failed(
                id,
                wf,
                SessionStatus::Failed,
                format!(
                    "gemini printed no response ({}){}",
                    out.describe_end(),
                    if detail.is_empty() { String::new() } else { format!(": {detail}") }
                ),
            );
            if error_message.is_none() || reads_transient(&detail) {
                r.retry = Some(RetryHint::default());
            }
            r
        }
    };
    result.text = response.unwrap_or_default();
    result.usage = usage;
    result.provider_session_id = object.as_ref().and_then(|o| o["session_id"].as_str().map(str::to_owned));
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

    #[test]
    fn usage_sums_models_and_separates_cache() {
        let stats = json!({"models": {"gemini-2.5-pro": {"tokens": {"prompt": 100, "cached": 40, "candidates": 10, "thoughts": 5, "total": 155}}}});
        let (u, model) = usage_of(&stats);
        assert_eq!((u.input_tokens, u.cache_read_tokens, u.output_tokens), (60, 40, 15));
        assert_eq!(model.as_deref(), Some("gemini-2.5-pro"));
    }
}
