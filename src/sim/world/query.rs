//! Restore points and `/query` with its filter language.

use super::*;

impl World {
    pub(super) fn point_entity(&self, p: &Point, entity_name: &str) -> El {
        let base = &self.base;
        let coll = collection(p.kind);
        let (mount, mounts) = match p.kind {
            PointKind::Backup => ("VmRestorePointMount", "VmRestorePointMountList"),
            PointKind::Replica => ("VmReplicaPointMount", "VmReplicaPointMountList"),
        };
        let name = format!("{}@{}", p.vm, name_time(p.created));
        let mut el = El::new(entity_name)
            .attr("Type", point_type(p.kind))
            .attr("Href", format!("{base}/{coll}/{}?format=Entity", p.id))
            .attr("Name", name.clone())
            .attr("UID", format!("urn:veeam:{}:{}", point_type(p.kind), p.id))
            .attr("VmDisplayName", p.vm.clone());
        let mut links = vec![
            link(
                "Alternate",
                Some(if p.kind == PointKind::Backup { "VmRestorePointReference" } else { "VmReplicaPointReference" }),
                format!("{base}/{coll}/{}", p.id),
            ),
            link("Down", Some(mounts), format!("{base}/{coll}/{}/mounts", p.id)),
            link("Create", Some(mount), format!("{base}/{coll}/{}/mounts", p.id)),
        ];
        links[0].name = Some(name);
        el = el
            .links(links)
            .field("CreationTimeUTC", rfc3339(p.created))
            .field("Algorithm", "Incremental")
            .field("PointType", if p.kind == PointKind::Backup { "Increment" } else { "Snapshot" });
        if p.kind == PointKind::Backup {
            el = el.field(
                "HierarchyObjRef",
                format!("urn:VMware:Vm:00000000-0000-0000-0000-000000000001.vm-{}", &p.id[..8]),
            );
        }
        el
    }

    pub(crate) fn point(&self, kind: PointKind, id: &str) -> Reply {
        let p = self.inventory.point(kind, id).ok_or_else(|| err(404, format!("Restore point {id} not found")))?;
        Ok(Body::Entity(self.point_entity(p, point_type(kind))))
    }

    /// `GET /query`: restore points, replica points and restore sessions.
    pub(crate) fn query(&self, params: &HashMap<String, String>, now: Instant) -> Reply {
        let get = |k: &str| params.iter().find(|(key, _)| key.eq_ignore_ascii_case(k)).map(|(_, v)| v.as_str());
        let filter = parse_filter(get("filter").unwrap_or(""))?;
        let entities = get("format").is_some_and(|f| f.eq_ignore_ascii_case("Entities"));
        let qtype = get("type").ok_or_else(|| err(400, "Query type is not specified"))?;
        let (sort_field, descending) = match (get("sortDesc"), get("sortAsc")) {
            (Some(f), _) => (Some(f), true),
            (None, Some(f)) => (Some(f), false),
            _ => (None, false),
        };
        if let Some(f) = sort_field.filter(|f| !f.eq_ignore_ascii_case("CreationTime")) {
            return Err(err(400, format!("Sorting by {f} is not simulated")));
        }
        let mut rows: Vec<(SystemTime, El, El)> = match qtype {
            t if t.eq_ignore_ascii_case("VmRestorePoint") || t.eq_ignore_ascii_case("VmReplicaPoint") => {
                let kind =
                    if t.eq_ignore_ascii_case("VmRestorePoint") { PointKind::Backup } else { PointKind::Replica };
                let mut rows = Vec::new();
                for p in self.inventory.points.iter().filter(|p| p.kind == kind) {
                    let fields = [("vmdisplayname", p.vm.clone()), ("vmname", p.vm.clone()), ("uid", p.id.clone())];
                    if matches(&filter, &fields)? {
                        let entity = self.point_entity(p, point_type(kind));
                        let reference = El::new("Ref")
                            .attr("Type", format!("{}Reference", point_type(kind)))
                            .attr("Href", format!("{}/{}/{}", self.base, collection(kind), p.id))
                            .attr("Name", format!("{}@{}", p.vm, name_time(p.created)))
                            .attr("UID", format!("urn:veeam:{}:{}", point_type(kind), p.id));
                        rows.push((p.created, entity, reference));
                    }
                }
                rows
            }
            t if t.eq_ignore_ascii_case("RestoreSession") => {
                let mut rows = Vec::new();
                for r in &self.restore_sessions {
                    let v = r.view(now);
                    let fields = [
                        ("vmdisplayname", r.vm.clone()),
                        ("type", "FileLevelRestore".to_owned()),
                        ("jobtype", "FileLevelRestore".to_owned()),
                        ("state", v.state.to_owned()),
                        ("result", v.result.clone()),
                    ];
                    if matches(&filter, &fields)? {
                        let reference = El::new("Ref")
                            .attr("Type", "RestoreSessionReference")
                            .attr("Href", format!("{}/restoreSessions/{}", self.base, r.id));
                        rows.push((r.created_wall, self.restore_session_entity(r, now), reference));
                    }
                }
                rows
            }
            other => return Err(err(400, format!("Query type {other} is not simulated"))),
        };
        if sort_field.is_some() {
            rows.sort_by_key(|(t, _, _)| *t);
            if descending {
                rows.reverse();
            }
        }
        let total = rows.len();
        let page_size: usize = get("pageSize").and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(total.max(1));
        let page: usize = get("page").and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(1);
        let rows: Vec<_> = rows.into_iter().skip((page - 1) * page_size).take(page_size).collect();
        let paging = El::new("PagingInfo")
            .attr("PageNum", page as i64)
            .attr("PageSize", page_size as i64)
            .attr("PagesCount", total.div_ceil(page_size) as i64);
        let plural = match qtype.to_ascii_lowercase().as_str() {
            "vmrestorepoint" => "VmRestorePoints",
            "vmreplicapoint" => "VmReplicaPoints",
            _ => "RestoreSessions",
        };
        let result = if entities {
            El::new("QueryResult").node(El::new("Entities").query_list(plural, rows.into_iter().map(|r| r.1).collect()))
        } else {
            El::new("QueryResult").query_list("Refs", rows.into_iter().map(|r| r.2).collect())
        };
        Ok(Body::Entity(result.node(paging)))
    }
}

type Filter = Vec<(String, bool, String)>;

/// Parses `Field==Value;Field!="quoted ""value"""`. Only AND (`;`) is simulated.
fn parse_filter(filter: &str) -> Result<Filter, SimError> {
    let mut terms = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = filter.chars().peekable();
    let mut raw_terms = Vec::new();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                current.push_str("\"\"");
                chars.next();
            }
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ';' if !quoted => raw_terms.push(std::mem::take(&mut current)),
            ',' | '(' | ')' if !quoted => {
                return Err(err(400, "OR and grouping are not simulated in filters"));
            }
            _ => current.push(c),
        }
    }
    if quoted {
        return Err(err(400, "Unterminated quote in filter"));
    }
    raw_terms.push(current);
    for term in raw_terms.into_iter().filter(|t| !t.trim().is_empty()) {
        let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
            (f, false, v)
        } else if let Some((f, v)) = term.split_once("==") {
            (f, true, v)
        } else {
            return Err(err(400, format!("Unsupported filter term {term}")));
        };
        let value = value.trim();
        let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            Some(inner) => inner.replace("\"\"", "\""),
            // Unquoted: the server ignores spaces (docs/em-api-notes.md §3.1).
            None => value.replace(' ', ""),
        };
        terms.push((field.trim().to_ascii_lowercase(), equal, value));
    }
    Ok(terms)
}

fn matches(filter: &Filter, fields: &[(&str, String)]) -> Result<bool, SimError> {
    for (field, equal, value) in filter {
        let actual = fields
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, v)| v)
            .ok_or_else(|| err(400, format!("Filtering by {field} is not simulated")))?;
        if actual.eq_ignore_ascii_case(value) != *equal {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        let f = parse_filter(r#"VmDisplayName=="my ""vm"";x";State!=Working"#).unwrap();
        assert_eq!(
            f,
            vec![("vmdisplayname".into(), true, "my \"vm\";x".into()), ("state".into(), false, "Working".into())]
        );
        assert!(parse_filter("a==1,b==2").is_err());
        assert!(parse_filter("a==\"x").is_err());
        assert!(parse_filter("a=1").is_err());
    }
}
