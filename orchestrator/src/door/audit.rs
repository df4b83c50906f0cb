//! Audit requests: read the audit log, and verify its chain. Writing it is the door's own
//! business ([`Node::handle`](super::Node::handle)): every change and every refusal.

use std::sync::Arc;

use super::{Actor, Error, Kind, Node, Request, requests};
use crate::engine;
use crate::store::{AuditFilter, AuditPage, AuditVerdict};

requests! {
    ListAudit,
    VerifyAudit,
}

/// A page of the audit log, newest first.
pub struct ListAudit {
    pub filter: AuditFilter,
    /// The seq the previous page ended before; `None` for the first page.
    pub before: Option<u64>,
    pub limit: usize,
}

impl Request for ListAudit {
    type Reply = AuditPage;
    const KIND: Kind = Kind::ListAudit;

    async fn serve(self, node: &Arc<Node>, _actor: &Actor) -> Result<AuditPage, Error> {
        let store = node.lock()?.store().clone();
        let read = move || store.audit_page(&self.filter, self.before, self.limit);
        Ok(super::blocking(read).await.map_err(engine::Error::Store)?)
    }
}

/// Walks the whole chain.
pub struct VerifyAudit;

impl Request for VerifyAudit {
    type Reply = AuditVerdict;
    const KIND: Kind = Kind::VerifyAudit;

    async fn serve(self, node: &Arc<Node>, _actor: &Actor) -> Result<AuditVerdict, Error> {
        let store = node.lock()?.store().clone();
        let verify = move || store.audit_verify();
        Ok(super::blocking(verify)
            .await
            .map_err(engine::Error::Store)?)
    }
}
