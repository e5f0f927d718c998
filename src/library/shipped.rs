//! The coordinators and workflows this repository ships, compiled into the binary so
//! `coord init` can scaffold them into another repository with no checkout of coord around.
//!
//! Each coordinator comes with its demo scenario and that scenario's snapshot, so a scaffolded
//! project passes `coord test` at once. This module only holds the texts: it must not decide
//! which of them a project needs (that is `scaffold`'s job, from `coord check`'s analysis).

/// One shipped coordinator: `coordinators/<name>.rhai`, its demo scenario and snapshot.
#[derive(Debug)]
pub struct ShippedCoordinator {
    pub name: &'static str,
    pub source: &'static str,
    /// `coordinators/<name>/scenarios/demo.toml`.
    pub demo_scenario: &'static str,
    /// `snapshots/<name>__demo.snap`.
    pub demo_snapshot: &'static str,
}

impl ShippedCoordinator {
    /// The first line of its header comment, without the `// <name>: ` prefix.
    pub fn summary(&self) -> &'static str {
        let first = self.source.lines().next().unwrap_or_default();
        let text = first.trim_start_matches('/').trim();
        text.split_once(": ").map_or(text, |(_, rest)| rest)
    }
}

/// One shipped workflow: `workflows/<name>.toml` and, when its schema is a file, that file:
/// `workflows/<schema_name>.schema.json` (its own name, unless workflows share one schema).
#[derive(Debug)]
pub struct ShippedWorkflow {
    pub name: &'static str,
    pub toml: &'static str,
    pub schema: Option<&'static str>,
    pub schema_name: &'static str,
}

macro_rules! coordinator {
    ($name:literal) => {
        ShippedCoordinator {
            name: $name,
            source: include_str!(concat!("../../coordinators/", $name, ".rhai")),
            demo_scenario: include_str!(concat!("../../coordinators/", $name, "/scenarios/demo.toml")),
            demo_snapshot: include_str!(concat!("../../snapshots/", $name, "__demo.snap")),
        }
    };
}

macro_rules! workflow {
    ($name:literal) => {
        workflow!($name, schema = $name)
    };
    ($name:literal, schema = $schema:literal) => {
        ShippedWorkflow {
            name: $name,
            toml: include_str!(concat!("../../workflows/", $name, ".toml")),
            schema: Some(include_str!(concat!("../../workflows/", $schema, ".schema.json"))),
            schema_name: $schema,
        }
    };
    ($name:literal, inline_schema) => {
        ShippedWorkflow {
            name: $name,
            toml: include_str!(concat!("../../workflows/", $name, ".toml")),
            schema: None,
            schema_name: $name,
        }
    };
}

/// Sorted by name.
pub static COORDINATORS: &[ShippedCoordinator] = &[
    coordinator!("fix-bug"),
    coordinator!("gated-jobs"),
    coordinator!("groom-backlog"),
    coordinator!("groom-prs"),
    coordinator!("implement-feature"),
    coordinator!("pm-loop"),
    coordinator!("spec-to-merge"),
    coordinator!("triage-incident"),
];

/// Sorted by name.
pub static WORKFLOWS: &[ShippedWorkflow] = &[
    workflow!("apply-mitigation"),
    workflow!("architecture-design"),
    workflow!("architecture-review"),
    workflow!("bug-fix"),
    workflow!("bug-investigation"),
    workflow!("classify", inline_schema),
    workflow!("classify-issue"),
    workflow!("coding-task"),
    workflow!("discovery"),
    workflow!("feature-coding"),
    workflow!("find-duplicates"),
    workflow!("incident-followup"),
    workflow!("incident-investigation"),
    workflow!("mr-review"),
    workflow!("pm-decision"),
    workflow!("pm-document", schema = "pm-job"),
    workflow!("pm-implement", schema = "pm-job"),
    workflow!("pm-plan", schema = "pm-job"),
    workflow!("pm-review", schema = "pm-job"),
    workflow!("pm-uat", schema = "pm-job"),
    workflow!("production-risk-audit"),
    workflow!("regression-test"),
    workflow!("spec-architect"),
    workflow!("spec-manager"),
    workflow!("ticket-coding"),
    workflow!("triage-alert"),
    workflow!("ux-design"),
    workflow!("workshop-job"),
    workflow!("workshop-verify"),
];

/// A program a shipped `command` workflow runs, by its path in the repository (the path the
/// workflow's `command` names).
#[derive(Debug)]
pub struct ShippedScript {
    pub path: &'static str,
    pub source: &'static str,
}

pub static SCRIPTS: &[ShippedScript] =
    &[ShippedScript { path: "scripts/regression-test", source: include_str!("../../scripts/regression-test") }];

/// The shipped program at `path`, if one is.
pub fn script(path: &str) -> Option<&'static ShippedScript> {
    SCRIPTS.iter().find(|s| s.path == path)
}

/// The coordinator `coord init` scaffolds when none is named.
pub const DEFAULT_COORDINATOR: &str = "groom-prs";

pub fn coordinator(name: &str) -> Option<&'static ShippedCoordinator> {
    COORDINATORS.iter().find(|c| c.name == name)
}

pub fn workflow(name: &str) -> Option<&'static ShippedWorkflow> {
    WORKFLOWS.iter().find(|w| w.name == name)
}

pub fn coordinator_names() -> Vec<&'static str> {
    COORDINATORS.iter().map(|c| c.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn stems(dir: &str, suffix: &str) -> Vec<String> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().strip_suffix(suffix).map(str::to_owned))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn every_shipped_coordinator_is_in_the_table_sorted() {
        assert_eq!(coordinator_names(), stems("coordinators", ".rhai"), "every coordinators/*.rhai is embedded");
        assert!(coordinator(DEFAULT_COORDINATOR).is_some());
        assert_eq!(
            coordinator("groom-prs").unwrap().summary(),
            "review every open PR in parallel and route on the verdicts."
        );
    }

    #[test]
    fn every_shipped_workflow_and_schema_is_in_the_table_sorted() {
        let names: Vec<&str> = WORKFLOWS.iter().map(|w| w.name).collect();
        assert_eq!(names, stems("workflows", ".toml"), "every workflows/*.toml is embedded");
        let mut schemas: Vec<&str> = WORKFLOWS.iter().filter(|w| w.schema.is_some()).map(|w| w.schema_name).collect();
        schemas.dedup();
        assert_eq!(schemas, stems("workflows", ".schema.json"), "every workflows/*.schema.json is embedded");
    }
}
