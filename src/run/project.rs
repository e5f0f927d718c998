//! The project a script belongs to: its root (the nearest folder with `coord.toml` or
//! `workflows/`), its library path, and where workflows, demo scenarios and imported modules
//! are found.

use crate::config::Config;
use crate::library::LibraryPath;
use crate::script::module_resolver::ScriptModuleResolver;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct Project {
    pub root: PathBuf,
    /// `COORD_PATH` then `[library] paths` (empty when `coord.toml` does not load: the run
    /// reports that error itself).
    pub library: LibraryPath,
}

impl Project {
    pub fn discover(script: &Path) -> Self {
        let start = script
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")));
        Self::containing(&start)
    }

    /// The project `dir` is in.
    pub fn containing(dir: &Path) -> Self {
        let start = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let root = start
            .ancestors()
            .find(|d| d.join("coord.toml").is_file() || d.join("workflows").is_dir())
            .map(Path::to_path_buf)
            .unwrap_or(start);
        let config = Config::load(&root).unwrap_or_default();
        let library = LibraryPath::from_environment(&config);
        Project { root, library }
    }

    /// The project's `workflows/`, then each library's, in library order.
    pub fn workflow_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.root.join("workflows")];
        dirs.extend(self.library.workflow_dirs());
        dirs
    }

    /// `coordinators/<name>/scenarios/demo.toml` beside `coordinators/<name>.rhai`.
    pub fn demo_scenario(&self, script: &Path) -> PathBuf {
        scenario_dir(script).join("demo.toml")
    }

    /// The resolver for `script`'s imports; the script's source name is its path as given.
    pub fn module_resolver(&self, script: &Path) -> ScriptModuleResolver {
        let base = script.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        ScriptModuleResolver::new(self.library.clone(), base.to_path_buf(), script.display().to_string())
    }
}

/// Where a coordinator's scenarios live.
pub fn scenario_dir(script: &Path) -> PathBuf {
    let stem = script.file_stem().unwrap_or_default();
    script.parent().unwrap_or(Path::new(".")).join(stem).join("scenarios")
}
