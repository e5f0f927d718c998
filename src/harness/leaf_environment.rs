//! The environment a leaf's process starts with. A leaf does not inherit coord's environment,
//! which holds the credentials of everything coord acts on (GitHub, Slack, webhook secrets):
//! it gets the variables every program needs (`PATH`, `HOME`, locale, temp dir, proxies and
//! certificates), its agent CLI's own (key, base URL, config dir and settings, by prefix), the
//! variables its `[harness.*]` and its workflow pass by name (`pass_env`), and the values
//! configured for it (`[harness.*] env`, and what the harness sets itself).
//!
//! Owns which of coord's variables reach a leaf. It must never pass a variable nobody named
//! here or in a `pass_env`; and a dry run's withheld credentials never pass, even when named.

use crate::config::leaf_settings::HarnessSettings;
use indexmap::IndexMap;

/// Variables every leaf gets from coord's environment, when they are set.
pub const EVERY_LEAF: [&str; 29] = [
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "TERM",
    "COLORTERM",
    "NO_COLOR",
    "TMPDIR",
    "TMP",
    "TEMP",
    "TZ",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
];

/// Prefixes of variables every leaf gets: the locale (`LC_ALL`, ...) and the XDG folders.
pub const EVERY_LEAF_PREFIXES: [&str; 2] = ["LC_", "XDG_"];

/// Prefixes of the variables an agent CLI reads for itself: its key, base URL, config folder
/// (`CLAUDE_CONFIG_DIR`, `CODEX_HOME`, `GEMINI_CLI_HOME`) and settings.
pub fn agent_prefixes(kind: &str) -> &'static [&'static str] {
    match kind {
        // `DISABLE_TELEMETRY`, `DISABLE_AUTOUPDATER`, ... are Claude Code's settings.
        "claude-code" => &["ANTHROPIC_", "CLAUDE_", "DISABLE_"],
        "codex" => &["CODEX_", "OPENAI_"],
        "gemini" => &["GEMINI_", "GOOGLE_"],
        _ => &[],
    }
}

/// What a leaf of one harness may take from coord's environment, and what it is given.
#[derive(Clone, Copy, Debug)]
pub struct LeafEnvironment<'a> {
    /// The harness kind (`claude-code`, `command`, ...).
    pub kind: &'a str,
    /// Its `[harness.<name>]` table: `env`, `pass_env`, `api_key_env`.
    pub settings: &'a HarnessSettings,
    /// The workflow's `pass_env`.
    pub workflow_pass_env: &'a [String],
    /// Variables a dry run holds back whatever asks for them.
    pub withheld: &'a [String],
}

impl LeafEnvironment<'_> {
    /// Whether the leaf takes `name` from coord's environment.
    pub fn inherits(&self, name: &str) -> bool {
        if self.withheld.iter().any(|w| w == name) {
            return false;
        }
        EVERY_LEAF.contains(&name)
            || EVERY_LEAF_PREFIXES.iter().chain(agent_prefixes(self.kind)).any(|p| name.starts_with(p))
            || self.settings.api_key_env.as_deref() == Some(name)
            || self.settings.pass_env.iter().chain(self.workflow_pass_env).any(|p| p == name)
    }

    /// The leaf's whole environment: what it inherits from `coord_env`, then `[harness.*] env`,
    /// then `explicit` (what the harness sets), each later value winning.
    pub fn build(
        &self,
        coord_env: impl IntoIterator<Item = (String, String)>,
        explicit: impl IntoIterator<Item = (String, String)>,
    ) -> Vec<(String, String)> {
        let mut env: IndexMap<String, String> = coord_env.into_iter().filter(|(k, _)| self.inherits(k)).collect();
        env.extend(self.settings.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.extend(explicit);
        env.into_iter().collect()
    }

    /// [`LeafEnvironment::build`] from this process's environment (variables that are not
    /// UTF-8 are left out).
    pub fn from_process(&self, explicit: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
        let coord_env = std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        self.build(coord_env, explicit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coord_env() -> Vec<(String, String)> {
        [
            ("PATH", "/usr/bin"),
            ("HOME", "/home/u"),
            ("LC_ALL", "C.UTF-8"),
            ("GITHUB_TOKEN", "ghp_x"),
            ("SLACK_WEBHOOK_URL", "https://hooks"),
            ("OPS_SECRET", "s"),
            ("ANTHROPIC_API_KEY", "a"),
            ("OPENAI_API_KEY", "o"),
            ("CLAUDE_CONFIG_DIR", "/c"),
            ("MY_KEY", "m"),
            ("FAKE_STATE", "/f"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    fn names(env: &[(String, String)]) -> Vec<&str> {
        env.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn a_leaf_gets_what_it_needs_and_no_credential_nobody_named() {
        let settings = HarnessSettings::default();
        let claude =
            LeafEnvironment { kind: "claude-code", settings: &settings, workflow_pass_env: &[], withheld: &[] };
        let env = claude.build(coord_env(), [("DISABLE_AUTOUPDATER".to_owned(), "1".to_owned())]);
        assert_eq!(
            names(&env),
            ["PATH", "HOME", "LC_ALL", "ANTHROPIC_API_KEY", "CLAUDE_CONFIG_DIR", "DISABLE_AUTOUPDATER"]
        );
        let command = LeafEnvironment { kind: "command", ..claude };
        assert_eq!(names(&command.build(coord_env(), [])), ["PATH", "HOME", "LC_ALL"]);
    }

    #[test]
    fn named_variables_pass_unless_withheld() {
        let settings = HarnessSettings {
            api_key_env: Some("MY_KEY".into()),
            pass_env: vec!["FAKE_STATE".into()],
            env: [("SETTING".to_owned(), "on".to_owned())].into_iter().collect(),
            ..Default::default()
        };
        let workflow = ["GITHUB_TOKEN".to_owned()];
        let codex = LeafEnvironment { kind: "codex", settings: &settings, workflow_pass_env: &workflow, withheld: &[] };
        assert_eq!(
            names(&codex.build(coord_env(), [])),
            ["PATH", "HOME", "LC_ALL", "GITHUB_TOKEN", "OPENAI_API_KEY", "MY_KEY", "FAKE_STATE", "SETTING"]
        );
        let withheld = ["GITHUB_TOKEN".to_owned()];
        let dry = LeafEnvironment { withheld: &withheld, ..codex };
        assert!(!names(&dry.build(coord_env(), [])).contains(&"GITHUB_TOKEN"));
    }
}
