//! Leaf harnesses through the binary, for what the released agent CLIs cannot be made to do
//! (tests/real_agents.rs runs those): fake `claude`, `codex` and `gemini` executables
//! (tests/fakes) replay transcripts recorded in each real format (tests/fixtures/transcripts)
//! to play a process that hangs with children, lingers after its result, crashes before any
//! result or echoes its key; and a loopback HTTP server plays the Anthropic and
//! OpenAI-compatible APIs for the `anthropic` and `openai` harnesses. Covers parsing, failure
//! modes, retries, repair, budget, limits, worktrees, redaction, and groom-prs routing the
//! same on the API harnesses as on mock leaves.

use crate::support;

use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use support::{repo_root, Outcome, TestProject};
use wiremock::matchers::{body_string_contains, header, header_exists, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const SECRET: &str = "sk-test-SECRET123";

const REVIEW_SCHEMA: &str = r#"{ type = "object", required = ["verdict", "findings"], properties = { verdict = { enum = ["clean", "minor", "blocking"] }, summary = { type = "string" }, findings = { type = "array" } } }"#;

const ONE_LEAF: &str = r#"
let r = await_sessions([spawn_session("review", #{ goal: "look", inputs: #{ pr: 7 } })])[0];
#{ status: r.status, error: r.error, output: r.output, text: r.text }
"#;

fn fake(name: &str) -> String {
    repo_root().join("tests/fakes").join(name).display().to_string()
}

fn fixture(rel: &str) -> String {
    std::fs::read_to_string(repo_root().join("tests/fixtures/transcripts").join(rel)).unwrap()
}

/// `[harness.*]` tables pointing the agent CLIs at the fakes, with rates for the agents that
/// report no cost. A leaf inherits none of coord's variables but its harness's own, so the
/// fakes' settings are passed by name.
fn fake_agents_toml() -> String {
    format!(
        r#"
[harness.claude-code]
binary = "{}"
pass_env = ["FAKE_STATE", "FAKE_MODE", "FAKE_ANSWERS"]

[harness.codex]
binary = "{}"
model = "gpt-5-codex"
pass_env = ["FAKE_STATE", "FAKE_MODE", "FAKE_ANSWERS"]
[harness.codex.rates.gpt-5-codex]
input = 1.25
output = 10.0
cache_read = 0.125

[harness.gemini]
binary = "{}"
pass_env = ["FAKE_STATE", "FAKE_MODE", "FAKE_ANSWERS"]
[harness.gemini.rates."gemini-2.5-pro"]
input = 1.25
output = 10.0
cache_read = 0.31
"#,
        fake("claude"),
        fake("codex"),
        fake("gemini")
    )
}

fn api_toml(base: &str) -> String {
    format!(
        r#"
[harness.anthropic]
base_url = "{base}"
model = "claude-haiku-4-5"
retry_backoff = "50ms"
[harness.anthropic.rates.claude-haiku-4-5]
input = 1.0
output = 5.0

[harness.openai]
base_url = "{base}"
model = "qwen2.5-coder:7b"
retry_backoff = "50ms"
"#
    )
}

/// A project whose `review` workflow runs on `harness`, and a script running one review.
fn review_project(harness: &str, workflow_extra: &str, toml_extra: &str) -> TestProject {
    let p = TestProject::new();
    p.write(
        "workflows/review.toml",
        &format!(
            "harness = \"{harness}\"\ntimeout = \"20s\"\nprompt = \"Review pull request #{{{{ inputs.pr }}}}.\"\nschema = {REVIEW_SCHEMA}\n{workflow_extra}\n[inputs]\npr = \"integer: the PR\"\n"
        ),
    );
    p.write("coord.toml", &format!("{}\n{toml_extra}", fake_agents_toml()));
    p.write("s.rhai", ONE_LEAF);
    p
}

fn state_dir(p: &TestProject) -> PathBuf {
    p.path().join("fake-state")
}

fn run_fake(p: &TestProject, mode: &str) -> Outcome {
    p.coord().env("FAKE_STATE", state_dir(p)).env("FAKE_MODE", mode).args(["run", "s.rhai", "--json"]).run()
}

fn calls(p: &TestProject, agent: &str) -> Vec<String> {
    std::fs::read_to_string(state_dir(p).join(format!("{agent}.calls")))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The script's result and the first leaf's `--json` line.
fn result_and_leaf(out: &Outcome) -> (Value, Value) {
    out.code(0);
    let v = out.json();
    (v["result"].clone(), v["leaves"][0].clone())
}

/// The run stopped on an outage (exit 1): the error line, which journaled no answer for it.
#[track_caller]
fn stopped_on_outage(out: &Outcome) -> String {
    out.code(1);
    let line = out.stderr.lines().find(|l| l.starts_with("error: the ")).unwrap_or_else(|| panic!("{}", out.stderr));
    out.stderr_has("coord resume");
    line.to_owned()
}

fn err(v: &Value) -> String {
    v["error"].as_str().unwrap_or("").to_owned()
}

fn assert_close(a: &Value, b: f64) {
    let a = a.as_f64().unwrap_or(f64::NAN);
    assert!((a - b).abs() < 1e-6, "{a} != {b}");
}

fn pid_in(file: &Path) -> i32 {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no pid in {}", file.display()))
}

fn wait_dead(pid: i32) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if !support::process_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Runs the binary off the async runtime, so the loopback server keeps serving.
async fn run_async(cmd: support::CoordCommand) -> Outcome {
    tokio::task::spawn_blocking(move || cmd.run()).await.unwrap()
}

// ---- Claude Code -------------------------------------------------------------------------

#[test]
fn claude_code_result_gives_output_usage_reported_cost_and_a_transcript() {
    let p = review_project("claude-code", "model = \"claude-sonnet-4-5\"\nmax_turns = 12", "");
    let out = run_fake(&p, "ok");
    let (r, leaf) = result_and_leaf(&out);
    assert_eq!(r["status"], "ok");
    assert_eq!(r["output"]["verdict"], "clean");
    assert_eq!(r["text"], "Review complete.");
    assert_eq!(leaf["harness"], "claude-code");
    assert_eq!(leaf["model"], "claude-sonnet-4-5-20250929");
    let u = &leaf["usage"];
    assert_eq!((u["input_tokens"].as_u64(), u["output_tokens"].as_u64()), (Some(12), Some(216)));
    assert_eq!((u["cache_read_tokens"].as_u64(), u["cache_write_tokens"].as_u64()), (Some(28182), Some(4722)));
    assert_close(&u["cost_usd"], 0.0123);
    assert!(u.get("cost_estimated").is_none(), "claude reports its cost: {u}");
    assert_eq!(calls(&p, "claude"), vec!["model=claude-sonnet-4-5 resume="]);

    // The journal has the session with its transcript, stored as a blob.
    let run = &p.runs()[0];
    let journal = std::fs::read_to_string(run.join("journal.jsonl")).unwrap();
    let session: Value =
        journal.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).find(|e| e["type"] == "session").unwrap();
    let hash = session["result"]["transcript"].as_str().expect("a transcript hash");
    let transcript = std::fs::read_to_string(run.join("blobs").join(hash)).unwrap();
    assert!(transcript.contains("rate_limit_event") && transcript.contains("\"type\":\"result\""), "{transcript}");
    assert_eq!(session["result"]["provider_session_id"].as_str().map(|s| s.len() > 8), Some(true));
}

#[test]
fn hanging_leaf_is_killed_at_its_timeout_with_its_children() {
    let p = review_project("claude-code", "", "");
    p.write("workflows/review.toml", &p.read("workflows/review.toml").replace("timeout = \"20s\"", "timeout = \"1s\""));
    let started = Instant::now();
    let (r, leaf) = result_and_leaf(&run_fake(&p, "hang"));
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    assert_eq!(r["status"], "timeout");
    assert!(err(&r).contains("timed out after 1s"), "{r}");
    assert_eq!(leaf["status"], "timeout");
    let child = pid_in(&state_dir(&p).join("claude.child.pid"));
    assert!(wait_dead(child), "the leaf's child {child} outlived the timeout");
}

#[test]
fn a_process_lingering_after_its_result_is_killed_and_the_result_kept() {
    let p = review_project("claude-code", "", "");
    let started = Instant::now();
    let (r, _) = result_and_leaf(&run_fake(&p, "linger"));
    assert!(started.elapsed() < Duration::from_secs(12), "took {:?}", started.elapsed());
    assert_eq!(r["status"], "ok", "{r}");
    assert!(wait_dead(pid_in(&state_dir(&p).join("claude.child.pid"))));
}

#[test]
fn claude_failure_modes_are_failed_results() {
    // A crash before any result, retried until no retry is left, is an outage: the run stops.
    let p = review_project("claude-code", "", "");
    let error = stopped_on_outage(&run_fake(&p, "no_result"));
    assert!(error.contains("stream ended without a result event"), "{error}");

    let cases = [("no_structured_output", "no structured_output"), ("max_turns", "error_max_turns")];
    for (mode, expected) in cases {
        let p = review_project("claude-code", "", "");
        let (r, leaf) = result_and_leaf(&run_fake(&p, mode));
        assert_eq!(r["status"], "failed", "{mode}: {r}");
        assert!(err(&r).contains(expected), "{mode}: {r}");
        if mode == "max_turns" {
            assert!(err(&r).contains("Reached maximum number of turns (40)"), "{r}");
            // A failed leaf still spent money, and the run counts it.
            assert_close(&leaf["usage"]["cost_usd"], 0.3871);
        }
    }
}

#[test]
fn a_crash_before_any_result_is_retried() {
    let p = review_project("claude-code", "retries = 2", "");
    let toml = fake_agents_toml().replace(
        &format!("binary = \"{}\"\n", fake("claude")),
        &format!("binary = \"{}\"\nretry_backoff = \"20ms\"\n", fake("claude")),
    );
    p.write("coord.toml", &toml);
    let (r, leaf) = result_and_leaf(&run_fake(&p, "crash_once"));
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(leaf["attempts"], 2);
    assert_eq!(calls(&p, "claude").len(), 2);
}

#[test]
fn schema_repair_resumes_the_claude_session_once() {
    let p = review_project("claude-code", "", "");
    let (r, leaf) = result_and_leaf(&run_fake(&p, "invalid_then_valid"));
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["output"]["verdict"], "clean");
    assert_eq!(leaf["attempts"], 2);
    let made = calls(&p, "claude");
    assert_eq!(made.len(), 2, "{made:?}");
    assert!(made[0].ends_with("resume="), "{made:?}");
    assert!(!made[1].ends_with("resume="), "the repair resumes the session: {made:?}");
    // Both turns' usage is counted.
    assert_close(&leaf["usage"]["cost_usd"], 0.0246);

    let p = review_project("claude-code", "", "");
    let (r, _) = result_and_leaf(&run_fake(&p, "invalid"));
    assert_eq!(r["status"], "failed");
    assert!(err(&r).contains("schema violation") && err(&r).contains("after one repair attempt"), "{r}");
    assert_eq!(calls(&p, "claude").len(), 2, "one repair, no more");
}

#[test]
fn verbose_logs_name_the_session_workflow_and_events() {
    let p = review_project("claude-code", "", "");
    let out = p.coord().env("FAKE_STATE", state_dir(&p)).args(["run", "s.rhai", "-v"]).run();
    out.code(0);
    for needle in ["session=s1", "workflow=review", "harness=claude-code", "tool_use", "leaf finished"] {
        assert!(out.stderr.contains(needle), "{needle} missing from:\n{}", out.stderr);
    }
}

// ---- Codex -------------------------------------------------------------------------------

#[test]
fn codex_answer_is_the_last_agent_message_with_an_estimated_cost() {
    let p = review_project("codex", "", "");
    let (r, leaf) = result_and_leaf(&run_fake(&p, "ok"));
    assert_eq!(r["status"], "ok", "{r}");
    // The transcript's earlier JSON message says "blocking": the last one is the answer.
    assert_eq!(r["output"]["verdict"], "clean");
    assert_eq!(leaf["model"], "gpt-5-codex");
    let u = &leaf["usage"];
    assert_eq!(u["input_tokens"], 24310 - 19968);
    assert_eq!(u["cache_read_tokens"], 19968);
    assert_eq!(u["output_tokens"], 912);
    assert_close(&u["cost_usd"], ((24310.0 - 19968.0) * 1.25 + 19968.0 * 0.125 + 912.0 * 10.0) / 1e6);
    assert_eq!(u["cost_estimated"], true);
    assert_eq!(calls(&p, "codex"), vec!["model=gpt-5-codex resume="]);
    assert_eq!(std::fs::read_dir(p.runs()[0].join("schemas")).unwrap().count(), 1);
}

#[test]
fn codex_failures_and_repair() {
    let p = review_project("codex", "retries = 2", "");
    let (r, leaf) = result_and_leaf(&run_fake(&p, "invalid_request"));
    assert_eq!(r["status"], "failed");
    assert!(err(&r).contains("codex turn failed: Invalid schema"), "{r}");
    assert_eq!(leaf["attempts"], 1, "a bad request is not retried");

    // A rate limit that outlasts the retries, and a crash, are outages: the run stops.
    let p = review_project("codex", "", "");
    let error = stopped_on_outage(&run_fake(&p, "turn_failed"));
    assert!(error.contains("429 Too Many Requests"), "{error}");

    let p = review_project("codex", "", "");
    let error = stopped_on_outage(&run_fake(&p, "no_turn"));
    assert!(error.contains("without a completed turn (exit status 101)"), "{error}");

    let p = review_project("codex", "", "");
    let (r, leaf) = result_and_leaf(&run_fake(&p, "invalid_then_valid"));
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(leaf["attempts"], 2);
    let made = calls(&p, "codex");
    assert!(made[1].contains("resume=0199a213"), "the repair is `codex exec resume <thread>`: {made:?}");
}

// ---- Gemini ------------------------------------------------------------------------------

#[test]
fn gemini_json_is_found_in_the_fenced_response() {
    let p = review_project("gemini", "", "");
    let (r, leaf) = result_and_leaf(&run_fake(&p, "ok"));
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["output"]["verdict"], "clean");
    assert_eq!(leaf["model"], "gemini-2.5-pro");
    let u = &leaf["usage"];
    assert_eq!((u["input_tokens"].as_u64(), u["cache_read_tokens"].as_u64()), (Some(7040), Some(2048)));
    assert_eq!(u["output_tokens"], 402 + 255);
    assert_eq!(u["cost_estimated"], true);
}

#[test]
fn gemini_exit_codes_and_prose_are_failed_results_and_repair_asks_again() {
    // The CLI's generic error (a failed fetch) is transient: once retries are spent, an outage.
    let p = review_project("gemini", "", "");
    let error = stopped_on_outage(&run_fake(&p, "crash"));
    assert!(error.contains("exited with status 1 (error): FatalError: fetch failed"), "{error}");

    let cases = [
        ("turn_limit", "exited with status 53 (turn limit exceeded): Reached max session turns"),
        ("prose", "response holds no JSON"),
    ];
    for (mode, expected) in cases {
        let p = review_project("gemini", "", "");
        let (r, _) = result_and_leaf(&run_fake(&p, mode));
        assert_eq!(r["status"], "failed", "{mode}: {r}");
        assert!(err(&r).contains(expected), "{mode}: {r}");
    }
    let p = review_project("gemini", "", "");
    let (r, leaf) = result_and_leaf(&run_fake(&p, "invalid_then_valid"));
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(leaf["attempts"], 2);
    assert_eq!(calls(&p, "gemini"), vec!["model= repair=", "model= repair=yes"]);
}

// ---- Model APIs on a loopback server -----------------------------------------------------

fn anthropic_message(input: Value) -> Value {
    let mut m: Value = serde_json::from_str(&fixture("anthropic/message.json")).unwrap();
    m["content"][1]["input"] = input;
    m
}

fn openai_completion(content: &str) -> Value {
    let mut m: Value = serde_json::from_str(&fixture("openai/chat-completion.json")).unwrap();
    m["choices"][0]["message"]["content"] = json!(content);
    m
}

fn clean() -> Value {
    json!({"verdict": "clean", "summary": "Looks good.", "findings": []})
}

fn api_project(server: &MockServer, harness: &str, workflow_extra: &str) -> TestProject {
    review_project(harness, workflow_extra, &api_toml(&server.uri()))
}

fn api_run(p: &TestProject) -> support::CoordCommand {
    p.coord().env("ANTHROPIC_API_KEY", SECRET).env_remove("OPENAI_API_KEY").args(["run", "s.rhai", "--json"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_forces_one_tool_and_prices_from_the_rate_table() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", SECRET))
        .and(header("anthropic-version", "2023-06-01"))
        .and(body_string_contains(r#""tool_choice":{"type":"tool","name":"submit_answer"}"#))
        .respond_with(ResponseTemplate::new(200).set_body_json(anthropic_message(clean())))
        .mount(&server)
        .await;
    let p = api_project(&server, "anthropic", "");
    let (r, leaf) = result_and_leaf(&run_async(api_run(&p)).await);
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["output"], clean());
    assert_eq!(leaf["model"], "claude-haiku-4-5-20251001");
    assert_eq!(
        (leaf["usage"]["input_tokens"].as_u64(), leaf["usage"]["output_tokens"].as_u64()),
        (Some(1522), Some(131))
    );
    assert_close(&leaf["usage"]["cost_usd"], (1522.0 * 1.0 + 131.0 * 5.0) / 1e6);
    assert_eq!(leaf["usage"]["cost_estimated"], true);
    let sent: Value = server.received_requests().await.unwrap()[0].body_json().unwrap();
    assert_eq!(sent["tools"][0]["input_schema"]["required"], json!(["verdict", "findings"]));
    assert_eq!(sent["model"], "claude-haiku-4-5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_honour_retry_after_and_5xx_are_retried() {
    for (harness, endpoint) in [("anthropic", "/v1/messages"), ("openai", "/v1/chat/completions")] {
        let server = MockServer::start().await;
        let (limited, ok) = if harness == "anthropic" {
            (fixture("anthropic/rate-limited.json"), anthropic_message(clean()))
        } else {
            (fixture("openai/rate-limited.json"), openai_completion(&clean().to_string()))
        };
        Mock::given(method("POST"))
            .and(path(endpoint))
            .respond_with(
                ResponseTemplate::new(429).insert_header("retry-after", "1").set_body_raw(limited, "application/json"),
            )
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(endpoint))
            .respond_with(ResponseTemplate::new(500).set_body_string("upstream exploded"))
            .up_to_n_times(1)
            .with_priority(2)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(endpoint))
            .respond_with(ResponseTemplate::new(200).set_body_json(ok))
            .with_priority(3)
            .mount(&server)
            .await;
        let p = api_project(&server, harness, "retries = 3");
        let started = Instant::now();
        let (r, leaf) = result_and_leaf(&run_async(api_run(&p)).await);
        assert_eq!(r["status"], "ok", "{harness}: {r}");
        assert_eq!(leaf["attempts"], 3, "{harness}: 429, 500, then ok");
        assert!(started.elapsed() >= Duration::from_secs(1), "{harness}: retry-after was not honoured");
        assert_eq!(server.received_requests().await.unwrap().len(), 3);

        // Without retries, the 429 outlasts them: an outage, and the run stops.
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "30").set_body_string("slow down"))
            .mount(&server)
            .await;
        let p = api_project(&server, harness, "");
        let error = stopped_on_outage(&run_async(api_run(&p)).await);
        assert!(error.contains("HTTP 429: slow down"), "{harness}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_api_json_is_a_failed_result() {
    for (harness, endpoint) in [("anthropic", "/v1/messages"), ("openai", "/v1/chat/completions")] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(endpoint))
            .respond_with(
                ResponseTemplate::new(200).set_body_raw("{\"id\": \"msg_01\", \"content\": [", "application/json"),
            )
            .mount(&server)
            .await;
        let p = api_project(&server, harness, "retries = 2");
        let (r, leaf) = result_and_leaf(&run_async(api_run(&p)).await);
        assert_eq!(r["status"], "failed", "{harness}: {r}");
        assert!(err(&r).contains("the response is not JSON"), "{harness}: {r}");
        assert_eq!(leaf["attempts"], 1, "{harness}: malformed JSON is not retried");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_repairs_continue_the_conversation() {
    let server = MockServer::start().await;
    // The repair carries the rejected tool call back with an error tool_result.
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(body_string_contains("\"is_error\":true"))
        .and(body_string_contains("toolu_01A09q90qw90lq917835lq9"))
        .respond_with(ResponseTemplate::new(200).set_body_json(anthropic_message(clean())))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(anthropic_message(json!({"verdict": "maybe"}))))
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_string_contains("does not match the required JSON Schema"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(openai_completion(&format!("```json\n{}\n```", clean()))),
        )
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(openai_completion("{\"verdict\": \"maybe\"}")))
        .with_priority(2)
        .mount(&server)
        .await;
    for harness in ["anthropic", "openai"] {
        let p = api_project(&server, harness, "");
        let (r, leaf) = result_and_leaf(&run_async(api_run(&p)).await);
        assert_eq!(r["status"], "ok", "{harness}: {r}");
        assert_eq!(r["output"], clean());
        assert_eq!(leaf["attempts"], 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_sends_json_schema_and_no_key_to_a_local_server() {
    let server = MockServer::start().await;
    Mock::given(header_exists("authorization"))
        .respond_with(ResponseTemplate::new(401).set_body_string("no keys here"))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_string_contains(r#""json_schema":{"name":"review","schema":"#))
        .respond_with(ResponseTemplate::new(200).set_body_json(openai_completion(&clean().to_string())))
        .with_priority(2)
        .mount(&server)
        .await;
    let p = api_project(&server, "openai", "");
    let (r, leaf) = result_and_leaf(&run_async(api_run(&p)).await);
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(leaf["model"], "qwen2.5-coder:7b");
    assert_eq!(leaf["usage"]["input_tokens"], 1480);
    // A local model with no rate costs nothing, and says so by not estimating.
    assert_eq!(leaf["usage"]["cost_usd"], 0.0);
}

// ---- Secrets -----------------------------------------------------------------------------

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_appears_nowhere_in_the_run_or_its_output() {
    let server = MockServer::start().await;
    // A server that echoes the key it was sent, in text, in the answer, and in an error.
    Mock::given(body_string_contains("model-that-rejects"))
        .respond_with(|req: &Request| {
            let key = req.headers.get("x-api-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            // A 400 (a result the script routes on) that quotes the key back.
            ResponseTemplate::new(400).set_body_json(json!({"type": "error", "error": {"type": "invalid_request_error", "message": format!("invalid x-api-key {key}")}}))
        })
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(|req: &Request| {
            let key = req.headers.get("x-api-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            let mut m =
                anthropic_message(json!({"verdict": "clean", "summary": format!("sent with {key}"), "findings": []}));
            m["content"][0]["text"] = json!(format!("Your key {key} works."));
            ResponseTemplate::new(200).set_body_json(m)
        })
        .with_priority(2)
        .mount(&server)
        .await;
    let p = review_project("anthropic", "", &api_toml(&server.uri()));
    p.write(
        "workflows/rejected.toml",
        &p.read("workflows/review.toml")
            .replace("harness = \"anthropic\"", "harness = \"anthropic\"\nmodel = \"model-that-rejects\""),
    );
    p.write(
        "workflows/cli.toml",
        &p.read("workflows/review.toml").replace("harness = \"anthropic\"", "harness = \"claude-code\""),
    );
    p.write(
        "s.rhai",
        r#"
let rs = await_sessions(["review", "rejected", "cli"].map(|w| spawn_session(w, #{ goal: "look", inputs: #{ pr: 7 } })));
log(rs);
print(rs.map(|r| r.error));
rs.map(|r| #{ status: r.status, error: r.error, output: r.output, text: r.text })
"#,
    );
    let out = run_async(
        p.coord()
            .env("ANTHROPIC_API_KEY", SECRET)
            .env("FAKE_STATE", state_dir(&p))
            .env("FAKE_MODE", "leak_key")
            .args(["-vvv", "run", "s.rhai", "--json"]),
    )
    .await;
    out.code(0);
    let v = out.json();
    assert_eq!(v["result"][0]["status"], "ok", "{}", v["result"]);
    assert_eq!(v["result"][1]["status"], "failed");
    assert!(err(&v["result"][1]).contains("invalid x-api-key [redacted]"), "{}", v["result"][1]);
    assert_eq!(v["result"][2]["status"], "ok");
    assert!(v["result"][0]["output"]["summary"].as_str().unwrap().contains("[redacted]"));

    assert!(!out.stdout.contains("SECRET123"), "stdout leaks the key");
    assert!(!out.stderr.contains("SECRET123"), "stderr leaks the key");
    let files = files_under(&p.path().join(".coord"));
    assert!(files.iter().any(|f| f.to_string_lossy().contains("/blobs/")), "transcripts were stored");
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("SECRET123"),
            "{} leaks the key:\n{}",
            file.display(),
            String::from_utf8_lossy(&bytes)
        );
    }
}

// ---- Scheduling --------------------------------------------------------------------------

#[test]
fn budget_stops_new_spawns_and_usage_is_reported_per_leaf_and_in_total() {
    let p = review_project("claude-code", "", "");
    p.write(
        "s.rhai",
        r#"
let statuses = [];
for pr in [1, 2, 3, 4] {
    let r = await_sessions([spawn_session("review", #{ goal: "look", inputs: #{ pr: pr } })])[0];
    statuses.push(r.status);
}
statuses
"#,
    );
    let out =
        p.coord().env("FAKE_STATE", state_dir(&p)).args(["run", "s.rhai", "--json", "--budget-usd", "0.02"]).run();
    out.code(0);
    let v = out.json();
    assert_eq!(v["result"], json!(["ok", "ok", "skipped_budget", "skipped_budget"]));
    assert_eq!(calls(&p, "claude").len(), 2, "skipped leaves never start");
    assert_close(&v["usage"]["cost_usd"], 0.0246);
    assert_eq!(v["usage"]["input_tokens"], 24);
    let leaves = v["leaves"].as_array().unwrap();
    assert_eq!(leaves.len(), 4);
    assert_close(&leaves[0]["usage"]["cost_usd"], 0.0123);
    assert!(err(&leaves[2]).contains("budget of $0.02 is spent"), "{}", leaves[2]);

    let journal = std::fs::read_to_string(p.runs()[0].join("journal.jsonl")).unwrap();
    let entries: Vec<Value> = journal.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let sessions: Vec<&Value> = entries.iter().filter(|e| e["type"] == "session").collect();
    assert_eq!(sessions.len(), 4);
    assert_close(&sessions[0]["result"]["usage"]["cost_usd"], 0.0123);
    assert_eq!(sessions[3]["result"]["status"], "skipped_budget");
    let finished = entries.last().unwrap();
    assert_eq!(finished["type"], "run_finished");
    assert_close(&finished["usage"]["cost_usd"], 0.0246);
    assert_eq!(finished["usage"]["cache_read_tokens"], 2 * 28182);
}

#[test]
fn command_leaves_exiting_75_are_retried_with_backoff() {
    let p = TestProject::new();
    p.write_executable(
        "leaf.sh",
        "#!/bin/sh\nn=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count\n[ $n -lt 3 ] && { echo busy >&2; exit 75; }\necho '{\"ok\": true}'\n",
    );
    p.write(
        "workflows/review.toml",
        "harness = \"command\"\ncommand = [\"./leaf.sh\"]\nretries = 2\nprompt = \"x\"\nschema = { type = \"object\" }\n",
    );
    p.write("coord.toml", "[harness.command]\nretry_backoff = \"100ms\"\n");
    p.write("s.rhai", ONE_LEAF);
    let started = Instant::now();
    let (r, leaf) = result_and_leaf(&p.coord().args(["run", "s.rhai", "--json"]).run());
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(leaf["attempts"], 3);
    // Backoff of 100ms then 200ms, each jittered to at least half.
    assert!(started.elapsed() >= Duration::from_millis(150), "{:?}", started.elapsed());
}

#[test]
fn a_harness_concurrency_limit_holds_beside_max_parallel() {
    let p = TestProject::new();
    p.write(
        "workflows/slow.toml",
        "harness = \"command\"\ncommand = [\"sh\", \"-c\", \"echo + >> marks; sleep 0.3; echo - >> marks; echo '{}'\"]\nprompt = \"x\"\nschema = { type = \"object\" }\n",
    );
    p.write("coord.toml", "[harness.command]\nconcurrency = 2\n");
    p.write("s.rhai", "await_sessions([1, 2, 3, 4, 5, 6].map(|i| spawn_session(\"slow\", #{ inputs: #{ i: i } }))).map(|r| r.status)\n");
    let out = p.coord().args(["run", "s.rhai", "--json", "--max-parallel", "8"]).run();
    out.code(0);
    assert_eq!(out.json()["result"], json!(["ok", "ok", "ok", "ok", "ok", "ok"]));
    let (mut running, mut most) = (0, 0);
    for mark in p.read("marks").lines() {
        running += if mark == "+" { 1 } else { -1 };
        most = most.max(running);
    }
    assert_eq!(most, 2, "{}", p.read("marks"));
}

#[test]
fn a_leaf_gets_its_own_worktree_removed_on_success_and_kept_on_failure() {
    let p = TestProject::new();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git").current_dir(p.path()).args(args).output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    p.write(".gitignore", ".coord/\n");
    p.write_executable(
        "leaf.sh",
        "#!/bin/sh\n[ \"$1\" = fail ] && exit 1\necho changed > README\ngit add README && git -c user.name=leaf -c user.email=leaf@test commit -qm 'leaf edit'\nprintf '{\"branch\": \"%s\", \"dir\": \"%s\"}' \"$(git branch --show-current)\" \"$(pwd)\"\n",
    );
    p.write("README", "original\n");
    p.write("workflows/edit.toml", "harness = \"command\"\ncommand = [\"./leaf.sh\"]\nworktree = true\nprompt = \"x\"\nschema = { type = \"object\" }\n");
    p.write(
        "workflows/broken.toml",
        &p.read("workflows/edit.toml").replace("[\"./leaf.sh\"]", "[\"./leaf.sh\", \"fail\"]"),
    );
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["-c", "user.name=t", "-c", "user.email=t@test", "commit", "-qm", "root"]);
    p.write("s.rhai", "await_sessions([spawn_session(\"edit\", #{}), spawn_session(\"broken\", #{})]).map(|r| #{ status: r.status, output: r.output })\n");
    let out = p.coord().args(["run", "s.rhai", "--json"]).run();
    out.code(0);
    let v = out.json();
    let run_id = v["run_id"].as_str().unwrap();
    let run_dir = p.path().join(v["run_dir"].as_str().unwrap());
    let edit = &v["result"][0];
    assert_eq!(edit["status"], "ok", "{v}");
    assert_eq!(edit["output"]["branch"], format!("coord/{run_id}/s1"));
    let leaf_dir = PathBuf::from(edit["output"]["dir"].as_str().unwrap());
    assert!(leaf_dir.ends_with("worktrees/s1"), "{}", leaf_dir.display());
    assert!(!run_dir.join("worktrees/s1").exists(), "a succeeded leaf's worktree is removed");
    assert_eq!(
        git(&["log", "-1", "--format=%s", &format!("coord/{run_id}/s1")]).trim(),
        "leaf edit",
        "its branch stays"
    );
    assert_eq!(p.read("README"), "original\n", "the project's checkout is untouched");
    assert_eq!(v["result"][1]["status"], "failed");
    assert!(run_dir.join("worktrees/s2/leaf.sh").exists(), "a failed leaf's worktree is kept");
}

#[test]
fn config_mistakes_are_usage_errors() {
    let p = review_project("claude-code", "", "[harness.llama]\nbase_url = \"http://localhost:11434\"\n");
    let out = p.coord().args(["run", "s.rhai"]).run();
    out.code(2);
    assert!(out.stderr.contains("[harness.llama]") && out.stderr.contains("kind"), "{}", out.stderr);
    assert!(p.runs().is_empty(), "nothing ran");

    let p = review_project("claude-code", "", "[workflow.review]\nretires = 2\n");
    let out = p.coord().args(["run", "s.rhai"]).run();
    out.code(2);
    assert!(out.stderr.contains("coord.toml") && out.stderr.contains("retires"), "{}", out.stderr);
}

// ---- groom-prs routes the same on every harness ------------------------------------------

/// The demo's review verdicts, per PR, in the order the demo's mock rules give them.
fn demo_verdicts() -> Vec<(u64, Vec<Value>)> {
    let minor = |file: &str, msg: &str| json!({"verdict": "minor", "summary": "Small fixes.", "findings": [{"severity": "minor", "file": file, "message": msg}]});
    vec![
        (12, vec![json!({"verdict": "clean", "summary": "Retry with backoff, well tested.", "findings": []})]),
        (13, vec![json!({"verdict": "clean", "summary": "Routine bump.", "findings": []})]),
        (
            14,
            vec![
                minor("src/config.rs", "Include the environment in the cache key"),
                json!({"verdict": "clean", "summary": "Cache key fixed.", "findings": []}),
            ],
        ),
        (
            15,
            vec![json!({"verdict": "blocking", "summary": "Session fixation risk.", "findings": [
                {"severity": "blocking", "file": "src/auth.rs", "line": 40, "message": "Session id is reused across logins"},
                {"severity": "blocking", "file": "src/auth.rs", "line": 95, "message": "CSRF check removed"}]})],
        ),
        (16, vec![minor("src/log.rs", "Use debug! for per-request lines")]),
        // 17 hangs: the demo's review of #17 times out.
    ]
}

const GROOM_TOML: &str = "\n[workflow.mr-review]\ntimeout = \"2s\"\n";

fn groom_project(extra_toml: &str) -> TestProject {
    let p = TestProject::with_repo_files();
    p.write("coord.toml", &format!("{}{GROOM_TOML}{extra_toml}", fake_agents_toml()));
    for (pr, answers) in demo_verdicts() {
        let lines: Vec<String> = answers.iter().map(Value::to_string).collect();
        p.write(&format!("fake-answers/pr-{pr}"), &(lines.join("\n") + "\n"));
    }
    p.write("fake-answers/pr-17", "HANG\n");
    p
}

fn groom(p: &TestProject, leaf: Option<&str>) -> support::CoordCommand {
    let mut args = vec!["run", "coordinators/groom-prs.rhai", "--demo", "--json"];
    if let Some(l) = leaf {
        args.extend(["--leaf", l]);
    }
    p.coord()
        .env("FAKE_STATE", state_dir(p))
        .env("FAKE_ANSWERS", p.path().join("fake-answers"))
        .env("ANTHROPIC_API_KEY", SECRET)
        .env_remove("OPENAI_API_KEY")
        .args(args)
}

fn assert_routes_like_mock(mock: &Outcome, real: &Outcome, harness: &str) {
    mock.code(0);
    real.code(0);
    let (mock, real) = (mock.json(), real.json());
    assert_eq!(real["effects"], mock["effects"], "{harness}: effects differ from the mock run");
    assert_eq!(real["result"], mock["result"], "{harness}: outcome differs");
    let leaves = real["leaves"].as_array().unwrap();
    let reviews: Vec<&Value> = leaves.iter().filter(|l| l["workflow"] == "mr-review").collect();
    assert_eq!(reviews.len(), 10, "{harness}: 6 reviews, 1 re-review of #14, 3 of #16");
    assert!(reviews.iter().all(|l| l["harness"] == harness), "{harness}: {reviews:?}");
    let timeouts: Vec<&&Value> = reviews.iter().filter(|l| l["status"] == "timeout").collect();
    assert_eq!(timeouts.len(), 1, "{harness}: #17's review times out");
    assert!(real["usage"]["input_tokens"].as_u64().unwrap() > 0, "{harness}: usage is counted");
}

/// Plays a model API that answers each PR's review like the demo does.
fn demo_api(kind: &'static str) -> impl Fn(&Request) -> ResponseTemplate + Send + Sync {
    let verdicts: HashMap<u64, Vec<Value>> = demo_verdicts().into_iter().collect();
    let seen: Mutex<HashMap<u64, usize>> = Mutex::new(HashMap::new());
    move |req: &Request| {
        let body: Value = req.body_json().unwrap();
        let prompt = body["messages"][0]["content"].as_str().unwrap_or("");
        let pr: u64 = prompt
            .split("pull request #")
            .nth(1)
            .map(|rest| rest.chars().take_while(char::is_ascii_digit).collect::<String>())
            .and_then(|n| n.parse().ok())
            .expect("the review prompt names its PR");
        let Some(answers) = verdicts.get(&pr) else {
            return ResponseTemplate::new(200).set_delay(Duration::from_secs(30));
        };
        let n = {
            let mut seen = seen.lock().unwrap();
            let n = seen.entry(pr).or_insert(0);
            *n += 1;
            *n
        };
        let answer = answers[(n - 1).min(answers.len() - 1)].clone();
        let body = if kind == "anthropic" { anthropic_message(answer) } else { openai_completion(&answer.to_string()) };
        ResponseTemplate::new(200).set_body_json(body)
    }
}

async fn groom_on_api(harness: &'static str) {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(demo_api(harness)).mount(&server).await;
    let p = groom_project(&api_toml(&server.uri()));
    let mock = run_async(groom(&p, None)).await;
    let real = run_async(groom(&p, Some(&format!("mr-review={harness}")))).await;
    assert_routes_like_mock(&mock, &real, harness);
    assert_eq!(server.received_requests().await.unwrap().len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groom_prs_on_anthropic_routes_as_on_mock_leaves() {
    groom_on_api("anthropic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groom_prs_on_openai_routes_as_on_mock_leaves() {
    groom_on_api("openai").await;
}
