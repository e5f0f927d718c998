//! Views: everything a person or a program reads about a run, derived from run outcomes and
//! journals only. Views must be deterministic where tests read them (no timestamps, run ids or
//! durations in traces or effect lists) and must never act.

pub mod effect_view;
pub mod run_summary;
pub mod trace;
pub mod what_if;
