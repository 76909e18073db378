//! A cluster under test: a private `redis-server` on an ephemeral port and `chorus serve
//! --engine redis` nodes sharing it, all pinned to the server core like a single server,
//! so that the load generator keeps the other core. Stopped when dropped (the nodes first).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::BenchError;
use crate::server::{Launcher, Server, ServerKind};

/// Nodes of the cluster scenarios: a publisher's node and two subscribers' nodes.
pub const NODES: usize = 3;

/// The broker and the nodes.
pub struct Cluster {
    /// The nodes (dropped, hence stopped, before the broker).
    pub nodes: Vec<Server>,
    redis: Child,
    /// The broker's process id (its CPU comes from `/proc` like a node's).
    pub redis_pid: u32,
    redis_port: u16,
}

fn cluster_err(reason: String) -> BenchError {
    BenchError::Server {
        server: "cluster".to_owned(),
        reason,
    }
}

impl Cluster {
    /// Starts the broker (no persistence: the bench measures the engine, not the disk) and
    /// `nodes` nodes on it.
    pub fn start(launcher: &Launcher, nodes: usize) -> Result<Cluster, BenchError> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(BenchError::io("bind a free port"))?
            .port();
        let redis = Command::new("taskset")
            .arg("-c")
            .arg(launcher.server_core.to_string())
            .args([
                "redis-server",
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| cluster_err(format!("cannot start redis-server: {e}")))?;
        let mut cluster = Cluster {
            nodes: Vec::new(),
            redis_pid: redis.id(),
            redis,
            redis_port: port,
        };
        cluster.wait_for_redis(Duration::from_secs(10))?;
        let url = format!("redis://127.0.0.1:{port}");
        let extra = [
            "--engine",
            "redis",
            "--redis-url",
            url.as_str(),
            "--redis-prefix",
            "bench",
        ]
        .map(str::to_owned);
        for _ in 0..nodes.max(1) {
            cluster
                .nodes
                .push(launcher.start_with(ServerKind::Chorus, &extra)?);
        }
        Ok(cluster)
    }

    fn wait_for_redis(&mut self, limit: Duration) -> Result<(), BenchError> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.redis.try_wait() {
                return Err(cluster_err(format!("redis-server exited: {status}")));
            }
            if self.command("PING").is_ok_and(|r| r.starts_with("+PONG")) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(cluster_err(format!("redis-server silent after {limit:?}")))
    }

    /// The nodes, to pass to the scenario engines.
    pub fn node_refs(&self) -> Vec<&Server> {
        self.nodes.iter().collect()
    }

    /// Commands Redis has processed so far (`INFO stats` `total_commands_processed`; a
    /// script counts once, the commands it calls are not counted).
    pub fn commands_processed(&self) -> Result<u64, BenchError> {
        let info = self.command("INFO stats")?;
        info.lines()
            .find_map(|l| l.strip_prefix("total_commands_processed:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| cluster_err("no total_commands_processed in INFO".into()))
    }

    /// Command calls so far, those scripts make included (`INFO commandstats`, summed).
    pub fn command_calls(&self) -> Result<u64, BenchError> {
        let info = self.command("INFO commandstats")?;
        Ok(info
            .lines()
            .filter_map(|l| l.split_once("calls=").map(|(_, rest)| rest))
            .filter_map(|rest| rest.split(',').next()?.parse::<u64>().ok())
            .sum())
    }

    /// One inline command, its whole reply as text (a bulk reply read to its length).
    fn command(&self, line: &str) -> Result<String, BenchError> {
        let mut tcp = TcpStream::connect(("127.0.0.1", self.redis_port))
            .map_err(BenchError::io("connect to redis"))?;
        tcp.set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(BenchError::io("redis timeout"))?;
        tcp.write_all(format!("{line}\r\n").as_bytes())
            .map_err(BenchError::io("write to redis"))?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = tcp.read(&mut buf).map_err(BenchError::io("read redis"))?;
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&buf[..n]);
            if complete(&reply) {
                break;
            }
        }
        Ok(String::from_utf8_lossy(&reply).into_owned())
    }
}

/// Whether a RESP reply (simple, error or one bulk string) is complete.
fn complete(reply: &[u8]) -> bool {
    let Some(end) = reply.windows(2).position(|w| w == b"\r\n") else {
        return false;
    };
    if reply.first() != Some(&b'$') {
        return true;
    }
    let len: usize = std::str::from_utf8(&reply[1..end])
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    reply.len() >= end + 2 + len + 2
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = self.redis.kill();
        let _ = self.redis.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::complete;

    #[test]
    fn bulk_replies_are_read_to_their_length() {
        assert!(complete(b"+PONG\r\n"));
        assert!(!complete(b"$10\r\nabc"));
        assert!(complete(b"$3\r\nabc\r\n"));
    }
}
