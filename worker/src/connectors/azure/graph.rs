//! Microsoft Graph users (`identity.*`).

use serde_json::Value;

use super::super::identity::{Disable, Enable, RevokeSessions};
use super::super::{Context, Failure};
use super::Client;

/// See the family module.
pub(crate) async fn disable(
    client: &Client,
    disable: &Disable,
    cx: &Context,
) -> Result<Value, Failure> {
    let _ = (client, disable, cx);
    Err(Failure::permanent("disable: not implemented yet"))
}

/// See the family module.
pub(crate) async fn enable(
    client: &Client,
    enable: &Enable,
    cx: &Context,
) -> Result<Value, Failure> {
    let _ = (client, enable, cx);
    Err(Failure::permanent("enable: not implemented yet"))
}

/// See the family module.
pub(crate) async fn revoke_sessions(
    client: &Client,
    revoke: &RevokeSessions,
    cx: &Context,
) -> Result<Value, Failure> {
    let _ = (client, revoke, cx);
    Err(Failure::permanent("revoke_sessions: not implemented yet"))
}
