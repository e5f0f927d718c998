//! Every way a command can fail, as one type that knows its exit code ([`CliError::exit_code`],
//! the only place a failure becomes a number from `exit_code.rs`) and how it is told on stderr
//! ([`CliError::print`], called once by `cli::main`).
//!
//! Commands return `Result<(), CliError>` and print nothing about their own failure. It must
//! not decide what a run's outcome means: that is `run::run_error::RunError::of`.

use super::exit_code;
use crate::check::problem::Problem;
use crate::config::file_diagnostic::FileDiagnostic;
use crate::daemon::lock::LockError;
use crate::daemon::DaemonError;
use crate::journal::run_dir::OwnerLockError;
use crate::run::run_error::RunError;
use crate::run::SetupError;
use crate::views::console::stderrln;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CliError {
    /// Arguments that do not make sense together, or name nothing (exit 2).
    #[error("{0}")]
    Usage(String),
    /// A user's file (`coord.toml`, a pipeline) is at fault, shown with its span (exit 2).
    #[error(transparent)]
    #[diagnostic(transparent)]
    File(#[from] Box<FileDiagnostic>),
    /// The checks every run passes before it starts found problems: nothing ran (exit 2).
    #[error("not started: {} problem(s)", .0.count())]
    NotStarted(RunRefused),
    /// A journal that cannot be read (exit 3).
    #[error("{0}")]
    Journal(String),
    /// Another process holds the lock: nothing was touched (exit 75, or 2 for a bad name).
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Another process owns the run being resumed: nothing was touched (exit 75).
    #[error(transparent)]
    Owned(#[from] OwnerLockError),
    /// The daemon did not start or stopped on an error (exit 75 when another one runs).
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    /// What the command was asked to do could not be done (exit 1).
    #[error("{0}")]
    Failed(String),
    /// A run did not succeed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Run(#[from] RunError),
    /// The command's report (on stdout) already says what did not pass: scenarios that
    /// failed, problems `coord check` found, harnesses not ready (exit `code`).
    #[error("{what}")]
    Reported { what: &'static str, code: u8 },
}

/// The problems that stopped a run before it started, with what to try next.
#[derive(Debug)]
pub struct RunRefused {
    pub problems: Vec<Problem>,
    /// What cannot run here (a harness's binary or credentials), one line each.
    pub preflight: Vec<String>,
    pub script: PathBuf,
    /// The run was offline (a scenario): no point suggesting `--demo`.
    pub offline: bool,
}

impl RunRefused {
    fn count(&self) -> usize {
        self.problems.len() + self.preflight.len()
    }

    fn print(&self) {
        for problem in &self.problems {
            print_diagnostic(problem);
        }
        for line in &self.preflight {
            stderrln!("error: {line}");
        }
        let problems = self.count();
        stderrln!(
            "coord: not started: {problems} problem{} (`coord check` and `coord doctor` show them too)",
            if problems == 1 { "" } else { "s" }
        );
        if !self.preflight.is_empty() && !self.offline {
            stderrln!(
                "coord: to try it offline, with mock leaves and no credentials: coord run {} --demo",
                self.script.display()
            );
        }
    }
}

impl CliError {
    /// The process's exit code: the stable codes of `exit_code.rs`, documented in the README.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::File(_) | CliError::NotStarted(_) => exit_code::USAGE,
            CliError::Journal(_) => exit_code::DIVERGED,
            CliError::Lock(LockError::Held { .. }) | CliError::Owned(OwnerLockError::Held { .. }) => exit_code::LOCKED,
            CliError::Lock(LockError::BadName(_)) => exit_code::USAGE,
            CliError::Daemon(DaemonError::AlreadyRunning { .. }) => exit_code::LOCKED,
            CliError::Lock(_) | CliError::Owned(_) | CliError::Daemon(_) | CliError::Failed(_) => exit_code::RUN_FAILED,
            CliError::Run(e) => run_exit_code(e),
            CliError::Reported { code, .. } => *code,
        }
    }

    /// Tells the error on stderr (masked, as everything printed is), once, the way each kind
    /// has always been told: a diagnostic when a file is at fault, else one `error:` line.
    pub fn print(&self) {
        match self {
            CliError::Usage(m) | CliError::Journal(m) | CliError::Failed(m) => stderrln!("error: {m}"),
            CliError::File(d) => print_diagnostic(d.as_ref()),
            CliError::NotStarted(refused) => refused.print(),
            CliError::Lock(e @ LockError::Held { .. }) => stderrln!("coord: {e}"),
            CliError::Lock(e) => stderrln!("error: {e}"),
            CliError::Owned(e @ OwnerLockError::Held { .. }) => stderrln!("coord: {e}; nothing was touched"),
            CliError::Owned(e) => stderrln!("error: {e}"),
            CliError::Daemon(e @ DaemonError::AlreadyRunning { .. }) => stderrln!("coord daemon: {e}"),
            CliError::Daemon(e) => stderrln!("error: {e}"),
            CliError::Run(e) => print_run_error(e),
            CliError::Reported { .. } => {}
        }
    }
}

/// What each way a run can end means for the process.
fn run_exit_code(e: &RunError) -> u8 {
    match e {
        // An unreadable journal reads the same whether it was found before or during a replay.
        RunError::NotStarted(SetupError::Journal(_)) => exit_code::DIVERGED,
        RunError::NotStarted(SetupError::Owned(OwnerLockError::Held { .. })) => exit_code::LOCKED,
        RunError::NotStarted(SetupError::Io(_) | SetupError::Owned(_)) => exit_code::RUN_FAILED,
        RunError::NotStarted(_) => exit_code::USAGE,
        RunError::Script(_) if e.is_thrown() => exit_code::RUN_FAILED,
        RunError::Script(_) => exit_code::USAGE,
        RunError::Diverged(_) | RunError::JournalEnded(_) => exit_code::DIVERGED,
        RunError::Host(_) | RunError::Outage { .. } => exit_code::RUN_FAILED,
        RunError::Interrupted { signal, .. } if *signal == libc::SIGTERM => exit_code::INTERRUPTED_SIGTERM,
        RunError::Interrupted { .. } => exit_code::INTERRUPTED_SIGINT,
        RunError::EffectsFailed(_) => exit_code::EFFECTS_FAILED,
    }
}

fn print_run_error(e: &RunError) {
    match e {
        RunError::NotStarted(SetupError::Journal(j)) => stderrln!("error: {j}"),
        RunError::NotStarted(SetupError::Owned(o @ OwnerLockError::Held { .. })) => {
            stderrln!("coord: {o}; nothing was touched")
        }
        RunError::NotStarted(_) | RunError::Script(_) | RunError::Diverged(_) => print_diagnostic(e),
        RunError::JournalEnded(_) | RunError::Host(_) | RunError::Outage { .. } => stderrln!("error: {e}"),
        RunError::Interrupted { .. } => stderrln!("interrupted: {e}"),
        RunError::EffectsFailed(_) => stderrln!("coord: {e}"),
    }
}

/// Prints a diagnostic to stderr with miette's renderer (spans, `file:line:col`).
pub fn print_diagnostic(diag: &dyn miette::Diagnostic) {
    stderrln!("{:?}", DiagnosticRef(diag));
}

/// How every diagnostic is rendered. Diagnostics are read in logs and CI output as often as in
/// terminals: never wrap them.
pub fn diagnostic_handler() -> miette::MietteHandler {
    miette::MietteHandlerOpts::new().wrap_lines(false).build()
}

/// A borrowed diagnostic, rendered through `Debug` as a `miette::Report` would be.
struct DiagnosticRef<'a>(&'a dyn miette::Diagnostic);

impl std::fmt::Debug for DiagnosticRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        miette::ReportHandler::debug(&diagnostic_handler(), self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_error(e: RunError) -> u8 {
        CliError::Run(e).exit_code()
    }

    #[test]
    fn a_stopped_run_exits_with_its_signal_s_code() {
        let stopped = |signal| RunError::Interrupted { run_id: "r".into(), signal };
        assert_eq!(run_error(stopped(libc::SIGTERM)), 143);
        assert_eq!(run_error(stopped(libc::SIGINT)), 130);
    }

    #[test]
    fn the_documented_codes_of_the_other_endings() {
        assert_eq!(run_error(RunError::Host("read failed".into())), 1);
        assert_eq!(run_error(RunError::JournalEnded(3)), 3);
        assert_eq!(run_error(RunError::NotStarted(SetupError::Usage("bad".into()))), 2);
        assert_eq!(CliError::Journal("torn".into()).exit_code(), 3);
        assert_eq!(CliError::Usage("no such run".into()).exit_code(), 2);
        assert_eq!(CliError::Owned(OwnerLockError::Held { run: "r".into(), pid: None }).exit_code(), 75);
    }
}
