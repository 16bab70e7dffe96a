//! Reading references: `Patient/1`, `http://example.org/fhir/Patient/1`,
//! `Patient/1/_history/2`, with or without a query or fragment; and which of them name this
//! server's resources ([`Base`]).
//!
//! This server's references are the relative ones and the absolute URLs under `--base-url`,
//! never under the request's Host (the client's to choose: what a stored reference means
//! cannot depend on who asks). Search extraction makes the latter relative and leaves every
//! other absolute URL another server's, so the index, compartments, includes, `$everything`
//! and the write rule of `patient/` scopes read references alike.

/// The `Type/id` a reference ends with, as a slice of it; None for `urn:`, `#contained` and
/// anything whose second-to-last segment is not an R4 resource type.
pub fn local(reference: &str) -> Option<&str> {
    let path = reference.split(['?', '#']).next()?;
    let path = path.split("/_history/").next()?;
    let mut segments = path.rsplitn(3, '/');
    let id = segments.next()?;
    let resource_type = segments.next()?;
    let start = path.len() - id.len() - resource_type.len() - 1;
    (!id.is_empty() && fhirlake_model::is_resource_type(resource_type)).then(|| &path[start..])
}

/// Which references name resources of this server: a relative `Type/id` (or
/// `Type/id/_history/n`, maybe with a query or fragment), or an absolute URL under this
/// server's public base (`--base-url`). Any other absolute URL is another server's, whatever
/// its path says: `https://elsewhere.example/fhir/Patient/1` is not this server's Patient/1.
///
/// Without a configured base no absolute URL is this server's: the Host a request names is the
/// client's to choose, and what a stored reference means (to the search index, compartments,
/// authorization) cannot depend on who asks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Base(Option<String>);

impl Base {
    /// The base URL (any trailing `/` dropped); `None` when none is configured.
    pub fn new(url: Option<&str>) -> Base {
        Base(
            url.map(|u| u.trim_end_matches('/').to_string())
                .filter(|u| !u.is_empty()),
        )
    }

    pub fn url(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// `reference` relative to this server's base when it is an absolute URL under it
    /// (`https://base/Patient/1` -> `Patient/1`); otherwise `reference` itself.
    pub fn relative_to<'a>(&self, reference: &'a str) -> &'a str {
        self.0
            .as_deref()
            .and_then(|base| reference.strip_prefix(base))
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|rest| !rest.is_empty())
            .unwrap_or(reference)
    }

    /// The `Type/id` of this server's resource that `reference` names, as a slice of it; None
    /// for another server's, a `urn:`, a contained `#id`, a conditional reference, or anything
    /// that is not `Type/id` of an R4 type.
    pub fn local<'a>(&self, reference: &'a str) -> Option<&'a str> {
        let relative = if reference.contains("://") {
            reference
                .strip_prefix(self.0.as_deref()?)?
                .strip_prefix('/')?
        } else {
            reference
        };
        let path = relative.split(['?', '#']).next()?;
        let mut segments = path.split('/');
        let (resource_type, id) = (segments.next()?, segments.next()?);
        let versioned = match (segments.next(), segments.next(), segments.next()) {
            (None, _, _) => true,
            (Some("_history"), Some(vid), None) => !vid.is_empty(),
            _ => false,
        };
        (versioned && !id.is_empty() && fhirlake_model::is_resource_type(resource_type))
            .then(|| &path[..resource_type.len() + 1 + id.len()])
    }
}

/// The `Type/id` a relative reference names (see [`Base::local`]); None for any absolute URL.
pub fn relative(reference: &str) -> Option<&str> {
    Base::default().local(reference)
}

/// The resource type a reference names.
pub fn resource_type(reference: &str) -> Option<&str> {
    local(reference)?.split_once('/').map(|(ty, _)| ty)
}

/// Calls `visit` with every `reference` string anywhere in `value` (contained resources'
/// included).
pub fn each_in(value: &serde_json::Value, visit: &mut impl FnMut(&str)) {
    match value {
        serde_json::Value::Object(object) => {
            for (key, member) in object {
                match (key.as_str(), member) {
                    ("reference", serde_json::Value::String(reference)) => visit(reference),
                    (_, member) => each_in(member, visit),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| each_in(item, visit)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_of_every_form() {
        assert_eq!(local("Patient/1"), Some("Patient/1"));
        assert_eq!(
            local("http://x/fhir/Patient/1/_history/2"),
            Some("Patient/1")
        );
        assert_eq!(local("Patient/1#c"), Some("Patient/1"));
        assert_eq!(
            resource_type("http://x/fhir/Observation/o"),
            Some("Observation")
        );
        assert_eq!(local("urn:uuid:1"), None);
        assert_eq!(local("Patients/1"), None);
        assert_eq!(local("Patient/"), None);
    }

    #[test]
    fn this_servers_references_are_relative_or_under_its_base() {
        let base = Base::new(Some("https://fhir.example/r4/"));
        assert_eq!(base.url(), Some("https://fhir.example/r4"));
        for (reference, local) in [
            ("Patient/1", Some("Patient/1")),
            ("Patient/1/_history/2", Some("Patient/1")),
            ("Patient/1#c", Some("Patient/1")),
            ("https://fhir.example/r4/Patient/1", Some("Patient/1")),
            (
                "https://fhir.example/r4/Patient/1/_history/3",
                Some("Patient/1"),
            ),
            ("https://elsewhere.example/r4/Patient/1", None),
            ("https://fhir.example/r4x/Patient/1", None),
            ("https://fhir.example/Patient/1", None),
            ("https://fhir.example/r4/x/Patient/1", None),
            ("x/Patient/1", None),
            ("Patient/1/_history", None),
            ("Patient/1/extra", None),
            ("Patient?identifier=x", None),
            ("urn:uuid:1", None),
            ("#c", None),
            ("Patients/1", None),
            ("Patient/", None),
        ] {
            assert_eq!(base.local(reference), local, "{reference}");
        }
        let none = Base::new(None);
        assert_eq!(none.local("Patient/1"), Some("Patient/1"));
        assert_eq!(none.local("https://fhir.example/r4/Patient/1"), None);
        assert_eq!(Base::new(Some("")), none);
        assert_eq!(
            base.relative_to("https://fhir.example/r4/Patient/1"),
            "Patient/1"
        );
        assert_eq!(
            base.relative_to("https://elsewhere.example/r4/Patient/1"),
            "https://elsewhere.example/r4/Patient/1"
        );
        assert_eq!(relative("https://fhir.example/r4/Patient/1"), None);
    }
}
