//! FHIRPath Patch (fhirpatch.html): a `Parameters` resource whose `operation` parameters add,
//! insert, delete, replace and move elements named by FHIRPath, evaluated by the project's
//! engine ([`crate::fhirpath`]) on the resource's JSON.
//!
//! The engine selects elements as references into the JSON; each is found again by its
//! address, which gives its place (the object holding it, its member and its index), and the
//! R4 definitions ([`super::elements`]) tell how to write what a patch adds there. A primitive
//! is its value and its `_name` companion (id and extensions) together: deleting, moving or
//! replacing it acts on both, in parallel arrays for a repeating one.
//!
//! Rules (fhirpatch.html): every path selects one element, except that `delete` of nothing does
//! nothing, and `insert` and `move` take the path of a whole list (the items of one repeating
//! element; an empty list is found by the path's last name). `add` appends to a repeating
//! element and sets a single one only when it is absent. Values come as `value[x]` (its type
//! must fit the element), `resource` (for `contained`), or `part`s for an element without a
//! type of its own (`Patient.contact`). What a deletion leaves empty is removed. The result is
//! checked like any update afterwards.

use super::Failure;
use super::elements::{Child, Place, is_primitive, json_kind};
use crate::fhirpath::eval::type_of_suffix;
use crate::fhirpath::{Expr, Item, evaluate, parse as parse_expression};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// The most operations one FHIRPath Patch may have: each evaluates its path over the whole
/// resource.
pub const MAX_OPERATIONS: usize = 1_000;

/// One `operation` parameter.
#[derive(Debug)]
pub struct Operation {
    kind: Kind,
    /// The path as given, for messages.
    path: String,
    expression: Expr,
    name: Option<String>,
    value: Option<Given>,
    index: Option<usize>,
    source: Option<usize>,
    destination: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Add,
    Insert,
    Delete,
    Replace,
    Move,
}

/// A value as a Parameters part gives it.
#[derive(Debug, Clone)]
enum Given {
    /// `value[x]`: the type its suffix names, the JSON value, and `_value[x]` (a primitive's
    /// id and extensions). One of the two is there.
    Typed {
        type_code: String,
        value: Option<Value>,
        companion: Option<Value>,
    },
    /// `resource`.
    Resource(Value),
    /// `part`s, one per child element.
    Parts(Vec<(String, Given)>),
}

/// Reads the operations of a FHIRPath Patch (a `Parameters` resource, already checked as one).
pub fn parse(parameters: &Value) -> Result<Vec<Operation>, Failure> {
    let empty = Vec::new();
    let list = parameters
        .get("parameter")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    if list.len() > MAX_OPERATIONS {
        return Err(Failure::TooLarge(format!(
            "the FHIRPath Patch has {} operations; at most {MAX_OPERATIONS} are taken",
            list.len()
        )));
    }
    list.iter()
        .enumerate()
        .map(|(index, parameter)| {
            operation(parameter)
                .map_err(|why| Failure::Malformed(format!("Parameters.parameter[{index}]: {why}")))
        })
        .collect()
}

fn operation(parameter: &Value) -> Result<Operation, String> {
    if parameter.get("name").and_then(Value::as_str) != Some("operation") {
        return Err("a FHIRPath Patch has only parameters named 'operation'".into());
    }
    let mut parts: HashMap<&str, &Map<String, Value>> = HashMap::new();
    for part in parameter
        .get("part")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let part = part.as_object().ok_or("a part is an object")?;
        let name = part.get("name").and_then(Value::as_str).unwrap_or("");
        if !matches!(
            name,
            "type" | "path" | "name" | "value" | "index" | "source" | "destination"
        ) {
            return Err(format!("'{name}' is not a part of an operation"));
        }
        if parts.insert(name, part).is_some() {
            return Err(format!("the part '{name}' is given twice"));
        }
    }
    let text = |name: &str, value_type: &str| -> Result<Option<String>, String> {
        parts
            .get(name)
            .map(|part| {
                part.get(value_type)
                    .and_then(Value::as_str)
                    .map(String::from)
                    .ok_or_else(|| format!("the part '{name}' takes a {value_type}"))
            })
            .transpose()
    };
    let number = |name: &str| -> Result<Option<usize>, String> {
        parts
            .get(name)
            .map(|part| {
                part.get("valueInteger")
                    .and_then(Value::as_u64)
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| format!("the part '{name}' takes a valueInteger of 0 or more"))
            })
            .transpose()
    };
    let kind = match text("type", "valueCode")?.as_deref() {
        Some("add") => Kind::Add,
        Some("insert") => Kind::Insert,
        Some("delete") => Kind::Delete,
        Some("replace") => Kind::Replace,
        Some("move") => Kind::Move,
        Some(other) => {
            return Err(format!(
                "'{other}' is not an operation type: add, insert, delete, replace or move"
            ));
        }
        None => return Err("the part 'type' is missing".into()),
    };
    let path = text("path", "valueString")?.ok_or("the part 'path' is missing")?;
    let expression =
        parse_expression(&path).map_err(|e| format!("the path '{path}' is not FHIRPath: {e}"))?;
    let value = parts.get("value").map(|part| given(part)).transpose()?;
    let operation = Operation {
        kind,
        name: text("name", "valueString")?,
        value,
        index: number("index")?,
        source: number("source")?,
        destination: number("destination")?,
        path,
        expression,
    };
    let needs: &[(&str, bool)] = match kind {
        Kind::Add => &[
            ("name", operation.name.is_some()),
            ("value", operation.value.is_some()),
        ],
        Kind::Insert => &[
            ("value", operation.value.is_some()),
            ("index", operation.index.is_some()),
        ],
        Kind::Delete => &[],
        Kind::Replace => &[("value", operation.value.is_some())],
        Kind::Move => &[
            ("source", operation.source.is_some()),
            ("destination", operation.destination.is_some()),
        ],
    };
    if let Some((missing, _)) = needs.iter().find(|(_, present)| !present) {
        return Err(format!("{kind:?} needs the part '{missing}'").to_lowercase());
    }
    Ok(operation)
}

/// The value a part gives: `resource`, `part`s, or `value[x]` (with `_value[x]`).
fn given(part: &Map<String, Value>) -> Result<Given, String> {
    if let Some(resource) = part.get("resource") {
        return Ok(Given::Resource(resource.clone()));
    }
    if let Some(parts) = part.get("part").and_then(Value::as_array) {
        return parts
            .iter()
            .map(|part| {
                let part = part.as_object().ok_or("a part is an object")?;
                let name = part.get("name").and_then(Value::as_str).unwrap_or("");
                Ok((name.to_string(), given(part)?))
            })
            .collect::<Result<_, String>>()
            .map(Given::Parts);
    }
    let typed = part.keys().find_map(|key| {
        let member = key.strip_prefix('_').unwrap_or(key);
        let suffix = member.strip_prefix("value")?;
        suffix
            .starts_with(|c: char| c.is_ascii_uppercase())
            .then(|| member.to_string())
    });
    match typed {
        Some(member) => Ok(Given::Typed {
            type_code: type_of_suffix(&member["value".len()..]).into_owned(),
            value: part.get(&member).cloned(),
            companion: part.get(&format!("_{member}")).cloned(),
        }),
        None => Err("a value part needs a value[x], a resource or parts".into()),
    }
}

/// Applies `operations` in order to `document`. On a failure `document` is left part-way:
/// apply to a copy.
pub fn apply(document: &mut Value, operations: &[Operation]) -> Result<(), Failure> {
    for (index, operation) in operations.iter().enumerate() {
        operation
            .apply(document)
            .map_err(|why| Failure::Unapplicable { index, why })?;
    }
    Ok(())
}

/// A step from an object or array to one of its members or items.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Member(String),
    Index(usize),
}

/// Where an element is: the steps to the object that holds it, its name (without the `_` of a
/// companion), its index when the member is an array, and whether it was found in the
/// companion (`_name`: a primitive with only an id or extensions).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Location {
    parent: Vec<Step>,
    name: String,
    index: Option<usize>,
    companion: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// The resource itself.
    Root,
    Element(Location),
}

/// One value of an element: the JSON value and its companion (`_name`: the id and extensions
/// of a primitive); one of them at least.
pub(super) type Entry = (Option<Value>, Option<Value>);

/// A member's values with their companions, whatever the JSON shape.
pub(super) struct Slot {
    pub(super) entries: Vec<Entry>,
    /// Written as arrays: the element repeats.
    pub(super) array: bool,
}

impl Operation {
    fn apply(&self, document: &mut Value) -> Result<(), String> {
        match self.kind {
            Kind::Add => self.add(document),
            Kind::Insert => self.insert(document),
            Kind::Delete => self.delete(document),
            Kind::Replace => self.replace(document),
            Kind::Move => self.move_item(document),
        }
    }

    fn value(&self) -> &Given {
        self.value.as_ref().expect("checked when parsed")
    }

    /// The one element the path selects.
    fn single(&self, document: &Value, what: &str) -> Result<Target, String> {
        let mut targets = select(document, &self.expression, &self.path)?;
        match targets.len() {
            1 => Ok(targets.remove(0)),
            0 => Err(format!("there is no content at {} {what}", self.path)),
            n => Err(format!(
                "{} selects {n} elements; {what} needs exactly one",
                self.path
            )),
        }
    }

    fn add(&self, document: &mut Value) -> Result<(), String> {
        let name = self.name.as_deref().expect("checked when parsed");
        match self.single(document, "to add to")? {
            Target::Root => {
                let place = place_at(document, &[]).ok_or("the resource's type is not known")?;
                let Value::Object(root) = document else {
                    unreachable!("a resource is an object")
                };
                add_member(root, &place, name, self.value())
            }
            Target::Element(location) => {
                let holds_object = !location.companion
                    && matches!(value_at(document, &location), Some(Value::Object(_)));
                if holds_object {
                    let steps = location.steps();
                    let place = place_at(document, &steps)
                        .ok_or_else(|| format!("{} cannot have children", self.path))?;
                    let object = object_at(document, &steps).expect("located");
                    add_member(object, &place, name, self.value())
                } else {
                    // A primitive: its children go in its companion.
                    with_slot(document, &location, |slot, at| {
                        let companion = slot.entries[at]
                            .1
                            .get_or_insert_with(|| Value::Object(Map::new()));
                        let Value::Object(companion) = companion else {
                            return Err(format!("{} cannot have children", self.path));
                        };
                        add_member(companion, &Place::of_primitive(), name, self.value())
                    })
                }
            }
        }
    }

    fn insert(&self, document: &mut Value) -> Result<(), String> {
        let (parent, name, len) = self.list(document)?;
        let index = self.index.expect("checked when parsed");
        if index > len {
            return Err(format!(
                "index {index} is beyond the end of {} ({len} items)",
                self.path
            ));
        }
        let child = place_at(document, &parent)
            .and_then(|place| place.named(&name))
            .ok_or_else(|| format!("{} is not an element", self.path))?;
        let (member, entry) = resolve(self.value(), &child)?;
        if member != name {
            return Err(format!("{} is not a list of that type", self.path));
        }
        let object = object_at(document, &parent).expect("located");
        let mut slot = take_slot(object, &name);
        slot.array = true;
        slot.entries.insert(index, entry);
        put_slot(object, &name, slot);
        Ok(())
    }

    fn move_item(&self, document: &mut Value) -> Result<(), String> {
        let (parent, name, len) = self.list(document)?;
        let (source, destination) = (
            self.source.expect("checked when parsed"),
            self.destination.expect("checked when parsed"),
        );
        if source >= len || destination >= len {
            return Err(format!(
                "{} has {len} items: source {source} and destination {destination} must be \
                 below that",
                self.path
            ));
        }
        let object = object_at(document, &parent).expect("located");
        let mut slot = take_slot(object, &name);
        let item = slot.entries.remove(source);
        slot.entries.insert(destination, item);
        put_slot(object, &name, slot);
        Ok(())
    }

    fn delete(&self, document: &mut Value) -> Result<(), String> {
        let mut targets = select(document, &self.expression, &self.path)?;
        let location = match targets.len() {
            0 => return Ok(()),
            1 => match targets.remove(0) {
                Target::Root => return Err("the resource itself cannot be deleted".into()),
                Target::Element(location) => location,
            },
            n => {
                return Err(format!(
                    "{} selects {n} elements; delete takes one",
                    self.path
                ));
            }
        };
        with_slot(document, &location, |slot, at| {
            slot.entries.remove(at);
            Ok(())
        })?;
        prune(document, location.parent);
        Ok(())
    }

    fn replace(&self, document: &mut Value) -> Result<(), String> {
        let location = match self.single(document, "to replace")? {
            Target::Root => {
                return Err("the resource itself cannot be replaced: update it with PUT".into());
            }
            Target::Element(location) => location,
        };
        let child = place_at(document, &location.parent)
            .and_then(|place| place.child(&location.name))
            .ok_or_else(|| format!("{} is not an element", self.path))?;
        let (member, entry) = resolve(self.value(), &child)?;
        let object = object_at(document, &location.parent).expect("located");
        let mut slot = take_slot(object, &location.name);
        match location.index {
            Some(at) => slot.entries[at] = entry,
            None => slot.entries = vec![entry],
        }
        // A choice element's member is named by its type: `effectiveDateTime` replaced by a
        // Period becomes `effectivePeriod`.
        put_slot(object, &member, slot);
        Ok(())
    }

    /// The list an `insert` or `move` works on: the object holding it, the member and its
    /// length. The path selects every item of one repeating element, or nothing, when its
    /// last name (`Patient.identifier`) on what the rest selects names an empty list.
    fn list(&self, document: &Value) -> Result<(Vec<Step>, String, usize), String> {
        let targets = select(document, &self.expression, &self.path)?;
        let whole = |location: &Location| -> Result<(Vec<Step>, String, usize), String> {
            let len = targets.len();
            let same_list = targets.iter().enumerate().all(|(n, target)| {
                matches!(target, Target::Element(l) if l.parent == location.parent
                    && l.name == location.name && l.index == Some(n))
            });
            let object = object_at_ref(document, &location.parent).expect("located");
            if !same_list || slot_len(object, &location.name) != len {
                return Err(format!(
                    "{} must select a whole list: every item of one repeating element",
                    self.path
                ));
            }
            Ok((location.parent.clone(), location.name.clone(), len))
        };
        match targets.first() {
            Some(Target::Element(location)) => whole(location),
            Some(Target::Root) => Err(format!("{} is not a list", self.path)),
            None => {
                let Expr::Member(inner, name) = &self.expression else {
                    return Err(format!("there is no list at {}", self.path));
                };
                let parent = match select(document, inner, &self.path)?.as_slice() {
                    [Target::Root] => Vec::new(),
                    [Target::Element(location)] if !location.companion => location.steps(),
                    _ => return Err(format!("there is no list at {}", self.path)),
                };
                let repeats = place_at(document, &parent)
                    .and_then(|place| place.named(name))
                    .is_some_and(|child| child.repeats());
                if !repeats {
                    return Err(format!("{} is not a list", self.path));
                }
                Ok((parent, name.clone(), 0))
            }
        }
    }
}

impl Location {
    /// The steps to the element itself.
    fn steps(&self) -> Vec<Step> {
        let mut steps = self.parent.clone();
        steps.push(Step::Member(self.name.clone()));
        steps.extend(self.index.map(Step::Index));
        steps
    }
}

/// The elements `expression` selects in `document`, located.
fn select(document: &Value, expression: &Expr, path: &str) -> Result<Vec<Target>, String> {
    let items =
        evaluate(expression, document).map_err(|e| format!("{path} cannot be evaluated: {e}"))?;
    let mut wanted: Vec<*const Value> = Vec::with_capacity(items.len());
    for item in &items {
        match item {
            Item::Node { value, .. } => wanted.push(*value as *const Value),
            _ => {
                return Err(format!(
                    "{path} selects a value that is not an element of the resource"
                ));
            }
        }
    }
    let mut found: HashMap<*const Value, Target> = HashMap::with_capacity(wanted.len());
    if wanted.contains(&(document as *const Value)) {
        found.insert(document, Target::Root);
    }
    if found.len() < wanted.len() {
        let wanted_set = wanted.iter().copied().collect();
        locate(document, &mut Vec::new(), &wanted_set, &mut found);
    }
    wanted
        .iter()
        .map(|pointer| {
            found.get(pointer).cloned().ok_or_else(|| {
                format!("{path} selects something outside the resource being patched")
            })
        })
        .collect()
}

/// Finds the members and items of `node` (at `steps`) that are `wanted`, by address.
fn locate(
    node: &Value,
    steps: &mut Vec<Step>,
    wanted: &std::collections::HashSet<*const Value>,
    found: &mut HashMap<*const Value, Target>,
) {
    let Value::Object(members) = node else {
        return;
    };
    for (key, value) in members {
        let (name, companion) = match key.strip_prefix('_') {
            Some(name) => (name, true),
            None => (key.as_str(), false),
        };
        let depth = steps.len();
        let at = |steps: &[Step], index| Location {
            parent: steps[..depth].to_vec(),
            name: name.to_string(),
            index,
            companion,
        };
        if wanted.contains(&(value as *const Value)) {
            found.insert(value, Target::Element(at(steps, None)));
        }
        steps.push(Step::Member(key.clone()));
        match value {
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    if wanted.contains(&(item as *const Value)) {
                        found.insert(item, Target::Element(at(steps, Some(index))));
                    }
                    steps.push(Step::Index(index));
                    locate(item, steps, wanted, found);
                    steps.pop();
                }
            }
            value => locate(value, steps, wanted, found),
        }
        steps.pop();
    }
}

fn node_at<'v>(document: &'v Value, steps: &[Step]) -> Option<&'v Value> {
    steps.iter().try_fold(document, |node, step| match step {
        Step::Member(name) => node.get(name),
        Step::Index(index) => node.get(index),
    })
}

fn node_at_mut<'v>(document: &'v mut Value, steps: &[Step]) -> Option<&'v mut Value> {
    steps.iter().try_fold(document, |node, step| match step {
        Step::Member(name) => node.get_mut(name),
        Step::Index(index) => node.get_mut(index),
    })
}

fn object_at<'v>(document: &'v mut Value, steps: &[Step]) -> Option<&'v mut Map<String, Value>> {
    node_at_mut(document, steps)?.as_object_mut()
}

fn object_at_ref<'v>(document: &'v Value, steps: &[Step]) -> Option<&'v Map<String, Value>> {
    node_at(document, steps)?.as_object()
}

/// The JSON value at a location (the companion when it was found there).
fn value_at<'v>(document: &'v Value, location: &Location) -> Option<&'v Value> {
    let object = object_at_ref(document, &location.parent)?;
    let key = if location.companion {
        format!("_{}", location.name)
    } else {
        location.name.clone()
    };
    let member = object.get(&key)?;
    match location.index {
        Some(index) => member.get(index),
        None => Some(member),
    }
}

/// Where the members of the object at `steps` are defined.
fn place_at(document: &Value, steps: &[Step]) -> Option<Place> {
    let resource_type = document.get("resourceType")?.as_str()?;
    let mut place = Place::of_resource(resource_type)?;
    let mut node = document;
    let mut steps = steps.iter().peekable();
    while let Some(step) = steps.next() {
        let Step::Member(name) = step else {
            return None;
        };
        let child = place.child(name)?;
        node = node.get(name)?;
        if let Some(Step::Index(index)) = steps.peek() {
            node = node.get(*index)?;
            steps.next();
        }
        place = if name.starts_with('_') {
            Place::of_primitive()
        } else {
            child.place(Some(node))?
        };
    }
    Some(place)
}

/// Runs `change` on the slot of the element at `location` (with the index of its entry), and
/// puts the slot back whatever `change` did.
fn with_slot(
    document: &mut Value,
    location: &Location,
    change: impl FnOnce(&mut Slot, usize) -> Result<(), String>,
) -> Result<(), String> {
    let object = object_at(document, &location.parent).expect("located");
    let mut slot = take_slot(object, &location.name);
    let at = location.index.unwrap_or(0);
    let result = change(&mut slot, at);
    put_slot(object, &location.name, slot);
    result
}

/// The number of entries of the member `name` (value or companion) of `object`.
fn slot_len(object: &Map<String, Value>, name: &str) -> usize {
    let len = |value: Option<&Value>| match value {
        None => 0,
        Some(Value::Array(items)) => items.len(),
        Some(_) => 1,
    };
    len(object.get(name)).max(len(object.get(&format!("_{name}"))))
}

/// Takes the member `name` and its companion `_name` out of `object`, as one list.
fn take_slot(object: &mut Map<String, Value>, name: &str) -> Slot {
    let value = object.shift_remove(name);
    let companion = object.shift_remove(&format!("_{name}"));
    let array =
        matches!(value, Some(Value::Array(_))) || matches!(companion, Some(Value::Array(_)));
    let list = |value: Option<Value>| -> Vec<Option<Value>> {
        match value {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|item| (!item.is_null()).then_some(item))
                .collect(),
            Some(value) => vec![Some(value)],
        }
    };
    let mut values = list(value).into_iter();
    let mut companions = list(companion).into_iter();
    let mut entries = Vec::new();
    loop {
        match (values.next(), companions.next()) {
            (None, None) => break,
            (value, companion) => entries.push((value.flatten(), companion.flatten())),
        }
    }
    Slot { entries, array }
}

/// Writes a slot back as `name` and `_name`: arrays (with `null` where one side has nothing)
/// for a repeating element, single values otherwise; entries with nothing are dropped, and
/// nothing is written for no entries.
pub(super) fn put_slot(object: &mut Map<String, Value>, name: &str, slot: Slot) {
    let entries: Vec<_> = slot
        .entries
        .into_iter()
        .filter(|(value, companion)| value.is_some() || companion.is_some())
        .collect();
    let (values, companions): (Vec<_>, Vec<_>) = entries.into_iter().unzip();
    let mut write = |key: String, side: Vec<Option<Value>>| {
        if side.iter().all(Option::is_none) {
            return;
        }
        let value = if slot.array {
            Value::Array(side.into_iter().map(|v| v.unwrap_or(Value::Null)).collect())
        } else {
            side.into_iter().flatten().next().expect("one is there")
        };
        object.insert(key, value);
    };
    write(name.to_string(), values);
    write(format!("_{name}"), companions);
}

/// Adds `given` as the child `name` of `object` (whose members are defined at `place`):
/// appended to a repeating element, set on a single one that is absent.
fn add_member(
    object: &mut Map<String, Value>,
    place: &Place,
    name: &str,
    given: &Given,
) -> Result<(), String> {
    let child = place
        .named(name)
        .ok_or_else(|| format!("'{name}' is not an element here"))?;
    let (member, entry) = resolve(given, &child)?;
    let mut slot = take_slot(object, &member);
    let occupied = !child.repeats() && !slot.entries.is_empty();
    if !occupied {
        slot.array = child.repeats();
        slot.entries.push(entry);
    }
    put_slot(object, &member, slot);
    if occupied {
        return Err(format!(
            "'{name}' is already there and does not repeat: replace it instead"
        ));
    }
    Ok(())
}

/// What `given` is as a value of `child`: the JSON member to write it in and its entry
/// (value, companion). Its type must be one the element allows.
fn resolve(given: &Given, child: &Child) -> Result<(String, Entry), String> {
    let name = child.base_name();
    match given {
        Given::Typed {
            type_code,
            value,
            companion,
        } => {
            let fits = child.types().any(|allowed| fits(allowed, type_code));
            if !fits {
                let allowed: Vec<&str> = child.types().collect();
                return Err(format!(
                    "a value of type {type_code} cannot be '{name}' ({})",
                    if allowed.is_empty() {
                        "an element with children: give it as parts".to_string()
                    } else {
                        allowed.join(", ")
                    }
                ));
            }
            let member = child.member_for(type_code);
            if is_primitive(type_code) {
                Ok((member, (value.clone(), companion.clone())))
            } else {
                let value = value
                    .clone()
                    .ok_or_else(|| format!("the {type_code} for '{name}' has no value"))?;
                Ok((member, (Some(value), None)))
            }
        }
        Given::Resource(resource) => {
            if !child.holds_resources() {
                return Err(format!("'{name}' does not hold resources"));
            }
            Ok((name.to_string(), (Some(resource.clone()), None)))
        }
        Given::Parts(parts) => {
            let place = child
                .place(None)
                .filter(|_| !child.is_primitive() && !child.is_choice())
                .ok_or_else(|| format!("'{name}' cannot be given as parts"))?;
            let mut object = Map::new();
            for (part_name, part) in parts {
                add_member(&mut object, &place, part_name, part)?;
            }
            Ok((name.to_string(), (Some(Value::Object(object)), None)))
        }
    }
}

/// May a value of type `given` stand where `allowed` is expected? The same type, a profile of
/// Quantity for a Quantity (or the reverse), or a primitive of the same JSON kind (a
/// `valueString` for a `code` or an `xhtml`: their formats are checked with the result).
fn fits(allowed: &str, given: &str) -> bool {
    const QUANTITIES: &[&str] = &[
        "Quantity",
        "Age",
        "Count",
        "Distance",
        "Duration",
        "SimpleQuantity",
        "MoneyQuantity",
    ];
    allowed == given
        || (QUANTITIES.contains(&allowed) && QUANTITIES.contains(&given))
        || (is_primitive(allowed) && is_primitive(given) && json_kind(allowed) == json_kind(given))
}

/// Removes what became empty on the way up from the object at `steps`: an empty object, or an
/// empty companion, is taken out of its member (and the member when nothing is left).
fn prune(document: &mut Value, mut steps: Vec<Step>) {
    loop {
        let empty = match node_at(document, &steps) {
            Some(Value::Object(members)) => members.is_empty(),
            _ => false,
        };
        if !empty || steps.is_empty() {
            return;
        }
        let index = match steps.pop() {
            Some(Step::Index(index)) => Some(index),
            Some(step) => {
                steps.push(step);
                None
            }
            None => return,
        };
        let Some(Step::Member(key)) = steps.pop() else {
            return;
        };
        let (name, companion) = match key.strip_prefix('_') {
            Some(name) => (name.to_string(), true),
            None => (key.clone(), false),
        };
        let location = Location {
            parent: steps.clone(),
            name,
            index,
            companion,
        };
        let _ = with_slot(document, &location, |slot, at| {
            let entry = &mut slot.entries[at];
            if companion {
                entry.1 = None;
            } else {
                entry.0 = None;
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Format, Patch};
    use serde_json::{Value, json};

    fn operation(kind: &str, path: &str, more: Value) -> Value {
        let mut parts = vec![
            json!({"name": "type", "valueCode": kind}),
            json!({"name": "path", "valueString": path}),
        ];
        parts.extend(more.as_array().cloned().unwrap_or_default());
        json!({"name": "operation", "part": parts})
    }

    fn patch(resource: Value, operations: Vec<Value>) -> Result<Value, (u16, String)> {
        let parameters = json!({"resourceType": "Parameters", "parameter": operations});
        Patch::parse(Format::Fhir, parameters.to_string().as_bytes())
            .and_then(|patch| patch.apply(&resource, 1 << 20))
            .map(|intake| intake.resource)
            .map_err(|error| (error.status, error.diagnostics))
    }

    fn patient() -> Value {
        json!({
            "resourceType": "Patient",
            "id": "p",
            "name": [{
                "family": "Chalmers",
                "given": ["Peter", "James", "Jim"],
                "_given": [null, {"extension": [{"url": "http://e/x", "valueString": "x"}]}, null]
            }],
            "deceasedBoolean": false,
            "contained": [{"resourceType": "Organization", "id": "o", "name": "Acme"}]
        })
    }

    #[test]
    fn primitives_move_with_their_extensions() {
        let deleted = patch(
            patient(),
            vec![operation("delete", "Patient.name.given[1]", json!([]))],
        )
        .unwrap();
        assert_eq!(deleted["name"][0]["given"], json!(["Peter", "Jim"]));
        assert!(deleted["name"][0].get("_given").is_none(), "{deleted}");
        let moved = patch(
            patient(),
            vec![operation(
                "move",
                "Patient.name.given",
                json!([{"name": "source", "valueInteger": 1},
                       {"name": "destination", "valueInteger": 0}]),
            )],
        )
        .unwrap();
        assert_eq!(moved["name"][0]["given"], json!(["James", "Peter", "Jim"]));
        assert_eq!(
            moved["name"][0]["_given"][0]["extension"][0]["valueString"],
            "x"
        );
        assert_eq!(moved["name"][0]["_given"][1], Value::Null);
        // An extension added to a primitive goes in its companion (an Extension is given as
        // parts: R4's Parameters has no valueExtension).
        let extended = patch(
            patient(),
            vec![operation(
                "add",
                "Patient.name.family",
                json!([{"name": "name", "valueString": "extension"},
                       {"name": "value", "part": [
                           {"name": "url", "valueUri": "http://e/y"},
                           {"name": "value", "valueCode": "z"}]}]),
            )],
        )
        .unwrap();
        assert_eq!(extended["name"][0]["family"], "Chalmers");
        assert_eq!(
            extended["name"][0]["_family"],
            json!({"extension": [{"url": "http://e/y", "valueCode": "z"}]})
        );
    }

    #[test]
    fn choices_lists_and_contained_resources() {
        let replaced = patch(
            patient(),
            vec![operation(
                "replace",
                "Patient.deceased",
                json!([{"name": "value", "valueDateTime": "2020-01-01"}]),
            )],
        )
        .unwrap();
        assert_eq!(replaced["deceasedDateTime"], "2020-01-01");
        assert!(replaced.get("deceasedBoolean").is_none());
        let added = patch(
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}}),
            vec![operation(
                "add",
                "Observation",
                json!([{"name": "name", "valueString": "value"},
                       {"name": "value", "valueQuantity": {"value": 1.50, "unit": "mg"}}]),
            )],
        )
        .unwrap();
        assert_eq!(added["valueQuantity"]["unit"], "mg");
        let inserted = patch(
            patient(),
            vec![operation(
                "insert",
                "Patient.identifier",
                json!([{"name": "index", "valueInteger": 0},
                       {"name": "value", "valueIdentifier": {"value": "1"}}]),
            )],
        )
        .unwrap();
        assert_eq!(inserted["identifier"], json!([{"value": "1"}]));
        let renamed = patch(
            patient(),
            vec![operation(
                "replace",
                "Patient.contained.where(id = 'o').name",
                json!([{"name": "value", "valueString": "Acme 2"}]),
            )],
        )
        .unwrap();
        assert_eq!(renamed["contained"][0]["name"], "Acme 2");
        let resolved = patch(
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                   "performer": [{"reference": "#o"}],
                   "contained": [{"resourceType": "Organization", "id": "o", "name": "A"}]}),
            vec![operation(
                "delete",
                "Observation.performer.resolve().name",
                json!([]),
            )],
        )
        .unwrap();
        assert_eq!(
            resolved["contained"][0],
            json!({"resourceType": "Organization", "id": "o"})
        );
    }

    #[test]
    fn operations_that_do_not_fit_the_resource_are_422() {
        let value = |v: Value| json!([{"name": "value", "valueString": v}]);
        for (operation, why) in [
            (
                operation("replace", "Patient.name.given", value(json!("x"))),
                "selects 3",
            ),
            (
                operation("replace", "Patient.birthDate", value(json!("x"))),
                "no content",
            ),
            (
                operation(
                    "add",
                    "Patient",
                    json!([{"name": "name", "valueString": "gender"},
                           {"name": "value", "valueHumanName": {"text": "x"}}]),
                ),
                "cannot be 'gender'",
            ),
            (
                operation(
                    "add",
                    "Patient",
                    json!([{"name": "name", "valueString": "deceased"},
                           {"name": "value", "valueBoolean": true}]),
                ),
                "",
            ),
            (
                operation(
                    "add",
                    "Patient",
                    json!([{"name": "name", "valueString": "frobnicate"},
                           {"name": "value", "valueBoolean": true}]),
                ),
                "not an element",
            ),
            (
                operation(
                    "insert",
                    "Patient.name.given",
                    json!([{"name": "index", "valueInteger": 4},
                           {"name": "value", "valueString": "x"}]),
                ),
                "beyond the end",
            ),
            (
                operation(
                    "insert",
                    "Patient.name.given.first()",
                    json!([{"name": "index", "valueInteger": 0},
                           {"name": "value", "valueString": "x"}]),
                ),
                "whole list",
            ),
            (
                operation(
                    "move",
                    "Patient.name.given",
                    json!([{"name": "source", "valueInteger": 3},
                           {"name": "destination", "valueInteger": 0}]),
                ),
                "has 3 items",
            ),
            (
                operation("delete", "Patient.name.given", json!([])),
                "selects 3",
            ),
            (operation("delete", "Patient", json!([])), "itself"),
            (
                operation("delete", "Patient.name.given.count()", json!([])),
                "not an element",
            ),
        ] {
            let (status, message) = patch(patient(), vec![operation.clone()]).unwrap_err();
            assert_eq!(status, 422, "{operation}: {message}");
            assert!(message.contains(why), "{operation}: {message}");
        }
        // Deleting what is not there does nothing.
        let unchanged = patch(
            patient(),
            vec![operation("delete", "Patient.gender", json!([]))],
        );
        assert_eq!(unchanged.unwrap(), patient());
    }

    #[test]
    fn documents_that_are_not_fhirpath_patches_are_400_or_413() {
        for (operation, status) in [
            (operation("frobnicate", "Patient", json!([])), 400),
            (operation("add", "Patient", json!([])), 400),
            (
                operation(
                    "replace",
                    "Patient.(",
                    json!([{"name": "value", "valueString": "x"}]),
                ),
                400,
            ),
            (
                operation(
                    "delete",
                    "Patient",
                    json!([{"name": "indx", "valueInteger": 1}]),
                ),
                400,
            ),
            (
                operation(
                    "move",
                    "Patient",
                    json!([{"name": "source", "valueInteger": -1}]),
                ),
                400,
            ),
            (json!({"name": "op", "part": []}), 400),
        ] {
            let (got, message) = patch(patient(), vec![operation.clone()]).unwrap_err();
            assert_eq!(got, status, "{operation}: {message}");
        }
        let many =
            vec![operation("delete", "Patient.gender", json!([])); super::MAX_OPERATIONS + 1];
        assert_eq!(patch(patient(), many).unwrap_err().0, 413);
    }
}
