//! Who a client certificate names. An identity is a role and a name, carried as a URI in the
//! certificate's subject alternative names, in the SPIFFE form
//! `spiffe://TRUST-DOMAIN/ROLE/NAME` (`worker` or `operator`); the trust domain is not
//! checked here (the CA that signed the certificate is what is trusted). Only a certificate the
//! server verified is ever read: [`Identity::of`] takes the verified chain's leaf.

use std::fmt;

use rustls_pki_types::CertificateDer;

/// The trust domain of the certificates Riposte issues.
pub const TRUST_DOMAIN: &str = "riposte";
/// Longest identity name.
pub const NAME_BYTES_MAX: usize = 64;

/// What a certificate allows its holder to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Worker,
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Worker => "worker",
            Role::Operator => "operator",
        }
    }
}

/// A verified identity: `worker fw-edge-1`, `operator alice`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    pub role: Role,
    pub name: String,
}

/// Why a name cannot be an identity's.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not an identity name: 1 to {NAME_BYTES_MAX} letters, digits, `.`, `-` or `_`")]
pub struct InvalidName(pub String);

impl Identity {
    /// `role` and `name`, if `name` is a valid identity name.
    pub fn new(role: Role, name: &str) -> Result<Identity, InvalidName> {
        match valid_name(name) {
            true => Ok(Identity {
                role,
                name: name.to_string(),
            }),
            false => Err(InvalidName(name.to_string())),
        }
    }

    /// The URI a certificate carries for this identity.
    pub fn uri(&self) -> String {
        format!(
            "spiffe://{TRUST_DOMAIN}/{}/{}",
            self.role.as_str(),
            self.name
        )
    }

    /// The identity a verified leaf certificate names: its first URI SAN of the form
    /// `spiffe://DOMAIN/ROLE/NAME`. `None` for a certificate without one.
    pub fn of(leaf: &CertificateDer<'_>) -> Option<Identity> {
        let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
        let sans = cert.subject_alternative_name().ok()??;
        sans.value.general_names.iter().find_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => Identity::parse_uri(uri),
            _ => None,
        })
    }

    /// `spiffe://DOMAIN/ROLE/NAME` as an identity.
    pub fn parse_uri(uri: &str) -> Option<Identity> {
        let rest = uri.strip_prefix("spiffe://")?;
        let (domain, path) = rest.split_once('/')?;
        let (role, name) = path.split_once('/')?;
        if domain.is_empty() {
            return None;
        }
        let role = match role {
            "worker" => Role::Worker,
            "operator" => Role::Operator,
            _ => return None,
        };
        Identity::new(role, name).ok()
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.role.as_str(), self.name)
    }
}

fn valid_name(name: &str) -> bool {
    (1..=NAME_BYTES_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_only_in_their_one_form() {
        let fw = Identity::new(Role::Worker, "fw-edge-1").unwrap();
        assert_eq!(fw.uri(), "spiffe://riposte/worker/fw-edge-1");
        assert_eq!(Identity::parse_uri(&fw.uri()), Some(fw.clone()));
        assert_eq!(
            Identity::parse_uri("spiffe://corp.example/operator/alice"),
            Some(Identity::new(Role::Operator, "alice").unwrap())
        );
        for bad in [
            "https://riposte/worker/x",
            "spiffe:///worker/x",
            "spiffe://riposte/admin/x",
            "spiffe://riposte/worker/",
            "spiffe://riposte/worker/a/b",
            "spiffe://riposte/worker/a b",
        ] {
            assert_eq!(Identity::parse_uri(bad), None, "{bad}");
        }
        assert!(Identity::new(Role::Worker, &"x".repeat(65)).is_err());
        assert_eq!(fw.to_string(), "worker fw-edge-1");
    }
}
