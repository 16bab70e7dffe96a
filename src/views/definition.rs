//! Reading a ViewDefinition (SQL on FHIR v2) into a [`View`] ready to run: every element
//! checked against the guide's structure, every FHIRPath parsed once, the columns and their
//! order worked out. Every fault is a [`ViewError`] located by the path of the element that
//! holds it (`select[0].column[1].path`).
//!
//! Bounded: at most [`MAX_NESTING`] levels of nested `select`/`unionAll`, [`MAX_ELEMENTS`]
//! selects, columns, constants and `where`s in all, and each path within the FHIRPath
//! parser's own limits, so that a definition cannot cost more to read than its size.

use super::ViewError;
use crate::fhirpath::{Expr, parse};
use serde_json::{Map, Value};

/// How deeply selects may nest (`select` and `unionAll` within each other).
pub const MAX_NESTING: usize = 32;

/// How many selects, columns, constants and `where` constraints a definition may have in all.
pub const MAX_ELEMENTS: usize = 4096;

/// A ViewDefinition, checked and compiled.
#[derive(Debug)]
pub struct View {
    /// The resource type it reads.
    pub resource: String,
    /// Its columns, in the order of each row.
    pub columns: Vec<Column>,
    pub(super) constants: Vec<(String, Value, String)>,
    pub(super) filters: Vec<Located>,
    /// The view's `select`s, as the children of a select of one row per resource.
    pub(super) root: Select,
}

/// One column of a view's rows: its name, the FHIR type it declares (`type`), and whether each
/// value is an array of every value its path gives (`collection`). The analytics crate's
/// type, so that its Arrow schema is made of the same columns.
pub use fhirlake_analytics::ColumnSpec as Column;

/// A parsed path and where it is in the definition.
#[derive(Debug)]
pub(super) struct Located {
    pub(super) at: String,
    pub(super) expr: Expr,
}

/// How a select iterates over its input node.
#[derive(Debug)]
pub(super) enum Iterate {
    /// Once, on the input node.
    Once,
    /// On each node `forEach` selects; none, no rows.
    ForEach(Located),
    /// On each node `forEachOrNull` selects; none, one row of nulls.
    ForEachOrNull(Located),
    /// On every node the `repeat` paths reach, at any depth, depth first.
    Repeat(Vec<Located>),
}

/// A `select` element.
#[derive(Debug)]
pub(super) struct Select {
    /// Where it is in the definition.
    pub(super) at: String,
    pub(super) iterate: Iterate,
    /// The columns it makes itself: (where, path, collection).
    pub(super) columns: Vec<(Located, bool)>,
    pub(super) selects: Vec<Select>,
    pub(super) union: Vec<Select>,
    /// How many columns its rows have (its own, its selects' and its union's).
    pub(super) width: usize,
}

/// The members a ViewDefinition may have: a CanonicalResource's and its own.
const VIEW_MEMBERS: &[&str] = &[
    "resourceType",
    "id",
    "meta",
    "implicitRules",
    "language",
    "text",
    "contained",
    "extension",
    "modifierExtension",
    "url",
    "identifier",
    "version",
    "versionAlgorithmString",
    "versionAlgorithmCoding",
    "name",
    "title",
    "status",
    "experimental",
    "date",
    "publisher",
    "contact",
    "description",
    "useContext",
    "jurisdiction",
    "purpose",
    "copyright",
    "copyrightLabel",
    "resource",
    "resourceVersion",
    "profile",
    "fhirVersion",
    "constant",
    "select",
    "where",
];

const SELECT_MEMBERS: &[&str] = &[
    "id",
    "extension",
    "modifierExtension",
    "column",
    "select",
    "forEach",
    "forEachOrNull",
    "repeat",
    "unionAll",
];

const COLUMN_MEMBERS: &[&str] = &[
    "id",
    "extension",
    "modifierExtension",
    "path",
    "name",
    "description",
    "collection",
    "type",
    "tag",
];

const CONSTANT_MEMBERS: &[&str] = &["id", "extension", "modifierExtension", "name"];

const WHERE_MEMBERS: &[&str] = &[
    "id",
    "extension",
    "modifierExtension",
    "path",
    "description",
];

/// The types a constant's `value[x]` may have, as member suffixes.
const CONSTANT_TYPES: &[&str] = &[
    "Base64Binary",
    "Boolean",
    "Canonical",
    "Code",
    "Date",
    "DateTime",
    "Decimal",
    "Id",
    "Instant",
    "Integer",
    "Integer64",
    "Oid",
    "String",
    "PositiveInt",
    "Time",
    "UnsignedInt",
    "Uri",
    "Url",
    "Uuid",
];

const STATUSES: &[&str] = &["draft", "active", "retired", "unknown"];

impl View {
    /// Reads the ViewDefinition `definition`.
    pub fn parse(definition: &Value) -> Result<View, ViewError> {
        let mut reader = Reader::default();
        reader.view(definition)
    }

    /// The column names, in order.
    pub fn column_names(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|c| c.name.as_str())
    }
}

/// Reads a definition, counting its elements.
#[derive(Default)]
struct Reader {
    elements: usize,
    columns: Vec<Column>,
}

fn fault<T>(at: &str, message: impl Into<String>) -> Result<T, ViewError> {
    Err(ViewError::definition(at, message))
}

/// `at.name`, or `name` at the top.
fn child(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_string()
    } else {
        format!("{at}.{name}")
    }
}

fn object<'v>(value: &'v Value, at: &str) -> Result<&'v Map<String, Value>, ViewError> {
    value
        .as_object()
        .map_or_else(|| fault(at, "must be a JSON object"), Ok)
}

/// The members of `object` not in `known` are faults.
fn known_members(object: &Map<String, Value>, known: &[&str], at: &str) -> Result<(), ViewError> {
    match object.keys().find(|k| !known.contains(&k.as_str())) {
        Some(key) => fault(
            &child(at, key),
            "is not an element of a ViewDefinition here",
        ),
        None => Ok(()),
    }
}

/// An optional string member.
fn string<'v>(
    object: &'v Map<String, Value>,
    name: &str,
    at: &str,
) -> Result<Option<&'v str>, ViewError> {
    match object.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => fault(&child(at, name), "must be a string"),
    }
}

/// An optional array member, as (where, item) pairs.
fn array<'v>(
    object: &'v Map<String, Value>,
    name: &str,
    at: &str,
) -> Result<Vec<(String, &'v Value)>, ViewError> {
    match object.get(name) {
        None => Ok(vec![]),
        Some(Value::Array(items)) => Ok(items
            .iter()
            .enumerate()
            .map(|(n, item)| (format!("{}[{n}]", child(at, name)), item))
            .collect()),
        Some(_) => fault(&child(at, name), "must be an array"),
    }
}

/// Whether `name` is usable as a SQL name (`sql-name`: `^[A-Za-z][A-Za-z0-9_]*$`).
fn sql_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A FHIRPath expression, parsed.
fn path(text: &str, at: &str) -> Result<Located, ViewError> {
    match parse(text) {
        Ok(expr) => Ok(Located {
            at: at.to_string(),
            expr,
        }),
        Err(e) => fault(at, format!("is not a FHIRPath expression: {e}")),
    }
}

impl Reader {
    fn count(&mut self, at: &str) -> Result<(), ViewError> {
        self.elements += 1;
        if self.elements > MAX_ELEMENTS {
            return fault(at, format!("a view has at most {MAX_ELEMENTS} elements"));
        }
        Ok(())
    }

    fn view(&mut self, definition: &Value) -> Result<View, ViewError> {
        let view = object(definition, "ViewDefinition")?;
        known_members(view, VIEW_MEMBERS, "")?;
        match string(view, "resourceType", "")? {
            None | Some("ViewDefinition") => {}
            Some(_) => return fault("resourceType", "must be ViewDefinition"),
        }
        let resource = match string(view, "resource", "")? {
            Some(ty) if fhirlake_model::is_resource_type(ty) => ty.to_string(),
            Some(ty) => return fault("resource", format!("'{ty}' is not a FHIR R4 resource type")),
            None => return fault("resource", "is required: the resource type the view reads"),
        };
        if let Some(status) = string(view, "status", "")?
            && !STATUSES.contains(&status)
        {
            return fault("status", format!("must be one of {}", STATUSES.join(", ")));
        }
        if let Some(name) = string(view, "name", "")?
            && !sql_name(name)
        {
            return fault("name", "must match ^[A-Za-z][A-Za-z0-9_]*$ (sql-name)");
        }
        let mut constants: Vec<(String, Value, String)> = Vec::new();
        for (at, constant) in array(view, "constant", "")? {
            self.count(&at)?;
            let constant = object(constant, &at)?;
            let name = match string(constant, "name", &at)? {
                Some(name) if sql_name(name) => name,
                Some(_) => return fault(&child(&at, "name"), "must match ^[A-Za-z][A-Za-z0-9_]*$"),
                None => return fault(&child(&at, "name"), "is required"),
            };
            if constants.iter().any(|(n, ..)| n == name) {
                return fault(
                    &child(&at, "name"),
                    format!("the constant {name} is defined twice"),
                );
            }
            let mut values = constant.iter().filter(|(k, _)| k.starts_with("value"));
            let (key, value) = match (values.next(), values.next()) {
                (Some(one), None) => one,
                (None, _) => return fault(&at, "needs a value[x]"),
                (Some(_), Some(_)) => return fault(&at, "has more than one value[x]"),
            };
            let suffix = &key["value".len()..];
            if !CONSTANT_TYPES.contains(&suffix) {
                return fault(&child(&at, key), "is not a value[x] a constant may have");
            }
            let others: Vec<&str> = CONSTANT_MEMBERS
                .iter()
                .copied()
                .chain([key.as_str()])
                .collect();
            known_members(constant, &others, &at)?;
            if !matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
                return fault(&child(&at, key), "must be a primitive value");
            }
            let ty = crate::fhirpath::eval::type_of_suffix(suffix).into_owned();
            constants.push((name.to_string(), value.clone(), ty));
        }
        let mut filters = Vec::new();
        for (at, filter) in array(view, "where", "")? {
            self.count(&at)?;
            let filter = object(filter, &at)?;
            known_members(filter, WHERE_MEMBERS, &at)?;
            string(filter, "description", &at)?;
            match string(filter, "path", &at)? {
                Some(text) => filters.push(path(text, &child(&at, "path"))?),
                None => return fault(&child(&at, "path"), "is required"),
            }
        }
        let selects = array(view, "select", "")?;
        if selects.is_empty() {
            return fault("select", "is required: at least one select");
        }
        let mut children = Vec::new();
        for (at, select) in selects {
            children.push(self.select(select, &at, 1)?);
        }
        let root = Select {
            at: "select".into(),
            iterate: Iterate::Once,
            columns: vec![],
            width: children.iter().map(|s| s.width).sum(),
            selects: children,
            union: vec![],
        };
        Ok(View {
            resource,
            columns: std::mem::take(&mut self.columns),
            constants,
            filters,
            root,
        })
    }

    fn select(&mut self, select: &Value, at: &str, depth: usize) -> Result<Select, ViewError> {
        self.count(at)?;
        if depth > MAX_NESTING {
            return fault(at, format!("selects nest at most {MAX_NESTING} deep"));
        }
        let select = object(select, at)?;
        known_members(select, SELECT_MEMBERS, at)?;
        let for_each = string(select, "forEach", at)?;
        let for_each_or_null = string(select, "forEachOrNull", at)?;
        let repeat = array(select, "repeat", at)?;
        let iterations = for_each.is_some() as usize
            + for_each_or_null.is_some() as usize
            + !repeat.is_empty() as usize;
        if iterations > 1 {
            return fault(
                at,
                "has more than one of forEach, forEachOrNull and repeat (sql-expressions)",
            );
        }
        let iterate = if let Some(text) = for_each {
            Iterate::ForEach(path(text, &child(at, "forEach"))?)
        } else if let Some(text) = for_each_or_null {
            Iterate::ForEachOrNull(path(text, &child(at, "forEachOrNull"))?)
        } else if !repeat.is_empty() {
            let mut paths = Vec::new();
            for (at, text) in repeat {
                match text {
                    Value::String(text) => paths.push(path(text, &at)?),
                    _ => return fault(&at, "must be a string"),
                }
            }
            Iterate::Repeat(paths)
        } else {
            Iterate::Once
        };
        let mut columns = Vec::new();
        for (at, column) in array(select, "column", at)? {
            self.count(&at)?;
            columns.push(self.column(column, &at)?);
        }
        let mut selects = Vec::new();
        for (at, nested) in array(select, "select", at)? {
            selects.push(self.select(nested, &at, depth + 1)?);
        }
        let mut union = Vec::new();
        let mut union_columns: Option<Vec<Column>> = None;
        for (at, branch) in array(select, "unionAll", at)? {
            let before = self.columns.len();
            union.push(self.select(branch, &at, depth + 1)?);
            let made: Vec<Column> = self.columns.drain(before..).collect();
            match &union_columns {
                None => union_columns = Some(made),
                Some(first) => {
                    let names =
                        |cs: &[Column]| cs.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
                    if names(first.as_slice()) != names(made.as_slice()) {
                        return fault(
                            &at,
                            format!(
                                "a unionAll's branches must have the same columns in the same order: [{}] here, [{}] in the first",
                                names(made.as_slice()).join(", "),
                                names(first.as_slice()).join(", ")
                            ),
                        );
                    }
                }
            }
        }
        // The union's columns are the view's once, after the select's own and its selects'.
        if let Some(made) = union_columns {
            for column in made {
                self.add_column(column, at)?;
            }
        }
        let width = columns.len()
            + selects.iter().map(|s| s.width).sum::<usize>()
            + union.first().map_or(0, |s| s.width);
        Ok(Select {
            at: at.to_string(),
            iterate,
            columns,
            selects,
            union,
            width,
        })
    }

    fn column(&mut self, column: &Value, at: &str) -> Result<(Located, bool), ViewError> {
        let column = object(column, at)?;
        known_members(column, COLUMN_MEMBERS, at)?;
        string(column, "description", at)?;
        let name = match string(column, "name", at)? {
            Some(name) if sql_name(name) => name,
            Some(_) => {
                return fault(
                    &child(at, "name"),
                    "must match ^[A-Za-z][A-Za-z0-9_]*$ (sql-name)",
                );
            }
            None => return fault(&child(at, "name"), "is required"),
        };
        let expr = match string(column, "path", at)? {
            Some(text) => path(text, &child(at, "path"))?,
            None => return fault(&child(at, "path"), "is required"),
        };
        let collection = match column.get("collection") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return fault(&child(at, "collection"), "must be true or false"),
        };
        let ty = string(column, "type", at)?.map(str::to_string);
        for (at, tag) in array(column, "tag", at)? {
            let tag = object(tag, &at)?;
            known_members(tag, &["id", "extension", "name", "value"], &at)?;
            string(tag, "name", &at)?;
            string(tag, "value", &at)?;
        }
        self.add_column(
            Column {
                name: name.to_string(),
                ty,
                collection,
            },
            at,
        )?;
        Ok((expr, collection))
    }

    /// Adds a column to the view's; a name used before is a fault.
    fn add_column(&mut self, column: Column, at: &str) -> Result<(), ViewError> {
        if self.columns.iter().any(|c| c.name == column.name) {
            return fault(at, format!("the column name {} is used twice", column.name));
        }
        self.columns.push(column);
        Ok(())
    }
}
