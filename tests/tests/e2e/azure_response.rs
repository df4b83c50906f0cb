//! The Azure backends end to end: a real orchestrator and a real worker whose Azure endpoints
//! all point at the local Azure server. Each test runs a small playbook and checks what an
//! operator sees (run status, step output, error text) and what Azure received (bodies, order,
//! timing), and that the client secret appears in no output and no line of the worker's log.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use riposte_proto::v1::{Run, RunStatus};
use riposte_tests::api::{self, Operator};
use riposte_tests::azure::{self as local, AzureServer, Fault, InstallOutcome, Request};
use riposte_tests::{Orchestrator, Worker};
use serde_json::{Value, json};

/// The client secret the local Azure expects.
const SECRET: &str = "e2e-secret-7Kq~f9Zx";
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// What one test needs running.
struct Setup {
    _orchestrator: Orchestrator,
    worker: Worker,
    client: Operator,
    azure: AzureServer,
}

async fn setup(backend: &[&str]) -> Setup {
    let azure = AzureServer::start(SECRET).await;
    // The connectors are under test, not the platform's approval rules: the playbooks here
    // call grants, unblocks and identity changes bare.
    let orchestrator = Orchestrator::builder()
        .lease_timeout("5s")
        .policy("approvals: []")
        .start();
    let worker = Worker::builder(&orchestrator.url())
        .args(backend)
        .azure(&azure, SECRET)
        .start();
    let mut client = orchestrator.client();
    worker.id(&mut client).await;
    Setup {
        _orchestrator: orchestrator,
        worker,
        client,
        azure,
    }
}

impl Setup {
    /// Applies `playbook`, runs it with `params` and waits for the end.
    async fn run(&mut self, playbook: &str, params: Value) -> Run {
        let applied = api::apply_playbook(&mut self.client, playbook).await;
        let name = playbook
            .lines()
            .find_map(|l| l.strip_prefix("name: "))
            .expect("a playbook name");
        let _ = applied;
        let run = api::start_run(&mut self.client, name, params).await;
        api::wait_finished(&mut self.client, &run.run_id, RUN_TIMEOUT).await
    }

    /// The parsed output of step `id`.
    fn output(run: &Run, id: &str) -> Value {
        let step = api::step(run, id);
        assert!(
            !step.output_json.is_empty(),
            "step {id} has no output: {step:?}"
        );
        api::json(&step.output_json)
    }

    /// The secret is in no step output or error and no line of the worker's log; the log is
    /// read whole and does show the Azure calls.
    fn assert_secret_nowhere(&self, run: &Run) {
        for step in &run.steps {
            assert!(!step.output_json.contains(SECRET), "output of {}", step.id);
            assert!(!step.error.contains(SECRET), "error of {}", step.id);
        }
        assert!(!run.error.contains(SECRET));
        let log = self.worker.log_tail();
        assert!(
            !log.contains(SECRET),
            "the secret is in the worker's log:\n{log}"
        );
        assert!(
            log.contains("azure call"),
            "the log shows the calls:\n{log}"
        );
        for header in log.lines().filter(|l| l.starts_with("----- ")) {
            let (shown, total) = shown_of_total(header);
            assert_eq!(shown, total, "the whole log was read: {header}");
        }
    }
}

/// `N` and `M` of a log header `... (last N of M lines) -----`.
fn shown_of_total(header: &str) -> (usize, usize) {
    let inner = header
        .rsplit_once("(last ")
        .and_then(|(_, rest)| rest.split_once(" lines)"))
        .map(|(inner, _)| inner)
        .unwrap_or_else(|| panic!("unexpected log header {header}"));
    let (shown, total) = inner.split_once(" of ").expect("N of M");
    (shown.parse().unwrap(), total.parse().unwrap())
}

fn lines(requests: &[Request]) -> Vec<String> {
    requests.iter().map(Request::line).collect()
}

fn gap(a: &Request, b: &Request) -> Duration {
    b.at.duration_since(a.at)
}

fn assert_status(run: &Run, status: RunStatus) {
    assert_eq!(run.status(), status, "{}", api::describe(run));
}

const BLOCK_UNBLOCK: &str = r#"
name: azure-block
version: 1
params:
  ip: { type: ip, required: true }
steps:
  - id: block
    action: firewall.block_ip
    with: { ip: "{{ params.ip }}", ttl: 1h, reason: "ssh brute force from {{ params.ip }}" }
  - id: again
    needs: [block]
    action: firewall.block_ip
    with: { ip: "{{ params.ip }}", ttl: 1h }
  - id: unblock
    needs: [again]
    action: firewall.unblock_ip
    with: { ip: "{{ params.ip }}" }
  - id: unblock_again
    needs: [unblock]
    action: firewall.unblock_ip
    with: { ip: "{{ params.ip }}" }
"#;

#[tokio::test]
async fn an_nsg_block_puts_a_deny_rule_polls_it_and_the_unblock_deletes_it() {
    let mut s = setup(&["--firewall-backend", "azure-nsg"]).await;
    s.azure.add_nsg_rule("someone-else", 100, "198.51.100.9/32");
    let run = s.run(BLOCK_UNBLOCK, json!({"ip": "203.0.113.7"})).await;
    assert_status(&run, RunStatus::Succeeded);

    let block = Setup::output(&run, "block");
    assert_eq!(block["backend"], "azure-nsg");
    assert_eq!(block["rule"], "riposte-block-203-0-113-7-32");
    assert_eq!(
        block["priority"], 101,
        "100 belongs to another rule: {block}"
    );
    assert_eq!(block["already_blocked"], false);
    assert_eq!(
        block["expires_at"],
        Value::Null,
        "NSG rules have no TTL: {block}"
    );
    assert!(
        block["expiry"].as_str().unwrap().contains("grant revoke"),
        "{block}"
    );
    assert_eq!(block["dry_run"], false);
    assert_eq!(Setup::output(&run, "again")["already_blocked"], true);
    assert_eq!(Setup::output(&run, "unblock")["was_blocked"], true);
    assert_eq!(Setup::output(&run, "unblock_again")["was_blocked"], false);
    assert!(s.azure.nsg_rules().keys().all(|k| k == "someone-else"));

    let rule = format!(
        "{}/securityRules/riposte-block-203-0-113-7-32",
        local::NSG_ID
    );
    let requests: Vec<Request> = s
        .azure
        .requests()
        .into_iter()
        .filter(|r| !r.path.ends_with("/token"))
        .collect();
    let operation = "/providers/Microsoft.Network/locations/westeurope/operations/";
    let seen: Vec<String> = lines(&requests)
        .into_iter()
        .map(|l| {
            if l.contains(operation) {
                "GET operation".to_owned()
            } else if l.contains("/operationResults/") {
                "GET operation result".to_owned()
            } else {
                l
            }
        })
        .collect();
    assert_eq!(
        seen,
        [
            format!("GET {}", local::NSG_ID),
            format!("PUT {rule}"),
            "GET operation".into(),
            "GET operation".into(),
            format!("GET {rule}"),
            format!("GET {}", local::NSG_ID),
            format!("DELETE {rule}"),
            "GET operation".into(),
            "GET operation".into(),
            "GET operation result".into(),
            format!("DELETE {rule}"),
        ]
    );
    let put = &requests[1];
    assert_eq!(put.query, "api-version=2024-05-01");
    assert_eq!(put.header("content-type"), Some("application/json"));
    let properties = &put.json()["properties"];
    assert_eq!(properties["access"], "Deny");
    assert_eq!(properties["direction"], "Inbound");
    assert_eq!(properties["sourceAddressPrefix"], "203.0.113.7/32");
    assert_eq!(properties["priority"], 101);
    let description = properties["description"].as_str().unwrap();
    assert!(
        description.ends_with("ssh brute force from 203.0.113.7"),
        "{description}"
    );
    assert!(description.len() <= 140);
    assert!(
        gap(put, &requests[2]) >= Duration::from_millis(200)
            && gap(&requests[2], &requests[3]) >= Duration::from_millis(200),
        "polls wait Retry-After 0.2 s"
    );
    let tokens = s.azure.requests_to("POST", "/oauth2/v2.0/token");
    assert_eq!(
        tokens.len(),
        1,
        "one ARM token for every call: {:?}",
        lines(&tokens)
    );
    let form = tokens[0].form();
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["client_id"], local::CLIENT_ID);
    assert_eq!(form["scope"], format!("{}/.default", s.azure.url()));
    s.assert_secret_nowhere(&run);
}

const IP_GROUP: &str = r#"
name: azure-ip-group
version: 1
steps:
  - id: block
    action: firewall.block_ip
    with: { ip: 203.0.113.99, ttl: 1h }
  - id: again
    needs: [block]
    action: firewall.block_ip
    with: { ip: 203.0.113.99/32, ttl: 1h }
  - id: listed
    needs: [again]
    action: firewall.list_blocked
  - id: unblock
    needs: [listed]
    action: firewall.unblock_ip
    with: { ip: 203.0.113.99 }
"#;

#[tokio::test]
async fn an_ip_group_block_puts_the_whole_list_and_is_idempotent() {
    let mut s = setup(&["--firewall-backend", "azure-ip-group"]).await;
    let run = s.run(IP_GROUP, json!({})).await;
    assert_status(&run, RunStatus::Succeeded);
    assert_eq!(Setup::output(&run, "block")["already_blocked"], false);
    assert_eq!(Setup::output(&run, "again")["already_blocked"], true);
    let listed = Setup::output(&run, "listed");
    let ips: Vec<&str> = listed["blocked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["ip"].as_str().unwrap())
        .collect();
    assert_eq!(
        ips,
        ["198.51.100.0/28", "203.0.113.45/32", "203.0.113.99/32"]
    );
    assert_eq!(Setup::output(&run, "unblock")["was_blocked"], true);
    assert_eq!(
        s.azure.ip_addresses(),
        ["198.51.100.0/28", "203.0.113.45/32"]
    );

    let puts = s.azure.requests_to("PUT", local::IP_GROUP_ID);
    assert_eq!(puts.len(), 2, "the repeat wrote nothing");
    let added = puts[0].json();
    assert_eq!(added["location"], "westeurope");
    assert_eq!(added["tags"], json!({"managedBy": "soar"}));
    assert_eq!(
        added["properties"]["ipAddresses"],
        json!(["198.51.100.0/28", "203.0.113.45/32", "203.0.113.99/32"])
    );
    assert_eq!(
        puts[1].json()["properties"]["ipAddresses"],
        json!(["198.51.100.0/28", "203.0.113.45/32"])
    );
    let polls = s
        .azure
        .requests_to("GET", "")
        .into_iter()
        .filter(|r| r.path.contains("/operations/"));
    assert_eq!(
        polls.count(),
        4,
        "each PUT polled InProgress then Succeeded"
    );
    s.assert_secret_nowhere(&run);
}

#[tokio::test]
async fn an_arm_error_envelope_is_a_clear_step_error_and_not_retried() {
    let mut s = setup(&["--firewall-backend", "azure-nsg"]).await;
    let envelope: Value = serde_json::from_str(include_str!(
        "../../../test-support/fixtures/azure/arm-error-envelope.json"
    ))
    .unwrap();
    s.azure.fault(Fault::arm_error(
        "PUT",
        "/securityRules/riposte-block-203-0-113-7-32",
        400,
        envelope,
    ));
    let run = s.run(BLOCK_UNBLOCK, json!({"ip": "203.0.113.7"})).await;
    assert_status(&run, RunStatus::Failed);
    let error = &api::step(&run, "block").error;
    assert_eq!(
        error,
        "azure put nsg security rule failed: BadArgument: The provided database 'foo' has an \
         invalid username.; details: PolicyViolation: Allowed locations"
    );
    assert_eq!(
        s.azure
            .requests_to("PUT", "/securityRules/riposte-block-203-0-113-7-32")
            .len(),
        1
    );
    s.assert_secret_nowhere(&run);
}

const DISABLE: &str = r#"
name: azure-disable
version: 1
params:
  account: { type: string, required: true }
steps:
  - id: disable
    action: identity.disable_account
    with: { account: "{{ params.account }}", reason: phished }
  - id: revoke
    needs: [disable]
    action: identity.revoke_sessions
    with: { account: "{{ params.account }}" }
"#;

#[tokio::test]
async fn a_graph_disable_then_revoke_records_previous_and_uses_one_token() {
    let mut s = setup(&["--identity-backend", "graph"]).await;
    let run = s.run(DISABLE, json!({"account": local::USER_UPN})).await;
    assert_status(&run, RunStatus::Succeeded);
    let disable = Setup::output(&run, "disable");
    assert_eq!(disable["already_disabled"], false);
    assert_eq!(
        disable["previous"],
        json!({"accountEnabled": true, "id": local::USER_ID, "userPrincipalName": local::USER_UPN})
    );
    assert_eq!(Setup::output(&run, "revoke")["sessions_revoked"], true);
    assert!(!s.azure.user_enabled());

    let user = format!("/graph/v1.0/users/{}", local::USER_UPN);
    let graph: Vec<Request> = s
        .azure
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/graph/"))
        .collect();
    assert_eq!(
        lines(&graph),
        [
            format!("GET {user}"),
            format!("PATCH {user}"),
            format!("GET {user}"),
            format!("POST {user}/revokeSignInSessions"),
        ]
    );
    assert_eq!(
        graph[0].query,
        "$select=id,userPrincipalName,accountEnabled"
    );
    assert_eq!(graph[1].json(), json!({"accountEnabled": false}));
    assert!(graph.iter().all(|r| {
        r.header("authorization")
            .is_some_and(|a| a.starts_with("Bearer graph-token-"))
    }));
    let tokens = s.azure.requests_to("POST", "/oauth2/v2.0/token");
    assert_eq!(tokens.len(), 1, "one Graph token for four calls");
    assert_eq!(
        tokens[0].form()["scope"],
        format!("{}/graph/.default", s.azure.url())
    );
    s.assert_secret_nowhere(&run);
}

#[tokio::test]
async fn a_throttled_call_waits_its_retry_after_then_succeeds() {
    let mut s = setup(&["--identity-backend", "graph"]).await;
    s.azure.fault(Fault::throttle(
        "PATCH",
        &format!("/users/{}", local::USER_ID),
        "0.5",
    ));
    let run = s.run(DISABLE, json!({"account": local::USER_ID})).await;
    assert_status(&run, RunStatus::Succeeded);
    let patches = s
        .azure
        .requests_to("PATCH", &format!("/users/{}", local::USER_ID));
    assert_eq!(patches.len(), 2, "one 429, then the retry");
    let waited = gap(&patches[0], &patches[1]);
    assert!(
        waited >= Duration::from_millis(500),
        "waited only {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    assert_ne!(
        patches[0].header("x-ms-client-request-id"),
        patches[1].header("x-ms-client-request-id"),
        "each attempt has its own request id"
    );
    assert!(!s.azure.user_enabled());
    s.assert_secret_nowhere(&run);
}

const JIT: &str = r#"
name: azure-jit
version: 1
params:
  vm: { type: string, required: true }
steps:
  - id: grant
    action: access.grant_jit
    with: { source_ip: 198.51.100.7, port: 22, ttl: 30m, vm: "{{ params.vm }}", justification: on-call }
"#;

#[tokio::test]
async fn a_jit_grant_initiates_with_an_absolute_end_time() {
    let mut s = setup(&["--access-backend", "azure-jit"]).await;
    let before = SystemTime::now();
    let run = s.run(JIT, json!({"vm": local::VM_ID})).await;
    assert_status(&run, RunStatus::Succeeded);
    let initiate = s
        .azure
        .requests_to("POST", &format!("{}/initiate", local::JIT_POLICY_ID));
    assert_eq!(initiate.len(), 1);
    assert_eq!(initiate[0].query, "api-version=2020-01-01");
    let body = initiate[0].json();
    let port = &body["virtualMachines"][0]["ports"][0];
    assert_eq!(body["virtualMachines"][0]["id"], local::VM_ID);
    assert_eq!(port["number"], 22);
    assert_eq!(port["allowedSourceAddressPrefix"], "198.51.100.7");
    assert_eq!(body["justification"], "on-call");
    let end = port["endTimeUtc"].as_str().unwrap();
    let end_s = unix_seconds(end);
    let before_s = before.duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert!(
        end_s >= before_s + 1800 && end_s <= before_s + 1800 + 30,
        "endTimeUtc {end} is now + 30 minutes"
    );
    let grant = Setup::output(&run, "grant");
    assert_eq!(grant["expires_at"], end, "{grant}");
    assert_eq!(grant["status"], "Initiating");
    s.assert_secret_nowhere(&run);
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SSZ`.
fn unix_seconds(text: &str) -> u64 {
    assert!(
        text.len() == 20 && text.ends_with('Z'),
        "not RFC 3339 UTC: {text}"
    );
    let n = |r: std::ops::Range<usize>| text[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    (days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)) as u64
}

const INSTALL: &str = r#"
name: azure-patch
version: 1
params:
  vm: { type: string, required: true }
steps:
  - id: install
    action: patch.install
    with: { vm: "{{ params.vm }}", scope: security, reboot: if_required, max_duration: 1h }
"#;

#[tokio::test]
async fn install_patches_follows_the_operation_to_success() {
    let mut s = setup(&["--patch-backend", "azure"]).await;
    let started = Instant::now();
    let run = s.run(INSTALL, json!({"vm": local::VM_ID})).await;
    assert_status(&run, RunStatus::Succeeded);
    let install = Setup::output(&run, "install");
    assert_eq!(install["status"], "Succeeded");
    assert_eq!(install["counts"]["failed"], 0);
    let names: Vec<&str> = install["installed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["openssl", "libssl3", "curl"]);
    assert_eq!(install["reboot_required"], false);

    let post = s
        .azure
        .requests_to("POST", &format!("{}/installPatches", local::VM_ID));
    assert_eq!(post.len(), 1);
    assert_eq!(
        post[0].json(),
        json!({
            "maximumDuration": "PT1H",
            "rebootSetting": "IfRequired",
            "linuxParameters": {"classificationsToInclude": ["Critical", "Security"]},
        })
    );
    let polls: Vec<Request> = s
        .azure
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/Microsoft.Compute/locations/"))
        .collect();
    assert_eq!(
        polls.len(),
        2,
        "202 (InProgress), then 200: {:?}",
        lines(&polls)
    );
    assert!(
        polls
            .iter()
            .all(|p| p.query == "monitor=true&api-version=2024-07-01")
    );
    assert!(
        gap(&post[0], &polls[0]) >= Duration::from_secs(1),
        "Retry-After: 1"
    );
    assert!(
        gap(&polls[0], &polls[1]) >= Duration::from_secs(1),
        "Retry-After: 1"
    );
    assert!(started.elapsed() < RUN_TIMEOUT);
    s.assert_secret_nowhere(&run);
}

#[tokio::test]
async fn install_patches_that_fail_fail_the_step_with_the_counts() {
    let mut s = setup(&["--patch-backend", "azure"]).await;
    s.azure.set_install_outcome(InstallOutcome::Failed);
    let run = s.run(INSTALL, json!({"vm": local::VM_ID})).await;
    assert_status(&run, RunStatus::Failed);
    assert_eq!(
        api::step(&run, "install").error,
        "azure install patches on vm vm-web-01 ended Failed: 2 installed, 1 failed, 1 pending, \
         1 excluded, maintenance window exceeded; error PatchInstallationFailed: 1 patch failed \
         to install: curl"
    );
    s.assert_secret_nowhere(&run);
}

#[tokio::test]
async fn a_malformed_vm_id_fails_the_step_before_any_request() {
    let mut s = setup(&["--patch-backend", "azure"]).await;
    let wrong = local::VM_ID.replace(
        "Microsoft.Compute/virtualMachines",
        "Microsoft.Compute/disks",
    );
    let run = s.run(INSTALL, json!({"vm": wrong})).await;
    assert_status(&run, RunStatus::Failed);
    let error = &api::step(&run, "install").error;
    assert!(
        error.starts_with(&format!(
            "invalid input: `vm`: {wrong:?} is not the ARM id of a virtual machine: segment 7 must be virtualMachines, not \"disks\""
        )),
        "{error}"
    );
    assert!(
        s.azure.requests().is_empty(),
        "no request at all: {:?}",
        lines(&s.azure.requests())
    );
}

/// The built-in `ip-block` takes a CIDR prefix (IPv4 or IPv6) on each Azure firewall backend:
/// the prefix is the deny rule's source, or the IP Group's entry, and the undo a cancel runs
/// takes it out again.
#[tokio::test]
async fn the_built_in_ip_block_blocks_a_cidr_prefix_on_each_azure_backend() {
    for (backend, ip) in [
        ("azure-nsg", "203.0.113.0/24"),
        ("azure-ip-group", "2001:db8:77:1::/64"),
    ] {
        let mut s = setup(&["--firewall-backend", backend]).await;
        let params = json!({"ip": ip, "duration": "1h"});
        let run = api::start_run(&mut s.client, "ip-block", params).await;
        let blocked = riposte_tests::response::wait_step(
            &mut s.client,
            &run.run_id,
            "block",
            riposte_proto::v1::StepStatus::Succeeded,
            RUN_TIMEOUT,
        )
        .await;
        assert_eq!(Setup::output(&blocked, "block")["ip"], ip, "{backend}");
        let sources: Vec<String> = match backend {
            "azure-nsg" => s
                .azure
                .nsg_rules()
                .values()
                .map(|r| {
                    r["properties"]["sourceAddressPrefix"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                })
                .collect(),
            _ => s.azure.ip_addresses(),
        };
        assert!(sources.iter().any(|s| s == ip), "{backend}: {sources:?}");

        let cancel = riposte_proto::v1::CancelRunRequest {
            run_id: run.run_id.clone(),
            reason: "test over".into(),
        };
        s.client.cancel_run(cancel).await.expect("cancel");
        let ended = api::wait_finished(&mut s.client, &run.run_id, RUN_TIMEOUT).await;
        assert_status(&ended, RunStatus::Cancelled);
        let left: Vec<String> = match backend {
            "azure-nsg" => s.azure.nsg_rules().keys().cloned().collect(),
            _ => s.azure.ip_addresses(),
        };
        assert!(
            !left.iter().any(|l| l.contains("203-0-113-0") || l == ip),
            "{backend}: {left:?}"
        );
    }
}

/// The built-in `patch-deployment` patches an Azure VM named by its ARM id, on a worker with
/// the azure patch backend and no `host` label: assess, install (installPatches, followed to
/// its end) and verify, with the health gate after the wave.
#[tokio::test]
async fn the_built_in_patch_deployment_patches_an_azure_vm_named_by_its_arm_id() {
    let health = riposte_tests::health::serve().await;
    let allow = health.to_string();
    let mut s = setup(&["--patch-backend", "azure", "--http-allow-hosts", &allow]).await;
    let params = json!({"hosts": [local::VM_ID], "health_url": format!("http://{health}/health")});
    let run = api::start_run(&mut s.client, "patch-deployment", params).await;
    let run = api::wait_finished(&mut s.client, &run.run_id, RUN_TIMEOUT).await;
    assert_status(&run, RunStatus::Succeeded);
    let install = Setup::output(&run, "install");
    assert_eq!(install["succeeded"], json!([0]), "{install}");
    let posts = s
        .azure
        .requests_to("POST", &format!("{}/installPatches", local::VM_ID));
    assert_eq!(posts.len(), 1);
    let assessed = s
        .azure
        .requests_to("POST", &format!("{}/assessPatches", local::VM_ID));
    assert_eq!(assessed.len(), 2, "assess, then verify");
    s.assert_secret_nowhere(&run);
}

/// A fleet of a Windows and a Linux VM, one rollout with KB numbers: the dry run plans what
/// the Windows VM's `windowsParameters` select and sends no install; the real run sends
/// `windowsParameters` (the scope's classifications, the KBs included and excluded, the
/// reboot setting) to the Windows VM and `linuxParameters` to the Linux VM, which lists the
/// KB inputs as ignored, and verify passes because the Windows VM's next assessment no longer
/// lists what was installed.
#[tokio::test]
async fn the_built_in_patch_deployment_patches_windows_vms_through_windows_parameters() {
    let health = riposte_tests::health::serve().await;
    let allow = health.to_string();
    let mut s = setup(&["--patch-backend", "azure", "--http-allow-hosts", &allow]).await;
    let params = json!({
        "hosts": [local::WINDOWS_VM_ID, local::VM_ID],
        "health_url": format!("http://{health}/health"),
        "reboot": "if_required",
        "kb_include": ["KB890830", "2267602"],
        "kb_exclude": ["KB2267602"],
    });
    let install_posts = |s: &Setup| {
        s.azure
            .requests_to("POST", &format!("{}/installPatches", local::WINDOWS_VM_ID))
    };

    let request = riposte_proto::v1::StartRunRequest {
        playbook: "patch-deployment".into(),
        params_json: params.to_string(),
        dry_run: true,
        ..Default::default()
    };
    let planned = api::start_run_with(&mut s.client, request)
        .await
        .run
        .unwrap();
    let planned = api::wait_finished(&mut s.client, &planned.run_id, RUN_TIMEOUT).await;
    assert_status(&planned, RunStatus::Succeeded);
    let windows = &Setup::output(&planned, "install")["outputs"][0];
    assert_eq!(windows["os"], "windows", "{windows}");
    let kbs = |list: &Value, key: &str| -> Vec<String> {
        list.as_array()
            .unwrap_or_else(|| panic!("a list: {list}"))
            .iter()
            .map(|p| p[key].as_str().unwrap_or("").to_owned())
            .collect()
    };
    assert_eq!(
        kbs(&windows["would_install"], "kb_id"),
        ["890830", local::WINDOWS_SECURITY_KB],
        "the security update and the included rollup, not the excluded definition update: {windows}"
    );
    assert!(install_posts(&s).is_empty(), "a dry run installs nothing");

    let run = api::start_run(&mut s.client, "patch-deployment", params).await;
    let run = api::wait_finished(&mut s.client, &run.run_id, RUN_TIMEOUT).await;
    assert_status(&run, RunStatus::Succeeded);
    let posts = install_posts(&s);
    assert_eq!(posts.len(), 1);
    let body = posts[0].json();
    assert_eq!(
        body,
        json!({
            "maximumDuration": "PT1H",
            "rebootSetting": "IfRequired",
            "windowsParameters": {
                "classificationsToInclude": ["Critical", "Security"],
                "kbNumbersToInclude": ["KB890830", "KB2267602"],
                "kbNumbersToExclude": ["KB2267602"],
                "excludeKbsRequiringReboot": false,
            },
        })
    );
    let install = Setup::output(&run, "install");
    let windows = &install["outputs"][0];
    assert_eq!(
        kbs(&windows["installed"], "kb_id"),
        ["890830", local::WINDOWS_SECURITY_KB],
        "{windows}"
    );
    assert_eq!(windows["counts"]["excluded"], 1, "{windows}");
    assert_eq!(windows["rebooted"], true, "{windows}");
    let linux = &install["outputs"][1];
    assert_eq!(linux["os"], "linux", "{linux}");
    assert_eq!(
        linux["ignored"],
        json!(["kb_include", "kb_exclude"]),
        "{linux}"
    );
    let linux_post = s
        .azure
        .requests_to("POST", &format!("{}/installPatches", local::VM_ID));
    assert_eq!(
        linux_post[0].json()["linuxParameters"],
        json!({"classificationsToInclude": ["Critical", "Security"]})
    );
    let verify = Setup::output(&run, "verify");
    assert_eq!(verify[0]["pending"], json!([]), "{verify}");
    s.assert_secret_nowhere(&run);
}

/// The dry run of each built-in on each Azure backend reads what it needs, plans, and changes
/// nothing: no PUT, DELETE or action POST reaches the local ARM and Graph servers (reads, the
/// token and a patch assessment only), and the run succeeds with `dry_run` outputs.
#[tokio::test]
async fn each_built_in_dry_runs_on_each_azure_backend_changing_nothing() {
    let health = riposte_tests::health::serve().await;
    let allow = health.to_string();
    let jit = json!({"source_ip": "198.51.100.20", "host": "web-1", "vm": local::VM_ID, "justification": "INC-1"});
    let patch = json!({"hosts": [local::VM_ID], "health_url": format!("http://{health}/health")});
    let cases: [(&[&str], &str, Value, &str); 5] = [
        (
            &["--firewall-backend", "azure-nsg"],
            "ip-block",
            json!({"ip": "203.0.113.0/24"}),
            "block",
        ),
        (
            &["--firewall-backend", "azure-ip-group"],
            "ip-block",
            json!({"ip": "2001:db8::/64"}),
            "block",
        ),
        (
            &["--access-backend", "azure-jit", "--labels", "host=web-1"],
            "jit-access-grant",
            jit,
            "grant",
        ),
        (
            &["--identity-backend", "graph"],
            "account-disable",
            json!({"account": local::USER_UPN}),
            "disable",
        ),
        (
            &["--patch-backend", "azure", "--http-allow-hosts", &allow],
            "patch-deployment",
            patch,
            "install",
        ),
    ];
    for (backend, playbook, params, step) in cases {
        let mut s = setup(backend).await;
        let request = riposte_proto::v1::StartRunRequest {
            playbook: playbook.into(),
            params_json: params.to_string(),
            dry_run: true,
            ..Default::default()
        };
        let run = api::start_run_with(&mut s.client, request)
            .await
            .run
            .unwrap();
        let run = api::wait_finished(&mut s.client, &run.run_id, RUN_TIMEOUT).await;
        assert_status(&run, RunStatus::Succeeded);
        let changed: Vec<String> = s
            .azure
            .requests()
            .into_iter()
            .filter(|r| r.method != "GET" && !r.path.ends_with("/token"))
            .filter(|r| !r.path.ends_with("/assessPatches"))
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert_eq!(changed, Vec::<String>::new(), "{playbook} on {backend:?}");
        let output = Setup::output(&run, step);
        let planned = match playbook {
            "patch-deployment" => &output["outputs"][0],
            _ => &output,
        };
        assert_eq!(planned["dry_run"], true, "{playbook}: {output}");
    }
}
