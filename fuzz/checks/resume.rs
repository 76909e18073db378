//! Checks of the SSE resume token (target `resume`), shared by the fuzz target and the
//! corpus replay test.
//!
//! Two readings of the same bytes: as a token a client sends back in `Last-Event-ID`
//! (decoded or refused, never a panic, SSE-14), and as positions the server encodes
//! (within SSE-8, and decoding back to the same position or to none, SSE-7/SSE-13).

use arbitrary::{Arbitrary, Unstructured};
use chorus_server::net::resume::{decode, encode, Positions, Resume, MAX_ID_BYTES};

pub fn resume(data: &[u8]) {
    let token = String::from_utf8_lossy(data);
    if let Some(resume) = decode(&token) {
        decoded(&resume);
    }
    if let Ok(positions) = Positions::arbitrary_take_rest(Unstructured::new(data)) {
        round_trip(&positions);
    }
}

/// A readable token the server accepted yields positions that it encodes again and reads
/// back. A compact one holds name hashes only: the server looks channels up in it.
fn decoded(resume: &Resume) {
    match resume {
        Resume::Named(positions) => round_trip(positions),
        Resume::Hashed(_) => {
            let _ = resume.position("chat");
        }
    }
}

/// SSE-8: the id is at most 4096 printable ASCII bytes; every channel it keeps decodes to
/// its own position; a readable token keeps every channel.
fn round_trip(positions: &Positions) {
    let token = encode(positions);
    assert!(token.len() <= MAX_ID_BYTES, "{} bytes", token.len());
    assert!(
        token.bytes().all(|b| b.is_ascii_graphic()),
        "token {token:?} is not printable ASCII"
    );
    let back = decode(&token)
        .unwrap_or_else(|| panic!("token {token:?} of {positions:?} does not decode"));
    match &back {
        Resume::Named(named) => assert_eq!(named, positions, "readable token {token}"),
        Resume::Hashed(entries) => {
            assert!(entries.len() <= positions.len());
            for (name, position) in positions {
                if let Some(got) = back.position(name) {
                    assert_eq!(&got, position, "channel {name:?} in compact token {token}");
                }
            }
        }
    }
}
