//! Tests of the runtime API: `Playbook::coerce_params`, the `Renderer`, `RetryPolicy::delay_ms`
//! and `Playbook::step_index`.

use riposte_playbooks::{Backoff, Context, Playbook, Renderer, RetryPolicy, Step, compile, limits};
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
            "step `fan`: for_each: more than the 1000 items allowed"
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
