//! The layering of `src/`: every `crate::…` path a module names must point down the order
//! docs/ARCHITECTURE.md gives ("Layers"). An import that points up fails this test, and so
//! does a top-level module the Layers line does not place.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, bottom first, as docs/ARCHITECTURE.md's "Layers" line names them.
fn documented_layers(architecture: &str) -> Vec<String> {
    let line = architecture
        .lines()
        .find(|l| l.starts_with("Layers, bottom first:"))
        .expect("docs/ARCHITECTURE.md has a line starting `Layers, bottom first:`");
    line.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

/// The top-level module a file under `src/` belongs to (`src/run/mod.rs` → `run`,
/// `src/redaction.rs` → `redaction`); `None` for the crate roots.
fn module_of(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// The top-level modules `source` names as `crate::<module>`, outside line comments.
fn modules_named(source: &str) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    for line in source.lines() {
        let code = match line.find("//") {
            // `//` inside a string (a URL) is rare in code that also names `crate::`.
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        };
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            if end > 0 {
                named.insert(rest[..end].to_owned());
            }
        }
    }
    named
}

/// Every import between top-level modules that points up `layers`.
fn upward_imports(files: &[(String, String)], layers: &[String]) -> Result<BTreeSet<(String, String)>, String> {
    let rank: BTreeMap<&str, usize> = layers.iter().enumerate().map(|(i, l)| (l.as_str(), i)).collect();
    let mut upward = BTreeSet::new();
    for (module, source) in files {
        let from = *rank.get(module.as_str()).ok_or_else(|| format!("`{module}` is in no layer"))?;
        for named in modules_named(source) {
            let Some(&to) = rank.get(named.as_str()) else { continue };
            if to > from {
                upward.insert((module.clone(), named));
            }
        }
    }
    Ok(upward)
}

fn sources(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            if let Some(module) = module_of(path.strip_prefix(root).unwrap()) {
                out.push((module, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
}

#[test]
fn imports_point_down_the_documented_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let layers = documented_layers(&std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).unwrap());
    let mut files = Vec::new();
    sources(&root.join("src"), &root.join("src"), &mut files);
    let found = upward_imports(&files, &layers).unwrap_or_else(|e| panic!("{e}: add it to the Layers line"));
    assert!(found.is_empty(), "imports pointing up the layers of docs/ARCHITECTURE.md: {found:?}");
}

#[test]
fn an_import_pointing_up_is_found_and_one_pointing_down_is_not() {
    let layers: Vec<String> = ["journal", "run", "cli"].iter().map(|s| s.to_string()).collect();
    let files = vec![
        ("journal".to_owned(), "use crate::run::RunPlan;\n// crate::cli in a comment\n".to_owned()),
        ("cli".to_owned(), "use crate::journal::Entry;\nfn f() { crate::run::execute(); }\n".to_owned()),
    ];
    let upward = upward_imports(&files, &layers).unwrap();
    assert_eq!(upward, BTreeSet::from([("journal".to_owned(), "run".to_owned())]));
    let unplaced = vec![("newcomer".to_owned(), String::new())];
    assert!(upward_imports(&unplaced, &layers).is_err());
}
