use std::process::ExitCode;

fn main() -> ExitCode {
    supportlake::cli::main()
}
