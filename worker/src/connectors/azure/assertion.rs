//! Client assertions for Microsoft Entra ID's certificate credential: a JWT signed with the
//! certificate's RSA key (RS256, by ring), naming the certificate by its SHA-256 thumbprint
//! (`x5t#S256`), for one token endpoint (`aud`), from the application (`iss` = `sub` =
//! client id), valid for [`LIFETIME`] from now, with a fresh `jti`.
//!
//! The PEM file holds the certificate and its private key (PKCS#8 or PKCS#1), in any order.
//! The key never leaves this module; `Debug` shows only the thumbprint.

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

/// How long an assertion is valid (Entra takes it once, right away).
pub(crate) const LIFETIME: Duration = Duration::from_secs(600);
/// Largest certificate file read.
const FILE_BYTES_MAX: u64 = 64 * 1024;

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
    pub(crate) fn load(path: &Path) -> Result<Certificate, String> {
        let size = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
        if size > FILE_BYTES_MAX {
            return Err(format!("larger than {FILE_BYTES_MAX} bytes"));
        }
        let pem = std::fs::read(path).map_err(|e| e.to_string())?;
        let certificate = CertificateDer::pem_slice_iter(&pem)
            .next()
            .ok_or("no CERTIFICATE block")?
            .map_err(|_| "an unreadable CERTIFICATE block")?;
        let key = match PrivateKeyDer::from_pem_slice(&pem).map_err(|_| "no private key block")? {
            PrivateKeyDer::Pkcs8(der) => RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(der) => RsaKeyPair::from_der(der.secret_pkcs1_der()),
            _ => return Err("the private key is not an RSA key (RS256 is required)".into()),
        }
        .map_err(|e| format!("the private key is not a usable RSA key: {e}"))?;
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
    ) -> Result<String, String> {
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_err(|_| "the clock is before 1970")?
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
            .map_err(|_| "the RSA signature failed")?;
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
            "no private key block"
        );
        let missing = dir.path().join("nope.pem");
        assert!(
            Certificate::load(&missing)
                .unwrap_err()
                .contains("No such file")
        );
    }
}
