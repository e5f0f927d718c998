//! What a leaf is, as every layer above sees it: the request a leaf is started with, the one
//! result record every leaf yields (`session.rs`), and the git worktree a coding leaf works in
//! (`worktree.rs`).
//!
//! Shared vocabulary of the harnesses, the scheduler, the journal and the views. It must not
//! start leaves, schedule or journal anything; `worktree.rs` only creates and removes worktrees
//! with git when the scheduler asks.

pub mod session;
pub mod worktree;
