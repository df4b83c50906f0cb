//! `compile`: YAML source to a validated [`Playbook`], or every problem found.
//!
//! Reading goes field by field and never stops at the first problem; the checks that need the
//! whole playbook (needs, cycles, template references) run once every step is read.

use std::collections::{BTreeSet, HashMap};

use marked_yaml::Node;

use crate::diagnostic::{Diagnostic, Sink};
use crate::graph;
use crate::limits;
use crate::model::{ConcurrencyKey, ConcurrencyPolicy, ParamSpec, Playbook, Step};
use crate::params;
use crate::render;
use crate::step::{self, Draft};
use crate::template::{self, Field, Scope, Use};
use crate::yaml::{self, Fields};

const FIELDS: [&str; 7] = [
    "name",
    "version",
    "description",
    "params",
    "concurrency",
    "timeout",
    "steps",
];
const CONCURRENCY_FIELDS: [&str; 3] = ["key", "limit", "policy"];
const POLICIES: [&str; 3] = ["queue", "drop", "replace"];

/// Parses and validates a playbook. On error, returns every problem, in source order.
///
/// On success `steps` is in a topological order (declaration order where the needs allow it)
/// and `needs` are indices into it.
pub fn compile(source: &str) -> Result<Playbook, Vec<Diagnostic>> {
    let mut sink = Sink::default();
    let playbook = yaml::load(source, &mut sink).and_then(|root| build(&root, &mut sink));
    match playbook {
        Some(playbook) if sink.is_empty() => Ok(playbook),
        _ => Err(sink.into_sorted()),
    }
}

fn build(root: &Node, sink: &mut Sink) -> Option<Playbook> {
    let fields = Fields::new(root, "", &FIELDS, sink)?;
    let name = read_name(&fields, sink);
    let version = read_version(&fields, sink);
    let description = match fields.get("description") {
        Some(node) => read_description(node, sink),
        None => String::new(),
    };
    let params = fields
        .get("params")
        .map(|node| params::read(node, sink))
        .unwrap_or_default();
    let mut uses = Vec::new();
    let concurrency = fields
        .get("concurrency")
        .map(|node| read_concurrency(node, &mut uses, sink));
    let timeout_ms = fields.get("timeout").map(|node| {
        let allowed = 1..=limits::RUN_TIMEOUT_MS_MAX;
        step::read_duration(node, "timeout", allowed, sink)
    });
    let drafts = read_steps(&fields, sink);
    let ids = graph::index_ids(drafts.iter().map(|d| d.id.as_deref()));
    check_unique_ids(&drafts, &ids, sink);
    let needs = resolve_needs(&drafts, &ids, sink);
    let order = match graph::order(&needs) {
        Ok(order) => Some(order),
        Err(cycles) => {
            report_cycles(&cycles, &drafts, sink);
            None
        }
    };
    check_templates(&drafts, &params, &ids, &needs, &uses, sink);
    let steps = assemble(drafts, &needs, &order?);
    Some(Playbook {
        name: name?,
        version: version?,
        description,
        params,
        steps,
        // Not given is `None`; given but invalid fails the playbook.
        concurrency: match concurrency {
            Some(read) => Some(read?),
            None => None,
        },
        timeout_ms: match timeout_ms {
            Some(read) => Some(read?),
            None => None,
        },
    })
}

/// `[a-z0-9][a-z0-9-]*`, at most [`limits::NAME_BYTES_MAX`] bytes.
fn read_name(fields: &Fields<'_>, sink: &mut Sink) -> Option<String> {
    let node = fields.require("name", sink)?;
    let name = yaml::expect_string(node, "name", sink)?;
    let valid = name.len() <= limits::NAME_BYTES_MAX
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        let message = format!(
            "invalid playbook name `{}`: use lowercase letters, digits and `-`, starting with \
             a letter or digit, at most {} bytes",
            yaml::shorten(name),
            limits::NAME_BYTES_MAX
        );
        sink.push(yaml::pos(node), "name", message);
        return None;
    }
    Some(name.to_string())
}

fn read_version(fields: &Fields<'_>, sink: &mut Sink) -> Option<u32> {
    let node = fields.require("version", sink)?;
    let version = yaml::expect_int(node, "version", 1..=i64::from(u32::MAX), sink)?;
    u32::try_from(version).ok()
}

fn read_description(node: &Node, sink: &mut Sink) -> String {
    match node.as_scalar() {
        Some(scalar) if yaml::is_null(scalar) => String::new(),
        _ => yaml::expect_string(node, "description", sink)
            .unwrap_or_default()
            .to_string(),
    }
}

/// `concurrency: { key: <template over params and trigger>, limit: 1, policy: queue }`.
fn read_concurrency(node: &Node, uses: &mut Vec<Use>, sink: &mut Sink) -> Option<ConcurrencyKey> {
    if node.as_mapping().is_none() {
        let message = format!(
            "expected a mapping like `{{ key: \"ip:{{{{ params.ip }}}}\" }}`, found {} (a \
             step's `concurrency` bounds its `for_each`)",
            yaml::describe(node)
        );
        sink.push(yaml::pos(node), "concurrency", message);
        return None;
    }
    let fields = Fields::new(node, "concurrency", &CONCURRENCY_FIELDS, sink)?;
    let key = fields.require("key", sink).and_then(|node| {
        let path = fields.path_of("key");
        let key = yaml::expect_string(node, &path, sink)?;
        if key.trim().is_empty() {
            sink.push(yaml::pos(node), &path, "the key must not be empty");
            return None;
        }
        uses.extend(Use::leaf(
            key,
            Field::ConcurrencyKey,
            yaml::pos(node),
            &path,
        ));
        Some(key.to_string())
    });
    let limit = match fields.get("limit") {
        Some(node) => {
            let max = i64::from(limits::RUN_CONCURRENCY_MAX);
            yaml::expect_int(node, &fields.path_of("limit"), 1..=max, sink)
                .and_then(|limit| u32::try_from(limit).ok())
        }
        None => Some(1),
    };
    let policy = match fields.get("policy") {
        Some(node) => read_policy(node, &fields.path_of("policy"), sink),
        None => Some(ConcurrencyPolicy::Queue),
    };
    Some(ConcurrencyKey {
        key: key?,
        limit: limit?,
        policy: policy?,
    })
}

fn read_policy(node: &Node, path: &str, sink: &mut Sink) -> Option<ConcurrencyPolicy> {
    match yaml::expect_string(node, path, sink)? {
        "queue" => Some(ConcurrencyPolicy::Queue),
        "drop" => Some(ConcurrencyPolicy::Drop),
        "replace" => Some(ConcurrencyPolicy::Replace),
        other => {
            let message = yaml::unknown_message("policy", other, &POLICIES);
            sink.push(yaml::pos(node), path, message);
            None
        }
    }
}

fn read_steps(fields: &Fields<'_>, sink: &mut Sink) -> Vec<Draft> {
    let Some(node) = fields.require("steps", sink) else {
        return Vec::new();
    };
    let Some(list) = yaml::expect_sequence(node, "steps", sink) else {
        return Vec::new();
    };
    if list.is_empty() {
        sink.push(
            yaml::pos(node),
            "steps",
            "a playbook needs at least one step",
        );
    }
    if list.len() > limits::STEPS_MAX {
        let message = format!(
            "{} steps, more than the {} allowed",
            list.len(),
            limits::STEPS_MAX
        );
        sink.push(yaml::pos(node), "steps", message);
        // The playbook-wide checks grow with the square of the step count: skip them.
        return Vec::new();
    }
    list.iter()
        .enumerate()
        .map(|(index, node)| step::read(node, index, sink))
        .collect()
}

fn check_unique_ids(drafts: &[Draft], ids: &HashMap<String, usize>, sink: &mut Sink) {
    for (index, draft) in drafts.iter().enumerate() {
        let Some(id) = &draft.id else { continue };
        let Some(&first) = ids.get(id) else { continue };
        if first != index {
            let at = drafts[first].id_pos;
            let message = format!(
                "duplicate step id `{id}` (first at {}:{})",
                at.line, at.column
            );
            sink.push(draft.id_pos, &yaml::join(&draft.path, "id"), message);
        }
    }
}

/// Each step's needs as declaration indices; unknown, self and repeated needs are reported
/// and left out.
fn resolve_needs(
    drafts: &[Draft],
    ids: &HashMap<String, usize>,
    sink: &mut Sink,
) -> Vec<Vec<usize>> {
    let mut known: Vec<&str> = ids.keys().map(String::as_str).collect();
    known.sort_unstable();
    drafts
        .iter()
        .enumerate()
        .map(|(index, draft)| {
            let mut resolved = Vec::new();
            for need in &draft.needs {
                match ids.get(&need.id) {
                    None => sink.push(
                        need.pos,
                        &need.path,
                        yaml::unknown_message("step", &need.id, &known),
                    ),
                    Some(&target) if target == index => {
                        sink.push(
                            need.pos,
                            &need.path,
                            format!("step `{}` needs itself", need.id),
                        );
                    }
                    Some(target) if resolved.contains(target) => {
                        sink.push(
                            need.pos,
                            &need.path,
                            format!("`{}` is listed twice", need.id),
                        );
                    }
                    Some(&target) => resolved.push(target),
                }
            }
            resolved
        })
        .collect()
}

/// One diagnostic per cycle, at the first step's need of the second.
fn report_cycles(cycles: &[graph::Cycle], drafts: &[Draft], sink: &mut Sink) {
    for cycle in cycles {
        let name = |index: usize| drafts[index].id.clone().unwrap_or_default();
        let mut names: Vec<String> = cycle.iter().map(|&s| name(s)).collect();
        names.push(name(cycle[0]));
        let message = format!(
            "dependency cycle: {} (each step needs the next)",
            names.join(" -> ")
        );
        let first = &drafts[cycle[0]];
        let second = &names[1];
        let (pos, path) = first
            .needs
            .iter()
            .find(|need| &need.id == second)
            .map_or((first.id_pos, first.path.clone()), |need| {
                (need.pos, need.path.clone())
            });
        sink.push(pos, &path, message);
    }
}

/// Checks every template: the playbook's own (`playbook_uses`, which see no step) and each
/// step's.
fn check_templates(
    drafts: &[Draft],
    params: &[ParamSpec],
    ids: &HashMap<String, usize>,
    needs: &[Vec<usize>],
    playbook_uses: &[Use],
    sink: &mut Sink,
) {
    let env = render::environment();
    let params: BTreeSet<String> = params.iter().map(|p| p.name.clone()).collect();
    let ancestors = graph::ancestors(needs);
    let globals = template::globals(&env);
    let scope = Scope {
        params: &params,
        steps: &HashMap::new(),
        ready: &BTreeSet::new(),
        own: None,
        for_each: false,
        globals: &globals,
    };
    for used in playbook_uses {
        template::check(&env, used, &scope, sink);
    }
    for (index, draft) in drafts.iter().enumerate() {
        let scope = Scope {
            params: &params,
            steps: ids,
            ready: &ancestors[index],
            own: Some(index),
            for_each: draft.for_each.is_some(),
            globals: &globals,
        };
        for used in &draft.uses {
            template::check(&env, used, &scope, sink);
        }
    }
}

/// The steps in `order`, with needs renumbered to positions in it.
fn assemble(drafts: Vec<Draft>, needs: &[Vec<usize>], order: &[usize]) -> Vec<Step> {
    let mut position = vec![0; drafts.len()];
    for (at, &declared) in order.iter().enumerate() {
        position[declared] = at;
    }
    let mut drafts: Vec<Option<Draft>> = drafts.into_iter().map(Some).collect();
    order
        .iter()
        .filter_map(|&declared| {
            let draft = drafts[declared].take()?;
            Some(Step {
                id: draft.id.unwrap_or_default(),
                action: draft.action,
                with: draft.with,
                needs: needs[declared].iter().map(|&n| position[n]).collect(),
                when: draft.when,
                for_each: draft.for_each,
                retry: draft.retry,
                timeout_ms: draft.timeout_ms,
                schedule_to_start_ms: draft.schedule_to_start_ms,
                continue_on_failure: draft.continue_on_failure,
                labels: draft.labels,
                kind: draft.kind,
                approval: draft.approval,
                undo: draft.undo,
                grant: draft.grant,
                waves: draft.waves,
            })
        })
        .collect()
}
