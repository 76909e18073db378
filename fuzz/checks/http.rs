//! Checks of the HTTP API's request bodies (target `http_bodies`), shared by the fuzz target
//! and the corpus replay test.
//!
//! The same bytes are read as each body the API decodes, the way `net::http` does (JSON
//! first, `invalid_json` otherwise; then the typed shape, `invalid_message` otherwise), and
//! every body that decodes is handed to a fresh core through the in-memory driver:
//! `POST /api/publish` and `/api/broadcast` (`PublishRequest`), `POST /api/changes`
//! (`ChangeReport`), and the resource API's record bodies (`POST`, `PUT`, `PATCH`).

use chorus_protocol::http::{ChangeReport, PublishRequest};
use chorus_server::core::testkit::Driver;
use chorus_server::core::{ResourceFound, ResourceOp, ResourceRead};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

pub fn http_bodies(data: &[u8]) {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Some(req) = shaped::<PublishRequest>(&body) {
        publish(req);
    }
    if let Some(report) = shaped::<ChangeReport>(&body) {
        change(report);
    }
    if body.is_object() {
        records(body);
    }
}

/// The typed reading of a body; what decodes serializes back to the same value.
fn shaped<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(
    body: &Value,
) -> Option<T> {
    let typed: T = serde_json::from_value(body.clone()).ok()?;
    let again = serde_json::to_value(&typed).expect("a body serializes");
    let back: T = serde_json::from_value(again.clone())
        .unwrap_or_else(|e| panic!("{typed:?} serializes as {again}, which does not decode: {e}"));
    assert_eq!(back, typed, "re-encoded as {again}");
    Some(typed)
}

/// A watcher subscribed to `channel` when its name is valid, so fan-out frames are routed
/// (and parsed back as server frames) by the driver.
fn driver_watching(channel: &str) -> Driver {
    let mut d = Driver::new();
    let watcher = d.connect("watcher");
    let frame = serde_json::json!({"type": "subscribe", "id": 1, "channel": channel});
    let _ = d.send_text(watcher, &frame.to_string());
    d
}

/// HTTP-38: a retry with the same `message_id` gets the first reply; without one, each
/// publish takes the next `seq`.
fn publish(req: PublishRequest) {
    let mut d = driver_watching(&req.channel.0);
    let now = d.now;
    let Ok((first, effects)) = d.core.server_publish("", req.clone(), None, now) else {
        return;
    };
    d.route(effects);
    assert_eq!(first.channel, req.channel);
    let (second, effects) = d
        .core
        .server_publish("", req.clone(), None, now)
        .unwrap_or_else(|e| panic!("the same publish was accepted, then refused: {e}"));
    d.route(effects);
    if req.message_id.is_some() {
        assert_eq!(second, first, "HTTP-38 retry of {req:?}");
    } else {
        assert_eq!(second.seq, first.seq + 1, "publish of {req:?}");
    }
}

/// CHG-14: a retry with the same `Idempotency-Key` gets the same reply and announces nothing.
fn change(report: ChangeReport) {
    let mut d = driver_watching(&format!("resource:{}", report.resource));
    let now = d.now;
    let Ok((first, effects)) = d.core.report_change("", Some("k-1"), report.clone(), now) else {
        return;
    };
    d.route(effects);
    match d.core.report_change("", Some("k-1"), report.clone(), now) {
        Ok((second, effects)) => {
            assert_eq!(second, first, "CHG-14 retry of {report:?}");
            assert!(
                effects.is_empty(),
                "CHG-14: the retry announced {effects:?}"
            );
        }
        Err(e) => panic!("CHG-14: the retry of {report:?} was refused: {e}"),
    }
}

/// A record body through create, replace, patch and delete; each accepted write reads back
/// as written (HTTP-28 to HTTP-33).
fn records(body: Value) {
    let mut d = driver_watching("resource:posts");
    let resource = "posts".to_owned();
    // The shell takes the body's `id` when it is a string, refuses it when it is another type.
    let id = match body.get("id") {
        None => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(_) => return,
    };
    let create = ResourceOp::Create {
        resource: resource.clone(),
        id,
        data: body.clone(),
    };
    let Some(created) = write(&mut d, create) else {
        return;
    };
    let id = created.id;
    let replace = ResourceOp::Replace {
        resource: resource.clone(),
        id: id.clone(),
        data: body.clone(),
    };
    write(&mut d, replace);
    let patch = ResourceOp::Patch {
        resource: resource.clone(),
        id: id.clone(),
        data: body,
    };
    write(&mut d, patch);
    let delete = ResourceOp::Delete {
        resource: resource.clone(),
        id: id.clone(),
    };
    write(&mut d, delete).expect("an existing record deletes");
    let read = ResourceRead::Get { resource, id };
    assert!(
        d.core.resource_read("", read).is_err(),
        "HTTP-33: deleted record still reads"
    );
}

/// One write; when accepted (and not a delete), the record reads back as the write answered.
fn write(d: &mut Driver, op: ResourceOp) -> Option<chorus_protocol::http::ResourceRecord> {
    let now = d.now;
    let resource = match &op {
        ResourceOp::Create { resource, .. }
        | ResourceOp::Replace { resource, .. }
        | ResourceOp::Patch { resource, .. }
        | ResourceOp::Delete { resource, .. } => resource.clone(),
    };
    let deleting = matches!(op, ResourceOp::Delete { .. });
    let (written, effects) = d.core.resource_write("", op, now).ok()?;
    d.route(effects);
    let record = written.record;
    serde_json::to_string(&record).expect("a record serializes");
    if !deleting {
        let read = ResourceRead::Get {
            resource,
            id: record.id.clone(),
        };
        match d.core.resource_read("", read) {
            Ok(ResourceFound::Record(back)) => assert_eq!(back, record, "read after write"),
            other => panic!("written record {record:?} reads as {other:?}"),
        }
    }
    Some(record)
}
