//! The GitHub REST client. octocrab does the transport: authentication (the token travels in a
//! header marked sensitive), the base URI (`GITHUB_API_URL`, GitHub Enterprise, the fake GitHub
//! of the tests), TLS and timeouts. This type adds what coord needs on top: tolerant JSON
//! instead of typed models (which have broken across octocrab versions on fields GitHub
//! omits), `Link`-header pagination that keeps each item once when the list shifts under it,
//! redirects (a renamed repository: reads on 301/302, writes on 307/308 only, the token never
//! sent to another host), rate limits by GitHub's documented rules within a bound on the run's
//! waiting, and errors that carry the route (one format, [`shown_route`]) and one line of what
//! GitHub said, never a header, a URL with credentials or the token.
//!
//! It must not shape records or decide what an effect means: [`super::GithubBackend`] does.
//! Writes are never retried blindly here; the backend checks the world after a failed write.

use octocrab::service::middleware::retry::RetryConfig;
use octocrab::Octocrab;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

pub const PUBLIC_API_URL: &str = "https://api.github.com";
const PER_PAGE: u32 = 100;
/// Attempts for a read meeting 5xx answers or a broken connection.
const READ_ATTEMPTS: u32 = 3;
/// Rate-limit answers one request sits through before giving up, however short each wait: a
/// server answering `retry-after: 0` forever must not hold a run.
const RATE_LIMIT_RETRIES: u32 = 8;
/// Redirects followed for one request. A renamed or transferred repository needs one.
const MAX_REDIRECTS: u32 = 5;
/// The longest an error quotes of a body that is not GitHub's JSON.
const QUOTED_BODY: usize = 200;

/// All rate-limit waits of a run together, by default.
pub const DEFAULT_MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(10 * 60);
/// The first wait for a secondary rate limit that comes without `retry-after`: GitHub asks
/// for at least a minute, then exponential backoff.
pub const DEFAULT_SECONDARY_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// A token, kept out of `Debug` and `Display` so no log or error can show it.
#[derive(Clone)]
pub struct GithubToken(String);

impl GithubToken {
    pub fn new(token: impl Into<String>) -> Option<Self> {
        let token = token.into().trim().to_owned();
        (!token.is_empty()).then_some(GithubToken(token))
    }
}

impl std::fmt::Debug for GithubToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GithubToken(<redacted>)")
    }
}

/// How long coord sits through GitHub's rate limits (`[github]` in coord.toml).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitPolicy {
    /// Every rate-limit wait of the run together stays within this; a wait that would pass it
    /// fails the request at once, saying when to retry.
    pub max_total_wait: Duration,
    /// The first wait for a secondary limit without `retry-after`, doubled each time the same
    /// request meets the limit again.
    pub secondary_wait: Duration,
}

impl Default for RateLimitPolicy {
    fn default() -> Self {
        RateLimitPolicy {
            max_total_wait: DEFAULT_MAX_RATE_LIMIT_WAIT,
            secondary_wait: DEFAULT_SECONDARY_RATE_LIMIT_WAIT,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    #[error(
        "GitHub {limit} exceeded ({method} {route}): {when}; a run waits at most {max_wait}s for rate limits in all ({waited}s so far): retry then, or raise [github] max_rate_limit_wait"
    )]
    RateLimited { method: Method, route: String, limit: &'static str, when: String, waited: u64, max_wait: u64 },
    #[error("GitHub {method} {route}: {}", status_line(*.status, .message))]
    Status { method: Method, route: String, status: u16, message: String },
    #[error("GitHub {method} {route}: {reason}")]
    Transport { method: Method, route: String, reason: String },
    #[error("GitHub API at {api_url}: {reason}")]
    Setup { api_url: String, reason: String },
    /// The script asked for something no request can express.
    #[error("{0}")]
    InvalidOption(String),
}

impl GithubError {
    /// True when the request may or may not have reached GitHub: a write must be checked.
    pub fn is_uncertain(&self) -> bool {
        match self {
            GithubError::Transport { .. } => true,
            GithubError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            GithubError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// `502 Bad Gateway: Unicorn! · GitHub`: the status with its reason phrase, then what the
/// server said when it says something else.
fn status_line(status: u16, message: &str) -> String {
    let reason = reqwest::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
    let head = if reason.is_empty() { status.to_string() } else { format!("{status} {reason}") };
    let message = message.trim();
    if message.is_empty() || message.eq_ignore_ascii_case(reason) || message == head {
        head
    } else {
        format!("{head}: {message}")
    }
}

/// A route as errors and logs show it, the same everywhere: the path and query coord asked
/// for, without the `per_page` every list request carries. A URL of another host stays whole.
pub fn shown_route(route: &str) -> String {
    let (path, query) = route.split_once('?').unwrap_or((route, ""));
    let kept: Vec<&str> = query.split('&').filter(|kv| !kv.is_empty() && !kv.starts_with("per_page=")).collect();
    let shown = if kept.is_empty() { path.to_owned() } else { format!("{path}?{}", kept.join("&")) };
    crate::redaction::mask(&shown)
}

/// Whether a request may be sent again when the answer is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// A read: retried on 5xx and broken connections.
    Read,
    /// A write: sent once; only rate limits (which GitHub answers before acting) are waited out.
    Write,
}

/// A response: status, JSON body (`Null` when empty) and the next page, if any.
#[derive(Debug)]
pub struct ApiResponse {
    pub status: u16,
    pub body: Value,
    pub next_page: Option<String>,
}

impl ApiResponse {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// GitHub's `message`, or one line of a body that is not GitHub's JSON (an HTML error
    /// page is its title); masked, since a server (or a proxy in front of it) may quote the
    /// request's token back.
    pub fn message(&self) -> String {
        // Masked before it is cut: a cut through a secret would leave a piece no mask knows.
        match &self.body {
            Value::Object(o) => {
                one_line(&crate::redaction::mask(o.get("message").and_then(Value::as_str).unwrap_or("")))
            }
            Value::String(s) => quoted_body(&crate::redaction::mask(s)),
            _ => String::new(),
        }
    }

    pub fn into_error(self, method: Method, route: &str) -> GithubError {
        GithubError::Status { method, route: shown_route(route), status: self.status, message: self.message() }
    }
}

/// Whitespace and line breaks collapsed to single spaces.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn clipped(text: &str, max: usize) -> String {
    if text.chars().count() > max {
        format!("{}…", text.chars().take(max).collect::<String>())
    } else {
        text.to_owned()
    }
}

/// One line standing for a body GitHub did not send as JSON: an HTML page's title (or first
/// heading), else the first line of text.
fn quoted_body(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let looks_html = ["<!doctype html", "<html", "<head", "<body", "<title"].iter().any(|tag| lower.contains(tag));
    if !looks_html {
        let first = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
        return clipped(&one_line(first), QUOTED_BODY);
    }
    let element = |tag: &str| {
        let open = lower.find(&format!("<{tag}"))?;
        let content = open + lower[open..].find('>')? + 1;
        let close = content + lower[content..].find(&format!("</{tag}"))?;
        let inner = one_line(&html_text(&text[content..close]));
        (!inner.is_empty()).then_some(inner)
    };
    let title = element("title").or_else(|| element("h1")).unwrap_or_else(|| "an HTML page".to_owned());
    clipped(&title, QUOTED_BODY)
}

/// The text of an HTML fragment: tags dropped, the common entities decoded.
fn html_text(fragment: &str) -> String {
    let mut text = String::with_capacity(fragment.len());
    let mut in_tag = false;
    for c in fragment.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let mut decoded = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(amp) = rest.find('&') {
        decoded.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let entity = rest.find(';').filter(|end| *end <= 10).map(|end| &rest[1..end]);
        let char = entity.and_then(|e| match e {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some(' '),
            "middot" => Some('·'),
            _ => {
                let code = e.strip_prefix("#x").map(|h| u32::from_str_radix(h, 16).ok());
                let code = code.unwrap_or_else(|| e.strip_prefix('#').and_then(|d| d.parse().ok()));
                code.and_then(char::from_u32)
            }
        });
        match (entity, char) {
            (Some(e), Some(c)) => {
                decoded.push(c);
                rest = &rest[e.len() + 2..];
            }
            _ => {
                decoded.push('&');
                rest = &rest[1..];
            }
        }
    }
    decoded.push_str(rest);
    decoded
}

pub struct GithubClient {
    octocrab: Octocrab,
    api_url: String,
    /// The API's scheme, host and port: the token goes to this origin only.
    api_origin: Url,
    /// The path the API lives under (`/api/v3` on GitHub Enterprise), which octocrab puts in
    /// front of every route; routes coord keeps are relative to it.
    base_path: String,
    rate_limits: RateLimitPolicy,
    /// Milliseconds spent waiting for rate limits so far in this run.
    waited_ms: AtomicU64,
    /// What the run should hear about that is not an answer: a list that changed while it was
    /// read. Taken by [`GithubClient::take_notes`].
    notes: Mutex<Vec<String>>,
}

/// One step of a request: an answer, or another place to send it to.
enum Step {
    Answer(u16, HeaderMap, Value),
    Redirect(String),
}

/// A rate-limit answer as GitHub's documented rules read it.
#[derive(Debug, PartialEq)]
struct RateLimitAnswer {
    kind: RateLimitKind,
    /// `retry-after`, when GitHub sent one.
    retry_after: Option<Duration>,
    /// `x-ratelimit-reset` (Unix seconds), when the primary limit is spent.
    reset_at: Option<i64>,
}

/// A wait coord is about to sit through (or refuse): how long, until when (RFC 3339), and why
/// that long.
struct RateLimitWait {
    length: Duration,
    until: String,
    why: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RateLimitKind {
    /// The hourly request budget is spent (`x-ratelimit-remaining: 0`).
    Primary,
    /// Too many requests too fast, or too much at once: no budget says when it ends.
    Secondary,
}

impl RateLimitKind {
    fn name(self) -> &'static str {
        match self {
            RateLimitKind::Primary => "rate limit",
            RateLimitKind::Secondary => "secondary rate limit",
        }
    }
}

impl GithubClient {
    /// Builds the client. Must run inside the tokio runtime (octocrab spawns its worker).
    pub fn new(api_url: &str, token: Option<&GithubToken>, rate_limits: RateLimitPolicy) -> Result<Self, GithubError> {
        let setup = |reason: String| GithubError::Setup { api_url: api_url.to_owned(), reason };
        let api_url = api_url.trim_end_matches('/').to_owned();
        let parsed = Url::parse(&api_url).map_err(|_| setup("not a valid URL".into()))?;
        let base_path = parsed.path().trim_end_matches('/').to_owned();
        let mut api_origin = parsed.clone();
        api_origin.set_path("/");
        api_origin.set_query(None);
        // Redirects are followed here, where the method decides (a write only on 307/308) and
        // the token stays with the API's origin: octocrab's redirect layer (a feature this
        // crate leaves off) would turn a redirected POST into a GET.
        let mut builder = Octocrab::builder()
            // Retries are decided here, per request kind: octocrab's would resend writes.
            .add_retry_config(RetryConfig::None)
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .set_read_timeout(Some(Duration::from_secs(60)))
            .add_header(reqwest::header::ACCEPT, "application/vnd.github+json".to_owned())
            .add_header(HeaderName::from_static("x-github-api-version"), "2022-11-28".to_owned())
            .base_uri(api_url.as_str())
            .map_err(|_| setup("not a valid URL".into()))?;
        if let Some(token) = token {
            builder = builder.personal_token(token.0.clone());
        }
        let octocrab = builder.build().map_err(|e| setup(describe_octocrab_error(&e)))?;
        Ok(GithubClient {
            octocrab,
            api_url,
            api_origin,
            base_path,
            rate_limits,
            waited_ms: AtomicU64::new(0),
            notes: Mutex::new(Vec::new()),
        })
    }

    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// What the client noticed since last asked, oldest first.
    pub fn take_notes(&self) -> Vec<String> {
        std::mem::take(&mut *self.notes.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn note(&self, note: String) {
        tracing::warn!("{note}");
        self.notes.lock().unwrap_or_else(|p| p.into_inner()).push(note);
    }

    /// Sends one request and returns whatever GitHub answered (errors included), after
    /// following redirects, waiting out rate limits within the run's bound and retrying reads
    /// that met a server error.
    pub async fn request(
        &self,
        method: Method,
        route: &str,
        body: Option<&Value>,
        retry: Retry,
    ) -> Result<ApiResponse, GithubError> {
        let mut target = route.to_owned();
        let mut attempt = 0;
        let mut redirects = 0;
        let mut rate_limited = 0;
        let mut secondary_backoffs = 0;
        loop {
            attempt += 1;
            let (status, headers, body_value) = match self.send_once(&method, route, &target, body).await {
                Err(e) if retry == Retry::Read && attempt < READ_ATTEMPTS => {
                    tracing::debug!("{e}; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
                Err(e) => return Err(e),
                Ok(Step::Redirect(next)) => {
                    redirects += 1;
                    if redirects > MAX_REDIRECTS {
                        return Err(GithubError::Transport {
                            method,
                            route: shown_route(route),
                            reason: format!("more than {MAX_REDIRECTS} redirects"),
                        });
                    }
                    tracing::debug!("GitHub {method} {}: redirected to {}", shown_route(route), shown_route(&next));
                    target = next;
                    attempt -= 1;
                    continue;
                }
                Ok(Step::Answer(status, headers, body_value)) => (status, headers, body_value),
            };
            if let Some(limit) = rate_limit(status, &headers, &body_value) {
                rate_limited += 1;
                let wait = self.rate_limit_wait(&limit, &mut secondary_backoffs);
                let waited = Duration::from_millis(self.waited_ms.load(Ordering::Relaxed));
                let within_bound = waited + wait.length <= self.rate_limits.max_total_wait;
                if !within_bound || rate_limited > RATE_LIMIT_RETRIES {
                    let when = if within_bound {
                        format!("met {RATE_LIMIT_RETRIES} times in a row; it may lift at {}", wait.until)
                    } else if limit.kind == RateLimitKind::Primary && limit.retry_after.is_none() {
                        format!("it resets at {} (in {}s)", wait.until, wait.length.as_secs())
                    } else {
                        format!("the next try would be at {} (in {}s)", wait.until, wait.length.as_secs())
                    };
                    return Err(GithubError::RateLimited {
                        method,
                        route: shown_route(route),
                        limit: limit.kind.name(),
                        when,
                        waited: waited.as_secs(),
                        max_wait: self.rate_limits.max_total_wait.as_secs(),
                    });
                }
                tracing::warn!(
                    "GitHub {} on {method} {}: waiting {}s, until {} ({})",
                    limit.kind.name(),
                    shown_route(route),
                    wait.length.as_secs_f64().ceil() as u64,
                    wait.until,
                    wait.why,
                );
                self.waited_ms.fetch_add(wait.length.as_millis() as u64, Ordering::Relaxed);
                tokio::time::sleep(wait.length).await;
                attempt -= 1;
                continue;
            }
            if status >= 500 && retry == Retry::Read && attempt < READ_ATTEMPTS {
                tracing::debug!("GitHub {method} {}: {status}; retrying", shown_route(route));
                tokio::time::sleep(backoff(attempt)).await;
                continue;
            }
            let next_page = self.next_page(&headers);
            return Ok(ApiResponse { status, body: body_value, next_page });
        }
    }

    /// How long to wait for a rate limit, by GitHub's rules: `retry-after` when given; the
    /// primary limit's reset; else the secondary wait, doubled each time it comes again.
    fn rate_limit_wait(&self, limit: &RateLimitAnswer, secondary_backoffs: &mut u32) -> RateLimitWait {
        let now = chrono::Utc::now();
        let (length, why, until) = match (limit.retry_after, limit.reset_at) {
            (Some(after), _) => (after, "GitHub's retry-after", None),
            (None, Some(reset)) if limit.kind == RateLimitKind::Primary => {
                // The reset is in whole seconds: one more makes sure it has passed.
                let length = Duration::from_secs((reset - now.timestamp()).max(0) as u64 + 1);
                (length, "when the hourly limit resets", chrono::DateTime::from_timestamp(reset, 0))
            }
            _ => {
                let length = self.rate_limits.secondary_wait.saturating_mul(1u32 << (*secondary_backoffs).min(16));
                *secondary_backoffs += 1;
                (length, "no retry-after: [github] secondary_rate_limit_wait, doubled while the limit lasts", None)
            }
        };
        let until = until.unwrap_or_else(|| now + length).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        RateLimitWait { length, until, why }
    }

    /// Sends `method` to `target` (a route, or a URL of another origin after a redirect) and
    /// reads the answer, or says where it is redirected to.
    async fn send_once(
        &self,
        method: &Method,
        route: &str,
        target: &str,
        body: Option<&Value>,
    ) -> Result<Step, GithubError> {
        let transport =
            |reason: String| GithubError::Transport { method: method.clone(), route: shown_route(route), reason };
        // A relative URI: octocrab joins it to the base URI and attaches the token only then
        // (and to a URL of the API's own host, never another).
        let sent = match *method {
            Method::GET => self.octocrab._get(target).await,
            Method::POST => self.octocrab._post(target, body).await,
            Method::PUT => self.octocrab._put(target, body).await,
            Method::PATCH => self.octocrab._patch(target, body).await,
            Method::DELETE => self.octocrab._delete(target, body).await,
            _ => return Err(transport(format!("method {method} is not used by coord"))),
        };
        let response = sent.map_err(|e| transport(describe_octocrab_error(&e)))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        if let Some(location) = header(&headers, "location").filter(|_| (300..400).contains(&status)) {
            // GitHub answers 301 (reads) and 307 (writes) for a renamed or transferred
            // repository. 307 and 308 keep the method and body; 301, 302 and 303 let a client
            // turn a write into a GET, so a write is resent only on 307 and 308.
            let follows = matches!(status, 307 | 308) || (*method == Method::GET && matches!(status, 301..=303));
            if !follows {
                return Err(GithubError::Status {
                    method: method.clone(),
                    route: shown_route(route),
                    status,
                    message: format!(
                        "moved to {}; coord sends a write again only on a 307 or 308, which keep it a {method}",
                        shown_route(location)
                    ),
                });
            }
            return self.redirect_target(target, location).map(Step::Redirect).map_err(transport);
        }
        let text = self.octocrab.body_to_string(response).await.map_err(|e| transport(describe_octocrab_error(&e)))?;
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok(Step::Answer(status, headers, body))
    }

    /// The absolute URL `target` was sent to.
    fn absolute(&self, target: &str) -> Option<Url> {
        if target.contains("://") {
            return Url::parse(target).ok();
        }
        self.api_origin.join(&format!("{}{target}", self.base_path)).ok()
    }

    /// Where a URL GitHub names (a redirect, a next page) is sent: a route when it is on the
    /// API's origin (so octocrab attaches the token), else the URL itself (which gets none).
    fn target_of(&self, url: &Url) -> String {
        if url.origin() == self.api_origin.origin() {
            let path = url.path();
            let path = path.strip_prefix(&self.base_path).filter(|p| p.starts_with('/')).unwrap_or(path);
            match url.query() {
                Some(q) => format!("{path}?{q}"),
                None => path.to_owned(),
            }
        } else {
            url.to_string()
        }
    }

    fn redirect_target(&self, from: &str, location: &str) -> Result<String, String> {
        let from = self.absolute(from).ok_or_else(|| format!("cannot follow a redirect from {from}"))?;
        let to = from.join(location).map_err(|_| format!("redirected to {}, not a URL", shown_route(location)))?;
        if to.scheme() != from.scheme() && to.host_str() == from.host_str() && to.scheme() == "http" {
            return Err(format!(
                "redirected from {} to http: coord does not send a request in the clear",
                from.scheme()
            ));
        }
        Ok(self.target_of(&to))
    }

    /// A successful GET's body; any other answer is an error.
    pub async fn get(&self, route: &str) -> Result<Value, GithubError> {
        let response = self.request(Method::GET, route, None, Retry::Read).await?;
        if response.is_success() {
            Ok(response.body)
        } else {
            Err(response.into_error(Method::GET, route))
        }
    }

    /// Every item of a paginated list, following `Link: rel="next"` to the end, each item
    /// once (see [`Listing`]).
    pub async fn get_all(&self, route: &str) -> Result<Vec<Value>, GithubError> {
        let mut listing = Listing::default();
        let mut next = Some(with_per_page(route));
        while let Some(page) = next {
            let response = self.request(Method::GET, &page, None, Retry::Read).await?;
            if !response.is_success() {
                return Err(response.into_error(Method::GET, &page));
            }
            next = response.next_page.clone();
            match response.body {
                Value::Array(page_items) => listing.extend(page_items),
                other => {
                    return Err(GithubError::Status {
                        method: Method::GET,
                        route: shown_route(&page),
                        status: response.status,
                        message: format!("expected a list, got {}", short(&other)),
                    })
                }
            }
        }
        Ok(listing.finish(self, route))
    }

    /// Every item of a list GitHub wraps in an object with a `total_count` (check runs): not a
    /// plain page, so pages are requested by number until `total_count` items are read.
    pub async fn get_all_counted(&self, route: &str, field: &str) -> Result<Vec<Value>, GithubError> {
        let mut listing = Listing::default();
        let base = with_per_page(route);
        for page in 1.. {
            let page_route = format!("{base}&page={page}");
            let body = self.get(&page_route).await?;
            let total = body.get("total_count").and_then(Value::as_u64).unwrap_or(0);
            let page_items = body.get(field).and_then(Value::as_array).cloned().unwrap_or_default();
            let empty = page_items.is_empty();
            listing.extend(page_items);
            if empty || listing.read as u64 >= total {
                break;
            }
        }
        Ok(listing.finish(self, route))
    }

    /// The `rel="next"` page of a `Link` header.
    fn next_page(&self, headers: &HeaderMap) -> Option<String> {
        let url = next_link(headers)?;
        let absolute = Url::parse(url).ok().or_else(|| self.absolute(url))?;
        Some(self.target_of(&absolute))
    }
}

/// The items of a list read page by page. GitHub's pages are offsets into a list that may
/// change meanwhile: a PR opened while coord reads shifts every later page by one, so an item
/// comes again on the next page. Each item (by `number`, else `id`) is kept once, at its first
/// place, with its latest content; the run hears that the list moved.
#[derive(Default)]
struct Listing {
    items: indexmap::IndexMap<String, Value>,
    /// Items without a number or an id, kept as they come.
    unkeyed: usize,
    read: usize,
    repeated: Vec<String>,
}

impl Listing {
    fn extend(&mut self, page: Vec<Value>) {
        for item in page {
            self.read += 1;
            let key = match (item.get("number").and_then(Value::as_u64), item.get("id")) {
                (Some(n), _) => format!("#{n}"),
                (None, Some(id)) if !id.is_null() => format!("id {id}"),
                _ => {
                    self.unkeyed += 1;
                    format!("item {}", self.unkeyed)
                }
            };
            if let Some(kept) = self.items.get_mut(&key) {
                *kept = item;
                self.repeated.push(key);
            } else {
                self.items.insert(key, item);
            }
        }
    }

    fn finish(self, client: &GithubClient, route: &str) -> Vec<Value> {
        if !self.repeated.is_empty() {
            client.note(format!(
                "GitHub GET {}: the list changed while coord read it page by page ({} listed twice, kept once); what was added meanwhile is read next time",
                shown_route(route),
                self.repeated.join(", ")
            ));
        }
        self.items.into_values().collect()
    }
}

fn with_per_page(route: &str) -> String {
    let sep = if route.contains('?') { '&' } else { '?' };
    format!("{route}{sep}per_page={PER_PAGE}")
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(300 * 3u64.pow(attempt.saturating_sub(1)))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok()).map(str::trim)
}

/// Whether an answer is a rate limit, read by GitHub's documented rules: a 403 or 429 with
/// `retry-after`, with `x-ratelimit-remaining: 0` (the primary limit), or saying "rate limit"
/// (a secondary limit, whose headers still show budget left). A 403 with none of these is a
/// permission error.
fn rate_limit(status: u16, headers: &HeaderMap, body: &Value) -> Option<RateLimitAnswer> {
    if status != 403 && status != 429 {
        return None;
    }
    let retry_after = header(headers, "retry-after").and_then(|v| {
        let secs = v.parse::<u64>().ok().or_else(|| {
            let at = chrono::DateTime::parse_from_rfc2822(v).ok()?.timestamp();
            Some((at - chrono::Utc::now().timestamp()).max(0) as u64)
        })?;
        Some(Duration::from_secs(secs))
    });
    let spent = header(headers, "x-ratelimit-remaining") == Some("0");
    let message = body.get("message").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
    let says_rate_limit = message.contains("rate limit");
    if retry_after.is_none() && !spent && !says_rate_limit && status != 429 {
        return None;
    }
    let kind = if spent && !message.contains("secondary") { RateLimitKind::Primary } else { RateLimitKind::Secondary };
    let reset_at = header(headers, "x-ratelimit-reset").and_then(|v| v.parse::<i64>().ok()).filter(|_| spent);
    Some(RateLimitAnswer { kind, retry_after, reset_at })
}

/// The URL of a `Link` header's `rel="next"`.
fn next_link(headers: &HeaderMap) -> Option<&str> {
    let link = header(headers, "link")?;
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        if !params.split(';').any(|p| p.trim() == "rel=\"next\"") {
            return None;
        }
        Some(url.trim().trim_start_matches('<').trim_end_matches('>'))
    })
}

fn short(v: &Value) -> String {
    let s = crate::redaction::mask(&v.to_string());
    if s.len() > 120 {
        format!("{}…", s.chars().take(120).collect::<String>())
    } else {
        s
    }
}

/// octocrab's `Display` appends a backtrace; this keeps the causes only, masked (an error may
/// quote a URL or a header).
fn describe_octocrab_error(e: &octocrab::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    if parts.is_empty() {
        let text = e.to_string();
        parts.push(text.split("\n\nFound at").next().unwrap_or(&text).trim().to_owned());
    }
    crate::redaction::mask(&parts.join(": "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(HeaderName::from_static(k), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn client(api_url: &str) -> GithubClient {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _entered = rt.enter();
        GithubClient::new(api_url, None, RateLimitPolicy::default()).unwrap()
    }

    #[test]
    fn next_pages_on_the_api_host_are_routes_and_elsewhere_urls() {
        let ghe = client("https://ghe.example.com/api/v3");
        let h = headers(&[(
            "link",
            "<https://ghe.example.com/api/v3/repos/a/b/pulls?page=2&per_page=100>; rel=\"next\", <https://ghe.example.com/api/v3/repos/a/b/pulls?page=5>; rel=\"last\"",
        )]);
        assert_eq!(ghe.next_page(&h).as_deref(), Some("/repos/a/b/pulls?page=2&per_page=100"));
        let prev_only = headers(&[("link", "<https://api.github.com/x?page=1>; rel=\"prev\"")]);
        assert_eq!(ghe.next_page(&prev_only), None);
        let elsewhere = headers(&[("link", "<https://other.example.com/x?page=2>; rel=\"next\"")]);
        assert_eq!(ghe.next_page(&elsewhere).as_deref(), Some("https://other.example.com/x?page=2"));
    }

    #[test]
    fn redirects_stay_routes_on_the_api_host_and_never_go_to_http() {
        let gh = client("https://api.github.com");
        assert_eq!(
            gh.redirect_target("/repos/old/name/pulls/6/merge", "https://api.github.com/repositories/42/pulls/6/merge"),
            Ok("/repositories/42/pulls/6/merge".to_owned())
        );
        assert_eq!(
            gh.redirect_target("/repos/old/name/pulls?state=open", "/repositories/42/pulls?state=open"),
            Ok("/repositories/42/pulls?state=open".to_owned())
        );
        assert_eq!(
            gh.redirect_target("/repos/a/b", "https://elsewhere.example/x").as_deref(),
            Ok("https://elsewhere.example/x")
        );
        assert!(gh.redirect_target("/repos/a/b", "http://api.github.com/repos/a/b").is_err());
    }

    #[test]
    fn rate_limits_follow_githubs_rules() {
        let none = Value::Null;
        let retry = rate_limit(403, &headers(&[("retry-after", "7")]), &none).unwrap();
        assert_eq!(retry.retry_after, Some(Duration::from_secs(7)));
        let reset_at = chrono::Utc::now().timestamp() + 100;
        let reset = reset_at.to_string();
        let primary = rate_limit(
            403,
            &headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", &reset)]),
            &serde_json::json!({"message": "API rate limit exceeded for user ID 1."}),
        )
        .unwrap();
        assert_eq!(
            primary,
            RateLimitAnswer { kind: RateLimitKind::Primary, retry_after: None, reset_at: Some(reset_at) }
        );
        // A secondary limit leaves budget: its reset is the hourly one and says nothing.
        let secondary = rate_limit(
            403,
            &headers(&[("x-ratelimit-remaining", "4987"), ("x-ratelimit-reset", &reset)]),
            &serde_json::json!({"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}),
        )
        .unwrap();
        assert_eq!(secondary, RateLimitAnswer { kind: RateLimitKind::Secondary, retry_after: None, reset_at: None });
        assert_eq!(
            rate_limit(
                403,
                &headers(&[("x-ratelimit-remaining", "12")]),
                &serde_json::json!({"message": "Resource not accessible by integration"})
            ),
            None
        );
        assert_eq!(rate_limit(429, &HeaderMap::new(), &none).map(|l| l.kind), Some(RateLimitKind::Secondary));
        assert_eq!(rate_limit(404, &headers(&[("retry-after", "1")]), &none), None);
    }

    #[test]
    fn routes_show_the_same_everywhere() {
        assert_eq!(shown_route("/repos/a/b/pulls?state=open&per_page=100"), "/repos/a/b/pulls?state=open");
        assert_eq!(shown_route("/repos/a/b/pulls?per_page=100&page=2"), "/repos/a/b/pulls?page=2");
        assert_eq!(shown_route("/repos/a/b/pulls?per_page=100"), "/repos/a/b/pulls");
        assert_eq!(shown_route("/repos/a/b/pulls/1/merge"), "/repos/a/b/pulls/1/merge");
    }

    #[test]
    fn an_html_error_page_is_one_line() {
        let unicorn = "<!DOCTYPE html>\n<html>\n  <head>\n    <meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\">\n    <title>Unicorn! &middot; GitHub</title>\n    <style type=\"text/css\" media=\"screen\">body { background-color: #f1f1f1; }</style>\n  </head>\n  <body><h1>No server is currently available to service your request.</h1></body>\n</html>\n";
        let response = ApiResponse { status: 502, body: Value::String(unicorn.into()), next_page: None };
        assert_eq!(response.message(), "Unicorn! · GitHub");
        let error = response.into_error(Method::GET, "/repos/a/b/pulls?state=open&per_page=100").to_string();
        assert_eq!(error, "GitHub GET /repos/a/b/pulls?state=open: 502 Bad Gateway: Unicorn! · GitHub");
        let nginx = "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>";
        let response = ApiResponse { status: 502, body: Value::String(nginx.into()), next_page: None };
        assert_eq!(response.into_error(Method::GET, "/x").to_string(), "GitHub GET /x: 502 Bad Gateway");
        let text =
            ApiResponse { status: 500, body: Value::String("\n  upstream timed out\nmore\n".into()), next_page: None };
        assert_eq!(text.message(), "upstream timed out");
        let json = ApiResponse {
            status: 405,
            body: serde_json::json!({"message": "Pull Request is still a draft", "status": "405"}),
            next_page: None,
        };
        assert_eq!(
            json.into_error(Method::PUT, "/m").to_string(),
            "GitHub PUT /m: 405 Method Not Allowed: Pull Request is still a draft"
        );
    }

    #[test]
    fn tokens_do_not_print() {
        let t = GithubToken::new("ghp_secret").unwrap();
        assert!(!format!("{t:?}").contains("ghp_secret"));
        assert!(GithubToken::new("  ").is_none());
    }
}
