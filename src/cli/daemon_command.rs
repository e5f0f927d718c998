//! `coord daemon`: load the pipelines, run the dispatcher until a signal stops it, pick the
//! exit code.

use super::{exit_code, report};
use crate::daemon::{self, DaemonError, DaemonOptions, PipelineSet};
use crate::journal::run_dir::RunStore;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct DaemonArgs {
    /// The configuration defining the pipelines.
    #[arg(long, value_name = "FILE", default_value = "coord.toml")]
    pub config: PathBuf,
    /// Also serve webhooks (POST /hooks/<pipeline>) on this address, e.g. 127.0.0.1:8787.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Where run directories go [env: COORD_RUNS_DIR] [default: .coord/runs].
    #[arg(long, value_name = "DIR")]
    pub runs_dir: Option<PathBuf>,
    /// Most leaf sessions running at once, per run.
    #[arg(long, default_value_t = 8, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub max_parallel: u16,
}

pub fn run(args: &DaemonArgs, runtime: &tokio::runtime::Handle) -> u8 {
    let pipelines = match PipelineSet::load(&args.config) {
        Ok(set) => set,
        Err(diagnostic) => {
            report(diagnostic);
            return exit_code::USAGE;
        }
    };
    if pipelines.is_empty() {
        eprintln!("error: {} defines no [[pipeline]]: the daemon has nothing to run", args.config.display());
        return exit_code::USAGE;
    }
    let options = DaemonOptions {
        runs: RunStore::locate(args.runs_dir.as_deref()),
        listen: args.listen,
        max_parallel: usize::from(args.max_parallel),
    };
    match runtime.block_on(daemon::serve(options, pipelines)) {
        Ok(()) => exit_code::SUCCESS,
        Err(e @ DaemonError::AlreadyRunning { .. }) => {
            eprintln!("coord daemon: {e}");
            exit_code::LOCKED
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit_code::RUN_FAILED
        }
    }
}
