//! `coord.toml`: the project's configuration (see `docs/config.md`), found at the project root.
//!
//! Owns parsing with spans, so a bad config gets a diagnostic pointing into the file. Each
//! section belongs to the part of coord that reads it (harnesses, channels, GitHub, library,
//! pipelines); this module only loads and hands them out. Secrets never live here: the config
//! names environment variables, and values are read from the environment when used.

pub mod effect_settings;
pub mod executor_settings;
pub mod file_diagnostic;
pub mod heap_size;
pub mod leaf_settings;
pub mod pipeline;

use file_diagnostic::FileDiagnostic;
use indexmap::IndexMap;
use leaf_settings::{HarnessSettings, WorkflowSettings, WorktreeSettings};
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "coord.toml";

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Per-harness settings: binary, base_url, model, api_key_env, concurrency, rates.
    #[serde(default)]
    pub harness: IndexMap<String, HarnessSettings>,
    /// Per-workflow overrides of the workflow files (harness, model, timeout, retries).
    #[serde(default)]
    pub workflow: IndexMap<String, WorkflowSettings>,
    /// What happens to leaves' git worktrees when they end.
    #[serde(default)]
    pub worktrees: WorktreeSettings,
    /// Notification channels by name.
    #[serde(default)]
    pub channels: IndexMap<String, effect_settings::ChannelConfig>,
    #[serde(default)]
    pub github: effect_settings::GithubSettings,
    /// The local git merge queue (`merge(branch)`).
    #[serde(default)]
    pub merge: effect_settings::MergeQueueSettings,
    #[serde(default)]
    pub library: LibraryConfig,
    #[serde(default)]
    pub limits: toml::Table,
    #[serde(default)]
    pub pipeline: Vec<pipeline::PipelineSection>,
    /// Webhooks the daemon turns into signals for waiting runs.
    #[serde(default)]
    pub signal_hook: Vec<pipeline::SignalHookSection>,
    /// What coordinator scripts may do beyond routing leaves.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Settings of every run: the script's heap budget.
    #[serde(default)]
    pub run: heap_size::RunSettings,
    /// Where leaves run: this machine, or a Ray cluster (docs/scale-out.md).
    #[serde(default)]
    pub executor: executor_settings::ExecutorSettings,
}

/// `[capabilities]`: powers a project may take away from its coordinators.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// `spawn_session(.., #{ command: [...] })` runs any program as a leaf (default true).
    #[serde(default = "yes")]
    pub spawn_command: bool,
    /// `notify("file:PATH", ..)` may write outside the project directory (default false;
    /// a `[channels.*]` of type "file" may always name any path).
    #[serde(default)]
    pub file_outside_project: bool,
}

fn yes() -> bool {
    true
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities { spawn_command: true, file_outside_project: false }
    }
}

/// `[library]`: folders of shared coordinator modules and workflows (see `crate::library`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibraryConfig {
    /// Library folders, relative to this file, searched in order after `COORD_PATH`.
    #[serde(default)]
    pub paths: Vec<toml::Spanned<String>>,
}

#[derive(Debug, Default, Clone)]
pub struct Config {
    /// The file it came from, when there is one.
    pub path: Option<PathBuf>,
    pub source: String,
    pub file: ConfigFile,
}

impl Config {
    /// Loads `coord.toml` from `root`; no file is an empty config.
    pub fn load(root: &Path) -> Result<Self, FileDiagnostic> {
        let path = root.join(CONFIG_FILE);
        if !path.is_file() {
            return Ok(Config::default());
        }
        Self::load_file(&path)
    }

    pub fn load_file(path: &Path) -> Result<Self, FileDiagnostic> {
        let source =
            std::fs::read_to_string(path).map_err(|e| FileDiagnostic::io(path, &format!("cannot read config: {e}")))?;
        let file: ConfigFile = toml::from_str(&source)
            .map_err(|e| FileDiagnostic::at(path, &source, e.span().unwrap_or(0..0), e.message().to_owned(), None))?;
        Ok(Config { path: Some(path.to_owned()), source, file })
    }

    /// The built-in harness kind a harness name stands for: its `[harness.<name>] kind`, else
    /// the name itself.
    pub fn harness_kind(&self, harness: &str) -> String {
        self.file.harness.get(harness).and_then(|h| h.kind.clone()).unwrap_or_else(|| harness.to_owned())
    }

    /// The environment variables holding credentials of the world coord acts on: GitHub's
    /// tokens, and every variable a `*_env` key names outside `[harness.*]` (channels'
    /// webhook URLs and secrets, pipelines' webhook secrets, `[github] token_env`). The
    /// harnesses' own key variables are not among them: leaves need those.
    pub fn credential_variables(&self) -> Vec<String> {
        let mut vars = vec!["GITHUB_TOKEN".to_owned(), "GH_TOKEN".to_owned()];
        fn walk(value: &toml::Value, vars: &mut Vec<String>) {
            match value {
                toml::Value::Table(table) => {
                    for (key, v) in table {
                        match v {
                            toml::Value::String(name) if key.ends_with("_env") => vars.push(name.clone()),
                            other => walk(other, vars),
                        }
                    }
                }
                // `[[pipeline]]` and `[[signal_hook]]` tables.
                toml::Value::Array(items) => items.iter().for_each(|v| walk(v, vars)),
                _ => {}
            }
        }
        if let Ok(mut table) = toml::from_str::<toml::Table>(&self.source) {
            table.remove("harness");
            walk(&toml::Value::Table(table), &mut vars);
        }
        vars.sort();
        vars.dedup();
        vars
    }

    /// Every variable whose value coord must never write: the credentials above plus every
    /// variable any `*_env` key names, `[harness.*] api_key_env` included (see
    /// `crate::redaction`).
    pub fn secret_variables(&self) -> Vec<String> {
        let mut vars = self.credential_variables();
        vars.extend(self.file.harness.values().filter_map(|h| h.api_key_env.clone()));
        vars.sort();
        vars.dedup();
        vars
    }

    /// The folder relative paths in the config resolve against.
    pub fn base_dir(&self) -> Option<&Path> {
        self.path.as_deref().and_then(Path::parent)
    }
}
