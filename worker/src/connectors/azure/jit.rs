//! Defender for Cloud just-in-time VM access (`access.*`).

use serde_json::Value;

use super::super::access::{Grant, Revoke};
use super::super::{Context, Failure};
use super::Client;

/// See the family module.
pub(crate) async fn grant(client: &Client, grant: &Grant, cx: &Context) -> Result<Value, Failure> {
    let _ = (client, grant, cx);
    Err(Failure::permanent("grant: not implemented yet"))
}

/// See the family module.
pub(crate) async fn revoke(
    client: &Client,
    revoke: &Revoke,
    cx: &Context,
) -> Result<Value, Failure> {
    let _ = (client, revoke, cx);
    Err(Failure::permanent("revoke: not implemented yet"))
}
