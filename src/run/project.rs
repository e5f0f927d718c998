//! The project a script belongs to: its root (the nearest folder with `coord.toml` or
//! `workflows/`), where workflows, demo scenarios and imported modules are found.

use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct Project {
    pub root: PathBuf,
}

impl Project {
    pub fn discover(script: &Path) -> Self {
        let start = script
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")));
        let root = start
            .ancestors()
            .find(|d| d.join("coord.toml").is_file() || d.join("workflows").is_dir())
            .map(Path::to_path_buf)
            .unwrap_or(start);
        Project { root }
    }

    pub fn workflow_dirs(&self) -> Vec<PathBuf> {
        vec![self.root.join("workflows")]
    }

    /// `coordinators/<name>/scenarios/demo.toml` beside `coordinators/<name>.rhai`.
    pub fn demo_scenario(&self, script: &Path) -> PathBuf {
        scenario_dir(script).join("demo.toml")
    }

    pub fn module_resolver(&self, script: &Path) -> rhai::module_resolvers::FileModuleResolver {
        let base = script.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        rhai::module_resolvers::FileModuleResolver::new_with_path(base)
    }
}

/// Where a coordinator's scenarios live.
pub fn scenario_dir(script: &Path) -> PathBuf {
    let stem = script.file_stem().unwrap_or_default();
    script.parent().unwrap_or(Path::new(".")).join(stem).join("scenarios")
}
