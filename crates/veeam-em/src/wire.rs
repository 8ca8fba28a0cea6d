//! Format-agnostic reading of EM response bodies.
//!
//! EM answers in XML (default) or JSON, and the two differ in shape: XML attributes and child
//! elements both become JSON properties, `<Links><Link/></Links>` becomes an array, and collections
//! returned by `/query` nest their plural key twice (`Refs.Refs[]`). Rather than one serde model
//! per format, both are parsed into a tree and read through [`Node`], so every EM type has exactly
//! one decoder. Unknown elements, attributes and properties are ignored by construction.

use quick_xml::events::Event;
use serde_json::Value;

/// One XML element: local name (namespace prefix dropped), attributes, children and text.
#[derive(Debug, Default)]
pub(crate) struct XmlElement {
    name: String,
    attributes: Vec<(String, String)>,
    children: Vec<XmlElement>,
    text: String,
}

/// A parsed response body.
#[derive(Debug)]
pub(crate) enum Doc {
    Xml(XmlElement),
    Json(Value),
}

impl Doc {
    /// Parses `body` as JSON when it looks like JSON (after an optional UTF-8 BOM, which EM 9.5
    /// sent on JSON bodies and v12/v13 do not), otherwise as XML. Sniffing the body rather than trusting
    /// `Content-Type` keeps us working if a proxy or EM version labels bodies differently.
    pub(crate) fn parse(body: &[u8]) -> Result<Doc, String> {
        let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        match first {
            Some(b'{') | Some(b'[') => {
                serde_json::from_slice(body).map(Doc::Json).map_err(|e| format!("invalid JSON: {e}"))
            }
            Some(b'<') => parse_xml(body).map(Doc::Xml),
            Some(_) => Err("body is neither XML nor JSON".to_owned()),
            None => Err("empty body".to_owned()),
        }
    }

    pub(crate) fn root(&self) -> Node<'_> {
        match self {
            Doc::Xml(e) => Node::Xml(e),
            Doc::Json(v) => Node::Json(v),
        }
    }
}

/// EM's documents nest a handful of levels. A limit keeps a hostile or broken body from building
/// a tree whose recursive drop would overflow the stack.
const MAX_XML_DEPTH: usize = 64;

fn parse_xml(body: &[u8]) -> Result<XmlElement, String> {
    // No trim_text: it would also strip the spaces around entity references (`a &lt;b&gt;`).
    // Values are trimmed when read instead (`Node::str`).
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut stack: Vec<XmlElement> = Vec::new();
    let mut buf = Vec::new();
    let err = |e: &dyn std::fmt::Display, pos: u64| format!("invalid XML at byte {pos}: {e}");
    loop {
        let pos = reader.buffer_position();
        let event = reader.read_event_into(&mut buf).map_err(|e| err(&e, pos))?;
        let is_empty = matches!(event, Event::Empty(_));
        match event {
            Event::Start(start) | Event::Empty(start) => {
                let mut element = XmlElement {
                    name: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
                    ..XmlElement::default()
                };
                for attr in start.attributes() {
                    let attr = attr.map_err(|e| err(&e, pos))?;
                    let key = attr.key.as_ref();
                    // Namespace declarations are not data.
                    if key == b"xmlns" || key.starts_with(b"xmlns:") {
                        continue;
                    }
                    let value = attr.unescape_value().map_err(|e| err(&e, pos))?;
                    let local = String::from_utf8_lossy(attr.key.local_name().as_ref()).into_owned();
                    element.attributes.push((local, value.into_owned()));
                }
                if is_empty {
                    if let Some(done) = close_or_root(&mut stack, element) {
                        return Ok(done);
                    }
                } else if stack.len() == MAX_XML_DEPTH {
                    return Err(err(&format!("elements nested deeper than {MAX_XML_DEPTH} levels"), pos));
                } else {
                    stack.push(element);
                }
            }
            Event::End(_) => {
                let element = stack.pop().ok_or_else(|| err(&"unbalanced end tag", pos))?;
                if let Some(done) = close_or_root(&mut stack, element) {
                    return Ok(done);
                }
            }
            Event::Text(text) => {
                let text = text.decode().map_err(|e| err(&e, pos))?;
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&text);
                }
            }
            Event::CData(data) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(&data));
                }
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref().map_err(|e| err(&e, pos))? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = reference.decode().map_err(|e| err(&e, pos))?;
                        predefined_entity(&name)
                            .ok_or_else(|| err(&format!("unknown entity &{name};"), pos))?
                            .to_owned()
                    }
                };
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&resolved);
                }
            }
            Event::Eof => return Err("unexpected end of XML document".to_owned()),
            _ => {}
        }
        buf.clear();
    }
}

/// Attaches a finished element to its parent, or returns it when it is the document root.
fn close_or_root(stack: &mut [XmlElement], element: XmlElement) -> Option<XmlElement> {
    match stack.last_mut() {
        Some(parent) => {
            parent.children.push(element);
            None
        }
        None => Some(element),
    }
}

fn predefined_entity(name: &str) -> Option<&'static str> {
    Some(match name {
        "amp" => "&",
        "lt" => "<",
        "gt" => ">",
        "quot" => "\"",
        "apos" => "'",
        _ => return None,
    })
}

/// A read-only view of one object in either format.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Node<'a> {
    Xml(&'a XmlElement),
    Json(&'a Value),
}

impl<'a> Node<'a> {
    /// A nested object: an XML child element, or a non-null JSON property.
    pub(crate) fn child(&self, name: &str) -> Option<Node<'a>> {
        match self {
            Node::Xml(e) => e.children.iter().find(|c| c.name == name).map(Node::Xml),
            Node::Json(v) => match json_get(v, name) {
                None | Some(Value::Null) => None,
                Some(v) => Some(Node::Json(v)),
            },
        }
    }

    /// A scalar field: an XML attribute or the text of a child element; a JSON string, number
    /// or boolean property. Empty values count as absent.
    pub(crate) fn str(&self, name: &str) -> Option<String> {
        let value = match self {
            Node::Xml(e) => e
                .attributes
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .or_else(|| e.children.iter().find(|c| c.name == name).map(|c| c.text.clone())),
            Node::Json(v) => match json_get(v, name)? {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            },
        }?;
        let value = value.trim();
        (!value.is_empty()).then(|| value.to_owned())
    }

    /// The items of a collection named `plural` whose XML items are `singular` elements.
    ///
    /// Accepts every shape EM is known or suspected to use: the collection as this node itself
    /// (an XML root named `plural`), as a child element, as a JSON array property, as a JSON
    /// object wrapping the array again under `plural` (the `/query` double key) or `singular`,
    /// or as a JSON object holding a single array of another name (undocumented JSON shapes
    /// such as `FSRoots`).
    pub(crate) fn items(&self, plural: &str, singular: &str) -> Vec<Node<'a>> {
        match self {
            Node::Xml(e) => {
                let container = if e.name == plural { Some(*e) } else { e.children.iter().find(|c| c.name == plural) };
                container
                    .map(|c| c.children.iter().filter(|i| i.name == singular).map(Node::Xml).collect())
                    .unwrap_or_default()
            }
            Node::Json(v) => match json_get(v, plural) {
                Some(inner) => json_items(inner, plural, singular),
                None if v.is_array() => json_items(v, plural, singular),
                None => Vec::new(),
            },
        }
    }
}

/// A JSON property by name. EM's JSON uses the XML names (`TaskId`), but EM v13 was reported to
/// answer in camelCase (`taskId`): an exact match wins, else one that differs only in case.
fn json_get<'v>(value: &'v Value, name: &str) -> Option<&'v Value> {
    let map = value.as_object()?;
    map.get(name).or_else(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

fn json_items<'a>(value: &'a Value, plural: &str, singular: &str) -> Vec<Node<'a>> {
    match value {
        Value::Array(items) => items.iter().map(Node::Json).collect(),
        Value::Object(map) => {
            for key in [plural, singular] {
                if let Some(inner @ (Value::Array(_) | Value::Object(_))) = json_get(value, key) {
                    return json_items(inner, plural, singular);
                }
            }
            let arrays: Vec<&Value> = map.values().filter(|v| v.is_array()).collect();
            match arrays.as_slice() {
                [only] => json_items(only, plural, singular),
                // An object with no array is a single item written without its list.
                [] if !map.is_empty() => vec![Node::Json(value)],
                _ => Vec::new(),
            }
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        // As large as the client accepts (4 MiB): without a limit this tree's drop overflows.
        let depth = (4 << 20) / 7;
        let xml = format!("{}{}", "<a>".repeat(depth), "</a>".repeat(depth));
        let e = Doc::parse(xml.as_bytes()).unwrap_err();
        assert!(e.contains("nested deeper than 64"), "{e}");
        let nested_ok = format!("{}{}", "<a>".repeat(64), "</a>".repeat(64));
        assert!(Doc::parse(nested_ok.as_bytes()).is_ok());
        let json = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(Doc::parse(json.as_bytes()).unwrap_err().contains("recursion limit"));
    }

    #[test]
    fn xml_attributes_children_entities_and_namespaces() {
        let doc = Doc::parse(
            br#"<?xml version="1.0" encoding="utf-8"?>
            <Root xmlns="http://www.veeam.com/ent/v1.0" xmlns:xsi="x" Href="https://h/a?x=1&amp;y=2">
              <Links><Link Rel="Up" Href="u"/><Link Rel="Down" Href="d"/></Links>
              <Text>a &lt;b&gt; &#65;</Text><Empty/>
            </Root>"#,
        )
        .unwrap();
        let root = doc.root();
        assert_eq!(root.str("Href").as_deref(), Some("https://h/a?x=1&y=2"));
        assert_eq!(root.str("Text").as_deref(), Some("a <b> A"));
        assert_eq!(root.str("Empty"), None);
        assert_eq!(root.str("xmlns"), None);
        let links = root.items("Links", "Link");
        assert_eq!(links.len(), 2);
        assert_eq!(links[1].str("Rel").as_deref(), Some("Down"));
    }

    #[test]
    fn json_with_bom_and_nested_collections() {
        let doc = Doc::parse(
            "\u{feff}{\"Refs\":{\"Refs\":[{\"Name\":\"a\"},{\"Name\":\"b\"}]},\"Ok\":true,\"N\":3,\"Null\":null}"
                .as_bytes(),
        )
        .unwrap();
        let root = doc.root();
        assert_eq!(root.items("Refs", "Ref").len(), 2);
        assert_eq!(root.str("Ok").as_deref(), Some("true"));
        assert_eq!(root.str("N").as_deref(), Some("3"));
        assert!(root.child("Null").is_none());
    }

    #[test]
    fn json_single_unknown_array_key_is_accepted() {
        let doc = Doc::parse(br#"{"FSRoots":{"DirectoryEntries":[{"Path":"C:"}]}}"#).unwrap();
        let roots = doc.root().items("FSRoots", "DirectoryEntry");
        assert_eq!(roots.len(), 1);
        assert_eq!(roots[0].str("Path").as_deref(), Some("C:"));
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        for body in [&b""[..], b"   ", b"<Task><State>", b"{\"a\":", b"hello", b"<a></b>", b"<a>&bogus;</a>"] {
            assert!(Doc::parse(body).is_err(), "{:?}", String::from_utf8_lossy(body));
        }
    }
}
