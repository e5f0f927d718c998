//! The project a coordinator runs in, as its script may see it: files of the repository
//! (`read_file`) and a small keyed store that outlives the run (`state::get`, `state::put`).
//!
//! Two backends. A live run uses [`DiskStore`]: files under the project root, and the state in
//! `.coord/state/<namespace>.json`, where the namespace is the run's pipeline, else its
//! coordinator. A scenario run uses [`MemoryStore`], seeded from the scenario's `[files]` and
//! `[state]`, so a test of a "continuing" run is deterministic and nothing on disk is touched.
//!
//! The conflict rule: **last writer wins, per key**. Every put takes an exclusive lock on the
//! state file, reads the file as it is now, changes its one key, and replaces the file
//! atomically (a temporary file, fsynced, renamed over it). Two runs writing different keys
//! never lose each other's writes; two runs writing the same key leave the later write, whole.
//! A compare-and-set would make every coordinator route on a conflict it can rarely resolve
//! better than by writing again; a coordinator that must not lose a concurrent run's work keeps
//! it under keys of its own (one per item) instead of one shared key.
//!
//! Each key's value is kept with the id of the write that put it (`<run id>:<call index>`), so
//! a resume that finds a put's intent without its result can tell whether the write happened.
//!
//! It must not journal (the host journals an intent before a put and its result after), and it
//! must not read or write anything outside the project root.

use serde_json::{json, Map, Value};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: not a coord state file ({reason}); fix or delete it (its keys are lost)")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("read_file: `{0}` is not a path inside the project (write it relative to the project root, without `..`)")]
    OutsideProject(String),
    #[error("{0}: no project store in this run")]
    Unavailable(&'static str),
}

/// Where a run's files and state come from.
pub enum ProjectStore {
    Disk(DiskStore),
    Memory(MemoryStore),
    /// A replay or a what-if: every answer comes from the journal.
    None,
}

impl ProjectStore {
    /// True when puts reach the disk: the journal is fsynced before each one.
    pub fn is_on_disk(&self) -> bool {
        matches!(self, ProjectStore::Disk(_))
    }

    /// A repository file's text, or `None` when there is no such file.
    pub fn read_file(&mut self, path: &str) -> Result<Option<String>, StoreError> {
        let relative = inside_project(path)?;
        match self {
            ProjectStore::Disk(d) => d.read_file(&relative),
            ProjectStore::Memory(m) => Ok(m.files.get(path).cloned()),
            ProjectStore::None => Err(StoreError::Unavailable("read_file")),
        }
    }

    /// A key's value; null when absent.
    pub fn get(&mut self, key: &str) -> Result<Value, StoreError> {
        match self {
            ProjectStore::Disk(d) => Ok(d.read()?.get(key).map(|slot| slot["value"].clone()).unwrap_or(Value::Null)),
            ProjectStore::Memory(m) => Ok(m.state.get(key).cloned().unwrap_or(Value::Null)),
            ProjectStore::None => Err(StoreError::Unavailable("state::get")),
        }
    }

    /// Sets a key (a null value removes it); `write_id` is kept with it for [`Self::already_put`].
    pub fn put(&mut self, key: &str, value: &Value, write_id: &str) -> Result<(), StoreError> {
        match self {
            ProjectStore::Disk(d) => d.put(key, value, write_id),
            ProjectStore::Memory(m) => {
                m.restore_put(key, value);
                m.writes.insert(key.to_owned(), write_id.to_owned());
                Ok(())
            }
            ProjectStore::None => Err(StoreError::Unavailable("state::put")),
        }
    }

    /// Whether the write `write_id` reached the key (and was not since replaced by another).
    pub fn already_put(&mut self, key: &str, write_id: &str) -> Result<bool, StoreError> {
        match self {
            ProjectStore::Disk(d) => Ok(d.read()?.get(key).and_then(|slot| slot["write"].as_str()) == Some(write_id)),
            ProjectStore::Memory(m) => Ok(m.writes.get(key).map(String::as_str) == Some(write_id)),
            ProjectStore::None => Ok(false),
        }
    }

    /// A put the recording holds, applied again to an in-memory store so a resumed scenario
    /// run sees the state its recorded prefix left. The disk keeps its own.
    pub fn restore_put(&mut self, key: &str, value: &Value) {
        if let ProjectStore::Memory(m) = self {
            m.restore_put(key, value);
        }
    }
}

/// A path the script names, checked to stay inside the project.
fn inside_project(path: &str) -> Result<PathBuf, StoreError> {
    let p = Path::new(path);
    let plain = !path.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if plain {
        Ok(p.to_owned())
    } else {
        Err(StoreError::OutsideProject(path.to_owned()))
    }
}

/// A scenario's files and state, in memory.
#[derive(Default)]
pub struct MemoryStore {
    pub files: indexmap::IndexMap<String, String>,
    pub state: indexmap::IndexMap<String, Value>,
    writes: indexmap::IndexMap<String, String>,
}

impl MemoryStore {
    pub fn new(files: indexmap::IndexMap<String, String>, state: indexmap::IndexMap<String, Value>) -> Self {
        MemoryStore { files, state, writes: Default::default() }
    }

    fn restore_put(&mut self, key: &str, value: &Value) {
        if value.is_null() {
            self.state.shift_remove(key);
        } else {
            self.state.insert(key.to_owned(), value.clone());
        }
    }
}

/// The project on disk: its files, and the state file of one namespace.
pub struct DiskStore {
    root: PathBuf,
    state_file: PathBuf,
}

impl DiskStore {
    /// The store of `namespace` in the project at `root`. Nothing is created until a put.
    pub fn new(root: &Path, namespace: &str) -> Self {
        let name: String =
            namespace.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
        DiskStore { root: root.to_owned(), state_file: state_dir(root).join(format!("{name}.json")) }
    }

    pub fn state_file(&self) -> &Path {
        &self.state_file
    }

    fn read_file(&self, relative: &Path) -> Result<Option<String>, StoreError> {
        let path = self.root.join(relative);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(StoreError::Io { path, error }),
        }
    }

    /// The file's keys, each `{"value": .., "write": ..}`; none when there is no file yet.
    fn read(&self) -> Result<Map<String, Value>, StoreError> {
        let text = match std::fs::read_to_string(&self.state_file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
            Err(error) => return Err(self.io(error)),
        };
        let corrupt = |reason: String| StoreError::Corrupt { path: self.state_file.clone(), reason };
        let file: Value = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        match file.get("keys") {
            Some(Value::Object(keys)) if keys.values().all(|slot| slot.get("value").is_some()) => Ok(keys.clone()),
            _ => Err(corrupt("expected {\"keys\": {KEY: {\"value\": .., \"write\": ..}}}".into())),
        }
    }

    /// Read, change one key, replace: under the state file's lock, so two runs never
    /// interleave (see the module's conflict rule).
    fn put(&self, key: &str, value: &Value, write_id: &str) -> Result<(), StoreError> {
        let dir = self.state_file.parent().expect("the state file is in a directory");
        std::fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        let _lock = StateLock::acquire(&self.state_file.with_extension("lock")).map_err(|e| self.io(e))?;
        let mut keys = self.read()?;
        if value.is_null() {
            keys.shift_remove(key);
        } else {
            keys.insert(key.to_owned(), json!({ "value": value, "write": write_id }));
        }
        let text = serde_json::to_string_pretty(&json!({ "keys": keys })).expect("JSON serializes");
        let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(|e| self.io(e))?;
        temp.write_all(text.as_bytes()).and_then(|_| temp.as_file().sync_all()).map_err(|e| self.io(e))?;
        temp.persist(&self.state_file).map_err(|e| self.io(e.error))?;
        // The rename is durable once the directory is.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn io(&self, error: std::io::Error) -> StoreError {
        StoreError::Io { path: self.state_file.clone(), error }
    }
}

/// `.coord/state` under a project root.
pub fn state_dir(root: &Path) -> PathBuf {
    root.join(".coord").join("state")
}

/// Held while a put reads and replaces the state file; closing the file releases the `flock`,
/// even when the process dies.
struct StateLock {
    _file: std::fs::File,
}

impl StateLock {
    fn acquire(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
        loop {
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(StateLock { _file: file });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn puts_keep_other_keys_and_remember_their_write() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = ProjectStore::Disk(DiskStore::new(dir.path(), "spec-to-merge"));
        assert_eq!(store.get("tickets").unwrap(), Value::Null);
        store.put("tickets", &json!([1]), "r1:3").unwrap();
        store.put("other", &json!("x"), "r2:1").unwrap();
        store.put("tickets", &json!([1, 2]), "r2:2").unwrap();
        assert_eq!(store.get("tickets").unwrap(), json!([1, 2]));
        assert_eq!(store.get("other").unwrap(), json!("x"));
        assert!(store.already_put("tickets", "r2:2").unwrap());
        assert!(!store.already_put("tickets", "r1:3").unwrap());
        store.put("other", &Value::Null, "r3:0").unwrap();
        assert_eq!(store.get("other").unwrap(), Value::Null);
    }

    #[test]
    fn a_corrupt_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = ProjectStore::Disk(DiskStore::new(dir.path(), "p"));
        std::fs::create_dir_all(state_dir(dir.path())).unwrap();
        std::fs::write(state_dir(dir.path()).join("p.json"), "{not json").unwrap();
        let err = store.get("k").unwrap_err().to_string();
        assert!(err.contains("p.json: not a coord state file"), "{err}");
    }

    #[test]
    fn files_outside_the_project_are_refused() {
        let mut store = ProjectStore::Memory(MemoryStore::default());
        for path in ["../x", "/etc/passwd", "a/../../b", ""] {
            assert!(matches!(store.read_file(path), Err(StoreError::OutsideProject(_))), "{path}");
        }
        assert_eq!(store.read_file("spec.md").unwrap(), None);
    }
}
