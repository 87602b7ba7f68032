//! Where the embedded cluster's files live: the data dir (doska's own), the cluster directory
//! (`<data_dir>/pg`, or a place the `postgres` account can reach, recorded in
//! `<data_dir>/pg-location`), the postgres log, and a short unix socket directory under /tmp.
//! Rejects a data dir that is not a writable directory, and directories owned by someone else.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use super::PgError;
use super::user::RunAs;

/// Records where the cluster lives when it is not `<data_dir>/pg`.
const LOCATION_RECORD: &str = "pg-location";
/// Inside a relocated cluster: the data dir it belongs to.
const BACK_REFERENCE: &str = "doska-data-dir";
/// Shared parent of relocated clusters; falls back to /tmp when the postgres account cannot reach it.
const RELOCATED_ROOT: &str = "/var/lib/doska";

/// Creates the data dir if needed and returns its canonical path. A new data dir is private to
/// its owner; when PostgreSQL runs as another account it may pass through (0711) to reach `pg/`,
/// while doska's secrets inside stay 0600.
pub(crate) fn prepare_data_dir(path: &Path, run_as: &RunAs) -> Result<PathBuf, PgError> {
    let fail = |reason: String| PgError::DataDir {
        path: path.to_path_buf(),
        reason,
    };
    match fs::metadata(path) {
        Ok(meta) if !meta.is_dir() => {
            return Err(fail(
                "exists but is not a directory: pass a directory as --data-dir".into(),
            ));
        }
        Ok(_) => {}
        Err(_) => {
            let mode = if run_as.switches() { 0o711 } else { 0o700 };
            fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(path)
                .map_err(|e| {
                    fail(format!(
                        "cannot be created ({e}): choose a --data-dir in a writable place"
                    ))
                })?;
        }
    }
    let canonical = path
        .canonicalize()
        .map_err(|e| fail(format!("cannot be resolved ({e})")))?;
    // Proven by writing, not by reading mode bits: read-only mounts and ACLs count too.
    let probe = canonical.join(format!(".doska-write-test-{}", unique_suffix()));
    fs::write(&probe, b"")
        .and_then(|_| fs::remove_file(&probe))
        .map_err(|e| {
            fail(format!(
                "is not writable ({e}): fix its permissions or choose another --data-dir"
            ))
        })?;
    Ok(canonical)
}

/// A short, stable name for a data dir: 16 hex digits of SHA-256 of its canonical path.
pub(crate) fn dir_hash(data_dir: &Path) -> String {
    let digest = Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
    hex::encode(&digest[..8])
}

/// The cluster directory for a data dir and whether it lives outside the data dir. Creates the
/// directory (owned by the postgres account, mode 0700) but does not initialize it.
pub(crate) fn cluster_dir(
    data_dir: &Path,
    run_as: &RunAs,
    probe_program: &Path,
) -> Result<(PathBuf, bool), PgError> {
    let record = data_dir.join(LOCATION_RECORD);
    match fs::read_to_string(&record) {
        Ok(text) => {
            let dir = PathBuf::from(text.trim());
            if !dir.is_absolute() {
                return Err(PgError::ClusterDir {
                    path: record,
                    reason: "holds no absolute path: fix or delete the file".into(),
                });
            }
            if !dir.join("PG_VERSION").exists() {
                return Err(PgError::ClusterDir {
                    path: dir,
                    reason: format!(
                        "is recorded in {} but holds no cluster (was it deleted?): restore it, or delete {} to start with an empty database",
                        record.display(),
                        record.display()
                    ),
                });
            }
            ensure_owned_dir(&dir, run_as, 0o700).map_err(|reason| PgError::ClusterDir {
                path: dir.clone(),
                reason,
            })?;
            return Ok((dir, true));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(PgError::io(format!("reading {}", record.display()), e)),
    }
    let in_place = data_dir.join("pg");
    if !run_as.switches() || run_as.can_reach(data_dir, probe_program) {
        let dir = in_place;
        ensure_owned_dir(&dir, run_as, 0o700).map_err(|reason| PgError::ClusterDir {
            path: dir.clone(),
            reason,
        })?;
        return Ok((dir, false));
    }
    if in_place.join("PG_VERSION").exists() {
        // Relocating now would start an empty database next to the real one.
        return Err(PgError::ClusterDir {
            path: in_place,
            reason: "holds the database but the postgres user cannot reach it: let it pass through the parent directories (chmod o+x on each) or move the data dir".into(),
        });
    }
    let name = dir_hash(data_dir);
    let shared = Path::new(RELOCATED_ROOT);
    let root = if fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(shared)
        .is_ok()
        && run_as.can_reach(shared, probe_program)
    {
        shared.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let dir = root.join(format!("doska-pg-{name}"));
    ensure_owned_dir(&dir, run_as, 0o700).map_err(|reason| PgError::ClusterDir {
        path: dir.clone(),
        reason,
    })?;
    tracing::warn!(
        data_dir = %data_dir.display(),
        cluster = %dir.display(),
        "the postgres user cannot reach the data dir; the PostgreSQL cluster lives in {} instead (recorded in {})",
        dir.display(),
        record.display()
    );
    Ok((dir, true))
}

/// Remembers a relocated cluster so every later start finds the same data. Written only once the
/// cluster is initialized, so a failed first start leaves no record pointing at nothing.
/// The cluster also names its data dir (`doska-data-dir`), so a relocated cluster whose data dir
/// was deleted can be recognised as an orphan and removed.
pub(crate) fn record_location(data_dir: &Path, cluster: &Path) -> Result<(), PgError> {
    let record = data_dir.join(LOCATION_RECORD);
    write_atomic(&record, format!("{}\n", cluster.display()).as_bytes())
        .map_err(|e| PgError::io(format!("writing {}", record.display()), e))?;
    let back = cluster.join(BACK_REFERENCE);
    write_atomic(&back, format!("{}\n", data_dir.display()).as_bytes())
        .map_err(|e| PgError::io(format!("writing {}", back.display()), e))
}

/// `/tmp/doska-<hash>`: keeps `<dir>/.s.PGSQL.<port>` far below the 107-byte socket path limit
/// wherever the data dir is.
pub(crate) fn socket_dir(data_dir: &Path, run_as: &RunAs) -> Result<PathBuf, PgError> {
    let dir = PathBuf::from("/tmp").join(format!("doska-{}", dir_hash(data_dir)));
    ensure_owned_dir(&dir, run_as, 0o700).map_err(|reason| PgError::SocketDir {
        path: dir.clone(),
        reason,
    })?;
    Ok(dir)
}

/// Makes sure `dir` is a real directory (not a symlink) owned by the postgres account with
/// `mode`, creating it when missing. Another owner is refused: in /tmp that could be a trap.
pub(crate) fn ensure_owned_dir(dir: &Path, run_as: &RunAs, mode: u32) -> Result<(), String> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .mode(mode)
                .create(dir)
                .map_err(|e| format!("cannot be created ({e})"))?;
            if run_as.switches() {
                std::os::unix::fs::chown(dir, Some(run_as.uid), Some(run_as.gid))
                    .map_err(|e| format!("cannot be given to the postgres user ({e})"))?;
            }
        }
        Err(e) => return Err(format!("cannot be read ({e})")),
        Ok(meta) if !meta.file_type().is_dir() => {
            return Err("exists but is not a directory: remove it".into());
        }
        Ok(meta) if meta.uid() != run_as.uid => {
            let empty = fs::read_dir(dir)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
            if run_as.switches() && meta.uid() == 0 && empty {
                // An empty directory left by an earlier root-run step; hand it over.
                std::os::unix::fs::chown(dir, Some(run_as.uid), Some(run_as.gid))
                    .map_err(|e| format!("cannot be given to the postgres user ({e})"))?;
            } else {
                return Err(format!(
                    "is owned by uid {} but PostgreSQL runs as uid {} (doska as root runs it as `postgres`, otherwise as doska's own user): run doska as the user that fits, or chown -R the directory",
                    meta.uid(),
                    run_as.uid
                ));
            }
        }
        Ok(_) => {}
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot be made private ({e})"))
}

/// Unique among the threads of all processes: "<pid>-<counter>".
fn unique_suffix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Writes via a temporary file and rename, so readers never see half a file.
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", unique_suffix()));
    let mut file = fs::File::create(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_path_stays_short() {
        let long = PathBuf::from("/").join("a".repeat(200));
        let dir = PathBuf::from("/tmp").join(format!("doska-{}", dir_hash(&long)));
        let socket = dir.join(".s.PGSQL.5432");
        assert!(socket.as_os_str().len() < 107, "{}", socket.display());
    }

    #[test]
    fn hash_is_stable_and_distinct() {
        let a = dir_hash(Path::new("/srv/a"));
        assert_eq!(a, dir_hash(Path::new("/srv/a")));
        assert_ne!(a, dir_hash(Path::new("/srv/b")));
        assert_eq!(a.len(), 16);
    }

    #[test]
    fn data_dir_that_is_a_file_is_refused() {
        let file = std::env::temp_dir().join(format!("doska-file-{}", std::process::id()));
        fs::write(&file, b"x").unwrap();
        let run_as = RunAs::for_postgres().unwrap();
        let err = prepare_data_dir(&file, &run_as).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        let err = prepare_data_dir(&file.join("below"), &run_as).unwrap_err();
        assert!(err.to_string().contains("cannot be created"), "{err}");
        fs::remove_file(&file).unwrap();
    }
}
