//! A PostgreSQL a test starts by hand, outside doska's embedded code: the machine's binaries run as
//! the `postgres` user (when the test runs as root), with the test's own settings and `pg_hba.conf`
//! — a server doska must cope with as an external database (`--database-url`).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The newest installed PostgreSQL's `name` binary (Debian's layout), else `name` from PATH.
pub fn pg_bin(name: &str) -> PathBuf {
    let mut dirs: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs.into_iter()
        .rev()
        .map(|d| d.join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| name.into())
}

fn as_postgres(program: &Path) -> Command {
    if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Gives `path` (recursively) to the `postgres` user when running as root.
pub fn give_to_postgres(path: &Path) {
    if unsafe { libc::geteuid() } == 0 {
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .unwrap();
        assert!(ok.success(), "chown {}", path.display());
    }
}

pub struct ManualPostgres {
    child: Child,
    pub socket: PathBuf,
    pub dir: PathBuf,
}

impl ManualPostgres {
    /// initdb (trust for local connections), then `postgres -c key=value …` on a unix socket in a
    /// fresh directory; `hba` replaces `pg_hba.conf` when given. Blocks until it accepts.
    pub fn start(tag: &str, settings: &[(&str, &str)], hba: Option<&str>) -> ManualPostgres {
        let dir = super::temp_dir(tag);
        let data = dir.join("data");
        let socket = PathBuf::from(format!("/tmp/dpg{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&socket).unwrap();
        give_to_postgres(&dir);
        give_to_postgres(&socket);
        let ok = as_postgres(&pg_bin("initdb"))
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "-D",
            ])
            .arg(&data)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "initdb");
        if let Some(hba) = hba {
            std::fs::write(data.join("pg_hba.conf"), hba).unwrap();
            give_to_postgres(&data.join("pg_hba.conf"));
        }
        let mut cmd = as_postgres(&pg_bin("postgres"));
        cmd.arg("-D").arg(&data);
        for (k, v) in settings {
            cmd.arg("-c").arg(format!("{k}={v}"));
        }
        if !settings.iter().any(|(k, _)| *k == "listen_addresses") {
            cmd.args(["-c", "listen_addresses="]);
        }
        let port = settings
            .iter()
            .find(|(k, _)| *k == "port")
            .map(|(_, v)| v.to_string())
            .unwrap_or_else(|| "5432".into());
        let child = cmd
            .arg("-c")
            .arg(format!("unix_socket_directories={}", socket.display()))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let file = socket.join(format!(".s.PGSQL.{port}"));
        while !file.exists() && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(500));
        ManualPostgres { child, socket, dir }
    }

    /// `key=value` connection settings for the superuser over the unix socket.
    pub fn socket_url(&self, port: u16) -> String {
        format!(
            "host={} port={port} user=postgres dbname=postgres",
            self.socket.display()
        )
    }
}

impl Drop for ManualPostgres {
    fn drop(&mut self) {
        // A fast shutdown (SIGINT) of the postmaster runuser started; then reap runuser.
        let _ = Command::new("pkill")
            .args(["-INT", "-f"])
            .arg(format!("unix_socket_directories={}", self.socket.display()))
            .status();
        let _ = self.child.wait();
    }
}
