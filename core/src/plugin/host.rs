//! [`PluginHost`]: the engine, linker, limits and cache shared by all plugins,
//! and loading a plugin from a built-in name, a file or bytes.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use wasmtime::Engine;
use wasmtime::component::{Component, HasSelf, Linker};

use super::bindings::{self, FORMATTER_EXPORT, FORMATTER_UNVERSIONED};
use super::builtin::builtin_wasm;
use super::cache::{self, ArtifactCache};
use super::engine::{self, Allocation};
use super::error::LoadError;
use super::limits::PluginLimits;
use super::render::{CallState, Plugin};
use super::warm::WarmBudget;
use super::watchdog::Watchdog;

/// How to set up a [`PluginHost`].
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// Limits for every plugin call.
    pub limits: PluginLimits,
    /// Where compiled plugins are cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// Try the pooling allocator (the default); `false` allocates each
    /// instance on demand.
    pub pooling: bool,
}

impl Default for HostOptions {
    /// Default limits; the cache in `$STATUSHOOK_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/statushook`, else `~/.cache/statushook`.
    fn default() -> Self {
        let cache_dir = std::env::var_os("STATUSHOOK_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("statushook"))
            })
            .or_else(|| {
                std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/statushook"))
            });
        HostOptions {
            limits: PluginLimits::default(),
            cache_dir,
            pooling: true,
        }
    }
}

/// The WebAssembly runtime shared by every plugin of the process.
///
/// Cheap to clone; create one per process. Loading compiles (or fetches from
/// the cache) and type-checks a component; it is slow (milliseconds to a
/// quarter second), so call it off the async runtime's worker threads.
#[derive(Clone)]
pub struct PluginHost {
    pub(crate) inner: Arc<HostInner>,
}

pub(crate) struct HostInner {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<CallState>,
    pub(crate) limits: PluginLimits,
    pub(crate) slots: Slots,
    /// The memory idle warm instances may hold, across every plugin.
    pub(crate) warm: WarmBudget,
    /// Stops calls past their time limit.
    pub(crate) watchdog: Watchdog,
    cache: Option<ArtifactCache>,
    /// Components compiled ahead of their load (a reload's background
    /// compile), by digest, until the load that takes them.
    ready: Mutex<HashMap<[u8; 32], Component>>,
    /// Digests being compiled ahead right now.
    compiling: Mutex<HashSet<[u8; 32]>>,
    allocation: Allocation,
}

/// A plugin host that could not be created.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the WebAssembly runtime: {step}: {source}")]
pub struct HostError {
    /// What was being set up.
    step: &'static str,
    /// What wasmtime said.
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl HostError {
    /// Wraps the failure of `step`.
    fn at<E: Into<Box<dyn std::error::Error + Send + Sync>>>(
        step: &'static str,
    ) -> impl FnOnce(E) -> HostError {
        move |e| HostError {
            step,
            source: e.into(),
        }
    }
}

impl PluginHost {
    /// Creates the engine (pooling allocator where possible), links the host
    /// interfaces and starts the watchdog that enforces the time limit.
    ///
    /// # Errors
    ///
    /// [`HostError`] when wasmtime cannot be set up at all on this machine.
    /// A cache folder that cannot be created only disables the cache.
    pub fn new(options: HostOptions) -> Result<Self, HostError> {
        let (engine, allocation) = engine::build(&options.limits, options.pooling)
            .map_err(HostError::at("creating the engine"))?;
        let watchdog = Watchdog::start(engine.weak())
            .map_err(HostError::at("starting the plugin watchdog"))?;

        let mut linker = Linker::new(&engine);
        // Plain Rust wasm32-wasip2 guests import WASI interfaces even when
        // they never use them, so WASI p2 is linked, locked down per call
        // (no files, env, args or network: see `CallState::new`).
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(HostError::at("linking WASI"))?;
        bindings::Plugin::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |state| {
            state
        })
        .map_err(HostError::at("linking the host interfaces"))?;

        let cache = options.cache_dir.as_deref().and_then(|dir| {
            ArtifactCache::open(dir, &engine)
                .inspect_err(|error| {
                    tracing::warn!(dir = %dir.display(), %error, "compiled-plugin cache disabled");
                })
                .ok()
        });
        let slots = Slots::new(options.limits.max_concurrent_instances);
        let warm = WarmBudget::new(
            options.limits.warm_memory_bytes,
            // The pooling allocator is sized for as many again (engine.rs).
            usize::try_from(options.limits.max_concurrent_instances.max(1)).unwrap_or(usize::MAX),
        );
        Ok(PluginHost {
            inner: Arc::new(HostInner {
                engine,
                linker,
                limits: options.limits,
                slots,
                warm,
                watchdog,
                cache,
                ready: Mutex::default(),
                compiling: Mutex::default(),
                allocation,
            }),
        })
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> &PluginLimits {
        &self.inner.limits
    }

    /// Instances kept warm between renders across every plugin, and the
    /// linear memory they hold, in bytes (at most
    /// [`PluginLimits::warm_memory_bytes`]).
    pub fn warm_usage(&self) -> (usize, usize) {
        self.inner.warm.usage()
    }

    /// Whether instances come from the pooling allocator.
    pub fn is_pooling(&self) -> bool {
        self.inner.allocation == Allocation::Pooling
    }

    /// Loads `plugin` as config.toml names it: a built-in name (`jelou`), or a
    /// path to a `.wasm` component, relative to `base_dir` (the config file's
    /// folder) unless absolute.
    ///
    /// # Errors
    ///
    /// [`LoadError`] saying why the plugin cannot be used.
    pub fn load(&self, plugin: &str, base_dir: &Path) -> Result<Plugin, LoadError> {
        let source = PluginSource::read(plugin, base_dir)?;
        self.load_bytes(&source.name, &source.wasm)
    }

    /// Loads the component at `path`; the plugin is named by the path.
    ///
    /// # Errors
    ///
    /// [`LoadError::Read`] if the file cannot be read, else as [`Self::load_bytes`].
    pub fn load_file(&self, path: &Path) -> Result<Plugin, LoadError> {
        let source = PluginSource::read_file(path)?;
        self.load_bytes(&source.name, &source.wasm)
    }

    /// Loads a component from its bytes, compiling it unless the cache has it.
    ///
    /// # Errors
    ///
    /// [`LoadError`] if the bytes are not a component, or the component does
    /// not implement this version of the plugin contract with only the imports
    /// the host provides.
    pub fn load_bytes(&self, name: &str, wasm: &[u8]) -> Result<Plugin, LoadError> {
        // Imports and exports are read from the bytes first: a component
        // the host would refuse is refused in milliseconds, before a compile
        // that takes most of a minute for a JavaScript or Python plugin.
        check_surface(name, wasm)?;
        let digest = cache::digest(wasm);
        let component = self.component(name, wasm, &digest)?;
        // A formatter at the right version with other types (a WIT edited
        // without a version bump) fails here or at the trial start with
        // "failed to convert function to given type", which names neither
        // the function nor the field: compare with a built-in's to say which.
        let changed_wit = || {
            let reference = self.reference()?;
            let difference = super::mismatch::describe(
                &self.inner.engine,
                &component,
                &reference,
                FORMATTER_EXPORT,
            )?;
            Some(LoadError::Incompatible {
                plugin: name.to_string(),
                reason: format!(
                    "its {FORMATTER_EXPORT} differs from the host's at the same version: \
                     {difference}; build it against statushook's wit/plugin.wit"
                ),
            })
        };
        let incompatible = |e: wasmtime::Error| {
            changed_wit().unwrap_or_else(|| LoadError::Incompatible {
                plugin: name.to_string(),
                reason: format!("{e:#}"),
            })
        };
        let pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(incompatible)?;
        let pre = bindings::PluginPre::new(pre).map_err(incompatible)?;
        let plugin = Plugin::new(name.to_string(), digest, pre, Arc::clone(&self.inner));
        // One trial instantiation (tens of microseconds): a plugin that cannot
        // start under the limits is refused now, not on every render later.
        plugin.check_starts().map_err(|error| {
            changed_wit().unwrap_or_else(|| LoadError::CannotStart {
                plugin: name.to_string(),
                reason: error.to_string(),
            })
        })?;
        Ok(plugin)
    }

    /// A built-in plugin's component: built from the host's own WIT, the
    /// reference a mismatching plugin is compared with.
    fn reference(&self) -> Option<Component> {
        let wasm = builtin_wasm(super::BUILTIN_NAMES[0])?;
        self.component("built-in", wasm, &cache::digest(wasm)).ok()
    }

    /// The compiled component for `wasm`: compiled ahead by a background
    /// compile, else from the cache, else compiled now (and cached).
    fn component(
        &self,
        name: &str,
        wasm: &[u8],
        digest: &[u8; 32],
    ) -> Result<Component, LoadError> {
        let known = lock(&self.inner.ready).remove(digest).or_else(|| {
            self.inner
                .cache
                .as_ref()
                .and_then(|c| c.get(&self.inner.engine, digest))
        });
        match known {
            Some(component) => Ok(component),
            None => self.compile_and_cache(name, wasm, digest),
        }
    }

    fn compile_and_cache(
        &self,
        name: &str,
        wasm: &[u8],
        digest: &[u8; 32],
    ) -> Result<Component, LoadError> {
        let component =
            Component::new(&self.inner.engine, wasm).map_err(|e| LoadError::Incompatible {
                plugin: name.to_string(),
                reason: format!("cannot compile: {e:#}"),
            })?;
        if let Some(cache) = &self.inner.cache {
            cache.put(digest, &component);
        }
        Ok(component)
    }

    /// Whether loading `source` means a compile of seconds: a component of
    /// [`Self::BACKGROUND_COMPILE_BYTES`] or more (a JavaScript or Python
    /// plugin) that is neither compiled ahead nor in the compile cache. A
    /// reload compiles such a plugin in the background
    /// ([`Self::compile_ahead`]) and keeps the previous one serving.
    ///
    /// # Errors
    ///
    /// [`LoadError`] when a large component would be refused anyway (its
    /// imports and exports are read first, in milliseconds).
    pub fn compiles_slowly(&self, source: &PluginSource) -> Result<bool, LoadError> {
        if source.wasm.len() < Self::BACKGROUND_COMPILE_BYTES {
            return Ok(false);
        }
        check_surface(&source.name, &source.wasm)?;
        let digest = cache::digest(&source.wasm);
        Ok(!lock(&self.inner.ready).contains_key(&digest)
            && !self
                .inner
                .cache
                .as_ref()
                .is_some_and(|c| c.contains(&digest)))
    }

    /// Drops what [`Self::compile_ahead`] compiled from `source` if no load
    /// took it (the file changed again before the reload that would have).
    pub fn forget_ahead(&self, source: &PluginSource) {
        lock(&self.inner.ready).remove(&cache::digest(&source.wasm));
    }

    /// Components this large compile for seconds (the built-ins and Rust
    /// plugins are a few hundred KiB and compile in a fraction of one).
    pub const BACKGROUND_COMPILE_BYTES: usize = 1 << 20;

    /// Compiles `source` for a later [`Self::load_bytes`] of the same bytes,
    /// which then takes it without compiling. Blocking: call it on a thread
    /// of its own. Returns `Ok(false)`, doing nothing, when the same bytes
    /// are already being compiled ahead.
    ///
    /// # Errors
    ///
    /// [`LoadError`] when the component is refused or does not compile; the
    /// load that follows reports the same error.
    pub fn compile_ahead(&self, source: &PluginSource) -> Result<bool, LoadError> {
        let digest = cache::digest(&source.wasm);
        if !lock(&self.inner.compiling).insert(digest) {
            return Ok(false);
        }
        let compiled = check_surface(&source.name, &source.wasm)
            .and_then(|()| self.compile_and_cache(&source.name, &source.wasm, &digest));
        if let Ok(component) = &compiled {
            lock(&self.inner.ready).insert(digest, component.clone());
        }
        lock(&self.inner.compiling).remove(&digest);
        compiled.map(|_| true)
    }
}

/// Locks `mutex`, whose contents stay whole even if a holder panicked
/// (nothing panics while holding these).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// A plugin's bytes, read but not yet compiled: lets a reload see whether a
/// plugin changed (by its hash) before paying for a compile.
#[derive(Debug, Clone)]
pub struct PluginSource {
    /// The plugin's name: the built-in name or the file path.
    pub name: String,
    /// The component bytes.
    pub wasm: Cow<'static, [u8]>,
}

impl PluginSource {
    /// Reads `plugin` as config.toml names it (see [`PluginHost::load`]).
    ///
    /// # Errors
    ///
    /// [`LoadError::UnknownBuiltin`] or [`LoadError::Read`].
    pub fn read(plugin: &str, base_dir: &Path) -> Result<Self, LoadError> {
        if let Some(wasm) = builtin_wasm(plugin) {
            return Ok(PluginSource {
                name: plugin.to_string(),
                wasm: Cow::Borrowed(wasm),
            });
        }
        if plugin.contains('/') || plugin.ends_with(".wasm") {
            return Self::read_file(&base_dir.join(plugin));
        }
        Err(LoadError::UnknownBuiltin(plugin.to_string()))
    }

    /// Reads the component file at `path`.
    ///
    /// # Errors
    ///
    /// [`LoadError::Read`] if the file cannot be read.
    pub fn read_file(path: &Path) -> Result<Self, LoadError> {
        let wasm = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(PluginSource {
            name: path.display().to_string(),
            wasm: Cow::Owned(wasm),
        })
    }

    /// The SHA-256 of the bytes, hex, as [`Plugin::sha256`] reports it.
    pub fn sha256(&self) -> String {
        hex::encode(cache::digest(&self.wasm))
    }
}

/// Interface namespaces a plugin may import: WASI's (the linker refuses
/// the ones it lacks, naming them) and the host's own log.
const IMPORTABLE: &[&str] = &["wasi:", "statushook:plugin/"];
/// WASI interfaces the host never links, with what to do about them.
const NOT_LINKED: &[(&str, &str)] = &[(
    "wasi:http/",
    "the host links WASI's CLI interfaces only; for componentize-js build with \
     `-d http -d fetch-event` (or `-d all`)",
)];

/// Reads the component's top-level imports and exports without compiling
/// it: refuses one that does not export this contract's formatter, or that
/// imports what the host does not provide. "Built for another contract
/// version" and "not a plugin at all" get their own errors, so the message
/// says what to do.
fn check_surface(name: &str, wasm: &[u8]) -> Result<(), LoadError> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_MODULE_VERSION: &[u8] = &[1, 0, 0, 0];
    let not_a_component = |reason: String| LoadError::NotAComponent {
        plugin: name.to_string(),
        reason,
    };
    if !wasm.starts_with(MAGIC) {
        return Err(not_a_component("the file is not WebAssembly".into()));
    }
    if wasm.get(4..8) == Some(CORE_MODULE_VERSION) {
        return Err(not_a_component("it is a core WebAssembly module".into()));
    }
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    // Nested modules and components have sections of their own; only the
    // outermost component's are the plugin's surface.
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| not_a_component(format!("unreadable: {e}")))?;
        match payload {
            wasmparser::Payload::ModuleSection { .. }
            | wasmparser::Payload::ComponentSection { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
            wasmparser::Payload::ComponentImportSection(section) if depth == 0 => {
                for import in section {
                    let import = import.map_err(|e| not_a_component(format!("unreadable: {e}")))?;
                    imports.push(import.name.name.to_string());
                }
            }
            wasmparser::Payload::ComponentExportSection(section) if depth == 0 => {
                for export in section {
                    let export = export.map_err(|e| not_a_component(format!("unreadable: {e}")))?;
                    exports.push(export.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    for import in &imports {
        if let Some((_, advice)) = NOT_LINKED.iter().find(|(ns, _)| import.starts_with(ns)) {
            return Err(LoadError::Incompatible {
                plugin: name.to_string(),
                reason: format!("it imports {import}, which the host does not provide: {advice}"),
            });
        }
        if !IMPORTABLE.iter().any(|ns| import.starts_with(ns)) {
            return Err(LoadError::Incompatible {
                plugin: name.to_string(),
                reason: format!(
                    "it imports {import}; a plugin may import WASI interfaces and statushook:plugin/log only"
                ),
            });
        }
    }
    if exports.iter().any(|e| e == FORMATTER_EXPORT) {
        return Ok(());
    }
    if let Some(found) = exports
        .iter()
        .find(|e| e.starts_with(FORMATTER_UNVERSIONED))
    {
        return Err(LoadError::WrongVersion {
            plugin: name.to_string(),
            found: found.clone(),
        });
    }
    Err(LoadError::MissingExport {
        plugin: name.to_string(),
        exports: if exports.is_empty() {
            "nothing".into()
        } else {
            exports.join(", ")
        },
    })
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("limits", &self.inner.limits)
            .field("allocation", &self.inner.allocation)
            .finish_non_exhaustive()
    }
}

/// A counting semaphore for instance slots, for use on blocking threads.
///
/// The pooling allocator fails when it runs out of slots rather than waiting;
/// renders take a slot here first, so a burst waits instead of failing.
pub(crate) struct Slots {
    free: Mutex<u32>,
    released: Condvar,
}

/// A held slot; released on drop.
pub(crate) struct Slot<'a>(&'a Slots);

impl Slots {
    fn new(count: u32) -> Self {
        Slots {
            // Zero slots would make every render wait forever.
            free: Mutex::new(count.max(1)),
            released: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, u32> {
        // A poisoned counter is still a valid count: nothing panics while
        // holding it.
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a free slot.
    pub(crate) fn acquire(&self) -> Slot<'_> {
        let mut free = self.lock();
        while *free == 0 {
            free = self.released.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.lock() += 1;
        self.0.released.notify_one();
    }
}
