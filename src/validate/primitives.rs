//! The values of R4's primitive types, each checked against the definition of its type: the
//! regular expression of the type's StructureDefinition, read as XML Schema reads it (`\s` is
//! a space, tab, carriage return or line feed, nothing else), and what the expression cannot
//! say: the calendar (`date`, `dateTime`, `instant`, `time`, by [`check_temporal`]), the 32-bit
//! range of `integer`, `unsignedInt` and `positiveInt`, the 1 MB of a `string`, and the range
//! of a `decimal` written with an exponent (an XML Schema double's).
//!
//! The structure walk calls [`check`] on every value of a primitive type it meets: in
//! resources, contained resources, Bundle entries, extensions, and a primitive's own `_name`.
//!
//! Invariant: an error is what R4 says SHALL (the expression, the calendar, the ranges); what
//! it says SHOULD (a string with some content, without control characters) is a warning. A
//! value of the wrong JSON type (the model has refused those) or a `null` that aligns a
//! primitive array with its extensions is not looked at.

use crate::fhir::Severity;
use crate::fhir::datetime::{Temporal, check_temporal};
use crate::fhir::resource::is_valid_id;
use serde_json::Value;

/// Strings may hold at most this many characters (R4: "SHALL NOT exceed 1MB").
pub const MAX_STRING_CHARS: usize = 1024 * 1024;

/// What is wrong with a value: how serious, and why (for a client to read).
pub type Finding = (Severity, String);

/// Checks `value` as a value of the R4 primitive type `type_code` (`date`, `code`, ...); None
/// when it conforms, or when `type_code` is no primitive type.
pub fn check(type_code: &str, value: &Value) -> Option<Finding> {
    match value {
        Value::String(text) => check_text(type_code, text),
        Value::Number(number) => check_number(type_code, number.as_str()),
        _ => None,
    }
}

fn check_text(type_code: &str, text: &str) -> Option<Finding> {
    let temporal = match type_code {
        "date" => Some(Temporal::Date),
        "dateTime" => Some(Temporal::DateTime),
        "instant" => Some(Temporal::Instant),
        "time" => Some(Temporal::Time),
        _ => None,
    };
    if let Some(kind) = temporal {
        return check_temporal(kind, text)
            .err()
            .map(|why| error(type_code, text, why));
    }
    let (valid, why) = match type_code {
        "string" | "markdown" => return check_string(type_code, text),
        "code" => (
            is_code(text) && !too_long(text),
            "a code has no whitespace at its ends and none but single spaces inside",
        ),
        "id" => (
            is_valid_id(text),
            "an id is 1 to 64 of A-Z, a-z, 0-9, '-' and '.', and not '.' or '..'",
        ),
        "uri" | "url" | "canonical" => (
            !text.bytes().any(is_xsd_space),
            "it may not hold spaces, tabs or line breaks",
        ),
        "oid" => (is_oid(text), "an oid is urn:oid: and its arcs (1.2.840...)"),
        "uuid" => (
            is_uuid(text),
            "a uuid is urn:uuid: and 8-4-4-4-12 lower-case hexadecimal digits",
        ),
        "base64Binary" => (
            is_base64(text),
            "base64 is groups of four of A-Z, a-z, 0-9, '+', '/' and '='",
        ),
        _ => return None,
    };
    (!valid).then(|| error(type_code, text, why))
}

/// `string` and `markdown`: at most [`MAX_STRING_CHARS`] characters (an error), and some
/// content without control characters (warnings).
fn check_string(type_code: &str, text: &str) -> Option<Finding> {
    // (An empty string never gets here: empty elements are dropped before validation.)
    if text.is_empty() {
        return Some(error(type_code, text, "a string may not be empty"));
    }
    if too_long(text) {
        return Some(error(
            type_code,
            text,
            "a string may hold at most 1,048,576 characters",
        ));
    }
    if text.chars().all(char::is_whitespace) {
        return Some((
            Severity::Warning,
            format!("a {type_code} should have some content, not only whitespace"),
        ));
    }
    if text
        .chars()
        .any(|c| c < ' ' && !matches!(c, '\t' | '\r' | '\n'))
    {
        return Some((
            Severity::Warning,
            format!("a {type_code} should not hold control characters (but tabs and line breaks)"),
        ));
    }
    None
}

fn too_long(text: &str) -> bool {
    text.len() > MAX_STRING_CHARS && text.chars().count() > MAX_STRING_CHARS
}

/// `integer`, `unsignedInt`, `positiveInt` (their expressions and 32-bit ranges) and `decimal`
/// (the expression is JSON's own number, so only the range of an exponent form is left).
fn check_number(type_code: &str, text: &str) -> Option<Finding> {
    let (min, name) = match type_code {
        "integer" => (i32::MIN as i64, "an integer"),
        "unsignedInt" => (0, "an unsignedInt"),
        "positiveInt" => (1, "a positiveInt"),
        "decimal" => {
            let exponent = text.contains(['e', 'E']);
            let finite = text.parse::<f64>().is_ok_and(f64::is_finite);
            return (exponent && !finite).then(|| {
                error(
                    type_code,
                    text,
                    "a decimal with an exponent must be within the range of a double",
                )
            });
        }
        _ => return None,
    };
    let digits = text.strip_prefix('-').unwrap_or(text);
    let written = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && (min < 0 || !text.starts_with('-'));
    let in_range = text
        .parse::<i64>()
        .is_ok_and(|n| (min..=i32::MAX as i64).contains(&n));
    (!(written && in_range)).then(|| {
        error(
            type_code,
            text,
            &format!("{name} is a whole number from {min} to 2147483647, without a fraction"),
        )
    })
}

fn error(type_code: &str, text: &str, why: &str) -> Finding {
    let shown: String = text.chars().take(64).collect();
    let cut = if shown.len() < text.len() { "..." } else { "" };
    (
        Severity::Error,
        format!("'{shown}{cut}' is not a valid {type_code}: {why}"),
    )
}

/// XML Schema's `\s`: what R4's expressions mean by whitespace.
fn is_xsd_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

/// `[^\s]+(\s[^\s]+)*`: no whitespace at either end, and never two in a row.
fn is_code(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && !is_xsd_space(bytes[0])
        && !is_xsd_space(bytes[bytes.len() - 1])
        && !bytes
            .windows(2)
            .any(|pair| is_xsd_space(pair[0]) && is_xsd_space(pair[1]))
}

/// `urn:oid:[0-2](\.(0|[1-9][0-9]*))+`.
fn is_oid(text: &str) -> bool {
    let Some(arcs) = text.strip_prefix("urn:oid:") else {
        return false;
    };
    let mut arcs = arcs.split('.');
    let first = arcs.next().is_some_and(|a| matches!(a, "0" | "1" | "2"));
    let mut rest = arcs.peekable();
    first
        && rest.peek().is_some()
        && rest.all(|arc| {
            !arc.is_empty()
                && arc.bytes().all(|b| b.is_ascii_digit())
                && (arc == "0" || !arc.starts_with('0'))
        })
}

/// `urn:uuid:` and `[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`.
fn is_uuid(text: &str) -> bool {
    let Some(uuid) = text.strip_prefix("urn:uuid:") else {
        return false;
    };
    let groups: Vec<&str> = uuid.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(group, width)| {
            group.len() == width
                && group
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// `(\s*([0-9a-zA-Z\+/=]){4}\s*)+`: groups of four characters of the alphabet, whitespace only
/// between groups.
fn is_base64(text: &str) -> bool {
    let mut count = 0usize;
    for byte in text.bytes() {
        match byte {
            b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'+' | b'/' | b'=' => count += 1,
            space if is_xsd_space(space) && count.is_multiple_of(4) => {}
            _ => return false,
        }
    }
    count > 0 && count.is_multiple_of(4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use regex::Regex;
    use serde_json::json;
    use std::sync::LazyLock;

    /// R4's expression of each primitive type, as its StructureDefinition in the core package
    /// (`hl7.fhir.r4.core-4.0.1.tgz`) gives it.
    const EXPRESSIONS: &[(&str, &str)] = &[
        (
            "date",
            r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?",
        ),
        (
            "dateTime",
            r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?",
        ),
        (
            "instant",
            r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))",
        ),
        (
            "time",
            r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?",
        ),
        ("id", r"[A-Za-z0-9\-\.]{1,64}"),
        ("oid", r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+"),
        (
            "uuid",
            r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        ),
        ("uri", r"\S*"),
        ("url", r"\S*"),
        ("canonical", r"\S*"),
        ("code", r"[^\s]+(\s[^\s]+)*"),
        ("string", r"[ \r\n\t\S]+"),
        ("markdown", r"[ \r\n\t\S]+"),
        ("positiveInt", r"[1-9][0-9]*"),
        ("unsignedInt", r"[0]|([1-9][0-9]*)"),
        ("integer", r"-?([0]|([1-9][0-9]*))"),
        ("decimal", r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?"),
        ("base64Binary", r"(\s*([0-9a-zA-Z\+/=]){4}\s*)+"),
    ];

    /// An expression of [`EXPRESSIONS`] as XML Schema reads it, for the `regex` crate: whole
    /// values only, and `\s` / `\S` of XML Schema (Unicode's are wider).
    fn xsd(expression: &str) -> String {
        let expression = expression
            .replace(r"[^\s]", r"[^ \t\n\r]")
            .replace(r"\S", r"[^ \t\n\r]")
            .replace(r"\s", r"[ \t\n\r]");
        format!("^(?:{expression})$")
    }

    static ORACLES: LazyLock<Vec<(&str, Regex)>> = LazyLock::new(|| {
        EXPRESSIONS
            .iter()
            .map(|(name, expression)| (*name, Regex::new(&xsd(expression)).unwrap()))
            .collect()
    });

    fn oracle(type_code: &str) -> &'static Regex {
        &ORACLES
            .iter()
            .find(|(name, _)| *name == type_code)
            .unwrap()
            .1
    }

    /// The calendar, independently of [`crate::fhir::datetime`]: the days of a month of the
    /// Gregorian calendar.
    fn days_in_month(year: u32, month: u32) -> u32 {
        let leap =
            (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
        match month {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }

    /// The verdict R4 gives `text` as a `type_code`: its expression, then the calendar (a
    /// date's day in its month) and the ranges its type has beyond the expression.
    fn expected(type_code: &str, text: &str) -> bool {
        if !oracle(type_code).is_match(text) {
            return false;
        }
        match type_code {
            "date" | "dateTime" | "instant" if text.len() >= 10 => {
                let year: u32 = text[0..4].parse().unwrap();
                let month: u32 = text[5..7].parse().unwrap();
                let day: u32 = text[8..10].parse().unwrap();
                day <= days_in_month(year, month)
            }
            "integer" => text.parse::<i32>().is_ok(),
            "unsignedInt" | "positiveInt" => text.parse::<i32>().is_ok(),
            "decimal" => !text.contains(['e', 'E']) || text.parse::<f64>().unwrap().is_finite(),
            "string" | "markdown" | "code" => text.chars().count() <= MAX_STRING_CHARS,
            // fhirlake refuses the dot segments, which no URL can carry as an id.
            "id" => text != "." && text != "..",
            _ => true,
        }
    }

    /// The verdict of [`check`] on `text` as a value of `type_code` (a JSON number for the
    /// numeric types): true when there is no error.
    fn verdict(type_code: &str, text: &str) -> bool {
        let value = match type_code {
            "integer" | "unsignedInt" | "positiveInt" | "decimal" => {
                // Only what JSON can carry as a number reaches the check as one.
                match serde_json::from_str::<Value>(text) {
                    Ok(number @ Value::Number(_)) => number,
                    _ => return false,
                }
            }
            _ => Value::String(text.to_string()),
        };
        !matches!(check(type_code, &value), Some((Severity::Error, _)))
    }

    fn agrees(type_code: &str, text: &str) -> Result<(), TestCaseError> {
        prop_assert_eq!(
            verdict(type_code, text),
            expected(type_code, text),
            "{} {:?}",
            type_code,
            text
        );
        Ok(())
    }

    #[test]
    fn the_oracle_reads_the_expressions_as_xml_schema_does() {
        assert!(oracle("string").is_match("a\u{a0}b"));
        assert!(!oracle("code").is_match("a  b"));
        assert!(oracle("code").is_match("a\u{a0}\u{a0}b"));
        assert!(!oracle("uri").is_match("a b"));
        assert!(oracle("date").is_match("2020-02-30"));
        assert!(!expected("date", "2020-02-30"));
    }

    #[test]
    fn edge_values_of_each_type() {
        for (type_code, valid, invalid) in [
            (
                "date",
                &["2020", "2020-02", "2020-02-29", "2000-02-29", "0001"][..],
                &[
                    "2020-13",
                    "1999-02-30",
                    "2020-1-5",
                    "1900-02-29",
                    "0000",
                    "2020-02-01T10:00:00Z",
                ][..],
            ),
            (
                "dateTime",
                &[
                    "2020",
                    "2016-12-31T23:59:60Z",
                    "2020-01-01T00:00:00.5+14:00",
                    "2020-01-01T00:00:00-13:59",
                ],
                &[
                    "2020-05-05T10:00:00",
                    "2020-05-05T10:00Z",
                    "2020-05-05T24:00:00Z",
                    "2020-05-05T10:00:00+14:30",
                    "2020-05-05T10:00:00.Z",
                ],
            ),
            (
                "instant",
                &[
                    "2020-05-05T10:00:00Z",
                    "2020-05-05T10:00:00.123456789+01:00",
                ],
                &["2020-05-05", "2020-05-05T10:00:00", "2020-02-30T10:00:00Z"],
            ),
            (
                "time",
                &["00:00:00", "23:59:60", "12:30:00.25"],
                &["24:00:00", "10:00", "10:00:00Z"],
            ),
            (
                "code",
                &["a", "a b", "a\u{a0}\u{a0}b"],
                &[" a", "a ", "a  b", "a\tb\nc\n"],
            ),
            (
                "oid",
                &["urn:oid:1.2.840.10008", "urn:oid:2.0"],
                &["urn:oid:1", "urn:oid:3.1", "urn:oid:1.02", "1.2.3"],
            ),
            (
                "uuid",
                &["urn:uuid:c2a5e0d3-0b9b-4e6b-9f0a-6a3c2f1d4e5a"],
                &[
                    "urn:uuid:C2A5E0D3-0B9B-4E6B-9F0A-6A3C2F1D4E5A",
                    "c2a5e0d3-0b9b-4e6b-9f0a-6a3c2f1d4e5a",
                ],
            ),
            (
                "base64Binary",
                &["aGk=", "aGk= aGk=", " aGk=\n"],
                &["aGk", "aG k=", "aGk$", "   "],
            ),
            (
                "uri",
                &["http://a/b?c=d|e", "urn:x"],
                &["http://a b", "a\tb"],
            ),
        ] {
            for text in valid {
                assert!(verdict(type_code, text), "{type_code} {text:?} must pass");
                assert!(expected(type_code, text), "oracle {type_code} {text:?}");
            }
            for text in invalid {
                assert!(!verdict(type_code, text), "{type_code} {text:?} must fail");
                assert!(!expected(type_code, text), "oracle {type_code} {text:?}");
            }
        }
        for (type_code, valid, invalid) in [
            (
                "integer",
                &["0", "-0", "-2147483648", "2147483647"][..],
                &["2147483648", "-2147483649", "1.0", "1e3"][..],
            ),
            (
                "unsignedInt",
                &["0", "2147483647"],
                &["-1", "-0", "2147483648"],
            ),
            (
                "positiveInt",
                &["1", "2147483647"],
                &["0", "-1", "4294967295"],
            ),
            (
                "decimal",
                &[
                    "1.50",
                    "-0.0",
                    "1E-22",
                    "-1.000000000000000000E+245",
                    "1e-400",
                ],
                &["1e400", "-1E309"],
            ),
        ] {
            for text in valid {
                assert!(verdict(type_code, text), "{type_code} {text} must pass");
            }
            for text in invalid {
                assert!(!verdict(type_code, text), "{type_code} {text} must fail");
            }
        }
    }

    #[test]
    fn strings_are_long_at_most_a_megabyte_and_should_have_content() {
        let at_most = "é".repeat(MAX_STRING_CHARS);
        assert_eq!(check("string", &json!(at_most)), None);
        let longer = format!("{at_most}x");
        assert!(matches!(
            check("markdown", &json!(longer)),
            Some((Severity::Error, _))
        ));
        for text in ["  ", "\t\n", "a\u{1}b"] {
            assert!(
                matches!(check("string", &json!(text)), Some((Severity::Warning, _))),
                "{text:?}"
            );
        }
        assert_eq!(check("string", &json!("Ada\tLux\r\n")), None);
        // Values of another JSON type, and array placeholders, are not looked at here.
        assert_eq!(check("date", &Value::Null), None);
        assert_eq!(check("integer", &json!("3")), None);
        assert_eq!(check("Quantity", &json!("3")), None);
    }

    /// Text made mostly of the characters a type's values are made of, so that near misses
    /// (a digit too many, a wrong separator, a day past the month's end) are frequent.
    fn near(alphabet: &'static str, max: usize) -> impl Strategy<Value = String> {
        proptest::string::string_regex(&format!("[{alphabet}]{{0,{max}}}")).unwrap()
    }

    /// Values the expression itself generates: valid syntax, and for dates often a day the
    /// month does not have.
    fn from_expression(type_code: &'static str) -> impl Strategy<Value = String> {
        let expression = xsd(EXPRESSIONS.iter().find(|(n, _)| *n == type_code).unwrap().1);
        let inner = expression
            .trim_start_matches('^')
            .trim_end_matches('$')
            .to_string();
        proptest::string::string_regex(&inner).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn dates_and_times_get_the_verdict_of_r4(
            valid in prop_oneof![
                from_expression("date").prop_map(|t| ("date", t)),
                from_expression("dateTime").prop_map(|t| ("dateTime", t)),
                from_expression("instant").prop_map(|t| ("instant", t)),
                from_expression("time").prop_map(|t| ("time", t)),
            ],
            type_code in prop_oneof![Just("date"), Just("dateTime"), Just("instant"), Just("time")],
            text in near("0-9T:.Z+ -", 30),
        ) {
            agrees(valid.0, &valid.1)?;
            agrees(type_code, &text)?;
            // A value of one type is checked as another too.
            agrees(type_code, &valid.1)?;
        }

        #[test]
        fn the_other_types_get_the_verdict_of_r4(
            generated in prop_oneof![
                from_expression("oid").prop_map(|t| ("oid", t)),
                from_expression("uuid").prop_map(|t| ("uuid", t)),
                from_expression("code").prop_map(|t| ("code", t)),
                from_expression("id").prop_map(|t| ("id", t)),
                from_expression("base64Binary").prop_map(|t| ("base64Binary", t)),
                from_expression("uri").prop_map(|t| ("uri", t)),
            ],
            type_code in prop_oneof![
                Just("oid"), Just("uuid"), Just("code"), Just("id"), Just("base64Binary"),
                Just("uri"), Just("url"), Just("canonical"), Just("string"), Just("markdown"),
            ],
            text in prop_oneof![
                near("urnoid:0-9.", 24),
                near("urnid:0-9a-fA-F-", 48),
                near("a-zA-Z0-9+/= \t\n\r\u{a0}_", 24),
                any::<String>(),
            ],
        ) {
            agrees(generated.0, &generated.1)?;
            agrees(type_code, &text)?;
        }

        #[test]
        fn numbers_get_the_verdict_of_r4(
            type_code in prop_oneof![
                Just("integer"), Just("unsignedInt"), Just("positiveInt"), Just("decimal"),
            ],
            text in prop_oneof![
                near("0-9-", 12),
                near("0-9.eE+-", 14),
                any::<i64>().prop_map(|n| n.to_string()),
                (any::<i32>(), 0u32..1000, -400i32..400)
                    .prop_map(|(whole, fraction, exponent)| format!("{whole}.{fraction}e{exponent}")),
            ],
        ) {
            // What is no JSON number at all is no number of R4 either: both refuse it.
            agrees(type_code, &text)?;
        }
    }
}
