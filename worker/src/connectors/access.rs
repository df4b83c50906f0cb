//! The `access.*` actions: just-in-time network access that expires by itself.
//!
//! Inputs are parsed into typed requests here, before any backend is called, so bad input fails
//! the same way on every backend and nothing is changed. A grant always carries a provider-side
//! expiry (an nftables element timeout, a JIT `endTimeUtc`), so access ends even if nothing else
//! runs; the orchestrator's durable revoke is the second line.
//!
//! Output of `grant_jit`: `{"source_ip", "port", "protocol", "backend", "expires_at",
//! "changes", "dry_run"}`; of `revoke_jit`: `{"source_ip", "port", "protocol", "backend",
//! "was_open", "changes", "dry_run"}`.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::Value;

use super::{Context, Failure, Fields, Input, Shared, azure, nftables};

/// Longest grant one action may ask for (Defender for Cloud allows at most a day too).
pub(crate) const TTL_MAX: Duration = Duration::from_secs(24 * 3600);
/// Longest `justification` kept.
pub(crate) const JUSTIFICATION_BYTES_MAX: usize = 512;

/// The `access.*` actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    GrantJit,
    RevokeJit,
}

impl Action {
    /// All `access.*` actions.
    pub(crate) const ALL: &[Action] = &[Action::GrantJit, Action::RevokeJit];

    /// The wire name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Action::GrantJit => "access.grant_jit",
            Action::RevokeJit => "access.revoke_jit",
        }
    }
}

/// Where the `access.*` actions take effect, chosen by the worker's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// An nftables allow set on this host, with kernel-side timeouts.
    Nftables,
    /// Defender for Cloud just-in-time VM access.
    AzureJit,
}

/// The transport protocol of a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// `tcp` or `udp`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// `access.grant_jit`: let `source` reach `port` for `ttl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    pub(crate) source: IpAddr,
    pub(crate) port: u16,
    pub(crate) protocol: Protocol,
    /// Never zero, at most [`TTL_MAX`].
    pub(crate) ttl: Duration,
    /// ARM id of the VM (the Azure backend requires it).
    pub(crate) vm: Option<String>,
    pub(crate) justification: String,
}

/// `access.revoke_jit`: close what a grant opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Revoke {
    pub(crate) source: IpAddr,
    pub(crate) port: u16,
    pub(crate) protocol: Protocol,
    pub(crate) vm: Option<String>,
}

/// Runs one `access.*` action on `backend`.
pub(crate) async fn execute(
    shared: &Shared,
    backend: Backend,
    action: Action,
    input: Input,
    cx: &Context,
) -> Result<Value, Failure> {
    match action {
        Action::GrantJit => {
            let grant = parse_grant(input)?;
            match backend {
                Backend::Nftables => nftables::grant_jit(&shared.nftables, &grant, cx).await,
                Backend::AzureJit => azure::jit::grant(&shared.azure, &grant, cx).await,
            }
        }
        Action::RevokeJit => {
            let revoke = parse_revoke(input)?;
            match backend {
                Backend::Nftables => nftables::revoke_jit(&shared.nftables, &revoke, cx).await,
                Backend::AzureJit => azure::jit::revoke(&shared.azure, &revoke, cx).await,
            }
        }
    }
}

fn parse_grant(input: Input) -> Result<Grant, Failure> {
    let known = [
        "source_ip",
        "port",
        "protocol",
        "ttl",
        "vm",
        "justification",
    ];
    let mut fields = Fields::new(input, &known)?;
    let (source, port, protocol, vm) = parse_common(&mut fields)?;
    let ttl = fields
        .duration("ttl", TTL_MAX)?
        .ok_or_else(|| Failure::invalid_input("`ttl` is required"))?;
    if ttl < Duration::from_secs(1) {
        return Err(Failure::invalid_input("`ttl` must be at least 1s"));
    }
    let justification = fields.string("justification")?.unwrap_or_default();
    if justification.len() > JUSTIFICATION_BYTES_MAX {
        return Err(Failure::invalid_input(format!(
            "`justification` is longer than {JUSTIFICATION_BYTES_MAX} bytes"
        )));
    }
    Ok(Grant {
        source,
        port,
        protocol,
        ttl,
        vm,
        justification,
    })
}

fn parse_revoke(input: Input) -> Result<Revoke, Failure> {
    let mut fields = Fields::new(input, &["source_ip", "port", "protocol", "vm"])?;
    let (source, port, protocol, vm) = parse_common(&mut fields)?;
    Ok(Revoke {
        source,
        port,
        protocol,
        vm,
    })
}

type Common = (IpAddr, u16, Protocol, Option<String>);

fn parse_common(fields: &mut Fields) -> Result<Common, Failure> {
    let text = fields.required_string("source_ip")?;
    let source: IpAddr = text.trim().parse().map_err(|_| {
        Failure::invalid_input(format!("`source_ip` {text:?} is not an IP address"))
    })?;
    let port = match fields.value("port") {
        None => return Err(Failure::invalid_input("`port` is required")),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        Some(_) => None,
    };
    let port = port
        .filter(|p| (1..=65535).contains(p))
        .ok_or_else(|| Failure::invalid_input("`port` must be a number from 1 to 65535"))?;
    let protocol = match fields.string("protocol")?.as_deref().map(str::trim) {
        None | Some("tcp") => Protocol::Tcp,
        Some("udp") => Protocol::Udp,
        Some(other) => {
            return Err(Failure::invalid_input(format!(
                "`protocol` {other:?} is not tcp or udp"
            )));
        }
    };
    let vm = fields.string("vm")?;
    Ok((source, port as u16, protocol, vm))
}
