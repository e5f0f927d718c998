//! The `[channels.*]`, `[github]` and `[merge]` sections of coord.toml: what the effects read.
//!
//! Plain settings, parsed and checked here so the config layer needs nothing from the effects
//! that act on them; sending, GitHub requests and merging stay in `effects`.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `[channels."NAME"]` in coord.toml.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ChannelConfig {
    Slack(SlackChannel),
    Webhook(WebhookChannel),
    Github(GithubChannel),
    File(FileChannel),
    Stdout(StdoutChannel),
    PagerDuty(PagerDutyChannel),
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlackChannel {
    /// The environment variable holding the incoming-webhook URL (the URL is a credential).
    pub webhook_env: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, try_from = "WebhookTable")]
pub struct WebhookChannel {
    pub url: WebhookUrl,
    /// The environment variable holding the HMAC-SHA256 signing secret.
    pub secret_env: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WebhookUrl {
    Literal(String),
    Env(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookTable {
    url: Option<String>,
    url_env: Option<String>,
    secret_env: Option<String>,
}

impl TryFrom<WebhookTable> for WebhookChannel {
    type Error = String;

    fn try_from(t: WebhookTable) -> Result<Self, String> {
        let url = match (t.url, t.url_env) {
            (Some(u), None) => WebhookUrl::Literal(u),
            (None, Some(e)) => WebhookUrl::Env(e),
            _ => return Err("a webhook channel needs exactly one of `url` and `url_env`".into()),
        };
        Ok(WebhookChannel { url, secret_env: t.secret_env })
    }
}

/// `type = "pagerduty"`: an alert through PagerDuty's Events API v2.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyChannel {
    /// The environment variable holding the service integration's routing key (a credential).
    pub routing_key_env: String,
    /// The Events API endpoint [default: PagerDuty's, [`PAGERDUTY_EVENTS_URL`]].
    #[serde(default)]
    pub url: Option<String>,
    /// The alert's severity [default: `error`].
    #[serde(default)]
    pub severity: PagerDutySeverity,
}

/// PagerDuty's Events API v2 endpoint.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// The severities the Events API v2 takes.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PagerDutySeverity {
    Critical,
    #[default]
    Error,
    Warning,
    Info,
}

impl PagerDutySeverity {
    pub fn as_str(self) -> &'static str {
        match self {
            PagerDutySeverity::Critical => "critical",
            PagerDutySeverity::Error => "error",
            PagerDutySeverity::Warning => "warning",
            PagerDutySeverity::Info => "info",
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GithubChannel {
    /// The issue or PR of the run's repository the notifications are comments on.
    pub issue: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileChannel {
    /// JSONL file, relative to the project root.
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StdoutChannel {}

/// `[github]` in coord.toml.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubSettings {
    /// The repository when neither `--repo` nor `inputs.repo` names one.
    pub repo: Option<String>,
    /// The API base URL (GitHub Enterprise: `https://HOST/api/v3`); `GITHUB_API_URL` wins.
    pub api_url: Option<String>,
    /// The environment variable holding the token, tried before `GITHUB_TOKEN` and `GH_TOKEN`.
    pub token_env: Option<String>,
    /// The most a run waits for GitHub's rate limits, every wait together (default 10m); a
    /// wait that would pass it fails the request at once, saying when to retry.
    #[serde(default, deserialize_with = "deserialize_duration")]
    pub max_rate_limit_wait: Option<Duration>,
    /// The first wait for a secondary rate limit GitHub sends no `retry-after` with (default
    /// 60s, GitHub's minimum), doubled each time the same request meets it again. Lower it only
    /// for tests.
    #[serde(default, deserialize_with = "deserialize_duration")]
    pub secondary_rate_limit_wait: Option<Duration>,
    /// What `github::checks` says of a head with no statuses and no check runs.
    #[serde(default)]
    pub no_checks: NoChecks,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NoChecks {
    /// Nothing reported yet: CI may not have started (the safe default).
    #[default]
    Pending,
    /// The repository has no CI: nothing to wait for.
    Green,
}

impl NoChecks {
    pub fn state(self) -> &'static str {
        match self {
            NoChecks::Pending => "pending",
            NoChecks::Green => "green",
        }
    }
}

/// `[merge]` in coord.toml.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergeQueueSettings {
    /// Shell command that must pass on the merged tree (run with `sh -c` in the scratch worktree).
    pub test_command: Option<String>,
    /// The branch merges land on (default `main`); `merge(branch, #{into: ...})` overrides it.
    pub target: Option<String>,
    /// Longest the test command may run (default 30m); past it, the merge is refused.
    #[serde(default, deserialize_with = "deserialize_duration")]
    pub test_timeout: Option<Duration>,
}

/// A duration in coord.toml: seconds, or text like "90s" or "15m". An error carries the
/// value's span, so the diagnostic points at it.
pub fn deserialize_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<std::time::Duration>, D::Error> {
    use serde::de::Error;
    match <toml::Value as serde::Deserialize>::deserialize(d)? {
        toml::Value::Integer(secs) if secs >= 0 => Ok(Some(std::time::Duration::from_secs(secs as u64))),
        toml::Value::String(s) => humantime::parse_duration(&s)
            .map(Some)
            .map_err(|e| D::Error::custom(format!("`{s}` is not a duration ({e}); write e.g. \"90s\" or \"15m\""))),
        other => Err(D::Error::custom(format!("expected a duration like \"90s\", not {other}"))),
    }
}
