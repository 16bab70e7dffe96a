//! What criteria match in an index snapshot, asked of one batch of ids after another: how a
//! bulk export judges the resources of a type by its `_typeFilter` while it walks the store in
//! id order.
//!
//! The criteria are searched once per type, into one bit per document of each segment. A
//! batch then walks the key dictionary of each segment over the range of its ids (keys are
//! `Type/id`, so the ids of a batch, adjacent in the store's order, are one range of keys) and
//! reads a bit per key it asked for. Each batch costs what its own ids cost, never a search of
//! the whole index, and what is held is one bit per document of the index, however many match.
//!
//! Invariant: a key answers by its live document (a segment's deleted documents are passed
//! over), so an id answers by the version the snapshot holds.

use super::index::Fields;
use super::query::{Planner, Target};
use super::versions::Criteria;
use super::view::View;
use super::{Engine, IndexSnapshot, Limits};
use crate::fhir::FhirError;
use std::collections::HashSet;
use tantivy::query::{EnableScoring, Query};
use tantivy::schema::IndexRecordOption;
use tantivy::{BitSet, DocSet, Searcher, TERMINATED};

/// The documents of one type that any of some criteria match, in an index snapshot.
pub struct Matched {
    searcher: Searcher,
    fields: Fields,
    resource_type: String,
    /// A bit per document of each segment (by segment ordinal): set when it matches.
    bits: Vec<BitSet>,
}

impl Engine {
    /// The documents of `snapshot` that any of `criteria` (all of one type) match.
    pub fn matched(
        &self,
        snapshot: &IndexSnapshot,
        criteria: &[Criteria],
    ) -> Result<Matched, FhirError> {
        let searcher = snapshot.0.clone();
        let resource_type = match criteria.first() {
            Some(first) => first.resource_type.clone(),
            None => return Err(FhirError::internal("no criteria to match")),
        };
        let mut bits: Vec<BitSet> = searcher
            .segment_readers()
            .iter()
            .map(|segment| BitSet::with_max_value(segment.max_doc()))
            .collect();
        let planner = Planner {
            registry: self.registry,
            fields: self.index.fields,
            searcher: &searcher,
            view: &View::All,
            limits: &Limits::default(),
        };
        for criteria in criteria {
            let target = Target::of_type(&criteria.resource_type);
            let plan = planner.plan(&target, criteria.params(), true)?;
            let weight = plan
                .query
                .weight(EnableScoring::disabled_from_searcher(&searcher))
                .map_err(failed)?;
            for (segment, bits) in searcher.segment_readers().iter().zip(&mut bits) {
                weight
                    .for_each_no_score(segment, &mut |docs| {
                        for doc in docs {
                            bits.insert(*doc);
                        }
                    })
                    .map_err(failed)?;
            }
        }
        Ok(Matched {
            searcher,
            fields: self.index.fields,
            resource_type,
            bits,
        })
    }
}

impl Matched {
    /// Which of `ids` (of the criteria's type) match.
    pub fn among(&self, ids: &[&str]) -> Result<HashSet<String>, FhirError> {
        let (Some(low), Some(high)) = (ids.iter().min(), ids.iter().max()) else {
            return Ok(HashSet::new());
        };
        let wanted: HashSet<&str> = ids.iter().copied().collect();
        let prefix = format!("{}/", self.resource_type);
        let (low, high) = (format!("{prefix}{low}"), format!("{prefix}{high}"));
        let mut found = HashSet::new();
        for (segment, bits) in self.searcher.segment_readers().iter().zip(&self.bits) {
            let keys = segment.inverted_index(self.fields.key).map_err(failed)?;
            let mut stream = keys
                .terms()
                .range()
                .ge(&low)
                .le(&high)
                .into_stream()
                .map_err(failed)?;
            while stream.advance() {
                let Some(id) = std::str::from_utf8(stream.key())
                    .ok()
                    .and_then(|key| key.strip_prefix(&prefix))
                    .filter(|id| wanted.contains(id))
                else {
                    continue;
                };
                let mut postings = keys
                    .read_postings_from_terminfo(stream.value(), IndexRecordOption::Basic)
                    .map_err(failed)?;
                let mut doc = postings.doc();
                while doc != TERMINATED {
                    if !segment.is_deleted(doc) && bits.contains(doc) {
                        found.insert(id.to_string());
                    }
                    doc = postings.advance();
                }
            }
        }
        Ok(found)
    }
}

fn failed(error: impl std::fmt::Display) -> FhirError {
    FhirError::internal(format!("matching failed: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::commit::{Action, Write};
    use serde_json::json;

    /// Over several commits (so several segments, with documents deleted by updates), each
    /// batch of ids answers exactly what a search of the criteria finds among them, whatever
    /// the batch: its own ids only, by their current versions.
    #[test]
    fn batches_answer_as_the_search_does() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let engine =
            Engine::open(&store, &dir.path().join("index"), None, Limits::default()).unwrap();
        let observation = |id: &str, category: &str| Write {
            resource_type: "Observation".into(),
            id: id.into(),
            action: Action::Update(json!({
                "resourceType": "Observation", "id": id, "status": "final",
                "category": [{"coding": [{"system":
                    "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": category}]}],
                "code": {"text": "x"},
            })),
            if_match: None,
        };
        let ids: Vec<String> = (0..60).map(|n| format!("o{n:02}")).collect();
        // Laboratory when n % 3 == 0 at first; later commits turn every fifth to vital signs and
        // every seventh to laboratory.
        let rounds: [&dyn Fn(usize) -> Option<&'static str>; 3] = [
            &|n| Some(if n % 3 == 0 { "laboratory" } else { "exam" }),
            &|n| (n % 5 == 0).then_some("vital-signs"),
            &|n| (n % 7 == 0).then_some("laboratory"),
        ];
        for round in rounds {
            let writes: Vec<Write> = ids
                .iter()
                .enumerate()
                .filter_map(|(n, id)| round(n).map(|category| observation(id, category)))
                .collect();
            runtime.block_on(store.commit(writes)).unwrap();
            assert!(runtime.block_on(engine.catch_up(&store)));
        }
        let expected: HashSet<String> = ids
            .iter()
            .enumerate()
            .filter(|(n, _)| {
                let first = n % 3 == 0;
                match (n % 7 == 0, n % 5 == 0) {
                    (true, _) => true,
                    (false, true) => false,
                    (false, false) => first,
                }
            })
            .map(|(_, id)| id.clone())
            .collect();
        let registry = engine.registry;
        let criteria = Criteria::parse(registry, "Observation?category=laboratory").unwrap();
        let matched = engine
            .matched(&engine.index_snapshot(), std::slice::from_ref(&criteria))
            .unwrap();
        for size in [1, 7, 60] {
            for batch in ids.chunks(size) {
                // Every other id of the batch asked: those between are in its range, not in it.
                let asked: Vec<&str> = batch.iter().step_by(2).map(String::as_str).collect();
                let found = matched.among(&asked).unwrap();
                let wanted: HashSet<String> = asked
                    .iter()
                    .filter(|id| expected.contains(**id))
                    .map(|id| id.to_string())
                    .collect();
                assert_eq!(found, wanted, "batch {batch:?}");
            }
        }
        assert!(matched.among(&[]).unwrap().is_empty());
        assert!(matched.among(&["missing"]).unwrap().is_empty());
    }
}
