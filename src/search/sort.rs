//! `_sort`: ordering matches by the sort values the index keeps per parameter (see
//! `terms::Entries`), on several keys, each ascending or descending.
//!
//! Per the FHIR search page a resource with several values sorts by its lowest value when
//! ascending and its highest when descending; resources without a value come last either way.
//! Ties fall back to lastUpdated, then to the index order, so pages of one snapshot never
//! overlap.

use super::index::{LAST_UPDATED, LAST_UPDATED_FIELD, SORT_FIELD};
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{BytesColumn, Column};
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal, SegmentReader};

/// One sort key.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    /// The parameter's code.
    pub code: String,
    pub descending: bool,
}

impl SortKey {
    /// The column of the index holding this key's values.
    fn column(&self) -> String {
        if self.descending {
            format!("{SORT_FIELD}.-{}", self.code)
        } else {
            format!("{SORT_FIELD}.{}", self.code)
        }
    }
}

/// Where a key's values are read in one segment.
enum KeyColumn {
    /// Sort values: ordinals compare like the values within the segment.
    Values(Option<BytesColumn>),
    /// The lastUpdated field (for `_lastUpdated`).
    LastUpdated(Column<i64>),
}

impl KeyColumn {
    /// A number that orders the document's value within the segment.
    fn ordinal(&self, doc: DocId) -> Option<u64> {
        match self {
            KeyColumn::Values(column) => column.as_ref()?.term_ords(doc).next(),
            KeyColumn::LastUpdated(column) => column.first(doc).map(ordered),
        }
    }

    /// The value behind an ordinal, comparable across segments.
    fn value(&self, ordinal: u64) -> Option<Vec<u8>> {
        match self {
            KeyColumn::Values(column) => {
                let mut bytes = Vec::new();
                let found = column.as_ref()?.ord_to_bytes(ordinal, &mut bytes).ok()?;
                found.then_some(bytes)
            }
            KeyColumn::LastUpdated(_) => Some(ordinal.to_be_bytes().to_vec()),
        }
    }
}

/// An i64 as a u64 of the same order.
fn ordered(value: i64) -> u64 {
    (value as u64) ^ (1 << 63)
}

/// A match with its sort values, in the order of the keys, then its lastUpdated.
type Sorted = (Vec<Option<Vec<u8>>>, i64, DocAddress);

/// Collects the first `limit` matches in the order of `keys`.
pub struct SortCollector {
    pub keys: Vec<SortKey>,
    pub limit: usize,
}

/// Compares two rows of sort values: per key, missing values last, descending keys reversed.
fn compare<T: Ord>(keys: &[SortKey], a: &[Option<T>], b: &[Option<T>]) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    for ((key, a), b) in keys.iter().zip(a).zip(b) {
        let order = match (a, b) {
            (Some(a), Some(b)) if key.descending => b.cmp(a),
            (Some(a), Some(b)) => a.cmp(b),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    Ordering::Equal
}

impl Collector for SortCollector {
    type Fruit = Vec<DocAddress>;
    type Child = SegmentSort;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentSort> {
        let fast = reader.fast_fields();
        let mut columns = Vec::with_capacity(self.keys.len());
        for key in &self.keys {
            columns.push(if key.code == LAST_UPDATED {
                KeyColumn::LastUpdated(fast.i64(LAST_UPDATED_FIELD)?)
            } else {
                KeyColumn::Values(fast.str(&key.column())?.map(BytesColumn::from))
            });
        }
        Ok(SegmentSort {
            keys: self.keys.clone(),
            limit: self.limit,
            segment,
            columns,
            last_updated: fast.i64(LAST_UPDATED_FIELD)?,
            rows: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Vec<Sorted>>) -> tantivy::Result<Vec<DocAddress>> {
        let mut all: Vec<Sorted> = fruits.into_iter().flatten().collect();
        all.sort_by(|a, b| {
            compare(&self.keys, &a.0, &b.0)
                .then(a.1.cmp(&b.1))
                .then(a.2.cmp(&b.2))
        });
        Ok(all.into_iter().take(self.limit).map(|s| s.2).collect())
    }
}

/// The sort collector of one segment: term ordinals compare like their values within a
/// segment, so rows are ordered by ordinal and only the first `limit` are resolved to values.
pub struct SegmentSort {
    keys: Vec<SortKey>,
    limit: usize,
    segment: SegmentOrdinal,
    columns: Vec<KeyColumn>,
    last_updated: Column<i64>,
    rows: Vec<(Vec<Option<u64>>, i64, DocId)>,
}

impl SegmentCollector for SegmentSort {
    type Fruit = Vec<Sorted>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        let ords = self.columns.iter().map(|c| c.ordinal(doc)).collect();
        let last_updated = self.last_updated.first(doc).unwrap_or(i64::MIN);
        self.rows.push((ords, last_updated, doc));
    }

    fn harvest(mut self) -> Vec<Sorted> {
        let keys = &self.keys;
        let order = |a: &(Vec<Option<u64>>, i64, DocId), b: &(Vec<Option<u64>>, i64, DocId)| {
            compare(keys, &a.0, &b.0)
                .then(a.1.cmp(&b.1))
                .then(a.2.cmp(&b.2))
        };
        if self.rows.len() > self.limit && self.limit > 0 {
            self.rows.select_nth_unstable_by(self.limit - 1, order);
            self.rows.truncate(self.limit);
        }
        self.rows.sort_by(order);
        self.rows.truncate(self.limit);
        let mut out = Vec::with_capacity(self.rows.len());
        for (ords, last_updated, doc) in self.rows {
            let values = ords
                .iter()
                .zip(&self.columns)
                .map(|(ord, column)| column.value((*ord)?))
                .collect();
            out.push((values, last_updated, DocAddress::new(self.segment, doc)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(descending: bool) -> SortKey {
        SortKey {
            code: "x".into(),
            descending,
        }
    }

    proptest! {
        /// Missing values come last in both directions; present ones follow their order.
        #[test]
        fn missing_values_sort_last(values in proptest::collection::vec(proptest::option::of(0u8..20), 0..30),
                                    descending: bool) {
            let keys = [key(descending)];
            let mut rows: Vec<Vec<Option<u8>>> = values.iter().map(|v| vec![*v]).collect();
            rows.sort_by(|a, b| compare(&keys, a, b));
            let present: Vec<u8> = rows.iter().filter_map(|r| r[0]).collect();
            let first_missing = rows.iter().position(|r| r[0].is_none()).unwrap_or(rows.len());
            prop_assert!(rows[first_missing..].iter().all(|r| r[0].is_none()));
            let mut expected = present.clone();
            expected.sort();
            if descending {
                expected.reverse();
            }
            prop_assert_eq!(present, expected);
        }
    }
}
