//! Alerts in the engine: a payload from a listener is parsed by the pure core
//! ([`riposte_ingest::parse`]); each alert it yields is run through the rules
//! ([`rules::decide`]) and gets its fate: a run started, coalesced into the run its dedup key
//! holds, suppressed by its rule's budget, a start refused, or no match. The alerts, the runs
//! they started, the dedup entries and the budget counts are one store transaction; the
//! caller acknowledges only once it is durable.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use riposte_playbooks::Renderer;
use serde_json::Value;

use super::pollers::Pollers;
use super::{Error, Prepared, Runs, StartRequest, limits};
use crate::clock::Clock;
use crate::pending::Pending;
use crate::store::{
    self, AlertFate, AlertWrite, BudgetState, DedupEntry, DedupExpiry, PollWrite, Store,
    StoredAlert, StoredRule,
};
use riposte_ingest::{self as ingest, Format, GenericMapping};
use riposte_playbooks::rules::{self, Decision, Rule};
use riposte_scheduler::state::RunId;
use riposte_telemetry::TraceParent;

/// An alert's fate as decided, with what it writes.
pub(super) struct Fated {
    pub(super) fate: AlertFate,
    rule: String,
    pub(super) run_id: Option<RunId>,
    pub(super) detail: String,
}

/// Whether a started alert is held back, and if not the rule's budget count to add it to.
pub(super) enum Hold {
    Held(Fated),
    Free(Option<BudgetState>),
}

/// What one payload's alerts write besides themselves.
#[derive(Default)]
pub(super) struct Effects {
    transitions: Vec<riposte_scheduler::Transition>,
    /// (rule, key) -> entry
    dedup: HashMap<(String, String), DedupEntry>,
    budgets: HashMap<String, BudgetState>,
}

/// The field mapping of the `generic` source: flat JSON objects with these keys.
const GENERIC_MAPPING_JSON: &str = r#"{
    "id": "id",
    "title": "title",
    "description": "description",
    "severity": "severity",
    "time": "time",
    "status": "status",
    "dedup": "dedup_key"
}"#;

/// The views the rules saw of a write's alerts (emptied for those that started a run, most of a
/// storm starting none): freeing them is a good part of a write's time, which its caller
/// spends after it lets go of the engine.
#[must_use = "dropped where the caller holds no lock"]
pub struct Spent(#[expect(dead_code, reason = "only ever dropped")] Vec<View>);

/// An alert as the rules saw it, which becomes the trigger of a run it starts.
#[derive(Default)]
pub(super) struct View {
    /// The alert as JSON; with `raw` when some rule may read it.
    pub(super) json: Value,
    /// `raw`, when no rule reads it: added to the trigger of a run the alert starts, and
    /// for the alerts of a storm that start none never parsed (see [`ingest::Raw`]).
    raw: Option<ingest::Raw>,
}

impl View {
    /// The trigger of a run the alert starts: the alert with its `raw`.
    fn into_trigger(self) -> Value {
        let mut json = self.json;
        if let Some(raw) = self.raw {
            json["raw"] = raw.into_value();
        }
        json
    }
}

/// The sources an alert may be sent from, by their endpoint name: part of the wire API.
pub use riposte_proto::ALERT_SOURCES as SOURCES;

/// What alerts are decided against: the rules as they are now, and their environment.
#[derive(Clone)]
pub struct AlertRules {
    pub(super) rules: Arc<Vec<(Rule, StoredRule)>>,
    renderer: Arc<Renderer>,
    /// The engine's clock, which stamps the receive time.
    clock: Clock,
}

/// One payload parsed and each of its alerts decided by the rules, without the engine: what
/// [`Alerts::ingest_all`] gives a fate and stores.
pub struct Decided {
    pub(super) source: String,
    received_ms: i64,
    /// As received (shared with the request, not copied); packed with the others of its
    /// write when stored ([`store::pack`]).
    payload: bytes::Bytes,
    pub(super) rules: Arc<Vec<(Rule, StoredRule)>>,
    /// Each alert (without `raw`), as the rules saw it, and their decision.
    pub(super) alerts: Vec<(ingest::Alert, View, Decision)>,
    /// The span of the payload's arrival (`alert.received`), while traces are exported.
    trace: Option<TraceParent>,
}

/// Parses one payload from `source` and runs each alert through `rules` (pure but for the
/// clock the rules carry: it reads the receive time). A payload that does not parse is refused here.
/// `trace` is the span of its arrival.
pub fn decide(
    source: &str,
    payload: bytes::Bytes,
    rules: &AlertRules,
    trace: Option<TraceParent>,
) -> Result<Decided, Error> {
    let format = format_of(source)?;
    // Stored under the source's one spelling (`azure_monitor`, whatever name it came by).
    let source = riposte_proto::alert_source(source).map_or(source, |(name, _)| name);
    let alerts = ingest::parse(&format, &payload).map_err(ingest_error)?;
    Ok(decide_parsed(source, payload, alerts, rules, trace))
}

/// Runs each alert parsed from `payload` through `rules` (see [`decide`]).
pub(super) fn decide_parsed(
    source: &str,
    payload: bytes::Bytes,
    alerts: Vec<ingest::Alert>,
    rules: &AlertRules,
    trace: Option<TraceParent>,
) -> Decided {
    let reads_raw = rules.rules.iter().any(|(r, _)| r.reads_raw);
    let alerts = alerts
        .into_iter()
        .map(|mut alert| {
            // The rules and a started run's trigger see `raw`; the stored alert does not
            // (the payload is kept as received), so it is moved, not copied.
            // `raw` (the vendor payload, often most of the alert) is converted for the
            // templates only when some rule may read it.
            let raw = std::mem::take(&mut alert.raw);
            let mut json = serde_json::to_value(&alert).expect("an alert serializes");
            let raw = if reads_raw {
                json["raw"] = raw.into_value();
                None
            } else {
                Some(raw)
            };
            let decision =
                rules::decide(rules.rules.iter().map(|(r, _)| r), &rules.renderer, &json);
            (alert, View { json, raw }, decision)
        })
        .collect();
    Decided {
        source: source.to_string(),
        received_ms: rules.clock.now_ms(),
        payload,
        rules: rules.rules.clone(),
        alerts,
        trace,
    }
}

/// The alerts: their rules, and the bookkeeping of what the store holds of them.
pub struct Alerts {
    pub(super) store: Store,
    pub(super) clock: Clock,
    /// Alerts held in the store (counted once, then kept in step).
    held: Option<usize>,
    /// The stored dedup entries, soonest expiry first (read once at start, then kept in
    /// step): removing the expired ones reads those alone. A key given a later window keeps
    /// its earlier expiry here too, until that one is taken and found replaced.
    dedup_expiries: BinaryHeap<Reverse<DedupExpiry>>,
    /// The enabled rules in evaluation order, with their stored sources: what alerts are
    /// decided against, shared with the alerts being decided outside the lock (replaced on
    /// every change, see `engine::rules`).
    pub(super) rules: Arc<Vec<(Rule, StoredRule)>>,
    /// Every rule, disabled ones too, in evaluation order.
    pub(super) all: Vec<(Rule, StoredRule)>,
    /// The sandboxed template environment rules are evaluated in.
    pub(super) renderer: Arc<Renderer>,
    /// The alert pollers and their claims.
    pub(crate) pollers: Pollers,
    /// Where the rules are published at every change, with whether traces are exported.
    pub(super) shared: Option<(super::SharedRules, bool)>,
}

impl Alerts {
    /// The rules alerts are decided against now (cheap: shared, copied on write).
    pub fn rules(&self) -> AlertRules {
        AlertRules {
            rules: self.rules.clone(),
            renderer: self.renderer.clone(),
            clock: self.clock.clone(),
        }
    }

    /// Gives each alert of the decided payloads its fate (dedup, budget, start), in order,
    /// and stores them all in one write (with a poller's page when `poll` is given); answers
    /// the stored alerts and the write to wait on before acknowledging.
    pub(super) fn ingest_all(
        &mut self,
        runs: &mut Runs,
        batch: Vec<Decided>,
        poll: Option<PollWrite<'_>>,
    ) -> Result<(Pending<Vec<StoredAlert>>, Spent), Error> {
        let mut effects = Effects::default();
        let alerts: usize = batch.iter().map(|d| d.alerts.len()).sum();
        let mut spent = Vec::with_capacity(alerts);
        let mut stored = Vec::with_capacity(alerts);
        let mut payloads = Vec::with_capacity(batch.len());
        let mut received_ms = self.clock.now_ms();
        for decided in batch {
            let Decided {
                source,
                received_ms: received,
                payload,
                rules,
                alerts,
                trace,
            } = decided;
            received_ms = received;
            let first = stored.len();
            for (index, (alert, mut view, decision)) in alerts.into_iter().enumerate() {
                // The rule's decision on this alert: the span a run it starts continues.
                let decided = trace.map(|t| t.child(&format!("rule.decided/{index}")));
                let fated = self.fate(
                    runs,
                    &rules,
                    (&mut view, decision),
                    received_ms,
                    &mut effects,
                    decided,
                )?;
                spent.push(view);
                let id = self.clock.new_alert_id();
                stored.push(StoredAlert {
                    id,
                    source: source.clone(),
                    received_ms,
                    alert,
                    payload: String::new(),
                    payload_id: None,
                    payload_index: None,
                    fate: fated.fate,
                    run_id: fated.run_id,
                    rule: fated.rule,
                    detail: fated.detail,
                    trace: decided.map(|t| t.to_string()),
                });
                if let Some(alert) = stored.last() {
                    runs.observer.alert(alert, trace, decided);
                }
            }
            payloads.push((first..stored.len(), payload));
        }
        let payloads = store::pack(&mut stored, &payloads);
        let dedup: Vec<(&str, &str, DedupEntry)> = effects
            .dedup
            .iter()
            .map(|((rule, key), entry)| (rule.as_str(), key.as_str(), *entry))
            .collect();
        let write = AlertWrite {
            alerts: &stored,
            payloads: &payloads,
            dedup,
            budgets: effects
                .budgets
                .iter()
                .map(|(rule, state)| (rule.as_str(), *state))
                .collect(),
            poll,
        };
        let seq = runs.commit_with(effects.transitions, |store, writes| {
            store.put_alerts(writes, &write)
        })?;
        self.dedup_expiries.extend(
            (write.dedup.iter())
                .map(|(rule, key, entry)| Reverse(DedupExpiry::new(rule, key, entry))),
        );
        self.keep_alerts_bounded(stored.len())?;
        self.remove_expired_dedup(received_ms)?;
        Ok((Pending::new(stored, seq), Spent(spent)))
    }

    /// Removes the dedup entries expired at `now_ms` (after each write): those at the front
    /// of the expiry order, read alone. Under the engine's lock, so its time is what expired,
    /// not every key a window still holds.
    fn remove_expired_dedup(&mut self, now_ms: i64) -> Result<(), Error> {
        let mut expired = Vec::new();
        while let Some(Reverse(first)) = self.dedup_expiries.peek()
            && first.expires_ms <= now_ms
        {
            expired.extend(self.dedup_expiries.pop().map(|Reverse(e)| e));
        }
        if expired.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.store.remove_expired_dedup(&expired, now_ms) {
            // Taken again after the next write.
            self.dedup_expiries.extend(expired.into_iter().map(Reverse));
            return Err(e.into());
        }
        Ok(())
    }

    /// Decides one alert's fate; a run it starts is prepared into `effects`.
    fn fate(
        &mut self,
        runs: &mut Runs,
        rules: &[(Rule, StoredRule)],
        (view, decision): (&mut View, Decision),
        now_ms: i64,
        effects: &mut Effects,
        trace: Option<TraceParent>,
    ) -> Result<Fated, Error> {
        let (index, params, dedup_key) = match decision {
            Decision::Nothing => return Ok(fated(AlertFate::MatchedNothing, "", None, "")),
            Decision::Refused { index, reason } => {
                return Ok(fated(
                    AlertFate::StartRefused,
                    &rules[index].0.name,
                    None,
                    &reason,
                ));
            }
            Decision::Start {
                index,
                params,
                dedup_key,
            } => (index, params, dedup_key),
        };
        let rule = &rules[index].0;
        let budget = match self.held_back(effects, rule, dedup_key.as_deref(), now_ms)? {
            Hold::Held(fated) => return Ok(fated),
            Hold::Free(budget) => budget,
        };
        let request = StartRequest {
            playbook: rule.playbook.clone(),
            version: rule.version.unwrap_or(0),
            params,
            idempotency_key: String::new(),
            requested_by: crate::auth::Principal::rule(&rule.name).id,
            dry_run: false,
            trigger: std::mem::take(view).into_trigger(),
            trace,
        };
        let id = match runs.prepare_start(request) {
            Ok(Prepared::New { id, transition, .. }) => {
                effects.transitions.push(transition);
                id
            }
            Ok(Prepared::Existing(run)) => run.id,
            Err(Error::Store(e)) => return Err(Error::Store(e)),
            Err(e) => {
                return Ok(fated(
                    AlertFate::StartRefused,
                    &rule.name,
                    None,
                    &e.to_string(),
                ));
            }
        };
        if let (Some(key), Some(d)) = (dedup_key, &rule.dedup) {
            let entry = DedupEntry {
                run_id: id,
                expires_ms: now_ms + d.window_ms,
            };
            effects.dedup.insert((rule.name.clone(), key), entry);
        }
        if let Some(mut state) = budget {
            state.runs += 1;
            effects.budgets.insert(rule.name.clone(), state);
        }
        Ok(fated(AlertFate::Started, &rule.name, Some(id), ""))
    }

    /// The run a rule's dedup key holds at `now_ms`, if any (this payload's first).
    /// Whether an alert its rule would start a run for is held back: coalesced into the run
    /// its dedup key holds, or suppressed by the rule's budget.
    pub(super) fn held_back(
        &self,
        effects: &Effects,
        rule: &Rule,
        dedup_key: Option<&str>,
        now_ms: i64,
    ) -> Result<Hold, Error> {
        if let Some(key) = dedup_key
            && let Some(held) = self.dedup_held(effects, &rule.name, key, now_ms)?
        {
            let detail = format!("deduplicated into run {held} (key `{key}`)");
            let fated = fated(AlertFate::Deduplicated, &rule.name, Some(held), &detail);
            return Ok(Hold::Held(fated));
        }
        let budget = self.budget_now(effects, rule, now_ms)?;
        if let (Some(limit), Some(state)) = (rule.budget, budget)
            && state.runs >= limit.runs
        {
            let detail = format!(
                "suppressed by budget ({} runs per {} ms)",
                limit.runs, limit.per_ms
            );
            let fated = fated(AlertFate::SuppressedByBudget, &rule.name, None, &detail);
            return Ok(Hold::Held(fated));
        }
        Ok(Hold::Free(budget))
    }

    fn dedup_held(
        &self,
        effects: &Effects,
        rule: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<RunId>, Error> {
        let entry = match effects.dedup.get(&(rule.to_string(), key.to_string())) {
            Some(entry) => Some(*entry),
            None => self.store.dedup_entry(rule, key)?,
        };
        Ok(entry.filter(|e| e.expires_ms > now_ms).map(|e| e.run_id))
    }

    /// The rule's budget count in the period containing `now_ms` (`None`: no budget).
    fn budget_now(
        &self,
        effects: &Effects,
        rule: &Rule,
        now_ms: i64,
    ) -> Result<Option<BudgetState>, Error> {
        let Some(budget) = rule.budget else {
            return Ok(None);
        };
        let state = match effects.budgets.get(&rule.name) {
            Some(state) => *state,
            None => self.store.budget(&rule.name)?,
        };
        let period_start_ms = now_ms - now_ms.rem_euclid(budget.per_ms);
        Ok(Some(in_period(state, period_start_ms)))
    }

    /// Loads every stored rule (an unloadable one is logged and left out).
    pub(super) fn open(
        store: &Store,
        clock: &Clock,
        settings: &super::Settings,
    ) -> Result<Alerts, Error> {
        let pollers = Pollers::open(store, &settings.pollers, clock.now_ms(), settings.lease)?;
        let mut alerts = Alerts {
            store: store.clone(),
            clock: clock.clone(),
            pollers,
            held: None,
            dedup_expiries: BinaryHeap::new(),
            rules: Arc::new(Vec::new()),
            all: Vec::new(),
            renderer: Arc::new(Renderer::new()),
            shared: None,
        };
        let mut all = Vec::new();
        for stored in store.rules()? {
            match rules::parse(&stored.source, &alerts.renderer) {
                Ok(rule) => all.push((rule, stored)),
                Err(d) => tracing::error!(
                    rule = %stored.name,
                    error = %d.first().map(|d| d.message.clone()).unwrap_or_default(),
                    "rule.unloadable"
                ),
            }
        }
        alerts.set_rules(all);
        let kept = store.prune_dedup(clock.now_ms())?;
        alerts.dedup_expiries = kept.into_iter().map(Reverse).collect();
        Ok(alerts)
    }

    /// Drops the oldest alerts beyond [`limits::ALERTS_KEPT`].
    fn keep_alerts_bounded(&mut self, added: usize) -> Result<(), Error> {
        let held = match self.held {
            Some(held) => held + added,
            None => self.store.alerts_len()?,
        };
        let removed = if held > limits::ALERTS_KEPT {
            self.store.prune_alerts(held - limits::ALERTS_KEPT)?
        } else {
            0
        };
        self.held = Some(held - removed);
        Ok(())
    }

    /// One alert by id.
    pub fn get(&self, id: uuid::Uuid) -> Result<StoredAlert, Error> {
        self.store
            .alert(id)?
            .ok_or_else(|| Error::NotFound(format!("no alert {id}")))
    }
}

fn fated(fate: AlertFate, rule: &str, run_id: Option<RunId>, detail: &str) -> Fated {
    Fated {
        fate,
        rule: rule.to_string(),
        run_id,
        detail: detail.to_string(),
    }
}

/// The parser for a source name.
fn format_of(source: &str) -> Result<Format, Error> {
    match source {
        "azure_monitor" | "azure-monitor" => Ok(Format::AzureMonitor),
        "sentinel" => Ok(Format::Sentinel),
        "defender" => Ok(Format::Defender),
        "cef" => Ok(Format::Cef),
        "syslog" => Ok(Format::Syslog),
        "generic" => {
            let mapping = GenericMapping::from_json(GENERIC_MAPPING_JSON)
                .expect("the built-in mapping is valid");
            Ok(Format::Generic(Box::new(mapping)))
        }
        other => Err(Error::InvalidArgument(format!(
            "unknown alert source `{}` (one of {})",
            ingest::alert::truncate(other, 64),
            SOURCES.join(", ")
        ))),
    }
}

/// A payload over a size limit is RESOURCE_EXHAUSTED; any other refusal is INVALID_ARGUMENT.
fn ingest_error(error: ingest::Error) -> Error {
    match error {
        ingest::Error::PayloadTooLarge { .. }
        | ingest::Error::TooLong { .. }
        | ingest::Error::TooManyEntities { .. }
        | ingest::Error::TooManyAlerts { .. } => Error::ResourceExhausted(error.to_string()),
        other => Error::InvalidArgument(format!("invalid alert: {other}")),
    }
}

/// A rule's budget count for an alert received in the period starting at `period_start_ms`.
/// A new period starts from zero; a budget never goes back to an earlier period: alerts
/// decided just before a period ended may be given their fate just after one received in the
/// next (concurrent payloads share a write), and they count in the later period.
fn in_period(state: BudgetState, period_start_ms: i64) -> BudgetState {
    if state.period_start_ms >= period_start_ms {
        return state;
    }
    BudgetState {
        period_start_ms,
        runs: 0,
    }
}

#[cfg(test)]
mod tests;
