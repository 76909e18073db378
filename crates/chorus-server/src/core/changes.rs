//! The resource API and the `data_change` frames its writes produce (spec: changes.md,
//! http.md "Resource API").

use std::sync::Arc;

use chorus_protocol::http::ResourceRecord;
use chorus_protocol::{ChannelName, DataChange, Millis, Operation, StreamItem};

use super::faults::Fault;
use super::{
    Core, CoreError, Effect, Engine, Outbox, ResourceFound, ResourceOp, ResourceRead,
    ResourceWritten,
};

/// Longest resource name and record id (changes.md "Names").
const MAX_RESOURCE_CHARS: usize = 64;
const MAX_RECORD_ID_CHARS: usize = 128;

impl<E: Engine> Core<E> {
    /// A write of the resource API: committed first (CHG-3, HTTP-34), then one
    /// `data_change` on `resource:{name}` and one on `resource:{name}:{id}` (CHG-21), each taking
    /// the next `seq` of its channel and retained for recovery.
    pub fn resource_write(
        &mut self,
        tenant: &str,
        op: ResourceOp,
        now: Millis,
    ) -> Result<(ResourceWritten, Vec<Effect>), CoreError> {
        let (operation, resource, record) = match op {
            ResourceOp::Create { resource, id, data } => {
                check_resource(&resource)?;
                let id = create_id(id, &data)?;
                let data = with_id(data, &id)?;
                let exists = self.engine.record(tenant, &resource, &id)?.is_some();
                if exists && !self.fault(Fault::ConflictOverwrites) {
                    return Err(CoreError::Exists(format!("{resource}/{id}"))); // HTTP-26
                }
                self.engine
                    .put_record(tenant, &resource, &id, &data, !exists)?;
                (Operation::Create, resource, ResourceRecord { id, data })
            }
            ResourceOp::Replace { resource, id, data } => {
                let data = with_id(data, &id)?;
                let missing = match self.existing(tenant, &resource, &id) {
                    Err(CoreError::NotFound(_)) if self.fault(Fault::PutCreates) => true,
                    found => found.map(|_| false)?,
                };
                self.engine
                    .put_record(tenant, &resource, &id, &data, missing)?; // HTTP-30
                (Operation::Update, resource, ResourceRecord { id, data })
            }
            ResourceOp::Patch { resource, id, data } => {
                let patch = with_id(data, &id)?;
                let mut merged = self.existing(tenant, &resource, &id)?;
                if let (Some(m), Some(p)) = (merged.as_object_mut(), patch.as_object()) {
                    m.extend(p.iter().map(|(k, v)| (k.clone(), v.clone()))); // HTTP-31
                    if self.fault(Fault::PatchNullDeletes) {
                        m.retain(|_, v| !v.is_null());
                    }
                }
                self.engine
                    .put_record(tenant, &resource, &id, &merged, false)?;
                (
                    Operation::Update,
                    resource,
                    ResourceRecord { id, data: merged },
                )
            }
            ResourceOp::Delete { resource, id } => {
                let mut data = self.existing(tenant, &resource, &id)?;
                self.engine.delete_record(tenant, &resource, &id)?; // HTTP-33
                if self.fault(Fault::DeleteAnswersEmpty) {
                    data = serde_json::json!({});
                }
                (Operation::Delete, resource, ResourceRecord { id, data })
            }
        };
        let created = operation == Operation::Create;
        let (effects, _) = self.announce_change(tenant, operation, &resource, &record, now)?;
        Ok((ResourceWritten { created, record }, effects))
    }

    /// A read of the resource API (HTTP-28, HTTP-29).
    pub fn resource_read(
        &self,
        tenant: &str,
        read: ResourceRead,
    ) -> Result<ResourceFound, CoreError> {
        match read {
            ResourceRead::List {
                resource,
                limit,
                after,
            } => {
                check_resource(&resource)?;
                let page = self
                    .engine
                    .records(tenant, &resource, after.as_deref(), limit)?;
                let records = page
                    .records
                    .into_iter()
                    .map(|(id, data)| ResourceRecord { id, data })
                    .collect();
                Ok(ResourceFound::List {
                    resource,
                    records,
                    has_more: page.has_more,
                })
            }
            ResourceRead::Get { resource, id } => {
                let data = self.existing(tenant, &resource, &id)?;
                Ok(ResourceFound::Record(ResourceRecord { id, data }))
            }
        }
    }

    /// The record, or `not_found` (HTTP-29).
    fn existing(
        &self,
        tenant: &str,
        resource: &str,
        id: &str,
    ) -> Result<serde_json::Value, CoreError> {
        check_resource(resource)?;
        check_record_id(id)?;
        self.engine
            .record(tenant, resource, id)?
            .ok_or_else(|| CoreError::NotFound(format!("{resource}/{id}")))
    }

    /// The two `data_change` frames of one committed change (CHG-1, CHG-8, CHG-11), and
    /// the `seq` each took (feed first).
    pub(super) fn announce_change(
        &mut self,
        tenant: &str,
        operation: Operation,
        resource: &str,
        record: &ResourceRecord,
        now: Millis,
    ) -> Result<(Vec<Effect>, Vec<u64>), CoreError> {
        let tenant: Arc<str> = Arc::from(tenant);
        let mut channels = vec![ChannelName::resource_feed(resource)];
        if !self.fault(Fault::DataChangeMissingRecordChannel) {
            channels.push(ChannelName::record(resource, &record.id));
        }
        if self.fault(Fault::RecordChannelUnprefixed) {
            channels.push(ChannelName::from(
                format!("{resource}:{}", record.id).as_str(),
            ));
        }
        let mut out = Outbox::default();
        let mut seqs = Vec::with_capacity(2);
        for channel in channels {
            let key = self.key(&tenant, &channel);
            let (seq, frame) = self.engine.append(&key, &mut |seq| {
                StreamItem::DataChange(DataChange {
                    channel: channel.clone(),
                    operation,
                    resource: resource.to_owned(),
                    record_id: record.id.clone(),
                    data: record.data.clone(),
                    ts: now,
                    seq,
                })
            })?;
            seqs.push(seq);
            self.fan_out(&key, &frame, None, &mut out);
        }
        Ok((out.effects, seqs))
    }
}

/// Whether `name` is a valid resource name (changes.md "Names").
pub fn is_resource_name(name: &str) -> bool {
    check_resource(name).is_ok()
}

/// Whether `id` is a valid record id (changes.md "Names").
pub fn is_record_id(id: &str) -> bool {
    check_record_id(id).is_ok()
}

/// `[A-Za-z0-9_-]{1,64}`, never `resource` (HTTP-27).
pub(super) fn check_resource(name: &str) -> Result<(), CoreError> {
    let ok = (1..=MAX_RESOURCE_CHARS).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && name != "resource";
    ok.then_some(())
        .ok_or_else(|| CoreError::InvalidMessage(format!("bad resource name {name:?}")))
}

/// `[A-Za-z0-9_\-.@=]{1,128}` (HTTP-27).
pub(super) fn check_record_id(id: &str) -> Result<(), CoreError> {
    let ok = (1..=MAX_RECORD_ID_CHARS).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.@=".contains(&b));
    ok.then_some(())
        .ok_or_else(|| CoreError::InvalidMessage(format!("bad record id {id:?}")))
}

/// The id of a new record: given, or the body's `id`, or generated (HTTP-25).
fn create_id(id: Option<String>, data: &serde_json::Value) -> Result<String, CoreError> {
    let body_id = match data.get("id") {
        None => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(CoreError::InvalidMessage(
                "record id must be a string".into(),
            ))
        }
    };
    let id = id
        .or(body_id)
        .unwrap_or_else(|| format!("r-{:012x}", rand::random::<u64>() >> 16));
    check_record_id(&id)?;
    Ok(id)
}

/// The body as stored: an object whose `id` is the record id (CHG-6, HTTP-27, HTTP-32).
pub(super) fn with_id(data: serde_json::Value, id: &str) -> Result<serde_json::Value, CoreError> {
    let serde_json::Value::Object(mut map) = data else {
        return Err(CoreError::InvalidMessage(
            "a record must be a JSON object".into(),
        ));
    };
    match map.get("id") {
        Some(serde_json::Value::String(s)) if s == id => {}
        None => {}
        Some(_) => {
            return Err(CoreError::InvalidMessage(
                "the body's id differs from the record id".into(),
            ))
        }
    }
    check_record_id(id)?;
    map.insert("id".into(), serde_json::Value::String(id.to_owned()));
    Ok(serde_json::Value::Object(map))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testkit::{without, Driver, T0};
    use super::super::{ResourceFound, ResourceOp, ResourceRead};

    fn write(d: &mut Driver, tenant: &str, op: ResourceOp) -> super::ResourceRecord {
        let (written, effects) = d.core.resource_write(tenant, op, d.now).unwrap();
        d.route(effects);
        written.record
    }

    #[test]
    fn a_change_reaches_the_feed_and_the_record_channel() {
        let mut d = Driver::new();
        let (f, r, o) = (d.connect("feed"), d.connect("rec"), d.connect("other"));
        d.subscribe(f, "resource:post");
        d.subscribe(r, "resource:post:p1");
        d.subscribe(o, "post:p1");
        let rec = write(
            &mut d,
            "",
            ResourceOp::Create {
                resource: "post".into(),
                id: None,
                data: json!({"id": "p1", "title": "Hello"}),
            },
        );
        assert_eq!(rec.data, json!({"id": "p1", "title": "Hello"}));
        let change = |ch: &str, seq: u64| {
            json!({"type": "data_change", "channel": ch,
            "operation": "create", "resource": "post", "record_id": "p1",
            "data": {"id": "p1", "title": "Hello"}, "ts": T0, "seq": seq})
        };
        assert_eq!(d.frames(f), vec![change("resource:post", 1)]);
        assert_eq!(d.frames(r), vec![change("resource:post:p1", 1)]);
        d.assert_silent(o); // CHG-23: an ordinary channel, whatever resources exist
    }

    #[test]
    fn update_patch_and_delete_carry_the_whole_record() {
        let mut d = Driver::new();
        let f = d.connect("feed");
        d.subscribe(f, "resource:post");
        write(
            &mut d,
            "",
            ResourceOp::Create {
                resource: "post".into(),
                id: Some("p".into()),
                data: json!({"a": 1, "b": 1}),
            },
        );
        write(
            &mut d,
            "",
            ResourceOp::Patch {
                resource: "post".into(),
                id: "p".into(),
                data: json!({"b": null}),
            },
        );
        write(
            &mut d,
            "",
            ResourceOp::Replace {
                resource: "post".into(),
                id: "p".into(),
                data: json!({"c": 3}),
            },
        );
        write(
            &mut d,
            "",
            ResourceOp::Delete {
                resource: "post".into(),
                id: "p".into(),
            },
        );
        let got: Vec<_> = d
            .frames(f)
            .into_iter()
            .map(|m| (m["operation"].clone(), m["data"].clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (json!("create"), json!({"id": "p", "a": 1, "b": 1})),
                (json!("update"), json!({"id": "p", "a": 1, "b": null})),
                (json!("update"), json!({"id": "p", "c": 3})),
                (json!("delete"), json!({"id": "p", "c": 3})),
            ]
        );
        let e = d.core.resource_read(
            "",
            ResourceRead::Get {
                resource: "post".into(),
                id: "p".into(),
            },
        );
        assert_eq!(e.unwrap_err().code(), chorus_protocol::ErrorCode::NotFound);
    }

    #[test]
    fn failed_writes_send_nothing() {
        let mut d = Driver::new();
        let f = d.connect("feed");
        d.subscribe(f, "resource:post");
        write(
            &mut d,
            "",
            ResourceOp::Create {
                resource: "post".into(),
                id: Some("p".into()),
                data: json!({}),
            },
        );
        d.frames(f);
        let bad = [
            ResourceOp::Create {
                resource: "post".into(),
                id: Some("p".into()),
                data: json!({}),
            },
            ResourceOp::Create {
                resource: "resource".into(),
                id: None,
                data: json!({}),
            },
            ResourceOp::Create {
                resource: "post".into(),
                id: None,
                data: json!([1]),
            },
            ResourceOp::Replace {
                resource: "post".into(),
                id: "nope".into(),
                data: json!({}),
            },
            ResourceOp::Replace {
                resource: "post".into(),
                id: "p".into(),
                data: json!({"id": "q"}),
            },
            ResourceOp::Delete {
                resource: "post".into(),
                id: "a b".into(),
            },
        ];
        let codes: Vec<_> = bad
            .into_iter()
            .map(|op| {
                d.core
                    .resource_write("", op, T0)
                    .unwrap_err()
                    .code()
                    .as_str()
            })
            .collect();
        assert_eq!(
            codes,
            [
                "conflict",
                "invalid_message",
                "invalid_message",
                "not_found",
                "invalid_message",
                "invalid_message"
            ]
        );
        d.assert_silent(f);
    }

    #[test]
    fn changes_stay_in_their_tenant_and_are_recoverable() {
        let mut d = Driver::new();
        let other = d.connect_session(super::super::testkit::session("o", "other"));
        d.subscribe(other, "resource:post");
        let f = d.connect("feed");
        let epoch = d.subscribe(f, "resource:post")["position"]["epoch"].clone();
        d.disconnect(f, false);
        write(
            &mut d,
            "",
            ResourceOp::Create {
                resource: "post".into(),
                id: None,
                data: json!({"t": 1}),
            },
        );
        d.assert_silent(other);
        let f = d.connect("feed");
        let got = d.ask(f, json!({"type": "subscribe", "channel": "resource:post", "since": {"epoch": epoch, "seq": 0}}));
        assert_eq!(got[0]["recovered"], true);
        assert_eq!(
            without(got[1].clone(), &["record_id", "data"])["operation"],
            "create"
        );
        let ResourceFound::List {
            records, has_more, ..
        } = d
            .core
            .resource_read(
                "",
                ResourceRead::List {
                    resource: "post".into(),
                    limit: 10,
                    after: None,
                },
            )
            .unwrap()
        else {
            panic!("list expected");
        };
        assert_eq!((records.len(), has_more), (1, false));
    }
}
