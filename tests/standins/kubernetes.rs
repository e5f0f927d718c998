//! A stand-in Kubernetes API server on 127.0.0.1, for the Kubernetes backend's suite
//! (tests/kubernetes.rs): it serves exactly what coord's `kube` client calls, in the real wire
//! format, and acts as the Job controller and a kubelet on this machine.
//!
//! - `POST /apis/batch/v1/namespaces/{ns}/jobs`: 201 with the Job; a taken name is 409 with a
//!   `Status` whose reason is `AlreadyExists`; a name that is no DNS-1123 label of at most 63
//!   characters, or a label value that is not valid, is 422 `Invalid`. Each create is counted
//!   by name ([`KubeApi::creates`]).
//! - `GET .../jobs/{name}` (404 `NotFound` Status when unknown), `GET .../jobs?labelSelector=`
//!   (equality selectors, comma-separated), `DELETE .../jobs/{name}` (recorded with its
//!   `propagationPolicy`; the Job is gone at once, its pod's process group gets SIGTERM, then
//!   SIGKILL after 2 s).
//! - `GET .../jobs?watch=true&resourceVersion=V&labelSelector=…&timeoutSeconds=N`: a chunked
//!   stream of `{"type": "ADDED" | "MODIFIED" | "DELETED", "object": Job}` lines, one per change
//!   after version V (every change is kept, so no version is too old), ended after
//!   `timeoutSeconds`, as the API server ends a watch. Watches opened and `GET`s of single Jobs
//!   are counted ([`KubeApi::watches`], [`KubeApi::job_gets`]).
//! - `GET /api/v1/namespaces/{ns}/pods?labelSelector=job-name=X` and
//!   `GET .../pods/{pod}/log` (400 while the container waits to start, as a kubelet answers).
//!
//! Its kubelet runs a created Job's container command here, as a process group of its own in a
//! folder of its own: `$(VAR)` references expanded against the container's `env` (`$$` is a
//! `$`), the environment this process has (an image's own) plus the `envFrom` Secrets set with
//! [`KubeApi::set_secret`] plus `env`. stdout and stderr make the pod's log. Exit 0 marks the
//! Job `Complete`; another exit marks it `Failed` (`BackoffLimitExceeded`) and, with
//! `terminationMessagePolicy: FallbackToLogsOnError`, makes the log's tail (80 lines, 2 KiB)
//! the termination message. `activeDeadlineSeconds` counts from the Job's creation: past it the
//! pod is killed and deleted and the Job `Failed` with reason `DeadlineExceeded`. With
//! [`KubeApi::set_slots`], at most that many pods run at once; the others stay `Pending`.
#![allow(dead_code)]

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Shared = Arc<Mutex<Cluster>>;

#[derive(Default)]
struct Cluster {
    version: u64,
    jobs: BTreeMap<(String, String), JobRecord>,
    creates: BTreeMap<String, usize>,
    deletes: Vec<(String, String)>,
    secrets: BTreeMap<String, BTreeMap<String, String>>,
    slots: Option<usize>,
    running: usize,
    /// Process groups of running pods, for the stand-in's own end.
    groups: BTreeMap<String, i32>,
    root: PathBuf,
    /// Every change to a Job, for watches: (version, namespace, event type, the Job then).
    changes: Vec<(u64, String, &'static str, Value)>,
    changed: Arc<tokio::sync::Notify>,
    watches: usize,
    job_gets: usize,
}

impl Cluster {
    /// Records the change that made `version` to the Job at `key` (gone: `DELETED`, with its last
    /// state), and wakes the watches.
    fn changed(&mut self, key: &(String, String), kind: &'static str, job: &JobRecord) {
        let object = job_json(job, self.version);
        self.push_change(&key.0, kind, object);
    }

    fn push_change(&mut self, namespace: &str, kind: &'static str, object: Value) {
        self.changes.push((self.version, namespace.to_owned(), kind, object));
        self.changed.notify_waiters();
    }
}

struct JobRecord {
    object: Value,
    uid: String,
    created_at: Instant,
    created: String,
    pod: Option<PodRecord>,
    conditions: Vec<Value>,
    active: bool,
    deleted: bool,
}

struct PodRecord {
    name: String,
    phase: &'static str,
    log: Arc<Mutex<Vec<u8>>>,
    exit: Option<i32>,
    message: Option<String>,
    created: String,
}

pub struct KubeApi {
    pub addr: SocketAddr,
    state: Shared,
    dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
}

impl KubeApi {
    pub fn start() -> Self {
        let dir = tempfile::Builder::new().prefix("coord-kube-").tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let state: Shared = Arc::new(Mutex::new(Cluster { root: dir.path().to_owned(), ..Default::default() }));
        let app = Router::new()
            .route("/apis/batch/v1/namespaces/{ns}/jobs", get(list_jobs).post(create_job))
            .route("/apis/batch/v1/namespaces/{ns}/jobs/{name}", get(get_job).delete(delete_job))
            .route("/api/v1/namespaces/{ns}/pods", get(list_pods))
            .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(pod_log))
            .fallback(|uri: Uri| async move { status(404, "NotFound", &format!("the server could not find {uri}")) })
            .with_state(state.clone());
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
        KubeApi { addr, state, dir, runtime }
    }

    /// A kubeconfig whose current context is this server (plain HTTP, no credentials) and
    /// the namespace `namespace`.
    pub fn kubeconfig(&self, namespace: &str) -> PathBuf {
        let path = self.dir.path().join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n    server: http://{}\n\
             contexts:\n- name: standin\n  context:\n    cluster: standin\n    user: standin\n    namespace: {namespace}\n\
             current-context: standin\nusers:\n- name: standin\n  user: {{}}\n",
            self.addr
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn set_secret(&self, name: &str, data: &[(&str, &str)]) {
        let data = data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.state.lock().unwrap().secrets.insert(name.to_owned(), data);
    }

    /// At most `n` pods run at once.
    pub fn set_slots(&self, n: usize) {
        self.state.lock().unwrap().slots = Some(n);
    }

    /// Successful creates, by Job name.
    pub fn creates(&self) -> BTreeMap<String, usize> {
        self.state.lock().unwrap().creates.clone()
    }

    /// Deletions: (Job name, propagationPolicy).
    pub fn deletes(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().deletes.clone()
    }

    /// The Jobs that exist, as `GET` shows them.
    pub fn jobs(&self) -> Vec<Value> {
        let cluster = self.state.lock().unwrap();
        cluster.jobs.values().map(|j| job_json(j, cluster.version)).collect()
    }

    /// Forgets a Job as a `ttlSecondsAfterFinished` controller or `kubectl delete job` does:
    /// its record is gone.
    pub fn forget_job(&self, name: &str) {
        let mut cluster = self.state.lock().unwrap();
        let Some(key) = cluster.jobs.keys().find(|(_, n)| n == name).cloned() else { return };
        let job = cluster.jobs.remove(&key).unwrap();
        cluster.version += 1;
        cluster.changed(&key, "DELETED", &job);
    }

    /// Watches of Jobs opened.
    pub fn watches(&self) -> usize {
        self.state.lock().unwrap().watches
    }

    /// `GET`s of single Jobs answered.
    pub fn job_gets(&self) -> usize {
        self.state.lock().unwrap().job_gets
    }

    /// Running pods' process groups.
    pub fn running_groups(&self) -> Vec<i32> {
        self.state.lock().unwrap().groups.values().copied().collect()
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        for group in self.running_groups() {
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
    }
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    });
    (StatusCode::from_u16(code).unwrap(), axum::Json(body)).into_response()
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn job_json(job: &JobRecord, version: u64) -> Value {
    let mut object = job.object.clone();
    object["metadata"]["uid"] = json!(job.uid);
    object["metadata"]["creationTimestamp"] = json!(job.created);
    object["metadata"]["resourceVersion"] = json!(version.to_string());
    let finished = !job.conditions.is_empty();
    let mut status = json!({ "startTime": job.created, "conditions": job.conditions });
    if job.active {
        status["active"] = json!(1);
    }
    if finished {
        let key = if job.conditions[0]["type"] == "Complete" { "succeeded" } else { "failed" };
        status[key] = json!(1);
    }
    object["status"] = status;
    object
}

fn pod_json(job: &JobRecord, pod: &PodRecord) -> Value {
    let name = job.object["metadata"]["name"].as_str().unwrap_or_default();
    let mut labels = job.object["spec"]["template"]["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    labels["job-name"] = json!(name);
    labels["batch.kubernetes.io/job-name"] = json!(name);
    labels["controller-uid"] = json!(job.uid);
    let state = match (pod.phase, pod.exit) {
        (_, Some(code)) => json!({ "terminated": {
            "exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" },
            "message": pod.message, "finishedAt": now_rfc3339(), "startedAt": pod.created } }),
        ("Running", None) => json!({ "running": { "startedAt": pod.created } }),
        _ => json!({ "waiting": { "reason": "ContainerCreating" } }),
    };
    json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": { "name": pod.name, "namespace": job.object["metadata"]["namespace"], "labels": labels,
                      "creationTimestamp": pod.created, "uid": format!("{}-pod", job.uid) },
        "spec": job.object["spec"]["template"]["spec"],
        "status": { "phase": pod.phase, "containerStatuses": [{ "name": "leaf", "ready": pod.phase == "Running",
                    "restartCount": 0, "image": "", "imageID": "", "state": state }] },
    })
}

fn query_param(uri: &Uri, key: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Equality selectors (`a=b,c=d`) against `labels`.
fn selects(selector: Option<&str>, labels: &Value) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_empty()) else { return true };
    selector.split(',').all(|term| {
        let (k, v) = term.split_once("==").or_else(|| term.split_once('=')).unwrap_or((term, ""));
        labels[k.trim()].as_str() == Some(v.trim())
    })
}

fn dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn label_value_ok(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 63
            && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

async fn create_job(State(state): State<Shared>, Path(ns): Path<String>, body: Bytes) -> Response {
    let Ok(mut object) = serde_json::from_slice::<Value>(&body) else {
        return status(400, "BadRequest", "the body is not JSON");
    };
    let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
    if object["kind"] != "Job" || object["apiVersion"] != "batch/v1" {
        return status(400, "BadRequest", "not a batch/v1 Job");
    }
    if !dns_label(&name) {
        return status(
            422,
            "Invalid",
            &format!(
                "Job.batch \"{name}\" is invalid: metadata.name: must be a DNS-1123 label of at most 63 characters"
            ),
        );
    }
    let labels = object["metadata"]["labels"].as_object().cloned().unwrap_or_default();
    let template = object["spec"]["template"]["metadata"]["labels"].as_object().cloned().unwrap_or_default();
    if let Some((k, v)) =
        labels.iter().chain(template.iter()).find(|(_, v)| !label_value_ok(v.as_str().unwrap_or("?!")))
    {
        return status(
            422,
            "Invalid",
            &format!("Job.batch \"{name}\" is invalid: metadata.labels: Invalid value: \"{v}\" for {k}"),
        );
    }
    let restart = object["spec"]["template"]["spec"]["restartPolicy"].as_str().unwrap_or_default();
    if restart != "Never" && restart != "OnFailure" {
        return status(
            422,
            "Invalid",
            "spec.template.spec.restartPolicy: Unsupported value: must be Never or OnFailure",
        );
    }
    let mut cluster = state.lock().unwrap();
    let key = (ns.clone(), name.clone());
    if cluster.jobs.contains_key(&key) {
        return status(409, "AlreadyExists", &format!("jobs.batch \"{name}\" already exists"));
    }
    object["metadata"]["namespace"] = json!(ns);
    cluster.version += 1;
    let created = now_rfc3339();
    let uid = format!("uid-{}-{}", cluster.version, fastrand::u32(..));
    let pod = PodRecord {
        name: format!("{name}-{}", fastrand::u32(10000..99999)),
        phase: "Pending",
        log: Arc::default(),
        exit: None,
        message: None,
        created: created.clone(),
    };
    let record = JobRecord {
        object,
        uid,
        created_at: Instant::now(),
        created,
        pod: Some(pod),
        conditions: Vec::new(),
        active: true,
        deleted: false,
    };
    *cluster.creates.entry(name.clone()).or_default() += 1;
    cluster.changed(&key, "ADDED", &record);
    let answer = job_json(&record, cluster.version);
    cluster.jobs.insert(key.clone(), record);
    drop(cluster);
    tokio::spawn(kubelet(state.clone(), key));
    (StatusCode::CREATED, axum::Json(answer)).into_response()
}

async fn get_job(State(state): State<Shared>, Path((ns, name)): Path<(String, String)>) -> Response {
    let mut cluster = state.lock().unwrap();
    cluster.job_gets += 1;
    match cluster.jobs.get(&(ns, name.clone())) {
        Some(job) => axum::Json(job_json(job, cluster.version)).into_response(),
        None => status(404, "NotFound", &format!("jobs.batch \"{name}\" not found")),
    }
}

async fn list_jobs(State(state): State<Shared>, Path(ns): Path<String>, uri: Uri) -> Response {
    let selector = query_param(&uri, "labelSelector");
    if query_param(&uri, "watch").is_some_and(|w| w == "true" || w == "1") {
        let from = query_param(&uri, "resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
        let timeout = query_param(&uri, "timeoutSeconds").and_then(|t| t.parse().ok()).unwrap_or(1800);
        return watch_jobs(state, ns, selector, from, Duration::from_secs(timeout));
    }
    let cluster = state.lock().unwrap();
    let items: Vec<Value> = cluster
        .jobs
        .iter()
        .filter(|((n, _), job)| *n == ns && selects(selector.as_deref(), &job.object["metadata"]["labels"]))
        .map(|(_, job)| {
            // A list's items carry no kind and apiVersion, as the API server sends them.
            let mut item = job_json(job, cluster.version);
            item.as_object_mut().map(|o| (o.remove("kind"), o.remove("apiVersion")));
            item
        })
        .collect();
    let list = json!({ "kind": "JobList", "apiVersion": "batch/v1",
                       "metadata": { "resourceVersion": cluster.version.to_string() }, "items": items });
    axum::Json(list).into_response()
}

/// A watch: the changes after `from` to the Jobs of `ns` that `selector` picks, one JSON line
/// each, as they happen, until `timeout`.
fn watch_jobs(state: Shared, ns: String, selector: Option<String>, from: u64, timeout: Duration) -> Response {
    let changed = {
        let mut cluster = state.lock().unwrap();
        cluster.watches += 1;
        cluster.changed.clone()
    };
    let until = tokio::time::Instant::now() + timeout;
    let lines = futures_util::stream::unfold(from, move |seen| {
        let (state, ns, selector, changed) = (state.clone(), ns.clone(), selector.clone(), changed.clone());
        async move {
            loop {
                let notified = changed.notified();
                let mut notified = std::pin::pin!(notified);
                notified.as_mut().enable();
                let (lines, last) = {
                    let cluster = state.lock().unwrap();
                    let mut lines = String::new();
                    for (_, n, kind, object) in cluster.changes.iter().filter(|c| c.0 > seen) {
                        if *n == ns && selects(selector.as_deref(), &object["metadata"]["labels"]) {
                            lines.push_str(&json!({ "type": kind, "object": object }).to_string());
                            lines.push('\n');
                        }
                    }
                    (lines, cluster.changes.last().map_or(seen, |c| c.0.max(seen)))
                };
                if !lines.is_empty() {
                    return Some((Ok::<_, std::convert::Infallible>(Bytes::from(lines)), last));
                }
                if tokio::time::timeout_at(until, notified).await.is_err() {
                    return None;
                }
            }
        }
    });
    Response::builder().header("content-type", "application/json").body(Body::from_stream(lines)).unwrap()
}

async fn delete_job(State(state): State<Shared>, Path((ns, name)): Path<(String, String)>, body: Bytes) -> Response {
    let options: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let policy = options["propagationPolicy"].as_str().unwrap_or("(none)").to_owned();
    let mut cluster = state.lock().unwrap();
    let Some(mut job) = cluster.jobs.remove(&(ns.clone(), name.clone())) else {
        return status(404, "NotFound", &format!("jobs.batch \"{name}\" not found"));
    };
    cluster.version += 1;
    cluster.deletes.push((name.clone(), policy));
    job.deleted = true;
    cluster.changed(&(ns, name.clone()), "DELETED", &job);
    let answer = job_json(&job, cluster.version);
    // The kubelet sees the Job gone and kills its pod's processes.
    (StatusCode::OK, axum::Json(answer)).into_response()
}

async fn list_pods(State(state): State<Shared>, Path(ns): Path<String>, uri: Uri) -> Response {
    let selector = query_param(&uri, "labelSelector");
    let cluster = state.lock().unwrap();
    let items: Vec<Value> = cluster
        .jobs
        .iter()
        .filter(|((n, _), _)| *n == ns)
        .filter_map(|(_, job)| job.pod.as_ref().map(|pod| pod_json(job, pod)))
        .filter(|pod| selects(selector.as_deref(), &pod["metadata"]["labels"]))
        .map(|mut pod| {
            pod.as_object_mut().map(|o| (o.remove("kind"), o.remove("apiVersion")));
            pod
        })
        .collect();
    let list = json!({ "kind": "PodList", "apiVersion": "v1",
                       "metadata": { "resourceVersion": cluster.version.to_string() }, "items": items });
    axum::Json(list).into_response()
}

async fn pod_log(State(state): State<Shared>, Path((ns, name)): Path<(String, String)>) -> Response {
    let cluster = state.lock().unwrap();
    let pod =
        cluster.jobs.iter().filter(|((n, _), _)| *n == ns).find_map(|(_, j)| j.pod.as_ref().filter(|p| p.name == name));
    match pod {
        None => status(404, "NotFound", &format!("pods \"{name}\" not found")),
        Some(pod) if pod.phase == "Pending" => status(
            400,
            "BadRequest",
            &format!("container \"leaf\" in pod \"{name}\" is waiting to start: ContainerCreating"),
        ),
        Some(pod) => {
            let log = pod.log.lock().unwrap().clone();
            (StatusCode::OK, [("content-type", "text/plain")], log).into_response()
        }
    }
}

/// What the kubelet needs of a Job's container.
struct Container {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    deadline: Option<Duration>,
    fallback_to_logs: bool,
}

fn container_of(cluster: &Cluster, job: &Value) -> Container {
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    let mut env: Vec<(String, String)> = Vec::new();
    for from in c["envFrom"].as_array().into_iter().flatten() {
        if let Some(secret) = from["secretRef"]["name"].as_str().and_then(|n| cluster.secrets.get(n)) {
            env.extend(secret.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    for var in c["env"].as_array().into_iter().flatten() {
        let value = expand(var["value"].as_str().unwrap_or_default(), &env);
        env.push((var["name"].as_str().unwrap_or_default().to_owned(), value));
    }
    let words = |v: &Value| -> Vec<String> {
        v.as_array().into_iter().flatten().filter_map(|w| w.as_str()).map(|w| expand(w, &env)).collect()
    };
    let mut argv = words(&c["command"]);
    argv.extend(words(&c["args"]));
    Container {
        argv,
        deadline: job["spec"]["activeDeadlineSeconds"].as_u64().map(Duration::from_secs),
        fallback_to_logs: c["terminationMessagePolicy"] == "FallbackToLogsOnError",
        env,
    }
}

/// Kubernetes' `$(VAR)` expansion: a defined variable's value, `$$` a `$`, anything else as
/// it is.
fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(close) = after.strip_prefix('(').and_then(|a| a.find(')')) {
            let name = &after[1..close + 1];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => out.push_str(&format!("$({name})")),
            }
            rest = &after[close + 2..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

enum Ending {
    Exited(i32),
    Deadline,
    Deleted,
}

/// Runs one Job's pod: waits for a slot, runs the container's command, ends the Job.
async fn kubelet(state: Shared, key: (String, String)) {
    let (container, created_at, root) = {
        let cluster = state.lock().unwrap();
        let Some(job) = cluster.jobs.get(&key) else { return };
        (container_of(&cluster, &job.object), job.created_at, cluster.root.clone())
    };
    let past_deadline = || container.deadline.is_some_and(|d| created_at.elapsed() > d);
    // Pending until a slot is free.
    loop {
        {
            let mut cluster = state.lock().unwrap();
            if !cluster.jobs.contains_key(&key) {
                return;
            }
            if past_deadline() {
                drop(cluster);
                finish(&state, &key, Ending::Deadline, false);
                return;
            }
            if cluster.slots.is_none_or(|n| cluster.running < n) {
                cluster.running += 1;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ending = run_pod(&state, &key, &container, created_at, &root).await;
    state.lock().unwrap().running -= 1;
    finish(&state, &key, ending, container.fallback_to_logs);
}

async fn run_pod(
    state: &Shared,
    key: &(String, String),
    container: &Container,
    created_at: Instant,
    root: &std::path::Path,
) -> Ending {
    let workdir = root.join(&key.1);
    std::fs::create_dir_all(&workdir).unwrap();
    let log = match state.lock().unwrap().jobs.get_mut(key).and_then(|j| j.pod.as_mut()) {
        Some(pod) => {
            pod.phase = "Running";
            pod.log.clone()
        }
        None => return Ending::Deleted,
    };
    let Some((program, args)) = container.argv.split_first() else {
        log.lock().unwrap().extend_from_slice(b"no command\n");
        return Ending::Exited(128);
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .envs(container.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&workdir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            log.lock().unwrap().extend_from_slice(format!("exec {program}: {e}\n").as_bytes());
            return Ending::Exited(127);
        }
    };
    let group = child.id().unwrap_or(0) as i32;
    state.lock().unwrap().groups.insert(key.1.clone(), group);
    let readers = [
        tokio::spawn(copy_into(child.stdout.take(), log.clone())),
        tokio::spawn(copy_into(child.stderr.take(), log.clone())),
    ];
    let ending = loop {
        if let Ok(Some(exit)) = child.try_wait() {
            break Ending::Exited(exit.code().unwrap_or(137));
        }
        if !state.lock().unwrap().jobs.contains_key(key) {
            break Ending::Deleted;
        }
        if container.deadline.is_some_and(|d| created_at.elapsed() > d) {
            break Ending::Deadline;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    if !matches!(ending, Ending::Exited(_)) {
        // The container is stopped: SIGTERM to its process group, SIGKILL after the grace.
        unsafe { libc::kill(-group, libc::SIGTERM) };
        if tokio::time::timeout(Duration::from_secs(2), child.wait()).await.is_err() {
            unsafe { libc::kill(-group, libc::SIGKILL) };
            let _ = child.wait().await;
        }
    }
    for reader in readers {
        let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
    }
    state.lock().unwrap().groups.remove(&key.1);
    ending
}

async fn copy_into<R: tokio::io::AsyncRead + Unpin>(reader: Option<R>, log: Arc<Mutex<Vec<u8>>>) {
    use tokio::io::AsyncReadExt;
    let Some(mut reader) = reader else { return };
    let mut buf = [0u8; 8192];
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 {
            break;
        }
        log.lock().unwrap().extend_from_slice(&buf[..n]);
    }
}

/// The Job controller's part: the pod's and the Job's end.
fn finish(state: &Shared, key: &(String, String), ending: Ending, fallback_to_logs: bool) {
    let mut cluster = state.lock().unwrap();
    cluster.version += 1;
    let version = cluster.version;
    let Some(job) = cluster.jobs.get_mut(key) else { return };
    job.active = false;
    let now = now_rfc3339();
    match ending {
        Ending::Deleted => {}
        Ending::Deadline => {
            // The controller deletes the Job's active pods.
            job.pod = None;
            job.conditions.push(json!({ "type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                "message": "Job was active longer than specified deadline", "lastTransitionTime": now, "lastProbeTime": now }));
        }
        Ending::Exited(code) => {
            if let Some(pod) = job.pod.as_mut() {
                pod.exit = Some(code);
                pod.phase = if code == 0 { "Succeeded" } else { "Failed" };
                if code != 0 && fallback_to_logs {
                    pod.message = Some(log_tail(&pod.log.lock().unwrap()));
                }
            }
            let condition = if code == 0 {
                json!({ "type": "Complete", "status": "True", "lastTransitionTime": now, "lastProbeTime": now })
            } else {
                json!({ "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit", "lastTransitionTime": now, "lastProbeTime": now })
            };
            job.conditions.push(condition);
        }
    }
    let object = job_json(job, version);
    cluster.push_change(&key.0, "MODIFIED", object);
}

/// What `FallbackToLogsOnError` keeps: the log's last 80 lines, at most 2048 bytes.
fn log_tail(log: &[u8]) -> String {
    let text = String::from_utf8_lossy(log);
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(80)..].join("\n");
    let start = tail.len().saturating_sub(2048);
    let start = (start..=tail.len()).find(|i| tail.is_char_boundary(*i)).unwrap_or(tail.len());
    tail[start..].to_owned()
}

#[test]
fn expansion_follows_kubernetes() {
    let env = vec![("A".to_owned(), "x".to_owned())];
    assert_eq!(expand("$(A) $(B) $$(A) $$ $x", &env), "x $(B) $(A) $ $x");
    assert!(selects(Some("a=1,b=2"), &json!({"a": "1", "b": "2", "c": "3"})));
    assert!(!selects(Some("a=1,b=3"), &json!({"a": "1", "b": "2"})));
}
