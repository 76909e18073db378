//! The keys that verify connection tokens (CONN-2, CONN-26, CONN-27, CONN-28): HS256
//! secrets (the current one and earlier ones still accepted while tokens signed with them
//! live: a rotation without downtime) and RS256/ES256 public keys (identity providers
//! sign that way), each optionally named by a `kid`; and the `iss`/`aud` claims checked
//! beside the signature when configured.
//!
//! Only keys of the algorithm the token's header names are tried, so the header never picks
//! the verification method of another key (an HS256 token "signed" with an RSA public
//! key's bytes is invalid: no HS256 key holds them, security.md "Tokens").

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use thiserror::Error;

use super::AuthError;

/// One verification key.
#[derive(Clone)]
struct VerificationKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// A configured public key could not be used.
#[derive(Debug, Error)]
#[error("jwt_public_key {path}: {reason}")]
pub struct KeyError {
    /// The file.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// What verifies tokens: the keys and the expected `iss` and `aud`.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Vec<VerificationKey>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material (SEC-3 in spirit): ids and algorithms only.
        let keys: Vec<_> = self.keys.iter().map(|k| (&k.kid, k.alg)).collect();
        f.debug_struct("KeySet")
            .field("keys", &keys)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl KeySet {
    /// HS256 secrets, in the order they are tried (the current one first).
    pub fn secrets<'a>(secrets: impl IntoIterator<Item = &'a str>) -> KeySet {
        KeySet {
            keys: secrets
                .into_iter()
                .map(|s| VerificationKey {
                    kid: None,
                    alg: Algorithm::HS256,
                    key: DecodingKey::from_secret(s.as_bytes()),
                })
                .collect(),
            ..KeySet::default()
        }
    }

    /// Adds a PEM public key, `[KID=]PATH` (CONN-26): an RSA key verifies RS256, an EC
    /// P-256 key ES256.
    pub fn with_public_key(mut self, spec: &str) -> Result<KeySet, KeyError> {
        let (kid, path) = match spec.split_once('=') {
            Some((kid, path)) if !kid.is_empty() && !kid.contains('/') => {
                (Some(kid.to_owned()), path)
            }
            _ => (None, spec),
        };
        let err = |reason: String| KeyError {
            path: path.to_owned(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let (alg, key) = match DecodingKey::from_ec_pem(&pem) {
            Ok(key) => (Algorithm::ES256, key),
            Err(_) => match DecodingKey::from_rsa_pem(&pem) {
                Ok(key) => (Algorithm::RS256, key),
                Err(e) => {
                    return Err(err(format!(
                        "neither an EC (ES256) nor an RSA (RS256) public key in PEM: {e}"
                    )))
                }
            },
        };
        self.keys.push(VerificationKey { kid, alg, key });
        Ok(self)
    }

    /// Requires `iss` to equal `issuer` (CONN-27).
    pub fn with_issuer(mut self, issuer: Option<String>) -> KeySet {
        self.issuer = issuer;
        self
    }

    /// Requires `aud` to be or contain `audience` (CONN-28).
    pub fn with_audience(mut self, audience: Option<String>) -> KeySet {
        self.audience = audience;
        self
    }

    /// Whether any key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        // Expiry is checked by the caller without leeway (CONN-5, CONN-18) and is optional.
        v.validate_exp = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
            v.required_spec_claims.insert("iss".to_owned());
        }
        if let Some(aud) = &self.audience {
            v.set_audience(&[aud]);
            v.validate_aud = true;
            v.required_spec_claims.insert("aud".to_owned());
        }
        v
    }

    /// The claims of a token whose signature one of the keys verifies (CONN-2, CONN-26)
    /// and whose `iss`/`aud` match (CONN-27, CONN-28).
    pub fn decode(&self, token: &str) -> Result<Map<String, Value>, AuthError> {
        let invalid = |e: jsonwebtoken::errors::Error| AuthError::Invalid(e.to_string());
        let header = jsonwebtoken::decode_header(token).map_err(invalid)?;
        let same_alg: Vec<&VerificationKey> =
            self.keys.iter().filter(|k| k.alg == header.alg).collect();
        if same_alg.is_empty() {
            return Err(AuthError::Invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let named: Vec<&VerificationKey> = same_alg
            .iter()
            .copied()
            .filter(|k| k.kid.is_some() && k.kid == header.kid)
            .collect();
        let candidates = if named.is_empty() { same_alg } else { named };
        let validation = self.validation(header.alg);
        let mut refusal = AuthError::Invalid("no key verifies the signature".into());
        for key in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
                Ok(data) => return Ok(data.claims),
                // Another key may have signed it (a rotation): try the next one.
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => {
                    refusal = invalid(e);
                }
                // The signature verified but a claim is wrong, or the token is malformed.
                Err(e) => return Err(invalid(e)),
            }
        }
        Err(refusal)
    }
}
