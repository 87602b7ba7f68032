//! The OS account PostgreSQL runs as, and the process set-up every child of this stage gets:
//! its own process group (Ctrl-C on doska's terminal reaches doska only), the account's ids, and a
//! parent-death SIGKILL so `kill -9` of doska takes the child along. Rejects running as root
//! without a `postgres` account, since PostgreSQL refuses to run as root.

use std::ffi::CString;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use super::PgError;

/// Who runs `initdb` and `postgres`.
#[derive(Debug, Clone)]
pub(crate) struct RunAs {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, looked up before fork: `initgroups` is not safe between fork and exec.
    groups: Vec<libc::gid_t>,
    /// True when doska is root and must drop to the account in the child.
    switch: bool,
}

impl RunAs {
    /// The current user, or the `postgres` account when doska runs as root.
    pub fn for_postgres() -> Result<RunAs, PgError> {
        // SAFETY: plain getters without preconditions.
        let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
        if euid != 0 {
            return Ok(RunAs {
                uid: euid,
                gid: egid,
                groups: Vec::new(),
                switch: false,
            });
        }
        let (uid, gid) = lookup_user("postgres")?.ok_or(PgError::NoPostgresUser)?;
        if uid == 0 {
            return Err(PgError::NoPostgresUser);
        }
        let groups = group_list("postgres", gid)?;
        Ok(RunAs {
            uid,
            gid,
            groups,
            switch: true,
        })
    }

    /// True when the account differs from doska's own (doska is root).
    pub fn switches(&self) -> bool {
        self.switch
    }

    /// Own process group, the account's ids, then the parent-death signal (a uid change clears
    /// it, so it comes last). The signal fires when the spawning *thread* exits: spawn long-lived
    /// children from a thread that lives as long as they should.
    pub fn prepare(&self, cmd: &mut Command) {
        let ids = self.ids();
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        // SAFETY: the closure only makes async-signal-safe system calls and does not allocate.
        unsafe {
            cmd.pre_exec(move || {
                check(libc::setpgid(0, 0))?;
                if let Some((uid, gid, groups)) = &ids {
                    check(libc::setgroups(groups.len(), groups.as_ptr()))?;
                    check(libc::setgid(*gid))?;
                    check(libc::setuid(*uid))?;
                }
                check(libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                ))?;
                // doska may have died between fork and prctl; then nobody would kill this child.
                if libc::getppid() != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }

    /// Whether the account can search (`x`) every directory down to and including `dir`.
    /// Asked of the kernel as that account, so ACLs and group membership count.
    pub fn can_reach(&self, dir: &Path, probe_program: &Path) -> bool {
        let Ok(path) = CString::new(dir.as_os_str().as_encoded_bytes()) else {
            return false;
        };
        let Some(ids) = self.ids() else {
            // SAFETY: path is a valid NUL-terminated string.
            return unsafe { libc::access(path.as_ptr(), libc::X_OK) } == 0;
        };
        let mut cmd = Command::new(probe_program);
        cmd.arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .current_dir("/");
        // SAFETY: only async-signal-safe calls, no allocation.
        unsafe {
            cmd.pre_exec(move || {
                let (uid, gid, groups) = &ids;
                check(libc::setgroups(groups.len(), groups.as_ptr()))?;
                check(libc::setgid(*gid))?;
                check(libc::setuid(*uid))?;
                check(libc::access(path.as_ptr(), libc::X_OK))?;
                Ok(())
            });
        }
        match cmd.spawn() {
            Ok(mut child) => {
                let _ = child.wait();
                true
            }
            Err(_) => false,
        }
    }

    fn ids(&self) -> Option<(libc::uid_t, libc::gid_t, Vec<libc::gid_t>)> {
        self.switch
            .then(|| (self.uid, self.gid, self.groups.clone()))
    }
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// (uid, gid) of a named account, None when it does not exist.
fn lookup_user(name: &str) -> Result<Option<(u32, u32)>, PgError> {
    let cname = CString::new(name).expect("account names have no NUL");
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    loop {
        // SAFETY: all-zero is a valid passwd (pointers null, numbers zero).
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; buf outlives the use of pwd's strings.
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 {
            return Err(PgError::io(
                format!("looking up the `{name}` user"),
                io::Error::from_raw_os_error(rc),
            ));
        }
        return Ok((!result.is_null()).then_some((pwd.pw_uid, pwd.pw_gid)));
    }
}

fn group_list(name: &str, gid: u32) -> Result<Vec<libc::gid_t>, PgError> {
    let cname = CString::new(name).expect("account names have no NUL");
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut n = groups.len() as libc::c_int;
        // SAFETY: groups has room for n entries; n is updated to the needed count on overflow.
        let rc = unsafe { libc::getgrouplist(cname.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
        if rc >= 0 {
            groups.truncate(n as usize);
            return Ok(groups);
        }
        if groups.len() >= 65536 {
            return Err(PgError::io(
                format!("listing the groups of the `{name}` user"),
                io::Error::other("too many groups"),
            ));
        }
        groups.resize((n as usize).max(groups.len() * 2), 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_runs_postgres_as_the_postgres_account() {
        let run_as = RunAs::for_postgres().unwrap();
        // SAFETY: no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            assert!(run_as.switches());
            assert_ne!(run_as.uid, 0);
            assert!(!run_as.groups.contains(&0), "must not keep root's group");
        } else {
            assert!(!run_as.switches());
        }
    }
}
