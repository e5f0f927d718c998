//! `coord run` through the binary: the demo, JSON output, script errors, leaf failures,
//! effects, and the sandbox.

use crate::support;

use serde_json::Value;
use std::time::Duration;
use support::{command_workflow, TestProject};

#[test]
fn demo_prints_decisions_and_journals_the_run() {
    let p = TestProject::with_repo_files();
    let out = p.coord().args(["run", "coordinators/groom-prs.rhai", "--demo"]).run();
    out.code(0)
        .stdout_has("merged     #12 #14")
        .stdout_has("fixed      #14")
        .stdout_has("escalated  #15 #17 #16")
        .stdout_has("waiting    #18 #13");
    let runs = p.runs();
    assert_eq!(runs.len(), 1);
    let journal = std::fs::read_to_string(runs[0].join("journal.jsonl")).unwrap();
    assert!(journal.lines().next().unwrap().contains("\"run_started\""));
    assert!(journal.lines().last().unwrap().contains("\"succeeded\""));
}

#[test]
fn json_effects_are_identical_on_every_run() {
    let p = TestProject::with_repo_files();
    let run = || p.coord().args(["run", "coordinators/groom-prs.rhai", "--demo", "--json"]).run();
    let a = run();
    a.code(0);
    let b = run();
    let (a, b) = (a.json(), b.json());
    assert_eq!(a["effects"], b["effects"]);
    assert_ne!(a["run_id"], b["run_id"]);
    assert_eq!(a["status"], "succeeded");
    assert_eq!(a["sessions"], 14);
    assert_eq!(a["effects"][0], serde_json::json!({"kind": "merge", "pr": 12, "method": "squash", "status": "merged"}));
    let notify = a["effects"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(notify["kind"], "notify");
    assert_eq!(notify["channel"], "slack:#eng");
    assert!(a["usage"]["cost_usd"].as_f64().unwrap() > 0.0);
}

fn script_error(source: &str) -> support::Outcome {
    let p = TestProject::new();
    p.write("bad.rhai", source);
    let out = p.coord().args(["run", "bad.rhai"]).run();
    out.stderr_lacks("panicked");
    assert!(p.runs().len() <= 1);
    out
}

#[test]
fn syntax_error_exits_2_with_location() {
    let out = script_error("let x = 1;\nlet y = (x + ;\n");
    out.code(2).stderr_has("bad.rhai:2:").stderr_has("syntax error");
}

#[test]
fn unknown_host_function_exits_2_with_a_suggestion() {
    let out = script_error("let prs = [];\nlet h = spawn_sesion(\"mr-review\", #{});\n");
    out.code(2).stderr_has("bad.rhai:2:9");
    assert!(out.stderr.contains("spawn_session"), "did you mean: {}", out.stderr);
}

#[test]
fn wrong_argument_types_name_the_expected_signature() {
    let out = script_error("notify(12, 13);\n");
    out.code(2).stderr_has("bad.rhai:1:1").stderr_has("expected: notify(channel: string");
}

#[test]
fn endless_loop_is_stopped_by_the_operation_limit() {
    let out = script_error("let n = 0;\nloop {\n  n += 1;\n}\n");
    out.code(2).stderr_has("operation limit").stderr_has("bad.rhai:");
}

#[test]
fn endless_recursion_is_stopped_without_a_stack_overflow() {
    let out = script_error("fn down(n) { down(n + 1) }\ndown(0);\n");
    out.code(2).stderr_has("recursion").stderr_has("bad.rhai:");
}

#[test]
fn a_throw_fails_the_run_with_exit_1() {
    let out = script_error("throw \"no PRs to groom\";\n");
    out.code(1).stderr_has("no PRs to groom");
}

#[test]
fn error_in_an_imported_module_names_the_module_file() {
    let p = TestProject::new();
    p.write("lib/route.rhai", "fn pick(x) {\n  x.no_such_method()\n}\n");
    p.write("main.rhai", "import \"lib/route\" as route;\nroute::pick(1);\n");
    let out = p.coord().args(["run", "main.rhai"]).run();
    out.code(2).stderr_has("route.rhai:2:");
}

#[test]
fn the_wall_clock_is_not_reachable() {
    // `sleep` is the journaled host call (tests/waits.rs); Rhai's own clock stays out of reach.
    for src in ["let t = timestamp();"] {
        let out = script_error(src);
        out.code(2);
        assert!(out.stderr.contains("journaled `now()`"), "{src}: {}", out.stderr);
    }
}

#[test]
fn print_goes_to_the_run_log_not_stdout() {
    let p = TestProject::new();
    p.write("s.rhai", "print(\"hello from the script\");\nlog(#{a: 1});\n#{ ok: true }\n");
    let out = p.coord().args(["run", "s.rhai", "--json"]).run();
    out.code(0).stdout_lacks("hello from the script");
    assert_eq!(out.json()["result"]["ok"], true);
    let log = std::fs::read_to_string(p.runs()[0].join("run.log")).unwrap();
    assert!(log.contains("hello from the script"), "{log}");
}

#[test]
fn inputs_and_now_are_journaled() {
    let p = TestProject::new();
    p.write("s.rhai", "#{ repo: input(\"repo\"), all: inputs(), t: now() > 0 }\n");
    let out = p.coord().args(["run", "s.rhai", "--json", "--input", "repo=acme/widgets"]).run();
    out.code(0);
    let v = out.json();
    assert_eq!(v["result"]["repo"], "acme/widgets");
    assert_eq!(v["result"]["all"]["repo"], "acme/widgets");
    assert_eq!(v["result"]["t"], true);
    let journal = std::fs::read_to_string(p.runs()[0].join("journal.jsonl")).unwrap();
    assert!(journal.contains("\"fn\":\"now\""));
    assert!(journal.contains("\"fn\":\"input\""));
}

const VERDICT_SCHEMA: &str =
    r#"{ type = "object", required = ["verdict"], properties = { verdict = { enum = ["clean", "minor"] } } }"#;

/// A project whose `review` workflow runs `leaf.sh`, and a script that routes on its result.
fn command_project(leaf: &str, timeout: &str) -> TestProject {
    let p = TestProject::new();
    p.write_executable("leaf.sh", leaf);
    p.write("workflows/review.toml", &command_workflow("./leaf.sh", timeout, VERDICT_SCHEMA));
    p.write(
        "s.rhai",
        r#"
let r = await_sessions([spawn_session("review", #{ goal: "look", inputs: #{ pr: 1 } })])[0];
// The run carries on after a failed leaf and routes on it.
let route = if r.status == "ok" { "merge" } else { "escalate" };
#{ status: r.status, error: r.error, route: route, output: r.output }
"#,
    );
    p
}

fn run_command_project(p: &TestProject) -> serde_json::Value {
    let out = p.coord().args(["run", "s.rhai", "--json"]).run();
    out.code(0);
    out.json()["result"].clone()
}

#[test]
fn command_leaf_ok() {
    let p = command_project("#!/bin/sh\ncat > request.json\necho '{\"output\": {\"verdict\": \"clean\"}, \"usage\": {\"input_tokens\": 10, \"cost_usd\": 0.01}}'\n", "10s");
    let r = run_command_project(&p);
    assert_eq!(r["status"], "ok");
    assert_eq!(r["output"]["verdict"], "clean");
    let request: serde_json::Value = serde_json::from_str(&p.read("request.json")).unwrap();
    assert_eq!(request["goal"], "look");
    assert_eq!(request["inputs"]["pr"], 1);
    assert_eq!(request["prompt"], "look");
}

#[test]
fn command_leaf_violating_its_schema_is_a_failed_result() {
    let p = command_project("#!/bin/sh\necho '{\"verdict\": \"maybe\"}'\n", "10s");
    let r = run_command_project(&p);
    assert_eq!(r["status"], "failed");
    assert_eq!(r["route"], "escalate");
    assert!(r["error"].as_str().unwrap().contains("schema violation"), "{r}");
    assert!(r["error"].as_str().unwrap().contains("/verdict"), "{r}");
}

#[test]
fn command_leaf_exiting_non_zero_is_a_failed_result() {
    let p = command_project("#!/bin/sh\necho 'model overloaded' >&2\nexit 3\n", "10s");
    let r = run_command_project(&p);
    assert_eq!(r["status"], "failed");
    let err = r["error"].as_str().unwrap();
    assert!(err.contains("exited with status 3") && err.contains("model overloaded"), "{err}");
}

#[test]
fn command_leaf_printing_garbage_is_a_failed_result() {
    let p = command_project("#!/bin/sh\necho 'I think it looks fine!'\n", "10s");
    let r = run_command_project(&p);
    assert_eq!(r["status"], "failed");
    assert!(r["error"].as_str().unwrap().contains("not JSON"), "{r}");
}

#[test]
fn command_leaf_outliving_its_timeout_is_killed_with_its_children() {
    let p = command_project("#!/bin/sh\nsleep 60 &\necho $! > child.pid\nsleep 60\n", "1s");
    let r = run_command_project(&p);
    assert_eq!(r["status"], "timeout");
    assert!(r["error"].as_str().unwrap().contains("timed out after 1s"), "{r}");
    let pid: i32 = p.read("child.pid").trim().parse().expect("the leaf wrote its child's pid");
    std::thread::sleep(Duration::from_millis(200));
    assert!(!support::process_alive(pid), "the leaf's child {pid} outlived the timeout");
}

#[test]
fn dry_run_journals_intents_and_performs_nothing() {
    let p = TestProject::with_repo_files();
    let out = p.coord().args(["run", "coordinators/groom-prs.rhai", "--demo", "--json", "--dry-run"]).run();
    out.code(0);
    let v = out.json();
    let effects = v["effects"].as_array().unwrap();
    assert!(!effects.is_empty());
    assert!(effects.iter().all(|e| e["status"] == "dry_run"), "{effects:?}");
    let journal = std::fs::read_to_string(p.runs()[0].join("journal.jsonl")).unwrap();
    assert!(journal.contains("\"effect_intent\""));
}

#[test]
fn a_live_run_without_a_backend_says_what_to_configure() {
    let p = TestProject::with_repo_files();
    let out = p.coord().env("PATH", "/usr/bin:/bin").args(["run", "coordinators/groom-prs.rhai"]).run();
    // Refused before anything runs: the review leaves' agent is not installed.
    out.code(2);
    assert!(
        out.stderr.contains("the claude-code harness (workflows coding-task, mr-review) cannot run"),
        "{}",
        out.stderr
    );
    out.stderr_has("Fix: install it (`npm install -g @anthropic-ai/claude-code`)").stderr_has("--demo");
    assert!(p.runs().is_empty(), "no run directory");
    // `coord check` names the same harness, as a warning: its verdict is about the files.
    let check = p.coord().env("PATH", "/usr/bin:/bin").args(["check", "coordinators/groom-prs.rhai"]).run();
    check.code(0);
    assert!(
        check.stderr.contains("warning: the claude-code harness (workflows coding-task, mr-review) cannot run"),
        "{}",
        check.stderr
    );
}

#[test]
fn usage_errors_exit_2() {
    let p = TestProject::new();
    p.coord().args(["run"]).run().code(2);
    p.coord().args(["run", "missing.rhai"]).run().code(2);
    p.write("s.rhai", "1");
    p.coord().args(["run", "s.rhai", "--input", "novalue"]).run().code(2);
    p.coord().args(["run", "s.rhai", "--demo"]).run().code(2);
}

#[test]
fn runaway_data_growth_is_stopped_by_the_memory_budget() {
    let out = script_error("let s = \"x\";\nloop {\n  s += s;\n}\n");
    out.code(2).stderr_has("memory budget");
    // Copying a gigabyte string a few times; generous for a debug build on a loaded machine.
}

/// A spawn with options the script got wrong throws before it takes a session id or a journal
/// line: a script that catches the error finds no half-made session to wait on, and a negative
/// or malformed timeout is a script error, never a crash.
#[test]
fn spawn_with_bad_options_throws_and_leaves_no_session_behind() {
    let p = command_project("#!/bin/sh\necho '{\"output\": {\"verdict\": \"clean\"}}'\n", "10s");
    p.write(
        "bad.rhai",
        r#"
let errors = [];
for timeout in ["abc", -5, true] {
    try {
        spawn_session("review", #{ goal: "look", timeout: timeout });
    } catch (e) {
        errors.push(e);
    }
}
// The three refused spawns took no id: the first real one is s1, and s2 names nothing.
let h = spawn_session("review", #{ goal: "look" });
let waited = "waited";
try {
    await_sessions(["s2"]);
} catch (e) {
    waited = e;
}
let r = await_sessions([h])[0];
#{ errors: errors, id: h.id, status: r.status, waited: waited }
"#,
    );
    let out = p.coord().args(["run", "bad.rhai", "--json"]).run();
    out.code(0);
    let r = out.json()["result"].clone();
    let errors: Vec<&str> = r["errors"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert_eq!(errors.len(), 3, "{r}");
    assert!(errors[0].contains("spawn_session: timeout `abc`"), "{}", errors[0]);
    assert!(errors[1].contains("non-negative number of seconds"), "{}", errors[1]);
    assert!(errors[2].contains("not a bool"), "{}", errors[2]);
    assert_eq!(r["id"], "s1");
    assert_eq!(r["status"], "ok");
    assert!(r["waited"].as_str().unwrap().contains("no session `s2`"), "{r}");
    let journal = std::fs::read_to_string(p.runs()[0].join("journal.jsonl")).unwrap();
    assert_eq!(journal.matches("\"fn\":\"spawn_session\"").count(), 1, "{journal}");

    // The replay throws where the run threw, so it agrees with the journal.
    let run = p.runs()[0].display().to_string();
    p.coord().args(["replay", &run, "--json"]).run().code(0);
}

/// A prompt template that fails to render for one leaf's inputs fails that session (the
/// scheduler renders it, off the script thread), with the template's reason; the run goes on.
#[test]
fn a_prompt_that_fails_to_render_is_a_failed_result() {
    let p = TestProject::new();
    p.write_executable("leaf.sh", "#!/bin/sh\ncat > /dev/null\necho '{\"verdict\": \"clean\"}'\n");
    p.write(
        "workflows/review.toml",
        &(command_workflow("./leaf.sh", "10s", VERDICT_SCHEMA)
            .replace("prompt = \"{{ goal }}\"", "prompt = \"{{ goal }}: {{ inputs.items | join(', ') }}\"")
            + "[inputs]\nitems = \"array: what to look at\"\n"),
    );
    p.write(
        "s.rhai",
        r#"
let good = spawn_session("review", #{ goal: "look", inputs: #{ items: ["a", "b"] } });
let bad = spawn_session("review", #{ goal: "look", inputs: #{ items: 5 } });
let rs = await_sessions([good, bad]);
#{ good: rs[0].status, bad: rs[1].status, error: rs[1].error }
"#,
    );
    let out = p.coord().args(["run", "s.rhai", "--json"]).run();
    out.code(0);
    let r = out.json()["result"].clone();
    assert_eq!(r["good"], "ok", "{r}");
    assert_eq!(r["bad"], "failed", "{r}");
    assert!(r["error"].as_str().unwrap().contains("prompt template"), "{r}");
}

/// A mistyped key in any options or message map is exit 2 with `file:line:col` and the key
/// meant: from `coord check`, and from `coord run` before anything runs. Host API misuse
/// (wrong types, a clock or sleep call) is exit 2 with the call's position too.
#[test]
fn mistyped_keys_and_host_api_misuse_are_usage_errors_with_a_position() {
    let p = TestProject::with_repo_files();
    let typos = [
        ("spawn_session(\"mr-review\", #{ gaol: \"x\" });", "spawn_session: unknown option `gaol`", "`goal`"),
        ("spawn_session(\"mr-review\", #{ timout: \"1m\" });", "spawn_session: unknown option `timout`", "`timeout`"),
        ("merge(12, #{ methd: \"squash\" });", "merge: unknown option `methd`", "`method`"),
        ("merge(12, #{ requre_green: false });", "merge: unknown option `requre_green`", "`require_green`"),
        ("github::prs(#{ stat: \"open\" });", "github::prs: unknown option `stat`", "`state`"),
        ("notify(\"stdout\", #{ title: \"t\", feilds: #{} });", "notify: unknown message key `feilds`", "`fields`"),
    ];
    for (line, message, meant) in typos {
        p.write("typo.rhai", &format!("let x = 1;\n{line}\n"));
        for args in [vec!["check", "typo.rhai"], vec!["run", "typo.rhai", "--demo"]] {
            let out = p.coord().args(&args).run();
            out.code(2);
            assert!(out.stderr.contains("typo.rhai:2:"), "{args:?}: {}", out.stderr);
            assert!(out.stderr.contains(message) && out.stderr.contains(meant), "{args:?}: {}", out.stderr);
        }
        assert!(p.runs().is_empty(), "no run directory for {line}");
    }

    // An offline world for the runs below: one PR, every review clean.
    p.write(
        "world.toml",
        "[[github.prs]]\nnumber = 12\ntitle = \"t\"\n[[leaf]]\nworkflow = \"mr-review\"\noutput = { verdict = \"clean\", findings = [] }\n",
    );
    // A key made at run time is refused when the call is made.
    p.write("dynamic.rhai", "let opts = #{};\nopts[\"gaol\"] = \"x\";\nspawn_session(\"mr-review\", opts);\n");
    let out = p.coord().args(["run", "dynamic.rhai", "--scenario", "world.toml"]).run();
    out.code(2);
    assert!(out.stderr.contains("dynamic.rhai:3:") && out.stderr.contains("did you mean `goal`?"), "{}", out.stderr);

    // A misspelled host function stops `coord run` before any leaf runs.
    p.write(
        "lable.rhai",
        "await_sessions([spawn_session(\"mr-review\", #{ goal: \"x\" })]);\ngithub::lable(12, \"x\");\n",
    );
    let runs_before = p.runs().len();
    let out = p.coord().args(["run", "lable.rhai", "--scenario", "world.toml"]).run();
    out.code(2);
    assert!(out.stderr.contains("lable.rhai:2:") && out.stderr.contains("github::label"), "{}", out.stderr);
    assert_eq!(p.runs().len(), runs_before, "refused before the run started");

    let misuse = [
        ("spawn_session(\"nope\", #{});", "no workflow `nope`"),
        ("spawn_session(\"mr-review\", #{ inputs: 5 });", "`inputs` must be a map"),
        ("spawn_session(\"mr-review\", #{ timeout: \"banana\" });", "banana"),
        ("merge(3.5, #{});", "merge: expected a PR number"),
        ("github::pr(\"abc\");", "github::pr: expected a number"),
        ("github::label(1, 5);", "github::label: `labels` cannot be"),
        ("timestamp();", "`timestamp` is not available"),
        ("sleep(\"soon\");", "`soon` is not a duration"),
    ];
    for (line, message) in misuse {
        let dynamic = line.replace("\"nope\"", "[\"nope\"][0]");
        p.write("misuse.rhai", &format!("let x = 1;\n{dynamic}\n"));
        let out = p.coord().args(["run", "misuse.rhai", "--scenario", "world.toml"]).run();
        out.code(2);
        assert!(out.stderr.contains("misuse.rhai:2:"), "{line}: {}", out.stderr);
        assert!(out.stderr.contains(message), "{line}: {}", out.stderr);
        assert!(!out.stderr.contains("the script threw"), "{line}: {}", out.stderr);
    }
}

/// Inputs are typed: a coordinator declares them in its `//!` header, `--input` text is read
/// as the declared type, `--input-json` and `--inputs FILE` give structured values, and a
/// missing, mistyped or misspelt input is exit 2 before anything runs.
#[test]
fn typed_inputs_from_the_command_line_and_files() {
    let p = TestProject::with_repo_files();
    // gated-jobs with its workstreams given in a file: the demo's own, without its [inputs].
    let demo = p.read("coordinators/gated-jobs/scenarios/demo.toml");
    let (head, rest) = demo.split_once("[inputs]").unwrap();
    let leaves_at = rest.find("[[leaf]]").unwrap();
    p.write("inputs.toml", &rest[..leaves_at].replace("[[inputs.workstreams]]", "[[workstreams]]"));
    p.write("world.toml", &format!("{head}{}", &rest[leaves_at..]));
    let from_file = p
        .coord()
        .args(["run", "coordinators/gated-jobs.rhai", "--scenario", "world.toml", "--inputs", "inputs.toml", "--json"])
        .run();
    from_file.code(0);
    let demo_run = p.coord().args(["run", "coordinators/gated-jobs.rhai", "--demo", "--json"]).run();
    demo_run.code(0);
    assert_eq!(from_file.json()["result"], demo_run.json()["result"]);
    assert_eq!(from_file.json()["effects"], demo_run.json()["effects"]);

    // Text read as its declared type; JSON as given.
    let out =
        p.coord().args(["run", "coordinators/spec-to-merge.rhai", "--demo", "--input", "parallel=3", "--json"]).run();
    out.code(0);
    let out = p
        .coord()
        .args(["run", "coordinators/spec-to-merge.rhai", "--demo", "--input-json", "parallel=1", "--json"])
        .run();
    out.code(0);

    let runs_before = p.runs().len();
    let refused = [
        (vec!["--input", "parallel=many"], "input `parallel`: expected integer, got the text \"many\""),
        (vec!["--input-json", "parallel=[2]"], "input `parallel`: expected integer, got an array"),
        (vec!["--input", "paralel=3"], "unknown input `paralel`: did you mean `parallel`?"),
    ];
    for (args, message) in refused {
        let out = p.coord().args(["run", "coordinators/spec-to-merge.rhai", "--demo"]).args(&args).run();
        out.code(2);
        assert!(out.stderr.contains(message), "{args:?}: {}", out.stderr);
    }
    p.write(
        "needs.rhai",
        "//! [inputs]\n//! issue = { type = \"integer\", description = \"the issue\" }\ninput(\"issue\")\n",
    );
    let out = p.coord().args(["run", "needs.rhai", "--scenario", "world.toml"]).run();
    out.code(2).stderr_has("missing input `issue` (integer, the issue)");
    assert_eq!(p.runs().len(), runs_before, "nothing ran");

    let help = p.coord().args(["run", "coordinators/spec-to-merge.rhai", "--help-inputs"]).run();
    help.code(0).stdout_has("parallel   integer  default 2").stdout_has("spec_file  string   default \"spec.md\"");
}

/// `--dry-run` changes nothing outside the machine: no effect acts, a leaf that could write
/// (here a fix in a worktree that would create a file) is held back as `skipped_dry_run`, the
/// read-only leaves that do run get no GitHub or Slack credentials, and coord says what it
/// held back; `--dry-run=no-leaves` runs no leaf at all.
#[test]
fn a_dry_run_holds_back_writing_leaves_and_credentials() {
    let p = TestProject::with_repo_files();
    p.write(".gitignore", ".coord/\n");
    p.write_executable(
        "review.sh",
        "#!/bin/sh\ncat >/dev/null\necho \"{\\\"verdict\\\":\\\"minor\\\",\\\"summary\\\":\\\"token=${GITHUB_TOKEN:-none} slack=${SLACK_WEBHOOK_URL:-none}\\\",\\\"findings\\\":[{\\\"severity\\\":\\\"minor\\\",\\\"message\\\":\\\"m\\\"}]}\"\n",
    );
    p.write_executable("fix.sh", "#!/bin/sh\ncat >/dev/null\ntouch \"$COORD_RUN_DIR/../../../FIXED\"\necho '{\"status\":\"fixed\",\"summary\":\"done\"}'\n");
    let review = p.read("workflows/mr-review.toml");
    p.write("workflows/mr-review.toml", &format!("command = [\"./review.sh\"]\n{review}"));
    let fix = p.read("workflows/coding-task.toml");
    p.write("workflows/coding-task.toml", &format!("command = [\"./fix.sh\"]\n{fix}"));
    p.write("coord.toml", "[channels.\"slack:#eng\"]\ntype = \"slack\"\nwebhook_env = \"SLACK_WEBHOOK_URL\"\n");
    for args in [
        ["init", "-q"].as_slice(),
        &["add", "."],
        &["-c", "user.name=t", "-c", "user.email=t@test", "commit", "-qm", "root"],
    ] {
        assert!(std::process::Command::new("git").current_dir(p.path()).args(args).status().unwrap().success());
    }
    let run = |extra: &[&str]| {
        p.coord()
            .env("GITHUB_TOKEN", "ghp_dryRunCanary000000000000000000000000")
            .env("SLACK_WEBHOOK_URL", "https://hooks.slack.test/services/T0/B0/canary")
            .args([
                "run",
                "coordinators/groom-prs.rhai",
                "--demo",
                "--json",
                "--leaf",
                "mr-review=command",
                "--leaf",
                "coding-task=command",
            ])
            .args(extra)
            .run()
    };
    let out = run(&["--dry-run"]);
    out.code(0);
    assert!(!p.path().join("FIXED").exists(), "the fix leaf did not run");
    let v = out.json();
    let leaves = v["leaves"].as_array().unwrap();
    let fixes: Vec<&Value> = leaves.iter().filter(|l| l["workflow"] == "coding-task").collect();
    assert!(!fixes.is_empty() && fixes.iter().all(|l| l["status"] == "skipped_dry_run"), "{fixes:?}");
    let reviews: Vec<&Value> = leaves.iter().filter(|l| l["workflow"] == "mr-review").collect();
    assert!(reviews.iter().all(|l| l["status"] == "ok"), "{reviews:?}");
    assert!(v["effects"].as_array().unwrap().iter().all(|e| e["status"] == "dry_run"), "{}", v["effects"]);
    let journal = std::fs::read_to_string(p.runs()[0].join("journal.jsonl")).unwrap();
    assert!(
        journal.contains("token=none slack=none"),
        "the leaves got no credentials: {}",
        journal.lines().filter(|l| l.contains("token=")).take(2).collect::<Vec<_>>().join("\n")
    );
    out.stderr_has("held back: coding-task")
        .stderr_has("may run: mr-review (command)")
        .stderr_has("dry run: held back leaves: coding-task ×");

    let out = run(&["--dry-run=no-leaves"]);
    out.code(0);
    let v = out.json();
    assert!(v["leaves"].as_array().unwrap().iter().all(|l| l["status"] == "skipped_dry_run"), "{}", v["leaves"]);

    // Without --dry-run the same fix does run (the test's own control).
    run(&[]).code(0);
    assert!(p.path().join("FIXED").exists(), "the fix leaf runs in a real run");
}

/// The powers beyond routing are documented and can be taken away: `command` in a spawn runs
/// any program unless `[capabilities] spawn_command = false`, and `file:` channels stay inside
/// the project unless `[capabilities] file_outside_project = true`.
#[test]
fn capabilities_can_be_switched_off_and_file_channels_stay_in_the_project() {
    let p = command_project("#!/bin/sh\ncat >/dev/null\necho '{\"verdict\": \"clean\"}'\n", "10s");
    p.write("cmd.rhai", "await_sessions([spawn_session(\"review\", #{ command: [\"./leaf.sh\"] })])[0].status\n");
    p.coord().args(["run", "cmd.rhai", "--json"]).run().code(0);
    p.write("coord.toml", "[capabilities]\nspawn_command = false\n");
    let out = p.coord().args(["run", "cmd.rhai"]).run();
    out.code(2);
    assert!(out.stderr.contains("cmd.rhai:1:") && out.stderr.contains("spawn_command = false"), "{}", out.stderr);

    let outside = p.path().parent().unwrap().join("coord-outside-the-project.jsonl");
    p.write("coord.toml", "");
    p.write("note.rhai", "#{ inside: notify(\"file:notes/n.jsonl\", \"hi\").status, outside: notify(\"file:../coord-outside-the-project.jsonl\", \"hi\").status }\n");
    let out = p.coord().args(["run", "note.rhai", "--json"]).run();
    out.code(4); // an effect failed
    assert_eq!(out.json()["result"], serde_json::json!({"inside": "sent", "outside": "failed"}), "{}", out.stdout);
    assert!(p.path().join("notes/n.jsonl").exists());
    assert!(!outside.exists(), "nothing was written outside the project");
}
