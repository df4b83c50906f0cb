//! The nftables backend of `firewall.*` and `access.*`: one managed table on this host.

use serde_json::Value;

use super::access::{Grant, Revoke};
use super::firewall::{Block, Unblock};
use super::{Context, Failure};

/// Where the managed nftables objects live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Name of the `inet` table Riposte owns (created on first use, never another's).
    pub table: String,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            table: "riposte".to_owned(),
        }
    }
}

/// Ensures the block is in the managed set.
pub(crate) async fn block(
    settings: &Settings,
    block: &Block,
    cx: &Context,
) -> Result<Value, Failure> {
    let _ = (settings, block, cx);
    Err(Failure::permanent("block: not implemented yet"))
}

/// Ensures the address is out of the managed set.
pub(crate) async fn unblock(
    settings: &Settings,
    unblock: &Unblock,
    cx: &Context,
) -> Result<Value, Failure> {
    let _ = (settings, unblock, cx);
    Err(Failure::permanent("unblock: not implemented yet"))
}

/// Lists the managed set.
pub(crate) async fn list_blocked(settings: &Settings, cx: &Context) -> Result<Value, Failure> {
    let _ = (settings, cx);
    Err(Failure::permanent("list_blocked: not implemented yet"))
}

/// Ensures the allow element, with its timeout.
pub(crate) async fn grant_jit(
    settings: &Settings,
    grant: &Grant,
    cx: &Context,
) -> Result<Value, Failure> {
    let _ = (settings, grant, cx);
    Err(Failure::permanent("grant_jit: not implemented yet"))
}

/// Ensures the allow element is gone.
pub(crate) async fn revoke_jit(
    settings: &Settings,
    revoke: &Revoke,
    cx: &Context,
) -> Result<Value, Failure> {
    let _ = (settings, revoke, cx);
    Err(Failure::permanent("revoke_jit: not implemented yet"))
}
