//! The tests shipped beside the built-in and example playbooks pass, and a broken
//! expectation fails with a diff that names it.

use std::path::PathBuf;

fn folder(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

fn report(outcome: &riposte_playtest::FileOutcome) -> String {
    let mut text = String::new();
    if let Err(e) = &outcome.playbook {
        text.push_str(&format!("{}: {e}\n", outcome.path.display()));
    }
    for (name, result) in &outcome.tests {
        match result {
            Ok(o) if o.passed() => {}
            Ok(o) => {
                text.push_str(&format!("FAIL {name}\n"));
                o.mismatches
                    .iter()
                    .for_each(|m| text.push_str(&format!("{m}\n")));
                o.problems
                    .iter()
                    .for_each(|p| text.push_str(&format!("{p}\n")));
                o.history
                    .iter()
                    .for_each(|h| text.push_str(&format!("    {h}\n")));
            }
            Err(e) => text.push_str(&format!("ERROR {name}: {e}\n")),
        }
    }
    text
}

#[test]
fn the_built_in_playbooks_pass_their_tests() {
    let files = riposte_playtest::expand(&[folder("playbooks/builtin/tests")]).unwrap();
    let mut failures = String::new();
    let mut count = 0;
    for file in &files {
        let outcome = riposte_playtest::run_file(file);
        count += outcome.tests.len();
        failures.push_str(&report(&outcome));
    }
    assert!(failures.is_empty(), "{failures}");
    assert!(count >= 4, "only {count} tests");
}

const ECHO: &str = r#"
name: echo
version: 1
steps:
  - id: say
    action: core.echo
    with: { text: hi }
"#;

fn play(test: &str) -> Result<riposte_playtest::Outcome, riposte_playtest::Error> {
    play_on(ECHO, test)
}

fn play_on(yaml: &str, test: &str) -> Result<riposte_playtest::Outcome, riposte_playtest::Error> {
    let playbook = std::sync::Arc::new(riposte_playbooks::compile(yaml).unwrap());
    let suite = riposte_playtest::parse(&format!("playbook: echo.yaml\ntests:\n{test}"))?;
    riposte_playtest::run(&playbook, &suite.tests[0])
}

#[test]
fn a_broken_expectation_fails_with_a_diff_naming_it() {
    let outcome = play(
        "  - name: t\n    results: { say: { output: { said: hi } } }\n    expect: { status: failed, outputs: { say: { said: bye } } }\n",
    )
    .unwrap();
    assert!(!outcome.passed());
    let text: Vec<String> = outcome.mismatches.iter().map(ToString::to_string).collect();
    assert_eq!(text[0], r#"status: expected "failed", got "succeeded""#);
    assert!(
        text[1].starts_with("outputs: (- expected, + actual)"),
        "{}",
        text[1]
    );
    assert!(text[1].contains(r#"-     "said": "bye""#), "{}", text[1]);
    assert!(text[1].contains(r#"+     "said": "hi""#), "{}", text[1]);
}

#[test]
fn what_the_run_cannot_do_fails_the_test() {
    let late = play(
        "  - name: t\n    events: [{ at: 1h, cancel: late }]\n    expect: { status: succeeded }\n",
    )
    .unwrap();
    assert_eq!(
        late.problems,
        ["the event at 1h came after the run had ended"]
    );
    assert!(!late.passed());
    let refused = play(
        "  - name: t\n    events: [{ at: 0s, approve: say, refused: nope }]\n    expect: { status: succeeded }\n",
    )
    .unwrap();
    assert_eq!(refused.problems.len(), 1, "{:?}", refused.problems);
    assert!(
        refused.problems[0].contains("awaits no approval"),
        "{:?}",
        refused.problems
    );
}

#[test]
fn a_test_that_is_itself_wrong_says_where() {
    let unknown = play(
        "  - name: t\n    results: { shout: { output: {} } }\n    expect: { status: succeeded }\n",
    );
    assert_eq!(
        unknown.unwrap_err().to_string(),
        "results names no step of the playbook: `shout`"
    );
    let two = play(
        "  - name: t\n    events: [{ at: 1m, cancel: x, resume: true }]\n    expect: { status: succeeded }\n",
    );
    assert!(two.unwrap_err().to_string().contains("does 2 things"));
    let typo = play("  - name: t\n    expct: { status: succeeded }\n").unwrap_err();
    assert!(
        typo.to_string().contains("test `t`: unknown field `expct`"),
        "{typo}"
    );
}

/// A rollout whose playbook says `outside_window: fail` fails the step when a wave is due
/// outside its window; what already ran stays (no undo here).
#[test]
fn a_wave_due_outside_a_failing_window_fails_the_step() {
    let rollout = r#"
name: rollout
version: 1
steps:
  - id: roll
    for_each: "{{ ['a', 'b', 'c'] }}"
    action: core.echo
    with: { host: "{{ item }}" }
    waves: { canary: 1, batch: 1, window: "mon 00:00-00:30", outside_window: fail }
"#;
    let test = "  - name: t\n    results: { roll: { output: {}, takes: 20m } }\n    expect: { status: failed, error: \"wave 2 is due outside its maintenance window (mon 00:00-00:30)\", ended: 40m }\n";
    let outcome = play_on(rollout, test).unwrap();
    assert!(
        outcome.passed(),
        "{:?}\n{:#?}",
        outcome.mismatches,
        outcome.history
    );
}
