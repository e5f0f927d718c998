//! What a readable journal is, and a [`RecordedRun`]: every entry of one, typed ([`Line`]s).
//!
//! A journal has one reader, [`AnswerIndex`](super::AnswerIndex): it walks the lines
//! ([`scan_lines`]), reads each one ([`read_line`]: its flat fields, then its place in the
//! [`EntryOrder`]) and indexes what replay asks for. A [`RecordedRun`] is built from an index
//! that kept where every line is, so replay, resume and the views agree on what a readable
//! journal is. A torn last line (the process died mid-write) is dropped with a warning. A bad
//! line in the middle, an entry out of its place (duplicated, deleted, moved, missing a
//! field), or a journal of a newer format version, is refused with a clear error unless the
//! caller asks to recover the valid prefix. Reading never panics on any input.

use super::answer_index::AnswerIndex;
use super::entry::{Entry, EntryKind, Line, LineFields, RunFinishedEntry, RunHeader, RunStatus, JOURNAL_VERSION};
use super::writer::JOURNAL_FILE;
use indexmap::IndexMap;
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("no journal at {path}: {source}")]
    Missing { path: PathBuf, source: std::io::Error },
    #[error("{path} is empty: the run never started")]
    Empty { path: PathBuf },
    #[error(
        "{path}:{line}: corrupt journal entry ({reason}); pass --recover to keep the {valid} valid entries before it"
    )]
    Corrupt { path: PathBuf, line: usize, reason: String, valid: usize },
    #[error("{path} has journal format version {found}; this coord reads version {JOURNAL_VERSION} (upgrade coord)")]
    UnsupportedVersion { path: PathBuf, found: u32 },
    #[error("{path}: the first entry is not `run_started`")]
    NoHeader { path: PathBuf },
    #[error("{path}: reading the journal stopped before its end")]
    Unfinished { path: PathBuf },
}

/// Everything a journal says about a run, indexed for replay and views.
#[derive(Debug, Clone)]
pub struct RecordedRun {
    pub dir: PathBuf,
    pub header: RunHeader,
    /// All entries in file order.
    pub entries: Vec<Line>,
    /// Call and effect-intent entries in call order (index = call number).
    pub calls: Vec<Line>,
    /// Session results by session id.
    pub sessions: IndexMap<String, Value>,
    /// Effect results by call number.
    pub effect_results: IndexMap<u64, Value>,
    pub finished: Option<RunFinishedEntry>,
    /// Byte length of the valid prefix (what a resumed writer keeps).
    pub valid_len: u64,
    /// Byte offset at which each entry starts, parallel to `entries`.
    pub offsets: Vec<u64>,
    /// Warnings met while reading (a dropped torn line, a recovered prefix).
    pub warnings: Vec<String>,
    next_seq: u64,
}

impl RecordedRun {
    pub fn status(&self) -> RunStatus {
        self.finished.as_ref().map_or(RunStatus::Running, |f| f.status)
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn read(dir: &Path) -> Result<Self, JournalError> {
        Self::read_with(dir, false)
    }

    /// Reads a journal through the one reader, [`AnswerIndex`] (which checks every line's place
    /// and drops a torn tail), then builds each entry's typed form.
    pub fn read_with(dir: &Path, recover: bool) -> Result<Self, JournalError> {
        let index = AnswerIndex::read_every_line(dir, recover)?;
        let mut entries: Vec<Line> = Vec::new();
        let mut offsets: Vec<u64> = Vec::new();
        for (number, (offset, bytes)) in index.lines().enumerate() {
            // Every line was read and placed by the index; building its typed form can only
            // fail on a payload the index did not parse, which makes the line corrupt too.
            let line = serde_json::from_slice::<Line>(bytes).map_err(|e| JournalError::Corrupt {
                path: dir.join(JOURNAL_FILE),
                line: number + 1,
                reason: e.to_string(),
                valid: number,
            })?;
            entries.push(line);
            offsets.push(offset);
        }
        let mut calls = Vec::new();
        let mut sessions = IndexMap::new();
        let mut effect_results = IndexMap::new();
        let mut finished = None;
        for line in &entries {
            match &line.entry {
                Entry::RunStarted { .. } => {}
                Entry::Call(_) | Entry::EffectIntent(_) => calls.push(line.clone()),
                Entry::Session(s) => {
                    sessions.insert(s.session.clone(), s.result.clone());
                }
                Entry::EffectResult(r) => {
                    effect_results.insert(r.call, r.result.clone());
                }
                Entry::RunFinished(f) => finished = Some(f.clone()),
            }
        }
        Ok(RecordedRun {
            dir: dir.to_owned(),
            header: index.header.clone(),
            entries,
            calls,
            sessions,
            effect_results,
            finished,
            valid_len: index.valid_len,
            offsets,
            warnings: index.warnings.clone(),
            next_seq: index.next_seq,
        })
    }
}

/// Reads one line: its flat fields, then its place in the journal's order. Every reader reads
/// lines through this.
pub(super) fn read_line<'a>(line: &'a [u8], order: &mut EntryOrder) -> Result<LineFields<'a>, LineError> {
    let fields: LineFields<'a> = serde_json::from_slice(line)?;
    order.check(&fields.place())?;
    Ok(fields)
}

/// Why a line was refused.
#[derive(Debug, thiserror::Error)]
pub(super) enum LineError {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// Parsed, but not where the journal's order allows it.
    #[error("{0}")]
    Order(String),
}

/// What one entry says about its place in the journal.
pub(super) struct EntryPlace<'a> {
    pub seq: u64,
    pub kind: EntryKind,
    pub call: Option<u64>,
    pub session: Option<&'a str>,
    pub has_function: bool,
    pub has_key: bool,
    pub has_result: bool,
    pub has_status: bool,
    pub has_header: bool,
}

/// The order a journal's entries must keep, checked line by line. A writer only ever appends,
/// so a journal that breaks it was edited, spliced or copied wrongly, and answering from it
/// would hand a script answers that belong elsewhere:
/// - `seq` counts the lines from 0 (a duplicated, deleted or moved line breaks it);
/// - one `run_started`, first; nothing after `run_finished`;
/// - calls and effect intents are numbered from 0 in order, with their function and key;
/// - a spawn names the next session (`s1`, `s2`, ...); a `session` entry finishes a spawned,
///   unfinished session; an `effect_result` answers an intent that has none yet.
#[derive(Default)]
pub(super) struct EntryOrder {
    lines: u64,
    calls: u64,
    spawned: u64,
    /// Which spawned sessions have finished, by number - 1.
    finished_sessions: Vec<bool>,
    /// Effect intents awaiting their result.
    open_intents: std::collections::HashSet<u64>,
    ended: bool,
}

impl EntryOrder {
    pub fn check(&mut self, e: &EntryPlace<'_>) -> Result<(), LineError> {
        let fail = |why: String| Err(LineError::Order(why));
        if e.seq != self.lines {
            return fail(format!(
                "entry seq {} where {} was due: a line was duplicated, deleted or moved",
                e.seq, self.lines
            ));
        }
        if self.ended {
            return fail("an entry after the run's `run_finished`".into());
        }
        self.lines += 1;
        match e.kind {
            EntryKind::RunStarted if e.seq == 0 && e.has_header => {}
            EntryKind::RunStarted => return fail("a second run header, or one without its fields".into()),
            EntryKind::Call | EntryKind::EffectIntent => {
                if e.call != Some(self.calls) {
                    return fail(match e.call {
                        Some(n) => format!("call {n} where call {} was due", self.calls),
                        None => "a call without its number".into(),
                    });
                }
                if !e.has_function || !e.has_key {
                    return fail(format!("call {} without its function or key", self.calls));
                }
                // A call's result may be `null` (a spawn's, an unset input's): not checked.
                if e.kind == EntryKind::EffectIntent {
                    self.open_intents.insert(self.calls);
                } else if let Some(id) = e.session {
                    if session_number(id) != Some(self.spawned + 1) {
                        return fail(format!("spawn of session `{id}` where s{} was due", self.spawned + 1));
                    }
                    self.spawned += 1;
                    self.finished_sessions.push(false);
                }
                self.calls += 1;
            }
            EntryKind::Session => {
                let (Some(id), true) = (e.session, e.has_result) else {
                    return fail("a session result without its session or result".into());
                };
                let slot = session_number(id)
                    .and_then(|n| usize::try_from(n).ok()?.checked_sub(1))
                    .and_then(|i| self.finished_sessions.get_mut(i));
                match slot {
                    Some(done) if !*done => *done = true,
                    Some(_) => return fail(format!("session `{id}` finished twice")),
                    None => return fail(format!("a result for session `{id}`, which was never spawned")),
                }
            }
            EntryKind::EffectResult => {
                let Some(call) = e.call.filter(|_| e.has_result) else {
                    return fail("an effect result without its call or result".into());
                };
                if !self.open_intents.remove(&call) {
                    return fail(format!("a result for call {call}, which is no effect awaiting one"));
                }
            }
            EntryKind::RunFinished if e.has_status => self.ended = true,
            EntryKind::RunFinished => return fail("a `run_finished` without its status".into()),
        }
        Ok(())
    }
}

/// `s7` → 7.
fn session_number(id: &str) -> Option<u64> {
    id.strip_prefix('s')?.parse().ok()
}

/// What [`scan_lines`] kept.
pub(super) struct Scanned {
    /// Byte length of the valid prefix.
    pub valid_len: u64,
    pub warnings: Vec<String>,
}

/// Walks a journal's lines, handing each complete non-blank line and its byte offset to
/// `parse`. A torn last line is dropped with a warning; a line `parse` rejects in the middle
/// is refused, or ends the valid prefix when `recover` is set. Both journal readers share it,
/// so they agree on what a readable journal is.
pub(super) fn scan_lines(
    path: &Path,
    bytes: &[u8],
    recover: bool,
    mut parse: impl FnMut(&[u8], usize) -> Result<(), LineError>,
) -> Result<Scanned, JournalError> {
    let mut warnings = Vec::new();
    let mut offset = 0usize;
    let mut valid_len = 0u64;
    let mut line_no = 0usize;
    let mut parsed = 0usize;
    while offset < bytes.len() {
        line_no += 1;
        let rest = &bytes[offset..];
        let (line, complete) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], true),
            None => (rest, false),
        };
        let next = offset + line.len() + usize::from(complete);
        if line.iter().all(u8::is_ascii_whitespace) {
            offset = next;
            if complete {
                valid_len = next as u64;
            }
            continue;
        }
        if !complete {
            warnings.push(format!(
                "{}:{line_no}: dropped a torn last entry ({} bytes): the run was cut off mid-write",
                path.display(),
                line.len()
            ));
            break;
        }
        match parse(line, offset) {
            Ok(()) => {
                parsed += 1;
                valid_len = next as u64;
            }
            Err(err) => {
                let is_last = next >= bytes.len();
                if is_last && !recover && matches!(err, LineError::Json(_)) {
                    // A complete but unparsable final line is also a torn write (the newline
                    // of a partial write can land before the rest of the record).
                    warnings.push(format!("{}:{line_no}: dropped an unreadable last entry: {err}", path.display()));
                    break;
                }
                if recover {
                    warnings.push(format!(
                        "{}:{line_no}: corrupt entry; recovered the {parsed} entries before it",
                        path.display()
                    ));
                    break;
                }
                return Err(JournalError::Corrupt {
                    path: path.to_owned(),
                    line: line_no,
                    reason: err.to_string(),
                    valid: parsed,
                });
            }
        }
        offset = next;
    }
    Ok(Scanned { valid_len, warnings })
}

/// The run header from the first entry, refusing a journal that does not start with one or
/// was written by a newer coord.
pub(super) fn check_header(
    path: &Path,
    first_kind: Option<EntryKind>,
    header: Option<RunHeader>,
) -> Result<RunHeader, JournalError> {
    let kind = first_kind.ok_or_else(|| JournalError::Empty { path: path.to_owned() })?;
    if kind != EntryKind::RunStarted {
        return Err(JournalError::NoHeader { path: path.to_owned() });
    }
    let header = header.ok_or_else(|| JournalError::NoHeader { path: path.to_owned() })?;
    if header.version > JOURNAL_VERSION || header.version == 0 {
        return Err(JournalError::UnsupportedVersion { path: path.to_owned(), found: header.version });
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::entry::CallSite;
    use crate::journal::{CallKey, JournalWriter};
    use serde_json::json;

    fn header() -> RunHeader {
        RunHeader {
            version: JOURNAL_VERSION,
            run_id: "r1".into(),
            mode: crate::journal::RunMode::Scenario,
            ..Default::default()
        }
    }

    fn write_run(dir: &Path) {
        let mut w = JournalWriter::create(dir).unwrap();
        w.append(Entry::run_started(header())).unwrap();
        let key = CallKey::new("spawn_session", Some("w"), &json!({}));
        w.append(Entry::call(0, "spawn_session", key, &CallSite::default(), json!({}), Value::Null, Some("s1".into())))
            .unwrap();
        w.append(Entry::session("s1", json!({"status": "ok"}))).unwrap();
        w.append(Entry::run_finished(RunStatus::Succeeded, None, None, "t".into())).unwrap();
        w.sync().unwrap();
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        write_run(dir.path());
        let run = RecordedRun::read(dir.path()).unwrap();
        assert_eq!(run.calls.len(), 1);
        assert_eq!(run.sessions["s1"], json!({"status": "ok"}));
        assert_eq!(run.status(), RunStatus::Succeeded);
        assert_eq!(run.next_seq(), 4);
        assert!(run.warnings.is_empty());
    }

    #[test]
    fn torn_last_line_is_dropped_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        write_run(dir.path());
        let path = dir.path().join(JOURNAL_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let full = bytes.len();
        bytes.truncate(full - 10);
        std::fs::write(&path, &bytes).unwrap();
        let run = RecordedRun::read(dir.path()).unwrap();
        assert_eq!(run.status(), RunStatus::Running);
        assert_eq!(run.warnings.len(), 1);
        assert!(run.warnings[0].contains("torn"));
        assert!((run.valid_len as usize) < bytes.len());
    }

    #[test]
    fn garbage_in_the_middle_is_refused_or_recovered() {
        let dir = tempfile::tempdir().unwrap();
        write_run(dir.path());
        let path = dir.path().join(JOURNAL_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.insert(2, "{not json");
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        match RecordedRun::read(dir.path()) {
            Err(JournalError::Corrupt { line, valid, .. }) => {
                assert_eq!(line, 3);
                assert_eq!(valid, 2);
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        let run = RecordedRun::read_with(dir.path(), true).unwrap();
        assert_eq!(run.entries.len(), 2);
        assert_eq!(run.warnings.len(), 1);
    }

    #[test]
    fn future_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = JournalWriter::create(dir.path()).unwrap();
        w.append(Entry::run_started(RunHeader { version: JOURNAL_VERSION + 1, ..header() })).unwrap();
        drop(w);
        assert!(matches!(
            RecordedRun::read(dir.path()),
            Err(JournalError::UnsupportedVersion { found, .. }) if found == JOURNAL_VERSION + 1
        ));
    }

    #[test]
    fn empty_and_missing_journals_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(RecordedRun::read(dir.path()), Err(JournalError::Missing { .. })));
        std::fs::write(dir.path().join(JOURNAL_FILE), b"").unwrap();
        assert!(matches!(RecordedRun::read(dir.path()), Err(JournalError::Empty { .. })));
        std::fs::write(dir.path().join(JOURNAL_FILE), b"\xff\xfe garbage").unwrap();
        assert!(RecordedRun::read(dir.path()).is_err());
    }
}
