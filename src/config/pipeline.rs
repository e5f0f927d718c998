//! `[[pipeline]]` sections of `coord.toml`, as written: names, scripts, schedules and triggers,
//! with the spans a diagnostic needs.
//!
//! Owns the file shape only (unknown fields and wrong types are refused here, with a span).
//! It must not interpret schedules, time zones or payload paths: `daemon::pipeline` validates
//! them and builds the runnable pipelines.

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSection {
    /// Names the pipeline in logs, locks (`.coord/locks/<name>.lock`) and webhook URLs.
    pub name: Spanned<String>,
    /// The coordinator script, relative to the folder of `coord.toml`.
    pub script: Spanned<String>,
    /// A cron expression (5 fields, or 6 with seconds first); none: triggered only.
    #[serde(default)]
    pub schedule: Option<Spanned<String>>,
    /// An IANA time zone the schedule is read in (default UTC).
    #[serde(default)]
    pub timezone: Option<Spanned<String>>,
    #[serde(default)]
    pub inputs: toml::Table,
    #[serde(default)]
    pub overlap: Overlap,
    /// Run offline against this scenario (relative to the folder of `coord.toml`).
    #[serde(default)]
    pub scenario: Option<Spanned<String>>,
    /// How many fire times missed while the daemon was down are run when it starts.
    #[serde(default)]
    pub catch_up: Option<u32>,
    #[serde(default)]
    pub webhook: Option<WebhookSection>,
}

/// What a fire does while a run of the same pipeline is in flight.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Overlap {
    /// Drop the fire.
    #[default]
    Skip,
    /// Keep it, at most one, and run it when the run in flight ends.
    Queue,
}

impl Overlap {
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Queue => "queue",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    /// The environment variable holding the HMAC secret (never the secret itself).
    pub secret_env: Spanned<String>,
    /// Input name -> where in the JSON payload it is (`/json/pointer` or `dotted.path`).
    #[serde(default)]
    pub inputs: IndexMap<String, Spanned<String>>,
}

/// A `[[signal_hook]]`: a signed webhook (`POST /signals/<name>`) that the daemon turns into a
/// signal for the runs waiting on it, e.g. a GitHub comment `/approve` into `agreement`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalHookSection {
    /// Names the hook in its URL and in logs.
    pub name: Spanned<String>,
    /// The environment variable holding the HMAC secret (never the secret itself).
    pub secret_env: Spanned<String>,
    /// The signal delivered: what the waiting script's `wait_signal(NAME)` names.
    pub signal: Spanned<String>,
    /// Where in the payload the key is that a wait's `key` must equal (e.g. `issue.number`);
    /// none: every run waiting for the signal gets it.
    #[serde(default)]
    pub key: Option<Spanned<String>>,
    /// Payload path -> the text its value must start with; a payload that does not match is
    /// answered and ignored (e.g. `"comment.body" = "/approve"`).
    #[serde(default, rename = "match")]
    pub matches: IndexMap<String, Spanned<String>>,
    /// Where in the payload the signal's data is; none: the whole payload.
    #[serde(default)]
    pub data: Option<Spanned<String>>,
}
