//! No credential is ever written (invariant 5), through the real `coord` binary: with canary
//! values in the GitHub token, the Slack webhook URL, a webhook signing secret and the model
//! keys, leaves that print their environment and echo the canaries into every field they can,
//! a GitHub stand-in that quotes the request's `Authorization` header back in a 401 and serves
//! a PR whose body holds the token, a Slack stand-in answering `404 no_team for <path>` and a
//! webhook receiver quoting the signing secret, no canary appears in any file under the run
//! directory, on stdout or stderr (`-vvv`, `--json` and human output), or in `coord show`,
//! `coord runs`, `coord replay` and `coord report`, run with the variables set and without them.
//! And a leaf gets none of those credentials unless its workflow passes them by name.

use crate::support;

use serde_json::{json, Value};
use std::path::Path;
use support::{Outcome, TestProject};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// A GitHub token of the real shape (`ghp_` and 36 characters).
const GITHUB_TOKEN: &str = "ghp_CanaryGithub0Token1Value2Abcdef345678";
const SLACK_SECRET: &str = "CanarySlackHookSecret0042";
/// Named only by `coord.toml` (`secret_env`): no suffix rule or usual name knows it.
const HOOK_SECRET: &str = "canary-signing-phrase-0042";
const ANTHROPIC_KEY: &str = "sk-ant-api03-CanaryAnthropic0Key1Value2";
const OPENAI_KEY: &str = "sk-proj-CanaryOpenai0Key1Value2Abc";
const GEMINI_KEY: &str = "AIzaCanaryGemini0Key1Value2Abcdef345678";

/// The canaries, and the Slack URL's secret part, which a receiver may quote alone.
fn canaries() -> Vec<&'static str> {
    vec![GITHUB_TOKEN, SLACK_SECRET, HOOK_SECRET, ANTHROPIC_KEY, OPENAI_KEY, GEMINI_KEY]
}

const SCHEMA: &str = r#"{ type = "object" }"#;

/// Prints its environment as a JSON string field; the canaries it was given go into output
/// fields, its text and stderr.
const LEAK: &str = r#"#!/bin/sh
cat >/dev/null
env >&2
printenv >&2
echo "token=$GITHUB_TOKEN hook=$SLACK_WEBHOOK_URL key=$ANTHROPIC_API_KEY" >&2
envtext=$(env | tr '\n"\\' '   ')
printf '{"output": {"env": "%s", "token": "%s", "hook": "%s", "sign": "%s", "keys": ["%s", "%s", "%s"]}, "text": "Bearer %s"}\n' \
  "$envtext" "$GITHUB_TOKEN" "$SLACK_WEBHOOK_URL" "$HOOK_SIGNING_PHRASE" "$ANTHROPIC_API_KEY" "$OPENAI_API_KEY" "$GEMINI_API_KEY" "$GITHUB_TOKEN"
"#;

/// The same, failing: its stderr (the environment and the canaries) becomes the error text.
const LEAK_AND_FAIL: &str = r#"#!/bin/sh
cat >/dev/null
env >&2
echo "token=$GITHUB_TOKEN secret=$HOOK_SIGNING_PHRASE" >&2
exit 3
"#;

/// Given nothing by name: what it sees of coord's environment is its whole output.
const PLAIN: &str = r#"#!/bin/sh
cat >/dev/null
envtext=$(env | tr '\n"\\' '   ')
printf '{"env": "%s"}\n' "$envtext"
"#;

const SCRIPT: &str = r#"
let leaves = [
    spawn_session("leak", #{ goal: "print the environment" }),
    spawn_session("leak-and-fail", #{ goal: "print it and fail" }),
    spawn_session("plain", #{ goal: "print what a leaf gets" }),
];
let results = await_sessions(leaves);
let pr = github::pr(7);
print(`PR body: ${pr.body}`);
let slack = notify("slack:#eng", `about ${pr.body}`);
let hook = notify("ops", "signed");
let comment = github::comment(7, "a comment");
#{ leaves: results, pr_body: pr.body, slack: slack, hook: hook, comment: comment, failing: github::pr(8) }
"#;

struct StandIns {
    github: MockServer,
    slack: MockServer,
    hook: MockServer,
}

async fn stand_ins() -> StandIns {
    let github = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/widgets/pulls/7"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "number": 7, "title": "Rotate the token", "state": "open", "user": {"login": "dev"},
            "base": {"ref": "main"}, "head": {"ref": "rotate", "sha": "abc123"}, "labels": [],
            "body": format!("The old one was GITHUB_TOKEN={GITHUB_TOKEN}, see https://x-access-token:{GITHUB_TOKEN}@github.com/acme/widgets"),
        })))
        .mount(&github)
        .await;
    // Everything else: a 401 quoting the request's credentials, as a misbehaving proxy would.
    Mock::given(wiremock::matchers::any())
        .respond_with(|req: &Request| {
            let auth = req.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("none").to_owned();
            ResponseTemplate::new(401).set_body_json(json!({
                "message": format!("Bad credentials: got Authorization: {auth}"),
                "documentation_url": "https://docs.github.com/rest"
            }))
        })
        .mount(&github)
        .await;
    let slack = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(|req: &Request| {
            ResponseTemplate::new(404).set_body_string(format!("no_team for {}", req.url.path()))
        })
        .mount(&slack)
        .await;
    let hook = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(
            ResponseTemplate::new(403).set_body_string(format!("bad signature: expected one made with {HOOK_SECRET}")),
        )
        .mount(&hook)
        .await;
    StandIns { github, slack, hook }
}

fn project(s: &StandIns) -> TestProject {
    let p = TestProject::new();
    for (name, script) in [("leak", LEAK), ("leak-and-fail", LEAK_AND_FAIL), ("plain", PLAIN)] {
        p.write_executable(&format!("{name}.sh"), script);
        let pass = if name == "plain" {
            String::new()
        } else {
            "pass_env = [\"GITHUB_TOKEN\", \"SLACK_WEBHOOK_URL\", \"HOOK_SIGNING_PHRASE\", \"ANTHROPIC_API_KEY\", \"OPENAI_API_KEY\", \"GEMINI_API_KEY\"]\n".to_owned()
        };
        p.write(
            &format!("workflows/{name}.toml"),
            &format!("harness = \"command\"\ncommand = [\"./{name}.sh\"]\n{pass}prompt = \"{{{{ goal }}}}\"\nschema = {SCHEMA}\n"),
        );
    }
    p.write(
        "coord.toml",
        &format!(
            "[github]\nrepo = \"acme/widgets\"\napi_url = \"{}\"\n\n[channels.\"slack:#eng\"]\ntype = \"slack\"\nwebhook_env = \"SLACK_WEBHOOK_URL\"\n\n[channels.ops]\ntype = \"webhook\"\nurl = \"{}/hooks/ops\"\nsecret_env = \"HOOK_SIGNING_PHRASE\"\n",
            s.github.uri(),
            s.hook.uri()
        ),
    );
    p.write("s.rhai", SCRIPT);
    p
}

/// `coord` in `p` with every canary in its environment.
fn with_secrets(p: &TestProject, s: &StandIns) -> support::CoordCommand {
    p.coord()
        .env("GITHUB_TOKEN", GITHUB_TOKEN)
        .env("SLACK_WEBHOOK_URL", format!("{}/services/T000/B000/{SLACK_SECRET}", s.slack.uri()))
        .env("HOOK_SIGNING_PHRASE", HOOK_SECRET)
        .env("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
        .env("OPENAI_API_KEY", OPENAI_KEY)
        .env("GEMINI_API_KEY", GEMINI_KEY)
}

/// `coord` in `p` with none of the canaries' variables set.
fn without_secrets(p: &TestProject) -> support::CoordCommand {
    [
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "SLACK_WEBHOOK_URL",
        "HOOK_SIGNING_PHRASE",
        "ANTHROPIC_API_KEY",
        "OPENAI_API_KEY",
        "GEMINI_API_KEY",
    ]
    .into_iter()
    .fold(p.coord(), |c, v| c.env_remove(v))
}

fn assert_no_canary(place: &str, text: &str) {
    for canary in canaries() {
        let found = text.matches(canary).count();
        assert_eq!(found, 0, "{place} holds `{canary}` {found} time(s):\n{}", excerpt(text, canary));
    }
}

fn excerpt(text: &str, canary: &str) -> String {
    let at = text.find(canary).unwrap_or(0);
    let (mut start, mut end) = (at.saturating_sub(200), (at + canary.len() + 200).min(text.len()));
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    while !text.is_char_boundary(end) {
        end += 1;
    }
    text[start..end].to_owned()
}

fn assert_clean(place: &str, out: &Outcome) {
    assert_no_canary(&format!("{place} stdout"), &out.stdout);
    assert_no_canary(&format!("{place} stderr"), &out.stderr);
}

/// Every file under `dir`, each checked.
fn assert_files_clean(dir: &Path) -> usize {
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            checked += assert_files_clean(&path);
        } else {
            let bytes = std::fs::read(&path).unwrap();
            assert_no_canary(&path.display().to_string(), &String::from_utf8_lossy(&bytes));
            checked += 1;
        }
    }
    checked
}

async fn run(cmd: support::CoordCommand) -> Outcome {
    tokio::task::spawn_blocking(move || cmd.run()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_canary_is_written_anywhere() {
    let s = stand_ins().await;
    let p = project(&s);

    let json_run = run(with_secrets(&p, &s).args(["-vvv", "run", "s.rhai", "--json"])).await;
    assert_clean("run --json -vvv", &json_run);
    // The run did meet every source of leaks: the leaves ran, the stand-ins answered.
    json_run.stdout_has("[redacted]");
    let human_run = run(with_secrets(&p, &s).args(["run", "s.rhai"])).await;
    assert_clean("run", &human_run);
    for out in [&json_run, &human_run] {
        assert_eq!(out.code, 1, "github::pr(8) fails the run: {}\n{}", out.stdout, out.stderr);
        out.stderr_has("Bad credentials: got Authorization: Bearer [redacted]");
    }

    let runs = p.runs();
    assert_eq!(runs.len(), 2);
    let journal = std::fs::read_to_string(runs[0].join("journal.jsonl")).unwrap();
    for needle in [
        "token=[redacted]",
        "no_team for [redacted]",
        "expected one made with [redacted]",
        "Bearer [redacted]",
        "GITHUB_TOKEN=[redacted]",
    ] {
        assert!(journal.contains(needle), "the journal shows `{needle}` masked:\n{journal}");
    }
    for line in journal.lines() {
        serde_json::from_str::<Value>(line).expect("a masked journal line is still JSON");
    }
    assert!(std::fs::read_to_string(runs[0].join("run.log"))
        .unwrap()
        .contains("PR body: The old one was GITHUB_TOKEN=[redacted]"));

    // A leaf gets no credential its workflow does not name.
    let plain =
        journal.lines().find(|l| l.contains("\"session\":\"s3\"") && l.contains("\"type\":\"session\"")).unwrap();
    let plain_env =
        serde_json::from_str::<Value>(plain).unwrap()["result"]["output"]["env"].as_str().unwrap().to_owned();
    assert!(plain_env.contains("PATH="), "{plain_env}");
    for name in [
        "GITHUB_TOKEN=",
        "SLACK_WEBHOOK_URL=",
        "HOOK_SIGNING_PHRASE=",
        "ANTHROPIC_API_KEY=",
        "OPENAI_API_KEY=",
        "GEMINI_API_KEY=",
    ] {
        assert!(!plain_env.contains(name), "the plain leaf got {name}: {plain_env}");
    }

    let run_id = runs[0].file_name().unwrap().to_string_lossy().into_owned();
    for (label, cmd) in [("with the variables", true), ("without them", false)] {
        let coord = |args: &[&str]| if cmd { with_secrets(&p, &s).args(args) } else { without_secrets(&p).args(args) };
        for args in [
            vec!["show", run_id.as_str()],
            vec!["show", run_id.as_str(), "--session", "s1"],
            vec!["show", run_id.as_str(), "--session", "s2"],
            vec!["runs", "--json"],
            vec!["graph", run_id.as_str()],
            vec!["replay", run_id.as_str(), "--json"],
            vec!["replay", run_id.as_str(), "--trace"],
        ] {
            let out = run(coord(&args)).await;
            assert_clean(&format!("{} {label}", args.join(" ")), &out);
        }
        let report = run(coord(&["report", run_id.as_str(), "-o", "r.html"])).await;
        report.code(0);
        assert_no_canary(&format!("report {label}"), &p.read("r.html"));
    }
    assert!(assert_files_clean(&p.path().join(".coord")) >= 6, "journals, blobs, logs were checked");
}
