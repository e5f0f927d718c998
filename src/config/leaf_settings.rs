//! The typed `[harness.*]`, `[workflow.*]` and `[worktrees]` sections of `coord.toml`: how leaves
//! run (binaries, endpoints, models, key variable names, limits, rates) and per-workflow
//! overrides of the workflow files.
//!
//! Owns only the shape of these sections (so a typo gets a diagnostic pointing into the file).
//! It must not hold secrets: `api_key_env` and `pass_env` name variables; their values are read
//! when a leaf runs.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// One `[harness.<name>]` table. `<name>` is a built-in harness (`claude-code`, `codex`,
/// `gemini`, `anthropic`, `openai`, `command`) or a new name with a `kind` naming one of them.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HarnessSettings {
    /// Which built-in harness this one is an instance of (defaults to the table's name).
    #[serde(default)]
    pub kind: Option<String>,
    /// Agent CLI to run: a bare name looked up on PATH, or a path (relative to coord.toml).
    #[serde(default)]
    pub binary: Option<String>,
    /// Extra arguments for the agent CLI, placed before the prompt.
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment variables for the agent CLI (settings, not secrets: a key is named
    /// by `api_key_env` and read when the leaf starts).
    #[serde(default)]
    pub env: IndexMap<String, String>,
    /// Variables of coord's environment this harness's leaves get by name, beyond the few every
    /// leaf gets (`docs/harnesses.md`): how a leaf is given a credential such as `GITHUB_TOKEN`.
    #[serde(default)]
    pub pass_env: Vec<String>,
    /// API base URL, without `/v1/...`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Model used when the workflow (or `--leaf`) names none.
    #[serde(default)]
    pub model: Option<String>,
    /// Name of the environment variable holding the API key. Never the key itself.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Most leaves of this harness running at once (besides `--max-parallel`).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// First delay of the exponential backoff between retries, e.g. "2s" (default 1s).
    #[serde(default)]
    pub retry_backoff: Option<String>,
    /// Longest answer an API harness asks for (Anthropic requires one; default 8192).
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// OpenAI-compatible harnesses: ask for strict schema adherence (default false).
    #[serde(default)]
    pub strict: Option<bool>,
    /// Dollars per million tokens, by model name (or model-name prefix, or `default`).
    #[serde(default)]
    pub rates: IndexMap<String, ModelRates>,
}

/// Prices of one model in US dollars per million tokens.
#[derive(Debug, Default, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRates {
    pub input: f64,
    pub output: f64,
    /// Cached input read; defaults to the input price.
    #[serde(default)]
    pub cache_read: Option<f64>,
    /// Cache writes; defaults to the input price.
    #[serde(default)]
    pub cache_write: Option<f64>,
}

/// One `[workflow.<name>]` table: overrides of `workflows/<name>.toml` for this project.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowSettings {
    #[serde(default)]
    pub harness: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    /// Seconds, or a duration like "15m".
    #[serde(default)]
    pub timeout: Option<toml::Value>,
    #[serde(default)]
    pub retries: Option<u32>,
    #[serde(default)]
    pub worktree: Option<bool>,
    /// Variables of coord's environment this workflow's leaves get by name, besides the
    /// workflow file's own `pass_env`.
    #[serde(default)]
    pub pass_env: Vec<String>,
    /// Where this workflow's leaves run (`local` or `ray`), over `[executor] kind`.
    #[serde(default)]
    pub executor: Option<String>,
}

/// `[worktrees]`: what happens to a leaf's git worktree when it ends.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorktreeSettings {
    /// Keep every worktree, even of leaves that succeeded (default: removed on success).
    #[serde(default)]
    pub keep: bool,
}
