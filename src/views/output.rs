//! The formats `$run` (and `$sql`, and `$viewdefinition-export`) write rows in: `json` (one
//! array of objects), `ndjson` (an object a line), `csv` (RFC 4180, with a header line unless
//! asked not to) and `parquet` (a Parquet file, written a row group at a time by the analytics
//! crate, with the Arrow schema of the view's columns: `fhirlake_analytics::schema`). An
//! [`Encoder`] writes row after row into a buffer the caller drains, so that a run streams what
//! it makes; for Parquet the buffer fills a row group at a time.
//!
//! In CSV, a null is an empty field, a string its text, a number or boolean its JSON text, and
//! an object or array (a `collection` column, an element) its JSON.

use super::{Column, ViewError};
use crate::fhir::FhirError;
use fhirlake_analytics::parquet_file::{ParquetWriter, SharedBuffer};
use fhirlake_analytics::{RecordBatch, SchemaRef};
use serde_json::{Map, Value};

/// An output format of rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Ndjson,
    Csv,
    Parquet,
}

impl Format {
    /// The format `_format` names (its short name or its media type), if it is one of these.
    pub fn parse(name: &str) -> Option<Format> {
        Some(match name {
            "json" | "application/json" | "application/fhir+json" => Format::Json,
            "ndjson"
            | "application/x-ndjson"
            | "application/ndjson"
            | "application/fhir+ndjson" => Format::Ndjson,
            "csv" | "text/csv" => Format::Csv,
            "parquet" | "application/vnd.apache.parquet" => Format::Parquet,
            _ => return None,
        })
    }

    /// Its media type.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Parquet => "application/vnd.apache.parquet",
        }
    }

    /// The extension of a file of it.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Ndjson => "ndjson",
            Format::Csv => "csv",
            Format::Parquet => "parquet",
        }
    }
}

/// Writes rows in a [`Format`] into its buffer.
pub struct Encoder {
    format: Format,
    names: Vec<String>,
    header: bool,
    opened: bool,
    rows: usize,
    buffer: Vec<u8>,
    /// The Parquet writer and the buffer it writes into (Parquet only).
    parquet: Option<(ParquetWriter<SharedBuffer>, SharedBuffer)>,
}

impl Encoder {
    /// An encoder of rows with `columns`; `header`: whether CSV starts with the names.
    pub fn new(format: Format, columns: &[Column], header: bool) -> Result<Encoder, FhirError> {
        Encoder::of_schema(format, fhirlake_analytics::schema::schema(columns), header)
    }

    /// An encoder of rows (or record batches) of an Arrow schema (a SQL result's).
    pub fn of_schema(
        format: Format,
        schema: SchemaRef,
        header: bool,
    ) -> Result<Encoder, FhirError> {
        let names = schema.fields().iter().map(|f| f.name().clone()).collect();
        let parquet = match format {
            Format::Parquet => {
                let out = SharedBuffer::default();
                let writer = ParquetWriter::new(out.clone(), schema).map_err(failed)?;
                Some((writer, out))
            }
            _ => None,
        };
        Ok(Encoder {
            format,
            names,
            header,
            opened: false,
            rows: 0,
            buffer: Vec::new(),
            parquet,
        })
    }

    /// How many rows it wrote.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// What it wrote since the last take (the opening, when nothing was written yet).
    pub fn take(&mut self) -> Vec<u8> {
        self.open();
        match &self.parquet {
            Some((_, out)) => out.take(),
            None => std::mem::take(&mut self.buffer),
        }
    }

    /// The bytes waiting in its buffer.
    pub fn pending(&self) -> usize {
        match &self.parquet {
            Some((_, out)) => out.len(),
            None => self.buffer.len(),
        }
    }

    /// What starts the output, once, before the first row.
    fn open(&mut self) {
        if std::mem::replace(&mut self.opened, true) {
            return;
        }
        match self.format {
            Format::Json => self.buffer.push(b'['),
            Format::Csv if self.header => {
                let names: Vec<Value> = self.names.iter().cloned().map(Value::String).collect();
                self.csv_line(&names);
            }
            _ => {}
        }
    }

    /// Writes one row. A cell that does not fit its column's type (Parquet: a `boolean` column
    /// whose path gives a string) is a fault of the view, and the row is not written.
    pub fn row(&mut self, row: &[Value]) -> Result<(), FhirError> {
        self.open();
        match self.format {
            Format::Json | Format::Ndjson => {
                if self.format == Format::Json && self.rows > 0 {
                    self.buffer.push(b',');
                }
                let object: Map<String, Value> = self
                    .names
                    .iter()
                    .cloned()
                    .zip(row.iter().cloned())
                    .collect();
                serde_json::to_writer(&mut self.buffer, &object).expect("JSON into memory");
                if self.format == Format::Ndjson {
                    self.buffer.push(b'\n');
                }
            }
            Format::Csv => self.csv_line(row),
            Format::Parquet => {
                let (writer, _) = self.parquet.as_mut().expect("a Parquet encoder's writer");
                writer.row(row).map_err(|error| match error {
                    fhirlake_analytics::Error::Cell { .. } => {
                        ViewError::evaluation("", error.to_string()).to_fhir()
                    }
                    other => failed(other),
                })?;
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// Writes the rows of a record batch of its schema.
    pub fn batch(&mut self, batch: &RecordBatch) -> Result<(), FhirError> {
        if let Some((writer, _)) = &mut self.parquet {
            self.opened = true;
            writer.batch(batch).map_err(failed)?;
            self.rows += batch.num_rows();
            return Ok(());
        }
        for row in fhirlake_analytics::batch::rows_of(batch).map_err(failed)? {
            self.row(&row)?;
        }
        Ok(())
    }

    /// The last bytes: what closes the output.
    pub fn finish(mut self) -> Result<Vec<u8>, FhirError> {
        self.open();
        if let Some((writer, out)) = self.parquet.take() {
            writer.finish().map_err(failed)?;
            return Ok(out.take());
        }
        if self.format == Format::Json {
            self.buffer.push(b']');
        }
        Ok(self.buffer)
    }

    fn csv_line(&mut self, fields: &[Value]) {
        let mut writer = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(&mut self.buffer);
        let texts = fields.iter().map(|field| match field {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        writer.write_record(texts).expect("CSV into memory");
        writer.flush().expect("CSV into memory");
    }
}

/// Arrow or Parquet failing on data it was given in memory: a defect, not the client's fault.
fn failed(error: fhirlake_analytics::Error) -> FhirError {
    FhirError::internal(format!("the Parquet output failed: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn columns() -> Vec<Column> {
        ["id", "note"]
            .iter()
            .map(|name| Column {
                name: name.to_string(),
                ty: None,
                collection: false,
            })
            .collect()
    }

    fn encode(format: Format, header: bool, rows: &[Vec<Value>]) -> String {
        let mut encoder = Encoder::new(format, &columns(), header).unwrap();
        let mut out = encoder.take();
        for row in rows {
            encoder.row(row).unwrap();
            out.extend(encoder.take());
        }
        out.extend(encoder.finish().unwrap());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn each_format_writes_every_row() {
        let rows = vec![
            vec![json!("a"), json!("x, \"y\"")],
            vec![json!("b"), Value::Null],
            vec![json!(1.5), json!(["p", "q"])],
        ];
        assert_eq!(
            encode(Format::Json, true, &rows),
            r#"[{"id":"a","note":"x, \"y\""},{"id":"b","note":null},{"id":1.5,"note":["p","q"]}]"#
        );
        assert_eq!(
            encode(Format::Ndjson, true, &rows[..2]),
            "{\"id\":\"a\",\"note\":\"x, \\\"y\\\"\"}\n{\"id\":\"b\",\"note\":null}\n"
        );
        assert_eq!(
            encode(Format::Csv, true, &rows),
            "id,note\r\na,\"x, \"\"y\"\"\"\r\nb,\r\n1.5,\"[\"\"p\"\",\"\"q\"\"]\"\r\n"
        );
        assert_eq!(encode(Format::Csv, false, &rows[1..2]), "b,\r\n");
    }

    #[test]
    fn no_rows_is_an_empty_array_or_only_a_header() {
        assert_eq!(encode(Format::Json, true, &[]), "[]");
        assert_eq!(encode(Format::Ndjson, true, &[]), "");
        assert_eq!(encode(Format::Csv, true, &[]), "id,note\r\n");
    }

    #[test]
    fn parquet_is_a_whole_file_and_refuses_cells_of_another_type() {
        let columns = vec![
            Column {
                name: "id".into(),
                ty: None,
                collection: false,
            },
            Column {
                name: "active".into(),
                ty: Some("boolean".into()),
                collection: false,
            },
        ];
        let mut encoder = Encoder::new(Format::Parquet, &columns, true).unwrap();
        let mut out = encoder.take();
        encoder.row(&[json!("a"), json!(true)]).unwrap();
        let error = encoder.row(&[json!("b"), json!("yes")]).unwrap_err();
        assert_eq!(error.status, 400);
        assert!(error.to_string().contains("active"), "{error}");
        assert_eq!(encoder.rows(), 1);
        out.extend(encoder.take());
        out.extend(encoder.finish().unwrap());
        assert!(out.starts_with(b"PAR1") && out.ends_with(b"PAR1"));
    }
}
