//! Signal webhooks: `POST /signals/<hook>` on the daemon's `--listen` address turns a signed
//! payload (a GitHub comment `/approve`, a Slack interaction relayed as JSON) into a signal
//! delivered to the runs waiting for it, as `coord signal` would deliver it.
//!
//! Which runs: those the run store's wait index lists as waiting for the hook's signal (live,
//! interrupted or parked; a parked one is then woken by the dispatcher), and, when the hook
//! names a `key`, only those whose `wait_signal(.., #{ key })` equals the payload's key. A
//! redelivery (the same `X-GitHub-Delivery`) reaches no run twice: each run's signal box
//! remembers the delivery ids it took. It must not journal or resume runs.

use super::pipeline::SignalHook;
use super::webhook::{refuse, verified_payload, PayloadPath};
use crate::config::file_diagnostic::FileDiagnostic;
use crate::config::pipeline::SignalHookSection;
use crate::journal::signal_box;
use crate::journal::wait_index;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// Validates a `[[signal_hook]]` section, with diagnostics pointing into `coord.toml`.
pub fn validate(
    section: &SignalHookSection,
    at: &impl Fn(std::ops::Range<usize>, String, Option<&str>) -> FileDiagnostic,
) -> Result<SignalHook, FileDiagnostic> {
    let name = section.name.get_ref().clone();
    if !super::lock::valid_name(&name) {
        let help = "use letters, digits, `-`, `_` and `.` (not first): the name is a URL segment";
        return Err(at(section.name.span(), format!("`{name}` cannot name a signal hook"), Some(help)));
    }
    let secret_env = section.secret_env.get_ref().trim().to_owned();
    if secret_env.is_empty() {
        let help = "name the variable that holds the webhook secret, e.g. secret_env = \"GITHUB_WEBHOOK_SECRET\"";
        return Err(at(section.secret_env.span(), "`secret_env` names no environment variable".into(), Some(help)));
    }
    let signal = section.signal.get_ref().clone();
    if !signal_box::valid_name(&signal) {
        let help = "1 to 64 letters, digits, `_`, `-` or `.`, as the script's wait_signal names it";
        return Err(at(section.signal.span(), format!("`{signal}` is not a signal name"), Some(help)));
    }
    let path = |p: &toml::Spanned<String>, what: &str| {
        PayloadPath::parse(p.get_ref()).map_err(|reason| {
            at(
                p.span(),
                format!("{what}: {reason}"),
                Some("a JSON pointer (`/issue/number`) or a dotted path (`issue.number`)"),
            )
        })
    };
    let key = section.key.as_ref().map(|k| path(k, "key")).transpose()?;
    let data = section.data.as_ref().map(|d| path(d, "data")).transpose()?;
    let mut matches = Vec::new();
    for (at_path, prefix) in &section.matches {
        let parsed = PayloadPath::parse(at_path).map_err(|reason| {
            at(prefix.span(), format!("match `{at_path}`: {reason}"), Some("a JSON pointer or a dotted path"))
        })?;
        matches.push((at_path.clone(), parsed, prefix.get_ref().clone()));
    }
    Ok(SignalHook { name, secret_env, signal, key, matches, data })
}

/// What a hook makes of a payload: why it is ignored, or the key and data to deliver.
#[derive(Debug, PartialEq)]
enum Reading {
    Ignored(String),
    Deliver { key: Option<String>, data: Value },
}

fn read_payload(hook: &SignalHook, payload: &Value) -> Reading {
    for (text, path, prefix) in &hook.matches {
        match path.find(payload) {
            Some(Value::String(s)) if s.trim_start().starts_with(prefix.as_str()) => {}
            _ => return Reading::Ignored(format!("`{text}` does not start with `{prefix}`")),
        }
    }
    let key = match &hook.key {
        None => None,
        Some(path) => match path.find(payload) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => return Reading::Ignored("the payload has no key where the hook's `key` points".into()),
        },
    };
    let data = match &hook.data {
        None => payload.clone(),
        Some(path) => path.find(payload).cloned().unwrap_or(Value::Null),
    };
    Reading::Deliver { key, data }
}

#[derive(Clone)]
pub(super) struct SignalHookState {
    pub hooks: tokio::sync::watch::Receiver<std::sync::Arc<super::pipeline::PipelineSet>>,
    pub runs_root: std::path::PathBuf,
    pub body_timeout: std::time::Duration,
}

/// `POST /signals/<hook>`.
pub(super) async fn handle(
    State(state): State<SignalHookState>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let route = format!("/signals/{name}");
    let hook = state.hooks.borrow().signal_hook(&name).cloned();
    let Some(hook) = hook else {
        return refuse("POST", &route, StatusCode::NOT_FOUND, "no signal hook by that name");
    };
    let who = json!({ "signal_hook": name });
    let (payload, delivery) =
        match verified_payload(&headers, request, &hook.secret_env, state.body_timeout, &route, who).await {
            Ok(verified) => verified,
            Err(answered) => return answered,
        };
    let (key, data) = match read_payload(&hook, &payload) {
        Reading::Ignored(why) => {
            super::announce(format_args!("signal hook {name}: ignored: {why}"));
            return (StatusCode::OK, axum::Json(json!({ "signal_hook": name, "action": "ignored", "why": why })))
                .into_response();
        }
        Reading::Deliver { key, data } => (key, data),
    };
    let root = state.runs_root.clone();
    let signal = hook.signal.clone();
    let once = delivery.clone();
    let delivered = tokio::task::spawn_blocking(move || deliver(&root, &signal, key.as_deref(), data, once.as_deref()))
        .await
        .unwrap_or_default();
    for run in &delivered {
        super::announce(format_args!("signal hook {name}: delivered `{}` to run {run}", hook.signal));
    }
    let status = if delivered.is_empty() { StatusCode::OK } else { StatusCode::ACCEPTED };
    let body = json!({ "signal_hook": name, "signal": hook.signal, "delivered_to": delivered, "delivery": delivery });
    (status, axum::Json(body)).into_response()
}

/// Delivers `data` as `signal` to every run the wait index lists as waiting for it (with `key`,
/// when given); a run that took delivery `once` before is skipped. Returns the runs reached.
fn deliver(
    runs_root: &std::path::Path,
    signal: &str,
    key: Option<&str>,
    data: Value,
    once: Option<&str>,
) -> Vec<String> {
    let mut reached = Vec::new();
    for waiting in wait_index::list(runs_root) {
        if waiting.signal.as_deref() != Some(signal) || key.is_some_and(|k| waiting.key.as_deref() != Some(k)) {
            continue;
        }
        let run_dir = runs_root.join(&waiting.run_id);
        match signal_box::deliver_once(&run_dir, signal, data.clone(), once) {
            Ok(Some(_)) => {
                // A parked run is then due: the daemon wakes it.
                let _ = wait_index::mark_delivered(runs_root, &waiting.run_id, signal);
                reached.push(waiting.run_id);
            }
            Ok(None) => {}
            Err(e) => super::announce(format_args!("run {}: cannot deliver `{signal}`: {e}", waiting.run_id)),
        }
    }
    reached
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(key: Option<&str>, matches: &[(&str, &str)], data: Option<&str>) -> SignalHook {
        SignalHook {
            name: "approve".into(),
            secret_env: "S".into(),
            signal: "agreement".into(),
            key: key.map(|k| PayloadPath::parse(k).unwrap()),
            matches: matches
                .iter()
                .map(|(p, m)| (p.to_string(), PayloadPath::parse(p).unwrap(), m.to_string()))
                .collect(),
            data: data.map(|d| PayloadPath::parse(d).unwrap()),
        }
    }

    #[test]
    fn a_comment_is_read_for_its_key_and_data_or_ignored() {
        let comment = json!({ "issue": { "number": 7 }, "comment": { "body": "  /approve looks good", "user": { "login": "ana" } } });
        let approve = hook(Some("issue.number"), &[("comment.body", "/approve")], Some("comment.user"));
        assert_eq!(
            read_payload(&approve, &comment),
            Reading::Deliver { key: Some("7".into()), data: json!({ "login": "ana" }) }
        );
        let other = json!({ "issue": { "number": 7 }, "comment": { "body": "lgtm" } });
        assert!(matches!(read_payload(&approve, &other), Reading::Ignored(why) if why.contains("comment.body")));
        let keyless = json!({ "comment": { "body": "/approve" } });
        assert!(matches!(read_payload(&approve, &keyless), Reading::Ignored(_)));
        assert_eq!(
            read_payload(&hook(None, &[], None), &keyless),
            Reading::Deliver { key: None, data: keyless.clone() }
        );
    }

    #[test]
    fn deliveries_reach_the_runs_waiting_with_the_key_once_each() {
        let root = tempfile::tempdir().unwrap();
        let wait = |run: &str, signal: &str, key: Option<&str>| {
            std::fs::create_dir_all(root.path().join(run)).unwrap();
            let entry = wait_index::WaitEntry {
                run_id: run.into(),
                signal: Some(signal.into()),
                key: key.map(str::to_owned),
                ..Default::default()
            };
            wait_index::record(root.path(), &entry).unwrap();
        };
        wait("r1", "agreement", Some("7"));
        wait("r2", "agreement", Some("8"));
        wait("r3", "other", Some("7"));
        wait("r4", "agreement", None);
        assert_eq!(deliver(root.path(), "agreement", Some("7"), json!(1), Some("d1")), ["r1"]);
        assert_eq!(deliver(root.path(), "agreement", Some("7"), json!(1), Some("d1")), Vec::<String>::new());
        assert_eq!(deliver(root.path(), "agreement", None, json!(2), Some("d2")), ["r1", "r2", "r4"]);
        assert_eq!(signal_box::pending(&root.path().join("r1"), "agreement").unwrap().len(), 2);
        assert!(signal_box::pending(&root.path().join("r3"), "other").unwrap().is_empty());
    }
}
