//! Routing coverage: which statements and branches of a coordinator the scenarios executed.
//!
//! Recording uses Rhai's debugger hook, stepping into every node and counting hits per
//! position; the plan of what *could* run comes from walking the compiled AST. An `if` branch
//! counts as taken when its first statement ran (or, for an absent `else`, when the `if` ran
//! more often than its `then` block); a `switch` case when its body ran. Only the coordinator's
//! own file is measured. Recording never changes what the script does.

use rhai::debugger::{DebuggerCommand, DebuggerEvent};
use rhai::{ASTNode, Engine, Expr, Position, Stmt, AST};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// Hits per (line, column) of the measured file, summed over runs.
#[derive(Debug, Default, Clone)]
pub struct Hits {
    pub by_pos: HashMap<(usize, usize), u64>,
}

pub type SharedHits = Arc<Mutex<Hits>>;

/// Attaches a recorder for `main_source` to the engine.
// The debugger API is marked volatile upstream (not deprecated); coverage is its intended use.
#[allow(deprecated)]
pub fn record(engine: &mut Engine, main_source: String, hits: SharedHits) {
    engine.register_debugger(
        |_, debugger| debugger,
        move |_ctx, event, node, source, pos| {
            if matches!(event, DebuggerEvent::Step) && source.is_none_or(|s| s == main_source) {
                // Statements that are a bare call (`list.push(x)`) reach the debugger as
                // expressions, so every node counts, keyed by its position.
                if let (_, Some(line)) = (node, pos.line()) {
                    let col = pos.position().unwrap_or(0);
                    *hits.lock().expect("coverage hits poisoned").by_pos.entry((line, col)).or_insert(0) += 1;
                }
            }
            Ok(DebuggerCommand::StepInto)
        },
    );
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Branch {
    pub line: usize,
    /// `if`, `else`, `case <n>` or `default`.
    pub arm: String,
    /// Position of the arm's first statement, or of the `if` itself for an absent `else`.
    target: (usize, usize),
    /// For an absent `else`: the `then` block's first statement, compared by hit count.
    then_of: Option<(usize, usize)>,
}

/// What could run in a script: its statement lines and branch arms.
#[derive(Debug, Default)]
pub struct CoveragePlan {
    pub lines: BTreeSet<usize>,
    pub branches: Vec<Branch>,
}

fn pos_of(p: Position) -> Option<(usize, usize)> {
    Some((p.line()?, p.position().unwrap_or(0)))
}

fn first_stmt_pos(block: &rhai::StmtBlock) -> Option<(usize, usize)> {
    block.statements().first().and_then(|s| pos_of(s.position()))
}

pub fn plan(ast: &AST) -> CoveragePlan {
    let mut plan = CoveragePlan::default();
    ast.walk(&mut |path: &[ASTNode]| {
        let Some(ASTNode::Stmt(stmt)) = path.last() else {
            return true;
        };
        if matches!(stmt, Stmt::Block(_) | Stmt::Noop(_)) {
            return true;
        }
        let Some(at) = pos_of(stmt.position()) else {
            return true;
        };
        plan.lines.insert(at.0);
        match stmt {
            Stmt::If(flow, _) => {
                let then_pos = first_stmt_pos(&flow.body);
                if let Some(t) = then_pos {
                    plan.branches.push(Branch { line: at.0, arm: "if".into(), target: t, then_of: None });
                }
                match first_stmt_pos(&flow.branch) {
                    Some(e) => plan.branches.push(Branch { line: at.0, arm: "else".into(), target: e, then_of: None }),
                    None => plan.branches.push(Branch {
                        line: at.0,
                        arm: "else (implicit)".into(),
                        target: at,
                        then_of: then_pos,
                    }),
                }
            }
            Stmt::Switch(x, _) => {
                let (_, cases) = &**x;
                for (i, case) in cases.expressions.iter().enumerate() {
                    if let Some(t) = expr_first_pos(&case.rhs) {
                        let arm =
                            if Some(i) == cases.def_case { "default".to_owned() } else { format!("case {}", i + 1) };
                        plan.branches.push(Branch { line: at.0, arm, target: t, then_of: None });
                    }
                }
            }
            _ => {}
        }
        true
    });
    plan.branches.sort();
    plan.branches.dedup();
    plan
}

fn expr_first_pos(e: &Expr) -> Option<(usize, usize)> {
    match e {
        Expr::Stmt(block) => first_stmt_pos(block),
        other => pos_of(other.position()),
    }
}

/// What no scenario reached.
#[derive(Debug, Default)]
pub struct CoverageReport {
    pub total_lines: usize,
    pub missed_lines: Vec<usize>,
    pub total_branches: usize,
    pub missed_branches: Vec<(usize, String)>,
}

pub fn report(plan: &CoveragePlan, hits: &Hits) -> CoverageReport {
    let mut hit_lines: BTreeMap<usize, u64> = BTreeMap::new();
    for (&(line, _), &n) in &hits.by_pos {
        *hit_lines.entry(line).or_insert(0) += n;
    }
    let count = |p: (usize, usize)| hits.by_pos.get(&p).copied().unwrap_or(0);
    let missed_lines = plan.lines.iter().copied().filter(|l| !hit_lines.contains_key(l)).collect();
    let missed_branches = plan
        .branches
        .iter()
        .filter(|b| match b.then_of {
            // The implicit else ran when the `if` ran more often than its `then` block.
            Some(then) => count(b.target) <= count(then),
            None if b.arm == "else (implicit)" => count(b.target) == 0,
            None => count(b.target) == 0,
        })
        .map(|b| (b.line, b.arm.clone()))
        .collect();
    CoverageReport { total_lines: plan.lines.len(), missed_lines, total_branches: plan.branches.len(), missed_branches }
}
