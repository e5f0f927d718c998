//! Script errors as miette diagnostics: `file:line:col`, the offending line with a caret, and
//! a hint. An error inside an imported module names that module's file.

use super::host_api::{signature_of, HOST_FUNCTIONS};
use miette::{NamedSource, SourceSpan};
use rhai::{EvalAltResult, ParseError, Position};
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScriptErrorKind {
    /// The script cannot be compiled.
    Syntax,
    /// The script is at fault at run time: unknown function, bad types, a limit.
    Runtime,
    /// The script threw: a deliberate failure of the run.
    Thrown,
}

/// A host function called wrongly (a wrong type, an unknown option, a sandboxed function).
/// Raised as a runtime error whose value has this type, which a script's own `throw` cannot
/// make: so the run reports it as the script's fault (exit 2, with its position), never as a
/// deliberate failure.
#[derive(Clone, Debug)]
pub struct ApiMisuse(pub String);

/// The error a host function returns when it is called wrongly ([`ApiMisuse`]).
pub fn misuse(message: impl Into<String>) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(rhai::Dynamic::from(ApiMisuse(message.into())), Position::NONE).into()
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{message}")]
pub struct ScriptDiagnostic {
    pub message: String,
    #[source_code]
    pub src: NamedSource<String>,
    #[label("{label}")]
    pub span: Option<SourceSpan>,
    pub label: String,
    #[help]
    pub help: Option<String>,
    pub kind: ScriptErrorKind,
    /// `file:line:col`, when known.
    pub location: Option<String>,
}

impl ScriptDiagnostic {
    pub fn from_parse(err: &ParseError, file: &Path, source: &str) -> Self {
        let (msg, help) = describe_parse(err);
        build(file, source, err.position(), msg, "here".into(), help, ScriptErrorKind::Syntax)
    }

    pub fn from_eval(err: &EvalAltResult, main_file: &Path, main_source: &str) -> Self {
        let (inner, pos, module) = innermost(err, None);
        let builtin = module.as_deref().and_then(crate::library::stdlib::by_source_name);
        let (file, source) = match (builtin, module.and_then(|m| module_file(&m, main_file))) {
            (Some(b), _) => (std::path::PathBuf::from(b.source_name()), b.source.to_owned()),
            (None, Some(path)) if path != main_file => {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                (path, text)
            }
            _ => (main_file.to_owned(), main_source.to_owned()),
        };
        let (msg, label, help, kind) = describe_eval(inner);
        build(&file, &source, pos, msg, label, help, kind)
    }

    /// A diagnostic for an error the host raised at a known call site.
    pub fn at(
        file: &Path,
        source: &str,
        line: usize,
        col: usize,
        message: String,
        help: Option<String>,
        kind: ScriptErrorKind,
    ) -> Self {
        let pos = if line > 0 { Position::new(line as u16, col.max(1) as u16) } else { Position::NONE };
        build(file, source, pos, message, "here".into(), help, kind)
    }
}

/// The file behind a module's source name: the name itself, or an import path resolved like
/// the engine resolves it (relative to the main script, `.rhai` appended).
fn module_file(name: &str, main_file: &Path) -> Option<std::path::PathBuf> {
    let base = main_file.parent().unwrap_or(Path::new("."));
    [
        std::path::PathBuf::from(name),
        std::path::PathBuf::from(format!("{name}.rhai")),
        base.join(name),
        base.join(format!("{name}.rhai")),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

fn build(
    file: &Path,
    source: &str,
    pos: Position,
    message: String,
    label: String,
    help: Option<String>,
    kind: ScriptErrorKind,
) -> ScriptDiagnostic {
    let name = file.display().to_string();
    let (span, location) = match (pos.line(), pos.position()) {
        (Some(line), col) => {
            let col = col.unwrap_or(1);
            let offset = offset_of(source, line, col);
            let len = token_len(&source[offset..]);
            (Some(SourceSpan::from(offset..offset + len)), Some(format!("{name}:{line}:{col}")))
        }
        _ => (None, None),
    };
    let message = match &location {
        Some(loc) => format!("{loc}: {message}"),
        None => format!("{name}: {message}"),
    };
    ScriptDiagnostic { message, src: NamedSource::new(name, source.to_owned()), span, label, help, kind, location }
}

/// Byte offset of a 1-based line and (character) column.
fn offset_of(source: &str, line: usize, col: usize) -> usize {
    let mut offset = 0;
    for (i, l) in source.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let within: usize = l.chars().take(col.saturating_sub(1)).map(char::len_utf8).sum();
            return (offset + within).min(source.len());
        }
        offset += l.len();
    }
    source.len()
}

fn token_len(rest: &str) -> usize {
    let n: usize = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').map(char::len_utf8).sum();
    n.max(rest.chars().next().map(char::len_utf8).unwrap_or(0))
}

fn innermost(err: &EvalAltResult, module: Option<String>) -> (&EvalAltResult, Position, Option<String>) {
    match err {
        EvalAltResult::ErrorInFunctionCall(_, src, inner, pos) => {
            let module = if src.is_empty() { module } else { Some(src.clone()) };
            let (e, p, m) = innermost(inner, module.clone());
            if p.is_none() {
                (err, *pos, module)
            } else {
                (e, p, m)
            }
        }
        EvalAltResult::ErrorInModule(path, inner, pos) => {
            let (e, p, m) = innermost(inner, Some(path.clone()));
            if p.is_none() {
                (err, *pos, module)
            } else {
                (e, p, m)
            }
        }
        other => (other, other.position(), module),
    }
}

fn describe_parse(err: &ParseError) -> (String, Option<String>) {
    let msg = format!("syntax error: {}", err.err_type());
    let help = match err.err_type() {
        rhai::ParseErrorType::VariableUndefined(name) => Some(format!(
            "`{name}` is not defined; declare it with `let {name} = ...` (coordinator scripts use strict variables)"
        )),
        rhai::ParseErrorType::ModuleUndefined(m) => Some(format!("no module `{m}`: check the import path")),
        _ => None,
    };
    (msg, help)
}

fn describe_eval(err: &EvalAltResult) -> (String, String, Option<String>, ScriptErrorKind) {
    use EvalAltResult as E;
    use ScriptErrorKind::*;
    match err {
        E::ErrorFunctionNotFound(sig, _) => {
            let name = sig.split(" (").next().unwrap_or(sig).trim();
            if let Some(expected) = signature_of(name) {
                (
                    format!("wrong arguments for host function `{name}`: called as `{sig}`"),
                    "called here".into(),
                    Some(format!("expected: {expected}")),
                    Runtime,
                )
            } else {
                let suggestion = closest_host_function(name)
                    .map(|s| format!("did you mean `{s}`? host functions are listed in docs/host-api.md"))
                    .or_else(|| Some("host functions are listed in docs/host-api.md".into()));
                (format!("unknown function `{sig}`"), "not a host or script function".into(), suggestion, Runtime)
            }
        }
        E::ErrorTooManyOperations(_) => (
            "the script exceeded its operation limit: an endless loop?".into(),
            "still running here".into(),
            Some("a coordinator only routes; if this work is real, raise the limit with --max-operations".into()),
            Runtime,
        ),
        E::ErrorStackOverflow(_) => (
            "call depth limit reached: runaway recursion?".into(),
            "recursing here".into(),
            Some("recursion deeper than the engine's call-level limit is refused".into()),
            Runtime,
        ),
        E::ErrorDataTooLarge(what, _) => {
            (format!("{what} exceeds the engine's size limit"), "here".into(), None, Runtime)
        }
        E::ErrorRuntime(value, _) if value.is::<ApiMisuse>() => {
            let ApiMisuse(message) = value.clone_cast::<ApiMisuse>();
            // "f: what is wrong; help" puts the help where a diagnostic shows it.
            let (message, help) = match message.split_once("; ") {
                Some((m, h)) => (m.to_owned(), Some(h.to_owned())),
                None => (message, None),
            };
            (message, "called here".into(), help, Runtime)
        }
        E::ErrorRuntime(value, _) => (format!("the script threw: {value}"), "thrown here".into(), None, Thrown),
        E::ErrorSystem(msg, _) => (msg.clone(), "here".into(), None, Runtime),
        E::ErrorModuleNotFound(m, _) => {
            (format!("cannot import `{m}`: no such module"), "imported here".into(), None, Runtime)
        }
        other => (other.to_string(), "here".into(), None, Runtime),
    }
}

fn closest_host_function(name: &str) -> Option<&'static str> {
    HOST_FUNCTIONS
        .iter()
        .map(|(n, _)| *n)
        .map(|n| (strsim_distance(name, n), n))
        .filter(|(d, n)| *d <= 3.max(n.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

/// Levenshtein distance, for "did you mean" hints.
pub fn strsim_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_suggestions() {
        let src = "let a = 1;\nlet b = spawn_sesion(\"x\");\n";
        assert_eq!(offset_of(src, 2, 9), 19);
        assert_eq!(&src[19..19 + token_len(&src[19..])], "spawn_sesion");
        assert_eq!(closest_host_function("spawn_sesion"), Some("spawn_session"));
        assert_eq!(closest_host_function("completely_different"), None);
    }
}
