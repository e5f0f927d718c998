//! Journal entries: the typed [`Entry`] (one variant per entry type) and the [`Line`] that
//! carries it with its sequence number. A line is read in two steps, its flat [`LineFields`]
//! (strings and payloads borrowed from the line) and then the typed entry, so that a line
//! missing a field is named by the order check and a flat record parses without serde
//! buffering the line. Constructors below are the only way
//! the runtime builds entries.

use super::CallKey;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;

/// Bumped whenever a reader of the previous version would misread a journal of this one.
pub const JOURNAL_VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// First line: format version, script, inputs and mode.
    RunStarted,
    /// A host call the script made and the answer it got.
    Call,
    /// A leaf session finished (in completion order; looked up by session id).
    Session,
    /// An effect about to act. Written (and flushed) before acting.
    EffectIntent,
    /// What the effect did.
    EffectResult,
    /// Last line of a run that ended.
    RunFinished,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Interrupted,
    /// Stopped at a durable wait on purpose (`--park-after`): its process exited, and
    /// `coord resume` (or `coord daemon`, when its time comes) goes on with it.
    Parked,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Parked => "parked",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunHeader {
    pub version: u32,
    pub coord_version: String,
    pub run_id: String,
    /// Coordinator name (script file stem).
    pub coordinator: String,
    /// Script path as given on the command line.
    pub script: String,
    pub script_sha256: String,
    pub inputs: Value,
    /// `scenario`, `live` or `dry_run`.
    pub mode: super::RunMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    pub started_at: String,
    /// Working directory of the run, so replay can find a relatively named script.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Run options a resume must keep: `leaf` overrides, `dry_run`, `max_parallel`.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub options: Value,
    /// The `coord.toml` pipeline the run belongs to (daemon, `coord trigger`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    /// A redo (`coord resume --from`, `--retry-failed`): the run it branched from, and where.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentRun>,
}

/// Where a redo branched from its parent run. The parent's journal is never modified: the redo
/// answers from it and records everything, reused or new, in its own.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ParentRun {
    pub run_id: String,
    /// `--from`: the parent's first call not reused; it and everything after run again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_call: Option<u64>,
    /// The session whose spawn that call is, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_session: Option<String>,
    /// `--retry-failed`: the parent's sessions that run again; everything else is reused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retried: Vec<String>,
}

impl std::fmt::Display for ParentRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.run_id)?;
        match (&self.from_session, self.from_call) {
            (Some(s), Some(c)) => write!(f, " from {s} (call {c})")?,
            (None, Some(c)) => write!(f, " from call {c}")?,
            _ => {}
        }
        if !self.retried.is_empty() {
            write!(f, " retrying {}", self.retried.join(", "))?;
        }
        Ok(())
    }
}

/// One journal line: its sequence number, then the entry. The number is written first and the
/// entry's `type` tag second, then the entry's fields in the order its struct declares them;
/// that order is the journal's wire format and must not change.
#[derive(Clone, Debug, Serialize)]
pub struct Line {
    pub seq: u64,
    #[serde(flatten)]
    pub entry: Entry,
}

/// A journal entry: one variant per entry type, each with the fields that type has.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entry {
    /// First line: format version, script, inputs and mode.
    RunStarted { header: RunHeader },
    /// A host call the script made and the answer it got.
    Call(CallEntry),
    /// A leaf session finished (in completion order; looked up by session id).
    Session(SessionEntry),
    /// An effect about to act. Written (and flushed) before acting.
    EffectIntent(EffectIntentEntry),
    /// What the effect did.
    EffectResult(EffectResultEntry),
    /// Last line of a run that ended.
    RunFinished(RunFinishedEntry),
}

/// A host call: its number in script order, what it asked and what it got. A spawn names the
/// session it started; its result is `null`.
#[derive(Clone, Debug, Serialize)]
pub struct CallEntry {
    pub call: u64,
    #[serde(rename = "fn")]
    pub function: String,
    pub key: CallKey,
    /// `line:col` of the call in the script (or in `source`, when not the main script).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pos: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub args: Value,
    pub result: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SessionEntry {
    pub result: Value,
    pub session: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct EffectIntentEntry {
    pub call: u64,
    #[serde(rename = "fn")]
    pub function: String,
    pub key: CallKey,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pos: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub args: Value,
    pub idempotency_key: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct EffectResultEntry {
    pub call: u64,
    #[serde(rename = "fn")]
    pub function: String,
    pub result: Value,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunFinishedEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    pub status: RunStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub at: String,
    /// The tokens and cost of every leaf of the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Value>,
}

/// One journal line as read, every field but `seq` and `type` optional, its strings and
/// payloads borrowed from the line wherever they can be: the one way a line is read. The order
/// check ([`EntryOrder`](super::reader::EntryOrder)) reads its place first, so that a line
/// missing a field is named; [`Line::try_from`] then builds the typed entry, parsing only the
/// payloads it keeps, and the replay index keeps the payloads' places instead.
#[derive(Deserialize)]
pub(super) struct LineFields<'a> {
    pub seq: u64,
    #[serde(rename = "type")]
    pub kind: EntryKind,
    #[serde(default)]
    pub header: Option<RunHeader>,
    #[serde(default)]
    pub call: Option<u64>,
    #[serde(default, rename = "fn", borrow)]
    pub function: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub key: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub pos: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub source: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub args: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub result: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub session: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub idempotency_key: Option<Cow<'a, str>>,
    #[serde(default)]
    pub status: Option<RunStatus>,
    #[serde(default, borrow)]
    pub error: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub at: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub usage: Option<&'a RawValue>,
}

impl LineFields<'_> {
    /// What the line says about its place in the journal, for the order check.
    pub(super) fn place(&self) -> super::reader::EntryPlace<'_> {
        super::reader::EntryPlace {
            seq: self.seq,
            kind: self.kind,
            call: self.call,
            session: self.session.as_deref(),
            has_function: self.function.is_some(),
            has_key: self.key.is_some(),
            has_result: self.result.is_some(),
            has_status: self.status.is_some(),
            has_header: self.header.is_some(),
        }
    }
}

/// A payload read whole (`null` where the line has none).
fn payload(raw: Option<&RawValue>) -> Result<Value, String> {
    raw.map_or(Ok(Value::Null), |raw| serde_json::from_str(raw.get()).map_err(|e| e.to_string()))
}

fn owned(text: Option<Cow<'_, str>>) -> Option<String> {
    text.map(Cow::into_owned)
}

impl<'de> Deserialize<'de> for Line {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields = LineFields::deserialize(deserializer)?;
        Line::try_from(fields).map_err(serde::de::Error::custom)
    }
}

/// The second reading step. The fields [`EntryOrder`](super::reader::EntryOrder) requires are
/// required here too; the others (a call's `args`, an intent's idempotency key, the finishing
/// time) read as empty when a line lacks them, as the journal's first readers let them.
impl TryFrom<LineFields<'_>> for Line {
    type Error = String;

    fn try_from(raw: LineFields<'_>) -> Result<Self, String> {
        let missing = |what: &str| format!("a `{}` entry without its {what}", raw.kind.as_str());
        let entry = match raw.kind {
            EntryKind::RunStarted => Entry::RunStarted { header: raw.header.ok_or_else(|| missing("header"))? },
            EntryKind::Call => Entry::Call(CallEntry {
                call: raw.call.ok_or_else(|| missing("call"))?,
                function: owned(raw.function).ok_or_else(|| missing("fn"))?,
                key: CallKey(owned(raw.key).ok_or_else(|| missing("key"))?),
                pos: owned(raw.pos),
                source: owned(raw.source),
                args: payload(raw.args)?,
                result: payload(raw.result)?,
                session: owned(raw.session),
            }),
            EntryKind::Session => Entry::Session(SessionEntry {
                result: payload(Some(raw.result.ok_or_else(|| missing("result"))?))?,
                session: owned(raw.session).ok_or_else(|| missing("session"))?,
            }),
            EntryKind::EffectIntent => Entry::EffectIntent(EffectIntentEntry {
                call: raw.call.ok_or_else(|| missing("call"))?,
                function: owned(raw.function).ok_or_else(|| missing("fn"))?,
                key: CallKey(owned(raw.key).ok_or_else(|| missing("key"))?),
                pos: owned(raw.pos),
                source: owned(raw.source),
                args: payload(raw.args)?,
                idempotency_key: owned(raw.idempotency_key).unwrap_or_default(),
            }),
            EntryKind::EffectResult => Entry::EffectResult(EffectResultEntry {
                call: raw.call.ok_or_else(|| missing("call"))?,
                function: owned(raw.function).unwrap_or_default(),
                result: payload(Some(raw.result.ok_or_else(|| missing("result"))?))?,
            }),
            EntryKind::RunFinished => Entry::RunFinished(RunFinishedEntry {
                result: raw.result.map(|r| payload(Some(r))).transpose()?,
                status: raw.status.ok_or_else(|| missing("status"))?,
                error: owned(raw.error),
                at: owned(raw.at).unwrap_or_default(),
                usage: raw.usage.map(|u| payload(Some(u))).transpose()?,
            }),
        };
        Ok(Line { seq: raw.seq, entry })
    }
}

/// Where in a script a host call was made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallSite {
    pub line: usize,
    pub col: usize,
    /// Module file, when the call was made inside an imported module.
    pub source: Option<String>,
}

impl CallSite {
    pub fn pos_string(&self) -> Option<String> {
        (self.line > 0).then(|| format!("{}:{}", self.line, self.col))
    }

    pub fn parse(pos: Option<&str>, source: Option<&str>) -> Self {
        let mut site = CallSite { source: source.map(str::to_owned), ..Default::default() };
        if let Some((l, c)) = pos.and_then(|p| p.split_once(':')) {
            site.line = l.parse().unwrap_or(0);
            site.col = c.parse().unwrap_or(0);
        }
        site
    }
}

impl EntryKind {
    /// The spelling of the `type` tag.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::RunStarted => "run_started",
            EntryKind::Call => "call",
            EntryKind::Session => "session",
            EntryKind::EffectIntent => "effect_intent",
            EntryKind::EffectResult => "effect_result",
            EntryKind::RunFinished => "run_finished",
        }
    }
}

/// What a call or an effect intent asked, and where in the script.
pub struct Asked<'a> {
    pub function: &'a str,
    pub args: &'a Value,
    pub pos: Option<&'a str>,
    pub source: Option<&'a str>,
}

impl Asked<'_> {
    pub fn site(&self) -> CallSite {
        CallSite::parse(self.pos, self.source)
    }
}

impl Entry {
    /// What the script asked, for a call or an effect intent.
    pub fn asked(&self) -> Option<Asked<'_>> {
        match self {
            Entry::Call(c) => Some(c.asked()),
            Entry::EffectIntent(e) => Some(e.asked()),
            _ => None,
        }
    }

    /// The host call this entry records or answers (a call, an effect's intent or result).
    pub fn call_number(&self) -> Option<u64> {
        match self {
            Entry::Call(c) => Some(c.call),
            Entry::EffectIntent(e) => Some(e.call),
            Entry::EffectResult(r) => Some(r.call),
            _ => None,
        }
    }

    /// The host function of a call, an effect's intent or its result.
    pub fn function(&self) -> Option<&str> {
        match self {
            Entry::Call(c) => Some(&c.function),
            Entry::EffectIntent(e) => Some(&e.function),
            Entry::EffectResult(r) => Some(&r.function),
            _ => None,
        }
    }

    /// The session a spawn started or a `session` entry finished.
    pub fn session_id(&self) -> Option<&str> {
        match self {
            Entry::Call(c) => c.session.as_deref(),
            Entry::Session(s) => Some(&s.session),
            _ => None,
        }
    }

    pub fn kind(&self) -> EntryKind {
        match self {
            Entry::RunStarted { .. } => EntryKind::RunStarted,
            Entry::Call(_) => EntryKind::Call,
            Entry::Session(_) => EntryKind::Session,
            Entry::EffectIntent(_) => EntryKind::EffectIntent,
            Entry::EffectResult(_) => EntryKind::EffectResult,
            Entry::RunFinished(_) => EntryKind::RunFinished,
        }
    }

    pub fn run_started(header: RunHeader) -> Self {
        Entry::RunStarted { header }
    }

    pub fn call(
        call: u64,
        function: &str,
        key: CallKey,
        site: &CallSite,
        args: Value,
        result: Value,
        session: Option<String>,
    ) -> Self {
        Entry::Call(CallEntry::new(call, function, key, site, args, result, session))
    }

    pub fn session(session: &str, result: Value) -> Self {
        Entry::Session(SessionEntry { result, session: session.to_owned() })
    }

    pub fn effect_intent(
        call: u64,
        function: &str,
        key: CallKey,
        site: &CallSite,
        args: Value,
        idempotency_key: String,
    ) -> Self {
        Entry::EffectIntent(EffectIntentEntry {
            call,
            function: function.to_owned(),
            key,
            pos: site.pos_string(),
            source: site.source.clone(),
            args,
            idempotency_key,
        })
    }

    pub fn effect_result(call: u64, function: &str, result: Value) -> Self {
        Entry::EffectResult(EffectResultEntry { call, function: function.to_owned(), result })
    }

    pub fn run_finished(status: RunStatus, error: Option<String>, result: Option<Value>, at: String) -> Self {
        Entry::RunFinished(RunFinishedEntry { result, status, error, at, usage: None })
    }
}

impl Entry {
    /// A `run_finished` entry with the tokens and cost of every leaf; other entries unchanged.
    pub fn with_usage(mut self, usage: &crate::leaf::session::Usage) -> Self {
        if let Entry::RunFinished(finished) = &mut self {
            finished.usage = Some(serde_json::to_value(usage).expect("usage serializes"));
        }
        self
    }
}

impl CallEntry {
    pub fn new(
        call: u64,
        function: &str,
        key: CallKey,
        site: &CallSite,
        args: Value,
        result: Value,
        session: Option<String>,
    ) -> Self {
        CallEntry {
            call,
            function: function.to_owned(),
            key,
            pos: site.pos_string(),
            source: site.source.clone(),
            args,
            result,
            session,
        }
    }

    pub fn site(&self) -> CallSite {
        CallSite::parse(self.pos.as_deref(), self.source.as_deref())
    }

    pub fn asked(&self) -> Asked<'_> {
        let (pos, source) = (self.pos.as_deref(), self.source.as_deref());
        Asked { function: &self.function, args: &self.args, pos, source }
    }
}

impl EffectIntentEntry {
    pub fn site(&self) -> CallSite {
        CallSite::parse(self.pos.as_deref(), self.source.as_deref())
    }

    pub fn asked(&self) -> Asked<'_> {
        let (pos, source) = (self.pos.as_deref(), self.source.as_deref());
        Asked { function: &self.function, args: &self.args, pos, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line of a journal written before the typed entries reads into them and writes back
    /// to the same bytes: the wire format did not move.
    #[test]
    fn a_journal_written_before_the_typed_entries_round_trips_byte_for_byte() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/journals/before-the-redesign/journal.jsonl");
        let text = std::fs::read_to_string(path).unwrap();
        let mut kinds = std::collections::HashSet::new();
        for (i, original) in text.lines().enumerate() {
            let line: Line = serde_json::from_str(original).unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
            kinds.insert(line.entry.kind().as_str());
            assert_eq!(serde_json::to_string(&line).unwrap(), original, "line {}", i + 1);
        }
        assert_eq!(kinds.len(), 6, "the fixture has every entry type");
    }

    #[test]
    fn a_line_missing_a_required_field_names_it() {
        let err = serde_json::from_str::<Line>(r#"{"seq":3,"type":"run_finished","at":"t"}"#).unwrap_err();
        assert!(err.to_string().contains("a `run_finished` entry without its status"), "{err}");
    }
}
