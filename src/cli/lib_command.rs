//! `coord lib`: the coordinator library as this project sees it: the library path, which file
//! (or built-in) each importable module comes from, a module's text, the host API reference.

use super::cli_error::CliError;
use super::{LibArgs, LibCommand};
use crate::library::{display_path, stdlib, ModuleProvider};
use crate::run::project::Project;
use crate::views::console::{stderrln, stdout, stdoutln};
use serde_json::json;

pub fn run(args: &LibArgs) -> Result<(), CliError> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let project = Project::containing(&cwd);
    match &args.command {
        LibCommand::List { json } => {
            list(&project, *json);
            Ok(())
        }
        LibCommand::Show { module } => show(&project, module),
        LibCommand::Api => {
            stdout!("{}", crate::check::host_api_reference::reference_markdown());
            Ok(())
        }
    }
}

fn provider_text(p: &ModuleProvider) -> String {
    match p {
        ModuleProvider::File { path, .. } => display_path(path),
        ModuleProvider::Builtin => "built-in".into(),
    }
}

fn list(project: &Project, json: bool) {
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
        stdoutln!("{value}");
        return;
    }
    stdoutln!("Library path (first match wins):");
    if project.library.dirs.is_empty() {
        stdoutln!("  (empty: set COORD_PATH or [library] paths in coord.toml)");
    }
    for (i, d) in project.library.dirs.iter().enumerate() {
        let missing = if d.path.is_dir() { "" } else { "  (missing)" };
        stdoutln!("  {}. {}  [{}]{missing}", i + 1, display_path(&d.path), d.origin.describe());
    }
    stdoutln!("\nModules:");
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
        stdoutln!("  {:<width$}  {}{note}{summary}", m.import, provider_text(used));
    }
    if !workflow_dirs.is_empty() {
        stdoutln!("\nWorkflows from libraries (after the project's workflows/):");
        for d in &workflow_dirs {
            stdoutln!("  {}", display_path(d));
        }
    }
}

fn show(project: &Project, module: &str) -> Result<(), CliError> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let location = project
        .library
        .locate(module, &cwd)
        .map_err(|missing| CliError::Usage(format!("no module `{module}`\n{}", missing.help())))?;
    let text = location.text().map_err(|e| CliError::Failed(format!("cannot read {}: {e}", location.source_name())))?;
    // Where it came from on stderr, so stdout is the module's text alone.
    stderrln!("// {}", location.source_name());
    stdout!("{text}");
    Ok(())
}
