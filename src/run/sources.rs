//! Phase one of a run: load everything a user wrote that the run needs before it may create
//! anything (the script, its imports, the project's config) and compile the script on a
//! sandboxed engine with the host API registered.
//!
//! It must not create a run directory or touch a journal: a bad file leaves nothing behind.

use super::project::Project;
use super::{coordinator_name, RunPlan, SetupError, STOP_INTERRUPTED};
use crate::config::Config;
use crate::script::host_api::{self, HostCell};
use crate::script::ScriptEngine;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

/// The script compiled, and what it was compiled from.
pub(super) struct Sources {
    pub script: PathBuf,
    pub source: String,
    pub project: Project,
    pub coordinator: String,
    pub config: Config,
    pub engine: rhai::Engine,
    pub ast: rhai::AST,
    /// Where the host goes once the run directory exists; the engine's host calls reach it.
    pub cell: Rc<HostCell>,
}

impl Sources {
    /// Reads and compiles `plan.script`; every import is resolved and loaded here.
    pub fn load(plan: &RunPlan, interrupt: &Arc<crate::scheduler::Interrupt>) -> Result<Self, SetupError> {
        let script = plan.script.clone();
        let source = std::fs::read_to_string(&script)
            .map_err(|e| SetupError::Usage(format!("cannot read script {}: {e}", script.display())))?;
        let project = Project::discover(&script);
        let coordinator = coordinator_name(&script);
        let config = Config::load(&project.root).map_err(|e| SetupError::Scenario(Box::new(e)))?;

        let cell: Rc<HostCell> = Rc::new(HostCell::default());
        // `--max-heap` wins over the project's `[run] max_heap`.
        let mut limits = plan.limits;
        limits.max_heap = limits.max_heap.or(config.file.run.max_heap);
        let mut engine = ScriptEngine::build(limits);
        let resolver = project.module_resolver(&script);
        engine.set_module_resolver(resolver.clone());
        let main_source = script.display().to_string();
        host_api::register(&mut engine, cell.clone(), main_source.clone());
        if let Some(hits) = &plan.coverage {
            crate::script::coverage::record(&mut engine, main_source, hits.clone());
        }
        stop_between_operations(&mut engine, limits.max_heap_bytes(), interrupt.clone());
        let ast = crate::script::module_resolver::compile_script(&engine, &resolver, &script, &source)?.ast;
        Ok(Sources { script, source, project, coordinator, config, engine, ast, cell })
    }
}

/// Between operations: stop for a graceful stop, or when the heap outgrows its budget. The
/// check runs on the script thread, so it sees the script thread's own allocations; it catches
/// growth a little at a time, while a single call that would allocate past the budget is
/// refused before it allocates (`heap_budget.rs`).
fn stop_between_operations(
    engine: &mut rhai::Engine,
    max_heap_bytes: usize,
    interrupt: Arc<crate::scheduler::Interrupt>,
) {
    let heap = crate::script::heap_budget::HeapBudget::starting_now(max_heap_bytes);
    engine.on_progress(move |_| {
        if interrupt.is_set() {
            Some(rhai::Dynamic::from(STOP_INTERRUPTED))
        } else if heap.is_exceeded() {
            Some(heap.exhausted_token())
        } else {
            None
        }
    });
}
