//! The `statushook` command; everything lives in the library's `cli` module.

/// mimalloc rather than glibc's malloc: a delivery is many small, short-lived
/// allocations spread over threads, where glibc's arenas spent 14 % of the
/// dispatcher's CPU at saturation (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    statushook::cli::main()
}
