//! Durable timers and signals through the binary: `sleep` survives kill -9 and a resume waits
//! only what is left; a replay never waits; `coord signal` deliveries are consumed once each,
//! in order, also across a kill -9 and a resume; a scenario's clock is virtual.

use crate::support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::{journal_lines, TestProject};

fn calls(run_dir: &Path, function: &str) -> Vec<Value> {
    journal_lines(run_dir).into_iter().filter(|e| e["type"] == "call" && e["fn"] == function).collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Starts `coord run SCRIPT` and returns it once its journal holds a call to `function` (the
/// wait has begun), with the run's directory.
fn run_until_waiting(p: &TestProject, script: &str, function: &str) -> (std::process::Child, PathBuf) {
    let child = p.coord().args(["run", script]).spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(dir) = p.runs().pop() {
            if !calls(&dir, function).is_empty() {
                return (child, dir);
            }
        }
        assert!(Instant::now() < deadline, "the run never began its wait");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill_9(mut child: std::process::Child) {
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    let _ = child.wait();
}

#[test]
fn a_sleep_killed_midway_resumes_for_the_time_left_and_replays_at_once() {
    let p = TestProject::new();
    p.write("sleepy.rhai", "log(\"before\");\nsleep(\"5s\");\nlog(\"after\");\n\"woke\"\n");
    let (child, dir) = run_until_waiting(&p, "sleepy.rhai", "sleep");
    // The views say what it waits for.
    p.coord().args(["show", "last"]).run().code(0).stdout_has("running, waiting until 20");
    p.coord().args(["runs"]).run().code(0).stdout_has("running, waiting until 20");
    std::thread::sleep(Duration::from_millis(2500));
    kill_9(child);
    let sleep = calls(&dir, "sleep").remove(0);
    let until = sleep["result"]["until_ms"].as_i64().unwrap();
    assert_eq!(until - sleep["result"]["since_ms"].as_i64().unwrap(), 5000);
    assert_eq!(sleep["args"]["duration"], "5s");
    assert!(sleep["result"]["until"].as_str().unwrap().ends_with('Z'));

    let started = Instant::now();
    let out = p.coord().args(["resume", "last", "--json"]).run();
    out.code(0);
    // It woke at the journaled time, not before, and did not sleep the whole 5 s again.
    assert!(now_ms() >= until, "resume returned before the wake time");
    assert!(started.elapsed() < Duration::from_millis(4500), "resume slept {:?}", started.elapsed());
    assert_eq!(out.json()["result"], "woke");
    let kinds: Vec<String> = journal_lines(&dir)
        .iter()
        .map(|e| {
            format!("{}{}", e["type"].as_str().unwrap(), e["fn"].as_str().map(|f| format!(":{f}")).unwrap_or_default())
        })
        .collect();
    assert_eq!(kinds, ["run_started", "call:sleep", "run_finished"], "one sleep, journaled once");

    let started = Instant::now();
    p.coord().args(["replay", "last", "--json"]).run().code(0);
    assert!(started.elapsed() < Duration::from_secs(3), "the replay waited: {:?}", started.elapsed());
}

#[test]
fn sleep_until_a_past_time_returns_at_once_and_a_bad_duration_is_refused() {
    let p = TestProject::new();
    p.write("past.rhai", "sleep_until(\"2020-01-01T00:00:00Z\");\nsleep(0);\n1\n");
    let started = Instant::now();
    p.coord().args(["run", "past.rhai"]).run().code(0);
    assert!(started.elapsed() < Duration::from_secs(5));
    let dir = p.runs().pop().unwrap();
    assert_eq!(calls(&dir, "sleep_until")[0]["result"]["until"], "2020-01-01T00:00:00.000Z");
    p.write("bad.rhai", "sleep(\"soon\");\n");
    p.coord().args(["run", "bad.rhai"]).run().stderr_has("`soon` is not a duration");
}

const GATE: &str = r#"
let first = wait_signal("agreement", #{ timeout: "1h" });
let second = wait_signal("agreement", #{ timeout: "1s", on_timeout: #{ agreed: false } });
#{ first: first, second: second }
"#;

#[test]
fn a_gate_killed_while_waiting_consumes_the_signal_on_resume_once() {
    let p = TestProject::new();
    p.write("gate.rhai", GATE);
    let (child, dir) = run_until_waiting(&p, "gate.rhai", "wait_signal");
    kill_9(child);
    let run_id = dir.file_name().unwrap().to_string_lossy().into_owned();
    p.coord().args(["show", &run_id]).run().code(0).stdout_has("interrupted, waiting for signal `agreement` until 20");
    p.coord()
        .args(["signal", &run_id, "agreement", "--data", r#"{"agreed":true}"#])
        .run()
        .code(0)
        .stdout_has("delivered signal `agreement`")
        .stdout_has("coord resume");
    let out = p.coord().args(["resume", &run_id, "--json"]).run();
    out.code(0);
    // One delivery, two waits: the first consumes it, the second times out with its default.
    assert_eq!(out.json()["result"], serde_json::json!({"first": {"agreed": true}, "second": {"agreed": false}}));
    let received = calls(&dir, "signal");
    assert_eq!(received.len(), 2);
    assert_eq!(received[0]["result"]["timed_out"], false);
    assert_eq!(received[1]["result"]["timed_out"], true);
    assert_eq!(received[1]["result"]["delivery"], Value::Null);
    assert!(dir.join("signals/consumed").read_dir().unwrap().count() == 1);

    // The replay returns the payload with no file at all.
    std::fs::remove_dir_all(dir.join("signals")).unwrap();
    let replay = p.coord().args(["replay", &run_id, "--json"]).run();
    replay.code(0);
    assert_eq!(replay.json()["result"], out.json()["result"]);

    // A finished run takes no more signals; an unknown run is a usage error.
    p.coord().args(["signal", &run_id, "agreement"]).run().code(1).stderr_has("has finished (succeeded)");
    p.coord().args(["signal", "no-such-run", "agreement"]).run().code(2).stderr_has("no run `no-such-run`");
    p.coord().args(["signal", &run_id, "a/b"]).run().code(2).stderr_has("not a signal name");
}

#[test]
fn a_delivery_the_journal_consumed_is_not_consumed_again_after_a_crash() {
    let p = TestProject::new();
    p.write("gate.rhai", GATE);
    let (child, dir) = run_until_waiting(&p, "gate.rhai", "wait_signal");
    let run_id = dir.file_name().unwrap().to_string_lossy().into_owned();
    // Delivered while the run waits: it consumes it live and goes on to its second wait.
    p.coord().args(["signal", &run_id, "agreement", "--data", r#"{"agreed":true}"#]).run().code(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while calls(&dir, "signal").is_empty() {
        assert!(Instant::now() < deadline, "the delivery was never consumed");
        std::thread::sleep(Duration::from_millis(20));
    }
    kill_9(child);
    // As if the process had died between journaling the consumption and moving the file.
    // (The kill may land before the file moved: then it is pending already.)
    let consumed = dir.join("signals/consumed");
    for f in consumed.read_dir().into_iter().flatten().flatten() {
        std::fs::rename(f.path(), dir.join("signals").join(f.file_name())).unwrap();
    }
    let out = p.coord().args(["resume", &run_id, "--json"]).run();
    out.code(0);
    assert_eq!(out.json()["result"]["second"], serde_json::json!({"agreed": false}), "consumed twice");
}

#[test]
fn two_deliveries_are_consumed_in_order_one_per_wait() {
    let p = TestProject::new();
    p.write("gate.rhai", GATE);
    let (child, dir) = run_until_waiting(&p, "gate.rhai", "wait_signal");
    kill_9(child);
    let run_id = dir.file_name().unwrap().to_string_lossy().into_owned();
    p.coord().args(["signal", &run_id, "agreement", "--data", "1"]).run().code(0);
    p.coord().args(["signal", &run_id, "agreement", "--data", "2"]).run().code(0);
    let out = p.coord().args(["resume", &run_id, "--json"]).run();
    out.code(0);
    assert_eq!(out.json()["result"], serde_json::json!({"first": 1, "second": 2}));
}

#[test]
fn a_scenario_sleeps_and_waits_on_a_virtual_clock() {
    let p = TestProject::new();
    p.write(
        "virtual.rhai",
        r#"
let start = now();
sleep("30m");
let slept = now() - start;
let early = wait_signal("agreement", #{ timeout: "5m", on_timeout: "none yet" });
let late = wait_signal("agreement", #{ timeout: "1h" });
#{ slept: slept, early: early, late: late, waited: now() - start }
"#,
    );
    p.write(
        "world.toml",
        "now = \"2026-01-05T09:00:00Z\"\n[[signal]]\nname = \"agreement\"\nafter = \"50m\"\ndata = { agreed = true }\n",
    );
    let started = Instant::now();
    let out = p.coord().args(["run", "virtual.rhai", "--scenario", "world.toml", "--json"]).run();
    out.code(0);
    assert!(started.elapsed() < Duration::from_secs(10));
    // 30 min asleep; the first wait gives up at 35 min; the signal comes at 50 min.
    assert_eq!(
        out.json()["result"],
        serde_json::json!({"slept": 1800, "early": "none yet", "late": {"agreed": true}, "waited": 3000})
    );
    // A resume of the scenario run keeps its clock: the same answers.
    p.coord().args(["replay", "last", "--json"]).run().code(0);

    p.write("forever.rhai", "wait_signal(\"never\")\n");
    p.coord()
        .args(["run", "forever.rhai", "--scenario", "world.toml"])
        .run()
        .stderr_has("the scenario delivers no `never` signal");
}

/// The shipped gated-jobs coordinator, live, with command leaves standing in for the agents:
/// the job reports evidence, the verifier passes it. A is agreed; B and C (after A) are not.
fn gated_jobs_project() -> TestProject {
    let p = TestProject::new();
    std::fs::create_dir_all(p.path().join("coordinators")).unwrap();
    std::fs::copy(
        support::repo_root().join("coordinators/gated-jobs.rhai"),
        p.path().join("coordinators/gated-jobs.rhai"),
    )
    .unwrap();
    p.write_executable("job.sh", "#!/bin/sh\necho '{\"evidence\":[\"out.md\"],\"revision\":1}'\n");
    p.write_executable("verify.sh", "#!/bin/sh\necho '{\"truth\":{\"status\":\"pass\"},\"reward\":{\"score\":0.9}}'\n");
    p.write("workflows/workshop-job.toml", &support::command_workflow("./job.sh", "1m", "{ type = \"object\" }"));
    p.write("workflows/workshop-verify.toml", &support::command_workflow("./verify.sh", "1m", "{ type = \"object\" }"));
    p.write(
        "inputs.json",
        r#"{ "project": "Gate", "channel": "stdout",
             "workstreams": [{ "id": "W", "title": "W", "jobs": [
               { "id": "A", "title": "Agreed", "agreement": "agreed" },
               { "id": "B", "title": "Needs a yes", "depends_on": ["A"], "agreement": "pending" },
               { "id": "C", "title": "Needs a yes too", "depends_on": ["A"], "agreement": "pending" } ] }] }"#,
    );
    p
}

#[test]
fn gated_jobs_waits_at_its_agreement_gate_across_a_kill_and_consumes_each_answer_once() {
    let p = gated_jobs_project();
    let child = p.coord().args(["run", "coordinators/gated-jobs.rhai", "--inputs", "inputs.json"]).spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    let dir = loop {
        if let Some(dir) = p.runs().pop().filter(|d| !calls(d, "wait_signal").is_empty()) {
            break dir;
        }
        assert!(Instant::now() < deadline, "gated-jobs never reached its agreement gate");
        std::thread::sleep(Duration::from_millis(20));
    };
    // Waiting at B's gate, A's job and its independent verification done: killed there.
    kill_9(child);
    let run_id = dir.file_name().unwrap().to_string_lossy().into_owned();
    let spawned: Vec<String> = calls(&dir, "spawn_session").iter().map(|e| e["key"].to_string()).collect();
    assert!(spawned.iter().any(|k| k.contains("workshop-verify")), "A was not verified before the gate: {spawned:?}");
    p.coord().args(["show", &run_id]).run().code(0).stdout_has("waiting for signal `agreement` until 20");

    // One yes: B consumes it; C's gate waits on, so the resume parks there instead of
    // consuming the same delivery twice.
    p.coord().args(["signal", &run_id, "agreement", "--data", r#"{"agreed":true}"#]).run().code(0);
    let out = p.coord().args(["resume", &run_id, "--park-after", "0s", "--json"]).run();
    out.code(0);
    assert_eq!(out.json()["status"], "parked", "{}", out.stdout);
    assert_eq!(calls(&dir, "signal").len(), 1, "one delivery, consumed once");
    assert_eq!(calls(&dir, "wait_signal").len(), 2);

    // A no for C: the run goes on and ends, B done and C blocked.
    p.coord().args(["signal", &run_id, "agreement", "--data", r#"{"agreed":false,"reason":"not now"}"#]).run().code(0);
    let out = p.coord().args(["resume", &run_id, "--json"]).run();
    out.code(0);
    let result = &out.json()["result"];
    assert_eq!(result["done"], serde_json::json!(["A", "B"]), "{result}");
    assert_eq!(result["blocked"]["C"], "agreement: scope not agreed (pending); not now");
    let received = calls(&dir, "signal");
    assert_eq!(received.len(), 2);
    assert_ne!(received[0]["result"]["delivery"], received[1]["result"]["delivery"]);
    assert_eq!(dir.join("signals/consumed").read_dir().unwrap().count(), 2);
}
