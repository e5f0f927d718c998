//! A stand-in for the Anthropic Messages API as the released Claude Code CLI (2.1.197) calls it.
//!
//! Wire format, as measured against the real CLI (see tests/fixtures/wire/claude-code/):
//! - `HEAD /` first (a connection probe of the base URL, no key): answered 200.
//! - `POST /v1/messages?beta=true` with `stream: true`: answered with the SSE events
//!   `message_start`, `content_block_start`, `content_block_delta` (`text_delta` /
//!   `input_json_delta`), `content_block_stop`, `message_delta` (stop_reason + usage),
//!   `message_stop`.
//! - After a broken stream the CLI repeats the request WITHOUT `stream` (its non-streaming
//!   fallback): answered with a whole JSON `message`.
//! - `POST /v1/messages/count_tokens` (not seen with the recommended env, answered anyway).
//!
//! The scripted model: with `--json-schema` the CLI offers a `StructuredOutput` tool; the model
//! answers by calling it (the CLI ends the run on that tool's result without another request).
//! The model's decision is taken from the leaf's prompt (the first user message, without the
//! CLI's `<system-reminder>` blocks) through [`Behaviour::answerer`].
#![allow(dead_code)]

use super::{Answer, Behaviour, Fault, Received, UsageSent, GOOD_KEY};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The text of the follow-up prompt coord sends on its repair turn (`--resume`).
pub const REPAIR_PREFIX: &str = "Your final answer does not match the required JSON Schema";
/// The nudge the CLI itself sends when the model ended its turn without calling the tool.
pub const ENFORCE_PREFIX: &str = "[structured-output-enforce]";
/// The name of the tool `--json-schema` turns into.
pub const STRUCTURED_TOOL: &str = "StructuredOutput";
/// How long a `Hang` answer waits (longer than any test's timeout).
pub const HANG: Duration = Duration::from_secs(3600);

pub struct AnthropicStandIn {
    pub server: MockServer,
    pub behaviour: Behaviour,
}

impl AnthropicStandIn {
    pub async fn start(behaviour: Behaviour) -> Self {
        let server = MockServer::start().await;
        let counter = Arc::new(AtomicU64::new(0));
        let responder = |kind: Endpoint| Handler { behaviour: behaviour.clone(), kind, counter: counter.clone() };
        Mock::given(method("HEAD")).respond_with(responder(Endpoint::Probe)).mount(&server).await;
        Mock::given(method("POST"))
            .and(path("/v1/messages/count_tokens"))
            .respond_with(responder(Endpoint::CountTokens))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/v1/messages"))
            .respond_with(responder(Endpoint::Messages))
            .mount(&server)
            .await;
        // Anything else is recorded and answered 404 as Anthropic does.
        Mock::given(wiremock::matchers::any())
            .respond_with(responder(Endpoint::Other))
            .with_priority(u8::MAX)
            .mount(&server)
            .await;
        AnthropicStandIn { server, behaviour }
    }

    /// The base URL to give the CLI (`ANTHROPIC_BASE_URL`), without a trailing slash.
    pub fn base_url(&self) -> String {
        self.server.uri()
    }

    /// The environment that points Claude Code at this stand-in with `key` and keeps it quiet
    /// and quick (no telemetry, no update check, no non-essential traffic, one retry of its own).
    /// The caller adds a fresh `CLAUDE_CONFIG_DIR` (and HOME in tests).
    pub fn cli_env(&self, key: &str) -> Vec<(String, String)> {
        [
            ("ANTHROPIC_BASE_URL", self.base_url()),
            ("ANTHROPIC_API_KEY", key.to_owned()),
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_owned()),
            ("DISABLE_TELEMETRY", "1".to_owned()),
            ("DISABLE_AUTOUPDATER", "1".to_owned()),
            ("DISABLE_ERROR_REPORTING", "1".to_owned()),
            ("CLAUDE_CODE_MAX_RETRIES", "1".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// The model requests received so far (POST /v1/messages), in order.
    pub fn model_requests(&self) -> Vec<Received> {
        self.behaviour
            .recorder
            .received()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path.starts_with("/v1/messages") && !r.path.contains("count_tokens"))
            .collect()
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Endpoint {
    Probe,
    CountTokens,
    Messages,
    Other,
}

struct Handler {
    behaviour: Behaviour,
    kind: Endpoint,
    counter: Arc<AtomicU64>,
}

impl Respond for Handler {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let n = self.counter.fetch_add(1, Ordering::SeqCst) + 1;
        let request_id = format!("req_standin{n:06}");
        let body = parse_body(&req.body);
        let path = match req.url.query() {
            Some(q) => format!("{}?{q}", req.url.path()),
            None => req.url.path().to_owned(),
        };
        self.behaviour.recorder.record(Received { method: req.method.to_string(), path, body: body.clone() });

        match self.kind {
            Endpoint::Probe => return ResponseTemplate::new(200),
            Endpoint::Other => {
                return error(404, "not_found_error", &format!("Not found: {}", req.url.path()), &request_id)
            }
            _ => {}
        }
        if let Some(rejected) = check_key(req, &request_id) {
            return rejected;
        }
        if header(req, "anthropic-version").is_none() {
            return error(400, "invalid_request_error", "anthropic-version: header is required", &request_id);
        }
        if let Err(message) = validate(req, &body, self.kind) {
            return error(400, "invalid_request_error", &message, &request_id);
        }
        if self.kind == Endpoint::CountTokens {
            return ResponseTemplate::new(200)
                .insert_header("request-id", request_id.as_str())
                .set_body_json(json!({"input_tokens": self.behaviour.usage.input_tokens}));
        }

        let mut delay = None;
        match self.behaviour.next_fault() {
            Some(Fault::Status { code, retry_after }) => {
                let (kind, message) = status_error(code);
                let mut resp = error(code, kind, message, &request_id);
                if let Some(secs) = retry_after {
                    resp = resp.insert_header("retry-after", secs.to_string().as_str());
                }
                return resp;
            }
            Some(Fault::Slow(d)) => delay = Some(d),
            Some(Fault::Malformed) => return malformed(&body, &request_id),
            None => {}
        }

        let turn = Turn::read(&body);
        let answer = (self.behaviour.answerer)(&turn.prompt);
        let Some(reply) = decide(&turn, &answer) else {
            // Hang: a response that never comes within any test's patience.
            return ResponseTemplate::new(200).set_delay(HANG).set_body_raw("", "text/event-stream");
        };
        let usage = self.behaviour.usage;
        self.behaviour.recorder.sent(usage);
        let model = body["model"].as_str().unwrap_or("claude-standin").to_owned();
        let message_id = format!("msg_standin{n:06}");
        let resp =
            if body["stream"].as_bool() == Some(true) {
                ResponseTemplate::new(200)
                    .insert_header("request-id", request_id.as_str())
                    .insert_header("cache-control", "no-cache")
                    .set_body_raw(sse_message(&message_id, &model, &reply, usage), "text/event-stream")
            } else {
                ResponseTemplate::new(200)
                    .insert_header("request-id", request_id.as_str())
                    .set_body_json(whole_message(&message_id, &model, &reply, usage))
            };
        match delay {
            Some(d) => resp.set_delay(d),
            None => resp,
        }
    }
}

fn parse_body(raw: &[u8]) -> Value {
    if raw.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(raw).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(raw).into_owned()))
}

fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

/// 401 unless `x-api-key` (or `authorization: Bearer`) is the good key.
fn check_key(req: &Request, request_id: &str) -> Option<ResponseTemplate> {
    let key = header(req, "x-api-key")
        .map(str::to_owned)
        .or_else(|| header(req, "authorization").and_then(|v| v.strip_prefix("Bearer ")).map(str::to_owned));
    match key {
        Some(k) if k == GOOD_KEY => None,
        Some(_) => Some(error(401, "authentication_error", "invalid x-api-key", request_id)),
        None => Some(error(401, "authentication_error", "x-api-key header is required", request_id)),
    }
}

/// Anthropic's error body.
pub fn error(status: u16, kind: &str, message: &str, request_id: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).insert_header("request-id", request_id).set_body_json(json!({
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": request_id,
    }))
}

/// The error type and message Anthropic sends with an HTTP status.
pub fn status_error(code: u16) -> (&'static str, &'static str) {
    match code {
        400 => ("invalid_request_error", "Invalid request"),
        401 => ("authentication_error", "invalid x-api-key"),
        403 => ("permission_error", "Your API key does not have permission to use the specified resource."),
        404 => ("not_found_error", "The requested resource could not be found."),
        413 => ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
        429 => (
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit. Please try again later.",
        ),
        529 => ("overloaded_error", "Overloaded"),
        _ => ("api_error", "Internal server error"),
    }
}

/// The documented request rules (answered 400 `invalid_request_error` when broken).
fn validate(req: &Request, body: &Value, kind: Endpoint) -> Result<(), String> {
    if !body.is_object() {
        return Err("request body must be a JSON object".into());
    }
    if body.get("model").and_then(Value::as_str).is_none() {
        return Err("model: Field required".into());
    }
    if kind == Endpoint::Messages && body.get("max_tokens").and_then(Value::as_u64).is_none() {
        return Err("max_tokens: Field required".into());
    }
    // Claude Code (beta `mid-conversation-system-…`) puts `role: "system"` messages between the
    // turns; they are allowed only under that beta and do not count for the alternation.
    let mid_system = header(req, "anthropic-beta").is_some_and(|b| b.contains("mid-conversation-system"));
    let messages = body.get("messages").and_then(Value::as_array).ok_or("messages: Field required")?;
    let turns: Vec<(usize, &Value)> =
        messages.iter().enumerate().filter(|(_, m)| !(mid_system && m["role"] == "system")).collect();
    if turns.is_empty() {
        return Err("messages: at least one message is required".into());
    }
    let mut expected = "user";
    for (i, m) in &turns {
        let role = m["role"].as_str().unwrap_or("");
        if role != "user" && role != "assistant" {
            return Err(format!("messages.{i}.role: Input should be 'user' or 'assistant'"));
        }
        if role != expected {
            return Err(if *i == turns[0].0 {
                "messages: first message must use the \"user\" role".into()
            } else {
                format!(
                    "messages: roles must alternate between \"user\" and \"assistant\", but found multiple \"{role}\" roles in a row"
                )
            });
        }
        expected = if role == "user" { "assistant" } else { "user" };
    }
    for (pos, (i, m)) in turns.iter().enumerate() {
        if m["role"] != "assistant" {
            continue;
        }
        let ids: Vec<&str> = blocks(m).filter(|b| b["type"] == "tool_use").filter_map(|b| b["id"].as_str()).collect();
        if ids.is_empty() {
            continue;
        }
        let answered: Vec<&str> = match turns.get(pos + 1) {
            Some((_, next)) => {
                blocks(next).filter(|b| b["type"] == "tool_result").filter_map(|b| b["tool_use_id"].as_str()).collect()
            }
            None => Vec::new(),
        };
        let missing: Vec<&str> = ids.iter().copied().filter(|id| !answered.contains(id)).collect();
        if !missing.is_empty() {
            return Err(format!(
                "messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
                missing.join(", ")
            ));
        }
    }
    for (i, tool) in body.get("tools").and_then(Value::as_array).into_iter().flatten().enumerate() {
        // Server tools (`type: "web_search_…"` etc.) carry no input_schema.
        let custom = tool.get("type").is_none_or(|t| t == "custom");
        if custom && tool["input_schema"]["type"] != "object" {
            return Err(format!("tools.{i}.custom.input_schema.type: Input should be 'object'"));
        }
    }
    Ok(())
}

fn blocks(message: &Value) -> impl Iterator<Item = &Value> {
    message["content"].as_array().into_iter().flatten()
}

/// The texts of a message (a string content is one text).
fn texts(message: &Value) -> Vec<&str> {
    match &message["content"] {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => {
            items.iter().filter(|b| b["type"] == "text").filter_map(|b| b["text"].as_str()).collect()
        }
        _ => Vec::new(),
    }
}

/// What the model needs to know of the conversation so far.
struct Turn {
    /// The leaf's prompt: the first user message without the CLI's `<system-reminder>` blocks.
    prompt: String,
    /// A later user message holds coord's repair prompt.
    repair: bool,
    /// The CLI offers the StructuredOutput tool (a draft-07 `--json-schema` was given).
    has_structured_tool: bool,
    /// Names of the tools the model has already called whose results came back.
    results_for: Vec<String>,
    /// The CLI accepted a StructuredOutput call (a tool_result without `is_error`).
    structured_accepted: bool,
    /// The working directory announced in the system prompt ("Primary working directory: …").
    cwd: Option<String>,
    /// Messages so far (for deterministic tool ids).
    depth: usize,
}

impl Turn {
    fn read(body: &Value) -> Turn {
        let messages: Vec<&Value> = body["messages"].as_array().into_iter().flatten().collect();
        let users: Vec<&&Value> = messages.iter().filter(|m| m["role"] == "user").collect();
        let prompt = users
            .first()
            .map(|m| {
                texts(m)
                    .into_iter()
                    .filter(|t| !t.trim_start().starts_with("<system-reminder>"))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        let repair = users.iter().skip(1).any(|m| texts(m).iter().any(|t| t.trim_start().starts_with(REPAIR_PREFIX)));
        let has_structured_tool = body["tools"].as_array().into_iter().flatten().any(|t| t["name"] == STRUCTURED_TOOL);
        // tool_use id -> name, then the names whose results arrived.
        let mut calls = std::collections::HashMap::new();
        let mut results_for = Vec::new();
        let mut structured_accepted = false;
        for m in &messages {
            for b in blocks(m) {
                if b["type"] == "tool_use" {
                    calls
                        .insert(b["id"].as_str().unwrap_or("").to_owned(), b["name"].as_str().unwrap_or("").to_owned());
                } else if b["type"] == "tool_result" {
                    if let Some(name) = calls.get(b["tool_use_id"].as_str().unwrap_or("")) {
                        structured_accepted |= name == STRUCTURED_TOOL && b["is_error"] != true;
                        results_for.push(name.clone());
                    }
                }
            }
        }
        let system: String = match &body["system"] {
            Value::String(s) => s.clone(),
            Value::Array(items) => items.iter().filter_map(|b| b["text"].as_str()).collect::<Vec<_>>().join("\n"),
            _ => String::new(),
        };
        let cwd = system
            .lines()
            .find_map(|l| l.trim().trim_start_matches("- ").strip_prefix("Primary working directory:"))
            .map(|s| s.trim().to_owned());
        Turn { prompt, repair, has_structured_tool, results_for, structured_accepted, cwd, depth: messages.len() }
    }

    fn tool_id(&self) -> String {
        format!("toolu_standin{:04}", self.depth)
    }
}

/// One content block the model sends.
enum Block {
    Text(String),
    ToolUse { id: String, name: String, input: Value },
}

struct Reply {
    blocks: Vec<Block>,
    stop_reason: &'static str,
}

impl Reply {
    fn text(t: impl Into<String>) -> Reply {
        Reply { blocks: vec![Block::Text(t.into())], stop_reason: "end_turn" }
    }
    fn tool(turn: &Turn, name: &str, input: Value) -> Reply {
        Reply {
            blocks: vec![Block::ToolUse { id: turn.tool_id(), name: name.to_owned(), input }],
            stop_reason: "tool_use",
        }
    }
}

/// The structured answer: through the tool when offered, else as a fenced JSON text.
fn structured(turn: &Turn, value: &Value) -> Reply {
    if turn.structured_accepted && !turn.repair {
        // The CLI sent the tool's result back (2.1.197 does not): end the turn.
        return Reply::text("Done.");
    }
    if turn.has_structured_tool {
        Reply::tool(turn, STRUCTURED_TOOL, value.clone())
    } else {
        Reply::text(format!("```json\n{}\n```", serde_json::to_string_pretty(value).unwrap()))
    }
}

/// The model's next message, or None for a model that never answers.
fn decide(turn: &Turn, answer: &Answer) -> Option<Reply> {
    Some(match answer {
        Answer::Json(v) => structured(turn, v),
        Answer::InvalidThen(v) if turn.repair => structured(turn, v),
        // The CLI validates whatever goes through StructuredOutput itself (and ends with
        // `error_max_structured_output_retries`, which coord never repairs), so the invalid
        // answer is written as text and the tool is never called: the CLI nudges once
        // ("[structured-output-enforce] …"), gets the same text, and ends `success` without
        // `structured_output`. coord then finds this JSON in the result text; wrapped in an
        // array, it breaks every object schema.
        Answer::InvalidThen(v) => {
            Reply::text(format!("Here is my answer:\n```json\n{}\n```", serde_json::to_string(&json!([v])).unwrap()))
        }
        Answer::WriteFileThen { path, contents, answer } => {
            if turn.repair || turn.results_for.iter().any(|n| n == "Write") {
                structured(turn, answer)
            } else {
                let file_path = if path.starts_with('/') {
                    path.clone()
                } else {
                    let cwd = turn.cwd.clone().unwrap_or_else(|| ".".into());
                    format!("{}/{}", cwd.trim_end_matches('/'), path)
                };
                Reply::tool(turn, "Write", json!({"file_path": file_path, "content": contents}))
            }
        }
        Answer::Hang => return None,
    })
}

fn usage_json(u: UsageSent, output_tokens: u64) -> Value {
    json!({
        "input_tokens": u.input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": u.cache_read_tokens,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    })
}

fn event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// The whole SSE stream of one message.
fn sse_message(id: &str, model: &str, reply: &Reply, usage: UsageSent) -> String {
    let mut out = event(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": usage_json(usage, 1),
        }}),
    );
    for (index, block) in reply.blocks.iter().enumerate() {
        let (start, delta) = match block {
            Block::Text(t) => (json!({"type": "text", "text": ""}), json!({"type": "text_delta", "text": t})),
            Block::ToolUse { id, name, input } => (
                json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                json!({"type": "input_json_delta", "partial_json": input.to_string()}),
            ),
        };
        out += &event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": start}),
        );
        out += &event("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": delta}));
        out += &event("content_block_stop", json!({"type": "content_block_stop", "index": index}));
    }
    out += &event(
        "message_delta",
        json!({"type": "message_delta",
               "delta": {"stop_reason": reply.stop_reason, "stop_sequence": null},
               "usage": usage_json(usage, usage.output_tokens)}),
    );
    out += &event("message_stop", json!({"type": "message_stop"}));
    out
}

/// The non-streaming answer (the CLI's fallback after a broken stream).
fn whole_message(id: &str, model: &str, reply: &Reply, usage: UsageSent) -> Value {
    let content: Vec<Value> = reply
        .blocks
        .iter()
        .map(|b| match b {
            Block::Text(t) => json!({"type": "text", "text": t}),
            Block::ToolUse { id, name, input } => json!({"type": "tool_use", "id": id, "name": name, "input": input}),
        })
        .collect();
    json!({
        "id": id, "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": reply.stop_reason, "stop_sequence": null,
        "usage": usage_json(usage, usage.output_tokens),
    })
}

/// A 200 whose stream is cut off after the first delta and holds a line that is not JSON.
fn malformed(body: &Value, request_id: &str) -> ResponseTemplate {
    let model = body["model"].as_str().unwrap_or("claude-standin");
    let mut out = event(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": "msg_standin_cut", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": usage_json(UsageSent::default(), 1),
        }}),
    );
    out += &event(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    );
    out += "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_de\n";
    out += "<html>502 Bad Gateway</html>\n";
    ResponseTemplate::new(200).insert_header("request-id", request_id).set_body_raw(out, "text/event-stream")
}
