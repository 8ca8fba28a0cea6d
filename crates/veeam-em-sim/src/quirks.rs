//! Behaviours of older or buggy EM versions, off by default: the simulator imitates a current
//! EM (v12/v13, see `docs/em-api-notes.md` §1.5) unless asked for a quirk.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One opt-in deviation from a current EM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Quirk {
    /// EM 9.5: every JSON body starts with a UTF-8 byte-order mark.
    JsonBom,
    /// The reported EM v13 regression: JSON property names in camelCase (`taskId`, `links`).
    CamelCaseJson,
}

/// Rewrites a JSON response body for the quirks in force; other bodies pass unchanged.
pub(crate) fn apply(quirks: &[Quirk], body: Bytes) -> Bytes {
    if quirks.is_empty() {
        return body;
    }
    let mut out = body.to_vec();
    if quirks.contains(&Quirk::CamelCaseJson)
        && let Ok(mut value) = serde_json::from_slice::<Value>(&out)
    {
        camel_case_keys(&mut value);
        out = serde_json::to_vec(&value).expect("JSON values always serialise");
    }
    if quirks.contains(&Quirk::JsonBom) {
        out.splice(0..0, *b"\xef\xbb\xbf");
    }
    Bytes::from(out)
}

/// `TaskId` → `taskId`, everywhere in the document.
fn camel_case_keys(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (key, mut inner) in entries {
                camel_case_keys(&mut inner);
                let mut chars = key.chars();
                let key = match chars.next() {
                    Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
                    None => key,
                };
                map.insert(key, inner);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(camel_case_keys),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quirks_rewrite_json_only_when_asked() {
        let body = Bytes::from_static(br#"{"TaskId":"task-1","Links":[{"Href":"h"}]}"#);
        assert_eq!(apply(&[], body.clone()), body);
        let camel = apply(&[Quirk::CamelCaseJson], body.clone());
        assert_eq!(&camel[..], br#"{"links":[{"href":"h"}],"taskId":"task-1"}"#);
        let bom = apply(&[Quirk::JsonBom], body.clone());
        assert!(bom.starts_with(b"\xef\xbb\xbf{"));
    }
}
