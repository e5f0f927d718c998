//! `coord check`: run the checks, print each problem as a diagnostic on stderr and a one-line
//! summary on stdout; exit 0 when clean, 2 otherwise.

use super::cli_error::{print_diagnostic, CliError};
use super::{exit_code, CheckArgs};
use crate::views::console::{stderrln, stdoutln};

pub fn run(args: &CheckArgs) -> Result<(), CliError> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let report = crate::check::check(&args.paths, &cwd).map_err(|e| CliError::Usage(e.to_string()))?;
    for problem in &report.problems {
        print_diagnostic(problem);
    }
    for warning in &report.warnings {
        stderrln!("warning: {warning}");
    }
    stdoutln!("{}", report.summary());
    if report.problems.is_empty() {
        Ok(())
    } else {
        Err(CliError::Reported { what: "the checks found problems", code: exit_code::USAGE })
    }
}
