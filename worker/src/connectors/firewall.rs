//! The `firewall.*` actions: block and unblock source addresses, list what is blocked.
//!
//! Inputs are parsed into typed requests here, before any backend is called, so bad input fails
//! the same way on every backend and nothing is changed.

use serde_json::Value;

use super::{Context, Failure, Input, Shared};

/// The `firewall.*` actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    BlockIp,
    UnblockIp,
    ListBlocked,
}

impl Action {
    /// All `firewall.*` actions.
    pub(crate) const ALL: &[Action] = &[Action::BlockIp, Action::UnblockIp, Action::ListBlocked];

    /// The wire name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Action::BlockIp => "firewall.block_ip",
            Action::UnblockIp => "firewall.unblock_ip",
            Action::ListBlocked => "firewall.list_blocked",
        }
    }
}

/// Where the `firewall.*` actions take effect, chosen by the worker's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// nftables sets with per-element timeouts on this host
    Nftables,
    /// deny rules in an Azure network security group
    AzureNsg,
    /// membership of an Azure Firewall IP Group
    AzureIpGroup,
}

/// Runs one `firewall.*` action on `backend`.
pub(crate) async fn execute(
    shared: &Shared,
    backend: Backend,
    action: Action,
    input: Input,
    cx: &Context,
) -> Result<Value, Failure> {
    let _ = (shared, input, cx);
    Err(Failure::permanent(format!(
        "{} is not implemented on the {backend:?} backend yet",
        action.name()
    )))
}
