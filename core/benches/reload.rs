//! Reload cost at scale: 1,000 bots × 4 webhooks and 20 distinct custom
//! plugins, through the same `Reloader` the watcher calls.
//!
//! `cargo bench --bench reload` prints markdown tables: the initial load
//! (every plugin compiled, cold cache), a reload that changes nothing, one
//! that changes config only, one that swaps one plugin build, and the
//! process RSS before and after; then the same 1,000 bots as 1,000 included
//! files of one bot each, where one tenant's edit should cost about one
//! file, not 1,000.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use statushook::config::{self, Fragments, Reread};
use statushook::plugin::{HostOptions, PluginHost};
use statushook::testing::Metrics;
use statushook::testing::Snapshot;
use statushook::testing::{self as reload, Outcome, Reloader};

#[path = "../tests/support/guests.rs"]
mod guests;

const BOTS: usize = 1000;
const CUSTOM_PLUGINS: usize = 20;
const RUNS: usize = 5;

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let crm = guests::guest("crm_plugin");
    let crm = std::fs::read(&crm).unwrap_or_else(|e| panic!("{}: {e}", crm.display()));
    std::fs::create_dir_all(dir.path().join("plugins")).expect("plugins dir");
    for n in 0..CUSTOM_PLUGINS {
        write_plugin(dir.path(), n, &crm, 0);
    }
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config_text("Acme")).expect("config");

    let rss_start = rss_kib();
    let host = PluginHost::new(HostOptions {
        cache_dir: Some(dir.path().join("cache")),
        ..HostOptions::default()
    })
    .expect("host");
    let started = Instant::now();
    let config = config::load(&path).expect("valid config");
    let snapshot = Snapshot::build(config, &host, None, &HashSet::new()).expect("snapshot");
    let initial_ms = started.elapsed().as_secs_f64() * 1000.0;
    let compiled = snapshot.compiled.len();
    let rss_loaded = rss_kib();

    let _ = rustls::crypto::ring::default_provider().install_default();
    let reloader = Reloader::new(
        path.clone(),
        Arc::new(ArcSwap::from_pointee(snapshot)),
        host.clone(),
        Arc::new(Metrics::new()),
        client(),
        Fragments::new(),
    );
    let mut rows = vec![(
        "initial load (config parsed, 23 plugins compiled, cold cache)".to_string(),
        initial_ms,
        compiled,
    )];
    let reload_all = || reloader.reload();
    rows.push(timed("reload, nothing changed", RUNS, reload_all, |_| {}));
    rows.push(timed(
        "reload, config changed (a channel name), plugins reused",
        RUNS,
        reload_all,
        |run| {
            std::fs::write(&path, config_text(&format!("Acme {run}"))).expect("config");
        },
    ));
    rows.push(timed(
        "reload, one plugin file swapped for a new build",
        RUNS,
        reload_all,
        |run| {
            write_plugin(dir.path(), 0, &crm, run + 1);
        },
    ));
    let rss_end = rss_kib();
    // A leak grows with every reload; allocator retention plateaus.
    for run in 0..30 {
        std::fs::write(&path, config_text(&format!("Plateau {run}"))).expect("config");
        let _ = reloader.reload();
    }
    let rss_plateau = rss_kib();

    println!(
        "## Reload at scale ({BOTS} bots × 4 webhooks, {CUSTOM_PLUGINS} distinct custom plugins + 4 built-ins)\n"
    );
    println!("| what | median of {RUNS} | plugins compiled |\n|---|---|---|");
    for (what, ms, compiled) in &rows {
        println!("| {what} | {ms:.1} ms | {compiled} |");
    }
    println!("\n| RSS | KiB |\n|---|---|");
    println!(
        "| process start | {rss_start} |\n| after the initial load | {rss_loaded} |\n| after {} reloads | {rss_end} |\n| after 30 more reloads | {rss_plateau} |",
        3 * RUNS
    );

    fragments(dir.path(), &host);
}

/// The same bots as 1,000 included files of one bot each.
fn fragments(dir: &Path, host: &PluginHost) {
    let folder = dir.join("bots.d");
    std::fs::create_dir_all(&folder).expect("bots.d");
    for bot in 0..BOTS {
        std::fs::write(
            folder.join(format!("bot-{bot:04}.toml")),
            bot_text(bot, "Acme"),
        )
        .expect("fragment");
    }
    let path = dir.join("tenants.toml");
    // `include` is a top-level key: before the first [section].
    let main = "include = [\"bots.d/*.toml\"]\n[server]\nlisten = \"127.0.0.1:0\"\ningest_tokens = [\"t\"]\n[queue]\nbackend = \"embedded\"\npath = \"queue\"\n";
    std::fs::write(&path, main).expect("main config");

    let started = Instant::now();
    let config = config::load(&path).expect("valid main config");
    let mut fragments = Fragments::new();
    let composed =
        reload::compose(config, &mut fragments, Reread::All, host, None).expect("composed");
    let initial_ms = started.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(composed.snapshot.bots().count(), BOTS);
    let reloader = Reloader::new(
        path,
        Arc::new(ArcSwap::from_pointee(composed.snapshot)),
        host.clone(),
        Arc::new(Metrics::new()),
        client(),
        fragments,
    );
    let edited = folder
        .join("bot-0500.toml")
        .canonicalize()
        .expect("fragment path");
    let one: BTreeSet<_> = [edited.clone()].into();
    let none = BTreeSet::new();
    let rows = [
        ("initial load (1,000 files read)".to_string(), initial_ms, 0),
        timed(
            "one file edited, the watcher's reload (reads that file)",
            RUNS,
            || reloader.reload_changed(&one),
            |run| {
                std::fs::write(&edited, bot_text(500, &format!("Edit {run}"))).expect("edit");
            },
        ),
        timed(
            "nothing changed, the watcher's reload (stats 1,000 files)",
            RUNS,
            || reloader.reload_changed(&none),
            |_| {},
        ),
        timed(
            "one file edited, SIGHUP (reads all 1,000 files)",
            RUNS,
            || reloader.reload(),
            |run| {
                std::fs::write(&edited, bot_text(500, &format!("Hup {run}"))).expect("edit");
            },
        ),
    ];
    println!("\n## Reload with {BOTS} included files of one bot each (same bots and plugins)\n");
    println!("| what | median of {RUNS} |\n|---|---|");
    for (what, ms, _) in &rows {
        println!("| {what} | {ms:.1} ms |");
    }
}

fn client() -> Arc<ArcSwap<reqwest::Client>> {
    Arc::new(ArcSwap::from_pointee(
        statushook::testing::build_client(false).expect("client"),
    ))
}

/// Median time of `runs` calls of `reload`, each after `change(run)`.
fn timed(
    what: &str,
    runs: usize,
    reload: impl Fn() -> Outcome,
    change: impl Fn(usize),
) -> (String, f64, usize) {
    let mut times = Vec::new();
    let mut compiled = 0;
    for run in 0..runs {
        change(run);
        let started = Instant::now();
        match reload() {
            Outcome::Applied(changes) => compiled = changes.plugins_compiled.len(),
            other => panic!("{what}: reload did not apply: {other:?}"),
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    (what.to_string(), times[times.len() / 2], compiled)
}

/// Writes custom plugin `n`: the CRM example with a custom section that
/// makes its bytes (and so its hash) distinct, as a different build would.
fn write_plugin(dir: &Path, n: usize, crm: &[u8], build: usize) {
    let mut wasm = crm.to_vec();
    let name = b"statushook-bench";
    let payload = format!("plugin {n} build {build}");
    let body_len = 1 + name.len() + payload.len();
    wasm.push(0); // custom section id
    wasm.push(u8::try_from(body_len).expect("short section"));
    wasm.push(u8::try_from(name.len()).expect("short name"));
    wasm.extend_from_slice(name);
    wasm.extend_from_slice(payload.as_bytes());
    let target = dir.join(format!("plugins/custom{n}.wasm"));
    let tmp = target.with_extension("tmp");
    std::fs::write(&tmp, wasm).expect("plugin");
    std::fs::rename(tmp, target).expect("swap plugin");
}

fn config_text(channel: &str) -> String {
    let mut text = String::from(
        "[server]\nlisten = \"127.0.0.1:0\"\ningest_tokens = [\"t\"]\n[queue]\nbackend = \"embedded\"\npath = \"queue\"\n[delivery]\nallow_private_networks = false\n",
    );
    for bot in 0..BOTS {
        text.push_str(&bot_text(bot, channel));
    }
    text
}

/// One bot: three built-ins and one of the 20 custom plugins.
fn bot_text(bot: usize, channel: &str) -> String {
    let builtins = ["jelou", "engage", "connectly"];
    let mut text = format!(
        "[[bots]]\nid = \"bot-{bot}\"\nchannel_name = \"{channel} {bot}\"\nphone_number_ids = [\"{}\"]\n",
        1_000_000 + bot
    );
    let custom = format!("plugins/custom{}.wasm", bot % CUSTOM_PLUGINS);
    for (hook, plugin) in builtins
        .iter()
        .copied()
        .chain([custom.as_str()])
        .enumerate()
    {
        text.push_str(&format!(
            "  [[bots.webhooks]]\n  name = \"hook-{hook}\"\n  url = \"https://partner-{hook}.example.com/bots/{bot}\"\n  events = [\"all\"]\n  plugin = \"{plugin}\"\n  sign = {{ type = \"hmac\", secret = \"s-{bot}\", header = \"x-sig\", encoding = \"hex\" }}\n"
        ));
    }
    text
}

/// The process's resident set size, KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
