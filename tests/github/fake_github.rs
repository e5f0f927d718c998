//! A fake GitHub REST API on 127.0.0.1: a small stateful axum app speaking the real routes,
//! JSON shapes, `Link` pagination, rate-limit headers and merge answers (405 not mergeable,
//! 409 head moved). It records every request, so tests assert exactly which writes happened.

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
        }
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

/// A rate-limit answer queued for the next request.
#[derive(Clone, Debug)]
pub enum RateLimit {
    /// 403 with `x-ratelimit-remaining: 0` and `x-ratelimit-reset` at this Unix time.
    Primary { reset_at: i64 },
    /// 429 with `retry-after`.
    Secondary { retry_after: u64 },
}

#[derive(Default)]
struct FakeState {
    base_url: String,
    prs: BTreeMap<u64, FakePr>,
    issues: BTreeMap<u64, FakeIssue>,
    comments: BTreeMap<u64, Vec<Value>>,
    requests: Vec<Recorded>,
    max_per_page: usize,
    rate_limits: VecDeque<RateLimit>,
    next_id: u64,
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
        self.state.lock().unwrap().prs.insert(pr.number, pr);
        self
    }

    pub fn add_issue(&self, number: u64, title: &str, labels: &[&str]) -> &Self {
        let issue = FakeIssue {
            title: title.into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            state: "open".into(),
        };
        self.state.lock().unwrap().issues.insert(number, issue);
        self
    }

    pub fn pr(&self, n: u64) -> FakePr {
        self.state.lock().unwrap().prs[&n].clone()
    }

    pub fn queue_rate_limit(&self, r: RateLimit) {
        self.state.lock().unwrap().rate_limits.push_back(r);
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
        "draft": false,
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
        if let Some(limit) = state.rate_limits.pop_front() {
            return rate_limited(limit);
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

fn rate_limited(limit: RateLimit) -> Response {
    let message = json!({"message": "API rate limit exceeded for installation ID 1.", "documentation_url": "https://docs.github.com/rest/rate-limit"});
    match limit {
        RateLimit::Primary { reset_at: reset } => {
            let mut r = json_response(StatusCode::FORBIDDEN, message);
            r.headers_mut().insert("x-ratelimit-remaining", "0".parse().unwrap());
            r.headers_mut().insert("x-ratelimit-limit", "5000".parse().unwrap());
            r.headers_mut().insert("x-ratelimit-reset", reset.to_string().parse().unwrap());
            r
        }
        RateLimit::Secondary { retry_after } => {
            let mut r = json_response(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"message": "You have exceeded a secondary rate limit."}),
            );
            r.headers_mut().insert("retry-after", retry_after.to_string().parse().unwrap());
            r
        }
    }
}

fn route(state: &mut FakeState, method: &Method, uri: &Uri, body: &Value) -> (Response, Option<Duration>) {
    // GitHub Enterprise serves the same API under /api/v3.
    let path = uri.path().strip_prefix("/api/v3").unwrap_or(uri.path());
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let ["repos", owner, repo, rest @ ..] = segments.as_slice() else {
        return (not_found(), None);
    };
    if *owner != OWNER || *repo != REPO {
        return (not_found(), None);
    }
    let num = |s: &str| s.parse::<u64>().ok();
    let r = match (method.as_str(), rest) {
        ("GET", ["pulls"]) => {
            let wanted = query_param(uri, "state").unwrap_or_else(|| "open".into());
            let items = state
                .prs
                .values()
                .filter(|p| wanted == "all" || p.state == wanted)
                .map(|p| pr_json(state, p))
                .collect();
            page(state, uri, items)
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
            let mut numbers: Vec<u64> = state.issues.keys().chain(state.prs.keys()).copied().collect();
            numbers.sort();
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
    let refuse = |status: StatusCode, message: &str| (json_response(status, json!({"message": message})), None);
    if pr.merged || pr.state != "open" {
        return refuse(StatusCode::METHOD_NOT_ALLOWED, "Pull Request is not mergeable");
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
