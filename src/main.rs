use std::process::ExitCode;

fn main() -> ExitCode {
    tfdrift_exporter::cli::main()
}
