//! Restore points and `/query` with its filter language.

use super::*;
use crate::render::Link;

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

    /// `GET /vmRestorePoints`, `GET /vmReplicaPoints`: references to every point of the kind.
    pub(crate) fn point_list(&self, kind: PointKind) -> Reply {
        let refs = self.inventory.points.iter().filter(|p| p.kind == kind).map(|p| self.point_ref(p));
        Ok(Body::References(refs.collect()))
    }

    /// A point's reference, with the `Alternate` link to its entity.
    fn point_ref(&self, p: &Point) -> El {
        let (kind, id) = (p.kind, &p.id);
        El::new("Ref")
            .attr("Type", format!("{}Reference", point_type(kind)))
            .attr("Href", format!("{}/{}/{id}", self.base, collection(kind)))
            .attr("Name", format!("{}@{}", p.vm, name_time(p.created)))
            .attr("UID", format!("urn:veeam:{}:{id}", point_type(kind)))
            .links(vec![link(
                "Alternate",
                Some(point_type(kind)),
                format!("{}/{}/{id}?format=Entity", self.base, collection(kind)),
            )])
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
        let by_end = sort_field.is_some_and(|f| f.eq_ignore_ascii_case("EndTime"));
        if let Some(f) = sort_field.filter(|f| !f.eq_ignore_ascii_case("CreationTime") && !by_end) {
            return Err(err(400, format!("Sorting by {f} is not simulated")));
        }
        let mut rows: Vec<Row> = match qtype {
            t if t.eq_ignore_ascii_case("VmRestorePoint") => self.point_rows(PointKind::Backup, &filter)?,
            t if t.eq_ignore_ascii_case("VmReplicaPoint") => self.point_rows(PointKind::Replica, &filter)?,
            t if t.eq_ignore_ascii_case("RestoreSession") => self.restore_session_rows(&filter, now)?,
            t if t.eq_ignore_ascii_case("BackupJobSession") => {
                self.backup_session_rows(&mut |fields: &[(&str, String)]| matches(&filter, fields))?
            }
            other => return Err(err(400, format!("Query type {other} is not simulated"))),
        };
        if sort_field.is_some() {
            // Sessions still running have no end time: they sort after the ended ones.
            rows.sort_by_key(
                |(created, end, _, _)| if by_end { (end.is_none(), *end) } else { (false, Some(*created)) },
            );
            if descending {
                rows.reverse();
            }
        }
        let total = rows.len();
        let page_size: usize = get("pageSize").and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(total.max(1));
        let page: usize = get("page").and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(1);
        let rows: Vec<_> = rows.into_iter().skip((page - 1) * page_size).take(page_size).collect();
        let pages = total.div_ceil(page_size).max(1);
        let paging = El::new("PagingInfo")
            .attr("PageNum", page as i64)
            .attr("PageSize", page_size as i64)
            .attr("PagesCount", pages as i64)
            .links(self.paging_links(params, page, pages));
        let plural = match qtype.to_ascii_lowercase().as_str() {
            "vmrestorepoint" => "VmRestorePoints",
            "vmreplicapoint" => "VmReplicaPoints",
            "backupjobsession" => "BackupJobSessions",
            _ => "RestoreSessions",
        };
        let result = if entities {
            El::new("QueryResult").node(El::new("Entities").query_list(plural, rows.into_iter().map(|r| r.2).collect()))
        } else {
            El::new("QueryResult").query_list("Refs", rows.into_iter().map(|r| r.3).collect())
        };
        Ok(Body::Entity(result.node(paging)))
    }

    /// The `VmRestorePoint` / `VmReplicaPoint` rows the filter selects.
    fn point_rows(&self, kind: PointKind, filter: &Filter) -> Result<Vec<Row>, SimError> {
        let mut rows = Vec::new();
        for p in self.inventory.points.iter().filter(|p| p.kind == kind) {
            let fields = [
                ("vmdisplayname", p.vm.clone()),
                ("vmname", p.vm.clone()),
                ("uid", p.id.clone()),
                ("creationtime", rfc3339(p.created)),
            ];
            if matches(filter, &fields)? {
                rows.push((p.created, None, self.point_entity(p, point_type(kind)), self.point_ref(p)));
            }
        }
        Ok(rows)
    }

    /// The `RestoreSession` rows the filter selects.
    fn restore_session_rows(&self, filter: &Filter, now: Instant) -> Result<Vec<Row>, SimError> {
        let mut rows = Vec::new();
        for r in self.recent_restore_sessions() {
            let v = r.view(now);
            let fields = [
                ("vmdisplayname", r.vm.clone()),
                ("type", r.job_type().to_owned()),
                ("jobtype", r.job_type().to_owned()),
                ("state", v.state.to_owned()),
                ("result", v.result.clone()),
                ("uid", r.id.clone()),
                ("creationtime", rfc3339(r.created_wall)),
                ("endtime", v.end.map(rfc3339).unwrap_or_default()),
            ];
            if matches(filter, &fields)? {
                let reference = El::new("Ref")
                    .attr("Type", "RestoreSessionReference")
                    .attr("Href", format!("{}/restoreSessions/{}", self.base, r.id))
                    .attr("UID", format!("urn:veeam:RestoreSession:{}", r.id))
                    .links(vec![link(
                        "Alternate",
                        Some("RestoreSession"),
                        format!("{}/restoreSessions/{}?format=Entity", self.base, r.id),
                    )]);
                rows.push((r.created_wall, v.end, self.restore_session_entity(r, now), reference));
            }
        }
        Ok(rows)
    }
}

impl World {
    /// `PagingInfo`'s `First`, `Previous`, `Next` and `Last` links: the same query on another
    /// page (`pagesize_and_page.html`: "returns URLs to pages with results").
    fn paging_links(&self, params: &HashMap<String, String>, page: usize, pages: usize) -> Vec<Link> {
        let mut kept: Vec<(&String, &String)> =
            params.iter().filter(|(k, _)| !k.eq_ignore_ascii_case("page")).collect();
        kept.sort();
        let query: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(kept).finish();
        let href = |n: usize| format!("{}/query?{query}&page={n}", self.base);
        let mut links = vec![link("First", Some("QueryResult"), href(1))];
        if page > 1 {
            links.push(link("Previous", Some("QueryResult"), href(page - 1)));
        }
        if page < pages {
            links.push(link("Next", Some("QueryResult"), href(page + 1)));
        }
        links.push(link("Last", Some("QueryResult"), href(pages)));
        links
    }
}

/// One query result: creation time, end time (for sorting), entity, reference.
pub(super) type Row = (SystemTime, Option<SystemTime>, El, El);

/// Whether a row with these `(lower-case field, value)` pairs passes the query's filter.
pub(super) type Keep<'a> = &'a mut dyn FnMut(&[(&str, String)]) -> Result<bool, SimError>;

type Filter = Vec<(String, Op, String)>;

/// The documented comparisons (`query_comparison.html`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// Fields compared as times; EM "accepts only UTC-formatted DateTime values".
const TIME_FIELDS: &[&str] = &["creationtime", "endtime"];

/// Parses `Field==Value;Field!="quoted ""value""";EndTime>=2026-01-01T00:00:00`. Only AND
/// (`;`) is simulated.
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
        let Some((field, op, value)) = split_term(&term) else {
            return Err(err(400, format!("Unsupported filter term {term}")));
        };
        let value = value.trim();
        let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            Some(inner) => inner.replace("\"\"", "\""),
            // Unquoted: the server ignores spaces (docs/em-api-notes.md §3.1).
            None => value.replace(' ', ""),
        };
        let field = field.trim().to_ascii_lowercase();
        if TIME_FIELDS.contains(&field.as_str()) && humantime::parse_rfc3339_weak(&value).is_err() {
            return Err(err(400, format!("Filter value {value:?} for {field} is not a UTC DateTime")));
        }
        if !matches!(op, Op::Eq | Op::Ne) && !TIME_FIELDS.contains(&field.as_str()) {
            return Err(err(400, format!("Ordering comparisons on {field} are not simulated")));
        }
        terms.push((field, op, value));
    }
    Ok(terms)
}

/// Splits `Field<op>Value` at the first operator outside quotes: a quoted value may itself
/// hold `==` or `>=`.
fn split_term(term: &str) -> Option<(&str, Op, &str)> {
    // Two-character operators first: `>=` must not be read as `>`.
    let ops = [(">=", Op::Ge), ("<=", Op::Le), ("!=", Op::Ne), ("==", Op::Eq), (">", Op::Gt), ("<", Op::Lt)];
    let mut quoted = false;
    for (i, c) in term.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if !quoted && let Some((token, op)) = ops.iter().find(|(token, _)| term[i..].starts_with(token)) {
            return Some((&term[..i], *op, &term[i + token.len()..]));
        }
    }
    None
}

/// Parses `filter` and applies it to one row's `fields` (lower-case names): how `/query`
/// reads its `filter` parameter, reachable on its own for the fuzzer.
pub(crate) fn filter_holds(filter: &str, fields: &[(&str, String)]) -> Result<bool, SimError> {
    matches(&parse_filter(filter)?, fields)
}

fn matches(filter: &Filter, fields: &[(&str, String)]) -> Result<bool, SimError> {
    for (field, op, value) in filter {
        let actual = fields
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, v)| v)
            .ok_or_else(|| err(400, format!("Filtering by {field} is not simulated")))?;
        let holds = if TIME_FIELDS.contains(&field.as_str()) {
            // A missing time (a session still running has no end) satisfies no comparison.
            let (Ok(a), Ok(b)) = (humantime::parse_rfc3339_weak(actual), humantime::parse_rfc3339_weak(value)) else {
                return Ok(false);
            };
            match op {
                Op::Eq => a == b,
                Op::Ne => a != b,
                Op::Gt => a > b,
                Op::Ge => a >= b,
                Op::Lt => a < b,
                Op::Le => a <= b,
            }
        } else {
            actual.eq_ignore_ascii_case(value) == (*op == Op::Eq)
        };
        if !holds {
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
            vec![("vmdisplayname".into(), Op::Eq, "my \"vm\";x".into()), ("state".into(), Op::Ne, "Working".into())]
        );
        assert!(parse_filter("a==1,b==2").is_err());
        assert!(parse_filter("a==\"x").is_err());
        assert!(parse_filter("a=1").is_err());
        assert!(parse_filter("State>=Working").is_err(), "ordering only on times");
        assert!(parse_filter("EndTime>=yesterday").is_err(), "times must be UTC DateTimes");
    }

    #[test]
    fn time_comparisons_follow_the_documented_operators() {
        let f = parse_filter("EndTime>=2026-01-01T10:00:00;CreationTime<2026-01-01T10:00:00Z").unwrap();
        assert_eq!(f[0].1, Op::Ge);
        assert_eq!(f[1].1, Op::Lt);
        let row = |created: &str, end: &str| vec![("creationtime", created.to_owned()), ("endtime", end.to_owned())];
        assert!(matches(&f, &row("2026-01-01T09:00:00Z", "2026-01-01T10:00:00Z")).unwrap());
        assert!(!matches(&f, &row("2026-01-01T09:00:00Z", "2026-01-01T09:59:59Z")).unwrap());
        assert!(!matches(&f, &row("2026-01-01T10:00:00Z", "2026-01-01T11:00:00Z")).unwrap());
        assert!(!matches(&f, &row("2026-01-01T09:00:00Z", "")).unwrap(), "a running session has no end time");
    }
}
