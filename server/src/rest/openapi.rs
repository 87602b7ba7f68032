//! `GET /rest/v1/`: a Swagger 2.0 description (as PostgREST serves) of the tables, views and
//! functions of the schema that the caller's role may use. Privileges are asked of PostgreSQL in
//! the caller's own read-only transaction; the shape comes from the schema cache.

use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Map, Value, json};

use super::error::RestError;
use super::execute::db_error;
use super::schema::{Column, SchemaCache};
use crate::db::caller::{RequestInfo, RequestTx};
use crate::http::body::{Body, full};
use crate::jwt::Caller;
use crate::state::AppState;

const VISIBLE_SQL: &str = "SELECT coalesce(array_agg(c.relname::text), '{}') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
    WHERE n.nspname = $1 AND c.relkind IN ('r','v','m','f','p') AND has_table_privilege(c.oid, 'SELECT, INSERT, UPDATE, DELETE') \
    UNION ALL SELECT coalesce(array_agg(DISTINCT p.proname::text), '{}') FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
    WHERE n.nspname = $1 AND p.prokind = 'f' AND has_function_privilege(p.oid, 'EXECUTE')";

pub async fn serve(
    state: &AppState,
    cache: &SchemaCache,
    schema: &str,
    caller: &Caller,
    info: RequestInfo<'_>,
) -> Result<Response<Body>, RestError> {
    let anonymous = caller.role == "anon";
    let tx = RequestTx::begin(&state.pool, caller, &info, true, 0)
        .await
        .map_err(|e| match e {
            crate::db::caller::TxError::Db(e) => db_error(&e, anonymous),
            crate::db::caller::TxError::Pool(e) => super::execute::pool_error(&e),
        })?;
    let rows = tx
        .client()
        .query(VISIBLE_SQL, &[&schema])
        .await
        .map_err(|e| db_error(&e, anonymous))?;
    tx.rollback().await.ok();
    let tables: Vec<String> = rows.first().map(|r| r.get(0)).unwrap_or_default();
    let functions: Vec<String> = rows.get(1).map(|r| r.get(0)).unwrap_or_default();
    let doc = document(cache, schema, &tables, &functions);
    let mut res = Response::new(full(doc.to_string()));
    *res.status_mut() = StatusCode::OK;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openapi+json; charset=utf-8"),
    );
    Ok(res)
}

fn json_type(c: &Column) -> Value {
    let t = c.type_sql.as_str();
    let (ty, format) = match t {
        "integer" | "smallint" | "bigint" => ("integer", t),
        "numeric" | "real" | "double precision" => ("number", t),
        "boolean" => ("boolean", t),
        "json" | "jsonb" => ("object", t),
        _ if t.ends_with("[]") => ("array", t),
        _ => ("string", t),
    };
    let mut v = json!({ "type": ty, "format": format });
    if let Some(d) = &c.default {
        v["default"] = Value::String(d.clone());
    }
    v
}

/// The document for `schema`, listing only `tables` and `functions` the caller may use.
pub fn document(
    cache: &SchemaCache,
    schema: &str,
    tables: &[String],
    functions: &[String],
) -> Value {
    let mut paths = Map::new();
    let mut definitions = Map::new();
    paths.insert("/".into(), json!({ "get": { "summary": "OpenAPI description (this document)", "produces": ["application/openapi+json", "application/json"], "responses": { "200": { "description": "OK" } } } }));
    let mut names: Vec<&String> = tables.iter().collect();
    names.sort();
    for name in names {
        let Some(rel) = cache.relation(schema, name) else {
            continue;
        };
        let props: Map<String, Value> = rel
            .columns
            .iter()
            .map(|c| (c.name.clone(), json_type(c)))
            .collect();
        let required: Vec<&String> = rel
            .columns
            .iter()
            .filter(|c| !c.nullable && c.default.is_none() && !c.generated)
            .map(|c| &c.name)
            .collect();
        definitions.insert(
            name.clone(),
            json!({ "type": "object", "properties": props, "required": required }),
        );
        let ok = json!({ "200": { "description": "OK", "schema": { "type": "array", "items": { "$ref": format!("#/definitions/{name}") } } } });
        paths.insert(
            format!("/{name}"),
            json!({
                "get": { "tags": [name], "responses": ok },
                "post": { "tags": [name], "responses": { "201": { "description": "Created" } } },
                "patch": { "tags": [name], "responses": { "204": { "description": "No Content" } } },
                "delete": { "tags": [name], "responses": { "204": { "description": "No Content" } } },
            }),
        );
    }
    let mut fnames: Vec<&String> = functions.iter().collect();
    fnames.sort();
    for name in fnames {
        let Some(overloads) = cache
            .functions
            .get(&super::schema::QualifiedName::new(schema, name))
        else {
            continue;
        };
        let params: Map<String, Value> = overloads
            .iter()
            .flat_map(|f| f.params.iter())
            .filter(|p| !p.name.is_empty())
            .map(|p| (p.name.clone(), json!({ "format": p.type_sql })))
            .collect();
        paths.insert(
            format!("/rpc/{name}"),
            json!({
                "post": { "tags": ["(rpc) ".to_string() + name], "parameters": [{ "in": "body", "name": "args", "required": true, "schema": { "type": "object", "properties": params } }], "responses": { "200": { "description": "OK" } } },
                "get": { "tags": ["(rpc) ".to_string() + name], "responses": { "200": { "description": "OK" } } },
            }),
        );
    }
    json!({
        "swagger": "2.0",
        "info": { "title": "doska REST API", "description": "PostgREST-compatible API of the exposed schema", "version": env!("CARGO_PKG_VERSION") },
        "basePath": "/rest/v1",
        "schemes": ["http", "https"],
        "consumes": ["application/json", "application/vnd.pgrst.object+json", "text/csv"],
        "produces": ["application/json", "application/vnd.pgrst.object+json", "text/csv"],
        "paths": paths,
        "definitions": definitions,
    })
}
