//! What the daemon remembers between starts: per pipeline, the instant up to which every fire
//! time has been handled (`<coord dir>/daemon/state.json`). Fire times after it and before a
//! start were missed while the daemon was down; the catch-up policy decides which of them run.
//!
//! Owns the file format and writing it atomically (write a sibling, then rename). It must not
//! decide anything about fires: the dispatcher does.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const STATE_FILE: &str = "state.json";
const STATE_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a daemon state file ({reason})", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonState {
    pub version: u32,
    /// By pipeline name, sorted so the file diffs cleanly.
    pub pipelines: BTreeMap<String, PipelineState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineState {
    /// Every fire time up to here has been run, skipped or deliberately not caught up (RFC 3339).
    pub handled_until: String,
}

impl DaemonState {
    /// Reads the state; no file is an empty state.
    pub fn load(path: &Path) -> Result<Self, StateError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DaemonState::default()),
            Err(source) => return Err(StateError::Io { path: path.to_owned(), source }),
        };
        let state: DaemonState = serde_json::from_str(&text)
            .map_err(|e| StateError::Corrupt { path: path.to_owned(), reason: e.to_string() })?;
        if state.version > STATE_VERSION {
            return Err(StateError::Corrupt {
                path: path.to_owned(),
                reason: format!("version {} is newer than this coord's {STATE_VERSION}", state.version),
            });
        }
        Ok(state)
    }

    pub fn save(&mut self, path: &Path) -> Result<(), StateError> {
        self.version = STATE_VERSION;
        let io = |source| StateError::Io { path: path.to_owned(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let text = serde_json::to_string_pretty(self).expect("the state serializes") + "\n";
        let partial = path.with_extension("json.partial");
        std::fs::write(&partial, text).map_err(io)?;
        std::fs::rename(&partial, path).map_err(io)
    }

    pub fn handled_until(&self, pipeline: &str) -> Option<DateTime<Utc>> {
        let entry = self.pipelines.get(pipeline)?;
        DateTime::parse_from_rfc3339(&entry.handled_until).ok().map(|t| t.with_timezone(&Utc))
    }

    pub fn set_handled_until(&mut self, pipeline: &str, t: DateTime<Utc>) {
        let handled_until = t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        self.pipelines.insert(pipeline.to_owned(), PipelineState { handled_until });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_tolerates_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon").join(STATE_FILE);
        assert_eq!(DaemonState::load(&path).unwrap(), DaemonState::default());
        let mut state = DaemonState::default();
        let t = DateTime::parse_from_rfc3339("2026-11-21T09:00:00Z").unwrap().with_timezone(&Utc);
        state.set_handled_until("groom", t);
        state.save(&path).unwrap();
        let back = DaemonState::load(&path).unwrap();
        assert_eq!(back.handled_until("groom"), Some(t));
        assert_eq!(back.handled_until("other"), None);
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        std::fs::write(&path, "{ not json").unwrap();
        assert!(matches!(DaemonState::load(&path), Err(StateError::Corrupt { .. })));
    }
}
