//! The node's command connection to Redis, bounded in time and replaced after an I/O
//! failure (CLUS-10).
//!
//! Every engine call waits on this connection while the shell holds the core, so a broker
//! that stops answering (a partition, a paused or overloaded Redis) must not hold the node:
//! each read and write gives up after [`COMMAND_TIMEOUT`], the call fails, and the shell
//! closes every connection with 4301. A connection that failed is never used again (a reply
//! that arrives late would answer the next command). For [`RETRY_AFTER`] every call fails
//! at once, so that one request making several calls, or the timer behind it, does not wait
//! out the timeout again for each; then the next call opens a new connection, so the node
//! serves again as soon as Redis answers.

use std::time::{Duration, Instant};

use redis::{Cmd, ConnectionLike, RedisResult, Value};

/// How long one command may wait for Redis before the node gives up on the broker.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// How long after a failure calls fail without trying Redis.
pub const RETRY_AFTER: Duration = Duration::from_millis(250);

/// A command connection that reconnects on demand.
pub struct CommandLink {
    client: redis::Client,
    conn: Option<redis::Connection>,
    /// Calls fail at once until then (the last one failed).
    down_until: Option<Instant>,
}

impl CommandLink {
    /// Connects once (a node that cannot reach Redis at start does not start).
    pub fn open(client: redis::Client) -> RedisResult<CommandLink> {
        let mut link = CommandLink {
            client,
            conn: None,
            down_until: None,
        };
        link.live()?;
        Ok(link)
    }

    fn live(&mut self) -> RedisResult<&mut redis::Connection> {
        if self.conn.as_ref().is_some_and(|c| !c.is_open()) {
            self.conn = None;
        }
        match &mut self.conn {
            Some(conn) => Ok(conn),
            slot => {
                if self.down_until.is_some_and(|t| Instant::now() < t) {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::NotConnected,
                        "redis unreachable (retrying shortly)",
                    )
                    .into());
                }
                let conn = connect(&self.client);
                self.down_until = conn.is_err().then(|| Instant::now() + RETRY_AFTER);
                Ok(slot.insert(conn?))
            }
        }
    }

    /// Forgets the connection after an error that may leave it out of step (I/O, timeout);
    /// a reply of Redis itself (a script error, NOSCRIPT) leaves it usable.
    fn settle<T>(&mut self, result: RedisResult<T>) -> RedisResult<T> {
        if let Err(e) = &result {
            let broken = e.is_io_error() || e.is_timeout() || e.is_unrecoverable_error();
            // Only a connection that was there: a call refused while down does not extend it.
            if broken && self.conn.take().is_some() {
                self.down_until = Some(Instant::now() + RETRY_AFTER);
            }
        }
        result
    }
}

fn connect(client: &redis::Client) -> RedisResult<redis::Connection> {
    let conn = client.get_connection_with_timeout(COMMAND_TIMEOUT)?;
    conn.set_read_timeout(Some(COMMAND_TIMEOUT))?;
    conn.set_write_timeout(Some(COMMAND_TIMEOUT))?;
    Ok(conn)
}

impl ConnectionLike for CommandLink {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        let result = self.live().and_then(|c| c.req_packed_command(cmd));
        self.settle(result)
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let result = self
            .live()
            .and_then(|c| c.req_packed_commands(cmd, offset, count));
        self.settle(result)
    }

    fn req_command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        self.req_packed_command(&cmd.get_packed_command())
    }

    fn get_db(&self) -> i64 {
        self.client.get_connection_info().redis_settings().db()
    }

    fn check_connection(&mut self) -> bool {
        redis::cmd("PING").query::<String>(self).is_ok()
    }

    fn is_open(&self) -> bool {
        // A failed connection is replaced on the next command.
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_broker_fails_within_the_timeout() {
        // A port nothing listens on: the connect is refused at once, not retried forever.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
        let started = std::time::Instant::now();
        assert!(CommandLink::open(client).is_err());
        assert!(started.elapsed() < COMMAND_TIMEOUT + Duration::from_secs(1));
    }
}
