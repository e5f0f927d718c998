//! Checks every function call in a compiled script and its modules, by walking the AST: the
//! function exists with that many arguments (host API, standard Rhai packages, functions the
//! file defines, functions of the modules it imports), and every workflow named in a string
//! literal exists (`spawn_session("name", ..)`, any script function's `workflow` or
//! `*_workflow` parameter, and `classify`'s own workflow).
//!
//! Only arity is checked: Rhai resolves overloads by type at run time. It must not evaluate
//! anything.

use super::problem::Problem;
use crate::script::diagnostic::strsim_distance;
use crate::script::host_api::{signature_of, HOST_FUNCTIONS};
use crate::script::module_resolver::{CompiledScript, ScriptFile};
use crate::script::option_keys;
use crate::workflow::WorkflowSet;
use rhai::{ASTNode, Expr, FnCallExpr, Stmt};
use rhai::{Engine, Position};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Functions Rhai handles itself, whatever the engine registers.
const KEYWORD_FUNCTIONS: &[&str] = &[
    "print",
    "debug",
    "type_of",
    "eval",
    "Fn",
    "call",
    "curry",
    "is_shared",
    "is_def_fn",
    "is_def_var",
    "this",
    "global",
];

/// The workflow `classify()` runs.
pub const CLASSIFY_WORKFLOW: &str = "classify";

/// Every function the engine knows, by namespace (`""` for the global one) and name.
pub struct FunctionCatalog {
    native: BTreeMap<(String, String), BTreeSet<usize>>,
}

impl FunctionCatalog {
    pub fn from_engine(engine: &Engine) -> Self {
        let mut native: BTreeMap<(String, String), BTreeSet<usize>> = BTreeMap::new();
        let entries = engine.collect_fn_metadata(
            None,
            |info| Some((info.namespace.to_string(), info.metadata.name.to_string(), info.metadata.num_params)),
            true,
        );
        for (ns, name, arity) in entries {
            native.entry((ns, name)).or_default().insert(arity);
        }
        FunctionCatalog { native }
    }

    fn arities(&self, namespace: &str, name: &str) -> Option<&BTreeSet<usize>> {
        self.native.get(&(namespace.to_owned(), name.to_owned()))
    }

    fn has_namespace(&self, namespace: &str) -> bool {
        self.native.keys().any(|(ns, _)| ns == namespace)
    }
}

/// A script function: name and parameter names.
#[derive(Clone, Debug)]
struct ScriptFn {
    name: String,
    params: Vec<String>,
}

fn script_functions(file: &ScriptFile, public_only: bool) -> Vec<ScriptFn> {
    file.ast
        .iter_functions()
        .filter(|f| !public_only || f.access == rhai::FnAccess::Public)
        .map(|f| ScriptFn { name: f.name.to_owned(), params: f.params.iter().map(|p| p.to_string()).collect() })
        .collect()
}

/// Checks the calls in every file of `compiled` not already in `seen` (modules shared by
/// several scripts are checked once).
/// `named` collects every workflow a string literal names (the ones a run can reach, as far
/// as the script says without running).
pub fn check_calls(
    compiled: &CompiledScript,
    catalog: &FunctionCatalog,
    workflows: &WorkflowSet,
    seen: &mut HashSet<String>,
    problems: &mut Vec<Problem>,
    named: &mut BTreeSet<String>,
) {
    for file in &compiled.files {
        if seen.insert(file.name.clone()) {
            check_file(file, compiled, catalog, workflows, problems, named);
        }
    }
}

struct Call {
    call: FnCallExpr,
    pos: Position,
    method: bool,
}

fn check_file(
    file: &ScriptFile,
    compiled: &CompiledScript,
    catalog: &FunctionCatalog,
    workflows: &WorkflowSet,
    problems: &mut Vec<Problem>,
    named: &mut BTreeSet<String>,
) {
    let own = script_functions(file, false);
    let modules: BTreeMap<String, Vec<ScriptFn>> = file
        .imports
        .iter()
        .filter_map(|i| {
            let alias = i.alias.clone()?;
            let target = compiled.file(&i.target)?;
            Some((alias, script_functions(target, true)))
        })
        .collect();
    let variables = declared_names(file);

    let mut calls = Vec::new();
    file.ast.walk(&mut |path: &[ASTNode]| {
        match path.last() {
            Some(ASTNode::Expr(Expr::FnCall(x, pos))) | Some(ASTNode::Stmt(Stmt::FnCall(x, pos))) => {
                calls.push(Call { call: (**x).clone(), pos: *pos, method: false })
            }
            Some(ASTNode::Expr(Expr::MethodCall(x, pos))) => {
                calls.push(Call { call: (**x).clone(), pos: *pos, method: true })
            }
            _ => {}
        }
        true
    });

    let checker = FileChecker {
        file,
        own: &own,
        modules: &modules,
        catalog,
        workflows,
        variables: &variables,
        named: std::cell::RefCell::default(),
    };
    for c in calls {
        checker.check(&c, problems);
    }
    named.extend(checker.named.into_inner());
}

struct FileChecker<'a> {
    file: &'a ScriptFile,
    own: &'a [ScriptFn],
    modules: &'a BTreeMap<String, Vec<ScriptFn>>,
    catalog: &'a FunctionCatalog,
    workflows: &'a WorkflowSet,
    variables: &'a HashSet<String>,
    named: std::cell::RefCell<BTreeSet<String>>,
}

impl FileChecker<'_> {
    fn problem(&self, code: &'static str, pos: Position, len: usize, message: String, help: Option<String>) -> Problem {
        Problem::at_position(code, &self.file.path, &self.file.text, pos, len, message, help)
    }

    fn check(&self, c: &Call, problems: &mut Vec<Problem>) {
        let x = &c.call;
        let name = x.name.as_str();
        if x.is_operator_call()
            || !name.starts_with(|ch: char| ch.is_alphabetic() || ch == '_')
            || KEYWORD_FUNCTIONS.contains(&name)
        {
            return;
        }
        let n = x.args.len();
        if x.namespace.is_empty() {
            if c.method {
                self.check_method(c, name, n, problems);
            } else {
                self.check_plain(c, name, n, problems);
            }
        } else {
            self.check_namespaced(c, name, n, problems);
        }
    }

    fn check_plain(&self, c: &Call, name: &str, n: usize, problems: &mut Vec<Problem>) {
        let script: Vec<&ScriptFn> = self.own.iter().filter(|f| f.name == name).collect();
        if let Some(f) = script.iter().find(|f| f.params.len() == n) {
            self.check_workflow_params(c, &f.params, 0, problems);
            return;
        }
        let native = self.catalog.arities("", name);
        if native.is_some_and(|a| a.contains(&n)) {
            match name {
                "spawn_session" => self.check_workflow_arg(c, 0, problems),
                "classify" => self.require_workflow(c.pos, name.len(), CLASSIFY_WORKFLOW, problems),
                _ => {}
            }
            self.check_literal_keys(c, name, problems);
            return;
        }
        if script.is_empty() && native.is_none() && self.variables.contains(name) {
            // A variable holding a function pointer, called like a function.
            return;
        }
        let mut arities: BTreeSet<usize> = script.iter().map(|f| f.params.len()).collect();
        arities.extend(native.into_iter().flatten());
        if arities.is_empty() {
            let candidates = HOST_FUNCTIONS.iter().map(|(n, _)| *n).chain(self.own.iter().map(|f| f.name.as_str()));
            let help = match closest(name, candidates) {
                Some(s) => format!("did you mean `{s}`? docs/coordinators.md lists the host functions"),
                None => "not a host function, a Rhai function or a function this file defines; docs/coordinators.md lists the host functions".into(),
            };
            problems.push(self.problem(
                "coord::check::unknown-function",
                c.pos,
                name.len(),
                format!("unknown function `{name}`"),
                Some(help),
            ));
        } else {
            let help = signature_of(name)
                .map(|s| format!("signature: {s}"))
                .or_else(|| script.first().map(|f| format!("defined as: fn {}({})", f.name, f.params.join(", "))));
            problems.push(self.problem(
                "coord::check::wrong-arity",
                c.pos,
                name.len(),
                format!("`{name}` takes {} arguments, not {n}", describe_arities(&arities)),
                help,
            ));
        }
    }

    fn check_method(&self, c: &Call, name: &str, n: usize, problems: &mut Vec<Problem>) {
        // `x.f(a)` calls a native `f(x, a)`, or a script `f(a)` with `this` = x, or `f(x, a)`.
        if self.own.iter().any(|f| f.name == name && (f.params.len() == n || f.params.len() == n + 1)) {
            return;
        }
        let native = self.catalog.arities("", name);
        if native.is_some_and(|a| a.contains(&(n + 1))) {
            return;
        }
        if native.is_none() && !self.own.iter().any(|f| f.name == name) {
            if self.variables.contains(name) {
                // A map property holding a function pointer, called as a method.
                return;
            }
            let candidates = self.catalog.native.keys().filter(|(ns, _)| ns.is_empty()).map(|(_, n)| n.as_str());
            let help = closest(name, candidates).map(|s| format!("did you mean `{s}`?"));
            problems.push(self.problem(
                "coord::check::unknown-function",
                c.pos,
                name.len(),
                format!("unknown method `{name}`"),
                help,
            ));
        } else {
            let arities: BTreeSet<usize> = native.into_iter().flatten().map(|a| a.saturating_sub(1)).collect();
            problems.push(self.problem(
                "coord::check::wrong-arity",
                c.pos,
                name.len(),
                format!("method `{name}` takes {} arguments, not {n}", describe_arities(&arities)),
                None,
            ));
        }
    }

    fn check_namespaced(&self, c: &Call, name: &str, n: usize, problems: &mut Vec<Problem>) {
        let path = &c.call.namespace.path;
        if path.len() != 1 {
            return;
        }
        let root = path[0].name.as_str();
        let qualified = format!("{root}::{name}");
        // The position is the function name's, after the namespace.
        let len = name.len();
        if root == "global" {
            if !self.own.iter().any(|f| f.name == name && f.params.len() == n) {
                problems.push(self.problem(
                    "coord::check::unknown-function",
                    c.pos,
                    len,
                    format!("unknown function `{qualified}`"),
                    None,
                ));
            }
            return;
        }
        if let Some(functions) = self.modules.get(root) {
            let same_name: Vec<&ScriptFn> = functions.iter().filter(|f| f.name == name).collect();
            if let Some(f) = same_name.iter().find(|f| f.params.len() == n) {
                self.check_workflow_params(c, &f.params, 0, problems);
            } else if same_name.is_empty() {
                let help = closest(name, functions.iter().map(|f| f.name.as_str()))
                    .map(|s| format!("did you mean `{root}::{s}`?"))
                    .or_else(|| Some(format!("the module imported as `{root}` has no public function `{name}`")));
                problems.push(self.problem(
                    "coord::check::unknown-function",
                    c.pos,
                    len,
                    format!("unknown function `{qualified}`"),
                    help,
                ));
            } else {
                let arities = same_name.iter().map(|f| f.params.len()).collect();
                let help = Some(format!("defined as: fn {name}({})", same_name[0].params.join(", ")));
                problems.push(self.problem(
                    "coord::check::wrong-arity",
                    c.pos,
                    len,
                    format!("`{qualified}` takes {} arguments, not {n}", describe_arities(&arities)),
                    help,
                ));
            }
            return;
        }
        if self.catalog.has_namespace(root) {
            match self.catalog.arities(root, name) {
                Some(a) if a.contains(&n) => self.check_literal_keys(c, &qualified, problems),
                Some(a) => problems.push(self.problem(
                    "coord::check::wrong-arity",
                    c.pos,
                    len,
                    format!("`{qualified}` takes {} arguments, not {n}", describe_arities(a)),
                    signature_of(&qualified).map(|s| format!("signature: {s}")),
                )),
                None => {
                    let candidates =
                        HOST_FUNCTIONS.iter().map(|(n, _)| *n).filter(|n| n.starts_with(&format!("{root}::")));
                    let help = closest(&qualified, candidates).map(|s| format!("did you mean `{s}`?"));
                    problems.push(self.problem(
                        "coord::check::unknown-function",
                        c.pos,
                        len,
                        format!("unknown function `{qualified}`"),
                        help,
                    ));
                }
            }
            return;
        }
        problems.push(self.problem(
            "coord::check::unknown-module",
            c.pos,
            root.len(),
            format!("unknown module `{root}` in `{qualified}`"),
            Some("import it first: `import \"stdlib/...\" as name;`".into()),
        ));
    }

    /// Workflow names passed as string literals to parameters named `workflow` or `*_workflow`.
    /// The keys of a map literal given to a host function that takes a closed set of them
    /// (`spawn_session`'s options, `notify`'s message ...; see `option_keys`).
    fn check_literal_keys(&self, c: &Call, function: &str, problems: &mut Vec<Problem>) {
        for (f, index, allowed, what) in option_keys::MAP_ARGUMENTS {
            if *f != function {
                continue;
            }
            // A map of constants is folded into one constant: its keys point at the map.
            let keys: Vec<(String, Position, usize)> = match c.call.args.get(*index) {
                Some(Expr::Map(map, _)) => {
                    map.0.iter().map(|(ident, _)| (ident.name.to_string(), ident.pos, ident.name.len())).collect()
                }
                Some(Expr::DynamicConstant(value, pos)) => match value.read_lock::<rhai::Map>() {
                    Some(map) => map.keys().map(|k| (k.to_string(), *pos, 2)).collect(),
                    None => continue,
                },
                _ => continue,
            };
            for (key, pos, len) in keys {
                if let Some((message, help)) = option_keys::refusal(function, what, &key, allowed) {
                    problems.push(self.problem("coord::check::unknown-key", pos, len, message, Some(help)));
                }
            }
        }
    }

    fn check_workflow_params(&self, c: &Call, params: &[String], skip: usize, problems: &mut Vec<Problem>) {
        for (i, p) in params.iter().enumerate().skip(skip) {
            if p == "workflow" || p.ends_with("_workflow") {
                self.check_workflow_arg(c, i, problems);
            }
        }
    }

    fn check_workflow_arg(&self, c: &Call, index: usize, problems: &mut Vec<Problem>) {
        if let Some(Expr::StringConstant(s, pos)) = c.call.args.get(index) {
            self.require_workflow(*pos, s.len() + 2, s, problems);
        }
    }

    fn require_workflow(&self, pos: Position, len: usize, name: &str, problems: &mut Vec<Problem>) {
        if self.workflows.find_path(name).is_some() {
            self.named.borrow_mut().insert(name.to_owned());
            return;
        }
        let names = self.workflows.names();
        let searched =
            self.workflows.dirs().iter().map(|d| crate::library::display_path(d)).collect::<Vec<_>>().join(", ");
        let help = match closest(name, names.iter().map(String::as_str)) {
            Some(s) => format!("did you mean `{s}`? looked in {searched}"),
            None => format!("looked for {name}.toml in {searched}"),
        };
        problems.push(self.problem(
            "coord::check::unknown-workflow",
            pos,
            len,
            format!("no workflow `{name}`"),
            Some(help),
        ));
    }
}

/// Names declared as variables, loop variables or parameters anywhere in the file, and map
/// keys (a property may hold a function pointer).
fn declared_names(file: &ScriptFile) -> HashSet<String> {
    let mut names: HashSet<String> =
        file.ast.iter_functions().flat_map(|f| f.params.iter().map(|p| p.to_string()).collect::<Vec<_>>()).collect();
    file.ast.walk(&mut |path: &[ASTNode]| {
        match path.last() {
            Some(ASTNode::Stmt(Stmt::Var(x, ..))) => {
                names.insert(x.0.name.to_string());
            }
            Some(ASTNode::Expr(Expr::Map(x, _))) => {
                names.extend(x.0.iter().map(|(key, _)| key.name.to_string()));
            }
            // A map literal of constants (closures without captures included) is folded.
            Some(ASTNode::Expr(Expr::DynamicConstant(v, _))) => {
                if let Some(map) = v.read_lock::<rhai::Map>() {
                    names.extend(map.keys().map(|k| k.to_string()));
                }
            }
            Some(ASTNode::Stmt(Stmt::For(x, ..))) => {
                names.insert(x.0.name.to_string());
                if let Some(counter) = &x.1 {
                    names.insert(counter.name.to_string());
                }
            }
            _ => {}
        }
        true
    });
    names
}

fn describe_arities(arities: &BTreeSet<usize>) -> String {
    let list: Vec<String> = arities.iter().map(usize::to_string).collect();
    match list.len() {
        0 => "no".into(),
        1 => list[0].clone(),
        _ => format!("{} or {}", list[..list.len() - 1].join(", "), list[list.len() - 1]),
    }
}

fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (strsim_distance(name, c), c))
        .filter(|(d, c)| *d > 0 && *d <= 3.max(c.len() / 3))
        .min_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(b.1)))
        .map(|(_, c)| c)
}
