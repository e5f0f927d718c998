//! The released agent CLIs as coord's leaves, end to end: `coord run` drives the real
//! `claude`, `codex` and `gemini` (pinned in tests/agents, installed by `npm ci --prefix
//! tests/agents`) against local stand-ins of their model APIs (tests/standins). Covers
//! groom-prs's reviews and fixes on each CLI (routing, structured output, the repair turn,
//! usage and cost against what the stand-in sent, files a coding leaf wrote), the failure
//! classes (rate limits and server errors retried, a rejected key and a missing binary not),
//! and `coord doctor`.
//!
//! When `node` is missing the tests that need it say so loudly and pass; when the CLIs are
//! not installed they fail with the command that installs them.

use crate::standins;
use crate::support;

use serde_json::{json, Value};
use standins::anthropic::AnthropicStandIn;
use standins::gemini::{write_cli_settings, GeminiStandIn};
use standins::openai_responses::ResponsesStandIn;
use standins::{Answer, Answerer, Behaviour, Fault, UsageSent, GOOD_KEY};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use support::{Outcome, TestProject};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Cli {
    Claude,
    Codex,
    Gemini,
}

impl Cli {
    fn harness(self) -> &'static str {
        match self {
            Cli::Claude => "claude-code",
            Cli::Codex => "codex",
            Cli::Gemini => "gemini",
        }
    }

    fn program(self) -> &'static str {
        match self {
            Cli::Claude => "claude",
            Cli::Codex => "codex",
            Cli::Gemini => "gemini",
        }
    }

    fn key_variable(self) -> &'static str {
        match self {
            Cli::Claude => "ANTHROPIC_API_KEY",
            Cli::Codex => "OPENAI_API_KEY",
            Cli::Gemini => "GEMINI_API_KEY",
        }
    }

    /// Dollars per million input, output and cached input tokens of the model each run
    /// uses: Claude Code prices the workflow's `claude-sonnet-4-5` itself; coord prices
    /// Codex's `gpt-6.2-sol` from the test's `[harness.codex.rates]` and Gemini's
    /// `gemini-2.5-pro` from its list prices.
    fn rates(self) -> (f64, f64, f64) {
        match self {
            Cli::Claude => (3.0, 15.0, 0.3),
            Cli::Codex => (2.0, 16.0, 0.2),
            Cli::Gemini => (1.25, 10.0, 0.125),
        }
    }

    /// The installed CLI, or `None` (after a loud message) when Node.js is not on the
    /// machine. A missing install is a failure, never a skip.
    fn binary(self) -> Option<PathBuf> {
        let bin = support::repo_root().join("tests/agents/node_modules/.bin").join(self.program());
        if std::process::Command::new("node").arg("--version").output().is_err() {
            eprintln!(
                "\n!!!!! SKIPPED: Node.js is not installed, so the real {} cannot run. Install Node and run `npm ci --prefix tests/agents`.\n",
                self.program()
            );
            return None;
        }
        assert!(bin.exists(), "{} is not installed: run `npm ci --prefix tests/agents` first", bin.display());
        Some(bin)
    }
}

/// A stand-in of the model API one CLI calls.
enum StandIn {
    Anthropic(AnthropicStandIn),
    Responses(ResponsesStandIn),
    Gemini(GeminiStandIn),
}

impl StandIn {
    async fn start(cli: Cli, behaviour: Behaviour) -> Self {
        match cli {
            Cli::Claude => StandIn::Anthropic(AnthropicStandIn::start(behaviour).await),
            Cli::Codex => StandIn::Responses(ResponsesStandIn::start(behaviour).await),
            Cli::Gemini => StandIn::Gemini(GeminiStandIn::start(behaviour).await),
        }
    }

    fn base_url(&self) -> String {
        match self {
            StandIn::Anthropic(s) => s.base_url(),
            StandIn::Responses(s) => s.base_url(),
            StandIn::Gemini(s) => s.base_url(),
        }
    }

    fn behaviour(&self) -> &Behaviour {
        match self {
            StandIn::Anthropic(s) => &s.behaviour,
            StandIn::Responses(s) => &s.behaviour,
            StandIn::Gemini(s) => &s.behaviour,
        }
    }
}

/// Where the CLIs keep their state in a test: never the developer's home.
struct AgentHome {
    dir: tempfile::TempDir,
}

impl AgentHome {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["claude", "codex", "gemini", "tmp"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        write_cli_settings(&dir.path().join("gemini"), 1).unwrap();
        AgentHome { dir }
    }

    fn path(&self, sub: &str) -> String {
        self.dir.path().join(sub).display().to_string()
    }
}

/// The `[harness.*]` table that points the real CLI at the stand-in, with the CLI's own
/// retries off (coord's retry policy is what is tested) and nothing sent anywhere else.
fn harness_toml(cli: Cli, binary: &Path, base_url: &str, home: &AgentHome) -> String {
    let head = format!(
        "[harness.{}]\nbinary = \"{}\"\nbase_url = \"{base_url}\"\nretry_backoff = \"50ms\"\n",
        cli.harness(),
        binary.display()
    );
    let rest = match cli {
        // The allowedTools line docs/harnesses.md shows.
        Cli::Claude => format!(
            "args = [\"--allowedTools\", \"Bash(git:*),Read,Edit,Write\"]\n[harness.claude-code.env]\nCLAUDE_CONFIG_DIR = \"{}\"\nCLAUDE_CODE_MAX_RETRIES = \"0\"\nCLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = \"1\"\nDISABLE_TELEMETRY = \"1\"\nDISABLE_ERROR_REPORTING = \"1\"\n",
            home.path("claude")
        ),
        Cli::Codex => format!(
            "model = \"gpt-6.2-sol\"\nargs = [\"-c\", \"model_providers.coord.request_max_retries=0\", \"-c\", \"model_providers.coord.stream_max_retries=0\", \"-c\", \"analytics.enabled=false\", \"-c\", \"feedback.enabled=false\", \"-c\", \"otel.exporter=none\"]\n[harness.codex.env]\nCODEX_HOME = \"{}\"\n[harness.codex.rates.\"gpt-6.2-sol\"]\ninput = 2.0\noutput = 16.0\ncache_read = 0.2\n",
            home.path("codex")
        ),
        Cli::Gemini => format!(
            "model = \"gemini-2.5-pro\"\n[harness.gemini.env]\nGEMINI_CLI_HOME = \"{}\"\nGEMINI_TELEMETRY_ENABLED = \"false\"\nTMPDIR = \"{}\"\n",
            home.path("gemini"),
            home.path("tmp")
        ),
    };
    format!("{head}{rest}")
}

/// `coord` in `p` with the CLI's key and a throwaway HOME.
fn coord(p: &TestProject, cli: Cli, home: &AgentHome, key: &str) -> support::CoordCommand {
    p.coord().env("HOME", home.path("tmp")).env(cli.key_variable(), key)
}

async fn run_async(cmd: support::CoordCommand) -> Outcome {
    tokio::task::spawn_blocking(move || cmd.run()).await.unwrap()
}

fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git").current_dir(dir).args(args).output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

// ---- groom-prs on each real CLI ------------------------------------------------------------

/// One groom-prs run on the real CLIs at a time: three of them at once (up to 12 agent
/// processes, the Gemini CLI's each a Node.js start) starve a 2-core machine until reviews
/// that should answer in seconds outlive their timeout.
static ONE_GROOM_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn groom_turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_GROOM_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The demo's review verdicts: #14 is minor until its fix pass ran, #16 stays minor, #17
/// never answers (its review times out, as in the demo), and #12's first answer breaks the
/// schema so that coord's repair turn is needed. A fix writes a file through the CLI's own
/// tool, then answers.
fn demo_answerer() -> Answerer {
    let fixed: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let minor = |file: &str, msg: &str| json!({"verdict": "minor", "summary": "Small fixes.", "findings": [{"severity": "minor", "file": file, "message": msg}]});
    let clean = |summary: &str| json!({"verdict": "clean", "summary": summary, "findings": []});
    Arc::new(move |prompt: &str| {
        let number = |after: &str| -> Option<u64> {
            let rest = prompt.split(after).nth(1)?;
            rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
        };
        if let Some(pr) = number("Pull request #") {
            let pass = number("fix pass ").unwrap_or(0);
            fixed.lock().unwrap().insert(pr);
            return Answer::WriteFileThen {
                path: format!("fix-{pr}-{pass}.txt"),
                contents: format!("fix pass {pass} of PR #{pr}\n"),
                answer: json!({"status": "fixed", "summary": "Applied the review findings."}),
            };
        }
        match number("pull request #") {
            Some(12) => Answer::InvalidThen(clean("Retry with backoff, well tested.")),
            Some(13) => Answer::Json(clean("Routine bump.")),
            Some(14) if fixed.lock().unwrap().contains(&14) => Answer::Json(clean("Cache key fixed.")),
            Some(14) => Answer::Json(minor("src/config.rs", "Include the environment in the cache key")),
            Some(15) => Answer::Json(json!({"verdict": "blocking", "summary": "Session fixation risk.", "findings": [
                {"severity": "blocking", "file": "src/auth.rs", "line": 40, "message": "Session id is reused across logins"}]})),
            Some(16) => Answer::Json(minor("src/log.rs", "Use debug! for per-request lines")),
            _ => Answer::Hang,
        }
    })
}

fn sum_usage(leaves: &[Value]) -> UsageSent {
    let n = |l: &Value, k: &str| l["usage"][k].as_u64().unwrap_or(0);
    leaves.iter().fold(UsageSent::default(), |mut u, l| {
        u.add(UsageSent {
            input_tokens: n(l, "input_tokens"),
            output_tokens: n(l, "output_tokens"),
            cache_read_tokens: n(l, "cache_read_tokens"),
        });
        u
    })
}

/// A git repository holding the shipped coordinators and workflows, with `cli`'s harness
/// pointed at `standin`, the reviews' timeout short (#17's hangs), and worktrees kept.
fn groom_project(cli: Cli, binary: &Path, standin: &StandIn, home: &AgentHome) -> TestProject {
    let p = TestProject::with_repo_files();
    p.write(".gitignore", ".coord/\n");
    p.write(
        "coord.toml",
        &format!(
            "{}\n[workflow.mr-review]\ntimeout = \"40s\"\n\n[workflow.coding-task]\ntimeout = \"90s\"\n\n[worktrees]\nkeep = true\n",
            harness_toml(cli, binary, &standin.base_url(), home)
        ),
    );
    git(p.path(), &["init", "-q"]);
    git(p.path(), &["add", "."]);
    git(p.path(), &["-c", "user.name=t", "-c", "user.email=t@test", "commit", "-qm", "root"]);
    p
}

/// Every review and fix of groom-prs on `cli`.
fn leaves_on(cli: Cli) -> Vec<String> {
    vec![
        "--leaf".to_owned(),
        format!("mr-review={}", cli.harness()),
        "--leaf".to_owned(),
        format!("coding-task={}", cli.harness()),
    ]
}

async fn groom_prs_on(cli: Cli) {
    let Some(binary) = cli.binary() else { return };
    let _turn = groom_turn();
    let standin = StandIn::start(cli, Behaviour::new(demo_answerer())).await;
    let home = AgentHome::new();
    let p = groom_project(cli, &binary, &standin, &home);
    let demo = ["run", "coordinators/groom-prs.rhai", "--demo", "--json"];
    let mock = run_async(coord(&p, cli, &home, GOOD_KEY).args(demo)).await;
    let real =
        run_async(coord(&p, cli, &home, GOOD_KEY).args(demo).args(leaves_on(cli)).args(["--max-parallel", "4"])).await;
    mock.code(0);
    real.code(0);
    let (mock, real) = (mock.json(), real.json());
    let leaves = real["leaves"].as_array().unwrap();
    assert_eq!(
        real["effects"], mock["effects"],
        "{cli:?}: the real CLI routes like the demo's mock leaves: {leaves:#?}"
    );
    assert_eq!(real["result"], mock["result"], "{cli:?}");

    let reviews: Vec<&Value> = leaves.iter().filter(|l| l["workflow"] == "mr-review").collect();
    let fixes: Vec<&Value> = leaves.iter().filter(|l| l["workflow"] == "coding-task").collect();
    assert_eq!((reviews.len(), fixes.len()), (10, 4), "{cli:?}: 6 reviews and 4 re-reviews, 4 fix passes");
    for leaf in leaves {
        assert_eq!(leaf["harness"], cli.harness(), "{leaf}");
        let timed_out = leaf["status"] == "timeout";
        assert!(leaf["status"] == "ok" || timed_out, "{cli:?}: every leaf but #17's review is ok: {leaf}");
    }
    assert_eq!(leaves.iter().filter(|l| l["status"] == "timeout").count(), 1, "{cli:?}: #17's review hangs");
    let repaired: Vec<&&Value> = reviews.iter().filter(|l| l["attempts"] == 2).collect();
    assert_eq!(repaired.len(), 1, "{cli:?}: #12's review needed the one repair turn: {reviews:?}");

    // The journal keeps each leaf's CLI version and the class of any failure.
    let run_dir = p.path().join(real["run_dir"].as_str().unwrap());
    let journal = std::fs::read_to_string(run_dir.join("journal.jsonl")).unwrap();
    let sessions: Vec<Value> = journal
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["type"] == "session")
        .map(|e| e["result"].clone())
        .collect();
    let versions: HashSet<&str> = sessions.iter().filter_map(|s| s["agent_version"].as_str()).collect();
    assert_eq!(versions.len(), 1, "{cli:?}: one CLI version on every session: {versions:?}");
    assert_eq!(sessions.iter().filter(|s| s["agent_version"].is_string()).count(), 14, "{cli:?}: every session");

    // Every token the stand-in reported is counted once; the cost is priced from them.
    let counted = sum_usage(leaves);
    let sent = standin.behaviour().recorder.usage_sent();
    assert_eq!(counted, sent, "{cli:?}: usage as the provider reported it");
    let (input, output, cached) = cli.rates();
    let expected_cost = (sent.input_tokens as f64 * input
        + sent.output_tokens as f64 * output
        + sent.cache_read_tokens as f64 * cached)
        / 1e6;
    let cost = real["usage"]["cost_usd"].as_f64().unwrap();
    assert!((cost - expected_cost).abs() < 1e-9, "{cli:?}: cost {cost} != {expected_cost}");

    // Each fix pass wrote its file through the CLI's own tool, in the leaf's own worktree.
    for fix in &fixes {
        let id = fix["id"].as_str().unwrap();
        let written: Vec<String> = std::fs::read_dir(run_dir.join("worktrees").join(id))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("fix-"))
            .collect();
        let transcript = sessions
            .iter()
            .find(|s| s["id"] == id)
            .and_then(|s| s["transcript"].as_str())
            .and_then(|hash| std::fs::read_to_string(run_dir.join("blobs").join(hash)).ok())
            .unwrap_or_default();
        assert_eq!(written.len(), 1, "{cli:?}: fix {id} wrote its file: {written:?}\n{transcript}");
    }
    assert!(!p.path().join("fix-14-1.txt").exists(), "the project's own checkout is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groom_prs_runs_on_the_real_claude_code() {
    groom_prs_on(Cli::Claude).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groom_prs_runs_on_the_real_codex() {
    groom_prs_on(Cli::Codex).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groom_prs_runs_on_the_real_gemini_cli() {
    groom_prs_on(Cli::Gemini).await;
}

// ---- failures, one leaf at a time -----------------------------------------------------------

const REVIEW_SCHEMA: &str = r#"{ type = "object", required = ["verdict"], properties = { verdict = { enum = ["clean", "minor", "blocking"] }, summary = { type = "string" } } }"#;

const ONE_LEAF: &str = r#"
let r = await_sessions([spawn_session("review", #{ goal: "look", inputs: #{ pr: 7 } })])[0];
#{ status: r.status, error: r.error, output: r.output }
"#;

/// What one review run left: coord's outcome, the journal's entries, the stand-in's record.
struct OneReview {
    out: Outcome,
    journal: Vec<Value>,
    behaviour: Behaviour,
}

impl OneReview {
    fn result(&self) -> Value {
        self.out.code(0);
        self.out.json()["result"].clone()
    }

    fn session(&self) -> Option<&Value> {
        self.journal.iter().find(|e| e["type"] == "session").map(|e| &e["result"])
    }
}

/// One review on the real CLI with `faults` injected; the leaf may be retried twice.
async fn one_review(cli: Cli, faults: Vec<Fault>, key: &str, binary_override: Option<&str>) -> Option<OneReview> {
    let binary = cli.binary()?;
    let standin =
        StandIn::start(cli, Behaviour::always(json!({"verdict": "clean", "summary": "fine"})).with_faults(faults))
            .await;
    let home = AgentHome::new();
    let p = TestProject::new();
    p.write(
        "workflows/review.toml",
        &format!("harness = \"{}\"\ntimeout = \"60s\"\nretries = 2\nprompt = \"Review pull request #{{{{ inputs.pr }}}}.\"\nschema = {REVIEW_SCHEMA}\n[inputs]\npr = \"integer\"\n", cli.harness()),
    );
    let mut toml = harness_toml(cli, &binary, &standin.base_url(), &home);
    if let Some(other) = binary_override {
        toml = toml.replace(&format!("binary = \"{}\"", binary.display()), &format!("binary = \"{other}\""));
    }
    p.write("coord.toml", &toml);
    p.write("s.rhai", ONE_LEAF);
    let out = run_async(coord(&p, cli, &home, key).args(["run", "s.rhai", "--json"])).await;
    let journal = match p.runs().first() {
        Some(run) => std::fs::read_to_string(run.join("journal.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect(),
        None => Vec::new(),
    };
    Some(OneReview { out, journal, behaviour: standin.behaviour().clone() })
}

fn assert_readable(error: &str) {
    assert!(!error.contains('\u{1b}'), "no escape codes: {error:?}");
    assert!(!error.contains("    at ") && !error.contains("node:internal"), "no stack trace: {error}");
}

async fn transient_faults_are_retried(cli: Cli) {
    for code in [429, 500] {
        let fault = Fault::Status { code, retry_after: Some(0) };
        let Some(run) = one_review(cli, vec![fault], GOOD_KEY, None).await else { return };
        let result = run.result();
        assert_eq!(result["status"], "ok", "{cli:?} {code}: {result}");
        let session = run.session().unwrap();
        assert_eq!(session["attempts"], 2, "{cli:?} {code}: coord ran the leaf again: {session}");
        assert_eq!(run.behaviour.recorder.answers(), 1, "{cli:?} {code}");
    }
}

/// A rejected key is a configuration failure: not retried, and the run stops on it (exit 1)
/// with the fix, journaling no answer for the leaf.
async fn a_rejected_key_is_configuration_and_not_retried(cli: Cli) {
    let Some(run) = one_review(cli, vec![], "sk-wrong-0000000000000000", None).await else { return };
    run.out.code(1);
    let stderr = &run.out.stderr;
    let error = stderr.lines().find(|l| l.starts_with("error: the ")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(error.contains(&format!("the {} harness failed on session s1 (review)", cli.harness())), "{error}");
    assert!(error.contains("Fix: give the") && error.contains(cli.key_variable()), "{cli:?}: {error}");
    assert!(!stderr.contains("sk-wrong-0000000000000000"), "{cli:?}: the key is not quoted back: {stderr}");
    assert_readable(error);
    assert!(run.session().is_none(), "{cli:?}: no answer is journaled for the leaf");
    let model_requests = run.behaviour.recorder.received().iter().filter(|r| r.method == "POST").count();
    assert_eq!(model_requests, 1, "{cli:?}: tried once");
}

/// A missing binary is found before the run starts: exit 2, the install command, no run.
async fn a_missing_binary_is_configuration_with_the_install_command(cli: Cli) {
    let Some(run) = one_review(cli, vec![], GOOD_KEY, Some("/nonexistent/agent")).await else { return };
    run.out.code(2);
    let stderr = &run.out.stderr;
    assert!(
        stderr.contains(&format!(
            "the {} harness (workflow review) cannot run: binary: `/nonexistent/agent` not found",
            cli.harness()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("Fix: install it (`npm install -g"), "{stderr}");
    assert!(run.journal.is_empty(), "no run was made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_failures_are_classed() {
    transient_faults_are_retried(Cli::Claude).await;
    a_rejected_key_is_configuration_and_not_retried(Cli::Claude).await;
    a_missing_binary_is_configuration_with_the_install_command(Cli::Claude).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_failures_are_classed() {
    transient_faults_are_retried(Cli::Codex).await;
    a_rejected_key_is_configuration_and_not_retried(Cli::Codex).await;
    a_missing_binary_is_configuration_with_the_install_command(Cli::Codex).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_failures_are_classed() {
    transient_faults_are_retried(Cli::Gemini).await;
    a_rejected_key_is_configuration_and_not_retried(Cli::Gemini).await;
    a_missing_binary_is_configuration_with_the_install_command(Cli::Gemini).await;
}

/// An ordinary schema (an optional field, no `additionalProperties`), which OpenAI's strict
/// mode refuses, reaches Codex in strict form, and the stand-in (which enforces those rules)
/// accepts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_gets_the_strict_form_of_an_ordinary_schema() {
    let Some(run) = one_review(Cli::Codex, vec![], GOOD_KEY, None).await else { return };
    let result = run.result();
    assert_eq!(result["status"], "ok", "{result}");
    let sent = run.behaviour.recorder.received().into_iter().find(|r| r.path.ends_with("/responses")).unwrap();
    let schema = &sent.body["text"]["format"]["schema"];
    let mut required: Vec<&str> = schema["required"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    required.sort();
    assert_eq!(required, ["summary", "verdict"], "{schema}");
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(sent.body["text"]["format"]["strict"], true);
}

// ---- coord doctor -----------------------------------------------------------------------------

fn doctor_project(binaries: &[(Cli, String)], base_urls: &[String], home: &AgentHome) -> TestProject {
    let p = TestProject::new();
    let mut toml = String::new();
    for ((cli, binary), base) in binaries.iter().zip(base_urls) {
        toml.push_str(&harness_toml(*cli, Path::new(binary), base, home));
        p.write(
            &format!("workflows/review-{}.toml", cli.program()),
            &format!("harness = \"{}\"\nprompt = \"Review.\"\nschema = {REVIEW_SCHEMA}\n", cli.harness()),
        );
    }
    p.write("coord.toml", &toml);
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_probes_every_real_cli_and_names_a_missing_one() {
    let clis = [Cli::Claude, Cli::Codex, Cli::Gemini];
    let mut binaries = Vec::new();
    for cli in clis {
        let Some(b) = cli.binary() else { return };
        binaries.push((cli, b.display().to_string()));
    }
    let mut standins = Vec::new();
    for cli in clis {
        standins.push(StandIn::start(cli, Behaviour::always(json!({"ok": true}))).await);
    }
    let urls: Vec<String> = standins.iter().map(StandIn::base_url).collect();
    let home = AgentHome::new();
    let keys = |cmd: support::CoordCommand| {
        clis.iter().fold(cmd.env("HOME", home.path("tmp")), |c, cli| c.env(cli.key_variable(), GOOD_KEY))
    };

    let p = doctor_project(&binaries, &urls, &home);
    let out = run_async(keys(p.coord()).args(["doctor", "--probe", "--json"])).await;
    out.code(0);
    let v = out.json();
    assert_eq!(v["ready"], true, "{v}");
    for report in v["harnesses"].as_array().unwrap() {
        let checks: Vec<&str> =
            report["findings"].as_array().unwrap().iter().map(|f| f["check"].as_str().unwrap()).collect();
        assert_eq!(checks[..3], ["binary", "credentials", "schema"], "{report}");
        assert_eq!(checks.last(), Some(&"probe"), "{report}");
        assert!(report["findings"].as_array().unwrap().iter().all(|f| f["ok"] == true), "{report}");
        assert!(
            report["version"]
                .as_str()
                .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()) || v.starts_with("codex-cli")),
            "{report}"
        );
    }
    for s in &standins {
        assert_eq!(s.behaviour().recorder.answers(), 1, "one probe call each");
    }

    binaries[0].1 = "/nonexistent/claude".into();
    let p = doctor_project(&binaries, &urls, &home);
    let out = run_async(keys(p.coord()).args(["doctor"])).await;
    out.code(1)
        .stdout_has("claude-code: PROBLEM")
        .stdout_has("`/nonexistent/claude` not found")
        .stdout_has("npm install -g @anthropic-ai/claude-code");
    assert!(out.stdout.contains("codex: ok") && out.stdout.contains("gemini: ok"), "{}", out.stdout);
}

// ---- an outage stops the run instead of being routed ----------------------------------------

/// With a key the provider rejects, the first review fails as a configuration failure: the run
/// stops (exit 1) before the script sees it, so no PR is escalated, merged or commented on,
/// and no leaf is journaled; `coord resume` with the right key then finishes the run as if
/// nothing had happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_key_stops_groom_prs_before_anything_acts_and_resume_finishes_it() {
    let cli = Cli::Claude;
    let Some(binary) = cli.binary() else { return };
    let _turn = groom_turn();
    let standin = StandIn::start(cli, Behaviour::new(demo_answerer())).await;
    let home = AgentHome::new();
    let p = groom_project(cli, &binary, &standin, &home);
    let args = ["run", "coordinators/groom-prs.rhai", "--demo", "--json", "--max-parallel", "1"];
    let stopped = run_async(coord(&p, cli, &home, "sk-ant-revoked-000000000000").args(args).args(leaves_on(cli))).await;
    stopped
        .code(1)
        .stderr_has("error: the claude-code harness failed on session s")
        .stderr_has("(mr-review): claude: the model API answered 401")
        .stderr_has("Fix: give the claude-code harness a valid key")
        .stderr_has("coord resume")
        .stderr_lacks("sk-ant-revoked");
    let run_dir = p.runs()[0].clone();
    let journal = std::fs::read_to_string(run_dir.join("journal.jsonl")).unwrap();
    let kinds: Vec<String> = journal
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["type"].as_str().unwrap().to_owned())
        .collect();
    assert!(!kinds.iter().any(|k| k == "session" || k.starts_with("effect")), "nothing routed or acted: {kinds:?}");
    assert_eq!(kinds.last().map(String::as_str), Some("run_finished"));
    assert_eq!(standin.behaviour().recorder.answers(), 0, "no answer was given");
    let requests = standin.behaviour().recorder.received().iter().filter(|r| r.method == "POST").count();
    assert_eq!(requests, 1, "one leaf started, no second one");

    let run_id = run_dir.file_name().unwrap().to_str().unwrap().to_owned();
    let resumed = run_async(coord(&p, cli, &home, GOOD_KEY).args(["resume", &run_id, "--json"])).await;
    resumed.code(0);
    let mock =
        run_async(coord(&p, cli, &home, GOOD_KEY).args(["run", "coordinators/groom-prs.rhai", "--demo", "--json"]))
            .await;
    assert_eq!(resumed.json()["effects"], mock.json()["effects"], "the resumed run routes as the demo does");
}
