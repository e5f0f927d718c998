//! Resolves a coordinator's `import`s: relative imports next to the importing file, `stdlib/*`
//! through the library path then the built-in standard library, and `team/...`-style imports
//! through the library path (the order is documented in [`crate::library`]).
//!
//! [`compile_script`] resolves every import before anything runs: a missing module, a module
//! that does not compile and an import path that is not a string literal are diagnostics at
//! the importing file's `file:line:col`. Modules are evaluated once and cached, so the run's own
//! `import` statements find them without touching the file system again. This module must not
//! run host calls: a module whose top level calls the host fails to load.

use super::diagnostic::{ScriptDiagnostic, ScriptErrorKind};
use crate::library::{LibraryPath, ModuleLocation};
use rhai::module_resolvers::ModuleResolver;
use rhai::{ASTNode, Expr, Stmt};
use rhai::{Engine, EvalAltResult, Module, Position, Scope, Shared, AST};

type SharedModule = Shared<Module>;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// One file of a compiled script: the main script or a module it imports (directly or not).
#[derive(Clone, Debug)]
pub struct ScriptFile {
    /// The name its code goes by in diagnostics and call sites.
    pub name: String,
    /// Where the text came from, or where diagnostics should say it came from.
    pub path: PathBuf,
    /// True for a built-in `stdlib/*` module.
    pub builtin: bool,
    pub text: String,
    pub ast: AST,
    pub imports: Vec<ResolvedImport>,
}

/// An `import "path" as alias` and the file it resolved to.
#[derive(Clone, Debug)]
pub struct ResolvedImport {
    pub path: String,
    pub alias: Option<String>,
    /// The [`ScriptFile::name`] of the module.
    pub target: String,
    pub pos: Position,
}

/// A script compiled with every import resolved and loaded.
#[derive(Debug)]
pub struct CompiledScript {
    pub ast: AST,
    /// The main script first, then every module in the order it was first imported.
    pub files: Vec<ScriptFile>,
}

impl CompiledScript {
    pub fn file(&self, name: &str) -> Option<&ScriptFile> {
        self.files.iter().find(|f| f.name == name)
    }
}

/// The engine's module resolver. Cheap to clone: clones share the cache.
#[derive(Clone)]
pub struct ScriptModuleResolver {
    state: Rc<ResolverState>,
}

struct ResolverState {
    library: LibraryPath,
    script_dir: PathBuf,
    main_source: String,
    /// Evaluated modules by source name.
    modules: RefCell<HashMap<String, SharedModule>>,
    /// Source names being evaluated, outermost first (an import cycle shows here).
    loading: RefCell<Vec<String>>,
}

impl ScriptModuleResolver {
    /// A resolver for the script whose source name is `main_source`, in `script_dir`.
    pub fn new(library: LibraryPath, script_dir: PathBuf, main_source: String) -> Self {
        ScriptModuleResolver {
            state: Rc::new(ResolverState {
                library,
                script_dir,
                main_source,
                modules: RefCell::default(),
                loading: RefCell::default(),
            }),
        }
    }

    pub fn library(&self) -> &LibraryPath {
        &self.state.library
    }

    /// The folder relative imports in the file named `source` resolve against.
    fn importer_dir(&self, source: Option<&str>) -> PathBuf {
        match source {
            Some(s) if s != self.state.main_source && !s.starts_with(crate::library::stdlib::BUILTIN_PREFIX) => {
                Path::new(s).parent().filter(|p| !p.as_os_str().is_empty()).map(Path::to_path_buf).unwrap_or_default()
            }
            _ => self.state.script_dir.clone(),
        }
    }

    fn load(
        &self,
        engine: &Engine,
        location: &ModuleLocation,
        path: &str,
        pos: Position,
    ) -> Result<SharedModule, Box<EvalAltResult>> {
        let name = location.source_name();
        if let Some(m) = self.state.modules.borrow().get(&name) {
            return Ok(m.clone());
        }
        if self.state.loading.borrow().contains(&name) {
            let mut chain = self.state.loading.borrow().clone();
            chain.push(name.clone());
            let msg = format!("import cycle: {}", chain.join(" -> "));
            return Err(EvalAltResult::ErrorInModule(path.to_owned(), system_error(msg), pos).into());
        }
        let text = location.text().map_err(|e| {
            Box::new(EvalAltResult::ErrorInModule(
                path.to_owned(),
                system_error(format!("cannot read {name}: {e}")),
                pos,
            ))
        })?;
        let mut ast =
            engine.compile(&text).map_err(|e| Box::new(EvalAltResult::ErrorInModule(name.clone(), e.into(), pos)))?;
        ast.set_source(name.as_str());
        self.state.loading.borrow_mut().push(name.clone());
        let evaluated = Module::eval_ast_as_new(Scope::new(), &ast, engine);
        self.state.loading.borrow_mut().pop();
        let module: SharedModule =
            evaluated.map_err(|e| Box::new(EvalAltResult::ErrorInModule(name.clone(), e, pos)))?.into();
        self.state.modules.borrow_mut().insert(name, module.clone());
        Ok(module)
    }
}

impl ModuleResolver for ScriptModuleResolver {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<SharedModule, Box<EvalAltResult>> {
        let dir = self.importer_dir(source);
        let location = self
            .state
            .library
            .locate(path, &dir)
            .map_err(|_| Box::new(EvalAltResult::ErrorModuleNotFound(path.to_owned(), pos)))?;
        self.load(engine, &location, path, pos)
    }
}

/// Compiles the script at `script_path` (text `source`), resolves and loads every import it
/// makes directly or through its modules, and returns the AST ready to run.
pub fn compile_script(
    engine: &Engine,
    resolver: &ScriptModuleResolver,
    script_path: &Path,
    source: &str,
) -> Result<CompiledScript, Box<ScriptDiagnostic>> {
    let mut ast =
        engine.compile(source).map_err(|e| Box::new(ScriptDiagnostic::from_parse(&e, script_path, source)))?;
    let main_name = resolver.state.main_source.clone();
    ast.set_source(main_name.as_str());
    let main = ScriptFile {
        name: main_name.clone(),
        path: script_path.to_owned(),
        builtin: false,
        text: source.to_owned(),
        ast: ast.clone(),
        imports: Vec::new(),
    };
    let mut files = vec![main];
    let mut next = 0;
    while next < files.len() {
        let imports = import_statements(&files[next].ast);
        let importer_dir = resolver.importer_dir(Some(&files[next].name));
        let mut resolved = Vec::new();
        for import in imports {
            let at = |message: String, help: Option<String>| {
                let file = &files[next];
                let (line, col) = (import.pos.line().unwrap_or(0), import.pos.position().unwrap_or(0));
                Box::new(ScriptDiagnostic::at(
                    &file.path,
                    &file.text,
                    line,
                    col,
                    message,
                    help,
                    ScriptErrorKind::Syntax,
                ))
            };
            let Some(path) = import.path else {
                return Err(at(
                    "the import path must be a string literal".into(),
                    Some("imports are resolved before the run starts, so the path cannot be computed".into()),
                ));
            };
            let location = resolver
                .state
                .library
                .locate(&path, &importer_dir)
                .map_err(|missing| at(format!("cannot import `{path}`: no such module"), Some(missing.help())))?;
            let name = location.source_name();
            if !files.iter().any(|f| f.name == name) {
                files.push(read_module(engine, &location, &name, &path).map_err(|e| match e {
                    ModuleReadError::Io(msg) => at(msg, None),
                    ModuleReadError::Parse(d) => d,
                })?);
            }
            resolved.push(ResolvedImport { path, alias: import.alias, target: name, pos: import.pos });
        }
        files[next].imports = resolved;
        next += 1;
    }
    // Evaluate the modules now (their top level runs once), so an error in one stops the run
    // before it starts, and the run's imports come from the cache.
    for import in files[0].imports.clone() {
        resolver
            .resolve(engine, Some(&main_name), &import.path, import.pos)
            .map_err(|e| Box::new(module_error(&e, script_path, source)))?;
    }
    Ok(CompiledScript { ast, files })
}

enum ModuleReadError {
    Io(String),
    Parse(Box<ScriptDiagnostic>),
}

fn read_module(
    engine: &Engine,
    location: &ModuleLocation,
    name: &str,
    import: &str,
) -> Result<ScriptFile, ModuleReadError> {
    let text = location.text().map_err(|e| ModuleReadError::Io(format!("cannot read `{import}` ({name}): {e}")))?;
    let path = match location {
        ModuleLocation::File(p) => p.clone(),
        ModuleLocation::Builtin(_) => PathBuf::from(name),
    };
    let mut ast = engine
        .compile(&text)
        .map_err(|e| ModuleReadError::Parse(Box::new(ScriptDiagnostic::from_parse(&e, Path::new(name), &text))))?;
    ast.set_source(name);
    Ok(ScriptFile {
        name: name.to_owned(),
        path,
        builtin: matches!(location, ModuleLocation::Builtin(_)),
        text,
        ast,
        imports: Vec::new(),
    })
}

/// A diagnostic for an error raised while evaluating a module, pointing into that module.
fn module_error(err: &EvalAltResult, script_path: &Path, source: &str) -> ScriptDiagnostic {
    let mut diag = ScriptDiagnostic::from_eval(err, script_path, source);
    // A module's top level runs at compile time: whatever it did wrong, the script is at fault.
    if diag.kind == ScriptErrorKind::Thrown {
        diag.kind = ScriptErrorKind::Runtime;
    }
    diag
}

fn system_error(msg: String) -> Box<EvalAltResult> {
    EvalAltResult::ErrorSystem(msg, Box::new(std::io::Error::other("module resolution"))).into()
}

struct ImportStatement {
    /// None when the path is not a string literal.
    path: Option<String>,
    alias: Option<String>,
    pos: Position,
}

/// Every `import` in an AST, in function bodies too, in source order.
fn import_statements(ast: &AST) -> Vec<ImportStatement> {
    let mut found = Vec::new();
    ast.walk(&mut |path: &[ASTNode]| {
        if let Some(ASTNode::Stmt(Stmt::Import(x, pos))) = path.last() {
            let (expr, alias) = &**x;
            let alias = (!alias.name.is_empty()).then(|| alias.name.to_string());
            let import = match expr {
                Expr::StringConstant(s, p) => ImportStatement { path: Some(s.to_string()), alias, pos: *p },
                other => ImportStatement {
                    path: None,
                    alias,
                    pos: if other.position().is_none() { *pos } else { other.position() },
                },
            };
            found.push(import);
        }
        true
    });
    found.sort_by_key(|i| (i.pos.line(), i.pos.position()));
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::ScriptEngine;

    fn compile(dir: &Path, main: &str) -> Result<CompiledScript, Box<ScriptDiagnostic>> {
        let script = dir.join("main.rhai");
        std::fs::write(&script, main).unwrap();
        let mut engine = ScriptEngine::build(Default::default());
        let resolver = ScriptModuleResolver::new(LibraryPath::default(), dir.to_owned(), script.display().to_string());
        engine.set_module_resolver(resolver.clone());
        compile_script(&engine, &resolver, &script, main)
    }

    #[test]
    fn builtins_and_relative_modules_load_once() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("lib")).unwrap();
        std::fs::write(tmp.path().join("lib/a.rhai"), "import \"./b\" as b;\nfn a() { b::b() + 1 }\n").unwrap();
        std::fs::write(
            tmp.path().join("lib/b.rhai"),
            "import \"stdlib/text\" as text;\nfn b() { text::plural(2, \"x\").len() }\n",
        )
        .unwrap();
        let compiled = compile(tmp.path(), "import \"lib/a\" as a;\nimport \"stdlib/text\" as t;\na::a()\n").unwrap();
        let names: Vec<&str> = compiled.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names.len(), 4, "each module once, the main script first: {names:?}");
        assert_eq!(names.iter().filter(|n| n.starts_with("builtin:stdlib/text")).count(), 1, "{names:?}");
        assert!(names[3].ends_with("lib/b.rhai"), "breadth first: {names:?}");
        assert_eq!(compiled.files[0].imports.len(), 2);
        assert_eq!(compiled.files[0].imports[0].alias.as_deref(), Some("a"));
    }

    #[test]
    fn missing_and_dynamic_imports_point_at_the_import() {
        let tmp = tempfile::tempdir().unwrap();
        let err = compile(tmp.path(), "let x = 1;\nimport \"team/nope\" as nope;\n").unwrap_err();
        assert!(err.message.contains("main.rhai:2:8"), "{}", err.message);
        assert!(err.help.as_deref().unwrap_or("").contains("team/nope.rhai"), "{:?}", err.help);
        let err = compile(tmp.path(), "let p = \"x\";\nimport p as q;\n").unwrap_err();
        assert!(err.message.contains("string literal"), "{}", err.message);
    }

    #[test]
    fn errors_inside_modules_name_the_module() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("bad.rhai"), "fn ok() { 1 }\nlet x = (;\n").unwrap();
        let err = compile(tmp.path(), "import \"bad\" as bad;\n").unwrap_err();
        assert!(err.message.contains("bad.rhai:2:"), "{}", err.message);
        std::fs::write(tmp.path().join("loud.rhai"), "fn ok() { 1 }\nthrow \"no\";\n").unwrap();
        let err = compile(tmp.path(), "import \"loud\" as loud;\n").unwrap_err();
        assert!(err.message.contains("loud.rhai:2:"), "{}", err.message);
        std::fs::write(tmp.path().join("c1.rhai"), "import \"c2\" as c2;\n").unwrap();
        std::fs::write(tmp.path().join("c2.rhai"), "import \"c1\" as c1;\n").unwrap();
        let err = compile(tmp.path(), "import \"c1\" as c1;\n").unwrap_err();
        assert!(err.message.contains("import cycle"), "{}", err.message);
    }
}
