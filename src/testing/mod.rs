//! `coord test`: runs each scenario beside a coordinator, compares its routing trace with the
//! snapshot next to it and checks the scenario's `[expect]` block.
//!
//! Owns finding the scenario cases, running them through [`crate::run`], and the snapshot files
//! (`snapshot.rs`). It must not decide routing, and it writes only snapshots it was asked to
//! accept.

pub mod snapshot;
pub mod snapshot_review;
pub mod suite;
