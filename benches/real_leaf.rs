//! What coord adds to a leaf run on a real agent CLI (`cargo bench --bench real_leaf`): the
//! released `claude`, `codex` and `gemini` (tests/agents) answer a stand-in model API
//! (tests/standins) on 127.0.0.1, once run by hand and once as coord's leaves.
//!
//! For each CLI, in alternating rounds: N runs of the CLI by hand, one after the other, with
//! the command line and environment coord uses; then one `coord run` of a script that runs
//! N leaves one after the other on the same CLI, minus a `coord run` of the same script with
//! no leaves (process start, compile, journal). The difference per leaf is coord's overhead:
//! spawning, stream parsing, schema validation, journaling, the version check. Method and
//! figures: docs/performance.md ("Real agent CLIs").
//!
//! A fourth case replays a canned Claude Code stream (tests/fakes/claude, a shell script that
//! prints a recorded transcript) instead of the real CLI: the leaf itself then costs a few
//! milliseconds, so what coord adds can be told apart from the real CLIs' run-to-run noise.
//!
//! Run it inside a loopback-only network namespace, as the tests are:
//!     unshare --net sh -c 'ip link set lo up && cargo bench --bench real_leaf'
//! `N` (default 5) and `ROUNDS` (default 3) set the size.

#[path = "../tests/standins/mod.rs"]
#[allow(unused_imports)]
mod standins;

use serde_json::json;
use standins::anthropic::AnthropicStandIn;
use standins::gemini::{write_cli_settings, GeminiStandIn};
use standins::openai_responses::{codex_provider_args, ResponsesStandIn};
use standins::{Behaviour, GOOD_KEY};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SCHEMA: &str = r#"{"type":"object","required":["verdict"],"properties":{"verdict":{"enum":["clean","minor","blocking"]}},"additionalProperties":false}"#;
/// The canned stream's recorded answer also has `summary` and `findings`.
const CANNED_SCHEMA: &str =
    r#"{"type":"object","required":["verdict"],"properties":{"verdict":{"enum":["clean","minor","blocking"]}}}"#;
const PROMPT: &str = "Review pull request #7.";

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Setup {
    name: &'static str,
    /// The CLI by hand: program, arguments, environment, working directory.
    direct: (PathBuf, Vec<String>, Vec<(String, String)>),
    /// The `[harness.*]` table coord gets.
    toml: String,
    key_var: &'static str,
    /// The workflow's schema.
    schema: &'static str,
}

fn agent(program: &str) -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/agents/node_modules/.bin").join(program);
    assert!(bin.exists(), "run `npm ci --prefix tests/agents` first");
    bin
}

fn claude(base: &str, home: &Path) -> Setup {
    let bin = agent("claude");
    let config = home.join("claude");
    let env: Vec<(String, String)> = [
        ("ANTHROPIC_BASE_URL", base.to_owned()),
        ("ANTHROPIC_API_KEY", GOOD_KEY.to_owned()),
        ("DISABLE_AUTOUPDATER", "1".to_owned()),
        ("CLAUDE_CONFIG_DIR", config.display().to_string()),
        ("CLAUDE_CODE_MAX_RETRIES", "0".to_owned()),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_owned()),
        ("DISABLE_TELEMETRY", "1".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let args = ["-p", PROMPT, "--output-format", "stream-json", "--verbose", "--json-schema", SCHEMA];
    Setup {
        name: "claude-code",
        direct: (bin.clone(), args.iter().map(|s| s.to_string()).collect(), env),
        toml: format!(
            "[harness.claude-code]\nbinary = \"{}\"\nbase_url = \"{base}\"\n[harness.claude-code.env]\nCLAUDE_CONFIG_DIR = \"{}\"\nCLAUDE_CODE_MAX_RETRIES = \"0\"\nCLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = \"1\"\nDISABLE_TELEMETRY = \"1\"\n",
            bin.display(),
            config.display()
        ),
        key_var: "ANTHROPIC_API_KEY",
        schema: SCHEMA,
    }
}

fn codex(base: &str, home: &Path) -> Setup {
    let bin = agent("codex");
    let codex_home = home.join("codex");
    let schema = home.join("schema.json");
    std::fs::write(&schema, SCHEMA).unwrap();
    let mut args: Vec<String> = ["exec", "--json", "--output-schema"].iter().map(|s| s.to_string()).collect();
    args.push(schema.display().to_string());
    args.extend(["--sandbox", "read-only", "--skip-git-repo-check", "--model", "gpt-6.2-sol"].map(String::from));
    args.extend(codex_provider_args(base, "OPENAI_API_KEY", 0));
    args.push(PROMPT.into());
    let env = vec![
        ("OPENAI_API_KEY".to_owned(), GOOD_KEY.to_owned()),
        ("CODEX_HOME".to_owned(), codex_home.display().to_string()),
    ];
    Setup {
        name: "codex",
        direct: (bin.clone(), args, env),
        toml: format!(
            "[harness.codex]\nbinary = \"{}\"\nbase_url = \"{base}\"\nmodel = \"gpt-6.2-sol\"\nargs = [\"-c\", \"model_providers.coord.request_max_retries=0\", \"-c\", \"model_providers.coord.stream_max_retries=0\", \"-c\", \"analytics.enabled=false\", \"-c\", \"feedback.enabled=false\", \"-c\", \"otel.exporter=none\"]\n[harness.codex.env]\nCODEX_HOME = \"{}\"\n",
            bin.display(),
            codex_home.display()
        ),
        key_var: "OPENAI_API_KEY",
        schema: SCHEMA,
    }
}

fn gemini(base: &str, home: &Path) -> Setup {
    let bin = agent("gemini");
    let gemini_home = home.join("gemini");
    write_cli_settings(&gemini_home, 1).unwrap();
    let prompt = format!("{PROMPT}\n\nAnswer with a single JSON value matching this JSON Schema, and nothing else (no prose, no code fences):\n{SCHEMA}");
    let args = vec![
        "-p".to_owned(),
        prompt,
        "--output-format".into(),
        "json".into(),
        "--skip-trust".into(),
        "--model".into(),
        "gemini-2.5-pro".into(),
    ];
    let env = vec![
        ("GEMINI_API_KEY".to_owned(), GOOD_KEY.to_owned()),
        ("GOOGLE_GEMINI_BASE_URL".to_owned(), base.to_owned()),
        ("GEMINI_CLI_HOME".to_owned(), gemini_home.display().to_string()),
        ("GEMINI_TELEMETRY_ENABLED".to_owned(), "false".to_owned()),
        ("NO_COLOR".to_owned(), "1".to_owned()),
    ];
    Setup {
        name: "gemini",
        direct: (bin.clone(), args, env),
        toml: format!(
            "[harness.gemini]\nbinary = \"{}\"\nbase_url = \"{base}\"\nmodel = \"gemini-2.5-pro\"\n[harness.gemini.env]\nGEMINI_CLI_HOME = \"{}\"\nGEMINI_TELEMETRY_ENABLED = \"false\"\n",
            bin.display(),
            gemini_home.display()
        ),
        key_var: "GEMINI_API_KEY",
        schema: SCHEMA,
    }
}

/// The canned stream: tests/fakes/claude, by hand and through the `claude-code` harness.
fn canned_claude(home: &Path) -> Setup {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fakes/claude");
    let state = home.join("fake-state");
    let args = ["-p", PROMPT, "--output-format", "stream-json", "--verbose", "--json-schema", CANNED_SCHEMA];
    Setup {
        name: "claude-code",
        schema: CANNED_SCHEMA,
        direct: (
            bin.clone(),
            args.iter().map(|s| s.to_string()).collect(),
            vec![("FAKE_STATE".to_owned(), state.display().to_string())],
        ),
        toml: format!(
            "[harness.claude-code]\nbinary = \"{}\"\n[harness.claude-code.env]\nFAKE_STATE = \"{}\"\n",
            bin.display(),
            state.display()
        ),
        key_var: "ANTHROPIC_API_KEY",
    }
}

fn timed(cmd: &mut Command) -> Duration {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let started = Instant::now();
    let status = cmd.status().expect("runs");
    assert!(status.success(), "{cmd:?} failed");
    started.elapsed()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let n = env_number("N", 5);
    let rounds = env_number("ROUNDS", 3);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let answer = json!({"verdict": "clean"});
    let (a, r, g) = runtime.block_on(async {
        (
            AnthropicStandIn::start(Behaviour::always(answer.clone())).await,
            ResponsesStandIn::start(Behaviour::always(answer.clone())).await,
            GeminiStandIn::start(Behaviour::always(answer.clone())).await,
        )
    });
    let home = tempfile::tempdir().unwrap();
    for sub in ["claude", "codex"] {
        std::fs::create_dir_all(home.path().join(sub)).unwrap();
    }
    let setups = [
        (claude(&a.base_url(), home.path()), n),
        (codex(&r.base_url(), home.path()), n),
        (gemini(&g.base_url(), home.path()), n),
        (canned_claude(home.path()), env_number("N_CANNED", 40)),
    ];
    let coord = env!("CARGO_BIN_EXE_coord");
    println!("coord: {coord}; {n} leaves per batch, {rounds} alternating rounds");
    println!(
        "machine: {} cores, load {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split(' ').take(3).collect::<Vec<_>>().join(" ")
    );
    for (setup, n) in &setups {
        let n = *n;
        let project = tempfile::tempdir().unwrap();
        let p = project.path();
        std::fs::create_dir_all(p.join("workflows")).unwrap();
        std::fs::write(p.join("workflows/review.schema.json"), setup.schema).unwrap();
        std::fs::write(
            p.join("workflows/review.toml"),
            format!(
                "harness = \"{}\"\ntimeout = \"120s\"\nprompt = \"{PROMPT}\"\nschema = \"review.schema.json\"\n",
                setup.name
            ),
        )
        .unwrap();
        std::fs::write(p.join("coord.toml"), &setup.toml).unwrap();
        std::fs::write(
            p.join("leaves.rhai"),
            "let n = input(\"n\").parse_int();\nfor i in 0..n {\n    let r = await_sessions([spawn_session(\"review\", #{})])[0];\n    if r.status != \"ok\" { throw r.error; }\n}\nn\n",
        )
        .unwrap();
        let coord_run = |leaves: usize| {
            let mut cmd = Command::new(coord);
            cmd.current_dir(p).env("HOME", home.path()).env(setup.key_var, GOOD_KEY).args([
                "-q",
                "run",
                "leaves.rhai",
                "--input",
                &format!("n={leaves}"),
                "--max-parallel",
                "1",
            ]);
            timed(&mut cmd)
        };
        let (program, args, env) = &setup.direct;
        let direct_once = || {
            let mut cmd = Command::new(program);
            cmd.current_dir(home.path()).args(args).envs(env.iter().map(|(k, v)| (k, v)));
            timed(&mut cmd)
        };
        let (mut by_hand, mut through_coord) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let hand: Duration = (0..n).map(|_| direct_once()).sum();
            let empty = coord_run(0);
            let full = coord_run(n);
            by_hand.push(hand.as_secs_f64() * 1000.0 / n as f64);
            through_coord.push((full.as_secs_f64() - empty.as_secs_f64()) * 1000.0 / n as f64);
        }
        let (hand, via) = (median(by_hand.clone()), median(through_coord.clone()));
        let label = if setup.direct.0.ends_with("fakes/claude") { "canned" } else { setup.name };
        println!(
            "{label:<12} by hand {:>7.1} ms/leaf   through coord {:>7.1} ms/leaf   overhead {:>6.1} ms/leaf ({:.3}x)   rounds: hand {:?} coord {:?}",
            hand,
            via,
            via - hand,
            via / hand,
            by_hand.iter().map(|v| (v * 10.0).round() / 10.0).collect::<Vec<_>>(),
            through_coord.iter().map(|v| (v * 10.0).round() / 10.0).collect::<Vec<_>>()
        );
    }
}
