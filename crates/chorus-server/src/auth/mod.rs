//! Connection identity: JWT verification into a core [`Session`] (spec: connection.md,
//! CONN-1..5, CONN-11, CONN-15/16, CONN-26..28), with the keys of [`keys`].

pub mod keys;

use axum::http::HeaderMap;
use chorus_protocol::{CloseCode, Millis, Rights};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::core::Session;
pub use keys::{KeyError, KeySet};

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    /// No token, outside development mode (CONN-4).
    #[error("no token: pass ?token= or Authorization: Bearer")]
    Missing,
    /// Not a JWS compact token, bad signature or wrong algorithm (CONN-2).
    #[error("invalid token: {0}")]
    Invalid(String),
    /// A claim is missing or has the wrong JSON type (CONN-3a, CONN-3b).
    #[error("invalid claims: {0}")]
    Claims(String),
    /// `exp` is at or before now (CONN-5).
    #[error("token expired")]
    Expired,
}

impl AuthError {
    /// The close code a WebSocket gets for this refusal: 4100 for an expired token (the
    /// credentials are only old), 4001 otherwise.
    pub fn close_code(&self) -> CloseCode {
        match self {
            AuthError::Expired => CloseCode::TokenExpired,
            _ => CloseCode::Unauthorized,
        }
    }
}

/// Verifies tokens with the configured keys; in development mode also admits anonymous
/// connections.
#[derive(Clone)]
pub struct Authenticator {
    keys: KeySet,
    dev: bool,
    /// The `rights_claim_unchecked` fault: a malformed `rights` claim is dropped, not refused.
    drop_bad_rights: bool,
    near_miss_signatures: bool,
    /// The `fractional_exp_refused` fault: an `exp` with a fraction is an invalid claim.
    refuse_fractional_exp: bool,
    /// `limits.max_profile_bytes` (CONN-25); `None` checks no size.
    max_profile_bytes: Option<u64>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("keys", &self.keys)
            .field("dev", &self.dev)
            .finish()
    }
}

impl Authenticator {
    /// `secret`: the HS256 key. `dev`: accept missing tokens as anonymous users, and, when no
    /// secret is configured, tokens whose signature cannot be checked.
    pub fn new(secret: Option<&str>, dev: bool) -> Authenticator {
        Authenticator::with_keys(KeySet::secrets(secret), dev)
    }

    /// Verifies with `keys` (no key and `dev`: signatures cannot be checked, claims are).
    pub fn with_keys(keys: KeySet, dev: bool) -> Authenticator {
        Authenticator {
            keys,
            dev,
            drop_bad_rights: false,
            near_miss_signatures: false,
            refuse_fractional_exp: false,
            max_profile_bytes: None,
        }
    }

    /// The key set of `config`: `jwt_secret`, then `jwt_previous_secret`, then
    /// `jwt_public_key`, with `jwt_issuer` and `jwt_audience`.
    pub fn keys_of(config: &crate::config::Config) -> Result<KeySet, KeyError> {
        let secrets = config
            .jwt_secret
            .iter()
            .chain(&config.jwt_previous_secret)
            .map(String::as_str);
        let mut keys = KeySet::secrets(secrets)
            .with_issuer(config.jwt_issuer.clone())
            .with_audience(config.jwt_audience.clone());
        for spec in &config.jwt_public_key {
            keys = keys.with_public_key(spec)?;
        }
        Ok(keys)
    }

    /// CONN-23 broken on purpose (the `rights_claim_unchecked` fault): a token whose `rights`
    /// claim is malformed is accepted as if it had none.
    pub fn dropping_bad_rights(mut self) -> Authenticator {
        self.drop_bad_rights = true;
        self
    }

    /// CONN-4 broken on purpose (the `signature_last_char_ignored` fault): a signature that
    /// is right but for its last character is accepted.
    pub fn accepting_near_miss_signatures(mut self) -> Authenticator {
        self.near_miss_signatures = true;
        self
    }

    /// Tokens whose `profile` is larger than `max` bytes of compact JSON are invalid (CONN-25).
    pub fn with_max_profile_bytes(mut self, max: u64) -> Authenticator {
        self.max_profile_bytes = Some(max);
        self
    }

    /// CONN-24 broken on purpose (the `fractional_exp_refused` fault): an `exp` with a
    /// fraction, which RFC 7519 allows, makes the token invalid.
    pub fn refusing_fractional_exp(mut self) -> Authenticator {
        self.refuse_fractional_exp = true;
        self
    }

    /// Whether anonymous connections are accepted.
    pub fn dev(&self) -> bool {
        self.dev
    }

    /// Verifies the token of a new connection; `None` means none was presented.
    pub fn authenticate(&self, token: Option<&str>, now: Millis) -> Result<Session, AuthError> {
        match token {
            Some(token) => self.verify(token, now),
            None if self.dev => Ok(anonymous_session()),
            None => Err(AuthError::Missing),
        }
    }

    /// Verifies one token (also used by `auth:refresh` and `/api/publish`).
    pub fn verify(&self, token: &str, now: Millis) -> Result<Session, AuthError> {
        let mut claims = self.decode(token)?;
        if self.drop_bad_rights {
            if let Some(r) = claims.get("rights") {
                if serde_json::from_value::<Rights>(r.clone()).is_err() {
                    claims.remove("rights");
                }
            }
        }
        let fractional = claims.get("exp").is_some_and(|e| e.is_f64());
        if self.refuse_fractional_exp && fractional {
            return Err(AuthError::Claims("exp must be an integer".into()));
        }
        let session = session_from_claims(claims)?;
        let profile_bytes = crate::core::json_bytes(&session.profile);
        if self
            .max_profile_bytes
            .is_some_and(|max| profile_bytes > max)
        {
            return Err(AuthError::Claims(format!(
                "profile is {profile_bytes} bytes, above max_profile_bytes"
            )));
        }
        match session.expires_at {
            Some(at) if at <= now => Err(AuthError::Expired),
            _ => Ok(session),
        }
    }

    fn decode(&self, token: &str) -> Result<Map<String, Value>, AuthError> {
        if self.keys.is_empty() {
            // Development mode without a key: the signature cannot be checked; the claims
            // still are.
            return if self.dev {
                jsonwebtoken::dangerous::insecure_decode(token)
                    .map(|data| data.claims)
                    .map_err(|e| AuthError::Invalid(e.to_string()))
            } else {
                Err(AuthError::Invalid("no key configured".into()))
            };
        }
        match self.keys.decode(token) {
            Err(_) if self.near_miss_signatures => self.near_miss(token),
            result => result,
        }
    }

    /// The fault's reading: any last character of the signature will do.
    fn near_miss(&self, token: &str) -> Result<Map<String, Value>, AuthError> {
        let cut = token.char_indices().last().map_or(0, |(i, _)| i);
        let stem = &token[..cut];
        const B64URL: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        B64URL
            .chars()
            .find_map(|c| self.keys.decode(&format!("{stem}{c}")).ok())
            .ok_or_else(|| AuthError::Invalid("bad signature".into()))
    }
}

/// Applies CONN-3a and CONN-3b to the raw claims and builds the session.
fn session_from_claims(mut claims: Map<String, Value>) -> Result<Session, AuthError> {
    let user_id = match claims.remove("sub") {
        Some(Value::String(s)) if !s.is_empty() => s,
        _ => return Err(AuthError::Claims("sub must be a non-empty string".into())),
    };
    let profile = match claims.remove("profile") {
        None => Value::Object(Map::new()),
        Some(v @ Value::Object(_)) => v,
        Some(_) => return Err(AuthError::Claims("profile must be an object".into())),
    };
    let tenant = match claims.remove("tenant") {
        None => String::new(),
        Some(Value::String(s)) => s,
        Some(_) => return Err(AuthError::Claims("tenant must be a string".into())),
    };
    let grants = match claims.remove("channels") {
        None => Vec::new(),
        Some(v) => serde_json::from_value::<Vec<String>>(v)
            .map_err(|_| AuthError::Claims("channels must be an array of strings".into()))?,
    };
    let rights = match claims.remove("rights") {
        None => None,
        Some(v) => Some(serde_json::from_value::<Rights>(v).map_err(|_| {
            AuthError::Claims("rights must be an object of arrays of strings".into())
        })?),
    };
    let expires_at = match claims.remove("exp") {
        None => None,
        Some(Value::Number(n)) => Some(exp_millis(&n)?),
        Some(_) => return Err(AuthError::Claims("exp must be a number".into())),
    };
    Ok(Session {
        user_id,
        profile,
        tenant,
        grants,
        rights,
        expires_at,
    })
}

fn exp_millis(n: &serde_json::Number) -> Result<Millis, AuthError> {
    if let Some(secs) = n.as_u64() {
        return Ok(secs.saturating_mul(1000));
    }
    match n.as_f64() {
        Some(secs) if secs >= 0.0 => Ok((secs * 1000.0) as Millis),
        // A negative expiry lies in the past.
        Some(_) => Ok(0),
        None => Err(AuthError::Claims("exp must be a number".into())),
    }
}

/// The identity of a tokenless connection in development mode (CONN-11).
fn anonymous_session() -> Session {
    Session {
        user_id: format!("anon-{:016x}", rand::random::<u64>()),
        profile: Value::Object(Map::new()),
        tenant: String::new(),
        grants: Vec::new(),
        rights: None,
        expires_at: None,
    }
}

/// The token of a request: the `Authorization: Bearer` header wins over the `token` query
/// parameter (CONN-1). A non-Bearer Authorization header counts as an invalid token.
pub fn token_from_request<'a>(
    headers: &'a HeaderMap,
    query_token: Option<&'a str>,
) -> Result<Option<&'a str>, AuthError> {
    match headers.get(axum::http::header::AUTHORIZATION) {
        Some(value) => {
            let value = value
                .to_str()
                .map_err(|_| AuthError::Invalid("Authorization header is not ASCII".into()))?;
            let token = value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .ok_or_else(|| AuthError::Invalid("Authorization is not a Bearer token".into()))?;
            Ok(Some(token.trim()))
        }
        None => Ok(query_token),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    use serde_json::json;

    fn token(secret: &str, claims: Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn auth() -> Authenticator {
        Authenticator::new(Some("s3cret"), false)
    }

    #[test]
    fn valid_token_gives_the_session() {
        let t = token(
            "s3cret",
            json!({"sub":"u1","profile":{"name":"Ann"},"tenant":"acme","channels":["private-team-*"],"exp":1790000000}),
        );
        let s = auth().verify(&t, 1_000).unwrap();
        assert_eq!(s.user_id, "u1");
        assert_eq!(s.profile, json!({"name":"Ann"}));
        assert_eq!(s.tenant, "acme");
        assert_eq!(s.grants, vec!["private-team-*".to_owned()]);
        assert_eq!(s.expires_at, Some(1_790_000_000_000));
    }

    #[test]
    fn defaults_for_absent_claims() {
        let s = auth()
            .verify(&token("s3cret", json!({"sub":"u1"})), 0)
            .unwrap();
        assert_eq!(s.profile, json!({}));
        assert_eq!(s.tenant, "");
        assert!(s.grants.is_empty());
        assert_eq!(s.expires_at, None);
    }

    #[test]
    fn rights_are_read_and_checked() {
        let t = token(
            "s3cret",
            json!({"sub":"u1","rights":{"publish":["chat-*"],"future":1}}),
        );
        let rights = auth().verify(&t, 0).unwrap().rights.unwrap();
        assert_eq!(rights.publish, vec!["chat-*".to_owned()]);
        assert!(rights.subscribe.is_empty());
        for bad in [json!("all"), json!({"state": "*"}), json!({"history": [1]})] {
            let t = token("s3cret", json!({"sub":"u1","rights":bad}));
            assert!(matches!(auth().verify(&t, 0), Err(AuthError::Claims(_))));
        }
    }

    #[test]
    fn wrong_signature_is_invalid() {
        let t = token("other", json!({"sub":"u1"}));
        assert!(matches!(auth().verify(&t, 0), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn garbage_is_invalid() {
        assert!(matches!(
            auth().verify("abc", 0),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn mistyped_claims_are_refused() {
        for claims in [
            json!({}),
            json!({"sub":""}),
            json!({"sub":5}),
            json!({"sub":"u","profile":"x"}),
            json!({"sub":"u","tenant":1}),
            json!({"sub":"u","channels":"private-*"}),
            json!({"sub":"u","exp":"soon"}),
        ] {
            let t = token("s3cret", claims.clone());
            assert!(
                matches!(auth().verify(&t, 0), Err(AuthError::Claims(_))),
                "{claims}"
            );
        }
    }

    #[test]
    fn expiry_is_checked_without_leeway() {
        let t = token("s3cret", json!({"sub":"u1","exp":100}));
        assert!(auth().verify(&t, 99_999).is_ok());
        assert_eq!(auth().verify(&t, 100_000), Err(AuthError::Expired));
        assert_eq!(AuthError::Expired.close_code(), CloseCode::TokenExpired);
        assert_eq!(AuthError::Missing.close_code(), CloseCode::Unauthorized);
    }

    #[test]
    fn missing_token_is_refused_unless_dev() {
        assert_eq!(auth().authenticate(None, 0), Err(AuthError::Missing));
        let dev = Authenticator::new(None, true);
        let s = dev.authenticate(None, 0).unwrap();
        assert!(s.user_id.starts_with("anon-"));
    }

    #[test]
    fn bearer_header_wins_over_query() {
        let mut headers = HeaderMap::new();
        assert_eq!(token_from_request(&headers, Some("q")), Ok(Some("q")));
        headers.insert("authorization", "Bearer h".parse().unwrap());
        assert_eq!(token_from_request(&headers, Some("q")), Ok(Some("h")));
        headers.insert("authorization", "Basic x".parse().unwrap());
        assert!(token_from_request(&headers, Some("q")).is_err());
    }
}
