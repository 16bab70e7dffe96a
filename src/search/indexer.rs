//! The search indexer: a consumer of the change log with its own checkpoint.
//!
//! It follows the store's committed seq, reads the changes after its checkpoint in batches,
//! turns each touched resource's current state into an index change (on every core), and
//! commits the batch with the new checkpoint. A batch with erasures then puts off purging the
//! index's segments of the erased resources' deleted documents; a thread of its own purges
//! them once erasures pause ([`SearchIndex::defer_purge`]). A write after a quiet spell is indexed at once;
//! under a stream of writes, while nothing waits for the index, it gathers changes for up to
//! [`GATHER`] after its last commit, and a waiting search makes it commit at once. Under load the batches grow (up to 20,000 changes, one tantivy commit whose payload
//! is the last seq), so tantivy commits stay few.
//!
//! Panics cost as little as they can: a parameter whose extraction panics is left out of that
//! resource's document (an error log line names both), and so is the full text; a batch that
//! panics otherwise is retried like one that failed, after the index writer rolled back what
//! the failed attempt had staged ([`SearchIndex::apply`]). The thread never ends but with the
//! store.

use super::extract::extract;
use super::fulltext::Text;
use super::index::{Change, LAST_UPDATED, PURGE_QUIET, SearchIndex};
use super::registry::Registry;
use super::terms::Entries;
use super::view::Wanted;
use crate::panics::{self, Fault};
use crate::store::Store;
use crate::store::tables::{ChangeRecord, Op, VersionRecord};
use rayon::prelude::*;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The most changes one index commit takes.
const BATCH: usize = 20_000;

/// The index change for a version of a resource (its current one, but for a scratch index):
/// `body` is its JSON, `last_updated` its lastUpdated in microseconds. `wanted` keeps only
/// some parameters and maybe no text (a scratch index holds what its query looks at); `None`
/// keeps everything.
pub fn document(
    registry: &Registry,
    resource_type: &str,
    id: &str,
    last_updated: i64,
    body: &[u8],
    wanted: Option<&Wanted>,
) -> Option<Change> {
    let key = format!("{resource_type}/{id}");
    let resource: serde_json::Value = match serde_json::from_slice(body) {
        Ok(resource) => resource,
        Err(error) => {
            tracing::error!(%key, %error, "a stored version is not JSON; not indexed");
            return None;
        }
    };
    let mut entries = Entries::default();
    // `_lastUpdated` is the document's lastUpdated field, not terms; `_text` and `_content`
    // have no expression (they extract nothing): they are the full-text fields.
    for param in registry
        .params(resource_type)
        .filter(|p| p.code != LAST_UPDATED)
        .filter(|p| wanted.is_none_or(|w| w.codes.contains(&p.code)))
    {
        let extracted = contained(&key, &param.code, || {
            panics::inject(Fault::Extract, id);
            extract(registry, param, &resource)
        });
        match extracted {
            Some(Ok(values)) => entries.add(&param.code, &values),
            Some(Err(error)) => tracing::warn!(%key, param = %param.code, %error, "not extracted"),
            None => {}
        }
    }
    let text = match wanted {
        Some(wanted) if !wanted.text => None,
        _ => contained(&key, "_content", || Text::of(&resource)),
    };
    Some(Change::Upsert {
        key,
        resource_type: resource_type.to_string(),
        last_updated,
        entries,
        text: text.unwrap_or_default(),
        replaces: true,
    })
}

/// Runs `part` of indexing the resource `key`; `None` when it panicked (logged with both).
fn contained<T>(key: &str, part: &str, run: impl FnOnce() -> T) -> Option<T> {
    catch_unwind(AssertUnwindSafe(run))
        .inspect_err(|panic| {
            tracing::error!(
                %key,
                part,
                panic = panics::message(&**panic),
                "indexing this part panicked; it is left out of the resource's document"
            );
        })
        .ok()
}

/// How long the indexer gathers changes into one index commit while nothing waits for them.
///
/// An index commit has a fixed cost (a new segment, and later its merges) of a few
/// milliseconds: committing each write on its own took most of the CPU of concurrent
/// creates. While a search or a conditional operation waits for the index ([`Waiting`]) the
/// indexer commits what it has at once, so reading your writes costs no gathering. 250 ms
/// rather than 50 made a bulk import about a fifth faster (fewer, larger segments to build
/// and merge); nothing that reads the index waits for it without making it commit.
pub const GATHER: Duration = Duration::from_millis(250);

/// How many searches and conditional operations are waiting for the index to catch up.
#[derive(Default)]
pub struct Waiting(AtomicUsize);

impl Waiting {
    /// Counts one waiter until the returned guard is dropped.
    pub fn enter(&self) -> impl Drop + '_ {
        struct Guard<'a>(&'a AtomicUsize);
        impl Drop for Guard<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.0.fetch_add(1, Ordering::SeqCst);
        Guard(&self.0)
    }

    fn any(&self) -> bool {
        self.0.load(Ordering::SeqCst) > 0
    }
}

/// Starts the indexer thread from `checkpoint`, or from a rebuild of the index when
/// `rebuild`; the returned receiver sees the seq of the last change the index holds.
pub fn start(
    store: Store,
    index: Arc<SearchIndex>,
    registry: &'static Registry,
    (checkpoint, rebuild): (u64, bool),
    waiting: Arc<Waiting>,
) -> watch::Receiver<u64> {
    let (indexed, receiver) = watch::channel(if rebuild { 0 } else { checkpoint });
    // It ends with the index: it holds it only while it purges.
    let purged = Arc::downgrade(&index);
    std::thread::Builder::new()
        .name("fhirlake-purger".into())
        .spawn(move || {
            loop {
                std::thread::sleep(PURGE_QUIET / 4);
                let Some(index) = purged.upgrade() else {
                    return;
                };
                if let Err(error) = index.purge_deferred(false) {
                    tracing::error!(%error, "purging the segments of erased resources failed; retrying");
                }
            }
        })
        .expect("spawn the purger thread");
    std::thread::Builder::new()
        .name("fhirlake-indexer".into())
        .spawn(move || {
            run(
                store,
                index,
                registry,
                (checkpoint, rebuild),
                &waiting,
                indexed,
            )
        })
        .expect("spawn the indexer thread");
    receiver
}

fn run(
    store: Store,
    index: Arc<SearchIndex>,
    registry: &'static Registry,
    (mut checkpoint, rebuild): (u64, bool),
    waiting: &Waiting,
    indexed: watch::Sender<u64>,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("indexer runtime");
    if rebuild {
        checkpoint = rebuilt(&store, &index, registry);
        indexed.send_replace(checkpoint);
    }
    let mut commits = store.watch_commits();
    let mut last_commit = Instant::now();
    // Whether the indexer waited for a write since its last commit: a write after a quiet
    // spell is indexed at once, and changes are gathered only under a stream of writes.
    let mut was_idle = true;
    loop {
        if store.committed_seq() <= checkpoint {
            if runtime.block_on(commits.changed()).is_err() {
                return; // the store is closed
            }
            was_idle = true;
            continue;
        }
        while !was_idle
            && !waiting.any()
            && last_commit.elapsed() < GATHER
            && store.committed_seq() - checkpoint < BATCH as u64
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        was_idle = false;
        let batch = catch_unwind(AssertUnwindSafe(|| {
            index_batch(&store, &index, registry, checkpoint)
        }))
        .unwrap_or_else(|panic| Err(anyhow::anyhow!("a panic: {}", panics::message(&*panic))));
        match batch {
            Ok(next) => {
                checkpoint = next;
                last_commit = Instant::now();
                indexed.send_replace(checkpoint);
            }
            Err(error) => {
                tracing::error!(%error, "indexing failed; retrying");
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    }
}

fn index_batch(
    store: &Store,
    index: &SearchIndex,
    registry: &Registry,
    checkpoint: u64,
) -> anyhow::Result<u64> {
    let changes = store.changes_after(checkpoint, BATCH)?;
    let Some(last) = changes.last().map(|c| c.seq) else {
        return Ok(checkpoint);
    };
    let (touched, erased) = touched(changes);
    let (keys, fresh): (Vec<(String, String)>, Vec<bool>) = touched.into_iter().unzip();
    // The current versions in one read transaction, then the documents on every core:
    // extraction is most of an index change's cost.
    let versions = store.read_many(&keys)?;
    let batch: Vec<Change> = keys
        .par_iter()
        .zip(&fresh)
        .zip(&versions)
        .filter_map(|(((resource_type, id), fresh), version)| match version {
            Some(version) => current_document(registry, resource_type, id, version, !fresh),
            None => Some(Change::Remove {
                key: format!("{resource_type}/{id}"),
            }),
        })
        .collect();
    index.apply(batch, last)?;
    index.defer_purge(erased);
    Ok(last)
}

/// The resources a batch of changes touched (only their final state matters), each with
/// whether it is fresh: its first change here made its first version (a create of version
/// 1), so the index holds no older document of it. A resource erased and created again has
/// an erasure event before its new version 1 (in this batch, or in an earlier one that
/// removed its document). And the keys of the erased resources.
fn touched(changes: Vec<ChangeRecord>) -> (HashMap<(String, String), bool>, Vec<String>) {
    let mut touched = HashMap::new();
    let mut erased = Vec::new();
    for change in changes {
        if change.op == Op::Erased {
            erased.push(format!("{}/{}", change.resource_type, change.id));
        }
        let fresh = change.op == Op::Create && change.vid == 1;
        touched
            .entry((change.resource_type, change.id))
            .or_insert(fresh);
    }
    (touched, erased)
}

/// The document of `version`, the current version of `resource_type/id`, with everything;
/// `replaces` says whether the index may hold an older document of it.
fn current_document(
    registry: &Registry,
    resource_type: &str,
    id: &str,
    version: &VersionRecord,
    replaces: bool,
) -> Option<Change> {
    let mut change = document(
        registry,
        resource_type,
        id,
        version.last_updated,
        &version.body,
        None,
    )?;
    if let Change::Upsert { replaces: r, .. } = &mut change {
        *r = replaces;
    }
    Some(change)
}

/// Rebuilds the index until it succeeds; returns its new checkpoint.
fn rebuilt(store: &Store, index: &SearchIndex, registry: &Registry) -> u64 {
    loop {
        tracing::warn!("rebuilding the search index from the store");
        let rebuilt = catch_unwind(AssertUnwindSafe(|| rebuild(store, index, registry)))
            .unwrap_or_else(|panic| Err(anyhow::anyhow!("a panic: {}", panics::message(&*panic))));
        match rebuilt {
            Ok((count, head)) => {
                tracing::info!(count, head, "the search index is rebuilt");
                return head;
            }
            Err(error) => {
                tracing::error!(%error, "rebuilding the search index failed; retrying");
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    }
}

/// Rebuilds the index from the store's current resources alone; returns how many it indexed
/// and the seq of the last change they include (the index's new checkpoint).
pub fn rebuild(
    store: &Store,
    index: &SearchIndex,
    registry: &Registry,
) -> anyhow::Result<(usize, u64)> {
    index.clear()?;
    let mut current = Vec::new();
    let head = store.for_each_current(|resource_type, id, version| {
        current.push((resource_type.to_string(), id.to_string(), version));
    })?;
    let batch: Vec<Change> = current
        .par_iter()
        // The index was cleared: no document is replaced.
        .filter_map(|(resource_type, id, version)| {
            current_document(registry, resource_type, id, version, false)
        })
        .collect();
    let count = batch.len();
    index.apply(batch, head)?;
    Ok((count, head))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(seq: u64, id: &str, vid: u64, op: Op) -> ChangeRecord {
        ChangeRecord {
            seq,
            txid: seq,
            resource_type: "Patient".into(),
            id: id.into(),
            vid,
            op,
            last_updated: 0,
            erased: (op == Op::Erased).then_some(seq),
        }
    }

    #[test]
    fn only_a_resource_whose_first_version_is_in_the_batch_is_fresh() {
        let (touched, erased) = touched(vec![
            change(1, "new", 1, Op::Create),
            change(2, "new", 2, Op::Update),
            change(3, "updated", 4, Op::Update),
            change(4, "recreated", 3, Op::Create),
            change(5, "erased", 2, Op::Erased),
            change(6, "erased", 1, Op::Create),
            change(7, "gone", 1, Op::Create),
            change(8, "gone", 2, Op::Delete),
        ]);
        let fresh = |id: &str| touched[&("Patient".to_string(), id.to_string())];
        assert!(fresh("new"));
        assert!(fresh("gone"));
        assert!(!fresh("updated"));
        assert!(
            !fresh("recreated"),
            "created again after a delete: version 3"
        );
        assert!(!fresh("erased"), "created again after an erasure");
        assert_eq!(touched.len(), 5);
        assert_eq!(erased, vec!["Patient/erased".to_string()]);
    }
}
