//! The one door to the orchestrator: the address, the gRPC channel with its timeouts, and one
//! method per `Operator` RPC, each turning transport failures and refusals into [`Error`].

use std::error::Error as StdError;
use std::io;
use std::time::Duration;

use riposte_proto::v1::operator_client::OperatorClient;
use riposte_proto::v1::{
    AlertInfo, ApplyRuleRequest, ApplyRuleResponse, GetAlertRequest, IngestAlertRequest,
    IngestAlertResponse, ListAlertSourcesRequest, ListAlertSourcesResponse, ListAlertsRequest,
    ListAlertsResponse, ListAuditRequest, ListAuditResponse, ListRulesRequest, ListRulesResponse,
    VerifyAuditRequest, VerifyAuditResponse, WhoAmIRequest, WhoAmIResponse,
};
use riposte_proto::v1::{
    ApplyPlaybookRequest, ApplyPlaybookResponse, CancelRunRequest, ContainmentRequest,
    ContainmentStatus, DecideRequest, GetContainmentRequest, GetPlaybookRequest, GetRunRequest,
    GrantInfo, ListApprovalsRequest, ListApprovalsResponse, ListGrantsRequest, ListGrantsResponse,
    ListPlaybooksRequest, ListPlaybooksResponse, ListRunsRequest, ListRunsResponse,
    ListWorkersRequest, ListWorkersResponse, Playbook, RepairRequest, RevokeGrantRequest, Run,
    RunEvent, StartRunRequest, StartRunResponse, ValidatePlaybookRequest, ValidatePlaybookResponse,
    WatchRunRequest,
};
use riposte_proto::v1::{
    ApplyScheduleRequest, ApplyScheduleResponse, GetScheduleHistoryRequest,
    GetScheduleHistoryResponse, LedgerEntry, ListSchedulesRequest, ListSchedulesResponse,
    PauseScheduleRequest, ScheduleInfo, TriggerScheduleRequest,
};
use riposte_proto::v1::{
    DeletePlaybookVersionRequest, ListPlaybookVersionsRequest, ListPlaybookVersionsResponse,
    SetDefaultPlaybookVersionRequest,
};
use riposte_proto::v1::{
    DeleteRuleRequest, DeleteScheduleRequest, DeleteScheduleResponse, GetRuleRequest, RuleInfo,
    SetRuleEnabledRequest, TestRulesRequest, TestRulesResponse,
};
use std::path::Path;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};

use crate::credentials::Token;
use crate::error::Error;

/// How long to wait for the TCP connection to the orchestrator.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long to wait for the answer to one unary request (streams have no limit).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What the operator typed as the orchestrator's address: `host:port`, `http://host:port` or
/// `https://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr {
    /// `Some(true)` for `https://`, `Some(false)` for `http://`, `None` when no scheme was typed
    /// (TLS then when a TLS folder is found).
    pub tls: Option<bool>,
    /// `host:port`.
    pub authority: String,
}

/// Where the CLI looks for a TLS folder when none is named: what `riposte-orchestrator --dev`
/// makes in its default data dir.
pub const DEV_TLS_DIR: &str = "./riposte-data/tls";

/// The orchestrator to dial: its URL and, for `https://`, the TLS files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: String,
    pub tls: Option<riposte_tls::client::Files>,
}

/// Parses what the operator typed into an [`Addr`].
pub(crate) fn normalize_addr(text: &str) -> Result<Addr, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("the orchestrator address is empty".to_string());
    }
    let (tls, authority) = match text.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => (Some(false), rest),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => (Some(true), rest),
        Some((scheme, _)) => {
            return Err(format!(
                "unsupported scheme `{scheme}` in `{text}`: use https://HOST:PORT, \
                 http://HOST:PORT or HOST:PORT"
            ));
        }
        None => (None, text),
    };
    let authority = authority.trim_end_matches('/').to_string();
    let uri: tonic::transport::Uri = format!("http://{authority}")
        .parse()
        .map_err(|error| format!("invalid orchestrator address `{text}`: {error}"))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("invalid orchestrator address `{text}`: no host"));
    }
    Ok(Addr { tls, authority })
}

/// The target for `addr`, with the TLS folder `tls_dir` (`ca.pem`, and `operator.pem` with
/// `operator.key` when this operator has a certificate). Pure: `tls_dir` is whatever folder was
/// named or found.
pub fn target(addr: &Addr, tls_dir: Option<&Path>) -> Result<Target, Error> {
    let tls = match (addr.tls, tls_dir) {
        (Some(false), _) | (None, None) => None,
        (_, Some(dir)) => {
            let (cert, key) = (dir.join("operator.pem"), dir.join("operator.key"));
            Some(riposte_tls::client::Files {
                ca: dir.join("ca.pem"),
                cert: (cert.exists() && key.exists()).then_some((cert, key)),
            })
        }
        (Some(true), None) => {
            return Err(Error::Usage(format!(
                "https://{} needs the orchestrator's CA: name a folder holding ca.pem (and \
                 operator.pem, operator.key) with --tls-dir or RIPOSTE_TLS_DIR",
                addr.authority
            )));
        }
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    Ok(Target {
        url: format!("{scheme}://{}", addr.authority),
        tls,
    })
}

/// A connection to one orchestrator's `Operator` service, opened at the first request.
pub struct Client {
    addr: String,
    tls: Option<riposte_tls::client::Files>,
    token: Option<Token>,
    operator: Option<Operator>,
}

/// The `Operator` client, every request carrying the bearer token when there is one.
type Operator = OperatorClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer …` to every request.
#[derive(Clone)]
struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// The live events of one run, as `WatchRun` streams them.
pub struct Events {
    addr: String,
    stream: Streaming<RunEvent>,
}

impl Client {
    /// A client for `target`. Nothing is dialed yet, so a command can check its inputs before
    /// it needs the network.
    pub fn new(target: Target, token: Option<Token>) -> Client {
        Client {
            addr: target.url,
            tls: target.tls,
            token,
            operator: None,
        }
    }

    pub async fn validate_playbook(
        &mut self,
        source: String,
    ) -> Result<ValidatePlaybookResponse, Error> {
        let mut operator = self.operator().await?;
        let reply = operator
            .validate_playbook(unary(ValidatePlaybookRequest { source }))
            .await;
        self.answer(reply)
    }

    pub async fn apply_playbook(&mut self, source: String) -> Result<ApplyPlaybookResponse, Error> {
        let mut operator = self.operator().await?;
        let reply = operator
            .apply_playbook(unary(ApplyPlaybookRequest { source }))
            .await;
        self.answer(reply)
    }

    pub async fn list_playbooks(&mut self) -> Result<ListPlaybooksResponse, Error> {
        let mut operator = self.operator().await?;
        let reply = operator
            .list_playbooks(unary(ListPlaybooksRequest {}))
            .await;
        self.answer(reply)
    }

    pub async fn get_playbook(&mut self, request: GetPlaybookRequest) -> Result<Playbook, Error> {
        let mut operator = self.operator().await?;
        let reply = operator.get_playbook(unary(request)).await;
        self.answer(reply)
    }

    pub async fn start_run(&mut self, request: StartRunRequest) -> Result<StartRunResponse, Error> {
        let mut operator = self.operator().await?;
        let reply = operator.start_run(unary(request)).await;
        self.answer(reply)
    }

    pub async fn get_run(&mut self, run_id: &str) -> Result<Run, Error> {
        let mut operator = self.operator().await?;
        let request = GetRunRequest {
            run_id: run_id.to_string(),
        };
        let reply = operator.get_run(unary(request)).await;
        self.answer(reply)
    }

    pub async fn list_runs(&mut self, request: ListRunsRequest) -> Result<ListRunsResponse, Error> {
        let mut operator = self.operator().await?;
        let reply = operator.list_runs(unary(request)).await;
        self.answer(reply)
    }

    pub async fn cancel_run(&mut self, request: CancelRunRequest) -> Result<Run, Error> {
        let mut operator = self.operator().await?;
        let reply = operator.cancel_run(unary(request)).await;
        self.answer(reply)
    }

    pub async fn list_workers(&mut self) -> Result<ListWorkersResponse, Error> {
        let mut operator = self.operator().await?;
        let reply = operator.list_workers(unary(ListWorkersRequest {})).await;
        self.answer(reply)
    }

    pub async fn list_grants(&mut self) -> Result<ListGrantsResponse, Error> {
        let mut operator = self.operator().await?;
        let reply = operator.list_grants(unary(ListGrantsRequest {})).await;
        self.answer(reply)
    }

    pub async fn revoke_grant(&mut self, request: RevokeGrantRequest) -> Result<GrantInfo, Error> {
        let mut operator = self.operator().await?;
        let reply = operator.revoke_grant(unary(request)).await;
        self.answer(reply)
    }

    pub async fn list_approvals(&mut self) -> Result<ListApprovalsResponse, Error> {
        let mut operator = self.operator().await?;
        let reply = operator
            .list_approvals(unary(ListApprovalsRequest {}))
            .await;
        self.answer(reply)
    }

    pub async fn decide(&mut self, request: DecideRequest) -> Result<Run, Error> {
        let mut operator = self.operator().await?;
        let reply = operator.decide(unary(request)).await;
        self.answer(reply)
    }

    pub async fn retry_step(&mut self, request: RepairRequest) -> Result<Run, Error> {
        let mut operator = self.operator().await?;
        let reply = operator.retry_step(unary(request)).await;
        self.answer(reply)
    }

    pub async fn skip_step(&mut self, request: RepairRequest) -> Result<Run, Error> {
        let mut operator = self.operator().await?;
        let reply = operator.skip_step(unary(request)).await;
        self.answer(reply)
    }

    pub async fn resume_run(&mut self, request: RepairRequest) -> Result<Run, Error> {
        let mut operator = self.operator().await?;
        let reply = operator.resume_run(unary(request)).await;
        self.answer(reply)
    }

    pub async fn pause_containment(
        &mut self,
        request: ContainmentRequest,
    ) -> Result<ContainmentStatus, Error> {
        let mut operator = self.operator().await?;
        let reply = operator.pause_containment(unary(request)).await;
        self.answer(reply)
    }

    pub async fn resume_containment(
        &mut self,
        request: ContainmentRequest,
    ) -> Result<ContainmentStatus, Error> {
        let mut operator = self.operator().await?;
        let reply = operator.resume_containment(unary(request)).await;
        self.answer(reply)
    }

    pub async fn apply_schedule(&mut self, source: String) -> Result<ApplyScheduleResponse, Error> {
        let mut operator = self.operator().await?;
        let reply = operator
            .apply_schedule(unary(ApplyScheduleRequest { source }))
            .await;
        self.answer(reply)
    }

    pub async fn list_schedules(&mut self) -> Result<ListSchedulesResponse, Error> {
        let mut operator = self.operator().await?;
        let reply = operator
            .list_schedules(unary(ListSchedulesRequest {}))
            .await;
        self.answer(reply)
    }

    pub async fn schedule_history(
        &mut self,
        request: GetScheduleHistoryRequest,
    ) -> Result<GetScheduleHistoryResponse, Error> {
        let mut operator = self.operator().await?;
        let reply = operator.get_schedule_history(unary(request)).await;
        self.answer(reply)
    }

    pub async fn trigger_schedule(
        &mut self,
        request: TriggerScheduleRequest,
    ) -> Result<LedgerEntry, Error> {
        let mut operator = self.operator().await?;
        let reply = operator.trigger_schedule(unary(request)).await;
        self.answer(reply)
    }

    pub async fn pause_schedule(
        &mut self,
        request: PauseScheduleRequest,
        paused: bool,
    ) -> Result<ScheduleInfo, Error> {
        let mut operator = self.operator().await?;
        let reply = if paused {
            operator.pause_schedule(unary(request)).await
        } else {
            operator.resume_schedule(unary(request)).await
        };
        self.answer(reply)
    }

    pub async fn get_containment(&mut self) -> Result<ContainmentStatus, Error> {
        let mut operator = self.operator().await?;
        let reply = operator
            .get_containment(unary(GetContainmentRequest {}))
            .await;
        self.answer(reply)
    }

    /// Opens the run's event stream: its history first, then live events until it finishes.
    /// Only the opening has the request timeout; the stream has none, as a run may take hours.
    pub async fn watch_run(&mut self, run_id: &str) -> Result<Events, Error> {
        let mut operator = self.operator().await?;
        let request = Request::new(WatchRunRequest {
            run_id: run_id.to_string(),
        });
        let opening = tokio::time::timeout(REQUEST_TIMEOUT, operator.watch_run(request));
        let Ok(reply) = opening.await else {
            return Err(Error::Unreachable {
                addr: self.addr.clone(),
                cause: no_answer(),
            });
        };
        let stream = self.answer(reply)?;
        Ok(Events {
            addr: self.addr.clone(),
            stream,
        })
    }

    /// The `Operator` client, dialing the orchestrator on first use. Cloning it is cheap: the
    /// clones share one HTTP/2 connection.
    async fn operator(&mut self) -> Result<Operator, Error> {
        if let Some(operator) = &self.operator {
            return Ok(operator.clone());
        }
        let mut endpoint = Endpoint::from_shared(self.addr.clone())
            .map_err(|error| Error::Usage(format!("invalid address `{}`: {error}", self.addr)))?
            .connect_timeout(CONNECT_TIMEOUT);
        if let Some(files) = &self.tls {
            let tls = riposte_tls::client::config(files, endpoint.uri())
                .map_err(|error| Error::Usage(format!("TLS: {error}")))?;
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|error| Error::Usage(format!("TLS: {error}")))?;
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|error| Error::Unreachable {
                addr: self.addr.clone(),
                cause: cause(&error),
            })?;
        let bearer = match &self.token {
            None => None,
            Some(token) => Some(token.header().parse().map_err(|_| {
                Error::Usage("the token holds characters a header cannot carry".into())
            })?),
        };
        let operator = OperatorClient::with_interceptor(channel, Bearer(bearer));
        self.operator = Some(operator.clone());
        Ok(operator)
    }

    pub async fn ingest_alert(
        &mut self,
        request: IngestAlertRequest,
    ) -> Result<IngestAlertResponse, Error> {
        let mut operator = self.operator().await?;
        let reply = operator.ingest_alert(unary(request)).await;
        self.answer(reply)
    }

    pub async fn list_alerts(
        &mut self,
        request: ListAlertsRequest,
    ) -> Result<ListAlertsResponse, Error> {
        let mut operator = self.operator().await?;
        let reply = operator.list_alerts(unary(request)).await;
        self.answer(reply)
    }

    pub async fn list_alert_sources(&mut self) -> Result<ListAlertSourcesResponse, Error> {
        let mut operator = self.operator().await?;
        let reply = operator
            .list_alert_sources(unary(ListAlertSourcesRequest {}))
            .await;
        self.answer(reply)
    }

    pub async fn get_alert(&mut self, request: GetAlertRequest) -> Result<AlertInfo, Error> {
        let mut operator = self.operator().await?;
        let reply = operator.get_alert(unary(request)).await;
        self.answer(reply)
    }

    pub async fn apply_rule(
        &mut self,
        request: ApplyRuleRequest,
    ) -> Result<ApplyRuleResponse, Error> {
        let mut operator = self.operator().await?;
        let reply = operator.apply_rule(unary(request)).await;
        self.answer(reply)
    }

    pub async fn list_rules(
        &mut self,
        request: ListRulesRequest,
    ) -> Result<ListRulesResponse, Error> {
        let mut operator = self.operator().await?;
        let reply = operator.list_rules(unary(request)).await;
        self.answer(reply)
    }

    pub async fn list_playbook_versions(
        &mut self,
        request: ListPlaybookVersionsRequest,
    ) -> Result<ListPlaybookVersionsResponse, Error> {
        let mut operator = self.operator().await?;
        let reply = operator.list_playbook_versions(unary(request)).await;
        self.answer(reply)
    }

    pub async fn set_default_playbook_version(
        &mut self,
        request: SetDefaultPlaybookVersionRequest,
    ) -> Result<Playbook, Error> {
        let mut operator = self.operator().await?;
        let reply = operator.set_default_playbook_version(unary(request)).await;
        self.answer(reply)
    }

    pub async fn delete_playbook_version(
        &mut self,
        request: DeletePlaybookVersionRequest,
    ) -> Result<Playbook, Error> {
        let mut operator = self.operator().await?;
        let reply = operator.delete_playbook_version(unary(request)).await;
        self.answer(reply)
    }

    pub async fn get_rule(&mut self, request: GetRuleRequest) -> Result<RuleInfo, Error> {
        let mut operator = self.operator().await?;
        let reply = operator.get_rule(unary(request)).await;
        self.answer(reply)
    }

    pub async fn set_rule_enabled(
        &mut self,
        request: SetRuleEnabledRequest,
    ) -> Result<RuleInfo, Error> {
        let mut operator = self.operator().await?;
        let reply = operator.set_rule_enabled(unary(request)).await;
        self.answer(reply)
    }

    pub async fn delete_rule(&mut self, request: DeleteRuleRequest) -> Result<RuleInfo, Error> {
        let mut operator = self.operator().await?;
        let reply = operator.delete_rule(unary(request)).await;
        self.answer(reply)
    }

    pub async fn test_rules(
        &mut self,
        request: TestRulesRequest,
    ) -> Result<TestRulesResponse, Error> {
        let mut operator = self.operator().await?;
        let reply = operator.test_rules(unary(request)).await;
        self.answer(reply)
    }

    pub async fn delete_schedule(
        &mut self,
        request: DeleteScheduleRequest,
    ) -> Result<DeleteScheduleResponse, Error> {
        let mut operator = self.operator().await?;
        let reply = operator.delete_schedule(unary(request)).await;
        self.answer(reply)
    }

    pub async fn list_audit(
        &mut self,
        request: ListAuditRequest,
    ) -> Result<ListAuditResponse, Error> {
        let mut operator = self.operator().await?;
        let reply = operator.list_audit(unary(request)).await;
        self.answer(reply)
    }

    pub async fn verify_audit(&mut self) -> Result<VerifyAuditResponse, Error> {
        let mut operator = self.operator().await?;
        let reply = operator.verify_audit(unary(VerifyAuditRequest {})).await;
        self.answer(reply)
    }

    pub async fn who_am_i(&mut self) -> Result<WhoAmIResponse, Error> {
        let mut operator = self.operator().await?;
        let reply = operator.who_am_i(unary(WhoAmIRequest {})).await;
        self.answer(reply)
    }

    fn answer<T>(&self, reply: Result<Response<T>, Status>) -> Result<T, Error> {
        reply
            .map(Response::into_inner)
            .map_err(|status| status_error(&self.addr, status))
    }
}

impl Events {
    /// The next event; `None` when the orchestrator closed the stream.
    pub async fn next(&mut self) -> Result<Option<RunEvent>, Error> {
        self.stream
            .message()
            .await
            .map_err(|status| status_error(&self.addr, status))
    }
}

/// A unary request with the per-request timeout (sent to the orchestrator as `grpc-timeout`
/// and enforced here too).
fn unary<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(REQUEST_TIMEOUT);
    request
}

/// A status that the client made up from a local transport failure carries that failure as its
/// source; a status the orchestrator sent has none.
fn status_error(addr: &str, status: Status) -> Error {
    match status.source() {
        Some(source) => Error::Unreachable {
            addr: addr.to_string(),
            cause: cause(source),
        },
        None => Error::Refused(status),
    }
}

/// The most telling part of a transport error chain, in lowercase words
/// (`connection refused`, not `transport error`).
fn cause(error: &(dyn StdError + 'static)) -> String {
    let mut innermost = error;
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<tonic::TimeoutExpired>() {
            return no_answer();
        }
        if let Some(io_error) = error.downcast_ref::<io::Error>() {
            return io_cause(io_error);
        }
        innermost = error;
        current = error.source();
    }
    let text = innermost.to_string();
    // What a plaintext HTTP/2 client reads from a TLS server, depending on timing.
    let tls_server = ["frame with invalid size", "broken pipe"];
    match tls_server.iter().any(|symptom| text.contains(symptom)) {
        true => format!("{text} (if the orchestrator serves TLS, use https:// or HOST:PORT)"),
        false => text,
    }
}

fn no_answer() -> String {
    format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())
}

/// An OS error reads best as its kind (`connection refused`); other IO errors (a failed name
/// lookup) carry their own message.
fn io_cause(error: &io::Error) -> String {
    if error.raw_os_error().is_some() || error.kind() == io::ErrorKind::TimedOut {
        error.kind().to_string()
    } else {
        error.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(tls: Option<bool>, authority: &str) -> Addr {
        Addr {
            tls,
            authority: authority.into(),
        }
    }

    #[test]
    fn addresses_keep_their_scheme_without_trailing_slash() {
        assert_eq!(
            normalize_addr("127.0.0.1:7470"),
            Ok(addr(None, "127.0.0.1:7470"))
        );
        assert_eq!(normalize_addr("[::1]:7470"), Ok(addr(None, "[::1]:7470")));
        assert_eq!(
            normalize_addr("http://10.0.0.5:7470"),
            Ok(addr(Some(false), "10.0.0.5:7470"))
        );
        assert_eq!(
            normalize_addr(" HTTPS://host:1/ "),
            Ok(addr(Some(true), "host:1"))
        );
    }

    #[test]
    fn bad_addresses_are_refused_with_a_reason() {
        let ftp = normalize_addr("ftp://host:7470").unwrap_err();
        assert!(ftp.contains("unsupported scheme `ftp`"), "{ftp}");
        assert!(normalize_addr("").is_err());
        assert!(normalize_addr("http://").is_err());
        assert!(normalize_addr("host name:1").is_err());
    }

    #[test]
    fn tls_follows_the_scheme_or_else_the_folder() {
        let dir = Path::new("tls");
        let plain = target(&addr(None, "h:1"), None).unwrap();
        assert_eq!((plain.url.as_str(), plain.tls), ("http://h:1", None));
        let found = target(&addr(None, "h:1"), Some(dir)).unwrap();
        assert_eq!(found.url, "https://h:1");
        assert_eq!(found.tls.unwrap().ca, dir.join("ca.pem"));
        let forced = target(&addr(Some(false), "h:1"), Some(dir)).unwrap();
        assert_eq!((forced.url.as_str(), forced.tls), ("http://h:1", None));
        let missing = target(&addr(Some(true), "h:1"), None).unwrap_err();
        assert!(matches!(missing, Error::Usage(m) if m.contains("--tls-dir")));
    }

    #[test]
    fn connection_refused_reads_as_words() {
        let error = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(cause(&error), "connection refused");
        let status = Status::from_error(Box::new(io::Error::other("dns failed")));
        assert!(matches!(
            status_error("http://x:1", status),
            Error::Unreachable { .. }
        ));
        let sent = Status::not_found("no such run");
        assert!(matches!(
            status_error("http://x:1", sent),
            Error::Refused(_)
        ));
    }
}
