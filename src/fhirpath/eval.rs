//! Evaluating parsed FHIRPath on a resource's JSON.

use super::operators;
use super::parser::{Expr, Op};
use serde_json::Value;
use std::borrow::Cow;
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
    pub(super) fn node(value: &'a Value, ty: Option<Cow<'a, str>>) -> Self {
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
pub struct EvalError(pub String);

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EvalError {}

pub(super) type Items<'a> = Vec<Item<'a>>;

/// Evaluates `expr` on `resource` (its JSON), returning the items it selects.
pub fn evaluate<'a>(expr: &Expr, resource: &'a Value) -> Result<Items<'a>, EvalError> {
    evaluate_on(expr, resource, None, [resource, resource])
}

/// Evaluates `expr` on `element` (of FHIR type `ty` when known), an element of `resource`,
/// itself contained in `root` (or `root` itself): how an invariant of an element is checked.
/// `[resource, root]` are `%resource` and `%rootResource`; `%context` is `element`.
pub fn evaluate_on<'a>(
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
    };
    context.eval(expr, &[focus])
}

pub(super) struct Context<'a> {
    /// `%resource`.
    resource: &'a Value,
    /// `%rootResource`: the resource that contains `resource`, or `resource` itself; where
    /// `#id` references are resolved.
    pub(super) root: &'a Value,
    /// What the evaluation started on: `%context`.
    focus: Item<'a>,
}

impl<'a> Context<'a> {
    pub(super) fn eval(&self, expr: &Expr, input: &[Item<'a>]) -> Result<Items<'a>, EvalError> {
        Ok(match expr {
            Expr::This => input.to_vec(),
            Expr::Str(s) => vec![Item::Str(s.clone())],
            Expr::Number(n) => vec![Item::Number(*n)],
            Expr::Bool(b) => vec![Item::Bool(*b)],
            Expr::Member(inner, name) => {
                let at_start = matches!(**inner, Expr::This);
                let items = self.eval(inner, input)?;
                let mut out = Vec::new();
                for item in &items {
                    if at_start && starts_upper(name) {
                        // A type name at the start of a path selects the context if it is
                        // of that type: `Patient.name` on a Patient.
                        if item.is_type(name) {
                            out.push(item.clone());
                        }
                        continue;
                    }
                    member(item, name, &mut out);
                }
                out
            }
            Expr::Index(inner, index) => {
                let items = self.eval(inner, input)?;
                items.into_iter().nth(*index).into_iter().collect()
            }
            Expr::Union(left, right) => {
                // `|` removes duplicate values (by `=`), from either side.
                let left = self.eval(left, input)?;
                distinct(left.into_iter().chain(self.eval(right, input)?))
            }
            Expr::Is(inner, ty) => {
                let items = self.eval(inner, input)?;
                match items.as_slice() {
                    [] => vec![],
                    [item] => vec![Item::Bool(item.is_type(ty))],
                    _ => return Err(EvalError("'is' needs a single item".into())),
                }
            }
            Expr::As(inner, ty) => self
                .eval(inner, input)?
                .into_iter()
                .filter(|item| item.is_type(ty))
                .collect(),
            Expr::Equals(left, right, negated) => {
                let (left, right) = (self.eval(left, input)?, self.eval(right, input)?);
                if left.is_empty() || right.is_empty() {
                    vec![]
                } else {
                    let equal = left.len() == right.len()
                        && left.iter().zip(&right).all(|(a, b)| equals(a, b));
                    vec![Item::Bool(equal != *negated)]
                }
            }
            Expr::And(left, right) => {
                let (left, right) = (self.truth(left, input)?, self.truth(right, input)?);
                match (left, right) {
                    (Some(false), _) | (_, Some(false)) => vec![Item::Bool(false)],
                    (Some(true), Some(true)) => vec![Item::Bool(true)],
                    _ => vec![],
                }
            }
            Expr::Or(left, right) => {
                let (left, right) = (self.truth(left, input)?, self.truth(right, input)?);
                match (left, right) {
                    (Some(true), _) | (_, Some(true)) => vec![Item::Bool(true)],
                    (Some(false), Some(false)) => vec![Item::Bool(false)],
                    _ => vec![],
                }
            }
            Expr::Call(inner, name, args) => {
                let items = self.eval(inner, input)?;
                self.call(name, args, items, input)?
            }
            Expr::Binary(op @ (Op::Implies | Op::Xor), left, right) => {
                let (left, right) = (self.truth(left, input)?, self.truth(right, input)?);
                operators::logical(*op, left, right)
                    .map(Item::Bool)
                    .into_iter()
                    .collect()
            }
            Expr::Binary(op, left, right) => {
                operators::binary(*op, self.eval(left, input)?, self.eval(right, input)?)?
            }
            Expr::Negate(inner) => operators::negate(self.eval(inner, input)?)?,
            Expr::Env(name) => self.variable(name)?,
            Expr::Empty => vec![],
        })
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
            _ => return Err(EvalError("a boolean needs a single item".into())),
        })
    }

    /// `%name`.
    fn variable(&self, name: &str) -> Result<Items<'a>, EvalError> {
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
                _ => Err(EvalError(format!("unknown variable %{name}"))),
            },
        }
    }

    fn call(
        &self,
        name: &str,
        args: &[Expr],
        items: Items<'a>,
        input: &[Item<'a>],
    ) -> Result<Items<'a>, EvalError> {
        let arity = |n: usize| arity(name, args, n);
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
                _ => Err(EvalError(format!("{name}() takes a type name"))),
            },
            _ => Err(EvalError(format!("{name}() takes a type name"))),
        };
        let string_argument = || match args {
            [Expr::Str(s)] => Ok(s.as_str()),
            _ => Err(EvalError(format!("{name}() takes a string"))),
        };
        Ok(match name {
            "where" => {
                arity(1)?;
                let mut out = Vec::new();
                for item in items {
                    if self.truth(&args[0], std::slice::from_ref(&item))? == Some(true) {
                        out.push(item);
                    }
                }
                out
            }
            "exists" => {
                let found = match args {
                    [] => !items.is_empty(),
                    [criteria] => {
                        let mut found = false;
                        for item in &items {
                            if self.truth(criteria, std::slice::from_ref(item))? == Some(true) {
                                found = true;
                                break;
                            }
                        }
                        found
                    }
                    _ => return Err(EvalError("exists() takes 0 or 1 argument".into())),
                };
                vec![Item::Bool(found)]
            }
            "empty" => {
                arity(0)?;
                vec![Item::Bool(items.is_empty())]
            }
            "not" => {
                arity(0)?;
                match items.as_slice() {
                    [] => vec![],
                    [Item::Bool(b)] => vec![Item::Bool(!b)],
                    _ => return Err(EvalError("not() needs a single boolean".into())),
                }
            }
            "first" => {
                arity(0)?;
                items.into_iter().take(1).collect()
            }
            "as" | "ofType" => {
                let ty = type_argument()?;
                items.into_iter().filter(|item| item.is_type(ty)).collect()
            }
            "is" => {
                let ty = type_argument()?;
                match items.as_slice() {
                    [] => vec![],
                    [item] => vec![Item::Bool(item.is_type(ty))],
                    _ => return Err(EvalError("is() needs a single item".into())),
                }
            }
            "resolve" => {
                arity(0)?;
                items.iter().filter_map(|item| self.resolve(item)).collect()
            }
            "extension" => {
                let url = string_argument()?;
                let mut out = Vec::new();
                for item in &items {
                    extensions(item, url, &mut out);
                }
                out
            }
            "hasExtension" => {
                let url = string_argument()?;
                let mut out = Vec::new();
                for item in &items {
                    extensions(item, url, &mut out);
                }
                vec![Item::Bool(!out.is_empty())]
            }
            _ => return self.function(name, args, items, input),
        })
    }

    /// The target of a Reference (or of a canonical/uri string), known by its type: a
    /// contained resource for `#id`, else the type named in the reference.
    fn resolve(&self, item: &Item<'a>) -> Option<Item<'a>> {
        let Item::Node { value, .. } = item else {
            return None;
        };
        let reference = match value {
            Value::String(s) => s.as_str(),
            Value::Object(object) => object.get("reference")?.as_str()?,
            _ => return None,
        };
        if let Some(id) = reference.strip_prefix('#') {
            let contained = self.root.get("contained")?.as_array()?;
            return contained
                .iter()
                .find(|c| c.get("id").and_then(Value::as_str) == Some(id))
                .map(|c| Item::node(c, None));
        }
        crate::fhir::reference::resource_type(reference).map(|ty| Item::Resolved(ty.to_string()))
    }
}

fn starts_upper(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
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
    // A primitive with only an id or extensions (`_birthDate`): the element exists.
    if let Some(value) = object.get(&format!("_{name}")) {
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

fn extensions<'a>(item: &Item<'a>, url: &str, out: &mut Items<'a>) {
    if let Item::Node { value, .. } = item
        && let Some(Value::Array(extensions)) = value.get("extension")
    {
        out.extend(
            extensions
                .iter()
                .filter(|e| e.get("url").and_then(Value::as_str) == Some(url))
                .map(|e| Item::node(e, Some(Cow::Borrowed("Extension")))),
        );
    }
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

/// Ok when function `name` was called with `n` arguments.
pub(super) fn arity(name: &str, args: &[Expr], n: usize) -> Result<(), EvalError> {
    if args.len() == n {
        Ok(())
    } else {
        Err(EvalError(format!("{name}() takes {n} argument(s)")))
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
/// their JSON.
pub(super) fn equals(a: &Item<'_>, b: &Item<'_>) -> bool {
    match (primitive(a), primitive(b)) {
        (Some(x), Some(y)) => x == y,
        _ => match (a, b) {
            (Item::Node { value: x, .. }, Item::Node { value: y, .. }) => x == y,
            _ => false,
        },
    }
}

/// A hash that items [`equals`] calls equal share: of the value for a primitive, one for all
/// others (which are compared one by one).
fn equality_hash(item: &Item<'_>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    match primitive(item) {
        None => 0u8.hash(&mut hasher),
        Some(Primitive::Null) => 1u8.hash(&mut hasher),
        Some(Primitive::Bool(b)) => (2u8, b).hash(&mut hasher),
        Some(Primitive::Str(s)) => (3u8, s).hash(&mut hasher),
        // -0.0 and 0.0 are equal: both hash as 0.0.
        Some(Primitive::Number(n)) => (4u8, (n + 0.0).to_bits()).hash(&mut hasher),
    }
    hasher.finish()
}

/// `items` without repeated values (by `=`), in order. Only items whose
/// [`equality_hash`] is the same are compared, so a collection of primitives (the
/// references of a whole resource) takes linear time.
pub(super) fn distinct<'a>(items: impl IntoIterator<Item = Item<'a>>) -> Items<'a> {
    let mut out: Items<'a> = Vec::new();
    let mut buckets: std::collections::HashMap<u64, Vec<usize>> = Default::default();
    for item in items {
        let bucket = buckets.entry(equality_hash(&item)).or_default();
        if !bucket.iter().any(|&n| equals(&out[n], &item)) {
            bucket.push(out.len());
            out.push(item);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;
    use serde_json::json;

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
    fn unknown_functions_are_errors() {
        let expr = parse("Patient.name.frobnicate(given)").unwrap();
        assert!(evaluate(&expr, &json!({"resourceType": "Patient", "name": [{}]})).is_err());
    }
}
