//! The formats `$run` writes rows in: `json` (one array of objects), `ndjson` (an object a
//! line) and `csv` (RFC 4180, with a header line unless asked not to). An [`Encoder`] writes
//! row after row into a buffer the caller drains, so that a run streams what it makes.
//!
//! In CSV, a null is an empty field, a string its text, a number or boolean its JSON text, and
//! an object or array (a `collection` column, an element) its JSON.

use super::Column;
use serde_json::{Map, Value};

/// An output format of `$run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Ndjson,
    Csv,
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
            _ => return None,
        })
    }

    /// Its media type.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
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
}

impl Encoder {
    /// An encoder of rows with `columns`; `header`: whether CSV starts with the names.
    pub fn new(format: Format, columns: &[Column], header: bool) -> Encoder {
        Encoder {
            format,
            names: columns.iter().map(|c| c.name.clone()).collect(),
            header,
            opened: false,
            rows: 0,
            buffer: Vec::new(),
        }
    }

    /// How many rows it wrote.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// What it wrote since the last take (the opening, when nothing was written yet).
    pub fn take(&mut self) -> Vec<u8> {
        self.open();
        std::mem::take(&mut self.buffer)
    }

    /// The bytes waiting in its buffer.
    pub fn pending(&self) -> usize {
        self.buffer.len()
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

    /// Writes one row.
    pub fn row(&mut self, row: &[Value]) {
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
        }
        self.rows += 1;
    }

    /// The last bytes: what closes the output.
    pub fn finish(mut self) -> Vec<u8> {
        self.open();
        if self.format == Format::Json {
            self.buffer.push(b']');
        }
        self.buffer
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
        let mut encoder = Encoder::new(format, &columns(), header);
        let mut out = encoder.take();
        for row in rows {
            encoder.row(row);
            out.extend(encoder.take());
        }
        out.extend(encoder.finish());
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
}
