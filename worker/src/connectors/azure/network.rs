//! ARM network: NSG deny rules and Azure Firewall IP Groups (`firewall.*`).

use serde_json::Value;

use super::super::firewall::{Block, Unblock};
use super::super::{Context, Failure};
use super::Client;

/// See the family module.
pub(crate) async fn nsg_block(
    client: &Client,
    block: &Block,
    cx: &Context,
) -> Result<Value, Failure> {
    let _ = (client, block, cx);
    Err(Failure::permanent("nsg_block: not implemented yet"))
}

/// See the family module.
pub(crate) async fn nsg_unblock(
    client: &Client,
    unblock: &Unblock,
    cx: &Context,
) -> Result<Value, Failure> {
    let _ = (client, unblock, cx);
    Err(Failure::permanent("nsg_unblock: not implemented yet"))
}

/// See the family module.
pub(crate) async fn nsg_list(client: &Client, cx: &Context) -> Result<Value, Failure> {
    let _ = (client, cx);
    Err(Failure::permanent("nsg_list: not implemented yet"))
}

/// See the family module.
pub(crate) async fn ip_group_block(
    client: &Client,
    block: &Block,
    cx: &Context,
) -> Result<Value, Failure> {
    let _ = (client, block, cx);
    Err(Failure::permanent("ip_group_block: not implemented yet"))
}

/// See the family module.
pub(crate) async fn ip_group_unblock(
    client: &Client,
    unblock: &Unblock,
    cx: &Context,
) -> Result<Value, Failure> {
    let _ = (client, unblock, cx);
    Err(Failure::permanent("ip_group_unblock: not implemented yet"))
}

/// See the family module.
pub(crate) async fn ip_group_list(client: &Client, cx: &Context) -> Result<Value, Failure> {
    let _ = (client, cx);
    Err(Failure::permanent("ip_group_list: not implemented yet"))
}
