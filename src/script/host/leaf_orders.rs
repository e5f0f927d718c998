//! What a live leaf is given: the checks a spawn must pass before it takes a call index, the
//! harness and model it runs on, its schema and validator, its worktree, and whether a dry run
//! holds it back. The result is a [`SpawnOrder`] for the scheduler.
//!
//! It must not journal, and must not decide whether a call is replayed (the replay decision
//! does); it reads the workflow only for a leaf that may run.

use super::spawn_options::SpawnOptions;
use super::{Host, HostError};
use crate::leaf::session::LeafRequest;
use crate::leaf::worktree::WorktreePlan;
use crate::scheduler::SpawnOrder;
use crate::workflow;
use serde_json::Value;
use std::sync::Arc;

/// What [`Host::check_spawn`] found beyond the options themselves.
pub(super) struct CheckedSpawn {
    /// The validator of a per-call schema (`classify`'s), if given.
    pub override_validator: Option<Arc<jsonschema::Validator>>,
}

pub(super) enum LeafSetupError {
    /// The script asked for something impossible (unknown workflow): a script error.
    Script(String),
    /// This one leaf cannot run (harness missing, template error): a failed result.
    Leaf(String),
}

impl Host {
    /// Refuses a spawn the script got wrong before the call takes a call index or a session id,
    /// so the error leaves nothing behind: no journaled call, no session that never finishes.
    /// What depends only on the arguments is checked in every mode, so a replay throws where
    /// the run threw; the workflow itself only when the leaf may run (a replay needs no
    /// workflow file). What it checked is handed on to [`Host::prepare_leaf`].
    pub(super) fn check_spawn(
        &mut self,
        workflow_name: &str,
        opts: Value,
        schema: Option<Value>,
    ) -> Result<(SpawnOptions, CheckedSpawn), HostError> {
        let refuse = |msg: String| HostError::Script(format!("spawn_session: {msg}"));
        let options = SpawnOptions::parse(opts, schema, self.spawn_command).map_err(refuse)?;
        let override_validator =
            options.schema().map(|s| self.validator_for_override(s)).transpose().map_err(refuse)?;
        if self.runs_live() {
            let wf = self.workflows.get(workflow_name).map_err(|e| refuse(e.to_string()))?;
            self.validator_for_workflow(&wf).map_err(refuse)?;
        }
        Ok((options, CheckedSpawn { override_validator }))
    }

    fn validator_for_override(&mut self, schema: &Value) -> Result<Arc<jsonschema::Validator>, String> {
        let hash = crate::journal::call_key::short_hash(schema.to_string().as_bytes());
        if let Some(v) = self.validators.get(&hash) {
            return Ok(v.clone());
        }
        let v = Arc::new(workflow::compile_schema(schema)?);
        self.validators.insert(hash, v.clone());
        Ok(v)
    }

    fn validator_for_workflow(&mut self, wf: &workflow::Workflow) -> Result<Arc<jsonschema::Validator>, String> {
        if let Some(v) = self.validators.get(&wf.name) {
            return Ok(v.clone());
        }
        let v = Arc::new(workflow::compile_schema(&wf.schema)?);
        self.validators.insert(wf.name.clone(), v.clone());
        Ok(v)
    }

    /// Why a dry run does not run this leaf: it runs none (`no-leaves`), or this one could
    /// change something (a worktree, or a workflow that `writes`).
    pub(super) fn held_back_by_dry_run(&self, workflow_name: &str, options: &SpawnOptions) -> Option<String> {
        if !self.dry_run {
            return None;
        }
        if self.dry_run_no_leaves {
            return Some("not run: a dry run with --dry-run=no-leaves runs no leaf".into());
        }
        let wf = self.workflows.get(workflow_name).ok()?;
        match (options.worktree.unwrap_or(wf.worktree), wf.writes) {
            (true, _) => Some(format!(
                "not run: a dry run holds back leaves that write (workflow `{workflow_name}` works in a worktree)"
            )),
            (_, true) => Some(format!(
                "not run: a dry run holds back leaves that write (workflow `{workflow_name}` sets `writes = true`)"
            )),
            _ => None,
        }
    }

    /// The harness a leaf of `wf` runs on: the call's `harness` option, else `--leaf`'s, else
    /// the run's default (a scenario's mock), else the workflow's. True when it is not the
    /// workflow's own.
    fn harness_name(&self, wf: &workflow::Workflow, options: &SpawnOptions) -> (String, bool) {
        let chosen = options.harness.clone().or_else(|| self.leaf_overrides.get(&wf.name).map(|o| o.harness.clone()));
        let swapped = chosen.as_ref().is_some_and(|h| *h != wf.harness);
        (chosen.or_else(|| self.default_harness.clone()).unwrap_or_else(|| wf.harness.clone()), swapped)
    }

    /// Tells the harness of a leaf taken from the journal that it was, in spawn order.
    pub(super) fn note_replayed(&self, workflow_name: &str, options: &SpawnOptions) {
        let Ok(wf) = self.workflows.get(workflow_name) else { return };
        if let Some(harness) = self.harnesses.get(&self.harness_name(&wf, options).0) {
            self.scheduler.replayed(harness, workflow_name, options.goal(), options.inputs());
        }
    }

    /// The harness a leaf runs through and its local worktree: unchanged for a leaf that runs
    /// here; for one that runs as a job, the remote harness, which clones the repository
    /// where the job runs (no worktree here). A scenario's mock leaves run here unless
    /// `--executor` asked for an engine: their answers are then worked out here, in spawn
    /// order, and carried to the job, which gives them back (`coord run --demo --executor`).
    fn remote_or_local(
        &self,
        workflow: &str,
        harness: Arc<dyn crate::harness::Harness>,
        worktree: Option<WorktreePlan>,
    ) -> (Arc<dyn crate::harness::Harness>, Option<WorktreePlan>) {
        let remote =
            self.executors.remote_for(workflow).filter(|_| !harness.answers_in_process() || self.executors.forced());
        let Some(remote) = remote else {
            return (harness, worktree);
        };
        let checkout = harness.runs_in_workdir().then(|| {
            let repo = self.project_root.ancestors().find(|d| d.join(".git").exists());
            let subdir = repo.and_then(|r| self.project_root.strip_prefix(r).ok()).map(|p| p.display().to_string());
            crate::executor::remote_leaf::CheckoutPlan {
                branch: worktree.as_ref().map(|w| w.branch.clone()),
                subdir: subdir.unwrap_or_default(),
            }
        });
        (self.harnesses.wrap(remote.harness(harness, checkout)), None)
    }

    /// The scheduler's order for a live leaf.
    pub(super) fn prepare_leaf(
        &mut self,
        id: &str,
        workflow_name: &str,
        options: &SpawnOptions,
        checked: CheckedSpawn,
    ) -> Result<SpawnOrder, LeafSetupError> {
        let wf =
            self.workflows.get(workflow_name).map_err(|e| LeafSetupError::Script(format!("spawn_session: {e}")))?;
        let over = self.leaf_overrides.get(workflow_name).cloned();
        let (harness_name, swapped) = self.harness_name(&wf, options);
        let harness = self.harnesses.get(&harness_name).ok_or_else(|| {
            LeafSetupError::Leaf(format!(
                "harness `{harness_name}` (workflow `{workflow_name}`) is not available in this run; available: {}",
                self.harnesses.names().join(", ")
            ))
        })?;
        // The workflow's model was chosen for the workflow's harness: a harness swapped in
        // without a model of its own uses its configured default instead.
        let model = options.model.clone().or_else(|| over.and_then(|o| o.model)).or_else(|| {
            if swapped {
                None
            } else {
                wf.model.clone()
            }
        });
        let timeout = options.timeout.unwrap_or(wf.timeout);
        let (schema, validator) = match (options.schema(), checked.override_validator) {
            (Some(schema), Some(v)) => (Arc::new(schema.clone()), v),
            _ => (wf.schema.clone(), self.validator_for_workflow(&wf).map_err(LeafSetupError::Script)?),
        };
        let wants_worktree = options.worktree.unwrap_or(wf.worktree);
        let worktree = (wants_worktree && harness.runs_in_workdir()).then(|| {
            let mut plan =
                WorktreePlan::for_session(&self.run_dir, &self.run_id, id, &self.project_root, self.keep_worktrees);
            if let Some(branch) = &options.branch {
                plan.branch = branch.clone();
            }
            plan
        });
        let workdir = worktree.as_ref().map(|w| w.workdir.clone()).unwrap_or_else(|| self.project_root.clone());
        let (harness, worktree) = self.remote_or_local(&wf.name, harness, worktree);
        Ok(SpawnOrder {
            request: LeafRequest {
                session_id: id.to_owned(),
                workflow: wf,
                goal: options.goal().to_owned(),
                inputs: options.inputs().clone(),
                // Rendered by the scheduler's dispatcher, off the script thread.
                prompt: String::new(),
                schema,
                model,
                timeout,
                run_dir: self.run_dir.clone(),
                project_root: self.project_root.clone(),
                overrides: options.harness_overrides(),
                workdir,
                worktree,
                withheld_env: self.withheld_env.clone(),
            },
            harness,
            validator,
        })
    }
}
