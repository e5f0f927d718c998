//! Remote leaves: running a leaf as a job on a distributed engine instead of in this process.
//!
//! The scheduler still takes its permits, applies its retries and validates every output; a
//! remote leaf is a [`Harness`](crate::harness::Harness) (`remote_leaf::RemoteHarness`) whose
//! future submits a job under a derived name (`coord-<run>-<session>-a<attempt>`), records the
//! submission in the run's submission log before the job exists, watches it, keeps its log in
//! the run's blobs, stops it on cancel or past its deadline, and returns the result that
//! `coord leaf-exec` printed as the job's last log line. A resumed run adopts the jobs its
//! first process started instead of starting them again.
//!
//! The engines are an enum ([`Engine`]): Ray and Kubernetes, each with the same five
//! operations (submit, status, logs, stop, list by label). It must not route, journal or
//! validate.

pub mod kubernetes;
pub mod leaf_spec;
pub mod ray;
pub mod remote_leaf;
pub mod stops;
pub mod submission_log;

use crate::config::executor_settings::{ExecutorKind, ExecutorSettings};
use crate::config::Config;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How often a job's state is read at first. Short, so a quick leaf's end is seen soon: a run's
/// reads are bounded by `reads_per_second` however many jobs it has in flight, and each job's
/// reads slow with its age.
const DEFAULT_POLL: Duration = Duration::from_millis(50);

/// A Ray run's read budget unless `reads_per_second` says otherwise.
const DEFAULT_READS_PER_SECOND: f64 = 20.0;

/// Labels every job carries (Ray's `metadata`, Kubernetes' labels).
pub const LABEL_RUN: &str = "coord_run";
pub const LABEL_SESSION: &str = "coord_session";
pub const LABEL_ATTEMPT: &str = "coord_attempt";
pub const LABEL_WORKFLOW: &str = "coord_workflow";

/// The job name of a session's attempt: `coord-<run-id>-<session>-a<attempt>`, lowercased,
/// every character outside `[a-z0-9-]` made a `-` (Ray takes `[a-z0-9_-]`, Kubernetes
/// DNS-1123 labels `[a-z0-9-]`). Derived, never random, so a resumed run finds it again.
pub fn job_name(run_id: &str, session: &str, attempt: u32) -> String {
    let raw = format!("coord-{run_id}-{session}-a{attempt}").to_lowercase();
    raw.chars().map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' { c } else { '-' }).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the engine is unreachable: {0}")]
    Unreachable(String),
    #[error("the engine answered HTTP {status}: {text}")]
    Refused { status: u16, text: String },
    #[error("the engine's answer does not read: {0}")]
    Unreadable(String),
}

/// What a submission did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Submitted {
    Created,
    /// A job of that name exists already: adopt it.
    AlreadyExists,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    /// The engine's own deadline ended it (Kubernetes' `activeDeadlineSeconds`).
    DeadlineExceeded,
    Stopped,
}

impl JobStatus {
    pub fn is_finished(&self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::Failed | JobStatus::DeadlineExceeded | JobStatus::Stopped)
    }
}

#[derive(Clone, Debug)]
pub struct JobInfo {
    pub name: String,
    pub status: JobStatus,
    pub labels: BTreeMap<String, String>,
    /// The engine's own word on the job's state.
    pub message: String,
}

impl JobInfo {
    pub fn attempt(&self) -> u32 {
        self.labels.get(LABEL_ATTEMPT).and_then(|a| a.parse().ok()).unwrap_or(0)
    }
}

/// A job to create.
#[derive(Clone, Debug)]
pub struct JobSubmission {
    pub name: String,
    /// The shell command the job runs (`coord leaf-exec --spec-json '…'`: Ray's entrypoint).
    pub entrypoint: String,
    /// The coord binary where the job runs, and the leaf spec (JSON) it runs, for an engine
    /// that runs a command line of its own (Kubernetes).
    pub program: String,
    pub spec: String,
    /// The job's own deadline, from its start (the leaf's timeout plus the start allowance).
    pub deadline: Duration,
    pub labels: BTreeMap<String, String>,
    pub resources: indexmap::IndexMap<String, f64>,
}

/// A distributed engine coord runs leaves on: Ray jobs, or Kubernetes Jobs (a Job per leaf
/// under the same derived name, 409 AlreadyExists = adopt, `activeDeadlineSeconds`, keys from
/// a Secret through `envFrom`; docs/scale-out.md).
#[derive(Clone, Debug)]
pub enum Engine {
    Ray(ray::RayEngine),
    Kubernetes(kubernetes::KubernetesEngine),
}

impl Engine {
    pub async fn submit(&self, job: &JobSubmission) -> Result<Submitted, EngineError> {
        match self {
            Engine::Ray(ray) => ray.submit(job).await,
            Engine::Kubernetes(k8s) => k8s.submit(job).await,
        }
    }

    pub async fn status(&self, name: &str) -> Result<Option<JobInfo>, EngineError> {
        match self {
            Engine::Ray(ray) => ray.status(name).await,
            Engine::Kubernetes(k8s) => k8s.status(name).await,
        }
    }

    pub async fn logs(&self, name: &str) -> Result<String, EngineError> {
        match self {
            Engine::Ray(ray) => ray.logs(name).await,
            Engine::Kubernetes(k8s) => k8s.logs(name).await,
        }
    }

    pub async fn stop(&self, name: &str) -> Result<(), EngineError> {
        match self {
            Engine::Ray(ray) => ray.stop(name).await,
            Engine::Kubernetes(k8s) => k8s.stop(name).await,
        }
    }

    /// The jobs of one run (and of one session, when given).
    pub async fn list(&self, run_id: &str, session: Option<&str>) -> Result<Vec<JobInfo>, EngineError> {
        let mut labels = vec![(LABEL_RUN, run_id)];
        labels.extend(session.map(|s| (LABEL_SESSION, s)));
        match self {
            Engine::Ray(ray) => ray.list(&labels).await,
            Engine::Kubernetes(k8s) => k8s.list(&labels).await,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("coord.toml [executor]: {0}")]
    Kind(#[from] crate::config::executor_settings::ExecutorKindError),
    #[error("coord.toml [workflow.{workflow}] executor: {error}")]
    WorkflowKind { workflow: String, error: crate::config::executor_settings::ExecutorKindError },
    #[error("coord.toml [executor]: kind = \"ray\" needs `address` (the Ray dashboard's, e.g. http://127.0.0.1:8265)")]
    NoAddress,
    #[error("coord.toml [executor] {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("coord.toml [executor]: kind = \"kubernetes\" needs `image` (the leaf image: git, the agent CLIs, coord)")]
    NoImage,
    #[error("the engine's client: {0}")]
    Engine(#[from] EngineError),
}

/// Where each workflow's leaves run, read from the config and `--executor` before the run
/// directory exists (so a bad setting leaves nothing behind).
#[derive(Clone, Debug)]
pub struct ExecutorPlan {
    default: ExecutorKind,
    per_workflow: BTreeMap<String, ExecutorKind>,
    /// `--executor` wins over the config's per-workflow kinds too.
    forced: bool,
    settings: ExecutorSettings,
    harness_settings: indexmap::IndexMap<String, crate::config::leaf_settings::HarnessSettings>,
}

impl ExecutorPlan {
    pub fn new(config: &Config, flag: Option<&str>) -> Result<Self, ExecutorError> {
        let settings = config.file.executor.clone();
        let forced = flag.map(ExecutorKind::parse).transpose()?;
        let mut per_workflow = BTreeMap::new();
        for (workflow, s) in &config.file.workflow {
            if let Some(kind) = &s.executor {
                let kind = ExecutorKind::parse(kind)
                    .map_err(|error| ExecutorError::WorkflowKind { workflow: workflow.clone(), error })?;
                per_workflow.insert(workflow.clone(), kind);
            }
        }
        let default = match forced {
            Some(kind) => kind,
            None => settings.kind()?,
        };
        let plan = ExecutorPlan {
            default,
            per_workflow,
            forced: forced.is_some(),
            settings,
            harness_settings: config.file.harness.clone(),
        };
        if plan.uses(ExecutorKind::Ray) && plan.settings.address.is_none() {
            return Err(ExecutorError::NoAddress);
        }
        if plan.uses(ExecutorKind::Kubernetes) && plan.settings.image.is_none() {
            return Err(ExecutorError::NoImage);
        }
        plan.durations()?;
        Ok(plan)
    }

    /// Every leaf runs here.
    pub fn local() -> Self {
        ExecutorPlan {
            default: ExecutorKind::Local,
            per_workflow: BTreeMap::new(),
            forced: false,
            settings: ExecutorSettings::default(),
            harness_settings: Default::default(),
        }
    }

    /// Some leaf may run on this machine.
    pub fn may_run_here(&self) -> bool {
        self.uses(ExecutorKind::Local)
    }

    fn uses(&self, kind: ExecutorKind) -> bool {
        self.default == kind || (!self.forced && self.per_workflow.values().any(|k| *k == kind))
    }

    fn kind_for(&self, workflow: &str) -> ExecutorKind {
        match self.per_workflow.get(workflow) {
            Some(kind) if !self.forced => *kind,
            _ => self.default,
        }
    }

    /// The read budget of a run's polls: Ray's dashboard answers each read in Python on the
    /// head, so a run's reads are bounded; a Kubernetes run reads its watch's copy, which costs
    /// the API server nothing.
    fn reads_per_second(&self, kind: ExecutorKind) -> Result<Option<f64>, ExecutorError> {
        match (kind, self.settings.reads_per_second) {
            (ExecutorKind::Kubernetes, _) => Ok(None),
            (_, None) => Ok(Some(DEFAULT_READS_PER_SECOND)),
            (_, Some(n)) if n.is_finite() && n > 0.0 => Ok(Some(n)),
            (_, Some(n)) => Err(ExecutorError::Invalid {
                field: "reads_per_second",
                reason: format!("{n} is not a positive number"),
            }),
        }
    }

    /// The poll interval and the start allowance.
    fn durations(&self) -> Result<(Duration, Duration), ExecutorError> {
        let parse = |field: &'static str, text: &Option<String>, default: Duration| match text {
            None => Ok(default),
            Some(t) => {
                humantime::parse_duration(t).map_err(|e| ExecutorError::Invalid { field, reason: e.to_string() })
            }
        };
        Ok((
            parse("poll", &self.settings.poll, DEFAULT_POLL)?,
            parse("start_allowance", &self.settings.start_allowance, Duration::from_secs(10))?,
        ))
    }

    /// The executors of one run, once its directory exists. `resumed`: the run's first process
    /// may have started jobs already, which are adopted rather than started again.
    pub fn open(
        &self,
        run_id: &str,
        run_dir: &Path,
        project_root: &Path,
        resumed: bool,
    ) -> Result<Executors, ExecutorError> {
        let mut remote = BTreeMap::new();
        for kind in [ExecutorKind::Ray, ExecutorKind::Kubernetes] {
            if self.uses(kind) {
                let setup = self.remote_setup(kind, run_id, run_dir, project_root, resumed)?;
                remote.insert(kind.as_str(), Arc::new(remote_leaf::RemoteLeaves::new(setup)));
            }
        }
        Ok(Executors { plan: self.clone(), remote })
    }

    fn remote_setup(
        &self,
        kind: ExecutorKind,
        run_id: &str,
        run_dir: &Path,
        project_root: &Path,
        resumed: bool,
    ) -> Result<remote_leaf::RemoteSetup, ExecutorError> {
        let (poll, start_allowance) = self.durations()?;
        let reads_per_second = self.reads_per_second(kind)?;
        let s = &self.settings;
        let engine = match kind {
            ExecutorKind::Kubernetes => {
                if let Some(path) = &s.kubeconfig {
                    kube::config::Kubeconfig::read_from(path)
                        .map_err(|e| ExecutorError::Invalid { field: "kubeconfig", reason: e.to_string() })?;
                }
                Engine::Kubernetes(kubernetes::KubernetesEngine::new(kubernetes::KubernetesSettings {
                    namespace: s.namespace.clone(),
                    image: s.image.clone().ok_or(ExecutorError::NoImage)?,
                    secret: s.secret.clone(),
                    service_account: s.service_account.clone(),
                    kubeconfig: s.kubeconfig.clone(),
                    run_id: Some(run_id.to_owned()),
                }))
            }
            _ => Engine::Ray(ray::RayEngine::new(s.address.as_deref().ok_or(ExecutorError::NoAddress)?)?),
        };
        let coord = match (&s.coord, kind) {
            (Some(path), _) => PathBuf::from(path),
            // A pod runs the image's own coord.
            (None, ExecutorKind::Kubernetes) => PathBuf::from("coord"),
            (None, _) => {
                std::env::current_exe().map_err(|e| ExecutorError::Invalid { field: "coord", reason: e.to_string() })?
            }
        };
        let repository = s
            .repository
            .clone()
            .or_else(|| project_root.ancestors().find(|d| d.join(".git").exists()).map(|d| d.display().to_string()));
        Ok(remote_leaf::RemoteSetup {
            engine,
            run_id: run_id.to_owned(),
            run_dir: run_dir.to_owned(),
            project_root: project_root.to_owned(),
            coord,
            repository,
            resources: s.resources.clone().unwrap_or_else(|| [("coord_leaf".to_owned(), 1.0)].into()),
            poll,
            reads_per_second,
            start_allowance,
            resumed,
            harness_settings: self.harness_settings.clone(),
        })
    }
}

/// The executors of one run: which workflows run remotely, and the remote leaves' state, by
/// kind.
#[derive(Clone)]
pub struct Executors {
    plan: ExecutorPlan,
    remote: BTreeMap<&'static str, Arc<remote_leaf::RemoteLeaves>>,
}

impl Executors {
    pub fn local() -> Self {
        Executors { plan: ExecutorPlan::local(), remote: BTreeMap::new() }
    }

    /// Whether `--executor` chose where leaves run for this run (not only `coord.toml`): a
    /// scenario's mock leaves then run as jobs too, so a demo exercises the engine.
    pub fn forced(&self) -> bool {
        self.plan.forced
    }

    /// The remote executor `workflow`'s leaves run on; `None` when they run here.
    pub fn remote_for(&self, workflow: &str) -> Option<Arc<remote_leaf::RemoteLeaves>> {
        match self.plan.kind_for(workflow) {
            ExecutorKind::Local => None,
            kind => self.remote.get(kind.as_str()).cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_are_derived_and_engine_safe() {
        assert_eq!(job_name("20261207T173316-AB_12", "s7", 2), "coord-20261207t173316-ab-12-s7-a2");
        let name = job_name("r.1/x", "s1", 1);
        assert!(name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'), "{name}");
        // The longest a run of coord's can make: a Kubernetes Job name must fit a 63-character
        // label (its pods carry it as `job-name`).
        assert!(job_name("20261207-173316-6eb1", &format!("s{}", u64::MAX), u32::MAX).len() <= 63);
    }

    #[test]
    fn the_flag_wins_over_the_config_and_a_workflow_may_differ() {
        let mut config = Config::default();
        config.file.executor.kind = Some("ray".into());
        config.file.executor.address = Some("http://127.0.0.1:1".into());
        config.file.workflow.insert(
            "fix".into(),
            crate::config::leaf_settings::WorkflowSettings { executor: Some("local".into()), ..Default::default() },
        );
        let plan = ExecutorPlan::new(&config, None).unwrap();
        assert_eq!((plan.kind_for("review"), plan.kind_for("fix")), (ExecutorKind::Ray, ExecutorKind::Local));
        let plan = ExecutorPlan::new(&config, Some("local")).unwrap();
        assert_eq!((plan.kind_for("review"), plan.kind_for("fix")), (ExecutorKind::Local, ExecutorKind::Local));
        config.file.executor.address = None;
        assert!(matches!(ExecutorPlan::new(&config, None), Err(ExecutorError::NoAddress)));
        assert!(ExecutorPlan::new(&Config::default(), Some("k8s")).is_err());
        let kubernetes = ExecutorPlan::new(&Config::default(), Some("kubernetes"));
        assert!(matches!(kubernetes, Err(ExecutorError::NoImage)), "a Job needs an image");
    }
}
