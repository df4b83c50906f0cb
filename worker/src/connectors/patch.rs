//! The `patch.*` actions: assess, install and verify package updates.
//!
//! Inputs are parsed into typed requests here, before any backend is called, so bad input fails
//! the same way on every backend and nothing is changed.

use serde_json::Value;

use super::{Context, Failure, Input, Shared};

/// The `patch.*` actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Assess,
    Install,
    Verify,
}

impl Action {
    /// All `patch.*` actions.
    pub(crate) const ALL: &[Action] = &[Action::Assess, Action::Install, Action::Verify];

    /// The wire name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Action::Assess => "patch.assess",
            Action::Install => "patch.install",
            Action::Verify => "patch.verify",
        }
    }
}

/// Where the `patch.*` actions take effect, chosen by the worker's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// apt-get on this host
    Apt,
    /// dnf on this host
    Dnf,
    /// Azure VM assessPatches / installPatches
    Azure,
}

/// Runs one `patch.*` action on `backend`.
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
