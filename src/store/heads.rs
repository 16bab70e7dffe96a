//! Where the change log ends for each resource type: the seq of the last committed change to
//! a resource of that type.
//!
//! A search waits until the index holds the writes committed before it (read your writes),
//! but only the writes that can change its answer: one that reads documents of some types
//! alone waits for those types' heads, not for the whole log
//! ([`crate::search::Engine::catch_up_on`]), so writes of other types cost it nothing.
//!
//! The change log's consumers use them too: one that follows some types alone skips reading
//! the log while their heads stay behind its position.
//!
//! Invariant: whoever sees a committed seq sees the head of each type at or past every change
//! to it up to that seq. The writer advances the heads of the types a group wrote to the
//! group's last seq once the group is durable, before it publishes the new committed seq
//! (so for a moment a head may be past the published seq) and before it answers the group's
//! requests. Heads are not stored: when the store opens, every type's head is the committed
//! seq.

use std::collections::HashMap;
use std::sync::RwLock;

#[derive(Debug)]
pub struct Heads {
    /// The committed seq when the store opened: the head of every type not written since.
    opened: u64,
    /// The heads of the types written since the store opened.
    written: RwLock<HashMap<String, u64>>,
}

impl Heads {
    /// The heads of a store whose committed seq is `opened`.
    pub fn new(opened: u64) -> Heads {
        Heads {
            opened,
            written: RwLock::default(),
        }
    }

    /// Moves the heads of `types` to `seq`, the last change of the group that wrote them.
    pub(super) fn advance<'a>(&self, types: impl IntoIterator<Item = &'a str>, seq: u64) {
        // A panic elsewhere cannot leave the map half-changed: each change is one insert.
        let mut written = self
            .written
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for resource_type in types {
            match written.get_mut(resource_type) {
                Some(head) => *head = seq.max(*head),
                None => {
                    written.insert(resource_type.to_string(), seq);
                }
            }
        }
    }

    /// The last committed change to a resource of any of `types` (the seq the store opened
    /// at, when none was written since).
    pub fn of(&self, types: &[String]) -> u64 {
        let written = self
            .written
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        types
            .iter()
            .filter_map(|resource_type| written.get(resource_type).copied())
            .fold(self.opened, u64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn a_type_not_written_since_the_open_is_at_the_opening_seq() {
        let heads = Heads::new(7);
        assert_eq!(heads.of(&types(&["Patient"])), 7);
        heads.advance(["Observation"], 9);
        assert_eq!(heads.of(&types(&["Patient"])), 7);
        assert_eq!(heads.of(&types(&[])), 7);
    }

    #[test]
    fn the_head_of_several_types_is_the_latest_of_theirs() {
        let heads = Heads::new(0);
        heads.advance(["Observation", "Patient"], 3);
        heads.advance(["Observation"], 5);
        assert_eq!(heads.of(&types(&["Patient"])), 3);
        assert_eq!(heads.of(&types(&["Patient", "Observation"])), 5);
        assert_eq!(heads.of(&types(&["Encounter", "Patient"])), 3);
    }
}
