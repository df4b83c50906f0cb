//! The `firewall.*` actions: block and unblock source addresses, list what is blocked.
//!
//! Inputs are parsed into typed requests here, before any backend is called, so bad input fails
//! the same way on every backend and nothing is changed. Every backend writes "ensure"
//! operations: blocking a blocked address or unblocking a free one succeeds and says so.
//!
//! Output of `block_ip`: `{"ip", "backend", "already_blocked", "expires_at"?, "changes",
//! "dry_run"}`; of `unblock_ip`: `{"ip", "backend", "was_blocked", "changes", "dry_run"}`; of
//! `list_blocked`: `{"backend", "blocked": [{"ip", ...}]}`. `changes` lists each change made (or,
//! in a dry run, that would be made) as an operator would read it.

use std::time::Duration;

use ipnet::IpNet;
use serde_json::Value;

use super::{Context, Failure, Fields, Input, Shared, azure, nftables};

/// Longest block one action may ask for.
pub(crate) const TTL_MAX: Duration = Duration::from_secs(30 * 24 * 3600);
/// Longest `reason` kept.
pub(crate) const REASON_BYTES_MAX: usize = 256;

/// The `firewall.*` actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    BlockIp,
    UnblockIp,
    ListBlocked,
}

impl Action {
    /// All `firewall.*` actions.
    pub(crate) const ALL: &[Action] = &[Action::BlockIp, Action::UnblockIp, Action::ListBlocked];

    /// The wire name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Action::BlockIp => "firewall.block_ip",
            Action::UnblockIp => "firewall.unblock_ip",
            Action::ListBlocked => "firewall.list_blocked",
        }
    }
}

/// Where the `firewall.*` actions take effect, chosen by the worker's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// nftables sets with per-element timeouts on this host.
    Nftables,
    /// Deny rules in an Azure network security group.
    AzureNsg,
    /// Membership of an Azure Firewall IP Group.
    AzureIpGroup,
}

/// `firewall.block_ip`: ensure `target` is blocked for `ttl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Block {
    /// The address (as a /32 or /128) or network to block, in canonical form.
    pub(crate) target: IpNet,
    /// How long; never zero (a zero timeout means "forever" to nftables).
    pub(crate) ttl: Duration,
    /// Why, for the audit trail; at most [`REASON_BYTES_MAX`].
    pub(crate) reason: String,
}

/// `firewall.unblock_ip`: ensure `target` is not blocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unblock {
    pub(crate) target: IpNet,
}

/// Runs one `firewall.*` action on `backend`.
pub(crate) async fn execute(
    shared: &Shared,
    backend: Backend,
    action: Action,
    input: Input,
    cx: &Context,
) -> Result<Value, Failure> {
    match action {
        Action::BlockIp => {
            let block = parse_block(input)?;
            match backend {
                Backend::Nftables => nftables::block(&shared.nftables, &block, cx).await,
                Backend::AzureNsg => azure::network::nsg_block(&shared.azure, &block, cx).await,
                Backend::AzureIpGroup => {
                    azure::network::ip_group_block(&shared.azure, &block, cx).await
                }
            }
        }
        Action::UnblockIp => {
            let unblock = parse_unblock(input)?;
            match backend {
                Backend::Nftables => nftables::unblock(&shared.nftables, &unblock, cx).await,
                Backend::AzureNsg => azure::network::nsg_unblock(&shared.azure, &unblock, cx).await,
                Backend::AzureIpGroup => {
                    azure::network::ip_group_unblock(&shared.azure, &unblock, cx).await
                }
            }
        }
        Action::ListBlocked => {
            Fields::new(input, &[])?;
            match backend {
                Backend::Nftables => nftables::list_blocked(&shared.nftables, cx).await,
                Backend::AzureNsg => azure::network::nsg_list(&shared.azure, cx).await,
                Backend::AzureIpGroup => azure::network::ip_group_list(&shared.azure, cx).await,
            }
        }
    }
}

fn parse_block(input: Input) -> Result<Block, Failure> {
    let mut fields = Fields::new(input, &["ip", "ttl", "reason"])?;
    let target = parse_target(&fields.required_string("ip")?)?;
    let ttl = fields
        .duration("ttl", TTL_MAX)?
        .ok_or_else(|| Failure::invalid_input("`ttl` is required"))?;
    if ttl < Duration::from_secs(1) {
        return Err(Failure::invalid_input(
            "`ttl` must be at least 1s (a zero timeout would block forever)",
        ));
    }
    let reason = fields.string("reason")?.unwrap_or_default();
    if reason.len() > REASON_BYTES_MAX {
        return Err(Failure::invalid_input(format!(
            "`reason` is longer than {REASON_BYTES_MAX} bytes"
        )));
    }
    Ok(Block {
        target,
        ttl,
        reason,
    })
}

fn parse_unblock(input: Input) -> Result<Unblock, Failure> {
    let mut fields = Fields::new(input, &["ip"])?;
    let target = parse_target(&fields.required_string("ip")?)?;
    Ok(Unblock { target })
}

/// An address or a CIDR, strictly: no host names, no host bits set in a CIDR.
pub(crate) fn parse_target(text: &str) -> Result<IpNet, Failure> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<std::net::IpAddr>() {
        return Ok(IpNet::from(addr));
    }
    let net: IpNet = text.parse().map_err(|_| {
        Failure::invalid_input(format!("`ip` {text:?} is not an IP address or CIDR"))
    })?;
    if net.trunc() != net {
        return Err(Failure::invalid_input(format!(
            "`ip` {text:?} has host bits set (did you mean {}?)",
            net.trunc()
        )));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn input(value: serde_json::Value) -> Input {
        let serde_json::Value::Object(map) = value else {
            unreachable!("an object literal")
        };
        map
    }

    #[test]
    fn targets_are_strict() {
        assert_eq!(
            parse_target("203.0.113.7").unwrap().to_string(),
            "203.0.113.7/32"
        );
        assert_eq!(
            parse_target(" 2001:db8::1 ").unwrap().to_string(),
            "2001:db8::1/128"
        );
        assert_eq!(
            parse_target("198.51.100.0/24").unwrap().to_string(),
            "198.51.100.0/24"
        );
        let cases = [
            (
                "203.0.113.300",
                "invalid input: `ip` \"203.0.113.300\" is not an IP address or CIDR",
            ),
            (
                "evil.example.com",
                "invalid input: `ip` \"evil.example.com\" is not an IP address or CIDR",
            ),
            (
                "10.0.0.1/8",
                "invalid input: `ip` \"10.0.0.1/8\" has host bits set (did you mean 10.0.0.0/8?)",
            ),
            (
                "1.2.3.4; nft flush ruleset",
                "invalid input: `ip` \"1.2.3.4; nft flush ruleset\" is not an IP address or CIDR",
            ),
        ];
        for (text, message) in cases {
            assert_eq!(parse_target(text).unwrap_err().message, message);
        }
    }

    #[test]
    fn a_block_needs_a_nonzero_bounded_ttl() {
        let block = parse_block(input(
            json!({"ip": "203.0.113.7", "ttl": "1h", "reason": "x"}),
        ))
        .expect("valid");
        assert_eq!(block.ttl, Duration::from_secs(3600));
        let zero = parse_block(input(json!({"ip": "203.0.113.7", "ttl": "0s"}))).unwrap_err();
        assert_eq!(
            zero.message,
            "invalid input: `ttl` must be at least 1s (a zero timeout would block forever)"
        );
        let long = parse_block(input(json!({"ip": "203.0.113.7", "ttl": "31d"}))).unwrap_err();
        assert!(
            long.message.contains("exceeds the maximum"),
            "{}",
            long.message
        );
        let missing = parse_block(input(json!({"ip": "203.0.113.7"}))).unwrap_err();
        assert_eq!(missing.message, "invalid input: `ttl` is required");
        let typo = parse_block(input(json!({"ip": "203.0.113.7", "tll": "1h"}))).unwrap_err();
        assert!(
            typo.message
                .starts_with("invalid input: unknown field `tll`"),
            "{}",
            typo.message
        );
    }
}
