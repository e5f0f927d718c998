//! Real and simulated spend. A mock leaf (the `mock` harness, which only a scenario run has:
//! `--scenario FILE`, `--demo`) reports the tokens and dollars its scenario says: no money was
//! spent. A scenario run may still run some leaves for real (`--leaf review=claude-code`), so
//! spend is split leaf by leaf: a run's cost is real, simulated, or both, and every view that
//! shows a cost says which. Totals across runs count real spend only, with simulated spend
//! beside them.
//!
//! Views learn a run's mode from its journal header (`run_started`'s `mode` and `scenario`) and
//! each leaf's harness from its result; the summary of `coord run` reads the leaves of its
//! `RunOutcome` and the header in the run directory.

use super::units;
use crate::journal::writer::JOURNAL_FILE;
use crate::journal::RunMode;
use crate::leaf::session::SessionResult;
use serde_json::Value;
use std::io::BufRead;
use std::path::Path;

/// The harness of simulated leaves.
pub const MOCK_HARNESS: &str = "mock";

/// The marker after a simulated cost.
pub const SIMULATED: &str = "(simulated)";

/// What a simulated cost means, where a view has room to say it.
pub const SIMULATED_NOTE: &str = "simulated: mock leaves, no money spent";

/// Amounts below this are float noise, not spend (costs are shown to the micro-dollar at most).
const NOISE_USD: f64 = 1e-9;

/// Whether a run of this header `mode` and `scenario` ran in a scenario world, whose leaves are
/// mock unless overridden: a scenario run, or a dry run over a scenario (a dry run still runs
/// its leaves; it only holds back effects).
pub fn scenario_mode(mode: RunMode, scenario: Option<&str>) -> bool {
    match mode {
        RunMode::Scenario => true,
        RunMode::DryRun => scenario.is_some(),
        RunMode::Live | RunMode::Replay => false,
    }
}

/// Whether a leaf's usage is simulated: it ran on the mock harness; a result that names no
/// harness (an older journal) counts as mock in a scenario run.
pub fn leaf_simulated(harness: Option<&str>, scenario: bool) -> bool {
    match harness {
        Some(h) => h == MOCK_HARNESS,
        None => scenario,
    }
}

/// Whether the run recorded in `run_dir` ran in a scenario world, from its journal header (only
/// the first line is read). `None` when there is no readable header (a journal kept in memory).
pub fn run_dir_scenario(run_dir: &Path) -> Option<bool> {
    let file = std::fs::File::open(run_dir.join(JOURNAL_FILE)).ok()?;
    let mut first = String::new();
    std::io::BufReader::new(file).read_line(&mut first).ok()?;
    let entry: Value = serde_json::from_str(first.trim_end()).ok()?;
    let header = entry.get("header").filter(|_| entry["type"] == "run_started")?;
    // A mode this version does not know ran in no scenario world it knows of.
    let mode = header.get("mode").and_then(Value::as_str)?;
    let scenario = header.get("scenario").and_then(Value::as_str);
    Some(serde_json::from_value::<RunMode>(Value::from(mode)).is_ok_and(|mode| scenario_mode(mode, scenario)))
}

/// How a run's cost is labelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Label {
    /// Real leaves only (or no cost outside a scenario).
    Real,
    /// Every dollar simulated (or no cost in a scenario run).
    Simulated,
    /// Real and simulated leaves both cost something.
    Mixed,
}

/// Dollars, real and simulated kept apart: one leaf's, one run's or many runs'.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Spend {
    pub real_usd: f64,
    pub simulated_usd: f64,
}

impl Spend {
    pub fn leaf(usd: f64, simulated: bool) -> Self {
        if simulated {
            Spend { real_usd: 0.0, simulated_usd: usd }
        } else {
            Spend { real_usd: usd, simulated_usd: 0.0 }
        }
    }

    /// A finished run's spend: `total_usd` (the run's usage), of which its mock leaves
    /// simulated what they report. Leaves that name no harness count as mock in a scenario run.
    pub fn of_outcome<'a>(total_usd: f64, leaves: impl Iterator<Item = &'a SessionResult>, scenario: bool) -> Self {
        let simulated_usd: f64 =
            leaves.filter(|l| leaf_simulated(l.harness.as_deref(), scenario)).map(|l| l.usage.cost_usd).sum();
        Spend { real_usd: (total_usd - simulated_usd).max(0.0), simulated_usd }
    }

    pub fn add(&mut self, other: Spend) {
        self.real_usd += other.real_usd;
        self.simulated_usd += other.simulated_usd;
    }

    pub fn total_usd(&self) -> f64 {
        self.real_usd + self.simulated_usd
    }

    /// The label of a run with this spend; `scenario`: whether it ran in a scenario world.
    pub fn label(&self, scenario: bool) -> Label {
        match (self.real_usd > NOISE_USD, self.simulated_usd > NOISE_USD) {
            (true, true) => Label::Mixed,
            (false, true) => Label::Simulated,
            (true, false) => Label::Real,
            (false, false) if scenario => Label::Simulated,
            (false, false) => Label::Real,
        }
    }

    /// A run's cost: `$0.2500`, `$1.3220 (simulated)`, or `$0.2500 + $1.3220 simulated`.
    pub fn run_text(&self, scenario: bool) -> String {
        match self.label(scenario) {
            Label::Real => units::cost(self.real_usd),
            Label::Simulated => format!("{} {SIMULATED}", units::cost(self.simulated_usd)),
            Label::Mixed => {
                format!("{} + {} simulated", units::cost(self.real_usd), units::cost(self.simulated_usd))
            }
        }
    }

    /// What a run's cost section says about it: nothing for real spend, else what was simulated.
    pub fn run_note(&self, scenario: bool) -> Option<String> {
        match self.label(scenario) {
            Label::Real => None,
            Label::Simulated => Some(SIMULATED_NOTE.to_owned()),
            Label::Mixed => Some(format!(
                "real {} · simulated {} by mock leaves, no money spent",
                units::cost(self.real_usd),
                units::cost(self.simulated_usd)
            )),
        }
    }

    /// Totals across runs: `real spend $0.2500 · simulated $1.3220`; without the second part
    /// when nothing was simulated.
    pub fn totals_text(&self) -> String {
        let real = format!("real spend {}", units::cost(self.real_usd));
        if self.simulated_usd > NOISE_USD {
            format!("{real} · simulated {}", units::cost(self.simulated_usd))
        } else {
            real
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_worlds_and_mock_leaves() {
        assert!(scenario_mode(RunMode::Scenario, Some("demo.toml")));
        assert!(scenario_mode(RunMode::DryRun, Some("demo.toml")));
        assert!(!scenario_mode(RunMode::DryRun, None));
        assert!(!scenario_mode(RunMode::Live, None));
        assert!(leaf_simulated(Some("mock"), true));
        assert!(!leaf_simulated(Some("claude-code"), true));
        assert!(leaf_simulated(None, true));
        assert!(!leaf_simulated(None, false));
    }

    #[test]
    fn costs_say_what_was_simulated() {
        let sim = Spend::leaf(1.322, true);
        let real = Spend::leaf(0.25, false);
        assert_eq!(sim.run_text(true), "$1.3220 (simulated)");
        assert_eq!(real.run_text(false), "$0.2500");
        assert_eq!(real.run_text(true), "$0.2500", "a real leaf in a scenario run spent real money");
        assert_eq!(Spend::default().run_text(true), "$0.0000 (simulated)");
        assert_eq!(Spend::default().run_text(false), "$0.0000");
        let mut both = sim;
        both.add(real);
        assert_eq!(both.label(true), Label::Mixed);
        assert_eq!(both.run_text(true), "$0.2500 + $1.3220 simulated");
        assert_eq!(both.totals_text(), "real spend $0.2500 · simulated $1.3220");
        assert_eq!(real.totals_text(), "real spend $0.2500");
        assert_eq!(real.run_note(false), None);
        assert_eq!(sim.run_note(true).as_deref(), Some(SIMULATED_NOTE));
    }

    #[test]
    fn the_mode_comes_from_the_journal_header() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(run_dir_scenario(dir.path()), None);
        let header = |mode: &str| {
            format!("{{\"seq\":0,\"type\":\"run_started\",\"header\":{{\"mode\":\"{mode}\",\"run_id\":\"r\"}}}}\n{{\"seq\":1}}\n")
        };
        std::fs::write(dir.path().join(JOURNAL_FILE), header("scenario")).unwrap();
        assert_eq!(run_dir_scenario(dir.path()), Some(true));
        std::fs::write(dir.path().join(JOURNAL_FILE), header("live")).unwrap();
        assert_eq!(run_dir_scenario(dir.path()), Some(false));
    }
}
