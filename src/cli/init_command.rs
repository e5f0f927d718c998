//! `coord init`: scaffolds coord into an existing repository ([`crate::scaffold`]), lists what
//! it wrote and what it left alone, and prints the next three commands.
//!
//! Exit codes: 0 when done (files left alone included: the listing says so), 2 for an unknown
//! coordinator or a folder that is not there, 1 when a file could not be written.

use super::cli_error::CliError;
use crate::library::shipped;
use crate::scaffold::{self, FileOutcome, InitError, InitOptions};
use crate::views::console::stdoutln;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct InitArgs {
    /// Shipped coordinators to scaffold [default: groom-prs]; `--list` shows them all.
    #[arg(value_name = "COORDINATOR")]
    pub coordinators: Vec<String>,
    /// The repository to scaffold into [default: the current folder].
    #[arg(long, value_name = "PATH")]
    pub dir: Option<PathBuf>,
    /// Overwrite files that exist with other contents.
    #[arg(long)]
    pub force: bool,
    /// List the shipped coordinators and exit.
    #[arg(long, conflicts_with_all = ["coordinators", "force"])]
    pub list: bool,
}

pub fn run(args: &InitArgs) -> Result<(), CliError> {
    if args.list {
        let width = shipped::COORDINATORS.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for c in shipped::COORDINATORS {
            stdoutln!("{:width$}  {}", c.name, c.summary());
        }
        return Ok(());
    }
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let opts = InitOptions { dir: dir.clone(), coordinators: args.coordinators.clone(), force: args.force };
    let report = scaffold::init(&opts).map_err(|e| match e {
        InitError::UnknownCoordinator { .. } | InitError::MissingDir(_) => CliError::Usage(e.to_string()),
        InitError::Scratch(_) | InitError::Write { .. } => CliError::Failed(e.to_string()),
    })?;
    for (path, outcome) in &report.files {
        let note = match outcome {
            FileOutcome::Kept => "  (exists with other contents; --force overwrites it)",
            _ => "",
        };
        stdoutln!("{:9} {}{note}", outcome.verb(), path.display());
    }
    if let Some(repo) = &report.repo {
        stdoutln!("\n[github] repo = \"{repo}\", from the origin remote");
    }
    stdoutln!("workflows the coordinators name: {}", report.workflows.join(", "));
    stdoutln!("\nnext:");
    if args.dir.is_some() {
        stdoutln!("  cd {}", dir.display());
    }
    for command in &report.next {
        stdoutln!("  {command}");
    }
    Ok(())
}
