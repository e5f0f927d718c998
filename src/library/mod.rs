//! The coordinator library: where an `import` finds its module and which workflow folders a
//! project sees beyond its own.
//!
//! A library is a folder (typically a shared git checkout) holding Rhai modules and, optionally,
//! a `workflows/` folder. The library path is `COORD_PATH` (colon-separated, left to right) then
//! `[library] paths` in `coord.toml` (in order, relative to that file). The built-in standard
//! library ([`stdlib`]) comes last, and only for `stdlib/<name>` imports.
//!
//! Import resolution, first match wins:
//! - `./x`, `../x`: next to the importing file, nowhere else;
//! - `stdlib/<name>`: each library folder's `stdlib/<name>.rhai`, then the built-in;
//! - anything else (`team/review`, `lib/route`): next to the importing file, then each library
//!   folder;
//! - an absolute path: that file.
//!
//! This module only finds files; it must not compile or evaluate them (the script layer does).

pub mod shipped;
pub mod stdlib;

use crate::config::Config;
use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

/// The environment variable naming library folders, colon-separated.
pub const COORD_PATH: &str = "COORD_PATH";

/// Where a library folder on the path came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LibraryOrigin {
    /// The `COORD_PATH` environment variable.
    Env,
    /// `[library] paths` in `coord.toml`.
    Config,
}

impl LibraryOrigin {
    pub fn describe(self) -> &'static str {
        match self {
            LibraryOrigin::Env => "COORD_PATH",
            LibraryOrigin::Config => "coord.toml [library] paths",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LibraryDir {
    pub path: PathBuf,
    pub origin: LibraryOrigin,
}

/// The ordered library folders of a project.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LibraryPath {
    pub dirs: Vec<LibraryDir>,
}

/// Where an import resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModuleLocation {
    File(PathBuf),
    Builtin(&'static stdlib::BuiltinModule),
}

impl ModuleLocation {
    /// The name the module's code goes by in diagnostics and call sites: a file path (relative
    /// to the current directory when under it), or `builtin:stdlib/<name>.rhai`.
    pub fn source_name(&self) -> String {
        match self {
            ModuleLocation::File(p) => display_path(p),
            ModuleLocation::Builtin(m) => m.source_name(),
        }
    }

    pub fn text(&self) -> std::io::Result<String> {
        match self {
            ModuleLocation::File(p) => std::fs::read_to_string(p),
            ModuleLocation::Builtin(m) => Ok(m.source.to_owned()),
        }
    }

    /// The folder relative imports inside this module resolve against (none for built-ins).
    pub fn dir(&self) -> Option<&Path> {
        match self {
            ModuleLocation::File(p) => p.parent(),
            ModuleLocation::Builtin(_) => None,
        }
    }
}

/// An import that resolved nowhere, with every place that was tried.
#[derive(Clone, Debug)]
pub struct ModuleNotFound {
    pub import: String,
    pub searched: Vec<String>,
}

impl ModuleNotFound {
    pub fn help(&self) -> String {
        let mut s = format!("looked for `{}` in:", self.import);
        for place in &self.searched {
            s.push_str("\n  ");
            s.push_str(place);
        }
        s.push_str("\nlibrary folders come from COORD_PATH and `[library] paths` in coord.toml (docs/coordinators.md)");
        s
    }
}

impl LibraryPath {
    /// `COORD_PATH` (as given) then the config's `[library] paths`.
    pub fn new(coord_path: Option<&OsStr>, config: &Config) -> Self {
        let mut dirs = Vec::new();
        if let Some(value) = coord_path {
            for entry in std::env::split_paths(value) {
                if !entry.as_os_str().is_empty() {
                    dirs.push(LibraryDir { path: absolute(&entry, None), origin: LibraryOrigin::Env });
                }
            }
        }
        let base = config.base_dir();
        for p in &config.file.library.paths {
            dirs.push(LibraryDir { path: absolute(Path::new(p.get_ref()), base), origin: LibraryOrigin::Config });
        }
        LibraryPath { dirs }
    }

    /// The library path of this process: `COORD_PATH` from the environment and the config.
    pub fn from_environment(config: &Config) -> Self {
        Self::new(std::env::var_os(COORD_PATH).as_deref(), config)
    }

    /// Each library's `workflows/` folder that exists, in library order.
    pub fn workflow_dirs(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.path.join("workflows")).filter(|p| p.is_dir()).collect()
    }

    /// Resolves `import` written in a file whose folder is `importer_dir`.
    pub fn locate(&self, import: &str, importer_dir: &Path) -> Result<ModuleLocation, ModuleNotFound> {
        let mut searched = Vec::new();
        let try_file = |candidate: PathBuf, searched: &mut Vec<String>| {
            let found = candidate.is_file();
            searched.push(display_path(&candidate));
            found.then_some(candidate)
        };
        let file_name = with_rhai_extension(import);
        let path = Path::new(&file_name);
        if path.is_absolute() {
            if let Some(found) = try_file(path.to_path_buf(), &mut searched) {
                return Ok(ModuleLocation::File(found));
            }
        } else if is_explicitly_relative(path) {
            if let Some(found) = try_file(normalize(&importer_dir.join(path)), &mut searched) {
                return Ok(ModuleLocation::File(found));
            }
        } else if let Some(name) = stdlib::module_name(import) {
            for dir in &self.dirs {
                if let Some(found) = try_file(dir.path.join(&file_name), &mut searched) {
                    return Ok(ModuleLocation::File(found));
                }
            }
            if let Some(builtin) = stdlib::get(name) {
                return Ok(ModuleLocation::Builtin(builtin));
            }
            searched.push(format!("the built-in standard library (it has {})", stdlib::names().join(", ")));
        } else {
            if let Some(found) = try_file(normalize(&importer_dir.join(path)), &mut searched) {
                return Ok(ModuleLocation::File(found));
            }
            for dir in &self.dirs {
                if let Some(found) = try_file(dir.path.join(&file_name), &mut searched) {
                    return Ok(ModuleLocation::File(found));
                }
            }
        }
        Err(ModuleNotFound { import: import.to_owned(), searched })
    }

    /// Every module importable through the path, in import-path order; for each, every
    /// candidate in resolution order (the first is the one used).
    pub fn modules(&self) -> Vec<ListedModule> {
        let mut found: Vec<ListedModule> = Vec::new();
        let mut add = |import: String, provider: ModuleProvider| match found.iter_mut().find(|m| m.import == import) {
            Some(m) => m.providers.push(provider),
            None => found.push(ListedModule { import, providers: vec![provider] }),
        };
        for dir in &self.dirs {
            for file in rhai_files(&dir.path) {
                let rel = file.strip_prefix(&dir.path).unwrap_or(&file);
                let import = rel.with_extension("").to_string_lossy().replace('\\', "/");
                add(import, ModuleProvider::File { path: file.clone(), origin: dir.origin });
            }
        }
        for m in stdlib::BUILTIN {
            add(m.import_path(), ModuleProvider::Builtin);
        }
        found.sort_by(|a, b| a.import.cmp(&b.import));
        found
    }
}

/// One import path and what provides it.
#[derive(Clone, Debug)]
pub struct ListedModule {
    pub import: String,
    /// In resolution order: the first one is used, the others are shadowed.
    pub providers: Vec<ModuleProvider>,
}

#[derive(Clone, Debug)]
pub enum ModuleProvider {
    File { path: PathBuf, origin: LibraryOrigin },
    Builtin,
}

/// `.rhai` files under a library folder, skipping its `workflows/` and hidden folders, sorted.
fn rhai_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            let name = entry.file_name();
            let hidden = name.to_string_lossy().starts_with('.');
            if p.is_dir() {
                if !hidden && !(dir == root && name == "workflows") {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|e| e == "rhai") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn with_rhai_extension(import: &str) -> String {
    if import.ends_with(".rhai") {
        import.to_owned()
    } else {
        format!("{import}.rhai")
    }
}

fn is_explicitly_relative(p: &Path) -> bool {
    matches!(p.components().next(), Some(Component::CurDir | Component::ParentDir))
}

/// An absolute form of `p`: relative to `base` when given, else to the current directory.
fn absolute(p: &Path, base: Option<&Path>) -> PathBuf {
    if p.is_absolute() {
        return normalize(p);
    }
    let base = match base {
        Some(b) if b.is_absolute() => b.to_path_buf(),
        Some(b) => std::env::current_dir().map(|cwd| cwd.join(b)).unwrap_or_else(|_| b.to_path_buf()),
        None => std::env::current_dir().unwrap_or_default(),
    };
    normalize(&base.join(p))
}

/// Removes `.` and resolves `..` lexically (library folders may not exist yet when listed).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// A path for people: relative to the current directory when under it.
pub fn display_path(p: &Path) -> String {
    let cwd = std::env::current_dir().ok();
    match cwd.as_deref().and_then(|c| p.strip_prefix(c).ok()) {
        Some(rel) if !rel.as_os_str().is_empty() => rel.display().to_string(),
        _ => p.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with_paths(dir: &Path, paths: &[&str]) -> Config {
        let list = paths.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>().join(", ");
        std::fs::write(dir.join("coord.toml"), format!("[library]\npaths = [{list}]\n")).unwrap();
        Config::load(dir).unwrap()
    }

    #[test]
    fn env_comes_before_config_and_config_paths_are_relative_to_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let project = tmp.path().join("project");
        std::fs::create_dir_all(&project).unwrap();
        let config = config_with_paths(&project, &["../shared"]);
        let env = std::env::join_paths([tmp.path().join("mine")]).unwrap();
        let path = LibraryPath::new(Some(&env), &config);
        assert_eq!(
            path.dirs,
            vec![
                LibraryDir { path: tmp.path().join("mine"), origin: LibraryOrigin::Env },
                LibraryDir { path: tmp.path().join("shared"), origin: LibraryOrigin::Config },
            ]
        );
    }

    #[test]
    fn resolution_order() {
        let tmp = tempfile::tempdir().unwrap();
        let script_dir = tmp.path().join("coordinators");
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        for f in [
            a.join("team/review.rhai"),
            b.join("team/review.rhai"),
            b.join("stdlib/text.rhai"),
            script_dir.join("lib/route.rhai"),
        ] {
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(&f, "").unwrap();
        }
        let env = std::env::join_paths([&a, &b]).unwrap();
        let path = LibraryPath::new(Some(&env), &Config::default());
        assert_eq!(path.locate("team/review", &script_dir).unwrap(), ModuleLocation::File(a.join("team/review.rhai")));
        assert_eq!(path.locate("stdlib/text", &script_dir).unwrap(), ModuleLocation::File(b.join("stdlib/text.rhai")));
        assert!(matches!(path.locate("stdlib/fanout", &script_dir).unwrap(), ModuleLocation::Builtin(_)));
        assert_eq!(
            path.locate("lib/route", &script_dir).unwrap(),
            ModuleLocation::File(script_dir.join("lib/route.rhai"))
        );
        assert_eq!(
            path.locate("../a/team/review", &script_dir).unwrap(),
            ModuleLocation::File(a.join("team/review.rhai"))
        );
        let missing = path.locate("team/nope", &script_dir).unwrap_err();
        assert_eq!(missing.searched.len(), 3, "{missing:?}");
        assert!(path.locate("./review", &script_dir).is_err(), "relative imports never search the library");
        let listed = path.modules();
        let review = listed.iter().find(|m| m.import == "team/review").unwrap();
        assert_eq!(review.providers.len(), 2);
        let text = listed.iter().find(|m| m.import == "stdlib/text").unwrap();
        assert!(matches!(text.providers[..], [ModuleProvider::File { .. }, ModuleProvider::Builtin]));
    }
}
