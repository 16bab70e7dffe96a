//! How search values become index terms, for the indexer and the query planner alike: one
//! encoding, so that what is written is what is asked for.
//!
//! Every term is `{param}\x1f{kind}{value}` in one raw-text field: `kind` is one character
//! saying what the value is (a token's `system|code`, a string's folded form, a date's start,
//! ...). Numbers and instants are written as 16 hex digits of an order-preserving encoding, so
//! a range of terms is a range of values.

use super::extract::IndexValue;
use crate::fhir::reference;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// What a term holds.
pub mod kind {
    /// The parameter has a value (for `:missing`).
    pub const EXISTS: char = 'e';
    /// The parameter has more than one value (matches need checking against the resource).
    pub const MULTIPLE: char = 'm';
    pub const CODE: char = 'c';
    pub const SYSTEM_CODE: char = 's';
    pub const CODE_WITHOUT_SYSTEM: char = 'n';
    pub const SYSTEM: char = 'y';
    pub const TEXT_WORD: char = 'w';
    pub const OF_TYPE: char = 'o';
    pub const FOLDED: char = 'p';
    pub const EXACT: char = 'x';
    pub const REFERENCE: char = 'r';
    pub const REFERENCE_ID: char = 'i';
    pub const IDENTIFIER: char = 'd';
    pub const IDENTIFIER_VALUE: char = 'D';
    pub const URI: char = 'u';
    pub const LOW: char = 'l';
    pub const HIGH: char = 'h';
    pub const NUMBER: char = 'v';
}

/// A term of `param`.
pub fn term(param: &str, kind: char, value: &str) -> String {
    format!("{param}\u{1f}{kind}{value}")
}

/// Lower case without accents: how strings are compared by default.
pub fn fold(text: &str) -> String {
    text.nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// An i64 (microseconds) as 16 hex digits whose order is the numbers' order.
pub fn encode_i64(value: i64) -> String {
    format!("{:016x}", (value as u64) ^ (1 << 63))
}

/// An f64 as 16 hex digits whose order is the numbers' order.
pub fn encode_f64(value: f64) -> String {
    let bits = value.to_bits();
    let ordered = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    format!("{ordered:016x}")
}

/// The unit keys a quantity is indexed under: any unit, `system|code`, and its code or unit.
pub fn unit_keys(system: Option<&str>, code: Option<&str>, unit: Option<&str>) -> Vec<String> {
    let mut keys = vec![String::new()];
    if let Some(code) = code {
        keys.push(format!("s:{}|{code}", system.unwrap_or("")));
        keys.push(format!("c:{code}"));
    }
    if let Some(unit) = unit
        && Some(unit) != code
    {
        keys.push(format!("c:{unit}"));
    }
    keys
}

/// The terms of one parameter's values in one resource.
pub fn terms(param: &str, values: &[IndexValue], out: &mut Vec<String>) {
    if values.is_empty() {
        return;
    }
    out.push(term(param, kind::EXISTS, ""));
    if values.len() > 1 {
        out.push(term(param, kind::MULTIPLE, ""));
    }
    for value in values {
        value_terms(param, value, out);
    }
}

fn value_terms(param: &str, value: &IndexValue, out: &mut Vec<String>) {
    let mut push = |kind: char, value: &str| out.push(term(param, kind, value));
    match value {
        IndexValue::Token { system, code, text } => {
            if let Some(code) = code {
                push(kind::CODE, code);
                match system {
                    Some(system) => push(kind::SYSTEM_CODE, &format!("{system}|{code}")),
                    None => push(kind::CODE_WITHOUT_SYSTEM, code),
                }
            }
            if let Some(system) = system {
                push(kind::SYSTEM, system);
            }
            for word in text.iter().flat_map(|t| words(t)) {
                push(kind::TEXT_WORD, &word);
            }
        }
        IndexValue::IdentifierType {
            system,
            code,
            value,
        } => push(
            kind::OF_TYPE,
            &format!("{}|{code}|{value}", system.as_deref().unwrap_or("")),
        ),
        IndexValue::Text(text) => {
            push(kind::FOLDED, &fold(text));
            push(kind::EXACT, text);
        }
        IndexValue::Reference {
            reference,
            identifier,
        } => {
            if let Some(reference) = reference {
                push(kind::REFERENCE, reference);
                if let Some(local) = reference::local(reference) {
                    if local != reference {
                        push(kind::REFERENCE, local);
                    }
                    push(kind::REFERENCE_ID, local.split('/').nth(1).unwrap_or(""));
                }
            }
            if let Some((system, value)) = identifier {
                push(
                    kind::IDENTIFIER,
                    &format!("{}|{value}", system.as_deref().unwrap_or("")),
                );
                push(kind::IDENTIFIER_VALUE, value);
            }
        }
        IndexValue::Uri(uri) => push(kind::URI, uri),
        IndexValue::Date(period) => {
            push(kind::LOW, &encode_i64(period.start));
            push(kind::HIGH, &encode_i64(period.end));
        }
        IndexValue::Number { value, .. } => push(kind::NUMBER, &encode_f64(*value)),
        IndexValue::Quantity {
            low,
            high,
            system,
            code,
            unit,
        } => {
            for key in unit_keys(system.as_deref(), code.as_deref(), unit.as_deref()) {
                push(kind::LOW, &format!("{key}\u{1e}{}", encode_f64(*low)));
                push(kind::HIGH, &format!("{key}\u{1e}{}", encode_f64(*high)));
            }
        }
        IndexValue::Composite(_) => {}
    }
}

/// The folded words of a text, for `:text`.
pub fn words(text: &str) -> Vec<String> {
    fold(text)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn folding_ignores_case_and_accents() {
        assert_eq!(fold("Ångström MÜLLER"), "angstrom muller");
        assert_eq!(words("Heart-rate, resting"), ["heart", "rate", "resting"]);
    }

    proptest! {
        #[test]
        fn encodings_keep_the_order_of_numbers(a in any::<i64>(), b in any::<i64>(),
                                               x in -1e300f64..1e300, y in -1e300f64..1e300) {
            prop_assert_eq!(a.cmp(&b), encode_i64(a).cmp(&encode_i64(b)));
            prop_assert_eq!(x.partial_cmp(&y).unwrap(), encode_f64(x).cmp(&encode_f64(y)));
        }
    }
}
