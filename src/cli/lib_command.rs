//! `coord lib`: the coordinator library as this project sees it: the library path, which file
//! (or built-in) each importable module comes from, a module's text, the host API reference.

use super::{exit_code, LibArgs, LibCommand};
use crate::library::{display_path, stdlib, ModuleProvider};
use crate::run::project::Project;
use serde_json::json;

pub fn run(args: &LibArgs) -> u8 {
    let cwd = std::env::current_dir().unwrap_or_default();
    let project = Project::containing(&cwd);
    match &args.command {
        LibCommand::List { json } => list(&project, *json),
        LibCommand::Show { module } => show(&project, module),
        LibCommand::Api => {
            print!("{}", crate::check::host_api_reference::reference_markdown());
            exit_code::SUCCESS
        }
    }
}

fn provider_text(p: &ModuleProvider) -> String {
    match p {
        ModuleProvider::File { path, .. } => display_path(path),
        ModuleProvider::Builtin => "built-in".into(),
    }
}

fn list(project: &Project, json: bool) -> u8 {
    let modules = project.library.modules();
    let workflow_dirs = project.library.workflow_dirs();
    if json {
        let value = json!({
            "library_path": project.library.dirs.iter().map(|d| json!({"path": d.path.display().to_string(), "from": d.origin.describe()})).collect::<Vec<_>>(),
            "modules": modules.iter().map(|m| json!({
                "import": m.import,
                "used": provider_text(&m.providers[0]),
                "builtin": matches!(m.providers[0], ModuleProvider::Builtin),
                "shadowed": m.providers[1..].iter().map(provider_text).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "workflow_dirs": workflow_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>(),
        });
        println!("{value}");
        return exit_code::SUCCESS;
    }
    println!("Library path (first match wins):");
    if project.library.dirs.is_empty() {
        println!("  (empty: set COORD_PATH or [library] paths in coord.toml)");
    }
    for (i, d) in project.library.dirs.iter().enumerate() {
        let missing = if d.path.is_dir() { "" } else { "  (missing)" };
        println!("  {}. {}  [{}]{missing}", i + 1, display_path(&d.path), d.origin.describe());
    }
    println!("\nModules:");
    let width = modules.iter().map(|m| m.import.len()).max().unwrap_or(0);
    for m in &modules {
        let used = &m.providers[0];
        let note = match (used, m.providers.len() > 1) {
            (ModuleProvider::File { .. }, true) if m.providers.iter().any(|p| matches!(p, ModuleProvider::Builtin)) => {
                "  (overrides the built-in)"
            }
            (_, true) => "  (shadows later ones)",
            _ => "",
        };
        let summary = match (used, stdlib::module_name(&m.import).and_then(stdlib::get)) {
            (ModuleProvider::Builtin, Some(b)) => format!("  {}", b.summary),
            _ => String::new(),
        };
        println!("  {:<width$}  {}{note}{summary}", m.import, provider_text(used));
    }
    if !workflow_dirs.is_empty() {
        println!("\nWorkflows from libraries (after the project's workflows/):");
        for d in &workflow_dirs {
            println!("  {}", display_path(d));
        }
    }
    exit_code::SUCCESS
}

fn show(project: &Project, module: &str) -> u8 {
    let cwd = std::env::current_dir().unwrap_or_default();
    match project.library.locate(module, &cwd) {
        Ok(location) => match location.text() {
            Ok(text) => {
                eprintln!("// {}", location.source_name());
                print!("{text}");
                exit_code::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", location.source_name());
                exit_code::RUN_FAILED
            }
        },
        Err(missing) => {
            eprintln!("error: no module `{module}`\n{}", missing.help());
            exit_code::USAGE
        }
    }
}
