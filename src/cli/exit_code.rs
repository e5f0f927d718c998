//! Stable exit codes, documented in the README. Scripts and CI depend on them: never renumber.

/// The run succeeded (or the command did what was asked).
pub const SUCCESS: u8 = 0;
/// The run failed: the script threw, a read failed, or a test did not pass.
pub const RUN_FAILED: u8 = 1;
/// Usage or script error: bad flags, a script that does not compile or misuses the host API,
/// a malformed scenario or workflow, a runaway script stopped by a limit; `coord init` of an
/// unknown coordinator or into a folder that is not there; `coord test --review` with no
/// answer on stdin (no terminal, nothing piped).
pub const USAGE: u8 = 2;
/// Replay diverged from the journal, or a journal is unreadable.
pub const DIVERGED: u8 = 3;
/// The run finished, but effects failed: a merge, comment, label or notification that could
/// not be done (GitHub unreachable, refused credentials, a rate limit, a delivery that failed).
/// A refusal (`not_green`, `conflict`, ...) is not a failure. `--allow-failed-effects` makes it 0.
pub const EFFECTS_FAILED: u8 = 4;
/// Another run holds the lock (`--lock`), or another process owns the run being resumed;
/// nothing was touched. (EX_TEMPFAIL)
pub const LOCKED: u8 = 75;
/// Stopped by SIGINT; `coord resume` finishes it.
pub const INTERRUPTED_SIGINT: u8 = 130;
/// Stopped by SIGTERM; `coord resume` finishes it.
pub const INTERRUPTED_SIGTERM: u8 = 143;
