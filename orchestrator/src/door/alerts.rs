//! Alert and rule requests: ingest a payload (from gRPC, HTTP or a syslog batch), list and read
//! alerts, apply and list rules.
//!
//! Every listener takes a place in one bounded ingestion queue ([`Node::ingest_slot`],
//! `--alerts-in-flight`) before it reads a payload, and one [`Feed`] holds at most its share
//! of the places (`--alerts-in-flight-per-feed`), so that one sender cannot refuse the others;
//! parsing and the rules' templates run outside the engine lock, fates are given under it,
//! the payloads that arrive during one flush in one write ([`Combiner`]).

use std::sync::{Arc, Mutex, PoisonError};

use riposte_playbooks::Diagnostic;
use riposte_playbooks::rules::Rule;
use riposte_telemetry::TraceParent;
use tracing::Instrument;

use super::{Actor, Error, Kind, Node, Request, requests};
use crate::budget::{Over, Places};
use crate::engine::alerts::{Decided, Spent};
use crate::engine::{self, Engine, RuleApplied, limits};
use crate::pending::Pending;
use crate::store::{self, AlertPage, StoredAlert, StoredRule};

requests! {
    IngestAlert,
    IngestBatch,
    ListAlerts,
    GetAlert,
    ApplyRule,
    ListRules,
    GetRule,
    SetRuleEnabled,
    DeleteRule,
    TestRules,
}

/// Where alert payloads come in, each with its own share of the ingestion queue.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Feed {
    /// The HTTP listener, by the secret that admitted the request: `azure-monitor`,
    /// `sentinel`, `defender`, `generic` (every generic endpoint without its own secret) or
    /// `generic/NAME`. One secret, one share, however many endpoints it opens.
    Http(String),
    /// The syslog listeners, UDP and TCP together.
    Syslog,
    /// `IngestAlert` over gRPC (`riposte alerts send`).
    Grpc,
}

impl std::fmt::Display for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Feed::Http(secret) => write!(f, "http/{secret}"),
            Feed::Syslog => f.write_str("syslog"),
            Feed::Grpc => f.write_str("grpc"),
        }
    }
}

/// A place in the ingestion queue ([`Node::ingest_slot`]), held while a payload is read,
/// parsed, stored and flushed.
pub struct IngestSlot {
    _place: Places<Feed>,
}

impl Node {
    /// A place in the ingestion queue for a payload from `feed`, or [`Error::Backlog`] (HTTP
    /// 429, gRPC RESOURCE_EXHAUSTED) while `--alerts-in-flight` payloads hold one or `feed`
    /// holds its share: the sender retries; nothing it was told was accepted is dropped.
    /// Every refusal is counted and logged ([`crate::refusals`]).
    pub fn ingest_slot(&self, feed: Feed) -> Result<IngestSlot, Error> {
        let over = match self.ingesting.try_take(feed.clone()) {
            Ok(place) => return Ok(IngestSlot { _place: place }),
            Err(over) => over,
        };
        let why = match over {
            Over::All { max } => {
                format!("{max} alert payloads are being ingested, the most allowed; retry later")
            }
            Over::Share { share_max, max } => format!(
                "{share_max} alert payloads from {feed} are being ingested, the most one feed \
                 may have of the {max} allowed; retry later"
            ),
        };
        self.ingest_refused.note(&feed, &why);
        Err(Error::Backlog(why))
    }
}

/// Each payload's alerts, durable once their shared write is.
type Fated = Vec<Pending<Vec<StoredAlert>>>;

/// Decided payloads waiting to be written, each request's with where its answer goes: group
/// commit for ingestion. One request at a time holds the turn: it waits out the flush under
/// way, if any, then writes every payload waiting (its own and those queued meanwhile) in one
/// store write, which the next flush takes whole. A request whose payload a turn before it
/// wrote leaves the queue with its answer, without taking the turn: the turn changes hands
/// once per write, not once per request. A storm costs one store transaction per flush, not
/// one per payload; a payload is durable after the same flushes as if written at once (what
/// arrives during a flush could only be flushed by the next one anyway), and a lone payload
/// with no flush under way is written at once.
#[derive(Default)]
pub struct Combiner {
    waiting: Mutex<Vec<Waiting>>,
    turn: tokio::sync::Mutex<()>,
}

struct Waiting {
    batch: Vec<Decided>,
    reply: Reply,
}

impl Combiner {
    fn waiting(&self) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Node {
    /// Gives each payload of `batch` its fate, in order, in a write shared with the requests
    /// queued meanwhile (see [`Combiner`]); answers each payload's alerts.
    async fn ingest_combined(&self, batch: Vec<Decided>) -> Result<Fated, Error> {
        let (reply, mut answer) = tokio::sync::oneshot::channel();
        self.combiner.waiting().push(Waiting { batch, reply });
        let turn = tokio::select! {
            biased;
            // Written by a turn before this one: the request leaves the queue.
            answered = &mut answer => return abandoned_or(answered),
            turn = self.combiner.turn.lock() => turn,
        };
        self.write_waiting().await;
        drop(turn);
        abandoned_or(answer.await)
    }

    /// With the turn: waits out the flush under way, then writes every payload waiting in one
    /// write (none when a turn before took them all).
    async fn write_waiting(&self) {
        let store = self.lock().map(|engine| engine.store().clone());
        if let Ok(store) = store {
            store.between_flushes().await;
        }
        let waiting = std::mem::take(&mut *self.combiner.waiting());
        if waiting.is_empty() {
            return;
        }
        let written = match self.lock() {
            Ok(mut engine) => combine(&mut engine, waiting),
            Err(_) => Written {
                answers: waiting
                    .into_iter()
                    .map(|w| (w.reply, Err(Error::Reopening)))
                    .collect(),
                spent: None,
            },
        };
        // Answered (each a task woken) and freed once the engine is let go.
        for (reply, answer) in written.answers {
            let _ = reply.send(answer);
        }
        drop(written.spent);
    }
}

/// A payload's answer, or why there is none (its write went with a turn that ended early).
fn abandoned_or(
    answer: Result<Result<Fated, Error>, tokio::sync::oneshot::error::RecvError>,
) -> Result<Fated, Error> {
    answer.unwrap_or_else(|_| {
        let why = "the write was abandoned".into();
        Err(engine::Error::Store(store::Error::SharedWriteFailed(why)).into())
    })
}

/// What a write leaves to do once the engine is let go: each request's answer to send, and
/// what to free.
struct Written {
    answers: Vec<(Reply, Result<Fated, Error>)>,
    spent: Option<Spent>,
}

type Reply = tokio::sync::oneshot::Sender<Result<Fated, Error>>;

/// Writes every waiting request's payloads in one write; gives back each one's answer.
fn combine(engine: &mut Engine, waiting: Vec<Waiting>) -> Written {
    let counts: Vec<usize> = waiting.iter().map(|w| w.batch.len()).collect();
    let mut replies = Vec::with_capacity(waiting.len());
    let mut all = Vec::new();
    for w in waiting {
        all.extend(w.batch);
        replies.push(w.reply);
    }
    match engine.ingest_many(all) {
        Ok((fated, spent)) => {
            let mut fated = fated.into_iter();
            let answers = replies
                .into_iter()
                .zip(counts)
                .map(|(reply, count)| (reply, Ok(fated.by_ref().take(count).collect())))
                .collect();
            Written {
                answers,
                spent: Some(spent),
            }
        }
        Err(e) => {
            tracing::error!(error = %e, payloads = counts.iter().sum::<usize>(), "alert.ingest_failed");
            let why: Arc<str> = e.to_string().into();
            let answers = replies
                .into_iter()
                .map(|reply| {
                    let shared = store::Error::SharedWriteFailed(why.clone());
                    (reply, Err(engine::Error::Store(shared).into()))
                })
                .collect();
            Written {
                answers,
                spent: None,
            }
        }
    }
}

/// One alert payload from `source`, in its place in the queue.
pub struct IngestAlert {
    pub slot: IngestSlot,
    pub source: String,
    /// As received: the HTTP body or the gRPC field, never copied on the way in.
    pub payload: bytes::Bytes,
    /// The sender's W3C `traceparent` (HTTP header or gRPC metadata), which the payload's
    /// `alert.received` span continues.
    pub trace: Option<TraceParent>,
}

impl Request for IngestAlert {
    /// Each alert of the payload with its fate, once durable.
    type Reply = Vec<StoredAlert>;
    const KIND: Kind = Kind::IngestAlert;

    async fn serve(self, node: &Arc<Node>, _actor: &Actor) -> Result<Vec<StoredAlert>, Error> {
        let _slot = self.slot;
        let (rules, traced) = node.rules.now().ok_or(Error::Reopening)?;
        let span = received(traced, &self.source, self.trace);
        async move {
            let decided = engine::alerts::decide(
                &self.source,
                self.payload.clone(),
                &rules,
                TraceParent::current(),
            )?;
            let mut fated = node.ingest_combined(vec![decided]).await?;
            let pending = fated.pop().expect("one answer per payload");
            let alerts = node.durable(pending).await?;
            for a in &alerts {
                tracing::info!(alert = %a.id, source = %a.source, fate = ?a.fate, "alert.ingested");
            }
            Ok(alerts)
        }
        .instrument(span)
        .await
    }
}

/// The span of a payload's arrival from `source`, continuing the sender's trace if any;
/// none while traces are not exported (`traced`).
fn received(traced: bool, source: &str, parent: Option<TraceParent>) -> tracing::Span {
    if !traced {
        return tracing::Span::none();
    }
    let span = tracing::info_span!("alert.received", riposte.alert.source = %source);
    if let Some(parent) = parent {
        parent.adopt_by(&span);
    }
    span
}

/// Single-message payloads from a stream listener (syslog, [`Feed::Syslog`]). Waits for room in
/// the ingestion queue rather than refusing (the sender is slowed down, nothing read is
/// dropped): for at least one place and takes up to one per payload, as many as are free for
/// the feed; ingests them in one write and waits until it is durable.
pub struct IngestBatch {
    pub source: String,
    pub payloads: Vec<Vec<u8>>,
}

impl Request for IngestBatch {
    /// Why each refused payload was refused.
    type Reply = Vec<String>;
    const KIND: Kind = Kind::IngestBatch;

    async fn serve(self, node: &Arc<Node>, _actor: &Actor) -> Result<Vec<String>, Error> {
        let _places = node.ingesting.take(Feed::Syslog, self.payloads.len()).await;
        let mut refused = Vec::new();
        let (rules, traced) = node.rules.now().ok_or(Error::Reopening)?;
        let mut decided = Vec::with_capacity(self.payloads.len());
        for payload in self.payloads {
            // Each message is an arrival of its own, the root of its trace.
            let span = received(traced, &self.source, None);
            let trace = span.in_scope(TraceParent::current);
            match engine::alerts::decide(&self.source, payload.into(), &rules, trace) {
                Ok(d) => decided.push(d),
                Err(e) => refused.push(e.to_string()),
            }
        }
        if decided.is_empty() {
            return Ok(refused);
        }
        // One write for the batch: the last payload durable means all are.
        let fated = node.ingest_combined(decided).await?;
        if let Some(pending) = fated.into_iter().last() {
            node.durable(pending).await?;
        }
        Ok(refused)
    }
}

/// The newest alerts.
pub struct ListAlerts {
    /// The alert the previous page ended with; `None` for the first page.
    pub before: Option<uuid::Uuid>,
    /// 0: the default page.
    pub limit: usize,
}

impl Request for ListAlerts {
    type Reply = AlertPage;
    const KIND: Kind = Kind::ListAlerts;

    async fn serve(self, node: &Arc<Node>, _actor: &Actor) -> Result<AlertPage, Error> {
        // Read from the store without the engine's lock: every committed alert is there.
        let store = node.lock()?.store().clone();
        let limit = match self.limit {
            0 => limits::ALERTS_LIST_DEFAULT,
            n => n.min(limits::LIST_MAX),
        };
        let read = move || store.alerts_page(self.before, limit);
        Ok(super::blocking(read).await.map_err(engine::Error::Store)?)
    }
}

/// One alert with its payload as received.
pub struct GetAlert {
    pub id: uuid::Uuid,
}

impl Request for GetAlert {
    type Reply = StoredAlert;
    const KIND: Kind = Kind::GetAlert;

    async fn serve(self, node: &Arc<Node>, _actor: &Actor) -> Result<StoredAlert, Error> {
        Ok(node.lock()?.alerts.get(self.id)?)
    }
}

/// Stores (or replaces) a rule from its YAML source.
pub struct ApplyRule {
    pub source: String,
}

/// What applying a rule did.
pub enum RuleOutcome {
    /// The source is invalid: every problem, nothing changed.
    Invalid(Vec<Diagnostic>),
    /// The rule as applied (`None` if it was replaced again meanwhile).
    Applied(Option<Box<(Rule, StoredRule)>>),
}

impl Request for ApplyRule {
    type Reply = RuleOutcome;
    const KIND: Kind = Kind::ApplyRule;

    fn target(&self) -> String {
        super::source_name(&self.source)
    }

    async fn serve(self, node: &Arc<Node>, actor: &Actor) -> Result<RuleOutcome, Error> {
        let outcome = node.lock_for(actor)?.alerts.apply_rule(&self.source)?;
        match outcome {
            RuleApplied::Invalid(diagnostics) => Ok(RuleOutcome::Invalid(diagnostics)),
            RuleApplied::Applied(pending) => {
                let stored = node.durable(pending).await?;
                let rule = node
                    .lock()?
                    .alerts
                    .list_rules()
                    .into_iter()
                    .find(|(r, _)| r.name == stored.name);
                Ok(RuleOutcome::Applied(rule.map(Box::new)))
            }
        }
    }
}

/// The rules in evaluation order.
pub struct ListRules;

impl Request for ListRules {
    type Reply = Vec<(Rule, StoredRule)>;
    const KIND: Kind = Kind::ListRules;

    async fn serve(self, node: &Arc<Node>, _actor: &Actor) -> Result<Self::Reply, Error> {
        Ok(node.lock()?.alerts.list_rules())
    }
}

/// One rule by name, with its source.
pub struct GetRule {
    pub name: String,
}

impl Request for GetRule {
    type Reply = (Rule, StoredRule);
    const KIND: Kind = Kind::GetRule;

    async fn serve(self, node: &Arc<Node>, _actor: &Actor) -> Result<Self::Reply, Error> {
        Ok(node.lock()?.alerts.rule(&self.name)?)
    }
}

/// Disables or enables a rule; doing it twice changes nothing.
pub struct SetRuleEnabled {
    pub name: String,
    pub enabled: bool,
    pub reason: String,
}

impl Request for SetRuleEnabled {
    type Reply = (Rule, StoredRule);
    const KIND: Kind = Kind::SetRuleEnabled;

    fn target(&self) -> String {
        self.name.clone()
    }

    async fn serve(self, node: &Arc<Node>, actor: &Actor) -> Result<Self::Reply, Error> {
        let pending = node.lock_for(actor)?.alerts.set_rule_enabled(
            &self.name,
            self.enabled,
            actor.id(),
            self.reason,
        )?;
        node.durable(pending).await
    }
}

/// Deletes a rule; answers it as it was.
pub struct DeleteRule {
    pub name: String,
}

impl Request for DeleteRule {
    type Reply = (Rule, StoredRule);
    const KIND: Kind = Kind::DeleteRule;

    fn target(&self) -> String {
        self.name.clone()
    }

    async fn serve(self, node: &Arc<Node>, actor: &Actor) -> Result<Self::Reply, Error> {
        let pending = node.lock_for(actor)?.alerts.delete_rule(&self.name)?;
        node.durable(pending).await
    }
}

/// What the enabled rules would do with each alert of a payload; nothing is stored or
/// started. The payload is parsed and the rules evaluated outside the engine's lock.
pub struct TestRules {
    pub source: String,
    pub payload: Vec<u8>,
}

impl Request for TestRules {
    type Reply = Vec<engine::Verdict>;
    const KIND: Kind = Kind::TestRules;

    async fn serve(self, node: &Arc<Node>, _actor: &Actor) -> Result<Self::Reply, Error> {
        let (rules, _) = node.rules.now().ok_or(Error::Reopening)?;
        let decided = engine::alerts::decide(&self.source, self.payload.into(), &rules, None)?;
        Ok(node.lock()?.test_rules(decided)?)
    }
}
