//! `coord check`: run the checks, print each problem as a diagnostic on stderr and a one-line
//! summary on stdout; exit 0 when clean, 2 otherwise.

use super::{exit_code, CheckArgs};

pub fn run(args: &CheckArgs) -> u8 {
    let cwd = std::env::current_dir().unwrap_or_default();
    let report = match crate::check::check(&args.paths, &cwd) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return exit_code::USAGE;
        }
    };
    let clean = report.problems.is_empty();
    let summary = report.summary();
    for problem in report.problems {
        super::report(problem);
    }
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    println!("{summary}");
    if clean {
        exit_code::SUCCESS
    } else {
        exit_code::USAGE
    }
}
