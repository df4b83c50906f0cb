//! The `defender.*` actions: the alerts of Microsoft Defender XDR and Defender for Cloud
//! through Microsoft Graph. `defender.list_alerts` lists the security alerts (`alerts_v2`)
//! modified within a window, a page at a time: what a Defender alert poller runs (see
//! `azure::listing`). Output: `{"items": [...], "next_link": URL | null}`.

use serde_json::Value;

use super::{Context, Failure, Fields, Input, Shared, azure};

/// The `defender.*` actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    ListAlerts,
}

impl Action {
    /// All `defender.*` actions.
    pub(crate) const ALL: &[Action] = &[Action::ListAlerts];

    /// The wire name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Action::ListAlerts => "defender.list_alerts",
        }
    }
}

/// Where the `defender.*` actions read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// The security API of Microsoft Graph.
    Azure,
}

/// Runs one `defender.*` action.
pub(crate) async fn execute(
    shared: &Shared,
    Backend::Azure: Backend,
    action: Action,
    input: Input,
    cx: &Context,
) -> Result<Value, Failure> {
    match action {
        Action::ListAlerts => {
            let known = ["modified_from", "modified_to", "page_size", "next_link"];
            let mut fields = Fields::new(input, &known)?;
            let window = azure::listing::window(&mut fields)?;
            azure::listing::graph_alerts(&shared.azure, &window, cx).await
        }
    }
}
