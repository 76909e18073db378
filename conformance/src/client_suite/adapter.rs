//! The adapter process of one case instance: started with `sh -c`, fed commands on stdin,
//! read for events on stdout (CLIENT-DRIVER.md). stderr goes into the transcript.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use crate::transcript::{EventKind, Transcript};

/// A running adapter.
pub struct Adapter {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Events (parsed JSON objects) with their arrival instant.
    pub events: mpsc::UnboundedReceiver<(Instant, Value)>,
    who: String,
    transcript: Transcript,
}

impl Adapter {
    /// Starts `command` through `sh -c` with `CHORUS_CONFORM_CASE` set.
    pub fn spawn(
        command: &str,
        env: &[(String, String)],
        case_id: &str,
        who: &str,
        transcript: &Transcript,
    ) -> std::io::Result<Adapter> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .env("CHORUS_CONFORM_CASE", case_id)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take();
        let (tx, events) = mpsc::unbounded_channel();
        if let Some(out) = child.stdout.take() {
            let t = transcript.clone();
            let who = who.to_owned();
            tokio::spawn(async move {
                let mut lines = BufReader::new(out).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let at = Instant::now();
                    t.push(&who, EventKind::Recv, line.clone());
                    match serde_json::from_str::<Value>(&line) {
                        Ok(v) if v.is_object() => {
                            let _ = tx.send((at, v));
                        }
                        _ => t.push(&who, EventKind::Note, "not a JSON object: ignored"),
                    }
                }
            });
        }
        if let Some(err) = child.stderr.take() {
            let t = transcript.clone();
            let who = format!("{who}:stderr");
            tokio::spawn(async move {
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    t.push(&who, EventKind::Note, line);
                }
            });
        }
        Ok(Adapter {
            child,
            stdin,
            events,
            who: who.to_owned(),
            transcript: transcript.clone(),
        })
    }

    /// Writes one command line.
    pub async fn send(&mut self, command: &Value) -> Result<(), String> {
        let line = format!("{command}\n");
        self.transcript
            .push(&self.who, EventKind::Send, command.to_string());
        let stdin = self.stdin.as_mut().ok_or("the adapter's stdin is closed")?;
        stdin
            .write_all(line.as_bytes())
            .await
            .map_err(|e| format!("cannot write to the adapter: {e}"))?;
        stdin
            .flush()
            .await
            .map_err(|e| format!("cannot write to the adapter: {e}"))
    }

    /// Closes stdin, waits up to `grace` for the exit, then kills.
    pub async fn finish(mut self, grace: Duration) {
        self.stdin = None;
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}
