//! The last phases of a run: what the script's evaluation came to (a value, a script error, a
//! divergence, an outage, a stop), the journal's last entry, and the [`RunOutcome`].
//!
//! It must not render: a failure is classified here and reported by whoever started the run.

use super::{RunFailure, RunOutcome, SetupError};
use crate::journal::entry::{Entry, RunStatus};
use crate::journal::run_dir::{self, OwnerLock};
use crate::journal::wait_index;
use crate::script::diagnostic::ScriptErrorKind;
use crate::script::host::HostError;
use crate::script::recorded_calls::Divergence;
use crate::script::{Host, ScriptDiagnostic};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a finished evaluation is reported against.
pub(super) struct RunEnding<'a> {
    pub run_id: String,
    pub run_dir: PathBuf,
    pub coordinator: String,
    pub script: &'a Path,
    pub source: &'a str,
    /// A replay or a what-if: there is no journal to finish.
    pub offline: bool,
    pub owner: Option<Arc<OwnerLock>>,
    pub interrupt: &'a crate::scheduler::Interrupt,
    /// The process exits once the outcome is reported.
    pub exits_after: bool,
}

impl RunEnding<'_> {
    /// Finishes the run the host served: the journal's last entry, then the outcome.
    pub fn finish(
        self,
        evaluated: Result<rhai::Dynamic, Box<rhai::EvalAltResult>>,
        mut host: Host,
    ) -> Result<RunOutcome, SetupError> {
        host.flush_log();
        let mut warnings = Vec::new();
        // A journal streamed in while the script ran is known readable only once read to its
        // end: an unreadable one is refused as a whole, as if it had been read before the run.
        if let Some(rec) = host.recorded_mut() {
            rec.finish_reading().map_err(|e| SetupError::Journal(Box::new(e)))?;
            warnings.extend(rec.warnings().iter().cloned());
        }
        let (status, failure, result) = self.status_of(evaluated, &mut host);
        if matches!(status, RunStatus::Interrupted) {
            host.cancel_leaves();
        }
        let divergence = host.recorded().and_then(|r| r.divergence.clone());
        let runs_root = self.run_dir.parent().map(Path::to_path_buf).unwrap_or_default();
        if !self.offline {
            if let Err(e) = finish_journal(&mut host, status, failure.as_ref(), &result) {
                warnings.push(format!("could not finish the journal: {e}"));
            }
            run_dir::clear_pid(&self.run_dir);
            // A run that ended for good waits for nothing; a stopped or parked one still does.
            if matches!(status, RunStatus::Succeeded | RunStatus::Failed) {
                wait_index::remove(&runs_root, &self.run_id);
            }
        }
        let parked = (status == RunStatus::Parked).then(|| wait_index::get(&runs_root, &self.run_id)).flatten();
        // Released once the journal's last entry is written: a resume may take the run now.
        drop(self.owner);
        let outcome = RunOutcome {
            run_id: self.run_id,
            run_dir: self.run_dir,
            coordinator: self.coordinator,
            status,
            sessions: host.session_count(),
            leaves: host.finished_sessions(),
            effects: std::mem::take(&mut host.effects),
            usage: host.usage.clone(),
            result,
            failure,
            unrecorded: std::mem::take(&mut host.unrecorded),
            divergence,
            parked,
            warnings,
        };
        if self.exits_after {
            host.drop_for_exit();
        }
        Ok(outcome)
    }

    /// How the run ended, and what the script returned (as JSON).
    fn status_of(
        &self,
        evaluated: Result<rhai::Dynamic, Box<rhai::EvalAltResult>>,
        host: &mut Host,
    ) -> (RunStatus, Option<RunFailure>, Value) {
        // Parking stops the script as a signal would; it is no failure.
        if self.interrupt.is_parking() {
            return (RunStatus::Parked, None, Value::Null);
        }
        match evaluated {
            Ok(value) => {
                let result = crate::script::json_value::to_json(&value).unwrap_or(Value::Null);
                (RunStatus::Succeeded, None, result)
            }
            Err(err) => {
                let failure = classify_failure(host, &err, self.script, self.source, self.interrupt);
                // A stopped run, by a signal or an outage, is finished by `coord resume`.
                let status = if matches!(failure, RunFailure::Interrupted | RunFailure::Outage(_)) {
                    RunStatus::Interrupted
                } else {
                    RunStatus::Failed
                };
                (status, Some(failure), Value::Null)
            }
        }
    }
}

/// The journal's last entry, made durable.
fn finish_journal(
    host: &mut Host,
    status: RunStatus,
    failure: Option<&RunFailure>,
    result: &Value,
) -> std::io::Result<()> {
    let journal_error = match failure {
        Some(RunFailure::Script(d)) => Some(d.message.clone()),
        Some(RunFailure::Host(m)) => Some(m.clone()),
        Some(RunFailure::Interrupted) => Some("interrupted".into()),
        Some(RunFailure::Outage(o)) => Some(o.to_string()),
        _ => None,
    };
    let finished =
        Entry::run_finished(status, journal_error, Some(result.clone()), super::now_rfc3339()).with_usage(&host.usage);
    let journal = host.journal_mut();
    journal.append(finished)?;
    journal.sync()
}

fn classify_failure(
    host: &mut Host,
    err: &rhai::EvalAltResult,
    script: &Path,
    source: &str,
    interrupt: &crate::scheduler::Interrupt,
) -> RunFailure {
    if let rhai::EvalAltResult::ErrorTerminated(token, pos) = err {
        if let Some(exhausted) = crate::script::heap_budget::HeapExhausted::from_token(token) {
            let limit_mib = exhausted.budget_bytes / (1024 * 1024);
            return RunFailure::Script(Box::new(ScriptDiagnostic::at(
                script,
                source,
                pos.line().unwrap_or(0),
                pos.position().unwrap_or(0),
                "the script outgrew its memory budget: runaway data growth?".into(),
                Some(format!(
                    "a coordinator only routes; the budget is {limit_mib} MiB of heap (--max-heap, or [run] max_heap in coord.toml)"
                )),
                ScriptErrorKind::Runtime,
            )));
        }
    }
    if let Some(outage) = host.outage.take() {
        return RunFailure::Outage(Box::new(outage));
    }
    if interrupt.is_set() || matches!(err, rhai::EvalAltResult::ErrorTerminated(..)) {
        return RunFailure::Interrupted;
    }
    match host.fatal.take() {
        Some(fatal) => host_failure(fatal, err, script, source),
        None => RunFailure::Script(Box::new(ScriptDiagnostic::from_eval(err, script, source))),
    }
}

/// A failure the host stopped the script with, kept typed on the host.
fn host_failure(fatal: HostError, err: &rhai::EvalAltResult, script: &Path, source: &str) -> RunFailure {
    match fatal {
        HostError::Interrupted | HostError::Parked | HostError::Outage(_) => RunFailure::Interrupted,
        HostError::Divergence(d) => {
            let (file, text) = site_source(&d.now_site, script, source);
            let diag = ScriptDiagnostic::at(
                &file,
                &text,
                d.now_site.line,
                d.now_site.col,
                format!("replay diverged from the journal at call {}", d.index),
                Some(describe_divergence(&d)),
                ScriptErrorKind::Runtime,
            );
            RunFailure::Divergence(d, Box::new(diag))
        }
        HostError::JournalEnded(i) => RunFailure::JournalEnded(i),
        // `execute` reports the journal's own error in place of the run's.
        e @ HostError::UnreadableJournal => RunFailure::Host(e.to_string()),
        HostError::Journal(e) => RunFailure::Host(format!("journal: {e}")),
        HostError::World(m) => {
            let mut d = ScriptDiagnostic::from_eval(err, script, source);
            d.message = match &d.location {
                Some(at) => format!("{at}: {m}"),
                None => m,
            };
            d.kind = ScriptErrorKind::Thrown;
            RunFailure::Script(Box::new(d))
        }
        HostError::Script(_) => {
            // The host refused the call (an unknown workflow, a bad option): the script is at
            // fault, not failing on purpose.
            let mut d = ScriptDiagnostic::from_eval(err, script, source);
            d.kind = ScriptErrorKind::Runtime;
            if d.message.contains("the script threw: ") {
                d.message = d.message.replacen("the script threw: ", "", 1);
                d.label = "called here".into();
            }
            RunFailure::Script(Box::new(d))
        }
    }
}

fn site_source(site: &crate::journal::entry::CallSite, script: &Path, source: &str) -> (PathBuf, String) {
    match &site.source {
        Some(m) => match crate::library::stdlib::by_source_name(m) {
            Some(builtin) => (PathBuf::from(m), builtin.source.to_owned()),
            None => (PathBuf::from(m), std::fs::read_to_string(m).unwrap_or_default()),
        },
        None => (script.to_owned(), source.to_owned()),
    }
}

pub fn describe_divergence(d: &Divergence) -> String {
    let now = format!("{} {}", d.now_function, compact(&d.now_args));
    let Some(asked) = d.recorded.as_ref().and_then(Entry::asked) else {
        return format!("the journal ends here; the script now asks: {now}");
    };
    format!(
        "the journal recorded: {} {} (at {}{})\nthe script now asks: {now}",
        asked.function,
        compact(asked.args),
        asked.source.map(|s| format!("{s}:")).unwrap_or_default(),
        asked.pos.unwrap_or("?"),
    )
}

fn compact(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 160 {
        format!("{}…", &s[..s.char_indices().nth(160).map(|(i, _)| i).unwrap_or(s.len())])
    } else {
        s
    }
}
