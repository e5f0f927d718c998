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

/// The parent of `pid`, from `/proc/PID/stat`.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_ascii_whitespace().nth(1)?.parse().ok()
}

fn argv_of(pid: i32) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&cmdline).replace('\0', " ").trim_end().to_owned()
}

/// The argv of the leaf's supervisor: the parent of the leaf's `sh -c` (a supervisor the host
/// forked shows the host's argv, `coord __leaf-supervisor-host`).
fn supervisor_argv(marker: &str) -> Option<String> {
    let (leaf, _) = marked_processes(marker).into_iter().find(|(_, argv)| argv.starts_with("sh -c"))?;
    Some(argv_of(parent_of(leaf)?))
}

/// The supervisor host the coord process `coord` started, if one runs.
fn host_of(coord: u32) -> Option<i32> {
    std::fs::read_dir("/proc").unwrap().flatten().find_map(|entry| {
        let pid = entry.file_name().to_str()?.parse::<i32>().ok()?;
        let ours = parent_of(pid) == Some(coord as i32) && support::process_alive(pid);
        (ours && argv_of(pid).contains("__leaf-supervisor-host")).then_some(pid)
    })
}

fn coord_dies_by(signal: i32, what: &str) {
    let m = unique_marker();
    let p = project(&leaf_leaving_processes(&m, &format!("sleep {m}4")), "1h");
    let mut coord = start_and_wait_for_leaf(&p, &m, 4);
    let supervisor = supervisor_argv(&m);
    let died = kill_coord(&mut coord, signal);
    assert_gone_within_bound(&m, died, what);
    assert!(
        supervisor.as_deref().is_some_and(|argv| argv.contains("__leaf-supervisor-host")),
        "the leaf ran under a supervisor coord's supervisor host forked: {supervisor:?}"
    );
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
        (
            "",
            ", command: [\"coord-no-such-program\"]",
            "coord-no-such-program`: No such file or directory (os error 2)",
            0,
        ),
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
    // Nor is the host: without its socket it refuses.
    let mut host_by_hand = std::process::Command::new(env!("CARGO_BIN_EXE_coord"));
    host_by_hand.args(["__leaf-supervisor-host"]).current_dir(p.path());
    unsafe {
        use std::os::unix::process::CommandExt;
        host_by_hand.pre_exec(|| {
            libc::close(3);
            Ok(())
        });
    }
    let host_by_hand = support::Outcome::from(host_by_hand.output().unwrap());
    assert_eq!(host_by_hand.code, 2, "{host_by_hand:?}");
    assert!(host_by_hand.stderr.contains("started by coord for its leaves"), "{host_by_hand:?}");
}

/// The supervisor host killed while a leaf runs: that leaf's supervisor goes on (it still dies
/// with coord), and leaves started afterwards start, under a new host.
#[test]
fn the_supervisor_host_killed_while_a_leaf_runs_leaves_it_supervised_and_new_leaves_start() {
    let m = unique_marker();
    let p = project(&leaf_leaving_processes(&m, &format!("sleep {m}4")), "1h");
    let (go, after_ran) = (p.path().join("go"), p.path().join("after-ran"));
    let workflow = |script: String| {
        format!("harness = \"command\"\ncommand = [\"sh\", \"-c\", '''{script}''']\nprompt = \"x\"\nschema = {{ type = \"object\" }}\n")
    };
    p.write(
        "workflows/waiter.toml",
        &workflow(format!("while [ ! -e {} ]; do sleep 0.02; done; echo {{}}", go.display())),
    );
    p.write("workflows/after.toml", &workflow(format!("touch {}; echo {{}}", after_ran.display())));
    p.write(
        "s.rhai",
        "let a = spawn_session(\"linger\", #{ goal: \"x\" });\nawait_sessions([spawn_session(\"waiter\", #{ goal: \"w\" })]);\nawait_sessions([spawn_session(\"after\", #{ goal: \"y\" })]);\nawait_sessions([a]);\n",
    );
    let mut coord = start_and_wait_for_leaf(&p, &m, 4);
    let host = host_of(coord.id()).expect("coord started a supervisor host");
    unsafe {
        libc::kill(host, libc::SIGKILL);
    }
    let until = Instant::now() + Duration::from_secs(10);
    while support::process_alive(host) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(sleeps(&marked_processes(&m)), 4, "the leaf runs on without the host");
    std::fs::write(&go, "").unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    while !after_ran.exists() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    let new_host = host_of(coord.id());
    let died = kill_coord(&mut coord, libc::SIGKILL);
    assert!(after_ran.exists(), "a leaf started after the host's death ran");
    assert!(new_host.is_some_and(|h| h != host), "a new host started: {new_host:?} (the killed one was {host})");
    assert_gone_within_bound(&m, died, "SIGKILL after the host's death");
}

/// A leaf's supervisor killed outright (SIGKILL: no cleanup of its own) takes the leaf with it,
/// by the parent-death signal the leaf starts with.
#[test]
fn a_leaf_dies_with_its_supervisor_killed_outright() {
    let m = unique_marker();
    // The leaf is the sleep itself: nothing of it outlives it, with or without a supervisor.
    let p = project(&format!("exec sleep {m}1"), "1h");
    let mut coord = start_and_wait_for_leaf(&p, &m, 1);
    let (leaf, _) = marked_processes(&m).into_iter().find(|(_, argv)| argv.starts_with("sleep ")).expect("the leaf");
    let supervisor = parent_of(leaf).expect("the leaf's supervisor");
    assert!(argv_of(supervisor).contains("__leaf-supervisor-host"), "forked by the host: {}", argv_of(supervisor));
    assert_ne!(Some(supervisor), host_of(coord.id()), "the leaf's own supervisor, not the host");
    // coord stopped cannot kill the leaf's group on reading of its supervisor's death: only the
    // parent-death signal can end the leaf.
    unsafe {
        libc::kill(coord.id() as i32, libc::SIGSTOP);
    }
    let stat = || std::fs::read_to_string(format!("/proc/{}/stat", coord.id())).unwrap_or_default();
    while !stat().rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('T')) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let killed = Instant::now();
    unsafe {
        libc::kill(supervisor, libc::SIGKILL);
    }
    while support::process_alive(leaf) && killed.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = killed.elapsed();
    let died = kill_coord(&mut coord, libc::SIGKILL);
    eprintln!("the leaf went {took:?} after its supervisor's SIGKILL");
    if took > GONE_WITHIN {
        kill_marked(&m);
        panic!("the leaf outlived its supervisor by {took:?}");
    }
    assert_gone_within_bound(&m, died, "SIGKILL after the supervisor's");
}

/// Many leaves at once through one host: each gets its own stdin, environment and stdout
/// (nothing of one request reaches another leaf), and every one ends ok.
#[test]
fn many_leaves_at_once_each_get_their_own_request_environment_and_answer() {
    let p = TestProject::new();
    p.write(
        "workflows/echo.toml",
        "harness = \"command\"\ncommand = [\"sh\", \"-c\", '''printf '{\"session\": \"%s\", \"request\": %s}' \"$COORD_SESSION_ID\" \"$(cat)\"''']\nprompt = \"x\"\nschema = { type = \"object\" }\n",
    );
    p.write(
        "s.rhai",
        "let hs = [];\nfor i in 0..80 { hs.push(spawn_session(\"echo\", #{ goal: `g${i}` })); }\nawait_sessions(hs).map(|r| #{ status: r.status, output: r.output })\n",
    );
    let out = p.coord().args(["run", "s.rhai", "--json", "--max-parallel", "40"]).run();
    out.code(0);
    let results = out.json()["result"].as_array().cloned().unwrap_or_default();
    assert_eq!(results.len(), 80, "{}", out.stdout);
    let mut goals = Vec::new();
    for r in &results {
        assert_eq!(r["status"], "ok", "{r}");
        assert_eq!(r["output"]["session"], r["output"]["request"]["session"], "{r}");
        goals.push(r["output"]["request"]["goal"].as_str().unwrap().to_owned());
    }
    goals.sort();
    let mut expected: Vec<String> = (0..80).map(|i| format!("g{i}")).collect();
    expected.sort();
    assert_eq!(goals, expected);
}

/// The leaf starts with the signal mask and ignored signals coord was started with, through
/// the host as without any supervisor.
#[test]
fn a_leaf_gets_the_signals_coord_was_given() {
    let p = one_leaf(r#"grep -E "^Sig(Blk|Ign)" /proc/self/status > "signals-$COORD_LEAF_MODE"; echo '{}'"#, "");
    let mut seen = Vec::new();
    for mode in ["on", "off"] {
        p.write(
            "coord.toml",
            &format!("[harness.command]\nretry_backoff = \"10ms\"\nenv = {{ COORD_LEAF_MODE = \"{mode}\" }}\n"),
        );
        let mut coord = std::process::Command::new(env!("CARGO_BIN_EXE_coord"));
        coord.args(["-q", "run", "s.rhai"]).current_dir(p.path()).env("COORD_LEAF_SUPERVISOR", mode);
        unsafe {
            use std::os::unix::process::CommandExt;
            coord.pre_exec(|| {
                libc::signal(libc::SIGUSR2, libc::SIG_IGN);
                Ok(())
            });
        }
        let out = support::Outcome::from(coord.output().unwrap());
        assert_eq!(out.code, 0, "{out:?}");
        seen.push(p.read(&format!("signals-{mode}")));
    }
    assert_eq!(seen[0], seen[1], "with the supervisor host, then without a supervisor");
    let ignored = seen[0].lines().find_map(|l| l.strip_prefix("SigIgn:")).unwrap().trim().to_owned();
    let ignored = u64::from_str_radix(&ignored, 16).unwrap();
    assert_ne!(ignored & (1 << (libc::SIGUSR2 - 1)), 0, "SIGUSR2 stays ignored: {seen:?}");
}
