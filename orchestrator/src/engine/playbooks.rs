//! Playbooks in the engine: apply a version (an operator's, or a built-in one the store lacks),
//! and the cache of compiled versions.

use super::*;

/// What became of a built-in playbook at start.
#[derive(Debug, Clone)]
pub enum Builtin {
    Applied {
        name: String,
        version: u32,
    },
    /// The store has this version (`stored`), or a newer one: left as it is.
    Kept {
        name: String,
        version: u32,
        stored: u32,
    },
}

/// A playbook's versions, oldest first, each compiled with its stored source, and the default
/// version.
pub type Versions = (Vec<(Arc<Playbook>, StoredPlaybook)>, u32);

impl Runs {
    /// A compiled playbook version (0 = latest), cached.
    pub fn playbook(&mut self, name: &str, version: u32) -> Result<Arc<Playbook>, Error> {
        if version != 0
            && let Some(p) = self.playbooks.get(&(name.to_string(), version))
        {
            return Ok(p.clone());
        }
        let stored = self
            .store
            .playbook(name, version)?
            .ok_or_else(|| Error::NotFound(not_found_playbook(name, version)))?;
        let key = (stored.name.clone(), stored.version);
        if let Some(p) = self.playbooks.get(&key) {
            return Ok(p.clone());
        }
        let compiled = riposte_playbooks::compile(&stored.source).map_err(|d| {
            Error::FailedPrecondition(format!(
                "stored playbook {}@{} no longer compiles: {}",
                stored.name,
                stored.version,
                d.first().map(|d| d.to_string()).unwrap_or_default()
            ))
        })?;
        let compiled = Arc::new(compiled);
        self.playbooks.insert(key, compiled.clone());
        Ok(compiled)
    }

    /// Stores a new playbook version. Same name, version and source again is a no-op. A
    /// playbook that runs an action the platform's rules gate without the approval they
    /// require is refused (the rules a schedule's runs are exempt from are checked at start);
    /// so is a version of a built-in playbook unless `replace_builtin` (an admin's).
    pub fn apply_playbook(
        &mut self,
        source: &str,
        replace_builtin: bool,
    ) -> Result<Pending<(Arc<Playbook>, bool)>, Error> {
        let compiled = riposte_playbooks::compile(source).map_err(Error::PlaybookInvalid)?;
        let approvals = &self.settings.platform.approvals;
        let unmet = riposte_playbooks::platform::unmet(&compiled, approvals, true);
        if !unmet.is_empty() {
            return Err(Error::PlaybookInvalid(unmet));
        }
        if !replace_builtin && crate::builtin::is_builtin(&compiled.name) {
            return Err(Error::PermissionDenied(format!(
                "playbook {} is built in: only an admin may apply a version of it",
                compiled.name
            )));
        }
        self.store_version(compiled, source)
    }

    /// Stores a compiled version unless that version exists (the same source: a no-op) or a
    /// newer one does.
    fn store_version(
        &mut self,
        compiled: Playbook,
        source: &str,
    ) -> Result<Pending<(Arc<Playbook>, bool)>, Error> {
        let (name, version) = (compiled.name.clone(), compiled.version);
        if let Some(existing) = self.store.playbook(&name, version)? {
            if existing.source == source {
                return Ok(Pending::unchanged(&self.store, (Arc::new(compiled), true)));
            }
            return Err(Error::FailedPrecondition(format!(
                "playbook {name} version {version} exists with other content; raise `version`"
            )));
        }
        if let Some(latest) = self.store.playbook(&name, 0)?
            && latest.version > version
        {
            return Err(Error::FailedPrecondition(format!(
                "playbook {name} is at version {}; a new version must be higher than that, not {version}",
                latest.version
            )));
        }
        let stored = StoredPlaybook {
            name: name.clone(),
            version,
            source: source.to_string(),
            applied_at_ms: self.clock.now_ms(),
        };
        let seq = self.store.put_playbook(&stored)?;
        let compiled = Arc::new(compiled);
        self.playbooks.insert((name, version), compiled.clone());
        Ok(Pending::new((compiled, false), seq))
    }

    /// Applies a built-in playbook only when the store has neither its version nor a newer
    /// one: an admin's version (same number with other content, or higher) is kept.
    pub fn apply_builtin(&mut self, source: &str) -> Result<Pending<Builtin>, Error> {
        let compiled = riposte_playbooks::compile(source).map_err(|d| {
            Error::InvalidArgument(format!(
                "built-in playbook does not compile: {}",
                d.first().map(|d| d.to_string()).unwrap_or_default()
            ))
        })?;
        let (name, version) = (compiled.name.clone(), compiled.version);
        let stored = match self.store.playbook(&name, version)? {
            Some(same) => Some(same.version),
            None => self
                .store
                .playbook(&name, 0)?
                .map(|latest| latest.version)
                .filter(|latest| *latest > version),
        };
        if let Some(stored) = stored {
            return Ok(Pending::unchanged(
                &self.store,
                Builtin::Kept {
                    name,
                    version,
                    stored,
                },
            ));
        }
        // Not checked against the platform's rules here: a built-in the policy's rules refuse
        // is stored, and refused at each start with the rule it breaks.
        let applied = self.store_version(compiled, source)?;
        Ok(applied.map(|_| Builtin::Applied { name, version }))
    }

    /// The default version of every playbook: the latest, unless an operator set another.
    pub fn list_playbooks(&mut self) -> Result<Vec<(StoredPlaybook, Arc<Playbook>)>, Error> {
        let mut latest: BTreeMap<String, StoredPlaybook> = BTreeMap::new();
        for p in self.store.playbooks()? {
            latest.insert(p.name.clone(), p);
        }
        latest
            .into_keys()
            .map(|name| {
                let compiled = self.playbook(&name, 0)?;
                let stored = self.store.playbook(&name, compiled.version)?;
                let stored = stored.ok_or_else(|| Error::NotFound(not_found_playbook(&name, 0)))?;
                Ok((stored, compiled))
            })
            .collect()
    }

    /// Every version of a playbook, oldest first, compiled (cached), and the default one.
    pub fn versions(&mut self, name: &str) -> Result<Versions, Error> {
        let mut versions = Vec::new();
        for stored in self
            .store
            .playbooks()?
            .into_iter()
            .filter(|p| p.name == name)
        {
            versions.push((self.playbook(name, stored.version)?, stored));
        }
        let default = self.playbook(name, 0)?.version;
        Ok((versions, default))
    }

    /// Makes `version` the version a start naming none gets (a rollback), or with 0 the
    /// latest again.
    pub fn set_default(&mut self, name: &str, version: u32) -> Result<Pending<u32>, Error> {
        if version != 0 {
            self.playbook(name, version)?;
        }
        let latest = self.store.latest_playbook(name)?;
        let latest = latest.ok_or_else(|| Error::NotFound(not_found_playbook(name, 0)))?;
        let pin = (version != 0 && version != latest.version).then_some(version);
        let seq = self.store.put_playbook_default(name, pin)?;
        tracing::info!(playbook = %name, version, "playbook.default_set");
        Ok(Pending::new(pin.unwrap_or(latest.version), seq))
    }
}

pub(super) fn not_found_playbook(name: &str, version: u32) -> String {
    if version == 0 {
        format!("playbook `{name}` not found")
    } else {
        format!("playbook `{name}` version {version} not found")
    }
}
