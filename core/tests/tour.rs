//! The README's tour, run as written: every command of its "A five-minute
//! tour" section, in order, against the built binary, with a check after
//! each that what the README says happens does happen.
//!
//! The commands are read from README.md itself, so a changed command changes
//! what this test runs; a command added, removed or reordered fails the test
//! with a message naming the step, so the tour and its checks move together.
//! The only rewriting is of ports (the README's fixed 8080 and 9000 become
//! free ports) and of `statushook`, which becomes this build's binary.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One command of the tour and the output the README shows for it.
#[derive(Debug)]
struct Step {
    command: String,
    expect: Option<String>,
}

/// The commands of the README's tour section, in order.
fn tour_steps(readme: &str) -> Vec<Step> {
    let start = readme
        .find("## A five-minute tour")
        .expect("README has a section `## A five-minute tour`");
    let rest = &readme[start + 3..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    let mut steps: Vec<Step> = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in section.lines() {
        if line.starts_with("```") {
            in_block = line == "```sh" && !in_block;
            continue;
        }
        if !in_block {
            continue;
        }
        let trimmed = line.trim();
        if let Some(output) = trimmed.strip_prefix("# ")
            && output.starts_with('{')
        {
            steps.last_mut().expect("output follows a command").expect = Some(output.into());
            continue;
        }
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        // Drop a trailing comment, then join `\` continuations.
        let code = trimmed.split(" # ").next().unwrap_or(trimmed);
        if let Some(head) = code.strip_suffix('\\') {
            pending.push_str(head);
            continue;
        }
        pending.push_str(code);
        steps.push(Step {
            command: std::mem::take(&mut pending),
            expect: None,
        });
    }
    steps
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "the README tour uses `{tool}`; install it: apt-get install {package}"
    );
}

/// A line the demo receiver printed.
#[derive(Debug, Clone)]
struct Received {
    /// Milliseconds since midnight UTC, from the receiver's own stamp.
    at_ms: u64,
    path: String,
    webhook_id: String,
    signature: String,
}

fn parse_received(line: &str) -> Option<Received> {
    // `[HH:MM:SS.mmm UTC] POST /jelou  webhook-id=msg_...  signature: valid`
    let rest = line.strip_prefix('[')?;
    let (stamp, rest) = rest.split_once(" UTC] ")?;
    let (hms, millis) = stamp.split_once('.')?;
    let mut parts = hms.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
    let at_ms = ((h * 60 + m) * 60 + s) * 1000 + millis.parse::<u64>().ok()?;
    let rest = rest.strip_prefix("POST ")?;
    let (path, rest) = rest.split_once("  webhook-id=")?;
    let (webhook_id, signature) = rest.split_once("  signature: ")?;
    Some(Received {
        at_ms,
        path: path.into(),
        webhook_id: webhook_id.into(),
        signature: signature.into(),
    })
}

/// A running demo receiver and what it has printed.
struct Receiver {
    child: Child,
    seen: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn received(&self) -> Vec<Received> {
        self.seen.lock().expect("lock").clone()
    }

    /// Waits until `done` holds for what arrived, or fails after `limit`.
    fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + limit;
        loop {
            let seen = self.received();
            if done(&seen) {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "the README says {what}, but after {limit:?} the receiver had printed: {seen:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Sends SIGINT (the README's Ctrl-C) or SIGTERM and waits for the exit.
fn stop(child: &mut Child, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("statushook did not stop on {signal} within 20 s");
}

/// Everything the tour started, stopped when the test ends however it ends.
struct Tour {
    repo: PathBuf,
    dir: tempfile::TempDir,
    dispatcher_port: u16,
    receiver_port: u16,
    dispatcher: Option<Child>,
    receiver: Option<Receiver>,
}

impl Drop for Tour {
    fn drop(&mut self) {
        if let Some(receiver) = &mut self.receiver {
            let _ = receiver.child.kill();
            let _ = receiver.child.wait();
        }
        if let Some(dispatcher) = &mut self.dispatcher {
            let _ = dispatcher.kill();
            let _ = dispatcher.wait();
        }
    }
}

impl Tour {
    fn new() -> Self {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root")
            .to_path_buf();
        let dir = tempfile::tempdir().expect("temp dir");
        let dispatcher_port = free_port();
        let receiver_port = free_port();
        // The shipped config, as the README runs it, on free ports.
        let config = std::fs::read_to_string(repo.join("config.toml")).expect("config.toml");
        assert!(
            config.contains("127.0.0.1:8080") && config.contains("127.0.0.1:9000"),
            "the README tour talks to :8080 and :9000; config.toml must listen there and send there"
        );
        let config = config
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{dispatcher_port}"))
            .replace("127.0.0.1:9000", &format!("127.0.0.1:{receiver_port}"));
        std::fs::write(dir.path().join("config.toml"), config).expect("write config");
        Self {
            repo,
            dir,
            dispatcher_port,
            receiver_port,
            dispatcher: None,
            receiver: None,
        }
    }

    fn binary() -> &'static str {
        env!("CARGO_BIN_EXE_statushook")
    }

    /// The README command with this run's ports and binary.
    fn rewrite(&self, command: &str) -> String {
        command
            .replace(
                "localhost:8080",
                &format!("127.0.0.1:{}", self.dispatcher_port),
            )
            .replace(
                "localhost:9000",
                &format!("127.0.0.1:{}", self.receiver_port),
            )
    }

    fn environment(&self, cmd: &mut Command) {
        let bin_dir = Path::new(Self::binary()).parent().expect("bin dir");
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{}:{path}", bin_dir.display()))
            .env("STATUSHOOK_CACHE_DIR", self.dir.path().join("cache"))
            .env_remove("STATUSHOOK_LOG")
            .env_remove("STATUSHOOK_LOG_FORMAT");
    }

    /// `statushook receive ...`: Ctrl-C the running receiver, start this one.
    fn start_receiver(&mut self, command: &str) {
        if let Some(mut old) = self.receiver.take() {
            stop(&mut old.child, "-INT");
        }
        let args: Vec<&str> = command.split_whitespace().skip(1).collect();
        let mut cmd = Command::new(Self::binary());
        cmd.args(&args)
            .args(["--listen", &format!("127.0.0.1:{}", self.receiver_port)])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        self.environment(&mut cmd);
        let mut child = cmd.spawn().expect("start the receiver");
        let stdout = child.stdout.take().expect("stdout");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(received) = parse_received(&line) {
                    sink.lock().expect("lock").push(received);
                }
            }
        });
        // Wait until it accepts connections.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.receiver_port)).is_err() {
            assert!(Instant::now() < deadline, "the receiver did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.receiver = Some(Receiver { child, seen });
    }

    fn receiver(&self) -> &Receiver {
        self.receiver.as_ref().expect("a receiver is running")
    }

    /// `statushook run`, in the folder holding the config, until `/readyz`.
    fn start_dispatcher(&mut self, command: &str) {
        assert_eq!(
            command, "statushook run",
            "the tour runs the shipped config"
        );
        let mut cmd = Command::new(Self::binary());
        cmd.arg("run")
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        self.environment(&mut cmd);
        self.dispatcher = Some(cmd.spawn().expect("start the dispatcher"));
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if self.sh("curl -s -o /dev/null -w '%{http_code}' localhost:8080/readyz") == "200" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the dispatcher never became ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs a shell command from the repository root (where the README's
    /// `examples/...` paths point) and returns its stdout.
    fn sh(&self, command: &str) -> String {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &self.rewrite(command)])
            .current_dir(&self.repo)
            .stderr(Stdio::inherit());
        self.environment(&mut cmd);
        let out = cmd.output().expect("run sh");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The dead letters of the demo bot, as the admin API lists them.
    fn dead_letters(&self) -> Vec<serde_json::Value> {
        let text = self.sh("curl -s localhost:8080/v1/bots/acme-support/dead-letters \
             -H 'Authorization: Bearer demo-admin-token'");
        let doc: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        doc["dead_letters"].as_array().cloned().unwrap_or_default()
    }
}

/// The four formats of the shipped config, one webhook each.
fn paths() -> BTreeSet<String> {
    ["/jelou", "/engage", "/connectly", "/wpp"]
        .into_iter()
        .map(String::from)
        .collect()
}

fn ids(received: &[Received]) -> BTreeSet<String> {
    received.iter().map(|r| r.webhook_id.clone()).collect()
}

#[test]
fn the_readme_tour_happens_as_written() {
    require("curl", "curl");
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let steps = tour_steps(&readme);
    let commands: Vec<&str> = steps.iter().map(|s| s.command.as_str()).collect();
    let outline: Vec<&str> = vec![
        "cargo build",
        "export PATH",
        "statushook receive",
        "statushook run",
        "curl -s localhost:8080/v1/events",
        "curl -s localhost:8080/v1/events",
        "statushook receive",
        "curl -s localhost:8080/v1/events",
        "curl -s localhost:8080/v1/bots/acme-support/dead-letters",
        "statushook receive",
        "curl -s -X POST localhost:8080/v1/bots/acme-support/dead-letters/replay",
        "statushook receive",
        "curl -s localhost:8080/v1/events",
        "statushook receive",
        "curl -s localhost:8080/metrics",
        "curl -s 'localhost:8080/v1/bots/acme-support/deliveries?message_id=",
        "statushook plugin-test",
    ];
    assert_eq!(
        commands.len(),
        outline.len(),
        "the README tour's commands changed; update this test's checks with it: {commands:#?}"
    );
    for (n, (command, start)) in commands.iter().zip(&outline).enumerate() {
        assert!(
            command.starts_with(start),
            "tour step {n} is `{command}`; this test checks a step starting `{start}` there"
        );
    }

    let mut tour = Tour::new();
    let mut sent_in_500_phase = BTreeSet::new();
    let mut dead_ids = BTreeSet::new();
    for (n, step) in steps.iter().enumerate() {
        let command = step.command.as_str();
        if command.starts_with("statushook receive") {
            tour.start_receiver(command);
        } else if command.starts_with("statushook run") {
            tour.start_dispatcher(command);
        } else if command.starts_with("cargo build") || command.starts_with("export PATH") {
            // This test runs the binary cargo built for it, found the same way.
            continue;
        } else {
            let output = tour.sh(command);
            if let Some(expect) = &step.expect {
                assert_eq!(&output, expect, "step {n}: `{command}`");
            }
            match n {
                // The first event: four requests, one per format, all signed.
                4 => {
                    let seen = tour.receiver().wait_for(
                        "four requests, one per format",
                        Duration::from_secs(20),
                        |seen| seen.len() >= 4,
                    );
                    let got: BTreeSet<String> = seen.iter().map(|r| r.path.clone()).collect();
                    assert_eq!(got, paths());
                    assert!(
                        seen.iter().all(|r| r.signature == "valid"),
                        "every request is signed: {seen:#?}"
                    );
                }
                // The duplicate: nothing more arrives.
                5 => {
                    std::thread::sleep(Duration::from_secs(1));
                    assert_eq!(
                        tour.receiver().received().len(),
                        4,
                        "nothing delivered twice"
                    );
                }
                // Under 410: four dead letters at once.
                7 => {
                    let deadline = Instant::now() + Duration::from_secs(20);
                    while tour.dead_letters().len() < 4 {
                        assert!(Instant::now() < deadline, "four dead letters after 410s");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
                // The listing: four entries, each one 410 attempt.
                8 => {
                    let doc: serde_json::Value =
                        serde_json::from_str(&output).expect("the listing is JSON");
                    assert_eq!(doc["bot"], "acme-support");
                    let dead = doc["dead_letters"].as_array().expect("dead_letters");
                    assert_eq!(dead.len(), 4, "{output}");
                    for letter in dead {
                        assert!(letter["reason"].is_string(), "{letter}");
                        assert_eq!(letter["attempts"][0]["status"], 410, "{letter}");
                        assert_eq!(letter["status"], "read", "{letter}");
                        dead_ids.insert(letter["id"].as_str().expect("id").to_string());
                    }
                }
                // The replay: the same four deliveries arrive, same ids.
                10 => {
                    let seen = tour.receiver().wait_for(
                        "the four replayed deliveries arrive",
                        Duration::from_secs(30),
                        |seen| seen.len() >= 4,
                    );
                    assert_eq!(ids(&seen), dead_ids, "replays keep their webhook-id");
                    assert!(seen.iter().all(|r| r.signature == "valid"), "{seen:#?}");
                }
                // Under 500: a retry of an id already seen, about 5 s later.
                12 => {
                    let seen = tour.receiver().wait_for(
                        "a retry with a webhook-id already shown",
                        Duration::from_secs(30),
                        |seen| seen.len() > ids(seen).len(),
                    );
                    let mut first: HashMap<&str, u64> = HashMap::new();
                    for r in &seen {
                        if let Some(at) = first.get(r.webhook_id.as_str()) {
                            // The first wait is 5 s with ±20 % jitter: never
                            // sooner than 4 s (a correctness bound, not speed).
                            let waited = (r.at_ms + 86_400_000 - at) % 86_400_000;
                            assert!(waited >= 3_900, "retried after {waited} ms: {seen:#?}");
                        } else {
                            first.insert(&r.webhook_id, r.at_ms);
                        }
                    }
                    sent_in_500_phase = ids(&seen);
                    assert_eq!(sent_in_500_phase.len(), 4, "four deliveries: {seen:#?}");
                }
                // The metrics grep prints the delivery counters.
                14 => {
                    assert!(
                        output.contains("statushook_deliveries_delivered_total"),
                        "{output}"
                    );
                    assert!(
                        output.contains("statushook_deliveries_dead_lettered_total"),
                        "{output}"
                    );
                }
                // The delivery log: the read (410, replayed, 200) and the
                // delivered (500s, then 200) of one message at jelou. The
                // last ack may land just after the receiver saw the send.
                15 => {
                    let deadline = Instant::now() + Duration::from_secs(20);
                    let mut output = output;
                    let settled = |doc: &serde_json::Value| {
                        doc["deliveries"].as_array().is_some_and(|d| {
                            d.len() == 2 && d.iter().all(|d| d["outcome"] == "delivered")
                        })
                    };
                    let doc = loop {
                        let doc: serde_json::Value =
                            serde_json::from_str(&output).expect("the log answers JSON");
                        if settled(&doc) || Instant::now() > deadline {
                            break doc;
                        }
                        std::thread::sleep(Duration::from_millis(200));
                        output = tour.sh(command);
                    };
                    assert!(settled(&doc), "two delivered deliveries: {doc:#}");
                    let deliveries = doc["deliveries"].as_array().expect("deliveries");
                    let statuses = |status: &str| -> Vec<serde_json::Value> {
                        let found = deliveries
                            .iter()
                            .find(|d| d["status"] == status)
                            .unwrap_or_else(|| panic!("the {status} delivery: {doc:#}"));
                        assert_eq!(found["webhook"], "jelou");
                        found["attempts"]
                            .as_array()
                            .expect("attempts")
                            .iter()
                            .map(|a| a["status"].clone())
                            .collect()
                    };
                    assert_eq!(deliveries[0]["status"], "delivered", "newest first");
                    let delivered = statuses("delivered");
                    assert_eq!(delivered.last(), Some(&serde_json::json!(200)));
                    assert!(
                        delivered[..delivered.len() - 1].iter().all(|s| s == 500),
                        "{delivered:?}"
                    );
                    assert!(delivered.len() >= 2, "{delivered:?}");
                    assert_eq!(statuses("read"), [410, 200]);
                    assert!(
                        output.contains("\"response\""),
                        "answers are kept: {output}"
                    );
                }
                // plugin-test: exactly the JSON body on stdout.
                16 => {
                    let body: serde_json::Value =
                        serde_json::from_str(&output).expect("plugin-test prints the body");
                    assert!(body.is_object(), "{output}");
                }
                _ => {}
            }
            continue;
        }
        // After the receiver restarts at step 13: the four retried
        // deliveries arrive within about 30 s, with their old ids.
        if n == 13 {
            let seen = tour.receiver().wait_for(
                "all four retried deliveries arrive within about 30 s",
                Duration::from_secs(45),
                |seen| ids(seen).len() >= 4,
            );
            assert_eq!(
                ids(&seen),
                sent_in_500_phase,
                "retries keep their webhook-id"
            );
            assert!(seen.iter().all(|r| r.signature == "valid"), "{seen:#?}");
        }
    }
    if let Some(mut dispatcher) = tour.dispatcher.take() {
        stop(&mut dispatcher, "-TERM");
    }
}
