//! `notify(channel, message)` in a live run: finds the channel (configured in coord.toml, or
//! one of the forms that need no configuration), renders the message for it and delivers it.
//!
//! Channels: `slack` (incoming webhook, URL from an environment variable), `webhook` (JSON
//! POST, optionally HMAC-signed), `github` (a comment on an issue or PR), `file` (one JSON
//! line per notification) and `stdout` (stderr when stdout carries `--json`). Without configuration, `stdout` / `stdout:NAME`,
//! `file:PATH` and `github:#N` work; any other name is a failed result naming the missing
//! `[channels."NAME"]` table. Every delivery failure is a `{status: "failed", error}` result,
//! never an error of the run. It must not journal; resume asks [`Notifier::already_done`],
//! which can answer for `file` and `github` channels (they keep the idempotency key), while
//! `slack` and `webhook` receivers get the key in a header to drop a duplicate themselves.

pub mod http_delivery;
pub mod message;

pub use crate::config::effect_settings::{
    ChannelConfig, FileChannel, GithubChannel, PagerDutyChannel, PagerDutySeverity, SlackChannel, StdoutChannel,
    WebhookChannel, WebhookUrl, PAGERDUTY_EVENTS_URL,
};
use crate::effects::github::GithubAccess;
use crate::effects::WorldError;
use http_delivery::HttpDelivery;
use indexmap::IndexMap;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct Notifier {
    channels: IndexMap<String, ChannelConfig>,
    project_root: PathBuf,
    /// `file:PATH` may name a path outside the project (`[capabilities]`).
    file_outside_project: bool,
    http: HttpDelivery,
    console: Console,
}

/// Where the `stdout` channel writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Console {
    Stdout,
    /// Stdout carries the run's `--json` object, which must stay parseable.
    Stderr,
}

fn env_value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Notifier {
    pub fn new(channels: IndexMap<String, ChannelConfig>, project_root: &Path) -> Self {
        Notifier {
            channels,
            project_root: project_root.to_owned(),
            file_outside_project: false,
            http: HttpDelivery::default(),
            console: Console::Stdout,
        }
    }

    /// Lets `file:PATH` name a path outside the project.
    pub fn with_file_outside_project(mut self, allowed: bool) -> Self {
        self.file_outside_project = allowed;
        self
    }

    /// With a shorter wait between delivery retries (tests).
    pub fn with_http(mut self, http: HttpDelivery) -> Self {
        self.http = http;
        self
    }

    pub fn set_console(&mut self, console: Console) {
        self.console = console;
    }

    /// The channel a name means.
    pub fn resolve(&self, name: &str) -> Result<ChannelConfig, String> {
        if let Some(c) = self.channels.get(name) {
            return Ok(c.clone());
        }
        if name == "stdout" || name.starts_with("stdout:") {
            return Ok(ChannelConfig::Stdout(StdoutChannel {}));
        }
        if let Some(path) = name.strip_prefix("file:").filter(|p| !p.is_empty()) {
            let path = PathBuf::from(path);
            let escapes = path.is_absolute() || path.components().any(|c| c == std::path::Component::ParentDir);
            if escapes && !self.file_outside_project {
                return Err(format!(
                    "channel `{name}` writes outside the project: name a path inside it, configure [channels.\"{name}\"] type = \"file\", or set [capabilities] file_outside_project = true in coord.toml"
                ));
            }
            return Ok(ChannelConfig::File(FileChannel { path }));
        }
        if let Some(n) = name.strip_prefix("github:").map(|n| n.trim_start_matches('#')).and_then(|n| n.parse().ok()) {
            return Ok(ChannelConfig::Github(GithubChannel { issue: n }));
        }
        Err(format!(
            "channel `{name}` is not configured: add [channels.\"{name}\"] to coord.toml with type = \"slack\", \"webhook\", \"pagerduty\", \"github\", \"file\" or \"stdout\" (`stdout`, `file:PATH` and `github:#N` work without configuration)"
        ))
    }

    fn file_path(&self, path: &Path) -> PathBuf {
        self.project_root.join(path)
    }

    /// Delivers one notification; every failure is a `failed` result.
    pub fn send(
        &self,
        channel: &str,
        message: &Value,
        key: &str,
        github: &mut GithubAccess,
        runtime: &tokio::runtime::Handle,
    ) -> Value {
        let failed = |error: String| json!({"status": "failed", "channel": channel, "error": error});
        let sent = || json!({"status": "sent", "channel": channel});
        let config = match self.resolve(channel) {
            Ok(c) => c,
            Err(e) => return failed(e),
        };
        match config {
            ChannelConfig::Slack(slack) => {
                let Some(url) = env_value(&slack.webhook_env) else {
                    return failed(format!(
                        "channel `{channel}`: environment variable {} (the Slack webhook URL) is not set",
                        slack.webhook_env
                    ));
                };
                let payload = message::slack_payload(message);
                match runtime.block_on(self.http.post_json(&url, &payload, key, None)) {
                    Ok(_) => sent(),
                    Err(e) => failed(format!("channel `{channel}`: Slack: {e}")),
                }
            }
            ChannelConfig::Webhook(hook) => {
                let url = match &hook.url {
                    WebhookUrl::Literal(u) => u.clone(),
                    WebhookUrl::Env(var) => match env_value(var) {
                        Some(u) => u,
                        None => {
                            return failed(format!(
                                "channel `{channel}`: environment variable {var} (the webhook URL) is not set"
                            ))
                        }
                    },
                };
                let secret = match &hook.secret_env {
                    None => None,
                    Some(var) => match env_value(var) {
                        Some(s) => Some(s),
                        // Configured to sign: never send unsigned instead.
                        None => {
                            return failed(format!(
                                "channel `{channel}`: environment variable {var} (the signing secret) is not set"
                            ))
                        }
                    },
                };
                let payload = json!({
                    "channel": channel,
                    "idempotency_key": key,
                    "message": message,
                    "text": message::plain_text(message),
                });
                match runtime.block_on(self.http.post_json(&url, &payload, key, secret.as_deref().map(str::as_bytes))) {
                    Ok(_) => sent(),
                    Err(e) => failed(format!("channel `{channel}`: webhook: {e}")),
                }
            }
            ChannelConfig::Github(gh) => {
                let backend = match github.backend(runtime) {
                    Ok(b) => b,
                    Err(e) => return failed(format!("channel `{channel}`: {e}")),
                };
                match runtime.block_on(backend.comment(gh.issue, &message::markdown(message), key)) {
                    Ok(r) if r["status"] == "done" => {
                        json!({"status": "sent", "channel": channel, "comment_id": r["comment_id"]})
                    }
                    Ok(r) => failed(format!(
                        "channel `{channel}`: no issue or PR #{} ({})",
                        gh.issue,
                        r["reason"].as_str().unwrap_or("failed")
                    )),
                    Err(e) => failed(format!("channel `{channel}`: {e}")),
                }
            }
            ChannelConfig::File(file) => {
                let path = self.file_path(&file.path);
                let record = json!({
                    "channel": channel,
                    "idempotency_key": key,
                    "message": message,
                    "text": message::plain_text(message),
                });
                let line = crate::redaction::process().mask_json_text(&record.to_string());
                match append_line(&path, &line) {
                    Ok(()) => sent(),
                    Err(e) => failed(format!("channel `{channel}`: cannot append to {}: {e}", path.display())),
                }
            }
            ChannelConfig::PagerDuty(pd) => match self.page(&pd, message, key, runtime) {
                Ok(()) => sent(),
                Err(e) => failed(format!("channel `{channel}`: {e}")),
            },
            ChannelConfig::Stdout(_) => {
                let text = crate::redaction::mask(&message::plain_text(message));
                let written = match self.console {
                    Console::Stdout => {
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "{text}").and_then(|_| out.flush())
                    }
                    Console::Stderr => writeln!(std::io::stderr().lock(), "{text}"),
                };
                match written {
                    Ok(()) => sent(),
                    Err(e) => failed(format!("channel `{channel}`: {e}")),
                }
            }
        }
    }

    /// Triggers a PagerDuty alert. The idempotency key is the event's dedup key: PagerDuty
    /// folds a trigger sent again after a crash into the alert the first one opened.
    fn page(
        &self,
        pd: &PagerDutyChannel,
        message: &Value,
        key: &str,
        runtime: &tokio::runtime::Handle,
    ) -> Result<(), String> {
        let Some(routing_key) = env_value(&pd.routing_key_env) else {
            return Err(format!("environment variable {} (the PagerDuty routing key) is not set", pd.routing_key_env));
        };
        let event = message::pagerduty_event(message, &routing_key, key, pd.severity.as_str());
        let url = pd.url.as_deref().unwrap_or(PAGERDUTY_EVENTS_URL);
        runtime.block_on(self.http.post_json(url, &event, key, None)).map(drop).map_err(|e| format!("PagerDuty: {e}"))
    }

    /// On resume: the `sent` result if the channel can tell this notification was delivered.
    pub fn already_done(
        &self,
        channel: &str,
        key: &str,
        github: &mut GithubAccess,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Option<Value>, WorldError> {
        let sent = json!({"status": "sent", "channel": channel});
        match self.resolve(channel) {
            Ok(ChannelConfig::File(file)) => {
                let path = self.file_path(&file.path);
                let text = match std::fs::read_to_string(&path) {
                    Ok(t) => t,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => {
                        return Err(WorldError::Failed(format!(
                            "channel `{channel}`: cannot read {}: {e}",
                            path.display()
                        )))
                    }
                };
                let found = text
                    .lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .any(|record| record["idempotency_key"] == key);
                Ok(found.then_some(sent))
            }
            Ok(ChannelConfig::Github(gh)) => {
                let backend = github.backend(runtime)?;
                let found = runtime
                    .block_on(backend.find_marked_comment(gh.issue, key))
                    .map_err(|e| WorldError::Failed(format!("channel `{channel}`: {e}")))?;
                Ok(found.map(|_| sent))
            }
            _ => Ok(None),
        }
    }
}

fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    // One write of the whole line: appends from concurrent runs do not interleave.
    file.write_all(format!("{line}\n").as_bytes())?;
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channels(toml_text: &str) -> Result<IndexMap<String, ChannelConfig>, String> {
        #[derive(serde::Deserialize)]
        struct File {
            channels: IndexMap<String, ChannelConfig>,
        }
        toml::from_str::<File>(toml_text).map(|f| f.channels).map_err(|e| e.to_string())
    }

    #[test]
    fn channel_tables_parse() {
        let c = channels(
            r#"
[channels."slack:#eng"]
type = "slack"
webhook_env = "SLACK_WEBHOOK_URL"
[channels.ops]
type = "webhook"
url_env = "OPS_HOOK"
secret_env = "OPS_SECRET"
[channels.thread]
type = "github"
issue = 42
[channels.audit]
type = "file"
path = "notes.jsonl"
[channels.console]
type = "stdout"
[channels."pagerduty:oncall"]
type = "pagerduty"
routing_key_env = "PD_KEY"
[channels.pager]
type = "pagerduty"
routing_key_env = "PD_KEY"
severity = "warning"
url = "http://127.0.0.1:9/v2/enqueue"
"#,
        )
        .unwrap();
        let default_pd =
            PagerDutyChannel { routing_key_env: "PD_KEY".into(), url: None, severity: PagerDutySeverity::Error };
        assert_eq!(c["pagerduty:oncall"], ChannelConfig::PagerDuty(default_pd));
        assert!(
            matches!(&c["pager"], ChannelConfig::PagerDuty(p) if p.severity == PagerDutySeverity::Warning && p.url.is_some())
        );
        assert_eq!(c["slack:#eng"], ChannelConfig::Slack(SlackChannel { webhook_env: "SLACK_WEBHOOK_URL".into() }));
        assert_eq!(
            c["ops"],
            ChannelConfig::Webhook(WebhookChannel {
                url: WebhookUrl::Env("OPS_HOOK".into()),
                secret_env: Some("OPS_SECRET".into())
            })
        );
        assert_eq!(c["thread"], ChannelConfig::Github(GithubChannel { issue: 42 }));
    }

    #[test]
    fn bad_channel_tables_are_rejected() {
        assert!(channels("[channels.x]\ntype = \"pager\"\n").unwrap_err().contains("pager"));
        assert!(channels("[channels.x]\ntype = \"slack\"\n").unwrap_err().contains("webhook_env"));
        let bad_severity = "[channels.x]\ntype = \"pagerduty\"\nrouting_key_env = \"K\"\nseverity = \"sev1\"\n";
        assert!(channels(bad_severity).unwrap_err().contains("sev1"));
        assert!(channels("[channels.x]\ntype = \"slack\"\nwebhook_env = \"A\"\nurl = \"u\"\n")
            .unwrap_err()
            .contains("url"));
        assert!(channels("[channels.x]\ntype = \"webhook\"\n").unwrap_err().contains("exactly one"));
    }

    #[test]
    fn unconfigured_names() {
        let n = Notifier::new(IndexMap::new(), Path::new("/p"));
        assert_eq!(n.resolve("stdout:#eng").unwrap(), ChannelConfig::Stdout(StdoutChannel {}));
        assert_eq!(
            n.resolve("file:out/n.jsonl").unwrap(),
            ChannelConfig::File(FileChannel { path: "out/n.jsonl".into() })
        );
        assert_eq!(n.resolve("github:#7").unwrap(), ChannelConfig::Github(GithubChannel { issue: 7 }));
        for outside in ["file:/etc/n.jsonl", "file:../n.jsonl", "file:out/../../n.jsonl"] {
            assert!(n.resolve(outside).unwrap_err().contains("writes outside the project"), "{outside}");
        }
        let allowed = Notifier::new(IndexMap::new(), Path::new("/p")).with_file_outside_project(true);
        assert!(allowed.resolve("file:/tmp/n.jsonl").is_ok());
        let err = n.resolve("slack:#eng").unwrap_err();
        assert!(err.contains("[channels.\"slack:#eng\"]"), "{err}");
    }
}
