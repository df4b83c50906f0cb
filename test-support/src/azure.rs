//! A local Azure for the tests: one HTTP server on 127.0.0.1 (port 0) that answers the way
//! Microsoft documents its endpoints (bodies and headers taken from the fixtures), keeps the
//! state those answers describe, injects programmable faults (among them an endpoint that echoes
//! its request in its error answer, [`Fault::echo`]) and logs every request.
//!
//! Layout under the server's URL: `/login/{tenant}/oauth2/v2.0/token` (Entra ID client
//! credentials), `/imds/metadata/identity/oauth2/token` (managed identity), `/graph/v1.0/...`
//! (Microsoft Graph users) and ARM at the root: one NSG with its security rules, one IP group,
//! one JIT policy, one Microsoft Sentinel incident (GET, PUT with its `etag`: a stale one is a
//! 409 as Sentinel answers; comments by PUT), a Linux VM and a Windows VM (`GET` answers its `osType`) with `assessPatches` /
//! `installPatches`, each taking only its own OS's parameters; the Windows VM installs what
//! its `windowsParameters` select (classifications, KB numbers included and excluded, KBs that
//! may reboot left out). Writes to the NSG and the
//! IP group answer with `Azure-AsyncOperation` (InProgress once, then Succeeded); the patch
//! operations answer 202 with `Location` and `Retry-After` (202 once, then 200 with the
//! result). A rule DELETE also gives a `Location` that answers 204 once the operation is done. Tokens are `arm-token-N` and `graph-token-N`; ARM and Graph refuse the other's.
//!
//! The token endpoint takes a client secret, or a client assertion: a certificate's signed JWT
//! ([`AzureServer::trust_certificate`]) or a federated token of a trusted issuer
//! ([`AzureServer::federate`]), each checked as Entra documents (signature, audience,
//! lifetime; see `assertion`). The test certificate and its key are the fixtures
//! `client-certificate.pem` (and `client-certificate-wrong-key.pem`: the same certificate with
//! another key), made for these tests only.
//!
//! [`AzureServer::worker_args`] points a worker at it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

mod assertion;
mod feed;

pub use assertion::{FEDERATED_AUDIENCE, FEDERATED_ISSUER, FEDERATED_SUBJECT, FederatedIssuer};
pub use feed::WORKSPACE_ID;

/// The tenant the server issues tokens for.
pub const TENANT: &str = "aaaabbbb-0000-cccc-1111-dddd2222eeee";
/// The client id it expects.
pub const CLIENT_ID: &str = "00001111-aaaa-2222-bbbb-3333cccc4444";
/// The subscription of every resource.
pub const SUBSCRIPTION: &str = "aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e";
/// The managed NSG.
pub const NSG_ID: &str = "/subscriptions/aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e/resourceGroups/rg-web/providers/Microsoft.Network/networkSecurityGroups/nsg-web";
/// The managed IP group.
pub const IP_GROUP_ID: &str = "/subscriptions/aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e/resourceGroups/rg-net/providers/Microsoft.Network/ipGroups/ipg-soar-blocklist";
/// The JIT policy.
pub const JIT_POLICY_ID: &str = "/subscriptions/aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e/resourceGroups/rg-web/providers/Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies/default";
/// The VM (Linux, in the JIT policy with port 22, and patchable).
pub const VM_ID: &str = "/subscriptions/aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/vm-web-01";
/// The Microsoft Sentinel incident (comments, updates with etag concurrency).
pub const INCIDENT_ID: &str = "/subscriptions/aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e/resourceGroups/rg-soc/providers/Microsoft.OperationalInsights/workspaces/law-soc/providers/Microsoft.SecurityInsights/incidents/73e01a99-5cd7-4139-a149-9f2736ff2ab5";
/// A Windows VM, patchable.
pub const WINDOWS_VM_ID: &str = "/subscriptions/aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/vm-win-01";
/// The security update the Windows VM's assessment lists beside the fixture's two patches
/// (KB2267602, a definition update that never reboots, and KB890830, an update rollup that
/// can request one).
pub const WINDOWS_SECURITY_KB: &str = "5034441";
/// The one Graph user: object id.
pub const USER_ID: &str = "22223333-cccc-4444-dddd-5555eeee6666";
/// The one Graph user: user principal name.
pub const USER_UPN: &str = "alice@contoso.com";

/// `client_assertion_type` of a JWT client assertion (RFC 7523).
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// `Retry-After` of the network async operations (fractional seconds).
const NETWORK_RETRY_AFTER: &str = "0.2";
/// `Retry-After` of the compute operations (integer seconds, as documented).
const COMPUTE_RETRY_AFTER: &str = "1";

const FIXTURE_NSG_PUT: &str = include_str!("../fixtures/azure/arm-nsg-securityrule-put.http.json");
const FIXTURE_IPG_PUT: &str = include_str!("../fixtures/azure/arm-ipgroup-put.http.json");
const FIXTURE_JIT: &str = include_str!("../fixtures/azure/arm-jit-initiate.http.json");
const FIXTURE_IN_PROGRESS: &str =
    include_str!("../fixtures/azure/arm-network-asyncoperation-inprogress.json");
const FIXTURE_SUCCEEDED: &str =
    include_str!("../fixtures/azure/arm-network-asyncoperation-succeeded.json");
const FIXTURE_ASSESS: &str = include_str!("../fixtures/azure/arm-lro-assesspatches-result.json");
const FIXTURE_INSTALL: &str =
    include_str!("../fixtures/azure/arm-lro-installpatches-result-linux.json");
const FIXTURE_INSTALL_WINDOWS: &str =
    include_str!("../fixtures/azure/arm-lro-installpatches-result-windows-doc.json");
const FIXTURE_INSTALL_202: &str =
    include_str!("../fixtures/azure/arm-lro-installpatches-202.http.json");
const FIXTURE_TOKEN: &str =
    include_str!("../fixtures/azure/entra-token-client-credentials.http.json");
const FIXTURE_TOKEN_ERROR: &str = include_str!("../fixtures/azure/entra-token-error-400.json");
const FIXTURE_REVOKE: &str =
    include_str!("../fixtures/azure/graph-revoke-signin-sessions.http.json");
const FIXTURE_THROTTLED: &str = include_str!("../fixtures/azure/graph-error-429.http.json");

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("fixtures are JSON")
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `PUT`, ...
    pub method: String,
    /// The path, percent-decoded.
    pub path: String,
    /// The raw query, without `?`.
    pub query: String,
    /// Headers, names lowercase.
    pub headers: BTreeMap<String, String>,
    /// The body as text.
    pub body: String,
    /// When it arrived.
    pub at: Instant,
}

impl Request {
    /// The body parsed as JSON (`null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The body parsed as a form.
    pub fn form(&self) -> BTreeMap<String, String> {
        form_urlencoded::parse(self.body.as_bytes())
            .into_owned()
            .collect()
    }

    /// A header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// True for a write (PUT, PATCH, DELETE, or a POST other than a token request or an
    /// assessment).
    pub fn is_write(&self) -> bool {
        match self.method.as_str() {
            "PUT" | "PATCH" | "DELETE" => true,
            "POST" => !self.path.ends_with("/token") && !self.path.ends_with("/assessPatches"),
            _ => false,
        }
    }

    /// `METHOD path`.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// An answer the server gives instead of the normal one, `times` times, to requests with this
/// method whose path ends with `path_suffix`.
#[derive(Debug, Clone)]
pub struct Fault {
    /// The method to match.
    pub method: String,
    /// The end of the path to match.
    pub path_suffix: String,
    /// The status to answer.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: Value,
    /// How many requests get it.
    pub times: u32,
    /// The body is the request itself instead of `body` ([`Fault::echo`]).
    pub echo: bool,
}

impl Fault {
    /// A Graph-style 429 (the documented body) with `Retry-After: retry_after`, once.
    pub fn throttle(method: &str, path_suffix: &str, retry_after: &str) -> Fault {
        let response = &fixture(FIXTURE_THROTTLED)["response"];
        Fault {
            method: method.into(),
            path_suffix: path_suffix.into(),
            status: 429,
            headers: vec![("Retry-After".into(), retry_after.into())],
            body: response["body"].clone(),
            times: 1,
            echo: false,
        }
    }

    /// An ARM error envelope with `status`, always.
    pub fn arm_error(method: &str, path_suffix: &str, status: u16, body: Value) -> Fault {
        Fault {
            method: method.into(),
            path_suffix: path_suffix.into(),
            status,
            headers: Vec::new(),
            body,
            times: u32::MAX,
            echo: false,
        }
    }

    /// An upstream that echoes its request in its error answer, with `status`, always: the
    /// token endpoint answers its error shape with the request (method, path, query, every
    /// header and the form body) on one line as `error_description`; any other endpoint answers
    /// the request as plain text.
    pub fn echo(method: &str, path_suffix: &str, status: u16) -> Fault {
        Fault {
            echo: true,
            ..Fault::arm_error(method, path_suffix, status, Value::Null)
        }
    }
}

/// How the next `installPatches` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallOutcome {
    /// `Succeeded`, every patch installed.
    Succeeded,
    /// `Failed`, one patch failed, with an error.
    Failed,
}

/// A long-running operation in flight.
#[derive(Debug, Clone)]
struct Operation {
    /// Polls still answered "in progress".
    in_progress: u32,
    /// The final body (compute) or the status body (network).
    result: Value,
}

/// Everything the server knows.
#[derive(Debug)]
struct Azure {
    url: String,
    secret: String,
    requests: Vec<Request>,
    faults: Vec<Fault>,
    tokens_issued: u32,
    rules: BTreeMap<String, Value>,
    ip_addresses: Vec<Value>,
    jit_requests: Vec<Value>,
    user_enabled: bool,
    install_outcome: InstallOutcome,
    /// What client assertions are checked against.
    trust: assertion::Trust,
    /// The incident's properties and its etag's counter.
    incident: Value,
    incident_version: u32,
    /// Its comments: (comment id, message), in the order first written.
    incident_comments: Vec<(String, String)>,
    /// KB numbers installed on the Windows VM: its assessments no longer list them.
    windows_installed: Vec<String>,
    operations: BTreeMap<String, Operation>,
    next_operation: u32,
    /// The incidents and Graph alerts the pollers list.
    feed: feed::Feed,
}

type Shared = Arc<Mutex<Azure>>;

/// The running server; it stops when dropped.
pub struct AzureServer {
    addr: SocketAddr,
    state: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AzureServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AzureServer {
    /// Starts the server; token requests must carry `secret` as the client secret.
    pub async fn start(secret: &str) -> AzureServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("a local address");
        let ipg = fixture(FIXTURE_IPG_PUT);
        let state = Arc::new(Mutex::new(Azure {
            url: format!("http://{addr}"),
            secret: secret.into(),
            requests: Vec::new(),
            faults: Vec::new(),
            tokens_issued: 0,
            rules: BTreeMap::new(),
            ip_addresses: ipg["request"]["body"]["properties"]["ipAddresses"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
            jit_requests: Vec::new(),
            user_enabled: true,
            install_outcome: InstallOutcome::Succeeded,
            trust: assertion::Trust::default(),
            incident: json!({
                "title": "SSH brute force on vm-web-01",
                "description": "More than 20 failed SSH logins from one source IP in 10 minutes",
                "severity": "High",
                "status": "New",
                "classification": null,
                "owner": {"objectId": null, "email": null, "assignedTo": null, "userPrincipalName": null},
                "labels": [{"labelName": "ssh", "labelType": "System"}],
                "incidentNumber": 1042,
                "createdTimeUtc": "2026-01-15T10:00:00Z",
                "lastModifiedTimeUtc": "2026-01-15T10:00:00Z",
                "additionalData": {"alertsCount": 1, "commentsCount": 0},
            }),
            incident_version: 1,
            incident_comments: Vec::new(),
            windows_installed: Vec::new(),
            operations: BTreeMap::new(),
            next_operation: 1,
            feed: feed::Feed::default(),
        }));
        let router = Router::new().fallback(handle).with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        AzureServer { addr, state, task }
    }

    fn lock(&self) -> MutexGuard<'_, Azure> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Worker flags that point every Azure endpoint here and name its resources (the secret
    /// goes in `AZURE_CLIENT_SECRET`, never in a flag).
    pub fn worker_args(&self) -> Vec<String> {
        let url = self.url();
        [
            ("--azure-tenant-id", TENANT.to_owned()),
            ("--azure-client-id", CLIENT_ID.to_owned()),
            ("--azure-authority-url", format!("{url}/login")),
            ("--azure-arm-url", url.clone()),
            ("--azure-graph-url", format!("{url}/graph")),
            ("--azure-imds-url", format!("{url}/imds")),
            ("--azure-nsg", NSG_ID.to_owned()),
            ("--azure-nsg-priorities", "100-102".to_owned()),
            ("--azure-ip-group", IP_GROUP_ID.to_owned()),
            ("--azure-jit-policy", JIT_POLICY_ID.to_owned()),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_owned(), value])
        .collect()
    }

    /// The incident's properties now.
    pub fn incident(&self) -> Value {
        self.lock().incident.clone()
    }

    /// Stamps the main incident modified now (as any change does), so that a poll lists it.
    pub fn touch_incident(&self) {
        let mut azure = self.lock();
        let stamp = azure.feed.stamp();
        azure.incident["lastModifiedTimeUtc"] = json!(stamp);
    }

    /// Adds a Sentinel incident of [`WORKSPACE_ID`] about `ip`, modified now; its ARM id.
    pub fn add_incident(&self, title: &str, ip: &str) -> String {
        self.lock().feed.add_incident(title, ip)
    }

    /// Adds a Graph security alert about `ip`, modified now; its id.
    pub fn add_graph_alert(&self, title: &str, ip: &str) -> String {
        self.lock().feed.add_alert(title, ip)
    }

    /// Changes the status of an incident or Graph alert the feed added, stamping it now.
    pub fn update_feed_item(&self, id: &str, status: &str) {
        assert!(self.lock().feed.update(id, status), "no feed item {id}");
    }

    /// Every list and entities answer of the feed waits this long first.
    pub fn set_list_delay(&self, delay: std::time::Duration) {
        self.lock().feed.delay = delay;
    }

    /// The incident's comments: (comment id, message), in the order first written.
    pub fn incident_comments(&self) -> Vec<(String, String)> {
        self.lock().incident_comments.clone()
    }

    /// Accepts client assertions signed with the key of the certificate in `pem`.
    pub fn trust_certificate(&self, pem: &str) {
        let trusted = assertion::Trusted::from_pem(pem);
        self.lock().trust.certificates.push(trusted);
    }

    /// Trusts a new federated token issuer for [`FEDERATED_SUBJECT`]; mint its tokens with
    /// the answer.
    pub fn federate(&self) -> FederatedIssuer {
        let issuer = FederatedIssuer::new();
        self.lock().trust.federated = Some(issuer.public_key());
        issuer
    }

    /// Sets the token endpoint's clock `secs` ahead of this machine's (assertions made now look
    /// old to it).
    pub fn set_clock_ahead(&self, secs: i64) {
        self.lock().trust.clock_ahead = secs;
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    /// The requests so far whose path ends with `suffix`.
    pub fn requests_to(&self, method: &str, suffix: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.ends_with(suffix))
            .collect()
    }

    /// Adds a fault.
    pub fn fault(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Decides how the next installPatches ends.
    pub fn set_install_outcome(&self, outcome: InstallOutcome) {
        self.lock().install_outcome = outcome;
    }

    /// The NSG's security rules by name.
    pub fn nsg_rules(&self) -> BTreeMap<String, Value> {
        self.lock().rules.clone()
    }

    /// Adds a rule that someone else made (to take a priority).
    pub fn add_nsg_rule(&self, name: &str, priority: u64, source: &str) {
        let rule = rule_resource(
            name,
            json!({
                "protocol": "*", "sourcePortRange": "*", "destinationPortRange": "*",
                "sourceAddressPrefix": source, "destinationAddressPrefix": "*",
                "access": "Deny", "priority": priority, "direction": "Inbound",
                "provisioningState": "Succeeded",
            }),
        );
        self.lock().rules.insert(name.into(), rule);
    }

    /// The IP group's addresses.
    pub fn ip_addresses(&self) -> Vec<String> {
        let addresses = self.lock().ip_addresses.clone();
        addresses
            .iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect()
    }

    /// Whether the Graph user is enabled.
    pub fn user_enabled(&self) -> bool {
        self.lock().user_enabled
    }

    /// Enables or disables the Graph user.
    pub fn set_user_enabled(&self, enabled: bool) {
        self.lock().user_enabled = enabled;
    }

    /// Tokens issued so far.
    pub fn tokens_issued(&self) -> u32 {
        self.lock().tokens_issued
    }
}

/// A ready answer.
struct Answer {
    status: StatusCode,
    headers: Vec<(String, String)>,
    body: Option<Value>,
    /// A plain-text body, instead of `body`.
    text: Option<String>,
}

impl Answer {
    fn json(status: u16, body: Value) -> Answer {
        Answer {
            body: Some(body),
            ..Answer::empty(status)
        }
    }

    fn text(status: u16, text: String) -> Answer {
        Answer {
            text: Some(text),
            ..Answer::empty(status)
        }
    }

    fn empty(status: u16) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).expect("a valid status"),
            headers: Vec::new(),
            body: None,
            text: None,
        }
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Answer {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn into_response(self) -> Response {
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            headers.insert(
                HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
                HeaderValue::from_str(value).expect("a header value"),
            );
        }
        headers.insert("x-ms-request-id", HeaderValue::from_static("local-request"));
        match (self.body, self.text) {
            (Some(body), _) => {
                headers.insert("content-type", HeaderValue::from_static("application/json"));
                (self.status, headers, body.to_string()).into_response()
            }
            (None, Some(text)) => {
                headers.insert("content-type", HeaderValue::from_static("text/plain"));
                (self.status, headers, text).into_response()
            }
            (None, None) => (self.status, headers).into_response(),
        }
    }
}

fn arm_error(status: u16, code: &str, message: &str) -> Answer {
    Answer::json(status, json!({"error": {"code": code, "message": message}}))
}

async fn handle(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = percent_decode(uri.path());
    let request = Request {
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().unwrap_or("").to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        at: received_at(),
    };
    let (answer, delay) = {
        let mut azure = state.lock().unwrap_or_else(|e| e.into_inner());
        azure.requests.push(request.clone());
        let listing = request.path.ends_with("/incidents")
            || request.path.ends_with("/entities")
            || request.path.ends_with("/alerts_v2");
        let delay = listing.then_some(azure.feed.delay);
        (azure.answer(&request), delay)
    };
    if let Some(delay) = delay.filter(|d| !d.is_zero()) {
        tokio::time::sleep(delay).await;
    }
    answer.into_response()
}

impl Azure {
    fn answer(&mut self, r: &Request) -> Answer {
        if let Some(fault) = self.take_fault(r) {
            if fault.echo {
                return echo(r, fault.status);
            }
            let mut answer = Answer::json(fault.status, fault.body);
            for (name, value) in fault.headers {
                answer = answer.header(&name, value);
            }
            return answer;
        }
        if r.path.starts_with("/login/") {
            return self.token(r);
        }
        if r.path.starts_with("/imds/") {
            return self.imds_token(r);
        }
        if r.path == "/graph/v1.0/security/alerts_v2" && r.method == "GET" {
            if let Err(answer) = bearer(r, "graph-token-") {
                return answer;
            }
            return self.feed.list_alerts(r, &self.url);
        }
        if let Some(rest) = r.path.strip_prefix("/graph/v1.0/users/") {
            if let Err(answer) = bearer(r, "graph-token-") {
                return answer;
            }
            return self.graph(r, rest);
        }
        if let Err(answer) = bearer(r, "arm-token-") {
            return answer;
        }
        if query_param(&r.query, "api-version").is_none_or(|v| v.is_empty()) {
            return arm_error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            );
        }
        self.arm(r)
    }

    fn take_fault(&mut self, r: &Request) -> Option<Fault> {
        let fault = self
            .faults
            .iter_mut()
            .find(|f| f.times > 0 && f.method == r.method && r.path.ends_with(&f.path_suffix))?;
        fault.times -= 1;
        Some(fault.clone())
    }

    fn token(&mut self, r: &Request) -> Answer {
        if r.method != "POST" || r.path != format!("/login/{TENANT}/oauth2/v2.0/token") {
            return Answer::json(
                404,
                json!({"error": "invalid_tenant", "error_description": "AADSTS90002: Tenant not found."}),
            );
        }
        if !r
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
        {
            return Answer::json(
                400,
                json!({"error": "invalid_request", "error_description": "AADSTS900144: form body expected", "error_codes": [900144]}),
            );
        }
        let form = r.form();
        let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        if field("grant_type") != "client_credentials" {
            return Answer::json(
                400,
                json!({"error": "unsupported_grant_type", "error_description": "AADSTS70003: grant type not supported", "error_codes": [70003]}),
            );
        }
        if !form.contains_key("client_assertion_type")
            && (field("client_id") != CLIENT_ID || field("client_secret") != self.secret)
        {
            return Answer::json(
                401,
                json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided.", "error_codes": [7000215]}),
            );
        }
        if form.contains_key("client_assertion_type") {
            if field("client_assertion_type") != JWT_BEARER || form.contains_key("client_secret") {
                return Answer::json(
                    400,
                    json!({"error": "invalid_request", "error_description": "AADSTS50027: client_assertion_type must be jwt-bearer, without a client_secret."}),
                );
            }
            let audience = format!("{}{}", self.url, r.path);
            if let Err((error, description)) =
                self.trust
                    .check(field("client_assertion"), field("client_id"), &audience)
            {
                return Answer::json(
                    401,
                    json!({"error": error, "error_description": description}),
                );
            }
            if field("client_id") != CLIENT_ID {
                return Answer::json(
                    400,
                    json!({"error": "unauthorized_client", "error_description": "AADSTS700016: Application not found in the directory."}),
                );
            }
        }
        let kind = match field("scope") {
            s if s == format!("{}/.default", self.url) => "arm",
            s if s == format!("{}/graph/.default", self.url) => "graph",
            _ => return Answer::json(400, fixture(FIXTURE_TOKEN_ERROR)),
        };
        self.tokens_issued += 1;
        let mut body = fixture(FIXTURE_TOKEN)["response"]["body"].clone();
        body["access_token"] = json!(format!("{kind}-token-{}", self.tokens_issued));
        Answer::json(200, body)
    }

    fn imds_token(&mut self, r: &Request) -> Answer {
        if r.header("metadata") != Some("true") {
            return Answer::json(
                400,
                json!({"error": "invalid_request", "error_description": "Required metadata header not specified"}),
            );
        }
        if query_param(&r.query, "api-version").as_deref() != Some("2018-02-01") {
            return Answer::json(
                400,
                json!({"error": "invalid_request", "error_description": "Invalid api-version"}),
            );
        }
        let kind = match query_param(&r.query, "resource") {
            Some(s) if s == format!("{}/", self.url) => "arm",
            Some(s) if s == format!("{}/graph/", self.url) => "graph",
            _ => {
                return Answer::json(
                    400,
                    json!({"error": "invalid_resource", "error_description": "AADSTS500011: resource not found"}),
                );
            }
        };
        self.tokens_issued += 1;
        Answer::json(
            200,
            json!({
                "access_token": format!("{kind}-token-{}", self.tokens_issued),
                "expires_in": "86399",
                "expires_on": "1736990000",
                "resource": format!("{}/", self.url),
                "token_type": "Bearer",
            }),
        )
    }

    fn graph(&mut self, r: &Request, rest: &str) -> Answer {
        let (account, action) = match rest.split_once('/') {
            Some((account, action)) => (account, action),
            None => (rest, ""),
        };
        if account != USER_ID && !account.eq_ignore_ascii_case(USER_UPN) {
            let message = format!(
                "Resource '{account}' does not exist or one of its queried reference-property objects are not present."
            );
            return arm_error(404, "Request_ResourceNotFound", &message);
        }
        match (r.method.as_str(), action) {
            ("GET", "") => Answer::json(
                200,
                json!({
                    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users(id,userPrincipalName,accountEnabled)/$entity",
                    "id": USER_ID,
                    "userPrincipalName": USER_UPN,
                    "accountEnabled": self.user_enabled,
                }),
            ),
            ("PATCH", "") => {
                let enabled = r.json().get("accountEnabled").and_then(Value::as_bool);
                let is_json = r
                    .header("content-type")
                    .is_some_and(|c| c.starts_with("application/json"));
                match enabled {
                    Some(enabled) if is_json => {
                        self.user_enabled = enabled;
                        Answer::empty(204)
                    }
                    _ => arm_error(400, "Request_BadRequest", "Invalid property values"),
                }
            }
            ("POST", "revokeSignInSessions") => {
                Answer::json(200, fixture(FIXTURE_REVOKE)["response"]["body"].clone())
            }
            _ => arm_error(405, "Request_BadRequest", "Unsupported request"),
        }
    }

    fn arm(&mut self, r: &Request) -> Answer {
        let path = r.path.as_str();
        let incidents = format!("{WORKSPACE_ID}/providers/Microsoft.SecurityInsights/incidents");
        if r.method == "GET" && path == incidents {
            let main = self.incident_resource();
            return self.feed.list_incidents(r, main, &self.url);
        }
        if r.method == "POST"
            && let Some(id) = path.strip_suffix("/entities")
        {
            return match self.feed.entities(id) {
                Some(entities) => Answer::json(200, entities),
                None => arm_error(404, "NotFound", &format!("Incident '{id}' not found.")),
            };
        }
        let rules_prefix = format!("{NSG_ID}/securityRules/");
        if let Some(name) = path.strip_prefix(&rules_prefix) {
            return self.nsg_rule(r, name);
        }
        if path.contains("/providers/Microsoft.Network/locations/westeurope/operationResults/") {
            return self.network_result(path);
        }
        if path.contains("/providers/Microsoft.Network/locations/westeurope/operations/") {
            return self.network_operation(path);
        }
        if path.contains("/providers/Microsoft.Compute/locations/westeurope/operations/") {
            return self.compute_operation(path);
        }
        if path.len() >= INCIDENT_ID.len()
            && path[..INCIDENT_ID.len()].eq_ignore_ascii_case(INCIDENT_ID)
        {
            return self.sentinel(r, &path[INCIDENT_ID.len()..]);
        }
        match (r.method.as_str(), path) {
            ("GET", p) if p == NSG_ID => Answer::json(200, self.nsg()),
            ("GET", p) if p == IP_GROUP_ID => Answer::json(200, self.ip_group("Succeeded")),
            ("PUT", p) if p == IP_GROUP_ID => self.put_ip_group(r),
            ("GET", p) if p == JIT_POLICY_ID => Answer::json(200, self.jit_policy()),
            ("POST", p) if p == format!("{JIT_POLICY_ID}/initiate") => self.jit_initiate(r),
            ("POST", p) if p == format!("{VM_ID}/assessPatches") => {
                let result = fixture(FIXTURE_ASSESS);
                self.compute_start(result)
            }
            ("POST", p) if p == format!("{VM_ID}/installPatches") => self.install(r),
            ("GET", p) if p == VM_ID => Answer::json(200, vm_resource(VM_ID, "Linux")),
            ("GET", p) if p == WINDOWS_VM_ID => {
                Answer::json(200, vm_resource(WINDOWS_VM_ID, "Windows"))
            }
            ("POST", p) if p == format!("{WINDOWS_VM_ID}/assessPatches") => {
                let result = self.windows_assessment();
                self.compute_start(result)
            }
            ("POST", p) if p == format!("{WINDOWS_VM_ID}/installPatches") => {
                self.install_windows(r)
            }
            _ => arm_error(
                404,
                "ResourceNotFound",
                &format!("The resource '{path}' was not found."),
            ),
        }
    }

    fn nsg(&self) -> Value {
        json!({
            "name": "nsg-web",
            "id": NSG_ID,
            "type": "Microsoft.Network/networkSecurityGroups",
            "location": "westeurope",
            "properties": {
                "provisioningState": "Succeeded",
                "securityRules": self.rules.values().cloned().collect::<Vec<_>>(),
                "defaultSecurityRules": [],
            },
        })
    }

    fn nsg_rule(&mut self, r: &Request, name: &str) -> Answer {
        match r.method.as_str() {
            "GET" => match self.rules.get(name) {
                Some(rule) => Answer::json(200, rule.clone()),
                None => arm_error(404, "NotFound", &format!("Resource {name} not found.")),
            },
            "PUT" => self.put_rule(r, name),
            "DELETE" => {
                if self.rules.remove(name).is_none() {
                    return Answer::empty(204);
                }
                let status = self.network_start(json!({"status": "Succeeded"}), None);
                let result = status.replace("/operations/", "/operationResults/");
                Answer::empty(202)
                    .header("Azure-AsyncOperation", status)
                    .header("Location", result)
                    .header("Retry-After", NETWORK_RETRY_AFTER)
            }
            _ => arm_error(405, "MethodNotAllowed", "not allowed"),
        }
    }

    fn put_rule(&mut self, r: &Request, name: &str) -> Answer {
        let body = r.json();
        let p = &body["properties"];
        let required = ["protocol", "access", "priority", "direction"];
        if let Some(missing) = required.iter().find(|k| p.get(**k).is_none()) {
            return arm_error(
                400,
                "InvalidRequestFormat",
                &format!("Cannot parse the request: missing {missing}"),
            );
        }
        if p["description"]
            .as_str()
            .is_some_and(|d| d.chars().count() > 140)
        {
            return arm_error(
                400,
                "SecurityRuleInvalidDescription",
                "The description is longer than 140 characters.",
            );
        }
        let clash = self.rules.iter().find(|(other, rule)| {
            other.as_str() != name
                && rule["properties"]["priority"] == p["priority"]
                && rule["properties"]["direction"] == p["direction"]
        });
        if let Some((other, _)) = clash {
            let message = format!(
                "Security rule {name} conflicts with rule {other}. Rules cannot have the same Priority and Direction."
            );
            return arm_error(400, "SecurityRuleConflict", &message);
        }
        let created = !self.rules.contains_key(name);
        let mut properties = p.clone();
        properties["provisioningState"] = json!("Updating");
        let rule = rule_resource(name, properties);
        self.rules.insert(name.into(), rule.clone());
        let status = self.network_start(json!({"status": "Succeeded"}), Some(name.to_owned()));
        let template = &fixture(FIXTURE_NSG_PUT)["response"];
        let status_code = if created {
            template["status"].as_u64().unwrap_or(201) as u16
        } else {
            200
        };
        Answer::json(status_code, rule)
            .header("Azure-AsyncOperation", status)
            .header("Retry-After", NETWORK_RETRY_AFTER)
    }

    fn ip_group(&self, state: &str) -> Value {
        let mut group = fixture(FIXTURE_IPG_PUT)["response"]["body"].clone();
        group["properties"]["ipAddresses"] = Value::Array(self.ip_addresses.clone());
        group["properties"]["provisioningState"] = json!(state);
        group
    }

    fn put_ip_group(&mut self, r: &Request) -> Answer {
        let body = r.json();
        let Some(addresses) = body["properties"]["ipAddresses"].as_array() else {
            return Answer::json(
                400,
                json!({"code": "InvalidRequestFormat", "message": "properties.ipAddresses is required"}),
            );
        };
        if body["location"].as_str() != Some("westeurope") {
            return Answer::json(
                400,
                json!({"code": "LocationRequired", "message": "The location property is required for this definition."}),
            );
        }
        self.ip_addresses = addresses.clone();
        let status = self.network_start(json!({"status": "Succeeded"}), None);
        Answer::json(200, self.ip_group("Updating"))
            .header("Azure-AsyncOperation", status)
            .header("Retry-After", NETWORK_RETRY_AFTER)
    }

    /// Starts a network operation: the status answers InProgress once, then `status`; when it
    /// succeeds, the rule `rule` (if any) becomes Succeeded.
    fn network_start(&mut self, status: Value, rule: Option<String>) -> String {
        let id = self.operation_id();
        let mut result = status;
        if let Some(rule) = rule {
            result["rule"] = json!(rule);
        }
        self.operations.insert(
            id.clone(),
            Operation {
                in_progress: 1,
                result,
            },
        );
        format!(
            "{}/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Network/locations/westeurope/operations/{id}?api-version=2024-05-01",
            self.url
        )
    }

    fn network_operation(&mut self, path: &str) -> Answer {
        let id = path.rsplit('/').next().unwrap_or("");
        let Some(operation) = self.operations.get_mut(id) else {
            return arm_error(404, "OperationNotFound", "no such operation");
        };
        if operation.in_progress > 0 {
            operation.in_progress -= 1;
            return Answer::json(200, fixture(FIXTURE_IN_PROGRESS))
                .header("Retry-After", NETWORK_RETRY_AFTER);
        }
        let mut result = operation.result.clone();
        if let Some(rule) = result.as_object_mut().and_then(|o| o.remove("rule"))
            && let Some(rule) = rule.as_str().and_then(|name| self.rules.get_mut(name))
        {
            rule["properties"]["provisioningState"] = json!("Succeeded");
        }
        if result["status"] == "Succeeded" {
            result = fixture(FIXTURE_SUCCEEDED);
        }
        Answer::json(200, result)
    }

    /// The `Location` of a network DELETE: 202 while running, then 204.
    fn network_result(&mut self, path: &str) -> Answer {
        let id = path.rsplit('/').next().unwrap_or("");
        match self.operations.get(id) {
            None => arm_error(404, "OperationNotFound", "no such operation"),
            Some(operation) if operation.in_progress > 0 => {
                Answer::empty(202).header("Retry-After", NETWORK_RETRY_AFTER)
            }
            Some(_) => Answer::empty(204),
        }
    }

    fn jit_policy(&self) -> Value {
        json!({
            "id": JIT_POLICY_ID,
            "name": "default",
            "kind": "Basic",
            "location": "westeurope",
            "properties": {
                "virtualMachines": [{
                    "id": VM_ID,
                    "ports": [{"number": 22, "protocol": "*", "allowedSourceAddressPrefix": "*", "maxRequestAccessDuration": "PT3H"}],
                }],
                "requests": self.jit_requests,
                "provisioningState": "Succeeded",
            },
        })
    }

    fn jit_initiate(&mut self, r: &Request) -> Answer {
        let body = r.json();
        let vm = &body["virtualMachines"][0];
        let port = &vm["ports"][0];
        let end = port["endTimeUtc"].as_str().unwrap_or("");
        if vm["id"].as_str() != Some(VM_ID) || port["number"] != json!(22) {
            return arm_error(400, "BadRequest", "The VM or port is not in the policy.");
        }
        if !end.ends_with('Z') || end.len() < 20 {
            return arm_error(
                400,
                "BadRequest",
                "endTimeUtc must be an absolute UTC time.",
            );
        }
        let mut answer = fixture(FIXTURE_JIT)["response"]["body"].clone();
        answer["virtualMachines"][0]["id"] = vm["id"].clone();
        let ports = &mut answer["virtualMachines"][0]["ports"][0];
        ports["endTimeUtc"] = json!(end);
        ports["allowedSourceAddressPrefix"] = port["allowedSourceAddressPrefix"].clone();
        answer["justification"] = body["justification"].clone();
        let mut stored = answer.clone();
        stored["virtualMachines"][0]["ports"][0]["status"] = json!("Initiated");
        self.jit_requests.push(stored);
        Answer::json(202, answer)
    }

    fn install(&mut self, r: &Request) -> Answer {
        let body = r.json();
        let duration_ok = body["maximumDuration"]
            .as_str()
            .is_some_and(|d| d.starts_with("PT"));
        let reboot_ok = ["IfRequired", "Never", "Always"]
            .iter()
            .any(|s| body["rebootSetting"] == json!(s));
        let classes_ok = body["linuxParameters"]["classificationsToInclude"].is_array();
        if body.get("windowsParameters").is_some() {
            return arm_error(
                400,
                "InvalidParameter",
                "windowsParameters cannot be used on a Linux virtual machine.",
            );
        }
        if !duration_ok || !reboot_ok || !classes_ok {
            return arm_error(
                400,
                "InvalidParameter",
                "maximumDuration, rebootSetting and linuxParameters.classificationsToInclude are required.",
            );
        }
        let mut result = fixture(FIXTURE_INSTALL);
        match self.install_outcome {
            InstallOutcome::Succeeded => {
                result["status"] = json!("Succeeded");
                result["maintenanceWindowExceeded"] = json!(false);
                result["pendingPatchCount"] = json!(0);
                result["excludedPatchCount"] = json!(0);
                result["installedPatchCount"] = json!(3);
                result["patches"][2]["installationState"] = json!("NotSelected");
                result["patches"][3]["installationState"] = json!("Installed");
            }
            InstallOutcome::Failed => {
                result["status"] = json!("Failed");
                result["failedPatchCount"] = json!(1);
                result["patches"][3]["installationState"] = json!("Failed");
                result["error"] = json!({
                    "code": "PatchInstallationFailed",
                    "message": "1 patch failed to install: curl",
                    "details": [],
                });
            }
        }
        self.compute_start(result)
    }

    /// The main incident as ARM answers it.
    fn incident_resource(&self) -> Value {
        json!({
            "id": INCIDENT_ID,
            "name": INCIDENT_ID.rsplit('/').next(),
            "type": "Microsoft.SecurityInsights/Incidents",
            "etag": format!("\"{:08x}-0000-0000-0000-000000000000\"", self.incident_version),
            "properties": self.incident,
        })
    }

    /// The incident (`rest` empty) and its comments (`rest` `/comments[/{id}]`).
    fn sentinel(&mut self, r: &Request, rest: &str) -> Answer {
        if query_param(&r.query, "api-version").as_deref() != Some("2024-09-01") {
            return arm_error(
                400,
                "InvalidApiVersionParameter",
                "api-version 2024-09-01 expected.",
            );
        }
        let resource = Azure::incident_resource;
        match (r.method.as_str(), rest) {
            ("GET", "") => Answer::json(200, resource(self)),
            ("PUT", "") => {
                let body = r.json();
                if body["etag"] != resource(self)["etag"] {
                    return arm_error(
                        409,
                        "Conflict",
                        &format!(
                            "Newer version of resource '{}' exists. Data was not saved",
                            INCIDENT_ID.rsplit('/').next().unwrap_or("")
                        ),
                    );
                }
                let props = &body["properties"];
                let required = ["title", "severity", "status"];
                if required.iter().any(|k| !props[k].is_string()) {
                    return arm_error(
                        400,
                        "BadRequest",
                        "title, severity and status are required.",
                    );
                }
                if props["status"] == "Closed" && !props["classification"].is_string() {
                    return arm_error(
                        400,
                        "BadRequest",
                        "A closed incident needs a classification.",
                    );
                }
                for key in [
                    "title",
                    "description",
                    "severity",
                    "status",
                    "classification",
                    "classificationReason",
                    "classificationComment",
                    "owner",
                    "labels",
                ] {
                    if let Some(value) = props.get(key) {
                        self.incident[key] = value.clone();
                    }
                }
                self.incident["lastModifiedTimeUtc"] = json!(self.feed.stamp());
                self.incident_version += 1;
                Answer::json(200, resource(self))
            }
            ("PUT", comment) if comment.starts_with("/comments/") => {
                let id = comment["/comments/".len()..].to_owned();
                let Some(message) = r.json()["properties"]["message"]
                    .as_str()
                    .map(str::to_owned)
                else {
                    return arm_error(400, "BadRequest", "properties.message is required.");
                };
                match self.incident_comments.iter_mut().find(|(c, _)| *c == id) {
                    Some(existing) => existing.1 = message.clone(),
                    None => {
                        self.incident_comments.push((id.clone(), message.clone()));
                        let count = self.incident_comments.len();
                        self.incident["additionalData"]["commentsCount"] = json!(count);
                    }
                }
                Answer::json(
                    200,
                    json!({
                        "id": format!("{INCIDENT_ID}/comments/{id}"),
                        "name": id,
                        "type": "Microsoft.SecurityInsights/Incidents/Comments",
                        "properties": {"message": message, "createdTimeUtc": "2026-01-15T10:05:00Z"},
                    }),
                )
            }
            _ => arm_error(404, "NotFound", "Not found."),
        }
    }

    /// The Windows VM's assessment: the fixture's two patches and a security update, less
    /// those installed since.
    fn windows_assessment(&self) -> Value {
        let mut result = fixture(FIXTURE_ASSESS);
        let patches = result["availablePatches"].as_array_mut().expect("patches");
        patches.push(json!({
            "patchId": "0d63c4c8-9a6a-4b6b-8a3f-5f0a4f2c9e11",
            "name": format!("2024-01 Security Update for Windows Server 2022 for x64-based Systems (KB{WINDOWS_SECURITY_KB})"),
            "version": "",
            "kbId": WINDOWS_SECURITY_KB,
            "classifications": ["Security Updates"],
            "rebootBehavior": "CanRequestReboot",
            "activityId": "68f8b292-dfc2-4646-9781-33cc88631968",
            "publishedDate": "2024-01-09T00:00:00Z",
            "lastModifiedDateTime": "2024-01-09T00:00:00Z",
            "assessmentState": "Available",
        }));
        patches.retain(|p| {
            !self
                .windows_installed
                .iter()
                .any(|kb| p["kbId"].as_str() == Some(kb.as_str()))
        });
        result["criticalAndSecurityPatchCount"] = json!(
            patches
                .iter()
                .filter(|p| p["classifications"][0] == json!("Security Updates"))
                .count()
        );
        result
    }

    /// installPatches on the Windows VM: each patch of its assessment is `Excluded` (a KB in
    /// `kbNumbersToExclude`, or one that may reboot under `excludeKbsRequiringReboot`),
    /// `Installed` (a KB in `kbNumbersToInclude`, or of a classification asked for) or
    /// `NotSelected`.
    fn install_windows(&mut self, r: &Request) -> Answer {
        const CLASSES: [&str; 8] = [
            "Critical",
            "Security",
            "UpdateRollUp",
            "FeaturePack",
            "ServicePack",
            "Definition",
            "Tools",
            "Updates",
        ];
        let body = r.json();
        let windows = &body["windowsParameters"];
        let strings = |v: &Value| -> Option<Vec<String>> {
            match v {
                Value::Null => Some(Vec::new()),
                Value::Array(items) => items
                    .iter()
                    .map(|i| i.as_str().map(str::to_owned))
                    .collect(),
                _ => None,
            }
        };
        let classes = strings(&windows["classificationsToInclude"]);
        let include = strings(&windows["kbNumbersToInclude"]);
        let exclude = strings(&windows["kbNumbersToExclude"]);
        let valid = body["maximumDuration"]
            .as_str()
            .is_some_and(|d| d.starts_with("PT"))
            && ["IfRequired", "Never", "Always"]
                .iter()
                .any(|s| body["rebootSetting"] == json!(s))
            && body.get("linuxParameters").is_none()
            && classes
                .as_ref()
                .is_some_and(|c| !c.is_empty() && c.iter().all(|c| CLASSES.contains(&c.as_str())))
            && include.is_some()
            && exclude.is_some();
        let (Some(classes), Some(include), Some(exclude), true) =
            (classes, include, exclude, valid)
        else {
            return arm_error(
                400,
                "InvalidParameter",
                "maximumDuration, rebootSetting and windowsParameters.classificationsToInclude \
                 (Windows classifications) are required; linuxParameters cannot be used on a \
                 Windows virtual machine.",
            );
        };
        let no_reboot_only = windows["excludeKbsRequiringReboot"] == json!(true);
        let listed =
            |list: &[String], kb: &str| list.iter().any(|k| k.trim_start_matches("KB") == kb);
        let mut reboot_needed = false;
        let mut installed = Vec::new();
        let mut counts = BTreeMap::new();
        let patches: Vec<Value> = self.windows_assessment()["availablePatches"]
            .as_array()
            .expect("patches")
            .iter()
            .map(|p| {
                let kb = p["kbId"].as_str().unwrap_or("");
                let never_reboots = p["rebootBehavior"] == json!("NeverReboots");
                let class = windows_class(p["classifications"][0].as_str().unwrap_or(""));
                let state = if listed(&exclude, kb) || (no_reboot_only && !never_reboots) {
                    "Excluded"
                } else if listed(&include, kb) || classes.iter().any(|c| c == class) {
                    reboot_needed |= !never_reboots;
                    installed.push(kb.to_owned());
                    "Installed"
                } else {
                    "NotSelected"
                };
                *counts.entry(state).or_insert(0u64) += 1;
                json!({
                    "patchId": p["patchId"], "name": p["name"], "version": p["version"],
                    "kbId": kb, "classifications": p["classifications"],
                    "installationState": state,
                })
            })
            .collect();
        let mut result = fixture(FIXTURE_INSTALL_WINDOWS);
        let count = |state| counts.get(state).copied().unwrap_or(0);
        result["installedPatchCount"] = json!(count("Installed"));
        result["excludedPatchCount"] = json!(count("Excluded"));
        result["notSelectedPatchCount"] = json!(count("NotSelected"));
        result["pendingPatchCount"] = json!(0);
        result["rebootStatus"] = json!(match (reboot_needed, body["rebootSetting"].as_str()) {
            (false, _) => "NotNeeded",
            (true, Some("Never")) => "Required",
            (true, _) => "Completed",
        });
        result["patches"] = Value::Array(patches);
        self.windows_installed.extend(installed);
        self.compute_start(result)
    }

    /// Starts a compute operation: 202 with Location and Retry-After, polled 202 once, then
    /// 200 with `result`.
    fn compute_start(&mut self, result: Value) -> Answer {
        let id = self.operation_id();
        self.operations.insert(
            id.clone(),
            Operation {
                in_progress: 1,
                result,
            },
        );
        let template = &fixture(FIXTURE_INSTALL_202)["response"];
        let location = self.compute_location(&id);
        Answer::empty(template["status"].as_u64().unwrap_or(202) as u16)
            .header("Location", location)
            .header("Retry-After", COMPUTE_RETRY_AFTER)
    }

    fn compute_location(&self, id: &str) -> String {
        format!(
            "{}/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Compute/locations/westeurope/operations/{id}?monitor=true&api-version=2024-07-01",
            self.url
        )
    }

    fn compute_operation(&mut self, path: &str) -> Answer {
        let id = path.rsplit('/').next().unwrap_or("").to_owned();
        let location = self.compute_location(&id);
        let Some(operation) = self.operations.get_mut(&id) else {
            return arm_error(404, "OperationNotFound", "no such operation");
        };
        if operation.in_progress > 0 {
            operation.in_progress -= 1;
            return Answer::empty(202)
                .header("Location", location)
                .header("Retry-After", COMPUTE_RETRY_AFTER);
        }
        Answer::json(200, operation.result.clone())
    }

    fn operation_id(&mut self) -> String {
        let n = self.next_operation;
        self.next_operation += 1;
        format!("dddd3333-ee44-5555-66ff-{n:012}")
    }
}

/// A virtual machine as `GET` answers it (the fields the tests read).
fn vm_resource(id: &str, os_type: &str) -> Value {
    let name = id.rsplit('/').next().unwrap_or("");
    json!({
        "id": id,
        "name": name,
        "type": "Microsoft.Compute/virtualMachines",
        "location": "westeurope",
        "properties": {
            "vmId": "0f47b100-583c-48e3-a4c0-aefc2c9bbcc1",
            "storageProfile": {"osDisk": {"osType": os_type, "name": format!("{name}-osdisk"), "createOption": "FromImage"}},
            "provisioningState": "Succeeded",
        },
    })
}

/// The installPatches classification of a publisher's classification in an assessment.
fn windows_class(publisher: &str) -> &'static str {
    match publisher {
        "Critical Updates" => "Critical",
        "Security Updates" => "Security",
        "Update Rollups" => "UpdateRollUp",
        "Feature Packs" => "FeaturePack",
        "Service Packs" => "ServicePack",
        "Definition Updates" => "Definition",
        "Tools" => "Tools",
        _ => "Updates",
    }
}

fn rule_resource(name: &str, properties: Value) -> Value {
    json!({
        "name": name,
        "id": format!("{NSG_ID}/securityRules/{name}"),
        "etag": "W/\"00000000-0000-0000-0000-000000000000\"",
        "type": "Microsoft.Network/networkSecurityGroups/securityRules",
        "properties": properties,
    })
}

/// The answer of an endpoint that echoes request `r` ([`Fault::echo`]).
fn echo(r: &Request, status: u16) -> Answer {
    let mut parts = vec![format!("{} {}?{}", r.method, r.path, r.query)];
    parts.extend(
        r.headers
            .iter()
            .map(|(name, value)| format!("{name}: {value}")),
    );
    parts.push(format!("body: {}", r.body));
    if r.path.starts_with("/login/") {
        let description = format!("AADSTS900144: echo of the request: {}", parts.join("; "));
        let body = json!({"error": "invalid_request", "error_description": description});
        return Answer::json(status, body);
    }
    Answer::text(status, parts.join("\n"))
}

/// Checks `Authorization: Bearer <prefix>N`.
fn bearer(r: &Request, prefix: &str) -> Result<(), Answer> {
    let ok = r
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .is_some_and(|token| token.starts_with(prefix));
    if ok {
        Ok(())
    } else {
        Err(arm_error(
            401,
            "InvalidAuthenticationToken",
            "The access token is invalid.",
        ))
    }
}

fn query_param(query: &str, key: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&path[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// When a request arrived: a third party's own clock, outside the code under test.
#[expect(
    clippy::disallowed_methods,
    reason = "the local Azure stands for a third party and keeps its own time"
)]
fn received_at() -> Instant {
    Instant::now()
}
