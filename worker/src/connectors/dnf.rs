//! The dnf backend of `patch.*`: dnf on this host.

use serde_json::Value;

use super::patch::{Assess, Install, Verify};
use super::{Context, Failure};

/// See [`super::patch`].
pub(crate) async fn assess(assess: &Assess, cx: &Context) -> Result<Value, Failure> {
    let _ = (assess, cx);
    Err(Failure::permanent("assess: not implemented yet"))
}

/// See [`super::patch`].
pub(crate) async fn install(install: &Install, cx: &Context) -> Result<Value, Failure> {
    let _ = (install, cx);
    Err(Failure::permanent("install: not implemented yet"))
}

/// See [`super::patch`].
pub(crate) async fn verify(verify: &Verify, cx: &Context) -> Result<Value, Failure> {
    let _ = (verify, cx);
    Err(Failure::permanent("verify: not implemented yet"))
}
