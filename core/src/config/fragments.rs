//! [`Fragments`]: every included file, what each one contributes to the
//! running config, and the rule that lets each file stand alone.
//!
//! Each file is read and checked on its own. A file whose latest version is
//! broken, or clashes with another file (a bot id or phone number id that
//! another file already has), is refused, and the version it last
//! contributed keeps serving; every other file's change applies. So one
//! tenant's bad edit never blocks another's.
//!
//! Which file is refused when two clash: the one whose *new* version brings
//! the clash. Every file first claims what it serves now; then each changed
//! file, in path order, swaps its old claims for its new ones if nothing
//! else holds them. Changed files are tried again until none can move, so a
//! bot that moves from one file to another in a single step still lands.
//! At start-up nothing serves yet, so of two clashing files the later one
//! (in path order) is refused.
//!
//! Files are re-read only when asked to or when their size, inode or
//! modification time changed: a reload of 1,000 fragments after one edit
//! reads one file.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{ConfigError, Problem};
use super::fragment::{Fragment, load_fragment};
use super::include::{Include, fragment_files};
use super::model::BotConfig;

/// Every included file and what it contributes.
#[derive(Debug, Default)]
pub struct Fragments {
    files: BTreeMap<PathBuf, FileState>,
}

#[derive(Debug)]
struct FileState {
    /// What the file looked like when last read.
    fingerprint: Option<Fingerprint>,
    /// The result of reading it then.
    latest: Latest,
    /// The version the running config uses; `None`: it contributes nothing.
    serving: Option<Fragment>,
    /// Whether the outcome of `latest` has been reported, so a refused file
    /// is logged once per version, not on every reload.
    reported: bool,
}

/// The result of reading a file.
#[derive(Debug, Clone)]
enum Latest {
    Good(Fragment),
    Broken(ConfigError),
    /// Empty: a write in progress, not a file without bots.
    Empty,
}

impl From<Result<Fragment, ConfigError>> for Latest {
    fn from(read: Result<Fragment, ConfigError>) -> Self {
        match read {
            Ok(fragment) => Latest::Good(fragment),
            Err(error) if error.is_empty_file() => Latest::Empty,
            Err(error) => Latest::Broken(error),
        }
    }
}

/// What identifies a version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl Fingerprint {
    fn of(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Fingerprint {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        })
    }
}

/// Which files [`Fragments::scan`] reads again.
#[derive(Debug, Clone, Copy)]
pub enum Reread<'a> {
    /// Every file (SIGHUP, start-up, `check`).
    All,
    /// These paths (absolute, as the watcher reports them), and any file
    /// whose size, inode or modification time changed.
    Changed(&'a BTreeSet<PathBuf>),
}

/// What one reload did with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileChange {
    /// Its new version is in use.
    Applied,
    /// It is gone (deleted, renamed away, or no longer matched): its bots
    /// are removed.
    Removed,
    /// Its new version was refused, for these problems.
    Refused {
        /// What is wrong, each with the file and line.
        problems: Vec<Problem>,
        /// Whether a previous version keeps serving (else the file
        /// contributes nothing until fixed).
        kept_last_good: bool,
    },
    /// It is empty (a write in progress): whatever it served keeps serving.
    Ignored,
    /// Nothing new.
    Unchanged,
}

/// One file's [`FileChange`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOutcome {
    /// The file.
    pub file: PathBuf,
    /// What happened to it.
    pub change: FileChange,
    /// Whether this is news: the first time this version's outcome is
    /// reported (a reloader logs and counts only news).
    pub news: bool,
}

/// The bots of every file together, as one reload would run them.
#[derive(Debug, Clone, Default)]
pub struct Composition {
    /// Every fragment's bots, in file order.
    pub bots: Vec<Arc<BotConfig>>,
    /// Ids of bots that keep serving from a file's last good version while
    /// its new one is refused: the running routing table's entries for them
    /// are kept as they are (compiled plugins included).
    pub kept: HashSet<String>,
    /// Which file each bot comes from.
    pub origin: HashMap<String, PathBuf>,
    /// What happened to each file.
    pub files: Vec<FileOutcome>,
    /// Clashes between the main file's bots and what fragments already
    /// serve: the main file's change is refused as a whole.
    pub main_problems: Vec<Problem>,
    /// What each file contributes, for [`Fragments::commit`].
    used: BTreeMap<PathBuf, Option<Fragment>>,
}

impl Composition {
    /// The outcome of `file`, if it is one of the files.
    pub fn outcome(&self, file: &Path) -> Option<&FileOutcome> {
        self.files.iter().find(|f| f.file == file)
    }
}

/// Who holds a bot id or phone number id.
#[derive(Debug, Clone)]
struct Holder {
    file: PathBuf,
    line: Option<usize>,
    bot: String,
}

impl Holder {
    fn describe(&self) -> String {
        match self.line {
            Some(line) => format!("{}:{line}", self.file.display()),
            None => self.file.display().to_string(),
        }
    }
}

/// The bot ids and phone number ids taken so far.
#[derive(Debug, Default)]
struct Claims {
    ids: HashMap<String, Holder>,
    phones: HashMap<String, Holder>,
}

impl Claims {
    /// The problems `fragment`'s bots would have next to what is claimed.
    fn clashes(
        &self,
        file: &Path,
        bots: &[Arc<BotConfig>],
        lines: &[Option<usize>],
    ) -> Vec<Problem> {
        let mut problems = Vec::new();
        for (i, bot) in bots.iter().enumerate() {
            let line = lines.get(i).copied().flatten();
            if let Some(holder) = self.ids.get(&bot.id) {
                problems.push(Problem::new(
                    file,
                    line,
                    format!("bots[{i}].id"),
                    format!(
                        "duplicate bot id {:?}: {} already defines it; a bot id belongs to one file",
                        bot.id,
                        holder.describe()
                    ),
                ));
            }
            for phone in &bot.phone_number_ids {
                if let Some(holder) = self.phones.get(phone) {
                    problems.push(Problem::new(
                        file,
                        line,
                        format!("bots[{i}].phone_number_ids"),
                        format!(
                            "phone number id {phone:?} is owned by bot {:?} in {}; each phone number id belongs to one bot",
                            holder.bot,
                            holder.describe()
                        ),
                    ));
                }
            }
        }
        problems
    }

    fn claim(&mut self, file: &Path, bots: &[Arc<BotConfig>], lines: &[Option<usize>]) {
        for (i, bot) in bots.iter().enumerate() {
            let holder = Holder {
                file: file.to_path_buf(),
                line: lines.get(i).copied().flatten(),
                bot: bot.id.clone(),
            };
            for phone in &bot.phone_number_ids {
                self.phones.insert(phone.clone(), holder.clone());
            }
            self.ids.insert(bot.id.clone(), holder);
        }
    }

    fn release(&mut self, bots: &[Arc<BotConfig>]) {
        for bot in bots {
            self.ids.remove(&bot.id);
            for phone in &bot.phone_number_ids {
                self.phones.remove(phone);
            }
        }
    }
}

impl Fragments {
    /// No files yet: the state at start-up.
    pub fn new() -> Self {
        Fragments::default()
    }

    /// Finds the files `includes` match now and reads those that `reread`
    /// asks for. Returns the problems of folders that could not be read
    /// (their files are left as they were).
    pub fn scan(&mut self, includes: &[Include], main: &Path, reread: Reread<'_>) -> Scan {
        let (found, problems) = fragment_files(includes, main);
        let found: BTreeSet<PathBuf> = found.into_iter().collect();
        // A folder that could not be read: keep its files rather than take
        // them for deleted.
        let unreadable: Vec<&PathBuf> = problems.iter().map(|p| &p.file).collect();
        let removed: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|f| !found.contains(*f) && !unreadable.iter().any(|dir| f.starts_with(dir)))
            .cloned()
            .collect();
        for file in &removed {
            self.files.remove(file);
        }
        let mut read = 0;
        for file in found {
            let fingerprint = Fingerprint::of(&file);
            let state = self.files.get(&file);
            let wanted = match (reread, state) {
                (Reread::All, _) | (_, None) => true,
                (Reread::Changed(paths), Some(state)) => {
                    paths.contains(&file) || state.fingerprint != fingerprint
                }
            };
            if !wanted {
                continue;
            }
            read += 1;
            let latest = Latest::from(load_fragment(&file));
            match self.files.get_mut(&file) {
                Some(state) => {
                    if !same(&state.latest, &latest) {
                        state.reported = false;
                    }
                    state.latest = latest;
                    state.fingerprint = fingerprint;
                }
                None => {
                    self.files.insert(
                        file,
                        FileState {
                            fingerprint,
                            latest,
                            serving: None,
                            reported: false,
                        },
                    );
                }
            }
        }
        Scan {
            removed,
            problems,
            read,
        }
    }

    /// Puts `fragment` (or its problems) in place of whatever `file` holds,
    /// as if the file had just been read so: `statushook check --file`
    /// checks a candidate against the rest this way.
    pub fn set_latest(&mut self, file: &Path, latest: Result<Fragment, ConfigError>) {
        let latest = Latest::from(latest);
        let state = self.files.entry(file.to_path_buf()).or_insert(FileState {
            fingerprint: None,
            latest: Latest::Empty,
            serving: None,
            reported: false,
        });
        state.latest = latest;
        state.reported = false;
    }

    /// Puts together what every file contributes next to the main file's
    /// bots (`main_bots`, from `main_file`). `refused` names files whose new
    /// version failed later on (a plugin that does not load), with why:
    /// they keep their last good version.
    pub fn compose(
        &self,
        main_file: &Path,
        main_bots: &[Arc<BotConfig>],
        refused: &BTreeMap<PathBuf, Problem>,
        removed: &[PathBuf],
    ) -> Composition {
        let mut claims = Claims::default();
        let main_lines = vec![None; main_bots.len()];
        claims.claim(main_file, main_bots, &main_lines);

        // Everything serving now claims first. A clash here is the main
        // file's doing (fragments served together before).
        let mut main_problems = Vec::new();
        let mut used: BTreeMap<PathBuf, Option<Fragment>> = BTreeMap::new();
        for (file, state) in &self.files {
            let Some(serving) = &state.serving else {
                used.insert(file.clone(), None);
                continue;
            };
            for problem in claims.clashes(file, &serving.bots, &serving.id_lines) {
                main_problems.push(Problem::new(
                    main_file,
                    None,
                    "bots",
                    format!("clashes with an included file that is serving: {problem}"),
                ));
            }
            claims.claim(file, &serving.bots, &serving.id_lines);
            used.insert(file.clone(), Some(serving.clone()));
        }

        // Then each changed file moves to its new version if it can.
        let mut refusals: BTreeMap<PathBuf, Vec<Problem>> = BTreeMap::new();
        let mut pending: Vec<(&PathBuf, &Fragment)> = self
            .files
            .iter()
            .filter(|(file, _)| !refused.contains_key(*file))
            .filter_map(|(file, state)| match &state.latest {
                Latest::Good(fresh) if state.serving.as_ref() != Some(fresh) => Some((file, fresh)),
                _ => None,
            })
            .collect();
        loop {
            let mut moved = false;
            let mut still = Vec::new();
            for (file, fresh) in pending {
                let serving = used.get(file).cloned().flatten();
                if let Some(old) = &serving {
                    claims.release(&old.bots);
                }
                let problems = claims.clashes(file, &fresh.bots, &fresh.id_lines);
                if problems.is_empty() {
                    claims.claim(file, &fresh.bots, &fresh.id_lines);
                    used.insert(file.clone(), Some(fresh.clone()));
                    refusals.remove(file);
                    moved = true;
                } else {
                    if let Some(old) = &serving {
                        claims.claim(file, &old.bots, &old.id_lines);
                    }
                    refusals.insert(file.clone(), problems);
                    still.push((file, fresh));
                }
            }
            pending = still;
            if !moved || pending.is_empty() {
                break;
            }
        }

        let mut composition = Composition {
            main_problems,
            ..Composition::default()
        };
        for (file, state) in &self.files {
            let change = if let Some(problem) = refused.get(file) {
                FileChange::Refused {
                    problems: vec![problem.clone()],
                    kept_last_good: state.serving.is_some(),
                }
            } else if let Some(problems) = refusals.remove(file) {
                FileChange::Refused {
                    problems,
                    kept_last_good: state.serving.is_some(),
                }
            } else {
                match &state.latest {
                    Latest::Broken(error) => FileChange::Refused {
                        problems: error.problems.clone(),
                        kept_last_good: state.serving.is_some(),
                    },
                    Latest::Empty => FileChange::Ignored,
                    Latest::Good(fresh) if state.serving.as_ref() == Some(fresh) => {
                        FileChange::Unchanged
                    }
                    Latest::Good(_) => FileChange::Applied,
                }
            };
            let keep_old = matches!(change, FileChange::Refused { .. } | FileChange::Ignored);
            if let Some(Some(fragment)) = used.get(file) {
                for bot in &fragment.bots {
                    composition.origin.insert(bot.id.clone(), file.clone());
                    if keep_old {
                        composition.kept.insert(bot.id.clone());
                    }
                }
                composition.bots.extend(fragment.bots.iter().cloned());
            }
            let news = match change {
                FileChange::Unchanged => false,
                // Refused for a plugin: news each time (it was re-tried).
                FileChange::Refused { .. } if refused.contains_key(file) => true,
                _ => !state.reported,
            };
            composition.files.push(FileOutcome {
                file: file.clone(),
                change,
                news,
            });
        }
        for file in removed {
            composition.files.push(FileOutcome {
                file: file.clone(),
                change: FileChange::Removed,
                news: true,
            });
        }
        composition.used = used;
        composition
    }

    /// Records that `composition` is what runs now.
    pub fn commit(&mut self, composition: &Composition) {
        for (file, used) in &composition.used {
            if let Some(state) = self.files.get_mut(file) {
                state.serving = used.clone();
            }
        }
        for outcome in &composition.files {
            if let Some(state) = self.files.get_mut(&outcome.file) {
                state.reported = true;
            }
        }
    }

    /// How many files are included now.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether no file is included.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// What [`Fragments::scan`] found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Files that are gone since the last scan.
    pub removed: Vec<PathBuf>,
    /// Folders that could not be read.
    pub problems: Vec<Problem>,
    /// How many files were read (the rest were unchanged).
    pub read: usize,
}

/// Whether two readings are the same version.
fn same(a: &Latest, b: &Latest) -> bool {
    match (a, b) {
        (Latest::Good(a), Latest::Good(b)) => a == b,
        (Latest::Broken(a), Latest::Broken(b)) => a == b,
        (Latest::Empty, Latest::Empty) => true,
        _ => false,
    }
}
