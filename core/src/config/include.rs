//! `include = ["bots.d/*.toml"]`: the patterns that name fragment files, and
//! finding the files they match.
//!
//! Patterns are globs relative to the main config's folder (an absolute
//! pattern stays as written). A pattern that matches nothing is not an error:
//! a host starts with an empty `bots.d/` and adds tenants to it.

use std::path::{Component, Path, PathBuf};

use super::error::Problem;
use super::reader::{Need, Reader, Table};

/// How patterns match: `*` stays within a folder, and dot-files (a
/// provisioning tool's temp files) are never matched by a wildcard.
const MATCH: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: true,
};

/// One `include` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    /// The pattern as the config writes it, e.g. `bots.d/*.toml`.
    pub pattern: String,
    /// The pattern resolved against the config's folder.
    glob: glob::Pattern,
    /// The folder the pattern's files are under: its longest leading part
    /// without a wildcard, which the reloader watches.
    root: PathBuf,
    /// Whether files deeper than `root`'s own entries can match (a wildcard
    /// in a folder name, or `**`), so the folder is watched recursively.
    recursive: bool,
}

impl Include {
    /// The pattern `pattern` of a config whose folder is `base_dir`.
    ///
    /// # Errors
    ///
    /// A message saying why the pattern is not a valid glob.
    pub fn new(pattern: &str, base_dir: &Path) -> Result<Self, String> {
        if pattern.trim().is_empty() {
            return Err("the pattern is empty".into());
        }
        let full = base_dir.join(pattern);
        let text = full
            .to_str()
            .ok_or_else(|| "the pattern is not valid UTF-8".to_string())?;
        let glob = glob::Pattern::new(text).map_err(|e| {
            format!(
                "{pattern:?} is not a valid glob ({} at character {}); e.g. \"bots.d/*.toml\"",
                e.msg,
                e.pos + 1
            )
        })?;
        let mut root = PathBuf::new();
        let mut recursive = false;
        let mut in_root = true;
        let components: Vec<Component<'_>> = full.components().collect();
        for (i, component) in components.iter().enumerate() {
            let is_last = i + 1 == components.len();
            let wild = component
                .as_os_str()
                .to_str()
                .is_some_and(|c| c.contains(['*', '?', '[']));
            if in_root && !wild && !is_last {
                root.push(component);
            } else {
                in_root = false;
                if !is_last {
                    recursive = true;
                }
            }
        }
        Ok(Include {
            pattern: pattern.to_string(),
            glob,
            root,
            recursive,
        })
    }

    /// The folder to watch for this pattern's files.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the folder must be watched with its subfolders.
    pub fn is_recursive(&self) -> bool {
        self.recursive
    }

    /// Whether `path` (absolute, or relative as the pattern is) matches.
    pub fn matches(&self, path: &Path) -> bool {
        self.glob.matches_path_with(path, MATCH)
    }
}

/// Reads the top-level `include` key: an array of glob patterns.
pub(super) fn includes(r: &mut Reader<'_>, root: &Table<'_, '_>, base_dir: &Path) -> Vec<Include> {
    let list = r
        .field(root, "include", Need::Optional, Reader::strings)
        .unwrap_or_default();
    let mut out = Vec::with_capacity(list.len());
    for (path, pattern) in list {
        match Include::new(pattern.get_ref(), base_dir) {
            Ok(include) => out.push(include),
            Err(message) => r.problem(&path, Some(pattern.span()), message),
        }
    }
    out
}

/// Every file the patterns match, sorted and without repeats, leaving out
/// the main config itself (so `include = ["*.toml"]` beside it is safe) and
/// anything that is not a file. A folder that cannot be read is a problem;
/// the files found elsewhere are still returned.
pub fn fragment_files(includes: &[Include], main: &Path) -> (Vec<PathBuf>, Vec<Problem>) {
    let main = main.canonicalize().ok();
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for include in includes {
        let walk = match glob::glob_with(include.glob.as_str(), MATCH) {
            Ok(walk) => walk,
            // Checked when the config was read; cannot happen.
            Err(e) => {
                problems.push(Problem::new(
                    include.root.clone(),
                    None,
                    "include",
                    format!("{:?}: {e}", include.pattern),
                ));
                continue;
            }
        };
        for entry in walk {
            match entry {
                Ok(path) if path.is_file() => {
                    // Only a file of the same name can be the main file: a
                    // real path for each of 1,000 files would cost more
                    // than the reload.
                    let same_name = main
                        .as_ref()
                        .is_some_and(|main| main.file_name() == path.file_name());
                    if same_name && path.canonicalize().ok() == main {
                        continue;
                    }
                    files.push(path);
                }
                Ok(_) => {}
                Err(e) => problems.push(Problem::new(
                    e.path().to_path_buf(),
                    None,
                    "",
                    format!(
                        "cannot read this folder for include {:?}: {}",
                        include.pattern,
                        e.error()
                    ),
                )),
            }
        }
    }
    files.sort();
    files.dedup();
    (files, problems)
}

/// An absolute, `..`-free form of `path`, as include patterns and file
/// watchers see it: the folder is canonicalized (it exists), the file name
/// kept (it may not).
pub fn absolute(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    match (
        absolute.parent().and_then(|p| p.canonicalize().ok()),
        absolute.file_name(),
    ) {
        (Some(folder), Some(name)) => folder.join(name),
        _ => absolute,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_the_part_before_the_first_wildcard() {
        let include = Include::new("bots.d/*.toml", Path::new("/etc/statushook")).unwrap();
        assert_eq!(include.root(), Path::new("/etc/statushook/bots.d"));
        assert!(!include.is_recursive());
        assert!(include.matches(Path::new("/etc/statushook/bots.d/acme.toml")));
        assert!(!include.matches(Path::new("/etc/statushook/bots.d/acme.toml.tmp")));
        assert!(!include.matches(Path::new("/etc/statushook/bots.d/.acme.toml")));
        assert!(!include.matches(Path::new("/etc/statushook/bots.d/x/acme.toml")));

        let deep = Include::new("tenants/*/bots.toml", Path::new("/srv")).unwrap();
        assert_eq!(deep.root(), Path::new("/srv/tenants"));
        assert!(deep.is_recursive());
        assert!(deep.matches(Path::new("/srv/tenants/acme/bots.toml")));
    }

    #[test]
    fn a_bad_glob_says_where() {
        let error = Include::new("bots.d/[.toml", Path::new(".")).unwrap_err();
        assert!(
            error.contains("\"bots.d/[.toml\" is not a valid glob"),
            "{error}"
        );
        assert!(Include::new(" ", Path::new(".")).is_err());
    }

    #[test]
    fn include_is_a_list_of_globs_checked_with_their_lines() {
        let env = |_: &str| None;
        let error = crate::config::parse(
            "include = [\"bots.d/*.toml\", \"x/[\"]\n",
            Path::new("config.toml"),
            &env,
        )
        .unwrap_err();
        assert_eq!(error.problems.len(), 1, "{error}");
        let problem = error.problems[0].to_string();
        assert!(
            problem.starts_with("config.toml:1: include[1]: \"x/[\" is not a valid glob"),
            "{problem}"
        );

        let error =
            crate::config::parse("include = \"bots.d\"\n", Path::new("c.toml"), &env).unwrap_err();
        assert!(
            error.to_string().contains("include: expected an array"),
            "{error}"
        );

        let config =
            crate::config::parse("include = [\"bots.d/*.toml\"]\n", Path::new("c.toml"), &env)
                .unwrap();
        assert_eq!(config.include[0].pattern, "bots.d/*.toml");
    }
}
