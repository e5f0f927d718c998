//! The daemon layer: pipelines from `coord.toml` run unattended, on cron schedules
//! (`coord daemon`), on signed webhooks (`coord daemon --listen`), or once from system cron or
//! CI (`coord trigger`, `coord run --lock`). `coord daemon --serve` also hosts the read-only
//! dashboard of the runs (`views::dashboard`) on a listener of its own.
//!
//! It owns when a pipeline runs and that it never overlaps with itself: the dispatcher's
//! overlap policy inside one daemon, and a `flock` per pipeline across processes. Every run is
//! an ordinary journaled run made by `run::execute`; this layer must not journal, route, or
//! stop a run any other way than through its `Interrupt`.

pub mod accepted_deliveries;
pub mod dispatcher;
pub mod listener;
pub mod lock;
pub mod parked_runs;
pub mod pipeline;
pub mod schedule;
pub mod signal_hook;
pub mod state;
pub mod webhook;

pub use dispatcher::{serve, DaemonError, DaemonOptions};
pub use pipeline::{Pipeline, PipelineSet};

use crate::journal::run_dir::RunStore;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The folder holding the runs folder, where locks (`locks/`) and daemon state (`daemon/`)
/// live too: `.coord` for the default `.coord/runs`.
pub fn coord_dir(runs: &RunStore) -> PathBuf {
    match runs.root.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Where run locks live: `<coord dir>/locks/<name>.lock`.
pub fn locks_dir(runs: &RunStore) -> PathBuf {
    coord_dir(runs).join("locks")
}

/// The default `--config`: `coord.toml` in the current folder.
pub fn default_config_path() -> &'static Path {
    Path::new(crate::config::CONFIG_FILE)
}

/// One line of the daemon's log on stdout. Lines carry no timestamps (the service manager
/// adds its own), so what a test reads is deterministic. A closed stdout is not an error.
pub fn announce(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
