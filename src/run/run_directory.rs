//! Phase four of a run: open its run directory and journal. A fresh run and a redo create a
//! directory and start a journal with its header; a resume appends to the journal it
//! continues; a replay and a what-if write nothing (their journal is kept in memory). A run
//! that appends holds the directory's owner lock.
//!
//! It owns the run header's contents; it must not run the script.

use super::sources::Sources;
use super::world_choice::ChosenWorld;
use super::{now_rfc3339, Recording, RunPlan, SetupError};
use crate::journal::entry::{Entry, ParentRun, RunHeader, JOURNAL_VERSION};
use crate::journal::run_dir::{self, OwnerLock};
use crate::journal::{AnswerIndex, JournalWriter};
use crate::scheduler::run_clock::RunClock;
use crate::script::recorded_calls::{RecordedCalls, ReplayMode};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

/// Where a run journals, and what it answers from.
pub(super) struct RunDirectory {
    pub run_id: String,
    pub run_dir: PathBuf,
    pub journal: JournalWriter,
    pub recorded: Option<RecordedCalls>,
    /// The hold on the run directory while this run appends to its journal; released once
    /// the journal's last entry is written.
    pub owner: Option<Arc<OwnerLock>>,
    pub log: Option<std::fs::File>,
    /// A replay or a what-if: nothing is written, nothing finished.
    pub offline: bool,
    /// The run's clock for its leaves' timeline: from zero, or for a resume from the run's
    /// first start.
    pub clock: RunClock,
}

/// Opens the run directory `plan` asks for (see the module's header).
pub(super) fn open_run_directory(
    plan: &mut RunPlan,
    sources: &Sources,
    world: &ChosenWorld,
    recorded: Option<AnswerIndex>,
) -> Result<RunDirectory, SetupError> {
    let offline = plan.recording.is_offline();
    let mut owner = plan.owner.take();
    let mut clock = RunClock::default();
    let (run_id, run_dir, journal, recorded) = match (&plan.recording, recorded) {
        (Recording::From { run_dir, mode, .. }, Some(rec)) => {
            if !offline && owner.is_none() {
                owner = Some(Arc::new(OwnerLock::take(run_dir)?));
            }
            let journal = if offline {
                JournalWriter::in_memory()
            } else {
                JournalWriter::append_to(run_dir, rec.valid_len, rec.next_seq)?
            };
            let run_id = rec.header.run_id.clone();
            clock = RunClock::already_at(time_since(&rec.header.started_at));
            (run_id, run_dir.clone(), journal, Some(RecordedCalls::new(rec, *mode)))
        }
        (Recording::Branch { parent_dir, link, .. }, Some(rec)) => {
            let (id, dir) = plan.runs.create_run(&sources.coordinator)?;
            owner = Some(Arc::new(OwnerLock::take(&dir)?));
            // The parent's blobs (large outputs, transcripts) are this run's too.
            run_dir::share_blobs(parent_dir, &dir)?;
            let started = Entry::run_started(run_header(plan, sources, world, &id, Some(link.clone())));
            let journal = JournalWriter::start(&dir, started)?;
            (id, dir, journal, Some(branch_calls(rec, link)))
        }
        _ => {
            let (id, dir) = plan.runs.create_run(&sources.coordinator)?;
            if !plan.journal_in_memory {
                owner = Some(Arc::new(OwnerLock::take(&dir)?));
            }
            let started = Entry::run_started(run_header(plan, sources, world, &id, None));
            let journal = if plan.journal_in_memory {
                let mut journal = JournalWriter::in_memory();
                journal.append(started)?;
                journal
            } else {
                JournalWriter::start(&dir, started)?
            };
            (id, dir, journal, None)
        }
    };
    if !offline {
        run_dir::write_pid(&run_dir)?;
    }
    let log = match offline {
        true => None,
        false => std::fs::OpenOptions::new().create(true).append(true).open(run_dir.join("run.log")).ok(),
    };
    Ok(RunDirectory { run_id, run_dir, journal, recorded, owner, log, offline, clock })
}

/// How long ago `started_at` (a header's RFC 3339 time) was; zero when unreadable or ahead.
fn time_since(started_at: &str) -> std::time::Duration {
    chrono::DateTime::parse_from_rfc3339(started_at)
        .ok()
        .and_then(|start| (chrono::Utc::now() - start.with_timezone(&chrono::Utc)).to_std().ok())
        .unwrap_or_default()
}

/// A redo's answers: its parent's journal, less the sessions it retries and the calls from
/// the point it redoes.
fn branch_calls(parent: AnswerIndex, link: &ParentRun) -> RecordedCalls {
    let mut calls = RecordedCalls::new(parent, ReplayMode::Branch);
    calls.rerun(link.retried.iter().cloned());
    if let Some(call) = link.from_call {
        calls.reuse_before(call);
    }
    calls
}

/// The journal's first entry: what a replay needs to run the same script the same way.
fn run_header(
    plan: &RunPlan,
    sources: &Sources,
    world: &ChosenWorld,
    run_id: &str,
    parent: Option<ParentRun>,
) -> RunHeader {
    RunHeader {
        version: JOURNAL_VERSION,
        coord_version: env!("CARGO_PKG_VERSION").into(),
        run_id: run_id.to_owned(),
        coordinator: sources.coordinator.clone(),
        script: sources.script.display().to_string(),
        script_sha256: crate::journal::call_key::short_hash(sources.source.as_bytes()),
        inputs: Value::Object(world.inputs.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        mode: world.mode,
        scenario: world.scenario_path.as_ref().map(|p| p.display().to_string()),
        started_at: now_rfc3339(),
        cwd: std::env::current_dir().ok().map(|d| d.display().to_string()),
        options: plan.recorded_options().to_header(),
        pipeline: plan.pipeline.clone(),
        parent,
    }
}
