//! Views: everything a person or a program reads about a run, derived from run outcomes and
//! journals only. Views must be deterministic where tests read them (no timestamps, run ids or
//! durations in traces or effect lists), must never act, and must show no secret: a journal is
//! masked when written (`crate::redaction`), and every view of a recorded run is masked again
//! with the secrets of the environment it is shown in (`run_graph::mask_recorded_run`).

pub mod console;
pub mod cost_chart;
pub mod dag_svg;
pub mod dashboard;
pub mod doctor_report;
pub mod effect_view;
pub mod graph_export;
pub mod html_report;
pub mod item_outcomes;
pub mod live_progress;
pub mod provenance;
pub mod run_graph;
pub mod run_history;
pub mod run_listing;
pub mod run_summary;
pub mod run_tree;
pub mod schedule_table;
pub mod session_view;
pub mod spend;
pub mod stderr_batch;
pub mod test_report;
pub mod timeline;
pub mod trace;
pub mod units;
pub mod what_if;
