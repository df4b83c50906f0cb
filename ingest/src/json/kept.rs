//! Loading a JSON payload for what a parser reads of it, not the whole: only the keys named
//! in a [`Keep`] become a [`Value`]; the rest is checked as it goes by and left as text in a
//! [`Raw`], parsed later only if a rule or a run asks for it. A storm's alerts each read a
//! handful of fields out of kilobytes of vendor payload.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::{Error, load, text_of};
use crate::alert::Raw;

/// What to read of a value: all of it, or only the named keys of an object (each matched
/// ignoring ASCII case, as [`super::get`] finds them) with what to read of each. An array
/// met where keys are named has each element read the same way; any other value is read
/// whole.
#[derive(Debug)]
pub enum Keep {
    All,
    Keys(&'static [(&'static str, Keep)]),
}

/// Loads a JSON payload, bounded and checked like [`load`] (size, UTF-8, nesting), answering
/// what `keep` names as a value and the whole payload as a [`Raw`]. A payload that does not
/// load is refused with [`load`]'s own error.
pub fn load_kept(bytes: &[u8], keep: &Keep) -> Result<(Value, Raw), Error> {
    let text = text_of(bytes)?;
    let mut reader = serde_json::Deserializer::from_str(text);
    let kept = Kept(keep)
        .deserialize(&mut reader)
        .and_then(|kept| reader.end().map(|()| kept));
    match kept {
        Ok(kept) => Ok((kept, Raw::text(text))),
        // The full loader has the words for what is wrong.
        Err(_) => load(bytes).map(|whole| (whole.clone(), Raw::from(whole))),
    }
}

/// Reads a value as [`Keep`] says.
struct Kept<'k>(&'k Keep);

impl<'de> DeserializeSeed<'de> for Kept<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        match self.0 {
            Keep::All => serde::Deserialize::deserialize(deserializer),
            Keep::Keys(keys) => deserializer.deserialize_any(KeysVisitor(keys)),
        }
    }
}

struct KeysVisitor(&'static [(&'static str, Keep)]);

impl<'de> Visitor<'de> for KeysVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Kept(&Keep::Keys(self.0)))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut kept = Map::new();
        while let Some(Key(key)) = map.next_key()? {
            match self.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(&key)) {
                Some((_, keep)) => {
                    kept.insert(key.into_owned(), map.next_value_seed(Kept(keep))?);
                }
                None => map.next_value_seed(Skip)?,
            }
        }
        Ok(Value::Object(kept))
    }
}

/// An object's key, borrowed from the payload unless it holds an escape: the keys passed by
/// are never copied.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(v.to_string())))
    }
}

/// Goes past a value, keeping nothing: through the reader's own nesting limit and string
/// checks (a lone surrogate), which [`IgnoredAny`] alone would pass by in a value.
struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(Skip)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // A key is read as a string whatever it is read into: its escapes are checked.
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEEP: Keep = Keep::Keys(&[
        ("id", Keep::All),
        ("data", Keep::Keys(&[("essentials", Keep::All)])),
    ]);

    #[test]
    fn only_the_named_keys_are_read_the_whole_is_kept() {
        let text = r#"{"ID": 7, "other": {"deep": [1, 2]}, "data": {"Essentials": {"a": [1, {"b": null}]}, "context": "x"}}"#;
        let (kept, raw) = load_kept(text.as_bytes(), &KEEP).unwrap();
        assert_eq!(
            kept,
            json!({"ID": 7, "data": {"Essentials": {"a": [1, {"b": null}]}}})
        );
        assert_eq!(
            raw.into_value(),
            serde_json::from_str::<Value>(text).unwrap()
        );
    }

    #[test]
    fn a_key_with_an_escape_is_matched_as_it_reads() {
        let (kept, _) = load_kept(br#"{"\u0069d": 1, "o\u0074her": 2}"#, &KEEP).unwrap();
        assert_eq!(kept, json!({"id": 1}));
    }

    #[test]
    fn a_value_of_another_shape_is_read_as_it_is() {
        let (kept, _) = load_kept(br#"{"data": "text", "id": [1]}"#, &KEEP).unwrap();
        assert_eq!(kept, json!({"data": "text", "id": [1]}));
        let (kept, _) = load_kept(br#"[{"id": 1, "x": 2}, 3]"#, &KEEP).unwrap();
        assert_eq!(kept, json!([{"id": 1}, 3]));
    }

    #[test]
    fn what_does_not_load_is_refused_as_the_full_loader_refuses_it() {
        let deep = format!("{{\"skipped\": {}{}}}", "[".repeat(200), "]".repeat(200));
        let lone = [
            &br#"{"skipped": {"\ud800": 1}}"#[..],
            br#"{"skipped": ["\udc00"]}"#,
            br#"{"\ud800": 1}"#,
        ];
        let bad = [&b"{\"a\": "[..], b"{\"id\": 1} x", deep.as_bytes(), b"\xff"];
        for bad in bad.into_iter().chain(lone) {
            let kept = load_kept(bad, &KEEP).map(|_| ()).unwrap_err().to_string();
            let full = load(bad).map(|_| ()).unwrap_err().to_string();
            assert_eq!(kept, full);
        }
    }
}
