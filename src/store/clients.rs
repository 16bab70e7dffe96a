//! The books of the token endpoint: the registered backend clients and the client assertions
//! they used (schema 4, `migrations/0004-backend-clients.md`).
//!
//! The store keeps a client's record as the bytes it is given (the auth layer's JSON) and
//! knows nothing of what they say. Writes go through the writer like the change log's books
//! ([`Bookkeeping::Client`], [`Bookkeeping::Assertion`]); these are the reads.
//!
//! Invariant: a client assertion is used once. [`Store::use_assertion`] records it in the
//! writer's transaction unless a record of it that has not lapsed is there, and answers, once
//! that is durable, whether this request's record is the one that stands: of two requests with
//! the same assertion, in one group or in two, whatever restarts come between, one only is.

use super::commit::Bookkeeping;
use super::tables::{ASSERTION_JTIS, BACKEND_CLIENTS, JtiRecord};
use super::{Store, StoreError};
use redb::{ReadableDatabase, ReadableTable};

impl Store {
    /// The record of the backend client `id`.
    pub fn client(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BACKEND_CLIENTS)?;
        Ok(table.get(id)?.map(|record| record.value().to_vec()))
    }

    /// Every backend client's id and record, by id.
    pub fn clients(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BACKEND_CLIENTS)?;
        let mut clients = Vec::new();
        for item in table.iter()? {
            let (id, record) = item?;
            clients.push((id.value().to_string(), record.value().to_vec()));
        }
        Ok(clients)
    }

    /// Sets (`Some`) or removes (`None`) the record of the backend client `id`, durably.
    pub async fn set_client(&self, id: &str, record: Option<Vec<u8>>) -> Result<(), StoreError> {
        let book = Bookkeeping::Client {
            id: id.to_string(),
            record,
        };
        self.keep_books(vec![book]).await.map(|_| ())
    }

    /// Records, durably, that `client` used the assertion `jti`, accepted until `lapses` (Unix
    /// seconds); true when this is its first use, false when it was used before and has not
    /// lapsed since.
    pub async fn use_assertion(
        &self,
        client: &str,
        jti: &str,
        lapses: u64,
    ) -> Result<bool, StoreError> {
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce)
            .map_err(|e| StoreError::Schema(format!("no randomness for a nonce: {e}")))?;
        let record = JtiRecord {
            lapses,
            nonce: u64::from_le_bytes(nonce),
        };
        let book = Bookkeeping::Assertion {
            client: client.to_string(),
            jti: jti.to_string(),
            record,
        };
        self.keep_books(vec![book]).await?;
        Ok(self.assertion_nonce(client, jti)? == Some(record.nonce))
    }

    /// The nonce of the request that recorded `client`'s assertion `jti`, while it is kept.
    pub fn assertion_nonce(&self, client: &str, jti: &str) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ASSERTION_JTIS)?;
        Ok(table
            .get((client, jti))?
            .map(|record| JtiRecord::decode(record.value()).nonce))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn clients_are_set_listed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let runtime = runtime();
        runtime
            .block_on(store.set_client("b", Some(b"{\"b\":1}".to_vec())))
            .unwrap();
        runtime
            .block_on(store.set_client("a", Some(b"{}".to_vec())))
            .unwrap();
        assert_eq!(
            store.client("b").unwrap().as_deref(),
            Some(&b"{\"b\":1}"[..])
        );
        let ids: Vec<String> = store.clients().unwrap().into_iter().map(|c| c.0).collect();
        assert_eq!(ids, ["a", "b"]);
        runtime.block_on(store.set_client("b", None)).unwrap();
        assert_eq!(store.client("b").unwrap(), None);
        store.close();
    }

    #[test]
    fn an_assertion_is_used_once_until_it_lapses_even_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = runtime();
        let later = now() + 300;
        {
            let store = Store::open(dir.path()).unwrap();
            assert!(
                runtime
                    .block_on(store.use_assertion("c", "j1", later))
                    .unwrap()
            );
            assert!(
                !runtime
                    .block_on(store.use_assertion("c", "j1", later))
                    .unwrap()
            );
            // Another client may use the same jti.
            assert!(
                runtime
                    .block_on(store.use_assertion("d", "j1", later))
                    .unwrap()
            );
            store.close();
        }
        let store = Store::open(dir.path()).unwrap();
        assert!(
            !runtime
                .block_on(store.use_assertion("c", "j1", later))
                .unwrap()
        );
        // Two at once: one wins.
        let (first, second) = runtime.block_on(async {
            futures_util::join!(
                store.use_assertion("c", "j2", later),
                store.use_assertion("c", "j2", later)
            )
        });
        assert!(first.unwrap() ^ second.unwrap());
        store.close();
    }

    #[test]
    fn lapsed_assertions_are_removed_and_may_be_used_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let runtime = runtime();
        // Accepted until the end of this second.
        let lapses = now();
        assert!(
            runtime
                .block_on(store.use_assertion("c", "old", lapses))
                .unwrap()
        );
        while now() <= lapses {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        // The next use removes the lapsed record, and a lapsed jti may be used again.
        assert!(
            runtime
                .block_on(store.use_assertion("c", "new", now() + 60))
                .unwrap()
        );
        assert_eq!(store.assertion_nonce("c", "old").unwrap(), None);
        assert!(
            runtime
                .block_on(store.use_assertion("c", "old", now() + 60))
                .unwrap()
        );
        store.close();
    }
}
