//! Idempotent publishing: the `message_id`s of accepted publishes, remembered for
//! `limits.dedup_window_ms`, so that a retry gets the first reply and publishes nothing
//! (spec: channels.md, CHAN-44; http.md, HTTP-38).

use std::collections::{HashMap, VecDeque};

use chorus_protocol::{Epoch, Millis, UserId};

use super::engine::ChannelKey;
use super::CoreError;

/// Longest `message_id` in characters (CHAN-45).
const MAX_MESSAGE_ID_CHARS: usize = 128;

/// Whose publish a message id belongs to: ids are scoped to a channel and a publisher
/// (`None`: the server itself, `POST /api/broadcast`), so no user can block another's id.
pub(super) type PublishKey = (ChannelKey, Option<UserId>, String);

/// Where an accepted publish landed.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Published {
    pub seq: u64,
    pub ts: Millis,
    /// The epoch of `seq`: a publish of an epoch that ended is no longer a duplicate.
    pub epoch: Epoch,
}

/// The message ids seen within the window, oldest first.
#[derive(Debug, Default)]
pub(super) struct PublishIds {
    seen: HashMap<PublishKey, Published>,
    order: VecDeque<(Millis, PublishKey)>,
}

impl PublishIds {
    /// The earlier publish with this key, if it is younger than `window` and of `epoch`.
    pub fn earlier(
        &mut self,
        key: &PublishKey,
        epoch: &Epoch,
        now: Millis,
        window: Millis,
    ) -> Option<Published> {
        self.expire(now, window);
        self.seen.get(key).filter(|p| p.epoch == *epoch).cloned()
    }

    /// Remembers an accepted publish.
    pub fn remember(&mut self, key: PublishKey, published: Published, now: Millis) {
        self.order.push_back((now, key.clone()));
        self.seen.insert(key, published);
    }

    /// Forgets what is older than the window.
    fn expire(&mut self, now: Millis, window: Millis) {
        while let Some((at, _)) = self.order.front() {
            if at.saturating_add(window) > now {
                break;
            }
            if let Some((at, key)) = self.order.pop_front() {
                if self.seen.get(&key).is_some_and(|p| p.ts == at) {
                    self.seen.remove(&key);
                }
            }
        }
    }
}

/// CHAN-45: a `message_id` is 1 to 128 characters.
pub(super) fn check_message_id(id: Option<&str>) -> Result<(), CoreError> {
    let n = id.map_or(1, |s| s.chars().count());
    if n == 0 || n > MAX_MESSAGE_ID_CHARS {
        return Err(CoreError::InvalidMessage(format!(
            "message_id must be 1 to {MAX_MESSAGE_ID_CHARS} characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> PublishKey {
        let ch = ChannelKey {
            tenant: "".into(),
            name: "chat".into(),
        };
        (ch, Some("ann".into()), id.into())
    }

    #[test]
    fn ids_are_remembered_for_the_window_and_the_epoch() {
        let mut ids = PublishIds::default();
        let e1 = Epoch::from("e-1");
        let first = Published {
            seq: 4,
            ts: 100,
            epoch: e1.clone(),
        };
        ids.remember(key("m"), first.clone(), 100);
        assert_eq!(ids.earlier(&key("m"), &e1, 199, 100), Some(first));
        assert_eq!(ids.earlier(&key("m"), &Epoch::from("e-2"), 199, 100), None);
        assert_eq!(ids.earlier(&key("other"), &e1, 199, 100), None);
        assert_eq!(ids.earlier(&key("m"), &e1, 200, 100), None);
    }
}
