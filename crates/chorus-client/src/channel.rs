//! The handle of one subscribed channel: its events, its views, and the requests made on it.

use std::sync::{Arc, Mutex, MutexGuard};

use chorus_protocol::{
    Broadcast, ChannelName, ClientMessage, CursorState, CursorUpdate, History, HistoryPage, Member,
    PresenceStatus, PresenceUpdate, RoomOptions, ServerMessage, StateData, StateDelete, StateMerge,
    StateSnapshot, StateSyncRequest, StateUpdate, StateVersion, StreamItem, StreamPosition, UserId,
};
use tokio::sync::{mpsc, oneshot};

use crate::driver::Command;
use crate::error::{RequestError, StateError};
use crate::view::{ChannelView, PresenceView, StateView};

/// Options of a subscription, kept and sent again on every resubscribe (CLIENT-10).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubscribeOptions {
    /// Ask for the shared-state snapshot (STATE); the [`Channel::state`] view is kept only
    /// with it.
    pub state: bool,
    /// Room password, for presence channels created with one.
    pub password: Option<String>,
    /// Room options, applied only when this subscribe creates the room.
    pub room: Option<RoomOptions>,
    /// A position the application already holds: the first subscribe recovers from it.
    pub since: Option<StreamPosition>,
}

impl SubscribeOptions {
    /// Options that ask for the shared-state snapshot.
    pub fn with_state() -> Self {
        SubscribeOptions {
            state: true,
            ..SubscribeOptions::default()
        }
    }
}

/// One entry of the channel's stream as delivered, with the position it moved the channel to.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The `message` or `data_change`.
    pub item: StreamItem,
    /// The channel's position after this item.
    pub position: StreamPosition,
}

/// Something that happened on a channel, in the order the server sent it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ChannelEvent {
    /// A `subscribed` arrived: the first one, or a resubscribe after a reconnect.
    Subscribed {
        /// The channel's position in the reply.
        position: StreamPosition,
        /// The server's `recovered`, when the subscribe carried `since`.
        recovered: Option<bool>,
        /// True after a reconnect when what the application derived from the channel is
        /// stale and must be reloaded: `recovered: false` or a new epoch (CLIENT-12).
        stale: bool,
        /// True for a resubscribe after a reconnect.
        resumed: bool,
    },
    /// A stream item (message or data change), never twice and in `seq` order.
    Message(Delivery),
    /// A user took its first lease in the presence channel.
    MemberJoined(Member),
    /// A user's last lease ended (its cursor is gone too, CURS-19).
    MemberLeft {
        /// The user.
        user_id: UserId,
    },
    /// A member's status or data changed.
    MemberUpdated(Member),
    /// Cursors moved.
    CursorsMoved(Vec<CursorState>),
    /// The shared state changed: a snapshot or a diff was applied; read [`Channel::state`].
    StateChanged {
        /// The version now held.
        version: u64,
    },
    /// The state copy was discarded (new epoch, version gap or reconnect); a new snapshot
    /// has been requested (STATE-28, CLIENT-13).
    StateReset,
    /// The server removed the subscription (unsolicited `unsubscribed`, or a resubscribe was
    /// refused); it is not renewed.
    Removed {
        /// The server's reason or error code.
        reason: Option<String>,
    },
}

/// A state write's success: the version it produced.
pub type StateWrite = StateVersion;

/// A `broadcast` accepted by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The message's sequence number.
    pub seq: u64,
    /// Server time of acceptance.
    pub ts: u64,
}

/// A `history` request's parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryQuery {
    /// At most this many messages.
    pub limit: Option<std::num::NonZeroU32>,
    /// Only messages with `seq` below this (paging backwards).
    pub before_seq: Option<u64>,
    /// Only messages with this event name.
    pub event: Option<String>,
}

/// A subscribed channel: its [`ChannelHandle`] (requests and views, reachable through
/// `Deref`) and its event stream ([`Channel::next`]). The views are kept up to date by the
/// client whether or not the events are read.
///
/// Dropping it does not unsubscribe; call [`ChannelHandle::unsubscribe`].
#[derive(Debug)]
pub struct Channel {
    pub(crate) handle: ChannelHandle,
    pub(crate) events: mpsc::UnboundedReceiver<ChannelEvent>,
}

/// Requests on a channel and its views; cheap to clone, so one task may read the events
/// while others publish.
#[derive(Debug, Clone)]
pub struct ChannelHandle {
    pub(crate) name: ChannelName,
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    pub(crate) view: Arc<Mutex<ChannelView>>,
}

/// The event half of a [`Channel`] after [`Channel::into_split`].
#[derive(Debug)]
pub struct ChannelEvents {
    events: mpsc::UnboundedReceiver<ChannelEvent>,
}

impl ChannelEvents {
    /// The next event; `None` once the client stopped or the subscription was removed.
    pub async fn next(&mut self) -> Option<ChannelEvent> {
        self.events.recv().await
    }

    /// Forgets the events not read yet, locally (BCAST-5); see [`Channel::clear`].
    pub fn clear(&mut self) -> usize {
        let mut n = 0;
        while self.events.try_recv().is_ok() {
            n += 1;
        }
        n
    }
}

impl std::ops::Deref for Channel {
    type Target = ChannelHandle;

    fn deref(&self) -> &ChannelHandle {
        &self.handle
    }
}

fn lock(view: &Mutex<ChannelView>) -> MutexGuard<'_, ChannelView> {
    // A panic while holding the lock cannot leave the view half-updated in a way that
    // matters more than losing it; keep going with what is there.
    view.lock().unwrap_or_else(|e| e.into_inner())
}

impl Channel {
    /// Splits into the request handle and the event stream.
    pub fn into_split(self) -> (ChannelHandle, ChannelEvents) {
        (
            self.handle,
            ChannelEvents {
                events: self.events,
            },
        )
    }

    /// A clone of the request handle.
    pub fn handle(&self) -> ChannelHandle {
        self.handle.clone()
    }

    /// Leaves the channel; it is not renewed on reconnect.
    pub async fn unsubscribe(self) -> Result<(), RequestError> {
        self.handle.unsubscribe().await
    }

    /// The next event; `None` once the client stopped or the subscription was removed.
    pub async fn next(&mut self) -> Option<ChannelEvent> {
        self.events.recv().await
    }

    /// The next event if one is already queued.
    pub fn try_next(&mut self) -> Option<ChannelEvent> {
        self.events.try_recv().ok()
    }

    /// Forgets the events not read yet, locally: nothing is sent and the server's history
    /// is unchanged (BCAST-5). Returns how many were dropped.
    pub fn clear(&mut self) -> usize {
        let mut n = 0;
        while self.events.try_recv().is_ok() {
            n += 1;
        }
        n
    }
}

impl ChannelHandle {
    /// The channel's name.
    pub fn name(&self) -> &ChannelName {
        &self.name
    }

    /// The last stream position the client saw on this channel (CLIENT-11).
    pub fn position(&self) -> Option<StreamPosition> {
        lock(&self.view).position.clone()
    }

    /// The presence members (empty on channels without presence).
    pub fn presence(&self) -> PresenceView {
        lock(&self.view).presence.clone()
    }

    /// The latest cursor of each other member.
    pub fn cursors(&self) -> std::collections::BTreeMap<UserId, CursorState> {
        lock(&self.view).cursors.clone()
    }

    /// The shared-state copy (kept when subscribed with [`SubscribeOptions::state`]).
    pub fn state(&self) -> StateView {
        lock(&self.view).state.clone()
    }

    /// Everything the client keeps about the channel.
    pub fn view(&self) -> ChannelView {
        lock(&self.view).clone()
    }

    async fn request(&self, frame: ClientMessage) -> Result<ServerMessage, RequestError> {
        request(&self.commands, frame).await
    }

    /// Publishes an event (not echoed to this connection).
    pub async fn publish(
        &self,
        event: impl Into<String>,
        data: serde_json::Value,
    ) -> Result<Published, RequestError> {
        self.publish_with(event, data, false).await
    }

    /// Publishes an event, asking for it to be echoed to this connection when `echo`.
    pub async fn publish_with(
        &self,
        event: impl Into<String>,
        data: serde_json::Value,
        echo: bool,
    ) -> Result<Published, RequestError> {
        let frame = ClientMessage::Broadcast(Broadcast {
            id: None,
            channel: self.name.clone(),
            event: event.into(),
            data,
            echo: echo.then_some(true),
            message_id: None,
        });
        match self.request(frame).await? {
            ServerMessage::BroadcastAck(ack) => Ok(Published {
                seq: ack.seq,
                ts: ack.ts,
            }),
            other => Err(unexpected(&other)),
        }
    }

    /// Publishes an event with a `message_id` the application chose (CLIENT-19). After
    /// [`RequestError::OutcomeUnknown`], calling again with the same `message_id` within the
    /// server's `limits.dedup_window_ms` publishes the event at most once (CHAN-44); the
    /// reply to the repeat carries the first publish's `seq`.
    pub async fn publish_once(
        &self,
        message_id: impl Into<String>,
        event: impl Into<String>,
        data: serde_json::Value,
    ) -> Result<Published, RequestError> {
        let frame = ClientMessage::Broadcast(Broadcast {
            id: None,
            channel: self.name.clone(),
            event: event.into(),
            data,
            echo: None,
            message_id: Some(message_id.into()),
        });
        match self.request(frame).await? {
            ServerMessage::BroadcastAck(ack) => Ok(Published {
                seq: ack.seq,
                ts: ack.ts,
            }),
            other => Err(unexpected(&other)),
        }
    }

    /// Reads a page of the channel's retained messages.
    pub async fn history(&self, query: HistoryQuery) -> Result<HistoryPage, RequestError> {
        let frame = ClientMessage::History(History {
            id: None,
            channel: self.name.clone(),
            limit: query.limit,
            before_seq: query.before_seq,
            event: query.event,
        });
        match self.request(frame).await? {
            ServerMessage::HistoryPage(page) => Ok(page),
            other => Err(unexpected(&other)),
        }
    }

    /// Changes this connection's presence status and/or data.
    pub async fn update_presence(
        &self,
        status: Option<PresenceStatus>,
        data: Option<serde_json::Value>,
    ) -> Result<(), RequestError> {
        let frame = ClientMessage::PresenceUpdate(PresenceUpdate {
            id: None,
            channel: self.name.clone(),
            status,
            data,
        });
        match self.request(frame).await? {
            ServerMessage::PresenceAck(_) => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Moves this user's cursor. No reply; the server coalesces (CURS). Dropped while the
    /// client is not connected: a cursor is only worth its latest position.
    pub fn move_cursor(&self, x: f64, y: f64, data: Option<serde_json::Value>) {
        let frame = ClientMessage::CursorUpdate(CursorUpdate {
            channel: self.name.clone(),
            x,
            y,
            data,
        });
        let _ = self.commands.send(Command::Fire { frame });
    }

    /// Sets one state key.
    pub async fn set(
        &self,
        key: impl Into<String>,
        value: serde_json::Value,
    ) -> Result<StateWrite, StateError> {
        self.write_state(ClientMessage::StateUpdate(StateUpdate {
            id: None,
            channel: self.name.clone(),
            key: key.into(),
            value,
            expected_version: None,
            expected_epoch: None,
        }))
        .await
    }

    /// Sets one state key if the state is at `expected_version` (compare-and-set); a
    /// [`StateError::Conflict`] carries the current version.
    pub async fn set_if(
        &self,
        key: impl Into<String>,
        value: serde_json::Value,
        expected_version: u64,
    ) -> Result<StateWrite, StateError> {
        self.write_state(ClientMessage::StateUpdate(StateUpdate {
            id: None,
            channel: self.name.clone(),
            key: key.into(),
            value,
            expected_version: Some(expected_version),
            expected_epoch: None,
        }))
        .await
    }

    /// Sets several top-level keys at once, optionally compare-and-set.
    pub async fn merge(
        &self,
        data: StateData,
        expected_version: Option<u64>,
    ) -> Result<StateWrite, StateError> {
        self.write_state(ClientMessage::StateMerge(StateMerge {
            id: None,
            channel: self.name.clone(),
            data,
            expected_version,
            expected_epoch: None,
        }))
        .await
    }

    /// Removes one key, optionally compare-and-set.
    pub async fn delete(
        &self,
        key: impl Into<String>,
        expected_version: Option<u64>,
    ) -> Result<StateWrite, StateError> {
        self.write_state(ClientMessage::StateDelete(StateDelete {
            id: None,
            channel: self.name.clone(),
            key: key.into(),
            expected_version,
            expected_epoch: None,
        }))
        .await
    }

    async fn write_state(&self, frame: ClientMessage) -> Result<StateWrite, StateError> {
        match self.request(frame).await {
            Ok(ServerMessage::StateAck(ack)) => Ok(StateVersion {
                version: ack.version,
                epoch: ack.epoch,
            }),
            Ok(other) => Err(unexpected(&other).into()),
            Err(RequestError::Server(e))
                if crate::decode::error_code(&e) == Some(chorus_protocol::ErrorCode::Conflict) =>
            {
                match e.current.clone() {
                    Some(current) => Err(StateError::Conflict { current }),
                    None => Err(RequestError::Server(e).into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Asks for a fresh state snapshot; the view is replaced with it.
    pub async fn sync_state(&self) -> Result<StateSnapshot, RequestError> {
        let frame = ClientMessage::StateSyncRequest(StateSyncRequest {
            id: None,
            channel: self.name.clone(),
        });
        match self.request(frame).await? {
            ServerMessage::StateSync(s) => Ok(StateSnapshot {
                data: s.data,
                version: s.version,
                epoch: s.epoch,
            }),
            other => Err(unexpected(&other)),
        }
    }

    /// Leaves the channel; it is not renewed on reconnect.
    pub async fn unsubscribe(&self) -> Result<(), RequestError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Unsubscribe {
                channel: self.name.clone(),
                reply,
            })
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

pub(crate) async fn request(
    commands: &mpsc::UnboundedSender<Command>,
    frame: ClientMessage,
) -> Result<ServerMessage, RequestError> {
    let (reply, rx) = oneshot::channel();
    commands
        .send(Command::Request { frame, reply })
        .map_err(|_| stopped())?;
    match rx.await.map_err(|_| stopped())? {
        Ok(ServerMessage::Error(e)) => Err(RequestError::Server(Box::new(e))),
        other => other,
    }
}

pub(crate) fn stopped() -> RequestError {
    RequestError::Stopped("the client task ended".into())
}

fn unexpected(m: &ServerMessage) -> RequestError {
    RequestError::UnexpectedReply(m.type_name().to_owned())
}
