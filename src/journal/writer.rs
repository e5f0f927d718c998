//! Appends entries to `journal.jsonl`.
//!
//! Durability is tiered, because an fsync per entry would dominate a large run:
//! - every entry goes into a userspace buffer;
//! - `flush` hands the buffer to the OS, which survives a kill -9 of this process;
//! - `sync` also fsyncs, which survives power loss. The host syncs before an external effect and
//!   at await boundaries (group commit: one fsync covers everything written since the last).
//!
//! Every line is masked before it is written (`crate::redaction`): no credential reaches the
//! journal, whatever a result, an effect's error or an input holds.

use super::entry::{CallEntry, CallSite, Entry, EntryKind};
use super::CallKey;
use crate::redaction::Redactor;
use serde_json::Value;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

enum Sink {
    File(BufWriter<File>),
    /// Journal kept in memory only; used by the journaling-overhead benchmark.
    Memory(Vec<u8>),
}

pub struct JournalWriter {
    sink: Sink,
    /// The line being written, serialized here to be masked before it goes to the sink.
    line: Vec<u8>,
    redactor: std::sync::Arc<Redactor>,
    next_seq: u64,
    path: Option<PathBuf>,
    dirty_since_sync: bool,
    last_flush: std::time::Instant,
}

pub const JOURNAL_FILE: &str = "journal.jsonl";

impl JournalWriter {
    /// Creates a new journal; fails if one already exists.
    pub fn create(run_dir: &Path) -> io::Result<Self> {
        Self::create_file(run_dir.join(JOURNAL_FILE))
    }

    /// Starts a new run's journal with its first entry, atomically: the journal is written and
    /// synced under another name, then renamed, so it exists whole or not at all. A run killed
    /// while starting leaves no empty journal for `resume` to refuse.
    pub fn start(run_dir: &Path, header: Entry) -> io::Result<Self> {
        let mut writer = Self::create_file(run_dir.join(format!(".{JOURNAL_FILE}.new")))?;
        writer.append(header)?;
        writer.sync()?;
        let path = run_dir.join(JOURNAL_FILE);
        if let Some(staged) = &writer.path {
            std::fs::rename(staged, &path)?;
        }
        writer.path = Some(path);
        Ok(writer)
    }

    fn create_file(path: PathBuf) -> io::Result<Self> {
        let file = OpenOptions::new().write(true).create_new(true).open(&path)?;
        Ok(JournalWriter {
            sink: Sink::File(BufWriter::with_capacity(64 * 1024, file)),
            line: Vec::new(),
            redactor: crate::redaction::process(),
            next_seq: 0,
            path: Some(path),
            dirty_since_sync: false,
            last_flush: std::time::Instant::now(),
        })
    }

    /// Opens an existing journal to continue it. `valid_len` is the byte length of its valid
    /// prefix (a torn last line is cut off) and `next_seq` the sequence number to continue with.
    pub fn append_to(run_dir: &Path, valid_len: u64, next_seq: u64) -> io::Result<Self> {
        let path = run_dir.join(JOURNAL_FILE);
        let file = OpenOptions::new().write(true).open(&path)?;
        file.set_len(valid_len)?;
        let mut file = file;
        use std::io::Seek;
        file.seek(io::SeekFrom::End(0))?;
        Ok(JournalWriter {
            sink: Sink::File(BufWriter::with_capacity(64 * 1024, file)),
            line: Vec::new(),
            redactor: crate::redaction::process(),
            next_seq,
            path: Some(path),
            dirty_since_sync: false,
            last_flush: std::time::Instant::now(),
        })
    }

    pub fn in_memory() -> Self {
        JournalWriter {
            sink: Sink::Memory(Vec::new()),
            line: Vec::new(),
            redactor: crate::redaction::process(),
            next_seq: 0,
            path: None,
            dirty_since_sync: false,
            last_flush: std::time::Instant::now(),
        }
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Appends a `call` entry the caller keeps, for one that still needs its payload (saves
    /// copying a large read before journaling it).
    pub fn append_call_entry(&mut self, call: &CallEntry) -> io::Result<u64> {
        #[derive(serde::Serialize)]
        struct CallEntryLine<'a> {
            seq: u64,
            #[serde(rename = "type")]
            kind: EntryKind,
            #[serde(flatten)]
            call: &'a CallEntry,
        }
        let seq = self.next_seq;
        self.write_line(&CallEntryLine { seq, kind: EntryKind::Call, call })?;
        Ok(seq)
    }

    /// Appends one entry, assigning its sequence number, and returns that number.
    pub fn append(&mut self, entry: Entry) -> io::Result<u64> {
        #[derive(serde::Serialize)]
        struct EntryLine<'a> {
            seq: u64,
            #[serde(flatten)]
            entry: &'a Entry,
        }
        let seq = self.next_seq;
        self.write_line(&EntryLine { seq, entry: &entry })?;
        Ok(seq)
    }

    /// Appends a `session` entry whose result is serialized straight from `result`: the same
    /// line as `append(Entry::session(id, to_value(result)))`, without building the JSON tree.
    pub fn append_session(&mut self, id: &str, result: &impl serde::Serialize) -> io::Result<u64> {
        #[derive(serde::Serialize)]
        struct SessionLine<'a, R> {
            seq: u64,
            #[serde(rename = "type")]
            kind: EntryKind,
            result: &'a R,
            session: &'a str,
        }
        let seq = self.next_seq;
        self.write_line(&SessionLine { seq, kind: EntryKind::Session, result, session: id })?;
        Ok(seq)
    }

    /// Appends a `call` entry from borrowed parts: the same line as `append(Entry::call(..))`,
    /// without copying the arguments first (a spawn's arguments stay with its session).
    pub fn append_call(
        &mut self,
        call: u64,
        function: &str,
        key: &CallKey,
        site: &CallSite,
        args: &Value,
        session: Option<&str>,
    ) -> io::Result<u64> {
        #[derive(serde::Serialize)]
        struct CallLine<'a> {
            seq: u64,
            #[serde(rename = "type")]
            kind: EntryKind,
            call: u64,
            #[serde(rename = "fn")]
            function: &'a str,
            key: &'a CallKey,
            #[serde(skip_serializing_if = "Option::is_none")]
            pos: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            source: Option<&'a str>,
            args: &'a Value,
            result: Value,
            #[serde(skip_serializing_if = "Option::is_none")]
            session: Option<&'a str>,
        }
        let seq = self.next_seq;
        self.write_line(&CallLine {
            seq,
            kind: EntryKind::Call,
            call,
            function,
            key,
            pos: site.pos_string(),
            source: site.source.as_deref(),
            args,
            result: Value::Null,
            session,
        })?;
        Ok(seq)
    }

    fn write_line(&mut self, entry: &impl serde::Serialize) -> io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, entry)?;
        self.line.push(b'\n');
        let line = self.redactor.mask_json(&self.line);
        match &mut self.sink {
            Sink::File(w) => w.write_all(&line)?,
            Sink::Memory(buf) => buf.extend_from_slice(&line),
        }
        self.next_seq += 1;
        self.dirty_since_sync = true;
        Ok(())
    }

    /// Hands buffered entries to the OS: they survive the death of this process.
    pub fn flush(&mut self) -> io::Result<()> {
        self.last_flush = std::time::Instant::now();
        match &mut self.sink {
            Sink::File(w) => w.flush(),
            Sink::Memory(_) => Ok(()),
        }
    }

    /// Flushes unless the last flush was less than `age` ago.
    pub fn flush_if_older_than(&mut self, age: std::time::Duration) -> io::Result<()> {
        if self.last_flush.elapsed() >= age {
            self.flush()
        } else {
            Ok(())
        }
    }

    /// Flushes and fsyncs, if anything was written since the last sync.
    pub fn sync(&mut self) -> io::Result<()> {
        if !self.dirty_since_sync {
            return Ok(());
        }
        self.flush()?;
        if let Sink::File(w) = &mut self.sink {
            w.get_ref().sync_data()?;
        }
        self.dirty_since_sync = false;
        Ok(())
    }
}

impl Drop for JournalWriter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_session_line_written_straight_equals_the_entry() {
        let result = json!({"id": "s1", "workflow": "w", "status": "ok", "output": {"a": [1, "b"]}});
        let mut direct = JournalWriter::in_memory();
        direct.append_session("s1", &result).unwrap();
        let mut via_entry = JournalWriter::in_memory();
        via_entry.append(Entry::session("s1", result)).unwrap();
        let (Sink::Memory(a), Sink::Memory(b)) = (&direct.sink, &via_entry.sink) else { unreachable!() };
        assert_eq!(String::from_utf8_lossy(a), String::from_utf8_lossy(b));
        assert_eq!(direct.next_seq(), 1);
    }

    #[test]
    fn lines_are_masked_and_stay_json() {
        let mut journal = JournalWriter::in_memory();
        let result = json!({"error": "401: Bad credentials for Bearer ghp_abcdefghijklmnopqrstuvwxyz0123456789\n"});
        journal.append_session("s1", &result).unwrap();
        let Sink::Memory(bytes) = &journal.sink else { unreachable!() };
        let line: Value = serde_json::from_slice(bytes).unwrap();
        assert_eq!(line["result"]["error"], "401: Bad credentials for Bearer [redacted]\n");
    }

    #[test]
    fn a_call_line_written_from_borrowed_parts_equals_the_entry() {
        let args = json!({"goal": "g", "inputs": {"pr": 1}});
        let key = CallKey::new("spawn_session", Some("w"), &args);
        for source in [None, Some("lib/x.rhai".to_owned())] {
            let site = CallSite { line: 3, col: 7, source };
            let mut direct = JournalWriter::in_memory();
            direct.append_call(4, "spawn_session", &key, &site, &args, Some("s1")).unwrap();
            let mut via_entry = JournalWriter::in_memory();
            let entry =
                Entry::call(4, "spawn_session", key.clone(), &site, args.clone(), Value::Null, Some("s1".into()));
            via_entry.append(entry).unwrap();
            let (Sink::Memory(a), Sink::Memory(b)) = (&direct.sink, &via_entry.sink) else { unreachable!() };
            assert_eq!(String::from_utf8_lossy(a), String::from_utf8_lossy(b));
        }
    }
}
