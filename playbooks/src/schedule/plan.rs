//! The pure decision: which occurrences of a schedule are due, what each one's fate is, and
//! which runs to start. Time comes in as arguments; nothing is read or written here.
//!
//! The caller keeps a cursor per schedule (the instant through which occurrences are decided,
//! [`Plan::cursor_ms`]), writes the plan's entries to the ledger and the new cursor in one
//! transaction, then starts the fires, each with [`fire_key`] as its idempotency key. Planning
//! again from the new cursor decides nothing twice; a fire whose key already exists (a crash
//! between the write and the start) is started once by the key's idempotency.
//!
//! For each occurrence after the cursor and not after `now`, in order:
//! 1. paused: [`Fate::Paused`];
//! 2. outside every window (at the occurrence's wall time): [`Fate::OutsideWindow`];
//! 3. late by more than [`GRACE_MS`]: missed, and the catch-up policy picks which are started
//!    anyway ([`Fate::Missed`] with `caught_up`); a catch-up also needs `now` inside a window;
//! 4. otherwise it is due and fires.
//!
//! Every start (due or caught up) then goes through the overlap policy, in order, counting the
//! runs this plan starts: with a run active, `skip` records [`Fate::SkippedOverlap`],
//! `queue_one` holds one ([`Fate::Queued`], [`Plan::queued`]) and skips the rest, `allow`
//! starts it.
//!
//! The work is bounded: at most [`MISSED_LISTED_MAX`] missed occurrences are listed one by
//! one; the rest are one entry with `through_ms` set (every occurrence from its key through
//! `through_ms` that is not listed on its own). `latest` still finds the latest one, looking
//! back at most [`LATEST_SCAN_MAX`] occurrences for one inside a window.

use chrono_tz::Tz;

use super::occur;
use super::spec::{CatchUp, Overlap, Schedule};
use super::window;

/// How late an occurrence may be decided and still fire as due, not as missed.
pub const GRACE_MS: i64 = 60 * 1000;
/// Missed occurrences listed one by one in one plan; the rest share one entry.
pub const MISSED_LISTED_MAX: usize = 500;
/// Occurrences `catch_up: latest` looks back over for one inside a window, when more were
/// missed than are listed.
pub const LATEST_SCAN_MAX: usize = 10_000;

/// What happened to one occurrence (or to a range of them, see [`Entry::through_ms`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Due and started.
    Fired,
    /// Due while a run was active, with `overlap: skip` (or a run already queued).
    SkippedOverlap,
    /// Due while a run was active, with `overlap: queue_one`: starts when that run ends.
    Queued,
    /// Late by more than [`GRACE_MS`]; `caught_up` when it is started anyway.
    Missed { caught_up: bool },
    /// Outside every maintenance window.
    OutsideWindow,
    /// The schedule was paused.
    Paused,
}

/// One ledger entry: the ledger key is `(schedule name, scheduled_ms, manual)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The occurrence's instant (UTC epoch ms); a manual trigger's request time.
    pub scheduled_ms: i64,
    pub fate: Fate,
    /// An operator's trigger, not an occurrence.
    pub manual: bool,
    /// Set on a summary: every occurrence from `scheduled_ms` through this one (inclusive)
    /// not listed in its own entry has this fate.
    pub through_ms: Option<i64>,
}

/// A run to start (now, or when the active run ends for [`Plan::queued`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fire {
    pub scheduled_ms: i64,
    pub manual: bool,
    /// A missed occurrence started by the catch-up policy.
    pub caught_up: bool,
}

/// What the caller knows about the schedule's runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Activity {
    /// A run started by this schedule has not ended.
    pub running: bool,
    /// A fire is held for when it ends (`overlap: queue_one`).
    pub queued: bool,
}

/// The outcome of [`plan`] (or of [`trigger_now`], whose `cursor_ms` is the one passed in).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Ledger entries in order of `scheduled_ms`.
    pub entries: Vec<Entry>,
    /// Runs to start now, in order.
    pub starts: Vec<Fire>,
    /// A run to hold until the active one ends (`overlap: queue_one`).
    pub queued: Option<Fire>,
    /// Occurrences up to and including this instant are decided.
    pub cursor_ms: i64,
}

/// The idempotency key of a fire's run: `schedule:<name>:<ms>`, `schedule:<name>:manual:<ms>`.
pub fn fire_key(schedule: &str, fire: &Fire) -> String {
    if fire.manual {
        format!("schedule:{schedule}:manual:{}", fire.scheduled_ms)
    } else {
        format!("schedule:{schedule}:{}", fire.scheduled_ms)
    }
}

/// Decides every occurrence after `cursor_ms` and not after `now_ms`, with [`GRACE_MS`].
pub fn plan(schedule: &Schedule, cursor_ms: i64, now_ms: i64, activity: Activity) -> Plan {
    plan_with_grace(schedule, cursor_ms, now_ms, activity, GRACE_MS)
}

/// [`plan`] with another grace: an occurrence decided more than `grace_ms` after its time is
/// missed (the orchestrator's `--schedule-grace`).
pub fn plan_with_grace(
    schedule: &Schedule,
    cursor_ms: i64,
    now_ms: i64,
    activity: Activity,
    grace_ms: i64,
) -> Plan {
    let mut builder = Builder::new(schedule, activity);
    if now_ms <= cursor_ms {
        return builder.finish(cursor_ms);
    }
    let tz = schedule.timezone;
    let missed_before = now_ms - grace_ms.max(0);
    let mut missed: Vec<i64> = occur::after(&schedule.cron, tz, cursor_ms)
        .take_while(|at| *at < missed_before)
        .take(MISSED_LISTED_MAX + 1)
        .collect();
    let rest = (missed.len() > MISSED_LISTED_MAX).then(|| missed.split_off(MISSED_LISTED_MAX)[0]);
    let now_open = window::open(&schedule.windows, occur::wall_at(tz, now_ms));
    builder.missed(&missed, rest, cursor_ms, missed_before, now_open);
    let due_from = cursor_ms.max(missed_before - 1);
    for at in occur::after(&schedule.cron, tz, due_from).take_while(|at| *at <= now_ms) {
        builder.due(at);
    }
    builder.finish(now_ms)
}

/// An operator's "trigger now" at `at_ms`: one manual entry, through the overlap policy only
/// (a manual trigger is the operator's explicit act: it ignores `paused` and the windows).
pub fn trigger_now(schedule: &Schedule, at_ms: i64, cursor_ms: i64, activity: Activity) -> Plan {
    let mut builder = Builder::new(schedule, activity);
    builder.start(Fire {
        scheduled_ms: at_ms,
        manual: true,
        caught_up: false,
    });
    builder.finish(cursor_ms)
}

/// The next instant the caller should plan at: the first occurrence after `after_ms`, paused
/// or not (a paused schedule still records its occurrences as paused).
pub fn next_due(schedule: &Schedule, after_ms: i64) -> Option<i64> {
    occur::next_due(&schedule.cron, schedule.timezone, after_ms)
}

struct Builder<'a> {
    schedule: &'a Schedule,
    activity: Activity,
    out: Plan,
}

impl<'a> Builder<'a> {
    fn new(schedule: &'a Schedule, activity: Activity) -> Self {
        Builder {
            schedule,
            activity,
            out: Plan::default(),
        }
    }

    fn tz(&self) -> Tz {
        self.schedule.timezone
    }

    fn record(&mut self, scheduled_ms: i64, fate: Fate, manual: bool, through_ms: Option<i64>) {
        self.out.entries.push(Entry {
            scheduled_ms,
            fate,
            manual,
            through_ms,
        });
    }

    /// Paused or outside every window: the fate that stops an occurrence before anything else.
    fn blocked(&self, at: i64) -> Option<Fate> {
        if self.schedule.paused {
            return Some(Fate::Paused);
        }
        let wall = occur::wall_at(self.tz(), at);
        (!window::open(&self.schedule.windows, wall)).then_some(Fate::OutsideWindow)
    }

    /// Missed occurrences: `listed` one by one, and from `rest` (if any) up to `before` as one
    /// summary.
    fn missed(
        &mut self,
        listed: &[i64],
        rest: Option<i64>,
        cursor: i64,
        before: i64,
        now_open: bool,
    ) {
        let candidates: Vec<i64> = listed
            .iter()
            .copied()
            .filter(|at| self.blocked(*at).is_none())
            .collect();
        let mut catch: Vec<i64> = match self.schedule.catch_up {
            _ if !now_open || self.schedule.paused => Vec::new(),
            CatchUp::Skip => Vec::new(),
            CatchUp::All { max } => candidates.iter().copied().take(max as usize).collect(),
            CatchUp::Latest => match rest {
                Some(_) => self.latest_open(cursor, before).into_iter().collect(),
                None => candidates.last().copied().into_iter().collect(),
            },
        };
        catch.sort_unstable();
        for &at in listed {
            match self.blocked(at) {
                Some(fate) => self.record(at, fate, false, None),
                None if catch.contains(&at) => self.catch_up(at),
                None => self.record(at, Fate::Missed { caught_up: false }, false, None),
            }
        }
        let Some(mut from) = rest else { return };
        let mut through = occur::before(&self.schedule.cron, self.tz(), before)
            .next()
            .unwrap_or(from);
        if catch.contains(&through) && through > from {
            // The caught-up latest has its own entry: the summary ends before it.
            through = occur::before(&self.schedule.cron, self.tz(), through)
                .next()
                .unwrap_or(from);
        }
        if catch.contains(&from) {
            // The caught-up occurrence has its own entry: the summary starts after it.
            match occur::after(&self.schedule.cron, self.tz(), from).next() {
                Some(next) if next <= through => from = next,
                _ => {
                    self.catch_up(from);
                    return;
                }
            }
        }
        let fate = if self.schedule.paused {
            Fate::Paused
        } else {
            Fate::Missed { caught_up: false }
        };
        self.record(from, fate, false, Some(through));
        for &at in catch.iter().filter(|at| **at >= rest.unwrap_or(from)) {
            self.catch_up(at);
        }
    }

    /// The latest missed occurrence inside a window, looking back a bounded number.
    fn latest_open(&self, cursor: i64, before: i64) -> Option<i64> {
        occur::before(&self.schedule.cron, self.tz(), before)
            .take_while(|at| *at > cursor)
            .take(LATEST_SCAN_MAX)
            .find(|at| self.blocked(*at).is_none())
    }

    fn catch_up(&mut self, at: i64) {
        self.start(Fire {
            scheduled_ms: at,
            manual: false,
            caught_up: true,
        });
    }

    /// An occurrence within the grace.
    fn due(&mut self, at: i64) {
        match self.blocked(at) {
            Some(fate) => self.record(at, fate, false, None),
            None => self.start(Fire {
                scheduled_ms: at,
                manual: false,
                caught_up: false,
            }),
        }
    }

    /// A run that wants to start, through the overlap policy.
    fn start(&mut self, fire: Fire) {
        let started = if fire.caught_up {
            Fate::Missed { caught_up: true }
        } else {
            Fate::Fired
        };
        let fate = match (self.activity.running, self.schedule.overlap) {
            (false, _) | (true, Overlap::Allow) => {
                self.activity.running = true;
                self.out.starts.push(fire);
                started
            }
            (true, Overlap::QueueOne) if !self.activity.queued => {
                self.activity.queued = true;
                self.out.queued = Some(fire);
                Fate::Queued
            }
            (true, _) => Fate::SkippedOverlap,
        };
        self.record(fire.scheduled_ms, fate, fire.manual, None);
    }

    fn finish(mut self, cursor_ms: i64) -> Plan {
        self.out.entries.sort_by_key(|e| (e.scheduled_ms, e.manual));
        self.out.cursor_ms = cursor_ms;
        self.out
    }
}
