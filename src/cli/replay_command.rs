//! `coord replay` (exact, or what-if with `--script`) and `coord resume`: both re-run a
//! recorded run's script with the journal answering the host calls.

use super::cli_error::CliError;
use super::flag_groups::RunStoreArgs;
use super::run_command::finish;
use super::{ReplayArgs, ResumeArgs};
use crate::journal::run_dir::{OwnerLock, RunStore};
use crate::journal::{AnswerIndex, RecordedRun};
use crate::run::{self, Recording, RunPlan};
use crate::scheduler::Interrupt;
use crate::script::recorded_calls::ReplayMode;
use crate::views::console::{stderrln, stdout, stdoutln};
use crate::views::{trace, what_if};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn locate(run: &str, store: &RunStoreArgs) -> Result<PathBuf, CliError> {
    store.store().resolve(run).map_err(|e| CliError::Usage(e.to_string()))
}

fn read(dir: &Path, recover: bool) -> Result<AnswerIndex, CliError> {
    AnswerIndex::read(dir, recover).map_err(|e| CliError::Journal(e.to_string()))
}

fn recorded_script(rec: &AnswerIndex) -> PathBuf {
    run::recorded_path(&rec.header.script, &rec.header)
}

pub fn replay(args: &ReplayArgs, runtime: &tokio::runtime::Handle, interrupt: Arc<Interrupt>) -> Result<(), CliError> {
    let dir = locate(&args.run, &args.store)?;
    match &args.script {
        None => exact_replay(args, dir, runtime, interrupt),
        Some(edited) => what_if_replay(args, edited, dir, runtime, interrupt),
    }
}

/// The plan of a replay: the journal, read on another thread while the script runs (a replay
/// never acts, so it may start before the whole journal is checked; its warnings come with the
/// outcome), answers every call.
fn replay_plan(args: &ReplayArgs, dir: PathBuf, mode: ReplayMode) -> Result<RunPlan, CliError> {
    let recorded = AnswerIndex::read_streaming(&dir, args.recover, crate::script::host::PARSED_AHEAD)
        .map_err(|e| CliError::Journal(e.to_string()))?;
    let mut plan = RunPlan::new(args.script.clone().unwrap_or_else(|| recorded_script(&recorded)));
    plan.recording = Recording::From { run_dir: dir, mode, recover: args.recover, preloaded: Some(Arc::new(recorded)) };
    plan.process_exits_after = true;
    args.limits.apply(&mut plan.limits);
    Ok(plan)
}

/// `coord replay RUN`: the run again, every call answered from its journal.
fn exact_replay(
    args: &ReplayArgs,
    dir: PathBuf,
    runtime: &tokio::runtime::Handle,
    interrupt: Arc<Interrupt>,
) -> Result<(), CliError> {
    let plan = replay_plan(args, dir.clone(), ReplayMode::Exact)?;
    let outcome = run::execute(plan, runtime, interrupt.clone());
    if let (Ok(o), true) = (&outcome, args.trace) {
        if o.failure.is_none() {
            if let Ok(rec) = RecordedRun::read(&dir) {
                stdout!("{}", trace::render_trace(&rec));
            }
        }
    }
    finish(outcome, args.output.json, &interrupt)
}

/// `coord replay RUN --script EDITED`: what the edited script would have done in the recorded
/// run, reported instead of the usual summary.
fn what_if_replay(
    args: &ReplayArgs,
    edited: &Path,
    dir: PathBuf,
    runtime: &tokio::runtime::Handle,
    interrupt: Arc<Interrupt>,
) -> Result<(), CliError> {
    // What-if compares effects entry by entry, so it reads the whole journal once for them;
    // answering calls only needs the index.
    let recorded_effects = RecordedRun::read_with(&dir, args.recover)
        .map(|run| what_if::recorded_effects(&run))
        .map_err(|e| CliError::Journal(e.to_string()))?;
    let plan = replay_plan(args, dir, ReplayMode::WhatIf)?;
    let outcome = match run::execute(plan, runtime, interrupt.clone()) {
        Ok(o) => o,
        Err(e) => return finish(Err(e), args.output.json, &interrupt),
    };
    let changes = what_if::effect_changes(&recorded_effects, &what_if::new_effects(&outcome.effects));
    let script = edited.display().to_string();
    let report = what_if::WhatIfReport { script: &script, changes: &changes, outcome: &outcome };
    if args.output.json {
        let json = what_if::report_json(&report).to_string();
        stdoutln!("{}", crate::redaction::process().mask_json_text(&json));
    } else {
        stdout!("{}", what_if::report_text(&report));
    }
    match outcome.failure {
        None => Ok(()),
        // The run's own object and error follow the report, as an exact replay's would.
        Some(_) => finish(Ok(outcome), true, &interrupt),
    }
}

pub fn resume(args: &ResumeArgs, runtime: &tokio::runtime::Handle, interrupt: Arc<Interrupt>) -> Result<(), CliError> {
    let dir = locate(&args.run, &args.store)?;
    // Taken before the journal is even read: of two resumes started together, one continues
    // the run and the other stops here, having touched nothing.
    let owner = Arc::new(OwnerLock::take(&dir)?);
    if args.from.is_some() || args.retry_failed {
        return redo(args, dir, owner, runtime, interrupt);
    }
    let (plan, prepared) = run::resume::continue_plan(&dir, args.recover, owner).map_err(|e| match e {
        run::resume::ResumeError::Journal(_) => CliError::Journal(e.to_string()),
        _ => CliError::Usage(e.to_string()),
    })?;
    for w in &prepared.warnings {
        stderrln!("warning: {w}");
    }
    if let Some(a) = prepared.archived {
        stderrln!("resume: kept the previous journal as {} ({} entries redone)", a.display(), prepared.discarded);
    }
    refuse_unless_checked(&plan)?;
    execute_resume(plan, args, runtime, interrupt)
}

/// `--from` / `--retry-failed`: a new run, linked to `parent_dir`'s, that reuses what the parent
/// recorded up to the branch point. The parent's owner lock is held only while its journal is
/// read (it must not be growing), and its journal is never written.
fn redo(
    args: &ResumeArgs,
    parent_dir: PathBuf,
    parent_owner: Arc<OwnerLock>,
    runtime: &tokio::runtime::Handle,
    interrupt: Arc<Interrupt>,
) -> Result<(), CliError> {
    let recorded = read(&parent_dir, args.recover)?;
    drop(parent_owner);
    let link = run::resume::branch_point(&recorded, args.from.as_deref(), args.retry_failed)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let mut plan = RunPlan::new(recorded_script(&recorded));
    refuse_unless_checked_recorded(&recorded)?;
    stderrln!("resume: redoing run {link} as a new run; its journal is left as it is");
    // The redo lives beside its parent.
    if let Some(root) = parent_dir.parent() {
        plan.runs = RunStore { root: root.to_owned() };
    }
    plan.recording = Recording::Branch { parent_dir, link, preloaded: Some(Arc::new(recorded)) };
    execute_resume(plan, args, runtime, interrupt)
}

/// The pre-run check of a continued run: the recorded script with the recorded harness choice.
fn refuse_unless_checked_recorded(recorded: &AnswerIndex) -> Result<(), CliError> {
    let choice = crate::check::run_check::HarnessChoice::of_recorded(recorded);
    super::run_command::refuse_unless_checked(&recorded_script(recorded), &choice)
}

fn refuse_unless_checked(plan: &RunPlan) -> Result<(), CliError> {
    match &plan.recording {
        Recording::From { preloaded: Some(recorded), .. } => refuse_unless_checked_recorded(recorded),
        _ => Ok(()),
    }
}

fn execute_resume(
    mut plan: RunPlan,
    args: &ResumeArgs,
    runtime: &tokio::runtime::Handle,
    interrupt: Arc<Interrupt>,
) -> Result<(), CliError> {
    plan.max_parallel = args.parallelism.leaves_at_once();
    plan.executor = args.executor.executor.clone();
    plan.stdout_is_json = args.output.json;
    plan.process_exits_after = true;
    plan.park_after = args.park_after;
    args.limits.apply(&mut plan.limits);
    let outcome = run::execute(plan, runtime, interrupt.clone());
    finish(outcome, args.output.json, &interrupt)
}
