//! Access tokens, one per resource (ARM, Graph), cached until [`REFRESH_SKEW`] before they
//! expire, from Microsoft Entra ID's client credentials grant with a client secret, a
//! certificate (a signed JWT assertion, [`super::assertion`]) or a federated token (workload
//! identity: the token file, read again for every request because it is rotated), or from the
//! host's managed identity through the instance metadata service.
//!
//! A failed request says in one line which credential, tenant and client failed, and why
//! (Entra's `AADSTS` code and message), never the secret, key, assertion or token.
//!
//! The scope of a token is its API's base URL followed by `/.default`
//! (`https://management.azure.com/.default`); for a sovereign cloud the base URL names the
//! right resource by itself. One lock per resource makes concurrent callers wait for a single
//! token request instead of each sending one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::super::Failure;
use super::super::http::{read_capped, transport_failure};
use super::assertion::{Certificate, read_secret};
use super::errors::ApiError;
use super::rest::{Api, Deadline, target};
use super::{Credential, Secret, Settings, SettingsError};
use crate::backoff::Backoff;
use crate::clock;
use crate::redact::Redactor;

/// A token is renewed this long before it expires (at most half its lifetime earlier).
const REFRESH_SKEW: Duration = Duration::from_secs(300);
/// Most attempts of one token request.
const ATTEMPTS_MAX: u32 = 3;
/// Longest one token request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest token response read.
const RESPONSE_BYTES_MAX: u64 = 64 * 1024;
/// Largest secret file or federated token file read.
const SECRET_FILE_BYTES_MAX: u64 = 16 * 1024;
/// `client_assertion_type` of a JWT client assertion (RFC 7523).
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The IMDS API version of the token endpoint.
const IMDS_API_VERSION: &str = "2018-02-01";

/// Where tokens come from.
pub(crate) enum Source {
    /// Not configured.
    None,
    /// Client credentials of an application.
    Application {
        authority: Url,
        tenant: String,
        client_id: String,
        proof: Proof,
    },
    /// The host's managed identity (a user-assigned one when `client_id` is set).
    ManagedIdentity {
        imds: Url,
        client_id: Option<String>,
    },
}

/// How an application proves it is itself.
pub(crate) enum Proof {
    /// A shared secret.
    Secret(Secret),
    /// A JWT assertion signed with the certificate's key (boxed: a key pair is large).
    Certificate(Box<Certificate>),
    /// The federated token in this file (workload identity), read for each request.
    FederatedToken(PathBuf),
}

impl Proof {
    fn name(&self) -> &'static str {
        match self {
            Proof::Secret(_) => "client secret",
            Proof::Certificate(_) => "client certificate",
            Proof::FederatedToken(_) => "workload identity",
        }
    }
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // What failed, as messages say it: no secret, key or token.
        f.write_str(&self.describe())
    }
}

impl Source {
    /// The source the settings describe; reads the secret file and the certificate, and
    /// checks that the federated token file is there.
    pub(crate) fn from_settings(settings: &Settings) -> Result<Source, SettingsError> {
        let application = |proof: Proof| match (&settings.tenant_id, &settings.client_id) {
            (Some(tenant), Some(client_id)) => Source::Application {
                authority: settings.authority_url.clone(),
                tenant: tenant.clone(),
                client_id: client_id.clone(),
                proof,
            },
            _ => Source::None,
        };
        Ok(match &settings.credential {
            Credential::None => Source::None,
            Credential::Secret(secret) => application(Proof::Secret(secret.clone())),
            Credential::SecretFile(path) => application(Proof::Secret(read_secret_file(path)?)),
            Credential::Certificate(path) => {
                let certificate =
                    Certificate::load(path).map_err(|reason| SettingsError::CredentialFile {
                        what: "client certificate",
                        path: path.display().to_string(),
                        reason,
                    })?;
                application(Proof::Certificate(Box::new(certificate)))
            }
            Credential::FederatedToken(path) => {
                read_secret(path, SECRET_FILE_BYTES_MAX).map_err(|reason| {
                    SettingsError::CredentialFile {
                        what: "federated token",
                        path: path.display().to_string(),
                        reason,
                    }
                })?;
                application(Proof::FederatedToken(path.clone()))
            }
            Credential::ManagedIdentity => Source::ManagedIdentity {
                imds: settings.imds_url.clone(),
                client_id: settings.client_id.clone(),
            },
        })
    }

    /// Which credential, tenant and client: `client certificate, tenant T, client C`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Source::None => "no credential".into(),
            Source::Application {
                tenant,
                client_id,
                proof,
                ..
            } => format!("{}, tenant {tenant}, client {client_id}", proof.name()),
            Source::ManagedIdentity {
                client_id: Some(client_id),
                ..
            } => format!("managed identity, client {client_id}"),
            Source::ManagedIdentity {
                client_id: None, ..
            } => "managed identity".into(),
        }
    }
}

fn read_secret_file(path: &Path) -> Result<Secret, SettingsError> {
    read_secret(path, SECRET_FILE_BYTES_MAX).map_err(|reason| SettingsError::SecretFile {
        path: path.display().to_string(),
        reason: reason.to_string(),
    })
}

/// A token and when to renew it.
struct Cached {
    token: Secret,
    refresh_at: Instant,
}

/// The token cache of one worker.
pub(crate) struct Tokens {
    source: Source,
    /// Knows the client secret and every token obtained.
    redactor: Redactor,
    arm: Mutex<Option<Cached>>,
    graph: Mutex<Option<Cached>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// An empty cache over `source`; registers its client secret with `redactor`, as it will
    /// each token it obtains.
    pub(crate) fn new(source: Source, redactor: &Redactor) -> Tokens {
        if let Source::Application {
            proof: Proof::Secret(secret),
            ..
        } = &source
        {
            redactor.register(secret.expose());
        }
        Tokens {
            source,
            redactor: redactor.clone(),
            arm: Mutex::new(None),
            graph: Mutex::new(None),
        }
    }

    fn slot(&self, api: Api) -> &Mutex<Option<Cached>> {
        match api {
            Api::Arm => &self.arm,
            Api::Graph => &self.graph,
        }
    }

    /// A valid token for `api` (whose base URL is `resource`), from the cache or fresh.
    pub(crate) async fn get(
        &self,
        http: &reqwest::Client,
        api: Api,
        resource: &Url,
        deadline: &Deadline,
    ) -> Result<Secret, Failure> {
        let mut slot = self.slot(api).lock().await;
        if let Some(cached) = slot.as_ref()
            && clock::monotonic() < cached.refresh_at
        {
            return Ok(cached.token.clone());
        }
        let (token, lifetime) = self.fetch(http, resource, deadline).await?;
        self.redactor.register_token(token.expose());
        let early = REFRESH_SKEW.min(lifetime / 2);
        *slot = Some(Cached {
            token: token.clone(),
            refresh_at: clock::monotonic() + lifetime.saturating_sub(early),
        });
        Ok(token)
    }

    /// Drops the cached token of `api` (after a 401).
    pub(crate) async fn forget(&self, api: Api) {
        *self.slot(api).lock().await = None;
    }

    async fn fetch(
        &self,
        http: &reqwest::Client,
        resource: &Url,
        deadline: &Deadline,
    ) -> Result<(Secret, Duration), Failure> {
        let mut backoff = Backoff::new();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match self.fetch_once(http, resource, deadline).await {
                Ok(token) => return Ok(token),
                Err(failure) if !failure.retryable => return Err(failure),
                Err(failure) => failure,
            };
            let delay = backoff.next_delay();
            if attempt >= ATTEMPTS_MAX || !deadline.fits(delay) {
                return Err(failure);
            }
            let error = self.redactor.redact(&failure.message);
            tracing::info!(attempt, %error, "azure token request will be retried");
            tokio::time::sleep(delay).await;
        }
    }

    async fn fetch_once(
        &self,
        http: &reqwest::Client,
        resource: &Url,
        deadline: &Deadline,
    ) -> Result<(Secret, Duration), Failure> {
        let resource = resource.as_str().trim_end_matches('/');
        let request = match &self.source {
            Source::None => {
                return Err(Failure::permanent(
                    "azure credentials are not configured on this worker",
                ));
            }
            Source::Application {
                authority,
                tenant,
                client_id,
                proof,
            } => {
                let base = authority.as_str().trim_end_matches('/');
                let url = format!("{base}/{tenant}/oauth2/v2.0/token");
                let scope = format!("{resource}/.default");
                let (field, proof) = match proof {
                    Proof::Secret(secret) => ("client_secret", secret.clone()),
                    Proof::Certificate(certificate) => {
                        let assertion = certificate
                            .assertion(&url, client_id, clock::wall())
                            .map_err(|e| self.failed(e))?;
                        // Whoever holds it gets a token until it expires: never shown.
                        self.redactor.register_token(&assertion);
                        ("client_assertion", Secret::new(assertion))
                    }
                    Proof::FederatedToken(path) => {
                        let token = read_secret(path, SECRET_FILE_BYTES_MAX).map_err(|e| {
                            self.failed(format!(
                                "cannot read the federated token file {}: {e}",
                                path.display()
                            ))
                        })?;
                        self.redactor.register_token(token.expose());
                        ("client_assertion", token)
                    }
                };
                let mut form = vec![
                    ("client_id", client_id.as_str()),
                    ("scope", scope.as_str()),
                    ("grant_type", "client_credentials"),
                    (field, proof.expose()),
                ];
                if field == "client_assertion" {
                    form.push(("client_assertion_type", JWT_BEARER));
                }
                http.post(url).form(&form)
            }
            Source::ManagedIdentity { imds, client_id } => {
                let base = imds.as_str().trim_end_matches('/');
                let mut url = Url::parse(&format!("{base}/metadata/identity/oauth2/token"))
                    .map_err(|e| Failure::permanent(format!("bad imds url: {e}")))?;
                url.query_pairs_mut()
                    .append_pair("api-version", IMDS_API_VERSION)
                    .append_pair("resource", &format!("{resource}/"));
                if let Some(client_id) = client_id {
                    url.query_pairs_mut().append_pair("client_id", client_id);
                }
                http.get(url).header("Metadata", "true")
            }
        };
        let request = request.timeout(REQUEST_TIMEOUT.min(deadline.remaining()));
        let built = request
            .build()
            .map_err(|e| Failure::permanent(format!("azure token request: {}", e.without_url())))?;
        let target = target(built.url());
        let mut response = crate::connectors::http::send(http, built, "entra")
            .await
            .map_err(|e| self.retryable(transport_failure(&target, e)))?;
        let status = response.status();
        let body = read_capped(&mut response, RESPONSE_BYTES_MAX, &target)
            .await
            .map_err(|e| self.retryable(e))?;
        let json: Value = serde_json::from_slice(&body.bytes).unwrap_or(Value::Null);
        tracing::info!(status = status.as_u16(), host = %target, "azure token request");
        if !status.is_success() {
            let error = ApiError::from_body(status, &json, &body.bytes);
            let message = self.failed(error.summary()).message;
            let transient = status.is_server_error()
                || status == StatusCode::TOO_MANY_REQUESTS
                || error.code == "temporarily_unavailable";
            return Err(Failure {
                message,
                retryable: transient,
                retry_after: None,
            });
        }
        parse_token(&json)
    }
}

impl Tokens {
    /// A permanent failure of a token request: `azure token request failed (CREDENTIAL):
    /// WHY`.
    fn failed(&self, why: impl std::fmt::Display) -> Failure {
        Failure::permanent(format!(
            "azure token request failed ({}): {why}",
            self.source.describe()
        ))
    }

    /// The same, retryable (the endpoint could not be reached or read).
    fn retryable(&self, failure: Failure) -> Failure {
        Failure::retryable(self.failed(failure.message).message)
    }
}

/// `access_token` and its lifetime from `expires_in` (a number, or a string from IMDS).
fn parse_token(body: &Value) -> Result<(Secret, Duration), Failure> {
    let token = body
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Failure::permanent("azure token response has no access_token"))?;
    let kind = body
        .get("token_type")
        .and_then(Value::as_str)
        .unwrap_or("Bearer");
    if !kind.eq_ignore_ascii_case("bearer") {
        return Err(Failure::permanent(format!(
            "azure token response has token_type {kind:?}, not Bearer"
        )));
    }
    let expires_in = match body.get("expires_in") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| Failure::permanent("azure token response has no valid expires_in"))?;
    Ok((Secret::new(token), Duration::from_secs(expires_in)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parses_tokens_from_both_sources() {
        let fixture: Value = serde_json::from_str(include_str!(
            "../../../../test-support/fixtures/azure/entra-token-client-credentials.http.json"
        ))
        .unwrap();
        let (token, lifetime) = parse_token(&fixture["response"]["body"]).unwrap();
        assert!(token.expose().starts_with("eyJ0eXAi"));
        assert_eq!(lifetime, Duration::from_secs(3599));
        let imds = json!({"access_token": "t", "expires_in": "86399", "token_type": "Bearer"});
        assert_eq!(parse_token(&imds).unwrap().1, Duration::from_secs(86399));
        assert!(parse_token(&json!({"access_token": "t"})).is_err());
        assert!(
            parse_token(&json!({"access_token": "t", "expires_in": 1, "token_type": "pop"}))
                .is_err()
        );
    }

    #[test]
    fn the_secret_is_never_shown_and_the_redactor_knows_it() {
        let source = Source::Application {
            authority: Url::parse("https://login.example").unwrap(),
            tenant: "t".into(),
            client_id: "c".into(),
            proof: Proof::Secret(Secret::new("hunter2-very-secret")),
        };
        let redactor = Redactor::default();
        let tokens = Tokens::new(source, &redactor);
        let text = format!("{tokens:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("client secret, tenant t, client c"), "{text}");
        assert_eq!(
            redactor.redact("echo: hunter2-very-secret"),
            "echo: [redacted]",
            "the redactor knows the client secret"
        );
    }
}
