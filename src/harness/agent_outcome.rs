//! How every agent CLI harness reports a process that gave no answer: a binary that did not
//! start (a configuration failure with its fix), a timeout, a stream that ended without its
//! final event (a transient failure: a crash before any answer is worth another try).
//!
//! Owns only these shared endings; each harness reads its own stream's answer and errors.

use super::agent_process::{AgentOutput, ProcessEnd};
use super::profile::HarnessProfile;
use super::readable;
use crate::leaf::session::{FailureClass, LeafRequest, SessionResult, SessionStatus};

/// The result of a leaf whose agent ended without its final event. `missing` says what was
/// missing ("claude's stream ended without a result event").
pub fn no_answer(
    profile: &HarnessProfile,
    req: &LeafRequest,
    out: &AgentOutput,
    default_binary: &str,
    missing: &str,
    detail: Option<String>,
) -> SessionResult {
    let (id, wf) = (&req.session_id, &req.workflow.name);
    match &out.end {
        ProcessEnd::TimedOut => timed_out(req),
        ProcessEnd::NotStarted(e) => not_started(profile, req, default_binary, e),
        _ => {
            let detail = detail.unwrap_or_else(|| readable(&String::from_utf8_lossy(&out.stderr), 400));
            let detail = if detail.is_empty() { String::new() } else { format!(": {detail}") };
            SessionResult::failed_as(
                id,
                wf,
                FailureClass::Transient,
                format!("{missing} ({}){detail}", out.describe_end()),
                None,
            )
        }
    }
}

pub fn timed_out(req: &LeafRequest) -> SessionResult {
    SessionResult::failed(
        &req.session_id,
        &req.workflow.name,
        SessionStatus::Timeout,
        format!("timed out after {}; process tree killed", humantime::format_duration(req.timeout)),
    )
}

/// The agent's binary could not be started: the set-up is wrong, and the error says how to
/// fix it.
pub fn not_started(profile: &HarnessProfile, req: &LeafRequest, default_binary: &str, error: &str) -> SessionResult {
    SessionResult::failed_as(
        &req.session_id,
        &req.workflow.name,
        FailureClass::Configuration,
        format!("the {} harness {error}. Fix: {}", profile.name, profile.install_hint(default_binary)),
        None,
    )
}
