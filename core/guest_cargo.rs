//! The nested `cargo build` that compiles guest plugins into `wasm32-wasip2`
//! components: shared by the build script (the four built-ins) and the test
//! support (the example and test guests), so both build them the same way,
//! into the same folder.

use std::path::Path;
use std::process::Command;

/// The target guests are built for.
pub const TARGET: &str = "wasm32-wasip2";

/// The cargo profile guests are built with (workspace `Cargo.toml`).
pub const PROFILE: &str = "guest";

/// `cargo build` of `packages` for [`TARGET`] with [`PROFILE`], in
/// `workspace`, into `target_dir` (components land in
/// `<target_dir>/wasm32-wasip2/guest/`).
pub fn guest_build(cargo: &str, workspace: &Path, target_dir: &Path, packages: &[&str]) -> Command {
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args([
            "build",
            "--quiet",
            "--locked",
            "--profile",
            PROFILE,
            "--target",
            TARGET,
        ])
        .env("CARGO_TARGET_DIR", target_dir)
        // The outer build's flags and wrappers are for the host target (clippy
        // sets RUSTC_WORKSPACE_WRAPPER, coverage sets RUSTFLAGS); keep them off
        // the guests.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    for package in packages {
        cmd.args(["--package", package]);
    }
    cmd
}
