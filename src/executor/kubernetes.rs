//! The Kubernetes backend: one `batch/v1` Job per attempt, spoken with the `kube` client.
//!
//! The Job is named by coord's derived job name; a create answered 409 AlreadyExists is
//! [`Submitted::AlreadyExists`], which the caller adopts. `backoffLimit: 0` (each retry is a
//! new Job, decided by the coordinator), `restartPolicy: Never`, `activeDeadlineSeconds` = the
//! leaf's timeout plus the start allowance. The container runs `coord leaf-exec` on the leaf
//! spec, which travels in the environment variable `COORD_LEAF_SPEC` (every `$` doubled, so
//! Kubernetes' `$(VAR)` expansion gives it back unchanged); keys come from the configured
//! Secret through `envFrom`, never from the Job's spec. Labels carry run, session, attempt and
//! workflow (values made valid label values); annotations of the same names carry them exactly.
//!
//! Status comes from the Job's conditions (`Complete`, `Failed`; `Failed` for
//! `DeadlineExceeded` is [`JobStatus::DeadlineExceeded`]), as one watch of the run's Jobs
//! reports them ([`RunWatch`]), else as a `GET` of the Job; the log from the Job's pod (found by
//! its `job-name` label), falling back to the container's termination message. Stop deletes
//! the Job with background propagation, which deletes its pod and kills its container. It
//! knows Kubernetes' wire format only; what a job means to a run is `remote_leaf`'s business.

use super::{EngineError, JobInfo, JobStatus, JobSubmission, Submitted};
use futures_util::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The environment variable the leaf spec travels in.
pub const SPEC_VARIABLE: &str = "COORD_LEAF_SPEC";

/// How the engine reaches the cluster and what its Jobs run.
#[derive(Clone, Debug, Default)]
pub struct KubernetesSettings {
    /// Default: the kubeconfig context's namespace (or the service account's in a cluster).
    pub namespace: Option<String>,
    pub image: String,
    pub secret: Option<String>,
    pub service_account: Option<String>,
    /// Default: kube's `Config::infer` (`KUBECONFIG`, `~/.kube/config`, then in-cluster).
    pub kubeconfig: Option<String>,
    /// The run whose Jobs this engine watches (its `coord_run` label); none: every status is a
    /// `GET`.
    pub run_id: Option<String>,
}

/// One run's Jobs as the API server's watch reports them, kept by `kube::runtime`'s reflector
/// (it lists, watches from the list's version, and lists again after a break, with backoff):
/// following hundreds of running Jobs costs one stream, not a `GET` per Job and poll. It is
/// trusted only while its stream is up; a Job it has not seen yet (just created) or a watch
/// that lost its stream is asked by `GET`, whose error is the caller's to wait out.
struct RunWatch {
    store: reflector::Store<Job>,
    /// A full list is in the store and the stream has not broken since.
    live: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunWatch {
    fn start(jobs: Api<Job>, run_id: &str) -> RunWatch {
        let (store, writer) = reflector::store();
        let live = Arc::new(AtomicBool::new(false));
        let config = watcher::Config::default().labels(&format!("{}={}", super::LABEL_RUN, label_value(run_id)));
        let stream = watcher(jobs, config).default_backoff().reflect(writer);
        let flag = live.clone();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                match item {
                    // A full list is in the store: from here its events keep it current.
                    Ok(watcher::Event::InitDone) => flag.store(true, Ordering::Release),
                    // (Re)listing, or the stream broke: the store may be behind.
                    Ok(watcher::Event::Init) => flag.store(false, Ordering::Release),
                    Err(e) => {
                        tracing::debug!("the watch of this run's Jobs broke: {e}");
                        flag.store(false, Ordering::Release);
                    }
                    Ok(_) => {}
                }
            }
        });
        RunWatch { store, live, task }
    }

    /// The Job as the watch last saw it, when the watch can be trusted and has seen it.
    fn get(&self, name: &str, namespace: &str) -> Option<JobInfo> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        self.store.get(&ObjectRef::new(name).within(namespace)).map(|job| job_info(&job))
    }
}

impl Drop for RunWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
pub struct KubernetesEngine {
    settings: Arc<KubernetesSettings>,
    /// The client configuration, read on first use (reading it is async).
    config: Arc<tokio::sync::OnceCell<kube::Config>>,
    /// The client of the runtime that first used the engine (a client's connection pool lives
    /// on the runtime it was made on; a stop from another thread makes its own).
    client: Arc<tokio::sync::OnceCell<kube::Client>>,
    /// The run's watch, started at the first status asked.
    watch: Arc<tokio::sync::OnceCell<RunWatch>>,
}

impl std::fmt::Debug for KubernetesEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesEngine").field("settings", &self.settings).finish()
    }
}

impl KubernetesEngine {
    pub fn new(settings: KubernetesSettings) -> Self {
        KubernetesEngine {
            settings: Arc::new(settings),
            config: Arc::default(),
            client: Arc::default(),
            watch: Arc::default(),
        }
    }

    async fn config(&self) -> Result<&kube::Config, EngineError> {
        self.config
            .get_or_try_init(|| async {
                match &self.settings.kubeconfig {
                    None => kube::Config::infer().await.map_err(|e| EngineError::Unreachable(e.to_string())),
                    Some(path) => {
                        let file = kube::config::Kubeconfig::read_from(path)
                            .map_err(|e| EngineError::Unreachable(format!("kubeconfig {path}: {e}")))?;
                        let options = kube::config::KubeConfigOptions::default();
                        kube::Config::from_custom_kubeconfig(file, &options)
                            .await
                            .map_err(|e| EngineError::Unreachable(format!("kubeconfig {path}: {e}")))
                    }
                }
            })
            .await
    }

    fn namespace<'a>(&'a self, config: &'a kube::Config) -> &'a str {
        self.settings.namespace.as_deref().unwrap_or(&config.default_namespace)
    }

    async fn shared_client(&self) -> Result<kube::Client, EngineError> {
        let config = self.config().await?.clone();
        self.client.get_or_try_init(|| async { kube::Client::try_from(config).map_err(unreachable) }).await.cloned()
    }

    async fn api<K>(&self) -> Result<Api<K>, EngineError>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        let client = self.shared_client().await?;
        Ok(Api::namespaced(client, self.namespace(self.config().await?)))
    }

    pub async fn submit(&self, job: &JobSubmission) -> Result<Submitted, EngineError> {
        let object: Job = serde_json::from_value(self.job_object(job))
            .map_err(|e| EngineError::Unreadable(format!("the Job does not read: {e}")))?;
        match self.api::<Job>().await?.create(&PostParams::default(), &object).await {
            Ok(_) => Ok(Submitted::Created),
            Err(kube::Error::Api(status)) if status.is_already_exists() => Ok(Submitted::AlreadyExists),
            Err(e) => Err(refused(e)),
        }
    }

    /// The Job of one attempt, as the API takes it.
    pub fn job_object(&self, job: &JobSubmission) -> Value {
        let labels: BTreeMap<&String, String> = job.labels.iter().map(|(k, v)| (k, label_value(v))).collect();
        let deadline = job.deadline.as_secs() + u64::from(job.deadline.subsec_nanos() > 0);
        let mut container = json!({
            "name": "leaf",
            "image": self.settings.image,
            "command": [job.program, "leaf-exec", "--spec-json", format!("$({SPEC_VARIABLE})")],
            "env": [{ "name": SPEC_VARIABLE, "value": job.spec.replace('$', "$$") }],
            "terminationMessagePolicy": "FallbackToLogsOnError",
        });
        if let Some(secret) = &self.settings.secret {
            container["envFrom"] = json!([{ "secretRef": { "name": secret } }]);
        }
        let mut pod_spec = json!({ "restartPolicy": "Never", "containers": [container] });
        if let Some(account) = &self.settings.service_account {
            pod_spec["serviceAccountName"] = json!(account);
        }
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": { "name": job.name, "labels": labels, "annotations": job.labels },
            "spec": {
                "backoffLimit": 0,
                "activeDeadlineSeconds": deadline.max(1),
                "template": { "metadata": { "labels": labels }, "spec": pod_spec },
            },
        })
    }

    /// The Job's state, from the run's watch when it has it, else from the API server;
    /// `None` when the API server does not know it (HTTP 404).
    pub async fn status(&self, name: &str) -> Result<Option<JobInfo>, EngineError> {
        let jobs = self.api::<Job>().await?;
        if let Some(run_id) = &self.settings.run_id {
            let watch = self.watch.get_or_init(|| async { RunWatch::start(jobs.clone(), run_id) }).await;
            let namespace = self.namespace(self.config().await?);
            if let Some(info) = watch.get(name, namespace) {
                return Ok(Some(info));
            }
        }
        let job = jobs.get_opt(name).await.map_err(refused)?;
        Ok(job.as_ref().map(job_info))
    }

    /// The log of the Job's pod; when it holds no result, the container's termination message
    /// follows it as its last line.
    pub async fn logs(&self, name: &str) -> Result<String, EngineError> {
        let pods: Api<Pod> = self.api().await?;
        let listed = pods.list(&ListParams::default().labels(&format!("job-name={name}"))).await.map_err(refused)?;
        let Some(pod) = listed.items.into_iter().max_by_key(|p| p.metadata.creation_timestamp.clone()) else {
            return Ok(String::new());
        };
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let log = match pods.logs(&pod_name, &LogParams::default()).await {
            Ok(log) => log,
            Err(e) => {
                tracing::warn!(job = %name, "cannot read pod {pod_name}'s log: {e}");
                String::new()
            }
        };
        let message = termination_message(&pod);
        match message {
            Some(m) if super::remote_leaf::last_result(&log).is_none() => Ok(format!("{log}\n{m}\n")),
            _ => Ok(log),
        }
    }

    /// Deletes the Job and, in the background, its pod: the container is killed. A stop may run
    /// on a runtime of its own, so it makes its own client.
    pub async fn stop(&self, name: &str) -> Result<(), EngineError> {
        let config = self.config().await?.clone();
        let namespace = self.namespace(&config).to_owned();
        let client = kube::Client::try_from(config).map_err(unreachable)?;
        let jobs: Api<Job> = Api::namespaced(client, &namespace);
        match jobs.delete(name, &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
            Err(e) => Err(refused(e)),
        }
    }

    /// The Jobs carrying `labels`' values.
    pub async fn list(&self, labels: &[(&str, &str)]) -> Result<Vec<JobInfo>, EngineError> {
        let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={}", label_value(v))).collect();
        let params = ListParams::default().labels(&selector.join(","));
        let jobs = self.api::<Job>().await?.list(&params).await.map_err(refused)?;
        // Two values may be made the same label value: the annotations tell them apart.
        Ok(jobs
            .items
            .iter()
            .map(job_info)
            .filter(|job| labels.iter().all(|(k, v)| job.labels.get(*k).map(String::as_str) == Some(*v)))
            .collect())
    }
}

fn job_info(job: &Job) -> JobInfo {
    let name = job.metadata.name.clone().unwrap_or_default();
    // The exact values are the annotations; labels hold them made valid.
    let mut labels: BTreeMap<String, String> = job.metadata.labels.clone().unwrap_or_default();
    for (k, v) in job.metadata.annotations.iter().flatten() {
        if labels.contains_key(k) {
            labels.insert(k.clone(), v.clone());
        }
    }
    let status = job.status.clone().unwrap_or_default();
    let condition = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed"));
    let (status, message) = match condition {
        Some(c) => {
            let reason = c.reason.clone().unwrap_or_default();
            let message = format!("{}: {}", reason, c.message.clone().unwrap_or_default());
            match (c.type_.as_str(), reason.as_str()) {
                ("Complete", _) => (JobStatus::Succeeded, message),
                (_, "DeadlineExceeded") => (JobStatus::DeadlineExceeded, message),
                _ => (JobStatus::Failed, message),
            }
        }
        None if status.active.unwrap_or(0) > 0 => (JobStatus::Running, String::new()),
        None => (JobStatus::Pending, String::new()),
    };
    JobInfo { name, status, labels, message }
}

fn termination_message(pod: &Pod) -> Option<String> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    let terminated = statuses.iter().find_map(|s| s.state.as_ref()?.terminated.as_ref())?;
    terminated.message.clone().filter(|m| !m.trim().is_empty())
}

/// `value` as a valid label value: at most 63 characters of `[A-Za-z0-9._-]`, beginning and
/// ending with a letter or digit (others made `_`, the ends trimmed).
pub fn label_value(value: &str) -> String {
    let made: String = value
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .collect();
    let cut: String = made.chars().take(63).collect();
    cut.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_owned()
}

fn unreachable(e: kube::Error) -> EngineError {
    EngineError::Unreachable(e.to_string())
}

fn refused(e: kube::Error) -> EngineError {
    match e {
        kube::Error::Api(status) => EngineError::Refused { status: status.code, text: cut(&status.message) },
        other => EngineError::Unreachable(other.to_string()),
    }
}

fn cut(text: &str) -> String {
    crate::redaction::masked_tail(text.as_bytes(), 500)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn label_values_are_made_valid() {
        assert_eq!(label_value("20261207T173316-AB_12"), "20261207T173316-AB_12");
        assert_eq!(label_value("review/deep dive"), "review_deep_dive");
        assert_eq!(label_value("-x-"), "x");
        assert_eq!(label_value(&"a".repeat(80)).len(), 63);
    }

    #[test]
    fn the_job_keeps_keys_out_and_the_spec_whole() {
        let engine = KubernetesEngine::new(KubernetesSettings {
            image: "leaf:1".into(),
            secret: Some("coord-keys".into()),
            ..Default::default()
        });
        let submission = JobSubmission {
            name: "coord-r1-s1-a1".into(),
            entrypoint: String::new(),
            program: "coord".into(),
            spec: r#"{"prompt":"echo $$ $(HOME)"}"#.into(),
            deadline: Duration::from_millis(12_500),
            labels: [("coord_workflow".to_owned(), "review/x".to_owned())].into(),
            resources: Default::default(),
        };
        let job = engine.job_object(&submission);
        assert_eq!(job["spec"]["activeDeadlineSeconds"], 13);
        assert_eq!(job["spec"]["backoffLimit"], 0);
        assert_eq!(job["metadata"]["labels"]["coord_workflow"], "review_x");
        assert_eq!(job["metadata"]["annotations"]["coord_workflow"], "review/x");
        let container = &job["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["envFrom"][0]["secretRef"]["name"], "coord-keys");
        assert_eq!(container["env"][0]["value"], r#"{"prompt":"echo $$$$ $$(HOME)"}"#);
        assert!(serde_json::from_value::<Job>(job).is_ok());
    }
}
