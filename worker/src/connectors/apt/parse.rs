//! Pure parsers of what apt and dpkg print: `apt-get -s` simulation lines and
//! `dpkg-query -W` listings. No IO here.
//!
//! An `Inst` line of `apt-get -s` (the stable script interface, apt-get(8)) reads
//! `Inst NAME [CURRENT] (CANDIDATE ORIGIN, ORIGIN [ARCH]) [BROKEN ]`, where `[CURRENT]` is
//! missing for a new package and each `ORIGIN` is `[LABEL:][VERSION/]SUITE` of a repository
//! that carries the candidate (or its host name when the repository has no Release file), e.g.
//! `Inst libgcrypt20 [1.10.1-3] (1.10.1-3+deb12u1 Debian:12.15/oldstable,
//! Debian-Security:12/oldstable-security [amd64])`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// The label of Debian's security archive.
const SECURITY_LABEL: &str = "Debian-Security";
/// The suffix of a security suite (`bookworm-security`, `jammy-security`).
const SECURITY_SUITE_SUFFIX: &str = "-security";

/// One repository that carries a candidate, as an `Inst` line names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    pub(crate) label: Option<String>,
    pub(crate) version: Option<String>,
    /// The suite (`bookworm-security`), or the host name of a repository without a Release file.
    pub(crate) suite: String,
}

impl Origin {
    /// A security repository: label `Debian-Security` or a suite ending in `-security`.
    pub(crate) fn is_security(&self) -> bool {
        self.label.as_deref() == Some(SECURITY_LABEL) || self.suite.ends_with(SECURITY_SUITE_SUFFIX)
    }
}

/// A package that the simulation would install or upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    /// As apt names it (`libc6`, or `libc6:i386` for a foreign architecture).
    pub(crate) name: String,
    /// The installed version; `None` for a package that would be newly installed.
    pub(crate) current: Option<String>,
    pub(crate) candidate: String,
    pub(crate) arch: String,
    pub(crate) origins: Vec<Origin>,
}

impl Pending {
    /// Security classification is by repository: the candidate comes from a security origin.
    pub(crate) fn security(&self) -> bool {
        self.origins.iter().any(Origin::is_security)
    }

    /// The `pending` entry of the action outputs.
    pub(crate) fn to_json(&self) -> Value {
        let origins: Vec<String> = self.origins.iter().map(origin_text).collect();
        let mut entry = json!({
            "name": self.name,
            "candidate": self.candidate,
            "arch": self.arch,
            "security": self.security(),
            "origins": origins,
        });
        if let Some(current) = &self.current {
            entry["current"] = json!(current);
        }
        entry
    }
}

fn origin_text(origin: &Origin) -> String {
    let label = origin
        .label
        .as_ref()
        .map_or(String::new(), |l| format!("{l}:"));
    let version = origin
        .version
        .as_ref()
        .map_or(String::new(), |v| format!("{v}/"));
    format!("{label}{version}{}", origin.suite)
}

/// What a simulation would do: installs and upgrades (`Inst`) and removals (`Remv`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Simulation {
    pub(crate) pending: Vec<Pending>,
    pub(crate) removals: Vec<String>,
}

/// Parses the stdout of `apt-get -s`; lines other than `Inst` and `Remv` are ignored, an
/// `Inst` line that does not parse is an error (the format is apt's script interface).
pub(crate) fn simulation(stdout: &str) -> Result<Simulation, String> {
    let mut simulation = Simulation::default();
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("Inst ") {
            let pending = inst_line(rest).ok_or_else(|| format!("unexpected apt line {line:?}"))?;
            simulation.pending.push(pending);
        } else if let Some(rest) = line.strip_prefix("Remv ") {
            let name = rest.split_whitespace().next().unwrap_or_default();
            simulation.removals.push(name.to_owned());
        }
    }
    Ok(simulation)
}

/// `NAME [CURRENT] (CANDIDATE ORIGINS [ARCH])...` after `Inst `.
fn inst_line(rest: &str) -> Option<Pending> {
    let (name, rest) = rest.split_once(' ')?;
    let rest = rest.trim_start();
    let (current, rest) = match rest.strip_prefix('[') {
        Some(after) => {
            let (current, rest) = after.split_once(']')?;
            (Some(current.to_owned()), rest.trim_start())
        }
        None => (None, rest),
    };
    let inner = rest.strip_prefix('(')?;
    let inner = &inner[..inner.find(')')?];
    let (candidate, rest) = inner.split_once(' ')?;
    let (origins, arch) = rest.strip_suffix(']')?.rsplit_once('[')?;
    let origins = origins
        .trim()
        .split(", ")
        .filter(|o| !o.is_empty())
        .map(origin)
        .collect();
    if name.is_empty() || candidate.is_empty() || arch.is_empty() {
        return None;
    }
    Some(Pending {
        name: name.to_owned(),
        current,
        candidate: candidate.to_owned(),
        arch: arch.to_owned(),
        origins,
    })
}

/// `[LABEL:][VERSION/]SUITE`.
fn origin(text: &str) -> Origin {
    let (label, rest) = match text.split_once(':') {
        Some((label, rest)) => (Some(label.to_owned()), rest),
        None => (None, text),
    };
    let (version, suite) = match rest.rsplit_once('/') {
        Some((version, suite)) => (Some(version.to_owned()), suite),
        None => (None, rest),
    };
    Origin {
        label,
        version,
        suite: suite.to_owned(),
    }
}

/// The `dpkg-query -W` format that [`installed`] reads.
pub(crate) const DPKG_QUERY_FORMAT: &str =
    "${Package}\t${Architecture}\t${Version}\t${db:Status-Abbrev}\n";

/// A package instance: its name and architecture.
pub(crate) type Instance = (String, String);

/// Parses `dpkg-query -W -f DPKG_QUERY_FORMAT`: the installed version of every package that is
/// installed (status `i`, or `W`/`t` waiting on triggers); removed ones (`rc`) are left out.
pub(crate) fn installed(stdout: &str) -> BTreeMap<Instance, String> {
    stdout
        .lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            let (name, arch, version, status) = (
                fields.next()?,
                fields.next()?,
                fields.next()?,
                fields.next()?,
            );
            let state = status.chars().nth(1)?;
            let present = matches!(state, 'i' | 'W' | 't') && !version.is_empty();
            present.then(|| ((name.to_owned(), arch.to_owned()), version.to_owned()))
        })
        .collect()
}

/// One package whose installed version changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) name: String,
    pub(crate) arch: String,
    pub(crate) from: Option<String>,
    pub(crate) to: String,
}

impl Change {
    /// The `installed` entry of `patch.install`.
    pub(crate) fn to_json(&self) -> Value {
        let mut entry = json!({ "name": self.name, "arch": self.arch, "to": self.to });
        if let Some(from) = &self.from {
            entry["from"] = json!(from);
        }
        entry
    }
}

/// The packages installed or upgraded between two listings (removals are not changes here).
pub(crate) fn changes(
    before: &BTreeMap<Instance, String>,
    after: &BTreeMap<Instance, String>,
) -> Vec<Change> {
    after
        .iter()
        .filter(|(key, version)| before.get(*key) != Some(*version))
        .map(|((name, arch), version)| Change {
            name: name.clone(),
            arch: arch.clone(),
            from: before.get(&(name.clone(), arch.clone())).cloned(),
            to: version.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &str = "\
Reading package lists...
Building dependency tree...
Reading state information...
Calculating upgrade...
The following packages will be upgraded:
  libgcrypt20 rip-demo
2 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.
Inst libgcrypt20 [1.10.1-3] (1.10.1-3+deb12u1 Debian:12.15/oldstable, Debian-Security:12/oldstable-security [amd64])
Inst libc6:i386 [2.36-9] (2.36-9+deb12u4 Debian:12.5/stable [i386]) [libc-bin:amd64 ]
Inst rip-demo [1.0] (2.0 riposte-test:test-security [all])
Inst newdep (0.5 localhost [all])
Remv oldpkg [1.2]
Conf libgcrypt20 (1.10.1-3+deb12u1 Debian:12.15/oldstable, Debian-Security:12/oldstable-security [amd64])
";

    #[test]
    fn inst_lines_with_origins_and_security() {
        let sim = simulation(UPGRADE).unwrap();
        assert_eq!(sim.removals, ["oldpkg"]);
        let [gcrypt, libc, demo, newdep] = &sim.pending[..] else {
            panic!("{sim:?}");
        };
        assert_eq!(gcrypt.name, "libgcrypt20");
        assert_eq!(gcrypt.current.as_deref(), Some("1.10.1-3"));
        assert_eq!(gcrypt.candidate, "1.10.1-3+deb12u1");
        assert_eq!(gcrypt.arch, "amd64");
        assert_eq!(
            gcrypt.origins[1],
            Origin {
                label: Some("Debian-Security".into()),
                version: Some("12".into()),
                suite: "oldstable-security".into(),
            }
        );
        assert!(gcrypt.security());
        assert_eq!(
            (libc.name.as_str(), libc.arch.as_str()),
            ("libc6:i386", "i386")
        );
        assert!(!libc.security(), "stable is not a security suite");
        assert!(
            demo.security(),
            "a -security suite counts whatever its label"
        );
        assert_eq!(newdep.current, None);
        assert_eq!(newdep.origins[0].suite, "localhost");
        assert!(!newdep.security());
    }

    #[test]
    fn pending_json_omits_an_absent_current_version() {
        let sim = simulation(UPGRADE).unwrap();
        let json = sim.pending[0].to_json();
        assert_eq!(json["current"], "1.10.1-3");
        assert_eq!(json["security"], true);
        assert_eq!(
            json["origins"],
            json!([
                "Debian:12.15/oldstable",
                "Debian-Security:12/oldstable-security"
            ])
        );
        assert!(sim.pending[3].to_json().get("current").is_none());
    }

    #[test]
    fn nothing_pending_and_broken_lines() {
        let quiet = "Reading package lists...\n0 upgraded, 0 newly installed.\n";
        assert_eq!(simulation(quiet), Ok(Simulation::default()));
        for bad in [
            "Inst x",
            "Inst x [1.0]",
            "Inst x [1.0] (2.0 a:b)",
            "Inst x (2.0)",
        ] {
            assert!(simulation(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn installed_listing_and_changes() {
        let before = installed(
            "rip-demo\tall\t1.0\tii \nlibc6\tamd64\t2.36-9\tii \ngone\tall\t1\trc \nhalf\tall\t3\tiU \n",
        );
        assert_eq!(before.len(), 2, "{before:?}");
        assert_eq!(before[&("rip-demo".into(), "all".into())], "1.0");
        let after =
            installed("rip-demo\tall\t2.0\tii \nlibc6\tamd64\t2.36-9\tii \nnew\tall\t0.5\tii \n");
        let changed = changes(&before, &after);
        assert_eq!(
            changed,
            [
                Change {
                    name: "new".into(),
                    arch: "all".into(),
                    from: None,
                    to: "0.5".into()
                },
                Change {
                    name: "rip-demo".into(),
                    arch: "all".into(),
                    from: Some("1.0".into()),
                    to: "2.0".into()
                },
            ]
        );
        assert_eq!(
            changed[1].to_json(),
            json!({"name": "rip-demo", "arch": "all", "from": "1.0", "to": "2.0"})
        );
    }
}
