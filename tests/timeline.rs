//! The timeline of a run's leaves, through the binary: `coord show --timeline`, the report's
//! SVG Gantt, the critical path and the time lost waiting for `--max-parallel` permits, and a
//! cancelled leaf's real duration. Nothing here asserts on speed: only on order and presence
//! (two sleeping leaves under one permit: one of them waited).

use crate::support::{self, TestProject};
use serde_json::Value;
use std::time::Duration;

/// Two leaves about different PRs, then a fix of PR 1 once both came back; each leaf sleeps
/// `sleep` seconds.
fn slow_project(sleep: &str) -> TestProject {
    let p = TestProject::new();
    p.write("coord.toml", "");
    p.write_executable(
        "slow.sh",
        &format!("#!/bin/sh\ncat > /dev/null\nsleep {sleep}\necho '{{\"output\": {{\"verdict\": \"clean\"}}}}'\n"),
    );
    p.write(
        "workflows/slow.toml",
        &support::command_workflow("./slow.sh", "60s", r#"{ type = "object", required = ["verdict"] }"#),
    );
    p.write(
        "slow.rhai",
        "let a = spawn_session(\"slow\", #{ goal: \"review a\", inputs: #{ pr: 1 } });\n\
         let b = spawn_session(\"slow\", #{ goal: \"review b\", inputs: #{ pr: 2 } });\n\
         await_sessions([a, b]);\n\
         let c = spawn_session(\"slow\", #{ goal: \"fix a\", inputs: #{ pr: 1 } });\n\
         await_sessions([c]);\n\
         \"done\"\n",
    );
    p
}

#[test]
fn show_timeline_draws_the_wait_for_a_permit_and_the_critical_path() {
    let p = slow_project("0.3");
    p.coord().args(["--quiet", "run", "slow.rhai", "--max-parallel", "1"]).run().code(0);
    let out = p.coord().args(["show", "last", "--timeline"]).run();
    out.code(0);
    let text = &out.stdout;
    let timeline = &text[text.find("\nTimeline\n").expect("a timeline section")..];
    // Under one permit, one of the first two leaves waited for the other.
    assert!(timeline.contains('░') && timeline.contains("waited "), "{timeline}");
    let rows: Vec<&str> = timeline.lines().filter(|l| l.contains(" slow |")).collect();
    assert_eq!(rows.len(), 3, "{timeline}");
    // They ran one after another, so all three are on the critical path, the fix last.
    assert!(rows.iter().all(|r| r.starts_with("* ")), "{timeline}");
    let path = timeline.lines().find(|l| l.starts_with("critical path (*): ")).expect("a critical path");
    assert!(path.contains("s1 slow") && path.contains("s2 slow"), "{path}");
    assert!(path.contains("→ s3 slow ("), "the fix ends the path: {path}");
    let totals = timeline.lines().find(|l| l.starts_with("wall ")).expect("totals");
    assert!(totals.contains("waiting for a permit") && !totals.contains("permit 0ms"), "{totals}");

    // The journal keeps the times beside each result; the routing trace shows none of them.
    let journal = std::fs::read_to_string(p.runs().pop().unwrap().join("journal.jsonl")).unwrap();
    let timed = journal.lines().filter(|l| l.contains("\"type\":\"session\"") && l.contains("\"timing\":")).count();
    assert_eq!(timed, 3, "{journal}");
    let trace = p.coord().args(["show", "last", "--trace"]).run();
    assert!(!trace.stdout.contains("queued") && !trace.stdout.contains("timing"), "{}", trace.stdout);

    // The report: the SVG Gantt with the wait hatched and the path outlined, and the trace.
    p.coord().args(["report", "last", "-o", "report.html"]).run().code(0);
    let html = p.read("report.html");
    assert!(html.contains("<h2 id=\"timeline\">") && html.contains("<svg class=\"timeline\""), "no timeline");
    assert!(html.contains("class=\"tl-wait\""), "the wait for a permit is drawn");
    assert!(html.contains("<g class=\"tl-row critical\" data-session=\"s3\">"), "s3 is on the critical path");
    assert!(html.contains("<h2 id=\"trace\">") && html.contains("spawn s3 slow pr=1"), "the routing trace");
    assert!(!html.contains("<script"), "the report runs no script");
}

#[test]
fn with_room_for_both_leaves_nothing_waits() {
    let p = slow_project("0.2");
    p.coord().args(["--quiet", "run", "slow.rhai", "--max-parallel", "4"]).run().code(0);
    let out = p.coord().args(["show", "last", "--timeline"]).run();
    out.code(0);
    let rows: Vec<&str> = out.stdout.lines().filter(|l| l.contains(" slow |")).collect();
    assert_eq!(rows.len(), 3, "{}", out.stdout);
    assert!(rows.iter().all(|r| !r.contains('░') && !r.contains("waited ")), "{}", out.stdout);
    out.stdout_has("waiting for a permit 0ms of the wall time (0ms summed over sessions)");
    // s3 was spawned once the await of s1 and s2 returned: the path is whichever ended last,
    // then s3.
    let path = out.stdout.lines().find(|l| l.starts_with("critical path (*): ")).expect("a critical path");
    let two = ["s1 slow → s3 slow (", "s2 slow → s3 slow ("];
    assert!(two.iter().any(|p| path.starts_with(&format!("critical path (*): {p}"))), "{path}");
}

#[test]
fn a_leaf_cancelled_by_sigint_keeps_the_time_it_ran() {
    let p = slow_project("30");
    let child = p.coord().args(["--log-format", "json", "run", "slow.rhai"]).spawn();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let cancelled: Vec<u64> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "session finished" && v["fields"]["status"] == "cancelled")
        .filter_map(|v| v["fields"]["duration_ms"].as_u64())
        .collect();
    assert!(!cancelled.is_empty(), "{stderr}");
    // It ran for the second and a half before the signal, not 0ms.
    assert!(cancelled.iter().all(|&ms| ms >= 1000), "{cancelled:?}\n{stderr}");
}

#[test]
fn a_scenario_run_has_a_timeline_and_its_report_shows_it() {
    let p = TestProject::with_repo_files();
    p.coord().args(["--quiet", "run", "coordinators/groom-prs.rhai", "--demo"]).run().code(0);
    let out = p.coord().args(["show", "last", "--timeline"]).run();
    out.code(0).stdout_has("critical path (*): ").stdout_has("legend: ░ waiting for a permit");
    p.coord().args(["report", "last", "-o", "report.html"]).run().code(0);
    assert!(p.read("report.html").contains("<svg class=\"timeline\""));
}
