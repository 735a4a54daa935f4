//! The `stageload` binary: parse the command line and run it.

fn main() -> std::process::ExitCode {
    stageload::cli::main()
}
