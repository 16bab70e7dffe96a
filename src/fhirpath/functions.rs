//! The FHIRPath functions beyond those search needs: what the R4 invariants call (`count()`,
//! `all()`, `hasValue()`, `matches()`, `select()`, `iif()`, `descendants()`, ...).
//!
//! Lambda arguments (`all(x)`, `select(x)`, `iif(c, ...)`) are evaluated on each input item
//! ([`Context::lambda`]); other arguments on the input of the whole invocation, as the
//! specification says, before the function is called ([`Context::function`]).
//!
//! Invariant: only [`Context::lambda`] (small) evaluates expressions; the large dispatch of
//! [`Context::function`] does not, so its stack frame (large in a debug build) is never among
//! those a deeply nested expression piles up.

use super::boundary::{Bound, boundary};
use super::eval::{
    Context, Distinct, EvalError, Item, Items, arity, child_values, distinct, equals, has_value,
    truth,
};
use super::operators::{number, single, string};
use super::parser::Expr;
use regex::{Regex, RegexBuilder};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

/// The functions whose arguments are lambdas, evaluated on each input item.
pub(super) const LAMBDAS: &[&str] = &["where", "exists", "all", "select", "repeat", "iif"];

impl<'a> Context<'a> {
    /// The functions of [`LAMBDAS`] on `items`, each a function of its own (they recurse).
    pub(super) fn lambda(
        &self,
        name: &str,
        args: &[Expr],
        items: Items<'a>,
    ) -> Result<Items<'a>, EvalError> {
        match (name, args) {
            ("where", [criteria]) => self.filter(criteria, items),
            ("exists", []) => Ok(vec![Item::Bool(!items.is_empty())]),
            ("exists" | "all", [criteria]) => self.quantify(name == "all", criteria, &items),
            ("select", [projection]) => self.select(projection, &items),
            ("repeat", [projection]) => self.repeat(projection, items),
            ("iif", [criterion, then, otherwise @ ..]) if otherwise.len() <= 1 => {
                let chosen = if self.truth(criterion, &items)? == Some(true) {
                    Some(then)
                } else {
                    otherwise.first()
                };
                chosen.map_or(Ok(vec![]), |e| self.eval(e, &items))
            }
            _ => Err(EvalError::Invalid(format!(
                "{name}() does not take {} argument(s)",
                args.len()
            ))),
        }
    }

    /// `where(criteria)`.
    fn filter(&self, criteria: &Expr, items: Items<'a>) -> Result<Items<'a>, EvalError> {
        let mut out = Vec::new();
        for item in items {
            if self.truth(criteria, std::slice::from_ref(&item))? == Some(true) {
                out.push(item);
            }
        }
        Ok(out)
    }

    /// `all(criteria)` or `exists(criteria)`.
    fn quantify(
        &self,
        all: bool,
        criteria: &Expr,
        items: &[Item<'a>],
    ) -> Result<Items<'a>, EvalError> {
        for item in items {
            let holds = self.truth(criteria, std::slice::from_ref(item))? == Some(true);
            if holds != all {
                return Ok(vec![Item::Bool(!all)]);
            }
        }
        Ok(vec![Item::Bool(all)])
    }

    /// `select(projection)`.
    fn select(&self, projection: &Expr, items: &[Item<'a>]) -> Result<Items<'a>, EvalError> {
        let mut out = Vec::new();
        for item in items {
            let selected = self.eval(projection, std::slice::from_ref(item))?;
            self.budget.spend(selected.len())?;
            out.extend(selected);
        }
        Ok(out)
    }

    /// `repeat(projection)`: the projection applied to the input, then to what it made, and so
    /// on, as long as it makes items not made before (by `=`). It ends on any resource; a
    /// projection that makes new values forever runs out of budget.
    fn repeat(&self, projection: &Expr, items: Items<'a>) -> Result<Items<'a>, EvalError> {
        let mut found = Distinct::default();
        let mut level = items;
        while !level.is_empty() {
            let mut next = Vec::new();
            for item in &level {
                for made in self.eval(projection, std::slice::from_ref(item))? {
                    if found.add(made.clone(), &self.budget)? {
                        next.push(made);
                    }
                }
            }
            level = next;
        }
        Ok(found.items)
    }

    /// The functions but [`LAMBDAS`] and those whose argument is a type or a url as written:
    /// `items` is the invocation's input, `args` the values of its arguments.
    pub(super) fn function(
        &self,
        name: &str,
        args: &[Items<'a>],
        items: Items<'a>,
    ) -> Result<Items<'a>, EvalError> {
        let arity = |n: usize| arity(name, args.len(), n);
        // An argument's value.
        let argument = |n: usize| -> Result<Items<'a>, EvalError> {
            args.get(n)
                .cloned()
                .ok_or_else(|| EvalError::Invalid(format!("{name}() needs argument {}", n + 1)))
        };
        let text_argument = |n: usize| -> Result<String, EvalError> {
            let text = single(&argument(n)?)?
                .and_then(string)
                .ok_or_else(|| EvalError::Invalid(format!("{name}() takes a string")))?;
            self.budget.read(text.len())?;
            Ok(text)
        };
        let integer_argument = |n: usize| -> Result<usize, EvalError> {
            single(&argument(n)?)?
                .and_then(number)
                .filter(|n| *n >= 0.0)
                .map(|n| n as usize)
                .ok_or_else(|| EvalError::Invalid(format!("{name}() takes a whole number")))
        };
        let boolean = |b: bool| Ok(vec![Item::Bool(b)]);
        // A string function of the single input string; empty for an empty input. Reading
        // the string is paid for; what the function makes, by the function.
        let on_string = |f: &dyn Fn(&str) -> Result<Items<'a>, EvalError>| match single(&items)? {
            None => Ok(vec![]),
            Some(item) => match string(item) {
                Some(text) => {
                    self.budget.read(text.len())?;
                    f(&text)
                }
                None => Err(EvalError::Invalid(format!("{name}() needs a string"))),
            },
        };
        // A string made by a function, within the budget.
        let made = |text: String| -> Result<Items<'a>, EvalError> {
            self.budget.write(text.len())?;
            Ok(vec![Item::Str(text)])
        };
        match name {
            "count" => {
                arity(0)?;
                Ok(vec![Item::Number(items.len() as f64)])
            }
            "empty" => {
                arity(0)?;
                boolean(items.is_empty())
            }
            "not" => {
                arity(0)?;
                match items.as_slice() {
                    [] => Ok(vec![]),
                    [item] => match truth(item) {
                        Some(b) => boolean(!b),
                        None => Err(EvalError::Invalid("not() needs a single boolean".into())),
                    },
                    _ => Err(EvalError::Invalid("not() needs a single boolean".into())),
                }
            }
            "first" => {
                arity(0)?;
                Ok(items.into_iter().take(1).collect())
            }
            "resolve" => {
                arity(0)?;
                let mut out = Vec::new();
                for item in &items {
                    out.extend(self.resolve(item)?);
                }
                Ok(out)
            }
            "allTrue" | "anyTrue" | "allFalse" | "anyFalse" => {
                arity(0)?;
                let wanted = name.ends_with("True");
                let matching = |item: &Item<'_>| truth(item) == Some(wanted);
                boolean(if name.starts_with("all") {
                    items.iter().all(matching)
                } else {
                    items.iter().any(matching)
                })
            }
            "hasValue" => {
                arity(0)?;
                boolean(matches!(items.as_slice(), [Item::Node { value, .. }] if has_value(value)))
            }
            "matches" => {
                let pattern = regex(&text_argument(0)?)?;
                on_string(&|text| boolean(pattern.is_match(text)))
            }
            "replaceMatches" => {
                let pattern = regex(&text_argument(0)?)?;
                let substitute = text_argument(1)?;
                on_string(&|text| {
                    // The most it can make: every match (one at each position, for a pattern
                    // that matches the empty string) replaced by the whole substitute.
                    let matches = pattern.find_iter(text).count();
                    self.budget.read(text.len())?;
                    let most = matches.saturating_mul(substitute.len().saturating_add(1));
                    self.budget.write(text.len().saturating_add(most))?;
                    made(pattern.replace_all(text, substitute.as_str()).into_owned())
                })
            }
            "startsWith" => {
                let prefix = text_argument(0)?;
                on_string(&|text| boolean(text.starts_with(&prefix)))
            }
            "endsWith" => {
                let suffix = text_argument(0)?;
                on_string(&|text| boolean(text.ends_with(&suffix)))
            }
            "contains" => {
                let part = text_argument(0)?;
                on_string(&|text| boolean(text.contains(&part)))
            }
            "indexOf" => {
                let part = text_argument(0)?;
                on_string(&|text| {
                    let at = text
                        .find(&part)
                        .map_or(-1.0, |at| text[..at].chars().count() as f64);
                    Ok(vec![Item::Number(at)])
                })
            }
            "replace" => {
                let (from, to) = (text_argument(0)?, text_argument(1)?);
                on_string(&|text| {
                    // An empty `from` matches between every two characters.
                    let matches = match from.is_empty() {
                        true => text.chars().count() + 1,
                        false => text.matches(from.as_str()).count(),
                    };
                    let most = matches.saturating_mul(to.len());
                    self.budget.write(text.len().saturating_add(most))?;
                    made(text.replace(&from, &to))
                })
            }
            "substring" => {
                let start = integer_argument(0)?;
                let length = if args.len() > 1 {
                    Some(integer_argument(1)?)
                } else {
                    None
                };
                on_string(&|text| {
                    let chars: Vec<char> = text.chars().collect();
                    if start >= chars.len() {
                        return Ok(vec![]);
                    }
                    let end =
                        length.map_or(chars.len(), |l| start.saturating_add(l).min(chars.len()));
                    made(chars[start..end].iter().collect())
                })
            }
            "length" => on_string(&|text| Ok(vec![Item::Number(text.chars().count() as f64)])),
            "lower" => on_string(&|text| made(text.to_lowercase())),
            "upper" => on_string(&|text| made(text.to_uppercase())),
            "toString" => on_string(&|text| made(text.to_string())),
            "toInteger" | "toDecimal" => Ok(match single(&items)? {
                None => vec![],
                Some(item) => number(item)
                    .or_else(|| string(item).and_then(|s| s.trim().parse().ok()))
                    .filter(|n: &f64| name == "toDecimal" || n.fract() == 0.0)
                    .map(Item::Number)
                    .into_iter()
                    .collect(),
            }),
            "tail" => Ok(items.into_iter().skip(1).collect()),
            "last" => Ok(items.into_iter().last().into_iter().collect()),
            "skip" => Ok(items.into_iter().skip(integer_argument(0)?).collect()),
            "take" => Ok(items.into_iter().take(integer_argument(0)?).collect()),
            "single" => Ok(single(&items)?.cloned().into_iter().collect()),
            "distinct" => distinct(items, &self.budget),
            "isDistinct" => {
                let count = items.len();
                boolean(distinct(items, &self.budget)?.len() == count)
            }
            "union" => distinct(items.into_iter().chain(argument(0)?), &self.budget),
            "combine" => {
                let other = argument(0)?;
                self.budget.spend(items.len() + other.len())?;
                Ok(items.into_iter().chain(other).collect())
            }
            "intersect" => {
                let other = argument(0)?;
                let mut kept = Vec::new();
                for item in items {
                    if self.any_equal(&item, &other)? {
                        kept.push(item);
                    }
                }
                distinct(kept, &self.budget)
            }
            "exclude" => {
                let other = argument(0)?;
                let mut kept = Vec::new();
                for item in items {
                    if !self.any_equal(&item, &other)? {
                        kept.push(item);
                    }
                }
                Ok(kept)
            }
            "subsetOf" | "supersetOf" => {
                let other = argument(0)?;
                let (small, large) = if name == "subsetOf" {
                    (&items, &other)
                } else {
                    (&other, &items)
                };
                for item in small {
                    if !self.any_equal(item, large)? {
                        return boolean(false);
                    }
                }
                boolean(true)
            }
            "join" => {
                let separator = match args.len() {
                    0 => String::new(),
                    _ => text_argument(0)?,
                };
                let mut joined = String::new();
                for (n, item) in items.iter().enumerate() {
                    let text = string(item)
                        .ok_or_else(|| EvalError::Invalid("join() needs strings".into()))?;
                    if n > 0 {
                        joined.push_str(&separator);
                    }
                    joined.push_str(&text);
                    self.budget.write(joined.len())?;
                }
                made(joined)
            }
            "lowBoundary" | "highBoundary" => {
                arity(0)?;
                let bound = match name {
                    "lowBoundary" => Bound::Low,
                    _ => Bound::High,
                };
                Ok(single(&items)?
                    .and_then(|item| boundary(item, bound))
                    .into_iter()
                    .collect())
            }
            // SQL on FHIR: the key of a resource, its id.
            "getResourceKey" => {
                arity(0)?;
                let mut out = Vec::new();
                for item in &items {
                    if let Item::Node { value, .. } = item
                        && value.get("resourceType").is_some()
                        && let Some(id) = value.get("id")
                    {
                        out.push(Item::node(id, Some("id".into())));
                    }
                }
                self.budget.spend(out.len())?;
                Ok(out)
            }
            // A debugging aid: its input, unchanged.
            "trace" => Ok(items),
            "children" => {
                arity(0)?;
                let mut out = Vec::new();
                for item in &items {
                    self.children(item, &mut out)?;
                }
                Ok(out)
            }
            "descendants" => {
                arity(0)?;
                let mut out = Vec::new();
                let mut level = items;
                while !level.is_empty() {
                    let mut next = Vec::new();
                    for item in &level {
                        self.children(item, &mut next)?;
                    }
                    self.budget.spend(next.len())?;
                    out.extend(next.iter().cloned());
                    level = next;
                }
                Ok(out)
            }
            // The narrative's rules, on an XHTML string (`Narrative.div`); empty on anything
            // else. Paid for by its length, as any reading of text.
            "htmlChecks" => {
                arity(0)?;
                match single(&items)? {
                    Some(
                        Item::Str(xhtml)
                        | Item::Node {
                            value: Value::String(xhtml),
                            ..
                        },
                    ) => {
                        self.budget.read(xhtml.len())?;
                        boolean(super::html::check_narrative(xhtml).is_ok())
                    }
                    _ => Ok(vec![]),
                }
            }
            _ => Err(EvalError::Invalid(format!(
                "the function {name}() is not supported"
            ))),
        }
    }
}

impl<'a> Context<'a> {
    /// Adds the child elements of an element to `out`, array items one by one (a primitive's
    /// `_name` sibling included, as the element it extends), paying for each.
    fn children(&self, item: &Item<'a>, out: &mut Items<'a>) -> Result<(), EvalError> {
        let Item::Node {
            value: Value::Object(object),
            ..
        } = item
        else {
            return self.budget.spend(1);
        };
        let before = out.len();
        out.extend(child_values(object).map(|v| Item::node(v, None)));
        self.budget.spend(1 + out.len() - before)
    }

    /// Whether `collection` holds an item equal to `item`.
    fn any_equal(&self, item: &Item<'a>, collection: &[Item<'a>]) -> Result<bool, EvalError> {
        for other in collection {
            if equals(item, other, &self.budget)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// The longest regular expression `matches()` and `replaceMatches()` take, in bytes: a pattern
/// may come from the resource (`matches(%resource.x)`), not only from the expression.
const MAX_PATTERN: usize = 4096;

/// The most patterns the cache keeps; past it, it starts again empty.
const CACHED_PATTERNS: usize = 512;

/// The compiled `pattern`, from a process-wide cache: invariants run the same few patterns
/// on every resource. The `regex` crate matches in time linear in the text (no backtracking);
/// what compiling one pattern may cost is bounded by its length, its nesting and the size of
/// the compiled program.
fn regex(pattern: &str) -> Result<Arc<Regex>, EvalError> {
    static CACHE: LazyLock<Mutex<HashMap<String, Arc<Regex>>>> = LazyLock::new(Default::default);
    if pattern.len() > MAX_PATTERN {
        return Err(EvalError::Exceeded(format!(
            "a pattern of {} bytes; at most {MAX_PATTERN} are compiled",
            pattern.len()
        )));
    }
    if let Some(regex) = CACHE.lock().expect("regex cache").get(pattern) {
        return Ok(regex.clone());
    }
    let compiled = RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .nest_limit(50)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => {
                EvalError::Exceeded(format!("the pattern '{pattern}' compiles too big"))
            }
            e => EvalError::Invalid(format!("bad pattern '{pattern}': {e}")),
        })?;
    let regex = Arc::new(compiled);
    let mut cache = CACHE.lock().expect("regex cache");
    if cache.len() >= CACHED_PATTERNS {
        cache.clear();
    }
    cache.insert(pattern.to_string(), regex.clone());
    Ok(regex)
}
