//! The shell's shared state: the core and the registry of connection queues under one lock.
//!
//! Effects are carried out while the lock is held. Enqueueing never waits (see
//! [`outbound`](super::outbound)), so the critical section stays short, and frames reach
//! every queue in the order the core produced them: two broadcasts handled by two tasks can
//! never be delivered out of `seq` order.
//!
//! On a data directory with `--durability full`, effects produced after a store write are
//! held, in the same order, until a sync of the store's log covers that write (group
//! commit, [`Shared::run_syncer`]); nothing is acknowledged before it is durable.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use chorus_protocol::{Capability, ClientMessage, CloseCode, Millis, RequestId};
use rustc_hash::FxHashMap;
use tokio::sync::{watch, Notify};

use crate::auth::Authenticator;
use crate::cluster::ServerEngine;
use crate::config::Config;
use crate::core::room_password::{Done, Work};
use crate::core::{ChannelKey, ConnId, Core, Effect, Fault, Faults, Frame, Remote, Session};
use crate::store::sync_wal;

use super::admission::{Caps, Peers, Refused, UserKey};
use super::outbound::{ConnHandle, Enqueued, WireFrame};

/// Server time in milliseconds since the Unix epoch.
pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// The tokio instant of a server-time deadline (token expiry).
pub fn deadline_at(at_ms: Millis) -> tokio::time::Instant {
    let wait = std::time::Duration::from_millis(at_ms.saturating_sub(now_ms()));
    tokio::time::Instant::now() + wait
}

/// The core over the engine this server runs.
pub type NodeCore = Core<ServerEngine>;

/// The core and the queues of the connections it knows.
struct Hub {
    core: NodeCore,
    /// Group commit: effects produced after a store write, in order, each with the store's
    /// write count it must wait for; released once a log sync covers it.
    held: VecDeque<(u64, Held)>,
    /// The store's write count that the last completed sync covers.
    synced: u64,
    /// Keyed by the hub's own sequential ids, looked up once per delivered frame: a
    /// DoS-resistant hash buys nothing here and costs a SipHash per recipient.
    conns: FxHashMap<ConnId, ConnHandle>,
    /// Connections that ended while effects for them were still held: their queues stay
    /// reachable until the held effects before their end are delivered (an acknowledged
    /// write's reply is never dropped because the client hung up or was closed).
    departed: FxHashMap<ConnId, ConnHandle>,
}

/// What group commit holds until a sync covers it.
enum Held {
    /// Effects, in the order they were produced.
    Effects(Vec<Effect>),
    /// A connection ended: its queue goes once what was held before its end is delivered.
    Forget(ConnId),
}

/// Everything the connection tasks, HTTP handlers and the timer share.
pub struct Shared {
    /// The configuration in force.
    pub config: Config,
    /// Token verification.
    pub auth: Authenticator,
    /// Deliberate bugs of the conformance self-test (inert without the `faults` feature).
    pub faults: Faults,
    capabilities: Vec<Capability>,
    hub: Mutex<Hub>,
    next_conn: AtomicU64,
    /// Wakes the timer task when the core's next deadline moved earlier.
    pub timer: Notify,
    timer_deadline: AtomicU64,
    /// Open connections, in all and per user and address.
    peers: Mutex<Peers>,
    shutting_down: AtomicBool,
    /// Group commit: the write-ahead log to sync (None: nothing waits for the disk).
    wal: Option<PathBuf>,
    /// Wakes the syncer when held effects wait.
    sync_wanted: Notify,
    /// The write count the last sync covers, for HTTP handlers awaiting durability.
    synced: watch::Sender<u64>,
    /// The threads room passwords are hashed and checked on (`password_hash_threads`).
    pub password_hashers: super::passwords::PasswordHashers,
}

/// Counts one live connection (WebSocket or SSE) while it exists.
pub struct LiveGuard {
    shared: Arc<Shared>,
    user: UserKey,
    addr: IpAddr,
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.shared.peers().release(&self.user, self.addr);
    }
}

impl Shared {
    /// Shared state over a built core; connection ids start at `first_conn` (a cluster
    /// node's number in the high bits keeps them unique in the deployment, CLUS-5).
    pub fn new(config: Config, auth: Authenticator, core: NodeCore, first_conn: u64) -> Shared {
        let store = core.engine().store();
        let (wal, written) = (store.wal_path().map(Path::to_owned), store.written());
        Shared {
            capabilities: core.config().capabilities.clone(),
            faults: core.config().faults.clone(),
            password_hashers: super::passwords::PasswordHashers::new(config.password_hash_threads),
            config,
            auth,
            hub: Mutex::new(Hub {
                core,
                held: VecDeque::new(),
                synced: written,
                conns: FxHashMap::default(),
                departed: FxHashMap::default(),
            }),
            next_conn: AtomicU64::new(first_conn.max(1)),
            timer: Notify::new(),
            timer_deadline: AtomicU64::new(u64::MAX),
            peers: Mutex::new(Peers::default()),
            shutting_down: AtomicBool::new(false),
            wal,
            sync_wanted: Notify::new(),
            synced: watch::channel(written).0,
        }
    }

    /// Whether the server announces `capability`.
    pub fn has(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
    }

    fn lock(&self) -> MutexGuard<'_, Hub> {
        // A panic under the lock must not take every other connection down with it.
        self.hub
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a live connection of `session`'s user from `addr`, unless the server, the
    /// user or the address is at its cap (CONN-22, SEC-7).
    pub fn track(self: &Arc<Self>, session: &Session, addr: IpAddr) -> Result<LiveGuard, Refused> {
        let user = (session.tenant.clone(), session.user_id.clone());
        let c = &self.config;
        let caps = Caps {
            total: c.max_connections,
            per_user: c.max_connections_per_user,
            per_address: c.max_connections_per_address,
        };
        self.peers().admit(caps, &user, addr)?;
        Ok(LiveGuard {
            shared: self.clone(),
            user,
            addr,
        })
    }

    fn peers(&self) -> MutexGuard<'_, Peers> {
        self.peers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Open connections (WebSocket and SSE).
    pub fn live(&self) -> usize {
        self.peers().total()
    }

    /// Whether a graceful shutdown has begun.
    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Registers the connection's queue and queues its `welcome`.
    pub fn connect(&self, handle: ConnHandle, session: Session) -> ConnId {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let mut hub = self.lock();
        hub.conns.insert(conn, handle);
        let effects = hub.core.connect(conn, session, now_ms());
        self.apply(&mut hub, effects);
        conn
    }

    /// Hands one decoded frame to the core. Returns true when the core answered it with a
    /// protocol error (TRANS-24 counts those).
    pub fn handle(&self, conn: ConnId, msg: ClientMessage) -> bool {
        let mut hub = self.lock();
        let effects = hub.core.handle(conn, msg, now_ms());
        let protocol_error = effects.iter().any(|e| match e {
            Effect::Send { to, frame, .. } => *to == conn && is_protocol_error(frame),
            Effect::Close { .. } => false,
        });
        self.apply(&mut hub, effects);
        protocol_error
    }

    /// The room password work `msg` asks for, to be done off the lock (see
    /// `Core::password_work`).
    pub fn password_work(&self, conn: ConnId, msg: &ClientMessage) -> Option<Work> {
        self.lock().core.password_work(conn, msg, now_ms())
    }

    /// Hands the core room password work done off its lock.
    pub fn password_done(&self, conn: ConnId, done: Done) {
        self.lock().core.password_done(conn, done);
    }

    /// Queues `frame`, which the shell itself produced for `conn` (the `error` answering an
    /// undecodable frame or a refused `auth:refresh`), behind every effect produced before
    /// it: with group commit a later frame's reply must not overtake an earlier write's
    /// acknowledgement (TRANS-26).
    pub fn reply(&self, conn: ConnId, frame: String) {
        let mut hub = self.lock();
        let effects = vec![Effect::Send {
            to: conn,
            frame: Frame::from(frame),
            droppable: false,
        }];
        self.apply(&mut hub, effects);
    }

    /// Closes `conn` with `code` once everything produced for it before is queued (held
    /// acknowledgements included).
    pub fn close(&self, conn: ConnId, code: CloseCode) {
        let mut hub = self.lock();
        self.apply(&mut hub, vec![Effect::Close { conn, code }]);
    }

    /// Applies a verified `auth:refresh` (CONN-15..17).
    pub fn refresh(&self, conn: ConnId, id: Option<RequestId>, session: Session) {
        let mut hub = self.lock();
        let effects = hub.core.refresh(conn, id, session, now_ms());
        self.apply(&mut hub, effects);
    }

    /// The connection is gone: forget its queue and tell the core (PRES-26/27).
    pub fn disconnect(&self, conn: ConnId, graceful: bool) {
        let mut hub = self.lock();
        let Some(handle) = hub.conns.remove(&conn) else {
            return;
        };
        let effects = hub.core.disconnect(conn, graceful, now_ms());
        self.apply(&mut hub, effects);
        if !hub.held.is_empty() {
            // Held frames for this connection (its own acknowledgements) still go out.
            hub.departed.insert(conn, handle);
            let written = hub.core.engine().store().written();
            hub.held.push_back((written, Held::Forget(conn)));
        }
    }

    /// Runs `f` on the core (HTTP API) and carries out the effects it returns.
    pub fn with_core<T, E>(
        &self,
        f: impl FnOnce(&mut NodeCore, Millis) -> Result<(T, Vec<Effect>), E>,
    ) -> Result<T, E> {
        let mut hub = self.lock();
        let (value, effects) = f(&mut hub.core, now_ms())?;
        self.apply(&mut hub, effects);
        Ok(value)
    }

    /// Reads from the core without effects.
    pub fn read_core<T>(&self, f: impl FnOnce(&NodeCore) -> T) -> T {
        f(&self.lock().core)
    }

    /// Runs due timers; returns the next deadline.
    pub fn tick(&self) -> Option<Millis> {
        let mut hub = self.lock();
        let now = now_ms();
        if hub.core.next_deadline().is_some_and(|d| d <= now) {
            let effects = hub.core.tick(now);
            self.apply(&mut hub, effects);
        }
        let next = hub.core.next_deadline();
        self.timer_deadline
            .store(next.unwrap_or(u64::MAX), Ordering::Release);
        next
    }

    /// Starts a graceful shutdown: every connection gets its queued frames, then 1001
    /// (CONN-19).
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        let mut hub = self.lock();
        // Held acknowledgements go out before the close, once durable (blocking once here).
        if !hub.held.is_empty() {
            let written = hub.core.engine().store().written();
            match self.wal.as_deref().map(sync_wal) {
                Some(Err(e)) => tracing::error!(error = %e, "cannot sync the store at shutdown"),
                _ => self.release(&mut hub, written),
            }
        }
        // CLUS-11: a node of a cluster drains with "reconnect now", a lone server with 1001.
        let code = if hub.core.engine().is_clustered() {
            CloseCode::ReconnectRequested
        } else {
            CloseCode::GoingAway
        };
        for handle in hub.conns.values() {
            handle.close_after_queued(code);
        }
    }

    /// Waits until every store write made so far is durable (group commit); at once when
    /// nothing waits for the disk. HTTP handlers call it before answering a write.
    pub async fn durable(&self) {
        if self.wal.is_none() {
            return;
        }
        let written = self.lock().core.engine().store().written();
        let mut synced = self.synced.subscribe();
        self.sync_wanted.notify_one();
        let _ = synced.wait_for(|s| *s >= written).await;
    }

    /// The group-commit loop: whenever effects are held, syncs the log once (off the async
    /// threads, without the hub lock, so writes go on meanwhile) and releases every held
    /// effect the sync covers. Runs until aborted (after the connections drained at
    /// shutdown, which may still write).
    pub async fn run_syncer(self: Arc<Self>) {
        let Some(wal) = self.wal.clone() else {
            return;
        };
        loop {
            let target = {
                let hub = self.lock();
                let written = hub.core.engine().store().written();
                (written > hub.synced).then_some(written)
            };
            let Some(target) = target else {
                self.sync_wanted.notified().await;
                continue;
            };
            let path = wal.clone();
            match tokio::task::spawn_blocking(move || sync_wal(&path)).await {
                Ok(Ok(())) => {
                    let mut hub = self.lock();
                    self.release(&mut hub, target);
                }
                failed => {
                    // Nothing held is released: an acknowledgement would be a lie.
                    tracing::error!(?failed, "cannot sync the store; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// A sync covering the store's write count `synced` completed: delivers what it covers.
    fn release(&self, hub: &mut Hub, synced: u64) {
        hub.synced = hub.synced.max(synced);
        while hub.held.front().is_some_and(|(at, _)| *at <= hub.synced) {
            match hub.held.pop_front() {
                Some((_, Held::Effects(effects))) => self.deliver_all(hub, effects),
                Some((_, Held::Forget(conn))) => {
                    hub.departed.remove(&conn);
                }
                None => {}
            }
        }
        // After the frames are queued: a waiter may read its queue as soon as it wakes.
        self.synced.send_replace(hub.synced);
    }

    /// A frame another node published (the cluster bus received it).
    pub fn deliver_remote(&self, key: &ChannelKey, remote: Remote) {
        let mut hub = self.lock();
        let effects = hub.core.deliver_remote(key, remote);
        self.apply(&mut hub, effects);
    }

    /// The cluster bus was lost (CLUS-9, CLUS-10): every connection is closed with 4301
    /// after what is queued for it, and the engine forgets what it delivered.
    pub fn broker_lost(&self) {
        let mut hub = self.lock();
        hub.core.engine_mut().forget_deliveries();
        for handle in hub.conns.values() {
            handle.close_after_queued(CloseCode::ReconnectRequested);
        }
    }

    fn apply(&self, hub: &mut Hub, effects: Vec<Effect>) {
        if let Some(failure) = hub.core.engine_mut().take_failure() {
            // CLUS-10: what the failed call produced may rest on a wrong answer (a made-up
            // position); none of it goes out, and every client reconnects elsewhere.
            tracing::error!(%failure, "engine failure: closing every connection with 4301");
            drop(effects);
            for handle in hub.conns.values() {
                handle.close_after_queued(CloseCode::ReconnectRequested);
            }
            return;
        }
        if self.wal.is_some() {
            // Group commit: nothing produced after a write that no sync covers yet goes out
            // before that sync, and nothing overtakes what is already held (order).
            let written = hub.core.engine().store().written();
            if written > hub.synced || !hub.held.is_empty() {
                if !effects.is_empty() {
                    hub.held.push_back((written, Held::Effects(effects)));
                }
                self.sync_wanted.notify_one();
                self.wake_timer(hub);
                return;
            }
        }
        self.deliver_all(hub, effects);
    }

    fn deliver_all(&self, hub: &mut Hub, effects: Vec<Effect>) {
        let mut pending = effects;
        while !pending.is_empty() {
            let overflowed = deliver(hub, pending, self.faults.on(Fault::SeqRepeat));
            // LIMIT-8: a connection whose queue overflowed leaves the core now, whether its
            // task notices soon (WebSocket) or only when its writer unblocks (SSE).
            pending = Vec::new();
            for conn in overflowed {
                tracing::warn!(conn, "outbound queue full: closing as slow consumer");
                if hub.conns.remove(&conn).is_some() {
                    pending.extend(hub.core.disconnect(conn, false, now_ms()));
                }
            }
        }
        self.wake_timer(hub);
    }

    fn wake_timer(&self, hub: &Hub) {
        if hub
            .core
            .next_deadline()
            .is_some_and(|d| d < self.timer_deadline.load(Ordering::Acquire))
        {
            self.timer.notify_one();
        }
    }
}

/// Queues each frame and close; returns the connections whose queue overflowed. `repeat`:
/// the `seq_repeat` fault (CHAN-30), every `message` is queued twice.
fn deliver(hub: &Hub, effects: Vec<Effect>, repeat: bool) -> Vec<ConnId> {
    let mut overflowed = Vec::new();
    let mut wire = WireCache::default();
    for effect in effects {
        match effect {
            Effect::Send {
                to,
                frame,
                droppable,
            } => {
                let Some(handle) = hub.conns.get(&to).or_else(|| hub.departed.get(&to)) else {
                    continue;
                };
                let bytes = wire.of(&frame);
                if repeat && frame.starts_with(r#"{"type":"message""#) {
                    handle.send(bytes.clone(), droppable);
                }
                if handle.send(bytes, droppable) == Enqueued::Overflow {
                    overflowed.push(to);
                }
            }
            Effect::Close { conn, code } => {
                if let Some(handle) = hub.conns.get(&conn).or_else(|| hub.departed.get(&conn)) {
                    handle.close_after_queued(code);
                }
            }
        }
    }
    overflowed
}

/// The wire bytes of the frame last converted. The core emits a fan-out as consecutive
/// sends of one shared [`Frame`]; converting it once and cloning the reference-counted bytes
/// per recipient saves an allocation and a copy per delivery.
#[derive(Default)]
struct WireCache {
    last: Option<(Frame, WireFrame)>,
}

impl WireCache {
    fn of(&mut self, frame: &Frame) -> WireFrame {
        match &self.last {
            Some((f, bytes)) if Arc::ptr_eq(f, frame) => bytes.clone(),
            _ => {
                let bytes = WireFrame::from(&**frame);
                self.last = Some((frame.clone(), bytes.clone()));
                bytes
            }
        }
    }
}

/// Whether a frame is an `error` with one of the protocol-error codes of TRANS-24.
fn is_protocol_error(frame: &str) -> bool {
    frame.starts_with(r#"{"type":"error""#)
        && [
            r#""code":"invalid_json""#,
            r#""code":"unknown_type""#,
            r#""code":"invalid_message""#,
        ]
        .iter()
        .any(|code| frame.contains(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fanned_out_frame_is_converted_once() {
        let mut cache = WireCache::default();
        let shared: Frame = Arc::from(r#"{"type":"message"}"#);
        let a = cache.of(&shared);
        let b = cache.of(&shared.clone());
        // Same allocation: the second recipient got a reference, not a copy.
        assert_eq!(a.as_str().as_ptr(), b.as_str().as_ptr());
        // An equal text in another allocation is another frame.
        let other: Frame = Arc::from(r#"{"type":"message"}"#);
        let c = cache.of(&other);
        assert_ne!(a.as_str().as_ptr(), c.as_str().as_ptr());
        assert_eq!(c.as_str(), a.as_str());
    }

    #[test]
    fn protocol_errors_are_recognised() {
        assert!(is_protocol_error(
            r#"{"type":"error","id":1,"code":"invalid_message","message":"x"}"#
        ));
        // An escaped quote inside the message cannot fake the code member.
        assert!(!is_protocol_error(
            r#"{"type":"error","code":"forbidden","message":"\"code\":\"invalid_json\""}"#
        ));
        assert!(!is_protocol_error(
            r#"{"type":"message","channel":"c","event":"e","data":{"code":"invalid_json"},"ts":1,"seq":1}"#
        ));
    }
}
