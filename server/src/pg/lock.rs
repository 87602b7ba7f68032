//! Who owns a data dir: `<data_dir>/doska.lock`, flock(LOCK_EX) for as long as a doska runs the
//! cluster (the kernel drops it when that doska dies, even on `kill -9`), holding "<pid> <mode>";
//! and `<data_dir>/doska.serve`, published by a `doska serve` once PostgreSQL is ready, telling
//! other doska commands where its socket is. Rejects nothing itself; callers decide what a held
//! lock means.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::PgError;
use super::layout::write_atomic;

const LOCK_FILE: &str = "doska.lock";
const SERVE_RECORD: &str = "doska.serve";

/// The held lock; dropping it (closing the file) releases it.
#[derive(Debug)]
pub(crate) struct DataDirLock {
    /// Held only to keep the flock; closing it releases the data dir.
    file: File,
    data_dir: PathBuf,
}

/// What the lock file says about its current holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Holder {
    pub pid: Option<u32>,
    pub serving: bool,
}

pub(crate) enum TryLock {
    Acquired(DataDirLock),
    Held(Holder),
}

impl Drop for DataDirLock {
    fn drop(&mut self) {
        // Forget the holder's line before letting go: a child this process forks shares the lock
        // until it execs, and during that moment the file must not claim a serve still runs here
        // (another serve would then give up instead of waiting a moment).
        let _ = self.file.set_len(0);
    }
}

/// Tries once, without blocking.
pub(crate) fn try_lock(data_dir: &Path, serving: bool) -> Result<TryLock, PgError> {
    let path = data_dir.join(LOCK_FILE);
    // No truncation on open: the current holder's line must survive until we own the lock.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| PgError::DataDir {
            path: data_dir.to_path_buf(),
            reason: format!(
                "cannot open {} ({e}): fix the data dir's permissions",
                path.display()
            ),
        })?;
    // SAFETY: the fd is open for the duration of the call.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Ok(TryLock::Held(parse_holder(&text)));
        }
        return Err(PgError::io(format!("locking {}", path.display()), err));
    }
    let line = format!(
        "{} {}\n",
        std::process::id(),
        if serving { "serve" } else { "attach" }
    );
    file.set_len(0)
        .and_then(|_| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(line.as_bytes()))
        .map_err(|e| PgError::io(format!("writing {}", path.display()), e))?;
    Ok(TryLock::Acquired(DataDirLock {
        file,
        data_dir: data_dir.to_path_buf(),
    }))
}

fn parse_holder(text: &str) -> Holder {
    let mut words = text.split_whitespace();
    Holder {
        pid: words.next().and_then(|p| p.parse().ok()),
        serving: words.next() == Some("serve"),
    }
}

/// Where a running `doska serve` listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServeRecord {
    pub pid: u32,
    pub socket_dir: PathBuf,
    pub port: u16,
}

impl DataDirLock {
    /// Tells other doska commands where to connect. Only meaningful while this lock is held.
    pub fn publish(&self, socket_dir: &Path, port: u16) -> Result<(), PgError> {
        let path = self.data_dir.join(SERVE_RECORD);
        let text = format!(
            "pid={}\nsocket_dir={}\nport={port}\n",
            std::process::id(),
            socket_dir.display()
        );
        write_atomic(&path, text.as_bytes())
            .map_err(|e| PgError::io(format!("writing {}", path.display()), e))
    }

    /// Withdraws the record before PostgreSQL goes away, so nobody connects to a dying server.
    pub fn unpublish(&self) {
        let _ = fs::remove_file(self.data_dir.join(SERVE_RECORD));
    }
}

/// The published record, if any; whether it is current is for the caller to check against the
/// lock holder.
pub(crate) fn read_record(data_dir: &Path) -> Option<ServeRecord> {
    parse_record(&fs::read_to_string(data_dir.join(SERVE_RECORD)).ok()?)
}

fn parse_record(text: &str) -> Option<ServeRecord> {
    let (mut pid, mut socket_dir, mut port) = (None, None, None);
    for line in text.lines() {
        match line.split_once('=') {
            Some(("pid", v)) => pid = v.parse().ok(),
            Some(("socket_dir", v)) => socket_dir = Some(PathBuf::from(v)),
            Some(("port", v)) => port = v.parse().ok(),
            _ => {}
        }
    }
    Some(ServeRecord {
        pid: pid?,
        socket_dir: socket_dir?,
        port: port?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_holder_lines() {
        let cases = [
            ("123 serve\n", Some(123), true),
            ("77 attach\n", Some(77), false),
            ("", None, false),
            ("garbage", None, false),
        ];
        for (text, pid, serving) in cases {
            assert_eq!(parse_holder(text), Holder { pid, serving }, "{text:?}");
        }
    }

    #[test]
    fn parses_records() {
        let rec = parse_record("pid=5\nsocket_dir=/tmp/doska-ab\nport=5432\n").unwrap();
        assert_eq!(rec.pid, 5);
        assert_eq!(rec.socket_dir, PathBuf::from("/tmp/doska-ab"));
        assert_eq!(rec.port, 5432);
        assert_eq!(parse_record("pid=5\nport=5432\n"), None);
        assert_eq!(parse_record(""), None);
    }

    #[test]
    fn second_lock_sees_the_first_holder() {
        let dir = std::env::temp_dir().join(format!("doska-lock-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let TryLock::Acquired(first) = try_lock(&dir, true).unwrap() else {
            panic!("fresh dir must lock");
        };
        // flock conflicts between open file descriptions, even within one process.
        match try_lock(&dir, false).unwrap() {
            TryLock::Held(holder) => assert_eq!(
                holder,
                Holder {
                    pid: Some(std::process::id()),
                    serving: true
                }
            ),
            TryLock::Acquired(_) => panic!("lock taken twice"),
        }
        first.publish(Path::new("/tmp/doska-x"), 5432).unwrap();
        assert_eq!(read_record(&dir).unwrap().port, 5432);
        first.unpublish();
        assert_eq!(read_record(&dir), None);
        drop(first);
        assert!(matches!(
            try_lock(&dir, false).unwrap(),
            TryLock::Acquired(_)
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}
