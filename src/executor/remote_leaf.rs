//! A leaf run as a job: [`RemoteHarness`] is the harness the scheduler sees for a workflow
//! whose leaves run remotely, and [`RemoteLeaves`] the run-wide state behind it (the engine,
//! the submission log, the attempts made, the jobs a resumed run adopts).
//!
//! One attempt is one job, named `coord-<run>-<session>-a<attempt>`. Its submission is
//! recorded (fsynced) before the job is created; a duplicate answer is adopted; the job is
//! watched until it ends or passes its deadline (the leaf's timeout plus a start allowance),
//! when it is stopped and the leaf is `timeout`; a dropped leaf (a cancelled run) stops its
//! job. The job's whole log is kept in the run's blobs (the result's `transcript`) and, while
//! it runs, in `<run_dir>/jobs/<job>.log`. The result is the last log line, as `coord
//! leaf-exec` printed it.

use super::leaf_spec::{CheckoutSpec, LeafSpec};
use super::submission_log::{Submission, SubmissionLog};
use super::{job_name, Engine, EngineError, JobInfo, JobStatus, JobSubmission, Submitted};
use crate::config::leaf_settings::HarnessSettings;
use crate::harness::{Harness, HarnessLimits, LeafFuture};
use crate::journal::blob_store::BlobStore;
use crate::leaf::session::{FailureClass, LeafRequest, RetryHint, SessionResult, SessionStatus};
use crate::leaf::worktree::git;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the engine may be unreachable (a head restarting) before the leaf fails,
/// transiently: the scheduler's retries then wait again, and an engine that never comes back
/// stops the run as an outage.
const UNREACHABLE_LIMIT: Duration = Duration::from_secs(90);

/// How often an unreachable engine is asked again outside a job's watch.
const OUTAGE_POLL: Duration = Duration::from_millis(500);

/// How often a running job's log is copied to `<run_dir>/jobs/<job>.log`.
const LOG_COPY_EVERY: Duration = Duration::from_secs(10);

/// The longest wait between two reads of a job's state.
const MAX_POLL: Duration = Duration::from_secs(2);

/// The longest wait between two reads of a job's state that a read budget makes.
const MAX_SPREAD: Duration = Duration::from_secs(30);

/// The wait before the next read of a job's state, `age` after it was watched first: `poll`
/// at first, then a fiftieth of its age (a leaf's end is seen at most 2 % of its run late),
/// at most [`MAX_POLL`], so hundreds of long leaves do not flood the engine's API. With a read
/// budget, `in_flight` jobs share `reads_per_second` reads: one job alone is read every `poll`,
/// six at 20 reads a second every 300 ms each.
pub fn poll_interval(poll: Duration, age: Duration, in_flight: usize, reads_per_second: Option<f64>) -> Duration {
    let by_age = (age / 50).clamp(poll, MAX_POLL.max(poll));
    let spread = reads_per_second
        .map_or(Duration::ZERO, |budget| Duration::from_secs_f64(in_flight as f64 / budget).min(MAX_SPREAD));
    by_age.max(spread)
}

pub struct RemoteSetup {
    pub engine: Engine,
    pub run_id: String,
    pub run_dir: PathBuf,
    pub project_root: PathBuf,
    /// The coord binary the entrypoint runs.
    pub coord: PathBuf,
    /// What a leaf with a checkout clones and pushes to.
    pub repository: Option<String>,
    pub resources: indexmap::IndexMap<String, f64>,
    pub poll: Duration,
    /// The most reads of job states per second this run sends the engine, if bounded.
    pub reads_per_second: Option<f64>,
    pub start_allowance: Duration,
    pub resumed: bool,
    pub harness_settings: indexmap::IndexMap<String, HarnessSettings>,
}

pub struct RemoteLeaves {
    setup: RemoteSetup,
    log: SubmissionLog,
    blobs: BlobStore,
    /// The highest attempt submitted or adopted, by session, in this process.
    attempts: Mutex<HashMap<String, u32>>,
    /// A resumed run's view of what its first process started: read once.
    earlier: tokio::sync::OnceCell<Earlier>,
    /// Jobs being watched now, which share the run's read budget.
    in_flight: Arc<AtomicUsize>,
}

/// One job counted in [`RemoteLeaves::in_flight`] while it is watched.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        InFlight(count.clone())
    }

    fn now(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a resumed run finds of its earlier jobs.
#[derive(Default)]
struct Earlier {
    jobs: BTreeMap<String, Vec<JobInfo>>,
    submitted: BTreeMap<String, Vec<Submission>>,
}

/// What a leaf with a checkout works on: its branch (a worktree leaf) and the project root's
/// place in the repository.
#[derive(Clone, Debug)]
pub struct CheckoutPlan {
    pub branch: Option<String>,
    pub subdir: String,
}

/// What a resumed run does with a session its first process may have started.
enum Adoption {
    /// Nothing was started: submit attempt 1.
    Nothing,
    /// A job of this session still runs: watch it.
    Watch(String),
    /// It ended with an answer: this is its result.
    Result(SessionResult),
}

impl RemoteLeaves {
    pub fn new(setup: RemoteSetup) -> Self {
        RemoteLeaves {
            log: SubmissionLog::new(&setup.run_dir),
            blobs: BlobStore::new(&setup.run_dir),
            attempts: Mutex::default(),
            earlier: tokio::sync::OnceCell::new(),
            in_flight: Arc::default(),
            setup,
        }
    }

    /// The harness the scheduler runs `inner`'s leaves through, as jobs.
    pub fn harness(self: &Arc<Self>, inner: Arc<dyn Harness>, checkout: Option<CheckoutPlan>) -> Arc<dyn Harness> {
        Arc::new(RemoteHarness { leaves: self.clone(), inner, checkout })
    }

    fn next_attempt(&self, session: &str) -> u32 {
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        let n = attempts.entry(session.to_owned()).or_insert(0);
        *n += 1;
        *n
    }

    fn seen(&self, session: &str) -> bool {
        self.attempts.lock().unwrap_or_else(|p| p.into_inner()).contains_key(session)
    }

    fn set_attempt(&self, session: &str, attempt: u32) {
        self.attempts.lock().unwrap_or_else(|p| p.into_inner()).insert(session.to_owned(), attempt);
    }

    async fn run_leaf(
        self: Arc<Self>,
        request: LeafRequest,
        harness: String,
        checkout: Option<CheckoutPlan>,
        canned: Option<SessionResult>,
    ) -> SessionResult {
        let session = request.session_id.clone();
        if self.setup.resumed && !self.seen(&session) {
            match self.adopt(&request, checkout.as_ref()).await {
                Adoption::Result(result) => return result,
                Adoption::Watch(job) => return self.watch(&job, &request, checkout.as_ref()).await,
                Adoption::Nothing => {}
            }
        }
        let attempt = self.next_attempt(&session);
        if attempt > most_attempts(&request) {
            // A resumed run counts its retries afresh; the engine remembers the attempts.
            let error = format!("the leaf's {} attempts are spent (counted across a resume)", attempt - 1);
            return self.failed(&request, FailureClass::Permanent, error);
        }
        let job = job_name(&self.setup.run_id, &session, attempt);
        let submission = match self.submission(&request, &harness, attempt, &job, checkout.as_ref(), canned).await {
            Ok(s) => s,
            Err(e) => return self.failed(&request, FailureClass::Configuration, e),
        };
        let record = Submission { job: job.clone(), session: session.clone(), attempt };
        if let Err(e) = self.log.record(&record) {
            return self.failed(&request, FailureClass::Configuration, format!("cannot record job {job}: {e}"));
        }
        match self.setup.engine.submit(&submission).await {
            Ok(Submitted::Created) => tracing::info!(job = %job, "job submitted"),
            Ok(Submitted::AlreadyExists) => tracing::info!(job = %job, "job exists already: adopted"),
            Err(e) => {
                // The job may exist all the same (an answer lost on the way): a retry asks for the
                // same name again, and adopts it if it does.
                self.set_attempt(&session, attempt - 1);
                return self.failed(&request, FailureClass::Transient, format!("cannot submit job {job}: {e}"));
            }
        }
        self.watch(&job, &request, checkout.as_ref()).await
    }

    /// The job of one attempt: its spec as `coord leaf-exec`'s entrypoint, its labels and
    /// resources.
    async fn submission(
        &self,
        request: &LeafRequest,
        harness: &str,
        attempt: u32,
        job: &str,
        checkout: Option<&CheckoutPlan>,
        canned: Option<SessionResult>,
    ) -> Result<JobSubmission, String> {
        let checkout = match checkout {
            Some(plan) => Some(self.checkout_spec(plan).await?),
            None => None,
        };
        let settings = self.setup.harness_settings.get(harness).cloned().unwrap_or_default();
        let mut spec = LeafSpec::of(&self.setup.run_id, request, attempt, harness, settings, checkout);
        spec.canned = canned;
        let deadline = request.timeout + self.setup.start_allowance;
        let deadline_ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
        spec.not_after_ms = Some((chrono::Utc::now().timestamp_millis().max(0) as u64).saturating_add(deadline_ms));
        let json = serde_json::to_string(&spec).map_err(|e| e.to_string())?;
        let program = self.setup.coord.display().to_string();
        let entrypoint = format!("{} leaf-exec --spec-json {}", shell_quote(&program), shell_quote(&json));
        let labels = BTreeMap::from([
            (super::LABEL_RUN.to_owned(), self.setup.run_id.clone()),
            (super::LABEL_SESSION.to_owned(), request.session_id.clone()),
            (super::LABEL_ATTEMPT.to_owned(), attempt.to_string()),
            (super::LABEL_WORKFLOW.to_owned(), request.workflow.name.clone()),
        ]);
        Ok(JobSubmission {
            name: job.to_owned(),
            entrypoint,
            program,
            spec: json,
            deadline,
            labels,
            resources: self.setup.resources.clone(),
        })
    }

    async fn checkout_spec(&self, plan: &CheckoutPlan) -> Result<CheckoutSpec, String> {
        let Some(repository) = self.setup.repository.clone() else {
            return Err("the leaf needs a checkout, but the project is in no git repository and [executor] repository is not set".into());
        };
        let base_commit = git(&self.setup.project_root, &["rev-parse", "HEAD"]).await?.trim().to_owned();
        Ok(CheckoutSpec { repository, base_commit, branch: plan.branch.clone(), subdir: plan.subdir.clone() })
    }

    /// A resumed run's first look at a session: the newest attempt the engine knows is
    /// adopted (watched while it runs, its answer read once it ended, the next attempt
    /// started when it ended without one); a job the submission log holds but the engine
    /// does not know is looked for by its pushed branch, then created again under its own
    /// name.
    async fn adopt(&self, request: &LeafRequest, checkout: Option<&CheckoutPlan>) -> Adoption {
        let earlier = match self.earlier.get_or_try_init(|| self.read_earlier()).await {
            Ok(earlier) => earlier,
            // Not knowing what runs is not "nothing runs": start nothing, fail transiently.
            Err(e) => {
                let error = format!("cannot list the engine's jobs of this run, so cannot tell what still runs: {e}");
                return Adoption::Result(self.failed(request, FailureClass::Transient, error));
            }
        };
        let session = &request.session_id;
        let newest = earlier.jobs.get(session).and_then(|jobs| jobs.iter().max_by_key(|j| j.attempt()));
        if let Some(job) = newest {
            self.set_attempt(session, job.attempt());
            tracing::info!(job = %job.name, status = ?job.status, "adopting the job an earlier process started");
            if !job.status.is_finished() {
                return Adoption::Watch(job.name.clone());
            }
            let result = self.finished(job, request).await;
            // A job stopped with its run (SIGINT), or one that ended in an outage, gave no
            // answer to route on: the run did not journal it, and runs it again, as the next
            // attempt after the engine's.
            if result.status == SessionStatus::Cancelled || result.is_outage() {
                tracing::info!(job = %job.name, "the adopted job gave no answer; starting the next attempt");
                return Adoption::Nothing;
            }
            return Adoption::Result(result);
        }
        let Some(forgotten) = earlier.submitted.get(session).and_then(|s| s.iter().max_by_key(|s| s.attempt)) else {
            return Adoption::Nothing;
        };
        match self.forgotten(&forgotten.job, request, checkout).await {
            Some(result) => {
                self.set_attempt(session, forgotten.attempt);
                Adoption::Result(result)
            }
            // Created again under its own name: it was never created (coord died between
            // recording and creating it), or the engine forgot it; either way that attempt
            // did not run to an answer.
            None => {
                self.set_attempt(session, forgotten.attempt - 1);
                Adoption::Nothing
            }
        }
    }

    /// A job this run submitted that the engine does not know (a head restarted without
    /// persisted state): its leaf may have done its work all the same. `Some(failure)` when its
    /// branch was pushed (it must not start again), `None` when it may.
    async fn forgotten(
        &self,
        job: &str,
        request: &LeafRequest,
        checkout: Option<&CheckoutPlan>,
    ) -> Option<SessionResult> {
        tracing::warn!(job = %job, "the engine does not know a job this run submitted (a head restarted without persisted state?)");
        let branch = checkout.and_then(|c| c.branch.clone())?;
        let repository = self.setup.repository.as_ref()?;
        let reference = format!("refs/heads/{branch}");
        git(&self.setup.project_root, &["ls-remote", "--exit-code", repository, &reference]).await.ok()?;
        let error = format!(
            "job {job} was submitted but the engine forgot it, and its branch {branch} was pushed: not started again"
        );
        Some(self.failed(request, FailureClass::Permanent, error))
    }

    /// The engine's jobs of this run, by session, and the run's own submissions; waits out an
    /// engine that does not answer for a while (a resume started while its head restarts).
    async fn read_earlier(&self) -> Result<Earlier, EngineError> {
        let mut earlier = Earlier { submitted: self.log.read(), ..Default::default() };
        let engine = &self.setup.engine;
        let jobs = patiently("listing this run's jobs", || engine.list(&self.setup.run_id, None)).await?;
        for job in jobs {
            if let Some(session) = job.labels.get(super::LABEL_SESSION).cloned() {
                earlier.jobs.entry(session).or_default().push(job);
            }
        }
        Ok(earlier)
    }

    /// Follows `job` until it ends or passes its deadline. An engine that stops answering (a
    /// head restarting) is waited for, up to [`UNREACHABLE_LIMIT`]: a job on a worker node
    /// survives its head's restart when the head state is persisted.
    async fn watch(&self, job: &str, request: &LeafRequest, checkout: Option<&CheckoutPlan>) -> SessionResult {
        let mut guard = StopGuard { engine: self.setup.engine.clone(), job: job.to_owned(), armed: true };
        let started = Instant::now();
        let deadline = request.timeout + self.setup.start_allowance;
        let mut outage = Outage::of(format!("job {job}"));
        let mut last_copy = Instant::now();
        let in_flight = InFlight::enter(&self.in_flight);
        loop {
            let (poll, budget) = (self.setup.poll, self.setup.reads_per_second);
            tokio::time::sleep(poll_interval(poll, started.elapsed(), in_flight.now(), budget)).await;
            match self.setup.engine.status(job).await {
                Ok(Some(info)) if info.status.is_finished() => {
                    outage.ended();
                    guard.armed = false;
                    return self.finished(&info, request).await;
                }
                Ok(Some(_)) => outage.ended(),
                Ok(None) => {
                    guard.armed = false;
                    if let Some(result) = self.forgotten(job, request, checkout).await {
                        return result;
                    }
                    let error = format!(
                        "the engine does not know job {job} (HTTP 404): its head restarted without persisted state?"
                    );
                    return self.failed(request, FailureClass::Transient, error);
                }
                Err(e) if passing(&e) && !outage.too_long(&e) => {}
                Err(e) => return self.failed(request, FailureClass::Transient, format!("job {job}: {e}")),
            }
            if started.elapsed() > deadline {
                let _ = self.setup.engine.stop(job).await;
                guard.armed = false;
                let mut result = SessionResult::failed(
                    &request.session_id,
                    &request.workflow.name,
                    SessionStatus::Timeout,
                    format!("timed out after {}; job {job} stopped", humantime::format_duration(request.timeout)),
                );
                result.transcript = self.keep_log(job).await;
                return result;
            }
            if last_copy.elapsed() > LOG_COPY_EVERY {
                last_copy = Instant::now();
                if let Ok(log) = self.setup.engine.logs(job).await {
                    self.copy_log(job, &log);
                }
            }
        }
    }

    /// The result of a job that ended: its last log line, else a failure saying how it ended.
    async fn finished(&self, job: &JobInfo, request: &LeafRequest) -> SessionResult {
        let engine = &self.setup.engine;
        let log = match patiently(&format!("reading job {}'s log", job.name), || engine.logs(&job.name)).await {
            Ok(log) => log,
            // The answer may be in the log: fail transiently, and a retry adopts the job again.
            Err(e) => {
                let error = format!("job {} ended, but its log cannot be read: {e}", job.name);
                return self.failed(request, FailureClass::Transient, error);
            }
        };
        self.copy_log(&job.name, &log);
        let blob = self.blobs.put(log.as_bytes()).ok();
        let mut result = match (last_result(&log), &job.status) {
            (Some(result), _) => result,
            (None, JobStatus::Stopped) => SessionResult::failed(
                &request.session_id,
                &request.workflow.name,
                SessionStatus::Cancelled,
                format!("job {} was stopped", job.name),
            ),
            // The engine's own deadline (Kubernetes' activeDeadlineSeconds) ended it before
            // leaf-exec answered: the leaf timed out, as when coord stops it past its deadline.
            (None, JobStatus::DeadlineExceeded) => SessionResult::failed(
                &request.session_id,
                &request.workflow.name,
                SessionStatus::Timeout,
                format!(
                    "timed out after {}; job {} ended past its deadline ({})",
                    humantime::format_duration(request.timeout),
                    job.name,
                    job.message
                ),
            ),
            (None, status) => self.failed(
                request,
                FailureClass::Transient,
                format!("job {} ended {status:?} without a result: {}", job.name, job.message),
            ),
        };
        result.transcript = blob;
        result
    }

    async fn keep_log(&self, job: &str) -> Option<String> {
        let log = self.setup.engine.logs(job).await.ok()?;
        self.copy_log(job, &log);
        self.blobs.put(log.as_bytes()).ok()
    }

    fn copy_log(&self, job: &str, log: &str) {
        let dir = self.setup.run_dir.join("jobs");
        let masked = crate::redaction::process().mask_bytes(log.as_bytes());
        if std::fs::create_dir_all(&dir).is_ok() {
            let _ = std::fs::write(dir.join(format!("{job}.log")), masked);
        }
    }

    fn failed(&self, request: &LeafRequest, class: FailureClass, error: String) -> SessionResult {
        SessionResult::failed_as(&request.session_id, &request.workflow.name, class, error, None)
    }
}

/// The most jobs one session may be: its first attempt, its retries (the call's `retries`, else
/// its workflow's) and the scheduler's one repair.
fn most_attempts(request: &LeafRequest) -> u32 {
    let retries = request
        .overrides
        .get("retries")
        .and_then(|v| v.as_u64())
        .map_or(request.workflow.retries, |n| n.min(u64::from(u32::MAX)) as u32);
    retries.saturating_add(2)
}

/// The session result `coord leaf-exec` printed: the last log line that reads as one. A
/// transient failure may be retried (its hint is not part of the JSON).
pub fn last_result(log: &str) -> Option<SessionResult> {
    let line = log
        .lines()
        .rev()
        .map(str::trim)
        .filter(|l| l.starts_with('{'))
        .find_map(|l| serde_json::from_str::<SessionResult>(l).ok());
    line.map(|mut result| {
        if result.status != SessionStatus::Ok && result.failure == Some(FailureClass::Transient) {
            result.retry = Some(RetryHint::default());
        }
        result
    })
}

/// An engine error that may pass: no answer, or a 5xx (an API server or head restarting).
fn passing(e: &EngineError) -> bool {
    match e {
        EngineError::Unreachable(_) => true,
        EngineError::Refused { status, .. } => *status >= 500,
        EngineError::Unreadable(_) => false,
    }
}

/// `call`, asked again every [`OUTAGE_POLL`] while the engine does not answer (see
/// [`passing`]), for up to [`UNREACHABLE_LIMIT`]; `what` names the call in the warnings.
async fn patiently<T, Call, Answer>(what: &str, mut call: Call) -> Result<T, EngineError>
where
    Call: FnMut() -> Answer,
    Answer: std::future::Future<Output = Result<T, EngineError>>,
{
    let mut outage = Outage::of(what.to_owned());
    loop {
        match call().await {
            Ok(answer) => {
                outage.ended();
                return Ok(answer);
            }
            Err(e) if passing(&e) && !outage.too_long(&e) => tokio::time::sleep(OUTAGE_POLL).await,
            Err(e) => return Err(e),
        }
    }
}

/// A spell in which the engine does not answer `what` (a job's watch, a listing): logged when
/// it starts and when it ends (not at every poll), and given up after [`UNREACHABLE_LIMIT`].
struct Outage {
    what: String,
    since: Option<Instant>,
}

impl Outage {
    fn of(what: String) -> Self {
        Outage { what, since: None }
    }

    /// Notes a failed call; true once the engine has not answered for too long.
    fn too_long(&mut self, e: &EngineError) -> bool {
        let what = &self.what;
        let since = *self.since.get_or_insert_with(|| {
            let limit = humantime::format_duration(UNREACHABLE_LIMIT);
            tracing::warn!("{what}: the engine does not answer ({e}); waiting for it up to {limit}");
            Instant::now()
        });
        since.elapsed() > UNREACHABLE_LIMIT
    }

    fn ended(&mut self) {
        if let Some(since) = self.since.take() {
            let after = humantime::format_duration(Duration::from_secs(since.elapsed().as_secs()));
            // As loud as the warning it ends: the reader needs both.
            tracing::warn!("{}: the engine answers again, after {after}", self.what);
        }
    }
}

/// Stops the job when the leaf's future is dropped before it ended (a cancelled run).
struct StopGuard {
    engine: Engine,
    job: String,
    armed: bool,
}

impl Drop for StopGuard {
    fn drop(&mut self) {
        if self.armed {
            super::stops::stop_in_background(self.engine.clone(), self.job.clone());
        }
    }
}

/// `text` as one word for `sh`.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// The harness of a remotely run workflow, as the scheduler sees it: `inner`'s name and
/// limits, its leaves run as jobs. It offers no repair: `coord leaf-exec` repairs in place,
/// where the agent's session lives.
pub struct RemoteHarness {
    leaves: Arc<RemoteLeaves>,
    inner: Arc<dyn Harness>,
    checkout: Option<CheckoutPlan>,
}

impl Harness for RemoteHarness {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn start(&self, request: LeafRequest) -> LeafFuture {
        let harness = self.inner.name().to_owned();
        // A scenario's answer is matched now, in spawn order, as a local mock leaf's would be.
        let canned = self.inner.answers_in_process().then(|| self.inner.start(request.clone()));
        let leaves = self.leaves.clone();
        let checkout = self.checkout.clone();
        Box::pin(async move {
            let canned = match canned {
                Some(answer) => Some(answer.await),
                None => None,
            };
            leaves.run_leaf(request, harness, checkout, canned).await
        })
    }

    fn limits(&self) -> HarnessLimits {
        // The job's own deadline (timeout + start allowance) comes first: it stops the job and
        // keeps its log.
        let grace = self.leaves.setup.start_allowance + Duration::from_secs(5);
        HarnessLimits { timeout_grace: grace, ..self.inner.limits() }
    }

    fn runs_in_workdir(&self) -> bool {
        self.inner.runs_in_workdir()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_is_the_last_json_line_and_a_transient_failure_may_be_retried() {
        let ok = SessionResult::new("s1", "review", SessionStatus::Ok);
        let log = format!("starting\n{{\"not\": \"a result\"}}\n{}\n\n", serde_json::to_string(&ok).unwrap());
        assert_eq!(last_result(&log).unwrap().status, SessionStatus::Ok);
        let failed = SessionResult::failed_as("s1", "review", FailureClass::Transient, "HTTP 529", None);
        let log = serde_json::to_string(&failed).unwrap();
        assert!(last_result(&log).unwrap().retry.is_some());
        assert!(last_result("Traceback ...\n").is_none());
    }

    #[test]
    fn polling_slows_with_a_job_s_age_within_bounds() {
        let poll = Duration::from_millis(200);
        assert_eq!(poll_interval(poll, Duration::ZERO, 1, None), poll);
        assert_eq!(poll_interval(poll, Duration::from_secs(25), 1, None), Duration::from_millis(500));
        assert_eq!(poll_interval(poll, Duration::from_secs(3600), 1, None), MAX_POLL);
        assert_eq!(poll_interval(Duration::from_secs(5), Duration::from_secs(3600), 1, None), Duration::from_secs(5));
    }

    #[test]
    fn jobs_in_flight_share_the_read_budget() {
        let poll = Duration::from_millis(50);
        let budget = Some(20.0);
        assert_eq!(poll_interval(poll, Duration::ZERO, 1, budget), poll, "one job alone: every poll");
        assert_eq!(poll_interval(poll, Duration::ZERO, 6, budget), Duration::from_millis(300));
        assert_eq!(poll_interval(poll, Duration::ZERO, 6, None), poll, "no budget: every poll");
        assert_eq!(poll_interval(poll, Duration::ZERO, 100_000, budget), MAX_SPREAD);
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
