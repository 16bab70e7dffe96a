//! Where the members of a resource's JSON are defined: a walk over the R4 base
//! StructureDefinitions ([`Definitions::r4`]) by JSON member names.
//!
//! A FHIRPath Patch names elements (`add` a `birthDate` to `Patient`), and FHIR JSON needs to
//! know what they are before it can write them: an array or a single value, a choice element
//! (`value` is written `valueQuantity`), a primitive (whose id and extensions go in `_name`),
//! a backbone element whose children are defined in place, or a data type or resource defined
//! elsewhere.

use crate::validate::definitions::{Definition, Definitions, ElementDef};
use serde_json::Value;

/// Where the children of one JSON object are defined: a definition and the key of the element
/// whose children they are (`Patient`, `Patient.contact`, `HumanName`).
#[derive(Clone)]
pub struct Place {
    definition: &'static Definition,
    key: String,
    /// Only `id` and `extension`: the children of a primitive, which every element has.
    primitive: bool,
}

/// An element as a JSON member names it.
pub struct Child {
    pub element: &'static ElementDef,
    /// The type of the value: the one the member's suffix names for a choice element
    /// (`valueQuantity`: `Quantity`), else the element's type when it has exactly one.
    pub type_code: Option<String>,
    /// Where the element is defined.
    place: Place,
}

impl Place {
    /// The elements of a resource of type `resource_type`.
    pub fn of_resource(resource_type: &str) -> Option<Place> {
        Place::of_type(resource_type)
    }

    /// The elements of a complex data type or a resource.
    fn of_type(type_code: &str) -> Option<Place> {
        let definition = Definitions::r4().get(type_code)?;
        Some(Place {
            key: definition.root().key().to_string(),
            definition,
            primitive: false,
        })
    }

    /// The children of a primitive value (in its `_name` member): `id` and `extension`, which
    /// every element has; Extension's own are the definitions used.
    pub fn of_primitive() -> Place {
        let mut place = Place::of_type("Extension").expect("R4 defines Extension");
        place.primitive = true;
        place
    }

    /// The elements defined here.
    fn elements(&self) -> impl Iterator<Item = &'static ElementDef> + '_ {
        self.definition
            .children(&self.key)
            .filter(|element| !self.primitive || matches!(element.name(), "id" | "extension"))
    }

    /// The element a JSON member `member` stands for: `valueQuantity` is `value[x]` with the
    /// type `Quantity`, `_birthDate` is `birthDate`.
    pub fn child(&self, member: &str) -> Option<Child> {
        let member = member.strip_prefix('_').unwrap_or(member);
        for element in self.elements() {
            let name = element.name();
            if name == member {
                return Some(self.child_of(element, single_type(element)));
            }
            if let Some(base) = name.strip_suffix("[x]")
                && let Some(suffix) = member.strip_prefix(base)
                && let Some(code) = element
                    .types
                    .iter()
                    .map(|t| t.code.as_str())
                    .find(|code| capitalised(code) == suffix)
            {
                return Some(self.child_of(element, Some(code.to_string())));
            }
        }
        None
    }

    /// The element a name stands for: a JSON member (`valueQuantity`, see [`Place::child`])
    /// or an element's name (`value` for `value[x]`, with no type chosen).
    pub fn named(&self, name: &str) -> Option<Child> {
        self.child(name).or_else(|| self.element(name))
    }

    /// The element called `name` in the definition (`value` finds `value[x]`), with no type
    /// chosen for a choice element.
    pub fn element(&self, name: &str) -> Option<Child> {
        self.elements()
            .find(|element| {
                element.name() == name || element.name().strip_suffix("[x]") == Some(name)
            })
            .map(|element| self.child_of(element, single_type(element)))
    }

    fn child_of(&self, element: &'static ElementDef, type_code: Option<String>) -> Child {
        Child {
            element,
            type_code,
            place: self.clone(),
        }
    }
}

impl Child {
    /// May the element have more than one value (a JSON array)?
    pub fn repeats(&self) -> bool {
        self.element.max() != Some(1)
    }

    /// Is it a choice element (`value[x]`)?
    pub fn is_choice(&self) -> bool {
        self.element.name().ends_with("[x]")
    }

    /// Its name without `[x]`.
    pub fn base_name(&self) -> &str {
        let name = self.element.name();
        name.strip_suffix("[x]").unwrap_or(name)
    }

    /// The JSON member of a value of type `type_code` in this element (`valueQuantity`).
    pub fn member_for(&self, type_code: &str) -> String {
        if self.is_choice() {
            format!("{}{}", self.base_name(), capitalised(type_code))
        } else {
            self.base_name().to_string()
        }
    }

    /// The type codes the element allows.
    pub fn types(&self) -> impl Iterator<Item = &str> {
        self.element.types.iter().map(|t| t.code.as_str())
    }

    /// Is a value of this element a primitive (a JSON string, number or boolean, with its id
    /// and extensions in the `_name` member)?
    pub fn is_primitive(&self) -> bool {
        self.type_code.as_deref().is_some_and(is_primitive)
    }

    /// Is a value of this element a resource (`contained`, `Bundle.entry.resource`)?
    pub fn holds_resources(&self) -> bool {
        matches!(
            self.type_code.as_deref(),
            Some("Resource" | "DomainResource")
        )
    }

    /// Where the children of a value of this element are defined: in place for a backbone
    /// element (or the element a `contentReference` names), in its data type's definition,
    /// or, for a resource, in the definition of `value`'s `resourceType`. None for a primitive,
    /// and for a choice element whose type is not chosen.
    pub fn place(&self, value: Option<&Value>) -> Option<Place> {
        let definition = self.place.definition;
        if let Some(reference) = &self.element.content_reference {
            let key = reference.rsplit('#').next().unwrap_or(reference);
            return Some(Place {
                definition,
                key: key.to_string(),
                primitive: false,
            });
        }
        if definition.has_children(self.element.key()) {
            return Some(Place {
                definition,
                key: self.element.key().to_string(),
                primitive: false,
            });
        }
        if self.holds_resources() {
            let resource_type = value?.get("resourceType")?.as_str()?;
            return Place::of_resource(resource_type);
        }
        match self.type_code.as_deref() {
            Some(code) if !is_primitive(code) => Place::of_type(code),
            _ => None,
        }
    }
}

/// The type of an element that has exactly one.
fn single_type(element: &ElementDef) -> Option<String> {
    match element.types.as_slice() {
        [only] => Some(only.code.clone()),
        _ => None,
    }
}

/// Is `code` a primitive type: a FHIR primitive (`date`, `xhtml`) or a FHIRPath system type
/// (`http://hl7.org/fhirpath/System.String`, the type of `id` and `Extension.url`)?
pub fn is_primitive(code: &str) -> bool {
    code.starts_with(|c: char| c.is_ascii_lowercase()) || code.contains("System.")
}

/// The JSON kind of a primitive type's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonKind {
    Bool,
    Number,
    String,
}

/// How values of the primitive type `code` are written in JSON.
pub fn json_kind(code: &str) -> JsonKind {
    match code {
        "boolean" => JsonKind::Bool,
        "integer" | "decimal" | "positiveInt" | "unsignedInt" => JsonKind::Number,
        _ => JsonKind::String,
    }
}

/// A type code as a choice element's suffix shows it: `dateTime` -> `DateTime`.
pub fn capitalised(code: &str) -> String {
    let mut chars = code.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn members_are_found_with_their_kind() {
        let patient = Place::of_resource("Patient").unwrap();
        let birth = patient.child("birthDate").unwrap();
        assert!(!birth.repeats() && birth.is_primitive());
        assert!(patient.child("_birthDate").unwrap().is_primitive());
        let name = patient.child("name").unwrap();
        assert!(name.repeats() && !name.is_primitive());
        let human_name = name.place(None).unwrap();
        assert!(human_name.child("given").unwrap().repeats());
        let deceased = patient.child("deceasedDateTime").unwrap();
        assert_eq!(deceased.type_code.as_deref(), Some("dateTime"));
        assert!(deceased.is_choice());
        assert_eq!(deceased.member_for("boolean"), "deceasedBoolean");
        assert!(patient.child("deceased").is_none());
        assert!(patient.element("deceased").unwrap().is_choice());
        assert!(patient.child("frobnicate").is_none());
        // A backbone element's children are defined in place.
        let contact = patient.child("contact").unwrap().place(None).unwrap();
        assert!(!contact.child("gender").unwrap().repeats());
        // A contained resource's by its own type.
        let contained = patient.child("contained").unwrap();
        assert!(contained.holds_resources());
        let observation = json!({"resourceType": "Observation"});
        let inner = contained.place(Some(&observation)).unwrap();
        assert!(inner.child("valueQuantity").is_some());
        // A content reference: Questionnaire.item.item is defined as Questionnaire.item.
        let item = Place::of_resource("Questionnaire")
            .unwrap()
            .child("item")
            .unwrap()
            .place(None)
            .unwrap();
        let nested = item.child("item").unwrap().place(None).unwrap();
        assert!(nested.child("linkId").is_some());
        // An extension's value is a choice of every type.
        let extension = patient.child("extension").unwrap().place(None).unwrap();
        assert_eq!(
            extension.child("valueString").unwrap().type_code.as_deref(),
            Some("string")
        );
        assert!(extension.child("url").unwrap().is_primitive());
        // A primitive has an id and extensions, nothing else.
        let primitive = Place::of_primitive();
        assert!(primitive.named("extension").unwrap().repeats());
        assert!(primitive.named("id").is_some());
        assert!(primitive.named("url").is_none() && primitive.named("value").is_none());
    }

    #[test]
    fn suffixes_and_type_codes_convert_both_ways() {
        assert_eq!(capitalised("dateTime"), "DateTime");
        assert_eq!(json_kind("positiveInt"), JsonKind::Number);
        assert!(is_primitive("http://hl7.org/fhirpath/System.String"));
        assert!(!is_primitive("Quantity"));
    }
}
