//! Test helpers: an HTTP client for the simulator that validates every JSON body it receives
//! against the spec's schema for the operation and status, and bounded polling.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The extracted schemas of one spec revision.
pub struct Schemas {
    pub doc: Value,
    cache: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
    pub validated: AtomicUsize,
    /// (operation, status) pairs answered with an `Error` body the operation does not declare.
    pub undeclared: Mutex<Vec<String>>,
}

/// The bundle for a revision: the nearest spec at or below it that is available.
pub fn bundle_for(rev: &str) -> &'static str {
    match rev {
        "1.3-rev2" => "vbr_1.3-rev2.json",
        "1.3-rev0" | "1.3-rev1" => "vbr_1.3-rev1.json",
        _ => "vbr_1.2-rev1.json",
    }
}

impl Schemas {
    pub fn load(file: &str) -> Arc<Schemas> {
        let path = format!("{}/tests/schemas/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let doc: Value = serde_json::from_str(&text).expect("schema bundle is JSON");
        Arc::new(Schemas {
            doc,
            cache: Mutex::new(HashMap::new()),
            validated: AtomicUsize::new(0),
            undeclared: Mutex::new(Vec::new()),
        })
    }

    fn validator(&self, key: &str, schema: &Value) -> Arc<jsonschema::Validator> {
        let mut c = self.cache.lock().unwrap();
        c.entry(key.to_string())
            .or_insert_with(|| {
                let root = json!({ "allOf": [schema], "definitions": self.doc["definitions"] });
                let v = jsonschema::draft7::options().should_validate_formats(true).build(&root);
                Arc::new(v.unwrap_or_else(|e| panic!("schema for {key} does not compile: {e}")))
            })
            .clone()
    }

    /// Validates one JSON body; panics with every violation.
    pub fn check(&self, op: &str, status: u16, body: &Value) {
        let ops = &self.doc["operations"][op];
        assert!(ops.is_object(), "operation {op} is not in the schema bundle");
        let code = status.to_string();
        let schema = match ops.get(&code) {
            Some(s) => s.clone(),
            None => {
                assert!(status >= 400, "{op} answered {status}, which the spec does not declare");
                self.undeclared.lock().unwrap().push(format!("{op} -> {status}"));
                json!({ "$ref": "#/definitions/Error" })
            }
        };
        let key = format!("{op} {code}");
        let v = self.validator(&key, &schema);
        let errors: Vec<String> = v.iter_errors(body).map(|e| format!("{} at {}", e, e.instance_path)).collect();
        assert!(
            errors.is_empty(),
            "{key} ({}): body fails its schema: {errors:#?}\nbody: {body:#}",
            self.doc["source"]
        );
        let mut extra = Vec::new();
        undeclared_props(&self.doc["definitions"], &schema, body, "", &mut extra);
        assert!(extra.is_empty(), "{key} ({}): properties the schema does not define: {extra:?}", self.doc["source"]);
        self.validated.fetch_add(1, Ordering::Relaxed);
    }
}

/// Properties the schema does not declare. The specs never forbid extra properties, but a server
/// must not send a field its revision does not define: an older client never sees a newer shape.
fn undeclared_props(defs: &Value, schema: &Value, inst: &Value, at: &str, out: &mut Vec<String>) {
    let mut props = serde_json::Map::new();
    let mut items = Vec::new();
    collect(defs, schema, inst, &mut props, &mut items, 0);
    if let Some(obj) = inst.as_object() {
        for (k, v) in obj {
            match props.get(k) {
                Some(s) => undeclared_props(defs, s, v, &format!("{at}/{k}"), out),
                None => out.push(format!("{at}/{k}")),
            }
        }
    }
    if let Some(arr) = inst.as_array() {
        for (i, v) in arr.iter().enumerate() {
            for s in &items {
                undeclared_props(defs, s, v, &format!("{at}/{i}"), out);
            }
        }
    }
}

fn collect(
    defs: &Value,
    s: &Value,
    inst: &Value,
    props: &mut serde_json::Map<String, Value>,
    items: &mut Vec<Value>,
    depth: u32,
) {
    if depth > 20 {
        return;
    }
    if let Some(r) = s["$ref"].as_str() {
        let name = r.trim_start_matches("#/definitions/");
        collect(defs, &defs[name], inst, props, items, depth + 1);
    }
    if let Some(p) = s["properties"].as_object() {
        for (k, v) in p {
            props.entry(k.clone()).or_insert(v.clone());
        }
    }
    if s.get("items").is_some() {
        items.push(s["items"].clone());
    }
    for sub in s["allOf"].as_array().into_iter().flatten() {
        if let Some(cond) = sub.get("if") {
            let matches = cond["properties"]
                .as_object()
                .is_some_and(|m| m.iter().all(|(k, c)| inst.get(k).is_some_and(|v| *v == c["const"])));
            if matches {
                collect(defs, &sub["then"], inst, props, items, depth + 1);
            }
        } else {
            collect(defs, sub, inst, props, items, depth + 1);
        }
    }
}

/// One answer.
pub struct Resp {
    pub status: u16,
    pub json: Value,
    pub bytes: Vec<u8>,
    pub content_type: String,
}

/// A client bound to a revision and (after `login`) a token. Every JSON answer is checked.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub rev: String,
    pub token: Option<String>,
    pub refresh: Option<String>,
    pub schemas: Option<Arc<Schemas>>,
    /// Send no `x-api-version` at all.
    pub no_version: bool,
}

impl Api {
    pub fn new(base: &str, rev: &str, schemas: Option<Arc<Schemas>>) -> Api {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        Api { http, base: base.to_string(), rev: rev.into(), token: None, refresh: None, schemas, no_version: false }
    }

    /// `op` is "METHOD /spec/path/{template}"; `path` the concrete path.
    pub async fn call(&self, op: &str, path: &str, body: Option<Value>) -> Resp {
        let method = op.split(' ').next().unwrap();
        let url = format!("{}{}", self.base, path.trim_start_matches('/'));
        let mut req = self.http.request(method.parse().unwrap(), url);
        if !self.no_version {
            req = req.header("x-api-version", &self.rev);
        }
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.finish(op, req).await
    }

    pub async fn form(&self, pairs: &[(&str, &str)]) -> Resp {
        let url = format!("{}api/oauth2/token", self.base);
        let mut req = self.http.post(url).form(pairs);
        if !self.no_version {
            req = req.header("x-api-version", &self.rev);
        }
        self.finish("POST /api/oauth2/token", req).await
    }

    async fn finish(&self, op: &str, req: reqwest::RequestBuilder) -> Resp {
        let r = req.send().await.unwrap_or_else(|e| panic!("{op}: {e}"));
        let status = r.status().as_u16();
        let content_type = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let bytes = r.bytes().await.unwrap().to_vec();
        let mut json = Value::Null;
        if content_type.starts_with("application/json") {
            json = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{op}: invalid JSON: {e}"));
            if let Some(s) = &self.schemas {
                s.check(op, status, &json);
            }
        }
        Resp { status, json, bytes, content_type }
    }

    /// Password grant, spelled as the revision's `ELoginGrantType` spells it.
    pub async fn login(&mut self, user: &str, password: &str) -> Resp {
        let gt = if self.rev.starts_with("1.3") { "Password" } else { "password" };
        let r = self.form(&[("grant_type", gt), ("username", user), ("password", password)]).await;
        if r.status == 200 {
            self.token = r.json["access_token"].as_str().map(str::to_string);
            self.refresh = r.json["refresh_token"].as_str().map(str::to_string);
        }
        r
    }
}

/// Admin API call (not validated: not part of VBR).
pub async fn admin(base: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let http = reqwest::Client::new();
    let mut req = http.request(method.parse().unwrap(), format!("{base}{}", path.trim_start_matches('/')));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let bytes = r.bytes().await.unwrap();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

/// Polls `f` until it returns `Some`, failing after `secs`.
pub async fn wait_for<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fast timings for tests.
pub fn fast_config() -> veeam_vbr_sim::SimConfig {
    let mut c = veeam_vbr_sim::SimConfig::default();
    c.timings.mount_duration = Duration::from_millis(50);
    c.timings.task_duration = Duration::from_millis(200);
    c
}

pub const WIN_NEWEST: &str = "5a1e0000-0000-4000-8000-000000000101";
pub const LNX_NEWEST: &str = "5a1e0000-0000-4000-8000-000000000111";
pub const FOREIGN_SESSION: &str = "5a1e0000-0000-4000-8000-000000000301";
