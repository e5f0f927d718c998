//! coord's integration tests, in one test binary (as just's `tests/lib.rs`): each module was
//! its own binary before, and each linked the whole crate. Run one module with
//! `cargo test --test integration MODULE::` (for example `cargo test --test integration views::`).
//!
//! Every test goes through the real `coord` binary or the library's public API; `support` holds
//! the shared project and command helpers, `standins` the model API stand-ins, `github` the
//! live world against fakes on 127.0.0.1.

mod standins;
mod support;

mod check;
mod cli_run;
mod closed_pipes;
mod coord_test;
mod coordinators;
mod daemon;
mod github;
mod harnesses;
mod init;
mod kubernetes;
mod layering;
mod leaf_processes;
mod library;
mod memory_limits;
mod ray;
mod real_agents;
mod regression_test_leaf;
mod replay_resume;
mod routing;
mod secrets;
mod serve;
mod standin_claude;
mod standin_codex;
mod standin_gemini;
mod state;
mod timeline;
mod views;
mod waits;
mod webhook_flood;
