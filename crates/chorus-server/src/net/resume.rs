//! SSE resume tokens: the `id:` of an event, holding the position of every channel of the
//! stream (SSE-7), within 4096 printable ASCII bytes (SSE-8).
//!
//! Two encodings, both opaque to clients (SSE-19):
//! - readable: base64url (no padding) of `{"v":1,"p":{"<channel>":["<epoch>",<seq>],...}}`,
//!   used whenever it fits (the spec's examples are of this form);
//! - compact: `2.` then base64url of a byte string `0x02`, then per channel 4 bytes of the
//!   SHA-256 of its name, its epoch (tag 0 and 8 bytes for the server's own `e-` + 16 hex
//!   digits, else a length byte and the bytes) and its seq as LEB128. About 23 bytes a
//!   channel before base64, so 100 channels of 200-character names fit easily. Should even
//!   that not fit, the channels that do not fit are left out: they resume as a subscribe
//!   without `since` (SSE-13, no `recovered`), so the client knows to refetch them, and the
//!   id never breaks SSE-8.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// SSE-8: the longest `id:` value.
pub const MAX_ID_BYTES: usize = 4096;

/// Position of each channel of a stream: channel -> (epoch, seq).
pub type Positions = BTreeMap<String, (String, u64)>;

/// A decoded token: positions by channel name (readable form) or by name hash (compact).
#[derive(Debug, Clone, PartialEq)]
pub enum Resume {
    /// Readable token.
    Named(Positions),
    /// Compact token: (name hash, epoch, seq).
    Hashed(Vec<([u8; 4], String, u64)>),
}

impl Resume {
    /// The position the token holds for `channel`.
    pub fn position(&self, channel: &str) -> Option<(String, u64)> {
        match self {
            Resume::Named(p) => p.get(channel).cloned(),
            Resume::Hashed(entries) => {
                let h = name_hash(channel);
                entries
                    .iter()
                    .find(|(e, _, _)| *e == h)
                    .map(|(_, epoch, seq)| (epoch.clone(), *seq))
            }
        }
    }
}

/// The token for `positions`.
pub fn encode(positions: &Positions) -> String {
    let readable = URL_SAFE_NO_PAD.encode(serde_json::json!({"v": 1, "p": positions}).to_string());
    if readable.len() <= MAX_ID_BYTES {
        return readable;
    }
    let mut bytes = vec![2u8];
    for (name, (epoch, seq)) in positions {
        let mut entry = Vec::with_capacity(24);
        entry.extend_from_slice(&name_hash(name));
        match own_epoch(epoch) {
            Some(raw) => {
                entry.push(0);
                entry.extend_from_slice(&raw);
            }
            None => match u8::try_from(epoch.len()) {
                Ok(len) if len > 0 => {
                    entry.push(len);
                    entry.extend_from_slice(epoch.as_bytes());
                }
                // An epoch this server never makes: the channel resumes without `since`.
                _ => continue,
            },
        }
        leb128(&mut entry, *seq);
        if 2 + base64_len(bytes.len() + entry.len()) > MAX_ID_BYTES {
            break;
        }
        bytes.extend_from_slice(&entry);
    }
    format!("2.{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Decodes a token; `None` when it cannot be read (SSE-14).
pub fn decode(token: &str) -> Option<Resume> {
    let token = token.trim();
    if let Some(compact) = token.strip_prefix("2.") {
        return decode_compact(&URL_SAFE_NO_PAD.decode(compact).ok()?).map(Resume::Hashed);
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    // Typed, not through `serde_json::Value`: with serde_json's `raw_value` feature (which
    // axum turns on) a `Value` map whose first key is `$serde_json::private::RawValue` is
    // read as embedded raw JSON, so a token that `encode` wrote for such a name would not
    // decode (found by the `resume` fuzz target, fuzz/regressions/resume/).
    let readable: Readable = serde_json::from_slice(&bytes).ok()?;
    (readable.v == 1).then_some(Resume::Named(readable.p))
}

/// The readable token's JSON: `{"v":1,"p":{...}}` (other members are ignored).
#[derive(serde::Deserialize)]
struct Readable {
    v: u64,
    p: Positions,
}

fn decode_compact(bytes: &[u8]) -> Option<Vec<([u8; 4], String, u64)>> {
    let (&version, mut rest) = bytes.split_first()?;
    if version != 2 {
        return None;
    }
    let mut entries = Vec::new();
    while !rest.is_empty() {
        let hash: [u8; 4] = rest.get(..4)?.try_into().ok()?;
        let tag = *rest.get(4)?;
        rest = &rest[5..];
        let epoch = if tag == 0 {
            let raw = rest.get(..8)?;
            rest = &rest[8..];
            let mut hex = String::from("e-");
            for b in raw {
                hex.push_str(&format!("{b:02x}"));
            }
            hex
        } else {
            let raw = rest.get(..usize::from(tag))?;
            rest = &rest[usize::from(tag)..];
            String::from_utf8(raw.to_vec()).ok()?
        };
        let (seq, used) = read_leb128(rest)?;
        rest = &rest[used..];
        entries.push((hash, epoch, seq));
    }
    Some(entries)
}

fn name_hash(name: &str) -> [u8; 4] {
    let digest = Sha256::digest(name.as_bytes());
    [digest[0], digest[1], digest[2], digest[3]]
}

/// The 8 bytes of an epoch of this server's own form, `e-` and 16 lowercase hex digits.
fn own_epoch(epoch: &str) -> Option<[u8; 8]> {
    let hex = epoch.strip_prefix("e-")?;
    if hex.len() != 16 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; 8];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn leb128(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn read_leb128(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, b) in bytes.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

fn base64_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_streams_keep_the_readable_form() {
        let mut positions = Positions::new();
        positions.insert("notifications".into(), ("e-1a2b".into(), 314));
        positions.insert("resource:post".into(), ("e-c0de".into(), 20));
        let token = encode(&positions);
        assert!(token.bytes().all(|b| b.is_ascii_graphic()));
        assert_eq!(decode(&token), Some(Resume::Named(positions)));
    }

    #[test]
    fn the_spec_example_token_decodes() {
        let token = "eyJ2IjoxLCJwIjp7Im5vdGlmaWNhdGlvbnMiOlsiZS0xYTJiIiwzMTRdfX0";
        let resume = decode(token).unwrap();
        assert_eq!(
            resume.position("notifications"),
            Some(("e-1a2b".to_owned(), 314))
        );
    }

    fn many_long_channels(n: usize) -> Positions {
        (0..n)
            .map(|i| {
                let name = format!("c-{i:03}-{}", "x".repeat(194));
                let epoch = format!(
                    "e-{:016x}",
                    0x0123_4567_89ab_cdefu64.wrapping_mul(i as u64 + 1)
                );
                (name, (epoch, (i as u64) * 1_000_003))
            })
            .collect()
    }

    #[test]
    fn a_hundred_channels_of_200_characters_fit_sse_8_and_round_trip() {
        let positions = many_long_channels(100);
        let token = encode(&positions);
        assert!(token.len() <= MAX_ID_BYTES, "{} bytes", token.len());
        assert!(token.bytes().all(|b| b.is_ascii_graphic()));
        let resume = decode(&token).unwrap();
        for (name, position) in &positions {
            assert_eq!(resume.position(name).as_ref(), Some(position), "{name}");
        }
        assert_eq!(resume.position("not-in-the-stream"), None);
    }

    #[test]
    fn what_does_not_fit_is_left_out_never_the_bound() {
        let positions = many_long_channels(400);
        let token = encode(&positions);
        assert!(token.len() <= MAX_ID_BYTES, "{} bytes", token.len());
        let resume = decode(&token).unwrap();
        let kept = positions
            .iter()
            .filter(|(name, position)| resume.position(name).as_ref() == Some(position))
            .count();
        assert!(kept > 100 && kept < 400, "kept {kept}");
    }

    #[test]
    fn foreign_epochs_are_kept_verbatim() {
        let mut positions = many_long_channels(30);
        positions.insert("odd".into(), ("epoch-from-elsewhere".into(), 7));
        let resume = decode(&encode(&positions)).unwrap();
        assert_eq!(
            resume.position("odd"),
            Some(("epoch-from-elsewhere".to_owned(), 7))
        );
    }

    proptest::proptest! {
        /// Any bytes a client sends back as a token decode or are refused, never panic.
        #[test]
        fn arbitrary_compact_tokens_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = decode(&format!("2.{}", URL_SAFE_NO_PAD.encode(&bytes)));
            let mut versioned = vec![2u8];
            versioned.extend(bytes);
            let _ = decode(&format!("2.{}", URL_SAFE_NO_PAD.encode(&versioned)));
        }
    }

    #[test]
    fn a_name_that_serde_json_reserves_round_trips() {
        let mut positions = Positions::new();
        positions.insert("$serde_json::private::RawValue".into(), (String::new(), 7));
        let token = encode(&positions);
        assert_eq!(decode(&token), Some(Resume::Named(positions)));
    }

    #[test]
    fn unreadable_tokens_are_none() {
        assert_eq!(decode("%%%"), None);
        assert_eq!(decode("2.%%%"), None);
        // A truncated compact token.
        assert_eq!(
            decode(&format!("2.{}", URL_SAFE_NO_PAD.encode([2u8, 1, 2]))),
            None
        );
        assert_eq!(decode(&URL_SAFE_NO_PAD.encode(r#"{"v":9,"p":{}}"#)), None);
    }
}
