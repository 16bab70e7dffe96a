//! FHIR search: the registry of search parameters, the values they extract, the tantivy
//! index fed from the change log (with the full text of each resource), and the query
//! planner.
//!
//! [`Engine`] ties them together: it opens the index next to the store, starts the indexer,
//! waits for it (read-your-writes) and runs searches on a snapshot that later pages reuse.
//!
//! A search: wait until the index holds the store's committed seq (at most [`CATCH_UP`], then
//! it runs anyway and says its results may be stale), plan the parameters into one tantivy
//! query ([`query`], with the client's [`View`] ANDed in), run it on a snapshot searcher (kept
//! 10 minutes for the next pages) and answer keys (`Type/id`); the API layer reads the
//! resources themselves from the store. Conditional create, update, patch and delete and the
//! conditional references of Bundles resolve through the same engine after the same wait; they
//! are not atomic with concurrent writers that create a matching resource at the same moment.
//!
//! Known gaps: `_filter`, `_query`, functional lists (`$current-allergies`) and the other
//! parameters without an expression; composites with a number or date before their last
//! component (MolecularSequence coordinates); the type-level `Patient/$everything`;
//! `_elements` below the top level; full text has no relevance order, thesaurus or stemming.

pub mod compartment;
pub mod directory;
pub mod extract;
pub mod fulltext;
pub mod include;
pub mod index;
pub mod indexer;
pub mod limits;
pub mod matched;
pub mod query;
pub mod registry;
pub mod sort;
pub mod terms;
pub mod units;
pub mod versions;
pub mod view;

use crate::fhir::reference::Base;
use crate::fhir::resource::check_type;
use crate::fhir::{FhirError, IssueCode};
use crate::store::Store;
use index::SearchIndex;
pub use limits::Limits;
use query::Planner;
pub use query::{Ignored, Target};
use registry::Registry;
use sort::{Cursor, SortCollector};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tantivy::collector::{Collector, Count};
use tantivy::query::Query;
use tantivy::{DocAddress, Searcher};
use tokio::sync::watch;
pub use view::{Candidate, Part, View};

/// A snapshot of the index for a long reader (a bulk export's `_typeFilter`): it holds the
/// index as it was when taken, whatever is indexed later.
pub struct IndexSnapshot(Searcher);

/// The search index's directory inside a data directory.
pub const INDEX_DIR: &str = "index";

/// How long a search snapshot is kept for its next pages, and how many are kept.
const SNAPSHOT_TTL: Duration = Duration::from_secs(600);
const SNAPSHOTS: usize = 256;

/// How long a search waits for the index to catch up with the writes before it (read your
/// writes); past it the search runs and says its results may be stale.
pub const CATCH_UP: Duration = Duration::from_secs(10);

/// What a client asked for.
pub struct Request {
    /// The types searched, and maybe a compartment.
    pub target: Target,
    pub params: Vec<(String, String)>,
    /// `Prefer: handling=strict`.
    pub strict: bool,
    pub count: usize,
    /// How many matches to skip, after `after` when given.
    pub offset: usize,
    /// Start after this match (`_cursor`, from a next link).
    pub after: Option<Cursor>,
    /// The snapshot of an earlier page.
    pub snapshot: Option<u64>,
    /// Count the matches (`_total` other than `none`).
    pub total: bool,
    /// What the search may find at all (the client's access).
    pub view: View,
}

/// One page of matches.
pub struct Page {
    /// `(type, id)` of each match, in order.
    pub matches: Vec<(String, String)>,
    pub total: Option<usize>,
    pub ignored: Vec<Ignored>,
    /// The snapshot the next pages use.
    pub snapshot: u64,
    /// Where the next page starts, when there are more matches.
    pub next: Option<Cursor>,
}

pub struct Engine {
    pub registry: &'static Registry,
    /// What one search may ask for.
    pub limits: Limits,
    /// The store's committed seq when the engine opened: the index is ready once it holds it.
    pub opened_at: u64,
    index: Arc<SearchIndex>,
    indexed: watch::Receiver<u64>,
    /// Counted while a caller waits for the index: the indexer then commits at once.
    waiting: Arc<indexer::Waiting>,
    snapshots: Mutex<HashMap<u64, (Searcher, Instant)>>,
}

impl Engine {
    /// Opens the index in `dir` and starts the indexer from its checkpoint. An index ahead of
    /// the store (a replaced data directory), or empty beside a store that is not, is rebuilt.
    /// `base` is the server's public base (which references are its own, see [`Base`]);
    /// `None` keeps the base the index was built with (for the commands that run without the
    /// server's settings). Its searches are held to `limits`.
    pub fn open(
        store: &Store,
        dir: &Path,
        base: Option<Base>,
        limits: Limits,
    ) -> anyhow::Result<Engine> {
        let base = base
            .or_else(|| index::recorded_base(dir))
            .unwrap_or_default();
        let (index, checkpoint) = SearchIndex::open(dir, &base)?;
        let registry = Registry::r4_with_base(base);
        let index = Arc::new(index);
        let head = store.committed_seq();
        // Ahead of the store: a replaced data directory. Empty beside a store that is not: a
        // new or replaced index. Either way the current resources are quicker to index than
        // the whole change log.
        let rebuild = checkpoint > head || (checkpoint == 0 && head > 0);
        let waiting = Arc::new(indexer::Waiting::default());
        let indexed = indexer::start(
            store.clone(),
            index.clone(),
            registry,
            (checkpoint, rebuild),
            waiting.clone(),
        );
        Ok(Engine {
            registry,
            limits,
            opened_at: store.committed_seq(),
            index,
            indexed,
            waiting,
            snapshots: Mutex::new(HashMap::new()),
        })
    }

    /// Writes the index's newest commits to disk (see [`SearchIndex::close`]).
    pub fn close(&self) -> std::io::Result<()> {
        self.index.close()
    }

    /// The seq of the last change the index holds.
    pub fn indexed_seq(&self) -> u64 {
        *self.indexed.borrow()
    }

    /// A receiver of the index's checkpoint (for its lag metric).
    pub fn watch_indexed(&self) -> watch::Receiver<u64> {
        self.indexed.clone()
    }

    /// Waits until the index holds change `seq`, at most `timeout`; false when it did not.
    pub async fn wait_for(&self, seq: u64, timeout: Duration) -> bool {
        if *self.indexed.borrow() >= seq {
            return true;
        }
        let _waiting = self.waiting.enter();
        let mut indexed = self.indexed.clone();
        tokio::time::timeout(timeout, indexed.wait_for(|at| *at >= seq))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Runs a search: its page of matches in the search's total order (see [`sort`]).
    pub fn search(&self, request: &Request) -> Result<Page, FhirError> {
        let searcher = self.snapshot(request.snapshot);
        let planner = Planner {
            registry: self.registry,
            fields: self.index.fields,
            searcher: &searcher,
            view: &request.view,
            limits: &self.limits,
        };
        let plan = planner.plan(&request.target, &request.params, request.strict)?;
        let failed = |e: tantivy::TantivyError| FhirError::internal(format!("search failed: {e}"));
        let limit = request
            .offset
            .saturating_add(request.count)
            .saturating_add(1);
        let sorted = SortCollector::new(&plan.sort, limit, request.after.clone())
            .map_err(|reason| FhirError::bad_request(IssueCode::Invalid, reason))?;
        let (rows, total) = self.collect(&searcher, &plan.query, sorted, request.total)?;
        let mut rows: Vec<_> = rows.into_iter().skip(request.offset).collect();
        let next = if request.count > 0 && rows.len() > request.count {
            rows.truncate(request.count);
            rows.last().map(|(values, _)| Cursor::new(values.clone()))
        } else {
            rows.truncate(request.count);
            None
        };
        let addresses: Vec<DocAddress> = rows.into_iter().map(|(_, address)| address).collect();
        let matches = index::keys_of(&searcher, &addresses)
            .map_err(failed)?
            .into_iter()
            .filter_map(|key| {
                key.split_once('/')
                    .map(|(t, i)| (t.to_string(), i.to_string()))
            })
            .collect();
        let snapshot = self.keep(searcher, request.snapshot);
        Ok(Page {
            matches,
            total,
            ignored: plan.ignored,
            snapshot,
            next,
        })
    }

    /// Runs `collector` on the matches of `query`, and counts them when `count`.
    fn collect<C: Collector>(
        &self,
        searcher: &Searcher,
        query: &dyn Query,
        collector: C,
        count: bool,
    ) -> Result<(C::Fruit, Option<usize>), FhirError> {
        let failed = |e: tantivy::TantivyError| FhirError::internal(format!("search failed: {e}"));
        if count {
            let (fruit, total) = searcher
                .search(query, &(collector, Count))
                .map_err(failed)?;
            Ok((fruit, Some(total)))
        } else {
            Ok((searcher.search(query, &collector).map_err(failed)?, None))
        }
    }

    /// The ids of up to two resources of `resource_type` within `view` matching `criteria` (a
    /// query string such as `identifier=http://x|1`): what conditional interactions and
    /// references need. Unknown parameters are refused, never ignored.
    pub fn matching(
        &self,
        resource_type: &str,
        criteria: &str,
        view: &View,
    ) -> Result<Vec<String>, FhirError> {
        self.matching_at_most(resource_type, criteria, view, 2)
    }

    /// [`Engine::matching`] with up to `limit` ids (a conditional delete of several).
    pub fn matching_at_most(
        &self,
        resource_type: &str,
        criteria: &str,
        view: &View,
        limit: usize,
    ) -> Result<Vec<String>, FhirError> {
        let params = criteria_params(criteria);
        check_type(resource_type)?;
        if params.is_empty() {
            return Err(FhirError::bad_request(
                IssueCode::Invalid,
                format!("'{resource_type}?{criteria}' has no search criteria"),
            ));
        }
        let page = self.search(&Request {
            target: Target::of_type(resource_type),
            params,
            strict: true,
            count: limit,
            offset: 0,
            after: None,
            snapshot: None,
            total: false,
            view: view.clone(),
        })?;
        Ok(page.matches.into_iter().map(|(_, id)| id).collect())
    }

    /// Which of `candidates` a search within `view` would find (see [`view`]).
    pub fn visible(&self, view: &View, candidates: &[Candidate]) -> Result<Vec<bool>, FhirError> {
        Self::visible_in(self.registry, view, candidates)
    }

    /// Which of `candidates` a confined write may leave in place or put there: those a part of
    /// `view` holds alone. For a part with a compartment, the candidate is a member of that
    /// compartment (or its focal resource) and of no other compartment of its type: a
    /// `patient/` token writes what belongs to its patient and to no other patient. A part's
    /// parameters must match too, as in [`Engine::visible`].
    pub fn owned(&self, view: &View, candidates: &[Candidate]) -> Result<Vec<bool>, FhirError> {
        Self::owned_in(self.registry, view, candidates)
    }

    /// [`Engine::owned`] with the definitions of `registry`.
    pub fn owned_in(
        registry: &Registry,
        view: &View,
        candidates: &[Candidate],
    ) -> Result<Vec<bool>, FhirError> {
        view.judge_owned(registry, candidates, |view, candidates| {
            Self::visible_by_index(registry, view, candidates)
        })
    }

    /// [`Engine::visible`] with the definitions of `registry`: straight from the membership
    /// references when the view has no search parameters ([`View::judge_by_membership`]),
    /// otherwise in a scratch index ([`Engine::visible_by_index`]).
    pub fn visible_in(
        registry: &Registry,
        view: &View,
        candidates: &[Candidate],
    ) -> Result<Vec<bool>, FhirError> {
        match view.judge_by_membership(registry, candidates) {
            Some(judged) => Ok(judged),
            None => Self::visible_by_index(registry, view, candidates),
        }
    }

    /// The candidates indexed in a scratch index, in order, with the parameters the view
    /// looks at only, and the view's query run over it. A candidate that cannot be indexed
    /// (not JSON) is not visible.
    fn visible_by_index(
        registry: &Registry,
        view: &View,
        candidates: &[Candidate],
    ) -> Result<Vec<bool>, FhirError> {
        let failed = |e: tantivy::TantivyError| FhirError::internal(format!("access check: {e}"));
        // Document n of the scratch index is candidate `indexed[n]`.
        let mut indexed = Vec::with_capacity(candidates.len());
        let mut documents = Vec::with_capacity(candidates.len());
        let mut wanted: HashMap<&str, view::Wanted> = HashMap::new();
        for (n, c) in candidates.iter().enumerate() {
            let wanted = wanted
                .entry(c.resource_type)
                .or_insert_with(|| view.wanted(c.resource_type));
            if let Some(document) = indexer::document(
                registry,
                c.resource_type,
                c.id,
                c.last_updated,
                c.body,
                Some(wanted),
            ) {
                indexed.push(n);
                documents.push(document);
            }
        }
        let (searcher, fields) = index::scratch(documents).map_err(failed)?;
        let planner = Planner {
            registry,
            fields,
            searcher: &searcher,
            view,
            limits: &Limits::default(),
        };
        // Planned for the candidates' types only.
        let mut resource_types: Vec<String> = candidates
            .iter()
            .map(|c| c.resource_type.to_string())
            .collect();
        resource_types.sort();
        resource_types.dedup();
        let target = Target {
            resource_types,
            ..Target::default()
        };
        let plan = planner.plan(&target, &[], true)?;
        let found = searcher
            .search(&plan.query, &tantivy::collector::DocSetCollector)
            .map_err(failed)?;
        let mut visible = vec![false; candidates.len()];
        for address in found {
            visible[indexed[address.doc_id as usize]] = true;
        }
        Ok(visible)
    }

    /// A snapshot of the index as it is now: it holds every change up to at least
    /// [`Engine::indexed_seq`] as read before taking it.
    pub fn index_snapshot(&self) -> IndexSnapshot {
        IndexSnapshot(self.index.searcher())
    }

    /// Waits (at most [`CATCH_UP`]) until the index holds every change committed so far;
    /// false when it did not catch up in time.
    pub async fn catch_up(&self, store: &Store) -> bool {
        self.catch_up_on(store, None).await
    }

    /// [`Engine::catch_up`] for what reads only documents of `types` ([`Target::reads`]):
    /// it waits only for the changes committed so far to resources of these types (`None`:
    /// of any type), so writes of other types do not hold it up.
    pub async fn catch_up_on(&self, store: &Store, types: Option<&[String]>) -> bool {
        let seq = match types {
            Some(types) => store.committed_seq_of(types),
            None => store.committed_seq(),
        };
        self.wait_for(seq, CATCH_UP).await
    }

    /// [`Engine::catch_up_on`] for the conditional interaction on `resource_type` with
    /// `criteria` within `view`: it waits for what [`Engine::matching`] reads.
    pub async fn catch_up_for_criteria(
        &self,
        store: &Store,
        resource_type: &str,
        criteria: &str,
        view: &View,
    ) -> bool {
        let params = criteria_params(criteria);
        let target = Target::of_type(resource_type);
        self.catch_up_on(store, target.reads(&params, view)).await
    }

    /// The `Type/id` a conditional reference (`Type?criteria`) names among what `view` holds:
    /// exactly one match, or 412 (several) or 404 (none).
    pub fn resolve(&self, reference: &str, view: &View) -> Result<String, FhirError> {
        let (resource_type, criteria) = reference.split_once('?').unwrap_or((reference, ""));
        let ids = self.matching(resource_type, criteria, view)?;
        match ids.as_slice() {
            [id] => Ok(format!("{resource_type}/{id}")),
            [] => Err(FhirError::not_found(format!(
                "the conditional reference '{reference}' matches nothing"
            ))),
            _ => Err(FhirError::new(
                412,
                IssueCode::Conflict,
                format!("the conditional reference '{reference}' matches more than one resource"),
            )),
        }
    }

    fn snapshot(&self, id: Option<u64>) -> Searcher {
        let snapshots = self.snapshots.lock().expect("snapshots");
        id.and_then(|id| snapshots.get(&id).map(|(s, _)| s.clone()))
            .unwrap_or_else(|| self.index.searcher())
    }

    /// Keeps `searcher` for later pages; returns its id.
    fn keep(&self, searcher: Searcher, id: Option<u64>) -> u64 {
        let mut snapshots = self.snapshots.lock().expect("snapshots");
        let now = Instant::now();
        snapshots.retain(|_, (_, used)| now.duration_since(*used) < SNAPSHOT_TTL);
        if snapshots.len() >= SNAPSHOTS
            && let Some(oldest) = snapshots
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k)
        {
            snapshots.remove(&oldest);
        }
        let id = id
            .filter(|id| snapshots.contains_key(id))
            .unwrap_or_else(rand_id);
        snapshots.insert(id, (searcher, now));
        id
    }
}

/// The parameters of a conditional interaction's criteria (`identifier=a|b&...`).
fn criteria_params(criteria: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(criteria.as_bytes())
        .into_owned()
        .collect()
}

fn rand_id() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0 >> 1
}
