//! What a search parameter extracts from a resource: the typed values the index stores and
//! the query side matches, per the FHIR search page's rules for each parameter type.

use super::registry::{ParamType, Registry, SearchParam};
use crate::fhir::datetime::{Micros, Period, parse_period};
use crate::fhir::reference::Base;
use crate::fhirpath::{EvalError, Item, evaluate};
use serde_json::Value;

/// One value of one search parameter in one resource.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexValue {
    /// A coded value: `system|code`; `text` is the display or text that `:text` searches.
    Token {
        system: Option<String>,
        code: Option<String>,
        text: Option<String>,
    },
    /// An Identifier's type coding with its value, for `:of-type`.
    IdentifierType {
        system: Option<String>,
        code: String,
        value: String,
    },
    /// A string as written; matching folds case and accents.
    Text(String),
    /// A reference (`Type/id`, an absolute URL or a canonical) and/or a logical identifier.
    Reference {
        reference: Option<String>,
        identifier: Option<(Option<String>, String)>,
    },
    /// A date, dateTime, instant, Period or Timing event, as the period it covers.
    Date(Period),
    /// A number with the range its precision implies (`100` is `[99.5, 100.5)`).
    Number {
        value: f64,
        low: f64,
        high: f64,
    },
    /// A quantity with its units: `low == high` for a Quantity, the bounds for a Range (each
    /// widened by the precision it is written with).
    Quantity {
        low: f64,
        high: f64,
        system: Option<String>,
        code: Option<String>,
        unit: Option<String>,
    },
    Uri(String),
    /// A composite: for each component, its values.
    Composite(Vec<Vec<IndexValue>>),
    /// A WGS84 position in degrees (Location.position, for `near`).
    Position {
        latitude: f64,
        longitude: f64,
    },
}

/// The values `param` extracts from `resource`. A reference under this server's base (the
/// registry's [`Base`](crate::fhir::reference::Base)) comes relative (`Patient/1`), so that
/// whoever reads the values (the index, compartments, includes, authorization) takes every
/// absolute URL left for another server's.
pub fn extract(
    registry: &Registry,
    param: &SearchParam,
    resource: &Value,
) -> Result<Vec<IndexValue>, EvalError> {
    let Some(expression) = &param.expression else {
        return Ok(Vec::new());
    };
    let items = evaluate(expression, resource)?;
    let mut values = Vec::new();
    for item in &items {
        if param.kind == ParamType::Composite {
            let mut parts = Vec::with_capacity(param.components.len());
            for component in &param.components {
                let kind = registry
                    .by_url(&component.definition)
                    .map_or(ParamType::Token, |p| p.kind);
                let mut part = Vec::new();
                if let Item::Node { value, .. } = item {
                    for sub in evaluate(&component.expression, value)? {
                        convert(registry, kind, &sub, &mut part);
                    }
                }
                parts.push(part);
            }
            values.push(IndexValue::Composite(parts));
        } else {
            convert(registry, param.kind, item, &mut values);
        }
    }
    Ok(values)
}

fn text(value: &Value, name: &str) -> Option<String> {
    value.get(name).and_then(Value::as_str).map(String::from)
}

fn strings<'v>(value: &'v Value, name: &str) -> impl Iterator<Item = &'v str> {
    match value.get(name) {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect::<Vec<_>>(),
        Some(Value::String(s)) => vec![s.as_str()],
        _ => Vec::new(),
    }
    .into_iter()
}

/// Converts one selected item to the values of a parameter of type `kind`.
fn convert(registry: &Registry, kind: ParamType, item: &Item<'_>, out: &mut Vec<IndexValue>) {
    let value = match item {
        Item::Node { value, .. } => *value,
        Item::Bool(b) => {
            if kind == ParamType::Token {
                out.push(IndexValue::Token {
                    system: None,
                    code: Some(b.to_string()),
                    text: None,
                });
            }
            return;
        }
        Item::Str(_) | Item::Number(_) | Item::Resolved(_) => return,
    };
    match kind {
        ParamType::Token => token(value, out),
        ParamType::String => string(value, out),
        ParamType::Reference => reference(value, &registry.base, out),
        ParamType::Date => date(value, out),
        ParamType::Number => {
            if let Some((value, low, high)) = number(value) {
                out.push(IndexValue::Number { value, low, high });
            }
        }
        ParamType::Quantity => quantity(value, out),
        ParamType::Uri => {
            if let Some(uri) = value.as_str() {
                out.push(IndexValue::Uri(uri.to_string()));
            }
        }
        ParamType::Special => {
            // `near`, the one special parameter with an expression: a Location.position.
            let degrees = |name: &str| value.get(name).and_then(Value::as_f64);
            if let (Some(latitude), Some(longitude)) = (degrees("latitude"), degrees("longitude")) {
                out.push(IndexValue::Position {
                    latitude,
                    longitude,
                });
            }
        }
        ParamType::Composite => {}
    }
}

fn token(value: &Value, out: &mut Vec<IndexValue>) {
    match value {
        Value::String(code) => out.push(IndexValue::Token {
            system: None,
            code: Some(code.clone()),
            text: None,
        }),
        Value::Bool(b) => out.push(IndexValue::Token {
            system: None,
            code: Some(b.to_string()),
            text: None,
        }),
        Value::Object(object)
            if object.contains_key("coding")
                || object.contains_key("text") && !object.contains_key("value") =>
        {
            // CodeableConcept
            for coding in object
                .get("coding")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                token(coding, out);
            }
            if let Some(text) = text(value, "text") {
                out.push(IndexValue::Token {
                    system: None,
                    code: None,
                    text: Some(text),
                });
            }
        }
        Value::Object(object) if object.contains_key("value") => {
            // Identifier or ContactPoint: the value is the code.
            let code = text(value, "value");
            out.push(IndexValue::Token {
                system: text(value, "system"),
                code: code.clone(),
                text: value.get("type").and_then(|t| text(t, "text")),
            });
            if let (Some(code), Some(codings)) = (
                code,
                value.pointer("/type/coding").and_then(Value::as_array),
            ) {
                for coding in codings {
                    if let Some(type_code) = text(coding, "code") {
                        out.push(IndexValue::IdentifierType {
                            system: text(coding, "system"),
                            code: type_code,
                            value: code.clone(),
                        });
                    }
                }
            }
        }
        Value::Object(object) if object.contains_key("code") || object.contains_key("system") => {
            // Coding
            out.push(IndexValue::Token {
                system: text(value, "system"),
                code: text(value, "code"),
                text: text(value, "display"),
            });
        }
        _ => {}
    }
}

fn string(value: &Value, out: &mut Vec<IndexValue>) {
    match value {
        Value::String(s) => out.push(IndexValue::Text(s.clone())),
        Value::Object(_) => {
            // HumanName, Address and other structures: their string parts.
            for name in [
                "text",
                "family",
                "given",
                "prefix",
                "suffix",
                "line",
                "city",
                "district",
                "state",
                "postalCode",
                "country",
            ] {
                out.extend(strings(value, name).map(|s| IndexValue::Text(s.to_string())));
            }
        }
        _ => {}
    }
}

/// A reference's values, relative to `base` when under it.
fn reference(value: &Value, base: &Base, out: &mut Vec<IndexValue>) {
    let relative = |reference: &str| base.relative_to(reference).to_string();
    match value {
        Value::String(uri) => out.push(IndexValue::Reference {
            reference: Some(relative(uri)),
            identifier: None,
        }),
        Value::Object(_) => {
            let identifier = value
                .get("identifier")
                .and_then(|id| Some((text(id, "system"), text(id, "value")?)));
            let reference = text(value, "reference").map(|r| relative(&r));
            if reference.is_some() || identifier.is_some() {
                out.push(IndexValue::Reference {
                    reference,
                    identifier,
                });
            }
        }
        _ => {}
    }
}

fn date(value: &Value, out: &mut Vec<IndexValue>) {
    let bound = |name: &str| {
        value
            .get(name)
            .and_then(Value::as_str)
            .and_then(|t| parse_period(t).ok())
    };
    match value {
        Value::String(text) => {
            if let Ok(period) = parse_period(text) {
                out.push(IndexValue::Date(period));
            }
        }
        Value::Object(object) if object.contains_key("start") || object.contains_key("end") => {
            // Period: an open end is unbounded.
            out.push(IndexValue::Date(Period {
                start: bound("start").map_or(Micros::MIN, |p| p.start),
                end: bound("end").map_or(Micros::MAX, |p| p.end),
            }));
        }
        Value::Object(_) => {
            // Timing: its events, and the bounds of its repeat.
            for event in strings(value, "event") {
                if let Ok(period) = parse_period(event) {
                    out.push(IndexValue::Date(period));
                }
            }
            if let Some(bounds) = value.pointer("/repeat/boundsPeriod") {
                date(bounds, out);
            }
        }
        _ => {}
    }
}

/// A number with the range its written precision implies: half a unit of its last digit
/// (`100` is `[99.5, 100.5)`, `1.5e2` is `[145, 155)`). Resource values and search values are
/// read alike.
pub fn precise(text: &str) -> Option<(f64, f64, f64)> {
    let value: f64 = text.parse().ok().filter(|v: &f64| v.is_finite())?;
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, exponent.parse::<i32>().ok()?),
        None => (text, 0),
    };
    let decimals = mantissa.split_once('.').map_or(0, |(_, f)| f.len() as i32) - exponent;
    let half = 0.5 * 10f64.powi(-decimals);
    Some((value, value - half, value + half))
}

fn number(value: &Value) -> Option<(f64, f64, f64)> {
    match value {
        Value::Number(n) => precise(&n.to_string()),
        _ => None,
    }
}

fn quantity(value: &Value, out: &mut Vec<IndexValue>) {
    let units = |q: &Value| (text(q, "system"), text(q, "code"), text(q, "unit"));
    if let Some((exact, _, _)) = value.get("value").and_then(number) {
        let (system, code, unit) = units(value);
        out.push(IndexValue::Quantity {
            low: exact,
            high: exact,
            system,
            code,
            unit,
        });
    } else if value.get("low").is_some() || value.get("high").is_some() {
        // Range: from its low to its high quantity.
        let low = value.get("low");
        let high = value.get("high");
        let (system, code, unit) = units(low.or(high).expect("one bound"));
        out.push(IndexValue::Quantity {
            low: low
                .and_then(|q| q.get("value"))
                .and_then(number)
                .map_or(f64::NEG_INFINITY, |n| n.1),
            high: high
                .and_then(|q| q.get("value"))
                .and_then(number)
                .map_or(f64::INFINITY, |n| n.2),
            system,
            code,
            unit,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn values(resource: &Value, code: &str) -> Vec<IndexValue> {
        let registry = Registry::r4();
        let kind = resource["resourceType"].as_str().unwrap();
        let param = registry
            .get(kind, code)
            .unwrap_or_else(|| panic!("{kind}.{code}"));
        extract(&registry, param, resource).unwrap()
    }

    #[test]
    fn tokens_strings_references_dates_and_quantities() {
        let observation = json!({
            "resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}], "text": "HR"},
            "subject": {"reference": "Patient/p1"},
            "effectivePeriod": {"start": "2020-01-01", "end": "2020-01-02T10:00:00Z"},
            "valueQuantity": {"value": 72.0, "system": "http://unitsofmeasure.org", "code": "/min"}
        });
        assert_eq!(
            values(&observation, "code")[0],
            IndexValue::Token {
                system: Some("http://loinc.org".into()),
                code: Some("8867-4".into()),
                text: Some("Heart rate".into())
            }
        );
        assert_eq!(values(&observation, "code").len(), 2);
        assert_eq!(
            values(&observation, "subject"),
            [IndexValue::Reference {
                reference: Some("Patient/p1".into()),
                identifier: None
            }]
        );
        assert_eq!(values(&observation, "patient").len(), 1);
        let IndexValue::Date(period) = values(&observation, "date")[0] else {
            panic!()
        };
        assert_eq!(period.start, parse_period("2020-01-01").unwrap().start);
        assert_eq!(
            period.end,
            parse_period("2020-01-02T10:00:00Z").unwrap().end
        );
        let IndexValue::Quantity {
            low,
            high,
            ref code,
            ..
        } = values(&observation, "value-quantity")[0]
        else {
            panic!()
        };
        assert_eq!((low, high, code.as_deref()), (72.0, 72.0, Some("/min")));
        let composite = values(&observation, "code-value-quantity");
        let IndexValue::Composite(parts) = &composite[0] else {
            panic!()
        };
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].len(), 1);
    }

    #[test]
    fn names_identifiers_and_booleans() {
        let patient = json!({
            "resourceType": "Patient",
            "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
            "identifier": [{"system": "urn:mrn", "value": "12345",
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}}],
            "active": true,
            "deceasedBoolean": false
        });
        assert_eq!(values(&patient, "name").len(), 3);
        let precise = |text: &str| number(&serde_json::from_str(text).unwrap()).unwrap();
        assert_eq!(precise("100"), (100.0, 99.5, 100.5));
        assert_eq!(precise("1.5e2"), (150.0, 145.0, 155.0));
        assert_eq!(
            values(&patient, "family"),
            [IndexValue::Text("Chalmers".into())]
        );
        let identifiers = values(&patient, "identifier");
        assert_eq!(identifiers.len(), 2);
        assert!(
            matches!(identifiers[1], IndexValue::IdentifierType { ref code, .. } if code == "MR")
        );
        assert_eq!(
            values(&patient, "active"),
            [IndexValue::Token {
                system: None,
                code: Some("true".into()),
                text: None
            }]
        );
        assert_eq!(
            values(&patient, "deceased"),
            [IndexValue::Token {
                system: None,
                code: Some("false".into()),
                text: None
            }]
        );
    }
}

/// Every expression of the R4 definitions, evaluated on every resource of the official
/// examples and of ten Synthea patients: none may fail.
#[cfg(test)]
mod real_data {
    use super::*;
    use crate::fhir::test_data::{examples, shared};

    fn synthea(patients: usize) -> Vec<Value> {
        let mut files: Vec<_> = std::fs::read_dir(shared("data/synthea"))
            .expect("the Synthea bundles in ../shared")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        let mut resources = Vec::new();
        for path in files.into_iter().take(patients + 2) {
            let bundle: Value = serde_json::from_reader(flate2::read::GzDecoder::new(
                std::fs::File::open(path).expect("bundle"),
            ))
            .expect("bundle json");
            for entry in bundle["entry"].as_array().expect("entries") {
                resources.push(entry["resource"].clone());
            }
        }
        resources
    }

    #[test]
    fn every_r4_expression_evaluates_on_real_data() {
        let registry = Registry::r4();
        let mut resources = examples();
        assert!(resources.len() > 500, "only {} examples", resources.len());
        resources.extend(synthea(10));
        let mut failures = Vec::new();
        let mut evaluated = 0usize;
        let mut found = std::collections::HashSet::new();
        for resource in &resources {
            let kind = resource["resourceType"].as_str().unwrap_or_default();
            for param in registry.params(kind) {
                evaluated += 1;
                match extract(&registry, param, resource) {
                    Ok(values) if !values.is_empty() => {
                        found.insert(param.url.clone());
                    }
                    Ok(_) => {}
                    Err(error) => failures.push(format!(
                        "{kind}/{}: {} ({}): {error}",
                        resource["id"].as_str().unwrap_or("?"),
                        param.code,
                        param.expression_text.as_deref().unwrap_or("")
                    )),
                }
            }
        }
        failures.sort();
        failures.dedup();
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
        // The data exercises a good part of the definitions.
        assert!(evaluated > 100_000, "{evaluated}");
        assert!(
            found.len() > 500,
            "only {} parameters found values",
            found.len()
        );
    }
}
