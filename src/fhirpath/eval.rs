//! Evaluating parsed FHIRPath on a resource's JSON.

use super::budget::{Budget, Limits};
use super::functions::LAMBDAS;
use super::operators;
use super::parser::{Expr, Op};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;

/// One item of a FHIRPath collection.
#[derive(Debug, Clone, PartialEq)]
pub enum Item<'a> {
    /// An element of the resource, with its FHIR type when the JSON tells it (a resource's
    /// `resourceType`, a choice element's suffix).
    Node {
        value: &'a Value,
        ty: Option<Cow<'a, str>>,
    },
    /// The target of a reference, known by its type only (`resolve()` does not load it).
    Resolved(String),
    Bool(bool),
    Str(String),
    Number(f64),
}

impl<'a> Item<'a> {
    /// An element of a resource; its type is the `resourceType` of a resource, else `ty`.
    pub fn node(value: &'a Value, ty: Option<Cow<'a, str>>) -> Self {
        let ty = match value.get("resourceType").and_then(Value::as_str) {
            Some(resource_type) => Some(Cow::Borrowed(resource_type)),
            None => ty,
        };
        Item::Node { value, ty }
    }

    /// The FHIR type of the item, when known.
    pub fn type_name(&self) -> Option<&str> {
        match self {
            Item::Node { ty, .. } => ty.as_deref(),
            Item::Resolved(ty) => Some(ty),
            Item::Bool(_) => Some("boolean"),
            Item::Str(_) => Some("string"),
            Item::Number(_) => Some("decimal"),
        }
    }

    /// Whether the item is of type `wanted` (`FHIR.` and `System.` names alike: FHIRPath's
    /// `Boolean` is FHIR's `boolean`). Without a model, a JSON string whose type the JSON does
    /// not tell is taken to be any of the string types (not a date or time).
    pub(super) fn is_type(&self, wanted: &str) -> bool {
        let wanted = wanted
            .strip_prefix("FHIR.")
            .or_else(|| wanted.strip_prefix("System."))
            .unwrap_or(wanted);
        let wanted = match wanted {
            "Boolean" => "boolean",
            "String" => "string",
            "Integer" => "integer",
            "Decimal" => "decimal",
            "Date" => "date",
            "DateTime" => "dateTime",
            "Time" => "time",
            other => other,
        };
        match (self.type_name(), self) {
            (Some(ty), _) => ty == wanted || is_subtype(ty, wanted),
            (
                None,
                Item::Node {
                    value: Value::String(_),
                    ..
                },
            ) => STRING_TYPES.contains(&wanted),
            (None, _) => false,
        }
    }
}

/// Why an expression could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvalError {
    /// Not on this input: a function not supported here, an operand of the wrong type, more
    /// than one item where one is expected.
    Invalid(String),
    /// The evaluation went beyond its [`Limits`]: the expression is too costly for this input.
    Exceeded(String),
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::Invalid(why) | EvalError::Exceeded(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for EvalError {}

pub(super) type Items<'a> = Vec<Item<'a>>;

/// Variables the caller defines beside FHIRPath's own (`%resource`, `%ucum`, ...): a SQL on
/// FHIR view's constants and `%rowIndex`. They are looked up first, so a caller's variable
/// hides a built-in one of the same name.
pub trait Environment<'a> {
    /// The value of `%name`, or None when the caller does not define it.
    fn variable(&self, name: &str) -> Option<Vec<Item<'a>>>;
}

/// Evaluates `expr` on `resource` (its JSON) within the default [`Limits`], returning the
/// items it selects.
pub fn evaluate<'a>(expr: &Expr, resource: &'a Value) -> Result<Items<'a>, EvalError> {
    evaluate_on(expr, resource, None, [resource, resource])
}

/// Evaluates `expr` on `element` (of FHIR type `ty` when known), an element of `resource`,
/// itself contained in `root` (or `root` itself), within the default [`Limits`]: how an
/// invariant of an element is checked. `[resource, root]` are `%resource` and
/// `%rootResource`; `%context` is `element`.
pub fn evaluate_on<'a>(
    expr: &Expr,
    element: &'a Value,
    ty: Option<&'a str>,
    resources: [&'a Value; 2],
) -> Result<Items<'a>, EvalError> {
    evaluate_within(&Limits::DEFAULT, expr, element, ty, resources)
}

/// [`evaluate_on`] within `limits`: past them, [`EvalError::Exceeded`], whatever the
/// expression and the input.
pub fn evaluate_within<'a>(
    limits: &Limits,
    expr: &Expr,
    element: &'a Value,
    ty: Option<&'a str>,
    [resource, root]: [&'a Value; 2],
) -> Result<Items<'a>, EvalError> {
    let focus = Item::node(element, ty.map(Cow::Borrowed));
    let context = Context {
        resource,
        root,
        focus: focus.clone(),
        budget: Budget::new(*limits),
        environment: None,
        unions: RefCell::default(),
        within_fixed: Cell::new(0),
    };
    context.eval(expr, &[focus])
}

/// Evaluates `expr` on the collection `input`, items of `resource` (`%resource` and
/// `%rootResource` are `resource`, `%context` the first item), spending `budget` (which
/// several evaluations may share), with the caller's
/// variables `environment`: how a SQL on FHIR view evaluates its paths on the nodes a
/// `forEach` selected.
pub fn evaluate_in<'a>(
    budget: &Budget,
    expr: &Expr,
    input: &[Item<'a>],
    resource: &'a Value,
    environment: Option<&'a dyn Environment<'a>>,
) -> Result<Items<'a>, EvalError> {
    let context = Context {
        resource,
        root: resource,
        focus: input
            .first()
            .cloned()
            .unwrap_or_else(|| Item::node(resource, None)),
        budget: budget.clone(),
        environment,
        unions: RefCell::default(),
        within_fixed: Cell::new(0),
    };
    context.eval(expr, input)
}

pub(super) struct Context<'a> {
    /// `%resource`.
    resource: &'a Value,
    /// `%rootResource`: the resource that contains `resource`, or `resource` itself; where
    /// `#id` references are resolved.
    pub(super) root: &'a Value,
    /// What the evaluation started on: `%context`.
    focus: Item<'a>,
    /// What is left of the evaluation's limits.
    pub(super) budget: Budget,
    /// The caller's variables.
    environment: Option<&'a dyn Environment<'a>>,
    /// The unions met so far, by the address of their node: `None` for one that depends on its
    /// input ([`independent`], worked out once per node), else its value, so that it is
    /// evaluated once however many items it is met on. (dom-3 unions four selections of
    /// `%resource.descendants()` for each contained resource.)
    unions: RefCell<HashMap<usize, Option<Items<'a>>>>,
    /// How many unions that do not depend on their input are being evaluated: the unions
    /// within one are met once, with it, so none of them is kept.
    within_fixed: Cell<usize>,
}

impl<'a> Context<'a> {
    /// `expr` on `input`: one step, one level deeper. Each kind of node is evaluated by a
    /// function of its own, so that the stack frames a deep expression piles up are each only
    /// as large as their own kind needs.
    pub(super) fn eval(&self, expr: &Expr, input: &[Item<'a>]) -> Result<Items<'a>, EvalError> {
        self.budget.enter()?;
        let result = self.eval_node(expr, input);
        self.budget.leave();
        result
    }

    fn eval_node(&self, expr: &Expr, input: &[Item<'a>]) -> Result<Items<'a>, EvalError> {
        match expr {
            Expr::Union(..) => self.union_node(expr, input),
            _ => self.compute(expr, input),
        }
    }

    /// A union (costly: it compares every item with the others): evaluated on each input when
    /// it depends on its input, else once per evaluation ([`Context::unions`]).
    fn union_node(&self, union: &Expr, input: &[Item<'a>]) -> Result<Items<'a>, EvalError> {
        if self.within_fixed.get() > 0 {
            return self.compute(union, input);
        }
        let address = std::ptr::from_ref(union) as usize;
        let known = self.unions.borrow().get(&address).cloned();
        match known {
            Some(Some(items)) => {
                self.budget.spend(items.len())?;
                Ok(items)
            }
            Some(None) => self.compute(union, input),
            None if !independent(union) => {
                self.unions.borrow_mut().insert(address, None);
                self.compute(union, input)
            }
            None => {
                self.within_fixed.set(self.within_fixed.get() + 1);
                let items = self.compute(union, input);
                self.within_fixed.set(self.within_fixed.get() - 1);
                let items = items?;
                self.unions
                    .borrow_mut()
                    .insert(address, Some(items.clone()));
                Ok(items)
            }
        }
    }

    fn compute(&self, expr: &Expr, input: &[Item<'a>]) -> Result<Items<'a>, EvalError> {
        match expr {
            Expr::Member(inner, name) => self.members(inner, name, input),
            Expr::Index(inner, index) => self.index(inner, *index, input),
            Expr::IndexBy(inner, index) => self.index_by(inner, index, input),
            Expr::Is(inner, ty) => self.is(inner, ty, input),
            Expr::As(inner, ty) => self.cast(inner, ty, input),
            Expr::Union(left, right) => self.union(left, right, input),
            Expr::Equals(left, right, negated) => self.equality(left, right, *negated, input),
            Expr::And(..) | Expr::Or(..) | Expr::Binary(Op::Implies | Op::Xor, ..) => {
                self.logic(expr, input)
            }
            Expr::Call(inner, name, args) => self.invoke(inner, name, args, input),
            Expr::Binary(op, left, right) => self.operation(*op, left, right, input),
            Expr::Negate(inner) => self.negate(inner, input),
            _ => self.leaf(expr, input),
        }
    }

    /// A literal, `$this`, a variable or `{}`.
    fn leaf(&self, expr: &Expr, input: &[Item<'a>]) -> Result<Items<'a>, EvalError> {
        match expr {
            Expr::This => {
                self.budget.spend(input.len())?;
                Ok(input.to_vec())
            }
            Expr::Str(s) => {
                self.budget.write(s.len())?;
                Ok(vec![Item::Str(s.clone())])
            }
            Expr::Number(n) => Ok(vec![Item::Number(*n)]),
            Expr::Bool(b) => Ok(vec![Item::Bool(*b)]),
            Expr::Env(name) => self.variable(name),
            _ => Ok(vec![]),
        }
    }

    /// `inner[index]`.
    fn index(
        &self,
        inner: &Expr,
        index: usize,
        input: &[Item<'a>],
    ) -> Result<Items<'a>, EvalError> {
        Ok(self
            .eval(inner, input)?
            .into_iter()
            .nth(index)
            .into_iter()
            .collect())
    }

    /// `inner[index]` with an index computed on `input`: empty when it is empty, an error
    /// when it is not a single whole number.
    fn index_by(
        &self,
        inner: &Expr,
        index: &Expr,
        input: &[Item<'a>],
    ) -> Result<Items<'a>, EvalError> {
        let index = self.eval(index, input)?;
        let Some(item) = operators::single(&index)? else {
            return Ok(vec![]);
        };
        let index = operators::number(item)
            .filter(|n| *n >= 0.0 && n.fract() == 0.0)
            .ok_or_else(|| EvalError::Invalid("an index must be a whole number".into()))?;
        Ok(self
            .eval(inner, input)?
            .into_iter()
            .nth(index as usize)
            .into_iter()
            .collect())
    }

    /// `inner as ty`.
    fn cast(&self, inner: &Expr, ty: &str, input: &[Item<'a>]) -> Result<Items<'a>, EvalError> {
        let mut items = self.eval(inner, input)?;
        items.retain(|item| item.is_type(ty));
        Ok(items)
    }

    /// `inner.name(args)`.
    fn invoke(
        &self,
        inner: &Expr,
        name: &str,
        args: &[Expr],
        input: &[Item<'a>],
    ) -> Result<Items<'a>, EvalError> {
        let items = self.eval(inner, input)?;
        self.call(name, args, items, input)
    }

    /// `-inner`.
    fn negate(&self, inner: &Expr, input: &[Item<'a>]) -> Result<Items<'a>, EvalError> {
        operators::negate(self.eval(inner, input)?)
    }

    /// `inner.name`.
    fn members(
        &self,
        inner: &Expr,
        name: &str,
        input: &[Item<'a>],
    ) -> Result<Items<'a>, EvalError> {
        let at_start = matches!(inner, Expr::This);
        let items = self.eval(inner, input)?;
        let mut out = Vec::new();
        for item in &items {
            if at_start && starts_upper(name) {
                // A type name at the start of a path selects the context if it is of that
                // type: `Patient.name` on a Patient.
                if item.is_type(name) {
                    out.push(item.clone());
                }
                continue;
            }
            let before = out.len();
            member(item, name, &mut out);
            self.budget.spend(1 + out.len() - before)?;
        }
        Ok(out)
    }

    /// `inner is ty`.
    fn is(&self, inner: &Expr, ty: &str, input: &[Item<'a>]) -> Result<Items<'a>, EvalError> {
        match self.eval(inner, input)?.as_slice() {
            [] => Ok(vec![]),
            [item] => Ok(vec![Item::Bool(item.is_type(ty))]),
            _ => Err(EvalError::Invalid("'is' needs a single item".into())),
        }
    }

    /// `left | right`: without duplicate values (by `=`), from either side.
    fn union(&self, left: &Expr, right: &Expr, input: &[Item<'a>]) -> Result<Items<'a>, EvalError> {
        let left = self.eval(left, input)?;
        let right = self.eval(right, input)?;
        distinct(left.into_iter().chain(right), &self.budget)
    }

    /// `left = right` or (`negated`) `left != right`.
    fn equality(
        &self,
        left: &Expr,
        right: &Expr,
        negated: bool,
        input: &[Item<'a>],
    ) -> Result<Items<'a>, EvalError> {
        let left = self.eval(left, input)?;
        let right = self.eval(right, input)?;
        if left.is_empty() || right.is_empty() {
            return Ok(vec![]);
        }
        let mut equal = left.len() == right.len();
        for (a, b) in left.iter().zip(&right) {
            if !equal {
                break;
            }
            equal = equals(a, b, &self.budget)?;
        }
        Ok(vec![Item::Bool(equal != negated)])
    }

    /// `and`, `or`, `xor` and `implies`, on their operands' truth values.
    ///
    /// The right operand is not evaluated when the left one decides: `false and x`,
    /// `true or x` and `false implies x` whatever `x` is, so an `x` that would fail (a
    /// collection where one item is needed) does not make them fail. Invariants lean on it:
    /// ele-1's `hasValue() or ...` on every primitive and ref-1's
    /// `reference.startsWith('#').not() or ...` on every reference stop at their left side.
    fn logic(&self, expr: &Expr, input: &[Item<'a>]) -> Result<Items<'a>, EvalError> {
        let (Expr::And(left, right) | Expr::Or(left, right) | Expr::Binary(_, left, right)) = expr
        else {
            unreachable!("logic() is called on logical operators only")
        };
        let left = self.truth(left, input)?;
        let decided = match (expr, left) {
            (Expr::And(..), Some(false)) => Some(false),
            (Expr::Or(..), Some(true)) | (Expr::Binary(Op::Implies, ..), Some(false)) => Some(true),
            _ => None,
        };
        if let Some(value) = decided {
            return Ok(vec![Item::Bool(value)]);
        }
        let right = self.truth(right, input)?;
        let value = match expr {
            Expr::And(..) => match (left, right) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
            Expr::Or(..) => match (left, right) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
            Expr::Binary(op, ..) => operators::logical(*op, left, right),
            _ => None,
        };
        Ok(value.map(Item::Bool).into_iter().collect())
    }

    /// The other binary operators.
    fn operation(
        &self,
        op: Op,
        left: &Expr,
        right: &Expr,
        input: &[Item<'a>],
    ) -> Result<Items<'a>, EvalError> {
        let left = self.eval(left, input)?;
        let right = self.eval(right, input)?;
        operators::binary(op, left, right, &self.budget)
    }

    /// The singleton boolean of a collection: empty is unknown, a single boolean is itself,
    /// any other single item is true.
    pub(super) fn truth(&self, expr: &Expr, input: &[Item<'a>]) -> Result<Option<bool>, EvalError> {
        let items = self.eval(expr, input)?;
        Ok(match items.as_slice() {
            [] => None,
            [Item::Bool(b)] => Some(*b),
            [
                Item::Node {
                    value: Value::Bool(b),
                    ..
                },
            ] => Some(*b),
            [_] => Some(true),
            _ => return Err(EvalError::Invalid("a boolean needs a single item".into())),
        })
    }

    /// `%name`.
    fn variable(&self, name: &str) -> Result<Items<'a>, EvalError> {
        if let Some(items) = self.environment.and_then(|e| e.variable(name)) {
            self.budget.spend(items.len())?;
            return Ok(items);
        }
        let text = |s: String| Ok(vec![Item::Str(s)]);
        match name {
            "resource" => Ok(vec![Item::node(self.resource, None)]),
            "rootResource" => Ok(vec![Item::node(self.root, None)]),
            "context" => Ok(vec![self.focus.clone()]),
            "ucum" => text("http://unitsofmeasure.org".into()),
            "sct" => text("http://snomed.info/sct".into()),
            "loinc" => text("http://loinc.org".into()),
            _ => match name.split_once('-') {
                Some(("vs", rest)) => text(format!("http://hl7.org/fhir/ValueSet/{rest}")),
                Some(("ext", rest)) => {
                    text(format!("http://hl7.org/fhir/StructureDefinition/{rest}"))
                }
                _ => Err(EvalError::Invalid(format!("unknown variable %{name}"))),
            },
        }
    }

    /// A function call on `items`, with arguments evaluated on `input` (but lambdas, types and
    /// urls).
    fn call(
        &self,
        name: &str,
        args: &[Expr],
        items: Items<'a>,
        input: &[Item<'a>],
    ) -> Result<Items<'a>, EvalError> {
        if LAMBDAS.contains(&name) {
            return self.lambda(name, args, items);
        }
        if WRITTEN.contains(&name) {
            return self.written(name, args, items);
        }
        let mut values = Vec::with_capacity(args.len());
        for arg in args {
            values.push(self.eval(arg, input)?);
        }
        self.function(name, &values, items)
    }

    /// The functions of [`WRITTEN`], whose argument is read as written.
    fn written(&self, name: &str, args: &[Expr], items: Items<'a>) -> Result<Items<'a>, EvalError> {
        // `T`, `FHIR.T` or `System.T`.
        let type_argument = || match args {
            [Expr::Member(inner, ty)] => match &**inner {
                Expr::This => Ok(ty.as_str()),
                Expr::Member(this, namespace)
                    if matches!(**this, Expr::This)
                        && matches!(namespace.as_str(), "FHIR" | "System") =>
                {
                    Ok(ty.as_str())
                }
                _ => Err(EvalError::Invalid(format!("{name}() takes a type name"))),
            },
            _ => Err(EvalError::Invalid(format!("{name}() takes a type name"))),
        };
        let string_argument = || match args {
            [Expr::Str(s)] => Ok(s.as_str()),
            _ => Err(EvalError::Invalid(format!("{name}() takes a string"))),
        };
        Ok(match name {
            "as" | "ofType" => {
                let ty = type_argument()?;
                items.into_iter().filter(|item| item.is_type(ty)).collect()
            }
            "is" => {
                let ty = type_argument()?;
                match items.as_slice() {
                    [] => vec![],
                    [item] => vec![Item::Bool(item.is_type(ty))],
                    _ => return Err(EvalError::Invalid("is() needs a single item".into())),
                }
            }
            "extension" | "hasExtension" => {
                let url = string_argument()?;
                let mut out = Vec::new();
                for item in &items {
                    self.budget.spend(extensions(item, url, &mut out))?;
                }
                match name {
                    "extension" => out,
                    _ => vec![Item::Bool(!out.is_empty())],
                }
            }
            // SQL on FHIR: the key of the resource a reference names (its id), of any type
            // or only of the type given.
            "getReferenceKey" => {
                let ty = match args {
                    [] => None,
                    _ => Some(type_argument()?),
                };
                let mut out = Vec::new();
                for item in &items {
                    self.budget.spend(1)?;
                    if let Some(key) = reference_key(item, ty) {
                        out.push(key);
                    }
                }
                out
            }
            _ => return Err(EvalError::Invalid(format!("{name}() is not known"))),
        })
    }

    /// The target of a Reference (or of a canonical/uri string), known by its type: a
    /// contained resource for `#id`, else the type named in the reference.
    pub(super) fn resolve(&self, item: &Item<'a>) -> Result<Option<Item<'a>>, EvalError> {
        let Item::Node { value, .. } = item else {
            return Ok(None);
        };
        let reference = match value {
            Value::String(s) => Some(s.as_str()),
            Value::Object(object) => object.get("reference").and_then(Value::as_str),
            _ => None,
        };
        let Some(reference) = reference else {
            return Ok(None);
        };
        self.budget.read(reference.len())?;
        if let Some(id) = reference.strip_prefix('#') {
            let Some(contained) = self.root.get("contained").and_then(Value::as_array) else {
                return Ok(None);
            };
            self.budget.spend(contained.len())?;
            return Ok(contained
                .iter()
                .find(|c| c.get("id").and_then(Value::as_str) == Some(id))
                .map(|c| Item::node(c, None)));
        }
        Ok(crate::fhir::reference::resource_type(reference)
            .map(|ty| Item::Resolved(ty.to_string())))
    }
}

/// The id of the resource the Reference `item` names (its `Type/id` part), when it names one
/// of type `ty` (any type when None).
fn reference_key<'a>(item: &Item<'a>, ty: Option<&str>) -> Option<Item<'a>> {
    let Item::Node { value, .. } = item else {
        return None;
    };
    let reference = value.get("reference")?.as_str()?;
    let (named, id) = crate::fhir::reference::local(reference)?.split_once('/')?;
    if ty.is_some_and(|ty| ty != named) {
        return None;
    }
    Some(Item::Str(id.to_string()))
}

fn starts_upper(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
}

/// FHIR's ele-1, `hasValue() or (children().count() > id.count())`, on the one element
/// `element`: what the evaluator gives for that expression, without building its
/// collections. ele-1 is the invariant of every element, so validation checks it on every
/// value of a resource; a test holds the two equal on arbitrary JSON.
pub fn has_value_or_children(element: &Value) -> bool {
    let Value::Object(object) = element else {
        return has_value(element);
    };
    let mut ids = Vec::new();
    member(
        &Item::Node {
            value: element,
            ty: None,
        },
        "id",
        &mut ids,
    );
    child_values(object).count() > ids.len()
}

/// Whether `value` is a primitive's value (what `hasValue()` asks of one item).
pub(super) fn has_value(value: &Value) -> bool {
    matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

/// The child elements of an object, as `children()` yields them: an array's every item (nulls
/// included), any other member once (a primitive's `_name` sibling too).
pub(super) fn child_values(object: &Map<String, Value>) -> impl Iterator<Item = &Value> {
    object.values().flat_map(|value| {
        value
            .as_array()
            .map_or(std::slice::from_ref(value), Vec::as_slice)
    })
}

/// The children of `item` named `name`: the member itself, or the members of a choice element
/// (`value` matches `valueQuantity`, typed `Quantity`). Arrays yield their items.
fn member<'a>(item: &Item<'a>, name: &str, out: &mut Items<'a>) {
    let Item::Node {
        value: Value::Object(object),
        ..
    } = item
    else {
        return;
    };
    let mut push = |value: &'a Value, ty: Option<Cow<'a, str>>| match value {
        Value::Array(items) => out.extend(
            items
                .iter()
                .filter(|v| !v.is_null())
                .map(|v| Item::node(v, ty.clone())),
        ),
        Value::Null => {}
        value => out.push(Item::node(value, ty)),
    };
    if let Some(value) = object.get(name) {
        push(value, None);
        return;
    }
    // A primitive with only an id or extensions (`_birthDate`): the element exists. Found
    // without building the `_` name: this runs for every step of every path evaluated.
    if let Some(value) = object
        .iter()
        .find_map(|(key, value)| (key.strip_prefix('_') == Some(name)).then_some(value))
    {
        push(value, None);
        return;
    }
    if !CHOICE_NAMES.contains(&name) {
        return;
    }
    for (key, value) in object {
        // `_valueString` stands for a value with only extensions, unless `valueString` is
        // there too.
        let (member, extension_only) = match key.strip_prefix('_') {
            Some(member) => (member, true),
            None => (key.as_str(), false),
        };
        if extension_only && object.contains_key(member) {
            continue;
        }
        if let Some(suffix) = member.strip_prefix(name)
            && let Some(ty) = choice_type(suffix)
        {
            push(value, Some(ty));
        }
    }
}

/// Adds the extensions of `item` with `url` to `out`; how many extensions it looked at.
fn extensions<'a>(item: &Item<'a>, url: &str, out: &mut Items<'a>) -> usize {
    let Item::Node { value, .. } = item else {
        return 0;
    };
    let Some(Value::Array(extensions)) = value.get("extension") else {
        return 0;
    };
    out.extend(
        extensions
            .iter()
            .filter(|e| e.get("url").and_then(Value::as_str) == Some(url))
            .map(|e| Item::node(e, Some(Cow::Borrowed("Extension")))),
    );
    extensions.len()
}

/// The types a JSON string of unknown type may be taken for.
const STRING_TYPES: &[&str] = &[
    "string",
    "code",
    "id",
    "markdown",
    "uri",
    "url",
    "canonical",
    "oid",
    "uuid",
];

/// The names of the choice elements (`value[x]`) of every R4 resource and data type: only
/// these are read as `name` + a type suffix (`responseCode` is not `response[x]`).
const CHOICE_NAMES: &[&str] = &[
    "abatement",
    "additive",
    "age",
    "allowed",
    "amount",
    "answer",
    "asNeeded",
    "author",
    "born",
    "bounds",
    "characteristic",
    "chargeItem",
    "code",
    "collected",
    "content",
    "created",
    "date",
    "deceased",
    "defaultValue",
    "definingSubstance",
    "definition",
    "detail",
    "diagnosis",
    "dose",
    "doseNumber",
    "due",
    "effective",
    "entity",
    "event",
    "example",
    "fastingStatus",
    "fixed",
    "identified",
    "indication",
    "item",
    "legallyBinding",
    "location",
    "manufacturer",
    "maxValue",
    "medication",
    "minValue",
    "minimumVolume",
    "module",
    "multipleBirth",
    "name",
    "occurred",
    "occurrence",
    "offset",
    "onset",
    "participantEffective",
    "pattern",
    "performed",
    "probability",
    "procedure",
    "product",
    "quantity",
    "rate",
    "reported",
    "scheduled",
    "seriesDoses",
    "serviced",
    "source",
    "start",
    "statusReason",
    "studyEffective",
    "subject",
    "substance",
    "target",
    "time",
    "timing",
    "topic",
    "used",
    "value",
    "when",
];

/// The FHIR data types a choice element can take, as they appear in JSON member names.
const CHOICE_TYPES: &[&str] = &[
    "Address",
    "Age",
    "Annotation",
    "Attachment",
    "Base64Binary",
    "Boolean",
    "Canonical",
    "Code",
    "CodeableConcept",
    "Coding",
    "ContactDetail",
    "ContactPoint",
    "Contributor",
    "Count",
    "DataRequirement",
    "Date",
    "DateTime",
    "Decimal",
    "Distance",
    "Dosage",
    "Duration",
    "Expression",
    "HumanName",
    "Id",
    "Identifier",
    "Instant",
    "Integer",
    "Markdown",
    "Meta",
    "Money",
    "Oid",
    "ParameterDefinition",
    "Period",
    "PositiveInt",
    "Quantity",
    "Range",
    "Ratio",
    "Reference",
    "RelatedArtifact",
    "SampledData",
    "Signature",
    "String",
    "Time",
    "Timing",
    "TriggerDefinition",
    "UnsignedInt",
    "Uri",
    "Url",
    "UsageContext",
    "Uuid",
];

/// The FHIR primitive types, whose names start in lower case.
const PRIMITIVES: &[&str] = &[
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
    "Markdown",
    "Oid",
    "PositiveInt",
    "String",
    "Time",
    "UnsignedInt",
    "Uri",
    "Url",
    "Uuid",
];

/// The type code a choice member's suffix names (`DateTime` -> `dateTime`, `HumanName` ->
/// itself: primitives begin in lower case); a suffix that names no type is returned as it is.
pub fn type_of_suffix(suffix: &str) -> Cow<'_, str> {
    choice_type(suffix).unwrap_or(Cow::Borrowed(suffix))
}

/// The type a choice member's suffix names (`DateTime` -> `dateTime`), if it is one.
fn choice_type(suffix: &str) -> Option<Cow<'_, str>> {
    if !CHOICE_TYPES.contains(&suffix) {
        return None;
    }
    Some(if PRIMITIVES.contains(&suffix) {
        let mut name = suffix.to_string();
        name[..1].make_ascii_lowercase();
        Cow::Owned(name)
    } else {
        Cow::Borrowed(suffix)
    })
}

/// Is `ty` a specialization of `wanted`? (The profiles of Quantity, and every resource of
/// Resource and DomainResource.)
fn is_subtype(ty: &str, wanted: &str) -> bool {
    match wanted {
        "Quantity" => matches!(
            ty,
            "Age" | "Count" | "Distance" | "Duration" | "MoneyQuantity" | "SimpleQuantity"
        ),
        "Resource" | "DomainResource" => fhirlake_model::is_resource_type(ty),
        "string" => matches!(ty, "code" | "id" | "markdown"),
        "uri" => matches!(ty, "url" | "canonical" | "oid" | "uuid"),
        "integer" => matches!(ty, "positiveInt" | "unsignedInt"),
        _ => false,
    }
}

/// Whether `expr` has one value in one evaluation, whatever its input: it starts from
/// variables and literals only, never from `$this` (which a path without a root, `name`, is
/// relative to), and the arguments of its functions do too, but those read as written
/// ([`WRITTEN`]).
fn independent(expr: &Expr) -> bool {
    match expr {
        Expr::This => false,
        Expr::Env(_) | Expr::Empty | Expr::Str(_) | Expr::Number(_) | Expr::Bool(_) => true,
        Expr::Member(inner, _)
        | Expr::Index(inner, _)
        | Expr::Is(inner, _)
        | Expr::As(inner, _)
        | Expr::Negate(inner) => independent(inner),
        Expr::Call(inner, name, args) => {
            independent(inner) && (WRITTEN.contains(&name.as_str()) || args.iter().all(independent))
        }
        Expr::IndexBy(left, right)
        | Expr::Union(left, right)
        | Expr::Equals(left, right, _)
        | Expr::And(left, right)
        | Expr::Or(left, right)
        | Expr::Binary(_, left, right) => independent(left) && independent(right),
    }
}

/// The functions whose argument is read as written: a type name or a url.
const WRITTEN: &[&str] = &[
    "as",
    "ofType",
    "is",
    "extension",
    "hasExtension",
    "getReferenceKey",
];

/// Ok when function `name` was called with `n` arguments (it was with `count`).
pub(super) fn arity(name: &str, count: usize, n: usize) -> Result<(), EvalError> {
    if count == n {
        Ok(())
    } else {
        Err(EvalError::Invalid(format!(
            "{name}() takes {n} argument(s)"
        )))
    }
}

/// A boolean item's value; None for any other item.
pub fn truth(item: &Item<'_>) -> Option<bool> {
    match item {
        Item::Bool(b) => Some(*b),
        Item::Node {
            value: Value::Bool(b),
            ..
        } => Some(*b),
        _ => None,
    }
}

/// A primitive value, borrowed: equality never copies what it compares.
#[derive(PartialEq)]
enum Primitive<'a> {
    Null,
    Bool(bool),
    Str(&'a str),
    Number(f64),
}

/// The primitive value of `item`; None for an object, an array or a resolved reference.
fn primitive<'a>(item: &'a Item<'_>) -> Option<Primitive<'a>> {
    Some(match item {
        Item::Node { value, .. } => match value {
            Value::Null => Primitive::Null,
            Value::Bool(b) => Primitive::Bool(*b),
            Value::String(s) => Primitive::Str(s),
            Value::Number(n) => Primitive::Number(n.as_f64()?),
            Value::Object(_) | Value::Array(_) => return None,
        },
        Item::Bool(b) => Primitive::Bool(*b),
        Item::Str(s) => Primitive::Str(s),
        Item::Number(n) if n.is_finite() => Primitive::Number(*n),
        Item::Number(_) | Item::Resolved(_) => return None,
    })
}

/// FHIRPath `=` of two single items: primitives by value (numbers as numbers), elements by
/// their JSON. Each value compared is a step, each 64 bytes of text compared another.
pub(super) fn equals(a: &Item<'_>, b: &Item<'_>, budget: &Budget) -> Result<bool, EvalError> {
    match (primitive(a), primitive(b)) {
        (Some(x), Some(y)) => {
            match (&x, &y) {
                (Primitive::Str(x), Primitive::Str(y)) => budget.read(x.len().min(y.len()))?,
                _ => budget.spend(1)?,
            }
            Ok(x == y)
        }
        _ => match (a, b) {
            (Item::Node { value: x, .. }, Item::Node { value: y, .. }) => same_json(x, y, budget),
            _ => budget.spend(1).map(|()| false),
        },
    }
}

/// Whether two JSON values are equal, member by member without recursion, each value
/// compared spending a step (the same value, as two items from one resource often are, is
/// one step).
fn same_json(a: &Value, b: &Value, budget: &Budget) -> Result<bool, EvalError> {
    let mut pending = vec![(a, b)];
    while let Some((a, b)) = pending.pop() {
        if std::ptr::eq(a, b) {
            budget.spend(1)?;
            continue;
        }
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                budget.spend(1 + x.len())?;
                if x.len() != y.len() {
                    return Ok(false);
                }
                for (key, value) in x {
                    match y.get(key) {
                        Some(other) => pending.push((value, other)),
                        None => return Ok(false),
                    }
                }
            }
            (Value::Array(x), Value::Array(y)) => {
                budget.spend(1 + x.len())?;
                if x.len() != y.len() {
                    return Ok(false);
                }
                pending.extend(x.iter().zip(y));
            }
            (Value::String(x), Value::String(y)) => {
                budget.read(x.len().min(y.len()))?;
                if x != y {
                    return Ok(false);
                }
            }
            _ => {
                budget.spend(1)?;
                if a != b {
                    return Ok(false);
                }
            }
        }
    }
    Ok(true)
}

/// A hash that items [`equals`] calls equal share: of the value of a primitive, of the
/// member names and primitive members of an object, of the length of an array. Hashing
/// spends what reading the value costs.
fn equality_hash(item: &Item<'_>, budget: &Budget) -> Result<u64, EvalError> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    match primitive(item) {
        None => match item {
            Item::Node {
                value: Value::Object(object),
                ..
            } => {
                budget.spend(1 + object.len())?;
                0u8.hash(&mut hasher);
                for (key, value) in object {
                    key.hash(&mut hasher);
                    match value {
                        Value::String(s) => {
                            budget.read(s.len())?;
                            s.hash(&mut hasher);
                        }
                        Value::Bool(b) => b.hash(&mut hasher),
                        Value::Number(n) => n.as_f64().map(f64::to_bits).hash(&mut hasher),
                        Value::Array(a) => a.len().hash(&mut hasher),
                        Value::Object(_) | Value::Null => {}
                    }
                }
            }
            Item::Node {
                value: Value::Array(array),
                ..
            } => {
                budget.spend(1)?;
                (5u8, array.len()).hash(&mut hasher);
            }
            _ => {
                budget.spend(1)?;
                6u8.hash(&mut hasher);
            }
        },
        Some(Primitive::Null) => {
            budget.spend(1)?;
            1u8.hash(&mut hasher)
        }
        Some(Primitive::Bool(b)) => {
            budget.spend(1)?;
            (2u8, b).hash(&mut hasher)
        }
        Some(Primitive::Str(s)) => {
            budget.read(s.len())?;
            (3u8, s).hash(&mut hasher)
        }
        // -0.0 and 0.0 are equal: both hash as 0.0.
        Some(Primitive::Number(n)) => {
            budget.spend(1)?;
            (4u8, (n + 0.0).to_bits()).hash(&mut hasher)
        }
    }
    Ok(hasher.finish())
}

/// A collection without repeated values (by `=`), in the order they were added. Only items
/// whose [`equality_hash`] is the same are compared, so a collection of primitives (the
/// references of a whole resource) takes linear time.
#[derive(Default)]
pub(super) struct Distinct<'a> {
    pub(super) items: Items<'a>,
    buckets: std::collections::HashMap<u64, Vec<usize>>,
}

impl<'a> Distinct<'a> {
    /// Adds `item` unless an equal one is there; whether it was added.
    pub(super) fn add(&mut self, item: Item<'a>, budget: &Budget) -> Result<bool, EvalError> {
        let bucket = self
            .buckets
            .entry(equality_hash(&item, budget)?)
            .or_default();
        for &n in bucket.iter() {
            if equals(&self.items[n], &item, budget)? {
                return Ok(false);
            }
        }
        bucket.push(self.items.len());
        self.items.push(item);
        Ok(true)
    }
}

/// `items` without repeated values (by `=`), in order.
pub(super) fn distinct<'a>(
    items: impl IntoIterator<Item = Item<'a>>,
    budget: &Budget,
) -> Result<Items<'a>, EvalError> {
    let mut distinct = Distinct::default();
    for item in items {
        distinct.add(item, budget)?;
    }
    Ok(distinct.items)
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;
    use serde_json::json;

    #[test]
    fn choice_suffixes_name_their_type_codes() {
        assert_eq!(type_of_suffix("DateTime"), "dateTime");
        assert_eq!(type_of_suffix("HumanName"), "HumanName");
        assert_eq!(type_of_suffix("Nothing"), "Nothing");
    }

    /// JSON of the shapes ele-1 looks at: objects whose members may be `id`, `_id`, a plain
    /// or a `_` shadow member, null, or arrays holding nulls.
    fn element_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|n| json!(n)),
            "[a-z]{0,3}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            let key = prop_oneof![
                Just("id".to_string()),
                Just("_id".to_string()),
                Just("value".to_string()),
                Just("_value".to_string()),
                Just("resourceType".to_string()),
                "[a-z]{1,2}",
            ];
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(key, inner, 0..5)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn ele_1_natively_is_ele_1_evaluated(element in element_json()) {
            let expr = parse("hasValue() or (children().count() > id.count())").unwrap();
            let evaluated = evaluate_on(&expr, &element, None, [&element, &element])
                .ok()
                .and_then(|items| match items.as_slice() {
                    [item] => truth(item),
                    _ => None,
                });
            proptest::prop_assert_eq!(Some(has_value_or_children(&element)), evaluated);
        }
    }

    #[test]
    fn ele_1_natively_on_the_shapes_that_matter() {
        for (element, holds) in [
            (json!("a"), true),
            (json!(0), true),
            (json!(false), true),
            (json!(null), false),
            (json!([]), false),
            (json!({}), false),
            (json!({"id": "a"}), false),
            (json!({"_id": {"extension": []}}), false),
            (json!({"id": "a", "extension": []}), false),
            (json!({"id": "a", "extension": [{}]}), true),
            (json!({"id": ["a", null]}), true),
            (json!({"system": "s"}), true),
        ] {
            assert_eq!(has_value_or_children(&element), holds, "{element}");
        }
    }

    #[test]
    fn the_right_operand_is_not_evaluated_when_the_left_decides() {
        // `name.given` is two items: as a boolean it fails, unless it is never looked at.
        let patient = json!({"resourceType": "Patient", "active": true,
            "name": [{"given": ["a", "b"]}]});
        for (expression, expected) in [
            ("active or name.given", vec![json!(true)]),
            ("active.not() and name.given", vec![json!(false)]),
            ("active.not() implies name.given", vec![json!(true)]),
        ] {
            assert_eq!(values(expression, &patient), expected, "{expression}");
        }
        for expression in ["active and name.given", "active xor name.given"] {
            let expr = parse(expression).unwrap();
            assert!(evaluate(&expr, &patient).is_err(), "{expression}");
        }
    }

    fn values(expression: &str, resource: &Value) -> Vec<Value> {
        let expr = parse(expression).unwrap();
        evaluate(&expr, resource)
            .unwrap()
            .into_iter()
            .map(|item| match item {
                Item::Node { value, .. } => value.clone(),
                Item::Bool(b) => json!(b),
                Item::Str(s) => json!(s),
                Item::Number(n) => json!(n),
                Item::Resolved(ty) => json!({"resolved": ty}),
            })
            .collect()
    }

    fn observation() -> Value {
        json!({
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": "Patient/p1"},
            "performer": [{"reference": "Practitioner/d1"}, {"reference": "#org"}],
            "contained": [{"resourceType": "Organization", "id": "org"}],
            "effectiveDateTime": "2020-01-01",
            "valueQuantity": {"value": 72, "unit": "/min"},
            "component": [
                {"code": {"text": "a"}, "valueQuantity": {"value": 1}},
                {"code": {"text": "b"}, "valueString": "x"}
            ],
            "extension": [{"url": "http://e/x", "valueCode": "c"}]
        })
    }

    #[test]
    fn a_union_is_shared_between_items_only_when_no_item_changes_it() {
        // Relative to each name: evaluated anew for each.
        let patient = json!({"resourceType": "Patient", "name": [
            {"given": ["A"], "family": "B"}, {"given": ["C", "A"], "family": "D"}
        ]});
        assert_eq!(
            values("Patient.name.select(given | family)", &patient),
            [json!("A"), json!("B"), json!("C"), json!("A"), json!("D")]
        );
        assert_eq!(
            values(
                "Patient.name.where((given | family).count() = 3).family",
                &patient
            ),
            [json!("D")]
        );
        // Of the whole resource: one value, for every contained resource dom-3 looks at.
        let dom_3 = "contained.where(('#' + id in (%resource.descendants().reference | \
                     %resource.descendants().as(uri))).not()).id";
        let observation = |references: Value| {
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                "contained": [{"resourceType": "Patient", "id": "a"},
                              {"resourceType": "Patient", "id": "b"},
                              {"resourceType": "Patient", "id": "c"}],
                "performer": references})
        };
        let unreferenced = |references| {
            values(dom_3, &observation(references))
                .into_iter()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            unreferenced(json!([{"reference": "#b"}])),
            [json!("a"), json!("c")]
        );
        assert_eq!(
            unreferenced(json!([{"reference": "#c"}, {"reference": "#a"}])),
            [json!("b")]
        );
        assert!(independent(
            &parse("%resource.descendants().as(uri) | 'x'").unwrap()
        ));
        assert!(!independent(
            &parse("%resource.name.where(given = 'x') | 'x'").unwrap()
        ));
        assert!(!independent(&parse("given | %resource.name").unwrap()));
    }

    #[test]
    fn an_evaluation_keeps_the_value_of_its_outermost_fixed_unions_only() {
        let patient = json!({"resourceType": "Patient", "id": "p", "gender": "male",
            "name": [{"family": "A"}, {"family": "B"}, {"family": "C"}]});
        let expr = parse("name.select(family | (%resource.id | (%resource.gender | 'x'))).count()")
            .unwrap();
        let context = Context {
            resource: &patient,
            root: &patient,
            focus: Item::node(&patient, None),
            budget: Budget::new(Limits::DEFAULT),
            environment: None,
            unions: RefCell::default(),
            within_fixed: Cell::new(0),
        };
        let items = context.eval(&expr, &[Item::node(&patient, None)]).unwrap();
        assert_eq!(items, [Item::Number(12.0)]);
        let unions = context.unions.borrow();
        // The outer union depends on each name; of the two within it, the inner one is part
        // of the other and is not kept apart.
        assert_eq!(unions.len(), 2);
        let kept: Vec<usize> = unions.values().flatten().map(Vec::len).collect();
        assert_eq!(kept, [3]);
    }

    #[test]
    fn the_longest_union_chains_evaluate_as_unions() {
        // As deep as the parser lets an expression nest, both with an input-dependent first
        // operand (each union evaluated on each name) and without (evaluated once).
        let patient = json!({"resourceType": "Patient",
            "name": [{"family": "A"}, {"family": "B"}]});
        let literals: Vec<String> = (0..60).map(|n| format!("'{}'", n % 30)).collect();
        let fixed = literals.join(" | ");
        assert_eq!(values(&format!("name.select({fixed})"), &patient).len(), 60);
        let relative = format!("name.select(family | {fixed}).count()");
        assert_eq!(values(&relative, &patient), [json!(62.0)]);
    }

    #[test]
    fn unions_remove_duplicate_values() {
        let patient = json!({"resourceType": "Patient", "name": [
            {"given": ["Peter", "James"]}, {"given": ["Jim", "Peter", "James"]}
        ]});
        assert_eq!(
            values("Patient.name.given | Practitioner.name.given", &patient),
            [json!("Peter"), json!("James"), json!("Jim")]
        );
        let o = observation();
        assert_eq!(values("Observation.code | Observation.code", &o).len(), 1);
    }

    #[test]
    fn paths_select_members_array_items_and_choices() {
        let o = observation();
        assert_eq!(
            values("Observation.code.coding.code", &o),
            [json!("8867-4")]
        );
        assert_eq!(values("Patient.name", &o), Vec::<Value>::new());
        assert_eq!(values("Observation.effective", &o), [json!("2020-01-01")]);
        assert_eq!(values("Observation.component.value", &o).len(), 2);
        assert_eq!(
            values("Observation.component.value.as(Quantity)", &o),
            [json!({"value": 1})]
        );
        assert_eq!(
            values("(Observation.effective as dateTime)", &o),
            [json!("2020-01-01")]
        );
        assert_eq!(
            values("Observation.effective as Period", &o),
            Vec::<Value>::new()
        );
        assert_eq!(
            values("Observation.value.ofType(Quantity).unit", &o),
            [json!("/min")]
        );
        assert_eq!(
            values("Observation.performer[1]", &o),
            [json!({"reference": "#org"})]
        );
    }

    #[test]
    fn resolve_is_type_filters_references() {
        let o = observation();
        assert_eq!(
            values("Observation.subject.where(resolve() is Patient)", &o),
            [json!({"reference": "Patient/p1"})]
        );
        assert_eq!(
            values("Observation.performer.where(resolve() is Organization)", &o),
            [json!({"reference": "#org"})]
        );
    }

    #[test]
    fn where_equality_logic_and_extensions() {
        let patient = json!({
            "resourceType": "Patient",
            "telecom": [{"system": "phone", "value": "1"}, {"system": "email", "value": "a@b"}],
            "deceasedBoolean": false,
            "extension": [{"url": "http://e/m", "valueString": "Maiden"}]
        });
        assert_eq!(
            values("Patient.telecom.where(system='email').value", &patient),
            [json!("a@b")]
        );
        assert_eq!(
            values(
                "Patient.deceased.exists() and Patient.deceased != false",
                &patient
            ),
            [json!(false)]
        );
        assert_eq!(
            values("Patient.extension('http://e/m').value", &patient),
            [json!("Maiden")]
        );
        assert_eq!(
            values("Patient.hasExtension('http://e/x')", &patient),
            [json!(false)]
        );
        assert_eq!(
            values("Patient.telecom.system | Patient.telecom.system", &patient).len(),
            2
        );
    }

    #[test]
    fn sql_on_fhir_functions_join_and_key() {
        let patient = json!({"resourceType": "Patient", "id": "p1",
            "name": [{"given": ["A", "B"]}, {"given": ["C"]}],
            "link": [{"other": {"reference": "Patient/p2"}},
                     {"other": {"reference": "http://x.org/fhir/Observation/o1/_history/2"}}]});
        assert_eq!(
            values("name.given.join(', ')", &patient),
            [json!("A, B, C")]
        );
        assert_eq!(values("name.given.join()", &patient), [json!("ABC")]);
        assert_eq!(values("getResourceKey()", &patient), [json!("p1")]);
        assert_eq!(
            values("link.other.getReferenceKey()", &patient),
            [json!("p2"), json!("o1")]
        );
        assert_eq!(
            values("link.other.getReferenceKey(Observation)", &patient),
            [json!("o1")]
        );
        assert_eq!(values("name[1 + 0].given", &patient), [json!("C")]);
        assert_eq!(values("name[{}].given", &patient), Vec::<Value>::new());
        assert!(evaluate(&parse("name['a']").unwrap(), &patient).is_err());
        assert_eq!(
            values("'2010-10'.lowBoundary()", &patient),
            [json!("2010-10-01")]
        );
        let active = json!({"resourceType": "Patient", "active": false});
        assert_eq!(values("active.not()", &active), [json!(true)]);
    }

    struct Variables;

    impl<'a> Environment<'a> for Variables {
        fn variable(&self, name: &str) -> Option<Vec<Item<'a>>> {
            (name == "rowIndex").then(|| vec![Item::Number(1.0)])
        }
    }

    #[test]
    fn the_callers_variables_come_first_and_others_are_errors() {
        let patient =
            json!({"resourceType": "Patient", "name": [{"family": "A"}, {"family": "B"}]});
        let run = |expression: &str| {
            let expr = parse(expression).unwrap();
            evaluate_in(
                &Budget::default(),
                &expr,
                &[Item::node(&patient, None)],
                &patient,
                Some(&Variables),
            )
            .map(|items| items.len())
        };
        assert_eq!(run("name[%rowIndex].family"), Ok(1));
        assert_eq!(run("%resource.name"), Ok(2));
        assert!(run("%wrong").is_err());
    }

    #[test]
    fn unknown_functions_are_errors() {
        let expr = parse("Patient.name.frobnicate(given)").unwrap();
        assert!(evaluate(&expr, &json!({"resourceType": "Patient", "name": [{}]})).is_err());
    }
}
