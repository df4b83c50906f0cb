//! Riposte's playbook language: parse YAML, validate (every diagnostic at once, with line and
//! column), plan the DAG and render templates. Pure: no IO, no async, no clock.
//!
//! Entry points:
//! - [`compile`]: YAML source to a validated [`Playbook`], or every [`Diagnostic`].
//! - [`Playbook::coerce_params`]: checks and types the parameters of a run.
//! - [`Playbook::plan`]: the DAG as stable text, layer by layer.
//! - [`Renderer`]: evaluates `when`, `for_each` and renders `with` and `labels` for one task.
//! - [`actions::CATALOG`]: the actions the language knows.
//!
//! Codemap: `yaml` (source to a positioned tree, with the pre-parse bounds), `compile` (the
//! top level) with `step` and `params` (one reader each), `graph` (order, cycles, ancestors),
//! `template` (how strings are read, and the reference checks), `render` (the sandboxed
//! runtime), `plan` (the text form), `duration`, `limits`, `actions`.

pub mod actions;
mod compile;
mod diagnostic;
mod duration;
mod graph;
pub mod limits;
mod model;
mod params;
mod plan;
mod render;
mod step;
mod template;
mod yaml;

pub use compile::compile;
pub use diagnostic::Diagnostic;
pub use model::*;
pub use render::{Context, RenderError, Renderer};
