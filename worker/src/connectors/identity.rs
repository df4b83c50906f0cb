//! The `identity.*` actions: disable and re-enable accounts, end their sessions.
//!
//! Inputs are parsed into typed requests here, before any backend is called. Each backend
//! checks the account's form for its own world (a POSIX login name, a Graph id or UPN) before
//! it changes anything, and verifies the change by reading the state back (exit codes lie).
//!
//! Output of `disable_account`: `{"account", "backend", "already_disabled", "previous",
//! "changes", "dry_run"}` where `previous` is what `enable_account` needs to restore the
//! account exactly; of `enable_account`: `{"account", "backend", "already_enabled", "changes",
//! "dry_run"}`; of `revoke_sessions`: `{"account", "backend", "sessions_ended"?, "changes",
//! "dry_run"}`.

use serde_json::Value;

use super::{Context, Failure, Fields, Input, Shared, azure, linux_account};

/// Longest account name accepted by any backend (a UPN may be long).
pub(crate) const ACCOUNT_BYTES_MAX: usize = 256;
/// Longest `reason` kept.
pub(crate) const REASON_BYTES_MAX: usize = 256;

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
    /// Local accounts of this host (`usermod`, verified in the shadow entry).
    Linux,
    /// Microsoft Entra users through Microsoft Graph.
    Graph,
}

/// `identity.disable_account`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Disable {
    /// As given (trimmed); the backend checks its form.
    pub(crate) account: String,
    pub(crate) reason: String,
}

/// `identity.enable_account`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Enable {
    pub(crate) account: String,
    /// The `previous` output of the disable, when the playbook passes it back.
    pub(crate) previous: Option<Value>,
}

/// `identity.revoke_sessions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RevokeSessions {
    pub(crate) account: String,
}

/// Runs one `identity.*` action on `backend`.
pub(crate) async fn execute(
    shared: &Shared,
    backend: Backend,
    action: Action,
    input: Input,
    cx: &Context,
) -> Result<Value, Failure> {
    match action {
        Action::DisableAccount => {
            let mut fields = Fields::new(input, &["account", "reason"])?;
            let account = account(&mut fields)?;
            let reason = fields.string("reason")?.unwrap_or_default();
            if reason.len() > REASON_BYTES_MAX {
                return Err(Failure::invalid_input(format!(
                    "`reason` is longer than {REASON_BYTES_MAX} bytes"
                )));
            }
            let disable = Disable { account, reason };
            match backend {
                Backend::Linux => {
                    linux_account::disable(&disable, shared.protected_uid_below, cx).await
                }
                Backend::Graph => azure::graph::disable(&shared.azure, &disable, cx).await,
            }
        }
        Action::EnableAccount => {
            let mut fields = Fields::new(input, &["account", "previous"])?;
            let account = account(&mut fields)?;
            let previous = fields.value("previous");
            let enable = Enable { account, previous };
            match backend {
                Backend::Linux => linux_account::enable(&enable, cx).await,
                Backend::Graph => azure::graph::enable(&shared.azure, &enable, cx).await,
            }
        }
        Action::RevokeSessions => {
            let mut fields = Fields::new(input, &["account"])?;
            let revoke = RevokeSessions {
                account: account(&mut fields)?,
            };
            match backend {
                Backend::Linux => {
                    linux_account::revoke_sessions(&revoke, shared.protected_uid_below, cx).await
                }
                Backend::Graph => azure::graph::revoke_sessions(&shared.azure, &revoke, cx).await,
            }
        }
    }
}

fn account(fields: &mut Fields) -> Result<String, Failure> {
    let account = fields.required_string("account")?.trim().to_owned();
    if account.is_empty() || account.len() > ACCOUNT_BYTES_MAX {
        return Err(Failure::invalid_input(format!(
            "`account` must be 1 to {ACCOUNT_BYTES_MAX} bytes"
        )));
    }
    Ok(account)
}
