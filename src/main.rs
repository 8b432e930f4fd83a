use std::process::ExitCode;

/// mimalloc gives freed memory back to the system: after a scan of a very large plan the
/// exporter returns to its idle size, where glibc's per-thread arenas would keep every
/// scan's peak (BENCHMARKS.md, "A plan of 200,000 changes").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tfdrift_exporter::cli::main()
}
