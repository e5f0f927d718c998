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
    /// A delivery of `signal` has been left in the run's signal box since the wait began
    /// ([`mark_delivered`]), so a parked run is due without a look into its signal box.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delivered: bool,
}

impl WaitEntry {
    /// Whether a parked run should be woken at `now_ms`: its deadline has passed, or a delivery
    /// of its signal has arrived.
    pub fn due(&self, now_ms: i64) -> bool {
        self.delivered || self.until_ms.is_some_and(|u| u <= now_ms)
    }
}

/// Notes on `run_id`'s entry, if it waits for `signal`, that a delivery of it arrived. Whoever
/// delivers calls it after the delivery is durable; a run parking checks its signal box after
/// its entry says parked, so a delivery is either seen by the run or noted here.
pub fn mark_delivered(runs_root: &Path, run_id: &str, signal: &str) -> std::io::Result<()> {
    match get(runs_root, run_id) {
        Some(entry) if entry.signal.as_deref() == Some(signal) && !entry.delivered => {
            record(runs_root, &WaitEntry { delivered: true, ..entry })
        }
        _ => Ok(()),
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
    IndexReader::default().look(runs_root)
}

/// The index as one reader sees it over time (the daemon, every second): each look lists the
/// folder and reads again only the entries whose file changed since the last look.
#[derive(Debug, Default)]
pub struct IndexReader {
    seen: std::collections::HashMap<std::ffi::OsString, (std::time::SystemTime, u64, WaitEntry)>,
}

impl IndexReader {
    /// Every entry now, by run id.
    pub fn look(&mut self, runs_root: &Path) -> Vec<WaitEntry> {
        let Ok(dir) = std::fs::read_dir(waits_dir(runs_root)) else {
            self.seen.clear();
            return Vec::new();
        };
        let mut fresh = std::collections::HashMap::with_capacity(self.seen.len());
        for file in dir.flatten() {
            let name = file.file_name();
            if !name.to_string_lossy().ends_with(".json") {
                continue;
            }
            let Ok(meta) = file.metadata() else { continue };
            let stamp = (meta.modified().unwrap_or(std::time::UNIX_EPOCH), meta.len());
            let known = self.seen.remove(&name).filter(|(at, len, _)| (*at, *len) == stamp).map(|(_, _, e)| e);
            let entry = match known {
                Some(entry) => entry,
                None => match std::fs::read(file.path()).ok().and_then(|b| serde_json::from_slice(&b).ok()) {
                    Some(entry) => entry,
                    None => continue,
                },
            };
            fresh.insert(name, (stamp.0, stamp.1, entry));
        }
        self.seen = fresh;
        let mut entries: Vec<WaitEntry> = self.seen.values().map(|(_, _, e)| e.clone()).collect();
        entries.sort_by(|a, b| a.run_id.cmp(&b.run_id));
        entries
    }
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
    fn a_reader_sees_every_change_between_looks() {
        let root = tempfile::tempdir().unwrap();
        let mut reader = IndexReader::default();
        assert!(reader.look(root.path()).is_empty());
        let entry = WaitEntry { run_id: "r1".into(), signal: Some("go".into()), ..Default::default() };
        record(root.path(), &entry).unwrap();
        assert_eq!(reader.look(root.path()), vec![entry.clone()]);
        assert_eq!(reader.look(root.path()), vec![entry.clone()]);
        // A rewrite of the same length within the same clock tick still differs in mtime or
        // length here: `delivered` adds bytes.
        mark_delivered(root.path(), "r1", "go").unwrap();
        assert!(reader.look(root.path())[0].delivered);
        remove(root.path(), "r1");
        assert!(reader.look(root.path()).is_empty());
    }

    #[test]
    fn a_parked_run_is_due_at_its_deadline_or_on_a_delivery() {
        let root = tempfile::tempdir().unwrap();
        let sleeping = WaitEntry { run_id: "s".into(), until_ms: Some(1_000), parked: true, ..Default::default() };
        assert!(!sleeping.due(999));
        assert!(sleeping.due(1_000));
        let waiting = WaitEntry { run_id: "r".into(), signal: Some("go".into()), parked: true, ..Default::default() };
        record(root.path(), &waiting).unwrap();
        assert!(!get(root.path(), "r").unwrap().due(i64::MAX));
        mark_delivered(root.path(), "r", "other").unwrap();
        mark_delivered(root.path(), "nobody", "go").unwrap();
        assert!(!get(root.path(), "r").unwrap().due(0));
        mark_delivered(root.path(), "r", "go").unwrap();
        assert!(get(root.path(), "r").unwrap().due(0));
        assert!(get(root.path(), "nobody").is_none());
    }
}
