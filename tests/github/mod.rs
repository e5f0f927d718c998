//! The live world against fakes on 127.0.0.1: a fake GitHub API, fake Slack and webhook
//! receivers and temporary git repositories. The code under test is the real client code;
//! nothing leaves the machine. World tests call `LiveWorld` directly (as the host does);
//! `binary` drives the real `coord` binary.

mod binary;
mod fake_github;
mod fake_receiver;
mod merge_queue;
mod notify;
mod real_answers;
mod spec_to_merge;
mod world;

use coord::effects::git_merge_queue::{GitMergeQueue, MergeQueueSettings};
use coord::effects::github::client::GithubToken;
use coord::effects::github::repository::Repository;
use coord::effects::github::{GithubAccess, GithubEndpoint, GithubSettings};
use coord::effects::live_world::LiveWorld;
use coord::effects::notify::{ChannelConfig, Notifier};
use coord::effects::{EffectKind, EffectRequest};
use indexmap::IndexMap;
use serde_json::Value;
use std::path::Path;

/// A dummy token: tests assert it reaches the fake and nothing else.
pub const TOKEN: &str = "ghp_coordTestToken0123456789abcdefXYZ";

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap()
}

/// A live world on `api_url` for acme/widgets, as a fresh coord process would build it.
pub fn live_world(
    rt: &tokio::runtime::Runtime,
    api_url: &str,
    root: &Path,
    channels: IndexMap<String, ChannelConfig>,
) -> LiveWorld {
    let settings =
        GithubSettings { max_rate_limit_wait: Some(std::time::Duration::from_secs(5)), ..GithubSettings::default() };
    live_world_with(rt, api_url, root, channels, settings)
}

/// [`live_world`] with these `[github]` settings.
pub fn live_world_with(
    rt: &tokio::runtime::Runtime,
    api_url: &str,
    root: &Path,
    channels: IndexMap<String, ChannelConfig>,
    settings: GithubSettings,
) -> LiveWorld {
    let endpoint = GithubEndpoint { api_url: api_url.to_owned(), token: GithubToken::new(TOKEN) };
    let access = GithubAccess::new(endpoint, Ok(Repository::parse("acme/widgets").unwrap()), settings);
    let notifier = Notifier::new(channels, root)
        .with_http(coord::effects::notify::http_delivery::HttpDelivery::new(std::time::Duration::from_millis(20)));
    LiveWorld::new(rt.handle().clone(), access, GitMergeQueue::new(root, MergeQueueSettings::default()), notifier)
}

pub fn effect(kind: EffectKind, args: Value) -> EffectRequest {
    EffectRequest { kind, args }
}
