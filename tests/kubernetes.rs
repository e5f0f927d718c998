//! The Kubernetes backend against a stand-in API server on 127.0.0.1 (standins::kubernetes),
//! which runs each Job's container command on this machine as its kubelet would: coord's own
//! binary's `leaf-exec`, on the spec the Job carries. coord reaches it through a kubeconfig the
//! test writes (`[executor] kubeconfig`); nothing leaves loopback.
//!
//! groom-prs' reviews route as in a local run, each review one Job under its derived name; a
//! duplicate create is adopted; kill -9 of coord at random moments during the reviews, then
//! `coord resume`, creates no Job twice; a leaf past its deadline is `timeout`, pending or
//! running; SIGINT deletes every Job the run started and their processes die.

use crate::standins::kubernetes::KubeApi;
use crate::support::{self, TestProject};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const NAMESPACE: &str = "leaves";
const KEY: &str = "sk-standin-K8S-SECRET-0123456789";

fn project(api: &KubeApi, times: &Path) -> TestProject {
    let p = TestProject::new();
    api.set_secret("coord-keys", &[("STANDIN_KEY", KEY)]);
    p.write(
        "coord.toml",
        &format!(
            "[executor]\nkind = \"local\"\nnamespace = \"{NAMESPACE}\"\nimage = \"ghcr.io/acme/coord-leaf:test\"\n\
             secret = \"coord-keys\"\nkubeconfig = \"{}\"\ncoord = \"{}\"\npoll = \"100ms\"\nstart_allowance = \"3s\"\n",
            api.kubeconfig(NAMESPACE).display(),
            env!("CARGO_BIN_EXE_coord"),
        ),
    );
    let schema = r#"{ type = "object", required = ["verdict"] }"#;
    let review = support::command_workflow("scripts/review.sh", "30s", schema) + "pass_env = [\"STANDIN_KEY\"]\n";
    p.write("workflows/review.toml", &review);
    p.write("workflows/slow.toml", &support::command_workflow("scripts/hold.sh", "2s", schema));
    p.write("workflows/hold.toml", &support::command_workflow("scripts/hold.sh", "60s", schema));
    p.write("workflows/sleepy.toml", &support::command_workflow("scripts/sleepy.sh", "30s", schema));
    let t = times.display();
    p.write_executable(
        "scripts/review.sh",
        &format!("#!/bin/sh\nin=$(cat)\nsleep 1\necho review of $COORD_SESSION_ID >&2\n\
         [ \"$STANDIN_KEY\" = {KEY} ] && touch {t}/key-$COORD_SESSION_ID\n\
         case \"$in\" in *'\"pr\":2'*|*'\"pr\":4'*|*'\"pr\":6'*) echo '{{\"verdict\":\"changes\"}}';; *) echo '{{\"verdict\":\"clean\"}}';; esac\n"),
    );
    p.write_executable(
        "scripts/hold.sh",
        &format!("#!/bin/sh\ncat >/dev/null\necho $$ > {t}/hold-$COORD_SESSION_ID.pid\nexec sleep 300\n"),
    );
    p.write_executable("scripts/sleepy.sh", "#!/bin/sh\ncat >/dev/null\nsleep 2\necho '{\"verdict\":\"clean\"}'\n");
    p.write(
        "review.rhai",
        "let prs = [1, 2, 3, 4, 5, 6];\n\
         let rs = await_sessions(prs.map(|n| spawn_session(\"review\", #{ goal: `Review #${n}`, inputs: #{ pr: n } })));\n\
         let merged = [];\nlet changes = [];\n\
         for i in 0..prs.len() {\n  if rs[i].status == \"ok\" && rs[i].output.verdict == \"clean\" { merged.push(prs[i]); } else { changes.push(prs[i]); }\n}\n\
         notify(\"stdout\", `merged ${merged}, changes asked on ${changes}`);\n\
         #{ merged: merged, changes: changes }\n",
    );
    p.write("slow.rhai", "let rs = await_sessions([spawn_session(\"slow\", #{})]);\nrs[0].status\n");
    p.write(
        "hold.rhai",
        "let held = [1, 2, 3].map(|n| spawn_session(\"hold\", #{ inputs: #{ n: n } }));\nawait_sessions(held);\n",
    );
    p.write(
        "sleepy.rhai",
        "let rs = await_sessions([1, 2, 3, 4].map(|n| spawn_session(\"sleepy\", #{ inputs: #{ n: n } })));\nrs.map(|r| r.status)\n",
    );
    p.commit_all();
    p
}

fn jobs_of(api: &KubeApi, run_id: &str) -> Vec<Value> {
    api.jobs().into_iter().filter(|j| j["metadata"]["annotations"]["coord_run"] == run_id).collect()
}

fn names_of(jobs: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = jobs.iter().map(|j| j["metadata"]["name"].as_str().unwrap().to_owned()).collect();
    names.sort();
    names
}

/// The effects of a run's outcome, without what differs between any two runs.
fn effects(outcome: &Value) -> Vec<Value> {
    let effects = outcome["effects"].as_array().cloned().unwrap_or_default();
    effects
        .into_iter()
        .map(|mut e| {
            if let Some(o) = e.as_object_mut() {
                o.retain(|k, _| !matches!(k.as_str(), "at" | "time" | "run_id" | "idempotency_key" | "id" | "key"));
            }
            e
        })
        .collect()
}

#[test]
fn reviews_route_as_a_local_run_one_job_each() {
    let api = KubeApi::start();
    let times = tempfile::tempdir().unwrap();
    let p = project(&api, times.path());
    let local = p.coord().args(["run", "review.rhai", "--json", "--executor", "local"]).run();
    local.code(0);
    assert!(!times.path().join("key-s1").exists(), "no key here");
    let remote = p.coord().args(["run", "review.rhai", "--json", "--executor", "kubernetes"]).run();
    remote.code(0);
    // Followed through one watch of the run's Jobs: a Job is asked by GET only before the watch
    // has seen it (polling alone asks each of these 1 s Jobs about ten times at 100 ms).
    assert!(api.watches() >= 1, "the run watched its Jobs");
    assert!(api.job_gets() <= 6 * 2, "{} GETs of 6 Jobs", api.job_gets());
    let (local, remote) = (local.json(), remote.json());
    assert_eq!(remote["result"], json!({"merged": [1, 3, 5], "changes": [2, 4, 6]}));
    assert_eq!(remote["result"], local["result"], "the same routing as a local run");
    assert!(!effects(&remote).is_empty(), "{remote}");
    assert_eq!(effects(&remote), effects(&local), "the same effects as a local run");

    let run_id = remote["run_id"].as_str().unwrap();
    let jobs = jobs_of(&api, run_id);
    let expected: Vec<String> = (1..=6).map(|n| format!("coord-{}-s{n}-a1", run_id.to_lowercase())).collect();
    assert_eq!(names_of(&jobs), expected, "one Job per review, under its derived name");
    let creates = api.creates();
    assert!(expected.iter().all(|n| creates.get(n) == Some(&1)), "{creates:?}");
    for job in &jobs {
        assert_eq!(job["status"]["conditions"][0]["type"], "Complete", "{job}");
        assert_eq!(job["metadata"]["labels"]["coord_workflow"], "review");
        assert_eq!(job["spec"]["backoffLimit"], 0);
        assert_eq!(job["spec"]["activeDeadlineSeconds"], 33, "the leaf's 30 s and the 3 s allowance");
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["containers"][0]["envFrom"][0]["secretRef"]["name"], "coord-keys");
        assert_eq!(pod["containers"][0]["command"][1], "leaf-exec");
        assert!(!job.to_string().contains(KEY), "no key in the Job's spec");
    }
    let seen = (1..=6).filter(|n| times.path().join(format!("key-s{n}")).exists()).count();
    assert_eq!(seen, 6, "every leaf got the Secret's key through envFrom");
    let run_dir = p.path().join(remote["run_dir"].as_str().unwrap());
    for (n, name) in expected.iter().enumerate() {
        let log = std::fs::read_to_string(run_dir.join("jobs").join(format!("{name}.log"))).unwrap();
        assert!(log.contains(&format!("\"id\":\"s{}\"", n + 1)), "the pod's log is kept: {log}");
        assert!(log.trim_end().ends_with('}'), "the log ends with the result line: {log}");
    }
}

/// kill -9 of coord at a random moment while its reviews run as Jobs, then `coord resume`:
/// every session's Job is adopted or created once, and no Job is created twice.
#[test]
fn kill_9_at_random_moments_then_resume_creates_no_job_twice() {
    let api = KubeApi::start();
    api.set_slots(3);
    let times = tempfile::tempdir().unwrap();
    let p = project(&api, times.path());
    for round in 0..3 {
        let before = p.runs().len();
        let mut child = p.coord().args(["run", "sleepy.rhai", "--executor", "kubernetes"]).spawn();
        let run_dir = || p.runs().into_iter().nth(before);
        wait_until("the run's directory", Duration::from_secs(30), || run_dir().is_some());
        let at = Duration::from_millis(fastrand::u64(200..3500));
        std::thread::sleep(at);
        child.kill().unwrap();
        child.wait().unwrap();
        let run_dir = run_dir().unwrap();
        let run_id = run_dir.file_name().unwrap().to_str().unwrap().to_owned();
        let submitted = std::fs::read_to_string(run_dir.join("jobs.jsonl")).unwrap_or_default().lines().count();
        eprintln!("kubernetes: round {round}: kill -9 after {at:?}, {submitted} submissions recorded");
        let out = p.coord().args(["resume".as_ref(), run_dir.as_os_str(), "--json".as_ref()]).run();
        out.code(0);
        assert_eq!(out.json()["result"], json!(["ok", "ok", "ok", "ok"]), "{}", out.stderr);
        let jobs = jobs_of(&api, &run_id);
        let creates = api.creates();
        for job in &jobs {
            let name = job["metadata"]["name"].as_str().unwrap();
            assert_eq!(creates.get(name), Some(&1), "{name} created once: {creates:?}");
        }
        let mut sessions: Vec<&str> =
            jobs.iter().map(|j| j["metadata"]["annotations"]["coord_session"].as_str().unwrap()).collect();
        sessions.sort();
        assert_eq!(sessions, ["s1", "s2", "s3", "s4"], "one Job per session: {:?}", names_of(&jobs));
    }
}

/// A worktree leaf's Job ends, its branch pushed, while coord is dead; then the Job is gone
/// (deleted after it finished). `coord resume` finds the run's submission but no Job, sees the
/// leaf's branch in the repository, and does not start the leaf again: the session fails
/// with a message saying why, and no second Job is created.
#[test]
fn a_forgotten_job_whose_branch_was_pushed_is_not_started_again() {
    let api = KubeApi::start();
    let times = tempfile::tempdir().unwrap();
    let p = project(&api, times.path());
    let repository = p.path().display().to_string();
    let config = std::fs::read_to_string(p.path().join("coord.toml")).unwrap();
    p.write("coord.toml", &format!("{config}repository = \"{repository}\"\n"));
    let schema = r#"{ type = "object", required = ["verdict"] }"#;
    p.write("workflows/fix.toml", &(support::command_workflow("scripts/fix.sh", "30s", schema) + "worktree = true\n"));
    p.write_executable(
        "scripts/fix.sh",
        &format!(
            "#!/bin/sh\ncat >/dev/null\necho run >> {}/fix-starts\nsleep 1\necho fixed > FIXED\ngit add FIXED\n\
             git -c user.name=leaf -c user.email=leaf@example.com commit -qm fix\necho '{{\"verdict\":\"fixed\"}}'\n",
            times.path().display()
        ),
    );
    p.write(
        "fix.rhai",
        "let rs = await_sessions([spawn_session(\"fix\", #{})]);\n#{ status: rs[0].status, error: rs[0].error }\n",
    );
    p.commit_all();

    let before = p.runs().len();
    let mut child = p.coord().args(["run", "fix.rhai", "--executor", "kubernetes"]).spawn();
    let run_dir = || p.runs().into_iter().nth(before);
    // Killed once its Job exists (killed between recording and creating it, the resume would
    // rightly create it: the other kill -9 tests cover that).
    wait_until("the fix's Job created", Duration::from_secs(30), || !api.creates().is_empty());
    child.kill().unwrap();
    child.wait().unwrap();
    let run_dir = run_dir().unwrap();
    let run_id = run_dir.file_name().unwrap().to_str().unwrap().to_owned();
    let job = format!("coord-{run_id}-s1-a1");
    wait_until("the fix's Job finished", Duration::from_secs(30), || {
        jobs_of(&api, &run_id).iter().any(|j| j["status"]["succeeded"] == 1)
    });
    let branch = format!("coord/{run_id}/s1");
    let shown =
        Command::new("git").current_dir(p.path()).args(["rev-parse", "--verify", "-q", &branch]).output().unwrap();
    assert!(shown.status.success(), "leaf-exec pushed {branch}");
    api.forget_job(&job);

    let out = p.coord().args(["resume".as_ref(), run_dir.as_os_str(), "--json".as_ref()]).run();
    out.code(0);
    let result = &out.json()["result"];
    assert_eq!(result["status"], "failed", "{}", out.stderr);
    let error = result["error"].as_str().unwrap();
    assert!(error.contains(&format!("{branch} was pushed: not started again")), "{error}");
    assert_eq!(api.creates(), [(job, 1)].into(), "no Job created again");
    let starts = std::fs::read_to_string(times.path().join("fix-starts")).unwrap();
    assert_eq!(starts.lines().count(), 1, "the leaf ran once");
}

/// The repository's groom-prs and its offline demo, with an `[executor]` pointing at `api`.
fn groom_prs_project(api: &KubeApi) -> TestProject {
    let p = TestProject::with_repo_files();
    p.write(
        "coord.toml",
        &format!(
            "[executor]\nkind = \"local\"\nnamespace = \"{NAMESPACE}\"\nimage = \"ghcr.io/acme/coord-leaf:test\"\n\
             kubeconfig = \"{}\"\ncoord = \"{}\"\npoll = \"100ms\"\n",
            api.kubeconfig(NAMESPACE).display(),
            env!("CARGO_BIN_EXE_coord"),
        ),
    );
    p
}

/// `coord run groom-prs --demo --executor kubernetes`: the demo's leaves, answered by its
/// scenario, each run as a Job, and the run routes and acts exactly as the local demo; kill -9
/// during the reviews, then `coord resume`, creates no Job twice.
#[test]
fn groom_prs_demo_on_kubernetes_routes_as_the_local_demo_and_resumes_without_a_second_job() {
    let api = KubeApi::start();
    let p = groom_prs_project(&api);
    let demo = ["run", "coordinators/groom-prs.rhai", "--demo", "--json"];
    let local = p.coord().args(demo).run();
    local.code(0);
    let remote = p.coord().args(demo).args(["--executor", "kubernetes"]).run();
    remote.code(0);
    let (local, remote) = (local.json(), remote.json());
    assert_eq!(remote["result"], local["result"], "the same routing as the local demo");
    assert_eq!(effects(&remote), effects(&local), "the same effects as the local demo");
    let run_id = remote["run_id"].as_str().unwrap();
    let sessions = remote["sessions"].as_u64().unwrap();
    assert!(sessions >= 6, "{remote}");
    let expected: Vec<String> = (1..=sessions).map(|n| format!("coord-{}-s{n}-a1", run_id.to_lowercase())).collect();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(names_of(&jobs_of(&api, run_id)), expected_sorted, "one Job per leaf, under its derived name");
    let creates = api.creates();
    assert!(expected.iter().all(|n| creates.get(n) == Some(&1)), "{creates:?}");

    // kill -9 while the reviews run as Jobs, then resume: the same outcome, no Job twice.
    let before = p.runs().len();
    let mut child =
        p.coord().args(["run", "coordinators/groom-prs.rhai", "--demo", "--executor", "kubernetes"]).spawn();
    let run_dir = || p.runs().into_iter().nth(before);
    wait_until("the run's first submission", Duration::from_secs(60), || {
        run_dir().is_some_and(|d| d.join("jobs.jsonl").exists())
    });
    std::thread::sleep(Duration::from_millis(fastrand::u64(0..400)));
    child.kill().unwrap();
    child.wait().unwrap();
    let run_dir = run_dir().unwrap();
    let run_id = run_dir.file_name().unwrap().to_str().unwrap().to_owned();
    let out = p.coord().args(["resume".as_ref(), run_dir.as_os_str(), "--json".as_ref()]).run();
    out.code(0);
    assert_eq!(out.json()["result"], local["result"], "{}", out.stderr);
    assert_eq!(effects(&out.json()), effects(&local));
    let jobs = jobs_of(&api, &run_id);
    let creates = api.creates();
    for job in &jobs {
        let name = job["metadata"]["name"].as_str().unwrap();
        assert_eq!(creates.get(name), Some(&1), "{name} created once: {creates:?}");
    }
    let mut per_session: Vec<&str> =
        jobs.iter().map(|j| j["metadata"]["annotations"]["coord_session"].as_str().unwrap()).collect();
    per_session.sort();
    let before_dedup = per_session.len();
    per_session.dedup();
    assert_eq!(per_session.len(), before_dedup, "one Job per session: {:?}", names_of(&jobs));
}

#[test]
fn a_leaf_past_its_deadline_is_timeout() {
    let api = KubeApi::start();
    let times = tempfile::tempdir().unwrap();
    let p = project(&api, times.path());
    // Running: past its 2 s, leaf-exec's own deadline ends it and it answers timeout.
    let out = p.coord().args(["run", "slow.rhai", "--json", "--executor", "kubernetes"]).run();
    assert_eq!(out.json()["result"], "timeout", "{}", out.stderr);
    let pid: i32 = std::fs::read_to_string(times.path().join("hold-s1.pid")).unwrap().trim().parse().unwrap();
    wait_until("the timed-out leaf's process is gone", Duration::from_secs(5), || !support::process_alive(pid));
    std::fs::remove_file(times.path().join("hold-s1.pid")).unwrap();

    // Pending (no free slot) past activeDeadlineSeconds: the Job fails DeadlineExceeded, its
    // pod never ran, and the leaf is timeout all the same.
    api.set_slots(0);
    let out = p.coord().args(["run", "slow.rhai", "--json", "--executor", "kubernetes"]).run();
    assert_eq!(out.json()["result"], "timeout", "{}", out.stderr);
    assert!(!times.path().join("hold-s1.pid").exists(), "the pending leaf never ran");
}

#[test]
fn sigint_deletes_every_job_it_started() {
    let api = KubeApi::start();
    let times = tempfile::tempdir().unwrap();
    let p = project(&api, times.path());
    let before = p.runs().len();
    let child = p.coord().args(["run", "hold.rhai", "--executor", "kubernetes"]).spawn();
    let pid_files: Vec<PathBuf> = (1..=3).map(|n| times.path().join(format!("hold-s{n}.pid"))).collect();
    wait_until("3 leaves running", Duration::from_secs(60), || pid_files.iter().all(|f| f.is_file()));
    let pids: Vec<i32> =
        pid_files.iter().map(|f| std::fs::read_to_string(f).unwrap().trim().parse().unwrap()).collect();
    let run_dir = p.runs().into_iter().nth(before).expect("the run's directory");
    let run_id = run_dir.file_name().unwrap().to_str().unwrap().to_owned();
    assert_eq!(jobs_of(&api, &run_id).len(), 3);

    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Each cancelled leaf is reported, but the run may end before every report is logged (as
    // in the Ray suite); what must hold is below: every Job deleted, every leaf's process gone.
    assert!(stderr.contains("status=cancelled"), "{stderr}");
    // Stopped, not finished: the cancelled leaves' results never reach the script as answers.
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let mut deleted: Vec<(String, String)> = api.deletes();
    deleted.sort();
    let expected: Vec<(String, String)> =
        (1..=3).map(|n| (format!("coord-{}-s{n}-a1", run_id.to_lowercase()), "Background".to_owned())).collect();
    assert_eq!(deleted, expected, "every Job deleted before coord exited, its pod with it");
    assert!(jobs_of(&api, &run_id).is_empty());
    wait_until("every leaf's process gone", Duration::from_secs(10), || {
        pids.iter().all(|p| !support::process_alive(*p))
    });
}

/// The engine's five operations against the stand-in: a duplicate create is adopted, an unknown
/// Job is `None`, the engine's own deadline reads as `DeadlineExceeded`, a failed container's
/// log reaches the result through the termination message, list selects by label, stop deletes.
#[test]
fn the_engine_speaks_the_api() {
    use coord::executor::kubernetes::{KubernetesEngine, KubernetesSettings};
    use coord::executor::{Engine, JobStatus, JobSubmission, Submitted};
    let api = KubeApi::start();
    // The container's program: `<program> leaf-exec --spec-json <spec>` runs the "spec" as a
    // shell script here, which also shows the spec arrives whole (`$` and `$(..)` included).
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("run-spec");
    std::fs::write(&program, "#!/bin/sh\n[ \"$1 $2\" = \"leaf-exec --spec-json\" ] || exit 99\neval \"$3\"\n").unwrap();
    Command::new("chmod").arg("755").arg(&program).status().unwrap();
    let engine = Engine::Kubernetes(KubernetesEngine::new(KubernetesSettings {
        namespace: None,
        image: "busybox".into(),
        secret: None,
        service_account: None,
        kubeconfig: Some(api.kubeconfig(NAMESPACE).display().to_string()),
        run_id: None,
    }));
    let job = |name: &str, script: &str, deadline: u64| JobSubmission {
        name: name.into(),
        entrypoint: String::new(),
        program: program.display().to_string(),
        spec: script.into(),
        deadline: Duration::from_secs(deadline),
        labels: [("coord_run".to_owned(), "r/1".to_owned()), ("coord_session".to_owned(), name.to_owned())].into(),
        resources: Default::default(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let once = job("coord-r-1-s1-a1", "x=once; echo $x '$$' '$(HOME)'", 60);
        assert_eq!(engine.submit(&once).await.unwrap(), Submitted::Created);
        assert_eq!(engine.submit(&once).await.unwrap(), Submitted::AlreadyExists, "409 AlreadyExists reads as adopt");
        assert!(engine.status("coord-nope").await.unwrap().is_none(), "404 is None");
        let late = job("coord-r-1-s2-a1", "sleep 30", 1);
        engine.submit(&late).await.unwrap();
        let failing = job("coord-r-1-s3-a1", "echo '{\"not\": 1}'; exit 3", 60);
        engine.submit(&failing).await.unwrap();
        let ended = |name: &'static str| {
            let engine = engine.clone();
            async move {
                let start = Instant::now();
                loop {
                    let info = engine.status(name).await.unwrap().unwrap();
                    if info.status.is_finished() || start.elapsed() > Duration::from_secs(10) {
                        return info;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        assert_eq!(ended("coord-r-1-s1-a1").await.status, JobStatus::Succeeded);
        assert_eq!(engine.logs("coord-r-1-s1-a1").await.unwrap(), "once $$ $(HOME)\n");
        assert_eq!(ended("coord-r-1-s2-a1").await.status, JobStatus::DeadlineExceeded);
        assert_eq!(ended("coord-r-1-s3-a1").await.status, JobStatus::Failed);
        let log = engine.logs("coord-r-1-s3-a1").await.unwrap();
        assert!(log.ends_with("{\"not\": 1}\n"), "the termination message follows a log without a result: {log:?}");
        let listed = engine.list("r/1", Some("coord-r-1-s1-a1")).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].labels["coord_run"], "r/1", "the exact value, from the annotations");
        let mut other = job("coord-r-1-s9-a1", "true", 60);
        other.labels.insert("coord_run".into(), "r_1".into());
        engine.submit(&other).await.unwrap();
        assert_eq!(engine.list("r/1", None).await.unwrap().len(), 3, "r_1 has r/1's label value, not its run");
        engine.stop("coord-r-1-s1-a1").await.unwrap();
        engine.stop("coord-r-1-s1-a1").await.unwrap();
        assert!(engine.status("coord-r-1-s1-a1").await.unwrap().is_none(), "stop deletes the Job");
    });
    assert_eq!(api.creates()["coord-r-1-s1-a1"], 1);
}

fn wait_until(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
