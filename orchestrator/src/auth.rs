//! Operator authentication and authorization: who an operator request comes from, decided by
//! the server from what it verified, and what the operator policy lets that principal do.
//!
//! - [`principal`]: [`Principal`] and the [`Method`] that established it.
//! - [`tokens`]: static API tokens, stored hashed.
//! - [`oidc`]: OIDC bearer tokens (JWTs) verified against the issuer's keys (Entra ID).
//! - [`policy`]: roles, permissions, groups and the platform's rules; default deny.
//! - [`Authenticator`]: credentials (a client certificate, a bearer token) to a principal.
//!
//! The gRPC edge authenticates each operator request ([`Authenticator::authenticate`]); the
//! request door authorizes it against the [`Policy`] ([`crate::door::Node::handle`]).

pub mod oidc;
pub mod policy;
pub mod principal;
pub mod tokens;

use std::sync::{Arc, PoisonError, RwLock};

use riposte_tls::{Identity, Role};

pub use policy::{Grants, Permission, Policy};
pub use principal::{Method, Principal};
pub use tokens::Tokens;

/// What an operator request presented: the identity its client certificate names (verified
/// by TLS), and the bearer token of its `authorization` header.
#[derive(Debug, Default)]
pub struct Credentials {
    pub certificate: Option<Identity>,
    pub bearer: Option<String>,
}

/// Why credentials establish no principal; the text never quotes a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(
        "no credentials: present an operator certificate, an API token or an OIDC token \
         (`authorization: Bearer …`)"
    )]
    Missing,
    #[error("{0} holds a worker certificate, which cannot call the operator API")]
    WorkerCertificate(String),
    #[error("the API token is not in the tokens file")]
    UnknownToken,
    #[error("the bearer token is not an API token, and no OIDC issuer is configured")]
    NoIssuer,
    #[error("the OIDC token is refused: {0}")]
    Oidc(#[from] oidc::Refusal),
    #[error("the `authorization` header is not `Bearer TOKEN`")]
    MalformedHeader,
}

/// Turns credentials into a principal. Its token file is replaced on reload.
pub struct Authenticator {
    tokens: RwLock<Arc<Tokens>>,
    /// The OIDC issuer's verifier, when one is configured.
    oidc: Option<oidc::Verifier>,
    clock: crate::clock::Clock,
}

impl Authenticator {
    pub fn new(
        tokens: Tokens,
        oidc: Option<oidc::Verifier>,
        clock: crate::clock::Clock,
    ) -> Authenticator {
        Authenticator {
            tokens: RwLock::new(Arc::new(tokens)),
            oidc,
            clock,
        }
    }

    /// Replaces the tokens (a reload of the file).
    pub fn set_tokens(&self, tokens: Tokens) {
        *self.tokens.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(tokens);
    }

    /// The principal `credentials` prove. A bearer token, when present, decides (a person's
    /// token over the machine's certificate); else the client certificate.
    pub async fn authenticate(&self, credentials: &Credentials) -> Result<Principal, Refused> {
        if let Some(bearer) = &credentials.bearer {
            if bearer.starts_with(tokens::PREFIX) {
                let tokens = self
                    .tokens
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                return match tokens.name_of(bearer) {
                    Some(name) => Ok(Principal::new(Method::Token, name)),
                    None => Err(Refused::UnknownToken),
                };
            }
            let Some(verifier) = &self.oidc else {
                return Err(Refused::NoIssuer);
            };
            let now_s = self.clock.now_ms() / 1000;
            let claims = verifier.verify(bearer, now_s).await?;
            let mut principal = Principal::new(Method::Oidc, &claims.subject);
            principal.groups = claims.groups;
            principal.label = claims.name;
            return Ok(principal);
        }
        match &credentials.certificate {
            Some(identity) if identity.role == Role::Operator => {
                Ok(Principal::new(Method::Certificate, &identity.name))
            }
            Some(identity) => Err(Refused::WorkerCertificate(identity.to_string())),
            None => Err(Refused::Missing),
        }
    }
}

/// The bearer token of an `authorization` header value.
pub fn bearer(header: &str) -> Result<String, Refused> {
    let (scheme, token) = header.split_once(' ').ok_or(Refused::MalformedHeader)?;
    let token = token.trim();
    match scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() {
        true => Ok(token.to_string()),
        false => Err(Refused::MalformedHeader),
    }
}
