//! Pure parsers for dnf and rpm: `dnf check-update` listings, `rpm -q --qf` lines, and rpm's
//! version comparison (`rpmvercmp` and epoch:version-release). No IO here.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde_json::{Value, json};

/// One update `dnf check-update` lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Update {
    pub(crate) name: String,
    pub(crate) arch: String,
    /// `[epoch:]version-release`.
    pub(crate) candidate: String,
    pub(crate) repo: String,
}

impl Update {
    /// The `pending` entry of the action outputs.
    pub(crate) fn to_json(&self, current: Option<&String>, security: bool) -> Value {
        let mut entry = json!({
            "name": self.name,
            "arch": self.arch,
            "candidate": self.candidate,
            "repo": self.repo,
            "security": security,
        });
        if let Some(current) = current {
            entry["current"] = json!(current);
        }
        entry
    }
}

/// Parses the stdout of `dnf -q check-update`: `name.arch version repo` triples, which dnf
/// wraps onto two lines when the name is long. The "Obsoleting Packages" section and the
/// informational lines dnf mixes in are skipped.
pub(crate) fn check_update(stdout: &str) -> Result<Vec<Update>, String> {
    let mut tokens = Vec::new();
    for line in stdout.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("Obsoleting Packages") {
            break;
        }
        let informational = [
            "Last metadata expiration check",
            "Security:",
            "Updating Subscription",
        ];
        if informational.iter().any(|p| trimmed.starts_with(p)) {
            continue;
        }
        tokens.extend(trimmed.split_whitespace());
    }
    if tokens.len() % 3 != 0 {
        return Err(format!("unexpected dnf check-update output: {stdout:?}"));
    }
    tokens
        .chunks(3)
        .map(|triple| {
            let (name, arch) = triple[0]
                .rsplit_once('.')
                .filter(|(n, a)| !n.is_empty() && !a.is_empty())
                .ok_or_else(|| format!("unexpected dnf package {:?}", triple[0]))?;
            Ok(Update {
                name: name.to_owned(),
                arch: arch.to_owned(),
                candidate: triple[1].to_owned(),
                repo: triple[2].to_owned(),
            })
        })
        .collect()
}

/// The `rpm -q --qf` format that [`rpm_listing`] reads: the epoch only when there is one, as
/// dnf prints versions.
pub(crate) const RPM_QUERY_FORMAT: &str =
    "%{NAME}\\t%{ARCH}\\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\\n";

/// Parses `rpm -q --qf RPM_QUERY_FORMAT` (or `rpm -qa`): `(name, arch)` to version. Lines such
/// as "package x is not installed" are skipped.
pub(crate) fn rpm_listing(stdout: &str) -> BTreeMap<(String, String), String> {
    stdout
        .lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            let (name, arch, version) = (fields.next()?, fields.next()?, fields.next()?);
            (fields.next().is_none() && !version.is_empty())
                .then(|| ((name.to_owned(), arch.to_owned()), version.to_owned()))
        })
        .collect()
}

/// Compares two `[epoch:]version[-release]` strings the way rpm does (a missing epoch is 0).
pub(crate) fn compare_evr(a: &str, b: &str) -> Ordering {
    let (ea, va, ra) = split_evr(a);
    let (eb, vb, rb) = split_evr(b);
    ea.cmp(&eb)
        .then_with(|| rpmvercmp(va, vb))
        .then_with(|| match (ra, rb) {
            (Some(ra), Some(rb)) => rpmvercmp(ra, rb),
            // A requirement without a release is met by every release of that version.
            _ => Ordering::Equal,
        })
}

fn split_evr(evr: &str) -> (u64, &str, Option<&str>) {
    let (epoch, rest) = match evr.split_once(':') {
        Some((epoch, rest)) => (epoch.parse().unwrap_or(0), rest),
        None => (0, evr),
    };
    match rest.rsplit_once('-') {
        Some((version, release)) => (epoch, version, Some(release)),
        None => (epoch, rest, None),
    }
}

/// rpm's `rpmvercmp`: alternating numeric and alphabetic segments, `~` sorts before anything
/// (pre-releases), `^` after the end but before anything else (post-release snapshots).
pub(crate) fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (mut one, mut two) = (a.as_bytes(), b.as_bytes());
    let separator = |c: &u8| !c.is_ascii_alphanumeric() && *c != b'~' && *c != b'^';
    loop {
        one = skip_while(one, separator);
        two = skip_while(two, separator);
        if one.is_empty() && two.is_empty() {
            return Ordering::Equal;
        }
        let (c1, c2) = (one.first().copied(), two.first().copied());
        if c1 == Some(b'~') || c2 == Some(b'~') {
            if c1 != Some(b'~') {
                return Ordering::Greater;
            }
            if c2 != Some(b'~') {
                return Ordering::Less;
            }
            (one, two) = (&one[1..], &two[1..]);
            continue;
        }
        if c1 == Some(b'^') || c2 == Some(b'^') {
            if one.is_empty() {
                return Ordering::Less;
            }
            if two.is_empty() {
                return Ordering::Greater;
            }
            if c1 != Some(b'^') {
                return Ordering::Greater;
            }
            if c2 != Some(b'^') {
                return Ordering::Less;
            }
            (one, two) = (&one[1..], &two[1..]);
            continue;
        }
        if one.is_empty() || two.is_empty() {
            break;
        }
        let numeric = one[0].is_ascii_digit();
        let class = |c: &u8| {
            if numeric {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphabetic()
            }
        };
        let (seg1, rest1) = split_while(one, class);
        let (seg2, rest2) = split_while(two, class);
        if seg2.is_empty() {
            // Different kinds: a numeric segment is newer than an alphabetic one.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let order = if numeric {
            let (s1, s2) = (
                skip_while(seg1, |c| *c == b'0'),
                skip_while(seg2, |c| *c == b'0'),
            );
            s1.len().cmp(&s2.len()).then_with(|| s1.cmp(s2))
        } else {
            seg1.cmp(seg2)
        };
        if order != Ordering::Equal {
            return order;
        }
        (one, two) = (rest1, rest2);
    }
    if one.is_empty() && two.is_empty() {
        Ordering::Equal
    } else if one.is_empty() {
        Ordering::Less
    } else {
        Ordering::Greater
    }
}

fn skip_while(bytes: &[u8], pred: impl Fn(&u8) -> bool) -> &[u8] {
    let n = bytes.iter().take_while(|c| pred(c)).count();
    &bytes[n..]
}

fn split_while(bytes: &[u8], pred: impl Fn(&u8) -> bool) -> (&[u8], &[u8]) {
    let n = bytes.iter().take_while(|c| pred(c)).count();
    bytes.split_at(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHECK_UPDATE: &str = "
Last metadata expiration check: 0:12:01 ago on Mon 01 Jan 2024 10:00:00 AM UTC.

kernel.x86_64                        5.14.0-362.18.1.el9_3            baseos
openssl.x86_64                       1:3.0.7-25.el9_3                 baseos
python3-a-very-long-package-name-indeed.noarch
                                     1.2.3-4.el9                      appstream
Security: kernel-core-5.14.0-362.8.1.el9_3.x86_64 is an installed security update

Obsoleting Packages
grub2-tools.x86_64                   1:2.06-70.el9_3.2                baseos
    grub2-tools.x86_64               1:2.06-70.el9_3.1                @baseos
";

    #[test]
    fn check_update_triples_wrapped_lines_and_sections() {
        let updates = check_update(CHECK_UPDATE).unwrap();
        let names: Vec<(&str, &str, &str)> = updates
            .iter()
            .map(|u| (u.name.as_str(), u.arch.as_str(), u.candidate.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("kernel", "x86_64", "5.14.0-362.18.1.el9_3"),
                ("openssl", "x86_64", "1:3.0.7-25.el9_3"),
                (
                    "python3-a-very-long-package-name-indeed",
                    "noarch",
                    "1.2.3-4.el9"
                ),
            ]
        );
        assert_eq!(updates[2].repo, "appstream");
        assert_eq!(check_update("\n"), Ok(Vec::new()));
        assert!(check_update("kernel.x86_64 5.14\n").is_err());
        assert!(check_update("kernel 5.14 baseos\n").is_err());
    }

    #[test]
    fn rpm_lines() {
        let listing =
            rpm_listing("openssl\tx86_64\t1:3.0.7-25.el9\npackage nope is not installed\n");
        assert_eq!(listing.len(), 1);
        assert_eq!(
            listing[&("openssl".into(), "x86_64".into())],
            "1:3.0.7-25.el9"
        );
    }

    #[test]
    fn rpm_version_order() {
        use Ordering::*;
        // Cases from rpm's own test suite (rpmvercmp.at).
        for (a, b, want) in [
            ("1.0", "1.0", Equal),
            ("1.0", "2.0", Less),
            ("2.0.1", "2.0", Greater),
            ("2.0", "2.0.1", Less),
            ("5.5p1", "5.5p2", Less),
            ("5.5p10", "5.5p1", Greater),
            ("10xyz", "10.1xyz", Less),
            ("xyz10", "xyz10.1", Less),
            ("xyz.4", "8", Less),
            ("8", "xyz.4", Greater),
            ("5.5p1", "5.5.p1", Equal),
            ("10", "010", Equal),
            ("1.0a", "1.0", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0~rc1~git123", "1.0~rc1", Less),
            ("1.0^", "1.0", Greater),
            ("1.0^git1", "1.0.1", Less),
            ("1.0^git1", "1.0~rc1", Greater),
            ("2.0_1", "2.0.1", Equal),
            ("a", "b", Less),
        ] {
            assert_eq!(rpmvercmp(a, b), want, "{a} vs {b}");
        }
    }

    #[test]
    fn epoch_version_release() {
        assert_eq!(compare_evr("1:1.0-1", "2.0-1"), Ordering::Greater);
        assert_eq!(
            compare_evr("3.0.7-25.el9", "3.0.7-24.el9"),
            Ordering::Greater
        );
        assert_eq!(compare_evr("3.0.7-25.el9", "3.0.7"), Ordering::Equal);
        assert_eq!(compare_evr("3.0.6-99", "3.0.7"), Ordering::Less);
    }
}
