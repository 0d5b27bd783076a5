//! The partner's path, from outside this workspace: the SDK packaged by
//! `cargo package`, unpacked elsewhere, the Rust template copied next to it
//! and built from the registries for `wasm32-wasip2`, and its `cases.json`
//! run through the real host by `statushook plugin-test --cases`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("core/ sits in the workspace")
        .to_path_buf()
}

fn run(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create folder");
    for entry in std::fs::read_dir(from).expect("read folder") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

#[test]
fn the_sdk_carries_the_same_wit_as_the_host() {
    let host = std::fs::read_to_string(workspace().join("wit/plugin.wit")).expect("wit/");
    let sdk = std::fs::read_to_string(workspace().join("plugins/sdk/wit/plugin.wit"))
        .expect("plugins/sdk/wit/");
    assert!(
        host == sdk,
        "plugins/sdk/wit/plugin.wit differs from wit/plugin.wit: copy wit/plugin.wit over it \
         (the SDK ships its own copy so it builds outside this repository)"
    );
}

#[test]
fn the_rust_template_builds_outside_the_workspace_and_passes_its_cases() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Kept between runs (under the workspace's target folder), so only the
    // first run pays for the dependencies.
    let target = workspace().join("target/template-rust");
    let scratch = tempfile::tempdir().expect("temp dir");

    // 1. The SDK as it would be published, unpacked away from the repo.
    run(
        "cargo package -p statushook-plugin",
        Command::new(&cargo)
            .current_dir(workspace())
            .args([
                "package",
                "-p",
                "statushook-plugin",
                "--no-verify",
                "--allow-dirty",
                "--quiet",
            ])
            .arg("--target-dir")
            .arg(&target),
    );
    let crate_file = target.join("package/statushook-plugin-0.1.0.crate");
    run(
        "unpack the SDK crate",
        Command::new("tar")
            .arg("xzf")
            .arg(&crate_file)
            .arg("-C")
            .arg(scratch.path()),
    );
    let sdk = scratch.path().join("statushook-plugin-0.1.0");
    assert!(
        sdk.join("wit/plugin.wit").exists(),
        "the packaged SDK carries its WIT"
    );

    // 2. The template, copied next to it, depending on it by path.
    let plugin = scratch.path().join("my-plugin");
    copy_dir(&workspace().join("templates/rust"), &plugin);
    let manifest = plugin.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).expect("template manifest");
    let line = "statushook-plugin = { path = \"../../plugins/sdk\" }";
    assert!(
        text.contains(line),
        "the template's SDK line changed: {text}"
    );
    let text = text.replace(
        line,
        &format!(
            "statushook-plugin = {{ path = {:?} }}",
            sdk.display().to_string()
        ),
    );
    std::fs::write(&manifest, text).expect("write manifest");

    // 3. Built as a partner builds it; its cases through the real host.
    run(
        "cargo build of the template for wasm32-wasip2 (needs `rustup target add wasm32-wasip2`)",
        Command::new(&cargo)
            .current_dir(&plugin)
            .args([
                "build",
                "--release",
                "--locked",
                "--target",
                "wasm32-wasip2",
                "--quiet",
            ])
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUSTFLAGS"),
    );
    let wasm = target.join("wasm32-wasip2/release/my_statushook_plugin.wasm");
    let report = run(
        "plugin-test --cases of the template",
        Command::new(env!("CARGO_BIN_EXE_statushook"))
            .current_dir(&plugin)
            .arg("plugin-test")
            .arg("--plugin")
            .arg(&wasm)
            .args(["--cases", "cases.json"]),
    );
    assert!(report.contains("4 of 4 cases as expected"), "{report}");
}
