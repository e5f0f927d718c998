//! The run's submission log, `<run_dir>/jobs.jsonl`: one line per job coord is about to
//! create (`{"job", "session", "attempt"}`), written and fsynced before the create request, so
//! a resumed run knows every job its first process may have started, even one the engine has
//! since forgotten (a Ray head restarted without persisted state answers 404 for it).
//!
//! It sits beside `journal.jsonl` rather than in it: the journal has one writer (the host, on
//! the script thread) and a strict order of entries, while submissions happen on the
//! scheduler's tasks, which never touch the journal.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const FILE: &str = "jobs.jsonl";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    pub job: String,
    pub session: String,
    pub attempt: u32,
}

#[derive(Debug)]
pub struct SubmissionLog {
    path: PathBuf,
    lock: std::sync::Mutex<()>,
}

impl SubmissionLog {
    pub fn new(run_dir: &Path) -> Self {
        SubmissionLog { path: run_dir.join(FILE), lock: std::sync::Mutex::new(()) }
    }

    /// Appends one submission and waits for it to reach the disk.
    pub fn record(&self, submission: &Submission) -> std::io::Result<()> {
        let _held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        let mut line = serde_json::to_vec(submission).map_err(std::io::Error::other)?;
        line.push(b'\n');
        file.write_all(&line)?;
        file.sync_data()
    }

    /// Every submission recorded, by session (a torn last line is skipped).
    pub fn read(&self) -> BTreeMap<String, Vec<Submission>> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let mut by_session: BTreeMap<String, Vec<Submission>> = BTreeMap::new();
        for line in text.lines() {
            if let Ok(s) = serde_json::from_str::<Submission>(line) {
                by_session.entry(s.session.clone()).or_default().push(s);
            }
        }
        by_session
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submissions_are_read_back_by_session_and_a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let log = SubmissionLog::new(dir.path());
        let s = |session: &str, attempt| Submission {
            job: format!("j-{session}-{attempt}"),
            session: session.into(),
            attempt,
        };
        log.record(&s("s1", 1)).unwrap();
        log.record(&s("s2", 1)).unwrap();
        log.record(&s("s1", 2)).unwrap();
        std::fs::OpenOptions::new().append(true).open(dir.path().join(FILE)).unwrap().write_all(b"{\"job\":").unwrap();
        let read = log.read();
        assert_eq!(read["s1"], vec![s("s1", 1), s("s1", 2)]);
        assert_eq!(read["s2"], vec![s("s2", 1)]);
    }
}
