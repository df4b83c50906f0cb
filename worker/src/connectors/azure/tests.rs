//! Tests of the Azure backends against the local Azure server of the end-to-end harness: dry
//! runs (which the orchestrator cannot start yet), managed identity, the token cache, and the
//! Azure flags.

use std::collections::HashMap;
use std::time::Duration;

use ipnet::IpNet;
use riposte_test_support::azure::{self as local, AzureServer};
use serde_json::Value;

use super::super::access::{Grant, Protocol, Revoke};
use super::super::firewall::{Block, Unblock};
use super::super::identity::Disable;
use super::super::patch::{Install, Reboot, Scope};
use super::super::{Context, http};
use super::*;

const SECRET: &str = "local-test-secret-Zq8";

pub(super) fn settings(server: &AzureServer) -> Settings {
    let url = |path: &str| Url::parse(&format!("{}{path}", server.url())).unwrap();
    Settings {
        tenant_id: Some(local::TENANT.into()),
        client_id: Some(local::CLIENT_ID.into()),
        credential: Credential::Secret(Secret::new(SECRET)),
        authority_url: url("/login"),
        arm_url: url(""),
        graph_url: url("/graph"),
        imds_url: url("/imds"),
        nsg: Some(ArmId::parse(local::NSG_ID, id::Kind::Nsg).unwrap()),
        nsg_priorities: 100..=102,
        ip_group: Some(ArmId::parse(local::IP_GROUP_ID, id::Kind::IpGroup).unwrap()),
        jit_policy: Some(ArmId::parse(local::JIT_POLICY_ID, id::Kind::JitPolicy).unwrap()),
    }
}

pub(super) fn client(settings: &Settings) -> Client {
    let http = http::Connector::new(Vec::new()).unwrap();
    Client::new(settings, &http, &Redactor::default()).unwrap()
}

pub(super) fn cx(dry_run: bool) -> Context {
    Context {
        dry_run,
        ..Context::test(Duration::from_secs(20))
    }
}

fn target(text: &str) -> IpNet {
    super::super::firewall::parse_target(text).unwrap()
}

fn block(ip: &str) -> Block {
    Block {
        target: target(ip),
        ttl: Duration::from_secs(600),
        reason: "brute force".into(),
    }
}

fn writes(server: &AzureServer) -> Vec<String> {
    server
        .requests()
        .iter()
        .filter(|r| r.is_write())
        .map(|r| r.line())
        .collect()
}

fn change(output: &Value, i: usize) -> &str {
    output["changes"][i]
        .as_str()
        .unwrap_or_else(|| panic!("no change {i}: {output}"))
}

#[tokio::test]
async fn a_dry_run_block_reads_the_nsg_reports_the_put_and_writes_nothing() {
    let server = AzureServer::start(SECRET).await;
    server.add_nsg_rule("someone-else", 100, "198.51.100.9/32");
    let client = client(&settings(&server));
    let output = network::nsg_block(&client, &block("203.0.113.7"), &cx(true))
        .await
        .unwrap();
    assert_eq!(output["dry_run"], true, "{output}");
    assert_eq!(output["already_blocked"], false, "{output}");
    assert_eq!(output["priority"], 101, "100 is taken: {output}");
    assert_eq!(output["expires_at"], Value::Null);
    let put = change(&output, 0);
    let url = format!(
        "PUT {}{}/securityRules/riposte-block-203-0-113-7-32?api-version=2024-05-01 ",
        server.url(),
        local::NSG_ID
    );
    assert!(put.starts_with(&url), "{put}");
    assert!(
        put.contains(r#""access":"Deny""#) && put.contains(r#""priority":101"#),
        "{put}"
    );
    assert!(writes(&server).is_empty(), "{:?}", writes(&server));
    assert!(server.requests_to("GET", local::NSG_ID).len() == 1);

    let unblock = Unblock {
        target: target("203.0.113.7/32"),
    };
    let output = network::nsg_unblock(&client, &unblock, &cx(true))
        .await
        .unwrap();
    assert_eq!(output["was_blocked"], false, "{output}");
    assert!(writes(&server).is_empty(), "{:?}", writes(&server));
}

#[tokio::test]
async fn dry_runs_of_every_backend_write_nothing() {
    let server = AzureServer::start(SECRET).await;
    let client = client(&settings(&server));
    let dry = cx(true);

    let output = network::ip_group_block(&client, &block("203.0.113.99"), &dry)
        .await
        .unwrap();
    assert!(
        change(&output, 0).contains(r#""203.0.113.99/32""#),
        "{output}"
    );
    assert!(
        change(&output, 0).contains(r#""198.51.100.0/28""#),
        "the whole list: {output}"
    );

    let disable = Disable {
        account: local::USER_UPN.into(),
        reason: "phished".into(),
    };
    let output = graph::disable(&client, &disable, &dry).await.unwrap();
    assert_eq!(output["previous"]["accountEnabled"], true, "{output}");
    assert_eq!(
        change(&output, 0),
        format!(
            r#"PATCH {}/graph/v1.0/users/alice@contoso.com {{"accountEnabled":false}}"#,
            server.url()
        )
    );

    let grant = Grant {
        source: "198.51.100.7".parse().unwrap(),
        port: 22,
        protocol: Protocol::Tcp,
        ttl: Duration::from_secs(900),
        vm: Some(local::VM_ID.into()),
        justification: "on-call".into(),
    };
    let output = jit::grant(&client, &grant, &dry).await.unwrap();
    assert!(
        change(&output, 0).contains("/initiate?api-version=2020-01-01"),
        "{output}"
    );
    assert!(
        output["expires_at"].as_str().unwrap().ends_with('Z'),
        "{output}"
    );

    let install = Install {
        scope: Scope::All,
        packages: Vec::new(),
        reboot: Reboot::Never,
        max_duration: Duration::from_secs(3600),
        vm: Some(local::VM_ID.into()),
        classifications: Vec::new(),
        kb_include: Vec::new(),
        kb_exclude: Vec::new(),
        exclude_kbs_requiring_reboot: false,
    };
    let output = compute::install(&client, &install, &dry).await.unwrap();
    assert!(
        change(&output, 0).contains(r#""rebootSetting":"Never""#),
        "{output}"
    );
    assert_eq!(
        output["would_install"].as_array().unwrap().len(),
        2,
        "{output}"
    );

    assert!(writes(&server).is_empty(), "{:?}", writes(&server));
    assert!(server.user_enabled());
    assert_eq!(
        server.ip_addresses(),
        ["198.51.100.0/28", "203.0.113.45/32"]
    );
}

#[tokio::test]
async fn tokens_are_cached_per_resource() {
    let server = AzureServer::start(SECRET).await;
    let client = client(&settings(&server));
    for _ in 0..3 {
        network::nsg_list(&client, &cx(false)).await.unwrap();
        let disable = Disable {
            account: local::USER_ID.into(),
            reason: String::new(),
        };
        graph::disable(&client, &disable, &cx(true)).await.unwrap();
    }
    let tokens = server.requests_to("POST", "/oauth2/v2.0/token");
    let scopes: Vec<String> = tokens.iter().map(|r| r.form()["scope"].clone()).collect();
    assert_eq!(
        scopes,
        [
            format!("{}/.default", server.url()),
            format!("{}/graph/.default", server.url())
        ]
    );
    let graph_calls = server.requests_to("GET", &format!("/users/{}", local::USER_ID));
    assert_eq!(graph_calls.len(), 3);
    assert!(
        graph_calls
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer graph-token-2"))
    );
    assert!(
        graph_calls
            .iter()
            .all(|r| r.header("x-ms-client-request-id").is_some_and(id::is_guid))
    );
}

#[tokio::test]
async fn managed_identity_asks_the_metadata_service() {
    let server = AzureServer::start(SECRET).await;
    let mut settings = settings(&server);
    settings.credential = Credential::ManagedIdentity;
    let client = client(&settings);
    let output = network::nsg_list(&client, &cx(false)).await.unwrap();
    assert_eq!(output["blocked"], serde_json::json!([]));
    let imds = server.requests_to("GET", "/imds/metadata/identity/oauth2/token");
    assert_eq!(imds.len(), 1, "{:?}", server.requests());
    assert_eq!(imds[0].header("metadata"), Some("true"));
    assert!(
        imds[0].query.contains("api-version=2018-02-01"),
        "{}",
        imds[0].query
    );
    assert!(server.requests_to("POST", "/token").is_empty());
}

#[tokio::test]
async fn a_wrong_secret_is_a_clear_permanent_failure_without_the_secret() {
    let server = AzureServer::start("the-real-one").await;
    let client = client(&settings(&server));
    let failure = network::nsg_list(&client, &cx(false)).await.unwrap_err();
    assert!(!failure.retryable, "{failure:?}");
    assert_eq!(
        failure.message,
        format!(
            "azure token request failed (client secret, tenant {}, client {}): invalid_client: \
             AADSTS7000215: Invalid client secret provided. (error codes 7000215)",
            local::TENANT,
            local::CLIENT_ID
        )
    );
    assert!(!failure.message.contains(SECRET));
}

#[tokio::test]
async fn a_revoke_of_an_open_jit_request_says_it_cannot_end_early() {
    let server = AzureServer::start(SECRET).await;
    let client = client(&settings(&server));
    let grant = Grant {
        source: "198.51.100.7".parse().unwrap(),
        port: 22,
        protocol: Protocol::Tcp,
        ttl: Duration::from_secs(3600),
        vm: Some(local::VM_ID.into()),
        justification: String::new(),
    };
    jit::grant(&client, &grant, &cx(false)).await.unwrap();
    let revoke = Revoke {
        source: grant.source,
        port: 22,
        protocol: Protocol::Tcp,
        vm: grant.vm.clone(),
    };
    let failure = jit::revoke(&client, &revoke, &cx(false)).await.unwrap_err();
    assert!(!failure.retryable, "{failure:?}");
    assert!(
        failure.message.starts_with("azure jit cannot be revoked early: access of 198.51.100.7 to port 22 of vm vm-web-01 ends at "),
        "{failure:?}"
    );
    let other = Revoke {
        port: 3389,
        ..revoke
    };
    let output = jit::revoke(&client, &other, &cx(false)).await.unwrap();
    assert_eq!(output["was_open"], false, "{output}");

    let soon = Grant {
        source: "198.51.100.8".parse().unwrap(),
        ttl: Duration::from_secs(60),
        ..grant
    };
    jit::grant(&client, &soon, &cx(false)).await.unwrap();
    let failure = jit::revoke(&client, &revoke_of(&soon), &cx(false))
        .await
        .unwrap_err();
    assert!(failure.retryable, "ends within two minutes: {failure:?}");
}

fn revoke_of(grant: &Grant) -> Revoke {
    Revoke {
        source: grant.source,
        port: grant.port,
        protocol: grant.protocol,
        vm: grant.vm.clone(),
    }
}

fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<crate::Config, crate::Error> {
    let argv = std::iter::once("riposte-worker").chain(args.iter().copied());
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    crate::Config::from_args(argv, &env)
}

#[test]
fn flags_and_environment_fill_the_settings() {
    let config = parse(
        &[
            "--firewall-backend",
            "azure-nsg",
            "--azure-nsg",
            local::NSG_ID,
            "--azure-client-id",
            local::CLIENT_ID,
        ],
        &[
            ("RIPOSTE_AZURE_TENANT_ID", "contoso.onmicrosoft.com"),
            ("AZURE_CLIENT_SECRET", SECRET),
            ("RIPOSTE_AZURE_NSG_PRIORITIES", "3000-3099"),
            ("RIPOSTE_AZURE_ARM_URL", "http://127.0.0.1:9/"),
        ],
    )
    .unwrap();
    let azure = &config.azure;
    assert_eq!(azure.tenant_id.as_deref(), Some("contoso.onmicrosoft.com"));
    assert_eq!(azure.credential, Credential::Secret(Secret::new(SECRET)));
    assert_eq!(azure.nsg_priorities, 3000..=3099);
    assert_eq!(azure.arm_url.as_str(), "http://127.0.0.1:9/");
    assert_eq!(azure.graph_url.as_str(), "https://graph.microsoft.com/");
    let debug = format!("{config:?}");
    assert!(!debug.contains(SECRET), "{debug}");
}

#[test]
fn azure_settings_are_checked_when_the_worker_starts() {
    let error = |args: &[&str], env: &[(&str, &str)]| parse(args, env).unwrap_err().to_string();
    let nsg = ["--firewall-backend", "azure-nsg"];
    assert_eq!(
        error(&nsg, &[]),
        "invalid configuration: the azure-nsg backend needs --azure-nsg"
    );
    let bad_nsg = error(&["--azure-nsg", local::VM_ID], &[]);
    assert!(
        bad_nsg.contains(
            "is not the ARM id of a network security group: the provider must be Microsoft.Network"
        ),
        "{bad_nsg}"
    );
    let bad_env = error(&[], &[("RIPOSTE_AZURE_JIT_POLICY", local::NSG_ID)]);
    assert!(
        bad_env.starts_with("invalid RIPOSTE_AZURE_JIT_POLICY:"),
        "{bad_env}"
    );
    let no_credential = error(&["--identity-backend", "graph"], &[]);
    assert!(
        no_credential.contains("the graph backend needs a credential"),
        "{no_credential}"
    );
    let no_tenant = error(
        &["--identity-backend", "graph"],
        &[("AZURE_CLIENT_SECRET", "x")],
    );
    assert!(no_tenant.contains("needs --azure-tenant-id"), "{no_tenant}");
    let both = error(
        &["--azure-managed-identity"],
        &[("AZURE_CLIENT_SECRET", "x")],
    );
    assert!(both.contains("give one azure credential"), "{both}");
    let priorities = error(&["--azure-nsg-priorities", "50-99"], &[]);
    assert!(priorities.contains("not a priority range"), "{priorities}");
    let secret_flag = error(&["--azure-client-secret", "x"], &[]);
    assert!(
        secret_flag.contains("unexpected argument"),
        "no secret flag: {secret_flag}"
    );
    let managed = parse(
        &["--patch-backend", "azure"],
        &[("RIPOSTE_AZURE_MANAGED_IDENTITY", "true")],
    )
    .unwrap();
    assert_eq!(managed.azure.credential, Credential::ManagedIdentity);
}

#[test]
fn the_secret_file_is_read_when_the_client_is_built() {
    let dir = tempfile_dir();
    let path = dir.join("secret");
    std::fs::write(&path, format!("{SECRET}\n")).unwrap();
    let settings = Settings {
        tenant_id: Some(local::TENANT.into()),
        client_id: Some(local::CLIENT_ID.into()),
        credential: Credential::SecretFile(path.clone()),
        ..Settings::default()
    };
    let source = token::Source::from_settings(&settings).unwrap();
    assert!(
        matches!(&source, token::Source::Application { proof: token::Proof::Secret(secret), .. } if secret.expose() == SECRET)
    );
    assert!(!format!("{source:?}").contains(SECRET));
    let missing = Settings {
        credential: Credential::SecretFile(dir.join("absent")),
        ..settings
    };
    let error = token::Source::from_settings(&missing)
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("cannot read the azure client secret file"),
        "{error}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("riposte-azure-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn enable_restores_what_the_disable_recorded() {
    use super::super::identity::Enable;
    let server = AzureServer::start(SECRET).await;
    let client = client(&settings(&server));
    server.set_user_enabled(false);
    let was_disabled = Enable {
        account: local::USER_ID.into(),
        previous: Some(serde_json::json!({"accountEnabled": false, "id": local::USER_ID})),
    };
    let output = graph::enable(&client, &was_disabled, &cx(false))
        .await
        .unwrap();
    assert_eq!(output["left_disabled"], true, "{output}");
    assert!(writes(&server).is_empty(), "{:?}", writes(&server));
    assert!(!server.user_enabled());

    let was_enabled = Enable {
        account: local::USER_UPN.into(),
        previous: Some(serde_json::json!({"accountEnabled": true, "id": local::USER_ID})),
    };
    let output = graph::enable(&client, &was_enabled, &cx(false))
        .await
        .unwrap();
    assert_eq!(output["already_enabled"], false, "{output}");
    assert!(server.user_enabled());
    let patch = server.requests_to("PATCH", &format!("/users/{}", local::USER_UPN));
    assert_eq!(patch.len(), 1);
    assert_eq!(patch[0].json(), serde_json::json!({"accountEnabled": true}));

    let someone_else = Enable {
        account: local::USER_UPN.into(),
        previous: Some(
            serde_json::json!({"accountEnabled": true, "id": "33334444-dddd-5555-eeee-6666ffff7777"}),
        ),
    };
    let failure = graph::enable(&client, &someone_else, &cx(false))
        .await
        .unwrap_err();
    assert!(
        failure.message.contains("refusing to enable it"),
        "{failure:?}"
    );
    let bad = Enable {
        account: local::USER_UPN.into(),
        previous: Some(serde_json::json!("yes")),
    };
    let failure = graph::enable(&client, &bad, &cx(false)).await.unwrap_err();
    assert!(
        failure.message.starts_with("invalid input: `previous`"),
        "{failure:?}"
    );
}
