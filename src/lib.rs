//! coord: coordinators as scripts. Rhai routing over journaled, scheduled leaf agent sessions.
//!
//! The crate is laid out in the order data flows; `docs/ARCHITECTURE.md` walks it.

pub mod check;
pub mod cli;
pub mod compact_json;
pub mod config;
pub mod daemon;
pub mod effects;
pub mod executor;
pub mod harness;
pub mod journal;
pub mod leaf;
pub mod library;
pub mod redaction;
pub mod run;
pub mod scaffold;
pub mod scenario;
pub mod scheduler;
pub mod script;
pub mod testing;
pub mod views;
pub mod workflow;
