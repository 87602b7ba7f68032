//! Planning of writes: insert and upsert (POST, PUT), update (PATCH) and delete. Rejects
//! bodies that do not fit the target (PGRST102, PGRST204) and malformed PUTs (PGRST105/114/115).

use super::*;

pub(super) fn mutate(
    ctx: &mut Ctx,
    req: &ApiRequest,
    payload: &Payload,
    rel: &Relation,
) -> Result<MutatePlan, PlanError> {
    let shape = relation_shape(ctx.cache, rel);
    let return_ = req.prefer.return_.unwrap_or_default();
    // Only reading rows back needs SELECT on them; counting works from `RETURNING 1`, so an
    // insert-only policy (no SELECT) still allows `return=minimal`, with or without a count.
    let returning = return_ != ReturnPref::Minimal;
    // Root filters select the rows to change; the rows read back are all of those rows.
    let mut read_req = req.clone();
    read_req.filters.retain(|(p, _)| !p.is_empty());
    read_req.logic.retain(|(p, _)| !p.is_empty());
    let read = if return_ == ReturnPref::Representation {
        Some(read_node(
            ctx,
            &read_req,
            &shape,
            Source::Cte,
            "t0".into(),
            (None, None),
        )?)
    } else {
        None
    };
    let check_col = |c: &str| -> Result<(), PlanError> {
        if rel.column(c).is_none() {
            return Err(PlanError::WriteColumnNotFound {
                relation: rel.name.name.clone(),
                column: c.into(),
            });
        }
        Ok(())
    };
    let root_conds = |alias: &str| -> Result<Vec<Cond>, PlanError> {
        let mut conds = Vec::new();
        for (path, f) in &req.filters {
            if path.is_empty() {
                conds.push(Cond::Filter {
                    expr: col_expr(&shape, alias, &f.field)?,
                    negated: f.negated,
                    op: f.op.clone(),
                });
            }
        }
        for (path, t) in &req.logic {
            if path.is_empty() {
                conds.push(logic_cond(&shape, alias, t)?);
            }
        }
        Ok(conds)
    };
    let (mutation, conds, payload_text) = match req.action {
        Action::Insert | Action::Upsert => {
            let rows = payload_rows(payload)?;
            let mut columns: Vec<String> = match &req.columns {
                Some(cols) => cols.clone(),
                None => rows
                    .first()
                    .map(|r| r.keys().cloned().collect())
                    .unwrap_or_default(),
            };
            if req.columns.is_none() {
                let first: BTreeSet<&String> = columns.iter().collect();
                if rows
                    .iter()
                    .any(|r| r.keys().collect::<BTreeSet<_>>() != first)
                {
                    return Err(PlanError::InvalidBody("All object keys must match".into()));
                }
            }
            columns.dedup();
            for c in &columns {
                check_col(c)?;
            }
            let mut on_conflict = None;
            if req.action == Action::Upsert {
                if rel.primary_key.is_empty() {
                    return Err(PlanError::InvalidPut("the table has no primary key".into()));
                }
                if req
                    .paging
                    .values()
                    .any(|p| p.limit.is_some() || p.offset.is_some())
                {
                    return Err(PlanError::PutLimit);
                }
                check_put(req, rel, &rows)?;
                on_conflict = Some((rel.primary_key.clone(), Resolution::MergeDuplicates));
            } else if let Some(res) = req.prefer.resolution {
                let target = req
                    .on_conflict
                    .clone()
                    .unwrap_or_else(|| rel.primary_key.clone());
                for c in &target {
                    check_col(c)?;
                }
                if target.is_empty() {
                    return Err(PlanError::Invalid {
                        message: "on_conflict needs columns".into(),
                        details: "the table has no primary key; give on_conflict=".into(),
                    });
                }
                on_conflict = Some((target, res));
            }
            let update_columns = columns.clone();
            let cols = columns
                .into_iter()
                .map(|c| {
                    if req.prefer.missing_default {
                        let default = rel.column(&c).and_then(|col| col.default.clone());
                        InsertColumn::OrDefault { name: c, default }
                    } else {
                        InsertColumn::Payload(c)
                    }
                })
                .collect();
            let text = Value::Array(rows.into_iter().map(Value::Object).collect()).to_string();
            (
                Mutation::Insert {
                    columns: cols,
                    on_conflict,
                    update_columns,
                },
                Vec::new(),
                text,
            )
        }
        Action::Update => {
            let obj = match payload {
                Payload::Json(Value::Object(o)) => o.clone(),
                Payload::Json(Value::Array(a)) if a.len() == 1 && a[0].is_object() => {
                    a[0].as_object().cloned().unwrap_or_default()
                }
                _ => {
                    return Err(PlanError::InvalidBody(
                        "a PATCH body must be one JSON object".into(),
                    ));
                }
            };
            let columns: Vec<String> = match &req.columns {
                Some(cols) => cols.clone(),
                None => obj.keys().cloned().collect(),
            };
            for c in &columns {
                check_col(c)?;
            }
            (
                Mutation::Update { columns },
                root_conds("t0")?,
                Value::Object(obj).to_string(),
            )
        }
        _ => (Mutation::Delete, root_conds("t0")?, String::new()),
    };
    let paging = req.paging.get(&Vec::new()).copied().unwrap_or_default();
    let limited = if matches!(req.action, Action::Update | Action::Delete)
        && (paging.limit.is_some() || paging.offset.is_some())
    {
        let mut order = Vec::new();
        for (path, terms) in &req.order {
            if !path.is_empty() {
                continue;
            }
            for t in terms {
                if t.relation.is_some() {
                    return Err(PlanError::NotImplemented(
                        "ordering a limited update or delete by a related table".into(),
                    ));
                }
                order.push(OrderBy {
                    expr: OrderExpr::Column(col_expr(&shape, "pgrst_lim", &t.field)?),
                    direction: t.direction,
                    nulls: t.nulls,
                });
            }
        }
        Some(LimitedScope {
            conds: root_conds("pgrst_lim")?,
            order,
            limit: paging.limit,
            offset: paging.offset,
        })
    } else {
        None
    };
    Ok(MutatePlan {
        limited,
        target: rel.name.clone(),
        mutation,
        conds,
        payload: payload_text,
        returning,
        read,
        location_columns: if return_ == ReturnPref::HeadersOnly {
            rel.primary_key.clone()
        } else {
            Vec::new()
        },
    })
}

fn payload_rows(payload: &Payload) -> Result<Vec<serde_json::Map<String, Value>>, PlanError> {
    match payload {
        Payload::Json(Value::Object(o)) => Ok(vec![o.clone()]),
        Payload::Json(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_object().cloned().ok_or_else(|| {
                    PlanError::InvalidBody(
                        "every element of the array must be a JSON object".into(),
                    )
                })
            })
            .collect(),
        Payload::None => Err(PlanError::InvalidBody("Empty or invalid json".into())),
        _ => Err(PlanError::InvalidBody(
            "the body must be a JSON object or an array of objects".into(),
        )),
    }
}

/// PUT: the filters are exactly `pk=eq.v` for every primary key column, and the body agrees.
fn check_put(
    req: &ApiRequest,
    rel: &Relation,
    rows: &[serde_json::Map<String, Value>],
) -> Result<(), PlanError> {
    if rows.len() != 1 {
        return Err(PlanError::InvalidBody(
            "PUT takes exactly one object".into(),
        ));
    }
    let mut url_vals = Vec::new();
    for (path, f) in &req.filters {
        let ok = path.is_empty()
            && !f.negated
            && f.field.json_path.is_empty()
            && rel.primary_key.contains(&f.field.name)
            && matches!(
                &f.op,
                Operation::Simple {
                    op: crate::rest::grammar::SimpleOp::Eq,
                    quantifier: None,
                    ..
                }
            );
        if !ok {
            return Err(PlanError::InvalidPut(format!("filter on {}", f.field.name)));
        }
        if let Operation::Simple { value, .. } = &f.op {
            url_vals.push((f.field.name.clone(), value.clone()));
        }
    }
    if !req.logic.is_empty()
        || url_vals.len() != rel.primary_key.len()
        || rel
            .primary_key
            .iter()
            .any(|k| !url_vals.iter().any(|(n, _)| n == k))
    {
        return Err(PlanError::InvalidPut(
            "every primary key column needs one eq filter".into(),
        ));
    }
    for (name, v) in url_vals {
        let body_v = match rows[0].get(&name) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => return Err(PlanError::PutMismatch),
            Some(other) => other.to_string(),
        };
        if body_v != v {
            return Err(PlanError::PutMismatch);
        }
    }
    Ok(())
}
