//! The project's JWT secret: the configured one, else the one kept in the data dir (`jwt-secret`, mode
//! 0600), created on first use so `doska keys` and `doska serve` agree. Rejects a kept secret that is
//! unreadable, too short, or readable by others.

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
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let mode = std::fs::metadata(&path)
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
            Ok(s)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 48];
            rand::rng().fill_bytes(&mut bytes);
            let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
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
        Err(e) => Err(SecretError(format!("cannot read {}: {e}", path.display()))),
    }
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
