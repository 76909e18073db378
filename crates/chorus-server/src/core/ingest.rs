//! Changes committed outside the server, in the application's own database (spec:
//! changes.md "Changes reported over HTTP" and "Changes from a database feed"). Both end in
//! the same `data_change` pair as a write of the resource API; what they add is how a
//! repeated change is recognised:
//!
//! - `POST /api/changes` carries an `Idempotency-Key`; the key and the reply are kept
//!   (at least [`CHANGE_KEY_TTL_MS`]) and a retry gets the reply again, emitting nothing
//!   (CHG-13 to CHG-15).
//! - A database feed hands over whole committed transactions with their position in the
//!   database's log, increasing in commit order; the position of the last one applied is
//!   kept, and a transaction at or below it is a replay (CHG-19).
//!
//! Either way the mark is written in the same store transaction as the frames
//! ([`Engine::begin_batch`]), so after a crash both are kept or neither is.

use chorus_protocol::http::{
    ChangeAccepted, ChangeReport, ResourceRecord, MAX_IDEMPOTENCY_KEY_LEN,
};
use chorus_protocol::{Millis, Operation};
use serde::{Deserialize, Serialize};

use super::changes::{check_record_id, check_resource, with_id};
use super::faults::Fault;
use super::{Core, CoreError, Effect, Engine};

/// How long the `Idempotency-Key` of a reported change is remembered (CHG-17).
pub const CHANGE_KEY_TTL_MS: Millis = 24 * 60 * 60 * 1000;

/// The mark source of `POST /api/changes` keys.
const HTTP_SOURCE: &str = "http";
/// The mark key of a feed's position.
const POSITION_KEY: &str = "position";
/// Expired keys are swept at most this often.
const KEY_SWEEP_MS: Millis = 60_000;

/// One change of a record committed in the application's database.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalChange {
    /// The tenant whose channels receive it.
    pub tenant: String,
    /// What happened.
    pub operation: Operation,
    /// The resource (for a database feed, the table).
    pub resource: String,
    /// The record id (for a database feed, the primary key as text).
    pub record_id: String,
    /// The whole record; its `id` member is set to `record_id`.
    pub data: serde_json::Value,
}

/// What an `Idempotency-Key` names: the change it was first used for and the reply.
#[derive(Serialize, Deserialize)]
struct KeptReply {
    request: ChangeReport,
    reply: ChangeAccepted,
}

impl<E: Engine> Core<E> {
    /// `POST /api/changes`: announces a change the application committed (CHG-22), once
    /// per `Idempotency-Key` (CHG-13 to CHG-15).
    pub fn report_change(
        &mut self,
        tenant: &str,
        key: Option<&str>,
        report: ChangeReport,
        now: Millis,
    ) -> Result<(ChangeAccepted, Vec<Effect>), CoreError> {
        let key = check_key(key, self.fault(Fault::ChangeKeyOptional))?;
        let data = self.checked_report(&report)?;
        self.sweep_keys(now)?;
        let mark = format!("{tenant}\n{key}");
        if let Some(kept) = self.engine.mark(HTTP_SOURCE, &mark)? {
            let kept: KeptReply = serde_json::from_str(&kept)
                .map_err(|e| CoreError::InvalidMessage(format!("stored reply: {e}")))?;
            let same = kept.request == report || self.fault(Fault::ChangeKeyReuseAccepted);
            if !self.fault(Fault::ChangeKeyIgnored) {
                return if same {
                    Ok((kept.reply, Vec::new())) // CHG-14
                } else {
                    Err(CoreError::KeyReused(key)) // CHG-15
                };
            }
        }
        let record = ResourceRecord {
            id: report.record_id.clone(),
            data,
        };
        self.engine.begin_batch()?;
        let done = self
            .announce_change(tenant, report.operation, &report.resource, &record, now)
            .and_then(|(effects, seqs)| {
                let reply = ChangeAccepted {
                    resource: report.resource.clone(),
                    record_id: report.record_id.clone(),
                    operation: report.operation,
                    feed_seq: seqs.first().copied().unwrap_or(0),
                    record_seq: seqs.get(1).copied().unwrap_or(0),
                    ts: now,
                };
                let kept = KeptReply {
                    request: report,
                    reply: reply.clone(),
                };
                let text = serde_json::to_string(&kept).unwrap_or_default();
                self.engine.set_mark(HTTP_SOURCE, &mark, &text, now)?;
                Ok((reply, effects))
            });
        self.engine.end_batch(done.is_ok())?;
        let (reply, effects) = done?;
        if self.fault(Fault::ReportedChangeSilent) {
            return Ok((reply, Vec::new()));
        }
        Ok((reply, effects))
    }

    /// The position of the last transaction a database feed `source` applied.
    pub fn feed_position(&self, source: &str) -> Result<Option<u64>, CoreError> {
        let text = self.engine.mark(source, POSITION_KEY)?;
        Ok(text.and_then(|t| t.parse().ok()))
    }

    /// A committed transaction of database feed `source` at log `position` (increasing in
    /// commit order): its changes are announced together, in order, and the position kept
    /// in the same store transaction (CHG-19, CHG-20). A transaction at or below the kept
    /// position was applied before a restart and is skipped.
    pub fn feed_transaction(
        &mut self,
        source: &str,
        position: u64,
        changes: Vec<ExternalChange>,
        now: Millis,
    ) -> Result<Vec<Effect>, CoreError> {
        if self
            .feed_position(source)?
            .is_some_and(|done| position <= done)
        {
            return Ok(Vec::new());
        }
        // Validate every change before anything is written (ERR-4).
        let mut records = Vec::with_capacity(changes.len());
        for change in changes {
            check_resource(&change.resource)?;
            let data = with_id(change.data, &change.record_id)?;
            let record = ResourceRecord {
                id: change.record_id,
                data,
            };
            records.push((change.tenant, change.operation, change.resource, record));
        }
        self.engine.begin_batch()?;
        let mut effects = Vec::new();
        let mut done = Ok(());
        for (tenant, operation, resource, record) in &records {
            match self.announce_change(tenant, *operation, resource, record, now) {
                Ok((more, _)) => effects.extend(more),
                Err(e) => {
                    done = Err(e);
                    break;
                }
            }
        }
        let done = done.and_then(|()| {
            self.engine
                .set_mark(source, POSITION_KEY, &position.to_string(), now)
        });
        self.engine.end_batch(done.is_ok())?;
        done.map(|()| effects)
    }

    /// CHG-16: the names, and the record with its `id`.
    fn checked_report(&self, report: &ChangeReport) -> Result<serde_json::Value, CoreError> {
        if self.fault(Fault::ChangeReportUnchecked) {
            let mut data = report.data.clone();
            if let Some(map) = data.as_object_mut() {
                map.insert("id".into(), report.record_id.clone().into());
            }
            return Ok(data);
        }
        check_resource(&report.resource)?;
        check_record_id(&report.record_id)?;
        with_id(report.data.clone(), &report.record_id)
    }

    /// Forgets keys older than [`CHANGE_KEY_TTL_MS`], at most once a minute.
    fn sweep_keys(&mut self, now: Millis) -> Result<(), CoreError> {
        if now >= self.key_sweep_at {
            self.key_sweep_at = now + KEY_SWEEP_MS;
            self.engine
                .forget_marks(HTTP_SOURCE, now.saturating_sub(CHANGE_KEY_TTL_MS))?;
        }
        Ok(())
    }
}

/// CHG-13: 1..=255 visible ASCII characters. (`optional`: the fault, a missing key is
/// replaced by a fresh one, so nothing is ever recognised as a retry.)
fn check_key(key: Option<&str>, optional: bool) -> Result<String, CoreError> {
    let key = match key {
        Some(key) => key,
        None if optional => return Ok(format!("none-{:016x}", rand::random::<u64>())),
        None => {
            return Err(CoreError::InvalidMessage(
                "POST /api/changes needs an Idempotency-Key header".into(),
            ))
        }
    };
    let ok = (1..=MAX_IDEMPOTENCY_KEY_LEN).contains(&key.len())
        && key.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| key.to_owned()).ok_or_else(|| {
        CoreError::InvalidMessage(format!(
            "Idempotency-Key must be 1..={MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
        ))
    })
}

#[cfg(test)]
mod tests {
    use chorus_protocol::http::ChangeReport;
    use chorus_protocol::{ErrorCode, Operation};
    use serde_json::{json, Value};

    use super::super::testkit::Driver;
    use super::super::CoreConfig;
    use super::ExternalChange;
    use crate::store::Store;

    fn report(record_id: &str, operation: Operation, data: Value) -> ChangeReport {
        ChangeReport {
            resource: "post".into(),
            record_id: record_id.into(),
            operation,
            data,
        }
    }

    fn change(record_id: &str, n: u64) -> ExternalChange {
        ExternalChange {
            tenant: String::new(),
            operation: Operation::Update,
            resource: "post".into(),
            record_id: record_id.into(),
            data: json!({ "n": n }),
        }
    }

    #[test]
    fn a_reported_change_reaches_both_channels_once_per_key() {
        let mut d = Driver::new();
        let (f, r) = (d.connect("feed"), d.connect("rec"));
        d.subscribe(f, "resource:post");
        d.subscribe(r, "resource:post:p1");
        let first = report("p1", Operation::Create, json!({"title": "Hi"}));
        let (reply, effects) = d
            .core
            .report_change("", Some("k1"), first.clone(), d.now)
            .unwrap();
        d.route(effects);
        assert_eq!((reply.feed_seq, reply.record_seq), (1, 1));
        let got = d.frames(f);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["data"], json!({"id": "p1", "title": "Hi"}));
        assert_eq!(d.frames(r).len(), 1);
        d.now += 5;
        let (again, effects) = d.core.report_change("", Some("k1"), first, d.now).unwrap();
        assert_eq!(
            (again, effects.len()),
            (reply, 0),
            "a retry replays the reply"
        );
        let other = report("p1", Operation::Delete, json!({}));
        let e = d
            .core
            .report_change("", Some("k1"), other, d.now)
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::Conflict);
        d.assert_silent(f);
    }

    #[test]
    fn bad_reports_are_refused_before_anything_is_sent() {
        let mut d = Driver::new();
        let f = d.connect("feed");
        d.subscribe(f, "resource:post");
        let ok = report("p1", Operation::Update, json!({}));
        let mut bad_name = ok.clone();
        bad_name.resource = "resource".into();
        let cases = [
            (None, ok.clone()),
            (Some(""), ok.clone()),
            (Some("k\u{7f}"), ok.clone()),
            (Some("k"), bad_name),
            (Some("k"), report("a b", Operation::Update, json!({}))),
            (Some("k"), report("p1", Operation::Update, json!([1]))),
            (
                Some("k"),
                report("p1", Operation::Update, json!({"id": "p2"})),
            ),
        ];
        for (key, r) in cases {
            let e = d.core.report_change("", key, r, d.now).unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidMessage);
        }
        d.assert_silent(f);
        // The key of a refused report is still free.
        assert!(d.core.report_change("", Some("k"), ok, d.now).is_ok());
    }

    #[test]
    fn keys_are_per_tenant_and_expire() {
        let mut d = Driver::new();
        let r = report("p1", Operation::Update, json!({}));
        let (a, _) = d
            .core
            .report_change("a", Some("k"), r.clone(), d.now)
            .unwrap();
        let (b, _) = d
            .core
            .report_change("b", Some("k"), r.clone(), d.now)
            .unwrap();
        assert_eq!(
            (a.feed_seq, b.feed_seq),
            (1, 1),
            "separate tenants, separate keys"
        );
        d.now += super::CHANGE_KEY_TTL_MS + super::KEY_SWEEP_MS;
        let (c, _) = d.core.report_change("a", Some("k"), r, d.now).unwrap();
        assert_eq!(c.feed_seq, 2, "an expired key names nothing");
    }

    #[test]
    fn a_feed_transaction_is_applied_once_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let open = || Driver::with_store(CoreConfig::default(), Store::open(dir.path()).unwrap());
        let mut d = open();
        let f = d.connect("feed");
        d.subscribe(f, "resource:post");
        let tx = vec![change("a", 1), change("b", 2)];
        let effects = d
            .core
            .feed_transaction("pg", 100, tx.clone(), d.now)
            .unwrap();
        d.route(effects);
        let seqs: Vec<_> = d.frames(f).iter().map(|m| m["seq"].clone()).collect();
        assert_eq!(seqs, [json!(1), json!(2)]);
        assert_eq!(d.core.feed_position("pg").unwrap(), Some(100));
        drop(d);
        let mut d = open();
        assert!(d
            .core
            .feed_transaction("pg", 100, tx, d.now)
            .unwrap()
            .is_empty());
        assert!(d
            .core
            .feed_transaction("pg", 90, vec![change("c", 3)], d.now)
            .unwrap()
            .is_empty());
        let f = d.connect("feed");
        d.subscribe(f, "resource:post");
        let effects = d
            .core
            .feed_transaction("pg", 101, vec![change("c", 3)], d.now)
            .unwrap();
        d.route(effects);
        assert_eq!(
            d.frames(f)[0]["seq"],
            3,
            "numbering goes on after the replay"
        );
    }

    #[test]
    fn an_invalid_change_refuses_its_whole_transaction() {
        let mut d = Driver::new();
        let f = d.connect("feed");
        d.subscribe(f, "resource:post");
        let tx = vec![change("a", 1), change("not valid", 2)];
        assert!(d.core.feed_transaction("pg", 5, tx, d.now).is_err());
        d.assert_silent(f);
        assert_eq!(d.core.feed_position("pg").unwrap(), None);
    }
}
