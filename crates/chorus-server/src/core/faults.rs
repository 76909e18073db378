//! Deliberate protocol bugs, switched on by name, so the conformance suite can prove it
//! catches them. The set is inert unless the crate is built with the `faults` feature.

use std::collections::BTreeSet;

/// One deliberate bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// Never send `user:left`.
    SkipUserLeft,
}

impl Fault {
    /// Every fault.
    pub const ALL: &'static [Fault] = &[Fault::SkipUserLeft];

    /// The fault's name (snake_case), as given on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Fault::SkipUserLeft => "skip_user_left",
        }
    }

    /// The fault with this name.
    pub fn from_name(name: &str) -> Option<Fault> {
        Fault::ALL.iter().copied().find(|f| f.name() == name)
    }
}

/// The faults switched on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults(BTreeSet<Fault>);

impl Faults {
    /// Switches `fault` on.
    pub fn insert(&mut self, fault: Fault) {
        self.0.insert(fault);
    }

    /// Whether `fault` is on; always false without the `faults` feature.
    pub fn on(&self, fault: Fault) -> bool {
        cfg!(feature = "faults") && self.0.contains(&fault)
    }
}
