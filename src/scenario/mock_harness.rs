//! The mock harness: answers leaves from a scenario's canned responses, instantly or after a
//! scripted delay. Costs nothing and never leaves the process.

use super::MockResponder;
use crate::harness::{Harness, LeafFuture};
use crate::leaf::session::{LeafRequest, SessionResult, SessionStatus};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct MockHarness {
    responder: Arc<Mutex<MockResponder>>,
}

impl MockHarness {
    pub fn new(responder: MockResponder) -> Self {
        MockHarness { responder: Arc::new(Mutex::new(responder)) }
    }
}

impl Harness for MockHarness {
    fn name(&self) -> &str {
        "mock"
    }

    fn answers_in_process(&self) -> bool {
        true
    }

    fn replayed(&self, workflow: &str, goal: &str, inputs: &serde_json::Value) {
        // The recorded run had this answer: advance the matched rule's sequence past it.
        let _ = self.responder.lock().expect("mock responder poisoned").respond(workflow, goal, inputs);
    }

    fn start(&self, req: LeafRequest) -> LeafFuture {
        // Matching happens here, in spawn order, so sequences are deterministic.
        let response =
            self.responder.lock().expect("mock responder poisoned").respond(&req.workflow.name, &req.goal, &req.inputs);
        let id = req.session_id.clone();
        let workflow = req.workflow.name.clone();
        let timeout = req.timeout;
        Box::pin(async move {
            let Some(resp) = response else {
                return SessionResult::failed(
                    &id,
                    &workflow,
                    SessionStatus::Failed,
                    format!("the scenario has no response for workflow `{workflow}` with inputs {}", req.inputs),
                );
            };
            if resp.delay_ms > 0 {
                let delay = Duration::from_millis(resp.delay_ms);
                if delay > timeout {
                    tokio::time::sleep(timeout).await;
                    return SessionResult::failed(
                        &id,
                        &workflow,
                        SessionStatus::Timeout,
                        format!("timed out after {}", humantime::format_duration(timeout)),
                    );
                }
                tokio::time::sleep(delay).await;
            }
            let mut result = SessionResult::new(&id, &workflow, resp.status);
            result.text =
                resp.text.unwrap_or_else(
                    || {
                        if resp.output.is_null() {
                            String::new()
                        } else {
                            resp.output.to_string()
                        }
                    },
                );
            result.output = resp.output;
            result.usage = resp.usage;
            result.error = resp.error.or_else(|| match resp.status {
                SessionStatus::Ok => None,
                SessionStatus::Timeout => Some(format!("timed out after {}", humantime::format_duration(timeout))),
                other => Some(format!("leaf ended with status {}", other.as_str())),
            });
            result
        })
    }
}
