//! A fake GitHub REST API on 127.0.0.1: a small stateful axum app speaking the real routes,
//! JSON shapes, `Link` pagination (lists newest first, as GitHub's default sort has them, so a
//! PR opened while a client pages shifts the later pages), the headers and bodies GitHub sends
//! with primary and secondary rate limits, merge answers (405 not mergeable, 405 still a
//! draft, 409 head moved), a renamed repository (301 for reads, 307 for writes, to
//! `/repositories/ID/...`) or one moved to another host, and raw answers such as a 502 HTML
//! page. It records every request, so tests assert exactly which writes happened.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const OWNER: &str = "acme";
pub const REPO: &str = "widgets";

/// What the merge endpoint does for a PR (after the checks GitHub itself makes).
#[derive(Clone, Debug, PartialEq)]
pub enum MergeAnswer {
    Merge,
    /// 405 "Pull Request is not mergeable".
    NotMergeable,
    /// 405 with a merge-conflict message.
    Conflict,
    /// Someone pushes between coord's check and its merge request: 409.
    HeadMovesFirst,
    /// Merges, then holds the response this long (a test kills coord meanwhile).
    MergeThenStall(Duration),
    /// The author turns the PR back into a draft between coord's check and its merge: 405.
    DraftMeanwhile,
}

#[derive(Clone, Debug)]
pub struct FakePr {
    pub number: u64,
    pub title: String,
    pub author: String,
    pub head_sha: String,
    pub labels: Vec<String>,
    pub state: String,
    pub merged: bool,
    pub mergeable: Option<bool>,
    pub statuses: Vec<Value>,
    pub check_runs: Vec<Value>,
    pub reviews: Vec<Value>,
    pub merge_answer: MergeAnswer,
    pub draft: bool,
}

impl FakePr {
    pub fn new(number: u64, title: &str) -> Self {
        FakePr {
            number,
            title: title.to_owned(),
            author: "ana".into(),
            head_sha: format!("{number:040x}"),
            labels: Vec::new(),
            state: "open".into(),
            merged: false,
            mergeable: Some(true),
            statuses: Vec::new(),
            check_runs: Vec::new(),
            reviews: Vec::new(),
            merge_answer: MergeAnswer::Merge,
            draft: false,
        }
    }

    pub fn draft(mut self) -> Self {
        self.draft = true;
        self
    }

    /// `n` successful check runs (so several pages) and one green status.
    pub fn green(mut self, n: usize) -> Self {
        self.check_runs = (0..n).map(|i| check_run(&format!("job-{i:02}"), "completed", Some("success"))).collect();
        self.statuses = vec![status("ci/legacy", "success")];
        self
    }

    /// Green, except the last check run (on the last page) failed.
    pub fn red_on_last_page(self, n: usize) -> Self {
        let mut pr = self.green(n);
        let last = pr.check_runs.len() - 1;
        pr.check_runs[last] = check_run("job-last", "completed", Some("failure"));
        pr
    }

    pub fn pending(mut self) -> Self {
        self.check_runs = vec![check_run("build", "completed", Some("success")), check_run("e2e", "in_progress", None)];
        self
    }

    pub fn author(mut self, a: &str) -> Self {
        self.author = a.into();
        self
    }

    pub fn labels(mut self, labels: &[&str]) -> Self {
        self.labels = labels.iter().map(|l| l.to_string()).collect();
        self
    }

    pub fn answer(mut self, a: MergeAnswer) -> Self {
        self.merge_answer = a;
        self
    }
}

pub fn check_run(name: &str, status: &str, conclusion: Option<&str>) -> Value {
    json!({"name": name, "status": status, "conclusion": conclusion, "html_url": format!("https://ci.example/{name}")})
}

pub fn status(context: &str, state: &str) -> Value {
    json!({"context": context, "state": state, "target_url": format!("https://ci.example/{context}")})
}

#[derive(Clone, Debug)]
pub struct FakeIssue {
    pub title: String,
    pub labels: Vec<String>,
    pub state: String,
}

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub body: Value,
    pub authorization: Option<String>,
}

impl Recorded {
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }

    pub fn is_write(&self) -> bool {
        self.method != "GET"
    }
}

/// A rate-limit answer queued for the next request, with the headers and body GitHub sends.
#[derive(Clone, Debug)]
pub enum RateLimit {
    /// 403 with `x-ratelimit-remaining: 0` and `x-ratelimit-reset` at this Unix time.
    Primary { reset_at: i64 },
    /// 429 with `retry-after`.
    Secondary { retry_after: u64 },
    /// 403 "You have exceeded a secondary rate limit" without `retry-after`: the
    /// `x-ratelimit-*` headers show budget left and the hourly reset, which says nothing about
    /// when this limit lifts.
    SecondaryWithoutRetryAfter,
}

/// The repository id the fake serves under `/repositories/ID` once renamed.
pub const REPO_ID: u64 = 4242;

/// Where the repository went.
#[derive(Clone, Debug)]
enum Moved {
    /// Renamed or transferred: the old routes redirect to `/repositories/REPO_ID/...`.
    Renamed,
    /// To another host (this base URL): redirects there, same path.
    ToHost(String),
}

/// An answer queued for the next request, whatever it asks.
#[derive(Clone, Debug)]
enum Queued {
    RateLimit(RateLimit),
    /// Status, content type, body: what a proxy or a GitHub outage sends.
    Raw(u16, &'static str, String),
}

/// GitHub's 502 page (abridged): HTML, whatever the request's `Accept`.
pub const UNICORN_PAGE: &str = "<!DOCTYPE html>\n<html>\n  <head>\n    <meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\">\n    <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:; connect-src 'self'\">\n    <title>Unicorn! &middot; GitHub</title>\n    <style type=\"text/css\" media=\"screen\">\n      body { background-color: #f1f1f1; margin: 0; font-family: \"Helvetica Neue\", Helvetica, Arial, sans-serif; }\n      .container { margin: 50px auto 40px auto; width: 600px; text-align: center; }\n    </style>\n  </head>\n  <body>\n    <div class=\"container\">\n      <p><strong>No server is currently available to service your request.</strong></p>\n      <p>Sorry about that. Please try refreshing and contact us if the problem persists.</p>\n    </div>\n  </body>\n</html>\n";

#[derive(Default)]
struct FakeState {
    base_url: String,
    prs: BTreeMap<u64, FakePr>,
    issues: BTreeMap<u64, FakeIssue>,
    comments: BTreeMap<u64, Vec<Value>>,
    requests: Vec<Recorded>,
    max_per_page: usize,
    queued: VecDeque<Queued>,
    next_id: u64,
    /// Creation order of PRs and issues (GitHub lists newest first).
    created: BTreeMap<u64, u64>,
    next_created: u64,
    moved: Option<Moved>,
    /// A PR opened right after the PR listing's page N is served.
    opens_while_listing: Option<(usize, FakePr)>,
    /// Every write is refused as a token without write permission is.
    writes_denied: bool,
    /// What a moved repository answers a write with (GitHub: 307).
    write_redirect: Option<StatusCode>,
}

impl FakeState {
    fn create(&mut self, number: u64) {
        self.next_created += 1;
        self.created.insert(number, self.next_created);
    }

    /// Numbers newest first, as GitHub's default `sort=created&direction=desc` lists them.
    fn newest_first(&self, numbers: impl Iterator<Item = u64>) -> Vec<u64> {
        let mut numbers: Vec<u64> = numbers.collect();
        numbers.sort_by_key(|n| std::cmp::Reverse(self.created.get(n).copied().unwrap_or(0)));
        numbers
    }
}

#[derive(Clone)]
pub struct FakeGithub {
    pub url: String,
    state: Arc<Mutex<FakeState>>,
}

impl FakeGithub {
    /// Starts the server on its own thread and runtime; it lives as long as the test process.
    /// Pages hold at most `max_per_page` items whatever `per_page` asks, so pagination is
    /// exercised with a handful of items.
    pub fn start(max_per_page: usize) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(FakeState {
            base_url: url.clone(),
            max_per_page,
            next_id: 1000,
            ..FakeState::default()
        }));
        let app = axum::Router::new().fallback(handle).with_state(state.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        FakeGithub { url, state }
    }

    pub fn add_pr(&self, pr: FakePr) -> &Self {
        let mut state = self.state.lock().unwrap();
        state.create(pr.number);
        state.prs.insert(pr.number, pr);
        self
    }

    pub fn add_issue(&self, number: u64, title: &str, labels: &[&str]) -> &Self {
        let issue = FakeIssue {
            title: title.into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            state: "open".into(),
        };
        let mut state = self.state.lock().unwrap();
        state.create(number);
        state.issues.insert(number, issue);
        self
    }

    pub fn pr(&self, n: u64) -> FakePr {
        self.state.lock().unwrap().prs[&n].clone()
    }

    pub fn queue_rate_limit(&self, r: RateLimit) {
        self.state.lock().unwrap().queued.push_back(Queued::RateLimit(r));
    }

    /// The next `times` requests get GitHub's 502 HTML page.
    pub fn queue_bad_gateway(&self, times: usize) {
        let mut state = self.state.lock().unwrap();
        for _ in 0..times {
            state.queued.push_back(Queued::Raw(502, "text/html; charset=utf-8", UNICORN_PAGE.to_owned()));
        }
    }

    /// The repository is renamed: its old routes answer 301 (GET) or 307 (anything else) with
    /// a `Location` under `/repositories/REPO_ID`, as GitHub does.
    pub fn rename_repository(&self) {
        self.state.lock().unwrap().moved = Some(Moved::Renamed);
    }

    /// Like [`FakeGithub::rename_repository`], but writes are answered `status` (a proxy that
    /// rewrites GitHub's 307 into a 301, say).
    pub fn rename_repository_redirecting_writes_with(&self, status: u16) {
        let mut state = self.state.lock().unwrap();
        state.moved = Some(Moved::Renamed);
        state.write_redirect = Some(StatusCode::from_u16(status).unwrap());
    }

    /// The repository's routes redirect to the same path on another host.
    pub fn move_to_host(&self, base_url: &str) {
        self.state.lock().unwrap().moved = Some(Moved::ToHost(base_url.to_owned()));
    }

    /// Every write gets 403 "Resource not accessible by integration", as with a token that
    /// may read but not write.
    pub fn deny_writes(&self) {
        self.state.lock().unwrap().writes_denied = true;
    }

    /// `pr` is opened just after the PR listing's page `page` is served: every later page
    /// shifts by one, as on GitHub.
    pub fn open_pr_while_listing(&self, page: usize, pr: FakePr) {
        self.state.lock().unwrap().opens_while_listing = Some((page, pr));
    }

    pub fn comments(&self, n: u64) -> Vec<Value> {
        self.state.lock().unwrap().comments.get(&n).cloned().unwrap_or_default()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Every write, as `METHOD path`.
    pub fn writes(&self) -> Vec<String> {
        self.requests().iter().filter(|r| r.is_write()).map(|r| format!("{} {}", r.method, r.path())).collect()
    }
}

fn query_param(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.replace("%2C", ",").replace("%20", " "))
    })
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn not_found() -> Response {
    json_response(StatusCode::NOT_FOUND, json!({"message": "Not Found"}))
}

/// One page of `items`, with a `Link` header to the next one as GitHub sends it.
fn page(state: &FakeState, uri: &Uri, items: Vec<Value>) -> Response {
    let per_page = query_param(uri, "per_page").and_then(|p| p.parse().ok()).unwrap_or(30usize).min(state.max_per_page);
    let page_no = query_param(uri, "page").and_then(|p| p.parse().ok()).unwrap_or(1usize);
    let start = (page_no - 1) * per_page;
    let slice: Vec<Value> = items.iter().skip(start).take(per_page).cloned().collect();
    let mut response = json_response(StatusCode::OK, Value::Array(slice));
    if start + per_page < items.len() {
        let kept: Vec<&str> =
            uri.query().unwrap_or("").split('&').filter(|kv| !kv.starts_with("page=") && !kv.is_empty()).collect();
        let mut query = kept.join("&");
        if !query.is_empty() {
            query.push('&');
        }
        let link = format!("<{}{}?{query}page={}>; rel=\"next\"", state.base_url, uri.path(), page_no + 1);
        response.headers_mut().insert("link", link.parse().unwrap());
    }
    response
}

fn pr_json(state: &FakeState, pr: &FakePr) -> Value {
    json!({
        "number": pr.number,
        "title": pr.title,
        "user": {"login": pr.author},
        "state": pr.state,
        "base": {"ref": "main", "sha": "b".repeat(40)},
        "head": {"ref": format!("pr-{}", pr.number), "sha": pr.head_sha},
        "labels": pr.labels.iter().map(|l| json!({"name": l, "color": "ededed"})).collect::<Vec<_>>(),
        "draft": pr.draft,
        "mergeable": pr.mergeable,
        "mergeable_state": if pr.mergeable == Some(false) { "dirty" } else { "clean" },
        "merged": pr.merged,
        "merged_at": if pr.merged { json!("2026-11-21T09:00:00Z") } else { Value::Null },
        "merge_commit_sha": if pr.merged { json!(format!("{:040x}", pr.number + 0xabc)) } else { Value::Null },
        "html_url": format!("{}/{OWNER}/{REPO}/pull/{}", state.base_url, pr.number),
        "body": null,
        "created_at": "2026-11-20T09:00:00Z",
        "updated_at": "2026-11-21T08:00:00Z",
    })
}

fn issue_json(state: &FakeState, n: u64) -> Option<Value> {
    let comments = state.comments.get(&n).map(Vec::len).unwrap_or(0);
    if let Some(pr) = state.prs.get(&n) {
        let mut v = pr_json(state, pr);
        let obj = v.as_object_mut().unwrap();
        obj.insert("comments".into(), json!(comments));
        obj.insert("assignees".into(), json!([]));
        obj.insert("pull_request".into(), json!({"url": format!("{}/repos/{OWNER}/{REPO}/pulls/{n}", state.base_url)}));
        return Some(v);
    }
    let issue = state.issues.get(&n)?;
    Some(json!({
        "number": n,
        "title": issue.title,
        "user": {"login": "reporter"},
        "state": issue.state,
        "labels": issue.labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>(),
        "assignees": [{"login": "ana"}],
        "body": "It breaks.",
        "comments": comments,
        "html_url": format!("{}/{OWNER}/{REPO}/issues/{n}", state.base_url),
        "created_at": "2026-11-20T09:00:00Z",
        "updated_at": "2026-11-21T08:00:00Z",
    }))
}

fn labels_of(state: &mut FakeState, n: u64) -> Option<&mut Vec<String>> {
    if state.prs.contains_key(&n) {
        return state.prs.get_mut(&n).map(|p| &mut p.labels);
    }
    state.issues.get_mut(&n).map(|i| &mut i.labels)
}

async fn handle(
    State(shared): State<Arc<Mutex<FakeState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let stall;
    let response = {
        let mut state = shared.lock().unwrap();
        state.requests.push(Recorded {
            method: method.to_string(),
            uri: uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
            body: body.clone(),
            authorization: headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned),
        });
        match state.queued.pop_front() {
            Some(Queued::RateLimit(limit)) => return rate_limited(limit),
            Some(Queued::Raw(status, content_type, body)) => {
                let status = StatusCode::from_u16(status).unwrap();
                return (status, [("content-type", content_type)], body).into_response();
            }
            None => {}
        }
        if state.writes_denied && method != Method::GET {
            let body = json!({
                "message": "Resource not accessible by integration",
                "documentation_url": "https://docs.github.com/rest/issues/comments#create-an-issue-comment",
                "status": "403",
            });
            return json_response(StatusCode::FORBIDDEN, body);
        }
        let (response, s) = route(&mut state, &method, &uri, &body);
        stall = s;
        response
    };
    if let Some(d) = stall {
        tokio::time::sleep(d).await;
    }
    response
}

/// `x-ratelimit-*` headers as GitHub sends them on every answer.
fn budget_headers(r: &mut Response, remaining: u64, reset_at: i64) {
    let h = r.headers_mut();
    h.insert("x-ratelimit-limit", "5000".parse().unwrap());
    h.insert("x-ratelimit-remaining", remaining.to_string().parse().unwrap());
    h.insert("x-ratelimit-used", (5000 - remaining).to_string().parse().unwrap());
    h.insert("x-ratelimit-reset", reset_at.to_string().parse().unwrap());
    h.insert("x-ratelimit-resource", "core".parse().unwrap());
}

const SECONDARY_MESSAGE: &str = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID C0DE:1234:5678:9ABC:DEF0.";

fn rate_limited(limit: RateLimit) -> Response {
    let hourly_reset = chrono::Utc::now().timestamp() + 3600;
    match limit {
        RateLimit::Primary { reset_at: reset } => {
            let mut r = json_response(
                StatusCode::FORBIDDEN,
                json!({
                    "message": "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, please include the request ID C0DE:1234:5678:9ABC:DEF0.",
                    "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
                    "status": "403",
                }),
            );
            budget_headers(&mut r, 0, reset);
            r
        }
        RateLimit::Secondary { retry_after } => {
            let mut r = json_response(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"message": SECONDARY_MESSAGE, "documentation_url": "https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits", "status": "429"}),
            );
            budget_headers(&mut r, 4987, hourly_reset);
            r.headers_mut().insert("retry-after", retry_after.to_string().parse().unwrap());
            r
        }
        RateLimit::SecondaryWithoutRetryAfter => {
            let mut r = json_response(
                StatusCode::FORBIDDEN,
                json!({"message": SECONDARY_MESSAGE, "documentation_url": "https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits", "status": "403"}),
            );
            budget_headers(&mut r, 4987, hourly_reset);
            r
        }
    }
}

/// Where a request to the repository's old routes is sent: 301 for a GET, 307 for anything
/// else, with GitHub's body.
fn moved(state: &FakeState, method: &Method, uri: &Uri, rest: &[&str]) -> Response {
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let location = match state.moved.as_ref().unwrap() {
        Moved::Renamed => format!("{}/repositories/{REPO_ID}/{}{query}", state.base_url, rest.join("/")),
        Moved::ToHost(host) => format!("{host}{}{query}", uri.path()),
    };
    let status = if *method == Method::GET {
        StatusCode::MOVED_PERMANENTLY
    } else {
        state.write_redirect.unwrap_or(StatusCode::TEMPORARY_REDIRECT)
    };
    let message = status.canonical_reason().unwrap_or("");
    let mut r = json_response(
        status,
        json!({"message": message, "url": location, "documentation_url": "https://docs.github.com/v3/#http-redirects"}),
    );
    r.headers_mut().insert("location", location.parse().unwrap());
    r
}

fn route(state: &mut FakeState, method: &Method, uri: &Uri, body: &Value) -> (Response, Option<Duration>) {
    // GitHub Enterprise serves the same API under /api/v3.
    let path = uri.path().strip_prefix("/api/v3").unwrap_or(uri.path());
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segments.as_slice() {
        ["repos", owner, repo, rest @ ..] if *owner == OWNER && *repo == REPO => {
            if state.moved.is_some() {
                return (moved(state, method, uri, rest), None);
            }
            rest
        }
        ["repositories", id, rest @ ..] if *id == REPO_ID.to_string() && state.moved.is_some() => rest,
        _ => return (not_found(), None),
    };
    let num = |s: &str| s.parse::<u64>().ok();
    let r = match (method.as_str(), rest) {
        ("GET", ["pulls"]) => {
            let wanted = query_param(uri, "state").unwrap_or_else(|| "open".into());
            let mut numbers = state.newest_first(state.prs.keys().copied());
            if query_param(uri, "direction").as_deref() == Some("asc") {
                numbers.reverse();
            }
            let items = numbers
                .iter()
                .map(|n| &state.prs[n])
                .filter(|p| wanted == "all" || p.state == wanted)
                .map(|p| pr_json(state, p))
                .collect();
            let response = page(state, uri, items);
            let page_no = query_param(uri, "page").and_then(|p| p.parse().ok()).unwrap_or(1usize);
            if state.opens_while_listing.as_ref().is_some_and(|(after, _)| *after == page_no) {
                let (_, pr) = state.opens_while_listing.take().unwrap();
                state.create(pr.number);
                state.prs.insert(pr.number, pr);
            }
            response
        }
        ("GET", ["pulls", n]) => match num(n).and_then(|n| state.prs.get(&n)) {
            Some(pr) => json_response(StatusCode::OK, pr_json(state, pr)),
            None => not_found(),
        },
        ("GET", ["pulls", n, "reviews"]) => match num(n).and_then(|n| state.prs.get(&n)) {
            Some(pr) => page(state, uri, pr.reviews.clone()),
            None => not_found(),
        },
        ("PUT", ["pulls", n, "merge"]) => return merge(state, num(n).unwrap_or(0), body),
        ("GET", ["commits", sha, "statuses"]) => {
            let mut statuses: Vec<Value> =
                state.prs.values().filter(|p| p.head_sha == *sha).flat_map(|p| p.statuses.clone()).collect();
            statuses.reverse(); // newest first, as GitHub lists them
            page(state, uri, statuses)
        }
        ("GET", ["commits", sha, "check-runs"]) => {
            // Not a plain page: wrapped with a total count, and no Link header.
            let runs: Vec<Value> =
                state.prs.values().filter(|p| p.head_sha == *sha).flat_map(|p| p.check_runs.clone()).collect();
            let per_page =
                query_param(uri, "per_page").and_then(|p| p.parse().ok()).unwrap_or(30usize).min(state.max_per_page);
            let page_no = query_param(uri, "page").and_then(|p| p.parse().ok()).unwrap_or(1usize);
            let slice: Vec<Value> = runs.iter().skip((page_no - 1) * per_page).take(per_page).cloned().collect();
            json_response(StatusCode::OK, json!({"total_count": runs.len(), "check_runs": slice}))
        }
        ("GET", ["issues"]) => {
            let wanted = query_param(uri, "state").unwrap_or_else(|| "open".into());
            let labels: Vec<String> =
                query_param(uri, "labels").map(|l| l.split(',').map(str::to_owned).collect()).unwrap_or_default();
            let numbers = state.newest_first(state.issues.keys().chain(state.prs.keys()).copied());
            let items = numbers
                .into_iter()
                .filter_map(|n| issue_json(state, n))
                .filter(|i| wanted == "all" || i["state"] == wanted.as_str())
                .filter(|i| {
                    labels.iter().all(|l| i["labels"].as_array().unwrap().iter().any(|x| x["name"] == l.as_str()))
                })
                .collect();
            page(state, uri, items)
        }
        ("GET", ["issues", n]) => match num(n).and_then(|n| issue_json(state, n)) {
            Some(i) => json_response(StatusCode::OK, i),
            None => not_found(),
        },
        ("PATCH", ["issues", n]) => {
            let n = num(n).unwrap_or(0);
            let new_state = body["state"].as_str().unwrap_or("open").to_owned();
            if let Some(pr) = state.prs.get_mut(&n) {
                pr.state = new_state;
            } else if let Some(i) = state.issues.get_mut(&n) {
                i.state = new_state;
            } else {
                return (not_found(), None);
            }
            json_response(StatusCode::OK, issue_json(state, n).unwrap())
        }
        ("GET", ["issues", n, "comments"]) => match num(n).filter(|n| issue_json(state, *n).is_some()) {
            Some(n) => page(state, uri, state.comments.get(&n).cloned().unwrap_or_default()),
            None => not_found(),
        },
        ("POST", ["issues", n, "comments"]) => match num(n).filter(|n| issue_json(state, *n).is_some()) {
            Some(n) => {
                state.next_id += 1;
                let comment = json!({"id": state.next_id, "body": body["body"], "user": {"login": "coord-bot"}});
                state.comments.entry(n).or_default().push(comment.clone());
                json_response(StatusCode::CREATED, comment)
            }
            None => not_found(),
        },
        ("POST", ["issues", n, "labels"]) => {
            let Some(labels) = num(n).and_then(|n| labels_of(state, n)) else {
                return (not_found(), None);
            };
            for l in body["labels"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                if !labels.iter().any(|x| x == l) {
                    labels.push(l.to_owned());
                }
            }
            let out: Vec<Value> = labels.iter().map(|l| json!({"name": l})).collect();
            json_response(StatusCode::OK, Value::Array(out))
        }
        ("DELETE", ["issues", n, "labels", name]) => {
            let name = name.replace("%20", " ").replace("%3A", ":");
            let Some(labels) = num(n).and_then(|n| labels_of(state, n)) else {
                return (not_found(), None);
            };
            if !labels.contains(&name) {
                return (json_response(StatusCode::NOT_FOUND, json!({"message": "Label does not exist"})), None);
            }
            labels.retain(|l| *l != name);
            let out: Vec<Value> = labels.iter().map(|l| json!({"name": l})).collect();
            json_response(StatusCode::OK, Value::Array(out))
        }
        _ => not_found(),
    };
    (r, None)
}

fn merge(state: &mut FakeState, n: u64, body: &Value) -> (Response, Option<Duration>) {
    let Some(pr) = state.prs.get_mut(&n) else {
        return (not_found(), None);
    };
    let refuse = |status: StatusCode, message: &str| {
        let body = json!({
            "message": message,
            "documentation_url": "https://docs.github.com/rest/pulls/pulls#merge-a-pull-request",
            "status": status.as_u16().to_string(),
        });
        (json_response(status, body), None)
    };
    if pr.merged || pr.state != "open" {
        return refuse(StatusCode::METHOD_NOT_ALLOWED, "Pull Request is not mergeable");
    }
    if pr.merge_answer == MergeAnswer::DraftMeanwhile {
        pr.draft = true;
    }
    if pr.draft {
        return refuse(StatusCode::METHOD_NOT_ALLOWED, "Pull Request is still a draft");
    }
    if pr.merge_answer == MergeAnswer::HeadMovesFirst {
        pr.head_sha = "f".repeat(40);
    }
    if let Some(sha) = body["sha"].as_str() {
        if sha != pr.head_sha {
            return refuse(StatusCode::CONFLICT, "Head branch was modified. Review and try the merge again.");
        }
    }
    match pr.merge_answer.clone() {
        MergeAnswer::NotMergeable => refuse(StatusCode::METHOD_NOT_ALLOWED, "Pull Request is not mergeable"),
        MergeAnswer::Conflict => refuse(StatusCode::METHOD_NOT_ALLOWED, "Merge conflict"),
        answer => {
            pr.merged = true;
            pr.state = "closed".into();
            let stall = match answer {
                MergeAnswer::MergeThenStall(d) => Some(d),
                _ => None,
            };
            let sha = format!("{:040x}", n + 0xabc);
            (
                json_response(
                    StatusCode::OK,
                    json!({"sha": sha, "merged": true, "message": "Pull Request successfully merged"}),
                ),
                stall,
            )
        }
    }
}
