//! The `notify.*` actions: tell people what automation did, through an incoming webhook.

use serde_json::Value;

use super::{Context, Failure, Input, Shared};

/// The `notify.*` actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Webhook,
}

impl Action {
    /// All `notify.*` actions.
    pub(crate) const ALL: &[Action] = &[Action::Webhook];

    /// The wire name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Action::Webhook => "notify.webhook",
        }
    }
}

/// Runs one `notify.*` action.
pub(crate) async fn execute(
    shared: &Shared,
    action: Action,
    input: Input,
    cx: &Context,
) -> Result<Value, Failure> {
    let _ = (shared, input, cx);
    Err(Failure::permanent(format!(
        "{} is not implemented yet",
        action.name()
    )))
}
