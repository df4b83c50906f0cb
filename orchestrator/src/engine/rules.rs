//! Alert rules in the engine: apply, disable and enable, delete, read, and test a payload
//! against them without storing or starting anything. Every change replaces the shared list
//! the alerts are decided against (the enabled rules, in evaluation order) in one step, and
//! publishes it where payloads read it without the engine's lock ([`SharedRules`]).

use std::sync::{Arc, PoisonError, RwLock};

use riposte_playbooks::Diagnostic;
use riposte_playbooks::rules::{self, Decision, Rule};
use riposte_scheduler::state::RunId;
use serde_json::Value;

use super::alerts::{AlertRules, Decided, Effects, Hold};
use super::{Alerts, Error, Runs, check_len};
use crate::pending::Pending;
use crate::store::{AlertFate, Disabled, StoredRule};

/// The rules alerts are decided against, readable without the engine's lock: every payload
/// takes them as it arrives, while a write may hold the lock for a millisecond, and a request
/// that waited for the lock there would hold one of the runtime's worker threads all along.
/// The engine publishes them at every change, with whether traces are exported; the door
/// hands the same cell to an engine opened afresh. Empty while there is no engine.
#[derive(Clone, Default)]
pub struct SharedRules(Arc<RwLock<Option<(AlertRules, bool)>>>);

impl SharedRules {
    /// The rules now, and whether traces are exported; `None` while there is no engine.
    pub fn now(&self) -> Option<(AlertRules, bool)> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Empties the cell (the engine is gone).
    pub fn clear(&self) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn set(&self, rules: AlertRules, traced: bool) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Some((rules, traced));
    }
}

/// What applying a rule did.
pub enum RuleApplied {
    /// The source is invalid: every problem, nothing changed.
    Invalid(Vec<Diagnostic>),
    Applied(Pending<Box<StoredRule>>),
}

/// What the rules would do with one alert of a tested payload, as an ingest would decide it
/// now.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The normalised alert, as rules see it.
    pub alert: Value,
    pub fate: AlertFate,
    /// The rule that matched (empty when none did).
    pub rule: String,
    /// The playbook it would start, `NAME@VERSION` (`@0`: the latest), when one matched.
    pub playbook: String,
    /// The run parameters it would pass, once rendered.
    pub params: Option<Value>,
    pub dedup_key: Option<String>,
    /// The run that would absorb it (deduplicated).
    pub run_id: Option<RunId>,
    /// Why, in words.
    pub detail: String,
}

impl Alerts {
    /// Replaces every rule: `all` sorted into evaluation order, and the enabled ones shared.
    pub(super) fn set_rules(&mut self, mut all: Vec<(Rule, StoredRule)>) {
        all.sort_by(|(a, _), (b, _)| (a.order, &a.name).cmp(&(b.order, &b.name)));
        let enabled = all.iter().filter(|(_, s)| s.disabled.is_none()).cloned();
        self.rules = Arc::new(enabled.collect());
        self.all = all;
        if let Some((shared, traced)) = &self.shared {
            shared.set(self.rules(), *traced);
        }
    }

    /// Publishes the rules into `shared`, now and at every change.
    pub(super) fn share(&mut self, shared: SharedRules, traced: bool) {
        shared.set(self.rules(), traced);
        self.shared = Some((shared, traced));
    }

    /// Stores (or replaces) a rule from its YAML source; a disabled rule stays disabled.
    pub fn apply_rule(&mut self, source: &str) -> Result<RuleApplied, Error> {
        let rule = match rules::parse(source, &self.renderer) {
            Ok(rule) => rule,
            Err(diagnostics) => return Ok(RuleApplied::Invalid(diagnostics)),
        };
        let existing = self.all.iter().find(|(r, _)| r.name == rule.name);
        if existing.is_none() && self.all.len() >= rules::limits::RULES_MAX {
            return Err(Error::ResourceExhausted(format!(
                "{} rules exist, the most allowed",
                rules::limits::RULES_MAX
            )));
        }
        let stored = StoredRule {
            name: rule.name.clone(),
            source: source.to_string(),
            applied_at_ms: self.clock.now_ms(),
            disabled: existing.and_then(|(_, s)| s.disabled.clone()),
        };
        let seq = self.store.put_rule(&stored)?;
        self.replace(&rule.name.clone(), Some((rule, stored.clone())));
        Ok(RuleApplied::Applied(Pending::new(Box::new(stored), seq)))
    }

    /// Disables (no alert matches it) or enables a rule, recording who and why.
    pub fn set_rule_enabled(
        &mut self,
        name: &str,
        enabled: bool,
        who: String,
        reason: String,
    ) -> Result<Pending<(Rule, StoredRule)>, Error> {
        check_len("reason", &reason)?;
        let (rule, stored) = self.rule(name)?;
        if stored.disabled.is_none() == enabled {
            return Ok(Pending::unchanged(&self.store, (rule, stored)));
        }
        let mut stored = stored;
        stored.disabled = (!enabled).then(|| Disabled {
            by: who,
            at_ms: self.clock.now_ms(),
            reason,
        });
        let seq = self.store.put_rule(&stored)?;
        self.replace(name, Some((rule.clone(), stored.clone())));
        tracing::info!(rule = %name, enabled, "rule.enabled_changed");
        Ok(Pending::new((rule, stored), seq))
    }

    /// Deletes a rule; alerts already decided by it keep their fate and run.
    pub fn delete_rule(&mut self, name: &str) -> Result<Pending<(Rule, StoredRule)>, Error> {
        let deleted = self.rule(name)?;
        let seq = self.store.delete_rule(name)?;
        self.replace(name, None);
        tracing::info!(rule = %name, "rule.deleted");
        Ok(Pending::new(deleted, seq))
    }

    /// One rule by name.
    pub fn rule(&self, name: &str) -> Result<(Rule, StoredRule), Error> {
        self.all
            .iter()
            .find(|(r, _)| r.name == name)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("no rule named `{name}`")))
    }

    /// Every rule, disabled ones too, in evaluation order.
    pub fn list_rules(&self) -> Vec<(Rule, StoredRule)> {
        self.all.clone()
    }

    fn replace(&mut self, name: &str, rule: Option<(Rule, StoredRule)>) {
        let mut all = std::mem::take(&mut self.all);
        all.retain(|(r, _)| r.name != name);
        all.extend(rule);
        self.set_rules(all);
    }

    /// What an ingest would decide now for each alert of `decided` (dedup windows, budgets
    /// and the playbook's parameter checks included), without storing or starting anything.
    pub fn test(&self, runs: &mut Runs, decided: Decided) -> Result<Vec<Verdict>, Error> {
        let now_ms = self.clock.now_ms();
        let rules = decided.rules;
        decided
            .alerts
            .into_iter()
            .map(|(_, view, decision)| {
                let mut json = view.json;
                if let Some(alert) = json.as_object_mut() {
                    alert.remove("raw");
                }
                let mut verdict = Verdict {
                    alert: json,
                    fate: AlertFate::MatchedNothing,
                    rule: String::new(),
                    playbook: String::new(),
                    params: None,
                    dedup_key: None,
                    run_id: None,
                    detail: "matches no enabled rule".into(),
                };
                let (index, params, dedup_key) = match decision {
                    Decision::Nothing => return Ok(verdict),
                    Decision::Refused { index, reason } => {
                        verdict.rule = rules[index].0.name.clone();
                        verdict.fate = AlertFate::StartRefused;
                        verdict.detail = reason;
                        return Ok(verdict);
                    }
                    Decision::Start {
                        index,
                        params,
                        dedup_key,
                    } => (index, params, dedup_key),
                };
                let rule = &rules[index].0;
                verdict.rule = rule.name.clone();
                verdict.playbook = format!("{}@{}", rule.playbook, rule.version.unwrap_or(0));
                verdict.dedup_key = dedup_key.clone();
                let (fate, run_id, detail) =
                    self.would(runs, rule, &params, dedup_key.as_deref(), now_ms)?;
                verdict.params = Some(Value::Object(params));
                (verdict.fate, verdict.run_id, verdict.detail) = (fate, run_id, detail);
                Ok(verdict)
            })
            .collect()
    }

    /// The fate a started alert would get: held back as an ingest would hold it (dedup key,
    /// budget), refused by the playbook's checks, or a new run.
    fn would(
        &self,
        runs: &mut Runs,
        rule: &Rule,
        params: &serde_json::Map<String, Value>,
        dedup_key: Option<&str>,
        now_ms: i64,
    ) -> Result<(AlertFate, Option<RunId>, String), Error> {
        let effects = Effects::default();
        if let Hold::Held(held) = self.held_back(&effects, rule, dedup_key, now_ms)? {
            return Ok((held.fate, held.run_id, held.detail));
        }
        let checked = runs
            .playbook(&rule.playbook, rule.version.unwrap_or(0))
            .and_then(|playbook| {
                playbook
                    .coerce_params(params)
                    .map_err(|problems| Error::InvalidArgument(problems.join("; ")))
            });
        Ok(match checked {
            Ok(_) => (AlertFate::Started, None, "would start a run".into()),
            Err(Error::Store(e)) => return Err(Error::Store(e)),
            Err(e) => (
                AlertFate::StartRefused,
                None,
                format!("would be refused: {e}"),
            ),
        })
    }
}
