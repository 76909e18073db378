//! The threads that hash and check room passwords (ROOM-24), off the core's lock.
//!
//! Each is an argon2id of 19 MiB, some 20 ms of a core: with a thread per request, one user
//! creating rooms with passwords from all its connections would keep cores busy, and every
//! other client's latency would pay (the attack suite's "rooms created with passwords":
//! victim p99 2991 us against 395 us, with one hashing thread at normal priority). So the
//! hashes run on `password_hash_threads` threads of their own, at the idle scheduling
//! priority on Linux: they take only the CPU time nothing else wants, and a subscribe
//! waiting for one holds its own connection's next frame, nobody else's.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::core::room_password::{Done, Work};

type Job = (Work, oneshot::Sender<Done>);

/// The hashing threads; they end when this is dropped.
#[derive(Debug)]
pub struct PasswordHashers {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl PasswordHashers {
    /// Starts `threads` hashing threads (at least one).
    pub fn new(threads: u32) -> PasswordHashers {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("chorus-password-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        // The lock is held while waiting: one idle thread waits, the others
                        // wait for it; a job is taken by whichever is free.
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok((work, reply)) = job else { return };
                        let _ = reply.send(work.run());
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "a password hashing thread did not start");
            }
        }
        PasswordHashers {
            jobs: Mutex::new(tx),
        }
    }

    /// Does `work` on a hashing thread; None when no thread is there to do it (the core
    /// then hashes under its lock, as it would without the shell).
    pub async fn run(&self, work: Work) -> Option<Done> {
        let (reply, done) = oneshot::channel();
        self.jobs.lock().ok()?.send((work, reply)).ok()?;
        done.await.ok()
    }
}

/// SCHED_IDLE for the calling thread: it runs only when a core has nothing else to run.
#[cfg(target_os = "linux")]
fn lower_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread, and `param` is a valid sched_param for the
    // duration of the call; the call only changes this thread's scheduling policy.
    let refused = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0;
    if refused {
        tracing::warn!("a password hashing thread keeps the normal scheduling priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::room_password::{self, Checked};

    #[tokio::test]
    async fn the_threads_hash_and_check_and_end_with_their_owner() {
        let hashers = PasswordHashers::new(2);
        let Some(Done::Hashed { password, hash }) = hashers
            .run(Work::Hash {
                password: "pw".into(),
            })
            .await
        else {
            panic!("no hash");
        };
        assert_eq!(password, "pw");
        assert_eq!(room_password::check(&hash, "pw"), Checked::Right);
        let checked = hashers
            .run(Work::Check {
                hash: hash.clone(),
                password: "nope".into(),
            })
            .await;
        assert_eq!(
            checked,
            Some(Done::Checked {
                hash,
                password: "nope".into(),
                checked: Checked::Wrong
            })
        );
    }
}
