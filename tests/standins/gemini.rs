//! The Gemini API (`generativelanguage.googleapis.com/v1beta`) as the released Gemini CLI
//! (0.61.0) calls it, on 127.0.0.1:
//!
//! - `POST /v1beta/models/<model>:streamGenerateContent?alt=sse`: the main turn. A 200 is a
//!   `text/event-stream` of `data: <GenerateContentResponse>` events (CRLF-separated, as Google
//!   sends them); the last event carries `finishReason` and `usageMetadata`.
//! - `POST /v1beta/models/<model>:generateContent`: one JSON `GenerateContentResponse`. The CLI
//!   uses it for its model router (a `…flash-lite` call made when no `--model` is given, whose
//!   `generationConfig.responseJsonSchema` asks for `{complexity_reasoning, complexity_score}`
//!   (numerical classifier) or `{reasoning, model_choice}` (classic classifier)). Router calls are
//!   answered with a routing decision, report [`ROUTER_USAGE`] and never take a fault; any other
//!   `generateContent` call is a model call like a stream.
//!
//! The API key travels in `x-goog-api-key` (or `?key=`). Like Google: no key is a 403
//! `PERMISSION_DENIED`, any key but [`GOOD_KEY`] a 400 `INVALID_ARGUMENT` with an
//! `ErrorInfo{reason: API_KEY_INVALID}` detail (Google does not answer a bad key with 401).
//!
//! The leaf's prompt is the first user text part that is not the CLI's own
//! `<session_context>` preamble.
#![allow(dead_code)]

use super::{Answer, Behaviour, Fault, Received, Recorder, UsageSent, GOOD_KEY};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// What every router (classifier) response reports: small and distinct from
/// [`Behaviour::usage`], so the two can be told apart in the CLI's `stats.models`.
pub const ROUTER_USAGE: UsageSent = UsageSent { input_tokens: 90, output_tokens: 7, cache_read_tokens: 0 };

/// The model name the stand-in puts in `modelVersion` is the one asked for in the path (the CLI
/// keys `stats.models` by `modelVersion`).
#[derive(Clone, Debug, Default)]
pub struct GeminiOptions {
    /// Send `Answer::Json` values inside a ```json fence instead of bare.
    pub fence_json: bool,
}

pub struct GeminiStandIn {
    pub server: MockServer,
    pub behaviour: Behaviour,
    /// Router (classifier) calls only: their requests and the usage they reported. Everything
    /// here is also in `behaviour.recorder`, which holds every request and every usage sent.
    pub router: Recorder,
}

impl GeminiStandIn {
    pub async fn start(behaviour: Behaviour) -> Self {
        Self::start_with(behaviour, GeminiOptions::default()).await
    }

    pub async fn start_with(behaviour: Behaviour, options: GeminiOptions) -> Self {
        let server = MockServer::builder().start().await;
        let router = Recorder::default();
        Mock::given(any())
            .respond_with(GeminiResponder { behaviour: behaviour.clone(), router: router.clone(), options })
            .mount(&server)
            .await;
        GeminiStandIn { server, behaviour, router }
    }

    /// `http://127.0.0.1:<port>`: the value for `GOOGLE_GEMINI_BASE_URL` (the CLI appends
    /// `/v1beta/models/...`).
    pub fn base_url(&self) -> String {
        self.server.uri()
    }

    /// The environment that points the released CLI at this stand-in. `cli_home` must hold the
    /// settings written by [`write_cli_settings`]. Start the CLI with a cleared environment plus
    /// these, `PATH` and a throwaway `HOME`.
    pub fn cli_env(&self, cli_home: &Path, api_key: &str) -> Vec<(String, String)> {
        vec![
            ("GEMINI_CLI_HOME".into(), cli_home.display().to_string()),
            ("GOOGLE_GEMINI_BASE_URL".into(), self.base_url()),
            ("GEMINI_API_KEY".into(), api_key.into()),
            ("GEMINI_TELEMETRY_ENABLED".into(), "false".into()),
        ]
    }
}

/// The settings the CLI needs (there is no env var or flag for the auth type: without
/// `security.auth.selectedType = "gemini-api-key"`, `GOOGLE_GEMINI_BASE_URL` selects the
/// "gateway" auth type, which headless mode rejects with exit 41 "Invalid auth method
/// selected."). `max_attempts` bounds the CLI's own HTTP attempts per model call (1 = no retry;
/// default 10 with 5 s..30 s backoff).
pub fn cli_settings(max_attempts: u32) -> Value {
    json!({
        "security": { "auth": { "selectedType": "gemini-api-key" } },
        "general": {
            "maxAttempts": max_attempts,
            "enableAutoUpdate": false,
            "enableAutoUpdateNotification": false
        },
        "privacy": { "usageStatisticsEnabled": false },
        "telemetry": { "enabled": false }
    })
}

/// Writes [`cli_settings`] to `<cli_home>/.gemini/settings.json` (the user settings file when
/// `GEMINI_CLI_HOME=<cli_home>`).
pub fn write_cli_settings(cli_home: &Path, max_attempts: u32) -> std::io::Result<()> {
    let dir = cli_home.join(".gemini");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("settings.json"), serde_json::to_vec_pretty(&cli_settings(max_attempts))?)
}

/// The leaf's prompt: the first user text part that is not the CLI's `<session_context>`.
pub fn prompt_text(body: &Value) -> String {
    for content in body["contents"].as_array().into_iter().flatten() {
        if content["role"].as_str().unwrap_or("user") != "user" {
            continue;
        }
        for part in content["parts"].as_array().into_iter().flatten() {
            if let Some(text) = part["text"].as_str() {
                if !text.trim_start().starts_with("<session_context>") {
                    return text.to_owned();
                }
            }
        }
    }
    String::new()
}

/// The error object Google sends for an HTTP status.
pub fn error_body(code: u16, retry_after: Option<u64>) -> Value {
    let (message, status) = match code {
        400 => ("Request contains an invalid argument.", "INVALID_ARGUMENT"),
        401 => (
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
            "UNAUTHENTICATED",
        ),
        403 => ("The caller does not have permission", "PERMISSION_DENIED"),
        404 => ("Requested entity was not found.", "NOT_FOUND"),
        429 => ("Resource has been exhausted (e.g. check quota).", "RESOURCE_EXHAUSTED"),
        500 => (
            "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
            "INTERNAL",
        ),
        503 => ("The model is overloaded. Please try again later.", "UNAVAILABLE"),
        504 => ("The request timed out. Please try again.", "DEADLINE_EXCEEDED"),
        _ => ("An internal error has occurred.", "UNKNOWN"),
    };
    let mut error = json!({ "code": code, "message": message, "status": status });
    if let Some(secs) = retry_after {
        error["details"] =
            json!([{ "@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{secs}s") }]);
    }
    json!({ "error": error })
}

/// Google's answer to a key it does not know.
pub fn bad_key_body() -> Value {
    json!({"error": {
        "code": 400,
        "message": "API key not valid. Please pass a valid API key.",
        "status": "INVALID_ARGUMENT",
        "details": [{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": { "service": "generativelanguage.googleapis.com" }
        }]
    }})
}

/// Google's answer to a request without any key.
pub fn missing_key_body() -> Value {
    json!({"error": {
        "code": 403,
        "message": "Method doesn't allow unregistered callers (callers without established identity). Please use API key or other form of API consumer identity to call this API.",
        "status": "PERMISSION_DENIED"
    }})
}

fn invalid_argument(message: String) -> ResponseTemplate {
    json_response(400, json!({"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}))
}

fn json_response(code: u16, body: Value) -> ResponseTemplate {
    ResponseTemplate::new(code).set_body_raw(serde_json::to_vec(&body).unwrap(), "application/json; charset=UTF-8")
}

/// The request rules the Gemini API enforces that the CLI could break.
pub fn validate(body: &Value) -> Result<(), String> {
    let Some(contents) = body["contents"].as_array().filter(|c| !c.is_empty()) else {
        return Err("* GenerateContentRequest.contents: contents is not specified\n".into());
    };
    let mut pending_calls: Option<usize> = None;
    for (i, content) in contents.iter().enumerate() {
        match content.get("role").and_then(Value::as_str) {
            None | Some("user") | Some("model") => {}
            Some(_) => return Err("Please use a valid role: user, model.".into()),
        }
        let parts = content["parts"].as_array().map(Vec::as_slice).unwrap_or_default();
        if parts.is_empty() {
            return Err(format!("* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.\n"));
        }
        let calls = parts.iter().filter(|p| p.get("functionCall").is_some()).count();
        let responses = parts.iter().filter(|p| p.get("functionResponse").is_some()).count();
        if let Some(n) = pending_calls.take() {
            if responses == 0 {
                return Err(
                    "Please ensure that function response turn comes immediately after a function call turn.".into()
                );
            }
            if responses != n {
                return Err("Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn.".into());
            }
        } else if responses > 0 {
            return Err(
                "Please ensure that function response turn comes immediately after a function call turn.".into()
            );
        }
        if calls > 0 {
            if content["role"] != "model" {
                return Err("Please ensure that function call turn comes immediately after a user turn or after a function response turn.".into());
            }
            pending_calls = Some(calls);
        }
    }
    for (t, tool) in body["tools"].as_array().into_iter().flatten().enumerate() {
        for (f, decl) in tool["functionDeclarations"].as_array().into_iter().flatten().enumerate() {
            let name = decl["name"].as_str().unwrap_or("");
            if !valid_function_name(name) {
                return Err(format!(
                    "* GenerateContentRequest.tools[{t}].function_declarations[{f}].name: Invalid function name. Must start with a letter or an underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), dots (.), colons (:), or dashes (-), with a maximum length of 64.\n"
                ));
            }
            if decl.get("parameters").is_some() && decl.get("parametersJsonSchema").is_some() {
                return Err(format!(
                    "* GenerateContentRequest.tools[{t}].function_declarations[{f}]: parameters and parameters_json_schema cannot both be set.\n"
                ));
            }
            for key in ["parameters", "parametersJsonSchema"] {
                if let Some(schema) = decl.get(key) {
                    let ty = schema["type"].as_str().map(str::to_ascii_lowercase);
                    if !schema.is_object() || ty.as_deref().is_some_and(|t| t != "object") {
                        return Err(format!(
                            "* GenerateContentRequest.tools[{t}].function_declarations[{f}].parameters.type: must be OBJECT\n"
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

fn valid_function_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
}

fn usage_metadata(u: UsageSent) -> Value {
    let prompt = u.input_tokens + u.cache_read_tokens;
    let mut m = json!({
        "promptTokenCount": prompt,
        "candidatesTokenCount": u.output_tokens,
        "totalTokenCount": prompt + u.output_tokens,
        "promptTokensDetails": [{ "modality": "TEXT", "tokenCount": prompt }]
    });
    if u.cache_read_tokens > 0 {
        m["cachedContentTokenCount"] = json!(u.cache_read_tokens);
        m["cacheTokensDetails"] = json!([{ "modality": "TEXT", "tokenCount": u.cache_read_tokens }]);
    }
    m
}

/// One `GenerateContentResponse` chunk.
fn chunk(model: &str, parts: Value, last: Option<UsageSent>, id: &str) -> Value {
    let mut candidate = json!({ "content": { "role": "model", "parts": parts }, "index": 0 });
    let mut c = json!({ "candidates": [], "modelVersion": model, "responseId": id });
    if let Some(u) = last {
        candidate["finishReason"] = json!("STOP");
        c["usageMetadata"] = usage_metadata(u);
    }
    c["candidates"] = json!([candidate]);
    c
}

fn sse(chunks: &[Value]) -> Vec<u8> {
    let mut out = String::new();
    for c in chunks {
        out.push_str("data: ");
        out.push_str(&serde_json::to_string(c).unwrap());
        out.push_str("\r\n\r\n");
    }
    out.into_bytes()
}

/// What the scripted model says this turn.
enum Turn {
    Text(String),
    Call { name: String, args: Value },
    Hang,
}

struct GeminiResponder {
    behaviour: Behaviour,
    router: Recorder,
    options: GeminiOptions,
}

impl GeminiResponder {
    fn turn(&self, body: &Value) -> Turn {
        let prompt = prompt_text(body);
        let answered_tool = body["contents"]
            .as_array()
            .and_then(|c| c.last())
            .and_then(|last| last["parts"].as_array())
            .is_some_and(|parts| parts.iter().any(|p| p.get("functionResponse").is_some()));
        let json_text = |v: &Value| {
            let text = serde_json::to_string(v).unwrap();
            if self.options.fence_json {
                format!("```json\n{text}\n```")
            } else {
                text
            }
        };
        match (self.behaviour.answerer)(&prompt) {
            Answer::Json(v) => Turn::Text(json_text(&v)),
            Answer::InvalidThen(v) => {
                if prompt.contains("Your previous answer was:") {
                    Turn::Text(json_text(&v))
                } else {
                    Turn::Text(
                        "I looked through the change carefully. Overall it reads well and I have no \
                         blocking concerns; the naming could be a little clearer in places."
                            .into(),
                    )
                }
            }
            Answer::WriteFileThen { path, contents, answer } => {
                if answered_tool {
                    Turn::Text(json_text(&answer))
                } else {
                    // Called even when the request does not declare `write_file` (default
                    // approval mode): the CLI then answers "Tool \"write_file\" not found".
                    Turn::Call { name: "write_file".into(), args: json!({ "file_path": path, "content": contents }) }
                }
            }
            Answer::Hang => Turn::Hang,
        }
    }

    fn router_answer(&self, model: &str, schema: &Value) -> ResponseTemplate {
        let props = &schema["properties"];
        let text = if props.get("complexity_score").is_some() {
            json!({ "complexity_reasoning": "A bounded, single-step request.", "complexity_score": 15 })
        } else {
            json!({ "reasoning": "A bounded, single-step request with low operational complexity.", "model_choice": "flash" })
        };
        self.router.sent(ROUTER_USAGE);
        self.behaviour.recorder.sent(ROUTER_USAGE);
        let body = chunk(model, json!([{ "text": text.to_string() }]), Some(ROUTER_USAGE), "standin-router");
        json_response(200, body)
    }
}

impl Respond for GeminiResponder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let path = match req.url.query() {
            Some(q) => format!("{}?{q}", req.url.path()),
            None => req.url.path().to_owned(),
        };
        let parsed: Result<Value, _> = serde_json::from_slice(&req.body);
        let body = match &parsed {
            Ok(v) => v.clone(),
            Err(_) => Value::String(String::from_utf8_lossy(&req.body).into_owned()),
        };
        let received = Received { method: req.method.to_string(), path: path.clone(), body: body.clone() };

        // `/v1beta/models/<model>:<method>`
        let target = req.url.path().strip_prefix("/v1beta/models/").and_then(|rest| rest.split_once(':'));
        let Some((model, method)) = target.filter(|(_, m)| matches!(*m, "generateContent" | "streamGenerateContent"))
        else {
            self.behaviour.recorder.record(received);
            return json_response(
                404,
                json!({"error": {"code": 404, "message": format!("Method not found: {path}"), "status": "NOT_FOUND"}}),
            );
        };
        let model = model.to_owned();
        let is_router = method == "generateContent" && {
            let gc = &body["generationConfig"];
            let schema = gc.get("responseJsonSchema").or_else(|| gc.get("responseSchema"));
            schema.is_some_and(|s| {
                s["properties"].get("model_choice").is_some() || s["properties"].get("complexity_score").is_some()
            })
        };
        self.behaviour.recorder.record(received.clone());
        if is_router {
            self.router.record(received);
        }
        if req.method.as_str() != "POST" {
            return json_response(405, error_body(404, None));
        }

        let key = req
            .headers
            .get("x-goog-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| req.url.query_pairs().find(|(k, _)| k == "key").map(|(_, v)| v.into_owned()));
        match key.as_deref() {
            None | Some("") => return json_response(403, missing_key_body()),
            Some(k) if k != GOOD_KEY => return json_response(400, bad_key_body()),
            Some(_) => {}
        }
        if parsed.is_err() {
            return invalid_argument(format!(
                "Invalid JSON payload received. Unexpected token.\n{}\n^",
                String::from_utf8_lossy(&req.body).chars().take(40).collect::<String>()
            ));
        }
        if let Err(message) = validate(&body) {
            return invalid_argument(message);
        }
        if is_router {
            let gc = &body["generationConfig"];
            let schema = gc.get("responseJsonSchema").or_else(|| gc.get("responseSchema")).cloned().unwrap_or_default();
            return self.router_answer(&model, &schema);
        }

        let stream = method == "streamGenerateContent";
        let sse_wanted = stream && req.url.query_pairs().any(|(k, v)| k == "alt" && v == "sse");
        let mut delay = None;
        match self.behaviour.next_fault() {
            Some(Fault::Status { code, retry_after }) => {
                let mut r = json_response(code, error_body(code, retry_after));
                if let Some(secs) = retry_after {
                    r = r.insert_header("retry-after", secs.to_string().as_str());
                }
                return r;
            }
            Some(Fault::Malformed) => {
                let first = chunk(&model, json!([{ "text": "{\"verd" }]), None, "standin-malformed");
                let mut bytes = sse(&[first]);
                bytes.extend_from_slice(b"data: {\"candidates\": [{\"content\": {\"role\": \"model\", \"parts\": [{\"text\": \"ict\r\n\r\nthis line is not JSON\r\n");
                return ResponseTemplate::new(200).set_body_raw(bytes, "text/event-stream");
            }
            Some(Fault::Slow(d)) => delay = Some(d),
            None => {}
        }

        let usage = self.behaviour.usage;
        let id = format!("standin-{}", self.behaviour.recorder.answers() + 1);
        let chunks = match self.turn(&body) {
            Turn::Hang => {
                return ResponseTemplate::new(200)
                    .set_body_raw(Vec::new(), "text/event-stream")
                    .set_delay(Duration::from_secs(24 * 3600));
            }
            Turn::Text(text) => {
                // Two chunks, like a real stream; usage and finishReason on the last.
                let cut = text.char_indices().nth(text.chars().count() / 2).map(|(i, _)| i).unwrap_or(0);
                let (a, b) = text.split_at(cut);
                if stream && !a.is_empty() {
                    vec![
                        chunk(&model, json!([{ "text": a }]), None, &id),
                        chunk(&model, json!([{ "text": b }]), Some(usage), &id),
                    ]
                } else {
                    vec![chunk(&model, json!([{ "text": text }]), Some(usage), &id)]
                }
            }
            Turn::Call { name, args } => {
                vec![chunk(&model, json!([{ "functionCall": { "name": name, "args": args } }]), Some(usage), &id)]
            }
        };
        self.behaviour.recorder.sent(usage);
        let mut r = if sse_wanted {
            ResponseTemplate::new(200).set_body_raw(sse(&chunks), "text/event-stream")
        } else if stream {
            // Without `alt=sse` the stream is one JSON array of the chunks.
            json_response(200, Value::Array(chunks))
        } else {
            // `generateContent`: the whole answer in one response.
            let mut whole = chunks.last().cloned().unwrap();
            if chunks.len() > 1 {
                let text: String =
                    chunks.iter().filter_map(|c| c["candidates"][0]["content"]["parts"][0]["text"].as_str()).collect();
                whole["candidates"][0]["content"]["parts"] = json!([{ "text": text }]);
            }
            json_response(200, whole)
        };
        if let Some(d) = delay {
            r = r.set_delay(d);
        }
        r
    }
}
