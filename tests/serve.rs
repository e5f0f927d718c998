//! `coord serve`: the dashboard over a run store, through the binary. A live run's page in
//! headless Chromium (driven through chromedriver, WebDriver) follows its sessions from
//! running to done without a reload; the runs list, the JSON API and the event stream over
//! plain HTTP; masking of what is served; `coord daemon --serve` showing its pipeline's runs;
//! and a store of 1,000 runs listed (time and memory measured and printed, never asserted:
//! docs/performance.md has the figures).
//!
//! Everything listens and connects on 127.0.0.1. The leaves of the runs here wait for a file
//! the test writes, so a page is seen while they run however slow the machine is; every wait
//! is bounded by a generous deadline. Processes the tests start are stopped by their own pids
//! (chromedriver with the browsers it starts, by the process group it leads).

use crate::support;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};
use support::{command_workflow, TestProject};

/// The longest any condition is waited for.
const DEADLINE: Duration = Duration::from_secs(120);

/// A value in the run's world that the server's environment names as a secret.
const CANARY: &str = "canary-5e1f9c0a7d3b";

// ---- a groom-prs-like run whose leaves wait for the test ----------------------------------

/// Reviews every PR (at most two leaves at a time), merges the clean ones, fixes and then
/// merges the others, and notifies: groom-prs's shape on the `command` harness. Every leaf
/// waits until the file `go` exists (or a minute passes), so the test decides when they end.
fn gated_project(prs: u32) -> TestProject {
    let p = TestProject::new();
    p.write_executable(
        "leaf.sh",
        "#!/bin/sh\ncat > /dev/null\ni=0\nwhile [ ! -f go ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n\
         case $COORD_SESSION_ID in s2|s4) echo '{\"verdict\": \"minor\"}' ;; *) echo '{\"verdict\": \"clean\"}' ;; esac\n",
    );
    let schema = r#"{ type = "object", required = ["verdict"] }"#;
    p.write("workflows/review.toml", &command_workflow("./leaf.sh", "90s", schema));
    p.write("workflows/fix.toml", &command_workflow("./leaf.sh", "90s", schema));
    let mut world = String::from("now = \"2026-11-21T09:00:00Z\"\n");
    for n in 1..=prs {
        world.push_str(&format!("[[github.prs]]\nnumber = {n}\ntitle = \"Change {n} ({CANARY})\"\n"));
    }
    p.write("world.toml", &world);
    p.write(
        "groom.rhai",
        r#"
let prs = github::prs(#{});
let reviews = prs.map(|pr| spawn_session("review", #{ goal: `Review PR #${pr.number}: ${pr.title}`, inputs: #{ pr: pr.number } }));
let results = await_sessions(reviews);
let merged = [];
for i in 0..prs.len() {
    let n = prs[i].number;
    if results[i].status != "ok" { continue; }
    if results[i].output.verdict != "clean" {
        let fixed = await_sessions([spawn_session("fix", #{ goal: `Fix PR #${n}`, inputs: #{ pr: n } })]);
        if fixed[0].status != "ok" { continue; }
    }
    let m = merge(n, #{ method: "squash" });
    if m.status == "merged" { merged.push(n); }
}
notify("slack:#eng", `merged ${merged.len()}`);
#{ merged: merged }
"#,
    );
    p
}

/// Starts the gated run in the background.
fn start_run(p: &TestProject) -> Child {
    p.coord()
        .args([
            "run",
            "groom.rhai",
            "--scenario",
            "world.toml",
            "--leaf",
            "review=command",
            "--leaf",
            "fix=command",
            "--max-parallel",
            "2",
        ])
        .spawn()
}

/// The run directory once its journal and its owner's pid file exist.
fn wait_for_run_dir(p: &TestProject) -> PathBuf {
    wait_for("the run directory", || {
        p.runs().into_iter().find(|d| d.join("journal.jsonl").is_file() && d.join("run.pid").is_file())
    })
}

fn let_leaves_finish(p: &TestProject) {
    p.write("go", "");
}

fn finish_run(mut run: Child) {
    let started = Instant::now();
    loop {
        if let Some(status) = run.try_wait().unwrap() {
            let mut stderr = String::new();
            let _ = run.stderr.take().map(|mut e| e.read_to_string(&mut stderr));
            assert!(status.success(), "the run failed ({status}):\n{stderr}");
            return;
        }
        if started.elapsed() > DEADLINE {
            let _ = run.kill();
            panic!("the run did not end within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn journal_entries(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn spawned_sessions(dir: &Path) -> Vec<String> {
    journal_entries(dir)
        .iter()
        .filter(|e| e["type"] == "call")
        .filter_map(|e| e["session"].as_str().map(str::to_owned))
        .collect()
}

// ---- the server ----------------------------------------------------------------------------

/// A `coord serve` child process, stopped with SIGTERM (and killed if that fails) by its pid.
struct Server {
    child: Child,
    addr: SocketAddr,
    _stdout: BufReader<ChildStdout>,
}

impl Server {
    fn start(p: &TestProject, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut command = p.coord().args(["serve", "--listen", "127.0.0.1:0"]).args(extra);
        for (k, v) in env {
            command = command.env(k, v);
        }
        let mut child = command.spawn();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let addr = first
            .trim()
            .strip_prefix("listening on http://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("the first line of stdout names the address, got {first:?}"));
        Server { child, addr, _stdout: stdout }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops the server with SIGTERM and returns its exit code.
    fn stop(mut self) -> i32 {
        // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(started.elapsed() < DEADLINE, "coord serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One HTTP/1.0 request (the server then ends the body by closing): status, headers, body.
fn http(addr: SocketAddr, method: &str, path: &str, host: Option<&str>) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let host = host.map(|h| format!("Host: {h}\r\n")).unwrap_or_default();
    write!(stream, "{method} {path} HTTP/1.0\r\n{host}\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

fn get_json(server: &Server, path: &str) -> Value {
    let (status, _, body) = http(server.addr, "GET", path, Some(&server.addr.to_string()));
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path} is not JSON ({e}): {body}"))
}

/// An open event stream: its events as (name, data), read as they come.
struct EventStream {
    reader: BufReader<TcpStream>,
}

impl EventStream {
    fn open(server: &Server, path: &str) -> EventStream {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n", server.addr).unwrap();
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.contains(" 200 "), "{status}");
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
            line.clear();
        }
        EventStream { reader }
    }

    /// The next event (keep-alive comments skipped).
    fn next(&mut self) -> (String, String) {
        let (mut name, mut data) = (String::new(), String::new());
        loop {
            let mut line = String::new();
            assert!(self.reader.read_line(&mut line).unwrap() > 0, "the event stream ended");
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if !data.is_empty() {
                    return (name, data);
                }
                continue;
            }
            if let Some(v) = line.strip_prefix("event:") {
                name = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
    }
}

// ---- plain HTTP ----------------------------------------------------------------------------

#[test]
fn runs_list_run_json_and_event_stream_follow_a_live_run() {
    let p = gated_project(4);
    let server = Server::start(&p, &[], &[("DASHBOARD_CANARY_TOKEN", CANARY)]);
    let run = start_run(&p);
    let dir = wait_for_run_dir(&p);
    let id = dir.file_name().unwrap().to_string_lossy().into_owned();

    // The list: the run is there, running, with its link.
    let listed = wait_for("the run in /api/runs", || {
        let runs = get_json(&server, "/api/runs");
        runs["runs"].as_array().unwrap().iter().find(|r| r["id"] == id.as_str()).cloned()
    });
    assert_eq!(listed["status"], "running", "{listed}");
    assert_eq!(listed["mode"], "scenario");
    assert_eq!(listed["href"], format!("/runs/{id}"));
    let (status, head, html) = http(server.addr, "GET", "/", Some("localhost"));
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("content-type: text/html"), "{head}");
    assert!(html.contains(&format!("<a href=\"&#x2f;runs&#x2f;{id}\">{id}</a>")), "{html}");
    assert!(html.contains("<th>Mode</th><th>Pipeline</th>"), "{html}");

    // The stream: a snapshot with the sessions running (two at a time) or queued.
    let mut events = EventStream::open(&server, &format!("/api/runs/{id}/events"));
    let (name, snapshot) = events.next();
    assert_eq!(name, "snapshot");
    let snapshot: Value = serde_json::from_str(&snapshot).unwrap();
    assert_eq!(snapshot["header"]["status"], "running");
    assert_eq!(snapshot["header"]["max_parallel"], 2);
    let counts = &snapshot["header"]["sessions"];
    assert!(counts["running"].as_u64().unwrap() <= 2, "{counts}");
    assert_eq!(counts["done"], 0, "{counts}");

    // As the run appends, the stream sends each entry, then what changed.
    let_leaves_finish(&p);
    let mut entry_types = Vec::new();
    let mut finished_sessions = 0;
    let last_update = loop {
        let (name, data) = events.next();
        assert!(!data.contains(CANARY), "the stream shows a secret: {data}");
        let data: Value = serde_json::from_str(&data).unwrap();
        match name.as_str() {
            "entry" => {
                entry_types.push(data["type"].as_str().unwrap().to_owned());
                if data["type"] == "session" {
                    finished_sessions += 1;
                    assert!(data["line"].as_str().unwrap().contains("finished: ok"), "{data}");
                }
            }
            "update" if data["header"]["status"] == "succeeded" => break data,
            "update" => {}
            other => panic!("unexpected event {other}: {data}"),
        }
    };
    finish_run(run);
    let sessions = spawned_sessions(&dir);
    assert_eq!(sessions.len(), 6, "4 reviews and 2 fixes");
    assert_eq!(finished_sessions, sessions.len(), "every session's result was streamed: {entry_types:?}");
    assert_eq!(entry_types.last().map(String::as_str), Some("run_finished"));
    assert!(entry_types.iter().any(|t| t == "effect_result"), "{entry_types:?}");
    let counts = &last_update["header"]["sessions"];
    assert_eq!(counts["done"], 6, "{last_update}");

    // The finished run: the same model in one piece, and its report.
    let whole = get_json(&server, &format!("/api/runs/{id}"));
    let phases: Vec<&str> = whole["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "session")
        .map(|n| n["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["done"; 6]);
    let fix = whole["nodes"].as_array().unwrap().iter().find(|n| n["workflow"] == "fix").unwrap();
    assert_eq!(fix["parent"], "s2", "a fix hangs under the review that asked for it: {fix}");
    let merges = whole["nodes"].as_array().unwrap().iter().filter(|n| n["kind"] == "effect").count();
    assert_eq!(merges, 5, "4 merges and a notification");
    // Each PR's outcome, read from its merge since the script declares none.
    let items = whole["header"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 4, "{items:?}");
    assert!(items.iter().all(|i| i["outcome"] == "merged" && i["declared"] == false), "{items:?}");
    // The timeline of the six sessions, its totals and critical path.
    let totals = whole["header"]["timeline_totals"].as_str().unwrap();
    assert!(totals.starts_with("wall ") && totals.contains("critical path"), "{totals}");
    let svg = whole["header"]["timeline_svg"].as_str().unwrap();
    assert!(svg.matches("<title>s").count() >= 6, "a bar per session: {svg}");
    let listed = get_json(&server, "/api/runs");
    assert_eq!(listed["runs"][0]["status"], "succeeded");
    assert_eq!(listed["runs"][0]["sessions"], 6);

    // Everything served is masked with the server's secrets.
    let report_path = format!("/runs/{id}/report");
    let page_path = format!("/runs/{id}");
    let run_path = format!("/api/runs/{id}");
    for path in ["/", "/api/runs", run_path.as_str(), report_path.as_str(), page_path.as_str()] {
        let (status, _, body) = http(server.addr, "GET", path, Some("127.0.0.1"));
        assert_eq!(status, 200, "GET {path}");
        assert!(!body.contains(CANARY), "GET {path} shows a secret");
    }
    let (_, _, body) = http(server.addr, "GET", &run_path, None);
    assert!(body.contains("[redacted]"), "{body}");

    // Read-only, inside the store, and only for loopback names.
    assert_eq!(http(server.addr, "POST", "/", None).0, 405);
    assert_eq!(http(server.addr, "GET", "/runs/nope", None).0, 404);
    assert_eq!(http(server.addr, "GET", "/runs/..", None).0, 404);
    assert_eq!(http(server.addr, "GET", "/api/runs/%2e%2e/events", None).0, 404);
    assert_eq!(http(server.addr, "GET", "/", Some("rebound.example:7878")).0, 421);
    assert_eq!(server.stop(), 0, "SIGTERM ends coord serve with exit 0");
}

// ---- hosted by the daemon ------------------------------------------------------------------

#[test]
fn the_daemon_hosts_the_dashboard_of_its_pipelines_runs() {
    let p = TestProject::new();
    p.write("workflows/work.toml", &command_workflow("true", "10m", "{ type = \"object\" }"));
    p.write(
        "slow.rhai",
        "let r = await_sessions([spawn_session(\"work\", #{ goal: \"work\", inputs: #{} })]);\nr[0].status\n",
    );
    p.write("slow.toml", "[[leaf]]\nworkflow = \"work\"\ndelay_ms = 1500\noutput = { done = true }\n");
    p.write(
        "coord.toml",
        "[[pipeline]]\nname = \"tick\"\nscript = \"slow.rhai\"\nscenario = \"slow.toml\"\nschedule = \"* * * * * *\"\n",
    );
    let mut daemon = p.coord().args(["daemon", "--serve", "127.0.0.1:0"]).spawn();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stdout = daemon.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let addr: SocketAddr = loop {
        let line = lines.recv_timeout(DEADLINE).expect("the daemon names the dashboard's address");
        if let Some(addr) = line.strip_prefix("daemon: dashboard on http://") {
            break addr.parse().unwrap();
        }
    };
    let server_like = |path: &str| {
        let (status, _, body) = http(addr, "GET", path, Some("localhost"));
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str::<Value>(&body).unwrap()
    };
    // A run the daemon started, seen while it runs and once it has finished.
    let running = wait_for("a running run of the pipeline", || {
        let runs = server_like("/api/runs");
        runs["runs"].as_array().unwrap().iter().find(|r| r["status"] == "running" && r["pipeline"] == "tick").cloned()
    });
    let id = running["id"].as_str().unwrap().to_owned();
    let page = server_like(&format!("/api/runs/{id}"));
    assert_eq!(page["header"]["pipeline"], "tick", "{page}");
    wait_for("the run to succeed", || {
        let runs = server_like("/api/runs");
        runs["runs"].as_array().unwrap().iter().find(|r| r["id"] == id.as_str() && r["status"] == "succeeded").cloned()
    });
    // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let started = Instant::now();
    let status = loop {
        if let Some(status) = daemon.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = daemon.kill();
            panic!("the daemon did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = reader.join();
    assert_eq!(status.code(), Some(0));
}

// ---- a thousand runs -----------------------------------------------------------------------

/// A small finished run, as `coord run` writes one: a header, a spawn, its result, the end.
fn write_small_run(root: &Path, n: usize) {
    let id = format!("20261121-{:06}-{:04x}", n, n);
    let dir = root.join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    let started = format!("2026-11-21T09:{:02}:{:02}.000Z", (n / 60) % 60, n % 60);
    let lines = [
        serde_json::json!({"seq": 0, "type": "run_started", "header": {"version": 1, "coord_version": "0.1.0",
            "run_id": id, "coordinator": format!("coordinator-{}", n % 7), "script": "c.rhai", "script_sha256": "0",
            "inputs": {}, "mode": if n % 3 == 0 { "live" } else { "scenario" }, "started_at": started}}),
        serde_json::json!({"seq": 1, "type": "call", "call": 0, "fn": "spawn_session", "key": "spawn_session:review:00",
            "pos": "1:1", "args": {"goal": format!("Review PR #{n}"), "inputs": {"pr": n}}, "result": null, "session": "s1"}),
        serde_json::json!({"seq": 2, "type": "session", "session": "s1", "result": {"id": "s1", "workflow": "review",
            "status": "ok", "output": {"verdict": "clean"}, "harness": if n % 3 == 0 { "claude-code" } else { "mock" },
            "usage": {"input_tokens": 1000, "output_tokens": 100, "cost_usd": 0.01}, "duration_ms": 1200}}),
        serde_json::json!({"seq": 3, "type": "run_finished", "status": "succeeded", "result": {},
            "at": started.replace(".000Z", ".900Z")}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join("journal.jsonl"), text).unwrap();
}

/// Resident memory of a process, in KiB: now and at its peak.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[test]
fn a_store_of_a_thousand_runs_is_listed() {
    let p = TestProject::new();
    let root = p.path().join("store");
    for n in 0..1000 {
        write_small_run(&root, n);
    }
    let server = Server::start(&p, &["--runs-dir", "store"], &[]);
    let mut timings = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let listed = get_json(&server, "/api/runs");
        timings.push(started.elapsed());
        let runs = listed["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 1000);
        assert!(listed["warnings"].as_array().unwrap().is_empty(), "{listed}");
        assert_eq!(runs[999]["sessions"], 1);
        assert_eq!(runs[999]["status"], "succeeded");
        assert_eq!(runs[999]["duration_ms"], 900);
    }
    let started = Instant::now();
    let (status, _, html) = http(server.addr, "GET", "/", None);
    let page = started.elapsed();
    assert_eq!(status, 200);
    assert_eq!(html.matches("class=\"run-row\"").count(), 1000);
    let (rss, peak) = memory_kib(server.child.id());
    // Measured, not asserted: a loaded machine must not fail this. docs/performance.md.
    eprintln!(
        "coord serve, 1,000 runs: /api/runs first {:?}, then {:?} and {:?}; the HTML list {:?}; \
         resident {} MiB, peak {} MiB",
        timings[0],
        timings[1],
        timings[2],
        page,
        rss / 1024,
        peak / 1024
    );
    assert_eq!(server.stop(), 0);
}

// ---- a real browser ------------------------------------------------------------------------

/// chromedriver on a loopback port, in a process group of its own so the browsers it starts
/// end with it; stopped by its pid (the group's id) when dropped.
struct ChromeDriver {
    child: Child,
    port: u16,
}

impl ChromeDriver {
    fn start() -> ChromeDriver {
        let binary =
            ["chromedriver", "chromium.chromedriver"].iter().find_map(|name| on_path(name)).unwrap_or_else(|| {
                panic!(
                    "chromedriver is not installed, and the dashboard's browser test needs it.\n\
                     Install it with: apt-get update && apt-get install -y chromium-driver\n\
                     (.ci/run installs it on CI.)"
                )
            });
        let port = free_port();
        // Kept with the screenshots, for when the browser test fails.
        let log = target_dir().join("serve-chromedriver.log");
        use std::os::unix::process::CommandExt;
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        let driver = ChromeDriver { child, port };
        wait_for("chromedriver to answer", || TcpStream::connect(("127.0.0.1", port)).ok());
        driver
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this test created (its id is chromedriver's pid).
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

fn chromium() -> PathBuf {
    ["chromium", "chromium-browser"].iter().find_map(|n| on_path(n)).unwrap_or_else(|| {
        panic!("chromium is not installed; install it with: apt-get update && apt-get install -y chromium")
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Headless Chromium kept off the network: no first-run, sync, component, update or metrics
/// traffic, a fresh profile.
fn browser_capabilities(profile: &Path) -> serde_json::Map<String, Value> {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        "--disable-features=OptimizationHints,MediaRouter,Translate",
        "--metrics-recording-only",
        "--disable-quic",
        "--window-size=1400,1500",
        &format!("--user-data-dir={}", profile.display()),
    ];
    let capabilities = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": chromium(), "args": args },
    });
    capabilities.as_object().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_run_page_shows_sessions_move_from_running_to_done_without_a_reload() {
    let p = gated_project(4);
    let server = Server::start(&p, &[], &[]);
    let driver = ChromeDriver::start();
    let profile = tempfile::tempdir().unwrap();
    let client = fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(browser_capabilities(profile.path()))
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a WebDriver session");

    let run = start_run(&p);
    let dir = tokio::task::block_in_place(|| wait_for_run_dir(&p));
    let id = dir.file_name().unwrap().to_string_lossy().into_owned();
    client.goto(&server.url(&format!("/runs/{id}"))).await.unwrap();
    // Set once; a reload would lose it.
    client.execute("window.coordTestMarker = 'first load'; return true;", vec![]).await.unwrap();

    let page_state = "return { status: document.getElementById('status').textContent, \
        connection: document.getElementById('connection').textContent, \
        phases: Array.from(document.querySelectorAll('#tree li.session')).map(li => li.id.slice(5) + ':' + li.dataset.phase), \
        effects: document.querySelectorAll('#tree li.effect').length, \
        activity: document.querySelectorAll('#activity li').length, \
        marker: window.coordTestMarker || null };";
    // Which two hold the slots is estimated by the page; how many is not.
    let running = wait_for_page(&client, page_state, "two sessions running and two queued", |s| {
        let phases = phases_of(s);
        phases.iter().filter(|p| p.ends_with(":running")).count() == 2
            && phases.iter().filter(|p| p.ends_with(":queued")).count() == 2
    })
    .await;
    assert_eq!(running["status"], "running", "{running}");
    assert_eq!(running["connection"], "live", "{running}");
    let png = client.screenshot().await.unwrap();
    let _ = std::fs::write(target_dir().join("serve-run-page-running.png"), &png);

    let_leaves_finish(&p);
    let done = wait_for_page(&client, page_state, "every session done and the run succeeded", |s| {
        let phases = phases_of(s);
        s["status"] == "succeeded" && phases.len() == 6 && phases.iter().all(|p| p.ends_with(":done"))
    })
    .await;
    assert_eq!(done["marker"], "first load", "the page followed the run without a reload: {done}");
    assert_eq!(done["effects"], 5, "{done}");
    assert!(done["activity"].as_u64().unwrap() > 6, "{done}");
    tokio::task::block_in_place(|| finish_run(run));
    // Every session the journal spawned is on the page, in spawn order under its parent.
    let spawned = spawned_sessions(&dir);
    let shown: Vec<String> = phases_of(&done).iter().map(|p| p.split(':').next().unwrap().to_owned()).collect();
    let mut sorted = shown.clone();
    sorted.sort_by_key(|s| s[1..].parse::<u32>().unwrap());
    assert_eq!(sorted, spawned, "{done}");

    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real screenshot ({} bytes)", png.len());
    let _ = std::fs::write(target_dir().join("serve-run-page.png"), &png);

    // The list links the run; following the link opens its page.
    client.goto(&server.url("/")).await.unwrap();
    let link = client.find(fantoccini::Locator::Css(&format!("#run-{id} a"))).await.unwrap();
    assert_eq!(link.text().await.unwrap(), id);
    let png = client.screenshot().await.unwrap();
    let _ = std::fs::write(target_dir().join("serve-runs-list.png"), &png);
    link.click().await.unwrap();
    wait_for_page(&client, page_state, "the run's page from the list", |s| s["status"] == "succeeded").await;

    client.close().await.unwrap();
    drop(driver);
    assert_eq!(server.stop(), 0);
}

fn phases_of(state: &Value) -> Vec<String> {
    state["phases"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Evaluates `script` in the page until `ready` holds of its value; the last value.
async fn wait_for_page(client: &fantoccini::Client, script: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let state = client.execute(script, vec![]).await.unwrap();
        if ready(&state) {
            return state;
        }
        assert!(started.elapsed() < DEADLINE, "waited {DEADLINE:?} for {what}; the page: {state}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `found` until it gives a value.
fn wait_for<T>(what: &str, mut found: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = found() {
            return value;
        }
        assert!(started.elapsed() < DEADLINE, "waited {DEADLINE:?} for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn target_dir() -> PathBuf {
    // The binary under test lives in <target>/<profile>/coord.
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_coord"));
    bin.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_else(|| support::repo_root().join("target"))
}
