//! Playbook requests: validate, apply (an operator's or a built-in), list, get.

use std::sync::Arc;

use riposte_playbooks::{Diagnostic, Playbook};

use super::{Actor, Error, Kind, Node, Request, requests};
use crate::engine::Builtin;
use crate::store::StoredPlaybook;

requests! {
    ValidatePlaybook,
    ApplyPlaybook,
    ApplyBuiltin,
    ListPlaybooks,
    GetPlaybook,
    ListPlaybookVersions,
    SetDefaultPlaybookVersion,
    DeletePlaybookVersion,
}

/// Compiles a source without storing it.
pub struct ValidatePlaybook {
    pub source: String,
}

impl Request for ValidatePlaybook {
    /// The compiled playbook, or every problem.
    type Reply = Result<Playbook, Vec<Diagnostic>>;
    const KIND: Kind = Kind::ValidatePlaybook;

    async fn serve(self, _node: &Arc<Node>, _actor: &Actor) -> Result<Self::Reply, Error> {
        Ok(riposte_playbooks::compile(&self.source))
    }
}

/// Stores a new playbook version (the same name, version and source again changes nothing).
pub struct ApplyPlaybook {
    pub source: String,
}

/// An applied playbook, and whether that version was already stored as it is.
pub struct Applied {
    pub playbook: Arc<Playbook>,
    pub unchanged: bool,
}

impl Request for ApplyPlaybook {
    type Reply = Applied;
    const KIND: Kind = Kind::ApplyPlaybook;

    fn target(&self) -> String {
        super::source_name(&self.source)
    }

    async fn serve(self, node: &Arc<Node>, actor: &Actor) -> Result<Applied, Error> {
        let replace_builtin = actor.may(crate::auth::Permission::Admin);
        let pending = node
            .lock_for(actor)?
            .runs
            .apply_playbook(&self.source, replace_builtin)?;
        let (playbook, unchanged) = node.durable(pending).await?;
        tracing::info!(playbook = %playbook.name, version = playbook.version, unchanged, "playbook.applied");
        Ok(Applied {
            playbook,
            unchanged,
        })
    }
}

/// Applies a built-in playbook when the store has neither its version nor a newer one.
pub struct ApplyBuiltin {
    pub source: &'static str,
}

impl Request for ApplyBuiltin {
    type Reply = Builtin;
    const KIND: Kind = Kind::ApplyBuiltin;

    async fn serve(self, node: &Arc<Node>, _actor: &Actor) -> Result<Builtin, Error> {
        let pending = node.lock()?.runs.apply_builtin(self.source)?;
        node.durable(pending).await
    }
}

/// The latest version of every playbook.
pub struct ListPlaybooks;

impl Request for ListPlaybooks {
    type Reply = Vec<(StoredPlaybook, Arc<Playbook>)>;
    const KIND: Kind = Kind::ListPlaybooks;

    async fn serve(self, node: &Arc<Node>, _actor: &Actor) -> Result<Self::Reply, Error> {
        Ok(node.lock()?.runs.list_playbooks()?)
    }
}

/// One playbook version (0 = the latest), with its stored source.
pub struct GetPlaybook {
    pub name: String,
    pub version: u32,
}

impl Request for GetPlaybook {
    type Reply = (Arc<Playbook>, Option<StoredPlaybook>);
    const KIND: Kind = Kind::GetPlaybook;

    async fn serve(self, node: &Arc<Node>, _actor: &Actor) -> Result<Self::Reply, Error> {
        let mut engine = node.lock()?;
        let compiled = engine.runs.playbook(&self.name, self.version)?;
        let stored = engine
            .store()
            .playbook(&compiled.name, compiled.version)
            .map_err(crate::engine::Error::from)?;
        Ok((compiled, stored))
    }
}

/// Every version of a playbook, oldest first, and the default one.
pub struct ListPlaybookVersions {
    pub name: String,
}

impl Request for ListPlaybookVersions {
    type Reply = crate::engine::Versions;
    const KIND: Kind = Kind::ListPlaybookVersions;

    async fn serve(self, node: &Arc<Node>, _actor: &Actor) -> Result<Self::Reply, Error> {
        Ok(node.lock()?.runs.versions(&self.name)?)
    }
}

/// Makes a version the default (0: the latest again).
pub struct SetDefaultPlaybookVersion {
    pub name: String,
    pub version: u32,
}

impl Request for SetDefaultPlaybookVersion {
    /// The default version now, compiled, with its stored source.
    type Reply = (Arc<Playbook>, Option<StoredPlaybook>);
    const KIND: Kind = Kind::SetDefaultPlaybook;

    fn target(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    async fn serve(self, node: &Arc<Node>, actor: &Actor) -> Result<Self::Reply, Error> {
        let pending = node
            .lock_for(actor)?
            .runs
            .set_default(&self.name, self.version)?;
        let version = node.durable(pending).await?;
        GetPlaybook {
            name: self.name,
            version,
        }
        .serve(node, actor)
        .await
    }
}

/// Deletes one version that nothing uses.
pub struct DeletePlaybookVersion {
    pub name: String,
    pub version: u32,
}

impl Request for DeletePlaybookVersion {
    /// The deleted version, compiled, with its source.
    type Reply = (Arc<Playbook>, StoredPlaybook);
    const KIND: Kind = Kind::DeletePlaybookVersion;

    fn target(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    async fn serve(self, node: &Arc<Node>, actor: &Actor) -> Result<Self::Reply, Error> {
        let pending = node
            .lock_for(actor)?
            .delete_playbook_version(&self.name, self.version)?;
        node.durable(pending).await
    }
}
