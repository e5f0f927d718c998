//! The runs list of `coord serve`: one [`RunRow`] per run directory of a store, fast for
//! stores of thousands of runs.
//!
//! Building every run's graph (as `coord runs` does) reads every whole journal, and finding each
//! graph's redos reads every header again; a browser asking every few seconds cannot pay that.
//! So each journal is summarised once: its header from the first line, its end from the
//! `run_finished` line, and the few sums a row shows (sessions, effects, tokens, real and
//! simulated dollars) from one streaming pass that parses a session's result and nothing else.
//! Summaries are cached by the journal's inode, length and modification time: a finished run
//! is never read again, and a growing one is read on from where its summary stopped, only the
//! new bytes. A request then costs one directory listing and a `stat` per run.
//!
//! The sums are the run graph's ([`RunRow::from_graph`]), counted the same way: a test holds
//! the two to the same rows. The status of a run without an end is looked up on every request
//! (is its owner process alive), since a journal does not change when its process dies.
//!
//! It only reads. Summaries hold no entry text beyond the header's names, and every row is
//! masked by the caller before it is served.

use super::super::run_listing::RunRow;
use super::super::spend::{self, Spend};
use crate::journal::entry::{EntryKind, RunHeader, RunStatus, JOURNAL_VERSION};
use crate::journal::run_dir::{owner_alive, RunStore};
use crate::journal::writer::JOURNAL_FILE;
use crate::leaf::session::Usage;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{BufRead, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// One listed run: its row, and the name of its directory (what the run's URL uses).
#[derive(Clone, Debug)]
pub struct IndexedRun {
    pub dir_name: String,
    pub row: RunRow,
}

/// The cached summaries of one run store.
pub struct RunIndex {
    store: RunStore,
    cache: Mutex<HashMap<PathBuf, CachedRun>>,
}

#[derive(Debug, thiserror::Error)]
enum SummaryError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is empty: the run never started")]
    Empty { path: PathBuf },
    #[error("{path}:{line}: corrupt journal entry ({reason})")]
    Corrupt { path: PathBuf, line: u64, reason: String },
    #[error("{path}: the first entry is not `run_started`")]
    NoHeader { path: PathBuf },
    #[error("{path} has journal format version {found}; this coord reads version {JOURNAL_VERSION} (upgrade coord)")]
    UnsupportedVersion { path: PathBuf, found: u32 },
}

/// What identifies one state of a journal file: a replaced file has another inode, a grown
/// one another length, a rewritten one (a resume cuts the `run_finished` line) another time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl FileStamp {
    fn of(path: &Path) -> std::io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        Ok(FileStamp { inode: meta.ino(), len: meta.len(), modified: meta.modified().ok() })
    }
}

struct CachedRun {
    stamp: FileStamp,
    summary: JournalSummary,
}

/// What a journal says about its run, as far as a row needs it.
#[derive(Clone, Debug)]
struct JournalSummary {
    header: RunHeader,
    /// From `run_finished`: the status and when.
    finished: Option<(RunStatus, Option<String>)>,
    /// Spawned sessions (a `call` with a `session`).
    sessions: usize,
    /// Sessions whose result says `ok`.
    sessions_ok: usize,
    effects: usize,
    tokens: u64,
    cost_usd: f64,
    spend: Spend,
    /// Bytes summarised: the end of the last complete line.
    read_to: u64,
    /// Complete lines summarised (for error messages).
    lines: u64,
}

/// The fields of an entry a summary reads; everything else is skipped unparsed.
#[derive(Deserialize)]
struct SummaryEntry<'a> {
    #[serde(rename = "type")]
    kind: EntryKind,
    #[serde(default, borrow)]
    session: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    result: Option<&'a RawValue>,
    #[serde(default)]
    status: Option<RunStatus>,
    #[serde(default, borrow)]
    at: Option<Cow<'a, str>>,
}

/// The fields of a session result a row sums.
#[derive(Deserialize)]
struct SessionSums<'a> {
    #[serde(borrow)]
    status: Cow<'a, str>,
    #[serde(default, borrow)]
    harness: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Usage,
}

impl RunIndex {
    pub fn new(store: RunStore) -> Self {
        RunIndex { store, cache: Mutex::new(HashMap::new()) }
    }

    pub fn store(&self) -> &RunStore {
        &self.store
    }

    /// Every run of the store, oldest first, and a warning per run that could not be read.
    /// Blocking: it reads files (call it off the async workers).
    pub fn runs(&self) -> (Vec<IndexedRun>, Vec<String>) {
        let listed = self.store.list();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let listed_dirs: std::collections::HashSet<&Path> = listed.iter().map(|(_, d)| d.as_path()).collect();
        cache.retain(|dir, _| listed_dirs.contains(dir.as_path()));
        let mut runs = Vec::with_capacity(listed.len());
        let mut warnings = Vec::new();
        for (dir_name, dir) in listed {
            match summary_of(&mut cache, &dir) {
                Ok(summary) => runs.push(IndexedRun { row: row_of(summary, &dir), dir_name }),
                Err(e) => warnings.push(format!("skipped run {dir_name}: {e}")),
            }
        }
        (runs, warnings)
    }
}

/// The cached summary of the journal in `dir`, brought up to date with the file.
fn summary_of<'c>(cache: &'c mut HashMap<PathBuf, CachedRun>, dir: &Path) -> Result<&'c JournalSummary, SummaryError> {
    let path = dir.join(JOURNAL_FILE);
    let stamp = FileStamp::of(&path).map_err(|source| SummaryError::Io { path: path.clone(), source })?;
    let fresh = match cache.remove(dir) {
        Some(cached) if cached.stamp == stamp => cached.summary,
        // Only an unfinished journal grows by appending: read on from where the summary stopped.
        Some(cached)
            if cached.stamp.inode == stamp.inode
                && cached.summary.finished.is_none()
                && stamp.len >= cached.summary.read_to =>
        {
            let mut summary = cached.summary;
            read_on(&path, &mut summary)?;
            summary
        }
        _ => summarise(&path)?,
    };
    Ok(&cache.entry(dir.to_owned()).or_insert(CachedRun { stamp, summary: fresh }).summary)
}

/// Reads a whole journal into a summary, header first.
fn summarise(path: &Path) -> Result<JournalSummary, SummaryError> {
    let io = |source| SummaryError::Io { path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut first = Vec::new();
    std::io::BufReader::new(file).read_until(b'\n', &mut first).map_err(io)?;
    if first.iter().all(u8::is_ascii_whitespace) {
        return Err(SummaryError::Empty { path: path.to_owned() });
    }
    let corrupt = |reason: String| SummaryError::Corrupt { path: path.to_owned(), line: 1, reason };
    #[derive(Deserialize)]
    struct FirstLine {
        #[serde(rename = "type")]
        kind: EntryKind,
        #[serde(default)]
        header: Option<RunHeader>,
    }
    let entry: FirstLine = serde_json::from_slice(&first).map_err(|e| corrupt(e.to_string()))?;
    let header = match (entry.kind, entry.header) {
        (EntryKind::RunStarted, Some(header)) => header,
        _ => return Err(SummaryError::NoHeader { path: path.to_owned() }),
    };
    if header.version > JOURNAL_VERSION || header.version == 0 {
        return Err(SummaryError::UnsupportedVersion { path: path.to_owned(), found: header.version });
    }
    let mut summary = JournalSummary {
        header,
        finished: None,
        sessions: 0,
        sessions_ok: 0,
        effects: 0,
        tokens: 0,
        cost_usd: 0.0,
        spend: Spend::default(),
        read_to: first.len() as u64,
        lines: 1,
    };
    if !first.ends_with(b"\n") {
        // A header torn mid-write: the run has only just started.
        summary.read_to = 0;
        summary.lines = 0;
        return Ok(summary);
    }
    read_on(path, &mut summary)?;
    Ok(summary)
}

/// Adds the complete lines after `summary.read_to` to it. A torn last line is left for the
/// next read; so is a complete last line that does not parse (a write can land its newline
/// before the rest). A bad line with lines after it is a corrupt journal.
fn read_on(path: &Path, summary: &mut JournalSummary) -> Result<(), SummaryError> {
    let io = |source| SummaryError::Io { path: path.to_owned(), source };
    let mut file = std::fs::File::open(path).map_err(io)?;
    file.seek(SeekFrom::Start(summary.read_to)).map_err(io)?;
    let mut reader = std::io::BufReader::with_capacity(64 * 1024, file.by_ref());
    let scenario = spend::scenario_mode(summary.header.mode, summary.header.scenario.as_deref());
    let mut line = Vec::new();
    // A line that did not parse, kept until we know whether another line follows it.
    let mut unparsed: Option<String> = None;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(io)?;
        if n == 0 || !line.ends_with(b"\n") {
            return Ok(());
        }
        if let Some(reason) = unparsed.take() {
            return Err(SummaryError::Corrupt { path: path.to_owned(), line: summary.lines + 1, reason });
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            summary.read_to += n as u64;
            continue;
        }
        match serde_json::from_slice::<SummaryEntry>(&line) {
            Ok(entry) => {
                add_entry(summary, &entry, scenario);
                summary.read_to += n as u64;
                summary.lines += 1;
            }
            Err(e) => unparsed = Some(e.to_string()),
        }
    }
}

fn add_entry(summary: &mut JournalSummary, entry: &SummaryEntry<'_>, scenario: bool) {
    match entry.kind {
        EntryKind::Call if entry.session.is_some() => summary.sessions += 1,
        EntryKind::EffectIntent => summary.effects += 1,
        EntryKind::Session => {
            // A result the graph could not read counts as a session without one, as there.
            let Some(sums) = entry.result.and_then(|r| serde_json::from_str::<SessionSums>(r.get()).ok()) else {
                return;
            };
            if sums.status == "ok" {
                summary.sessions_ok += 1;
            }
            summary.tokens += sums.usage.input_tokens + sums.usage.output_tokens;
            summary.cost_usd += sums.usage.cost_usd;
            let simulated = spend::leaf_simulated(sums.harness.as_deref(), scenario);
            summary.spend.add(Spend::leaf(sums.usage.cost_usd, simulated));
        }
        EntryKind::RunFinished => {
            summary.finished =
                Some((entry.status.unwrap_or(RunStatus::Failed), entry.at.as_deref().map(str::to_owned)));
        }
        EntryKind::RunStarted | EntryKind::Call | EntryKind::EffectResult => {}
    }
}

fn row_of(summary: &JournalSummary, dir: &Path) -> RunRow {
    let header = &summary.header;
    let status = match &summary.finished {
        Some((status, _)) => *status,
        None if owner_alive(dir) => RunStatus::Running,
        None => RunStatus::Interrupted,
    };
    let finished_at = summary.finished.as_ref().and_then(|(_, at)| at.as_deref());
    RunRow {
        id: header.run_id.clone(),
        coordinator: header.coordinator.clone(),
        status: status.as_str().to_owned(),
        waiting: None,
        mode: header.mode.to_string(),
        pipeline: header.pipeline.clone(),
        scenario: spend::scenario_mode(header.mode, header.scenario.as_deref()),
        started_at: header.started_at.clone(),
        duration_ms: finished_at.and_then(|end| duration_ms(&header.started_at, end)),
        sessions: summary.sessions,
        sessions_not_ok: summary.sessions - summary.sessions_ok.min(summary.sessions),
        effects: summary.effects,
        tokens: summary.tokens,
        cost_usd: summary.cost_usd,
        spend: summary.spend,
    }
}

/// Wall time between two RFC 3339 timestamps, as the run graph measures a run.
fn duration_ms(start: &str, end: &str) -> Option<u64> {
    let start = chrono::DateTime::parse_from_rfc3339(start).ok()?;
    let end = chrono::DateTime::parse_from_rfc3339(end).ok()?;
    u64::try_from((end - start).num_milliseconds()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::entry::{CallSite, Entry};
    use crate::journal::{CallKey, JournalWriter};
    use crate::redaction::Redactor;
    use crate::views::run_graph::RunGraph;
    use serde_json::{json, Value};

    fn header(run_id: &str) -> RunHeader {
        RunHeader {
            version: JOURNAL_VERSION,
            run_id: run_id.into(),
            coordinator: "c".into(),
            mode: crate::journal::RunMode::Scenario,
            scenario: Some("w.toml".into()),
            started_at: "2026-11-21T09:00:00.000Z".into(),
            pipeline: Some("nightly".into()),
            ..Default::default()
        }
    }

    fn spawn(w: &mut JournalWriter, call: u64, id: &str) {
        let key = CallKey::new("spawn_session", Some("wf"), &json!({"n": call}));
        let args = json!({"goal": "Review #1", "inputs": {"pr": 1}});
        w.append(Entry::call(call, "spawn_session", key, &CallSite::default(), args, Value::Null, Some(id.into())))
            .unwrap();
    }

    fn finish(w: &mut JournalWriter, id: &str, status: &str, harness: &str, cost: f64) {
        let result = json!({"id": id, "workflow": "wf", "status": status, "harness": harness,
            "usage": {"input_tokens": 100, "output_tokens": 20, "cost_usd": cost}});
        w.append(Entry::session(id, result)).unwrap();
    }

    /// The row of the run in `dir`, from the index and from the graph.
    fn both_rows(index: &RunIndex, dir: &Path) -> (Value, Value) {
        let (runs, warnings) = index.runs();
        assert!(warnings.is_empty(), "{warnings:?}");
        let indexed = runs.into_iter().find(|r| index.store.root.join(&r.dir_name) == dir).unwrap();
        let run = crate::journal::RecordedRun::read(dir).unwrap();
        let graph = RunGraph::build(&run, &Redactor::default());
        (indexed.row.to_json(), RunRow::from_graph(&graph).to_json())
    }

    #[test]
    fn rows_match_the_run_graph_and_follow_a_growing_journal() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("r1");
        std::fs::create_dir_all(&dir).unwrap();
        let index = RunIndex::new(RunStore { root: root.path().to_owned() });
        let mut w = JournalWriter::create(&dir).unwrap();
        w.append(Entry::run_started(header("r1"))).unwrap();
        spawn(&mut w, 0, "s1");
        spawn(&mut w, 1, "s2");
        spawn(&mut w, 2, "s3");
        finish(&mut w, "s1", "ok", "mock", 0.5);
        w.sync().unwrap();
        let (indexed, graph) = both_rows(&index, &dir);
        assert_eq!(indexed, graph);
        assert_eq!(indexed["sessions"], 3);
        assert_eq!(indexed["status"], "interrupted", "no owner process: {indexed}");

        // Grows: read on from where the summary stopped.
        finish(&mut w, "s2", "failed", "command", 0.25);
        let key = CallKey::new("merge", None, &json!({"pr": 1}));
        w.append(Entry::effect_intent(3, "merge", key, &CallSite::default(), json!({"pr": 1}), "r1:3".into())).unwrap();
        w.append(Entry::effect_result(3, "merge", json!({"status": "merged"}))).unwrap();
        finish(&mut w, "s3", "ok", "mock", 0.125);
        w.append(Entry::run_finished(RunStatus::Succeeded, None, None, "2026-11-21T09:00:02.500Z".into())).unwrap();
        w.sync().unwrap();
        let (indexed, graph) = both_rows(&index, &dir);
        assert_eq!(indexed, graph);
        assert_eq!(indexed["status"], "succeeded");
        assert_eq!(indexed["duration_ms"], 2500);
        assert_eq!(indexed["sessions_not_ok"], 1);
        assert_eq!(indexed["simulated_cost_usd"], 0.625);
        assert_eq!(indexed["pipeline"], "nightly");
    }

    #[test]
    fn a_torn_last_line_waits_and_a_corrupt_middle_is_a_warning() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("r1");
        std::fs::create_dir_all(&dir).unwrap();
        let index = RunIndex::new(RunStore { root: root.path().to_owned() });
        let mut w = JournalWriter::create(&dir).unwrap();
        w.append(Entry::run_started(header("r1"))).unwrap();
        spawn(&mut w, 0, "s1");
        w.sync().unwrap();
        drop(w);
        let path = dir.join(JOURNAL_FILE);
        let whole = std::fs::read(&path).unwrap();
        let mut torn = whole.clone();
        torn.extend_from_slice(b"{\"seq\":2,\"type\":\"sess");
        std::fs::write(&path, &torn).unwrap();
        let (runs, warnings) = index.runs();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(runs[0].row.sessions, 1);

        let mut corrupt = whole;
        corrupt.extend_from_slice(b"{not json\n{\"seq\":3,\"type\":\"call\"}\n");
        std::fs::write(&path, &corrupt).unwrap();
        let (runs, warnings) = index.runs();
        assert!(runs.is_empty());
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("journal.jsonl:3: corrupt journal entry"), "{warnings:?}");
    }
}
