//! Room password hashes (ROOM-24): argon2id, a hash made for passwords (salted,
//! memory-hard), in the PHC string format (`$argon2id$v=19$m=...`). Hashes written by
//! earlier versions of the server (`salt$hex(sha256(salt || password))`, ROOM-13) still
//! verify, and are replaced by an argon2id hash at their first successful use, so a
//! persisted room's old hash does not outlive its next join.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What checking a password against a stored hash found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// The password is wrong (or the stored hash unreadable).
    Wrong,
    /// The password is right.
    Right,
    /// The password is right and the stored hash is of the old kind: store a new one.
    RightLegacy,
}

/// Work on a room password that the shell does on a blocking thread, off the core's lock
/// (a memory-hard hash under the lock would stall every other connection), and hands back
/// as a [`Done`] before the `subscribe` it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// Check a joining subscribe's `password` against the room's stored `hash`.
    Check {
        /// The room's stored hash.
        hash: String,
        /// The password given.
        password: String,
    },
    /// Hash the `password` of the room a subscribe creates.
    Hash {
        /// The new room's password.
        password: String,
    },
}

/// What the shell computed for a [`Work`]; the core takes it only for the very hash and
/// password it was computed for, and computes anything else itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// The verdict of [`check`].
    Checked {
        /// The stored hash checked against.
        hash: String,
        /// The password checked.
        password: String,
        /// The verdict.
        checked: Checked,
    },
    /// The result of [`hash`].
    Hashed {
        /// The password hashed.
        password: String,
        /// Its new hash.
        hash: String,
    },
}

impl Work {
    /// Does the work: one memory-hard hash, so on a blocking thread.
    pub fn run(self) -> Done {
        match self {
            Work::Check { hash, password } => {
                let checked = check(&hash, &password);
                Done::Checked {
                    hash,
                    password,
                    checked,
                }
            }
            Work::Hash { password } => Done::Hashed {
                hash: hash(&password),
                password,
            },
        }
    }
}

/// A new argon2id hash of `password` with a random 16-byte salt, at argon2's default
/// parameters (19 MiB, 2 passes, 1 lane: OWASP's recommendation).
pub fn hash(password: &str) -> String {
    let salt = rand::random::<[u8; 16]>();
    // A 16-byte salt is within the PHC salt length bounds, and hashing with the default
    // parameters cannot fail on a valid salt: the empty-string fallback is unreachable and
    // would verify no password.
    SaltString::encode_b64(&salt)
        .ok()
        .and_then(|salt| {
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .ok()
                .map(|h| h.to_string())
        })
        .unwrap_or_default()
}

/// Checks `password` against `stored` (an argon2 PHC string or a legacy salted SHA-256).
pub fn check(stored: &str, password: &str) -> Checked {
    if stored.starts_with("$argon2") {
        let right = PasswordHash::new(stored).is_ok_and(|h| {
            // The parameters and salt come from the stored string.
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        });
        return if right {
            Checked::Right
        } else {
            Checked::Wrong
        };
    }
    match stored.split_once('$') {
        Some((salt, hex))
            if bool::from(
                legacy_digest(salt, password)
                    .as_bytes()
                    .ct_eq(hex.as_bytes()),
            ) =>
        {
            Checked::RightLegacy
        }
        _ => Checked::Wrong,
    }
}

/// The hash of ROOM-13's servers: hex(sha256(salt || password)).
fn legacy_digest(salt: &str, password: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(password.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_hash_is_argon2id_salted_and_verifies_only_its_password() {
        let h = hash("s3cret");
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        assert!(!h.contains("s3cret"));
        assert_eq!(check(&h, "s3cret"), Checked::Right);
        assert_eq!(check(&h, "s3cret!"), Checked::Wrong);
        assert_eq!(check(&h, "s3cre"), Checked::Wrong);
        assert_eq!(check(&h, ""), Checked::Wrong);
        assert_ne!(hash("s3cret"), h, "salted");
    }

    #[test]
    fn a_legacy_hash_verifies_and_asks_for_a_new_one() {
        let salt = "0123456789abcdef0123456789abcdef";
        let old = format!("{salt}${}", legacy_digest(salt, "s3cret"));
        assert_eq!(check(&old, "s3cret"), Checked::RightLegacy);
        assert_eq!(check(&old, "s3cret!"), Checked::Wrong);
        assert_eq!(check(&old, "s3cre"), Checked::Wrong);
    }

    #[test]
    fn unreadable_hashes_verify_nothing() {
        for stored in ["", "$", "no-dollar", "$argon2id$garbage", "salt$"] {
            assert_eq!(check(stored, ""), Checked::Wrong, "{stored:?}");
            assert_eq!(check(stored, "x"), Checked::Wrong, "{stored:?}");
        }
    }
}
