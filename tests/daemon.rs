//! Unattended runs through the binary: `coord daemon` (schedules, overlap, catch-up, signals,
//! webhooks), `coord schedule`, `coord trigger` and `coord run --lock`.
//!
//! Every daemon is a child process on 127.0.0.1 that a test stops with SIGTERM (and kills if
//! it outlives its deadline). Timing only ever bounds a wait: tests poll for what the daemon
//! logs and journals, and never assert how fast anything happened.

use crate::support;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{journal_lines as journal, TestProject};

/// Long enough for a loaded machine; waits end as soon as what they wait for happens.
const PATIENCE: Duration = Duration::from_secs(90);

const WORKFLOW: &str = r#"harness = "command"
command = ["true"]
timeout = "10m"
prompt = "{{ goal }}"
schema = { type = "object" }
"#;

/// One leaf, answered by the scenario after its `delay_ms`; the result shows the run's inputs.
const SCRIPT: &str = r#"
let r = await_sessions([spawn_session("work", #{ goal: "work", inputs: #{} })])[0];
#{ status: r.status, inputs: inputs() }
"#;

/// A project with `slow.rhai`, whose one leaf takes `delay_ms` under `slow.toml`, and
/// `coord.toml` holding `pipelines`.
fn project(pipelines: &str, delay_ms: u64) -> TestProject {
    let p = TestProject::new();
    p.write("workflows/work.toml", WORKFLOW);
    p.write("slow.rhai", SCRIPT);
    p.write("slow.toml", &scenario(delay_ms));
    p.write("coord.toml", pipelines);
    p
}

fn scenario(delay_ms: u64) -> String {
    format!("[[leaf]]\nworkflow = \"work\"\ndelay_ms = {delay_ms}\noutput = {{ done = true }}\n")
}

fn pipeline(name: &str, extra: &str) -> String {
    format!("[[pipeline]]\nname = \"{name}\"\nscript = \"slow.rhai\"\nscenario = \"slow.toml\"\n{extra}\n")
}

/// A `coord daemon` child process and what it has printed so far.
struct Daemon {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Daemon {
    fn start(p: &TestProject, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut cmd = p.coord().args(["daemon"]).args(args);
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        let mut child = cmd.spawn();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().unwrap();
        let lines = stdout.clone();
        let mut readers = Vec::new();
        readers.push(std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        }));
        let mut err = child.stderr.take().unwrap();
        let text = stderr.clone();
        readers.push(std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                text.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }));
        let daemon = Daemon { child, stdout, stderr, readers };
        // Signals are only safe to send once the daemon handles them.
        daemon.wait_for(|l| l.starts_with("daemon: ready"));
        daemon
    }

    fn lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    fn log(&self) -> String {
        format!("--- stdout\n{}\n--- stderr\n{}", self.lines().join("\n"), self.stderr.lock().unwrap())
    }

    fn count(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.lines().iter().filter(|l| pred(l)).count()
    }

    /// The first line matching `pred`, waiting for it.
    #[track_caller]
    fn wait_for(&self, pred: impl Fn(&str) -> bool) -> String {
        self.wait_for_count(1, &pred);
        self.lines().into_iter().find(|l| pred(l)).unwrap()
    }

    #[track_caller]
    fn wait_for_count(&self, n: usize, pred: impl Fn(&str) -> bool) {
        wait_until(|| self.count(&pred) >= n, &|| format!("{n} matching lines\n{}", self.log()));
    }

    fn signal(&self, signal: i32) {
        // SAFETY: signalling a child this test started and has not reaped.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// SIGTERM, then the exit code once the daemon has exited.
    #[track_caller]
    fn stop(&mut self) -> i32 {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The pipes close with the process: the readers have every line once they end.
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                return status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the daemon did not stop after SIGTERM\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The webhook address it printed.
    fn address(&self) -> String {
        let line = self.wait_for(|l| l.starts_with("daemon: listening on "));
        line.trim_start_matches("daemon: listening on ").to_owned()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // A failed test must not leave a daemon behind.
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[track_caller]
fn wait_until(mut done: impl FnMut() -> bool, what: &dyn Fn() -> String) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        if Instant::now() > deadline {
            panic!("timed out waiting for {}", what());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn header(run: &Path) -> Value {
    journal(run).first().map(|e| e["header"].clone()).unwrap_or(Value::Null)
}

/// The run's `run_finished` entry, if it has one.
fn finished(run: &Path) -> Option<Value> {
    journal(run).into_iter().find(|e| e["type"] == "run_finished")
}

fn runs_of(p: &TestProject, pipeline: &str) -> Vec<PathBuf> {
    p.runs().into_iter().filter(|r| header(r)["pipeline"] == pipeline).collect()
}

/// No two runs were in flight at once: each started after the one before it finished.
#[track_caller]
fn assert_no_overlap(runs: &[PathBuf]) {
    let mut spans: Vec<(String, String)> = runs
        .iter()
        .filter_map(|r| {
            let end = finished(r)?["at"].as_str()?.to_owned();
            Some((header(r)["started_at"].as_str()?.to_owned(), end))
        })
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "runs overlap: {pair:?}");
    }
}

#[test]
fn a_pipeline_scheduled_every_second_runs_repeatedly() {
    let p = project(&pipeline("tick", "schedule = \"* * * * * *\"\ninputs = { repo = \"acme/widgets\" }"), 0);
    let mut daemon = Daemon::start(&p, &[], &[]);
    daemon.wait_for_count(3, |l| l.starts_with("tick: run ") && l.ends_with(" succeeded"));
    assert_eq!(daemon.stop(), 0, "{}", daemon.log());
    assert!(daemon.lines().last().unwrap() == "daemon: stopped", "{}", daemon.log());

    let runs = runs_of(&p, "tick");
    assert!(runs.len() >= 3, "{}", daemon.log());
    let succeeded: Vec<_> = runs.iter().filter(|r| finished(r).is_some_and(|f| f["status"] == "succeeded")).collect();
    assert!(succeeded.len() >= 3);
    for run in &succeeded {
        let done = finished(run).unwrap();
        assert_eq!(done["result"]["inputs"]["repo"], "acme/widgets");
        assert_eq!(header(run)["coordinator"], "slow");
    }
    let state: Value = serde_json::from_str(&p.read(".coord/daemon/state.json")).unwrap();
    assert!(state["pipelines"]["tick"]["handled_until"].is_string(), "{state}");

    // `coord schedule` shows the last run of the pipeline.
    let out = p.coord().args(["schedule", "--json"]).run();
    out.code(0);
    let last = &out.json()[0]["last_run"];
    let newest = runs.last().unwrap().file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(last["run_id"], newest.as_str());
}

/// Fires every second, runs take 2.5 s.
fn overlap_project(policy: &str) -> TestProject {
    project(&pipeline("tick", &format!("schedule = \"* * * * * *\"\noverlap = \"{policy}\"")), 2500)
}

#[test]
fn overlap_skip_drops_fires_while_a_run_is_in_flight() {
    let p = overlap_project("skip");
    let mut daemon = Daemon::start(&p, &[], &[]);
    daemon.wait_for_count(2, |l| l.starts_with("tick: run ") && l.ends_with(" succeeded"));
    daemon.stop();
    assert!(daemon.count(|l| l.starts_with("tick: skipped (schedule ") && l.ends_with(": a run is in flight")) >= 1);
    assert_eq!(daemon.count(|l| l.contains("queued")), 0, "{}", daemon.log());
    assert_no_overlap(&runs_of(&p, "tick"));
}

#[test]
fn overlap_queue_keeps_exactly_one_fire() {
    let p = overlap_project("queue");
    let mut daemon = Daemon::start(&p, &[], &[]);
    daemon.wait_for_count(2, |l| l.starts_with("tick: run ") && l.ends_with(" succeeded"));
    daemon.stop();
    let lines = daemon.lines();
    assert!(daemon.count(|l| l.starts_with("tick: queued (schedule ")) >= 1, "{}", daemon.log());
    assert!(daemon.count(|l| l.ends_with("a run is in flight and one is queued")) >= 1, "{}", daemon.log());
    // Between two starts, at most one fire was queued; the fire that was queued is the one that
    // starts next.
    let mut queued: Option<String> = None;
    for line in &lines {
        if let Some(cause) = line.strip_prefix("tick: queued (").and_then(|r| r.split(')').next()) {
            assert!(queued.is_none(), "a second fire was queued:\n{}", daemon.log());
            queued = Some(cause.to_owned());
        } else if let Some(cause) = line.strip_prefix("tick: started (").and_then(|r| r.split(')').next()) {
            if let Some(q) = queued.take() {
                assert_eq!(cause, q, "{}", daemon.log());
            }
        }
    }
    assert_no_overlap(&runs_of(&p, "tick"));
}

/// Starts the pipeline `tick` (every second, skip, 30 s leaf), waits until its first run has
/// journaled its start, and stops the daemon with SIGTERM while that run is in flight.
/// Returns the run.
fn interrupted_run(p: &TestProject) -> PathBuf {
    let mut daemon = Daemon::start(p, &[], &[]);
    daemon.wait_for(|l| l.starts_with("tick: started"));
    wait_until(|| p.runs().first().is_some_and(|r| header(r).is_object()), &|| {
        format!("the run to journal its start\n{}", daemon.log())
    });
    // Most likely inside its 30 s leaf by now; anywhere after its start is mid-run.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(daemon.stop(), 0, "{}", daemon.log());
    let runs = p.runs();
    assert_eq!(runs.len(), 1, "{}", daemon.log());
    let run_id = runs[0].file_name().unwrap().to_string_lossy().into_owned();
    let told = format!("tick: run {run_id} interrupted; `coord resume {run_id}` finishes it");
    assert!(daemon.lines().contains(&told), "{}", daemon.log());
    runs[0].clone()
}

fn sigterm_project() -> TestProject {
    project(&pipeline("tick", "schedule = \"* * * * * *\""), 30_000)
}

#[test]
fn sigterm_mid_run_leaves_an_interrupted_run() {
    let p = sigterm_project();
    let run = interrupted_run(&p);
    let done = finished(&run).expect("the interrupted run journals its end");
    assert_eq!(done["status"], "interrupted");
    assert!(!run.join("run.pid").exists(), "the run still claims an owner");
    // Stopped means stopped: nothing runs on after the daemon exits.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(p.runs().len(), 1);
}

#[test]
fn sigterm_mid_run_then_coord_resume_finishes_it() {
    let p = sigterm_project();
    let run = interrupted_run(&p);
    let run_id = run.file_name().unwrap().to_string_lossy().into_owned();
    // The leaf answers at once now, so the resumed run ends quickly.
    p.write("slow.toml", &scenario(0));
    let out = p.coord().args(["resume", &run_id]).run();
    out.code(0);
    let journal = journal(&run);
    let last = journal.last().unwrap();
    assert_eq!(last["type"], "run_finished");
    assert_eq!(last["status"], "succeeded");
    assert_eq!(last["result"]["status"], "ok");
}

#[test]
fn missed_fires_are_caught_up_once_by_default_or_as_configured() {
    // New Year's midnight: never during the test, missed every year since 2020.
    let yearly = "schedule = \"0 0 1 1 *\"";
    let p = project(
        &[pipeline("once", yearly), pipeline("thrice", &format!("{yearly}\ncatch_up = 3")), pipeline("fresh", yearly)]
            .concat(),
        0,
    );
    p.write(
        ".coord/daemon/state.json",
        r#"{ "version": 1, "pipelines": {
            "once": { "handled_until": "2020-06-01T00:00:00Z" },
            "thrice": { "handled_until": "2020-06-01T00:00:00Z" } } }"#,
    );
    let mut daemon = Daemon::start(&p, &[], &[]);
    daemon.wait_for_count(4, |l| l.contains(": run ") && l.ends_with(" succeeded"));
    assert_eq!(daemon.stop(), 0);
    assert!(
        daemon.lines().iter().any(|l| l.starts_with("once: catching up 1 missed fire time(s): ")),
        "{}",
        daemon.log()
    );
    assert_eq!(runs_of(&p, "once").len(), 1, "{}", daemon.log());
    assert_eq!(runs_of(&p, "thrice").len(), 3, "{}", daemon.log());
    assert_eq!(runs_of(&p, "fresh").len(), 0, "{}", daemon.log());
    assert_no_overlap(&runs_of(&p, "thrice"));
    // Catch-up runs are the latest missed fire times, oldest first.
    let causes: Vec<String> = daemon
        .lines()
        .iter()
        .filter_map(|l| l.strip_prefix("thrice: started (catch-up ").map(|r| r.trim_end_matches(')').to_owned()))
        .collect();
    assert_eq!(causes.len(), 3);
    assert!(
        causes.windows(2).all(|w| w[0] < w[1]) && causes.iter().all(|c| c.ends_with("-01-01T00:00:00Z")),
        "{causes:?}"
    );
    // What was caught up is remembered: a restart catches up nothing.
    let state: Value = serde_json::from_str(&p.read(".coord/daemon/state.json")).unwrap();
    assert!(state["pipelines"]["once"]["handled_until"].as_str().unwrap() > "2025", "{state}");
    let mut again = Daemon::start(&p, &[], &[]);
    assert_eq!(again.stop(), 0);
    assert_eq!(again.count(|l| l.contains("catching up")), 0, "{}", again.log());
}

const SECRET: &str = "test-hook-secret";

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Sends one raw HTTP/1.1 request; returns the status code and the body.
fn http(addr: &str, head: &str, body: &[u8]) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("the daemon listens");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut request = format!("{head}Host: {addr}\r\nConnection: close\r\n\r\n").into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

fn post(addr: &str, path: &str, signature: Option<&str>, body: &[u8]) -> (u16, String) {
    let signature = signature.map(|s| format!("X-Hub-Signature-256: {s}\r\n")).unwrap_or_default();
    let head = format!(
        "POST {path} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{signature}",
        body.len()
    );
    http(addr, &head, body)
}

fn post_signed(addr: &str, path: &str, payload: &Value) -> (u16, String) {
    let body = payload.to_string().into_bytes();
    post(addr, path, Some(&sign(&body)), &body)
}

#[test]
fn webhooks_start_signed_runs_with_mapped_inputs_and_refuse_the_rest() {
    let webhook = "webhook = { secret_env = \"TEST_HOOK_SECRET\", inputs = { repo = \"repository.full_name\", sha = \"/after\" } }";
    let p = project(
        &[
            pipeline("hook", &format!("overlap = \"queue\"\ninputs = {{ channel = \"slack:#ops\" }}\n{webhook}")),
            pipeline("solo", "webhook = { secret_env = \"TEST_HOOK_SECRET\" }"),
            pipeline("quiet", ""),
        ]
        .concat(),
        30_000,
    );
    let mut daemon = Daemon::start(&p, &["--listen", "127.0.0.1:0"], &[("TEST_HOOK_SECRET", SECRET)]);
    let addr = daemon.address();
    let payload = json!({ "repository": { "full_name": "acme/widgets" }, "after": "abc123", "action": "opened" });

    let (status, body) = post_signed(&addr, "/hooks/hook", &payload);
    assert_eq!(status, 202, "{body}\n{}", daemon.log());
    assert!(body.contains("\"started\""), "{body}");
    wait_until(|| !runs_of(&p, "hook").is_empty(), &|| format!("the webhook's run\n{}", daemon.log()));
    let inputs = header(&runs_of(&p, "hook")[0])["inputs"].clone();
    assert_eq!(inputs, json!({ "channel": "slack:#ops", "repo": "acme/widgets", "sha": "abc123" }));

    // The run takes 30 s: one more fire is queued, the next one refused.
    let (status, body) = post_signed(&addr, "/hooks/hook", &payload);
    assert_eq!((status, body.contains("\"queued\"")), (202, true), "{body}");
    let (status, body) = post_signed(&addr, "/hooks/hook", &payload);
    assert_eq!((status, body.contains("one is queued")), (409, true), "{body}");

    // Refused requests, each answered and logged.
    let raw = payload.to_string().into_bytes();
    assert_eq!(post(&addr, "/hooks/hook", None, &raw).0, 401);
    assert_eq!(post(&addr, "/hooks/hook", Some("sha256=00ff"), &raw).0, 401);
    assert_eq!(post(&addr, "/hooks/hook", Some(&sign(b"{\"other\": 1}")), &raw).0, 401);
    let malformed = b"{\"repository\": ";
    assert_eq!(post(&addr, "/hooks/hook", Some(&sign(malformed)), malformed).0, 400);
    let oversized = "POST /hooks/hook HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n";
    assert_eq!(http(&addr, oversized, b"").0, 413);
    assert_eq!(post_signed(&addr, "/hooks/nope", &payload).0, 404);
    assert_eq!(post_signed(&addr, "/hooks/quiet", &payload).0, 404, "a pipeline without a webhook");
    assert_eq!(http(&addr, "GET /hooks/hook HTTP/1.1\r\n", b"").0, 405);
    for code in ["401 unsigned", "401 bad signature", "400 the body is not JSON", "413 ", "404 "] {
        // The line is written before the answer, but the test reads the pipe on its own thread.
        daemon.wait_for(|l| l.starts_with("webhook: ") && l.contains(code));
    }

    // The daemon carries on serving; with no mapping the payload's fields are the inputs, and
    // `skip` refuses a fire while its run is in flight.
    let (status, body) = post_signed(&addr, "/hooks/solo", &json!({ "ref": "main" }));
    assert_eq!(status, 202, "{body}\n{}", daemon.log());
    let (status, body) = post_signed(&addr, "/hooks/solo", &json!({ "ref": "main" }));
    assert_eq!((status, body.contains("a run is in flight")), (409, true), "{body}");
    wait_until(|| !runs_of(&p, "solo").is_empty(), &|| daemon.log());
    assert_eq!(header(&runs_of(&p, "solo")[0])["inputs"]["ref"], "main");

    // SIGTERM interrupts both runs and drops the queued fire.
    assert_eq!(daemon.stop(), 0, "{}", daemon.log());
    assert_eq!(p.runs().len(), 2, "{}", daemon.log());
    for run in p.runs() {
        assert_eq!(finished(&run).unwrap()["status"], "interrupted");
    }
}

/// A signed delivery of `payload` with GitHub's delivery id.
fn deliver(addr: &str, path: &str, payload: &Value, delivery: &str) -> (u16, String) {
    let body = payload.to_string().into_bytes();
    let head = format!(
        "POST {path} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         X-Hub-Signature-256: {}\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: {delivery}\r\n",
        body.len(),
        sign(&body)
    );
    http(addr, &head, &body)
}

#[test]
fn a_redelivered_delivery_runs_once_even_after_a_restart() {
    let hook = "webhook = { secret_env = \"TEST_HOOK_SECRET\" }";
    let p = project(&pipeline("hook", hook), 0);
    // `slow` runs 30 s and queues one fire.
    p.write("slower.toml", &scenario(30_000));
    let slow = format!(
        "[[pipeline]]\nname = \"slow\"\nscript = \"slow.rhai\"\nscenario = \"slower.toml\"\noverlap = \"queue\"\n{hook}\n"
    );
    p.write("coord.toml", &[pipeline("hook", hook), slow].concat());
    let env = [("TEST_HOOK_SECRET", SECRET)];
    let mut daemon = Daemon::start(&p, &["--listen", "127.0.0.1:0"], &env);
    let addr = daemon.address();
    let payload = json!({ "ref": "main" });

    let (status, body) = deliver(&addr, "/hooks/hook", &payload, "d-1");
    assert_eq!((status, body.contains("\"started\"")), (202, true), "{body}\n{}", daemon.log());
    daemon.wait_for(|l| l == "hook: started (webhook d-1)");
    daemon.wait_for(|l| l.starts_with("hook: run ") && l.ends_with(" succeeded"));
    let (status, body) = deliver(&addr, "/hooks/hook", &payload, "d-1");
    assert_eq!(status, 200, "{body}\n{}", daemon.log());
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["action"], "already_accepted", "{body}");
    assert_eq!(answer["delivery"], "d-1", "{body}");
    assert!(answer["accepted_at"].is_string(), "{body}");
    daemon.wait_for(|l| l.starts_with("hook: delivery d-1 was accepted at ") && l.ends_with("; not run again"));
    // Another delivery runs.
    assert_eq!(deliver(&addr, "/hooks/hook", &payload, "d-2").0, 202);
    daemon.wait_for_count(2, |l| l.starts_with("hook: run ") && l.ends_with(" succeeded"));
    assert_eq!(deliver(&addr, "/hooks/hook", &payload, "").0, 400, "a malformed delivery id");

    // `slow`: one run started, one queued, one skipped.
    assert_eq!(deliver(&addr, "/hooks/slow", &payload, "s-1").0, 202);
    let (status, body) = deliver(&addr, "/hooks/slow", &payload, "s-2");
    assert_eq!((status, body.contains("\"queued\"")), (202, true), "{body}");
    assert_eq!(deliver(&addr, "/hooks/slow", &payload, "s-3").0, 409);
    // SIGTERM interrupts s-1's run and drops s-2's queued fire, which never ran.
    assert_eq!(daemon.stop(), 0, "{}", daemon.log());
    assert_eq!(runs_of(&p, "hook").len(), 2, "{}", daemon.log());
    assert_eq!(runs_of(&p, "slow").len(), 1, "{}", daemon.log());
    let remembered = p.read(".coord/daemon/deliveries.json");
    assert!(remembered.contains("\"d-1\"") && remembered.contains("\"s-1\""), "{remembered}");
    assert!(!remembered.contains("\"s-2\"") && !remembered.contains("\"s-3\""), "{remembered}");

    // What ran is remembered across a restart (s-1's interrupted run is `coord resume`'s to
    // finish); what did not run, runs.
    let mut again = Daemon::start(&p, &["--listen", "127.0.0.1:0"], &env);
    let addr = again.address();
    for (path, id) in [("/hooks/hook", "d-1"), ("/hooks/hook", "d-2"), ("/hooks/slow", "s-1")] {
        let (status, body) = deliver(&addr, path, &payload, id);
        assert_eq!((status, body.contains("already_accepted")), (200, true), "{id}: {body}\n{}", again.log());
    }
    assert_eq!(deliver(&addr, "/hooks/slow", &payload, "s-2").0, 202, "{}", again.log());
    again.wait_for(|l| l == "slow: started (webhook s-2)");
    let (status, body) = deliver(&addr, "/hooks/slow", &payload, "s-3");
    assert_eq!((status, body.contains("\"queued\"")), (202, true), "{body}");
    // Ids are per pipeline: `d-1` is new to `slow`.
    let (status, body) = deliver(&addr, "/hooks/slow", &payload, "d-1");
    assert_eq!((status, body.contains("one is queued")), (409, true), "{body}");
    assert_eq!(again.stop(), 0);
    assert_eq!(runs_of(&p, "hook").len(), 2, "{}", again.log());
    assert_eq!(runs_of(&p, "slow").len(), 2, "{}", again.log());
}

#[test]
fn sighup_reloads_the_config_and_a_bad_one_keeps_the_old() {
    let p = project(&pipeline("first", "schedule = \"0 0 1 1 *\""), 0);
    let mut daemon = Daemon::start(&p, &[], &[]);
    p.write("coord.toml", &pipeline("first", "schedule = \"0 99 * * *\""));
    daemon.signal(libc::SIGHUP);
    daemon.wait_for(|l| l.contains("has errors; kept the previous configuration"));
    wait_until(|| daemon.stderr.lock().unwrap().contains("coord.toml:5:"), &|| daemon.log());

    p.write(
        "coord.toml",
        &[pipeline("first", "schedule = \"0 0 1 1 *\""), pipeline("second", "schedule = \"* * * * * *\"")].concat(),
    );
    daemon.signal(libc::SIGHUP);
    daemon.wait_for(|l| l == "daemon: SIGHUP: reloaded coord.toml (2 pipelines: first, second)");
    daemon.wait_for(|l| l.starts_with("second: run ") && l.ends_with(" succeeded"));
    assert_eq!(daemon.stop(), 0);
    assert!(runs_of(&p, "first").is_empty());
}

#[test]
fn a_second_daemon_for_the_same_project_exits_75() {
    let p = project(&pipeline("first", "schedule = \"0 0 1 1 *\""), 0);
    let mut daemon = Daemon::start(&p, &[], &[]);
    let out = p.coord().args(["daemon"]).run();
    out.code(75).stderr_has("serves this project; this one stops");
    assert_eq!(daemon.stop(), 0);
}

#[test]
fn bad_pipeline_config_is_a_diagnostic_pointing_into_coord_toml() {
    let p = project(&pipeline("groom", "schedule = \"0 9 * * 1-5\"\ntimezone = \"Europe/Berln\""), 0);
    for command in [&["daemon"][..], &["schedule"], &["trigger", "groom"]] {
        let out = p.coord().args(command).run();
        out.code(2);
        assert!(out.stderr.contains("coord.toml:6:12"), "{command:?}: {}", out.stderr);
        out.stderr_has("not an IANA time zone");
        assert!(out.stderr.contains("\"Europe/Berln\""), "the source line is shown: {}", out.stderr);
        assert!(p.runs().is_empty());
    }
    let none = TestProject::new();
    none.coord().args(["daemon"]).run().code(2);
}

#[test]
fn schedule_lists_next_fire_times_in_each_pipelines_time_zone() {
    let p = project(
        &[
            pipeline("groom", "schedule = \"0 9 * * 1-5\"\ntimezone = \"Europe/Berlin\"\noverlap = \"queue\""),
            pipeline("nightly", "schedule = \"30 2 * * *\""),
            pipeline("hook", "webhook = { secret_env = \"S\" }"),
        ]
        .concat(),
        0,
    );
    // Saturday 10:00 UTC: groom next fires on Monday at 09:00 Berlin time.
    let out = p.coord().args(["schedule", "--now", "2026-11-21T10:00:00Z"]).run();
    out.code(0);
    let expected = "\
PIPELINE  SCHEDULE     TIMEZONE       NEXT FIRE                OVERLAP  TRIGGERS  LAST RUN
groom     0 9 * * 1-5  Europe/Berlin  2026-11-23 09:00:00 CET  queue    cron      —
nightly   30 2 * * *   UTC            2026-11-22 02:30:00 UTC  skip     cron      —
hook      —            —              —                        skip     webhook   —
";
    assert_eq!(out.stdout, expected);

    // A triggered run shows up as the pipeline's last run.
    p.coord().args(["trigger", "groom", "--input", "repo=x/y"]).run().code(0);
    let out = p.coord().args(["schedule", "--json", "--now", "2026-11-21T10:00:00Z"]).run();
    out.code(0);
    let rows = out.json();
    assert_eq!(rows[0]["next_fire"], "2026-11-23T09:00:00+01:00");
    assert_eq!(rows[0]["last_run"]["status"], "succeeded");
    assert_eq!(rows[1]["last_run"], Value::Null);
    let run = &runs_of(&p, "groom")[0];
    assert_eq!(header(run)["inputs"]["repo"], "x/y");
}

#[test]
fn two_locked_runs_at_once_exactly_one_runs() {
    let p = project(&pipeline("groom", ""), 4000);
    let first = p.coord().args(["run", "slow.rhai", "--scenario", "slow.toml", "--lock", "x"]).spawn();
    let lock = p.path().join(".coord/locks/x.lock");
    wait_until(
        || std::fs::read_to_string(&lock).is_ok_and(|t| t.trim() == first.id().to_string()) && p.runs().len() == 1,
        &|| "the first run to take the lock and start".into(),
    );

    let second = p.coord().args(["run", "slow.rhai", "--scenario", "slow.toml", "--lock", "x"]).run();
    second.code(75);
    assert_eq!(second.stderr.lines().count(), 1, "{}", second.stderr);
    second.stderr_has(&format!("lock `x` is held by pid {}", first.id()));
    assert!(second.stdout.is_empty());
    assert_eq!(p.runs().len(), 1, "the refused run created nothing");

    let first = first.wait_with_output().unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", String::from_utf8_lossy(&first.stderr));
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), "", "a released lock names no holder");
    // Released: the next run takes it.
    p.write("slow.toml", &scenario(0));
    p.coord().args(["run", "slow.rhai", "--scenario", "slow.toml", "--lock", "x"]).run().code(0);
}

#[test]
fn a_pipeline_lock_stops_trigger_and_a_dead_holder_is_taken_over() {
    let p = project(&pipeline("groom", ""), 0);
    // A holder that died: its pid is in the file, but no process holds the flock.
    p.write(".coord/locks/groom.lock", "4194999\n");
    let out = p.coord().args(["trigger", "groom"]).run();
    out.code(0).stderr_has("taken over from pid 4194999");

    // A live holder: `coord run --lock groom` shares the pipeline's lock.
    p.write("slow.toml", &scenario(4000));
    let holder = p.coord().args(["run", "slow.rhai", "--scenario", "slow.toml", "--lock", "groom"]).spawn();
    let lock = p.path().join(".coord/locks/groom.lock");
    wait_until(
        || std::fs::read_to_string(&lock).is_ok_and(|t| t.trim() == holder.id().to_string()) && p.runs().len() == 2,
        &|| "the holder to take the lock and start".into(),
    );
    let out = p.coord().args(["trigger", "groom"]).run();
    out.code(75);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert_eq!(p.runs().len(), 2, "the refused trigger created nothing");
    let holder = holder.wait_with_output().unwrap();
    assert_eq!(holder.status.code(), Some(0));

    p.coord().args(["run", "slow.rhai", "--lock", "../escape"]).run().code(2);
    p.coord().args(["trigger", "nope"]).run().code(2);
}

/// A coordinator that sleeps 2 s, then waits for `agreement`, and returns what it got.
const PARKING: &str = r#"
sleep("2s");
let answer = wait_signal("agreement", #{ key: 7 });
#{ agreed: answer.agreed }
"#;

fn wait_index(p: &TestProject) -> Vec<Value> {
    let Ok(dir) = std::fs::read_dir(p.path().join(".coord/runs/.waits")) else { return Vec::new() };
    dir.flatten().filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()).collect()
}

#[test]
fn a_parked_run_is_woken_by_the_daemon_at_its_time_and_by_its_signal() {
    let p = TestProject::new();
    p.write("coord.toml", "");
    p.write("gate.rhai", PARKING);
    // Parked at once: the process exits before the 2 s are up, saying so.
    let out = p.coord().args(["run", "gate.rhai", "--park-after", "0s", "--json"]).run();
    out.code(0);
    let parked = out.json();
    assert_eq!(parked["status"], "parked", "{parked}");
    assert!(parked["parked"]["until"].as_str().unwrap().ends_with('Z'), "{parked}");
    let run = p.runs().pop().unwrap();
    let run_id = run.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(finished(&run).unwrap()["status"], "parked");
    let listed = wait_index(&p);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["parked"], true);
    let until_ms = listed[0]["until_ms"].as_i64().unwrap();
    p.coord().args(["runs", "--status", "parked"]).run().code(0).stdout_has("parked, waiting until 20");

    let mut daemon = Daemon::start(&p, &[], &[]);
    // Woken once its 2 s are up, it parks again at the gate, not before the wake time.
    daemon.wait_for(|l| l == format!("run {run_id}: woken (its time came); resuming"));
    daemon.wait_for(|l| l == format!("run {run_id}: parked again"));
    let sleep_until = journal(&run).iter().find(|e| e["fn"] == "sleep").unwrap()["result"]["until_ms"].as_i64();
    assert_eq!(sleep_until, Some(until_ms), "the sleep is journaled once, with its first deadline");
    let gate = wait_index(&p);
    assert_eq!((gate[0]["signal"].as_str(), gate[0]["key"].as_str()), (Some("agreement"), Some("7")));

    p.coord()
        .args(["signal", &run_id, "agreement", "--data", r#"{"agreed":true}"#])
        .run()
        .code(0)
        .stdout_has("is parked");
    daemon.wait_for(|l| l == format!("run {run_id}: woken (signal `agreement` arrived); resuming"));
    daemon.wait_for(|l| l == format!("run {run_id}: succeeded"));
    let done = finished(&run).unwrap();
    assert_eq!(done["result"], json!({ "agreed": true }));
    let woke_at = chrono::DateTime::parse_from_rfc3339(done["at"].as_str().unwrap()).unwrap().timestamp_millis();
    assert!(woke_at >= until_ms, "it finished before its sleep was over");
    assert!(wait_index(&p).is_empty(), "a finished run waits for nothing");
    // One wait each, journaled once: the resumes replayed them.
    let fns: Vec<_> = journal(&run).iter().filter_map(|e| e["fn"].as_str().map(str::to_owned)).collect();
    assert_eq!(fns, ["sleep", "wait_signal", "signal"]);
    p.coord().args(["signal", &run_id, "agreement"]).run().code(1).stderr_has("has finished (succeeded)");
    assert_eq!(daemon.stop(), 0, "{}", daemon.log());
}

fn post_delivery(addr: &str, path: &str, delivery: &str, payload: &Value) -> (u16, String) {
    let body = payload.to_string().into_bytes();
    let head = format!(
        "POST {path} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Hub-Signature-256: {}\r\nX-GitHub-Delivery: {delivery}\r\n",
        body.len(),
        sign(&body)
    );
    http(addr, &head, &body)
}

#[test]
fn a_signed_approve_comment_becomes_the_signal_of_the_parked_run_with_its_key_once() {
    let p = TestProject::new();
    p.write(
        "coord.toml",
        r#"[[signal_hook]]
name = "approve"
secret_env = "TEST_HOOK_SECRET"
signal = "agreement"
key = "issue.number"
match = { "comment.body" = "/approve" }
data = "comment.user"
"#,
    );
    p.write(
        "gate.rhai",
        "let who = wait_signal(\"agreement\", #{ key: input(\"pr\") });\n#{ approved_by: who.login }\n",
    );
    let run_of = |pr: &str| {
        let out =
            p.coord().args(["run", "gate.rhai", "--input", &format!("pr={pr}"), "--park-after", "0s", "--json"]).run();
        out.code(0);
        assert_eq!(out.json()["status"], "parked");
        out.json()["run_id"].as_str().unwrap().to_owned()
    };
    let (seven, eight) = (run_of("7"), run_of("8"));
    let mut daemon = Daemon::start(&p, &["--listen", "127.0.0.1:0"], &[("TEST_HOOK_SECRET", SECRET)]);
    let addr = daemon.address();
    let comment =
        |body: &str| json!({ "issue": { "number": 7 }, "comment": { "body": body, "user": { "login": "ana" } } });

    // A comment that is no approval is answered and ignored.
    let (status, body) = post_delivery(&addr, "/signals/approve", "d-0", &comment("looks good"));
    assert_eq!((status, body.contains("\"ignored\"")), (200, true), "{body}");
    // The approval reaches the run waiting with key 7 only, which the daemon wakes.
    let (status, body) = post_delivery(&addr, "/signals/approve", "d-1", &comment("/approve ship it"));
    assert_eq!(status, 202, "{body}\n{}", daemon.log());
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["delivered_to"], json!([seven]));
    daemon.wait_for(|l| l == format!("run {seven}: succeeded"));
    let done = finished(&p.path().join(".coord/runs").join(&seven)).unwrap();
    assert_eq!(done["result"], json!({ "approved_by": "ana" }));
    // A redelivery of the same id reaches nobody; run 8 still waits, parked.
    let (status, body) = post_delivery(&addr, "/signals/approve", "d-1", &comment("/approve ship it"));
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["delivered_to"], json!([]), "{status} {body}");
    assert_eq!(finished(&p.path().join(".coord/runs").join(&eight)).unwrap()["status"], "parked");
    assert_eq!(post_delivery(&addr, "/signals/nope", "d-2", &comment("/approve")).0, 404);
    let unsigned = comment("/approve").to_string().into_bytes();
    assert_eq!(post(&addr, "/signals/approve", None, &unsigned).0, 401);
    assert_eq!(daemon.stop(), 0, "{}", daemon.log());
}
