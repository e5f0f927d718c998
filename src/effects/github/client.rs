//! The GitHub REST client. octocrab does the transport: authentication (the token travels in a
//! header marked sensitive), the base URI (`GITHUB_API_URL`, GitHub Enterprise, the fake GitHub
//! of the tests), TLS and timeouts. This type adds what coord needs on top: tolerant JSON
//! instead of typed models (which have broken across octocrab versions on fields GitHub
//! omits), `Link`-header pagination, rate-limit handling that names the reset time, and errors
//! that carry the route and GitHub's message but never a header, a URL with credentials or
//! the token.
//!
//! It must not shape records or decide what an effect means: [`super::GithubBackend`] does.
//! Writes are never retried blindly here; the backend checks the world after a failed write.

use octocrab::service::middleware::retry::RetryConfig;
use octocrab::Octocrab;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Method;
use serde_json::Value;
use std::time::Duration;

pub const PUBLIC_API_URL: &str = "https://api.github.com";
const PER_PAGE: u32 = 100;
/// Attempts for a read meeting 5xx answers or a broken connection.
const READ_ATTEMPTS: u32 = 3;
/// Rate-limit waits sat through before giving up, however short each is.
const RATE_LIMIT_RETRIES: u32 = 3;

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

#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    #[error(
        "GitHub rate limit exceeded ({method} {route}): it resets at {reset_at} (in {wait}s), longer than the {max_wait}s coord waits; retry after the reset, or raise [github] max_rate_limit_wait"
    )]
    RateLimited { method: Method, route: String, reset_at: String, wait: u64, max_wait: u64 },
    #[error("GitHub {method} {route}: {status} {message}")]
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

    /// GitHub's `message`, or the body as text.
    pub fn message(&self) -> String {
        match &self.body {
            Value::Object(o) => o.get("message").and_then(Value::as_str).unwrap_or("").to_owned(),
            Value::String(s) => s.chars().take(300).collect(),
            _ => String::new(),
        }
    }

    pub fn into_error(self, method: Method, route: &str) -> GithubError {
        GithubError::Status { method, route: route.to_owned(), status: self.status, message: self.message() }
    }
}

pub struct GithubClient {
    octocrab: Octocrab,
    api_url: String,
    max_rate_limit_wait: Duration,
}

impl GithubClient {
    /// Builds the client. Must run inside the tokio runtime (octocrab spawns its worker).
    pub fn new(api_url: &str, token: Option<&GithubToken>, max_rate_limit_wait: Duration) -> Result<Self, GithubError> {
        let setup = |reason: String| GithubError::Setup { api_url: api_url.to_owned(), reason };
        let api_url = api_url.trim_end_matches('/').to_owned();
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
        Ok(GithubClient { octocrab, api_url, max_rate_limit_wait })
    }

    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// Sends one request and returns whatever GitHub answered (errors included), after waiting
    /// out short rate limits and retrying reads that met a server error.
    pub async fn request(
        &self,
        method: Method,
        route: &str,
        body: Option<&Value>,
        retry: Retry,
    ) -> Result<ApiResponse, GithubError> {
        let mut attempt = 0;
        let mut rate_limited = 0;
        loop {
            attempt += 1;
            let outcome = self.send_once(&method, route, body).await;
            let response = match outcome {
                Err(e) if retry == Retry::Read && attempt < READ_ATTEMPTS => {
                    tracing::debug!("GitHub {method} {route}: {e}; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
                Err(e) => return Err(e),
                Ok(r) => r,
            };
            let (status, headers, body_value) = response;
            if let Some(RateLimitWait { wait, reset_at }) = rate_limit_wait(status, &headers, &body_value) {
                let wait_secs = wait.as_secs().max(1);
                if wait <= self.max_rate_limit_wait && rate_limited < RATE_LIMIT_RETRIES {
                    rate_limited += 1;
                    tracing::warn!("GitHub rate limit on {method} {route}: waiting {wait_secs}s");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                let reset = chrono::DateTime::from_timestamp(reset_at, 0).unwrap_or_default();
                return Err(GithubError::RateLimited {
                    method,
                    route: route.to_owned(),
                    reset_at: reset.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    wait: wait_secs,
                    max_wait: self.max_rate_limit_wait.as_secs(),
                });
            }
            if status >= 500 && retry == Retry::Read && attempt < READ_ATTEMPTS {
                tracing::debug!("GitHub {method} {route}: {status}; retrying");
                tokio::time::sleep(backoff(attempt)).await;
                continue;
            }
            let next_page = next_page(&headers);
            return Ok(ApiResponse { status, body: body_value, next_page });
        }
    }

    async fn send_once(
        &self,
        method: &Method,
        route: &str,
        body: Option<&Value>,
    ) -> Result<(u16, HeaderMap, Value), GithubError> {
        let transport =
            |reason: String| GithubError::Transport { method: method.clone(), route: route.to_owned(), reason };
        // A relative URI: octocrab joins it to the base URI and attaches the token only then.
        let sent = match *method {
            Method::GET => self.octocrab._get(route).await,
            Method::POST => self.octocrab._post(route, body).await,
            Method::PUT => self.octocrab._put(route, body).await,
            Method::PATCH => self.octocrab._patch(route, body).await,
            Method::DELETE => self.octocrab._delete(route, body).await,
            _ => return Err(transport(format!("method {method} is not used by coord"))),
        };
        let response = sent.map_err(|e| transport(describe_octocrab_error(&e)))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = self.octocrab.body_to_string(response).await.map_err(|e| transport(describe_octocrab_error(&e)))?;
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, headers, body))
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

    /// Every item of a paginated list, following `Link: rel="next"` to the end.
    pub async fn get_all(&self, route: &str) -> Result<Vec<Value>, GithubError> {
        let mut items = Vec::new();
        let mut next = Some(with_per_page(route));
        while let Some(page) = next {
            let response = self.request(Method::GET, &page, None, Retry::Read).await?;
            if !response.is_success() {
                return Err(response.into_error(Method::GET, route));
            }
            next = response.next_page.clone();
            match response.body {
                Value::Array(page_items) => items.extend(page_items),
                other => {
                    return Err(GithubError::Status {
                        method: Method::GET,
                        route: route.to_owned(),
                        status: response.status,
                        message: format!("expected a list, got {}", short(&other)),
                    })
                }
            }
        }
        Ok(items)
    }

    /// Every item of a list GitHub wraps in an object with a `total_count` (check runs): not a
    /// plain page, so pages are requested by number until `total_count` items are read.
    pub async fn get_all_counted(&self, route: &str, field: &str) -> Result<Vec<Value>, GithubError> {
        let mut items = Vec::new();
        let base = with_per_page(route);
        for page in 1.. {
            let page_route = format!("{base}&page={page}");
            let body = self.get(&page_route).await?;
            let total = body.get("total_count").and_then(Value::as_u64).unwrap_or(0);
            let page_items = body.get(field).and_then(Value::as_array).cloned().unwrap_or_default();
            let empty = page_items.is_empty();
            items.extend(page_items);
            if empty || items.len() as u64 >= total {
                break;
            }
        }
        Ok(items)
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

/// A rate-limit answer: how long to wait and when the limit resets (Unix seconds).
#[derive(Debug, PartialEq)]
struct RateLimitWait {
    wait: Duration,
    reset_at: i64,
}

/// How long GitHub asks us to wait, when the answer is a rate limit: `retry-after` (secondary
/// limits), else `x-ratelimit-reset` once `x-ratelimit-remaining` is 0. A 403 without either
/// and without "rate limit" in its message is a permission error, not a rate limit.
fn rate_limit_wait(status: u16, headers: &HeaderMap, body: &Value) -> Option<RateLimitWait> {
    if status != 403 && status != 429 {
        return None;
    }
    let now = chrono::Utc::now().timestamp();
    if let Some(secs) = header(headers, "retry-after").and_then(|v| v.parse::<u64>().ok()) {
        return Some(RateLimitWait { wait: Duration::from_secs(secs), reset_at: now + secs as i64 });
    }
    let exhausted = header(headers, "x-ratelimit-remaining") == Some("0");
    let reset = header(headers, "x-ratelimit-reset").and_then(|v| v.parse::<i64>().ok());
    let says_rate_limit =
        body.get("message").and_then(Value::as_str).is_some_and(|m| m.to_ascii_lowercase().contains("rate limit"));
    if !(exhausted || says_rate_limit || status == 429) {
        return None;
    }
    Some(match reset {
        // The reset is in whole seconds: one more makes sure it has passed.
        Some(at) => RateLimitWait { wait: Duration::from_secs((at - now).max(0) as u64 + 1), reset_at: at },
        None => RateLimitWait { wait: Duration::from_secs(60), reset_at: now + 60 },
    })
}

/// The `rel="next"` page of a `Link` header, as a relative route (so the token goes with it).
fn next_page(headers: &HeaderMap) -> Option<String> {
    let link = header(headers, "link")?;
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        if !params.split(';').any(|p| p.trim() == "rel=\"next\"") {
            return None;
        }
        let url = url.trim().trim_start_matches('<').trim_end_matches('>');
        Some(relative_route(url))
    })
}

fn relative_route(url: &str) -> String {
    match url.split_once("://") {
        Some((_, rest)) => rest.find('/').map(|i| rest[i..].to_owned()).unwrap_or_else(|| "/".into()),
        None => url.to_owned(),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 120 {
        format!("{}…", s.chars().take(120).collect::<String>())
    } else {
        s
    }
}

/// octocrab's `Display` appends a backtrace; this keeps the causes only.
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
    parts.join(": ")
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

    #[test]
    fn link_header_next_page_is_relative() {
        let h = headers(&[(
            "link",
            "<https://ghe.example.com/api/v3/repos/a/b/pulls?page=2&per_page=100>; rel=\"next\", <https://ghe.example.com/api/v3/repos/a/b/pulls?page=5>; rel=\"last\"",
        )]);
        assert_eq!(next_page(&h).as_deref(), Some("/api/v3/repos/a/b/pulls?page=2&per_page=100"));
        let last_only = headers(&[("link", "<https://api.github.com/x?page=1>; rel=\"prev\"")]);
        assert_eq!(next_page(&last_only), None);
    }

    #[test]
    fn rate_limits_are_told_from_permission_errors() {
        let none = Value::Null;
        assert_eq!(
            rate_limit_wait(403, &headers(&[("retry-after", "7")]), &none).map(|w| w.wait),
            Some(Duration::from_secs(7))
        );
        let reset_at = chrono::Utc::now().timestamp() + 100;
        let reset = reset_at.to_string();
        let wait =
            rate_limit_wait(403, &headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", &reset)]), &none);
        let wait = wait.unwrap();
        assert!(wait.wait >= Duration::from_secs(99));
        assert_eq!(wait.reset_at, reset_at);
        assert_eq!(
            rate_limit_wait(
                403,
                &headers(&[("x-ratelimit-remaining", "12")]),
                &serde_json::json!({"message": "Resource not accessible by integration"})
            ),
            None
        );
        assert!(rate_limit_wait(429, &HeaderMap::new(), &none).is_some());
        assert_eq!(rate_limit_wait(404, &headers(&[("retry-after", "1")]), &none), None);
    }

    #[test]
    fn tokens_do_not_print() {
        let t = GithubToken::new("ghp_secret").unwrap();
        assert!(!format!("{t:?}").contains("ghp_secret"));
        assert!(GithubToken::new("  ").is_none());
    }
}
