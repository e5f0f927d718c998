//! Why a run did not succeed, as whoever started it hears it. [`RunError::of`] is the one place
//! that reads a run's ending (it never started, the script failed, the replay diverged, a
//! harness failed, a signal stopped it, effects failed): `coord run`, `resume`, `replay` and
//! `trigger` turn the error into their exit code (`cli::CliError::exit_code`), the daemon into
//! its log line.
//!
//! It must not print, and it does not pick exit numbers: those are the CLI's.

use super::{RunFailure, RunOutcome, SetupError};
use crate::script::diagnostic::ScriptErrorKind;
use crate::script::host::Outage;
use crate::script::ScriptDiagnostic;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum RunError {
    /// The run never started: its files, its journal or the run store are at fault, or another
    /// process owns it.
    #[error(transparent)]
    #[diagnostic(transparent)]
    NotStarted(#[from] SetupError),
    /// The script is at fault (a compile error, a misused host call, a limit) or threw.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Script(Box<ScriptDiagnostic>),
    /// Replay met a call the journal does not hold.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Diverged(Box<ScriptDiagnostic>),
    /// The journal of an interrupted run ended before the script did.
    #[error("the journal ends at call {0}: the recorded run was interrupted there; `coord resume` finishes it")]
    JournalEnded(u64),
    /// A read or the journal failed.
    #[error("{0}")]
    Host(String),
    /// A harness failed on its set-up or its provider; the run stopped before the script saw it.
    #[error("{outage}\nrun {run_id} stopped before anything acted on that failure; once it is fixed, `coord resume {run_id}` finishes the run")]
    Outage { run_id: String, outage: Box<Outage> },
    /// SIGINT or SIGTERM (`signal`) stopped the run.
    #[error("run {run_id} stopped; `coord resume {run_id}` finishes it")]
    Interrupted { run_id: String, signal: i32 },
    /// The run finished, but effects failed (a refusal is not a failure).
    #[error("{0}")]
    EffectsFailed(FailedEffects),
}

impl RunError {
    /// How a run ended: a run that never started is the error; one that did is its outcome
    /// (its `failure` taken out) and what went wrong, if anything. `signal` is the signal that
    /// stopped it (the run's `Interrupt`), or 0.
    pub fn of(result: Result<RunOutcome, SetupError>, signal: i32) -> Result<(RunOutcome, Option<RunError>), RunError> {
        let mut outcome = result?;
        let error = match outcome.failure.take() {
            None => FailedEffects::of(&outcome).map(RunError::EffectsFailed),
            Some(RunFailure::Script(diag)) => Some(RunError::Script(diag)),
            Some(RunFailure::Divergence(_, diag)) => Some(RunError::Diverged(diag)),
            Some(RunFailure::JournalEnded(i)) => Some(RunError::JournalEnded(i)),
            Some(RunFailure::Host(message)) => Some(RunError::Host(message)),
            Some(RunFailure::Outage(outage)) => Some(RunError::Outage { run_id: outcome.run_id.clone(), outage }),
            Some(RunFailure::Interrupted) => Some(RunError::Interrupted { run_id: outcome.run_id.clone(), signal }),
        };
        Ok((outcome, error))
    }

    /// The script threw (its author's `throw`), rather than being at fault.
    pub fn is_thrown(&self) -> bool {
        matches!(self, RunError::Script(diag) if diag.kind == ScriptErrorKind::Thrown)
    }
}

/// `2 of 9 effects failed: github.comment ×1, merge ×1; the first: WHY`: a run whose writes
/// all failed must not read as a success in cron or CI.
#[derive(Debug)]
pub struct FailedEffects {
    pub failed: usize,
    pub total: usize,
    /// Each failed kind with its count, in first-seen order.
    pub kinds: indexmap::IndexMap<String, usize>,
    /// The first failure's error (or reason), on one line.
    pub first_error: Option<String>,
}

impl FailedEffects {
    fn of(outcome: &RunOutcome) -> Option<FailedEffects> {
        let mut kinds: indexmap::IndexMap<String, usize> = indexmap::IndexMap::new();
        let mut first_error = None;
        for effect in &outcome.effects {
            let result = effect.result();
            if result["status"] != "failed" {
                continue;
            }
            *kinds.entry(effect.kind.function().to_owned()).or_default() += 1;
            if first_error.is_none() {
                first_error = result["error"].as_str().or(result["reason"].as_str()).map(str::to_owned);
            }
        }
        if kinds.is_empty() {
            return None;
        }
        Some(FailedEffects {
            failed: kinds.values().sum(),
            total: outcome.effects.len(),
            kinds,
            first_error: first_error.map(|e| e.split_whitespace().collect::<Vec<_>>().join(" ")),
        })
    }
}

impl std::fmt::Display for FailedEffects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kinds: Vec<String> = self.kinds.iter().map(|(kind, n)| format!("{kind} ×{n}")).collect();
        write!(f, "{} of {} effects failed: {}", self.failed, self.total, kinds.join(", "))?;
        match &self.first_error {
            Some(error) => write!(f, "; the first: {error}"),
            None => Ok(()),
        }
    }
}
