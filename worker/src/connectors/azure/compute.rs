//! Azure VM patching through long-running operations (`patch.*`).

use serde_json::Value;

use super::super::patch::{Assess, Install, Verify};
use super::super::{Context, Failure};
use super::Client;

/// See the family module.
pub(crate) async fn assess(
    client: &Client,
    assess: &Assess,
    cx: &Context,
) -> Result<Value, Failure> {
    let _ = (client, assess, cx);
    Err(Failure::permanent("assess: not implemented yet"))
}

/// See the family module.
pub(crate) async fn install(
    client: &Client,
    install: &Install,
    cx: &Context,
) -> Result<Value, Failure> {
    let _ = (client, install, cx);
    Err(Failure::permanent("install: not implemented yet"))
}

/// See the family module.
pub(crate) async fn verify(
    client: &Client,
    verify: &Verify,
    cx: &Context,
) -> Result<Value, Failure> {
    let _ = (client, verify, cx);
    Err(Failure::permanent("verify: not implemented yet"))
}
