//! The worker's configuration: command-line flags with environment fallbacks, parsed by a pure
//! function that takes the environment as an argument.
//!
//! Every flag may also come from an environment variable; a flag given on the command line wins.
//! An environment variable set to the empty string counts as unset.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use uuid::Uuid;

use crate::Error;
use crate::connectors::{
    Backends, access, apt, azure, defender, dnf, firewall, identity, nftables, patch, sentinel,
};

/// Most tasks one worker runs at once.
pub const CONCURRENCY_MAX: u32 = 256;
/// Tasks one worker runs at once unless told otherwise.
const CONCURRENCY_DEFAULT: u32 = 4;
/// Where the orchestrator listens unless told otherwise.
const ORCHESTRATOR_URL_DEFAULT: &str = "http://127.0.0.1:7470";
/// How long a drain waits for in-flight tasks unless told otherwise.
const DRAIN_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// How long one connection attempt to the orchestrator may take.
const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
/// The Linux account actions refuse an account whose uid is below this unless told otherwise
/// (Debian's and most distributions' first regular uid).
pub const PROTECTED_UID_BELOW_DEFAULT: u32 = 1000;
/// Most labels one worker carries.
const LABELS_MAX: usize = 64;
/// Longest label key, label value or worker name.
const NAME_BYTES_MAX: usize = 128;

const ORCHESTRATOR_VAR: &str = "RIPOSTE_ORCHESTRATOR";
const LABELS_VAR: &str = "RIPOSTE_LABELS";
const CONCURRENCY_VAR: &str = "RIPOSTE_CONCURRENCY";
const NAME_VAR: &str = "RIPOSTE_WORKER_NAME";
const HTTP_ALLOW_HOSTS_VAR: &str = "RIPOSTE_HTTP_ALLOW_HOSTS";
const DRAIN_TIMEOUT_VAR: &str = "RIPOSTE_DRAIN_TIMEOUT";
const FIREWALL_BACKEND_VAR: &str = "RIPOSTE_FIREWALL_BACKEND";
const IDENTITY_BACKEND_VAR: &str = "RIPOSTE_IDENTITY_BACKEND";
const ACCESS_BACKEND_VAR: &str = "RIPOSTE_ACCESS_BACKEND";
const PATCH_BACKEND_VAR: &str = "RIPOSTE_PATCH_BACKEND";
const SENTINEL_BACKEND_VAR: &str = "RIPOSTE_SENTINEL_BACKEND";
const DEFENDER_BACKEND_VAR: &str = "RIPOSTE_DEFENDER_BACKEND";
const PROTECTED_UID_BELOW_VAR: &str = "RIPOSTE_PROTECTED_UID_BELOW";
const NFT_TABLE_VAR: &str = "RIPOSTE_NFT_TABLE";
const NFT_JIT_PORTS_VAR: &str = "RIPOSTE_NFT_JIT_PORTS";
const TLS_CA_VAR: &str = "RIPOSTE_TLS_CA";
const TLS_CERT_VAR: &str = "RIPOSTE_TLS_CERT";
const TLS_KEY_VAR: &str = "RIPOSTE_TLS_KEY";

/// Everything a worker needs to run. Build it with [`Config::from_args`] (the binary) or
/// [`Config::new`] (an in-process worker), then adjust the public fields as needed.
#[derive(Debug, Clone)]
pub struct Config {
    /// gRPC URL of the orchestrator, `https://host:port` (or `http://` for a plaintext one).
    pub orchestrator_url: String,
    /// The CA to trust and this worker's client certificate, for an `https://` orchestrator.
    pub tls: Option<riposte_tls::client::Files>,
    /// This process's identity towards the orchestrator: a fresh random UUID, stable for the
    /// life of the process and never reused.
    pub worker_id: Uuid,
    /// Human-readable name shown to operators; by default `worker-` and the first 8 characters
    /// of `worker_id`. At most 128 bytes.
    pub name: String,
    /// Labels the orchestrator matches tasks against (`linux`, `host=a`, ...).
    pub labels: BTreeMap<String, String>,
    /// Tasks run at once, 1 to [`CONCURRENCY_MAX`]; one long-poll per free slot.
    pub concurrency: u32,
    /// Hosts that `http.request` may call. Empty means every request is refused.
    pub http_allow_hosts: Vec<AllowedHost>,
    /// How long a graceful shutdown waits for in-flight tasks to finish and report before the
    /// worker returns anyway.
    pub drain_timeout: Duration,
    /// How long one attempt to open a connection to the orchestrator may take.
    pub connect_timeout: Duration,
    /// The backend of each response family; a family without one is not offered.
    pub backends: Backends,
    /// The Linux backend of `identity.disable_account` and `identity.revoke_sessions` refuses
    /// an account whose uid on this host is below this (uid 0 always): system accounts are
    /// protected here too, whatever the orchestrator's guard let through.
    pub protected_uid_below: u32,
    /// The nftables objects the `nftables` backends manage.
    pub nftables: nftables::Settings,
    /// Azure endpoints and credentials for the Azure backends.
    pub azure: azure::Settings,
    /// Where the `apt` backend looks for packages and keeps its lists.
    pub apt: apt::Settings,
    /// Which configuration the `dnf` backend reads and which system it patches.
    pub dnf: dnf::Settings,
    /// Logs, traces and metrics (`--log-format`, `--otlp-endpoint`, `--admin-listen`; the
    /// standard `OTEL_*` variables).
    pub telemetry: riposte_telemetry::Args,
}

impl Config {
    /// Defaults for an in-process worker talking to `orchestrator_url`: a fresh id, the default
    /// name, no labels, concurrency 4, no HTTP hosts allowed, a 30 s drain timeout.
    pub fn new(orchestrator_url: impl Into<String>) -> Config {
        let worker_id = Uuid::new_v4();
        Config {
            orchestrator_url: orchestrator_url.into(),
            tls: None,
            worker_id,
            name: default_name(worker_id),
            labels: BTreeMap::new(),
            concurrency: CONCURRENCY_DEFAULT,
            http_allow_hosts: Vec::new(),
            drain_timeout: DRAIN_TIMEOUT_DEFAULT,
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            backends: Backends::default(),
            protected_uid_below: PROTECTED_UID_BELOW_DEFAULT,
            nftables: nftables::Settings::default(),
            azure: azure::Settings::default(),
            apt: apt::Settings::default(),
            dnf: dnf::Settings::default(),
            telemetry: riposte_telemetry::Args::default(),
        }
    }

    /// Replaces the name.
    pub fn with_name(mut self, name: impl Into<String>) -> Config {
        self.name = name.into();
        self
    }

    /// Adds labels (a later value for the same key wins).
    pub fn with_labels<K, V>(mut self, labels: impl IntoIterator<Item = (K, V)>) -> Config
    where
        K: Into<String>,
        V: Into<String>,
    {
        let pairs = labels.into_iter().map(|(k, v)| (k.into(), v.into()));
        self.labels.extend(pairs);
        self
    }

    /// Replaces the concurrency (checked by [`crate::run`]).
    pub fn with_concurrency(mut self, concurrency: u32) -> Config {
        self.concurrency = concurrency;
        self
    }

    /// Replaces the hosts `http.request` may call.
    pub fn with_http_allow_hosts(mut self, hosts: impl IntoIterator<Item = AllowedHost>) -> Config {
        self.http_allow_hosts = hosts.into_iter().collect();
        self
    }

    /// Parses the command line and the environment. Pure: reads nothing but its arguments.
    ///
    /// `args` starts with the program name, as `std::env::args_os()` yields it. `env` maps
    /// variable names to values; a flag on the command line wins over its variable. `--help` and
    /// `--version` come back as [`Error::Args`], whose `exit()` prints them.
    pub fn from_args<I, T>(args: I, env: &HashMap<String, String>) -> Result<Config, Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args = Args::try_parse_from(args)?;
        let mut config = Config::new(ORCHESTRATOR_URL_DEFAULT);
        if let Some(url) = pick(args.orchestrator, env, ORCHESTRATOR_VAR, parse_text)? {
            config.orchestrator_url = url;
        }
        let ca = pick(args.tls_ca, env, TLS_CA_VAR, parse_text)?;
        let cert = pick(args.tls_cert, env, TLS_CERT_VAR, parse_text)?;
        let key = pick(args.tls_key, env, TLS_KEY_VAR, parse_text)?;
        config.tls = match (ca, cert, key) {
            (None, None, None) => None,
            (Some(ca), cert, key) => Some(riposte_tls::client::Files {
                ca: ca.into(),
                cert: match (cert, key) {
                    (Some(cert), Some(key)) => Some((cert.into(), key.into())),
                    (None, None) => None,
                    _ => {
                        return Err(Error::Config(
                            "give --tls-cert and --tls-key together".into(),
                        ));
                    }
                },
            }),
            (None, ..) => {
                return Err(Error::Config(
                    "--tls-cert and --tls-key need --tls-ca, the CA of the orchestrator's \
                     certificate"
                        .into(),
                ));
            }
        };
        if let Some(labels) = pick(args.labels, env, LABELS_VAR, parse_labels)? {
            config.labels = labels;
        }
        if let Some(n) = pick(args.concurrency, env, CONCURRENCY_VAR, parse_concurrency)? {
            config.concurrency = n;
        }
        if let Some(name) = pick(args.name, env, NAME_VAR, parse_text)? {
            config.name = name;
        }
        let hosts = pick(
            args.http_allow_hosts,
            env,
            HTTP_ALLOW_HOSTS_VAR,
            parse_hosts,
        )?;
        if let Some(HostList(hosts)) = hosts {
            config.http_allow_hosts = hosts;
        }
        if let Some(drain) = pick(args.drain_timeout, env, DRAIN_TIMEOUT_VAR, parse_duration)? {
            config.drain_timeout = drain;
        }
        config.backends = Backends {
            firewall: pick(args.firewall_backend, env, FIREWALL_BACKEND_VAR, backend)?,
            identity: pick(args.identity_backend, env, IDENTITY_BACKEND_VAR, backend)?,
            access: pick(args.access_backend, env, ACCESS_BACKEND_VAR, backend)?,
            patch: pick(args.patch_backend, env, PATCH_BACKEND_VAR, backend)?,
            sentinel: pick(args.sentinel_backend, env, SENTINEL_BACKEND_VAR, backend)?,
            defender: pick(args.defender_backend, env, DEFENDER_BACKEND_VAR, backend)?,
        };
        let uid_below = pick(
            args.protected_uid_below,
            env,
            PROTECTED_UID_BELOW_VAR,
            parse_uid,
        )?;
        if let Some(uid) = uid_below {
            config.protected_uid_below = uid;
        }
        let nft = args.nftables;
        if let Some(table) = pick(nft.nft_table, env, NFT_TABLE_VAR, nftables::parse_table)? {
            config.nftables.table = table;
        }
        let ports = pick(
            nft.jit_ports,
            env,
            NFT_JIT_PORTS_VAR,
            nftables::PortList::parse,
        )?;
        if let Some(nftables::PortList(ports)) = ports {
            config.nftables.jit_ports = ports;
        }
        config.azure = azure::Settings::from_flags(args.azure, env)?;
        config
            .azure
            .check(&config.backends)
            .map_err(|e| Error::Config(e.to_string()))?;
        config.apt = args.apt.settings(env)?;
        config.dnf = args.dnf.settings(env)?;
        config.telemetry = args.telemetry;
        config.validate()?;
        Ok(config)
    }

    /// Checks the bounds that the types do not enforce.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        check_orchestrator_url(&self.orchestrator_url, self.tls.is_some())?;
        if !(1..=CONCURRENCY_MAX).contains(&self.concurrency) {
            let message = format!(
                "concurrency {} is not in 1..={CONCURRENCY_MAX}",
                self.concurrency
            );
            return Err(Error::Config(message));
        }
        if self.name.trim().is_empty() || self.name.len() > NAME_BYTES_MAX {
            let message = format!("name must be 1 to {NAME_BYTES_MAX} bytes");
            return Err(Error::Config(message));
        }
        Ok(())
    }
}

/// `worker-` and the first 8 characters of the id.
fn default_name(worker_id: Uuid) -> String {
    let id = worker_id.simple().to_string();
    format!("worker-{}", &id[..8])
}

/// Command-line flags. Defaults are applied in [`Config::from_args`] so that an environment
/// variable can fill a flag that was not given.
#[derive(Debug, Parser)]
#[command(
    name = "riposte-worker",
    version,
    about = "Riposte worker: registers with an orchestrator and runs the playbook actions it is given"
)]
struct Args {
    /// gRPC URL of the orchestrator [env: RIPOSTE_ORCHESTRATOR] [default: http://127.0.0.1:7470]
    #[arg(long, value_name = "URL")]
    orchestrator: Option<String>,

    /// The CA certificate (PEM) of the orchestrator's server certificate, for an https URL
    /// [env: RIPOSTE_TLS_CA]
    #[arg(long, value_name = "PATH")]
    tls_ca: Option<String>,

    /// This worker's client certificate (PEM), naming its identity; the orchestrator's worker
    /// policy says what that identity may offer [env: RIPOSTE_TLS_CERT]
    #[arg(long, value_name = "PATH")]
    tls_cert: Option<String>,

    /// The private key of --tls-cert (PEM) [env: RIPOSTE_TLS_KEY]
    #[arg(long, value_name = "PATH")]
    tls_key: Option<String>,

    /// Labels the orchestrator matches tasks against, e.g. `os=linux,zone=a` [env: RIPOSTE_LABELS]
    #[arg(long, value_name = "KEY=VALUE,...", value_parser = parse_labels)]
    labels: Option<BTreeMap<String, String>>,

    /// Tasks run at once, 1 to 256 [env: RIPOSTE_CONCURRENCY] [default: 4]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(CONCURRENCY_MAX)))]
    concurrency: Option<u32>,

    /// Name shown to operators [env: RIPOSTE_WORKER_NAME] [default: worker- and the first 8
    /// characters of the worker id]
    #[arg(long, value_name = "NAME", value_parser = parse_text)]
    name: Option<String>,

    /// Hosts that `http.request` may call, e.g. `api.example.com,127.0.0.1:8080`; an entry
    /// without a port allows every port. Empty refuses every request [env:
    /// RIPOSTE_HTTP_ALLOW_HOSTS] [default: none]
    #[arg(long, value_name = "HOST[:PORT],...", value_parser = parse_hosts)]
    http_allow_hosts: Option<HostList>,

    /// How long a graceful shutdown (SIGTERM, Ctrl-C) waits for in-flight tasks to finish and
    /// report, e.g. `30s` or `2m` [env: RIPOSTE_DRAIN_TIMEOUT] [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    drain_timeout: Option<Duration>,

    /// Backend of `firewall.*`; without one the worker does not offer them [env:
    /// RIPOSTE_FIREWALL_BACKEND] [default: none]
    #[arg(long, value_name = "BACKEND")]
    firewall_backend: Option<firewall::Backend>,

    /// Backend of `identity.*`; without one the worker does not offer them [env:
    /// RIPOSTE_IDENTITY_BACKEND] [default: none]
    #[arg(long, value_name = "BACKEND")]
    identity_backend: Option<identity::Backend>,

    /// Backend of `access.*`; without one the worker does not offer them [env:
    /// RIPOSTE_ACCESS_BACKEND] [default: none]
    #[arg(long, value_name = "BACKEND")]
    access_backend: Option<access::Backend>,

    /// Backend of `patch.*`; without one the worker does not offer them [env:
    /// RIPOSTE_PATCH_BACKEND] [default: none]
    #[arg(long, value_name = "BACKEND")]
    patch_backend: Option<patch::Backend>,

    /// Backend of `sentinel.*` (comment on, update and list Microsoft Sentinel incidents);
    /// without one the worker does not offer them [env: RIPOSTE_SENTINEL_BACKEND] [default:
    /// none]
    #[arg(long, value_name = "BACKEND")]
    sentinel_backend: Option<sentinel::Backend>,

    /// Backend of `defender.*` (list Microsoft Defender alerts through Graph); without one the
    /// worker does not offer them [env: RIPOSTE_DEFENDER_BACKEND] [default: none]
    #[arg(long, value_name = "BACKEND")]
    defender_backend: Option<defender::Backend>,

    /// The Linux account actions (disable, revoke sessions) refuse an account whose uid on this
    /// host is below N, and uid 0 always [env: RIPOSTE_PROTECTED_UID_BELOW] [default: 1000]
    #[arg(long, value_name = "N", value_parser = parse_uid)]
    protected_uid_below: Option<u32>,

    #[command(flatten)]
    nftables: nftables::Flags,

    #[command(flatten)]
    azure: azure::Flags,

    #[command(flatten)]
    apt: apt::Flags,

    #[command(flatten)]
    dnf: dnf::Flags,

    #[command(flatten)]
    telemetry: riposte_telemetry::Args,
}

/// A backend name from the environment, as clap would parse it from a flag.
fn backend<B: clap::ValueEnum>(text: &str) -> Result<B, String> {
    B::from_str(text.trim(), true).map_err(|_| {
        let names: Vec<String> = B::value_variants()
            .iter()
            .filter_map(|b| b.to_possible_value())
            .map(|v| v.get_name().to_owned())
            .collect();
        format!(
            "unknown backend {text:?} (expected one of {})",
            names.join(", ")
        )
    })
}

/// A parsed `--http-allow-hosts` list (a newtype so the flag takes one comma-separated value).
#[derive(Debug, Clone)]
struct HostList(Vec<AllowedHost>);

/// The flag's value when given, else `var` from `env` parsed; `None` when both are unset (an
/// empty variable counts as unset).
pub(crate) fn pick<T, E: fmt::Display>(
    flag: Option<T>,
    env: &HashMap<String, String>,
    var: &'static str,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Option<T>, Error> {
    if flag.is_some() {
        return Ok(flag);
    }
    let Some(text) = env.get(var).filter(|text| !text.trim().is_empty()) else {
        return Ok(None);
    };
    let value = parse(text).map_err(|e| Error::Env {
        var,
        message: e.to_string(),
    })?;
    Ok(Some(value))
}

/// A path from the flag `flag` (its value `value`), else from `var`; it must be absolute (the
/// tools these paths go to would read a relative one against their own folders).
pub(crate) fn pick_absolute(
    value: Option<PathBuf>,
    env: &HashMap<String, String>,
    var: &'static str,
    flag: &str,
) -> Result<Option<PathBuf>, Error> {
    let path = pick(value, env, var, |text| {
        Ok::<_, String>(PathBuf::from(text.trim()))
    })?;
    match path {
        Some(path) if !path.is_absolute() => Err(Error::Config(format!(
            "{flag} {} is not an absolute path",
            path.display()
        ))),
        path => Ok(path),
    }
}

fn parse_text(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("must not be empty".to_owned());
    }
    Ok(text.to_owned())
}

fn parse_concurrency(text: &str) -> Result<u32, String> {
    let n: u32 = text
        .trim()
        .parse()
        .map_err(|e| format!("{text:?} is not a number: {e}"))?;
    if !(1..=CONCURRENCY_MAX).contains(&n) {
        return Err(format!("{n} is not in 1..={CONCURRENCY_MAX}"));
    }
    Ok(n)
}

fn parse_uid(text: &str) -> Result<u32, String> {
    text.trim()
        .parse()
        .map_err(|e| format!("{text:?} is not a uid: {e}"))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

/// Parses `key=value,key=value`. Blank entries are skipped; keys must be unique and non-empty;
/// values may be empty (`linux=`).
pub(crate) fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, Error> {
    let mut labels = BTreeMap::new();
    for entry in text
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
    {
        let label_error = |reason| Error::Label {
            entry: entry.to_owned(),
            reason,
        };
        let (key, value) = entry
            .split_once('=')
            .ok_or_else(|| label_error("expected key=value"))?;
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() {
            return Err(label_error("the key is empty"));
        }
        if key.len() > NAME_BYTES_MAX || value.len() > NAME_BYTES_MAX {
            return Err(label_error("keys and values are at most 128 bytes"));
        }
        if labels.insert(key.to_owned(), value.to_owned()).is_some() {
            return Err(label_error("the key is given twice"));
        }
    }
    if labels.len() > LABELS_MAX {
        let entry = text.to_owned();
        return Err(Error::Label {
            entry,
            reason: "at most 64 labels",
        });
    }
    Ok(labels)
}

fn parse_hosts(text: &str) -> Result<HostList, Error> {
    let entries = text
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty());
    let hosts = entries
        .map(AllowedHost::from_str)
        .collect::<Result<_, _>>()?;
    Ok(HostList(hosts))
}

fn check_orchestrator_url(url: &str, tls: bool) -> Result<(), Error> {
    let url_error = |reason: String| Error::OrchestratorUrl {
        url: url.to_owned(),
        reason,
    };
    let uri: tonic::transport::Uri = url.parse().map_err(|e| url_error(format!("{e}")))?;
    match (uri.scheme_str(), tls) {
        (Some("https"), true) | (Some("http"), false) => {}
        (Some("https"), false) => {
            return Err(url_error(
                "https needs --tls-ca (the CA of the orchestrator's certificate), and \
                 --tls-cert and --tls-key (this worker's certificate)"
                    .to_owned(),
            ));
        }
        (Some("http"), true) => {
            return Err(url_error(
                "--tls-ca is given but the URL is http://: use https://".to_owned(),
            ));
        }
        (Some(other), _) => {
            return Err(url_error(format!(
                "scheme {other:?} is not supported, use https (or http)"
            )));
        }
        (None, _) => return Err(url_error("expected https://host:port".to_owned())),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(url_error("the host is missing".to_owned()));
    }
    Ok(())
}

/// One entry of the `http.request` allowlist: a host name or IP address, and optionally a port.
/// Without a port, every port of the host is allowed. Host names compare case-insensitively and
/// are not resolved: `localhost` does not allow `127.0.0.1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    host: Host,
    port: Option<u16>,
}

/// A host as it appears in a URL, normalized for comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Host {
    Ip(IpAddr),
    Name(String),
}

impl Host {
    /// Normalizes a URL host (`example.com`, `127.0.0.1`, `[::1]`).
    pub(crate) fn from_url_host(host: &str) -> Host {
        let unbracketed = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        match unbracketed.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Name(host.trim_end_matches('.').to_ascii_lowercase()),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

impl AllowedHost {
    /// True when a request to `host` on `port` is allowed by this entry.
    pub(crate) fn allows(&self, host: &Host, port: u16) -> bool {
        self.host == *host && self.port.is_none_or(|allowed| allowed == port)
    }
}

impl FromStr for AllowedHost {
    type Err = Error;

    /// Parses `host`, `host:port`, `1.2.3.4:80`, `[::1]:80` or a bare IPv6 address.
    fn from_str(entry: &str) -> Result<AllowedHost, Error> {
        let invalid = |reason| Error::AllowedHost {
            entry: entry.to_owned(),
            reason,
        };
        let trimmed = entry.trim();
        if trimmed.is_empty() {
            return Err(invalid("the entry is empty"));
        }
        if trimmed.contains(|c: char| "/@?#*".contains(c) || c.is_whitespace()) {
            return Err(invalid("expected host or host:port"));
        }
        let (host, port) =
            split_host_port(trimmed).ok_or_else(|| invalid("expected host or host:port"))?;
        let port = match port {
            Some(port) => Some(
                port.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| invalid("invalid port"))?,
            ),
            None => None,
        };
        let host = Host::from_url_host(host);
        if let Host::Name(name) = &host {
            let valid = |c: char| c.is_ascii_alphanumeric() || "-._".contains(c);
            if name.is_empty() || !name.chars().all(valid) {
                return Err(invalid("invalid host name"));
            }
        }
        Ok(AllowedHost { host, port })
    }
}

/// Splits `host:port`, `[v6]:port`, `[v6]` or a bare v6 address; `None` when malformed.
fn split_host_port(text: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<Ipv6Addr>().ok()?;
        return match after {
            "" => Some((&text[..v6.len() + 2], None)),
            port => Some((&text[..v6.len() + 2], Some(port.strip_prefix(':')?))),
        };
    }
    match text.matches(':').count() {
        0 => Some((text, None)),
        1 => text.split_once(':').map(|(host, port)| (host, Some(port))),
        _ => text.parse::<Ipv6Addr>().ok().map(|_| (text, None)),
    }
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => write!(f, "{}", self.host),
        }
    }
}

#[cfg(test)]
mod tests;
