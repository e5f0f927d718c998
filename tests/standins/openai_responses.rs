//! A stand-in for the OpenAI Responses API as the released Codex CLI (codex-cli 0.171.0) calls
//! it: `POST {base}/responses` with `stream: true`, answered with a whole server-sent-event body
//! (`response.created` … `response.output_item.done` … `response.completed` carrying `usage`).
//!
//! Enforced like OpenAI: `Authorization: Bearer <GOOD_KEY>` (else 401 `invalid_api_key`), a
//! `model` and an `input`, and the structured-output rules for `text.format` with
//! `type: "json_schema", strict: true` (root `type: "object"`, every object with
//! `additionalProperties: false` and every property in `required`, no unsupported keywords);
//! a broken schema gets OpenAI's 400 `invalid_json_schema`.
//!
//! Usage: OpenAI counts cached input inside `input_tokens`. The stand-in reports
//! `input_tokens = usage.input_tokens + usage.cache_read_tokens` and
//! `input_tokens_details.cached_tokens = usage.cache_read_tokens`, so that `UsageSent` holds
//! the uncached input apart from the cached, the way coord keeps them.
//!
//! Codex 0.171 offers the model no direct `apply_patch` / shell tool: it offers one freeform
//! (custom, lark grammar) tool `exec` ("code mode") that runs JavaScript in which
//! `tools.apply_patch(patch)` and `tools.exec_command({cmd})` are available. A file is written
//! with a `custom_tool_call` of `exec` whose input is `await tools.apply_patch("*** Begin
//! Patch\n*** Add File: …")`. If a request offers `apply_patch` directly (older or other
//! configurations), the patch is sent to it as is.

use super::{Answer, Behaviour, Fault, Received, UsageSent, GOOD_KEY};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The name of the custom model provider Codex is pointed at (see [`codex_provider_args`]).
pub const PROVIDER_ID: &str = "coordtest";

/// The text a scripted model gives first for [`Answer::InvalidThen`]: prose, not JSON.
pub const INVALID_PROSE: &str = "I reviewed the change and it looks fine to me; nothing blocks it.";

/// Fixed `created_at` so answers are deterministic.
const CREATED_AT: u64 = 1_767_225_600;

pub struct ResponsesStandIn {
    pub server: MockServer,
    pub behaviour: Behaviour,
}

impl ResponsesStandIn {
    pub async fn start(behaviour: Behaviour) -> Self {
        let server = MockServer::start().await;
        let responder = Responder { behaviour: behaviour.clone(), counter: Arc::new(AtomicU64::new(0)) };
        Mock::given(any()).respond_with(responder).mount(&server).await;
        ResponsesStandIn { server, behaviour }
    }

    /// The base URL Codex is given: requests go to `{base_url}/responses`.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.server.uri())
    }

    /// The `-c` overrides that point `codex` at this stand-in (see [`codex_provider_args`]).
    pub fn codex_args(&self, key_env: &str, retries: u32) -> Vec<String> {
        codex_provider_args(&self.base_url(), key_env, retries)
    }
}

/// `-c` overrides (no config file needed) that make Codex use a custom Responses provider at
/// `base_url`, with its key in the environment variable `key_env`, plain HTTP+SSE (no
/// WebSocket attempt), `retries` request retries and `retries` stream retries, and no
/// analytics / feedback / update check / OpenTelemetry export.
pub fn codex_provider_args(base_url: &str, key_env: &str, retries: u32) -> Vec<String> {
    let p = PROVIDER_ID;
    let kv = [
        format!("model_provider={p}"),
        format!("model_providers.{p}.name={p}"),
        format!("model_providers.{p}.base_url={base_url}"),
        format!("model_providers.{p}.env_key={key_env}"),
        format!("model_providers.{p}.wire_api=responses"),
        format!("model_providers.{p}.request_max_retries={retries}"),
        format!("model_providers.{p}.stream_max_retries={retries}"),
        "analytics.enabled=false".to_owned(),
        "feedback.enabled=false".to_owned(),
        "check_for_update_on_startup=false".to_owned(),
        "otel.exporter=none".to_owned(),
        "otel.metrics_exporter=none".to_owned(),
        "otel.trace_exporter=none".to_owned(),
    ];
    kv.into_iter().flat_map(|a| ["-c".to_owned(), a]).collect()
}

struct Responder {
    behaviour: Behaviour,
    counter: Arc<AtomicU64>,
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let path = match request.url.query() {
            Some(q) => format!("{}?{q}", request.url.path()),
            None => request.url.path().to_owned(),
        };
        let method = request.method.to_string();
        self.behaviour.recorder.record(Received { method: method.clone(), path: path.clone(), body: body.clone() });
        let n = self.counter.fetch_add(1, Ordering::SeqCst) + 1;

        // Auth comes first, on every route, as at api.openai.com.
        let auth = request.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
        let Some(key) = auth.strip_prefix("Bearer ").map(str::trim).filter(|k| !k.is_empty()) else {
            return error(
                401,
                n,
                "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                Value::Null,
                Value::Null,
            );
        };
        if key != GOOD_KEY {
            return invalid_key(n, key);
        }

        if !(method == "POST" && (path == "/v1/responses" || path == "/responses")) {
            return error(
                404,
                n,
                &format!("Invalid URL ({method} {path})"),
                "invalid_request_error",
                Value::Null,
                Value::Null,
            );
        }

        // A model request: the next fault, if any, replaces the answer.
        let mut delay = None;
        match self.behaviour.next_fault() {
            Some(Fault::Status { code, retry_after }) => return status_fault(code, retry_after, n, key, &body),
            Some(Fault::Malformed) => return malformed(n),
            Some(Fault::Slow(d)) => delay = Some(d),
            None => {}
        }

        if let Err(e) = check_request(&body) {
            return e.into_response(n);
        }

        let prompts = Prompts::read(&body);
        let answer = (self.behaviour.answerer)(&prompts.first);
        let model = body["model"].as_str().unwrap_or("gpt-5").to_owned();
        let output = match answer {
            Answer::Hang => {
                // Never answer: hold the response far beyond any leaf timeout.
                return ResponseTemplate::new(200).set_delay(Duration::from_secs(24 * 3600));
            }
            Answer::Json(v) => Output::Message(v.to_string()),
            Answer::InvalidThen(v) => {
                if prompts.repair {
                    Output::Message(v.to_string())
                } else {
                    Output::Message(INVALID_PROSE.to_owned())
                }
            }
            Answer::WriteFileThen { path, contents, answer } => {
                if prompts.tool_outputs_since_user > 0 {
                    Output::Message(answer.to_string())
                } else {
                    Output::ToolCall(write_file_call(&body, &path, &contents))
                }
            }
        };

        let usage = self.behaviour.usage;
        self.behaviour.recorder.sent(usage);
        let stream = body["stream"].as_bool().unwrap_or(false);
        let mut t = if stream {
            ResponseTemplate::new(200)
                .insert_header("x-request-id", format!("req_standin_{n:06}").as_str())
                .set_body_raw(sse_body(n, &model, &output, usage), "text/event-stream; charset=utf-8")
        } else {
            let resp = response_object(n, &model, "completed", vec![output.item(n, true)], Some(usage));
            ResponseTemplate::new(200)
                .insert_header("x-request-id", format!("req_standin_{n:06}").as_str())
                .set_body_raw(serde_json::to_vec(&resp).unwrap(), "application/json")
        };
        if let Some(d) = delay {
            t = t.set_delay(d);
        }
        t
    }
}

/// What the scripted model produces for one request.
enum Output {
    /// One assistant message with this text.
    Message(String),
    /// One custom (freeform) tool call: (tool name, input).
    ToolCall((String, String)),
}

impl Output {
    /// The output item, finished (`done`) or as first announced.
    fn item(&self, n: u64, done: bool) -> Value {
        match self {
            Output::Message(text) => json!({
                "id": format!("msg_standin_{n:06}"),
                "type": "message",
                "status": if done { "completed" } else { "in_progress" },
                "role": "assistant",
                "content": if done {
                    json!([{ "type": "output_text", "text": text, "annotations": [], "logprobs": [] }])
                } else {
                    json!([])
                },
            }),
            Output::ToolCall((name, input)) => json!({
                "id": format!("ctc_standin_{n:06}"),
                "type": "custom_tool_call",
                "status": if done { "completed" } else { "in_progress" },
                "call_id": format!("call_standin_{n:06}"),
                "name": name,
                "input": if done { input.as_str() } else { "" },
            }),
        }
    }
}

/// The user's prompt, whether coord's repair turn follows it, and tool outputs since the last
/// user message.
struct Prompts {
    first: String,
    repair: bool,
    tool_outputs_since_user: usize,
}

impl Prompts {
    fn read(body: &Value) -> Self {
        let mut users: Vec<String> = Vec::new();
        let mut tool_outputs_since_user = 0;
        let items: Vec<Value> = match &body["input"] {
            Value::String(s) => vec![json!({"type": "message", "role": "user", "content": s})],
            Value::Array(a) => a.clone(),
            _ => Vec::new(),
        };
        for item in &items {
            let kind = item["type"].as_str().unwrap_or("message");
            if kind == "message" && item["role"] == "user" {
                let text = message_text(item);
                // Codex puts its own context in user messages too: `<environment_context>`,
                // `# AGENTS.md instructions …` / `<user_instructions>`; the leaf's prompt is
                // the first other one.
                let t = text.trim_start();
                if t.starts_with('<') || t.starts_with("# AGENTS.md") {
                    continue;
                }
                users.push(text);
                tool_outputs_since_user = 0;
            } else if kind.ends_with("_call_output") {
                tool_outputs_since_user += 1;
            }
        }
        let first = users.first().cloned().unwrap_or_default();
        // coord's repair continues the thread with a later user message ("Your final answer
        // does not match the required JSON Schema …").
        let repair = users.len() > 1;
        Prompts { first, repair, tool_outputs_since_user }
    }
}

fn message_text(item: &Value) -> String {
    match &item["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join("\n"),
        _ => String::new(),
    }
}

/// Names of every tool the request offers, nested namespaces and `additional_tools` input
/// items included.
fn offered_tools(body: &Value) -> Vec<String> {
    fn walk(tools: &Value, out: &mut Vec<String>) {
        for t in tools.as_array().into_iter().flatten() {
            if let Some(name) = t["name"].as_str() {
                if t["type"] != "namespace" {
                    out.push(name.to_owned());
                }
            }
            walk(&t["tools"], out);
        }
    }
    let mut out = Vec::new();
    walk(&body["tools"], &mut out);
    for item in body["input"].as_array().into_iter().flatten() {
        walk(&item["tools"], &mut out);
    }
    out
}

/// The tool call that creates `path` with `contents` in the working directory.
fn write_file_call(body: &Value, path: &str, contents: &str) -> (String, String) {
    let mut patch = format!("*** Begin Patch\n*** Add File: {path}\n");
    for line in contents.lines() {
        patch.push('+');
        patch.push_str(line);
        patch.push('\n');
    }
    patch.push_str("*** End Patch\n");
    let tools = offered_tools(body);
    if tools.iter().any(|t| t == "apply_patch") && !tools.iter().any(|t| t == "exec") {
        return ("apply_patch".to_owned(), patch);
    }
    // Code mode: JavaScript calling the nested apply_patch tool. A JSON string is a valid JS
    // string literal.
    let js = format!("const r = await tools.apply_patch({});\ntext(r);\n", serde_json::to_string(&patch).unwrap());
    ("exec".to_owned(), js)
}

fn usage_json(u: UsageSent) -> Value {
    let input = u.input_tokens + u.cache_read_tokens;
    json!({
        "input_tokens": input,
        "input_tokens_details": { "cached_tokens": u.cache_read_tokens },
        "output_tokens": u.output_tokens,
        "output_tokens_details": { "reasoning_tokens": 0 },
        "total_tokens": input + u.output_tokens,
    })
}

fn response_object(n: u64, model: &str, status: &str, output: Vec<Value>, usage: Option<UsageSent>) -> Value {
    json!({
        "id": format!("resp_standin_{n:06}"),
        "object": "response",
        "created_at": CREATED_AT,
        "status": status,
        "error": null,
        "incomplete_details": null,
        "model": model,
        "output": output,
        "parallel_tool_calls": false,
        "store": false,
        "usage": usage.map(usage_json),
    })
}

fn sse_event(out: &mut String, seq: &mut u64, mut event: Value) {
    let kind = event["type"].as_str().unwrap_or("").to_owned();
    event["sequence_number"] = json!(*seq);
    *seq += 1;
    out.push_str(&format!("event: {kind}\ndata: {event}\n\n"));
}

fn sse_body(n: u64, model: &str, output: &Output, usage: UsageSent) -> Vec<u8> {
    let mut s = String::new();
    let mut seq = 0;
    let resp_in_progress = response_object(n, model, "in_progress", vec![], None);
    sse_event(&mut s, &mut seq, json!({"type": "response.created", "response": resp_in_progress}));
    sse_event(&mut s, &mut seq, json!({"type": "response.in_progress", "response": resp_in_progress}));
    sse_event(
        &mut s,
        &mut seq,
        json!({"type": "response.output_item.added", "output_index": 0, "item": output.item(n, false)}),
    );
    match output {
        Output::Message(text) => {
            let item_id = format!("msg_standin_{n:06}");
            let part = |t: &str| json!({"type": "output_text", "text": t, "annotations": [], "logprobs": []});
            sse_event(
                &mut s,
                &mut seq,
                json!({"type": "response.content_part.added", "item_id": item_id, "output_index": 0, "content_index": 0, "part": part("")}),
            );
            sse_event(
                &mut s,
                &mut seq,
                json!({"type": "response.output_text.delta", "item_id": item_id, "output_index": 0, "content_index": 0, "delta": text, "logprobs": []}),
            );
            sse_event(
                &mut s,
                &mut seq,
                json!({"type": "response.output_text.done", "item_id": item_id, "output_index": 0, "content_index": 0, "text": text, "logprobs": []}),
            );
            sse_event(
                &mut s,
                &mut seq,
                json!({"type": "response.content_part.done", "item_id": item_id, "output_index": 0, "content_index": 0, "part": part(text)}),
            );
        }
        Output::ToolCall((_, input)) => {
            let item_id = format!("ctc_standin_{n:06}");
            sse_event(
                &mut s,
                &mut seq,
                json!({"type": "response.custom_tool_call_input.delta", "item_id": item_id, "output_index": 0, "delta": input}),
            );
            sse_event(
                &mut s,
                &mut seq,
                json!({"type": "response.custom_tool_call_input.done", "item_id": item_id, "output_index": 0, "input": input}),
            );
        }
    }
    let done = output.item(n, true);
    sse_event(&mut s, &mut seq, json!({"type": "response.output_item.done", "output_index": 0, "item": done}));
    let completed = response_object(n, model, "completed", vec![done], Some(usage));
    sse_event(&mut s, &mut seq, json!({"type": "response.completed", "response": completed}));
    s.into_bytes()
}

/// A 200 whose stream stops part-way (no `response.completed`) and holds a line that is not
/// JSON.
fn malformed(n: u64) -> ResponseTemplate {
    let resp = response_object(n, "gpt-5", "in_progress", vec![], None);
    let body = format!(
        "event: response.created\ndata: {}\n\n\
         event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"delta\":\"{{\\\"verd\n\n\
         data: this line is not JSON <html>502 Bad Gateway</html>\n\n",
        json!({"type": "response.created", "sequence_number": 0, "response": resp}),
    );
    ResponseTemplate::new(200).set_body_raw(body.into_bytes(), "text/event-stream; charset=utf-8")
}

fn error(status: u16, n: u64, message: &str, kind: &str, param: Value, code: Value) -> ResponseTemplate {
    let body = json!({"error": {"message": message, "type": kind, "param": param, "code": code}});
    ResponseTemplate::new(status)
        .insert_header("x-request-id", format!("req_standin_{n:06}").as_str())
        .set_body_raw(serde_json::to_vec_pretty(&body).unwrap(), "application/json; charset=utf-8")
}

/// OpenAI shows a rejected key masked: its first 8 and last 4 characters.
fn mask_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 12 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..8].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 12))
}

fn invalid_key(n: u64, key: &str) -> ResponseTemplate {
    error(
        401,
        n,
        &format!(
            "Incorrect API key provided: {}. You can find your API key at https://platform.openai.com/account/api-keys.",
            mask_key(key)
        ),
        "invalid_request_error",
        Value::Null,
        json!("invalid_api_key"),
    )
}

fn status_fault(code: u16, retry_after: Option<u64>, n: u64, key: &str, body: &Value) -> ResponseTemplate {
    let model = body["model"].as_str().unwrap_or("gpt-5");
    let wait = retry_after.unwrap_or(1);
    let mut t = match code {
        400 => error(400, n, "Invalid request.", "invalid_request_error", Value::Null, Value::Null),
        401 => invalid_key(n, key),
        403 => error(
            403,
            n,
            "You are not allowed to sample from this model",
            "invalid_request_error",
            Value::Null,
            Value::Null,
        ),
        404 => error(
            404,
            n,
            &format!("The model `{model}` does not exist or you do not have access to it."),
            "invalid_request_error",
            Value::Null,
            json!("model_not_found"),
        ),
        429 => error(
            429,
            n,
            &format!(
                "Rate limit reached for {model} in organization org-standin on requests per min (RPM): Limit 500, Used 500, Requested 1. Please try again in {wait}s. Visit https://platform.openai.com/account/rate-limits to learn more."
            ),
            "requests",
            Value::Null,
            json!("rate_limit_exceeded"),
        ),
        500 => error(
            500,
            n,
            "We're currently experiencing high demand, which may cause temporary errors.",
            "server_error",
            Value::Null,
            Value::Null,
        ),
        502 => error(502, n, "Bad gateway.", "server_error", Value::Null, Value::Null),
        503 | 529 => error(
            code,
            n,
            "The engine is currently overloaded, please try again later",
            "server_error",
            Value::Null,
            Value::Null,
        ),
        other => error(
            other,
            n,
            &format!("HTTP {other}"),
            if other >= 500 { "server_error" } else { "invalid_request_error" },
            Value::Null,
            Value::Null,
        ),
    };
    if let Some(s) = retry_after {
        t = t.insert_header("retry-after", s.to_string().as_str());
    }
    t
}

/// A 400 as OpenAI words it.
struct BadRequest {
    message: String,
    param: Option<&'static str>,
    code: Option<&'static str>,
}

impl BadRequest {
    fn into_response(self, n: u64) -> ResponseTemplate {
        error(400, n, &self.message, "invalid_request_error", json!(self.param), json!(self.code))
    }
}

/// The request rules OpenAI enforces that Codex's requests can break.
fn check_request(body: &Value) -> Result<(), BadRequest> {
    if !body.is_object() {
        return Err(BadRequest {
            message: "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)".into(),
            param: None,
            code: None,
        });
    }
    for p in ["model", "input"] {
        if body.get(p).is_none_or(Value::is_null) {
            return Err(BadRequest {
                message: format!("Missing required parameter: '{p}'."),
                param: Some(p),
                code: Some("missing_required_parameter"),
            });
        }
    }
    let format = &body["text"]["format"];
    if format["type"] == "json_schema" {
        let name = format["name"].as_str().unwrap_or("");
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !name_ok {
            return Err(BadRequest {
                message: "Invalid 'text.format.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'.".into(),
                param: Some("text.format.name"),
                code: Some("invalid_value"),
            });
        }
        let Some(schema) = format.get("schema") else {
            return Err(BadRequest {
                message: "Missing required parameter: 'text.format.schema'.".into(),
                param: Some("text.format.schema"),
                code: Some("missing_required_parameter"),
            });
        };
        if format["strict"] == true {
            if let Err(detail) = check_strict_schema(schema) {
                return Err(BadRequest {
                    message: format!("Invalid schema for response_format '{name}': {detail}"),
                    param: Some("text.format.schema"),
                    code: Some("invalid_json_schema"),
                });
            }
        }
    }
    Ok(())
}

/// Keywords strict structured outputs refuse (OpenAI "Supported schemas": composition other
/// than `anyOf`, conditional and dependent keywords, and the object keywords it lacks).
const UNSUPPORTED: &[&str] = &[
    "allOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "dependentRequired",
    "dependentSchemas",
    "patternProperties",
    "unevaluatedProperties",
    "propertyNames",
    "unevaluatedItems",
    "contains",
    "minContains",
    "maxContains",
];

/// Python's repr of the context tuple, as OpenAI prints it: `()`, `('properties', 'x')`.
fn context(path: &[String]) -> String {
    let parts: Vec<String> =
        path.iter().map(|p| if p.parse::<usize>().is_ok() { p.clone() } else { format!("'{p}'") }).collect();
    match parts.len() {
        0 => "()".into(),
        1 => format!("({},)", parts[0]),
        _ => format!("({})", parts.join(", ")),
    }
}

fn check_strict_schema(schema: &Value) -> Result<(), String> {
    let root_type = match &schema["type"] {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        other => other.to_string(),
    };
    if root_type != "object" {
        return Err(format!("schema must be a JSON Schema of 'type: \"object\"', got 'type: \"{root_type}\"'."));
    }
    check_node(schema, &mut Vec::new(), 0)
}

fn check_node(node: &Value, path: &mut Vec<String>, depth: usize) -> Result<(), String> {
    let Some(obj) = node.as_object() else {
        return if node.is_boolean() {
            Err(format!("In context={}, schema must be a JSON Schema object, got a boolean.", context(path)))
        } else {
            Ok(())
        };
    };
    if depth > 10 {
        return Err(format!("In context={}, schema exceeds the maximum nesting depth of 10.", context(path)));
    }
    for k in UNSUPPORTED {
        if obj.contains_key(*k) {
            return Err(format!("In context={}, '{k}' is not permitted.", context(path)));
        }
    }
    let has_def = ["type", "anyOf", "$ref", "enum", "const"].iter().any(|k| obj.contains_key(*k));
    if !has_def {
        return Err(format!("In context={}, schema must have a 'type' key.", context(path)));
    }
    let is_object = match &obj.get("type") {
        Some(Value::String(t)) => t == "object",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "object"),
        _ => obj.contains_key("properties"),
    };
    if is_object {
        if obj.get("additionalProperties") != Some(&Value::Bool(false)) {
            return Err(format!(
                "In context={}, 'additionalProperties' is required to be supplied and to be false.",
                context(path)
            ));
        }
        let props: Vec<&String> =
            obj.get("properties").and_then(Value::as_object).map(|p| p.keys().collect()).unwrap_or_default();
        let required: Option<Vec<&str>> =
            obj.get("required").and_then(Value::as_array).map(|r| r.iter().filter_map(Value::as_str).collect());
        let req = required.clone().unwrap_or_default();
        if let Some(missing) = props.iter().find(|p| !req.contains(&p.as_str())) {
            return Err(format!(
                "In context={}, 'required' is required to be supplied and to be an array including every key in properties. Missing '{missing}'.",
                context(path)
            ));
        }
        if let Some(extra) = req.iter().find(|r| !props.iter().any(|p| p.as_str() == **r)) {
            return Err(format!(
                "In context={}, 'required' is required to be supplied and to be an array including every key in properties. Extra required key '{extra}' supplied.",
                context(path)
            ));
        }
    }
    // Sub-schemas.
    for key in ["properties", "$defs", "definitions"] {
        if let Some(map) = obj.get(key).and_then(Value::as_object) {
            for (name, sub) in map {
                path.push(key.into());
                path.push(name.clone());
                let r = check_node(sub, path, depth + 1);
                path.truncate(path.len() - 2);
                r?;
            }
        }
    }
    if let Some(items) = obj.get("items") {
        path.push("items".into());
        let r = check_node(items, path, depth + 1);
        path.pop();
        r?;
    }
    if let Some(any_of) = obj.get("anyOf").and_then(Value::as_array) {
        for (i, sub) in any_of.iter().enumerate() {
            path.push("anyOf".into());
            path.push(i.to_string());
            let r = check_node(sub, path, depth + 1);
            path.truncate(path.len() - 2);
            r?;
        }
    }
    Ok(())
}
