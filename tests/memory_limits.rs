//! The script's heap budget holds: a runaway script stops with exit 2, pointing at the line
//! that grew, before the process passes the budget by more than a tenth.
//!
//! Peak memory is the coord process's peak resident set, from `wait4`, less the peak of a
//! trivial script run the same way (the binary, the runtime, the host). Times are bounded
//! generously (a debug build on a busy machine); docs/performance.md has release figures.

use crate::support;

use std::path::Path;
use std::time::{Duration, Instant};
use support::TestProject;

const BUDGET_MIB: u64 = 64;

struct Ended {
    code: i32,
    stderr: String,
    peak_rss_mib: f64,
    took: Duration,
}

/// Runs `coord run SCRIPT` with `args` and measures it from outside.
#[allow(clippy::zombie_processes, reason = "reaped by `wait4`, which also reports its peak memory")]
fn run(dir: &Path, script: &str, args: &[&str]) -> Ended {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_coord"))
        .current_dir(dir)
        .env_remove("COORD_RUNS_DIR")
        .env("NO_COLOR", "1")
        .args(["run", script])
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("coord starts");
    let started = Instant::now();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let mut status = 0;
    // SAFETY: plain-data out-parameters for a child this test started and has not reaped.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(reaped, child.id() as i32, "wait4");
    let took = started.elapsed();
    Ended {
        code: if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 },
        stderr: reader.join().unwrap(),
        peak_rss_mib: usage.ru_maxrss as f64 / 1024.0,
        took,
    }
}

/// Runs a runaway script under a 64 MiB budget and checks how it ended: exit 2, the budget's
/// message at `script:LINE`, within the budget plus a tenth, in bounded time.
#[track_caller]
fn stops_within_budget(name: &str, source: &str, lines: &[usize]) {
    let p = TestProject::new();
    p.write("trivial.rhai", "let x = 1;\nx\n");
    p.write(&format!("{name}.rhai"), source);
    let budget = ["--max-heap-mib", &BUDGET_MIB.to_string()];
    let baseline = run(p.path(), "trivial.rhai", &budget);
    assert_eq!(baseline.code, 0, "{}", baseline.stderr);
    let ended = run(p.path(), &format!("{name}.rhai"), &budget);
    eprintln!(
        "{name}: exit {} after {:?}, peak {:.1} MiB (a trivial script: {:.1} MiB)",
        ended.code, ended.took, ended.peak_rss_mib, baseline.peak_rss_mib
    );
    assert_eq!(ended.code, 2, "{}", ended.stderr);
    assert!(ended.stderr.contains("the script outgrew its memory budget"), "{}", ended.stderr);
    assert!(ended.stderr.contains(&format!("the budget is {BUDGET_MIB} MiB")), "{}", ended.stderr);
    let at: Vec<String> = lines.iter().map(|line| format!("{name}.rhai:{line}:")).collect();
    assert!(at.iter().any(|at| ended.stderr.contains(at)), "expected the error at {at:?}:\n{}", ended.stderr);
    let ceiling = baseline.peak_rss_mib + BUDGET_MIB as f64 * 1.1;
    assert!(
        ended.peak_rss_mib < ceiling,
        "{name}: peak {:.1} MiB, over the budget's {BUDGET_MIB} MiB × 1.1 above the trivial run's {:.1} MiB",
        ended.peak_rss_mib,
        baseline.peak_rss_mib
    );
    assert!(ended.took < Duration::from_secs(120), "{name}: {:?}", ended.took);
}

#[test]
fn a_string_doubling_itself_with_plus_assign_stops_at_the_line_that_doubles() {
    stops_within_budget("doubling", "let s = \"x\";\nloop {\n    s += s;\n}\n", &[3]);
}

#[test]
fn a_string_doubling_itself_with_plus_stops_at_the_line_that_doubles() {
    stops_within_budget("plus", "let s = \"x\";\nloop {\n    s = s + s;\n}\n", &[3]);
}

#[test]
fn padding_a_string_past_the_budget_is_refused_at_once() {
    // The error is the `pad` line's, not the next one's.
    stops_within_budget("pad", "let s = \"x\";\ns.pad(2000000000, \"x\");\nlet after = 1;\n", &[2]);
    stops_within_budget("pad_char", "let s = \"x\";\ns.pad(2000000000, 'x');\nlet after = 1;\n", &[2]);
}

#[test]
fn padding_a_list_past_the_budget_is_refused_at_once() {
    stops_within_budget("list_pad", "let a = [0];\na.pad(2000000000, 0);\nlet after = 1;\n", &[2]);
    stops_within_budget("nested_pad", "let a = [];\na.pad(10000000, [1, 2, 3, 4]);\nlet after = 1;\n", &[2]);
}

#[test]
fn a_list_doubling_itself_stops_at_the_line_that_doubles() {
    stops_within_budget("list_doubling", "let a = [0];\nloop {\n    a += a;\n}\n", &[3]);
}

#[test]
fn a_list_growing_by_push_stops_at_the_push() {
    stops_within_budget("list_push", "let a = [];\nloop {\n    a.push(0);\n}\n", &[3]);
}

#[test]
fn a_map_growing_a_key_at_a_time_stops_in_its_loop() {
    // Growth a little at a time is seen between operations: the stop is reported at the
    // insert or at the statement after it.
    stops_within_budget("map", "let m = #{};\nlet i = 0;\nloop {\n    m[\"k\" + i] = i;\n    i += 1;\n}\n", &[4, 5]);
}

/// A quarter of the machine's physical memory, at least 1 GiB: the default budget's rule.
fn default_budget_mib() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let total_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    (total_kib / 1024 / 4).max(1024)
}

#[test]
fn the_default_budget_is_a_quarter_of_memory_and_at_least_a_gibibyte() {
    let p = TestProject::new();
    let mib = default_budget_mib();
    p.write("trivial.rhai", "let x = 1;\nx\n");
    p.write("pad.rhai", &format!("let s = \"x\";\ns.pad({}, \"x\");\n", (mib + 1024) * 1024 * 1024));
    // A child's peak as `wait4` reports it counts the memory of the process it was started
    // from until its exec (the test binary, which grows as the suite runs): compare with a
    // trivial run started the same way.
    let baseline = run(p.path(), "trivial.rhai", &[]);
    let ended = run(p.path(), "pad.rhai", &[]);
    assert_eq!(ended.code, 2, "{}", ended.stderr);
    // /proc/meminfo and sysconf may round the total differently by a page or so.
    let said = ended.stderr.split("the budget is ").nth(1).and_then(|r| r.split(' ').next()?.parse::<u64>().ok());
    assert!(said.is_some_and(|said| said.abs_diff(mib) <= 1), "expected about {mib} MiB: {}", ended.stderr);
    assert!(ended.stderr.contains("pad.rhai:2:"), "{}", ended.stderr);
    assert!(
        ended.peak_rss_mib < baseline.peak_rss_mib + 200.0,
        "refused before allocating: peak {:.1} MiB (a trivial run: {:.1} MiB)",
        ended.peak_rss_mib,
        baseline.peak_rss_mib
    );
}

#[test]
fn the_budget_is_set_in_coord_toml_and_the_flag_wins() {
    let p = TestProject::new();
    p.write("coord.toml", "[run]\nmax_heap = \"64MiB\"\n");
    p.write("pad.rhai", "let s = \"x\";\ns.pad(100000000, \"x\");\n");
    let from_config = run(p.path(), "pad.rhai", &[]);
    assert_eq!(from_config.code, 2, "{}", from_config.stderr);
    assert!(from_config.stderr.contains("the budget is 64 MiB"), "{}", from_config.stderr);
    let from_flag = run(p.path(), "pad.rhai", &["--max-heap", "32MiB"]);
    assert!(from_flag.stderr.contains("the budget is 32 MiB"), "{}", from_flag.stderr);
    let raised = run(p.path(), "pad.rhai", &["--max-heap", "1GiB"]);
    assert_eq!(raised.code, 0, "{}", raised.stderr);
    let refused = run(p.path(), "pad.rhai", &["--max-heap", "lots"]);
    assert_eq!(refused.code, 2, "a flag that does not read is a usage error: {}", refused.stderr);
}
