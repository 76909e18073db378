//! Connection area end to end: handshake, subprotocol, tokens, welcome, heartbeat, refresh.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn welcome_announces_identity_limits_and_capabilities() {
    let server = start().await;
    let t =
        token(json!({"sub":"u1","profile":{"name":"Ann"},"tenant":"acme","exp": now_secs() + 600}));
    let c = Client::connect(&server, &t).await;
    let w = &c.welcome;
    assert_eq!(w["protocol"], "chorus.v1");
    assert_eq!(w["user"], json!({"id":"u1","profile":{"name":"Ann"}}));
    assert_eq!(w["tenant"], "acme");
    assert_eq!(
        w["heartbeat"],
        json!({"interval_ms":5000,"timeout_ms":10000})
    );
    assert_eq!(w["limits"]["max_frame_bytes"], 1_048_576);
    assert_eq!(w["limits"]["presence_grace_ms"], 300);
    assert!(w["capabilities"]
        .as_array()
        .unwrap()
        .contains(&json!("http_api")));
    assert!(w["connection_id"].as_str().is_some_and(|id| !id.is_empty()));
}

#[tokio::test]
async fn expires_at_is_exp_times_1000() {
    let server = start().await;
    let exp = now_secs() + 600;
    let c = Client::connect(&server, &token(json!({"sub":"u1","exp":exp}))).await;
    assert_eq!(c.welcome["expires_at"], json!(exp * 1000));
}

#[tokio::test]
async fn connection_ids_differ() {
    let server = start().await;
    let a = Client::user(&server, "u1").await;
    let b = Client::user(&server, "u1").await;
    assert_ne!(a.welcome["connection_id"], b.welcome["connection_id"]);
}

#[tokio::test]
async fn ping_gets_pong_with_the_same_id() {
    let server = start().await;
    let mut c = Client::user(&server, "u1").await;
    let pong = c.request(json!({"type":"ping","id":"p-1"})).await;
    assert_eq!(pong["type"], "pong");
    assert_eq!(pong["id"], "p-1");
    assert!(pong["ts"].as_u64().unwrap() > 1_700_000_000_000);
    let pong = c.request(json!({"type":"ping"})).await;
    assert!(pong.get("id").is_none(), "{pong}");
}

#[tokio::test]
async fn chorus_subprotocol_is_selected_when_offered() {
    let server = start().await;
    let url = format!("{}?token={}", server.ws_url(), user("u1"));
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            url.as_str(),
        )
        .unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "mqtt, chorus.v1".parse().unwrap());
    let (_, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(
        response.headers().get("sec-websocket-protocol").unwrap(),
        "chorus.v1"
    );
}

#[tokio::test]
async fn foreign_subprotocols_are_refused_with_400() {
    let server = start().await;
    let url = format!("{}?token={}", server.ws_url(), user("u1"));
    assert!(matches!(
        open(&url, Some("mqtt, v1.stomp")).await,
        Err(Refused::Http(400))
    ));
}

#[tokio::test]
async fn no_subprotocol_is_accepted_as_chorus() {
    let server = start().await;
    let url = format!("{}?token={}", server.ws_url(), user("u1"));
    let mut ws = open(&url, None).await.unwrap();
    assert_eq!(next_json(&mut ws).await.unwrap()["type"], "welcome");
}

#[tokio::test]
async fn missing_token_closes_4001_without_a_frame() {
    let server = start().await;
    assert!(matches!(
        refused(&server.ws_url()).await,
        Refused::Closed(4001)
    ));
}

#[tokio::test]
async fn badly_signed_token_closes_4001() {
    let server = start().await;
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub":"u1"}),
        &jsonwebtoken::EncodingKey::from_secret(b"not-the-server-secret-at-all-000000"),
    )
    .unwrap();
    let url = format!("{}?token={forged}", server.ws_url());
    assert!(matches!(refused(&url).await, Refused::Closed(4001)));
}

#[tokio::test]
async fn expired_token_closes_4100() {
    let server = start().await;
    let t = token(json!({"sub":"u1","exp": now_secs() - 10}));
    let url = format!("{}?token={t}", server.ws_url());
    assert!(matches!(refused(&url).await, Refused::Closed(4100)));
}

#[tokio::test]
async fn bearer_header_authenticates() {
    let server = start().await;
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            server.ws_url().as_str(),
        )
        .unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", user("hdr")).parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let welcome = next_json(&mut ws).await.unwrap();
    assert_eq!(welcome["user"]["id"], "hdr");
}

#[tokio::test]
async fn dev_mode_admits_anonymous_connections() {
    let mut config = test_config();
    config.dev = true;
    let server = start_with(config).await;
    let mut ws = open(&server.ws_url(), Some("chorus.v1")).await.unwrap();
    let welcome = next_json(&mut ws).await.unwrap();
    assert!(welcome["user"]["id"].as_str().unwrap().starts_with("anon-"));
    assert!(welcome.get("expires_at").is_none());
}

#[tokio::test]
async fn silence_closes_with_4300() {
    let mut config = test_config();
    config.heartbeat_interval_ms = 200;
    config.heartbeat_timeout_ms = 400;
    let server = start_with(config).await;
    let mut c = Client::user(&server, "u1").await;
    let started = std::time::Instant::now();
    assert_eq!(c.closed().await, 4300);
    let waited = started.elapsed().as_millis();
    assert!((350..=1500).contains(&waited), "closed after {waited} ms");
}

#[tokio::test]
async fn pings_keep_the_connection_open() {
    let mut config = test_config();
    config.heartbeat_interval_ms = 200;
    config.heartbeat_timeout_ms = 400;
    let server = start_with(config).await;
    let mut c = Client::user(&server, "u1").await;
    for _ in 0..6 {
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        assert_eq!(c.request(json!({"type":"ping"})).await["type"], "pong");
    }
}

#[tokio::test]
async fn token_expiry_during_the_session_closes_4100() {
    let server = start().await;
    let exp = now_secs() + 2;
    let mut c = Client::connect(&server, &token(json!({"sub":"u1","exp":exp}))).await;
    assert_eq!(c.closed().await, 4100);
}

#[tokio::test]
async fn refresh_extends_the_session() {
    let server = start().await;
    let mut c = Client::connect(&server, &token(json!({"sub":"u1","exp":now_secs() + 2}))).await;
    let later = now_secs() + 600;
    let reply = c
        .request(json!({"type":"auth:refresh","id":"r-9","token": token(json!({"sub":"u1","exp":later}))}))
        .await;
    assert_eq!(
        reply,
        json!({"type":"auth:refreshed","id":"r-9","expires_at": later * 1000})
    );
    c.silence(2_500).await;
}

#[tokio::test]
async fn refresh_for_another_user_is_unauthorized() {
    let server = start().await;
    let mut c = Client::user(&server, "u1").await;
    let reply = c
        .request(json!({"type":"auth:refresh","id":"r-1","token": user("u2")}))
        .await;
    assert_eq!(reply["type"], "error");
    assert_eq!(reply["code"], "unauthorized");
    assert_eq!(reply["id"], "r-1");
}

#[tokio::test]
async fn refresh_with_a_bad_token_is_unauthorized() {
    let server = start().await;
    let mut c = Client::user(&server, "u1").await;
    let reply = c
        .request(json!({"type":"auth:refresh","id":2,"token":"garbage"}))
        .await;
    assert_eq!(reply["code"], "unauthorized");
    assert_eq!(reply["id"], 2);
    assert_eq!(c.request(json!({"type":"ping"})).await["type"], "pong");
}

#[tokio::test]
async fn connections_over_capacity_close_4202() {
    let mut config = test_config();
    config.max_connections = 1;
    let server = start_with(config).await;
    let _first = Client::user(&server, "u1").await;
    let url = format!("{}?token={}", server.ws_url(), user("u2"));
    assert!(matches!(refused(&url).await, Refused::Closed(4202)));
}

/// SEC-7: per-user and per-address caps refuse the excess with 4202 and free on close.
#[tokio::test]
async fn per_user_and_per_address_caps_close_4202() {
    let mut config = test_config();
    config.max_connections_per_user = 2;
    config.max_connections_per_address = 3;
    let server = start_with(config).await;
    let ann_url = format!("{}?token={}", server.ws_url(), user("ann"));
    let first = Client::user(&server, "ann").await;
    let _second = Client::user(&server, "ann").await;
    assert!(matches!(refused(&ann_url).await, Refused::Closed(4202)));
    // Another user from the same (loopback) address fills the address's cap.
    let _bob = Client::user(&server, "bob").await;
    let cy_url = format!("{}?token={}", server.ws_url(), user("cy"));
    assert!(matches!(refused(&cy_url).await, Refused::Closed(4202)));
    // A closed connection frees both counts.
    first.close(1000).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match open(&ann_url, Some("chorus.v1")).await {
            Ok(mut ws) => {
                let welcome = next_json(&mut ws).await;
                if welcome.as_ref().is_ok_and(|w| w["type"] == "welcome") {
                    break;
                }
            }
            Err(e) => panic!("{e:?}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cap was not freed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn foreign_origins_are_refused_with_403() {
    let mut config = test_config();
    config.allowed_origins = vec!["https://app.example".into()];
    let server = start_with(config).await;
    let url = format!("{}?token={}", server.ws_url(), user("u1"));
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            url.as_str(),
        )
        .unwrap();
    request
        .headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("expected 403, got {:?}", other.map(|_| ())),
    }
}
