//! Per-channel bookkeeping, fed with the server's frames: the stream position and its
//! de-duplication (CLIENT-11), the staleness of a resumed channel (CLIENT-12), presence and
//! cursor maps (PRES, CURS-19) and the shared-state copy with its resync rules (STATE-28,
//! CLIENT-13). No I/O: it answers with the frames the driver must send.

use std::sync::{Arc, Mutex, MutexGuard};

use chorus_protocol::{
    ChannelName, ClientMessage, Epoch, ServerMessage, StateSnapshot, StateSyncRequest, StreamItem,
    StreamPosition, Subscribe, Subscribed,
};
use tokio::sync::{mpsc, oneshot};

use crate::channel::{Channel, ChannelEvent, ChannelHandle, Delivery, SubscribeOptions};
use crate::error::RequestError;
use crate::faults::{Fault, Faults};
use crate::view::ChannelView;

/// One channel the application wants to be subscribed to.
#[derive(Debug)]
pub(crate) struct Tracked {
    pub name: ChannelName,
    pub options: SubscribeOptions,
    pub view: Arc<Mutex<ChannelView>>,
    events: mpsc::UnboundedSender<ChannelEvent>,
    /// The application's `subscribe` call, answered with the first `subscribed`.
    first: Option<(oneshot::Sender<Result<Channel, RequestError>>, Channel)>,
    /// Whether a `subscribed` arrived on some connection.
    pub ever_subscribed: bool,
    /// True from a connection loss until a new state snapshot arrives (CLIENT-13).
    state_stale: bool,
    /// A `state:sync:request` is outstanding.
    pub resync_pending: bool,
}

/// What a frame asks the driver to do.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Send a `state:sync:request` for this channel.
    pub resync: bool,
    /// The subscription ended; forget the channel.
    pub removed: bool,
}

impl Tracked {
    pub fn new(
        name: ChannelName,
        options: SubscribeOptions,
        commands: mpsc::UnboundedSender<Command>,
        reply: oneshot::Sender<Result<Channel, RequestError>>,
    ) -> Self {
        let view = Arc::new(Mutex::new(ChannelView {
            position: options.since.clone(),
            ..ChannelView::default()
        }));
        let (events, rx) = mpsc::unbounded_channel();
        let handle = Channel {
            handle: ChannelHandle {
                name: name.clone(),
                commands,
                view: view.clone(),
            },
            events: rx,
        };
        Tracked {
            name,
            options,
            view,
            events,
            first: Some((reply, handle)),
            ever_subscribed: false,
            state_stale: false,
            resync_pending: false,
        }
    }

    /// The epoch of the state copy, when there is one (STATE-33).
    pub fn state_epoch(&self) -> Option<chorus_protocol::Epoch> {
        self.view().state.snapshot().map(|s| s.epoch.clone())
    }

    fn view(&self) -> MutexGuard<'_, ChannelView> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn emit(&self, event: ChannelEvent) {
        // The application may have dropped the handle; the views stay up to date anyway.
        let _ = self.events.send(event);
    }

    /// The `subscribe` frame for this channel: with `since` when the server announces
    /// `recovery` (CLIENT-11), with `state` when the state is kept and the server announces
    /// `state` (VER-10).
    pub fn subscribe_frame(&self, recovery: bool, state: bool, faults: &Faults) -> ClientMessage {
        let resubscribe = self.ever_subscribed;
        let since = if recovery && !(resubscribe && faults.has(Fault::ResubscribeWithoutSince)) {
            self.view().position.clone()
        } else {
            None
        };
        let want_state = state
            && self.options.state
            && !(self.ever_subscribed && faults.has(Fault::NoStateResync));
        ClientMessage::Subscribe(Subscribe {
            id: None,
            channel: self.name.clone(),
            since,
            password: self.options.password.clone(),
            room: if self.ever_subscribed {
                None
            } else {
                self.options.room.clone()
            },
            state: want_state.then_some(true),
        })
    }

    /// The connection ended: the state copy is void until a new snapshot (CLIENT-13).
    pub fn disconnected(&mut self, faults: &Faults) {
        self.resync_pending = false;
        if self.options.state && !faults.has(Fault::NoStateResync) {
            self.state_stale = true;
            let had = self.view().state.snapshot().is_some();
            self.view().state.set(None);
            if had {
                self.emit(ChannelEvent::StateReset);
            }
        }
    }

    /// A `subscribed` for this channel.
    pub fn on_subscribed(&mut self, s: Subscribed, faults: &Faults) {
        let resumed = self.ever_subscribed;
        let stale = {
            let mut view = self.view();
            let old = view.position.clone();
            let stale = match (&old, s.recovered) {
                (None, _) => false,
                _ if !resumed => false,
                (Some(_), Some(false)) => true,
                (Some(old), _) => old.epoch != s.position.epoch,
            } && !faults.has(Fault::HideUnrecovered);
            // With `recovered: true` the replay that follows moves the position; otherwise
            // the client continues from the reply's position.
            let keep = matches!(&old, Some(o) if o.epoch == s.position.epoch && s.recovered == Some(true))
                && !faults.has(Fault::SinceFromRecoveredSubscribed);
            if !keep {
                view.position = Some(s.position.clone());
            }
            view.kind = Some(s.kind);
            if let Some(members) = s.presence {
                view.presence.replace(members);
            }
            if let Some(cursors) = s.cursors {
                view.cursors = cursors
                    .into_iter()
                    .map(|c| (c.user_id.clone(), c))
                    .collect();
            }
            if s.room.is_some() {
                view.room = s.room;
            }
            if let Some(state) = s.state.clone() {
                view.state.set(Some(state));
            }
            stale
        };
        if s.state.is_some() {
            self.state_stale = false;
        }
        self.ever_subscribed = true;
        let position = s.position;
        if let Some((reply, handle)) = self.first.take() {
            let _ = reply.send(Ok(handle));
        }
        self.emit(ChannelEvent::Subscribed {
            position,
            recovered: s.recovered,
            stale,
            resumed,
        });
        if let Some(state) = s.state {
            self.emit(ChannelEvent::StateChanged {
                version: state.version,
            });
        }
    }

    /// The subscribe was refused.
    pub fn on_subscribe_error(&mut self, error: RequestError) -> Outcome {
        let reason = error.code_text();
        match self.first.take() {
            Some((reply, _)) => {
                let _ = reply.send(Err(error));
            }
            None => self.emit(ChannelEvent::Removed { reason }),
        }
        Outcome {
            removed: true,
            ..Outcome::default()
        }
    }

    /// A stream item: delivered once, in order; an item at or below the position is a
    /// duplicate of one already delivered and is dropped.
    pub fn on_item(&mut self, item: StreamItem) {
        let seq = item.seq();
        let position = {
            let mut view = self.view();
            let Some(position) = view.position.as_mut() else {
                return;
            };
            if seq <= position.seq {
                tracing::debug!(channel = %self.name, seq, "duplicate stream item dropped");
                return;
            }
            position.seq = seq;
            position.clone()
        };
        self.emit(ChannelEvent::Message(Delivery { item, position }));
    }

    /// A `broadcast:ack` for this channel: our own message occupies its `seq` (CLIENT-11).
    pub fn on_ack(&mut self, seq: u64, faults: &Faults) {
        if faults.has(Fault::SinceIgnoresAcks) {
            return;
        }
        if let Some(position) = self.view().position.as_mut() {
            position.seq = position.seq.max(seq);
        }
    }

    /// A `history:page`: its epoch becomes the channel's when it differs.
    pub fn on_history(&mut self, position: &StreamPosition) {
        let mut view = self.view();
        if view.position.as_ref().map(|p| &p.epoch) != Some(&position.epoch) {
            view.position = Some(position.clone());
        }
    }

    /// Presence and cursor frames.
    pub fn on_presence(&mut self, frame: ServerMessage, faults: &Faults) {
        let event = {
            let mut view = self.view();
            match frame {
                ServerMessage::UserJoined(j) => {
                    view.presence.upsert(j.member.clone());
                    ChannelEvent::MemberJoined(j.member)
                }
                ServerMessage::UserLeft(l) => {
                    view.presence.remove(&l.user_id);
                    if !faults.has(Fault::KeepCursorAfterLeave) {
                        view.cursors.remove(&l.user_id); // CURS-19
                    }
                    ChannelEvent::MemberLeft { user_id: l.user_id }
                }
                ServerMessage::PresenceUpdated(u) => {
                    view.presence.upsert(u.member.clone());
                    ChannelEvent::MemberUpdated(u.member)
                }
                ServerMessage::PresenceList(l) => {
                    view.presence.replace(l.members);
                    return;
                }
                ServerMessage::CursorMoved(m) => {
                    for c in &m.cursors {
                        view.cursors.insert(c.user_id.clone(), c.clone());
                    }
                    ChannelEvent::CursorsMoved(m.cursors)
                }
                _ => return,
            }
        };
        self.emit(event);
    }

    /// A new snapshot (`state:sync`).
    pub fn on_snapshot(&mut self, snapshot: StateSnapshot) {
        let version = snapshot.version;
        self.view().state.set(Some(snapshot));
        self.state_stale = false;
        self.resync_pending = false;
        self.emit(ChannelEvent::StateChanged { version });
    }

    /// Discards the copy and asks for a new snapshot (STATE-28).
    fn reset_state(&mut self) -> Outcome {
        self.view().state.set(None);
        self.state_stale = true;
        self.emit(ChannelEvent::StateReset);
        let resync = !self.resync_pending;
        self.resync_pending = true;
        Outcome {
            resync,
            ..Outcome::default()
        }
    }

    /// A state change frame of `epoch` producing `version`; `apply` changes the data.
    pub fn on_state_change(
        &mut self,
        epoch: &Epoch,
        version: u64,
        apply: impl FnOnce(&mut chorus_protocol::StateData),
        faults: &Faults,
    ) -> Outcome {
        if !self.options.state {
            return Outcome::default();
        }
        let lenient = faults.has(Fault::NoStateResync);
        if self.state_stale && !lenient {
            // CLIENT-13: no frame is applied before the fresh snapshot.
            return Outcome::default();
        }
        let verdict = {
            let mut view = self.view();
            match view.state.snapshot_mut() {
                None => None,
                Some(snap) if snap.epoch != *epoch && !lenient => Some(false),
                Some(snap) if version <= snap.version && snap.epoch == *epoch => {
                    return Outcome::default()
                }
                Some(snap) if version != snap.version + 1 && !lenient => Some(false),
                Some(snap) => {
                    apply(&mut snap.data);
                    snap.version = version;
                    snap.epoch = epoch.clone();
                    Some(true)
                }
            }
        };
        match verdict {
            Some(true) => {
                self.emit(ChannelEvent::StateChanged { version });
                Outcome::default()
            }
            Some(false) => self.reset_state(),
            None => Outcome::default(),
        }
    }

    /// A `state:ack` or `conflict` naming `epoch`: another epoch voids the copy (STATE-28).
    pub fn check_epoch(&mut self, epoch: &Epoch, faults: &Faults) -> Outcome {
        if !self.options.state || faults.has(Fault::NoStateResync) {
            return Outcome::default();
        }
        let differs = self
            .view()
            .state
            .snapshot()
            .is_some_and(|s| s.epoch != *epoch);
        if differs {
            self.reset_state()
        } else {
            Outcome::default()
        }
    }

    /// The server removed the subscription.
    pub fn on_removed(&mut self, reason: Option<String>) {
        self.emit(ChannelEvent::Removed { reason });
    }

    /// The `state:sync:request` frame for this channel.
    pub fn resync_frame(&self) -> ClientMessage {
        ClientMessage::StateSyncRequest(StateSyncRequest {
            id: None,
            channel: self.name.clone(),
        })
    }

    /// The client stopped: the application's pending `subscribe` fails.
    pub fn stop(&mut self, reason: &str) {
        if let Some((reply, _)) = self.first.take() {
            let _ = reply.send(Err(RequestError::Stopped(reason.to_owned())));
        }
    }
}

use crate::driver::Command;
