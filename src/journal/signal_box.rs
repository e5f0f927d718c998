//! A run's signal box: `<run>/signals/`, where `coord signal` (any process) leaves deliveries
//! for the run's owner to consume. Each delivery is one file, written whole (a temporary file
//! renamed into place, so a reader never sees half of one), named by its delivery id; ids sort
//! in delivery order.
//!
//! It owns the files only. Which delivery a wait consumes is the host's rule, and a consumption
//! counts once the journal records it (only the run's owner writes the journal); moving the file
//! to `signals/consumed/` afterwards only keeps later scans short. It must not write the journal.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

const SIGNALS_DIR: &str = "signals";
const CONSUMED_DIR: &str = "consumed";
const TAKEN_DIR: &str = "taken";

/// One delivery of a signal, as `coord signal` left it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub data: Value,
}

/// A signal name: 1 to 64 letters, digits, `_`, `-` or `.` (it is part of no path, but it is
/// typed on command lines and in webhooks, and matched exactly).
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn signals_dir(run_dir: &Path) -> PathBuf {
    run_dir.join(SIGNALS_DIR)
}

/// Leaves a delivery of `name` for the run in `run_dir`; returns its delivery id. The id is
/// the time of delivery in nanoseconds (zero-padded, so ids sort as they were made), then the
/// delivering process's id, so two processes delivering at once never collide.
pub fn deliver(run_dir: &Path, name: &str, data: Value) -> std::io::Result<Delivery> {
    let dir = signals_dir(run_dir);
    std::fs::create_dir_all(&dir)?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let id = format!("{nanos:024}-{}", std::process::id());
    let delivery = Delivery { id: id.clone(), name: name.to_owned(), data };
    let text = serde_json::to_vec(&delivery).map_err(std::io::Error::other)?;
    let temp = dir.join(format!(".{id}.tmp"));
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(&text)?;
        file.sync_all()?;
    }
    std::fs::rename(&temp, dir.join(format!("{id}.json")))?;
    // The rename is durable once the directory is.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(delivery)
}

/// [`deliver`], at most once per `once` id (a webhook's delivery id): a second delivery with
/// the same id is not left (None). Each id is remembered in `signals/taken/` by its digest,
/// created exclusively, so two processes delivering the same id at once leave one.
pub fn deliver_once(run_dir: &Path, name: &str, data: Value, once: Option<&str>) -> std::io::Result<Option<Delivery>> {
    if let Some(id) = once {
        use sha2::Digest;
        let taken = signals_dir(run_dir).join(TAKEN_DIR);
        std::fs::create_dir_all(&taken)?;
        let digest = hex::encode(sha2::Sha256::digest(id.as_bytes()));
        match std::fs::OpenOptions::new().write(true).create_new(true).open(taken.join(&digest[..32])) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    deliver(run_dir, name, data).map(Some)
}

/// The deliveries of `name` not yet moved to `consumed/`, in delivery order. A file that does
/// not read as a delivery (not ours) is skipped.
pub fn pending(run_dir: &Path, name: &str) -> std::io::Result<Vec<Delivery>> {
    let dir = signals_dir(run_dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
        .collect();
    files.sort();
    Ok(files
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .filter_map(|bytes| serde_json::from_slice::<Delivery>(&bytes).ok())
        .filter(|d| d.name == name)
        .collect())
}

/// Moves a consumed delivery out of the pending ones. Called after the journal records the
/// consumption; if the process dies first, the journal still says it was consumed.
pub fn mark_consumed(run_dir: &Path, id: &str) -> std::io::Result<()> {
    let dir = signals_dir(run_dir);
    let consumed = dir.join(CONSUMED_DIR);
    std::fs::create_dir_all(&consumed)?;
    match std::fs::rename(dir.join(format!("{id}.json")), consumed.join(format!("{id}.json"))) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deliveries_are_pending_in_order_until_consumed() {
        let dir = tempfile::tempdir().unwrap();
        let a = deliver(dir.path(), "agreement", json!({"agreed": false})).unwrap();
        let b = deliver(dir.path(), "agreement", json!({"agreed": true})).unwrap();
        deliver(dir.path(), "other", json!(1)).unwrap();
        let ids: Vec<String> = pending(dir.path(), "agreement").unwrap().into_iter().map(|d| d.id).collect();
        assert_eq!(ids, vec![a.id.clone(), b.id.clone()]);
        mark_consumed(dir.path(), &a.id).unwrap();
        mark_consumed(dir.path(), &a.id).unwrap();
        assert_eq!(pending(dir.path(), "agreement").unwrap(), vec![b]);
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_name("agreement") && valid_name("ci.done-1"));
        assert!(!valid_name("") && !valid_name("a/b") && !valid_name(&"x".repeat(65)));
    }
}
