fn main() -> std::process::ExitCode {
    coord::cli::main()
}
