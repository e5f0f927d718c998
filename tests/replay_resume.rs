//! Replay, what-if replay, resume and the crash-safe journal, through the binary.

use crate::support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::{command_workflow, journal_lines, TestProject};

fn last_status(run_dir: &Path) -> Option<String> {
    journal_lines(run_dir)
        .iter()
        .rev()
        .find(|e| e["type"] == "run_finished")
        .and_then(|e| e["status"].as_str().map(str::to_owned))
}

fn shipped_scenarios() -> Vec<(PathBuf, PathBuf)> {
    let root = support::repo_root().join("coordinators");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&root).unwrap().flatten() {
        let script = entry.path();
        if script.extension().is_some_and(|e| e == "rhai") {
            let dir = root.join(script.file_stem().unwrap()).join("scenarios");
            for s in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if s.path().extension().is_some_and(|e| e == "toml") {
                    found.push((script.clone(), s.path()));
                }
            }
        }
    }
    found.sort();
    assert!(!found.is_empty());
    found
}

#[test]
fn every_shipped_scenario_replays_to_the_same_effects() {
    let p = TestProject::with_repo_files();
    for (script, scenario) in shipped_scenarios() {
        let rel = |path: &Path| path.strip_prefix(support::repo_root()).unwrap().to_owned();
        let run = p
            .coord()
            .args([
                "run".as_ref(),
                rel(&script).as_os_str(),
                "--scenario".as_ref(),
                rel(&scenario).as_os_str(),
                "--json".as_ref(),
            ])
            .run();
        // Some scenarios end the run on purpose (a `throw` on a missing input): exit 1.
        assert!(run.code == 0 || run.code == 1, "{}: {}", scenario.display(), run.stderr);
        let code = run.code;
        let run = run.json();
        let replay = p.coord().args(["replay", run["run_id"].as_str().unwrap(), "--json"]).run();
        replay.code(code);
        let replay = replay.json();
        assert_eq!(run["status"], replay["status"], "{}", scenario.display());
        assert_eq!(run["effects"], replay["effects"], "{}", scenario.display());
        assert_eq!(run["result"], replay["result"], "{}", scenario.display());
        assert_eq!(run["sessions"], replay["sessions"]);
    }
}

/// A small deterministic generator, so failures reproduce from the seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

fn generated_scenario(seed: u64) -> String {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let prs = 1 + rng.next() % 25;
    let mut s = String::from("coordinator = \"groom-prs\"\n[inputs]\nrepo = \"acme/gen\"\n");
    for n in 1..=prs {
        let checks = rng.pick(&["green", "green", "green", "red", "pending"]);
        s.push_str(&format!(
            "[[github.prs]]\nnumber = {n}\nchecks = \"{checks}\"\nmergeable = {}\n",
            rng.next() % 10 != 0
        ));
    }
    for n in 1..=prs {
        let mut seq = Vec::new();
        for _ in 0..(1 + rng.next() % 4) {
            let item = match rng.pick(&["clean", "minor", "minor", "blocking", "timeout", "failed", "bad"]) {
                "timeout" => "{ status = \"timeout\" }".to_owned(),
                "failed" => "{ status = \"failed\", error = \"agent crashed\" }".to_owned(),
                "bad" => "{ output = { verdict = \"perhaps\", findings = [] }, invalid = true }".to_owned(),
                v => format!(
                    "{{ output = {{ verdict = \"{v}\", findings = [{{ severity = \"{}\", message = \"m\" }}] }} }}",
                    if v == "blocking" { "blocking" } else { "minor" }
                ),
            };
            seq.push(item);
        }
        s.push_str(&format!(
            "[[leaf]]\nworkflow = \"mr-review\"\nmatch = {{ pr = {n} }}\nsequence = [{}]\n",
            seq.join(", ")
        ));
    }
    let fix = rng.pick(&["fixed", "fixed", "failed"]);
    s.push_str(&format!("[[leaf]]\nworkflow = \"coding-task\"\noutput = {{ status = \"{fix}\", summary = \"s\" }}\n"));
    s
}

#[test]
fn randomized_scenarios_replay_to_the_same_effects() {
    let p = TestProject::with_repo_files();
    for seed in 1..=24u64 {
        p.write("gen.toml", &generated_scenario(seed));
        let run = p.coord().args(["run", "coordinators/groom-prs.rhai", "--scenario", "gen.toml", "--json"]).run();
        run.code(0);
        let run = run.json();
        let replay = p.coord().args(["replay", run["run_id"].as_str().unwrap(), "--json"]).run();
        replay.code(0);
        assert_eq!(run["effects"], replay.json()["effects"], "seed {seed}");
    }
}

#[test]
fn replay_of_an_edited_script_reports_the_divergence_and_exits_3() {
    let p = TestProject::with_repo_files();
    let run = p.coord().args(["run", "coordinators/groom-prs.rhai", "--demo", "--json"]).run();
    run.code(0);
    let id = run.json()["run_id"].as_str().unwrap().to_owned();
    let script = p.read("coordinators/groom-prs.rhai").replace("MAX_FIX_PASSES = 3", "MAX_FIX_PASSES = 1");
    p.write("coordinators/groom-prs.rhai", &script);
    let out = p.coord().args(["replay", &id]).run();
    out.code(3)
        .stderr_has("diverged from the journal at call")
        .stderr_has("groom-prs.rhai:")
        .stderr_has("the journal recorded: spawn_session")
        .stderr_has("the script now asks: github.comment");
}

#[test]
fn what_if_names_the_changed_prs_and_the_first_divergent_call() {
    let p = TestProject::with_repo_files();
    let run = p.coord().args(["run", "coordinators/groom-prs.rhai", "--demo", "--json"]).run();
    let id = run.json()["run_id"].as_str().unwrap().to_owned();
    let original = p.read("coordinators/groom-prs.rhai");
    // Minor findings are no longer fixed: they escalate as blocking ones do.
    let edited = original.replace("\"fix\" => to_fix.push(entry),", "\"never\" => to_fix.push(entry),");
    assert_ne!(edited, original, "the edit no longer applies to groom-prs");
    p.write("edited.rhai", &edited);
    let leaves_before = std::fs::read_dir(p.path().join(".coord/runs")).unwrap().count();
    let out = p.coord().args(["replay", &id, "--script", "edited.rhai"]).run();
    out.code(0)
        .stdout_has("#14: merge -> comment, label")
        .stdout_has("First divergence at call")
        .stdout_has("edited.rhai:")
        .stdout_has("Nothing ran and nothing was spent.");
    let json = p.coord().args(["replay", &id, "--script", "edited.rhai", "--json"]).run().json();
    let changes = json["what_if"]["changes"].as_array().unwrap();
    let targets: Vec<&str> = changes.iter().map(|c| c["target"].as_str().unwrap()).collect();
    assert!(targets.contains(&"#14") && targets.contains(&"#16"), "{targets:?}");
    assert!(json["what_if"]["first_divergence"]["now"]["pos"].is_string());
    // What-if writes no run of its own.
    assert_eq!(std::fs::read_dir(p.path().join(".coord/runs")).unwrap().count(), leaves_before);
}

fn demo_run(p: &TestProject) -> PathBuf {
    p.coord().args(["run", "coordinators/groom-prs.rhai", "--demo"]).run().code(0);
    p.runs().pop().unwrap()
}

#[test]
fn a_journal_truncated_mid_line_is_read_up_to_the_tear() {
    let p = TestProject::with_repo_files();
    let dir = demo_run(&p);
    let journal = dir.join("journal.jsonl");
    let bytes = std::fs::read(&journal).unwrap();
    std::fs::write(&journal, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let out = p.coord().args(["replay".as_ref(), dir.as_os_str()]).run();
    out.code(3).stderr_has("dropped a torn last entry").stderr_has("the journal ends at call");
    // Resume finishes it from the valid prefix.
    p.coord().args(["resume".as_ref(), dir.as_os_str(), "--json".as_ref()]).run().code(0);
    assert_eq!(last_status(&dir).as_deref(), Some("succeeded"));
}

#[test]
fn a_garbage_line_in_the_middle_is_refused_unless_recovered() {
    let p = TestProject::with_repo_files();
    let dir = demo_run(&p);
    let journal = dir.join("journal.jsonl");
    let text = std::fs::read_to_string(&journal).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(10, "{\"seq\": oops");
    std::fs::write(&journal, lines.join("\n") + "\n").unwrap();
    let out = p.coord().args(["replay".as_ref(), dir.as_os_str()]).run();
    out.code(3).stderr_has("journal.jsonl:11: corrupt journal entry").stderr_has("--recover");
    let out = p.coord().args(["replay".as_ref(), dir.as_os_str(), "--recover".as_ref()]).run();
    out.code(3).stderr_has("recovered the 10 entries");
}

#[test]
fn a_journal_of_a_future_version_is_refused() {
    let p = TestProject::with_repo_files();
    let dir = demo_run(&p);
    let journal = dir.join("journal.jsonl");
    let text = std::fs::read_to_string(&journal).unwrap().replacen("\"version\":1", "\"version\":99", 1);
    std::fs::write(&journal, text).unwrap();
    let out = p.coord().args(["replay".as_ref(), dir.as_os_str()]).run();
    out.code(3).stderr_has("format version 99").stderr_lacks("panicked");
}

/// A project whose `review` leaves are slow commands that count their invocations.
fn slow_leaf_project(prs: u32) -> TestProject {
    let p = TestProject::new();
    p.write_executable(
        "leaf.sh",
        "#!/bin/sh\ncat > /dev/null\nn=${COORD_SESSION_ID#s}\nsleep 0.$(( 40 + (n * 37) % 60 ))\necho \"$COORD_SESSION_ID\" >> invocations.log\necho '{\"verdict\": \"clean\"}'\n",
    );
    p.write(
        "workflows/review.toml",
        &command_workflow("./leaf.sh", "30s", r#"{ type = "object", required = ["verdict"] }"#),
    );
    let mut world = String::from("now = \"2026-11-21T09:00:00Z\"\n");
    for n in 1..=prs {
        world.push_str(&format!("[[github.prs]]\nnumber = {n}\n"));
    }
    p.write("world.toml", &world);
    p.write(
        "batches.rhai",
        r#"
let prs = github::prs(#{});
let merged = [];
let i = 0;
while i < prs.len() {
    let batch = prs.extract(i, 4);
    let results = await_sessions(batch.map(|pr| spawn_session("review", #{ goal: `Review #${pr.number}`, inputs: #{ pr: pr.number } })));
    for j in 0..batch.len() {
        if results[j].status == "ok" && results[j].output.verdict == "clean" {
            let m = merge(batch[j].number, #{ method: "squash" });
            if m.status == "merged" { merged.push(batch[j].number); }
        }
    }
    i += 4;
}
notify("slack:#eng", `merged ${merged.len()}`);
merged
"#,
    );
    p
}

fn invocation_counts(p: &TestProject) -> std::collections::HashMap<String, usize> {
    let mut counts = std::collections::HashMap::new();
    for line in p.read("invocations.log").lines() {
        *counts.entry(line.trim().to_owned()).or_insert(0) += 1;
    }
    counts
}

fn completed_sessions(run_dir: &Path) -> Vec<String> {
    journal_lines(run_dir)
        .iter()
        .filter(|e| e["type"] == "session")
        .filter_map(|e| e["session"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn kill_9_at_random_moments_then_resume_never_repeats_a_leaf_or_an_effect() {
    let p = slow_leaf_project(24);
    let mut rng = Rng(0x5eed_cafe);
    for trial in 0..20 {
        let runs_dir = format!("runs-{trial}");
        let _ = std::fs::remove_file(p.path().join("invocations.log"));
        let mut child = p
            .coord()
            .args([
                "run",
                "batches.rhai",
                "--scenario",
                "world.toml",
                "--leaf",
                "review=command",
                "--max-parallel",
                "4",
                "--runs-dir",
                &runs_dir,
            ])
            .spawn();
        std::thread::sleep(Duration::from_millis(60 + rng.next() % 1400));
        let _ = child.kill();
        let _ = child.wait();
        // Let leaves orphaned by the kill (they die with coord) settle before counting.
        std::thread::sleep(Duration::from_millis(150));

        let Some(dir) =
            std::fs::read_dir(p.path().join(&runs_dir)).ok().and_then(|d| d.flatten().next()).map(|e| e.path())
        else {
            assert!(p.read("invocations.log").is_empty(), "trial {trial}: leaves ran without a run dir");
            continue;
        };
        if !dir.join("journal.jsonl").exists() || journal_lines(&dir).is_empty() {
            continue;
        }
        let done_before = completed_sessions(&dir);
        let counts_before = invocation_counts(&p);
        if last_status(&dir).as_deref() != Some("succeeded") {
            let out =
                p.coord().args(["resume".as_ref(), dir.as_os_str(), "--runs-dir".as_ref(), runs_dir.as_ref()]).run();
            out.code(0);
        }
        assert_eq!(last_status(&dir).as_deref(), Some("succeeded"), "trial {trial}");
        let counts_after = invocation_counts(&p);
        for id in &done_before {
            assert_eq!(counts_after.get(id), counts_before.get(id), "trial {trial}: completed leaf {id} ran again");
        }
        // Every effect happened exactly once: one result per merge target and one notify.
        let lines = journal_lines(&dir);
        let intents: std::collections::HashMap<u64, Value> = lines
            .iter()
            .filter(|e| e["type"] == "effect_intent")
            .map(|e| (e["call"].as_u64().unwrap(), e["args"].clone()))
            .collect();
        let mut merged = std::collections::HashMap::new();
        let mut notifies = 0;
        for r in lines.iter().filter(|e| e["type"] == "effect_result") {
            let args = &intents[&r["call"].as_u64().unwrap()];
            match r["fn"].as_str() {
                Some("merge") => {
                    assert_eq!(r["result"]["status"], "merged", "trial {trial}: {r}");
                    *merged.entry(args["pr"].as_u64().unwrap()).or_insert(0) += 1;
                }
                Some("notify") => notifies += 1,
                _ => {}
            }
        }
        assert_eq!(merged.len(), 24, "trial {trial}");
        assert!(merged.values().all(|&n| n == 1), "trial {trial}: a merge happened twice: {merged:?}");
        assert_eq!(notifies, 1, "trial {trial}");
    }
}

#[test]
fn sigint_stops_gracefully_and_resume_finishes() {
    let p = slow_leaf_project(12);
    let mut child =
        p.coord().args(["run", "batches.rhai", "--scenario", "world.toml", "--leaf", "review=command"]).spawn();
    std::thread::sleep(Duration::from_millis(500));
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let started = Instant::now();
    let status = child.wait().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(status.code(), Some(130));
    let dir = p.runs().pop().unwrap();
    assert_eq!(last_status(&dir).as_deref(), Some("interrupted"));
    let done_before = completed_sessions(&dir);
    let counts_before = invocation_counts(&p);
    let out = p.coord().args(["resume", "last", "--json"]).run();
    out.code(0);
    assert_eq!(out.json()["result"].as_array().unwrap().len(), 12);
    let counts_after = invocation_counts(&p);
    for id in &done_before {
        assert_eq!(counts_after.get(id), counts_before.get(id), "completed leaf {id} ran again");
    }
    // A finished run cannot be resumed again.
    p.coord().args(["resume", "last"]).run().code(2);
}

/// SIGINT while the script's last step awaits its leaves: the cancelled leaves are not answers
/// (they are not journaled), so the run stops as interrupted, never ends "succeeded" with them
/// unrecorded, and `coord resume` runs them again.
#[test]
fn sigint_during_the_last_await_stops_the_run_and_resume_runs_its_leaves() {
    let p = TestProject::new();
    p.write_executable(
        "hold.sh",
        "#!/bin/sh
cat > /dev/null
echo \"$COORD_SESSION_ID\" >> started.log
\
         [ -f release ] || sleep 30
echo '{}'\n",
    );
    p.write("workflows/hold.toml", &command_workflow("./hold.sh", "60s", r#"{ type = "object" }"#));
    p.write("hold.rhai", "await_sessions([1, 2, 3].map(|n| spawn_session(\"hold\", #{ inputs: #{ n: n } })));\n");
    let child = p.coord().args(["run", "hold.rhai"]).spawn();
    let started = p.path().join("started.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&started).map_or(0, |s| s.lines().count()) < 3 {
        assert!(Instant::now() < deadline, "3 leaves running");
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = p.runs().pop().unwrap();
    assert_eq!(last_status(&dir).as_deref(), Some("interrupted"));
    p.write("release", "");
    p.coord().args(["resume", "last"]).run().code(0);
    let starts = std::fs::read_to_string(&started).unwrap();
    assert_eq!(starts.lines().count(), 6, "each leaf ran again on resume: {starts}");
}

#[test]
fn sigterm_exits_143() {
    let p = slow_leaf_project(12);
    let mut child =
        p.coord().args(["run", "batches.rhai", "--scenario", "world.toml", "--leaf", "review=command"]).spawn();
    std::thread::sleep(Duration::from_millis(500));
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    assert_eq!(child.wait().unwrap().code(), Some(143));
    assert_eq!(last_status(&p.runs().pop().unwrap()).as_deref(), Some("interrupted"));
}

/// The run directory whose header names `parent` as its parent run.
fn redo_of(p: &TestProject, parent: &Path) -> PathBuf {
    let parent_id = parent.file_name().unwrap().to_str().unwrap();
    p.runs()
        .into_iter()
        .find(|dir| journal_lines(dir).first().is_some_and(|h| h["header"]["parent"]["run_id"] == parent_id))
        .expect("a redo of the run")
}

#[test]
fn resume_from_a_session_is_a_new_linked_run_and_leaves_the_parent_untouched() {
    let p = slow_leaf_project(8);
    p.coord().args(["run", "batches.rhai", "--scenario", "world.toml", "--leaf", "review=command"]).run().code(0);
    let parent = p.runs().pop().unwrap();
    let parent_bytes = std::fs::read(parent.join("journal.jsonl")).unwrap();
    let before = invocation_counts(&p);
    // Redo from the second batch's first spawn, named by session.
    let out = p.coord().args(["resume", "last", "--from", "s5", "--json"]).run();
    out.code(0).stderr_has("from s5 (call ");
    assert_eq!(std::fs::read(parent.join("journal.jsonl")).unwrap(), parent_bytes, "the parent is never modified");
    let after = invocation_counts(&p);
    for id in ["s1", "s2", "s3", "s4"] {
        assert_eq!(after.get(id), before.get(id), "{id} was before --from and must not rerun");
    }
    for id in ["s5", "s6", "s7", "s8"] {
        assert_eq!(after.get(id).copied(), before.get(id).map(|n| n + 1), "{id} is after --from and reruns");
    }
    let child = redo_of(&p, &parent);
    assert_eq!(last_status(&child).as_deref(), Some("succeeded"));
    let header = &journal_lines(&child)[0]["header"]["parent"];
    assert_eq!(header["from_session"], "s5");
    let from_call = header["from_call"].as_u64().unwrap();

    // The same point named by its call index gives the same redo.
    let by_call = p
        .coord()
        .args(["resume".as_ref(), parent.as_os_str(), "--from".as_ref(), from_call.to_string().as_ref()])
        .run();
    by_call.code(0).stderr_has("from s5 (call ");

    // Both replay on their own journals; each tells its lineage.
    for dir in [&parent, &child] {
        p.coord().args(["replay".as_ref(), dir.as_os_str()]).run().code(0);
    }
    let child_id = child.file_name().unwrap().to_str().unwrap();
    let shown = p.coord().args(["show".as_ref(), child.as_os_str()]).run();
    assert!(
        shown.stdout.contains(&format!(
            "redo of run {} from s5 (call {from_call})",
            parent.file_name().unwrap().to_str().unwrap()
        )),
        "{}",
        shown.stdout
    );
    shown.stdout_has(&format!("s5 review · call {from_call}"));
    let shown = p.coord().args(["show".as_ref(), parent.as_os_str()]).run();
    shown.stdout_has(&format!("redone as run {child_id} from s5"));

    // A point the run does not have is refused before anything runs.
    let out = p.coord().args(["resume".as_ref(), parent.as_os_str(), "--from".as_ref(), "s99".as_ref()]).run();
    out.code(2).stderr_has("spawned no session `s99`");
}

#[test]
fn resume_retry_failed_reruns_only_the_failed_leaves_in_a_linked_run() {
    let p = TestProject::new();
    // Session s2 fails until a marker exists; every other leaf succeeds.
    p.write_executable(
        "leaf.sh",
        "#!/bin/sh\ncat > /dev/null\necho \"$COORD_SESSION_ID\" >> invocations.log\nif [ \"$COORD_SESSION_ID\" = s2 ] && [ ! -f fixed ]; then echo 'flaky' >&2; exit 1; fi\necho '{\"verdict\": \"clean\"}'\n",
    );
    p.write("workflows/review.toml", &command_workflow("./leaf.sh", "30s", r#"{ type = "object" }"#));
    p.write(
        "s.rhai",
        "let rs = await_sessions([1, 2, 3].map(|n| spawn_session(\"review\", #{ inputs: #{ n: n } })));\nlet statuses = rs.map(|r| r.status);\nif statuses.contains(\"failed\") { notify(\"stdout\", \"retry later\"); }\nstatuses\n",
    );
    let first = p.coord().args(["run", "s.rhai", "--json"]).run();
    first.code(0);
    assert_eq!(first.json()["result"], serde_json::json!(["ok", "failed", "ok"]));
    let parent = p.runs().pop().unwrap();
    let parent_bytes = std::fs::read(parent.join("journal.jsonl")).unwrap();
    p.write("fixed", "");
    let out = p.coord().args(["resume", "last", "--retry-failed", "--json"]).run();
    out.code(0);
    assert_eq!(out.json()["result"], serde_json::json!(["ok", "ok", "ok"]));
    let counts = invocation_counts(&p);
    assert_eq!(counts["s1"], 1);
    assert_eq!(counts["s2"], 2);
    assert_eq!(counts["s3"], 1);
    assert_eq!(std::fs::read(parent.join("journal.jsonl")).unwrap(), parent_bytes, "the parent is never modified");

    // The redo's journal holds one coherent history: no old notify, each call once.
    let child = redo_of(&p, &parent);
    let lines = journal_lines(&child);
    assert_eq!(lines[0]["header"]["parent"]["retried"], serde_json::json!(["s2"]));
    assert!(!lines.iter().any(|e| e["fn"] == "notify"), "the retry routed past the notify");
    for dir in [&parent, &child] {
        p.coord().args(["replay".as_ref(), dir.as_os_str()]).run().code(0);
    }
    let shown = p.coord().args(["show".as_ref(), child.as_os_str()]).run();
    shown.stdout_has("retrying s2");

    // Nothing failed any more: nothing to retry.
    let again = p.coord().args(["resume".as_ref(), child.as_os_str(), "--retry-failed".as_ref()]).run();
    again.code(2).stderr_has("nothing to retry");
}

/// A script that hands back what the host gave it: result maps (awaited twice) and reads.
const ECHO_SCRIPT: &str = r#"
let prs = github::prs();
let handles = [];
for pr in prs {
    handles.push(spawn_session("mr-review", #{ goal: `Review #${pr.number}`, inputs: #{ pr: pr.number, tags: ["a", 1.5] } }));
}
let first = await_sessions(handles);
let again = await_sessions(handles);
#{ prs: prs, checks: github::checks(prs[0].number), first: first, again: again }
"#;

const ECHO_SCENARIO: &str = r#"
[[github.prs]]
number = 3
title = "Three"
head_sha = "aaa"
[[github.prs]]
number = 4
title = "Four \"quoted\" ü"
head_sha = "bbb"

[[leaf]]
workflow = "mr-review"
match = { pr = 3 }
output = { verdict = "minor", findings = [{ severity = "minor", message = "m" }] }
usage = { input_tokens = 10, output_tokens = 2, cost_usd = 0.5 }

[[leaf]]
workflow = "mr-review"
match = { pr = 4 }
status = "timeout"
"#;

#[test]
fn a_replay_hands_the_script_the_values_the_run_did() {
    let p = TestProject::with_repo_files();
    p.write("echo.rhai", ECHO_SCRIPT);
    p.write("echo.toml", ECHO_SCENARIO);
    let run = p.coord().args(["run", "echo.rhai", "--scenario", "echo.toml", "--json"]).run();
    run.code(0);
    let run = run.json();
    let id = run["run_id"].as_str().unwrap().to_owned();
    let result = &run["result"];
    assert_eq!(result["first"], result["again"], "an await builds the same map twice");
    assert_eq!(result["first"][0]["inputs"]["tags"], serde_json::json!(["a", 1.5]));
    assert_eq!(result["first"][1]["status"], "timeout");

    // The replay's reading thread builds these maps; they must equal the run's.
    let replay = p.coord().args(["replay", &id, "--json"]).run();
    replay.code(0);
    assert_eq!(replay.json()["result"], *result);

    // A what-if that spawns one more session first: the recorded results are reused under
    // this run's session ids.
    let edited = ECHO_SCRIPT.replace(
        "let handles = [];",
        "let extra = spawn_session(\"mr-review\", #{ goal: \"extra\", inputs: #{ pr: 99 } });\nlet handles = [];",
    );
    p.write("edited.rhai", &edited);
    let what_if = p.coord().args(["replay", &id, "--script", "edited.rhai", "--json"]).run();
    what_if.code(0);
    let now = &what_if.json()["result"];
    for (i, id) in ["s2", "s3"].iter().enumerate() {
        assert_eq!(now["first"][i]["id"], *id);
        assert_eq!(now["again"][i]["id"], *id);
        let mut recorded = result["first"][i].clone();
        recorded["id"] = (*id).into();
        assert_eq!(now["first"][i], recorded);
        assert_eq!(now["again"][i], recorded);
    }
    assert_eq!(now["prs"], result["prs"]);
    assert_eq!(now["checks"], result["checks"]);
}

/// Two `coord resume` of one run started together: one continues it, the other is refused at
/// once with exit 75 and touches nothing; no leaf runs twice and the journal stays readable.
#[test]
fn two_resumes_of_one_run_never_both_act() {
    for trial in 0..20 {
        let p = slow_leaf_project(12);
        let mut child =
            p.coord().args(["run", "batches.rhai", "--scenario", "world.toml", "--leaf", "review=command"]).spawn();
        std::thread::sleep(Duration::from_millis(400));
        unsafe {
            libc::kill(child.id() as i32, libc::SIGINT);
        }
        assert_eq!(child.wait().unwrap().code(), Some(130), "trial {trial}");
        let dir = p.runs().pop().unwrap();
        let done_before = completed_sessions(&dir);
        let counts_before = invocation_counts(&p);

        let first = p.coord().args(["resume", "last", "--json"]).spawn();
        let second = p.coord().args(["resume", "last", "--json"]).spawn();
        let outs: Vec<std::process::Output> =
            [first, second].into_iter().map(|c| c.wait_with_output().unwrap()).collect();
        let mut codes: Vec<i32> = outs.iter().map(|o| o.status.code().unwrap_or(-1)).collect();
        codes.sort();
        assert_eq!(codes, [0, 75], "trial {trial}: {outs:?}");
        let refused = outs.iter().find(|o| o.status.code() == Some(75)).unwrap();
        assert!(String::from_utf8_lossy(&refused.stderr).contains("already owned by"), "{refused:?}");

        let counts_after = invocation_counts(&p);
        for id in &done_before {
            assert_eq!(counts_after.get(id), counts_before.get(id), "trial {trial}: completed leaf {id} ran again");
        }
        p.coord().args(["replay", "last"]).run().code(0);
    }
}

/// The outcome of a run as `--json` reports it, without what differs between runs (ids, dirs).
fn routing_outcome(out: &Value) -> Value {
    let effects: Vec<Value> = out["effects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| serde_json::json!({"kind": e["kind"], "args": e["args"], "result": e["result"]}))
        .collect();
    serde_json::json!({
        "status": out["status"],
        "sessions": out["sessions"],
        "effects": effects,
        "cost_usd": out["usage"]["cost_usd"],
        "tokens": out["usage"]["input_tokens"],
        "result": out["result"],
    })
}

/// The demo killed with kill -9 at random moments and resumed ends exactly as an uninterrupted
/// run does: the scenario's sequences, world and clock continue from what the journal holds.
#[test]
fn the_demo_killed_at_random_moments_and_resumed_ends_as_an_uninterrupted_run() {
    let p = TestProject::with_repo_files();
    // The demo with every leaf slowed down, so a kill lands among the leaves.
    let demo = std::fs::read_to_string(p.path().join("coordinators/groom-prs/scenarios/demo.toml")).unwrap();
    p.write("slow-demo.toml", &demo.replace("[[leaf]]\n", "[[leaf]]\ndelay_ms = 40\n"));
    let scenario = ["run", "coordinators/groom-prs.rhai", "--scenario", "slow-demo.toml", "--json"];
    let whole = p.coord().args(scenario).args(["--runs-dir", "whole"]).run();
    whole.code(0);
    let expected = routing_outcome(&whole.json());
    assert_eq!(expected["sessions"], 14, "{expected}");

    let mut rng = Rng(0x00de_ad10);
    let mut interrupted = 0;
    for trial in 0..10 {
        let runs = format!("runs-{trial}");
        let mut child = p.coord().args(scenario).args(["--runs-dir", &runs]).spawn();
        // The kill lands a random moment after the run began (its journal exists), however
        // slowly a loaded machine started it.
        let began = Instant::now();
        while !std::fs::read_dir(p.path().join(&runs))
            .into_iter()
            .flatten()
            .flatten()
            .any(|d| d.path().join("journal.jsonl").exists())
            && began.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(rng.next() % 350));
        unsafe {
            libc::kill(child.id() as i32, libc::SIGKILL);
        }
        let status = child.wait().unwrap();
        let Some(dir) = std::fs::read_dir(p.path().join(&runs)).ok().and_then(|mut d| d.next()) else {
            continue; // killed before the run began
        };
        let dir = dir.unwrap().path();
        if !dir.join("journal.jsonl").exists() {
            continue; // killed before its journal began: the run never started
        }
        // A kill that lands after the run wrote its end is a finished run: replay it.
        let finished =
            std::fs::read_to_string(dir.join("journal.jsonl")).unwrap().contains("\"type\":\"run_finished\"");
        let outcome = if status.code() == Some(0) || finished {
            let shown = p.coord().args(["replay".as_ref(), dir.as_os_str(), "--json".as_ref()]).run();
            shown.code(0);
            shown.json()
        } else {
            interrupted += 1;
            let resumed = p.coord().args(["resume".as_ref(), dir.as_os_str(), "--json".as_ref()]).run();
            resumed.code(0);
            resumed.json()
        };
        assert_eq!(routing_outcome(&outcome), expected, "trial {trial}");
    }
    assert!(interrupted >= 5, "only {interrupted} of 10 kills landed mid-run");
}

/// Resume reads a journal exactly as strictly as replay: a duplicated, deleted, moved or
/// incomplete entry is refused with exit 3 and its line, before anything runs; a torn tail
/// resumes with the warning replay gives.
#[test]
fn resume_refuses_a_damaged_journal_with_its_line_and_resumes_a_torn_tail() {
    let p = slow_leaf_project(8);
    let mut child =
        p.coord().args(["run", "batches.rhai", "--scenario", "world.toml", "--leaf", "review=command"]).spawn();
    // Interrupted once a session has finished, however slowly a loaded machine got there.
    let began = Instant::now();
    let has_a_finished_session = || {
        p.runs()
            .pop()
            .and_then(|d| std::fs::read_to_string(d.join("journal.jsonl")).ok())
            .is_some_and(|j| j.lines().count() > 8 && j.lines().any(|l| l.contains("\"type\":\"session\"")))
    };
    while !has_a_finished_session() && began.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let dir = p.runs().pop().unwrap();
    let journal = dir.join("journal.jsonl");
    let original = std::fs::read_to_string(&journal).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    assert!(lines.len() > 8, "{original}");
    let session_line = lines.iter().position(|l| l.contains("\"type\":\"session\"")).unwrap();

    let mut duplicated = lines.clone();
    duplicated.insert(5, lines[4]);
    let mut deleted = lines.clone();
    deleted.remove(4);
    let mut moved = lines.clone();
    moved.swap(3, 4);
    let mut incomplete = lines.clone();
    let without_session = lines[session_line].replacen("\"session\":", "\"sessio\":", 1);
    incomplete[session_line] = &without_session;
    let damages = [
        ("duplicated", duplicated, 6),
        ("deleted", deleted, 5),
        ("moved", moved, 4),
        ("incomplete", incomplete, session_line + 1),
    ];
    for (what, damaged, line) in damages {
        std::fs::write(&journal, damaged.join("\n") + "\n").unwrap();
        let before = std::fs::read(&journal).unwrap();
        let out = p.coord().args(["resume".as_ref(), dir.as_os_str()]).run();
        out.code(3);
        assert!(out.stderr.contains(&format!("journal.jsonl:{line}: corrupt journal entry")), "{what}: {}", out.stderr);
        assert_eq!(std::fs::read(&journal).unwrap(), before, "{what}: a refused resume touches nothing");
        let replayed = p.coord().args(["replay".as_ref(), dir.as_os_str()]).run();
        replayed.code(3);
        assert!(replayed.stderr.contains(&format!("journal.jsonl:{line}:")), "{what}: {}", replayed.stderr);
    }

    // A torn tail: the last line cut mid-write.
    let torn = &original[..original.len() - 12];
    std::fs::write(&journal, torn).unwrap();
    let out = p.coord().args(["resume".as_ref(), dir.as_os_str()]).run();
    out.code(0).stderr_has("dropped a torn last entry");
    p.coord().args(["replay".as_ref(), dir.as_os_str()]).run().code(0);
}

/// A leaf's large answer goes to blobs, output and text alike: no journal line reaches a
/// megabyte, and a replay hands the script the whole of both.
#[test]
fn a_large_answer_is_kept_in_blobs_and_replays_whole() {
    let p = TestProject::new();
    p.write_executable(
        "leaf.sh",
        "#!/bin/sh\ncat > /dev/null\nprintf '{\"notes\": \"'\nhead -c 5000000 /dev/zero | tr '\\0' 'x'\nprintf '\"}\\n'\n",
    );
    p.write("workflows/big.toml", &command_workflow("./leaf.sh", "60s", r#"{ type = "object" }"#));
    p.write(
        "s.rhai",
        "let r = await_sessions([spawn_session(\"big\", #{})])[0];\n#{ status: r.status, text: r.text.len(), notes: r.output.notes.len() }\n",
    );
    let out = p.coord().args(["run", "s.rhai", "--json"]).run();
    out.code(0);
    let result = out.json()["result"].clone();
    assert_eq!(result["status"], "ok");
    assert_eq!(result["notes"], 5_000_000);
    assert!(result["text"].as_u64().unwrap() > 5_000_000, "{result}");
    let dir = p.runs().pop().unwrap();
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    let longest = journal.lines().map(str::len).max().unwrap();
    assert!(longest < 64 * 1024, "a journal line of {longest} bytes");
    let replay = p.coord().args(["replay".as_ref(), dir.as_os_str(), "--json".as_ref()]).run();
    replay.code(0);
    assert_eq!(replay.json()["result"], result);
}

/// A journal written before the redesign of issue #23 (typed run phases, one replay decision,
/// shared script records) replays with today's binary to the result it recorded, and reads
/// in `coord show`.
#[test]
fn a_journal_written_before_the_redesign_replays() {
    let p = TestProject::with_repo_files();
    let fixture = support::repo_root().join("tests/fixtures/journals/before-the-redesign");
    // The script as it was when the journal was written.
    std::fs::copy(fixture.join("groom-prs.rhai"), p.path().join("coordinators/groom-prs.rhai")).unwrap();
    let id = "20261207-133435-7775";
    let run = p.path().join(".coord/runs").join(id);
    std::fs::create_dir_all(&run).unwrap();
    std::fs::copy(fixture.join("journal.jsonl"), run.join("journal.jsonl")).unwrap();

    let replayed = p.coord().args(["replay", id, "--json"]).run();
    replayed.code(0);
    assert_eq!(
        replayed.json()["result"],
        serde_json::json!({"drafts": [18], "escalated": [15, 17, 16], "fixed": [14], "merged": [12, 14], "waiting": [18, 13]})
    );
    p.coord().args(["show", id]).run().code(0).stdout_has("14 sessions (1 not ok) · 9 effects");
}
