//! The kill switch: pause and resume containment, and read it.

use std::sync::Arc;

use super::{Actor, Error, Kind, Node, Request, requests};
use crate::store::Containment;

requests! {
    SetContainment,
    GetContainment,
}

/// The kill switch now, and how many tasks it holds.
pub struct ContainmentView {
    pub state: Containment,
    pub held: usize,
}

impl Node {
    fn containment_view(&self) -> Result<ContainmentView, Error> {
        let (state, held) = self.lock()?.runs.containment();
        Ok(ContainmentView { state, held })
    }
}

/// Pauses (no containment action is leased until resumed) or resumes containment; doing it
/// twice changes nothing.
pub struct SetContainment {
    pub paused: bool,
    pub reason: String,
}

impl Request for SetContainment {
    type Reply = ContainmentView;
    const KIND: Kind = Kind::SetContainment;

    fn target(&self) -> String {
        match self.paused {
            true => "paused".into(),
            false => "resumed".into(),
        }
    }

    async fn serve(self, node: &Arc<Node>, actor: &Actor) -> Result<ContainmentView, Error> {
        let pending = {
            let mut engine = node.lock_for(actor)?;
            if self.paused {
                engine.runs.pause_containment(actor.id(), self.reason)?
            } else {
                engine.runs.resume_containment(actor.id(), self.reason)?
            }
        };
        node.durable(pending).await?;
        node.containment_view()
    }
}

/// The kill switch.
pub struct GetContainment;

impl Request for GetContainment {
    type Reply = ContainmentView;
    const KIND: Kind = Kind::GetContainment;

    async fn serve(self, node: &Arc<Node>, _actor: &Actor) -> Result<ContainmentView, Error> {
        node.containment_view()
    }
}
