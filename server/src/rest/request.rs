//! Parses an HTTP request (method, path after `/rest/v1`, query string, headers) into an
//! [`ApiRequest`]. Pure: no schema, no I/O. Rejects malformed query strings (PGRST100), unknown
//! methods (PGRST117), unsupported media types (PGRST107), bad `Prefer` under `handling=strict`
//! (PGRST122) and unknown paths (PGRST125). The query string is split and decoded by
//! `http::query` (`form_urlencoded`); PostgREST's grammar inside the values stays hand-written in
//! [`super::grammar`], as no crate speaks it.

use std::collections::BTreeMap;

use http::{HeaderMap, Method};

use super::error::RequestError;
use super::grammar::{self, Field, Filter, LogicOp, LogicTree, OrderTerm, SelectItem};

/// What the request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `GET /` – the OpenAPI description.
    Root,
    /// `/<table-or-view>`
    Relation(String),
    /// `/rpc/<function>`
    Rpc(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// GET, or HEAD when `headers_only`.
    Read { headers_only: bool },
    /// POST on a relation.
    Insert,
    /// PATCH
    Update,
    /// PUT
    Upsert,
    /// DELETE
    Delete,
    /// OPTIONS
    Info,
    /// GET/HEAD/POST on /rpc/fn.
    Call { method: CallMethod },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallMethod {
    Get,
    Head,
    Post,
}

/// A path of embed names (or aliases) from the root, e.g. `["actors"]` for `actors.name=eq.x`.
pub type EmbedPath = Vec<String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReturnPref {
    #[default]
    Minimal,
    HeadersOnly,
    Representation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountPref {
    Exact,
    Planned,
    Estimated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    MergeDuplicates,
    IgnoreDuplicates,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxPref {
    Commit,
    Rollback,
}

/// The parsed `Prefer` header(s). `applied` keeps the recognised values, in order, for
/// `Preference-Applied`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Preferences {
    pub return_: Option<ReturnPref>,
    pub count: Option<CountPref>,
    pub resolution: Option<Resolution>,
    pub missing_default: bool,
    pub tx: Option<TxPref>,
    pub strict: bool,
    pub max_affected: Option<i64>,
    pub single_object: bool,
    pub timezone: Option<String>,
    pub applied: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    Json,
    /// `application/vnd.pgrst.object+json`: exactly one row, as an object.
    SingleObject,
    Csv,
    /// `application/geo+json`: a GeoJSON FeatureCollection of the rows (PostGIS's `ST_AsGeoJSON`).
    GeoJson,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accept {
    pub media: MediaType,
    pub strip_nulls: bool,
    /// `application/vnd.pgrst.plan[+json|+text]`: the execution plan instead of the result.
    pub plan: Option<ExplainRequest>,
}

/// What `Accept: application/vnd.pgrst.plan…` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExplainRequest {
    pub json: bool,
    pub analyze: bool,
    pub verbose: bool,
    pub settings: bool,
    pub buffers: bool,
    pub wal: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    Json,
    Csv,
    Form,
    /// text/plain, text/xml, application/octet-stream: raw body for a single unnamed RPC argument.
    Raw(RawBody),
}

/// Which raw body: PostgREST looks for a single unnamed parameter of the matching type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawBody {
    /// text/plain: a `text` parameter.
    Text,
    /// text/xml: an `xml` parameter.
    Xml,
    /// application/octet-stream: a `bytea` parameter.
    Bytes,
}

impl RawBody {
    /// The type of the single unnamed parameter that takes this body.
    pub fn param_type(self) -> &'static str {
        match self {
            RawBody::Text => "text",
            RawBody::Xml => "xml",
            RawBody::Bytes => "bytea",
        }
    }
}

/// `limit`/`offset` of one level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Paging {
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiRequest {
    pub action: Action,
    pub target: Target,
    /// The schema asked for with Accept-Profile/Content-Profile, if any.
    pub profile: Option<String>,
    /// `select=`; None means `*`.
    pub select: Option<Vec<SelectItem>>,
    pub filters: Vec<(EmbedPath, Filter)>,
    pub logic: Vec<(EmbedPath, LogicTree)>,
    pub order: Vec<(EmbedPath, Vec<OrderTerm>)>,
    pub paging: BTreeMap<EmbedPath, Paging>,
    /// Query parameters that are RPC arguments (GET/HEAD on /rpc/ only), repeated keys kept.
    pub rpc_args: Vec<(String, String)>,
    pub on_conflict: Option<Vec<String>>,
    pub columns: Option<Vec<String>>,
    pub prefer: Preferences,
    pub accept: Accept,
    pub content_type: ContentType,
    /// The `Range` header, `first-last` (last optional), for reads.
    pub range: Option<(i64, Option<i64>)>,
}

/// Parses everything but the body.
pub fn parse(
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<ApiRequest, RequestError> {
    let target = parse_path(path)?;
    let action = match (&target, method.as_str()) {
        (Target::Rpc(_), "GET") => Action::Call {
            method: CallMethod::Get,
        },
        (Target::Rpc(_), "HEAD") => Action::Call {
            method: CallMethod::Head,
        },
        (Target::Rpc(_), "POST") => Action::Call {
            method: CallMethod::Post,
        },
        (Target::Rpc(_), "OPTIONS") | (_, "OPTIONS") => Action::Info,
        (Target::Rpc(_), _) => return Err(RequestError::InvalidRpcMethod(method.to_string())),
        (_, "GET") => Action::Read {
            headers_only: false,
        },
        (_, "HEAD") => Action::Read { headers_only: true },
        (Target::Relation(_), "POST") => Action::Insert,
        (Target::Relation(_), "PATCH") => Action::Update,
        (Target::Relation(_), "PUT") => Action::Upsert,
        (Target::Relation(_), "DELETE") => Action::Delete,
        _ => return Err(RequestError::UnsupportedMethod(method.to_string())),
    };
    let is_rpc = matches!(target, Target::Rpc(_));
    let pairs = crate::http::query::pairs(query.unwrap_or(""));

    let mut req = ApiRequest {
        action,
        target,
        profile: None,
        select: None,
        filters: Vec::new(),
        logic: Vec::new(),
        order: Vec::new(),
        paging: BTreeMap::new(),
        rpc_args: Vec::new(),
        on_conflict: None,
        columns: None,
        prefer: parse_prefer(headers)?,
        accept: parse_accept(headers)?,
        content_type: parse_content_type(headers, method)?,
        range: parse_range(headers),
    };
    req.profile = profile_header(headers, method);

    for (k, v) in pairs {
        let q = |e: String| RequestError::Query {
            message: format!("\"failed to parse {k} ({v})\""),
            details: e,
        };
        match k.as_str() {
            "select" => req.select = Some(grammar::parse_select(&v).map_err(q)?),
            "columns" => req.columns = Some(parse_columns(&v).map_err(q)?),
            "on_conflict" => req.on_conflict = Some(parse_columns(&v).map_err(q)?),
            _ => {
                let mut parts = grammar::split_key(&k);
                let last = parts.pop().unwrap_or_default();
                // `not.or` / `not.and` put "not" in the path; take it back.
                let (negated, last) = if parts.last().is_some_and(|p| p == "not")
                    && (last == "or" || last == "and")
                {
                    parts.pop();
                    (true, last)
                } else {
                    (false, last)
                };
                let path = parts;
                match last.as_str() {
                    "order" => req.order.push((path, grammar::parse_order(&v).map_err(q)?)),
                    "limit" => {
                        req.paging.entry(path).or_default().limit =
                            Some(parse_nonneg(&v).map_err(q)?)
                    }
                    "offset" => {
                        req.paging.entry(path).or_default().offset =
                            Some(parse_nonneg(&v).map_err(q)?)
                    }
                    "or" | "and" => {
                        let op = if last == "or" {
                            LogicOp::Or
                        } else {
                            LogicOp::And
                        };
                        req.logic
                            .push((path, grammar::parse_logic(op, negated, &v).map_err(q)?));
                    }
                    _ if is_rpc && path.is_empty() && !has_operator(&v) => {
                        req.rpc_args.push((k.clone(), v.clone()))
                    }
                    _ => {
                        // `rel=is.null` with a bare embed name is an embed filter, decided by the planner;
                        // here it parses as a filter on a field called `rel`.
                        let field: Field = grammar::parse_field(&last).map_err(q)?;
                        let filter = grammar::parse_filter(field, &v).map_err(q)?;
                        req.filters.push((path, filter));
                    }
                }
            }
        }
    }
    Ok(req)
}

/// Whether a value starts with a filter operator, which tells filters from RPC arguments.
fn has_operator(v: &str) -> bool {
    let v = v.strip_prefix("not.").unwrap_or(v);
    let word: String = v.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    let after = &v[word.len()..];
    let known = matches!(
        word.as_str(),
        "eq" | "neq"
            | "gt"
            | "gte"
            | "lt"
            | "lte"
            | "like"
            | "ilike"
            | "match"
            | "imatch"
            | "in"
            | "is"
            | "isdistinct"
            | "fts"
            | "plfts"
            | "phfts"
            | "wfts"
            | "cs"
            | "cd"
            | "ov"
            | "sl"
            | "sr"
            | "nxl"
            | "nxr"
            | "adj"
    );
    known && (after.starts_with('.') || after.starts_with('('))
}

fn parse_nonneg(v: &str) -> Result<i64, String> {
    match v.trim().parse::<i64>() {
        Ok(n) if n >= 0 => Ok(n),
        _ => Err(format!("\"{v}\" is not a non-negative integer")),
    }
}

fn parse_columns(v: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for part in v.split(',') {
        let name = part.trim().trim_matches('"');
        if name.is_empty() {
            return Err("empty column name".into());
        }
        out.push(name.to_string());
    }
    Ok(out)
}

fn parse_path(path: &str) -> Result<Target, RequestError> {
    let trimmed = path.trim_start_matches('/');
    let segs: Vec<String> = if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed
            .split('/')
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect()
    };
    match segs.as_slice() {
        [] => Ok(Target::Root),
        [t] if !t.is_empty() => Ok(Target::Relation(t.clone())),
        [r, f] if r == "rpc" && !f.is_empty() => Ok(Target::Rpc(f.clone())),
        [t, e] if e.is_empty() && !t.is_empty() && t != "rpc" => Ok(Target::Relation(t.clone())),
        _ => Err(RequestError::InvalidPath),
    }
}

fn header_values<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = &'a str> {
    headers.get_all(name).iter().filter_map(|v| v.to_str().ok())
}

fn profile_header(headers: &HeaderMap, method: &Method) -> Option<String> {
    let name = if method == Method::GET || method == Method::HEAD {
        "accept-profile"
    } else {
        "content-profile"
    };
    header_values(headers, name)
        .next()
        .map(|s| s.trim().to_string())
}

/// Parses `Prefer`, several headers or comma-separated values alike (fetch joins appended
/// headers with ", "). Unknown values are ignored unless `handling=strict`.
pub fn parse_prefer(headers: &HeaderMap) -> Result<Preferences, RequestError> {
    let mut p = Preferences::default();
    let mut invalid = Vec::new();
    for raw in header_values(headers, "prefer").flat_map(|v| v.split(',')) {
        let item = raw.trim();
        if item.is_empty() {
            continue;
        }
        let (k, v) = item
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .unwrap_or((item, ""));
        let ok = match (k, v) {
            ("return", "minimal") => set(&mut p.return_, ReturnPref::Minimal),
            ("return", "headers-only") => set(&mut p.return_, ReturnPref::HeadersOnly),
            ("return", "representation") => set(&mut p.return_, ReturnPref::Representation),
            ("count", "exact") => set(&mut p.count, CountPref::Exact),
            ("count", "planned") => set(&mut p.count, CountPref::Planned),
            ("count", "estimated") => set(&mut p.count, CountPref::Estimated),
            ("resolution", "merge-duplicates") => {
                set(&mut p.resolution, Resolution::MergeDuplicates)
            }
            ("resolution", "ignore-duplicates") => {
                set(&mut p.resolution, Resolution::IgnoreDuplicates)
            }
            ("missing", "default") => {
                p.missing_default = true;
                true
            }
            ("missing", "null") => true,
            ("tx", "commit") => set(&mut p.tx, TxPref::Commit),
            ("tx", "rollback") => set(&mut p.tx, TxPref::Rollback),
            ("handling", "strict") => {
                p.strict = true;
                true
            }
            ("handling", "lenient") => true,
            ("max-affected", n) => match n.parse::<i64>() {
                Ok(n) if n >= 0 => {
                    p.max_affected = Some(n);
                    true
                }
                _ => false,
            },
            ("params", "single-object") => {
                p.single_object = true;
                true
            }
            ("timezone", tz) if !tz.is_empty() => {
                p.timezone = Some(tz.to_string());
                true
            }
            _ => false,
        };
        if ok {
            p.applied.push(format!("{k}={v}"));
        } else {
            invalid.push(item.to_string());
        }
    }
    if p.strict && !invalid.is_empty() {
        return Err(RequestError::InvalidPreferences(invalid));
    }
    Ok(p)
}

fn set<T>(slot: &mut Option<T>, v: T) -> bool {
    if slot.is_none() {
        *slot = Some(v);
    }
    true
}

/// Picks the first supported media type of `Accept` (no header, `*/*` → JSON).
pub fn parse_accept(headers: &HeaderMap) -> Result<Accept, RequestError> {
    let all: Vec<&str> = header_values(headers, "accept")
        .flat_map(|v| v.split(','))
        .collect();
    if all.is_empty() {
        return Ok(Accept {
            media: MediaType::Json,
            strip_nulls: false,
            plan: None,
        });
    }
    for raw in &all {
        let mut parts = raw.split(';').map(str::trim);
        let mt = parts.next().unwrap_or("").to_ascii_lowercase();
        if let Some(format) = mt.strip_prefix("application/vnd.pgrst.plan") {
            let json = match format {
                "+json" => true,
                "" | "+text" => false,
                _ => continue,
            };
            let params: Vec<&str> = raw.split(';').skip(1).map(str::trim).collect();
            let for_media = params
                .iter()
                .find_map(|p| p.strip_prefix("for="))
                .map(|v| v.trim_matches('"').to_ascii_lowercase());
            let options = params
                .iter()
                .find_map(|p| p.strip_prefix("options="))
                .unwrap_or("");
            let has = |o: &str| options.split('|').any(|x| x.trim() == o);
            let media = match for_media.as_deref() {
                Some("application/vnd.pgrst.object+json" | "application/vnd.pgrst.object") => {
                    MediaType::SingleObject
                }
                Some("text/csv") => MediaType::Csv,
                Some("application/geo+json") => MediaType::GeoJson,
                _ => MediaType::Json,
            };
            let plan = ExplainRequest {
                json,
                analyze: has("analyze"),
                verbose: has("verbose"),
                settings: has("settings"),
                buffers: has("buffers"),
                wal: has("wal"),
            };
            return Ok(Accept {
                media,
                strip_nulls: false,
                plan: Some(plan),
            });
        }
        let strip_nulls = parts.any(|p| p.eq_ignore_ascii_case("nulls=stripped"));
        let media = match mt.as_str() {
            ""
            | "*/*"
            | "application/*"
            | "application/json"
            | "application/vnd.pgrst.array+json"
            | "application/vnd.pgrst.array"
            | "application/openapi+json" => MediaType::Json,
            "application/vnd.pgrst.object+json" | "application/vnd.pgrst.object" => {
                MediaType::SingleObject
            }
            "text/csv" | "text/*" => MediaType::Csv,
            "application/geo+json" => MediaType::GeoJson,
            _ => continue,
        };
        return Ok(Accept {
            media,
            strip_nulls,
            plan: None,
        });
    }
    Err(RequestError::NotAcceptable(all.join(",")))
}

fn parse_content_type(headers: &HeaderMap, method: &Method) -> Result<ContentType, RequestError> {
    let Some(v) = header_values(headers, "content-type").next() else {
        return Ok(ContentType::Json);
    };
    if method == Method::GET
        || method == Method::HEAD
        || method == Method::DELETE
        || method == Method::OPTIONS
    {
        return Ok(ContentType::Json);
    }
    let mt = v
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mt.as_str() {
        ""
        | "application/json"
        | "application/vnd.pgrst.object+json"
        | "application/vnd.pgrst.object"
        | "application/vnd.pgrst.array+json" => Ok(ContentType::Json),
        "text/csv" => Ok(ContentType::Csv),
        "application/x-www-form-urlencoded" => Ok(ContentType::Form),
        "text/plain" => Ok(ContentType::Raw(RawBody::Text)),
        "text/xml" => Ok(ContentType::Raw(RawBody::Xml)),
        "application/octet-stream" => Ok(ContentType::Raw(RawBody::Bytes)),
        _ => Err(RequestError::UnsupportedMediaType(v.to_string())),
    }
}

/// `Range: items=0-9`, `Range: 0-9` or `0-`; anything else is ignored, as PostgREST does.
fn parse_range(headers: &HeaderMap) -> Option<(i64, Option<i64>)> {
    let v = header_values(headers, "range").next()?.trim();
    let v = v.split_once('=').map_or(v, |(_, r)| r);
    let (a, b) = v.split_once('-')?;
    let first = a.trim().parse::<i64>().ok().filter(|n| *n >= 0)?;
    let last = b.trim();
    if last.is_empty() {
        return Some((first, None));
    }
    Some((first, Some(last.parse::<i64>().ok()?)))
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
