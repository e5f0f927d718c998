//! Checks a workflow file: it loads (TOML, harness, timeout), its schema is valid JSON Schema,
//! and its prompt template compiles and only uses the fields a prompt sees: `goal`,
//! `workflow`, and `inputs.<name>` for each input declared in its `[inputs]` table.

use super::problem::Problem;
use crate::config::Config;
use crate::harness::schema_form;
use crate::workflow::{Workflow, WorkflowError};
use indexmap::IndexMap;
use serde::Deserialize;
use std::path::Path;
use toml::Spanned;

/// The fields of a workflow file whose positions problems point at.
#[derive(Deserialize)]
struct WorkflowSpans {
    #[serde(default)]
    prompt: Option<Spanned<String>>,
    #[serde(default)]
    schema: Option<Spanned<toml::Value>>,
    #[serde(default)]
    inputs: IndexMap<String, toml::Value>,
    #[serde(default)]
    command: Option<Vec<Spanned<String>>>,
}

/// Template globals minijinja provides, which are not undeclared fields.
const TEMPLATE_GLOBALS: &[&str] = &["range", "dict", "namespace", "debug"];

pub fn check_workflow(name: &str, path: &Path, config: &Config, problems: &mut Vec<Problem>) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            problems.push(Problem::at(
                "coord::check::workflow",
                path,
                "",
                0..0,
                format!("cannot read workflow `{name}`: {e}"),
                None,
            ));
            return;
        }
    };
    let spans: WorkflowSpans = match toml::from_str(&text) {
        Ok(s) => s,
        Err(e) => {
            problems.push(Problem::at(
                "coord::check::workflow",
                path,
                &text,
                e.span().unwrap_or(0..0),
                e.message().to_owned(),
                None,
            ));
            return;
        }
    };
    // A template that does not compile also fails the load; the template check below reports
    // it with a span inside the prompt, so the load's copy is dropped.
    let load_error = match Workflow::load(name, path) {
        Err(WorkflowError::Invalid { reason, .. }) if !reason.starts_with("prompt template:") => Some(reason),
        _ => None,
    };
    if let Some(reason) = load_error {
        let schema_problem = reason.contains("schema");
        let span = match (&spans.schema, schema_problem) {
            (Some(s), true) => s.span(),
            _ => first_line(&text),
        };
        let (message, help) = if schema_problem {
            (
                format!("workflow `{name}`: {reason}"),
                Some("the schema must be valid JSON Schema (draft 2020-12 unless `$schema` says otherwise)".into()),
            )
        } else {
            (format!("workflow `{name}`: {reason}"), None)
        };
        problems.push(Problem::at("coord::check::workflow", path, &text, span, message, help));
    }
    if let Some(prompt) = &spans.prompt {
        check_template(name, path, &text, prompt, &spans.inputs, problems);
    }
    if let Ok(workflow) = Workflow::load(name, path) {
        check_schema_fits(&workflow, config, path, &text, spans.schema.as_ref().map(Spanned::span), problems);
        if config.harness_kind(&workflow.harness) == "command" {
            check_command_program(name, path, &text, spans.command.as_ref().and_then(|c| c.first()), problems);
        }
    }
}

/// A `command` workflow whose program is a path in the project (`scripts/regression-test`,
/// `./lint.sh`) names a file that is there and executable: the project ships it, so a missing
/// one is the project's problem, not the machine's (a bare name such as `make` is looked up on
/// the PATH when the run starts, and the pre-run check reports it there).
fn check_command_program(
    name: &str,
    path: &Path,
    text: &str,
    program: Option<&Spanned<String>>,
    problems: &mut Vec<Problem>,
) {
    let Some(program) = program else { return };
    let given = program.get_ref();
    if !given.contains('/') || Path::new(given).is_absolute() {
        return;
    }
    // Workflows live in `<project>/workflows/`.
    let root = path.parent().and_then(Path::parent).unwrap_or(Path::new("."));
    let file = root.join(given);
    let executable = std::fs::metadata(&file).is_ok_and(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.is_file() && m.permissions().mode() & 0o111 != 0
    });
    if executable {
        return;
    }
    let (what, help) = if file.is_file() {
        ("is not executable", format!("`chmod +x {given}`"))
    } else {
        (
            "is not in the project",
            format!(
                "add it (`coord init` writes the programs shipped workflows run), or fix `command` in {}",
                path.display()
            ),
        )
    };
    let message = format!("workflow `{name}` runs `{given}`, which {what}");
    problems.push(Problem::at("coord::check::command", path, text, program.span(), message, Some(help)));
}

/// The schema can be sent to the provider of the harness the workflow runs on (after
/// `coord.toml`'s `[workflow.<name>] harness`), in the form coord translates it to.
fn check_schema_fits(
    workflow: &Workflow,
    config: &Config,
    path: &Path,
    text: &str,
    span: Option<std::ops::Range<usize>>,
    problems: &mut Vec<Problem>,
) {
    let harness = config
        .file
        .workflow
        .get(&workflow.name)
        .and_then(|w| w.harness.clone())
        .unwrap_or_else(|| workflow.harness.clone());
    let kind = config.harness_kind(&harness);
    let strict = config.file.harness.get(&harness).and_then(|h| h.strict).unwrap_or(false);
    for p in schema_form::problems(&kind, strict, &workflow.schema) {
        problems.push(Problem::at(
            "coord::check::schema-form",
            path,
            text,
            span.clone().unwrap_or_else(|| first_line(text)),
            format!(
                "workflow `{}`: its schema cannot be sent to the {harness} harness ({kind}): at {}: {}",
                workflow.name, p.path, p.message
            ),
            Some("change the schema there, or run this workflow on another harness; `coord doctor` lists what each harness takes".into()),
        ));
    }
}

fn check_template(
    name: &str,
    path: &Path,
    text: &str,
    prompt: &Spanned<String>,
    inputs: &IndexMap<String, toml::Value>,
    problems: &mut Vec<Problem>,
) {
    let env = minijinja::Environment::new();
    let template = match env.template_from_str(prompt.get_ref()) {
        Ok(t) => t,
        Err(e) => {
            let span = e.line().and_then(|l| line_in_value(text, prompt, l)).unwrap_or(prompt.span());
            problems.push(Problem::at(
                "coord::check::template",
                path,
                text,
                span,
                format!("workflow `{name}`: prompt template: {e}"),
                None,
            ));
            return;
        }
    };
    let mut used: Vec<String> = template.undeclared_variables(true).into_iter().collect();
    used.sort();
    for var in used {
        let root = var.split('.').next().unwrap_or(&var);
        let known = match root {
            "goal" | "workflow" => true,
            "inputs" => match var.split('.').nth(1) {
                None => true,
                Some(field) => inputs.contains_key(field),
            },
            other => TEMPLATE_GLOBALS.contains(&other),
        };
        if known {
            continue;
        }
        let span = find_in_value(text, prompt, &var).unwrap_or(prompt.span());
        let (message, help) = if root == "inputs" {
            let field = var.split('.').nth(1).unwrap_or_default();
            let declared = if inputs.is_empty() {
                "none".to_owned()
            } else {
                inputs.keys().cloned().collect::<Vec<_>>().join(", ")
            };
            (
                format!("workflow `{name}`: the prompt uses `inputs.{field}`, which `[inputs]` does not declare"),
                Some(format!("declare it in [inputs] ({field} = \"type: what it is\"); declared: {declared}")),
            )
        } else {
            (
                format!("workflow `{name}`: the prompt uses `{var}`, which is not a field prompts see"),
                Some("a prompt sees `goal`, `workflow` and `inputs.<name>` for the inputs declared in [inputs]".into()),
            )
        };
        problems.push(Problem::at("coord::check::template", path, text, span, message, help));
    }
}

fn first_line(text: &str) -> std::ops::Range<usize> {
    0..text.find('\n').unwrap_or(text.len())
}

/// Where `needle` first appears inside the prompt's TOML value.
fn find_in_value(text: &str, prompt: &Spanned<String>, needle: &str) -> Option<std::ops::Range<usize>> {
    let span = prompt.span();
    let start = span.start + text.get(span.clone())?.find(needle)?;
    Some(start..start + needle.len())
}

/// The `line`-th (1-based) line of the template, found inside the TOML value.
fn line_in_value(text: &str, prompt: &Spanned<String>, line: usize) -> Option<std::ops::Range<usize>> {
    let wanted = prompt.get_ref().lines().nth(line.checked_sub(1)?)?.trim();
    if wanted.is_empty() {
        return None;
    }
    find_in_value(text, prompt, wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems_for(body: &str) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.toml");
        std::fs::write(&path, body).unwrap();
        let mut problems = Vec::new();
        check_workflow("w", &path, &Config::default(), &mut problems);
        problems.into_iter().map(|p| p.message).collect()
    }

    #[test]
    fn a_clean_workflow_has_no_problems() {
        let p = problems_for(
            "harness = \"mock\"\nprompt = \"\"\"\n{{ goal }} for #{{ inputs.pr }} ({{ workflow }})\n{% for f in inputs.findings %}{{ f.message }}{% endfor %}\n\"\"\"\nschema = { type = \"object\" }\n[inputs]\npr = \"int\"\nfindings = \"array\"\n",
        );
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn undeclared_fields_and_bad_schemas_point_into_the_file() {
        let p = problems_for("harness = \"mock\"\nprompt = \"Fix {{ inputs.issue }} in {{ repo }}\"\nschema = { type = \"objekt\" }\n[inputs]\npr = \"int\"\n");
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].contains("w.toml:3:10") && p[0].contains("JSON Schema"), "{p:?}");
        assert!(p[1].contains("w.toml:2:18") && p[1].contains("inputs.issue"), "{p:?}");
        assert!(p[2].contains("w.toml:2:40") && p[2].contains("`repo`"), "{p:?}");
    }

    #[test]
    fn a_schema_its_harness_cannot_take_is_a_problem_with_its_path() {
        let p = problems_for("harness = \"codex\"\nprompt = \"x\"\nschema = { type = \"object\", properties = { tags = { type = \"object\", additionalProperties = { type = \"string\" } } } }\n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("w.toml:3:10") && p[0].contains("/properties/tags/additionalProperties"), "{p:?}");
        assert!(p[0].contains("codex"), "{p:?}");
        let p = problems_for("harness = \"claude-code\"\nprompt = \"x\"\nschema = { type = \"array\" }\n");
        assert!(p.len() == 1 && p[0].contains("JSON object"), "{p:?}");
        assert!(problems_for("harness = \"gemini\"\nprompt = \"x\"\nschema = { type = \"array\" }\n").is_empty());
    }

    #[test]
    fn a_command_the_project_should_ship_must_be_there_and_executable() {
        let project = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(project.path().join("workflows")).unwrap();
        std::fs::create_dir_all(project.path().join("scripts")).unwrap();
        let path = project.path().join("workflows/t.toml");
        let check = |command: &str| {
            let body = format!("harness = \"command\"\ncommand = [\"{command}\", \"--fast\"]\nprompt = \"x\"\nschema = {{ type = \"object\" }}\n");
            std::fs::write(&path, body).unwrap();
            let mut problems = Vec::new();
            check_workflow("t", &path, &Config::default(), &mut problems);
            problems.into_iter().map(|p| p.message).collect::<Vec<_>>()
        };
        let p = check("scripts/test");
        assert!(p.len() == 1 && p[0].contains("t.toml:2:12") && p[0].contains("is not in the project"), "{p:?}");
        std::fs::write(project.path().join("scripts/test"), "#!/bin/sh\n").unwrap();
        assert!(check("scripts/test")[0].contains("is not executable"));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(project.path().join("scripts/test"), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(check("scripts/test").is_empty());
        assert!(check("./scripts/test").is_empty());
        // On the PATH, or absolute: the machine's business, checked before a run.
        assert!(check("make").is_empty());
        assert!(check("/no/such/program").is_empty());
    }

    #[test]
    fn template_syntax_errors_are_problems() {
        let p = problems_for("harness = \"mock\"\nprompt = \"{% if goal %}open\"\nschema = { type = \"object\" }\n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("prompt template"), "{p:?}");
    }
}
