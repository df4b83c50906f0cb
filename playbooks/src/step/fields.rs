//! Readers of a step's own fields: `when`, `for_each` with its `concurrency`, `retry`,
//! `timeout` and durations, and `labels`.

use super::*;

pub(super) fn read_when(
    fields: &Fields<'_>,
    uses: &mut Vec<Use>,
    sink: &mut Sink,
) -> Option<String> {
    let node = fields.get("when")?;
    let path = fields.path_of("when");
    let expression = read_expression(node, &path, sink)?;
    uses.push(expression_use(&expression, Field::When, node, &path));
    Some(expression)
}

pub(super) fn read_for_each(
    fields: &Fields<'_>,
    uses: &mut Vec<Use>,
    sink: &mut Sink,
) -> Option<ForEach> {
    let concurrency = read_concurrency(fields, sink);
    let node = fields.get("for_each")?;
    let path = fields.path_of("for_each");
    let items = match node {
        Node::Sequence(list) => read_literal_items(node, list, &path, uses, sink)?,
        Node::Scalar(_) => {
            let expression = read_expression(node, &path, sink)?;
            uses.push(expression_use(&expression, Field::ForEach, node, &path));
            expression
        }
        Node::Mapping(_) => {
            let message = format!(
                "expected an expression or a list, found {}",
                yaml::describe(node)
            );
            sink.push(yaml::pos(node), &path, message);
            return None;
        }
    };
    Some(ForEach {
        items,
        concurrency: concurrency.unwrap_or(limits::FOR_EACH_CONCURRENCY_DEFAULT),
    })
}

pub(super) fn read_concurrency(fields: &Fields<'_>, sink: &mut Sink) -> Option<u32> {
    let node = fields.get("concurrency")?;
    let path = fields.path_of("concurrency");
    if fields.get("for_each").is_none() {
        sink.push(
            yaml::pos(node),
            &path,
            "`concurrency` applies only to steps with `for_each`",
        );
        return None;
    }
    let max = i64::from(limits::FOR_EACH_CONCURRENCY_MAX);
    let value = yaml::expect_int(node, &path, 1..=max, sink)?;
    u32::try_from(value).ok()
}

/// A literal list becomes expression source; a string item that is exactly one `{{ expr }}`
/// is that expression, other items are data.
pub(super) fn read_literal_items(
    node: &Node,
    list: &marked_yaml::types::MarkedSequenceNode,
    path: &str,
    uses: &mut Vec<Use>,
    sink: &mut Sink,
) -> Option<String> {
    if list.len() > limits::FOR_EACH_ITEMS_MAX {
        let message = format!(
            "{} items, more than the {} allowed",
            list.len(),
            limits::FOR_EACH_ITEMS_MAX
        );
        sink.push(yaml::pos(node), path, message);
        return None;
    }
    let before = uses.len();
    collect_uses(node, path, Field::ForEach, uses);
    let mut valid = true;
    for used in uses.iter().skip(before).filter(|u| !u.expression) {
        let message = "an item of a literal list is data: a template item must be exactly one \
                       `{{ expression }}`";
        sink.push(used.pos, &used.path, message);
        valid = false;
    }
    valid.then(|| template::literal_source(&yaml::to_json(node)))
}

pub(super) fn read_retry(fields: &Fields<'_>, sink: &mut Sink) -> Option<RetryPolicy> {
    let node = fields.get("retry")?;
    let path = fields.path_of("retry");
    let retry = Fields::new(node, &path, &RETRY_FIELDS, sink)?;
    let attempts_max = i64::from(limits::RETRY_ATTEMPTS_MAX);
    let attempts = retry
        .require("attempts", sink)
        .and_then(|n| yaml::expect_int(n, &retry.path_of("attempts"), 1..=attempts_max, sink));
    let backoff = match retry.get("backoff") {
        Some(node) => read_backoff(node, &retry.path_of("backoff"), sink),
        None => Some(Backoff::Exponential),
    };
    let delay = |name: &str, sink: &mut Sink| {
        let node = retry.get(name)?;
        read_duration(
            node,
            &retry.path_of(name),
            0..=limits::RETRY_DELAY_MS_MAX,
            sink,
        )
    };
    let initial_ms = delay("initial", sink);
    let max_ms = delay("max", sink);
    let (attempts, backoff) = (u32::try_from(attempts?).ok()?, backoff?);
    let initial_ms = match (retry.get("initial"), initial_ms) {
        (Some(_), None) => return None,
        (_, initial_ms) => initial_ms.unwrap_or(limits::RETRY_INITIAL_MS_DEFAULT),
    };
    let max_ms = read_retry_max(&retry, backoff, initial_ms, max_ms, sink)?;
    Some(RetryPolicy {
        attempts,
        backoff,
        initial_ms,
        max_ms,
    })
}

/// `max` bounds an exponential backoff; a fixed backoff waits `initial` every time.
pub(super) fn read_retry_max(
    retry: &Fields<'_>,
    backoff: Backoff,
    initial_ms: u64,
    max_ms: Option<u64>,
    sink: &mut Sink,
) -> Option<u64> {
    let node = retry.get("max");
    let path = retry.path_of("max");
    match (backoff, node, max_ms) {
        (_, Some(_), None) => None,
        (Backoff::Fixed, Some(node), Some(_)) => {
            sink.push(
                yaml::pos(node),
                &path,
                "`max` applies only to exponential backoff",
            );
            None
        }
        (Backoff::Fixed, None, _) => Some(initial_ms),
        (Backoff::Exponential, Some(node), Some(max_ms)) if max_ms < initial_ms => {
            let message = format!(
                "max {} is shorter than initial {}",
                duration::format_ms(max_ms),
                duration::format_ms(initial_ms)
            );
            sink.push(yaml::pos(node), &path, message);
            None
        }
        (Backoff::Exponential, _, Some(max_ms)) => Some(max_ms),
        (Backoff::Exponential, _, None) => Some(limits::RETRY_MAX_MS_DEFAULT.max(initial_ms)),
    }
}

pub(super) fn read_backoff(node: &Node, path: &str, sink: &mut Sink) -> Option<Backoff> {
    match yaml::expect_string(node, path, sink)? {
        "fixed" => Some(Backoff::Fixed),
        "exponential" => Some(Backoff::Exponential),
        other => {
            let message = yaml::unknown_message("backoff", other, &["fixed", "exponential"]);
            sink.push(yaml::pos(node), path, message);
            None
        }
    }
}

pub(super) fn read_timeout(fields: &Fields<'_>, sink: &mut Sink) -> u64 {
    let Some(node) = fields.get("timeout") else {
        return limits::TIMEOUT_MS_DEFAULT;
    };
    let path = fields.path_of("timeout");
    read_duration(node, &path, 1..=limits::TIMEOUT_MS_MAX, sink)
        .unwrap_or(limits::TIMEOUT_MS_DEFAULT)
}

/// Duration text whose milliseconds are within `allowed`.
pub(crate) fn read_duration(
    node: &Node,
    path: &str,
    allowed: RangeInclusive<u64>,
    sink: &mut Sink,
) -> Option<u64> {
    let Some(text) = node
        .as_scalar()
        .filter(|s| !yaml::is_null(s))
        .map(|s| s.as_str())
    else {
        let message = format!(
            "expected a duration like `30s`, found {}",
            yaml::describe(node)
        );
        sink.push(yaml::pos(node), path, message);
        return None;
    };
    match check_duration(text, allowed) {
        Ok(ms) => Some(ms),
        Err(message) => {
            sink.push(yaml::pos(node), path, message);
            None
        }
    }
}

/// Parses duration text and checks that its milliseconds are within `allowed`.
pub(crate) fn check_duration(text: &str, allowed: RangeInclusive<u64>) -> Result<u64, String> {
    let ms = duration::parse_ms(text).map_err(|e| e.to_string())?;
    let text = text.trim();
    if ms < *allowed.start() {
        let shortest = duration::format_ms(*allowed.start());
        return Err(match ms {
            0 => format!("must be longer than zero, found `{text}`"),
            _ => format!("must be at least {shortest}, found `{text}`"),
        });
    }
    if ms > *allowed.end() {
        let longest = duration::format_ms(*allowed.end());
        return Err(format!("must be at most {longest}, found `{text}`"));
    }
    Ok(ms)
}

pub(super) fn read_labels(
    fields: &Fields<'_>,
    uses: &mut Vec<Use>,
    sink: &mut Sink,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let Some(node) = fields.get("labels") else {
        return labels;
    };
    let path = fields.path_of("labels");
    let Some(map) = yaml::expect_mapping(node, &path, sink) else {
        return labels;
    };
    if map.len() > limits::LABELS_MAX {
        let message = format!(
            "{} labels, more than the {} allowed",
            map.len(),
            limits::LABELS_MAX
        );
        sink.push(yaml::pos(node), &path, message);
    }
    for (key, value) in map.iter() {
        let value_path = yaml::join(&path, key.as_str());
        let valid_key = check_label_key(key, &value_path, sink);
        let Some(text) = yaml::expect_string(value, &value_path, sink) else {
            continue;
        };
        if let Leaf::Expression(_) | Leaf::Template = template::classify(text) {
            uses.extend(Use::leaf(
                text,
                Field::Labels,
                yaml::pos(value),
                &value_path,
            ));
        }
        if valid_key {
            labels.insert(key.as_str().to_string(), text.to_string());
        }
    }
    labels
}

/// Label keys: `[a-z0-9][a-z0-9_.-]*`, at most [`limits::NAME_BYTES_MAX`] bytes.
pub(super) fn check_label_key(
    key: &marked_yaml::types::MarkedScalarNode,
    path: &str,
    sink: &mut Sink,
) -> bool {
    let text = key.as_str();
    let valid = text.len() <= limits::NAME_BYTES_MAX
        && text
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && text.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        });
    if !valid {
        let message = format!(
            "invalid label `{}`: use lowercase letters, digits, `_`, `.` and `-`, starting with \
             a letter or digit, at most {} bytes",
            yaml::shorten(text),
            limits::NAME_BYTES_MAX
        );
        sink.push(yaml::scalar_pos(key), path, message);
    }
    valid
}
