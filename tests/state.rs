//! State across runs (`state::get`, `state::put`, `read_file`): kept in
//! `.coord/state/<namespace>.json`, journaled, written once across a crash and resume, never by
//! a replay, last writer wins per key between concurrent runs.

use crate::support::{command_workflow, TestProject};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn state_file(p: &TestProject, namespace: &str) -> PathBuf {
    p.path().join(".coord/state").join(format!("{namespace}.json"))
}

fn state_of(p: &TestProject, namespace: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(state_file(p, namespace)).unwrap()).unwrap()
}

fn journal(run_dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(run_dir.join("journal.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// spec-to-merge with command leaves: the architect and the manager log each run of theirs;
/// coding never submits, so every ticket ends blocked in the first run.
fn spec_project() -> TestProject {
    let p = TestProject::with_repo_files();
    let leaf = |name: &str, output: &str| {
        format!("#!/bin/sh\ncat > /dev/null\necho {name} >> invocations.log\necho '{output}'\n")
    };
    p.write_executable("architect.sh", &leaf("architect", r#"{"areas": [{"name": "api", "summary": "x"}]}"#));
    p.write_executable(
        "manager.sh",
        &leaf("manager", r#"{"tickets": [{"id": "T1", "title": "One", "description": ""}, {"id": "T2", "title": "Two", "description": ""}]}"#),
    );
    p.write_executable("coding.sh", &leaf("coding", r#"{"status": "failed", "summary": "cannot"}"#));
    let loose = r#"{ type = "object" }"#;
    p.write("workflows/spec-architect.toml", &command_workflow("./architect.sh", "30s", loose));
    p.write("workflows/spec-manager.toml", &command_workflow("./manager.sh", "30s", loose));
    p.write("workflows/ticket-coding.toml", &command_workflow("./coding.sh", "30s", loose));
    p.write("spec.md", "Two tickets.\n");
    p
}

#[test]
fn spec_to_merge_run_twice_continues_the_first_runs_tickets() {
    let p = spec_project();
    let run =
        || p.coord().args(["run", "coordinators/spec-to-merge.rhai", "--input", "channel=stdout", "--json"]).run();
    let first = run();
    first.code(0);
    let first = first.json();
    assert_eq!(first["result"]["continued"], false, "{first}");
    let state = state_of(&p, "spec-to-merge");
    assert_eq!(state["keys"]["plan"]["value"]["order"], serde_json::json!(["T1", "T2"]));
    assert_eq!(state["keys"]["ticket/T1"]["value"]["status"], "blocked");
    let planned = p.read("invocations.log");

    let second = run();
    second.code(0);
    let second = second.json();
    assert_eq!(second["result"]["continued"], true, "{second}");
    assert_eq!(second["result"]["tickets"], serde_json::json!(["T1", "T2"]));
    assert_eq!(p.read("invocations.log"), planned, "the second run planned or coded again");
}

const PUTS: &str = r#"
state::put("a", 1);
let r = await_session(spawn_session("slow", #{ goal: "wait" }));
state::put("b", state::get("a") + 1);
state::get("b")
"#;

fn puts_project() -> TestProject {
    let p = TestProject::new();
    p.write_executable("slow.sh", "#!/bin/sh\ncat > /dev/null\n[ -f slow ] && sleep 3\necho '{}'\n");
    p.write("workflows/slow.toml", &command_workflow("./slow.sh", "30s", r#"{ type = "object" }"#));
    p.write("puts.rhai", PUTS);
    p
}

#[test]
fn a_put_whose_result_was_lost_is_not_written_again_on_resume() {
    let p = puts_project();
    p.coord().args(["run", "puts.rhai", "--json"]).run().code(0);
    let run_dir = p.runs().pop().unwrap();
    // Cut the journal after the first put's intent: the run stopped between its write and its
    // result. The store is changed by hand (same write id) so a second write would show.
    let text = std::fs::read_to_string(run_dir.join("journal.jsonl")).unwrap();
    let cut = text.find("\"effect_intent\"").map(|i| text[i..].find('\n').unwrap() + i + 1).unwrap();
    std::fs::write(run_dir.join("journal.jsonl"), &text[..cut]).unwrap();
    let mut state = state_of(&p, "puts");
    let write_id = state["keys"]["a"]["write"].clone();
    state["keys"]["a"]["value"] = 41.into();
    state["keys"].as_object_mut().unwrap().remove("b");
    std::fs::write(state_file(&p, "puts"), state.to_string()).unwrap();

    p.coord().args(["resume".as_ref(), run_dir.as_os_str()]).run().code(0);
    let after = state_of(&p, "puts");
    assert_eq!(after["keys"]["a"]["value"], 41, "the put was written again: {after}");
    assert_eq!(after["keys"]["a"]["write"], write_id);
    assert_eq!(after["keys"]["b"]["value"], 42);
    let intents = journal(&run_dir).iter().filter(|e| e["type"] == "effect_intent" && e["args"]["key"] == "a").count();
    assert_eq!(intents, 1);
}

#[test]
fn kill_9_then_resume_writes_each_put_once() {
    let p = puts_project();
    p.write("slow", "");
    let mut child = p.coord().args(["run", "puts.rhai"]).spawn();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let _ = child.kill();
    let _ = child.wait();
    let run_dir = p.runs().pop().unwrap();
    std::fs::remove_file(p.path().join("slow")).unwrap();
    let first_write = state_of(&p, "puts")["keys"]["a"]["write"].clone();
    p.coord().args(["resume".as_ref(), run_dir.as_os_str()]).run().code(0);
    let after = state_of(&p, "puts");
    assert_eq!(after["keys"]["a"]["write"], first_write, "resume wrote `a` again");
    assert_eq!(after["keys"]["b"]["value"], 2);
}

#[test]
fn a_replay_and_a_dry_run_never_write_the_store() {
    let p = puts_project();
    let out = p.coord().args(["run", "puts.rhai", "--json"]).run();
    out.code(0);
    let id = out.json()["run_id"].as_str().unwrap().to_owned();
    std::fs::remove_file(state_file(&p, "puts")).unwrap();
    p.coord().args(["replay", &id]).run().code(0);
    assert!(!state_file(&p, "puts").exists(), "the replay wrote the store");
    p.coord().args(["run", "puts.rhai", "--dry-run"]).run();
    assert!(!state_file(&p, "puts").exists(), "the dry run wrote the store");
}

#[test]
fn concurrent_runs_keep_each_others_keys_and_the_last_write_of_a_shared_one() {
    let p = TestProject::new();
    p.write(
        "writer.rhai",
        "//! [inputs]\n//! me = { type = \"string\" }\nlet me = input(\"me\");\nfor i in 0..30 { state::put(`${me}-${i}`, i); state::put(\"shared\", me); }\n",
    );
    let children: Vec<_> = ["x", "y"]
        .iter()
        .map(|me| p.coord().args(["run", "writer.rhai", "--input", &format!("me={me}")]).spawn())
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let state = state_of(&p, "writer");
    for me in ["x", "y"] {
        for i in 0..30 {
            assert_eq!(state["keys"][format!("{me}-{i}")]["value"], i, "{me}-{i} was lost");
        }
    }
    assert!(matches!(state["keys"]["shared"]["value"].as_str(), Some("x" | "y")));
}

#[test]
fn a_corrupt_state_file_stops_the_run_naming_the_file() {
    let p = puts_project();
    p.write(".coord/state/puts.json", "{\"keys\": 3");
    let out = p.coord().args(["run", "puts.rhai"]).run();
    assert_ne!(out.code, 0, "{}", out.stderr);
    out.stderr_has("puts.json: not a coord state file");
}
