//! Documents with any of many terms of one field: what a chain, `_has` and `_list` turn their
//! nested matches into (references to them, or their keys).
//!
//! The index's term dictionaries are sorted tables (tantivy's sstable dictionary). Tantivy's
//! `TermSetQuery` runs an automaton over them, which walks the dictionary's block index and
//! steps the automaton through every key of every block it cannot rule out: for a hundred
//! references that cost milliseconds per segment. Here a few terms are looked up one by one,
//! and more are merge-joined with one pass over the dictionary's keys between the smallest
//! and the largest term (all of them share the parameter's prefix, so the pass covers the
//! values of that parameter only).

use tantivy::postings::TermInfo;
use tantivy::query::{
    BitSetDocSet, ConstScorer, EnableScoring, Explanation, Query, Scorer, Weight,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{BitSet, DocId, InvertedIndexReader, Score, SegmentReader, TantivyError, Term};

/// Up to this many terms are looked up one by one; more are merge-joined with the dictionary.
const LOOKUPS: usize = 8;

/// Documents that hold any of `values` in `field`.
#[derive(Clone, Debug)]
pub struct AnyTermQuery {
    field: Field,
    /// The terms' value bytes: sorted, without duplicates, never empty.
    values: Vec<Vec<u8>>,
}

impl AnyTermQuery {
    /// The query of `terms`, all of one field, at least one.
    pub fn new(terms: Vec<Term>) -> AnyTermQuery {
        let field = terms.first().expect("at least one term").field();
        debug_assert!(
            terms.iter().all(|t| t.field() == field),
            "terms of one field"
        );
        let mut values: Vec<Vec<u8>> = terms
            .iter()
            .map(|t| t.serialized_value_bytes().to_vec())
            .collect();
        values.sort_unstable();
        values.dedup();
        AnyTermQuery { field, values }
    }
}

impl Query for AnyTermQuery {
    fn weight(&self, _: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(self.clone()))
    }
}

impl AnyTermQuery {
    /// Calls `each` with the term info of every value the segment's dictionary holds.
    fn each_held(
        &self,
        index: &InvertedIndexReader,
        mut each: impl FnMut(&TermInfo) -> tantivy::Result<()>,
    ) -> tantivy::Result<()> {
        let dictionary = index.terms();
        if self.values.len() <= LOOKUPS {
            for value in &self.values {
                if let Some(info) = dictionary.get(value)? {
                    each(&info)?;
                }
            }
            return Ok(());
        }
        let (first, last) = (&self.values[0], &self.values[self.values.len() - 1]);
        let mut keys = dictionary.range().ge(first).le(last).into_stream()?;
        let mut wanted = self.values.iter().peekable();
        while keys.advance() {
            let key = keys.key();
            while wanted.next_if(|value| value.as_slice() < key).is_some() {}
            match wanted.peek() {
                None => break,
                Some(value) if value.as_slice() == key => each(keys.value())?,
                Some(_) => {}
            }
        }
        Ok(())
    }
}

impl Weight for AnyTermQuery {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let index = reader.inverted_index(self.field)?;
        let mut docs = BitSet::with_max_value(reader.max_doc());
        self.each_held(&index, |info| {
            let mut postings =
                index.read_block_postings_from_terminfo(info, IndexRecordOption::Basic)?;
            while !postings.docs().is_empty() {
                for &doc in postings.docs() {
                    docs.insert(doc);
                }
                postings.advance();
            }
            Ok(())
        })?;
        Ok(Box::new(ConstScorer::new(BitSetDocSet::from(docs), boost)))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        if self.scorer(reader, 1.0)?.seek(doc) != doc {
            return Err(TantivyError::InvalidArgument(format!(
                "document {doc} does not match"
            )));
        }
        Ok(Explanation::new("AnyTermQuery", 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tantivy::collector::DocSetCollector;
    use tantivy::schema::{STORED, STRING, Schema, Value};
    use tantivy::{Index, TantivyDocument};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever the terms asked for and those held (few or many, present or not, in one
        /// segment or several), the query matches exactly the documents holding one of them.
        #[test]
        fn matches_exactly_the_documents_holding_a_wanted_term(
            held in proptest::collection::vec(proptest::collection::vec(0u8..40, 0..4), 1..60),
            wanted in proptest::collection::btree_set(0u8..50, 1..30),
            segments in 1usize..4,
        ) {
            let mut schema = Schema::builder();
            let field = schema.add_text_field("t", STRING);
            let number = schema.add_u64_field("n", STORED);
            let index = Index::create_in_ram(schema.build());
            let mut writer = index.writer_with_num_threads(1, 15_000_000).unwrap();
            for (n, words) in held.iter().enumerate() {
                let mut document = TantivyDocument::new();
                document.add_u64(number, n as u64);
                for word in words {
                    document.add_text(field, format!("w{word:02}"));
                }
                writer.add_document(document).unwrap();
                if n % (held.len() / segments + 1) == 0 {
                    writer.commit().unwrap();
                }
            }
            writer.commit().unwrap();
            let searcher = index.reader().unwrap().searcher();
            let terms = wanted
                .iter()
                .map(|w| Term::from_field_text(field, &format!("w{w:02}")))
                .collect();
            let found = searcher.search(&AnyTermQuery::new(terms), &DocSetCollector).unwrap();
            let mut found: Vec<usize> = found
                .into_iter()
                .map(|address| {
                    let document: TantivyDocument = searcher.doc(address).unwrap();
                    document.get_first(number).and_then(|n| n.as_u64()).unwrap() as usize
                })
                .collect();
            found.sort_unstable();
            let expected: Vec<usize> = held
                .iter()
                .enumerate()
                .filter(|(_, words)| words.iter().any(|w| wanted.contains(w)))
                .map(|(n, _)| n)
                .collect();
            prop_assert_eq!(found, expected);
        }
    }
}
