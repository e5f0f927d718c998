//! `coord init`: scaffolds a project into an existing repository from what coord ships:
//! `coord.toml`, the chosen coordinators, exactly the workflows (and schemas) they name, and
//! each one's demo scenario with its snapshot, so `coord check` and `coord test` pass at once.
//!
//! Which workflows a coordinator needs is not a list kept by hand: it is `coord check`'s own
//! analysis ([`crate::check::run_check::check_script`], which follows stdlib imports and workflow
//! parameters such as `fanout::run`'s) run on the shipped texts in a scratch folder.
//!
//! It owns choosing and writing those files. It must not overwrite a file unless forced, must
//! not write anywhere but under the target folder, and never writes a credential: of the
//! `origin` remote it keeps only `owner/name` (and the host for GitHub Enterprise).

pub mod origin;

use crate::check::run_check::check_script;
use crate::library::shipped::{self, ShippedCoordinator};
use crate::library::LibraryPath;
use crate::run::project::Project;
use crate::workflow::WorkflowSet;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("no coordinator named `{name}` ships with coord; choose from: {}", shipped::coordinator_names().join(", "))]
    UnknownCoordinator { name: String },
    #[error("no folder at {}: `coord init` scaffolds into an existing repository", .0.display())]
    MissingDir(PathBuf),
    #[error("cannot prepare the workflow analysis: {0}")]
    Scratch(std::io::Error),
    #[error("cannot write {}: {source}", .path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

/// What became of one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileOutcome {
    Wrote,
    /// It existed with other contents and `--force` replaced it.
    Overwrote,
    /// It existed with exactly these contents.
    Unchanged,
    /// It existed with other contents and was left alone (no `--force`).
    Kept,
    /// Lines were added at its end (`.gitignore`).
    Appended,
}

impl FileOutcome {
    pub fn verb(self) -> &'static str {
        match self {
            FileOutcome::Wrote => "wrote",
            FileOutcome::Overwrote => "overwrote",
            FileOutcome::Unchanged => "unchanged",
            FileOutcome::Kept => "kept",
            FileOutcome::Appended => "appended",
        }
    }
}

#[derive(Debug)]
pub struct InitReport {
    /// Paths relative to the target folder, sorted.
    pub files: Vec<(PathBuf, FileOutcome)>,
    /// The workflows the coordinators name, sorted.
    pub workflows: Vec<String>,
    /// `owner/name` guessed from the `origin` remote.
    pub repo: Option<String>,
    /// The commands to run next, in order.
    pub next: Vec<String>,
}

pub struct InitOptions {
    pub dir: PathBuf,
    /// Shipped coordinator names; empty means the default one.
    pub coordinators: Vec<String>,
    pub force: bool,
}

pub fn init(opts: &InitOptions) -> Result<InitReport, InitError> {
    if !opts.dir.is_dir() {
        return Err(InitError::MissingDir(opts.dir.clone()));
    }
    let chosen = choose(&opts.coordinators)?;
    let workflows = needed_workflows(&chosen)?;
    let remote = origin::guess(&opts.dir);
    let files = plan(&chosen, &workflows, remote.as_ref());
    let mut outcomes = Vec::new();
    for (path, contents) in &files {
        let written = write_one(&opts.dir.join(path), contents, opts.force)?;
        if shipped::script(&path.to_string_lossy()).is_some() && written != FileOutcome::Kept {
            make_executable(&opts.dir.join(path))?;
        }
        outcomes.push((path.clone(), written));
    }
    outcomes.push((PathBuf::from(".gitignore"), ignore_run_store(&opts.dir)?));
    outcomes.sort_by(|a, b| a.0.cmp(&b.0));
    let first = chosen[0].name;
    let next =
        vec!["coord check".to_owned(), "coord test".to_owned(), format!("coord run coordinators/{first}.rhai --demo")];
    Ok(InitReport { files: outcomes, workflows: workflows.into_iter().collect(), repo: remote.map(|r| r.repo), next })
}

/// The shipped coordinators named, in the order given, each once.
fn choose(names: &[String]) -> Result<Vec<&'static ShippedCoordinator>, InitError> {
    let names: Vec<&str> =
        if names.is_empty() { vec![shipped::DEFAULT_COORDINATOR] } else { names.iter().map(String::as_str).collect() };
    let mut chosen: Vec<&'static ShippedCoordinator> = Vec::new();
    for name in names {
        let name = name.strip_suffix(".rhai").unwrap_or(name);
        let c = shipped::coordinator(name).ok_or_else(|| InitError::UnknownCoordinator { name: name.to_owned() })?;
        if !chosen.iter().any(|x| x.name == c.name) {
            chosen.push(c);
        }
    }
    Ok(chosen)
}

/// The workflows the coordinators name, found the way `coord check` finds them: the shipped
/// coordinators and every shipped workflow are laid out in a scratch project, and each script's
/// calls (its stdlib modules' included) are checked against it.
pub fn needed_workflows(chosen: &[&ShippedCoordinator]) -> Result<BTreeSet<String>, InitError> {
    let scratch = tempfile::tempdir().map_err(InitError::Scratch)?;
    let root = scratch.path();
    let workflows_dir = root.join("workflows");
    let coordinators_dir = root.join("coordinators");
    for dir in [&workflows_dir, &coordinators_dir] {
        std::fs::create_dir_all(dir).map_err(InitError::Scratch)?;
    }
    for w in shipped::WORKFLOWS {
        std::fs::write(workflows_dir.join(format!("{}.toml", w.name)), w.toml).map_err(InitError::Scratch)?;
        if let Some(schema) = w.schema {
            std::fs::write(workflows_dir.join(format!("{}.schema.json", w.schema_name)), schema)
                .map_err(InitError::Scratch)?;
        }
    }
    // Only the built-in stdlib: what the user's COORD_PATH holds is not what is being shipped.
    let project = Project { root: root.to_path_buf(), library: LibraryPath::default() };
    let set = WorkflowSet::new(vec![workflows_dir]);
    let mut named = BTreeSet::new();
    for c in chosen {
        let script = coordinators_dir.join(format!("{}.rhai", c.name));
        std::fs::write(&script, c.source).map_err(InitError::Scratch)?;
        // Shipped coordinators pass `coord check` (a test says so): problems cannot happen here,
        // and the scaffolded project's own `coord check` would report them anyway.
        named.extend(check_script(&script, &project, &set, &mut Vec::new()));
    }
    Ok(named)
}

/// Every file `coord init` would write, by path relative to the target folder.
fn plan(
    chosen: &[&ShippedCoordinator],
    workflows: &BTreeSet<String>,
    remote: Option<&origin::RemoteRepo>,
) -> BTreeMap<PathBuf, String> {
    let mut files = BTreeMap::new();
    let names: Vec<&str> = chosen.iter().map(|c| c.name).collect();
    files.insert(PathBuf::from("coord.toml"), coord_toml(remote, &names));
    for c in chosen {
        let dir = Path::new("coordinators");
        files.insert(dir.join(format!("{}.rhai", c.name)), c.source.to_owned());
        files.insert(dir.join(c.name).join("scenarios").join("demo.toml"), c.demo_scenario.to_owned());
        files.insert(Path::new("snapshots").join(format!("{}__demo.snap", c.name)), c.demo_snapshot.to_owned());
    }
    for name in workflows {
        let Some(w) = shipped::workflow(name) else { continue };
        let dir = Path::new("workflows");
        files.insert(dir.join(format!("{name}.toml")), w.toml.to_owned());
        if let Some(schema) = w.schema {
            files.insert(dir.join(format!("{}.schema.json", w.schema_name)), schema.to_owned());
        }
        if let Some(script) = command_program(w.toml).and_then(|program| shipped::script(&program)) {
            files.insert(PathBuf::from(script.path), script.source.to_owned());
        }
    }
    files
}

/// The program a `command` workflow runs (the first word of its `command`), if it names one.
fn command_program(workflow_toml: &str) -> Option<String> {
    let table: toml::Table = toml::from_str(workflow_toml).ok()?;
    Some(table.get("command")?.as_array()?.first()?.as_str()?.to_owned())
}

/// When a shipped coordinator runs on its own (`coord daemon`), as its seed pipeline did: the
/// cron schedule and what it says. Coordinators without one are started by a person, a webhook
/// or `coord trigger`.
fn shipped_schedule(coordinator: &str) -> Option<(&'static str, &'static str)> {
    match coordinator {
        "groom-prs" => Some(("0 9 * * 1-5", "weekdays at 09:00")),
        "groom-backlog" => Some(("0 8 * * 1", "weekly, Mondays at 08:00")),
        _ => None,
    }
}

/// The `[[pipeline]]` tables of the chosen coordinators that run on a schedule.
fn pipelines(coordinators: &[&str]) -> String {
    let mut text = String::new();
    for name in coordinators {
        let Some((schedule, when)) = shipped_schedule(name) else { continue };
        if text.is_empty() {
            text.push_str("\n# Scheduled runs, started by `coord daemon` (docs/cron.md):\n");
        }
        text.push_str(&format!(
            "[[pipeline]]\nname = \"{name}\"\nscript = \"coordinators/{name}.rhai\"\nschedule = \"{schedule}\"   # {when}\ntimezone = \"UTC\"\n"
        ));
    }
    text
}

/// A commented `coord.toml`: every line a team changes first, most of them commented out, and
/// the schedules of the chosen coordinators that run on their own.
pub fn coord_toml(remote: Option<&origin::RemoteRepo>, coordinators: &[&str]) -> String {
    let github = match remote {
        Some(r) => {
            let mut s = format!("repo = \"{}\"   # guessed from the `origin` remote\n", r.repo);
            if let Some(host) = &r.enterprise_host {
                s.push_str(&format!("api_url = \"https://{host}/api/v3\"   # GitHub Enterprise\n"));
            }
            s
        }
        None => "# repo = \"owner/name\"\n".to_owned(),
    };
    format!(
        r#"# coord.toml: how coord runs the coordinators of this repository (docs/config.md).
# Every section is optional. No secret goes in this file: it names the environment variables
# that hold them, and coord reads them when it needs them.

[github]
# The repository runs act on when neither `--repo` nor the coordinator's `repo` input names one.
{github}# token_env = "GITHUB_TOKEN"   # the variable holding the token (GITHUB_TOKEN, GH_TOKEN are tried anyway)
# no_checks = "green"          # say so if this repository has no CI

# Run one workflow on another harness, or with another model:
# [workflow.mr-review]
# harness = "codex"

# At most this many leaves of a harness at once:
# [harness.claude-code]
# concurrency = 4
{pipelines}"#,
        pipelines = pipelines(coordinators)
    )
}

/// Runs are recorded under `.coord/` at the project root: a team does not commit them.
fn ignore_run_store(dir: &Path) -> Result<FileOutcome, InitError> {
    let path = dir.join(".gitignore");
    let existing = std::fs::read_to_string(&path).unwrap_or_default();
    if existing.lines().any(|l| matches!(l.trim(), ".coord" | ".coord/" | "/.coord" | "/.coord/")) {
        return Ok(FileOutcome::Unchanged);
    }
    let separator = if existing.is_empty() || existing.ends_with('\n') { "" } else { "\n" };
    let outcome = if path.exists() { FileOutcome::Appended } else { FileOutcome::Wrote };
    let text = format!("{existing}{separator}# coord's run store: journals and reports of each run\n/.coord/\n");
    std::fs::write(&path, text).map_err(|source| InitError::Write { path, source })?;
    Ok(outcome)
}

/// A shipped program is written executable, as the workflow that runs it needs.
fn make_executable(path: &Path) -> Result<(), InitError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|source| InitError::Write { path: path.to_owned(), source })
}

fn write_one(path: &Path, contents: &str, force: bool) -> Result<FileOutcome, InitError> {
    let outcome = match std::fs::read(path) {
        Ok(existing) if existing == contents.as_bytes() => return Ok(FileOutcome::Unchanged),
        Ok(_) if !force => return Ok(FileOutcome::Kept),
        Ok(_) => FileOutcome::Overwrote,
        Err(_) if path.exists() => return Ok(FileOutcome::Kept),
        Err(_) => FileOutcome::Wrote,
    };
    let err = |source| InitError::Write { path: path.to_owned(), source };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    std::fs::write(path, contents).map_err(err)?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groom_prs_needs_exactly_its_review_and_fix_workflows() {
        let chosen = choose(&[]).unwrap();
        let named = needed_workflows(&chosen).unwrap();
        assert_eq!(named.into_iter().collect::<Vec<_>>(), vec!["coding-task", "mr-review"]);
    }

    #[test]
    fn every_shipped_coordinator_names_only_shipped_workflows() {
        for c in shipped::COORDINATORS {
            let named = needed_workflows(&[c]).unwrap();
            assert!(!named.is_empty(), "{} names no workflow", c.name);
            for n in &named {
                assert!(shipped::workflow(n).is_some(), "{}: {n}", c.name);
            }
        }
    }

    #[test]
    fn unknown_names_are_refused_and_repeats_kept_once() {
        assert!(matches!(choose(&["nope".into()]), Err(InitError::UnknownCoordinator { .. })));
        let chosen = choose(&["fix-bug.rhai".into(), "fix-bug".into()]).unwrap();
        assert_eq!(chosen.len(), 1);
    }

    #[test]
    fn the_config_parses_with_and_without_a_remote() {
        let remote = origin::RemoteRepo { repo: "acme/widgets".into(), enterprise_host: Some("git.acme.io".into()) };
        for text in [coord_toml(None, &[]), coord_toml(Some(&remote), &["groom-prs", "fix-bug", "groom-backlog"])] {
            let _: toml::Table = toml::from_str(&text).unwrap();
        }
        assert!(coord_toml(Some(&remote), &[]).contains("repo = \"acme/widgets\""));
        let file: crate::config::ConfigFile = toml::from_str(&coord_toml(None, &["groom-backlog", "fix-bug"])).unwrap();
        let names: Vec<&str> = file.pipeline.iter().map(|p| p.name.get_ref().as_str()).collect();
        assert_eq!(names, ["groom-backlog"], "only the coordinators that run on a schedule");
        assert_eq!(file.pipeline[0].schedule.as_ref().map(|s| s.get_ref().as_str()), Some("0 8 * * 1"));
    }
}
