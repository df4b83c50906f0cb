//! Who a request comes from, as the server established it: a [`Principal`] (an id in one
//! namespace per way of proving it, and the groups the proof itself carries) and the
//! [`Method`] that proved it. Nothing a client types becomes part of a principal.

use std::fmt;

/// How a principal was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// A client certificate issued by the client CA, naming `spiffe://…/operator/NAME`.
    Certificate,
    /// A static API token from the tokens file.
    Token,
    /// An OIDC bearer token (a JWT) from the configured issuer.
    Oidc,
    /// The orchestrator itself, acting for an alert rule or a schedule.
    Service,
}

impl Method {
    /// The stable name, in audit records and `riposte whoami`.
    pub fn name(self) -> &'static str {
        match self {
            Method::Certificate => "certificate",
            Method::Token => "token",
            Method::Oidc => "oidc",
            Method::Service => "service",
        }
    }

    /// The namespace of the ids it establishes: `cert:alice`, `token:ci`, `oidc:OID`.
    fn prefix(self) -> &'static str {
        match self {
            Method::Certificate => "cert",
            Method::Token => "token",
            Method::Oidc => "oidc",
            Method::Service => "service",
        }
    }
}

/// An authenticated principal. Its `id` is what policies bind, approvals count and histories
/// record; `groups` are the groups its proof carries (an OIDC token's `groups` and `roles`
/// claims); the policy file adds the groups it lists the principal in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: String,
    pub method: Method,
    pub groups: Vec<String>,
    /// A display name the proof carries (`preferred_username`), for people reading logs.
    pub label: Option<String>,
}

impl Principal {
    /// `METHOD:NAME`, e.g. `cert:alice`.
    pub fn new(method: Method, name: &str) -> Principal {
        Principal {
            id: format!("{}:{name}", method.prefix()),
            method,
            groups: Vec::new(),
            label: None,
        }
    }

    /// The service principal an alert rule starts runs as.
    pub fn rule(name: &str) -> Principal {
        Principal::new(Method::Service, &format!("rule/{name}"))
    }

    /// The service principal a schedule starts runs as.
    pub fn schedule(name: &str) -> Principal {
        Principal::new(Method::Service, &format!("schedule/{name}"))
    }
}

/// Whether `id` is a schedule's service principal (runs it starts may be exempt from an
/// approval rule).
pub fn is_schedule(id: &str) -> bool {
    id.starts_with("service:schedule/")
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}
