//! The script engine and host API: a sandboxed Rhai engine with limits, the [`host::Host`]
//! that answers every host call (live, or from a journal), and the diagnostics that point at
//! the script when it is at fault.
//!
//! The script is pure routing: it reaches nothing (files, network, processes, clock) except
//! through host calls, and every host call is journaled. Nothing here spends tokens.

pub mod coverage;
pub mod diagnostic;
pub mod engine;
pub mod heap_budget;
pub mod heap_meter;
pub mod host;
pub mod host_api;
pub mod input_decls;
pub mod json_value;
pub mod module_resolver;
pub mod option_keys;
pub mod record;
pub mod recorded_calls;

pub use diagnostic::ScriptDiagnostic;
pub use engine::{EngineLimits, ScriptEngine};
pub use host::Host;
