//! From FHIR search parameters to a tantivy query, per the FHIR search page: AND across
//! repeated parameters, OR across comma-separated values, modifiers and prefixes.

use super::extract::precise;
use super::index::Fields;
use super::registry::{ParamType, Registry, SearchParam};
use super::terms::{self, encode_f64, encode_i64, fold, kind, words};
use crate::fhir::datetime::{Micros, now, parse_period};
use crate::fhir::{FhirError, IssueCode};
use std::ops::Bound;
use tantivy::Term;
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, RangeQuery, RegexQuery, TermQuery};
use tantivy::schema::IndexRecordOption;

/// The parameters that steer a search rather than select resources.
pub const CONTROL: &[&str] = &[
    "_count",
    "_offset",
    "_snapshot",
    "_sort",
    "_total",
    "_summary",
    "_format",
    "_pretty",
    "_type",
];

/// A planned search.
pub struct Plan {
    pub query: Box<dyn Query>,
    /// The parameters that were applied, for the `self` link.
    pub used: Vec<(String, String)>,
    /// Parameters that were not understood or are not supported, with the reason.
    pub ignored: Vec<(String, String)>,
}

/// Plans a search of `resource_types` (all types when empty) with `params`. Under `strict`
/// handling an unknown or unsupported parameter is a 400; otherwise it is ignored and
/// reported.
pub fn plan(
    registry: &Registry,
    fields: Fields,
    resource_types: &[String],
    params: &[(String, String)],
    strict: bool,
) -> Result<Plan, FhirError> {
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    clauses.push((Occur::Must, type_filter(fields, resource_types)));
    let mut used = Vec::new();
    let mut ignored = Vec::new();
    for (name, value) in params {
        if CONTROL.contains(&name.as_str()) {
            continue;
        }
        let (code, modifier) = match name.split_once(':') {
            Some((code, modifier)) => (code, Some(modifier)),
            None => (name.as_str(), None),
        };
        // The parameter must mean the same for every type searched.
        let definitions: Vec<&SearchParam> = match resource_types {
            [] => registry
                .params("Patient")
                .filter(|p| p.code == code)
                .collect(),
            types => types.iter().filter_map(|t| registry.get(t, code)).collect(),
        };
        let outcome = match definitions.first() {
            None => Err(format!("unknown search parameter '{code}'")),
            Some(param) => param_query(fields, param, modifier, value),
        };
        match outcome {
            Ok(query) => {
                clauses.push(query);
                used.push((name.clone(), value.clone()));
            }
            Err(reason) if strict => {
                return Err(FhirError::bad_request(
                    IssueCode::NotSupported,
                    format!("{name}={value}: {reason}"),
                ));
            }
            Err(reason) => ignored.push((name.clone(), reason)),
        }
    }
    Ok(Plan {
        query: Box::new(BooleanQuery::new(clauses)),
        used,
        ignored,
    })
}

fn type_filter(fields: Fields, resource_types: &[String]) -> Box<dyn Query> {
    if resource_types.is_empty() {
        return Box::new(AllQuery);
    }
    let terms: Vec<Box<dyn Query>> = resource_types
        .iter()
        .map(|t| term_query(Term::from_field_text(fields.resource_type, t)))
        .collect();
    Box::new(BooleanQuery::union(terms))
}

fn term_query(term: Term) -> Box<dyn Query> {
    Box::new(TermQuery::new(term, IndexRecordOption::Basic))
}

/// The clause of one parameter occurrence: the OR of its comma-separated values.
fn param_query(
    fields: Fields,
    param: &SearchParam,
    modifier: Option<&str>,
    value: &str,
) -> Result<(Occur, Box<dyn Query>), String> {
    let t = |kind: char, v: &str| {
        term_query(Term::from_field_text(
            fields.terms,
            &terms::term(&param.code, kind, v),
        ))
    };
    if modifier == Some("missing") {
        let exists = t(kind::EXISTS, "");
        return match value {
            "true" => Ok((Occur::MustNot, exists)),
            "false" => Ok((Occur::Must, exists)),
            _ => Err("':missing' takes true or false".into()),
        };
    }
    let mut alternatives = Vec::new();
    for value in split_unescaped(value, ',') {
        if value.is_empty() {
            return Err("an empty value".into());
        }
        alternatives.push(value_query(fields, param, modifier, &value)?);
    }
    let any: Box<dyn Query> = Box::new(BooleanQuery::union(alternatives));
    if modifier == Some("not") {
        // `:not` matches resources without any of the codes, also those without a value.
        return Ok((Occur::MustNot, any));
    }
    Ok((Occur::Must, any))
}

fn value_query(
    fields: Fields,
    param: &SearchParam,
    modifier: Option<&str>,
    value: &str,
) -> Result<Box<dyn Query>, String> {
    let code = param.code.as_str();
    let t = |kind: char, v: &str| {
        term_query(Term::from_field_text(
            fields.terms,
            &terms::term(code, kind, v),
        ))
    };
    let unsupported = || {
        Err(format!(
            "the modifier ':{}' is not supported on a {} parameter",
            modifier.unwrap_or(""),
            param.kind.as_str()
        ))
    };
    match param.kind {
        ParamType::Token => {
            match modifier {
                None | Some("not") => {}
                Some("text") => {
                    let words: Vec<Box<dyn Query>> =
                        words(value).iter().map(|w| t(kind::TEXT_WORD, w)).collect();
                    if words.is_empty() {
                        return Err("':text' needs words".into());
                    }
                    return Ok(Box::new(BooleanQuery::intersection(words)));
                }
                Some("of-type") => {
                    let parts = split_unescaped(value, '|');
                    let [system, type_code, id] = parts.as_slice() else {
                        return Err("':of-type' takes system|code|value".into());
                    };
                    return Ok(t(kind::OF_TYPE, &format!("{system}|{type_code}|{id}")));
                }
                _ => return unsupported(),
            }
            let parts = split_unescaped(value, '|');
            Ok(match parts.as_slice() {
                [code] => t(kind::CODE, code),
                [system, code] if system.is_empty() => t(kind::CODE_WITHOUT_SYSTEM, code),
                [system, code] if code.is_empty() => t(kind::SYSTEM, system),
                [system, code] => t(kind::SYSTEM_CODE, &format!("{system}|{code}")),
                _ => return Err("a token is code, system|code, |code or system|".into()),
            })
        }
        ParamType::String => {
            let value = unescape(value);
            match modifier {
                None => Ok(prefix(fields, code, kind::FOLDED, &fold(&value))),
                Some("exact") => Ok(t(kind::EXACT, &value)),
                Some("contains") => {
                    let pattern = format!(
                        "{}.*{}.*",
                        regex_escape(&terms::term(code, kind::FOLDED, "")),
                        regex_escape(&fold(&value))
                    );
                    RegexQuery::from_pattern(&pattern, fields.terms)
                        .map(|q| Box::new(q) as Box<dyn Query>)
                        .map_err(|e| e.to_string())
                }
                _ => unsupported(),
            }
        }
        ParamType::Reference => {
            let value = unescape(value);
            match modifier {
                Some("identifier") => Ok(match value.split_once('|') {
                    Some((system, id)) => t(kind::IDENTIFIER, &format!("{system}|{id}")),
                    None => t(kind::IDENTIFIER_VALUE, &value),
                }),
                Some(target) if fhirlake_model::is_resource_type(target) => {
                    let id = value.rsplit('/').next().unwrap_or(&value);
                    Ok(t(kind::REFERENCE, &format!("{target}/{id}")))
                }
                None => Ok(if value.contains('/') {
                    let mut options = vec![t(kind::REFERENCE, &value)];
                    if let Some(local) = crate::fhir::reference::local(&value)
                        && local != value
                    {
                        options.push(t(kind::REFERENCE, local));
                    }
                    Box::new(BooleanQuery::union(options))
                } else {
                    t(kind::REFERENCE_ID, &value)
                }),
                _ => unsupported(),
            }
        }
        ParamType::Uri => {
            let value = unescape(value);
            match modifier {
                None => Ok(t(kind::URI, &value)),
                Some("below") => Ok(prefix(fields, code, kind::URI, &value)),
                Some("above") => {
                    let mut options = Vec::new();
                    let mut end = value.len();
                    while end > 0 {
                        options.push(t(kind::URI, &value[..end]));
                        end = value[..end].rfind('/').unwrap_or(0);
                    }
                    Ok(Box::new(BooleanQuery::union(options)))
                }
                _ => unsupported(),
            }
        }
        ParamType::Date if modifier.is_none() => {
            let (prefix, text) = split_prefix(value);
            let period = parse_period(text)?;
            Ok(date_query(fields, code, prefix, period.start, period.end))
        }
        ParamType::Number if modifier.is_none() => {
            let (prefix, text) = split_prefix(value);
            let (exact, low, high) = number(text)?;
            Ok(number_query(
                fields,
                code,
                kind::NUMBER,
                kind::NUMBER,
                "",
                prefix,
                exact,
                low,
                high,
            ))
        }
        ParamType::Quantity if modifier.is_none() => {
            let (prefix, text) = split_prefix(value);
            let parts = split_unescaped(text, '|');
            let (number_text, unit_key) = match parts.as_slice() {
                [n] => (n.as_str(), String::new()),
                [n, system, code] if system.is_empty() => (n.as_str(), format!("c:{code}")),
                [n, system, code] => (n.as_str(), format!("s:{system}|{code}")),
                _ => return Err("a quantity is [prefix]number[|system|code]".into()),
            };
            let (exact, low, high) = number(number_text)?;
            let key = format!("{unit_key}\u{1e}");
            Ok(number_query(
                fields,
                code,
                kind::LOW,
                kind::HIGH,
                &key,
                prefix,
                exact,
                low,
                high,
            ))
        }
        ParamType::Date | ParamType::Number | ParamType::Quantity => unsupported(),
        ParamType::Composite | ParamType::Special => Err(format!(
            "{} parameters are not supported yet",
            param.kind.as_str()
        )),
    }
}

/// Terms of `kind` that start with `start`.
fn prefix(fields: Fields, code: &str, kind: char, start: &str) -> Box<dyn Query> {
    let lower = terms::term(code, kind, start);
    let upper = format!("{lower}\u{10ffff}");
    Box::new(RangeQuery::new(
        Bound::Included(Term::from_field_text(fields.terms, &lower)),
        Bound::Excluded(Term::from_field_text(fields.terms, &upper)),
    ))
}

/// Terms of `kind` (`{unit key}{encoded value}`) whose value lies between two bounds.
fn range(
    fields: Fields,
    code: &str,
    kind: char,
    key: &str,
    lower: Bound<String>,
    upper: Bound<String>,
) -> Box<dyn Query> {
    let term = |encoded: String| {
        Term::from_field_text(
            fields.terms,
            &terms::term(code, kind, &format!("{key}{encoded}")),
        )
    };
    let lower = match lower {
        Bound::Included(v) => Bound::Included(term(v)),
        Bound::Excluded(v) => Bound::Excluded(term(v)),
        Bound::Unbounded => Bound::Included(term(String::new())),
    };
    let upper = match upper {
        Bound::Included(v) => Bound::Included(term(v)),
        Bound::Excluded(v) => Bound::Excluded(term(v)),
        Bound::Unbounded => Bound::Included(term("g".into())), // past every hex digit
    };
    Box::new(RangeQuery::new(lower, upper))
}

/// A comparison prefix: eq, ne, gt, lt, ge, le, sa, eb, ap.
fn split_prefix(value: &str) -> (&str, &str) {
    let candidate = value.get(..2).unwrap_or("");
    if ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"].contains(&candidate) {
        (candidate, &value[2..])
    } else {
        ("eq", value)
    }
}

/// A date parameter against resource periods `[low, high)`, for the period `[start, end)` of
/// the search value, as the FHIR search page defines each prefix.
fn date_query(
    fields: Fields,
    code: &str,
    prefix: &str,
    start: Micros,
    end: Micros,
) -> Box<dyn Query> {
    let low = |lower: Bound<Micros>, upper: Bound<Micros>| {
        range(
            fields,
            code,
            kind::LOW,
            "",
            bound(lower, encode_i64),
            bound(upper, encode_i64),
        )
    };
    let high = |lower: Bound<Micros>, upper: Bound<Micros>| {
        range(
            fields,
            code,
            kind::HIGH,
            "",
            bound(lower, encode_i64),
            bound(upper, encode_i64),
        )
    };
    let within = || -> Box<dyn Query> {
        Box::new(BooleanQuery::intersection(vec![
            low(Bound::Included(start), Bound::Unbounded),
            high(Bound::Unbounded, Bound::Included(end)),
        ]))
    };
    let above = || high(Bound::Excluded(end), Bound::Unbounded);
    let below = || low(Bound::Unbounded, Bound::Excluded(start));
    match prefix {
        "ne" => Box::new(BooleanQuery::union(vec![above(), below()])),
        "gt" => above(),
        "lt" => below(),
        "ge" => Box::new(BooleanQuery::union(vec![above(), within()])),
        "le" => Box::new(BooleanQuery::union(vec![below(), within()])),
        "sa" => low(Bound::Included(end), Bound::Unbounded),
        "eb" => high(Bound::Unbounded, Bound::Included(start)),
        "ap" => {
            // Overlap with the value widened by 10% of its distance from now.
            let margin = ((now() - start).abs() / 10).max(end - start);
            Box::new(BooleanQuery::intersection(vec![
                low(Bound::Unbounded, Bound::Excluded(end + margin)),
                high(Bound::Excluded(start - margin), Bound::Unbounded),
            ]))
        }
        _ => within(),
    }
}

/// A number or quantity parameter. Resource values are `[low, high]` (equal for a plain
/// number); the search value is `exact` with the range `[plow, phigh)` its precision implies.
#[allow(clippy::too_many_arguments)]
fn number_query(
    fields: Fields,
    code: &str,
    low_kind: char,
    high_kind: char,
    key: &str,
    prefix: &str,
    exact: f64,
    plow: f64,
    phigh: f64,
) -> Box<dyn Query> {
    let low = |lower: Bound<f64>, upper: Bound<f64>| {
        range(
            fields,
            code,
            low_kind,
            key,
            bound(lower, encode_f64),
            bound(upper, encode_f64),
        )
    };
    let high = |lower: Bound<f64>, upper: Bound<f64>| {
        range(
            fields,
            code,
            high_kind,
            key,
            bound(lower, encode_f64),
            bound(upper, encode_f64),
        )
    };
    let within = || -> Box<dyn Query> {
        Box::new(BooleanQuery::intersection(vec![
            low(Bound::Included(plow), Bound::Unbounded),
            high(Bound::Unbounded, Bound::Excluded(phigh)),
        ]))
    };
    match prefix {
        "ne" => Box::new(BooleanQuery::union(vec![
            low(Bound::Unbounded, Bound::Excluded(plow)),
            high(Bound::Included(phigh), Bound::Unbounded),
        ])),
        "gt" | "sa" => high(Bound::Excluded(exact), Bound::Unbounded),
        "lt" | "eb" => low(Bound::Unbounded, Bound::Excluded(exact)),
        "ge" => high(Bound::Included(exact), Bound::Unbounded),
        "le" => low(Bound::Unbounded, Bound::Included(exact)),
        "ap" => {
            let margin = (exact * 0.1).abs();
            Box::new(BooleanQuery::intersection(vec![
                low(Bound::Unbounded, Bound::Included(exact + margin)),
                high(Bound::Included(exact - margin), Bound::Unbounded),
            ]))
        }
        _ => within(),
    }
}

fn bound<T>(bound: Bound<T>, encode: impl Fn(T) -> String) -> Bound<String> {
    match bound {
        Bound::Included(v) => Bound::Included(encode(v)),
        Bound::Excluded(v) => Bound::Excluded(encode(v)),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// A search number with the range its precision implies (see [`precise`]).
fn number(text: &str) -> Result<(f64, f64, f64), String> {
    precise(text).ok_or_else(|| format!("'{text}' is not a number"))
}

/// Splits on `separator` where it is not escaped with `\`, and unescapes the parts.
pub fn split_unescaped(value: &str, separator: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next) if next == separator => parts.last_mut().expect("a part").push(next),
                Some(next) => {
                    let part = parts.last_mut().expect("a part");
                    part.push('\\');
                    part.push(next);
                }
                None => parts.last_mut().expect("a part").push('\\'),
            },
            c if c == separator => parts.push(String::new()),
            c => parts.last_mut().expect("a part").push(c),
        }
    }
    parts
}

/// Removes the escapes `\,` `\|` `\$` `\\` from a value.
fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some(next) = chars.next()
        {
            if !matches!(next, ',' | '|' | '$' | '\\') {
                out.push('\\');
            }
            out.push(next);
        } else {
            out.push(c);
        }
    }
    out
}

fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~\"@<>".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn values_split_on_unescaped_separators() {
        assert_eq!(split_unescaped("a,b\\,c", ','), ["a", "b,c"]);
        assert_eq!(split_unescaped("http://x|1\\|2", '|'), ["http://x", "1|2"]);
        assert_eq!(unescape("a\\$b\\,c\\\\"), "a$b,c\\");
        assert_eq!(split_prefix("ge2020"), ("ge", "2020"));
        assert_eq!(split_prefix("2020"), ("eq", "2020"));
        assert_eq!(number("100").unwrap(), (100.0, 99.5, 100.5));
        assert!(number("abc").is_err());
    }

    proptest! {
        #[test]
        fn escaped_values_split_back(parts in proptest::collection::vec("[a-z,|\\\\]{0,8}", 1..5)) {
            let escaped: Vec<String> = parts
                .iter()
                .map(|p| p.replace('\\', "\\\\").replace(',', "\\,"))
                .collect();
            let joined = escaped.join(",");
            let split: Vec<String> = split_unescaped(&joined, ',').iter().map(|p| unescape(p)).collect();
            prop_assert_eq!(split, parts);
        }
    }
}
