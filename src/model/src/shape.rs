//! Shape checks around the fhirbolt parser: what it does not check, and where a problem it
//! finds sits in the resource.

use serde_json::Value;
use std::fmt;

/// What is wrong with a resource, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    /// FHIRPath-style location of the offending element, e.g. `Patient.name[0].given`.
    pub path: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// Not a JSON object with a known `resourceType`.
    ResourceType,
    /// An element that is unknown, of the wrong type or cardinality, empty, or missing.
    Structure,
}

impl Problem {
    pub fn new(kind: ProblemKind, path: String, message: String) -> Self {
        Problem {
            kind,
            path,
            message,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The path of the resource itself: its type name, or `Resource` when it has none.
pub(crate) fn root_path(value: &Value) -> String {
    root_name(value).to_string()
}

fn root_name(value: &Value) -> &str {
    value
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("Resource")
}

/// Where a walk of a valid resource is, kept as borrowed steps and rendered as a path string
/// ([`At::render`], the same path [`child`], [`item`] and [`member_path`] build) only for a
/// problem found there: the walks of [`check_no_empty`] and [`compare`] run on every write,
/// and building each element's path as they went was most of their cost.
#[derive(Clone, Copy)]
enum At<'a> {
    /// A resource: its type's name.
    Root(&'a str),
    /// The JSON member `key` of the object at the parent (`_given` stands for `given`).
    Member(&'a At<'a>, &'a str),
    /// Item `index` of the array at the parent.
    Item(&'a At<'a>, usize),
    /// A resource inside the parent (contained, or a Bundle entry's): `.ofType(name)`.
    Inner(&'a At<'a>, &'a str),
}

impl At<'_> {
    fn render(&self) -> String {
        match self {
            At::Root(name) => name.to_string(),
            At::Member(parent, key) => member_path(&parent.render(), key),
            At::Item(parent, index) => item(&parent.render(), *index),
            At::Inner(parent, name) => format!("{}.ofType({name})", parent.render()),
        }
    }
}

pub(crate) fn child(path: &str, key: &str) -> String {
    format!("{path}.{key}")
}

pub(crate) fn item(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

/// The path below a resource's root for a JSON member: `_given` (a primitive's extensions and
/// id) is reported as `given`, the element it belongs to.
pub(crate) fn member_path(path: &str, key: &str) -> String {
    child(path, key.strip_prefix('_').unwrap_or(key))
}

/// Checks the resource type and that no array, object or string anywhere is empty (FHIR JSON
/// forbids empty elements, and an empty array crashes fhirbolt). `null` is allowed only inside
/// arrays, where it aligns a primitive array with its `_name` partner.
///
/// [`drop_empty`] removes what this refuses; this stays as the parser's own guard.
pub fn check_no_empty(value: &Value) -> Result<(), Problem> {
    let Some(object) = value.as_object() else {
        return Err(Problem::new(
            ProblemKind::ResourceType,
            "Resource".into(),
            "a resource must be a JSON object".into(),
        ));
    };
    match object.get("resourceType") {
        Some(Value::String(name)) if crate::is_resource_type(name) => {}
        Some(Value::String(name)) => {
            return Err(Problem::new(
                ProblemKind::ResourceType,
                "Resource.resourceType".into(),
                format!("'{name}' is not a FHIR R4 resource type"),
            ));
        }
        _ => {
            return Err(Problem::new(
                ProblemKind::ResourceType,
                "Resource.resourceType".into(),
                "a resource must have a 'resourceType' string".into(),
            ));
        }
    }
    walk_members(object, &At::Root(root_name(value)))
}

fn walk_members(object: &serde_json::Map<String, Value>, at: &At) -> Result<(), Problem> {
    for (key, member) in object {
        let here = At::Member(at, key);
        match member {
            Value::Null => {
                return Err(Problem::new(
                    ProblemKind::Structure,
                    here.render(),
                    "null is not a valid value".into(),
                ));
            }
            Value::Array(items) if items.is_empty() => {
                return Err(empty(here.render(), "an array"));
            }
            Value::Array(items) => {
                for (index, entry) in items.iter().enumerate() {
                    walk_value(entry, &At::Item(&here, index), true)?;
                }
            }
            other => walk_value(other, &here, false)?,
        }
    }
    Ok(())
}

fn walk_value(value: &Value, at: &At, in_array: bool) -> Result<(), Problem> {
    match value {
        Value::Null if in_array => Ok(()),
        Value::Null => Err(Problem::new(
            ProblemKind::Structure,
            at.render(),
            "null is not a valid value".into(),
        )),
        Value::String(s) if s.is_empty() => Err(empty(at.render(), "a string")),
        Value::Object(object) if object.is_empty() => Err(empty(at.render(), "an object")),
        Value::Object(object) => {
            // A contained resource (or Bundle entry resource) starts a new path.
            match object.get("resourceType").and_then(Value::as_str) {
                Some(_) => walk_members(object, &At::Inner(at, root_name(value))),
                None => walk_members(object, at),
            }
        }
        Value::Array(_) => Err(Problem::new(
            ProblemKind::Structure,
            at.render(),
            "an array cannot hold another array".into(),
        )),
        _ => Ok(()),
    }
}

fn empty(path: String, what: &str) -> Problem {
    Problem::new(
        ProblemKind::Structure,
        path,
        format!("{what} must not be empty: leave the element out instead"),
    )
}

/// Turns a fhirbolt parse error into a problem at the element it is about.
///
/// fhirbolt's messages do not say where the error is, so [`locate`] finds the element; the
/// message is shortened to what a client needs.
pub fn locate_parse_error(
    value: &Value,
    message: &str,
    parse: &dyn Fn(&Value) -> Option<String>,
) -> Problem {
    let path = locate(value, message, parse).unwrap_or_else(|| root_path(value));
    let named = message.split('`').nth(1).filter(|name| !name.is_empty());
    let (path, text) = match named {
        Some(name) if message.starts_with("unknown field") => {
            (path, format!("unknown element '{name}'"))
        }
        Some(name) if message.starts_with("missing field") => (
            child(&path, name),
            format!("required element '{name}' is missing"),
        ),
        _ => {
            let short = message.split(", expected one of").next().unwrap_or(message);
            (path, short.to_string())
        }
    };
    Problem::new(ProblemKind::Structure, path, text)
}

/// The most nodes [`locate`] searches; past it the error is reported at the root, so that a
/// huge malformed body cannot cost quadratic time.
const MAX_LOCATE_NODES: usize = 4_000;

/// One step from a JSON value to one of its children.
#[derive(Clone)]
enum Step {
    Member(String),
    Item(usize),
}

/// Finds the element a parse error is about. The parser reads the document in order, so the
/// error is raised by the first node, in post-order, whose document cut just after it (every
/// later member and item removed) fails with the same message while the document cut just
/// before it does not: for a wrong type or an unknown element that is the element itself.
///
/// A missing element is raised by the object that lacks it when the object ends, so every
/// object inside it that lacks the element too passes the first test; an object is the one
/// only if its type has the element at all (given the element, the parser does not call it
/// unknown) and the cut before it does not fail alike (an object inside it whose type has
/// the element as an optional one).
fn locate(
    value: &Value,
    message: &str,
    parse: &dyn Fn(&Value) -> Option<String>,
) -> Option<String> {
    let mut nodes = Vec::new();
    post_order(value, &mut Vec::new(), &root_path(value), &mut nodes);
    if nodes.len() > MAX_LOCATE_NODES {
        return None;
    }
    // A missing element is raised by the object that lacks it, not by a node before it.
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    nodes
        .into_iter()
        .filter(|(steps, _)| match (missing, node_at(value, steps)) {
            (Some(name), Some(Value::Object(object))) => !object.contains_key(name),
            (Some(_), _) => false,
            (None, _) => true,
        })
        .find(|(steps, _)| {
            let raises =
                |cut: Option<Value>| cut.and_then(|cut| parse(&cut)).as_deref() == Some(message);
            let after = cut(value, steps, true);
            if !raises(Some(after.clone())) {
                return false;
            }
            if let Some(name) = missing
                && !has_element(after, steps, name, parse)
            {
                return false;
            }
            !raises(cut_before(value, steps))
        })
        .map(|(_, path)| path)
}

/// Whether the object at `steps` in `document` is of a type that has the element `name`: the
/// parser does not call it unknown once the object has it (with any value).
fn has_element(
    mut document: Value,
    steps: &[Step],
    name: &str,
    parse: &dyn Fn(&Value) -> Option<String>,
) -> bool {
    let target = steps
        .iter()
        .try_fold(&mut document, |node, step| match step {
            Step::Member(key) => node.get_mut(key),
            Step::Item(index) => node.get_mut(index),
        });
    if let Some(Value::Object(object)) = target {
        object.insert(name.to_string(), Value::Bool(true));
    }
    let unknown = format!("unknown field `{name}`");
    !parse(&document).is_some_and(|message| message.starts_with(&unknown))
}

fn node_at<'a>(value: &'a Value, steps: &[Step]) -> Option<&'a Value> {
    steps.iter().try_fold(value, |node, step| match step {
        Step::Member(key) => node.get(key),
        Step::Item(index) => node.get(index),
    })
}

fn post_order(
    value: &Value,
    steps: &mut Vec<Step>,
    path: &str,
    out: &mut Vec<(Vec<Step>, String)>,
) {
    match value {
        Value::Object(object) => {
            let is_resource = steps.is_empty() || object.contains_key("resourceType");
            let path = if is_resource && !steps.is_empty() {
                format!("{path}.ofType({})", root_path(value))
            } else {
                path.to_string()
            };
            for (key, member) in object {
                steps.push(Step::Member(key.clone()));
                post_order(member, steps, &member_path(&path, key), out);
                steps.pop();
            }
            out.push((steps.clone(), path));
        }
        Value::Array(items) => {
            for (index, entry) in items.iter().enumerate() {
                steps.push(Step::Item(index));
                post_order(entry, steps, &item(path, index), out);
                steps.pop();
            }
        }
        _ => out.push((steps.clone(), path.to_string())),
    }
}

/// `value` cut at the node at `steps`: everything after it in document order removed, and the
/// node itself kept (`keep`) or removed too.
fn cut(value: &Value, steps: &[Step], keep: bool) -> Value {
    match (value, steps.split_first()) {
        (Value::Object(object), Some((Step::Member(key), rest))) => {
            let mut cut_object = serde_json::Map::new();
            for (name, member) in object {
                if name == key {
                    if keep || !rest.is_empty() {
                        cut_object.insert(name.clone(), cut(member, rest, keep));
                    }
                    break;
                }
                cut_object.insert(name.clone(), member.clone());
            }
            Value::Object(cut_object)
        }
        (Value::Array(items), Some((Step::Item(index), rest))) => {
            let mut cut_items: Vec<Value> = items[..*index].to_vec();
            if keep || !rest.is_empty() {
                cut_items.push(cut(&items[*index], rest, keep));
            }
            Value::Array(cut_items)
        }
        _ => value.clone(),
    }
}

/// The document cut just before the node at `steps`, without the arrays and objects that
/// removing it left empty (the parser takes no empty element); None for the root.
fn cut_before(value: &Value, steps: &[Step]) -> Option<Value> {
    if steps.is_empty() {
        return None;
    }
    let mut before = cut(value, steps, false);
    crate::drop_empty(&mut before);
    check_no_empty(&before).ok().map(|()| before)
}

/// Compares the input with fhirbolt's round trip of it. The order of object members does not
/// matter; any other difference is an element fhirbolt coerced, so it is reported.
pub fn compare(input: &Value, canonical: &Value) -> Result<(), Problem> {
    compare_at(input, canonical, &At::Root(root_name(input)))
}

fn compare_at(input: &Value, canonical: &Value, at: &At) -> Result<(), Problem> {
    match (input, canonical) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, member) in a {
                let here = At::Member(at, key);
                match b.get(key) {
                    Some(other) => compare_at(member, other, &here)?,
                    None => return Err(mismatch(here.render(), member, None)),
                }
            }
            match b.keys().find(|key| !a.contains_key(*key)) {
                Some(key) => Err(mismatch(
                    At::Member(at, key).render(),
                    &Value::Null,
                    b.get(key),
                )),
                None => Ok(()),
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .try_for_each(|(index, (x, y))| compare_at(x, y, &At::Item(at, index))),
        (a, b) if a == b => Ok(()),
        (a, b) => Err(mismatch(at.render(), a, Some(b))),
    }
}

fn mismatch(path: String, input: &Value, canonical: Option<&Value>) -> Problem {
    let message = match (input, canonical) {
        (Value::Array(_), Some(c)) if !c.is_array() => {
            "this element repeats at most once: give a single value, not an array".to_string()
        }
        (i, Some(Value::Array(_))) if !i.is_array() => {
            "this element repeats: give its value as an array".to_string()
        }
        (i, Some(c)) => format!(
            "wrong type: found {}, expected {}",
            json_kind(i),
            json_kind(c)
        ),
        _ => "this element is not valid here".to_string(),
    };
    Problem::new(ProblemKind::Structure, path, message)
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
