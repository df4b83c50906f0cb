//! Lenient JSON reading shared by the JSON sources: bounded loading, case-insensitive keys,
//! strings and numbers read as text, optional arrays and objects with typed errors.

mod kept;

use serde_json::Value;

use super::Error;
pub use kept::{Keep, load_kept};

/// Loads a JSON payload: at most [`super::PAYLOAD_BYTES_MAX`] bytes, UTF-8, and within
/// serde_json's nesting limit (128), which turns deep nesting into an error, not a stack
/// overflow.
pub fn load(bytes: &[u8]) -> Result<Value, Error> {
    serde_json::from_str(text_of(bytes)?).map_err(|e| json_error(&e))
}

/// A payload's text: at most [`super::PAYLOAD_BYTES_MAX`] bytes, UTF-8.
fn text_of(bytes: &[u8]) -> Result<&str, Error> {
    if bytes.len() > super::PAYLOAD_BYTES_MAX {
        return Err(Error::PayloadTooLarge {
            bytes: bytes.len(),
            max: super::PAYLOAD_BYTES_MAX,
        });
    }
    std::str::from_utf8(bytes).map_err(|e| Error::NotUtf8 {
        offset: e.valid_up_to(),
    })
}

fn json_error(e: &serde_json::Error) -> Error {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
    Error::Json {
        line: e.line(),
        column: e.column(),
        message,
    }
}

/// The value at `key`: the exact key if present, else the first key equal ignoring ASCII case.
pub fn get<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    let map = value.as_object()?;
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// A string, number or boolean as text; `None` for null, empty strings, arrays and objects.
pub fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Like [`text`] but a present array or object is a [`Error::WrongType`].
pub fn scalar(value: Option<&Value>, field: &'static str) -> Result<Option<String>, Error> {
    match value {
        Some(Value::Array(_) | Value::Object(_)) => Err(Error::WrongType {
            field,
            expected: "a string",
        }),
        other => Ok(text(other)),
    }
}

/// A required text field: missing or empty is [`Error::Missing`], a wrong type
/// [`Error::WrongType`], longer than `max` bytes [`Error::TooLong`].
pub fn required(value: Option<&Value>, field: &'static str, max: usize) -> Result<String, Error> {
    let text = scalar(value, field)?.ok_or(Error::Missing(field))?;
    bounded(field, text, max)
}

/// An optional text field, bounded like [`required`].
pub fn optional(
    value: Option<&Value>,
    field: &'static str,
    max: usize,
) -> Result<Option<String>, Error> {
    scalar(value, field)?
        .map(|t| bounded(field, t, max))
        .transpose()
}

/// `text` itself if it is at most `max` bytes, else [`Error::TooLong`].
pub fn bounded(field: &'static str, text: String, max: usize) -> Result<String, Error> {
    if text.len() > max {
        return Err(Error::TooLong {
            field,
            bytes: text.len(),
            max,
        });
    }
    Ok(text)
}

/// An optional array: absent or null is empty, another type is [`Error::WrongType`].
pub fn array<'a>(value: Option<&'a Value>, field: &'static str) -> Result<&'a [Value], Error> {
    match value {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(Error::WrongType {
            field,
            expected: "an array",
        }),
    }
}

/// A required object: absent is [`Error::Missing`], another type [`Error::WrongType`].
pub fn object<'a>(value: Option<&'a Value>, field: &'static str) -> Result<&'a Value, Error> {
    match value {
        None | Some(Value::Null) => Err(Error::Missing(field)),
        Some(v @ Value::Object(_)) => Ok(v),
        Some(_) => Err(Error::WrongType {
            field,
            expected: "an object",
        }),
    }
}

/// An optional object: absent or null is `null` (on which every [`get`] is `None`), another
/// type [`Error::WrongType`].
pub fn optional_object<'a>(
    value: Option<&'a Value>,
    field: &'static str,
) -> Result<&'a Value, Error> {
    static NULL: Value = Value::Null;
    match value {
        None | Some(Value::Null) => Ok(&NULL),
        other => object(other, field),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_match_ignoring_case_exact_first() {
        let v = json!({"Alerts": 1, "alerts": 2, "Other": 3});
        assert_eq!(get(&v, "alerts"), Some(&json!(2)));
        assert_eq!(get(&v, "OTHER"), Some(&json!(3)));
        assert_eq!(get(&v, "missing"), None);
    }

    #[test]
    fn text_reads_drifting_types() {
        assert_eq!(text(Some(&json!(20))), Some("20".into()));
        assert_eq!(text(Some(&json!("20"))), Some("20".into()));
        assert_eq!(text(Some(&json!(" "))), None);
        assert_eq!(text(Some(&json!([1]))), None);
        assert!(matches!(
            scalar(Some(&json!({})), "f"),
            Err(Error::WrongType { field: "f", .. })
        ));
    }

    #[test]
    fn load_reports_position() {
        let e = load(b"{\"a\": ").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid json at line 1 column 6: EOF while parsing a value"
        );
    }
}
