//! nft statements built from typed values only: validated table names, IP addresses and
//! networks, ports, whole-second timeouts and comments restricted to a safe character set. No
//! raw input text ever reaches nft syntax.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::connectors::access::Protocol;

/// Longest table name accepted.
pub(crate) const TABLE_BYTES_MAX: usize = 32;
/// Longest element comment written (nft keeps at most 128 bytes).
pub(crate) const COMMENT_BYTES_MAX: usize = 96;
/// Shortest IPv4 prefix the worker blocks, whatever the orchestrator allowed.
pub(crate) const PREFIX_V4_MIN: u8 = 8;
/// Shortest IPv6 prefix the worker blocks, whatever the orchestrator allowed.
pub(crate) const PREFIX_V6_MIN: u8 = 16;

/// The block set of IPv4 sources (addresses and prefixes, with timeouts).
pub(crate) const BLOCK4: &str = "block4";
/// The block set of IPv6 sources.
pub(crate) const BLOCK6: &str = "block6";
/// The set of ports the JIT allow sets guard.
pub(crate) const JIT_PORTS: &str = "jit_ports";
/// The base chain on the input hook.
pub(crate) const CHAIN: &str = "input";
/// Priority of the chain: before the usual filter chains (priority 0).
const CHAIN_PRIORITY: i32 = -10;

/// Checks a table name: an ASCII letter, then letters, digits or `_`, at most
/// [`TABLE_BYTES_MAX`] bytes.
pub(crate) fn parse_table(text: &str) -> Result<String, String> {
    let name = text.trim();
    let mut chars = name.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !starts_with_letter || !rest_ok || name.len() > TABLE_BYTES_MAX {
        return Err(format!(
            "invalid nftables table name {text:?}: expected a letter, then letters, digits or \
             `_`, at most {TABLE_BYTES_MAX} bytes"
        ));
    }
    Ok(name.to_owned())
}

/// Parses a comma-separated port list (`22,8443`); blank entries are skipped, the result is
/// sorted and without duplicates. An empty text gives an empty list.
pub(crate) fn parse_ports(text: &str) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let port = entry
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("invalid port {entry:?}: expected a number from 1 to 65535"))?;
        ports.push(port);
    }
    ports.sort_unstable();
    ports.dedup();
    Ok(ports)
}

/// The block set for the family of `net`.
pub(crate) fn block_set(net: &IpNet) -> &'static str {
    match net {
        IpNet::V4(_) => BLOCK4,
        IpNet::V6(_) => BLOCK6,
    }
}

/// The allow set for `source`'s family and `protocol`, e.g. `jit_tcp4`.
pub(crate) fn jit_set(source: IpAddr, protocol: Protocol) -> String {
    let family = if source.is_ipv4() { 4 } else { 6 };
    format!("jit_{}{family}", protocol.name())
}

/// Every allow set, with its key type.
fn jit_sets() -> Vec<(String, &'static str)> {
    let mut sets = Vec::new();
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        for (source, addr_type) in [
            (IpAddr::from([0u8; 4]), "ipv4_addr"),
            (IpAddr::from([0u16; 8]), "ipv6_addr"),
        ] {
            sets.push((jit_set(source, protocol), addr_type));
        }
    }
    sets
}

/// Refuses networks wider than the worker-side floor (`0.0.0.0/0`, `::/0`, ...).
pub(crate) fn check_prefix(net: &IpNet) -> Result<(), String> {
    let (floor, len) = match net {
        IpNet::V4(n) => (PREFIX_V4_MIN, n.prefix_len()),
        IpNet::V6(n) => (PREFIX_V6_MIN, n.prefix_len()),
    };
    if len < floor {
        return Err(format!(
            "refusing to block {net}: this worker never blocks a prefix shorter than /{floor}"
        ));
    }
    Ok(())
}

/// An address or network as an nft set key: a bare address for a single host.
pub(crate) fn net_key(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

/// An allow-set key: `source . port`.
pub(crate) fn jit_key(source: IpAddr, port: u16) -> String {
    format!("{source} . {port}")
}

/// Keeps `[A-Za-z0-9._:/=-]` of `text` (others become `_`), at most [`COMMENT_BYTES_MAX`].
pub(crate) fn comment(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._:/=-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(COMMENT_BYTES_MAX)
        .collect()
}

/// A timeout in whole seconds, never below one (zero would mean "forever").
pub(crate) fn timeout(ttl: Duration) -> String {
    format!("{}s", ttl.as_secs().max(1))
}

/// `add element inet T SET { KEY timeout Ns comment "C" }`.
pub(crate) fn add_element(table: &str, set: &str, key: &str, ttl: Duration, note: &str) -> String {
    format!(
        "add element inet {table} {set} {{ {key} timeout {} comment \"{}\" }}",
        timeout(ttl),
        comment(note)
    )
}

/// `delete element inet T SET { KEY }`.
pub(crate) fn delete_element(table: &str, set: &str, key: &str) -> String {
    format!("delete element inet {table} {set} {{ {key} }}")
}

/// Statements that put `key` in `set` with a fresh timeout. A present element is re-added,
/// deleted and added again in the same transaction: the first add keeps the delete from
/// failing if the element expired since it was read, and the final add sets the new timeout
/// (re-adding alone is not a documented refresh).
pub(crate) fn ensure_element(
    table: &str,
    set: &str,
    key: &str,
    ttl: Duration,
    note: &str,
    present: bool,
) -> Vec<String> {
    let add = add_element(table, set, key, ttl, note);
    if present {
        vec![add.clone(), delete_element(table, set, key), add]
    } else {
        vec![add]
    }
}

/// The idempotent setup of the managed table, as statements of one transaction: objects are
/// added (a no-op when identical ones exist, so set elements survive) and the chain's rules are
/// rebuilt by a flush and adds, so running it again never duplicates a rule.
pub(crate) fn setup(table: &str, jit_ports: &[u16]) -> Vec<String> {
    let mut lines = vec![
        format!("add table inet {table}"),
        format!("add set inet {table} {BLOCK4} {{ type ipv4_addr; flags interval,timeout; }}"),
        format!("add set inet {table} {BLOCK6} {{ type ipv6_addr; flags interval,timeout; }}"),
        format!("add set inet {table} {JIT_PORTS} {{ type inet_service; }}"),
    ];
    for (set, addr_type) in jit_sets() {
        lines.push(format!(
            "add set inet {table} {set} {{ type {addr_type} . inet_service; flags timeout; }}"
        ));
    }
    lines.push(format!(
        "add chain inet {table} {CHAIN} {{ type filter hook input priority {CHAIN_PRIORITY}; \
         policy accept; }}"
    ));
    lines.push(format!("flush chain inet {table} {CHAIN}"));
    lines.push(format!("flush set inet {table} {JIT_PORTS}"));
    if !jit_ports.is_empty() {
        let ports: Vec<String> = jit_ports.iter().map(u16::to_string).collect();
        lines.push(format!(
            "add element inet {table} {JIT_PORTS} {{ {} }}",
            ports.join(", ")
        ));
    }
    lines.extend(
        rules()
            .into_iter()
            .map(|rule| format!("add rule inet {table} {CHAIN} {rule}")),
    );
    lines
}

/// The chain's rules, in order: blocks first (a blocked source stays blocked even with a
/// grant), loopback exempt from the port guard, then the allow sets, then the guard.
pub(crate) fn rules() -> Vec<String> {
    let mut rules = vec![
        format!("ip saddr @{BLOCK4} drop"),
        format!("ip6 saddr @{BLOCK6} drop"),
        "iif \"lo\" accept".to_owned(),
    ];
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        let proto = protocol.name();
        for (source, family) in [
            (IpAddr::from([0u8; 4]), "ip"),
            (IpAddr::from([0u16; 8]), "ip6"),
        ] {
            let set = jit_set(source, protocol);
            rules.push(format!("{family} saddr . {proto} dport @{set} accept"));
        }
    }
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        rules.push(format!("{} dport @{JIT_PORTS} drop", protocol.name()));
    }
    rules
}

/// One transaction for `nft -f -`.
pub(crate) fn transaction(lines: &[String]) -> String {
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// A statement as an operator would type it, for `changes`.
pub(crate) fn display(statement: &str) -> String {
    format!("nft {statement}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names() {
        assert_eq!(parse_table(" riposte ").unwrap(), "riposte");
        assert_eq!(parse_table("soar_2").unwrap(), "soar_2");
        for bad in ["", "2x", "a b", "a;b", "a-b", "x{", &"a".repeat(33)] {
            assert!(parse_table(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn port_lists() {
        assert_eq!(parse_ports("8443, 22,,22").unwrap(), [22, 8443]);
        assert!(parse_ports("").unwrap().is_empty());
        for bad in ["0", "65536", "ssh", "22;23"] {
            assert!(parse_ports(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn comments_keep_a_safe_charset_and_length() {
        assert_eq!(comment("run-1/block/0"), "run-1/block/0");
        assert_eq!(comment("a\" }; flush ruleset"), "a_____flush_ruleset");
        assert_eq!(comment(&"x".repeat(500)).len(), COMMENT_BYTES_MAX);
        assert_eq!(comment("é"), "_");
    }

    #[test]
    fn keys_and_prefix_floor() {
        let host: IpNet = "203.0.113.7/32".parse().unwrap();
        let net: IpNet = "2001:db8::/32".parse().unwrap();
        assert_eq!(net_key(&host), "203.0.113.7");
        assert_eq!(net_key(&net), "2001:db8::/32");
        assert_eq!(block_set(&host), BLOCK4);
        assert_eq!(block_set(&net), BLOCK6);
        assert!(check_prefix(&"10.0.0.0/8".parse().unwrap()).is_ok());
        let wide = check_prefix(&"0.0.0.0/0".parse().unwrap()).unwrap_err();
        assert!(wide.contains("shorter than /8"), "{wide}");
        assert!(check_prefix(&"::/0".parse().unwrap()).is_err());
        assert!(check_prefix(&"2000::/15".parse().unwrap()).is_err());
        let v6: IpAddr = "2001:db8::2".parse().unwrap();
        assert_eq!(jit_set(v6, Protocol::Udp), "jit_udp6");
        assert_eq!(jit_key(v6, 22), "2001:db8::2 . 22");
    }

    #[test]
    fn refresh_is_add_delete_add() {
        let ttl = Duration::from_secs(90);
        let absent = ensure_element("t", BLOCK4, "192.0.2.9", ttl, "r/s/0", false);
        assert_eq!(
            absent,
            ["add element inet t block4 { 192.0.2.9 timeout 90s comment \"r/s/0\" }"]
        );
        let present = ensure_element("t", BLOCK4, "192.0.2.9", ttl, "r/s/0", true);
        assert_eq!(present.len(), 3);
        assert_eq!(present[1], "delete element inet t block4 { 192.0.2.9 }");
        assert_eq!(present[0], present[2]);
        assert_eq!(timeout(Duration::from_millis(1500)), "1s");
    }

    #[test]
    fn setup_rebuilds_the_rules_after_a_flush() {
        let lines = setup("t", &[22, 8443]);
        let flush = lines.iter().position(|l| l == "flush chain inet t input");
        let first_rule = lines.iter().position(|l| l.starts_with("add rule"));
        assert!(flush.unwrap() < first_rule.unwrap(), "{lines:#?}");
        assert!(lines.contains(&"add element inet t jit_ports { 22, 8443 }".to_owned()));
        let added: Vec<_> = lines.iter().filter(|l| l.starts_with("add rule")).collect();
        assert_eq!(added.len(), rules().len());
        assert_eq!(added[0], "add rule inet t input ip saddr @block4 drop");
        assert!(!setup("t", &[]).iter().any(|l| l.starts_with("add element")));
    }
}
