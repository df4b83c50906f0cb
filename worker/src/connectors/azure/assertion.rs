//! Client assertions for Microsoft Entra ID's certificate credential: a JWT signed with the
//! certificate's RSA key (RS256, by ring), naming the certificate by its SHA-256 thumbprint
//! (`x5t#S256`), for one token endpoint (`aud`), from the application (`iss` = `sub` =
//! client id), valid for [`LIFETIME`] from now, with a fresh `jti`.
//!
//! The PEM file holds the certificate and its private key (PKCS#8 or PKCS#1), in any order.
//! The key never leaves this module; `Debug` shows only the thumbprint. Also here: reading a
//! credential file (a secret, a federated token) bounded and trimmed, and [`CredentialError`],
//! why such a file or an assertion cannot be used.

use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::Secret;

/// How long an assertion is valid (Entra takes it once, right away).
pub(crate) const LIFETIME: Duration = Duration::from_secs(600);
/// Largest certificate file read.
const FILE_BYTES_MAX: u64 = 64 * 1024;

/// Why a credential file (a certificate, a federated token) or an assertion cannot be used.
/// Never what the file holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The file cannot be read (the IO error's text).
    #[error("{0}")]
    Unreadable(String),
    #[error("larger than {0} bytes")]
    TooLarge(u64),
    #[error("the file is empty")]
    Empty,
    #[error("stream did not contain valid UTF-8")]
    NotUtf8,
    #[error("no CERTIFICATE block")]
    NoCertificate,
    #[error("an unreadable CERTIFICATE block")]
    BadCertificate,
    #[error("no private key block")]
    NoPrivateKey,
    #[error("the private key is not an RSA key (RS256 is required)")]
    NotRsa,
    #[error("the private key is not a usable RSA key: {0}")]
    UnusableKey(String),
    #[error("the clock is before 1970")]
    ClockBeforeEpoch,
    #[error("the RSA signature failed")]
    SigningFailed,
}

/// The bytes of the credential file `path`, at most `max`.
pub(crate) fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, CredentialError> {
    let unreadable = |e: std::io::Error| CredentialError::Unreadable(e.to_string());
    let size = std::fs::metadata(path).map_err(unreadable)?.len();
    if size > max {
        return Err(CredentialError::TooLarge(max));
    }
    std::fs::read(path).map_err(unreadable)
}

/// The secret in the file `path` (a client secret, a federated token), trimmed, at most `max`
/// bytes.
pub(crate) fn read_secret(path: &Path, max: u64) -> Result<Secret, CredentialError> {
    let bytes = read_bounded(path, max)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| CredentialError::NotUtf8)?;
    match text.trim() {
        "" => Err(CredentialError::Empty),
        secret => Ok(Secret::new(secret)),
    }
}

/// The certificate credential: the key that signs and the thumbprint that names it.
pub(crate) struct Certificate {
    key: RsaKeyPair,
    thumbprint: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("x5t#S256", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

impl Certificate {
    /// Reads the certificate and its RSA private key from the PEM file at `path`; the error
    /// says what is wrong with the file, never what it holds.
    pub(crate) fn load(path: &Path) -> Result<Certificate, CredentialError> {
        let pem = read_bounded(path, FILE_BYTES_MAX)?;
        let certificate = CertificateDer::pem_slice_iter(&pem)
            .next()
            .ok_or(CredentialError::NoCertificate)?
            .map_err(|_| CredentialError::BadCertificate)?;
        let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|_| CredentialError::NoPrivateKey)?;
        let key = match key {
            PrivateKeyDer::Pkcs8(der) => RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(der) => RsaKeyPair::from_der(der.secret_pkcs1_der()),
            _ => return Err(CredentialError::NotRsa),
        }
        .map_err(|e| CredentialError::UnusableKey(e.to_string()))?;
        Ok(Certificate {
            key,
            thumbprint: URL_SAFE_NO_PAD.encode(Sha256::digest(certificate.as_ref())),
            rng: SystemRandom::new(),
        })
    }

    /// The signed assertion for the token endpoint `audience`, made at `now`.
    pub(crate) fn assertion(
        &self,
        audience: &str,
        client_id: &str,
        now: SystemTime,
    ) -> Result<String, CredentialError> {
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_err(|_| CredentialError::ClockBeforeEpoch)?
            .as_secs();
        let header = json!({"alg": "RS256", "typ": "JWT", "x5t#S256": self.thumbprint});
        let claims = json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "nbf": now,
            "iat": now,
            "exp": now + LIFETIME.as_secs(),
        });
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &self.rng,
                signed.as_bytes(),
                &mut signature,
            )
            .map_err(|_| CredentialError::SigningFailed)?;
        Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        format!(
            "{}/../test-support/fixtures/azure/{name}",
            env!("CARGO_MANIFEST_DIR")
        )
        .into()
    }

    #[test]
    fn an_assertion_names_the_certificate_and_the_endpoint() {
        let certificate = Certificate::load(&fixture("client-certificate.pem")).unwrap();
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let jwt = certificate
            .assertion("https://login.example/t/oauth2/v2.0/token", "c", at)
            .unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let part = |i: usize| -> serde_json::Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[i]).unwrap()).unwrap()
        };
        assert_eq!(part(0)["alg"], "RS256");
        assert_eq!(part(0)["x5t#S256"].as_str().unwrap().len(), 43);
        assert_eq!(part(1)["aud"], "https://login.example/t/oauth2/v2.0/token");
        assert_eq!(
            (part(1)["iss"].clone(), part(1)["sub"].clone()),
            ("c".into(), "c".into())
        );
        assert_eq!(part(1)["exp"], 1_800_000_600);
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().len(), 256);
        assert!(!format!("{certificate:?}").contains("PRIVATE"));
    }

    #[test]
    fn a_file_without_a_usable_key_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let only_cert = dir.path().join("cert.pem");
        let text = std::fs::read_to_string(fixture("client-certificate.pem")).unwrap();
        let cert_end = text.find("-----END CERTIFICATE-----").unwrap() + 25;
        std::fs::write(&only_cert, &text[..cert_end]).unwrap();
        assert_eq!(
            Certificate::load(&only_cert).unwrap_err(),
            CredentialError::NoPrivateKey
        );
        let missing = dir.path().join("nope.pem");
        assert!(
            Certificate::load(&missing)
                .unwrap_err()
                .to_string()
                .contains("No such file")
        );
    }
}
