//! Resolving a request's column references and logic trees against a node's shape: plain
//! columns, JSON paths and computed fields; an unknown column is 42703, named as PostgREST names it.

use super::*;

pub(super) fn col_expr(shape: &Shape, alias: &str, field: &Field) -> Result<ColExpr, PlanError> {
    let computed = if shape.columns.contains(&field.name) {
        None
    } else {
        match shape.computed_field(&field.name) {
            Some(pair) => Some(pair),
            None => {
                return Err(PlanError::ColumnNotFound {
                    relation: shape.sql_label.clone(),
                    column: field.name.clone(),
                });
            }
        }
    };
    Ok(ColExpr {
        table_alias: alias.into(),
        column: field.name.clone(),
        json_path: field.json_path.clone(),
        computed,
    })
}

pub(super) fn logic_cond(shape: &Shape, alias: &str, tree: &LogicTree) -> Result<Cond, PlanError> {
    Ok(match tree {
        LogicTree::Filter(f) => Cond::Filter {
            expr: col_expr(shape, alias, &f.field)?,
            negated: f.negated,
            op: f.op.clone(),
        },
        LogicTree::Expr {
            negated,
            op,
            children,
        } => Cond::Logic {
            negated: *negated,
            op: *op,
            children: children
                .iter()
                .map(|c| logic_cond(shape, alias, c))
                .collect::<Result<_, _>>()?,
        },
    })
}
