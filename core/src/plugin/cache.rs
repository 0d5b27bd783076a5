//! The on-disk cache of compiled plugins.
//!
//! Compiling a component takes 50-250 ms; loading its compiled form takes
//! about 1 ms. Entries are keyed by the SHA-256 of the component bytes and the
//! engine's compatibility hash (wasmtime version, target, settings), so a
//! changed plugin or an upgraded statushook never loads a stale artifact.
//! Only files this process's cache wrote are ever deserialized: the folder is
//! private to the user and entries are written atomically.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A folder of compiled components.
#[derive(Debug, Clone)]
pub(crate) struct ArtifactCache {
    dir: PathBuf,
    engine_hash: String,
}

impl ArtifactCache {
    /// Opens (creating it, mode 0700) the cache folder `dir` for `engine`.
    pub(crate) fn open(dir: &Path, engine: &Engine) -> std::io::Result<Self> {
        fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        }
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash = hex::encode(&hasher.0.finalize()[..8]);
        Ok(ArtifactCache {
            dir: dir.to_path_buf(),
            engine_hash,
        })
    }

    fn entry(&self, digest: &[u8; 32]) -> PathBuf {
        self.dir.join(format!(
            "{}-{}.cwasm",
            hex::encode(digest),
            self.engine_hash
        ))
    }

    /// Whether an entry for `digest` exists (it may still prove unloadable).
    pub(crate) fn contains(&self, digest: &[u8; 32]) -> bool {
        self.entry(digest).exists()
    }

    /// The compiled component for `digest`, if cached and loadable. Any
    /// problem with an entry is a miss.
    pub(crate) fn get(&self, engine: &Engine, digest: &[u8; 32]) -> Option<Component> {
        let path = self.entry(digest);
        // Read, not mmap (`deserialize_file`): a mapped file that someone
        // truncates or rewrites in place kills the process with SIGBUS.
        let bytes = fs::read(&path).ok()?;
        // SAFETY: wasmtime requires that deserialized artifacts were produced
        // by `serialize` of a compatible engine and not tampered with. Entries
        // are only written by `put` below, atomically, into a folder only this
        // user can write; the name binds the source digest and engine hash,
        // and wasmtime itself re-checks the engine compatibility header.
        match unsafe { Component::deserialize(engine, &bytes) } {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "ignoring unloadable compiled plugin in cache");
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores `component` for `digest`. Failure only costs a recompile later,
    /// so it is logged, not returned.
    pub(crate) fn put(&self, digest: &[u8; 32], component: &Component) {
        let path = self.entry(digest);
        let result = component
            .serialize()
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|bytes| write_atomically(&path, &bytes));
        if let Err(error) = result {
            tracing::warn!(path = %path.display(), %error, "could not cache compiled plugin");
        }
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

/// Feeds `Hash` output into SHA-256, for a hash stable across processes
/// (unlike `DefaultHasher`, whose algorithm may change between releases).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        0 // unused: the digest is read from the inner state
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// The SHA-256 of `bytes`.
pub(crate) fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}
