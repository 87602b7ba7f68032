//! What is left of an earlier PostgreSQL on a cluster: reads `postmaster.pid`, finds processes
//! still working in the cluster directory, and clears stale lock files after a crash so the next
//! start is not blocked. Rejects (with ForeignPostmaster) live processes that will not go away.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use super::PgError;

/// The lines of `postmaster.pid` doska uses (PostgreSQL 10+ layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PidFile {
    pub pid: i32,
    pub port: Option<u16>,
    pub socket_dir: Option<PathBuf>,
}

pub(crate) fn read_pid_file(cluster: &Path) -> Option<PidFile> {
    parse_pid_file(&fs::read_to_string(cluster.join("postmaster.pid")).ok()?)
}

/// Line 1 pid, 2 data dir, 3 start time, 4 port, 5 first socket dir, 6 listen address, ...
fn parse_pid_file(text: &str) -> Option<PidFile> {
    let lines: Vec<&str> = text.lines().collect();
    let pid: i32 = lines.first()?.trim().parse().ok()?;
    if pid <= 0 {
        return None;
    }
    Some(PidFile {
        pid,
        port: lines.get(3).and_then(|l| l.trim().parse().ok()),
        socket_dir: lines
            .get(4)
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .map(PathBuf::from),
    })
}

/// Processes whose working directory is the cluster: the postmaster and every backend chdir
/// there, so this finds them even after the postmaster itself is gone.
pub(crate) fn processes_in(cluster: &Path) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == cluster)
                && is_alive(*pid)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Alive and not a zombie (a zombie waits for a parent that may never reap it in a container).
pub(crate) fn is_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may itself hold ") ".
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// Waits up to `patience` for processes left in the cluster to exit (a doska killed with -9 takes
/// its postmaster along at once, but backends need a moment to notice), then removes the stale
/// `postmaster.pid` and socket files. When the cluster is free this returns Ok and the next
/// `postgres` start cannot trip over an old pid that the system has since given to someone else.
pub(crate) fn clear_leftovers(
    cluster: &Path,
    socket_dir: &Path,
    patience: Duration,
) -> Result<(), PgError> {
    let deadline = Instant::now() + patience;
    loop {
        let pids = processes_in(cluster);
        if pids.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            return Err(PgError::ForeignPostmaster {
                cluster: cluster.to_path_buf(),
                pids,
            });
        }
        thread::sleep(Duration::from_millis(100));
    }
    let pid_file = cluster.join("postmaster.pid");
    if pid_file.exists() {
        tracing::info!(path = %pid_file.display(), "removing stale postmaster.pid left by a crash");
        fs::remove_file(&pid_file)
            .map_err(|e| PgError::io(format!("removing stale {}", pid_file.display()), e))?;
    }
    if let Ok(entries) = fs::read_dir(socket_dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".s.PGSQL.") {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pid_files() {
        let text = "4242\n/var/lib/doska/pg\n1732500000\n5432\n/tmp/doska-ab\n\n  5432001    123\nready   \n";
        assert_eq!(
            parse_pid_file(text),
            Some(PidFile {
                pid: 4242,
                port: Some(5432),
                socket_dir: Some(PathBuf::from("/tmp/doska-ab")),
            })
        );
        assert_eq!(
            parse_pid_file("17\n"),
            Some(PidFile {
                pid: 17,
                port: None,
                socket_dir: None
            })
        );
        assert_eq!(parse_pid_file(""), None);
        assert_eq!(parse_pid_file("-5\n"), None);
        assert_eq!(parse_pid_file("abc\n"), None);
    }

    #[test]
    fn own_process_is_alive_and_a_free_pid_is_not() {
        assert!(is_alive(std::process::id() as i32));
        assert!(!is_alive(i32::MAX));
    }
}
