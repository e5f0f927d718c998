//! Conformance of the OpenAI Responses stand-in with the REAL Codex CLI (codex-cli 0.171.0,
//! installed by `npm ci --prefix tests/agents`): the CLI is run directly (not through coord)
//! with the command line and environment recommended for coord's Codex harness, against
//! `standins::openai_responses` on 127.0.0.1.
//!
//! Run inside a loopback-only network namespace so nothing can leave the machine:
//!     cargo test --test integration --no-run
//!     unshare --net sh -c 'ip link set lo up && cargo test --test integration standin_codex::'
//! `CODEX_WIRE_CAPTURE=1` rewrites the captured traffic in tests/fixtures/wire/codex/.

use crate::standins;

use serde_json::{json, Value};
use standins::openai_responses::{codex_provider_args, ResponsesStandIn, INVALID_PROSE};
use standins::{Answer, Behaviour, Fault, UsageSent, GOOD_KEY};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

/// The env var coord gives Codex the key in (the custom provider's `env_key`).
const KEY_ENV: &str = "CODEX_API_KEY";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The pinned CLI, or None (after a loud message) when `node` is missing.
fn codex_bin() -> Option<PathBuf> {
    let bin = repo_root().join("tests/agents/node_modules/.bin/codex");
    if !bin.exists() {
        panic!("run `npm ci --prefix tests/agents` first (missing {})", bin.display());
    }
    let node =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join("node").is_file())).unwrap_or(false);
    if !node {
        eprintln!("!!!!!!!! `node` is not on PATH: the Codex conformance test is SKIPPED !!!!!!!!");
        return None;
    }
    Some(bin)
}

/// A review schema valid for OpenAI's strict mode.
fn review_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "verdict": { "type": "string", "enum": ["clean", "minor", "blocking"] },
            "summary": { "type": "string" },
            "findings": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "file": { "type": "string" },
                        "line": { "type": ["integer", "null"] },
                        "message": { "type": "string" }
                    },
                    "required": ["file", "line", "message"],
                    "additionalProperties": false
                }
            }
        },
        "required": ["verdict", "summary", "findings"],
        "additionalProperties": false
    })
}

fn review_answer() -> Value {
    json!({
        "verdict": "minor",
        "summary": "One nit in the parser.",
        "findings": [{ "file": "src/lib.rs", "line": 12, "message": "unwrap on user input" }]
    })
}

const REVIEW_PROMPT: &str =
    "Review PR #7 (the diff is in the working tree). Answer with the JSON the schema describes.";
const REPAIR_PROMPT: &str = "Your final answer does not match the required JSON Schema: it is not JSON. Answer again with only the JSON object.";

/// One temp world per test: HOME, CODEX_HOME, the working directory (a git repo unless
/// `git == false`) and the schema file.
struct World {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    codex_home: PathBuf,
    cwd: PathBuf,
    schema: PathBuf,
}

impl World {
    fn new(schema: &Value, git: bool) -> World {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let codex_home = tmp.path().join("codex-home");
        let cwd = tmp.path().join("work");
        for d in [&home, &codex_home, &cwd] {
            std::fs::create_dir_all(d).unwrap();
        }
        if git {
            let st = std::process::Command::new("git")
                .args(["init", "-q"])
                .current_dir(&cwd)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("git");
            assert!(st.success());
        }
        let schema_path = tmp.path().join("schema.json");
        std::fs::write(&schema_path, schema.to_string()).unwrap();
        World { _tmp: tmp, home, codex_home, cwd, schema: schema_path }
    }
}

struct Opts<'a> {
    key: &'a str,
    retries: u32,
    sandbox: &'a str,
    skip_git_check: bool,
    resume: Option<&'a str>,
    prompt: &'a str,
    /// Kill the process group after this long.
    kill_after: Duration,
}

impl Default for Opts<'_> {
    fn default() -> Self {
        Opts {
            key: GOOD_KEY,
            retries: 0,
            sandbox: "read-only",
            skip_git_check: false,
            resume: None,
            prompt: REVIEW_PROMPT,
            kill_after: Duration::from_secs(60),
        }
    }
}

#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    events: Vec<Value>,
    killed: bool,
}

impl Run {
    fn of_type(&self, t: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["type"] == t).collect()
    }
    fn thread_id(&self) -> String {
        self.of_type("thread.started")[0]["thread_id"].as_str().unwrap().to_owned()
    }
    /// What coord reads: the last agent_message of the turn.
    fn answer(&self) -> Option<String> {
        self.events
            .iter()
            .rev()
            .find(|e| e["type"] == "item.completed" && e["item"]["type"] == "agent_message")
            .and_then(|e| e["item"]["text"].as_str().map(str::to_owned))
    }
    fn usage(&self) -> Value {
        self.of_type("turn.completed").last().map(|e| e["usage"].clone()).unwrap_or(Value::Null)
    }
    fn failed_message(&self) -> String {
        self.of_type("turn.failed").last().and_then(|e| e["error"]["message"].as_str()).unwrap_or("").to_owned()
    }
}

/// The command line recommended for coord: `codex exec --json --output-schema <file>
/// --sandbox <mode> [--skip-git-repo-check] -c <provider overrides…> [resume <thread>] <prompt>`,
/// stdin closed, HOME / CODEX_HOME private, the key in CODEX_API_KEY.
fn command(bin: &Path, w: &World, base_url: &str, o: &Opts) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.arg("exec").arg("--json").arg("--output-schema").arg(&w.schema).args(["--sandbox", o.sandbox]);
    if o.skip_git_check {
        cmd.arg("--skip-git-repo-check");
    }
    cmd.args(codex_provider_args(base_url, KEY_ENV, o.retries));
    if let Some(thread) = o.resume {
        cmd.args(["resume", thread]);
    }
    cmd.arg(o.prompt);
    if o.key.is_empty() {
        cmd.env_remove(KEY_ENV);
    } else {
        cmd.env(KEY_ENV, o.key);
    }
    cmd.current_dir(&w.cwd)
        .env("HOME", &w.home)
        .env("CODEX_HOME", &w.codex_home)
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("CODEX_SANDBOX")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    cmd
}

async fn run_codex(bin: &Path, w: &World, stand: &ResponsesStandIn, o: Opts<'_>) -> Run {
    let child = command(bin, w, &stand.base_url(), &o).spawn().expect("spawn codex");
    let pid = child.id().unwrap() as i32;
    let waited = tokio::time::timeout(o.kill_after, child.wait_with_output()).await;
    let (out, killed) = match waited {
        Ok(out) => (out.unwrap(), false),
        Err(_) => {
            // The whole group: the node wrapper and the native binary it started.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let out = std::process::Output {
                status: <std::process::ExitStatus as std::os::unix::process::ExitStatusExt>::from_raw(9),
                stdout: Vec::new(),
                stderr: Vec::new(),
            };
            (out, true)
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let events = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    Run { code: out.status.code(), stdout, stderr, events, killed }
}

fn stand_usage(u: UsageSent, responses: u64) -> Value {
    // What Codex prints for `responses` model responses of `u` each (summed over the thread).
    json!({
        "input_tokens": (u.input_tokens + u.cache_read_tokens) * responses,
        "cached_input_tokens": u.cache_read_tokens * responses,
        "output_tokens": u.output_tokens * responses,
    })
}

fn assert_usage(run: &Run, u: UsageSent, responses: u64) {
    let got = run.usage();
    let want = stand_usage(u, responses);
    for k in ["input_tokens", "cached_input_tokens", "output_tokens"] {
        assert_eq!(got[k], want[k], "usage field {k}: {got}");
    }
    // What coord computes from it: uncached input = input_tokens - cached_input_tokens.
    let uncached = got["input_tokens"].as_u64().unwrap() - got["cached_input_tokens"].as_u64().unwrap();
    assert_eq!(uncached, u.input_tokens * responses);
}

// ---------------------------------------------------------------- fixtures

fn capturing() -> bool {
    std::env::var_os("CODEX_WIRE_CAPTURE").is_some()
}

fn fixture_dir() -> PathBuf {
    repo_root().join("tests/fixtures/wire/codex")
}

/// Long strings (system prompt, tool descriptions) cut and tool parameter schemas dropped,
/// to keep fixtures small.
fn shrink(v: &Value) -> Value {
    match v {
        Value::String(s) if s.chars().count() > 240 => {
            let head: String = s.chars().take(160).collect();
            Value::String(format!("{head}…[truncated, {} chars in all]", s.chars().count()))
        }
        Value::Array(a) => Value::Array(a.iter().map(shrink).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| {
                    if k == "parameters" && v.is_object() {
                        (k.clone(), json!("…[tool parameter schema omitted]"))
                    } else {
                        (k.clone(), shrink(v))
                    }
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

async fn capture_requests(stand: &ResponsesStandIn, name: &str) {
    if !capturing() {
        return;
    }
    let reqs = stand.server.received_requests().await.unwrap_or_default();
    let all: Vec<Value> = reqs
        .iter()
        .map(|r| {
            let mut headers = serde_json::Map::new();
            for (k, v) in r.headers.iter() {
                let v = v.to_str().unwrap_or("");
                let v = if k.as_str() == "authorization" { "Bearer REDACTED".to_owned() } else { v.to_owned() };
                headers.insert(k.as_str().to_owned(), Value::String(v));
            }
            let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            json!({"method": r.method.to_string(), "path": r.url.path(), "headers": headers, "body": shrink(&body)})
        })
        .collect();
    std::fs::create_dir_all(fixture_dir()).unwrap();
    let text = serde_json::to_string_pretty(&all).unwrap().replace(GOOD_KEY, "REDACTED");
    std::fs::write(fixture_dir().join(format!("{name}.requests.json")), text + "\n").unwrap();
}

fn capture_run(run: &Run, name: &str) {
    if !capturing() {
        return;
    }
    std::fs::create_dir_all(fixture_dir()).unwrap();
    let d = fixture_dir();
    std::fs::write(d.join(format!("{name}.stdout.jsonl")), run.stdout.replace(GOOD_KEY, "REDACTED")).unwrap();
    let stderr = format!("{}# exit code: {:?}\n", run.stderr.replace(GOOD_KEY, "REDACTED"), run.code);
    std::fs::write(d.join(format!("{name}.stderr.txt")), stderr).unwrap();
}

// ---------------------------------------------------------------- tests

/// (a) + (b): a review prompt with a strict schema gets the structured answer; usage matches.
#[tokio::test(flavor = "multi_thread")]
async fn success_structured_answer_and_usage() {
    let Some(bin) = codex_bin() else { return };
    let stand = ResponsesStandIn::start(Behaviour::always(review_answer())).await;
    let w = World::new(&review_schema(), true);
    let run = run_codex(&bin, &w, &stand, Opts::default()).await;
    capture_run(&run, "success");
    capture_requests(&stand, "success").await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    let answer: Value = serde_json::from_str(&run.answer().expect("an agent_message")).unwrap();
    assert_eq!(answer, review_answer());
    assert_eq!(run.of_type("turn.completed").len(), 1);
    assert_usage(&run, stand.behaviour.usage, 1);
    assert_eq!(stand.behaviour.recorder.answers(), 1);
    assert_eq!(stand.behaviour.recorder.usage_sent(), stand.behaviour.usage);

    // How the schema reached the provider: verbatim, strict, under a fixed name.
    let received = stand.behaviour.recorder.received();
    assert_eq!(received.len(), 1, "one HTTP request, no probes: {received:#?}");
    assert_eq!(received[0].method, "POST");
    assert_eq!(received[0].path, "/v1/responses");
    let body = &received[0].body;
    assert_eq!(body["stream"], true);
    assert_eq!(body["text"]["format"]["type"], "json_schema");
    assert_eq!(body["text"]["format"]["strict"], true);
    assert_eq!(body["text"]["format"]["name"], "codex_output_schema");
    assert_eq!(body["text"]["format"]["schema"], review_schema());
}

/// (c) 429: with request/stream retries 0 one attempt; turn.failed, exit 1.
#[tokio::test(flavor = "multi_thread")]
async fn fault_429() {
    let Some(bin) = codex_bin() else { return };
    let b = Behaviour::always(review_answer()).with_faults([Fault::Status { code: 429, retry_after: Some(1) }]);
    let stand = ResponsesStandIn::start(b).await;
    let w = World::new(&review_schema(), true);
    let run = run_codex(&bin, &w, &stand, Opts::default()).await;
    capture_run(&run, "fault_429");
    assert_eq!(run.code, Some(1), "{run:#?}");
    // OpenAI's `x-request-id` header is appended when present.
    assert_eq!(
        run.failed_message(),
        "exceeded retry limit, last status: 429 Too Many Requests, request id: req_standin_000001"
    );
    assert_eq!(run.of_type("error")[0]["message"], run.failed_message());
    assert!(run.of_type("turn.completed").is_empty());
    assert_eq!(stand.behaviour.recorder.received().len(), 1);
    assert_eq!(stand.behaviour.recorder.answers(), 0);
}

/// (c) 500: Codex prints its own text for any 5xx "server_error", not the body's.
#[tokio::test(flavor = "multi_thread")]
async fn fault_500() {
    let Some(bin) = codex_bin() else { return };
    let b = Behaviour::always(review_answer()).with_faults([Fault::Status { code: 500, retry_after: None }]);
    let stand = ResponsesStandIn::start(b).await;
    let w = World::new(&review_schema(), true);
    let run = run_codex(&bin, &w, &stand, Opts::default()).await;
    capture_run(&run, "fault_500");
    assert_eq!(run.code, Some(1), "{run:#?}");
    // Note the typographic apostrophe: Codex's own wording.
    assert_eq!(
        run.failed_message(),
        "We\u{2019}re currently experiencing high demand, which may cause temporary errors."
    );
    assert_eq!(stand.behaviour.recorder.received().len(), 1);
}

/// (c) 503 then success with one retry of each kind: shows how many attempts Codex makes
/// for a 5xx ((1 + request_max_retries) * (1 + stream_max_retries)) and its
/// "Reconnecting... n/m" error events on a run that still succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn fault_503_retried_then_ok() {
    let Some(bin) = codex_bin() else { return };
    let faults = (0..3).map(|_| Fault::Status { code: 503, retry_after: None });
    let stand = ResponsesStandIn::start(Behaviour::always(review_answer()).with_faults(faults)).await;
    let w = World::new(&review_schema(), true);
    let run = run_codex(&bin, &w, &stand, Opts { retries: 1, ..Opts::default() }).await;
    capture_run(&run, "fault_503_retried");
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(stand.behaviour.recorder.received().len(), 4, "2 request attempts x 2 stream attempts");
    let errors = run.of_type("error");
    assert_eq!(errors.len(), 1, "{run:#?}");
    let m = errors[0]["message"].as_str().unwrap();
    assert!(m.starts_with("Reconnecting... 1/1 (unexpected status 503 Service Unavailable: "), "{m}");
    assert_eq!(serde_json::from_str::<Value>(&run.answer().unwrap()).unwrap(), review_answer());
    assert_usage(&run, stand.behaviour.usage, 1);
}

/// (c) 429 with one retry of each kind: Codex retries a 429 only at the stream level.
#[tokio::test(flavor = "multi_thread")]
async fn fault_429_attempts_with_retries() {
    let Some(bin) = codex_bin() else { return };
    let faults = (0..4).map(|_| Fault::Status { code: 429, retry_after: Some(0) });
    let stand = ResponsesStandIn::start(Behaviour::always(review_answer()).with_faults(faults)).await;
    let w = World::new(&review_schema(), true);
    let run = run_codex(&bin, &w, &stand, Opts { retries: 1, ..Opts::default() }).await;
    capture_run(&run, "fault_429_retries1");
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert_eq!(stand.behaviour.recorder.received().len(), 2, "1 + stream_max_retries attempts");
    assert_eq!(
        run.of_type("error")[0]["message"],
        "Reconnecting... 1/1 (exceeded retry limit, last status: 429 Too Many Requests, request id: req_standin_000001)"
    );
    assert_eq!(
        run.failed_message(),
        "exceeded retry limit, last status: 429 Too Many Requests, request id: req_standin_000002"
    );
}

/// (c) a rejected key: 401 from the stand-in; message carries status, OpenAI's text and URL.
#[tokio::test(flavor = "multi_thread")]
async fn fault_401_rejected_key() {
    let Some(bin) = codex_bin() else { return };
    let stand = ResponsesStandIn::start(Behaviour::always(review_answer())).await;
    let w = World::new(&review_schema(), true);
    let run = run_codex(&bin, &w, &stand, Opts { key: "sk-wrong-0000000000000000", ..Opts::default() }).await;
    capture_run(&run, "fault_401");
    assert_eq!(run.code, Some(1), "{run:#?}");
    let m = run.failed_message();
    assert!(m.starts_with("unexpected status 401 Unauthorized: Incorrect API key provided: sk-wrong*"), "{m}");
    assert!(m.contains(". You can find your API key at https://platform.openai.com/account/api-keys."), "{m}");
    assert!(m.ends_with(&format!(", url: {}/responses, request id: req_standin_000001", stand.base_url())), "{m}");
    assert_eq!(stand.behaviour.recorder.received().len(), 1);
    assert_eq!(stand.behaviour.recorder.answers(), 0);
}

/// No key at all: Codex fails before any HTTP request.
#[tokio::test(flavor = "multi_thread")]
async fn missing_key_fails_before_http() {
    let Some(bin) = codex_bin() else { return };
    let stand = ResponsesStandIn::start(Behaviour::always(review_answer())).await;
    let w = World::new(&review_schema(), true);
    let run = run_codex(&bin, &w, &stand, Opts { key: "", ..Opts::default() }).await;
    capture_run(&run, "missing_key");
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert_eq!(run.failed_message(), "Missing environment variable: `CODEX_API_KEY`.");
    assert!(stand.behaviour.recorder.received().is_empty());
}

/// (c) a schema OpenAI's strict mode refuses: Codex sends it verbatim; the 400 body comes
/// back as the turn.failed message (raw JSON text), with no retry.
#[tokio::test(flavor = "multi_thread")]
async fn fault_400_non_strict_schema() {
    let Some(bin) = codex_bin() else { return };
    let schema = json!({
        "type": "object",
        "properties": { "verdict": { "type": "string" }, "summary": { "type": "string" } },
        "required": ["verdict"],
        "additionalProperties": false
    });
    let stand = ResponsesStandIn::start(Behaviour::always(json!({"verdict": "clean"}))).await;
    let w = World::new(&schema, true);
    let run = run_codex(&bin, &w, &stand, Opts { retries: 1, ..Opts::default() }).await;
    capture_run(&run, "fault_400_schema");
    capture_requests(&stand, "fault_400_schema").await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert_eq!(stand.behaviour.recorder.received().len(), 1, "a 400 is not retried");
    let body: Value = serde_json::from_str(&run.failed_message()).expect("the raw 400 body");
    assert_eq!(body["error"]["code"], "invalid_json_schema");
    assert_eq!(body["error"]["param"], "text.format.schema");
    assert_eq!(
        body["error"]["message"],
        "Invalid schema for response_format 'codex_output_schema': In context=(), 'required' is required to be supplied and to be an array including every key in properties. Missing 'summary'."
    );
}

/// (c) outside a git repository without --skip-git-repo-check: exit 1, no request, no events.
#[tokio::test(flavor = "multi_thread")]
async fn outside_git_repo() {
    let Some(bin) = codex_bin() else { return };
    let stand = ResponsesStandIn::start(Behaviour::always(review_answer())).await;
    let w = World::new(&review_schema(), false);
    let run = run_codex(&bin, &w, &stand, Opts::default()).await;
    capture_run(&run, "no_git_repo");
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(run.stdout.is_empty(), "{run:#?}");
    assert!(run.stderr.contains("Not inside a trusted directory and --skip-git-repo-check was not specified."));
    assert!(stand.behaviour.recorder.received().is_empty());

    // With the flag it runs.
    let run = run_codex(&bin, &w, &stand, Opts { skip_git_check: true, ..Opts::default() }).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
}

/// (c) Malformed: a 200 stream cut before response.completed, with a non-JSON line.
#[tokio::test(flavor = "multi_thread")]
async fn fault_malformed_stream() {
    let Some(bin) = codex_bin() else { return };
    let stand = ResponsesStandIn::start(Behaviour::always(review_answer()).with_faults([Fault::Malformed])).await;
    let w = World::new(&review_schema(), true);
    let run = run_codex(&bin, &w, &stand, Opts::default()).await;
    capture_run(&run, "fault_malformed");
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert_eq!(run.failed_message(), "stream disconnected before completion: stream closed before response.completed");
    assert_eq!(stand.behaviour.recorder.received().len(), 1);
    assert_eq!(stand.behaviour.recorder.answers(), 0);
}

/// InvalidThen + `exec resume`: the first answer is prose (Codex does not check it against
/// the schema); the resumed turn gets the JSON; usage after resume is cumulative.
#[tokio::test(flavor = "multi_thread")]
async fn resume_repairs_and_usage_accumulates() {
    let Some(bin) = codex_bin() else { return };
    let b = Behaviour::new(Arc::new(|_| Answer::InvalidThen(review_answer())));
    let stand = ResponsesStandIn::start(b).await;
    let w = World::new(&review_schema(), true);
    let first = run_codex(&bin, &w, &stand, Opts::default()).await;
    capture_run(&first, "resume_1_first");
    assert_eq!(first.code, Some(0), "{first:#?}");
    assert_eq!(first.answer().as_deref(), Some(INVALID_PROSE));
    assert_usage(&first, stand.behaviour.usage, 1);

    let thread = first.thread_id();
    let second =
        run_codex(&bin, &w, &stand, Opts { resume: Some(&thread), prompt: REPAIR_PROMPT, ..Opts::default() }).await;
    capture_run(&second, "resume_2_repair");
    capture_requests(&stand, "resume").await;
    assert_eq!(second.code, Some(0), "{second:#?}");
    assert_eq!(second.thread_id(), thread, "resume keeps the thread id");
    assert_eq!(serde_json::from_str::<Value>(&second.answer().unwrap()).unwrap(), review_answer());
    // Cumulative over the thread: two responses' worth.
    assert_usage(&second, stand.behaviour.usage, 2);
    assert_eq!(stand.behaviour.recorder.answers(), 2);
    // The resumed request still carries the schema, and the whole conversation.
    let last = stand.behaviour.recorder.received().pop().unwrap();
    assert_eq!(last.body["text"]["format"]["schema"], review_schema());
    let texts: Vec<String> = last.body["input"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["text"].as_str().map(str::to_owned))
        .collect();
    for t in [REVIEW_PROMPT, INVALID_PROSE, REPAIR_PROMPT] {
        assert!(texts.iter().any(|x| x == t), "missing {t:?} in {texts:#?}");
    }
}

fn write_behaviour() -> Behaviour {
    Behaviour::new(Arc::new(|_| Answer::WriteFileThen {
        path: "notes/hello.txt".into(),
        contents: "hello from the stand-in\nsecond line\n".into(),
        answer: json!({"verdict": "clean", "summary": "wrote notes/hello.txt", "findings": []}),
    }))
}

/// WriteFileThen under `--sandbox workspace-write`: Codex runs the code-mode `exec` tool,
/// whose apply_patch creates the file; then the final answer. One turn, two responses.
#[tokio::test(flavor = "multi_thread")]
async fn write_file_workspace_write() {
    let Some(bin) = codex_bin() else { return };
    let stand = ResponsesStandIn::start(write_behaviour()).await;
    let w = World::new(&review_schema(), true);
    let run = run_codex(&bin, &w, &stand, Opts { sandbox: "workspace-write", ..Opts::default() }).await;
    capture_run(&run, "write_file");
    capture_requests(&stand, "write_file").await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    let written = std::fs::read_to_string(w.cwd.join("notes/hello.txt")).expect("file written");
    assert_eq!(written, "hello from the stand-in\nsecond line\n");
    let change = run
        .events
        .iter()
        .find(|e| e["type"] == "item.completed" && e["item"]["type"] == "file_change")
        .expect("a file_change item");
    assert_eq!(change["item"]["changes"][0]["kind"], "add");
    assert_eq!(change["item"]["status"], "completed");
    let answer: Value = serde_json::from_str(&run.answer().unwrap()).unwrap();
    assert_eq!(answer["summary"], "wrote notes/hello.txt");
    assert_eq!(stand.behaviour.recorder.answers(), 2);
    // One turn's usage sums its two model responses.
    assert_usage(&run, stand.behaviour.usage, 2);
    let second = &stand.behaviour.recorder.received()[1].body;
    let output = second["input"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "custom_tool_call_output")
        .expect("the tool output comes back");
    assert!(output.to_string().contains("Script completed"), "{output}");
}

/// The same under the default `--sandbox read-only`: the patch is refused, no file, and
/// Codex still finishes the turn (the refusal goes back to the model as tool output).
#[tokio::test(flavor = "multi_thread")]
async fn write_file_read_only_is_refused() {
    let Some(bin) = codex_bin() else { return };
    let stand = ResponsesStandIn::start(write_behaviour()).await;
    let w = World::new(&review_schema(), true);
    let run = run_codex(&bin, &w, &stand, Opts::default()).await;
    capture_run(&run, "write_file_read_only");
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(!w.cwd.join("notes/hello.txt").exists());
    let second = &stand.behaviour.recorder.received()[1].body;
    let out = second.to_string();
    assert!(out.contains("patch rejected: writing is blocked by read-only sandbox"), "{out}");
}

/// Hang: the stand-in never answers; Codex waits (no idle timeout applies before the
/// response headers), so only coord's timeout ends it.
#[tokio::test(flavor = "multi_thread")]
async fn hang_never_answers() {
    let Some(bin) = codex_bin() else { return };
    let stand = ResponsesStandIn::start(Behaviour::new(Arc::new(|_| Answer::Hang))).await;
    let w = World::new(&review_schema(), true);
    let run = run_codex(&bin, &w, &stand, Opts { kill_after: Duration::from_secs(4), ..Opts::default() }).await;
    assert!(run.killed, "{run:#?}");
    assert_eq!(stand.behaviour.recorder.received().len(), 1);
    assert_eq!(stand.behaviour.recorder.answers(), 0);
}

/// The stand-in's own rules, without the CLI: OpenAI's strict-schema refusals and auth.
#[tokio::test(flavor = "multi_thread")]
async fn stand_in_enforces_openai_rules() {
    let stand = ResponsesStandIn::start(Behaviour::always(json!({"ok": true}))).await;
    let url = format!("{}/responses", stand.base_url());
    let client = reqwest::Client::new();
    let post = |key: Option<&'static str>, schema: Value| {
        let mut r = client.post(&url).json(&json!({
            "model": "gpt-5",
            "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
            "stream": true,
            "text": {"format": {"type": "json_schema", "strict": true, "schema": schema, "name": "codex_output_schema"}}
        }));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send()
    };
    let refused = |detail: &str| format!("Invalid schema for response_format 'codex_output_schema': {detail}");
    let cases = [
        (json!({"type": "array", "items": {"type": "string"}}),
         refused("schema must be a JSON Schema of 'type: \"object\"', got 'type: \"array\"'.")),
        (json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}),
         refused("In context=(), 'additionalProperties' is required to be supplied and to be false.")),
        (json!({"type": "object", "additionalProperties": false, "required": ["xs"], "properties": {"xs": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "required": ["a"], "additionalProperties": false}}}}),
         refused("In context=('properties', 'xs', 'items'), 'required' is required to be supplied and to be an array including every key in properties. Missing 'b'.")),
        (json!({"type": "object", "additionalProperties": false, "required": ["a"], "properties": {"a": {"oneOf": [{"type": "string"}, {"type": "null"}]}}}),
         refused("In context=('properties', 'a'), 'oneOf' is not permitted.")),
        (json!({"type": "object", "additionalProperties": false, "required": ["a", "z"], "properties": {"a": {"type": "string"}}}),
         refused("In context=(), 'required' is required to be supplied and to be an array including every key in properties. Extra required key 'z' supplied.")),
    ];
    for (schema, message) in cases {
        let r = post(Some(GOOD_KEY), schema).await.unwrap();
        assert_eq!(r.status(), 400);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["message"], message);
        assert_eq!(body["error"]["code"], "invalid_json_schema");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], "text.format.schema");
    }
    // Tolerated: $schema, title, description, $defs/$ref, anyOf with null, nullable type lists.
    let ok = json!({
        "$schema": "http://json-schema.org/draft-07/schema#", "title": "R", "type": "object",
        "additionalProperties": false, "required": ["a", "b"],
        "$defs": {"B": {"type": "object", "properties": {"c": {"type": ["string", "null"]}}, "required": ["c"], "additionalProperties": false}},
        "properties": {"a": {"anyOf": [{"type": "string"}, {"type": "null"}]}, "b": {"$ref": "#/$defs/B"}}
    });
    let r = post(Some(GOOD_KEY), ok).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let text = r.text().await.unwrap();
    assert!(text.starts_with("event: response.created\ndata: "), "{text}");
    assert!(text.contains("event: response.completed\ndata: "), "{text}");

    let r = post(None, json!({})).await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().starts_with("You didn't provide an API key."));
    let r = post(Some("sk-proj-abcdefghijklmnop1234"), json!({})).await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "Incorrect API key provided: sk-proj-****************1234. You can find your API key at https://platform.openai.com/account/api-keys."
    );
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert_eq!(stand.behaviour.recorder.answers(), 1);
    assert_eq!(stand.behaviour.recorder.received().len(), 8);
}
