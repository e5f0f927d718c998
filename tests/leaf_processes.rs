//! Nothing a leaf starts outlives coord, nor the leaf (docs/harnesses.md, "Leaf processes never
//! outlive coord"): coord killed by SIGKILL, SIGTERM or SIGINT in the middle of a leaf; a leaf
//! that leaves background processes behind when it exits (in its process group, in a session
//! of their own, double-forked); and, under the leaf supervisor, a leaf's exit codes, signals,
//! missing programs and timeouts reported as before.
//!
//! A test finds the processes of its leaf by a marker unique to it in their argv (the leaf's
//! sleeps last a duration no other test uses), through /proc. It kills only the coord process
//! it started, and, when a test fails, the processes that carry its own marker.

use crate::support;

use serde_json::Value;
use std::process::Child;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use support::TestProject;

/// The acceptance bound: every process of the leaf is gone this long after coord's death.
const GONE_WITHIN: Duration = Duration::from_secs(2);

/// A prefix of sleep durations no other process on the machine uses: `sleep 3<pid><n>.1` and so
/// on, where `<pid>` is this test process's and `<n>` counts the markers it made.
fn unique_marker() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("3{:07}{:02}.", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Processes alive (zombies count as dead) whose argv contains `marker`, with their argv.
fn marked_processes(marker: &str) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let argv = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if argv.contains(marker) && support::process_alive(pid) {
            found.push((pid, argv.trim_end().to_owned()));
        }
    }
    found
}

fn sleeps(processes: &[(i32, String)]) -> usize {
    processes.iter().filter(|(_, argv)| argv.starts_with("sleep ")).count()
}

/// Kills what is left of a failed test's leaf: only processes carrying its own marker.
fn kill_marked(marker: &str) {
    for (pid, _) in marked_processes(marker) {
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// Polls until no process carries `marker`; how long that took, or the survivors after a
/// generous wait (so a failure still says how long it would have taken).
fn wait_all_gone(marker: &str, since: Instant) -> Result<Duration, Vec<(i32, String)>> {
    loop {
        let left = marked_processes(marker);
        if left.is_empty() {
            return Ok(since.elapsed());
        }
        if since.elapsed() > Duration::from_secs(10) {
            kill_marked(marker);
            return Err(left);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Asserts every marked process went within [`GONE_WITHIN`] of `since`, and reports the time.
#[track_caller]
fn assert_gone_within_bound(marker: &str, since: Instant, what: &str) {
    match wait_all_gone(marker, since) {
        Ok(took) => {
            eprintln!("{what}: every process of the leaf gone {took:?} after coord's death was observed");
            assert!(took <= GONE_WITHIN, "{what}: the leaf's processes took {took:?} to go (bound {GONE_WITHIN:?})");
        }
        Err(left) => panic!("{what}: processes of the leaf outlived coord by 10 s: {left:#?}"),
    }
}

/// A project whose `linger` workflow runs `sh -c SCRIPT` as a `command` leaf, and a script that
/// awaits one such leaf and returns its status and error.
fn project(script: &str, timeout: &str) -> TestProject {
    let p = TestProject::new();
    let workflow = format!(
        "harness = \"command\"\ncommand = [\"sh\", \"-c\", '''{script}''']\ntimeout = \"{timeout}\"\nprompt = \"x\"\nschema = {{ type = \"object\" }}\n"
    );
    p.write("workflows/linger.toml", &workflow);
    p.write(
        "s.rhai",
        "let r = await_sessions([spawn_session(\"linger\", #{ goal: \"x\" })])[0];\n#{ status: r.status, error: r.error }\n",
    );
    p
}

/// A leaf that leaves behind, with the marker `m` in their argv: a background child in its
/// process group, a child that moved to a session of its own (`setsid`), and a grandchild in a
/// session of its own whose parent exited at once (setsid and double fork: it was reparented
/// before coord died). `then` is what the leaf does last.
fn leaf_leaving_processes(m: &str, then: &str) -> String {
    format!("sleep {m}1 &\nsetsid sleep {m}2 &\nsh -c 'setsid sleep {m}3 & exit 0'\n{then}\n")
}

/// Starts `coord run s.rhai` and waits until the leaf's `sleeps` sleeps run.
fn start_and_wait_for_leaf(p: &TestProject, marker: &str, sleeps_expected: usize) -> Child {
    let mut coord = p.coord().args(["run", "s.rhai", "--json"]).spawn();
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let running = marked_processes(marker);
        if sleeps(&running) == sleeps_expected {
            return coord;
        }
        if let Some(status) = coord.try_wait().unwrap() {
            kill_marked(marker);
            let out = coord.wait_with_output().unwrap();
            panic!("coord ended ({status}) before its leaf started: {}", String::from_utf8_lossy(&out.stderr));
        }
        if Instant::now() > until {
            let _ = coord.kill();
            kill_marked(marker);
            panic!("the leaf's processes never all started: {running:#?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `signal` to the coord process this test started (and to nothing else), and returns
/// when its death is observed.
fn kill_coord(coord: &mut Child, signal: i32) -> Instant {
    let sent = Instant::now();
    unsafe {
        libc::kill(coord.id() as i32, signal);
    }
    let until = Instant::now() + Duration::from_secs(30);
    while coord.try_wait().unwrap().is_none() {
        if Instant::now() > until {
            let _ = coord.kill();
            let _ = coord.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    eprintln!("coord's death observed {:?} after the signal", sent.elapsed());
    Instant::now()
}

fn coord_dies_by(signal: i32, what: &str) {
    let m = unique_marker();
    let p = project(&leaf_leaving_processes(&m, &format!("sleep {m}4")), "1h");
    let mut coord = start_and_wait_for_leaf(&p, &m, 4);
    let supervisor = marked_processes(&m).into_iter().any(|(_, argv)| argv.contains("__leaf-supervisor"));
    let died = kill_coord(&mut coord, signal);
    assert_gone_within_bound(&m, died, what);
    assert!(supervisor, "the leaf ran under coord's leaf supervisor");
}

#[test]
fn coord_killed_with_sigkill_takes_every_process_of_its_leaf_with_it() {
    coord_dies_by(libc::SIGKILL, "SIGKILL");
}

#[test]
fn coord_stopped_by_sigterm_takes_every_process_of_its_leaf_with_it() {
    coord_dies_by(libc::SIGTERM, "SIGTERM");
}

#[test]
fn coord_stopped_by_sigint_takes_every_process_of_its_leaf_with_it() {
    coord_dies_by(libc::SIGINT, "SIGINT");
}

#[test]
fn coord_killed_while_leaves_run_in_parallel_takes_them_all() {
    let m = unique_marker();
    let p = project(&leaf_leaving_processes(&m, &format!("sleep {m}4")), "1h");
    p.write(
        "s.rhai",
        "let hs = [];\nfor i in 0..4 { hs.push(spawn_session(\"linger\", #{ goal: `x${i}` })); }\nawait_sessions(hs);\n",
    );
    let mut coord = start_and_wait_for_leaf(&p, &m, 16);
    let died = kill_coord(&mut coord, libc::SIGKILL);
    assert_gone_within_bound(&m, died, "SIGKILL, 4 leaves");
}

/// Runs `coord run s.rhai --json` to its end (killing it past a deadline, so a leaf's stray
/// process holding its stdout cannot hang the test), and returns the script's result.
fn run_to_end(p: &TestProject, marker: &str) -> (Value, Instant) {
    let coord = p.coord().args(["run", "s.rhai", "--json"]).spawn();
    let pid = coord.id() as i32;
    let waiter = std::thread::spawn(move || coord.wait_with_output().unwrap());
    let until = Instant::now() + Duration::from_secs(60);
    while !waiter.is_finished() {
        if Instant::now() > until {
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            let _ = waiter.join();
            kill_marked(marker);
            panic!("coord did not finish a run whose leaf exits at once");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let ended = Instant::now();
    let out = waiter.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result = serde_json::from_str::<Value>(stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    (result["result"].clone(), ended)
}

#[test]
fn background_processes_a_leaf_leaves_behind_die_when_it_exits() {
    let m = unique_marker();
    // The strays keep the leaf's stdout open: the run would wait on them if they lived.
    let p = project(&leaf_leaving_processes(&m, "echo '{\"done\": true}'"), "1h");
    let (result, ended) = run_to_end(&p, &m);
    assert_eq!(result["status"], "ok", "{result}");
    assert_gone_within_bound(&m, ended, "leaf exited");
}

#[test]
fn a_timed_out_leaf_is_killed_with_everything_it_started() {
    let m = unique_marker();
    let p = project(&leaf_leaving_processes(&m, &format!("sleep {m}4")), "1s");
    let (result, ended) = run_to_end(&p, &m);
    assert_eq!(result["status"], "timeout", "{result}");
    assert!(result["error"].as_str().unwrap().contains("timed out after 1s"), "{result}");
    assert_gone_within_bound(&m, ended, "timeout");
}

/// A project with one `command` workflow, `leaf`, run by `sh -c SCRIPT`, retried once on a
/// transient failure; `spawn_options` go to its one `spawn_session`.
fn one_leaf(script: &str, spawn_options: &str) -> TestProject {
    let p = TestProject::new();
    p.write(
        "workflows/leaf.toml",
        &format!("harness = \"command\"\ncommand = [\"sh\", \"-c\", '''{script}''']\ntimeout = \"30s\"\nretries = 1\nprompt = \"x\"\nschema = {{ type = \"object\" }}\n"),
    );
    p.write("coord.toml", "[harness.command]\nretry_backoff = \"10ms\"\n");
    p.write(
        "s.rhai",
        &format!("let r = await_sessions([spawn_session(\"leaf\", #{{ goal: \"x\"{spawn_options} }})])[0];\n#{{ status: r.status, error: r.error, output: r.output }}\n"),
    );
    p
}

#[test]
fn exit_codes_and_answers_read_as_before() {
    let ok = one_leaf(r#"cat >/dev/null; echo '{"a": 1}'"#, "");
    let out = ok.coord().args(["run", "s.rhai", "--json"]).run();
    out.code(0);
    let r = out.json()["result"].clone();
    assert_eq!((r["status"].as_str(), r["output"]["a"].as_i64()), (Some("ok"), Some(1)), "{r}");

    let three = one_leaf("echo . >> attempts; echo 'model overloaded' >&2; exit 3", "");
    let out = three.coord().args(["run", "s.rhai", "--json"]).run();
    out.code(0);
    let r = out.json()["result"].clone();
    assert_eq!(r["status"], "failed");
    assert_eq!(r["error"], "exited with status 3: model overloaded", "{r}");
    assert_eq!(three.read("attempts").lines().count(), 1, "a permanent failure is not retried");
}

/// Transient failures (exit 75, death by a signal) are retried, then stop the run as an
/// outage; a program that cannot start is a configuration failure, never retried. The
/// supervisor's exit status must be the leaf's for these to read as they did.
#[test]
fn transient_exits_signals_and_missing_programs_read_as_before() {
    let cases = [
        ("echo . >> attempts; exit 75", "", "exited with status 75", 2),
        ("echo . >> attempts; kill -TERM $$", "", "was killed by a signal", 2),
        ("echo . >> attempts; kill -HUP $$", "", "was killed by a signal", 2),
        ("", ", command: [\"./not-here.sh\"]", "not-here.sh`: No such file or directory (os error 2)", 0),
        ("", ", command: [\"./not-executable.sh\"]", "not-executable.sh`: Permission denied (os error 13)", 0),
    ];
    for (script, spawn_options, error, attempts) in cases {
        // The preflight refuses a workflow whose program is missing; a script's `command`
        // option gets past it, to the leaf's own start.
        let p = one_leaf(script, spawn_options);
        p.write("not-executable.sh", "#!/bin/sh\necho '{}'\n");
        let out = p.coord().args(["run", "s.rhai"]).run();
        out.code(1).stderr_has("the command harness failed on session s1 (leaf)");
        assert!(out.stderr.contains(error), "{script}{spawn_options}: {}", out.stderr);
        assert_eq!(p.read("attempts").lines().count(), attempts, "{script}{spawn_options}");
        if attempts == 0 {
            out.stderr_has("cannot start `");
        }
    }
}

#[test]
fn the_supervisor_is_not_a_command_a_user_sees() {
    let p = TestProject::new();
    let help = p.coord().args(["--help"]).run();
    help.code(0).stdout_lacks("supervisor");
    // Started by hand, without the descriptors coord gives it, it refuses and starts nothing.
    // (Descriptors 3 and 4 are closed first: a jobserver's pipes could otherwise be there.)
    let mut by_hand = std::process::Command::new(env!("CARGO_BIN_EXE_coord"));
    by_hand.args(["__leaf-supervisor", "--", "sh", "-c", "touch started"]).current_dir(p.path());
    unsafe {
        use std::os::unix::process::CommandExt;
        by_hand.pre_exec(|| {
            libc::close(3);
            libc::close(4);
            Ok(())
        });
    }
    let by_hand = support::Outcome::from(by_hand.output().unwrap());
    assert_eq!(by_hand.code, 2, "{by_hand:?}");
    assert!(by_hand.stderr.contains("started by coord for its leaves"), "{by_hand:?}");
    assert!(!p.path().join("started").exists());
}
