//! Key pairs for the RS256 and ES256 tests and benchmark, and for the SMART Backend Services
//! clients (RS384, ES384), made by the `openssl` command (`tests/setup.sh` installs it).

use std::path::Path;
use std::process::{Command, Stdio};

/// The command that writes `rsa.pem`, an RSA 2048 private key.
const RSA_2048: &[&str] = &[
    "genpkey",
    "-algorithm",
    "RSA",
    "-pkeyopt",
    "rsa_keygen_bits:2048",
    "-out",
    "rsa.pem",
];

/// Writes `rsa.pem` and `rsa.pub.pem` (RSA 2048), `ec.pem` and `ec.pub.pem` (P-256) in `dir`.
pub fn make_keys(dir: &Path) {
    openssl(
        dir,
        &[
            RSA_2048,
            &["pkey", "-in", "rsa.pem", "-pubout", "-out", "rsa.pub.pem"],
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "ec.pem",
            ],
            &["pkey", "-in", "ec.pem", "-pubout", "-out", "ec.pub.pem"],
        ],
    );
}

/// Writes `rsa.pem` (RSA 2048, for RS384) and `ec384.pem` (EC P-384, for ES384) in `dir`:
/// the private keys of backend clients.
pub fn make_client_keys(dir: &Path) {
    openssl(
        dir,
        &[
            RSA_2048,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-384",
                "-out",
                "ec384.pem",
            ],
        ],
    );
}

/// Runs `openssl` with each of `commands` in `dir`.
fn openssl(dir: &Path, commands: &[&[&str]]) {
    for args in commands {
        let status = Command::new("openssl")
            .args(*args)
            .current_dir(dir)
            .stderr(Stdio::null())
            .status()
            .expect("openssl (tests/setup.sh installs it)");
        assert!(status.success(), "openssl {args:?}");
    }
}

/// The public JWK of the private `key` for `alg`, named `kid`: what a backend client
/// registers (`fhirlake client add --jwks`).
#[allow(dead_code)]
pub fn public_jwk(
    key: &jsonwebtoken::EncodingKey,
    alg: jsonwebtoken::Algorithm,
    kid: &str,
) -> jsonwebtoken::jwk::Jwk {
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(key, alg).expect("a JWK of the key");
    jwk.common.key_id = Some(kid.into());
    jwk
}
