//! What can go wrong loading or running a plugin.

use std::path::PathBuf;

/// A plugin that could not be loaded. The message says what the partner must
/// change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The plugin file could not be read.
    #[error("cannot read plugin {path}: {source}")]
    Read {
        /// The file that was named.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// No built-in plugin has this name, and it does not look like a path.
    #[error(
        "unknown plugin {0:?}: the built-in plugins are {names}; a custom plugin is a path to a .wasm component",
        names = super::BUILTIN_NAMES.join(", ")
    )]
    UnknownBuiltin(String),
    /// The bytes are not a WebAssembly component (a core module, or not wasm).
    #[error(
        "{plugin}: not a WebAssembly component ({reason}); build it for the wasm32-wasip2 target, or turn a core module into a component with `wasm-tools component new`"
    )]
    NotAComponent {
        /// Which plugin.
        plugin: String,
        /// What wasmtime said.
        reason: String,
    },
    /// The component targets another version of the plugin contract.
    #[error(
        "{plugin}: built against {found}, but this statushook speaks statushook:plugin/formatter@0.1.0; rebuild the plugin against wit/plugin.wit of this release"
    )]
    WrongVersion {
        /// Which plugin.
        plugin: String,
        /// The formatter export it has instead.
        found: String,
    },
    /// The component does not export the formatter at all.
    #[error(
        "{plugin}: does not export statushook:plugin/formatter@0.1.0 (it exports: {exports}); a plugin must implement the `plugin` world of wit/plugin.wit"
    )]
    MissingExport {
        /// Which plugin.
        plugin: String,
        /// What it exports instead, comma-separated.
        exports: String,
    },
    /// The component cannot be instantiated under the host's limits (its
    /// start-up traps, or needs more memory than allowed).
    #[error("{plugin}: fails when started: {reason}")]
    CannotStart {
        /// Which plugin.
        plugin: String,
        /// Why, as a render error would say it.
        reason: String,
    },
    /// The component's exports or imports do not match what the host offers
    /// (a changed function signature, or an import such as `wasi:http` that a
    /// plugin may not use).
    #[error("{plugin}: does not fit the host: {reason}")]
    Incompatible {
        /// Which plugin.
        plugin: String,
        /// What wasmtime reported.
        reason: String,
    },
}

/// A render that failed. Only this one call is affected: the host and every
/// other plugin keep serving.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// The call ran past its CPU deadline and was stopped.
    #[error("plugin {plugin} ran longer than its {limit_ms} ms limit and was stopped")]
    Timeout {
        /// Which plugin.
        plugin: String,
        /// The limit, in milliseconds.
        limit_ms: u64,
    },
    /// The instance tried to grow its memory past the limit.
    #[error(
        "plugin {plugin} tried to use more than its {limit_bytes} bytes of memory and was stopped"
    )]
    MemoryLimit {
        /// Which plugin.
        plugin: String,
        /// The limit, in bytes.
        limit_bytes: usize,
    },
    /// The guest trapped (a panic, an unreachable, an out-of-bounds access).
    #[error("plugin {plugin} crashed: {reason}")]
    Trap {
        /// Which plugin.
        plugin: String,
        /// The trap, as wasmtime describes it.
        reason: String,
    },
    /// The plugin returned `err(reason)`: it could not render this event.
    #[error("plugin {plugin} refused the event: {reason}")]
    Rejected {
        /// Which plugin.
        plugin: String,
        /// The plugin's own words.
        reason: String,
    },
    /// The body is larger than allowed.
    #[error("plugin {plugin} returned a body of {size} bytes; the limit is {limit} bytes")]
    OutputTooLarge {
        /// Which plugin.
        plugin: String,
        /// The size returned.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The plugin set a header the host owns (auth, signatures, transport).
    #[error("plugin {plugin} may not set the header {header:?}: the host sets it")]
    ForbiddenHeader {
        /// Which plugin.
        plugin: String,
        /// The header name.
        header: String,
    },
    /// The output is not a valid request: a bad header name or value, a bad
    /// content type, or a JSON content type with a body that is not JSON.
    #[error("plugin {plugin} returned a malformed request: {reason}")]
    MalformedOutput {
        /// Which plugin.
        plugin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The instance could not be created (for example a start function that
    /// traps); every call to this plugin would fail the same way.
    #[error("plugin {plugin} could not be started: {reason}")]
    Instantiate {
        /// Which plugin.
        plugin: String,
        /// What wasmtime reported.
        reason: String,
    },
}

impl RenderError {
    /// A short machine word for metrics labels and dead-letter reasons.
    pub fn code(&self) -> &'static str {
        match self {
            RenderError::Timeout { .. } => "timeout",
            RenderError::MemoryLimit { .. } => "memory_limit",
            RenderError::Trap { .. } => "trap",
            RenderError::Rejected { .. } => "rejected",
            RenderError::OutputTooLarge { .. } => "output_too_large",
            RenderError::ForbiddenHeader { .. } => "forbidden_header",
            RenderError::MalformedOutput { .. } => "malformed_output",
            RenderError::Instantiate { .. } => "instantiate",
        }
    }
}
