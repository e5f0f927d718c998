//! The run store's index of runs that wait: `<runs>/.waits/<run-id>.json`, one small file per
//! run whose script is in a durable wait (`sleep`, `sleep_until`, `wait_signal`), written when
//! the wait starts and removed when it ends. It lets the daemon find, without reading any
//! journal, the parked runs whose time has come and the runs a webhook's signal is for.
//!
//! It is an index only: the journal stays the truth (a wait's deadline is journaled before the
//! entry is written, and a run resumed from its journal writes its entry again). An entry left
//! by a run that died while it waited names a run `coord resume` continues; the daemon wakes
//! only entries marked parked. It must not write journals or signal boxes.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const WAITS_DIR: &str = ".waits";

/// What a run waits for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitEntry {
    pub run_id: String,
    /// When the wait ends on its own (a sleep's end, a signal wait's timeout), Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<i64>,
    /// The signal waited for (`wait_signal`); none for a sleep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// The wait's `key`, which a signal webhook matches against (e.g. a pull request's number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The run's process has exited (`--park-after`): the daemon resumes it when its time
    /// comes or its signal arrives.
    #[serde(default)]
    pub parked: bool,
    /// The `--park-after` the run was started with, in ms, for the resume that wakes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub park_after_ms: Option<u64>,
}

impl WaitEntry {
    /// Whether a parked run should be woken at `now_ms`: its deadline has passed, or a delivery
    /// of its signal is waiting in its signal box.
    pub fn due(&self, run_dir: &Path, now_ms: i64) -> bool {
        if self.until_ms.is_some_and(|u| u <= now_ms) {
            return true;
        }
        match &self.signal {
            Some(name) => super::signal_box::pending(run_dir, name).is_ok_and(|p| !p.is_empty()),
            None => false,
        }
    }
}

fn waits_dir(runs_root: &Path) -> PathBuf {
    runs_root.join(WAITS_DIR)
}

fn entry_path(runs_root: &Path, run_id: &str) -> PathBuf {
    waits_dir(runs_root).join(format!("{run_id}.json"))
}

/// Writes (or replaces) `entry`, whole: a reader never sees half of one.
pub fn record(runs_root: &Path, entry: &WaitEntry) -> std::io::Result<()> {
    let dir = waits_dir(runs_root);
    std::fs::create_dir_all(&dir)?;
    let temp = dir.join(format!(".{}.tmp", entry.run_id));
    std::fs::write(&temp, serde_json::to_vec(entry).map_err(std::io::Error::other)?)?;
    std::fs::rename(&temp, entry_path(runs_root, &entry.run_id))
}

/// Removes `run_id`'s entry; one that is not there is no error.
pub fn remove(runs_root: &Path, run_id: &str) {
    let _ = std::fs::remove_file(entry_path(runs_root, run_id));
}

/// `run_id`'s entry, if it has one.
pub fn get(runs_root: &Path, run_id: &str) -> Option<WaitEntry> {
    serde_json::from_slice(&std::fs::read(entry_path(runs_root, run_id)).ok()?).ok()
}

/// Every entry, by run id (ids sort by start time). Files that are not entries are skipped.
pub fn list(runs_root: &Path) -> Vec<WaitEntry> {
    let Ok(dir) = std::fs::read_dir(waits_dir(runs_root)) else { return Vec::new() };
    let mut entries: Vec<WaitEntry> = dir
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
        .collect();
    entries.sort_by(|a, b| a.run_id.cmp(&b.run_id));
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_written_listed_and_removed() {
        let root = tempfile::tempdir().unwrap();
        assert!(list(root.path()).is_empty());
        let sleeping = WaitEntry { run_id: "r2".into(), until_ms: Some(1_000), ..Default::default() };
        let signalled =
            WaitEntry { run_id: "r1".into(), signal: Some("agreement".into()), parked: true, ..Default::default() };
        record(root.path(), &sleeping).unwrap();
        record(root.path(), &signalled).unwrap();
        std::fs::write(root.path().join(WAITS_DIR).join("stray.txt"), "x").unwrap();
        assert_eq!(list(root.path()), vec![signalled.clone(), sleeping.clone()]);
        assert_eq!(get(root.path(), "r2"), Some(sleeping.clone()));
        remove(root.path(), "r2");
        remove(root.path(), "r2");
        assert_eq!(list(root.path()), vec![signalled]);
    }

    #[test]
    fn a_parked_run_is_due_at_its_deadline_or_on_a_delivery() {
        let run = tempfile::tempdir().unwrap();
        let sleeping = WaitEntry { run_id: "r".into(), until_ms: Some(1_000), parked: true, ..Default::default() };
        assert!(!sleeping.due(run.path(), 999));
        assert!(sleeping.due(run.path(), 1_000));
        let waiting = WaitEntry { run_id: "r".into(), signal: Some("go".into()), parked: true, ..Default::default() };
        assert!(!waiting.due(run.path(), i64::MAX));
        super::super::signal_box::deliver(run.path(), "other", serde_json::Value::Null).unwrap();
        assert!(!waiting.due(run.path(), 0));
        super::super::signal_box::deliver(run.path(), "go", serde_json::Value::Null).unwrap();
        assert!(waiting.due(run.path(), 0));
    }
}
