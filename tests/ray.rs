//! The Ray backend against a real Ray cluster (docs/scale-out.md): a head with no CPUs and a
//! worker with `coord_leaf: 3`, started here inside the loopback-only network namespace the
//! test command runs in (`.ci/run`: `unshare --net`), with usage stats off and pointed at a
//! dead loopback port, `HOME` holding a local `ray_bootstrap_config.yaml`, every port pinned,
//! head on 127.0.0.2 and worker on 127.0.0.3. Ray processes are stopped by PID (SIGTERM, then
//! SIGKILL), never with `ray stop`.
//!
//! Opt-in: `COORD_RAY_VENV` names a virtualenv with `ray[default]` installed (`.ci/run` makes
//! one); without it the suite prints a note and passes. With it, it refuses to run outside a
//! namespace whose only interface is `lo`: Ray probes cloud metadata addresses.
//!
//! The head keeps its state in a Redis server (`redis-server`, started here on 127.0.0.2), as
//! production Ray must for jobs to survive a head restart (docs/scale-out.md).
//!
//! One test, in phases sharing one cluster (a head takes ≈ 10 s to start): routing as a local
//! run, 3 leaves at a time, whole logs in the run's blobs; a leaf past its deadline; SIGINT
//! stops every job and its leaf's process tree; kill -9 of coord then `coord resume` adopts
//! and creates no second job; a duplicate submission is answered "already exists"; the head
//! SIGKILLed and restarted while leaves run loses none of them.

use crate::support::{self, TestProject};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HEAD_IP: &str = "127.0.0.2";
const WORKER_IP: &str = "127.0.0.3";
const DASHBOARD_PORT: u16 = 48265;
const REDIS_PORT: u16 = 46390;

struct RayCluster {
    dir: tempfile::TempDir,
    venv: PathBuf,
    /// Redis and the `ray start --block` processes, by name, each the leader of a process
    /// group of its own.
    leaders: Vec<(&'static str, Child)>,
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
}

const HEAD_ARGS: &[&str] = &[
    "--head",
    "--node-ip-address",
    HEAD_IP,
    "--port",
    "46380",
    "--num-cpus",
    "0",
    "--include-dashboard",
    "true",
    "--dashboard-host",
    HEAD_IP,
    "--dashboard-port",
    "48265",
    "--node-manager-port",
    "46381",
    "--object-manager-port",
    "46382",
    "--min-worker-port",
    "46400",
    "--max-worker-port",
    "46420",
    "--dashboard-agent-listen-port",
    "46383",
    "--dashboard-agent-grpc-port",
    "46384",
    "--runtime-env-agent-port",
    "46385",
    "--metrics-export-port",
    "46386",
    "--ray-client-server-port",
    "46387",
];

fn address() -> String {
    format!("http://{HEAD_IP}:{DASHBOARD_PORT}")
}

impl RayCluster {
    fn start(venv: &Path) -> Self {
        let dir = tempfile::Builder::new().prefix("coord-ray-").tempdir().unwrap();
        std::fs::write(dir.path().join("ray_bootstrap_config.yaml"), "provider: {type: local}\n").unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap();
        let mut cluster = RayCluster { dir, venv: venv.to_owned(), leaders: Vec::new(), runtime, client };
        cluster.start_redis();
        cluster.start_head();
        let venv = cluster.venv.clone();
        let venv = venv.as_path();
        let resources = r#"{"coord_leaf": 3}"#;
        let worker = [
            "--address",
            "127.0.0.2:46380",
            "--node-ip-address",
            WORKER_IP,
            "--num-cpus",
            "0",
            "--resources",
            resources,
            "--node-manager-port",
            "46481",
            "--object-manager-port",
            "46482",
            "--min-worker-port",
            "46500",
            "--max-worker-port",
            "46520",
            "--dashboard-agent-listen-port",
            "46483",
            "--dashboard-agent-grpc-port",
            "46484",
            "--runtime-env-agent-port",
            "46485",
            "--metrics-export-port",
            "46486",
        ];
        cluster.spawn(venv, "worker", &worker, &[]);
        // Ready once a job that needs the worker's resource has run.
        let warmup =
            json!({"entrypoint": "true", "submission_id": "warmup", "entrypoint_resources": {"coord_leaf": 1}});
        cluster.post("/api/jobs/", &warmup);
        cluster.wait_for("the worker", Duration::from_secs(60), |c| {
            c.get("/api/jobs/warmup").is_some_and(|j| j["status"] == "SUCCEEDED")
        });
        cluster
    }

    /// The head's state store: a Redis server with nothing on disk (it outlives the head, not
    /// the suite).
    fn start_redis(&mut self) {
        let port = REDIS_PORT.to_string();
        let args = ["--bind", HEAD_IP, "--port", &port, "--save", "", "--appendonly", "no"];
        let mut cmd = Command::new("redis-server");
        cmd.args(args).current_dir(self.dir.path());
        let child = self.start_leader("redis", cmd).unwrap_or_else(|e| {
            panic!("redis-server does not start ({e}): the Ray suite keeps the head's state in Redis (`apt-get install redis-server`; .ci/run does)")
        });
        self.leaders.push(("redis", child));
        self.wait_for("redis", Duration::from_secs(10), |_| {
            std::net::TcpStream::connect((HEAD_IP, REDIS_PORT)).is_ok()
        });
    }

    /// The head, its state in Redis, and its Jobs API answering.
    fn start_head(&mut self) {
        let redis = format!("{HEAD_IP}:{REDIS_PORT}");
        let venv = self.venv.clone();
        let env = [("RAY_REDIS_ADDRESS", redis.as_str()), ("RAY_external_storage_namespace", "coord-suite")];
        self.spawn(&venv, "head", HEAD_ARGS, &env);
        self.wait_for("the head's Jobs API", Duration::from_secs(60), |c| c.get("/api/version").is_some());
    }

    /// SIGKILLs every process of the head (GCS, dashboard, its raylet), then starts it again
    /// as a restarted head container would: the same ports and state store, no files of the
    /// old one's cluster. Returns how long the head was gone.
    fn restart_head(&mut self) -> Duration {
        let at = self.leaders.iter().position(|(name, _)| *name == "head").expect("a head");
        let (_, mut head) = self.leaders.remove(at);
        let killed = Instant::now();
        let family = processes_of(&[head.id() as i32]);
        for pid in &family {
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        let _ = head.wait();
        wait_until("the head's processes gone", Duration::from_secs(10), || {
            family.iter().all(|pid| !support::process_alive(*pid))
        });
        // A new head's container has no record of the cluster the old one ran (else `ray start`
        // takes the worker's processes for a head still running).
        let _ = std::fs::remove_file(self.dir.path().join("rt/ray_current_cluster"));
        self.start_head();
        killed.elapsed()
    }

    fn spawn(&mut self, venv: &Path, name: &'static str, args: &[&str], env: &[(&str, &str)]) {
        let mut cmd = Command::new(venv.join("bin/ray"));
        cmd.arg("start").arg("--block").args(args);
        if name == "head" {
            cmd.arg("--temp-dir").arg(self.dir.path().join("rt"));
        }
        cmd.args(["--disable-usage-stats", "--object-store-memory", "80000000"])
            .env("HOME", self.dir.path())
            .env("RAY_USAGE_STATS_ENABLED", "0")
            .env("RAY_USAGE_STATS_REPORT_URL", "http://127.0.0.1:9/")
            .envs(env.iter().copied());
        let child = self.start_leader(name, cmd).expect("ray starts");
        self.leaders.push((name, child));
    }

    /// Starts `cmd` as the leader of a session of its own (so every process it starts can be
    /// found and stopped), its output in `<name>.log`.
    fn start_leader(&self, name: &str, mut cmd: Command) -> std::io::Result<Child> {
        use std::os::unix::process::CommandExt;
        let log =
            std::fs::File::options().create(true).append(true).open(self.dir.path().join(format!("{name}.log")))?;
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        cmd.spawn()
    }

    fn wait_for(&self, what: &str, limit: Duration, ready: impl Fn(&Self) -> bool) {
        let start = Instant::now();
        while !ready(self) {
            assert!(start.elapsed() < limit, "{what} not ready after {limit:?}; logs in {}", self.dir.path().display());
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn get(&self, path: &str) -> Option<Value> {
        self.runtime.block_on(async {
            let r = self.client.get(format!("{}{path}", address())).send().await.ok()?;
            if !r.status().is_success() {
                return None;
            }
            r.json().await.ok()
        })
    }

    fn post(&self, path: &str, body: &Value) -> Value {
        self.runtime.block_on(async {
            let r = self.client.post(format!("{}{path}", address())).json(body).send().await.unwrap();
            r.json().await.unwrap_or(Value::Null)
        })
    }

    /// coord's jobs of `run_id`, as Ray lists them.
    fn jobs_of(&self, run_id: &str) -> Vec<Value> {
        let all = self.get("/api/jobs/").unwrap_or(Value::Null);
        let all = all.as_array().cloned().unwrap_or_default();
        all.into_iter().filter(|j| j["metadata"]["coord_run"] == run_id).collect()
    }
}

impl Drop for RayCluster {
    fn drop(&mut self) {
        let roots: Vec<i32> = self.leaders.iter().map(|(_, c)| c.id() as i32).collect();
        let family = || processes_of(&roots);
        for pid in family() {
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let start = Instant::now();
        while !family().is_empty() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(100));
        }
        for pid in family() {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for (_, child) in &mut self.leaders {
            let _ = child.wait();
        }
    }
}

/// Live processes in the process groups led by `roots`, or descended from them.
fn processes_of(roots: &[i32]) -> Vec<i32> {
    let mut table = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        let (Some(ppid), Some(pgrp)) = (fields.get(1), fields.get(2)) else { continue };
        if support::process_alive(pid) {
            table.push((pid, ppid.parse::<i32>().unwrap_or(0), pgrp.parse::<i32>().unwrap_or(0)));
        }
    }
    let mut found: Vec<i32> = table.iter().filter(|(_, _, g)| roots.contains(g)).map(|(p, _, _)| *p).collect();
    found.extend(roots.iter().copied().filter(|r| support::process_alive(*r)));
    loop {
        let more: Vec<i32> =
            table.iter().filter(|(p, pp, _)| found.contains(pp) && !found.contains(p)).map(|(p, _, _)| *p).collect();
        if more.is_empty() {
            break;
        }
        found.extend(more);
    }
    found.sort();
    found.dedup();
    found
}

/// The network namespace has only loopback (Ray must reach nothing else): the interfaces this
/// process sees (`/proc/self/net/dev`, which follows the network namespace; `/sys/class/net`
/// follows the mount's).
fn loopback_only() -> bool {
    let dev = std::fs::read_to_string("/proc/self/net/dev").unwrap_or_default();
    let names: Vec<&str> = dev.lines().skip(2).filter_map(|l| l.split(':').next()).map(str::trim).collect();
    names == ["lo"]
}

/// A git project whose review leaves run through the command harness.
fn project(times: &Path) -> TestProject {
    let p = TestProject::new();
    p.write(
        "coord.toml",
        &format!(
            "[executor]\nkind = \"local\"\naddress = \"{}\"\npoll = \"100ms\"\nstart_allowance = \"5s\"\n",
            address()
        ),
    );
    let schema = r#"{ type = "object", required = ["verdict"] }"#;
    p.write("workflows/review.toml", &support::command_workflow("scripts/review.sh", "30s", schema));
    p.write("workflows/slow.toml", &support::command_workflow("scripts/hold.sh", "2s", schema));
    p.write("workflows/hold.toml", &support::command_workflow("scripts/hold.sh", "60s", schema));
    p.write("workflows/sleepy.toml", &support::command_workflow("scripts/sleepy.sh", "30s", schema));
    let t = times.display();
    p.write_executable(
        "scripts/review.sh",
        &format!(
            "#!/bin/sh\nin=$(cat)\necho \"$COORD_SESSION_ID start $(date +%s%N)\" >> {t}/times.log\nsleep 4\n\
             echo \"$COORD_SESSION_ID end $(date +%s%N)\" >> {t}/times.log\necho review of $COORD_SESSION_ID >&2\n\
             case \"$in\" in *'\"pr\":2'*|*'\"pr\":4'*|*'\"pr\":6'*) echo '{{\"verdict\":\"changes\"}}';; *) echo '{{\"verdict\":\"clean\"}}';; esac\n"
        ),
    );
    // Holds its slot; run again for the same session (a resumed run's next attempt), it answers.
    p.write_executable(
        "scripts/hold.sh",
        &format!(
            "#!/bin/sh\ncat >/dev/null\nf={t}/hold-$COORD_SESSION_ID.pid\n\
             if [ -f $f ]; then echo '{{\"verdict\":\"again\"}}'; exit 0; fi\necho $$ > $f\nexec sleep 300\n"
        ),
    );
    p.write_executable("scripts/sleepy.sh", "#!/bin/sh\ncat >/dev/null\nsleep 3\necho '{\"verdict\":\"clean\"}'\n");
    p.write(
        "review.rhai",
        "let prs = [1, 2, 3, 4, 5, 6];\n\
         let rs = await_sessions(prs.map(|n| spawn_session(\"review\", #{ goal: `Review #${n}`, inputs: #{ pr: n } })));\n\
         let merged = [];\nlet changes = [];\n\
         for i in 0..prs.len() {\n  if rs[i].status == \"ok\" && rs[i].output.verdict == \"clean\" { merged.push(prs[i]); } else { changes.push(prs[i]); }\n}\n\
         #{ merged: merged, changes: changes }\n",
    );
    p.write("slow.rhai", "let rs = await_sessions([spawn_session(\"slow\", #{})]);\nrs[0].status\n");
    p.write("workflows/quick.toml", &support::command_workflow("scripts/hold.sh", "1s", schema));
    p.write(
        "hold.rhai",
        "let held = [1, 2, 3].map(|n| spawn_session(\"hold\", #{ inputs: #{ n: n } }));\n\
         wait_signal(\"go\");\n\
         let q = await_sessions([spawn_session(\"quick\", #{})]);\n\
         notify(\"stdout\", `quick: ${q[0].status}`);\n\
         await_sessions(held);\n\
         notify(\"stdout\", \"held\");\n",
    );
    p.write("workflows/long.toml", &support::command_workflow("scripts/long.sh", "60s", schema));
    // Each start is one line of long.log, `<tag>-<session>`: a leaf run twice shows twice.
    p.write_executable(
        "scripts/long.sh",
        &format!(
            "#!/bin/sh\nin=$(cat)\ntag=$(printf '%s' \"$in\" | grep -o '\"tag\":\"[a-z]*\"' | cut -d'\"' -f4)\n\
             echo \"$tag-$COORD_SESSION_ID\" >> {t}/long.log\nsleep 20\necho '{{\"verdict\":\"clean\"}}'\n"
        ),
    );
    for (tag, leaves) in [("watched", "[1]"), ("resumed", "[1, 2]")] {
        p.write(
            &format!("long-{tag}.rhai"),
            &format!("let rs = await_sessions({leaves}.map(|n| spawn_session(\"long\", #{{ inputs: #{{ tag: \"{tag}\", n: n }} }})));\nrs.map(|r| r.status)\n"),
        );
    }
    p.write("sleepy.rhai", "let rs = await_sessions([1, 2, 3, 4].map(|n| spawn_session(\"sleepy\", #{ inputs: #{ n: n } })));\nrs.map(|r| r.status)\n");
    p.commit_all();
    p
}

/// The most leaves running at once, from the `start`/`end` lines of `times.log`.
fn most_at_once(times: &Path) -> usize {
    let text = std::fs::read_to_string(times.join("times.log")).unwrap_or_default();
    let mut events: Vec<(u128, i32)> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, kind, at) = (f.next()?, f.next()?, f.next()?.parse::<u128>().ok()?);
            Some((at, if kind == "start" { 1 } else { -1 }))
        })
        .collect();
    events.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in events {
        now += d;
        most = most.max(now);
    }
    most as usize
}

#[test]
fn leaves_run_as_ray_jobs() {
    let Some(venv) = std::env::var_os("COORD_RAY_VENV").map(PathBuf::from) else {
        eprintln!("note: ray:: skipped: set COORD_RAY_VENV to a virtualenv with ray[default] (.ci/run does)");
        return;
    };
    assert!(
        loopback_only(),
        "the Ray suite runs only where `lo` is the one interface: `unshare --net sh -c 'ip link set lo up && …'`"
    );
    let started = Instant::now();
    let mut ray = RayCluster::start(&venv);
    eprintln!("ray: cluster ready in {:?}", started.elapsed());
    let times = tempfile::tempdir().unwrap();
    let p = project(times.path());

    routing_slots_and_logs(&ray, &p, times.path());
    groom_prs_demo_routes_as_the_local_demo(&ray);
    a_leaf_past_its_deadline_is_timeout(&p, times.path());
    sigint_stops_every_job_and_its_leaf(&ray, &p, times.path());
    kill_9_then_resume_adopts_and_creates_no_second_job(&ray, &p);
    a_duplicate_submission_is_adopted(&ray);
    a_head_restart_loses_no_job(&mut ray, &p, times.path());
    eprintln!("ray: suite done in {:?}", started.elapsed());
}

fn routing_slots_and_logs(ray: &RayCluster, p: &TestProject, times: &Path) {
    let local = p.coord().args(["run", "review.rhai", "--json", "--executor", "local"]).run();
    local.code(0);
    std::fs::remove_file(times.join("times.log")).unwrap();
    let t = Instant::now();
    let remote = p.coord().args(["run", "review.rhai", "--json", "--executor", "ray"]).run();
    remote.code(0);
    eprintln!("ray: 6 reviews of 4 s at 3 slots in {:?}", t.elapsed());
    let (local, remote) = (local.json(), remote.json());
    assert_eq!(remote["result"], json!({"merged": [1, 3, 5], "changes": [2, 4, 6]}));
    assert_eq!(remote["result"], local["result"], "the same routing as a local run");
    assert_eq!(most_at_once(times), 3, "3 leaves at a time (the worker's coord_leaf: 3)");

    let run_id = remote["run_id"].as_str().unwrap();
    let jobs = ray.jobs_of(run_id);
    let mut names: Vec<&str> = jobs.iter().map(|j| j["submission_id"].as_str().unwrap()).collect();
    names.sort();
    let expected: Vec<String> = (1..=6).map(|n| format!("coord-{run_id}-s{n}-a1")).collect();
    assert_eq!(names, expected, "one job per review, under its derived name");
    assert!(jobs.iter().all(|j| j["status"] == "SUCCEEDED" && j["metadata"]["coord_workflow"] == "review"));

    // Each job's whole log is in the run's blobs (and its copy under jobs/).
    let run_dir = p.path().join(remote["run_dir"].as_str().unwrap());
    let blobs: Vec<String> = std::fs::read_dir(run_dir.join("blobs"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    for name in &expected {
        let log = blobs.iter().find(|b| b.contains(&format!("Running entrypoint for job {name}")));
        let log = log.unwrap_or_else(|| panic!("no blob holds the log of {name}"));
        assert!(log.trim_end().ends_with('}'), "the log ends with the result line: {log}");
        assert!(run_dir.join("jobs").join(format!("{name}.log")).is_file());
    }
    let submitted = std::fs::read_to_string(run_dir.join("jobs.jsonl")).unwrap();
    assert_eq!(submitted.lines().count(), 6, "every submission recorded: {submitted}");
}

/// `coord run groom-prs --demo --executor ray`: the demo's leaves (answered by its scenario,
/// carried in each job's spec) run as Ray jobs, and the run routes and acts as the local demo.
fn groom_prs_demo_routes_as_the_local_demo(ray: &RayCluster) {
    let p = TestProject::with_repo_files();
    p.write("coord.toml", &format!("[executor]\nkind = \"local\"\naddress = \"{}\"\npoll = \"100ms\"\n", address()));
    let demo = ["run", "coordinators/groom-prs.rhai", "--demo", "--json"];
    let local = p.coord().args(demo).run();
    local.code(0);
    let t = Instant::now();
    let remote = p.coord().args(demo).args(["--executor", "ray"]).run();
    remote.code(0);
    let (local, remote) = (local.json(), remote.json());
    eprintln!("ray: groom-prs's demo, {} leaves, in {:?}", remote["sessions"], t.elapsed());
    assert_eq!(remote["result"], local["result"], "the same routing as the local demo");
    let effects = |o: &Value| -> Vec<Value> {
        let mut list = o["effects"].as_array().cloned().unwrap_or_default();
        list.iter_mut().for_each(|e| {
            if let Some(map) = e.as_object_mut() {
                map.remove("idempotency_key");
            }
        });
        list
    };
    assert_eq!(effects(&remote), effects(&local), "the same effects as the local demo");
    let run_id = remote["run_id"].as_str().unwrap();
    let jobs = ray.jobs_of(run_id);
    assert_eq!(jobs.len() as u64, remote["sessions"].as_u64().unwrap(), "one job per leaf");
    assert!(jobs.iter().all(|j| j["status"] == "SUCCEEDED"), "{jobs:?}");
}

fn a_leaf_past_its_deadline_is_timeout(p: &TestProject, times: &Path) {
    let out = p.coord().args(["run", "slow.rhai", "--json", "--executor", "ray"]).run();
    let json = out.json();
    assert_eq!(json["result"], "timeout", "{}", out.stderr);
    let pid: i32 = std::fs::read_to_string(times.join("hold-s1.pid")).unwrap().trim().parse().unwrap();
    wait_until("the timed-out leaf's process is gone", Duration::from_secs(5), || !support::process_alive(pid));
    std::fs::remove_file(times.join("hold-s1.pid")).unwrap();
}

/// Three leaves hold the three slots; a fourth, spawned then, stays pending past its deadline
/// and is stopped as `timeout`; SIGINT then stops the three jobs and their leaves' processes.
fn sigint_stops_every_job_and_its_leaf(ray: &RayCluster, p: &TestProject, times: &Path) {
    let before = p.runs().len();
    let child = p.coord().args(["run", "hold.rhai", "--executor", "ray"]).spawn();
    let pid_files: Vec<PathBuf> = (1..=3).map(|n| times.join(format!("hold-s{n}.pid"))).collect();
    wait_until("3 leaves running", Duration::from_secs(30), || pid_files.iter().all(|f| f.is_file()));
    let pids: Vec<i32> =
        pid_files.iter().map(|f| std::fs::read_to_string(f).unwrap().trim().parse().unwrap()).collect();
    let run_dir = p.runs().into_iter().nth(before).expect("the run's directory");
    let run_id = run_dir.file_name().unwrap().to_str().unwrap().to_owned();
    p.coord().args(["signal".as_ref(), run_dir.as_os_str(), "go".as_ref()]).run().code(0);
    // The fourth leaf waits for a slot past its deadline (1 s + the 5 s start allowance).
    let journal = run_dir.join("journal.jsonl");
    wait_until("the pending leaf's result", Duration::from_secs(20), || {
        let text = std::fs::read_to_string(&journal).unwrap_or_default();
        text.lines().any(|l| l.contains(r#""type":"session""#) && l.contains(r#""id":"s4""#))
    });
    let text = std::fs::read_to_string(&journal).unwrap();
    let line = text.lines().find(|l| l.contains(r#""type":"session""#) && l.contains(r#""id":"s4""#)).unwrap();
    assert!(line.contains(r#""status":"timeout""#), "{line}");
    assert!(!times.join("hold-s4.pid").exists(), "the pending leaf never ran");

    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let stopping = Instant::now();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("quick: timeout"), "{stdout}\n{stderr}");
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("status=cancelled"), "{stderr}");
    eprintln!("ray: coord exited {:?} after SIGINT", stopping.elapsed());
    let held: Vec<String> = (1..=3).map(|n| format!("coord-{run_id}-s{n}-a1")).collect();
    wait_until("every running job stopped", Duration::from_secs(10), || {
        let jobs = ray.jobs_of(&run_id);
        held.iter().all(|name| jobs.iter().any(|j| j["submission_id"] == name.as_str() && j["status"] == "STOPPED"))
    });
    eprintln!("ray: 3 running jobs stopped {:?} after SIGINT", stopping.elapsed());
    wait_until("every leaf's process gone", Duration::from_secs(10), || {
        pids.iter().all(|p| !support::process_alive(*p))
    });
    // The pending job, stopped while it waited, ends once it gets a slot, having run nothing.
    let pending = format!("coord-{run_id}-s4-a1");
    wait_until("the pending job ended", Duration::from_secs(20), || {
        ray.jobs_of(&run_id)
            .iter()
            .any(|j| j["submission_id"] == pending.as_str() && j["status"] != "PENDING" && j["status"] != "RUNNING")
    });
    assert!(!times.join("hold-s4.pid").exists(), "the pending leaf never ran");

    // Resumed, the run starts the stopped leaves again as their next attempt (its journal
    // holds no answer for them); the timed-out one keeps its journaled result.
    p.coord().args(["resume".as_ref(), run_dir.as_os_str()]).run().code(0);
    let mut names: Vec<String> =
        ray.jobs_of(&run_id).iter().map(|j| j["submission_id"].as_str().unwrap().to_owned()).collect();
    names.sort();
    let mut expected: Vec<String> =
        (1..=3).flat_map(|n| [format!("coord-{run_id}-s{n}-a1"), format!("coord-{run_id}-s{n}-a2")]).collect();
    expected.push(pending);
    expected.sort();
    assert_eq!(names, expected);
}

fn kill_9_then_resume_adopts_and_creates_no_second_job(ray: &RayCluster, p: &TestProject) {
    let before = p.runs().len();
    let mut child = p.coord().args(["run", "sleepy.rhai", "--executor", "ray"]).spawn();
    let run_dir = || p.runs().into_iter().nth(before);
    wait_until("3 submissions", Duration::from_secs(30), || {
        run_dir()
            .is_some_and(|d| std::fs::read_to_string(d.join("jobs.jsonl")).unwrap_or_default().lines().count() >= 3)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let run_dir = run_dir().unwrap();
    let run_id = run_dir.file_name().unwrap().to_str().unwrap().to_owned();
    let out = p.coord().args(["resume".as_ref(), run_dir.as_os_str(), "--json".as_ref()]).run();
    out.code(0);
    assert_eq!(out.json()["result"], json!(["ok", "ok", "ok", "ok"]));
    let jobs = ray.jobs_of(&run_id);
    let mut names: Vec<String> = jobs.iter().map(|j| j["submission_id"].as_str().unwrap().to_owned()).collect();
    names.sort();
    let expected: Vec<String> = (1..=4).map(|n| format!("coord-{run_id}-s{n}-a1")).collect();
    assert_eq!(names, expected, "one job per session: the resume adopted, created none twice");
}

fn a_duplicate_submission_is_adopted(ray: &RayCluster) {
    use coord::executor::{ray::RayEngine, JobSubmission, Submitted};
    let engine = RayEngine::new(&address()).unwrap();
    let job = JobSubmission {
        name: "coord-dup-s1-a1".into(),
        entrypoint: "echo once".into(),
        program: "coord".into(),
        spec: String::new(),
        deadline: Duration::from_secs(60),
        labels: [("coord_run".to_owned(), "dup".to_owned())].into(),
        resources: [("coord_leaf".to_owned(), 1.0)].into(),
    };
    let (first, second) = ray.runtime.block_on(async { (engine.submit(&job).await, engine.submit(&job).await) });
    assert_eq!(first.unwrap(), Submitted::Created);
    assert_eq!(second.unwrap(), Submitted::AlreadyExists, "Ray's HTTP 500 \"already exists\" reads as adopt");
    assert_eq!(ray.jobs_of("dup").len(), 1);
    let missing = ray.runtime.block_on(engine.status("coord-nope-s1-a1")).unwrap();
    assert!(missing.is_none(), "a job the head does not know is a 404, not an error");
}

/// The head SIGKILLed while three leaves run, and with it the coord of one of their two runs;
/// restarted at once, its state kept in Redis. The other run's coord waits the outage out and
/// ends as if nothing happened; `coord resume` of the killed one adopts its jobs, still
/// running, and reads their answers. One job per session, each leaf started once.
fn a_head_restart_loses_no_job(ray: &mut RayCluster, p: &TestProject, times: &Path) {
    let before = p.runs().len();
    let watched = p.coord().args(["run", "long-watched.rhai", "--json", "--executor", "ray"]).spawn();
    let mut resumed = p.coord().args(["run", "long-resumed.rhai", "--executor", "ray"]).spawn();
    let starts = || std::fs::read_to_string(times.join("long.log")).unwrap_or_default();
    let running = Instant::now();
    while starts().lines().count() < 3 && running.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
    if starts().lines().count() < 3 {
        let jobs = ray.get("/api/jobs/").unwrap_or(Value::Null);
        let open: Vec<String> = jobs
            .as_array()
            .into_iter()
            .flatten()
            .filter(|j| j["status"] != "SUCCEEDED" && j["status"] != "STOPPED" && j["status"] != "FAILED")
            .map(|j| format!("{} {} {}", j["submission_id"], j["status"], j["message"]))
            .collect();
        let _ = (watched, resumed);
        panic!("3 long leaves not running within 30 s: {:?}; open jobs: {open:#?}", starts());
    }
    resumed.kill().unwrap();
    resumed.wait().unwrap();
    let gone = ray.restart_head();
    eprintln!("ray: head SIGKILLed and back in {gone:?}");
    assert!(gone < Duration::from_secs(60), "the head restarts within the worker's 60 s reconnect window");

    let runs: Vec<PathBuf> = p.runs().into_iter().skip(before).collect();
    let run_of = |script: &str| -> PathBuf {
        let dir = runs.iter().find(|d| {
            std::fs::read_to_string(d.join("journal.jsonl"))
                .unwrap_or_default()
                .lines()
                .next()
                .unwrap_or("")
                .contains(script)
        });
        dir.unwrap_or_else(|| panic!("no run of {script}")).clone()
    };
    let resumed_dir = run_of("long-resumed");
    let out = p.coord().args(["-v".as_ref(), "resume".as_ref(), resumed_dir.as_os_str(), "--json".as_ref()]).run();
    out.code(0);
    assert_eq!(out.json()["result"], json!(["ok", "ok"]), "{}", out.stderr);
    assert!(out.stderr.contains("adopting the job an earlier process started"), "{}", out.stderr);
    let watched = watched.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&watched.stderr);
    assert_eq!(watched.status.code(), Some(0), "{stderr}");
    let json: Value = serde_json::from_slice(&watched.stdout).unwrap();
    assert_eq!(json["result"], json!(["ok"]), "{stderr}");
    assert!(stderr.contains("the engine answers again"), "the outage was noticed and waited out: {stderr}");

    for (dir, sessions) in [(run_of("long-watched"), 1), (resumed_dir, 2)] {
        let run_id = dir.file_name().unwrap().to_str().unwrap().to_owned();
        let mut names: Vec<String> =
            ray.jobs_of(&run_id).iter().map(|j| j["submission_id"].as_str().unwrap().to_owned()).collect();
        names.sort();
        let expected: Vec<String> = (1..=sessions).map(|n| format!("coord-{run_id}-s{n}-a1")).collect();
        assert_eq!(names, expected, "one job per session across the head's restart");
    }
    let mut started: Vec<String> = starts().lines().map(str::to_owned).collect();
    started.sort();
    assert_eq!(started, ["resumed-s1", "resumed-s2", "watched-s1"], "each leaf started once");
}

fn wait_until(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `coord leaf-exec` without Ray: a spec on stdin, a clone at the base commit, the leaf's commit
/// pushed on its session branch, the result as the last line of stdout; an answer that does
/// not fit the schema is a failed result (after leaf-exec's own validation), still printed.
#[test]
fn leaf_exec_runs_a_spec_in_a_clone_and_pushes_its_branch() {
    let p = TestProject::new();
    p.write("README", "base\n");
    let git = |args: &[&str]| {
        let out = Command::new("git").current_dir(p.path()).args(args).output().unwrap();
        assert!(out.status.success(), "git {args:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"]);
    let base = git(&["rev-parse", "HEAD"]);
    let leaf = "cat >/dev/null; echo leaf > made && git add made && \
                git -c user.name=leaf -c user.email=leaf@t commit -qm leaf && echo '{\"verdict\":\"fixed\"}'";
    let spec = |command: &str, schema: Value| {
        json!({
            "run_id": "r1", "session": "s1", "attempt": 1,
            "workflow": {"name": "fix", "harness": "command", "command": ["sh", "-c", command],
                         "max_turns": null, "pass_env": [], "options": {}},
            "goal": "", "inputs": {}, "prompt": "fix it", "schema": schema, "model": null,
            "timeout_ms": 20000, "harness": "command", "harness_settings": {}, "overrides": {},
            "checkout": {"repository": p.path().display().to_string(), "base_commit": base,
                         "branch": "coord/r1/s1", "subdir": ""}
        })
        .to_string()
    };
    let schema = json!({"type": "object", "required": ["verdict"]});
    let out = p.coord().args(["leaf-exec", "--spec", "-"]).run_with_stdin(&spec(leaf, schema.clone()));
    out.code(0);
    let last: Value = serde_json::from_str(out.stdout.lines().last().unwrap()).unwrap();
    assert_eq!((last["status"].as_str(), &last["output"]), (Some("ok"), &json!({"verdict": "fixed"})));
    assert_eq!(git(&["log", "--format=%s", "coord/r1/s1"]), "leaf\nbase", "the branch was pushed");
    assert_eq!(git(&["rev-parse", "HEAD"]), base, "the project's own checkout is untouched");

    let out = p.coord().args(["leaf-exec", "--spec-json", &spec("cat >/dev/null; echo '{}'", schema)]).run();
    out.code(0);
    let last: Value = serde_json::from_str(out.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "failed");
    assert!(last["error"].as_str().unwrap().contains("verdict"), "{last}");
}
