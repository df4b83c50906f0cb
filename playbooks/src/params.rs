//! Declared params: reading their specs from YAML, and typing a run's values against them.

use std::collections::BTreeSet;
use std::net::IpAddr;

use marked_yaml::Node;
use serde_json::{Map, Value};

use crate::diagnostic::Sink;
use crate::duration;
use crate::limits;
use crate::model::{ParamSpec, ParamType, Playbook};
use crate::yaml::{self, Fields};

const FIELDS: [&str; 7] = [
    "type",
    "required",
    "default",
    "description",
    "min",
    "max",
    "values",
];
const TYPES: [&str; 8] = [
    "string", "int", "bool", "ip", "cidr", "duration", "list", "enum",
];

impl Playbook {
    /// Checks and types a run's params: applies defaults, rejects unknown names, missing
    /// required params and values of the wrong type, and coerces strings (`"8080"` to `8080`
    /// for an int, `"true"` to a bool, `"a,b"` to `["a", "b"]` for a list, canonical text for
    /// ip and cidr, duration text checked against its max). An optional param that is neither
    /// given nor defaulted is `null`; a given `null` counts as not given.
    ///
    /// Returns every problem, one line each, naming the param.
    pub fn coerce_params(
        &self,
        given: &Map<String, Value>,
    ) -> Result<Map<String, Value>, Vec<String>> {
        let mut typed = Map::new();
        let mut problems = Vec::new();
        for spec in &self.params {
            match (
                given.get(&spec.name).filter(|v| !v.is_null()),
                &spec.default,
            ) {
                (Some(value), _) => match coerce(&spec.ty, value) {
                    Ok(value) => {
                        typed.insert(spec.name.clone(), value);
                    }
                    Err(problem) => problems.push(format!("param `{}`: {problem}", spec.name)),
                },
                (None, Some(default)) => {
                    typed.insert(spec.name.clone(), default.clone());
                }
                (None, None) if spec.required => {
                    problems.push(format!("param `{}`: required but not given", spec.name));
                }
                (None, None) => {
                    typed.insert(spec.name.clone(), Value::Null);
                }
            }
        }
        let declared: Vec<&str> = self.params.iter().map(|p| p.name.as_str()).collect();
        for name in given
            .keys()
            .filter(|name| !declared.contains(&name.as_str()))
        {
            problems.push(yaml::unknown_message("param", name, &declared));
        }
        if problems.is_empty() {
            Ok(typed)
        } else {
            Err(problems)
        }
    }
}

/// Types one value: the value as stored in the run, or why it does not fit.
pub(crate) fn coerce(ty: &ParamType, value: &Value) -> Result<Value, String> {
    match ty {
        ParamType::String => coerce_string(value),
        ParamType::Int { min, max } => coerce_int(value, *min, *max),
        ParamType::Bool => coerce_bool(value),
        ParamType::Ip => coerce_ip(value),
        ParamType::Cidr => coerce_cidr(value),
        ParamType::Duration { max_ms } => coerce_duration(value, *max_ms),
        ParamType::List => coerce_list(value),
        ParamType::Enum { values } => coerce_enum(value, values),
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "a mapping".to_string(),
        Value::String(s) => Value::String(yaml::shorten(s)).to_string(),
        other => other.to_string(),
    }
}

fn expected(what: &str, value: &Value) -> String {
    format!("expected {what}, found {}", describe(value))
}

/// Text of a string, number or bool.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn coerce_string(value: &Value) -> Result<Value, String> {
    scalar_text(value)
        .map(Value::String)
        .ok_or_else(|| expected("a string", value))
}

fn coerce_int(value: &Value, min: Option<i64>, max: Option<i64>) -> Result<Value, String> {
    let number = match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    let number = number.ok_or_else(|| expected("an integer", value))?;
    if let Some(min) = min.filter(|min| number < *min) {
        return Err(format!("must be at least {min}, found {number}"));
    }
    if let Some(max) = max.filter(|max| number > *max) {
        return Err(format!("must be at most {max}, found {number}"));
    }
    Ok(Value::from(number))
}

fn coerce_bool(value: &Value) -> Result<Value, String> {
    match value {
        Value::Bool(b) => Ok(Value::Bool(*b)),
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
        _ => Err(expected("true or false", value)),
    }
}

fn coerce_ip(value: &Value) -> Result<Value, String> {
    let ip = value.as_str().and_then(|s| s.trim().parse::<IpAddr>().ok());
    ip.map(|ip| Value::String(ip.to_string()))
        .ok_or_else(|| expected("an IP address", value))
}

fn coerce_cidr(value: &Value) -> Result<Value, String> {
    let text = value
        .as_str()
        .map(str::trim)
        .ok_or_else(|| expected("a CIDR network", value))?;
    canonical_cidr(text)
        .map(Value::String)
        .ok_or_else(|| expected("a CIDR network", value))
}

/// `10.1.2.3/8` to `10.0.0.0/8`; a host network (`/32`, `/128`) is its bare address, so that
/// `203.0.113.7` and `203.0.113.7/32` are one target (one concurrency key).
pub(crate) fn canonical_cidr(text: &str) -> Option<String> {
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let address: IpAddr = address.parse().ok()?;
    let width: u8 = if address.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(prefix) if prefix.bytes().all(|b| b.is_ascii_digit()) => prefix.parse::<u8>().ok()?,
        Some(_) => return None,
        None => width,
    };
    if prefix > width {
        return None;
    }
    let network = match address {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::from((u32::from(v4) & mask).to_be_bytes())
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::from((u128::from(v6) & mask).to_be_bytes())
        }
    };
    match prefix == width {
        true => Some(network.to_string()),
        false => Some(format!("{network}/{prefix}")),
    }
}

fn coerce_duration(value: &Value, max_ms: Option<u64>) -> Result<Value, String> {
    let text = value
        .as_str()
        .map(str::trim)
        .ok_or_else(|| expected("a duration like \"15m\"", value))?;
    let ms = duration::parse_ms(text).map_err(|e| e.to_string())?;
    if let Some(max_ms) = max_ms.filter(|max_ms| ms > *max_ms) {
        return Err(format!(
            "must be at most {}, found {text}",
            duration::format_ms(max_ms)
        ));
    }
    Ok(Value::String(text.to_string()))
}

fn coerce_list(value: &Value) -> Result<Value, String> {
    let items = match value {
        Value::Array(items) => items.clone(),
        Value::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| Value::String(item.to_string()))
            .collect(),
        _ => return Err(expected("a list or comma-separated text", value)),
    };
    if items.len() > limits::PARAM_LIST_ITEMS_MAX {
        return Err(format!(
            "has {} items, more than the {} allowed",
            items.len(),
            limits::PARAM_LIST_ITEMS_MAX
        ));
    }
    Ok(Value::Array(items))
}

fn coerce_enum(value: &Value, values: &[String]) -> Result<Value, String> {
    let text = scalar_text(value).ok_or_else(|| expected("one of the enum's values", value))?;
    if values.contains(&text) {
        return Ok(Value::String(text));
    }
    Err(format!(
        "must be one of {}; found {}",
        values.join(", "),
        describe(value)
    ))
}

/// Reads the `params` mapping.
pub(crate) fn read(node: &Node, sink: &mut Sink) -> Vec<ParamSpec> {
    let Some(map) = yaml::expect_mapping(node, "params", sink) else {
        return Vec::new();
    };
    if map.len() > limits::PARAMS_MAX {
        let message = format!(
            "{} params, more than the {} allowed",
            map.len(),
            limits::PARAMS_MAX
        );
        sink.push(yaml::pos(node), "params", message);
    }
    map.iter()
        .filter_map(|(name, spec)| read_one(name, spec, sink))
        .collect()
}

fn read_one(
    name: &marked_yaml::types::MarkedScalarNode,
    node: &Node,
    sink: &mut Sink,
) -> Option<ParamSpec> {
    let path = yaml::join("params", name.as_str());
    let valid_name = check_name(name, &path, sink);
    let fields = Fields::new(node, &path, &FIELDS, sink)?;
    let ty = read_type(&fields, sink);
    let required = match fields.get("required") {
        Some(node) => yaml::expect_bool(node, &fields.path_of("required"), sink).unwrap_or(false),
        None => false,
    };
    let description = match fields.get("description") {
        Some(node) => yaml::expect_string(node, &fields.path_of("description"), sink)?.to_string(),
        None => String::new(),
    };
    let ty = ty?;
    let default = read_default(&fields, &ty, required, sink);
    valid_name.then(|| ParamSpec {
        name: name.as_str().to_string(),
        ty,
        required,
        default,
        description,
    })
}

/// Param names are read in templates as `params.<name>`, so they are identifiers.
fn check_name(name: &marked_yaml::types::MarkedScalarNode, path: &str, sink: &mut Sink) -> bool {
    let text = name.as_str();
    let valid = text.len() <= limits::NAME_BYTES_MAX
        && text
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid {
        let message = format!(
            "invalid param name `{}`: use lowercase letters, digits and `_`, starting with a \
             letter or `_`, at most {} bytes",
            yaml::shorten(text),
            limits::NAME_BYTES_MAX
        );
        sink.push(yaml::scalar_pos(name), path, message);
    }
    valid
}

fn read_type(fields: &Fields<'_>, sink: &mut Sink) -> Option<ParamType> {
    let node = fields.require("type", sink)?;
    let path = fields.path_of("type");
    let name = yaml::expect_string(node, &path, sink)?;
    let bounds_ok = check_bounds_fields(fields, name, sink);
    let ty = match name {
        "string" => ParamType::String,
        "int" => read_int_bounds(fields, sink)?,
        "bool" => ParamType::Bool,
        "ip" => ParamType::Ip,
        "cidr" => ParamType::Cidr,
        "duration" => ParamType::Duration {
            max_ms: read_duration_max(fields, sink)?,
        },
        "list" => ParamType::List,
        "enum" => ParamType::Enum {
            values: read_enum_values(fields, sink)?,
        },
        other => {
            sink.push(
                yaml::pos(node),
                &path,
                yaml::unknown_message("type", other, &TYPES),
            );
            return None;
        }
    };
    bounds_ok.then_some(ty)
}

/// `min` and `max` belong to int (and `max` to duration), `values` to enum.
fn check_bounds_fields(fields: &Fields<'_>, type_name: &str, sink: &mut Sink) -> bool {
    let allowed: &[&str] = match type_name {
        "int" => &["min", "max"],
        "duration" => &["max"],
        "enum" => &["values"],
        _ => &[],
    };
    let mut ok = true;
    for field in ["min", "max", "values"] {
        let Some(node) = fields.get(field) else {
            continue;
        };
        if !allowed.contains(&field) && TYPES.contains(&type_name) {
            let message = format!("`{field}` does not apply to a param of type {type_name}");
            sink.push(yaml::pos(node), &fields.path_of(field), message);
            ok = false;
        }
    }
    ok
}

fn read_int_bounds(fields: &Fields<'_>, sink: &mut Sink) -> Option<ParamType> {
    let read = |name: &str, sink: &mut Sink| match fields.get(name) {
        Some(node) => yaml::expect_int(node, &fields.path_of(name), i64::MIN..=i64::MAX, sink)
            .map(Some)
            .ok_or(()),
        None => Ok(None),
    };
    let min = read("min", sink);
    let max = read("max", sink);
    let (min, max) = (min.ok()?, max.ok()?);
    if let (Some(low), Some(high), Some(node)) = (min, max, fields.get("max"))
        && low > high
    {
        let message = format!("max {high} is below min {low}");
        sink.push(yaml::pos(node), &fields.path_of("max"), message);
        return None;
    }
    Some(ParamType::Int { min, max })
}

fn read_duration_max(fields: &Fields<'_>, sink: &mut Sink) -> Option<Option<u64>> {
    let Some(node) = fields.get("max") else {
        return Some(None);
    };
    let path = fields.path_of("max");
    let text = yaml::expect_string(node, &path, sink)?;
    match duration::parse_ms(text) {
        Ok(ms) => Some(Some(ms)),
        Err(invalid) => {
            sink.push(yaml::pos(node), &path, invalid.to_string());
            None
        }
    }
}

fn read_enum_values(fields: &Fields<'_>, sink: &mut Sink) -> Option<Vec<String>> {
    let Some(node) = fields.get("values") else {
        let message = "an enum param needs `values`, the list of allowed values";
        sink.push(
            yaml::pos(fields.get("type")?),
            &fields.path_of("values"),
            message,
        );
        return None;
    };
    let path = fields.path_of("values");
    let list = yaml::expect_sequence(node, &path, sink)?;
    if list.is_empty() {
        sink.push(yaml::pos(node), &path, "an enum needs at least one value");
        return None;
    }
    if list.len() > limits::ENUM_VALUES_MAX {
        let message = format!(
            "{} values, more than the {} allowed",
            list.len(),
            limits::ENUM_VALUES_MAX
        );
        sink.push(yaml::pos(node), &path, message);
        return None;
    }
    let mut values = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, item) in list.iter().enumerate() {
        let item_path = yaml::index(&path, i);
        let text = yaml::expect_string(item, &item_path, sink)?;
        if !seen.insert(text) {
            sink.push(
                yaml::pos(item),
                &item_path,
                format!("duplicate value `{text}`"),
            );
            return None;
        }
        values.push(text.to_string());
    }
    Some(values)
}

fn read_default(
    fields: &Fields<'_>,
    ty: &ParamType,
    required: bool,
    sink: &mut Sink,
) -> Option<Value> {
    let node = fields.get("default")?;
    let path = fields.path_of("default");
    if required {
        sink.push(
            yaml::pos(node),
            &path,
            "a required param cannot have a default",
        );
        return None;
    }
    match coerce(ty, &yaml::to_json(node)) {
        Ok(value) => Some(value),
        Err(problem) => {
            sink.push(
                yaml::pos(node),
                &path,
                format!("default does not fit the param's type: {problem}"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_is_canonical() {
        assert_eq!(canonical_cidr("10.1.2.3/8").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(canonical_cidr("10.1.2.3").as_deref(), Some("10.1.2.3"));
        assert_eq!(canonical_cidr("10.1.2.3/32").as_deref(), Some("10.1.2.3"));
        assert_eq!(
            canonical_cidr("2001:db8::1/128").as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(canonical_cidr("10.1.2.3/0").as_deref(), Some("0.0.0.0/0"));
        assert_eq!(
            canonical_cidr("2001:DB8::1/32").as_deref(),
            Some("2001:db8::/32")
        );
        assert_eq!(canonical_cidr("10.0.0.0/33"), None);
        assert_eq!(canonical_cidr("10.0.0.0/+8"), None);
        assert_eq!(canonical_cidr("nope/8"), None);
    }
}
