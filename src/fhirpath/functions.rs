//! The FHIRPath functions beyond those search needs: what the R4 invariants call (`count()`,
//! `all()`, `hasValue()`, `matches()`, `select()`, `iif()`, `descendants()`, ...).
//!
//! Lambda arguments (`all(x)`, `select(x)`, `iif(c, ...)`) are evaluated on each input item;
//! other arguments on the input of the whole invocation, as the specification says.

use super::eval::{Context, EvalError, Item, Items, arity, distinct, equals, truth};
use super::operators::{number, single, string};
use super::parser::Expr;
use regex::Regex;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

impl<'a> Context<'a> {
    /// The functions not handled in `eval.rs`: `items` is the invocation's input, `input` what
    /// its arguments are evaluated on.
    pub(super) fn function(
        &self,
        name: &str,
        args: &[Expr],
        items: Items<'a>,
        input: &[Item<'a>],
    ) -> Result<Items<'a>, EvalError> {
        let arity = |n: usize| arity(name, args, n);
        // A non-lambda argument's value.
        let argument = |n: usize| -> Result<Items<'a>, EvalError> {
            let arg = args
                .get(n)
                .ok_or_else(|| EvalError(format!("{name}() needs argument {}", n + 1)))?;
            self.eval(arg, input)
        };
        let text_argument = |n: usize| -> Result<String, EvalError> {
            single(&argument(n)?)?
                .and_then(string)
                .ok_or_else(|| EvalError(format!("{name}() takes a string")))
        };
        let integer_argument = |n: usize| -> Result<usize, EvalError> {
            single(&argument(n)?)?
                .and_then(number)
                .filter(|n| *n >= 0.0)
                .map(|n| n as usize)
                .ok_or_else(|| EvalError(format!("{name}() takes a whole number")))
        };
        let boolean = |b: bool| Ok(vec![Item::Bool(b)]);
        // A string function of the single input string; empty for an empty input.
        let on_string = |f: &dyn Fn(&str) -> Result<Items<'a>, EvalError>| match single(&items)? {
            None => Ok(vec![]),
            Some(item) => match string(item) {
                Some(text) => f(&text),
                None => Err(EvalError(format!("{name}() needs a string"))),
            },
        };
        match name {
            "count" => {
                arity(0)?;
                Ok(vec![Item::Number(items.len() as f64)])
            }
            "all" => {
                arity(1)?;
                for item in &items {
                    if self.truth(&args[0], std::slice::from_ref(item))? != Some(true) {
                        return boolean(false);
                    }
                }
                boolean(true)
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
                boolean(matches!(
                    items.as_slice(),
                    [Item::Node {
                        value: Value::String(_) | Value::Number(_) | Value::Bool(_),
                        ..
                    }]
                ))
            }
            "matches" => {
                let pattern = regex(&text_argument(0)?)?;
                on_string(&|text| boolean(pattern.is_match(text)))
            }
            "replaceMatches" => {
                let pattern = regex(&text_argument(0)?)?;
                let substitute = text_argument(1)?;
                on_string(&|text| {
                    Ok(vec![Item::Str(
                        pattern.replace_all(text, substitute.as_str()).into_owned(),
                    )])
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
                on_string(&|text| Ok(vec![Item::Str(text.replace(&from, &to))]))
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
                    let end = length.map_or(chars.len(), |l| (start + l).min(chars.len()));
                    Ok(vec![Item::Str(chars[start..end].iter().collect())])
                })
            }
            "length" => on_string(&|text| Ok(vec![Item::Number(text.chars().count() as f64)])),
            "lower" => on_string(&|text| Ok(vec![Item::Str(text.to_lowercase())])),
            "upper" => on_string(&|text| Ok(vec![Item::Str(text.to_uppercase())])),
            "toString" => on_string(&|text| Ok(vec![Item::Str(text.to_string())])),
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
            "select" => {
                arity(1)?;
                let mut out = Vec::new();
                for item in &items {
                    out.extend(self.eval(&args[0], std::slice::from_ref(item))?);
                }
                Ok(out)
            }
            "iif" => {
                if !(2..=3).contains(&args.len()) {
                    return Err(EvalError("iif() takes 2 or 3 arguments".into()));
                }
                if self.truth(&args[0], &items)? == Some(true) {
                    self.eval(&args[1], &items)
                } else {
                    args.get(2).map_or(Ok(vec![]), |e| self.eval(e, &items))
                }
            }
            "distinct" => Ok(distinct(items)),
            "isDistinct" => {
                let count = items.len();
                boolean(distinct(items).len() == count)
            }
            "union" => Ok(distinct(items.into_iter().chain(argument(0)?))),
            "combine" => Ok(items.into_iter().chain(argument(0)?).collect()),
            "intersect" => {
                let other = argument(0)?;
                Ok(distinct(
                    items
                        .into_iter()
                        .filter(|i| other.iter().any(|o| equals(i, o))),
                ))
            }
            "exclude" => {
                let other = argument(0)?;
                Ok(items
                    .into_iter()
                    .filter(|i| !other.iter().any(|o| equals(i, o)))
                    .collect())
            }
            "subsetOf" | "supersetOf" => {
                let other = argument(0)?;
                let (small, large) = if name == "subsetOf" {
                    (&items, &other)
                } else {
                    (&other, &items)
                };
                boolean(small.iter().all(|i| large.iter().any(|o| equals(i, o))))
            }
            // A debugging aid: its input, unchanged.
            "trace" => Ok(items),
            "children" => {
                arity(0)?;
                let mut out = Vec::new();
                items.iter().for_each(|item| children(item, &mut out));
                Ok(out)
            }
            "descendants" => {
                arity(0)?;
                let mut out = Vec::new();
                let mut level = items;
                while !level.is_empty() {
                    let mut next = Vec::new();
                    level.iter().for_each(|item| children(item, &mut next));
                    out.extend(next.iter().cloned());
                    level = next;
                }
                Ok(out)
            }
            // The narrative's XHTML is checked by the model when a resource is parsed.
            "htmlChecks" => boolean(true),
            _ => Err(EvalError(format!("the function {name}() is not supported"))),
        }
    }
}

/// The child elements of an element, array items one by one (a primitive's `_name` sibling
/// included, as the element it extends).
fn children<'a>(item: &Item<'a>, out: &mut Items<'a>) {
    let Item::Node {
        value: Value::Object(object),
        ..
    } = item
    else {
        return;
    };
    for value in object.values() {
        match value {
            Value::Array(items) => out.extend(items.iter().map(|v| Item::node(v, None))),
            value => out.push(Item::node(value, None)),
        }
    }
}

/// The compiled `pattern`, from a process-wide cache: invariants run the same few patterns
/// on every resource.
fn regex(pattern: &str) -> Result<Arc<Regex>, EvalError> {
    static CACHE: LazyLock<Mutex<HashMap<String, Arc<Regex>>>> = LazyLock::new(Default::default);
    let mut cache = CACHE.lock().expect("regex cache");
    if let Some(regex) = cache.get(pattern) {
        return Ok(regex.clone());
    }
    let regex = Arc::new(
        Regex::new(pattern).map_err(|e| EvalError(format!("bad pattern '{pattern}': {e}")))?,
    );
    cache.insert(pattern.to_string(), regex.clone());
    Ok(regex)
}
