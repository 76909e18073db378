//! Channel names and kinds (spec: channels.md, CHAN requirements).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Prefix of private channels: subscribing needs a grant in the token's `channels` claim.
pub const PRIVATE_PREFIX: &str = "private-";
/// Prefix of presence channels: members, statuses, rooms and cursors live there.
pub const PRESENCE_PREFIX: &str = "presence-";
/// Prefix of private presence channels: presence channels that need a grant (CHAN-43).
pub const PRIVATE_PRESENCE_PREFIX: &str = "private-presence-";
/// Prefix of a resource's data-change feed, `resource:{name}`; clients never broadcast there.
pub const RESOURCE_PREFIX: &str = "resource:";

/// A channel name as it appears on the wire. Deserialization accepts any string so that a
/// server can answer a bad name with the typed `invalid_channel` error; [`ChannelName::validate`]
/// applies the rules.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct ChannelName(
    /// One or more of `A-Z a-z 0-9 _ - : . @ = # /`, at most the server's `max_channel_name_len`.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_\-:.@=#/]+$"))]
    pub String,
);

/// The three kinds of channel, decided by the name's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// Any connection of the tenant may subscribe.
    Public,
    /// `private-…`: subscribing needs a grant matching the name.
    Private,
    /// `presence-…` or `private-presence-…`: a presence channel (and room); members,
    /// statuses, cursors. `private-presence-…` channels also need a grant (CHAN-43).
    Presence,
}

/// Why a channel name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChannelNameError {
    /// The name is the empty string.
    #[error("channel name is empty")]
    Empty,
    /// The name is longer than the server's limit.
    #[error("channel name has {len} characters, the limit is {max}")]
    TooLong {
        /// Length of the offered name, in characters.
        len: usize,
        /// The server's `max_channel_name_len`.
        max: usize,
    },
    /// The name holds a character outside the allowed set.
    #[error("channel name contains {0:?}, allowed are A-Z a-z 0-9 _ - : . @ = # /")]
    BadCharacter(char),
    /// A prefix with nothing after it (`private-`, `presence-`, `resource:`).
    #[error("channel name {0:?} is only a prefix")]
    OnlyPrefix(String),
}

impl ChannelName {
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Checks the name rules (CHAN requirements) and returns the channel's kind.
    pub fn validate(&self, max_len: usize) -> Result<ChannelKind, ChannelNameError> {
        let name = self.0.as_str();
        if name.is_empty() {
            return Err(ChannelNameError::Empty);
        }
        let len = name.chars().count();
        if len > max_len {
            return Err(ChannelNameError::TooLong { len, max: max_len });
        }
        if let Some(bad) = name.chars().find(|c| !is_channel_char(*c)) {
            return Err(ChannelNameError::BadCharacter(bad));
        }
        for prefix in [PRIVATE_PREFIX, PRESENCE_PREFIX, RESOURCE_PREFIX] {
            if name == prefix {
                return Err(ChannelNameError::OnlyPrefix(name.to_owned()));
            }
        }
        Ok(self.kind())
    }

    /// The kind implied by the prefix (without checking the other rules).
    pub fn kind(&self) -> ChannelKind {
        if self.0.starts_with(PRIVATE_PRESENCE_PREFIX) {
            ChannelKind::Presence
        } else if self.0.starts_with(PRIVATE_PREFIX) {
            ChannelKind::Private
        } else if self.0.starts_with(PRESENCE_PREFIX) {
            ChannelKind::Presence
        } else {
            ChannelKind::Public
        }
    }

    /// True for names that need a grant in the token's `channels` claim: every name that
    /// starts with `private-`, `private-presence-` included (CHAN-5, CHAN-43).
    pub fn needs_grant(&self) -> bool {
        self.0.starts_with(PRIVATE_PREFIX)
    }

    /// True for `resource:` channels (feeds and record channels), where clients may not
    /// broadcast or write state (CHAN-21, STATE-11).
    pub fn is_resource_feed(&self) -> bool {
        self.0.starts_with(RESOURCE_PREFIX)
    }

    /// The data-change feed of a resource: `resource:{name}`.
    pub fn resource_feed(resource: &str) -> Self {
        ChannelName(format!("{RESOURCE_PREFIX}{resource}"))
    }

    /// The channel of one record: `resource:{name}:{id}` (CHG-21), under the reserved
    /// prefix so that no ordinary channel belongs to a resource (CHG-23).
    pub fn record(resource: &str, record_id: &str) -> Self {
        ChannelName(format!("{RESOURCE_PREFIX}{resource}:{record_id}"))
    }
}

fn is_channel_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '.' | '@' | '=' | '#' | '/')
}

impl std::fmt::Display for ChannelName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ChannelName {
    fn from(value: &str) -> Self {
        ChannelName(value.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_prefixes() {
        assert_eq!(
            ChannelName::from("chat").validate(200),
            Ok(ChannelKind::Public)
        );
        assert_eq!(
            ChannelName::from("private-a").validate(200),
            Ok(ChannelKind::Private)
        );
        assert_eq!(
            ChannelName::from("presence-doc-1").validate(200),
            Ok(ChannelKind::Presence)
        );
        let private_presence = ChannelName::from("private-presence-doc-1");
        assert_eq!(private_presence.validate(200), Ok(ChannelKind::Presence));
        assert!(private_presence.needs_grant());
        assert!(!ChannelName::from("presence-doc-1").needs_grant());
        assert_eq!(
            ChannelName::from("resource:post").validate(200),
            Ok(ChannelKind::Public)
        );
    }

    #[test]
    fn bad_names_are_typed_errors() {
        assert_eq!(
            ChannelName::from("").validate(200),
            Err(ChannelNameError::Empty)
        );
        assert_eq!(
            ChannelName::from("a b").validate(200),
            Err(ChannelNameError::BadCharacter(' '))
        );
        assert!(matches!(
            ChannelName::from("abcdef").validate(3),
            Err(ChannelNameError::TooLong { len: 6, max: 3 })
        ));
        assert!(matches!(
            ChannelName::from("private-").validate(200),
            Err(ChannelNameError::OnlyPrefix(_))
        ));
    }
}
