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
/// (`max_heap`, kept by `heap_budget.rs`). Rhai's own size limits are left unset: setting
/// any of them makes Rhai re-measure a whole nested value after every change (every `push`),
/// which makes ordinary list building quadratic.
#[derive(Clone, Copy, Debug)]
pub struct EngineLimits {
    pub max_operations: u64,
    pub max_call_levels: usize,
    pub max_expr_depth: usize,
    /// The heap budget in bytes; `None` for the project's `[run] max_heap`, else
    /// [`default_max_heap_bytes`].
    pub max_heap: Option<usize>,
}

impl EngineLimits {
    /// The heap budget this run keeps.
    pub fn max_heap_bytes(&self) -> usize {
        self.max_heap.unwrap_or_else(default_max_heap_bytes)
    }
}

/// The least heap budget a script gets by default.
const MIN_DEFAULT_HEAP: usize = 1024 * 1024 * 1024;

/// The default heap budget: a quarter of the machine's physical memory, at least 1 GiB. Far
/// above what routing needs, and it grows with the machine, so the worlds a machine can hold
/// route without a flag; a runaway script stops long before it takes the machine down.
pub fn default_max_heap_bytes() -> usize {
    physical_memory().map_or(MIN_DEFAULT_HEAP, |bytes| (bytes / 4).max(MIN_DEFAULT_HEAP))
}

fn physical_memory() -> Option<usize> {
    // SAFETY: `sysconf` only reads system constants.
    let (pages, page_size) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    let pages = usize::try_from(pages).ok()?;
    let page_size = usize::try_from(page_size).ok()?;
    pages.checked_mul(page_size)
}

impl Default for EngineLimits {
    fn default() -> Self {
        EngineLimits {
            // About a second of routing in a release build; groom-prs over 10,000 PRs uses a
            // fraction of it. Raise with --max-operations for bigger worlds.
            max_operations: 50_000_000,
            max_call_levels: 48,
            max_expr_depth: 64,
            max_heap: None,
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
            heap_budget::checked_functions(HeapBudget::starting_now(limits.max_heap_bytes())).into(),
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
        // PRs, issues and session results are shared records that read as maps.
        super::record::register(&mut engine);
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
