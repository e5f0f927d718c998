//! `coord signal RUN NAME [--data JSON]`: leaves a delivery in a run's signal box for its
//! `wait_signal(NAME)` to consume (docs/host-api.md, "Timers and signals").
//!
//! It never writes the run's journal (only the run's owner does): the run consumes the
//! delivery while it waits, or when it is resumed. It refuses a run that has finished.

use super::cli_error::CliError;
use super::flag_groups::RunStoreArgs;
use crate::journal::run_dir::owner_alive;
use crate::journal::signal_box;
use crate::journal::wait_index;
use clap::Args;
use serde_json::Value;
use std::path::Path;

#[derive(Args, Debug, Clone)]
pub struct SignalArgs {
    /// The run: an id, a unique prefix, `last`, or a run directory.
    pub run: String,
    /// The signal's name, as the script's `wait_signal(NAME, ...)` names it.
    pub name: String,
    /// The signal's payload, JSON (what `wait_signal` returns) [default: null].
    #[arg(long, value_name = "JSON")]
    pub data: Option<String>,
    #[command(flatten)]
    pub store: RunStoreArgs,
}

pub fn run(args: &SignalArgs) -> Result<(), CliError> {
    if !signal_box::valid_name(&args.name) {
        return Err(CliError::Usage(format!(
            "`{}` is not a signal name: 1 to 64 letters, digits, `_`, `-` or `.`",
            args.name
        )));
    }
    let data: Value = match &args.data {
        None => Value::Null,
        Some(text) => serde_json::from_str(text)
            .map_err(|e| CliError::Usage(format!("--data is not JSON ({e}); e.g. --data '{{\"agreed\":true}}'")))?,
    };
    let store = args.store.store();
    let run_dir = store.resolve(&args.run).map_err(|e| CliError::Usage(e.to_string()))?;
    let run_id = run_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if let Some(status) = final_status(&run_dir) {
        return Err(CliError::Failed(format!(
            "run {run_id} has finished ({status}): nothing would ever consume signal `{}`",
            args.name
        )));
    }
    let delivery = signal_box::deliver(&run_dir, &args.name, data)
        .map_err(|e| CliError::Failed(format!("cannot deliver to run {run_id}: {e}")))?;
    if let Some(root) = run_dir.parent() {
        // Tells the daemon a parked run waiting for it is due; the delivery stands without.
        let _ = wait_index::mark_delivered(root, &run_id, &args.name);
    }
    println!("delivered signal `{}` to run {run_id} (delivery {})", args.name, delivery.id);
    if !owner_alive(&run_dir) {
        let parked = run_dir.parent().and_then(|root| wait_index::get(root, &run_id)).is_some_and(|w| w.parked);
        if parked {
            println!("run {run_id} is parked: `coord daemon` resumes it now, or `coord resume {run_id}` does");
        } else {
            println!("run {run_id} is not running: `coord resume {run_id}` goes on and consumes it");
        }
    }
    Ok(())
}

/// `succeeded` or `failed` when the journal's last entry finishes the run for good; an
/// interrupted or parked run is resumed, and consumes signals then.
fn final_status(run_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(run_dir.join(crate::journal::writer::JOURNAL_FILE)).ok()?;
    let last: Value = serde_json::from_str(text.lines().rev().find(|l| !l.trim().is_empty())?).ok()?;
    if last.get("type")?.as_str()? != "run_finished" {
        return None;
    }
    let status = last.get("status")?.as_str()?;
    (!matches!(status, "interrupted" | "parked")).then(|| status.to_owned())
}
