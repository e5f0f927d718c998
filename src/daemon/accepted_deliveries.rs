//! The webhook deliveries the daemon accepted recently, by pipeline and `X-GitHub-Delivery` id,
//! so a redelivery of one does not run its pipeline a second time, also after a restart
//! (`<coord dir>/daemon/deliveries.json`).
//!
//! Owns the window an id is remembered for, the bound on how many are remembered (the oldest
//! go first), and the file (written whole to a sibling, then renamed). It must not decide what
//! a fire does: the dispatcher asks it before firing and tells it what it accepted.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

pub const DELIVERIES_FILE: &str = "deliveries.json";
/// GitHub lets a delivery be redelivered for three days.
pub const REMEMBERED_FOR: chrono::Duration = chrono::Duration::hours(72);
/// Most ids remembered; each accepted delivery started or queued a run, so this many in the
/// window is far beyond any project's pace.
pub const MOST_REMEMBERED: usize = 10_000;
/// GitHub's ids are UUIDs; a longer `X-GitHub-Delivery` is refused rather than remembered.
pub const LONGEST_DELIVERY_ID: usize = 128;
const FILE_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum DeliveriesError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a deliveries file ({reason})", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Accepted {
    pipeline: String,
    id: String,
    at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
struct DeliveriesFile {
    version: u32,
    /// Oldest first.
    deliveries: Vec<AcceptedRecord>,
}

/// One accepted delivery in the file; `at` is RFC 3339.
#[derive(Serialize, Deserialize)]
struct AcceptedRecord {
    pipeline: String,
    id: String,
    at: String,
}

#[derive(Debug)]
pub struct AcceptedDeliveries {
    window: chrono::Duration,
    capacity: usize,
    /// In the order they were accepted, oldest first.
    by_age: VecDeque<Accepted>,
    /// (pipeline, id) -> when it was accepted.
    index: HashMap<(String, String), DateTime<Utc>>,
}

impl Default for AcceptedDeliveries {
    fn default() -> Self {
        AcceptedDeliveries::new(REMEMBERED_FOR, MOST_REMEMBERED)
    }
}

impl AcceptedDeliveries {
    pub fn new(window: chrono::Duration, capacity: usize) -> Self {
        AcceptedDeliveries { window, capacity: capacity.max(1), by_age: VecDeque::new(), index: HashMap::new() }
    }

    /// When `id` was accepted for `pipeline`, if that is within the window of `now`.
    pub fn accepted_at(&mut self, pipeline: &str, id: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.forget_expired(now);
        self.index.get(&(pipeline.to_owned(), id.to_owned())).copied()
    }

    /// Remembers that `id` was accepted for `pipeline` at `now`; at the bound the oldest goes.
    pub fn remember(&mut self, pipeline: &str, id: &str, now: DateTime<Utc>) {
        self.forget_expired(now);
        let key = (pipeline.to_owned(), id.to_owned());
        if self.index.contains_key(&key) {
            return;
        }
        while self.by_age.len() >= self.capacity {
            self.forget_oldest();
        }
        self.index.insert(key, now);
        self.by_age.push_back(Accepted { pipeline: pipeline.to_owned(), id: id.to_owned(), at: now });
    }

    /// Forgets `id` for `pipeline`: what it fired never ran, so its redelivery may.
    pub fn forget(&mut self, pipeline: &str, id: &str) {
        if self.index.remove(&(pipeline.to_owned(), id.to_owned())).is_some() {
            self.by_age.retain(|a| !(a.pipeline == pipeline && a.id == id));
        }
    }

    pub fn len(&self) -> usize {
        self.by_age.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_age.is_empty()
    }

    fn forget_expired(&mut self, now: DateTime<Utc>) {
        // Accepted in time order: the first one still in the window ends the look. A wall clock
        // set back only keeps ids longer.
        while self.by_age.front().is_some_and(|oldest| oldest.at + self.window <= now) {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        if let Some(oldest) = self.by_age.pop_front() {
            self.index.remove(&(oldest.pipeline, oldest.id));
        }
    }

    /// Reads the file, keeping what is still in the window of `now`; no file remembers nothing.
    pub fn load(
        path: &Path,
        window: chrono::Duration,
        capacity: usize,
        now: DateTime<Utc>,
    ) -> Result<Self, DeliveriesError> {
        let mut deliveries = AcceptedDeliveries::new(window, capacity);
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(deliveries),
            Err(source) => return Err(DeliveriesError::Io { path: path.to_owned(), source }),
        };
        let file: DeliveriesFile = serde_json::from_str(&text)
            .map_err(|e| DeliveriesError::Corrupt { path: path.to_owned(), reason: e.to_string() })?;
        if file.version > FILE_VERSION {
            return Err(DeliveriesError::Corrupt {
                path: path.to_owned(),
                reason: format!("version {} is newer than this coord's {FILE_VERSION}", file.version),
            });
        }
        for record in file.deliveries {
            let at = DateTime::parse_from_rfc3339(&record.at)
                .map_err(|e| DeliveriesError::Corrupt {
                    path: path.to_owned(),
                    reason: format!("`{}`: {e}", record.at),
                })?
                .with_timezone(&Utc);
            if at + window > now {
                deliveries.remember(&record.pipeline, &record.id, at);
            }
        }
        Ok(deliveries)
    }

    pub fn save(&self, path: &Path) -> Result<(), DeliveriesError> {
        let io = |source| DeliveriesError::Io { path: path.to_owned(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let deliveries = self
            .by_age
            .iter()
            .map(|a| AcceptedRecord {
                pipeline: a.pipeline.clone(),
                id: a.id.clone(),
                at: a.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            })
            .collect();
        let file = DeliveriesFile { version: FILE_VERSION, deliveries };
        let text = serde_json::to_string(&file).expect("deliveries serialize") + "\n";
        let partial = path.with_extension("json.partial");
        std::fs::write(&partial, text).map_err(io)?;
        std::fs::rename(&partial, path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn an_id_is_remembered_for_the_window_and_per_pipeline() {
        let mut seen = AcceptedDeliveries::new(chrono::Duration::seconds(3600), 100);
        assert_eq!(seen.accepted_at("hook", "d-1", at(0)), None);
        seen.remember("hook", "d-1", at(0));
        assert_eq!(seen.accepted_at("hook", "d-1", at(1)), Some(at(0)));
        assert_eq!(seen.accepted_at("hook", "d-1", at(3599)), Some(at(0)));
        assert_eq!(seen.accepted_at("other", "d-1", at(1)), None, "ids are per pipeline");
        assert_eq!(seen.accepted_at("hook", "d-1", at(3600)), None, "the window is over");
        assert!(seen.is_empty(), "what is forgotten takes no memory");
    }

    #[test]
    fn remembering_again_keeps_the_first_time() {
        let mut seen = AcceptedDeliveries::new(chrono::Duration::seconds(3600), 100);
        seen.remember("hook", "d-1", at(0));
        seen.remember("hook", "d-1", at(10));
        assert_eq!(seen.len(), 1);
        assert_eq!(seen.accepted_at("hook", "d-1", at(20)), Some(at(0)));
    }

    #[test]
    fn a_forgotten_id_fires_again() {
        let mut seen = AcceptedDeliveries::new(chrono::Duration::seconds(3600), 100);
        seen.remember("hook", "d-1", at(0));
        seen.remember("hook", "d-2", at(1));
        seen.forget("hook", "d-1");
        seen.forget("hook", "never");
        assert_eq!(seen.accepted_at("hook", "d-1", at(2)), None);
        assert_eq!(seen.accepted_at("hook", "d-2", at(2)), Some(at(1)));
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn at_the_bound_the_oldest_id_goes_first() {
        let mut seen = AcceptedDeliveries::new(chrono::Duration::seconds(3600), 3);
        for (i, id) in ["a", "b", "c", "d"].into_iter().enumerate() {
            seen.remember("hook", id, at(i as i64));
        }
        assert_eq!(seen.len(), 3);
        assert_eq!(seen.accepted_at("hook", "a", at(5)), None);
        for id in ["b", "c", "d"] {
            assert!(seen.accepted_at("hook", id, at(5)).is_some(), "{id}");
        }
    }

    #[test]
    fn expired_ids_go_in_order_and_a_clock_set_back_forgets_nothing() {
        let mut seen = AcceptedDeliveries::new(chrono::Duration::seconds(100), 10);
        seen.remember("hook", "a", at(0));
        seen.remember("hook", "b", at(50));
        assert_eq!(seen.accepted_at("hook", "b", at(120)), Some(at(50)));
        assert_eq!(seen.len(), 1);
        assert_eq!(seen.accepted_at("hook", "b", at(-1000)), Some(at(50)));
    }

    #[test]
    fn the_file_round_trips_what_is_still_in_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon").join(DELIVERIES_FILE);
        let window = chrono::Duration::seconds(3600);
        let none = AcceptedDeliveries::load(&path, window, 10, at(0)).unwrap();
        assert!(none.is_empty());
        let mut seen = AcceptedDeliveries::new(window, 10);
        seen.remember("hook", "old", at(0));
        seen.remember("hook", "new", at(3000));
        seen.save(&path).unwrap();
        let mut back = AcceptedDeliveries::load(&path, window, 10, at(3500)).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back.accepted_at("hook", "new", at(3500)), Some(at(3000)));
        let later = AcceptedDeliveries::load(&path, window, 10, at(4000)).unwrap();
        assert_eq!(later.len(), 1, "`old` left the window while the daemon was down");
        // A smaller bound keeps the newest.
        let mut small = AcceptedDeliveries::load(&path, window, 1, at(3500)).unwrap();
        assert_eq!(small.accepted_at("hook", "old", at(3500)), None);
        assert!(small.accepted_at("hook", "new", at(3500)).is_some());
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DELIVERIES_FILE);
        std::fs::write(&path, "[1, 2").unwrap();
        let loaded = AcceptedDeliveries::load(&path, REMEMBERED_FOR, MOST_REMEMBERED, at(0));
        assert!(matches!(loaded, Err(DeliveriesError::Corrupt { .. })));
    }
}
