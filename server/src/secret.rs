//! The project's JWT secret: the configured one; else, on the embedded database, the one kept in the
//! data dir (`jwt-secret`, mode 0600), created on first use so `doska keys` and `doska serve` agree;
//! else, on an external database, the one kept in it (`doska.shared_secrets`), so every instance on
//! that database finds the same. Rejects a kept secret that is unreadable, too short, or readable by
//! others.

use std::{
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
};

use base64::Engine;
use rand::RngCore;

const FILE: &str = "jwt-secret";

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SecretError(pub String);

/// The configured secret, or the data dir's (created when absent).
pub fn load_or_create(configured: Option<&str>, data_dir: &Path) -> Result<String, SecretError> {
    if let Some(s) = configured {
        return Ok(s.to_string());
    }
    let path = data_dir.join(FILE);
    if let Some(s) = read_kept(&path)? {
        return Ok(s);
    }
    let secret = generate();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| SecretError(format!("cannot create {}: {e}", path.display())))?;
    f.write_all(secret.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| SecretError(format!("cannot write {}: {e}", path.display())))?;
    tracing::info!(path = %path.display(), "generated a new JWT secret");
    Ok(secret)
}

/// On a database several instances share: the configured secret, else the database's. The first
/// instance stores one — the secret an earlier doska kept in this data dir, else a new one — and
/// every later one reads it back (one statement, so two first starts at once still agree).
pub async fn shared(
    configured: Option<&str>,
    client: &tokio_postgres::Client,
    data_dir: &Path,
) -> Result<String, SecretError> {
    if let Some(s) = configured {
        return Ok(s.to_string());
    }
    let kept = read_kept(&data_dir.join(FILE))?;
    let offered = kept.clone().unwrap_or_else(generate);
    let row = client
        .query_one(
            "insert into doska.shared_secrets (name, value) values ('jwt_secret', $1)
             on conflict (name) do update set name = excluded.name
             returning value, (xmax = 0) as created",
            &[&offered],
        )
        .await
        .map_err(|e| {
            SecretError(format!(
                "cannot read the shared JWT secret from the database: {}",
                crate::db::migrate::describe(&e)
            ))
        })?;
    let (secret, created): (String, bool) = (row.get(0), row.get(1));
    if created {
        tracing::info!("stored this instance's JWT secret in the database for every instance");
    } else if kept.as_ref().is_some_and(|k| *k != secret) {
        tracing::warn!(
            path = %data_dir.join(FILE).display(),
            "this data dir keeps another JWT secret than the database: the database's is used"
        );
    }
    Ok(secret)
}

/// The secret kept at `path`, if there is one; refused when others may read it or it is short.
fn read_kept(path: &Path) -> Result<Option<String>, SecretError> {
    match std::fs::read_to_string(path) {
        Ok(s) => {
            let mode = std::fs::metadata(path)
                .map(|m| m.permissions().mode())
                .unwrap_or(0);
            if mode & 0o077 != 0 {
                return Err(SecretError(format!(
                    "{} is readable by other users: run chmod 600 {}",
                    path.display(),
                    path.display()
                )));
            }
            let s = s.trim().to_string();
            if s.len() < 32 {
                return Err(SecretError(format!(
                    "{} holds a secret shorter than 32 characters",
                    path.display()
                )));
            }
            Ok(Some(s))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SecretError(format!("cannot read {}: {e}", path.display()))),
    }
}

fn generate() -> String {
    let mut bytes = [0u8; 48];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused_and_private() {
        let dir =
            std::env::temp_dir().join(format!("doska-secret-{}-{}", std::process::id(), line!()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = load_or_create(None, &dir).unwrap();
        let b = load_or_create(None, &dir).unwrap();
        assert_eq!(a, b);
        assert!(a.len() >= 32);
        let mode = std::fs::metadata(dir.join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create(Some("given"), &dir).unwrap(), "given");
        std::fs::set_permissions(dir.join(FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load_or_create(None, &dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
