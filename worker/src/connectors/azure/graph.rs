//! Microsoft Graph users (`identity.*`).
//!
//! The account is an object id (GUID) or a user principal name; anything with `/ ? # %`,
//! spaces or control characters is refused before any request, and the name is
//! percent-encoded as one path segment.
//!
//! * disable: GET the user (`$select=id,userPrincipalName,accountEnabled`) to record
//!   `previous`, PATCH `accountEnabled: false` (204), then read it back until Graph shows the
//!   change. An account already disabled is left alone (`already_disabled: true`).
//! * enable: with the disable's `previous`, an account that was disabled before Riposte
//!   disabled it stays disabled (`left_disabled: true`) and the output says so; otherwise
//!   PATCH `accountEnabled: true` and read it back.
//! * revoke_sessions: POST `revokeSignInSessions`; 200 and 204 both mean success (a documented
//!   quirk). Revocation takes a few minutes to reach every service, and it does not stop new
//!   sign-ins: disable first.

use std::time::Duration;

use reqwest::{Method, Url};
use serde_json::{Value, json};

use super::super::identity::{Disable, Enable, RevokeSessions};
use super::super::{Context, Failure};
use super::Client;
use super::id::is_guid;
use super::rest::{Api, Call, Deadline};

/// The Graph version every call uses.
const VERSION: &str = "v1.0";
/// Reads of the user after a change before the worker gives up on seeing it.
const VERIFY_READS_MAX: u32 = 5;
/// Wait between two such reads (Graph replicates within seconds).
const VERIFY_DELAY: Duration = Duration::from_millis(500);
/// What the output says after a revocation.
const REVOKE_NOTE: &str = "refresh tokens and session cookies issued before now are revoked; \
                           Microsoft notes a delay of a few minutes before every service refuses them";

/// The user fields the worker reads.
#[derive(Debug, Clone, PartialEq, Eq)]
struct User {
    id: String,
    upn: String,
    enabled: bool,
}

/// See the family module.
pub(crate) async fn disable(
    client: &Client,
    disable: &Disable,
    cx: &Context,
) -> Result<Value, Failure> {
    let url = user_url(client, &disable.account)?;
    let deadline = Deadline::for_task(cx);
    let user = read_user(client, &url, &deadline).await?;
    let previous = json!({
        "accountEnabled": user.enabled,
        "id": user.id,
        "userPrincipalName": user.upn,
    });
    let output = |already_disabled: bool, changes: Vec<String>| {
        json!({
            "account": disable.account,
            "backend": "graph",
            "already_disabled": already_disabled,
            "previous": previous,
            "changes": changes,
            "dry_run": cx.dry_run,
        })
    };
    if !user.enabled {
        return Ok(output(true, Vec::new()));
    }
    let patch = set_enabled(url.clone(), false);
    let changes = vec![patch.display()];
    if cx.dry_run {
        return Ok(output(false, changes));
    }
    tracing::info!(account = %disable.account, reason = %disable.reason, "disabling a graph user");
    client.call(&patch, &deadline).await?;
    verify(client, &url, false, &deadline).await?;
    Ok(output(false, changes))
}

/// See the family module.
pub(crate) async fn enable(
    client: &Client,
    enable: &Enable,
    cx: &Context,
) -> Result<Value, Failure> {
    let url = user_url(client, &enable.account)?;
    let previous = enable.previous.as_ref().map(Previous::parse).transpose()?;
    let deadline = Deadline::for_task(cx);
    let user = read_user(client, &url, &deadline).await?;
    if let Some(Previous { id: Some(id), .. }) = &previous
        && !id.eq_ignore_ascii_case(&user.id)
    {
        return Err(Failure::permanent(format!(
            "`previous` is of user {id}, but {} is user {}: refusing to enable it",
            enable.account, user.id
        )));
    }
    let output = |already_enabled: bool, changes: Vec<String>| {
        json!({
            "account": enable.account,
            "backend": "graph",
            "already_enabled": already_enabled,
            "changes": changes,
            "dry_run": cx.dry_run,
        })
    };
    if previous.as_ref().is_some_and(|p| !p.enabled) {
        let mut out = output(false, Vec::new());
        out["left_disabled"] = json!(true);
        out["note"] = json!(
            "the account was already disabled before riposte disabled it, so it stays disabled"
        );
        return Ok(out);
    }
    if user.enabled {
        return Ok(output(true, Vec::new()));
    }
    let patch = set_enabled(url.clone(), true);
    let changes = vec![patch.display()];
    if cx.dry_run {
        return Ok(output(false, changes));
    }
    client.call(&patch, &deadline).await?;
    verify(client, &url, true, &deadline).await?;
    Ok(output(false, changes))
}

/// See the family module.
pub(crate) async fn revoke_sessions(
    client: &Client,
    revoke: &RevokeSessions,
    cx: &Context,
) -> Result<Value, Failure> {
    let url = user_url(client, &revoke.account)?;
    let deadline = Deadline::for_task(cx);
    let mut post_url = url.clone();
    post_url
        .path_segments_mut()
        .map_err(|()| Failure::permanent("the graph url cannot take a path"))?
        .push("revokeSignInSessions");
    let post = Call::new(
        "graph revoke sign-in sessions",
        Api::Graph,
        Method::POST,
        post_url,
    );
    let changes = vec![post.display()];
    let mut output = json!({
        "account": revoke.account,
        "backend": "graph",
        "changes": changes,
        "dry_run": cx.dry_run,
    });
    if cx.dry_run {
        read_user(client, &url, &deadline).await?;
        return Ok(output);
    }
    let reply = client.call(&post, &deadline).await?;
    if reply.body.get("value") == Some(&Value::Bool(false)) {
        return Err(Failure::retryable(format!(
            "azure {} failed: graph answered value false",
            post.op
        )));
    }
    output["sessions_revoked"] = json!(true);
    output["note"] = json!(REVOKE_NOTE);
    Ok(output)
}

/// The `previous` a disable recorded.
struct Previous {
    enabled: bool,
    id: Option<String>,
}

impl Previous {
    fn parse(value: &Value) -> Result<Previous, Failure> {
        let invalid = || {
            Failure::invalid_input(
                "`previous` must be the `previous` output of identity.disable_account \
                 ({\"accountEnabled\": true|false, ...})",
            )
        };
        let enabled = value
            .get("accountEnabled")
            .and_then(Value::as_bool)
            .ok_or_else(invalid)?;
        let id = match value.get("id") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) => Some(id.clone()),
            Some(_) => return Err(invalid()),
        };
        Ok(Previous { enabled, id })
    }
}

/// Checks the account's form and answers `<graph>/v1.0/users/<account>`.
fn user_url(client: &Client, account: &str) -> Result<Url, Failure> {
    check_account(account)?;
    let mut url = client.settings().graph_url.clone();
    url.path_segments_mut()
        .map_err(|()| Failure::permanent("the graph url cannot take a path"))?
        .pop_if_empty()
        .extend([VERSION, "users", account]);
    Ok(url)
}

/// An object id, or a UPN (`name@domain`) without `/ ? # %`, spaces or control characters.
pub(crate) fn check_account(account: &str) -> Result<(), Failure> {
    if is_guid(account) {
        return Ok(());
    }
    if account.contains(|c: char| "/?#%\\".contains(c) || c.is_whitespace() || c.is_control()) {
        return Err(Failure::invalid_input(format!(
            "`account` {account:?} must not contain / ? # % \\ or spaces"
        )));
    }
    match account.split_once('@') {
        Some((name, domain)) if !name.is_empty() && !domain.is_empty() && !domain.contains('@') => {
            Ok(())
        }
        _ => Err(Failure::invalid_input(format!(
            "`account` {account:?} is not an object id (GUID) or a user principal name (name@domain)"
        ))),
    }
}

fn set_enabled(url: Url, enabled: bool) -> Call {
    let op = if enabled {
        "graph enable user"
    } else {
        "graph disable user"
    };
    Call::new(op, Api::Graph, Method::PATCH, url).json(json!({"accountEnabled": enabled}))
}

async fn read_user(client: &Client, url: &Url, deadline: &Deadline) -> Result<User, Failure> {
    let mut url = url.clone();
    url.set_query(Some("$select=id,userPrincipalName,accountEnabled"));
    let get = Call::new("graph get user", Api::Graph, Method::GET, url);
    let body = client.call(&get, deadline).await?.body;
    let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_owned);
    let enabled = body.get("accountEnabled").and_then(Value::as_bool);
    match (text("id"), enabled) {
        (Some(id), Some(enabled)) => Ok(User {
            id,
            upn: text("userPrincipalName").unwrap_or_default(),
            enabled,
        }),
        _ => Err(Failure::permanent(
            "azure graph get user: the answer has no id or accountEnabled",
        )),
    }
}

/// Reads the user until `accountEnabled` is `enabled`.
async fn verify(
    client: &Client,
    url: &Url,
    enabled: bool,
    deadline: &Deadline,
) -> Result<(), Failure> {
    for read in 1..=VERIFY_READS_MAX {
        if read_user(client, url, deadline).await?.enabled == enabled {
            return Ok(());
        }
        if read == VERIFY_READS_MAX || !deadline.fits(VERIFY_DELAY) {
            break;
        }
        tokio::time::sleep(VERIFY_DELAY).await;
    }
    Err(Failure::retryable(format!(
        "graph still shows accountEnabled {} after the update",
        !enabled
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts() {
        assert!(check_account("22223333-cccc-4444-dddd-5555eeee6666").is_ok());
        assert!(check_account("alice@contoso.com").is_ok());
        assert!(check_account("o'brien+soc@contoso.com").is_ok());
        for bad in [
            "alice", "a/b@c", "a?b@c", "a#b@c", "a%2F@c", "a b@c", "@c", "a@", "a@b@c",
        ] {
            let error = check_account(bad).unwrap_err();
            assert!(!error.retryable);
            assert!(
                error.message.starts_with("invalid input: `account`"),
                "{error:?}"
            );
        }
    }
}
