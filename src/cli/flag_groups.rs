//! Flags several commands share, each declared once and flattened (`#[command(flatten)]`)
//! into the commands that take it, so a flag reads, parses and documents the same everywhere.
//!
//! A command whose flag means something a little more specific says so with
//! `#[command(mut_arg(NAME, |a| a.help(...)))]` beside its own fields; the flag's name, type
//! and parsing stay here. It must hold flags only: no command runs from here.

use crate::journal::run_dir::RunStore;
use crate::script::EngineLimits;
use clap::Args;
use std::path::PathBuf;

/// `--runs-dir`: the run store.
#[derive(Args, Debug, Clone)]
pub struct RunStoreArgs {
    /// Where run directories are [env: COORD_RUNS_DIR] [default: .coord/runs].
    #[arg(long, value_name = "DIR")]
    pub runs_dir: Option<PathBuf>,
}

/// The help of `--runs-dir` for the commands that start runs (it is where new runs go).
pub const RUNS_DIR_FOR_NEW_RUNS: &str = "Where run directories go [env: COORD_RUNS_DIR] [default: .coord/runs]";

impl RunStoreArgs {
    /// The flag, else `COORD_RUNS_DIR`, else `.coord/runs`.
    pub fn store(&self) -> RunStore {
        RunStore::locate(self.runs_dir.as_deref())
    }
}

/// `--json`: the command's result as JSON on stdout instead of text.
#[derive(Args, Debug, Clone)]
pub struct JsonOutputArgs {
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `--executor`: where a run's leaves run.
#[derive(Args, Debug, Clone)]
pub struct ExecutorArgs {
    /// Where every leaf of the run runs: `local` (this machine), `ray` (jobs on the Ray
    /// cluster of `[executor] address`) or `kubernetes` (Jobs in `[executor] namespace`)
    /// [default: `[executor] kind` in coord.toml, else local; a resume keeps the run's own].
    #[arg(long, value_name = "KIND", value_parser = ["local", "ray", "kubernetes"])]
    pub executor: Option<String>,
}

/// `--max-parallel`: how many leaves a run starts at once.
#[derive(Args, Debug, Clone)]
pub struct ParallelismArgs {
    /// Most leaf sessions running at once.
    #[arg(long, default_value_t = 8, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub max_parallel: u16,
}

impl ParallelismArgs {
    pub fn leaves_at_once(&self) -> usize {
        usize::from(self.max_parallel)
    }
}

/// `--max-operations`: the script engine's operation limit.
#[derive(Args, Debug, Clone)]
pub struct OperationLimitArgs {
    /// Operation limit of the script engine.
    #[arg(long, value_name = "N")]
    pub max_operations: Option<u64>,
}

impl OperationLimitArgs {
    /// Sets the limit given, leaving the engine's default otherwise.
    pub fn apply(&self, limits: &mut EngineLimits) {
        if let Some(n) = self.max_operations {
            limits.max_operations = n;
        }
    }
}
