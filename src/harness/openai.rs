//! The OpenAI-compatible Chat Completions harness (OpenAI, Ollama, vLLM, llama.cpp server...):
//! `POST {base}/v1/chat/completions` with `response_format: {type: "json_schema"}`; the answer
//! is the JSON in `choices[0].message.content`. A repair sends the conversation back with the
//! rejected answer and the validation message.
//!
//! Owns the request and response shapes of Chat Completions. The key (optional: local servers
//! need none) is read from the environment per request and only placed in `Authorization`.

use super::http_api::{self, ApiFailure};
use super::profile::HarnessProfile;
use super::schema_form;
use super::structured_text::json_in_text;
use super::{repair_prompt, Harness, HarnessLimits, LeafFuture};
use crate::leaf::session::{FailureClass, LeafRequest, SessionResult, SessionStatus, Usage};
use crate::redaction::masked_tail;
use serde_json::{json, Value};
use std::sync::Arc;

pub const DEFAULT_BASE_URL: &str = "https://api.openai.com";

pub struct OpenAiHarness {
    profile: Arc<HarnessProfile>,
    client: reqwest::Client,
}

impl OpenAiHarness {
    pub fn new(profile: Arc<HarnessProfile>) -> Self {
        OpenAiHarness { profile, client: reqwest::Client::new() }
    }
}

impl Harness for OpenAiHarness {
    fn name(&self) -> &str {
        &self.profile.name
    }

    fn start(&self, request: LeafRequest) -> LeafFuture {
        let messages = vec![json!({"role": "user", "content": request.prompt})];
        Box::pin(run(self.profile.clone(), self.client.clone(), request, messages, None))
    }

    fn repair(&self, request: LeafRequest, previous: &SessionResult, feedback: &str) -> Option<LeafFuture> {
        let messages = vec![
            json!({"role": "user", "content": request.prompt}),
            json!({"role": "assistant", "content": previous.text}),
            json!({"role": "user", "content": repair_prompt(feedback)}),
        ];
        Some(Box::pin(run(self.profile.clone(), self.client.clone(), request, messages, previous.transcript.clone())))
    }

    fn limits(&self) -> HarnessLimits {
        self.profile.limits()
    }
}

/// `json_schema.name` allows letters, digits, `_` and `-`, up to 64.
fn schema_name(workflow: &str) -> String {
    let name: String = workflow
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
        .take(64)
        .collect();
    if name.is_empty() {
        "answer".into()
    } else {
        name
    }
}

/// `{base}/v1/chat/completions`, whether or not the base already ends in `/v1`.
fn endpoint(base: &str) -> String {
    let base = base.trim_end_matches('/');
    let base = base.strip_suffix("/v1").unwrap_or(base);
    format!("{base}/v1/chat/completions")
}

async fn run(
    profile: Arc<HarnessProfile>,
    client: reqwest::Client,
    req: LeafRequest,
    messages: Vec<Value>,
    previous_transcript: Option<String>,
) -> SessionResult {
    let id = req.session_id.clone();
    let wf = req.workflow.name.clone();
    let key = match profile.api_key("OPENAI_API_KEY", false) {
        Ok(k) => k,
        Err(msg) => return SessionResult::failed_as(&id, &wf, FailureClass::Configuration, msg, None),
    };
    let Some(model) = profile.model(&req) else {
        return SessionResult::failed(
            &id,
            &wf,
            SessionStatus::Failed,
            format!(
                "no model for the {} harness: set `model` in the workflow or in [harness.{}]",
                profile.name, profile.name
            ),
        );
    };
    let strict = profile.settings.strict.unwrap_or(false);
    // Strict mode takes only OpenAI's strict form of the schema (see `schema_form`).
    let schema = if strict {
        match schema_form::strict(&req.schema) {
            Ok(s) => s,
            Err(problems) => {
                let list: Vec<String> = problems.iter().map(|p| format!("at {}: {}", p.path, p.message)).collect();
                return SessionResult::failed_as(
                    &id,
                    &wf,
                    FailureClass::Configuration,
                    format!(
                        "workflow `{wf}`: its schema has no strict form: {}. Fix: change the schema, or set `strict = false` under [harness.{}]",
                        list.join("; "),
                        profile.name
                    ),
                    None,
                );
            }
        }
    } else {
        (*req.schema).clone()
    };
    let mut body = json!({
        "model": model,
        "messages": messages,
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": schema_name(&wf),
                "schema": schema,
                "strict": strict,
            },
        },
    });
    // Unlike Anthropic's, the limit is optional here: send one only when configured.
    let max_tokens =
        profile.option(&req, "max_tokens").and_then(|v| v.as_u64()).or(profile.settings.max_tokens.map(u64::from));
    if let Some(max) = max_tokens {
        body["max_tokens"] = json!(max);
    }
    let url = endpoint(&profile.base_url(DEFAULT_BASE_URL));
    let headers: Vec<(&str, String)> = key.map(|k| vec![("authorization", format!("Bearer {k}"))]).unwrap_or_default();
    tracing::info!(model = %model, turns = messages.len(), "openai request");
    let exchange =
        tokio::time::timeout(req.timeout, http_api::post_json(&client, &profile.name, &url, &headers, &body)).await;
    let (mut result, raw) = match exchange {
        Err(_) => (
            SessionResult::failed(
                &id,
                &wf,
                SessionStatus::Timeout,
                format!("timed out after {}", humantime::format_duration(req.timeout)),
            ),
            Vec::new(),
        ),
        Ok(Err(ApiFailure { message, class, retry_after, body })) => {
            tracing::info!(event = "http_error", class = class.as_str(), "openai response");
            let message = match class {
                FailureClass::Configuration => format!("{message}. {}", profile.key_fix("OPENAI_API_KEY")),
                _ => message,
            };
            (SessionResult::failed_as(&id, &wf, class, message, retry_after), body)
        }
        Ok(Ok(reply)) => {
            tracing::info!(event = "completion", "openai response");
            (read_response(&profile, &req, &reply.json, &model), reply.body)
        }
    };
    result.transcript = profile.keep_transcript(&req, previous_transcript.as_deref(), &raw);
    result
}

fn read_response(profile: &HarnessProfile, req: &LeafRequest, response: &Value, model: &str) -> SessionResult {
    let id = &req.session_id;
    let wf = &req.workflow.name;
    let choice = &response["choices"][0];
    let message = &choice["message"];
    let content = message["content"].as_str().unwrap_or("").to_owned();
    let u = &response["usage"];
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    let cached = u["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap_or(0);
    let mut usage = Usage {
        // Cached prompt tokens are counted inside prompt_tokens; coord keeps them apart.
        input_tokens: n("prompt_tokens").saturating_sub(cached),
        output_tokens: n("completion_tokens"),
        cache_read_tokens: cached,
        ..Usage::default()
    };
    let model = response["model"].as_str().filter(|m| !m.is_empty()).unwrap_or(model).to_owned();
    // Some compatible gateways report the charge; OpenAI itself does not.
    profile.price(&mut usage, Some(&model), u["cost"].as_f64());

    let mut result = if let Some(refusal) = message["refusal"].as_str().filter(|r| !r.is_empty()) {
        SessionResult::failed(
            id,
            wf,
            SessionStatus::Failed,
            format!("the model refused: {}", masked_tail(refusal.as_bytes(), 300)),
        )
    } else if choice.is_null() {
        SessionResult::failed(id, wf, SessionStatus::Failed, "the response has no choices")
    } else {
        match json_in_text(&content) {
            Some(mut output) => {
                if profile.settings.strict.unwrap_or(false) {
                    schema_form::drop_optional_nulls(&mut output, &req.schema);
                }
                let mut r = SessionResult::new(id, wf, SessionStatus::Ok);
                r.output = output;
                r
            }
            None => {
                let finish = choice["finish_reason"].as_str().unwrap_or("?");
                let why = if finish == "length" { "cut off at the token limit" } else { "not JSON" };
                SessionResult::failed(
                    id,
                    wf,
                    SessionStatus::Failed,
                    format!("the answer is {why} (finish_reason {finish}): {}", masked_tail(content.as_bytes(), 200)),
                )
            }
        }
    };
    result.text = content;
    result.usage = usage;
    result.model = Some(model);
    result.provider_session_id = response["id"].as_str().map(str::to_owned);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_and_schema_name() {
        assert_eq!(endpoint("http://localhost:11434"), "http://localhost:11434/v1/chat/completions");
        assert_eq!(endpoint("http://localhost:11434/v1/"), "http://localhost:11434/v1/chat/completions");
        assert_eq!(schema_name("mr-review"), "mr-review");
        assert_eq!(schema_name("a.b c"), "a_b_c");
    }
}
