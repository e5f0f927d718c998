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
    }
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
    fn template_syntax_errors_are_problems() {
        let p = problems_for("harness = \"mock\"\nprompt = \"{% if goal %}open\"\nschema = { type = \"object\" }\n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("prompt template"), "{p:?}");
    }
}
