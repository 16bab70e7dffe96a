//! How deeply a JSON text nests, measured on its bytes before it is parsed, so that a body
//! nested too deeply is refused with a message that names the limit, whatever the parser or the
//! code after it would have done with it.
//!
//! serde_json refuses 128 levels or more by itself ([`PARSER_LIMIT`]); everything that walks a
//! parsed resource (the model's check, validation, FHIRPath, search extraction, `_summary`)
//! recurses along the nesting, and is safe up to that limit (the deepest of them, fhirbolt's
//! deserializer, runs on a stack sized for the depth: `fhirlake_model::check_resource`).

use super::outcome::{FhirError, IssueCode};

/// The deepest nesting serde_json parses (it refuses one more level).
pub const PARSER_LIMIT: usize = 127;

/// The deepest nesting of arrays and objects in `json` (`{}` is 1, `{"a":[1]}` is 2), counted
/// until it passes `max`; brackets inside strings do not count. Text that is not JSON gets some
/// number, and the parser refuses it afterwards.
fn depth_up_to(json: &[u8], max: usize) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in json {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > deepest {
                    deepest = depth;
                    if deepest > max {
                        return deepest;
                    }
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// 400 when arrays and objects nest more than `max` levels deep in the JSON text `json`.
pub fn check_depth(json: &[u8], max: usize) -> Result<(), FhirError> {
    if depth_up_to(json, max) > max {
        return Err(FhirError::bad_request(
            IssueCode::TooLong,
            format!(
                "the JSON body nests arrays and objects more than {max} levels deep \
                 (the server's limit, --max-json-depth)"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn nested(levels: usize) -> String {
        let mut text = "1".to_string();
        for level in 0..levels {
            text = if level % 2 == 0 {
                format!("[{text}]")
            } else {
                format!("{{\"a\":{text}}}")
            };
        }
        text
    }

    #[test]
    fn depth_counts_arrays_and_objects_outside_strings() {
        assert_eq!(depth_up_to(b"1", 10), 0);
        assert_eq!(depth_up_to(b"{}", 10), 1);
        assert_eq!(depth_up_to(br#"{"a":[1],"b":{"c":[]}}"#, 10), 3);
        assert_eq!(depth_up_to(br#"{"a":"[[[{{{"}"#, 10), 1);
        assert_eq!(depth_up_to(br#"{"a":"\"[[[\\"}"#, 10), 1);
        assert_eq!(depth_up_to(br#"["\\",[["#, 10), 3);
        // Counting stops once past the limit.
        assert_eq!(depth_up_to(&[b'['; 10_000], 5), 6);
    }

    #[test]
    fn the_limit_is_inclusive_and_its_error_names_it() {
        check_depth(nested(100).as_bytes(), 100).unwrap();
        let error = check_depth(nested(101).as_bytes(), 100).unwrap_err();
        assert_eq!(error.status, 400);
        assert!(error.diagnostics.contains("100 levels"), "{error}");
        check_depth(&[b'{'; 10_000], 100).unwrap_err();
    }

    #[test]
    fn the_parser_limit_is_serde_jsons() {
        serde_json::from_str::<Value>(&nested(PARSER_LIMIT)).unwrap();
        let error = serde_json::from_str::<Value>(&nested(PARSER_LIMIT + 1)).unwrap_err();
        assert!(error.to_string().contains("recursion limit"), "{error}");
    }

    proptest! {
        /// On any JSON value, the scan agrees with the depth of the parsed value.
        #[test]
        fn the_scan_agrees_with_the_parsed_depth(value in json(), max in 0usize..8) {
            let text = value.to_string();
            let depth = fhirlake_model::depth(&value);
            prop_assert_eq!(depth_up_to(text.as_bytes(), usize::MAX), depth);
            prop_assert_eq!(check_depth(text.as_bytes(), max).is_ok(), depth <= max);
        }
    }

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            // Strings full of what the scan must skip: brackets, quotes, backslashes.
            r#"[\[\]{}"\\a-z ]{0,8}"#.prop_map(Value::String),
        ];
        leaf.prop_recursive(8, 64, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((r#"[\[{"\\a-z]{0,4}"#, inner), 0..4)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }
}
