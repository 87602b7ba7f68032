//! Planning of RPC: overload resolution by argument names, the single unnamed json/text
//! argument, and the shape of the result. Rejects unknown (PGRST202) and ambiguous (PGRST203) calls.

use super::*;
use crate::rest::error::SingleParam;
use crate::rest::fuzzy::FuzzySet;
use crate::rest::request::ContentType;

pub(super) fn call(
    ctx: &mut Ctx,
    req: &ApiRequest,
    payload: &Payload,
    name: &str,
    method: CallMethod,
    paging: (Option<i64>, Option<i64>),
) -> Result<(CallPlan, Volatility), PlanError> {
    let qn = QualifiedName::new(ctx.schema, name);
    let overloads = ctx
        .cache
        .functions
        .get(&qn)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    // The arguments given: JSON object keys (POST) or query parameters (GET).
    let (args_obj, single_body): (serde_json::Map<String, Value>, Option<&Payload>) = match method {
        CallMethod::Post => match payload {
            Payload::Json(Value::Object(o)) => (o.clone(), Some(payload)),
            Payload::None => (serde_json::Map::new(), None),
            p => (serde_json::Map::new(), Some(p)),
        },
        _ => {
            let mut m = serde_json::Map::new();
            for (k, v) in &req.rpc_args {
                match m.get_mut(k) {
                    Some(Value::Array(a)) => a.push(Value::String(v.clone())),
                    Some(prev) => {
                        *prev = Value::Array(vec![prev.clone(), Value::String(v.clone())])
                    }
                    None => {
                        m.insert(k.clone(), Value::String(v.clone()));
                    }
                }
            }
            (m, None)
        }
    };
    let given: BTreeSet<&String> = args_obj.keys().collect();
    let post = method == CallMethod::Post;
    // PostgREST's rules (`findProc`): only callable overloads count; the argument names must be
    // the required parameters plus any of the optional ones.
    let fits = |f: &&Function| {
        if !callable(f) {
            return false;
        }
        if f.params.is_empty() {
            return given.is_empty() && !(post && matches!(req.content_type, ContentType::Raw(_)));
        }
        given.iter().all(|g| f.params.iter().any(|p| &&p.name == g))
            && f.params
                .iter()
                .all(|p| p.has_default || given.contains(&p.name))
    };
    let single = |f: &&Function| {
        callable(f)
            && f.params.len() == 1
            && (f.params[0].name.is_empty() || req.prefer.single_object)
            && single_arg_type(&f.params[0].type_sql)
    };
    let mut matching: Vec<&Function> = overloads.iter().filter(fits).collect();
    let mut use_single = false;
    if matching.is_empty() && post {
        matching = overloads.iter().filter(single).collect();
        use_single = !matching.is_empty();
    }
    let f = match matching.len() {
        1 => matching[0],
        0 => {
            let args: Vec<String> = given.iter().map(|s| s.to_string()).collect();
            let single = match req.content_type {
                _ if !post => None,
                ContentType::Json => Some(SingleParam::Json),
                ContentType::Raw(raw) => Some(SingleParam::Raw(raw.param_type())),
                ContentType::Csv | ContentType::Form => None,
            };
            // A raw body looked only for a single unnamed parameter: PostgREST gives no hint.
            let hint = match single {
                Some(SingleParam::Raw(_)) => None,
                _ => no_rpc_hint(ctx.cache, ctx.schema, name, &args),
            };
            return Err(PlanError::FunctionNotFound {
                schema: ctx.schema.into(),
                name: name.into(),
                args,
                single,
                hint,
            });
        }
        _ => {
            let mut candidates: Vec<String> = matching
                .iter()
                .map(|f| {
                    f.params
                        .iter()
                        .map(|p| format!("{} => {}", p.name, p.type_sql))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .collect();
            candidates.sort();
            return Err(PlanError::AmbiguousFunction {
                schema: ctx.schema.into(),
                name: name.into(),
                candidates,
            });
        }
    };
    // A function whose one parameter is unnamed takes the whole body (or the query's arguments
    // as an object) positionally, as PostgREST calls it (`OnePosParam`).
    let positional = f.params.len() == 1 && f.params[0].name.is_empty();
    let (args, payload_text) = if use_single || positional {
        let text = match single_body {
            Some(Payload::Json(v)) => v.to_string(),
            Some(Payload::Raw(s)) => s.clone(),
            _ if method == CallMethod::Post => "null".into(),
            _ => Value::Object(args_obj).to_string(),
        };
        (
            CallArgs::Single {
                type_sql: f.params[0].type_sql.clone(),
            },
            text,
        )
    } else {
        let names: Vec<(String, String, bool)> = f
            .params
            .iter()
            .filter(|p| given.contains(&p.name))
            .map(|p| (p.name.clone(), p.type_sql.clone(), p.variadic))
            .collect();
        (CallArgs::Named(names), Value::Object(args_obj).to_string())
    };
    let (shape, read) = match &f.returns {
        Returns::Void => (CallShape::Void, None),
        Returns::Scalar => (
            if f.returns_set {
                CallShape::ScalarSet
            } else {
                CallShape::Scalar
            },
            None,
        ),
        Returns::Composite { columns, relation } => {
            let shape = Shape {
                label: name.into(),
                sql_label: name.into(),
                relation: relation.clone(),
                columns: columns.clone(),
                computed: relation
                    .as_ref()
                    .map(|r| computed_of(ctx.cache, r))
                    .unwrap_or_default(),
            };
            let node = read_node(ctx, req, &shape, Source::Cte, "t0".into(), paging)?;
            (
                if f.returns_set {
                    CallShape::Rows
                } else {
                    CallShape::Row
                },
                Some(node),
            )
        }
    };
    Ok((
        CallPlan {
            function: f.name.clone(),
            args,
            payload: payload_text,
            shape,
            read,
        },
        f.volatility,
    ))
}

/// The least score a function name needs to be suggested. PostgREST 13.0 used the library's 0.33;
/// from 14.6 (#4675, "leaking table and function names") names need 0.75, parameter lists keep
/// 0.33. postgrest-js's snapshots were recorded with the latter: `blurb_message` (no callable
/// function of that name) gets no hint, though `get_messages` scores 7/13.
const NAME_MIN_SCORE: f64 = 0.75;

/// PostgREST's PGRST202 hint (`noRpcHint`). When callable functions of that name exist, the
/// closest of their parameter lists to the arguments given; else the closest callable function
/// name in the schema. Functions are listed by name, as PostgREST lists its schema cache's keys
/// (whose hash order only decides between equal scores).
fn no_rpc_hint(cache: &SchemaCache, schema: &str, name: &str, args: &[String]) -> Option<String> {
    let overloads: Vec<Vec<&str>> = cache
        .functions
        .get(&QualifiedName::new(schema, name))
        .into_iter()
        .flatten()
        .filter(|f| callable(f))
        .map(|f| f.params.iter().map(|p| p.name.as_str()).collect())
        .collect();
    let mut names: Vec<&str> = if overloads.is_empty() {
        cache
            .functions
            .iter()
            .filter(|(q, fs)| q.schema == schema && fs.iter().any(callable))
            .map(|(q, _)| q.name.as_str())
            .collect()
    } else {
        Vec::new()
    };
    names.sort_unstable();
    rpc_hint(schema, name, args, &names, &overloads)
}

/// The hint from the names of the schema's callable functions, or (when some exist) the
/// parameter names of each callable overload of `name`.
pub(super) fn rpc_hint(
    schema: &str,
    name: &str,
    args: &[String],
    functions: &[&str],
    overloads: &[Vec<&str>],
) -> Option<String> {
    let found = if overloads.is_empty() {
        FuzzySet::from_list(functions).get_one_with_min_score(NAME_MIN_SCORE, name)?
    } else {
        let lists: Vec<String> = overloads.iter().map(|p| param_list(p)).collect();
        let found = FuzzySet::from_list(&lists).get_one(&param_list(args))?;
        format!("{name}{found}")
    };
    Some(format!(
        "Perhaps you meant to call the function {schema}.{found}"
    ))
}

/// Parameter names sorted and joined as PostgREST compares them: `(name, param, val)`.
fn param_list<S: AsRef<str>>(names: &[S]) -> String {
    let mut names: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
    names.sort_unstable();
    format!("({})", names.join(", "))
}

/// Types that take the whole body as a single unnamed argument.
fn single_arg_type(t: &str) -> bool {
    matches!(t, "json" | "jsonb" | "text" | "bytea" | "xml")
}

/// Whether PostgREST serves the function at all: every parameter named, or a single unnamed one
/// of a type that takes the whole body (a function of a table row is a computed field, not an RPC).
fn callable(f: &Function) -> bool {
    match f.params.iter().filter(|p| p.name.is_empty()).count() {
        0 => true,
        1 => f.params.len() == 1 && single_arg_type(&f.params[0].type_sql),
        _ => false,
    }
}
