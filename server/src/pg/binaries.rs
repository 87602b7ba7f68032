//! Finds the installed PostgreSQL server binaries: `postgres` and `initdb` from one bin directory,
//! from PATH first, then the distributions' versioned install directories (highest version first).
//! Rejects a directory that lacks either program, and releases older than 13.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::PgError;

/// Versioned install roots: Debian/Ubuntu (`/usr/lib/postgresql/15/bin`) and the PGDG RPMs
/// (`/usr/pgsql-15/bin`).
const VERSIONED_ROOTS: &[(&str, &str)] = &[("/usr/lib/postgresql", ""), ("/usr", "pgsql-")];

/// The oldest release with every setting doska passes (`max_slot_wal_keep_size` is new in 13).
const MIN_MAJOR: u32 = 13;

/// One usable set of server binaries.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    pub postgres: PathBuf,
    pub initdb: PathBuf,
    pub major: u32,
}

/// Where to look; separate from the process environment so tests can point it anywhere.
pub(crate) struct SearchPath {
    pub path_var: Option<std::ffi::OsString>,
    pub roots: Vec<(PathBuf, String)>,
}

impl SearchPath {
    pub fn system() -> SearchPath {
        SearchPath {
            path_var: std::env::var_os("PATH"),
            roots: VERSIONED_ROOTS
                .iter()
                .map(|(root, prefix)| (PathBuf::from(root), prefix.to_string()))
                .collect(),
        }
    }

    fn describe(&self) -> String {
        let mut places = vec!["PATH".to_string()];
        places.extend(
            self.roots
                .iter()
                .map(|(root, prefix)| format!("{}/{prefix}*/bin", root.display())),
        );
        places.join(", ")
    }

    /// Candidate bin directories in order of preference.
    fn candidates(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        if let Some(path_var) = &self.path_var {
            for dir in std::env::split_paths(path_var) {
                // PATH often holds symlinks (/usr/local/bin/postgres → …/15/bin/postgres); initdb
                // looks for `postgres` next to its own resolved path, so use the resolved directory.
                if let Ok(real) = dir.join("postgres").canonicalize()
                    && let Some(parent) = real.parent()
                {
                    dirs.push(parent.to_path_buf());
                }
            }
        }
        for (root, prefix) in &self.roots {
            let mut versioned: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir(root)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|entry| {
                    let name = entry.file_name();
                    let version = name.to_str()?.strip_prefix(prefix.as_str())?;
                    Some((parse_version(version)?, entry.path().join("bin")))
                })
                .collect();
            versioned.sort_by(|a, b| b.0.cmp(&a.0));
            dirs.extend(versioned.into_iter().map(|(_, dir)| dir));
        }
        dirs
    }
}

/// "15" → [15], "9.6" → [9, 6]; anything else is not a version directory.
fn parse_version(text: &str) -> Option<Vec<u32>> {
    text.split('.').map(|part| part.parse().ok()).collect()
}

/// Finds binaries; given an existing cluster, only the major release that made it.
pub(crate) fn find(
    search: &SearchPath,
    cluster: Option<(&Path, u32)>,
) -> Result<Binaries, PgError> {
    let want_major = cluster.map(|(_, major)| major);
    let mut found_other = None;
    for dir in search.candidates() {
        let postgres = dir.join("postgres");
        let initdb = dir.join("initdb");
        if !is_executable(&postgres) || !is_executable(&initdb) {
            continue;
        }
        let major = version_of(&postgres)?;
        match want_major {
            Some(want) if want != major => {
                found_other.get_or_insert(major);
            }
            _ => {
                if major < MIN_MAJOR {
                    return Err(PgError::UnsupportedVersion {
                        path: postgres,
                        major,
                    });
                }
                return Ok(Binaries {
                    postgres,
                    initdb,
                    major,
                });
            }
        }
    }
    match (cluster, found_other) {
        (Some((cluster, cluster_major)), Some(found_major)) => Err(PgError::VersionMismatch {
            cluster: cluster.to_path_buf(),
            cluster_major,
            found_major,
        }),
        _ => Err(PgError::BinariesNotFound {
            searched: search.describe(),
        }),
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Asks the binary itself; `postgres --version` answers even as root.
fn version_of(postgres: &Path) -> Result<u32, PgError> {
    let output = Command::new(postgres)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| PgError::BinaryUnusable {
            path: postgres.to_path_buf(),
            reason: e.to_string(),
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    parse_version_output(&text).ok_or_else(|| PgError::BinaryUnusable {
        path: postgres.to_path_buf(),
        reason: format!("unexpected --version output {:?}", text.trim()),
    })
}

/// "postgres (PostgreSQL) 15.10 (Debian 15.10-0+deb12u1)" → 15.
fn parse_version_output(text: &str) -> Option<u32> {
    let rest = text.split("(PostgreSQL) ").nth(1)?;
    let number: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    number.parse().ok()
}

/// Reads the major version a cluster was made by from its `PG_VERSION` file.
pub(crate) fn cluster_major(cluster: &Path) -> Option<u32> {
    std::fs::read_to_string(cluster.join("PG_VERSION"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_version_output() {
        let cases = [
            (
                "postgres (PostgreSQL) 15.10 (Debian 15.10-0+deb12u1)\n",
                Some(15),
            ),
            ("postgres (PostgreSQL) 17.2\n", Some(17)),
            ("postgres (PostgreSQL) 9.6.24\n", Some(9)),
            ("something else\n", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_version_output(text), want, "{text:?}");
        }
    }

    #[test]
    fn parses_version_dirs() {
        assert_eq!(parse_version("15"), Some(vec![15]));
        assert_eq!(parse_version("9.6"), Some(vec![9, 6]));
        assert_eq!(parse_version("latest"), None);
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn nothing_found_names_the_package() {
        let empty = std::env::temp_dir().join(format!("doska-nobin-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        let search = SearchPath {
            path_var: Some(empty.clone().into_os_string()),
            roots: vec![(empty.clone(), String::new())],
        };
        let err = find(&search, None).unwrap_err();
        assert!(matches!(err, PgError::BinariesNotFound { .. }), "{err:?}");
        assert!(
            err.to_string().contains("apt-get install postgresql"),
            "{err}"
        );
        std::fs::remove_dir_all(&empty).unwrap();
    }

    #[test]
    fn highest_versioned_dir_wins() {
        let root = std::env::temp_dir().join(format!("doska-bins-{}", std::process::id()));
        for version in ["9.6", "13", "15", "notaversion"] {
            std::fs::create_dir_all(root.join(version).join("bin")).unwrap();
        }
        let search = SearchPath {
            path_var: None,
            roots: vec![(root.clone(), String::new())],
        };
        let dirs = search.candidates();
        let names: Vec<_> = dirs
            .iter()
            .map(|d| d.parent().unwrap().file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["15", "13", "9.6"]);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
