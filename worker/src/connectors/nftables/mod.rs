//! The nftables backend of `firewall.*` and `access.*`: one managed `inet` table on this host.
//!
//! The table (default `riposte`) holds:
//! - `block4` / `block6`: sources to drop (`ipv4_addr` / `ipv6_addr`, `flags interval,timeout`,
//!   so addresses and CIDRs, each with a kernel-side timeout and a comment carrying the task's
//!   idempotency key);
//! - `jit_ports`: the ports the just-in-time sets guard (`--jit-ports`);
//! - `jit_tcp4`, `jit_tcp6`, `jit_udp4`, `jit_udp6`: allowed `source . port` pairs, with
//!   timeouts;
//! - chain `input` (hook input, priority -10, policy accept) whose rules drop blocked sources,
//!   let loopback through, accept allowed pairs and drop every other packet to a guarded port.
//!
//! Every change is one `nft -f -` transaction that first re-runs the idempotent setup (objects
//! are added, which keeps identical ones and their elements; the chain is flushed and its rules
//! re-added), so the table is whole after every action and never holds a rule twice. The worker
//! owns the table: it rewrites the chain's rules and the `jit_ports` set to its configuration,
//! so one worker per host should manage a given table.
//!
//! The rules are stateless on purpose: a new block also drops packets of connections the
//! source already had, and when a grant ends (its timeout or a revoke) packets of sessions it
//! let in are dropped too. A guarded port should therefore lie outside the local ephemeral
//! port range, or replies to the host's own outgoing connections could hit the guard.
//!
//! Inputs reach nft only as typed values (addresses, networks, ports, whole seconds) and
//! comments reduced to a safe character set; each command is an argv run through
//! [`crate::exec`], never a shell. A dry run only lists sets and reports the statements it
//! would apply (including the setup when the table is missing).

mod parse;
mod script;

use std::net::IpAddr;
use std::time::Duration;

use serde_json::{Value, json};

use super::access::{Grant, Revoke};
use super::firewall::{Block, Unblock};
use super::{Context, Failure};
use crate::clock;
use crate::exec;
use parse::Element;
pub(crate) use script::{parse_ports, parse_table};

/// Longest time one nft command may take (capped further by the task's timeout).
const NFT_TIMEOUT: Duration = Duration::from_secs(15);
/// Most ports `--jit-ports` may list.
pub const JIT_PORTS_MAX: usize = 64;
/// The backend name in outputs.
const BACKEND: &str = "nftables";

/// Where the managed nftables objects live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Name of the `inet` table Riposte owns (created on first use, never another's).
    pub table: String,
    /// Ports the JIT allow sets guard: closed to every source but granted ones. Empty: grants
    /// are refused.
    pub jit_ports: Vec<u16>,
    /// The program and leading arguments that run nft (`["nft"]`); a test may wrap it, e.g. in
    /// `ip netns exec NAME nft`.
    pub command: Vec<String>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            table: "riposte".to_owned(),
            jit_ports: Vec::new(),
            command: vec!["nft".to_owned()],
        }
    }
}

/// A parsed `--jit-ports` list (a newtype so the flag takes one comma-separated value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortList(pub Vec<u16>);

impl PortList {
    /// Parses `22,8443`; at most [`JIT_PORTS_MAX`] ports.
    pub(crate) fn parse(text: &str) -> Result<PortList, String> {
        let ports = parse_ports(text)?;
        if ports.len() > JIT_PORTS_MAX {
            return Err(format!("at most {JIT_PORTS_MAX} JIT ports"));
        }
        Ok(PortList(ports))
    }
}

/// The nftables flags, flattened into the worker's command line.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "nftables")]
pub struct Flags {
    /// Name of the `inet` table the nftables backends own [env: RIPOSTE_NFT_TABLE] [default:
    /// riposte]
    #[arg(long = "nft-table", value_name = "NAME", value_parser = parse_table)]
    pub nft_table: Option<String>,

    /// Ports the just-in-time allow sets guard, e.g. `22,8443`: closed to every source except
    /// those granted by `access.grant_jit`. Empty refuses every grant [env:
    /// RIPOSTE_NFT_JIT_PORTS] [default: none]
    #[arg(long = "jit-ports", value_name = "PORT,...", value_parser = PortList::parse)]
    pub jit_ports: Option<PortList>,
}

/// Applies the setup when the worker starts, so that the port guard holds from then on and not
/// only from the first action.
pub(crate) async fn prepare(settings: &Settings) -> Result<(), Failure> {
    let nft = Nft {
        settings,
        timeout: NFT_TIMEOUT,
    };
    nft.apply(&script::setup(&settings.table, &settings.jit_ports))
        .await
}

/// Ensures the block is in the managed set.
pub(crate) async fn block(
    settings: &Settings,
    block: &Block,
    cx: &Context,
) -> Result<Value, Failure> {
    script::check_prefix(&block.target).map_err(Failure::invalid_input)?;
    let nft = Nft::new(settings, cx);
    let set = script::block_set(&block.target);
    let key = script::net_key(&block.target);
    let listed = nft.list_set(set).await?;
    let present = contains(listed.as_deref(), &key);
    let lines = script::ensure_element(&settings.table, set, &key, block.ttl, &cx.key, present);
    let changes = nft.change(listed.is_none(), lines, cx).await?;
    Ok(json!({
        "ip": key,
        "backend": BACKEND,
        "already_blocked": present,
        "expires_at": rfc3339_in(block.ttl),
        "changes": changes,
        "dry_run": cx.dry_run,
    }))
}

/// Ensures the address is out of the managed set.
pub(crate) async fn unblock(
    settings: &Settings,
    unblock: &Unblock,
    cx: &Context,
) -> Result<Value, Failure> {
    let nft = Nft::new(settings, cx);
    let set = script::block_set(&unblock.target);
    let key = script::net_key(&unblock.target);
    let (was_blocked, changes) = nft.remove(set, &key, cx).await?;
    Ok(json!({
        "ip": key,
        "backend": BACKEND,
        "was_blocked": was_blocked,
        "changes": changes,
        "dry_run": cx.dry_run,
    }))
}

/// Lists the managed set.
pub(crate) async fn list_blocked(settings: &Settings, cx: &Context) -> Result<Value, Failure> {
    let nft = Nft::new(settings, cx);
    let mut blocked = Vec::new();
    for set in [script::BLOCK4, script::BLOCK6] {
        let elements = nft.list_set(set).await?.unwrap_or_default();
        blocked.extend(elements.iter().map(|e| listed_block(set, e)));
    }
    Ok(json!({
        "backend": BACKEND,
        "table": settings.table,
        "blocked": blocked,
        "dry_run": cx.dry_run,
    }))
}

/// Ensures the allow element, with its timeout.
pub(crate) async fn grant_jit(
    settings: &Settings,
    grant: &Grant,
    cx: &Context,
) -> Result<Value, Failure> {
    check_jit_port(settings, grant.port)?;
    let nft = Nft::new(settings, cx);
    let source = grant.source.to_canonical();
    let set = script::jit_set(source, grant.protocol);
    let key = script::jit_key(source, grant.port);
    let listed = nft.list_set(&set).await?;
    let present = contains(listed.as_deref(), &key);
    let lines = script::ensure_element(&settings.table, &set, &key, grant.ttl, &cx.key, present);
    let changes = nft.change(listed.is_none(), lines, cx).await?;
    Ok(json!({
        "source_ip": source.to_string(),
        "port": grant.port,
        "protocol": grant.protocol.name(),
        "backend": BACKEND,
        "already_open": present,
        "expires_at": rfc3339_in(grant.ttl),
        "changes": changes,
        "dry_run": cx.dry_run,
    }))
}

/// Ensures the allow element is gone.
pub(crate) async fn revoke_jit(
    settings: &Settings,
    revoke: &Revoke,
    cx: &Context,
) -> Result<Value, Failure> {
    let nft = Nft::new(settings, cx);
    let source: IpAddr = revoke.source.to_canonical();
    let set = script::jit_set(source, revoke.protocol);
    let key = script::jit_key(source, revoke.port);
    let (was_open, changes) = nft.remove(&set, &key, cx).await?;
    Ok(json!({
        "source_ip": source.to_string(),
        "port": revoke.port,
        "protocol": revoke.protocol.name(),
        "backend": BACKEND,
        "was_open": was_open,
        "changes": changes,
        "dry_run": cx.dry_run,
    }))
}

/// Refuses a grant for a port the allow sets do not guard (it would open nothing).
fn check_jit_port(settings: &Settings, port: u16) -> Result<(), Failure> {
    if settings.jit_ports.is_empty() {
        return Err(Failure::permanent(
            "just-in-time access is off on this worker: --jit-ports is empty",
        ));
    }
    if !settings.jit_ports.contains(&port) {
        let guarded: Vec<String> = settings.jit_ports.iter().map(u16::to_string).collect();
        return Err(Failure::permanent(format!(
            "port {port} is not guarded by this worker's --jit-ports ({})",
            guarded.join(",")
        )));
    }
    Ok(())
}

/// True when `listed` (a set that exists) holds exactly `key`.
fn contains(listed: Option<&[Element]>, key: &str) -> bool {
    listed.is_some_and(|elements| elements.iter().any(|e| e.key == key))
}

/// One entry of `list_blocked`.
fn listed_block(set: &str, element: &Element) -> Value {
    json!({
        "ip": element.key,
        "set": set,
        "timeout_secs": element.timeout_secs,
        "expires_at": element.expires_secs.map(|s| rfc3339_in(Duration::from_secs(s))),
        "comment": element.comment,
    })
}

/// Now plus `after`, as RFC 3339 UTC with seconds.
fn rfc3339_in(after: Duration) -> String {
    humantime::format_rfc3339_seconds(clock::wall() + after).to_string()
}

/// Runs nft for one action.
struct Nft<'a> {
    settings: &'a Settings,
    timeout: Duration,
}

impl<'a> Nft<'a> {
    fn new(settings: &'a Settings, cx: &Context) -> Nft<'a> {
        Nft {
            settings,
            timeout: NFT_TIMEOUT.min(cx.timeout),
        }
    }

    /// The elements of `set`, `None` when the set (or the table) does not exist.
    async fn list_set(&self, set: &str) -> Result<Option<Vec<Element>>, Failure> {
        let table = self.settings.table.as_str();
        let args = ["-j", "list", "set", "inet", table, set];
        let (shown, output) = self.run(&args, None).await?;
        if is_absent(&output) {
            return Ok(None);
        }
        let output = check(&shown, output)?;
        parse::set_elements(&output.stdout)
            .map(Some)
            .map_err(|e| Failure::permanent(format!("`{shown}`: {e}")))
    }

    /// Applies `lines` after the setup in one transaction, unless this is a dry run. Returns
    /// the statements as `changes`, the setup included when the table was `missing`.
    async fn change(
        &self,
        missing: bool,
        lines: Vec<String>,
        cx: &Context,
    ) -> Result<Vec<String>, Failure> {
        let settings = self.settings;
        let setup = script::setup(&settings.table, &settings.jit_ports);
        let reported: Vec<String> = if missing {
            setup
                .iter()
                .chain(&lines)
                .map(|l| script::display(l))
                .collect()
        } else {
            lines.iter().map(|l| script::display(l)).collect()
        };
        if !cx.dry_run {
            let all: Vec<String> = setup.into_iter().chain(lines).collect();
            self.apply(&all).await?;
        }
        Ok(reported)
    }

    /// Applies `lines` as one `nft -f -` transaction.
    async fn apply(&self, lines: &[String]) -> Result<(), Failure> {
        let text = script::transaction(lines);
        let (shown, output) = self.run(&["-f", "-"], Some(text)).await?;
        check(&shown, output).map(drop)
    }

    /// Deletes `key` from `set` with one command (a dry run only looks). Returns whether it was
    /// there and the changes.
    async fn remove(
        &self,
        set: &str,
        key: &str,
        cx: &Context,
    ) -> Result<(bool, Vec<String>), Failure> {
        let statement = script::delete_element(&self.settings.table, set, key);
        if cx.dry_run {
            let present = contains(self.list_set(set).await?.as_deref(), key);
            let changes = if present {
                vec![script::display(&statement)]
            } else {
                Vec::new()
            };
            return Ok((present, changes));
        }
        let table = self.settings.table.as_str();
        let element = format!("{{ {key} }}");
        let args = ["delete", "element", "inet", table, set, element.as_str()];
        let (shown, output) = self.run(&args, None).await?;
        if is_absent(&output) {
            return Ok((false, Vec::new()));
        }
        check(&shown, output)?;
        Ok((true, vec![script::display(&statement)]))
    }

    /// Runs `nft ARGS` (with `stdin`); returns the command as shown and its output.
    async fn run(
        &self,
        args: &[&str],
        stdin: Option<String>,
    ) -> Result<(String, exec::Output), Failure> {
        let (program, prefix) = self
            .settings
            .command
            .split_first()
            .ok_or_else(|| Failure::permanent("the nft command is empty"))?;
        let argv = prefix
            .iter()
            .map(String::as_str)
            .chain(args.iter().copied());
        let mut command = exec::Command::new(program, argv).timeout(self.timeout);
        if let Some(text) = stdin {
            command = command.stdin(text);
        }
        let shown = format!("nft {}", args.join(" "));
        let output = exec::run(&command).await.map_err(|e| spawn_failure(&e))?;
        Ok((shown, output))
    }
}

/// The element, set or table is not there.
fn is_absent(output: &exec::Output) -> bool {
    output.code == Some(1)
        && (output.stderr.contains("No such file or directory")
            || output.stderr.contains("element does not exist"))
}

/// A failed command as a [`Failure`] naming it and nft's first line of complaint.
fn check(shown: &str, output: exec::Output) -> Result<exec::Output, Failure> {
    if output.success() {
        return Ok(output);
    }
    let code = output
        .code
        .map_or_else(|| "a signal".to_owned(), |c| format!("exit code {c}"));
    Err(Failure::permanent(format!(
        "`{shown}` failed ({code}): {}",
        output.first_line()
    )))
}

/// Why nft did not run.
fn spawn_failure(error: &exec::Error) -> Failure {
    match error {
        exec::Error::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            Failure::permanent(format!(
                "nft is not installed on this worker (install the nftables package): {error}"
            ))
        }
        exec::Error::Spawn { .. } => Failure::permanent(error.to_string()),
        exec::Error::Timeout { .. } | exec::Error::Io { .. } => {
            Failure::retryable(error.to_string())
        }
    }
}

#[cfg(test)]
mod tests;
