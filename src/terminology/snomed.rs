//! SNOMED CT identifiers checked by their structure, without a release.
//!
//! An SCTID is 6 to 18 digits without a leading zero: an item identifier, for the long format
//! a 7-digit namespace, a 2-digit partition identifier, and a Verhoeff check digit (SNOMED CT
//! Technical Implementation Guide, "SCTID data type"). The partition says what the id
//! identifies: `00` (short format) and `10` (long format, with a namespace) are concepts;
//! `01`/`11` descriptions and `02`/`12` relationships are not codes. An id that fails any of
//! these rules is certainly not a SNOMED CT concept, release or not.
//!
//! The check digit is computed by the `verhoeff` crate. An expression in compositional grammar
//! (`71341001:272741003=7771000`, allowed wherever a SNOMED CT code goes) is not evaluated: it
//! is left unchecked.

use verhoeff::Verhoeff;

/// The URL of SNOMED CT.
pub const SYSTEM: &str = "http://snomed.info/sct";

/// Why a string is not a SNOMED CT concept id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SctIdError {
    #[error("a SNOMED CT id has 6 to 18 digits, not {0}")]
    Length(usize),
    #[error("a SNOMED CT id has digits only")]
    NotDigits,
    #[error("a SNOMED CT id has no leading zero")]
    LeadingZero,
    #[error("the check digit is wrong (Verhoeff)")]
    CheckDigit,
    #[error(
        "the partition identifier {0} is not a concept's (00 or 10): it is {kind}",
        kind = partition_kind(.0)
    )]
    Partition(String),
    #[error("a long-format id (partition 10) has an item identifier and a 7-digit namespace")]
    Namespace,
}

fn partition_kind(partition: &str) -> &'static str {
    match partition.as_bytes().get(1) {
        Some(b'1') => "a description's",
        Some(b'2') => "a relationship's",
        _ => "not one SNOMED CT defines",
    }
}

/// Checks that `id` can be a SNOMED CT concept id: its length, digits, check digit and
/// partition. Ok does not mean the concept exists: only a release says that.
pub fn check_concept_id(id: &str) -> Result<(), SctIdError> {
    if !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SctIdError::NotDigits);
    }
    if !(6..=18).contains(&id.len()) {
        return Err(SctIdError::Length(id.len()));
    }
    if id.starts_with('0') {
        return Err(SctIdError::LeadingZero);
    }
    if !id.validate_verhoeff_check_digit() {
        return Err(SctIdError::CheckDigit);
    }
    let partition = &id[id.len() - 3..id.len() - 1];
    match partition {
        "00" => Ok(()),
        // item (at least one digit) + namespace (7) + partition (2) + check digit (1)
        "10" if id.len() >= 11 => Ok(()),
        "10" => Err(SctIdError::Namespace),
        _ => Err(SctIdError::Partition(partition.into())),
    }
}

/// Why `code` cannot be checked here when it is a SNOMED CT expression rather than a concept
/// id: FHIR allows an expression in compositional grammar (`71341001:272741003=7771000`)
/// wherever a SNOMED CT code goes, and expressions are not evaluated here. None for anything
/// else (a concept id, or text that is neither).
pub fn unevaluated_expression(code: &str) -> Option<String> {
    let code = code.trim();
    let starts_well = code
        .trim_start_matches(['=', '<'])
        .trim_start()
        .starts_with(|c: char| c.is_ascii_digit());
    (starts_well && code.contains([':', '+', '=', '|', '{'])).then(|| {
        format!("{code} is a SNOMED CT expression, and expressions are not evaluated here")
    })
}

/// A fully specified name without its semantic tag: `Asthma` for `Asthma (disorder)`; None
/// when the name has no tag.
pub fn without_semantic_tag(name: &str) -> Option<&str> {
    let open = name.strip_suffix(')')?.rfind(" (")?;
    Some(&name[..open])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn real_concept_ids_pass() {
        for id in [
            "138875005",          // SNOMED CT concept (the root)
            "404684003",          // Clinical finding
            "44054006",           // Diabetes mellitus type 2
            "116680003",          // Is a
            "1003755004",         // Allergy to Hevea brasiliensis latex protein
            "999000011000000103", // a UK extension concept (long format)
        ] {
            assert_eq!(check_concept_id(id), Ok(()), "{id}");
        }
    }

    #[test]
    fn each_rule_is_reported() {
        assert_eq!(check_concept_id("12345"), Err(SctIdError::Length(5)));
        assert_eq!(check_concept_id("1388750x5"), Err(SctIdError::NotDigits));
        assert_eq!(check_concept_id(""), Err(SctIdError::Length(0)));
        assert_eq!(check_concept_id("0138875005"), Err(SctIdError::LeadingZero));
        assert_eq!(check_concept_id("138875006"), Err(SctIdError::CheckDigit));
        // A description id: partition 01.
        let description = with_check_digit("75482801");
        assert_eq!(
            check_concept_id(&description),
            Err(SctIdError::Partition("01".into()))
        );
        let error = check_concept_id(&description).unwrap_err().to_string();
        assert!(error.contains("description"), "{error}");
        // Partition 10 with no room for a namespace.
        let short = with_check_digit("123410");
        assert_eq!(check_concept_id(&short), Err(SctIdError::Namespace));
    }

    #[test]
    fn expressions_are_told_from_ids_and_text() {
        for expression in [
            "71341001:272741003=7771000",
            "249943000:363698007=72098002,260868000=6934004",
            "421720008 |Spray dose form| + 7946007 |Drug suspension|",
            "=== 46866001 : { 363698007 = 182281004 }",
        ] {
            assert!(unevaluated_expression(expression).is_some(), "{expression}");
        }
        for other in ["138875005", "look up value", "T-15460", "a:b"] {
            assert_eq!(unevaluated_expression(other), None, "{other}");
        }
    }

    #[test]
    fn the_semantic_tag_comes_off() {
        assert_eq!(without_semantic_tag("Asthma (disorder)"), Some("Asthma"));
        assert_eq!(
            without_semantic_tag("Ferrous (59-Fe) sulfate (substance)"),
            Some("Ferrous (59-Fe) sulfate")
        );
        assert_eq!(without_semantic_tag("Asthma"), None);
    }

    fn with_check_digit(body: &str) -> String {
        format!("{body}{}", body.calculate_verhoeff_check_digit())
    }

    /// Valid concept ids of both formats: an item id, a namespace for the long format, the
    /// partition and the check digit.
    fn concept_id() -> impl Strategy<Value = String> {
        ("[1-9][0-9]{2,13}", prop::option::of("[0-9]{7}"))
            .prop_map(|(item, namespace)| match namespace {
                Some(namespace) if item.len() + 7 + 3 <= 18 => {
                    with_check_digit(&format!("{item}{namespace}10"))
                }
                _ => with_check_digit(&format!("{item}00")),
            })
            .prop_filter("6 to 18 digits", |id| (6..=18).contains(&id.len()))
    }

    proptest! {
        #[test]
        fn generated_concept_ids_pass(id in concept_id()) {
            prop_assert_eq!(check_concept_id(&id), Ok(()));
        }

        /// Verhoeff catches every single-digit error.
        #[test]
        fn any_single_digit_change_is_caught(
            id in concept_id(), position in any::<prop::sample::Index>(), delta in 1u8..10
        ) {
            let mut digits = id.into_bytes();
            let at = position.index(digits.len());
            digits[at] = b'0' + (digits[at] - b'0' + delta) % 10;
            let changed = String::from_utf8(digits).unwrap();
            prop_assert!(!changed.validate_verhoeff_check_digit());
            prop_assert!(check_concept_id(&changed).is_err());
        }

        /// Verhoeff catches every transposition of two different adjacent digits.
        #[test]
        fn any_adjacent_transposition_is_caught(
            id in concept_id(), position in any::<prop::sample::Index>()
        ) {
            let mut digits = id.into_bytes();
            let at = position.index(digits.len() - 1);
            prop_assume!(digits[at] != digits[at + 1]);
            digits.swap(at, at + 1);
            let changed = String::from_utf8(digits).unwrap();
            prop_assert!(!changed.validate_verhoeff_check_digit());
            prop_assert!(check_concept_id(&changed).is_err());
        }

        /// Nothing crashes the check.
        #[test]
        fn any_text_is_answered(text in ".{0,24}") {
            let _ = check_concept_id(&text);
        }
    }
}
