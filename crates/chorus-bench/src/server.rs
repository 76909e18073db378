//! The servers under test: how each is started (pinned to the server core with `taskset`),
//! reached, measured and stopped.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::dialect::{ChorusDialect, Dialect, Minimal, SocketIo};
use crate::error::BenchError;
use crate::procstat;

/// Which server a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    /// `chorus serve`.
    Chorus,
    /// The bare tokio-tungstenite fan-out server (`chorus-bench-bare`).
    Bare,
    /// The Node.js `ws` fan-out server (`bench/node-ws/server.js`).
    Node,
    /// The Socket.IO 4 rooms/broadcast server (`bench/socketio/server.js`).
    #[serde(rename = "socketio")]
    SocketIo,
}

impl ServerKind {
    /// Every kind, in table order.
    pub const ALL: [ServerKind; 4] = [
        ServerKind::Chorus,
        ServerKind::Bare,
        ServerKind::Node,
        ServerKind::SocketIo,
    ];

    /// The baselines, in table order.
    pub const BASELINES: [ServerKind; 3] =
        [ServerKind::Bare, ServerKind::Node, ServerKind::SocketIo];

    /// Short name used in tables and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Chorus => "chorus",
            ServerKind::Bare => "bare",
            ServerKind::Node => "node",
            ServerKind::SocketIo => "socketio",
        }
    }

    /// Parses a [`ServerKind::name`].
    pub fn parse(name: &str) -> Option<ServerKind> {
        ServerKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Secrets the bench gives the Chorus server; loopback only, never reused elsewhere.
pub const JWT_SECRET: &str = "chorus-bench-loopback-only-secret-0123456789";
/// API key for `/api/stats`.
pub const API_KEY: &str = "chorus-bench-key";

/// Where the server programs are and which core they run on.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// The `chorus` binary.
    pub chorus_bin: PathBuf,
    /// The `chorus-bench-bare` binary.
    pub bare_bin: PathBuf,
    /// `node`.
    pub node_bin: PathBuf,
    /// The folder of the Node `ws` baseline's `server.js` (with `node_modules` installed).
    pub node_dir: PathBuf,
    /// The folder of the Socket.IO baseline's `server.js` (with `node_modules` installed).
    pub socketio_dir: PathBuf,
    /// CPU the servers are pinned to.
    pub server_core: usize,
    /// Extra `chorus serve` flags (after the bench's own).
    pub chorus_extra: Vec<String>,
    /// The PostgreSQL database of the feed scenarios.
    pub pg_url: String,
}

/// A started server process; killed when dropped.
pub struct Server {
    /// Its kind.
    pub kind: ServerKind,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its process id (the server itself: `taskset` execs it).
    pub pid: u32,
    /// How to speak to it.
    pub dialect: Arc<dyn Dialect>,
    /// The database it reads changes from (`--pg-url`), when it does.
    pub pg_url: Option<String>,
    child: Child,
}

impl Launcher {
    /// The full command line for `kind` listening on `port` (without the taskset prefix),
    /// with a scenario's own `extra` Chorus flags.
    pub fn command_line(&self, kind: ServerKind, port: u16, extra: &[String]) -> Vec<String> {
        let port = port.to_string();
        let mut args: Vec<String> = match kind {
            ServerKind::Chorus => {
                // `--chorus-arg=--data-dir=DIR` benchmarks durable writes instead.
                let on_disk = self
                    .chorus_extra
                    .iter()
                    .chain(extra)
                    .any(|a| a.starts_with("--data-dir"));
                chorus_args(&self.chorus_bin, &port, on_disk)
            }
            ServerKind::Bare => vec![self.bare_bin.display().to_string(), "--port".into(), port],
            ServerKind::Node | ServerKind::SocketIo => {
                let dir = if kind == ServerKind::Node {
                    &self.node_dir
                } else {
                    &self.socketio_dir
                };
                vec![
                    self.node_bin.display().to_string(),
                    dir.join("server.js").display().to_string(),
                    "--port".into(),
                    port,
                ]
            }
        };
        if kind == ServerKind::Chorus {
            args.extend(extra.iter().cloned());
            args.extend(self.chorus_extra.iter().cloned());
        }
        args
    }

    /// Starts `kind` pinned to the server core and waits until it accepts connections.
    pub fn start(&self, kind: ServerKind) -> Result<Server, BenchError> {
        self.start_with(kind, &[])
    }

    /// [`Launcher::start`] with a scenario's own Chorus flags (`--pg-url`: the server
    /// reads the feed's database).
    pub fn start_with(&self, kind: ServerKind, extra: &[String]) -> Result<Server, BenchError> {
        let port = free_port()?;
        let line = self.command_line(kind, port, extra);
        let pg_url = extra
            .iter()
            .position(|a| a == "--pg-url")
            .and_then(|i| extra.get(i + 1))
            .cloned();
        let child = Command::new("taskset")
            .arg("-c")
            .arg(self.server_core.to_string())
            .args(&line)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| server_err(kind, format!("cannot start {}: {e}", line.join(" "))))?;
        let dialect: Arc<dyn Dialect> = match kind {
            ServerKind::Chorus => Arc::new(ChorusDialect::new(JWT_SECRET)),
            ServerKind::SocketIo => Arc::new(SocketIo),
            ServerKind::Bare | ServerKind::Node => Arc::new(Minimal),
        };
        let mut server = Server {
            kind,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            pid: child.id(),
            dialect,
            pg_url,
            child,
        };
        server.wait_ready(Duration::from_secs(20))?;
        Ok(server)
    }
}

/// `chorus serve` with limits opened for benchmarking: rate limits off (the inbound byte
/// bucket too: the baselines pace nothing, and a fan-out publisher may send more than
/// 1 MiB/s on one connection), in-memory store, big
/// presence channels, 1 s presence grace, quiet logs. Queue, history and every other
/// setting stay default.
fn chorus_args(bin: &std::path::Path, port: &str, on_disk: bool) -> Vec<String> {
    let flags: [(&str, &str); 20] = [
        ("--host", "127.0.0.1"),
        ("--port", port),
        ("--memory", if on_disk { "false" } else { "true" }),
        ("--jwt-secret", JWT_SECRET),
        ("--api-key", API_KEY),
        ("--broadcast-rate-per-sec", "1000000000"),
        ("--broadcast-burst", "1000000000"),
        ("--request-rate-per-sec", "1000000000"),
        ("--request-burst", "1000000000"),
        ("--inbound-bytes-per-sec", "1000000000000"),
        ("--inbound-burst-bytes", "1000000000000"),
        ("--max-channels", "1000000000"),
        ("--max-presence-members", "100000"),
        ("--max-room-users", "100000"),
        ("--max-connections", "1000000"),
        // Every bench connection comes from 127.0.0.1 (10,000 idle ones at once).
        ("--max-connections-per-address", "1000000"),
        ("--max-connections-per-user", "1000000"),
        ("--presence-grace-ms", "1000"),
        // Each repetition uses new channel names; the baselines drop a channel when its
        // last member leaves. Chorus keeps an unused channel's history for this long
        // (default 10 minutes), so the runs of one server would otherwise pile up.
        ("--channel-idle-ms", "5000"),
        ("--log-level", "warn"),
    ];
    let mut args = vec![bin.display().to_string(), "serve".to_owned()];
    for (flag, value) in flags {
        args.push(flag.to_owned());
        args.push(value.to_owned());
    }
    args
}

fn server_err(kind: ServerKind, reason: String) -> BenchError {
    BenchError::Server {
        server: kind.name().to_owned(),
        reason,
    }
}

fn free_port() -> Result<u16, BenchError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(BenchError::io("bind a free port"))?;
    Ok(listener
        .local_addr()
        .map_err(BenchError::io("local addr"))?
        .port())
}

impl Server {
    fn wait_ready(&mut self, limit: Duration) -> Result<(), BenchError> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(server_err(
                    self.kind,
                    format!("exited during startup: {status}"),
                ));
            }
            if std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(server_err(
            self.kind,
            format!("not listening on {} after {limit:?}", self.addr),
        ))
    }

    /// CPU time the server has used so far.
    pub fn cpu(&self) -> Result<Duration, BenchError> {
        Ok(procstat::cpu_time(self.pid)?)
    }

    /// Resident memory now, KiB.
    pub fn rss_kib(&self) -> Result<u64, BenchError> {
        Ok(procstat::rss_kib(self.pid)?)
    }

    /// Fails if the process has exited.
    pub fn check_alive(&mut self) -> Result<(), BenchError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(server_err(self.kind, format!("exited: {status}"))),
            Err(e) => Err(server_err(self.kind, format!("wait: {e}"))),
        }
    }

    /// Chorus's `GET /api/stats` (connections, subscriptions).
    pub async fn stats(&self) -> Result<serde_json::Value, BenchError> {
        crate::http::get_json(self.addr, "/api/stats", &[("X-Api-Key", API_KEY)]).await
    }
}

impl Drop for Server {
    /// SIGTERM (Chorus drains and exits; a profiler wrapper writes its output), then
    /// SIGKILL if it is still there after a while. Our own child, by pid: never a broad kill.
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.pid) {
            // SAFETY: kill(2) on our own child's pid, which we have not yet reaped.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let until = Instant::now() + STOP_GRACE;
        while Instant::now() < until {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long a server may take to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(15);
