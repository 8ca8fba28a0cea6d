//! Strict decoding of a YAML mapping one key at a time.
//!
//! serde stops at the first bad value of a struct, so a typo in one key would hide every other
//! problem, and its messages do not always name the key. [`Fields`] decodes each key on its
//! own, reports each problem as `<location>.<key>: <what is wrong>`, and reports keys nobody
//! asked for as unknown. The configuration decodes its targets and probes with it, and each
//! probe kind takes its own keys from the same [`Fields`], so a key of another kind is reported
//! as "not a setting of a … probe".

use serde::de::DeserializeOwned;
use serde_norway::{Mapping, Value};

pub struct Fields<'e> {
    at: String,
    map: Mapping,
    errors: &'e mut Vec<String>,
    /// How many errors there were before: more at the end means something failed.
    start: usize,
}

impl<'e> Fields<'e> {
    /// `None` (with an error) when `value` is not a mapping.
    pub fn new(value: Value, at: &str, errors: &'e mut Vec<String>) -> Option<Fields<'e>> {
        match value {
            Value::Mapping(map) => {
                let start = errors.len();
                Some(Fields { at: at.to_owned(), map, errors, start })
            }
            other => {
                errors.push(format!("{at}: expected a mapping of keys, found {}", kind_of(&other)));
                None
            }
        }
    }

    /// Where these fields are, e.g. `targets[0] (em).probes[1] (win-mount)`.
    pub fn at(&self) -> &str {
        &self.at
    }

    /// Records a problem of the whole mapping or of one key (`key` may be empty).
    pub fn error(&mut self, key: &str, message: impl std::fmt::Display) {
        let at = if key.is_empty() { self.at.clone() } else { format!("{}.{key}", self.at) };
        self.errors.push(format!("{at}: {message}"));
    }

    /// The mapping under `key`, decoded the same way; its problems count as this one's.
    pub fn nested(&mut self, key: &str) -> Option<Fields<'_>> {
        let value = self.map.remove(key)?;
        let at = format!("{}.{key}", self.at);
        Fields::new(value, &at, self.errors)
    }

    /// Where problems go, for decoders of values nested deeper (e.g. list items).
    pub fn errors(&mut self) -> &mut Vec<String> {
        self.errors
    }

    /// The raw value of `key`, removed from the mapping.
    pub fn raw(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key)
    }

    /// Decodes `key` if present; a bad value is reported and reads as absent.
    pub fn optional<T: DeserializeOwned>(&mut self, key: &str) -> Option<T> {
        let value = self.map.remove(key)?;
        match serde_norway::from_value(value) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(key, e);
                None
            }
        }
    }

    /// Decodes `key`, which must be present.
    pub fn required<T: DeserializeOwned>(&mut self, key: &str) -> Option<T> {
        if !self.map.contains_key(key) {
            self.error(key, "required");
            return None;
        }
        self.optional(key)
    }

    /// Decodes `key`, or `default` when it is absent (or bad, which is reported).
    pub fn or<T: DeserializeOwned>(&mut self, key: &str, default: T) -> T {
        self.optional(key).unwrap_or(default)
    }

    /// Reports every key left over as `unknown` (or `not a setting of …` with `owner`) and
    /// returns whether everything decoded cleanly.
    pub fn finish(self, owner: Option<&str>) -> bool {
        let Fields { at, map, errors, start } = self;
        for key in map.keys() {
            let key = key.as_str().map(str::to_owned).unwrap_or_else(|| format!("{key:?}"));
            match owner {
                Some(owner) => errors.push(format!("{at}.{key}: not a setting of {owner}")),
                None => errors.push(format!("{at}.{key}: unknown key")),
            }
        }
        errors.len() == start
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bad_key_is_reported_on_its_own() {
        let value: Value = serde_norway::from_str("a: x\nb: 2\nc: [1]\nd: 1\n").unwrap();
        let mut errors = Vec::new();
        let mut f = Fields::new(value, "here", &mut errors).unwrap();
        assert_eq!(f.optional::<u32>("a"), None);
        assert_eq!(f.required::<u32>("b"), Some(2));
        assert_eq!(f.or::<String>("c", "dflt".into()), "dflt");
        assert_eq!(f.required::<u32>("missing"), None);
        assert!(!f.finish(Some("a mount probe")));
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(errors[0].starts_with("here.a: "));
        assert!(errors[1].starts_with("here.c: "));
        assert_eq!(errors[2], "here.missing: required");
        assert_eq!(errors[3], "here.d: not a setting of a mount probe");
        let mut errors = Vec::new();
        assert!(Fields::new(Value::from(3), "x", &mut errors).is_none());
        assert_eq!(errors, ["x: expected a mapping of keys, found a number"]);
    }
}
