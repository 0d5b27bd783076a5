//! The example and test guest components, built on first use.
//!
//! The build script builds only the four built-ins the binary embeds, so a
//! newcomer's `cargo run` compiles nothing it does not need. The example
//! plugin and the hostile guests are built here instead, by the first test
//! (or benchmark) of a process that asks for one, into the folder the build
//! script exports as `STATUSHOOK_GUEST_DIR`. Cargo's own lock on that target
//! folder orders concurrent test processes; within one process a `OnceLock`
//! builds once.

use std::path::PathBuf;
use std::sync::OnceLock;

#[path = "../../guest_cargo.rs"]
mod guest_cargo;

/// The guest packages built for tests and examples (not embedded).
const GUESTS: &[&str] = &[
    "crm-plugin",
    "hostile",
    "no-export",
    "other-wit",
    "changed-wit",
    "trap-on-load",
];

/// The component `name` (a file stem such as `crm_plugin` or `hostile`),
/// built if it is missing or out of date.
pub fn guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(message) = BUILT.get_or_init(build_guests) {
        panic!("{message}");
    }
    let path = PathBuf::from(env!("STATUSHOOK_GUEST_DIR")).join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "test guest {} is missing after building the guests; is `{}` listed in GUESTS?",
        path.display(),
        name.replace('_', "-")
    );
    path
}

/// Runs one nested `cargo build` of every test guest, the way `core/build.rs`
/// builds the built-ins (same profile, target and target folder).
fn build_guests() -> Result<(), String> {
    let guest_dir = PathBuf::from(env!("STATUSHOOK_GUEST_DIR"));
    // STATUSHOOK_GUEST_DIR is <target dir>/wasm32-wasip2/guest.
    let target_dir = guest_dir
        .parent()
        .and_then(|p| p.parent())
        .ok_or_else(|| format!("unexpected guest folder {}", guest_dir.display()))?;
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .ok_or("core/ sits inside the workspace")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = guest_cargo::guest_build(&cargo, &workspace, target_dir, GUESTS);
    let status = cmd
        .status()
        .map_err(|e| format!("could not run cargo to build the test guests: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(
            "building the test guests for wasm32-wasip2 failed (see the cargo output above); \
             if the target is missing, install it with `rustup target add wasm32-wasip2`"
                .into(),
        )
    }
}
