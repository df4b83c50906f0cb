//! Azure plumbing shared by the Azure backends: settings, credentials, token cache, ARM and
//! Graph calls, long-running operations.
//!
//! * [`Settings`] come from flags with `RIPOSTE_AZURE_*` environment fallbacks (and the Azure
//!   SDKs' `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_FEDERATED_TOKEN_FILE`, which AKS
//!   workload identity injects). One credential: a client secret, only from the
//!   `AZURE_CLIENT_SECRET` variable or a file (`--azure-client-secret-file`), never from a flag
//!   value (flags show in `ps`); a client certificate (`--azure-client-certificate`, a PEM file
//!   with the certificate and its RSA key); a federated token file (workload identity); or the
//!   host's managed identity (`--azure-managed-identity`).
//! * Every ARM id (the managed NSG, IP group, JIT policy, and any `vm` input) is checked
//!   strictly ([`id`]) before any request.
//! * [`rest`] sends one logical call: a bearer token from [`token`] (one per resource, cached
//!   until shortly before expiry), an `x-ms-client-request-id`, bounded retries on throttling
//!   (`Retry-After`), 5xx, "operation in progress" conflicts and transport errors, all within
//!   the task's timeout; error bodies become `azure <op> failed: <code>: <message>` ([`errors`]).
//! * [`lro`] follows `Azure-AsyncOperation` or `Location` until a terminal state.
//!
//! Credentials never appear in logs, outputs, errors or `Debug` output: [`Secret`] redacts
//! itself, the client secret and every token obtained are registered with the worker's
//! redactor (`crate::redact`), and a log line that quotes an answer goes through it.

mod assertion;
pub(crate) mod compute;
mod errors;
pub(crate) mod graph;
pub(crate) mod id;
pub(crate) mod incidents;
pub(crate) mod jit;
pub(crate) mod listing;
mod locks;
mod lro;
pub(crate) mod network;
mod rest;
mod time;
mod token;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_credentials;
#[cfg(test)]
mod tests_incidents;
#[cfg(test)]
mod tests_listing;

use std::collections::HashMap;
use std::fmt;
use std::ops::RangeInclusive;
use std::path::PathBuf;

use reqwest::Url;

use super::{Backends, access, firewall, http, identity, patch};
use crate::config::pick;
use crate::redact::Redactor;
pub use assertion::CredentialError;
pub(crate) use id::ArmId;

/// Where Microsoft Entra ID issues tokens unless told otherwise.
pub const AUTHORITY_URL_DEFAULT: &str = "https://login.microsoftonline.com";
/// Azure Resource Manager unless told otherwise.
pub const ARM_URL_DEFAULT: &str = "https://management.azure.com";
/// Microsoft Graph unless told otherwise.
pub const GRAPH_URL_DEFAULT: &str = "https://graph.microsoft.com";
/// The instance metadata service (managed identity) unless told otherwise.
pub const IMDS_URL_DEFAULT: &str = "http://169.254.169.254";
/// NSG rule priorities the worker may use unless told otherwise.
pub const NSG_PRIORITIES_DEFAULT: RangeInclusive<u16> = 100..=199;
/// The lowest and highest priority a custom NSG rule may have.
const NSG_PRIORITY_BOUNDS: RangeInclusive<u16> = 100..=4096;
/// The only variable the client secret is read from.
pub const CLIENT_SECRET_VAR: &str = "AZURE_CLIENT_SECRET";

const TENANT_ID_VAR: &str = "RIPOSTE_AZURE_TENANT_ID";
const CLIENT_ID_VAR: &str = "RIPOSTE_AZURE_CLIENT_ID";
const CLIENT_SECRET_FILE_VAR: &str = "RIPOSTE_AZURE_CLIENT_SECRET_FILE";
const CLIENT_CERTIFICATE_VAR: &str = "RIPOSTE_AZURE_CLIENT_CERTIFICATE";
/// The federated token file, as AKS workload identity names it.
pub const FEDERATED_TOKEN_FILE_VAR: &str = "AZURE_FEDERATED_TOKEN_FILE";
/// The tenant and client as the Azure SDKs (and AKS workload identity) name them: read when
/// neither the flag nor the `RIPOSTE_AZURE_*` variable gives one.
const SDK_TENANT_ID_VAR: &str = "AZURE_TENANT_ID";
const SDK_CLIENT_ID_VAR: &str = "AZURE_CLIENT_ID";
const MANAGED_IDENTITY_VAR: &str = "RIPOSTE_AZURE_MANAGED_IDENTITY";
const AUTHORITY_URL_VAR: &str = "RIPOSTE_AZURE_AUTHORITY_URL";
const ARM_URL_VAR: &str = "RIPOSTE_AZURE_ARM_URL";
const GRAPH_URL_VAR: &str = "RIPOSTE_AZURE_GRAPH_URL";
const IMDS_URL_VAR: &str = "RIPOSTE_AZURE_IMDS_URL";
const NSG_VAR: &str = "RIPOSTE_AZURE_NSG";
const NSG_PRIORITIES_VAR: &str = "RIPOSTE_AZURE_NSG_PRIORITIES";
const IP_GROUP_VAR: &str = "RIPOSTE_AZURE_IP_GROUP";
const JIT_POLICY_VAR: &str = "RIPOSTE_AZURE_JIT_POLICY";

/// The Azure flags of the worker (flattened into its command line).
#[derive(Debug, Default, clap::Args)]
#[group(id = "azure")]
pub struct Flags {
    /// Microsoft Entra tenant (directory) id or domain [env: RIPOSTE_AZURE_TENANT_ID, else
    /// AZURE_TENANT_ID]
    #[arg(long, value_name = "TENANT", value_parser = parse_tenant_id)]
    azure_tenant_id: Option<String>,

    /// Application (client) id of the worker's service principal, or of a user-assigned
    /// managed identity [env: RIPOSTE_AZURE_CLIENT_ID, else AZURE_CLIENT_ID]
    #[arg(long, value_name = "GUID", value_parser = parse_client_id)]
    azure_client_id: Option<String>,

    /// File holding the client secret (the secret is otherwise read from AZURE_CLIENT_SECRET,
    /// never from a flag) [env: RIPOSTE_AZURE_CLIENT_SECRET_FILE]
    #[arg(long, value_name = "PATH")]
    azure_client_secret_file: Option<PathBuf>,

    /// PEM file holding the client certificate and its RSA private key: the worker signs a
    /// client assertion with it instead of sending a secret [env:
    /// RIPOSTE_AZURE_CLIENT_CERTIFICATE]
    #[arg(long, value_name = "PATH")]
    azure_client_certificate: Option<PathBuf>,

    /// File holding a federated token (workload identity federation, e.g. AKS), read again for
    /// every token request [env: AZURE_FEDERATED_TOKEN_FILE]
    #[arg(long, value_name = "PATH")]
    azure_federated_token_file: Option<PathBuf>,

    /// Authenticate with the managed identity of this VM through the instance metadata service
    /// [env: RIPOSTE_AZURE_MANAGED_IDENTITY=true]
    #[arg(long)]
    azure_managed_identity: bool,

    /// Base URL of the token authority [env: RIPOSTE_AZURE_AUTHORITY_URL] [default:
    /// https://login.microsoftonline.com]
    #[arg(long, value_name = "URL", value_parser = parse_base_url)]
    azure_authority_url: Option<Url>,

    /// Base URL of Azure Resource Manager; tokens are asked for `<URL>/.default` [env:
    /// RIPOSTE_AZURE_ARM_URL] [default: https://management.azure.com]
    #[arg(long, value_name = "URL", value_parser = parse_base_url)]
    azure_arm_url: Option<Url>,

    /// Base URL of Microsoft Graph; tokens are asked for `<URL>/.default` [env:
    /// RIPOSTE_AZURE_GRAPH_URL] [default: https://graph.microsoft.com]
    #[arg(long, value_name = "URL", value_parser = parse_base_url)]
    azure_graph_url: Option<Url>,

    /// Base URL of the instance metadata service, for managed identity [env:
    /// RIPOSTE_AZURE_IMDS_URL] [default: http://169.254.169.254]
    #[arg(long, value_name = "URL", value_parser = parse_base_url)]
    azure_imds_url: Option<Url>,

    /// ARM id of the network security group the `azure-nsg` backend manages [env:
    /// RIPOSTE_AZURE_NSG]
    #[arg(long, value_name = "ID", value_parser = parse_nsg)]
    azure_nsg: Option<ArmId>,

    /// Range of NSG rule priorities the worker may use, e.g. `100-199` (100 to 4096) [env:
    /// RIPOSTE_AZURE_NSG_PRIORITIES] [default: 100-199]
    #[arg(long, value_name = "LOW-HIGH", value_parser = parse_priorities)]
    azure_nsg_priorities: Option<RangeInclusive<u16>>,

    /// ARM id of the IP Group the `azure-ip-group` backend manages [env: RIPOSTE_AZURE_IP_GROUP]
    #[arg(long, value_name = "ID", value_parser = parse_ip_group)]
    azure_ip_group: Option<ArmId>,

    /// ARM id of the JIT policy
    /// (`.../providers/Microsoft.Security/locations/{location}/jitNetworkAccessPolicies/{name}`)
    /// the `azure-jit` backend uses [env: RIPOSTE_AZURE_JIT_POLICY]
    #[arg(long, value_name = "ID", value_parser = parse_jit_policy)]
    azure_jit_policy: Option<ArmId>,
}

/// A credential value: compared and cloned like a string, but never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that sends it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// How the worker proves who it is to Microsoft Entra ID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Credential {
    /// None configured: the Azure backends cannot be used.
    #[default]
    None,
    /// A client secret from `AZURE_CLIENT_SECRET`.
    Secret(Secret),
    /// A client secret read from this file when the worker starts.
    SecretFile(PathBuf),
    /// A PEM file with the client certificate and its RSA key, read when the worker starts.
    Certificate(PathBuf),
    /// A federated token file, read for every token request (it is rotated).
    FederatedToken(PathBuf),
    /// The managed identity of the host, through the instance metadata service.
    ManagedIdentity,
}

/// Where Azure is and how to authenticate. Credentials never leave the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Tenant id or domain (client secret credentials).
    pub tenant_id: Option<String>,
    /// Application (client) id; for managed identity it selects a user-assigned identity.
    pub client_id: Option<String>,
    /// The credential.
    pub credential: Credential,
    /// Base URL of the token authority.
    pub authority_url: Url,
    /// Base URL of Azure Resource Manager.
    pub arm_url: Url,
    /// Base URL of Microsoft Graph.
    pub graph_url: Url,
    /// Base URL of the instance metadata service.
    pub imds_url: Url,
    /// The NSG of the `azure-nsg` backend.
    pub nsg: Option<ArmId>,
    /// Priorities the `azure-nsg` backend may give its rules.
    pub nsg_priorities: RangeInclusive<u16>,
    /// The IP Group of the `azure-ip-group` backend.
    pub ip_group: Option<ArmId>,
    /// The JIT policy of the `azure-jit` backend.
    pub jit_policy: Option<ArmId>,
}

impl Default for Settings {
    fn default() -> Settings {
        let url = |text: &str| Url::parse(text).expect("a valid default URL");
        Settings {
            tenant_id: None,
            client_id: None,
            credential: Credential::None,
            authority_url: url(AUTHORITY_URL_DEFAULT),
            arm_url: url(ARM_URL_DEFAULT),
            graph_url: url(GRAPH_URL_DEFAULT),
            imds_url: url(IMDS_URL_DEFAULT),
            nsg: None,
            nsg_priorities: NSG_PRIORITIES_DEFAULT,
            ip_group: None,
            jit_policy: None,
        }
    }
}

/// Why the Azure settings were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// A backend needs a setting that is missing.
    #[error("the {backend} backend needs {what}")]
    Missing {
        /// The backend, e.g. `azure-nsg`.
        backend: &'static str,
        /// What to give, e.g. `--azure-nsg`.
        what: &'static str,
    },
    /// Two credentials were given.
    #[error("give one azure credential, not several: {0}")]
    Ambiguous(String),
    /// The secret file could not be read.
    #[error("cannot read the azure client secret file {path}: {reason}")]
    SecretFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The certificate or federated token file cannot be used.
    #[error("cannot use the azure {what} file {path}: {reason}")]
    CredentialFile {
        /// `client certificate` or `federated token`.
        what: &'static str,
        /// The file.
        path: String,
        /// Why (never what the file holds).
        reason: assertion::CredentialError,
    },
}

impl Settings {
    /// Builds the settings from the flags and, for flags not given, the environment.
    pub(crate) fn from_flags(
        flags: Flags,
        env: &HashMap<String, String>,
    ) -> Result<Settings, crate::Error> {
        let tenant_id = pick(flags.azure_tenant_id, env, TENANT_ID_VAR, parse_tenant_id)?;
        let client_id = pick(flags.azure_client_id, env, CLIENT_ID_VAR, parse_client_id)?;
        let mut s = Settings {
            tenant_id: pick(tenant_id, env, SDK_TENANT_ID_VAR, parse_tenant_id)?,
            client_id: pick(client_id, env, SDK_CLIENT_ID_VAR, parse_client_id)?,
            nsg: pick(flags.azure_nsg, env, NSG_VAR, parse_nsg)?,
            ip_group: pick(flags.azure_ip_group, env, IP_GROUP_VAR, parse_ip_group)?,
            jit_policy: pick(
                flags.azure_jit_policy,
                env,
                JIT_POLICY_VAR,
                parse_jit_policy,
            )?,
            ..Settings::default()
        };
        let urls = [
            (
                flags.azure_authority_url,
                AUTHORITY_URL_VAR,
                &mut s.authority_url,
            ),
            (flags.azure_arm_url, ARM_URL_VAR, &mut s.arm_url),
            (flags.azure_graph_url, GRAPH_URL_VAR, &mut s.graph_url),
            (flags.azure_imds_url, IMDS_URL_VAR, &mut s.imds_url),
        ];
        for (flag, var, slot) in urls {
            if let Some(url) = pick(flag, env, var, parse_base_url)? {
                *slot = url;
            }
        }
        let priorities = pick(
            flags.azure_nsg_priorities,
            env,
            NSG_PRIORITIES_VAR,
            parse_priorities,
        )?;
        s.nsg_priorities = priorities.unwrap_or(NSG_PRIORITIES_DEFAULT);
        let managed = flags.azure_managed_identity.then_some(true);
        let managed = pick(managed, env, MANAGED_IDENTITY_VAR, parse_bool)?.unwrap_or(false);
        let secret_file = pick(
            flags.azure_client_secret_file,
            env,
            CLIENT_SECRET_FILE_VAR,
            |t: &str| Ok::<_, String>(PathBuf::from(t.trim())),
        )?;
        let secret = env
            .get(CLIENT_SECRET_VAR)
            .filter(|v| !v.is_empty())
            .map(|v| Secret::new(v.clone()));
        let path = |t: &str| Ok::<_, String>(PathBuf::from(t.trim()));
        let certificate = pick(
            flags.azure_client_certificate,
            env,
            CLIENT_CERTIFICATE_VAR,
            path,
        )?;
        let federated = pick(
            flags.azure_federated_token_file,
            env,
            FEDERATED_TOKEN_FILE_VAR,
            path,
        )?;
        let given: Vec<(&'static str, Credential)> = [
            (
                "--azure-managed-identity",
                managed.then_some(Credential::ManagedIdentity),
            ),
            (
                "--azure-client-secret-file",
                secret_file.map(Credential::SecretFile),
            ),
            ("AZURE_CLIENT_SECRET", secret.map(Credential::Secret)),
            (
                "--azure-client-certificate",
                certificate.map(Credential::Certificate),
            ),
            (
                "--azure-federated-token-file (AZURE_FEDERATED_TOKEN_FILE)",
                federated.map(Credential::FederatedToken),
            ),
        ]
        .into_iter()
        .filter_map(|(name, credential)| credential.map(|c| (name, c)))
        .collect();
        s.credential = match <[_; 1]>::try_from(given) {
            Ok([(_, credential)]) => credential,
            Err(given) if given.is_empty() => Credential::None,
            Err(given) => {
                let names: Vec<&str> = given.iter().map(|(name, _)| *name).collect();
                return Err(config_error(SettingsError::Ambiguous(names.join(" and "))));
            }
        };
        Ok(s)
    }

    /// Checks that every configured Azure backend has what it needs.
    pub(crate) fn check(&self, backends: &Backends) -> Result<(), SettingsError> {
        let mut used: Vec<&'static str> = Vec::new();
        if let Some(backend) = backends.firewall {
            match backend {
                firewall::Backend::AzureNsg => {
                    used.push("azure-nsg");
                    if self.nsg.is_none() {
                        return Err(missing("azure-nsg", "--azure-nsg"));
                    }
                }
                firewall::Backend::AzureIpGroup => {
                    used.push("azure-ip-group");
                    if self.ip_group.is_none() {
                        return Err(missing("azure-ip-group", "--azure-ip-group"));
                    }
                }
                firewall::Backend::Nftables => {}
            }
        }
        if backends.identity == Some(identity::Backend::Graph) {
            used.push("graph");
        }
        if backends.access == Some(access::Backend::AzureJit) {
            used.push("azure-jit");
            if self.jit_policy.is_none() {
                return Err(missing("azure-jit", "--azure-jit-policy"));
            }
        }
        if backends.patch == Some(patch::Backend::Azure) {
            used.push("azure");
        }
        if backends.sentinel.is_some() {
            used.push("sentinel");
        }
        let Some(backend) = used.first().copied() else {
            return Ok(());
        };
        match self.credential {
            Credential::None => Err(missing(
                backend,
                "a credential: AZURE_CLIENT_SECRET, --azure-client-secret-file, \
                 --azure-client-certificate, --azure-federated-token-file or \
                 --azure-managed-identity",
            )),
            Credential::Secret(_)
            | Credential::SecretFile(_)
            | Credential::Certificate(_)
            | Credential::FederatedToken(_) => {
                if self.tenant_id.is_none() {
                    return Err(missing(backend, "--azure-tenant-id"));
                }
                if self.client_id.is_none() {
                    return Err(missing(backend, "--azure-client-id"));
                }
                Ok(())
            }
            Credential::ManagedIdentity => Ok(()),
        }
    }
}

fn missing(backend: &'static str, what: &'static str) -> SettingsError {
    SettingsError::Missing { backend, what }
}

fn config_error(error: SettingsError) -> crate::Error {
    crate::Error::Config(error.to_string())
}

fn parse_tenant_id(text: &str) -> Result<String, String> {
    let text = text.trim();
    let valid = !text.is_empty()
        && text.len() <= 256
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!("{text:?} is not a tenant id or domain"))
    }
}

fn parse_client_id(text: &str) -> Result<String, String> {
    let text = text.trim();
    if id::is_guid(text) {
        Ok(text.to_owned())
    } else {
        Err(format!("{text:?} is not a GUID"))
    }
}

/// An http(s) base URL without credentials, query or fragment; a trailing slash is dropped.
fn parse_base_url(text: &str) -> Result<Url, String> {
    let text = text.trim().trim_end_matches('/');
    let url = Url::parse(text).map_err(|e| format!("{text:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{text:?} must use http or https"));
    }
    if url.host_str().is_none() || !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{text:?} must name a host and no credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{text:?} must not have a query or fragment"));
    }
    Ok(url)
}

fn parse_priorities(text: &str) -> Result<RangeInclusive<u16>, String> {
    let invalid = || format!("{text:?} is not a priority range LOW-HIGH within 100-4096");
    let (low, high) = text.trim().split_once('-').ok_or_else(invalid)?;
    let low: u16 = low.trim().parse().map_err(|_| invalid())?;
    let high: u16 = high.trim().parse().map_err(|_| invalid())?;
    let bounds = NSG_PRIORITY_BOUNDS;
    if low > high || !bounds.contains(&low) || !bounds.contains(&high) {
        return Err(invalid());
    }
    Ok(low..=high)
}

fn parse_nsg(text: &str) -> Result<ArmId, id::IdError> {
    ArmId::parse(text, id::Kind::Nsg)
}

fn parse_ip_group(text: &str) -> Result<ArmId, id::IdError> {
    ArmId::parse(text, id::Kind::IpGroup)
}

fn parse_jit_policy(text: &str) -> Result<ArmId, id::IdError> {
    ArmId::parse(text, id::Kind::JitPolicy)
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        other => Err(format!("{other:?} is not true or false")),
    }
}

/// The Azure client of one worker: one HTTP connection pool, the token cache, and the locks
/// that serialize writers of one resource in this process.
#[derive(Debug)]
pub(crate) struct Client {
    http: reqwest::Client,
    settings: Settings,
    tokens: token::Tokens,
    locks: locks::Locks,
    /// Quotes of Azure's answers in log lines go through it.
    redactor: Redactor,
}

impl Client {
    /// Builds the client from the worker's settings; reads the secret file, if any, and
    /// registers the secret (and later each token obtained) with `redactor`.
    pub(crate) fn new(
        settings: &Settings,
        http: &http::Connector,
        redactor: &Redactor,
    ) -> Result<Client, crate::Error> {
        let credential = token::Source::from_settings(settings).map_err(config_error)?;
        Ok(Client {
            http: http.azure_client()?,
            settings: settings.clone(),
            tokens: token::Tokens::new(credential, redactor),
            locks: locks::Locks::default(),
            redactor: redactor.clone(),
        })
    }

    /// The settings.
    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }
}
