//! The tantivy index of current resources: one document per live resource, holding its key
//! (`Type/id`), its type, its lastUpdated, every search term of its parameters, their sort
//! values, the value pairs of its multi-valued ranges (see `terms::Entries`), and the words of
//! its narrative and of all its text (see `fulltext`).
//!
//! The index is derived state: it is fed from the change log by the indexer, and the seq of
//! the last change it holds is stored in each commit's payload, so after a crash it resumes
//! from its own checkpoint, and `fhirlake reindex` rebuilds it from the store alone.
//!
//! What a reference means depends on the server's base (`fhir::reference::Base`): the index
//! records the base it was built with ([`READING_FILE`]), and an index built with another base
//! (or by an older fhirlake, which read references otherwise or wrote another format) is
//! rebuilt; `fhirlake import` and `fhirlake reindex`, which run without the server's
//! settings, keep the recorded base.
//!
//! Its newest commits are held in memory and written to disk by a checkpoint about once a
//! second and when it is closed ([`SearchIndex::close`], see `directory`). An index of another
//! schema is removed. An index ahead of the store (a replaced data
//! directory), or empty beside a store that is not, is rebuilt by the indexer thread from the
//! current resources rather than the whole change log; searches wait for it meanwhile, and
//! `/ready` says so.

use super::directory::Staged;
use super::fulltext::{self, Source, Text};
use super::terms::{Entries, reference_entry};
use crate::fhir::reference::Base;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use tantivy::columnar::StrColumn;
use tantivy::indexer::{AddOperation, SegmentWriter};
use tantivy::schema::{FAST, Field, INDEXED, JsonObjectOptions, OwnedValue, STRING, Schema};
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, TantivyDocument, Term,
};

/// The field of the key, `Type/id`.
pub const KEY_FIELD: &str = "key";
/// The field of the sort values: a JSON object of `code` and `-code` columns.
pub const SORT_FIELD: &str = "sort";
/// The field of the pairs of multi-valued ranges.
pub const PAIRS_FIELD: &str = "pairs";
/// The field of the local references (see `terms::reference_entry`).
pub const REFS_FIELD: &str = "refs";
/// The field of lastUpdated in microseconds.
pub const LAST_UPDATED_FIELD: &str = "lastUpdated";
/// The search parameter served by that field instead of by terms.
pub const LAST_UPDATED: &str = "_lastUpdated";

/// The file in the index's directory that says how its references were read:
/// [`READING_VERSION`], then the base (see [`reading`]).
pub const READING_FILE: &str = "fhirlake-references";

/// The version of the rules by which references are read and of the index's format; a change
/// rebuilds every index. 2: term dictionaries are tantivy's sorted tables (its `quickwit`
/// feature), which an index of version 1 (finite state transducers) cannot be read as.
const READING_VERSION: u32 = 2;

fn reading(base: &Base) -> String {
    format!("{READING_VERSION}\n{}\n", base.url().unwrap_or(""))
}

/// The base the index in `dir` was built with, when it says (for the commands that run on
/// a data directory without the server's settings: they keep the server's reading).
pub fn recorded_base(dir: &Path) -> Option<Base> {
    let text = std::fs::read_to_string(dir.join(READING_FILE)).ok()?;
    let mut lines = text.lines();
    if lines.next()? != READING_VERSION.to_string() {
        return None;
    }
    Some(Base::new(lines.next()))
}

/// The memory the index writer may buffer before it flushes a segment.
const WRITER_MEMORY: usize = 64 * 1024 * 1024;

/// The fields of a document.
#[derive(Clone, Copy)]
pub struct Fields {
    /// `Type/id`: unique per document, a fast field, for deletes and results.
    pub key: Field,
    pub resource_type: Field,
    /// Every search term (see `terms.rs`).
    pub terms: Field,
    /// lastUpdated in microseconds: the default sort.
    pub last_updated: Field,
    pub sort: Field,
    pub pairs: Field,
    pub refs: Field,
    /// The words of the narrative (`_text`).
    pub narrative: Field,
    /// The words of all the text, the narrative's included (`_content`).
    pub content: Field,
}

impl Fields {
    /// The field a full-text parameter searches.
    pub fn text(&self, source: Source) -> Field {
        match source {
            Source::Narrative => self.narrative,
            Source::Content => self.content,
        }
    }
}

/// A change to apply to the index.
pub enum Change {
    /// The resource's current version, with its terms.
    Upsert {
        key: String,
        resource_type: String,
        last_updated: i64,
        entries: Entries,
        text: Text,
        /// Whether the index may hold an older document of the key, which this one replaces
        /// (deleted first). False when the index never held one: the key's first version
        /// came in the same batch, or the index is rebuilt from empty. Deleting costs a look
        /// into every segment's keys (for tantivy too, when it applies the delete).
        replaces: bool,
    },
    /// The resource is deleted.
    Remove { key: String },
}

pub struct SearchIndex {
    index: Index,
    staged: Staged,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    /// The keys of erased resources whose segments are still to be purged
    /// ([`SearchIndex::defer_purge`]).
    deferred: Mutex<Deferred>,
    pub fields: Fields,
}

/// Purges put off until erasures pause.
#[derive(Default)]
struct Deferred {
    keys: HashSet<String>,
    /// When the last keys came.
    last: Option<std::time::Instant>,
}

impl SearchIndex {
    /// Opens the index in `dir` (creating it when missing) and returns it with its checkpoint:
    /// the seq of the last change it holds. An index of another schema (written by another
    /// version of fhirlake) or whose references were read with another `base` is removed: its
    /// checkpoint is then 0 and it must be rebuilt.
    pub fn open(dir: &Path, base: &Base) -> tantivy::Result<(SearchIndex, u64)> {
        SearchIndex::open_with_threads(dir, base, 1)
    }

    /// [`SearchIndex::open`] with `threads` indexing threads, for a rebuild of everything (the
    /// server's index keeps one: each thread that got documents makes a segment per commit,
    /// and most of its commits hold a few documents).
    pub fn open_with_threads(
        dir: &Path,
        base: &Base,
        threads: usize,
    ) -> tantivy::Result<(SearchIndex, u64)> {
        let reading = reading(base);
        if dir.exists()
            && std::fs::read_to_string(dir.join(READING_FILE)).ok() != Some(reading.clone())
        {
            tracing::warn!(
                base = base.url().unwrap_or("(none)"),
                "the search index was built with another reading of references; rebuilding it"
            );
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(READING_FILE), &reading)?;
        let (schema, fields) = schema();
        let open = || {
            let staged = Staged::open(dir)?;
            Ok::<_, tantivy::TantivyError>((
                Index::open_or_create(staged.clone(), schema.clone())?,
                staged,
            ))
        };
        let (index, staged) = match open() {
            Err(tantivy::TantivyError::SchemaError(reason)) => {
                tracing::warn!(%reason, "the search index has another schema; rebuilding it");
                std::fs::remove_dir_all(dir)?;
                std::fs::create_dir_all(dir)?;
                std::fs::write(dir.join(READING_FILE), &reading)?;
                open()?
            }
            other => other?,
        };
        staged.checkpoint_in_background();
        fulltext::register(index.tokenizers());
        let checkpoint = index
            .load_metas()?
            .payload
            .and_then(|payload| payload.parse().ok())
            .unwrap_or(0);
        let writer = index.writer_with_num_threads(threads, WRITER_MEMORY * threads)?;
        writer.set_merge_policy(Box::new(merge_policy()));
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok((
            SearchIndex {
                index,
                staged,
                reader,
                writer: Mutex::new(writer),
                deferred: Mutex::default(),
                fields,
            },
            checkpoint,
        ))
    }

    /// The index writer. When a panic interrupted the last holder (the indexer retries its
    /// batch), what that attempt staged is rolled back first, so the retry starts clean.
    fn writer(&self) -> tantivy::Result<MutexGuard<'_, IndexWriter>> {
        match self.writer.lock() {
            Ok(writer) => Ok(writer),
            Err(poisoned) => {
                let mut writer = poisoned.into_inner();
                tracing::warn!("an index commit was interrupted by a panic; rolling it back");
                writer.rollback()?;
                self.writer.clear_poison();
                Ok(writer)
            }
        }
    }

    /// Applies `changes` (at most one per key) and commits them with `checkpoint` as the new
    /// checkpoint; searches see them once this returns.
    ///
    /// A commit of at most [`SMALL_COMMIT`] documents builds its segment on this thread, with
    /// a term table sized for it ([`SMALL_SEGMENT`]), and hands it to the writer. A segment
    /// handed over takes every delete not yet committed, and an upsert's delete must remove
    /// the key's older document, not the new one: such a commit deletes only the keys the
    /// index holds (the searcher is current: commits happen under the writer's lock, and
    /// each reloads it), and when there are any it commits those deletes first, keeping the
    /// old checkpoint, so a crash between the two commits redoes the batch. The check is not
    /// only a saving: deletes committed on an index that holds none of their keys (an empty
    /// one, in this module's tests) stayed pending, and the next handed-over segment took
    /// them, deleting its own new documents.
    /// Tantivy's indexing thread would size the table from the writer's memory: 4 MB,
    /// written and scanned whole per segment, most of the CPU of a commit of a few documents.
    /// Larger commits go through that thread, which splits them into segments by memory.
    ///
    /// A commit that fails is rolled back before the error returns: what it staged (added
    /// documents, a handed-over segment) would otherwise go in with the next commit, beside
    /// the retry's own documents, and a document added without a delete would be there twice.
    pub fn apply(&self, changes: Vec<Change>, checkpoint: u64) -> tantivy::Result<()> {
        let mut writer = self.writer()?;
        let committed = self.commit(&mut writer, changes, checkpoint);
        if committed.is_err() {
            writer.rollback()?;
        }
        committed?;
        self.reader.reload()
    }

    /// Stages `changes` in `writer` and commits them (see [`SearchIndex::apply`]).
    fn commit(
        &self,
        writer: &mut IndexWriter,
        changes: Vec<Change>,
        checkpoint: u64,
    ) -> tantivy::Result<()> {
        let upserts = changes
            .iter()
            .filter(|change| matches!(change, Change::Upsert { .. }))
            .count();
        let small_commit = upserts <= SMALL_COMMIT;
        // Two documents of one key in one segment would both stay live.
        debug_assert!(
            {
                let mut keys = HashSet::new();
                changes.iter().all(|change| match change {
                    Change::Upsert { key, .. } | Change::Remove { key } => keys.insert(key),
                })
            },
            "one change per key"
        );
        let searcher = self.reader.searcher();
        // Whether this commit deletes a document: a small one deletes only the keys held.
        let mut deletes = false;
        let mut delete = |writer: &IndexWriter, key: &str| -> tantivy::Result<()> {
            let older = Term::from_field_text(self.fields.key, key);
            if !small_commit || searcher.doc_freq(&older)? > 0 {
                writer.delete_term(older);
                deletes = true;
            }
            Ok(())
        };
        let mut small = Vec::new();
        for change in changes {
            match change {
                Change::Remove { key } => delete(writer, &key)?,
                Change::Upsert {
                    key,
                    resource_type,
                    last_updated,
                    entries,
                    text,
                    replaces,
                } => {
                    let id = key.split_once('/').map_or("", |(_, id)| id);
                    crate::panics::inject(crate::panics::Fault::IndexCommit, id);
                    if replaces {
                        delete(writer, &key)?;
                    }
                    let document =
                        self.fields
                            .document(&key, &resource_type, last_updated, entries, &text);
                    if small_commit {
                        small.push(document);
                    } else {
                        writer.add_document(document)?;
                    }
                }
            }
        }
        if !small.is_empty() {
            if deletes {
                let before = writer.index().load_metas()?.payload;
                let mut deletes = writer.prepare_commit()?;
                if let Some(before) = before {
                    deletes.set_payload(&before);
                }
                deletes.commit()?;
            }
            let segment = writer.new_segment();
            let mut segment_writer = SegmentWriter::for_segment(SMALL_SEGMENT, segment.clone())?;
            // Opstamps order deletes against documents in tantivy's indexing thread; no
            // delete applies to this segment's documents before it is handed over.
            for (opstamp, document) in (0..).zip(small) {
                segment_writer.add_document(AddOperation { opstamp, document })?;
            }
            let max_doc = segment_writer.max_doc();
            segment_writer.finalize()?;
            let meta = segment.with_max_doc(max_doc).meta().clone();
            // As tantivy's indexing thread does: a segment without a sort order keeps no
            // temporary doc store.
            meta.untrack_temp_docstore();
            writer.add_segment(meta)?;
        }
        let mut commit = writer.prepare_commit()?;
        commit.set_payload(&checkpoint.to_string());
        commit.commit()?;
        Ok(())
    }

    /// Rewrites the segments that hold a document of one of `keys` beside deleted documents,
    /// without the deleted ones; returns how many it rewrote. A deleted document stays in its
    /// segment's files (its terms, its text's words) until a merge drops it, so an erasure
    /// purges the segments of the resources it erased (their current documents, when they
    /// are left, are kept). A segment that the merge policy is merging already is looked at
    /// again after that merge; one still merged after [`PURGE_TRIES`] looks is an error (the
    /// indexer then retries its batch).
    pub fn purge(&self, keys: &[String]) -> tantivy::Result<usize> {
        let mut rewritten = 0;
        for _ in 0..PURGE_TRIES {
            let segments = self.holding_deleted(keys)?;
            if segments.is_empty() {
                return Ok(rewritten);
            }
            let merge = self.writer()?.merge(&segments);
            match merge.wait() {
                Ok(_) => rewritten += segments.len(),
                // One of them is in a merge of the policy's: after it, look again (a document
                // deleted while it ran is still in what it makes).
                Err(tantivy::TantivyError::InvalidArgument(reason)) => {
                    tracing::debug!(%reason, "purging segments: waiting for a running merge");
                    std::thread::sleep(PURGE_PAUSE);
                }
                Err(error) => return Err(error),
            }
            self.reader.reload()?;
        }
        Err(tantivy::TantivyError::SystemError(
            "the segments of erased resources are still being merged".into(),
        ))
    }

    /// The segments that hold a document of one of `keys` beside deleted documents.
    fn holding_deleted(&self, keys: &[String]) -> tantivy::Result<Vec<tantivy::index::SegmentId>> {
        let searcher = self.reader.searcher();
        let mut segments = Vec::new();
        for segment in searcher.segment_readers() {
            if segment.num_deleted_docs() == 0 {
                continue;
            }
            let terms = segment.inverted_index(self.fields.key)?;
            for key in keys {
                if terms.terms().term_ord(key.as_bytes())?.is_some() {
                    segments.push(segment.segment_id());
                    break;
                }
            }
        }
        Ok(segments)
    }

    /// Removes every document (for a rebuild).
    pub fn clear(&self) -> tantivy::Result<()> {
        let mut writer = self.writer()?;
        writer.delete_all_documents()?;
        let mut commit = writer.prepare_commit()?;
        commit.set_payload("0");
        commit.commit()?;
        self.reader.reload()
    }

    /// Writes the index's newest commits to disk, after the purges still put off: its
    /// checkpoint there is then the last one applied. For a clean shutdown and the end of an
    /// import or a rebuild; after a crash the indexer re-indexes what the disk lacks (and an
    /// erasure's purge was lost: the next erasure's, or a `fhirlake reindex`, drops it).
    pub fn close(&self) -> std::io::Result<()> {
        if let Err(error) = self.purge_deferred(true) {
            tracing::error!(%error, "purging the segments of erased resources failed");
        }
        self.staged.checkpoint()
    }

    /// Puts off purging the segments of `keys` (erased resources, [`SearchIndex::purge`])
    /// until erasures pause for [`PURGE_QUIET`]: a purge rewrites whole segments, so a job
    /// that erases thousands of resources costs one, after its last erasure, and the indexer
    /// never waits for one.
    pub fn defer_purge(&self, keys: Vec<String>) {
        if keys.is_empty() {
            return;
        }
        let mut deferred = self.deferred.lock().expect("deferred purges");
        deferred.keys.extend(keys);
        deferred.last = Some(std::time::Instant::now());
    }

    /// Purges the deferred keys once [`PURGE_QUIET`] has passed since the last came (at once
    /// when `now`); returns how many segments it rewrote. Keys whose purge failed stay
    /// deferred.
    pub fn purge_deferred(&self, now: bool) -> tantivy::Result<usize> {
        let keys: Vec<String> = {
            let mut deferred = self.deferred.lock().expect("deferred purges");
            let quiet = deferred
                .last
                .is_some_and(|last| now || last.elapsed() >= PURGE_QUIET);
            if !quiet {
                return Ok(0);
            }
            deferred.last = None;
            deferred.keys.drain().collect()
        };
        self.purge(&keys)
            .inspect_err(|_| self.defer_purge(keys.clone()))
    }

    /// A snapshot of the index for one search (and the pages that follow it).
    pub fn searcher(&self) -> Searcher {
        self.reader.searcher()
    }

    pub fn schema(&self) -> Schema {
        self.index.schema()
    }
}

/// How long erasures pause before their segments are purged ([`SearchIndex::defer_purge`]).
pub const PURGE_QUIET: std::time::Duration = std::time::Duration::from_secs(2);

/// How many times [`SearchIndex::purge`] looks for segments to rewrite, and how long it waits
/// for a running merge between two looks.
const PURGE_TRIES: usize = 100;
const PURGE_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// How segments are merged: by size, in levels, 8 segments of one level at a time.
///
/// An index commit makes a segment of the documents it adds, so read-your-writes searches
/// under a trickle of writes make many small segments. tantivy's default policy counts every
/// segment under 10,000 documents as one level: each merge of 8 small segments also rewrote
/// the growing segment of everything merged before, up to 10,000 documents per merge, and
/// took most of the CPU under single writes. Here a level is a size class down to
/// [`MIN_LAYER_SIZE`] documents, so a document is rewritten once per level it climbs
/// (logarithmically many times), and the segments of a level are of one size.
fn merge_policy() -> tantivy::merge_policy::LogMergePolicy {
    let mut policy = tantivy::merge_policy::LogMergePolicy::default();
    policy.set_min_layer_size(MIN_LAYER_SIZE);
    policy
}

/// Segments of fewer documents than this are one level (their merges are cheap).
const MIN_LAYER_SIZE: u32 = 32;

/// The schema of the index and its fields.
fn schema() -> (Schema, Fields) {
    let mut schema = Schema::builder();
    let fields = Fields {
        key: schema.add_text_field(KEY_FIELD, STRING | FAST),
        resource_type: schema.add_text_field("type", STRING),
        terms: schema.add_text_field("terms", STRING),
        last_updated: schema.add_i64_field(LAST_UPDATED_FIELD, INDEXED | FAST),
        sort: schema.add_json_field(SORT_FIELD, JsonObjectOptions::default().set_fast("raw")),
        pairs: schema.add_bytes_field(PAIRS_FIELD, FAST),
        refs: schema.add_text_field(REFS_FIELD, FAST),
        narrative: schema.add_text_field("narrative", fulltext::field_options()),
        content: schema.add_text_field("content", fulltext::field_options()),
    };
    (schema.build(), fields)
}

/// The memory budget of a segment built without tantivy's indexing threads (a scratch index,
/// a small commit): tantivy sizes a segment's term table from it, and the table grows with
/// the terms that come.
const SMALL_SEGMENT: usize = 256 * 1024;

/// The most documents a commit builds its segment from itself ([`SearchIndex::apply`]).
const SMALL_COMMIT: usize = 1_000;

/// A throwaway in-memory index of `documents` (each `Change::Upsert`), in one segment whose
/// document `n` is `documents[n]`; what [`super::Engine::visible`] searches. Made without an
/// index writer: no threads, no files.
pub fn scratch(documents: Vec<Change>) -> tantivy::Result<(Searcher, Fields)> {
    let (schema, fields) = schema();
    let tokenizers = tantivy::tokenizer::TokenizerManager::default();
    fulltext::register(&tokenizers);
    // A single-segment writer on an empty RAM directory: what it needs is what it gets.
    let mut writer = Index::builder()
        .schema(schema)
        .tokenizers(tokenizers)
        .single_segment_index_writer(tantivy::directory::RamDirectory::create(), SMALL_SEGMENT)?;
    for document in documents {
        if let Change::Upsert {
            key,
            resource_type,
            last_updated,
            entries,
            text,
            ..
        } = document
        {
            writer.add_document(fields.document(
                &key,
                &resource_type,
                last_updated,
                entries,
                &text,
            ))?;
        }
    }
    let index = writer.finalize()?;
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()?;
    Ok((reader.searcher(), fields))
}

impl Fields {
    /// The document of a resource's current version.
    fn document(
        &self,
        key: &str,
        resource_type: &str,
        last_updated: i64,
        entries: Entries,
        text: &Text,
    ) -> TantivyDocument {
        let mut doc = TantivyDocument::new();
        doc.add_text(self.key, key);
        doc.add_text(self.resource_type, resource_type);
        doc.add_i64(self.last_updated, last_updated);
        for term in &entries.terms {
            doc.add_text(self.terms, term);
        }
        if !entries.sort.is_empty() {
            let sort: BTreeMap<String, OwnedValue> = entries
                .sort
                .into_iter()
                .map(|(column, value)| (column, OwnedValue::Str(value)))
                .collect();
            doc.add_object(self.sort, sort);
        }
        for pair in &entries.pairs {
            doc.add_bytes(self.pairs, pair);
        }
        for reference in &entries.refs {
            doc.add_text(self.refs, reference);
        }
        // The narrative goes to both full-text fields and every other text to `content`, each
        // as a value of its own (a phrase does not span two values).
        if let Some(narrative) = &text.narrative {
            doc.add_text(self.narrative, narrative);
            doc.add_text(self.content, narrative);
        }
        for other in &text.other {
            doc.add_text(self.content, other);
        }
        doc
    }
}

/// The keys (`Type/id`) of `addresses`, read from the key column (not the document store,
/// which decompresses a block per document).
pub fn keys_of(searcher: &Searcher, addresses: &[DocAddress]) -> tantivy::Result<Vec<String>> {
    let mut keys = vec![String::new(); addresses.len()];
    each_str(searcher, addresses, KEY_FIELD, |n, key| {
        keys[n] = key.to_string()
    })?;
    Ok(keys)
}

/// The local references (`Type/id`) that `param` of the documents at `addresses` holds.
pub fn references_of(
    searcher: &Searcher,
    addresses: &[DocAddress],
    param: &str,
) -> tantivy::Result<Vec<String>> {
    let prefix = reference_entry(param, "");
    let mut references = Vec::new();
    each_str(searcher, addresses, REFS_FIELD, |_, entry| {
        if let Some(local) = entry.strip_prefix(&prefix) {
            references.push(local.to_string());
        }
    })?;
    Ok(references)
}

/// Calls `visit(n, value)` for every value of the string column `field` of the `n`th of
/// `addresses`, in order.
fn each_str(
    searcher: &Searcher,
    addresses: &[DocAddress],
    field: &str,
    mut visit: impl FnMut(usize, &str),
) -> tantivy::Result<()> {
    let mut columns: Vec<Option<Option<StrColumn>>> = vec![None; searcher.segment_readers().len()];
    let mut value = String::new();
    for (n, address) in addresses.iter().enumerate() {
        let column = &mut columns[address.segment_ord as usize];
        if column.is_none() {
            *column = Some(
                searcher
                    .segment_reader(address.segment_ord)
                    .fast_fields()
                    .str(field)?,
            );
        }
        if let Some(Some(column)) = column {
            for ord in column.term_ords(address.doc_id) {
                value.clear();
                column.ord_to_str(ord, &mut value)?;
                visit(n, &value);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::Searcher;

    fn upsert(key: &str, word: &str) -> Change {
        Change::Upsert {
            key: key.into(),
            resource_type: "Patient".into(),
            last_updated: 0,
            entries: Entries::default(),
            text: Text {
                narrative: None,
                other: vec![word.into()],
            },
            replaces: true,
        }
    }

    /// Documents of `key` in the index's segments, deleted ones too.
    fn held(searcher: &Searcher, index: &SearchIndex, key: &str) -> usize {
        searcher
            .segment_readers()
            .iter()
            .filter(|segment| {
                let terms = segment.inverted_index(index.fields.key).unwrap();
                terms.terms().term_ord(key.as_bytes()).unwrap().is_some()
            })
            .count()
    }

    /// The live documents that hold `word` in their text.
    fn holding(index: &SearchIndex, word: &str) -> usize {
        let query = tantivy::query::TermQuery::new(
            Term::from_field_text(index.fields.content, word),
            tantivy::schema::IndexRecordOption::Basic,
        );
        index
            .searcher()
            .search(&query, &tantivy::collector::Count)
            .unwrap()
    }

    #[test]
    fn an_update_replaces_the_older_document_whichever_way_each_commit_was_built() {
        let dir = tempfile::tempdir().unwrap();
        let (index, _) = SearchIndex::open(dir.path(), &Base::default()).unwrap();
        // Too many for a small commit: tantivy's indexing thread builds the segment.
        let mut many: Vec<Change> = (0..SMALL_COMMIT)
            .map(|n| upsert(&format!("Patient/p{n}"), "many"))
            .collect();
        many.push(upsert("Patient/a", "first"));
        index.apply(many, 1).unwrap();
        assert_eq!(holding(&index, "many"), SMALL_COMMIT);
        // Small commits: their segments are built by `apply`, after their deletes.
        index
            .apply(
                vec![
                    upsert("Patient/a", "second"),
                    Change::Remove {
                        key: "Patient/p0".into(),
                    },
                ],
                2,
            )
            .unwrap();
        // A new key beside an update.
        index
            .apply(
                vec![upsert("Patient/new", "new"), upsert("Patient/a", "third")],
                3,
            )
            .unwrap();
        index.apply(vec![upsert("Patient/p1", "again")], 4).unwrap();
        assert_eq!(holding(&index, "first"), 0);
        assert_eq!(holding(&index, "second"), 0);
        assert_eq!(holding(&index, "third"), 1);
        assert_eq!(holding(&index, "again"), 1);
        assert_eq!(holding(&index, "new"), 1);
        assert_eq!(holding(&index, "many"), SMALL_COMMIT - 2);
        assert_eq!(index.searcher().num_docs(), SMALL_COMMIT as u64 + 1);
        // The small segments are the index's own: they survive a reopening.
        index.close().unwrap();
        drop(index);
        let (index, checkpoint) = SearchIndex::open(dir.path(), &Base::default()).unwrap();
        assert_eq!(checkpoint, 4);
        assert_eq!(holding(&index, "third"), 1);
        assert_eq!(index.searcher().num_docs(), SMALL_COMMIT as u64 + 1);
    }

    #[test]
    fn a_purge_drops_the_deleted_documents_of_its_keys_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (index, _) = SearchIndex::open(dir.path(), &Base::default()).unwrap();
        index
            .apply(
                vec![
                    upsert("Patient/a", "first"),
                    upsert("Patient/b", "gone"),
                    upsert("Patient/c", "kept"),
                ],
                1,
            )
            .unwrap();
        // An update (a deleted document and a new one) and a delete, in a second segment.
        index
            .apply(
                vec![
                    upsert("Patient/a", "second"),
                    Change::Remove {
                        key: "Patient/b".into(),
                    },
                ],
                2,
            )
            .unwrap();
        let searcher = index.searcher();
        assert_eq!(held(&searcher, &index, "Patient/b"), 1);
        assert_eq!(held(&searcher, &index, "Patient/a"), 2);
        assert_eq!(index.purge(&["Patient/x".into()]).unwrap(), 0);
        assert!(
            index
                .purge(&["Patient/a".into(), "Patient/b".into()])
                .unwrap()
                > 0
        );
        let searcher = index.searcher();
        assert_eq!(held(&searcher, &index, "Patient/b"), 0, "b is gone");
        assert_eq!(
            held(&searcher, &index, "Patient/a"),
            1,
            "a's live document is left"
        );
        assert!(
            searcher
                .segment_readers()
                .iter()
                .all(|s| s.num_deleted_docs() == 0)
        );
        assert_eq!(searcher.num_docs(), 2);
        let words = Term::from_field_text(index.fields.content, "first");
        let first = searcher
            .segment_readers()
            .iter()
            .filter(|s| {
                s.inverted_index(index.fields.content)
                    .unwrap()
                    .terms()
                    .term_ord(words.serialized_value_bytes())
                    .unwrap()
                    .is_some()
            })
            .count();
        assert_eq!(first, 0, "a's old words are gone");
    }
}
