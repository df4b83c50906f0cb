//! The orchestrator's configuration: command-line flags (each also an environment variable).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use ipnet::IpNet;

use riposte_scheduler::guard;

/// Riposte coordinator: schedules playbook runs on workers and keeps all state in an embedded
/// sled database.
#[derive(Debug, Clone, Parser)]
#[command(name = "riposte-orchestrator", version, about)]
pub struct Config {
    /// Address the gRPC API listens on (port 0 picks a free port; the bound address is
    /// printed on stdout).
    #[arg(long, env = "RIPOSTE_LISTEN", default_value = "127.0.0.1:7470")]
    pub listen: SocketAddr,

    /// The server certificate (PEM, leaf first, then its chain) of the gRPC API and the alert
    /// listeners; with `--tls-key`. Reloaded when the file changes, or on SIGHUP, without
    /// touching connections already open. `--dev` makes one under the data dir.
    #[arg(
        long,
        env = "RIPOSTE_TLS_CERT",
        value_name = "PATH",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The private key of `--tls-cert` (PEM).
    #[arg(
        long,
        env = "RIPOSTE_TLS_KEY",
        value_name = "PATH",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// The CA certificate(s) (PEM) that worker and operator client certificates must chain
    /// to. A certificate from another CA, or expired, fails the handshake.
    #[arg(
        long,
        env = "RIPOSTE_CLIENT_CA",
        value_name = "PATH",
        requires = "tls_cert"
    )]
    pub client_ca: Option<PathBuf>,

    /// Which worker identities may offer which actions and labels (YAML, see
    /// `docs/security.md`); reloaded on SIGHUP. Without it no worker may register.
    #[arg(long, env = "RIPOSTE_WORKER_POLICY", value_name = "PATH")]
    pub worker_policy: Option<PathBuf>,

    /// Where alerts are pulled from: Sentinel incidents, Microsoft Graph security alerts
    /// (YAML, see `docs/alerts.md`). Each poll runs on a worker that offers its action.
    #[arg(long, env = "RIPOSTE_POLLERS", value_name = "PATH")]
    pub pollers: Option<PathBuf>,

    /// The operator policy (YAML, see `docs/security.md`): which principals and groups hold
    /// which roles, the approvals the platform requires above every playbook, the action
    /// families the kill switch holds. Re-read when it changes and on SIGHUP. Without it no
    /// operator may do anything.
    #[arg(long, env = "RIPOSTE_POLICY", value_name = "PATH")]
    pub policy: Option<PathBuf>,

    /// Static API tokens for automation (YAML of names and SHA-256 digests; `riposte tokens
    /// new` makes one). Re-read when it changes and on SIGHUP.
    #[arg(long, env = "RIPOSTE_API_TOKENS", value_name = "PATH")]
    pub api_tokens: Option<PathBuf>,

    /// The OIDC issuer whose bearer tokens identify operators, exactly as tokens name it in
    /// `iss` (Entra ID: `https://login.microsoftonline.com/TENANT/v2.0`). Needs
    /// `--oidc-audience` and `--oidc-jwks-url`.
    #[arg(
        long,
        env = "RIPOSTE_OIDC_ISSUER",
        value_name = "URL",
        requires_all = ["oidc_audience", "oidc_jwks_url"]
    )]
    pub oidc_issuer: Option<String>,

    /// The audience an operator's OIDC token must name in `aud` (this orchestrator's app id
    /// or URI).
    #[arg(
        long,
        env = "RIPOSTE_OIDC_AUDIENCE",
        value_name = "AUD",
        requires = "oidc_issuer"
    )]
    pub oidc_audience: Option<String>,

    /// Where the issuer publishes its signing keys (JWKS), over https (Entra ID:
    /// `https://login.microsoftonline.com/TENANT/discovery/v2.0/keys`). Fetched at the first
    /// token, again for an unknown key id (at most every 30 s) and when an hour old.
    #[arg(
        long,
        env = "RIPOSTE_OIDC_JWKS_URL",
        value_name = "URL",
        requires = "oidc_issuer"
    )]
    pub oidc_jwks_url: Option<String>,

    /// The Entra ID tenant an OIDC token's `tid` must name, when given.
    #[arg(
        long,
        env = "RIPOSTE_OIDC_TENANT",
        value_name = "TID",
        requires = "oidc_issuer"
    )]
    pub oidc_tenant: Option<String>,

    /// The CA certificate(s) (PEM) the JWKS endpoint's certificate must chain to, instead of
    /// the public roots (an issuer inside the organization).
    #[arg(
        long,
        env = "RIPOSTE_OIDC_CA",
        value_name = "PATH",
        requires = "oidc_issuer"
    )]
    pub oidc_ca: Option<PathBuf>,

    /// Serve gRPC without TLS on an address other than loopback (refused without this flag).
    /// Anyone who can reach the port can then read and send everything.
    #[arg(long)]
    pub insecure_plaintext: bool,

    /// Let workers without a client certificate register, offering any action (refused
    /// without this flag). Any process that reaches the port can then take tasks.
    #[arg(long)]
    pub insecure_anonymous_workers: bool,

    /// Folder of the sled database; created if missing.
    #[arg(
        long,
        env = "RIPOSTE_DATA_DIR",
        default_value = "./riposte-data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// The audit log's key (32 random bytes, made 0600 when missing): every audit record
    /// carries a MAC under it, so that a record edited, added or removed by someone who can
    /// write the data dir is detected. Keep it outside the data dir, readable only by the
    /// orchestrator's user: then whoever can write the data dir cannot forge the log. A key
    /// file other users may read is refused. Default: `audit.key` in the data dir.
    #[arg(long, env = "RIPOSTE_AUDIT_KEY", value_name = "PATH", global = true)]
    pub audit_key: Option<PathBuf>,

    /// Offline maintenance instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// What an acknowledged write survives: `power-loss` (each group commit ends with an
    /// fdatasync) or `process-crash` (no fdatasync: faster, for benchmarks and throwaway data).
    #[arg(
        long,
        env = "RIPOSTE_DURABILITY",
        value_enum,
        default_value = "power-loss"
    )]
    pub durability: crate::store::Durability,

    /// New runs are refused (RESOURCE_EXHAUSTED) while the data dir's filesystem has less
    /// free than this, so that runs in flight, reads and the alert ledger keep working before
    /// the disk is full; `0` turns the reserve off.
    #[arg(long, env = "RIPOSTE_MIN_FREE_SPACE", default_value = "256MiB")]
    pub min_free_space: bytesize::ByteSize,

    /// The store's page cache: what bounds the orchestrator's memory beside the runs in
    /// flight (an alert storm fills it, then reuses it).
    #[arg(long, env = "RIPOSTE_STORE_CACHE", default_value = "256MiB")]
    pub store_cache: bytesize::ByteSize,

    /// Finished runs (with their history) are removed this long after they finished (1h to
    /// 10 years).
    #[arg(long, env = "RIPOSTE_RETENTION", default_value = "30d", value_parser = parse_retention)]
    pub retention: Duration,

    /// At most this many runs are kept: beyond it the oldest finished ones are removed first,
    /// whatever their age (running runs are always kept).
    #[arg(long, env = "RIPOSTE_RETENTION_RUNS_MAX", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1000..))]
    pub retention_runs_max: u64,

    /// On SIGTERM, how long to wait for requests in flight (long-polls, watch streams) before
    /// exiting anyway; the store is flushed either way. A second SIGTERM exits at once.
    #[arg(long, env = "RIPOSTE_SHUTDOWN_GRACE", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Embedded default: also start in-process workers and apply the example playbooks.
    #[arg(long)]
    pub dev: bool,

    /// Number of in-process workers started by --dev.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub dev_workers: u32,

    /// A lease lasts this long without a heartbeat; a task whose lease expires is dispatched
    /// again (after a restart, every lease gets this long as grace).
    #[arg(long, env = "RIPOSTE_LEASE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub lease_timeout: Duration,

    /// Longest time a worker's long-poll is held open.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub poll_wait_max: Duration,

    /// A schedule's occurrence decided later than this after its time (the orchestrator was
    /// down, or busy) is missed, and the schedule's `catch_up` decides whether it still runs.
    #[arg(long, env = "RIPOSTE_SCHEDULE_GRACE", default_value = "60s", value_parser = parse_duration)]
    pub schedule_grace: Duration,

    /// A step's task queued this long without a worker taking it fails its step (a step's
    /// own `schedule_to_start` wins); time held by a containment pause does not count.
    #[arg(long, env = "RIPOSTE_SCHEDULE_TO_START", default_value = "15m", value_parser = parse_duration)]
    pub schedule_to_start: Duration,

    /// Apply every `*.yaml` playbook in this folder at start (invalid ones are reported and
    /// skipped).
    #[arg(long, env = "RIPOSTE_PLAYBOOKS")]
    pub playbooks: Option<PathBuf>,

    /// Address of the HTTP alert listener (`POST /alerts/azure_monitor`, `/alerts/sentinel`,
    /// `/alerts/defender`, `/alerts/generic/{name}`); off when not given. Port 0 picks a free
    /// port; the bound address is printed on the first line of stdout.
    #[arg(long, env = "RIPOSTE_ALERTS_LISTEN", value_name = "ADDR")]
    pub alerts_listen: Option<SocketAddr>,

    /// The shared secrets of the alert sources, `(SOURCE, TOKEN)`, read from
    /// `--alert-secrets-file` at start ([`Config::read_secrets_file`]).
    #[arg(skip)]
    pub alert_secrets: Vec<(String, String)>,

    /// The removed `--alert-secret`: a command line is visible to every local user. Accepted
    /// (its value dropped unread) only so that a start with it fails with a clear error that
    /// does not echo the token, as a parse error would.
    #[arg(long = "alert-secret", hide = true, value_name = "SOURCE=TOKEN", value_parser = |_: &str| Ok::<_, String>(RemovedFlag))]
    pub removed_alert_secret: Vec<RemovedFlag>,

    /// A file of alert-source secrets, one `SOURCE=TOKEN` per line (blank lines and lines
    /// starting with `#` are skipped), read once at start. `SOURCE` is `azure_monitor`,
    /// `sentinel`, `defender`, `generic` for every generic endpoint or `generic/NAME` for one;
    /// a source without a secret refuses every request.
    #[arg(long, env = "RIPOSTE_ALERT_SECRETS_FILE", value_name = "PATH")]
    pub alert_secrets_file: Option<PathBuf>,

    /// Alert payloads ingested at once (read, parsed, stored, awaiting their flush), over every
    /// listener; one more is refused with HTTP 429 / gRPC RESOURCE_EXHAUSTED until one is
    /// acknowledged, and a syslog reader waits. Bounds the memory a burst can take.
    #[arg(long, env = "RIPOSTE_ALERTS_IN_FLIGHT", value_name = "N", default_value_t = crate::engine::limits::ALERTS_IN_FLIGHT_DEFAULT, value_parser = in_flight)]
    pub alerts_in_flight: usize,

    /// Of `--alerts-in-flight`, the payloads one feed may have ingested at once (an HTTP
    /// endpoint's secret, syslog, gRPC); one more from it is refused (HTTP 429, gRPC
    /// RESOURCE_EXHAUSTED) while the others still have room. Default: half, rounded up.
    #[arg(long, env = "RIPOSTE_ALERTS_IN_FLIGHT_PER_FEED", value_name = "N", value_parser = in_flight)]
    pub alerts_in_flight_per_feed: Option<usize>,

    /// Connections the HTTP alert listener holds open at once; one more is closed at once.
    #[arg(long, env = "RIPOSTE_ALERTS_CONNECTIONS_MAX", value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub alerts_connections_max: u32,

    /// Of `--alerts-connections-max`, the connections one peer address (an IPv6 peer: its
    /// /64) may hold open at once; one more is closed at once.
    #[arg(long, env = "RIPOSTE_ALERTS_PEER_CONNECTIONS_MAX", value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub alerts_peer_connections_max: u32,

    /// An HTTP alert connection that has not sent a request's complete headers this long after
    /// it opened, or after its previous answer (an idle keep-alive connection), is closed.
    #[arg(long, env = "RIPOSTE_ALERTS_HEADER_TIMEOUT", value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub alerts_header_timeout: Duration,

    /// Address of the UDP syslog listener (RFC 3164 / RFC 5424, CEF in the message); one
    /// datagram is one message. Off when not given; port 0 picks a free port.
    #[arg(long, env = "RIPOSTE_SYSLOG_UDP", value_name = "ADDR")]
    pub syslog_udp: Option<SocketAddr>,

    /// Address of the TCP syslog listener (RFC 6587 octet counting or newline framing). Off
    /// when not given; port 0 picks a free port.
    #[arg(long, env = "RIPOSTE_SYSLOG_TCP", value_name = "ADDR")]
    pub syslog_tcp: Option<SocketAddr>,

    /// Address of the syslog-over-TLS listener (RFC 5425: octet-counted messages in a TLS
    /// session), served with `--tls-cert`. Off when not given; port 0 picks a free port.
    #[arg(
        long,
        env = "RIPOSTE_SYSLOG_TLS",
        value_name = "ADDR",
        requires = "tls_cert"
    )]
    pub syslog_tls: Option<SocketAddr>,

    /// The senders the syslog listeners accept, `CIDR,...`, checked on the peer address
    /// before anything is read or parsed (syslog has no header to carry a token). Default:
    /// loopback only.
    #[arg(long, env = "RIPOSTE_SYSLOG_ALLOW", value_name = "CIDR,...", value_parser = parse_ranges, default_value = "127.0.0.0/8,::1")]
    pub syslog_allow: Ranges,

    /// Do not apply the built-in playbooks (ip-block, account-disable, jit-access-grant,
    /// patch-deployment) at start. Without this flag each is applied when the store lacks its
    /// name and version; what an operator applied is never overwritten or downgraded.
    #[arg(long)]
    pub no_builtin_playbooks: bool,

    /// Ranges no guarded action may touch (`firewall.block_ip`), `CIDR,...`; replaces the
    /// default list (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, fc00::/7); an
    /// empty value protects none of them. Loopback, unspecified, link-local, multicast,
    /// broadcast and this orchestrator's listen address are protected whatever this says.
    #[arg(long, env = "RIPOSTE_PROTECTED_RANGES", value_name = "CIDR,...", value_parser = parse_ranges)]
    pub protected_ranges: Option<Ranges>,

    /// Accounts no guarded action may touch (`identity.disable_account`,
    /// `identity.revoke_sessions`), `NAME,...`, in addition to `root` which is always
    /// protected. Compared case-insensitively; a plain name also protects `name@any-domain`
    /// and `DOMAIN\name`.
    #[arg(
        long,
        env = "RIPOSTE_PROTECTED_ACCOUNTS",
        value_name = "NAME,...",
        value_delimiter = ','
    )]
    pub protected_accounts: Vec<String>,

    /// An account named by a number (a uid) below this is refused by the guard, as is uid 0;
    /// the well-known system accounts (`daemon`, `nobody`, ...) are refused by name whatever
    /// this says. 0 refuses no uid but 0.
    #[arg(long, env = "RIPOSTE_PROTECTED_UID_BELOW", value_name = "N", default_value_t = guard::ACCOUNT_UID_MIN_DEFAULT)]
    pub protected_uid_below: u32,

    /// An IPv4 block wider than this prefix length is refused by the guard.
    #[arg(long, value_name = "N", default_value_t = guard::BLOCK_PREFIX_MIN_V4_DEFAULT, value_parser = clap::value_parser!(u8).range(0..=32))]
    pub block_prefix_min_v4: u8,

    /// An IPv6 block wider than this prefix length is refused by the guard.
    #[arg(long, value_name = "N", default_value_t = guard::BLOCK_PREFIX_MIN_V6_DEFAULT, value_parser = clap::value_parser!(u8).range(0..=128))]
    pub block_prefix_min_v6: u8,

    /// Log filter (tracing env-filter syntax), e.g. `info` or `riposte_orchestrator=debug`.
    #[arg(long, env = "RIPOSTE_LOG", default_value = "info")]
    pub log: String,

    #[command(flatten)]
    pub telemetry: riposte_telemetry::Args,
}

/// A removed flag was given (its value is not kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemovedFlag;

/// The protected ranges given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranges(pub Vec<IpNet>);

/// What the orchestrator does instead of serving.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Offline maintenance of the data dir (`--data-dir`); refused while an orchestrator has
    /// it open.
    #[command(subcommand)]
    Store(StoreCommand),
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum StoreCommand {
    /// Reads back every record and names, by tree and key, each one that does not; exits 1
    /// when any does not. A data dir of the previous format is migrated first, as a start
    /// would.
    Check,
    /// Copies every record that reads back into a new data dir (`--to`, which must not exist
    /// or be empty), naming each one left behind; then start the orchestrator on the new one.
    Salvage {
        /// The new data dir.
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
    },
}

impl Config {
    /// The guard policy this configuration asks for; `listen` is the bound address.
    pub fn guard_policy(&self, listen: std::net::IpAddr) -> guard::Policy {
        let ranges = match &self.protected_ranges {
            Some(Ranges(ranges)) => ranges.clone(),
            None => guard::PROTECTED_RANGES_DEFAULT
                .iter()
                .map(|r| r.parse().expect("default ranges parse"))
                .collect(),
        };
        guard::Policy::new(
            ranges,
            &self.protected_accounts,
            self.protected_uid_below,
            self.block_prefix_min_v4,
            self.block_prefix_min_v6,
            Some(listen),
        )
    }
}

/// `10.0.0.0/8,192.0.2.7` (an address is a single host); empty means none.
fn parse_ranges(text: &str) -> Result<Ranges, String> {
    text.split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| {
            r.parse::<IpNet>()
                .map(|n| n.trunc())
                .or_else(|_| r.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| format!("`{r}` is not a CIDR or an IP address"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Ranges)
}

/// The text of a duration flag that is not a duration in the flag's range.
#[derive(Debug, thiserror::Error)]
pub enum InvalidDuration {
    #[error("`{text}`: {source}")]
    Unreadable {
        text: String,
        source: humantime::DurationError,
    },
    #[error("`{text}` must be {range}")]
    OutOfRange { text: String, range: &'static str },
}

/// `text` as a duration within `min..=max` (`range` says so in words).
fn duration_within(
    text: &str,
    min: Duration,
    max: Duration,
    range: &'static str,
) -> Result<Duration, InvalidDuration> {
    let d = humantime::parse_duration(text).map_err(|source| InvalidDuration::Unreadable {
        text: text.to_string(),
        source,
    })?;
    match (min..=max).contains(&d) {
        true => Ok(d),
        false => Err(InvalidDuration::OutOfRange {
            text: text.to_string(),
            range,
        }),
    }
}

/// Parses a retention, `30d`, `12h`, `52w`: from an hour to ten years.
fn parse_retention(text: &str) -> Result<Duration, InvalidDuration> {
    let (min, max) = (
        Duration::from_secs(3600),
        Duration::from_secs(3650 * 86_400),
    );
    duration_within(text, min, max, "from 1h to 3650d")
}

/// Parses `10s`, `500ms`, `2m` and the like; zero and over an hour are refused.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, InvalidDuration> {
    let (min, max) = (Duration::from_nanos(1), Duration::from_secs(3600));
    duration_within(text, min, max, "more than 0 and at most 1h")
}

/// Why the alert-source secrets could not be read. Never shows a token.
#[derive(Debug, thiserror::Error)]
pub enum SecretsFileError {
    #[error(
        "--alert-secret was removed: a command line is visible to every local user; put \
         SOURCE=TOKEN lines in a file readable only by the orchestrator's user and give it \
         with --alert-secrets-file (or RIPOSTE_ALERT_SECRETS_FILE)"
    )]
    FlagRemoved,
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path}:{line}: {why}")]
    Line {
        path: String,
        /// 1-based.
        line: usize,
        why: String,
    },
}

impl Config {
    /// The pollers of `--pollers` (none without it); an unreadable or invalid file is an
    /// error naming it.
    pub fn pollers(&self) -> Result<Vec<crate::pollers::Poller>, crate::Error> {
        let Some(path) = &self.pollers else {
            return Ok(Vec::new());
        };
        let io = |source| crate::Error::Io {
            path: path.display().to_string(),
            source,
        };
        let text = std::fs::read_to_string(path).map_err(io)?;
        crate::pollers::parse(&text)
            .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
    }

    /// Reads `--alert-secrets-file` into `alert_secrets` and forgets the path; spaces around a
    /// token are dropped; a malformed line is an error naming the file and line. Refuses the
    /// removed `--alert-secret`.
    pub fn read_secrets_file(mut self) -> Result<Config, SecretsFileError> {
        if !self.removed_alert_secret.is_empty() {
            return Err(SecretsFileError::FlagRemoved);
        }
        let Some(path) = self.alert_secrets_file.take() else {
            return Ok(self);
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|error| SecretsFileError::Read {
            path: shown.clone(),
            error,
        })?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (source, token) = parse_secret(line).map_err(|why| SecretsFileError::Line {
                path: shown.clone(),
                line: n + 1,
                why,
            })?;
            self.alert_secrets.push((source, token.trim().to_string()));
        }
        Ok(self)
    }
}

fn in_flight(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=65_536).contains(&n) => Ok(n),
        _ => Err(format!("`{text}` must be a number from 1 to 65536")),
    }
}

/// `azure_monitor=s3cret` -> ("azure_monitor", "s3cret").
fn parse_secret(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((source, token)) if !source.trim().is_empty() && !token.is_empty() => {
            Ok((source.trim().to_string(), token.to_string()))
        }
        _ => Err("expected SOURCE=TOKEN with a non-empty source and token".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secrets_file_adds_its_lines_and_a_bad_line_names_its_number() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("secrets");
        std::fs::write(&path, "# tokens\n\nsentinel=abc\n  defender = d=e  \n").expect("written");
        let c = Config::try_parse_from([
            "riposte-orchestrator",
            "--alert-secrets-file",
            path.to_str().expect("utf-8"),
        ])
        .unwrap()
        .read_secrets_file()
        .expect("a valid file");
        assert_eq!(
            c.alert_secrets,
            vec![
                ("sentinel".to_string(), "abc".to_string()),
                ("defender".to_string(), "d=e".to_string()),
            ]
        );
        assert_eq!(c.alert_secrets_file, None);
        std::fs::write(&path, "sentinel=abc\nno-token\n").expect("written");
        let e = Config::try_parse_from([
            "riposte-orchestrator",
            "--alert-secrets-file",
            path.to_str().expect("utf-8"),
        ])
        .unwrap()
        .read_secrets_file()
        .expect_err("a line without a token")
        .to_string();
        assert!(
            e.ends_with(":2: expected SOURCE=TOKEN with a non-empty source and token"),
            "{e}"
        );
    }

    #[test]
    fn the_removed_alert_secret_flag_fails_without_echoing_the_token() {
        for args in [
            ["x", "--alert-secret", "sentinel=tok-9f3a"],
            ["x", "--alert-secret=sentinel=tok-9f3a", "--dev"],
        ] {
            let c = Config::try_parse_from(args).expect("accepted, to be refused with a reason");
            assert!(!format!("{c:?}").contains("tok-9f3a"));
            let e = c.read_secrets_file().expect_err("refused").to_string();
            assert!(
                e.starts_with(
                    "--alert-secret was removed: a command line is visible to every local user"
                ),
                "{e}"
            );
            assert!(e.contains("--alert-secrets-file"), "{e}");
            assert!(!e.contains("tok-9f3a"), "{e}");
        }
    }

    #[test]
    fn defaults_and_overrides() {
        let c = Config::try_parse_from(["riposte-orchestrator"]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:7470");
        assert_eq!(c.lease_timeout, Duration::from_secs(10));
        let c = Config::try_parse_from([
            "riposte-orchestrator",
            "--listen",
            "127.0.0.1:0",
            "--lease-timeout",
            "1500ms",
            "--dev",
        ])
        .unwrap();
        assert!(c.dev);
        assert_eq!(c.lease_timeout, Duration::from_millis(1500));
    }

    #[test]
    fn guard_flags_parse() {
        let c = Config::try_parse_from(["x"]).unwrap();
        assert_eq!(c.protected_ranges, None);
        assert_eq!((c.block_prefix_min_v4, c.block_prefix_min_v6), (24, 64));
        assert_eq!(c.protected_uid_below, 1000);
        assert!(!c.no_builtin_playbooks);
        let listen = "127.0.0.1".parse().unwrap();
        assert!(c.guard_policy(listen).check_ip("10.1.2.3").is_err());
        assert!(c.guard_policy(listen).check_account("999").is_err());
        assert!(c.guard_policy(listen).check_account("1000").is_ok());
        let c = Config::try_parse_from([
            "x",
            "--protected-ranges",
            "203.0.113.0/24, 2001:db8::1",
            "--protected-accounts",
            "breakglass,svc-backup",
            "--protected-uid-below",
            "500",
            "--block-prefix-min-v4",
            "16",
            "--block-prefix-min-v6",
            "48",
            "--no-builtin-playbooks",
        ])
        .unwrap();
        let ranges = c.protected_ranges.clone().unwrap().0;
        assert_eq!(ranges.len(), 2);
        assert_eq!(c.protected_accounts, ["breakglass", "svc-backup"]);
        assert!(c.no_builtin_playbooks);
        let policy = c.guard_policy(listen);
        assert!(policy.check_ip("10.1.2.3").is_ok(), "defaults replaced");
        assert!(policy.check_ip("203.0.113.9").is_err());
        assert!(policy.check_ip("127.0.0.1").is_err(), "always protected");
        assert!(policy.check_account("SVC-BACKUP").is_err());
        assert_eq!(c.protected_uid_below, 500);
        assert!(policy.check_account("499").is_err());
        assert!(policy.check_account("500").is_ok());
        assert!(
            policy.check_account("daemon").is_err(),
            "system accounts always"
        );
        let none = Config::try_parse_from(["x", "--protected-ranges", ""]).unwrap();
        assert_eq!(none.protected_ranges, Some(Ranges(vec![])));
        assert!(Config::try_parse_from(["x", "--protected-ranges", "10.0.0.0/33"]).is_err());
        assert!(Config::try_parse_from(["x", "--block-prefix-min-v4", "33"]).is_err());
        assert!(Config::try_parse_from(["x", "--block-prefix-min-v6", "129"]).is_err());
        assert!(Config::try_parse_from(["x", "--protected-uid-below", "-1"]).is_err());
        assert!(Config::try_parse_from(["x", "--protected-uid-below", "many"]).is_err());
    }

    #[test]
    fn bad_durations_are_refused() {
        assert!(Config::try_parse_from(["x", "--lease-timeout", "0s"]).is_err());
        assert!(Config::try_parse_from(["x", "--lease-timeout", "10 parsecs"]).is_err());
        assert!(Config::try_parse_from(["x", "--lease-timeout", "2h"]).is_err());
    }
}
