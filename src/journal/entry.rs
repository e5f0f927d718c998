//! One journal line. The wire shape is a single flat record with a `type` tag and optional
//! fields, rather than a serde-tagged enum, because flat records parse without buffering and
//! keep replay fast. Constructors below are the only way the runtime builds entries.

use super::CallKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
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

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    #[serde(rename = "type")]
    pub kind: EntryKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<RunHeader>,
    /// Index of the host call in script order (calls, effects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<u64>,
    #[serde(default, rename = "fn", skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<CallKey>,
    /// `line:col` of the call in the script (or in `source`, when not the main script).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pos: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RunStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// `run_finished`: the tokens and cost of every leaf of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Value>,
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

impl Entry {
    fn bare(kind: EntryKind) -> Self {
        Entry {
            seq: 0,
            kind,
            header: None,
            call: None,
            function: None,
            key: None,
            pos: None,
            source: None,
            args: None,
            result: None,
            session: None,
            idempotency_key: None,
            status: None,
            error: None,
            at: None,
            usage: None,
        }
    }

    pub fn run_started(header: RunHeader) -> Self {
        Entry { header: Some(header), ..Entry::bare(EntryKind::RunStarted) }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn call(
        call: u64,
        function: &str,
        key: CallKey,
        site: &CallSite,
        args: Value,
        result: Value,
        session: Option<String>,
    ) -> Self {
        Entry {
            call: Some(call),
            function: Some(function.to_owned()),
            key: Some(key),
            pos: site.pos_string(),
            source: site.source.clone(),
            args: Some(args),
            result: Some(result),
            session,
            ..Entry::bare(EntryKind::Call)
        }
    }

    pub fn session(session: &str, result: Value) -> Self {
        Entry { session: Some(session.to_owned()), result: Some(result), ..Entry::bare(EntryKind::Session) }
    }

    pub fn effect_intent(
        call: u64,
        function: &str,
        key: CallKey,
        site: &CallSite,
        args: Value,
        idempotency_key: String,
    ) -> Self {
        Entry {
            call: Some(call),
            function: Some(function.to_owned()),
            key: Some(key),
            pos: site.pos_string(),
            source: site.source.clone(),
            args: Some(args),
            idempotency_key: Some(idempotency_key),
            ..Entry::bare(EntryKind::EffectIntent)
        }
    }

    pub fn effect_result(call: u64, function: &str, result: Value) -> Self {
        Entry {
            call: Some(call),
            function: Some(function.to_owned()),
            result: Some(result),
            ..Entry::bare(EntryKind::EffectResult)
        }
    }

    pub fn run_finished(status: RunStatus, error: Option<String>, result: Option<Value>, at: String) -> Self {
        Entry { status: Some(status), error, result, at: Some(at), ..Entry::bare(EntryKind::RunFinished) }
    }

    pub fn with_usage(mut self, usage: &crate::leaf::session::Usage) -> Self {
        self.usage = Some(serde_json::to_value(usage).expect("usage serializes"));
        self
    }

    pub fn site(&self) -> CallSite {
        CallSite::parse(self.pos.as_deref(), self.source.as_deref())
    }
}
