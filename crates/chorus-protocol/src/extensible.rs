//! Tokens of a list that a later `chorus.v1` revision may extend (versioning.md, VER-9):
//! capabilities, error codes and close codes as a client reads them.
//!
//! A server only ever sends the tokens this crate knows ([`Capability`], [`ErrorCode`],
//! [`CloseCode`] stay closed, `Copy` enums). A client decoding a server frame keeps a token
//! it does not know as [`Extensible::Unknown`] instead of rejecting the frame, so a 1.x
//! server that adds a capability or an error code does not break it.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::connection::Capability;
use crate::errors::{CloseAction, CloseCode, ErrorCode};

/// A token a client received: one this crate knows, or one a later revision added.
///
/// `Unknown` holds the token as it came on the wire (a string for capabilities and error
/// codes, the number for close codes). Compare with a known value directly:
/// `frame.code == ErrorCode::Conflict`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Extensible<T, U = String> {
    /// A token of this protocol revision.
    Known(T),
    /// A token this crate does not know; ignore it or treat it by its range (VER-9).
    Unknown(U),
}

/// A closed list of string tokens that [`Extensible`] can extend.
pub trait WireToken: Sized + Copy + 'static {
    /// Every token of the list.
    fn all() -> &'static [Self];
    /// The token's wire name.
    fn wire_name(self) -> &'static str;
}

impl WireToken for Capability {
    fn all() -> &'static [Self] {
        &Capability::ALL
    }
    fn wire_name(self) -> &'static str {
        self.as_str()
    }
}

impl WireToken for ErrorCode {
    fn all() -> &'static [Self] {
        &ErrorCode::ALL
    }
    fn wire_name(self) -> &'static str {
        self.as_str()
    }
}

impl<T: WireToken> Extensible<T> {
    /// Sorts a wire name into a known token or an unknown one.
    pub fn parse(name: &str) -> Self {
        match T::all().iter().find(|t| t.wire_name() == name) {
            Some(t) => Extensible::Known(*t),
            None => Extensible::Unknown(name.to_owned()),
        }
    }

    /// The token as it is written on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Extensible::Known(t) => t.wire_name(),
            Extensible::Unknown(s) => s,
        }
    }
}

impl<T, U> Extensible<T, U> {
    /// The known token, or `None` for one this crate does not know.
    pub fn known(&self) -> Option<&T> {
        match self {
            Extensible::Known(t) => Some(t),
            Extensible::Unknown(_) => None,
        }
    }
}

impl<T> From<T> for Extensible<T> {
    fn from(value: T) -> Self {
        Extensible::Known(value)
    }
}

impl<T: PartialEq, U> PartialEq<T> for Extensible<T, U> {
    fn eq(&self, other: &T) -> bool {
        matches!(self, Extensible::Known(t) if t == other)
    }
}

impl<T: WireToken> std::fmt::Display for Extensible<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<T: WireToken> Serialize for Extensible<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de, T: WireToken> Deserialize<'de> for Extensible<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = Cow::<str>::deserialize(deserializer)?;
        Ok(Extensible::parse(&name))
    }
}

/// The schema of the unknown branch; [`crate::schema`] recognises it to build the strict
/// schema, which admits only the known tokens.
pub(crate) fn unknown_token_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "string",
        "description": "A token added by a later chorus.v1 revision: a client keeps or ignores it (VER-9)."
    })
}

impl<T: WireToken + JsonSchema> JsonSchema for Extensible<T> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        format!("Extensible{}", T::schema_name()).into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let known = generator.subschema_for::<T>();
        schemars::json_schema!({
            "anyOf": [known, unknown_token_schema()]
        })
    }
}

impl CloseCode {
    /// Sorts a received close number into a registered code or an unknown one (errors.md:
    /// a later revision may add codes inside the registry's ranges).
    pub fn classify(code: u16) -> Extensible<CloseCode, u16> {
        match CloseCode::from_code(code) {
            Some(c) => Extensible::Known(c),
            None => Extensible::Unknown(code),
        }
    }
}

impl Extensible<CloseCode, u16> {
    /// The close number.
    pub fn code(&self) -> u16 {
        match self {
            Extensible::Known(c) => c.code(),
            Extensible::Unknown(n) => *n,
        }
    }

    /// What a client should do: a registered code's action, or for an unknown one the
    /// action of its range (4000-4099 stop, 4100-4199 refresh credentials, 4200-4299 back
    /// off, 4300-4399 reconnect now; anything else: back off).
    pub fn action(&self) -> CloseAction {
        match self {
            Extensible::Known(c) => c.action(),
            Extensible::Unknown(n) => match n {
                4000..=4099 => CloseAction::Stop,
                4100..=4199 => CloseAction::RefreshCredentials,
                4300..=4399 => CloseAction::ReconnectNow,
                _ => CloseAction::Backoff,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_tokens_parse_as_known() {
        assert_eq!(
            Extensible::<Capability>::parse("data_change"),
            Extensible::Known(Capability::DataChange)
        );
        assert_eq!(
            Extensible::<ErrorCode>::parse("conflict"),
            ErrorCode::Conflict
        );
    }

    #[test]
    fn unknown_tokens_are_kept_verbatim() {
        let t: Extensible<Capability> = serde_json::from_str(r#""teleport""#).unwrap();
        assert_eq!(t, Extensible::Unknown("teleport".to_owned()));
        assert_eq!(serde_json::to_string(&t).unwrap(), r#""teleport""#);
    }

    #[test]
    fn a_non_string_token_is_still_an_error() {
        assert!(serde_json::from_str::<Extensible<ErrorCode>>("7").is_err());
    }

    #[test]
    fn unknown_close_codes_act_by_their_range() {
        assert_eq!(CloseCode::classify(4100), CloseCode::TokenExpired);
        assert_eq!(CloseCode::classify(4042).action(), CloseAction::Stop);
        assert_eq!(
            CloseCode::classify(4150).action(),
            CloseAction::RefreshCredentials
        );
        assert_eq!(CloseCode::classify(4250).action(), CloseAction::Backoff);
        assert_eq!(
            CloseCode::classify(4399).action(),
            CloseAction::ReconnectNow
        );
        assert_eq!(CloseCode::classify(4399).code(), 4399);
    }
}
