//! A journal read for answering a script's calls again (replay, what-if, resume).
//!
//! Every line is checked exactly as [`RecordedRun`](super::RecordedRun) checks it (torn last
//! line dropped, corrupt middle refused or recovered, unknown version refused), but only the
//! small fields are parsed: call keys, positions, session ids. Arguments and results stay as
//! byte ranges of the file and are parsed when a call asks for them, once. A 10,000-PR run's
//! journal is 22 MB of mostly payload; parsing all of it into JSON values up front cost more
//! than the replay itself and held ten times the file size in memory.
//!
//! It must not interpret what a call means: that is the host's business.

use super::entry::{Entry, EntryKind, RunHeader, RunStatus};
use super::reader::{check_header, scan_lines, JournalError};
use super::writer::JOURNAL_FILE;
use super::CallKey;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One line, with its payloads borrowed from the file rather than parsed.
#[derive(Deserialize)]
struct LineFields<'a> {
    seq: u64,
    #[serde(rename = "type")]
    kind: EntryKind,
    #[serde(default)]
    header: Option<RunHeader>,
    #[serde(default)]
    call: Option<u64>,
    #[serde(default, rename = "fn", borrow)]
    function: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    key: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pos: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    source: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    args: Option<&'a RawValue>,
    #[serde(default, borrow)]
    result: Option<&'a RawValue>,
    #[serde(default, borrow)]
    session: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    idempotency_key: Option<Cow<'a, str>>,
    #[serde(default)]
    status: Option<RunStatus>,
}

/// A string field of a line: where its text sits in the file or, when JSON escapes make the
/// text differ from its bytes, a copy. Nearly every field is the former, so reading a 56,000-call
/// journal allocates no strings.
#[derive(Clone, Debug)]
enum Text {
    At(Range<usize>),
    Copied(Box<str>),
}

/// A call or effect intent, as the journal recorded it; its strings are read through the
/// [`AnswerIndex`] that holds the file.
#[derive(Clone, Debug)]
pub struct RecordedCall {
    pub seq: u64,
    pub kind: EntryKind,
    pub call: Option<u64>,
    function: Option<Text>,
    key: Option<Text>,
    pos: Option<Text>,
    source: Option<Text>,
    session: Option<Text>,
    idempotency_key: Option<Text>,
    args: Option<Range<usize>>,
    result: Option<Range<usize>>,
}

/// What answering calls needs from a journal, indexed; payloads parsed on demand.
pub struct AnswerIndex {
    pub dir: PathBuf,
    pub header: RunHeader,
    /// Calls and effect intents in call order (index = call number).
    pub calls: Vec<RecordedCall>,
    /// Session results by session id.
    sessions: HashMap<String, Range<usize>>,
    /// Effect results by call number.
    effect_results: HashMap<u64, Range<usize>>,
    pub finished: Option<RunStatus>,
    /// Byte length of the valid prefix (what a resumed writer keeps).
    pub valid_len: u64,
    pub next_seq: u64,
    /// Warnings met while reading (a dropped torn line, a recovered prefix).
    pub warnings: Vec<String>,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for AnswerIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerIndex")
            .field("dir", &self.dir)
            .field("calls", &self.calls.len())
            .field("sessions", &self.sessions.len())
            .field("effect_results", &self.effect_results.len())
            .field("bytes", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// Where a borrowed slice of `line` (which starts at `line_start` in the file) sits in the file.
fn span_of(raw: &RawValue, line: &[u8], line_start: usize) -> Range<usize> {
    range_in(raw.get(), line, line_start)
}

fn range_in(text: &str, line: &[u8], line_start: usize) -> Range<usize> {
    let start = line_start + (text.as_ptr() as usize - line.as_ptr() as usize);
    start..start + text.len()
}

/// A string field as a [`Text`]: borrowed text is a slice of `line`, so only its place is kept.
fn text_of(field: Option<Cow<'_, str>>, line: &[u8], line_start: usize) -> Option<Text> {
    field.map(|f| match f {
        Cow::Borrowed(text) => Text::At(range_in(text, line, line_start)),
        Cow::Owned(text) => Text::Copied(text.into_boxed_str()),
    })
}

impl AnswerIndex {
    pub fn read(dir: &Path, recover: bool) -> Result<Self, JournalError> {
        let path = dir.join(JOURNAL_FILE);
        let bytes = std::fs::read(&path).map_err(|source| JournalError::Missing { path: path.clone(), source })?;
        let mut header = None;
        let mut calls = Vec::new();
        let mut sessions = HashMap::new();
        let mut effect_results = HashMap::new();
        let mut finished = None;
        let mut first_kind = None;
        let mut last_seq = None;
        let scanned = scan_lines(&path, &bytes, recover, |line, start| {
            let f: LineFields<'_> = serde_json::from_slice(line)?;
            first_kind.get_or_insert(f.kind);
            last_seq = Some(f.seq);
            match f.kind {
                EntryKind::RunStarted => {
                    if header.is_none() {
                        header = f.header;
                    }
                }
                EntryKind::Call | EntryKind::EffectIntent => calls.push(RecordedCall {
                    seq: f.seq,
                    kind: f.kind,
                    call: f.call,
                    function: text_of(f.function, line, start),
                    key: text_of(f.key, line, start),
                    pos: text_of(f.pos, line, start),
                    source: text_of(f.source, line, start),
                    session: text_of(f.session, line, start),
                    idempotency_key: text_of(f.idempotency_key, line, start),
                    args: f.args.map(|r| span_of(r, line, start)),
                    result: f.result.map(|r| span_of(r, line, start)),
                }),
                EntryKind::Session => {
                    if let (Some(id), Some(result)) = (f.session, f.result) {
                        sessions.insert(id.into_owned(), span_of(result, line, start));
                    }
                }
                EntryKind::EffectResult => {
                    if let (Some(call), Some(result)) = (f.call, f.result) {
                        effect_results.insert(call, span_of(result, line, start));
                    }
                }
                EntryKind::RunFinished => finished = Some(f.status.unwrap_or(RunStatus::Running)),
            }
            Ok(())
        })?;
        let header = check_header(&path, first_kind, header)?;
        Ok(AnswerIndex {
            dir: dir.to_owned(),
            header,
            calls,
            sessions,
            effect_results,
            finished,
            valid_len: scanned.valid_len,
            next_seq: last_seq.map(|s| s + 1).unwrap_or(0),
            warnings: scanned.warnings,
            bytes,
        })
    }

    pub fn status(&self) -> RunStatus {
        self.finished.unwrap_or(RunStatus::Running)
    }

    fn text<'a>(&'a self, field: &'a Option<Text>) -> Option<&'a str> {
        match field.as_ref()? {
            // The range was cut from a `&str` that serde read out of these bytes.
            Text::At(range) => std::str::from_utf8(&self.bytes[range.clone()]).ok(),
            Text::Copied(text) => Some(text),
        }
    }

    /// The call's key, as recorded.
    pub fn key<'a>(&'a self, call: &'a RecordedCall) -> Option<&'a str> {
        self.text(&call.key)
    }

    /// The session a recorded spawn started.
    pub fn spawned_session<'a>(&'a self, call: &'a RecordedCall) -> Option<&'a str> {
        self.text(&call.session)
    }

    /// The idempotency key an effect intent was journaled with.
    pub fn idempotency_key<'a>(&'a self, call: &'a RecordedCall) -> Option<&'a str> {
        self.text(&call.idempotency_key)
    }

    fn parse<T: serde::de::DeserializeOwned>(&self, span: &Range<usize>) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.bytes[span.clone()])
    }

    pub fn args(&self, call: &RecordedCall) -> Value {
        call.args.as_ref().and_then(|s| self.parse(s).ok()).unwrap_or(Value::Null)
    }

    /// The recorded answer of a call as the journal's JSON text, unparsed; `None` when it
    /// recorded none or the text is not UTF-8 (a corrupt line the reader let through).
    pub fn result_text(&self, call: &RecordedCall) -> Option<&str> {
        call.result.as_ref().and_then(|s| std::str::from_utf8(&self.bytes[s.clone()]).ok())
    }

    /// The recorded answer of a call; `None` when it recorded none (spawns, effect intents).
    pub fn result(&self, call: &RecordedCall) -> Option<Value> {
        call.result.as_ref().and_then(|s| self.parse(s).ok())
    }

    pub fn has_session(&self, id: &str) -> bool {
        self.sessions.contains_key(id)
    }

    /// A finished session's recorded result, parsed into `T`.
    pub fn session<T: serde::de::DeserializeOwned>(&self, id: &str) -> Option<Result<T, serde_json::Error>> {
        self.sessions.get(id).map(|s| self.parse(s))
    }

    pub fn effect_result(&self, call: u64) -> Option<Value> {
        self.effect_results.get(&call).and_then(|s| self.parse(s).ok())
    }

    /// Sessions whose recorded status is not `ok` (what `--retry-failed` runs again).
    pub fn failed_sessions(&self) -> Vec<String> {
        #[derive(Deserialize)]
        struct Status<'a> {
            #[serde(borrow)]
            status: Option<Cow<'a, str>>,
        }
        let mut failed: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, span)| {
                serde_json::from_slice::<Status<'_>>(&self.bytes[(*span).clone()])
                    .map(|s| s.status.as_deref() != Some("ok"))
                    .unwrap_or(true)
            })
            .map(|(id, _)| id.clone())
            .collect();
        failed.sort();
        failed
    }

    /// The whole entry of a recorded call, payloads parsed (for divergence reports).
    pub fn entry(&self, call: &RecordedCall) -> Entry {
        Entry {
            seq: call.seq,
            kind: call.kind,
            header: None,
            call: call.call,
            function: self.text(&call.function).map(str::to_owned),
            key: self.key(call).map(|k| CallKey(k.to_owned())),
            pos: self.text(&call.pos).map(str::to_owned),
            source: self.text(&call.source).map(str::to_owned),
            args: call.args.as_ref().map(|_| self.args(call)),
            result: self.result(call),
            session: self.spawned_session(call).map(str::to_owned),
            idempotency_key: self.idempotency_key(call).map(str::to_owned),
            status: None,
            error: None,
            at: None,
            usage: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::entry::{CallSite, JOURNAL_VERSION};
    use crate::journal::{JournalWriter, RecordedRun};
    use serde_json::json;

    fn write_run(dir: &Path) {
        let mut w = JournalWriter::create(dir).unwrap();
        let header = RunHeader { version: JOURNAL_VERSION, run_id: "r1".into(), ..Default::default() };
        w.append(Entry::run_started(header)).unwrap();
        let site = CallSite { line: 3, col: 7, source: None };
        let args = json!({"goal": "say \"hi\"\n", "inputs": {"pr": 1}});
        let key = CallKey::new("spawn_session", Some("w"), &args);
        w.append(Entry::call(0, "spawn_session", key, &site, args, Value::Null, Some("s1".into()))).unwrap();
        w.append(Entry::session("s1", json!({"status": "failed", "output": {"a": [1, 2]}}))).unwrap();
        let key = CallKey::new("merge", None, &json!({"pr": 1}));
        w.append(Entry::effect_intent(1, "merge", key, &site, json!({"pr": 1}), "r1:1".into())).unwrap();
        w.append(Entry::effect_result(1, "merge", json!({"status": "merged"}))).unwrap();
        w.append(Entry::run_finished(RunStatus::Succeeded, None, None, "t".into())).unwrap();
        w.sync().unwrap();
    }

    #[test]
    fn answers_equal_what_the_full_reader_parses() {
        let dir = tempfile::tempdir().unwrap();
        write_run(dir.path());
        let full = RecordedRun::read(dir.path()).unwrap();
        let index = AnswerIndex::read(dir.path(), false).unwrap();
        assert_eq!(index.calls.len(), full.calls.len());
        for (call, entry) in index.calls.iter().zip(&full.calls) {
            let rebuilt = index.entry(call);
            assert_eq!(serde_json::to_value(&rebuilt).unwrap(), serde_json::to_value(entry).unwrap());
        }
        assert_eq!(index.session::<Value>("s1").unwrap().unwrap(), full.sessions["s1"]);
        assert_eq!(index.effect_result(1), full.effect_results.get(&1).cloned());
        assert_eq!(index.failed_sessions(), vec!["s1".to_owned()]);
        assert_eq!(index.status(), RunStatus::Succeeded);
        assert_eq!((index.valid_len, index.next_seq), (full.valid_len, full.next_seq()));
    }

    #[test]
    fn escaped_strings_read_as_their_text() {
        let dir = tempfile::tempdir().unwrap();
        let header = RunHeader { version: JOURNAL_VERSION, run_id: "r1".into(), ..Default::default() };
        let first = serde_json::to_string(&Entry::run_started(header)).unwrap();
        // `\u0069nput` is `input`, `\"` a quote: these strings are copied, the rest borrowed.
        let call = r#"{"seq":1,"type":"call","call":0,"fn":"\u0069nput","key":"input:k\"1","pos":"1:2","args":["a"],"result":"v","session":"s1"}"#;
        std::fs::write(dir.path().join(JOURNAL_FILE), format!("{first}\n{call}\n")).unwrap();
        let index = AnswerIndex::read(dir.path(), false).unwrap();
        let recorded = &index.calls[0];
        assert_eq!(index.key(recorded), Some("input:k\"1"));
        assert_eq!(index.spawned_session(recorded), Some("s1"));
        let entry = index.entry(recorded);
        assert_eq!(entry.function.as_deref(), Some("input"));
        assert_eq!(entry.pos.as_deref(), Some("1:2"));
        assert_eq!(index.result_text(recorded), Some("\"v\""));
    }

    #[test]
    fn torn_and_corrupt_journals_read_as_the_full_reader_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        write_run(dir.path());
        let path = dir.path().join(JOURNAL_FILE);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
        let index = AnswerIndex::read(dir.path(), false).unwrap();
        assert_eq!(index.status(), RunStatus::Running);
        assert!(index.warnings[0].contains("torn"));

        let text = String::from_utf8(bytes).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.insert(2, "{\"seq\": 9, \"type\": \"call\", \"result\": [1,");
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        assert!(matches!(AnswerIndex::read(dir.path(), false), Err(JournalError::Corrupt { line: 3, valid: 2, .. })));
        let recovered = AnswerIndex::read(dir.path(), true).unwrap();
        assert_eq!(recovered.calls.len(), 1);
        assert!(!recovered.has_session("s1"));
    }
}
