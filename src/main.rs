use std::process::ExitCode;

/// jemalloc gives freed memory back to the system: after a scan of a very large plan the
/// exporter returns to its idle size, where glibc's per-thread arenas would keep every
/// scan's peak (BENCHMARKS.md, "A plan of 200,000 changes").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    tfdrift_exporter::cli::main()
}
