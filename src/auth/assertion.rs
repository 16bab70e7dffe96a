//! Client assertions: the signed JWT a SMART backend client authenticates to the token
//! endpoint with (`client_assertion`, SMART App Launch's client-confidential-asymmetric, RFC
//! 7523 §2.2). `api/token.rs` reads the request; this module judges the assertion.
//!
//! Invariants (each failing check is a [`Refusal`], which the endpoint answers
//! `invalid_client`):
//! - It is at most [`MAX_ASSERTION`] bytes, signed with RS384 or ES384 (the header's `alg`;
//!   anything else, `none` and HMAC included, is refused before any key is looked at), with the
//!   key of the client's JWKS that its `kid` names, of the type that `alg` needs
//!   ([`super::clients::key_for`]). A `jku` header must be the client's registered JWKS URL.
//! - `iss` and `sub` are the client's id, `aud` is the token endpoint's URL, `exp` is not past
//!   and at most [`MAX_AHEAD`] ahead, `nbf` (when given) is not ahead, each time with
//!   [`LEEWAY`] for clock skew; `jti` is 1 to [`MAX_JTI`] characters. That a `jti` is not
//!   used twice is the store's to judge ([`crate::store::Store::use_assertion`]), until the
//!   time [`Checked::lapses`] after which the assertion is refused anyway.
//! - A refusal says why in words that hold nothing of the assertion.

use super::clients::{Client, Keys, key_for};
use super::token::LEEWAY;
use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::time::Duration;

/// The `client_assertion_type` of a JWT client assertion.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The largest client assertion read, in bytes.
pub const MAX_ASSERTION: usize = 8 * 1024;

/// The longest `jti`.
pub const MAX_JTI: usize = 256;

/// How far ahead an assertion's `exp` may be (SMART: no more than five minutes).
pub const MAX_AHEAD: Duration = Duration::from_secs(300);

/// The signing algorithms an assertion may use.
pub const ALGORITHMS: [Algorithm; 2] = [Algorithm::RS384, Algorithm::ES384];

/// Why an assertion is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the client assertion is larger than {MAX_ASSERTION} bytes")]
    TooLarge,
    #[error("the client assertion is not a well-formed JWT")]
    Malformed,
    #[error("the client assertion names no issuer (iss): it says which client it comes from")]
    NoIssuer,
    #[error("no backend client '{0}' is registered")]
    UnknownClient(String),
    #[error("the client assertion is not signed with RS384 or ES384")]
    Algorithm,
    #[error("the client assertion's header names no key (kid)")]
    NoKeyId,
    #[error("the client's JWKS has no {0:?} key with the assertion's kid")]
    UnknownKey(Algorithm),
    #[error("the client assertion's jku is not the JWKS URL the client is registered with")]
    KeySetUrl,
    #[error("the client's JWKS could not be fetched: {0}")]
    KeysUnavailable(String),
    #[error("the client assertion's signature does not verify")]
    Signature,
    #[error("the client assertion has expired")]
    Expired,
    #[error("the client assertion is not valid yet (nbf)")]
    Immature,
    #[error("the client assertion's exp is more than five minutes ahead")]
    TooFarAhead,
    #[error("the client assertion's iss and sub must both be the client's id")]
    Issuer,
    #[error("the client assertion's audience (aud) is not this token endpoint's URL")]
    Audience,
    #[error("the client assertion lacks the claim {0}")]
    Missing(&'static str),
    #[error("the client assertion's jti is empty or longer than {MAX_JTI} characters")]
    BadJti,
    #[error("the client assertion's claims are not what SMART Backend Services defines")]
    Claims,
    #[error("the client assertion (its jti) was used before")]
    Replayed,
}

impl From<jsonwebtoken::errors::Error> for Refusal {
    fn from(error: jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind;
        match error.kind() {
            ErrorKind::InvalidSignature => Refusal::Signature,
            ErrorKind::ExpiredSignature => Refusal::Expired,
            ErrorKind::ImmatureSignature => Refusal::Immature,
            ErrorKind::InvalidIssuer | ErrorKind::InvalidSubject => Refusal::Issuer,
            ErrorKind::InvalidAudience => Refusal::Audience,
            ErrorKind::InvalidAlgorithm => Refusal::Algorithm,
            ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
                "exp" => Refusal::Missing("exp"),
                "iss" => Refusal::Missing("iss"),
                "sub" => Refusal::Missing("sub"),
                "aud" => Refusal::Missing("aud"),
                _ => Refusal::Claims,
            },
            ErrorKind::InvalidClaimFormat(_) | ErrorKind::Json(_) => Refusal::Claims,
            _ => Refusal::Malformed,
        }
    }
}

/// What a checked assertion says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub client: String,
    pub jti: String,
    /// When it stops being accepted (Unix seconds): its `exp` plus [`LEEWAY`]. Its `jti` must
    /// be remembered until then.
    pub lapses: u64,
}

/// The header fields that pick the key.
pub struct Signing {
    pub alg: Algorithm,
    pub kid: String,
    jku: Option<String>,
}

/// The client an assertion says it comes from: its `iss`, not verified yet (it picks the keys
/// that verify it). Also refuses an assertion over [`MAX_ASSERTION`] bytes.
pub fn claimed_client(assertion: &str) -> Result<String, Refusal> {
    #[derive(Deserialize)]
    struct Issuer {
        iss: Option<String>,
    }
    if assertion.len() > MAX_ASSERTION {
        return Err(Refusal::TooLarge);
    }
    let mut parts = assertion.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal::Malformed);
    };
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| Refusal::Malformed)?;
    let issuer: Issuer = serde_json::from_slice(&json).map_err(|_| Refusal::Malformed)?;
    issuer
        .iss
        .filter(|iss| !iss.is_empty())
        .ok_or(Refusal::NoIssuer)
}

/// The assertion's `alg` (RS384 or ES384) and `kid`, and its `jku` checked against the
/// client's keys.
pub fn signing(assertion: &str, client: &Client) -> Result<Signing, Refusal> {
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| Refusal::Malformed)?;
    if !ALGORITHMS.contains(&header.alg) {
        return Err(Refusal::Algorithm);
    }
    let kid = header
        .kid
        .filter(|kid| !kid.is_empty())
        .ok_or(Refusal::NoKeyId)?;
    let signing = Signing {
        alg: header.alg,
        kid,
        jku: header.jku,
    };
    if let Some(jku) = &signing.jku {
        match &client.keys {
            Keys::JwksUrl(url) if url == jku => {}
            _ => return Err(Refusal::KeySetUrl),
        }
    }
    Ok(signing)
}

/// Checks `assertion` of `client` with the keys `jwks` (the client's own, or those its URL
/// gave), for the token endpoint at `token_url`; every check of the module's invariants but
/// the `jti`'s reuse.
pub fn check(
    assertion: &str,
    client: &Client,
    jwks: &JwkSet,
    token_url: &str,
) -> Result<Checked, Refusal> {
    // Optional here: jsonwebtoken reads them before it checks the required ones (which
    // says which is missing).
    #[derive(Deserialize)]
    struct Claims {
        iss: Option<String>,
        sub: Option<String>,
        exp: Option<u64>,
        jti: Option<String>,
    }
    if assertion.len() > MAX_ASSERTION {
        return Err(Refusal::TooLarge);
    }
    let signing = signing(assertion, client)?;
    let jwk = key_for(jwks, &signing.kid, signing.alg).ok_or(Refusal::UnknownKey(signing.alg))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|_| Refusal::UnknownKey(signing.alg))?;
    let mut validation = Validation::new(signing.alg);
    validation.leeway = LEEWAY.as_secs();
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    validation.set_issuer(&[&client.id]);
    validation.sub = Some(client.id.clone());
    validation.set_audience(&[token_url]);
    let claims = jsonwebtoken::decode::<Claims>(assertion, &key, &validation)?.claims;
    let ours = |claim: Option<&str>| claim == Some(client.id.as_str());
    if !ours(claims.iss.as_deref()) || !ours(claims.sub.as_deref()) {
        return Err(Refusal::Issuer);
    }
    let exp = claims.exp.ok_or(Refusal::Missing("exp"))?;
    let now = jsonwebtoken::get_current_timestamp();
    if exp > now + MAX_AHEAD.as_secs() + LEEWAY.as_secs() {
        return Err(Refusal::TooFarAhead);
    }
    let jti = claims.jti.ok_or(Refusal::Missing("jti"))?;
    if jti.is_empty() || jti.chars().count() > MAX_JTI {
        return Err(Refusal::BadJti);
    }
    Ok(Checked {
        client: client.id.clone(),
        jti,
        lapses: exp + LEEWAY.as_secs(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::{Value, json};

    const TOKEN_URL: &str = "https://fhir.example/auth/token";

    /// An EC P-384 private key for these tests alone (`openssl genpkey -algorithm EC -pkeyopt
    /// ec_paramgen_curve:P-384`).
    const EC_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDDmYDoPxCbyzi/fFE5H
nM2KmVhkfr4RfERds0QGBg+IrZP4zz6qNx6z3FoLeGwunzmhZANiAAQuGbXSEei/
MhSvzpVfj2/6gB87rZa2hBRbJ7QglS/m/rxdjcHaKURopvjwk7dNlwZk79lHkW3M
y0oEtl1NQ2Dvh2fiVfdVQuzkXZqQ9k8eJNvrZH1rYWbap3VDXfogJ8c=
-----END PRIVATE KEY-----
";

    fn ec_key() -> EncodingKey {
        EncodingKey::from_ec_pem(EC_KEY.as_bytes()).unwrap()
    }

    fn client(keys: Keys) -> Client {
        Client {
            id: "bulk".into(),
            keys,
            scope: "system/*.rs".into(),
            registered: String::new(),
        }
    }

    fn jwks(kid: &str) -> JwkSet {
        let mut jwk =
            jsonwebtoken::jwk::Jwk::from_encoding_key(&ec_key(), Algorithm::ES384).unwrap();
        jwk.common.key_id = Some(kid.into());
        JwkSet { keys: vec![jwk] }
    }

    fn claims(changes: Value) -> Value {
        let now = jsonwebtoken::get_current_timestamp();
        let mut claims = json!({"iss": "bulk", "sub": "bulk", "aud": TOKEN_URL,
            "exp": now + 240, "jti": "j-1"});
        for (name, value) in changes.as_object().unwrap() {
            match value {
                Value::Null => claims.as_object_mut().unwrap().remove(name),
                value => claims
                    .as_object_mut()
                    .unwrap()
                    .insert(name.clone(), value.clone()),
            };
        }
        claims
    }

    fn sign(header: Header, claims: &Value) -> String {
        jsonwebtoken::encode(&header, claims, &ec_key()).unwrap()
    }

    fn es384(kid: &str) -> Header {
        let mut header = Header::new(Algorithm::ES384);
        header.kid = Some(kid.into());
        header
    }

    #[test]
    fn a_good_assertion_says_who_and_until_when() {
        let assertion = sign(es384("k1"), &claims(json!({})));
        assert_eq!(claimed_client(&assertion), Ok("bulk".into()));
        let client = client(Keys::Jwks(jwks("k1")));
        let checked = check(&assertion, &client, &jwks("k1"), TOKEN_URL).unwrap();
        assert_eq!(
            (checked.client.as_str(), checked.jti.as_str()),
            ("bulk", "j-1")
        );
        let exp = claims(json!({}))["exp"].as_u64().unwrap();
        assert!(checked.lapses >= exp + LEEWAY.as_secs() - 1);
    }

    #[test]
    fn every_check_refuses_with_its_reason() {
        let now = jsonwebtoken::get_current_timestamp();
        let client = client(Keys::Jwks(jwks("k1")));
        let refused = |assertion: &str| check(assertion, &client, &jwks("k1"), TOKEN_URL);
        let with = |changes: Value| sign(es384("k1"), &claims(changes));
        let cases = [
            (with(json!({"exp": now - 3600})), Refusal::Expired),
            (with(json!({"exp": now + 3600})), Refusal::TooFarAhead),
            (with(json!({"nbf": now + 3600})), Refusal::Immature),
            (
                with(json!({"aud": "https://elsewhere/token"})),
                Refusal::Audience,
            ),
            (with(json!({"iss": "other"})), Refusal::Issuer),
            (with(json!({"sub": "other"})), Refusal::Issuer),
            (with(json!({"jti": null})), Refusal::Missing("jti")),
            (with(json!({"jti": ""})), Refusal::BadJti),
            (
                with(json!({"jti": "j".repeat(MAX_JTI + 1)})),
                Refusal::BadJti,
            ),
            (with(json!({"aud": null})), Refusal::Missing("aud")),
            (with(json!({"exp": null})), Refusal::Missing("exp")),
            (with(json!({"exp": "soon"})), Refusal::Claims),
            (
                sign(es384("k2"), &claims(json!({}))),
                Refusal::UnknownKey(Algorithm::ES384),
            ),
            (
                sign(Header::new(Algorithm::ES384), &claims(json!({}))),
                Refusal::NoKeyId,
            ),
            ("a.b".to_string(), Refusal::Malformed),
            ("x".repeat(MAX_ASSERTION + 1), Refusal::TooLarge),
        ];
        for (assertion, refusal) in cases {
            assert_eq!(refused(&assertion), Err(refusal));
        }
        // Within the leeway, a just expired assertion passes.
        assert!(refused(&with(json!({"exp": now - 5}))).is_ok());
        // A signature by another key.
        let good = with(json!({}));
        let (signed, _) = good.rsplit_once('.').unwrap();
        let other = sign(es384("k1"), &claims(json!({"jti": "other"})));
        let forged = format!("{signed}.{}", other.rsplit_once('.').unwrap().1);
        assert_eq!(refused(&forged), Err(Refusal::Signature));
    }

    #[test]
    fn only_rs384_and_es384_are_taken() {
        let client = client(Keys::Jwks(jwks("k1")));
        for alg in [Algorithm::ES256, Algorithm::RS256, Algorithm::HS384] {
            let mut header = Header::new(alg);
            header.kid = Some("k1".into());
            let key = match alg {
                Algorithm::HS384 => EncodingKey::from_secret(b"guessable"),
                _ => ec_key(),
            };
            let assertion =
                jsonwebtoken::encode(&header, &claims(json!({})), &key).unwrap_or_else(|_| {
                    // A key that cannot sign this alg: forge the header alone.
                    let good = sign(es384("k1"), &claims(json!({})));
                    let header =
                        serde_json::to_vec(&json!({"alg": format!("{alg:?}"), "kid": "k1"}))
                            .unwrap();
                    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header);
                    format!("{header}.{}", good.split_once('.').unwrap().1)
                });
            assert_eq!(
                check(&assertion, &client, &jwks("k1"), TOKEN_URL),
                Err(Refusal::Algorithm),
                "{alg:?}"
            );
        }
        // `alg: none` is not even a JWT jsonwebtoken reads.
        let none = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"alg":"none","kid":"k1"}"#);
        let good = sign(es384("k1"), &claims(json!({})));
        let (_, rest) = good.split_once('.').unwrap();
        let (payload, _) = rest.split_once('.').unwrap();
        let unsigned = format!("{none}.{payload}.");
        assert!(check(&unsigned, &client, &jwks("k1"), TOKEN_URL).is_err());
    }

    #[test]
    fn a_jku_must_be_the_registered_url() {
        let url = "https://keys.example/jwks.json";
        let by_url = client(Keys::JwksUrl(url.into()));
        let mut header = es384("k1");
        header.jku = Some(url.into());
        let assertion = sign(header.clone(), &claims(json!({})));
        assert!(check(&assertion, &by_url, &jwks("k1"), TOKEN_URL).is_ok());
        header.jku = Some("https://attacker.example/jwks.json".into());
        let assertion = sign(header, &claims(json!({})));
        assert_eq!(
            check(&assertion, &by_url, &jwks("k1"), TOKEN_URL),
            Err(Refusal::KeySetUrl)
        );
        let by_file = client(Keys::Jwks(jwks("k1")));
        assert_eq!(
            check(&assertion, &by_file, &jwks("k1"), TOKEN_URL),
            Err(Refusal::KeySetUrl)
        );
    }

    #[test]
    fn the_claimed_client_is_read_without_trusting_it() {
        for bad in ["", "a.b", "a.b.c.d", "a.!!!.c"] {
            assert_eq!(claimed_client(bad), Err(Refusal::Malformed), "{bad}");
        }
        let no_iss = sign(es384("k1"), &claims(json!({"iss": null})));
        assert_eq!(claimed_client(&no_iss), Err(Refusal::NoIssuer));
    }
}
