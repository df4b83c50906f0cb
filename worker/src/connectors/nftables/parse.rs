//! Reading `nft -j list set` and `nft -j list chain` output with serde.

use serde::Deserialize;
use serde_json::Value;

/// One element of a set as nft lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Element {
    /// The key as nft syntax would write it: `203.0.113.7`, `2001:db8::/32`,
    /// `198.51.100.2 . 22`, or `a-b` for a range.
    pub(crate) key: String,
    /// The element's timeout in seconds, `None` for a permanent element.
    pub(crate) timeout_secs: Option<u64>,
    /// Seconds until it expires, `None` for a permanent element.
    pub(crate) expires_secs: Option<u64>,
    /// Its comment, if any.
    pub(crate) comment: Option<String>,
}

#[derive(Deserialize)]
struct Listing {
    nftables: Vec<Value>,
}

#[derive(Deserialize)]
struct SetObject {
    #[serde(default)]
    elem: Vec<Value>,
}

#[derive(Deserialize)]
struct ElemWithOptions {
    val: Value,
    timeout: Option<u64>,
    expires: Option<u64>,
    comment: Option<String>,
}

/// The elements of the set in `json` (`nft -j list set ...`).
pub(crate) fn set_elements(json: &str) -> Result<Vec<Element>, String> {
    let listing: Listing =
        serde_json::from_str(json).map_err(|e| format!("unexpected nft JSON: {e}"))?;
    let set = listing
        .nftables
        .into_iter()
        .find_map(|object| object.get("set").cloned())
        .ok_or("the nft JSON listing has no set")?;
    let set: SetObject =
        serde_json::from_value(set).map_err(|e| format!("unexpected nft set JSON: {e}"))?;
    set.elem.iter().map(element).collect()
}

/// One entry of `elem`: either `{"elem": {"val", "timeout", ...}}` or a bare value.
fn element(entry: &Value) -> Result<Element, String> {
    match entry.get("elem") {
        Some(with_options) => {
            let parsed: ElemWithOptions = serde_json::from_value(with_options.clone())
                .map_err(|e| format!("unexpected nft element JSON: {e}"))?;
            Ok(Element {
                key: key(&parsed.val)?,
                timeout_secs: parsed.timeout,
                expires_secs: parsed.expires,
                comment: parsed.comment,
            })
        }
        None => Ok(Element {
            key: key(entry)?,
            timeout_secs: None,
            expires_secs: None,
            comment: None,
        }),
    }
}

/// A value as nft syntax writes it.
fn key(value: &Value) -> Result<String, String> {
    let unexpected = || format!("unexpected nft element value {value}");
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Object(object) => {
            if let Some(prefix) = object.get("prefix") {
                let addr = prefix.get("addr").and_then(Value::as_str);
                let len = prefix.get("len").and_then(Value::as_u64);
                let (addr, len) = addr.zip(len).ok_or_else(unexpected)?;
                return Ok(format!("{addr}/{len}"));
            }
            if let Some(Value::Array(parts)) = object.get("concat") {
                let parts: Result<Vec<String>, String> = parts.iter().map(key).collect();
                return Ok(parts?.join(" . "));
            }
            if let Some(Value::Array(bounds)) = object.get("range") {
                let bounds: Result<Vec<String>, String> = bounds.iter().map(key).collect();
                return Ok(bounds?.join("-"));
            }
            Err(unexpected())
        }
        _ => Err(unexpected()),
    }
}

/// The expressions of each rule of the chain in `json` (`nft -j list chain ...`).
#[cfg(test)]
pub(crate) fn chain_rules(json: &str) -> Result<Vec<Value>, String> {
    let listing: Listing =
        serde_json::from_str(json).map_err(|e| format!("unexpected nft JSON: {e}"))?;
    Ok(listing
        .nftables
        .into_iter()
        .filter_map(|object| object.get("rule").and_then(|r| r.get("expr")).cloned())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Observed output of nftables 1.0.6 for an interval set and a concatenated set.
    const BLOCK4: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"set": {"family": "inet", "name": "block4", "table": "riposte", "type": "ipv4_addr", "handle": 1, "flags": ["interval", "timeout"], "elem": [{"elem": {"val": "198.51.100.7", "timeout": 30, "expires": 29, "comment": "run/step/0"}}, {"elem": {"val": {"prefix": {"addr": "203.0.113.0", "len": 24}}, "timeout": 30, "expires": 29}}, "192.0.2.1", {"elem": {"val": {"range": ["192.0.2.10", "192.0.2.12"]}, "comment": "x"}}]}}]}"#;
    const JIT: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"set": {"family": "inet", "name": "jit_tcp4", "table": "riposte", "type": ["ipv4_addr", "inet_service"], "handle": 4, "flags": ["timeout"], "elem": [{"elem": {"val": {"concat": ["198.51.100.2", 22]}, "timeout": 40, "expires": 39, "comment": "y"}}]}}]}"#;
    const EMPTY: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"set": {"family": "inet", "name": "block6", "table": "riposte", "type": "ipv6_addr", "handle": 2, "flags": ["interval", "timeout"]}}]}"#;

    #[test]
    fn elements_of_an_interval_set() {
        let elements = set_elements(BLOCK4).unwrap();
        let keys: Vec<&str> = elements.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "198.51.100.7",
                "203.0.113.0/24",
                "192.0.2.1",
                "192.0.2.10-192.0.2.12"
            ]
        );
        assert_eq!(elements[0].timeout_secs, Some(30));
        assert_eq!(elements[0].expires_secs, Some(29));
        assert_eq!(elements[0].comment.as_deref(), Some("run/step/0"));
        assert_eq!(elements[2].timeout_secs, None);
    }

    #[test]
    fn elements_of_a_concatenated_set_and_an_empty_one() {
        let elements = set_elements(JIT).unwrap();
        assert_eq!(elements[0].key, "198.51.100.2 . 22");
        assert!(set_elements(EMPTY).unwrap().is_empty());
        assert!(set_elements("{}").is_err());
        assert!(set_elements(r#"{"nftables": []}"#).is_err());
    }
}
