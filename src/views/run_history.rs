//! Pipelines' past runs, read back from the run store: a run belongs to the pipeline its
//! journal header names.
//!
//! Owns finding each pipeline's latest run and saying how it stands. It must not write to the
//! run store.

use crate::journal::entry::{Entry, Line, RunStatus};
use crate::journal::run_dir::{self, RunStore};
use crate::journal::RecordedRun;
use indexmap::IndexMap;
use std::io::BufRead;
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastRun {
    pub run_id: String,
    pub started_at: String,
    /// `succeeded`, `failed`, `interrupted`, `running`, or `unfinished` (its process died
    /// before the journal said how it ended; `coord resume` finishes it).
    pub status: String,
}

/// The latest run of each of `names` that has one.
pub fn last_runs(store: &RunStore, names: &[&str]) -> IndexMap<String, LastRun> {
    let mut found = IndexMap::new();
    for (_, dir) in store.list().into_iter().rev() {
        if found.len() == names.len() {
            break;
        }
        let Some(header) = read_header(&dir) else {
            continue;
        };
        let Some(pipeline) = header.pipeline.filter(|p| names.contains(&p.as_str()) && !found.contains_key(p)) else {
            continue;
        };
        let status = match RecordedRun::read(&dir) {
            Ok(run) => match run.status() {
                RunStatus::Running if !run_dir::owner_alive(&dir) => "unfinished".to_owned(),
                status => status.as_str().to_owned(),
            },
            Err(_) => "unreadable".to_owned(),
        };
        found.insert(pipeline, LastRun { run_id: header.run_id, started_at: header.started_at, status });
    }
    found
}

/// The header on a journal's first line, without reading the rest.
fn read_header(run_dir: &Path) -> Option<crate::journal::entry::RunHeader> {
    let file = std::fs::File::open(run_dir.join(crate::journal::writer::JOURNAL_FILE)).ok()?;
    let mut line = String::new();
    std::io::BufReader::new(file).read_line(&mut line).ok()?;
    match serde_json::from_str::<Line>(&line).ok()?.entry {
        Entry::RunStarted { header } => Some(header),
        _ => None,
    }
}
