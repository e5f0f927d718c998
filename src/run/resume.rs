//! Getting a recorded run ready to continue, or to be redone.
//!
//! A resume continues the run in its own journal: it refuses what cannot be resumed and cuts off
//! a trailing `run_finished` (kept in an archive beside the journal, never deleted). A redo
//! (`--from`, `--retry-failed`) is a new run linked to its parent: this module works out where it
//! branches ([`branch_point`]); the parent's journal is never modified.

use crate::journal::entry::{EntryKind, ParentRun, RunStatus};
use crate::journal::run_dir;
use crate::journal::writer::JOURNAL_FILE;
use crate::journal::{AnswerIndex, JournalError, RecordedRun};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(
        "run {0} already succeeded: nothing to resume (`--from s7` or `--retry-failed` redo part of it as a new run)"
    )]
    Succeeded(String),
    #[error("run {0} is still running (process {1} holds it)")]
    StillRunning(String, String),
    #[error("--from {0}: {1}")]
    NoSuchPoint(String, String),
    #[error("--retry-failed: every leaf of run {0} succeeded; nothing to retry")]
    NothingFailed(String),
    #[error("archiving the journal: {0}")]
    Io(#[from] std::io::Error),
}

/// What `prepare` cut and where it went.
#[derive(Debug, Default)]
pub struct Prepared {
    pub archived: Option<PathBuf>,
    pub discarded: usize,
    /// What reading the journal met (a dropped torn tail), as replay reports it.
    pub warnings: Vec<String>,
}

/// Readies an interrupted or failed run to continue in its own journal.
pub fn prepare(run_dir: &Path, recover: bool) -> Result<Prepared, ResumeError> {
    let run = RecordedRun::read_with(run_dir, recover)?;
    let id = run.header.run_id.clone();
    if run.finished.is_none() && run_dir::owner_alive(run_dir) {
        let pid = std::fs::read_to_string(run_dir.join("run.pid")).unwrap_or_default();
        return Err(ResumeError::StillRunning(id, pid.trim().to_owned()));
    }
    if run.status() == RunStatus::Succeeded {
        return Err(ResumeError::Succeeded(id));
    }
    // The kept prefix ends before a trailing `run_finished`, or where the valid prefix ends.
    let cut_index = run.entries.iter().rposition(|l| l.entry.kind() == EntryKind::RunFinished);
    let journal = run_dir.join(JOURNAL_FILE);
    let cut_at = match cut_index {
        Some(i) => run.offsets[i],
        None if run.valid_len < std::fs::metadata(&journal)?.len() => run.valid_len,
        None => return Ok(Prepared { warnings: run.warnings, ..Prepared::default() }),
    };
    let archived = archive(run_dir)?;
    let file = std::fs::OpenOptions::new().write(true).open(&journal)?;
    file.set_len(cut_at)?;
    file.sync_all()?;
    let discarded = cut_index.map(|i| run.entries.len() - i).unwrap_or(0);
    Ok(Prepared { archived: Some(archived), discarded, warnings: run.warnings })
}

/// The plan that continues the run in `run_dir` in its own journal, which `owner` holds:
/// [`prepare`]s the journal, reads it, and answers from it. The caller sets what is its own
/// (parallelism, limits, `--park-after`) and checks the script before it runs.
pub fn continue_plan(
    run_dir: &Path,
    recover: bool,
    owner: std::sync::Arc<run_dir::OwnerLock>,
) -> Result<(super::RunPlan, Prepared), ResumeError> {
    let prepared = prepare(run_dir, recover)?;
    let recorded = AnswerIndex::read(run_dir, recover)?;
    let mut plan = super::RunPlan::new(super::recorded_path(&recorded.header.script, &recorded.header));
    plan.recording = super::Recording::From {
        run_dir: run_dir.to_owned(),
        mode: crate::script::recorded_calls::ReplayMode::Resume,
        recover,
        preloaded: Some(std::sync::Arc::new(recorded)),
    };
    plan.owner = Some(owner);
    Ok((plan, prepared))
}

/// Where a redo of `parent` branches: `--from` a session (`s7`, its spawn) or a call index,
/// and/or `--retry-failed` (the parent's leaves that did not end `ok` run again).
pub fn branch_point(parent: &AnswerIndex, from: Option<&str>, retry_failed: bool) -> Result<ParentRun, ResumeError> {
    let run_id = parent.header.run_id.clone();
    let mut link = ParentRun { run_id: run_id.clone(), ..Default::default() };
    if let Some(from) = from {
        let calls = parent.calls();
        let (call, session) = match from.parse::<u64>() {
            Ok(n) if (n as usize) < calls.len() => {
                let session = calls.get(n as usize).and_then(|c| parent.spawned_session(c)).map(str::to_owned);
                (n, session)
            }
            Ok(n) => {
                let why =
                    format!("run {run_id} made calls 0 to {}; call {n} is not one of them", calls.len().max(1) - 1);
                return Err(ResumeError::NoSuchPoint(from.into(), why));
            }
            Err(_) => {
                let spawn = calls.iter().position(|c| parent.spawned_session(c) == Some(from));
                let Some(call) = spawn else {
                    let why = format!("run {run_id} spawned no session `{from}` (`coord show {run_id}` lists them)");
                    return Err(ResumeError::NoSuchPoint(from.into(), why));
                };
                (call as u64, Some(from.to_owned()))
            }
        };
        link.from_call = Some(call);
        link.from_session = session;
    }
    if retry_failed {
        link.retried = parent.failed_sessions();
        if link.retried.is_empty() && from.is_none() {
            return Err(ResumeError::NothingFailed(run_id));
        }
    }
    Ok(link)
}

/// Copies the journal to `journal.<n>.jsonl`, the first free n.
fn archive(run_dir: &Path) -> std::io::Result<PathBuf> {
    for n in 1u32.. {
        let target = run_dir.join(format!("journal.{n}.jsonl"));
        if !target.exists() {
            std::fs::copy(run_dir.join(JOURNAL_FILE), &target)?;
            return Ok(target);
        }
    }
    unreachable!("some archive number is free")
}
