//! Effects and world reads: what a coordinator can observe (GitHub reads) and change (merge,
//! notify, comment, label) outside itself.
//!
//! Owns the [`World`] trait that both the offline scenario world and the real backends
//! implement. It must not journal: the host journals an intent before calling [`World::act`] and
//! the result after, so every backend gets exactly-once for free.
//!
//! Backends: `scenario::ScenarioWorld` (offline), [`live_world::LiveWorld`] composing
//! [`github`] (reads, PR effects), [`git_merge_queue`] (`merge(branch)`) and [`notify`]
//! (channels).

pub mod git_merge_queue;
pub mod github;
pub mod live_world;
pub mod notify;
pub mod project_store;

use serde_json::Value;

/// A GitHub read. Results are JSON, journaled verbatim, so replay needs no network.
#[derive(Clone, Debug, PartialEq)]
pub enum GithubRead {
    Prs(Value),
    Pr(u64),
    Checks(u64),
    Reviews(u64),
    Issues(Value),
}

impl GithubRead {
    pub fn function(&self) -> &'static str {
        match self {
            GithubRead::Prs(_) => "github.prs",
            GithubRead::Pr(_) => "github.pr",
            GithubRead::Checks(_) => "github.checks",
            GithubRead::Reviews(_) => "github.reviews",
            GithubRead::Issues(_) => "github.issues",
        }
    }

    pub fn args(&self) -> Value {
        match self {
            GithubRead::Prs(opts) | GithubRead::Issues(opts) => opts.clone(),
            GithubRead::Pr(n) | GithubRead::Checks(n) | GithubRead::Reviews(n) => Value::from(*n),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EffectKind {
    Merge,
    Notify,
    Comment,
    Label,
    Unlabel,
    Close,
}

impl EffectKind {
    pub fn function(self) -> &'static str {
        match self {
            EffectKind::Merge => "merge",
            EffectKind::Notify => "notify",
            EffectKind::Comment => "github.comment",
            EffectKind::Label => "github.label",
            EffectKind::Unlabel => "github.unlabel",
            EffectKind::Close => "github.close",
        }
    }

    pub fn from_function(f: &str) -> Option<Self> {
        Some(match f {
            "merge" => EffectKind::Merge,
            "notify" => EffectKind::Notify,
            "github.comment" => EffectKind::Comment,
            "github.label" => EffectKind::Label,
            "github.unlabel" => EffectKind::Unlabel,
            "github.close" => EffectKind::Close,
            _ => return None,
        })
    }
}

/// An effect the script asked for: its kind and its arguments as journaled.
#[derive(Clone, Debug)]
pub struct EffectRequest {
    pub kind: EffectKind,
    pub args: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Failed(String),
}

pub trait World: Send {
    fn github_read(&mut self, read: &GithubRead) -> Result<Value, WorldError>;

    /// Performs the effect. A refusal (not green, head moved) is an `Ok` result with a reason.
    fn act(&mut self, effect: &EffectRequest, idempotency_key: &str) -> Result<Value, WorldError>;

    /// Resume found an intent without a result: report the result if the effect already
    /// happened (PR already merged, notification already delivered), else `None`.
    fn already_done(&mut self, effect: &EffectRequest, idempotency_key: &str) -> Result<Option<Value>, WorldError>;

    /// Replays a recorded effect into in-memory state, so a resumed run sees the world as the
    /// recorded prefix left it. Real backends keep their state remotely and do nothing.
    fn restore(&mut self, _effect: &EffectRequest, _result: &Value) {}

    /// True when effects leave this process: the journal is fsynced before each one.
    fn is_external(&self) -> bool;

    /// What the world noticed that is not part of an answer (a list that changed while it was
    /// read page by page), oldest first, each once. The host writes them to the run's log.
    fn take_notes(&mut self) -> Vec<String> {
        Vec::new()
    }
}

/// The world of a live run before any backend is configured: every read and effect explains
/// what to configure instead of failing obscurely.
pub struct UnconfiguredWorld;

impl World for UnconfiguredWorld {
    fn github_read(&mut self, read: &GithubRead) -> Result<Value, WorldError> {
        Err(WorldError::Unavailable(format!(
            "{}: no GitHub backend in this run; pass --scenario FILE or --demo for an offline run",
            read.function()
        )))
    }

    fn act(&mut self, effect: &EffectRequest, _: &str) -> Result<Value, WorldError> {
        Err(WorldError::Unavailable(format!(
            "{}: no backend for this effect in this run; pass --scenario FILE or --demo, or --dry-run",
            effect.kind.function()
        )))
    }

    fn already_done(&mut self, _: &EffectRequest, _: &str) -> Result<Option<Value>, WorldError> {
        Ok(None)
    }

    fn is_external(&self) -> bool {
        true
    }
}
