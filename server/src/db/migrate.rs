//! The app's migrations: every `*.sql` in the migrations folder, in file-name order, each in its own
//! transaction, recorded with its SHA-256 in `doska.migrations`. Rejects a changed applied file (by
//! name), and reports a failing one with its file, PostgreSQL's message and the line it points at;
//! a failing file leaves nothing of itself behind.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use super::MIGRATION_LOCK;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("cannot read migrations folder {}: {reason}", .dir.display())]
    ReadDir { dir: PathBuf, reason: String },
    #[error("cannot read migration {}: {reason}", .file.display())]
    ReadFile { file: PathBuf, reason: String },
    /// An applied migration's content no longer matches its recorded checksum.
    #[error(
        "migration {file} was changed after it was applied; restore it and put the change in a new migration file"
    )]
    Changed { file: String },
    #[error("migration {file} failed{}: {message}; nothing of it was applied", .line.map(|l| format!(" at line {l}")).unwrap_or_default())]
    Failed {
        file: String,
        line: Option<usize>,
        message: String,
    },
    #[error("migrations: {}", describe(.0))]
    Db(tokio_postgres::Error),
}

/// PostgreSQL's message with its detail and hint, on one line.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                s.push_str(&format!("; detail: {d}"));
            }
            if let Some(h) = db.hint() {
                s.push_str(&format!("; hint: {h}"));
            }
            s
        }
        // tokio-postgres's own text is the top of the chain ("error performing TLS handshake");
        // the cause (which certificate check failed, a refused connection) is below it.
        None => {
            let mut s = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                s.push_str(&format!(": {c}"));
                cause = c.source();
            }
            s
        }
    }
}

/// The 1-based line of a 1-based character position in `sql`.
pub fn line_at(sql: &str, position: u32) -> usize {
    sql.chars()
        .take(position.saturating_sub(1) as usize)
        .filter(|c| *c == '\n')
        .count()
        + 1
}

/// The `*.sql` files of a folder in file-name order; a missing folder has none.
pub fn list(dir: &Path) -> Result<Vec<PathBuf>, MigrateError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(MigrateError::ReadDir {
                dir: dir.to_owned(),
                reason: e.to_string(),
            });
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

fn checksum(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Applies the pending migrations of `dir`; returns the names applied.
pub async fn apply_dir(client: &mut Client, dir: &Path) -> Result<Vec<String>, MigrateError> {
    let files = list(dir)?;
    client
        .execute("select pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(MigrateError::Db)?;
    let result = apply_files(client, &files).await;
    // Unlock even after a failure; the session may be reused (tests, `doska migrate` then serve).
    let _ = client
        .execute("select pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    result
}

async fn apply_files(client: &mut Client, files: &[PathBuf]) -> Result<Vec<String>, MigrateError> {
    let mut applied = Vec::new();
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = std::fs::read(path).map_err(|e| MigrateError::ReadFile {
            file: path.clone(),
            reason: e.to_string(),
        })?;
        let sum = checksum(&bytes);
        let recorded: Option<String> = client
            .query_opt(
                "select checksum from doska.migrations where name = $1",
                &[&name],
            )
            .await
            .map_err(MigrateError::Db)?
            .map(|r| r.get(0));
        match recorded {
            Some(r) if r == sum => continue,
            Some(_) => return Err(MigrateError::Changed { file: name }),
            None => {}
        }
        let sql = String::from_utf8(bytes).map_err(|_| MigrateError::ReadFile {
            file: path.clone(),
            reason: "not UTF-8".into(),
        })?;
        let tx = client.transaction().await.map_err(MigrateError::Db)?;
        if let Err(e) = tx.batch_execute(&sql).await {
            let line = e.as_db_error().and_then(|d| match d.position() {
                Some(tokio_postgres::error::ErrorPosition::Original(p)) => Some(line_at(&sql, *p)),
                _ => None,
            });
            // Dropping `tx` rolls it back.
            return Err(MigrateError::Failed {
                file: name,
                line,
                message: describe(&e),
            });
        }
        tx.execute(
            "insert into doska.migrations (name, checksum) values ($1, $2)",
            &[&name, &sum],
        )
        .await
        .map_err(MigrateError::Db)?;
        tx.commit().await.map_err(MigrateError::Db)?;
        applied.push(name);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let sql = "create table a();\ncreate table b();\nselec 1;";
        assert_eq!(line_at(sql, 1), 1);
        assert_eq!(line_at(sql, 19), 2);
        assert_eq!(line_at(sql, 37), 3);
        assert_eq!(line_at("é\nx", 3), 2);
    }
}
