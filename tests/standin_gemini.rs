//! Conformance of the Gemini API stand-in with the released Gemini CLI (gemini-cli 0.61.0, pinned
//! in tests/agents): runs the real `gemini` binary against the stand-in with the command line and
//! environment coord should use, and pins what the CLI prints and how it exits on success and on
//! each fault.
//!
//! Run it in a loopback-only network namespace:
//!     unshare --net sh -c 'ip link set lo up && cargo test --test integration standin_gemini::'
//! With `GEMINI_WIRE_CAPTURE=1` it rewrites the captures in tests/fixtures/wire/gemini/.

use crate::standins;

use serde_json::{json, Value};
use standins::gemini::{write_cli_settings, GeminiOptions, GeminiStandIn, ROUTER_USAGE};
use standins::{Answer, Behaviour, Fault, UsageSent, GOOD_KEY};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The pinned CLI, or `None` (after a loud message) when `node` is not installed.
fn gemini_bin() -> Option<PathBuf> {
    let bin = repo().join("tests/agents/node_modules/.bin/gemini");
    if !bin.exists() {
        panic!("run `npm ci --prefix tests/agents` first");
    }
    let node = Command::new("node").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !node.is_ok_and(|s| s.success()) {
        eprintln!("\n!!!!! `node` is not on PATH: the Gemini CLI conformance test is SKIPPED !!!!!\n");
        return None;
    }
    Some(bin)
}

/// The schema coord puts into a review leaf's prompt.
fn review_schema() -> Value {
    json!({
        "type": "object",
        "required": ["verdict", "summary", "issues"],
        "additionalProperties": false,
        "properties": {
            "verdict": { "type": "string", "enum": ["approve", "request_changes"] },
            "summary": { "type": "string" },
            "issues": { "type": "array", "items": {
                "type": "object",
                "required": ["file", "line", "message"],
                "properties": { "file": { "type": "string" }, "line": { "type": "integer" }, "message": { "type": "string" } }
            }}
        }
    })
}

fn review_answer() -> Value {
    json!({
        "verdict": "request_changes",
        "summary": "One off-by-one in the pagination loop.",
        "issues": [{ "file": "src/page.rs", "line": 42, "message": "`<=` reads one item past the page." }]
    })
}

/// The prompt as coord's Gemini harness builds it (src/harness/gemini.rs `prompt_with_schema`).
fn review_prompt() -> String {
    format!(
        "Review the pull request diff below.\n\n--- a/src/page.rs\n+++ b/src/page.rs\n@@ -40,3 +40,3 @@\n-    for i in 0..n {{\n+    for i in 0..=n {{\n\n\nAnswer with a single JSON value matching this JSON Schema, and nothing else \
         (no prose, no code fences):\n{}",
        review_schema()
    )
}

/// coord's repair prompt for Gemini: a fresh call quoting the rejected answer.
fn repair_prompt(previous: &str) -> String {
    format!(
        "{}\n\nYour previous answer was:\n{previous}\n\nIt was rejected: the response holds no JSON\nAnswer again with the corrected JSON only.",
        review_prompt()
    )
}

struct Opts {
    key: String,
    /// Pass `--skip-trust` (headless runs refuse an untrusted folder otherwise).
    trust: bool,
    max_attempts: u32,
    timeout: Duration,
    args: Vec<String>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts { key: GOOD_KEY.into(), trust: true, max_attempts: 1, timeout: Duration::from_secs(60), args: vec![] }
    }
}

struct Run {
    /// `None`: killed at the timeout (or by a signal).
    code: Option<i32>,
    timed_out: bool,
    stdout: String,
    stderr: String,
    workdir: PathBuf,
    _dir: tempfile::TempDir,
}

impl Run {
    fn stdout_json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!("stdout is not one JSON object ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr)
        })
    }

    /// The last JSON object printed on stderr (the CLI's error object after an API failure).
    fn stderr_error_object(&self) -> Value {
        let start = self.stderr.rfind("\n{\n").map(|i| i + 1).or_else(|| self.stderr.starts_with("{\n").then_some(0));
        let start = start.unwrap_or_else(|| panic!("no JSON object on stderr:\n{}", self.stderr));
        serde_json::from_str(self.stderr[start..].trim())
            .unwrap_or_else(|e| panic!("bad JSON on stderr ({e}):\n{}", self.stderr))
    }
}

/// Runs the real CLI: `gemini -p <prompt> --output-format <format> [--skip-trust] <args>` in a
/// fresh workdir, with a fresh `GEMINI_CLI_HOME`, `HOME` and `TMPDIR` and nothing else from the
/// developer's environment.
async fn run_gemini(standin: &GeminiStandIn, bin: &Path, prompt: &str, format: &str, opts: Opts) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let (home, cli_home, tmp, work) =
        (dir.path().join("home"), dir.path().join("cli-home"), dir.path().join("tmp"), dir.path().join("work"));
    for d in [&home, &cli_home, &tmp, &work] {
        std::fs::create_dir_all(d).unwrap();
    }
    write_cli_settings(&cli_home, opts.max_attempts).unwrap();
    let mut cmd = Command::new(bin);
    cmd.args(["-p", prompt, "--output-format", format]);
    if opts.trust {
        cmd.arg("--skip-trust");
    }
    cmd.args(&opts.args)
        .current_dir(&work)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("TMPDIR", &tmp)
        .envs(standin.cli_env(&cli_home, &opts.key))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let timeout = opts.timeout;
    let (code, timed_out, stdout, stderr) = tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().expect("start gemini");
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let out_t = std::thread::spawn(move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut out, &mut s).ok();
            s
        });
        let err_t = std::thread::spawn(move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut err, &mut s).ok();
            s
        });
        let deadline = Instant::now() + timeout;
        let (status, timed_out) = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break (status, false);
            }
            if Instant::now() > deadline {
                // The CLI relaunches itself as a child node process: kill the whole group.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                break (child.wait().unwrap(), true);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // Whatever the group left behind.
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
        (status.code(), timed_out, out_t.join().unwrap(), err_t.join().unwrap())
    })
    .await
    .unwrap();
    Run { code, timed_out, stdout, stderr, workdir: work, _dir: dir }
}

/// With `GEMINI_WIRE_CAPTURE=1`, keeps what the CLI printed and (for runs that succeeded; a
/// failed run sent the same first request) the request bodies it sent.
fn capture(case: &str, run: &Run, standin: &GeminiStandIn) {
    if std::env::var_os("GEMINI_WIRE_CAPTURE").is_none() {
        return;
    }
    let dir = repo().join("tests/fixtures/wire/gemini");
    std::fs::create_dir_all(&dir).unwrap();
    let redact = |s: &str| s.replace(GOOD_KEY, "REDACTED").replace("sk-standin-WRONG-key", "REDACTED");
    std::fs::write(dir.join(format!("{case}.stdout")), redact(&run.stdout)).unwrap();
    if !run.stderr.is_empty() {
        std::fs::write(dir.join(format!("{case}.stderr")), redact(&run.stderr)).unwrap();
    }
    let requests = if run.code == Some(0) { standin.behaviour.recorder.received() } else { vec![] };
    for (i, r) in requests.iter().enumerate() {
        let body = json!({ "method": r.method, "path": r.path, "body": shorten(r.body.clone()) });
        let text = redact(&serde_json::to_string_pretty(&body).unwrap());
        std::fs::write(dir.join(format!("{case}.request-{}.json", i + 1)), text + "\n").unwrap();
    }
}

/// Long system prompts and tool descriptions cut down to what matters for a fixture.
fn shorten(mut body: Value) -> Value {
    fn cut(v: &mut Value, n: usize) {
        if let Some(s) = v.as_str() {
            if s.chars().count() > n {
                *v = json!(format!(
                    "{}… [truncated, {} chars]",
                    s.chars().take(n).collect::<String>(),
                    s.chars().count()
                ));
            }
        }
    }
    if let Some(parts) = body["systemInstruction"]["parts"].as_array_mut() {
        for p in parts {
            cut(&mut p["text"], 300);
        }
    }
    for tool in body["tools"].as_array_mut().into_iter().flatten() {
        for decl in tool["functionDeclarations"].as_array_mut().into_iter().flatten() {
            cut(&mut decl["description"], 120);
            if let Some(props) = decl["parametersJsonSchema"]["properties"].as_object_mut() {
                for p in props.values_mut() {
                    cut(&mut p["description"], 80);
                }
            }
        }
    }
    body
}

fn model_requests(standin: &GeminiStandIn) -> Vec<String> {
    standin.behaviour.recorder.received().iter().map(|r| r.path.clone()).collect()
}

fn assert_tokens(tokens: &Value, u: UsageSent) {
    assert_eq!(tokens["input"], u.input_tokens, "{tokens}");
    assert_eq!(tokens["cached"], u.cache_read_tokens, "{tokens}");
    assert_eq!(tokens["prompt"], u.input_tokens + u.cache_read_tokens, "{tokens}");
    assert_eq!(tokens["candidates"], u.output_tokens, "{tokens}");
    assert_eq!(tokens["total"], u.input_tokens + u.cache_read_tokens + u.output_tokens, "{tokens}");
}

fn review_behaviour() -> Behaviour {
    Behaviour::always(review_answer())
}

// ---------------------------------------------------------------------------------------------
// Success

/// No `--model`: a router call (`…flash-lite:generateContent`) picks the model, then the main
/// turn streams. `stats.models` lists the router model first; the main model carries the
/// candidates of the answer and `roles.main`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_answer_and_usage_with_the_router() {
    let Some(bin) = gemini_bin() else { return };
    let standin = GeminiStandIn::start(review_behaviour()).await;
    let run = run_gemini(&standin, &bin, &review_prompt(), "json", Opts::default()).await;
    capture("success", &run, &standin);
    assert_eq!(run.code, Some(0), "stderr:\n{}", run.stderr);
    let out = run.stdout_json();
    let response = out["response"].as_str().unwrap();
    assert_eq!(serde_json::from_str::<Value>(response).unwrap(), review_answer());
    assert!(out["session_id"].as_str().is_some_and(|s| s.len() == 36));

    let paths = model_requests(&standin);
    assert_eq!(paths.len(), 2, "{paths:?}");
    assert!(paths[0].ends_with("-flash-lite:generateContent"), "{paths:?}");
    assert!(paths[1].ends_with(":streamGenerateContent?alt=sse"), "{paths:?}");
    assert_eq!(standin.router.received().len(), 1);
    // The schema reaches the model verbatim, inside the prompt text.
    let main = &standin.behaviour.recorder.received()[1].body;
    assert!(main["contents"][0]["parts"].as_array().unwrap().iter().any(|p| p["text"] == review_prompt()));
    assert!(main["generationConfig"].get("responseJsonSchema").is_none());

    let models = out["stats"]["models"].as_object().unwrap();
    let names: Vec<&String> = models.keys().collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let (router, main_model) = (&models[names[0]], &models[names[1]]);
    assert!(names[0].ends_with("-flash-lite"), "{names:?}");
    assert!(paths[1].contains(names[1].as_str()), "{names:?} {paths:?}");
    assert!(router["roles"].get("utility_router").is_some(), "{router}");
    assert!(main_model["roles"].get("main").is_some(), "{main_model}");
    assert_tokens(&router["tokens"], ROUTER_USAGE);
    assert_tokens(&main_model["tokens"], standin.behaviour.usage);
    assert_eq!(main_model["api"]["totalRequests"], 1);

    // Everything the CLI totals is what the stand-in sent, router included.
    let mut total = UsageSent::default();
    for m in models.values() {
        let t = &m["tokens"];
        total.add(UsageSent {
            input_tokens: t["input"].as_u64().unwrap(),
            output_tokens: t["candidates"].as_u64().unwrap(),
            cache_read_tokens: t["cached"].as_u64().unwrap(),
        });
    }
    assert_eq!(total, standin.behaviour.recorder.usage_sent());
    assert_eq!(standin.router.usage_sent(), ROUTER_USAGE);
    assert_eq!(standin.behaviour.recorder.answers(), 2);
}

/// With `--model`, no router call; an answer in a ```json fence comes back fence and all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_answer_with_an_explicit_model() {
    let Some(bin) = gemini_bin() else { return };
    let standin = GeminiStandIn::start_with(review_behaviour(), GeminiOptions { fence_json: true }).await;
    let opts = Opts { args: vec!["--model".into(), "gemini-2.5-pro".into()], ..Opts::default() };
    let run = run_gemini(&standin, &bin, &review_prompt(), "json", opts).await;
    capture("success-model-fenced", &run, &standin);
    assert_eq!(run.code, Some(0), "stderr:\n{}", run.stderr);
    let out = run.stdout_json();
    let response = out["response"].as_str().unwrap();
    assert!(response.starts_with("```json\n") && response.ends_with("\n```"), "{response}");
    let inner = response.trim_start_matches("```json\n").trim_end_matches("\n```");
    assert_eq!(serde_json::from_str::<Value>(inner).unwrap(), review_answer());
    assert_eq!(
        model_requests(&standin),
        vec!["/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse".to_owned()]
    );
    let models: Vec<&String> = out["stats"]["models"].as_object().unwrap().keys().collect();
    assert_eq!(models, vec!["gemini-2.5-pro"]);
    assert_tokens(&out["stats"]["models"]["gemini-2.5-pro"]["tokens"], standin.behaviour.usage);
}

/// `--output-format stream-json`: `init` (model "auto"), `message`s, `result{status, stats}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_json_success() {
    let Some(bin) = gemini_bin() else { return };
    let standin = GeminiStandIn::start(review_behaviour()).await;
    let run = run_gemini(&standin, &bin, &review_prompt(), "stream-json", Opts::default()).await;
    capture("stream-json-success", &run, &standin);
    assert_eq!(run.code, Some(0), "stderr:\n{}", run.stderr);
    let events: Vec<Value> = run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events[0]["type"], "init");
    assert_eq!(events[0]["model"], "auto");
    let text: String = events
        .iter()
        .filter(|e| e["type"] == "message" && e["role"] == "assistant")
        .map(|e| e["content"].as_str().unwrap())
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), review_answer());
    let result = events.last().unwrap();
    assert_eq!(result["type"], "result");
    assert_eq!(result["status"], "success");
    let (u, r) = (standin.behaviour.usage, ROUTER_USAGE);
    let stats = &result["stats"];
    assert_eq!(stats["input"], u.input_tokens + r.input_tokens);
    assert_eq!(stats["cached"], u.cache_read_tokens + r.cache_read_tokens);
    assert_eq!(stats["input_tokens"], u.input_tokens + u.cache_read_tokens + r.input_tokens + r.cache_read_tokens);
    assert_eq!(stats["output_tokens"], u.output_tokens + r.output_tokens);
    assert_eq!(stats["models"].as_object().unwrap().len(), 2);
}

/// An answer without JSON is passed through as `response`; coord's repair (a fresh call whose
/// prompt quotes it) gets the JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_answer_then_repair() {
    let Some(bin) = gemini_bin() else { return };
    let answer = review_answer();
    let standin = GeminiStandIn::start(Behaviour::new(Arc::new(move |_| Answer::InvalidThen(answer.clone())))).await;
    let opts = || Opts { args: vec!["--model".into(), "gemini-2.5-flash".into()], ..Opts::default() };
    let first = run_gemini(&standin, &bin, &review_prompt(), "json", opts()).await;
    assert_eq!(first.code, Some(0), "stderr:\n{}", first.stderr);
    let prose = first.stdout_json()["response"].as_str().unwrap().to_owned();
    assert!(!prose.contains('{'), "{prose}");
    let second = run_gemini(&standin, &bin, &repair_prompt(&prose), "json", opts()).await;
    assert_eq!(second.code, Some(0), "stderr:\n{}", second.stderr);
    let response = second.stdout_json()["response"].as_str().unwrap().to_owned();
    assert_eq!(serde_json::from_str::<Value>(&response).unwrap(), review_answer());
}

fn write_behaviour() -> Behaviour {
    Behaviour::new(Arc::new(|_| Answer::WriteFileThen {
        path: "notes/hello.txt".into(),
        contents: "hello from the stand-in\n".into(),
        answer: json!({ "verdict": "approve", "summary": "wrote notes/hello.txt", "issues": [] }),
    }))
}

/// `--approval-mode auto_edit` offers `write_file` and runs it headless.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_file_with_auto_edit() {
    let Some(bin) = gemini_bin() else { return };
    let standin = GeminiStandIn::start(write_behaviour()).await;
    let opts = Opts {
        args: vec!["--model".into(), "gemini-2.5-pro".into(), "--approval-mode".into(), "auto_edit".into()],
        ..Opts::default()
    };
    let run = run_gemini(&standin, &bin, "Create notes/hello.txt, then report.", "json", opts).await;
    capture("write-file-auto-edit", &run, &standin);
    assert_eq!(run.code, Some(0), "stderr:\n{}", run.stderr);
    assert_eq!(std::fs::read_to_string(run.workdir.join("notes/hello.txt")).unwrap(), "hello from the stand-in\n");
    let out = run.stdout_json();
    assert_eq!(
        serde_json::from_str::<Value>(out["response"].as_str().unwrap()).unwrap()["summary"],
        "wrote notes/hello.txt"
    );
    assert_eq!(out["stats"]["tools"]["byName"]["write_file"]["success"], 1);
    let received = standin.behaviour.recorder.received();
    assert_eq!(received.len(), 2);
    let tools: Vec<&str> = received[0].body["tools"][0]["functionDeclarations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert!(
        tools.contains(&"write_file") && tools.contains(&"replace") && !tools.contains(&"run_shell_command"),
        "{tools:?}"
    );
    let last = received[1].body["contents"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["parts"][0]["functionResponse"]["name"], "write_file", "{last}");
    // Usage over the two model calls of the one turn is summed per model.
    let tokens = &out["stats"]["models"]["gemini-2.5-pro"]["tokens"];
    assert_eq!(tokens["candidates"], 2 * standin.behaviour.usage.output_tokens);
}

/// Without an approval mode, headless runs do not even offer `write_file`: a call to it fails
/// with "Tool not found", the model answers anyway, the file is not written and the exit is 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_file_without_approval_mode_is_refused() {
    let Some(bin) = gemini_bin() else { return };
    let standin = GeminiStandIn::start(write_behaviour()).await;
    let opts = Opts { args: vec!["--model".into(), "gemini-2.5-pro".into()], ..Opts::default() };
    let run = run_gemini(&standin, &bin, "Create notes/hello.txt, then report.", "json", opts).await;
    capture("write-file-default-mode", &run, &standin);
    assert_eq!(run.code, Some(0), "stderr:\n{}", run.stderr);
    assert!(!run.workdir.join("notes/hello.txt").exists());
    let out = run.stdout_json();
    assert_eq!(out["stats"]["tools"]["totalFail"], 1);
    assert!(run.stderr.contains("Tool \"write_file\" not found"), "{}", run.stderr);
    let received = standin.behaviour.recorder.received();
    let tools = received[0].body["tools"][0]["functionDeclarations"].to_string();
    assert!(!tools.contains("\"write_file\""));
}

// ---------------------------------------------------------------------------------------------
// Faults. On an API error `--output-format json` prints NOTHING on stdout: the error object
// `{session_id, error{type, message, code}}` is the last thing on stderr, and the exit status is
// the HTTP status truncated to a byte.

async fn fault_run(fault: Fault, case: &str) -> Option<(Run, GeminiStandIn)> {
    let bin = gemini_bin()?;
    let standin = GeminiStandIn::start(review_behaviour().with_faults([fault])).await;
    let opts = Opts { args: vec!["--model".into(), "gemini-2.5-pro".into()], ..Opts::default() };
    let run = run_gemini(&standin, &bin, &review_prompt(), "json", opts).await;
    capture(case, &run, &standin);
    assert_eq!(run.stdout, "", "stderr:\n{}", run.stderr);
    Some((run, standin))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_429() {
    let Some((run, standin)) = fault_run(Fault::Status { code: 429, retry_after: None }, "429").await else { return };
    assert_eq!(run.code, Some(429 & 0xff)); // 173
    let err = run.stderr_error_object();
    assert_eq!(err["error"]["code"], 429);
    assert_eq!(err["error"]["type"], "Error");
    assert_eq!(err["error"]["message"], "Resource has been exhausted (e.g. check quota).");
    assert!(run.stderr.contains("RetryableQuotaError"));
    // general.maxAttempts = 1: one HTTP attempt, no retry.
    assert_eq!(model_requests(&standin).len(), 1);
    assert_eq!(standin.behaviour.recorder.answers(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_json_429() {
    let Some(bin) = gemini_bin() else { return };
    let standin =
        GeminiStandIn::start(review_behaviour().with_faults([Fault::Status { code: 429, retry_after: None }])).await;
    let opts = Opts { args: vec!["--model".into(), "gemini-2.5-pro".into()], ..Opts::default() };
    let run = run_gemini(&standin, &bin, &review_prompt(), "stream-json", opts).await;
    capture("stream-json-429", &run, &standin);
    assert_eq!(run.code, Some(173));
    let result: Value = serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(result["type"], "result");
    assert_eq!(result["status"], "error");
    // No HTTP status in the event: only the message text (and the exit code) tell it apart.
    assert_eq!(result["error"]["type"], "unknown");
    assert!(result["error"]["message"].as_str().unwrap().starts_with("[API Error: Resource has been exhausted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_error_500() {
    let Some((run, standin)) = fault_run(Fault::Status { code: 500, retry_after: None }, "500").await else { return };
    assert_eq!(run.code, Some(500 & 0xff)); // 244
    let err = run.stderr_error_object();
    assert_eq!(err["error"]["code"], 500);
    // The message is Google's whole error body, as a string.
    let body: Value = serde_json::from_str(err["error"]["message"].as_str().unwrap()).unwrap();
    assert_eq!(body["error"]["status"], "INTERNAL");
    assert_eq!(model_requests(&standin).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_key() {
    let Some(bin) = gemini_bin() else { return };
    let standin = GeminiStandIn::start(review_behaviour()).await;
    let opts = Opts {
        key: "sk-standin-WRONG-key".into(),
        args: vec!["--model".into(), "gemini-2.5-pro".into()],
        ..Opts::default()
    };
    let run = run_gemini(&standin, &bin, &review_prompt(), "json", opts).await;
    capture("bad-key", &run, &standin);
    assert_eq!(run.stdout, "");
    assert_eq!(run.code, Some(400 & 0xff)); // 144
    let err = run.stderr_error_object();
    assert_eq!(err["error"]["code"], 400);
    let body: Value = serde_json::from_str(err["error"]["message"].as_str().unwrap()).unwrap();
    assert_eq!(body["error"]["details"][0]["reason"], "API_KEY_INVALID");
    assert_eq!(model_requests(&standin).len(), 1, "a 400 is not retried");
}

/// No key at all: the CLI refuses before any request, exit 41, the error object on stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_key() {
    let Some(bin) = gemini_bin() else { return };
    let standin = GeminiStandIn::start(review_behaviour()).await;
    let opts = Opts { key: String::new(), ..Opts::default() };
    let run = run_gemini(&standin, &bin, &review_prompt(), "json", opts).await;
    capture("missing-key", &run, &standin);
    assert_eq!(run.code, Some(41));
    assert_eq!(run.stdout, "");
    let out = run.stderr_error_object();
    assert_eq!(out["error"]["code"], 41);
    assert!(out["error"]["message"].as_str().unwrap().contains("GEMINI_API_KEY"), "{out}");
    assert!(model_requests(&standin).is_empty());
}

const UNTRUSTED: &str = "\u{1b}[31mGemini CLI is not running in a trusted directory. To proceed, either use `--skip-trust`, set the `GEMINI_CLI_TRUST_WORKSPACE=true` environment variable, or trust this directory in interactive mode. For more details, see https://geminicli.com/docs/cli/trusted-folders/#headless-and-automated-environments\u{1b}[0m\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_folder() {
    let Some(bin) = gemini_bin() else { return };
    let standin = GeminiStandIn::start(review_behaviour()).await;
    let run = run_gemini(&standin, &bin, &review_prompt(), "json", Opts { trust: false, ..Opts::default() }).await;
    capture("untrusted", &run, &standin);
    assert_eq!(run.code, Some(55));
    assert_eq!(run.stdout, "");
    assert_eq!(run.stderr, UNTRUSTED);
    assert!(model_requests(&standin).is_empty());
}

/// A stream cut short with a line that is not JSON: a parse error, not retried, exit 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_stream() {
    let Some((run, standin)) = fault_run(Fault::Malformed, "malformed").await else { return };
    assert_eq!(run.code, Some(1));
    let err = run.stderr_error_object();
    assert_eq!(err["error"]["code"], 1);
    assert!(run.stderr.contains("SyntaxError"), "{}", run.stderr);
    assert_eq!(model_requests(&standin).len(), 1);
}

/// A model that never answers: the CLI waits (no request timeout of its own within this
/// window) and must be killed. The window leaves a loaded machine time to start Node and the
/// CLI before its one request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_needs_a_kill() {
    let Some(bin) = gemini_bin() else { return };
    let standin = GeminiStandIn::start(Behaviour::new(Arc::new(|_| Answer::Hang))).await;
    let opts = Opts {
        args: vec!["--model".into(), "gemini-2.5-pro".into()],
        timeout: Duration::from_secs(15),
        ..Opts::default()
    };
    let run = run_gemini(&standin, &bin, &review_prompt(), "json", opts).await;
    assert!(run.timed_out, "exited {:?}\nstdout:\n{}\nstderr:\n{}", run.code, run.stdout, run.stderr);
    assert_eq!(run.stdout, "");
    assert_eq!(model_requests(&standin).len(), 1);
}

/// With `general.maxAttempts = 2` a transient error is retried by the CLI itself, after at least
/// its 5 s initial backoff (a `RetryInfo.retryDelay` can only lengthen it; the `retry-after`
/// header is ignored), and the run succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_503_is_retried_by_the_cli() {
    let Some(bin) = gemini_bin() else { return };
    let standin =
        GeminiStandIn::start(review_behaviour().with_faults([Fault::Status { code: 503, retry_after: Some(1) }])).await;
    let opts = Opts { max_attempts: 2, args: vec!["--model".into(), "gemini-2.5-pro".into()], ..Opts::default() };
    let started = Instant::now();
    let run = run_gemini(&standin, &bin, &review_prompt(), "json", opts).await;
    capture("503-then-ok", &run, &standin);
    assert_eq!(run.code, Some(0), "stderr:\n{}", run.stderr);
    assert!(started.elapsed() >= Duration::from_secs(5));
    assert_eq!(model_requests(&standin).len(), 2);
    let out = run.stdout_json();
    assert_eq!(serde_json::from_str::<Value>(out["response"].as_str().unwrap()).unwrap(), review_answer());
    let api = &out["stats"]["models"]["gemini-2.5-pro"]["api"];
    assert_eq!((api["totalRequests"].as_u64(), api["totalErrors"].as_u64()), (Some(2), Some(1)), "{api}");
    assert!(run.stderr.contains("Attempt 1 failed: The model is overloaded."), "{}", run.stderr);
}

// ---------------------------------------------------------------------------------------------
// The stand-in's own rules, checked over HTTP without the CLI.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stand_in_enforces_the_api_rules() {
    let standin = GeminiStandIn::start(
        review_behaviour().with_faults([Fault::Slow(Duration::from_millis(300)), Fault::Malformed]),
    )
    .await;
    let url = format!("{}/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse", standin.base_url());
    let http = reqwest::Client::new();
    let post = |key: Option<&str>, body: Value| {
        let mut r = http.post(&url).json(&body);
        if let Some(k) = key {
            r = r.header("x-goog-api-key", k);
        }
        async move {
            let resp = r.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap())
        }
    };
    let ok_body = json!({ "contents": [{ "role": "user", "parts": [{ "text": "hi" }] }] });

    let (status, text) = post(None, ok_body.clone()).await;
    assert_eq!(
        (status, serde_json::from_str::<Value>(&text).unwrap()["error"]["status"].clone()),
        (403, json!("PERMISSION_DENIED"))
    );
    let (status, text) = post(Some("nope"), ok_body.clone()).await;
    assert_eq!(status, 400);
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["error"]["details"][0]["reason"], "API_KEY_INVALID");
    for bad in [
        json!({ "contents": [] }),
        json!({ "contents": [{ "role": "system", "parts": [{ "text": "hi" }] }] }),
        json!({ "contents": [{ "role": "user", "parts": [] }] }),
        json!({ "contents": [{ "role": "user", "parts": [{ "functionResponse": { "name": "f", "response": {} } }] }] }),
        json!({ "contents": ok_body["contents"], "tools": [{ "functionDeclarations": [{ "name": "1bad name" }] }] }),
    ] {
        let (status, text) = post(Some(GOOD_KEY), bad.clone()).await;
        assert_eq!(status, 400, "{bad} -> {text}");
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["error"]["status"], "INVALID_ARGUMENT");
    }
    assert_eq!(standin.behaviour.recorder.answers(), 0, "rejected requests take no fault and send no usage");

    // Slow: a normal stream, late.
    let started = Instant::now();
    let (status, text) = post(Some(GOOD_KEY), ok_body.clone()).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(status, 200);
    let events: Vec<Value> = text
        .split("\r\n\r\n")
        .filter(|e| !e.is_empty())
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    let last = events.last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(last["usageMetadata"]["cachedContentTokenCount"], standin.behaviour.usage.cache_read_tokens);
    let text: String =
        events.iter().map(|e| e["candidates"][0]["content"]["parts"][0]["text"].as_str().unwrap()).collect();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), review_answer());

    // Malformed: a 200 stream cut short, holding a line that is not JSON.
    let (status, text) = post(Some(GOOD_KEY), ok_body.clone()).await;
    assert_eq!(status, 200);
    assert!(text.lines().any(|l| !l.is_empty() && !l.starts_with("data: ")), "{text}");
    assert_eq!(standin.behaviour.recorder.answers(), 1);
}
