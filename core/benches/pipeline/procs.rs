//! The processes of a benchmark run: a real `redis-server`, the release
//! `statushook` binary with a generated config, and readings from `/proc`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// The ingest token of every generated config.
pub const TOKEN: &str = "bench-ingest-token";

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The release `statushook` binary, checked to be at least as new as the
/// sources it is built from.
pub fn dispatcher_binary() -> Result<PathBuf, String> {
    let core = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = core.parent().unwrap_or(core);
    let bin = match std::env::var_os("STATUSHOOK_BIN") {
        Some(path) => PathBuf::from(path),
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| root.join("target"), PathBuf::from);
            target.join("release").join("statushook")
        }
    };
    let how = "build it first: `cargo build --release --bin statushook` (then `cargo bench --bench pipeline`)";
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .map_err(|e| {
            format!(
                "the release dispatcher {} is missing ({e}); {how}",
                bin.display()
            )
        })?;
    if std::env::var_os("PIPELINE_ALLOW_STALE_BIN").is_some() {
        return Ok(bin);
    }
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for source in [
        core.join("src"),
        core.join("build.rs"),
        root.join("plugins"),
        root.join("wit"),
    ] {
        newest_file(&source, &mut newest);
    }
    if let Some((time, file)) = newest
        && time > built
    {
        return Err(format!(
            "the release dispatcher {} is older than {} (changed after the last build); {how} \
             (or set PIPELINE_ALLOW_STALE_BIN=1 to measure it anyway)",
            bin.display(),
            file.display()
        ));
    }
    Ok(bin)
}

fn newest_file(path: &Path, newest: &mut Option<(SystemTime, PathBuf)>) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if meta.is_dir() {
        if path
            .file_name()
            .is_some_and(|n| n == "target" || n == ".git")
        {
            return;
        }
        let Ok(entries) = std::fs::read_dir(path) else {
            return;
        };
        for entry in entries.flatten() {
            newest_file(&entry.path(), newest);
        }
    } else if let Ok(time) = meta.modified()
        && newest.as_ref().is_none_or(|(t, _)| time > *t)
    {
        *newest = Some((time, path.to_path_buf()));
    }
}

/// A `redis-server` child on a free port with the production persistence
/// recommendation: AOF on, fsync every second, no RDB snapshots.
pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    pub fn start(dir: &Path) -> Result<Self, String> {
        Self::start_on(dir, free_port(), "everysec")
    }

    /// A `redis-server` on `port` with its data in `dir` and
    /// `--appendfsync fsync` (`always`, `everysec`, `no`). Started again on
    /// the same port and folder, it replays its AOF.
    pub fn start_on(dir: &Path, port: u16, fsync: &str) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("redis dir: {e}"))?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", fsync])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start redis-server ({e}); install it with `apt-get install redis-server`"))?;
        let server = RedisServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ping(port) {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "redis-server on port {port} did not answer PING within 10 s"
        ))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `SHUTDOWN NOSAVE` (with AOF on, Redis still flushes and fsyncs the
    /// AOF first), then waits up to `wait` for the process to exit; true
    /// when it did. Dropping the server afterwards kills it if it did not.
    #[allow(dead_code)] // the soak bench's; the pipeline bench never stops its Redis
    pub fn shutdown_nosave(&mut self, wait: Duration) -> bool {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = stream.write_all(b"SHUTDOWN NOSAVE\r\n");
        }
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text of `INFO <section>` of the `redis-server` on `port`; `None`
/// if it did not answer.
fn redis_info(port: u16, section: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(format!("INFO {section}\r\n").as_bytes())
        .ok()?;
    // A bulk string: `$<len>\r\n<text>\r\n`.
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&reply);
        if let Some((header, body)) = text.split_once("\r\n")
            && let Ok(len) = header.trim_start_matches('$').parse::<usize>()
            && body.len() >= len
        {
            break;
        }
    }
    Some(String::from_utf8_lossy(&reply).into_owned())
}

/// `used_memory` of the `redis-server` on `port`, bytes.
pub fn redis_used_memory(port: u16) -> Option<u64> {
    redis_info(port, "memory")?
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The bytes of every file under `dir` (the embedded store's folder).
pub fn folder_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => folder_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Commands a `redis-server` has run, from `INFO commandstats`: the script
/// calls (`EVALSHA`/`EVAL`, one round trip each) and every command counted
/// there (those run inside scripts included). `None` if it did not answer.
pub fn redis_calls(port: u16) -> Option<RedisCalls> {
    let text = redis_info(port, "commandstats")?;
    let mut calls = RedisCalls::default();
    for line in text.lines() {
        let Some((name, stats)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let n: u64 = stats
            .split(',')
            .find_map(|kv| kv.strip_prefix("calls="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if name == "info" {
            continue;
        }
        calls.all += n;
        if name == "evalsha" || name == "eval" {
            calls.scripts += n;
        }
    }
    Some(calls)
}

/// Every command's calls and microseconds from `INFO commandstats`
/// (`INFO` itself left out), for `PIPELINE_REDIS_DETAIL`. A script's
/// microseconds include the commands it ran, which are also listed.
pub fn redis_command_table(port: u16) -> Option<Vec<(String, u64, u64)>> {
    let text = redis_info(port, "commandstats")?;
    let field = |stats: &str, key: &str| -> u64 {
        stats
            .split(',')
            .find_map(|kv| kv.strip_prefix(key))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Some(
        text.lines()
            .filter_map(|line| line.strip_prefix("cmdstat_")?.split_once(':'))
            .filter(|(name, _)| *name != "info")
            .map(|(name, stats)| {
                (
                    name.to_string(),
                    field(stats, "calls="),
                    field(stats, "usec="),
                )
            })
            .collect(),
    )
}

/// Prints, per delivery, what each Redis command cost between two
/// `redis_command_table` readings: calls and microseconds inside Redis.
pub fn print_command_costs(
    label: &str,
    before: &[(String, u64, u64)],
    after: &[(String, u64, u64)],
    deliveries: u64,
) {
    let per = deliveries.max(1) as f64;
    let mut rows: Vec<(String, u64, u64)> = after
        .iter()
        .map(|(name, calls, usec)| {
            let (c0, u0) = before
                .iter()
                .find(|(n, _, _)| n == name)
                .map_or((0, 0), |(_, c, u)| (*c, *u));
            (
                name.clone(),
                calls.saturating_sub(c0),
                usec.saturating_sub(u0),
            )
        })
        .filter(|(_, calls, _)| *calls > 0)
        .collect();
    rows.sort_by_key(|row| std::cmp::Reverse(row.2));
    eprintln!(
        "{label}: Redis commands per delivery ({deliveries} deliveries): calls, µs inside Redis"
    );
    for (name, calls, usec) in rows {
        eprintln!(
            "  {name:<18} {:>7.3} {:>8.2}",
            calls as f64 / per,
            usec as f64 / per
        );
    }
}

/// Counts from `INFO commandstats`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedisCalls {
    /// `EVALSHA` and `EVAL`: one round trip and one atomic step each.
    pub scripts: u64,
    /// Every command, those inside scripts included (`INFO` excluded).
    pub all: u64,
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

/// Which queue store the dispatcher uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Redis,
    Embedded,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Redis => "redis",
            Backend::Embedded => "embedded",
        }
    }
}

/// The bots and webhooks of a generated config.
#[derive(Debug, Clone)]
pub enum Bots {
    /// One bot `bench`, one `wpp` webhook to the receiver.
    Small { receiver: String },
    /// `count` bots × 4 webhooks (jelou, engage, connectly, wpp). Only
    /// `bot-0000` gets load: its `wpp` webhook takes every status, its three
    /// others only `failed` (so the load produces one delivery per event);
    /// every other bot's webhooks take every status.
    Large { receiver: String, count: usize },
    /// Bot `bot-a` to receiver `a`, bot `bot-b` to receiver `b` (one `wpp`
    /// webhook each, different endpoints).
    Pair { a: String, b: String },
}

/// The loaded bot of each layout.
pub const SMALL_BOT: &str = "bench";
pub const LARGE_BOT: &str = "bot-0000";

impl Bots {
    pub fn webhooks(&self) -> usize {
        match self {
            Bots::Small { .. } => 1,
            Bots::Large { count, .. } => count * 4,
            Bots::Pair { .. } => 2,
        }
    }

    fn write(&self, out: &mut String) {
        let hook = |out: &mut String, name: &str, url: &str, events: &str, plugin: &str| {
            out.push_str(&format!(
                "  [[bots.webhooks]]\n  name = \"{name}\"\n  url = \"{url}\"\n  events = {events}\n  plugin = \"{plugin}\"\n"
            ));
        };
        match self {
            Bots::Small { receiver } => {
                out.push_str(&format!("[[bots]]\nid = \"{SMALL_BOT}\"\n"));
                // PIPELINE_PLUGIN: a template's build (JavaScript, Python,
                // Rust) instead of the built-in `wpp`.
                let plugin = std::env::var("PIPELINE_PLUGIN").unwrap_or_else(|_| "wpp".into());
                hook(out, "wpp", &format!("{receiver}/wpp"), "[\"all\"]", &plugin);
            }
            Bots::Large { receiver, count } => {
                for i in 0..*count {
                    let bot = format!("bot-{i:04}");
                    out.push_str(&format!(
                        "[[bots]]\nid = \"{bot}\"\nchannel_name = \"Channel {i}\"\n"
                    ));
                    let loaded = bot == LARGE_BOT;
                    for plugin in ["wpp", "jelou", "engage", "connectly"] {
                        let events = if !loaded || plugin == "wpp" {
                            "[\"all\"]"
                        } else {
                            "[\"failed\"]"
                        };
                        hook(
                            out,
                            plugin,
                            &format!("{receiver}/{bot}/{plugin}"),
                            events,
                            plugin,
                        );
                    }
                }
            }
            Bots::Pair { a, b } => {
                out.push_str("[[bots]]\nid = \"bot-a\"\n");
                hook(out, "wpp", &format!("{a}/a"), "[\"all\"]", "wpp");
                out.push_str("[[bots]]\nid = \"bot-b\"\n");
                hook(out, "wpp", &format!("{b}/b"), "[\"all\"]", "wpp");
            }
        }
    }
}

/// Everything a generated config needs.
pub struct ConfigSpec<'a> {
    pub port: u16,
    pub backend: Backend,
    pub redis_url: Option<String>,
    pub queue_dir: &'a Path,
    pub cache_dir: &'a Path,
    pub timeout: &'a str,
    pub per_endpoint: Option<usize>,
    pub bots: &'a Bots,
    /// Whether the delivery log is on (the dispatcher's default) or off.
    pub history: bool,
}

/// The config text, checked with the dispatcher's own parser.
pub fn config_text(spec: &ConfigSpec<'_>, path: &Path) -> Result<String, String> {
    let mut out = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\ningest_tokens = [\"{TOKEN}\"]\nadmin_tokens = [\"bench-admin-token\"]\nmax_body_bytes = 1048576\n\n",
        port = spec.port
    );
    match spec.backend {
        Backend::Redis => {
            let url = spec
                .redis_url
                .as_deref()
                .ok_or("redis backend without a redis url")?;
            out.push_str(&format!(
                "[queue]\nbackend = \"redis\"\nurl = \"{url}\"\nprefix = \"bench\"\n\n"
            ));
        }
        Backend::Embedded => {
            out.push_str(&format!(
                "[queue]\nbackend = \"embedded\"\npath = \"{}\"\n\n",
                spec.queue_dir.display()
            ));
        }
    }
    out.push_str(&format!(
        "[delivery]\ntimeout = \"{}\"\nretry_schedule = [\"200ms\", \"500ms\", \"1s\"]\nallow_private_networks = true\n",
        spec.timeout
    ));
    if let Some(cap) = spec.per_endpoint {
        out.push_str(&format!("max_in_flight_per_endpoint = {cap}\n"));
    }
    out.push_str(&format!(
        "\n[plugins]\ncache_dir = \"{}\"\n",
        spec.cache_dir.display()
    ));
    // PIPELINE_WARM=off: every request renders in a fresh instance.
    if std::env::var("PIPELINE_WARM").is_ok_and(|v| v == "off") {
        out.push_str("warm_memory_bytes = 0\n");
    }
    out.push('\n');
    if !spec.history {
        out.push_str("[history]\nretention = \"0s\"\n\n");
    }
    spec.bots.write(&mut out);
    statushook::config::parse(&out, path, &|_| None).map_err(|e| {
        let problems: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
        format!("the generated config is invalid: {}", problems.join("; "))
    })?;
    Ok(out)
}

/// `statushook run` as a child process.
pub struct Dispatcher {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Dispatcher {
    /// Starts the binary on `config` and waits for `/readyz` (up to 90 s).
    pub async fn start(
        bin: &Path,
        config: &Path,
        port: u16,
        cache: &Path,
        log: PathBuf,
        client: &reqwest::Client,
    ) -> Result<Self, String> {
        Self::start_with_env(bin, config, port, cache, log, client, &[]).await
    }

    /// [`Dispatcher::start`] with more environment variables (for `${NAME}`
    /// in a config several dispatchers share).
    pub async fn start_with_env(
        bin: &Path,
        config: &Path,
        port: u16,
        cache: &Path,
        log: PathBuf,
        client: &reqwest::Client,
        env: &[(&str, String)],
    ) -> Result<Self, String> {
        let stderr = std::fs::File::create(&log).map_err(|e| format!("log file: {e}"))?;
        let child = Command::new(bin)
            .args(["run", "--config"])
            .arg(config)
            .env("STATUSHOOK_CACHE_DIR", cache)
            .env("STATUSHOOK_LOG", "warn")
            .env("NO_COLOR", "1")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut dispatcher = Dispatcher { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(Some(status)) = dispatcher.child.try_wait() {
                let log = std::fs::read_to_string(&dispatcher.log).unwrap_or_default();
                return Err(format!(
                    "the dispatcher exited at start ({status}): {}",
                    log.trim()
                ));
            }
            let ready = client
                .get(format!("http://127.0.0.1:{port}/readyz"))
                .send()
                .await
                .map(|r| r.status().as_u16());
            if matches!(ready, Ok(200)) {
                return Ok(dispatcher);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the dispatcher was not ready within 90 s: {ready:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of a process, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mem {
    pub rss_kb: u64,
    pub hwm_kb: u64,
}

pub fn mem(pid: u32) -> Mem {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Mem {
        rss_kb: field("VmRSS:"),
        hwm_kb: field("VmHWM:"),
    }
}

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let Some(rest) = text.rfind(')').map(|i| &text[i + 2..]) else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15.
    let get = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(14) + get(15)
}

/// (busy, total) jiffies of the whole machine, from the `cpu` line of /proc/stat.
pub fn machine_ticks() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().next() else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

pub fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU readings at one instant.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    pub at: Instant,
    dispatcher: u64,
    redis: u64,
    harness: u64,
    machine: (u64, u64),
}

/// CPU use between two marks: percent of one core per process, and the
/// whole machine's busy share (percent of all its cores).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    pub dispatcher: f64,
    pub redis: Option<f64>,
    pub harness: f64,
    pub machine: f64,
}

pub fn cpu_mark(dispatcher: u32, redis: Option<u32>) -> CpuMark {
    CpuMark {
        at: Instant::now(),
        dispatcher: cpu_ticks(&dispatcher.to_string()),
        redis: redis.map_or(0, |p| cpu_ticks(&p.to_string())),
        harness: cpu_ticks("self"),
        machine: machine_ticks(),
    }
}

pub fn cpu_use(a: &CpuMark, b: &CpuMark, has_redis: bool, hz: f64) -> CpuUse {
    let wall = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
    let pct = |x: u64, y: u64| (y.saturating_sub(x)) as f64 / hz / wall * 100.0;
    let busy = b.machine.0.saturating_sub(a.machine.0) as f64;
    let total = b.machine.1.saturating_sub(a.machine.1) as f64;
    CpuUse {
        dispatcher: pct(a.dispatcher, b.dispatcher),
        redis: has_redis.then(|| pct(a.redis, b.redis)),
        harness: pct(a.harness, b.harness),
        machine: if total > 0.0 {
            busy / total * 100.0
        } else {
            0.0
        },
    }
}
