//! One test run played through the real scheduler on a manual clock: every dispatched task is
//! leased at once to a worker that answers as the test says, after the time it says; timers
//! fire when the clock reaches them; the test's events happen at their times. The clock jumps
//! from one due thing to the next, so a grant's 8-day TTL costs nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use riposte_playbooks::Playbook;
use riposte_scheduler::state::{HistoryEvent, RunId, RunState, Slot, UnitRef};
use riposte_scheduler::{Command, DecisionRequest, Event, NewRun, Repair, Scheduler, TaskSpec};
use serde_json::{Value, json};

use crate::format::{Answer, Case, Event as Scripted};
use crate::{Error, duration_ms};

/// The worker every task is leased to.
pub const WORKER: &str = "playtest";
/// Things handled in one run at most: a playbook that never settles is reported, not spun.
const STEPS_MAX: usize = 100_000;
/// How far the clock may run from the start: past it, the run is reported as never ending.
const HORIZON_MS: i64 = 400 * 24 * 3600 * 1000;
/// When a run starts unless its test says: 2026-01-05T00:00:00Z, a Monday.
pub const START_DEFAULT_MS: i64 = 1_767_571_200_000;
/// The run id unless the test names one.
const RUN_ID_DEFAULT: u128 = 0x0192_0000_0000_7000_8000_0000_0000_0001;

/// What one run did.
#[derive(Debug)]
pub struct Played {
    pub state: RunState,
    pub history: Vec<HistoryEvent>,
    /// The steps whose undo was dispatched, in order (first attempts).
    pub undo_order: Vec<String>,
    pub start_ms: i64,
    /// Events the scheduler refused, or that came after the run ended.
    pub problems: Vec<String>,
}

enum Due {
    Answer {
        unit: UnitRef,
        token: u64,
        answer: Answer,
    },
    Timer,
    Scripted(usize),
}

struct Sim<'a> {
    scheduler: Scheduler,
    playbook: Arc<Playbook>,
    case: &'a Case,
    run: RunId,
    now: i64,
    seq: u64,
    agenda: BTreeMap<(i64, u64), Due>,
    timers: BTreeSet<i64>,
    commands: VecDeque<Command>,
    draining: bool,
    next_token: u64,
    state: Option<RunState>,
    ended: bool,
    history: Vec<HistoryEvent>,
    undo_order: Vec<String>,
    problems: Vec<String>,
    /// How many times each unit was leased: its next answer's index.
    leases: HashMap<Slot, usize>,
}

/// Plays `case` on `playbook`; `Err` when the test itself is wrong (a parameter, a step name,
/// a duration).
pub fn play(playbook: Arc<Playbook>, case: &Case) -> Result<Played, Error> {
    check(&playbook, case)?;
    let start_ms = match &case.start {
        Some(text) => {
            riposte_playbooks::parse_timestamp_ms(text).map_err(|e| Error::Case(e.to_string()))?
        }
        None => START_DEFAULT_MS,
    };
    let run = match &case.run_id {
        Some(text) => text
            .parse()
            .map_err(|_| Error::Case(format!("run_id `{text}` is not a UUID")))?,
        None => RunId(uuid::Uuid::from_u128(RUN_ID_DEFAULT)),
    };
    let params = playbook
        .coerce_params(&case.params)
        .map_err(|problems| Error::Case(problems.join("; ")))?;
    let mut sim = Sim {
        scheduler: Scheduler::new(),
        playbook: playbook.clone(),
        case,
        run,
        now: start_ms,
        seq: 0,
        agenda: BTreeMap::new(),
        timers: BTreeSet::new(),
        commands: VecDeque::new(),
        draining: false,
        next_token: 0,
        state: None,
        ended: false,
        history: Vec::new(),
        undo_order: Vec::new(),
        problems: Vec::new(),
        leases: HashMap::new(),
    };
    for (index, event) in case.events.iter().enumerate() {
        let at = start_ms + duration_ms("events[].at", &event.at)?;
        sim.push(at, Due::Scripted(index));
    }
    let new = NewRun {
        id: run,
        playbook,
        params: Value::Object(params),
        trigger: case.trigger.clone(),
        requested_by: case.requested_by.clone(),
        idempotency_key: String::new(),
        dry_run: case.dry_run,
        trace: None,
    };
    sim.handle("start", Event::Start(new));
    sim.drive();
    let state = sim
        .state
        .ok_or_else(|| Error::Case("the run did not start".into()))?;
    Ok(Played {
        state,
        history: sim.history,
        undo_order: sim.undo_order,
        start_ms,
        problems: sim.problems,
    })
}

/// Every step a test names exists, and every duration reads.
fn check(playbook: &Playbook, case: &Case) -> Result<(), Error> {
    let step = |id: &str, what: &str| match playbook.step_index(id) {
        Some(index) => Ok(&playbook.steps[index]),
        None => Err(Error::Case(format!(
            "{what} names no step of the playbook: `{id}`"
        ))),
    };
    for (key, answers) in &case.results {
        let (id, part) = split_key(key);
        let spec = step(id, "results")?;
        let has = match part {
            Part::Undo => spec.undo.is_some(),
            Part::Health => spec.waves.as_ref().is_some_and(|w| w.health.is_some()),
            Part::All | Part::Item(_) => true,
        };
        if !has {
            return Err(Error::Case(format!("results: step `{id}` has no `{key}`")));
        }
        for answer in &answers.0 {
            if let Some(takes) = &answer.takes {
                duration_ms("results[].takes", takes)?;
            }
            if answer.output.is_some() && (answer.error.is_some() || answer.lost) {
                return Err(Error::Case(format!(
                    "results `{key}`: an answer is an output, an error or a lost lease, not several"
                )));
            }
        }
    }
    for event in &case.events {
        let verbs = [
            &event.approve,
            &event.reject,
            &event.cancel,
            &event.revoke,
            &event.retry,
            &event.skip,
        ];
        let given = verbs.iter().filter(|v| v.is_some()).count() + usize::from(event.resume);
        if given != 1 {
            return Err(Error::Case(format!(
                "the event at {} does {given} things; give exactly one of approve, reject, cancel, \
                 revoke, retry, skip, resume",
                event.at
            )));
        }
        let named = [&event.approve, &event.reject, &event.revoke]
            .into_iter()
            .chain([&event.retry, &event.skip]);
        for id in named.flatten() {
            step(id, "an event")?;
        }
    }
    Ok(())
}

/// Which tasks of a step a result key answers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Part {
    All,
    Item(u32),
    Undo,
    Health,
}

fn split_key(key: &str) -> (&str, Part) {
    if let Some(id) = key.strip_suffix(".undo") {
        return (id, Part::Undo);
    }
    if let Some(id) = key.strip_suffix(".health") {
        return (id, Part::Health);
    }
    if let Some((id, rest)) = key.split_once('[')
        && let Some(Ok(item)) = rest.strip_suffix(']').map(str::parse)
    {
        return (id, Part::Item(item));
    }
    (key, Part::All)
}

impl Sim<'_> {
    fn push(&mut self, at: i64, due: Due) {
        self.seq += 1;
        self.agenda.insert((at, self.seq), due);
    }

    fn drive(&mut self) {
        let mut steps = 0;
        while let Some(((at, _), due)) = self.agenda.pop_first() {
            if self.ended {
                if let Due::Scripted(index) = due {
                    let event = &self.case.events[index];
                    self.problems.push(format!(
                        "the event at {} came after the run had ended",
                        event.at
                    ));
                }
                continue;
            }
            steps += 1;
            if steps > STEPS_MAX || at - self.start() > HORIZON_MS {
                self.problems.push(format!(
                    "the run was still going after {steps} events and {}",
                    riposte_playbooks::format_duration_ms((at - self.start()).max(0) as u64)
                ));
                return;
            }
            self.now = self.now.max(at);
            match due {
                Due::Timer => {
                    self.timers.remove(&at);
                    self.handle("timer", Event::Timer { run: self.run });
                }
                Due::Answer {
                    unit,
                    token,
                    answer,
                } => self.answer(unit, token, answer),
                Due::Scripted(index) => self.scripted(index),
            }
        }
    }

    fn start(&self) -> i64 {
        self.state.as_ref().map_or(self.now, |s| s.created_at_ms)
    }

    /// Applies one event and everything its commands lead to.
    fn handle(&mut self, what: &str, event: Event) {
        if let Err(error) = self.try_handle(event) {
            self.problems.push(format!("{what}: {error}"));
        }
    }

    fn try_handle(&mut self, event: Event) -> Result<(), riposte_scheduler::Error> {
        let transition = self.scheduler.handle(self.now, event)?;
        self.absorb(transition);
        self.drain();
        Ok(())
    }

    /// Carries out the commands of the transitions so far, in order; the commands of what they
    /// lead to (a lease) join the same queue.
    fn drain(&mut self) {
        if self.draining {
            return;
        }
        self.draining = true;
        while let Some(command) = self.commands.pop_front() {
            self.command(command);
        }
        self.draining = false;
    }

    /// Keeps a transition's history and state, and queues its commands.
    fn absorb(&mut self, transition: riposte_scheduler::Transition) {
        let run = self.run;
        self.history.extend(
            transition
                .history
                .into_iter()
                .filter(|(r, _)| *r == run)
                .map(|(_, event)| event),
        );
        for state in transition.finished {
            if state.id == run {
                self.state = Some(state);
                self.ended = true;
            }
        }
        if !self.ended {
            self.state = self.scheduler.run(run).cloned();
        }
        self.commands.extend(transition.commands);
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Dispatch(task) => self.dispatch(task),
            Command::Withdraw(unit) => self
                .agenda
                .retain(|_, due| !matches!(due, Due::Answer { unit: u, .. } if *u == unit)),
            Command::ArmTimer { due_ms, .. } => {
                if self.timers.insert(due_ms) {
                    self.push(due_ms.max(self.now), Due::Timer);
                }
            }
            Command::Abandon { token } => self
                .agenda
                .retain(|_, due| !matches!(due, Due::Answer { token: t, .. } if *t == token)),
            Command::Finished { .. } => {}
        }
    }

    fn dispatch(&mut self, task: TaskSpec) {
        if matches!(task.unit.slot, Slot::Undo(_)) && task.attempt == 1 {
            self.undo_order.push(task.step_id.clone());
        }
        self.next_token += 1;
        let token = self.next_token;
        let leased = Event::Leased {
            unit: task.unit,
            attempt: task.attempt,
            token,
            worker: WORKER.into(),
        };
        match self.scheduler.handle(self.now, leased) {
            Ok(transition) => self.absorb(transition),
            Err(error) => {
                let message = format!("lease of `{}`: {error}", task.step_id);
                self.problems.push(message);
                return;
            }
        }
        let leases = self.leases.entry(task.unit.slot).or_default();
        let nth = *leases;
        *leases += 1;
        let answer = self.answer_for(&task, nth);
        let takes = answer
            .takes
            .as_deref()
            .map_or(0, |t| riposte_playbooks::parse_duration_ms(t).unwrap_or(0));
        let at = self.now + takes as i64;
        self.push(
            at,
            Due::Answer {
                unit: task.unit,
                token,
                answer,
            },
        );
    }

    /// The test's answer to the `nth` lease of this task (attempts start again at 1 when an
    /// operator retries a step; answers go on).
    fn answer_for(&self, task: &TaskSpec, nth: usize) -> Answer {
        let id = &task.step_id;
        let keys = match task.unit.slot {
            Slot::Step { item, .. } => vec![format!("{id}[{item}]"), id.clone()],
            Slot::Undo(_) => vec![format!("{id}.undo")],
            Slot::Health { .. } => vec![format!("{id}.health")],
        };
        let answers = keys.iter().find_map(|key| self.case.results.get(key));
        match answers {
            Some(answers) => {
                let index = nth.min(answers.0.len() - 1);
                answers.0[index].clone()
            }
            None => Answer {
                output: None,
                error: None,
                retryable: true,
                lost: false,
                takes: None,
            },
        }
    }

    fn answer(&mut self, unit: UnitRef, token: u64, answer: Answer) {
        let worker = WORKER.to_string();
        let event = match (answer.lost, answer.error) {
            (true, _) => Event::LeaseExpired { unit, token },
            (false, Some(message)) => Event::Failed {
                unit,
                token,
                worker,
                message,
                retryable: answer.retryable,
            },
            (false, None) => Event::Succeeded {
                unit,
                token,
                worker,
                output: answer.output.unwrap_or_else(|| json!({})),
            },
        };
        self.handle("a task's result", event);
    }

    fn scripted(&mut self, index: usize) {
        let event: &Scripted = &self.case.events[index];
        let what = format!("the event at {}", event.at);
        let result = self.act(event);
        match (result, &event.refused) {
            (Ok(()), None) => {}
            (Err(error), None) => self.problems.push(format!("{what}: {error}")),
            (Ok(()), Some(_)) => {
                let message = format!("{what} was to be refused, and was not");
                self.problems.push(message);
            }
            (Err(error), Some(text)) if !error.contains(text.as_str()) => {
                let message = format!("{what} was refused for another reason: {error}");
                self.problems.push(message);
            }
            (Err(_), Some(_)) => {}
        }
    }

    /// Does what a scripted event says; `Err` is why it was refused.
    fn act(&mut self, event: &Scripted) -> Result<(), String> {
        let by = |default: &str| event.by.clone().unwrap_or_else(|| default.to_string());
        let run = self.run;
        let refused = |e: riposte_scheduler::Error| e.to_string();
        if let Some((step, approve)) = (event.approve.as_ref().map(|s| (s, true)))
            .or_else(|| event.reject.as_ref().map(|s| (s, false)))
        {
            let Some(request) = self.decision(step, approve, by("approver"), event) else {
                return Err(format!("step `{step}` awaits no approval"));
            };
            return self.try_handle(Event::Decide(request)).map_err(refused);
        }
        if let Some(reason) = &event.cancel {
            let (reason, by) = (reason.clone(), by("tester"));
            let cancel = Event::Cancel { run, reason, by };
            return self.try_handle(cancel).map_err(refused);
        }
        if let Some(step) = &event.revoke {
            let revoke = Event::Revoke {
                run,
                step: step.clone(),
                item: event.item,
                by: by("tester"),
                reason: "revoked by the test".into(),
            };
            return self.try_handle(revoke).map_err(refused);
        }
        let (repair, step) = match (&event.retry, &event.skip) {
            (Some(step), _) => (Repair::RetryStep, step.clone()),
            (None, Some(step)) => (Repair::SkipStep, step.clone()),
            (None, None) => (Repair::Resume, String::new()),
        };
        self.repair(repair, step, by("tester")).map_err(refused)
    }

    fn decision(
        &self,
        step: &str,
        approve: bool,
        who: String,
        event: &Scripted,
    ) -> Option<DecisionRequest> {
        let index = self.playbook.step_index(step)?;
        let pending = self.state.as_ref()?.steps[index].approval.as_ref()?;
        let groups = event.groups.clone().unwrap_or_else(|| {
            let spec = &self.playbook.steps[index];
            spec.approval
                .as_ref()
                .map_or_else(Vec::new, |a| a.approvers.clone())
        });
        Some(DecisionRequest {
            run: self.run,
            step: step.to_string(),
            approve,
            digest: pending.digest.clone(),
            who,
            groups,
            comment: String::new(),
        })
    }

    fn repair(
        &mut self,
        repair: Repair,
        step: String,
        by: String,
    ) -> Result<(), riposte_scheduler::Error> {
        let reason = "repaired by the test".to_string();
        if !self.ended {
            let run = self.run;
            let event = Event::Repair {
                run,
                repair,
                step,
                by,
                reason,
            };
            return self.try_handle(event);
        }
        let state = self.state.clone().expect("an ended run has a state");
        let request = (repair, step.as_str(), by.as_str(), reason.as_str());
        let transition = self
            .scheduler
            .reopen(self.now, state, self.playbook.clone(), request)?;
        self.ended = false;
        self.absorb(transition);
        self.drain();
        Ok(())
    }
}
