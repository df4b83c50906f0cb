//! Scheduler tests: event scripts in, command and history transcripts out, plus a property
//! test over random DAGs. Logical time only: `now_ms` advances when the script says so.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use expect_test::{Expect, expect};
use proptest::prelude::*;
use serde_json::{Value, json};
use uuid::Uuid;

use super::state::{RunId, Slot, StepStatus, UnitRef};
use super::{Command, Event, NewRun, Scheduler, TaskSpec, Transition};

/// Drives one run through the scheduler and writes down everything that comes out.
struct Script {
    scheduler: Scheduler,
    playbook: Arc<riposte_playbooks::Playbook>,
    run: RunId,
    now_ms: i64,
    next_token: u64,
    /// Latest dispatch per (step id, item label: "0", "undo1", "health").
    queued: HashMap<(String, String), TaskSpec>,
    log: String,
}

impl Script {
    fn start(yaml: &str, params: Value) -> Script {
        Script::start_as(yaml, params, RunId(Uuid::from_u128(1)), Scheduler::new())
    }

    fn start_as(yaml: &str, params: Value, run: RunId, scheduler: Scheduler) -> Script {
        Script::start_opts(yaml, params, run, scheduler, false)
    }

    /// Starts a dry run.
    fn start_dry(yaml: &str, params: Value) -> Script {
        Script::start_opts(
            yaml,
            params,
            RunId(Uuid::from_u128(1)),
            Scheduler::new(),
            true,
        )
    }

    fn start_opts(
        yaml: &str,
        params: Value,
        run: RunId,
        scheduler: Scheduler,
        dry_run: bool,
    ) -> Script {
        let playbook = Arc::new(riposte_playbooks::compile(yaml).expect("test playbook compiles"));
        let mut script = Script {
            scheduler,
            playbook: playbook.clone(),
            run,
            now_ms: 0,
            next_token: 1,
            queued: HashMap::new(),
            log: String::new(),
        };
        let Value::Object(params) = params else {
            panic!("params must be an object")
        };
        let params = playbook
            .coerce_params(&params)
            .expect("test params are valid");
        let new = NewRun {
            id: script.run,
            playbook,
            params: Value::Object(params),
            trigger: Value::Null,
            requested_by: "tester".into(),
            idempotency_key: String::new(),
            dry_run,
            trace: None,
        };
        script.apply("start", Event::Start(new));
        script
    }

    fn unit(&self, step: &str, item: u32) -> UnitRef {
        let step = self.playbook.step_index(step).expect("step exists");
        UnitRef::step(self.run, step, item)
    }

    fn apply(&mut self, label: &str, event: Event) -> Option<Transition> {
        writeln!(self.log, "> {label}").unwrap();
        match self.scheduler.handle(self.now_ms, event) {
            Ok(t) => {
                self.write(&t);
                Some(t)
            }
            Err(e) => {
                writeln!(self.log, "  error: {e}").unwrap();
                None
            }
        }
    }

    fn write(&mut self, t: &Transition) {
        for (run, h) in &t.history {
            let mut line = if *run == self.run {
                "  ".to_string()
            } else {
                format!("  [{}] ", run.0.as_u128())
            };
            write!(line, "{} {}", h.seq, h.kind).unwrap();
            if !h.step.is_empty() {
                write!(line, " {}#{}", h.step, h.item).unwrap();
            }
            if h.attempt > 0 {
                write!(line, " attempt={}", h.attempt).unwrap();
            }
            if !h.message.is_empty() {
                write!(line, " ({})", h.message).unwrap();
            }
            writeln!(self.log, "{line}").unwrap();
        }
        for c in &t.commands {
            match c {
                Command::Dispatch(task) => {
                    let label = match task.unit.slot {
                        Slot::Step { item, .. } => item.to_string(),
                        Slot::Undo(n) => format!("undo{n}"),
                        Slot::Health { .. } => "health".to_string(),
                    };
                    writeln!(
                        self.log,
                        "  dispatch {}#{label} {} attempt={} input={}",
                        task.step_id, task.action, task.attempt, task.input
                    )
                    .unwrap();
                    self.queued
                        .insert((task.step_id.clone(), label), task.clone());
                }
                Command::ArmTimer { due_ms, .. } => {
                    writeln!(self.log, "  timer at={due_ms}").unwrap()
                }
                Command::Abandon { token } => writeln!(self.log, "  abandon {token}").unwrap(),
                Command::Withdraw(unit) => {
                    let (step, label) = match unit.slot {
                        Slot::Step { step, item } => (step, item.to_string()),
                        _ => unreachable!("only step units are withdrawn"),
                    };
                    let step_id = self.playbook.steps[step].id.clone();
                    writeln!(self.log, "  withdraw {step_id}#{label}").unwrap();
                    self.queued.remove(&(step_id, label));
                }
                Command::Finished { status, .. } => {
                    writeln!(self.log, "  finished {}", status.as_str()).unwrap()
                }
            }
        }
        if t.duplicate {
            writeln!(self.log, "  duplicate").unwrap();
        }
        if let Some(r) = &t.rejected {
            writeln!(self.log, "  rejected: {r}").unwrap();
        }
    }

    fn lease(&mut self, step: &str, item: u32) -> u64 {
        self.lease_slot(step, &item.to_string()).0
    }

    /// Leases a dispatched unit by its label; returns the token and the unit.
    fn lease_slot(&mut self, step: &str, label: &str) -> (u64, UnitRef) {
        let key = (step.to_string(), label.to_string());
        let task = self
            .queued
            .remove(&key)
            .unwrap_or_else(|| panic!("{key:?} was not dispatched:\n{}", self.log));
        let token = self.next_token;
        self.next_token += 1;
        let event = Event::Leased {
            unit: task.unit,
            attempt: task.attempt,
            token,
            worker: "w1".into(),
        };
        self.apply(&format!("lease {step}#{label} token={token}"), event);
        (token, task.unit)
    }

    fn succeed(&mut self, step: &str, item: u32, token: u64, output: Value) {
        let unit = self.unit(step, item);
        self.succeed_unit(unit, token, output);
    }

    fn succeed_unit(&mut self, unit: UnitRef, token: u64, output: Value) {
        self.apply(
            &format!("succeed token={token}"),
            Event::Succeeded {
                unit,
                token,
                worker: "w1".into(),
                output,
            },
        );
    }

    fn fail(&mut self, step: &str, item: u32, token: u64, retryable: bool) {
        let unit = self.unit(step, item);
        self.fail_unit(unit, token, retryable);
    }

    fn fail_unit(&mut self, unit: UnitRef, token: u64, retryable: bool) {
        let message = "boom".to_string();
        let event = Event::Failed {
            unit,
            token,
            worker: "w1".into(),
            message,
            retryable,
        };
        self.apply(&format!("fail token={token} retryable={retryable}"), event);
    }

    fn expire(&mut self, step: &str, item: u32, token: u64) {
        let unit = self.unit(step, item);
        self.apply(
            &format!("expire {step}#{item} token={token}"),
            Event::LeaseExpired { unit, token },
        );
    }

    fn at(&mut self, now_ms: i64) {
        self.now_ms = now_ms;
    }

    fn timer(&mut self) {
        let run = self.run;
        self.apply(&format!("timer now={}", self.now_ms), Event::Timer { run });
    }

    fn cancel(&mut self) {
        let event = Event::Cancel {
            run: self.run,
            reason: "test".into(),
            by: "alice".into(),
        };
        self.apply("cancel", event);
    }

    fn check(&self, expect: Expect) {
        expect.assert_eq(&self.log);
    }
}

const DIAMOND: &str = r#"
name: diamond
version: 1
params:
  fast: { type: bool, default: false }
  targets: { type: list, default: [a, b, c] }
steps:
  - id: start
    action: core.echo
    with: { msg: hi }
  - id: left
    needs: [start]
    when: "{{ params.fast }}"
    action: core.noop
  - id: fan
    needs: [start]
    for_each: "{{ params.targets }}"
    concurrency: 2
    action: core.echo
    with: { target: "{{ item }}" }
  - id: join
    needs: [left, fan]
    action: core.echo
    with: { fan: "{{ steps.fan.output }}", left: "{{ steps.left.status }}" }
"#;

#[test]
fn diamond_with_skipped_branch_and_for_each() {
    let mut s = Script::start(DIAMOND, json!({}));
    let t = s.lease("start", 0);
    s.succeed("start", 0, t, json!({"msg": "hi"}));
    let a = s.lease("fan", 0);
    let b = s.lease("fan", 1);
    s.succeed("fan", 1, b, json!("B"));
    let c = s.lease("fan", 2);
    s.succeed("fan", 0, a, json!("A"));
    s.succeed("fan", 2, c, json!("C"));
    let j = s.lease("join", 0);
    s.succeed("join", 0, j, json!({}));
    s.check(expect![[r#"
        > start
          1 run.started (requested by tester)
          2 step.started start#0
          dispatch start#0 core.echo attempt=1 input={"msg":"hi"}
        > lease start#0 token=1
          3 task.leased start#0 attempt=1
        > succeed token=1
          4 task.succeeded start#0 attempt=1
          5 step.succeeded start#0
          6 step.skipped left#0 (`when` is false)
          7 step.started fan#0 (3 items)
          dispatch fan#0 core.echo attempt=1 input={"target":"a"}
          dispatch fan#1 core.echo attempt=1 input={"target":"b"}
        > lease fan#0 token=2
          8 task.leased fan#0 attempt=1
        > lease fan#1 token=3
          9 task.leased fan#1 attempt=1
        > succeed token=3
          10 task.succeeded fan#1 attempt=1
          dispatch fan#2 core.echo attempt=1 input={"target":"c"}
        > lease fan#2 token=4
          11 task.leased fan#2 attempt=1
        > succeed token=2
          12 task.succeeded fan#0 attempt=1
        > succeed token=4
          13 task.succeeded fan#2 attempt=1
          14 step.succeeded fan#0
          15 step.started join#0
          dispatch join#0 core.echo attempt=1 input={"fan":["A","B","C"],"left":"skipped"}
        > lease join#0 token=5
          16 task.leased join#0 attempt=1
        > succeed token=5
          17 task.succeeded join#0 attempt=1
          18 step.succeeded join#0
          19 run.finished
          finished succeeded
    "#]]);
}

const CHAIN: &str = r#"
name: chain
version: 1
params:
  run_b: { type: bool, default: false }
steps:
  - id: a
    action: core.noop
  - id: b
    needs: [a]
    when: "{{ params.run_b }}"
    action: core.noop
  - id: c
    needs: [b]
    action: core.noop
"#;

#[test]
fn skip_propagates_along_a_chain() {
    let mut s = Script::start(CHAIN, json!({}));
    let t = s.lease("a", 0);
    s.succeed("a", 0, t, Value::Null);
    s.check(expect![[r#"
        > start
          1 run.started (requested by tester)
          2 step.started a#0
          dispatch a#0 core.noop attempt=1 input={}
        > lease a#0 token=1
          3 task.leased a#0 attempt=1
        > succeed token=1
          4 task.succeeded a#0 attempt=1
          5 step.succeeded a#0
          6 step.skipped b#0 (`when` is false)
          7 step.skipped c#0 (all its needs were skipped)
          8 run.finished
          finished succeeded
    "#]]);
}

const RETRY: &str = r#"
name: retry
version: 1
steps:
  - id: flaky
    action: core.fail
    with: { message: boom, attempts_failing: 2 }
    retry: { attempts: 3, backoff: exponential, initial: 100ms, max: 1s }
"#;

#[test]
fn retry_with_backoff_then_success_and_stale_and_duplicate_results() {
    let mut s = Script::start(RETRY, json!({}));
    let t1 = s.lease("flaky", 0);
    s.fail("flaky", 0, t1, true);
    s.at(50);
    s.timer();
    s.at(100);
    s.timer();
    let t2 = s.lease("flaky", 0);
    s.fail("flaky", 0, t2, true);
    s.at(300);
    s.timer();
    let t3 = s.lease("flaky", 0);
    s.succeed("flaky", 0, t1, Value::Null);
    s.succeed("flaky", 0, t3, json!({"attempt": 3}));
    s.check(expect![[r#"
        > start
          1 run.started (requested by tester)
          2 step.started flaky#0
          dispatch flaky#0 core.fail attempt=1 input={"attempts_failing":2,"message":"boom"}
        > lease flaky#0 token=1
          3 task.leased flaky#0 attempt=1
        > fail token=1 retryable=true
          4 task.failed flaky#0 attempt=1 (boom)
          5 task.retry_scheduled flaky#0 attempt=2 (attempt 2 of 3 in 100 ms)
          timer at=100
        > timer now=50
          timer at=100
        > timer now=100
          dispatch flaky#0 core.fail attempt=2 input={"attempts_failing":2,"message":"boom"}
        > lease flaky#0 token=2
          6 task.leased flaky#0 attempt=2
        > fail token=2 retryable=true
          7 task.failed flaky#0 attempt=2 (boom)
          8 task.retry_scheduled flaky#0 attempt=3 (attempt 3 of 3 in 200 ms)
          timer at=300
        > timer now=300
          dispatch flaky#0 core.fail attempt=3 input={"attempts_failing":2,"message":"boom"}
        > lease flaky#0 token=3
          9 task.leased flaky#0 attempt=3
        > succeed token=1
          10 task.result_rejected flaky#0 (result from worker w1 refused: its lease is stale: the task was leased again)
          rejected: result from worker w1 refused: its lease is stale: the task was leased again
        > succeed token=3
          11 task.succeeded flaky#0 attempt=3
          12 step.succeeded flaky#0
          13 run.finished
          finished succeeded
    "#]]);
}

#[test]
fn repeated_result_is_a_duplicate_even_after_the_run_finished() {
    let mut s = Script::start(RETRY, json!({}));
    let t = s.lease("flaky", 0);
    let unit = s.unit("flaky", 0);
    let event = Event::Succeeded {
        unit,
        token: t,
        worker: "w1".into(),
        output: Value::Null,
    };
    let done = s.apply("succeed", event).expect("accepted");
    let mut finished = done
        .finished
        .into_iter()
        .next()
        .expect("the run finished and left the scheduler");
    assert!(s.scheduler.run(s.run).is_none());
    let again = s
        .scheduler
        .result_for_finished(1, &mut finished, &s.playbook, &unit, (t, "w1"));
    assert!(again.duplicate && again.rejected.is_none() && again.changed.is_empty());
    let stale =
        s.scheduler
            .result_for_finished(1, &mut finished, &s.playbook, &unit, (t + 7, "w1"));
    assert!(!stale.changed.is_empty() && !stale.duplicate);
    assert_eq!(
        stale.rejected.as_deref(),
        Some("result from worker w1 refused: the run is succeeded")
    );
    assert_eq!(stale.history[0].1.kind, "task.result_rejected");
    assert_eq!(stale.history[0].1.seq, finished.history_seq);
}

#[test]
fn a_result_from_another_worker_is_refused_even_with_the_right_token() {
    let mut s = Script::start(RETRY, json!({}));
    let t = s.lease("flaky", 0);
    let unit = s.unit("flaky", 0);
    let forged = Event::Succeeded {
        unit,
        token: t,
        worker: "mallory/0001".into(),
        output: json!({"forged": true}),
    };
    let refused = s.apply("forged", forged).expect("recorded");
    assert_eq!(
        refused.rejected.as_deref(),
        Some("result from worker mallory/0001 refused: the task is leased to another worker")
    );
    let (_, entry) = &refused.history[0];
    assert_eq!(
        (entry.kind.as_str(), entry.worker.as_str()),
        ("task.result_rejected", "mallory/0001")
    );
    assert!(!format!("{refused:?}").contains(&format!("token {t}")));
    s.succeed("flaky", 0, t, json!({"honest": true}));
    assert!(s.log.contains("finished succeeded"), "{}", s.log);
}

#[test]
fn lost_leases_without_a_retry_policy_are_made_again_at_once_then_fail() {
    let mut s = Script::start(CHAIN, json!({}));
    for _ in 0..super::LEASE_LOSS_ATTEMPTS_MIN {
        let t = s.lease("a", 0);
        s.expire("a", 0, t);
    }
    s.check(expect![[r#"
        > start
          1 run.started (requested by tester)
          2 step.started a#0
          dispatch a#0 core.noop attempt=1 input={}
        > lease a#0 token=1
          3 task.leased a#0 attempt=1
        > expire a#0 token=1
          4 task.lease_expired a#0 attempt=1 (lease lost on worker w1)
          dispatch a#0 core.noop attempt=2 input={}
        > lease a#0 token=2
          5 task.leased a#0 attempt=2
        > expire a#0 token=2
          6 task.lease_expired a#0 attempt=2 (lease lost on worker w1)
          dispatch a#0 core.noop attempt=3 input={}
        > lease a#0 token=3
          7 task.leased a#0 attempt=3
        > expire a#0 token=3
          8 task.lease_expired a#0 attempt=3 (lease lost on worker w1)
          9 step.failed a#0 (lease lost on worker w1; attempts exhausted)
          10 run.finished (step a failed: lease lost on worker w1; attempts exhausted)
          finished failed
    "#]]);
}

const PATIENT: &str = r#"
name: patient
version: 1
steps:
  - id: slow
    action: core.noop
    retry: { attempts: 5, backoff: fixed, initial: 100ms }
"#;

#[test]
fn lost_leases_are_failed_attempts_under_the_retry_policy() {
    let mut s = Script::start(PATIENT, json!({}));
    for n in 0..4 {
        let t = s.lease("slow", 0);
        s.expire("slow", 0, t);
        s.at(100 * (n + 1));
        s.timer();
    }
    let t = s.lease("slow", 0);
    s.succeed("slow", 0, t, Value::Null);
    s.check(expect![[r#"
        > start
          1 run.started (requested by tester)
          2 step.started slow#0
          dispatch slow#0 core.noop attempt=1 input={}
        > lease slow#0 token=1
          3 task.leased slow#0 attempt=1
        > expire slow#0 token=1
          4 task.lease_expired slow#0 attempt=1 (lease lost on worker w1)
          5 task.retry_scheduled slow#0 attempt=2 (attempt 2 of 5 in 100 ms)
          timer at=100
        > timer now=100
          dispatch slow#0 core.noop attempt=2 input={}
        > lease slow#0 token=2
          6 task.leased slow#0 attempt=2
        > expire slow#0 token=2
          7 task.lease_expired slow#0 attempt=2 (lease lost on worker w1)
          8 task.retry_scheduled slow#0 attempt=3 (attempt 3 of 5 in 100 ms)
          timer at=200
        > timer now=200
          dispatch slow#0 core.noop attempt=3 input={}
        > lease slow#0 token=3
          9 task.leased slow#0 attempt=3
        > expire slow#0 token=3
          10 task.lease_expired slow#0 attempt=3 (lease lost on worker w1)
          11 task.retry_scheduled slow#0 attempt=4 (attempt 4 of 5 in 100 ms)
          timer at=300
        > timer now=300
          dispatch slow#0 core.noop attempt=4 input={}
        > lease slow#0 token=4
          12 task.leased slow#0 attempt=4
        > expire slow#0 token=4
          13 task.lease_expired slow#0 attempt=4 (lease lost on worker w1)
          14 task.retry_scheduled slow#0 attempt=5 (attempt 5 of 5 in 100 ms)
          timer at=400
        > timer now=400
          dispatch slow#0 core.noop attempt=5 input={}
        > lease slow#0 token=5
          15 task.leased slow#0 attempt=5
        > succeed token=5
          16 task.succeeded slow#0 attempt=5
          17 step.succeeded slow#0
          18 run.finished
          finished succeeded
    "#]]);
}

const UNSERVED: &str = r#"
name: unserved
version: 1
steps:
  - id: block
    action: core.noop
    schedule_to_start: 5m
    undo: { action: core.noop }
  - id: after
    needs: [block]
    action: core.noop
"#;

#[test]
fn a_task_nobody_takes_within_schedule_to_start_fails_its_step() {
    let mut s = Script::start(UNSERVED, json!({}));
    s.at(299_999);
    s.timer();
    s.at(300_000);
    s.timer();
    s.check(expect![[r#"
        > start
          1 run.started (requested by tester)
          2 step.started block#0
          dispatch block#0 core.noop attempt=1 input={}
          timer at=300000
        > timer now=299999
          timer at=300000
        > timer now=300000
          3 task.start_timed_out block#0 attempt=1 (not started within 5m (schedule_to_start): no worker took its core.noop task)
          4 step.failed block#0 (not started within 5m (schedule_to_start): no worker took its core.noop task)
          5 run.finished (step block failed: not started within 5m (schedule_to_start): no worker took its core.noop task)
          withdraw block#0
          finished failed
    "#]]);
}

#[test]
fn cancel_abandons_leases_and_rejects_late_results() {
    let mut s = Script::start(DIAMOND, json!({"fast": true}));
    let t = s.lease("start", 0);
    s.succeed("start", 0, t, Value::Null);
    let l = s.lease("left", 0);
    s.cancel();
    s.succeed("left", 0, l, Value::Null);
    s.check(expect![[r#"
        > start
          1 run.started (requested by tester)
          2 step.started start#0
          dispatch start#0 core.echo attempt=1 input={"msg":"hi"}
        > lease start#0 token=1
          3 task.leased start#0 attempt=1
        > succeed token=1
          4 task.succeeded start#0 attempt=1
          5 step.succeeded start#0
          6 step.started left#0
          7 step.started fan#0 (3 items)
          dispatch left#0 core.noop attempt=1 input={}
          dispatch fan#0 core.echo attempt=1 input={"target":"a"}
          dispatch fan#1 core.echo attempt=1 input={"target":"b"}
        > lease left#0 token=2
          8 task.leased left#0 attempt=1
        > cancel
          9 run.cancel_requested (by alice: test)
          10 run.finished (cancelled by alice: test)
          abandon 2
          finished cancelled
        > succeed token=2
          error: run 00000000-0000-0000-0000-000000000001 is not active
    "#]]);
}

#[test]
fn non_retryable_failure_fails_the_run_and_cancels_siblings() {
    let mut s = Script::start(DIAMOND, json!({"fast": true}));
    let t = s.lease("start", 0);
    s.succeed("start", 0, t, Value::Null);
    let l = s.lease("left", 0);
    let f = s.lease("fan", 0);
    s.fail("left", 0, l, false);
    assert!(s.log.contains(&format!("abandon {f}")), "{}", s.log);
    assert!(s.log.contains("finished failed"));
}

// ---- property test: random DAGs ----------------------------------------------------------

fn random_playbook(needs: &[Vec<usize>], skip: &[bool], items: &[u8]) -> String {
    let mut yaml = String::from("name: random\nversion: 1\nsteps:\n");
    for (i, deps) in needs.iter().enumerate() {
        writeln!(yaml, "  - id: s{i}\n    action: core.noop").unwrap();
        if !deps.is_empty() {
            let list: Vec<String> = deps.iter().map(|d| format!("s{d}")).collect();
            writeln!(yaml, "    needs: [{}]", list.join(", ")).unwrap();
        }
        if skip[i] {
            writeln!(yaml, "    when: \"false\"").unwrap();
        }
        if items[i] > 1 {
            let list: Vec<String> = (0..items[i]).map(|n| n.to_string()).collect();
            writeln!(
                yaml,
                "    for_each: \"[{}]\"\n    concurrency: 2",
                list.join(", ")
            )
            .unwrap();
        }
    }
    yaml
}

fn dag() -> impl Strategy<Value = (Vec<Vec<usize>>, Vec<bool>, Vec<u8>, Vec<u8>)> {
    (1usize..12).prop_flat_map(|n| {
        let needs = (0..n)
            .map(|i| {
                if i == 0 {
                    Just(vec![]).boxed()
                } else {
                    proptest::collection::btree_set(0..i, 0..=i.min(3))
                        .prop_map(|s| s.into_iter().collect())
                        .boxed()
                }
            })
            .collect::<Vec<_>>();
        (
            needs,
            proptest::collection::vec(proptest::bool::weighted(0.2), n),
            proptest::collection::vec(0u8..4, n),
            proptest::collection::vec(any::<u8>(), 64),
        )
    })
}

proptest! {
    #[test]
    fn every_step_ends_and_none_starts_before_its_needs((needs, skip, items, choices) in dag()) {
        let yaml = random_playbook(&needs, &skip, &items);
        let mut s = Script::start(&yaml, json!({}));
        let mut choice = choices.iter().cycle();
        let mut steps_done = 0;
        let mut losses: HashMap<(String, u32), u32> = HashMap::new();
        while !s.queued.is_empty() {
            steps_done += 1;
            prop_assert!(steps_done < 10_000, "the run makes progress");
            let mut keys: Vec<_> = s.queued.keys().cloned().collect();
            keys.sort();
            let (step, label) = keys[*choice.next().unwrap() as usize % keys.len()].clone();
            let item: u32 = label.parse().unwrap();
            // Needs of a dispatched step are all finished, none failed.
            let index = s.playbook.step_index(&step).unwrap();
            let state = s.scheduler.run(s.run).unwrap().clone();
            for &n in &s.playbook.steps[index].needs {
                prop_assert!(matches!(state.steps[n].status, StepStatus::Succeeded | StepStatus::Skipped));
            }
            let token = s.lease(&step, item);
            let lost = losses.entry((step.clone(), item)).or_default();
            // Lose a lease now and then, never often enough to fail the unit.
            if *choice.next().unwrap() % 7 == 0 && *lost + 1 < super::LEASE_LOSS_ATTEMPTS_MIN {
                *lost += 1;
                s.expire(&step, item, token);
            } else {
                s.succeed(&step, item, token, json!(item));
            }
        }
        prop_assert!(s.scheduler.run(s.run).is_none(), "the run finished:\n{}\n{}", yaml, s.log);
        prop_assert!(s.log.contains("finished succeeded"));
    }
}

// ---- response semantics: timers, undo, grants, approvals, keys, waves --------------------

impl Script {
    /// Starts another run of the same playbook in the same scheduler.
    fn start_another(&mut self, n: u128, params: Value) -> RunId {
        let id = RunId(Uuid::from_u128(n));
        let Value::Object(params) = params else {
            panic!("params must be an object")
        };
        let params = self
            .playbook
            .coerce_params(&params)
            .expect("test params are valid");
        let new = NewRun {
            id,
            playbook: self.playbook.clone(),
            params: Value::Object(params),
            trigger: Value::Null,
            requested_by: "tester".into(),
            idempotency_key: String::new(),
            dry_run: false,
            trace: None,
        };
        self.apply(&format!("start run {n}"), Event::Start(new));
        id
    }

    fn decide(&mut self, step: &str, who: &str, approve: bool, digest: &str) {
        let request = super::DecisionRequest {
            run: self.run,
            step: step.into(),
            approve,
            digest: digest.into(),
            who: who.into(),
            groups: if who == "mallory" {
                vec![]
            } else {
                vec!["soc-leads".into()]
            },
            comment: "ok".into(),
        };
        self.apply(
            &format!("decide {step} by {who} approve={approve}"),
            Event::Decide(request),
        );
    }

    fn digest(&self, step: &str) -> String {
        let index = self.playbook.step_index(step).unwrap();
        let state = self.scheduler.run(self.run).unwrap();
        state.steps[index].approval.as_ref().unwrap().digest.clone()
    }
}

const SLEEPY: &str = r#"
name: sleepy
version: 1
params:
  nap: { type: duration, default: 1m }
steps:
  - id: nap
    sleep: "{{ params.nap }}"
  - id: after
    needs: [nap]
    action: core.noop
"#;

#[test]
fn a_sleep_is_a_durable_timer() {
    let mut s = Script::start(SLEEPY, json!({}));
    s.at(30_000);
    s.timer();
    s.at(60_000);
    s.timer();
    s.check(expect![[r#"
        > start
          1 run.started (requested by tester)
          2 step.sleeping nap#0 (until 1970-01-01T00:01:00.000Z)
          timer at=60000
        > timer now=30000
          timer at=60000
        > timer now=60000
          3 step.woke nap#0
          4 step.succeeded nap#0
          5 step.started after#0
          dispatch after#0 core.noop attempt=1 input={}
    "#]]);
}

const UNDOABLE: &str = r#"
name: undoable
version: 1
params:
  fail_last: { type: bool, default: true }
steps:
  - id: first
    action: core.echo
    with: { n: 1 }
    undo: { action: core.echo, with: { undo: "{{ steps.first.output.n }}" } }
  - id: second
    needs: [first]
    action: core.echo
    with: { n: 2 }
    undo: { action: core.echo, with: { undo: "{{ steps.second.output.n }}" } }
  - id: last
    needs: [second]
    action: core.fail
    with: { message: "no" }
"#;

#[test]
fn a_failure_runs_the_undos_in_reverse_order() {
    let mut s = Script::start(UNDOABLE, json!({}));
    let t = s.lease("first", 0);
    s.succeed("first", 0, t, json!({"n": 1}));
    let t = s.lease("second", 0);
    s.succeed("second", 0, t, json!({"n": 2}));
    let t = s.lease("last", 0);
    s.fail("last", 0, t, false);
    let (t, unit) = s.lease_slot("second", "undo1");
    s.succeed_unit(unit, t, Value::Null);
    let (t, unit) = s.lease_slot("first", "undo0");
    s.succeed_unit(unit, t, Value::Null);
    s.check(expect![[r#"
        > start
          1 run.started (requested by tester)
          2 step.started first#0
          dispatch first#0 core.echo attempt=1 input={"n":1}
        > lease first#0 token=1
          3 task.leased first#0 attempt=1
        > succeed token=1
          4 task.succeeded first#0 attempt=1
          5 undo.recorded first#0 (undo recorded: core.echo)
          6 step.succeeded first#0
          7 step.started second#0
          dispatch second#0 core.echo attempt=1 input={"n":2}
        > lease second#0 token=2
          8 task.leased second#0 attempt=1
        > succeed token=2
          9 task.succeeded second#0 attempt=1
          10 undo.recorded second#0 (undo recorded: core.echo)
          11 step.succeeded second#0
          12 step.started last#0
          dispatch last#0 core.fail attempt=1 input={"message":"no"}
        > lease last#0 token=3
          13 task.leased last#0 attempt=1
        > fail token=3 retryable=false
          14 task.failed last#0 attempt=1 (boom (not retryable))
          15 step.failed last#0 (boom)
          16 run.compensating (step last failed: boom)
          dispatch second#undo1 core.echo attempt=1 input={"undo":2}
        > lease second#undo1 token=4
          17 undo.leased second#0 attempt=1
        > succeed token=4
          18 undo.succeeded second#0 attempt=1
          dispatch first#undo0 core.echo attempt=1 input={"undo":1}
        > lease first#undo0 token=5
          19 undo.leased first#0 attempt=1
        > succeed token=5
          20 undo.succeeded first#0 attempt=1
          21 run.finished (step last failed: boom)
          finished failed
    "#]]);
}

#[test]
fn a_step_that_may_fail_fails_alone_the_run_goes_on_and_nothing_is_undone() {
    let mut s = Script::start(
        r#"
name: writeback
version: 1
steps:
  - id: block
    action: core.echo
    with: { n: 1 }
    undo: { action: core.echo, with: { undo: 1 } }
  - id: comment
    needs: [block]
    action: core.fail
    with: { message: "no" }
    on_failure: continue
  - id: after_comment
    needs: [comment]
    action: core.noop
  - id: done
    needs: [block]
    action: core.noop
"#,
        json!({}),
    );
    let t = s.lease("block", 0);
    s.succeed("block", 0, t, json!({"n": 1}));
    let t = s.lease("comment", 0);
    s.fail("comment", 0, t, false);
    let t = s.lease("done", 0);
    s.succeed("done", 0, t, json!({}));
    s.check(expect![[r#"
        > start
          1 run.started (requested by tester)
          2 step.started block#0
          dispatch block#0 core.echo attempt=1 input={"n":1}
        > lease block#0 token=1
          3 task.leased block#0 attempt=1
        > succeed token=1
          4 task.succeeded block#0 attempt=1
          5 undo.recorded block#0 (undo recorded: core.echo)
          6 step.succeeded block#0
          7 step.started comment#0
          8 step.started done#0
          dispatch comment#0 core.fail attempt=1 input={"message":"no"}
          dispatch done#0 core.noop attempt=1 input={}
        > lease comment#0 token=2
          9 task.leased comment#0 attempt=1
        > fail token=2 retryable=false
          10 task.failed comment#0 attempt=1 (boom (not retryable))
          11 step.failed comment#0 (boom)
          12 step.failure_ignored comment#0 (step comment failed; the run goes on without it (on_failure: continue))
          13 step.skipped after_comment#0 (a step it needs failed (on_failure: continue))
        > lease done#0 token=3
          14 task.leased done#0 attempt=1
        > succeed token=3
          15 task.succeeded done#0 attempt=1
          16 step.succeeded done#0
          17 run.finished
          finished succeeded
    "#]]);
}

#[test]
fn a_cancel_runs_the_undos_once_each_and_a_late_result_is_rejected() {
    let mut s = Script::start(UNDOABLE, json!({}));
    let t = s.lease("first", 0);
    s.succeed("first", 0, t, json!({"n": 1}));
    let second = s.lease("second", 0);
    s.cancel();
    s.cancel();
    s.succeed("second", 0, second, json!({"n": 2}));
    let (t, unit) = s.lease_slot("first", "undo0");
    s.fail_unit(unit, t, true);
    s.at(1_000);
    s.timer();
    let (t, unit) = s.lease_slot("first", "undo0");
    s.succeed_unit(unit, t, Value::Null);
    assert!(s.queued.is_empty(), "nothing else to run:\n{}", s.log);
    s.check(expect![[r#"
        > start
          1 run.started (requested by tester)
          2 step.started first#0
          dispatch first#0 core.echo attempt=1 input={"n":1}
        > lease first#0 token=1
          3 task.leased first#0 attempt=1
        > succeed token=1
          4 task.succeeded first#0 attempt=1
          5 undo.recorded first#0 (undo recorded: core.echo)
          6 step.succeeded first#0
          7 step.started second#0
          dispatch second#0 core.echo attempt=1 input={"n":2}
        > lease second#0 token=2
          8 task.leased second#0 attempt=1
        > cancel
          9 run.cancel_requested (by alice: test)
          10 run.compensating (cancelled by alice: test)
          abandon 2
          dispatch first#undo0 core.echo attempt=1 input={"undo":1}
        > cancel
          error: run 00000000-0000-0000-0000-000000000001 is already being compensated
        > succeed token=2
          11 task.result_rejected second#0 (result from worker w1 refused: the task was cancelled)
          rejected: result from worker w1 refused: the task was cancelled
        > lease first#undo0 token=3
          12 undo.leased first#0 attempt=1
        > fail token=3 retryable=true
          13 undo.failed first#0 attempt=1 (boom)
          14 undo.retry_scheduled first#0 attempt=2 (attempt 2 in 1000 ms)
          timer at=1000
        > timer now=1000
          dispatch first#undo0 core.echo attempt=2 input={"undo":1}
        > lease first#undo0 token=4
          15 undo.leased first#0 attempt=2
        > succeed token=4
          16 undo.succeeded first#0 attempt=2
          17 run.finished (cancelled by alice: test)
          finished cancelled
    "#]]);
}

const GRANT: &str = r#"
name: grant
version: 1
params:
  who: { type: string, default: alice }
  ttl: { type: duration, default: 1h }
steps:
  - id: open
    action: core.echo
    with: { user: "{{ params.who }}" }
    undo: { action: core.echo, with: { close: "{{ params.who }}" } }
    grant: { ttl: "{{ params.ttl }}", subject: "{{ params.who }}" }
"#;

#[test]
fn a_grant_holds_the_run_until_its_ttl_then_is_revoked() {
    let mut s = Script::start(GRANT, json!({}));
    let t = s.lease("open", 0);
    s.succeed("open", 0, t, json!({}));
    s.at(3_599_999);
    s.timer();
    s.at(3_600_000);
    s.timer();
    let (t, unit) = s.lease_slot("open", "undo0");
    s.succeed_unit(unit, t, Value::Null);
    s.check(expect![[r#"
        > start
          1 run.started (requested by tester)
          2 step.started open#0
          dispatch open#0 core.echo attempt=1 input={"user":"alice"}
        > lease open#0 token=1
          3 task.leased open#0 attempt=1
        > succeed token=1
          4 task.succeeded open#0 attempt=1
          5 grant.opened open#0 (grant for `alice` until 1970-01-01T01:00:00.000Z)
          6 step.succeeded open#0
          7 run.holding_grants (every step succeeded; grants stay open until revoked)
          timer at=3600000
        > timer now=3599999
          timer at=3600000
        > timer now=3600000
          8 grant.expired open#0 (revoking)
          dispatch open#undo0 core.echo attempt=1 input={"close":"alice"}
        > lease open#undo0 token=2
          9 undo.leased open#0 attempt=1
        > succeed token=2
          10 undo.succeeded open#0 attempt=1
          11 grant.revoked open#0
          12 run.finished
          finished succeeded
    "#]]);
}

const GATED: &str = r#"
name: gated
version: 1
params:
  ip: { type: ip, default: 203.0.113.7 }
steps:
  - id: block
    action: core.echo
    with: { ip: "{{ params.ip }}" }
    approval: { approvers: [soc-leads], min: 1, timeout: 15m }
"#;

#[test]
fn approvals_are_bound_to_people_and_to_the_inputs() {
    let mut s = Script::start(GATED, json!({}));
    let digest = s.digest("block");
    s.decide("block", "tester", true, &digest);
    s.decide("block", "mallory", true, &digest);
    s.decide("block", "bob", true, "0000");
    s.decide("block", "bob", true, &digest);
    s.decide("block", "carol", true, &digest);
    let t = s.lease("block", 0);
    s.succeed("block", 0, t, json!({}));
    let log = s.log.replace(&digest, "<digest>");
    expect![[r#"
        > start
          1 run.started (requested by tester)
          2 approval.requested block#0 (1 of soc-leads until 1970-01-01T00:15:00.000Z; digest <digest>)
          timer at=900000
        > decide block by tester approve=true
          error: tester requested this run and may not approve it
        > decide block by mallory approve=true
          error: mallory is not in the approver groups of step `block` (soc-leads)
        > decide block by bob approve=true
          error: the decision is for inputs with digest 0000 but step `block` waits on digest <digest>; review the inputs again
        > decide block by bob approve=true
          3 approval.decision block#0 (approved by bob: ok)
          4 approval.granted block#0 (1 of 1 approvals)
          5 step.started block#0
          dispatch block#0 core.echo attempt=1 input={"ip":"203.0.113.7"}
        > decide block by carol approve=true
          error: step `block` is not waiting for a decision (it is running)
        > lease block#0 token=1
          6 task.leased block#0 attempt=1
        > succeed token=1
          7 task.succeeded block#0 attempt=1
          8 step.succeeded block#0
          9 run.finished
          finished succeeded
    "#]].assert_eq(&log);
}

#[test]
fn an_approval_times_out_as_a_rejection_and_a_rejection_fails_the_run() {
    let mut s = Script::start(GATED, json!({}));
    s.at(15 * 60 * 1000);
    s.timer();
    assert!(s.log.contains("approval.timed_out"), "{}", s.log);
    assert!(s.log.contains("finished failed"), "{}", s.log);
    let mut r = Script::start(GATED, json!({}));
    let digest = r.digest("block");
    r.decide("block", "bob", false, &digest);
    assert!(r.log.contains("finished failed"), "{}", r.log);
}

const KEYED: &str = r#"
name: keyed
version: 1
concurrency: { key: "ip:{{ params.ip }}", limit: 1, policy: queue }
params:
  ip: { type: ip, required: true }
steps:
  - id: contain
    action: core.noop
"#;

#[test]
fn runs_with_the_same_key_queue_and_never_overlap() {
    let mut s = Script::start(KEYED, json!({"ip": "203.0.113.7"}));
    let t = s.lease("contain", 0);
    let second = s.start_another(2, json!({"ip": "203.0.113.7"}));
    let other = s.start_another(3, json!({"ip": "198.51.100.1"}));
    assert_eq!(
        s.scheduler.run(second).unwrap().status,
        super::state::RunStatus::Queued
    );
    assert_eq!(
        s.scheduler.run(other).unwrap().status,
        super::state::RunStatus::Running
    );
    s.succeed("contain", 0, t, Value::Null);
    assert_eq!(
        s.scheduler.run(second).unwrap().status,
        super::state::RunStatus::Running
    );
    s.check(expect![[r#"
        > start
          1 run.started (requested by tester)
          2 step.started contain#0
          dispatch contain#0 core.noop attempt=1 input={}
        > lease contain#0 token=1
          3 task.leased contain#0 attempt=1
        > start run 2
          [2] 1 run.started (requested by tester)
          [2] 2 run.queued (key `ip:203.0.113.7` is held by run 00000000-0000-0000-0000-000000000001; waiting)
        > start run 3
          [3] 1 run.started (requested by tester)
          [3] 2 step.started contain#0
          dispatch contain#0 core.noop attempt=1 input={}
        > succeed token=1
          4 task.succeeded contain#0 attempt=1
          5 step.succeeded contain#0
          6 run.finished
          [2] 3 run.dequeued (key `ip:203.0.113.7` is free)
          [2] 4 step.started contain#0
          finished succeeded
          dispatch contain#0 core.noop attempt=1 input={}
    "#]]);
}

#[test]
fn drop_and_replace_policies() {
    let dropping = KEYED.replace("policy: queue", "policy: drop");
    let mut s = Script::start(&dropping, json!({"ip": "203.0.113.7"}));
    s.start_another(2, json!({"ip": "203.0.113.7"}));
    assert!(s.log.contains("run.dropped"), "{}", s.log);
    let replacing = KEYED.replace("policy: queue", "policy: replace");
    let mut r = Script::start(&replacing, json!({"ip": "203.0.113.7"}));
    let _ = r.lease("contain", 0);
    r.start_another(2, json!({"ip": "203.0.113.7"}));
    r.check(expect![[r#"
        > start
          1 run.started (requested by tester)
          2 step.started contain#0
          dispatch contain#0 core.noop attempt=1 input={}
        > lease contain#0 token=1
          3 task.leased contain#0 attempt=1
        > start run 2
          [2] 1 run.started (requested by tester)
          [2] 2 run.queued (key `ip:203.0.113.7` is held by run 00000000-0000-0000-0000-000000000001; replacing it)
          4 run.cancel_requested (by riposte: replaced by run 00000000-0000-0000-0000-000000000002 (key `ip:203.0.113.7`))
          5 run.finished (cancelled by riposte: replaced by run 00000000-0000-0000-0000-000000000002 (key `ip:203.0.113.7`))
          [2] 3 run.dequeued (key `ip:203.0.113.7` is free)
          [2] 4 step.started contain#0
          abandon 1
          finished cancelled
          dispatch contain#0 core.noop attempt=1 input={}
    "#]]);
}

const ROLLOUT: &str = r#"
name: rollout
version: 1
params:
  hosts: { type: list, default: [h0, h1, h2, h3, h4, h5, h6, h7] }
steps:
  - id: patch
    for_each: "{{ params.hosts }}"
    concurrency: 2
    action: core.echo
    with: { host: "{{ item }}" }
    waves: { canary: 1, batch: 3, error_budget: 1 }
"#;

#[test]
fn a_rollout_halts_when_failures_exceed_the_budget_and_resumes() {
    let mut s = Script::start(ROLLOUT, json!({}));
    let t = s.lease("patch", 0);
    s.succeed("patch", 0, t, json!("ok"));
    let a = s.lease("patch", 1);
    let b = s.lease("patch", 2);
    s.fail("patch", 1, a, false);
    s.fail("patch", 2, b, false);
    let c = s.lease("patch", 3);
    s.succeed("patch", 3, c, json!("ok"));
    assert!(
        s.queued.is_empty(),
        "nothing new starts once the budget is spent:\n{}",
        s.log
    );
    let state = s.scheduler.run(s.run).unwrap();
    assert_eq!(state.status, super::state::RunStatus::Halted);
    let run = s.run;
    let resume = Event::Repair {
        run,
        repair: super::Repair::Resume,
        step: String::new(),
        by: "alice".into(),
        reason: "known flaky hosts".into(),
    };
    s.apply("resume", resume);
    s.check(expect![[r#"
        > start
          1 run.started (requested by tester)
          2 step.started patch#0 (8 items)
          3 wave.started patch#0 (wave 0: items 0..1)
          dispatch patch#0 core.echo attempt=1 input={"host":"h0"}
        > lease patch#0 token=1
          4 task.leased patch#0 attempt=1
        > succeed token=1
          5 task.succeeded patch#0 attempt=1
          6 wave.started patch#0 (wave 1: items 1..4)
          dispatch patch#1 core.echo attempt=1 input={"host":"h1"}
          dispatch patch#2 core.echo attempt=1 input={"host":"h2"}
        > lease patch#1 token=2
          7 task.leased patch#1 attempt=1
        > lease patch#2 token=3
          8 task.leased patch#2 attempt=1
        > fail token=2 retryable=false
          9 task.failed patch#1 attempt=1 (boom (not retryable))
          dispatch patch#3 core.echo attempt=1 input={"host":"h3"}
        > fail token=3 retryable=false
          10 task.failed patch#2 attempt=1 (boom (not retryable))
        > lease patch#3 token=4
          11 task.leased patch#3 attempt=1
        > succeed token=4
          12 task.succeeded patch#3 attempt=1
          13 run.halted patch#0 (error budget spent: 2 failed; succeeded: 0,3; failed: 1,2; not started: 4,5,6,7)
        > resume
          14 run.resumed (by alice: known flaky hosts)
          15 wave.started patch#0 (wave 2: items 4..7)
          dispatch patch#4 core.echo attempt=1 input={"host":"h4"}
          dispatch patch#5 core.echo attempt=1 input={"host":"h5"}
    "#]]);
}

// ---- properties of compensation and concurrency keys ------------------------------------

fn chain_with_undos(len: usize) -> String {
    let mut yaml = String::from("name: undos\nversion: 1\nsteps:\n");
    for i in 0..len {
        writeln!(
            yaml,
            "  - id: s{i}\n    action: core.echo\n    with: {{ n: {i} }}"
        )
        .unwrap();
        writeln!(
            yaml,
            "    undo: {{ action: core.echo, with: {{ undo: {i} }} }}"
        )
        .unwrap();
        if i > 0 {
            writeln!(yaml, "    needs: [s{}]", i - 1).unwrap();
        }
    }
    yaml
}

proptest! {
    /// However far a chain got, a cancel runs each recorded undo exactly once, newest first,
    /// and the run ends cancelled.
    #[test]
    fn undos_run_once_each_in_reverse_order(len in 1usize..8, cancel_after in 0usize..8, flaky in proptest::collection::vec(any::<bool>(), 8)) {
        let mut s = Script::start(&chain_with_undos(len), json!({}));
        let done = cancel_after.min(len);
        for i in 0..done {
            let t = s.lease(&format!("s{i}"), 0);
            s.succeed(&format!("s{i}"), 0, t, json!({}));
        }
        if done == len {
            prop_assert!(s.scheduler.run(s.run).is_none(), "a finished run cannot be cancelled");
            return Ok(());
        }
        s.cancel();
        let mut undone = Vec::new();
        let mut failed_once = Vec::new();
        let mut now = 0;
        while let Some(key) = s.queued.keys().find(|(_, label)| label.starts_with("undo")).cloned() {
            let (t, unit) = s.lease_slot(&key.0, &key.1);
            if flaky[undone.len() % flaky.len()] && !failed_once.contains(&key.0) {
                failed_once.push(key.0.clone());
                s.fail_unit(unit, t, true);
                now += 300_000;
                s.at(now);
                s.timer();
                prop_assert!(s.queued.contains_key(&key), "a failed undo is retried");
                continue;
            }
            s.succeed_unit(unit, t, Value::Null);
            undone.push(key.0.clone());
        }
        let expected: Vec<String> = (0..done).rev().map(|i| format!("s{i}")).collect();
        prop_assert_eq!(undone, expected, "{}", s.log);
        prop_assert!(s.log.ends_with("finished cancelled\n"), "{}", s.log);
    }

    /// Runs sharing a key with limit 1 never hold it at the same time, and all end.
    #[test]
    fn a_key_is_held_by_one_run_at_a_time(runs in 2u128..6, order in proptest::collection::vec(any::<u8>(), 16)) {
        let mut s = Script::start(KEYED, json!({"ip": "203.0.113.7"}));
        let mut ids = vec![s.run];
        for n in 2..=runs {
            ids.push(s.start_another(n, json!({"ip": "203.0.113.7"})));
        }
        let mut finished = 0;
        let mut pick = order.iter().cycle();
        while finished < ids.len() {
            let running: Vec<RunId> = ids
                .iter()
                .copied()
                .filter(|id| s.scheduler.run(*id).is_some_and(|r| r.status == super::state::RunStatus::Running))
                .collect();
            prop_assert_eq!(running.len(), 1, "exactly one holder:\n{}", s.log);
            let holder = running[0];
            let step = s.playbook.step_index("contain").unwrap();
            let unit = UnitRef::step(holder, step, 0);
            let token = s.next_token;
            s.next_token += 1;
            s.apply("lease", Event::Leased { unit, attempt: 1, token, worker: "w1".into() });
            if *pick.next().unwrap() % 3 == 0 {
                let by = "op".to_string();
                s.apply("cancel", Event::Cancel { run: holder, reason: "test".into(), by });
            } else {
                s.succeed_unit(unit, token, Value::Null);
            }
            prop_assert!(s.scheduler.run(holder).is_none());
            finished += 1;
        }
    }
}

// ---- safety rails: guards and dry runs ---------------------------------------------------

const GUARDED: &str = r#"
name: guarded
version: 1
params:
  ip: { type: string, required: true }
steps:
  - id: block
    action: firewall.block_ip
    with: { ip: "{{ params.ip }}", ttl: 1h }
    approval: { approvers: [soc-leads], min: 1, timeout: 15m }
    undo: { action: firewall.unblock_ip, with: { ip: "{{ params.ip }}" } }
"#;

#[test]
fn a_guarded_block_of_a_protected_ip_fails_before_approval_and_dispatch() {
    let s = Script::start(GUARDED, json!({"ip": "10.1.2.3"}));
    assert!(s.queued.is_empty(), "nothing dispatched:\n{}", s.log);
    s.check(expect![[r#"
        > start
          1 run.started (requested by tester)
          2 guard.refused block#0 (refused by guard: 10.1.2.3 is in protected range 10.0.0.0/8)
          3 step.failed block#0 (refused by guard: 10.1.2.3 is in protected range 10.0.0.0/8)
          4 run.finished (step block failed: refused by guard: 10.1.2.3 is in protected range 10.0.0.0/8)
          finished failed
    "#]]);
    let ok = Script::start(GUARDED, json!({"ip": "203.0.113.7"}));
    assert!(ok.log.contains("approval.requested"), "{}", ok.log);
    assert!(!ok.log.contains("guard.refused"), "{}", ok.log);
    let wide = Script::start(GUARDED, json!({"ip": "203.0.0.0/16"}));
    assert!(wide.log.contains("wider than /24"), "{}", wide.log);
    let junk = Script::start(GUARDED, json!({"ip": "not-an-ip"}));
    assert!(
        junk.log.contains("is not an IP address or CIDR"),
        "{}",
        junk.log
    );
}

/// The log with every 64-hex-digit digest replaced by `<digest>`.
fn mask_digests(log: &str) -> String {
    let mut out = String::new();
    let mut rest = log;
    while let Some(at) = rest.find("digest ") {
        let (head, tail) = rest.split_at(at + "digest ".len());
        out.push_str(head);
        let hex = tail.chars().take_while(char::is_ascii_hexdigit).count();
        if hex == 64 {
            out.push_str("<digest>");
            rest = &tail[hex..];
        } else {
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

const GUARDED_ITEMS: &str = r#"
name: guarded-items
version: 1
params:
  ips: { type: list, required: true }
steps:
  - id: block
    for_each: "{{ params.ips }}"
    action: firewall.block_ip
    with: { ip: "{{ item }}", ttl: 1h }
"#;

#[test]
fn every_for_each_item_is_guarded_and_one_refusal_stops_them_all() {
    let s = Script::start(
        GUARDED_ITEMS,
        json!({"ips": ["203.0.113.7", "127.0.0.1", "192.168.1.1"]}),
    );
    assert!(s.queued.is_empty(), "nothing dispatched:\n{}", s.log);
    s.check(expect![[r#"
        > start
          1 run.started (requested by tester)
          2 guard.refused block#1 (refused by guard: 127.0.0.1 is in protected range 127.0.0.0/8)
          3 guard.refused block#2 (refused by guard: 192.168.1.1 is in protected range 192.168.0.0/16)
          4 step.failed block#0 (item 1: refused by guard: 127.0.0.1 is in protected range 127.0.0.0/8)
          5 run.finished (step block failed: item 1: refused by guard: 127.0.0.1 is in protected range 127.0.0.0/8)
          finished failed
    "#]]);
}

const ACCOUNTS: &str = r#"
name: accounts
version: 1
params:
  account: { type: string, required: true }
steps:
  - id: first
    action: core.echo
    with: { n: 1 }
    undo: { action: identity.disable_account, with: { account: "root" } }
  - id: disable
    needs: [first]
    action: identity.disable_account
    with: { account: "{{ params.account }}" }
"#;

#[test]
fn a_protected_account_is_refused_but_undos_are_never_guarded() {
    let guard = crate::guard::Policy::new(vec![], &["BreakGlass".into()], 1000, 24, 64, None);
    let mut s = Script::start_as(
        ACCOUNTS,
        json!({"account": "breakglass@contoso.com"}),
        RunId(Uuid::from_u128(1)),
        Scheduler::with_guard(guard),
    );
    let t = s.lease("first", 0);
    s.succeed("first", 0, t, json!({"n": 1}));
    s.check(expect![[r#"
        > start
          1 run.started (requested by tester)
          2 step.started first#0
          dispatch first#0 core.echo attempt=1 input={"n":1}
        > lease first#0 token=1
          3 task.leased first#0 attempt=1
        > succeed token=1
          4 task.succeeded first#0 attempt=1
          5 undo.recorded first#0 (undo recorded: identity.disable_account)
          6 step.succeeded first#0
          7 guard.refused disable#0 (refused by guard: account breakglass@contoso.com is protected (breakglass))
          8 step.failed disable#0 (refused by guard: account breakglass@contoso.com is protected (breakglass))
          9 run.compensating (step disable failed: refused by guard: account breakglass@contoso.com is protected (breakglass))
          dispatch first#undo0 identity.disable_account attempt=1 input={"account":"root"}
    "#]]);
}

const PLAN: &str = r#"
name: plan
version: 1
concurrency: { key: "ip:{{ params.ip }}", limit: 1, policy: queue }
params:
  ip: { type: ip, default: 203.0.113.7 }
steps:
  - id: nap
    sleep: 1h
  - id: confirm
    needs: [nap]
    approval: { approvers: [soc-leads], min: 2, timeout: 15m }
  - id: block
    needs: [confirm]
    action: core.echo
    with: { ip: "{{ params.ip }}" }
    approval: { approvers: [soc-leads], min: 1, timeout: 15m }
    undo: { action: core.echo, with: { unblock: "{{ params.ip }}" } }
    grant: { ttl: 1h, subject: "{{ params.ip }}" }
"#;

#[test]
fn a_dry_run_fires_sleeps_approvals_and_grants_at_once() {
    let mut s = Script::start_dry(PLAN, json!({}));
    let t = s.lease("block", 0);
    s.succeed("block", 0, t, json!({"ip": "203.0.113.7", "dry_run": true}));
    s.timer();
    let undo = &s.queued[&("block".to_string(), "undo0".to_string())];
    assert!(
        undo.dry_run && !undo.containment,
        "undos of a dry run are dry: {undo:?}"
    );
    let (t, unit) = s.lease_slot("block", "undo0");
    s.succeed_unit(unit, t, Value::Null);
    assert!(s.queued.is_empty(), "nothing else to run:\n{}", s.log);
    let log = mask_digests(&s.log);
    expect![[r#"
        > start
          1 run.started (requested by tester; dry run)
          2 run.key_skipped (dry run: concurrency key `ip:203.0.113.7` not taken)
          3 step.sleeping nap#0 (until 1970-01-01T01:00:00.000Z (dry run: not waiting))
          4 step.woke nap#0
          5 step.succeeded nap#0
          6 approval.dry_run confirm#0 (would request approval from soc-leads (min 2); digest <digest>)
          7 approval.granted confirm#0 (dry run: counted as approved)
          8 step.succeeded confirm#0
          9 approval.dry_run block#0 (would request approval from soc-leads (min 1); digest <digest>)
          10 approval.granted block#0 (dry run: counted as approved)
          11 step.started block#0
          dispatch block#0 core.echo attempt=1 input={"ip":"203.0.113.7"}
        > lease block#0 token=1
          12 task.leased block#0 attempt=1 (dry run)
        > succeed token=1
          13 task.succeeded block#0 attempt=1
          14 grant.opened block#0 (grant for `203.0.113.7` until 1970-01-01T01:00:00.000Z (dry run: revoked at once))
          15 step.succeeded block#0
          16 run.holding_grants (every step succeeded; grants stay open until revoked)
          timer at=0
        > timer now=0
          17 grant.expired block#0 (revoking)
          dispatch block#undo0 core.echo attempt=1 input={"unblock":"203.0.113.7"}
        > lease block#undo0 token=2
          18 undo.leased block#0 attempt=1 (dry run)
        > succeed token=2
          19 undo.succeeded block#0 attempt=1
          20 grant.revoked block#0
          21 run.finished
          finished succeeded
    "#]]
    .assert_eq(&log);
}

#[test]
fn dry_run_tasks_are_marked_and_guards_still_apply() {
    let s = Script::start_dry(GUARDED, json!({"ip": "10.1.2.3"}));
    assert!(s.log.contains("guard.refused"), "{}", s.log);
    assert!(s.log.contains("finished failed"), "{}", s.log);
    let mut ok = Script::start_dry(GUARDED, json!({"ip": "203.0.113.7"}));
    let task = ok
        .queued
        .values()
        .next()
        .expect("dispatched at once")
        .clone();
    assert!(task.dry_run, "{task:?}");
    let t = ok.lease("block", 0);
    assert!(ok.log.contains("attempt=1 (dry run)"), "{}", ok.log);
    ok.succeed("block", 0, t, json!({"dry_run": true}));
    assert!(ok.log.contains("finished succeeded"), "{}", ok.log);
    let real = Script::start(GUARDED, json!({"ip": "203.0.113.7"}));
    let index = real.playbook.step_index("block").unwrap();
    let spec = super::run::task_spec(
        real.scheduler.run(real.run).unwrap(),
        &real.playbook,
        UnitRef::step(real.run, index, 0),
    )
    .unwrap();
    assert!(spec.containment && !spec.dry_run, "{spec:?}");
}

#[test]
fn a_dry_run_takes_no_concurrency_key() {
    let mut s = Script::start(KEYED, json!({"ip": "203.0.113.7"}));
    let _t = s.lease("contain", 0);
    let id = RunId(Uuid::from_u128(2));
    let Value::Object(params) = json!({"ip": "203.0.113.7"}) else {
        unreachable!()
    };
    let new = NewRun {
        id,
        playbook: s.playbook.clone(),
        params: Value::Object(s.playbook.coerce_params(&params).unwrap()),
        trigger: Value::Null,
        requested_by: "tester".into(),
        idempotency_key: String::new(),
        dry_run: true,
        trace: None,
    };
    s.apply("start dry run 2", Event::Start(new));
    let dry = s.scheduler.run(id).expect("the dry run is active");
    assert_eq!(dry.status, super::state::RunStatus::Running);
    assert_eq!(dry.concurrency_key, None);
    s.check(expect![[r#"
        > start
          1 run.started (requested by tester)
          2 step.started contain#0
          dispatch contain#0 core.noop attempt=1 input={}
        > lease contain#0 token=1
          3 task.leased contain#0 attempt=1
        > start dry run 2
          [2] 1 run.started (requested by tester; dry run)
          [2] 2 run.key_skipped (dry run: concurrency key `ip:203.0.113.7` not taken)
          [2] 3 step.started contain#0
          dispatch contain#0 core.noop attempt=1 input={}
    "#]]);
    let replacing = KEYED.replace("policy: queue", "policy: replace");
    let mut r = Script::start(&replacing, json!({"ip": "203.0.113.7"}));
    let _t = r.lease("contain", 0);
    let new = NewRun {
        id,
        playbook: r.playbook.clone(),
        params: Value::Object(r.playbook.coerce_params(&params).unwrap()),
        trigger: Value::Null,
        requested_by: "tester".into(),
        idempotency_key: String::new(),
        dry_run: true,
        trace: None,
    };
    r.apply("start dry run 2", Event::Start(new));
    assert!(
        !r.log.contains("cancel"),
        "a dry run replaces nobody:\n{}",
        r.log
    );
    assert_eq!(
        r.scheduler.run(r.run).unwrap().status,
        super::state::RunStatus::Running
    );
}
