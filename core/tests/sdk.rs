//! The partner's path, from outside this workspace, for each template:
//! - Rust: the SDK packaged by `cargo package`, unpacked elsewhere, the
//!   template copied next to it and built from the registries for
//!   `wasm32-wasip2`;
//! - JavaScript: the template copied elsewhere, `npm ci` from the npm
//!   registry (componentize-js, pinned by its lock file), `npm test`,
//!   `npm run build`;
//! - Python: the template copied elsewhere, a virtual environment with its
//!   pinned componentize-py from PyPI, its unit tests, the build;
//!
//! and then each one's `cases.json` run through the real host by
//! `statushook plugin-test --cases`. All three share one `cases.json`.

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

/// What a partner's copy of a template would not have: what its build and
/// tests leave in the repository's copy.
const NOT_COPIED: &[&str] = &[
    "node_modules",
    "plugin.wasm",
    "wit_world",
    "componentize_py_types.py",
    "componentize_py_async_support",
    "componentize_py_runtime.pyi",
    "poll_loop.py",
    "__pycache__",
    ".venv",
    "target",
];

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create folder");
    for entry in std::fs::read_dir(from).expect("read folder") {
        let entry = entry.expect("entry");
        if NOT_COPIED.iter().any(|n| entry.file_name() == *n) {
            continue;
        }
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

/// A tool the template needs, or a failure that says how to install it.
fn require(tool: &str, install: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(found, "`{tool}` is not installed: {install}");
}

/// Runs `plugin-test --cases cases.json` on `wasm` from `folder`, with a
/// compile cache kept under the target folder (a JavaScript or Python
/// component takes about a minute to compile; the bytes decide the entry).
fn run_cases(folder: &Path, wasm: &Path) -> String {
    run(
        "plugin-test --cases of the template",
        Command::new(env!("CARGO_BIN_EXE_statushook"))
            .current_dir(folder)
            .env(
                "STATUSHOOK_CACHE_DIR",
                workspace().join("target/template-cache"),
            )
            .arg("plugin-test")
            .arg("--plugin")
            .arg(wasm)
            .args(["--cases", "cases.json"]),
    )
}

#[test]
fn the_templates_share_one_wit_and_one_cases_file() {
    let read = |path: &str| {
        std::fs::read_to_string(workspace().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let wit = read("wit/plugin.wit");
    let cases = read("templates/rust/cases.json");
    for language in ["javascript", "python"] {
        assert!(
            read(&format!("templates/{language}/wit/plugin.wit")) == wit,
            "templates/{language}/wit/plugin.wit differs from wit/plugin.wit: copy it over"
        );
        assert!(
            read(&format!("templates/{language}/cases.json")) == cases,
            "templates/{language}/cases.json differs from templates/rust/cases.json: \
             the three templates render the same cases"
        );
    }
}

#[test]
fn the_javascript_template_builds_outside_the_workspace_and_passes_its_cases() {
    require(
        "npm",
        "install Node.js 20 or later with npm (Debian: `apt-get install nodejs npm`)",
    );
    let scratch = tempfile::tempdir().expect("temp dir");
    let plugin = scratch.path().join("my-plugin");
    copy_dir(&workspace().join("templates/javascript"), &plugin);
    run(
        "npm ci (componentize-js from the npm registry, as package-lock.json pins it)",
        Command::new("npm").current_dir(&plugin).args([
            "ci",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ]),
    );
    run(
        "npm test (the template's unit tests, in Node)",
        Command::new("npm").current_dir(&plugin).arg("test"),
    );
    run(
        "npm run build (componentize-js)",
        Command::new("npm")
            .current_dir(&plugin)
            .args(["run", "build"]),
    );
    let report = run_cases(&plugin, &plugin.join("plugin.wasm"));
    assert!(report.contains("4 of 4 cases as expected"), "{report}");
}

#[test]
fn the_python_template_builds_outside_the_workspace_and_passes_its_cases() {
    require(
        "python3",
        "install Python 3.10 or later with venv (Debian: `apt-get install python3 python3-venv`)",
    );
    let scratch = tempfile::tempdir().expect("temp dir");
    let plugin = scratch.path().join("my-plugin");
    copy_dir(&workspace().join("templates/python"), &plugin);
    // The README's steps: a virtual environment with the pinned tool.
    let venv = plugin.join(".venv");
    run(
        "python3 -m venv (Debian: `apt-get install python3-venv`)",
        Command::new("python3").arg("-m").arg("venv").arg(&venv),
    );
    run(
        "pip install -r requirements.txt (componentize-py from PyPI)",
        Command::new(venv.join("bin/pip"))
            .current_dir(&plugin)
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
                "requirements.txt",
            ]),
    );
    let componentize = venv.join("bin/componentize-py");
    run(
        "componentize-py bindings (the generated modules the tests import)",
        Command::new(&componentize)
            .current_dir(&plugin)
            .args(["-d", "wit", "-w", "plugin", "bindings", "."]),
    );
    run(
        "the template's unit tests",
        Command::new(venv.join("bin/python"))
            .current_dir(&plugin)
            .args(["-m", "unittest", "discover", "-s", "tests", "-t", "."]),
    );
    run(
        "componentize-py componentize (the build)",
        Command::new(&componentize).current_dir(&plugin).args([
            "-d",
            "wit",
            "-w",
            "plugin",
            "componentize",
            "app",
            "-o",
            "plugin.wasm",
        ]),
    );
    let report = run_cases(&plugin, &plugin.join("plugin.wasm"));
    assert!(report.contains("4 of 4 cases as expected"), "{report}");
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
    let report = run_cases(&plugin, &wasm);
    assert!(report.contains("4 of 4 cases as expected"), "{report}");
}
