//! How search values become index terms, for the indexer and the query planner alike: one
//! encoding, so that what is written is what is asked for.
//!
//! Every term is `{param}\x1f{kind}{value}` in one raw-text field: `kind` is one character
//! saying what the value is (a token's `system|code`, a string's folded form, a date's start,
//! ...). Numbers and instants are written as 16 hex digits of an order-preserving encoding, so
//! a range of terms is a range of values.
//!
//! - A value with a low and a high (a date at any precision, a Range) is an `l` and an `h`
//!   term; a point (a number, a Quantity) is one `v` term, so each prefix on a point is one
//!   range of terms. A code without a system is one `n` term (a bare `code` search asks for `c`
//!   or `n`). `_lastUpdated` is no term: it searches and sorts the document's lastUpdated field.
//! - A range with two bounds (a date's `eq`, `ap`) needs the low and the high term of one value
//!   to match. Single values need no more: their terms are exact. A parameter with several
//!   values under one key also stores each value's `(low term, high term)` pair
//!   ([`Entries::pairs`]), and the planner's doc predicate (`both` in `query.rs`) checks that
//!   one pair satisfies both bounds.
//! - A composite's terms are its last component's terms behind the exact forms of its leading
//!   components (`code-value-quantity\x1fl` `s{system}|{code}\x1d{unit}\x1e{value}`), so
//!   `a$b` matches both on one element.

use super::extract::IndexValue;
use super::units::Canonical;
use crate::fhir::reference;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// What a term holds.
pub mod kind {
    /// The parameter has a value (for `:missing`).
    pub const EXISTS: char = 'e';
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
    /// A value that is its own low and high: a number, a Quantity (not a Range).
    pub const POINT: char = 'v';
}

/// A term of `param`.
pub fn term(param: &str, kind: char, value: &str) -> String {
    term_of(param, kind, &[value])
}

/// A term of `param` whose value is `parts` one after the other. The indexer builds a few
/// hundred terms per resource: each is one allocation of its exact size, without `format!`.
fn term_of(param: &str, kind: char, parts: &[&str]) -> String {
    let mut kind_utf8 = [0; 4];
    concat(&[&[param, "\u{1f}", kind.encode_utf8(&mut kind_utf8)], parts])
}

/// The strings of `groups` one after the other, in one allocation of the exact size.
fn concat(groups: &[&[&str]]) -> String {
    let parts = || groups.iter().flat_map(|group| group.iter());
    let mut out = String::with_capacity(parts().map(|part| part.len()).sum());
    parts().for_each(|part| out.push_str(part));
    out
}

/// Lower case without accents: how strings are compared by default.
pub fn fold(text: &str) -> String {
    // ASCII decomposes to itself and has no accents: most of what is indexed takes this way.
    if text.is_ascii() {
        return text.to_ascii_lowercase();
    }
    fold_decomposed(text)
}

/// [`fold`] by way of Unicode decomposition, whatever the text.
fn fold_decomposed(text: &str) -> String {
    text.nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// An i64 (microseconds) as 16 hex digits whose order is the numbers' order.
pub fn encode_i64(value: i64) -> String {
    hex16((value as u64) ^ (1 << 63))
}

/// An f64 as 16 hex digits whose order is the numbers' order.
pub fn encode_f64(value: f64) -> String {
    let bits = value.to_bits();
    let ordered = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    hex16(ordered)
}

/// `value` as 16 lower-case hex digits (`format!("{value:016x}")`, without its machinery).
fn hex16(value: u64) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    (0..16)
        .rev()
        .map(|nibble| DIGITS[(value >> (nibble * 4)) as usize & 0xf] as char)
        .collect()
}

/// The f64 of [`encode_f64`].
pub fn decode_f64(encoded: &str) -> Option<f64> {
    let ordered = u64::from_str_radix(encoded, 16).ok()?;
    let bits = if ordered >> 63 == 1 {
        ordered & !(1 << 63)
    } else {
        !ordered
    };
    Some(f64::from_bits(bits))
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

/// The longest sort value kept, in bytes: longer strings sort by their start.
const SORT_VALUE_MAX: usize = 128;

/// What one resource gives the index: its search terms, its sort values, and the value pairs
/// of its multi-valued ranges.
///
/// Invariant: a parameter with two or more range values (dates, numbers, quantities, also
/// inside composites) under one key has every `(low term, high term)` pair in `pairs`, so a
/// range query that needs both bounds to hold for one value can check them together; a
/// parameter with a single value needs no pair, its terms alone are exact.
#[derive(Debug, Default)]
pub struct Entries {
    pub terms: Vec<String>,
    /// `(column, value)`: `code` holds the lowest value (for ascending sorts), `-code` the
    /// highest (for descending ones); values compare as byte strings.
    pub sort: Vec<(String, String)>,
    /// Encoded with [`pair`].
    pub pairs: Vec<Vec<u8>>,
    /// `{param}\x1f{Type/id}` for each local reference, so that `_has` can read what a match
    /// refers to (see [`reference_entry`]).
    pub refs: Vec<String>,
}

/// One range value under one key: `[low, high]`, each as an encoded term value.
struct Range {
    low_kind: char,
    high_kind: char,
    /// What comes before the encoded value: a unit key, a composite's prefix.
    key: String,
    low: String,
    high: String,
}

impl Entries {
    /// Adds the values one parameter extracts from the resource.
    pub fn add(&mut self, param: &str, values: &[IndexValue]) {
        if values.is_empty() {
            return;
        }
        self.terms.push(term(param, kind::EXISTS, ""));
        let mut ranges = Vec::new();
        for value in values {
            if let IndexValue::Composite(parts) = value {
                let mut push = |kind, v: &[&str]| self.terms.push(term_of(param, kind, v));
                composite_terms(parts, &mut push, &mut ranges);
            } else {
                value_terms(value, &mut |kind, v| {
                    self.terms.push(term_of(param, kind, v))
                });
                value_ranges(value, "", &mut ranges);
            }
            if let IndexValue::Reference {
                reference: Some(reference),
                ..
            } = value
                && let Some(local) = reference::relative(reference)
            {
                self.refs.push(reference_entry(param, local));
            }
        }
        for value in values {
            if let IndexValue::Position {
                latitude,
                longitude,
            } = value
            {
                // A box query on each coordinate finds candidates; the pair lets the planner
                // check the distance of one position.
                let latitude = term_of(param, kind::POINT, &[LATITUDE, &encode_f64(*latitude)]);
                let longitude = term_of(param, kind::POINT, &[LONGITUDE, &encode_f64(*longitude)]);
                self.pairs.push(pair(&latitude, &longitude));
                self.terms.push(latitude);
                self.terms.push(longitude);
            }
        }
        for range in &ranges {
            let low = term_of(param, range.low_kind, &[&range.key, &range.low]);
            let high = term_of(param, range.high_kind, &[&range.key, &range.high]);
            if ranges
                .iter()
                .filter(|r| r.key == range.key)
                .nth(1)
                .is_some()
            {
                self.pairs.push(pair(&low, &high));
            }
            // A point's low and high are one term.
            if high != low {
                self.terms.push(high);
            }
            self.terms.push(low);
        }
        let sorted: Vec<(String, String)> = values.iter().filter_map(sort_values).collect();
        if let (Some(lowest), Some(highest)) = (
            sorted.iter().map(|(low, _)| low).min(),
            sorted.iter().map(|(_, high)| high).max(),
        ) {
            self.sort.push((param.to_string(), lowest.clone()));
            self.sort.push((format!("-{param}"), highest.clone()));
        }
    }
}

/// How the index keeps one local reference `Type/id` of `param`.
pub fn reference_entry(param: &str, local: &str) -> String {
    format!("{param}\u{1f}{local}")
}

/// The keys of a position's latitude and longitude (for `near`).
pub const LATITUDE: &str = "lat\u{1e}";
pub const LONGITUDE: &str = "lon\u{1e}";

/// A pair of a value's low and high terms (or a position's latitude and longitude terms), as
/// the index stores it.
pub fn pair(low: &str, high: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + low.len() + high.len());
    out.extend_from_slice(&(low.len() as u32).to_le_bytes());
    out.extend_from_slice(low.as_bytes());
    out.extend_from_slice(high.as_bytes());
    out
}

/// The `(low term, high term)` of a stored pair.
pub fn unpair(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let rest = bytes.get(4..)?;
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// The terms of a value that is not a range.
/// Each term is given as the parts of its value, one after the other.
fn value_terms(value: &IndexValue, push: &mut dyn FnMut(char, &[&str])) {
    match value {
        IndexValue::Token { system, code, text } => {
            // A code with a system is found by `code` and `system|code`, one without by
            // `code` and `|code` (the planner asks for either kind on a bare `code`).
            match (system, code) {
                (Some(system), Some(code)) => {
                    push(kind::CODE, &[code]);
                    push(kind::SYSTEM_CODE, &[system, "|", code]);
                }
                (None, Some(code)) => push(kind::CODE_WITHOUT_SYSTEM, &[code]),
                _ => {}
            }
            if let Some(system) = system {
                push(kind::SYSTEM, &[system]);
            }
            for word in text.iter().flat_map(|t| words(t)) {
                push(kind::TEXT_WORD, &[&word]);
            }
        }
        IndexValue::IdentifierType {
            system,
            code,
            value,
        } => push(
            kind::OF_TYPE,
            &[system.as_deref().unwrap_or(""), "|", code, "|", value],
        ),
        IndexValue::Text(text) => {
            push(kind::FOLDED, &[&fold(text)]);
            push(kind::EXACT, &[text]);
        }
        IndexValue::Reference {
            reference,
            identifier,
        } => {
            if let Some(reference) = reference {
                push(kind::REFERENCE, &[reference]);
                // A canonical with its version (`url|1.0`) is found by its URL alone too.
                if let Some((url, _)) = reference.split_once('|') {
                    push(kind::REFERENCE, &[url]);
                }
                if let Some(local) = reference::relative(reference) {
                    if local != reference {
                        push(kind::REFERENCE, &[local]);
                    }
                    push(kind::REFERENCE_ID, &[local.split('/').nth(1).unwrap_or("")]);
                }
            }
            if let Some((system, value)) = identifier {
                push(
                    kind::IDENTIFIER,
                    &[system.as_deref().unwrap_or(""), "|", value],
                );
                push(kind::IDENTIFIER_VALUE, &[value]);
            }
        }
        IndexValue::Uri(uri) => push(kind::URI, &[uri]),
        IndexValue::Date(_)
        | IndexValue::Number { .. }
        | IndexValue::Quantity { .. }
        | IndexValue::Composite(_)
        | IndexValue::Position { .. } => {}
    }
}

/// The ranges of a date, number or quantity value, each key prefixed with `prefix`.
fn value_ranges(value: &IndexValue, prefix: &str, out: &mut Vec<Range>) {
    match value {
        IndexValue::Date(period) => out.push(Range {
            low_kind: kind::LOW,
            high_kind: kind::HIGH,
            key: prefix.to_string(),
            low: encode_i64(period.start),
            high: encode_i64(period.end),
        }),
        IndexValue::Number { value, .. } => out.push(Range {
            low_kind: kind::POINT,
            high_kind: kind::POINT,
            key: prefix.to_string(),
            low: encode_f64(*value),
            high: encode_f64(*value),
        }),
        IndexValue::Quantity {
            low,
            high,
            system,
            code,
            unit,
        } => {
            // A Quantity is one point: one term per key instead of a low and a high.
            let (low_kind, high_kind) = if low == high {
                (kind::POINT, kind::POINT)
            } else {
                (kind::LOW, kind::HIGH)
            };
            let mut push = |key: &str, low: f64, high: f64| {
                out.push(Range {
                    low_kind,
                    high_kind,
                    key: format!("{prefix}{key}\u{1e}"),
                    low: encode_f64(low),
                    high: encode_f64(high),
                })
            };
            for key in unit_keys(system.as_deref(), code.as_deref(), unit.as_deref()) {
                push(&key, *low, *high);
            }
            if let Some(canonical) = code
                .as_deref()
                .and_then(|code| Canonical::of(system.as_deref(), code))
            {
                push(
                    &canonical.key,
                    canonical.convert(*low),
                    canonical.convert(*high),
                );
            }
        }
        _ => {}
    }
}

/// The forms a composite's leading component is matched by: `{kind}{value}` of its exact
/// terms (a token's code and system|code, a reference, a uri, a folded string).
pub fn prefix_forms(value: &IndexValue) -> Vec<String> {
    let mut forms = Vec::new();
    match value {
        IndexValue::Token { .. } | IndexValue::Reference { .. } | IndexValue::Uri(_) => {
            value_terms(value, &mut |kind, v| {
                let form = |kind: char| {
                    let mut kind_utf8 = [0; 4];
                    concat(&[&[kind.encode_utf8(&mut kind_utf8)], v])
                };
                if kind == kind::CODE_WITHOUT_SYSTEM {
                    forms.push(form(kind::CODE));
                }
                if ![kind::TEXT_WORD, kind::SYSTEM, kind::REFERENCE_ID].contains(&kind) {
                    forms.push(form(kind));
                }
            });
        }
        IndexValue::Text(text) => forms.push(format!("{}{}", kind::FOLDED, fold(text))),
        _ => {}
    }
    forms
}

/// The separator after a composite's leading components.
pub const COMPOSITE_SEPARATOR: char = '\u{1d}';

/// The prefixes of a composite's last component: every combination of the forms of the
/// components before it, each followed by [`COMPOSITE_SEPARATOR`].
fn composite_prefixes(parts: &[Vec<IndexValue>]) -> Vec<String> {
    let mut separator = [0; 4];
    let separator = &*COMPOSITE_SEPARATOR.encode_utf8(&mut separator);
    let mut prefixes = vec![String::new()];
    for part in &parts[..parts.len().saturating_sub(1)] {
        let forms: Vec<String> = part.iter().flat_map(prefix_forms).collect();
        prefixes = prefixes
            .iter()
            .flat_map(|p| forms.iter().map(move |f| concat(&[&[p, f, separator]])))
            .collect();
    }
    prefixes
}

/// The terms and the ranges of a composite: those of its last component behind each of its
/// prefixes.
fn composite_terms(
    parts: &[Vec<IndexValue>],
    push: &mut dyn FnMut(char, &[&str]),
    ranges: &mut Vec<Range>,
) {
    let Some(last) = parts.last() else { return };
    for prefix in composite_prefixes(parts) {
        for value in last {
            value_terms(value, &mut |kind, v| {
                let mut behind = Vec::with_capacity(v.len() + 1);
                behind.push(prefix.as_str());
                behind.extend_from_slice(v);
                push(kind, &behind)
            });
            value_ranges(value, &prefix, ranges);
        }
    }
}

/// The `(ascending, descending)` sort values of one value: what `_sort` orders by.
fn sort_values(value: &IndexValue) -> Option<(String, String)> {
    let same = |text: &str| {
        let mut end = text.len().min(SORT_VALUE_MAX);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Some((text[..end].to_string(), text[..end].to_string()))
    };
    match value {
        IndexValue::Token { code, text, .. } => same(code.as_ref().or(text.as_ref())?),
        IndexValue::Text(text) => same(&fold(text)),
        IndexValue::Reference {
            reference,
            identifier,
        } => same(
            reference
                .as_deref()
                .or(identifier.as_ref().map(|(_, v)| v.as_str()))?,
        ),
        IndexValue::Uri(uri) => same(uri),
        IndexValue::Date(period) => Some((encode_i64(period.start), encode_i64(period.end))),
        IndexValue::Number { value, .. } => same(&encode_f64(*value)),
        IndexValue::Quantity { low, high, .. } => Some((encode_f64(*low), encode_f64(*high))),
        IndexValue::IdentifierType { .. }
        | IndexValue::Composite(_)
        | IndexValue::Position { .. } => None,
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
        fn folding_ascii_takes_no_shortcut_in_meaning(text in "[ -~]{0,24}") {
            prop_assert_eq!(fold(&text), fold_decomposed(&text));
        }

        #[test]
        fn encodings_keep_the_order_of_numbers(a in any::<i64>(), b in any::<i64>(),
                                               x in -1e300f64..1e300, y in -1e300f64..1e300) {
            prop_assert_eq!(a.cmp(&b), encode_i64(a).cmp(&encode_i64(b)));
            prop_assert_eq!(x.partial_cmp(&y).unwrap(), encode_f64(x).cmp(&encode_f64(y)));
            prop_assert_eq!(decode_f64(&encode_f64(x)), Some(x));
        }

        #[test]
        fn hex_is_sixteen_digits_as_format_writes_them(value in any::<u64>()) {
            prop_assert_eq!(hex16(value), format!("{value:016x}"));
        }

        #[test]
        fn a_term_of_parts_is_the_term_of_their_concatenation(
            param in "[a-z-]{1,12}", parts in proptest::collection::vec("\\PC{0,6}", 0..4)
        ) {
            let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
            prop_assert_eq!(term_of(&param, kind::CODE, &parts), term(&param, kind::CODE, &parts.concat()));
            prop_assert_eq!(term(&param, 'é', "x"), format!("{param}\u{1f}éx"));
        }
    }
}
