//! fhirlake's analytics: the rows of SQL on FHIR views as Apache Arrow data, written to
//! Parquet and queried with SQL by Apache DataFusion.
//!
//! A crate of its own so that DataFusion, Arrow and Parquet (a few hundred thousand lines)
//! are built once and never again when the server crate changes; it does not depend on the
//! server crate (the server depends on it). Rows come in and go out as `serde_json` values,
//! as the server's view evaluator makes them:
//!
//! - [`schema`]: the Arrow schema of a view's columns (FHIR `type` to Arrow type,
//!   `collection` to a list).
//! - [`batch`]: a [`batch::BatchBuilder`] turns rows of JSON cells into Arrow record batches,
//!   and [`batch::rows_of`] turns a batch back into rows of JSON cells.
//! - [`parquet_file`]: a [`parquet_file::ParquetWriter`] writes rows (or batches) to any
//!   `Write` as a Parquet file, one row group at a time, so that memory is bounded by a row
//!   group, never by the file.
//! - [`materialized`]: a [`materialized::Materialized`] keeps a view's rows as Arrow data,
//!   changed one resource at a time.
//! - [`sql`]: the [`sql::Engine`], read-only SQL over named tables whose rows the caller
//!   produces on demand or holds as batches, within a time and a memory limit.

pub mod batch;
pub mod materialized;
pub mod parquet_file;
pub mod schema;
pub mod sql;

pub use datafusion::arrow::datatypes::SchemaRef;
pub use datafusion::arrow::record_batch::RecordBatch;
pub use schema::ColumnSpec;

/// What went wrong turning rows into Arrow data or Parquet.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A cell's value does not fit its column's type.
    #[error("column '{column}': {why}")]
    Cell { column: String, why: String },
    /// Arrow or Parquet failed (writing to the output included).
    #[error("{0}")]
    Write(String),
}

impl From<datafusion::arrow::error::ArrowError> for Error {
    fn from(error: datafusion::arrow::error::ArrowError) -> Error {
        Error::Write(error.to_string())
    }
}

impl From<datafusion::parquet::errors::ParquetError> for Error {
    fn from(error: datafusion::parquet::errors::ParquetError) -> Error {
        Error::Write(error.to_string())
    }
}
