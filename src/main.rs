use coord::harness::{leaf_supervisor, supervisor_host};

fn main() -> std::process::ExitCode {
    // A leaf's supervisor (and the host that forks them) is this binary: it is dispatched
    // before anything else runs (no command-line parsing, logging or runtime), so it starts
    // fast and stays single-threaded.
    if supervisor_host::is_requested() {
        return supervisor_host::main();
    }
    if leaf_supervisor::is_requested() {
        return leaf_supervisor::main();
    }
    leaf_supervisor::enable();
    coord::cli::main()
}
