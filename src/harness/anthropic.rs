//! The Anthropic Messages API harness: `POST {base}/v1/messages`. Structured output comes from
//! one forced tool (`tool_choice: {type: "tool"}`) whose `input_schema` is the leaf's schema;
//! the answer is that `tool_use` block's `input`. A repair sends the conversation back with a
//! `tool_result` marked as an error that carries the validation message.
//!
//! Owns the request and response shapes of the Messages API. The key is read from the
//! environment per request and only ever placed in the `x-api-key` header.

use super::http_api::{self, ApiFailure};
use super::profile::HarnessProfile;
use super::{Harness, HarnessLimits, LeafFuture};
use crate::journal::blob_store::BlobStore;
use crate::leaf::session::{FailureClass, LeafRequest, SessionResult, SessionStatus, Usage};
use crate::redaction::masked_tail;
use serde_json::{json, Value};
use std::sync::Arc;

pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
pub const API_VERSION: &str = "2023-06-01";
/// The one tool the model is made to call; its input is the answer.
pub const ANSWER_TOOL: &str = "submit_answer";
/// Used when a repair cannot find the original tool call's id in the transcript.
const FALLBACK_TOOL_USE_ID: &str = "toolu_coord_answer";

pub struct AnthropicHarness {
    profile: Arc<HarnessProfile>,
    client: reqwest::Client,
}

impl AnthropicHarness {
    pub fn new(profile: Arc<HarnessProfile>) -> Self {
        AnthropicHarness { profile, client: reqwest::Client::new() }
    }
}

impl Harness for AnthropicHarness {
    fn name(&self) -> &str {
        &self.profile.name
    }

    fn start(&self, request: LeafRequest) -> LeafFuture {
        let messages = vec![json!({"role": "user", "content": request.prompt})];
        Box::pin(run(self.profile.clone(), self.client.clone(), request, messages, None))
    }

    fn repair(&self, request: LeafRequest, previous: &SessionResult, feedback: &str) -> Option<LeafFuture> {
        let answer = previous_answer(&request, previous);
        let tool_use_id = answer
            .as_array()
            .and_then(|blocks| blocks.iter().find(|b| b["type"] == "tool_use"))
            .and_then(|b| b["id"].as_str())
            .unwrap_or(FALLBACK_TOOL_USE_ID)
            .to_owned();
        let messages = vec![
            json!({"role": "user", "content": request.prompt}),
            json!({"role": "assistant", "content": answer}),
            json!({"role": "user", "content": [{
                "type": "tool_result",
                "tool_use_id": tool_use_id,
                "is_error": true,
                "content": super::repair_prompt(feedback),
            }]}),
        ];
        Some(Box::pin(run(self.profile.clone(), self.client.clone(), request, messages, previous.transcript.clone())))
    }

    fn limits(&self) -> HarnessLimits {
        self.profile.limits()
    }
}

/// The assistant turn being repaired: its content blocks from the transcript (the raw response
/// body), else rebuilt from its output.
fn previous_answer(req: &LeafRequest, previous: &SessionResult) -> Value {
    let recorded = previous
        .transcript
        .as_deref()
        .and_then(|hash| BlobStore::new(&req.run_dir).get(hash).ok())
        .and_then(|bytes| {
            serde_json::Deserializer::from_slice(&bytes).into_iter::<Value>().filter_map(Result::ok).last()
        })
        .map(|response| response["content"].clone())
        .filter(Value::is_array);
    recorded.unwrap_or_else(|| {
        json!([{"type": "tool_use", "id": FALLBACK_TOOL_USE_ID, "name": ANSWER_TOOL, "input": wrap_output(&req.schema, &previous.output)}])
    })
}

/// Tool inputs must be objects: a schema of another type is wrapped as `{value: ...}`.
fn tool_schema(schema: &Value) -> (Value, bool) {
    if schema["type"] == "object" {
        (schema.clone(), false)
    } else {
        (json!({"type": "object", "required": ["value"], "properties": {"value": schema}}), true)
    }
}

fn wrap_output(schema: &Value, output: &Value) -> Value {
    if tool_schema(schema).1 {
        json!({"value": output})
    } else {
        output.clone()
    }
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
    // Required, so `Ok` always holds a key.
    let key = match profile.api_key("ANTHROPIC_API_KEY", true) {
        Ok(k) => k.unwrap_or_default(),
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
    let (input_schema, wrapped) = tool_schema(&req.schema);
    let body = json!({
        "model": model,
        "max_tokens": profile.max_tokens(&req),
        "messages": messages,
        "tools": [{
            "name": ANSWER_TOOL,
            "description": "Submit the final answer. Its input must match the schema exactly.",
            "input_schema": input_schema,
        }],
        "tool_choice": {"type": "tool", "name": ANSWER_TOOL},
    });
    let url = format!("{}/v1/messages", profile.base_url(DEFAULT_BASE_URL));
    let headers = [("x-api-key", key), ("anthropic-version", API_VERSION.to_owned())];
    tracing::info!(model = %model, turns = messages.len(), "anthropic request");
    let exchange =
        tokio::time::timeout(req.timeout, http_api::post_json(&client, "anthropic", &url, &headers, &body)).await;
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
            tracing::info!(event = "http_error", class = class.as_str(), "anthropic response");
            let message = match class {
                FailureClass::Configuration => format!("{message}. {}", profile.key_fix("ANTHROPIC_API_KEY")),
                _ => message,
            };
            (SessionResult::failed_as(&id, &wf, class, message, retry_after), body)
        }
        Ok(Ok(reply)) => {
            tracing::info!(
                event = "message",
                stop_reason = reply.json["stop_reason"].as_str().unwrap_or("?"),
                "anthropic response"
            );
            (read_response(&profile, &req, &reply.json, wrapped, &model), reply.body)
        }
    };
    result.transcript = profile.keep_transcript(&req, previous_transcript.as_deref(), &raw);
    result
}

fn read_response(
    profile: &HarnessProfile,
    req: &LeafRequest,
    response: &Value,
    wrapped: bool,
    model: &str,
) -> SessionResult {
    let id = &req.session_id;
    let wf = &req.workflow.name;
    let blocks = response["content"].as_array().cloned().unwrap_or_default();
    let text: Vec<&str> = blocks.iter().filter(|b| b["type"] == "text").filter_map(|b| b["text"].as_str()).collect();
    let answer =
        blocks.iter().find(|b| b["type"] == "tool_use" && b["name"] == ANSWER_TOOL).map(|b| b["input"].clone());
    let u = &response["usage"];
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    let mut usage = Usage {
        input_tokens: n("input_tokens"),
        output_tokens: n("output_tokens"),
        cache_read_tokens: n("cache_read_input_tokens"),
        cache_write_tokens: n("cache_creation_input_tokens"),
        ..Usage::default()
    };
    let model = response["model"].as_str().unwrap_or(model).to_owned();
    profile.price(&mut usage, Some(&model), None);

    let mut result = match answer {
        Some(input) => {
            let output = if wrapped { input["value"].clone() } else { input };
            let mut r = SessionResult::new(id, wf, SessionStatus::Ok);
            r.text = if text.is_empty() { output.to_string() } else { text.join("\n") };
            r.output = output;
            r
        }
        None => {
            let stop = response["stop_reason"].as_str().unwrap_or("?");
            let mut r = SessionResult::failed(
                id,
                wf,
                SessionStatus::Failed,
                format!(
                    "anthropic: the answer has no `{ANSWER_TOOL}` tool call (stop_reason {stop}){}",
                    if text.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", masked_tail(text.join("\n").as_bytes(), 200))
                    }
                ),
            );
            r.text = text.join("\n");
            r
        }
    };
    result.usage = usage;
    result.model = Some(model);
    result.provider_session_id = response["id"].as_str().map(str::to_owned);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_object_schemas_are_wrapped() {
        let (s, wrapped) = tool_schema(&json!({"type": "object", "properties": {}}));
        assert!(!wrapped);
        assert_eq!(s["type"], "object");
        let (s, wrapped) = tool_schema(&json!({"enum": ["a", "b"]}));
        assert!(wrapped);
        assert_eq!(s["properties"]["value"]["enum"][0], "a");
        assert_eq!(wrap_output(&json!({"enum": ["a"]}), &json!("a")), json!({"value": "a"}));
    }
}
