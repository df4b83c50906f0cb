//! The Linux backend of `identity.*`: local accounts of this host.

use serde_json::Value;

use super::identity::{Disable, Enable, RevokeSessions};
use super::{Context, Failure};

/// See [`super::identity`].
pub(crate) async fn disable(disable: &Disable, cx: &Context) -> Result<Value, Failure> {
    let _ = (disable, cx);
    Err(Failure::permanent("disable: not implemented yet"))
}

/// See [`super::identity`].
pub(crate) async fn enable(enable: &Enable, cx: &Context) -> Result<Value, Failure> {
    let _ = (enable, cx);
    Err(Failure::permanent("enable: not implemented yet"))
}

/// See [`super::identity`].
pub(crate) async fn revoke_sessions(
    revoke: &RevokeSessions,
    cx: &Context,
) -> Result<Value, Failure> {
    let _ = (revoke, cx);
    Err(Failure::permanent("revoke_sessions: not implemented yet"))
}
