//! `coord replay` (exact, or what-if with `--script`) and `coord resume`: both re-run a
//! recorded run's script with the journal answering the host calls.

use super::run_command::finish;
use super::{exit_code, ReplayArgs, ResumeArgs};
use crate::journal::run_dir::RunStore;
use crate::journal::{AnswerIndex, RecordedRun};
use crate::run::{self, Recording, RunPlan};
use crate::script::recorded_calls::ReplayMode;
use crate::views::console::{stderrln, stdout, stdoutln};
use crate::views::{run_summary, trace, what_if};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;

fn locate(run: &str, runs_dir: Option<&std::path::Path>) -> Result<PathBuf, u8> {
    RunStore::locate(runs_dir).resolve(run).map_err(|e| {
        stderrln!("error: {e}");
        exit_code::USAGE
    })
}

fn read(dir: &std::path::Path, recover: bool) -> Result<AnswerIndex, u8> {
    AnswerIndex::read(dir, recover).map_err(|e| {
        stderrln!("error: {e}");
        exit_code::DIVERGED
    })
}

fn recorded_script(rec: &AnswerIndex) -> PathBuf {
    run::recorded_path(&rec.header.script, &rec.header)
}

pub fn replay(args: &ReplayArgs, runtime: &tokio::runtime::Handle, interrupt: Arc<crate::scheduler::Interrupt>) -> u8 {
    let dir = match locate(&args.run, args.runs_dir.as_deref()) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let what_if = args.script.is_some();
    // What-if compares effects entry by entry, so it reads the whole journal once for them;
    // answering calls only needs the index.
    let recorded_effects = if what_if {
        match RecordedRun::read_with(&dir, args.recover) {
            Ok(run) => Some(what_if::recorded_effects(&run)),
            Err(e) => {
                stderrln!("error: {e}");
                return exit_code::DIVERGED;
            }
        }
    } else {
        None
    };
    // Read on another thread while the script runs (a replay never acts, so it may start
    // before the whole journal is checked); its warnings come with the outcome.
    let recorded = match AnswerIndex::read_streaming(&dir, args.recover, crate::script::detached_value::PREPARE) {
        Ok(r) => r,
        Err(e) => {
            stderrln!("error: {e}");
            return exit_code::DIVERGED;
        }
    };
    let mut plan = RunPlan::new(args.script.clone().unwrap_or_else(|| recorded_script(&recorded)));
    plan.recording = Recording::From {
        run_dir: dir.clone(),
        mode: if what_if { ReplayMode::WhatIf } else { ReplayMode::Exact },
        recover: args.recover,
        preloaded: Some(std::sync::Arc::new(recorded)),
    };
    plan.process_exits_after = true;
    if let Some(n) = args.max_operations {
        plan.limits.max_operations = n;
    }
    let outcome = run::execute(plan, runtime, interrupt.clone());
    if !what_if {
        if let (Ok(o), true) = (&outcome, args.trace) {
            if o.failure.is_none() {
                if let Ok(rec) = RecordedRun::read(&dir) {
                    stdout!("{}", trace::render_trace(&rec));
                }
            }
        }
        return finish(outcome, args.json, &interrupt);
    }

    // What-if: report what changed instead of the usual summary.
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => return finish(Err(e), args.json, &interrupt),
    };
    let changes = what_if::effect_changes(
        recorded_effects.as_ref().expect("what-if computed the recorded effects"),
        &what_if::new_effects(&outcome.effects),
    );
    let divergence = outcome.divergence.as_ref();
    let script = args.script.as_ref().expect("what-if has a script").display().to_string();
    if args.json {
        let mut v = run_summary::outcome_json(&outcome);
        v["what_if"] = json!({
            "script": script,
            "changes": what_if::changes_json(&changes),
            "first_divergence": divergence.map(|d| json!({
                "index": d.index,
                "recorded": d.recorded.as_ref().map(|e| json!({"fn": e.function, "args": e.args, "pos": e.pos})),
                "now": {"fn": d.now_function, "args": d.now_args, "pos": d.now_site.pos_string()},
            })),
            "not_recorded": outcome.unrecorded.iter().map(|u| json!({
                "index": u.index, "fn": u.function, "args": u.args, "pos": u.site.pos_string(),
            })).collect::<Vec<_>>(),
        });
        stdoutln!("{}", crate::redaction::process().mask_json_text(&v.to_string()));
    } else {
        stdoutln!("what-if: {script} against run {}", outcome.run_id);
        match divergence {
            None => stdoutln!("\nThe edited script asks for exactly what the run recorded."),
            Some(d) => {
                let at =
                    d.now_site.pos_string().map(|p| format!("{}:{p}", d.now_site.source.as_deref().unwrap_or(&script)));
                stdoutln!(
                    "\nFirst divergence at call {}{}:",
                    d.index,
                    at.map(|a| format!(" ({a})")).unwrap_or_default()
                );
                for line in run::describe_divergence(d).lines() {
                    stdoutln!("  {line}");
                }
            }
        }
        if changes.is_empty() {
            stdoutln!("\nNo effect changes.");
        } else {
            stdoutln!("\nEffects that change:");
            for (target, before, after) in &changes {
                stdoutln!("  {target}: {before} -> {after}");
            }
        }
        if !outcome.unrecorded.is_empty() {
            stdoutln!("\nCalls with no recorded answer ({}), answered `not_recorded`:", outcome.unrecorded.len());
            for u in &outcome.unrecorded {
                let pos = u.site.pos_string().unwrap_or_default();
                stdoutln!("  call {} {} {} ({script}:{pos})", u.index, u.function, compact(&u.args));
            }
        }
        stdoutln!("\nNothing ran and nothing was spent.");
    }
    match outcome.failure {
        None => exit_code::SUCCESS,
        Some(_) => finish(Ok(outcome), true, &interrupt).max(exit_code::RUN_FAILED),
    }
}

fn compact(v: &serde_json::Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(100) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

pub fn resume(args: &ResumeArgs, runtime: &tokio::runtime::Handle, interrupt: Arc<crate::scheduler::Interrupt>) -> u8 {
    let dir = match locate(&args.run, args.runs_dir.as_deref()) {
        Ok(d) => d,
        Err(code) => return code,
    };
    // Taken before the journal is even read: of two resumes started together, one continues
    // the run and the other stops here, having touched nothing.
    let owner = match take_owner(&dir) {
        Ok(lock) => lock,
        Err(code) => return code,
    };
    if args.from.is_some() || args.retry_failed {
        return redo(args, dir, owner, runtime, interrupt);
    }
    match run::resume::prepare(&dir, args.recover) {
        Ok(p) => {
            for w in &p.warnings {
                stderrln!("warning: {w}");
            }
            if let Some(a) = p.archived {
                stderrln!("resume: kept the previous journal as {} ({} entries redone)", a.display(), p.discarded);
            }
        }
        Err(e) => {
            stderrln!("error: {e}");
            return match e {
                run::resume::ResumeError::Journal(_) => exit_code::DIVERGED,
                _ => exit_code::USAGE,
            };
        }
    }
    let recorded = match read(&dir, args.recover) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let Some(mut plan) = checked_plan(&recorded) else { return exit_code::USAGE };
    plan.recording = Recording::From {
        run_dir: dir,
        mode: ReplayMode::Resume,
        recover: args.recover,
        preloaded: Some(std::sync::Arc::new(recorded)),
    };
    plan.owner = Some(owner);
    execute_resume(plan, args, runtime, interrupt)
}

fn take_owner(dir: &std::path::Path) -> Result<Arc<crate::journal::run_dir::OwnerLock>, u8> {
    match crate::journal::run_dir::OwnerLock::take(dir) {
        Ok(lock) => Ok(Arc::new(lock)),
        Err(e @ crate::journal::run_dir::OwnerLockError::Held { .. }) => {
            stderrln!("coord: {e}; nothing was touched");
            Err(exit_code::LOCKED)
        }
        Err(e) => {
            stderrln!("error: {e}");
            Err(exit_code::RUN_FAILED)
        }
    }
}

/// `--from` / `--retry-failed`: a new run, linked to `parent_dir`'s, that reuses what the parent
/// recorded up to the branch point. The parent's owner lock is held only while its journal is
/// read (it must not be growing), and its journal is never written.
fn redo(
    args: &ResumeArgs,
    parent_dir: PathBuf,
    parent_owner: Arc<crate::journal::run_dir::OwnerLock>,
    runtime: &tokio::runtime::Handle,
    interrupt: Arc<crate::scheduler::Interrupt>,
) -> u8 {
    let recorded = match read(&parent_dir, args.recover) {
        Ok(r) => r,
        Err(code) => return code,
    };
    drop(parent_owner);
    let link = match run::resume::branch_point(&recorded, args.from.as_deref(), args.retry_failed) {
        Ok(link) => link,
        Err(e) => {
            stderrln!("error: {e}");
            return exit_code::USAGE;
        }
    };
    let Some(mut plan) = checked_plan(&recorded) else { return exit_code::USAGE };
    stderrln!("resume: redoing run {link} as a new run; its journal is left as it is");
    // The redo lives beside its parent.
    if let Some(root) = parent_dir.parent() {
        plan.runs = RunStore { root: root.to_owned() };
    }
    plan.recording = Recording::Branch { parent_dir, link, preloaded: Some(Arc::new(recorded)) };
    execute_resume(plan, args, runtime, interrupt)
}

/// The plan of a continued run, once the pre-run check passed (it printed why not, if not).
fn checked_plan(recorded: &AnswerIndex) -> Option<RunPlan> {
    let choice = crate::check::run_check::HarnessChoice {
        overrides: recorded
            .header
            .options
            .get("leaf")
            .and_then(serde_json::Value::as_object)
            .map(|leaf| {
                leaf.iter()
                    .filter_map(|(w, spec)| Some((w.clone(), spec.as_str()?.split(':').next()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default(),
        scenario: recorded.header.scenario.is_some(),
    };
    if super::run_command::refuse_unless_checked(&recorded_script(recorded), &choice).is_some() {
        return None;
    }
    Some(RunPlan::new(recorded_script(recorded)))
}

fn execute_resume(
    mut plan: RunPlan,
    args: &ResumeArgs,
    runtime: &tokio::runtime::Handle,
    interrupt: Arc<crate::scheduler::Interrupt>,
) -> u8 {
    plan.max_parallel = usize::from(args.max_parallel);
    plan.stdout_is_json = args.json;
    plan.process_exits_after = true;
    if let Some(n) = args.max_operations {
        plan.limits.max_operations = n;
    }
    let outcome = run::execute(plan, runtime, interrupt.clone());
    finish(outcome, args.json, &interrupt)
}
