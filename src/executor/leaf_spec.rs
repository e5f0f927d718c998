//! The leaf spec: everything `coord leaf-exec` needs to run one leaf on another machine, as
//! one JSON object. The coordinator writes it; the job's entrypoint hands it to leaf-exec.
//!
//! It holds no credential: a leaf's keys come from the environment of the process that runs
//! leaf-exec (a worker node's own), never from the spec, which an engine shows to anyone who
//! can read its jobs.

use crate::config::leaf_settings::HarnessSettings;
use crate::leaf::session::LeafRequest;
use crate::workflow::Workflow;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LeafSpec {
    pub run_id: String,
    pub session: String,
    pub attempt: u32,
    pub workflow: WorkflowSpec,
    pub goal: String,
    pub inputs: Value,
    /// The rendered prompt.
    pub prompt: String,
    /// The output schema the answer must fit (the workflow's, or the call's own).
    pub schema: Value,
    pub model: Option<String>,
    pub timeout_ms: u64,
    /// The harness by name, and its `[harness.<name>]` settings (which name variables, never
    /// hold their values).
    pub harness: String,
    pub harness_settings: HarnessSettings,
    /// The call's harness overrides (`command`, ...).
    pub overrides: Value,
    /// The checkout a leaf that works in a worktree gets; none for a leaf that does not.
    pub checkout: Option<CheckoutSpec>,
    /// When the coordinator gives up on this job (Unix milliseconds): a job that starts later
    /// (it waited for a slot, and the engine's stop reached it only then) runs nothing, and
    /// one that starts earlier gets no more than the time left.
    #[serde(default)]
    pub not_after_ms: Option<u64>,
    /// Variables the leaf must not get even when passed by name (a dry run's credentials).
    #[serde(default)]
    pub withheld_env: Vec<String>,
    /// A scenario's mock answer, worked out by the coordinator (where the scenario lives): the
    /// job gives it back instead of running a harness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canned: Option<crate::leaf::session::SessionResult>,
}

/// What leaf-exec needs of a workflow besides its rendered prompt and schema.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WorkflowSpec {
    pub name: String,
    pub harness: String,
    pub command: Option<Vec<String>>,
    pub max_turns: Option<u32>,
    pub pass_env: Vec<String>,
    /// Harness-specific settings of the workflow file, as JSON.
    pub options: Value,
}

/// A leaf's checkout: clone `repository` at `base_commit`; a leaf with a worktree works on
/// `branch`, pushed back when the leaf made commits.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CheckoutSpec {
    /// A URL or path git can clone and push to.
    pub repository: String,
    pub base_commit: String,
    pub branch: Option<String>,
    /// The project root's place inside the repository (where the leaf runs).
    pub subdir: String,
}

impl LeafSpec {
    /// The spec of `request`'s attempt `attempt`.
    pub fn of(
        run_id: &str,
        request: &LeafRequest,
        attempt: u32,
        harness: &str,
        harness_settings: HarnessSettings,
        checkout: Option<CheckoutSpec>,
    ) -> Self {
        let wf = &request.workflow;
        LeafSpec {
            run_id: run_id.to_owned(),
            session: request.session_id.clone(),
            attempt,
            workflow: WorkflowSpec {
                name: wf.name.clone(),
                harness: wf.harness.clone(),
                command: wf.command.clone(),
                max_turns: wf.max_turns,
                pass_env: wf.pass_env.clone(),
                options: serde_json::to_value(&wf.options).unwrap_or(Value::Null),
            },
            goal: request.goal.clone(),
            inputs: request.inputs.clone(),
            prompt: request.prompt.clone(),
            schema: (*request.schema).clone(),
            model: request.model.clone(),
            timeout_ms: u64::try_from(request.timeout.as_millis()).unwrap_or(u64::MAX),
            harness: harness.to_owned(),
            harness_settings,
            overrides: request.overrides.clone(),
            checkout,
            not_after_ms: None,
            withheld_env: request.withheld_env.to_vec(),
            canned: None,
        }
    }

    /// The leaf's timeout, no longer than the time left before `not_after_ms`.
    pub fn timeout(&self) -> Duration {
        let timeout = Duration::from_millis(self.timeout_ms);
        match self.time_left() {
            Some(left) => timeout.min(left),
            None => timeout,
        }
    }

    /// The time left before the coordinator gives up on the job; `None` without a deadline.
    pub fn time_left(&self) -> Option<Duration> {
        let now = chrono::Utc::now().timestamp_millis().max(0) as u64;
        self.not_after_ms.map(|at| Duration::from_millis(at.saturating_sub(now)))
    }

    /// The workflow as the harness reads it (its prompt is already rendered).
    pub fn workflow(&self) -> Result<Workflow, String> {
        let w = &self.workflow;
        let mut workflow = Workflow::new(&w.name, &w.harness, "", self.schema.clone())?;
        workflow.model = self.model.clone();
        workflow.timeout = self.timeout();
        workflow.command = w.command.clone();
        workflow.max_turns = w.max_turns;
        workflow.pass_env = w.pass_env.clone();
        workflow.options = match &w.options {
            Value::Null => toml::Table::new(),
            options => serde_json::from_value(options.clone()).map_err(|e| format!("workflow options: {e}"))?,
        };
        Ok(workflow)
    }

    /// The request leaf-exec runs: `workdir` is the checkout (or a scratch folder), `run_dir`
    /// a scratch folder of its own. It is not retried there: each attempt is a job of its own.
    pub fn request(
        &self,
        workflow: Arc<Workflow>,
        workdir: &std::path::Path,
        run_dir: &std::path::Path,
    ) -> LeafRequest {
        let mut overrides = match &self.overrides {
            Value::Object(map) => map.clone(),
            _ => serde_json::Map::new(),
        };
        overrides.insert("retries".into(), Value::from(0));
        LeafRequest {
            session_id: self.session.clone(),
            schema: Arc::new(self.schema.clone()),
            workflow,
            goal: self.goal.clone(),
            inputs: self.inputs.clone(),
            prompt: self.prompt.clone(),
            model: self.model.clone(),
            timeout: self.timeout(),
            run_dir: run_dir.to_owned(),
            project_root: workdir.to_owned(),
            overrides: Value::Object(overrides),
            workdir: workdir.to_owned(),
            worktree: None,
            withheld_env: Arc::from(self.withheld_env.clone()),
        }
    }
}
