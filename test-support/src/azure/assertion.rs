//! The local token endpoint's checks of client assertions, as Microsoft Entra ID documents
//! them: a certificate credential's JWT (RS256, `x5t#S256` naming a trusted certificate, `aud`
//! the token endpoint, `iss` = `sub` = the client id, within its `nbf`..`exp`), and a
//! federated token (workload identity: a JWT of a trusted issuer for the federated subject,
//! `aud` `api://AzureADTokenExchange`). Refusals carry Entra's `AADSTS` codes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The audience of a federated token Entra exchanges.
pub const FEDERATED_AUDIENCE: &str = "api://AzureADTokenExchange";
/// The issuer the local Entra trusts for federated tokens.
pub const FEDERATED_ISSUER: &str = "https://oidc.example.com/riposte-test";
/// The subject its federated credential names.
pub const FEDERATED_SUBJECT: &str = "system:serviceaccount:riposte:worker";
/// Clock skew allowed on `nbf` and `exp`, in seconds.
const SKEW_SECS: i64 = 300;

/// A trusted client certificate: its `x5t#S256` and RSA public key.
#[derive(Debug, Clone)]
pub(super) struct Trusted {
    thumbprint: String,
    public_key: Vec<u8>,
}

impl Trusted {
    /// From the certificate in `pem` (the first CERTIFICATE block).
    pub(super) fn from_pem(pem: &str) -> Trusted {
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("a PEM block");
        let certificate = block.parse_x509().expect("an X.509 certificate");
        Trusted {
            thumbprint: URL_SAFE_NO_PAD.encode(Sha256::digest(&block.contents)),
            public_key: certificate.public_key().subject_public_key.data.to_vec(),
        }
    }
}

/// An issuer of federated tokens (a Kubernetes cluster's service account issuer, say), with a
/// P-256 key made for the test.
#[derive(Debug)]
pub struct FederatedIssuer {
    key: EcdsaKeyPair,
}

impl FederatedIssuer {
    pub(super) fn new() -> FederatedIssuer {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("a P-256 key");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("the key reads back");
        FederatedIssuer { key }
    }

    pub(super) fn public_key(&self) -> Vec<u8> {
        self.key.public_key().as_ref().to_vec()
    }

    /// A federated token for the trusted subject, valid from `now + from` to `now + until`
    /// seconds.
    pub fn token(&self, from: i64, until: i64) -> String {
        let now = now_secs();
        let claims = json!({
            "iss": FEDERATED_ISSUER,
            "sub": FEDERATED_SUBJECT,
            "aud": [FEDERATED_AUDIENCE],
            "iat": now + from,
            "nbf": now + from,
            "exp": now + until,
        });
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "typ": "JWT"}).to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let rng = ring::rand::SystemRandom::new();
        let signature = self.key.sign(&rng, signed.as_bytes()).expect("signed");
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

/// What the endpoint knows to check assertions against.
#[derive(Debug, Default)]
pub(super) struct Trust {
    pub(super) certificates: Vec<Trusted>,
    /// The federated issuer's public key (uncompressed P-256 point).
    pub(super) federated: Option<Vec<u8>>,
    /// Seconds the endpoint's clock runs ahead of the machine's.
    pub(super) clock_ahead: i64,
}

/// Why an assertion is refused: Entra's error and description.
pub(super) type Refusal = (&'static str, String);

impl Trust {
    /// Checks `assertion` from `client_id` for the token endpoint `audience`.
    pub(super) fn check(
        &self,
        assertion: &str,
        client_id: &str,
        audience: &str,
    ) -> Result<(), Refusal> {
        let malformed = || {
            (
                "invalid_client",
                "AADSTS50027: JWT token is invalid or malformed.".to_owned(),
            )
        };
        let parts: Vec<&str> = assertion.split('.').collect();
        let [header, claims, signature] = parts[..] else {
            return Err(malformed());
        };
        let decode = |part: &str| -> Option<Value> {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
        };
        let (Some(header), Some(claims), Ok(signature)) = (
            decode(header),
            decode(claims),
            URL_SAFE_NO_PAD.decode(signature),
        ) else {
            return Err(malformed());
        };
        let signed = &assertion[..assertion.rfind('.').expect("three parts")];
        match header["x5t#S256"].as_str() {
            Some(thumbprint) => {
                let invalid = || {
                    (
                        "invalid_client",
                        "AADSTS700027: Client assertion contains an invalid signature.".to_owned(),
                    )
                };
                let trusted = self
                    .certificates
                    .iter()
                    .find(|t| t.thumbprint == thumbprint)
                    .ok_or_else(invalid)?;
                UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &trusted.public_key)
                    .verify(signed.as_bytes(), &signature)
                    .map_err(|_| invalid())?;
                if header["alg"] != "RS256"
                    || claims["aud"] != audience
                    || claims["iss"] != client_id
                    || claims["sub"] != client_id
                {
                    return Err(malformed());
                }
            }
            None => {
                let unmatched = || {
                    (
                        "invalid_client",
                        "AADSTS70021: No matching federated identity record found for presented assertion.".to_owned(),
                    )
                };
                let key = self.federated.as_ref().ok_or_else(unmatched)?;
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key)
                    .verify(signed.as_bytes(), &signature)
                    .map_err(|_| unmatched())?;
                let audience_ok = claims["aud"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|v| v == FEDERATED_AUDIENCE))
                    || claims["aud"] == FEDERATED_AUDIENCE;
                if claims["iss"] != FEDERATED_ISSUER
                    || claims["sub"] != FEDERATED_SUBJECT
                    || !audience_ok
                {
                    return Err(unmatched());
                }
            }
        }
        let now = now_secs() + self.clock_ahead;
        let (nbf, exp) = (claims["nbf"].as_i64(), claims["exp"].as_i64());
        match (nbf, exp) {
            (Some(nbf), Some(exp)) if nbf - SKEW_SECS <= now && now < exp + SKEW_SECS => Ok(()),
            _ => Err((
                "invalid_client",
                "AADSTS700024: Client assertion is not within its valid time range.".to_owned(),
            )),
        }
    }
}

#[expect(
    clippy::disallowed_methods,
    reason = "the local token endpoint reads the time as Entra does, from the machine's clock"
)]
fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}
