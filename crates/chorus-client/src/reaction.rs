//! How a connection ended, and what the client does about it (the table of spec/client.md,
//! CLIENT-5 to CLIENT-8). Decided on codes and HTTP statuses only, never on reason texts
//! (ERR-11).

use crate::faults::{Fault, Faults};

/// How a connection (or an attempt at one) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ending {
    /// The application closed the client (1000 sent by us).
    ClosedByClient,
    /// The server sent a Close frame with this code (1005 when it carried none).
    Closed {
        /// The close code.
        code: u16,
        /// The reason text: logged and reported, never interpreted (ERR-11).
        reason: String,
    },
    /// The TCP connection ended without a Close frame (1006).
    Dropped,
    /// The client's own dead-connection timeout fired (CLIENT-15).
    HeartbeatTimeout,
    /// The upgrade was answered with this HTTP status instead of 101.
    Refused {
        /// The HTTP status.
        status: u16,
    },
    /// The connection could not be made (network error, timeout, TLS, no `welcome`).
    ConnectFailed {
        /// What failed, for logs.
        reason: String,
    },
}

impl Ending {
    /// The close code this ending reports to the application (1006 for a drop).
    pub fn code(&self) -> Option<u16> {
        match self {
            Ending::ClosedByClient => Some(1000),
            Ending::Closed { code, .. } => Some(*code),
            Ending::Dropped => Some(1006),
            Ending::HeartbeatTimeout => Some(4300),
            Ending::Refused { .. } | Ending::ConnectFailed { .. } => None,
        }
    }
}

/// What the client does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaction {
    /// Do not reconnect; report to the application (CLIENT-5).
    Stop,
    /// Get a new token from the provider, then reconnect (CLIENT-6).
    RefreshToken,
    /// Wait a full-jitter delay, then reconnect (CLIENT-7).
    Backoff,
    /// Reconnect at once (CLIENT-8, CLIENT-15).
    Immediately,
}

/// The reaction to `ending`.
pub fn react(ending: &Ending, faults: &Faults) -> Reaction {
    let reaction = match ending {
        Ending::ClosedByClient => Reaction::Stop,
        Ending::Closed { code, reason } => {
            if faults.has(Fault::ReadCloseReason) && reason.to_ascii_lowercase().contains("fatal") {
                return Reaction::Stop;
            }
            by_code(*code)
        }
        Ending::Dropped => {
            if faults.has(Fault::StopOnDrop) {
                return Reaction::Stop;
            }
            Reaction::Backoff
        }
        Ending::HeartbeatTimeout => Reaction::Immediately,
        Ending::Refused { status: 400 | 403 } => Reaction::Stop,
        Ending::Refused { .. } | Ending::ConnectFailed { .. } => Reaction::Backoff,
    };
    match reaction {
        Reaction::Stop
            if faults.has(Fault::ReconnectAfterTerminal) && *ending != Ending::ClosedByClient =>
        {
            Reaction::Backoff
        }
        Reaction::Immediately if faults.has(Fault::DelayAfter4300) => Reaction::Backoff,
        other => other,
    }
}

/// The reaction to a server close code.
fn by_code(code: u16) -> Reaction {
    match code {
        // A server 1000 ends the session on purpose (CLIENT-5's table).
        1000 | 1002 | 1003 | 1007 | 1009 | 4000..=4099 => Reaction::Stop,
        4100..=4199 => Reaction::RefreshToken,
        4300..=4399 => Reaction::Immediately,
        // 1001, 1011, 4200-4299, 4400-4999 and every unregistered code (CLIENT-7).
        _ => Reaction::Backoff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(code: u16) -> Reaction {
        react(
            &Ending::Closed {
                code,
                reason: String::new(),
            },
            &Faults::none(),
        )
    }

    #[test]
    fn terminal_codes_stop() {
        for code in [1000, 1002, 1003, 1007, 1009, 4000, 4001, 4003, 4005, 4099] {
            assert_eq!(closed(code), Reaction::Stop, "{code}");
        }
    }

    #[test]
    fn expiry_codes_refresh() {
        assert_eq!(closed(4100), Reaction::RefreshToken);
        assert_eq!(closed(4199), Reaction::RefreshToken);
    }

    #[test]
    fn retryable_codes_back_off() {
        for code in [1001, 1011, 1005, 1012, 3000, 4200, 4202, 4299, 4400, 4999] {
            assert_eq!(closed(code), Reaction::Backoff, "{code}");
        }
        assert_eq!(react(&Ending::Dropped, &Faults::none()), Reaction::Backoff);
        assert_eq!(
            react(&Ending::Refused { status: 503 }, &Faults::none()),
            Reaction::Backoff
        );
    }

    #[test]
    fn reconnect_requests_are_immediate() {
        assert_eq!(closed(4300), Reaction::Immediately);
        assert_eq!(closed(4301), Reaction::Immediately);
        assert_eq!(
            react(&Ending::HeartbeatTimeout, &Faults::none()),
            Reaction::Immediately
        );
    }

    #[test]
    fn refused_upgrades_400_and_403_are_terminal() {
        for status in [400, 403] {
            assert_eq!(
                react(&Ending::Refused { status }, &Faults::none()),
                Reaction::Stop
            );
        }
    }

    #[test]
    fn reason_text_is_never_read() {
        let ending = Ending::Closed {
            code: 1001,
            reason: "fatal: do not reconnect".into(),
        };
        assert_eq!(react(&ending, &Faults::none()), Reaction::Backoff);
    }
}
