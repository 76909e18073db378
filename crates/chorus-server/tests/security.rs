//! Credentials against the server (spec security.md, connection.md): API keys compared
//! whole, several token keys at once (rotation, RS256/ES256, `kid`), `iss`/`aud` checks,
//! and no database error text in what clients receive.

mod common;

use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn key_file(name: &str) -> String {
    format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(key_file(name)).unwrap()
}

fn signed(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, &claims, key).unwrap()
}

fn hs256(secret: &str, claims: Value) -> String {
    signed(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(secret.as_bytes()),
        claims,
    )
}

fn rs256(private: &str, kid: Option<&str>, claims: Value) -> String {
    let key = EncodingKey::from_rsa_pem(&pem(private)).unwrap();
    signed(Algorithm::RS256, kid, &key, claims)
}

fn es256(claims: Value) -> String {
    let key = EncodingKey::from_ec_pem(&pem("ec-private.pem")).unwrap();
    signed(Algorithm::ES256, None, &key, claims)
}

/// Whether the server accepts `token` (welcome) or refuses it with 4001 (CONN-4).
async fn accepted(server: &chorus_server::RunningServer, token: &str) -> bool {
    let url = format!("{}?token={token}", server.ws_url());
    let mut ws = open(&url, Some("chorus.v1")).await.expect("upgrade");
    match tokio::time::timeout(WAIT, next_json(&mut ws)).await {
        Ok(Ok(frame)) if frame["type"] == "welcome" => true,
        Ok(Err(Some(4001))) => false,
        other => panic!("neither welcome nor 4001: {other:?}"),
    }
}

#[tokio::test]
async fn an_api_key_is_accepted_only_whole() {
    let server = start().await;
    let status = |key: &'static str| {
        let req = http()
            .get(format!("{}/api/stats", server.http_url()))
            .header("x-api-key", key);
        async move { req.send().await.unwrap().status() }
    };
    assert_eq!(status(API_KEY).await, StatusCode::OK);
    // API_KEY is "test-api-key".
    for near in [
        "test-api-ke",
        "t",
        "test-api-kez",
        "uest-api-key",
        "test-api-key2",
        "test-api-keytest-api-key",
        "TEST-API-KEY",
        "test-api-key!",
    ] {
        // (Spaces around a header value are not part of it, RFC 9110 5.5: "test-api-key "
        // is the key itself.)
        assert_eq!(status(near).await, StatusCode::UNAUTHORIZED, "{near:?}");
    }
    server.shutdown().await.unwrap();
}

const OLD_SECRET: &str = "the-previous-secret-still-accepted-0123456789";

#[tokio::test]
async fn tokens_of_the_previous_secret_are_accepted_during_a_rotation() {
    let mut config = test_config();
    config.jwt_previous_secret = vec![OLD_SECRET.to_owned()];
    let server = start_with(config).await;
    let claims = json!({"sub": "ann"});
    assert!(accepted(&server, &hs256(SECRET, claims.clone())).await);
    assert!(
        accepted(&server, &hs256(OLD_SECRET, claims.clone())).await,
        "CONN-26"
    );
    let unknown = "a-secret-the-server-has-never-heard-of-0123456789";
    assert!(!accepted(&server, &hs256(unknown, claims)).await);
    server.shutdown().await.unwrap();

    // Once the old secret is dropped from the configuration its tokens are refused.
    let server = start().await;
    assert!(!accepted(&server, &hs256(OLD_SECRET, json!({"sub": "ann"}))).await);
    server.shutdown().await.unwrap();
}

/// A server with the RSA key named `a`, the other RSA key named `b`, and the EC key.
async fn public_key_server() -> chorus_server::RunningServer {
    let mut config = test_config();
    config.jwt_public_key = vec![
        format!("a={}", key_file("rsa-public.pem")),
        format!("b={}", key_file("rsa-other-public.pem")),
        key_file("ec-public.pem"),
    ];
    start_with(config).await
}

#[tokio::test]
async fn rs256_and_es256_tokens_verify_with_the_configured_public_keys() {
    let server = public_key_server().await;
    let claims = json!({"sub": "ann"});
    assert!(
        accepted(
            &server,
            &rs256("rsa-private.pem", Some("a"), claims.clone())
        )
        .await
    );
    assert!(
        accepted(
            &server,
            &rs256("rsa-other-private.pem", Some("b"), claims.clone())
        )
        .await
    );
    // Without a kid (or with one naming no key) every RS256 key is tried.
    assert!(accepted(&server, &rs256("rsa-private.pem", None, claims.clone())).await);
    assert!(
        accepted(
            &server,
            &rs256("rsa-other-private.pem", Some("zz"), claims.clone())
        )
        .await
    );
    assert!(accepted(&server, &es256(claims.clone())).await);
    // The HS256 secret still works beside them.
    assert!(accepted(&server, &hs256(SECRET, claims)).await);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_kid_naming_a_key_verifies_with_that_key_only() {
    let server = public_key_server().await;
    let token = rs256("rsa-private.pem", Some("b"), json!({"sub": "ann"}));
    assert!(
        !accepted(&server, &token).await,
        "CONN-26: signed by a, named b"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_hs256_token_made_with_a_public_key_is_refused() {
    let server = public_key_server().await;
    // The algorithm-confusion attack: the public key's PEM bytes as an HMAC secret.
    let public = String::from_utf8(pem("rsa-public.pem")).unwrap();
    assert!(!accepted(&server, &hs256(&public, json!({"sub": "ann"}))).await);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn issuer_and_audience_are_required_when_configured() {
    let mut config = test_config();
    config.jwt_issuer = Some("https://id.example".to_owned());
    config.jwt_audience = Some("chorus".to_owned());
    let server = start_with(config).await;
    let with = |extra: Value| {
        let mut claims = json!({"sub": "ann"});
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        hs256(SECRET, claims)
    };
    let iss = "https://id.example";
    assert!(accepted(&server, &with(json!({"iss": iss, "aud": "chorus"}))).await);
    assert!(accepted(&server, &with(json!({"iss": iss, "aud": ["x", "chorus"]}))).await);
    for refused in [
        json!({"aud": "chorus"}),
        json!({"iss": "https://id.example.evil", "aud": "chorus"}),
        json!({"iss": "https://id.exampl", "aud": "chorus"}),
        json!({"iss": iss}),
        json!({"iss": iss, "aud": "chorus2"}),
        json!({"iss": iss, "aud": ["x"]}),
    ] {
        assert!(
            !accepted(&server, &with(refused.clone())).await,
            "{refused}"
        );
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn issuer_and_audience_are_free_when_not_configured() {
    let server = start().await;
    let t = hs256(
        SECRET,
        json!({"sub": "ann", "iss": "anyone", "aud": "anything"}),
    );
    assert!(accepted(&server, &t).await);
    server.shutdown().await.unwrap();
}

/// Holds the store's write lock from outside, so every write of the server fails with
/// SQLite's "database is locked".
fn lock_store(dir: &std::path::Path) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(dir.join(chorus_server::store::DB_FILE)).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    db
}

#[tokio::test]
async fn a_store_failure_reaches_clients_without_its_text() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config();
    config.memory = false;
    config.data_dir = dir.path().to_owned();
    let server = start_with(config).await;
    let mut c = Client::user(&server, "ann").await;
    c.subscribe("chat").await;
    let lock = lock_store(dir.path());

    let r = api(&server, Method::POST, "/api/resources/post")
        .json(&json!({"id": "p1", "title": "t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": {"code": "internal", "message": "internal error"}}),
        "SEC-13"
    );

    let reply = c
        .request(
            json!({"type": "state:update", "id": 1, "channel": "chat", "key": "k",
                        "value": 1}),
        )
        .await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["code"], "internal", "{reply}");
    assert_eq!(reply["message"], "internal error", "SEC-13: {reply}");
    drop(lock);
    server.shutdown().await.unwrap();
}
