//! A real Redis Cluster per test: redis-server processes with
//! `--cluster-enabled yes` on free loopback ports, joined by
//! `redis-cli --cluster create`, stopped when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One node of the cluster.
struct Node {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

/// A running Redis Cluster.
pub struct RedisCluster {
    nodes: Vec<Node>,
}

impl RedisCluster {
    /// Starts `primaries` primaries with `replicas` replicas each (AOF on,
    /// every write fsynced, as production should run), and waits until the
    /// cluster reports `cluster_state:ok` on every node.
    pub fn start(primaries: usize, replicas: usize) -> Self {
        let count = primaries * (1 + replicas);
        let mut nodes: Vec<Node> = Vec::with_capacity(count);
        while nodes.len() < count {
            let port = cluster_port(&nodes);
            let dir = tempfile::tempdir().expect("temp dir").keep();
            let mut node = Node {
                child: None,
                port,
                dir,
            };
            node.spawn();
            nodes.push(node);
        }
        let cluster = RedisCluster { nodes };
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-cli ({e}): these tests need Redis's tools; install them with `apt-get install redis-server redis-tools`")
            });
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        cluster.wait_until_ok(Duration::from_secs(30));
        if replicas > 0 {
            cluster.wait_for_replicas(primaries * replicas, Duration::from_secs(30));
        }
        cluster
    }

    /// The seed URLs, one per node, for `cluster_urls`.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}/", n.port))
            .collect()
    }

    /// `cluster_urls = [...]` as TOML.
    pub fn toml_urls(&self) -> String {
        let quoted: Vec<String> = self.urls().iter().map(|u| format!("\"{u}\"")).collect();
        format!("[{}]", quoted.join(", "))
    }

    /// The ports of the nodes that are primaries now.
    pub fn primaries(&self) -> Vec<u16> {
        self.roles()
            .into_iter()
            .filter(|(_, primary)| *primary)
            .map(|(port, _)| port)
            .collect()
    }

    /// Every live node's port and whether it is a primary, as a live node
    /// sees them.
    fn roles(&self) -> Vec<(u16, bool)> {
        let Some(text) = self
            .nodes
            .iter()
            .filter(|n| n.child.is_some())
            .find_map(|n| cli(n.port, &["cluster", "nodes"]))
        else {
            return Vec::new();
        };
        text.lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                let port = fields.get(1)?.split(['@', ':']).nth(1)?.parse().ok()?;
                let flags = fields.get(2)?;
                let alive = !flags.contains("fail");
                alive.then_some((port, flags.contains("master")))
            })
            .collect()
    }

    /// Runs `redis-cli` against node `port` and returns its output.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        cli(port, args).unwrap_or_else(|| panic!("redis-cli -p {port} {args:?} failed"))
    }

    /// Kills the node on `port` at once (SIGKILL).
    pub fn kill(&mut self, port: u16) {
        for node in &mut self.nodes {
            if node.port == port {
                node.kill();
            }
        }
    }

    /// Starts the node on `port` again after [`RedisCluster::kill`], with its
    /// data and its cluster config: it rejoins (as a replica, if its slots
    /// failed over meanwhile).
    pub fn restart(&mut self, port: u16) {
        for node in &mut self.nodes {
            if node.port == port {
                node.spawn();
            }
        }
    }

    /// The port of the node serving `slot` as primary now.
    pub fn primary_of_slot(&self, slot: u16) -> u16 {
        let live = self
            .nodes
            .iter()
            .find(|n| n.child.is_some())
            .expect("a live node");
        let text = self.cli(live.port, &["cluster", "nodes"]);
        // <id> <ip:port@bus> <flags> <primary> <ping> <pong> <epoch> <link> <slot ranges...>
        for line in text.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let (low, high) = range.split_once('-').unwrap_or((range, range));
                matches!((low.parse::<u16>(), high.parse::<u16>()), (Ok(l), Ok(h)) if (l..=h).contains(&slot))
            });
            if serves {
                let port = fields[1]
                    .split(['@', ':'])
                    .nth(1)
                    .and_then(|p| p.parse().ok());
                return port.expect("a node's port");
            }
        }
        panic!("no primary serves slot {slot}: {text}");
    }

    /// The slot of `key`, as the cluster computes it.
    pub fn slot_of(&self, key: &str) -> u16 {
        let port = self.primaries()[0];
        self.cli(port, &["cluster", "keyslot", key])
            .trim()
            .parse()
            .expect("a slot")
    }

    /// Waits until every live node reports `cluster_state:ok`.
    pub fn wait_until_ok(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let ok = self.nodes.iter().filter(|n| n.child.is_some()).all(|n| {
                cli(n.port, &["cluster", "info"])
                    .is_some_and(|info| info.contains("cluster_state:ok"))
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the Redis Cluster did not reach cluster_state:ok within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `count` replicas are linked to their primaries.
    fn wait_for_replicas(&self, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let linked = self
                .nodes
                .iter()
                .filter(|n| {
                    cli(n.port, &["info", "replication"]).is_some_and(|info| {
                        info.contains("role:slave") && info.contains("master_link_status:up")
                    })
                })
                .count();
            if linked >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {linked} of {count} replicas linked within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Node {
    fn spawn(&mut self) {
        self.child = Some(super::redis::spawn_redis_server(
            self.port,
            &self.dir,
            &[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "1000",
            ],
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        while cli(self.port, &["ping"]).is_none_or(|pong| !pong.contains("PONG")) {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
            let _ = std::fs::remove_dir_all(&node.dir);
        }
    }
}

/// `redis-cli -p port args...`, or `None` if it failed.
fn cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A port that is free with its cluster bus port (port + 10,000), both
/// below Linux's ephemeral range, and not taken by `nodes`.
fn cluster_port(nodes: &[Node]) -> u16 {
    loop {
        let port = fastrand::u16(20_000..22_700);
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if !nodes.iter().any(|n| n.port == port) && free(port) && free(port + 10_000) {
            return port;
        }
    }
}
