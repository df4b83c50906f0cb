//! The data dir on disk: created when missing, private to the orchestrator's user (the folder
//! 0700, its files 0600: it holds alert payloads and run inputs), held by one orchestrator at a
//! time (the `LOCK` file, locked while the store is open and naming the pid that holds it), and
//! made durable against power loss.
//!
//! sled creates its files with the process's umask, which the orchestrator's binary sets to
//! 077 when it starts; a data dir that others may read or enter (from an older Riposte, or made
//! by hand) is tightened when it is opened, with one warning naming it.
//!
//! sled 0.34 writes its log with `sync_file_range`, which neither flushes the device's write
//! cache nor records the file's new size, and writes large values to blob files it does not
//! sync at all: an acknowledged write could be lost with the machine. Under
//! [`Durability::PowerLoss`] every group commit therefore ends with an `fdatasync` of the log
//! and of each blob file not synced yet (then of the blob folder, for their names); the
//! commit's waiters share it.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::Error;

/// How much an acknowledged write survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    /// A crash of the machine (power loss, kernel panic): each group commit ends with an
    /// `fdatasync`. The default.
    PowerLoss,
    /// A crash of the process (`kill -9`), not of the machine: no `fdatasync`. For benchmarks
    /// and throwaway data.
    ProcessCrash,
}

/// Bytes an unprivileged writer may still use on the filesystem holding `dir`.
pub(super) fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let stat = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    #[allow(
        clippy::useless_conversion,
        reason = "the block count is not a u64 on every platform"
    )]
    let blocks = u64::from(stat.blocks_available());
    #[allow(
        clippy::useless_conversion,
        reason = "the fragment size is not a u64 on every platform"
    )]
    let fragment = u64::from(stat.fragment_size());
    Ok(blocks.saturating_mul(fragment))
}

/// The lock on a data dir, released when dropped (and by the kernel if the process dies).
pub(super) struct DirLock {
    _file: File,
}

/// The name of the lock file in the data dir.
const LOCK_FILE: &str = "LOCK";

impl DirLock {
    /// Creates `dir` if missing (0700) and locks it, or says who holds it; then makes what is
    /// in it private ([`make_private`]).
    pub(super) fn acquire(dir: &Path) -> Result<DirLock, Error> {
        let unusable = |source| Error::DataDir {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .map_err(unusable)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(dir.join(LOCK_FILE))
            .map_err(unusable)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(Error::Locked {
                    dir: dir.to_path_buf(),
                    pid: holder.trim().parse().ok(),
                });
            }
            Err(TryLockError::Error(source)) => return Err(unusable(source)),
        }
        let pid = std::process::id();
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{pid}"))
            .map_err(unusable)?;
        let tightened = make_private(dir).map_err(unusable)?;
        if tightened > 0 {
            tracing::warn!(
                data_dir = %dir.display(),
                entries = tightened,
                "store.data_dir_tightened: it was open to other users; now 0700, its files 0600"
            );
        }
        Ok(DirLock { _file: file })
    }
}

/// Opens sled's database in `dir` (locked already), then takes the group and other
/// permissions off the files sled created, whatever the process's umask.
pub(super) fn open_db(dir: &Path, cache_bytes: u64) -> Result<sled::Db, Error> {
    let db = sled::Config::new()
        .path(dir)
        .mode(sled::Mode::HighThroughput)
        .cache_capacity(cache_bytes)
        .open()
        .map_err(|source| Error::Unopenable {
            dir: dir.to_path_buf(),
            source,
        })?;
    make_private(dir).map_err(|source| Error::DataDir {
        dir: dir.to_path_buf(),
        source,
    })?;
    Ok(db)
}

/// The mode of the data dir and of every folder in it.
const DIR_MODE: u32 = 0o700;
/// The mode of the files the store creates.
const FILE_MODE: u32 = 0o600;
/// The permission bits of the group and of others.
pub(super) const SHARED_BITS: u32 = 0o077;

/// Takes every group and other permission off `dir` and everything in it (folders become 0700,
/// files keep only their owner's bits); symbolic links are left alone. Answers how many entries
/// changed.
pub(super) fn make_private(dir: &Path) -> std::io::Result<usize> {
    let mut changed = 0;
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        changed += usize::from(restrict(&folder, DIR_MODE)?);
        for entry in std::fs::read_dir(&folder)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                folders.push(entry.path());
            } else if kind.is_file() {
                let mode = entry.metadata()?.permissions().mode();
                changed += usize::from(restrict(&entry.path(), mode & 0o700)?);
            }
        }
    }
    Ok(changed)
}

/// Sets `path` to `mode` when it has a group or other permission bit; answers whether it did.
fn restrict(path: &Path, mode: u32) -> std::io::Result<bool> {
    let current = std::fs::symlink_metadata(path)?.permissions().mode();
    if current & SHARED_BITS == 0 {
        return Ok(false);
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(true)
}

/// Makes what sled flushed survive power loss.
pub(super) struct Syncer {
    dir: PathBuf,
    log: File,
    /// Blob files synced already, with the length each had then. sled writes a blob once,
    /// front to back, before its write is reserved in the log; one still being written (for a
    /// write after the flush) is synced again once it has grown.
    blobs: HashMap<OsString, u64>,
}

impl Syncer {
    /// Opens sled's log in `dir` (sled has created it) and syncs the folder's entries once.
    pub(super) fn open(dir: &Path) -> std::io::Result<Syncer> {
        let log = File::open(dir.join("db"))?;
        File::open(dir)?.sync_all()?;
        let mut syncer = Syncer {
            dir: dir.to_path_buf(),
            log,
            blobs: HashMap::new(),
        };
        syncer.sync()?;
        Ok(syncer)
    }

    /// `fdatasync` of the log, then of every blob file not synced yet and of their folder.
    pub(super) fn sync(&mut self) -> std::io::Result<()> {
        self.log.sync_data()?;
        let folder = self.dir.join("blobs");
        let entries = match std::fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut present = HashMap::new();
        let mut synced_new = false;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            // The length before the sync: at least this much is then on disk.
            let len = match entry.metadata() {
                Ok(metadata) => metadata.len(),
                // Removed by sled since it was listed: nothing to keep.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if self.blobs.get(&name) != Some(&len) {
                match File::open(entry.path()) {
                    Ok(blob) => blob.sync_data()?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                synced_new = true;
            }
            present.insert(name, len);
        }
        if synced_new {
            File::open(&folder)?.sync_all()?;
        }
        self.blobs = present;
        Ok(())
    }
}
