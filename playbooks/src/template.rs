//! Template sources in a playbook: how a string is read (literal, one expression, a template),
//! and the compile-time checks of each one (syntax, and that every variable it names exists
//! and is ready when the step runs).

use std::collections::{BTreeSet, HashMap};

use minijinja::Environment;
use serde_json::Value;

use crate::diagnostic::{Pos, Sink};
use crate::yaml;

/// How a string from `with` or `labels` is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leaf<'a> {
    /// No template syntax: the text itself.
    Literal,
    /// Exactly one `{{ expr }}`: the expression's value, keeping its type.
    Expression(&'a str),
    /// Any other template: rendered to a string.
    Template,
}

/// Reads a string the way the renderer evaluates it.
pub(crate) fn classify(text: &str) -> Leaf<'_> {
    if !has_markers(text) {
        return Leaf::Literal;
    }
    match single_expression(text) {
        Some(expression) => Leaf::Expression(expression),
        None => Leaf::Template,
    }
}

/// Whether `text` holds any template syntax.
pub(crate) fn has_markers(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// The expression inside `text` when `text` is exactly one `{{ expr }}` (whitespace-control
/// markers allowed).
fn single_expression(text: &str) -> Option<&str> {
    let inner = text.strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix(['-', '+']).unwrap_or(inner);
    let inner = inner.strip_suffix(['-', '+']).unwrap_or(inner);
    let nested = ["{{", "}}", "{%", "%}", "{#", "#}"]
        .iter()
        .any(|m| inner.contains(m));
    (!nested).then(|| inner.trim())
}

/// The expression a `when` or `for_each` string stands for: with or without `{{ }}`.
pub(crate) fn expression_source(text: &str) -> Result<&str, String> {
    let trimmed = text.trim();
    if let Some(expression) = single_expression(trimmed) {
        return Ok(expression);
    }
    if has_markers(trimmed) {
        return Err("expected one expression, with or without `{{ }}`".to_string());
    }
    Ok(trimmed)
}

/// Which field a template comes from; decides the variables it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    With,
    Labels,
    When,
    ForEach,
    Sleep,
    Until,
    /// `undo.with`: also sees the step's own `steps.<id>`, rendered once it succeeded.
    Undo,
    /// `grant.ttl` and `grant.subject`: rendered with the undo, so they see what it sees.
    Grant,
    /// `waves.health.with`: sees `wave`, not `item` (the gate runs once per wave).
    Health,
    /// The playbook's `concurrency.key`: rendered when the run starts, from `params` and
    /// `trigger` alone.
    ConcurrencyKey,
}

/// One template or expression found in a step, waiting to be checked.
#[derive(Debug, Clone)]
pub(crate) struct Use {
    pub source: String,
    pub expression: bool,
    pub field: Field,
    pub pos: Pos,
    pub path: String,
}

impl Use {
    /// A string leaf of `with` or `labels`; `None` when it holds no template.
    pub fn leaf(text: &str, field: Field, pos: Pos, path: &str) -> Option<Use> {
        let (source, expression) = match classify(text) {
            Leaf::Literal => return None,
            Leaf::Expression(expression) => (expression, true),
            Leaf::Template => (text, false),
        };
        Some(Use {
            source: source.to_string(),
            expression,
            field,
            pos,
            path: path.to_string(),
        })
    }
}

/// What the templates of one step (or of the playbook) may refer to.
pub(crate) struct Scope<'a> {
    pub params: &'a BTreeSet<String>,
    /// Every step id, to its declaration index.
    pub steps: &'a HashMap<String, usize>,
    /// Declaration indices of the steps this step needs, directly or transitively.
    pub ready: &'a BTreeSet<usize>,
    /// Declaration index of the step itself, `None` for the playbook's own templates.
    pub own: Option<usize>,
    pub for_each: bool,
    /// The environment's global functions (`range`, `dict`).
    pub globals: &'a BTreeSet<String>,
}

/// Names templates may use besides the context's roots: the environment's global functions.
pub(crate) fn globals(env: &Environment<'_>) -> BTreeSet<String> {
    env.globals().map(|(name, _)| name.to_string()).collect()
}

/// Checks one template: it parses, and each variable it reads exists and is ready.
pub(crate) fn check(env: &Environment<'_>, used: &Use, scope: &Scope<'_>, sink: &mut Sink) {
    let variables = if used.expression {
        env.compile_expression(&used.source)
            .map(|e| e.undeclared_variables(true))
    } else {
        env.template_from_str(&used.source)
            .map(|t| t.undeclared_variables(true))
    };
    let variables = match variables {
        Ok(variables) => variables,
        Err(error) => {
            sink.push(
                used.pos,
                &used.path,
                syntax_message(&error, used.expression),
            );
            return;
        }
    };
    if let Some(statement) = loading_statement(&used.source) {
        let message =
            format!("`{statement}` is not available: a template cannot load other templates");
        sink.push(used.pos, &used.path, message);
    }
    let sorted: BTreeSet<String> = variables.into_iter().collect();
    let mut messages = BTreeSet::new();
    for variable in &sorted {
        if let Err(message) = check_variable(variable, used.field, scope) {
            messages.insert(message);
        }
    }
    for message in messages {
        sink.push(used.pos, &used.path, message);
    }
}

/// The first `include`, `import`, `from` or `extends` statement: the sandbox has no template
/// loader, so these can only fail at run time.
fn loading_statement(source: &str) -> Option<&'static str> {
    const STATEMENTS: [&str; 4] = ["include", "import", "from", "extends"];
    source.match_indices("{%").find_map(|(at, _)| {
        let rest = source[at + 2..].trim_start_matches(['-', '+']).trim_start();
        STATEMENTS.into_iter().find(|statement| {
            rest.strip_prefix(statement)
                .is_some_and(|after| !after.starts_with(|c: char| c.is_alphanumeric() || c == '_'))
        })
    })
}

fn syntax_message(error: &minijinja::Error, expression: bool) -> String {
    let what = if expression { "expression" } else { "template" };
    let detail = error.detail().unwrap_or("invalid syntax");
    match error.line() {
        Some(line) if line > 1 => format!("{what} syntax error: {detail} (line {line})"),
        _ => format!("{what} syntax error: {detail}"),
    }
}

const ROOTS: [&str; 6] = ["params", "steps", "item", "run", "trigger", "wave"];

/// Checks one variable path as the template parser reports it (`params.ip`, `steps.a.output`).
fn check_variable(variable: &str, field: Field, scope: &Scope<'_>) -> Result<(), String> {
    let mut parts = variable.split('.');
    let root = parts.next().unwrap_or_default();
    let next = parts.next();
    if field == Field::ConcurrencyKey && matches!(root, "steps" | "item" | "run" | "wave") {
        return Err(format!(
            "`{root}` is not available in the concurrency key: it is rendered when the run \
             starts, from `params` and `trigger`"
        ));
    }
    match root {
        "params" => check_param(next, scope),
        "steps" => check_step(next, parts.next(), field, scope),
        "item" => check_item(field, scope),
        "wave" if field == Field::Health => Ok(()),
        "wave" => Err("`wave` is only defined in `waves.health.with`".to_string()),
        "run" => match next {
            None | Some("id") => Ok(()),
            Some(other) => Err(format!(
                "unknown variable `run.{other}` (templates see `run.id`)"
            )),
        },
        "trigger" => Ok(()),
        _ if scope.globals.contains(root) => Ok(()),
        _ => Err(yaml::unknown_message("variable", root, &ROOTS)),
    }
}

fn check_param(name: Option<&str>, scope: &Scope<'_>) -> Result<(), String> {
    match name {
        Some(name) if !scope.params.contains(name) => {
            let known: Vec<&str> = scope.params.iter().map(String::as_str).collect();
            Err(yaml::unknown_message("param", name, &known))
        }
        _ => Ok(()),
    }
}

fn check_step(
    id: Option<&str>,
    part: Option<&str>,
    field: Field,
    scope: &Scope<'_>,
) -> Result<(), String> {
    // `steps` alone (`steps['a-b']`, `steps | tojson`) cannot be checked before the run.
    let Some(id) = id else {
        return Ok(());
    };
    let Some(index) = scope.steps.get(id) else {
        let known: Vec<&str> = scope.steps.keys().map(String::as_str).collect();
        let mut known = known;
        known.sort_unstable();
        return Err(yaml::unknown_message("step", id, &known));
    };
    let own = matches!(field, Field::Undo | Field::Grant) && scope.own == Some(*index);
    if !scope.ready.contains(index) && !own {
        return Err(format!(
            "step `{id}` is not among this step's needs (directly or through them), \
             so it may not have run yet"
        ));
    }
    match part {
        None | Some("output" | "status") => Ok(()),
        Some(other) => Err(format!(
            "unknown variable `steps.{id}.{other}` (a step has `output` and `status`)"
        )),
    }
}

fn check_item(field: Field, scope: &Scope<'_>) -> Result<(), String> {
    match field {
        Field::With | Field::Labels | Field::Undo | Field::Grant if scope.for_each => Ok(()),
        Field::With | Field::Labels | Field::Undo | Field::Grant | Field::Sleep | Field::Until => {
            Err("`item` is only defined in steps with `for_each`".to_string())
        }
        Field::Health => Err(
            "`item` is not defined in `waves.health`: the gate runs once per wave, not per item"
                .to_string(),
        ),
        Field::When | Field::ForEach | Field::ConcurrencyKey => Err(
            "`item` is only defined in `with`, `labels`, `undo` and `grant`, once per item"
                .to_string(),
        ),
    }
}

/// Expression source for a literal YAML value in a `for_each` list: data as literals, and a
/// string that is exactly one `{{ expr }}` as that expression.
pub(crate) fn literal_source(value: &Value) -> String {
    match value {
        Value::Null => "none".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => match classify(s) {
            Leaf::Expression(expression) => format!("({expression})"),
            Leaf::Literal | Leaf::Template => Value::String(s.clone()).to_string(),
        },
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(literal_source).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let entries: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), literal_source(v)))
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_tells_literal_expression_and_template() {
        assert_eq!(classify("hello"), Leaf::Literal);
        assert_eq!(classify("{{ params.ip }}"), Leaf::Expression("params.ip"));
        assert_eq!(classify("{{- item -}}"), Leaf::Expression("item"));
        assert_eq!(classify("hello {{ params.ip }}"), Leaf::Template);
        assert_eq!(classify("{{ a }}{{ b }}"), Leaf::Template);
        assert_eq!(classify(" {{ a }}"), Leaf::Template);
        assert_eq!(classify("{% if a %}x{% endif %}"), Leaf::Template);
    }

    #[test]
    fn loading_statements_are_found() {
        assert_eq!(loading_statement("{% include 'a' %}"), Some("include"));
        assert_eq!(
            loading_statement("x {%- from 'a' import b %}"),
            Some("from")
        );
        assert_eq!(loading_statement("{% for x in y %}{% endfor %}"), None);
        assert_eq!(loading_statement("{% set imported = 1 %}"), None);
    }

    #[test]
    fn expression_source_strips_braces() {
        assert_eq!(expression_source("{{ a == 1 }}"), Ok("a == 1"));
        assert_eq!(expression_source(" a == 1 "), Ok("a == 1"));
        assert!(expression_source("{{ a }} and {{ b }}").is_err());
    }

    #[test]
    fn literal_source_is_a_template_literal() {
        let value = serde_json::json!(["a", 1, true, null, "{{ params.x }}", {"k": "v\"q"}]);
        assert_eq!(
            literal_source(&value),
            r#"["a", 1, true, none, (params.x), {"k": "v\"q"}]"#
        );
    }
}
