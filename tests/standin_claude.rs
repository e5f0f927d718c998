//! Conformance of the Anthropic stand-in with the REAL Claude Code CLI (claude-code 2.1.197,
//! tests/agents/node_modules/.bin/claude), run directly with the command line and environment
//! coord should use. Run inside a loopback-only network namespace:
//!     unshare --net sh -c 'ip link set lo up && cargo test --test integration standin_claude::'
//! With `STANDIN_CAPTURE=1` the runs also refresh tests/fixtures/wire/claude-code/.
use crate::standins;

use serde_json::{json, Value};
use standins::anthropic::{AnthropicStandIn, REPAIR_PREFIX, STRUCTURED_TOOL};
use standins::{Answer, Behaviour, Fault, Received, GOOD_KEY};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn review_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "verdict": {"type": "string", "enum": ["clean", "issues"]},
            "issues": {"type": "array", "items": {"type": "string"}}
        },
        "required": ["verdict", "issues"],
        "additionalProperties": false
    })
}

fn review_answer() -> Value {
    json!({"verdict": "issues", "issues": ["src/lib.rs:3 unwrap on user input"]})
}

const REVIEW_PROMPT: &str = "Review the change in src/lib.rs and answer with the verdict.";

fn claude_binary() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/agents/node_modules/.bin/claude");
    if !bin.exists() {
        panic!("run `npm ci --prefix tests/agents` first");
    }
    bin
}

/// The native binary needs no node; only a script launcher (postinstall skipped) does.
fn runnable(bin: &Path) -> bool {
    let head = std::fs::read(bin).map(|b| b.get(..2) == Some(b"#!")).unwrap_or(false);
    if head && Command::new("node").arg("--version").output().is_err() {
        eprintln!(
            "!!!!! `node` is not on PATH and {} is a script: SKIPPING the Claude Code conformance test",
            bin.display()
        );
        return false;
    }
    true
}

/// One run of the CLI: its stdout events, stderr, exit code and wall time.
struct Run {
    events: Vec<Value>,
    stdout: String,
    stderr: String,
    code: Option<i32>,
    took: Duration,
}

impl Run {
    fn result(&self) -> &Value {
        self.events.iter().rev().find(|e| e["type"] == "result").expect("a result event")
    }
    fn session_id(&self) -> String {
        self.result()["session_id"].as_str().unwrap().to_owned()
    }
    fn retries(&self) -> Vec<&Value> {
        self.events.iter().filter(|e| e["type"] == "system" && e["subtype"] == "api_retry").collect()
    }
}

/// A scratch directory holding the config dir (and HOME) and the leaf's working directory.
struct Scratch {
    _dir: tempfile::TempDir,
    home: PathBuf,
    cwd: PathBuf,
}

fn scratch() -> Scratch {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let cwd = dir.path().join("work");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&cwd).unwrap();
    Scratch { home, cwd, _dir: dir }
}

/// The command line coord uses: `claude -p PROMPT --output-format stream-json --verbose
/// --json-schema SCHEMA [extra…]`, with the environment of [`AnthropicStandIn::cli_env`] plus a
/// fresh CLAUDE_CONFIG_DIR (and HOME) and nothing else inherited but PATH.
fn run_claude(
    standin: &AnthropicStandIn,
    s: &Scratch,
    key: &str,
    prompt: &str,
    schema: &Value,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Run {
    let bin = claude_binary();
    let mut cmd = Command::new(&bin);
    cmd.args(["-p", prompt, "--output-format", "stream-json", "--verbose", "--json-schema", &schema.to_string()])
        .args(extra)
        .current_dir(&s.cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &s.home)
        .env("CLAUDE_CONFIG_DIR", s.home.join(".claude"))
        .envs(standin.cli_env(key))
        .envs(env.iter().copied());
    let started = Instant::now();
    let out = cmd.output().expect("claude starts");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let events = stdout.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect();
    Run {
        events,
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code(),
        took: started.elapsed(),
    }
}

fn model_requests(standin: &AnthropicStandIn) -> Vec<Received> {
    standin.model_requests()
}

fn tool<'a>(req: &'a Received, name: &str) -> Option<&'a Value> {
    req.body["tools"].as_array()?.iter().find(|t| t["name"] == name)
}

// ---------------------------------------------------------------------------------------------
// Fixture capture (STANDIN_CAPTURE=1): small, redacted, truncated.

fn capture_dir() -> Option<PathBuf> {
    std::env::var_os("STANDIN_CAPTURE")?;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wire/claude-code");
    std::fs::create_dir_all(&dir).unwrap();
    Some(dir)
}

fn redact(text: &str, s: &Scratch) -> String {
    text.replace(GOOD_KEY, "REDACTED")
        .replace("sk-standin-WRONG", "REDACTED")
        .replace(&s.cwd.display().to_string(), "/SCRATCH/work")
        .replace(&s.home.display().to_string(), "/SCRATCH/home")
}

/// Long texts cut, tools other than StructuredOutput / Write reduced to their names.
fn shrink(body: &Value) -> Value {
    fn cut(v: &mut Value, max: usize) {
        match v {
            Value::String(s) if s.len() > max => {
                let mut end = max;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                *s = format!("{}… [{} chars cut]", &s[..end], s.len() - end);
            }
            Value::Array(items) => items.iter_mut().for_each(|i| cut(i, max)),
            Value::Object(map) => map.values_mut().for_each(|i| cut(i, max)),
            _ => {}
        }
    }
    let mut body = body.clone();
    if let Some(tools) = body.get_mut("tools").and_then(Value::as_array_mut) {
        let names: Vec<Value> = tools.iter().map(|t| t["name"].clone()).collect();
        tools.retain(|t| t["name"] == STRUCTURED_TOOL || t["name"] == "Write");
        tools.push(json!({"_other_tools_cut": names}));
    }
    for key in ["system", "messages"] {
        if let Some(v) = body.get_mut(key) {
            cut(v, 400);
        }
    }
    body
}

fn capture(name: &str, standin: &AnthropicStandIn, s: &Scratch, runs: &[&Run], bodies: bool) {
    let Some(dir) = capture_dir() else { return };
    for (i, run) in runs.iter().enumerate() {
        let suffix = if runs.len() > 1 { format!(".{}", i + 1) } else { String::new() };
        // The init event lists every tool, slash command and skill: kept, it is one line.
        std::fs::write(dir.join(format!("{name}{suffix}.stdout.jsonl")), redact(&run.stdout, s)).unwrap();
        let exit = format!("exit code: {:?}\n{}", run.code, redact(&run.stderr, s));
        std::fs::write(dir.join(format!("{name}{suffix}.stderr.txt")), exit).unwrap();
    }
    if bodies {
        for (i, r) in model_requests(standin).iter().enumerate() {
            let record = json!({"method": r.method, "path": r.path, "body": shrink(&r.body)});
            let text = redact(&serde_json::to_string_pretty(&record).unwrap(), s);
            std::fs::write(dir.join(format!("{name}.request{}.json", i + 1)), text + "\n").unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_answer_and_usage() {
    if !runnable(&claude_binary()) {
        return;
    }
    let standin = AnthropicStandIn::start(Behaviour::always(review_answer())).await;
    let s = scratch();
    let run = run_claude(&standin, &s, GOOD_KEY, REVIEW_PROMPT, &review_schema(), &[], &[]);
    capture("success", &standin, &s, &[&run], true);
    eprintln!("success: exit {:?} in {:?}\n{}", run.code, run.took, run.stderr);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);

    // (a) the structured answer.
    let result = run.result();
    assert_eq!(result["subtype"], "success");
    assert_eq!(result["is_error"], false);
    assert_eq!(result["structured_output"], review_answer());
    assert_eq!(run.events[0]["type"], "system");
    assert_eq!(run.events[0]["subtype"], "init");
    assert_eq!(run.events[0]["session_id"], result["session_id"]);

    // The wire: a HEAD probe, then one streamed POST; the schema reaches the model verbatim
    // as the StructuredOutput tool's input_schema; the CLI ends on the tool's result.
    let all = standin.behaviour.recorder.received();
    assert_eq!(all[0].method, "HEAD");
    let reqs = model_requests(&standin);
    assert_eq!(reqs.len(), 1, "{:?}", reqs.iter().map(|r| &r.path).collect::<Vec<_>>());
    assert_eq!(reqs[0].path, "/v1/messages?beta=true");
    assert_eq!(reqs[0].body["stream"], true);
    let so = tool(&reqs[0], STRUCTURED_TOOL).expect("StructuredOutput tool");
    assert_eq!(so["input_schema"], review_schema());
    assert!(reqs[0].body.get("tool_choice").is_none(), "the tool is offered, not forced");

    // (b) usage: the sum of what the stand-in sent; cost from the CLI's own price table.
    let sent = standin.behaviour.recorder.usage_sent();
    assert_eq!(standin.behaviour.recorder.answers(), 1);
    let u = &result["usage"];
    assert_eq!(u["input_tokens"], sent.input_tokens);
    assert_eq!(u["output_tokens"], sent.output_tokens);
    assert_eq!(u["cache_read_input_tokens"], sent.cache_read_tokens);
    assert_eq!(u["cache_creation_input_tokens"], 0);
    let (model, mu) = result["modelUsage"].as_object().unwrap().iter().next().unwrap();
    assert_eq!(model, "claude-opus-4-8[1m]", "the default model, under its 1M-context name");
    assert_eq!(mu["inputTokens"], sent.input_tokens);
    // Opus 4.x prices: $5 / $25 / $0.50 per million input / output / cache-read tokens.
    let expected =
        (sent.input_tokens as f64 * 5.0 + sent.output_tokens as f64 * 25.0 + sent.cache_read_tokens as f64 * 0.5) / 1e6;
    assert!((result["total_cost_usd"].as_f64().unwrap() - expected).abs() < 1e-9, "{result}");
    assert_eq!(mu["costUSD"], result["total_cost_usd"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_follows_the_requested_model_name() {
    if !runnable(&claude_binary()) {
        return;
    }
    let standin = AnthropicStandIn::start(Behaviour::always(review_answer())).await;
    let s = scratch();
    let run =
        run_claude(&standin, &s, GOOD_KEY, REVIEW_PROMPT, &review_schema(), &["--model", "claude-haiku-4-5"], &[]);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    let result = run.result();
    assert_eq!(model_requests(&standin)[0].body["model"], "claude-haiku-4-5");
    assert!(result["modelUsage"].get("claude-haiku-4-5").is_some(), "{result}");
    // Haiku 4.5: $1 / $5 / $0.10 per million.
    let sent = standin.behaviour.recorder.usage_sent();
    let expected =
        (sent.input_tokens as f64 * 1.0 + sent.output_tokens as f64 * 5.0 + sent.cache_read_tokens as f64 * 0.1) / 1e6;
    assert!((result["total_cost_usd"].as_f64().unwrap() - expected).abs() < 1e-9, "{result}");
}

/// A fault run: the CLI's stdout ends with `result` {is_error: true, api_error_status}, exit 1.
async fn fault_run(name: &str, faults: Vec<Fault>, key: &str) -> (AnthropicStandIn, Run) {
    let standin = AnthropicStandIn::start(Behaviour::always(review_answer()).with_faults(faults)).await;
    let s = scratch();
    let run = run_claude(&standin, &s, key, REVIEW_PROMPT, &review_schema(), &[], &[]);
    capture(name, &standin, &s, &[&run], false);
    let r = run.result();
    eprintln!(
        "{name}: exit {:?} in {:?}; result subtype={} is_error={} api_error_status={} result={:?}; api_retry events={}; stderr={:?}",
        run.code, run.took, r["subtype"], r["is_error"], r["api_error_status"], r["result"], run.retries().len(), run.stderr
    );
    (standin, run)
}

fn assert_api_error(run: &Run, status: Option<u16>, text: &str) {
    let r = run.result();
    assert_eq!(run.code, Some(1), "stdout: {}", run.stdout);
    assert_eq!(r["type"], "result");
    assert_eq!(r["subtype"], "success", "API errors keep subtype success");
    assert_eq!(r["is_error"], true);
    assert_eq!(r["api_error_status"], json!(status));
    assert!(r["result"].as_str().unwrap().contains(text), "{r}");
    assert!(r.get("structured_output").is_none());
    assert_eq!(r["usage"]["input_tokens"], 0);
    assert_eq!(r["total_cost_usd"], 0.0);
    // The synthetic assistant message before it carries the error kind.
    let synthetic = run.events.iter().rev().find(|e| e["type"] == "assistant").unwrap();
    assert_eq!(synthetic["message"]["model"], "<synthetic>");
    assert!(run.stderr.trim().is_empty(), "nothing on stderr: {}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_429() {
    if !runnable(&claude_binary()) {
        return;
    }
    let f = Fault::Status { code: 429, retry_after: Some(1) };
    let (standin, run) = fault_run("fault_429", vec![f.clone(), f.clone(), f], GOOD_KEY).await;
    assert_api_error(&run, Some(429), "Request rejected (429)");
    // CLAUDE_CODE_MAX_RETRIES=1: two attempts, the retry waits `retry-after`.
    assert_eq!(model_requests(&standin).len(), 2);
    let retries = run.retries();
    assert_eq!(retries.len(), 1);
    assert_eq!(retries[0]["error_status"], 429);
    assert_eq!(retries[0]["error"], "rate_limit");
    assert_eq!(retries[0]["retry_delay_ms"], 1000);
    let synthetic = run.events.iter().rev().find(|e| e["type"] == "assistant").unwrap();
    assert_eq!(synthetic["error"], "rate_limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_then_an_answer_recovers_inside_the_cli() {
    if !runnable(&claude_binary()) {
        return;
    }
    let (standin, run) =
        fault_run("fault_429_then_ok", vec![Fault::Status { code: 429, retry_after: Some(1) }], GOOD_KEY).await;
    assert_eq!(run.code, Some(0));
    assert_eq!(run.result()["structured_output"], review_answer());
    assert_eq!(run.retries().len(), 1);
    assert_eq!(model_requests(&standin).len(), 2);
    assert_eq!(run.result()["usage"]["input_tokens"], standin.behaviour.recorder.usage_sent().input_tokens);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_error_500() {
    if !runnable(&claude_binary()) {
        return;
    }
    let f = Fault::Status { code: 500, retry_after: None };
    let (standin, run) = fault_run("fault_500", vec![f.clone(), f.clone(), f], GOOD_KEY).await;
    assert_api_error(&run, Some(500), "API Error: 500");
    assert_eq!(model_requests(&standin).len(), 2);
    assert_eq!(run.retries()[0]["error"], "server_error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overloaded_529() {
    if !runnable(&claude_binary()) {
        return;
    }
    let f = Fault::Status { code: 529, retry_after: None };
    let (standin, run) = fault_run("fault_529", vec![f.clone(), f.clone(), f], GOOD_KEY).await;
    assert_api_error(&run, Some(529), "Overloaded");
    assert_eq!(model_requests(&standin).len(), 2);
    assert_eq!(run.retries()[0]["error"], "overloaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_key_401() {
    if !runnable(&claude_binary()) {
        return;
    }
    let (standin, run) = fault_run("fault_401", vec![], "sk-standin-WRONG-key").await;
    assert_api_error(&run, Some(401), "Invalid API key");
    // Even a 401 is retried once by the CLI.
    assert_eq!(model_requests(&standin).len(), 2);
    assert_eq!(run.retries()[0]["error"], "authentication_failed");
    let synthetic = run.events.iter().rev().find(|e| e["type"] == "assistant").unwrap();
    assert_eq!(synthetic["error"], "authentication_failed");
    assert_eq!(standin.behaviour.recorder.answers(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_400_is_not_retried() {
    if !runnable(&claude_binary()) {
        return;
    }
    let f = Fault::Status { code: 400, retry_after: None };
    let (standin, run) = fault_run("fault_400", vec![f.clone(), f], GOOD_KEY).await;
    assert_api_error(&run, Some(400), "API Error: 400");
    assert_eq!(model_requests(&standin).len(), 1);
    assert!(run.retries().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_stream() {
    if !runnable(&claude_binary()) {
        return;
    }
    // Cut stream, then the CLI's non-streaming fallback gets the next fault too.
    let (standin, run) = fault_run("fault_malformed", vec![Fault::Malformed, Fault::Malformed], GOOD_KEY).await;
    assert_api_error(&run, None, "empty or malformed response");
    let reqs = model_requests(&standin);
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].body["stream"], true);
    assert!(reqs[1].body.get("stream").is_none(), "the fallback does not stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_stream_then_the_non_streaming_fallback_answers() {
    if !runnable(&claude_binary()) {
        return;
    }
    let (standin, run) = fault_run("fault_malformed_then_ok", vec![Fault::Malformed], GOOD_KEY).await;
    assert_eq!(run.code, Some(0));
    let r = run.result();
    assert_eq!(r["structured_output"], review_answer());
    let sent = standin.behaviour.recorder.usage_sent();
    // Surprise: after the fallback the result's `usage` stays 0, while modelUsage and the cost
    // count the fallback's usage.
    assert_eq!(r["usage"]["input_tokens"], 0, "{r}");
    assert_eq!(r["modelUsage"]["claude-opus-4-8[1m]"]["inputTokens"], sent.input_tokens);
    assert!(r["total_cost_usd"].as_f64().unwrap() > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_ends_with_the_cli_request_timeout() {
    if !runnable(&claude_binary()) {
        return;
    }
    let standin = AnthropicStandIn::start(Behaviour::new(Arc::new(|_| Answer::Hang))).await;
    let s = scratch();
    // API_TIMEOUT_MS bounds each request; coord's own timeout is the real guard.
    let run = run_claude(
        &standin,
        &s,
        GOOD_KEY,
        REVIEW_PROMPT,
        &review_schema(),
        &[],
        &[("API_TIMEOUT_MS", "2000"), ("CLAUDE_CODE_MAX_RETRIES", "0")],
    );
    capture("hang_api_timeout", &standin, &s, &[&run], false);
    eprintln!("hang: exit {:?} in {:?}: {}", run.code, run.took, run.result());
    assert_api_error(&run, None, "Request timed out");
    assert!(run.took < Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_answer_then_repair_through_resume() {
    if !runnable(&claude_binary()) {
        return;
    }
    let answer = review_answer();
    let standin = AnthropicStandIn::start(Behaviour::new(Arc::new(move |_| Answer::InvalidThen(answer.clone())))).await;
    let s = scratch();
    let first = run_claude(&standin, &s, GOOD_KEY, REVIEW_PROMPT, &review_schema(), &[], &[]);
    assert_eq!(first.code, Some(0), "stderr: {}", first.stderr);
    let r = first.result();
    // The CLI nudged once ("[structured-output-enforce] …"), then gave up quietly: success,
    // no structured_output, the text holds JSON that breaks the schema (coord's repair case).
    assert_eq!(r["subtype"], "success");
    assert_eq!(r["is_error"], false);
    assert!(r.get("structured_output").is_none(), "{r}");
    assert!(r["result"].as_str().unwrap().contains("```json\n[{"), "{r}");
    assert_eq!(model_requests(&standin).len(), 2);
    let nudge = &model_requests(&standin)[1].body["messages"];
    assert!(nudge.to_string().contains("[structured-output-enforce]"));
    assert_eq!(
        r["usage"]["input_tokens"],
        standin.behaviour.recorder.usage_sent().input_tokens,
        "usage sums the invocation's requests"
    );

    // coord's repair turn: same schema, `--resume <session_id>`, the repair prompt.
    let repair = format!("{REPAIR_PREFIX}: root: must be object\nAnswer again with the corrected JSON only, matching the schema exactly.");
    let sid = first.session_id();
    let second = run_claude(&standin, &s, GOOD_KEY, &repair, &review_schema(), &["--resume", &sid], &[]);
    capture("invalid_then_repair", &standin, &s, &[&first, &second], true);
    assert_eq!(second.code, Some(0), "stderr: {}", second.stderr);
    let r2 = second.result();
    assert_eq!(r2["structured_output"], review_answer());
    assert_eq!(r2["session_id"], sid.as_str(), "resume keeps the session id");
    // The resumed invocation's usage is its own, not cumulative over the session.
    assert_eq!(r2["usage"]["input_tokens"], standin.behaviour.usage.input_tokens);
    let reqs = model_requests(&standin);
    assert_eq!(reqs.len(), 3);
    assert!(reqs[2].body["messages"].as_array().unwrap().len() > 4, "the resumed request carries the history");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_file_with_accept_edits() {
    if !runnable(&claude_binary()) {
        return;
    }
    let answer = json!({"verdict": "clean", "issues": []});
    let a = answer.clone();
    let standin = AnthropicStandIn::start(Behaviour::new(Arc::new(move |_| Answer::WriteFileThen {
        path: "notes/out.txt".into(),
        contents: "written by the stand-in\n".into(),
        answer: a.clone(),
    })))
    .await;
    let s = scratch();
    let run = run_claude(
        &standin,
        &s,
        GOOD_KEY,
        "Write notes/out.txt",
        &review_schema(),
        &["--permission-mode", "acceptEdits"],
        &[],
    );
    capture("write_accept_edits", &standin, &s, &[&run], true);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_eq!(std::fs::read_to_string(s.cwd.join("notes/out.txt")).unwrap(), "written by the stand-in\n");
    let r = run.result();
    assert_eq!(r["structured_output"], answer);
    assert_eq!(r["permission_denials"], json!([]));
    assert_eq!(model_requests(&standin).len(), 2);
    // usage is the sum over both requests of the invocation.
    assert_eq!(r["usage"]["input_tokens"], standin.behaviour.recorder.usage_sent().input_tokens);
    assert_eq!(r["usage"]["input_tokens"], 2 * standin.behaviour.usage.input_tokens);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_file_is_denied_in_the_default_mode() {
    if !runnable(&claude_binary()) {
        return;
    }
    let answer = json!({"verdict": "clean", "issues": []});
    let a = answer.clone();
    let standin = AnthropicStandIn::start(Behaviour::new(Arc::new(move |_| Answer::WriteFileThen {
        path: "notes/out.txt".into(),
        contents: "x\n".into(),
        answer: a.clone(),
    })))
    .await;
    let s = scratch();
    let run = run_claude(&standin, &s, GOOD_KEY, "Write notes/out.txt", &review_schema(), &[], &[]);
    capture("write_default_mode", &standin, &s, &[&run], false);
    assert_eq!(run.code, Some(0));
    assert!(!s.cwd.join("notes/out.txt").exists());
    let r = run.result();
    assert_eq!(r["subtype"], "success");
    assert_eq!(r["structured_output"], answer);
    assert_eq!(r["permission_denials"][0]["tool_name"], "Write");
    let denied = run.events.iter().find(|e| e["type"] == "user").unwrap();
    assert!(denied.to_string().contains("haven't granted it yet"), "{denied}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2020_12_schema_is_dropped_silently() {
    if !runnable(&claude_binary()) {
        return;
    }
    let mut schema = review_schema();
    schema.as_object_mut().unwrap().insert("$schema".into(), json!("https://json-schema.org/draft/2020-12/schema"));
    let standin = AnthropicStandIn::start(Behaviour::always(review_answer())).await;
    let s = scratch();
    let run = run_claude(&standin, &s, GOOD_KEY, REVIEW_PROMPT, &schema, &[], &[]);
    capture("schema_2020_12", &standin, &s, &[&run], false);
    assert_eq!(run.code, Some(0));
    let reqs = model_requests(&standin);
    assert!(tool(&reqs[0], STRUCTURED_TOOL).is_none(), "no StructuredOutput tool offered");
    let r = run.result();
    assert_eq!(r["subtype"], "success");
    assert!(r.get("structured_output").is_none(), "{r}");
    assert!(run.stderr.trim().is_empty(), "no warning: {}", run.stderr);
}

/// The stand-in's own rules, checked without the CLI (what a broken request gets).
#[tokio::test]
async fn the_standin_enforces_the_request_rules() {
    let standin = AnthropicStandIn::start(Behaviour::always(review_answer())).await;
    let url = format!("{}/v1/messages?beta=true", standin.base_url());
    let client = reqwest::Client::new();
    let good = json!({
        "model": "claude-opus-4-8", "max_tokens": 100, "stream": false,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"name": "StructuredOutput", "input_schema": review_schema()}],
    });
    let post = |body: Value, key: &'static str, version: bool| {
        let mut rb = client.post(&url).header("x-api-key", key).json(&body);
        if version {
            rb = rb.header("anthropic-version", "2023-06-01");
        }
        async move {
            let resp = rb.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    let (status, ok) = post(good.clone(), GOOD_KEY, true).await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(ok["content"][0]["name"], STRUCTURED_TOOL);
    assert_eq!(ok["content"][0]["input"], review_answer());

    let (status, body) = post(good.clone(), "sk-wrong", true).await;
    assert_eq!((status, body["error"]["type"].as_str()), (401, Some("authentication_error")));
    assert!(body["request_id"].as_str().unwrap().starts_with("req_"));
    let (status, body) = post(good.clone(), GOOD_KEY, false).await;
    assert_eq!((status, body["error"]["type"].as_str()), (400, Some("invalid_request_error")), "{body}");

    let broken = |edit: &dyn Fn(&mut Value)| {
        let mut b = good.clone();
        edit(&mut b);
        b
    };
    let cases: Vec<(&str, Value)> = vec![
        ("model", broken(&|b| drop(b.as_object_mut().unwrap().remove("model")))),
        ("max_tokens", broken(&|b| drop(b.as_object_mut().unwrap().remove("max_tokens")))),
        ("at least one message", broken(&|b| b["messages"] = json!([]))),
        ("first message", broken(&|b| b["messages"] = json!([{"role": "assistant", "content": "x"}]))),
        (
            "alternate",
            broken(&|b| b["messages"] = json!([{"role": "user", "content": "x"}, {"role": "user", "content": "y"}])),
        ),
        (
            "tool_result",
            broken(&|b| {
                b["messages"] = json!([
                    {"role": "user", "content": "x"},
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Write", "input": {}}]},
                    {"role": "user", "content": [{"type": "text", "text": "no result"}]}
                ])
            }),
        ),
        ("input_schema.type", broken(&|b| b["tools"] = json!([{"name": "T", "input_schema": {"type": "string"}}]))),
        // role "system" messages pass only under the mid-conversation-system beta header.
        (
            "role",
            broken(&|b| b["messages"] = json!([{"role": "user", "content": "x"}, {"role": "system", "content": "s"}])),
        ),
    ];
    for (needle, body) in cases {
        let (status, err) = post(body, GOOD_KEY, true).await;
        assert_eq!(status, 400, "{needle}: {err}");
        assert_eq!(err["type"], "error");
        assert_eq!(err["error"]["type"], "invalid_request_error");
        assert!(err["error"]["message"].as_str().unwrap().contains(needle), "{needle}: {err}");
    }
    // Faults are answered only after the key and rules pass; none of these counted as answers.
    assert_eq!(standin.behaviour.recorder.answers(), 1);
}

/// A schema whose top level is not an object is forwarded verbatim as the tool's input_schema,
/// which the API refuses (400): coord must wrap such schemas itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_object_schema_reaches_the_api_and_is_refused() {
    if !runnable(&claude_binary()) {
        return;
    }
    let schema = json!({"type": "array", "items": {"type": "string"}});
    let standin = AnthropicStandIn::start(Behaviour::always(json!(["a"]))).await;
    let s = scratch();
    let run = run_claude(&standin, &s, GOOD_KEY, REVIEW_PROMPT, &schema, &[], &[]);
    capture("schema_top_level_array", &standin, &s, &[&run], false);
    assert_eq!(tool(&model_requests(&standin)[0], STRUCTURED_TOOL).unwrap()["input_schema"], schema);
    assert_api_error(&run, Some(400), "input_schema.type");
    assert_eq!(model_requests(&standin).len(), 1);
}
