//! Rows of JSON cells to Arrow record batches and back.
//!
//! A [`BatchBuilder`] takes rows as the view evaluator makes them (one JSON value a column,
//! an array for a `collection` column) and gives a [`RecordBatch`] of the schema
//! ([`crate::schema`]) when asked. Each row is converted whole before any of it is appended:
//! a row with a cell that does not fit its column is refused and leaves the builder as it
//! was. [`rows_of`] turns any record batch (a SQL result's) back into rows of JSON cells.

use crate::Error;
use datafusion::arrow::array::{
    Array, ArrayBuilder, ArrayRef, AsArray, BooleanBuilder, Float64Builder, Int32Builder,
    Int64Builder, ListBuilder, StringBuilder, TimestampMicrosecondBuilder, make_builder,
};
use datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos;
use datafusion::arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, SchemaRef,
    UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{Number, Value};

/// Builds record batches of one schema from rows of JSON cells.
pub struct BatchBuilder {
    schema: SchemaRef,
    builders: Vec<Box<dyn ArrayBuilder>>,
    rows: usize,
}

/// A cell converted to its column's type, ready to append.
enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Micros(i64),
    List(Vec<Cell>),
}

impl BatchBuilder {
    /// A builder of batches of `schema` (whose types are those of [`crate::schema`]).
    pub fn new(schema: SchemaRef) -> BatchBuilder {
        let builders = builders(&schema);
        BatchBuilder {
            schema,
            builders,
            rows: 0,
        }
    }

    /// The schema of its batches.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// How many rows wait for the next batch.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row waits.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Adds one row: a cell per column, in the schema's order.
    pub fn push(&mut self, row: &[Value]) -> Result<(), Error> {
        let cells = self.convert(row)?;
        self.append_row(cells);
        Ok(())
    }

    /// Adds `rows`, all or none: a row with a cell that does not fit its column refuses them
    /// all.
    pub fn push_all(&mut self, rows: &[Vec<Value>]) -> Result<(), Error> {
        let converted = rows
            .iter()
            .map(|row| self.convert(row))
            .collect::<Result<Vec<_>, Error>>()?;
        for cells in converted {
            self.append_row(cells);
        }
        Ok(())
    }

    /// A row's cells converted to the types of their columns.
    fn convert(&self, row: &[Value]) -> Result<Vec<Cell>, Error> {
        let fields = self.schema.fields();
        if row.len() != fields.len() {
            return Err(Error::Write(format!(
                "a row of {} cells for {} columns",
                row.len(),
                fields.len()
            )));
        }
        fields
            .iter()
            .zip(row)
            .map(|(field, value)| {
                convert(value, field.data_type()).map_err(|why| Error::Cell {
                    column: field.name().clone(),
                    why,
                })
            })
            .collect()
    }

    fn append_row(&mut self, cells: Vec<Cell>) {
        let fields = self.schema.fields();
        for ((builder, field), cell) in self.builders.iter_mut().zip(fields).zip(cells) {
            append(builder.as_mut(), field.data_type(), cell);
        }
        self.rows += 1;
    }

    /// The rows pushed since the last batch, as a batch, without taking them.
    pub fn snapshot(&self) -> Result<RecordBatch, Error> {
        let arrays: Vec<ArrayRef> = self.builders.iter().map(|b| b.finish_cloned()).collect();
        self.batch(arrays, self.rows)
    }

    /// The rows pushed since the last batch, as a batch; the builder starts anew.
    pub fn finish(&mut self) -> Result<RecordBatch, Error> {
        let arrays: Vec<ArrayRef> = self.builders.iter_mut().map(|b| b.finish()).collect();
        let rows = std::mem::take(&mut self.rows);
        self.batch(arrays, rows)
    }

    fn batch(&self, arrays: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch, Error> {
        let options =
            datafusion::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            arrays,
            &options,
        )?)
    }
}

fn builders(schema: &SchemaRef) -> Vec<Box<dyn ArrayBuilder>> {
    schema
        .fields()
        .iter()
        .map(|field| make_builder(field.data_type(), 1024))
        .collect()
}

/// `value` as a cell of type `ty`, or why it is not one.
fn convert(value: &Value, ty: &DataType) -> Result<Cell, String> {
    if value.is_null() {
        return Ok(Cell::Null);
    }
    let kind = || match value {
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        _ => "an object",
    };
    let not = |what: &str| format!("{value} is {}, not {what}", kind());
    Ok(match ty {
        DataType::Boolean => Cell::Bool(value.as_bool().ok_or_else(|| not("a boolean"))?),
        DataType::Int32 => Cell::Int(
            value
                .as_i64()
                .filter(|n| i32::try_from(*n).is_ok())
                .ok_or_else(|| not("a 32-bit integer"))?,
        ),
        DataType::Int64 => Cell::Int(value.as_i64().ok_or_else(|| not("a 64-bit integer"))?),
        DataType::Float64 => Cell::Float(
            value
                .as_number()
                .and_then(Number::as_f64)
                .ok_or_else(|| not("a decimal"))?,
        ),
        DataType::Timestamp(..) => {
            let text = value.as_str().ok_or_else(|| not("an instant"))?;
            let nanos = string_to_timestamp_nanos(text).map_err(|_| not("an instant"))?;
            Cell::Micros(nanos / 1000)
        }
        DataType::List(field) => match value {
            Value::Array(items) => Cell::List(
                items
                    .iter()
                    .map(|item| convert(item, field.data_type()))
                    .collect::<Result<_, _>>()?,
            ),
            one => Cell::List(vec![convert(one, field.data_type())?]),
        },
        _ => Cell::Text(match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        }),
    })
}

/// Downcasts a builder to the type `make_builder` made for its column.
fn typed<B: 'static>(builder: &mut dyn ArrayBuilder) -> &mut B {
    builder
        .as_any_mut()
        .downcast_mut::<B>()
        .expect("the builder make_builder makes for the column's type")
}

/// Appends a converted cell (made by [`convert`] for the same `ty`).
fn append(builder: &mut dyn ArrayBuilder, ty: &DataType, cell: Cell) {
    match ty {
        DataType::Boolean => typed::<BooleanBuilder>(builder).append_option(match cell {
            Cell::Bool(b) => Some(b),
            _ => None,
        }),
        DataType::Int32 => typed::<Int32Builder>(builder).append_option(match cell {
            Cell::Int(n) => i32::try_from(n).ok(),
            _ => None,
        }),
        DataType::Int64 => typed::<Int64Builder>(builder).append_option(match cell {
            Cell::Int(n) => Some(n),
            _ => None,
        }),
        DataType::Float64 => typed::<Float64Builder>(builder).append_option(match cell {
            Cell::Float(x) => Some(x),
            _ => None,
        }),
        DataType::Timestamp(..) => {
            typed::<TimestampMicrosecondBuilder>(builder).append_option(match cell {
                Cell::Micros(t) => Some(t),
                _ => None,
            })
        }
        DataType::List(field) => {
            let list = typed::<ListBuilder<Box<dyn ArrayBuilder>>>(builder);
            match cell {
                Cell::List(items) => {
                    for item in items {
                        append(list.values().as_mut(), field.data_type(), item);
                    }
                    list.append(true);
                }
                _ => list.append(false),
            }
        }
        _ => typed::<StringBuilder>(builder).append_option(match cell {
            Cell::Text(text) => Some(text),
            _ => None,
        }),
    }
}

/// The rows of a record batch as JSON cells: booleans, numbers and text as themselves, a list
/// as an array, any other value (a date, a timestamp, a decimal's exact text) as the text
/// Arrow displays it with, a null as null.
pub fn rows_of(batch: &RecordBatch) -> Result<Vec<Vec<Value>>, Error> {
    let columns = batch
        .columns()
        .iter()
        .map(|array| values_of(array.as_ref()))
        .collect::<Result<Vec<Vec<Value>>, Error>>()?;
    let mut rows: Vec<Vec<Value>> = (0..batch.num_rows())
        .map(|_| Vec::with_capacity(columns.len()))
        .collect();
    for column in columns {
        for (row, value) in rows.iter_mut().zip(column) {
            row.push(value);
        }
    }
    Ok(rows)
}

/// Each value of an array as JSON.
fn values_of(array: &dyn Array) -> Result<Vec<Value>, Error> {
    fn numbers<T, N>(array: &dyn Array, to: impl Fn(N) -> Value) -> Vec<Value>
    where
        T: datafusion::arrow::datatypes::ArrowPrimitiveType<Native = N>,
    {
        array
            .as_primitive::<T>()
            .iter()
            .map(|n| n.map_or(Value::Null, &to))
            .collect()
    }
    let float = |x: f64| Number::from_f64(x).map_or(Value::Null, Value::Number);
    let strings = |texts: &mut dyn Iterator<Item = Option<&str>>| -> Vec<Value> {
        texts
            .map(|t| t.map_or(Value::Null, |t| Value::String(t.to_string())))
            .collect()
    };
    Ok(match array.data_type() {
        DataType::Null => vec![Value::Null; array.len()],
        DataType::Boolean => array
            .as_boolean()
            .iter()
            .map(|b| b.map_or(Value::Null, Value::Bool))
            .collect(),
        DataType::Int8 => numbers::<Int8Type, _>(array, Value::from),
        DataType::Int16 => numbers::<Int16Type, _>(array, Value::from),
        DataType::Int32 => numbers::<Int32Type, _>(array, Value::from),
        DataType::Int64 => numbers::<Int64Type, _>(array, Value::from),
        DataType::UInt8 => numbers::<UInt8Type, _>(array, Value::from),
        DataType::UInt16 => numbers::<UInt16Type, _>(array, Value::from),
        DataType::UInt32 => numbers::<UInt32Type, _>(array, Value::from),
        DataType::UInt64 => numbers::<UInt64Type, _>(array, Value::from),
        DataType::Float32 => numbers::<Float32Type, _>(array, |x| float(f64::from(x))),
        DataType::Float64 => numbers::<Float64Type, _>(array, float),
        DataType::Utf8 => strings(&mut array.as_string::<i32>().iter()),
        DataType::LargeUtf8 => strings(&mut array.as_string::<i64>().iter()),
        DataType::Utf8View => strings(&mut array.as_string_view().iter()),
        DataType::List(_) => lists(array.as_list::<i32>().iter())?,
        DataType::LargeList(_) => lists(array.as_list::<i64>().iter())?,
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => displayed(array)?
            .into_iter()
            .map(|text| match text {
                Value::String(text) => {
                    serde_json::from_str::<Number>(&text).map_or(Value::String(text), Value::Number)
                }
                other => other,
            })
            .collect(),
        _ => displayed(array)?,
    })
}

fn lists(items: impl Iterator<Item = Option<ArrayRef>>) -> Result<Vec<Value>, Error> {
    items
        .map(|list| match list {
            Some(values) => Ok(Value::Array(values_of(values.as_ref())?)),
            None => Ok(Value::Null),
        })
        .collect()
}

/// Each value as the text Arrow displays it with (null as null).
fn displayed(array: &dyn Array) -> Result<Vec<Value>, Error> {
    let formatter = ArrayFormatter::try_new(array, &FormatOptions::default())?;
    Ok((0..array.len())
        .map(|i| {
            if array.is_null(i) {
                Value::Null
            } else {
                Value::String(formatter.value(i).to_string())
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ColumnSpec, schema};
    use serde_json::json;

    fn columns() -> Vec<ColumnSpec> {
        [
            ("id", None, false),
            ("active", Some("boolean"), false),
            ("count", Some("integer"), false),
            ("value", Some("decimal"), false),
            ("at", Some("instant"), false),
            ("given", Some("string"), true),
        ]
        .into_iter()
        .map(|(name, ty, collection)| ColumnSpec {
            name: name.into(),
            ty: ty.map(str::to_string),
            collection,
        })
        .collect()
    }

    #[test]
    fn rows_go_through_a_batch_and_back() {
        let mut builder = BatchBuilder::new(schema(&columns()));
        let rows = vec![
            vec![
                json!("a"),
                json!(true),
                json!(3),
                json!(1.5),
                json!("2020-01-02T03:04:05Z"),
                json!(["x", "y"]),
            ],
            vec![
                json!({"k": 1}),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                json!([]),
            ],
        ];
        for row in &rows {
            builder.push(row).unwrap();
        }
        assert_eq!(builder.len(), 2);
        let batch = builder.finish().unwrap();
        assert_eq!(builder.len(), 0);
        assert_eq!(batch.num_rows(), 2);
        let back = rows_of(&batch).unwrap();
        assert_eq!(back[0][0], json!("a"));
        assert_eq!(back[0][1], json!(true));
        assert_eq!(back[0][2], json!(3));
        assert_eq!(back[0][3].as_f64(), Some(1.5));
        assert_eq!(back[0][4], json!("2020-01-02T03:04:05Z"));
        assert_eq!(back[0][5], json!(["x", "y"]));
        assert_eq!(back[1][0], json!("{\"k\":1}"));
        assert_eq!(
            &back[1][1..5],
            &[Value::Null, Value::Null, Value::Null, Value::Null]
        );
        assert_eq!(back[1][5], json!([]));
    }

    #[test]
    fn a_cell_that_does_not_fit_refuses_its_row_whole() {
        let mut builder = BatchBuilder::new(schema(&columns()));
        let bad = |at: usize, value: Value| {
            let mut row = vec![Value::Null; 6];
            row[at] = value;
            row
        };
        for (at, value) in [
            (1, json!("yes")),
            (2, json!(1.5)),
            (2, json!(4_000_000_000_i64)),
            (3, json!("1.5")),
            (4, json!("yesterday")),
            (5, json!([1, {"a": 2}, true])),
        ] {
            let row = bad(at, value);
            if at == 5 {
                // A collection of strings takes any value, as its JSON text.
                builder.push(&row).unwrap();
                continue;
            }
            let error = builder.push(&row).unwrap_err().to_string();
            assert!(error.starts_with("column '"), "{error}");
        }
        assert!(builder.push(&[Value::Null]).is_err());
        assert_eq!(builder.len(), 1);
        let batch = builder.finish().unwrap();
        assert_eq!(
            rows_of(&batch).unwrap()[0][5],
            json!(["1", "{\"a\":2}", "true"])
        );
    }
}
