//! The audit key's file: 32 random bytes, made 0600 when missing, refused when other users
//! may read it or when it is missing while a chain made with it exists; never logged. A
//! salvage gives the new data dir the old one's key.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{HmacSha256, Mac, lock};
use crate::store::{Error, Store, disk};

/// Bytes of an audit key.
const KEY_BYTES: usize = 32;

/// Why the audit key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFault {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(
        "it is open to other users (mode {0:04o}): whoever read it can forge audit records; \
         check who could, then make it private (chmod 600) or use a new key file"
    )]
    Shared(u32),
    #[error("it holds {0} bytes, not the 32 of an audit key")]
    Length(u64),
    #[error(
        "it is missing, and the store holds audit records made with it; give its path \
         with --audit-key"
    )]
    Missing,
    #[error("the system's random source failed: {0}")]
    Random(getrandom::Error),
}

/// The audit key: never printed.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Key([u8; KEY_BYTES]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// A key from its bytes (another key than the store's, as a forger would use).
    #[cfg(test)]
    pub(super) fn from_bytes(bytes: [u8; KEY_BYTES]) -> Key {
        Key(bytes)
    }

    pub(super) fn mac(&self) -> HmacSha256 {
        <HmacSha256 as Mac>::new_from_slice(&self.0).expect("HMAC takes a key of any length")
    }
}

/// Refuses a key file that other users may read or write. Called before the data dir's lock
/// makes what is in it private, so that a key in the data dir is refused, not tightened.
pub(in crate::store) fn refuse_shared(path: &Path) -> Result<(), Error> {
    match std::fs::metadata(path) {
        Ok(metadata) => shared(path, &metadata),
        Err(_) => Ok(()), // missing: made at open; unreadable: said at open
    }
}

fn shared(path: &Path, metadata: &std::fs::Metadata) -> Result<(), Error> {
    let mode = metadata.permissions().mode() & 0o777;
    match mode & disk::SHARED_BITS {
        0 => Ok(()),
        _ => Err(key_error(path, KeyFault::Shared(mode))),
    }
}

fn key_error(path: &Path, source: KeyFault) -> Error {
    Error::AuditKey {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads the key at `path`, or makes one when it is missing and no chain needs it.
pub(super) fn load_key(path: &Path, chain_exists: bool) -> Result<Key, Error> {
    let fault = |source| key_error(path, source);
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && chain_exists => {
            return Err(fault(KeyFault::Missing));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return create_key(path),
        Err(e) => return Err(fault(e.into())),
    };
    let metadata = file.metadata().map_err(|e| fault(e.into()))?;
    shared(path, &metadata)?;
    if metadata.len() != KEY_BYTES as u64 {
        return Err(fault(KeyFault::Length(metadata.len())));
    }
    let mut key = [0; KEY_BYTES];
    file.read_exact(&mut key).map_err(|e| fault(e.into()))?;
    Ok(Key(key))
}

/// A new random key at `path` (0600, synced with its folder entry before it signs anything).
fn create_key(path: &Path) -> Result<Key, Error> {
    let mut key = [0; KEY_BYTES];
    getrandom::fill(&mut key).map_err(|e| key_error(path, KeyFault::Random(e)))?;
    write_key(path, &key, OpenOptions::new().write(true).create_new(true))?;
    tracing::info!(path = %path.display(), "store.audit_key_created");
    Ok(Key(key))
}

fn write_key(path: &Path, key: &[u8; KEY_BYTES], options: &mut OpenOptions) -> Result<(), Error> {
    let io = |e: std::io::Error| key_error(path, e.into());
    let mut file = options.mode(0o600).open(path).map_err(io)?;
    file.write_all(key)
        .and_then(|()| file.sync_all())
        .map_err(io)?;
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(folder).and_then(|f| f.sync_all()).map_err(io)
}

impl Store {
    /// Before a salvage copies the chain into `self` (new and empty), `self` takes the key
    /// of `from` (its key file is replaced), so that the copied records verify.
    pub(in crate::store) fn adopt_audit_key(&self, from: &Store) -> Result<(), Error> {
        let key = lock(&from.chain.head).key.clone();
        let mut head = lock(&self.chain.head);
        if head.key == key || head.seq > 0 {
            return Ok(()); // the same key, or a chain of its own made with its key
        }
        let path = &self.chain.key_path;
        let mut new = path.clone().into_os_string();
        new.push(".new");
        let new = PathBuf::from(new);
        let _ = std::fs::remove_file(&new);
        write_key(
            &new,
            &key.0,
            OpenOptions::new().write(true).create_new(true),
        )?;
        std::fs::rename(&new, path).map_err(|e| key_error(path, e.into()))?;
        head.key = key;
        Ok(())
    }
}
