//! A view's rows kept as Arrow data, changed one resource at a time: what a materialized view
//! of the server holds, so that SQL reads record batches instead of running the view.
//!
//! A [`Materialized`] is a list of segments, each a record batch with the key (the resource)
//! of every row and which rows are still live, and an open segment being built. Replacing a
//! resource's rows ([`Materialized::replace`]) marks its old rows dead wherever they are and
//! appends the new ones to the open segment, which is sealed into a batch once it holds
//! [`SEGMENT_ROWS`] rows. [`Materialized::batches`] gives the live rows as batches (a
//! segment's live rows are filtered once and kept until it changes again).
//!
//! Invariants:
//! - Every key's live rows are exactly the rows of its last [`Materialized::replace`]: a
//!   replace that fails (a cell that does not fit its column) changes nothing.
//! - A segment with more dead rows than live ones is rewritten without them, and so, at the
//!   next [`Materialized::settle`], is every segment that held the rows of a key removed with
//!   [`Materialized::forget`]: their bytes leave memory then, not at some later compaction
//!   (erasure).
//! - A key's live rows are contiguous, in order, and in one segment.

use crate::batch::BatchBuilder;
use crate::schema::{ColumnSpec, schema};
use crate::{Error, RecordBatch, SchemaRef};
use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// How many rows a segment holds once sealed.
pub const SEGMENT_ROWS: usize = 64 * 1024;

/// Where a row is: its segment (the open one is the last) and its index in it.
type Place = (u32, u32);

/// A view's rows by resource; see the module's documentation.
pub struct Materialized {
    schema: SchemaRef,
    sealed: Vec<Segment>,
    open: Open,
    /// The places of each key's live rows.
    places: HashMap<Arc<str>, Vec<Place>>,
    live: usize,
    /// The segments that held rows forgotten since the last [`Materialized::settle`].
    forgotten: Vec<u32>,
}

/// A sealed segment.
struct Segment {
    batch: RecordBatch,
    keys: Vec<Arc<str>>,
    live: Vec<bool>,
    dead: usize,
    /// Its live rows, when some are dead: made when asked for, dropped when a row dies.
    filtered: Option<RecordBatch>,
}

/// The segment being built.
struct Open {
    builder: BatchBuilder,
    keys: Vec<Arc<str>>,
    live: Vec<bool>,
}

impl Materialized {
    /// An empty table of `columns`.
    pub fn new(columns: &[ColumnSpec]) -> Materialized {
        let schema = schema(columns);
        Materialized {
            open: Open {
                builder: BatchBuilder::new(schema.clone()),
                keys: Vec::new(),
                live: Vec::new(),
            },
            schema,
            sealed: Vec::new(),
            places: HashMap::new(),
            live: 0,
            forgotten: Vec::new(),
        }
    }

    /// Its schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// How many live rows it holds.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether it holds no live row.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Makes `rows` the rows of `key` (none: the resource is gone or makes no row). A row
    /// whose cell does not fit its column fails the whole replace, which changes nothing.
    pub fn replace(&mut self, key: &str, rows: &[Vec<Value>]) -> Result<(), Error> {
        let start = self.open.builder.len();
        self.open.builder.push_all(rows)?;
        let old = self.places.remove(key);
        self.kill(old.unwrap_or_default());
        if rows.is_empty() {
            return Ok(());
        }
        let key: Arc<str> = Arc::from(key);
        let segment = self.sealed.len() as u32;
        let places = (start..start + rows.len())
            .map(|row| (segment, row as u32))
            .collect();
        self.open
            .keys
            .extend(std::iter::repeat_n(key.clone(), rows.len()));
        self.open.live.extend(std::iter::repeat_n(true, rows.len()));
        self.places.insert(key, places);
        self.live += rows.len();
        if self.open.builder.len() >= SEGMENT_ROWS {
            self.seal()?;
        }
        Ok(())
    }

    /// Removes the rows of `key`, and has [`Materialized::settle`] rewrite the segment that
    /// held them without them, so that their bytes leave memory (an erased resource).
    pub fn forget(&mut self, key: &str) {
        let old = self.places.remove(key).unwrap_or_default();
        for (segment, _) in &old {
            if !self.forgotten.contains(segment) {
                self.forgotten.push(*segment);
            }
        }
        self.kill(old);
    }

    /// Rewrites the segments that held forgotten rows without their dead rows (the open one
    /// is sealed), so that no forgotten row's bytes are held any more.
    pub fn settle(&mut self) -> Result<(), Error> {
        let open = self.sealed.len() as u32;
        for segment in std::mem::take(&mut self.forgotten) {
            if segment < open {
                self.compact(segment)?;
            } else {
                self.seal()?;
            }
        }
        Ok(())
    }

    /// Marks `places` dead, and compacts the sealed segments that are mostly dead then.
    fn kill(&mut self, places: Vec<Place>) {
        self.live -= places.len();
        let mut touched = Vec::new();
        for (segment, row) in places {
            let (segment, row) = (segment as usize, row as usize);
            match self.sealed.get_mut(segment) {
                Some(sealed) => {
                    sealed.live[row] = false;
                    sealed.dead += 1;
                    sealed.filtered = None;
                    touched.push(segment);
                }
                None => self.open.live[row] = false,
            }
        }
        touched.dedup();
        for segment in touched {
            let sealed = &self.sealed[segment];
            if sealed.dead * 2 > sealed.keys.len() {
                // Filtering a batch of its own schema does not fail.
                let _ = self.compact(segment as u32);
            }
        }
    }

    /// Rewrites sealed segment `segment` with its live rows only.
    fn compact(&mut self, segment: u32) -> Result<(), Error> {
        let sealed = &mut self.sealed[segment as usize];
        if sealed.dead == 0 {
            return Ok(());
        }
        let mask = BooleanArray::from(sealed.live.clone());
        sealed.batch = filter_record_batch(&sealed.batch, &mask)?;
        let keys: Vec<Arc<str>> = std::mem::take(&mut sealed.keys)
            .into_iter()
            .zip(&sealed.live)
            .filter_map(|(key, live)| live.then_some(key))
            .collect();
        sealed.live = vec![true; keys.len()];
        sealed.dead = 0;
        sealed.filtered = None;
        self.place(&keys, segment, 0);
        self.sealed[segment as usize].keys = keys;
        Ok(())
    }

    /// Records that the live rows `keys` (each key's rows contiguous and in order, as one
    /// replace appended them) are at `segment` from row `first` on.
    fn place(&mut self, keys: &[Arc<str>], segment: u32, first: u32) {
        let mut row = first;
        for run in keys.chunk_by(Arc::ptr_eq) {
            if let Some(places) = self.places.get_mut(&run[0]) {
                for place in places.iter_mut() {
                    *place = (segment, row);
                    row += 1;
                }
            }
        }
    }

    /// Seals the open segment: its live rows join the last sealed segment when both fit in
    /// one, else become a sealed segment of their own; a new segment opens.
    fn seal(&mut self) -> Result<(), Error> {
        let batch = self.open.builder.finish()?;
        let live = std::mem::take(&mut self.open.live);
        let mask = BooleanArray::from(live.clone());
        let batch = filter_record_batch(&batch, &mask)?;
        let keys: Vec<Arc<str>> = std::mem::take(&mut self.open.keys)
            .into_iter()
            .zip(&live)
            .filter_map(|(key, live)| live.then_some(key))
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        if let Some(last) = self.sealed.last_mut()
            && last.dead == 0
            && last.keys.len() + keys.len() <= SEGMENT_ROWS
        {
            let first = last.keys.len() as u32;
            last.batch = concat_batches(&self.schema, [&last.batch, &batch])?;
            last.keys.extend(keys.iter().cloned());
            last.live.resize(last.keys.len(), true);
            let segment = self.sealed.len() as u32 - 1;
            self.place(&keys, segment, first);
            return Ok(());
        }
        let segment = self.sealed.len() as u32;
        self.place(&keys, segment, 0);
        self.sealed.push(Segment {
            batch,
            live: vec![true; keys.len()],
            keys,
            dead: 0,
            filtered: None,
        });
        Ok(())
    }

    /// Its live rows, as record batches of its schema.
    pub fn batches(&mut self) -> Result<Vec<RecordBatch>, Error> {
        let mut batches = Vec::with_capacity(self.sealed.len() + 1);
        for sealed in &mut self.sealed {
            if sealed.dead == 0 {
                batches.push(sealed.batch.clone());
                continue;
            }
            if sealed.filtered.is_none() {
                let mask = BooleanArray::from(sealed.live.clone());
                sealed.filtered = Some(filter_record_batch(&sealed.batch, &mask)?);
            }
            batches.extend(sealed.filtered.clone());
        }
        if !self.open.keys.is_empty() {
            let batch = self.open.builder.snapshot()?;
            let mask = BooleanArray::from(self.open.live.clone());
            batches.push(filter_record_batch(&batch, &mask)?);
        }
        batches.retain(|batch| batch.num_rows() > 0);
        Ok(batches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::rows_of;
    use serde_json::json;

    fn columns() -> Vec<ColumnSpec> {
        vec![
            ColumnSpec {
                name: "id".into(),
                ty: Some("string".into()),
                collection: false,
            },
            ColumnSpec {
                name: "n".into(),
                ty: Some("integer".into()),
                collection: false,
            },
        ]
    }

    /// Every live row, sorted.
    fn rows(table: &mut Materialized) -> Vec<Vec<Value>> {
        let mut rows: Vec<Vec<Value>> = table
            .batches()
            .unwrap()
            .iter()
            .flat_map(|batch| rows_of(batch).unwrap())
            .collect();
        rows.sort_by_key(|row| row.iter().map(|cell| cell.to_string()).collect::<Vec<_>>());
        rows
    }

    fn row(id: &str, n: i64) -> Vec<Value> {
        vec![json!(id), json!(n)]
    }

    #[test]
    fn a_replace_takes_the_place_of_the_rows_before_it() {
        let mut table = Materialized::new(&columns());
        table.replace("a", &[row("a", 1), row("a", 2)]).unwrap();
        table.replace("b", &[row("b", 1)]).unwrap();
        table.replace("a", &[row("a", 3)]).unwrap();
        assert_eq!(rows(&mut table), vec![row("a", 3), row("b", 1)]);
        assert_eq!(table.len(), 2);
        table.replace("b", &[]).unwrap();
        assert_eq!(rows(&mut table), vec![row("a", 3)]);
    }

    #[test]
    fn a_row_that_does_not_fit_changes_nothing() {
        let mut table = Materialized::new(&columns());
        table.replace("a", &[row("a", 1)]).unwrap();
        let bad = vec![row("a", 2), vec![json!("a"), json!("not a number")]];
        assert!(table.replace("a", &bad).is_err());
        assert_eq!(rows(&mut table), vec![row("a", 1)]);
        table.replace("a", &[row("a", 4)]).unwrap();
        assert_eq!(rows(&mut table), vec![row("a", 4)]);
    }

    /// Across sealed segments, with compaction and forgetting: the rows equal those of a map
    /// of the last replace of each key.
    #[test]
    fn sealed_segments_keep_each_keys_last_rows() {
        let mut table = Materialized::new(&columns());
        let mut expected: HashMap<String, Vec<Vec<Value>>> = HashMap::new();
        let keys = 5_000u64;
        for round in 0..40u64 {
            for k in (round * 7919 % keys..keys).step_by(3 + round as usize % 5) {
                let key = format!("k{k}");
                let made: Vec<Vec<Value>> = (0..(k + round) % 4)
                    .map(|i| row(&key, (round * 10 + i) as i64))
                    .collect();
                table.replace(&key, &made).unwrap();
                expected.insert(key, made);
            }
            if round % 9 == 0 {
                let key = format!("k{}", round * 31 % keys);
                table.forget(&key);
                table.settle().unwrap();
                expected.remove(&key);
            }
        }
        assert!(!table.sealed.is_empty(), "the test seals segments");
        let mut want: Vec<Vec<Value>> = expected.into_values().flatten().collect();
        want.sort_by_key(|row| row.iter().map(|cell| cell.to_string()).collect::<Vec<_>>());
        assert_eq!(table.len(), want.len());
        assert_eq!(rows(&mut table), want);
    }

    #[test]
    fn forgetting_rewrites_the_segments_that_held_the_rows() {
        let mut table = Materialized::new(&columns());
        for k in 0..SEGMENT_ROWS as i64 {
            table.replace(&format!("k{k}"), &[row("x", k)]).unwrap();
        }
        assert_eq!(table.sealed.len(), 1);
        table.replace("secret", &[row("secret", -1)]).unwrap();
        table.forget("k7");
        table.forget("secret");
        table.settle().unwrap();
        assert_eq!(table.sealed[0].batch.num_rows(), SEGMENT_ROWS - 1);
        let held = table
            .sealed
            .iter()
            .map(|s| s.batch.num_rows())
            .sum::<usize>()
            + table.open.keys.len();
        assert_eq!(held, SEGMENT_ROWS - 1, "no dead row is held");
        assert_eq!(table.len(), SEGMENT_ROWS - 1);
    }
}
