//! Bearer tokens: JWTs verified with `jsonwebtoken` (its aws-lc-rs backend, the only one
//! enabled: with two backends the first verification panics), HS256 development tokens
//! minted for `fhirlake token`, and the access tokens of this server's own token endpoint
//! (SMART Backend Services, `api/token.rs`). RS256 and ES256 keys come from a PEM file and/or
//! a JWKS file, where a token's `kid` picks its key.
//!
//! The server accepts the tokens of the configured issuer (`--auth`) and its own: a token
//! whose header names [`OWN_KID`] is checked with the [`OwnKey`] alone (HS256, 32 random bytes
//! in `DATA/`[`OWN_KEY_FILE`], made at the first start with authorization on, never sent
//! anywhere), every other token as `--auth` says. Removing the key file and restarting
//! revokes every token the endpoint issued.
//!
//! Invariants:
//! - The algorithm comes from the server's configuration (and, for a JWKS key, from the key;
//!   for its own tokens, HS256), never from the token's header: a token signed with anything
//!   else is refused, so an RS256 public key can never be used as an HS256 secret.
//! - `exp` is required; `exp` and `nbf` are checked with [`LEEWAY`]; `iss` and `aud` are
//!   required and checked when the server is configured with them.
//! - Nothing here logs or returns any part of a token: a [`Rejection`] says only why.

use super::scope::Scopes;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

/// The clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY: Duration = Duration::from_secs(30);

/// The shortest HS256 secret accepted: 256 bits, the size of the hash.
pub const MIN_SECRET: usize = 32;

/// How tokens are verified: the `--auth` setting.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// HMAC with SHA-256 and a shared secret: for development and single-service setups.
    Hs256,
    /// RSA signatures (PKCS#1 v1.5, SHA-256), checked with public keys (PEM or JWKS).
    Rs256,
    /// ECDSA on P-256 with SHA-256, checked with public keys (PEM or JWKS).
    Es256,
    /// No authorization at all: every client may read and write everything.
    None,
}

impl Mode {
    /// `HS256`, `RS256`, `ES256` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Hs256 => "HS256",
            Mode::Rs256 => "RS256",
            Mode::Es256 => "ES256",
            Mode::None => "none",
        }
    }

    /// The one algorithm a token must be signed with; `None` when auth is off.
    pub fn algorithm(self) -> Option<Algorithm> {
        match self {
            Mode::Hs256 => Some(Algorithm::HS256),
            Mode::Rs256 => Some(Algorithm::RS256),
            Mode::Es256 => Some(Algorithm::ES256),
            Mode::None => None,
        }
    }
}

/// The claims the server checks beyond the signature and times.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    /// `iss` must be this, when set.
    pub issuer: Option<String>,
    /// `aud` must be (or contain) this, when set.
    pub audience: Option<String>,
}

/// Where the verification keys come from.
pub enum KeySource<'a> {
    /// The HS256 secret.
    Secret(&'a [u8]),
    /// RS256/ES256 public keys: a PEM public key (SPKI, or PKCS#1 for RSA) and/or a JWKS
    /// document.
    Public {
        pem: Option<&'a [u8]>,
        jwks: Option<&'a str>,
    },
}

/// A verification key, with the `kid` it answers to (JWKS keys have one).
struct Key {
    kid: Option<String>,
    key: DecodingKey,
}

/// Verifies bearer tokens for one configured algorithm, and this server's own.
pub struct Verifier {
    algorithm: Algorithm,
    keys: Vec<Key>,
    validation: Validation,
    /// The key and checks of the tokens this server issued, once [`Verifier::with_own`].
    own: Option<(DecodingKey, Validation)>,
}

/// The `kid` in the header of the access tokens this server's token endpoint issues.
pub const OWN_KID: &str = "fhirlake-token-endpoint";

/// The file in a data directory that holds the key of the token endpoint's access tokens.
pub const OWN_KEY_FILE: &str = "token-endpoint-key";

/// The key this server signs its token endpoint's access tokens with (HS256): it is both
/// their issuer and their only verifier.
pub struct OwnKey {
    secret: Vec<u8>,
}

impl OwnKey {
    /// The key in `DATA/`[`OWN_KEY_FILE`], made when it is not there yet.
    pub fn open(data: &Path) -> anyhow::Result<OwnKey> {
        let file = data.join(OWN_KEY_FILE);
        let (secret, made) = read_secret(&file, true).map_err(|error| {
            anyhow::anyhow!("the token endpoint's key {}: {error}", file.display())
        })?;
        anyhow::ensure!(
            secret.len() >= MIN_SECRET,
            "the token endpoint's key {} is {} bytes; it needs at least {MIN_SECRET}",
            file.display(),
            secret.len()
        );
        if made {
            tracing::info!(file = %file.display(), "made the token endpoint's signing key");
        }
        Ok(OwnKey { secret })
    }

    /// An access token for `grant`, with `issuer` (the token endpoint) and `audience` (the
    /// FHIR base).
    pub fn issue(&self, grant: &Grant, issuer: &str, audience: &str) -> anyhow::Result<String> {
        let expected = Expected {
            issuer: Some(issuer.to_string()),
            audience: Some(audience.to_string()),
        };
        sign(&self.secret, Some(OWN_KID), grant, &expected)
    }
}

/// The secret in `file`, trimmed, and whether it was made now: when the file does not exist
/// and `create`, a new one, 32 random bytes written as hex, readable by the owner only and
/// synced (a file another process made meanwhile is read instead).
pub fn read_secret(file: &Path, create: bool) -> std::io::Result<(Vec<u8>, bool)> {
    use std::io::{ErrorKind, Write};
    match std::fs::read_to_string(file) {
        Ok(secret) => return Ok((secret.trim().as_bytes().to_vec(), false)),
        Err(error) if error.kind() != ErrorKind::NotFound || !create => return Err(error),
        Err(_) => {}
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| std::io::Error::other(format!("no randomness: {e}")))?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = match options.open(file) {
        Ok(out) => out,
        Err(error) if error.kind() == ErrorKind::AlreadyExists => {
            return read_secret(file, false);
        }
        Err(error) => return Err(error),
    };
    out.write_all(format!("{secret}\n").as_bytes())?;
    out.sync_all()?;
    Ok((secret.into_bytes(), true))
}

/// Why a token was refused; the text is safe to show a client (it holds nothing of the
/// token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token is not signed with the algorithm this server takes")]
    Algorithm,
    #[error("no key of this server matches the token's key id")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    Immature,
    #[error("the token has no expiry (exp)")]
    NoExpiry,
    #[error("the token's issuer (iss) is not the one this server accepts")]
    Issuer,
    #[error("the token's audience (aud) is not this server")]
    Audience,
    #[error("the token's claims are not what this server understands")]
    Claims,
}

impl From<jsonwebtoken::errors::Error> for Rejection {
    fn from(error: jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind;
        match error.kind() {
            ErrorKind::InvalidSignature => Rejection::Signature,
            ErrorKind::ExpiredSignature => Rejection::Expired,
            ErrorKind::ImmatureSignature => Rejection::Immature,
            ErrorKind::InvalidIssuer => Rejection::Issuer,
            ErrorKind::InvalidAudience => Rejection::Audience,
            ErrorKind::InvalidAlgorithm => Rejection::Algorithm,
            ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
                "exp" => Rejection::NoExpiry,
                "iss" => Rejection::Issuer,
                "aud" => Rejection::Audience,
                _ => Rejection::Claims,
            },
            ErrorKind::InvalidClaimFormat(_) | ErrorKind::Json(_) => Rejection::Claims,
            _ => Rejection::Malformed,
        }
    }
}

/// What a verified token says about its bearer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Principal {
    /// `sub`: the user or service.
    pub subject: Option<String>,
    /// `client_id`, else `azp`: the app.
    pub client: Option<String>,
    /// `patient`: the patient whose compartment `patient/` scopes grant.
    pub patient: Option<String>,
    pub scopes: Scopes,
}

/// A claim that is one string or several (`scope` is a space-separated string in SMART;
/// some servers put `scp` as an array).
#[derive(Deserialize)]
#[serde(untagged)]
enum Words {
    One(String),
    Many(Vec<String>),
}

impl Words {
    fn join(self) -> String {
        match self {
            Words::One(text) => text,
            Words::Many(words) => words.join(" "),
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    client_id: Option<String>,
    azp: Option<String>,
    patient: Option<String>,
    scope: Option<Words>,
    scp: Option<Words>,
}

impl Verifier {
    /// A verifier for `mode` (not `none`) with its keys and expected claims. Fails when the
    /// keys are missing, unreadable, or of another algorithm than `mode`'s.
    pub fn new(mode: Mode, keys: KeySource<'_>, expected: &Expected) -> anyhow::Result<Verifier> {
        let algorithm = mode
            .algorithm()
            .ok_or_else(|| anyhow::anyhow!("--auth none verifies no tokens"))?;
        let keys = match (algorithm, keys) {
            (Algorithm::HS256, KeySource::Secret(secret)) => {
                anyhow::ensure!(
                    secret.len() >= MIN_SECRET,
                    "the HS256 secret is {} bytes; it needs at least {MIN_SECRET}",
                    secret.len()
                );
                vec![Key {
                    kid: None,
                    key: DecodingKey::from_secret(secret),
                }]
            }
            (Algorithm::HS256, KeySource::Public { .. }) => {
                anyhow::bail!("--auth hs256 takes a secret, not public keys")
            }
            (_, KeySource::Secret(_)) => {
                anyhow::bail!(
                    "--auth {} takes public keys (--auth-key or --auth-jwks)",
                    mode.as_str()
                )
            }
            (algorithm, KeySource::Public { pem, jwks }) => public_keys(algorithm, pem, jwks)?,
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY.as_secs();
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(issuer) = &expected.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match &expected.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            // jsonwebtoken refuses any `aud` when none is expected; a server that names no
            // audience accepts any.
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Ok(Verifier {
            algorithm,
            keys,
            validation,
            own: None,
        })
    }

    /// This verifier, also accepting the tokens signed with `own` (those naming [`OWN_KID`]):
    /// HS256, `exp` required, `exp` and `nbf` checked with [`LEEWAY`].
    pub fn with_own(mut self, own: &OwnKey) -> Verifier {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY.as_secs();
        validation.validate_nbf = true;
        // Only this server has the key: the token's issuer and audience are its own.
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        self.own = Some((DecodingKey::from_secret(&own.secret), validation));
        self
    }

    /// The algorithm tokens must be signed with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Verifies `token` (the text after `Bearer `) and reads its bearer.
    pub fn verify(&self, token: &str) -> Result<Principal, Rejection> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Rejection::Malformed)?;
        if header.kid.as_deref() == Some(OWN_KID) {
            let (key, validation) = self.own.as_ref().ok_or(Rejection::UnknownKey)?;
            return jsonwebtoken::decode::<Claims>(token, key, validation)
                .map(|data| principal(data.claims))
                .map_err(Rejection::from);
        }
        if header.alg != self.algorithm {
            return Err(Rejection::Algorithm);
        }
        // A token naming a key is checked with that key; one naming none (or a key this
        // server has only as PEM) with the keys that have no id, or with the only key.
        let named: Vec<&Key> = header
            .kid
            .as_deref()
            .map(|kid| {
                self.keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .collect()
            })
            .unwrap_or_default();
        let candidates: Vec<&Key> = if !named.is_empty() {
            named
        } else if self.keys.len() == 1 {
            self.keys.iter().collect()
        } else {
            self.keys.iter().filter(|k| k.kid.is_none()).collect()
        };
        if candidates.is_empty() {
            return Err(Rejection::UnknownKey);
        }
        let mut rejection = Rejection::Signature;
        for key in candidates {
            match jsonwebtoken::decode::<Claims>(token, &key.key, &self.validation) {
                Ok(data) => return Ok(principal(data.claims)),
                // Any other failure comes after the signature was checked: it is the answer.
                Err(error) => {
                    rejection = error.into();
                    if rejection != Rejection::Signature {
                        break;
                    }
                }
            }
        }
        Err(rejection)
    }
}

fn principal(claims: Claims) -> Principal {
    let scope = [claims.scope, claims.scp]
        .into_iter()
        .flatten()
        .map(Words::join)
        .collect::<Vec<_>>()
        .join(" ");
    Principal {
        subject: claims.sub,
        client: claims.client_id.or(claims.azp),
        patient: claims.patient,
        scopes: Scopes::parse(&scope),
    }
}

/// The keys of a PEM file and a JWKS document for `algorithm`. A JWKS key is taken when its
/// `alg` is `algorithm`, or when it has none and its type fits (RSA for RS256, EC P-256 for
/// ES256); encryption keys are skipped.
fn public_keys(
    algorithm: Algorithm,
    pem: Option<&[u8]>,
    jwks: Option<&str>,
) -> anyhow::Result<Vec<Key>> {
    let mut keys = Vec::new();
    if let Some(pem) = pem {
        let key = match algorithm {
            Algorithm::RS256 => DecodingKey::from_rsa_pem(pem),
            _ => DecodingKey::from_ec_pem(pem),
        }
        .map_err(|e| anyhow::anyhow!("the PEM key is not a {algorithm:?} public key: {e}"))?;
        keys.push(Key { kid: None, key });
    }
    if let Some(jwks) = jwks {
        let set: JwkSet = serde_json::from_str(jwks)
            .map_err(|e| anyhow::anyhow!("the JWKS is not a JSON Web Key Set: {e}"))?;
        for jwk in &set.keys {
            if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
                continue;
            }
            let fits = match (&jwk.common.key_algorithm, &jwk.algorithm) {
                (Some(KeyAlgorithm::RS256), _) => algorithm == Algorithm::RS256,
                (Some(KeyAlgorithm::ES256), _) => algorithm == Algorithm::ES256,
                (Some(_), _) => false,
                (None, AlgorithmParameters::RSA(_)) => algorithm == Algorithm::RS256,
                (None, AlgorithmParameters::EllipticCurve(ec)) => {
                    algorithm == Algorithm::ES256 && ec.curve == EllipticCurve::P256
                }
                (None, _) => false,
            };
            if fits {
                let key = DecodingKey::from_jwk(jwk)
                    .map_err(|e| anyhow::anyhow!("a JWKS key cannot be used: {e}"))?;
                keys.push(Key {
                    kid: jwk.common.key_id.clone(),
                    key,
                });
            }
        }
    }
    anyhow::ensure!(
        !keys.is_empty(),
        "no {algorithm:?} public key: give --auth-key (PEM) or --auth-jwks (a JWKS with {algorithm:?} keys)"
    );
    Ok(keys)
}

/// What a development token says.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The space-separated SMART scopes.
    pub scope: String,
    pub patient: Option<String>,
    pub subject: String,
    pub client_id: String,
    pub lifetime: Duration,
}

/// An HS256 token for `grant`, signed with `secret`, carrying the issuer and audience the
/// server expects.
pub fn mint(secret: &[u8], grant: &Grant, expected: &Expected) -> anyhow::Result<String> {
    sign(secret, None, grant, expected)
}

/// An HS256 token for `grant` signed with `secret`, naming `kid`, with `expected`'s issuer and
/// audience.
fn sign(
    secret: &[u8],
    kid: Option<&str>,
    grant: &Grant,
    expected: &Expected,
) -> anyhow::Result<String> {
    anyhow::ensure!(
        secret.len() >= MIN_SECRET,
        "the HS256 secret is {} bytes; it needs at least {MIN_SECRET}",
        secret.len()
    );
    let now = jsonwebtoken::get_current_timestamp();
    let mut claims = serde_json::json!({
        "sub": grant.subject,
        "client_id": grant.client_id,
        "scope": grant.scope,
        "iat": now,
        "exp": now + grant.lifetime.as_secs(),
        "jti": uuid::Uuid::new_v4().to_string(),
    });
    for (name, value) in [
        ("patient", &grant.patient),
        ("iss", &expected.issuer),
        ("aud", &expected.audience),
    ] {
        if let Some(value) = value {
            claims[name] = value.clone().into();
        }
    }
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_string);
    Ok(jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(secret),
    )?)
}

/// A duration written as seconds or with a unit: `90`, `90s`, `15m`, `8h`, `30d`.
pub fn parse_lifetime(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration such as 3600, 90s, 15m, 8h or 30d"))?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("'{unit}' is not a unit: use s, m, h or d")),
    };
    number
        .checked_mul(seconds)
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("'{text}' is not a usable lifetime"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn grant(scope: &str) -> Grant {
        Grant {
            scope: scope.into(),
            patient: Some("p1".into()),
            subject: "alice".into(),
            client_id: "app".into(),
            lifetime: Duration::from_secs(300),
        }
    }

    fn hs256(expected: &Expected) -> Verifier {
        Verifier::new(Mode::Hs256, KeySource::Secret(SECRET), expected).unwrap()
    }

    fn signed(claims: serde_json::Value, secret: &[u8]) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    #[test]
    fn a_minted_token_verifies_and_says_who() {
        let expected = Expected {
            issuer: Some("https://issuer".into()),
            audience: Some("https://fhir".into()),
        };
        let token = mint(SECRET, &grant("patient/*.rs openid"), &expected).unwrap();
        let principal = hs256(&expected).verify(&token).unwrap();
        assert_eq!(principal.subject.as_deref(), Some("alice"));
        assert_eq!(principal.client.as_deref(), Some("app"));
        assert_eq!(principal.patient.as_deref(), Some("p1"));
        assert_eq!(principal.scopes.resources.len(), 1);
        assert_eq!(principal.scopes.other, ["openid"]);
    }

    #[test]
    fn refusals_say_why_and_never_what() {
        let now = jsonwebtoken::get_current_timestamp();
        let verifier = hs256(&Expected {
            issuer: Some("iss".into()),
            audience: Some("aud".into()),
        });
        let base = serde_json::json!({"iss": "iss", "aud": "aud", "exp": now + 60});
        let with = |name: &str, value: serde_json::Value| {
            let mut claims = base.clone();
            claims[name] = value;
            signed(claims, SECRET)
        };
        let cases = [
            (with("exp", (now - 3600).into()), Rejection::Expired),
            (with("nbf", (now + 3600).into()), Rejection::Immature),
            (with("iss", "other".into()), Rejection::Issuer),
            (with("aud", "other".into()), Rejection::Audience),
            (
                signed(base.clone(), b"another secret of thirty-two bytes!"),
                Rejection::Signature,
            ),
            ("not a token".to_string(), Rejection::Malformed),
        ];
        for (token, rejection) in cases {
            assert_eq!(verifier.verify(&token), Err(rejection));
        }
        let mut no_exp = base.clone();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(
            verifier.verify(&signed(no_exp, SECRET)),
            Err(Rejection::NoExpiry)
        );
        // Within the leeway, an expired token still passes.
        assert!(verifier.verify(&with("exp", (now - 5).into())).is_ok());
    }

    #[test]
    fn the_algorithm_is_the_servers_not_the_tokens() {
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS384),
            &serde_json::json!({"exp": jsonwebtoken::get_current_timestamp() + 60}),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(
            hs256(&Expected::default()).verify(&token),
            Err(Rejection::Algorithm)
        );
    }

    #[test]
    fn short_secrets_and_missing_keys_are_refused() {
        assert!(
            Verifier::new(
                Mode::Hs256,
                KeySource::Secret(b"short"),
                &Expected::default()
            )
            .is_err()
        );
        let no_keys = KeySource::Public {
            pem: None,
            jwks: Some(r#"{"keys": []}"#),
        };
        assert!(Verifier::new(Mode::Rs256, no_keys, &Expected::default()).is_err());
    }

    #[test]
    fn own_tokens_verify_beside_the_configured_issuers() {
        let dir = tempfile::tempdir().unwrap();
        let own = OwnKey::open(dir.path()).unwrap();
        // The same key next time.
        let again = OwnKey::open(dir.path()).unwrap();
        assert_eq!(own.secret, again.secret);
        let expected = Expected {
            issuer: Some("https://issuer".into()),
            audience: Some("https://fhir".into()),
        };
        let mut service = grant("system/Patient.rs");
        service.patient = None;
        let token = own
            .issue(&service, "http://here/auth/token", "http://here/fhir")
            .unwrap();
        // Not without the own key; with it, beside the configured issuer's tokens.
        assert_eq!(hs256(&expected).verify(&token), Err(Rejection::UnknownKey));
        let verifier = hs256(&expected).with_own(&own);
        let principal = verifier.verify(&token).unwrap();
        assert_eq!(principal.client.as_deref(), Some("app"));
        assert_eq!(
            principal.scopes.resources[0].to_string(),
            "system/Patient.rs"
        );
        let external = mint(SECRET, &grant("patient/*.rs"), &expected).unwrap();
        assert!(verifier.verify(&external).is_ok());
        // The own kid with another key, or another algorithm, is refused.
        let forged = sign(SECRET, Some(OWN_KID), &service, &expected).unwrap();
        assert_eq!(verifier.verify(&forged), Err(Rejection::Signature));
        let mut header = Header::new(Algorithm::HS384);
        header.kid = Some(OWN_KID.into());
        let claims = serde_json::json!({"exp": jsonwebtoken::get_current_timestamp() + 60});
        let other =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&own.secret)).unwrap();
        assert_eq!(verifier.verify(&other), Err(Rejection::Algorithm));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let file = dir.path().join(OWN_KEY_FILE);
            let mode = std::fs::metadata(file).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the key is the owner's only");
        }
    }

    #[test]
    fn lifetimes() {
        assert_eq!(parse_lifetime("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_lifetime("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_lifetime("8h"), Ok(Duration::from_secs(28_800)));
        assert_eq!(parse_lifetime("30d"), Ok(Duration::from_secs(2_592_000)));
        for bad in ["", "0", "h", "1y", "-5", "99999999999999999999d"] {
            assert!(parse_lifetime(bad).is_err(), "{bad}");
        }
    }
}
