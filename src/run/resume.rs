//! Getting a recorded run ready to continue: refuse what cannot be resumed, cut off the entries
//! that will be redone (a trailing `run_finished`, or everything from `--from SEQ`), and keep
//! what was cut in an archive beside the journal, never deleting it.

use crate::journal::entry::{EntryKind, RunStatus};
use crate::journal::run_dir;
use crate::journal::writer::JOURNAL_FILE;
use crate::journal::{JournalError, RecordedRun};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("run {0} already succeeded: nothing to resume (use `--from SEQ` or `--retry-failed` to redo part of it)")]
    Succeeded(String),
    #[error("run {0} is still running (process {1} holds it)")]
    StillRunning(String, String),
    #[error(
        "--from {0}: the journal has no entry {0} (it holds 0..{1}); entry 0 is the run header and cannot be redone"
    )]
    NoSuchEntry(u64, u64),
    #[error("archiving the journal: {0}")]
    Io(#[from] std::io::Error),
}

/// What `prepare` cut and where it went.
#[derive(Debug, Default)]
pub struct Prepared {
    pub archived: Option<PathBuf>,
    pub discarded: usize,
}

pub fn prepare(run_dir: &Path, from: Option<u64>, retry_failed: bool, recover: bool) -> Result<Prepared, ResumeError> {
    let run = RecordedRun::read_with(run_dir, recover)?;
    let id = run.header.run_id.clone();
    if run.finished.is_none() && run_dir::owner_alive(run_dir) {
        let pid = std::fs::read_to_string(run_dir.join("run.pid")).unwrap_or_default();
        return Err(ResumeError::StillRunning(id, pid.trim().to_owned()));
    }
    if run.status() == RunStatus::Succeeded && from.is_none() && !retry_failed {
        return Err(ResumeError::Succeeded(id));
    }
    // Where the kept prefix ends: at `--from`, else before a trailing `run_finished`.
    let cut_index = match from {
        Some(seq) => {
            let i = run.entries.iter().position(|e| e.seq == seq).filter(|&i| i > 0);
            Some(i.ok_or(ResumeError::NoSuchEntry(seq, run.next_seq()))?)
        }
        None => run.entries.iter().rposition(|e| e.kind == EntryKind::RunFinished),
    };
    let journal = run_dir.join(JOURNAL_FILE);
    let cut_at = match cut_index {
        Some(i) => run.offsets[i],
        None if run.valid_len < std::fs::metadata(&journal)?.len() => run.valid_len,
        None => return Ok(Prepared::default()),
    };
    let archived = archive(run_dir)?;
    let file = std::fs::OpenOptions::new().write(true).open(&journal)?;
    file.set_len(cut_at)?;
    file.sync_all()?;
    Ok(Prepared { archived: Some(archived), discarded: cut_index.map(|i| run.entries.len() - i).unwrap_or(0) })
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
