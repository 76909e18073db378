//! The HTTP API end to end (http.md): health, API key, stats, channel users, broadcast,
//! publish, resources with data_change, error bodies.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn body(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn healthz_needs_no_key() {
    let server = start().await;
    let r = http()
        .get(format!("{}/healthz", server.http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(body(r).await, (StatusCode::OK, json!({"status":"ok"})));
}

#[tokio::test]
async fn api_key_is_required() {
    let server = start().await;
    let r = http()
        .get(format!("{}/api/stats", server.http_url()))
        .send()
        .await
        .unwrap();
    let (status, b) = body(r).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(b["error"]["code"], "unauthorized");
    let r = http()
        .get(format!("{}/api/stats", server.http_url()))
        .header("x-api-key", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn stats_count_the_tenants_connections() {
    let server = start().await;
    let mut a = Client::user(&server, "ann").await;
    a.subscribe("chat").await;
    let mut other = Client::connect(&server, &token(json!({"sub":"x","tenant":"globex"}))).await;
    other.subscribe("chat").await;
    let (status, b) = body(
        api(&server, Method::GET, "/api/stats")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(b["connections"], 1, "{b}");
    assert_eq!(b["subscriptions"], 1);
    assert_eq!(
        b["channels"],
        json!([{"name":"chat","subscribers":1,"members":0}])
    );
}

#[tokio::test]
async fn channel_users_lists_members() {
    let server = start().await;
    let mut a = Client::user(&server, "ann").await;
    a.subscribe("presence-doc").await;
    let r = api(
        &server,
        Method::GET,
        "/api/channel/users?channel=presence-doc",
    )
    .send()
    .await
    .unwrap();
    let (status, b) = body(r).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(b["count"], 1);
    assert_eq!(b["users"][0]["user_id"], "ann");
    let r = api(&server, Method::GET, "/api/channel/users")
        .send()
        .await
        .unwrap();
    let (status, b) = body(r).await;
    assert_eq!(
        (status, b["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_message"))
    );
}

#[tokio::test]
async fn server_broadcast_has_no_from() {
    let server = start().await;
    let mut c = Client::user(&server, "ann").await;
    c.subscribe("news").await;
    let r = api(&server, Method::POST, "/api/broadcast")
        .json(&json!({"channel":"news","event":"notice","data":{"m":1}}))
        .send()
        .await
        .unwrap();
    let (status, b) = body(r).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(b["seq"], 1);
    let m = c.recv_type("message").await;
    assert!(m.get("from").is_none(), "{m}");
    assert_eq!(m["seq"], 1);
    assert_eq!(m["ts"], b["ts"]);
}

#[tokio::test]
async fn publish_uses_the_token_identity() {
    let server = start().await;
    let mut c = Client::user(&server, "ann").await;
    c.subscribe("news").await;
    let r = http()
        .post(format!("{}/api/publish", server.http_url()))
        .bearer_auth(user("bob"))
        .json(&json!({"channel":"news","event":"say","data":"hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(c.recv_type("message").await["from"], "bob");
    let r = http()
        .post(format!("{}/api/publish", server.http_url()))
        .json(&json!({"channel":"news","event":"say","data":"hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn publish_to_a_private_channel_needs_a_grant() {
    let server = start().await;
    let r = http()
        .post(format!("{}/api/publish", server.http_url()))
        .bearer_auth(user("bob"))
        .json(&json!({"channel":"private-x","event":"say","data":"hi"}))
        .send()
        .await
        .unwrap();
    let (status, b) = body(r).await;
    assert_eq!(
        (status, b["error"]["code"].clone()),
        (StatusCode::FORBIDDEN, json!("forbidden"))
    );
}

#[tokio::test]
async fn bad_bodies_get_typed_errors() {
    let server = start().await;
    let r = api(&server, Method::POST, "/api/broadcast")
        .body("{nope")
        .send()
        .await
        .unwrap();
    let (status, b) = body(r).await;
    assert_eq!(
        (status, b["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_json"))
    );
    let r = api(&server, Method::POST, "/api/broadcast")
        .json(&json!({"channel":"news","event":"e"}))
        .send()
        .await
        .unwrap();
    let (status, b) = body(r).await;
    assert_eq!(
        (status, b["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_message"))
    );
}

#[tokio::test]
async fn oversize_bodies_are_413() {
    let mut config = test_config();
    config.max_frame_bytes = 2048;
    let server = start_with(config).await;
    let big = json!({"channel":"news","event":"e","data":"x".repeat(3000)});
    let r = api(&server, Method::POST, "/api/broadcast")
        .json(&big)
        .send()
        .await
        .unwrap();
    let (status, b) = body(r).await;
    assert_eq!(
        (status, b["error"]["code"].clone()),
        (StatusCode::PAYLOAD_TOO_LARGE, json!("limit_exceeded"))
    );
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405() {
    let server = start().await;
    let (status, b) = body(
        api(&server, Method::GET, "/api/nothing")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, b["error"]["code"].clone()),
        (StatusCode::NOT_FOUND, json!("not_found"))
    );
    let r = api(&server, Method::DELETE, "/api/stats")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("allow").is_some());
    let (status, b) = body(r).await;
    assert_eq!(
        (status, b["error"]["code"].clone()),
        (StatusCode::METHOD_NOT_ALLOWED, json!("unsupported"))
    );
}

#[tokio::test]
async fn resource_writes_produce_data_change() {
    let server = start().await;
    let mut feed = Client::user(&server, "ann").await;
    feed.subscribe("resource:post").await;
    let r = api(&server, Method::POST, "/api/resources/post")
        .json(&json!({"id":"p1","title":"Hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers().get("location").unwrap(),
        "/api/resources/post/p1"
    );
    let (status, created) = body(r).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["id"], "p1");
    let change = feed.recv_type("data_change").await;
    assert_eq!(change["operation"], "create");
    assert_eq!(change["record_id"], "p1");
    assert_eq!(change["resource"], "post");
    assert_eq!(change["seq"], 1);

    let mut record = Client::user(&server, "bob").await;
    record.subscribe("resource:post:p1").await;
    let r = api(&server, Method::PATCH, "/api/resources/post/p1")
        .json(&json!({"title":"Hi"}))
        .send()
        .await
        .unwrap();
    let (status, patched) = body(r).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(patched["data"]["title"], "Hi");
    assert_eq!(feed.recv_type("data_change").await["operation"], "update");
    assert_eq!(record.recv_type("data_change").await["operation"], "update");

    let (status, got) = body(
        api(&server, Method::GET, "/api/resources/post/p1")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, got["data"]["title"].clone()),
        (StatusCode::OK, json!("Hi"))
    );
    let (status, list) = body(
        api(&server, Method::GET, "/api/resources/post")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["records"].as_array().unwrap().len(), 1);

    let r = api(&server, Method::DELETE, "/api/resources/post/p1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(feed.recv_type("data_change").await["operation"], "delete");
    let r = api(&server, Method::GET, "/api/resources/post/p1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn creating_an_existing_id_is_a_conflict() {
    let server = start().await;
    let create = || api(&server, Method::POST, "/api/resources/post").json(&json!({"id":"p1"}));
    assert_eq!(create().send().await.unwrap().status(), StatusCode::CREATED);
    let (status, b) = body(create().send().await.unwrap()).await;
    assert_eq!(
        (status, b["error"]["code"].clone()),
        (StatusCode::CONFLICT, json!("conflict"))
    );
}

#[tokio::test]
async fn put_with_another_id_is_refused() {
    let server = start().await;
    api(&server, Method::POST, "/api/resources/post")
        .json(&json!({"id":"p1"}))
        .send()
        .await
        .unwrap();
    let r = api(&server, Method::PUT, "/api/resources/post/p1")
        .json(&json!({"id":"p2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn tenants_of_the_api_are_separate() {
    let server = start().await;
    let mut acme = Client::connect(&server, &token(json!({"sub":"u","tenant":"acme"}))).await;
    acme.subscribe("news").await;
    let mut default = Client::user(&server, "v").await;
    default.subscribe("news").await;
    api(&server, Method::POST, "/api/broadcast")
        .header("x-chorus-tenant", "acme")
        .json(&json!({"channel":"news","event":"e","data":1}))
        .send()
        .await
        .unwrap();
    acme.recv_type("message").await;
    default.silence(200).await;
}
