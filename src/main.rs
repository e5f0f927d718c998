use coord::harness::leaf_supervisor;

fn main() -> std::process::ExitCode {
    // A leaf's supervisor is this binary, started once per leaf: it is dispatched before
    // anything else runs (no command-line parsing, logging or runtime), so it starts fast.
    if leaf_supervisor::is_requested() {
        return leaf_supervisor::main();
    }
    leaf_supervisor::enable();
    coord::cli::main()
}
