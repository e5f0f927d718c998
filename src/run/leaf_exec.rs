//! `coord leaf-exec`: one leaf from a [`LeafSpec`], in this process, the way a run's scheduler
//! runs it (the same harness code, process groups, redaction, schema validation and the one
//! repair, which must happen here, where the agent's session lives), but never retried: each
//! attempt is a job of its own, and the coordinator retries.
//!
//! A leaf that works in a checkout gets a clone of the spec's repository at its base commit; a
//! worktree leaf works on its branch, pushed back (`coord/<run>/<session>`) when it made
//! commits. Keys come from this process's environment, never from the spec. A scenario's mock
//! leaf carries its answer in the spec, and that answer is given back. It must not journal:
//! the result goes back as the last line of stdout.

use crate::config::Config;
use crate::executor::leaf_spec::{CheckoutSpec, LeafSpec};
use crate::harness::HarnessSet;
use crate::leaf::session::{FailureClass, SessionResult, SessionStatus};
use crate::leaf::worktree::git;
use crate::scheduler::leaf_task::{LeafClock, LeafTask};
use crate::scheduler::run_clock::RunClock;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Runs the leaf `spec` describes to its result.
pub async fn execute(spec: LeafSpec) -> SessionResult {
    let fail = |class, error: String| SessionResult::failed_as(&spec.session, &spec.workflow.name, class, error, None);
    if spec.time_left().is_some_and(|left| left.is_zero()) {
        let error = "leaf-exec: the job started after the coordinator's deadline; nothing ran";
        return SessionResult::failed(&spec.session, &spec.workflow.name, SessionStatus::Timeout, error);
    }
    if let Some(answer) = spec.canned {
        // A scenario's answer, worked out where the scenario is: given back as it came.
        return answer;
    }
    let scratch = match tempfile::Builder::new().prefix("coord-leaf-").tempdir() {
        Ok(dir) => dir,
        Err(e) => return fail(FailureClass::Transient, format!("leaf-exec: no scratch folder: {e}")),
    };
    let run_dir = scratch.path().join("run");
    let mut workdir = scratch.path().join("work");
    if let Err(e) = std::fs::create_dir_all(&run_dir).and_then(|_| std::fs::create_dir_all(&workdir)) {
        return fail(FailureClass::Transient, format!("leaf-exec: {e}"));
    }
    let checkout_dir = scratch.path().join("checkout");
    if let Some(checkout) = &spec.checkout {
        if let Err(e) = clone(checkout, &checkout_dir).await {
            return fail(
                FailureClass::Configuration,
                format!("leaf-exec: cannot check out {}: {e}", checkout.repository),
            );
        }
        workdir = checkout_dir.join(&checkout.subdir);
    }
    let mut result = run_leaf(&spec, &workdir, &run_dir).await;
    if let Some(CheckoutSpec { branch: Some(branch), repository, base_commit, .. }) = &spec.checkout {
        if let Err(e) = push_if_committed(&checkout_dir, repository, base_commit, branch).await {
            result.status = SessionStatus::Failed;
            result.set_failure(FailureClass::Transient, None);
            result.error = Some(format!("leaf-exec: the leaf's commits were not pushed: {e}"));
        }
    }
    result
}

/// The leaf itself, under the scheduler's own task (validation and repair), never retried.
async fn run_leaf(spec: &LeafSpec, workdir: &Path, run_dir: &Path) -> SessionResult {
    let fail = |class, error: String| SessionResult::failed_as(&spec.session, &spec.workflow.name, class, error, None);
    let mut config = Config::default();
    config.file.harness.insert(spec.harness.clone(), spec.harness_settings.clone());
    let harnesses = match HarnessSet::configured(&config, workdir) {
        Ok(set) => set,
        Err(e) => return fail(FailureClass::Configuration, e.to_string()),
    };
    let Some(harness) = harnesses.get(&spec.harness) else {
        return fail(FailureClass::Configuration, format!("leaf-exec: no harness `{}` here", spec.harness));
    };
    let workflow = match spec.workflow() {
        Ok(w) => Arc::new(w),
        Err(e) => return fail(FailureClass::Configuration, format!("leaf-exec: {e}")),
    };
    let validator = match crate::workflow::compile_schema(&spec.schema) {
        Ok(v) => Arc::new(v),
        Err(e) => return fail(FailureClass::Configuration, format!("leaf-exec: the schema: {e}")),
    };
    let request = spec.request(workflow, workdir, run_dir);
    let task = LeafTask {
        first: harness.start(request.clone()),
        request,
        harness,
        validator,
        run_permits: Arc::new(tokio::sync::Semaphore::new(1)),
        harness_permits: None,
        breaker: Arc::default(),
        clock: LeafClock::queued_now(RunClock::default()),
    };
    let mut result = task.run().await;
    // The scheduler's timing and attempts are the coordinator's to set.
    result.timing = None;
    result
}

async fn clone(checkout: &CheckoutSpec, dir: &Path) -> Result<(), String> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    let target = dir.display().to_string();
    git(parent, &["clone", "--quiet", "--no-checkout", &checkout.repository, &target]).await?;
    match &checkout.branch {
        Some(branch) => git(dir, &["checkout", "--quiet", "-B", branch, &checkout.base_commit]).await?,
        None => git(dir, &["checkout", "--quiet", "--detach", &checkout.base_commit]).await?,
    };
    Ok(())
}

/// Pushes `branch` to `repository` when the leaf committed past `base`.
async fn push_if_committed(dir: &Path, repository: &str, base: &str, branch: &str) -> Result<(), String> {
    let ahead = git(dir, &["rev-list", "--count", &format!("{base}..HEAD")]).await?;
    if ahead.trim() == "0" {
        return Ok(());
    }
    git(dir, &["push", "--quiet", "--force", repository, &format!("HEAD:refs/heads/{branch}")]).await?;
    tracing::info!(branch, commits = ahead.trim(), "pushed the leaf's branch");
    Ok(())
}

/// Where a spec comes from: a file, `-` for stdin.
pub fn read_spec(text: &str) -> Result<LeafSpec, String> {
    serde_json::from_str(text).map_err(|e| format!("not a leaf spec: {e}"))
}

/// The leaf spec in `path` (`-`: stdin).
pub fn spec_text(path: &Path) -> Result<String, String> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(|e| format!("stdin: {e}"))?;
        return Ok(text);
    }
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", PathBuf::from(path).display()))
}
