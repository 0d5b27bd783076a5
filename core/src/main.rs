//! The `statushook` command; everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    statushook::cli::main()
}
