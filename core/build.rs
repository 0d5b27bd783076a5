//! Builds the guest plugins as wasm32-wasip2 components and embeds the built-ins.
//!
//! The built-in formats (`jelou`, `engage`, `connectly`, `wpp`) are ordinary
//! guest crates under `plugins/`. This script runs a nested
//! `cargo build --target wasm32-wasip2` over those four only, in a target
//! directory of its own (so the nested build never waits on the outer build's
//! lock), then writes `builtin_plugins.rs` with an `include_bytes!` per
//! built-in. `cargo run` therefore needs no extra step, and builds nothing the
//! binary does not embed: the example plugin and the hostile test guests are
//! built by the tests that use them (`tests/support/guests.rs`), into the same
//! folder, which is exported as `STATUSHOOK_GUEST_DIR`.
//!
//! This is the approach of wasmtime's `crates/test-programs/artifacts/build.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

#[path = "guest_cargo.rs"]
mod guest_cargo;
use guest_cargo::{PROFILE, TARGET};

/// The built-in formats, embedded in the binary: the one list of them. The
/// host's `BUILTIN_NAMES` (and every message naming the built-ins) is
/// generated from it.
const BUILTINS: &[&str] = &["jelou", "engage", "connectly", "wpp"];

fn main() {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .expect("core/ sits inside the workspace")
        .to_path_buf();
    let out_dir = PathBuf::from(env_var("OUT_DIR"));

    check_target_installed();

    // One target dir shared by every profile of the outer build, so `cargo
    // test`, `cargo clippy` and `cargo build --release` reuse one guest build.
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("guests");

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = guest_cargo::guest_build(&cargo, &workspace, &target_dir, BUILTINS);
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("could not run cargo to build the guest plugins: {e}"));
    if !status.success() {
        panic!(
            "building the guest plugins for {TARGET} failed (see the cargo output above); \
             if the target is missing, install it with `rustup target add {TARGET}`"
        );
    }

    let guest_dir = target_dir.join(TARGET).join(PROFILE);
    let mut generated = String::from(
        "/// The built-in plugins, compiled to components by the build script: `(name, wasm)`.\n\
         pub(crate) const BUILTIN_PLUGINS: &[(&str, &[u8])] = &[\n",
    );
    for name in BUILTINS {
        let built = guest_dir.join(format!("{}.wasm", name.replace('-', "_")));
        // Copy into OUT_DIR so a later guest build cannot change the bytes
        // under an `include_bytes!` of this compilation.
        let embedded = out_dir.join(format!("{name}.wasm"));
        fs::copy(&built, &embedded)
            .unwrap_or_else(|e| panic!("missing guest output {}: {e}", built.display()));
        generated.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            embedded
        ));
    }
    generated.push_str("];\n");
    generated.push_str(&format!(
        "/// The names of the built-in plugins, usable as `plugin = \"<name>\"` in config.\n\
         pub const BUILTIN_NAMES: [&str; {}] = {BUILTINS:?};\n",
        BUILTINS.len()
    ));
    fs::write(out_dir.join("builtin_plugins.rs"), generated).expect("write builtin_plugins.rs");

    println!(
        "cargo:rustc-env=STATUSHOOK_GUEST_DIR={}",
        guest_dir.display()
    );
    rerun_if_guest_sources_change(&workspace, &guest_dir);
}

fn env_var(name: &str) -> String {
    env::var(name).unwrap_or_else(|_| panic!("cargo sets {name} for build scripts"))
}

/// Fails early, with the one command that fixes it, when the target is missing.
fn check_target_installed() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    if let Some(sysroot) = sysroot
        && !sysroot.join("lib/rustlib").join(TARGET).exists()
    {
        panic!(
            "\n\nstatushook builds its plugins as WebAssembly components, and the Rust \
             target `{TARGET}` is not installed.\nInstall it with:\n\n    rustup target add {TARGET}\n\n"
        );
    }
}

/// Tells cargo to rerun this script when any source of any guest changes.
///
/// The nested build's dep-info files list every source file it read.
fn rerun_if_guest_sources_change(workspace: &Path, guest_dir: &Path) {
    println!("cargo:rerun-if-changed={}", workspace.join("wit").display());
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("Cargo.lock").display()
    );
    for guest in BUILTINS {
        let dep_info = guest_dir.join(format!("{}.d", guest.replace('-', "_")));
        let Ok(text) = fs::read_to_string(&dep_info) else {
            continue;
        };
        // Format: `output: input input ...`, with `\ ` escaping spaces.
        for line in text.lines() {
            let Some((_, inputs)) = line.split_once(": ") else {
                continue;
            };
            let inputs = inputs.replace("\\ ", "\u{0}");
            for input in inputs.split_whitespace() {
                let path = input.replace('\u{0}', " ");
                if !path.contains("/.cargo/registry/") {
                    println!("cargo:rerun-if-changed={path}");
                }
            }
        }
    }
}
