//! Builds EM response bodies once and renders them as XML or JSON, following the documented
//! mapping: attributes and simple elements become properties, `Links` becomes an array, and
//! `/query` collections nest their plural key twice in JSON.

use super::vocab::Format;

const NAMESPACE: &str = "http://www.veeam.com/ent/v1.0";

#[derive(Clone, Debug)]
pub(crate) enum Value {
    Text(String),
    Bool(bool),
    Int(i64),
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Text(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Text(s)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}

#[derive(Clone, Debug)]
enum Child {
    Field(String, Value),
    Node(El),
    /// `double` renders `{"Name":{"Name":[...]}}` in JSON, the `/query` shape.
    List {
        name: String,
        items: Vec<El>,
        double: bool,
    },
}

/// An element under construction.
#[derive(Clone, Debug)]
pub(crate) struct El {
    name: String,
    attrs: Vec<(String, Value)>,
    children: Vec<Child>,
}

impl El {
    pub(crate) fn new(name: &str) -> El {
        El { name: name.to_owned(), attrs: Vec::new(), children: Vec::new() }
    }

    pub(crate) fn attr(mut self, key: &str, value: impl Into<Value>) -> El {
        self.attrs.push((key.to_owned(), value.into()));
        self
    }

    pub(crate) fn field(mut self, key: &str, value: impl Into<Value>) -> El {
        self.children.push(Child::Field(key.to_owned(), value.into()));
        self
    }

    pub(crate) fn opt_field(self, key: &str, value: Option<impl Into<Value>>) -> El {
        match value {
            Some(v) => self.field(key, v),
            None => self,
        }
    }

    pub(crate) fn node(mut self, child: El) -> El {
        self.children.push(Child::Node(child));
        self
    }

    pub(crate) fn list(mut self, name: &str, items: Vec<El>) -> El {
        self.children.push(Child::List { name: name.to_owned(), items, double: false });
        self
    }

    pub(crate) fn query_list(mut self, name: &str, items: Vec<El>) -> El {
        self.children.push(Child::List { name: name.to_owned(), items, double: true });
        self
    }

    /// Adds `<Links>` with `(rel, type, href, name)` entries; `Type`/`Name` omitted when `None`.
    pub(crate) fn links(self, links: Vec<Link>) -> El {
        let items = links
            .into_iter()
            .map(|l| {
                let mut e = El::new("Link").attr("Rel", l.rel).attr("Href", l.href);
                if let Some(t) = l.kind {
                    e = e.attr("Type", t);
                }
                if let Some(n) = l.name {
                    e = e.attr("Name", n);
                }
                e
            })
            .collect();
        self.list("Links", items)
    }
}

pub(crate) struct Link {
    pub rel: &'static str,
    pub kind: Option<&'static str>,
    pub href: String,
    pub name: Option<String>,
}

pub(crate) fn link(rel: &'static str, kind: Option<&'static str>, href: impl Into<String>) -> Link {
    Link { rel, kind, href: href.into(), name: None }
}

/// A whole response body.
pub(crate) enum Body {
    Entity(El),
    /// A top-level collection: `<Plural><Item/>…</Plural>` / `{"Plural":[…]}`.
    Collection {
        plural: String,
        items: Vec<El>,
    },
    /// `EntityReferences` of `Ref` elements: `<EntityReferences><Ref/>…` / `{"Refs":[…]}`.
    References(Vec<El>),
}

impl Body {
    pub(crate) fn render(&self, format: Format) -> Vec<u8> {
        match format {
            Format::Xml => {
                let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
                let ns = format!(
                    " xmlns=\"{NAMESPACE}\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\""
                );
                match self {
                    Body::Entity(el) => xml(el, &mut out, &ns),
                    Body::Collection { plural, items } => {
                        out.push_str(&format!("<{plural}{ns}>"));
                        for item in items {
                            xml(item, &mut out, "");
                        }
                        out.push_str(&format!("</{plural}>"));
                    }
                    Body::References(refs) => {
                        out.push_str(&format!("<EntityReferences{ns}>"));
                        for item in refs {
                            xml(item, &mut out, "");
                        }
                        out.push_str("</EntityReferences>");
                    }
                }
                out.into_bytes()
            }
            Format::Json => {
                let value = match self {
                    Body::Entity(el) => json(el),
                    Body::Collection { plural, items } => {
                        serde_json::json!({ plural: items.iter().map(json).collect::<Vec<_>>() })
                    }
                    Body::References(refs) => serde_json::json!({ "Refs": refs.iter().map(json).collect::<Vec<_>>() }),
                };
                // Current EMs send no BOM (docs/em-api-notes.md §1.5); `Quirk::JsonBom` adds one.
                serde_json::to_vec(&value).expect("JSON values always serialise")
            }
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn text(v: &Value) -> String {
    match v {
        Value::Text(s) => escape(s),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
    }
}

fn xml(el: &El, out: &mut String, extra_attrs: &str) {
    out.push('<');
    out.push_str(&el.name);
    out.push_str(extra_attrs);
    for (k, v) in &el.attrs {
        out.push_str(&format!(" {k}=\"{}\"", text(v)));
    }
    if el.children.is_empty() {
        out.push_str(" />");
        return;
    }
    out.push('>');
    for child in &el.children {
        match child {
            Child::Field(k, v) => out.push_str(&format!("<{k}>{}</{k}>", text(v))),
            Child::Node(n) => xml(n, out, ""),
            Child::List { name, items, .. } => {
                out.push_str(&format!("<{name}>"));
                for item in items {
                    xml(item, out, "");
                }
                out.push_str(&format!("</{name}>"));
            }
        }
    }
    out.push_str(&format!("</{}>", el.name));
}

fn json_value(v: &Value) -> serde_json::Value {
    match v {
        Value::Text(s) => serde_json::Value::String(s.clone()),
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(i) => serde_json::Value::from(*i),
    }
}

fn json(el: &El) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (k, v) in &el.attrs {
        map.insert(k.clone(), json_value(v));
    }
    for child in &el.children {
        match child {
            Child::Field(k, v) => {
                map.insert(k.clone(), json_value(v));
            }
            Child::Node(n) => {
                map.insert(n.name.clone(), json(n));
            }
            Child::List { name, items, double } => {
                let array = serde_json::Value::Array(items.iter().map(json).collect());
                let value = if *double { serde_json::json!({ name: array }) } else { array };
                map.insert(name.clone(), value);
            }
        }
    }
    serde_json::Value::Object(map)
}
