//! The built-in format plugins, embedded in the binary by the build script.

include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));

/// The names of the built-in plugins, usable as `plugin = "<name>"` in config.
pub const BUILTIN_NAMES: [&str; 4] = ["jelou", "engage", "connectly", "wpp"];

/// The component bytes of the built-in plugin `name`, if there is one.
pub fn builtin_wasm(name: &str) -> Option<&'static [u8]> {
    BUILTIN_PLUGINS
        .iter()
        .find(|(builtin, _)| *builtin == name)
        .map(|(_, wasm)| *wasm)
}
