//! Operators' OIDC bearer tokens: JWTs from Entra ID or another OpenID provider, verified
//! against the keys the provider publishes (its JWKS, fetched and cached by `jwks`) and then against this
//! orchestrator's issuer, audience and tenant and the token's validity period. The answer is
//! the operator's [`Claims`], or a [`Refusal`] saying why in a few words, never quoting the
//! token, its signature or a key.
//!
//! Only asymmetric algorithms are accepted ([`ALGORITHMS`]), each only with a key of its type:
//! the algorithm a token's header names is checked before anything else, so `none`, `HS256`
//! with a public key as its secret, or an RSA algorithm naming an EC key, is refused before any
//! key is fetched or used.
//!
//! The verifier reads no clock: each call passes `now` (Unix seconds), which decides `exp`,
//! `nbf` and when the keys are fetched again. jsonwebtoken's own time checks, which would read
//! the system clock, are off.

mod jwks;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

/// The algorithms a token may be signed with, by the name its header gives.
pub const ALGORITHMS: &[(&str, Algorithm)] = &[
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
];

/// Longest token accepted, in bytes.
pub const TOKEN_BYTES_MAX: usize = 16 * 1024;

/// The allowed algorithm named `name`.
fn allowed(name: &str) -> Option<Algorithm> {
    ALGORITHMS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, alg)| *alg)
}

/// The name of `alg`, one of [`ALGORITHMS`].
fn name(alg: Algorithm) -> &'static str {
    ALGORITHMS
        .iter()
        .find(|(_, a)| *a == alg)
        .map_or("unknown", |(n, _)| n)
}

/// Where tokens come from and whom they must be for: the orchestrator's OIDC flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfig {
    /// The exact `iss` required, e.g. `https://login.microsoftonline.com/{tid}/v2.0`.
    pub issuer: String,
    /// The `aud` required: the claim's one string, or one element of its array.
    pub audience: String,
    /// Where the provider publishes its keys: an https URL (http only for a loopback host).
    pub jwks_url: String,
    /// When set, the `tid` claim must equal it (Entra ID's tenant).
    pub tenant: Option<String>,
    /// The clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
}

impl OidcConfig {
    /// The clock skew allowed unless configured otherwise.
    pub const LEEWAY_DEFAULT: Duration = Duration::from_secs(60);
}

/// Why a verifier could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the OIDC {0} is empty")]
    Empty(&'static str),
    #[error("the OIDC JWKS URL {url} {why}")]
    JwksUrl { url: String, why: &'static str },
    #[error("the OIDC CA: {0}")]
    Ca(#[from] riposte_tls::pem::Error),
    #[error("the OIDC CA: {0}")]
    CaCertificate(reqwest::Error),
    #[error("building the OIDC HTTP client: {0}")]
    Client(reqwest::Error),
}

/// Why a token was refused. The text is a short reason for the operator and the log; it never
/// quotes the token, a signature or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the token expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's audience is not this orchestrator's")]
    WrongAudience,
    #[error("the token's issuer is not the one this orchestrator trusts")]
    WrongIssuer,
    #[error("the token's tenant is not the one this orchestrator trusts")]
    WrongTenant,
    #[error("the token's signature does not verify")]
    BadSignature,
    /// The token's `kid` is not in the JWKS, even after fetching it again.
    #[error("the token is signed by a key the identity provider does not publish")]
    UnknownKey,
    /// `none`, HMAC, anything outside [`ALGORITHMS`], or an algorithm that does not fit the
    /// type of the key the token names. The name is at most 16 characters, escaped.
    #[error("the token's algorithm {0} is not allowed")]
    AlgorithmNotAllowed(String),
    #[error("the token is malformed: {0}")]
    Malformed(String),
    /// The JWKS could not be fetched and no earlier fetch succeeded.
    #[error("the identity provider's keys are unavailable: {0}")]
    KeysUnavailable(String),
    #[error("the token has no {0} claim")]
    MissingClaim(&'static str),
}

/// Who a verified token says the operator is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// Entra ID's `oid` (the user's object id, the same in every application) when present,
    /// else `sub`.
    pub subject: String,
    /// `tid`.
    pub tenant: Option<String>,
    /// `preferred_username`, else `upn`, else `name`: for display and audit, never for
    /// decisions.
    pub name: Option<String>,
    /// The `groups` claim's values, then the `roles` claim's. Entra ID leaves `groups` out of
    /// a token whose user is in too many groups (it says so in `_claim_names` instead): those
    /// groups are not looked up, so only the `roles` are here then.
    pub groups: Vec<String>,
}

/// Verifies operators' bearer tokens: the configuration, an HTTP client and the cached JWKS.
pub struct Verifier {
    config: OidcConfig,
    leeway_s: i64,
    keys: jwks::Keys,
}

impl Verifier {
    /// A verifier for `config`. `ca`: a PEM file of the CA certificates the JWKS server's
    /// certificate must chain to, instead of the public roots. Nothing is fetched yet: the
    /// first [`Verifier::verify`] fetches the keys.
    pub fn new(config: OidcConfig, ca: Option<&Path>) -> Result<Verifier, Error> {
        for (what, value) in [
            ("issuer", Some(&config.issuer)),
            ("audience", Some(&config.audience)),
            ("tenant", config.tenant.as_ref()),
        ] {
            if value.is_some_and(|v| v.is_empty()) {
                return Err(Error::Empty(what));
            }
        }
        let url = jwks_url(&config.jwks_url)?;
        let client = client(ca, url.scheme() == "https")?;
        Ok(Verifier {
            leeway_s: i64::try_from(config.leeway.as_secs()).unwrap_or(i64::MAX),
            keys: jwks::Keys::new(url, client),
            config,
        })
    }

    /// Verifies `token` at `now_s` (Unix seconds, read by the caller) and answers its claims.
    pub async fn verify(&self, token: &str, now_s: i64) -> Result<Claims, Refusal> {
        let header = Header::parse(token)?;
        let key = self.key(header.kid.as_deref(), header.alg, now_s).await?;
        let claims = self.signed_claims(token, &key, header.alg)?;
        self.check(claims, now_s)
    }

    /// The key for a token naming `kid` and `alg`: from the cache, else from the JWKS fetched
    /// again (first use, keys over an hour old, or a `kid` the cache lacks).
    async fn key(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        now_s: i64,
    ) -> Result<Arc<jwks::Key>, Refusal> {
        let mut set = self.keys.current();
        if set.fetched_s.is_none() {
            self.keys.refresh(&set, now_s, true).await;
            set = self.keys.current();
        } else if set.stale(now_s) {
            // Old keys keep working while another caller fetches, or when the fetch fails.
            self.keys.refresh(&set, now_s, false).await;
            set = self.keys.current();
        }
        if set.fetched_s.is_none() {
            return Err(Refusal::KeysUnavailable(self.keys.failure()));
        }
        match set.find(kid, alg) {
            jwks::Lookup::Found(key) => return Ok(key),
            jwks::Lookup::Unfit => return Err(not_allowed(name(alg))),
            jwks::Lookup::Missing => {}
        }
        self.keys.refresh(&set, now_s, true).await;
        match self.keys.current().find(kid, alg) {
            jwks::Lookup::Found(key) => Ok(key),
            jwks::Lookup::Unfit => Err(not_allowed(name(alg))),
            jwks::Lookup::Missing => Err(Refusal::UnknownKey),
        }
    }

    /// The claims of `token` once its signature verifies with `key`. jsonwebtoken checks the
    /// issuer and the audience too (when present); [`Verifier::check`] checks them again, with
    /// everything else.
    fn signed_claims(
        &self,
        token: &str,
        key: &jwks::Key,
        alg: Algorithm,
    ) -> Result<RawClaims, Refusal> {
        let mut validation = Validation::new(alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims.clear();
        validation.leeway = 0;
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        let decoded = jsonwebtoken::decode::<RawClaims>(token, &key.decoding, &validation);
        decoded.map(|data| data.claims).map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => Refusal::BadSignature,
            ErrorKind::InvalidIssuer => Refusal::WrongIssuer,
            ErrorKind::InvalidAudience => Refusal::WrongAudience,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => not_allowed(name(alg)),
            ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat => {
                Refusal::KeysUnavailable("the key the token names is not usable".to_string())
            }
            ErrorKind::Base64(_) => malformed("a part is not base64url"),
            ErrorKind::Json(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidClaimFormat(_) => {
                malformed("its claims are not a JSON object of the expected types")
            }
            _ => malformed("it is not a signed JWT this orchestrator understands"),
        })
    }

    /// Checks the claims of a token whose signature verified, at `now_s`.
    fn check(&self, claims: RawClaims, now_s: i64) -> Result<Claims, Refusal> {
        let exp = claims.exp.ok_or(Refusal::MissingClaim("exp"))?;
        let issuer = claims.iss.ok_or(Refusal::MissingClaim("iss"))?;
        if issuer != self.config.issuer {
            return Err(Refusal::WrongIssuer);
        }
        let audience = claims.aud.ok_or(Refusal::MissingClaim("aud"))?;
        if !audience.contains(&self.config.audience) {
            return Err(Refusal::WrongAudience);
        }
        if let Some(tenant) = &self.config.tenant {
            let tid = claims.tid.as_ref().ok_or(Refusal::MissingClaim("tid"))?;
            if tid != tenant {
                return Err(Refusal::WrongTenant);
            }
        }
        // Fractions are rounded against the token; `as` saturates.
        if now_s >= (exp.floor() as i64).saturating_add(self.leeway_s) {
            return Err(Refusal::Expired);
        }
        if let Some(nbf) = claims.nbf
            && now_s < (nbf.ceil() as i64).saturating_sub(self.leeway_s)
        {
            return Err(Refusal::NotYetValid);
        }
        let subject = [claims.oid, claims.sub]
            .into_iter()
            .flatten()
            .find(|s| !s.is_empty())
            .ok_or(Refusal::MissingClaim("sub"))?;
        let name = [claims.preferred_username, claims.upn, claims.name]
            .into_iter()
            .flatten()
            .find(|s| !s.is_empty());
        let mut groups = claims.groups.unwrap_or_default();
        groups.extend(claims.roles.unwrap_or_default());
        Ok(Claims {
            subject,
            tenant: claims.tid,
            name,
            groups,
        })
    }
}

/// The JWKS URL, https, or http to a loopback host.
fn jwks_url(text: &str) -> Result<reqwest::Url, Error> {
    let refused = |why| Error::JwksUrl {
        url: text.to_string(),
        why,
    };
    let url = reqwest::Url::parse(text).map_err(|_| refused("is not a URL"))?;
    let host = url.host_str().ok_or_else(|| refused("has no host"))?;
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        "http" => Err(refused(
            "is not https (plain http is allowed for a loopback host only)",
        )),
        _ => Err(refused("is not https")),
    }
}

/// The client that fetches the JWKS: rustls (with `ca`'s certificates alone when given), the
/// timeouts of [`jwks`], no redirects, no proxy from the environment.
#[expect(
    clippy::disallowed_methods,
    reason = "the OIDC verifier fetches its identity provider's keys with a client of its own, bounded in time and size"
)]
fn client(ca: Option<&Path>, https_only: bool) -> Result<reqwest::Client, Error> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(jwks::CONNECT_TIMEOUT)
        .timeout(jwks::FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .https_only(https_only)
        .user_agent(concat!("riposte-orchestrator/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca {
        builder = builder.tls_built_in_root_certs(false);
        for cert in riposte_tls::pem::certs(path)? {
            let cert = reqwest::Certificate::from_der(&cert).map_err(Error::CaCertificate)?;
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(Error::Client)
}

/// What the verifier reads of a token's header, read before any key is looked up.
struct Header {
    alg: Algorithm,
    kid: Option<String>,
}

impl Header {
    /// The header of `token`, whose algorithm must be one of [`ALGORITHMS`].
    fn parse(token: &str) -> Result<Header, Refusal> {
        if token.len() > TOKEN_BYTES_MAX {
            return Err(malformed("it is longer than 16 KiB"));
        }
        let mut parts = token.split('.');
        let (Some(header), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("it is not three parts separated by dots"));
        };
        #[derive(Deserialize)]
        struct Raw {
            alg: String,
            kid: Option<String>,
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| malformed("its header is not base64url"))?;
        let raw: Raw = serde_json::from_slice(&bytes)
            .map_err(|_| malformed("its header is not a JSON object naming an algorithm"))?;
        let alg = allowed(&raw.alg).ok_or_else(|| not_allowed(&raw.alg))?;
        Ok(Header { alg, kid: raw.kid })
    }
}

/// The claims the verifier reads. A claim of another type makes the token malformed.
#[derive(Deserialize)]
struct RawClaims {
    iss: Option<String>,
    aud: Option<Audience>,
    exp: Option<f64>,
    nbf: Option<f64>,
    sub: Option<String>,
    oid: Option<String>,
    tid: Option<String>,
    preferred_username: Option<String>,
    upn: Option<String>,
    name: Option<String>,
    groups: Option<Vec<String>>,
    roles: Option<Vec<String>>,
}

/// The `aud` claim: one string or an array of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(one) => one == audience,
            Audience::Many(many) => many.iter().any(|a| a == audience),
        }
    }
}

fn malformed(why: &str) -> Refusal {
    Refusal::Malformed(why.to_string())
}

/// The refusal of algorithm `name`, its first 16 characters escaped.
fn not_allowed(name: &str) -> Refusal {
    Refusal::AlgorithmNotAllowed(name.chars().take(16).flat_map(char::escape_debug).collect())
}
