//! A real `redis-server` per test, on a free loopback port, that tests can
//! stop and restart (with its append-only file, as production should run).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A redis-server child process.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts a fresh server with AOF on, in its own temp folder.
    pub fn start() -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir").keep();
        let mut server = RedisServer {
            child: None,
            port,
            dir,
        };
        server.restart();
        server
    }

    /// The `redis://` URL of the server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server at once (SIGKILL): what a crash looks like.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and folder (after `kill`).
    pub fn restart(&mut self) {
        assert!(
            self.spawn(),
            "redis-server could not get its port {} back",
            self.port
        );
    }

    /// Spawns the server; false if it exited (its port was taken).
    fn spawn(&mut self) -> bool {
        self.kill();
        self.child = Some(spawn_redis_server(self.port, &self.dir, &[]));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            // Our child must still be alive: a PONG could come from another
            // test's server that won the port.
            if self.exited() {
                return false;
            }
            if ping(self.port) {
                std::thread::sleep(Duration::from_millis(20));
                return !self.exited();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server on port {} did not answer PING within 10 s",
            self.port
        );
    }
}

impl RedisServer {
    fn exited(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => false,
            _ => {
                self.child = None;
                true
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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

/// Starts `redis-server` on loopback `port` with its data in `dir`, AOF on
/// and every write fsynced (as production should run), and `extra`
/// arguments; fails saying what to install when there is none.
pub fn spawn_redis_server(port: u16, dir: &std::path::Path, extra: &[&str]) -> Child {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
        .args(["--appendonly", "yes", "--appendfsync", "always"])
        .args(extra)
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start redis-server ({e}): these tests need a real Redis; install it with `apt-get install redis-server`")
        })
}

/// A port nothing listens on right now, below Linux's ephemeral range
/// (32768+) so that listeners binding port 0 do not race for it.
pub fn free_port() -> u16 {
    loop {
        let port = fastrand::u16(20_000..32_000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
