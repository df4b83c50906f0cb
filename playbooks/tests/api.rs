//! Tests of the runtime API: `Playbook::coerce_params`, the `Renderer`, `RetryPolicy::delay_ms`,
//! `Playbook::step_index`, `Amount::of`, `parse_duration_ms` and `parse_timestamp_ms`, and the
//! compiled form of a step's kind and controls.

use riposte_playbooks::{
    Amount, Approval, ApprovalOutcome, Backoff, ConcurrencyKey, ConcurrencyPolicy, Context, Grant,
    HealthGate, OutsideWindow, Playbook, Renderer, RetryPolicy, Step, StepKind, Undo, Waves,
    compile, limits, parse_duration_ms, parse_timestamp_ms,
};
use serde_json::{Map, Value, json};

fn playbook(source: &str) -> Playbook {
    match compile(source) {
        Ok(playbook) => playbook,
        Err(diagnostics) => {
            let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
            panic!("test playbook does not compile:\n{}", lines.join("\n"))
        }
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("expected an object, found {other}"),
    }
}

mod coerce_params {
    use super::*;

    const TYPES: &str = r#"
name: types
version: 1
params:
  text: { type: string, default: hi }
  port: { type: int, default: 22, min: 1, max: 65535 }
  flag: { type: bool, default: false }
  ip: { type: ip, required: true }
  net: { type: cidr, default: 10.0.0.0/8 }
  wait: { type: duration, default: 15m, max: 1h }
  hosts: { type: list, default: [a] }
  mode: { type: enum, values: [fast, safe], default: safe }
  note: { type: string }
steps:
  - { id: a, action: core.noop }
"#;

    fn coerce(given: Value) -> Result<Map<String, Value>, Vec<String>> {
        playbook(TYPES).coerce_params(&object(given))
    }

    #[test]
    fn defaults_fill_what_is_not_given() {
        let typed = coerce(json!({ "ip": "10.0.0.1" })).expect("valid params");
        assert_eq!(
            Value::Object(typed),
            json!({
                "text": "hi", "port": 22, "flag": false, "ip": "10.0.0.1", "net": "10.0.0.0/8",
                "wait": "15m", "hosts": ["a"], "mode": "safe", "note": null
            })
        );
    }

    #[test]
    fn strings_are_coerced_to_each_type() {
        let typed = coerce(json!({
            "text": 5, "port": " 8080 ", "flag": "True", "ip": "2001:DB8::0:1",
            "net": "192.168.7.9/16", "wait": "30m", "hosts": "a, b,,c", "mode": "fast"
        }))
        .expect("valid params");
        assert_eq!(typed["text"], json!("5"));
        assert_eq!(typed["port"], json!(8080));
        assert_eq!(typed["flag"], json!(true));
        assert_eq!(typed["ip"], json!("2001:db8::1"));
        assert_eq!(typed["net"], json!("192.168.0.0/16"));
        assert_eq!(typed["wait"], json!("30m"));
        assert_eq!(typed["hosts"], json!(["a", "b", "c"]));
        assert_eq!(typed["mode"], json!("fast"));
    }

    #[test]
    fn native_values_pass() {
        let typed =
            coerce(json!({ "ip": "::1", "port": 443, "flag": true, "hosts": [1, {"a": 2}] }))
                .expect("valid params");
        assert_eq!(typed["port"], json!(443));
        assert_eq!(typed["flag"], json!(true));
        assert_eq!(typed["hosts"], json!([1, {"a": 2}]));
    }

    #[test]
    fn missing_required_is_reported_and_null_counts_as_missing() {
        assert_eq!(
            coerce(json!({})),
            Err(vec!["param `ip`: required but not given".to_string()])
        );
        assert_eq!(
            coerce(json!({ "ip": null })),
            Err(vec!["param `ip`: required but not given".to_string()])
        );
    }

    #[test]
    fn unknown_names_are_reported_with_a_suggestion() {
        assert_eq!(
            coerce(json!({ "ip": "10.0.0.1", "prot": 80, "zzz": 1 })),
            Err(vec![
                "unknown param `prot` (did you mean `port`?)".to_string(),
                "unknown param `zzz`".to_string(),
            ])
        );
    }

    #[test]
    fn wrong_types_are_all_reported_one_line_each() {
        let problems = coerce(json!({
            "text": [1], "port": "eighty", "flag": "maybe", "ip": "300.0.0.1", "net": "10.0.0.0/40",
            "wait": "2h", "hosts": {"a": 1}, "mode": "slow"
        }))
        .expect_err("invalid params");
        assert_eq!(
            problems,
            vec![
                "param `text`: expected a string, found a list",
                "param `port`: expected an integer, found \"eighty\"",
                "param `flag`: expected true or false, found \"maybe\"",
                "param `ip`: expected an IP address, found \"300.0.0.1\"",
                "param `net`: expected a CIDR network, found \"10.0.0.0/40\"",
                "param `wait`: must be at most 1h, found 2h",
                "param `hosts`: expected a list or comma-separated text, found a mapping",
                "param `mode`: must be one of fast, safe; found \"slow\"",
            ]
        );
    }

    #[test]
    fn int_bounds_and_bad_durations() {
        let problems = coerce(json!({ "ip": "10.0.0.1", "port": 0, "wait": "10 parsecs" }))
            .expect_err("invalid params");
        assert_eq!(
            problems,
            vec![
                "param `port`: must be at least 1, found 0",
                "param `wait`: invalid duration `10 parsecs`: unknown unit `parsecs` (use ms, s, m, h or d)",
            ]
        );
        let problems = coerce(json!({ "ip": "10.0.0.1", "port": 70000, "wait": 5 }))
            .expect_err("invalid params");
        assert_eq!(
            problems,
            vec![
                "param `port`: must be at most 65535, found 70000",
                "param `wait`: expected a duration like \"15m\", found 5",
            ]
        );
    }
}

mod renderer {
    use super::*;

    const SOURCE: &str = r#"
name: render
version: 1
params:
  targets: { type: list, default: [a, b] }
  port: { type: int, default: 22 }
  mode: { type: enum, values: [fast, safe], default: safe }
steps:
  - id: first
    action: core.echo
    with:
      port: "{{ params.port }}"
      targets: "{{ params.targets }}"
      text: "port {{ params.port }}"
      literal: 7
      nested: { list: ["{{ run.id }}", "{{ trigger.alert.severity }}"] }
    when: "params.mode == 'safe'"
  - id: fan
    needs: [first]
    for_each: "{{ params.targets }}"
    action: core.echo
    with: { target: "{{ item }}", previous: "{{ steps.first.output.port }}" }
    labels: { host: "{{ item }}", os: linux }
  - id: skipped
    needs: [first]
    when: "{{ params.mode == 'fast' }}"
    action: core.noop
"#;

    struct Run {
        params: Value,
        steps: Map<String, Value>,
        trigger: Value,
    }

    impl Run {
        fn new() -> Run {
            Run {
                params: json!({ "targets": ["a", "b"], "port": 22, "mode": "safe" }),
                steps: object(
                    json!({ "first": { "status": "succeeded", "output": { "port": 22 } } }),
                ),
                trigger: json!({ "alert": { "severity": "high" } }),
            }
        }

        fn ctx(&self) -> Context<'_> {
            Context {
                run_id: "run-1",
                params: &self.params,
                steps: &self.steps,
                trigger: &self.trigger,
            }
        }
    }

    fn step<'a>(playbook: &'a Playbook, id: &str) -> &'a Step {
        let index = playbook.step_index(id).expect("step exists");
        &playbook.steps[index]
    }

    #[test]
    fn is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Renderer>();
    }

    #[test]
    fn a_single_expression_keeps_its_native_type() {
        let playbook = playbook(SOURCE);
        let run = Run::new();
        let input = Renderer::new()
            .input(step(&playbook, "first"), &run.ctx(), None)
            .expect("renders");
        assert_eq!(
            input,
            json!({
                "port": 22,
                "targets": ["a", "b"],
                "text": "port 22",
                "literal": 7,
                "nested": { "list": ["run-1", "high"] }
            })
        );
    }

    #[test]
    fn when_is_truthy_and_defaults_to_true() {
        let playbook = playbook(SOURCE);
        let run = Run::new();
        let renderer = Renderer::new();
        assert_eq!(
            renderer.when(step(&playbook, "first"), &run.ctx()),
            Ok(true)
        );
        assert_eq!(
            renderer.when(step(&playbook, "skipped"), &run.ctx()),
            Ok(false)
        );
        assert_eq!(renderer.when(step(&playbook, "fan"), &run.ctx()), Ok(true));
    }

    #[test]
    fn items_and_item_binding() {
        let playbook = playbook(SOURCE);
        let run = Run::new();
        let renderer = Renderer::new();
        let fan = step(&playbook, "fan");
        let items = renderer.items(fan, &run.ctx()).expect("items");
        assert_eq!(items, vec![json!("a"), json!("b")]);
        let input = renderer
            .input(fan, &run.ctx(), Some(&items[1]))
            .expect("renders");
        assert_eq!(input, json!({ "target": "b", "previous": 22 }));
        let labels = renderer
            .labels(fan, &run.ctx(), Some(&items[0]))
            .expect("labels");
        let expected: Vec<(&str, &str)> = vec![("host", "a"), ("os", "linux")];
        let labels: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(labels, expected);
    }

    #[test]
    fn literal_lists_evaluate_their_expressions() {
        let playbook = playbook(
            "name: l\nversion: 1\nparams: { x: { type: int, default: 5 } }\nsteps:\n  - id: a\n    \
             action: core.noop\n    for_each: [a, 1, null, {k: v}, \"{{ params.x * 2 }}\"]\n",
        );
        let mut run = Run::new();
        run.params = json!({ "x": 5 });
        let items = Renderer::new()
            .items(&playbook.steps[0], &run.ctx())
            .expect("items");
        assert_eq!(
            items,
            vec![
                json!("a"),
                json!(1),
                json!(null),
                json!({"k": "v"}),
                json!(10)
            ]
        );
    }

    #[test]
    fn undefined_values_are_errors() {
        let playbook = playbook(SOURCE);
        let mut run = Run::new();
        run.trigger = json!({});
        let error = Renderer::new()
            .input(step(&playbook, "first"), &run.ctx(), None)
            .expect_err("trigger.alert is undefined");
        assert_eq!(
            error.to_string(),
            "step `first`: with.nested.list[1]: undefined value: `trigger.alert` is undefined"
        );
        run.steps = Map::new();
        let error = Renderer::new()
            .input(step(&playbook, "fan"), &run.ctx(), Some(&json!("a")))
            .expect_err("steps.first is missing");
        assert!(
            error.message.starts_with("step `fan`: with.previous: "),
            "{}",
            error.message
        );
    }

    #[test]
    fn an_undefined_expression_result_is_an_error() {
        let playbook = playbook(SOURCE);
        let mut run = Run::new();
        run.steps = object(json!({ "first": { "status": "succeeded", "output": {} } }));
        let error = Renderer::new()
            .input(step(&playbook, "fan"), &run.ctx(), Some(&json!("a")))
            .expect_err("output.port is undefined");
        assert_eq!(
            error.to_string(),
            "step `fan`: with.previous: `steps.first.output.port` is undefined"
        );
    }

    #[test]
    fn for_each_must_be_a_list() {
        let playbook = playbook(SOURCE);
        let mut run = Run::new();
        run.params["targets"] = json!("not a list");
        let error = Renderer::new()
            .items(step(&playbook, "fan"), &run.ctx())
            .expect_err("a string");
        assert_eq!(
            error.to_string(),
            "step `fan`: for_each: expected a list, found the string `not a list`"
        );
    }

    #[test]
    fn for_each_is_bounded() {
        let playbook = playbook(SOURCE);
        let mut run = Run::new();
        run.params["targets"] = Value::Array(vec![json!(1); limits::FOR_EACH_ITEMS_MAX + 1]);
        let error = Renderer::new()
            .items(step(&playbook, "fan"), &run.ctx())
            .expect_err("too many");
        assert_eq!(
            error.to_string(),
            "step `fan`: for_each: more than the 100000 items allowed"
        );
        run.params["targets"] = Value::Array(vec![json!(1); limits::FOR_EACH_ITEMS_MAX]);
        let items = Renderer::new()
            .items(step(&playbook, "fan"), &run.ctx())
            .expect("at the limit");
        assert_eq!(items.len(), limits::FOR_EACH_ITEMS_MAX);
    }

    /// A template that would loop for a very long time runs out of fuel instead.
    #[test]
    fn a_hostile_loop_runs_out_of_fuel() {
        let playbook = playbook(
            "name: l\nversion: 1\nsteps:\n  - id: a\n    action: core.echo\n    with:\n      \
             x: \"{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}\"\n",
        );
        let run = Run::new();
        let error = Renderer::new()
            .input(&playbook.steps[0], &run.ctx(), None)
            .expect_err("fuel");
        assert_eq!(
            error.to_string(),
            "step `a`: with.x: evaluation ran out of fuel (more than 50000 steps)"
        );
    }

    #[test]
    fn rendered_output_is_bounded() {
        let playbook = playbook(
            "name: l\nversion: 1\nsteps:\n  - id: a\n    action: core.echo\n    with:\n      \
             x: \"a{{ 'x' * 70000 }}\"\n      y: \"{{ trigger.blob }}\"\n",
        );
        let mut run = Run::new();
        run.trigger = json!({ "blob": "y".repeat(limits::RENDERED_BYTES_MAX) });
        let error = Renderer::new()
            .input(&playbook.steps[0], &run.ctx(), None)
            .expect_err("size");
        assert_eq!(
            error.to_string(),
            "step `a`: with.x: rendered text is 70001 bytes, more than the 65536 allowed"
        );
        let small = "name: l\nversion: 1\nsteps:\n  - id: a\n    action: core.echo\n    with:\n      \
                     y: \"{{ trigger.blob }}\"\n      z: \"{{ trigger.blob }}\"\n";
        let error = Renderer::new()
            .input(&super::playbook(small).steps[0], &run.ctx(), None)
            .expect_err("size");
        assert!(
            error
                .message
                .starts_with("step `a`: with: rendered input is "),
            "{}",
            error.message
        );
    }

    /// Run data is never compiled: template syntax in a param stays text.
    #[test]
    fn data_is_not_compiled_as_a_template() {
        let playbook = playbook(SOURCE);
        let mut run = Run::new();
        run.params["port"] = json!("{{ 7 * 7 }}");
        run.trigger = json!({ "alert": { "severity": "{% for x in range(10) %}x{% endfor %}" } });
        let input = Renderer::new()
            .input(step(&playbook, "first"), &run.ctx(), None)
            .expect("renders");
        assert_eq!(input["port"], json!("{{ 7 * 7 }}"));
        assert_eq!(input["text"], json!("port {{ 7 * 7 }}"));
        assert_eq!(
            input["nested"]["list"][1],
            json!("{% for x in range(10) %}x{% endfor %}")
        );
    }

    #[test]
    fn deeply_nested_data_is_refused() {
        let playbook = playbook(SOURCE);
        let mut run = Run::new();
        let mut deep = json!(1);
        for _ in 0..200 {
            deep = json!([deep]);
        }
        run.trigger = json!({ "alert": { "severity": deep } });
        let error = Renderer::new()
            .input(step(&playbook, "first"), &run.ctx(), None)
            .expect_err("deep");
        assert_eq!(
            error.to_string(),
            "step `first`: with: value nested deeper than 64 levels"
        );
    }

    #[test]
    fn trailing_newlines_of_templates_are_kept() {
        let playbook = playbook(
            "name: l\nversion: 1\nsteps:\n  - id: a\n    action: core.echo\n    with:\n      \
             x: |\n        {{ run.id }} done\n      y: |\n        plain\n",
        );
        let run = Run::new();
        let input = Renderer::new()
            .input(&playbook.steps[0], &run.ctx(), None)
            .expect("renders");
        assert_eq!(input, json!({ "x": "run-1 done\n", "y": "plain\n" }));
    }
}

mod retry {
    use super::*;

    #[test]
    fn fixed_waits_initial_every_time() {
        let policy = RetryPolicy {
            attempts: 3,
            backoff: Backoff::Fixed,
            initial_ms: 100,
            max_ms: 100,
        };
        assert_eq!([2, 3, 4].map(|n| policy.delay_ms(n)), [100, 100, 100]);
    }

    #[test]
    fn exponential_doubles_up_to_max() {
        let policy = RetryPolicy {
            attempts: 10,
            backoff: Backoff::Exponential,
            initial_ms: 100,
            max_ms: 1000,
        };
        assert_eq!(
            [2, 3, 4, 5, 6, 7].map(|n| policy.delay_ms(n)),
            [100, 200, 400, 800, 1000, 1000]
        );
    }

    #[test]
    fn exponential_never_overflows() {
        let policy = RetryPolicy {
            attempts: 20,
            backoff: Backoff::Exponential,
            initial_ms: u64::MAX / 2,
            max_ms: u64::MAX,
        };
        assert_eq!(policy.delay_ms(u32::MAX), u64::MAX);
        assert_eq!(RetryPolicy::NONE.delay_ms(2), 0);
    }

    #[test]
    fn compiled_policies_match_the_source() {
        let playbook = playbook(
            "name: r\nversion: 1\nsteps:\n  - { id: a, action: core.noop, retry: { attempts: 3, \
             backoff: exponential, initial: 100ms, max: 5s } }\n  - { id: b, action: core.noop }\n",
        );
        let a = playbook.steps[0].retry;
        assert_eq!(
            a,
            RetryPolicy {
                attempts: 3,
                backoff: Backoff::Exponential,
                initial_ms: 100,
                max_ms: 5000
            }
        );
        assert_eq!([2, 3].map(|n| a.delay_ms(n)), [100, 200]);
        assert_eq!(playbook.steps[1].retry, RetryPolicy::NONE);
        assert_eq!(playbook.steps[1].timeout_ms, limits::TIMEOUT_MS_DEFAULT);
    }
}

#[test]
fn step_index_finds_steps_by_id() {
    let playbook = playbook(
        "name: s\nversion: 1\nsteps:\n  - { id: b, action: core.noop, needs: [a] }\n  - { id: a, action: core.noop }\n",
    );
    assert_eq!(playbook.step_index("a"), Some(0));
    assert_eq!(playbook.step_index("b"), Some(1));
    assert_eq!(playbook.step_index("c"), None);
    assert_eq!(playbook.steps[1].needs, vec![0]);
}

/// The runtime side of a run's controls: text templates (sleep, until, grant, concurrency key)
/// and template trees (undo and health gate inputs).
mod controls {
    use super::*;

    const SOURCE: &str = r#"
name: controls
version: 1
params:
  ip: { type: ip, required: true }
  duration: { type: duration, default: 15m }
  hosts: { type: list, default: [a, b] }
concurrency: { key: "ip:{{ params.ip }}" }
steps:
  - id: block
    action: core.echo
    with: { ip: "{{ params.ip }}" }
    undo:
      action: core.echo
      with: { ip: "{{ params.ip }}", rule: "{{ steps.block.output.rule_id }}", note: "rule {{ steps.block.output.rule_id }}" }
    grant: { ttl: "{{ params.duration }}", subject: "ip {{ params.ip }}" }
  - id: wait
    needs: [block]
    sleep: "{{ params.duration }}"
  - id: fixed
    needs: [block]
    sleep: 30s
  - id: patch
    needs: [block]
    for_each: "{{ params.hosts }}"
    action: core.echo
    with: { host: "{{ item }}" }
    undo: { action: core.echo, with: { host: "{{ item }}", output: "{{ steps.patch.output }}" } }
    waves:
      batch: 50%
      health: { action: core.echo, with: { wave: "{{ wave }}", first: "{{ wave == 0 }}", rule: "{{ steps.block.output.rule_id }}" } }
"#;

    struct Run {
        params: Value,
        steps: Map<String, Value>,
        trigger: Value,
    }

    impl Run {
        fn new() -> Run {
            Run {
                params: json!({ "ip": "10.0.0.1", "duration": "15m", "hosts": ["a", "b"] }),
                steps: object(json!({
                    "block": { "status": "succeeded", "output": { "rule_id": 42 } }
                })),
                trigger: json!(null),
            }
        }

        fn ctx(&self) -> Context<'_> {
            Context {
                run_id: "run-1",
                params: &self.params,
                steps: &self.steps,
                trigger: &self.trigger,
            }
        }
    }

    fn step<'a>(playbook: &'a Playbook, id: &str) -> &'a Step {
        &playbook.steps[playbook.step_index(id).expect("step exists")]
    }

    fn sleep_text(step: &Step) -> &str {
        match &step.kind {
            StepKind::Sleep { duration } => duration,
            other => panic!("expected a sleep step, found {other:?}"),
        }
    }

    #[test]
    fn text_renders_a_sleep_to_duration_text() {
        let playbook = playbook(SOURCE);
        let run = Run::new();
        let renderer = Renderer::new();
        let wait = step(&playbook, "wait");
        let text = renderer
            .text("step `wait`: sleep", sleep_text(wait), &run.ctx(), None)
            .expect("renders");
        assert_eq!(text, "15m");
        assert_eq!(parse_duration_ms(&text), Ok(900_000));
        let fixed = step(&playbook, "fixed");
        let text = renderer
            .text("step `fixed`: sleep", sleep_text(fixed), &run.ctx(), None)
            .expect("a literal");
        assert_eq!(text, "30s");
    }

    #[test]
    fn text_renders_grants_and_the_concurrency_key() {
        let playbook = playbook(SOURCE);
        let run = Run::new();
        let renderer = Renderer::new();
        let grant = step(&playbook, "block").grant.as_ref().expect("a grant");
        let ttl = renderer
            .text("step `block`: grant.ttl", &grant.ttl, &run.ctx(), None)
            .expect("renders");
        let subject = renderer
            .text(
                "step `block`: grant.subject",
                &grant.subject,
                &run.ctx(),
                None,
            )
            .expect("renders");
        assert_eq!((ttl.as_str(), subject.as_str()), ("15m", "ip 10.0.0.1"));
        let key = &playbook.concurrency.as_ref().expect("a key").key;
        let key = renderer
            .text("concurrency.key", key, &run.ctx(), None)
            .expect("renders");
        assert_eq!(key, "ip:10.0.0.1");
    }

    #[test]
    fn text_binds_item_and_names_the_template_in_errors() {
        let run = Run::new();
        let renderer = Renderer::new();
        let text = renderer
            .text(
                "step `x`: grant.subject",
                "host {{ item }}",
                &run.ctx(),
                Some(&json!("a")),
            )
            .expect("renders");
        assert_eq!(text, "host a");
        let error = renderer
            .text(
                "step `wait`: sleep",
                "{{ params.missing }}",
                &run.ctx(),
                None,
            )
            .expect_err("undefined");
        assert_eq!(
            error.to_string(),
            "step `wait`: sleep: undefined value: `params.missing` is undefined"
        );
        let error = renderer
            .text("step `wait`: sleep", "{{ item }}", &run.ctx(), None)
            .expect_err("no item");
        assert!(
            error
                .message
                .starts_with("step `wait`: sleep: undefined value"),
            "{}",
            error.message
        );
    }

    #[test]
    fn text_keeps_the_sandbox() {
        let mut run = Run::new();
        run.params["duration"] = json!("{{ 7 * 7 }}");
        let renderer = Renderer::new();
        let text = renderer
            .text("w", "{{ params.duration }}", &run.ctx(), None)
            .expect("renders");
        assert_eq!(text, "{{ 7 * 7 }}", "data is never compiled");
        let error = renderer
            .text("w", "{{ 'x' * 70000 }}", &run.ctx(), None)
            .expect_err("too long");
        assert_eq!(
            error.to_string(),
            "w: rendered text is 70000 bytes, more than the 65536 allowed"
        );
        let error = renderer
            .text(
                "w",
                "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                &run.ctx(),
                None,
            )
            .expect_err("fuel");
        assert_eq!(
            error.to_string(),
            "w: evaluation ran out of fuel (more than 50000 steps)"
        );
        let error = renderer
            .text("w", "{% include 'x' %}", &run.ctx(), None)
            .expect_err("no loader");
        assert!(error.message.starts_with("w: "), "{}", error.message);
    }

    #[test]
    fn tree_renders_an_undo_that_sees_its_own_output() {
        let playbook = playbook(SOURCE);
        let run = Run::new();
        let undo = step(&playbook, "block").undo.as_ref().expect("an undo");
        assert_eq!(undo.action, "core.echo");
        let input = Renderer::new()
            .tree("step `block`: undo.with", &undo.with, &run.ctx(), None, &[])
            .expect("renders");
        assert_eq!(
            input,
            json!({ "ip": "10.0.0.1", "rule": 42, "note": "rule 42" })
        );
    }

    #[test]
    fn tree_binds_item_for_the_undo_of_one_item() {
        let playbook = playbook(SOURCE);
        let mut run = Run::new();
        run.steps.insert(
            "patch".to_string(),
            json!({ "status": "succeeded", "output": { "host": "b" } }),
        );
        let undo = step(&playbook, "patch").undo.as_ref().expect("an undo");
        let input = Renderer::new()
            .tree(
                "step `patch`: undo.with",
                &undo.with,
                &run.ctx(),
                Some(&json!("b")),
                &[],
            )
            .expect("renders");
        assert_eq!(input, json!({ "host": "b", "output": { "host": "b" } }));
    }

    #[test]
    fn tree_binds_vars_with_their_types() {
        let playbook = playbook(SOURCE);
        let run = Run::new();
        let waves = step(&playbook, "patch").waves.as_ref().expect("waves");
        let health = waves.health.as_ref().expect("a health gate");
        let renderer = Renderer::new();
        let what = "step `patch`: waves.health.with";
        let input = renderer
            .tree(what, &health.with, &run.ctx(), None, &[("wave", json!(0))])
            .expect("renders");
        assert_eq!(input, json!({ "wave": 0, "first": true, "rule": 42 }));
        let input = renderer
            .tree(what, &health.with, &run.ctx(), None, &[("wave", json!(2))])
            .expect("renders");
        assert_eq!(input, json!({ "wave": 2, "first": false, "rule": 42 }));
        let error = renderer
            .tree(what, &health.with, &run.ctx(), None, &[])
            .expect_err("wave is not bound");
        assert_eq!(
            error.to_string(),
            "step `patch`: waves.health.with.first: undefined value: `wave` is undefined"
        );
    }

    #[test]
    fn tree_errors_name_the_leaf_and_bound_the_output() {
        let run = Run::new();
        let renderer = Renderer::new();
        let tree = json!({ "a": ["ok", "{{ steps.gone.output }}"] });
        let error = renderer
            .tree("step `x`: undo.with", &tree, &run.ctx(), None, &[])
            .expect_err("undefined");
        assert_eq!(
            error.to_string(),
            "step `x`: undo.with.a[1]: undefined value: `steps.gone` is undefined"
        );
        let blob = json!("y".repeat(limits::RENDERED_BYTES_MAX));
        let tree = json!({ "a": "{{ blob }}", "b": "{{ blob }}" });
        let error = renderer
            .tree(
                "step `x`: undo.with",
                &tree,
                &run.ctx(),
                None,
                &[("blob", blob)],
            )
            .expect_err("too large");
        assert!(
            error
                .message
                .starts_with("step `x`: undo.with: rendered input is "),
            "{}",
            error.message
        );
        let mut deep = json!(1);
        for _ in 0..200 {
            deep = json!([deep]);
        }
        let error = renderer
            .tree("h", &json!({}), &run.ctx(), None, &[("wave", deep)])
            .expect_err("too deep");
        assert_eq!(error.to_string(), "h: value nested deeper than 64 levels");
    }

    #[test]
    fn the_renderer_renders_only_templates_it_is_given() {
        // A literal tree is returned as is, whatever the context holds.
        let run = Run::new();
        let tree = json!({ "n": 1, "list": [true, null, "text"] });
        let rendered = Renderer::new()
            .tree("t", &tree, &run.ctx(), None, &[])
            .expect("renders");
        assert_eq!(rendered, tree);
    }
}

/// The compiled form of the step kinds and controls, as the scheduler reads them.
mod compiled {
    use super::*;

    #[test]
    fn kinds_and_defaults() {
        let playbook = playbook(
            r#"
name: kinds
version: 1
timeout: 2h
concurrency: { key: "k" }
steps:
  - { id: act, action: core.noop }
  - { id: wait, sleep: 15m }
  - { id: window, until: "2026-12-01T02:00:00Z" }
  - { id: approve, approval: { approvers: [soc-leads], timeout: 15m } }
  - id: gated
    action: core.noop
    approval: { approvers: [soc-leads, on-call], min: 2, timeout: 1h, on_timeout: approve }
"#,
        );
        assert_eq!(playbook.timeout_ms, Some(7_200_000));
        assert_eq!(
            playbook.concurrency,
            Some(ConcurrencyKey {
                key: "k".into(),
                limit: 1,
                policy: ConcurrencyPolicy::Queue
            })
        );
        let kinds: Vec<&StepKind> = playbook.steps.iter().map(|s| &s.kind).collect();
        assert_eq!(
            kinds,
            [
                &StepKind::Action,
                &StepKind::Sleep {
                    duration: "15m".into()
                },
                &StepKind::Until {
                    at: "2026-12-01T02:00:00Z".into()
                },
                &StepKind::Approval,
                &StepKind::Action,
            ]
        );
        let approve = &playbook.steps[3];
        assert_eq!(approve.action, "");
        assert_eq!(
            approve.approval,
            Some(Approval {
                approvers: vec!["soc-leads".into()],
                min: 1,
                timeout_ms: 900_000,
                on_timeout: ApprovalOutcome::Reject
            })
        );
        let gated = &playbook.steps[4];
        assert_eq!(gated.action, "core.noop");
        assert_eq!(
            gated.approval,
            Some(Approval {
                approvers: vec!["soc-leads".into(), "on-call".into()],
                min: 2,
                timeout_ms: 3_600_000,
                on_timeout: ApprovalOutcome::Approve
            })
        );
        for step in &playbook.steps {
            assert_eq!(
                (&step.undo, &step.grant, &step.waves),
                (&None, &None, &None)
            );
        }
        let plain = compile("name: p\nversion: 1\nsteps:\n  - { id: a, action: core.noop }\n")
            .expect("compiles");
        assert_eq!((plain.concurrency, plain.timeout_ms), (None, None));
    }

    #[test]
    fn undo_grant_and_waves() {
        let playbook = playbook(
            r#"
name: controls
version: 1
steps:
  - id: open
    action: core.echo
    undo: { action: core.echo, with: { x: "{{ steps.open.output }}" } }
    grant: { ttl: 30s }
  - id: patch
    for_each: [a, b, c]
    action: core.noop
    waves: { canary: 0, batch: 25%, error_budget: 3, health: { action: core.echo, with: { w: "{{ wave }}" } } }
  - id: plain
    for_each: [a]
    action: core.noop
    waves: {}
"#,
        );
        let open = &playbook.steps[0];
        assert_eq!(
            open.undo,
            Some(Undo {
                action: "core.echo".into(),
                with: json!({ "x": "{{ steps.open.output }}" })
            })
        );
        assert_eq!(
            open.grant,
            Some(Grant {
                ttl: "30s".into(),
                subject: String::new()
            })
        );
        assert_eq!(
            playbook.steps[1].waves,
            Some(Waves {
                canary: 0,
                batch: Amount::Percent(25),
                error_budget: Amount::Count(3),
                health: Some(HealthGate {
                    action: "core.echo".into(),
                    with: json!({ "w": "{{ wave }}" })
                }),
                window: None,
                outside_window: OutsideWindow::Wait,
            })
        );
        assert_eq!(
            playbook.steps[2].waves,
            Some(Waves {
                canary: 1,
                batch: Amount::Percent(100),
                error_budget: Amount::Count(0),
                health: None,
                window: None,
                outside_window: OutsideWindow::Wait,
            })
        );
    }

    #[test]
    fn names_read_back() {
        assert_eq!(ConcurrencyPolicy::Replace.as_str(), "replace");
        assert_eq!(ApprovalOutcome::Approve.as_str(), "approve");
        assert_eq!(Amount::Percent(25).to_string(), "25%");
        assert_eq!(Amount::Count(3).to_string(), "3");
    }
}

mod amount {
    use super::*;

    #[test]
    fn a_count_is_itself() {
        assert_eq!(Amount::Count(3).of(10), 3);
        assert_eq!(Amount::Count(0).of(10), 0);
        // Not capped: a batch larger than what is left takes what is left.
        assert_eq!(Amount::Count(30).of(10), 30);
    }

    #[test]
    fn a_percentage_rounds_up_and_is_at_least_one() {
        assert_eq!(Amount::Percent(25).of(100), 25);
        assert_eq!(Amount::Percent(25).of(10), 3);
        assert_eq!(Amount::Percent(1).of(10), 1);
        assert_eq!(Amount::Percent(1).of(1000), 10);
        assert_eq!(Amount::Percent(33).of(3), 1);
        assert_eq!(Amount::Percent(34).of(3), 2);
        assert_eq!(Amount::Percent(100).of(7), 7);
        assert_eq!(Amount::Percent(0).of(7), 0);
        assert_eq!(Amount::Percent(50).of(0), 1);
    }

    #[test]
    fn a_percentage_never_overflows() {
        assert_eq!(Amount::Percent(100).of(u32::MAX), u32::MAX);
        assert_eq!(Amount::Percent(50).of(u32::MAX), u32::MAX / 2 + 1);
    }
}

mod durations {
    use super::*;

    #[test]
    fn reads_what_playbooks_read() {
        assert_eq!(parse_duration_ms("15m"), Ok(900_000));
        assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration_ms(" 100ms "), Ok(100));
        assert_eq!(parse_duration_ms("30d"), Ok(limits::SLEEP_MS_MAX));
        assert_eq!(parse_duration_ms("0s"), Ok(0), "bounds are the caller's");
    }

    #[test]
    fn explains_garbage() {
        assert_eq!(
            parse_duration_ms("5").map_err(|e| e.to_string()),
            Err("invalid duration `5`: a unit is needed, e.g. `30s`".into())
        );
        assert_eq!(
            parse_duration_ms("-5m").map_err(|e| e.to_string()),
            Err(
                "invalid duration `-5m`: expected a positive number and a unit, e.g. `30s`, \
                 `5m` or `1h30m`"
                    .into()
            )
        );
        assert!(parse_duration_ms("").is_err());
        assert!(parse_duration_ms("soon").is_err());
        assert!(parse_duration_ms("99999999999999999999d").is_err());
    }

    #[test]
    fn long_garbage_is_shortened_in_messages() {
        let error = parse_duration_ms(&"x".repeat(10_000))
            .expect_err("garbage")
            .to_string();
        assert!(error.len() < 200, "{error}");
    }
}

mod timestamps {
    use super::*;

    #[test]
    fn utc_and_offsets() {
        assert_eq!(parse_timestamp_ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_timestamp_ms("2026-12-01T02:00:00Z"),
            Ok(1_796_090_400_000)
        );
        assert_eq!(
            parse_timestamp_ms("2026-12-01T03:00:00+01:00"),
            Ok(1_796_090_400_000)
        );
        assert_eq!(
            parse_timestamp_ms("2026-11-30T21:00:00-05:00"),
            Ok(1_796_090_400_000)
        );
        assert_eq!(
            parse_timestamp_ms("2026-12-01T02:00:00+05:30"),
            Ok(1_796_070_600_000)
        );
        assert_eq!(
            parse_timestamp_ms("2026-12-01T02:00:00-00:00"),
            Ok(1_796_090_400_000)
        );
    }

    #[test]
    fn forms_rfc_3339_allows() {
        let expected = Ok(1_796_090_400_000);
        assert_eq!(parse_timestamp_ms("2026-12-01t02:00:00z"), expected);
        assert_eq!(parse_timestamp_ms("2026-12-01 02:00:00Z"), expected);
        assert_eq!(parse_timestamp_ms("  2026-12-01T02:00:00Z\n"), expected);
        assert_eq!(
            parse_timestamp_ms("2026-12-01T02:00:00.250Z"),
            Ok(1_796_090_400_250)
        );
        assert_eq!(
            parse_timestamp_ms("2026-12-01T02:00:00.1Z"),
            Ok(1_796_090_400_100)
        );
        assert_eq!(
            parse_timestamp_ms("2026-12-01T02:00:00.123999999Z"),
            Ok(1_796_090_400_123)
        );
        // A leap second is the start of the next minute.
        assert_eq!(
            parse_timestamp_ms("2016-12-31T23:59:60Z"),
            parse_timestamp_ms("2017-01-01T00:00:00Z")
        );
    }

    #[test]
    fn far_dates() {
        assert_eq!(
            parse_timestamp_ms("1969-07-20T20:17:40Z"),
            Ok(-14_182_940_000)
        );
        assert_eq!(
            parse_timestamp_ms("2000-02-29T23:59:59.999Z"),
            Ok(951_868_799_999)
        );
        assert_eq!(
            parse_timestamp_ms("9999-12-31T23:59:59Z"),
            Ok(253_402_300_799_000)
        );
        assert_eq!(
            parse_timestamp_ms("0001-01-01T00:00:00Z"),
            Ok(-62_135_596_800_000)
        );
    }

    #[test]
    fn explains_garbage() {
        let cases = [
            ("", "expected a date and time with a time zone"),
            ("tomorrow", "expected a date and time with a time zone"),
            ("2026-12-01", "expected a date and time with a time zone"),
            (
                "2026-12-01T02:00Z",
                "expected a date and time with a time zone",
            ),
            (
                "26-12-01T02:00:00Z",
                "expected a date and time with a time zone",
            ),
            ("2026-12-01T02:00:00", "a time zone is needed"),
            (
                "2026-12-01T02:00:00+0100",
                "expected an offset like `+02:00`",
            ),
            ("2026-12-01T02:00:00+01", "expected an offset like `+02:00`"),
            (
                "2026-12-01T02:00:00.Z",
                "expected digits after the decimal point",
            ),
            (
                "2026-12-01T02:00:00Z!",
                "unexpected `!` after the time zone",
            ),
            (
                "2026-12-01T02:00:00ZÅ",
                "unexpected `Å` after the time zone",
            ),
            (
                "2026-12-01T02:00:00Å",
                "expected a date and time with a time zone",
            ),
            ("2026-13-01T02:00:00Z", "month must be 01 to 12, found 13"),
            ("2026-00-01T02:00:00Z", "month must be 01 to 12, found 00"),
            (
                "2026-04-31T02:00:00Z",
                "day must be 01 to 30 in 2026-04, found 31",
            ),
            (
                "1900-02-29T02:00:00Z",
                "day must be 01 to 28 in 1900-02, found 29",
            ),
            (
                "2026-12-00T02:00:00Z",
                "day must be 01 to 31 in 2026-12, found 00",
            ),
            ("2026-12-01T02:60:00Z", "minute must be 00 to 59, found 60"),
            ("2026-12-01T02:00:61Z", "second must be 00 to 60, found 61"),
            (
                "2026-12-01T02:00:00+01:60",
                "offset minute must be 00 to 59, found 60",
            ),
            (
                "+2026-12-01T02:00:00Z",
                "expected a date and time with a time zone",
            ),
        ];
        for (text, why) in cases {
            let error = parse_timestamp_ms(text).expect_err(text).to_string();
            assert!(
                error.starts_with(&format!("invalid timestamp `{}`: ", text))
                    && error.contains(why),
                "{text}: {error}"
            );
        }
    }

    #[test]
    fn long_garbage_is_shortened_in_messages() {
        let error = parse_timestamp_ms(&"9".repeat(10_000))
            .expect_err("garbage")
            .to_string();
        assert!(error.len() < 200, "{error}");
    }
}
