//! Evaluating a playbook's templates for one run: a step's `when`, `for_each` items, input and
//! labels, and the other templates the orchestrator renders when it needs them (a sleep's
//! duration, an `until` time, an undo's input, a grant's TTL, a health gate's input, the
//! concurrency key).
//!
//! The environment is a sandbox: no template loader (so no include, import or extends), strict
//! undefined (a missing variable is an error, not an empty string), a fuel budget per
//! evaluation (a hostile loop stops), a recursion limit, and no `namespace()` (without mutable
//! state a template cannot build values nested deep enough to exhaust the stack). Run data
//! (params, trigger, step outputs) is passed as values and never compiled as a template.

use std::collections::BTreeMap;

use minijinja::value::ValueKind;
use minijinja::{Environment, ErrorKind, UndefinedBehavior};
use serde_json::Value;

use crate::limits;
use crate::model::Step;
use crate::template::{self, Leaf};

mod compiled;

use compiled::Compiling;

/// The template environment shared by validation and rendering, so both read templates alike.
pub(crate) fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(limits::RENDER_FUEL_MAX));
    env.set_recursion_limit(limits::RENDER_RECURSION_MAX);
    env.remove_global("namespace");
    env.remove_global("debug");
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build();
    if let Ok(syntax) = syntax {
        env.set_syntax(syntax);
    }
    env
}

/// What templates can see during one run.
///
/// `steps` maps a step id to `{"status": "succeeded" | "skipped" | ..., "output": <json or null>}`
/// for the steps that have finished.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Seen as `run.id`.
    pub run_id: &'a str,
    /// The run's coerced params (an object), seen as `params`.
    pub params: &'a Value,
    /// Seen as `steps`.
    pub steps: &'a serde_json::Map<String, Value>,
    /// The alert or other data that started the run; arbitrary JSON, `null` when none.
    pub trigger: &'a Value,
}

/// A template failed to compile or evaluate. The message names the step and the field
/// (`with.<key>`, `when`, `for_each`, `labels.<key>`), or what the caller named (see
/// [`Renderer::text`]); from [`Renderer::check`] and [`Renderer::scope`] it is the problem
/// alone, placed by the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RenderError {
    /// ``step `<id>`: <field>: <problem>``, or ``<what>: <problem>``.
    pub message: String,
}

impl RenderError {
    fn new(step: &Step, field: &str, problem: impl std::fmt::Display) -> RenderError {
        RenderError::at(format_args!("step `{}`: {field}", step.id), problem)
    }

    fn bare(problem: impl std::fmt::Display) -> RenderError {
        RenderError {
            message: problem.to_string(),
        }
    }

    fn at(what: impl std::fmt::Display, problem: impl std::fmt::Display) -> RenderError {
        RenderError {
            message: format!("{what}: {problem}"),
        }
    }
}

/// Names the renderer binds itself; [`Renderer::tree`]'s `vars` must not reuse them.
const ROOT_NAMES: [&str; 5] = ["params", "steps", "run", "trigger", "item"];

/// Evaluates step templates. Build once and share: it is `Send + Sync`.
#[derive(Debug)]
pub struct Renderer {
    env: Compiling,
}

impl Default for Renderer {
    fn default() -> Self {
        Renderer::new()
    }
}

/// Variables converted to template values once (see [`Renderer::scope`]): an alert rule's
/// match, params and dedup key are evaluated over one alert without converting it each time.
#[derive(Debug, Clone)]
pub struct Scope(minijinja::Value);

impl Renderer {
    /// A renderer with the sandboxed environment.
    pub fn new() -> Renderer {
        Renderer {
            env: Compiling::new(environment()),
        }
    }

    /// `step.when`, truthy per the template language; a step without `when` runs.
    pub fn when(&self, step: &Step, ctx: &Context<'_>) -> Result<bool, RenderError> {
        let Some(expression) = &step.when else {
            return Ok(true);
        };
        let root = root(ctx, None, &[]).map_err(|e| RenderError::new(step, "when", e))?;
        let value = self
            .eval(expression, root)
            .map_err(|e| RenderError::new(step, "when", e))?;
        Ok(value.is_true())
    }

    /// `step.for_each.items` evaluated to a list of at most [`limits::FOR_EACH_ITEMS_MAX`].
    pub fn items(&self, step: &Step, ctx: &Context<'_>) -> Result<Vec<Value>, RenderError> {
        let fail = |e: String| RenderError::new(step, "for_each", e);
        let Some(for_each) = &step.for_each else {
            return Err(fail("the step has no for_each".to_string()));
        };
        let root = root(ctx, None, &[]).map_err(fail)?;
        let value = self.eval(&for_each.items, root).map_err(fail)?;
        if !matches!(value.kind(), ValueKind::Seq | ValueKind::Iterable) {
            return Err(fail(format!("expected a list, found {}", describe(&value))));
        }
        let iter = value.try_iter().map_err(|e| fail(error_text(&e)))?;
        let mut items = Vec::new();
        for item in iter {
            if items.len() == limits::FOR_EACH_ITEMS_MAX {
                return Err(fail(format!(
                    "more than the {} items allowed",
                    limits::FOR_EACH_ITEMS_MAX
                )));
            }
            items.push(to_json(&item, 0).map_err(fail)?);
        }
        Ok(items)
    }

    /// Renders `step.with`: string leaves are templates; a leaf that is exactly one
    /// `{{ expr }}` keeps the expression's type. `item` is bound when given.
    pub fn input(
        &self,
        step: &Step,
        ctx: &Context<'_>,
        item: Option<&Value>,
    ) -> Result<Value, RenderError> {
        let what = format!("step `{}`: with", step.id);
        self.tree(&what, &step.with, ctx, item, &[])
    }

    /// Renders one text template to a string: a sleep's duration, an `until` time, a grant's
    /// `ttl` or `subject`, the playbook's concurrency key. Text without template syntax is
    /// returned as is. `what` names the template in errors, e.g. "step `wait`: sleep"; `item`
    /// is bound when given.
    ///
    /// The text is not interpreted: [`crate::parse_duration_ms`] and
    /// [`crate::parse_timestamp_ms`] read it, and the caller checks it against the limits.
    pub fn text(
        &self,
        what: &str,
        template: &str,
        ctx: &Context<'_>,
        item: Option<&Value>,
    ) -> Result<String, RenderError> {
        if let Leaf::Literal = template::classify(template) {
            return Ok(template.to_string());
        }
        let root = root(ctx, item, &[]).map_err(|e| RenderError::at(what, e))?;
        self.render(template, root)
            .map_err(|e| RenderError::at(what, e))
    }

    /// Renders a template tree like `with` (an undo's `with`, a health gate's `with`): string
    /// leaves are templates, a leaf that is exactly one `{{ expr }}` keeps its type, and the
    /// result is at most [`limits::RENDERED_BYTES_MAX`] bytes of JSON. `item` is bound when
    /// given, and `vars` binds more names (e.g. `("wave", json!(2))` for a health gate).
    ///
    /// `what` names the tree in errors, e.g. "step `block`: undo.with"; a leaf's error adds
    /// its path (`step `block`: undo.with.ip: ...`). The names in `vars` must differ from
    /// those the renderer binds (`params`, `steps`, `run`, `trigger`, `item`).
    pub fn tree(
        &self,
        what: &str,
        tree: &Value,
        ctx: &Context<'_>,
        item: Option<&Value>,
        vars: &[(&str, Value)],
    ) -> Result<Value, RenderError> {
        debug_assert!(
            vars.iter().all(|(name, _)| !ROOT_NAMES.contains(name)),
            "vars rebind a name the renderer binds"
        );
        let vars: Vec<(&str, &Value)> = vars.iter().map(|(name, value)| (*name, value)).collect();
        let root = root(ctx, item, &vars).map_err(|e| RenderError::at(what, e))?;
        self.tree_in(what, tree, &Scope(root))
    }

    /// Like [`Renderer::tree`], over a [`Scope`] built once. `what` is written out only
    /// in an error.
    pub fn tree_in(
        &self,
        what: impl std::fmt::Display,
        tree: &Value,
        scope: &Scope,
    ) -> Result<Value, RenderError> {
        within_rendered_max(what, |path| self.render_tree(tree, path, &scope.0))
    }

    /// Like [`Renderer::tree_in`] over a mapping (an alert rule's `params`), without making
    /// it a tree first.
    pub fn map_in(
        &self,
        what: impl std::fmt::Display,
        map: &serde_json::Map<String, Value>,
        scope: &Scope,
    ) -> Result<serde_json::Map<String, Value>, RenderError> {
        within_rendered_max(what, |path| self.render_map(map, path, &scope.0))
    }

    /// Like [`Renderer::tree_in`] over a tree that is one string leaf (an alert rule's dedup
    /// key), without making it a tree first.
    pub fn leaf_in(
        &self,
        what: impl std::fmt::Display,
        source: &str,
        scope: &Scope,
    ) -> Result<Value, RenderError> {
        within_rendered_max(what, |path| self.render_leaf(source, path, &scope.0))
    }

    /// Evaluates a boolean expression (e.g. an alert rule's `match`) over `vars` alone,
    /// truthy per the template language. The data in `vars` is passed as values, never
    /// compiled. `what` names the expression in errors.
    pub fn condition(
        &self,
        what: &str,
        expression: &str,
        vars: &[(&str, Value)],
    ) -> Result<bool, RenderError> {
        let vars: Vec<(&str, &Value)> = vars.iter().map(|(name, value)| (*name, value)).collect();
        let scope = self
            .scope(&vars)
            .map_err(|e| RenderError::at(what, e.message))?;
        self.condition_in(what, expression, &scope)
    }

    /// `vars` alone (no params, steps or trigger) converted to template values once, to
    /// evaluate many expressions and templates over them.
    pub fn scope(&self, vars: &[(&str, &Value)]) -> Result<Scope, RenderError> {
        let steps = serde_json::Map::new();
        let ctx = Context {
            run_id: "",
            params: &Value::Null,
            steps: &steps,
            trigger: &Value::Null,
        };
        root(&ctx, None, vars).map(Scope).map_err(RenderError::bare)
    }

    /// Like [`Renderer::condition`], over a [`Scope`] built once.
    pub fn condition_in(
        &self,
        what: impl std::fmt::Display,
        expression: &str,
        scope: &Scope,
    ) -> Result<bool, RenderError> {
        let value = self
            .eval(expression, scope.0.clone())
            .map_err(|e| RenderError::at(what, e))?;
        Ok(value.is_true())
    }

    /// Whether an expression or a template compiles (its names are not looked up).
    pub fn check(&self, source: &str, expression: bool) -> Result<(), RenderError> {
        let env = self.env.env();
        let checked = if expression {
            env.compile_expression(source).map(|_| ())
        } else {
            env.template_from_str(source).map(|_| ())
        };
        checked.map_err(|e| RenderError::bare(error_text(&e)))
    }

    /// Renders the values of `step.labels` to strings. `item` is bound when given.
    pub fn labels(
        &self,
        step: &Step,
        ctx: &Context<'_>,
        item: Option<&Value>,
    ) -> Result<BTreeMap<String, String>, RenderError> {
        let root = root(ctx, item, &[]).map_err(|e| RenderError::new(step, "labels", e))?;
        let mut labels = BTreeMap::new();
        for (key, source) in &step.labels {
            let field = format!("labels.{key}");
            let value = match template::classify(source) {
                Leaf::Literal => source.clone(),
                Leaf::Expression(_) | Leaf::Template => self
                    .render(source, root.clone())
                    .map_err(|e| RenderError::new(step, &field, e))?,
            };
            // A label that renders empty requires nothing (`host: "{{ item.host or '' }}"`).
            if !value.is_empty() {
                labels.insert(key.clone(), value);
            }
        }
        Ok(labels)
    }

    /// Renders every string leaf of `value`; `path` names the value in errors.
    fn render_tree(
        &self,
        value: &Value,
        path: Path<'_>,
        root: &minijinja::Value,
    ) -> Result<Value, RenderError> {
        match value {
            Value::String(source) => self.render_leaf(source, path, root),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| self.render_tree(v, Path::Index(&path, i), root))
                .collect::<Result<_, _>>()
                .map(Value::Array),
            Value::Object(map) => self.render_map(map, path, root).map(Value::Object),
            other => Ok(other.clone()),
        }
    }

    fn render_map(
        &self,
        map: &serde_json::Map<String, Value>,
        path: Path<'_>,
        root: &minijinja::Value,
    ) -> Result<serde_json::Map<String, Value>, RenderError> {
        map.iter()
            .map(|(k, v)| {
                let rendered = self.render_tree(v, Path::Key(&path, k), root)?;
                Ok((k.clone(), rendered))
            })
            .collect()
    }

    fn render_leaf(
        &self,
        source: &str,
        path: Path<'_>,
        root: &minijinja::Value,
    ) -> Result<Value, RenderError> {
        let fail = |e: String| RenderError::at(path, e);
        match template::classify(source) {
            Leaf::Literal => Ok(Value::String(source.to_string())),
            Leaf::Expression(expression) => {
                let value = self.eval(expression, root.clone()).map_err(fail)?;
                to_json(&value, 0).map_err(fail)
            }
            Leaf::Template => self
                .render(source, root.clone())
                .map(Value::String)
                .map_err(fail),
        }
    }

    /// Evaluates an expression, compiled once ([`compiled`]); an undefined result is an error.
    fn eval(&self, expression: &str, root: minijinja::Value) -> Result<minijinja::Value, String> {
        let value = self
            .env
            .eval(expression, root)
            .map_err(|e| error_text(&e))?;
        if value.is_undefined() {
            return Err(format!("`{expression}` is undefined"));
        }
        Ok(value)
    }

    /// Renders a text template, compiled once ([`compiled`]), to text of at most
    /// [`limits::RENDERED_BYTES_MAX`].
    fn render(&self, source: &str, root: minijinja::Value) -> Result<String, String> {
        let text = self.env.render(source, root).map_err(|e| error_text(&e))?;
        if text.len() > limits::RENDERED_BYTES_MAX {
            return Err(format!(
                "rendered text is {} bytes, more than the {} allowed",
                text.len(),
                limits::RENDERED_BYTES_MAX
            ));
        }
        Ok(text)
    }
}

/// Where a leaf sits in a tree, for its errors: built as the renderer descends, and written
/// out only when a leaf fails (rules render their params for every alert).
#[derive(Clone, Copy)]
enum Path<'a> {
    Root(&'a dyn std::fmt::Display),
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Path::Root(what) => what.fmt(f),
            Path::Key(path, key) => write!(f, "{path}.{key}"),
            Path::Index(path, index) => write!(f, "{path}[{index}]"),
        }
    }
}

/// What `render` renders from the root named `what`, refused when longer than
/// [`limits::RENDERED_BYTES_MAX`] as JSON.
fn within_rendered_max<T: serde::Serialize>(
    what: impl std::fmt::Display,
    render: impl FnOnce(Path<'_>) -> Result<T, RenderError>,
) -> Result<T, RenderError> {
    let rendered = render(Path::Root(&what))?;
    let size = json_len(&rendered);
    if size > limits::RENDERED_BYTES_MAX {
        let message = format!(
            "rendered input is {size} bytes, more than the {} allowed",
            limits::RENDERED_BYTES_MAX
        );
        return Err(RenderError::at(what, message));
    }
    Ok(rendered)
}

/// The length of `value` as compact JSON, counted without writing it out.
fn json_len(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Counting cannot fail, nor can writing JSON values out (their keys are strings).
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// A template error as one line: what went wrong, without the template dump.
fn error_text(error: &minijinja::Error) -> String {
    let kind = match error.kind() {
        ErrorKind::OutOfFuel => {
            return format!(
                "evaluation ran out of fuel (more than {} steps)",
                limits::RENDER_FUEL_MAX
            );
        }
        kind => kind.to_string(),
    };
    match error.detail() {
        Some(detail) => format!("{kind}: {detail}"),
        None => kind,
    }
}

fn describe(value: &minijinja::Value) -> String {
    match value.kind() {
        ValueKind::String | ValueKind::Number | ValueKind::Bool => {
            format!(
                "the {} `{}`",
                value.kind(),
                crate::yaml::shorten(&value.to_string())
            )
        }
        kind => format!("a {kind}"),
    }
}

/// The variables templates see: `params`, `steps`, `run.id`, `trigger`, `item` when given, and
/// `vars`.
fn root(
    ctx: &Context<'_>,
    item: Option<&Value>,
    vars: &[(&str, &Value)],
) -> Result<minijinja::Value, String> {
    let steps: Result<BTreeMap<String, minijinja::Value>, String> = ctx
        .steps
        .iter()
        .map(|(id, view)| Ok((id.clone(), to_template(view, 1)?)))
        .collect();
    let run = BTreeMap::from([("id".to_string(), minijinja::Value::from(ctx.run_id))]);
    let mut root = BTreeMap::from([
        ("params".to_string(), to_template(ctx.params, 0)?),
        ("steps".to_string(), minijinja::Value::from(steps?)),
        ("run".to_string(), minijinja::Value::from(run)),
        ("trigger".to_string(), to_template(ctx.trigger, 0)?),
    ]);
    if let Some(item) = item {
        root.insert("item".to_string(), to_template(item, 0)?);
    }
    for (name, value) in vars {
        root.insert((*name).to_string(), to_template(value, 0)?);
    }
    Ok(minijinja::Value::from(root))
}

/// JSON to a template value, refusing nesting deeper than [`limits::VALUE_DEPTH_MAX`].
pub(crate) fn to_template(value: &Value, depth: usize) -> Result<minijinja::Value, String> {
    if depth > limits::VALUE_DEPTH_MAX {
        return Err(format!(
            "value nested deeper than {} levels",
            limits::VALUE_DEPTH_MAX
        ));
    }
    Ok(match value {
        Value::Null => minijinja::Value::from(()),
        Value::Bool(b) => minijinja::Value::from(*b),
        Value::Number(n) => number_to_template(n),
        Value::String(s) => minijinja::Value::from(s.as_str()),
        Value::Array(items) => minijinja::Value::from(
            items
                .iter()
                .map(|v| to_template(v, depth + 1))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Value::Object(map) => minijinja::Value::from(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), to_template(v, depth + 1)?)))
                .collect::<Result<BTreeMap<_, _>, String>>()?,
        ),
    })
}

fn number_to_template(n: &serde_json::Number) -> minijinja::Value {
    if let Some(i) = n.as_i64() {
        minijinja::Value::from(i)
    } else if let Some(u) = n.as_u64() {
        minijinja::Value::from(u)
    } else {
        minijinja::Value::from(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// A template value to JSON, refusing undefined values, non-finite numbers, and values nested
/// deeper than [`limits::VALUE_DEPTH_MAX`] or longer than [`limits::RENDERED_BYTES_MAX`].
pub(crate) fn to_json(value: &minijinja::Value, depth: usize) -> Result<Value, String> {
    if depth > limits::VALUE_DEPTH_MAX {
        return Err(format!(
            "value nested deeper than {} levels",
            limits::VALUE_DEPTH_MAX
        ));
    }
    match value.kind() {
        ValueKind::Undefined => Err("undefined value".to_string()),
        ValueKind::None => Ok(Value::Null),
        ValueKind::Bool => Ok(Value::Bool(value.is_true())),
        ValueKind::Number => number_to_json(value),
        ValueKind::String => Ok(Value::String(
            value.as_str().unwrap_or_default().to_string(),
        )),
        ValueKind::Seq | ValueKind::Iterable => {
            let mut items = Vec::new();
            for item in value.try_iter().map_err(|e| error_text(&e))? {
                check_length(items.len())?;
                items.push(to_json(&item, depth + 1)?);
            }
            Ok(Value::Array(items))
        }
        ValueKind::Map => map_to_json(value, depth),
        kind => Err(format!("a {kind} cannot be turned into JSON")),
    }
}

fn check_length(length: usize) -> Result<(), String> {
    if length >= limits::RENDERED_BYTES_MAX {
        return Err(format!(
            "value has more than {} elements",
            limits::RENDERED_BYTES_MAX
        ));
    }
    Ok(())
}

fn number_to_json(value: &minijinja::Value) -> Result<Value, String> {
    if value.is_integer() {
        if let Ok(i) = i64::try_from(value.clone()) {
            return Ok(Value::from(i));
        }
        if let Ok(u) = u64::try_from(value.clone()) {
            return Ok(Value::from(u));
        }
    }
    f64::try_from(value.clone())
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
        .ok_or_else(|| format!("the number `{value}` cannot be turned into JSON"))
}

fn map_to_json(value: &minijinja::Value, depth: usize) -> Result<Value, String> {
    let mut map = serde_json::Map::new();
    for key in value.try_iter().map_err(|e| error_text(&e))? {
        check_length(map.len())?;
        let item = value.get_item(&key).map_err(|e| error_text(&e))?;
        let key = match key.as_str() {
            Some(text) => text.to_string(),
            None => key.to_string(),
        };
        map.insert(key, to_json(&item, depth + 1)?);
    }
    Ok(Value::Object(map))
}
