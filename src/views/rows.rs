//! Running a [`View`] on resources: the rows of one resource at a time ([`View::rows`]), and
//! over any sequence of resources as an iterator ([`Rows`]), so that what a run holds in
//! memory is one resource's rows, whatever the size of the result.
//!
//! The functional model of SQL on FHIR: a resource passes the view's `where`s (each empty or
//! true; a value that is not a boolean is an error), then each select makes rows on its node:
//! once, or on each node its `forEach`/`forEachOrNull`/`repeat` selects; a node's row is its
//! columns' values times the rows of each nested select times the rows of its `unionAll`
//! branches (one after the other); a `forEachOrNull` that selects nothing makes one row of
//! nulls (its own columns evaluated on no node). `%rowIndex` is the index of the node among those its
//! select iterates on (the enclosing one's, for a select that does not iterate; 0 at the top).
//!
//! Bounded: the paths evaluated on one resource share one budget of [`Limits::DEFAULT`]
//! (ten million steps), `repeat` follows at most
//! [`MAX_REPEAT_DEPTH`] levels, and one resource makes at most [`MAX_CELLS`] values: a view
//! whose products explode is an error, not an exhausted server.

use super::definition::{Iterate, Located, Select, View};
use super::{ViewError, ViewErrorKind};
use crate::fhirpath::budget::Budget;
use crate::fhirpath::eval::truth;
use crate::fhirpath::{Environment, EvalError, Item, Limits, evaluate_in};
use serde_json::Value;
use std::borrow::Cow;
use std::cell::Cell;

/// One row: a value for each column of the view, in order (null when there is none).
pub type Row = Vec<Value>;

/// How deep `repeat` follows its paths.
pub const MAX_REPEAT_DEPTH: usize = 64;

/// The most values (rows times columns) one resource may make.
pub const MAX_CELLS: usize = 200_000;

/// The variables of one resource's run: the view's constants and `%rowIndex`.
struct Variables<'v> {
    constants: &'v [(String, Value, String)],
    row_index: Cell<usize>,
}

impl<'a, 'v: 'a> Environment<'a> for Variables<'v> {
    fn variable(&self, name: &str) -> Option<Vec<Item<'a>>> {
        if name == "rowIndex" {
            return Some(vec![Item::Number(self.row_index.get() as f64)]);
        }
        self.constants
            .iter()
            .find(|(n, ..)| n == name)
            .map(|(_, value, ty)| vec![Item::node(value, Some(Cow::Borrowed(ty.as_str())))])
    }
}

/// What one resource's run needs at hand.
struct Run<'a> {
    resource: &'a Value,
    variables: &'a Variables<'a>,
    /// What every path evaluated on the resource spends.
    budget: Budget,
    cells: Cell<usize>,
}

impl View {
    /// The rows `resource` makes, in order; none when it is not of the view's type or fails
    /// its `where`s.
    pub fn rows(&self, resource: &Value) -> Result<Vec<Row>, ViewError> {
        if resource.get("resourceType").and_then(Value::as_str) != Some(self.resource.as_str()) {
            return Ok(vec![]);
        }
        let variables = Variables {
            constants: &self.constants,
            row_index: Cell::new(0),
        };
        let run = Run {
            resource,
            variables: &variables,
            budget: Budget::new(Limits::DEFAULT),
            cells: Cell::new(0),
        };
        let node = Item::node(resource, None);
        for filter in &self.filters {
            let items = run.eval(filter, std::slice::from_ref(&node), 0)?;
            match items.as_slice() {
                [] => return Ok(vec![]),
                [item] => match truth(item) {
                    Some(true) => {}
                    Some(false) => return Ok(vec![]),
                    None => {
                        return Err(ViewError::evaluation(
                            &filter.at,
                            "a where path must give a boolean",
                        ));
                    }
                },
                _ => {
                    return Err(ViewError::evaluation(
                        &filter.at,
                        "a where path must give a single boolean",
                    ));
                }
            }
        }
        run.select(&self.root, &node, 0)
    }
}

impl<'a> Run<'a> {
    fn eval(
        &self,
        path: &Located,
        input: &[Item<'a>],
        row_index: usize,
    ) -> Result<Vec<Item<'a>>, ViewError> {
        self.variables.row_index.set(row_index);
        let environment: &'a dyn Environment<'a> = self.variables;
        evaluate_in(
            &self.budget,
            &path.expr,
            input,
            self.resource,
            Some(environment),
        )
        .map_err(|e| match e {
            EvalError::Exceeded(why) => ViewError {
                kind: ViewErrorKind::TooCostly,
                ..ViewError::evaluation(&path.at, why)
            },
            EvalError::Invalid(why) => ViewError::evaluation(&path.at, why),
        })
    }

    /// The rows `select` makes on `node`, whose index is `row_index`.
    fn select(
        &self,
        select: &Select,
        node: &Item<'a>,
        row_index: usize,
    ) -> Result<Vec<Row>, ViewError> {
        let input = std::slice::from_ref(node);
        let nodes: Vec<(Item<'a>, usize)> = match &select.iterate {
            Iterate::Once => vec![(node.clone(), row_index)],
            Iterate::ForEach(path) => number(self.eval(path, input, row_index)?),
            Iterate::ForEachOrNull(path) => {
                let nodes = number(self.eval(path, input, row_index)?);
                if nodes.is_empty() {
                    return self.null_row(select);
                }
                nodes
            }
            Iterate::Repeat(paths) => {
                let mut found = Vec::new();
                self.repeat(paths, node, row_index, 0, &mut found)?;
                number(found)
            }
        };
        let mut rows = Vec::new();
        for (node, index) in &nodes {
            rows.extend(self.node_rows(select, node, *index)?);
        }
        Ok(rows)
    }

    /// The row of a `forEachOrNull` that selects nothing: its own columns evaluated on no
    /// node (null, but what needs no node: `%rowIndex` is 0), null for the columns of its
    /// nested selects.
    fn null_row(&self, select: &Select) -> Result<Vec<Row>, ViewError> {
        self.spend(select.width, &select.at)?;
        let mut row = Vec::with_capacity(select.width);
        for (path, collection) in &select.columns {
            let items = self.eval(path, &[], 0)?;
            row.push(cell(items, *collection, path)?);
        }
        row.resize(select.width, Value::Null);
        Ok(vec![row])
    }

    /// The rows of one node a select iterates on.
    fn node_rows(
        &self,
        select: &Select,
        node: &Item<'a>,
        row_index: usize,
    ) -> Result<Vec<Row>, ViewError> {
        let input = std::slice::from_ref(node);
        let mut own = Vec::with_capacity(select.width);
        for (path, collection) in &select.columns {
            let items = self.eval(path, input, row_index)?;
            own.push(cell(items, *collection, path)?);
        }
        self.spend(own.len().max(1), &select.at)?;
        let mut rows = vec![own];
        for nested in &select.selects {
            let made = self.select(nested, node, row_index)?;
            rows = self.product(rows, made, &nested.at)?;
        }
        if !select.union.is_empty() {
            let mut made = Vec::new();
            for branch in &select.union {
                made.extend(self.select(branch, node, row_index)?);
            }
            rows = self.product(rows, made, &select.at)?;
        }
        Ok(rows)
    }

    /// Every row of `left` followed by every row of `right`.
    fn product(&self, left: Vec<Row>, right: Vec<Row>, at: &str) -> Result<Vec<Row>, ViewError> {
        let mut rows = Vec::with_capacity(left.len() * right.len());
        for l in &left {
            for r in &right {
                self.spend(l.len() + r.len(), at)?;
                let mut row = Vec::with_capacity(l.len() + r.len());
                row.extend(l.iter().cloned());
                row.extend(r.iter().cloned());
                rows.push(row);
            }
        }
        Ok(rows)
    }

    /// Counts `cells` more values made; past [`MAX_CELLS`], an error.
    fn spend(&self, cells: usize, at: &str) -> Result<(), ViewError> {
        let spent = self.cells.get() + cells;
        self.cells.set(spent);
        if spent > MAX_CELLS {
            return Err(ViewError {
                kind: ViewErrorKind::TooCostly,
                ..ViewError::evaluation(
                    at,
                    format!("one resource makes more than {MAX_CELLS} values in this view"),
                )
            });
        }
        Ok(())
    }

    /// Adds to `found` what the `paths` reach from `node`, depth first: each child, then
    /// what the paths reach from it.
    fn repeat(
        &self,
        paths: &[Located],
        node: &Item<'a>,
        row_index: usize,
        depth: usize,
        found: &mut Vec<Item<'a>>,
    ) -> Result<(), ViewError> {
        for path in paths {
            if depth >= MAX_REPEAT_DEPTH {
                return Err(ViewError {
                    kind: ViewErrorKind::TooCostly,
                    ..ViewError::evaluation(
                        &path.at,
                        format!("repeat goes deeper than {MAX_REPEAT_DEPTH} levels"),
                    )
                });
            }
            for child in self.eval(path, std::slice::from_ref(node), row_index)? {
                self.spend(1, &path.at)?;
                found.push(child.clone());
                self.repeat(paths, &child, row_index, depth + 1, found)?;
            }
        }
        Ok(())
    }
}

/// Nodes with their indexes.
fn number(nodes: Vec<Item<'_>>) -> Vec<(Item<'_>, usize)> {
    nodes.into_iter().enumerate().map(|(n, i)| (i, n)).collect()
}

/// A column's value: null, the single value, or (`collection`) the array of all.
fn cell(items: Vec<Item<'_>>, collection: bool, path: &Located) -> Result<Value, ViewError> {
    if collection {
        return Ok(Value::Array(items.iter().map(json).collect()));
    }
    match items.as_slice() {
        [] => Ok(Value::Null),
        [item] => Ok(json(item)),
        _ => Err(ViewError::evaluation(
            &path.at,
            format!(
                "gives {} values; a column that may have more than one needs collection: true",
                items.len()
            ),
        )),
    }
}

/// An item as JSON: an element as it is, a number made by FHIRPath as an integer when it is
/// one.
fn json(item: &Item<'_>) -> Value {
    match item {
        Item::Node { value, .. } => (*value).clone(),
        Item::Bool(b) => Value::Bool(*b),
        Item::Str(s) => Value::String(s.clone()),
        Item::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => Value::from(*n as i64),
        Item::Number(n) => serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number),
        Item::Resolved(_) => Value::Null,
    }
}

/// The rows of a sequence of resources, made one resource at a time: an iterator over
/// `Result<Row, ViewError>`, ending after the first error.
pub struct Rows<'v, I> {
    view: &'v View,
    resources: I,
    pending: std::vec::IntoIter<Row>,
    failed: bool,
}

impl<'v, I> Rows<'v, I> {
    pub fn new(view: &'v View, resources: I) -> Self {
        Rows {
            view,
            resources,
            pending: Vec::new().into_iter(),
            failed: false,
        }
    }
}

impl<I, R> Iterator for Rows<'_, I>
where
    I: Iterator<Item = R>,
    R: std::borrow::Borrow<Value>,
{
    type Item = Result<Row, ViewError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.failed {
                return None;
            }
            if let Some(row) = self.pending.next() {
                return Some(Ok(row));
            }
            let resource = self.resources.next()?;
            match self.view.rows(resource.borrow()) {
                Ok(rows) => self.pending = rows.into_iter(),
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
