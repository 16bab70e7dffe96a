//! The FHIRPath operators beyond paths, `|`, `=` and `and`/`or`: comparison, arithmetic,
//! string concatenation, membership, equivalence, `xor` and `implies`.
//!
//! Every operator follows the specification's empty-collection rules: an arithmetic or
//! comparison operand that is empty makes the result empty; more than one item is an error.

use super::budget::Budget;
use super::eval::{EvalError, Item, equals};
use super::parser::Op;
use crate::fhir::datetime::parse_period;
use serde_json::Value;
use std::cmp::Ordering;

type Items<'a> = Vec<Item<'a>>;

/// The result of `left op right`, both already evaluated, paid for from `budget`; `implies`
/// and `xor` receive their operands' truth values (None for empty).
pub fn binary<'a>(
    op: Op,
    left: Items<'a>,
    right: Items<'a>,
    budget: &Budget,
) -> Result<Items<'a>, EvalError> {
    Ok(match op {
        Op::In => membership(&left, &right, budget)?,
        Op::Contains => membership(&right, &left, budget)?,
        Op::Equivalent(negated) => {
            let mut same = left.len() == right.len();
            for a in &left {
                if !same {
                    break;
                }
                let mut found = false;
                for b in &right {
                    budget.read(text_length(a).min(text_length(b)))?;
                    if equivalent(a, b, budget)? {
                        found = true;
                        break;
                    }
                }
                same = found;
            }
            vec![Item::Bool(same != negated)]
        }
        Op::Less | Op::LessOrEqual | Op::Greater | Op::GreaterOrEqual => {
            let (Some(a), Some(b)) = (single(&left)?, single(&right)?) else {
                return Ok(vec![]);
            };
            budget.read(text_length(a).min(text_length(b)))?;
            match compare(a, b) {
                None => vec![],
                Some(ordering) => vec![Item::Bool(match op {
                    Op::Less => ordering == Ordering::Less,
                    Op::LessOrEqual => ordering != Ordering::Greater,
                    Op::Greater => ordering == Ordering::Greater,
                    _ => ordering != Ordering::Less,
                })],
            }
        }
        Op::Concatenate => {
            let (a, b) = (single(&left)?, single(&right)?);
            budget.write(a.map_or(0, text_length) + b.map_or(0, text_length))?;
            let text = |item: Option<&Item<'a>>| item.and_then(string).unwrap_or_default();
            vec![Item::Str(text(a) + &text(b))]
        }
        Op::Add | Op::Subtract | Op::Multiply | Op::Divide | Op::IntegerDivide | Op::Modulo => {
            let (Some(a), Some(b)) = (single(&left)?, single(&right)?) else {
                return Ok(vec![]);
            };
            budget.write(text_length(a) + text_length(b))?;
            arithmetic(op, a, b)?
        }
        Op::Implies | Op::Xor => unreachable!("logical operators take truth values"),
    })
}

/// `left implies right` and `left xor right` on truth values (None: empty).
pub fn logical(op: Op, left: Option<bool>, right: Option<bool>) -> Option<bool> {
    match op {
        Op::Implies => match (left, right) {
            (Some(false), _) | (_, Some(true)) => Some(true),
            (Some(true), right) => right,
            (None, _) => None,
        },
        _ => Some(left? != right?),
    }
}

/// `-x` for a number.
pub fn negate<'a>(items: Items<'a>) -> Result<Items<'a>, EvalError> {
    Ok(match single(&items)?.map(number) {
        None => vec![],
        Some(Some(n)) => vec![Item::Number(-n)],
        Some(None) => return Err(EvalError::Invalid("'-' needs a number".into())),
    })
}

/// The single item of a collection; None when it is empty.
pub fn single<'i, 'a>(items: &'i [Item<'a>]) -> Result<Option<&'i Item<'a>>, EvalError> {
    match items {
        [] => Ok(None),
        [item] => Ok(Some(item)),
        _ => Err(EvalError::Invalid(
            "an operand with more than one item where one is expected".into(),
        )),
    }
}

/// The number an item holds.
pub fn number(item: &Item<'_>) -> Option<f64> {
    match item {
        Item::Number(n) => Some(*n),
        Item::Node {
            value: Value::Number(n),
            ..
        } => n.as_f64(),
        _ => None,
    }
}

/// The string an item holds (a string, or a primitive written as one in JSON).
pub fn string(item: &Item<'_>) -> Option<String> {
    match item {
        Item::Str(s) => Some(s.clone()),
        Item::Node {
            value: Value::String(s),
            ..
        } => Some(s.clone()),
        Item::Number(n) => Some(n.to_string()),
        Item::Bool(b) => Some(b.to_string()),
        Item::Node {
            value: Value::Number(n),
            ..
        } => Some(n.to_string()),
        Item::Node {
            value: Value::Bool(b),
            ..
        } => Some(b.to_string()),
        _ => None,
    }
}

/// The length of the text an item holds; 0 for any other item.
fn text_length(item: &Item<'_>) -> usize {
    match item {
        Item::Str(s)
        | Item::Node {
            value: Value::String(s),
            ..
        } => s.len(),
        _ => 0,
    }
}

/// `item in collection`: each item of `left` (one at most) is in `right`.
fn membership<'a>(
    left: &Items<'a>,
    right: &Items<'a>,
    budget: &Budget,
) -> Result<Items<'a>, EvalError> {
    Ok(match single(left)? {
        None => vec![],
        Some(item) => {
            let mut found = false;
            for other in right {
                if equals(item, other, budget)? {
                    found = true;
                    break;
                }
            }
            vec![Item::Bool(found)]
        }
    })
}

/// `~`: equality that ignores case and surrounding whitespace of strings.
fn equivalent(a: &Item<'_>, b: &Item<'_>, budget: &Budget) -> Result<bool, EvalError> {
    Ok(match (number(a), number(b)) {
        (Some(x), Some(y)) => x == y,
        _ => match (string(a), string(b)) {
            (Some(x), Some(y)) => {
                let normal = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
                normal(&x).to_lowercase() == normal(&y).to_lowercase()
            }
            _ => equals(a, b, budget)?,
        },
    })
}

/// The order of two values: numbers, dates and times (None when their precisions leave it
/// open, as the specification says), or strings.
fn compare(a: &Item<'_>, b: &Item<'_>) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (number(a), number(b)) {
        return x.partial_cmp(&y);
    }
    let (x, y) = (string(a)?, string(b)?);
    if let (Ok(p), Ok(q)) = (parse_period(&x), parse_period(&y))
        && looks_like_date(&x)
        && looks_like_date(&y)
    {
        if p.start == q.start && p.end == q.end {
            return Some(Ordering::Equal);
        }
        if p.end <= q.start {
            return Some(Ordering::Less);
        }
        if q.end <= p.start {
            return Some(Ordering::Greater);
        }
        // Overlapping periods of the same precision still order by their starts.
        return (p.end - p.start == q.end - q.start).then(|| p.start.cmp(&q.start));
    }
    Some(x.cmp(&y))
}

fn looks_like_date(text: &str) -> bool {
    text.len() >= 4 && text.as_bytes()[..4].iter().all(u8::is_ascii_digit)
}

fn arithmetic<'a>(op: Op, a: &Item<'a>, b: &Item<'a>) -> Result<Items<'a>, EvalError> {
    if op == Op::Add
        && let (Some(x), Some(y)) = (string_only(a), string_only(b))
    {
        return Ok(vec![Item::Str(x + &y)]);
    }
    let (Some(x), Some(y)) = (number(a), number(b)) else {
        return Err(EvalError::Invalid("arithmetic needs numbers".into()));
    };
    let result = match op {
        Op::Add => x + y,
        Op::Subtract => x - y,
        Op::Multiply => x * y,
        Op::Divide if y == 0.0 => return Ok(vec![]),
        Op::Divide => x / y,
        Op::IntegerDivide if y == 0.0 => return Ok(vec![]),
        Op::IntegerDivide => (x / y).trunc(),
        Op::Modulo if y == 0.0 => return Ok(vec![]),
        _ => x % y,
    };
    Ok(vec![Item::Number(result)])
}

/// The string of an item that is a string (not a number or boolean written as one).
fn string_only(item: &Item<'_>) -> Option<String> {
    match item {
        Item::Str(_)
        | Item::Node {
            value: Value::String(_),
            ..
        } => string(item),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`super::binary`] within the default budget.
    fn binary<'a>(op: Op, left: Items<'a>, right: Items<'a>) -> Result<Items<'a>, EvalError> {
        super::binary(op, left, right, &Budget::default())
    }

    fn n(x: f64) -> Items<'static> {
        vec![Item::Number(x)]
    }

    fn s(x: &str) -> Items<'static> {
        vec![Item::Str(x.into())]
    }

    fn truth(items: Items<'_>) -> Option<bool> {
        match items.as_slice() {
            [Item::Bool(b)] => Some(*b),
            [] => None,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn comparisons_of_numbers_strings_and_dates() {
        assert_eq!(truth(binary(Op::Less, n(1.0), n(2.0)).unwrap()), Some(true));
        assert_eq!(
            truth(binary(Op::GreaterOrEqual, n(2.0), n(2.0)).unwrap()),
            Some(true)
        );
        assert_eq!(truth(binary(Op::Less, s("a"), s("b")).unwrap()), Some(true));
        let dates = |a: &str, b: &str| truth(binary(Op::LessOrEqual, s(a), s(b)).unwrap());
        assert_eq!(dates("2020-01-01", "2020-01-02"), Some(true));
        assert_eq!(
            dates("2020-01-02T10:00:00Z", "2020-01-02T09:00:00-02:00"),
            Some(true)
        );
        assert_eq!(dates("2020-02", "2020-01-15"), Some(false));
        // A month and a day inside it: the order is not known.
        assert_eq!(dates("2020-01", "2020-01-15"), None);
        assert_eq!(truth(binary(Op::Less, vec![], n(1.0)).unwrap()), None);
        assert!(binary(Op::Less, vec![Item::Number(1.0), Item::Number(2.0)], n(1.0)).is_err());
    }

    #[test]
    fn arithmetic_concatenation_and_membership() {
        assert_eq!(binary(Op::Add, n(1.0), n(2.0)).unwrap(), n(3.0));
        assert_eq!(binary(Op::Add, s("a"), s("b")).unwrap(), s("ab"));
        assert_eq!(binary(Op::Concatenate, s("a"), vec![]).unwrap(), s("a"));
        assert_eq!(binary(Op::IntegerDivide, n(7.0), n(2.0)).unwrap(), n(3.0));
        assert_eq!(binary(Op::Modulo, n(7.0), n(2.0)).unwrap(), n(1.0));
        assert_eq!(binary(Op::Divide, n(1.0), n(0.0)).unwrap(), vec![]);
        let list = vec![Item::Str("a".into()), Item::Str("b".into())];
        assert_eq!(
            truth(binary(Op::In, s("b"), list.clone()).unwrap()),
            Some(true)
        );
        assert_eq!(
            truth(binary(Op::Contains, list, s("c")).unwrap()),
            Some(false)
        );
        assert_eq!(
            truth(binary(Op::Equivalent(false), s(" A  b"), s("a B")).unwrap()),
            Some(true)
        );
    }

    #[test]
    fn implies_and_xor_follow_three_valued_logic() {
        use Op::{Implies, Xor};
        assert_eq!(logical(Implies, Some(false), None), Some(true));
        assert_eq!(logical(Implies, None, Some(true)), Some(true));
        assert_eq!(logical(Implies, Some(true), None), None);
        assert_eq!(logical(Implies, Some(true), Some(false)), Some(false));
        assert_eq!(logical(Xor, Some(true), Some(false)), Some(true));
        assert_eq!(logical(Xor, Some(true), None), None);
    }
}
