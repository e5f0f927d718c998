//! Phase two of a run: open the recorded run it answers from, if any (replay, what-if,
//! resume, redo), and carry over the options that run was started with.
//!
//! It owns the meaning of a run's recorded options (`RecordedOptions`) both ways: what a run
//! writes to its header and what a continued run takes back. It must not write anything.

use super::{Recording, RunPlan, SetupError};
use crate::journal::{AnswerIndex, RecordedOptions};
use crate::script::host::LeafOverride;
use crate::script::recorded_calls::ReplayMode;
use std::sync::Arc;

impl Recording {
    /// Replay and what-if answer every read from the journal and never act: they need no world,
    /// write no journal and take no hold on the run.
    pub(super) fn is_offline(&self) -> bool {
        matches!(self, Recording::From { mode: ReplayMode::Exact | ReplayMode::WhatIf, .. })
    }
}

/// The recorded run's journal, when `plan` answers from one. A continued run keeps the options
/// it was started with: they are applied to `plan`.
pub(super) fn open_recording(plan: &mut RunPlan) -> Result<Option<AnswerIndex>, SetupError> {
    // The preloaded journal is taken out of the plan, so the only reference is ours and it is
    // moved, not copied, into the recorded calls.
    let (dir, recover, preloaded) = match &mut plan.recording {
        Recording::Fresh => return Ok(None),
        Recording::From { run_dir, recover, preloaded, .. } => (run_dir.clone(), *recover, preloaded.take()),
        Recording::Branch { parent_dir, preloaded, .. } => (parent_dir.clone(), false, preloaded.take()),
    };
    let journal = match preloaded.map(Arc::try_unwrap) {
        Some(Ok(journal)) => journal,
        _ => AnswerIndex::read(&dir, recover).map_err(|e| SetupError::Journal(Box::new(e)))?,
    };
    apply_recorded_options(plan, &RecordedOptions::from_header(&journal.header.options));
    Ok(Some(journal))
}

/// Options given now win over recorded ones; a recorded dry run stays a dry run.
fn apply_recorded_options(plan: &mut RunPlan, options: &RecordedOptions) {
    for (workflow, spec) in &options.leaf {
        plan.leaf_overrides.entry(workflow.clone()).or_insert_with(|| LeafOverride::from_spec(spec));
    }
    plan.dry_run |= options.dry_run;
    plan.dry_run_no_leaves |= options.dry_run_no_leaves;
    if plan.executor.is_none() {
        plan.executor = options.executor.clone();
    }
}

impl RunPlan {
    /// The options this run's header records, for a resume or a redo to keep.
    pub(super) fn recorded_options(&self) -> RecordedOptions {
        RecordedOptions {
            leaf: self.leaf_overrides.iter().map(|(workflow, o)| (workflow.clone(), o.spec())).collect(),
            dry_run: self.dry_run,
            dry_run_no_leaves: self.dry_run_no_leaves,
            max_parallel: Some(self.max_parallel as u64),
            executor: self.executor.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::apply_recorded_options;
    use crate::journal::RecordedOptions;
    use crate::run::RunPlan;
    use crate::script::host::LeafOverride;

    #[test]
    fn recorded_options_come_back_as_they_were_given() {
        let mut plan = RunPlan::new("c.rhai".into());
        plan.leaf_overrides
            .insert("review".into(), LeafOverride { harness: "codex".into(), model: Some("gpt-5".into()) });
        plan.leaf_overrides.insert("fix".into(), LeafOverride { harness: "mock".into(), model: None });
        plan.dry_run = true;
        let recorded = plan.recorded_options();
        assert_eq!(
            recorded.to_header().to_string(),
            r#"{"leaf":{"review":"codex:gpt-5","fix":"mock"},"dry_run":true,"dry_run_no_leaves":false,"max_parallel":8}"#
        );

        let mut resumed = RunPlan::new("c.rhai".into());
        resumed.leaf_overrides.insert("fix".into(), LeafOverride { harness: "claude-code".into(), model: None });
        apply_recorded_options(&mut resumed, &RecordedOptions::from_header(&recorded.to_header()));
        assert!(resumed.dry_run && !resumed.dry_run_no_leaves);
        assert_eq!(resumed.leaf_overrides["review"], plan.leaf_overrides["review"]);
        assert_eq!(resumed.leaf_overrides["fix"].harness, "claude-code", "an option given now wins");
    }
}
