//! Stand-ins for the model APIs the released agent CLIs call, on 127.0.0.1: the Anthropic
//! Messages API (Claude Code), the OpenAI Responses API (Codex) and the Gemini API (Gemini
//! CLI). Each speaks its provider's real wire format (SSE streams included), enforces the
//! provider's documented rules on what it is sent, answers as a scripted model would, injects
//! faults on request, and records what it received and what usage it reported, so a test can
//! compare coord's figures with what the "provider" sent.
//!
//! The shared vocabulary lives here; each provider's format lives in its own file.
#![allow(dead_code)]

pub mod anthropic;
pub mod gemini;
pub mod kubernetes;
pub mod openai_responses;

use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The API key every stand-in accepts; any other key is answered as the provider answers a
/// rejected key (401).
pub const GOOD_KEY: &str = "sk-standin-GOODKEY-0123456789";

/// One fault injected instead of a normal answer: each model request takes the next fault in
/// the queue until it is empty.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// The provider's error answer for this HTTP status (429, 500, 503, 529, 401, 400 ...),
    /// with `retry-after` seconds when set.
    Status { code: u16, retry_after: Option<u64> },
    /// A normal answer, sent after this delay.
    Slow(Duration),
    /// A 200 whose event stream is cut off part-way and holds a line that is not JSON.
    Malformed,
}

/// What the scripted model answers to one leaf's prompt.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// The structured answer (the JSON the workflow's schema describes).
    Json(Value),
    /// First an answer that breaks the workflow's schema in a way the CLI itself does not
    /// catch, so coord's repair turn is needed; the repair gets the `Value`.
    InvalidThen(Value),
    /// First create the file `path` with `contents` through the CLI's own file-writing tool
    /// (a coding leaf), then answer with the `Value`.
    WriteFileThen { path: String, contents: String, answer: Value },
    /// Never answer (the leaf times out).
    Hang,
}

/// Decides the answer from the leaf's prompt text (the first user message).
pub type Answerer = Arc<dyn Fn(&str) -> Answer + Send + Sync>;

/// The usage each model response reports. The stand-in adds every figure it sent to
/// [`Recorder::usage_sent`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct UsageSent {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Cached input tokens (Anthropic `cache_read_input_tokens`, OpenAI
    /// `input_tokens_details.cached_tokens`, Gemini `cachedContentTokenCount`).
    pub cache_read_tokens: u64,
}

impl UsageSent {
    pub fn add(&mut self, other: UsageSent) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cache_read_tokens += other.cache_read_tokens;
    }
}

/// One request the stand-in received.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub body: Value,
}

/// What every stand-in shares: how the model behaves, the fault queue, and the record.
#[derive(Clone)]
pub struct Behaviour {
    pub answerer: Answerer,
    pub faults: Arc<Mutex<VecDeque<Fault>>>,
    /// Reported for every model response (the same figures each time).
    pub usage: UsageSent,
    pub recorder: Recorder,
}

impl Behaviour {
    pub fn new(answerer: Answerer) -> Self {
        Behaviour {
            answerer,
            faults: Arc::default(),
            usage: UsageSent { input_tokens: 1200, output_tokens: 80, cache_read_tokens: 300 },
            recorder: Recorder::default(),
        }
    }

    /// A model that always gives `answer`.
    pub fn always(answer: Value) -> Self {
        Behaviour::new(Arc::new(move |_| Answer::Json(answer.clone())))
    }

    pub fn with_faults(self, faults: impl IntoIterator<Item = Fault>) -> Self {
        self.faults.lock().unwrap().extend(faults);
        self
    }

    pub fn next_fault(&self) -> Option<Fault> {
        self.faults.lock().unwrap().pop_front()
    }
}

#[derive(Clone, Default)]
pub struct Recorder {
    received: Arc<Mutex<Vec<Received>>>,
    usage_sent: Arc<Mutex<UsageSent>>,
    /// Model responses sent (excluding faults).
    answers: Arc<Mutex<u64>>,
}

impl Recorder {
    pub fn record(&self, r: Received) {
        self.received.lock().unwrap().push(r);
    }
    pub fn sent(&self, usage: UsageSent) {
        self.usage_sent.lock().unwrap().add(usage);
        *self.answers.lock().unwrap() += 1;
    }
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
    pub fn usage_sent(&self) -> UsageSent {
        *self.usage_sent.lock().unwrap()
    }
    pub fn answers(&self) -> u64 {
        *self.answers.lock().unwrap()
    }
}
