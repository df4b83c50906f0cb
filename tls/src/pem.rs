//! Certificates and private keys read from PEM files. An error names the file and what is
//! wrong with it, never its content.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate or key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a PEM file of {what}: {why}", path.display())]
    Unreadable {
        path: PathBuf,
        what: &'static str,
        why: String,
    },
    #[error("{}: holds no {what}", path.display())]
    Empty { path: PathBuf, what: &'static str },
    #[error("{}: {why}", path.display())]
    Refused { path: PathBuf, why: String },
}

/// Every certificate in `path`, in order (a leaf first, then its chain); at least one.
pub fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let text = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(path, "certificates", e))?;
    match certs.is_empty() {
        true => Err(Error::Empty {
            path: path.to_path_buf(),
            what: "certificate",
        }),
        false => Ok(certs),
    }
}

/// The private key in `path` (PKCS#8, PKCS#1 or SEC1).
pub fn key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let text = read(path)?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => Error::Empty {
            path: path.to_path_buf(),
            what: "private key",
        },
        e => unreadable(path, "a private key", e),
    })
}

/// The bytes of `path`.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn unreadable(path: &Path, what: &'static str, e: rustls_pki_types::pem::Error) -> Error {
    // The PEM error text describes the framing, never the bytes.
    Error::Unreadable {
        path: path.to_path_buf(),
        what,
        why: e.to_string(),
    }
}
