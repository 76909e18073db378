//! The `history` request (spec: history.md; the `event` filter: broadcast.md). Recovery
//! (`subscribe` with `since`) lives with the subscribe in channels.rs.

use chorus_protocol::{Capability, History, HistoryPage, ServerMessage};

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
        let (key, _) = self.subscribed_key(conn, &req.channel)?; // HIST-11
        let max = self.config.limits.history_limit;
        // `limit` is non-zero by its type (HIST-12 is answered at decoding).
        let limit = req.limit.map_or(max, |l| l.get().min(max)) as usize; // HIST-15
        let slice = self.engine.history(
            &key,
            HistoryQuery {
                before_seq: req.before_seq,
                event: req.event.as_deref(),
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
