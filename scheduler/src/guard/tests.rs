//! Tests of the guard: protected ranges, prefix widths, IPv4 embedded in IPv6, accounts.

use proptest::prelude::*;
use serde_json::json;

use super::*;

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
    let policy = Policy::new(nets(&[]), &[], 1000, 0, 0, Some(listen));
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
    let policy = Policy::new(nets(&["203.0.113.0/24"]), &[], 1000, 16, 48, None);
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
    let policy = Policy::new(nets(&[]), &protected, 1000, 24, 64, None);
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
    let policy = Policy::new(nets(&[]), &[], 1000, 24, 64, None);
    assert!(policy.check_account("root").is_err());
}

#[test]
fn every_ipv6_form_embedding_a_protected_ipv4_is_refused() {
    let policy = Policy::default();
    let refused = |form: &str| format!("embeds 10.1.2.3 ({form}), in protected range 10.0.0.0/8");
    let table = [
        ("::a01:203", refused("IPv4-compatible")),
        ("64:ff9b::a01:203", refused("NAT64")),
        ("64:ff9b:1::a01:203", refused("NAT64 local-use")),
        ("64:ff9b:1:abcd:1::a01:203", refused("NAT64 local-use")),
        ("2002:a01:203::1", refused("6to4")),
        ("2002:a01:203:ffff::/64", refused("6to4")),
        // Teredo: server 203.0.113.7, flags 8000, port 1 inverted, client 10.1.2.3 inverted.
        (
            "2001:0:cb00:7107:8000:fffe:f5fe:fdfc",
            refused("Teredo client"),
        ),
        // Server 10.1.2.3, client 203.0.113.7 inverted.
        (
            "2001:0:a01:203:8000:fffe:34ff:8ef8",
            refused("Teredo server"),
        ),
    ];
    for (target, expected) in table {
        let verdict = verdict(&policy, target);
        assert_eq!(
            verdict,
            format!("refused by guard: {target} {expected}"),
            "{target}"
        );
    }
    assert_eq!(
        verdict(&policy, "::ffff:10.1.2.3"),
        "refused by guard: ::ffff:10.1.2.3 is in protected range 10.0.0.0/8",
        "an IPv4-mapped address is checked as the IPv4 it maps"
    );
    assert_eq!(
        verdict(&policy, "::ffff:a01:203"),
        "refused by guard: ::ffff:a01:203 is in protected range 10.0.0.0/8"
    );
    assert_eq!(
        verdict(&policy, "::1"),
        "refused by guard: ::1 is in protected range ::1/128",
        "loopback and unspecified keep their own refusal"
    );
    assert!(verdict(&policy, "::").contains("::/128"));
    assert_eq!(
        verdict(&policy, "64:ff9b::7f00:1"),
        "refused by guard: 64:ff9b::7f00:1 embeds 127.0.0.1 (NAT64), in protected range \
         127.0.0.0/8"
    );
}

#[test]
fn ipv6_forms_embedding_a_public_ipv4_are_allowed() {
    let policy = Policy::default();
    for target in [
        "64:ff9b::cb00:7107",                   // 203.0.113.7
        "64:ff9b::203.0.113.7",                 // the same, written with the dotted tail
        "64:ff9b:1::cb00:7107",                 // local-use
        "2002:cb00:7107::1",                    // 6to4
        "2002:cb00:7107:1::/64",                // a 6to4 site's subnet
        "::cb00:7107",                          // IPv4-compatible
        "::ffff:203.0.113.7",                   // IPv4-mapped
        "2001:0:cb00:7107:8000:fffe:34ff:8ef8", // Teredo, server and client 203.0.113.7
        "2001:db8::1",                          // not Teredo: 2001:db8::/32 is not 2001::/32
        "64:ff9b::cb00:7100/120",               // NAT64 of 203.0.113.0/24
    ] {
        assert_eq!(verdict(&policy, target), "allowed", "{target}");
    }
}

#[test]
fn an_ipv6_block_is_refused_when_the_ipv4_it_can_embed_touches_a_protected_range() {
    // No width limit, so that only the embedding decides.
    let protected = nets(PROTECTED_RANGES_DEFAULT);
    let policy = Policy::new(protected, &[], 1000, 0, 0, None);
    let table = [
        (
            "2002:a00::/24",
            "embeds 10.0.0.0/8 (6to4), in protected range 10.0.0.0/8",
        ),
        (
            "2002:800::/21",
            "embeds 8.0.0.0/5 (6to4), overlaps protected range 10.0.0.0/8",
        ),
        (
            "64:ff9b::/96",
            "embeds 0.0.0.0/0 (NAT64), overlaps protected range 127.0.0.0/8",
        ),
        (
            "64:ff9b::/64",
            "embeds 0.0.0.0/0 (NAT64), overlaps protected range 127.0.0.0/8",
        ),
        (
            "64:ff9b::a00:0/104",
            "embeds 10.0.0.0/8 (NAT64), in protected range 10.0.0.0/8",
        ),
        (
            "64:ff9b:1::/48",
            "embeds 0.0.0.0/0 (NAT64 local-use), overlaps protected range 127.0.0.0/8",
        ),
        (
            "2001:0:a01:203::/64",
            "embeds 10.1.2.3 (Teredo server), in protected range 10.0.0.0/8",
        ),
        (
            // Its server is public, but it covers every Teredo client behind it.
            "2001:0:cb00:7107::/64",
            "embeds 0.0.0.0/0 (Teredo client), overlaps protected range 127.0.0.0/8",
        ),
        (
            "::ffff:0:0/95",
            "embeds 0.0.0.0/0 (IPv4-mapped), overlaps protected range 127.0.0.0/8",
        ),
        (
            "2000::/3",
            "embeds 0.0.0.0/0 (6to4), overlaps protected range 127.0.0.0/8",
        ),
        (
            "::a00:0/104",
            "embeds 10.0.0.0/8 (IPv4-compatible), in protected range 10.0.0.0/8",
        ),
    ];
    for (target, expected) in table {
        assert_eq!(
            verdict(&policy, target),
            format!("refused by guard: {target} {expected}"),
            "{target}"
        );
    }
    for target in [
        "2002:cb00:7100::/40",
        "64:ff9b::cb00:7100/120",
        "2001:db8::/32",
    ] {
        assert_eq!(verdict(&policy, target), "allowed", "{target}");
    }
    assert!(
        verdict(&Policy::default(), "2002:cb00:7100::/40").contains("wider than /64"),
        "the width rule still applies to a public embedding"
    );
}

#[test]
fn embedded_addresses_are_checked_against_the_configured_ranges_and_the_listen_address() {
    let listen: IpAddr = "198.51.100.10".parse().unwrap();
    let policy = Policy::new(nets(&[]), &[], 1000, 24, 64, Some(listen));
    assert_eq!(
        verdict(&policy, "64:ff9b::a01:203"),
        "allowed",
        "10/8 not configured"
    );
    assert_eq!(
        verdict(&policy, "64:ff9b::c633:640a"),
        "refused by guard: 64:ff9b::c633:640a embeds 198.51.100.10 (NAT64), in protected range \
         198.51.100.10/32"
    );
    assert_eq!(
        verdict(&policy, "2002:c633:6400::/40"),
        "refused by guard: 2002:c633:6400::/40 embeds 198.51.100.0/24 (6to4), overlaps \
         protected range 198.51.100.10/32"
    );
}

/// The IPv6 address of `form` embedding `v4`, its other bits taken from `filler`.
fn embed(form: &str, v4: u32, filler: u128) -> Ipv6Addr {
    let v4 = u128::from(v4);
    let bits = match form {
        "IPv4-mapped" => (0xffff << 32) | v4,
        "IPv4-compatible" => v4,
        "NAT64" => (0x64_ff9b << 96) | v4,
        "NAT64 local-use" => (0x64_ff9b_0001 << 80) | (filler & (u128::MAX >> 80) << 32) | v4,
        "6to4" => (0x2002 << 112) | (v4 << 80) | (filler & (u128::MAX >> 48)),
        "Teredo server" => (0x2001_0000 << 96) | (v4 << 64) | (filler & u128::from(u64::MAX)),
        "Teredo client" => {
            (0x2001_0000 << 96) | (filler & (u128::MAX >> 64) << 32) | (!v4 & 0xffff_ffff)
        }
        other => panic!("no form {other}"),
    };
    Ipv6Addr::from(bits)
}

#[test]
fn embed_builds_the_documented_forms() {
    let v4 = u32::from(Ipv4Addr::new(10, 1, 2, 3));
    let shown: Vec<String> = EMBEDDINGS
        .iter()
        .map(|e| embed(e.form, v4, 0).to_string())
        .collect();
    assert_eq!(
        shown,
        [
            "::ffff:10.1.2.3",
            "::a01:203",
            "64:ff9b::a01:203",
            "64:ff9b:1::a01:203",
            "2002:a01:203::",
            "2001:0:a01:203::",
            "2001::f5fe:fdfc",
        ]
    );
}

proptest! {
    #[test]
    fn no_target_panics(bits in any::<u128>(), len in 0u8..=140, v4 in any::<u32>(), len4 in 0u8..=40) {
        let policies = [Policy::default(), Policy::new(vec![], &[], 0, 0, 0, None)];
        for policy in &policies {
            let _ = policy.check_ip(&format!("{}/{len}", Ipv6Addr::from(bits)));
            let _ = policy.check_ip(&Ipv6Addr::from(bits).to_string());
            let _ = policy.check_ip(&format!("{}/{len4}", Ipv4Addr::from(v4)));
        }
    }

    #[test]
    fn an_embedding_of_a_protected_ipv4_is_always_refused(
        range in any::<prop::sample::Index>(),
        form in any::<prop::sample::Index>(),
        host in any::<u32>(),
        filler in any::<u128>(),
        len in 0u8..=128,
    ) {
        let policy = Policy::default();
        let protected: Vec<Ipv4Net> = ALWAYS_PROTECTED_RANGES
            .iter()
            .chain(PROTECTED_RANGES_DEFAULT)
            .filter_map(|r| r.parse().ok())
            .collect();
        let range = range.get(&protected);
        let v4 = u32::from(range.network()) | (host & u32::from(range.hostmask()));
        let form = form.get(EMBEDDINGS).form;
        let address = embed(form, v4, filler);
        let refusal = policy.check_ip(&address.to_string());
        prop_assert!(refusal.is_err(), "{address} ({form} of {})", Ipv4Addr::from(v4));
        // Every block holding such an address is refused too, whatever its width.
        let block = format!("{address}/{len}");
        prop_assert!(policy.check_ip(&block).is_err(), "{block}");
    }
}

#[test]
fn system_accounts_and_low_uids_are_refused() {
    let policy = Policy::default();
    let table = [
        (
            "daemon",
            Some("account daemon is protected (daemon: a system account)"),
        ),
        (
            "Nobody",
            Some("account Nobody is protected (nobody: a system account)"),
        ),
        (
            "www-data",
            Some("account www-data is protected (www-data: a system account)"),
        ),
        (
            "1",
            Some("account 1 is protected (uid 1 is below 1000: system accounts are protected)"),
        ),
        (
            "999",
            Some("account 999 is protected (uid 999 is below 1000: system accounts are protected)"),
        ),
        ("0", Some("account 0 is protected (uid 0: the superuser)")),
        ("1000", None),
        ("65536", None),
        ("99999999999", None),
        ("jdoe", None),
        ("daemons", None),
        ("daemon@contoso.com", None),
        ("CONTOSO\\mail", None),
    ];
    for (account, expected) in table {
        let got = policy.check_account(account).err().map(|r| r.to_string());
        let expected = expected.map(|e| format!("refused by guard: {e}"));
        assert_eq!(got, expected, "{account}");
    }
    for name in SYSTEM_ACCOUNTS {
        assert!(policy.check_account(name).is_err(), "{name}");
    }
}

#[test]
fn the_uid_minimum_is_configured() {
    let policy = Policy::new(vec![], &[], 500, 24, 64, None);
    assert!(policy.check_account("499").is_err());
    assert!(policy.check_account("500").is_ok());
    assert!(
        policy.check_account("daemon").is_err(),
        "names stay protected"
    );
    let none = Policy::new(vec![], &[], 0, 24, 64, None);
    assert!(none.check_account("1").is_ok());
    assert!(none.check_account("0").is_err(), "uid 0 is always refused");
    assert!(none.check_account("000").is_err());
}
