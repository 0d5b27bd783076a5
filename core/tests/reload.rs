//! Hot reload through the real file watcher, under a steady stream of events:
//! nothing lost, nothing duplicated, broken files change nothing.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use statushook::app::{self, Running};
use statushook::{config, plugin};
use support::receiver::Receiver;
use support::redis::RedisServer;
use support::until;

const TOKEN: &str = "reload-token";
const WAIT: Duration = Duration::from_secs(30);

struct Setup {
    redis: RedisServer,
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::create_dir_all(dir.path().join("plugins")).expect("plugins dir");
        let path = dir.path().join("config.toml");
        Setup {
            redis: RedisServer::start(),
            dir,
            path,
        }
    }

    fn text(&self, bots: &str) -> String {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ningest_tokens = [\"{TOKEN}\"]\n\n[queue]\nbackend = \"redis\"\nurl = \"{}\"\nprefix = \"reload\"\n\n[delivery]\ntimeout = \"2s\"\nretry_schedule = [\"100ms\", \"100ms\"]\nallow_private_networks = true\n\n{bots}",
            self.redis.url()
        )
    }

    /// Writes the config as an editor that saves by rename would.
    fn save_by_rename(&self, text: &str) {
        let tmp = self.dir.path().join(".config.toml.swp");
        std::fs::write(&tmp, text).expect("write tmp");
        std::fs::rename(&tmp, &self.path).expect("rename");
    }

    /// Writes the config in place.
    fn save_in_place(&self, text: &str) {
        std::fs::write(&self.path, text).expect("write");
    }

    async fn start(&self, text: &str) -> Running {
        self.save_in_place(text);
        let config = config::load(&self.path).unwrap_or_else(|e| panic!("{e}"));
        app::start(config).await.expect("start")
    }
}

fn bot(id: &str, webhooks: &[(&str, &str, &str)]) -> String {
    let mut text = format!("[[bots]]\nid = \"{id}\"\n");
    for (name, url, plugin) in webhooks {
        text.push_str(&format!("  [[bots.webhooks]]\n  name = \"{name}\"\n  url = \"{url}\"\n  events = [\"all\"]\n  plugin = \"{plugin}\"\n"));
    }
    text
}

fn event(n: usize, bot: &str) -> serde_json::Value {
    serde_json::json!({"id": format!("ev-{n}"), "bot_id": bot, "message_id": format!("wamid.{n}"), "status": "read",
        "timestamp": 1777326001u64, "recipient": "5939800000000", "template": "promo_1"})
}

fn copy_plugin(name: &str, to: &Path) {
    let tmp = to.with_extension("partial");
    std::fs::copy(support::guest(name), &tmp).expect("copy plugin");
    std::fs::rename(&tmp, to).expect("swap plugin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_reloads_under_a_steady_stream_lose_and_duplicate_nothing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("statushook=warn")
        .with_test_writer()
        .try_init();
    let setup = Setup::new();
    let stable = Receiver::start().await;
    let (a, b) = (Receiver::start().await, Receiver::start().await);
    let custom = setup.dir.path().join("plugins/custom.wasm");
    copy_plugin("crm_plugin", &custom);
    let stable_hook = (
        "stable",
        format!("{}/stable", stable.url()),
        "wpp".to_string(),
    );
    let config_with = |extra: &[(&str, String, String)]| {
        let mut hooks = vec![(stable_hook.0, stable_hook.1.clone(), stable_hook.2.clone())];
        hooks.extend(extra.iter().cloned());
        let hooks: Vec<(&str, &str, &str)> = hooks
            .iter()
            .map(|(n, u, p)| (*n, u.as_str(), p.as_str()))
            .collect();
        setup.text(&bot("acme", &hooks))
    };
    let running = setup.start(&config_with(&[])).await;
    let addr = running.addr();

    // A steady stream: one event every 5 ms until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let streamer = {
        let (stop, sent) = (stop.clone(), sent.clone());
        tokio::spawn(async move {
            let client = support::http_client();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let status = support::post_event(&client, addr, TOKEN, &event(n, "acme")).await;
                assert_eq!(status, 202, "every event is accepted during reloads");
                n += 1;
                sent.store(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let mut live_ms = Vec::new();
    for _ in 0..4 {
        // Add a webhook to receiver A (saved by rename).
        let before = a.received().len();
        setup.save_by_rename(&config_with(&[(
            "moving",
            format!("{}/moving", a.url()),
            "jelou".into(),
        )]));
        live_ms.push(
            until("added webhook delivers to A", || {
                a.received().len() > before
            })
            .await,
        );
        // Move it to receiver B (written in place).
        let before = b.received().len();
        setup.save_in_place(&config_with(&[(
            "moving",
            format!("{}/moving", b.url()),
            "jelou".into(),
        )]));
        live_ms.push(until("changed URL delivers to B", || b.received().len() > before).await);
        // A custom plugin webhook, then swap its plugin file for another build.
        setup.save_by_rename(&config_with(&[(
            "custom",
            format!("{}/custom", b.url()),
            "plugins/custom.wasm".into(),
        )]));
        let is_crm = |r: &support::receiver::Received| {
            r.path == "/custom" && r.json().get("source").is_some()
        };
        let is_jelou = |r: &support::receiver::Received| {
            r.path == "/custom" && r.json().get("isFinalEvent").is_some()
        };
        live_ms.push(
            until("custom plugin webhook live", || {
                b.received().iter().any(is_crm)
            })
            .await,
        );
        copy_plugin("jelou", &custom);
        let swapped_at = b.received().len();
        live_ms.push(
            until("swapped plugin renders", || {
                b.received()[swapped_at..].iter().any(is_jelou)
            })
            .await,
        );
        copy_plugin("crm_plugin", &custom);
        // Remove the extra webhooks again.
        setup.save_in_place(&config_with(&[]));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::SeqCst);
    streamer.await.expect("streamer");
    let total = sent.load(Ordering::SeqCst);

    // The webhook that never changed got every event exactly once.
    let got = stable.wait_for(total, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = if stable.received().len() > got.len() {
        stable.received()
    } else {
        got
    };
    let mut per_event: BTreeMap<String, usize> = BTreeMap::new();
    for r in &got {
        *per_event
            .entry(r.json()["eventId"].as_str().expect("eventId").to_string())
            .or_default() += 1;
    }
    assert_eq!(
        per_event.len(),
        total,
        "every event delivered to the stable webhook"
    );
    assert!(
        per_event.values().all(|&n| n == 1),
        "no event delivered twice"
    );
    live_ms.sort();
    eprintln!(
        "{total} events over 16 reloads; change live after (ms): median {}, max {}",
        live_ms[live_ms.len() / 2].as_millis(),
        live_ms[live_ms.len() - 1].as_millis()
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_config_and_broken_plugins_leave_the_old_snapshot_serving() {
    let setup = Setup::new();
    let receiver = Receiver::start().await;
    let custom = setup.dir.path().join("plugins/custom.wasm");
    copy_plugin("crm_plugin", &custom);
    let good = setup.text(&bot(
        "acme",
        &[(
            "crm",
            &format!("{}/crm", receiver.url()),
            "plugins/custom.wasm",
        )],
    ));
    let running = setup.start(&good).await;
    let reloads = |result: &str| {
        // One series per file; this config has one file.
        let text = running.metrics().encode();
        let reason = format!("reason=\"{result}\"}} ");
        text.lines()
            .filter(|l| l.starts_with("statushook_config_reloads_total{"))
            .filter_map(|l| l.split_once(&reason))
            .filter_map(|(_, n)| n.parse::<u64>().ok())
            .sum::<u64>()
    };
    let client = support::http_client();
    let post = |n: usize| {
        let client = client.clone();
        let addr = running.addr();
        async move { support::post_event(&client, addr, TOKEN, &event(n, "acme")).await }
    };
    let snapshot_before = Arc::as_ptr(&running.routes());

    // A syntax error, a plugin that is not a component, a plugin built against
    // another WIT version: each is refused and counted.
    setup.save_in_place(&good.replace("[[bots]]", "[[bots]\n"));
    until("syntax error counted", || reloads("error") >= 1).await;
    std::fs::write(&custom, b"not a component").expect("break plugin");
    until("broken plugin counted", || reloads("error") >= 2).await;
    copy_plugin("other_wit", &custom);
    until("wrong-WIT plugin counted", || reloads("error") >= 3).await;
    copy_plugin("trap_on_load", &custom);
    until("plugin that cannot start counted", || reloads("error") >= 4).await;
    // An empty file is a write in progress: ignored.
    setup.save_in_place("");
    until("empty file ignored", || reloads("ignored") >= 1).await;
    assert_eq!(
        Arc::as_ptr(&running.routes()),
        snapshot_before,
        "the old snapshot still serves"
    );
    assert_eq!(post(1).await, 202);
    let got = receiver.wait_for(1, WAIT).await;
    assert!(
        got[0].json().get("source").is_some(),
        "rendered by the old, good plugin build"
    );

    // The next good write is picked up.
    copy_plugin("crm_plugin", &custom);
    setup.save_in_place(&good.replace(
        "[[bots]]\nid = \"acme\"",
        "[[bots]]\nid = \"acme\"\nchannel_name = \"Renamed\"",
    ));
    until("good config applied", || reloads("ok") >= 1).await;
    assert_eq!(
        running
            .routes()
            .bot("acme")
            .and_then(|b| b.config.channel_name.clone())
            .as_deref(),
        Some("Renamed")
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_bot_is_refused_at_once_and_restart_only_settings_are_kept() {
    let setup = Setup::new();
    let receiver = Receiver::start().await;
    let url = format!("{}/x", receiver.url());
    let two_bots = setup.text(&format!(
        "{}\n{}",
        bot("acme", &[("x", &url, "jelou")]),
        bot("gone", &[("x", &url, "jelou")])
    ));
    let running = setup.start(&two_bots).await;
    let client = support::http_client();
    let status = |bot: &'static str, n: usize| {
        let client = client.clone();
        let addr = running.addr();
        async move { support::post_event(&client, addr, TOKEN, &event(n, bot)).await }
    };
    assert_eq!(status("gone", 1).await, 202);
    let listen = running.routes().config.server.listen;
    let one_bot = setup
        .text(&bot("acme", &[("x", &url, "jelou")]))
        .replace("127.0.0.1:0", "127.0.0.1:1");
    setup.save_by_rename(&one_bot);
    until("bot removed", || running.routes().bot("gone").is_none()).await;
    assert_eq!(status("gone", 2).await, 422);
    assert_eq!(status("acme", 3).await, 202);
    assert_eq!(
        running.routes().config.server.listen,
        listen,
        "listen needs a restart: the running value is kept"
    );
    running.shutdown().await;
}

/// `component` with a custom section of `bytes` zeros appended: as large as
/// a JavaScript or Python plugin, so a reload compiles it in the background,
/// while it compiles as fast as the small one.
fn padded(component: &[u8], bytes: usize) -> Vec<u8> {
    let name = b"statushook-test-padding";
    let mut payload = vec![u8::try_from(name.len()).expect("short name")];
    payload.extend_from_slice(name);
    payload.resize(payload.len() + bytes, 0);
    let mut out = component.to_vec();
    out.push(0); // a custom section
    let mut size = payload.len();
    loop {
        let byte = u8::try_from(size & 0x7f).expect("7 bits");
        size >>= 7;
        if size == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(&payload);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_plugin_compiles_in_the_background_while_its_previous_build_serves() {
    let setup = Setup::new();
    let receiver = Receiver::start().await;
    let custom = setup.dir.path().join("plugins/custom.wasm");
    copy_plugin("crm_plugin", &custom);
    // A cache of its own: a cached build loads at once, with no compile to wait for.
    let config = setup.text(&format!(
        "[plugins]\ncache_dir = \"cache\"\n\n{}",
        bot(
            "acme",
            &[(
                "crm",
                &format!("{}/crm", receiver.url()),
                "plugins/custom.wasm",
            )],
        )
    ));
    let running = setup.start(&config).await;
    let client = support::http_client();

    // A new build over 1 MiB (the hostile guest, whose body has no
    // `source`): the reload applies at once, keeping the old build, and a
    // second reload switches once the compile is done.
    let big = padded(
        &std::fs::read(support::guest("hostile")).expect("hostile guest"),
        plugin::PluginHost::BACKGROUND_COMPILE_BYTES,
    );
    let tmp = custom.with_extension("partial");
    std::fs::write(&tmp, &big).expect("write");
    std::fs::rename(&tmp, &custom).expect("swap");
    let switched = |s: &str| s.contains("plugins compiled: plugins/custom.wasm");
    until("the background compile's reload", || {
        running
            .metrics()
            .activity
            .reloads()
            .iter()
            .any(|r| switched(&r.summary))
    })
    .await;
    // Oldest first (the activity lists the newest first).
    let reloads = running.metrics().activity.reloads();
    let summaries: Vec<&str> = reloads.iter().rev().map(|r| r.summary.as_str()).collect();
    assert!(
        reloads.iter().all(|r| r.result == "ok"),
        "every reload applied: {summaries:?}"
    );
    let deferred = summaries.iter().position(|s| {
        s.contains("plugins compiling in the background") && s.contains("plugins/custom.wasm")
    });
    let compiled = summaries.iter().position(|s| switched(s));
    assert!(
        deferred.is_some() && deferred < compiled,
        "a reload deferred the compile, a later one switched: {summaries:?}"
    );
    let serving = running.routes();
    let webhook = &serving.bot("acme").expect("acme").webhooks[0];
    assert_eq!(
        webhook.plugin.sha256(),
        plugin::PluginSource::read_file(&custom)
            .expect("read")
            .sha256(),
        "the new build serves"
    );
    assert_eq!(
        support::post_event(&client, running.addr(), TOKEN, &event(1, "acme")).await,
        202
    );
    let got = receiver.wait_for(1, WAIT).await;
    assert!(
        got[0].json().get("source").is_none() && got[0].json()["id"] == "ev-1",
        "rendered by the new build: {}",
        got[0].json()
    );
    running.shutdown().await;
}
