//! Seeing a run, through the binary: `coord runs`, `coord show`, `coord graph`, `coord report`,
//! the live progress of `coord run`, and secret redaction. Snapshots are taken on the recorded
//! demo run with what varies (run ids, timestamps, durations) redacted; the HTML report is
//! opened in headless Chromium.

use crate::support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{Outcome, TestProject};

/// A project with the demo run of groom-prs recorded in `.coord/runs`.
fn demo_project() -> TestProject {
    let p = TestProject::with_repo_files();
    p.coord().args(["run", "coordinators/groom-prs.rhai", "--demo"]).run().code(0);
    p
}

/// Replaces what differs between two recordings of the same run.
fn stable_text() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"\d{8}-\d{6}-[0-9a-f]{4}", "[run-id]"),
        (r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?Z?", "[time]"),
        (r"\b\d+(\.\d+)?(ms|s)\b|\b\d+m\d{2}s\b|\b\d+h\d{2}m\b", "[duration]"),
        // Mock leaves take 0 or 1ms, so which one is longest (or whether any is) varies.
        (r"(?m)^  longest session: .*\n", ""),
    ]
}

macro_rules! assert_stable_snapshot {
    ($name:expr, $text:expr) => {{
        let text: String = $text;
        insta::with_settings!({ filters => stable_text(), prepend_module_to_snapshot => true }, {
            insta::assert_snapshot!($name, text);
        });
    }};
}

#[test]
fn show_renders_the_tree_with_verdicts_effects_errors_and_cost() {
    let p = demo_project();
    let out = p.coord().args(["show", "last"]).run();
    out.code(0);
    // The fix hangs under the review that asked for it, the re-review under the fix.
    out.stdout_has("│   └── s7 coding-task · call 23 · ok · status: fixed")
        .stdout_has("│       └── s9 mr-review · call 28 · ok · verdict: clean");
    assert_stable_snapshot!("show_demo", out.stdout);
}

#[test]
fn show_session_gives_goal_inputs_output_and_transcript() {
    let p = demo_project();
    let out = p.coord().args(["show", "last", "--session", "s4"]).run();
    out.code(0);
    assert_stable_snapshot!("show_session_s4", out.stdout);

    let missing = p.coord().args(["show", "last", "--session", "s99"]).run();
    missing.code(2).stderr_has("no session `s99`");
}

#[test]
fn show_session_renders_a_transcript_blob() {
    let p = demo_project();
    let run = p.runs().pop().unwrap();
    let transcript = "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"text\",\"text\":\"Reading the diff.\"}]}}\nplain tail\n";
    let hash = put_blob(&run, transcript.as_bytes());
    rewrite_journal(&run, |line| {
        if line.contains("\"type\":\"session\"") && line.contains("\"session\":\"s1\"") {
            let mut v: Value = serde_json::from_str(line).unwrap();
            v["result"]["transcript"] = Value::String(hash.clone());
            v.to_string()
        } else {
            line.to_owned()
        }
    });
    let out = p.coord().args(["show", "last", "--session", "s1"]).run();
    out.code(0).stdout_has("Transcript\n  [assistant] Reading the diff.\n  plain tail\n");
}

#[test]
fn show_trace_appends_the_routing_trace() {
    let p = demo_project();
    let out = p.coord().args(["show", "last", "--trace"]).run();
    out.code(0);
    let trace = out.stdout.split("\nTrace\n").nth(1).expect("a Trace section");
    assert!(trace.contains("await [s1 s2 s3 s4 s5 s6] -> ok ok ok ok ok timeout"), "{trace}");
    assert!(trace.contains("merge PR #12 squash -> merged"), "{trace}");
}

#[test]
fn show_of_an_unknown_run_is_a_usage_error() {
    let p = demo_project();
    let out = p.coord().args(["show", "nope"]).run();
    out.code(2).stderr_has("no run `nope`");
}

#[test]
fn runs_json_lists_each_run_with_status_sessions_and_cost() {
    let p = demo_project();
    let out = p.coord().args(["runs", "--json"]).run();
    out.code(0);
    let mut runs = out.json();
    let first = &mut runs[0];
    assert!(first["duration_ms"].is_u64(), "{first}");
    for (field, placeholder) in [("id", "[run-id]"), ("started_at", "[time]"), ("duration_ms", "[duration]")] {
        first[field] = Value::String(placeholder.into());
    }
    insta::assert_json_snapshot!("runs_json_demo", runs);
}

#[test]
fn runs_table_and_filters() {
    let p = demo_project();
    let table = p.coord().args(["runs"]).run();
    table.code(0);
    assert!(table.stdout.starts_with("ID "), "{}", table.stdout);
    table.stdout_has("groom-prs    succeeded").stdout_has("14 (1 not ok)");

    let count = |args: &[&str]| p.coord().args(["runs", "--json"]).args(args).run().json().as_array().unwrap().len();
    assert_eq!(count(&["--status", "succeeded"]), 1);
    assert_eq!(count(&["--status", "failed"]), 0);
    assert_eq!(count(&["--coordinator", "groom-prs"]), 1);
    assert_eq!(count(&["--coordinator", "other"]), 0);
    p.coord().args(["runs", "--status", "bogus"]).run().code(2);
}

#[test]
fn a_run_without_an_end_is_running_while_its_owner_lives_and_interrupted_after() {
    let p = demo_project();
    let run = p.runs().pop().unwrap();
    rewrite_journal(&run, |line| if line.contains("\"run_finished\"") { String::new() } else { line.to_owned() });
    let status = || p.coord().args(["runs", "--json"]).run().json()[0]["status"].clone();
    // No pid file: the process that wrote it is gone.
    assert_eq!(status(), "interrupted");
    // A live owner (this test process).
    std::fs::write(run.join("run.pid"), std::process::id().to_string()).unwrap();
    assert_eq!(status(), "running");
    let show = p.coord().args(["show", "last"]).run();
    show.code(0);
    assert!(show.stdout.starts_with("groom-prs · running"), "{}", show.stdout);
}

#[test]
fn graph_mermaid_and_dot_snapshots() {
    let p = demo_project();
    let mermaid = p.coord().args(["graph", "last"]).run();
    mermaid.code(0).stdout_has("  s3 --> s7\n").stdout_has("  s7 --> s9\n").stdout_has("  s9 --> e32\n");
    assert_stable_snapshot!("graph_mermaid_demo", mermaid.stdout);

    let dot = p.coord().args(["graph", "last", "--format", "dot"]).run();
    dot.code(0);
    assert_stable_snapshot!("graph_dot_demo", dot.stdout);
}

#[test]
fn views_redact_secret_values_from_the_environment_and_coord_toml() {
    let p = demo_project();
    p.write("coord.toml", "[github]\ntoken_env = \"REVIEWER_PHRASE\"\n");
    let redacted = |args: &[&str]| {
        let out = p
            .coord()
            .env("WIDGETS_API_TOKEN", "acme/widgets")
            .env("REVIEWER_PHRASE", "Session fixation risk")
            .args(args)
            .run();
        out.code(0);
        out
    };
    let show = redacted(&["show", "last"]);
    show.stdout_lacks("acme/widgets").stdout_lacks("Session fixation risk").stdout_has("groom-prs on [redacted]");
    let session = redacted(&["show", "last", "--session", "s4"]);
    assert!(
        !session.stdout.contains("acme/widgets") && !session.stdout.contains("Session fixation risk"),
        "{}",
        session.stdout
    );
    redacted(&["report", "last", "-o", "r.html"]);
    let html = p.read("r.html");
    assert!(!html.contains("acme/widgets") && !html.contains("Session fixation risk"));
    assert!(html.contains("[redacted]"));
}

#[test]
fn run_logs_one_line_per_session_start_and_finish_off_a_terminal() {
    let p = TestProject::with_repo_files();
    let out = p.coord().args(["run", "coordinators/groom-prs.rhai", "--demo"]).run();
    out.code(0);
    assert_eq!(out.stderr.matches("session started").count(), 14, "{}", out.stderr);
    assert_eq!(out.stderr.matches("session finished").count(), 14, "{}", out.stderr);
    out.stderr_has("session=s6 workflow=mr-review status=timeout");

    let quiet = p.coord().args(["--quiet", "run", "coordinators/groom-prs.rhai", "--demo"]).run();
    quiet.code(0).stderr_lacks("session");

    let json = p.coord().args(["--log-format", "json", "run", "coordinators/groom-prs.rhai", "--demo"]).run();
    json.code(0);
    let finished: Vec<Value> = json
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "session finished")
        .collect();
    assert_eq!(finished.len(), 14, "{}", json.stderr);
    assert!(finished.iter().any(|v| v["fields"]["session"] == "s1" && v["fields"]["tokens"] == 19100), "{finished:?}");
}

// ---- simulated spend: scenario runs (mock leaves) are marked, and kept out of real totals ----

/// A live run that spends real (here: reported) money: one command leaf that costs $0.25.
fn add_paid_live_run(p: &TestProject) {
    p.write_executable(
        "paid.sh",
        "#!/bin/sh\ncat > /dev/null\necho '{\"output\": {\"verdict\": \"clean\"}, \"usage\": {\"input_tokens\": 1000, \"output_tokens\": 200, \"cost_usd\": 0.25}}'\n",
    );
    p.write(
        "workflows/paid-review.toml",
        &support::command_workflow(
            "./paid.sh",
            "10s",
            r#"{ type = "object", required = ["verdict"], properties = { verdict = { enum = ["clean"] } } }"#,
        ),
    );
    p.write(
        "paid.rhai",
        "let r = await_sessions([spawn_session(\"paid-review\", #{ goal: \"look\" })])[0];\nr.status\n",
    );
    let out = p.coord().args(["run", "paid.rhai", "--json"]).run();
    out.code(0);
    assert_eq!(out.json()["usage"]["cost_usd"], 0.25, "{}", out.stdout);
}

#[test]
fn run_summary_says_a_demo_runs_spend_is_simulated() {
    let p = TestProject::with_repo_files();
    let text = p.coord().args(["--quiet", "run", "coordinators/groom-prs.rhai", "--demo"]).run();
    text.code(0);
    let first = text.stdout.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        "groom-prs: succeeded — 14 sessions, 9 effects, 322700 tokens, $1.3220 (simulated: mock leaves, no money spent)"
    );
    let json = p.coord().args(["--quiet", "run", "coordinators/groom-prs.rhai", "--demo", "--json"]).run();
    json.code(0);
    let usage = &json.json()["usage"];
    assert_eq!(usage["simulated"], true, "{usage}");
    assert_eq!(usage["simulated_cost_usd"], 1.322, "{usage}");
    assert_eq!(usage["cost_usd"], 1.322, "{usage}");

    // A live run (its script spawns nothing): no marker, and no `simulated` key.
    p.write("s.rhai", "1");
    let live = p.coord().args(["--quiet", "run", "s.rhai"]).run();
    live.code(0);
    assert!(live.stdout.starts_with("s: succeeded — 0 sessions, 0 effects, 0 tokens, $0.0000\n"), "{}", live.stdout);
    live.stdout_lacks("simulated");
    let live_json = p.coord().args(["--quiet", "run", "s.rhai", "--json"]).run();
    live_json.code(0);
    let usage = &live_json.json()["usage"];
    assert!(usage.get("simulated").is_none() && usage.get("simulated_cost_usd").is_none(), "{usage}");
}

#[test]
fn runs_and_show_mark_a_scenario_run_simulated_and_a_live_run_not() {
    let p = demo_project();
    add_paid_live_run(&p);
    let table = p.coord().args(["runs"]).run();
    table.code(0);
    let row = |coordinator: &str| {
        table
            .stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(coordinator))
            .unwrap_or_else(|| panic!("no {coordinator} row:\n{}", table.stdout))
            .to_owned()
    };
    assert!(row("groom-prs").ends_with("$1.3220 (simulated)"), "{}", table.stdout);
    assert!(row("paid").ends_with("$0.2500"), "{}", table.stdout);

    let runs = p.coord().args(["runs", "--json"]).run().json();
    let by_name = |name: &str| runs.as_array().unwrap().iter().find(|r| r["coordinator"] == name).unwrap().clone();
    assert_eq!(by_name("groom-prs")["simulated"], true);
    assert_eq!(by_name("groom-prs")["simulated_cost_usd"], 1.322);
    assert_eq!(by_name("paid")["simulated"], false);
    assert_eq!(by_name("paid")["simulated_cost_usd"], 0.0);
    assert_eq!(by_name("paid")["mode"], "live");

    let demo_id = by_name("groom-prs")["id"].as_str().unwrap().to_owned();
    let paid_id = by_name("paid")["id"].as_str().unwrap().to_owned();
    let demo = p.coord().args(["show", &demo_id]).run();
    demo.code(0)
        .stdout_has(" · 322,700 tokens · $1.3220 (simulated)\n")
        .stdout_has("\nCost (simulated: mock leaves, no money spent)\n");
    let paid = p.coord().args(["show", &paid_id]).run();
    paid.code(0).stdout_has("  1 session · 0 effects · 1,200 tokens · $0.2500\n");
    assert!(
        paid.stdout.contains("  by workflow  paid-review    1 session       1,200 tokens  $0.2500\n"),
        "{}",
        paid.stdout
    );
    paid.stdout_lacks("simulated");

    p.coord().args(["report", &demo_id, "-o", "demo.html"]).run().code(0);
    let html = p.read("demo.html");
    assert!(html.contains("id=\"simulated\""), "the report of a scenario run says its cost is simulated");
    assert!(html.contains("<div class=\"label\">Simulated cost</div>"), "{html}");
    p.coord().args(["report", &paid_id, "-o", "paid.html"]).run().code(0);
    let html = p.read("paid.html");
    assert!(!html.contains("simulated") && !html.contains("Simulated"), "a live run's report says nothing simulated");
}

#[test]
fn report_all_keeps_simulated_spend_out_of_the_real_total() {
    let chromium = chromium();
    let p = demo_project();
    add_paid_live_run(&p);
    p.coord()
        .args(["report", "--all", "-o", "runs.html"])
        .run()
        .code(0)
        .stdout_has("wrote runs.html and 2 run reports in runs/");
    let html = p.read("runs.html");
    assert!(html.contains("<span id=\"spend\">real spend $0.2500 · simulated $1.3220</span>"), "{html}");
    // Each run links to its own report, written beside the index.
    let pages: Vec<String> = std::fs::read_dir(p.path().join("runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(pages.len(), 2, "{pages:?}");
    for page in pages {
        let id = page.strip_suffix(".html").expect("an HTML page");
        assert!(html.contains(&format!("<a href=\"runs&#x2f;{id}.html\">{id}</a>")), "{html}");
        assert!(p.read(&format!("runs/{page}")).contains("Routing trace"), "the run's report, trace included");
    }
    assert!(html.contains("<div class=\"label\">Real spend</div><div class=\"value\">$0.2500</div>"), "{html}");
    assert!(html.contains("<div class=\"label\">Simulated spend</div><div class=\"value\">$1.3220</div>"), "{html}");
    // Nowhere is mock money added to real money.
    assert!(!html.contains("$1.5720"), "{html}");
    // groom-prs spent no real money; its simulated dollars stand apart.
    assert!(
        html.contains("<tr><td>groom-prs</td><td class=\"num\">14</td><td class=\"num\">322,700</td><td class=\"num\">$0.0000</td><td class=\"num\">$1.3220</td>"),
        "{html}"
    );
    assert_eq!(html.matches("data-spend=\"simulated\"").count(), 1, "one simulated bar");
    assert!(html.contains("groom-prs · succeeded · $1.3220 (simulated)</title>"), "{html}");

    let dom = chromium_run(&chromium, p.path(), &["--dump-dom"], &p.path().join("runs.html"));
    assert_no_console_errors(&dom);
    assert_eq!(dom.stdout.matches("class=\"cost-bar\"").count(), 2);
    assert_eq!(dom.stdout.matches("<span class=\"badge sim\">simulated</span>").count(), 1);
}

#[test]
fn a_scenario_run_with_a_real_leaf_splits_real_and_simulated_spend() {
    let p = TestProject::new();
    add_paid_live_run(&p);
    // The same leaf runs for real (`--leaf`) beside a mock one in a scenario world.
    p.write(
        "workflows/mock-review.toml",
        &support::command_workflow("./paid.sh", "10s", r#"{ type = "object", required = ["verdict"] }"#),
    );
    p.write(
        "world.toml",
        "now = \"2026-11-21T09:00:00Z\"\n\n[[leaf]]\nworkflow = \"mock-review\"\noutput = { verdict = \"clean\" }\nusage = { input_tokens = 100, output_tokens = 10, cost_usd = 0.5 }\n",
    );
    p.write(
        "mixed.rhai",
        "let rs = await_sessions([spawn_session(\"paid-review\", #{ goal: \"real\" }), spawn_session(\"mock-review\", #{ goal: \"mock\" })]);\nrs.map(|r| r.status)\n",
    );
    let args = ["--quiet", "run", "mixed.rhai", "--scenario", "world.toml", "--leaf", "paid-review=command"];
    let text = p.coord().args(args).run();
    text.code(0);
    assert!(
        text.stdout.starts_with(
            "mixed: succeeded — 2 sessions, 0 effects, 1310 tokens, $0.7500 (mock leaves simulated $0.5000 of it, no money spent)\n"
        ),
        "{}",
        text.stdout
    );
    let json = p.coord().args(args).args(["--json"]).run();
    json.code(0);
    // Named by id: `last` cannot tell apart runs started within the same second.
    let run_id = json.json()["run_id"].as_str().unwrap().to_owned();
    let usage = &json.json()["usage"];
    assert_eq!((usage["cost_usd"].clone(), usage["simulated_cost_usd"].clone()), (0.75.into(), 0.5.into()), "{usage}");
    assert!(usage.get("simulated").is_none(), "not all of it was simulated: {usage}");

    let table = p.coord().args(["runs", "--coordinator", "mixed"]).run();
    assert!(table.stdout.lines().nth(1).unwrap().ends_with("$0.2500 + $0.5000 simulated"), "{}", table.stdout);
    let show = p.coord().args(["show", &run_id]).run();
    show.stdout_has(" · 1,310 tokens · $0.2500 + $0.5000 simulated\n");
    assert!(
        show.stdout.contains("\nCost (real $0.2500 · simulated $0.5000 by mock leaves, no money spent)\n"),
        "{}",
        show.stdout
    );

    p.coord().args(["report", "--all", "-o", "runs.html"]).run().code(0);
    let html = p.read("runs.html");
    // Two runs of mixed (text and JSON) and one live run of paid: $0.25 real each.
    assert!(html.contains("<span id=\"spend\">real spend $0.7500 · simulated $1.0000</span>"), "{html}");
    assert_eq!(html.matches("class=\"cost-bar-part\"").count(), 2, "the simulated part of each mixed run's bar");
}

// ---- the HTML report in a real browser ----------------------------------------------------

#[test]
fn report_is_self_contained_and_renders_in_chromium_with_every_session_and_effect() {
    let chromium = chromium();
    let p = TestProject::with_repo_files();
    // The demo with leaves that take time, so durations (and the longest session) show.
    let demo = p.read("coordinators/groom-prs/scenarios/demo.toml");
    let mut slow = String::new();
    for (i, line) in demo.lines().enumerate() {
        slow.push_str(line);
        slow.push('\n');
        if line == "[[leaf]]" {
            slow.push_str(&format!("delay_ms = {}\n", 40 + (i * 37) % 160));
        }
    }
    p.write("coordinators/groom-prs/scenarios/slow.toml", &slow);
    let run = p
        .coord()
        .args([
            "run",
            "coordinators/groom-prs.rhai",
            "--scenario",
            "coordinators/groom-prs/scenarios/slow.toml",
            "--json",
        ])
        .run();
    run.code(0);
    p.coord().args(["report", "last", "-o", "report.html"]).run().code(0);
    let html = p.read("report.html");
    // Item links go to the PRs on GitHub: navigation, not an asset the page loads.
    let html = html.replace("href=\"https://github.com/acme/widgets/pull/", "href=\"#pull/");
    for external in ["<script", "<link", "src=\"http", "href=\"http", "url(http", "@import"] {
        assert!(!html.contains(external), "the report must be self-contained, found `{external}`");
    }

    let page = p.path().join("report.html");
    let dom = chromium_run(&chromium, p.path(), &["--dump-dom"], &page);
    let mut missing = Vec::new();
    let journal = std::fs::read_to_string(p.runs()[0].join("journal.jsonl")).unwrap();
    let entries: Vec<Value> = journal.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for e in &entries {
        if let Some(id) = e["session"].as_str().filter(|_| e["type"] == "call") {
            for needle in [format!("id=\"session-{id}\""), format!("id=\"dag-{id}\"")] {
                if !dom.stdout.contains(&needle) {
                    missing.push(needle);
                }
            }
        }
        if e["type"] == "effect_intent" {
            let needle = format!("id=\"dag-e{}\"", e["call"]);
            if !dom.stdout.contains(&needle) {
                missing.push(needle);
            }
        }
    }
    assert!(missing.is_empty(), "the rendered DOM lacks {missing:?}");
    assert_eq!(dom.stdout.matches("class=\"session-row").count(), 14);
    assert_eq!(dom.stdout.matches("class=\"effect-row\"").count(), 9);
    dom.stdout_has("verdict: blocking");
    assert_no_console_errors(&dom);

    let shot_dir = tempfile::tempdir().unwrap();
    let shot = shot_dir.path().join("report.png");
    let arg = format!("--screenshot={}", shot.display());
    let out = chromium_run(&chromium, p.path(), &[&arg, "--window-size=1400,3400", "--hide-scrollbars"], &page);
    assert_no_console_errors(&out);
    let png =
        std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot at {}: {e}\n{}", shot.display(), out.stderr));
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "a real screenshot ({} bytes)", png.len());
    let _ = std::fs::write(target_dir().join("report-screenshot.png"), &png);
}

#[test]
fn report_all_indexes_every_run_with_a_cost_chart() {
    let chromium = chromium();
    let p = demo_project();
    p.coord().args(["run", "coordinators/groom-prs.rhai", "--demo", "--dry-run"]).run().code(0);
    p.coord().args(["report", "--all", "-o", "runs.html"]).run().code(0);
    let page = p.path().join("runs.html");
    let dom = chromium_run(&chromium, p.path(), &["--dump-dom"], &page);
    assert_no_console_errors(&dom);
    for run in p.runs() {
        let id = run.file_name().unwrap().to_string_lossy().into_owned();
        assert!(dom.stdout.contains(&format!("id=\"run-{id}\"")), "run {id} is listed");
    }
    assert_eq!(dom.stdout.matches("class=\"cost-bar\"").count(), 2);
    let shot = format!("--screenshot={}", target_dir().join("runs-screenshot.png").display());
    assert_no_console_errors(&chromium_run(&chromium, p.path(), &[&shot, "--window-size=1400,1100"], &page));
}

#[test]
fn console_error_detection_catches_a_broken_page() {
    let chromium = chromium();
    let p = TestProject::new();
    let page = p.write("broken.html", "<!DOCTYPE html><p>x</p><script>throw new Error('boom')</script>");
    let out = chromium_run(&chromium, p.path(), &["--dump-dom"], &page);
    assert!(!console_messages(&out).is_empty(), "chromium reported no console error:\n{}", out.stderr);
}

/// Chromium on PATH, or a failure that says how to get it: the report tests do not skip.
fn chromium() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "chromium is not installed, and the HTML report tests need it.\n\
         Install it with: apt-get update && apt-get install -y chromium\n\
         (.ci/run installs it on CI.)"
    );
}

fn chromium_run(chromium: &Path, work: &Path, extra: &[&str], page: &Path) -> Outcome {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(chromium);
    cmd.current_dir(work)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("chromium starts");
    let pid = child.id();
    // A hung browser must fail the test, not hang it.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let out = child.wait_with_output();
        let _ = done_tx.send(());
        out
    });
    let started = Instant::now();
    while done_rx.recv_timeout(Duration::from_millis(200)).is_err() {
        if started.elapsed() > Duration::from_secs(120) {
            // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("chromium did not finish within 120s");
        }
    }
    let output = waiter.join().unwrap().expect("chromium ran");
    let out = Outcome::from(output);
    assert_eq!(out.code, 0, "chromium failed\n--- stderr\n{}", out.stderr);
    out
}

/// Messages the page sent to the console (Chromium logs them as `INFO:CONSOLE...`). The
/// reports have no scripts, so any message (an uncaught error, a blocked or failed load) is
/// a defect.
/// The page's console messages. Chromium's own pages (`source: chrome://...`, e.g. its note
/// that a network with no route out is "slow") are not the report's.
fn console_messages(out: &Outcome) -> Vec<&str> {
    out.stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .filter(|l| !l.contains("source: chrome://"))
        .collect()
}

#[track_caller]
fn assert_no_console_errors(out: &Outcome) {
    let messages = console_messages(out);
    assert!(messages.is_empty(), "console errors:\n{}", messages.join("\n"));
}

fn target_dir() -> PathBuf {
    // The binary under test lives in <target>/<profile>/coord.
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_coord"));
    bin.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_else(|| support::repo_root().join("target"))
}

fn put_blob(run: &Path, bytes: &[u8]) -> String {
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(bytes));
    std::fs::create_dir_all(run.join("blobs")).unwrap();
    std::fs::write(run.join("blobs").join(&hash), bytes).unwrap();
    hash
}

fn rewrite_journal(run: &Path, edit: impl Fn(&str) -> String) {
    let path = run.join("journal.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let edited = edit(line);
        if !edited.is_empty() {
            out.push_str(&edited);
            out.push('\n');
        }
    }
    std::fs::write(&path, out).unwrap();
}

#[test]
fn show_and_report_give_every_demo_pr_its_outcome_and_reason() {
    let p = demo_project();
    let out = p.coord().args(["show", "last"]).run();
    out.code(0)
        .stdout_has("Items (outcome: reason; sessions, effects)\n")
        .stdout_has("  PR #18  waiting: draft, not reviewed\n")
        .stdout_has("  PR #12  merged: review clean, checks green  (s1; 1 effect)\n")
        .stdout_has("  PR #13  waiting: review clean, checks red  (s2)\n")
        .stdout_has("  PR #14  merged: review clean after fix pass 1  (s3 s7 s9; 1 effect)\n")
        .stdout_has("  PR #15  escalated: blocking (2 blocking findings)  (s4; 2 effects)\n")
        .stdout_has("  PR #16  escalated: still has 1 minor finding after 3 fix passes")
        .stdout_has("  PR #17  escalated: review did not finish (timeout)");

    p.coord().args(["report", "last", "-o", "report.html"]).run().code(0);
    let html = p.read("report.html");
    assert!(html.contains("<h2 id=\"items\">Items"), "the report has the item table");
    assert_eq!(html.matches("class=\"item-row\"").count(), 7, "one row per demo PR");
    assert!(html.contains("<a href=\"https://github.com/acme/widgets/pull/13\">PR #13</a>"));
    assert!(html.contains("review clean, checks red"));

    let trace = p.coord().args(["show", "last", "--trace"]).run();
    trace.code(0).stdout_has("outcome pr#13 waiting \"review clean, checks red\"\n");
}

#[test]
fn implement_features_graph_connects_its_phases() {
    let p = TestProject::with_repo_files();
    let scenario = "coordinators/implement-feature/scenarios/demo.toml";
    p.coord().args(["run", "coordinators/implement-feature.rhai", "--scenario", scenario]).run().code(0);
    let mermaid = p.coord().args(["graph", "last"]).run();
    // The classification decided discovery (two lenses) and UX design; coding took
    // discovery's summary (a dotted `uses` edge: the demo's two lenses answer alike, and the
    // later one is taken) and hangs under the UX design it also took; the review takes the PR
    // number coding produced, and the fix its findings.
    mermaid
        .code(0)
        .stdout_has("  s1 --> s2\n")
        .stdout_has("  s1 --> s3\n")
        .stdout_has("  s1 --> s4\n")
        .stdout_has("  s3 -. uses .-> s5\n")
        .stdout_has("  s4 --> s5\n")
        .stdout_has("  s5 --> s6\n")
        .stdout_has("  s6 --> s7\n")
        .stdout_has("s6[\"s6 mr-review · PR #35;301<br/>Review PR #35;301: Add a dark mode toggle…");
    let dot = p.coord().args(["graph", "last", "--format", "dot"]).run();
    dot.code(0).stdout_has("  s3 -> s5 [style=dotted, label=\"uses\"];\n").stdout_has("  s4 -> s5;\n");
    let show = p.coord().args(["show", "last"]).run();
    show.code(0).stdout_has("  PR #301  merged: review clean  (s6 s7 s8; 1 effect)\n");
}

#[test]
fn a_journal_written_before_items_still_shows_its_items_inferred() {
    let p = TestProject::with_repo_files();
    let fixture = support::repo_root().join("tests/fixtures/journals/before-the-redesign");
    let id = "20261207-133435-7775";
    let run = p.path().join(".coord/runs").join(id);
    std::fs::create_dir_all(&run).unwrap();
    std::fs::copy(fixture.join("journal.jsonl"), run.join("journal.jsonl")).unwrap();
    // No `item_outcome` in it: outcomes come from each PR's last effect, else its review.
    let show = p.coord().args(["show", id]).run();
    show.code(0)
        .stdout_has("  PR #12  merged  (s1; 1 effect)\n")
        .stdout_has("  PR #13  mr-review clean: Routine bump.  (s2)\n")
        .stdout_has("  PR #15  labelled: Escalation: PR #15 blocking (2 blocking findings)  (s4; 2 effects)\n");
    p.coord().args(["graph", id]).run().code(0);
    p.coord().args(["report", id, "-o", "old.html"]).run().code(0);
    assert!(p.read("old.html").contains("class=\"item-row\""));
}

#[test]
fn after_and_subject_label_a_spawn_without_changing_its_call_key() {
    let p = TestProject::with_repo_files();
    let labelled = r#"
let a = spawn_session("discovery", #{ goal: "Gather", inputs: #{ task: "x" } });
await_session(a);
let b = spawn_session("ux-design", #{ goal: "Design", inputs: #{ task: "x" }, after: [a], subject: item("task", "x") });
await_session(b);
item_outcome(item("task", "x"), "designed");
"#;
    p.write("coordinators/after-demo.rhai", labelled);
    p.write(
        "after.toml",
        r#"coordinator = "after-demo"
[[leaf]]
workflow = "discovery"
output = { summary = "Settings live in src/settings.", files = ["a"], invariants = ["b"] }
[[leaf]]
workflow = "ux-design"
output = { spec = "A toggle.", components = ["T"] }
"#,
    );
    p.coord().args(["run", "coordinators/after-demo.rhai", "--scenario", "after.toml"]).run().code(0);
    let show = p.coord().args(["show", "last"]).run();
    // Nothing of s1's output reached s2: `after` alone connects them.
    show.code(0).stdout_has("    └── s2 ux-design · call 2").stdout_has("  task x  designed  (s2)\n");
    // The labels are left out of the call key: the run replays without them.
    p.write("coordinators/after-demo.rhai", &labelled.replace(", after: [a], subject: item(\"task\", \"x\")", ""));
    p.coord().args(["replay", "last"]).run().code(0);
}
