//! Playbook versions in the store: `playbooks` (name, version → [`StoredPlaybook`]) and, in
//! `settings`, each name's default version when an operator set one (a rollback): the version
//! a start that names no version gets. Without a default it is the latest.

use super::*;

/// Settings key prefix of a playbook's default version.
pub(super) const DEFAULT_PREFIX: &[u8] = b"playbook_default\0";

fn default_key(name: &str) -> Vec<u8> {
    let mut key = DEFAULT_PREFIX.to_vec();
    key.extend_from_slice(name.as_bytes());
    key
}

fn playbook_key(name: &str, version: u32) -> Vec<u8> {
    let mut key = name.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

impl Store {
    pub fn put_playbook(&self, playbook: &StoredPlaybook) -> Result<Seq, Error> {
        let row = (
            playbook_key(&playbook.name, playbook.version),
            json(playbook),
        );
        self.put_rows(&self.playbooks, vec![row])
    }

    /// A given version, or the default one when `version` is 0 (the latest unless an
    /// operator set another).
    pub fn playbook(&self, name: &str, version: u32) -> Result<Option<StoredPlaybook>, Error> {
        let version = match version {
            0 => match self.playbook_default(name)? {
                Some(pinned) => pinned,
                None => return self.latest_playbook(name),
            },
            v => v,
        };
        let raw = self.playbooks.get(playbook_key(name, version))?;
        raw.map(|v| decode("playbooks", &playbook_key(name, version), &v))
            .transpose()
    }

    /// The highest version of a playbook.
    pub fn latest_playbook(&self, name: &str) -> Result<Option<StoredPlaybook>, Error> {
        let mut prefix = name.as_bytes().to_vec();
        prefix.push(0);
        let last = self.playbooks.scan_prefix(prefix).next_back().transpose()?;
        last.map(|(key, v)| decode("playbooks", &key, &v))
            .transpose()
    }

    /// Every version of every playbook, ordered by name then version.
    pub fn playbooks(&self) -> Result<Vec<StoredPlaybook>, Error> {
        self.playbooks
            .iter()
            .map(|kv| {
                let (key, value) = kv?;
                decode("playbooks", &key, &value)
            })
            .collect()
    }

    /// The version an operator made the default of `name`, if any.
    pub fn playbook_default(&self, name: &str) -> Result<Option<u32>, Error> {
        let key = default_key(name);
        self.settings
            .get(&key)?
            .map(|v| decode("settings", &key, &v))
            .transpose()
    }

    /// Makes `version` the default of `name`, or (`None`) the latest again.
    pub fn put_playbook_default(&self, name: &str, version: Option<u32>) -> Result<Seq, Error> {
        let key = default_key(name);
        match version {
            Some(version) => self.put_rows(&self.settings, vec![(key, json(&version))]),
            None => self.remove_rows(&self.settings, vec![key]),
        }
    }

    /// Removes one version of a playbook.
    pub fn delete_playbook(&self, name: &str, version: u32) -> Result<Seq, Error> {
        self.remove_rows(&self.playbooks, vec![playbook_key(name, version)])
    }
}
