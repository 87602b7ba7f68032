//! What doska needs of a PostgreSQL server it did not start: logical WAL, replication senders and
//! slots, and a user able to create the API roles (superuser, or roles prepared by a DBA). Rejects a
//! server lacking any of them with a message saying exactly what to set.

use tokio_postgres::Client;

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("checking the database: {}", super::migrate::describe(.0))]
    Db(tokio_postgres::Error),
    #[error("the database is not ready for doska: {} (see docs/operations.md)", .0.join("; "))]
    Missing(Vec<String>),
}

/// Checks an external server. Returns whether its user is a superuser.
pub async fn external(client: &Client) -> Result<bool, CheckError> {
    let row = client
        .query_one(
            "select current_setting('wal_level'),
                    current_setting('max_wal_senders')::int,
                    current_setting('max_replication_slots')::int,
                    r.rolsuper, r.rolreplication, r.rolcreaterole, current_user::text,
                    (select count(*) from pg_roles where rolname in ('anon','authenticated','service_role','authenticator'))::int
               from pg_roles r where r.rolname = current_user",
            &[],
        )
        .await
        .map_err(CheckError::Db)?;
    let wal_level: String = row.get(0);
    let senders: i32 = row.get(1);
    let slots: i32 = row.get(2);
    let superuser: bool = row.get(3);
    let replication: bool = row.get(4);
    let user: String = row.get(6);
    let roles_ready: i32 = row.get(7);
    let mut missing = Vec::new();
    if wal_level != "logical" {
        missing.push(format!(
            "wal_level is '{wal_level}': set wal_level = logical (ALTER SYSTEM SET wal_level = logical) and restart PostgreSQL"
        ));
    }
    if senders < 1 {
        missing.push("max_wal_senders is 0: set it to at least 4 and restart PostgreSQL".into());
    }
    if slots < 1 {
        missing
            .push("max_replication_slots is 0: set it to at least 4 and restart PostgreSQL".into());
    }
    if !superuser {
        if !replication {
            missing.push(format!(
                "user {user} lacks REPLICATION: as a superuser run ALTER ROLE {user} REPLICATION"
            ));
        }
        if roles_ready < 4 {
            missing.push(format!(
                "user {user} is not a superuser and the roles anon, authenticated, service_role, authenticator do not all exist: connect as a superuser once, or have one run the role setup in docs/operations.md"
            ));
        }
    }
    if missing.is_empty() {
        Ok(superuser)
    } else {
        Err(CheckError::Missing(missing))
    }
}
