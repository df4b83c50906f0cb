//! The platform-wide guard: what no playbook may target, whatever it says. Pure: a [`Policy`]
//! built once from the configuration, and [`Policy::check`] on one rendered input.
//!
//! The action catalog names the input each guarded action exposes (`Guard::Ip("ip")` on
//! `firewall.block_ip`, `Guard::Account("account")` on the account actions). The scheduler
//! checks every unit of such a step when it renders them, before an approval is requested and
//! before anything is dispatched; undos are never checked (they only restore).
//!
//! - **Addresses.** A target (an address, or a CIDR) is refused when it overlaps a protected
//!   range in either direction (`10.0.0.0/7` touches `10.0.0.0/8`; `10.1.2.3` is inside it),
//!   or when it is wider than the narrowest block allowed (`/24` for IPv4, `/64` for IPv6 by
//!   default). The protected ranges are the configured ones (by default RFC 1918,
//!   `100.64.0.0/10` and `fc00::/7`) plus an always-protected set that configuration cannot
//!   remove: loopback, unspecified, link-local, multicast, broadcast and the orchestrator's own
//!   listen address. Input that does not parse as exactly an address or CIDR is refused.
//! - **IPv4 inside IPv6.** An IPv4-mapped target (`::ffff:10.1.2.3`, a /96 or narrower) is
//!   checked as the IPv4 it maps. Every other IPv6 target that overlaps a prefix embedding an
//!   IPv4 address ([`EMBEDDINGS`]: IPv4-mapped `::ffff:0:0/96`, IPv4-compatible `::/96`, NAT64
//!   `64:ff9b::/96` and `64:ff9b:1::/48` (last 32 bits), 6to4 `2002::/16` (bits 16..48), Teredo
//!   `2001::/32` (server: bits 32..64; client: the last 32 bits inverted)) is checked as the
//!   IPv4 network it can embed: the embedded bits its prefix fixes, nothing fixed being
//!   `0.0.0.0/0`. That network must not overlap a protected IPv4 range in either direction
//!   (`64:ff9b::a01:203 embeds 10.1.2.3 (NAT64), in protected range 10.0.0.0/8`;
//!   `2002:a00::/24` embeds `10.0.0.0/8`; `64:ff9b::/96` embeds all of IPv4).
//! - **Accounts.** `root` and the well-known system accounts ([`SYSTEM_ACCOUNTS`]) are always
//!   protected, configured names are added, and a name that is a number (a uid) below the
//!   configured minimum (1000 by default), or 0, is refused. Names compare case-insensitively
//!   after trimming. When either name has no domain, the local parts are compared
//!   (`root@contoso.com` and `CONTOSO\root` are `root`; a protected `breakglass@contoso.com`
//!   also protects the plain `breakglass`); two names that both carry a domain must match as a
//!   whole. System accounts and uids are a host's: they protect the plain name only
//!   (`daemon`, not `daemon@contoso.com`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use riposte_playbooks::actions::Guard;
use serde_json::Value;

/// Narrowest IPv4 block allowed by default: a `/24` or narrower.
pub const BLOCK_PREFIX_MIN_V4_DEFAULT: u8 = 24;
/// Narrowest IPv6 block allowed by default: a `/64` or narrower.
pub const BLOCK_PREFIX_MIN_V6_DEFAULT: u8 = 64;
/// An account named by a uid below this is a system account, by default (Debian's and most
/// distributions' first regular uid).
pub const ACCOUNT_UID_MIN_DEFAULT: u32 = 1000;

/// The configurable protected ranges when none are configured.
pub const PROTECTED_RANGES_DEFAULT: &[&str] = &[
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
];

/// Protected whatever the configuration says.
pub const ALWAYS_PROTECTED_RANGES: &[&str] = &[
    "127.0.0.0/8",
    "::1/128",
    "0.0.0.0/8",
    "::/128",
    "169.254.0.0/16",
    "fe80::/10",
    "224.0.0.0/4",
    "ff00::/8",
    "255.255.255.255/32",
];

/// Protected whatever the configuration says.
pub const ALWAYS_PROTECTED_ACCOUNTS: &[&str] = &["root"];

/// Well-known system accounts of Linux hosts (Debian's base-passwd, systemd, common daemons),
/// protected whatever the configuration says. Unlike `root` they protect the plain name only:
/// `mail@contoso.com` is somebody's mailbox, not the host's `mail`.
pub const SYSTEM_ACCOUNTS: &[&str] = &[
    "daemon",
    "bin",
    "sys",
    "sync",
    "games",
    "man",
    "lp",
    "mail",
    "news",
    "uucp",
    "proxy",
    "www-data",
    "backup",
    "list",
    "irc",
    "gnats",
    "nobody",
    "systemd-network",
    "systemd-resolve",
    "systemd-timesync",
    "messagebus",
    "sshd",
    "_apt",
    "polkitd",
    "syslog",
    "adm",
    "halt",
    "shutdown",
    "operator",
    "ftp",
];

/// An IPv6 prefix whose addresses carry an IPv4 address: 32 bits at bit `at` (counted from the
/// most significant), inverted when `inverted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Embedding {
    /// The name a refusal gives it.
    pub form: &'static str,
    pub prefix: Ipv6Addr,
    pub prefix_len: u8,
    /// The first bit of the IPv4 address; at least `prefix_len`, at most 96.
    pub at: u8,
    pub inverted: bool,
}

/// The IPv6 forms that embed an IPv4 address, in the order a refusal names them.
pub const EMBEDDINGS: &[Embedding] = &[
    Embedding {
        form: "IPv4-mapped",
        prefix: Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0),
        prefix_len: 96,
        at: 96,
        inverted: false,
    },
    // Deprecated (RFC 4291), still parsed by many stacks.
    Embedding {
        form: "IPv4-compatible",
        prefix: Ipv6Addr::UNSPECIFIED,
        prefix_len: 96,
        at: 96,
        inverted: false,
    },
    // RFC 6052's well-known prefix.
    Embedding {
        form: "NAT64",
        prefix: Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0),
        prefix_len: 96,
        at: 96,
        inverted: false,
    },
    // RFC 8215's local-use prefix; its /96 NAT64 prefixes keep the IPv4 in the last 32 bits.
    Embedding {
        form: "NAT64 local-use",
        prefix: Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
        prefix_len: 48,
        at: 96,
        inverted: false,
    },
    // RFC 3056: 2002:V4ADDR::/48 is the site behind that address.
    Embedding {
        form: "6to4",
        prefix: Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0),
        prefix_len: 16,
        at: 16,
        inverted: false,
    },
    // RFC 4380: 2001:0:SERVER:FLAGS:PORT:CLIENT, the client's address and port inverted.
    Embedding {
        form: "Teredo server",
        prefix: Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        prefix_len: 32,
        at: 32,
        inverted: false,
    },
    Embedding {
        form: "Teredo client",
        prefix: Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        prefix_len: 32,
        at: 96,
        inverted: true,
    },
];

impl Embedding {
    /// The IPv4 network `target` can embed in this form: the embedded bits its prefix fixes.
    /// `None` when `target` does not overlap this form's prefix.
    pub fn embedded(&self, target: Ipv6Net) -> Option<Ipv4Net> {
        let prefix = Ipv6Net::new(self.prefix, self.prefix_len).ok()?;
        if !prefix.contains(&target) && !target.contains(&prefix) {
            return None;
        }
        let at = u32::from(self.at.min(96));
        let bits = u128::from(target.network()) >> (96 - at);
        let word = u32::try_from(bits & u128::from(u32::MAX)).ok()?;
        let word = if self.inverted { !word } else { word };
        let fixed = u32::from(target.prefix_len()).saturating_sub(at).min(32);
        let fixed = u8::try_from(fixed).ok()?;
        Ipv4Net::new(Ipv4Addr::from(word), fixed)
            .ok()
            .map(|n| n.trunc())
    }
}

/// Why the guard refused a target; its text is the step's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused by guard: {0}")]
pub struct Refusal(pub String);

/// What is protected; built once at start from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Configured and always-protected ranges, each with where it comes from.
    ranges: Vec<(IpNet, &'static str)>,
    /// Lowercased protected account names.
    accounts: Vec<String>,
    /// A name that is a uid below this is refused.
    uid_min: u32,
    prefix_min_v4: u8,
    prefix_min_v6: u8,
}

impl Default for Policy {
    /// The default configuration, with no listen address known.
    fn default() -> Policy {
        let ranges = PROTECTED_RANGES_DEFAULT
            .iter()
            .map(|r| r.parse().expect("default ranges parse"))
            .collect();
        Policy::new(
            ranges,
            &[],
            ACCOUNT_UID_MIN_DEFAULT,
            BLOCK_PREFIX_MIN_V4_DEFAULT,
            BLOCK_PREFIX_MIN_V6_DEFAULT,
            None,
        )
    }
}

impl Policy {
    /// `ranges` replace the configurable defaults; the always-protected ranges and `listen`
    /// (the orchestrator's own address) are added, as is `root` to `accounts`. An account
    /// named by a uid below `uid_min` (or 0) is refused.
    pub fn new(
        ranges: Vec<IpNet>,
        accounts: &[String],
        uid_min: u32,
        prefix_min_v4: u8,
        prefix_min_v6: u8,
        listen: Option<IpAddr>,
    ) -> Policy {
        let mut all: Vec<(IpNet, &'static str)> = ALWAYS_PROTECTED_RANGES
            .iter()
            .map(|r| (r.parse().expect("always-protected ranges parse"), "always"))
            .collect();
        all.extend(listen.map(|ip| (IpNet::from(canonical(ip)), "listen")));
        all.extend(ranges.into_iter().map(|r| (canonical_net(r), "configured")));
        let mut names: Vec<String> = ALWAYS_PROTECTED_ACCOUNTS
            .iter()
            .map(|a| a.to_string())
            .chain(accounts.iter().map(|a| a.trim().to_lowercase()))
            .filter(|a| !a.is_empty())
            .collect();
        names.sort();
        names.dedup();
        Policy {
            ranges: all,
            accounts: names,
            uid_min,
            prefix_min_v4: prefix_min_v4.min(32),
            prefix_min_v6: prefix_min_v6.min(128),
        }
    }

    /// Checks the input `guard` names in a unit's rendered `input`.
    pub fn check(&self, guard: Guard, input: &Value) -> Result<(), Refusal> {
        let (key, what) = match guard {
            Guard::Ip(key) => (key, "an IP address or CIDR"),
            Guard::Account(key) => (key, "an account name"),
        };
        let Some(text) = input.get(key).and_then(Value::as_str) else {
            return Err(Refusal(format!("input `{key}` must be {what}")));
        };
        match guard {
            Guard::Ip(_) => self.check_ip(text),
            Guard::Account(_) => self.check_account(text),
        }
    }

    /// Checks one address or CIDR.
    pub fn check_ip(&self, text: &str) -> Result<(), Refusal> {
        let target = parse_target(text)
            .ok_or_else(|| Refusal(format!("`{text}` is not an IP address or CIDR")))?;
        for (range, _) in &self.ranges {
            if range.contains(&target) {
                return Err(Refusal(format!("{text} is in protected range {range}")));
            }
            if target.contains(range) {
                return Err(Refusal(format!("{text} overlaps protected range {range}")));
            }
        }
        if let IpNet::V6(v6) = target {
            self.check_embedded(text, v6)?;
        }
        let (min, family) = match target {
            IpNet::V4(_) => (self.prefix_min_v4, "IPv4"),
            IpNet::V6(_) => (self.prefix_min_v6, "IPv6"),
        };
        if target.prefix_len() < min {
            return Err(Refusal(format!(
                "{text} is wider than /{min}, the widest {family} block allowed"
            )));
        }
        Ok(())
    }

    /// Refuses an IPv6 target that can embed an address of a protected IPv4 range.
    fn check_embedded(&self, text: &str, target: Ipv6Net) -> Result<(), Refusal> {
        for embedding in EMBEDDINGS {
            let Some(embedded) = embedding.embedded(target) else {
                continue;
            };
            let form = embedding.form;
            let shown = if embedded.prefix_len() == 32 {
                embedded.addr().to_string()
            } else {
                embedded.to_string()
            };
            for (range, _) in &self.ranges {
                let IpNet::V4(range) = range else { continue };
                let relation = if range.contains(&embedded) {
                    "in"
                } else if embedded.contains(range) {
                    "overlaps"
                } else {
                    continue;
                };
                return Err(Refusal(format!(
                    "{text} embeds {shown} ({form}), {relation} protected range {range}"
                )));
            }
        }
        Ok(())
    }

    /// Checks one account name.
    pub fn check_account(&self, text: &str) -> Result<(), Refusal> {
        let name = text.trim().to_lowercase();
        if name.is_empty() {
            return Err(Refusal("the account name is empty".to_string()));
        }
        if let Some(protected) = self.accounts.iter().find(|p| same_account(&name, p)) {
            return Err(Refusal(format!(
                "account {text} is protected ({protected})"
            )));
        }
        if SYSTEM_ACCOUNTS.contains(&name.as_str()) {
            return Err(Refusal(format!(
                "account {text} is protected ({name}: a system account)"
            )));
        }
        if name.bytes().all(|b| b.is_ascii_digit()) {
            // Too many digits for a u32 is no uid at all.
            let uid = name.parse::<u32>().ok();
            if uid == Some(0) {
                return Err(Refusal(format!(
                    "account {text} is protected (uid 0: the superuser)"
                )));
            }
            if let Some(uid) = uid.filter(|uid| *uid < self.uid_min) {
                return Err(Refusal(format!(
                    "account {text} is protected (uid {uid} is below {}: system accounts are \
                     protected)",
                    self.uid_min
                )));
            }
        }
        Ok(())
    }
}

/// An address is a host route; `::ffff:a.b.c.d` is checked as `a.b.c.d`.
fn parse_target(text: &str) -> Option<IpNet> {
    let net = match text.parse::<IpAddr>() {
        Ok(ip) => IpNet::from(ip),
        Err(_) => text.parse::<IpNet>().ok()?.trunc(),
    };
    Some(canonical_net(net))
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// An IPv6 network inside `::ffff:0:0/96` as the IPv4 network it maps.
fn canonical_net(net: IpNet) -> IpNet {
    let IpNet::V6(v6) = net else { return net };
    match (v6.network().to_ipv4_mapped(), v6.prefix_len()) {
        (Some(v4), len) if len >= 96 => {
            Ipv4Net::new(v4, len - 96).map_or(net, |n| IpNet::V4(n.trunc()))
        }
        _ => net,
    }
}

/// Both lowercased and trimmed. Whole names match; when either has no domain, local parts do.
fn same_account(name: &str, protected: &str) -> bool {
    if name == protected {
        return true;
    }
    let has_domain = |n: &str| n.contains('@') || n.contains('\\');
    if has_domain(name) && has_domain(protected) {
        return false;
    }
    local_part(name) == local_part(protected)
}

/// `user@domain` and `DOMAIN\user` are `user`.
fn local_part(name: &str) -> &str {
    let name = name.rsplit('\\').next().unwrap_or(name);
    name.split('@').next().unwrap_or(name)
}

#[cfg(test)]
mod tests;
