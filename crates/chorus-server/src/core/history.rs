//! The `history` request (spec: history.md; the `event` filter: broadcast.md). Recovery
//! (`subscribe` with `since`) lives with the subscribe in channels.rs.

use chorus_protocol::{Capability, History, HistoryPage, Right, ServerMessage};

use super::engine::HistoryQuery;
use super::faults::Fault;
use super::{ConnId, Core, CoreError, Engine, Outbox};

impl<E: Engine> Core<E> {
    /// `history` -> `history:page` (HIST-11 to HIST-16, BCAST-1 to BCAST-3).
    pub(super) fn history(
        &mut self,
        conn: ConnId,
        req: History,
        out: &mut Outbox,
    ) -> Result<(), CoreError> {
        self.require(Capability::History)?;
        self.check_name(&req.channel)?;
        self.authorize(conn, Right::History, &req.channel)?; // CHAN-41
        let (key, _) = self.subscribed_key(conn, &req.channel)?; // HIST-11
        let max = self.config.limits.history_limit;
        // `limit` is non-zero by its type (HIST-12 is answered at decoding).
        let cap = if self.fault(Fault::HistoryLimitUncapped) {
            u32::MAX
        } else {
            max
        };
        let limit = req.limit.map_or(max, |l| l.get().min(cap)) as usize; // HIST-15
        let slice = self.engine.history(
            &key,
            HistoryQuery {
                before_seq: req.before_seq,
                event: req
                    .event
                    .as_deref()
                    .filter(|_| !self.fault(Fault::EventFilterIgnored)),
                limit,
            },
        );
        let mut messages = slice.items;
        if self.fault(Fault::HistoryWrongOrder) {
            messages.reverse();
        }
        let page = HistoryPage {
            id: req.id,
            channel: req.channel,
            position: self.engine.position(&key),
            messages,
            has_more: slice.has_more,
        };
        out.send(conn, &ServerMessage::HistoryPage(page));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testkit::Driver;
    use super::super::CoreConfig;

    fn publish(d: &mut Driver, conn: u64, events: &[&str]) {
        for e in events {
            d.send(
                conn,
                json!({"type": "broadcast", "channel": "chat", "event": e, "data": e}),
            );
        }
        d.frames(conn);
    }

    #[test]
    fn since_within_retention_replays_the_gap_right_after_subscribed() {
        let mut d = Driver::new();
        let a = d.connect("ann");
        let b = d.connect("bob");
        let epoch = d.subscribe(a, "chat")["position"]["epoch"].clone();
        publish(&mut d, a, &["one"]);
        d.subscribe(b, "chat");
        d.disconnect(b, false);
        publish(&mut d, a, &["two", "three"]);
        let b = d.connect("bob");
        let got = d.ask(
            b,
            json!({"type": "subscribe", "id": 12, "channel": "chat", "since": {"epoch": epoch, "seq": 1}}),
        );
        assert_eq!(got[0]["recovered"], true);
        assert_eq!(got[0]["position"]["seq"], 3);
        let replay: Vec<_> = got[1..]
            .iter()
            .map(|m| (m["seq"].clone(), m["event"].clone()))
            .collect();
        assert_eq!(
            replay,
            vec![(json!(2), json!("two")), (json!(3), json!("three"))]
        );
    }

    #[test]
    fn since_fails_on_another_epoch_or_beyond_retention() {
        let mut config = CoreConfig::default();
        config.limits.history_limit = 2;
        config.retention = 2;
        let mut d = Driver::with_config(config);
        let a = d.connect("ann");
        let epoch = d.subscribe(a, "chat")["position"]["epoch"].clone();
        publish(&mut d, a, &["1", "2", "3"]);
        let b = d.connect("bob");
        for since in [
            json!({"epoch": "e-other", "seq": 3}),
            json!({"epoch": epoch, "seq": 0}),
            json!({"epoch": epoch, "seq": 9}),
        ] {
            let got = d.ask(
                b,
                json!({"type": "subscribe", "channel": "chat", "since": since}),
            );
            assert_eq!(
                (got.len(), &got[0]["recovered"]),
                (1, &json!(false)),
                "{since}"
            );
            d.send(b, json!({"type": "unsubscribe", "channel": "chat"}));
            d.frames(b);
        }
        let got = d.ask(
            b,
            json!({"type": "subscribe", "channel": "chat", "since": {"epoch": epoch, "seq": 1}}),
        );
        assert_eq!((got.len(), &got[0]["recovered"]), (3, &json!(true)));
        d.send(b, json!({"type": "unsubscribe", "channel": "chat"}));
        d.frames(b);
        assert!(d.subscribe(b, "chat").get("recovered").is_none(), "HIST-9");
    }

    #[test]
    fn pages_go_backwards_with_event_filter() {
        let mut d = Driver::new();
        let a = d.connect("ann");
        d.subscribe(a, "chat");
        publish(&mut d, a, &["x", "y", "x", "x", "y"]);
        let page = |d: &mut Driver, q: serde_json::Value| {
            let mut req = json!({"type": "history", "id": 20, "channel": "chat"});
            req.as_object_mut()
                .unwrap()
                .extend(q.as_object().unwrap().clone());
            d.ask(a, req).remove(0)
        };
        let p = page(&mut d, json!({"limit": 2}));
        let seqs = |p: &serde_json::Value| -> Vec<u64> {
            p["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["seq"].as_u64().unwrap())
                .collect()
        };
        assert_eq!(
            (seqs(&p), &p["has_more"], &p["position"]["seq"]),
            (vec![4, 5], &json!(true), &json!(5))
        );
        let p = page(&mut d, json!({"limit": 2, "before_seq": 4, "event": "x"}));
        assert_eq!((seqs(&p), &p["has_more"]), (vec![1, 3], &json!(false)));
        let p = page(&mut d, json!({"event": "x", "before_seq": 1}));
        assert_eq!((seqs(&p), &p["has_more"]), (vec![], &json!(false)));
        assert_eq!(p["messages"], json!([]));
    }

    #[test]
    fn retention_outlasts_one_page() {
        let mut config = CoreConfig::default();
        config.limits.history_limit = 2;
        let mut d = Driver::with_config(config);
        let a = d.connect("ann");
        d.subscribe(a, "chat");
        publish(&mut d, a, &["1", "2", "3"]);
        let got = d.ask(a, json!({"type": "history", "channel": "chat", "limit": 5}));
        assert_eq!(
            got[0]["messages"].as_array().unwrap().len(),
            2,
            "page capped"
        );
        assert_eq!(got[0]["has_more"], true, "seq 1 is still retained");
    }

    #[test]
    fn history_needs_a_subscription() {
        let mut d = Driver::new();
        let a = d.connect("ann");
        let got = d.ask(a, json!({"type": "history", "id": 22, "channel": "chat"}));
        assert_eq!(got[0]["code"], "not_subscribed");
    }
}
