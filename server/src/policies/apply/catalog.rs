//! What `apply` reads from and writes to the catalog besides the compiled SQL: the roles and
//! memberships that exist, the ledger of what the policy files made (`doska.policy_objects`), and the
//! tables, columns and policies a declaration names.

use super::*;

pub(super) struct RoleInfo {
    pub(super) name: String,
    /// Can log in, or is superuser / bypasses RLS / creates roles or databases / replicates.
    pub(super) powerful: bool,
}

pub(super) async fn read_roles(tx: &Transaction<'_>) -> Result<Vec<RoleInfo>, ApplyError> {
    Ok(tx
        .query(
            "select rolname::text, rolcanlogin or rolsuper or rolbypassrls or rolcreaterole
                    or rolcreatedb or rolreplication
               from pg_roles",
            &[],
        )
        .await?
        .iter()
        .map(|r| RoleInfo {
            name: r.get(0),
            powerful: r.get(1),
        })
        .collect())
}

/// (role, member) pairs.
pub(super) async fn read_memberships(
    tx: &Transaction<'_>,
) -> Result<HashSet<(String, String)>, ApplyError> {
    Ok(tx
        .query(
            "select r.rolname::text, m.rolname::text from pg_auth_members a
               join pg_roles r on r.oid = a.roleid join pg_roles m on m.oid = a.member",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

pub(super) async fn read_ledger(tx: &Transaction<'_>) -> Result<Vec<Owned>, ApplyError> {
    Ok(tx
        .query(
            "select kind, schema_name, table_name, name, privilege, column_name, fingerprint
               from doska.policy_objects order by kind, schema_name, table_name, name",
            &[],
        )
        .await?
        .iter()
        .map(|r| Owned {
            kind: r.get(0),
            schema: r.get(1),
            table: r.get(2),
            name: r.get(3),
            privilege: r.get(4),
            column: r.get(5),
            fingerprint: r.get(6),
        })
        .collect())
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn own(
    tx: &Transaction<'_>,
    kind: &str,
    schema: &str,
    table: &str,
    name: &str,
    privilege: &str,
    column: &str,
    fingerprint: &str,
    loc: &Loc,
) -> Result<(), ApplyError> {
    tx.execute(
        "insert into doska.policy_objects
           (kind, schema_name, table_name, name, privilege, column_name, fingerprint, source)
         values ($1, $2, $3, $4, $5, $6, $7, $8)
         on conflict (kind, schema_name, table_name, name, privilege, column_name)
         do update set fingerprint = excluded.fingerprint, source = excluded.source",
        &[
            &kind,
            &schema,
            &table,
            &name,
            &privilege,
            &column,
            &fingerprint,
            &loc.to_string(),
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn disown(tx: &Transaction<'_>, o: &Owned) -> Result<(), ApplyError> {
    tx.execute(
        "delete from doska.policy_objects where kind = $1 and schema_name = $2 and table_name = $3
            and name = $4 and privilege = $5 and column_name = $6",
        &[
            &o.kind,
            &o.schema,
            &o.table,
            &o.name,
            &o.privilege,
            &o.column,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn policy_exists(
    tx: &Transaction<'_>,
    schema: &str,
    table: &str,
    name: &str,
) -> Result<bool, ApplyError> {
    Ok(tx
        .query_opt(
            "select 1 from pg_policy p join pg_class c on c.oid = p.polrelid
               join pg_namespace n on n.oid = c.relnamespace
              where n.nspname = $1 and c.relname = $2 and p.polname = $3",
            &[&schema, &table, &name],
        )
        .await?
        .is_some())
}

/// A table (or partitioned table) by name, with what `apply` needs to know of it.
pub(super) async fn read_table(
    tx: &Transaction<'_>,
    schema: &str,
    table: &str,
) -> Result<Option<TableInfo>, ApplyError> {
    let Some(row) = tx
        .query_opt(
            "select c.oid, c.relrowsecurity, c.relforcerowsecurity
               from pg_class c join pg_namespace n on n.oid = c.relnamespace
              where n.nspname = $1 and c.relname = $2 and c.relkind in ('r', 'p')",
            &[&schema, &table],
        )
        .await?
    else {
        return Ok(None);
    };
    let oid: u32 = row.get(0);
    let columns = tx
        .query(
            "select attname::text from pg_attribute
              where attrelid = $1 and attnum > 0 and not attisdropped",
            &[&oid],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let policies = tx
        .query(
            "select polname::text from pg_policy where polrelid = $1",
            &[&oid],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let held = tx
        .query(
            "select coalesce(r.rolname::text, 'public'), a.privilege_type, ''::text
               from pg_class c cross join lateral aclexplode(c.relacl) a
               left join pg_roles r on r.oid = a.grantee
              where c.oid = $1
             union all
             select coalesce(r.rolname::text, 'public'), a.privilege_type, at.attname::text
               from pg_attribute at cross join lateral aclexplode(at.attacl) a
               left join pg_roles r on r.oid = a.grantee
              where at.attrelid = $1 and at.attnum > 0 and not at.attisdropped",
            &[&oid],
        )
        .await?
        .iter()
        .filter_map(|r| {
            let p: String = r.get(1);
            Privilege::from_sql(&p).map(|p| (r.get(0), p, r.get(2)))
        })
        .collect();
    Ok(Some(TableInfo {
        rls: row.get(1),
        force: row.get(2),
        columns,
        policies,
        held,
    }))
}
