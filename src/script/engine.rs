//! Builds the sandboxed Rhai engine: only pure packages, no `eval`, no clock or sleep, and hard
//! limits on operations, call depth and heap, so a runaway script ends with an error quickly
//! and deterministically (the limits count operations and bytes, never wall time).

use super::heap_budget::{self, HeapBudget};
use rhai::packages::{
    ArithmeticPackage, BasicArrayPackage, BasicFnPackage, BasicIteratorPackage, BasicMapPackage, BasicMathPackage,
    BasicStringPackage, BitFieldPackage, LanguageCorePackage, LogicPackage, MoreStringPackage, Package,
};
use rhai::{Engine, EvalAltResult, Module};

/// The limits that stop a runaway script. Sizes of strings, arrays and maps are bounded
/// together, by the heap the script's thread may grow by while the script runs
/// (`max_heap_bytes`, kept by `heap_budget.rs`). Rhai's own size limits are left unset: setting
/// any of them makes Rhai re-measure a whole nested value after every change (every `push`),
/// which makes ordinary list building quadratic.
#[derive(Clone, Copy, Debug)]
pub struct EngineLimits {
    pub max_operations: u64,
    pub max_call_levels: usize,
    pub max_expr_depth: usize,
    pub max_heap_bytes: usize,
}

impl Default for EngineLimits {
    fn default() -> Self {
        EngineLimits {
            // About a second of routing in a release build; groom-prs over 10,000 PRs uses a
            // fraction of it. Raise with --max-operations for bigger worlds.
            max_operations: 50_000_000,
            max_call_levels: 48,
            max_expr_depth: 64,
            // Far above what routing needs (a 10,000-PR run holds about 150 MB), far below
            // what takes the machine down.
            max_heap_bytes: 1024 * 1024 * 1024,
        }
    }
}

/// Stack for the script thread: deep enough that `max_call_levels` is always reached before
/// the native stack runs out, even in debug builds.
pub const SCRIPT_THREAD_STACK: usize = 256 * 1024 * 1024;

pub struct ScriptEngine;

impl ScriptEngine {
    pub fn build(limits: EngineLimits) -> Engine {
        let mut engine = Engine::new_raw();
        for package in [
            LanguageCorePackage::new().as_shared_module(),
            ArithmeticPackage::new().as_shared_module(),
            LogicPackage::new().as_shared_module(),
            BasicStringPackage::new().as_shared_module(),
            MoreStringPackage::new().as_shared_module(),
            BasicIteratorPackage::new().as_shared_module(),
            BasicArrayPackage::new().as_shared_module(),
            BasicMapPackage::new().as_shared_module(),
            BasicMathPackage::new().as_shared_module(),
            BasicFnPackage::new().as_shared_module(),
            BitFieldPackage::new().as_shared_module(),
        ] {
            engine.register_global_module(package);
        }
        // Over the packages' own: the functions that would allocate past the heap budget in
        // one call refuse first (`heap_budget.rs`).
        engine.register_global_module(
            heap_budget::checked_functions(HeapBudget::starting_now(limits.max_heap_bytes)).into(),
        );
        // Registered last so it shadows the core package's `sleep`: a script must not block on
        // wall time, and has no clock but the journaled `now()`.
        let mut sandbox = Module::new();
        // Exact parameter types, so these win over the core package's `sleep(INT)` and
        // `sleep(FLOAT)` rather than losing to them as a Dynamic fallback would.
        sandbox.set_native_fn("sleep", |_: rhai::INT| -> Result<(), Box<EvalAltResult>> { Err(sandboxed("sleep")) });
        sandbox.set_native_fn("sleep", |_: rhai::FLOAT| -> Result<(), Box<EvalAltResult>> { Err(sandboxed("sleep")) });
        sandbox.set_native_fn("timestamp", || -> Result<(), Box<EvalAltResult>> { Err(sandboxed("timestamp")) });
        engine.register_global_module(sandbox.into());
        engine.disable_symbol("eval");

        engine
            .set_max_operations(limits.max_operations)
            .set_max_call_levels(limits.max_call_levels)
            .set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth)
            .set_max_modules(256)
            .set_fail_on_invalid_map_property(false)
            // With fast operators Rhai runs its built-in `+` and `+=` on strings and lists
            // without looking for the checked ones registered above.
            .set_fast_operators(false)
            .set_strict_variables(true);
        engine
    }
}

fn sandboxed(name: &str) -> Box<EvalAltResult> {
    // Not the script failing on purpose but the script being at fault: a misuse, with the
    // position of the call.
    crate::script::diagnostic::misuse(format!(
        "`{name}` is not available to coordinator scripts; time comes from the journaled `now()`"
    ))
}
