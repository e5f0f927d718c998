//! `coord leaf-exec`: what a remote job runs. Reads a leaf spec, runs it
//! (`run::leaf_exec`), and prints the session result as one JSON line, last on stdout. The
//! exit status is 0 whenever a result was printed, failed leaves included; a job that ends
//! otherwise printed none.

use super::cli_error::CliError;
use crate::views::console::stdoutln;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct LeafExecArgs {
    /// The leaf spec, a JSON file (`-`: stdin).
    #[arg(long, value_name = "FILE", conflicts_with = "spec_json")]
    pub spec: Option<PathBuf>,
    /// The leaf spec itself, as JSON text (how a job's entrypoint passes it).
    #[arg(long, value_name = "JSON")]
    pub spec_json: Option<String>,
}

pub fn run(args: &LeafExecArgs, runtime: &tokio::runtime::Handle) -> Result<(), CliError> {
    use crate::run::leaf_exec;
    let text = match (&args.spec_json, &args.spec) {
        (Some(json), _) => json.clone(),
        (None, path) => {
            leaf_exec::spec_text(path.as_deref().unwrap_or(std::path::Path::new("-"))).map_err(CliError::Usage)?
        }
    };
    let spec = leaf_exec::read_spec(&text).map_err(CliError::Usage)?;
    let result = runtime.block_on(leaf_exec::execute(spec));
    let line = serde_json::to_string(&result).map_err(|e| CliError::Failed(e.to_string()))?;
    stdoutln!("{line}");
    Ok(())
}
