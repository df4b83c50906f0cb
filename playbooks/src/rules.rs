//! Alert rules, the pure part: a rule's YAML read into a [`Rule`], and the decision for one
//! normalized alert ([`decide`]): which rule matches first, the run parameters it renders,
//! its dedup key. No IO, no clock: the engine owns the dedup index and the budgets.
//!
//! ```yaml
//! name: block-ssh-bruteforce
//! order: 10                      # lower first, then by name (default 100)
//! match: "alert.source == 'azure_monitor' and alert.severity in ['high', 'critical']"
//! playbook: ip-echo
//! version: 1                     # optional: the latest at start time
//! params:
//!   ip: "{{ alert.entities.ips[0].address }}"
//! dedup: { key: "{{ alert.entities.ips[0].address }}", window: 10m }
//! budget: { runs: 20, per: 1h }
//! ```
//!
//! `match` and the templates are evaluated in the playbooks crate's sandboxed environment
//! with the alert bound as `alert` (data, never compiled). A `match` that fails to evaluate
//! (e.g. an alert without IPs under strict undefined) does not match.

use crate::{Diagnostic, Renderer, Scope};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::schedule::yaml;

/// Bounds on rules.
pub mod limits {
    /// Largest rule source, in bytes.
    pub const SOURCE_BYTES_MAX: usize = 64 * 1024;
    /// Rules stored at once; applying one more is RESOURCE_EXHAUSTED.
    pub const RULES_MAX: usize = 1000;
    /// Longest rule name, in bytes.
    pub const NAME_BYTES_MAX: usize = 128;
    /// Longest dedup window and budget period, in milliseconds (7 days).
    pub const WINDOW_MS_MAX: u64 = 7 * 24 * 3600 * 1000;
    /// Longest rendered dedup key, in bytes.
    pub const DEDUP_KEY_BYTES_MAX: usize = 512;
}

/// The order of a rule without `order`.
const ORDER_DEFAULT: i64 = 100;

/// A rule as applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub order: i64,
    pub expression: String,
    pub playbook: String,
    /// `None`: the latest version at start time.
    pub version: Option<u32>,
    /// Templates over the alert, rendered into the run's params.
    pub params: Map<String, Value>,
    pub dedup: Option<Dedup>,
    pub budget: Option<Budget>,
    /// Whether the rule's expression or templates may read `alert.raw` (they mention `raw`):
    /// the vendor payload is converted for the templates only when some rule may read it.
    pub reads_raw: bool,
}

/// Coalesce alerts with the same rendered `key` within `window_ms` into one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Dedup {
    pub key: String,
    pub window_ms: i64,
}

/// At most `runs` runs started per fixed period of `per_ms` (periods start at the epoch).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    pub runs: u32,
    pub per_ms: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    name: String,
    #[serde(default)]
    order: Option<i64>,
    #[serde(rename = "match")]
    expression: String,
    playbook: String,
    #[serde(default)]
    version: Option<u32>,
    #[serde(default)]
    params: Map<String, Value>,
    #[serde(default)]
    dedup: Option<DedupSpec>,
    #[serde(default)]
    budget: Option<BudgetSpec>,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DedupSpec {
    key: String,
    window: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetSpec {
    runs: u32,
    per: String,
}

/// Reads a rule, or every problem found.
pub fn parse(source: &str, renderer: &Renderer) -> Result<Rule, Vec<Diagnostic>> {
    if source.len() > limits::SOURCE_BYTES_MAX {
        return Err(vec![problem(
            "",
            format!(
                "rule is {} bytes, more than the {} allowed",
                source.len(),
                limits::SOURCE_BYTES_MAX
            ),
        )]);
    }
    let mut sink = yaml::Sink::default();
    let Some(node) = yaml::load_rule(source, &mut sink) else {
        return Err(sink.into_sorted());
    };
    let spec: Spec = serde_json::from_value(yaml::to_json(&node))
        .map_err(|e| vec![problem("", format!("invalid rule: {e}"))])?;
    let problems = check(&spec, renderer);
    if !problems.is_empty() {
        return Err(problems);
    }
    rule(spec).map_err(|d| vec![d])
}

fn rule(spec: Spec) -> Result<Rule, Diagnostic> {
    let dedup = match spec.dedup {
        Some(d) => Some(Dedup {
            key: d.key,
            window_ms: window("dedup.window", &d.window)?,
        }),
        None => None,
    };
    let budget = match spec.budget {
        Some(b) if b.runs == 0 => return Err(problem("budget.runs", "must be at least 1")),
        Some(b) => Some(Budget {
            runs: b.runs,
            per_ms: window("budget.per", &b.per)?,
        }),
        None => None,
    };
    let reads_raw = spec.expression.contains("raw")
        || Value::Object(spec.params.clone())
            .to_string()
            .contains("raw")
        || dedup.as_ref().is_some_and(|d| d.key.contains("raw"));
    Ok(Rule {
        reads_raw,
        name: spec.name,
        order: spec.order.unwrap_or(ORDER_DEFAULT),
        expression: spec.expression,
        playbook: spec.playbook,
        version: spec.version,
        params: spec.params,
        dedup,
        budget,
    })
}

fn window(path: &str, text: &str) -> Result<i64, Diagnostic> {
    let ms = crate::parse_duration_ms(text).map_err(|e| problem(path, e.to_string()))?;
    if ms == 0 || ms > limits::WINDOW_MS_MAX {
        return Err(problem(
            path,
            format!(
                "must be more than 0 and at most {} ms",
                limits::WINDOW_MS_MAX
            ),
        ));
    }
    Ok(ms as i64)
}

/// Every problem of names and templates (templates are compiled, not evaluated).
fn check(spec: &Spec, renderer: &Renderer) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    let name_ok = !spec.name.is_empty()
        && spec.name.len() <= limits::NAME_BYTES_MAX
        && spec
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !name_ok {
        problems.push(problem(
            "name",
            format!(
                "must be 1 to {} letters, digits, `-`, `_` or `.`",
                limits::NAME_BYTES_MAX
            ),
        ));
    }
    if spec.playbook.is_empty() {
        problems.push(problem("playbook", "is required"));
    }
    if let Err(e) = renderer.check(&spec.expression, true) {
        problems.push(problem("match", e.message));
    }
    for (key, value) in &spec.params {
        check_tree(&format!("params.{key}"), value, renderer, &mut problems);
    }
    if let Some(dedup) = &spec.dedup
        && let Err(e) = renderer.check(&dedup.key, false)
    {
        problems.push(problem("dedup.key", e.message));
    }
    problems
}

fn check_tree(path: &str, value: &Value, renderer: &Renderer, problems: &mut Vec<Diagnostic>) {
    match value {
        Value::String(template) => {
            if let Err(e) = renderer.check(template, false) {
                problems.push(problem(path, e.message));
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_tree(&format!("{path}[{i}]"), item, renderer, problems);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                check_tree(&format!("{path}.{k}"), v, renderer, problems);
            }
        }
        _ => {}
    }
}

fn problem(path: &str, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        message: message.into(),
        path: path.to_string(),
        line: 0,
        column: 0,
    }
}

/// What the first matching rule asks for one alert.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// No rule matched.
    Nothing,
    /// `rules[index]` matched; its params and dedup key rendered.
    Start {
        index: usize,
        params: Map<String, Value>,
        dedup_key: Option<String>,
    },
    /// `rules[index]` matched but its params or dedup key could not be rendered.
    Refused { index: usize, reason: String },
}

/// Evaluates `rules` in their order over `alert` (the normalized alert as JSON); the first
/// match decides.
pub fn decide<'a>(
    rules: impl IntoIterator<Item = &'a Rule>,
    renderer: &Renderer,
    alert: &Value,
) -> Decision {
    let scope = match renderer.scope(&[("alert", alert)]) {
        Ok(scope) => scope,
        // Nothing can match an alert the templates cannot see (nested too deep).
        Err(_) => return Decision::Nothing,
    };
    for (index, rule) in rules.into_iter().enumerate() {
        // An error here is no match: it is not named.
        if !renderer
            .condition_in("", &rule.expression, &scope)
            .unwrap_or(false)
        {
            continue;
        }
        return match render(rule, renderer, &scope) {
            Ok((params, dedup_key)) => Decision::Start {
                index,
                params,
                dedup_key,
            },
            Err(reason) => Decision::Refused { index, reason },
        };
    }
    Decision::Nothing
}

type Rendered = (Map<String, Value>, Option<String>);

/// A matching rule's params and dedup key over one alert. Rendered for every alert of a
/// storm: what names a template in errors is written out only in an error.
fn render(rule: &Rule, renderer: &Renderer, scope: &Scope) -> Result<Rendered, String> {
    let what = |part: &'static str| Named {
        rule: &rule.name,
        part,
    };
    let params = renderer
        .map_in(what("params"), &rule.params, scope)
        .map_err(|e| e.to_string())?;
    let dedup_key = match &rule.dedup {
        Some(dedup) => {
            let key = match renderer.leaf_in(what("dedup.key"), &dedup.key, scope) {
                Ok(Value::String(key)) => key,
                Ok(other) => other.to_string(),
                Err(e) => return Err(e.to_string()),
            };
            if key.len() > limits::DEDUP_KEY_BYTES_MAX {
                return Err(format!(
                    "{}: rendered key is {} bytes, more than the {} allowed",
                    what("dedup.key"),
                    key.len(),
                    limits::DEDUP_KEY_BYTES_MAX
                ));
            }
            Some(key)
        }
        None => None,
    };
    Ok((params, dedup_key))
}

/// ``rule `NAME`: PART``, naming a rule's template in an error.
struct Named<'a> {
    rule: &'a str,
    part: &'static str,
}

impl std::fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rule `{}`: {}", self.rule, self.part)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RULE: &str = "name: r\nmatch: \"alert.severity == 'high'\"\nplaybook: p\n\
        params:\n  ip: \"{{ alert.entities.ips[0].address }}\"\n\
        dedup: { key: \"ip-{{ alert.entities.ips[0].address }}\", window: 10m }\n\
        budget: { runs: 2, per: 1h }\n";

    fn alert(severity: &str, ips: Value) -> Value {
        json!({"source": "azure_monitor", "severity": severity, "entities": {"ips": ips}})
    }

    #[test]
    fn the_yaml_front_end_names_a_rule_and_places_its_problems() {
        let renderer = Renderer::new();
        let messages = |source: &str| -> Vec<String> {
            let problems = parse(source, &renderer).expect_err("refused");
            problems.iter().map(|d| d.to_string()).collect()
        };
        assert_eq!(
            messages("- a\n- b\n"),
            ["1:1: a rule must be a YAML mapping"]
        );
        assert_eq!(
            messages("name: x\n---\nname: y\n"),
            ["2:1: a rule must be a single YAML document"]
        );
        assert_eq!(
            messages("name: x\nmatch: \"a\u{7}\"\n"),
            ["2:10: control character U+0007 is not allowed"]
        );
        assert_eq!(
            messages("name: x\nname: y\n"),
            ["2:1: duplicate key `name` (first at 1:1)"]
        );
    }

    #[test]
    fn a_rule_reads_with_its_windows() {
        let rule = parse(RULE, &Renderer::new()).expect("valid");
        assert_eq!(rule.order, ORDER_DEFAULT);
        assert_eq!(rule.dedup.expect("dedup").window_ms, 600_000);
        assert_eq!(
            rule.budget,
            Some(Budget {
                runs: 2,
                per_ms: 3_600_000
            })
        );
    }

    #[test]
    fn the_first_match_renders_params_and_the_dedup_key() {
        let renderer = Renderer::new();
        let rule = parse(RULE, &renderer).expect("valid");
        let a = alert("high", json!([{"address": "203.0.113.45"}]));
        let Decision::Start {
            index,
            params,
            dedup_key,
        } = decide(&[rule], &renderer, &a)
        else {
            panic!("matches");
        };
        assert_eq!(index, 0);
        assert_eq!(params["ip"], "203.0.113.45");
        assert_eq!(dedup_key.as_deref(), Some("ip-203.0.113.45"));
    }

    #[test]
    fn no_match_and_a_params_failure_are_told_apart() {
        let renderer = Renderer::new();
        let rule = parse(RULE, &renderer).expect("valid");
        let low = alert("low", json!([{"address": "203.0.113.45"}]));
        assert_eq!(
            decide(std::slice::from_ref(&rule), &renderer, &low),
            Decision::Nothing
        );
        let no_ip = alert("high", json!([]));
        let Decision::Refused { index: 0, reason } = decide(&[rule], &renderer, &no_ip) else {
            panic!("refused");
        };
        assert!(
            reason.starts_with("rule `r`: params.ip: "),
            "names the rule and the param: {reason}"
        );
    }

    #[test]
    fn a_dedup_key_that_cannot_be_rendered_or_is_too_long_is_named() {
        let renderer = Renderer::new();
        let a = alert("high", json!([{"address": "203.0.113.45"}]));
        let refusal = |key: &str| {
            let rule = RULE.replace("ip-{{ alert.entities.ips[0].address }}", key);
            let rule = parse(&rule, &renderer).expect("valid");
            match decide(&[rule], &renderer, &a) {
                Decision::Refused { reason, .. } => reason,
                other => panic!("refused, not {other:?}"),
            }
        };
        let undefined = refusal("{{ alert.nothing_here }}");
        assert!(
            undefined.starts_with("rule `r`: dedup.key: "),
            "names the key: {undefined}"
        );
        let long = refusal("{{ alert.severity * 200 }}");
        assert_eq!(
            long,
            "rule `r`: dedup.key: rendered key is 800 bytes, more than the 512 allowed"
        );
    }

    #[test]
    fn bad_rules_report_what_is_wrong() {
        let renderer = Renderer::new();
        let broken = RULE.replace("alert.severity == 'high'", "alert.severity ==");
        let problems = parse(&broken, &renderer).expect_err("invalid");
        assert_eq!(problems[0].path, "match");
        let unknown = format!("{RULE}extra: 1\n");
        assert!(parse(&unknown, &renderer).is_err());
        let zero = RULE.replace("window: 10m", "window: 0s");
        assert_eq!(
            parse(&zero, &renderer).expect_err("zero")[0].path,
            "dedup.window"
        );
    }
}
