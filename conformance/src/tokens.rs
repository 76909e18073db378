//! Tokens for the simulated clients: HS256 JWTs minted with `--token-secret`, or asked of
//! an external `--token-cmd` (claims JSON on stdin, token on stdout), per FIXTURES.md
//! "Clients".

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{Map, Value};
use thiserror::Error;
use tokio::io::AsyncWriteExt;

use crate::fixture::ClientSpec;

/// Where minted tokens come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// HS256 with this shared secret.
    Secret(String),
    /// A shell command run per client: claims JSON on stdin, token on stdout.
    Command(String),
    /// No way to mint: only fixtures with literal tokens or no token can run.
    None,
}

/// A token could not be made.
#[derive(Debug, Error)]
pub enum TokenError {
    /// Neither `--token-secret` nor `--token-cmd` was given.
    #[error("no --token-secret or --token-cmd to mint a token for {0:?}")]
    NoSource(String),
    /// Signing failed.
    #[error("cannot sign a token: {0}")]
    Sign(String),
    /// The token command failed.
    #[error("--token-cmd failed for {user:?}: {message}")]
    Command {
        /// The `sub` asked for.
        user: String,
        /// What went wrong.
        message: String,
    },
}

/// Unix seconds now.
pub fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// The claims a client's token carries (placeholders already substituted in `spec`).
pub fn claims(name: &str, spec: &ClientSpec) -> Map<String, Value> {
    let mut c = Map::new();
    c.insert(
        "sub".into(),
        Value::String(spec.user.clone().unwrap_or_else(|| name.to_owned())),
    );
    if let Some(p) = &spec.profile {
        c.insert("profile".into(), p.clone());
    }
    if let Some(t) = &spec.tenant {
        c.insert("tenant".into(), Value::String(t.clone()));
    }
    if let Some(ch) = &spec.channels {
        c.insert("channels".into(), Value::from(ch.clone()));
    }
    if let Some(e) = spec.expires_in_s {
        c.insert("exp".into(), Value::from(now_s() + e));
    }
    c.insert("iat".into(), Value::from(now_s()));
    for (k, v) in spec.claims.iter().flatten() {
        if v.is_null() {
            c.remove(k);
        } else {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

/// HS256-signs claims with a secret.
pub fn sign(claims: &Map<String, Value>, secret: &str) -> Result<String, TokenError> {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| TokenError::Sign(e.to_string()))
}

impl TokenSource {
    /// The token for a client: its literal `token`, or a minted one.
    pub async fn token_for(&self, name: &str, spec: &ClientSpec) -> Result<String, TokenError> {
        if let Some(t) = &spec.token {
            return Ok(t.clone());
        }
        let claims = claims(name, spec);
        if let Some(secret) = &spec.signing_secret {
            return sign(&claims, secret);
        }
        let token = match self {
            TokenSource::Secret(secret) => sign(&claims, secret),
            TokenSource::Command(cmd) => run_command(cmd, &claims).await,
            TokenSource::None => Err(TokenError::NoSource(name.to_owned())),
        }?;
        Ok(if spec.near_miss_signature {
            near_miss_signature(&token)
        } else {
            token
        })
    }
}

/// The token with the last base64url character of its signature changed in its high bit,
/// so the decoded signature differs (a change only in the unused low bits of the last
/// character would decode to the same bytes).
pub fn near_miss_signature(token: &str) -> String {
    const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bytes = token.as_bytes().to_vec();
    if let Some(last) = bytes.last_mut() {
        if let Some(i) = B64URL.iter().position(|c| c == last) {
            *last = B64URL[i ^ 0x20];
        }
    }
    String::from_utf8(bytes).unwrap_or_else(|_| token.to_owned())
}

async fn run_command(cmd: &str, claims: &Map<String, Value>) -> Result<String, TokenError> {
    let user = claims.get("sub").map(|v| v.to_string()).unwrap_or_default();
    let err = |message: String| TokenError::Command {
        user: user.clone(),
        message,
    };
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| err(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        let body = Value::Object(claims.clone()).to_string();
        stdin
            .write_all(body.as_bytes())
            .await
            .map_err(|e| err(e.to_string()))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| err(e.to_string()))?;
    if !out.status.success() {
        return Err(err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if token.is_empty() {
        return Err(err("printed no token".into()));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_default_sub_to_client_name_and_apply_overrides() {
        let spec = ClientSpec {
            tenant: Some("t1".into()),
            claims: Some(
                json!({"sub": 5, "tenant": null})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
            ..Default::default()
        };
        let c = claims("bob", &spec);
        assert_eq!(c["sub"], json!(5));
        assert!(!c.contains_key("tenant"));
        assert_eq!(claims("bob", &ClientSpec::default())["sub"], json!("bob"));
    }

    #[test]
    fn expiry_is_relative_to_now() {
        let spec = ClientSpec {
            expires_in_s: Some(-60),
            ..Default::default()
        };
        let exp = claims("a", &spec)["exp"].as_i64().unwrap();
        assert!(exp < now_s() - 50);
    }

    #[tokio::test]
    async fn minted_token_is_a_three_part_jwt() {
        let t = TokenSource::Secret("s".into())
            .token_for("a", &ClientSpec::default())
            .await
            .unwrap();
        assert_eq!(t.split('.').count(), 3);
    }

    #[tokio::test]
    async fn token_command_gets_claims_on_stdin() {
        let t = TokenSource::Command("tr -d '\\n' | wc -c".into())
            .token_for("a", &ClientSpec::default())
            .await
            .unwrap();
        assert!(t.trim().parse::<u32>().unwrap() > 5);
    }

    #[tokio::test]
    async fn no_source_is_an_error() {
        assert!(TokenSource::None
            .token_for("a", &ClientSpec::default())
            .await
            .is_err());
        let literal = ClientSpec {
            token: Some("x".into()),
            ..Default::default()
        };
        assert_eq!(
            TokenSource::None.token_for("a", &literal).await.unwrap(),
            "x"
        );
    }
}
