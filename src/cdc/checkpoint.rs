//! A durable consumer's position in the change log.
//!
//! The position moves in memory as the consumer goes; it is stored (in the writer's next
//! transaction, `store::commit::Bookkeeping`) when the consumer asks ([`Checkpoint::save`],
//! after something it must not do twice) and otherwise at most once per [`EVERY`]
//! ([`Checkpoint::save_due`]), so a consumer passing over changes that are not its business
//! does not add a transaction to every commit. Invariant: the watch a checkpoint publishes
//! (for the lag metric and for retention) is its *stored* value, so retention never removes a
//! change that a restart would resume from.

use crate::store::commit::Bookkeeping;
use crate::store::{Store, StoreError};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long a position that only passed over changes may stay unstored.
pub const EVERY: Duration = Duration::from_secs(1);

pub struct Checkpoint {
    name: String,
    position: u64,
    stored: watch::Sender<u64>,
    stored_at: Instant,
}

impl Checkpoint {
    /// The checkpoint `name` at `stored`, its value in the store (or the value about to be
    /// stored with other books, see [`Checkpoint::book`]).
    pub fn new(name: String, stored: u64) -> Checkpoint {
        Checkpoint {
            name,
            position: stored,
            stored: watch::Sender::new(stored),
            stored_at: Instant::now(),
        }
    }

    /// The checkpoint `name` as the store holds it (0 when it never was stored).
    pub fn load(store: &Store, name: String) -> Result<Checkpoint, StoreError> {
        let stored = store.checkpoints()?.get(&name).copied().unwrap_or(0);
        Ok(Checkpoint::new(name, stored))
    }

    /// A receiver of the stored value.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.stored.subscribe()
    }

    /// The stored value.
    pub fn stored_seq(&self) -> u64 {
        *self.stored.borrow()
    }

    /// Every change up to it is processed.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Moves the position to `seq` (never back), in memory.
    pub fn moved(&mut self, seq: u64) {
        self.position = self.position.max(seq);
    }

    /// The bookkeeping that stores the position, to go with other books in one transaction;
    /// call [`Checkpoint::stored`] once they are.
    pub fn book(&self) -> Bookkeeping {
        Bookkeeping::Checkpoint {
            name: self.name.clone(),
            seq: Some(self.position),
        }
    }

    /// Records that the position as of [`Checkpoint::book`] is stored.
    pub fn stored(&mut self, seq: u64) {
        self.stored.send_replace(seq);
        self.stored_at = Instant::now();
    }

    /// Stores the position now, if it moved since it was last stored.
    pub async fn save(&mut self, store: &Store) -> Result<(), StoreError> {
        let seq = self.position;
        if seq == *self.stored.borrow() {
            return Ok(());
        }
        store.keep_books(vec![self.book()]).await?;
        self.stored(seq);
        Ok(())
    }

    /// Stores the position if it was last stored [`EVERY`] ago or more.
    pub async fn save_due(&mut self, store: &Store) -> Result<(), StoreError> {
        if self.stored_at.elapsed() >= EVERY {
            self.save(store).await
        } else {
            Ok(())
        }
    }

    /// Whether the position moved since it was last stored.
    pub fn unsaved(&self) -> bool {
        self.position != *self.stored.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_the_stored_position_is_published() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut checkpoint = Checkpoint::load(&store, "sink".into()).unwrap();
        let watched = checkpoint.watch();
        checkpoint.moved(5);
        checkpoint.moved(3);
        assert_eq!((checkpoint.position(), *watched.borrow()), (5, 0));
        assert!(checkpoint.unsaved());
        checkpoint.save_due(&store).await.unwrap(); // stored less than a second ago: not due
        assert_eq!(*watched.borrow(), 0);
        checkpoint.save(&store).await.unwrap();
        assert_eq!(*watched.borrow(), 5);
        assert!(!checkpoint.unsaved());
        assert_eq!(store.checkpoints().unwrap()["sink"], 5);
        let reloaded = Checkpoint::load(&store, "sink".into()).unwrap();
        assert_eq!(reloaded.position(), 5);
        store.close();
    }
}
