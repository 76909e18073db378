//! The 64-byte payload every benchmark message carries: who sent it, its sequence number
//! among that sender's messages, and when it was (or was scheduled to be) sent.
//!
//! Layout (ASCII, exactly [`PAYLOAD_LEN`] bytes): `~b`, publisher (6 hex), sequence (12 hex),
//! send time in ns since [`clock_origin`] (16 hex), then `.` padding. The `~b` marker lets a
//! receiver find the payload inside any dialect's envelope without parsing JSON.

use std::sync::OnceLock;
use std::time::Instant;

/// Length of every payload, as the issue's workload prescribes (64-byte payloads).
pub const PAYLOAD_LEN: usize = 64;
const MARKER: &str = "~b";
const BODY_LEN: usize = 6 + 12 + 16;

/// What a payload says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload {
    /// Index of the publishing connection in the run.
    pub publisher: u32,
    /// 0-based position among that publisher's messages.
    pub seq: u64,
    /// Nanoseconds since [`clock_origin`] at (scheduled) send time.
    pub sent_ns: u64,
}

/// The instant all payload times count from; the load generator is one process, so sender
/// and receiver share it.
pub fn clock_origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Nanoseconds since [`clock_origin`].
pub fn now_ns() -> u64 {
    u64::try_from(clock_origin().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

impl Payload {
    /// The payload's 64-byte text.
    pub fn encode(&self) -> String {
        let mut s = format!(
            "{MARKER}{:06x}{:012x}{:016x}",
            self.publisher & 0xff_ffff,
            self.seq & 0xffff_ffff_ffff,
            self.sent_ns
        );
        s.extend(std::iter::repeat_n('.', PAYLOAD_LEN - s.len()));
        s
    }

    /// Finds and decodes the payload inside a received frame, if it holds one.
    pub fn find(frame: &str) -> Option<Payload> {
        let start = frame.find(MARKER)? + MARKER.len();
        let body = frame.get(start..start + BODY_LEN)?;
        Some(Payload {
            publisher: u32::from_str_radix(&body[..6], 16).ok()?,
            seq: u64::from_str_radix(&body[6..18], 16).ok()?,
            sent_ns: u64::from_str_radix(&body[18..], 16).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_64_bytes_and_round_trips() {
        let p = Payload {
            publisher: 7,
            seq: 123_456,
            sent_ns: 9_876_543_210,
        };
        let text = p.encode();
        assert_eq!(text.len(), PAYLOAD_LEN);
        assert_eq!(Payload::find(&text), Some(p));
    }

    #[test]
    fn payload_is_found_inside_a_json_envelope() {
        let p = Payload {
            publisher: 1,
            seq: 2,
            sent_ns: 3,
        };
        let frame = format!(
            r#"{{"type":"message","channel":"c","event":"m","data":"{}","ts":1,"seq":5}}"#,
            p.encode()
        );
        assert_eq!(Payload::find(&frame), Some(p));
    }

    #[test]
    fn frame_without_marker_has_no_payload() {
        assert_eq!(Payload::find(r#"{"type":"welcome"}"#), None);
        assert_eq!(Payload::find("~b12"), None);
    }
}
