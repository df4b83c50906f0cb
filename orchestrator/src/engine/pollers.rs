//! Alert pollers in the engine: which poller is due, who holds it, and what a fetched page
//! does. The orchestrator holds no cloud credential: a worker that offers a poller's action
//! claims it ([`Pollers::claim`]), fetches the window it is given page by page, and hands
//! each page over ([`Pollers::page`]).
//!
//! Exactly once, across a crash of either side: a page's new alerts, the records of its items
//! and the poller's cursor are one store transaction (`store::PollWrite`). A window is
//! `[cursor, now - settle]`; the cursor moves to the window's end when its last page is in
//! (and, for a source listed in modification order, to each page's last item on the way).
//! After a crash the next claim asks again from the stored cursor, and each item it gets
//! again is recognised by its record: the same modification time is already ingested, a
//! later one is the item's next revision (`Alert::revision`).
//!
//! A claim is fenced by its token (from the store's fencing tokens) and its page count: a
//! page from a claim that lapsed or passed to another worker changes nothing, a page sent
//! twice is answered as already taken. Claims live in memory: after a restart every poller
//! is due at once and claimed afresh.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::alerts::{AlertRules, Decided, decide_parsed};
use super::{Alerts, Error, Runs};
use crate::pending::Pending;
use crate::pollers::Poller;
use crate::store::{PollWrite, PollerState, Seen};
use riposte_ingest as ingest;

/// Items remembered this long after the cursor passed them (for their revision count).
const SEEN_KEPT: Duration = Duration::from_secs(30 * 24 * 3600);
/// How often a poller's forgotten items are looked for (a scan of its records).
const FORGET_EVERY: Duration = Duration::from_secs(3600);
/// Longest wait a worker is told before it asks again for a poll.
const ASK_AGAIN_MAX: Duration = Duration::from_secs(5);
/// Longest pause after failures, unless the upstream asked for more.
const BACKOFF_MAX: Duration = Duration::from_secs(600);

/// A poll handed to a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct PollClaim {
    pub poller: String,
    pub action: &'static str,
    /// The action's input for the first page.
    pub input: Value,
    pub token: u64,
    /// The claim lapses unless a page comes within this.
    pub lease: Duration,
    /// One page's fetch.
    pub timeout: Duration,
}

/// What a claim gets: a poll, or when to ask again.
#[derive(Debug, Clone, PartialEq)]
pub enum Claimed {
    Poll(Box<PollClaim>),
    AskAgain(Duration),
}

/// A page as the worker fetched it, or why it could not.
pub enum Page {
    Items {
        items: Vec<Vec<u8>>,
        more: bool,
    },
    Failed {
        message: String,
        retry_after: Option<Duration>,
    },
}

/// What a page did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageTaken {
    /// Items ingested as new alerts or new revisions.
    pub ingested: u32,
    /// Items already ingested at the same modification time.
    pub already_seen: u32,
    /// Items that did not read as alerts (each logged, the last kept as the poller's error).
    pub unreadable: u32,
    /// The worker goes on with the next page.
    pub go_on: bool,
}

/// A poller's condition, for `riposte alerts sources`.
#[derive(Debug, Clone)]
pub struct SourceView {
    pub poller: Poller,
    pub state: PollerState,
    /// The worker holding it now (its name).
    pub claimed_by: Option<String>,
    /// When it is due next (epoch ms).
    pub next_ms: i64,
    /// No connected worker offers its action with its labels: it cannot be polled.
    pub unserved: bool,
}

struct Claim {
    token: u64,
    worker: String,
    worker_name: String,
    deadline: Instant,
    /// Pages taken so far.
    pages: u32,
    /// The window: its end, in epoch ms.
    to_ms: i64,
}

struct Live {
    poller: Poller,
    state: PollerState,
    next_ms: i64,
    claim: Option<Claim>,
    /// When items past [`SEEN_KEPT`] were last forgotten (epoch ms).
    forgot_ms: i64,
}

/// The pollers from the configuration, with their stored state.
pub struct Pollers {
    live: Vec<Live>,
    /// Leases of claims are this much longer than a page's timeout.
    lease: Duration,
}

impl Pollers {
    pub(super) fn open(
        store: &crate::store::Store,
        pollers: &[Poller],
        now_ms: i64,
        lease: Duration,
    ) -> Result<Pollers, Error> {
        let live = pollers
            .iter()
            .map(|p| {
                Ok(Live {
                    state: store.poller_state(&p.name)?,
                    poller: p.clone(),
                    next_ms: now_ms,
                    claim: None,
                    forgot_ms: i64::MIN,
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(Pollers { live, lease })
    }

    /// Every poller's condition.
    /// Every poller's condition; `serves` says whether a connected worker offers an action
    /// with labels.
    pub fn sources(
        &self,
        serves: impl Fn(&str, &BTreeMap<String, String>) -> bool,
    ) -> Vec<SourceView> {
        self.live
            .iter()
            .map(|l| SourceView {
                poller: l.poller.clone(),
                state: l.state.clone(),
                claimed_by: l.claim.as_ref().map(|c| c.worker_name.clone()),
                next_ms: l.next_ms,
                unserved: !serves(l.poller.kind.action(), &l.poller.labels),
            })
            .collect()
    }
}

impl super::Engine {
    /// Every alert poller's condition (see [`Pollers::sources`]).
    pub fn alert_sources(&self) -> Vec<SourceView> {
        let runs = &self.runs;
        self.alerts
            .pollers
            .sources(|action, labels| runs.serves(action, labels))
    }
}

impl Alerts {
    /// The first due poller `worker` can run (it offers the poller's action and carries its
    /// labels) that nobody holds, claimed for it; or when to ask again.
    pub fn claim_poll(&mut self, runs: &mut Runs, worker: &str) -> Result<Claimed, Error> {
        runs.touch(worker, false)?;
        let Some(registered) = runs.worker(worker).cloned() else {
            return Err(Error::FailedPrecondition(format!(
                "unknown worker {worker}; register again"
            )));
        };
        let now = self.clock.monotonic();
        let now_ms = self.clock.now_ms();
        let mut ask_again = ASK_AGAIN_MAX;
        let lease = self.pollers.lease;
        for live in &mut self.pollers.live {
            let p = &live.poller;
            if !registered.serves(p.kind.action(), &p.labels) {
                continue;
            }
            if live.claim.as_ref().is_some_and(|c| c.deadline > now) {
                continue;
            }
            if live.next_ms > now_ms {
                let wait = Duration::from_millis((live.next_ms - now_ms) as u64);
                ask_again = ask_again.min(wait);
                continue;
            }
            // The first window starts `look_back` ago, and stays there until a page moves it
            // (kept with the state a page writes), so a claim that lapses loses nothing.
            let look_back = now_ms - p.look_back.as_millis() as i64;
            let from_ms = *live.state.cursor_ms.get_or_insert(look_back);
            let to_ms = now_ms - p.settle.as_millis() as i64;
            if to_ms <= from_ms {
                live.next_ms = now_ms + p.every.as_millis() as i64;
                continue;
            }
            let token = self.store.next_token()?;
            live.claim = Some(Claim {
                token,
                worker: worker.to_owned(),
                worker_name: registered.name.clone(),
                deadline: now + p.timeout + lease,
                pages: 0,
                to_ms,
            });
            let mut input = json!({
                "modified_from": rfc3339(from_ms),
                "modified_to": rfc3339(to_ms),
                "page_size": p.page_size,
            });
            if let Some(workspace) = &p.workspace {
                input["workspace"] = json!(workspace);
            }
            tracing::info!(poller = %p.name, worker.id = %worker, from = %rfc3339(from_ms), to = %rfc3339(to_ms), "poller.claimed");
            return Ok(Claimed::Poll(Box::new(PollClaim {
                poller: p.name.clone(),
                action: p.kind.action(),
                input,
                token,
                lease: p.timeout + lease,
                timeout: p.timeout,
            })));
        }
        Ok(Claimed::AskAgain(ask_again.max(Duration::from_millis(100))))
    }

    /// Takes page `index` of the claim `token` of `poller` from `worker`: its new alerts
    /// (each through the rules, as a pushed one), the records of its items and the poller's
    /// state, in one write.
    pub fn poll_page(
        &mut self,
        runs: &mut Runs,
        rules: &AlertRules,
        (worker, poller, token, index): (&str, &str, u64, u32),
        page: Page,
    ) -> Result<Pending<PageTaken>, Error> {
        runs.touch(worker, false)?;
        let now = self.clock.monotonic();
        let now_ms = self.clock.now_ms();
        let lease = self.pollers.lease;
        let Some(at) = self
            .pollers
            .live
            .iter()
            .position(|l| l.poller.name == poller)
        else {
            return Err(Error::NotFound(format!("no poller `{poller}`")));
        };
        let live = &self.pollers.live[at];
        let held = live
            .claim
            .as_ref()
            .filter(|c| c.token == token && c.worker == worker);
        let Some(claim) = held else {
            return Err(Error::FailedPrecondition(format!(
                "poller `{poller}` is not held by this claim (it lapsed, or the orchestrator \
                 restarted); the next claim starts again from the stored cursor"
            )));
        };
        if index < claim.pages {
            let taken = PageTaken {
                go_on: true,
                ..PageTaken::default()
            };
            return Ok(Pending::new(taken, self.store.last_write()));
        }
        if index > claim.pages {
            return Err(Error::FailedPrecondition(format!(
                "page {index} of poller `{poller}` comes before page {}",
                claim.pages
            )));
        }
        let to_ms = claim.to_ms;
        let (items, more) = match page {
            Page::Items { items, more } => (items, more),
            Page::Failed {
                message,
                retry_after,
            } => return self.poll_failed(at, now_ms, message, retry_after),
        };
        let p = live.poller.clone();
        let mut state = live.state.clone();
        let mut taken = PageTaken {
            go_on: more,
            ..PageTaken::default()
        };
        let mut seen: HashMap<String, Seen> = HashMap::new();
        let mut batch: Vec<Decided> = Vec::new();
        let mut last_ms = None;
        for item in items {
            let alert = match ingest::parse(&p.kind.format(), &item) {
                Ok(mut alerts) if alerts.len() == 1 => alerts.remove(0),
                Ok(alerts) => {
                    let why = format!("an item read as {} alerts, not one", alerts.len());
                    self.unreadable(&mut state, &mut taken, &p.name, why, now_ms);
                    continue;
                }
                Err(e) => {
                    self.unreadable(&mut state, &mut taken, &p.name, e.to_string(), now_ms);
                    continue;
                }
            };
            let modified = p
                .kind
                .modified_at(&alert.raw.value())
                .unwrap_or_default()
                .to_owned();
            let modified_ms = ingest::rfc3339_ms(&modified).unwrap_or(0);
            last_ms = Some(modified_ms);
            let before = match seen.get(&alert.id) {
                Some(s) => Some(s.clone()),
                None => self.store.poller_seen(&p.name, &alert.id)?,
            };
            let revision = match before {
                Some(b) if b.modified == modified || modified_ms < b.modified_ms => {
                    taken.already_seen += 1;
                    continue;
                }
                Some(b) => b.revision + 1,
                None => 1,
            };
            match revision {
                1 => state.alerts += 1,
                _ => state.revisions += 1,
            }
            taken.ingested += 1;
            let record = Seen {
                modified,
                modified_ms,
                revision,
            };
            seen.insert(alert.id.clone(), record);
            let mut alert = alert;
            alert.revision = Some(revision);
            batch.push(decide_parsed(
                p.kind.source(),
                item.into(),
                vec![alert],
                rules,
                None,
            ));
        }
        if p.kind.ordered()
            && let Some(ms) = last_ms
        {
            state.cursor_ms = Some(state.cursor_ms.map_or(ms, |c| c.max(ms)));
        }
        if !more {
            state.cursor_ms = Some(state.cursor_ms.map_or(to_ms, |c| c.max(to_ms)));
            state.last_success_ms = Some(now_ms);
            state.errors = 0;
            if taken.unreadable == 0 {
                state.last_error = None;
            }
        }
        let seen_rows: Vec<(&str, Seen)> = seen
            .iter()
            .map(|(id, s)| (id.as_str(), s.clone()))
            .collect();
        let write = PollWrite {
            poller: &p.name,
            state: &state,
            seen: seen_rows,
        };
        let (pending, _spent) = self.ingest_all(runs, batch, Some(write))?;
        let live = &mut self.pollers.live[at];
        live.state = state;
        match (more, &mut live.claim) {
            (true, Some(claim)) => {
                claim.pages += 1;
                claim.deadline = now + p.timeout + lease;
            }
            _ => {
                live.claim = None;
                live.next_ms = now_ms + p.every.as_millis() as i64;
                let due = now_ms.saturating_sub(live.forgot_ms) >= FORGET_EVERY.as_millis() as i64;
                if let (true, Some(cursor)) = (due, live.state.cursor_ms) {
                    live.forgot_ms = now_ms;
                    let before = cursor - SEEN_KEPT.as_millis() as i64;
                    self.store.forget_seen(&p.name, before)?;
                }
            }
        }
        Ok(pending.map(|alerts| {
            for a in &alerts {
                tracing::info!(alert = %a.id, source = %a.source, poller = %p.name, revision = ?a.alert.revision, fate = ?a.fate, "alert.polled");
            }
            taken
        }))
    }

    fn unreadable(
        &self,
        state: &mut PollerState,
        taken: &mut PageTaken,
        poller: &str,
        why: String,
        now_ms: i64,
    ) {
        tracing::warn!(poller, error = %why, "poller.item_unreadable");
        taken.unreadable += 1;
        state.last_error = Some(format!("an item did not read as an alert: {why}"));
        state.last_error_ms = Some(now_ms);
    }

    /// A claim's failure: recorded in the poller's state, the claim let go, the next poll
    /// after the upstream's `Retry-After` or a backoff that doubles with each failure.
    fn poll_failed(
        &mut self,
        at: usize,
        now_ms: i64,
        message: String,
        retry_after: Option<Duration>,
    ) -> Result<Pending<PageTaken>, Error> {
        let live = &mut self.pollers.live[at];
        let mut state = live.state.clone();
        state.errors += 1;
        state.last_error = Some(message.clone());
        state.last_error_ms = Some(now_ms);
        let doubling = 1u32 << state.errors.min(10).saturating_sub(1);
        let backoff = (live.poller.every * doubling).min(BACKOFF_MAX);
        let wait = retry_after.map_or(backoff, |r| r.max(live.poller.every));
        let seq = self.store.put_poller_state(&live.poller.name, &state)?;
        tracing::warn!(poller = %live.poller.name, error = %message, retry_in = %humantime::format_duration(wait), "poller.failed");
        live.state = state;
        live.claim = None;
        live.next_ms = now_ms + wait.as_millis() as i64;
        Ok(Pending::new(PageTaken::default(), seq))
    }
}

/// An epoch ms as RFC 3339 with milliseconds, in UTC (what the list filters compare with).
fn rfc3339(ms: i64) -> String {
    let time = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}
