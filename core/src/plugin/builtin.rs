//! The built-in format plugins, embedded in the binary by the build script.

// `BUILTIN_PLUGINS` and `BUILTIN_NAMES`, generated from build.rs's list.
include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));

/// The component bytes of the built-in plugin `name`, if there is one.
pub fn builtin_wasm(name: &str) -> Option<&'static [u8]> {
    BUILTIN_PLUGINS
        .iter()
        .find(|(builtin, _)| *builtin == name)
        .map(|(_, wasm)| *wasm)
}
