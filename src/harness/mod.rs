//! Harnesses: the one trait every kind of leaf (mock, command, agent CLIs, model APIs)
//! implements, and the set a run chooses from.
//!
//! A harness turns a [`LeafRequest`] into a [`SessionResult`]. It must turn every failure
//! (crash, hang, bad output, HTTP error) into a result, never a panic or an `Err`, and must
//! kill whatever it started when its future is dropped. Schema validation is not its job: the
//! scheduler validates every harness's output the same way, and asks the harness for one
//! [`Harness::repair`] when an output fails its schema. Retrying is not its job either: it
//! classes a failure ([`FailureClass`]: transient, permanent or configuration) from the
//! provider's structured fields, never from the wording of a message, and the scheduler
//! retries the transient ones.

pub mod agent_outcome;
pub mod agent_process;
pub mod anthropic;
pub mod claude_code;
pub mod codex;
pub mod command;
pub mod gemini;
pub mod http_api;
pub mod leaf_environment;
mod leaf_spawn;
pub mod leaf_supervisor;
pub mod openai;
pub mod process_group;
pub mod profile;
pub mod rate_table;
pub mod readiness;
pub mod redacting_harness;
pub mod schema_form;
pub mod structured_text;
pub mod supervisor_host;

use crate::config::Config;
use crate::leaf::session::{FailureClass, LeafRequest, SessionResult};
use crate::redaction::masked_tail;
use crate::redaction::Redactor;
use profile::HarnessProfile;
use redacting_harness::RedactingHarness;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub type LeafFuture = Pin<Box<dyn Future<Output = SessionResult> + Send>>;

pub trait Harness: Send + Sync {
    fn name(&self) -> &str;

    /// Called on the scheduler in spawn order. Anything order-sensitive (a mock's sequence
    /// position) must happen here, synchronously; the returned future runs concurrently and
    /// should do nothing until polled.
    fn start(&self, request: LeafRequest) -> LeafFuture;

    /// A leaf a resumed run answered from its journal instead of starting. Called in spawn
    /// order, like [`Harness::start`], so a harness whose answers depend on that order (a
    /// mock's `sequence`) continues where the recorded run left off.
    fn replayed(&self, workflow: &str, goal: &str, inputs: &serde_json::Value) {
        let _ = (workflow, goal, inputs);
    }

    /// Continues a finished leaf's conversation once, telling it why its output was rejected
    /// (`feedback`). `None` when this harness cannot continue a conversation.
    fn repair(&self, request: LeafRequest, previous: &SessionResult, feedback: &str) -> Option<LeafFuture> {
        let _ = (request, previous, feedback);
        None
    }

    /// What the scheduler applies to this harness's leaves besides the run's limits.
    fn limits(&self) -> HarnessLimits {
        HarnessLimits::default()
    }

    /// True when the leaf runs in a directory (and so can be given its own git worktree).
    fn runs_in_workdir(&self) -> bool {
        false
    }

    /// True when the answers live in this process (a scenario's mock leaves): a leaf run as a
    /// job elsewhere takes its answer along, worked out here.
    fn answers_in_process(&self) -> bool {
        false
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HarnessLimits {
    /// Most leaves of this harness at once; `None` leaves it to `--max-parallel`.
    pub concurrency: Option<usize>,
    /// First delay of the exponential backoff between retries.
    pub retry_backoff: Duration,
    /// How long past its timeout the scheduler waits for a leaf before giving up on it (a
    /// remote leaf's job also needs time to be scheduled and started).
    pub timeout_grace: Duration,
}

impl Default for HarnessLimits {
    fn default() -> Self {
        HarnessLimits {
            concurrency: None,
            retry_backoff: Duration::from_secs(1),
            timeout_grace: Duration::from_secs(5),
        }
    }
}

/// The kinds of configurable harness, by the name they answer to when not renamed.
pub const AGENT_KINDS: [&str; 5] = ["claude-code", "codex", "gemini", "anthropic", "openai"];

#[derive(Debug, thiserror::Error)]
pub enum HarnessSetError {
    #[error("coord.toml [harness.{name}]: unknown harness; set `kind` to one of: {}, command", AGENT_KINDS.join(", "))]
    UnknownKind { name: String },
    #[error("coord.toml [harness.{name}]: {reason}")]
    Invalid { name: String, reason: String },
}

/// The harnesses available to one run, by name. Every harness in the set is wrapped so that
/// what it returns passes through the run's [`Redactor`].
#[derive(Clone)]
pub struct HarnessSet {
    by_name: BTreeMap<String, Arc<dyn Harness>>,
    /// The configured agent and API harnesses' settings, by name.
    profiles: BTreeMap<String, Arc<HarnessProfile>>,
    redactor: Arc<Redactor>,
}

impl Default for HarnessSet {
    fn default() -> Self {
        HarnessSet::new()
    }
}

impl HarnessSet {
    /// Every built-in harness with default settings.
    pub fn new() -> Self {
        HarnessSet::configured(&Config::default(), Path::new(".")).expect("the default configuration is valid")
    }

    /// Every built-in harness, set up from `coord.toml`'s `[harness.*]` tables, plus any table
    /// naming a new harness of a built-in `kind`. Relative binaries resolve against the
    /// config's folder (else `project_root`).
    pub fn configured(config: &Config, project_root: &Path) -> Result<Self, HarnessSetError> {
        let sections = &config.file.harness;
        let base_dir = config.base_dir().unwrap_or(project_root).to_owned();
        // The process's redactor, knowing every credential variable this config names.
        crate::redaction::learn_variables(config.secret_variables());
        let redactor = crate::redaction::process();
        let mut set = HarnessSet { by_name: BTreeMap::new(), profiles: BTreeMap::new(), redactor: redactor.clone() };
        for (name, settings) in sections {
            if let Some(bad) = settings.pass_env.iter().find(|n| !crate::workflow::is_variable_name(n)) {
                return Err(HarnessSetError::Invalid {
                    name: name.clone(),
                    reason: format!("pass_env: `{bad}` is not an environment variable name"),
                });
            }
        }

        let command_settings = sections.get("command").cloned().unwrap_or_default();
        let command_limits = HarnessProfile::limits_of("command", &command_settings)
            .map_err(|reason| HarnessSetError::Invalid { name: "command".into(), reason })?;
        set.insert(Arc::new(command::CommandHarness::new(command_limits, command_settings)));

        let mut names: Vec<(String, String)> = AGENT_KINDS.iter().map(|k| (k.to_string(), k.to_string())).collect();
        for (name, settings) in sections {
            if AGENT_KINDS.contains(&name.as_str()) || name == "command" {
                if settings.kind.as_deref().is_some_and(|k| k != name) {
                    return Err(HarnessSetError::Invalid {
                        name: name.clone(),
                        reason: "a built-in harness cannot change its `kind`; name a new table instead".into(),
                    });
                }
                continue;
            }
            match settings.kind.as_deref() {
                Some(kind) if AGENT_KINDS.contains(&kind) => names.push((name.clone(), kind.to_owned())),
                _ => return Err(HarnessSetError::UnknownKind { name: name.clone() }),
            }
        }
        for (name, kind) in names {
            let settings = sections.get(&name).cloned().unwrap_or_default();
            let profile = HarnessProfile::new(&name, &kind, settings, &base_dir, redactor.clone())
                .map_err(|reason| HarnessSetError::Invalid { name: name.clone(), reason })?;
            let profile = Arc::new(profile);
            set.profiles.insert(name.clone(), profile.clone());
            let harness: Arc<dyn Harness> = match kind.as_str() {
                "claude-code" => Arc::new(claude_code::ClaudeCodeHarness::new(profile)),
                "codex" => Arc::new(codex::CodexHarness::new(profile)),
                "gemini" => Arc::new(gemini::GeminiHarness::new(profile)),
                "anthropic" => Arc::new(anthropic::AnthropicHarness::new(profile)),
                _ => Arc::new(openai::OpenAiHarness::new(profile)),
            };
            set.insert(harness);
        }
        Ok(set)
    }

    pub fn insert(&mut self, harness: Arc<dyn Harness>) {
        let wrapped = Arc::new(RedactingHarness::new(harness, self.redactor.clone()));
        self.by_name.insert(wrapped.name().to_owned(), wrapped);
    }

    /// `harness` behind this set's redactor, as every harness of the set is.
    pub fn wrap(&self, harness: Arc<dyn Harness>) -> Arc<dyn Harness> {
        Arc::new(RedactingHarness::new(harness, self.redactor.clone()))
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Harness>> {
        self.by_name.get(name).cloned()
    }

    /// The settings of a configured agent or API harness.
    pub fn profile(&self, name: &str) -> Option<Arc<HarnessProfile>> {
        self.profiles.get(name).cloned()
    }

    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }

    /// The secrets this run must never write anywhere.
    pub fn redactor(&self) -> Arc<Redactor> {
        self.redactor.clone()
    }
}

/// The follow-up sent to a leaf whose output failed its schema.
pub fn repair_prompt(feedback: &str) -> String {
    format!(
        "Your final answer does not match the required JSON Schema: {feedback}\n\
         Answer again with the corrected JSON only, matching the schema exactly."
    )
}

/// What an HTTP status from a model provider says about the leaf: rate limits, timeouts and
/// server errors (Anthropic's 529 "overloaded" included) pass; a rejected or missing key, or a
/// key without access, is the set-up; anything else is this request's own fault.
pub fn class_of_status(status: u16) -> FailureClass {
    match status {
        401 | 403 => FailureClass::Configuration,
        408 | 409 | 425 | 429 | 500..=599 => FailureClass::Transient,
        _ => FailureClass::Permanent,
    }
}

/// An agent's error text as a person should read it: terminal escape codes removed, stack
/// frames and blank lines dropped, on one line, at most `max` bytes (the tail).
pub fn readable(text: &str, max: usize) -> String {
    let plain = strip_ansi_escapes::strip_str(text);
    let lines: Vec<&str> = plain
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("at ") && !l.starts_with("^"))
        .collect();
    masked_tail(lines.join(" ").as_bytes(), max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::leaf_settings::HarnessSettings;

    fn config_with(name: &str, settings: HarnessSettings) -> Config {
        let mut config = Config::default();
        config.file.harness.insert(name.to_owned(), settings);
        config
    }

    #[test]
    fn every_builtin_is_available_and_renamed_kinds_are_added() {
        let set = HarnessSet::new();
        assert_eq!(set.names(), vec!["anthropic", "claude-code", "codex", "command", "gemini", "openai"]);
        let ollama = HarnessSettings { kind: Some("openai".into()), ..Default::default() };
        let set = HarnessSet::configured(&config_with("ollama", ollama), Path::new(".")).unwrap();
        assert!(set.get("ollama").is_some());
        assert_eq!(set.get("ollama").unwrap().name(), "ollama");
    }

    #[test]
    fn unknown_kinds_are_config_errors() {
        let err = HarnessSet::configured(&config_with("llama", HarnessSettings::default()), Path::new("."));
        assert!(matches!(err, Err(HarnessSetError::UnknownKind { .. })));
        let bad = HarnessSettings { kind: Some("codex".into()), ..Default::default() };
        assert!(HarnessSet::configured(&config_with("gemini", bad), Path::new(".")).is_err());
        let bad = HarnessSettings { retry_backoff: Some("soon".into()), ..Default::default() };
        assert!(HarnessSet::configured(&config_with("codex", bad), Path::new(".")).is_err());
    }

    #[test]
    fn statuses_are_classed() {
        assert_eq!(class_of_status(429), FailureClass::Transient);
        assert_eq!(class_of_status(529), FailureClass::Transient);
        assert_eq!(class_of_status(500), FailureClass::Transient);
        assert_eq!(class_of_status(401), FailureClass::Configuration);
        assert_eq!(class_of_status(400), FailureClass::Permanent);
    }

    #[test]
    fn readable_text_has_no_escapes_or_stack_frames() {
        let raw = "\u{1b}[31mError: Gemini CLI is not running in a trusted directory.\u{1b}[39m\n    at main (file:///x/gemini.js:10:5)\n    at async run (node:internal:1:1)\n\n";
        assert_eq!(readable(raw, 200), "Error: Gemini CLI is not running in a trusted directory.");
    }
}
