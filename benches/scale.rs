//! Whole-process benchmarks of coord over generated scenarios (`cargo bench --bench scale`).
//!
//! Each figure is a full `coord` process (release build), measured from outside: wall time
//! from spawn to exit, peak RSS from `wait4`. Ratios are taken within one invocation, because
//! the machine is shared and absolute times drift. Method and figures: docs/performance.md.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A groom-prs scenario of `n` PRs with the demo's mix of routing branches.
pub fn groom_scenario(n: u32) -> String {
    let mut s =
        String::from("coordinator = \"groom-prs\"\nnow = \"2026-11-21T09:00:00Z\"\n[inputs]\nrepo = \"acme/scale\"\n");
    for pr in 1..=n {
        let checks = if pr % 10 == 1 { "red" } else { "green" };
        s.push_str(&format!(
            "[[github.prs]]\nnumber = {pr}\ntitle = \"Change {pr}\"\nhead_sha = \"{pr:07x}\"\nchecks = \"{checks}\"\n"
        ));
    }
    let finding = |sev: &str| format!("[{{ severity = \"{sev}\", message = \"m\" }}]");
    for pr in 1..=n {
        let rule = match pr % 20 {
            0..=9 => "output = { verdict = \"clean\", findings = [] }".to_owned(),
            10..=13 => format!("sequence = [{{ output = {{ verdict = \"minor\", findings = {} }} }}, {{ output = {{ verdict = \"clean\", findings = [] }} }}]", finding("minor")),
            14 | 15 => format!("output = {{ verdict = \"blocking\", findings = {} }}", finding("blocking")),
            16 | 17 => format!("output = {{ verdict = \"minor\", findings = {} }}", finding("minor")),
            _ => "status = \"timeout\"".to_owned(),
        };
        s.push_str(&format!("[[leaf]]\nworkflow = \"mr-review\"\nmatch = {{ pr = {pr} }}\n{rule}\nusage = {{ input_tokens = 1000, output_tokens = 100, cost_usd = 0.004 }}\n"));
    }
    s.push_str("[[leaf]]\nworkflow = \"coding-task\"\noutput = { status = \"fixed\", summary = \"done\" }\n");
    s
}

pub struct Measured {
    pub wall: Duration,
    pub peak_rss_kib: i64,
    pub user_sys: Duration,
    pub stdout: String,
}

/// Runs a command to completion and measures it from outside.
pub fn measure(cmd: &mut Command) -> Measured {
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null());
    let started = Instant::now();
    let child = cmd.spawn().expect("command starts");
    let pid = child.id() as i32;
    let mut stdout = child.stdout.expect("stdout piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).ok();
        s
    });
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    Measured {
        wall,
        peak_rss_kib: usage.ru_maxrss,
        user_sys: tv(usage.ru_utime) + tv(usage.ru_stime),
        stdout: reader.join().unwrap_or_default(),
    }
}

/// The binary under test: `$COORD_BIN` (to compare two builds in one sitting), else the one
/// built with this benchmark (`cargo bench --profile dist --bench scale` for published speed).
fn coord() -> PathBuf {
    match std::env::var_os("COORD_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => PathBuf::from(env!("CARGO_BIN_EXE_coord")),
    }
}

/// The PR counts of the groom-prs cases: `$COORD_SCALE_PRS` (comma-separated, e.g.
/// `10000,100000` for the 100,000-PR case), else 1,000 and 10,000. The replay case needs 10,000.
fn pr_counts() -> Vec<u32> {
    match std::env::var("COORD_SCALE_PRS") {
        Ok(list) => list.split(',').filter_map(|n| n.trim().parse().ok()).collect(),
        Err(_) => vec![1_000, 10_000],
    }
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let runs = work.path().join("runs");
    let trials = 5;
    println!("coord scale benchmark ({trials} trials each, medians; release build)\n");

    // Issue 2: groom-prs at 1,000 and 10,000 PRs, mock leaves.
    let mut run_ids = std::collections::HashMap::new();
    println!("{:<44} {:>10} {:>12} {:>10}", "case", "wall", "peak RSS", "cpu");
    for n in pr_counts() {
        let scenario = work.path().join(format!("groom-{n}.toml"));
        std::fs::write(&scenario, groom_scenario(n)).unwrap();
        for (label, extra) in [("journal on disk", None), ("journal in memory", Some("--journal-in-memory"))] {
            let mut walls = Vec::new();
            let mut cpu = Vec::new();
            let mut rss = 0;
            for _ in 0..trials {
                let mut cmd = Command::new(coord());
                cmd.current_dir(&root)
                    .args(["run", "coordinators/groom-prs.rhai", "--json", "--max-parallel", "64", "--runs-dir"])
                    .arg(&runs)
                    .arg("--scenario")
                    .arg(&scenario);
                if let Some(flag) = extra {
                    cmd.arg(flag);
                }
                let m = measure(&mut cmd);
                let v: serde_json::Value = serde_json::from_str(m.stdout.trim()).expect("run --json");
                assert_eq!(v["status"], "succeeded");
                if extra.is_none() {
                    run_ids.insert(n, v["run_dir"].as_str().unwrap().to_owned());
                }
                walls.push(m.wall);
                cpu.push(m.user_sys);
                rss = rss.max(m.peak_rss_kib);
            }
            println!(
                "{:<44} {:>8.0}ms {:>9.1} MiB {:>8.0}ms",
                format!("groom-prs run, {n} PRs, {label}"),
                median(walls).as_secs_f64() * 1e3,
                rss as f64 / 1024.0,
                median(cpu).as_secs_f64() * 1e3
            );
        }
    }

    // Issue 3: replay of the 10,000-PR run.
    let dir = Path::new(&run_ids[&10_000]).to_owned();
    let entries = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap().lines().count();
    let mut walls = Vec::new();
    for _ in 0..trials {
        let m = measure(Command::new(coord()).current_dir(&root).args(["replay", "--json"]).arg(&dir));
        assert!(m.stdout.contains("\"succeeded\""));
        walls.push(m.wall);
    }
    let w = median(walls);
    println!(
        "{:<44} {:>8.0}ms   ({entries} entries, {:.0} entries/s)",
        "replay of the 10,000-PR run",
        w.as_secs_f64() * 1e3,
        entries as f64 / w.as_secs_f64()
    );

    // Issue 4: coord test over the shipped scenarios, and a 1,000-PR scenario.
    let mut cpu = Vec::new();
    let mut walls = Vec::new();
    for _ in 0..trials {
        let m = measure(Command::new(coord()).current_dir(&root).args(["test"]));
        cpu.push(m.user_sys);
        walls.push(m.wall);
    }
    println!(
        "{:<44} {:>8.0}ms   cpu {:.0}ms",
        "coord test, shipped scenarios",
        median(walls).as_secs_f64() * 1e3,
        median(cpu).as_secs_f64() * 1e3
    );
    let proj = work.path().join("proj");
    for d in ["coordinators", "workflows"] {
        copy_dir(&root.join(d), &proj.join(d));
    }
    let big = proj.join("coordinators/groom-prs/scenarios/big.toml");
    std::fs::write(&big, groom_scenario(1_000)).unwrap();
    Command::new(coord())
        .current_dir(&proj)
        .args(["test", "--accept", "coordinators/groom-prs/scenarios/big.toml"])
        .output()
        .unwrap();
    let mut walls = Vec::new();
    for _ in 0..trials {
        let m = measure(
            Command::new(coord()).current_dir(&proj).args(["test", "coordinators/groom-prs/scenarios/big.toml"]),
        );
        assert!(m.stdout.contains("1 passed, 0 failed"), "{}", m.stdout);
        walls.push(m.wall);
    }
    println!("{:<44} {:>8.0}ms", "coord test, one 1,000-PR scenario", median(walls).as_secs_f64() * 1e3);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), t).unwrap();
        }
    }
}
