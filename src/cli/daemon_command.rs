//! `coord daemon`: load the pipelines, run the dispatcher until a signal stops it, pick the
//! exit code.

use super::cli_error::CliError;
use super::flag_groups::{ParallelismArgs, RunStoreArgs, RUNS_DIR_FOR_NEW_RUNS};
use crate::daemon::listener::ListenerLimits;
use crate::daemon::{self, DaemonOptions, PipelineSet};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug, Clone)]
#[command(mut_arg("runs_dir", |a| a.help(RUNS_DIR_FOR_NEW_RUNS)))]
#[command(mut_arg("max_parallel", |a| a.help("Most leaf sessions running at once, per run")))]
pub struct DaemonArgs {
    /// The configuration defining the pipelines.
    #[arg(long, value_name = "FILE", default_value = "coord.toml")]
    pub config: PathBuf,
    /// Also serve webhooks (POST /hooks/<pipeline>) on this address, e.g. 127.0.0.1:8787.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Also serve the read-only dashboard of the runs (`coord serve`) on this address, e.g.
    /// 127.0.0.1:7878.
    #[arg(long, value_name = "ADDR")]
    pub serve: Option<SocketAddr>,
    #[command(flatten)]
    pub store: RunStoreArgs,
    #[command(flatten)]
    pub parallelism: ParallelismArgs,
    /// A webhook connection that has not sent a whole request head within this is closed; so
    /// is a keep-alive connection idle this long.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_timeout)]
    pub header_timeout: Duration,
    /// A webhook request whose body has not all arrived within this is answered 408.
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_timeout)]
    pub body_timeout: Duration,
    /// Most webhook connections open at once; at the cap the oldest idle one is closed to make
    /// room (lowered to fit the open-file limit).
    #[arg(long, default_value_t = 4096, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
}

/// A duration such as `10s` or `500ms`, longer than zero.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be longer than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

pub fn run(args: &DaemonArgs, runtime: &tokio::runtime::Handle) -> Result<(), CliError> {
    // With no [[pipeline]], the daemon still wakes parked runs and serves signal webhooks.
    let pipelines = PipelineSet::load(&args.config).map_err(Box::new)?;
    let options = DaemonOptions {
        runs: args.store.store(),
        listen: args.listen,
        serve: args.serve,
        max_parallel: args.parallelism.leaves_at_once(),
        listener: ListenerLimits {
            header_timeout: args.header_timeout,
            max_connections: args.max_connections as usize,
        },
        body_timeout: args.body_timeout,
    };
    Ok(runtime.block_on(daemon::serve(options, pipelines))?)
}
