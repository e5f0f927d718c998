//! Harnesses: the one trait every kind of leaf (mock, command, agent CLIs, model APIs)
//! implements, and the set a run chooses from.
//!
//! A harness turns a [`LeafRequest`] into a [`SessionResult`]. It must turn every failure
//! (crash, hang, bad output, HTTP error) into a result, never a panic or an `Err`, and must
//! kill whatever it started when its future is dropped. Schema validation is not its job: the
//! scheduler validates every harness's output the same way.

pub mod command;
pub mod mock;
pub mod process_group;

use crate::scheduler::session::{LeafRequest, SessionResult};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub type LeafFuture = Pin<Box<dyn Future<Output = SessionResult> + Send>>;

pub trait Harness: Send + Sync {
    fn name(&self) -> &'static str;

    /// Called on the scheduler in spawn order. Anything order-sensitive (a mock's sequence
    /// position) must happen here, synchronously; the returned future runs concurrently and
    /// should do nothing until polled.
    fn start(&self, request: LeafRequest) -> LeafFuture;
}

/// The harnesses available to one run, by name.
#[derive(Clone, Default)]
pub struct HarnessSet {
    by_name: BTreeMap<&'static str, Arc<dyn Harness>>,
}

impl HarnessSet {
    pub fn new() -> Self {
        let mut set = HarnessSet::default();
        set.insert(Arc::new(command::CommandHarness));
        set
    }

    pub fn insert(&mut self, harness: Arc<dyn Harness>) {
        self.by_name.insert(harness.name(), harness);
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Harness>> {
        self.by_name.get(name).cloned()
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.by_name.keys().copied().collect()
    }
}

/// The last `max` bytes of a process's output, for error messages.
pub fn tail(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}
