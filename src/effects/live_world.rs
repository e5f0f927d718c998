//! The world of a live run: GitHub for reads and PR effects, the local git merge queue for
//! `merge(branch)`, and the configured channels for `notify`.
//!
//! It owns the routing of each read and effect to its backend and the "check the world after
//! a lost answer" rule: when a GitHub write fails in a way that may have reached GitHub (a 5xx,
//! a broken connection), it asks `already_done` before reporting a failure. It runs on the
//! script thread and blocks on the tokio runtime for network calls. It must not journal.

use super::git_merge_queue::GitMergeQueue;
use super::github::repository::Repository;
use super::github::{GithubAccess, GithubEndpoint};
use super::notify::{Console, Notifier};
use super::{EffectKind, EffectRequest, GithubRead, World, WorldError};
use crate::config::Config;
use indexmap::IndexMap;
use serde_json::Value;
use std::path::Path;

pub struct LiveWorld {
    runtime: tokio::runtime::Handle,
    github: GithubAccess,
    merge_queue: GitMergeQueue,
    notifier: Notifier,
}

/// The repository a run talks to: the `repo` input (which `--repo` sets), else `[github] repo`,
/// else the `origin` remote of `working_dir`.
pub fn select_repository(
    repo_input: Option<&Value>,
    configured: Option<&str>,
    working_dir: &Path,
) -> Result<Repository, String> {
    match repo_input {
        Some(Value::String(slug)) => return Repository::parse(slug).map_err(|e| format!("input `repo`: {e}")),
        Some(Value::Null) | None => {}
        Some(other) => return Err(format!("input `repo` must be a string owner/name, not {other}")),
    }
    if let Some(slug) = configured {
        return Repository::parse(slug).map_err(|e| format!("[github] repo in coord.toml: {e}"));
    }
    Repository::from_origin(working_dir)
}

impl LiveWorld {
    pub fn new(
        runtime: tokio::runtime::Handle,
        github: GithubAccess,
        merge_queue: GitMergeQueue,
        notifier: Notifier,
    ) -> Self {
        LiveWorld { runtime, github, merge_queue, notifier }
    }

    /// The live world a project's coord.toml, the run's inputs and the environment describe.
    /// Nothing is contacted yet, not even git for the `origin` remote.
    pub fn from_config(
        config: &Config,
        project_root: &Path,
        inputs: &IndexMap<String, Value>,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        let file = &config.file;
        let working_dir = std::env::current_dir().unwrap_or_else(|_| project_root.to_owned());
        let (repo_input, configured) = (inputs.get("repo").cloned(), file.github.repo.clone());
        let repo = Box::new(move || select_repository(repo_input.as_ref(), configured.as_deref(), &working_dir));
        let endpoint = GithubEndpoint::from_env(&file.github);
        let github = GithubAccess::deferred(endpoint, repo, file.github.clone());
        let merge_queue = GitMergeQueue::new(project_root, file.merge.clone());
        let channels = file.channels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let notifier =
            Notifier::new(channels, project_root).with_file_outside_project(file.capabilities.file_outside_project);
        LiveWorld::new(runtime, github, merge_queue, notifier)
    }

    /// When stdout carries the run's JSON, the `stdout` channel writes to stderr instead.
    pub fn with_stdout_is_json(mut self, yes: bool) -> Self {
        self.notifier.set_console(if yes { Console::Stderr } else { Console::Stdout });
        self
    }

    fn branch_target(effect: &EffectRequest) -> Option<&str> {
        (effect.kind == EffectKind::Merge).then(|| effect.args.get("branch").and_then(Value::as_str)).flatten()
    }
}

fn failed(e: impl std::fmt::Display) -> WorldError {
    WorldError::Failed(e.to_string())
}

impl World for LiveWorld {
    fn github_read(&mut self, read: &GithubRead) -> Result<Value, WorldError> {
        let backend = self
            .github
            .backend(&self.runtime)
            .map_err(|e| WorldError::Unavailable(format!("{}: {e}", read.function())))?;
        self.runtime.block_on(backend.read(read)).map_err(|e| failed(format!("{}: {e}", read.function())))
    }

    fn act(&mut self, effect: &EffectRequest, idempotency_key: &str) -> Result<Value, WorldError> {
        if let Some(branch) = Self::branch_target(effect) {
            return Ok(self.merge_queue.merge(branch, &effect.args));
        }
        if effect.kind == EffectKind::Notify {
            let channel = effect.args["channel"].as_str().unwrap_or("");
            return Ok(self.notifier.send(
                channel,
                &effect.args["message"],
                idempotency_key,
                &mut self.github,
                &self.runtime,
            ));
        }
        let backend = self.github.backend(&self.runtime)?;
        match self.runtime.block_on(backend.act(effect, idempotency_key)) {
            Ok(v) => Ok(v),
            Err(e) if e.is_uncertain() => {
                // The write may have happened: look before saying it did not.
                match self.runtime.block_on(backend.already_done(effect, idempotency_key)) {
                    Ok(Some(done)) => Ok(done),
                    _ => Err(failed(e)),
                }
            }
            Err(e) => Err(failed(e)),
        }
    }

    fn already_done(&mut self, effect: &EffectRequest, idempotency_key: &str) -> Result<Option<Value>, WorldError> {
        if let Some(branch) = Self::branch_target(effect) {
            return self.merge_queue.already_merged(branch, &effect.args).map_err(failed);
        }
        if effect.kind == EffectKind::Notify {
            let channel = effect.args["channel"].as_str().unwrap_or("");
            return self.notifier.already_done(channel, idempotency_key, &mut self.github, &self.runtime);
        }
        let backend = self.github.backend(&self.runtime)?;
        self.runtime.block_on(backend.already_done(effect, idempotency_key)).map_err(failed)
    }

    fn is_external(&self) -> bool {
        true
    }

    fn take_notes(&mut self) -> Vec<String> {
        self.github.take_notes()
    }
}
