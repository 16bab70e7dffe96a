//! SMART App Launch scopes, as far as they grant access to FHIR resources: v2's
//! `patient/Observation.rs?category=laboratory` and v1's `user/Patient.read`.
//!
//! A resource scope is `LEVEL/TYPE.PERMISSIONS[?QUERY]`:
//! - `LEVEL` is `patient` (the compartment of the token's `patient` claim), `user` or `system`;
//! - `TYPE` is an R4 resource type or `*`;
//! - `PERMISSIONS` is v2's non-empty subset of `cruds`, in that order (`rs`, `cud`), or v1's
//!   `read` (= `rs`), `write` (= `cud`) or `*` (= `cruds`);
//! - `QUERY` (v2) is search parameters, form-encoded, that every resource the scope grants
//!   must match (`category=laboratory`).
//!
//! Other scopes (`openid`, `fhirUser`, `launch/patient`, `offline_access`...) grant no access
//! to resources; they are kept apart. A malformed resource scope grants nothing.

use std::fmt;
use std::str::FromStr;

/// Whose data a scope is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// The patient of the token's `patient` claim: only their compartment.
    Patient,
    /// What the user (the token's `fhirUser`) may see; this server does not narrow it.
    User,
    /// A backend service, without a user.
    System,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Patient => "patient",
            Level::User => "user",
            Level::System => "system",
        }
    }
}

/// One SMART v2 permission; each interaction needs one (see `super::Access`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

impl Permission {
    /// In v2's canonical order: `c r u d s`.
    pub const ALL: [Permission; 5] = [
        Permission::Create,
        Permission::Read,
        Permission::Update,
        Permission::Delete,
        Permission::Search,
    ];

    pub fn letter(self) -> char {
        match self {
            Permission::Create => 'c',
            Permission::Read => 'r',
            Permission::Update => 'u',
            Permission::Delete => 'd',
            Permission::Search => 's',
        }
    }

    /// The verb of an error message: "the token does not allow to {verb} Observation".
    pub fn verb(self) -> &'static str {
        match self {
            Permission::Create => "create",
            Permission::Read => "read",
            Permission::Update => "update",
            Permission::Delete => "delete",
            Permission::Search => "search",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Permissions(u8);

impl Permissions {
    pub fn contains(self, permission: Permission) -> bool {
        self.0 & permission.bit() != 0
    }

    pub fn of(permissions: &[Permission]) -> Permissions {
        Permissions(permissions.iter().fold(0, |bits, p| bits | p.bit()))
    }

    /// v2 letters in canonical order, each at most once, at least one; or a v1 word.
    fn parse(text: &str) -> Option<Permissions> {
        match text {
            "read" => return Some(Permissions::of(&[Permission::Read, Permission::Search])),
            "write" => {
                return Some(Permissions::of(&[
                    Permission::Create,
                    Permission::Update,
                    Permission::Delete,
                ]));
            }
            "*" => return Some(Permissions::of(&Permission::ALL)),
            _ => {}
        }
        let mut letters = text.chars().peekable();
        let mut bits = 0;
        for permission in Permission::ALL {
            if letters.next_if_eq(&permission.letter()).is_some() {
                bits |= permission.bit();
            }
        }
        (letters.next().is_none() && bits != 0).then_some(Permissions(bits))
    }
}

impl fmt::Display for Permissions {
    /// The v2 letters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for permission in Permission::ALL.into_iter().filter(|p| self.contains(*p)) {
            write!(f, "{}", permission.letter())?;
        }
        Ok(())
    }
}

/// One resource scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub level: Level,
    /// `None` for `*`: every type.
    pub resource_type: Option<String>,
    pub permissions: Permissions,
    /// Search parameters every resource granted must match; empty for none.
    pub restriction: Vec<(String, String)>,
}

impl Scope {
    /// Whether it grants `permission` on `resource_type` (any type when `None`).
    pub fn grants(&self, permission: Permission, resource_type: Option<&str>) -> bool {
        self.permissions.contains(permission)
            && match (&self.resource_type, resource_type) {
                (None, _) => true,
                (Some(own), Some(asked)) => own == asked,
                (Some(_), None) => false,
            }
    }

    /// What this scope and `other` both grant: the same level, the narrower type, the
    /// permissions both have and both queries (a resource granted matches each); `None` when
    /// they share nothing.
    pub fn intersect(&self, other: &Scope) -> Option<Scope> {
        if self.level != other.level {
            return None;
        }
        let resource_type = match (&self.resource_type, &other.resource_type) {
            (None, narrower) | (narrower, None) => narrower.clone(),
            (Some(a), Some(b)) if a == b => Some(a.clone()),
            _ => return None,
        };
        let permissions = Permissions(self.permissions.0 & other.permissions.0);
        if permissions.0 == 0 {
            return None;
        }
        let mut restriction = self.restriction.clone();
        for pair in &other.restriction {
            if !restriction.contains(pair) {
                restriction.push(pair.clone());
            }
        }
        Some(Scope {
            level: self.level,
            resource_type,
            permissions,
            restriction,
        })
    }

    /// Whether this scope grants everything `other` grants.
    pub fn covers(&self, other: &Scope) -> bool {
        self.level == other.level
            && (self.resource_type.is_none() || self.resource_type == other.resource_type)
            && self.permissions.0 & other.permissions.0 == other.permissions.0
            && self
                .restriction
                .iter()
                .all(|pair| other.restriction.contains(pair))
    }
}

/// What a client asking for `requested` scopes is granted when it may have `allowed` ones:
/// each requested scope narrowed by each allowed one ([`Scope::intersect`]), in the order
/// asked, without those another one granted covers. Empty when they share nothing.
pub fn granted(requested: &[Scope], allowed: &[Scope]) -> Vec<Scope> {
    let all: Vec<Scope> = requested
        .iter()
        .flat_map(|asked| allowed.iter().filter_map(|may| asked.intersect(may)))
        .collect();
    let mut kept: Vec<Scope> = Vec::new();
    for (at, scope) in all.iter().enumerate() {
        let covered = all.iter().enumerate().any(|(other_at, other)| {
            other_at != at && other.covers(scope) && (!scope.covers(other) || other_at < at)
        });
        if !covered {
            kept.push(scope.clone());
        }
    }
    kept
}

/// Why a resource scope is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{scope}' is not a SMART resource scope: {reason}")]
pub struct ScopeError {
    pub scope: String,
    pub reason: &'static str,
}

impl FromStr for Scope {
    type Err = ScopeError;

    fn from_str(text: &str) -> Result<Scope, ScopeError> {
        let error = |reason| ScopeError {
            scope: text.to_string(),
            reason,
        };
        let (level, rest) = text
            .split_once('/')
            .ok_or_else(|| error("it needs LEVEL/TYPE.PERMISSIONS"))?;
        let level = match level {
            "patient" => Level::Patient,
            "user" => Level::User,
            "system" => Level::System,
            _ => return Err(error("the level is patient, user or system")),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let (resource_type, permissions) = rest
            .split_once('.')
            .ok_or_else(|| error("it needs TYPE.PERMISSIONS"))?;
        let resource_type = match resource_type {
            "*" => None,
            name if crate::fhir::resource::is_served_type(name) => Some(name.to_string()),
            _ => return Err(error("the type is an R4 resource type or *")),
        };
        let permissions = Permissions::parse(permissions).ok_or_else(|| {
            error("the permissions are a subset of cruds in that order, or read, write or *")
        })?;
        let restriction: Vec<(String, String)> = match query {
            None => Vec::new(),
            Some(query) => form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        };
        if query.is_some()
            && (restriction.is_empty() || restriction.iter().any(|(name, _)| name.is_empty()))
        {
            return Err(error("the query after ? is name=value pairs joined by &"));
        }
        Ok(Scope {
            level,
            resource_type,
            permissions,
            restriction,
        })
    }
}

impl fmt::Display for Scope {
    /// The v2 form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let resource_type = self.resource_type.as_deref().unwrap_or("*");
        write!(
            f,
            "{}/{resource_type}.{}",
            self.level.as_str(),
            self.permissions
        )?;
        if !self.restriction.is_empty() {
            let mut query = form_urlencoded::Serializer::new(String::new());
            query.extend_pairs(&self.restriction);
            write!(f, "?{}", query.finish())?;
        }
        Ok(())
    }
}

/// The scopes of a token (its space-separated `scope` claim).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes {
    /// The resource scopes.
    pub resources: Vec<Scope>,
    /// The other scopes (`openid`, `launch/patient`, ...), which grant no resources.
    pub other: Vec<String>,
    /// The malformed resource scopes, which grant nothing.
    pub malformed: Vec<ScopeError>,
}

impl Scopes {
    /// Reads space-separated scopes: a word that starts with `patient/`, `user/` or `system/`
    /// is a resource scope or a malformed one; any other word (`launch/patient` too) is an
    /// other scope.
    pub fn parse(text: &str) -> Scopes {
        let mut scopes = Scopes::default();
        for word in text.split_whitespace() {
            let is_resource = ["patient/", "user/", "system/"]
                .iter()
                .any(|level| word.starts_with(level));
            if !is_resource {
                scopes.other.push(word.to_string());
                continue;
            }
            match word.parse() {
                Ok(scope) => scopes.resources.push(scope),
                Err(error) => scopes.malformed.push(error),
            }
        }
        scopes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scope(text: &str) -> Scope {
        text.parse().unwrap()
    }

    #[test]
    fn v2_scopes() {
        let lab = scope("patient/Observation.rs?category=laboratory");
        assert_eq!(lab.level, Level::Patient);
        assert_eq!(lab.resource_type.as_deref(), Some("Observation"));
        assert_eq!(
            lab.permissions,
            Permissions::of(&[Permission::Read, Permission::Search])
        );
        assert_eq!(
            lab.restriction,
            [("category".to_string(), "laboratory".to_string())]
        );
        let all = scope("system/*.cruds");
        assert_eq!(all.resource_type, None);
        assert!(
            Permission::ALL
                .iter()
                .all(|p| all.grants(*p, Some("Patient")))
        );
        assert!(all.grants(Permission::Read, None));
        let create = scope("user/Patient.c");
        assert!(create.grants(Permission::Create, Some("Patient")));
        assert!(!create.grants(Permission::Read, Some("Patient")));
        assert!(!create.grants(Permission::Create, Some("Observation")));
        assert!(!create.grants(Permission::Create, None));
        // A system|code value, encoded.
        let coded =
            scope("patient/Observation.rs?code=http%3A%2F%2Floinc.org%7C1234-5&status=final");
        assert_eq!(coded.restriction[0].1, "http://loinc.org|1234-5");
        assert_eq!(coded.restriction.len(), 2);
    }

    #[test]
    fn v1_words_are_synonyms() {
        assert_eq!(scope("patient/*.read"), scope("patient/*.rs"));
        assert_eq!(
            scope("user/Observation.write"),
            scope("user/Observation.cud")
        );
        assert_eq!(scope("system/*.*"), scope("system/*.cruds"));
    }

    #[test]
    fn malformed_scopes_are_refused() {
        for text in [
            "patient/Observation",
            "patient/Observation.",
            "patient/Observation.sr",
            "patient/Observation.rr",
            "patient/Observation.x",
            "patient/Nothing.rs",
            "admin/Patient.rs",
            "patient/Observation.rs?",
            "patient/Observation.rs?=x",
            "Observation.rs",
        ] {
            assert!(text.parse::<Scope>().is_err(), "{text}");
        }
    }

    #[test]
    fn a_scope_string_separates_resource_scopes_from_the_rest() {
        let scopes = Scopes::parse("openid fhirUser launch/patient patient/*.rs user/X.r  ");
        assert_eq!(scopes.resources, [scope("patient/*.rs")]);
        assert_eq!(scopes.other, ["openid", "fhirUser", "launch/patient"]);
        assert_eq!(scopes.malformed.len(), 1);
        assert_eq!(Scopes::parse(""), Scopes::default());
    }

    #[test]
    fn grants_are_what_both_sides_allow() {
        let scopes = |text: &str| Scopes::parse(text).resources;
        let texts = |granted: Vec<Scope>| {
            granted
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let registered = scopes("system/*.rs system/Patient.cruds");
        for (requested, expected) in [
            ("system/Patient.rs", "system/Patient.rs"),
            ("system/*.cruds", "system/*.rs system/Patient.cruds"),
            ("system/Observation.read", "system/Observation.rs"),
            ("system/Observation.c", ""),
            ("patient/*.rs user/*.rs", ""),
            (
                "system/Observation.rs?category=laboratory",
                "system/Observation.rs?category=laboratory",
            ),
            ("system/Patient.rs system/Patient.r", "system/Patient.rs"),
        ] {
            assert_eq!(
                texts(granted(&scopes(requested), &registered)),
                expected,
                "{requested}"
            );
        }
        // Both queries hold.
        let lab = scopes("system/Observation.rs?category=laboratory");
        assert_eq!(
            texts(granted(&scopes("system/Observation.rs?status=final"), &lab)),
            "system/Observation.rs?status=final&category=laboratory"
        );
    }

    fn any_scope() -> impl Strategy<Value = Scope> {
        let level = prop_oneof![Just(Level::Patient), Just(Level::User), Just(Level::System)];
        let resource_type = prop_oneof![
            Just(None),
            proptest::sample::select(fhirlake_model::RESOURCE_TYPES).prop_map(|t| Some(t.into())),
        ];
        let permissions = (1u8..32).prop_map(Permissions);
        let restriction = proptest::collection::vec(("[a-z_:.-]{1,12}", "\\PC{0,12}"), 0..3);
        (level, resource_type, permissions, restriction).prop_map(
            |(level, resource_type, permissions, restriction)| Scope {
                level,
                resource_type,
                permissions,
                restriction,
            },
        )
    }

    proptest! {
        /// Any scope written in the v2 form reads back as itself.
        #[test]
        fn a_written_scope_reads_back(scope in any_scope()) {
            let text = scope.to_string();
            prop_assert_eq!(text.parse::<Scope>(), Ok(scope));
        }

        /// A grant never gives more than was asked or than was allowed.
        #[test]
        fn a_grant_is_within_both_sides(
            requested in proptest::collection::vec(any_scope(), 0..4),
            allowed in proptest::collection::vec(any_scope(), 0..4),
        ) {
            for scope in granted(&requested, &allowed) {
                prop_assert!(requested.iter().any(|r| r.covers(&scope)), "{}", scope);
                prop_assert!(allowed.iter().any(|a| a.covers(&scope)), "{}", scope);
            }
            for asked in &requested {
                for may in &allowed {
                    if let Some(both) = asked.intersect(may) {
                        let grant = granted(&requested, &allowed);
                        prop_assert!(grant.iter().any(|g| g.covers(&both)), "{}", both);
                    }
                }
            }
        }

        /// Permission letters are accepted exactly when they are a non-empty subsequence of
        /// `cruds`.
        #[test]
        fn permission_letters_in_canonical_order_only(letters in "[cruds]{0,6}") {
            let canonical = !letters.is_empty()
                && letters.chars().zip(letters.chars().skip(1)).all(|(a, b)| {
                    "cruds".find(a) < "cruds".find(b)
                });
            let parsed = format!("user/Patient.{letters}").parse::<Scope>();
            prop_assert_eq!(parsed.is_ok(), canonical);
            if let Ok(scope) = parsed {
                prop_assert_eq!(scope.permissions.to_string(), letters);
            }
        }

        /// Nothing makes the parser panic, and whatever it accepts writes back to a scope
        /// that reads as the same.
        #[test]
        fn any_text_parses_or_fails_cleanly(
            text in "\\PC{0,40}|((patient|user|system|x)/(Observation|\\*|Pat)\\.[cruds*a-z]{0,6}(\\?[a-z=&%0-9]{0,10})? ?){1,3}"
        ) {
            let scopes = Scopes::parse(&text);
            for scope in scopes.resources {
                prop_assert_eq!(scope.to_string().parse::<Scope>(), Ok(scope));
            }
        }
    }
}
