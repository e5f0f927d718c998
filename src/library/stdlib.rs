//! The built-in standard library: the Rhai modules in the repository's `stdlib/` folder,
//! compiled into the binary so `import "stdlib/<name>"` works with no files around.
//!
//! A library folder with `stdlib/<name>.rhai` overrides the built-in of that name. This module
//! only holds the texts; it must not compile them.

/// One built-in module.
#[derive(Debug, PartialEq, Eq)]
pub struct BuiltinModule {
    /// The name after `stdlib/`.
    pub name: &'static str,
    /// One line on what it is for, for `coord lib list`.
    pub summary: &'static str,
    pub source: &'static str,
}

impl BuiltinModule {
    pub fn import_path(&self) -> String {
        format!("stdlib/{}", self.name)
    }

    /// The name its code goes by in diagnostics and call sites.
    pub fn source_name(&self) -> String {
        format!("{BUILTIN_PREFIX}stdlib/{}.rhai", self.name)
    }
}

/// Source names of built-in modules start with this.
pub const BUILTIN_PREFIX: &str = "builtin:";

/// Sorted by name.
pub static BUILTIN: &[BuiltinModule] = &[
    BuiltinModule {
        name: "dag",
        summary: "dependency layers (parallel groups) and the critical path of a job graph",
        source: include_str!("../../stdlib/dag.rhai"),
    },
    BuiltinModule {
        name: "fanout",
        summary: "one leaf per item, awaited together, results zipped back to their items",
        source: include_str!("../../stdlib/fanout.rhai"),
    },
    BuiltinModule {
        name: "gates",
        summary: "TheWorkshop's gates: agreement, dependency freshness, verification, reward",
        source: include_str!("../../stdlib/gates.rhai"),
    },
    BuiltinModule {
        name: "github",
        summary: "labels, staleness, escalation comments and lookups on GitHub items",
        source: include_str!("../../stdlib/github.rhai"),
    },
    BuiltinModule {
        name: "review",
        summary: "review verdict routing and the bounded fix -> re-review loop",
        source: include_str!("../../stdlib/review.rhai"),
    },
    BuiltinModule {
        name: "text",
        summary: "message templating: placeholders, lists, plurals, digests",
        source: include_str!("../../stdlib/text.rhai"),
    },
];

pub fn get(name: &str) -> Option<&'static BuiltinModule> {
    BUILTIN.iter().find(|m| m.name == name)
}

pub fn names() -> Vec<&'static str> {
    BUILTIN.iter().map(|m| m.name).collect()
}

/// `stdlib/review` -> `review`; `None` for other imports.
pub fn module_name(import: &str) -> Option<&str> {
    let rest = import.strip_prefix("stdlib/")?;
    let rest = rest.strip_suffix(".rhai").unwrap_or(rest);
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

/// The built-in module whose source name is `source_name`.
pub fn by_source_name(source_name: &str) -> Option<&'static BuiltinModule> {
    BUILTIN.iter().find(|m| m.source_name() == source_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sorted_and_match_the_files() {
        let names = names();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("stdlib");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().strip_suffix(".rhai").map(str::to_owned))
            .collect();
        on_disk.sort();
        assert_eq!(on_disk, names, "every stdlib/*.rhai file is built in, and nothing else");
        assert_eq!(module_name("stdlib/review"), Some("review"));
        assert_eq!(module_name("team/review"), None);
        assert_eq!(by_source_name("builtin:stdlib/text.rhai").map(|m| m.name), Some("text"));
    }
}
