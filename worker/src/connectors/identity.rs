//! The `identity.*` actions: disable and re-enable accounts, end their sessions.
//!
//! Inputs are parsed into typed requests here, before any backend is called, so bad input fails
//! the same way on every backend and nothing is changed.

use serde_json::Value;

use super::{Context, Failure, Input, Shared};

/// The `identity.*` actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    DisableAccount,
    EnableAccount,
    RevokeSessions,
}

impl Action {
    /// All `identity.*` actions.
    pub(crate) const ALL: &[Action] = &[
        Action::DisableAccount,
        Action::EnableAccount,
        Action::RevokeSessions,
    ];

    /// The wire name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Action::DisableAccount => "identity.disable_account",
            Action::EnableAccount => "identity.enable_account",
            Action::RevokeSessions => "identity.revoke_sessions",
        }
    }
}

/// Where the `identity.*` actions take effect, chosen by the worker's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// local accounts of this host (`usermod`, verified in the shadow entry)
    Linux,
    /// Microsoft Entra users through Microsoft Graph
    Graph,
}

/// Runs one `identity.*` action on `backend`.
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
