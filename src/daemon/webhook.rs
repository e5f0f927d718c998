//! Webhook triggers: `POST /hooks/<pipeline>` on the daemon's `--listen` address (and the
//! checks every webhook passes, which `POST /signals/<hook>` shares: `super::signal_hook`).
//!
//! Owns the requests: size and body-time limits, GitHub-style signatures (`X-Hub-Signature-256:
//! sha256=<hex>`, HMAC-SHA256 with a secret read from the environment on each request,
//! compared in constant time), reading the delivery id (`X-GitHub-Delivery`), turning a JSON
//! payload into run inputs, and answering with a status code. Every refused request is
//! answered and logged, and the server carries on. Connections (header timeout, the cap) are
//! `listener`'s. It must not start runs, apply the overlap policy or remember deliveries: it
//! hands a fire to the dispatcher and reports the dispatcher's answer.

use super::accepted_deliveries::LONGEST_DELIVERY_ID;
use super::dispatcher::{FireAction, SkipReason};
use super::pipeline::{PipelineSet, WebhookTrigger};
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use hmac::{Hmac, Mac};
use indexmap::IndexMap;
use serde_json::{json, Value};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// Largest payload accepted; GitHub caps its own at 25 MB, but coord's inputs are small.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// GitHub's id of one delivery; a redelivery carries the same one.
pub const DELIVERY_HEADER: &str = "x-github-delivery";

/// A verified webhook, handed to the dispatcher, which answers what it did with it.
#[derive(Debug)]
pub struct WebhookFire {
    pub pipeline: String,
    pub inputs: IndexMap<String, Value>,
    /// The `X-GitHub-Delivery` id, when the request has one.
    pub delivery: Option<String>,
    pub reply: oneshot::Sender<FireAction>,
}

/// Where a value sits in a JSON payload: a JSON pointer (`/repository/full_name`) or a dotted
/// path (`repository.full_name`, array items by index: `commits.0.id`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PayloadPath {
    Pointer(String),
    Dotted(Vec<String>),
}

impl PayloadPath {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("the path is empty".into());
        }
        if text.starts_with('/') {
            return Ok(PayloadPath::Pointer(text.to_owned()));
        }
        let segments: Vec<String> = text.split('.').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            return Err(format!("`{text}` has an empty segment"));
        }
        Ok(PayloadPath::Dotted(segments))
    }

    pub fn find<'v>(&self, payload: &'v Value) -> Option<&'v Value> {
        match self {
            PayloadPath::Pointer(p) => payload.pointer(p),
            PayloadPath::Dotted(segments) => segments.iter().try_fold(payload, |v, seg| match v {
                Value::Object(map) => map.get(seg),
                Value::Array(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            }),
        }
    }
}

/// The run inputs a payload gives: the mapped values (a path the payload lacks gives no input),
/// or with no mapping, the payload's top-level fields.
pub fn payload_inputs(trigger: &WebhookTrigger, payload: &Value) -> Result<IndexMap<String, Value>, String> {
    if trigger.inputs.is_empty() {
        return match payload {
            Value::Object(map) => Ok(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            _ => Err("the payload is not a JSON object; map its values to inputs with `webhook.inputs`".into()),
        };
    }
    Ok(trigger.inputs.iter().filter_map(|(name, path)| path.find(payload).map(|v| (name.clone(), v.clone()))).collect())
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("unsigned (no X-Hub-Signature-256 header)")]
    Missing,
    #[error("malformed X-Hub-Signature-256 (expected sha256=<hex>)")]
    Malformed,
    #[error("bad signature")]
    Mismatch,
}

/// Checks `header` (`sha256=<hex>`) against the HMAC-SHA256 of `body` under `secret`.
pub fn verify_signature(secret: &[u8], body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_digest = header.trim().strip_prefix("sha256=").ok_or(SignatureError::Malformed)?;
    let expected = hex::decode(hex_digest).map_err(|_| SignatureError::Malformed)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&expected).map_err(|_| SignatureError::Mismatch)
}

/// Reads an `X-GitHub-Delivery` value: none, or a non-empty visible-ASCII id of at most
/// [`LONGEST_DELIVERY_ID`] bytes.
pub fn delivery_id(headers: &HeaderMap) -> Result<Option<String>, String> {
    let Some(value) = headers.get(DELIVERY_HEADER) else {
        return Ok(None);
    };
    let id = value.to_str().map(str::trim).unwrap_or("");
    if id.is_empty() || id.len() > LONGEST_DELIVERY_ID || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "malformed X-GitHub-Delivery (expected an id of 1 to {LONGEST_DELIVERY_ID} visible ASCII characters)"
        ));
    }
    Ok(Some(id.to_owned()))
}

#[derive(Clone)]
struct HookState {
    pipelines: watch::Receiver<Arc<PipelineSet>>,
    fires: mpsc::Sender<WebhookFire>,
    body_timeout: Duration,
}

/// The webhook routes: pipeline triggers, and signal hooks (`super::signal_hook`) that deliver
/// to the runs in `runs_root`. `pipelines` follows reloads; fires go to the dispatcher; a body
/// not read within `body_timeout` is answered 408.
pub fn router(
    pipelines: watch::Receiver<Arc<PipelineSet>>,
    fires: mpsc::Sender<WebhookFire>,
    body_timeout: Duration,
    runs_root: std::path::PathBuf,
) -> Router {
    let signals = super::signal_hook::SignalHookState { hooks: pipelines.clone(), runs_root, body_timeout };
    Router::new()
        .route("/hooks/{pipeline}", post(hook))
        .with_state(HookState { pipelines, fires, body_timeout })
        .merge(Router::new().route("/signals/{hook}", post(super::signal_hook::handle)).with_state(signals))
        .fallback(unknown_path)
}

async fn unknown_path(request: Request) -> Response {
    refuse(
        request.method().as_str(),
        request.uri().path(),
        StatusCode::NOT_FOUND,
        "no such route (webhooks are POST /hooks/<pipeline> and POST /signals/<hook>)",
    )
}

async fn hook(
    State(state): State<HookState>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let route = format!("/hooks/{name}");
    let refused = |status, why: &str| refuse("POST", &route, status, why);
    // Read what is needed from the current pipelines, and let go of the snapshot before awaiting.
    let (pipeline, secret_env) = {
        let pipelines = state.pipelines.borrow();
        match pipelines.get(&name).and_then(|p| p.webhook.as_ref().map(|w| (p.clone(), w.secret_env.clone()))) {
            Some(found) => found,
            None => return refused(StatusCode::NOT_FOUND, "no pipeline with a webhook by that name"),
        }
    };
    let (payload, delivery) =
        match verified_payload(&headers, request, &secret_env, state.body_timeout, &route, json!({ "pipeline": name }))
            .await
        {
            Ok(verified) => verified,
            Err(answered) => return answered,
        };
    let trigger = pipeline.webhook.as_ref().expect("chosen for having a webhook");
    let inputs = match payload_inputs(trigger, &payload) {
        Ok(i) => i,
        Err(why) => return refused(StatusCode::BAD_REQUEST, &why),
    };
    let (reply, answer) = oneshot::channel();
    if state
        .fires
        .send(WebhookFire { pipeline: name.clone(), inputs, delivery: delivery.clone(), reply })
        .await
        .is_err()
    {
        return refused(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping");
    }
    let action = answer.await.unwrap_or(FireAction::Stopping);
    let (status, body) = match &action {
        FireAction::Started => (StatusCode::ACCEPTED, json!({ "pipeline": name, "action": "started" })),
        FireAction::Queued => (StatusCode::ACCEPTED, json!({ "pipeline": name, "action": "queued" })),
        FireAction::Skipped(reason) => {
            (StatusCode::CONFLICT, json!({ "pipeline": name, "action": "skipped", "reason": reason.to_string() }))
        }
        FireAction::AlreadyAccepted(at) => (
            StatusCode::OK,
            json!({
                "pipeline": name,
                "action": "already_accepted",
                "delivery": delivery,
                "accepted_at": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            }),
        ),
        FireAction::Stopping => return refused(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping"),
        FireAction::Unknown => return refused(StatusCode::NOT_FOUND, "no pipeline with a webhook by that name"),
    };
    (status, axum::Json(body)).into_response()
}

/// A request's JSON payload and delivery id, once its body arrived in time, its signature
/// checks out under the secret in `secret_env`, and it is no ping; otherwise the answer it
/// got (a ping is answered `pong`, with `who` naming what it was for).
pub(super) async fn verified_payload(
    headers: &HeaderMap,
    request: Request,
    secret_env: &str,
    body_timeout: Duration,
    route: &str,
    who: Value,
) -> Result<(Value, Option<String>), Response> {
    let refused = |status, why: &str| refuse("POST", route, status, why);
    let body =
        read_body(headers, request.into_body(), body_timeout).await.map_err(|(status, why)| refused(status, &why))?;
    let secret = match std::env::var(secret_env) {
        Ok(s) if !s.is_empty() => s,
        _ => {
            let why = format!("the webhook secret is not configured (set {secret_env} in the daemon's environment)");
            return Err(refused(StatusCode::INTERNAL_SERVER_ERROR, &why));
        }
    };
    let signature = headers.get(SIGNATURE_HEADER).map(|v| v.to_str().unwrap_or(""));
    if let Err(e) = verify_signature(secret.as_bytes(), &body, signature) {
        return Err(refused(StatusCode::UNAUTHORIZED, &e.to_string()));
    }
    let delivery = delivery_id(headers).map_err(|why| refused(StatusCode::BAD_REQUEST, &why))?;
    // GitHub pings a new hook once; answer without doing anything.
    if headers.get("x-github-event").and_then(|v| v.to_str().ok()) == Some("ping") {
        let mut pong = who;
        pong["action"] = json!("pong");
        return Err((StatusCode::OK, axum::Json(pong)).into_response());
    }
    let payload = serde_json::from_slice(&body)
        .map_err(|e| refused(StatusCode::BAD_REQUEST, &format!("the body is not JSON: {e}")))?;
    Ok((payload, delivery))
}

/// Reads a body of at most [`MAX_BODY_BYTES`] within `timeout` (all of it, however it trickles
/// in): a larger declared length is refused before reading anything, a larger streamed one as
/// soon as it passes the limit.
async fn read_body(headers: &HeaderMap, body: Body, timeout: Duration) -> Result<Bytes, (StatusCode, String)> {
    let too_large = || (StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than {MAX_BODY_BYTES} bytes"));
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Err(_) => Err((StatusCode::REQUEST_TIMEOUT, "the body did not arrive in time".into())),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => {
            let inner = e.into_inner();
            if inner.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                Err(too_large())
            } else {
                Err((StatusCode::BAD_REQUEST, format!("cannot read the body: {inner}")))
            }
        }
    }
}

pub(super) fn refuse(method: &str, path: &str, status: StatusCode, why: &str) -> Response {
    super::announce(format_args!("webhook: {method} {path}: {} {why}", status.as_u16()));
    (status, axum::Json(json!({ "error": why }))).into_response()
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::InFlight => f.write_str("a run is in flight"),
            SkipReason::AlreadyQueued => f.write_str("a run is in flight and one is queued"),
            SkipReason::Locked(Some(pid)) => write!(f, "lock held by pid {pid}"),
            SkipReason::Locked(None) => f.write_str("lock held by another process"),
            SkipReason::StartFailed(why) => f.write_str(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn signatures() {
        let body = br#"{"a":1}"#;
        let good = sign("s3cret", body);
        assert_eq!(verify_signature(b"s3cret", body, Some(&good)), Ok(()));
        assert_eq!(verify_signature(b"other", body, Some(&good)), Err(SignatureError::Mismatch));
        assert_eq!(verify_signature(b"s3cret", b"{\"a\":2}", Some(&good)), Err(SignatureError::Mismatch));
        assert_eq!(verify_signature(b"s3cret", body, None), Err(SignatureError::Missing));
        assert_eq!(verify_signature(b"s3cret", body, Some("sha1=abc")), Err(SignatureError::Malformed));
        assert_eq!(verify_signature(b"s3cret", body, Some("sha256=zz")), Err(SignatureError::Malformed));
        assert_eq!(verify_signature(b"s3cret", body, Some("sha256=abcd")), Err(SignatureError::Mismatch));
    }

    #[test]
    fn payload_paths() {
        let payload = json!({ "repository": { "full_name": "acme/widgets" }, "commits": [{ "id": "c1" }], "a/b": 1 });
        let find = |p: &str| PayloadPath::parse(p).unwrap().find(&payload).cloned();
        assert_eq!(find("repository.full_name"), Some(json!("acme/widgets")));
        assert_eq!(find("/repository/full_name"), Some(json!("acme/widgets")));
        assert_eq!(find("commits.0.id"), Some(json!("c1")));
        assert_eq!(find("/a~1b"), Some(json!(1)));
        assert_eq!(find("commits.1.id"), None);
        assert_eq!(find("repository.owner"), None);
        assert!(PayloadPath::parse("").is_err());
        assert!(PayloadPath::parse("a..b").is_err());
    }

    #[test]
    fn inputs_from_a_mapping_or_the_top_level() {
        let payload = json!({ "repository": { "full_name": "acme/widgets" }, "action": "opened" });
        let mapped = WebhookTrigger {
            secret_env: "S".into(),
            inputs: [
                ("repo".to_owned(), PayloadPath::parse("repository.full_name").unwrap()),
                ("missing".to_owned(), PayloadPath::parse("nope").unwrap()),
            ]
            .into_iter()
            .collect(),
        };
        let inputs = payload_inputs(&mapped, &payload).unwrap();
        assert_eq!(inputs.into_iter().collect::<Vec<_>>(), vec![("repo".to_owned(), json!("acme/widgets"))]);
        let bare = WebhookTrigger { secret_env: "S".into(), inputs: IndexMap::new() };
        assert_eq!(payload_inputs(&bare, &payload).unwrap()["action"], "opened");
        assert!(payload_inputs(&bare, &json!([1, 2])).is_err());
    }

    const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused() {
        let big = Body::from(vec![b'x'; MAX_BODY_BYTES + 1]);
        let (status, _) = read_body(&HeaderMap::new(), big, BODY_READ_TIMEOUT).await.unwrap_err();
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        let mut declared = HeaderMap::new();
        declared.insert(axum::http::header::CONTENT_LENGTH, (MAX_BODY_BYTES + 1).to_string().parse().unwrap());
        let (status, _) = read_body(&declared, Body::empty(), BODY_READ_TIMEOUT).await.unwrap_err();
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        let ok = read_body(&HeaderMap::new(), Body::from(vec![b'x'; MAX_BODY_BYTES]), BODY_READ_TIMEOUT).await.unwrap();
        assert_eq!(ok.len(), MAX_BODY_BYTES);
    }

    #[test]
    fn delivery_ids() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(DELIVERY_HEADER, v.parse().unwrap());
            delivery_id(&h)
        };
        assert_eq!(delivery_id(&HeaderMap::new()), Ok(None));
        assert_eq!(
            with("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            Ok(Some("72d3162e-cc78-11e3-81ab-4c9367dc0958".into()))
        );
        assert!(with("").is_err());
        assert!(with("a b").is_err());
        assert!(with(&"x".repeat(LONGEST_DELIVERY_ID + 1)).is_err());
    }
}
