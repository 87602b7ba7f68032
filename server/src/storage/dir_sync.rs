//! Group commit for folder fsyncs: concurrent writes that each need "my new directory entry is
//! durable" share one `fsync` of their folder instead of one each. A caller is covered only by an
//! fsync that *started* after it asked (so after its entry was made); every caller covered by a
//! failed fsync gets the error. Also takes file creations in one folder one at a time (see
//! [`create_in`]). Rejects nothing else: what is synced or created is the caller's business.

use std::{
    collections::HashMap,
    io,
    path::{Path, PathBuf},
    sync::{Arc, Condvar, Mutex, OnceLock},
};

/// One folder's fsyncs, run one at a time; callers arriving meanwhile wait for the next one.
#[derive(Default)]
pub struct Coalescer {
    state: Mutex<State>,
    turn: Condvar,
    /// Held while a file is created in the folder (see [`create_in`]).
    creating: Mutex<()>,
}

#[derive(Default)]
struct State {
    /// Fsyncs started so far (the running one included); the next one gets number `started + 1`.
    started: u64,
    /// The number of the last fsync that finished (they finish in order: one runs at a time).
    done: u64,
    running: bool,
    /// The last fsync that failed, and how: it fails every caller it covered, and, to stay on the
    /// safe side, every caller waiting for it or an earlier one.
    failed: Option<(u64, io::ErrorKind, String)>,
}

impl Coalescer {
    /// Blocks until a run of `sync` that started after this call has finished, running it itself if
    /// no one else is about to. `sync` must make durable everything done before it started.
    pub fn sync(&self, sync: impl Fn() -> io::Result<()>) -> io::Result<()> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // The running fsync (if any) may have started before our entry existed: we need the next.
        let needed = s.started + 1;
        loop {
            if s.done >= needed {
                return match &s.failed {
                    Some((n, kind, msg)) if *n >= needed => {
                        Err(io::Error::new(*kind, format!("folder fsync failed: {msg}")))
                    }
                    _ => Ok(()),
                };
            }
            if !s.running {
                s.running = true;
                s.started += 1;
                let n = s.started;
                drop(s);
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(&sync))
                    .unwrap_or_else(|_| Err(io::Error::other("folder fsync panicked")));
                s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                s.running = false;
                s.done = n;
                if let Err(e) = result {
                    s.failed = Some((n, e.kind(), e.to_string()));
                }
                self.turn.notify_all();
                continue;
            }
            s = self.turn.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The coalescer of each folder this process syncs, shared by every `Disk` on the same storage dir
/// (a `Disk` is cheap and made per request). Bounded by the number of shard folders.
fn coalescer(dir: &Path) -> Arc<Coalescer> {
    static ALL: OnceLock<Mutex<HashMap<PathBuf, Arc<Coalescer>>>> = OnceLock::new();
    let mut all = ALL
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    all.entry(dir.to_path_buf()).or_default().clone()
}

/// Runs `create` (which makes one new entry in `dir`) while no other caller creates in `dir`. The
/// kernel takes creations in one folder one at a time anyway (the folder's lock), but a waiter there
/// spins on the CPU while the holder runs; here it sleeps. That matters when creating is slow — ext4
/// without a journal scans past every inode deleted in the last minutes before it reuses one — and
/// new objects of the same second share a folder (`Disk::new_object_id`).
pub fn create_in<T>(dir: &Path, create: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let folder = coalescer(dir);
    let _one_at_a_time = folder.creating.lock().unwrap_or_else(|e| e.into_inner());
    create()
}

/// Makes `dir`'s entries made before this call durable, sharing the fsync with concurrent callers.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    coalescer(dir).sync(|| std::fs::File::open(dir)?.sync_all())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{
        Barrier,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    };
    use std::time::Duration;

    #[test]
    fn many_concurrent_callers_share_fsyncs_and_each_is_covered_by_one_started_after_it() {
        let c = Arc::new(Coalescer::default());
        // `made` counts entries "created"; each sync records how many existed when it started.
        let made = Arc::new(AtomicU64::new(0));
        let covered_upto = Arc::new(AtomicU64::new(0));
        let syncs = Arc::new(AtomicUsize::new(0));
        let threads = 64;
        let start = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (c, made, covered_upto, syncs, start) = (
                    c.clone(),
                    made.clone(),
                    covered_upto.clone(),
                    syncs.clone(),
                    start.clone(),
                );
                std::thread::spawn(move || {
                    start.wait();
                    for _ in 0..20 {
                        let mine = made.fetch_add(1, Ordering::SeqCst) + 1;
                        c.sync(|| {
                            let seen = made.load(Ordering::SeqCst);
                            syncs.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_micros(300));
                            covered_upto.fetch_max(seen, Ordering::SeqCst);
                            Ok(())
                        })
                        .unwrap();
                        // The sync that let us go had started after our entry existed.
                        assert!(covered_upto.load(Ordering::SeqCst) >= mine);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let n = syncs.load(Ordering::SeqCst);
        assert!(n >= 1 && n <= threads * 20, "{n} syncs");
    }

    #[test]
    fn a_failed_fsync_fails_every_caller_it_covered_and_later_ones_succeed() {
        let c = Arc::new(Coalescer::default());
        let (in_first, release_first) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
        let runs = Arc::new(AtomicUsize::new(0));
        // Caller A's fsync (run 1) is held open while B..E arrive: they all need run 2, which fails.
        let a = {
            let (c, in_first, release_first, runs) = (
                c.clone(),
                in_first.clone(),
                release_first.clone(),
                runs.clone(),
            );
            std::thread::spawn(move || {
                c.sync(|| {
                    runs.fetch_add(1, Ordering::SeqCst);
                    in_first.wait();
                    release_first.wait();
                    Ok(())
                })
            })
        };
        in_first.wait();
        let waiting = Arc::new(AtomicUsize::new(0));
        let others: Vec<_> = (0..4)
            .map(|_| {
                let (c, runs, waiting) = (c.clone(), runs.clone(), waiting.clone());
                std::thread::spawn(move || {
                    waiting.fetch_add(1, Ordering::SeqCst);
                    c.sync(|| {
                        runs.fetch_add(1, Ordering::SeqCst);
                        Err(io::Error::other("disk on fire"))
                    })
                })
            })
            .collect();
        while waiting.load(Ordering::SeqCst) < 4 {
            std::thread::yield_now();
        }
        // Let the four block in `sync` (they cannot finish before run 1 does, whatever the timing).
        std::thread::sleep(Duration::from_millis(50));
        release_first.wait();
        assert!(a.join().unwrap().is_ok(), "run 1 succeeded");
        for o in others {
            let e = o.join().unwrap().unwrap_err();
            assert!(e.to_string().contains("disk on fire"), "{e}");
        }
        // The four shared one failed run (or, if one arrived late, at most one run each — all failing).
        let after_failures = runs.load(Ordering::SeqCst);
        assert!((2..=5).contains(&after_failures), "{after_failures} runs");
        // A caller arriving after the failure is covered by a new run, which succeeds.
        assert!(c.sync(|| Ok(())).is_ok());
    }

    #[test]
    fn a_panicking_fsync_is_an_error_not_a_hang() {
        let c = Coalescer::default();
        let e = c.sync(|| panic!("boom")).unwrap_err();
        assert!(e.to_string().contains("panicked"));
        assert!(c.sync(|| Ok(())).is_ok());
    }

    #[test]
    fn sync_dir_syncs_a_real_folder_and_reports_a_missing_one() {
        let dir = std::env::temp_dir().join(format!("doska-dirsync-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("f"), b"x").unwrap();
        sync_dir(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(sync_dir(&dir).unwrap_err().kind(), io::ErrorKind::NotFound);
    }
}
