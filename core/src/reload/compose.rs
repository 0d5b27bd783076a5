//! [`compose`]: the routing table of a main config and its included files,
//! as start-up and every reload build it.

use std::collections::{BTreeMap, HashMap};

use crate::config::{Config, ConfigError, FileOutcome, Fragments, Problem, Reread};
use crate::plugin::PluginHost;
use crate::route::{Snapshot, SnapshotError};

/// Why no routing table could be built: the main file is at fault, so
/// nothing changes.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// A plugin the main file names does not load.
    #[error("{file}: {source}")]
    Plugin {
        /// The main config file.
        file: String,
        /// Which webhook, and why (boxed: it is large, and rare).
        #[source]
        source: Box<SnapshotError>,
    },
    /// The main file defines a bot id or phone number id that an included
    /// file already serves.
    #[error("{0}")]
    Clash(ConfigError),
}

/// A routing table and what happened to each included file.
#[derive(Debug)]
pub struct Composed {
    /// The table, ready to swap in.
    pub snapshot: Snapshot,
    /// What happened to each included file (every file; see
    /// [`FileOutcome::news`]).
    pub files: Vec<FileOutcome>,
    /// Folders of include patterns that could not be read.
    pub problems: Vec<Problem>,
}

/// Builds the routing table of `main` and the files it includes, reading
/// the files `reread` asks for, and records in `fragments` what each file
/// now contributes.
///
/// An included file whose new version is broken, clashes with another file,
/// or names a plugin that does not load is refused on its own: its last
/// good version keeps serving (taken as it runs from `previous`), the other
/// files' changes apply.
///
/// # Errors
///
/// [`ComposeError`] when the main file itself is at fault; `fragments` is
/// then left as it was, so the previous table keeps serving.
pub fn compose(
    main: Config,
    fragments: &mut Fragments,
    reread: Reread<'_>,
    host: &PluginHost,
    previous: Option<&Snapshot>,
) -> Result<Composed, ComposeError> {
    let scan = fragments.scan(&main.include, &main.path, reread);
    let mut refused: BTreeMap<_, Problem> = BTreeMap::new();
    loop {
        let composition = fragments.compose(&main.path, &main.bots, &refused, &scan.removed);
        if !composition.main_problems.is_empty() {
            return Err(ComposeError::Clash(ConfigError::new(
                composition.main_problems,
            )));
        }
        let mut config = main.clone();
        config.bots.extend(composition.bots.iter().cloned());
        match Snapshot::build(config, host, previous, &composition.kept) {
            Ok(snapshot) => {
                fragments.commit(&composition);
                return Ok(Composed {
                    snapshot,
                    files: composition.files,
                    problems: scan.problems,
                });
            }
            Err(error) => {
                // A plugin of an included file: refuse that file and try
                // again with its last good version. Each file is refused at
                // most once, so this ends.
                let Some(file) = composition.origin.get(&error.bot) else {
                    return Err(ComposeError::Plugin {
                        file: main.path.display().to_string(),
                        source: Box::new(error),
                    });
                };
                if refused.contains_key(file) {
                    return Err(ComposeError::Plugin {
                        file: file.display().to_string(),
                        source: Box::new(error),
                    });
                }
                let index =
                    position_in_file(&composition.origin, &composition.bots, file, &error.bot);
                refused.insert(
                    file.clone(),
                    Problem::new(
                        file,
                        None,
                        format!("bots[{index}].webhooks[{}].plugin", error.webhook_index),
                        format!("{} ({}/{})", error.source, error.bot, error.webhook),
                    ),
                );
            }
        }
    }
}

/// The index of bot `id` among the bots that come from `file`.
fn position_in_file(
    origin: &HashMap<String, std::path::PathBuf>,
    bots: &[std::sync::Arc<crate::config::BotConfig>],
    file: &std::path::Path,
    id: &str,
) -> usize {
    bots.iter()
        .filter(|bot| origin.get(&bot.id).is_some_and(|f| f == file))
        .position(|bot| bot.id == id)
        .unwrap_or(0)
}
