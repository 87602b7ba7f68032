//! REST errors in PostgREST's dialect: one enum per stage (request, plan, execute), wrapped by
//! [`RestError`], each variant with a fixed HTTP status and a PGRSTxxx code, rendered as
//! `{code, message, details, hint}`. Database errors keep their SQLSTATE as `code` and map to HTTP
//! in [`sqlstate_status`].

use serde_json::{Value, json};

/// Errors of the request stage (PGRST1xx).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// PGRST100: the query string does not parse.
    Query { message: String, details: String },
    /// PGRST101: /rpc/ takes GET, HEAD and POST only.
    InvalidRpcMethod(String),
    /// PGRST102: the body is not valid JSON/CSV/form, or objects of a bulk insert differ in keys.
    InvalidBody(String),
    /// PGRST103: the Range header or limit/offset ask for rows past the end.
    InvalidRange,
    /// PGRST106: Accept-Profile/Content-Profile names a schema that is not exposed.
    UnacceptableSchema {
        schema: String,
        exposed: Vec<String>,
    },
    /// PGRST107 (415): Content-Type not understood.
    UnsupportedMediaType(String),
    /// PGRST107 (406): none of the Accept media types can be produced.
    NotAcceptable(String),
    /// PGRST117: the method does not apply to the path.
    UnsupportedMethod(String),
    /// PGRST122: unknown Prefer values under `handling=strict`.
    InvalidPreferences(Vec<String>),
    /// PGRST125: the path is not /, /name or /rpc/name.
    InvalidPath,
    /// PGRST413 (local): the body exceeds the size limit.
    BodyTooLarge,
    /// PGRST410 (local): an `Idempotency-Key` that is empty, longer than 255 or not text.
    InvalidIdempotencyKey,
}

/// Besides named parameters, the single unnamed one a POST's body could be (PGRST202's details).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SingleParam {
    /// A JSON body: a json or jsonb parameter, besides the named ones.
    Json,
    /// A raw body: only a parameter of its type (`text`, `xml` or `bytea`).
    Raw(&'static str),
}

/// Errors of the planning stage (PGRST1xx, PGRST2xx, 42703).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// PGRST205: no such table or view in the schema cache.
    TableNotFound {
        schema: String,
        name: String,
        suggestion: Option<String>,
    },
    /// 42703: a read names a column the relation does not have (PostgreSQL's own code, as PostgREST passes it on).
    ColumnNotFound { relation: String, column: String },
    /// PGRST204: a write names a column the relation does not have.
    WriteColumnNotFound { relation: String, column: String },
    /// PGRST200: no relationship for an embed.
    RelationshipNotFound {
        schema: String,
        parent: String,
        child: String,
        hint: Option<String>,
    },
    /// PGRST201: several relationships match an embed.
    AmbiguousRelationship {
        parent: String,
        child: String,
        candidates: Vec<Value>,
        hint: String,
    },
    /// PGRST202: no function matches the name and argument names.
    FunctionNotFound {
        schema: String,
        name: String,
        args: Vec<String>,
        /// A POST's body: PostgREST also looked for a single unnamed parameter of its type.
        single: Option<SingleParam>,
        hint: Option<String>,
    },
    /// PGRST203: several overloads match.
    AmbiguousFunction {
        schema: String,
        name: String,
        candidates: Vec<String>,
    },
    /// PGRST105: PUT must filter by every primary key column with eq, and nothing else.
    InvalidPut(String),
    /// PGRST114: PUT with limit/offset.
    PutLimit,
    /// PGRST115: PUT body primary key differs from the URL's.
    PutMismatch,
    /// PGRST108: a filter/order/limit names an embed that is not in `select`.
    EmbedNotSelected(String),
    /// PGRST118: ordering by a relation that is not to-one.
    OrderNotToOne { parent: String, child: String },
    /// PGRST100: the query is well formed but cannot apply (wrong operator use, cast name, ...).
    Invalid { message: String, details: String },
    /// PGRST102: the body does not fit the target.
    InvalidBody(String),
    /// PGRST123: aggregates are disabled (`pgrst.db_aggregates_enabled`).
    AggregatesDisabled,
    /// 42712 (PostgreSQL's code, as PostgREST passes it on): two embeds under one name.
    DuplicateEmbed(String),
    /// PGRST127: a feature doskaʼs REST door does not implement (yet).
    NotImplemented(String),
}

/// A database error, with what PostgreSQL said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError {
    pub sqlstate: String,
    pub message: String,
    pub details: Option<String>,
    pub hint: Option<String>,
    /// Whether the request was anonymous (42501 → 401 instead of 403).
    pub anonymous: bool,
}

/// The REST door's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestError {
    Request(RequestError),
    Plan(PlanError),
    Db(DbError),
    /// PGRST116: application/vnd.pgrst.object+json with not exactly one row.
    Singular {
        rows: i64,
    },
    /// PGRST124: more rows affected than `max-affected`.
    MaxAffected {
        affected: i64,
        max: i64,
    },
    /// PGRST111 / PGRST112: response.headers or response.status set by SQL are malformed.
    ResponseGuc {
        code: &'static str,
        message: String,
    },
    /// PGRST121: RAISE with SQLSTATE 'PGRST' whose message/detail are not the expected JSON.
    RaiseJson(String),
    /// PGRST301: the JWT is invalid (PGRST303 for claims).
    Jwt {
        code: &'static str,
        message: String,
    },
    /// PGRST000/PGRST003: the database cannot be reached or the pool is exhausted.
    Unavailable {
        code: &'static str,
        message: String,
    },
    /// PGRST002: the schema cache is not loaded.
    SchemaCacheNotLoaded,
    /// PGRST411 (local): the `Idempotency-Key` was used before with another request.
    IdempotencyKeyReused,
    /// A custom error raised with SQLSTATE 'PGRST': status, body and headers chosen in SQL.
    Custom {
        status: u16,
        body: Value,
        headers: Vec<(String, String)>,
    },
}

impl From<RequestError> for RestError {
    fn from(e: RequestError) -> Self {
        RestError::Request(e)
    }
}
impl From<PlanError> for RestError {
    fn from(e: PlanError) -> Self {
        RestError::Plan(e)
    }
}
impl From<DbError> for RestError {
    fn from(e: DbError) -> Self {
        RestError::Db(e)
    }
}

fn body(
    code: &str,
    message: impl Into<String>,
    details: Option<Value>,
    hint: Option<String>,
) -> Value {
    json!({ "code": code, "message": message.into(), "details": details, "hint": hint })
}

impl RequestError {
    fn status(&self) -> u16 {
        match self {
            RequestError::Query { .. } => 400,
            RequestError::InvalidRpcMethod(_) => 405,
            RequestError::InvalidBody(_) => 400,
            RequestError::InvalidRange => 416,
            RequestError::UnacceptableSchema { .. } => 406,
            RequestError::UnsupportedMediaType(_) => 415,
            RequestError::NotAcceptable(_) => 406,
            RequestError::UnsupportedMethod(_) => 405,
            RequestError::InvalidPreferences(_) => 400,
            RequestError::InvalidPath => 404,
            RequestError::BodyTooLarge => 413,
            RequestError::InvalidIdempotencyKey => 400,
        }
    }
    fn body(&self) -> Value {
        match self {
            RequestError::Query { message, details } => {
                body("PGRST100", message.clone(), Some(json!(details)), None)
            }
            RequestError::InvalidRpcMethod(m) => body(
                "PGRST101",
                format!("Cannot use the {m} method on RPC"),
                None,
                None,
            ),
            RequestError::InvalidBody(d) => body("PGRST102", d.clone(), None, None),
            RequestError::InvalidRange => {
                body("PGRST103", "Requested range not satisfiable", None, None)
            }
            RequestError::UnacceptableSchema { schema, exposed } => body(
                "PGRST106",
                format!(
                    "The schema must be one of the following: {}",
                    exposed.join(", ")
                ),
                Some(json!(format!("Invalid schema: {schema}"))),
                None,
            ),
            RequestError::UnsupportedMediaType(t) => body(
                "PGRST107",
                format!("None of these media types are available: {t}"),
                None,
                None,
            ),
            RequestError::NotAcceptable(t) => body(
                "PGRST107",
                format!("None of these media types are available: {t}"),
                None,
                None,
            ),
            RequestError::UnsupportedMethod(m) => body(
                "PGRST117",
                format!("Unsupported HTTP method: {m}"),
                None,
                None,
            ),
            RequestError::InvalidPreferences(v) => body(
                "PGRST122",
                "Invalid preferences given with handling=strict",
                Some(json!(format!("Invalid preferences: {}", v.join(", ")))),
                None,
            ),
            RequestError::InvalidPath => body(
                "PGRST125",
                "Invalid path specified in request URL",
                None,
                None,
            ),
            RequestError::BodyTooLarge => {
                body("PGRST413", "The request body is too large", None, None)
            }
            RequestError::InvalidIdempotencyKey => body(
                "PGRST410",
                "Invalid Idempotency-Key header",
                Some(json!("The key must be 1 to 255 characters of text")),
                None,
            ),
        }
    }
}

impl PlanError {
    fn status(&self) -> u16 {
        match self {
            PlanError::TableNotFound { .. } => 404,
            PlanError::ColumnNotFound { .. } => 400,
            PlanError::WriteColumnNotFound { .. } => 400,
            PlanError::RelationshipNotFound { .. } => 400,
            PlanError::AmbiguousRelationship { .. } => 300,
            PlanError::FunctionNotFound { .. } => 404,
            PlanError::AmbiguousFunction { .. } => 300,
            PlanError::InvalidPut(_) => 405,
            PlanError::PutLimit => 400,
            PlanError::PutMismatch => 400,
            PlanError::EmbedNotSelected(_) => 400,
            PlanError::OrderNotToOne { .. } => 400,
            PlanError::Invalid { .. } => 400,
            PlanError::InvalidBody(_) => 400,
            PlanError::AggregatesDisabled => 400,
            PlanError::NotImplemented(_) => 400,
            PlanError::DuplicateEmbed(_) => 400,
        }
    }
    fn body(&self) -> Value {
        match self {
            PlanError::TableNotFound { schema, name, suggestion } => body(
                "PGRST205",
                format!("Could not find the table '{schema}.{name}' in the schema cache"),
                None,
                suggestion.as_ref().map(|s| format!("Perhaps you meant the table '{schema}.{s}'")),
            ),
            PlanError::ColumnNotFound { relation, column } => body("42703", format!("column {relation}.{column} does not exist"), None, None),
            PlanError::WriteColumnNotFound { relation, column } => {
                body("PGRST204", format!("Could not find the '{column}' column of '{relation}' in the schema cache"), None, None)
            }
            PlanError::RelationshipNotFound { schema, parent, child, hint } => body(
                "PGRST200",
                format!("Could not find a relationship between '{parent}' and '{child}' in the schema cache"),
                Some(json!(match hint {
                    Some(h) => format!("Searched for a foreign key relationship between '{parent}' and '{child}' using the hint '{h}' in the schema '{schema}', but no matches were found."),
                    None => format!("Searched for a foreign key relationship between '{parent}' and '{child}' in the schema '{schema}', but no matches were found."),
                })),
                None,
            ),
            PlanError::AmbiguousRelationship { parent, child, candidates, hint } => body(
                "PGRST201",
                format!("Could not embed because more than one relationship was found for '{parent}' and '{child}'"),
                Some(Value::Array(candidates.clone())),
                Some(hint.clone()),
            ),
            PlanError::FunctionNotFound { schema, name, args, single, hint } => {
                // PostgREST 13's words: "without parameters" when none were given, else the names;
                // a raw body looked only for a single unnamed parameter of its type.
                let (in_message, in_details) = if args.is_empty() {
                    (" without parameters".to_string(), " without parameters".to_string())
                } else {
                    let s = if args.len() > 1 { "s" } else { "" };
                    (format!("({})", args.join(", ")), format!(" with parameter{s} {}", args.join(", ")))
                };
                let (in_message, in_details) = match single {
                    None => (in_message, in_details),
                    Some(SingleParam::Json) => (in_message, format!("{in_details} or with a single unnamed json/jsonb parameter")),
                    Some(SingleParam::Raw(ty)) => (String::new(), format!(" with a single unnamed {ty} parameter")),
                };
                body(
                    "PGRST202",
                    format!("Could not find the function {schema}.{name}{in_message} in the schema cache"),
                    Some(json!(format!("Searched for the function {schema}.{name}{in_details}, but no matches were found in the schema cache."))),
                    hint.clone(),
                )
            }
            PlanError::AmbiguousFunction { schema, name, candidates } => body(
                "PGRST203",
                format!("Could not choose the best candidate function between: {}", candidates.iter().map(|c| format!("{schema}.{name}({c})")).collect::<Vec<_>>().join(", ")),
                None,
                Some("Try renaming the parameters or the function itself in the database so function overloading can be resolved".into()),
            ),
            PlanError::InvalidPut(d) => body("PGRST105", "Filters must include all and only primary key columns with 'eq' operators", Some(json!(d)), None),
            PlanError::PutLimit => body("PGRST114", "limit/offset querystring parameters are not allowed for PUT", None, None),
            PlanError::PutMismatch => body("PGRST115", "Payload values do not match URL in primary key column(s)", None, None),
            PlanError::EmbedNotSelected(r) => body(
                "PGRST108",
                format!("'{r}' is not an embedded resource in this request"),
                None,
                Some(format!("Verify that '{r}' is included in the 'select' query parameter.")),
            ),
            PlanError::OrderNotToOne { parent, child } => body(
                "PGRST118",
                format!("A related order on '{child}' is not possible"),
                Some(json!(format!("'{parent}' and '{child}' do not form a many-to-one or one-to-one relationship"))),
                None,
            ),
            PlanError::Invalid { message, details } => body("PGRST100", message.clone(), Some(json!(details)), None),
            PlanError::InvalidBody(d) => body("PGRST102", d.clone(), None, None),
            PlanError::AggregatesDisabled => body("PGRST123", "Use of aggregate functions is not allowed", None, None),
            PlanError::DuplicateEmbed(alias) => body("42712", format!("table name \"{alias}\" specified more than once"), None, None),
            PlanError::NotImplemented(f) => body("PGRST127", "Feature not implemented", Some(json!(f)), None),
        }
    }
}

/// SQLSTATE → HTTP status, as PostgREST maps them. Unknown codes are server errors.
pub fn sqlstate_status(code: &str, anonymous: bool) -> u16 {
    if let Some(n) = code.strip_prefix("PT") {
        // PTnnn: the status chosen by the function that raised it.
        if let Ok(s) = n.parse::<u16>()
            && (100..600).contains(&s)
        {
            return s;
        }
    }
    match code {
        "23503" => 409,              // foreign_key_violation
        "23505" => 409,              // unique_violation
        "25006" => 405,              // read_only_sql_transaction
        "42883" => 404,              // undefined_function
        "42P01" => 404,              // undefined_table
        "42P17" => 500,              // infinite_recursion (policy loops)
        "42501" if anonymous => 401, // insufficient_privilege, no token
        "42501" => 403,              // insufficient_privilege, with a token
        "P0001" => 400,              // raise_exception (RAISE EXCEPTION default)
        "57014" => 504,              // query_canceled (statement timeout)
        "53400" => 500,              // configuration_limit_exceeded
        _ => match code.get(..2).unwrap_or("") {
            "08" => 503, // connection_exception
            "09" => 500, // triggered_action_exception
            "0L" => 403, // invalid_grantor
            "0P" => 403, // invalid_role_specification
            "22" => 400, // data_exception: invalid input syntax, out of range, ...
            "23" => 400, // integrity_constraint_violation: not null, check, exclusion
            "25" => 500, // invalid_transaction_state
            "28" => 403, // invalid_authorization_specification
            "2D" => 500, // invalid_transaction_termination
            "38" => 500, // external_routine_exception
            "39" => 500, // external_routine_invocation_exception
            "3B" => 500, // savepoint_exception
            "40" => 500, // transaction_rollback
            "42" => 400, // syntax_error_or_access_rule_violation: undefined column, bad cast, ...
            "53" => 503, // insufficient_resources
            "54" => 500, // program_limit_exceeded
            "55" => 500, // object_not_in_prerequisite_state
            "57" => 500, // operator_intervention
            "58" => 500, // system_error
            "F0" => 500, // config_file_error
            "HV" => 500, // fdw_error
            "P0" => 500, // plpgsql_error
            "XX" => 500, // internal_error
            _ => 500,    // anything else is our fault until shown otherwise
        },
    }
}

impl RestError {
    pub fn status(&self) -> u16 {
        match self {
            RestError::Request(e) => e.status(),
            RestError::Plan(e) => e.status(),
            RestError::Db(e) => sqlstate_status(&e.sqlstate, e.anonymous),
            RestError::Singular { .. } => 406,
            RestError::MaxAffected { .. } => 400,
            RestError::ResponseGuc { .. } => 500,
            RestError::RaiseJson(_) => 500,
            RestError::Jwt { .. } => 401,
            RestError::Unavailable { code, .. } => {
                if *code == "PGRST003" {
                    504
                } else {
                    503
                }
            }
            RestError::SchemaCacheNotLoaded => 503,
            RestError::IdempotencyKeyReused => 422,
            RestError::Custom { status, .. } => *status,
        }
    }

    pub fn body(&self) -> Value {
        match self {
            RestError::Request(e) => e.body(),
            RestError::Plan(e) => e.body(),
            RestError::Db(e) => {
                json!({ "code": e.sqlstate, "message": e.message, "details": e.details, "hint": e.hint })
            }
            RestError::Singular { rows } => body(
                "PGRST116",
                "Cannot coerce the result to a single JSON object",
                Some(json!(format!("The result contains {rows} rows"))),
                None,
            ),
            RestError::MaxAffected { affected, max } => body(
                "PGRST124",
                "Query result exceeds max-affected preference constraint",
                Some(json!(format!(
                    "The query affects {affected} rows, more than the limit of {max}"
                ))),
                None,
            ),
            RestError::ResponseGuc { code, message } => body(code, message.clone(), None, None),
            RestError::RaiseJson(d) => body(
                "PGRST121",
                "Could not parse JSON in the \"RAISE SQLSTATE 'PGRST'\" error",
                Some(json!(d)),
                None,
            ),
            RestError::Jwt { code, message } => body(code, message.clone(), None, None),
            RestError::Unavailable { code, message } => body(code, message.clone(), None, None),
            RestError::SchemaCacheNotLoaded => body(
                "PGRST002",
                "Could not query the database for the schema cache. Retrying.",
                None,
                None,
            ),
            RestError::IdempotencyKeyReused => body(
                "PGRST411",
                "Idempotency-Key was already used with another request",
                Some(json!(
                    "A key names one request: the same method, path, query, headers and body"
                )),
                Some("Send a new key for a new request".into()),
            ),
            RestError::Custom { body, .. } => body.clone(),
        }
    }

    /// Extra headers this error carries (`WWW-Authenticate` for JWT errors, custom ones from SQL).
    pub fn headers(&self) -> Vec<(String, String)> {
        match self {
            RestError::Jwt { message, .. } => {
                vec![(
                    "WWW-Authenticate".into(),
                    format!(
                        "Bearer error=\"invalid_token\", error_description=\"{}\"",
                        message.replace('"', "'")
                    ),
                )]
            }
            RestError::Custom { headers, .. } => headers.clone(),
            RestError::Db(e) if e.sqlstate == "42501" && e.anonymous => {
                vec![("WWW-Authenticate".into(), "Bearer".into())]
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstate_table() {
        let cases = [
            ("23505", false, 409),
            ("23503", false, 409),
            ("23502", false, 400),
            ("22P02", false, 400),
            ("42501", true, 401),
            ("42501", false, 403),
            ("42P01", false, 404),
            ("42883", false, 404),
            ("42703", false, 400),
            ("P0001", false, 400),
            ("PT402", false, 402),
            ("PT999", false, 500),
            ("25006", false, 405),
            ("08006", false, 503),
            ("XX000", false, 500),
            ("ZZ999", false, 500),
        ];
        for (code, anon, want) in cases {
            assert_eq!(sqlstate_status(code, anon), want, "{code}");
        }
    }

    #[test]
    fn bodies_have_the_four_keys() {
        let errs: Vec<RestError> = vec![
            RequestError::InvalidPath.into(),
            PlanError::PutLimit.into(),
            RestError::Singular { rows: 2 },
            RestError::Db(DbError {
                sqlstate: "23505".into(),
                message: "dup".into(),
                details: None,
                hint: None,
                anonymous: false,
            }),
        ];
        for e in errs {
            let b = e.body();
            for k in ["code", "message", "details", "hint"] {
                assert!(b.get(k).is_some(), "{k} missing in {b}");
            }
        }
    }
}
