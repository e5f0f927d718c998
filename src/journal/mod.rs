//! The run journal: an append-only JSONL record of every host call, session completion and
//! effect of a run, plus the content-addressed blob store beside it.
//!
//! Owns the on-disk format (see `docs/journal.md`), writing it cheaply and crash-safely, and
//! reading it back (tolerating a torn last line). It must not interpret routing: what a call
//! *means* belongs to the host API; the journal only records and returns.

pub mod answer_index;
pub mod blob_store;
pub mod call_key;
pub mod entry;
pub mod reader;
pub mod recorded_options;
pub mod run_dir;
pub mod run_mode;
pub mod signal_box;
pub mod wait_index;
pub mod writer;

pub use answer_index::{AnswerIndex, ParseAhead, RecordedSession};
pub use call_key::CallKey;
pub use entry::{Entry, EntryKind, Line, RunStatus, JOURNAL_VERSION};
pub use reader::{JournalError, RecordedRun};
pub use recorded_options::RecordedOptions;
pub use run_mode::RunMode;
pub use writer::JournalWriter;
