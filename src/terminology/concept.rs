//! A concept of a code system: its code, display, designations, properties and parents.
//!
//! The same shape is read from the shipped content (`fhir-profiles/terminology/hl7.json.gz`,
//! whose properties are FHIR's own `{"code": ..., "valueCode": ...}` objects) and stored in a
//! loaded release's records, so both sources answer with one type.

use serde::{Deserialize, Serialize};

/// A concept as a code system defines it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Concept {
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub designations: Vec<Designation>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<Property>,
    /// The codes of the concepts this one is-a (its direct parents), in the same system.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<String>,
}

/// Another name of a concept: in another language, or of another use (a SNOMED CT synonym).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Designation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// The code of the designation's use (`900000000000013009`, synonym), in the system the
    /// use codes of this code system come from (SNOMED CT's, or FHIR's `designation-usage`).
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_code: Option<String>,
    pub value: String,
}

/// A property of a concept (`status`, `notSelectable`, ICD-10-CM's `billable`, LOINC's
/// `SCALE_TYP`...). Parents are not properties here: they are [`Concept::parents`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Property {
    pub code: String,
    #[serde(flatten)]
    pub value: PropertyValue,
}

/// A property's value, in FHIR's JSON names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PropertyValue {
    #[serde(rename = "valueCode")]
    Code(String),
    #[serde(rename = "valueString")]
    String(String),
    #[serde(rename = "valueBoolean")]
    Boolean(bool),
}

impl PropertyValue {
    /// The value as a filter's `value` is written (`true`, `ORD`).
    pub fn as_text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            PropertyValue::Code(text) | PropertyValue::String(text) => text.into(),
            PropertyValue::Boolean(value) => value.to_string().into(),
        }
    }
}

impl Concept {
    /// A concept with a code and a display only.
    pub fn new(code: impl Into<String>, display: Option<String>) -> Concept {
        Concept {
            code: code.into(),
            display,
            designations: Vec::new(),
            properties: Vec::new(),
            parents: Vec::new(),
        }
    }

    /// The value of the property `code`, if the concept has it.
    pub fn property(&self, code: &str) -> Option<&PropertyValue> {
        self.properties
            .iter()
            .find(|p| p.code == code)
            .map(|p| &p.value)
    }

    /// Whether the concept is no longer for use: `inactive` is true, or its `status` is
    /// `retired` (FHIR's concept status) or `inactive`.
    pub fn is_inactive(&self) -> bool {
        match self.property("inactive") {
            Some(PropertyValue::Boolean(true)) => true,
            _ => matches!(
                self.property("status")
                    .map(PropertyValue::as_text)
                    .as_deref(),
                Some("retired" | "inactive")
            ),
        }
    }

    /// Every name of the concept: the display, then the designations.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.display
            .as_deref()
            .into_iter()
            .chain(self.designations.iter().map(|d| d.value.as_str()))
    }
}

/// Whether `given` names the same thing as `name`: equal ignoring case and runs of white
/// space, as FHIR's validator compares displays.
pub fn same_display(given: &str, name: &str) -> bool {
    let mut a = given.split_whitespace();
    let mut b = name.split_whitespace();
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if x.to_lowercase() == y.to_lowercase() => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_match_ignoring_case_and_spaces() {
        assert!(same_display("Body  height", "body height"));
        assert!(same_display(" Ärger ", "ärger"));
        assert!(!same_display("Body height", "Body weight"));
        assert!(!same_display("Body", "Body height"));
    }

    #[test]
    fn properties_read_and_write_as_fhir_does() {
        let json = r#"{"code":"A00","display":"Cholera","properties":[{"code":"billable","valueBoolean":false},{"code":"status","valueCode":"retired"}],"parents":["A"]}"#;
        let concept: Concept = serde_json::from_str(json).unwrap();
        assert_eq!(
            concept.property("billable"),
            Some(&PropertyValue::Boolean(false))
        );
        assert!(concept.is_inactive());
        assert_eq!(serde_json::to_string(&concept).unwrap(), json);
        assert_eq!(concept.names().collect::<Vec<_>>(), ["Cholera"]);
    }
}
