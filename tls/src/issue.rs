//! A small certificate authority: create one (or load it from its two files), and issue from
//! it server certificates (DNS names and IP addresses) and client certificates naming an
//! [`Identity`]. Keys are ECDSA P-256. Written key files are 0600.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::identity::Identity;
use crate::pem;

/// Why a certificate could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Pem(#[from] pem::Error),
    #[error("{what}: {source}")]
    Make { what: String, source: rcgen::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// When an issued certificate is valid.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Validity {
    /// From an hour before `now` (clocks differ a little) for `days`.
    pub fn days(now: SystemTime, days: u64) -> Validity {
        Validity {
            not_before: now - Duration::from_secs(3600),
            not_after: now + Duration::from_secs(days * 86_400),
        }
    }
}

/// A certificate and its private key, as PEM.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").finish_non_exhaustive()
    }
}

/// A certificate authority able to sign.
pub struct Ca {
    cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// A new self-signed CA named `name`.
    pub fn create(name: &str, validity: Validity) -> Result<Ca, Error> {
        let key = KeyPair::generate().map_err(make("a CA key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = named(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        set_validity(&mut params, validity);
        let cert = params
            .self_signed(&key)
            .map_err(make("the CA certificate"))?;
        let key_pem = key.serialize_pem();
        Ok(Ca {
            cert_pem: cert.pem(),
            key_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA whose certificate and key are in these files.
    pub fn load(cert: &Path, key: &Path) -> Result<Ca, Error> {
        let cert_pem = text(cert)?;
        let key_pem = text(key)?;
        let refused = |path: &Path, why: rcgen::Error| pem::Error::Refused {
            path: path.to_path_buf(),
            why: why.to_string(),
        };
        let pair = KeyPair::from_pem(&key_pem).map_err(|e| refused(key, e))?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, pair).map_err(|e| refused(cert, e))?;
        Ok(Ca {
            cert_pem,
            key_pem,
            issuer,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's own certificate and key, to write them out.
    pub fn issued(&self) -> Issued {
        Issued {
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
        }
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[String], validity: Validity) -> Result<Issued, Error> {
        let mut params = CertificateParams::new(names.to_vec()).map_err(make("server names"))?;
        params.distinguished_name = named(names.first().map_or("riposte", String::as_str));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params, validity, "a server certificate")
    }

    /// A client certificate naming `identity`.
    pub fn client(&self, identity: &Identity, validity: Validity) -> Result<Issued, Error> {
        let mut params = CertificateParams::default();
        params.distinguished_name = named(&identity.name);
        let uri = identity
            .uri()
            .try_into()
            .map_err(make("the identity URI"))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, validity, "a client certificate")
    }

    fn sign(
        &self,
        mut params: CertificateParams,
        validity: Validity,
        what: &str,
    ) -> Result<Issued, Error> {
        set_validity(&mut params, validity);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().map_err(make(what))?;
        let cert = params.signed_by(&key, &self.issuer).map_err(make(what))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl Issued {
    /// Writes `STEM.pem` (0644) and `STEM.key` (0600) into `dir`; answers their paths.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf), Error> {
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}.key"));
        write_file(&key, &self.key_pem, 0o600)?;
        write_file(&cert, &self.cert_pem, 0o644)?;
        Ok((cert, key))
    }
}

/// Writes `text` into `path` with `mode`, replacing it whole (a temporary file renamed).
pub fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), Error> {
    let failed = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let temporary = path.with_extension("new");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&temporary).map_err(failed)?;
    file.write_all(text.as_bytes()).map_err(failed)?;
    file.sync_all().map_err(failed)?;
    std::fs::rename(&temporary, path).map_err(failed)
}

fn text(path: &Path) -> Result<String, Error> {
    String::from_utf8(pem::read(path)?).map_err(|_| {
        Error::Pem(pem::Error::Refused {
            path: path.to_path_buf(),
            why: "not a text file".into(),
        })
    })
}

fn named(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

fn set_validity(params: &mut CertificateParams, validity: Validity) {
    params.not_before = validity.not_before.into();
    params.not_after = validity.not_after.into();
}

fn make(what: &str) -> impl Fn(rcgen::Error) -> Error + '_ {
    move |source| Error::Make {
        what: what.to_string(),
        source,
    }
}
