//! SMART Backend Services clients: who may ask this server's token endpoint (`api/token.rs`)
//! for access tokens, with which public keys and for which scopes. `fhirlake client
//! add|list|remove` keeps them in the store (`store/clients.rs` holds the JSON record this
//! module reads and writes).
//!
//! Invariants:
//! - A client id is 1 to [`MAX_ID`] characters of `A-Z a-z 0-9 . _ ~ : @ / -` (it is logged,
//!   printed and compared with the assertion's `iss` and `sub`).
//! - A client is registered with `system/` resource scopes only (a backend service has no
//!   patient or user), at least one, each well-formed; it is never granted more than them.
//! - Its keys are a JWKS, read at registration, or a JWKS URL (http or https, fetched at use
//!   under the endpoint rules of rest-hook Subscriptions, `cdc/endpoints.rs`). Only keys that
//!   can check an RS384 (RSA, at least 2048 bits) or ES384 (EC P-384) signature, have a `kid`,
//!   and whose `alg`, `use` and `key_ops` allow it are ever used ([`key_for`]); a JWKS file
//!   with none is refused at registration, and the record keeps those keys only (public
//!   parameters only: private ones in the file are dropped).

use super::scope::{Level, Scope, Scopes};
use base64::Engine;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use serde::{Deserialize, Serialize};

/// The longest client id.
pub const MAX_ID: usize = 128;

/// The largest JWKS read (a file at registration, or a JWKS URL's answer).
pub const MAX_JWKS: usize = 64 * 1024;

/// The longest registered scope string.
pub const MAX_SCOPE: usize = 4096;

/// The smallest RSA modulus accepted, in bytes (2048 bits).
const MIN_RSA_BYTES: usize = 256;

/// A registered backend client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Client {
    pub id: String,
    pub keys: Keys,
    /// The `system/` scopes it may be granted, space-separated, in the v2 form.
    pub scope: String,
    /// When it was registered (an instant).
    pub registered: String,
}

/// Where a client's public keys are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Keys {
    /// The usable keys of the JWKS given at registration.
    Jwks(JwkSet),
    /// A JWKS URL, fetched when the client asks for a token.
    JwksUrl(String),
}

impl Client {
    /// A client to register: `id` checked, `keys` a JWKS with usable keys (only those are
    /// kept) or an http(s) URL, `scope` one or more `system/` resource scopes.
    pub fn new(id: &str, keys: Keys, scope: &str) -> Result<Client, String> {
        check_id(id)?;
        let keys = match keys {
            Keys::Jwks(set) => Keys::Jwks(usable(set)?),
            Keys::JwksUrl(url) => Keys::JwksUrl(check_url(&url)?),
        };
        let scopes = registered_scopes(scope)?;
        let scope = scopes
            .iter()
            .map(Scope::to_string)
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Client {
            id: id.to_string(),
            keys,
            scope,
            registered: crate::fhir::datetime::format_instant(crate::fhir::datetime::now()),
        })
    }

    /// The scopes it may be granted.
    pub fn scopes(&self) -> Vec<Scope> {
        Scopes::parse(&self.scope).resources
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a client serializes")
    }

    /// A stored record; an error says what is wrong with it (a damaged store).
    pub fn from_bytes(bytes: &[u8]) -> Result<Client, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("a backend client record: {e}"))
    }
}

/// Checks a client id (see the module's invariants).
pub fn check_id(id: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._~:@/-".contains(c);
    if id.is_empty() || id.len() > MAX_ID || !id.chars().all(allowed) {
        return Err(format!(
            "a client id is 1 to {MAX_ID} characters of A-Z a-z 0-9 . _ ~ : @ / -"
        ));
    }
    Ok(())
}

/// A JWKS URL: http or https, with a host, and no user or fragment.
fn check_url(text: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("'{text}' is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
        return Err(format!("'{text}' is not an http(s) URL with a host"));
    }
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return Err(format!(
            "'{text}': a JWKS URL names no user and no fragment"
        ));
    }
    Ok(url.to_string())
}

/// The registered scopes of `text`: `system/` resource scopes, at least one.
fn registered_scopes(text: &str) -> Result<Vec<Scope>, String> {
    if text.len() > MAX_SCOPE {
        return Err(format!("the scopes are longer than {MAX_SCOPE} characters"));
    }
    let scopes = Scopes::parse(text);
    if let Some(malformed) = scopes.malformed.first() {
        return Err(malformed.to_string());
    }
    if let Some(other) = scopes.other.first() {
        return Err(format!(
            "'{other}' is not a SMART resource scope: a backend client is registered with \
             system/ scopes (system/*.rs, system/Patient.cruds, ...)"
        ));
    }
    if let Some(scope) = scopes.resources.iter().find(|s| s.level != Level::System) {
        return Err(format!(
            "'{scope}': a backend client acts for no patient or user; register system/ scopes"
        ));
    }
    if scopes.resources.is_empty() {
        return Err("give the client's scopes: --scope 'system/*.rs'".into());
    }
    Ok(scopes.resources)
}

/// A JWKS document, at most [`MAX_JWKS`] bytes, with only its usable keys; an error when it is
/// not a JWKS or has none.
pub fn parse_jwks(text: &[u8]) -> Result<JwkSet, String> {
    if text.len() > MAX_JWKS {
        return Err(format!("the JWKS is larger than {MAX_JWKS} bytes"));
    }
    let set: JwkSet =
        serde_json::from_slice(text).map_err(|e| format!("not a JSON Web Key Set: {e}"))?;
    usable(set)
}

/// The keys of `set` that can check RS384 or ES384 assertions; an error when there is none.
fn usable(set: JwkSet) -> Result<JwkSet, String> {
    let keys: Vec<Jwk> = set
        .keys
        .into_iter()
        .filter(|jwk| {
            jwk.common.key_id.is_some()
                && [Algorithm::RS384, Algorithm::ES384]
                    .into_iter()
                    .any(|alg| fits(jwk, alg))
        })
        .collect();
    if keys.is_empty() {
        return Err(
            "the JWKS has no key with a kid that checks RS384 (RSA, 2048 bits or more) \
             or ES384 (EC P-384) signatures"
                .into(),
        );
    }
    Ok(JwkSet { keys })
}

/// The key of `set` that `kid` names and that checks `alg` signatures.
pub fn key_for<'a>(set: &'a JwkSet, kid: &str, alg: Algorithm) -> Option<&'a Jwk> {
    set.keys
        .iter()
        .find(|jwk| jwk.common.key_id.as_deref() == Some(kid) && fits(jwk, alg))
}

/// Whether `jwk` checks `alg` signatures (RS384 or ES384): its type and size fit, and its
/// `alg`, `use` and `key_ops`, when given, allow it.
fn fits(jwk: &Jwk, alg: Algorithm) -> bool {
    let common = &jwk.common;
    let named = match alg {
        Algorithm::RS384 => KeyAlgorithm::RS384,
        Algorithm::ES384 => KeyAlgorithm::ES384,
        _ => return false,
    };
    let use_ok = matches!(common.public_key_use, None | Some(PublicKeyUse::Signature));
    let ops_ok = common
        .key_operations
        .as_ref()
        .is_none_or(|ops| ops.contains(&KeyOperations::Verify));
    let alg_ok = common.key_algorithm.as_ref().is_none_or(|a| *a == named);
    let type_ok = match (&jwk.algorithm, alg) {
        (AlgorithmParameters::RSA(rsa), Algorithm::RS384) => {
            let modulus = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(rsa.n.trim_end_matches('='))
                .unwrap_or_default();
            let significant = modulus.iter().skip_while(|b| **b == 0).count();
            significant >= MIN_RSA_BYTES
        }
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES384) => {
            ec.curve == EllipticCurve::P384
        }
        _ => false,
    };
    use_ok && ops_ok && alg_ok && type_ok
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A made-up RSA public key of `bits` bits (its modulus is not a product of primes: it
    /// checks no signature, but its size and type are what registration looks at).
    pub fn rsa_jwk(kid: &str, bits: usize) -> serde_json::Value {
        let modulus = vec![0xc5u8; bits / 8];
        json!({"kty": "RSA", "kid": kid, "e": "AQAB",
            "n": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(modulus)})
    }

    fn ec_jwk(kid: &str, curve: &str) -> serde_json::Value {
        json!({"kty": "EC", "kid": kid, "crv": curve,
            "x": "wcE8O55ro6aOuTf5Ty1k_IG4mTcuLiVercHouge1G5Ri-leevhev4uJzlHpi3U8r",
            "y": "mLRgz8Giu6XA_AqG8bywqbygShmd8jowflrdx0KQtM5X4s4aqDeCRfcpexykp3aI"})
    }

    fn jwks(keys: Vec<serde_json::Value>) -> Vec<u8> {
        serde_json::to_vec(&json!({ "keys": keys })).unwrap()
    }

    #[test]
    fn only_keys_that_check_rs384_or_es384_are_kept() {
        let mut no_kid = rsa_jwk("x", 2048);
        no_kid.as_object_mut().unwrap().remove("kid");
        let mut for_encryption = rsa_jwk("enc", 2048);
        for_encryption["use"] = "enc".into();
        let mut rs256 = rsa_jwk("rs256", 2048);
        rs256["alg"] = "RS256".into();
        let mut rs384 = rsa_jwk("rs384", 4096);
        rs384["alg"] = "RS384".into();
        let set = parse_jwks(&jwks(vec![
            rsa_jwk("rsa", 2048),
            rsa_jwk("small", 1024),
            no_kid,
            for_encryption,
            rs256,
            rs384,
            ec_jwk("ec", "P-384"),
            ec_jwk("p256", "P-256"),
            json!({"kty": "oct", "kid": "secret", "k": "c2VjcmV0"}),
        ]))
        .unwrap();
        let kids: Vec<&str> = set
            .keys
            .iter()
            .map(|k| k.common.key_id.as_deref().unwrap())
            .collect();
        assert_eq!(kids, ["rsa", "rs384", "ec"]);
        assert!(key_for(&set, "rsa", Algorithm::RS384).is_some());
        assert!(key_for(&set, "rsa", Algorithm::ES384).is_none());
        assert!(key_for(&set, "ec", Algorithm::ES384).is_some());
        assert!(key_for(&set, "ec", Algorithm::RS384).is_none());
        assert!(key_for(&set, "nothing", Algorithm::RS384).is_none());
        assert!(key_for(&set, "rsa", Algorithm::RS256).is_none());
        for bad in [
            &b"{}"[..],
            b"not json",
            &jwks(vec![rsa_jwk("small", 1024)]),
            &jwks(vec![json!({"kty": "oct", "kid": "s", "k": "c2VjcmV0"})]),
        ] {
            assert!(parse_jwks(bad).is_err());
        }
        assert!(parse_jwks(&vec![b' '; MAX_JWKS + 1]).is_err());
    }

    #[test]
    fn registration_checks_the_id_the_keys_and_the_scopes() {
        let keys = || Keys::Jwks(parse_jwks(&jwks(vec![ec_jwk("ec", "P-384")])).unwrap());
        let client = Client::new("bulk-1", keys(), "system/*.read  system/Patient.cruds").unwrap();
        assert_eq!(client.scope, "system/*.rs system/Patient.cruds");
        assert_eq!(client.scopes().len(), 2);
        assert_eq!(Client::from_bytes(&client.to_bytes()), Ok(client));
        for id in ["", "a b", "ünï", &"x".repeat(MAX_ID + 1), "a\nb"] {
            assert!(Client::new(id, keys(), "system/*.rs").is_err(), "{id:?}");
        }
        for scope in [
            "",
            "patient/*.rs",
            "user/Observation.rs",
            "system/*.rs openid",
            "system/Nothing.rs",
            &"system/*.rs ".repeat(400),
        ] {
            assert!(Client::new("c", keys(), scope).is_err(), "{scope}");
        }
        let url = Keys::JwksUrl("https://keys.example.org/jwks.json".into());
        assert!(Client::new("c", url, "system/*.rs").is_ok());
        for url in ["ftp://x/", "https://u:p@x/", "x/jwks", "https://x/#k"] {
            let keys = Keys::JwksUrl(url.into());
            assert!(Client::new("c", keys, "system/*.rs").is_err(), "{url}");
        }
    }
}
