//! Rows to a Parquet file, written one row group at a time.
//!
//! A [`ParquetWriter`] gathers rows into Arrow batches of [`BATCH_ROWS`] and hands them to
//! Parquet's `ArrowWriter`, which encodes them into the row group in progress and writes the
//! group out to the output once it holds [`ROW_GROUP_ROWS`] rows or about
//! [`ROW_GROUP_BYTES`] encoded bytes. Memory so holds one row group and one batch, whatever the
//! file's size. The file is Snappy-compressed (what Spark, Trino, Athena and DuckDB all read
//! by default) and its schema is the view's ([`crate::schema`]).
//!
//! [`SharedBuffer`] is an output a caller drains while the writer writes (to stream a file
//! over HTTP chunk by chunk).

use crate::Error;
use crate::batch::BatchBuilder;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use serde_json::Value;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

/// How many rows a row group holds at most.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;

/// About how many encoded bytes a row group holds at most.
pub const ROW_GROUP_BYTES: usize = 32 * 1024 * 1024;

/// How many rows are gathered into one Arrow batch before they are encoded.
pub const BATCH_ROWS: usize = 8 * 1024;

/// Writes a Parquet file of rows to `W`.
pub struct ParquetWriter<W: Write + Send> {
    writer: ArrowWriter<W>,
    schema: SchemaRef,
    /// Made by the first row (a writer of batches needs none: its schema may have types a
    /// builder of rows does not make).
    builder: Option<BatchBuilder>,
    rows: usize,
}

impl<W: Write + Send> ParquetWriter<W> {
    /// A writer of rows of `schema` to `out`.
    pub fn new(out: W, schema: SchemaRef) -> Result<ParquetWriter<W>, Error> {
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
            .set_created_by("fhirlake".into())
            .build();
        Ok(ParquetWriter {
            writer: ArrowWriter::try_new(out, schema.clone(), Some(properties))?,
            schema,
            builder: None,
            rows: 0,
        })
    }

    /// How many rows it took.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Adds one row (a cell per column); a row that does not fit the schema is refused whole.
    pub fn row(&mut self, row: &[Value]) -> Result<(), Error> {
        let schema = &self.schema;
        let builder = self
            .builder
            .get_or_insert_with(|| BatchBuilder::new(schema.clone()));
        builder.push(row)?;
        self.rows += 1;
        if builder.len() >= BATCH_ROWS {
            self.encode()?;
        }
        Ok(())
    }

    /// Adds a batch of rows of the same schema.
    pub fn batch(&mut self, batch: &RecordBatch) -> Result<(), Error> {
        self.encode()?;
        self.rows += batch.num_rows();
        Ok(self.writer.write(batch)?)
    }

    /// Encodes the rows gathered so far into the row group in progress.
    fn encode(&mut self) -> Result<(), Error> {
        if let Some(builder) = self.builder.as_mut().filter(|b| !b.is_empty()) {
            let batch = builder.finish()?;
            self.writer.write(&batch)?;
        }
        Ok(())
    }

    /// Writes what is left and the footer; gives the output back.
    pub fn finish(mut self) -> Result<W, Error> {
        self.encode()?;
        Ok(self.writer.into_inner()?)
    }
}

/// An output that a [`ParquetWriter`] writes into and its owner drains.
#[derive(Clone, Default)]
pub struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    /// What was written since the last take.
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// How many bytes wait.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no byte waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::rows_of;
    use crate::schema::{ColumnSpec, schema};
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use serde_json::json;

    #[test]
    fn rows_are_written_in_row_groups_and_read_back() {
        let columns = vec![
            ColumnSpec {
                name: "id".into(),
                ty: None,
                collection: false,
            },
            ColumnSpec {
                name: "n".into(),
                ty: Some("integer".into()),
                collection: false,
            },
        ];
        let out = SharedBuffer::default();
        let mut writer = ParquetWriter::new(out.clone(), schema(&columns)).unwrap();
        let mut file = out.take();
        let total = ROW_GROUP_ROWS + 10;
        for n in 0..total {
            writer.row(&[json!(format!("r{n}")), json!(n)]).unwrap();
            file.extend(out.take());
        }
        // A full row group went out while rows were still coming.
        assert!(file.starts_with(b"PAR1") && file.len() > 4);
        assert_eq!(writer.rows(), total);
        writer.finish().unwrap();
        file.extend(out.take());
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(file)).unwrap();
        assert_eq!(reader.metadata().num_row_groups(), 2);
        let mut rows = Vec::new();
        for batch in reader.build().unwrap() {
            rows.extend(rows_of(&batch.unwrap()).unwrap());
        }
        assert_eq!(rows.len(), total);
        assert_eq!(
            rows[total - 1],
            vec![json!(format!("r{}", total - 1)), json!(total - 1)]
        );
    }
}
