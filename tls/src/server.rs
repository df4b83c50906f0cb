//! The server side of every TLS listener: a rustls configuration built from three files (the
//! certificate chain, its key, and optionally the CA that issues client certificates), and
//! rebuilt when they change. A connection takes the configuration current when it is accepted,
//! so a reload never touches a connection already open; a reload that fails (a half-written
//! file, a key that does not match) keeps the previous configuration and says why.
//!
//! With a client CA, a client certificate is verified whenever one is presented (a certificate
//! from another CA, or expired, fails the handshake), and a client without one may still
//! connect: what it may then do is decided per request, from [`crate::Identity`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

use crate::pem;

/// The files a TLS listener is configured from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    /// The server certificate, then its chain, PEM.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
    /// The CA certificates that client certificates must chain to; none: no client
    /// certificates are asked for.
    pub client_ca: Option<PathBuf>,
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Pem(#[from] pem::Error),
    #[error("{}: {why}", path.display())]
    Refused { path: PathBuf, why: String },
}

/// A server configuration kept current with its files.
pub struct Reloadable {
    files: Files,
    alpn: Vec<Vec<u8>>,
    current: RwLock<Current>,
}

struct Current {
    config: Arc<ServerConfig>,
    stamp: Stamp,
}

/// What identifies a version of each file: modification time, length and inode.
type Stamp = Vec<Option<(SystemTime, u64, u64)>>;

impl Reloadable {
    /// Builds the configuration from `files`; `alpn` lists the application protocols offered
    /// (`h2` for gRPC, `http/1.1` for the alert listener, none for syslog).
    pub fn load(files: Files, alpn: &[&[u8]]) -> Result<Arc<Reloadable>, Error> {
        let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.to_vec()).collect();
        let stamp = stamp(&files);
        let config = Arc::new(build(&files, &alpn)?);
        Ok(Arc::new(Reloadable {
            files,
            alpn,
            current: RwLock::new(Current { config, stamp }),
        }))
    }

    pub fn files(&self) -> &Files {
        &self.files
    }

    /// An acceptor with the current configuration.
    pub fn acceptor(&self) -> TlsAcceptor {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        TlsAcceptor::from(current.config.clone())
    }

    /// Rebuilds the configuration from the files whatever their stamps.
    pub fn reload(&self) -> Result<(), Error> {
        let stamp = stamp(&self.files);
        let config = Arc::new(build(&self.files, &self.alpn)?);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Current { config, stamp };
        Ok(())
    }

    /// Rebuilds the configuration if a file changed since the last build; whether it did. A
    /// failed build is not retried until a file changes again.
    pub fn reload_if_changed(&self) -> Result<bool, Error> {
        let now = stamp(&self.files);
        {
            let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
            if current.stamp == now {
                return Ok(false);
            }
            current.stamp = now;
        }
        self.reload().map(|()| true)
    }
}

fn stamp(files: &Files) -> Stamp {
    let paths = [
        Some(&files.cert),
        Some(&files.key),
        files.client_ca.as_ref(),
    ];
    paths
        .into_iter()
        .flatten()
        .map(|path| {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.modified().ok()?, meta.len(), inode(&meta)))
        })
        .collect()
}

#[cfg(unix)]
fn inode(meta: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

fn build(files: &Files, alpn: &[Vec<u8>]) -> Result<ServerConfig, Error> {
    let certs = pem::certs(&files.cert)?;
    let key = pem::key(&files.key)?;
    let verifier = match &files.client_ca {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in pem::certs(path)? {
                roots.add(cert).map_err(refused(path))?;
            }
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), crate::provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| Error::Refused {
                    path: path.clone(),
                    why: e.to_string(),
                })?
        }
        None => WebPkiClientVerifier::no_client_auth(),
    };
    let mut config = ServerConfig::builder_with_provider(crate::provider())
        .with_safe_default_protocol_versions()
        .map_err(refused(&files.cert))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(refused(&files.key))?;
    config.alpn_protocols = alpn.to_vec();
    Ok(config)
}

fn refused(path: &Path) -> impl Fn(rustls::Error) -> Error + '_ {
    move |e| Error::Refused {
        path: path.to_path_buf(),
        why: e.to_string(),
    }
}
