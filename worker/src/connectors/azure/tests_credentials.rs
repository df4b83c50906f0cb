//! The certificate and federated (workload identity) credentials against the local token
//! endpoint, which checks each assertion as Entra does; each refusal is one line naming the
//! credential, tenant and client, and why.

use std::path::PathBuf;

use riposte_test_support::azure::{self as local, AzureServer, Fault};

use super::tests::{client, cx, settings};
use super::*;

const SECRET: &str = "local-test-secret-Zq8";

fn fixture(name: &str) -> PathBuf {
    format!(
        "{}/../test-support/fixtures/azure/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
    .into()
}

fn with(server: &AzureServer, credential: Credential) -> Client {
    client(&Settings {
        credential,
        ..settings(server)
    })
}

/// How the worker reports Entra's `invalid_client` answer `why` to the credential `who`.
fn refusal(who: &str, why: &str) -> String {
    format!("azure token request failed ({who}): invalid_client: {why}")
}

const INVALID_SIGNATURE: &str = "AADSTS700027: Client assertion contains an invalid signature.";
const OUT_OF_TIME: &str = "AADSTS700024: Client assertion is not within its valid time range.";

/// The token failure of a Graph call (a dry-run disable), which asks for a Graph token.
async fn graph_refused(client: &Client) -> super::super::Failure {
    let disable = identity::Disable {
        account: local::USER_ID.into(),
        reason: String::new(),
    };
    graph::disable(client, &disable, &cx(true))
        .await
        .unwrap_err()
}

/// The message of the token failure of a first ARM call.
async fn refused(client: &Client) -> String {
    let failure = network::nsg_list(client, &cx(false)).await.unwrap_err();
    assert!(!failure.retryable, "{failure:?}");
    failure.message
}

#[tokio::test]
async fn a_client_certificate_signs_an_assertion_the_endpoint_accepts() {
    let server = AzureServer::start(SECRET).await;
    let pem = std::fs::read_to_string(fixture("client-certificate.pem")).unwrap();
    server.trust_certificate(&pem);
    let client = with(
        &server,
        Credential::Certificate(fixture("client-certificate.pem")),
    );
    network::nsg_list(&client, &cx(false)).await.unwrap();
    let tokens = server.requests_to("POST", "/oauth2/v2.0/token");
    assert_eq!(tokens.len(), 1);
    let form = tokens[0].form();
    assert_eq!(
        form["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    assert_eq!(form["client_assertion"].split('.').count(), 3);
    assert!(!form.contains_key("client_secret"));

    // An endpoint that echoes the request in its error: the assertion is not in the message.
    server.fault(Fault {
        times: 1,
        ..Fault::echo("POST", "/oauth2/v2.0/token", 400)
    });
    client.tokens.forget(rest::Api::Graph).await;
    let failure = graph_refused(&client).await;
    let echoed = server.requests_to("POST", "/oauth2/v2.0/token");
    let assertion = &echoed.last().unwrap().form()["client_assertion"];
    assert!(
        failure.message.contains("echo of the request"),
        "{failure:?}"
    );
    // What the worker reports and logs goes through its redactor, which knows the assertion.
    let shown = client.redactor.redact(&failure.message);
    assert!(shown.contains("client_assertion=[redacted]"), "{shown}");
    assert!(!shown.contains(&assertion[..40]), "{shown}");
}

#[tokio::test]
async fn a_wrong_key_and_an_expired_assertion_are_refused_each_with_its_reason() {
    let server = AzureServer::start(SECRET).await;
    let pem = std::fs::read_to_string(fixture("client-certificate.pem")).unwrap();
    server.trust_certificate(&pem);
    let who = format!(
        "client certificate, tenant {}, client {}",
        local::TENANT,
        local::CLIENT_ID
    );
    let wrong = with(
        &server,
        Credential::Certificate(fixture("client-certificate-wrong-key.pem")),
    );
    assert_eq!(refused(&wrong).await, refusal(&who, INVALID_SIGNATURE));
    server.set_clock_ahead(3600);
    let late = with(
        &server,
        Credential::Certificate(fixture("client-certificate.pem")),
    );
    assert_eq!(refused(&late).await, refusal(&who, OUT_OF_TIME));
}

#[tokio::test]
async fn a_federated_token_file_is_read_again_for_each_token_and_a_missing_one_is_refused() {
    let server = AzureServer::start(SECRET).await;
    let issuer = server.federate();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("azure-identity-token");
    let token = issuer.token(0, 3600);
    std::fs::write(&file, &token).unwrap();
    let client = with(&server, Credential::FederatedToken(file.clone()));
    network::nsg_list(&client, &cx(false)).await.unwrap();
    let first = server.requests_to("POST", "/oauth2/v2.0/token");
    assert_eq!(first[0].form()["client_assertion"], token);

    // The token is rotated (here: to an expired one) and read again for the Graph token.
    std::fs::write(&file, issuer.token(-7200, -3600)).unwrap();
    let who = format!(
        "workload identity, tenant {}, client {}",
        local::TENANT,
        local::CLIENT_ID
    );
    let failure = graph_refused(&client).await;
    assert_eq!(failure.message, refusal(&who, OUT_OF_TIME));

    // The file is gone: the next token request says so, naming the file.
    std::fs::remove_file(&file).unwrap();
    client.tokens.forget(rest::Api::Arm).await;
    let message = refused(&client).await;
    assert_eq!(
        message,
        format!(
            "azure token request failed ({who}): cannot read the federated token file {}: \
             No such file or directory (os error 2)",
            file.display()
        )
    );

    // A worker does not start on a token file that is not there.
    let error = token::Source::from_settings(&Settings {
        credential: Credential::FederatedToken(file.clone()),
        ..settings(&server)
    })
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "cannot use the azure federated token file {}: No such file or directory (os \
             error 2)",
            file.display()
        )
    );
}

#[test]
fn aks_workload_identity_is_read_from_its_variables_and_two_credentials_are_refused() {
    let argv = |args: &[&str]| {
        std::iter::once("riposte-worker")
            .chain(args.iter().copied())
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let env = |pairs: &[(&str, &str)]| -> std::collections::HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let aks = env(&[
        (
            "AZURE_FEDERATED_TOKEN_FILE",
            "/var/run/secrets/azure/tokens/azure-identity-token",
        ),
        ("AZURE_TENANT_ID", local::TENANT),
        ("AZURE_CLIENT_ID", local::CLIENT_ID),
    ]);
    let config = crate::Config::from_args(argv(&[]), &aks).unwrap();
    assert_eq!(
        config.azure.credential,
        Credential::FederatedToken("/var/run/secrets/azure/tokens/azure-identity-token".into())
    );
    assert_eq!(config.azure.tenant_id.as_deref(), Some(local::TENANT));
    assert_eq!(config.azure.client_id.as_deref(), Some(local::CLIENT_ID));
    let both = env(&[("AZURE_CLIENT_SECRET", SECRET)]);
    let error = crate::Config::from_args(
        argv(&["--azure-client-certificate", "/etc/riposte/worker.pem"]),
        &both,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        error,
        "invalid configuration: give one azure credential, not several: AZURE_CLIENT_SECRET and \
         --azure-client-certificate"
    );
    assert!(!error.contains(SECRET));
}
