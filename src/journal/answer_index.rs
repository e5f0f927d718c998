//! The journal's one reader: a journal read for answering a script's calls again (replay,
//! what-if, resume), and the lines every other reader of a journal takes its entries from
//! ([`AnswerIndex::read_every_line`], [`RecordedRun`](super::RecordedRun)).
//!
//! Every line is read and checked here (torn last line dropped, corrupt middle refused or
//! recovered, unknown version refused), but only the small fields are parsed: call keys,
//! positions, session ids. Arguments and results stay as byte ranges of the file and are
//! parsed when a call asks for them, once: a large run's journal is mostly payload, and
//! parsing all of it up front cost more than the replay itself.
//!
//! It must not interpret what a call means: that is the host's business.

use super::entry::{CallEntry, EffectIntentEntry, Entry, EntryKind, RunHeader, RunStatus};
use super::reader::{check_header, read_line, scan_lines, EntryOrder, JournalError, LineError, Scanned};
use super::writer::JOURNAL_FILE;
use super::CallKey;
use crate::leaf::session::SessionResult;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

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

/// Calls and effect intents in call order (index = call number), kept in the chunks they were
/// read in. One vector grown batch by batch moved every recorded call each time it doubled:
/// at 56,000 calls that copying, and the fresh pages it touched, cost the script's thread more
/// than answering the calls did.
#[derive(Default)]
pub struct CallTable {
    chunks: Vec<Vec<RecordedCall>>,
    /// The answers a reading thread parsed, chunk by chunk (an empty chunk when it parsed
    /// none).
    parsed: Vec<Vec<Option<Value>>>,
    /// The call number each chunk starts at.
    starts: Vec<usize>,
    len: usize,
}

impl CallTable {
    fn push_chunk(&mut self, chunk: Vec<RecordedCall>, parsed: Vec<Option<Value>>) {
        if chunk.is_empty() {
            return;
        }
        self.starts.push(self.len);
        self.len += chunk.len();
        self.chunks.push(chunk);
        self.parsed.push(parsed);
    }

    fn chunk_of(&self, i: usize) -> Option<usize> {
        if i >= self.len {
            return None;
        }
        // Calls are asked for nearly in order: the last chunk first, else a binary search.
        Some(match self.starts.last() {
            Some(&start) if i >= start => self.starts.len() - 1,
            _ => self.starts.partition_point(|&start| start <= i) - 1,
        })
    }

    /// Call `i`'s answer as a reading thread parsed it, moved out (so at most once).
    fn take_parsed(&mut self, i: usize) -> Option<Value> {
        let chunk = self.chunk_of(i)?;
        self.parsed[chunk].get_mut(i - self.starts[chunk])?.take()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, i: usize) -> Option<&RecordedCall> {
        let chunk = self.chunk_of(i)?;
        self.chunks[chunk].get(i - self.starts[chunk])
    }

    pub fn iter(&self) -> impl Iterator<Item = &RecordedCall> {
        self.chunks.iter().flatten()
    }
}

impl std::ops::Index<usize> for CallTable {
    type Output = RecordedCall;

    fn index(&self, i: usize) -> &RecordedCall {
        self.get(i).expect("a call the table holds")
    }
}

/// Which recorded answers a reading thread parses ahead of the script: those of calls whose
/// function name starts with one of these (the caller's choice, taken as plain names; the
/// index does not know what the calls are).
pub type ParseAhead = &'static [&'static str];

fn parses_ahead(parse_ahead: ParseAhead, function: &str) -> bool {
    parse_ahead.iter().any(|prefix| function.starts_with(prefix))
}

/// A finished session's recorded result.
pub struct RecordedSession {
    pub result: Box<SessionResult>,
}

/// Lines of the journal sorted by what the index does with them: a whole journal, or one
/// batch of a streamed one.
#[derive(Default)]
struct Lines {
    first_kind: Option<EntryKind>,
    header: Option<RunHeader>,
    calls: Vec<RecordedCall>,
    /// On a reading thread, the answers it parsed (parallel to `calls`).
    parsed_calls: Vec<Option<Value>>,
    /// Session results: where each is, and, read on a reading thread, already parsed.
    sessions: Vec<(String, Range<usize>, Option<RecordedSession>)>,
    /// Effect results by call number: where each is, and, on a reading thread, parsed.
    effect_results: Vec<(u64, Range<usize>, Option<Value>)>,
    finished: Option<RunStatus>,
    last_seq: Option<u64>,
    /// Where every line is, when the reader asked for them ([`AnswerIndex::read_every_line`]).
    spans: Option<Vec<Range<usize>>>,
}

impl Lines {
    fn is_empty(&self) -> bool {
        self.last_seq.is_none()
    }

    /// Adds one line (which starts at `start` in the file). On a reading thread (`on_reader`),
    /// session and effect results are parsed too, and the answers it was asked to parse
    /// ahead: work done off the script's thread.
    fn add(
        &mut self,
        line: &[u8],
        start: usize,
        order: &mut EntryOrder,
        on_reader: Option<ParseAhead>,
    ) -> Result<(), LineError> {
        let parse_payloads = on_reader.is_some();
        let f = read_line(line, order)?;
        if let Some(spans) = &mut self.spans {
            spans.push(start..start + line.len());
        }
        self.first_kind.get_or_insert(f.kind);
        self.last_seq = Some(f.seq);
        match f.kind {
            EntryKind::RunStarted => {
                if self.header.is_none() {
                    self.header = f.header;
                }
            }
            EntryKind::Call | EntryKind::EffectIntent => {
                if let Some(parse_ahead) = on_reader {
                    let parsed = match (&f.function, f.result) {
                        (Some(function), Some(result)) if parses_ahead(parse_ahead, function) => {
                            serde_json::from_str(result.get()).ok()
                        }
                        _ => None,
                    };
                    self.parsed_calls.push(parsed);
                }
                self.calls.push(RecordedCall {
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
                })
            }
            EntryKind::Session => {
                if let (Some(id), Some(result)) = (f.session, f.result) {
                    let parsed = parse_payloads
                        .then(|| serde_json::from_str(result.get()).ok().map(|result| RecordedSession { result }))
                        .flatten();
                    self.sessions.push((id.into_owned(), span_of(result, line, start), parsed));
                }
            }
            EntryKind::EffectResult => {
                if let (Some(call), Some(result)) = (f.call, f.result) {
                    let parsed = parse_payloads.then(|| serde_json::from_str(result.get()).ok()).flatten();
                    self.effect_results.push((call, span_of(result, line, start), parsed));
                }
            }
            EntryKind::RunFinished => self.finished = Some(f.status.unwrap_or(RunStatus::Running)),
        }
        Ok(())
    }
}

/// What the reading thread of a streamed index sends.
enum Batch {
    /// The file, read whole; sent before any line.
    Bytes(Arc<Vec<u8>>),
    Lines(Box<Lines>),
    End(Result<Scanned, JournalError>),
}

/// Lines per batch a reading thread sends: large enough that handing them over costs nothing,
/// small enough that the first answers are there at once.
const BATCH_LINES: usize = 1024;

/// What answering calls needs from a journal, indexed; payloads parsed on demand.
///
/// Read whole ([`AnswerIndex::read`]) or streamed ([`AnswerIndex::read_streaming`]): then the
/// header is checked at once and the rest is read on another thread while the script runs.
/// Every accessor that could miss a line still being read waits for it (or for the journal's
/// end); a streamed journal found unreadable part-way keeps its error for
/// [`AnswerIndex::finish_reading`], and nothing past the bad line is ever answered.
pub struct AnswerIndex {
    pub dir: PathBuf,
    pub header: RunHeader,
    calls: CallTable,
    /// Session results by session id: where each is, and the parsed result a reading thread
    /// left for the first caller to take.
    sessions: HashMap<String, (Range<usize>, Option<RecordedSession>)>,
    /// Effect results by call number, likewise.
    effect_results: HashMap<u64, (Range<usize>, Option<Value>)>,
    finished: Option<RunStatus>,
    /// Byte length of the valid prefix (what a resumed writer keeps).
    pub valid_len: u64,
    pub next_seq: u64,
    /// Warnings met while reading (a dropped torn line, a recovered prefix).
    pub warnings: Vec<String>,
    bytes: Arc<Vec<u8>>,
    /// Where every line is, in file order, when read with [`AnswerIndex::read_every_line`].
    line_spans: Vec<Range<usize>>,
    /// The reading thread of a streamed index, until it has sent its end. (Behind a lock
    /// only so that the index can be shared before it is used; it is read from one thread.)
    reading: Option<Mutex<Receiver<Batch>>>,
    /// Why a streamed journal turned out unreadable part-way.
    error: Option<JournalError>,
}

impl std::fmt::Debug for AnswerIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerIndex")
            .field("dir", &self.dir)
            .field("calls", &self.calls.len())
            .field("sessions", &self.sessions.len())
            .field("effect_results", &self.effect_results.len())
            .field("bytes", &self.bytes.len())
            .field("reading", &self.reading.is_some())
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
    fn empty(dir: &Path, header: RunHeader, bytes: Arc<Vec<u8>>) -> Self {
        AnswerIndex {
            dir: dir.to_owned(),
            header,
            calls: CallTable::default(),
            sessions: HashMap::new(),
            effect_results: HashMap::new(),
            finished: None,
            valid_len: 0,
            next_seq: 0,
            warnings: Vec::new(),
            bytes,
            line_spans: Vec::new(),
            reading: None,
            error: None,
        }
    }

    fn read_bytes(dir: &Path) -> Result<(PathBuf, Arc<Vec<u8>>), JournalError> {
        let path = dir.join(JOURNAL_FILE);
        let bytes = std::fs::read(&path).map_err(|source| JournalError::Missing { path: path.clone(), source })?;
        Ok((path, Arc::new(bytes)))
    }

    /// Reads the whole journal now.
    pub fn read(dir: &Path, recover: bool) -> Result<Self, JournalError> {
        Self::read_whole(dir, recover, false)
    }

    /// Reads the whole journal now, keeping where every line is ([`AnswerIndex::lines`]), for
    /// a reader of every entry ([`RecordedRun`](super::RecordedRun)).
    pub fn read_every_line(dir: &Path, recover: bool) -> Result<Self, JournalError> {
        Self::read_whole(dir, recover, true)
    }

    fn read_whole(dir: &Path, recover: bool, every_line: bool) -> Result<Self, JournalError> {
        let (path, bytes) = Self::read_bytes(dir)?;
        let mut lines = Lines { spans: every_line.then(Vec::new), ..Lines::default() };
        let mut order = EntryOrder::default();
        let scanned = scan_lines(&path, &bytes, recover, |line, start| lines.add(line, start, &mut order, None))?;
        let header = check_header(&path, lines.first_kind, lines.header.take())?;
        let mut index = Self::empty(dir, header, bytes);
        index.absorb(lines);
        index.end(Ok(scanned));
        Ok(index)
    }

    /// Checks the header now and reads the rest of the journal on another thread, while the
    /// caller starts answering calls; that thread also parses recorded session and effect
    /// results, and the answers of the calls `parse_ahead` names. A journal whose first line does not give a valid header is read whole instead,
    /// so it is refused exactly as [`AnswerIndex::read`] refuses it.
    pub fn read_streaming(dir: &Path, recover: bool, parse_ahead: ParseAhead) -> Result<Self, JournalError> {
        let path = dir.join(JOURNAL_FILE);
        let header = Self::read_header(&path)?;
        let Some(header) = header else {
            return Self::read(dir, recover);
        };
        let (sender, receiver) = std::sync::mpsc::channel();
        // The file itself is read on the reading thread too: 22 MB at 10,000 PRs.
        let spawned = std::thread::Builder::new().name("coord-journal".into()).spawn(move || {
            let bytes = match std::fs::read(&path) {
                Ok(bytes) => Arc::new(bytes),
                Err(source) => {
                    let _ = sender.send(Batch::End(Err(JournalError::Missing { path, source })));
                    return;
                }
            };
            let _ = sender.send(Batch::Bytes(bytes.clone()));
            let mut batch = Lines::default();
            // The first batches are small, so the script's first calls are answered at once;
            // they double up to `BATCH_LINES`.
            let mut in_batch = 0;
            let mut batch_lines = 4;
            let mut order = EntryOrder::default();
            let scanned = scan_lines(&path, &bytes, recover, |line, start| {
                batch.add(line, start, &mut order, Some(parse_ahead))?;
                in_batch += 1;
                if in_batch == batch_lines {
                    in_batch = 0;
                    batch_lines = (batch_lines * 2).min(BATCH_LINES);
                    let _ = sender.send(Batch::Lines(Box::new(std::mem::take(&mut batch))));
                }
                Ok(())
            });
            if !batch.is_empty() {
                let _ = sender.send(Batch::Lines(Box::new(batch)));
            }
            let _ = sender.send(Batch::End(scanned));
        });
        if spawned.is_err() {
            return Self::read(dir, recover);
        }
        let mut index = Self::empty(dir, header, Arc::new(Vec::new()));
        index.reading = Some(Mutex::new(receiver));
        Ok(index)
    }

    /// The run header from the journal's first line, if that line is whole and gives a header
    /// this coord reads; `None` for anything else, which a whole read then reports.
    fn read_header(path: &Path) -> Result<Option<RunHeader>, JournalError> {
        use std::io::BufRead;
        let file =
            std::fs::File::open(path).map_err(|source| JournalError::Missing { path: path.to_owned(), source })?;
        let mut first_line = Vec::new();
        let mut reader = std::io::BufReader::with_capacity(8 * 1024, file);
        if reader.read_until(b'\n', &mut first_line).is_err() || first_line.last() != Some(&b'\n') {
            return Ok(None);
        }
        let mut first = Lines::default();
        if first.add(&first_line[..first_line.len() - 1], 0, &mut EntryOrder::default(), None).is_err() {
            return Ok(None);
        }
        Ok(match (first.first_kind, first.header) {
            (Some(EntryKind::RunStarted), Some(h)) => check_header(path, first.first_kind, Some(h)).ok(),
            _ => None,
        })
    }

    fn absorb(&mut self, lines: Lines) {
        if let Some(seq) = lines.last_seq {
            self.next_seq = seq + 1;
        }
        self.calls.push_chunk(lines.calls, lines.parsed_calls);
        if let Some(spans) = lines.spans {
            self.line_spans.extend(spans);
        }
        self.sessions.extend(lines.sessions.into_iter().map(|(id, span, parsed)| (id, (span, parsed))));
        self.effect_results.extend(lines.effect_results.into_iter().map(|(call, span, parsed)| (call, (span, parsed))));
        if lines.finished.is_some() {
            self.finished = lines.finished;
        }
    }

    fn end(&mut self, scanned: Result<Scanned, JournalError>) {
        self.reading = None;
        match scanned {
            Ok(scanned) => {
                self.valid_len = scanned.valid_len;
                self.warnings = scanned.warnings;
            }
            Err(e) => self.error = Some(e),
        }
    }

    /// Takes in the next batch of a streamed journal; false once everything is in.
    fn read_more(&mut self) -> bool {
        let Some(reading) = &self.reading else { return false };
        let next = reading.lock().map_err(|_| ()).and_then(|r| r.recv().map_err(|_| ()));
        match next {
            Ok(Batch::Bytes(bytes)) => self.bytes = bytes,
            Ok(Batch::Lines(lines)) => self.absorb(*lines),
            Ok(Batch::End(scanned)) => self.end(scanned),
            // The reading thread died without its end: nothing more will come.
            Err(()) => self.end(Err(JournalError::Unfinished { path: self.dir.join(JOURNAL_FILE) })),
        }
        true
    }

    /// Waits until call `i` is read or the journal is known to end before it; then
    /// [`AnswerIndex::calls`] holds it, if the journal does.
    pub fn read_through_call(&mut self, i: usize) {
        while self.calls.len() <= i && self.read_more() {}
    }

    /// Reads the journal to its end; its error if it turned out unreadable part-way.
    pub fn finish_reading(&mut self) -> Result<(), &JournalError> {
        while self.read_more() {}
        self.error.as_ref().map_or(Ok(()), Err)
    }

    /// Whether a streamed journal turned out unreadable: no answer may be trusted any more.
    pub fn failed(&self) -> bool {
        self.error.is_some()
    }

    /// The error of a journal that turned out unreadable part-way, taken out.
    pub fn take_error(&mut self) -> Option<JournalError> {
        self.error.take()
    }

    /// Every line of a journal read with [`AnswerIndex::read_every_line`], in file order, each
    /// with the byte offset it starts at; none otherwise.
    pub fn lines(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.line_spans.iter().map(|span| (span.start as u64, &self.bytes[span.clone()]))
    }

    /// Calls and effect intents read so far, in call order (all of them once read whole).
    pub fn calls(&self) -> &CallTable {
        &self.calls
    }

    /// How the recorded run ended, if it did (reads the whole journal).
    pub fn finished(&mut self) -> Option<RunStatus> {
        while self.read_more() {}
        self.finished
    }

    /// How the recorded run ended; `running` if it did not (reads the whole journal).
    pub fn status(&mut self) -> RunStatus {
        self.finished().unwrap_or(RunStatus::Running)
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

    /// Whether session `id` finished, waiting until its result is read or the journal is known
    /// to hold none.
    pub fn has_session(&mut self, id: &str) -> bool {
        while !self.sessions.contains_key(id) && self.read_more() {}
        self.sessions.contains_key(id)
    }

    /// A finished session's recorded result, parsed into `T`.
    pub fn session<T: serde::de::DeserializeOwned>(&mut self, id: &str) -> Option<Result<T, serde_json::Error>> {
        if !self.has_session(id) {
            return None;
        }
        self.sessions.get(id).map(|(span, _)| self.parse(span))
    }

    /// A finished session's recorded result; the one a reading thread parsed is moved out, so
    /// a second call parses it again.
    pub fn take_session_result(&mut self, id: &str) -> Option<Result<RecordedSession, serde_json::Error>> {
        if !self.has_session(id) {
            return None;
        }
        let (span, parsed) = self.sessions.get_mut(id)?;
        Some(match parsed.take() {
            Some(recorded) => Ok(recorded),
            None => serde_json::from_slice(&self.bytes[span.clone()])
                .map(|result| RecordedSession { result: Box::new(result) }),
        })
    }

    /// Call `i`'s answer as a reading thread parsed it ahead, moved out (so at most once).
    pub fn take_parsed_result(&mut self, i: usize) -> Option<Value> {
        self.calls.take_parsed(i)
    }

    /// An effect's recorded result; the one a reading thread parsed is moved out, so a second
    /// call parses it again.
    pub fn take_effect_result(&mut self, call: u64) -> Option<Value> {
        while !self.effect_results.contains_key(&call) && self.read_more() {}
        let (span, parsed) = self.effect_results.get_mut(&call)?;
        match parsed.take() {
            Some(result) => Some(result),
            None => serde_json::from_slice(&self.bytes[span.clone()]).ok(),
        }
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
            .filter(|(_, (span, _))| {
                serde_json::from_slice::<Status<'_>>(&self.bytes[span.clone()])
                    .map(|s| s.status.as_deref() != Some("ok"))
                    .unwrap_or(true)
            })
            .map(|(id, _)| id.clone())
            .collect();
        failed.sort_by_key(|id| id.strip_prefix('s').and_then(|n| n.parse::<u64>().ok()));
        failed
    }

    /// The whole entry of a recorded call, payloads parsed (for divergence reports).
    pub fn entry(&self, call: &RecordedCall) -> Entry {
        let number = call.call.unwrap_or_default();
        let function = self.text(&call.function).unwrap_or_default().to_owned();
        let key = CallKey(self.key(call).unwrap_or_default().to_owned());
        let pos = self.text(&call.pos).map(str::to_owned);
        let source = self.text(&call.source).map(str::to_owned);
        let args = call.args.as_ref().map(|_| self.args(call)).unwrap_or_default();
        match call.kind {
            EntryKind::EffectIntent => Entry::EffectIntent(EffectIntentEntry {
                call: number,
                function,
                key,
                pos,
                source,
                args,
                idempotency_key: self.idempotency_key(call).unwrap_or_default().to_owned(),
            }),
            _ => Entry::Call(CallEntry {
                call: number,
                function,
                key,
                pos,
                source,
                args,
                result: self.result(call).unwrap_or_default(),
                session: self.spawned_session(call).map(str::to_owned),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::entry::Line;
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
        let mut index = AnswerIndex::read(dir.path(), false).unwrap();
        assert_eq!(index.calls.len(), full.calls.len());
        for (call, entry) in index.calls.iter().zip(&full.calls) {
            let rebuilt = index.entry(call);
            assert_eq!(serde_json::to_value(&rebuilt).unwrap(), serde_json::to_value(&entry.entry).unwrap());
        }
        assert_eq!(index.session::<Value>("s1").unwrap().unwrap(), full.sessions["s1"]);
        assert_eq!(index.take_effect_result(1), full.effect_results.get(&1).cloned());
        assert_eq!(index.take_effect_result(1), full.effect_results.get(&1).cloned(), "taken twice");
        assert_eq!(index.failed_sessions(), vec!["s1".to_owned()]);
        assert_eq!(index.status(), RunStatus::Succeeded);
        assert_eq!((index.valid_len, index.next_seq), (full.valid_len, full.next_seq()));
    }

    #[test]
    fn escaped_strings_read_as_their_text() {
        let dir = tempfile::tempdir().unwrap();
        let header = RunHeader { version: JOURNAL_VERSION, run_id: "r1".into(), ..Default::default() };
        let first = serde_json::to_string(&Line { seq: 0, entry: Entry::run_started(header) }).unwrap();
        // `\u0069nput` is `input`, `\"` a quote: these strings are copied, the rest borrowed.
        let call = r#"{"seq":1,"type":"call","call":0,"fn":"\u0069nput","key":"input:k\"1","pos":"1:2","args":["a"],"result":"v","session":"s1"}"#;
        std::fs::write(dir.path().join(JOURNAL_FILE), format!("{first}\n{call}\n")).unwrap();
        let index = AnswerIndex::read(dir.path(), false).unwrap();
        let recorded = &index.calls[0];
        assert_eq!(index.key(recorded), Some("input:k\"1"));
        assert_eq!(index.spawned_session(recorded), Some("s1"));
        let entry = index.entry(recorded);
        assert_eq!(entry.function(), Some("input"));
        assert_eq!(entry.asked().and_then(|a| a.pos), Some("1:2"));
        assert_eq!(index.result_text(recorded), Some("\"v\""));
    }

    #[test]
    fn torn_and_corrupt_journals_read_as_the_full_reader_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        write_run(dir.path());
        let path = dir.path().join(JOURNAL_FILE);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
        let mut index = AnswerIndex::read(dir.path(), false).unwrap();
        assert_eq!(index.status(), RunStatus::Running);
        assert!(index.warnings[0].contains("torn"));

        let text = String::from_utf8(bytes).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.insert(2, "{\"seq\": 9, \"type\": \"call\", \"result\": [1,");
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        assert!(matches!(AnswerIndex::read(dir.path(), false), Err(JournalError::Corrupt { line: 3, valid: 2, .. })));
        let mut recovered = AnswerIndex::read(dir.path(), true).unwrap();
        assert_eq!(recovered.calls.len(), 1);
        assert!(!recovered.has_session("s1"));
    }

    #[test]
    fn calls_read_in_many_batches_are_found_by_number_in_any_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = JournalWriter::create(dir.path()).unwrap();
        let header = RunHeader { version: JOURNAL_VERSION, run_id: "r1".into(), ..Default::default() };
        w.append(Entry::run_started(header)).unwrap();
        let site = CallSite { line: 1, col: 1, source: None };
        let n = 2 * BATCH_LINES as u64 + 300;
        for i in 0..n {
            let key = CallKey::new("input", None, &json!([i]));
            w.append(Entry::call(i, "input", key, &site, json!([i]), json!(i), None)).unwrap();
        }
        w.sync().unwrap();
        let mut index = AnswerIndex::read_streaming(dir.path(), false, &[]).unwrap();
        index.read_through_call(n as usize - 1);
        assert_eq!(index.calls().len(), n as usize);
        for i in [n - 1, 0, BATCH_LINES as u64 - 2, BATCH_LINES as u64 - 1, BATCH_LINES as u64, n / 2] {
            assert_eq!(index.calls().get(i as usize).and_then(|c| c.call), Some(i));
            assert_eq!(index.calls()[i as usize].call, Some(i));
        }
        assert!(index.calls().get(n as usize).is_none());
        assert!(index.calls().iter().map(|c| c.call).eq((0..n).map(Some)));
    }

    #[test]
    fn a_streamed_journal_answers_as_the_whole_one() {
        let dir = tempfile::tempdir().unwrap();
        write_run(dir.path());
        let mut whole = AnswerIndex::read(dir.path(), false).unwrap();
        let mut streamed = AnswerIndex::read_streaming(dir.path(), false, &[]).unwrap();
        assert_eq!(streamed.header.run_id, "r1");
        assert_eq!(streamed.session::<Value>("s1").unwrap().unwrap(), whole.session::<Value>("s1").unwrap().unwrap());
        assert_eq!(streamed.take_effect_result(1), Some(json!({"status": "merged"})));
        assert!(streamed.finish_reading().is_ok());
        assert_eq!(streamed.calls().len(), whole.calls().len());
        assert_eq!(streamed.status(), RunStatus::Succeeded);
        assert_eq!((streamed.valid_len, streamed.next_seq), (whole.valid_len, whole.next_seq));
        // Asking for what the journal does not hold waits for its end, then says so.
        let mut unread = AnswerIndex::read_streaming(dir.path(), false, &[]).unwrap();
        assert!(!unread.has_session("s9"));
        assert_eq!(unread.calls().len(), whole.calls().len(), "read to the end to say so");
    }

    #[test]
    fn a_streamed_journal_found_corrupt_part_way_keeps_the_error_and_answers_nothing_past_it() {
        let dir = tempfile::tempdir().unwrap();
        write_run(dir.path());
        let path = dir.path().join(JOURNAL_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.insert(2, "{\"seq\": 9, \"type\": \"call\", \"result\": [1,");
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();

        // The header is fine, so reading starts; the bad third line ends it.
        let mut streamed = AnswerIndex::read_streaming(dir.path(), false, &[]).unwrap();
        assert!(!streamed.has_session("s1"), "the session's line comes after the corrupt one");
        assert!(streamed.failed());
        assert!(matches!(streamed.finish_reading(), Err(JournalError::Corrupt { line: 3, valid: 2, .. })));

        // Recovering keeps the prefix and says so.
        let mut recovered = AnswerIndex::read_streaming(dir.path(), true, &[]).unwrap();
        assert!(recovered.finish_reading().is_ok());
        assert_eq!(recovered.calls().len(), 1);
        assert!(recovered.warnings[0].contains("recovered the 2 entries"), "{:?}", recovered.warnings);

        // A torn first line cannot give a header: refused as a whole read refuses it.
        std::fs::write(&path, "{\"seq\": 0, \"type\": \"run_sta").unwrap();
        assert!(matches!(AnswerIndex::read_streaming(dir.path(), false, &[]), Err(JournalError::Empty { .. })));
    }
}
