//! Alert poller requests: a worker claims a due poller and hands over the pages it fetched;
//! operators read each poller's condition (`riposte alerts sources`).
//!
//! The worker is known by the key its certificate gives it (as for tasks, see
//! [`super::workers`]); what it may poll is what the worker policy let it offer. A page's
//! alerts go through the rules as pushed ones do, under the engine's lock, and are durable
//! with the poller's cursor before the answer.

use std::sync::Arc;

use super::workers::Caller;
use super::{Actor, Error, Kind, Node, Request, requests};
use crate::engine::pollers::{Claimed, Page, PageTaken, SourceView};

requests! {
    ClaimPoll,
    ReportPage,
    ListAlertSources,
}

/// A worker asks for a due poller it can run.
pub struct ClaimPoll {
    pub caller: Caller,
    /// The id the worker registered with.
    pub worker: String,
}

impl Request for ClaimPoll {
    type Reply = Claimed;
    const KIND: Kind = Kind::ClaimPoll;

    async fn serve(self, node: &Arc<Node>, _actor: &Actor) -> Result<Claimed, Error> {
        let worker = node.workers.key(&self.caller, &self.worker)?;
        let mut engine = node.lock()?;
        let engine = &mut *engine;
        Ok(engine.alerts.claim_poll(&mut engine.runs, &worker)?)
    }
}

/// One page of a claimed poll, or its failure.
pub struct ReportPage {
    pub caller: Caller,
    /// The id the worker registered with.
    pub worker: String,
    pub poller: String,
    pub token: u64,
    pub page: u32,
    pub outcome: Page,
}

impl Request for ReportPage {
    type Reply = PageTaken;
    const KIND: Kind = Kind::ReportPage;

    fn target(&self) -> String {
        self.poller.clone()
    }

    async fn serve(self, node: &Arc<Node>, _actor: &Actor) -> Result<PageTaken, Error> {
        let worker = node.workers.key(&self.caller, &self.worker)?;
        let pending = {
            let mut engine = node.lock()?;
            let engine = &mut *engine;
            let rules = engine.alerts.rules();
            let page = (worker.as_str(), self.poller.as_str(), self.token, self.page);
            engine
                .alerts
                .poll_page(&mut engine.runs, &rules, page, self.outcome)?
        };
        node.durable(pending).await
    }
}

/// Every poller's condition.
pub struct ListAlertSources;

impl Request for ListAlertSources {
    /// Each poller and the wall-clock now to age them by.
    type Reply = (Vec<SourceView>, i64);
    const KIND: Kind = Kind::ListAlertSources;

    async fn serve(self, node: &Arc<Node>, _actor: &Actor) -> Result<Self::Reply, Error> {
        let now_ms = node.clock.now_ms();
        Ok((node.lock()?.alert_sources(), now_ms))
    }
}
