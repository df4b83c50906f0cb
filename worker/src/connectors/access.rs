//! The `access.*` actions: just-in-time network access that expires by itself.
//!
//! Inputs are parsed into typed requests here, before any backend is called, so bad input fails
//! the same way on every backend and nothing is changed.

use serde_json::Value;

use super::{Context, Failure, Input, Shared};

/// The `access.*` actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    GrantJit,
    RevokeJit,
}

impl Action {
    /// All `access.*` actions.
    pub(crate) const ALL: &[Action] = &[Action::GrantJit, Action::RevokeJit];

    /// The wire name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Action::GrantJit => "access.grant_jit",
            Action::RevokeJit => "access.revoke_jit",
        }
    }
}

/// Where the `access.*` actions take effect, chosen by the worker's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// an nftables allow set on this host, with kernel-side timeouts
    Nftables,
    /// Defender for Cloud just-in-time VM access
    AzureJit,
}

/// Runs one `access.*` action on `backend`.
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
