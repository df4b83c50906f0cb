//! Alerts in the store: each alert with its fate (`alerts`, the payload beside its first
//! alert), rules (`rules`), dedup entries (`alert_dedup`) and budget counts (`rule_budget`).

use super::*;

/// What became of an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertFate {
    /// No rule matched it.
    MatchedNothing,
    /// Its rule started `run_id`.
    Started,
    /// Its rule's dedup key was held within the window: coalesced into `run_id`.
    Deduplicated,
    /// Its rule had started its budget of runs this period.
    SuppressedByBudget,
    /// Its rule matched but the run could not start (`detail` says why).
    StartRefused,
}

/// A rule as applied: its YAML source (parsed again when loaded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRule {
    pub name: String,
    pub source: String,
    pub applied_at_ms: i64,
    /// Set while the rule is disabled: who disabled it, when and why. A disabled rule
    /// matches no alert; applying its source again keeps it disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<Disabled>,
}

/// Who turned something off, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disabled {
    pub by: String,
    pub at_ms: i64,
    pub reason: String,
}

/// Alerts newest first, and the alert to continue before when there may be more.
#[derive(Debug)]
pub struct AlertPage {
    pub alerts: Vec<StoredAlert>,
    pub next: Option<uuid::Uuid>,
}

/// The run a rule's dedup key points to, until `expires_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupEntry {
    pub run_id: RunId,
    pub expires_ms: i64,
}

/// When a dedup entry expires, and its row: the engine keeps these in expiry order, so that
/// removing the expired entries reads those alone ([`Store::remove_expired_dedup`]), not
/// every entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DedupExpiry {
    pub expires_ms: i64,
    row: Box<[u8]>,
}

impl DedupExpiry {
    /// The expiry of `entry`, written for `rule`'s dedup `key`.
    pub fn new(rule: &str, key: &str, entry: &DedupEntry) -> DedupExpiry {
        DedupExpiry {
            expires_ms: entry.expires_ms,
            row: dedup_key(rule, key).into(),
        }
    }
}

/// Runs a rule started in the budget period beginning at `period_start_ms`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetState {
    pub period_start_ms: i64,
    pub runs: u32,
}

/// The alert part of an ingest's transaction.
#[derive(Default)]
pub struct AlertWrite<'a> {
    pub alerts: &'a [StoredAlert],
    /// The payloads the alerts came in, packed ([`payload::pack`](super::payload::pack)).
    pub payloads: &'a [super::PayloadRow],
    /// (rule, dedup key, entry)
    pub dedup: Vec<(&'a str, &'a str, DedupEntry)>,
    /// (rule, state)
    pub budgets: Vec<(&'a str, BudgetState)>,
    /// A poller's page: its items' records and its cursor.
    pub poll: Option<super::PollWrite<'a>>,
}

/// An alert as received: the normalized alert, the payload it came in, when, from which
/// listener, and its fate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredAlert {
    pub id: uuid::Uuid,
    /// The endpoint or source name it arrived on (`azure-monitor`, `generic/<name>`...).
    pub source: String,
    pub received_ms: i64,
    /// Normalized; stored without `raw` (rules saw it; the payload is kept instead).
    pub alert: riposte_ingest::Alert,
    /// The payload as received (lossy UTF-8): stored once per payload, packed with the other
    /// payloads of its write ([`payload`](super::payload)), filled in by [`Store::alert`] only.
    #[serde(default, skip_serializing)]
    pub payload: String,
    /// The id the payload's row is stored under ([`payload`](super::payload)): the last alert
    /// of its pack, or the payload's first alert in a store written before packs.
    #[serde(default)]
    pub payload_id: Option<uuid::Uuid>,
    /// Which payload of the pack under `payload_id` is this alert's; `None`: the row holds
    /// this one payload alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_index: Option<u32>,
    pub fate: AlertFate,
    /// The run it started or was coalesced into.
    #[serde(default)]
    pub run_id: Option<RunId>,
    /// The rule that decided ("" when none matched).
    #[serde(default)]
    pub rule: String,
    /// Why its run could not start, or what it was coalesced with.
    #[serde(default)]
    pub detail: String,
    /// The W3C `traceparent` of the rule's decision on it, while traces are exported: the
    /// trace its run continues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

pub(super) fn dedup_key(rule: &str, key: &str) -> Vec<u8> {
    let mut k = rule.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

/// An alert's key: its id.
pub(super) const ALERT_KEY_BYTES: usize = 16;

impl Store {
    /// A rule's dedup entry for `key`, expired or not.
    pub fn dedup_entry(&self, rule: &str, key: &str) -> Result<Option<DedupEntry>, Error> {
        self.alert_dedup
            .get(dedup_key(rule, key))?
            .map(|v| decode("alert_dedup", &dedup_key(rule, key), &v))
            .transpose()
    }

    /// A rule's budget count (zero when it never started a run).
    pub fn budget(&self, rule: &str) -> Result<BudgetState, Error> {
        self.rule_budget
            .get(rule.as_bytes())?
            .map_or(Ok(BudgetState::default()), |v| {
                decode("rule_budget", rule.as_bytes(), &v)
            })
    }

    /// Removes the dedup entries expired at `now_ms`, reading every entry (at start); answers
    /// the expiry of each one kept.
    pub fn prune_dedup(&self, now_ms: i64) -> Result<Vec<DedupExpiry>, Error> {
        let mut expired = Vec::new();
        let mut kept = Vec::new();
        for kv in self.alert_dedup.iter() {
            let (row, value) = kv?;
            let entry: DedupEntry = decode("alert_dedup", &row, &value)?;
            if entry.expires_ms <= now_ms {
                expired.push(row);
            } else {
                kept.push(DedupExpiry {
                    expires_ms: entry.expires_ms,
                    row: (*row).into(),
                });
            }
        }
        self.remove_dedup(expired)?;
        Ok(kept)
    }

    /// Removes the entries of `expired` that are still expired at `now_ms` (a key may hold a
    /// later window since, which stays); answers how many.
    pub fn remove_expired_dedup(
        &self,
        expired: &[DedupExpiry],
        now_ms: i64,
    ) -> Result<usize, Error> {
        let mut still = Vec::with_capacity(expired.len());
        for e in expired {
            if let Some(value) = self.alert_dedup.get(&e.row)? {
                let entry: DedupEntry = decode("alert_dedup", &e.row, &value)?;
                if entry.expires_ms <= now_ms {
                    still.push(&*e.row);
                }
            }
        }
        self.remove_dedup(still)
    }

    /// Removes the dedup entries of `rows` in one batch; answers how many.
    fn remove_dedup(&self, rows: Vec<impl Into<sled::IVec>>) -> Result<usize, Error> {
        let removed = rows.len();
        if removed == 0 {
            return Ok(0);
        }
        let mut batch = sled::Batch::default();
        for row in rows {
            batch.remove(row);
        }
        self.alert_dedup.apply_batch(batch)?;
        self.written();
        Ok(removed)
    }

    /// Stores (or replaces) a rule's source.
    pub fn put_rule(&self, rule: &StoredRule) -> Result<Seq, Error> {
        let row = (rule.name.as_bytes().to_vec(), json(rule));
        self.put_rows(&self.rules, vec![row])
    }

    /// Removes a rule (its dedup windows and budget expire by themselves).
    pub fn delete_rule(&self, name: &str) -> Result<Seq, Error> {
        self.remove_rows(&self.rules, vec![name.as_bytes().to_vec()])
    }

    /// Every rule, ordered by name.
    pub fn rules(&self) -> Result<Vec<StoredRule>, Error> {
        self.rules
            .iter()
            .map(|kv| {
                let (key, value) = kv?;
                decode("rules", &key, &value)
            })
            .collect()
    }

    /// One alert by id, with its payload.
    pub fn alert(&self, id: uuid::Uuid) -> Result<Option<StoredAlert>, Error> {
        let Some(value) = self.alerts.get(id.as_bytes())? else {
            return Ok(None);
        };
        let mut alert: StoredAlert = decode("alerts", id.as_bytes(), &value)?;
        if let Some(payload) = super::payload::read(&self.alerts, &alert)? {
            alert.payload = payload;
        }
        Ok(Some(alert))
    }

    /// Alerts newest first, at most `limit`.
    pub fn alerts(&self, limit: usize) -> Result<Vec<StoredAlert>, Error> {
        Ok(self.alerts_page(None, limit)?.alerts)
    }

    /// Up to `limit` alerts newest first, strictly older than `before`, and the alert to
    /// continue before when there may be more. A damaged alert is left out (and reported)
    /// instead of failing the page.
    pub fn alerts_page(
        &self,
        before: Option<uuid::Uuid>,
        limit: usize,
    ) -> Result<AlertPage, Error> {
        let end = match before {
            Some(id) => id.as_bytes().to_vec(),
            None => vec![0xff; ALERT_KEY_BYTES + 1],
        };
        let mut alerts = Vec::new();
        // The last alert read (kept or left out as damaged): the next page starts before it.
        let mut last = None;
        for kv in self.alerts.range(..end).rev() {
            let (key, value) = kv?;
            let Some(id) = uuid::Uuid::from_slice(&key)
                .ok()
                .filter(|_| key.len() == 16)
            else {
                continue; // a payload
            };
            if alerts.len() == limit {
                return Ok(AlertPage { alerts, next: last });
            }
            last = Some(id);
            match decode::<StoredAlert>("alerts", &key, &value) {
                Ok(alert) => alerts.push(alert),
                Err(e) if e.damaged_record().is_some() => self.found_damage(&e),
                Err(e) => return Err(e),
            }
        }
        Ok(AlertPage { alerts, next: None })
    }

    /// How many alerts are stored (counts them all).
    pub fn alerts_len(&self) -> Result<usize, Error> {
        let mut len = 0;
        for key in self.alerts.iter().keys() {
            if key?.len() == ALERT_KEY_BYTES {
                len += 1;
            }
        }
        Ok(len)
    }

    /// Removes the `count` oldest alerts and their payloads; answers how many were removed.
    pub fn prune_alerts(&self, count: usize) -> Result<usize, Error> {
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        for key in self.alerts.iter().keys() {
            let key = key?;
            if key.len() == ALERT_KEY_BYTES {
                if removed == count {
                    break;
                }
                removed += 1;
            }
            batch.remove(key);
        }
        if removed > 0 {
            self.alerts.apply_batch(batch)?;
            self.written();
        }
        Ok(removed)
    }
}
