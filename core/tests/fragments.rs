//! A config folder of per-tenant files (`include = ["bots.d/*.toml"]`):
//! each file checked and reloaded on its own, through the real watcher,
//! under a steady stream of events.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use statushook::app::{self, Running};
use statushook::config::{self, FileChange, Fragments, Reread};
use support::receiver::{Received, Receiver};
use support::until;

const TOKEN: &str = "tenants-token";
const WAIT: Duration = Duration::from_secs(30);

/// A config folder: `config.toml` including `bots.d/*.toml`.
struct Folder {
    dir: tempfile::TempDir,
}

impl Folder {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::create_dir(dir.path().join("bots.d")).expect("bots.d");
        let main = format!(
            "include = [\"bots.d/*.toml\"]\n\n[server]\nlisten = \"127.0.0.1:0\"\ningest_tokens = [\"{TOKEN}\"]\n\n[queue]\nbackend = \"embedded\"\npath = \"queue\"\n\n[delivery]\ntimeout = \"2s\"\nretry_schedule = [\"100ms\", \"100ms\", \"100ms\"]\nallow_private_networks = true\n"
        );
        std::fs::write(dir.path().join("config.toml"), main).expect("config");
        Folder { dir }
    }

    fn main(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    fn fragment(&self, name: &str) -> PathBuf {
        self.dir.path().join("bots.d").join(name)
    }

    /// Writes a fragment as a provisioning tool should: a temp file, then a
    /// rename into place.
    fn put(&self, name: &str, text: &str) {
        let tmp = self.dir.path().join("bots.d").join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).expect("write tmp");
        std::fs::rename(&tmp, self.fragment(name)).expect("rename");
    }

    async fn start(&self) -> Running {
        let config = config::load(&self.main()).unwrap_or_else(|e| panic!("{e}"));
        app::start(config).await.expect("start")
    }
}

/// A fragment with one bot and one webhook posting to `url`.
fn tenant(bot: &str, url: &str) -> String {
    format!(
        "[[bots]]\nid = \"{bot}\"\n\n  [[bots.webhooks]]\n  name = \"status\"\n  url = \"{url}\"\n  events = [\"all\"]\n  plugin = \"wpp\"\n"
    )
}

fn event(n: usize, bot: &str) -> serde_json::Value {
    serde_json::json!({"id": format!("{bot}-{n}"), "bot_id": bot, "message_id": format!("wamid.{n}"),
        "status": "read", "timestamp": 1777326001u64, "recipient": "5939800000000"})
}

/// `statushook_config_reloads_total` for one file label and result.
fn reloads(running: &Running, file: &str, result: &str) -> u64 {
    let wanted = format!("statushook_config_reloads_total{{file=\"{file}\",reason=\"{result}\"}} ");
    running
        .metrics()
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(&wanted))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn event_id(received: &Received) -> String {
    received.json()["eventId"]
        .as_str()
        .expect("eventId")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_file_stands_alone_under_load() {
    let folder = Folder::new();
    let receiver = Receiver::start().await;
    let url = |path: &str| format!("{}/{path}", receiver.url());
    let tenants = ["a", "b", "c"];
    for t in tenants {
        folder.put(&format!("{t}.toml"), &tenant(t, &url(&format!("{t}-v1"))));
    }
    let running = folder.start().await;
    assert_eq!(running.routes().bots().count(), 3);
    let addr = running.addr();

    // A steady stream to all three tenants until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let accepted: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>> = Arc::default();
    let streamer = {
        let (stop, accepted) = (stop.clone(), accepted.clone());
        tokio::spawn(async move {
            let client = support::http_client();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                for bot in tenants {
                    let status = support::post_event(&client, addr, TOKEN, &event(n, bot)).await;
                    assert_eq!(status, 202, "every event is accepted during reloads");
                    accepted
                        .lock()
                        .expect("lock")
                        .entry(bot.to_string())
                        .or_default()
                        .insert(format!("{bot}-{n}"));
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    until("all three tenants deliver", || {
        let paths: BTreeSet<String> = receiver.received().into_iter().map(|r| r.path).collect();
        ["/a-v1", "/b-v1", "/c-v1"]
            .iter()
            .all(|p| paths.contains(*p))
    })
    .await;

    // Tenant a's file is broken (a URL that is not one); b and c move.
    folder.put(
        "a.toml",
        &tenant("a", &url("a-v2")).replace(&url("a-v2"), "not a url"),
    );
    folder.put("b.toml", &tenant("b", &url("b-v2")));
    folder.put("c.toml", &tenant("c", &url("c-v2")));
    let took = until("b and c move to their new URLs", || {
        let paths: BTreeSet<String> = receiver.received().into_iter().map(|r| r.path).collect();
        paths.contains("/b-v2") && paths.contains("/c-v2")
    })
    .await;
    eprintln!(
        "b's and c's edits were live {} ms after the write",
        took.as_millis()
    );
    until("a's refusal counted", || {
        reloads(&running, "bots.d/a.toml", "error") >= 1
    })
    .await;
    assert!(reloads(&running, "bots.d/b.toml", "ok") >= 1);
    // a keeps its last good version: its new events still arrive at a-v1.
    let seen = receiver.received().len();
    until("a still delivers to its previous URL", || {
        receiver.received()[seen..]
            .iter()
            .any(|r| r.path == "/a-v1")
    })
    .await;
    assert_eq!(
        running
            .routes()
            .webhook("a", "status")
            .map(|w| w.config.url.path().to_string()),
        Some("/a-v1".to_string())
    );
    assert!(
        !receiver.received().iter().any(|r| r.path == "/a-v2"),
        "the broken version is not used"
    );

    // Fixed: applied.
    folder.put("a.toml", &tenant("a", &url("a-v2")));
    until("a's fixed file applies", || {
        receiver.received().iter().any(|r| r.path == "/a-v2")
    })
    .await;

    stop.store(true, Ordering::SeqCst);
    streamer.await.expect("streamer");
    let accepted = accepted.lock().expect("lock").clone();
    let total: usize = accepted.values().map(BTreeSet::len).sum();
    receiver.wait_for(total, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Nothing lost, nothing twice: each tenant got each of its events once.
    let mut delivered: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in receiver.received() {
        let bot = r.path[1..2].to_string();
        delivered.entry(bot).or_default().push(event_id(&r));
    }
    for (bot, ids) in &accepted {
        let got = delivered.get(bot).cloned().unwrap_or_default();
        let unique: BTreeSet<String> = got.iter().cloned().collect();
        assert_eq!(&unique, ids, "tenant {bot}: every accepted event delivered");
        assert_eq!(
            unique.len(),
            got.len(),
            "tenant {bot}: nothing delivered twice"
        );
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_added_and_deleted_come_and_go_and_a_broken_new_file_adds_nothing() {
    let folder = Folder::new();
    let receiver = Receiver::start().await;
    let url = |path: &str| format!("{}/{path}", receiver.url());
    folder.put("a.toml", &tenant("a", &url("a")));
    let running = folder.start().await;

    folder.put("new.toml", &tenant("newcomer", &url("new")));
    until("a new file's bot is routed", || {
        running.routes().bot("newcomer").is_some()
    })
    .await;
    std::fs::remove_file(folder.fragment("new.toml")).expect("delete");
    until("a deleted file's bot is gone", || {
        running.routes().bot("newcomer").is_none()
    })
    .await;
    folder.put("broken.toml", "[[bots]]\nid = \"half\"\nwebhooks = 3\n");
    until("a broken new file is refused", || {
        reloads(&running, "bots.d/broken.toml", "error") >= 1
    })
    .await;
    assert!(running.routes().bot("half").is_none());
    assert!(running.routes().bot("a").is_some());
    // Anything but [[bots]] in a fragment is refused, naming the key.
    folder.put(
        "server.toml",
        "[server]\nlisten = \"0.0.0.0:1\"\n\n[[bots]]\nid = \"sneaky\"\n",
    );
    until("a fragment with [server] is refused", || {
        reloads(&running, "bots.d/server.toml", "error") >= 1
    })
    .await;
    assert!(running.routes().bot("sneaky").is_none());
    running.shutdown().await;
}

/// What the include of `folder` composes to, as start-up sees it.
fn compose_at_start(folder: &Folder) -> (config::Config, config::Composition) {
    let main = config::load(&folder.main()).unwrap_or_else(|e| panic!("{e}"));
    let mut fragments = Fragments::new();
    fragments.scan(&main.include, &main.path, Reread::All);
    let composition = fragments.compose(&main.path, &main.bots, &Default::default(), &[]);
    (main, composition)
}

fn refusal(composition: &config::Composition, file: &Path) -> Vec<String> {
    match &composition
        .outcome(&config::absolute(file))
        .unwrap_or_else(|| panic!("no outcome for {}", file.display()))
        .change
    {
        FileChange::Refused { problems, .. } => problems.iter().map(ToString::to_string).collect(),
        other => panic!("{} was not refused: {other:?}", file.display()),
    }
}

#[test]
fn a_bot_id_in_two_files_refuses_the_later_naming_both() {
    let folder = Folder::new();
    folder.put("acme.toml", &tenant("acme", "https://a.example.com/x"));
    folder.put("zeta.toml", &tenant("acme", "https://z.example.com/x"));
    let (_, composition) = compose_at_start(&folder);
    let problems = refusal(&composition, &folder.fragment("zeta.toml"));
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let problem = &problems[0];
    assert!(
        problem.contains("zeta.toml:2: bots[0].id: duplicate bot id \"acme\""),
        "{problem}"
    );
    assert!(
        problem.contains("acme.toml:2 already defines it"),
        "{problem}"
    );
    assert_eq!(composition.bots.len(), 1, "the earlier file serves");
    assert_eq!(
        composition.bots[0].webhooks[0].url.host_str(),
        Some("a.example.com")
    );
}

#[test]
fn the_file_whose_new_version_brings_a_clash_is_the_one_refused() {
    let folder = Folder::new();
    folder.put("a.toml", &tenant("alpha", "https://a.example.com/x"));
    folder.put("b.toml", &tenant("beta", "https://b.example.com/x"));
    let main = config::load(&folder.main()).expect("main");
    let mut fragments = Fragments::new();
    fragments.scan(&main.include, &main.path, Reread::All);
    let running = fragments.compose(&main.path, &main.bots, &Default::default(), &[]);
    fragments.commit(&running);

    // a.toml (first in path order) takes b's bot id: a is refused, b stays.
    folder.put(
        "a.toml",
        &format!(
            "{}\n{}",
            tenant("alpha", "https://a.example.com/y"),
            tenant("beta", "https://a.example.com/z")
        ),
    );
    fragments.scan(&main.include, &main.path, Reread::All);
    let next = fragments.compose(&main.path, &main.bots, &Default::default(), &[]);
    let problems = refusal(&next, &folder.fragment("a.toml"));
    assert!(
        problems[0].contains("b.toml:2 already defines it"),
        "{problems:#?}"
    );
    let ids: Vec<&str> = next.bots.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(ids, ["alpha", "beta"], "a's last good version and b serve");
    assert!(next.kept.contains("alpha"), "a's bot runs as it ran");
    fragments.commit(&next);

    // A bot moved from b to a in one step lands, whatever the path order.
    folder.put("b.toml", &tenant("gamma", "https://b.example.com/g"));
    fragments.scan(&main.include, &main.path, Reread::All);
    let moved = fragments.compose(&main.path, &main.bots, &Default::default(), &[]);
    let mut ids: Vec<&str> = moved.bots.iter().map(|b| b.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["alpha", "beta", "gamma"]);
    assert!(
        moved
            .files
            .iter()
            .all(|f| !matches!(f.change, FileChange::Refused { .. })),
        "{:#?}",
        moved.files
    );
}

#[test]
fn only_changed_files_are_read_again() {
    let folder = Folder::new();
    for n in 0..50 {
        folder.put(
            &format!("t{n:02}.toml"),
            &tenant(&format!("t{n}"), "https://x.example.com/"),
        );
    }
    let main = config::load(&folder.main()).expect("main");
    let mut fragments = Fragments::new();
    assert_eq!(
        fragments.scan(&main.include, &main.path, Reread::All).read,
        50
    );
    let none = BTreeSet::new();
    assert_eq!(
        fragments
            .scan(&main.include, &main.path, Reread::Changed(&none))
            .read,
        0
    );
    folder.put("t07.toml", &tenant("t7", "https://y.example.com/"));
    assert_eq!(
        fragments
            .scan(&main.include, &main.path, Reread::Changed(&none))
            .read,
        1
    );
    let named = BTreeSet::from([config::absolute(&folder.fragment("t08.toml"))]);
    assert_eq!(
        fragments
            .scan(&main.include, &main.path, Reread::Changed(&named))
            .read,
        1
    );
}

#[test]
fn environment_references_work_in_fragments_as_in_the_main_file() {
    let folder = Folder::new();
    let with_token = |bot: &str, variable: &str| {
        tenant(bot, "https://x.example.com/").replace(
            "  plugin = \"wpp\"\n",
            &format!("  plugin = \"wpp\"\n  auth = {{ type = \"bearer\", token = \"${{{variable}}}\" }}\n"),
        )
    };
    folder.put("a.toml", &with_token("a", "HOME"));
    folder.put("b.toml", &with_token("b", "STATUSHOOK_TEST_NEVER_SET"));
    let (_, composition) = compose_at_start(&folder);
    let home = std::env::var("HOME").expect("HOME is set");
    assert_eq!(composition.bots.len(), 1);
    assert_eq!(
        composition.bots[0].webhooks[0].auth,
        config::Auth::Bearer { token: home }
    );
    let problems = refusal(&composition, &folder.fragment("b.toml"));
    assert!(
        problems[0].contains("b.toml:9: bots[0].webhooks[0].auth.token: environment variable STATUSHOOK_TEST_NEVER_SET is not set"),
        "{problems:#?}"
    );
}
