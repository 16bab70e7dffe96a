//! The order of matches: the `_sort` keys (see `terms::Entries` for the values the index
//! keeps per parameter), each ascending or descending, then lastUpdated, then the key
//! (`Type/id`), which no two resources share. The order is total, so the pages of a search
//! neither repeat nor lose a match, whatever ties its keys have (the resources of one
//! transaction share their lastUpdated), and a page can start right after any match: a
//! [`Cursor`], the values of the last match of the page before.
//!
//! Per the FHIR search page a resource with several values sorts by its lowest value when
//! ascending and its highest when descending; resources without a value come last either way.
//!
//! Memory: a segment keeps at most twice the rows asked for (`offset + count + 1`), whatever
//! the number of matches, and a page after a cursor asks for `count + 1` rows however deep it
//! is.
//!
//! How: the `sort` JSON fast field holds, per parameter, the lowest value (`code`) and the
//! highest (`-code`) as ordered strings. A segment collects by term ordinal, resolves only the
//! rows it keeps to values, and the segments' rows are merged. A cursor is placed among each
//! segment's ordinals, so the next page keeps only the rows after it and costs the same at any
//! depth.

use super::index::{KEY_FIELD, LAST_UPDATED, LAST_UPDATED_FIELD, SORT_FIELD};
use std::cmp::Ordering;
use std::collections::HashMap;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{BytesColumn, Column, TermOrdHit};
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal, SegmentReader};

/// One sort key.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    /// The parameter's code.
    pub code: String,
    pub descending: bool,
}

/// Where a key's values are read in one segment.
enum KeyColumn {
    /// Sort values (or keys): ordinals compare like the values within the segment.
    Values(Option<BytesColumn>),
    /// The lastUpdated field.
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

    /// The values behind `ordinals` (each comparable across segments), read in one pass over
    /// the column's dictionary: sorted, each of its blocks is decoded once rather than once
    /// per value (a sort key's dictionary, the resources' keys, holds every resource).
    fn values(&self, mut ordinals: Vec<u64>) -> HashMap<u64, Vec<u8>> {
        ordinals.sort_unstable();
        ordinals.dedup();
        match self {
            KeyColumn::Values(Some(column)) => {
                let mut found = HashMap::with_capacity(ordinals.len());
                let mut wanted = ordinals.iter();
                // Called once per ordinal, in order, while they are found.
                let _complete = column
                    .dictionary()
                    .sorted_ords_to_term_cb(&ordinals, |bytes| {
                        if let Some(ordinal) = wanted.next() {
                            found.insert(*ordinal, bytes.to_vec());
                        }
                    });
                found
            }
            KeyColumn::Values(None) => HashMap::new(),
            KeyColumn::LastUpdated(_) => ordinals
                .into_iter()
                .map(|ordinal| (ordinal, ordinal.to_be_bytes().to_vec()))
                .collect(),
        }
    }

    /// Where `value` (a value of this column, from any segment) falls among the ordinals of
    /// this segment.
    fn mark(&self, value: Option<&[u8]>) -> tantivy::Result<Mark> {
        let Some(value) = value else {
            return Ok(Mark::Missing);
        };
        Ok(match self {
            KeyColumn::Values(None) => Mark::At {
                ordinal: 0,
                exact: false,
            },
            KeyColumn::Values(Some(column)) => match column.dictionary().term_ord_or_next(value)? {
                TermOrdHit::Exact(ordinal) => Mark::At {
                    ordinal,
                    exact: true,
                },
                TermOrdHit::Next(ordinal) => Mark::At {
                    ordinal,
                    exact: false,
                },
            },
            KeyColumn::LastUpdated(_) => Mark::At {
                ordinal: u64::from_be_bytes(value.try_into().map_err(|_| {
                    tantivy::TantivyError::InvalidArgument("not a lastUpdated value".into())
                })?),
                exact: true,
            },
        })
    }
}

/// An i64 as a u64 of the same order.
fn ordered(value: i64) -> u64 {
    (value as u64) ^ (1 << 63)
}

/// A value of a cursor placed among a segment's ordinals.
#[derive(Debug, Clone, Copy)]
enum Mark {
    /// No value (missing values sort last).
    Missing,
    /// The value has this ordinal (`exact`), or lies just before it.
    At { ordinal: u64, exact: bool },
}

/// How a row's ordinal compares with a mark, ascending.
fn against(ordinal: Option<u64>, mark: Mark) -> Ordering {
    match (ordinal, mark) {
        (None, Mark::Missing) => Ordering::Equal,
        (None, Mark::At { .. }) => Ordering::Greater,
        (Some(_), Mark::Missing) => Ordering::Less,
        (Some(o), Mark::At { ordinal, exact }) => match o.cmp(&ordinal) {
            Ordering::Equal if exact => Ordering::Equal,
            Ordering::Less => Ordering::Less,
            _ => Ordering::Greater,
        },
    }
}

/// Compares two rows of sort values: per column, missing values last, descending columns
/// reversed.
fn compare<T: Ord>(descending: &[bool], a: &[Option<T>], b: &[Option<T>]) -> Ordering {
    for ((descending, a), b) in descending.iter().zip(a).zip(b) {
        let order = match (a, b) {
            (Some(a), Some(b)) if *descending => b.cmp(a),
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

/// Where a page starts: the sort values of the match before it, one per column of the order
/// (the keys, lastUpdated, the key). Its text form is what next links carry in `_cursor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(Vec<Option<Vec<u8>>>);

impl Cursor {
    pub(super) fn new(values: Vec<Option<Vec<u8>>>) -> Cursor {
        Cursor(values)
    }

    /// The text form: each value in hexadecimal (`-` when missing), separated by dots.
    pub fn encode(&self) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|value| match value {
                None => "-".to_string(),
                Some(bytes) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
            })
            .collect();
        parts.join(".")
    }

    /// Reads the text form.
    pub fn parse(text: &str) -> Result<Cursor, String> {
        let invalid = || format!("'{text}' is not a paging cursor of this server");
        let value = |part: &str| -> Result<Option<Vec<u8>>, String> {
            if part == "-" {
                return Ok(None);
            }
            if !part.len().is_multiple_of(2) {
                return Err(invalid());
            }
            (0..part.len())
                .step_by(2)
                .map(|at| {
                    part.get(at..at + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or_else(invalid)
                })
                .collect::<Result<Vec<u8>, String>>()
                .map(Some)
        };
        text.split('.')
            .map(value)
            .collect::<Result<_, _>>()
            .map(Cursor)
    }
}

/// The order of a search and the part of it a page wants.
pub struct SortCollector {
    /// The `_sort` keys, then lastUpdated; the key (`Type/id`) follows them all.
    keys: Vec<SortKey>,
    /// How many rows to keep, from the first after `after`.
    limit: usize,
    after: Option<Cursor>,
}

impl SortCollector {
    /// The first `limit` matches in the order of `keys` (the `_sort` keys, maybe none), after
    /// `after` when given. A cursor made for another order is an error.
    pub fn new(
        keys: &[SortKey],
        limit: usize,
        after: Option<Cursor>,
    ) -> Result<SortCollector, String> {
        let mut keys = keys.to_vec();
        keys.push(SortKey {
            code: LAST_UPDATED.to_string(),
            descending: false,
        });
        if after
            .as_ref()
            .is_some_and(|cursor| cursor.0.len() != keys.len() + 1)
        {
            return Err("the paging cursor belongs to another search".into());
        }
        Ok(SortCollector {
            keys,
            limit: limit.max(1),
            after,
        })
    }

    /// Ascending or descending, per column.
    fn descending(&self) -> Vec<bool> {
        let mut descending: Vec<bool> = self.keys.iter().map(|k| k.descending).collect();
        descending.push(false); // the key
        descending
    }
}

/// A match with its sort values, one per column.
pub type Sorted = (Vec<Option<Vec<u8>>>, DocAddress);

impl Collector for SortCollector {
    type Fruit = Vec<Sorted>;
    type Child = SegmentSort;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentSort> {
        let fast = reader.fast_fields();
        let mut columns = Vec::with_capacity(self.keys.len() + 1);
        for key in &self.keys {
            columns.push(if key.code == LAST_UPDATED {
                KeyColumn::LastUpdated(fast.i64(LAST_UPDATED_FIELD)?)
            } else if key.descending {
                let column = format!("{SORT_FIELD}.-{}", key.code);
                KeyColumn::Values(fast.str(&column)?.map(BytesColumn::from))
            } else {
                let column = format!("{SORT_FIELD}.{}", key.code);
                KeyColumn::Values(fast.str(&column)?.map(BytesColumn::from))
            });
        }
        columns.push(KeyColumn::Values(
            fast.str(KEY_FIELD)?.map(BytesColumn::from),
        ));
        let after = match &self.after {
            Some(cursor) => Some(
                columns
                    .iter()
                    .zip(&cursor.0)
                    .map(|(column, value)| column.mark(value.as_deref()))
                    .collect::<tantivy::Result<Vec<Mark>>>()?,
            ),
            None => None,
        };
        Ok(SegmentSort {
            descending: self.descending(),
            limit: self.limit,
            segment,
            columns,
            after,
            rows: Vec::new(),
            worst: None,
            row: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Vec<Sorted>>) -> tantivy::Result<Vec<Sorted>> {
        let descending = self.descending();
        let mut all: Vec<Sorted> = fruits.into_iter().flatten().collect();
        all.sort_by(|a, b| compare(&descending, &a.0, &b.0));
        all.truncate(self.limit);
        Ok(all)
    }
}

/// A row of one segment: the ordinals of its values, one per column, and its document.
type Row = (Box<[Option<u64>]>, DocId);

/// The sort collector of one segment: term ordinals compare like their values within a
/// segment, so rows are ordered by ordinal and only the first `limit` are resolved to values.
pub struct SegmentSort {
    descending: Vec<bool>,
    limit: usize,
    segment: SegmentOrdinal,
    columns: Vec<KeyColumn>,
    /// The cursor's values placed in this segment: only rows after it are kept.
    after: Option<Vec<Mark>>,
    /// At most `2 * limit` rows: past that, the best `limit` are kept.
    rows: Vec<Row>,
    /// The last row kept when rows were last cut: a row after it cannot be among the first.
    worst: Option<Box<[Option<u64>]>>,
    /// The row being collected.
    row: Vec<Option<u64>>,
}

impl SegmentSort {
    /// Keeps the best `limit` rows.
    fn cut(&mut self) {
        let descending = &self.descending;
        let order = |a: &Row, b: &Row| compare(descending, &a.0, &b.0);
        if self.rows.len() > self.limit {
            self.rows.select_nth_unstable_by(self.limit - 1, order);
            self.rows.truncate(self.limit);
            // The `limit`th row, which the selection put last.
            self.worst = Some(self.rows[self.limit - 1].0.clone());
        }
    }

    /// Whether the row being collected comes after the cursor.
    fn after_cursor(&self) -> bool {
        let Some(marks) = &self.after else {
            return true;
        };
        for ((ordinal, mark), descending) in self.row.iter().zip(marks).zip(&self.descending) {
            let order = match (ordinal, mark) {
                (Some(_), Mark::At { .. }) if *descending => against(*ordinal, *mark).reverse(),
                _ => against(*ordinal, *mark),
            };
            match order {
                Ordering::Equal => continue,
                order => return order == Ordering::Greater,
            }
        }
        false // the cursor's own match
    }
}

impl SegmentCollector for SegmentSort {
    type Fruit = Vec<Sorted>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        self.row.clear();
        for column in &self.columns {
            self.row.push(column.ordinal(doc));
        }
        if !self.after_cursor() {
            return;
        }
        if let Some(worst) = &self.worst
            && compare(&self.descending, &self.row, worst) != Ordering::Less
        {
            return;
        }
        self.rows.push((self.row.clone().into_boxed_slice(), doc));
        if self.rows.len() >= self.limit.saturating_mul(2) {
            self.cut();
        }
    }

    fn harvest(mut self) -> Vec<Sorted> {
        self.cut();
        let descending = &self.descending;
        self.rows.sort_by(|a, b| compare(descending, &a.0, &b.0));
        let resolved: Vec<HashMap<u64, Vec<u8>>> = self
            .columns
            .iter()
            .enumerate()
            .map(|(key, column)| {
                column.values(self.rows.iter().filter_map(|(o, _)| o[key]).collect())
            })
            .collect();
        let mut out = Vec::with_capacity(self.rows.len());
        for (ordinals, doc) in self.rows {
            let values = ordinals
                .iter()
                .zip(&resolved)
                .map(|(ordinal, found)| found.get(&(*ordinal)?).cloned())
                .collect();
            out.push((values, DocAddress::new(self.segment, doc)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::index::{Change, SearchIndex, keys_of};
    use crate::search::terms::Entries;
    use proptest::prelude::*;
    use tantivy::query::AllQuery;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Missing values come last in both directions; present ones follow their order.
        #[test]
        fn missing_values_sort_last(values in proptest::collection::vec(proptest::option::of(0u8..20), 0..30),
                                    descending: bool) {
            let mut rows: Vec<Vec<Option<u8>>> = values.iter().map(|v| vec![*v]).collect();
            rows.sort_by(|a, b| compare(&[descending], a, b));
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

        #[test]
        fn cursors_read_back(values in proptest::collection::vec(
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..12)), 1..5)) {
            let cursor = Cursor(values);
            prop_assert_eq!(Cursor::parse(&cursor.encode()).unwrap(), cursor);
        }

        /// Pages that each start after the last match of the one before hold every match once,
        /// in the order of the whole: with ties on every key (resources written together share
        /// their lastUpdated), missing values, both directions, over several segments.
        #[test]
        fn pages_after_cursors_are_the_whole_order(
            documents in proptest::collection::vec(
                (0i64..3, proptest::option::of(0u8..4)), 1..40),
            descending: bool,
            sorted: bool,
            count in 1usize..9,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let (index, _) = SearchIndex::open(dir.path(), &Default::default()).unwrap();
            // Three commits: three segments.
            for (part, chunk) in documents.chunks(documents.len().div_ceil(3)).enumerate() {
                let changes = chunk.iter().enumerate().map(|(n, (last_updated, value))| {
                    let mut entries = Entries::default();
                    if let Some(value) = value {
                        entries.sort.push(("x".into(), format!("v{value}")));
                        entries.sort.push(("-x".into(), format!("v{value}")));
                    }
                    Change::Upsert {
                        key: format!("Observation/{part}-{n}"),
                        resource_type: "Observation".into(),
                        last_updated: *last_updated,
                        entries,
                        text: Default::default(),
                        replaces: true,
                    }
                }).collect();
                index.apply(changes, part as u64 + 1).unwrap();
            }
            let searcher = index.searcher();
            let keys = if sorted {
                vec![SortKey { code: "x".into(), descending }]
            } else {
                Vec::new()
            };
            let page = |limit: usize, after: Option<Cursor>| -> Vec<Sorted> {
                let collector = SortCollector::new(&keys, limit, after).unwrap();
                searcher.search(&AllQuery, &collector).unwrap()
            };
            let whole = page(documents.len() + 1, None);
            prop_assert_eq!(whole.len(), documents.len());
            let mut paged = Vec::new();
            let mut after = None;
            loop {
                let rows = page(count, after);
                if rows.is_empty() {
                    break;
                }
                after = rows.last().map(|(values, _)| Cursor(values.clone()));
                paged.extend(rows);
            }
            let addresses = |rows: &[Sorted]| -> Vec<String> {
                let addresses: Vec<_> = rows.iter().map(|(_, a)| *a).collect();
                keys_of(&searcher, &addresses).unwrap()
            };
            prop_assert_eq!(addresses(&paged), addresses(&whole));
            // The order is the one asked for: the key's values, then lastUpdated, then the key.
            let expected: Vec<(Option<u8>, i64, String)> = {
                let mut all: Vec<(Option<u8>, i64, String)> = documents
                    .chunks(documents.len().div_ceil(3))
                    .enumerate()
                    .flat_map(|(part, chunk)| chunk.iter().enumerate().map(move |(n, (t, v))| {
                        (if sorted { *v } else { None }, *t, format!("Observation/{part}-{n}"))
                    }))
                    .collect();
                all.sort_by(|a, b| {
                    compare(&[descending], &[a.0], &[b.0]).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
                });
                all
            };
            let expected: Vec<String> = expected.into_iter().map(|(_, _, key)| key).collect();
            prop_assert_eq!(addresses(&whole), expected);
        }
    }

    #[test]
    fn a_cursor_of_another_order_is_refused() {
        assert!(Cursor::parse("0a.-.zz").is_err());
        assert!(Cursor::parse("abc").is_err());
        let cursor = Cursor::parse("0a.-.0b").unwrap();
        assert!(SortCollector::new(&[], 10, Some(cursor.clone())).is_err());
        let key = SortKey {
            code: "x".into(),
            descending: false,
        };
        assert!(SortCollector::new(&[key], 10, Some(cursor)).is_ok());
    }
}
