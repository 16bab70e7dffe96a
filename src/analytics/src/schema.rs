//! The Arrow schema of a view's rows.
//!
//! A column's FHIR `type` chooses its Arrow type:
//!
//! | FHIR type | Arrow type |
//! |---|---|
//! | `boolean` | `Boolean` |
//! | `integer`, `positiveInt`, `unsignedInt` | `Int32` |
//! | `integer64` | `Int64` |
//! | `decimal` | `Float64` |
//! | `instant` | `Timestamp(Microsecond, UTC)` |
//! | anything else, or none | `Utf8` |
//!
//! `date`, `dateTime` and `time` stay text: FHIR allows partial dates (`2012`, `2012-03`)
//! that no Arrow date type holds, and their text sorts in time order. A value of a column
//! without a primitive type that is not a string (an element, a number in an untyped column)
//! is its JSON text. A `collection` column is a `List` of its type. Every column is nullable.

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use std::sync::Arc;

/// One column of a view, as the server's evaluator describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSpec {
    pub name: String,
    /// Its FHIR type (`type`), when it declares one.
    pub ty: Option<String>,
    /// Whether each cell is an array of values (`collection: true`).
    pub collection: bool,
}

/// The Arrow type of a value of FHIR type `ty` (not a collection).
pub fn value_type(ty: Option<&str>) -> DataType {
    match ty {
        Some("boolean") => DataType::Boolean,
        Some("integer" | "positiveInt" | "unsignedInt") => DataType::Int32,
        Some("integer64") => DataType::Int64,
        Some("decimal") => DataType::Float64,
        Some("instant") => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        _ => DataType::Utf8,
    }
}

/// The Arrow field of a column.
pub fn field(column: &ColumnSpec) -> Field {
    let value = value_type(column.ty.as_deref());
    let ty = if column.collection {
        DataType::List(Arc::new(Field::new_list_field(value, true)))
    } else {
        value
    };
    Field::new(&column.name, ty, true)
}

/// The Arrow schema of rows with `columns`, in their order.
pub fn schema(columns: &[ColumnSpec]) -> SchemaRef {
    Arc::new(Schema::new(columns.iter().map(field).collect::<Vec<_>>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(ty: Option<&str>, collection: bool) -> ColumnSpec {
        ColumnSpec {
            name: "c".into(),
            ty: ty.map(str::to_string),
            collection,
        }
    }

    #[test]
    fn fhir_types_choose_arrow_types() {
        let ty = |t: Option<&str>| field(&column(t, false)).data_type().clone();
        assert_eq!(ty(Some("boolean")), DataType::Boolean);
        assert_eq!(ty(Some("positiveInt")), DataType::Int32);
        assert_eq!(ty(Some("integer64")), DataType::Int64);
        assert_eq!(ty(Some("decimal")), DataType::Float64);
        assert!(matches!(ty(Some("instant")), DataType::Timestamp(..)));
        assert_eq!(ty(Some("dateTime")), DataType::Utf8);
        assert_eq!(ty(None), DataType::Utf8);
        let list = field(&column(Some("boolean"), true));
        assert_eq!(
            list.data_type(),
            &DataType::List(Arc::new(Field::new_list_field(DataType::Boolean, true)))
        );
        assert!(list.is_nullable());
    }
}
