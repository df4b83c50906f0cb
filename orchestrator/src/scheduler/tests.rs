//! Scheduler tests: event scripts in, command and history transcripts out, plus a property
//! test over random DAGs. Logical time only: `now_ms` advances when the script says so.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use expect_test::{Expect, expect};
use proptest::prelude::*;
use serde_json::{Value, json};
use uuid::Uuid;

use super::state::{RunId, StepStatus, UnitRef};
use super::{Command, Event, NewRun, Scheduler, TaskSpec, Transition};

/// Drives one run through the scheduler and writes down everything that comes out.
struct Script {
    scheduler: Scheduler,
    playbook: Arc<riposte_playbooks::Playbook>,
    run: RunId,
    now_ms: i64,
    next_token: u64,
    /// Latest dispatch per (step id, item).
    queued: HashMap<(String, u32), TaskSpec>,
    leases: HashMap<(String, u32), u64>,
    log: String,
}

impl Script {
    fn start(yaml: &str, params: Value) -> Script {
        let playbook = Arc::new(riposte_playbooks::compile(yaml).expect("test playbook compiles"));
        let mut script = Script {
            scheduler: Scheduler::new(),
            playbook: playbook.clone(),
            run: RunId(Uuid::from_u128(1)),
            now_ms: 0,
            next_token: 1,
            queued: HashMap::new(),
            leases: HashMap::new(),
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
        };
        script.apply("start", Event::Start(new));
        script
    }

    fn unit(&self, step: &str, item: u32) -> UnitRef {
        let step = self.playbook.step_index(step).expect("step exists");
        UnitRef {
            run: self.run,
            step,
            item,
        }
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
        for h in &t.history {
            let mut line = format!("  {} {}", h.seq, h.kind);
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
                    writeln!(
                        self.log,
                        "  dispatch {}#{} attempt={} input={}",
                        task.step_id, task.unit.item, task.attempt, task.input
                    )
                    .unwrap();
                    self.queued
                        .insert((task.step_id.clone(), task.unit.item), task.clone());
                }
                Command::ArmTimer { unit, due_ms } => {
                    let id = &self.playbook.steps[unit.step].id;
                    writeln!(self.log, "  timer {id}#{} at={due_ms}", unit.item).unwrap();
                }
                Command::Abandon { token } => writeln!(self.log, "  abandon {token}").unwrap(),
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
        let task = self
            .queued
            .remove(&(step.to_string(), item))
            .expect("unit was dispatched");
        let token = self.next_token;
        self.next_token += 1;
        self.leases.insert((step.to_string(), item), token);
        let event = Event::Leased {
            unit: task.unit,
            attempt: task.attempt,
            token,
            worker: "w1".into(),
        };
        self.apply(&format!("lease {step}#{item} token={token}"), event);
        token
    }

    fn succeed(&mut self, step: &str, item: u32, token: u64, output: Value) {
        let unit = self.unit(step, item);
        self.apply(
            &format!("succeed {step}#{item} token={token}"),
            Event::Succeeded {
                unit,
                token,
                output,
            },
        );
    }

    fn fail(&mut self, step: &str, item: u32, token: u64, retryable: bool) {
        let unit = self.unit(step, item);
        let message = "boom".to_string();
        self.apply(
            &format!("fail {step}#{item} token={token} retryable={retryable}"),
            Event::Failed {
                unit,
                token,
                message,
                retryable,
            },
        );
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

    fn retry_due(&mut self, step: &str, item: u32) {
        let unit = self.unit(step, item);
        self.apply(
            &format!("retry_due {step}#{item} now={}", self.now_ms),
            Event::RetryDue { unit },
        );
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
          dispatch start#0 attempt=1 input={"msg":"hi"}
        > lease start#0 token=1
          3 task.leased start#0 attempt=1 (token 1)
        > succeed start#0 token=1
          4 task.succeeded start#0 attempt=1
          5 step.succeeded start#0
          6 step.skipped left#0 (`when` is false)
          7 step.started fan#0 (3 items)
          dispatch fan#0 attempt=1 input={"target":"a"}
          dispatch fan#1 attempt=1 input={"target":"b"}
        > lease fan#0 token=2
          8 task.leased fan#0 attempt=1 (token 2)
        > lease fan#1 token=3
          9 task.leased fan#1 attempt=1 (token 3)
        > succeed fan#1 token=3
          10 task.succeeded fan#1 attempt=1
          dispatch fan#2 attempt=1 input={"target":"c"}
        > lease fan#2 token=4
          11 task.leased fan#2 attempt=1 (token 4)
        > succeed fan#0 token=2
          12 task.succeeded fan#0 attempt=1
        > succeed fan#2 token=4
          13 task.succeeded fan#2 attempt=1
          14 step.succeeded fan#0
          15 step.started join#0
          dispatch join#0 attempt=1 input={"fan":["A","B","C"],"left":"skipped"}
        > lease join#0 token=5
          16 task.leased join#0 attempt=1 (token 5)
        > succeed join#0 token=5
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
          dispatch a#0 attempt=1 input={}
        > lease a#0 token=1
          3 task.leased a#0 attempt=1 (token 1)
        > succeed a#0 token=1
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
    s.retry_due("flaky", 0);
    s.at(100);
    s.retry_due("flaky", 0);
    let t2 = s.lease("flaky", 0);
    s.fail("flaky", 0, t2, true);
    s.at(300);
    s.retry_due("flaky", 0);
    let t3 = s.lease("flaky", 0);
    s.succeed("flaky", 0, t1, Value::Null);
    s.succeed("flaky", 0, t3, json!({"attempt": 3}));
    s.check(expect![[r#"
        > start
          1 run.started (requested by tester)
          2 step.started flaky#0
          dispatch flaky#0 attempt=1 input={"attempts_failing":2,"message":"boom"}
        > lease flaky#0 token=1
          3 task.leased flaky#0 attempt=1 (token 1)
        > fail flaky#0 token=1 retryable=true
          4 task.failed flaky#0 attempt=1 (boom)
          5 task.retry_scheduled flaky#0 attempt=2 (attempt 2 of 3 in 100 ms)
          timer flaky#0 at=100
        > retry_due flaky#0 now=50
          timer flaky#0 at=100
        > retry_due flaky#0 now=100
          dispatch flaky#0 attempt=2 input={"attempts_failing":2,"message":"boom"}
        > lease flaky#0 token=2
          6 task.leased flaky#0 attempt=2 (token 2)
        > fail flaky#0 token=2 retryable=true
          7 task.failed flaky#0 attempt=2 (boom)
          8 task.retry_scheduled flaky#0 attempt=3 (attempt 3 of 3 in 200 ms)
          timer flaky#0 at=300
        > retry_due flaky#0 now=300
          dispatch flaky#0 attempt=3 input={"attempts_failing":2,"message":"boom"}
        > lease flaky#0 token=3
          9 task.leased flaky#0 attempt=3 (token 3)
        > succeed flaky#0 token=1
          10 task.result_rejected flaky#0 (stale lease token 1 (current lease is 3))
          rejected: stale lease token 1 (current lease is 3)
        > succeed flaky#0 token=3
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
        unit: unit.clone(),
        token: t,
        output: Value::Null,
    };
    let done = s.apply("succeed", event).expect("accepted");
    let mut finished = done
        .finished
        .expect("the run finished and left the scheduler");
    assert!(s.scheduler.run(s.run).is_none());
    let again = s
        .scheduler
        .result_for_finished(1, &mut finished, &s.playbook, &unit, t);
    assert!(again.duplicate && again.rejected.is_none() && !again.changed);
    let stale = s
        .scheduler
        .result_for_finished(1, &mut finished, &s.playbook, &unit, t + 7);
    assert!(stale.changed && !stale.duplicate);
    assert_eq!(
        stale.rejected.as_deref(),
        Some("run is succeeded (token 8)")
    );
    assert_eq!(stale.history[0].kind, "task.result_rejected");
    assert_eq!(stale.history[0].seq, finished.history_seq);
}

#[test]
fn lost_leases_redispatch_without_using_retries_then_fail() {
    let mut s = Script::start(CHAIN, json!({}));
    for _ in 0..super::LEASE_LOSSES_MAX {
        let t = s.lease("a", 0);
        s.expire("a", 0, t);
    }
    s.check(expect![[r#"
        > start
          1 run.started (requested by tester)
          2 step.started a#0
          dispatch a#0 attempt=1 input={}
        > lease a#0 token=1
          3 task.leased a#0 attempt=1 (token 1)
        > expire a#0 token=1
          4 task.lease_expired a#0 attempt=1 (lease 1 expired (1 of 3))
          dispatch a#0 attempt=2 input={}
        > lease a#0 token=2
          5 task.leased a#0 attempt=2 (token 2)
        > expire a#0 token=2
          6 task.lease_expired a#0 attempt=2 (lease 2 expired (2 of 3))
          dispatch a#0 attempt=3 input={}
        > lease a#0 token=3
          7 task.leased a#0 attempt=3 (token 3)
        > expire a#0 token=3
          8 task.lease_expired a#0 attempt=3 (lease 3 expired (3 of 3))
          9 step.failed a#0 (lease expired 3 times; workers lost)
          10 run.finished (step a failed: lease expired 3 times; workers lost)
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
          dispatch start#0 attempt=1 input={"msg":"hi"}
        > lease start#0 token=1
          3 task.leased start#0 attempt=1 (token 1)
        > succeed start#0 token=1
          4 task.succeeded start#0 attempt=1
          5 step.succeeded start#0
          6 step.started left#0
          7 step.started fan#0 (3 items)
          dispatch left#0 attempt=1 input={}
          dispatch fan#0 attempt=1 input={"target":"a"}
          dispatch fan#1 attempt=1 input={"target":"b"}
        > lease left#0 token=2
          8 task.leased left#0 attempt=1 (token 2)
        > cancel
          9 run.cancel_requested (by alice: test)
          10 run.finished (cancelled by alice: test)
          abandon 2
          finished cancelled
        > succeed left#0 token=2
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
            let (step, item) = keys[*choice.next().unwrap() as usize % keys.len()].clone();
            // Needs of a dispatched step are all finished, none failed.
            let index = s.playbook.step_index(&step).unwrap();
            let state = s.scheduler.run(s.run).unwrap().clone();
            for &n in &s.playbook.steps[index].needs {
                prop_assert!(matches!(state.steps[n].status, StepStatus::Succeeded | StepStatus::Skipped));
            }
            let token = s.lease(&step, item);
            let lost = losses.entry((step.clone(), item)).or_default();
            // Lose a lease now and then, never often enough to fail the unit.
            if *choice.next().unwrap() % 7 == 0 && *lost + 1 < super::LEASE_LOSSES_MAX {
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
