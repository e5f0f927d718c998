//! `[executor]` in `coord.toml`: where leaves run. `kind = "local"` (the default) runs them on
//! this machine; `kind = "ray"` runs each leaf as a Ray job through the Ray Jobs REST API at
//! `address`, whose entrypoint is `coord leaf-exec`; `kind = "kubernetes"` runs each leaf as a
//! Kubernetes Job in `namespace`, from `image`, with its keys from the Secret `secret`
//! (docs/scale-out.md). A workflow may
//! override the kind (`[workflow.<name>] executor = "local"`), and `--executor` overrides both
//! for one run.
//!
//! Owns only the shape of the section and the names of the kinds. It holds no secret: a remote
//! leaf's keys come from the environment of the machine that runs it.

use indexmap::IndexMap;
use serde::Deserialize;

/// The kinds of executor, by the name `kind` and `--executor` take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExecutorKind {
    Local,
    Ray,
    Kubernetes,
}

impl ExecutorKind {
    pub const NAMES: [&'static str; 3] = ["local", "ray", "kubernetes"];

    pub fn parse(name: &str) -> Result<Self, ExecutorKindError> {
        match name {
            "local" => Ok(ExecutorKind::Local),
            "ray" => Ok(ExecutorKind::Ray),
            "kubernetes" => Ok(ExecutorKind::Kubernetes),
            _ => Err(ExecutorKindError(name.to_owned())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExecutorKind::Local => "local",
            ExecutorKind::Ray => "ray",
            ExecutorKind::Kubernetes => "kubernetes",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown executor `{0}`: expected one of local, ray, kubernetes")]
pub struct ExecutorKindError(pub String);

/// `[executor]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorSettings {
    /// `local` (default), `ray` or `kubernetes`.
    #[serde(default)]
    pub kind: Option<String>,
    /// The Ray dashboard's address, e.g. `http://127.0.0.1:8265` (the Jobs API lives there).
    #[serde(default)]
    pub address: Option<String>,
    /// The coord binary a job's entrypoint runs on the worker (default: this coord's own path).
    #[serde(default)]
    pub coord: Option<String>,
    /// The repository a leaf with a checkout clones and pushes its branch to (default: the
    /// project's own repository folder, which only a worker on this machine can reach).
    #[serde(default)]
    pub repository: Option<String>,
    /// Resources each leaf's job asks the engine for (default `{ coord_leaf = 1 }`).
    #[serde(default)]
    pub resources: Option<IndexMap<String, f64>>,
    /// How often a running job's state is asked for at first, e.g. "200ms" (default 50ms).
    #[serde(default)]
    pub poll: Option<String>,
    /// Ray: the most job-state reads one run sends the dashboard per second (default 20);
    /// with more jobs in flight than `poll` allows within it, each job is read less often.
    #[serde(default)]
    pub reads_per_second: Option<f64>,
    /// Kubernetes: the namespace the Jobs go to (default: the kubeconfig context's, or the
    /// service account's in a cluster).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Kubernetes: the leaf image (git, the agent CLIs, coord at `coord`, default `coord` on
    /// its PATH).
    #[serde(default)]
    pub image: Option<String>,
    /// Kubernetes: the Secret every leaf's container gets as environment variables
    /// (`envFrom`), so keys never appear in a Job's spec.
    #[serde(default)]
    pub secret: Option<String>,
    /// Kubernetes: the service account the leaves' pods run as.
    #[serde(default)]
    pub service_account: Option<String>,
    /// Kubernetes: a kubeconfig file (default: `KUBECONFIG`, `~/.kube/config`, then the
    /// in-cluster service account, as kube's `Config::infer`).
    #[serde(default)]
    pub kubeconfig: Option<String>,
    /// Extra time a job gets past its leaf's timeout for being scheduled and started
    /// (default "10s"); past it, the job is stopped and the leaf is `timeout`.
    #[serde(default)]
    pub start_allowance: Option<String>,
}

impl ExecutorSettings {
    /// The configured kind; local when none.
    pub fn kind(&self) -> Result<ExecutorKind, ExecutorKindError> {
        self.kind.as_deref().map(ExecutorKind::parse).unwrap_or(Ok(ExecutorKind::Local))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_default_to_local() {
        assert_eq!(ExecutorSettings::default().kind(), Ok(ExecutorKind::Local));
        let ray = ExecutorSettings { kind: Some("ray".into()), ..Default::default() };
        assert_eq!(ray.kind(), Ok(ExecutorKind::Ray));
        assert!(ExecutorKind::parse("k8s").unwrap_err().to_string().contains("local, ray"));
    }

    #[test]
    fn the_section_reads_and_refuses_unknown_keys() {
        let text =
            "kind = \"ray\"\naddress = \"http://127.0.0.1:8265\"\nresources = { coord_leaf = 1 }\npoll = \"50ms\"\n";
        let settings: ExecutorSettings = toml::from_str(text).unwrap();
        assert_eq!(settings.kind(), Ok(ExecutorKind::Ray));
        assert_eq!(settings.resources.unwrap()["coord_leaf"], 1.0);
        assert!(toml::from_str::<ExecutorSettings>("imag = \"x\"").is_err());
        let text =
            "kind = \"kubernetes\"\nnamespace = \"leaves\"\nimage = \"ghcr.io/acme/leaf:1\"\nsecret = \"coord-keys\"\n";
        let settings: ExecutorSettings = toml::from_str(text).unwrap();
        assert_eq!(settings.kind(), Ok(ExecutorKind::Kubernetes));
        assert_eq!(settings.secret.as_deref(), Some("coord-keys"));
    }
}
