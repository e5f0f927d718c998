//! The GitHub backend of a live run: `github::*` reads, `github::comment/label/unlabel/close`,
//! and `merge(pr)`, against the REST API of one repository.
//!
//! It owns the meaning of each call (which routes, which records come back, which answers are
//! refusals) and the world checks resume needs (`already_done`: is the PR merged, is the
//! comment there). Comments carry a hidden marker with the effect's idempotency key, so "did
//! this comment happen?" has an exact answer. It must not journal (the host does) and must not
//! turn a refusal into an error: refusals are results the script routes on.

pub mod client;
pub mod pull_merge;
pub mod records;
pub mod repository;

pub use crate::config::effect_settings::{GithubSettings, NoChecks};
use crate::effects::{EffectKind, EffectRequest, GithubRead, WorldError};
use client::{GithubClient, GithubError, GithubToken, RateLimitPolicy, Retry, PUBLIC_API_URL};
use repository::Repository;
use reqwest::Method;
use serde_json::{json, Value};

/// Where the API is and who we are.
#[derive(Clone, Debug)]
pub struct GithubEndpoint {
    pub api_url: String,
    pub token: Option<GithubToken>,
}

impl GithubEndpoint {
    /// `GITHUB_API_URL` (else `[github] api_url`, else the public API) and the token from
    /// `[github] token_env`, `GITHUB_TOKEN` or `GH_TOKEN`, the first one set.
    pub fn from_env(settings: &GithubSettings) -> Self {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let api_url =
            env("GITHUB_API_URL").or_else(|| settings.api_url.clone()).unwrap_or_else(|| PUBLIC_API_URL.to_owned());
        let token = settings
            .token_env
            .iter()
            .map(String::as_str)
            .chain(["GITHUB_TOKEN", "GH_TOKEN"])
            .find_map(env)
            .and_then(GithubToken::new);
        GithubEndpoint { api_url, token }
    }
}

/// The hidden line a comment carries so resume can find it again.
pub fn effect_marker(idempotency_key: &str) -> String {
    format!("<!-- coord:effect {idempotency_key} -->")
}

/// Percent-encodes a path segment or query value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub struct GithubBackend {
    client: GithubClient,
    repo: Repository,
    no_checks: NoChecks,
}

fn target_number(args: &Value) -> Option<u64> {
    args.get("pr").or_else(|| args.get("number")).and_then(Value::as_u64)
}

fn str_opt<'a>(opts: &'a Value, key: &str) -> Option<&'a str> {
    opts.get(key).and_then(Value::as_str)
}

/// The `labels` option as a list, accepting a comma-separated string too.
fn wanted_labels(opts: &Value) -> Vec<String> {
    match opts.get("labels") {
        Some(Value::String(s)) => s.split(',').map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()).collect(),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

fn has_labels(record: &Value, wanted: &[String]) -> bool {
    let have: Vec<&str> = record["labels"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    wanted.iter().all(|l| have.contains(&l.as_str()))
}

fn list_state(opts: &Value) -> Result<&str, GithubError> {
    match str_opt(opts, "state").unwrap_or("open") {
        s @ ("open" | "closed" | "all") => Ok(s),
        other => {
            Err(GithubError::InvalidOption(format!("`state` must be \"open\", \"closed\" or \"all\", not {other:?}")))
        }
    }
}

impl GithubBackend {
    /// Must run inside the tokio runtime.
    pub fn connect(
        endpoint: &GithubEndpoint,
        repo: Repository,
        settings: &GithubSettings,
    ) -> Result<Self, GithubError> {
        let defaults = RateLimitPolicy::default();
        let rate_limits = RateLimitPolicy {
            max_total_wait: settings.max_rate_limit_wait.unwrap_or(defaults.max_total_wait),
            secondary_wait: settings.secondary_rate_limit_wait.unwrap_or(defaults.secondary_wait),
        };
        let client = GithubClient::new(&endpoint.api_url, endpoint.token.as_ref(), rate_limits)?;
        Ok(GithubBackend { client, repo, no_checks: settings.no_checks })
    }

    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    fn route(&self, rest: &str) -> String {
        format!("/repos/{}/{}/{rest}", encode(&self.repo.owner), encode(&self.repo.name))
    }

    pub(crate) fn client(&self) -> &GithubClient {
        &self.client
    }

    pub async fn read(&self, read: &GithubRead) -> Result<Value, GithubError> {
        match read {
            GithubRead::Prs(opts) => {
                let mut route = self.route(&format!("pulls?state={}", list_state(opts)?));
                if let Some(base) = str_opt(opts, "base") {
                    route.push_str(&format!("&base={}", encode(base)));
                }
                let labels = wanted_labels(opts);
                let author = str_opt(opts, "author");
                let prs = self.client.get_all(&route).await?;
                Ok(Value::Array(
                    prs.iter()
                        .map(records::pull_request)
                        .filter(|pr| author.is_none_or(|a| pr["author"].as_str() == Some(a)))
                        .filter(|pr| has_labels(pr, &labels))
                        .collect(),
                ))
            }
            GithubRead::Pr(n) => Ok(records::pull_request(&self.pull(*n).await?)),
            GithubRead::Checks(n) => {
                let pr = self.pull(*n).await?;
                let sha = pr["head"]["sha"].as_str().unwrap_or("").to_owned();
                self.checks_of(&sha).await
            }
            GithubRead::Reviews(n) => {
                let reviews = self.client.get_all(&self.route(&format!("pulls/{n}/reviews"))).await?;
                Ok(Value::Array(reviews.iter().map(records::review).collect()))
            }
            GithubRead::Issues(opts) => {
                let mut route = self.route(&format!("issues?state={}", list_state(opts)?));
                let labels = wanted_labels(opts);
                if !labels.is_empty() {
                    route.push_str(&format!("&labels={}", encode(&labels.join(","))));
                }
                if let Some(author) = str_opt(opts, "author") {
                    route.push_str(&format!("&creator={}", encode(author)));
                }
                let items = self.client.get_all(&route).await?;
                Ok(Value::Array(items.iter().filter(|i| !records::is_pull_request(i)).map(records::issue).collect()))
            }
        }
    }

    /// The raw pull request; a missing one is an error naming it.
    async fn pull(&self, n: u64) -> Result<Value, GithubError> {
        self.client.get(&self.route(&format!("pulls/{n}"))).await.map_err(|e| match e {
            GithubError::Status { status: 404, method, route, .. } => {
                GithubError::Status { method, route, status: 404, message: format!("no PR #{n} in {}", self.repo) }
            }
            other => other,
        })
    }

    /// Statuses of `sha` plus every page of its check runs, summarized.
    async fn checks_of(&self, sha: &str) -> Result<Value, GithubError> {
        let statuses = self.client.get_all(&self.route(&format!("commits/{sha}/statuses"))).await?;
        let runs = self.client.get_all_counted(&self.route(&format!("commits/{sha}/check-runs")), "check_runs").await?;
        Ok(records::checks_summary(sha, &statuses, &runs, self.no_checks.state()))
    }

    async fn reviews_raw(&self, n: u64) -> Result<Vec<Value>, GithubError> {
        self.client.get_all(&self.route(&format!("pulls/{n}/reviews"))).await
    }

    pub async fn act(&self, effect: &EffectRequest, key: &str) -> Result<Value, GithubError> {
        let args = &effect.args;
        let Some(n) = target_number(args) else {
            return Ok(
                json!({"status": "failed", "error": format!("{}: no PR or issue number", effect.kind.function())}),
            );
        };
        match effect.kind {
            EffectKind::Merge => pull_merge::merge(self, n, args).await,
            EffectKind::Comment => {
                let body = crate::effects::notify::message::markdown(&args["body"]);
                self.comment(n, &body, key).await
            }
            EffectKind::Label => {
                let labels: Vec<&str> =
                    args["labels"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                let route = self.route(&format!("issues/{n}/labels"));
                let response =
                    self.client.request(Method::POST, &route, Some(&json!({ "labels": labels })), Retry::Write).await;
                self.plain_write(response, n, Method::POST, &route)
            }
            EffectKind::Unlabel => {
                let label = args["label"].as_str().unwrap_or("");
                let route = self.route(&format!("issues/{n}/labels/{}", encode(label)));
                let response = self.client.request(Method::DELETE, &route, None, Retry::Write).await?;
                if response.status == 404 {
                    // GitHub says 404 both for a missing issue and for a label that is not set.
                    return match self.client.get(&self.route(&format!("issues/{n}"))).await {
                        Ok(_) => Ok(json!({"status": "done", "number": n, "note": "the label was not set"})),
                        Err(e) if e.status() == Some(404) => {
                            Ok(json!({"status": "failed", "reason": "not_found", "number": n}))
                        }
                        Err(e) => Err(e),
                    };
                }
                self.plain_write(Ok(response), n, Method::DELETE, &route)
            }
            EffectKind::Close => {
                let comment = crate::effects::notify::message::markdown(&args["comment"]);
                if !comment.trim().is_empty() && self.find_marked_comment(n, key).await?.is_none() {
                    let posted = self.comment(n, &comment, key).await?;
                    if posted["status"] != "done" {
                        return Ok(posted);
                    }
                }
                let route = self.route(&format!("issues/{n}"));
                let response =
                    self.client.request(Method::PATCH, &route, Some(&json!({"state": "closed"})), Retry::Write).await;
                self.plain_write(response, n, Method::PATCH, &route)
            }
            EffectKind::Notify => Ok(json!({"status": "failed", "error": "notify is not a GitHub effect"})),
        }
    }

    /// A write whose success is all there is to say; a missing target is a failed result.
    fn plain_write(
        &self,
        response: Result<client::ApiResponse, GithubError>,
        n: u64,
        method: Method,
        route: &str,
    ) -> Result<Value, GithubError> {
        let response = response?;
        match response.status {
            200..=299 => Ok(json!({"status": "done", "number": n})),
            404 => Ok(json!({"status": "failed", "reason": "not_found", "number": n})),
            _ => Err(response.into_error(method, route)),
        }
    }

    /// Posts a conversation comment (issues API: a PR's conversation is its issue's) carrying
    /// the effect's marker, so whether it happened can be checked later.
    pub async fn comment(&self, n: u64, body: &str, key: &str) -> Result<Value, GithubError> {
        let route = self.route(&format!("issues/{n}/comments"));
        let marked = format!("{body}\n\n{}", effect_marker(key));
        let response =
            self.client.request(Method::POST, &route, Some(&json!({ "body": marked })), Retry::Write).await?;
        match response.status {
            200..=299 => Ok(json!({"status": "done", "number": n, "comment_id": response.body["id"]})),
            404 => Ok(json!({"status": "failed", "reason": "not_found", "number": n})),
            _ => Err(response.into_error(Method::POST, &route)),
        }
    }

    /// The comment on `n` carrying `key`'s marker, as a `done` result.
    pub async fn find_marked_comment(&self, n: u64, key: &str) -> Result<Option<Value>, GithubError> {
        let marker = effect_marker(key);
        let comments = match self.client.get_all(&self.route(&format!("issues/{n}/comments"))).await {
            Ok(c) => c,
            Err(e) if e.status() == Some(404) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(comments
            .iter()
            .find(|c| c["body"].as_str().is_some_and(|b| b.contains(&marker)))
            .map(|c| json!({"status": "done", "number": n, "comment_id": c["id"]})))
    }

    /// Resume found an intent without a result: did the effect happen?
    pub async fn already_done(&self, effect: &EffectRequest, key: &str) -> Result<Option<Value>, GithubError> {
        let args = &effect.args;
        let Some(n) = target_number(args) else {
            return Ok(None);
        };
        match effect.kind {
            EffectKind::Merge => pull_merge::already_merged(self, n, args).await,
            EffectKind::Comment => self.find_marked_comment(n, key).await,
            EffectKind::Label | EffectKind::Unlabel | EffectKind::Close => {
                let issue = match self.client.get(&self.route(&format!("issues/{n}"))).await {
                    Ok(i) => records::issue(&i),
                    Err(e) if e.status() == Some(404) => return Ok(None),
                    Err(e) => return Err(e),
                };
                let labels: Vec<String> = issue["labels"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect();
                let done = match effect.kind {
                    EffectKind::Label => wanted_labels(args).iter().all(|l| labels.contains(l)),
                    EffectKind::Unlabel => args["label"].as_str().is_some_and(|l| !labels.iter().any(|have| have == l)),
                    _ => issue["state"] == "closed",
                };
                Ok(done.then(|| json!({"status": "done", "number": n})))
            }
            EffectKind::Notify => Ok(None),
        }
    }
}

/// The backend of a run, connected on first use: a script that never touches GitHub needs no
/// repository and no token.
pub struct GithubAccess {
    state: AccessState,
}

/// How the repository is found when the backend first connects: asking git for the `origin`
/// remote costs a process, which a run that never reads GitHub should not wait for.
pub type RepositoryChoice = Box<dyn FnOnce() -> Result<Repository, String> + Send>;

enum AccessState {
    Pending { endpoint: GithubEndpoint, repo: RepositoryChoice, settings: GithubSettings },
    Ready(Box<GithubBackend>),
    Failed(String),
}

impl GithubAccess {
    pub fn new(endpoint: GithubEndpoint, repo: Result<Repository, String>, settings: GithubSettings) -> Self {
        GithubAccess::deferred(endpoint, Box::new(move || repo), settings)
    }

    /// An access whose repository is chosen on first use.
    pub fn deferred(endpoint: GithubEndpoint, repo: RepositoryChoice, settings: GithubSettings) -> Self {
        GithubAccess { state: AccessState::Pending { endpoint, repo, settings } }
    }

    /// What the client noticed since last asked (nothing before it connects).
    pub fn take_notes(&self) -> Vec<String> {
        match &self.state {
            AccessState::Ready(backend) => backend.client.take_notes(),
            _ => Vec::new(),
        }
    }

    /// The connected backend, or why there is none.
    pub fn backend(&mut self, runtime: &tokio::runtime::Handle) -> Result<&GithubBackend, WorldError> {
        if matches!(self.state, AccessState::Pending { .. }) {
            let AccessState::Pending { endpoint, repo, settings } =
                std::mem::replace(&mut self.state, AccessState::Failed(String::new()))
            else {
                unreachable!("matched above")
            };
            self.state = match repo() {
                Err(why) => AccessState::Failed(format!(
                    "no GitHub repository for this run ({why}): pass --repo owner/name or --input repo=owner/name, set [github] repo in coord.toml, or run inside a clone whose origin is on GitHub; for an offline run pass --demo or --scenario FILE"
                )),
                Ok(repo) => {
                    let _entered = runtime.enter();
                    match GithubBackend::connect(&endpoint, repo, &settings) {
                        Ok(b) => AccessState::Ready(Box::new(b)),
                        Err(e) => AccessState::Failed(e.to_string()),
                    }
                }
            };
        }
        match &self.state {
            AccessState::Ready(b) => Ok(b),
            AccessState::Failed(why) => Err(WorldError::Unavailable(why.clone())),
            AccessState::Pending { .. } => unreachable!("resolved above"),
        }
    }
}
