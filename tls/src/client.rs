//! The gRPC client side of TLS: the CA that signed the server's certificate, and the client
//! certificate (with its key) that identifies this worker or operator, if any.

use std::path::PathBuf;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, Uri};

use crate::pem;

/// The files a client is configured from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    /// The CA certificate(s) the server's certificate must chain to.
    pub ca: PathBuf,
    /// This client's certificate and key.
    pub cert: Option<(PathBuf, PathBuf)>,
}

/// The tonic configuration for `files`, checking the server's certificate against the host of
/// `uri` (a DNS name or an IP address, brackets and all).
pub fn config(files: &Files, uri: &Uri) -> Result<ClientTlsConfig, pem::Error> {
    let domain = uri.host().unwrap_or_default().trim_matches(['[', ']']);
    pem::certs(&files.ca)?;
    let mut config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pem::read(&files.ca)?))
        .domain_name(domain);
    if let Some((cert, key)) = &files.cert {
        pem::certs(cert)?;
        pem::key(key)?;
        config = config.identity(Identity::from_pem(pem::read(cert)?, pem::read(key)?));
    }
    Ok(config)
}
