//! Property and robustness tests of `compile`: random DAGs order correctly, random cycles are
//! always reported, and hostile or random input yields diagnostics, never a panic or a stack
//! overflow. Also: timestamps read as an independent day count says, and amounts stay within
//! their items.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use riposte_playbooks::{Amount, Diagnostic, compile, limits, parse_timestamp_ms};

/// A random DAG: step `i` needs some of the steps before it, declared in a shuffled order.
#[derive(Debug, Clone)]
struct Dag {
    needs: Vec<BTreeSet<usize>>,
    declaration: Vec<usize>,
}

fn dag() -> impl Strategy<Value = Dag> {
    (1usize..24)
        .prop_flat_map(|count| {
            let needs = (0..count)
                .map(|i| proptest::collection::btree_set(0..i.max(1), 0..=i.min(4)))
                .collect::<Vec<_>>();
            let order: Vec<usize> = (0..count).collect();
            (needs, Just(order).prop_shuffle())
        })
        .prop_map(|(needs, declaration)| {
            // Step 0 has no earlier step to need.
            let needs = needs
                .into_iter()
                .enumerate()
                .map(|(i, set)| set.into_iter().filter(|&n| n < i).collect())
                .collect();
            Dag { needs, declaration }
        })
}

fn source(needs: &[BTreeSet<usize>], declaration: &[usize]) -> String {
    let mut text = String::from("name: random\nversion: 1\nsteps:\n");
    for &step in declaration {
        let names: Vec<String> = needs[step].iter().map(|n| format!("s{n}")).collect();
        text.push_str(&format!(
            "  - {{ id: s{step}, action: core.noop, needs: [{}] }}\n",
            names.join(", ")
        ));
    }
    text
}

fn render(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

proptest! {
    #[test]
    fn random_dags_compile_in_topological_order(dag in dag()) {
        let playbook = compile(&source(&dag.needs, &dag.declaration))
            .map_err(|d| TestCaseError::fail(render(&d)))?;
        prop_assert_eq!(playbook.steps.len(), dag.needs.len());
        let by_id: BTreeMap<&str, usize> =
            playbook.steps.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
        for (index, step) in playbook.steps.iter().enumerate() {
            prop_assert!(step.needs.iter().all(|&n| n < index), "{} needs a later step", step.id);
            let original: usize = step.id[1..].parse().expect("generated id");
            let expected: BTreeSet<usize> =
                dag.needs[original].iter().map(|n| by_id[format!("s{n}").as_str()]).collect();
            let actual: BTreeSet<usize> = step.needs.iter().copied().collect();
            prop_assert_eq!(actual, expected);
        }
    }

    #[test]
    fn declaration_order_is_kept_when_it_is_topological(dag in dag()) {
        let identity: Vec<usize> = (0..dag.needs.len()).collect();
        let playbook = compile(&source(&dag.needs, &identity))
            .map_err(|d| TestCaseError::fail(render(&d)))?;
        let ids: Vec<String> = playbook.steps.iter().map(|s| s.id.clone()).collect();
        let expected: Vec<String> = identity.iter().map(|i| format!("s{i}")).collect();
        prop_assert_eq!(ids, expected);
    }

    #[test]
    fn random_cycles_are_always_reported(
        dag in dag(),
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 2..6),
    ) {
        let mut needs = dag.needs.clone();
        let mut members: Vec<usize> = picks.iter().map(|p| p.index(needs.len())).collect();
        members.dedup();
        prop_assume!(members.len() >= 2 && members.first() != members.last());
        for pair in members.windows(2) {
            needs[pair[0]].insert(pair[1]);
        }
        needs[members[members.len() - 1]].insert(members[0]);
        let Err(diagnostics) = compile(&source(&needs, &dag.declaration)) else {
            return Err(TestCaseError::fail("a cycle compiled"));
        };
        let cycles: Vec<&Diagnostic> =
            diagnostics.iter().filter(|d| d.message.starts_with("dependency cycle: ")).collect();
        let self_needs = diagnostics.iter().any(|d| d.message.ends_with("needs itself"));
        prop_assert!(!cycles.is_empty() || self_needs, "{}", render(&diagnostics));
        for diagnostic in cycles {
            let named = diagnostic.message["dependency cycle: ".len()..]
                .split(" (")
                .next()
                .unwrap_or_default();
            let ids: Vec<usize> = named.split(" -> ").map(|id| id[1..].parse().expect("id")).collect();
            prop_assert_eq!(ids.first(), ids.last());
            for pair in ids.windows(2) {
                prop_assert!(needs[pair[0]].contains(&pair[1]), "{} is not a cycle", named);
            }
        }
    }

    /// Random text made of YAML's special characters never panics.
    #[test]
    fn random_text_never_panics(text in "[-\\[\\]{}:?&*!|>'\"#%@`,. \\t\\r\\nab0-9\u{0}{{}}]{0,300}") {
        let _ = compile(&text);
    }

    /// Random edits of a valid playbook never panic.
    #[test]
    fn mutated_playbooks_never_panic(
        source in prop::sample::select(&MUTATED[..]),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), "[-\\[\\]{}:'\"#&*% \\n]{0,3}", 0usize..4), 1..6),
    ) {
        let mut text = source.to_string();
        for (at, insert, delete) in edits {
            let mut index = at.index(text.len() + 1);
            while !text.is_char_boundary(index) {
                index -= 1;
            }
            let mut end = (index + delete).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            text.replace_range(index..end, &insert);
        }
        let _ = compile(&text);
    }
}

/// Valid playbooks that random edits start from: between them, every kind of step and control.
const MUTATED: [&str; 5] = [
    include_str!("../examples/diamond.yaml"),
    include_str!("data/ok-undo-grant.yaml"),
    include_str!("data/ok-waves.yaml"),
    include_str!("data/ok-sleep-until.yaml"),
    include_str!("data/ok-approval.yaml"),
];

/// Days from 1970-01-01, counted year by year and month by month.
fn days_by_counting(year: i64, month: u32, day: u32) -> i64 {
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let year_days = |y: i64| if leap(y) { 366 } else { 365 };
    let mut days: i64 = if year >= 1970 {
        (1970..year).map(year_days).sum()
    } else {
        -(year..1970).map(year_days).sum::<i64>()
    };
    let months = [
        31,
        if leap(year) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    days += months[..month as usize - 1].iter().sum::<i64>();
    days + i64::from(day) - 1
}

proptest! {
    #[test]
    fn timestamps_match_an_independent_count(
        year in 0i64..=9999, month in 1u32..=12, day in 1u32..=28,
        hour in 0u32..24, minute in 0u32..60, second in 0u32..60, millis in 0u32..1000,
        offset_minutes in -(23 * 60 + 59)..=(23 * 60 + 59i64),
    ) {
        let text = format!(
            "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{millis:03}Z"
        );
        let expected = days_by_counting(year, month, day) * 86_400_000
            + i64::from(hour * 3600 + minute * 60 + second) * 1000
            + i64::from(millis);
        prop_assert_eq!(parse_timestamp_ms(&text), Ok(expected));
        // The same wall time at an offset east of UTC is that much earlier.
        let sign = if offset_minutes < 0 { '-' } else { '+' };
        let (h, m) = (offset_minutes.abs() / 60, offset_minutes.abs() % 60);
        let shifted = format!("{}{sign}{h:02}:{m:02}", &text[..text.len() - 1]);
        prop_assert_eq!(parse_timestamp_ms(&shifted), Ok(expected - offset_minutes * 60_000));
    }

    #[test]
    fn random_text_is_never_a_panic_as_a_timestamp(text in "[-0-9T:Zz+. ]{0,40}|\\PC{0,40}") {
        let _ = parse_timestamp_ms(&text);
    }

    #[test]
    fn percentages_stay_within_the_items(percent in 1u32..=100, total in 1u32..=100_000) {
        let count = Amount::Percent(percent).of(total);
        prop_assert!((1..=total).contains(&count), "{percent}% of {total} is {count}");
        prop_assert!(u64::from(count) * 100 >= u64::from(total) * u64::from(percent));
        prop_assert!(count <= Amount::Percent((percent + 1).min(100)).of(total));
    }
}

fn errors(source: &str) -> Vec<String> {
    match compile(source) {
        Ok(_) => panic!("compiled, expected diagnostics"),
        Err(diagnostics) => diagnostics.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn a_megabyte_string_is_refused_before_parsing() {
    let source = format!(
        "name: big\nversion: 1\ndescription: \"{}\"\n",
        "a".repeat(1 << 20)
    );
    assert_eq!(
        errors(&source),
        vec![format!(
            "0:0: playbook is {} bytes, more than the 262144 allowed",
            source.len()
        )]
    );
}

#[test]
fn a_hundred_thousand_brackets_do_not_overflow_the_stack() {
    for open in ["[", "{", "{a: "] {
        let source = format!("name: deep\nx: {}", open.repeat(100_000 / open.len()));
        let source: String = source.chars().take(limits::SOURCE_BYTES_MAX).collect();
        let found = errors(&source);
        assert_eq!(found.len(), 1, "{found:?}");
    }
}

#[test]
fn a_hundred_thousand_dashes_do_not_overflow_the_stack() {
    let source = format!("name: deep\nsteps:\n{}x\n", "- ".repeat(100_000));
    let expected = "3:63: nesting deeper than 32 levels";
    assert_eq!(errors(&source), vec![expected]);
    let source = format!("name: deep\nsteps:\r{}x\r", "- ".repeat(100_000));
    assert_eq!(errors(&source), vec![expected]);
}

/// The deepest document the pre-parse bounds let through still parses safely, and is then
/// refused for its depth.
#[test]
fn the_deepest_admitted_document_is_refused_safely() {
    let mut source = String::from("name: deep\nsteps:\n");
    for level in 0..127 {
        source.push_str(&format!("{}- k:\n", "  ".repeat(level)));
    }
    source.push_str(&format!(
        "{}- {}{}\n",
        "  ".repeat(127),
        "[".repeat(250),
        "]".repeat(250)
    ));
    let found = std::thread::Builder::new()
        .stack_size(STACK_BYTES)
        .spawn(move || errors(&source))
        .expect("spawn")
        .join()
        .expect("no overflow");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].ends_with("nesting deeper than 32 levels"),
        "{found:?}"
    );
}

/// Far less than any thread gets (2 MiB for test and runtime worker threads).
const STACK_BYTES: usize = 128 * 1024;

#[test]
fn nesting_at_the_limit_is_fine_and_one_more_is_not() {
    let nested = |depth: usize| {
        // The root mapping, `steps`, the step and `with` use four levels.
        let inner = depth - 4;
        format!(
            "name: n\nversion: 1\nsteps:\n  - id: a\n    action: core.echo\n    with: {{ x: {}1{} }}\n",
            "[".repeat(inner - 1),
            "]".repeat(inner - 1)
        )
    };
    assert!(compile(&nested(limits::YAML_DEPTH_MAX)).is_ok());
    let found = errors(&nested(limits::YAML_DEPTH_MAX + 1));
    assert_eq!(found.len(), 1);
    assert!(
        found[0].ends_with("nesting deeper than 32 levels"),
        "{found:?}"
    );
}

#[test]
fn control_characters_are_refused() {
    assert_eq!(
        errors("name: a\nversion: 1\u{0}\nsteps: []\n"),
        vec!["2:11: control character U+0000 is not allowed"]
    );
}

#[test]
fn step_count_is_bounded() {
    let mut source = String::from("name: many\nversion: 1\nsteps:\n");
    for i in 0..=limits::STEPS_MAX {
        source.push_str(&format!("  - {{ id: s{i}, action: core.noop }}\n"));
    }
    assert_eq!(
        errors(&source),
        vec!["4:3: steps: 257 steps, more than the 256 allowed"]
    );
}

#[test]
fn needs_count_is_bounded() {
    let mut source = String::from("name: many\nversion: 1\nsteps:\n");
    let count = limits::NEEDS_MAX + 1;
    for i in 0..count {
        source.push_str(&format!("  - {{ id: s{i}, action: core.noop }}\n"));
    }
    let all: Vec<String> = (0..count).map(|i| format!("s{i}")).collect();
    source.push_str(&format!(
        "  - {{ id: join, action: core.noop, needs: [{}] }}\n",
        all.join(", ")
    ));
    let found = errors(&source);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].ends_with("steps[65].needs: 65 needs, more than the 64 allowed"),
        "{found:?}"
    );
}

#[test]
fn literal_for_each_lists_are_bounded() {
    let items = vec!["0"; limits::FOR_EACH_ITEMS_MAX + 1];
    let source = format!(
        "name: l\nversion: 1\nsteps:\n  - {{ id: a, action: core.noop, for_each: [{}] }}\n",
        items.join(",")
    );
    assert_eq!(
        errors(&source),
        vec!["4:43: steps[0].for_each: 100001 items, more than the 100000 allowed"]
    );
}

#[test]
fn param_count_is_bounded() {
    let mut source = String::from("name: p\nversion: 1\nparams:\n");
    for i in 0..=limits::PARAMS_MAX {
        source.push_str(&format!("  p{i}: {{ type: string }}\n"));
    }
    source.push_str("steps:\n  - { id: a, action: core.noop }\n");
    let found = errors(&source);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].ends_with("params: 65 params, more than the 64 allowed"),
        "{found:?}"
    );
}

#[test]
fn long_names_are_refused() {
    let name = "a".repeat(limits::NAME_BYTES_MAX + 1);
    let source =
        format!("name: {name}\nversion: 1\nsteps:\n  - {{ id: {name}, action: core.noop }}\n");
    let found = errors(&source);
    assert_eq!(found.len(), 2, "{found:?}");
}

#[test]
fn diagnostics_are_capped() {
    let step = "  - { id: a, action: core.noop, needs: [a, a, a] }\n";
    let source = format!("name: x\nversion: 1\nsteps:\n{}", step.repeat(100));
    let found = errors(&source);
    assert_eq!(found.len(), limits::DIAGNOSTICS_MAX + 1);
    assert_eq!(
        found[limits::DIAGNOSTICS_MAX],
        "0:0: 200 more problems not shown"
    );
}
