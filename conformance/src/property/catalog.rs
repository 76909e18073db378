//! The named properties: which operations each generates, what it needs announced, and the
//! requirements its obligations cite (kept honest by a test that runs the model).

use chorus_protocol::Capability;

use crate::fixture::CaseLevel;

/// One property: a family of generated sequences focused on an area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Property {
    /// Subscribe, unsubscribe, broadcast, echo, seq, close.
    Channels,
    /// Broadcasts, `history` pages and recovery with `since`.
    History,
    /// Presence members across tabs, updates, lists, leaves.
    Presence,
    /// Room options, passwords, capacity, lifetime.
    Rooms,
    /// Shared state writes, compare-and-set, snapshots.
    State,
    /// Cursor updates, coalescing, lifetime.
    Cursors,
    /// Everything announced, interleaved.
    Mixed,
}

impl Property {
    /// Every property, in run order.
    pub const ALL: [Property; 7] = [
        Property::Channels,
        Property::History,
        Property::Presence,
        Property::Rooms,
        Property::State,
        Property::Cursors,
        Property::Mixed,
    ];

    /// Short name (`--property NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Property::Channels => "channels",
            Property::History => "history",
            Property::Presence => "presence",
            Property::Rooms => "rooms",
            Property::State => "state",
            Property::Cursors => "cursors",
            Property::Mixed => "mixed",
        }
    }

    /// The property with this name.
    pub fn from_name(name: &str) -> Option<Property> {
        Property::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The spec area it grades (the case id's first segment).
    pub fn area(self) -> &'static str {
        match self {
            Property::Mixed => "channels",
            p => p.name(),
        }
    }

    /// Case id in reports: `<area>.property.<name>`.
    pub fn id(self) -> String {
        format!("{}.property.{}", self.area(), self.name())
    }

    /// One line for reports.
    pub fn title(self) -> &'static str {
        match self {
            Property::Channels => "Generated subscribe/unsubscribe/broadcast/close sequences of four clients match the channels model",
            Property::History => "Generated broadcast, history and recovery sequences match the history model",
            Property::Presence => "Generated presence sequences over two tabs and two other users match the presence model",
            Property::Rooms => "Generated room creation, password, capacity and lifetime sequences match the rooms model",
            Property::State => "Generated shared-state writes with and without expected_version match the state model",
            Property::Cursors => "Generated cursor moves and bursts match the cursors model",
            Property::Mixed => "Generated sequences of every announced operation match the model",
        }
    }

    /// The grading level: every obligation is a MUST except the retention fallback (HIST-18).
    pub fn level(self) -> CaseLevel {
        CaseLevel::Must
    }

    /// Capabilities the property cannot run without.
    pub fn needs(self) -> &'static [Capability] {
        match self {
            Property::Presence => &[Capability::Presence],
            Property::Rooms => &[Capability::Presence, Capability::Rooms],
            Property::State => &[Capability::State],
            Property::Cursors => &[Capability::Presence, Capability::Cursors],
            Property::Channels | Property::History | Property::Mixed => &[],
        }
    }

    /// Whether it can run against a server announcing `caps`.
    pub fn runs_with(self, caps: &[Capability]) -> bool {
        let history = caps.contains(&Capability::History) || caps.contains(&Capability::Recovery);
        self.needs().iter().all(|n| caps.contains(n)) && (self != Property::History || history)
    }

    /// Requirements its obligations can cite.
    pub fn requirements(self) -> &'static [&'static str] {
        match self {
            Property::Channels => CHANNELS,
            Property::History => HISTORY,
            Property::Presence => PRESENCE,
            Property::Rooms => ROOMS,
            Property::State => STATE,
            Property::Cursors => CURSORS,
            Property::Mixed => MIXED,
        }
    }
}

const CHANNELS: &[&str] = &[
    "CONN-6", "CONN-7", "CONN-12", "TRANS-6", "TRANS-7", "TRANS-10", "TRANS-23", "TRANS-26",
    "ERR-2", "CHAN-35", "CHAN-8", "CHAN-9", "CHAN-33", "CHAN-12", "CHAN-15", "CHAN-16", "CHAN-34",
    "CHAN-20", "CHAN-24", "CHAN-25", "CHAN-26", "CHAN-27", "CHAN-28", "CHAN-29", "CHAN-30",
    "CHAN-31", "HIST-1", "HIST-9", "STATE-23",
];

const HISTORY: &[&str] = &[
    "CONN-6", "CONN-7", "CONN-12", "TRANS-6", "TRANS-7", "TRANS-10", "TRANS-23", "TRANS-26",
    "ERR-2", "CHAN-35", "CHAN-8", "CHAN-9", "CHAN-33", "CHAN-12", "CHAN-15", "CHAN-16", "CHAN-34",
    "CHAN-20", "CHAN-24", "CHAN-25", "CHAN-26", "CHAN-27", "CHAN-28", "CHAN-29", "CHAN-30",
    "CHAN-31", "HIST-1", "HIST-18", "HIST-6", "HIST-7", "HIST-8", "HIST-9", "HIST-11", "HIST-13",
    "HIST-14", "HIST-15", "HIST-16", "BCAST-1", "BCAST-2", "BCAST-3", "STATE-23",
];

const PRESENCE: &[&str] = &[
    "CONN-6", "CONN-7", "CONN-12", "TRANS-6", "TRANS-7", "TRANS-10", "TRANS-23", "TRANS-26",
    "ERR-2", "CHAN-35", "CHAN-8", "CHAN-9", "CHAN-33", "CHAN-12", "CHAN-15", "CHAN-16", "CHAN-34",
    "CHAN-20", "CHAN-24", "CHAN-25", "CHAN-26", "CHAN-27", "CHAN-28", "CHAN-29", "CHAN-30",
    "CHAN-31", "HIST-1", "HIST-3", "HIST-9", "PRES-1", "PRES-2", "PRES-3", "PRES-5", "PRES-7",
    "PRES-8", "PRES-9", "PRES-11", "PRES-12", "PRES-13", "PRES-14", "PRES-15", "PRES-16",
    "PRES-17", "PRES-18", "PRES-19", "PRES-21", "PRES-22a", "PRES-22b", "PRES-33", "ROOM-3",
    "ROOM-5", "ROOM-6", "ROOM-17", "STATE-23", "CURS-14",
];

const ROOMS: &[&str] = &[
    "CONN-6", "CONN-7", "CONN-12", "TRANS-6", "TRANS-7", "TRANS-10", "TRANS-23", "TRANS-26",
    "ERR-2", "ERR-3", "CHAN-35", "CHAN-8", "CHAN-9", "CHAN-33", "CHAN-12", "CHAN-15", "CHAN-16",
    "CHAN-34", "CHAN-20", "CHAN-24", "CHAN-25", "CHAN-26", "CHAN-27", "CHAN-28", "CHAN-29",
    "CHAN-30", "CHAN-31", "HIST-1", "HIST-3", "HIST-9", "PRES-1", "PRES-2", "PRES-3", "PRES-5",
    "PRES-7", "PRES-8", "PRES-9", "PRES-11", "PRES-12", "PRES-13", "PRES-14", "PRES-21",
    "PRES-22b", "PRES-33", "ROOM-3", "ROOM-4", "ROOM-5", "ROOM-6", "ROOM-10", "ROOM-11", "ROOM-14",
    "ROOM-16", "ROOM-17", "ROOM-18", "STATE-2", "STATE-3", "STATE-10", "STATE-14", "STATE-15",
    "STATE-16", "STATE-17", "STATE-18", "STATE-19", "STATE-20", "STATE-23", "CURS-14",
];

const STATE: &[&str] = &[
    "CONN-6", "CONN-7", "CONN-12", "TRANS-6", "TRANS-7", "TRANS-10", "TRANS-23", "TRANS-26",
    "ERR-2", "ERR-3", "CHAN-35", "CHAN-8", "CHAN-9", "CHAN-33", "CHAN-12", "CHAN-15", "CHAN-16",
    "CHAN-34", "HIST-1", "HIST-3", "HIST-9", "PRES-2", "PRES-3", "PRES-5", "PRES-7", "PRES-8",
    "PRES-9", "PRES-11", "PRES-12", "PRES-13", "PRES-14", "PRES-33", "ROOM-3", "ROOM-5", "ROOM-6",
    "ROOM-17", "STATE-2", "STATE-3", "STATE-10", "STATE-14", "STATE-15", "STATE-16", "STATE-17",
    "STATE-18", "STATE-19", "STATE-20", "STATE-21", "STATE-22", "STATE-23", "STATE-24", "CURS-14",
];

const CURSORS: &[&str] = &[
    "CONN-6", "CONN-7", "CONN-12", "TRANS-6", "TRANS-7", "TRANS-10", "TRANS-23", "TRANS-26",
    "ERR-2", "CHAN-35", "CHAN-8", "CHAN-9", "CHAN-33", "CHAN-12", "CHAN-15", "CHAN-16", "CHAN-34",
    "HIST-1", "HIST-3", "HIST-9", "PRES-2", "PRES-3", "PRES-5", "PRES-7", "PRES-8", "PRES-9",
    "PRES-11", "PRES-12", "PRES-13", "PRES-14", "PRES-16", "PRES-17", "PRES-18", "PRES-19",
    "PRES-22b", "PRES-33", "ROOM-3", "ROOM-5", "ROOM-6", "ROOM-17", "STATE-23", "CURS-2", "CURS-3",
    "CURS-4", "CURS-7", "CURS-8", "CURS-9", "CURS-10", "CURS-11", "CURS-12", "CURS-13", "CURS-14",
];

const MIXED: &[&str] = &[
    "CONN-6", "CONN-7", "CONN-12", "TRANS-6", "TRANS-7", "TRANS-10", "TRANS-23", "TRANS-26",
    "ERR-2", "ERR-3", "CHAN-35", "CHAN-8", "CHAN-9", "CHAN-33", "CHAN-12", "CHAN-15", "CHAN-16",
    "CHAN-34", "CHAN-20", "CHAN-24", "CHAN-25", "CHAN-26", "CHAN-27", "CHAN-28", "CHAN-29",
    "CHAN-30", "CHAN-31", "HIST-1", "HIST-3", "HIST-18", "HIST-6", "HIST-7", "HIST-8", "HIST-9",
    "HIST-11", "HIST-13", "HIST-14", "HIST-15", "HIST-16", "BCAST-1", "BCAST-2", "BCAST-3",
    "PRES-1", "PRES-2", "PRES-3", "PRES-5", "PRES-7", "PRES-8", "PRES-9", "PRES-11", "PRES-12",
    "PRES-13", "PRES-14", "PRES-15", "PRES-16", "PRES-17", "PRES-18", "PRES-19", "PRES-21",
    "PRES-22a", "PRES-22b", "PRES-33", "ROOM-3", "ROOM-4", "ROOM-5", "ROOM-6", "ROOM-10",
    "ROOM-11", "ROOM-14", "ROOM-16", "ROOM-17", "ROOM-18", "STATE-2", "STATE-3", "STATE-10",
    "STATE-14", "STATE-15", "STATE-16", "STATE-17", "STATE-18", "STATE-19", "STATE-20", "STATE-21",
    "STATE-22", "STATE-23", "STATE-24", "CURS-2", "CURS-3", "CURS-4", "CURS-7", "CURS-8", "CURS-9",
    "CURS-10", "CURS-11", "CURS-12", "CURS-13", "CURS-14",
];

/// Requirements the executor and the checker cite on their own (barriers, schema, frames
/// nobody expected), whatever the property.
pub const GRADING: &[&str] = &[
    "CONN-12", "TRANS-6", "TRANS-7", "TRANS-10", "TRANS-23", "TRANS-26", "CHAN-33", "CHAN-34",
    "CHAN-30", "PRES-7", "STATE-17", "CURS-7", "CURS-8", "CURS-9", "CURS-10", "CURS-11", "CURS-12",
    "CURS-13",
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chorus_protocol::{Capability, Limits};
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;

    use super::*;
    use crate::property::generate::{steps, Scope};
    use crate::property::model::Model;

    /// Every requirement the model cites for 1000 generated sequences of `p`.
    fn cited(p: Property) -> BTreeSet<&'static str> {
        let mut runner = TestRunner::deterministic();
        let strategy = steps(p, &Scope::new(&Capability::ALL), 24);
        let mut out = BTreeSet::new();
        for _ in 0..1000 {
            let seq = strategy.new_tree(&mut runner).unwrap().current();
            let mut m = Model::new(&Capability::ALL, Limits::default());
            for s in &seq {
                if let Some(plan) = m.apply(s) {
                    out.extend(plan.requirements());
                }
            }
        }
        out
    }

    #[test]
    fn listed_requirements_are_the_ones_the_model_cites() {
        let mut wrong = Vec::new();
        for p in Property::ALL {
            let cited = cited(p);
            let listed: BTreeSet<&str> = p.requirements().iter().copied().collect();
            let unlisted: Vec<_> = cited.difference(&listed).collect();
            let stale: Vec<_> = listed
                .iter()
                .filter(|r| !cited.contains(*r) && !GRADING.contains(r))
                .collect();
            if !unlisted.is_empty() || !stale.is_empty() {
                wrong.push(format!("{}: cited, not listed {unlisted:?}; listed, never cited {stale:?}; all cited {cited:?}", p.name()));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn every_cited_requirement_exists_in_the_spec() {
        let suite = crate::suite::Suite::embedded().unwrap();
        let known: BTreeSet<&str> = suite
            .requirements
            .iter()
            .filter(|r| r.level != chorus_protocol::requirements::Level::Removed)
            .map(|r| r.id.as_str())
            .collect();
        for p in Property::ALL {
            for r in p.requirements().iter().chain(GRADING) {
                assert!(
                    known.contains(r),
                    "{}: {r} is not a live requirement of the spec",
                    p.name()
                );
            }
        }
    }

    #[test]
    fn ids_follow_the_fixture_id_shape() {
        for p in Property::ALL {
            let id = p.id();
            assert_eq!(id.split('.').count(), 3, "{id}");
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '.' || c == '-'),
                "{id}"
            );
        }
    }
}
