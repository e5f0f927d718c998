//! A configured harness: its name, its `[harness.<name>]` settings resolved against defaults
//! of its kind, the rates it prices with, and the run's redactor.
//!
//! Owns what every agent and API harness needs from configuration (binary, base URL, model,
//! API key lookup, pricing, transcripts). It must not run anything.

use super::leaf_environment::LeafEnvironment;
use super::rate_table::RateTable;
use super::HarnessLimits;
use crate::config::leaf_settings::HarnessSettings;
use crate::journal::blob_store::BlobStore;
use crate::leaf::session::{LeafRequest, Usage};
use crate::redaction::Redactor;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug)]
pub struct HarnessProfile {
    /// The name the harness answers to (`claude-code`, or a renamed one such as `ollama`).
    pub name: String,
    /// The built-in harness it is an instance of.
    pub kind: String,
    pub settings: HarnessSettings,
    base_dir: PathBuf,
    pub rates: RateTable,
    pub redactor: Arc<Redactor>,
    limits: HarnessLimits,
    /// The agent CLI's `--version`, asked once per run.
    version: tokio::sync::OnceCell<Option<String>>,
}

impl HarnessProfile {
    pub fn new(
        name: &str,
        kind: &str,
        settings: HarnessSettings,
        base_dir: &Path,
        redactor: Arc<Redactor>,
    ) -> Result<Self, String> {
        let limits = Self::limits_of(name, &settings)?;
        Ok(HarnessProfile {
            name: name.to_owned(),
            kind: kind.to_owned(),
            rates: RateTable::for_kind(kind, &settings.rates),
            settings,
            base_dir: base_dir.to_owned(),
            redactor,
            limits,
            version: tokio::sync::OnceCell::new(),
        })
    }

    pub fn limits_of(name: &str, settings: &HarnessSettings) -> Result<HarnessLimits, String> {
        let mut limits = HarnessLimits { concurrency: settings.concurrency, ..HarnessLimits::default() };
        if settings.concurrency == Some(0) {
            return Err(format!("[harness.{name}] concurrency must be at least 1"));
        }
        if let Some(backoff) = &settings.retry_backoff {
            limits.retry_backoff = humantime::parse_duration(backoff)
                .map_err(|e| format!("retry_backoff `{backoff}`: {e} (write e.g. \"2s\", \"500ms\")"))?;
        }
        Ok(limits)
    }

    pub fn limits(&self) -> HarnessLimits {
        self.limits
    }

    /// The agent CLI to run: the configured binary (a path with a slash resolves against the
    /// config's folder), else `default` on PATH.
    pub fn binary(&self, default: &str) -> PathBuf {
        match &self.settings.binary {
            Some(b) if b.contains('/') && !Path::new(b).is_absolute() => self.base_dir.join(b),
            Some(b) => PathBuf::from(b),
            None => PathBuf::from(default),
        }
    }

    /// The `[harness.<name>] env` table, for an agent CLI's environment.
    pub fn extra_env(&self) -> Vec<(String, String)> {
        self.settings.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// What of coord's environment this harness's leaves may take (`leaf_environment.rs`).
    fn environment<'a>(&'a self, workflow_pass_env: &'a [String], withheld: &'a [String]) -> LeafEnvironment<'a> {
        LeafEnvironment { kind: &self.kind, settings: &self.settings, workflow_pass_env, withheld }
    }

    /// An agent CLI leaf's whole environment: the variables it inherits, its `env` table, then
    /// `explicit` (what the harness sets for it).
    pub fn leaf_environment(
        &self,
        req: &LeafRequest,
        explicit: impl IntoIterator<Item = (String, String)>,
    ) -> Vec<(String, String)> {
        self.environment(&req.workflow.pass_env, &req.withheld_env).from_process(explicit)
    }

    /// The agent CLI's version line (`2.1.197 (Claude Code)`), asked once per run; `None` when
    /// it does not answer `--version` within 30 s (a Node.js CLI on a loaded machine can take
    /// several seconds to start).
    pub async fn cli_version(&self, default_binary: &str) -> Option<String> {
        self.version
            .get_or_init(|| async {
                let mut command = tokio::process::Command::new(self.binary(default_binary));
                command.env_clear().envs(self.environment(&[], &[]).from_process([]));
                command.arg("--version").stdin(std::process::Stdio::null()).kill_on_drop(true);
                let out = tokio::time::timeout(std::time::Duration::from_secs(30), command.output()).await;
                let out = out.ok()?.ok().filter(|o| o.status.success())?;
                let text = String::from_utf8_lossy(&out.stdout);
                text.lines().map(str::trim).find(|l| !l.is_empty()).map(str::to_owned)
            })
            .await
            .clone()
    }

    /// How to fix a rejected or missing key, for the end of an error: the variable the key is
    /// read from, and the agent's own login when it has one.
    pub fn key_fix(&self, usual_variable: &str) -> String {
        let login = match self.kind.as_str() {
            "claude-code" => ", or `claude /login`",
            "codex" => ", or `codex login`",
            "gemini" => ", or log in by running `gemini` once",
            _ => "",
        };
        format!(
            "Fix: give the {} harness a valid key ({} in its environment{login})",
            self.name,
            self.key_variable(usual_variable)
        )
    }

    /// How to fix a missing binary.
    pub fn install_hint(&self, default_binary: &str) -> String {
        let package = match self.kind.as_str() {
            "claude-code" => "@anthropic-ai/claude-code",
            "codex" => "@openai/codex",
            "gemini" => "@google/gemini-cli",
            _ => "",
        };
        let configure = format!("or set `binary` under [harness.{}] in coord.toml", self.name);
        if package.is_empty() {
            format!("install `{default_binary}` {configure}")
        } else {
            format!("install it (`npm install -g {package}`) {configure}")
        }
    }

    pub fn base_url(&self, default: &str) -> String {
        self.settings.base_url.as_deref().unwrap_or(default).trim_end_matches('/').to_owned()
    }

    /// The request's model, else the harness's configured model; `None` leaves the choice to
    /// the CLI (Claude Code and the Gemini CLI then report which model answered; Codex does
    /// not, so its cost can only be priced when the model is named).
    pub fn model(&self, req: &LeafRequest) -> Option<String> {
        req.model.clone().or_else(|| self.settings.model.clone())
    }

    /// The variable the key is read from: the configured one, else the kind's usual one.
    pub fn key_variable<'a>(&'a self, usual: &'a str) -> &'a str {
        self.settings.api_key_env.as_deref().unwrap_or(usual)
    }

    /// The API key, read from the environment now. `Err` names the variable (never a value)
    /// when the key is required, or was configured explicitly, and is not set.
    pub fn api_key(&self, usual: &str, required: bool) -> Result<Option<String>, String> {
        let var = self.key_variable(usual);
        match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Some(v)),
            _ if required || self.settings.api_key_env.is_some() => Err(format!(
                "the {} harness needs an API key in the environment variable {var}, which is not set",
                self.name
            )),
            _ => Ok(None),
        }
    }

    /// For agent CLIs: when the key lives in a configured variable other than the one the CLI
    /// reads, hand its value to the CLI under its own name.
    pub fn cli_key_env(&self, native: &str) -> Vec<(String, String)> {
        match &self.settings.api_key_env {
            Some(var) if var != native => match std::env::var(var) {
                Ok(v) if !v.is_empty() => vec![(native.to_owned(), v)],
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    /// Extra CLI arguments: the harness's `args`, then the workflow's `options.args`.
    pub fn extra_args(&self, req: &LeafRequest) -> Vec<String> {
        let mut args = self.settings.args.clone();
        if let Some(toml::Value::Array(items)) = req.workflow.options.get("args") {
            args.extend(items.iter().filter_map(|v| v.as_str().map(str::to_owned)));
        }
        args
    }

    /// A workflow option for this harness (`options.<key>` in the workflow file, or the
    /// per-call `spawn_session` opt of the same name).
    pub fn option(&self, req: &LeafRequest, key: &str) -> Option<Value> {
        if let Some(v) = req.overrides.get(key).filter(|v| !v.is_null()) {
            return Some(v.clone());
        }
        req.workflow.options.get(key).and_then(|v| serde_json::to_value(v).ok())
    }

    pub fn max_tokens(&self, req: &LeafRequest) -> u64 {
        self.option(req, "max_tokens")
            .and_then(|v| v.as_u64())
            .or(self.settings.max_tokens.map(u64::from))
            .unwrap_or(8192)
    }

    /// Fills in `usage.cost_usd`: the provider's figure when it reported one, else an estimate
    /// from the rate table (flagged), else nothing (with a warning: the budget cannot see it).
    pub fn price(&self, usage: &mut Usage, model: Option<&str>, reported: Option<f64>) {
        if let Some(cost) = reported {
            usage.cost_usd = cost;
            usage.cost_estimated = false;
            return;
        }
        match self.rates.cost(model, usage) {
            Some(cost) => {
                usage.cost_usd = cost;
                usage.cost_estimated = true;
            }
            None if usage.input_tokens + usage.output_tokens > 0 => tracing::warn!(
                harness = %self.name,
                model = model.unwrap_or("?"),
                "no rate for this model in [harness.{}.rates]: its cost counts as $0 against the budget",
                self.name
            ),
            None => {}
        }
    }

    /// Stores a leaf's raw transcript (after `previous`'s, for a repair) as a blob, masked.
    /// A transcript that cannot be stored is logged and skipped: it never fails the leaf.
    pub fn keep_transcript(&self, req: &LeafRequest, previous: Option<&str>, bytes: &[u8]) -> Option<String> {
        if bytes.is_empty() && previous.is_none() {
            return None;
        }
        let store = BlobStore::new(&req.run_dir);
        let mut all = match previous {
            Some(hash) => store.get(hash).unwrap_or_default(),
            None => Vec::new(),
        };
        if !all.is_empty() && !all.ends_with(b"\n") {
            all.push(b'\n');
        }
        all.extend_from_slice(bytes);
        match store.put(&self.redactor.mask_bytes(&all)) {
            Ok(hash) => Some(hash),
            Err(e) => {
                tracing::warn!(session = %req.session_id, "cannot store the transcript: {e}");
                None
            }
        }
    }
}
