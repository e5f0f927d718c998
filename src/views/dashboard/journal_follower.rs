//! Follows one run's journal as it grows, for `coord serve`'s live run page.
//!
//! The journal is read whole once ([`RecordedRun::read`], the one definition of a readable
//! journal), then followed by byte offset: each look `stat`s the file and reads only the bytes
//! past what it has, keeping a torn last line until its end arrives. New entries are masked
//! ([`mask_entry`]) and added to the recorded run the way the reader indexes them, so a view
//! rebuilt from it is the view of the journal read whole. A file that shrank or was replaced
//! (`coord resume` cuts a `run_finished` line off) is read whole again.
//!
//! It only reads. Order checks are the reader's: appended lines are taken as the run's one
//! writer appended them, and a line that does not parse sends the follower back to a whole
//! read, which refuses a corrupt journal as every view does.

use crate::journal::entry::{Entry, Line};
use crate::journal::writer::JOURNAL_FILE;
use crate::journal::{JournalError, RecordedRun};
use crate::redaction::Redactor;
use crate::views::run_graph::{mask_entry, mask_recorded_run};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The most bytes one look reads; a journal further behind is caught up over several looks,
/// so memory stays bounded however fast a run writes.
const MOST_BYTES_PER_LOOK: u64 = 8 * 1024 * 1024;

pub struct JournalFollower {
    dir: PathBuf,
    path: PathBuf,
    /// The run as read so far, masked.
    run: RecordedRun,
    /// Bytes taken into `run`: the end of its last complete line.
    offset: u64,
    /// Bytes read past `offset`: the start of a line still being written.
    pending: Vec<u8>,
    inode: u64,
}

/// What one look at the journal found.
#[derive(Debug)]
pub enum Growth {
    Nothing,
    /// New entries (masked), each with the byte offset just past its line.
    Appended(Vec<(u64, Line)>),
    /// The file shrank or was replaced: the run was read whole again.
    Reread,
}

impl JournalFollower {
    pub fn open(dir: &Path, redactor: &Redactor) -> Result<Self, JournalError> {
        let path = dir.join(JOURNAL_FILE);
        let inode = std::fs::metadata(&path).map(|m| m.ino()).unwrap_or(0);
        let run = read_whole(dir, redactor)?;
        Ok(JournalFollower { dir: dir.to_owned(), path, offset: run.valid_len, run, pending: Vec::new(), inode })
    }

    pub fn run(&self) -> &RecordedRun {
        &self.run
    }

    /// Bytes of the journal taken in so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Looks at the journal once and takes in what was appended since the last look.
    pub fn look(&mut self, redactor: &Redactor) -> Result<Growth, JournalError> {
        let missing = |source| JournalError::Missing { path: self.path.clone(), source };
        let meta = std::fs::metadata(&self.path).map_err(missing)?;
        let seen = self.offset + self.pending.len() as u64;
        if meta.ino() != self.inode || meta.len() < seen {
            return self.reread(redactor);
        }
        if meta.len() == seen {
            return Ok(Growth::Nothing);
        }
        let mut file = std::fs::File::open(&self.path).map_err(missing)?;
        file.seek(SeekFrom::Start(seen)).map_err(missing)?;
        let want = (meta.len() - seen).min(MOST_BYTES_PER_LOOK);
        let mut fresh = Vec::with_capacity(want as usize);
        file.take(want).read_to_end(&mut fresh).map_err(missing)?;
        let mut bytes = std::mem::take(&mut self.pending);
        bytes.extend_from_slice(&fresh);
        let complete = match memchr::memrchr(b'\n', &bytes) {
            Some(i) => i + 1,
            None => {
                self.pending = bytes;
                return Ok(Growth::Nothing);
            }
        };
        self.pending = bytes[complete..].to_vec();
        let mut appended = Vec::new();
        let mut start = 0;
        for line in bytes[..complete].split_inclusive(|b| *b == b'\n') {
            let line_offset = self.offset + start as u64;
            start += line.len();
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let Ok(mut entry) = serde_json::from_slice::<Line>(line) else {
                // Whatever it is (a torn write, a corrupt journal), the reader says.
                return self.reread(redactor);
            };
            mask_entry(redactor, &mut entry.entry);
            let end = line_offset + line.len() as u64;
            add_entry(&mut self.run, entry.clone(), line_offset, end);
            appended.push((end, entry));
        }
        self.offset += complete as u64;
        Ok(if appended.is_empty() { Growth::Nothing } else { Growth::Appended(appended) })
    }

    fn reread(&mut self, redactor: &Redactor) -> Result<Growth, JournalError> {
        *self = JournalFollower::open(&self.dir, redactor)?;
        Ok(Growth::Reread)
    }
}

/// The journal read whole and masked. A torn last line of a run still being written is its
/// next entry on the way, not damage: the follower takes it in when its end arrives, so the
/// reader's warning about it is dropped (the reader's only warnings, when not recovering, are
/// about the last line).
fn read_whole(dir: &Path, redactor: &Redactor) -> Result<RecordedRun, JournalError> {
    let mut run = RecordedRun::read(dir)?;
    if run.finished.is_none() && crate::journal::run_dir::owner_alive(dir) {
        run.warnings.clear();
    }
    mask_recorded_run(redactor, &mut run);
    Ok(run)
}

/// Adds one entry to `run` as [`RecordedRun::read`] indexes the entries it reads.
fn add_entry(run: &mut RecordedRun, line: Line, offset: u64, end: u64) {
    match &line.entry {
        Entry::RunStarted { .. } => {}
        Entry::Call(_) | Entry::EffectIntent(_) => run.calls.push(line.clone()),
        Entry::Session(s) => {
            run.sessions.insert(s.session.clone(), s.result.clone());
        }
        Entry::EffectResult(r) => {
            run.effect_results.insert(r.call, r.result.clone());
        }
        Entry::RunFinished(f) => run.finished = Some(f.clone()),
    }
    run.entries.push(line);
    run.offsets.push(offset);
    run.valid_len = end;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::entry::{CallSite, RunHeader, RunStatus};
    use crate::journal::{CallKey, JournalWriter, JOURNAL_VERSION};
    use serde_json::{json, Value};
    use std::io::Write;

    fn header() -> RunHeader {
        RunHeader {
            version: JOURNAL_VERSION,
            run_id: "r1".into(),
            mode: crate::journal::RunMode::Scenario,
            ..Default::default()
        }
    }

    fn spawn(call: u64, id: &str) -> Entry {
        let key = CallKey::new("spawn_session", Some("wf"), &json!({"n": call}));
        Entry::call(
            call,
            "spawn_session",
            key,
            &CallSite::default(),
            json!({"goal": "g"}),
            Value::Null,
            Some(id.into()),
        )
    }

    /// What the follower has, as the whole reader would have it.
    fn assert_same_as_whole(f: &JournalFollower, dir: &Path) {
        let whole = RecordedRun::read(dir).unwrap();
        let json = |r: &RecordedRun| {
            (
                serde_json::to_string(&r.entries).unwrap(),
                serde_json::to_string(&r.calls).unwrap(),
                serde_json::to_string(&r.sessions).unwrap(),
                serde_json::to_string(&r.effect_results).unwrap(),
                serde_json::to_string(&r.finished).unwrap(),
                r.offsets.clone(),
                r.valid_len,
            )
        };
        assert_eq!(json(f.run()), json(&whole));
    }

    #[test]
    fn follows_appended_lines_byte_by_byte_and_rereads_a_cut_file() {
        let dir = tempfile::tempdir().unwrap();
        let redactor = Redactor::default();
        let mut w = JournalWriter::create(dir.path()).unwrap();
        w.append(Entry::run_started(header())).unwrap();
        w.sync().unwrap();
        drop(w);
        let mut f = JournalFollower::open(dir.path(), &redactor).unwrap();
        assert!(matches!(f.look(&redactor).unwrap(), Growth::Nothing));

        let mut lines = Vec::new();
        for entry in [
            spawn(0, "s1"),
            Entry::session("s1", json!({"id": "s1", "workflow": "wf", "status": "ok"})),
            Entry::run_finished(RunStatus::Succeeded, None, None, "t".into()),
        ] {
            let mut line = serde_json::to_vec(&Line { seq: lines.len() as u64 + 1, entry }).unwrap();
            line.push(b'\n');
            lines.push(line);
        }
        let path = dir.path().join(JOURNAL_FILE);
        let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        let mut seen = 0;
        // Written a few bytes at a time: a line is taken in only once its end arrives.
        for chunk in lines.concat().chunks(7) {
            file.write_all(chunk).unwrap();
            if let Growth::Appended(entries) = f.look(&redactor).unwrap() {
                seen += entries.len();
                assert!(entries.iter().all(|(end, _)| *end <= f.offset()));
            }
        }
        assert_eq!(seen, 3);
        assert_same_as_whole(&f, dir.path());
        assert!(f.run().finished.is_some());

        // `coord resume` cuts the last line off: read whole again.
        let len = std::fs::metadata(&path).unwrap().len();
        file.set_len(len - lines[2].len() as u64).unwrap();
        assert!(matches!(f.look(&redactor).unwrap(), Growth::Reread));
        assert!(f.run().finished.is_none());
        assert_same_as_whole(&f, dir.path());
    }

    #[test]
    fn a_corrupt_line_is_refused_as_the_reader_refuses_it() {
        let dir = tempfile::tempdir().unwrap();
        let redactor = Redactor::default();
        let mut w = JournalWriter::create(dir.path()).unwrap();
        w.append(Entry::run_started(header())).unwrap();
        w.sync().unwrap();
        drop(w);
        let mut f = JournalFollower::open(dir.path(), &redactor).unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{not json\n{\"seq\":2}\n").unwrap();
        assert!(matches!(f.look(&redactor), Err(JournalError::Corrupt { .. })));
    }
}
