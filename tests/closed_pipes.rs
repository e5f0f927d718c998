//! A closed stdout or stderr (a pager that quit, `| head`) ends what coord prints, not the run:
//! the run finishes (its journal ends with `run_finished`) and signals still stop it.
//!
//! Each test closes the read end of a pipe coord writes to, as `head` does once it has its
//! lines, and bounds how long coord may take to end generously (a debug build on a busy
//! machine): what is checked is that it ends, not how fast.

use crate::support;

/// The benchmark's generator of groom-prs scenarios (the rest of the benchmark goes unused).
#[path = "../benches/scale.rs"]
#[allow(dead_code, clippy::zombie_processes)]
mod scale;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use support::TestProject;

/// Generous: a 10,000-PR run takes seconds in a release build, tens of them in a debug build
/// on a loaded machine. A hang never ends.
const RUN_ENDS_WITHIN: Duration = Duration::from_secs(600);

/// `coord` in `dir`, as `support::CoordCommand` sets it up, with the stdio left to the test.
fn coord(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coord"));
    cmd.current_dir(dir).env_remove("COORD_RUNS_DIR").env_remove("COORD_PATH").env_remove("CI").env("NO_COLOR", "1");
    cmd
}

/// Waits for `child` to exit; kills it and fails the test if it outlives `bound`.
#[track_caller]
fn exits_within(child: &mut Child, bound: Duration, what: &str) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            eprintln!("{what}: coord exited {status} after {:?}", started.elapsed());
            return status;
        }
        if started.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: coord still running {bound:?} after its output was closed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last entry of the project's only run's journal.
fn last_journal_entry(p: &TestProject) -> Value {
    let runs = p.runs();
    assert_eq!(runs.len(), 1, "one run: {runs:?}");
    let journal = std::fs::read_to_string(runs[0].join("journal.jsonl")).unwrap();
    serde_json::from_str(journal.lines().last().expect("a journal line")).unwrap()
}

fn groom_project(prs: u32) -> TestProject {
    let p = TestProject::with_repo_files();
    p.write("big.toml", &scale::groom_scenario(prs));
    p
}

#[test]
fn head_taking_one_line_of_a_verbose_10000_pr_run_ends_the_printing_not_the_run() {
    // `coord -vv run coordinators/groom-prs.rhai --scenario big.toml 2>&1 | head -1`
    let p = groom_project(10_000);
    let (reader, writer) = std::io::pipe().unwrap();
    let mut cmd = coord(p.path());
    cmd.args(["-vv", "run", "coordinators/groom-prs.rhai", "--scenario", "big.toml"])
        .stdin(Stdio::null())
        .stdout(writer.try_clone().unwrap())
        .stderr(writer);
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let mut line = String::new();
    BufReader::new(reader).read_line(&mut line).unwrap();
    assert!(!line.is_empty(), "coord printed a line");
    // The reader is gone: every write coord makes from here on fails with EPIPE.
    let status = exits_within(&mut child, RUN_ENDS_WITHIN, "head -1");
    assert_eq!(status.code(), Some(0), "the run succeeded");
    let last = last_journal_entry(&p);
    assert_eq!(last["type"], "run_finished", "{last}");
    assert_eq!(last["status"], "succeeded", "{last}");
}

#[test]
fn a_closed_stdout_under_json_ends_the_printing_not_the_run() {
    // `coord -v run ... --json | true`: the summary object has no reader.
    let p = groom_project(1_000);
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = coord(p.path());
    cmd.args(["-v", "run", "coordinators/groom-prs.rhai", "--scenario", "big.toml", "--json"])
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let stderr = child.stderr.take().unwrap();
    let logs = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let status = exits_within(&mut child, RUN_ENDS_WITHIN, "stdout closed");
    let logs = logs.join().unwrap();
    assert_eq!(status.code(), Some(0), "the run succeeded\n{}", tail(&logs));
    assert!(!logs.contains("panicked"), "{}", tail(&logs));
    let last = last_journal_entry(&p);
    assert_eq!(last["type"], "run_finished", "{last}");
    assert_eq!(last["status"], "succeeded", "{last}");
}

#[test]
fn sigterm_stops_a_run_whose_stderr_is_closed_with_143() {
    let p = TestProject::new();
    let started = p.path().join("leaf-started");
    // A leaf that says it started, then runs until it is killed.
    let workflow = format!(
        "harness = \"command\"\ncommand = [\"sh\", \"-c\", '''touch {}; exec sleep 600''']\ntimeout = \"1h\"\nprompt = \"x\"\nschema = {{ type = \"object\" }}\n",
        started.display()
    );
    p.write("workflows/linger.toml", &workflow);
    p.write("s.rhai", "let r = await_sessions([spawn_session(\"linger\", #{ goal: \"x\" })])[0];\nr.status\n");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = coord(p.path());
    // `-v` logs every step to the closed stderr; the summary goes to stdout.
    cmd.args(["-v", "run", "s.rhai"]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(writer);
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let until = Instant::now() + Duration::from_secs(120);
    while !started.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("coord ended ({status}) before its leaf started");
        }
        assert!(Instant::now() < until, "the leaf never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: a signal to the process this test started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = exits_within(&mut child, Duration::from_secs(120), "SIGTERM");
    assert_eq!(status.code(), Some(143));
    let last = last_journal_entry(&p);
    assert_eq!(last["type"], "run_finished", "{last}");
    assert_eq!(last["status"], "interrupted", "{last}");
}

/// The last lines of a long log, for a failure message.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// `coord ARGS` in `p` with its stdout closed before it starts (`coord ARGS | true`): the exit
/// code and what it said on stderr.
fn with_stdout_closed(p: &TestProject, args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = coord(p.path());
    cmd.args(args).stdin(Stdio::null()).stdout(writer).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let stderr = child.stderr.take().unwrap();
    let said = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let status = exits_within(&mut child, RUN_ENDS_WITHIN, &args.join(" "));
    (status.code(), said.join().unwrap())
}

#[test]
fn read_only_commands_exit_0_silently_when_stdout_is_closed() {
    // `coord show last | head -1`, `coord runs --json | true`, ...
    let p = TestProject::with_repo_files();
    p.coord().args(["run", "coordinators/groom-prs.rhai", "--demo"]).run().code(0);
    let commands: [&[&str]; 8] = [
        &["show", "last"],
        &["show", "last", "--trace"],
        &["runs"],
        &["runs", "--json"],
        &["graph", "last"],
        &["lib", "list"],
        &["lib", "api"],
        &["replay", "last", "--trace"],
    ];
    for args in commands {
        let (code, stderr) = with_stdout_closed(&p, args);
        assert_eq!(code, Some(0), "coord {}: {stderr}", args.join(" "));
        assert!(stderr.is_empty(), "coord {} said on stderr: {stderr}", args.join(" "));
    }
}

#[test]
fn a_closed_stdout_leaves_the_exit_code_of_test_and_check_as_it_was() {
    // Their verdict is the exit code: a closed stdout must not turn it into a panic's 101.
    let p = TestProject::with_repo_files();
    for args in [&["test", "coordinators/groom-prs.rhai"][..], &["check", "coordinators/groom-prs.rhai"]] {
        let open = p.coord().args(args).run();
        let (code, stderr) = with_stdout_closed(&p, args);
        assert_eq!(code, Some(open.code), "coord {}: {stderr}", args.join(" "));
        assert!(!stderr.contains("panicked"), "coord {}: {stderr}", args.join(" "));
    }
}
