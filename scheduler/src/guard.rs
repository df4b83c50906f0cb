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
//!   listen address. An IPv4-mapped IPv6 target (`::ffff:10.1.2.3`) is checked as the IPv4 it
//!   maps. Input that does not parse as exactly an address or CIDR is refused.
//! - **Accounts.** `root` is always protected; configured names are added. Names compare
//!   case-insensitively after trimming. When either name has no domain, the local parts are
//!   compared (`root@contoso.com` and `CONTOSO\root` are `root`; a protected
//!   `breakglass@contoso.com` also protects the plain `breakglass`); two names that both carry
//!   a domain must match as a whole.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};
use riposte_playbooks::actions::Guard;
use serde_json::Value;

/// Narrowest IPv4 block allowed by default: a `/24` or narrower.
pub const BLOCK_PREFIX_MIN_V4_DEFAULT: u8 = 24;
/// Narrowest IPv6 block allowed by default: a `/64` or narrower.
pub const BLOCK_PREFIX_MIN_V6_DEFAULT: u8 = 64;

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
            BLOCK_PREFIX_MIN_V4_DEFAULT,
            BLOCK_PREFIX_MIN_V6_DEFAULT,
            None,
        )
    }
}

impl Policy {
    /// `ranges` replace the configurable defaults; the always-protected ranges and `listen`
    /// (the orchestrator's own address) are added, as is `root` to `accounts`.
    pub fn new(
        ranges: Vec<IpNet>,
        accounts: &[String],
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

    /// Checks one account name.
    pub fn check_account(&self, text: &str) -> Result<(), Refusal> {
        let name = text.trim().to_lowercase();
        if name.is_empty() {
            return Err(Refusal("the account name is empty".to_string()));
        }
        match self.accounts.iter().find(|p| same_account(&name, p)) {
            Some(protected) => Err(Refusal(format!(
                "account {text} is protected ({protected})"
            ))),
            None => Ok(()),
        }
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
mod tests {
    use super::*;
    use serde_json::json;

    fn nets(ranges: &[&str]) -> Vec<IpNet> {
        ranges.iter().map(|r| r.parse().unwrap()).collect()
    }

    fn verdict(policy: &Policy, target: &str) -> String {
        match policy.check_ip(target) {
            Ok(()) => "allowed".to_string(),
            Err(refusal) => refusal.to_string(),
        }
    }

    #[test]
    fn default_ranges_refuse_both_directions_and_wide_blocks() {
        let policy = Policy::default();
        let table = [
            ("203.0.113.7", "allowed"),
            ("203.0.113.0/24", "allowed"),
            ("2001:db8::1", "allowed"),
            ("2001:db8:1:2::/64", "allowed"),
            (
                "10.1.2.3",
                "refused by guard: 10.1.2.3 is in protected range 10.0.0.0/8",
            ),
            (
                "10.0.0.0/7",
                "refused by guard: 10.0.0.0/7 overlaps protected range 10.0.0.0/8",
            ),
            (
                "172.20.0.0/24",
                "refused by guard: 172.20.0.0/24 is in protected range 172.16.0.0/12",
            ),
            (
                "192.168.1.1",
                "refused by guard: 192.168.1.1 is in protected range 192.168.0.0/16",
            ),
            (
                "100.64.1.1",
                "refused by guard: 100.64.1.1 is in protected range 100.64.0.0/10",
            ),
            (
                "fd12::1",
                "refused by guard: fd12::1 is in protected range fc00::/7",
            ),
            (
                "::ffff:10.1.2.3",
                "refused by guard: ::ffff:10.1.2.3 is in protected range 10.0.0.0/8",
            ),
            (
                "203.0.113.0/23",
                "refused by guard: 203.0.113.0/23 is wider than /24, the widest IPv4 block allowed",
            ),
            (
                "2001:db8::/48",
                "refused by guard: 2001:db8::/48 is wider than /64, the widest IPv6 block allowed",
            ),
            (
                "0.0.0.0/0",
                "refused by guard: 0.0.0.0/0 overlaps protected range 127.0.0.0/8",
            ),
            (
                "203.0.113.7/24",
                "allowed", // host bits are dropped: the /24 is what would be blocked
            ),
        ];
        for (target, expected) in table {
            assert_eq!(verdict(&policy, target), expected, "{target}");
        }
    }

    #[test]
    fn always_protected_ranges_survive_any_configuration() {
        let listen: IpAddr = "198.51.100.10".parse().unwrap();
        let policy = Policy::new(nets(&[]), &[], 0, 0, Some(listen));
        let table = [
            ("127.0.0.1", "127.0.0.0/8"),
            ("::1", "::1/128"),
            ("0.0.0.0", "0.0.0.0/8"),
            ("::", "::/128"),
            ("169.254.169.254", "169.254.0.0/16"),
            ("fe80::1", "fe80::/10"),
            ("239.1.2.3", "224.0.0.0/4"),
            ("ff02::1", "ff00::/8"),
            ("255.255.255.255", "255.255.255.255/32"),
            ("198.51.100.10", "198.51.100.10/32"),
            ("198.51.100.0/24", "198.51.100.10/32"),
        ];
        for (target, range) in table {
            let refusal = policy.check_ip(target).unwrap_err().0;
            assert!(refusal.contains(range), "{target}: {refusal}");
        }
        assert_eq!(verdict(&policy, "10.1.2.3"), "allowed", "defaults replaced");
        assert_eq!(verdict(&policy, "8.0.0.0/8"), "allowed", "prefix minimum 0");
    }

    #[test]
    fn configured_ranges_replace_the_defaults_and_prefix_minimums_apply() {
        let policy = Policy::new(nets(&["203.0.113.0/24"]), &[], 16, 48, None);
        assert!(verdict(&policy, "203.0.113.7").contains("203.0.113.0/24"));
        assert_eq!(verdict(&policy, "10.1.2.3"), "allowed");
        assert_eq!(verdict(&policy, "198.51.0.0/16"), "allowed");
        assert!(verdict(&policy, "198.0.0.0/15").contains("wider than /16"));
        assert_eq!(verdict(&policy, "2001:db8::/48"), "allowed");
        assert!(verdict(&policy, "2001:db8::/47").contains("wider than /48"));
    }

    #[test]
    fn unparsable_targets_are_refused() {
        let policy = Policy::default();
        for bad in ["", "example.com", "203.0.113.7 ", "203.0.113.7/33", "1.2.3"] {
            let refusal = policy.check_ip(bad).unwrap_err().0;
            assert!(refusal.contains("is not an IP address or CIDR"), "{bad:?}");
        }
        let guard = Guard::Ip("ip");
        assert!(policy.check(guard, &json!({})).is_err());
        assert!(policy.check(guard, &json!({"ip": 7})).is_err());
        assert!(policy.check(guard, &json!({"ip": ["8.8.8.8"]})).is_err());
        assert!(policy.check(guard, &json!({"ip": "8.8.8.8"})).is_ok());
    }

    #[test]
    fn accounts_compare_case_insensitively_and_by_local_part() {
        let protected = ["BreakGlass".to_string(), "svc-backup@contoso.com".into()];
        let policy = Policy::new(nets(&[]), &protected, 24, 64, None);
        let table = [
            ("root", false),
            ("ROOT", false),
            (" root ", false),
            ("root@contoso.com", false),
            ("CONTOSO\\root", false),
            ("breakglass", false),
            ("BREAKGLASS@fabrikam.com", false),
            ("svc-backup@CONTOSO.com", false),
            ("svc-backup", false),
            ("svc-backup@fabrikam.com", true),
            ("alice", true),
            ("alice@contoso.com", true),
            ("rooted", true),
        ];
        for (account, allowed) in table {
            assert_eq!(
                policy.check_account(account).is_ok(),
                allowed,
                "{account}: {:?}",
                policy.check_account(account)
            );
        }
        assert!(policy.check_account("  ").is_err());
        let guard = Guard::Account("account");
        assert_eq!(
            policy.check(guard, &json!({"account": "Root"})),
            Err(Refusal("account Root is protected (root)".into()))
        );
        assert!(policy.check(guard, &json!({"account": 0})).is_err());
    }

    #[test]
    fn root_cannot_be_configured_away() {
        let policy = Policy::new(nets(&[]), &[], 24, 64, None);
        assert!(policy.check_account("root").is_err());
    }
}
