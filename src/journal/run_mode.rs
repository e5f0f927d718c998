//! How a run met the world, as its journal header records it (`mode`).
//!
//! It owns the closed set of modes and their on-disk spelling; it must not decide what a mode
//! does (the run chooses one, the views read it).

use serde::{Deserialize, Serialize};

/// The world a run ran against, from `run_started`'s `mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    /// A scenario's world and mock leaves (`--scenario`, `--demo`).
    Scenario,
    /// GitHub, git and the notification channels.
    #[default]
    Live,
    /// Effects held back (`--dry-run`), over a scenario or the live world.
    DryRun,
    /// Answered from a recorded journal, acting on nothing (`coord replay`).
    Replay,
}

impl RunMode {
    /// The spelling the journal header uses.
    pub fn as_str(self) -> &'static str {
        match self {
            RunMode::Scenario => "scenario",
            RunMode::Live => "live",
            RunMode::DryRun => "dry_run",
            RunMode::Replay => "replay",
        }
    }
}

impl std::fmt::Display for RunMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::RunMode;

    #[test]
    fn modes_keep_their_on_disk_spelling() {
        for mode in [RunMode::Scenario, RunMode::Live, RunMode::DryRun, RunMode::Replay] {
            let json = serde_json::to_string(&mode).unwrap();
            assert_eq!(json, format!("\"{mode}\""));
            assert_eq!(serde_json::from_str::<RunMode>(&json).unwrap(), mode);
        }
        assert!(serde_json::from_str::<RunMode>("\"sideways\"").is_err());
    }
}
