//! Resource records and ingestion marks of the [`RedisEngine`], shared by every node
//! (CLUS-14).
//!
//! # Layout (prefix `P`, resource id `R` = `{tenant length}:{tenant}{resource}`)
//! - `P:rec:R` hash record id -> the record's JSON, as the in-process store keeps it.
//! - `P:recix:R` sorted set of the record ids scored by creation number, `P:recn:R` the
//!   counter handing the numbers out: a page (HTTP-28) is one `ZRANGEBYSCORE` after the
//!   score of `after`, in creation order as on one server. A replaced record keeps its
//!   number; a deleted one leaves the set.
//! - `P:mark:S` hash key -> value of ingestion source `S`, and `P:markat:S` sorted set of
//!   its keys scored by `at`, so that [`Engine::forget_marks`](crate::core::Engine) removes
//!   the old ones (CHG-17) without scanning the hash.
//!
//! # What is atomic
//! A record write is one script: create-only (`create`) fails with `Exists` when the id
//! is already there, whichever node wrote it (HTTP-26 across nodes), an update or delete of
//! a record another node deleted meanwhile fails with `NotFound` rather than announcing a
//! change of nothing. A page is one script, so it sees one state of the resource.
//!
//! A batch ([`Engine::begin_batch`](crate::core::Engine)) is not one transaction in Redis:
//! its stream items are appended (and published) one script each as the core makes them,
//! because their `seq` is known only then. Its marks are held until the batch commits and
//! written together in one `MULTI`, after every item of the batch: a mark is never stored
//! without the items it stands for, and a batch rolled back stores no mark. A node dying
//! between a batch's items and its marks leaves the items without the mark, so a retried
//! change is announced twice (at least once) rather than lost; one server's SQLite
//! transaction keeps both or neither (spec/cluster.md, CLUS-14).

use redis::{Script, Value};

use super::redis_engine::{array, bytes, RedisEngine};
use crate::core::engine::RecordPage;
use crate::core::CoreError;
use chorus_protocol::Millis;

/// KEYS: records, order, counter. ARGV: id, JSON, `1` to create (the id must be new) or
/// `0` to replace (it must exist). 1 written, 0 exists already, -1 missing.
const PUT: &str = r"
local exists = redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1
if ARGV[3] == '1' then
  if exists then return 0 end
  redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), ARGV[1])
elseif not exists then
  return -1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
";

/// KEYS: records, order. ARGV: id. 1 deleted, 0 missing.
const DELETE: &str = r"
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])
";

/// KEYS: records, order. ARGV: the id the page starts after (empty: from the first), how
/// many to read. The ids and JSON of the page, flattened; nothing when `after` is not a
/// record (as one server's store answers).
const PAGE: &str = r"
local min = '-inf'
if ARGV[1] ~= '' then
  local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
  if not score then return {} end
  min = '(' .. score
end
-- The count stays a string: a Lua number this large would reach Redis as a float.
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], min, '+inf', 'LIMIT', 0, ARGV[2])
local out = {}
for _, id in ipairs(ids) do
  local data = redis.call('HGET', KEYS[1], id)
  if data then
    out[#out + 1] = id
    out[#out + 1] = data
  end
end
return out
";

/// KEYS: marks, their times. ARGV: forget those set before this. How many were forgotten.
const FORGET_MARKS: &str = r"
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1])
for i = 1, #old, 500 do
  redis.call('HDEL', KEYS[1], unpack(old, i, math.min(i + 499, #old)))
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1])
return #old
";

/// A mark set inside a batch, written when the batch commits.
struct PendingMark {
    source: String,
    key: String,
    value: String,
    at: Millis,
}

/// The record and mark scripts, hashed once, and the marks of the open batch.
pub(super) struct RecordStore {
    put: Script,
    delete: Script,
    page: Script,
    forget_marks: Script,
    /// `Some` between `begin_batch` and `end_batch`.
    batch: Option<Vec<PendingMark>>,
}

impl Default for RecordStore {
    fn default() -> Self {
        RecordStore {
            put: Script::new(PUT),
            delete: Script::new(DELETE),
            page: Script::new(PAGE),
            forget_marks: Script::new(FORGET_MARKS),
            batch: None,
        }
    }
}

fn engine_error(what: &str) -> impl Fn(String) -> CoreError + '_ {
    move |e| CoreError::Engine(format!("redis {what}: {e}"))
}

fn json_of(raw: Vec<u8>) -> Result<serde_json::Value, CoreError> {
    serde_json::from_slice(&raw).map_err(|e| CoreError::Engine(format!("stored record: {e}")))
}

impl RedisEngine {
    /// One record (HTTP-29), as every node reads it.
    pub(super) fn shared_record(
        &self,
        tenant: &str,
        resource: &str,
        id: &str,
    ) -> Result<Option<serde_json::Value>, CoreError> {
        let raw: Option<Vec<u8>> = redis::cmd("HGET")
            .arg(self.keys.records(tenant, resource))
            .arg(id)
            .query(&mut *self.redis.borrow_mut())
            .map_err(|e| CoreError::Engine(format!("redis record: {e}")))?;
        raw.map(json_of).transpose()
    }

    /// Up to `limit` records after `after` in creation order, and whether more follow
    /// (HTTP-28).
    pub(super) fn shared_records(
        &self,
        tenant: &str,
        resource: &str,
        after: Option<&str>,
        limit: u64,
    ) -> Result<RecordPage, CoreError> {
        let keys = [
            self.keys.records(tenant, resource),
            self.keys.record_order(tenant, resource),
        ];
        let args = [
            after.unwrap_or("").as_bytes().to_vec(),
            // One more than asked tells whether more follow; Redis counts in i64.
            limit
                .min(i64::MAX as u64 - 1)
                .saturating_add(1)
                .to_string()
                .into_bytes(),
        ];
        let parts = self
            .run(&self.records.page, &keys, &args)
            .and_then(array)
            .map_err(engine_error("records"))?;
        let mut records = Vec::with_capacity(parts.len() / 2);
        let mut parts = parts.into_iter();
        while let (Some(id), Some(data)) = (parts.next(), parts.next()) {
            let id = bytes(id).map_err(engine_error("records"))?;
            let id = String::from_utf8(id).map_err(|e| engine_error("records")(e.to_string()))?;
            let data = json_of(bytes(data).map_err(engine_error("records"))?)?;
            records.push((id, data));
        }
        let has_more = records.len() as u64 > limit;
        records.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(RecordPage { records, has_more })
    }

    /// Creates (`create`, the id must be new: HTTP-26) or replaces (it must exist) a record
    /// in one script, so that two nodes creating one id at once create it once.
    pub(super) fn put_shared_record(
        &self,
        tenant: &str,
        resource: &str,
        id: &str,
        data: &serde_json::Value,
        create: bool,
    ) -> Result<(), CoreError> {
        let keys = [
            self.keys.records(tenant, resource),
            self.keys.record_order(tenant, resource),
            self.keys.record_counter(tenant, resource),
        ];
        let args = [
            id.as_bytes().to_vec(),
            data.to_string().into_bytes(),
            if create { b"1".to_vec() } else { b"0".to_vec() },
        ];
        match self.run(&self.records.put, &keys, &args) {
            Ok(Value::Int(1)) => Ok(()),
            Ok(Value::Int(0)) => Err(CoreError::Exists(format!("{resource}/{id}"))),
            Ok(Value::Int(_)) => Err(CoreError::NotFound(format!("{resource}/{id}"))),
            Ok(other) => Err(CoreError::Engine(format!(
                "redis put record: unexpected reply {other:?}"
            ))),
            Err(e) => Err(CoreError::Engine(format!("redis put record: {e}"))),
        }
    }

    /// Deletes a record; `NotFound` when another node deleted it first (HTTP-33).
    pub(super) fn delete_shared_record(
        &self,
        tenant: &str,
        resource: &str,
        id: &str,
    ) -> Result<(), CoreError> {
        let keys = [
            self.keys.records(tenant, resource),
            self.keys.record_order(tenant, resource),
        ];
        match self.run(&self.records.delete, &keys, &[id.as_bytes().to_vec()]) {
            Ok(Value::Int(0)) => Err(CoreError::NotFound(format!("{resource}/{id}"))),
            Ok(_) => Ok(()),
            Err(e) => Err(CoreError::Engine(format!("redis delete record: {e}"))),
        }
    }

    /// Opens a batch: marks are held until it commits (see the module docs).
    pub(super) fn begin_shared_batch(&mut self) {
        self.records.batch = Some(Vec::new());
    }

    /// Closes the batch: its marks are written in one `MULTI` when it commits, dropped
    /// when it rolls back.
    pub(super) fn end_shared_batch(&mut self, commit: bool) -> Result<(), CoreError> {
        let pending = self.records.batch.take().unwrap_or_default();
        if !commit || pending.is_empty() {
            return Ok(());
        }
        self.write_marks(&pending)
    }

    /// The mark `key` of `source`, as every node reads it.
    pub(super) fn shared_mark(&self, source: &str, key: &str) -> Result<Option<String>, CoreError> {
        redis::cmd("HGET")
            .arg(self.keys.marks(source))
            .arg(key)
            .query(&mut *self.redis.borrow_mut())
            .map_err(|e| CoreError::Engine(format!("redis mark: {e}")))
    }

    /// Sets a mark now, or when the open batch commits.
    pub(super) fn set_shared_mark(
        &mut self,
        source: &str,
        key: &str,
        value: &str,
        at: Millis,
    ) -> Result<(), CoreError> {
        let mark = PendingMark {
            source: source.to_owned(),
            key: key.to_owned(),
            value: value.to_owned(),
            at,
        };
        match &mut self.records.batch {
            Some(pending) => {
                pending.push(mark);
                Ok(())
            }
            None => self.write_marks(&[mark]),
        }
    }

    fn write_marks(&self, marks: &[PendingMark]) -> Result<(), CoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for m in marks {
            pipe.hset(self.keys.marks(&m.source), &m.key, &m.value)
                .ignore()
                .zadd(self.keys.mark_times(&m.source), &m.key, m.at)
                .ignore();
        }
        pipe.query::<()>(&mut *self.redis.borrow_mut())
            .map_err(|e| CoreError::Engine(format!("redis set mark: {e}")))
    }

    /// Forgets the marks of `source` set before `before`; how many.
    pub(super) fn forget_shared_marks(
        &self,
        source: &str,
        before: Millis,
    ) -> Result<usize, CoreError> {
        let keys = [self.keys.marks(source), self.keys.mark_times(source)];
        match self.run(
            &self.records.forget_marks,
            &keys,
            &[before.to_string().into_bytes()],
        ) {
            Ok(Value::Int(n)) => Ok(usize::try_from(n).unwrap_or(0)),
            Ok(other) => Err(CoreError::Engine(format!(
                "redis forget marks: unexpected reply {other:?}"
            ))),
            Err(e) => Err(CoreError::Engine(format!("redis forget marks: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Two engines of one deployment (two nodes) on the Redis of the tests
    //! (127.0.0.1:6379 or `CHORUS_TEST_REDIS_URL`), under a prefix of their own.
    use serde_json::json;

    use super::super::{delete_deployment, join, Joined};
    use crate::core::{CoreError, Engine, Faults, InProcessEngine};
    use crate::store::Store;

    fn redis_url() -> String {
        std::env::var("CHORUS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    struct Deployment {
        prefix: String,
        nodes: Vec<Joined>,
    }

    impl Drop for Deployment {
        fn drop(&mut self) {
            for n in &self.nodes {
                n.bus.close();
            }
            let _ = delete_deployment(&redis_url(), &self.prefix);
        }
    }

    fn two_nodes(test: &str) -> Deployment {
        let prefix = format!("chorus-unit-{test}-{}", std::process::id());
        let nodes = (0..2)
            .map(|_| {
                let local =
                    InProcessEngine::load(Store::memory().unwrap(), 10, Faults::default()).unwrap();
                join(&redis_url(), &prefix, local, 10, 1000).unwrap()
            })
            .collect();
        Deployment { prefix, nodes }
    }

    #[test]
    fn a_record_written_through_one_node_is_read_through_another() {
        let mut d = two_nodes("read");
        let [a, b] = &mut d.nodes[..] else { panic!() };
        a.engine
            .put_record("t", "post", "1", &json!({"id": "1", "n": 1}), true)
            .unwrap();
        let read = b.engine.record("t", "post", "1").unwrap();
        assert_eq!(read, Some(json!({"id": "1", "n": 1})));
        assert_eq!(
            b.engine.record("u", "post", "1").unwrap(),
            None,
            "per tenant"
        );
        b.engine
            .put_record("t", "post", "1", &json!({"id": "1", "n": 2}), false)
            .unwrap();
        assert_eq!(
            a.engine.record("t", "post", "1").unwrap(),
            Some(json!({"id": "1", "n": 2}))
        );
    }

    #[test]
    fn a_create_of_an_id_another_node_created_is_refused() {
        let mut d = two_nodes("create");
        let [a, b] = &mut d.nodes[..] else { panic!() };
        a.engine
            .put_record("", "post", "x", &json!({"id": "x"}), true)
            .unwrap();
        let again = b
            .engine
            .put_record("", "post", "x", &json!({"id": "x"}), true);
        assert!(matches!(again, Err(CoreError::Exists(_))), "{again:?}");
    }

    #[test]
    fn a_replace_or_delete_of_a_record_deleted_elsewhere_is_not_found() {
        let mut d = two_nodes("gone");
        let [a, b] = &mut d.nodes[..] else { panic!() };
        a.engine
            .put_record("", "post", "x", &json!({"id": "x"}), true)
            .unwrap();
        a.engine.delete_record("", "post", "x").unwrap();
        let put = b
            .engine
            .put_record("", "post", "x", &json!({"id": "x"}), false);
        assert!(matches!(put, Err(CoreError::NotFound(_))), "{put:?}");
        let del = b.engine.delete_record("", "post", "x");
        assert!(matches!(del, Err(CoreError::NotFound(_))), "{del:?}");
        assert_eq!(a.engine.record("", "post", "x").unwrap(), None);
    }

    #[test]
    fn pages_follow_creation_order_across_nodes() {
        let mut d = two_nodes("page");
        let [a, b] = &mut d.nodes[..] else { panic!() };
        for (i, id) in ["c", "a", "b"].iter().enumerate() {
            let node = if i % 2 == 0 { &mut *a } else { &mut *b };
            node.engine
                .put_record("", "post", id, &json!({"id": id}), true)
                .unwrap();
        }
        b.engine
            .put_record("", "post", "c", &json!({"id": "c", "x": 1}), false)
            .unwrap();
        let page = a.engine.records("", "post", None, 2).unwrap();
        let ids: Vec<_> = page.records.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!((ids, page.has_more), (vec!["c", "a"], true));
        assert_eq!(page.records[0].1, json!({"id": "c", "x": 1}));
        let page = b.engine.records("", "post", Some("a"), 2).unwrap();
        let ids: Vec<_> = page.records.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!((ids, page.has_more), (vec!["b"], false));
        let none = b.engine.records("", "post", Some("gone"), 2).unwrap();
        assert!(none.records.is_empty() && !none.has_more);
        let all = a.engine.records("", "post", None, u64::MAX).unwrap();
        assert_eq!((all.records.len(), all.has_more), (3, false));
    }

    #[test]
    fn marks_are_shared_and_old_ones_forgotten() {
        let mut d = two_nodes("marks");
        let [a, b] = &mut d.nodes[..] else { panic!() };
        a.engine.set_mark("http", "k1", "v1", 10).unwrap();
        b.engine.set_mark("http", "k2", "v2", 20).unwrap();
        assert_eq!(b.engine.mark("http", "k1").unwrap().as_deref(), Some("v1"));
        assert_eq!(b.engine.forget_marks("http", 15).unwrap(), 1);
        assert_eq!(a.engine.mark("http", "k1").unwrap(), None);
        assert_eq!(a.engine.mark("http", "k2").unwrap().as_deref(), Some("v2"));
    }

    #[test]
    fn a_batch_writes_its_marks_only_when_it_commits() {
        let mut d = two_nodes("batch");
        let [a, b] = &mut d.nodes[..] else { panic!() };
        a.engine.begin_batch().unwrap();
        a.engine.set_mark("feed", "position", "7", 1).unwrap();
        assert_eq!(b.engine.mark("feed", "position").unwrap(), None, "held");
        a.engine.end_batch(false).unwrap();
        assert_eq!(b.engine.mark("feed", "position").unwrap(), None);
        a.engine.begin_batch().unwrap();
        a.engine.set_mark("feed", "position", "8", 1).unwrap();
        a.engine.end_batch(true).unwrap();
        assert_eq!(
            b.engine.mark("feed", "position").unwrap().as_deref(),
            Some("8")
        );
    }
}
