//! Who the harness's clients are: the operator policy and the API tokens an orchestrator is
//! started with, and clients that present one principal's token.
//!
//! Every orchestrator the harness starts (but `--dev`, which writes its own) gets a policy in
//! which `token:e2e` and `cert:e2e` are admins, plus the principals and groups a test names;
//! each principal named `NAME` is `token:NAME`, with its token in `NAME.token`. A test's
//! tokens are derived from the names ([`token_of`]), so that a helper given a name can act as
//! that principal: these are test credentials, never a deployment's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use riposte_proto::v1::operator_client::OperatorClient;
use sha2::{Digest, Sha256};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// The operator client the tests use: each request carries the bearer token of one principal
/// (or none).
pub type Operator = OperatorClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer TOKEN` to every request, when it holds a token.
#[derive(Clone, Default)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl Bearer {
    pub fn new(token: Option<&str>) -> Bearer {
        Bearer(token.map(|t| format!("Bearer {t}").parse().expect("an ASCII token")))
    }
}

impl tonic::service::Interceptor for Bearer {
    /// A request that already carries its own `authorization` (a helper acting as another
    /// principal, see [`as_principal`]) keeps it.
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0
            && !request.metadata().contains_key("authorization")
        {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// An operator client on `channel` presenting `token` (none: only what the channel's TLS
/// presents).
pub fn operator(channel: Channel, token: Option<&str>) -> Operator {
    OperatorClient::with_interceptor(channel, Bearer::new(token))
        .max_decoding_message_size(16 * 1024 * 1024)
}

/// The principals, groups and platform rules of the policy to start with.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Token principals by name, with their roles.
    principals: BTreeMap<String, Vec<String>>,
    /// Groups: roles and members (principal ids).
    groups: BTreeMap<String, (Vec<String>, Vec<String>)>,
    /// Raw YAML appended to the policy (`approvals:`, `containment:`, `roles:`).
    extra: String,
}

impl Access {
    /// `token:NAME` holds `roles`; a name with a method (`cert:alice`) is that principal,
    /// without a token.
    pub fn principal(&mut self, name: &str, roles: &[&str]) {
        let entry = self.principals.entry(name.to_string()).or_default();
        entry.extend(roles.iter().map(|r| r.to_string()));
    }

    /// `token:MEMBER` for each of `members` is in `group`, which holds `roles`.
    pub fn group(&mut self, group: &str, roles: &[&str], members: &[&str]) {
        let entry = self.groups.entry(group.to_string()).or_default();
        entry.0.extend(roles.iter().map(|r| r.to_string()));
        for member in members {
            self.principals.entry(member.to_string()).or_default();
            entry.1.push(format!("token:{member}"));
        }
    }

    /// YAML appended to the policy as it is.
    pub fn extra(&mut self, yaml: &str) {
        self.extra.push_str(yaml);
        self.extra.push('\n');
    }

    /// Writes `policy.yaml`, `api-tokens.yaml` and one `NAME.token` per principal into `dir`;
    /// answers the two files' paths and the tokens by name.
    pub fn write(&self, dir: &Path) -> (PathBuf, PathBuf, BTreeMap<String, String>) {
        let mut principals = self.principals.clone();
        principals
            .entry("e2e".into())
            .or_default()
            .push("admin".into());
        let mut policy = String::from("principals:\n  'cert:e2e': [admin]\n");
        let mut tokens_file = String::from("tokens:\n");
        let mut tokens = BTreeMap::new();
        for (name, roles) in &principals {
            if name.contains(':') {
                policy.push_str(&format!("  '{name}': [{}]\n", roles.join(", ")));
                continue;
            }
            let token = token_of(name);
            let digest: String = Sha256::digest(token.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            tokens_file.push_str(&format!("  - name: {name}\n    sha256: {digest}\n"));
            crate::orchestrator::write_private(&dir.join(format!("{name}.token")), &token);
            if !roles.is_empty() {
                policy.push_str(&format!("  'token:{name}': [{}]\n", roles.join(", ")));
            }
            tokens.insert(name.clone(), token);
        }
        if !self.groups.is_empty() {
            policy.push_str("groups:\n");
            for (group, (roles, members)) in &self.groups {
                let members: Vec<String> = members.iter().map(|m| format!("'{m}'")).collect();
                policy.push_str(&format!(
                    "  {group}:\n    roles: [{}]\n    members: [{}]\n",
                    roles.join(", "),
                    members.join(", ")
                ));
            }
        }
        policy.push_str(&self.extra);
        let policy_path = dir.join("policy.yaml");
        let tokens_path = dir.join("api-tokens.yaml");
        crate::orchestrator::write_private(&policy_path, &policy);
        crate::orchestrator::write_private(&tokens_path, &tokens_file);
        (policy_path, tokens_path, tokens)
    }
}

/// The test token of principal `token:NAME`: `rpt_` and 64 hex digits.
pub fn token_of(name: &str) -> String {
    let digest = Sha256::digest(format!("riposte-e2e-token/{name}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("rpt_{hex}")
}

/// `message` as a request of principal `token:NAME`.
pub fn as_principal<T>(message: T, name: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {}", token_of(name));
    request
        .metadata_mut()
        .insert("authorization", value.parse().expect("an ASCII token"));
    request
}
