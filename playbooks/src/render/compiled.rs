//! Expressions and text templates compiled once, by their source, in the renderer's
//! environment: a rule's match, params and dedup key are evaluated for every alert of a storm,
//! and compiling its expressions again each time was about a third of the rules' cost in a
//! profile of alert ingestion.
//!
//! At most [`COMPILED_MAX`] of each are kept; the others are compiled at each use. A text
//! template is compiled from its own source, never looked up by name, so templates cannot
//! include one another.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use minijinja::{Environment, Expression, Template};

/// The most expressions, and the most text templates, a renderer keeps compiled.
pub(super) const COMPILED_MAX: usize = 1024;

/// The environment, and what is compiled in it.
pub(super) struct Compiling(Cell);

self_cell::self_cell!(
    struct Cell {
        owner: Environment<'static>,
        #[not_covariant]
        dependent: Compiled,
    }
);

struct Compiled<'env> {
    expressions: RwLock<HashMap<String, Expression<'env, 'static>>>,
    templates: RwLock<HashMap<String, OwnedTemplate<'env>>>,
}

/// A text template's source, with the environment it is compiled in.
struct Source<'env> {
    env: &'env Environment<'static>,
    text: Box<str>,
}

type TemplateOf<'a> = Template<'a, 'a>;

self_cell::self_cell!(
    /// A text template compiled from a source it keeps.
    struct OwnedTemplate<'env> {
        owner: Source<'env>,
        #[not_covariant]
        dependent: TemplateOf,
    }
);

impl std::fmt::Debug for Compiling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (expressions, templates) = self.kept();
        f.debug_struct("Compiling")
            .field("expressions", &expressions)
            .field("templates", &templates)
            .finish()
    }
}

impl Compiling {
    pub(super) fn new(env: Environment<'static>) -> Compiling {
        Compiling(Cell::new(env, |_| Compiled {
            expressions: RwLock::default(),
            templates: RwLock::default(),
        }))
    }

    pub(super) fn env(&self) -> &Environment<'static> {
        self.0.borrow_owner()
    }

    /// Evaluates `expression` over `root`, compiling it first unless it is kept.
    pub(super) fn eval(
        &self,
        expression: &str,
        root: minijinja::Value,
    ) -> Result<minijinja::Value, minijinja::Error> {
        self.0.with_dependent(|env, compiled| {
            let known = read(&compiled.expressions);
            if let Some(expr) = known.get(expression) {
                return expr.eval(root);
            }
            drop(known);
            let expr = env.compile_expression_owned(expression.to_string())?;
            let value = expr.eval(root);
            keep(&compiled.expressions, expression, expr);
            value
        })
    }

    /// Renders the text template `source` over `root`, compiling it first unless it is kept.
    pub(super) fn render(
        &self,
        source: &str,
        root: minijinja::Value,
    ) -> Result<String, minijinja::Error> {
        self.0.with_dependent(|env, compiled| {
            let known = read(&compiled.templates);
            if let Some(template) = known.get(source) {
                return template.with_dependent(|_, template| template.render(root));
            }
            drop(known);
            let owned = Source {
                env,
                text: source.into(),
            };
            let template = OwnedTemplate::try_new(owned, |s| s.env.template_from_str(&s.text))?;
            let text = template.with_dependent(|_, template| template.render(root));
            keep(&compiled.templates, source, template);
            text
        })
    }

    /// How many expressions and text templates are kept compiled.
    pub(super) fn kept(&self) -> (usize, usize) {
        self.0.with_dependent(|_, compiled| {
            (
                read(&compiled.expressions).len(),
                read(&compiled.templates).len(),
            )
        })
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Keeps `compiled` under `source` unless [`COMPILED_MAX`] are kept already.
fn keep<T>(kept: &RwLock<HashMap<String, T>>, source: &str, compiled: T) {
    let mut kept = kept.write().unwrap_or_else(PoisonError::into_inner);
    if kept.len() < COMPILED_MAX {
        kept.insert(source.to_string(), compiled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::Renderer;

    #[test]
    fn an_expression_is_compiled_once_evaluated_afresh_and_the_compiled_are_bounded() {
        let renderer = Renderer::new();
        let scope_of = |n: u64| {
            let alert = serde_json::json!({ "n": n });
            renderer.scope(&[("alert", &alert)]).expect("a scope")
        };
        for n in 0..3 {
            let matched = renderer.condition_in("rule", "alert.n == 1", &scope_of(n));
            assert_eq!(matched.expect("evaluates"), n == 1, "alert {n}");
        }
        let scope = scope_of(0);
        for _ in 0..2 {
            let error = renderer
                .condition_in("rule `r`: match", "alert.n ==", &scope)
                .expect_err("does not compile");
            assert!(
                error.message.starts_with("rule `r`: match: syntax error"),
                "{error}"
            );
        }
        for n in 0..COMPILED_MAX + 10 {
            let expression = format!("alert.n + {n} == {n}");
            assert!(
                renderer
                    .condition_in("rule", &expression, &scope)
                    .expect("evaluates")
            );
        }
        assert_eq!(renderer.env.kept().0, COMPILED_MAX);
    }

    #[test]
    fn a_text_template_is_compiled_once_rendered_afresh_and_the_compiled_are_bounded() {
        let renderer = Renderer::new();
        let scope_of = |ip: &str| {
            let alert = serde_json::json!({ "ip": ip });
            renderer.scope(&[("alert", &alert)]).expect("a scope")
        };
        for ip in ["203.0.113.1", "203.0.113.2"] {
            let key = renderer.leaf_in("key", "ip-{{ alert.ip }}", &scope_of(ip));
            assert_eq!(key.expect("renders"), format!("ip-{ip}"));
        }
        assert_eq!(renderer.env.kept().1, 1, "compiled once");
        let scope = scope_of("203.0.113.1");
        let failing = [
            ("ip-{{ alert.ip ", "syntax error"),
            ("ip-{{ alert.nothing }}", "undefined value"),
        ];
        for (template, problem) in failing.iter().chain(&failing) {
            let error = renderer
                .leaf_in("rule `r`: dedup.key", template, &scope)
                .expect_err("fails");
            let expected = format!("rule `r`: dedup.key: {problem}");
            assert!(error.message.starts_with(&expected), "{error}");
        }
        for n in 0..COMPILED_MAX + 10 {
            let key = renderer.leaf_in("key", &format!("{n}-{{{{ alert.ip }}}}"), &scope);
            assert_eq!(key.expect("renders"), format!("{n}-203.0.113.1"));
        }
        assert_eq!(renderer.env.kept().1, COMPILED_MAX);
    }

    #[test]
    fn a_kept_template_cannot_be_included_by_its_source() {
        let renderer = Renderer::new();
        let alert = serde_json::json!({ "ip": "203.0.113.1" });
        let scope = renderer.scope(&[("alert", &alert)]).expect("a scope");
        let kept = "ip-{{ alert.ip }}";
        renderer.leaf_in("key", kept, &scope).expect("renders");
        let including = format!("{{% include '{kept}' %}}");
        let error = renderer
            .leaf_in("key", &including, &scope)
            .expect_err("no template is found by name");
        assert!(error.message.contains("template not found"), "{error}");
    }
}
