//! What a leaf session is asked to do and what it yields: the one record every harness returns.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::workflow::Workflow;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Ok,
    Failed,
    Timeout,
    Cancelled,
    /// Not run because the run's budget was spent.
    SkippedBudget,
    /// Not run because the run is a dry run and the leaf could change something (it has a
    /// worktree or its workflow `writes`), or the dry run runs no leaves.
    SkippedDryRun,
    /// What-if replay: the edited script asked for a leaf the recorded run never ran.
    NotRecorded,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Ok => "ok",
            SessionStatus::Failed => "failed",
            SessionStatus::Timeout => "timeout",
            SessionStatus::Cancelled => "cancelled",
            SessionStatus::SkippedBudget => "skipped_budget",
            SessionStatus::SkippedDryRun => "skipped_dry_run",
            SessionStatus::NotRecorded => "not_recorded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ok" => SessionStatus::Ok,
            "failed" => SessionStatus::Failed,
            "timeout" => SessionStatus::Timeout,
            "cancelled" => SessionStatus::Cancelled,
            "skipped_budget" => SessionStatus::SkippedBudget,
            "skipped_dry_run" => SessionStatus::SkippedDryRun,
            "not_recorded" => SessionStatus::NotRecorded,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_read_tokens: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_write_tokens: u64,
    #[serde(default)]
    pub cost_usd: f64,
    /// The cost was computed from a rate table rather than reported by the provider.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cost_estimated: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Usage {
    /// The tokens of `self` beyond `earlier` (a cumulative report minus what was reported
    /// before); cost is left to be priced again.
    pub fn tokens_since(&self, earlier: &Usage) -> Usage {
        Usage {
            input_tokens: self.input_tokens.saturating_sub(earlier.input_tokens),
            output_tokens: self.output_tokens.saturating_sub(earlier.output_tokens),
            cache_read_tokens: self.cache_read_tokens.saturating_sub(earlier.cache_read_tokens),
            cache_write_tokens: self.cache_write_tokens.saturating_sub(earlier.cache_write_tokens),
            cost_usd: 0.0,
            cost_estimated: false,
        }
    }

    pub fn add(&mut self, other: &Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cache_read_tokens += other.cache_read_tokens;
        self.cache_write_tokens += other.cache_write_tokens;
        self.cost_usd += other.cost_usd;
        self.cost_estimated |= other.cost_estimated;
    }
}

/// The record every harness yields for one leaf.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionResult {
    pub id: String,
    pub workflow: String,
    pub status: SessionStatus,
    #[serde(default)]
    pub output: Value,
    /// The leaf's answer as text. In the journal, a text over the inline limit is cut to its
    /// start and the whole of it kept in the blob named by `text_blob`.
    #[serde(default)]
    pub text: String,
    /// Blob hash of the whole `text`, when the journal line holds only its start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_blob: Option<String>,
    #[serde(default)]
    pub usage: Usage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_session_id: Option<String>,
    /// Blob hash of the transcript, when the harness kept one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript: Option<String>,
    #[serde(default)]
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "is_one")]
    pub attempts: u32,
    /// What kind of failure this is, when the harness could tell (see [`FailureClass`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureClass>,
    /// The agent CLI's own version (`claude --version`), for the CLI harnesses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// When the leaf waited, ran and ended, on the run's clock: an observation for the
    /// timeline, set by the scheduler, never shown to the script or the routing trace.
    /// Absent in journals written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<SessionTiming>,
    /// Set by a harness when the failure is transient (rate limit, 5xx, a crash before any
    /// result), so the scheduler may retry. Never journaled.
    #[serde(skip)]
    pub retry: Option<RetryHint>,
    /// Set by a harness when the leaf answered, but not with JSON, and its conversation can
    /// be continued: the scheduler's one repair turn may still get the answer. Never journaled.
    #[serde(skip)]
    pub repairable: bool,
}

/// A finished session as a run keeps it: the leaf's result and what its spawn asked for. Held
/// once behind an `Arc` that the host's session table and the script's result record share,
/// so a run keeps one copy of every answer however many places read it.
#[derive(Debug)]
pub struct FinishedSession {
    pub result: SessionResult,
    /// The spawn's `goal`.
    pub goal: String,
    /// The spawn's `inputs` (a map; empty when it gave none).
    pub inputs: Value,
}

/// What kind of failure a failed leaf had, as its harness read it from structured fields
/// (status codes, error types, exit codes), never from the wording of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// A passing condition: rate limit, overload, a 5xx, a crash before any answer. Retried
    /// with backoff.
    Transient,
    /// The leaf's own failure: a request the provider refuses, a turn limit, no usable
    /// answer. Failed at once; the script routes on it.
    Permanent,
    /// The set-up is wrong: binary missing, key missing or rejected, untrusted folder. Failed
    /// at once, never retried; the error ends with a one-line fix.
    Configuration,
}

impl FailureClass {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Transient => "transient",
            FailureClass::Permanent => "permanent",
            FailureClass::Configuration => "configuration",
        }
    }
}

/// When a leaf waited, ran and ended: milliseconds since the run started (a resumed run keeps
/// counting from its first start, downtime included).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionTiming {
    /// Handed to the scheduler (the script's `spawn_session`, seen by the dispatcher).
    pub queued_ms: u64,
    /// Got its first run-wide permit (`--max-parallel`); absent when it never got one (it was
    /// cancelled while it waited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    /// Its result was ready.
    pub ended_ms: u64,
    /// Each turn of the harness under its permits: the first attempt, retries, the repair.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub turns: Vec<Turn>,
}

/// One turn of a leaf's harness, from getting its permits to its answer (or timeout).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    pub kind: TurnKind,
    pub start_ms: u64,
    pub end_ms: u64,
    /// How long it was blocked waiting for its permits (its harness's, then `--max-parallel`)
    /// before `start_ms`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub waited_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnKind {
    First,
    /// Another attempt after a transient failure.
    Retry,
    /// The one repair turn after an answer that did not fit its schema.
    Repair,
}

/// Why a failed leaf may succeed if run again, and how long the provider asked us to wait.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RetryHint {
    /// The provider's `retry-after`, when it sent one.
    pub after: Option<Duration>,
}

fn is_one(n: &u32) -> bool {
    *n <= 1
}

impl SessionResult {
    pub fn new(id: &str, workflow: &str, status: SessionStatus) -> Self {
        SessionResult {
            id: id.to_owned(),
            workflow: workflow.to_owned(),
            status,
            output: Value::Null,
            text: String::new(),
            text_blob: None,
            usage: Usage::default(),
            error: None,
            harness: None,
            model: None,
            provider_session_id: None,
            transcript: None,
            duration_ms: 0,
            attempts: 1,
            failure: None,
            agent_version: None,
            timing: None,
            retry: None,
            repairable: false,
        }
    }

    pub fn failed(id: &str, workflow: &str, status: SessionStatus, error: impl Into<String>) -> Self {
        SessionResult { error: Some(error.into()), ..SessionResult::new(id, workflow, status) }
    }

    /// A failed leaf of a known class; a transient one may be retried (after `retry_after`
    /// at the least, when the provider sent one).
    pub fn failed_as(
        id: &str,
        workflow: &str,
        class: FailureClass,
        error: impl Into<String>,
        retry_after: Option<Duration>,
    ) -> Self {
        let mut r = SessionResult::failed(id, workflow, SessionStatus::Failed, error);
        r.set_failure(class, retry_after);
        r
    }

    /// A leaf that answered without JSON: a permanent failure unless a repair turn fixes it.
    pub fn no_json(id: &str, workflow: &str, error: impl Into<String>, text: &str) -> Self {
        let mut r = SessionResult::failed_as(id, workflow, FailureClass::Permanent, error, None);
        r.text = text.to_owned();
        r.repairable = true;
        r
    }

    /// True for a leaf stopped by something outside it: its harness's set-up (configuration)
    /// or its provider (a transient failure that outlasted every retry), and for a leaf not
    /// started because its harness had such a failure. Such a result is not the leaf's
    /// answer: the run stops instead of routing on it (see `docs/harnesses.md`).
    pub fn is_outage(&self) -> bool {
        self.status != SessionStatus::Ok
            && matches!(self.failure, Some(FailureClass::Configuration | FailureClass::Transient))
    }

    pub fn set_failure(&mut self, class: FailureClass, retry_after: Option<Duration>) {
        self.failure = Some(class);
        self.retry = (class == FailureClass::Transient).then_some(RetryHint { after: retry_after });
    }
}

/// Everything a harness needs to run one leaf.
#[derive(Clone, Debug)]
pub struct LeafRequest {
    pub session_id: String,
    pub workflow: Arc<Workflow>,
    pub goal: String,
    pub inputs: Value,
    /// The rendered prompt (the dispatcher renders it just before the harness starts).
    pub prompt: String,
    /// The output schema (the workflow's, or a per-call one such as `classify`'s).
    pub schema: Arc<Value>,
    pub model: Option<String>,
    pub timeout: Duration,
    pub run_dir: PathBuf,
    /// Project root: where relative commands resolve and leaves run by default.
    pub project_root: PathBuf,
    /// Per-call overrides from `spawn_session` opts that harnesses may read.
    pub overrides: Value,
    /// Where the leaf runs: the project root, or its own git worktree.
    pub workdir: PathBuf,
    /// The leaf's own git worktree, created by the scheduler before the leaf starts.
    pub worktree: Option<super::worktree::WorktreePlan>,
    /// Environment variables the leaf's process must not inherit (a dry run's GitHub, Slack
    /// and webhook credentials).
    pub withheld_env: Arc<[String]>,
}

#[cfg(test)]
impl LeafRequest {
    /// A leaf of `workflow` as unit tests need one: session `s1`, run in the temp folder.
    pub fn sample(workflow: Workflow, timeout: Duration) -> Self {
        let schema = workflow.schema.clone();
        LeafRequest {
            session_id: "s1".into(),
            workflow: Arc::new(workflow),
            goal: String::new(),
            inputs: serde_json::json!({}),
            prompt: String::new(),
            schema,
            model: None,
            timeout,
            run_dir: std::env::temp_dir(),
            project_root: std::env::temp_dir(),
            overrides: serde_json::json!({}),
            workdir: std::env::temp_dir(),
            worktree: None,
            withheld_env: Arc::from(Vec::<String>::new()),
        }
    }
}
